package sim

import (
	"slices"
	"time"
)

// DefaultTau is the bounded-slowdown threshold: jobs shorter than this
// count as if they ran this long, so a 1-second job that waited a minute
// does not dominate the mean.
const DefaultTau = 10

// Result is the outcome of one simulation.
type Result struct {
	Policy      string `json:"policy"`
	Nodes       int    `json:"nodes"`
	CPUsPerNode int    `json:"cpus_per_node"`
	// Jobs is the number of jobs submitted; Completed of them ended,
	// TimedOut of those at their time limit. Unstarted never started
	// (the simulation ran out of events) and Cancelled were ended by the
	// scheduler; both should be 0.
	Jobs      int `json:"jobs"`
	Completed int `json:"completed"`
	TimedOut  int `json:"timed_out"`
	Unstarted int `json:"unstarted"`
	Cancelled int `json:"cancelled"`
	// Rejected counts placements that did not fit when applied (a
	// scheduler bug if not 0).
	Rejected int `json:"rejected_placements"`
	// Utilization is busy CPU-seconds over CPUs × makespan.
	Utilization float64 `json:"utilization"`
	// ArrivalUtilization counts only the time from the first submission
	// to the last, leaving out the drain at the end: the steady state.
	ArrivalUtilization float64 `json:"arrival_utilization"`
	// MakespanSec runs from the first submission to the last end.
	MakespanSec      int64   `json:"makespan_sec"`
	MeanWaitSec      float64 `json:"mean_wait_sec"`
	P95WaitSec       float64 `json:"p95_wait_sec"`
	MaxWaitSec       float64 `json:"max_wait_sec"`
	MeanBoundedSlow  float64 `json:"mean_bounded_slowdown"`
	TauSec           int64   `json:"bounded_slowdown_tau_sec"`
	Passes           int     `json:"passes"`
	Placements       int     `json:"placements"`
	PassMeanMs       float64 `json:"pass_mean_ms"`
	PassP95Ms        float64 `json:"pass_p95_ms"`
	PassMaxMs        float64 `json:"pass_max_ms"`
	PassTotalSec     float64 `json:"pass_total_sec"`
	PlacementsPerSec float64 `json:"placements_per_sec"`
	// WallSec is the wall-clock time of the whole simulation.
	WallSec float64 `json:"wall_sec"`
}

// metrics accumulates what a simulation measures.
type metrics struct {
	tau        int64
	first      int64   // first submission
	lastSub    int64   // last submission
	last       int64   // last end
	busy       float64 // CPU-seconds
	busyArr    float64 // CPU-seconds between first and lastSub
	waits      []int64
	sumWait    float64
	sumBsld    float64
	timedOut   int
	passes     []time.Duration
	placements int
}

// newMetrics measures a workload whose submissions span first to lastSub.
func newMetrics(tau int64, jobs int, first, lastSub int64) *metrics {
	if tau <= 0 {
		tau = DefaultTau
	}
	return &metrics{tau: tau, first: first, lastSub: lastSub, waits: make([]int64, 0, jobs)}
}

// ended records a finished job: it waited wait seconds and ran from start
// to end on cpus CPUs.
func (m *metrics) ended(wait, start, end int64, cpus int, timedOut bool) {
	run := end - start
	m.last = max(m.last, end)
	m.busy += float64(run) * float64(cpus)
	if in := min(end, m.lastSub) - max(start, m.first); in > 0 {
		m.busyArr += float64(in) * float64(cpus)
	}
	m.waits = append(m.waits, wait)
	m.sumWait += float64(wait)
	m.sumBsld += boundedSlowdown(wait, run, m.tau)
	if timedOut {
		m.timedOut++
	}
}

func (m *metrics) pass(d time.Duration, placements int) {
	m.passes = append(m.passes, d)
	m.placements += placements
}

// boundedSlowdown is max(1, (wait+run)/max(run, tau)).
func boundedSlowdown(wait, run, tau int64) float64 {
	return max(1, float64(wait+run)/float64(max(run, tau)))
}

// percentile is the nearest-rank p-th percentile of sorted values (integer
// arithmetic, so p95 of 20 values is exactly the 19th).
func percentile[T int64 | time.Duration](sorted []T, p int) T {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// fill writes the measured figures into r; cpus is the machine's size.
func (m *metrics) fill(r *Result, cpus int) {
	r.Completed = len(m.waits)
	r.TimedOut = m.timedOut
	r.TauSec = m.tau
	if n := len(m.waits); n > 0 {
		r.MakespanSec = m.last - m.first
		if r.MakespanSec > 0 {
			r.Utilization = m.busy / (float64(cpus) * float64(r.MakespanSec))
		}
		if span := m.lastSub - m.first; span > 0 {
			r.ArrivalUtilization = m.busyArr / (float64(cpus) * float64(span))
		}
		r.MeanWaitSec = m.sumWait / float64(n)
		r.MeanBoundedSlow = m.sumBsld / float64(n)
		w := slices.Clone(m.waits)
		slices.Sort(w)
		r.P95WaitSec = float64(percentile(w, 95))
		r.MaxWaitSec = float64(w[n-1])
	}
	r.Passes = len(m.passes)
	r.Placements = m.placements
	if len(m.passes) > 0 {
		p := slices.Clone(m.passes)
		slices.Sort(p)
		var total time.Duration
		for _, d := range p {
			total += d
		}
		r.PassTotalSec = total.Seconds()
		r.PassMeanMs = ms(total) / float64(len(p))
		r.PassP95Ms = ms(percentile(p, 95))
		r.PassMaxMs = ms(p[len(p)-1])
		if total > 0 {
			r.PlacementsPerSec = float64(m.placements) / total.Seconds()
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
