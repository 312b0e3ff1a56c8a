package sim

import (
	"errors"
	"runtime"
	"time"

	"github.com/stockade-hpc/stockade/scheduler"
)

// StressConfig describes the one-pass measurement: a large cluster partly
// held by running jobs and a deep queue.
type StressConfig struct {
	Nodes       int
	CPUsPerNode int
	Pending     int
	// Busy is the fraction of CPUs running jobs hold (0: 0.5).
	Busy float64
	// Passes is how many timed passes each policy gets (0: 3).
	Passes      int
	MaxPassJobs int
	Users       int
	Seed        uint64
}

// StressResult is the cost of one pass under one policy.
type StressResult struct {
	Policy      string `json:"policy"`
	Nodes       int    `json:"nodes"`
	CPUsPerNode int    `json:"cpus_per_node"`
	Running     int    `json:"running_jobs"`
	BusyCPUs    int    `json:"busy_cpus"`
	Pending     int    `json:"pending_jobs"`
	// Placements is what one pass starts (every timed pass sees the same
	// state, so they all start the same jobs).
	Placements       int     `json:"placements"`
	Passes           int     `json:"passes"`
	PassMinMs        float64 `json:"pass_min_ms"`
	PassMeanMs       float64 `json:"pass_mean_ms"`
	PassMaxMs        float64 `json:"pass_max_ms"`
	PlacementsPerSec float64 `json:"placements_per_sec"`
}

// stressState builds the cluster: running jobs packed first fit from the
// first node until the busy fraction is reached, each part-way through its
// run so their ends are spread, then the pending queue submitted over the
// last day. Jobs are drawn as the synthetic workload draws them.
func stressState(cfg StressConfig, now time.Time) (*state, error) {
	if cfg.Nodes <= 0 || cfg.CPUsPerNode <= 0 || cfg.Pending <= 0 {
		return nil, errors.New("stress: nodes, CPUs per node and pending jobs must be positive")
	}
	busy := cfg.Busy
	if busy <= 0 {
		busy = 0.5
	}
	nusers := cfg.Users
	if nusers <= 0 {
		nusers = 100
	}
	g := newGenerator(cfg.Nodes, cfg.CPUsPerNode, nusers, cfg.Seed)
	users := make([]int, nusers)
	for u := range users {
		users[u] = u + 1
	}
	st := newState(cfg.Nodes, cfg.CPUsPerNode, "", users, now)
	total := cfg.Nodes * cfg.CPUsPerNode
	held, cursor := 0, 0
	id := uint64(0)
	for float64(held) < busy*float64(total) {
		id++
		wj := g.job(id)
		n, c := shape(wj.Procs, cfg.CPUsPerNode)
		for cursor < len(st.nodes) && st.nodes[cursor].AllocCPUs == st.nodes[cursor].CPUs {
			cursor++
		}
		var picked []string
		for i := cursor; i < len(st.nodes) && len(picked) < n; i++ {
			if st.nodes[i].CPUs-st.nodes[i].AllocCPUs >= c {
				picked = append(picked, st.nodes[i].Name)
			}
		}
		if len(picked) < n {
			break
		}
		lasts := min(wj.Run, wj.ReqTime)
		elapsed := int64(g.r.Float64() * float64(lasts))
		start := now.Add(-time.Duration(elapsed) * time.Second)
		j := newJob(&wj, cfg.CPUsPerNode, start)
		st.submit(j)
		if err := st.start(&scheduler.Placement{JobID: j.ID, Nodes: picked, CPUs: c}, start); err != nil {
			return nil, err
		}
		held += n * c
	}
	st.compactPending()
	for i := range cfg.Pending {
		id++
		wj := g.job(id)
		wj.Submit = -int64(cfg.Pending-i) * 86400 / int64(cfg.Pending)
		st.submit(newJob(&wj, cfg.CPUsPerNode, now))
	}
	return st, nil
}

// Stress times single scheduler passes over a stress state, per policy.
func Stress(cfg StressConfig, policies []string) ([]StressResult, error) {
	now := Origin.Add(30 * 24 * time.Hour)
	st, err := stressState(cfg, now)
	if err != nil {
		return nil, err
	}
	passes := cfg.Passes
	if passes <= 0 {
		passes = 3
	}
	held := 0
	for _, n := range st.nodes {
		held += n.AllocCPUs
	}
	var out []StressResult
	for _, p := range policies {
		st.cfg.Policy = p
		r := StressResult{Policy: p, Nodes: cfg.Nodes, CPUsPerNode: cfg.CPUsPerNode, Running: len(st.running),
			BusyCPUs: held, Pending: len(st.pending), Passes: passes}
		var sum time.Duration
		for i := range passes {
			runtime.GC() // each pass starts from the same heap, not the last one's garbage
			t0 := time.Now()
			plan := scheduler.Schedule(now, st, scheduler.Options{Policy: p, MaxPlacementsPerPass: cfg.MaxPassJobs, UpdatePriorities: true})
			d := time.Since(t0)
			r.Placements = len(plan.Placements)
			sum += d
			if i == 0 || ms(d) < r.PassMinMs {
				r.PassMinMs = ms(d)
			}
			r.PassMaxMs = max(r.PassMaxMs, ms(d))
		}
		r.PassMeanMs = ms(sum) / float64(passes)
		if sum > 0 {
			r.PlacementsPerSec = float64(r.Placements) * float64(passes) / sum.Seconds()
		}
		out = append(out, r)
	}
	return out, nil
}
