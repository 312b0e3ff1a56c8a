package accounting

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the FuzzVerifyProof seed corpus")

// proofFixture is a small sealed epoch whose proofs seed the fuzzer.
func proofFixture(t testing.TB) (Epoch, []Proof) {
	recs := testRecords(21, 5)
	e, tree, err := SealTree(2, recs, t0)
	if err != nil {
		t.Fatal(err)
	}
	var ps []Proof
	for _, r := range recs {
		p, err := tree.Proof(e, r)
		if err != nil {
			t.Fatal(err)
		}
		p.Anchor = Anchor{ChainID: 11155111, Contract: "0x00000000000000000000000000000000000000aa", TxHash: "0x" + strings.Repeat("ab", 32), BlockNumber: 1234}
		ps = append(ps, p)
	}
	return e, ps
}

func TestVerifyProof(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 8, 13} {
		recs := testRecords(1, n)
		e, tree, err := SealTree(1, recs, t0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			p, err := tree.Proof(e, r)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var q Proof
			if err := json.Unmarshal(b, &q); err != nil {
				t.Fatal(err)
			}
			if err := VerifyProof(q, e.Root); err != nil {
				t.Errorf("size %d seq %d: %v\n%s", n, r.Seq, err, b)
			}
		}
	}
}

func TestVerifyProofTamper(t *testing.T) {
	e, ps := proofFixture(t)
	good := ps[3]
	other := refKeccak([]byte("other"))
	for _, tc := range []struct {
		name   string
		edit   func(p *Proof)
		anchor [32]byte
		want   string
	}{
		{"good", func(*Proof) {}, e.Root, ""},
		{"charge changed", func(p *Proof) { p.Record.Charge-- }, e.Root, "record fields do not match the record hash"},
		{"payee changed", func(p *Proof) { p.Record.NodeOperatorPay = map[string]int64{"me": p.Record.Charge} }, e.Root, "record fields do not match the record hash"},
		{"private hash changed", func(p *Proof) { p.Record.CommandHash[0] ^= 1 }, e.Root, "record fields do not match the record hash"},
		{"record and hash changed", func(p *Proof) { p.Record.User = "x"; p.RecordHash = p.Record.Hash() }, e.Root, "inclusion proof does not lead to the root"},
		{"another record's path", func(p *Proof) { p.Path = ps[2].Path }, e.Root, "inclusion proof does not lead to the root"},
		{"leaf index", func(p *Proof) { p.LeafIndex = 2 }, e.Root, "inclusion proof does not lead to the root"},
		{"tree size", func(p *Proof) { p.TreeSize = 4 }, e.Root, "path of 3 hashes is too long for index 3 of 4"},
		{"path cut", func(p *Proof) { p.Path = p.Path[:1] }, e.Root, "path of 1 hashes is too short"},
		{"root in proof", func(p *Proof) { p.Root = other }, e.Root, "is not the anchored root"},
		{"other anchored root", func(*Proof) {}, other, "is not the anchored root"},
		{"both roots forged", func(p *Proof) { p.Root = other }, other, "inclusion proof does not lead to the root"},
		{"time outside range", func(p *Proof) { p.Record.EndTime = time.Unix(-5, 0) }, e.Root, "end_time: 1969-12-31T23:59:55Z is outside 1970..2262"},
	} {
		p := good
		p.Path = slices.Clone(good.Path)
		tc.edit(&p)
		err := VerifyProof(p, tc.anchor)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	p := good
	p.Record.Charge++
	if err := VerifyProof(p, e.Root); !errors.Is(err, ErrRecordHash) {
		t.Errorf("field change: %v is not ErrRecordHash", err)
	}
}

func TestProofJSONShape(t *testing.T) {
	_, ps := proofFixture(t)
	b, err := json.Marshal(ps[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"anchor", "audit_path", "epoch", "leaf_index", "record", "record_hash", "root", "tree_size"}; !slices.Equal(keys, want) {
		t.Errorf("proof keys %q, want %q", keys, want)
	}
	if want := strconv.Quote(HashHex(ps[0].Root)); string(m["root"]) != want {
		t.Errorf("root %s, want %s", m["root"], want)
	}
}

// seedDir holds the corpus; go test runs its files as FuzzVerifyProof cases.
var seedDir = filepath.Join("testdata", "fuzz", "FuzzVerifyProof")

func seedFile(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(data)))
}

// TestFuzzSeeds keeps the corpus current: the valid seeds must still be
// valid proofs (run with -update-seeds after a deliberate schema change).
func TestFuzzSeeds(t *testing.T) {
	_, ps := proofFixture(t)
	want := map[string][]byte{}
	for i, p := range ps {
		b, _ := json.MarshalIndent(p, "", " ")
		want[fmt.Sprintf("valid-%d", i)] = b
	}
	bad := ps[1]
	bad.Record.Charge++
	b, _ := json.Marshal(bad)
	want["tampered-charge"] = b
	b, _ = json.Marshal(ps[4])
	want["truncated"] = b[:len(b)/2]
	want["bad-hex"] = bytes.Replace(b, []byte(`"root":"0x`), []byte(`"root":"0xzz`), 1)
	want["empty"] = []byte("{}")

	for name, data := range want {
		path := filepath.Join(seedDir, name)
		if *updateSeeds {
			if err := os.MkdirAll(seedDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, seedFile(data), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestFuzzSeeds -update-seeds)", err)
		}
		if !bytes.Equal(got, seedFile(data)) {
			t.Errorf("seed %s is stale (run go test -run TestFuzzSeeds -update-seeds)", name)
		}
	}
}

// FuzzVerifyProof decodes arbitrary proof JSON and checks that nothing
// panics, that no proof of a record outside the fixture verifies against
// its root, and that verified proofs survive a JSON round trip.
func FuzzVerifyProof(f *testing.F) {
	e, ps := proofFixture(f)
	known := map[[32]byte]uint64{}
	for _, p := range ps {
		known[p.RecordHash] = p.LeafIndex
		b, _ := json.Marshal(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Proof
		if json.Unmarshal(data, &p) != nil {
			return
		}
		if VerifyProof(p, e.Root) == nil {
			if i, ok := known[p.Record.Hash()]; !ok || i != p.LeafIndex {
				t.Fatalf("forged proof verified: leaf %d, record %+v", p.LeafIndex, p.Record)
			}
		}
		if VerifyProof(p, p.Root) != nil {
			return
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("verified proof does not marshal: %v", err)
		}
		var q Proof
		if err := json.Unmarshal(b, &q); err != nil {
			t.Fatalf("verified proof does not unmarshal: %v\n%s", err, b)
		}
		if err := VerifyProof(q, p.Root); err != nil {
			t.Fatalf("verified proof fails after a round trip: %v\n%s", err, b)
		}
	})
}
