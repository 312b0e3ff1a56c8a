package accounting

import (
	"errors"
	"fmt"
)

// LeafHash is the tree leaf of a record hash: Keccak256(0x00 || h).
func LeafHash(recordHash [32]byte) [32]byte { return newHasher().leaf(&recordHash) }

// NodeHash is an interior node: Keccak256(0x01 || left || right).
func NodeHash(left, right [32]byte) [32]byte { return newHasher().interior(&left, &right) }

// Tree is an epoch's Merkle tree with every level kept, so proofs need no
// rehashing. Pairing each level left to right and lifting an odd last node
// unchanged builds exactly the RFC 6962 tree (split at the largest power
// of two below n).
type Tree struct {
	records [][32]byte
	levels  [][][32]byte // levels[0] are the leaves; the last has the root
}

// NewTree builds the tree over record hashes (not leaf hashes). The tree
// keeps recordHashes; the caller must not modify it.
func NewTree(recordHashes [][32]byte) *Tree {
	t := &Tree{records: recordHashes}
	if len(recordHashes) == 0 {
		return t
	}
	k := newHasher()
	level := make([][32]byte, len(recordHashes))
	for i := range recordHashes {
		level[i] = k.leaf(&recordHashes[i])
	}
	t.levels = append(t.levels, level)
	for len(level) > 1 {
		next := make([][32]byte, (len(level)+1)/2)
		for i := 0; i+1 < len(level); i += 2 {
			next[i/2] = k.interior(&level[i], &level[i+1])
		}
		if len(level)%2 == 1 {
			next[len(next)-1] = level[len(level)-1]
		}
		t.levels = append(t.levels, next)
		level = next
	}
	return t
}

// Size is the number of leaves.
func (t *Tree) Size() uint64 { return uint64(len(t.records)) }

// RecordHashes are the hashes the tree was built over.
func (t *Tree) RecordHashes() [][32]byte { return t.records }

// Root is the tree head; an empty tree's is Keccak256("") as in RFC 6962.
func (t *Tree) Root() [32]byte {
	if len(t.levels) == 0 {
		return Keccak256()
	}
	return t.levels[len(t.levels)-1][0]
}

// InclusionProof is the audit path of leaf index, bottom up.
func (t *Tree) InclusionProof(index uint64) ([][32]byte, error) {
	if index >= t.Size() {
		return nil, fmt.Errorf("inclusion proof: index %d outside tree of %d", index, t.Size())
	}
	var path [][32]byte
	i := index
	for _, level := range t.levels[:len(t.levels)-1] {
		if sib := i ^ 1; sib < uint64(len(level)) {
			path = append(path, level[sib])
		}
		i /= 2
	}
	return path, nil
}

// Root is the Merkle tree hash over record hashes, reduced in place.
func Root(recordHashes [][32]byte) [32]byte {
	if len(recordHashes) == 0 {
		return Keccak256()
	}
	k := newHasher()
	level := make([][32]byte, len(recordHashes))
	for i := range recordHashes {
		level[i] = k.leaf(&recordHashes[i])
	}
	for len(level) > 1 {
		n := len(level)
		for i := 0; i+1 < n; i += 2 {
			level[i/2] = k.interior(&level[i], &level[i+1])
		}
		if n%2 == 1 {
			level[n/2] = level[n-1]
		}
		level = level[:(n+1)/2]
	}
	return level[0]
}

// InclusionProof is the audit path of leaf index over record hashes.
func InclusionProof(recordHashes [][32]byte, index uint64) ([][32]byte, error) {
	return NewTree(recordHashes).InclusionProof(index)
}

// ErrInclusion reports a proof that does not lead to the root.
var ErrInclusion = errors.New("inclusion proof does not lead to the root")

// VerifyInclusion checks that recordHash is leaf index of the tree of size
// leaves with the given root (RFC 9162, section 2.1.3.2).
func VerifyInclusion(recordHash [32]byte, index, size uint64, path [][32]byte, root [32]byte) error {
	if index >= size {
		return fmt.Errorf("inclusion proof: index %d outside tree of %d", index, size)
	}
	k := newHasher()
	fn, sn := index, size-1
	r := k.leaf(&recordHash)
	for i := range path {
		if sn == 0 {
			return fmt.Errorf("inclusion proof: path of %d hashes is too long for index %d of %d", len(path), index, size)
		}
		if fn&1 == 1 || fn == sn {
			r = k.interior(&path[i], &r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = k.interior(&r, &path[i])
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return fmt.Errorf("inclusion proof: path of %d hashes is too short for index %d of %d", len(path), index, size)
	}
	if r != root {
		return ErrInclusion
	}
	return nil
}
