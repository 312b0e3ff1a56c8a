package scheduler

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

func TestPriorities(t *testing.T) {
	// Weights 1000 and a 1000 s max age keep the expected numbers readable.
	base := api.SchedConfig{
		Weights:    api.PriorityWeights{Age: 1000, FairShare: 1000, JobSize: 1000, Partition: 1000, QOS: 1000},
		MaxAgeSec:  1000,
		DefaultQOS: "normal",
	}
	// 4 nodes of 8 CPUs: a 1-node 1-CPU job has size (1/4 + 1/32)/2 =
	// .140625, weighted 141 (859 favoring small).
	cluster := nodes("n", 4, 8, 8000)
	favorSmall := func(c *api.SchedConfig) { c.FavorSmall = true }
	tiers := []*api.Partition{part("p", 0), part("mid", 2), part("top", 4)}
	qos := []*api.QOS{{Name: "normal", Priority: 10}, {Name: "high", Priority: 40}}
	qosOf := func(q string) func(*api.Job) { return func(j *api.Job) { j.Spec.QOS = q } }
	inAccount := func(a string) func(*api.Job) { return func(j *api.Job) { j.Spec.Account = a } }
	tests := []struct {
		name   string
		job    *api.Job
		age    time.Duration // now - submit
		cfg    func(*api.SchedConfig)
		parts  []*api.Partition // nil: part("p", 0)
		qos    []*api.QOS
		assocs []*api.Association
		// want leaves out JobID, User and, when "", Partition "p" and QOS
		// "normal"; the test fills them in.
		want api.PriorityFactors
	}{
		{name: "age zero at submit", job: pend(1, "p"),
			want: api.PriorityFactors{Priority: 1141, FairShare: 1000, JobSize: 141}},
		{name: "age half of max", job: pend(1, "p"), age: 500 * time.Second,
			want: api.PriorityFactors{Priority: 1641, Age: 500, FairShare: 1000, JobSize: 141}},
		{name: "age over max is capped", job: pend(1, "p"), age: 5000 * time.Second,
			want: api.PriorityFactors{Priority: 2141, Age: 1000, FairShare: 1000, JobSize: 141}},
		{name: "submitted after now", job: pend(1, "p"), age: -10 * time.Second,
			want: api.PriorityFactors{Priority: 1141, FairShare: 1000, JobSize: 141}},
		{name: "no max age", job: pend(1, "p"), age: 5000 * time.Second, cfg: func(c *api.SchedConfig) { c.MaxAgeSec = 0 },
			want: api.PriorityFactors{Priority: 1141, FairShare: 1000, JobSize: 141}},
		{name: "size 2 nodes of 4 CPUs", job: with(pend(1, "p"), nnodes(2), cpus(4)), // (2/4 + 8/32)/2
			want: api.PriorityFactors{Priority: 1375, FairShare: 1000, JobSize: 375}},
		{name: "size whole cluster", job: with(pend(1, "p"), nnodes(4), cpus(8)),
			want: api.PriorityFactors{Priority: 2000, FairShare: 1000, JobSize: 1000}},
		{name: "favor small 1 CPU", job: pend(1, "p"), cfg: favorSmall,
			want: api.PriorityFactors{Priority: 1859, FairShare: 1000, JobSize: 859}},
		{name: "favor small 2 nodes of 4 CPUs", job: with(pend(1, "p"), nnodes(2), cpus(4)), cfg: favorSmall,
			want: api.PriorityFactors{Priority: 1625, FairShare: 1000, JobSize: 625}},
		{name: "favor small whole cluster", job: with(pend(1, "p"), nnodes(4), cpus(8)), cfg: favorSmall,
			want: api.PriorityFactors{Priority: 1000, FairShare: 1000}},
		{name: "partition tier over the largest", job: pend(1, "mid"), parts: tiers,
			want: api.PriorityFactors{Partition: "mid", Priority: 1641, FairShare: 1000, JobSize: 141, PartPrio: 500}},
		{name: "top partition", job: pend(1, "top"), parts: tiers,
			want: api.PriorityFactors{Partition: "top", Priority: 2141, FairShare: 1000, JobSize: 141, PartPrio: 1000}},
		{name: "default partition resolved", job: pend(1, ""),
			parts: []*api.Partition{part("p", 0), {Name: "mid", PriorityTier: 2, Default: true}, part("top", 4)},
			want:  api.PriorityFactors{Partition: "mid", Priority: 1641, FairShare: 1000, JobSize: 141, PartPrio: 500}},
		{name: "unknown partition", job: pend(1, "gone"), parts: tiers,
			want: api.PriorityFactors{Partition: "gone", Priority: 1141, FairShare: 1000, JobSize: 141}},
		{name: "qos over the largest", job: with(pend(1, "p"), qosOf("high")), qos: qos,
			want: api.PriorityFactors{QOS: "high", Priority: 2141, FairShare: 1000, JobSize: 141, QOSPrio: 1000}},
		{name: "cluster default qos", job: pend(1, "p"), qos: qos,
			want: api.PriorityFactors{Priority: 1391, FairShare: 1000, JobSize: 141, QOSPrio: 250}},
		{name: "user association default qos", job: pend(1, "p"), qos: qos,
			assocs: []*api.Association{{Account: "root", User: "alice", DefaultQOS: "high"}},
			want:   api.PriorityFactors{QOS: "high", Priority: 2141, FairShare: 1000, JobSize: 141, QOSPrio: 1000}},
		{name: "account association default qos", job: with(pend(1, "p"), inAccount("chem")), qos: qos,
			assocs: []*api.Association{{Account: "chem", DefaultQOS: "high"}, {Account: "chem", User: "alice"}},
			want: api.PriorityFactors{Account: "chem", QOS: "high", Priority: 2141, FairShare: 1000, JobSize: 141,
				QOSPrio: 1000}},
		{name: "unknown qos", job: with(pend(1, "p"), qosOf("bogus")), qos: qos,
			want: api.PriorityFactors{QOS: "bogus", Priority: 1141, FairShare: 1000, JobSize: 141}},
		{name: "nice subtracts", job: with(pend(1, "p"), nice(100)),
			want: api.PriorityFactors{Priority: 1041, FairShare: 1000, JobSize: 141, Nice: 100}},
		{name: "negative nice adds", job: with(pend(1, "p"), nice(-100)),
			want: api.PriorityFactors{Priority: 1241, FairShare: 1000, JobSize: 141, Nice: -100}},
		{name: "never below 1", job: with(pend(1, "p"), nice(100_000)),
			want: api.PriorityFactors{Priority: 1, FairShare: 1000, JobSize: 141, Nice: 100_000}},
		{name: "zero weights give 1", job: pend(1, "p"), age: 500 * time.Second,
			cfg:  func(c *api.SchedConfig) { c.Weights = api.PriorityWeights{} },
			want: api.PriorityFactors{Priority: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			parts := tc.parts
			if parts == nil {
				parts = []*api.Partition{part("p", 0)}
			}
			st := &memState{jobs: []*api.Job{tc.job}, nodes: cluster, parts: parts, qos: tc.qos, assocs: tc.assocs, cfg: &cfg}
			want := tc.want
			want.JobID, want.User = 1, "alice"
			if want.Partition == "" {
				want.Partition = "p"
			}
			if want.QOS == "" {
				want.QOS = "normal"
			}
			got := Priorities(tc.job.SubmitTime.Add(tc.age), st)
			if len(got) != 1 || got[1] != want {
				t.Errorf("Priorities = %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestPrioritiesFairShare(t *testing.T) {
	// A used, B did not: B's user ranks first (1.0), A's second (.5). The
	// running job is left out of the result but its usage counts.
	running := with(fsJob(9, "A", "ann"), state(api.JobRunning), func(j *api.Job) {
		j.StartTime, j.AllocCPUs, j.Nodes = fsNow.Add(-time.Hour), 1, []string{"n1"}
	})
	tests := []struct {
		name  string
		jobs  []*api.Job
		usage []*api.FairShareUsage
		want  map[uint64]int64 // job -> FairShare
	}{
		{name: "no usage", jobs: []*api.Job{fsJob(1, "A", "ann"), fsJob(2, "B", "bea")},
			want: map[uint64]int64{1: 10_000, 2: 10_000}},
		{name: "stored usage", jobs: []*api.Job{fsJob(1, "A", "ann"), fsJob(2, "B", "bea")},
			usage: []*api.FairShareUsage{fsUsed("A", "ann", 50)},
			want:  map[uint64]int64{1: 5_000, 2: 10_000}},
		{name: "running job usage", jobs: []*api.Job{fsJob(1, "A", "ann"), fsJob(2, "B", "bea"), running},
			want: map[uint64]int64{1: 5_000, 2: 10_000}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &memState{
				jobs:     tc.jobs,
				accounts: []*api.Account{fsAccount("A", ""), fsAccount("B", "")},
				usage:    tc.usage,
			}
			got := map[uint64]int64{}
			for id, f := range Priorities(fsNow, st) {
				got[id] = f.FairShare
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("fairshare = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestPriorityValuesMatch checks the list form against the map form on
// the benchmark's queue.
func TestPriorityValuesMatch(t *testing.T) {
	st := benchPrioState(5000)
	prios := Priorities(t0, st)
	vals := PriorityValues(t0, st)
	distinct := map[int64]bool{}
	for k, j := range st.pending {
		if vals[k] != prios[j.ID].Priority {
			t.Fatalf("job %d: value %d, factors %+v", j.ID, vals[k], prios[j.ID])
		}
		distinct[vals[k]] = true
	}
	if len(distinct) < 100 {
		t.Errorf("only %d distinct priorities", len(distinct))
	}
}

// prioBenchState serves precomputed job slices so the benchmark measures
// the priority calculation, not the test double.
type prioBenchState struct {
	memState
	pending, running []*api.Job
}

func (s *prioBenchState) PendingJobs() []*api.Job { return s.pending }
func (s *prioBenchState) RunningJobs() []*api.Job { return s.running }

// BenchmarkPriorities100k: 100,000 pending jobs of 1,000 users in 50
// accounts, 10,000 running jobs on 10,000 nodes, usage for every user.
// The users take turns, so the last-leaf shortcut never applies.
func BenchmarkPriorities100k(b *testing.B) {
	st := benchPrioState(100_000)
	b.ReportAllocs()
	for b.Loop() {
		if got := Priorities(t0, st); len(got) != 100_000 {
			b.Fatalf("%d priorities", len(got))
		}
	}
}

// BenchmarkPriorityValues100k is the same calculation without the map.
func BenchmarkPriorityValues100k(b *testing.B) {
	st := benchPrioState(100_000)
	b.ReportAllocs()
	for b.Loop() {
		if got := PriorityValues(t0, st); len(got) != 100_000 {
			b.Fatalf("%d priorities", len(got))
		}
	}
}

func benchPrioState(jobs int) *prioBenchState {
	st := &prioBenchState{}
	st.nodes = nodes("c", 10_000, 64, 256_000)
	st.parts = []*api.Partition{part("batch", 0, st.nodes...), part("gpu", 1)}
	st.qos = []*api.QOS{{Name: "normal", Priority: 10}, {Name: "high", Priority: 100, UsageFactor: 2}}
	cfg := api.DefaultSchedConfig()
	st.cfg = &cfg
	for a := range 50 {
		st.accounts = append(st.accounts, &api.Account{Name: fmt.Sprintf("acct%02d", a)})
		st.assocs = append(st.assocs, &api.Association{Account: fmt.Sprintf("acct%02d", a), Shares: 1 + a%3})
	}
	for u := range 1000 {
		acct := fmt.Sprintf("acct%02d", u%50)
		user := fmt.Sprintf("user%03d", u)
		st.assocs = append(st.assocs, &api.Association{Account: acct, User: user, Shares: 1})
		st.usage = append(st.usage, &api.FairShareUsage{Account: acct, User: user, Raw: float64(u * 1000),
			UpdatedAt: t0.Add(-time.Hour)})
	}
	job := func(id uint64) *api.Job {
		u := int(id) % 1000
		j := with(fsJob(id, fmt.Sprintf("acct%02d", u%50), fmt.Sprintf("user%03d", u)), cpus(1+u%8), nnodes(1+u%4))
		if u%10 == 0 {
			j.Spec.QOS = "high"
		}
		return j
	}
	for i := range jobs {
		st.pending = append(st.pending, job(uint64(i+1)))
	}
	for i := range jobs / 10 {
		j := with(job(uint64(jobs+1+i)), state(api.JobRunning))
		j.StartTime, j.AllocCPUs, j.Nodes = t0.Add(-time.Minute), j.Spec.CPUsPerNode(), []string{st.nodes[i].Name}
		st.running = append(st.running, j)
	}
	return st
}
