package accounting

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSeal(t *testing.T) {
	recs := testRecords(101, 9)
	at := time.Date(2025, 4, 1, 0, 0, 0, 0, time.FixedZone("X", 7200))
	e, err := Seal(7, recs, at)
	if err != nil {
		t.Fatal(err)
	}
	want := Epoch{Number: 7, FirstSeq: 101, LastSeq: 109, Count: 9, Root: refMTH(recordHashes(recs)), SealedAt: at.UTC()}
	if e != want {
		t.Errorf("Seal = %+v, want %+v", e, want)
	}
	b, _ := json.Marshal(e)
	if !strings.Contains(string(b), `"root":"`+HashHex(e.Root)+`"`) {
		t.Errorf("epoch JSON: %s", b)
	}
	var back Epoch
	if err := json.Unmarshal(b, &back); err != nil || back != e {
		t.Errorf("epoch JSON round trip: %+v, %v", back, err)
	}

	swapped := slices.Clone(recs)
	swapped[3], swapped[4] = swapped[4], swapped[3]
	for _, tc := range []struct {
		name string
		recs []UsageRecord
		err  string
	}{
		{"empty", nil, "seal epoch 7: no records"},
		{"seq zero", testRecords(0, 2), "seal epoch 7: record at position 0 has seq 0; seqs start at 1"},
		{"gap", slices.Delete(slices.Clone(recs), 2, 3), "seal epoch 7: record at position 2 has seq 104, want 103"},
		{"reordered", swapped, "seal epoch 7: record at position 3 has seq 105, want 104"},
	} {
		if _, err := Seal(7, tc.recs, at); err == nil || err.Error() != tc.err {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
		}
	}
}

func recordHashes(recs []UsageRecord) [][32]byte {
	out := make([][32]byte, len(recs))
	for i := range recs {
		out[i] = recs[i].Hash()
	}
	return out
}

// TestHashRecordsParallel checks the parallel path against one by one.
func TestHashRecordsParallel(t *testing.T) {
	recs := testRecords(1, 20000)
	if got, want := HashRecords(recs), recordHashes(recs); !slices.Equal(got, want) {
		t.Error("HashRecords differs from Hash")
	}
}

type found struct {
	kind ProblemKind
	seq  uint64
}

