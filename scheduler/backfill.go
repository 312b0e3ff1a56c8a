package scheduler

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"sort"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// Backfill works on a timeline of when resources free up. Times are
// durations since the pass's now.
//
// A job that cannot start gets a hold: room on the nodes that free up for
// it first, from its earliest start for its time limit. A later job may
// start on a held node only if, at every hold's start before it would end,
// the node still has room for the hold and for it (guard); unheld nodes
// need only room now, because running jobs only ever end. Running job
// ends are sorted once per pass. The earliest start is found by sweeping
// them in time order, or, when a short sweep does not find it, by
// computing each candidate node's ready time from its own ends; nodes
// with holds alone need the costlier per-node profile. A node counts as
// ready at t only if it keeps room from t on for good, so the job gets
// the k nodes ready first.
//
// Jobs without a time limit never end; overdue jobs count as ending now;
// a job being preempted ends when its grace time is over.

// never is the end of a job without a time limit.
const never = time.Duration(math.MaxInt64)

// maxHolds caps the holds on one node: past it the node takes neither new
// holds nor jobs that would overlap them, which bounds the work per job.
const maxHolds = 32

// limitDur converts a time limit in seconds to a duration (never for none).
func limitDur(sec int64) time.Duration {
	if sec <= 0 || sec >= int64(never/time.Second) {
		return never
	}
	return time.Duration(sec) * time.Second
}

// addDur adds durations, saturating at never.
func addDur(a, b time.Duration) time.Duration {
	if a == never || b == never || a > never-b {
		return never
	}
	return a + b
}

// release is a running (or just placed) job with a time limit: what it
// frees on each of its nodes (nodeIdx[lo:lo+n]) when it ends. It holds no
// pointers, so the garbage collector need not scan the timeline.
type release struct {
	lo, n int32
	end   time.Duration
	cpu   int
	mem   int64
	gpu   int
}

// event is when nodes may become usable: the end of a job (ref >= 0
// indexes rels) or of a hold (^ref indexes holdNodes).
type event struct {
	at  time.Duration
	ref int32
}

// hold is room promised on one node to a blocked job.
type hold struct {
	start, end time.Duration
	cpu        int
	mem        int64
	gpu        int
}

// Sweep marks per node.
const (
	markNone uint8 = iota
	markTouched
	markReady
)

type timeline struct {
	p       *pool
	nodeIdx []int32 // node indices of releases and victims
	rels    []release
	ends    []event // job ends known when the timeline was built, sorted
	late    []event // ends added during the pass (placements, holds), sorted
	// holdNodes are the nodes of each hold with an end.
	holdNodes [][]int32
	// runs counts jobs on each node, with and without a time limit.
	runs []int32
	// relOn[relAt[i]:relAt[i+1]] are the releases on node i at build,
	// extra[i] those added since; both sorted by end. Kept per node and
	// contiguous so that computing a node's ready time reads one run of
	// memory.
	relAt []int32
	relOn []freeing
	extra [][]freeing
	holds [][]hold
	held  int // nodes with holds
	// Sweep scratch, zero between sweeps.
	fCPU    []int
	fMem    []int64
	fGPU    []int
	fRun    []int32
	mark    []uint8
	touched []int32
	others  []int
	best    []ready
	merged  []freeing
	times   []time.Duration
}

// freeing is a release as one of its nodes sees it.
type freeing struct {
	end      time.Duration
	mem      int64
	cpu, gpu int32
}

// ready is when a node can take a job for good.
type ready struct {
	at time.Duration
	i  int
}

// The sweep is quickest when a few job ends free enough, the per-node
// scan when many are needed (whole-node jobs on a busy cluster). An end
// costs the sweep about what two nodes cost the scan, so earliest gives
// the sweep ends worth a fraction of a scan before switching.
const (
	minSweep      = 64
	nodesPerSweep = 8 // candidate nodes per end swept
)

