package scheduler

import (
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

func TestReservations(t *testing.T) {
	h := time.Hour
	nodes := []*api.Node{upNode("n1", 4, 4000, 0), upNode("n2", 4, 4000, 0)}
	// maint holds n1 for alice from an hour ago to an hour from now;
	// later holds n1 for alice from +2h to +4h; old has ended.
	resvs := []*api.Reservation{
		{Name: "maint", Users: []string{"alice"}, Nodes: []string{"n1"}, Start: t0.Add(-h), End: t0.Add(h)},
		{Name: "later", Accounts: []string{"physics"}, Nodes: []string{"n1"}, Start: t0.Add(2 * h), End: t0.Add(4 * h)},
		{Name: "old", Users: []string{"alice"}, Nodes: []string{"n2"}, Start: t0.Add(-2 * h), End: t0},
	}
	bob := func(id uint64, edits ...func(*api.Job)) *api.Job {
		return with(pend(id, "p"), append([]func(*api.Job){by("bob"), cpus(4)}, edits...)...)
	}
	alice := func(id uint64, edits ...func(*api.Job)) *api.Job {
		return with(pend(id, "p"), append([]func(*api.Job){cpus(4)}, edits...)...)
	}
	tests := []policyCase{
		{
			name:        "an active reservation keeps other jobs off its nodes",
			jobs:        []*api.Job{bob(1, limit(h)), bob(2, limit(h))},
			wantPlaced:  map[uint64]string{1: "n2"},
			wantReasons: map[uint64]string{2: api.ReasonResources},
			wantStarts:  map[uint64]time.Duration{2: h},
		},
		{
			name:       "even the reservation's users need to ask for it",
			jobs:       []*api.Job{alice(1, limit(h)), alice(2, limit(h), resv("maint"))},
			wantPlaced: map[uint64]string{1: "n2", 2: "n1"},
		},
		{
			name:        "a job in a reservation runs only on its nodes",
			jobs:        []*api.Job{alice(1, limit(30*time.Minute), resv("maint")), alice(2, limit(h), resv("maint")), bob(3, limit(h))},
			wantPlaced:  map[uint64]string{1: "n1", 3: "n2"},
			wantReasons: map[uint64]string{2: api.ReasonResources},
			wantStarts:  map[uint64]time.Duration{2: 30 * time.Minute},
		},
		{
			name:        "a reservation that does not admit the job",
			jobs:        []*api.Job{bob(1, resv("maint")), bob(2)},
			wantPlaced:  map[uint64]string{2: "n2"},
			wantReasons: map[uint64]string{1: api.ReasonReservation},
		},
		{
			name:        "an unknown or ended reservation",
			jobs:        []*api.Job{alice(1, resv("gone")), alice(2, resv("old")), bob(3)},
			wantPlaced:  map[uint64]string{3: "n2"},
			wantReasons: map[uint64]string{1: api.ReasonReservation, 2: api.ReasonReservation},
		},
		{
			name:        "a job for a future reservation waits for its start",
			jobs:        []*api.Job{alice(1, acct("physics"), resv("later"))},
			wantReasons: map[uint64]string{1: api.ReasonReservation},
			wantStarts:  map[uint64]time.Duration{1: 2 * h},
		},
		{
			name:        "an ended reservation frees its nodes",
			nodes:       []*api.Node{upNode("n2", 4, 4000, 0)},
			jobs:        []*api.Job{bob(1)},
			wantPlaced:  map[uint64]string{1: "n2"},
			wantReasons: map[uint64]string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.nodes == nil {
				tc.nodes = nodes
			}
			runPolicyCase(t, tc, &memState{resvs: resvs})
		})
	}

	// Before "later" starts, n1 (free once "maint" is over) takes only
	// jobs that end by +2h.
	future := []*api.Reservation{resvs[1]}
	for _, tc := range []policyCase{
		{
			name:        "a future reservation keeps longer jobs off its nodes",
			jobs:        []*api.Job{bob(1, limit(3*h)), bob(2, limit(h)), bob(3, cpus(1))},
			wantPlaced:  map[uint64]string{1: "n2", 2: "n1"},
			wantReasons: map[uint64]string{3: api.ReasonResources},
			wantStarts:  map[uint64]time.Duration{3: 3 * h},
		},
		{
			name:        "a job ending exactly at the start fits before it",
			jobs:        []*api.Job{bob(1, limit(2*h))},
			wantPlaced:  map[uint64]string{1: "n1"},
			wantReasons: map[uint64]string{},
		},
		{
			name:        "a reservation's nodes alone cannot run a job without a limit",
			nodes:       []*api.Node{upNode("n1", 4, 4000, 0)},
			jobs:        []*api.Job{bob(1)},
			wantReasons: map[uint64]string{1: api.ReasonReqNodeNotAvail},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.nodes == nil {
				tc.nodes = nodes
			}
			runPolicyCase(t, tc, &memState{resvs: future})
		})
	}
}
