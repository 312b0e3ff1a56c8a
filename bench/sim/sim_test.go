package sim

import (
	"math"
	"strings"
	"testing"
	"time"
)

const (
	nasaTrace    = "../testdata/NASA-iPSC-1993-3.1-cln.swf.gz"
	backfillSWF  = "testdata/backfill.swf"
	floatSlack   = 1e-9
	nasaJobs     = 3000
	nasaCompress = 1.5
)

func near(a, b float64) bool { return math.Abs(a-b) <= floatSlack*max(1, math.Abs(b)) }

func TestBoundedSlowdown(t *testing.T) {
	tests := []struct {
		wait, run, tau int64
		want           float64
	}{
		{0, 100, 10, 1},
		{100, 100, 10, 2},
		{60, 1, 10, 6.1}, // short job: run counts as tau
		{5, 0, 10, 1},    // never below 1
		{0, 0, 10, 1},    // zero run time
		{30, 5, 5, 7},    // tau equal to run
		{198, 50, 10, 4.96},
	}
	for _, tt := range tests {
		if got := boundedSlowdown(tt.wait, tt.run, tt.tau); !near(got, tt.want) {
			t.Errorf("boundedSlowdown(%d, %d, %d) = %v, want %v", tt.wait, tt.run, tt.tau, got, tt.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	seq := func(n int) []int64 {
		out := make([]int64, n)
		for i := range out {
			out[i] = int64(i + 1)
		}
		return out
	}
	tests := []struct {
		values []int64
		p      int
		want   int64
	}{
		{nil, 95, 0},
		{[]int64{7}, 95, 7},
		{seq(3), 95, 3},
		{seq(20), 95, 19},
		{seq(100), 95, 95},
		{seq(101), 95, 96},
		{seq(10), 50, 5},
		{seq(10), 100, 10},
	}
	for _, tt := range tests {
		if got := percentile(tt.values, tt.p); got != tt.want {
			t.Errorf("p%d of %v = %d, want %d", tt.p, tt.values, got, tt.want)
		}
	}
}

func TestShape(t *testing.T) {
	tests := []struct{ procs, cpus, nodes, perNode int }{
		{1, 1, 1, 1},
		{128, 1, 128, 1},
		{5, 32, 1, 5},
		{32, 32, 1, 32},
		{33, 32, 2, 17},
		{64, 32, 2, 32},
		{100, 32, 4, 25},
	}
	for _, tt := range tests {
		if n, c := shape(tt.procs, tt.cpus); n != tt.nodes || c != tt.perNode {
			t.Errorf("shape(%d, %d) = %d × %d, want %d × %d", tt.procs, tt.cpus, n, c, tt.nodes, tt.perNode)
		}
	}
}

func mustRead(t *testing.T, path string, limit int) *Workload {
	t.Helper()
	w, err := ReadSWF(path, limit)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mustRun(t *testing.T, w *Workload, cfg Config) *Result {
	t.Helper()
	r, err := Run(w, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rejected != 0 || r.Unstarted != 0 || r.Cancelled != 0 || r.Completed != len(w.Jobs) {
		t.Fatalf("%s: %d rejected placements, %d never started, %d cancelled, %d of %d completed",
			cfg.Policy, r.Rejected, r.Unstarted, r.Cancelled, r.Completed, len(w.Jobs))
	}
	return r
}

// TestMetrics replays hand-made traces whose schedule is known under FIFO.
func TestMetrics(t *testing.T) {
	tests := []struct {
		name     string
		jobs     []Job
		cfg      Config
		util     float64
		arrUtil  float64
		makespan int64
		meanWait float64
		p95Wait  float64
		bsld     float64
		timedOut int
	}{
		{
			// 1 runs 0–100 on 2 nodes, 2 waits for the whole machine
			// (100–200), 3 waits behind it (200–250).
			name: "fifo holds the small job",
			jobs: []Job{
				{ID: 1, Submit: 0, Run: 100, Procs: 2, ReqTime: 100, User: 1},
				{ID: 2, Submit: 1, Run: 100, Procs: 4, ReqTime: 100, User: 2},
				{ID: 3, Submit: 2, Run: 50, Procs: 2, ReqTime: 50, User: 3},
			},
			cfg:  Config{Nodes: 4, CPUsPerNode: 1},
			util: 700.0 / 1000, arrUtil: 4.0 / 8, makespan: 250, meanWait: 99, p95Wait: 198,
			bsld: (1 + 1.99 + 4.96) / 3,
		},
		{
			// 1 is killed at its 60 s limit, then 2 runs 60–70 (run
			// counted as tau for slowdown).
			name: "time limit",
			jobs: []Job{
				{ID: 1, Submit: 0, Run: 100, Procs: 8, ReqTime: 60, User: 1},
				{ID: 2, Submit: 0, Run: 10, Procs: 8, ReqTime: -1, User: 1},
			},
			cfg:  Config{Nodes: 2, CPUsPerNode: 4},
			util: (480.0 + 80) / (8 * 70), makespan: 70, meanWait: 30, p95Wait: 60,
			bsld: (1 + 7.0) / 2, timedOut: 1,
		},
		{
			// Zero-second jobs end where they start and free the node
			// for the next one in the same second.
			name: "zero run time",
			jobs: []Job{
				{ID: 1, Submit: 5, Run: 0, Procs: 1, User: 1},
				{ID: 2, Submit: 5, Run: 0, Procs: 1, User: 1},
				{ID: 3, Submit: 5, Run: 10, Procs: 1, User: 1},
			},
			cfg:  Config{Nodes: 1, CPUsPerNode: 1},
			util: 1, makespan: 10, meanWait: 0, p95Wait: 0, bsld: 1,
		},
		{
			// Only 0–20 counts while jobs arrive, and job 1 fills half.
			name: "arrival window",
			jobs: []Job{
				{ID: 1, Submit: 0, Run: 10, Procs: 1, User: 1},
				{ID: 2, Submit: 20, Run: 100, Procs: 1, User: 1},
			},
			cfg:  Config{Nodes: 1, CPUsPerNode: 1},
			util: 110.0 / 120, arrUtil: 0.5, makespan: 120, bsld: 1,
		},
		{
			// Passes every 10 s: a job submitted at 3 starts at 10.
			name: "interval",
			jobs: []Job{{ID: 1, Submit: 3, Run: 20, Procs: 1, User: 1}},
			cfg:  Config{Nodes: 1, CPUsPerNode: 1, Interval: 10},
			util: 20.0 / 27, makespan: 27, meanWait: 7, p95Wait: 7, bsld: 27.0 / 20,
		},
		{
			// One placement per pass: the capped passes repeat at the
			// same virtual time, so nobody waits.
			name: "capped passes",
			jobs: []Job{
				{ID: 1, Submit: 0, Run: 10, Procs: 1, User: 1},
				{ID: 2, Submit: 0, Run: 10, Procs: 1, User: 2},
				{ID: 3, Submit: 0, Run: 10, Procs: 1, User: 3},
			},
			cfg:  Config{Nodes: 3, CPUsPerNode: 1, MaxPassJobs: 1},
			util: 1, makespan: 10, meanWait: 0, p95Wait: 0, bsld: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Policy = "fifo"
			r := mustRun(t, &Workload{Jobs: tt.jobs}, tt.cfg)
			if !near(r.Utilization, tt.util) || !near(r.ArrivalUtilization, tt.arrUtil) || r.MakespanSec != tt.makespan || !near(r.MeanWaitSec, tt.meanWait) ||
				!near(r.P95WaitSec, tt.p95Wait) || !near(r.MeanBoundedSlow, tt.bsld) || r.TimedOut != tt.timedOut {
				t.Errorf("utilization %v (%v arriving), makespan %d, mean wait %v, p95 wait %v, bounded slowdown %v, "+
					"timed out %d;\nwant %v (%v), %d, %v, %v, %v, %d", r.Utilization, r.ArrivalUtilization, r.MakespanSec,
					r.MeanWaitSec, r.P95WaitSec, r.MeanBoundedSlow, r.TimedOut,
					tt.util, tt.arrUtil, tt.makespan, tt.meanWait, tt.p95Wait, tt.bsld, tt.timedOut)
			}
			if r.Placements != len(tt.jobs) || r.Passes == 0 {
				t.Errorf("%d placements in %d passes", r.Placements, r.Passes)
			}
		})
	}
}

// TestBackfillStartsSmallJobEarly: the small job fits beside the running
// one and ends before the big job could start anyway.
func TestBackfillStartsSmallJobEarly(t *testing.T) {
	w := mustRead(t, backfillSWF, 0)
	fifo := mustRun(t, w, Config{Nodes: 4, CPUsPerNode: 1, Policy: "fifo"})
	bf := mustRun(t, w, Config{Nodes: 4, CPUsPerNode: 1, Policy: "backfill"})
	if !near(fifo.MeanWaitSec, 99) {
		t.Errorf("fifo mean wait %v, want 99", fifo.MeanWaitSec)
	}
	// Backfill: job 3 runs 2–52, job 2 still starts at 100.
	if !near(bf.MeanWaitSec, 33) || !near(bf.MeanBoundedSlow, (1+1.99+1)/3) {
		t.Errorf("backfill mean wait %v, bounded slowdown %v; want 33, %v", bf.MeanWaitSec, bf.MeanBoundedSlow, (1+1.99+1)/3)
	}
	if bf.MeanBoundedSlow >= fifo.MeanBoundedSlow || bf.MakespanSec > fifo.MakespanSec {
		t.Errorf("backfill slowdown %v, makespan %d; fifo %v, %d", bf.MeanBoundedSlow, bf.MakespanSec,
			fifo.MeanBoundedSlow, fifo.MakespanSec)
	}
}

// sameOutcome compares everything but wall-clock figures.
func sameOutcome(a, b *Result) bool {
	strip := func(r Result) Result {
		r.PassMeanMs, r.PassP95Ms, r.PassMaxMs, r.PassTotalSec, r.PlacementsPerSec, r.WallSec = 0, 0, 0, 0, 0, 0
		return r
	}
	return strip(*a) == strip(*b)
}

func TestDeterministic(t *testing.T) {
	w1, err := Synthetic(SyntheticConfig{Jobs: 3000, Nodes: 64, CPUsPerNode: 8, Users: 20, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	w2, _ := Synthetic(SyntheticConfig{Jobs: 3000, Nodes: 64, CPUsPerNode: 8, Users: 20, Seed: 7})
	for _, p := range Policies {
		t.Run(p, func(t *testing.T) {
			cfg := Config{Nodes: 64, CPUsPerNode: 8, Policy: p}
			a, b := mustRun(t, w1, cfg), mustRun(t, w2, cfg)
			if !sameOutcome(a, b) {
				t.Errorf("two runs differ:\n%+v\n%+v", a, b)
			}
			if a.TimedOut == 0 || a.Utilization <= 0.5 {
				t.Errorf("timed out %d, utilization %v: the workload should kill some jobs and keep the machine busy",
					a.TimedOut, a.Utilization)
			}
		})
	}
}

func TestSynthetic(t *testing.T) {
	tests := []struct {
		nodes, cpus int
		load        float64
	}{
		{10_000, 32, 0.9},
		{128, 1, 0.5},
		{16, 24, 0.9},
	}
	for _, tt := range tests {
		w, err := Synthetic(SyntheticConfig{Jobs: 20_000, Nodes: tt.nodes, CPUsPerNode: tt.cpus, Load: tt.load, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if got := OfferedLoad(w, tt.nodes, tt.cpus); math.Abs(got-tt.load) > 0.05*tt.load {
			t.Errorf("%d×%d: offered load %v, want about %v", tt.nodes, tt.cpus, got, tt.load)
		}
		cfg := Config{Nodes: tt.nodes, CPUsPerNode: tt.cpus}
		users := map[int]int{}
		for i := range w.Jobs {
			j := &w.Jobs[i]
			users[j.User]++
			if !cfg.Fits(j) || j.Run < minRunSec || j.Run > maxRunSec || j.ReqTime%60 != 0 || j.ReqTime <= 0 ||
				(i > 0 && j.Submit < w.Jobs[i-1].Submit) {
				t.Fatalf("%d×%d: bad job %+v", tt.nodes, tt.cpus, *j)
			}
		}
		if len(users) < 20 {
			t.Errorf("%d×%d: only %d users", tt.nodes, tt.cpus, len(users))
		}
	}
}

func TestRunRejects(t *testing.T) {
	tests := []struct {
		name string
		jobs []Job
		want string
	}{
		{"larger than the machine", []Job{{ID: 1, Run: 1, Procs: 5}}, "more than 2 nodes"},
		{"out of order", []Job{{ID: 1, Submit: 5, Run: 1, Procs: 1}, {ID: 2, Submit: 1, Run: 1, Procs: 1}}, "submit order"},
		{"same id twice at once", []Job{{ID: 1, Run: 9, Procs: 1}, {ID: 1, Submit: 1, Run: 1, Procs: 1}}, "used twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(&Workload{Jobs: tt.jobs}, Config{Nodes: 2, CPUsPerNode: 2, Policy: "fifo"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestNASABackfillBeatsFIFO replays the start of the NASA iPSC/860 trace
// with arrivals compressed (at its native load of 0.47 nobody waits and
// every policy is the same).
func TestNASABackfillBeatsFIFO(t *testing.T) {
	w := mustRead(t, nasaTrace, nasaJobs)
	compress(w, nasaCompress)
	cfg := Config{Nodes: 128, CPUsPerNode: 1}
	res := map[string]*Result{}
	for _, p := range []string{"fifo", "backfill"} {
		cfg.Policy = p
		start := time.Now()
		res[p] = mustRun(t, w, cfg)
		t.Logf("%s: utilization %.3f, mean wait %.0f s, mean bounded slowdown %.2f (%v)", p,
			res[p].Utilization, res[p].MeanWaitSec, res[p].MeanBoundedSlow, time.Since(start).Round(time.Millisecond))
	}
	fifo, bf := res["fifo"], res["backfill"]
	if bf.MeanBoundedSlow >= fifo.MeanBoundedSlow {
		t.Errorf("backfill mean bounded slowdown %.2f, fifo %.2f", bf.MeanBoundedSlow, fifo.MeanBoundedSlow)
	}
	if bf.Utilization < fifo.Utilization {
		t.Errorf("backfill utilization %.4f, fifo %.4f", bf.Utilization, fifo.Utilization)
	}
}
