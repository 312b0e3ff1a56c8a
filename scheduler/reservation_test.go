package scheduler

import (
	"slices"
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

// TestReservationEnds: which running jobs the leader ends when the
// reservation they started in is over (Slurm's ResvOverRun).
func TestReservationEnds(t *testing.T) {
	h := time.Hour
	resvs := []*api.Reservation{
		{Name: "ended", Users: []string{"alice"}, Nodes: []string{"n1"}, Start: t0.Add(-2 * h), End: t0.Add(-10 * time.Minute)},
		{Name: "now", Users: []string{"alice"}, Nodes: []string{"n2"}, Start: t0.Add(-h), End: t0},
		{Name: "open", Users: []string{"alice"}, Nodes: []string{"n3"}, Start: t0.Add(-h), End: t0.Add(h)},
	}
	inResv := func(id uint64, r string, start time.Duration, edits ...func(*api.Job)) *api.Job {
		return with(run(id, 1, start, 0, "n1"), append([]func(*api.Job){resv(r)}, edits...)...)
	}
	cancelling := func(j *api.Job) { j.CancelRequested = true }
	jobs := []*api.Job{
		inResv(5, "ended", -h),
		inResv(2, "now", -30*time.Minute),
		inResv(3, "open", -30*time.Minute),
		inResv(4, "ended", -h, cancelling),
		run(6, 1, -h, 0, "n1"),                            // in no reservation
		inResv(7, "gone", -h),                             // its reservation is no more
		with(inResv(8, "now", -h), state(api.JobPending)), // not running
		inResv(9, "ended", -5*time.Minute),                // started after the end (a reused name)
	}
	st := &memState{resvs: resvs, jobs: jobs}
	for _, tc := range []struct {
		name    string
		overRun time.Duration
		want    []uint64
	}{
		{"ResvOverRun=0 ends them at the end", 0, []uint64{2, 5}},
		{"an over-run keeps them running for a while", 5 * time.Minute, []uint64{5}},
		{"an over-run longer than any", 11 * time.Minute, nil},
		{"UNLIMITED never ends them", OverRunUnlimited, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ReservationEnds(t0, st, tc.overRun); !slices.Equal(got, tc.want) {
				t.Errorf("ended %v, want %v", got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name    string
		resv    int
		overRun time.Duration
		jobs    []*api.Job
		want    bool
	}{
		{"ended, its jobs still running", 0, 0, jobs, false},
		{"ended, no job left", 0, 0, nil, true},
		{"ended, over-run not over", 0, 11 * time.Minute, nil, false},
		{"ending now, no job", 1, 0, nil, true},
		{"not ended", 2, 0, nil, false},
		{"UNLIMITED: removed at its end, jobs or not", 0, OverRunUnlimited, jobs, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ReservationDone(t0, &memState{resvs: resvs, jobs: tc.jobs}, resvs[tc.resv], tc.overRun); got != tc.want {
				t.Errorf("done %v, want %v", got, tc.want)
			}
		})
	}
}

// TestReservationBoundary: a reservation starting or ending since the
// last pass is a reason for another.
func TestReservationBoundary(t *testing.T) {
	st := &memState{resvs: []*api.Reservation{{Name: "r", Start: t0.Add(time.Minute), End: t0.Add(time.Hour)}}}
	for _, tc := range []struct {
		from, to time.Duration
		want     bool
	}{
		{0, 30 * time.Second, false},
		{30 * time.Second, time.Minute, true}, // starts
		{time.Minute, 2 * time.Minute, false}, // started before
		{59 * time.Minute, time.Hour, true},   // ends
		{time.Hour, 2 * time.Hour, false},
	} {
		if got := ReservationBoundary(st, t0.Add(tc.from), t0.Add(tc.to)); got != tc.want {
			t.Errorf("(%v, %v]: %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
}

// TestRunningInTheWay: the running jobs that make a new reservation's
// nodes busy ("Requested nodes are busy"), and the flags that ignore them.
func TestRunningInTheWay(t *testing.T) {
	h := time.Hour
	jobs := []*api.Job{
		run(1, 1, -h, 2*h, "n1"),                  // ends at +1h
		run(2, 1, -h, 0, "n2"),                    // no limit: never ends
		run(3, 1, -h, 30*time.Minute, "n3", "n4"), // overdue: ends now
		run(4, 1, -h, 3*h, "n4"),                  // ends at +2h
		with(run(5, 1, -h, 0, "n5"), resv("r")),   // in the reservation itself
		with(run(6, 1, -h, 0, "n1"), state(api.JobCompleted)),
	}
	st := &memState{jobs: jobs}
	for _, tc := range []struct {
		name  string
		start time.Duration
		flags []string
		want  map[string]uint64
	}{
		{"starting now", 0, nil, map[string]uint64{"n1": 1, "n2": 2, "n4": 4}},
		{"starting when job 1 ends", h, nil, map[string]uint64{"n2": 2, "n4": 4}},
		{"starting later", 5 * h, nil, map[string]uint64{"n2": 2}},
		{"MAINT alone does not ignore jobs", 0, []string{"MAINT"}, map[string]uint64{"n1": 1, "n2": 2, "n4": 4}},
		{"IGNORE_JOBS", 0, []string{"ignore_jobs"}, nil},
		{"MAINT,IGNORE_JOBS", 0, []string{"MAINT", "IGNORE_JOBS"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &api.Reservation{Name: "r", Start: t0.Add(tc.start), End: t0.Add(10 * h), Flags: tc.flags,
				Nodes: []string{"n1", "n2", "n3", "n4", "n5"}}
			got := RunningInTheWay(st, r)
			if len(got) != len(tc.want) || (tc.want == nil) != (got == nil) {
				t.Fatalf("busy %v, want %v", got, tc.want)
			}
			for n, id := range tc.want {
				if got[n] != id {
					t.Errorf("busy %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// TestReservationJobPastEnd: as in Slurm, a job in a reservation starts
// even if its time limit runs past the reservation's end (it is ended
// then), while jobs of no reservation still stay off its nodes.
func TestReservationJobPastEnd(t *testing.T) {
	h := time.Hour
	r := &api.Reservation{Name: "r", Users: []string{"alice"}, Nodes: []string{"n1"}, Start: t0.Add(-h), End: t0.Add(h),
		Flags: []string{"MAINT"}}
	runPolicyCase(t, policyCase{
		name:        "past the end",
		nodes:       []*api.Node{upNode("n1", 4, 4000, 0), upNode("n2", 1, 4000, 0)},
		jobs:        []*api.Job{with(pend(1, "p"), limit(5*h), resv("r")), with(pend(2, "p"), by("bob"), cpus(2), limit(h))},
		wantPlaced:  map[uint64]string{1: "n1"},
		wantReasons: map[uint64]string{2: api.ReasonReqNodeNotAvail},
	}, &memState{resvs: []*api.Reservation{r}})
}
