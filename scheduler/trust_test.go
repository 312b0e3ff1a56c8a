package scheduler

import (
	"maps"
	"strings"
	"testing"

	"github.com/stockade-hpc/stockade/api"
)

func TestTrustSatisfies(t *testing.T) {
	levels := []api.Trust{"", api.TrustNone, api.TrustApproved, api.TrustAttested}
	tests := []struct {
		need api.Trust
		want []bool // per entry of levels
	}{
		{"", []bool{true, true, true, true}},
		{api.TrustNone, []bool{true, true, true, true}},
		{api.TrustApproved, []bool{false, false, true, true}},
		{api.TrustAttested, []bool{false, false, false, true}},
		{"Attested", []bool{false, false, false, false}}, // unknown: fails closed
	}
	for _, tc := range tests {
		for i, have := range levels {
			if got := TrustSatisfies(&api.Node{Trust: have}, tc.need); got != tc.want[i] {
				t.Errorf("node %q, need %q: got %v", have, tc.need, got)
			}
		}
	}
}

func TestScheduleRequireTrust(t *testing.T) {
	trusted := func(n *api.Node, tr api.Trust) *api.Node { n.Trust = tr; return n }
	// One 1-CPU node per trust level, in every partition below.
	cluster := func() []*api.Node {
		return []*api.Node{
			trusted(upNode("att1", 1, 1000, 0), api.TrustAttested),
			trusted(upNode("app1", 1, 1000, 0), api.TrustApproved),
			trusted(upNode("tok1", 1, 1000, 0), api.TrustNone),
			upNode("old1", 1, 1000, 0), // registered before attestation existed
		}
	}
	requiring := func(tr api.Trust) []*api.Partition {
		p := part("p", 0, cluster()...)
		p.RequireTrust = tr
		return []*api.Partition{p}
	}
	tests := []struct {
		name        string
		nodes       []*api.Node
		parts       []*api.Partition
		jobs        []*api.Job
		wantPlaced  map[uint64]string
		wantReasons map[uint64]string
	}{
		{
			name:        "attested only never uses approved or untrusted nodes",
			nodes:       cluster(),
			parts:       requiring(api.TrustAttested),
			jobs:        []*api.Job{pend(1, "p"), pend(2, "p")},
			wantPlaced:  map[uint64]string{1: "att1"},
			wantReasons: map[uint64]string{2: api.ReasonResources},
		},
		{
			name:        "approved accepts attested and approved",
			nodes:       cluster(),
			parts:       requiring(api.TrustApproved),
			jobs:        []*api.Job{pend(1, "p"), pend(2, "p"), pend(3, "p")},
			wantPlaced:  map[uint64]string{1: "app1", 2: "att1"},
			wantReasons: map[uint64]string{3: api.ReasonResources},
		},
		{
			name:        "any trust uses every node",
			nodes:       cluster(),
			parts:       requiring(""),
			jobs:        []*api.Job{with(pend(1, "p"), nnodes(4))},
			wantPlaced:  map[uint64]string{1: "app1,att1,old1,tok1"},
			wantReasons: map[uint64]string{},
		},
		{
			name:        "more nodes than are trusted enough",
			nodes:       cluster(),
			parts:       requiring(api.TrustApproved),
			jobs:        []*api.Job{with(pend(1, "p"), nnodes(3)), pend(2, "p")},
			wantPlaced:  map[uint64]string{2: "app1"},
			wantReasons: map[uint64]string{1: api.ReasonReqNodeNotAvail},
		},
		{
			name:  "no trusted node at all",
			nodes: []*api.Node{trusted(upNode("app1", 4, 4000, 0), api.TrustApproved), upNode("old1", 4, 4000, 0)},
			parts: func() []*api.Partition {
				p := part("p", 0, upNode("app1", 4, 4000, 0), upNode("old1", 4, 4000, 0))
				p.RequireTrust = api.TrustAttested
				return []*api.Partition{p}
			}(),
			jobs:        []*api.Job{pend(1, "p")},
			wantReasons: map[uint64]string{1: api.ReasonReqNodeNotAvail},
		},
		{
			name:        "required node not trusted enough",
			nodes:       cluster(),
			parts:       requiring(api.TrustAttested),
			jobs:        []*api.Job{with(pend(1, "p"), nodelist("app1")), pend(2, "p")},
			wantPlaced:  map[uint64]string{2: "att1"},
			wantReasons: map[uint64]string{1: api.ReasonReqNodeNotAvail},
		},
		{
			name:        "unknown requirement fails closed",
			nodes:       cluster(),
			parts:       requiring("sealed"),
			jobs:        []*api.Job{pend(1, "p")},
			wantReasons: map[uint64]string{1: api.ReasonReqNodeNotAvail},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &memState{jobs: tc.jobs, nodes: tc.nodes, parts: tc.parts}
			plan := Schedule(t0, st, Options{})
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
			if err := applyPlan(st, plan); err != nil {
				t.Errorf("plan would not apply: %v", err)
			}
		})
	}
}
