package scheduler

import (
	"fmt"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// benchState serves precomputed slices so the benchmark measures the
// scheduler, not the test double.
type benchState struct {
	memState
	pending []*api.Job
	byID    map[uint64]*api.Job
}

func (s *benchState) PendingJobs() []*api.Job       { return s.pending }
func (s *benchState) RunningJobs() []*api.Job       { return nil }
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