// timeline builds the pass's timeline on first use from running jobs and
// the placements made so far.
func (s *pass) timeline() *timeline {
	if s.tl != nil {
		return s.tl
	}
	p := s.ensurePool()
	n := len(p.slots)
	running := s.runningJobs()
	jobs := len(running) + len(s.plan.Placements)
	tl := &timeline{
		p: p, runs: make([]int32, n), holds: make([][]hold, n),
		fCPU: make([]int, n), fMem: make([]int64, n), fGPU: make([]int, n), fRun: make([]int32, n),
		mark:    make([]uint8, n),
		nodeIdx: make([]int32, 0, jobs+jobs/2), rels: make([]release, 0, jobs), ends: make([]event, 0, jobs),
	}
	for _, j := range running {
		if j.State == api.JobRunning {
			lo, k := tl.indices(j.Nodes)
			tl.add(lo, k, s.runningEnd(j), j.AllocCPUs, j.AllocMemoryMB, j.AllocGPUs, false)
		}
	}
	for x := range s.plan.Placements {
		pl := &s.plan.Placements[x]
		lo, k := tl.indices(pl.Nodes)
		tl.add(lo, k, s.placedEnd[x], pl.CPUs, pl.MemoryMB, pl.GPUs, false)
	}
	slices.SortFunc(tl.ends, func(a, b event) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return cmp.Compare(a.ref, b.ref)
	})
	tl.relAt = make([]int32, n+1)
	for x := range tl.rels {
		for _, i := range tl.nodesOf(x) {
			tl.relAt[i+1]++
		}
	}
	for i := range n {
		tl.relAt[i+1] += tl.relAt[i]
	}
	tl.relOn = make([]freeing, tl.relAt[n])
	fill := slices.Clone(tl.relAt[:n])
	for _, ev := range tl.ends {
		r := &tl.rels[ev.ref]
		for _, i := range tl.view(r.lo, r.n) {
			tl.relOn[fill[i]] = r.freeing()
			fill[i]++
		}
	}
	s.tl = tl
	return tl
}

// runningEnd is when a running job ends at the latest: its time limit,
// or its preemption grace.
func (s *pass) runningEnd(j *api.Job) time.Duration {
	end := never
	if lim := limitDur(j.TimeLimitSec); lim != never {
		start := j.StartTime
		if start.IsZero() {
			start = s.now
		}
		end = max(start.Add(lim).Sub(s.now), 0)
	}
	if !j.PreemptedAt.IsZero() {
		end = min(end, max(j.PreemptedAt.Add(time.Duration(j.GraceTimeSec)*time.Second).Sub(s.now), 0))
	}
	return end
}

// indices appends the pool indices of named nodes to nodeIdx.
func (tl *timeline) indices(names []string) (lo, n int32) {
	lo = int32(len(tl.nodeIdx))
	for _, name := range names {
		if i, ok := tl.p.byName[name]; ok {
			tl.nodeIdx = append(tl.nodeIdx, int32(i))
		}
	}
	return lo, int32(len(tl.nodeIdx)) - lo
}

// view is a slice of nodeIdx; it stays valid as nodeIdx grows, since
// entries are never rewritten.
func (tl *timeline) view(lo, n int32) []int32 { return tl.nodeIdx[lo : lo+n : lo+n] }

func (tl *timeline) nodesOf(rel int) []int32 {
	r := &tl.rels[rel]
	return tl.view(r.lo, r.n)
}

func (tl *timeline) add(lo, n int32, end time.Duration, cpu int, mem int64, gpu int, late bool) {
	nodes := tl.view(lo, n)
	for _, i := range nodes {
		tl.runs[i]++
	}
	if end == never || n == 0 {
		return
	}
	x := int32(len(tl.rels))
	tl.rels = append(tl.rels, release{lo: lo, n: n, end: end, cpu: cpu, mem: mem, gpu: gpu})
	if !late {
		tl.ends = append(tl.ends, event{end, x})
		return
	}
	tl.insertLate(event{end, x})
	if tl.extra == nil {
		tl.extra = make([][]freeing, len(tl.runs))
	}
	f := tl.rels[x].freeing()
	for _, i := range nodes {
		e := append(tl.extra[i], f)
		for y := len(e) - 1; y > 0 && e[y-1].end > end; y-- {
			e[y-1], e[y] = e[y], e[y-1]
		}
		tl.extra[i] = e
	}
}

func (r *release) freeing() freeing {
	return freeing{end: r.end, mem: r.mem, cpu: int32(r.cpu), gpu: int32(r.gpu)}
}

func (tl *timeline) insertLate(ev event) {
	i := sort.Search(len(tl.late), func(i int) bool { return tl.late[i].at > ev.at })
	tl.late = slices.Insert(tl.late, i, ev)
}

// started records a placement made after the timeline was built.
func (tl *timeline) started(chosen []int, pl *Placement, end time.Duration) {
	lo := int32(len(tl.nodeIdx))
	for _, i := range chosen {
		tl.nodeIdx = append(tl.nodeIdx, int32(i))
	}
	tl.add(lo, int32(len(chosen)), end, pl.CPUs, pl.MemoryMB, pl.GPUs, true)
}

