package accounting

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// refMTH and refPath are RFC 6962 section 2.1 written out recursively.
func refMTH(d [][32]byte) [32]byte {
	switch n := len(d); n {
	case 0:
		return refKeccak()
	case 1:
		return refKeccak([]byte{0}, d[0][:])
	default:
		k := refSplit(n)
		l, r := refMTH(d[:k]), refMTH(d[k:])
		return refKeccak([]byte{1}, l[:], r[:])
	}
}

func refPath(m int, d [][32]byte) [][32]byte {
	if len(d) <= 1 {
		return nil
	}
	k := refSplit(len(d))
	if m < k {
		return append(refPath(m, d[:k]), refMTH(d[k:]))
	}
	return append(refPath(m-k, d[k:]), refMTH(d[:k]))
}

// refSplit is the largest power of two smaller than n.
func refSplit(n int) int {
	k := 1
	for k*2 < n {
		k *= 2
	}
	return k
}

func leaves(n int) [][32]byte {
	out := make([][32]byte, n)
	for i := range out {
		out[i] = refKeccak(fmt.Appendf(nil, "record %d", i))
	}
	return out
}

func TestTreeHashPrefixes(t *testing.T) {
	h := refKeccak([]byte("r"))
	lh := LeafHash(h)
	for _, tc := range []struct {
		name      string
		got, want [32]byte
	}{
		{"leaf", LeafHash(h), refKeccak(append([]byte{0}, h[:]...))},
		{"node", NodeHash(h, LeafHash(h)), refKeccak([]byte{1}, h[:], lh[:])},
		{"empty root", Root(nil), mustHex(t, "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")},
		{"one leaf", Root([][32]byte{h}), LeafHash(h)},
		{"three leaves", Root([][32]byte{h, h, h}), NodeHash(NodeHash(LeafHash(h), LeafHash(h)), LeafHash(h))},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %x, want %x", tc.name, tc.got, tc.want)
		}
	}
}

// TestTreeShapes covers sizes 1..9 (every RFC 6962 split shape up to a
// two-level imbalance) and some larger ones.
func TestTreeShapes(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 33, 100, 257} {
		d := leaves(n)
		want := refMTH(d)
		tree := NewTree(d)
		if got := Root(d); got != want {
			t.Errorf("size %d: Root %x, want %x", n, got, want)
		}
		if got := tree.Root(); got != want {
			t.Errorf("size %d: Tree.Root %x, want %x", n, got, want)
		}
		for i := range n {
			path, err := tree.InclusionProof(uint64(i))
			if err != nil {
				t.Fatal(err)
			}
			if wantPath := refPath(i, d); !slices.Equal(path, wantPath) {
				t.Errorf("size %d index %d: path %x, want %x", n, i, path, wantPath)
			}
			if err := VerifyInclusion(d[i], uint64(i), uint64(n), path, want); err != nil {
				t.Errorf("size %d index %d: %v", n, i, err)
			}
		}
	}
}

func TestVerifyInclusionRejects(t *testing.T) {
	d := leaves(7)
	root := Root(d)
	path, _ := InclusionProof(d, 4)
	other := refKeccak([]byte("other"))
	for _, tc := range []struct {
		name        string
		leaf        [32]byte
		index, size uint64
		path        [][32]byte
		root        [32]byte
		want        error
	}{
		{"good", d[4], 4, 7, path, root, nil},
		{"wrong record", d[3], 4, 7, path, root, ErrInclusion},
		{"wrong index", d[4], 5, 7, path, root, ErrInclusion},
		{"wrong size", d[4], 4, 6, path, root, errors.New("inclusion proof: path of 3 hashes is too long for index 4 of 6")},
		// Index 4 has the same path shape in trees of 7 and 8: the root
		// does not bind the size, the epoch's Count does.
		{"size of the same shape", d[4], 4, 8, path, root, nil},
		{"wrong root", d[4], 4, 7, path, other, ErrInclusion},
		{"changed path", d[4], 4, 7, [][32]byte{path[0], other, path[2]}, root, ErrInclusion},
		{"index outside", d[4], 7, 7, path, root, errors.New("inclusion proof: index 7 outside tree of 7")},
		{"path too short", d[4], 4, 7, path[:2], root, errors.New("inclusion proof: path of 2 hashes is too short for index 4 of 7")},
		{"path too long", d[4], 4, 7, append(slices.Clone(path), other), root, errors.New("inclusion proof: path of 4 hashes is too long for index 4 of 7")},
		{"leaf as its own tree", d[0], 0, 1, nil, LeafHash(d[0]), nil},
		// A leaf is not an interior node: the 0x00/0x01 prefixes separate them.
		{"node passed as leaf", NodeHash(LeafHash(d[0]), LeafHash(d[1])), 0, 1, nil, Root(d[:2]), ErrInclusion},
	} {
		err := VerifyInclusion(tc.leaf, tc.index, tc.size, tc.path, tc.root)
		if (err == nil) != (tc.want == nil) || (err != nil && err.Error() != tc.want.Error()) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := InclusionProof(d, 7); err == nil {
		t.Error("InclusionProof outside the tree: no error")
	}
}
