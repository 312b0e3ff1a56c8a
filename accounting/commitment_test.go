package accounting

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCommitmentKnownAnswer pins the commitment bytes: verifiers outside
// Go recompute it.
func TestCommitmentKnownAnswer(t *testing.T) {
	var root [32]byte
	for i := range root {
		root[i] = byte(i)
	}
	e := Epoch{Number: 7, FirstSeq: 1001, LastSeq: 1250, Count: 250, Root: root}
	got := e.Commitment()
	if want := mustHex(t, "0x9f2b00c7eca4ce0f92134e287f61f45cfd2c3f5f90ec88755dfaba4e0d6bacf7"); got != want {
		t.Errorf("commitment %s, want %s", HashHex(got), HashHex(want))
	}
	// The same bytes written out by hand.
	pre := []byte("stockade-epoch/v1")
	pre = append(pre, 0, 0, 0, 0, 0, 0, 0, 7)
	pre = append(pre, 0, 0, 0, 0, 0, 0, 0x03, 0xe9)
	pre = append(pre, 0, 0, 0, 0, 0, 0, 0, 0xfa)
	pre = append(pre, root[:]...)
	if ref := refKeccak(pre); got != ref {
		t.Errorf("commitment %s, reference %s", HashHex(got), HashHex(ref))
	}
	if z := EpochCommitment(0, 0, 0, [32]byte{}); z != mustHex(t, "0xd9c0914526c6e8fab81565b3065465edbbb1a67b75e96b7845f4731df3399772") {
		t.Errorf("zero header commitment %s", HashHex(z))
	}
	// Every header field is bound.
	for name, f := range map[string]func(*Epoch){
		"number": func(e *Epoch) { e.Number++ }, "first seq": func(e *Epoch) { e.FirstSeq++ },
		"count": func(e *Epoch) { e.Count-- }, "root": func(e *Epoch) { e.Root[31] ^= 1 },
	} {
		x := e
		f(&x)
		if x.Commitment() == got {
			t.Errorf("%s does not change the commitment", name)
		}
	}
	x := e
	x.LastSeq, x.SealedAt = 1, t0
	if x.Commitment() != got {
		t.Error("last seq or seal time changed the commitment; only number, first seq, count and root belong in it")
	}
}

func TestVerifyProofCommitment(t *testing.T) {
	e, ps := proofFixture(t)
	c := e.Commitment()
	for i, p := range ps {
		if h := p.Header(); h.Commitment() != c || p.Commitment() != c || h.FirstSeq != e.FirstSeq || h.LastSeq != e.LastSeq {
			t.Fatalf("proof %d: header %+v, epoch %+v", i, h, e)
		}
		if err := VerifyProof(p, c); err != nil {
			t.Errorf("proof %d against the commitment: %v", i, err)
		}
	}
	good := ps[2]
	for _, tc := range []struct {
		name string
		edit func(p *Proof)
		want string
	}{
		{"epoch renumbered", func(p *Proof) { p.Epoch++ }, "is not the anchored root"},
		{"record shifted", func(p *Proof) { p.Record.Seq++; p.RecordHash = p.Record.Hash() }, "is not the anchored root"},
		{"tree size", func(p *Proof) { p.TreeSize = 4 }, "is not the anchored root"},
		{"seq below leaf", func(p *Proof) { p.Record.Seq = 1; p.RecordHash = p.Record.Hash() }, "is not the anchored root"},
		{"root forged as the commitment", func(p *Proof) { p.Root = c }, "inclusion proof does not lead to the root"},
	} {
		p := good
		tc.edit(&p)
		if err := VerifyProof(p, c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	// A proof survives JSON with its header intact.
	b, _ := json.Marshal(good)
	var q Proof
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if err := VerifyProof(q, c); err != nil {
		t.Errorf("after JSON: %v", err)
	}
}

func TestVerifyEpochCommitment(t *testing.T) {
	recs := testRecords(1, 6)
	e, tree, err := SealTree(3, recs, t0)
	if err != nil {
		t.Fatal(err)
	}
	c := e.Commitment()
	if ps := VerifyEpochCommitment(e, recs, tree.RecordHashes(), c); ps != nil {
		t.Fatalf("intact epoch: %v", ps)
	}
	// Truncating the epoch and resealing gives a valid root but not the
	// anchored commitment.
	short, st, err := SealTree(3, recs[:5], t0)
	if err != nil {
		t.Fatal(err)
	}
	ps := VerifyEpochCommitment(short, recs[:5], st.RecordHashes(), c)
	if len(ps) != 1 || ps[0].Kind != ProblemReplaced {
		t.Fatalf("truncated epoch: %v", ps)
	}
	// A header edited without resealing: replaced, and the header check.
	bad := e
	bad.Count = 5
	ps = VerifyEpochCommitment(bad, recs, tree.RecordHashes(), c)
	if len(ps) < 2 || ps[0].Kind != ProblemReplaced || ps[1].Kind != ProblemHeader {
		t.Fatalf("edited header: %v", ps)
	}
}