// full reports whether a node with gone of its jobs ended is empty. A
// node whose allocation no known job explains never counts as empty.
func (tl *timeline) full(i int, gone int32) bool {
	return tl.runs[i]-gone <= 0 && (gone > 0 || tl.p.slots[i].idle)
}

// room is what node i offers once the sweep's releases so far are done.
func (tl *timeline) room(i int) (c int, m int64, g int, open, idle bool) {
	sl := &tl.p.slots[i]
	if tl.full(i, tl.fRun[i]) {
		return sl.cpus, sl.mem, sl.gpus, sl.usable, true
	}
	return min(sl.freeCPU+tl.fCPU[i], sl.cpus), min(sl.freeMem+tl.fMem[i], sl.mem),
		min(sl.freeGPU+tl.fGPU[i], sl.gpus), sl.open, false
}

// freeAt is what node i has free at t with no new job: free now plus
// what jobs ending by t release.
func (tl *timeline) freeAt(i int, t time.Duration) (int, int64, int) {
	sl := &tl.p.slots[i]
	c, m, g := sl.freeCPU, sl.freeMem, sl.freeGPU
	var gone int32
	for _, r := range tl.releases(i) {
		if r.end > t {
			break
		}
		c, m, g = c+int(r.cpu), m+r.mem, g+int(r.gpu)
		gone++
	}
	if tl.full(i, gone) {
		return sl.cpus, sl.mem, sl.gpus
	}
	return min(c, sl.cpus), min(m, sl.mem), min(g, sl.gpus)
}

// load sums the holds active at t.
func load(hs []hold, t time.Duration) (c int, m int64, g int) {
	for _, h := range hs {
		if h.start <= t && t < h.end {
			c, m, g = c+h.cpu, m+h.mem, g+h.gpu
		}
	}
	return c, m, g
}

// peak is the most the holds take at once during [from, to), per
// resource.
func peak(hs []hold, from, to time.Duration) (c int, m int64, g int) {
	for _, h := range hs {
		if h.end <= from || h.start >= to {
			continue
		}
		lc, lm, lg := load(hs, max(h.start, from))
		c, m, g = max(c, lc), max(m, lm), max(g, lg)
	}
	return c, m, g
}

// fits reports whether node i, with the sweep's releases up to t done,
// has room for nd from t on for good: holds that start later count too,
// so a node once usable stays usable as the sweep advances.
func (tl *timeline) fits(i int, nd need, t time.Duration) bool {
	if !tl.p.capable(i, nd) {
		return false
	}
	c, m, g, open, idle := tl.room(i)
	if !open || len(tl.holds[i]) >= maxHolds {
		return false
	}
	return nd.takes(tl.afterHolds(i, t, never, c, m, g, idle))
}

// afterHolds is room c, m, g of node i (idle: empty) less the most its
// holds take at once during [from, to); a node that holds room then is
// not idle.
func (tl *timeline) afterHolds(i int, from, to time.Duration, c int, m int64, g int, idle bool) (int, int64, int, bool) {
	lc, lm, lg := peak(tl.holds[i], from, to)
	return c - lc, m - lm, g - lg, idle && lc == 0 && lm == 0 && lg == 0
}

// takes reports whether room c, m, g (idle: a node without jobs) has
// room for nd.
func (nd need) takes(c int, m int64, g int, idle bool) bool {
	if nd.excl {
		return idle
	}
	return nd.cpus <= c && nd.mem <= m && nd.gpus <= g
}

// allows reports whether a job needing nd that starts now and ends at end
// may use held node i (it has room now): at each hold's start before end,
// the node must hold both.
func (tl *timeline) allows(i int, nd need, end time.Duration) bool {
	hs := tl.holds[i]
	if len(hs) >= maxHolds {
		return false
	}
	for _, h := range hs {
		if h.start >= end {
			continue
		}
		if nd.excl {
			return false
		}
		lc, lm, lg := load(hs, h.start)
		c, m, g := tl.freeAt(i, h.start)
		if c-lc < nd.cpus || m-lm < nd.mem || g-lg < nd.gpus {
			return false
		}
	}
	return true
}

func (tl *timeline) touch(i int) {
	if tl.mark[i] == markNone {
		tl.mark[i] = markTouched
		tl.touched = append(tl.touched, int32(i))
	}
}