func TestVerifyEpochTamper(t *testing.T) {
	const n = 10
	orig := testRecords(1, n)
	epoch, tree, err := SealTree(3, orig, t0)
	if err != nil {
		t.Fatal(err)
	}
	anchored := epoch.Root
	var proofs []Proof
	for _, r := range orig {
		p, err := tree.Proof(epoch, r)
		if err != nil {
			t.Fatal(err)
		}
		proofs = append(proofs, p)
	}
	other := testRecords(1, n)
	for i := range other {
		other[i].User = "someone-else"
	}
	otherEpoch, otherTree, _ := SealTree(3, other, t0)

	for _, tc := range []struct {
		name   string
		tamper func(e *Epoch, recs *[]UsageRecord, hashes *[][32]byte)
		proofs []Proof
		want   []found
	}{
		{"intact", func(*Epoch, *[]UsageRecord, *[][32]byte) {}, nil, nil},
		{"intact with proofs", func(*Epoch, *[]UsageRecord, *[][32]byte) {}, proofs, nil},
		{"one field of one record", func(_ *Epoch, r *[]UsageRecord, _ *[][32]byte) {
			(*r)[3].Charge++
		}, nil, []found{{ProblemTampered, 4}}},
		{"record and its stored hash", func(_ *Epoch, r *[]UsageRecord, h *[][32]byte) {
			(*r)[3].User = "mallory"
			(*h)[3] = (*r)[3].Hash()
		}, nil, []found{{ProblemRoot, 0}}},
		{"record and its stored hash, earlier proofs at hand", func(_ *Epoch, r *[]UsageRecord, h *[][32]byte) {
			(*r)[3].User = "mallory"
			(*h)[3] = (*r)[3].Hash()
		}, proofs, []found{{ProblemChanged, 4}, {ProblemRoot, 0}}},
		{"dropped record", func(_ *Epoch, r *[]UsageRecord, h *[][32]byte) {
			*r = slices.Delete(*r, 5, 6)
			*h = slices.Delete(*h, 5, 6)
		}, nil, []found{{ProblemMissing, 6}}},
		{"dropped last record", func(_ *Epoch, r *[]UsageRecord, h *[][32]byte) {
			*r, *h = (*r)[:n-1], (*h)[:n-1]
		}, nil, []found{{ProblemMissing, 10}}},
		{"dropped records, header rewritten", func(e *Epoch, r *[]UsageRecord, h *[][32]byte) {
			*r, *h = (*r)[:n-2], (*h)[:n-2]
			e.LastSeq, e.Count = n-2, n-2
		}, nil, []found{{ProblemRoot, 0}}},
		{"reordered", func(_ *Epoch, r *[]UsageRecord, h *[][32]byte) {
			(*r)[2], (*r)[7] = (*r)[7], (*r)[2]
			(*h)[2], (*h)[7] = (*h)[7], (*h)[2]
		}, nil, []found{{ProblemOrder, 8}, {ProblemOrder, 3}}},
		{"reordered records, hashes left", func(_ *Epoch, r *[]UsageRecord, _ *[][32]byte) {
			(*r)[0], (*r)[1] = (*r)[1], (*r)[0]
		}, nil, []found{{ProblemOrder, 2}, {ProblemOrder, 1}, {ProblemTampered, 2}, {ProblemTampered, 1}}},
		{"duplicated over a dropped one", func(_ *Epoch, r *[]UsageRecord, h *[][32]byte) {
			(*r)[4], (*h)[4] = (*r)[3], (*h)[3]
		}, nil, []found{{ProblemExtra, 4}, {ProblemMissing, 5}}},
		{"record outside the epoch", func(_ *Epoch, r *[]UsageRecord, h *[][32]byte) {
			extra := testRecords(n+1, 1)[0]
			*r = append(*r, extra)
			*h = append(*h, extra.Hash())
		}, nil, []found{{ProblemExtra, n + 1}}},
		{"stored hash lost", func(_ *Epoch, _ *[]UsageRecord, h *[][32]byte) {
			*h = (*h)[:n-1]
		}, nil, []found{{ProblemHashCount, 0}}},
		{"header count", func(e *Epoch, _ *[]UsageRecord, _ *[][32]byte) {
			e.Count++
		}, nil, []found{{ProblemHeader, 0}}},
		{"whole epoch replaced", func(e *Epoch, r *[]UsageRecord, h *[][32]byte) {
			*e, *r, *h = otherEpoch, slices.Clone(other), slices.Clone(otherTree.RecordHashes())
		}, nil, []found{{ProblemReplaced, 0}}},
		{"epoch replaced, then a record edited", func(e *Epoch, r *[]UsageRecord, h *[][32]byte) {
			*e, *r, *h = otherEpoch, slices.Clone(other), slices.Clone(otherTree.RecordHashes())
			(*r)[0].Account = "x"
		}, nil, []found{{ProblemReplaced, 0}, {ProblemTampered, 1}}},
	} {
		e := epoch
		recs := slices.Clone(orig)
		hashes := slices.Clone(tree.RecordHashes())
		tc.tamper(&e, &recs, &hashes)
		ps := VerifyEpoch(e, recs, hashes, anchored, tc.proofs...)
		var got []found
		for _, p := range ps {
			got = append(got, found{p.Kind, p.Seq})
			if p.Epoch != 3 || p.Detail == "" {
				t.Errorf("%s: incomplete problem %+v", tc.name, p)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: found %v, want %v\n%s", tc.name, got, tc.want, problemText(ps))
		}
	}
}

// TestVerifyEpochMessages pins the wording operators read.
func TestVerifyEpochMessages(t *testing.T) {
	orig := testRecords(1, 4)
	epoch, tree, _ := SealTree(3, orig, t0)
	recs := slices.Clone(orig)
	recs[1].Charge++
	ps := VerifyEpoch(epoch, recs, tree.RecordHashes(), epoch.Root)
	want := []string{fmt.Sprintf("epoch 3: record-tampered: seq 2 (job %d): fields do not match the stored hash %s", recs[1].JobID, HashHex(tree.RecordHashes()[1]))}
	if len(ps) != 1 || ps[0].String() != want[0] {
		t.Errorf("got %s\nwant %s", problemText(ps), want)
	}
	ps = VerifyEpoch(epoch, orig[:3], tree.RecordHashes()[:3], epoch.Root)
	if len(ps) != 1 || ps[0].String() != "epoch 3: missing-record: seq 4 missing: dropped" {
		t.Errorf("got %s", problemText(ps))
	}
	// Seqs at the end of the range must not wrap around.
	top := []UsageRecord{{Seq: math.MaxUint64 - 2}, {Seq: math.MaxUint64}}
	e := Epoch{Number: 9, FirstSeq: math.MaxUint64 - 3, LastSeq: math.MaxUint64, Count: 4}
	ps = VerifyEpoch(e, top, recordHashes(top), e.Root)
	want = []string{
		"epoch 9: missing-record: seq 18446744073709551612 missing: dropped",
		"epoch 9: missing-record: seq 18446744073709551614 missing: dropped",
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("top of range: %q, want %q", got, want)
	}
}

func problemText(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString("  " + p.String() + "\n")
	}
	return b.String()
}

func TestVerifyChain(t *testing.T) {
	epochs := []Epoch{
		{Number: 1, FirstSeq: 1, LastSeq: 10},
		{Number: 2, FirstSeq: 11, LastSeq: 20},
		{Number: 4, FirstSeq: 21, LastSeq: 30},
		{Number: 5, FirstSeq: 32, LastSeq: 40},
	}
	var got []string
	for _, p := range VerifyChain(epochs) {
		got = append(got, p.String())
	}
	want := []string{
		"epoch 4: missing-record: follows epoch 2: epochs missing or reordered",
		"epoch 5: missing-record: starts at seq 32 but epoch 4 ended at seq 30",
	}
	if !slices.Equal(got, want) {
		t.Errorf("VerifyChain: %q, want %q", got, want)
	}
}

func TestTreeProofRefuses(t *testing.T) {
	recs := testRecords(5, 4)
	e, tree, _ := SealTree(1, recs, t0)
	changed := recs[1]
	changed.User = "x"
	for _, tc := range []struct {
		name string
		e    Epoch
		rec  UsageRecord
		err  string
	}{
		{"outside", e, testRecords(9, 1)[0], "proof: seq 9 is not in epoch 1 (5..8)"},
		{"changed", e, changed, fmt.Sprintf("proof: seq 6 (job %d) does not match the sealed record", changed.JobID)},
		{"other epoch", Epoch{Number: 2, FirstSeq: 5, LastSeq: 8, Count: 4}, recs[0], "proof: tree is not epoch 2's"},
	} {
		if _, err := tree.Proof(tc.e, tc.rec); err == nil || err.Error() != tc.err {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
		}
	}
}
