package scheduler

import (
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// TestLimits holds job 1 (alice) by each limit while a job behind it
// starts: under strict priority, a limit never blocks the partition.
func TestLimits(t *testing.T) {
	h := time.Hour
	normal := func(edit func(q *api.QOS)) []*api.QOS {
		q := &api.QOS{Name: "normal"}
		edit(q)
		return []*api.QOS{q, {Name: "high", Priority: 10}}
	}
	assoc := func(account, user string, edit func(a *api.Association)) *api.Association {
		a := &api.Association{Account: account, User: user}
		edit(a)
		return a
	}
	accounts := []*api.Account{{Name: "root"}, {Name: "physics", Parent: "root"}, {Name: "theory", Parent: "physics"},
		{Name: "chem", Parent: "root"}}
	alice := func(id uint64, edits ...func(*api.Job)) *api.Job {
		return with(pend(id, "p"), append([]func(*api.Job){by("alice"), acct("physics")}, edits...)...)
	}
	bob := func(id uint64, edits ...func(*api.Job)) *api.Job {
		return with(pend(id, "p"), append([]func(*api.Job){by("bob"), acct("physics")}, edits...)...)
	}
	carol := func(id uint64, edits ...func(*api.Job)) *api.Job {
		return with(pend(id, "p"), append([]func(*api.Job){by("carol"), acct("chem")}, edits...)...)
	}
	running := func(j *api.Job, cpus int) *api.Job {
		r := run(j.ID, cpus, -h, 10*h, "n2")
		r.User, r.Spec.Account, r.Spec.QOS = j.User, j.Spec.Account, j.Spec.QOS
		return r
	}
	tests := []struct {
		name        string
		qos         []*api.QOS
		assocs      []*api.Association
		part        func(p *api.Partition)
		jobs        []*api.Job
		wantPlaced  []uint64
		wantReasons map[uint64]string
	}{
		{
			name:        "QoS MaxJobsPerUser counts running jobs",
			qos:         normal(func(q *api.QOS) { q.MaxJobsPerUser = 1 }),
			jobs:        []*api.Job{running(alice(100), 1), alice(1), bob(2)},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonQOSMaxJobsPerUserLimit},
		},
		{
			name:        "QoS MaxJobsPerUser counts this pass's placements",
			qos:         normal(func(q *api.QOS) { q.MaxJobsPerUser = 1 }),
			jobs:        []*api.Job{alice(1), alice(2), bob(3)},
			wantPlaced:  []uint64{1, 3},
			wantReasons: map[uint64]string{2: api.ReasonQOSMaxJobsPerUserLimit},
		},
		{
			name:        "QoS MaxJobsPerUser is per QoS",
			qos:         normal(func(q *api.QOS) { q.MaxJobsPerUser = 1 }),
			jobs:        []*api.Job{running(alice(100, inQOS("high")), 1), alice(1), bob(2)},
			wantPlaced:  []uint64{1, 2},
			wantReasons: map[uint64]string{},
		},
		{
			name:        "QoS MaxTRESPerUser cpu",
			qos:         normal(func(q *api.QOS) { q.MaxTRESPerUser.CPUs = 4 }),
			jobs:        []*api.Job{running(alice(100), 2), alice(1, cpus(4)), bob(2, cpus(4))},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonQOSMaxCPUPerUserLimit},
		},
		{
			name:        "QoS MaxTRESPerUser node",
			qos:         normal(func(q *api.QOS) { q.MaxTRESPerUser.Nodes = 1 }),
			jobs:        []*api.Job{alice(1, nnodes(2)), bob(2)},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonQOSMaxNodePerUserLimit},
		},
		{
			name:        "QoS MaxTRESPerUser gpu",
			qos:         normal(func(q *api.QOS) { q.MaxTRESPerUser.GPUs = 1 }),
			jobs:        []*api.Job{alice(1, gpus(2)), bob(2, gpus(1))},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonQOSMaxGRESPerUserLimit},
		},
		{
			name:        "QoS MaxTRESPerUser memory",
			qos:         normal(func(q *api.QOS) { q.MaxTRESPerUser.MemoryMB = 1000 }),
			jobs:        []*api.Job{alice(1, mem(2000)), bob(2, mem(1000))},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonQOSMaxMemoryPerUserLimit},
		},
		{
			name:        "QoS MaxTRESPerAccount cpu",
			qos:         normal(func(q *api.QOS) { q.MaxTRESPerAccount.CPUs = 4 }),
			jobs:        []*api.Job{running(bob(100), 4), alice(1), carol(2)},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonQOSMaxCPUPerAccountLimit},
		},
		{
			name:        "QoS MaxTRESPerAccount node",
			qos:         normal(func(q *api.QOS) { q.MaxTRESPerAccount.Nodes = 1 }),
			jobs:        []*api.Job{running(bob(100), 1), alice(1), carol(2)},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonQOSMaxNodePerAccountLimit},
		},
		{
			name:        "association MaxJobs",
			assocs:      []*api.Association{assoc("physics", "alice", func(a *api.Association) { a.MaxJobs = 1 })},
			jobs:        []*api.Job{running(alice(100), 1), alice(1), bob(2)},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonAssocMaxJobsLimit},
		},
		{
			name:        "association MaxJobs inherited from the account applies per user",
			assocs:      []*api.Association{assoc("physics", "", func(a *api.Association) { a.MaxJobs = 1 })},
			jobs:        []*api.Job{running(alice(100), 1), alice(1), bob(2)},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonAssocMaxJobsLimit},
		},
		{
			name:        "account GrpTRES cpu covers its subtree",
			assocs:      []*api.Association{assoc("physics", "", func(a *api.Association) { a.GrpTRES.CPUs = 4 })},
			jobs:        []*api.Job{running(bob(100, acct("theory")), 3), alice(1, cpus(2)), carol(2, cpus(2))},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonAssocGrpCPULimit},
		},
		{
			name:        "user GrpTRES cpu covers the user's jobs",
			assocs:      []*api.Association{assoc("physics", "alice", func(a *api.Association) { a.GrpTRES.CPUs = 2 })},
			jobs:        []*api.Job{running(alice(100), 2), alice(1), bob(2)},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonAssocGrpCPULimit},
		},
		{
			name:        "account GrpTRES node",
			assocs:      []*api.Association{assoc("physics", "", func(a *api.Association) { a.GrpTRES.Nodes = 1 })},
			jobs:        []*api.Job{running(bob(100), 1), alice(1), carol(2)},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonAssocGrpNodeLimit},
		},
		{
			name:        "account GrpTRES memory",
			assocs:      []*api.Association{assoc("physics", "", func(a *api.Association) { a.GrpTRES.MemoryMB = 1000 })},
			jobs:        []*api.Job{alice(1, mem(2000)), carol(2, mem(2000))},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonAssocGrpMemLimit},
		},
		{
			name:        "QoS MaxWall, a job without a limit exceeds it",
			qos:         normal(func(q *api.QOS) { q.MaxWallSec = 3600 }),
			jobs:        []*api.Job{alice(1, limit(2*h)), alice(3), bob(2, limit(h))},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonQOSMaxWallDurationPerJob, 3: api.ReasonQOSMaxWallDurationPerJob},
		},
		{
			name:        "partition MaxTime",
			part:        func(p *api.Partition) { p.MaxTimeSec = 3600 },
			jobs:        []*api.Job{alice(1, limit(2*h)), bob(2, limit(h))},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonPartitionTimeLimit},
		},
		{
			name:        "partition MaxNodes",
			part:        func(p *api.Partition) { p.MaxNodes = 1 },
			jobs:        []*api.Job{alice(1, nnodes(2)), bob(2)},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonPartitionNodeLimit},
		},
		{
			name:        "partition AllowAccounts",
			part:        func(p *api.Partition) { p.AllowAccounts = []string{"chem"} },
			jobs:        []*api.Job{alice(1), carol(2)},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonAccountNotAllowed},
		},
		{
			name:        "partition AllowQOS",
			qos:         normal(func(*api.QOS) {}),
			part:        func(p *api.Partition) { p.AllowQOS = []string{"high"} },
			jobs:        []*api.Job{alice(1), bob(2, inQOS("high"))},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonQOSNotAllowed},
		},
		{
			name:        "association QoS list",
			qos:         normal(func(*api.QOS) {}),
			assocs:      []*api.Association{assoc("physics", "", func(a *api.Association) { a.QOS = []string{"high"} })},
			jobs:        []*api.Job{alice(1), alice(2, inQOS("high")), carol(3)},
			wantPlaced:  []uint64{2, 3},
			wantReasons: map[uint64]string{1: api.ReasonQOSNotAllowed},
		},
		{
			name:        "unknown QoS",
			qos:         normal(func(*api.QOS) {}),
			jobs:        []*api.Job{alice(1, inQOS("gold")), bob(2)},
			wantPlaced:  []uint64{2},
			wantReasons: map[uint64]string{1: api.ReasonInvalidQOS},
		},
		{
			name:        "fresh cluster: only the default QoS is valid",
			jobs:        []*api.Job{alice(1, inQOS("gold")), alice(2), bob(3, inQOS("normal"))},
			wantPlaced:  []uint64{2, 3},
			wantReasons: map[uint64]string{1: api.ReasonInvalidQOS},
		},
		{
			name: "association default QoS",
			qos:  normal(func(q *api.QOS) { q.MaxJobsPerUser = 1 }),
			assocs: []*api.Association{assoc("physics", "alice", func(a *api.Association) { a.DefaultQOS = "high" }),
				{Account: "chem", User: "alice"}},
			jobs:        []*api.Job{running(alice(100, inQOS("normal")), 1), alice(1), alice(2, acct("chem"))},
			wantPlaced:  []uint64{1},
			wantReasons: map[uint64]string{2: api.ReasonQOSMaxJobsPerUserLimit},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes := []*api.Node{upNode("n1", 64, 64000, 4), upNode("n2", 64, 64000, 4)}
			p := part("p", 0, nodes...)
			if tc.part != nil {
				tc.part(p)
			}
			cfg := api.DefaultSchedConfig()
			cfg.Policy = PolicyPriority
			st := &memState{jobs: tc.jobs, nodes: holding(nodes, tc.jobs), parts: []*api.Partition{p},
				qos: tc.qos, assocs: tc.assocs, accounts: accounts, cfg: &cfg}
			plan := Schedule(t0, st, Options{})
			var placed []uint64
			for _, pl := range plan.Placements {
				placed = append(placed, pl.JobID)
			}
			if !sameIDs(placed, tc.wantPlaced) {
				t.Errorf("placed = %v, want %v", placed, tc.wantPlaced)
			}
			if !equalReasons(plan.Reasons, tc.wantReasons) {
				t.Errorf("reasons = %v, want %v", plan.Reasons, tc.wantReasons)
			}
		})
	}
}