// earliest finds the earliest time within window at which a job needing
// nd on k nodes of mask (required ones included) can start and keep its
// nodes for good, and the nodes: required ones, then those usable first.
// ok is false when that is past the window or never.
func (tl *timeline) earliest(nd need, k int, mask []uint64, required []int, window time.Duration) (at time.Duration, nodes []int, ok bool) {
	budget := 0
	for _, w := range mask {
		budget += bits.OnesCount64(w)
	}
	budget = max(budget/nodesPerSweep, minSweep)
	if at, nodes, ok, decided := tl.sweep(nd, k, mask, required, window, budget); decided {
		return at, nodes, ok
	}
	return tl.scan(nd, k, mask, required, window)
}

// sweep is earliest by walking job and hold ends in time order, node
// rooms kept up to date as it goes. decided is false when it gave up
// after budget ends.
func (tl *timeline) sweep(nd need, k int, mask []uint64, required []int, window time.Duration, budget int) (at time.Duration, nodes []int, ok, decided bool) {
	p := tl.p
	want := k - len(required)
	reqLeft := len(required)
	for _, i := range required {
		p.slots[i].mark = true
	}
	others := tl.others[:0]
	defer func() {
		for _, i := range required {
			p.slots[i].mark = false
		}
		for _, i := range tl.touched {
			tl.fCPU[i], tl.fMem[i], tl.fGPU[i], tl.fRun[i], tl.mark[i] = 0, 0, 0, 0, markNone
		}
		tl.touched = tl.touched[:0]
		tl.others = others[:0]
	}()
	take := func(i int) {
		tl.touch(i)
		tl.mark[i] = markReady
		if p.slots[i].mark {
			reqLeft--
		} else if len(others) < want {
			others = append(others, i)
		}
	}
	done := func() bool { return reqLeft == 0 && len(others) >= want }
	// Usable now: nodes with room in the pool, fullest first.
	for c := max(nd.cpus, 0); c < len(p.buckets) && !done(); c++ {
		if p.counts[c] == 0 {
			continue
		}
		for w, b := range p.buckets[c] {
			for b &= mask[w]; b != 0 && !done(); b &= b - 1 {
				if i := w*64 + bits.TrailingZeros64(b); tl.fits(i, nd, 0) {
					take(i)
				}
			}
		}
	}
	ei, li := 0, 0
	for !done() {
		if ei+li >= budget {
			return 0, nil, false, false
		}
		var ev event
		switch {
		case ei < len(tl.ends) && (li == len(tl.late) || tl.ends[ei].at <= tl.late[li].at):
			ev = tl.ends[ei]
			ei++
		case li < len(tl.late):
			ev = tl.late[li]
			li++
		default:
			return 0, nil, false, true
		}
		if ev.at > window {
			return 0, nil, false, true
		}
		at = ev.at
		if ev.ref < 0 {
			for _, x := range tl.holdNodes[^ev.ref] {
				if i := int(x); inMask(mask, i) && tl.mark[i] != markReady && tl.fits(i, nd, at) {
					take(i)
				}
			}
			continue
		}
		r := &tl.rels[ev.ref]
		for _, x := range tl.view(r.lo, r.n) {
			i := int(x)
			if !inMask(mask, i) || tl.mark[i] == markReady {
				continue
			}
			tl.touch(i)
			tl.fRun[i]++
			tl.fCPU[i] += r.cpu
			tl.fMem[i] += r.mem
			tl.fGPU[i] += r.gpu
			// Most releases leave too few CPUs: skip the full check then.
			if tl.fRun[i] < tl.runs[i] && (nd.excl || tl.p.slots[i].freeCPU+tl.fCPU[i] < nd.cpus) {
				continue
			}
			if tl.fits(i, nd, at) {
				take(i)
			}
		}
	}
	nodes = make([]int, 0, k)
	nodes = append(nodes, required...)
	return at, append(nodes, others...), true, true
}

// scan is earliest by computing each candidate node's ready time and
// taking the earliest ones (ties by node order).
func (tl *timeline) scan(nd need, k int, mask []uint64, required []int, window time.Duration) (at time.Duration, nodes []int, ok bool) {
	for _, i := range required {
		t := tl.readyAt(i, nd, window)
		if t == never {
			return 0, nil, false
		}
		at = max(at, t)
	}
	want := k - len(required)
	best := tl.best[:0]
	for w, b := range mask {
		for ; b != 0 && want > 0; b &= b - 1 {
			i := w*64 + bits.TrailingZeros64(b)
			if slices.Contains(required, i) {
				continue
			}
			bound := window
			if len(best) == want {
				bound = best[want-1].at
			}
			t := tl.readyAt(i, nd, bound)
			if t == never || (len(best) == want && t >= bound) {
				continue
			}
			if len(best) < want {
				best = append(best, ready{})
			}
			x := len(best) - 1
			for ; x > 0 && best[x-1].at > t; x-- {
				best[x] = best[x-1]
			}
			best[x] = ready{t, i}
		}
	}
	tl.best = best[:0]
	if len(best) < want {
		return 0, nil, false
	}
	nodes = make([]int, 0, k)
	nodes = append(nodes, required...)
	for _, r := range best {
		at = max(at, r.at)
		nodes = append(nodes, r.i)
	}
	return at, nodes, true
}

