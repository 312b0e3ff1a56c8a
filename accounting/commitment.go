package accounting

import (
	"encoding/binary"
	"fmt"
)

// CommitmentDomain prefixes every epoch commitment.
const CommitmentDomain = "stockade-epoch/v1"

// Commitment is what is anchored for an epoch:
//
//	Keccak256("stockade-epoch/v1" || u64 number || u64 first seq || u64 count || root)
//
// with big-endian integers. The Merkle root alone does not pin the epoch's
// number, its first seq or its size; the commitment does, so an anchored
// epoch can be neither renumbered, shifted nor truncated. It cannot collide
// with a tree node: those start with byte 0x00 or 0x01, this with 's'.
func (e Epoch) Commitment() [32]byte {
	return EpochCommitment(e.Number, e.FirstSeq, e.Count, e.Root)
}

// EpochCommitment is Epoch.Commitment of the given header.
func EpochCommitment(number, firstSeq, count uint64, root [32]byte) [32]byte {
	b := make([]byte, 0, len(CommitmentDomain)+3*8+32)
	b = append(b, CommitmentDomain...)
	b = binary.BigEndian.AppendUint64(b, number)
	b = binary.BigEndian.AppendUint64(b, firstSeq)
	b = binary.BigEndian.AppendUint64(b, count)
	b = append(b, root[:]...)
	return Keccak256(b)
}

// FirstSeq is the first seq of the proof's epoch: records of an epoch are
// consecutive, so leaf i holds seq FirstSeq+i. Zero when the proof's seq
// and leaf index cannot belong to any epoch.
func (p Proof) FirstSeq() uint64 {
	if p.Record.Seq <= p.LeafIndex {
		return 0
	}
	return p.Record.Seq - p.LeafIndex
}

// Header is the epoch header the proof claims (SealedAt unknown).
func (p Proof) Header() Epoch {
	first := p.FirstSeq()
	return Epoch{Number: p.Epoch, FirstSeq: first, LastSeq: first + p.TreeSize - 1, Count: p.TreeSize, Root: p.Root}
}

// Commitment is the commitment of the epoch header the proof claims.
func (p Proof) Commitment() [32]byte {
	return EpochCommitment(p.Epoch, p.FirstSeq(), p.TreeSize, p.Root)
}

// anchorMatches says whether anchored is the commitment of p's header or,
// for callers holding only a root, p's root. A forged proof cannot pass
// the root arm against a commitment: its audit path would have to hash to
// the commitment.
func (p Proof) anchorMatches(anchored [32]byte) bool {
	if p.Root == anchored {
		return true
	}
	return p.Epoch != 0 && p.FirstSeq() != 0 && p.Commitment() == anchored
}

// VerifyEpochCommitment is VerifyEpoch against the commitment anchored for
// the epoch (what the chain holds): a stored header that does not produce
// it is reported as replaced, and the records are then checked against
// the stored root.
func VerifyEpochCommitment(epoch Epoch, records []UsageRecord, storedHashes [][32]byte, anchored [32]byte, earlier ...Proof) []Problem {
	var ps []Problem
	if c := epoch.Commitment(); c != anchored {
		ps = append(ps, Problem{Kind: ProblemReplaced, Epoch: epoch.Number, Index: -1,
			Detail: fmt.Sprintf("stored header (first seq %d, count %d, root %s) gives commitment %s, not the anchored %s: the epoch was replaced",
				epoch.FirstSeq, epoch.Count, HashHex(epoch.Root), HashHex(c), HashHex(anchored))})
	}
	// The header is pinned (or already reported): check the records
	// against the stored root. Earlier proofs carry the root they were
	// anchored under, which VerifyProof accepts.
	var kept []Proof
	for _, p := range earlier {
		if p.Commitment() == anchored {
			kept = append(kept, p)
		}
	}
	return append(ps, VerifyEpoch(epoch, records, storedHashes, epoch.Root, kept...)...)
}
