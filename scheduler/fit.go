package scheduler

import (
	"cmp"
	"math/bits"
	"slices"
	"strings"

	"github.com/stockade-hpc/stockade/api"
)

// need is what a job asks of each of its nodes.
type need struct {
	cpus int
	mem  int64
	gpus int
	excl bool
}

// slot is the pass's private copy of one node's counters; the snapshot is
// never mutated.
type slot struct {
	node    *api.Node
	freeCPU int
	freeMem int64
	freeGPU int
	// The node's inventory, kept here so that scans over many nodes read
	// only the slots.
	cpus int
	mem  int64
	gpus int
	// idle: nothing allocated, so an exclusive job may take the node.
	idle bool
	// open: the node may take new work (usable and not held exclusively).
	open bool
	// usable: the node is up and not drained.
	usable bool
	// mark flags required nodes while one job is being fitted.
	mark bool
	// held: backfill promised room on the node to a blocked job, so a new
	// job may start on it only if the timeline allows.
	held bool
}

// pool indexes nodes for best fit: buckets[c] is a bitset of open nodes
// with exactly c free CPUs, so scanning buckets upward from the job's need
// finds the fullest node that still fits without sorting anything per job.
// Node indices follow name order, so ties within a bucket go by name.
type pool struct {
	slots   []slot
	byName  map[string]int
	words   int
	buckets [][]uint64
	counts  []int
	parts   map[string][]uint64
	masks   map[string][]uint64
	scratch []int
}

func newPool(nodes []*api.Node) *pool {
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b *api.Node) int { return compareNames(a.Name, b.Name) })
	p := &pool{
		slots:  make([]slot, len(sorted)),
		byName: make(map[string]int, len(sorted)),
		words:  (len(sorted) + 63) / 64,
		parts:  make(map[string][]uint64),
		masks:  make(map[string][]uint64),
	}
	maxCPU := 0
	for i, n := range sorted {
		p.slots[i] = slot{
			node:    n,
			freeCPU: n.CPUs - n.AllocCPUs,
			freeMem: n.MemoryMB - n.AllocMemoryMB,
			freeGPU: n.GPUs - n.AllocGPUs,
			cpus:    n.CPUs,
			mem:     n.MemoryMB,
			gpus:    n.GPUs,
			idle:    n.AllocCPUs == 0 && n.AllocMemoryMB == 0 && n.AllocGPUs == 0,
			open:    n.Usable() && !n.Exclusive,
			usable:  n.Usable(),
		}
		p.byName[n.Name] = i
		maxCPU = max(maxCPU, n.CPUs)
	}
	p.buckets = make([][]uint64, maxCPU+1)
	p.counts = make([]int, maxCPU+1)
	for i := range p.slots {
		if p.slots[i].open {
			p.insert(i)
		}
	}
	return p
}

func (p *pool) bucketOf(i int) int {
	return min(max(p.slots[i].freeCPU, 0), len(p.buckets)-1)
}

func (p *pool) insert(i int) {
	c := p.bucketOf(i)
	if p.buckets[c] == nil {
		p.buckets[c] = make([]uint64, p.words)
	}
	p.buckets[c][i/64] |= 1 << (i % 64)
	p.counts[c]++
}

func (p *pool) remove(i int) {
	c := p.bucketOf(i)
	p.buckets[c][i/64] &^= 1 << (i % 64)
	p.counts[c]--
}

// partition returns the bitset of a partition's existing nodes that are
// trusted enough for it. Untrusted nodes are left out entirely, so a job
// only they could run gets ReqNodeNotAvail, never Resources.
func (p *pool) partition(pt *api.Partition) []uint64 {
	if m, ok := p.parts[pt.Name]; ok {
		return m
	}
	m := make([]uint64, p.words)
	for _, name := range pt.Nodes {
		if i, ok := p.byName[name]; ok && TrustSatisfies(p.slots[i].node, pt.RequireTrust) {
			m[i/64] |= 1 << (i % 64)
		}
	}
	p.parts[pt.Name] = m
	return m
}

// candidates narrows the partition to nodes the job accepts (not excluded,
// all constraints met). Masks are cached per pass because jobs of one
// submission usually share them.
func (p *pool) candidates(pt *api.Partition, spec *api.JobSpec) []uint64 {
	base := p.partition(pt)
	if len(spec.ExcludeNodes) == 0 && len(spec.Constraints) == 0 {
		return base
	}
	key := pt.Name + "\x00" + strings.Join(spec.Constraints, "\x01") + "\x00" + strings.Join(spec.ExcludeNodes, "\x01")
	if m, ok := p.masks[key]; ok {
		return m
	}
	m := slices.Clone(base)
	for _, name := range spec.ExcludeNodes {
		if i, ok := p.byName[name]; ok {
			m[i/64] &^= 1 << (i % 64)
		}
	}
	if len(spec.Constraints) > 0 {
		for w := range m {
			for b := m[w]; b != 0; b &= b - 1 {
				i := w*64 + bits.TrailingZeros64(b)
				if !hasFeatures(p.slots[i].node, spec.Constraints) {
					m[w] &^= 1 << (i % 64)
				}
			}
		}
	}
	p.masks[key] = m
	return m
}

