// Package sim replays workloads through the real scheduler in virtual time:
// a discrete-event simulation of a cluster whose only events are job
// submissions and job ends. Workloads come from Standard Workload Format
// traces or from a synthetic generator; the figures are the usual ones of
// scheduling studies (utilization, wait, bounded slowdown) plus the
// wall-clock cost of every scheduler pass.
package sim

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/scheduler"
)

// Policies the scheduler knows, in the order reports list them.
var Policies = []string{scheduler.PolicyFIFO, scheduler.PolicyPriority, scheduler.PolicyBackfill}

// Origin is virtual time 0: workload times are seconds after it.
var Origin = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Config describes the simulated cluster and how it is scheduled.
type Config struct {
	Nodes       int
	CPUsPerNode int
	// Policy is passed to the scheduler as Options.Policy.
	Policy string
	// MaxPassJobs is Options.MaxPlacementsPerPass (0: unlimited). A pass
	// that hits it is followed at once by another, as the leader does.
	MaxPassJobs int
	// Interval > 0 runs passes only at multiples of Interval seconds
	// (events in between wait for the next one), as a periodic scheduler
	// would; 0 runs one at every event time.
	Interval int64
	// Tau is the bounded-slowdown threshold in seconds (0: DefaultTau).
	Tau int64
}

// Fits reports whether a job can ever run on the configured machine.
func (c *Config) Fits(j *Job) bool {
	nodes, _ := shape(j.Procs, c.CPUsPerNode)
	return nodes <= c.Nodes
}

// completion is a running job's end, known when it starts.
type completion struct {
	start, end int64
	job        *api.Job
	timedOut   bool
}

// endHeap is a min-heap of completions by end time, then job id, so equal
// ends are processed in the same order on every run.
type endHeap []completion

func (h endHeap) less(i, j int) bool {
	if h[i].end != h[j].end {
		return h[i].end < h[j].end
	}
	return h[i].job.ID < h[j].job.ID
}

func (h *endHeap) push(c completion) {
	*h = append(*h, c)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *endHeap) pop() completion {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = completion{}
	s = s[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s.less(l, m) {
			m = l
		}
		if r < len(s) && s.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// Run replays a workload through scheduler.Schedule. Jobs the machine can
// never hold must be filtered out first (Config.Fits): they would stay
// pending forever.
func Run(w *Workload, cfg Config) (*Result, error) {
	if cfg.Nodes <= 0 || cfg.CPUsPerNode <= 0 {
		return nil, errors.New("sim: nodes and CPUs per node must be positive")
	}
	for i := range w.Jobs {
		if !cfg.Fits(&w.Jobs[i]) {
			return nil, fmt.Errorf("sim: job %d asks for %d CPUs, more than %d nodes × %d CPUs",
				w.Jobs[i].ID, w.Jobs[i].Procs, cfg.Nodes, cfg.CPUsPerNode)
		}
	}
	if !slices.IsSortedFunc(w.Jobs, func(a, b Job) int { return cmp.Compare(a.Submit, b.Submit) }) {
		return nil, errors.New("sim: jobs are not in submit order")
	}
	users := make([]int, len(w.Jobs))
	for i := range w.Jobs {
		users[i] = w.Jobs[i].User
	}
	st := newState(cfg.Nodes, cfg.CPUsPerNode, cfg.Policy, users, Origin)
	var first, lastSub int64
	if len(w.Jobs) > 0 {
		first, lastSub = w.Jobs[0].Submit, w.Jobs[len(w.Jobs)-1].Submit
	}
	m := newMetrics(cfg.Tau, len(w.Jobs), first, lastSub)
	res := &Result{Policy: cfg.Policy, Nodes: cfg.Nodes, CPUsPerNode: cfg.CPUsPerNode, Jobs: len(w.Jobs)}
	opts := scheduler.Options{Policy: cfg.Policy, MaxPlacementsPerPass: cfg.MaxPassJobs, UpdatePriorities: true}
	// run holds each pending job's run time, looked up when it starts.
	run := make(map[uint64]int64)
	var ends endHeap
	began := time.Now()
	next := 0
	for next < len(w.Jobs) || len(ends) > 0 {
		t := int64(1) << 62
		if next < len(w.Jobs) {
			t = w.Jobs[next].Submit
		}
		if len(ends) > 0 {
			t = min(t, ends[0].end)
		}
		if cfg.Interval > 0 {
			t = (t + cfg.Interval - 1) / cfg.Interval * cfg.Interval
		}
		now := Origin.Add(time.Duration(t) * time.Second)
		// Ends first, so the pass sees the room they leave.
		for len(ends) > 0 && ends[0].end <= t {
			c := ends.pop()
			end := api.JobCompleted
			if c.timedOut {
				end = api.JobTimeout
			}
			wait := c.start - int64(c.job.SubmitTime.Sub(Origin)/time.Second)
			m.ended(wait, c.start, c.end, c.job.AllocCPUs*len(c.job.Nodes), c.timedOut)
			st.finish(c.job, end, Origin.Add(time.Duration(c.end)*time.Second))
		}
		for next < len(w.Jobs) && w.Jobs[next].Submit <= t {
			wj := &w.Jobs[next]
			j := newJob(wj, cfg.CPUsPerNode, Origin)
			if st.jobs[j.ID] != nil {
				return nil, fmt.Errorf("sim: job number %d is used twice at once", j.ID)
			}
			st.submit(j)
			run[j.ID] = wj.Run
			next++
		}
		for len(st.pending) > 0 {
			t0 := time.Now()
			plan := scheduler.Schedule(now, st, opts)
			m.pass(time.Since(t0), len(plan.Placements))
			for i := range plan.Placements {
				pl := &plan.Placements[i]
				if err := st.start(pl, now); err != nil {
					res.Rejected++
					continue
				}
				j := st.jobs[pl.JobID]
				r, limit := run[j.ID], j.TimeLimitSec
				delete(run, j.ID)
				ends.push(completion{start: t, end: t + min(r, limit), job: j, timedOut: r > limit})
			}
			for _, id := range plan.Cancels {
				if st.cancel(id, now) {
					delete(run, id)
					res.Cancelled++
				}
			}
			st.compactPending()
			for id, reason := range plan.Reasons {
				if j := st.jobs[id]; j != nil {
					j.Reason = reason
				}
			}
			for id, p := range plan.Priorities {
				if j := st.jobs[id]; j != nil {
					j.Priority = p
				}
			}
			// A capped pass leaves work for the next one at the same time;
			// otherwise nothing changes until the next event.
			if cfg.MaxPassJobs <= 0 || len(plan.Placements) < cfg.MaxPassJobs {
				break
			}
		}
	}
	res.Unstarted = len(st.pending)
	m.fill(res, cfg.Nodes*cfg.CPUsPerNode)
	res.WallSec = time.Since(began).Seconds()
	return res, nil
}

// OfferedLoad is the work a workload brings (CPU-seconds, as the machine
// allocates them, capped at the time limit) over the CPU-seconds the
// machine offers while jobs arrive.
func OfferedLoad(w *Workload, nodes, cpusPerNode int) float64 {
	if len(w.Jobs) < 2 {
		return 0
	}
	var work float64
	for i := range w.Jobs {
		j := &w.Jobs[i]
		n, c := shape(j.Procs, cpusPerNode)
		work += float64(n*c) * float64(min(j.Run, limitOf(j)))
	}
	span := w.Jobs[len(w.Jobs)-1].Submit - w.Jobs[0].Submit
	if span <= 0 {
		return 0
	}
	return work / (float64(nodes*cpusPerNode) * float64(span))
}
