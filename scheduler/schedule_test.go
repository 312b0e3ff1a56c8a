package scheduler

import (
	"cmp"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

func TestSchedule(t *testing.T) {
	busy := func(n *api.Node, cpus int) *api.Node { n.AllocCPUs = cpus; return n }
	down := func(n *api.Node) *api.Node { n.State = api.NodeDown; return n }
	drained := func(n *api.Node) *api.Node { n.Drain = true; return n }
	// Targets for the dependency rows, all held so they never start.
	targets := []*api.Job{
		with(pend(100, "p"), state(api.JobCompleted)),
		with(pend(101, "p"), state(api.JobFailed)),
		with(pend(102, "p"), state(api.JobRunning)),
		with(pend(103, "p"), held("admin"), reason(api.ReasonJobHeldAdmin)),
		with(pend(201, "p"), task(200, 0, 0), state(api.JobCompleted)),
		with(pend(202, "p"), task(200, 1, 0), state(api.JobRunning)),
		with(pend(104, "p"), state(api.JobCancelled), submitted(-time.Hour)),
	}
	bigNode := []*api.Node{upNode("n1", 64, 64000, 0)}

	tests := []struct {
		name        string
		nodes       []*api.Node
		parts       []*api.Partition // nil: one tier-0 partition "p" over all nodes
		jobs        []*api.Job
		opts        Options
		wantPlaced  map[uint64]string // job -> comma-joined nodes
		wantReasons map[uint64]string // exactly Plan.Reasons
		check       func(t *testing.T, plan Plan)
	}{
		{
			name:        "higher priority first",
			nodes:       []*api.Node{upNode("n1", 1, 1000, 0)},
			jobs:        []*api.Job{pend(1, "p"), with(pend(2, "p"), nice(-100))},
			wantPlaced:  map[uint64]string{2: "n1"},
			wantReasons: map[uint64]string{1: api.ReasonResources},
		},
		{
			name:        "FIFO within equal priority",
			nodes:       []*api.Node{upNode("n1", 1, 1000, 0)},
			jobs:        []*api.Job{pend(2, "p"), with(pend(3, "p"), submitted(0))},
			wantPlaced:  map[uint64]string{3: "n1"},
			wantReasons: map[uint64]string{2: api.ReasonResources},
		},
		{
			name:        "equal submit time falls back to id",
			nodes:       []*api.Node{upNode("n1", 1, 1000, 0)},
			jobs:        []*api.Job{with(pend(5, "p"), submitted(0)), with(pend(4, "p"), submitted(0))},
			wantPlaced:  map[uint64]string{4: "n1"},
			wantReasons: map[uint64]string{5: api.ReasonResources},
		},
		{
			name:  "partition tier outranks nice",
			nodes: []*api.Node{upNode("n1", 1, 1000, 0)},
			parts: []*api.Partition{
				part("low", 0, upNode("n1", 1, 1000, 0)),
				part("high", 2, upNode("n1", 1, 1000, 0)),
			},
			jobs:        []*api.Job{with(pend(1, "low"), nice(-10000)), pend(2, "high")},
			wantPlaced:  map[uint64]string{2: "n1"},
			wantReasons: map[uint64]string{1: api.ReasonResources},
		},
		{
			name:       "priority never below 1",
			nodes:      []*api.Node{upNode("n1", 1, 1000, 0)},
			jobs:       []*api.Job{with(pend(1, "p"), nice(500_000))},
			wantPlaced: map[uint64]string{1: "n1"},
			check: func(t *testing.T, plan Plan) {
				if plan.Priorities[1] != 1 {
					t.Errorf("priority = %d, want 1", plan.Priorities[1])
				}
			},
		},
		{
			name:  "blocked top job makes later jobs wait with Priority",
			nodes: []*api.Node{busy(upNode("n1", 4, 4000, 0), 3)},
			jobs:  []*api.Job{with(pend(1, "p"), cpus(2)), pend(2, "p")},
			wantReasons: map[uint64]string{
				1: api.ReasonResources, 2: api.ReasonPriority,
			},
		},
		{
			name:  "job behind a blocked job starts in another partition",
			nodes: []*api.Node{busy(upNode("a1", 1, 1000, 0), 1), upNode("b1", 1, 1000, 0)},
			parts: []*api.Partition{
				part("a", 0, upNode("a1", 1, 1000, 0)),
				part("b", 0, upNode("b1", 1, 1000, 0)),
			},
			jobs:        []*api.Job{pend(1, "a"), pend(2, "a"), pend(3, "b")},
			wantPlaced:  map[uint64]string{3: "b1"},
			wantReasons: map[uint64]string{1: api.ReasonResources, 2: api.ReasonPriority},
		},
		{
			name:  "held jobs",
			nodes: bigNode,
			jobs: []*api.Job{
				with(pend(1, "p"), held("user")),
				with(pend(2, "p"), held("admin")),
				with(pend(3, "p"), held("user"), reason(api.ReasonJobHeldUser)),
			},
			wantReasons: map[uint64]string{1: api.ReasonJobHeldUser, 2: api.ReasonJobHeldAdmin},
		},
		{
			name:  "partition down or missing",
			nodes: bigNode,
			parts: []*api.Partition{{Name: "p", Nodes: []string{"n1"}, Up: false}},
			jobs:  []*api.Job{pend(1, "p"), pend(2, "gone")},
			wantReasons: map[uint64]string{
				1: api.ReasonPartitionDown, 2: api.ReasonPartitionDown,
			},
		},
		{
			name:  "empty partition name uses the default partition",
			nodes: []*api.Node{upNode("a1", 1, 1000, 0), upNode("b1", 1, 1000, 0)},
			parts: []*api.Partition{
				part("a", 0, upNode("a1", 1, 1000, 0)),
				{Name: "b", Nodes: []string{"b1"}, Up: true, Default: true},
			},
			jobs:       []*api.Job{pend(1, "")},
			wantPlaced: map[uint64]string{1: "b1"},
		},
		{
			name:  "dependencies",
			nodes: bigNode,
			jobs: append(targets,
				with(pend(1, "p"), dep("after", 102, -1)),
				with(pend(2, "p"), dep("after", 103, -1)),
				with(pend(3, "p"), dep("after", 104, -1)),
				with(pend(4, "p"), dep("afterok", 100, -1)),
				with(pend(5, "p"), dep("afterok", 101, -1)),
				with(pend(6, "p"), dep("afterok", 102, -1)),
				with(pend(7, "p"), dep("afternotok", 101, -1)),
				with(pend(8, "p"), dep("afternotok", 100, -1)),
				with(pend(9, "p"), dep("afternotok", 102, -1)),
				with(pend(10, "p"), dep("afterany", 100, -1), dep("afterany", 101, -1)),
				with(pend(11, "p"), dep("afterany", 102, -1)),
				with(pend(12, "p"), dep("afterok", 200, -1)),
				with(pend(13, "p"), dep("afterok", 200, 0)),
				with(pend(14, "p"), dep("after", 200, -1)),
				with(pend(15, "p"), dep("afterany", 200, 1)),
				with(pend(16, "p"), dep("afterok", 999, -1)),
				with(pend(17, "p"), dep("afterok", 200, 7)),
				with(pend(18, "p"), dep("afterok", 100, -1), dep("afterok", 101, -1)),
				with(pend(19, "p"), dep("afterok", 100, -1), dep("after", 103, -1)),
				with(pend(20, "p"), dep("afterok", 20, -1)),
				with(pend(21, "p"), dep("afternotok", 200, -1)),
				with(pend(22, "p"), dep("afterok", 104, -1)),
				with(pend(23, "p"), dep("afterok", 103, -1), reason(api.ReasonDependency)),
			),
			wantPlaced: map[uint64]string{
				1: "n1", 3: "n1", 4: "n1", 7: "n1", 10: "n1", 13: "n1", 14: "n1",
			},
			wantReasons: map[uint64]string{
				2: api.ReasonDependency, 6: api.ReasonDependency, 9: api.ReasonDependency,
				11: api.ReasonDependency, 12: api.ReasonDependency, 15: api.ReasonDependency,
				19: api.ReasonDependency,
				5:  api.ReasonDependencyNeverSatisfied, 8: api.ReasonDependencyNeverSatisfied,
				16: api.ReasonDependencyNeverSatisfied, 17: api.ReasonDependencyNeverSatisfied,
				18: api.ReasonDependencyNeverSatisfied, 20: api.ReasonDependencyNeverSatisfied,
				21: api.ReasonDependencyNeverSatisfied, 22: api.ReasonDependencyNeverSatisfied,
			},
		},
		{
			name:  "singleton",
			nodes: bigNode,
			jobs: []*api.Job{
				with(pend(1, "p"), named("alice", "s"), state(api.JobRunning)),
				with(pend(2, "p"), named("alice", "s"), dep("singleton", 0, -1)),
				with(pend(3, "p"), named("bob", "s"), dep("singleton", 0, -1)),
				with(pend(4, "p"), named("alice", "t"), dep("singleton", 0, -1)),
				with(pend(5, "p"), named("alice", "t"), dep("singleton", 0, -1)),
				with(pend(6, "p"), named("alice", "s"), state(api.JobCompleted)),
			},
			wantPlaced:  map[uint64]string{3: "n1", 4: "n1"},
			wantReasons: map[uint64]string{2: api.ReasonDependency, 5: api.ReasonDependency},
		},
		{
			name:  "array task limit",
			nodes: bigNode,
			jobs: []*api.Job{
				with(pend(301, "p"), task(300, 0, 2), state(api.JobRunning)),
				with(pend(302, "p"), task(300, 1, 2)),
				with(pend(303, "p"), task(300, 2, 2)),
				with(pend(304, "p"), task(300, 3, 2)),
				with(pend(305, "p"), task(300, 4, 2), state(api.JobCompleted)),
				with(pend(401, "p"), task(400, 0, 0)),
				with(pend(402, "p"), task(400, 1, 0)),
			},
			wantPlaced: map[uint64]string{302: "n1", 401: "n1", 402: "n1"},
			wantReasons: map[uint64]string{
				303: api.ReasonJobArrayTaskLimit, 304: api.ReasonJobArrayTaskLimit,
			},
		},
		{
			name:  "exclude, nodelist and constraints",
			nodes: []*api.Node{upNode("n1", 4, 4000, 0), upNode("n2", 8, 4000, 0, "fast"), down(upNode("n3", 8, 4000, 0))},
			jobs: []*api.Job{
				with(pend(1, "p"), exclude("n1")),
				with(pend(2, "p"), nodelist("n2")),
				with(pend(3, "p"), constraint("fast")),
				with(pend(4, "p"), constraint("slow|fast")),
				with(pend(5, "p"), constraint("slow")),
				with(pend(6, "p"), nodelist("n3")),
				with(pend(7, "p"), nodelist("n9")),
				with(pend(8, "p"), exclude("n1", "n2")),
				with(pend(9, "p"), nodelist("n1"), exclude("n1")),
				pend(10, "p"),
			},
			wantPlaced: map[uint64]string{1: "n2", 2: "n2", 3: "n2", 4: "n2", 10: "n1"},
			wantReasons: map[uint64]string{
				5: api.ReasonReqNodeNotAvail, 6: api.ReasonReqNodeNotAvail, 7: api.ReasonReqNodeNotAvail,
				8: api.ReasonReqNodeNotAvail, 9: api.ReasonReqNodeNotAvail,
			},
		},
		{
			name:  "nodelist plus extra nodes, busy required node",
			nodes: []*api.Node{upNode("n1", 2, 4000, 0), upNode("n2", 2, 4000, 0), upNode("n3", 1, 4000, 0)},
			jobs: []*api.Job{
				with(pend(1, "p"), nnodes(2), nodelist("n2")),
				with(pend(2, "p"), cpus(2), nodelist("n2")),
			},
			wantPlaced:  map[uint64]string{1: "n2,n3"},
			wantReasons: map[uint64]string{2: api.ReasonResources},
		},
		{
			name:  "exclusive takes a whole idle node",
			nodes: []*api.Node{busy(upNode("n1", 8, 8000, 0), 1), upNode("n2", 16, 32000, 2), upNode("n3", 4, 4000, 0)},
			jobs: []*api.Job{
				with(pend(1, "p"), exclusive(), cpus(6)),
				pend(2, "p"),
				pend(3, "p"),
			},
			wantPlaced: map[uint64]string{1: "n2", 2: "n3", 3: "n3"},
			check: func(t *testing.T, plan Plan) {
				want := Placement{JobID: 1, Nodes: []string{"n2"}, CPUs: 16, MemoryMB: 32000, GPUs: 2, Exclusive: true}
				if !reflect.DeepEqual(plan.Placements[0], want) {
					t.Errorf("placement = %+v, want %+v", plan.Placements[0], want)
				}
			},
		},
		{
			name:        "exclusive waits for an idle node",
			nodes:       []*api.Node{busy(upNode("n1", 8, 8000, 0), 1)},
			jobs:        []*api.Job{with(pend(1, "p"), exclusive())},
			wantReasons: map[uint64]string{1: api.ReasonResources},
		},
		{
			name:  "node held by a running exclusive job takes nothing",
			nodes: []*api.Node{{Name: "n1", CPUs: 8, MemoryMB: 8000, State: api.NodeUp, AllocCPUs: 2, Exclusive: true}},
			jobs:  []*api.Job{pend(1, "p")},
			wantReasons: map[uint64]string{
				1: api.ReasonResources,
			},
		},
		{
			name:  "multi-node",
			nodes: []*api.Node{upNode("n1", 4, 4000, 0), upNode("n2", 4, 4000, 0), upNode("n3", 4, 4000, 0)},
			jobs: []*api.Job{
				with(pend(1, "p"), nnodes(2), cpus(4)),
				with(pend(2, "p"), nnodes(4)),
				with(pend(3, "p"), nnodes(2)),
			},
			wantPlaced:  map[uint64]string{1: "n1,n2"},
			wantReasons: map[uint64]string{2: api.ReasonReqNodeNotAvail, 3: api.ReasonResources},
			check: func(t *testing.T, plan Plan) {
				if p := plan.Placements[0]; p.CPUs != 4 {
					t.Errorf("cpus per node = %d, want 4", p.CPUs)
				}
			},
		},
		{
			name: "best fit packs the fullest node",
			nodes: []*api.Node{
				upNode("n1", 8, 8000, 0), busy(upNode("n2", 8, 8000, 0), 6), busy(upNode("n3", 8, 8000, 0), 4),
			},
			jobs: []*api.Job{
				with(pend(1, "p"), cpus(2)),
				with(pend(2, "p"), cpus(3)),
				with(pend(3, "p"), cpus(8)),
				pend(4, "p"),
			},
			wantPlaced: map[uint64]string{1: "n2", 2: "n3", 3: "n1", 4: "n3"},
		},
		{
			name:  "natural name order breaks ties",
			nodes: []*api.Node{upNode("n10", 2, 1000, 0), upNode("n9", 2, 1000, 0)},
			jobs:  []*api.Job{pend(1, "p")},
			wantPlaced: map[uint64]string{
				1: "n9",
			},
		},
		{
			name:  "memory and GPUs",
			nodes: []*api.Node{upNode("n1", 8, 2000, 0), upNode("n2", 8, 16000, 2)},
			jobs: []*api.Job{
				with(pend(1, "p"), mem(4000)),
				with(pend(2, "p"), gpus(2)),
				with(pend(3, "p"), mem(64000)),
				pend(4, "p"),
				with(pend(5, "p"), gpus(1)),
				pend(6, "p"),
			},
			wantPlaced: map[uint64]string{1: "n2", 2: "n2", 4: "n2"},
			wantReasons: map[uint64]string{
				3: api.ReasonReqNodeNotAvail, 5: api.ReasonResources, 6: api.ReasonPriority,
			},
		},
		{
			name:  "partition default memory per CPU",
			nodes: []*api.Node{upNode("n1", 8, 3000, 0)},
			parts: []*api.Partition{{Name: "p", Nodes: []string{"n1"}, Up: true, DefMemPerCPUMB: 1000}},
			jobs:  []*api.Job{with(pend(1, "p"), cpus(4)), with(pend(2, "p"), cpus(2))},
			wantPlaced: map[uint64]string{
				2: "n1",
			},
			wantReasons: map[uint64]string{1: api.ReasonReqNodeNotAvail},
			check: func(t *testing.T, plan Plan) {
				if p := plan.Placements[0]; p.MemoryMB != 2000 {
					t.Errorf("memory = %d, want 2000", p.MemoryMB)
				}
			},
		},
		{
			name:        "down and drained nodes are skipped",
			nodes:       []*api.Node{down(upNode("n1", 8, 8000, 0)), drained(upNode("n2", 8, 8000, 0)), upNode("n3", 8, 8000, 0)},
			jobs:        []*api.Job{pend(1, "p"), with(pend(2, "p"), cpus(8)), with(pend(3, "p"), cpus(8))},
			wantPlaced:  map[uint64]string{1: "n3"},
			wantReasons: map[uint64]string{2: api.ReasonResources, 3: api.ReasonPriority},
		},
		{
			name:        "no usable node",
			nodes:       []*api.Node{down(upNode("n1", 8, 8000, 0)), {Name: "n2", State: api.NodeUnknown}},
			jobs:        []*api.Job{pend(1, "p")},
			wantReasons: map[uint64]string{1: api.ReasonReqNodeNotAvail},
		},
		{
			name:  "reasons only when changed",
			nodes: []*api.Node{busy(upNode("n1", 1, 1000, 0), 1)},
			jobs: []*api.Job{
				with(pend(1, "p"), reason(api.ReasonResources)),
				with(pend(2, "p"), reason(api.ReasonPriority)),
				with(pend(3, "p"), reason(api.ReasonDependency)),
			},
			wantReasons: map[uint64]string{3: api.ReasonPriority},
		},
		{
			name:  "placement cap",
			nodes: bigNode,
			jobs: []*api.Job{
				pend(1, "p"), pend(2, "p"),
				with(pend(3, "p"), reason(api.ReasonResources)),
				with(pend(4, "p"), held("user")),
			},
			opts:       Options{MaxPlacementsPerPass: 1},
			wantPlaced: map[uint64]string{1: "n1"},
			wantReasons: map[uint64]string{
				2: api.ReasonPriority, 4: api.ReasonJobHeldUser,
			},
		},
		{
			name:  "jobs being cancelled and non-pending jobs are left alone",
			nodes: bigNode,
			jobs: []*api.Job{
				with(pend(1, "p"), func(j *api.Job) { j.CancelRequested = true }),
				with(pend(2, "p"), state(api.JobRunning)),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			parts := tc.parts
			if parts == nil {
				parts = []*api.Partition{part("p", 0, tc.nodes...)}
			}
			// The rows are sched/builtin's: strict priority, ordered by
			// tier and nice alone (no multifactor weights).
			cfg := api.DefaultSchedConfig()
			cfg.Weights, cfg.Policy = api.PriorityWeights{}, PolicyPriority
			st := &memState{jobs: tc.jobs, nodes: tc.nodes, parts: parts, cfg: &cfg}
			tc.opts.UpdatePriorities = true
			plan := Schedule(t0, st, tc.opts)
			wantPrio := map[uint64]int64{}
			for id, f := range Priorities(t0, st) {
				if st.Job(id).Priority != f.Priority {
					wantPrio[id] = f.Priority
				}
			}
			if !maps.Equal(orEmpty(plan.Priorities), wantPrio) {
				t.Errorf("priorities = %v, want %v", plan.Priorities, wantPrio)
			}
			if !plan.Time.Equal(t0) {
				t.Errorf("plan time = %v", plan.Time)
			}
			placed := map[uint64]string{}
			for _, p := range plan.Placements {
				if _, dup := placed[p.JobID]; dup {
					t.Errorf("job %d placed twice", p.JobID)
				}
				placed[p.JobID] = strings.Join(p.Nodes, ",")
			}
			if !maps.Equal(placed, orEmpty(tc.wantPlaced)) {
				t.Errorf("placed = %v, want %v", placed, tc.wantPlaced)
			}
			if !maps.Equal(orEmpty(plan.Reasons), orEmpty(tc.wantReasons)) {
				t.Errorf("reasons = %v, want %v", plan.Reasons, tc.wantReasons)
			}
			if err := applyPlan(st, plan); err != nil {
				t.Errorf("plan would not apply: %v", err)
			}
			if again := Schedule(t0, st, tc.opts); !reflect.DeepEqual(again, plan) {
				t.Errorf("second pass differs: %+v vs %+v", again, plan)
			}
			if tc.check != nil {
				tc.check(t, plan)
			}
		})
	}
}

func orEmpty[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}

func TestScheduleDoesNotMutateSnapshot(t *testing.T) {
	n := upNode("n1", 4, 4000, 0)
	st := &memState{
		nodes: []*api.Node{n},
		parts: []*api.Partition{part("p", 0, n)},
		jobs:  []*api.Job{pend(1, "p"), with(pend(2, "p"), exclusive())},
	}
	before := *n
	Schedule(t0, st, Options{})
	if !reflect.DeepEqual(*n, before) {
		t.Errorf("node changed: %+v", *n)
	}
	if st.jobs[0].Reason != "" || st.jobs[1].State != api.JobPending {
		t.Errorf("jobs changed")
	}
}

func TestScheduleEmpty(t *testing.T) {
	plan := Schedule(t0, &memState{}, Options{})
	if !plan.Empty() {
		t.Errorf("plan = %+v, want empty", plan)
	}
}

// TestScheduleRandomNeverOvercommits runs random clusters and queues under
// every policy and checks every plan applies under Fits; strict policies
// must honour priority, and no placed job may carry a reason or a start
// time.
func TestScheduleRandomNeverOvercommits(t *testing.T) {
	for _, policy := range []string{PolicyFIFO, PolicyPriority, PolicyBackfill} {
		rng := rand.New(rand.NewPCG(1, 2))
		for round := range 200 {
			st := randomCluster(rng)
			plan := Schedule(t0, st, Options{Policy: policy})
			if err := applyPlan(st, plan); err != nil {
				t.Fatalf("%s round %d: %v", policy, round, err)
			}
			placed := map[uint64]bool{}
			for _, p := range plan.Placements {
				placed[p.JobID] = true
			}
			for id, r := range plan.Reasons {
				if placed[id] {
					t.Fatalf("%s round %d: placed job %d has reason %s", policy, round, id, r)
				}
			}
			for id, at := range plan.StartTimes {
				if placed[id] || at.Before(t0) {
					t.Fatalf("%s round %d: job %d start time %v (placed %v)", policy, round, id, at, placed[id])
				}
			}
			if policy == PolicyBackfill {
				continue
			}
			// After a Resources job, nothing later in its partition may start.
			blocked := map[string]bool{}
			for _, j := range queueOrder(st, policy) {
				if placed[j.ID] && blocked[j.Spec.Partition] {
					t.Fatalf("round %d: job %d started in blocked partition %s", round, j.ID, j.Spec.Partition)
				}
				if plan.Reasons[j.ID] == api.ReasonResources {
					blocked[j.Spec.Partition] = true
				}
			}
		}
	}
}

// randomCluster is up to 20 random nodes in two overlapping partitions,
// with random running jobs holding part of them, and 50 random pending
// jobs.
func randomCluster(rng *rand.Rand) *memState {
	var all []*api.Node
	var jobs []*api.Job
	for i := range 1 + rng.IntN(20) {
		n := upNode("n"+string(rune('a'+i)), 1+rng.IntN(16), int64(1000*(1+rng.IntN(8))), rng.IntN(3), []string{"x", "y"}[rng.IntN(2)])
		n.Drain = rng.IntN(10) == 0
		for range rng.IntN(3) {
			c := 1 + rng.IntN(n.CPUs)
			if n.AllocCPUs+c > n.CPUs {
				break
			}
			n.AllocCPUs += c
			r := with(pend(uint64(1000+len(jobs)), "p"), state(api.JobRunning), submitted(-time.Hour))
			r.Nodes, r.AllocCPUs = []string{n.Name}, c
			r.StartTime = t0.Add(-time.Duration(rng.IntN(3600)) * time.Second)
			r.TimeLimitSec = int64(rng.IntN(4)) * 1800 // 0: no limit
			jobs = append(jobs, r)
		}
		all = append(all, n)
	}
	parts := []*api.Partition{part("p", 0, all[:len(all)/2+1]...), part("q", 1, all[len(all)/2:]...)}
	for id := range uint64(50) {
		j := with(pend(id+1, []string{"p", "q"}[rng.IntN(2)]), cpus(1+rng.IntN(8)), nnodes(1+rng.IntN(3)),
			mem(int64(rng.IntN(4000))), gpus(rng.IntN(2)), nice(rng.IntN(3)))
		j.TimeLimitSec = int64(1+rng.IntN(8)) * 600
		if rng.IntN(5) == 0 {
			j.Spec.Exclusive = true
		}
		if rng.IntN(5) == 0 {
			j.Spec.Constraints = []string{"y"}
		}
		jobs = append(jobs, j)
	}
	return &memState{jobs: jobs, nodes: all, parts: parts}
}

// queueOrder is the pending jobs in the order a policy takes them: fifo
// by submit time and id, the others by partition tier and priority first.
func queueOrder(st *memState, policy string) []*api.Job {
	prios := Priorities(t0, st)
	order := st.PendingJobs()
	slices.SortStableFunc(order, func(a, b *api.Job) int {
		if policy != PolicyFIFO {
			if c := cmp.Compare(st.Partition(b.Spec.Partition).PriorityTier, st.Partition(a.Spec.Partition).PriorityTier); c != 0 {
				return c
			}
			if c := cmp.Compare(prios[b.ID].Priority, prios[a.ID].Priority); c != 0 {
				return c
			}
		}
		if c := a.SubmitTime.Compare(b.SubmitTime); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return order
}

// TestScheduleRandomPreemptionAndReservations adds QoS preemption and an
// active reservation to random clusters and checks the plan never puts
// other jobs on the reservation's node and preempts only what it may.
func TestScheduleRandomPreemptionAndReservations(t *testing.T) {
	qos := []*api.QOS{
		{Name: "lo", PreemptMode: api.PreemptRequeue, GraceTimeSec: 30},
		{Name: "off"},
		{Name: "hi", Priority: 10, Preempt: []string{"lo", "off"}},
	}
	rng := rand.New(rand.NewPCG(5, 6))
	preempted, inResv := 0, 0
	for _, policy := range []string{PolicyFIFO, PolicyPriority, PolicyBackfill} {
		for round := range 200 {
			st := randomCluster(rng)
			st.qos = qos
			reserved := st.nodes[rng.IntN(len(st.nodes))].Name
			st.resvs = []*api.Reservation{{Name: "r", Users: []string{"bob"}, Nodes: []string{reserved},
				Start: t0.Add(-time.Hour), End: t0.Add(time.Hour)}}
			for _, j := range st.jobs {
				j.Spec.QOS = []string{"lo", "off", "hi"}[rng.IntN(3)]
				if j.State == api.JobPending && rng.IntN(4) == 0 {
					j.User, j.Spec.Reservation = "bob", "r"
				}
			}
			plan := Schedule(t0, st, Options{Policy: policy})
			if err := applyPlan(st, plan); err != nil {
				t.Fatalf("%s round %d: %v", policy, round, err)
			}
			for _, p := range plan.Placements {
				if j := st.Job(p.JobID); slices.Contains(p.Nodes, reserved) && j.Spec.Reservation != "r" {
					t.Fatalf("%s round %d: job %d placed on reserved %s", policy, round, p.JobID, reserved)
				} else if j.Spec.Reservation == "r" {
					if len(p.Nodes) != 1 || p.Nodes[0] != reserved {
						t.Fatalf("%s round %d: job %d of the reservation placed on %v", policy, round, p.JobID, p.Nodes)
					}
					inResv++
				}
			}
			seen := map[uint64]bool{}
			for _, p := range plan.Preemptions {
				v, f := st.Job(p.JobID), st.Job(p.For)
				if seen[p.JobID] || v.State != api.JobRunning || v.Spec.QOS != "lo" || p.Mode != api.PreemptRequeue || p.GraceSec != 30 {
					t.Fatalf("%s round %d: bad preemption %+v of %+v", policy, round, p, v)
				}
				if f.State != api.JobPending || f.Spec.QOS != "hi" || plan.Reasons[f.ID] != api.ReasonResources && f.Reason != api.ReasonResources {
					t.Fatalf("%s round %d: preemption for job %d (%s, %s)", policy, round, f.ID, f.Spec.QOS, plan.Reasons[f.ID])
				}
				seen[p.JobID] = true
				preempted++
			}
		}
	}
	if preempted < 50 || inResv < 50 {
		t.Errorf("only %d preemptions and %d placements in the reservation", preempted, inResv)
	}
}