// releases lists node i's releases by end. The result may alias a
// scratch buffer valid until the next call.
func (tl *timeline) releases(i int) []freeing {
	own := tl.relOn[tl.relAt[i]:tl.relAt[i+1]]
	if tl.extra == nil || len(tl.extra[i]) == 0 {
		return own
	}
	ex := tl.extra[i]
	m := tl.merged[:0]
	for len(own) > 0 || len(ex) > 0 {
		if len(ex) == 0 || (len(own) > 0 && own[0].end <= ex[0].end) {
			m, own = append(m, own[0]), own[1:]
		} else {
			m, ex = append(m, ex[0]), ex[1:]
		}
	}
	tl.merged = m
	return m
}

// readyAt is when node i can take nd for good, as the sweep judges it,
// or never when that is after limit.
func (tl *timeline) readyAt(i int, nd need, limit time.Duration) time.Duration {
	sl := &tl.p.slots[i]
	if !tl.p.capable(i, nd) {
		return never
	}
	if len(tl.holds[i]) > 0 {
		return tl.readyHeld(i, nd, limit)
	}
	c, m, g := sl.freeCPU, sl.freeMem, sl.freeGPU
	room := func() bool { return !nd.excl && sl.open && nd.cpus <= c && nd.mem <= m && nd.gpus <= g }
	if room() || (nd.excl && sl.idle && tl.runs[i] == 0) {
		return 0
	}
	var gone int32
	for _, r := range tl.releases(i) {
		if r.end > limit {
			break
		}
		c, m, g = c+int(r.cpu), m+r.mem, g+int(r.gpu)
		gone++
		if tl.full(i, gone) || room() {
			return r.end
		}
	}
	return never
}

// readyHeld is readyAt for a node with holds: the first release or hold
// end from which the node fits for good.
func (tl *timeline) readyHeld(i int, nd need, limit time.Duration) time.Duration {
	times := append(tl.times[:0], 0)
	for _, r := range tl.releases(i) {
		times = append(times, r.end)
	}
	for _, h := range tl.holds[i] {
		times = append(times, h.end)
	}
	slices.Sort(times)
	tl.times = times
	for _, t := range times {
		if t > limit {
			break
		}
		if tl.fitsAt(i, nd, t) {
			return t
		}
	}
	return never
}

// fitsAt is fits computed from the node's releases instead of the
// sweep's running totals.
func (tl *timeline) fitsAt(i int, nd need, t time.Duration) bool {
	sl := &tl.p.slots[i]
	var gone int32
	for _, r := range tl.releases(i) {
		if r.end <= t {
			gone++
		}
	}
	idle := tl.full(i, gone)
	if (!sl.open && !idle) || len(tl.holds[i]) >= maxHolds {
		return false
	}
	c, m, g := tl.freeAt(i, t)
	return nd.takes(tl.afterHolds(i, t, never, c, m, g, idle))
}

// hold promises nodes to a blocked job from at for length.
func (tl *timeline) hold(nodes []int, nd need, at, length time.Duration) {
	end := addDur(at, length)
	ref := make([]int32, 0, len(nodes))
	for _, i := range nodes {
		h := hold{start: at, end: end, cpu: nd.cpus, mem: nd.mem, gpu: nd.gpus}
		if sl := &tl.p.slots[i]; nd.excl {
			h.cpu, h.mem, h.gpu = sl.cpus, sl.mem, sl.gpus
		}
		if len(tl.holds[i]) == 0 {
			tl.held++
		}
		tl.holds[i] = append(tl.holds[i], h)
		tl.p.slots[i].held = true
		ref = append(ref, int32(i))
	}
	if end != never {
		tl.holdNodes = append(tl.holdNodes, ref)
		tl.insertLate(event{end, ^int32(len(tl.holdNodes) - 1)})
	}
}