func inMask(m []uint64, i int) bool { return m[i/64]&(1<<(i%64)) != 0 }

// required resolves -w nodes; ok is false when one is unknown, outside the
// candidates (partition, --exclude, --constraint) or unusable.
func (p *pool) required(names []string, mask []uint64) (idx []int, ok bool) {
	if len(names) == 0 {
		return nil, true
	}
	idx = make([]int, 0, len(names))
	for _, name := range names {
		i, found := p.byName[name]
		if !found || !inMask(mask, i) || !p.slots[i].node.Usable() {
			return nil, false
		}
		if !slices.Contains(idx, i) {
			idx = append(idx, i)
		}
	}
	return idx, true
}

func (p *pool) fits(i int, nd need) bool {
	s := &p.slots[i]
	return s.open && (!nd.excl || s.idle) &&
		nd.cpus <= s.freeCPU && nd.mem <= s.freeMem && nd.gpus <= s.freeGPU
}

// pick chooses k nodes: all required ones, then the fullest candidates that
// fit. It returns nil when the job does not fit now. guard (nil: none) is
// asked about held nodes only. The result aliases a scratch buffer valid
// until the next call.
func (p *pool) pick(mask []uint64, required []int, k int, nd need, guard func(int) bool) []int {
	out := p.scratch[:0]
	defer func() {
		for _, i := range required {
			p.slots[i].mark = false
		}
	}()
	for _, i := range required {
		if !p.fits(i, nd) || (guard != nil && p.slots[i].held && !guard(i)) {
			return nil
		}
		p.slots[i].mark = true
		out = append(out, i)
	}
scan:
	for c := max(nd.cpus, 0); c < len(p.buckets) && len(out) < k; c++ {
		if p.counts[c] == 0 {
			continue
		}
		for w, b := range p.buckets[c] {
			for b &= mask[w]; b != 0; b &= b - 1 {
				i := w*64 + bits.TrailingZeros64(b)
				if p.slots[i].mark || !p.fits(i, nd) || (guard != nil && p.slots[i].held && !guard(i)) {
					continue
				}
				out = append(out, i)
				if len(out) == k {
					break scan
				}
			}
		}
	}
	p.scratch = out
	if len(out) < k {
		return nil
	}
	return out
}

// capable reports whether node i is usable and big enough for nd when
// empty.
func (p *pool) capable(i int, nd need) bool {
	s := &p.slots[i]
	return s.usable && nd.cpus <= s.cpus && nd.mem <= s.mem && nd.gpus <= s.gpus
}

// couldFit reports whether the job would fit if every candidate node were
// empty: if not, waiting for running jobs to end does not help.
func (p *pool) couldFit(mask []uint64, required []int, k int, nd need) bool {
	count := 0
	for _, i := range required {
		if !p.capable(i, nd) {
			return false
		}
		count++
	}
	for w, b := range mask {
		for ; b != 0 && count < k; b &= b - 1 {
			i := w*64 + bits.TrailingZeros64(b)
			if !slices.Contains(required, i) && p.capable(i, nd) {
				count++
			}
		}
	}
	return count >= k
}

// commit charges a placement to the pass's node counters.
func (p *pool) commit(chosen []int, nd need) {
	for _, i := range chosen {
		s := &p.slots[i]
		p.remove(i)
		s.idle = false
		if nd.excl {
			s.open = false
			s.freeCPU, s.freeMem, s.freeGPU = 0, 0, 0
			continue
		}
		s.freeCPU -= nd.cpus
		s.freeMem -= nd.mem
		s.freeGPU -= nd.gpus
		p.insert(i)
	}
}

// hasFeatures reports whether a node satisfies every constraint. Within
// one constraint "&" means AND and "|" means OR ("-C 'a&b|c'" is a AND (b
// or c)); Slurm's brackets and counts are not supported.
func hasFeatures(n *api.Node, constraints []string) bool {
	for _, c := range constraints {
		for conj := range strings.SplitSeq(c, "&") {
			if !hasAnyFeature(n, conj) {
				return false
			}
		}
	}
	return true
}

func hasAnyFeature(n *api.Node, alternatives string) bool {
	for alt := range strings.SplitSeq(alternatives, "|") {
		if slices.Contains(n.Features, strings.TrimSpace(alt)) {
			return true
		}
	}
	return false
}

// compareNames orders node names naturally (n2 before n10), as hostlists do.
func compareNames(a, b string) int {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			i, j := digitRun(a), digitRun(b)
			da, db := strings.TrimLeft(a[:i], "0"), strings.TrimLeft(b[:j], "0")
			if len(da) != len(db) {
				return cmp.Compare(len(da), len(db))
			}
			if c := strings.Compare(da, db); c != 0 {
				return c
			}
			if i != j {
				return cmp.Compare(i, j)
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(int(a[0]), int(b[0]))
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digitRun(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}