func sameIDs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[uint64]bool{}
	for _, id := range a {
		seen[id] = true
	}
	for _, id := range b {
		if !seen[id] {
			return false
		}
	}
	return true
}

func equalReasons(got, want map[uint64]string) bool {
	if len(got) != len(want) {
		return false
	}
	for id, r := range want {
		if got[id] != r {
			return false
		}
	}
	return true
}

func TestCheckSubmit(t *testing.T) {
	qos := []*api.QOS{
		{Name: "normal", MaxSubmitJobsPerUser: 3, MaxWallSec: 3600},
		{Name: "high", Priority: 10},
	}
	accounts := []*api.Account{{Name: "root"}, {Name: "physics", Parent: "root"}, {Name: "chem", Parent: "root"}}
	assocs := []*api.Association{
		{Account: "physics", User: "alice", MaxSubmitJobs: 3},
		{Account: "chem", QOS: []string{"high"}},
	}
	nodes := []*api.Node{upNode("n1", 4, 4000, 0)}
	parts := []*api.Partition{
		{Name: "p", Nodes: []string{"n1"}, Up: true, Default: true, DefaultTimeSec: 1800},
		{Name: "q", Nodes: []string{"n1"}, Up: true},
		{Name: "chem", Nodes: []string{"n1"}, Up: true, AllowAccounts: []string{"chem"}},
		{Name: "high", Nodes: []string{"n1"}, Up: true, AllowQOS: []string{"high"}},
	}
	// alice has two jobs in physics under normal that count, and two that
	// do not (ended, other QoS and account).
	jobs := []*api.Job{
		with(pend(1, "p"), acct("physics")),
		with(pend(2, "p"), acct("physics"), state(api.JobRunning)),
		with(pend(3, "p"), acct("physics"), state(api.JobCompleted)),
		with(pend(4, "p"), acct("chem"), inQOS("high")),
	}
	resvs := []*api.Reservation{{Name: "maint", Users: []string{"bob"}, Nodes: []string{"n1"}, Start: t0, End: t0.Add(time.Hour)}}
	full := &memState{jobs: jobs, nodes: nodes, parts: parts, qos: qos, accounts: accounts, assocs: assocs, resvs: resvs}
	fresh := &memState{nodes: nodes, parts: parts}
	physics := api.JobSpec{Account: "physics"}
	spec := func(edit func(s *api.JobSpec)) api.JobSpec {
		s := physics
		edit(&s)
		return s
	}

	tests := []struct {
		name  string
		st    State
		user  string
		spec  api.JobSpec
		count int
		want  string // error prefix; "" for none
	}{
		{name: "within limits", st: full, user: "bob", spec: physics, count: 1},
		{name: "limits count pending and running jobs only", st: full, user: "alice", spec: physics, count: 1},
		{name: "unknown account", st: full, user: "alice", spec: api.JobSpec{Account: "bio"}, count: 1,
			want: "--account: invalid account specified: bio"},
		{name: "unknown QoS", st: full, user: "alice", spec: spec(func(s *api.JobSpec) { s.QOS = "gold" }), count: 1,
			want: "--qos: invalid QoS specified: gold"},
		{name: "QoS not allowed by the association", st: full, user: "bob", spec: api.JobSpec{Account: "chem"}, count: 1,
			want: "--qos: QoS normal is not allowed for user bob in account chem"},
		{name: "association QoS list", st: full, user: "bob", spec: api.JobSpec{Account: "chem", QOS: "high"}, count: 1},
		{name: "account not allowed in partition", st: full, user: "bob", spec: spec(func(s *api.JobSpec) { s.Partition = "chem" }), count: 1,
			want: `--account: account "physics" is not allowed in partition chem`},
		{name: "QoS not allowed in partition", st: full, user: "bob", spec: spec(func(s *api.JobSpec) { s.Partition = "high" }), count: 1,
			want: `--qos: QoS "normal" is not allowed in partition high`},
		{name: "partition QoS list", st: full, user: "bob", spec: spec(func(s *api.JobSpec) { s.Partition, s.QOS = "high", "high" }), count: 1},
		{name: "QoS MaxSubmitJobsPerUser", st: full, user: "alice", spec: physics, count: 2,
			want: "--qos: QoS normal MaxSubmitJobsPerUser is 3: user alice has 2 jobs pending or running and submits 2"},
		{name: "association MaxSubmitJobs", st: full, user: "alice", spec: spec(func(s *api.JobSpec) { s.QOS = "high" }), count: 2,
			want: "--account: association MaxSubmitJobs is 3: user alice has 2 jobs pending or running in account physics and submits 2"},
		{name: "array counts every task", st: full, user: "bob", spec: physics, count: 4,
			want: "--qos: QoS normal MaxSubmitJobsPerUser is 3: user bob has 0 jobs pending or running and submits 4"},
		{name: "time over QoS MaxWall", st: full, user: "bob", spec: spec(func(s *api.JobSpec) { s.TimeLimitSec = 7200 }), count: 1,
			want: "--time: 02:00:00 exceeds QoS normal's MaxWall 01:00:00"},
		{name: "partition default time counts", st: full, user: "bob", spec: spec(func(s *api.JobSpec) { s.Partition = "p" }), count: 1},
		{name: "no time limit exceeds MaxWall", st: full, user: "bob", spec: spec(func(s *api.JobSpec) { s.Partition = "q" }), count: 1,
			want: "--time: no time limit exceeds QoS normal's MaxWall 01:00:00"},
		{name: "unknown reservation", st: full, user: "bob", spec: spec(func(s *api.JobSpec) { s.Reservation = "gone" }), count: 1,
			want: "--reservation: reservation gone not found"},
		{name: "reservation denied", st: full, user: "alice", spec: spec(func(s *api.JobSpec) { s.Reservation = "maint" }), count: 1,
			want: "--reservation: access denied to reservation maint for user alice"},
		{name: "reservation admits", st: full, user: "bob", spec: spec(func(s *api.JobSpec) { s.Reservation = "maint" }), count: 1},
		{name: "fresh cluster takes the default QoS", st: fresh, user: "alice", spec: api.JobSpec{QOS: "normal", Account: "any"}, count: 1},
		{name: "fresh cluster knows no other QoS", st: fresh, user: "alice", spec: api.JobSpec{QOS: "gold"}, count: 1,
			want: "--qos: invalid QoS specified: gold"},
		{name: "no specification", st: fresh, user: "alice", count: -1, want: "job: empty specification"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp := &tc.spec
			if tc.count < 0 {
				sp = nil
			}
			err := CheckSubmit(tc.st, tc.user, sp, tc.count)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("err = %v, want none", err)
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
