package accounting

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"
)

// Epoch is a sealed run of consecutive records and their Merkle root.
type Epoch struct {
	Number   uint64    `json:"number"`
	FirstSeq uint64    `json:"first_seq"`
	LastSeq  uint64    `json:"last_seq"`
	Count    uint64    `json:"count"`
	Root     [32]byte  `json:"root"`
	SealedAt time.Time `json:"sealed_at"`
}

type epochJSON struct {
	*epochAlias
	Root hexHash `json:"root"`
}

type epochAlias Epoch

// MarshalJSON writes the root as "0x" hex.
func (e Epoch) MarshalJSON() ([]byte, error) {
	return json.Marshal(epochJSON{(*epochAlias)(&e), e.Root})
}

// UnmarshalJSON reads the root from hex.
func (e *Epoch) UnmarshalJSON(b []byte) error {
	v := epochJSON{epochAlias: new(epochAlias)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*e = Epoch(*v.epochAlias)
	e.Root = v.Root
	return nil
}

// Seal seals records, which must be consecutive by Seq from at least 1.
func Seal(number uint64, records []UsageRecord, at time.Time) (Epoch, error) {
	e, _, err := SealTree(number, records, at)
	return e, err
}

// SealTree is Seal that also returns the tree, for storing record hashes
// and issuing proofs.
func SealTree(number uint64, records []UsageRecord, at time.Time) (Epoch, *Tree, error) {
	if len(records) == 0 {
		return Epoch{}, nil, fmt.Errorf("seal epoch %d: no records", number)
	}
	first := records[0].Seq
	if first == 0 {
		return Epoch{}, nil, fmt.Errorf("seal epoch %d: record at position 0 has seq 0; seqs start at 1", number)
	}
	for i := range records {
		if want := first + uint64(i); records[i].Seq != want {
			return Epoch{}, nil, fmt.Errorf("seal epoch %d: record at position %d has seq %d, want %d", number, i, records[i].Seq, want)
		}
	}
	t := NewTree(HashRecords(records))
	return Epoch{
		Number:   number,
		FirstSeq: first,
		LastSeq:  records[len(records)-1].Seq,
		Count:    uint64(len(records)),
		Root:     t.Root(),
		SealedAt: at.UTC().Round(0),
	}, t, nil
}

// Proof is the proof for rec, which must be in the epoch t was sealed for.
// Anchor is left for the caller.
func (t *Tree) Proof(e Epoch, rec UsageRecord) (Proof, error) {
	if rec.Seq < e.FirstSeq || rec.Seq > e.LastSeq {
		return Proof{}, fmt.Errorf("proof: seq %d is not in epoch %d (%d..%d)", rec.Seq, e.Number, e.FirstSeq, e.LastSeq)
	}
	index := rec.Seq - e.FirstSeq
	if e.Count != t.Size() || t.Root() != e.Root {
		return Proof{}, fmt.Errorf("proof: tree is not epoch %d's", e.Number)
	}
	h := rec.Hash()
	if h != t.records[index] {
		return Proof{}, fmt.Errorf("proof: seq %d (job %d) does not match the sealed record", rec.Seq, rec.JobID)
	}
	path, err := t.InclusionProof(index)
	if err != nil {
		return Proof{}, err
	}
	return Proof{Record: rec, RecordHash: h, Epoch: e.Number, LeafIndex: index, TreeSize: t.Size(), Path: path, Root: e.Root}, nil
}

// ProblemKind classifies what VerifyEpoch found.
type ProblemKind string

const (
	// ProblemReplaced: the epoch's stored root is not the anchored root.
	ProblemReplaced ProblemKind = "epoch-replaced"
	// ProblemHeader: the epoch's FirstSeq, LastSeq and Count disagree.
	ProblemHeader ProblemKind = "bad-header"
	// ProblemMissing: seqs of the epoch have no record (dropped).
	ProblemMissing ProblemKind = "missing-record"
	// ProblemExtra: a record outside the epoch's seqs, or a seq twice.
	ProblemExtra ProblemKind = "extra-record"
	// ProblemOrder: records are not in seq order.
	ProblemOrder ProblemKind = "out-of-order"
	// ProblemHashCount: the number of stored hashes is not the number of
	// records.
	ProblemHashCount ProblemKind = "hash-count"
	// ProblemTampered: a record's fields do not hash to its stored hash.
	ProblemTampered ProblemKind = "record-tampered"
	// ProblemRoot: records and hashes agree but do not produce the
	// anchored root (changed together).
	ProblemRoot ProblemKind = "root-mismatch"
	// ProblemChanged: a record differs from an earlier, valid proof.
	ProblemChanged ProblemKind = "record-changed"
)

// Problem is one thing VerifyEpoch found wrong.
type Problem struct {
	Kind  ProblemKind `json:"kind"`
	Epoch uint64      `json:"epoch"`
	// Seq and JobID name the record concerned (0 when none); Index is its
	// position in the records given (-1 when none).
	Seq    uint64 `json:"seq,omitempty"`
	JobID  uint64 `json:"job_id,omitempty"`
	Index  int    `json:"index"`
	Detail string `json:"detail"`
}

func (p Problem) String() string { return fmt.Sprintf("epoch %d: %s: %s", p.Epoch, p.Kind, p.Detail) }

// VerifyEpoch checks an epoch's records and their stored hashes against the
// root anchored for it and names every problem found; nil means intact.
// Proofs exported earlier (valid for anchoredRoot) pinpoint records changed
// together with their stored hash, which the root alone cannot locate.
func VerifyEpoch(epoch Epoch, records []UsageRecord, storedHashes [][32]byte, anchoredRoot [32]byte, earlier ...Proof) []Problem {
	var ps []Problem
	add := func(kind ProblemKind, i int, format string, args ...any) {
		p := Problem{Kind: kind, Epoch: epoch.Number, Index: i, Detail: fmt.Sprintf(format, args...)}
		if i >= 0 {
			p.Seq, p.JobID = records[i].Seq, records[i].JobID
		}
		ps = append(ps, p)
	}
	if epoch.Root != anchoredRoot {
		add(ProblemReplaced, -1, "stored root %s is not the anchored root %s: the epoch was replaced", HashHex(epoch.Root), HashHex(anchoredRoot))
	}
	headerOK := epoch.FirstSeq >= 1 && epoch.LastSeq >= epoch.FirstSeq && epoch.Count == epoch.LastSeq-epoch.FirstSeq+1
	if !headerOK {
		add(ProblemHeader, -1, "first seq %d, last seq %d and count %d disagree", epoch.FirstSeq, epoch.LastSeq, epoch.Count)
	}

	// Seqs: outside the epoch, twice, missing, out of order.
	seqProblems := 0
	seen := make(map[uint64]int, len(records))
	var inRange []uint64
	for i := range records {
		s := records[i].Seq
		switch prev, dup := seen[s]; {
		case headerOK && (s < epoch.FirstSeq || s > epoch.LastSeq):
			add(ProblemExtra, i, "seq %d at position %d is outside the epoch (%d..%d)", s, i, epoch.FirstSeq, epoch.LastSeq)
			seqProblems++
		case dup:
			add(ProblemExtra, i, "seq %d at position %d is also at position %d", s, i, prev)
			seqProblems++
		default:
			seen[s] = i
			inRange = append(inRange, s)
		}
	}
	if headerOK {
		gap := func(a, b uint64) {
			add(ProblemMissing, -1, "%s missing: dropped", seqRange(a, b))
			ps[len(ps)-1].Seq = a
			seqProblems++
		}
		next, end := epoch.FirstSeq, false // end: next passed the last uint64
		for _, s := range slices.Sorted(slices.Values(inRange)) {
			if s > next {
				gap(next, s-1)
			}
			next, end = s+1, s == math.MaxUint64
		}
		if !end && next <= epoch.LastSeq {
			gap(next, epoch.LastSeq)
		}
	}
	if seqProblems == 0 && headerOK {
		// Nothing missing or extra: each record has one right position.
		for i := range records {
			if want := epoch.FirstSeq + uint64(i); records[i].Seq != want {
				add(ProblemOrder, i, "seq %d (job %d) is at position %d, where seq %d belongs: reordered", records[i].Seq, records[i].JobID, i, want)
				seqProblems++
			}
		}
	} else {
		for i := 1; i < len(records); i++ {
			if records[i].Seq < records[i-1].Seq {
				add(ProblemOrder, i, "seq %d (job %d) at position %d comes after seq %d: reordered", records[i].Seq, records[i].JobID, i, records[i-1].Seq)
				seqProblems++
			}
		}
	}

	// Fields against stored hashes.
	if len(storedHashes) != len(records) {
		add(ProblemHashCount, -1, "%d stored hashes for %d records", len(storedHashes), len(records))
	}
	hashes := HashRecords(records)
	tampered := make(map[int]bool)
	for i := range min(len(records), len(storedHashes)) {
		if hashes[i] != storedHashes[i] {
			add(ProblemTampered, i, "seq %d (job %d): fields do not match the stored hash %s", records[i].Seq, records[i].JobID, HashHex(storedHashes[i]))
			tampered[i] = true
		}
	}

	// Earlier proofs locate records changed along with their hash.
	changed := 0
	for _, p := range earlier {
		if p.Epoch != epoch.Number || VerifyProof(p, anchoredRoot) != nil {
			continue
		}
		i, ok := seen[p.Record.Seq]
		if !ok || tampered[i] || hashes[i] == p.RecordHash {
			continue
		}
		add(ProblemChanged, i, "seq %d (job %d) differs from the proof exported for leaf %d (hash %s, now %s)", p.Record.Seq, p.Record.JobID, p.LeafIndex, HashHex(p.RecordHash), HashHex(hashes[i]))
		changed++
	}

	// The root, when nothing above already explains a mismatch.
	if seqProblems == 0 && len(tampered) == 0 && len(storedHashes) == len(records) && headerOK {
		got := Root(hashes)
		switch {
		case epoch.Root == anchoredRoot && got != anchoredRoot:
			where := "a record and its stored hash were changed together"
			if changed == 0 {
				where += "; proofs exported earlier would locate it"
			}
			add(ProblemRoot, -1, "the records do not produce the anchored root %s (they give %s): %s", HashHex(anchoredRoot), HashHex(got), where)
		case epoch.Root != anchoredRoot && got != epoch.Root && got != anchoredRoot:
			add(ProblemRoot, -1, "the records produce neither the stored nor the anchored root (they give %s)", HashHex(got))
		}
	}
	return ps
}

func seqRange(a, b uint64) string {
	if a == b {
		return fmt.Sprintf("seq %d", a)
	}
	return fmt.Sprintf("seqs %d..%d", a, b)
}

// VerifyChain checks that epochs, in order, number consecutively and cover
// consecutive seqs with nothing between them.
func VerifyChain(epochs []Epoch) []Problem {
	var ps []Problem
	for i := 1; i < len(epochs); i++ {
		a, b := epochs[i-1], epochs[i]
		if b.Number != a.Number+1 {
			ps = append(ps, Problem{Kind: ProblemMissing, Epoch: b.Number, Index: -1,
				Detail: fmt.Sprintf("follows epoch %d: epochs missing or reordered", a.Number)})
		}
		if b.FirstSeq != a.LastSeq+1 {
			ps = append(ps, Problem{Kind: ProblemMissing, Epoch: b.Number, Index: -1,
				Detail: fmt.Sprintf("starts at seq %d but epoch %d ended at seq %d", b.FirstSeq, a.Number, a.LastSeq)})
		}
	}
	return ps
}
