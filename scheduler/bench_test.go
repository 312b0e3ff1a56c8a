package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// benchState serves precomputed slices so the benchmark measures the
// scheduler, not the test double.
type benchState struct {
	memState
	pending []*api.Job
	running []*api.Job
	byID    map[uint64]*api.Job
}

func (s *benchState) PendingJobs() []*api.Job       { return s.pending }
func (s *benchState) RunningJobs() []*api.Job       { return s.running }
func (s *benchState) Job(id uint64) *api.Job        { return s.byID[id] }
func (s *benchState) JobsByArray(uint64) []*api.Job { return nil }

func newBenchState(nodeCount, cpus, jobCount int) *benchState {
	st := &benchState{byID: make(map[uint64]*api.Job, jobCount)}
	for i := range nodeCount {
		st.nodes = append(st.nodes, upNode(fmt.Sprintf("c%04d", i), cpus, 128_000, 0))
	}
	st.parts = []*api.Partition{part("batch", 0, st.nodes...)}
	for i := range jobCount {
		j := pend(uint64(i+1), "batch")
		j.SubmitTime = t0.Add(time.Duration(i) * time.Millisecond)
		j.Spec.MemoryPerNodeMB = 1000
		st.pending = append(st.pending, j)
		st.byID[j.ID] = j
	}
	return st
}

func benchmarkSchedule(b *testing.B, nodeCount int) {
	st := newBenchState(nodeCount, 32, 10_000)
	placed := 0
	b.ReportAllocs()
	for b.Loop() {
		plan := Schedule(t0, st, Options{})
		placed += len(plan.Placements)
	}
	b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "placements/s")
}

// BenchmarkSchedule1000Nodes places 10,000 1-CPU jobs on 1,000 32-CPU nodes.
func BenchmarkSchedule1000Nodes(b *testing.B) { benchmarkSchedule(b, 1000) }

// BenchmarkSchedule100Nodes fills 100 32-CPU nodes (3,200 placements) and
// gives the other 6,800 jobs a reason.
func BenchmarkSchedule100Nodes(b *testing.B) { benchmarkSchedule(b, 100) }

// newBackfillBenchState is a busy cluster: nodeCount 32-CPU nodes each half
// full of running jobs (1 to 8 CPUs, 1 to 24 hours, started up to a limit
// ago), and jobCount pending jobs of mixed shapes: mostly 1 to 16 CPUs on
// one node, one in ten 2 to 4 whole nodes, with limits of 10 minutes to
// 24 hours.
func newBackfillBenchState(nodeCount, jobCount int) *benchState {
	rng := rand.New(rand.NewPCG(7, 11))
	st := &benchState{byID: make(map[uint64]*api.Job, jobCount)}
	id := uint64(1)
	for i := range nodeCount {
		n := upNode(fmt.Sprintf("c%05d", i), 32, 128_000, 0)
		for n.AllocCPUs < 16 {
			c := min(1<<rng.IntN(4), 16-n.AllocCPUs)
			limit := int64(3600 * (1 + rng.IntN(24)))
			j := &api.Job{ID: id, ArrayTaskID: -1, User: "u", State: api.JobRunning,
				Spec:      api.JobSpec{Partition: "batch", Nodes: 1, Tasks: c, CPUsPerTask: 1},
				StartTime: t0.Add(-time.Duration(rng.Int64N(limit)) * time.Second), TimeLimitSec: limit,
				Nodes: []string{n.Name}, AllocCPUs: c, AllocMemoryMB: int64(c) * 2000}
			n.AllocCPUs += c
			n.AllocMemoryMB += j.AllocMemoryMB
			st.running = append(st.running, j)
			st.byID[id] = j
			id++
		}
		st.nodes = append(st.nodes, n)
	}
	st.parts = []*api.Partition{part("batch", 0, st.nodes...)}
	for i := range jobCount {
		j := pend(id, "batch")
		j.User = fmt.Sprintf("user%d", i%50)
		j.SubmitTime = t0.Add(-time.Duration(jobCount-i) * time.Second)
		if rng.IntN(10) == 0 {
			j.Spec.Nodes, j.Spec.Tasks = 2+rng.IntN(3), 0
			j.Spec.TasksPerNode = 32
		} else {
			j.Spec.Tasks = 1 << rng.IntN(5)
		}
		j.Spec.MemoryPerCPUMB = 2000
		j.TimeLimitSec = int64(600 * (1 + rng.IntN(144)))
		st.pending = append(st.pending, j)
		st.byID[id] = j
		id++
	}
	return st
}

// BenchmarkBackfill10kNodes100kJobs is one backfill pass over 10,000
// half-full 32-CPU nodes and 100,000 pending jobs: "first" with no reason
// set yet (every job gets one in the plan), "steady" with the reasons of
// the previous pass stored, as after it was applied.
func BenchmarkBackfill10kNodes100kJobs(b *testing.B) {
	for _, steady := range []bool{false, true} {
		name := map[bool]string{false: "first", true: "steady"}[steady]
		b.Run(name, func(b *testing.B) {
			st := newBackfillBenchState(10_000, 100_000)
			if steady {
				plan := Schedule(t0, st, Options{Policy: PolicyBackfill})
				for id, r := range plan.Reasons {
					st.byID[id].Reason = r
				}
			}
			placed, starts := 0, 0
			b.ReportAllocs()
			for b.Loop() {
				plan := Schedule(t0, st, Options{Policy: PolicyBackfill})
				placed += len(plan.Placements)
				starts += len(plan.StartTimes)
			}
			b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "placements/s")
			b.ReportMetric(float64(placed)/float64(b.N), "placed/pass")
			b.ReportMetric(float64(starts)/float64(b.N), "starts/pass")
		})
	}
}

// BenchmarkPriorities10kNodes100kJobs is the priority computation a pass
// makes (PriorityValues), alone on the same state: the baseline that tells
// its share of a pass.
func BenchmarkPriorities10kNodes100kJobs(b *testing.B) {
	st := newBackfillBenchState(10_000, 100_000)
	for b.Loop() {
		PriorityValues(t0, st)
	}
}
