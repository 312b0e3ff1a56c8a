package scheduler

import (
	"cmp"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// victim is a running job that preemption may stop.
type victim struct {
	job   *api.Job
	qos   *api.QOS
	mode  string
	nodes []int32
	taken bool
}

// preemptor tracks, per node, what preemption frees: running jobs already
// being preempted or cancelled, and victims chosen in this pass.
type preemptor struct {
	byQOS  map[string][]*victim
	sorted map[string][]*victim // candidates per preempting QoS, in order
	addCPU []int
	addMem []int64
	addGPU []int
	gone   []int32
	fit    []bool
}

func (s *pass) preemptor() *preemptor {
	if s.pre != nil {
		return s.pre
	}
	tl := s.timeline()
	n := len(tl.runs)
	pr := &preemptor{
		byQOS: make(map[string][]*victim), sorted: make(map[string][]*victim),
		addCPU: make([]int, n), addMem: make([]int64, n), addGPU: make([]int, n), gone: make([]int32, n),
		fit: make([]bool, n),
	}
	for _, j := range s.runningJobs() {
		if j.State != api.JobRunning {
			continue
		}
		v := &victim{job: j, nodes: tl.view(tl.indices(j.Nodes))}
		if !j.PreemptedAt.IsZero() || j.CancelRequested {
			pr.apply(v, 1)
			continue
		}
		q := s.lim.ctxFor(j).qos
		if q == nil {
			continue
		}
		if v.mode = strings.ToLower(q.PreemptMode); v.mode == api.PreemptRequeue || v.mode == api.PreemptCancel {
			v.qos = q
			pr.byQOS[q.Name] = append(pr.byQOS[q.Name], v)
		}
	}
	s.pre = pr
	return pr
}

// apply counts a victim's resources as freed (sign 1) or not (-1).
func (pr *preemptor) apply(v *victim, sign int) {
	j := v.job
	for _, i := range v.nodes {
		pr.addCPU[i] += sign * j.AllocCPUs
		pr.addMem[i] += int64(sign) * j.AllocMemoryMB
		pr.addGPU[i] += sign * j.AllocGPUs
		pr.gone[i] += int32(sign)
	}
}

// fits reports whether node i has room for nd until end once what
// preemption frees is gone, leaving room held for other jobs alone.
func (pr *preemptor) fits(tl *timeline, i int, nd need, end time.Duration) bool {
	if !tl.p.capable(i, nd) {
		return false
	}
	sl := &tl.p.slots[i]
	c, m, g, open, idle := sl.freeCPU+pr.addCPU[i], sl.freeMem+pr.addMem[i], sl.freeGPU+pr.addGPU[i], sl.open, false
	if tl.full(i, pr.gone[i]) {
		c, m, g, open, idle = sl.cpus, sl.mem, sl.gpus, true, true
	}
	return open && nd.takes(tl.afterHolds(i, 0, end, c, m, g, idle))
}

// candidates lists the running jobs a QoS may preempt, in the order they
// are taken: lowest QoS priority, then lowest job priority, then the
// youngest. Jobs of the QoS itself are never candidates.
func (pr *preemptor) candidates(q *api.QOS) []*victim {
	if c, ok := pr.sorted[q.Name]; ok {
		return c
	}
	var out []*victim
	var seen []string
	for _, name := range q.Preempt {
		if name == q.Name || slices.Contains(seen, name) {
			continue
		}
		seen = append(seen, name)
		out = append(out, pr.byQOS[name]...)
	}
	slices.SortFunc(out, func(a, b *victim) int {
		if c := cmp.Compare(a.qos.Priority, b.qos.Priority); c != 0 {
			return c
		}
		if c := cmp.Compare(a.job.Priority, b.job.Priority); c != 0 {
			return c
		}
		if c := b.job.StartTime.Compare(a.job.StartTime); c != 0 {
			return c
		}
		return cmp.Compare(b.job.ID, a.job.ID)
	})
	pr.sorted[q.Name] = out
	return out
}

// preempt makes room for a job that cannot start for resources, if its
// QoS may preempt: when what is already being freed is not enough, it
// picks the fewest victims in candidate order that make the job fit on
// nodes it may use, and drops any the chosen nodes turn out not to need.
// The room is then held for the job, which starts in a later pass once
// the victims are gone. It reports whether the job waits for preemption.
func (s *pass) preempt(q *queued) bool {
	pr := s.preemptor()
	tl := s.tl
	mask, required := s.curMask, s.curReq
	nd, end := q.nd, limitDur(q.limit)
	isReq := func(i int) bool { return slices.Contains(required, i) }
	var order []int // nodes in the order they became usable
	reqLeft, others, want := len(required), 0, q.k-len(required)
	see := func(i int) {
		if pr.fit[i] || !pr.fits(tl, i, nd, end) {
			return
		}
		pr.fit[i] = true
		order = append(order, i)
		if isReq(i) {
			reqLeft--
		} else {
			others++
		}
	}
	enough := func() bool { return reqLeft == 0 && others >= want }
	defer func() {
		for _, i := range order {
			pr.fit[i] = false
		}
	}()
	for w, b := range mask {
		for ; b != 0; b &= b - 1 {
			see(w*64 + bits.TrailingZeros64(b))
		}
	}
	var chosen []*victim
	if !enough() {
		for _, v := range pr.candidates(q.ctx.qos) {
			if v.taken || !slices.ContainsFunc(v.nodes, func(x int32) bool { return inMask(mask, int(x)) }) {
				continue
			}
			pr.apply(v, 1)
			chosen = append(chosen, v)
			for _, x := range v.nodes {
				if inMask(mask, int(x)) {
					see(int(x))
				}
			}
			if enough() {
				break
			}
		}
		if !enough() {
			for _, v := range chosen {
				pr.apply(v, -1)
			}
			return false
		}
	}
	nodes := slices.Clone(required)
	for _, i := range order {
		if len(nodes) == q.k {
			break
		}
		if !isReq(i) {
			nodes = append(nodes, i)
		}
	}
	allFit := func() bool {
		for _, i := range nodes {
			if !pr.fits(tl, i, nd, end) {
				return false
			}
		}
		return true
	}
	// Drop victims off the chosen nodes, then, most preferred victims
	// kept, any the nodes can do without.
	kept := chosen[:0]
	for _, v := range chosen {
		if slices.ContainsFunc(v.nodes, func(x int32) bool { return slices.Contains(nodes, int(x)) }) {
			kept = append(kept, v)
		} else {
			pr.apply(v, -1)
		}
	}
	for x := len(kept) - 1; x >= 0; x-- {
		pr.apply(kept[x], -1)
		if allFit() {
			kept = slices.Delete(kept, x, x+1)
		} else {
			pr.apply(kept[x], 1)
		}
	}
	if len(kept) == 0 {
		// Enough is already being freed: estimate when, without new victims.
		if at, _, ok := tl.earliest(nd, q.k, mask, required, s.window); ok {
			s.startAt(q.job, s.now.Add(at))
		}
	}
	var grace int64
	for _, v := range kept {
		v.taken = true
		grace = max(grace, v.qos.GraceTimeSec)
		s.plan.Preemptions = append(s.plan.Preemptions,
			Preemption{JobID: v.job.ID, Mode: v.mode, GraceSec: v.qos.GraceTimeSec, For: q.job.ID})
	}
	if len(kept) > 0 {
		s.startAt(q.job, s.now.Add(time.Duration(grace)*time.Second))
	}
	tl.hold(nodes, nd, 0, end)
	return true
}
