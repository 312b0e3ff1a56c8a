package scheduler

import (
	"math/rand/v2"
	"testing"

	"github.com/stockade-hpc/stockade/api"
)

func TestSaturated(t *testing.T) {
	full := func(n *api.Node) *api.Node { n.AllocCPUs = n.CPUs; return n }
	for _, tc := range []struct {
		name  string
		nodes []*api.Node
		qos   []*api.QOS
		want  bool
	}{
		{"no nodes", nil, nil, true},
		{"a free CPU", []*api.Node{upNode("a", 4, 1000, 0)}, nil, false},
		{"every CPU allocated", []*api.Node{full(upNode("a", 4, 1000, 0)), full(upNode("b", 2, 1000, 0))}, nil, true},
		{"one node with room", []*api.Node{full(upNode("a", 4, 1000, 0)), upNode("b", 2, 1000, 0)}, nil, false},
		{"free CPUs but memory gone: still not saturated", []*api.Node{func() *api.Node {
			n := upNode("a", 4, 1000, 0)
			n.AllocCPUs, n.AllocMemoryMB = 1, 1000
			return n
		}()}, nil, false},
		{"down and unknown nodes do not count", []*api.Node{
			{Name: "a", CPUs: 4, State: api.NodeDown}, {Name: "b", CPUs: 4, State: api.NodeUnknown}}, nil, true},
		{"drained node does not count", []*api.Node{func() *api.Node {
			n := upNode("a", 4, 1000, 0)
			n.Drain = true
			return n
		}()}, nil, true},
		{"exclusively held node does not count", []*api.Node{func() *api.Node {
			n := upNode("a", 4, 1000, 0)
			n.AllocCPUs, n.Exclusive = 1, true
			return n
		}()}, nil, true},
		{"a QoS that may preempt", []*api.Node{full(upNode("a", 4, 1000, 0))},
			[]*api.QOS{{Name: "normal"}, {Name: "high", Preempt: []string{"normal"}}}, false},
		{"QoS without preemption", []*api.Node{full(upNode("a", 4, 1000, 0))}, []*api.QOS{{Name: "normal"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &memState{nodes: tc.nodes, qos: tc.qos}
			if got := Saturated(st, 1); got != tc.want {
				t.Fatalf("Saturated = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSaturatedPlacesNothing checks the promise on random clusters: when
// Saturated says so, no policy starts or preempts anything.
func TestSaturatedPlacesNothing(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	saturated := 0
	for round := range 400 {
		st := randomCluster(rng)
		// Fill most nodes, some to the brim, some drained or down.
		for _, n := range st.nodes {
			switch rng.IntN(6) {
			case 0:
				n.State = api.NodeDown
			case 1:
				n.Drain = true
			default:
				// Full, or nearly: a few CPUs left that big jobs
				// cannot use.
				n.AllocCPUs = max(n.AllocCPUs, n.CPUs-rng.IntN(4))
			}
		}
		if rng.IntN(3) == 0 {
			st.qos = []*api.QOS{{Name: "normal"}}
		}
		// Hold some jobs, and make some ask for more than is left.
		for _, j := range st.jobs {
			if j.State == api.JobPending && rng.IntN(4) == 0 {
				j.HeldBy = "user"
			}
		}
		least := 0
		for _, j := range st.PendingJobs() {
			if j.HeldBy == "" {
				least = MinCPUs(least, j)
			}
		}
		if least == 0 || !Saturated(st, least) {
			continue
		}
		saturated++
		for _, policy := range []string{PolicyFIFO, PolicyPriority, PolicyBackfill} {
			plan := Schedule(t0, st, Options{Policy: policy})
			if len(plan.Placements) > 0 || len(plan.Preemptions) > 0 || len(plan.Cancels) > 0 {
				t.Fatalf("%s round %d: saturated cluster got placements %v preemptions %v", policy, round,
					plan.Placements, plan.Preemptions)
			}
		}
	}
	t.Logf("%d saturated clusters of 400", saturated)
	if saturated < 20 {
		t.Fatalf("only %d saturated clusters drawn", saturated)
	}
}

func TestSaturatedByNeed(t *testing.T) {
	a := upNode("a", 8, 1000, 0)
	a.AllocCPUs = 6 // 2 free
	st := &memState{nodes: []*api.Node{a}}
	for cpus, want := range map[int]bool{1: false, 2: false, 3: true, 8: true, -1: false} {
		if got := Saturated(st, cpus); got != want {
			t.Errorf("Saturated(%d) = %v, want %v", cpus, got, want)
		}
	}
	least := 0
	for _, j := range []*api.Job{with(pend(1, "p"), cpus(4)), with(pend(2, "p"), cpus(3)), with(pend(3, "p"), nnodes(2), cpus(5))} {
		least = MinCPUs(least, j)
	}
	if least != 3 {
		t.Fatalf("MinCPUs = %d, want 3", least)
	}
	bad := pend(4, "p")
	bad.Spec.TasksPerNode = -2
	if got := MinCPUs(least, bad); got != -2 {
		t.Fatalf("MinCPUs with a negative need = %d, want -2", got)
	}
	plan := Schedule(t0, &memState{jobs: []*api.Job{with(pend(1, "p"), cpus(4)), with(pend(2, "p"), cpus(3), held("user"))},
		nodes: []*api.Node{a}, parts: []*api.Partition{part("p", 0, a)}}, Options{})
	if plan.MinCPUs != 4 || len(plan.Placements) != 0 {
		t.Fatalf("plan: MinCPUs %d (want 4), placements %v", plan.MinCPUs, plan.Placements)
	}
}
