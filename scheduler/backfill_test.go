package scheduler

import (
	"maps"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// policyCase is one row of the policy tables: nodes get the allocations of
// the running jobs among jobs; one partition "p" spans them all.
type policyCase struct {
	name        string
	nodes       []*api.Node
	jobs        []*api.Job
	policy      string // "": the configuration's (backfill)
	cfg         func(*api.SchedConfig)
	wantPlaced  map[uint64]string // job -> comma-joined nodes
	wantReasons map[uint64]string // exactly Plan.Reasons
	wantStarts  map[uint64]time.Duration
	parts       []*api.Partition // nil: one partition "p" over all nodes
	check       func(t *testing.T, plan Plan)
}

func runPolicyCase(t *testing.T, tc policyCase, st *memState) {
	t.Helper()
	st.nodes = holding(tc.nodes, tc.jobs)
	st.parts = tc.parts
	if st.parts == nil {
		st.parts = []*api.Partition{part("p", 0, tc.nodes...)}
	}
	st.jobs = tc.jobs
	cfg := api.DefaultSchedConfig()
	if tc.cfg != nil {
		tc.cfg(&cfg)
	}
	st.cfg = &cfg
	plan := Schedule(t0, st, Options{Policy: tc.policy})
	placed := map[uint64]string{}
	for _, p := range plan.Placements {
		placed[p.JobID] = strings.Join(p.Nodes, ",")
	}
	if !maps.Equal(placed, orEmpty(tc.wantPlaced)) {
		t.Errorf("placed = %v, want %v", placed, tc.wantPlaced)
	}
	if !maps.Equal(orEmpty(plan.Reasons), orEmpty(tc.wantReasons)) {
		t.Errorf("reasons = %v, want %v", plan.Reasons, tc.wantReasons)
	}
	starts := map[uint64]time.Duration{}
	for id, at := range plan.StartTimes {
		starts[id] = at.Sub(t0)
	}
	if !maps.Equal(starts, orEmpty(tc.wantStarts)) {
		t.Errorf("start times = %v, want %v", starts, tc.wantStarts)
	}
	if err := applyPlan(st, plan); err != nil {
		t.Errorf("plan would not apply: %v", err)
	}
	if again := Schedule(t0, st, Options{Policy: tc.policy}); !reflect.DeepEqual(again, plan) {
		t.Errorf("second pass differs: %+v vs %+v", again, plan)
	}
	if tc.check != nil {
		tc.check(t, plan)
	}
}

func TestBackfill(t *testing.T) {
	h := time.Hour
	n4 := []*api.Node{upNode("n1", 4, 4000, 0)}
	exclusiveNodes := part("x", 0, n4...)
	exclusiveNodes.ExclusiveNodes = true
	// n1 has 2 of 4 CPUs free until job 100 ends at +1h.
	halfBusy := run(100, 2, -h, 2*h, "n1")
	tests := []policyCase{
		{
			name:        "short job backfills before the reserved start",
			nodes:       n4,
			jobs:        []*api.Job{halfBusy, with(pend(1, "p"), cpus(4), limit(h)), with(pend(2, "p"), cpus(2), limit(h))},
			wantPlaced:  map[uint64]string{2: "n1"},
			wantReasons: map[uint64]string{1: api.ReasonResources},
			wantStarts:  map[uint64]time.Duration{1: h},
		},
		{
			name:        "a job deferred with --begin waits with BeginTime and lets others start",
			nodes:       n4,
			jobs:        []*api.Job{with(pend(1, "p"), cpus(4), limit(h), func(j *api.Job) { j.Spec.BeginTime = t0.Add(2 * h) }), with(pend(2, "p"), cpus(4), limit(h))},
			wantPlaced:  map[uint64]string{2: "n1"},
			wantReasons: map[uint64]string{1: api.ReasonBeginTime},
			wantStarts:  map[uint64]time.Duration{1: 2 * h},
		},
		{
			name:        "longer job would delay the top job",
			nodes:       n4,
			jobs:        []*api.Job{halfBusy, with(pend(1, "p"), cpus(4), limit(h)), with(pend(2, "p"), cpus(2), limit(2*h))},
			wantReasons: map[uint64]string{1: api.ReasonResources, 2: api.ReasonPriority},
			wantStarts:  map[uint64]time.Duration{1: h, 2: 2 * h},
		},
		{
			name:        "job without a time limit never runs into a reservation",
			nodes:       n4,
			jobs:        []*api.Job{halfBusy, with(pend(1, "p"), cpus(4), limit(h)), with(pend(2, "p"), cpus(1))},
			wantReasons: map[uint64]string{1: api.ReasonResources, 2: api.ReasonPriority},
			wantStarts:  map[uint64]time.Duration{1: h, 2: 2 * h},
		},
		{
			name:  "backfill on nodes the top job does not need",
			nodes: []*api.Node{upNode("n1", 4, 4000, 0), upNode("n2", 4, 4000, 0), upNode("n3", 2, 4000, 0)},
			jobs: []*api.Job{
				run(100, 2, -h, 2*h, "n1"), run(101, 2, -h, 3*h, "n2"),
				with(pend(1, "p"), nnodes(2), cpus(4), limit(h)),
				with(pend(2, "p"), cpus(2), limit(10*h)),
			},
			wantPlaced:  map[uint64]string{2: "n3"},
			wantReasons: map[uint64]string{1: api.ReasonResources},
			wantStarts:  map[uint64]time.Duration{1: 2 * h},
		},
		{
			name:  "a held node takes a long job while it has room for both",
			nodes: []*api.Node{upNode("n1", 8, 8000, 0)},
			jobs: []*api.Job{
				run(100, 4, -h, 2*h, "n1"),
				with(pend(1, "p"), cpus(6), limit(h)),
				with(pend(2, "p"), cpus(2), limit(10*h)),
				with(pend(3, "p"), cpus(2), limit(10*h)),
			},
			wantPlaced:  map[uint64]string{2: "n1"},
			wantReasons: map[uint64]string{1: api.ReasonResources, 3: api.ReasonPriority},
			wantStarts:  map[uint64]time.Duration{1: h, 3: 2 * h},
		},
		{
			name:  "start time is the end of the job that frees the room",
			nodes: n4,
			jobs: []*api.Job{
				run(100, 1, -h, 90*time.Minute, "n1"), run(101, 2, -30*time.Minute, 2*h, "n1"),
				with(pend(1, "p"), cpus(3), limit(h)),
			},
			wantReasons: map[uint64]string{1: api.ReasonResources},
			wantStarts:  map[uint64]time.Duration{1: 90 * time.Minute},
		},
		{
			name:  "exclusive job waits for an empty node",
			nodes: n4,
			jobs: []*api.Job{
				run(100, 1, -h, 2*h, "n1"),
				with(pend(1, "p"), exclusive(), limit(h)),
				with(pend(2, "p"), limit(30*time.Minute)),
				with(pend(3, "p"), limit(2*h)),
			},
			wantPlaced:  map[uint64]string{2: "n1"},
			wantReasons: map[uint64]string{1: api.ReasonResources, 3: api.ReasonPriority},
			wantStarts:  map[uint64]time.Duration{1: h, 3: 2 * h},
		},
		{
			name:  "reservation within the window holds the nodes",
			nodes: []*api.Node{upNode("n1", 4, 4000, 0), upNode("n2", 4, 4000, 0)},
			jobs: []*api.Job{
				run(100, 4, -h, 3*h, "n1"),
				with(pend(1, "p"), nnodes(2), cpus(4), limit(h)),
				with(pend(2, "p"), cpus(1)),
			},
			wantReasons: map[uint64]string{1: api.ReasonResources, 2: api.ReasonPriority},
			wantStarts:  map[uint64]time.Duration{1: 2 * h, 2: 3 * h},
		},
		{
			name:  "no reservation beyond the window",
			nodes: []*api.Node{upNode("n1", 4, 4000, 0), upNode("n2", 4, 4000, 0)},
			jobs: []*api.Job{
				run(100, 4, -h, 3*h, "n1"),
				with(pend(1, "p"), nnodes(2), cpus(4), limit(h)),
				with(pend(2, "p"), cpus(1)),
			},
			cfg:         func(c *api.SchedConfig) { c.BackfillWindowSec = 3600 },
			wantPlaced:  map[uint64]string{2: "n2"},
			wantReasons: map[uint64]string{1: api.ReasonResources},
		},
		{
			name:  "only BackfillDepth jobs are tested behind a blocked one",
			nodes: n4,
			jobs: []*api.Job{
				halfBusy,
				with(pend(1, "p"), cpus(4), limit(h)),
				with(pend(2, "p"), limit(30*time.Minute)),
				with(pend(3, "p"), limit(30*time.Minute)),
			},
			cfg:         func(c *api.SchedConfig) { c.BackfillDepth = 1 },
			wantPlaced:  map[uint64]string{2: "n1"},
			wantReasons: map[uint64]string{1: api.ReasonResources, 3: api.ReasonPriority},
			wantStarts:  map[uint64]time.Duration{1: h},
		},
		{
			name:  "BackfillReservations bounds the reservations",
			nodes: n4,
			jobs: []*api.Job{
				halfBusy,
				with(pend(1, "p"), cpus(4), limit(h)),
				with(pend(2, "p"), cpus(4), limit(h)),
				with(pend(3, "p"), limit(30*time.Minute)),
			},
			cfg:         func(c *api.SchedConfig) { c.BackfillReservations = 1 },
			wantPlaced:  map[uint64]string{3: "n1"},
			wantReasons: map[uint64]string{1: api.ReasonResources, 2: api.ReasonPriority},
			wantStarts:  map[uint64]time.Duration{1: h},
		},
		{
			name:        "priority policy does not backfill",
			nodes:       n4,
			policy:      PolicyPriority,
			jobs:        []*api.Job{halfBusy, with(pend(1, "p"), cpus(4), limit(h)), with(pend(2, "p"), cpus(2), limit(h))},
			wantReasons: map[uint64]string{1: api.ReasonResources, 2: api.ReasonPriority},
			wantStarts:  map[uint64]time.Duration{1: h},
		},
		{
			name:        "configured priority policy does not backfill",
			nodes:       n4,
			cfg:         func(c *api.SchedConfig) { c.Policy = PolicyPriority },
			jobs:        []*api.Job{halfBusy, with(pend(1, "p"), cpus(4), limit(h)), with(pend(2, "p"), cpus(2), limit(h))},
			wantReasons: map[uint64]string{1: api.ReasonResources, 2: api.ReasonPriority},
			wantStarts:  map[uint64]time.Duration{1: h},
		},
		{
			name:        "fifo does not backfill",
			nodes:       n4,
			policy:      PolicyFIFO,
			jobs:        []*api.Job{halfBusy, with(pend(1, "p"), cpus(4), limit(h)), with(pend(2, "p"), cpus(2), limit(h))},
			wantReasons: map[uint64]string{1: api.ReasonResources, 2: api.ReasonPriority},
			wantStarts:  map[uint64]time.Duration{1: h},
		},
		{
			name:        "fifo starts the oldest job whatever its priority",
			nodes:       []*api.Node{upNode("n1", 1, 1000, 0)},
			policy:      PolicyFIFO,
			jobs:        []*api.Job{with(pend(1, "p"), nice(1000)), with(pend(2, "p"), nice(-1000))},
			wantPlaced:  map[uint64]string{1: "n1"},
			wantReasons: map[uint64]string{2: api.ReasonResources},
		},
		{
			name:        "priority starts the highest priority job",
			nodes:       []*api.Node{upNode("n1", 1, 1000, 0)},
			policy:      PolicyPriority,
			jobs:        []*api.Job{with(pend(1, "p"), nice(1000)), with(pend(2, "p"), nice(-1000))},
			wantPlaced:  map[uint64]string{2: "n1"},
			wantReasons: map[uint64]string{1: api.ReasonResources},
		},
		{
			name:        "exclusive partition gives whole nodes",
			nodes:       []*api.Node{upNode("n1", 4, 4000, 0)},
			parts:       []*api.Partition{exclusiveNodes},
			jobs:        []*api.Job{pend(1, "x"), pend(2, "x")},
			wantPlaced:  map[uint64]string{1: "n1"},
			wantReasons: map[uint64]string{2: api.ReasonResources},
			check: func(t *testing.T, plan Plan) {
				if p := plan.Placements[0]; !p.Exclusive || p.CPUs != 4 {
					t.Errorf("placement = %+v, want the whole node", p)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runPolicyCase(t, tc, &memState{}) })
	}
}

// TestBackfillKeepsFirstReservation checks on random clusters that what
// backfill starts never delays the first reserved job: once the pass's
// placements run, that job's earliest start is no later.
func TestBackfillKeepsFirstReservation(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	checked := 0
	for round := range 300 {
		st := randomCluster(rng)
		plan := Schedule(t0, st, Options{Policy: PolicyBackfill})
		var first *api.Job
		for _, j := range queueOrder(st, PolicyBackfill) {
			if _, ok := plan.StartTimes[j.ID]; ok {
				first = j
				break
			}
		}
		if first == nil {
			continue
		}
		checked++
		next := Schedule(t0, afterPlan(st, plan), Options{Policy: PolicyBackfill})
		was, now := plan.StartTimes[first.ID], next.StartTimes[first.ID]
		if now.IsZero() || now.After(was) {
			t.Fatalf("round %d: job %d expected at %v, after backfill at %v", round, first.ID, was.Sub(t0), now.Sub(t0))
		}
	}
	t.Logf("%d rounds with a reservation", checked)
	if checked < 50 {
		t.Fatalf("only %d rounds had a reservation", checked)
	}
}
