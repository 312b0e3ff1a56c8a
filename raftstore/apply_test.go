package raftstore

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/scheduler"
)

const t0 = int64(1_700_000_000) * int64(time.Second)

// harness drives a Store through ApplyCommand with growing indexes and a
// clock that advances one second per command.
type harness struct {
	t   *testing.T
	s   *Store
	idx uint64
	now int64
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, s: NewStore(), now: t0}
	h.must(Command{Type: CmdSetPartitions,
		Partitions: []api.Partition{
			{Name: "batch", Nodes: []string{"n1", "n2"}, Default: true, Up: true, DefaultTimeSec: 3600, MaxTimeSec: 7200},
			{Name: "gpu", Nodes: []string{"g1"}, Up: true, MaxTimeSec: 600},
			{Name: "open", Nodes: []string{"n1"}, Up: true},
		},
		ConfiguredNodes: []api.Node{{Name: "n1"}, {Name: "n2"}, {Name: "g1"}},
	})
	for _, n := range []api.AgentRegisterRequest{
		{Name: "n1", CPUs: 8, MemoryMB: 16000},
		{Name: "n2", CPUs: 8, MemoryMB: 16000},
		{Name: "g1", CPUs: 16, MemoryMB: 64000, GPUs: 2},
	} {
		h.must(Command{Type: CmdRegisterNode, Register: &n})
	}
	return h
}

func (h *harness) do(c Command) any {
	h.t.Helper()
	h.idx++
	h.now += int64(time.Second)
	if c.Time == 0 {
		c.Time = h.now
	}
	return h.s.ApplyCommand(h.idx, &c)
}

func (h *harness) must(c Command) any {
	h.t.Helper()
	res := h.do(c)
	if err, ok := res.(error); ok {
		h.t.Fatalf("command %d: %v", c.Type, err)
	}
	return res
}

func (h *harness) submit(spec api.JobSpec) *SubmitResult {
	h.t.Helper()
	return h.must(Command{Type: CmdSubmitJob, Submit: &SubmitJob{Spec: spec, User: "alice", UID: 1000, GID: 1000}}).(*SubmitResult)
}

func (h *harness) plan(pls ...scheduler.Placement) *PlanResult {
	h.t.Helper()
	return h.must(Command{Type: CmdApplyPlan, Plan: &scheduler.Plan{Placements: pls}}).(*PlanResult)
}

// run submits a job and places it on nodes with 2 CPUs and 1000 MB each.
func (h *harness) run(spec api.JobSpec, nodes ...string) uint64 {
	h.t.Helper()
	id := h.submit(spec).JobID
	if r := h.plan(scheduler.Placement{JobID: id, Nodes: nodes, CPUs: 2, MemoryMB: 1000}); r.Applied != 1 {
		h.t.Fatalf("placing job %d: %+v", id, r)
	}
	return id
}

func (h *harness) job(id uint64) *api.Job {
	h.t.Helper()
	j := h.s.Snapshot().Job(id)
	if j == nil {
		h.t.Fatalf("job %d missing", id)
	}
	return j
}

func (h *harness) node(name string) *api.Node {
	h.t.Helper()
	n := h.s.Snapshot().Node(name)
	if n == nil {
		h.t.Fatalf("node %s missing", name)
	}
	return n
}

func (h *harness) alloc(name string) [3]int64 {
	n := h.node(name)
	return [3]int64{int64(n.AllocCPUs), n.AllocMemoryMB, int64(n.AllocGPUs)}
}

func TestSubmit(t *testing.T) {
	tests := []struct {
		name      string
		spec      api.JobSpec
		wantErr   error
		wantTasks []int
		wantPart  string
		wantLimit int64
		wantHeld  string
	}{
		{name: "default partition and time", spec: api.JobSpec{Name: "a"}, wantPart: "batch", wantLimit: 3600},
		{name: "explicit time", spec: api.JobSpec{TimeLimitSec: 60}, wantPart: "batch", wantLimit: 60},
		{name: "partition max as default", spec: api.JobSpec{Partition: "gpu"}, wantPart: "gpu", wantLimit: 600},
		{name: "no limits", spec: api.JobSpec{Partition: "open"}, wantPart: "open", wantLimit: 0},
		{name: "held", spec: api.JobSpec{Hold: true}, wantPart: "batch", wantLimit: 3600, wantHeld: "user"},
		{name: "array", spec: api.JobSpec{Array: "1,3,5", ArrayTasks: []int{1, 3, 5, 3}}, wantTasks: []int{1, 3, 5}, wantPart: "batch", wantLimit: 3600},
		{name: "unknown partition", spec: api.JobSpec{Partition: "nope"}, wantErr: ErrUnknownPartition},
		{name: "negative task", spec: api.JobSpec{ArrayTasks: []int{-1}}, wantErr: ErrInvalidCommand},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			next := h.s.Snapshot().NextJobID()
			res := h.do(Command{Type: CmdSubmitJob, Submit: &SubmitJob{Spec: tc.spec, User: "alice", UID: 1000, GID: 100}})
			if tc.wantErr != nil {
				if err, _ := res.(error); !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want %v", res, tc.wantErr)
				}
				if got := h.s.Snapshot().NextJobID(); got != next {
					t.Errorf("failed submit consumed ids: next %d → %d", next, got)
				}
				return
			}
			sr := res.(*SubmitResult)
			if sr.JobID != next || sr.Duplicate {
				t.Fatalf("result %+v, want job %d", sr, next)
			}
			ids := []uint64{sr.JobID}
			if tc.wantTasks != nil {
				ids = sr.TaskIDs
				if len(ids) != len(tc.wantTasks) {
					t.Fatalf("task ids %v, want %d tasks", ids, len(tc.wantTasks))
				}
			} else if sr.TaskIDs != nil {
				t.Fatalf("plain job has task ids %v", sr.TaskIDs)
			}
			for i, id := range ids {
				j := h.job(id)
				wantTask, wantArray := -1, uint64(0)
				if tc.wantTasks != nil {
					wantTask, wantArray = tc.wantTasks[i], sr.JobID
				}
				if id != next+uint64(i) || j.ArrayTaskID != wantTask || j.ArrayJobID != wantArray {
					t.Errorf("job %d: task %d array %d, want id %d task %d array %d", id, j.ArrayTaskID, j.ArrayJobID, next+uint64(i), wantTask, wantArray)
				}
				if j.State != api.JobPending || j.Spec.Partition != tc.wantPart || j.TimeLimitSec != tc.wantLimit || j.HeldBy != tc.wantHeld {
					t.Errorf("job %d: %s part %q limit %d held %q", id, j.State, j.Spec.Partition, j.TimeLimitSec, j.HeldBy)
				}
				if j.User != "alice" || j.UID != 1000 || j.GID != 100 || !j.SubmitTime.Equal(time.Unix(0, h.now)) || j.ModifyIndex != h.idx {
					t.Errorf("job %d: user %s/%d/%d submit %v index %d", id, j.User, j.UID, j.GID, j.SubmitTime, j.ModifyIndex)
				}
				if j.Spec.ArrayTasks != nil {
					t.Errorf("job %d keeps the array task list", id)
				}
			}
			if tc.wantTasks != nil {
				if got := h.s.Snapshot().JobsByArray(sr.JobID); len(got) != len(tc.wantTasks) {
					t.Errorf("JobsByArray: %d jobs", len(got))
				}
			}
		})
	}
}

func TestSubmitIdempotent(t *testing.T) {
	tests := []struct {
		name string
		spec api.JobSpec
	}{
		{"plain", api.JobSpec{SubmitID: "s-1"}},
		{"array", api.JobSpec{SubmitID: "s-2", ArrayTasks: []int{0, 1, 2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			first := h.submit(tc.spec)
			next := h.s.Snapshot().NextJobID()
			again := h.submit(tc.spec)
			if !again.Duplicate || again.JobID != first.JobID || !slices.Equal(again.TaskIDs, first.TaskIDs) {
				t.Fatalf("retry gave %+v, first %+v", again, first)
			}
			if h.s.Snapshot().NextJobID() != next || len(h.s.Snapshot().Jobs()) != max(1, len(tc.spec.ArrayTasks)) {
				t.Fatalf("retry created jobs")
			}
			if j := h.s.Snapshot().JobBySubmitID(tc.spec.SubmitID); j == nil || j.ID != first.JobID {
				t.Fatalf("JobBySubmitID: %v", j)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	tests := []struct {
		name        string
		setup       func(h *harness) uint64
		wantChanged bool
		wantState   api.JobState
		wantCancel  bool
	}{
		{"pending", func(h *harness) uint64 { return h.submit(api.JobSpec{}).JobID }, true, api.JobCancelled, false},
		{"running", func(h *harness) uint64 { return h.run(api.JobSpec{}, "n1") }, true, api.JobRunning, true},
		{"running already requested", func(h *harness) uint64 {
			id := h.run(api.JobSpec{}, "n1")
			h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{id}})
			return id
		}, false, api.JobRunning, true},
		{"terminal", func(h *harness) uint64 {
			id := h.submit(api.JobSpec{}).JobID
			h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{id}})
			return id
		}, false, api.JobCancelled, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := tc.setup(h)
			before := h.job(id)
			changed := h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{id, 999}}).([]uint64)
			if got := slices.Contains(changed, id); got != tc.wantChanged || len(changed) > 1 {
				t.Fatalf("changed %v", changed)
			}
			j := h.job(id)
			if j.State != tc.wantState || j.CancelRequested != tc.wantCancel {
				t.Fatalf("state %s cancel %v", j.State, j.CancelRequested)
			}
			if tc.wantChanged && before.State == api.JobPending && (!j.EndTime.Equal(time.Unix(0, h.now)) || j.Reason != "") {
				t.Errorf("end %v reason %q", j.EndTime, j.Reason)
			}
			if !tc.wantChanged && j.ModifyIndex != before.ModifyIndex {
				t.Errorf("unchanged job rewritten")
			}
		})
	}
}

func TestHoldRelease(t *testing.T) {
	tests := []struct {
		name       string
		steps      []Command // applied to the job in order; JobIDs filled in
		wantHeld   string
		wantReason string
		wantErr    bool
	}{
		{"user hold", []Command{{Type: CmdHoldJobs, HeldBy: "user"}}, "user", api.ReasonJobHeldUser, false},
		{"admin hold", []Command{{Type: CmdHoldJobs, HeldBy: "admin"}}, "admin", api.ReasonJobHeldAdmin, false},
		{"user hold keeps admin hold", []Command{{Type: CmdHoldJobs, HeldBy: "admin"}, {Type: CmdHoldJobs, HeldBy: "user"}}, "admin", api.ReasonJobHeldAdmin, false},
		{"user release", []Command{{Type: CmdHoldJobs, HeldBy: "user"}, {Type: CmdReleaseJobs, HeldBy: "user"}}, "", api.ReasonNone, false},
		{"user cannot release admin hold", []Command{{Type: CmdHoldJobs, HeldBy: "admin"}, {Type: CmdReleaseJobs, HeldBy: "user"}}, "admin", api.ReasonJobHeldAdmin, false},
		{"admin releases user hold", []Command{{Type: CmdHoldJobs, HeldBy: "user"}, {Type: CmdReleaseJobs, HeldBy: "admin"}}, "", api.ReasonNone, false},
		{"bad holder", []Command{{Type: CmdHoldJobs, HeldBy: "root"}}, "", api.ReasonNone, true},
		{"bad releaser", []Command{{Type: CmdReleaseJobs}}, "", api.ReasonNone, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.submit(api.JobSpec{}).JobID
			var last any
			for _, c := range tc.steps {
				c.JobIDs = []uint64{id}
				last = h.do(c)
			}
			if _, isErr := last.(error); isErr != tc.wantErr {
				t.Fatalf("result %v", last)
			}
			if j := h.job(id); j.HeldBy != tc.wantHeld || j.Reason != tc.wantReason {
				t.Fatalf("held %q reason %q", j.HeldBy, j.Reason)
			}
		})
	}

	t.Run("running job not held", func(t *testing.T) {
		h := newHarness(t)
		id := h.run(api.JobSpec{}, "n1")
		if ch := h.must(Command{Type: CmdHoldJobs, HeldBy: "user", JobIDs: []uint64{id}}).([]uint64); len(ch) != 0 {
			t.Fatalf("held a running job: %v", ch)
		}
	})
}

func TestApplyPlan(t *testing.T) {
	pl := func(id uint64, cpus int, mem int64, excl bool, nodes ...string) scheduler.Placement {
		return scheduler.Placement{JobID: id, Nodes: nodes, CPUs: cpus, MemoryMB: mem, Exclusive: excl}
	}
	tests := []struct {
		name string
		// build returns the placements for freshly submitted pending jobs ids.
		build        func(h *harness, ids []uint64) []scheduler.Placement
		wantApplied  int
		wantRejected int
		wantAlloc    map[string][3]int64
		wantExcl     string // node expected to be held exclusively
	}{
		{"fits", func(h *harness, ids []uint64) []scheduler.Placement {
			return []scheduler.Placement{pl(ids[0], 4, 8000, false, "n1", "n2")}
		}, 1, 0, map[string][3]int64{"n1": {4, 8000, 0}, "n2": {4, 8000, 0}}, ""},
		{"overcommit within one plan", func(h *harness, ids []uint64) []scheduler.Placement {
			return []scheduler.Placement{pl(ids[0], 6, 1000, false, "n1"), pl(ids[1], 6, 1000, false, "n1")}
		}, 1, 1, map[string][3]int64{"n1": {6, 1000, 0}}, ""},
		{"all or nothing", func(h *harness, ids []uint64) []scheduler.Placement {
			return []scheduler.Placement{pl(ids[0], 8, 0, false, "n2"), pl(ids[1], 2, 0, false, "n1", "n2")}
		}, 1, 1, map[string][3]int64{"n1": {0, 0, 0}, "n2": {8, 0, 0}}, ""},
		{"not pending", func(h *harness, ids []uint64) []scheduler.Placement {
			h.must(Command{Type: CmdCancelJobs, JobIDs: ids[:1]})
			return []scheduler.Placement{pl(ids[0], 1, 0, false, "n1")}
		}, 0, 1, map[string][3]int64{"n1": {0, 0, 0}}, ""},
		{"placed twice", func(h *harness, ids []uint64) []scheduler.Placement {
			return []scheduler.Placement{pl(ids[0], 1, 0, false, "n1"), pl(ids[0], 1, 0, false, "n2")}
		}, 1, 1, map[string][3]int64{"n1": {1, 0, 0}, "n2": {0, 0, 0}}, ""},
		{"held", func(h *harness, ids []uint64) []scheduler.Placement {
			h.must(Command{Type: CmdHoldJobs, HeldBy: "user", JobIDs: ids[:1]})
			return []scheduler.Placement{pl(ids[0], 1, 0, false, "n1")}
		}, 0, 1, map[string][3]int64{"n1": {0, 0, 0}}, ""},
		{"unknown node", func(h *harness, ids []uint64) []scheduler.Placement {
			return []scheduler.Placement{pl(ids[0], 1, 0, false, "n1", "zz")}
		}, 0, 1, map[string][3]int64{"n1": {0, 0, 0}}, ""},
		{"duplicate node", func(h *harness, ids []uint64) []scheduler.Placement {
			return []scheduler.Placement{pl(ids[0], 6, 0, false, "n1", "n1")}
		}, 0, 1, map[string][3]int64{"n1": {0, 0, 0}}, ""},
		{"drained node", func(h *harness, ids []uint64) []scheduler.Placement {
			h.must(Command{Type: CmdUpdateNodes, NodeNames: []string{"n1"}, NodeState: "drain", Reason: "maint"})
			return []scheduler.Placement{pl(ids[0], 1, 0, false, "n1")}
		}, 0, 1, map[string][3]int64{"n1": {0, 0, 0}}, ""},
		{"gpus", func(h *harness, ids []uint64) []scheduler.Placement {
			a := pl(ids[0], 1, 0, false, "g1")
			a.GPUs = 2
			b := pl(ids[1], 1, 0, false, "g1")
			b.GPUs = 1
			return []scheduler.Placement{a, b}
		}, 1, 1, map[string][3]int64{"g1": {1, 0, 2}}, ""},
		{"exclusive blocks others", func(h *harness, ids []uint64) []scheduler.Placement {
			return []scheduler.Placement{pl(ids[0], 8, 16000, true, "n1"), pl(ids[1], 1, 0, false, "n1")}
		}, 1, 1, map[string][3]int64{"n1": {8, 16000, 0}}, "n1"},
		{"exclusive needs an empty node", func(h *harness, ids []uint64) []scheduler.Placement {
			return []scheduler.Placement{pl(ids[0], 1, 0, false, "n1"), pl(ids[1], 8, 0, true, "n1")}
		}, 1, 1, map[string][3]int64{"n1": {1, 0, 0}}, ""},
		{"zero cpus", func(h *harness, ids []uint64) []scheduler.Placement {
			return []scheduler.Placement{pl(ids[0], 0, 0, false, "n1")}
		}, 0, 1, map[string][3]int64{"n1": {0, 0, 0}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ids := []uint64{h.submit(api.JobSpec{}).JobID, h.submit(api.JobSpec{}).JobID}
			res := h.plan(tc.build(h, ids)...)
			if res.Applied != tc.wantApplied || len(res.Rejected) != tc.wantRejected {
				t.Fatalf("result %+v", res)
			}
			for name, want := range tc.wantAlloc {
				if got := h.alloc(name); got != want {
					t.Errorf("%s alloc %v, want %v", name, got, want)
				}
				if got := h.node(name).Exclusive; got != (name == tc.wantExcl) {
					t.Errorf("%s exclusive %v", name, got)
				}
			}
			for _, j := range h.s.Snapshot().RunningJobs() {
				if j.Reason != api.ReasonNone || !j.StartTime.Equal(time.Unix(0, h.now)) || len(j.Nodes) == 0 || j.AllocCPUs == 0 {
					t.Errorf("running job %d: %+v", j.ID, j)
				}
				for _, n := range j.Nodes {
					if !slices.ContainsFunc(h.s.Snapshot().JobsByNode(n), func(o *api.Job) bool { return o.ID == j.ID }) {
						t.Errorf("JobsByNode(%s) misses job %d", n, j.ID)
					}
				}
			}
		})
	}

	t.Run("reasons and priorities only on pending", func(t *testing.T) {
		h := newHarness(t)
		pend := h.submit(api.JobSpec{}).JobID
		run := h.run(api.JobSpec{}, "n1")
		h.must(Command{Type: CmdApplyPlan, Plan: &scheduler.Plan{
			Reasons:    map[uint64]string{pend: api.ReasonResources, run: api.ReasonPriority, 999: "x"},
			Priorities: map[uint64]int64{pend: 42, run: 7},
		}})
		if j := h.job(pend); j.Reason != api.ReasonResources || j.Priority != 42 {
			t.Errorf("pending: %q %d", j.Reason, j.Priority)
		}
		if j := h.job(run); j.Reason != api.ReasonNone || j.Priority == 7 {
			t.Errorf("running: %q %d", j.Reason, j.Priority)
		}
	})
}

func TestJobReport(t *testing.T) {
	usage := api.Usage{CPUTimeNs: 5e9, MaxRSSB: 1 << 20}
	tests := []struct {
		name      string
		report    api.JobReport // JobID filled in
		want      bool
		wantState api.JobState
		wantFreed bool
	}{
		{"progress", api.JobReport{Node: "n1", State: api.JobRunning, Usage: usage}, true, api.JobRunning, false},
		{"completed", api.JobReport{Node: "n1", State: api.JobCompleted, Usage: usage, EndUnix: 1_700_000_100}, true, api.JobCompleted, true},
		{"failed on second node", api.JobReport{Node: "n2", State: api.JobFailed, ExitCode: 3, Reason: "NonZeroExitCode"}, true, api.JobFailed, true},
		{"wrong attempt", api.JobReport{Node: "n1", State: api.JobCompleted, Attempt: 1}, false, api.JobRunning, false},
		{"wrong node", api.JobReport{Node: "g1", State: api.JobCompleted}, false, api.JobRunning, false},
		{"unknown state", api.JobReport{Node: "n1", State: "BOGUS"}, false, api.JobRunning, false},
		{"pending state", api.JobReport{Node: "n1", State: api.JobPending}, false, api.JobRunning, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.run(api.JobSpec{}, "n1", "n2")
			h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{id}})
			r := tc.report
			r.JobID = id
			if got := h.must(Command{Type: CmdJobReport, Report: &r}); got != tc.want {
				t.Fatalf("result %v", got)
			}
			j := h.job(id)
			if j.State != tc.wantState {
				t.Fatalf("state %s", j.State)
			}
			if tc.want && j.Usage != r.Usage {
				t.Errorf("usage %+v", j.Usage)
			}
			freed := h.alloc("n1") == [3]int64{} && h.alloc("n2") == [3]int64{}
			if freed != tc.wantFreed {
				t.Errorf("freed %v: n1 %v n2 %v", freed, h.alloc("n1"), h.alloc("n2"))
			}
			if tc.wantFreed {
				wantEnd := time.Unix(0, h.now)
				if r.EndUnix != 0 {
					wantEnd = time.Unix(r.EndUnix, 0)
				}
				if !j.EndTime.Equal(wantEnd) || j.ExitCode != r.ExitCode || j.FailReason != r.Reason || j.CancelRequested {
					t.Errorf("end %v exit %d reason %q cancel %v", j.EndTime, j.ExitCode, j.FailReason, j.CancelRequested)
				}
				if len(h.s.Snapshot().JobsByNode("n1")) != 0 {
					t.Errorf("terminal job still listed on its node")
				}
				// A late report about the finished job changes nothing.
				if got := h.must(Command{Type: CmdJobReport, Report: &r}); got != false {
					t.Errorf("second final report applied")
				}
			}
		})
	}
}

func TestNodesDown(t *testing.T) {
	tests := []struct {
		name      string
		cmd       Command
		wantReq   bool
		wantState api.JobState
	}{
		{"requeue", Command{Type: CmdNodesDown, NodeNames: []string{"n1"}, Reason: "Not responding"}, true, api.JobPending},
		{"node fail", Command{Type: CmdNodesDown, NodeNames: []string{"n1", "nosuch"}, Reason: "Not responding"}, false, api.JobNodeFail},
		{"admin down", Command{Type: CmdUpdateNodes, NodeNames: []string{"n1"}, NodeState: "down", Reason: "bad dimm"}, false, api.JobNodeFail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.run(api.JobSpec{Requeue: tc.wantReq}, "n1", "n2")
			other := h.run(api.JobSpec{}, "n2")
			res := h.must(tc.cmd).(*NodesDownResult)
			if got := slices.Contains(res.Requeued, id); got != tc.wantReq || slices.Contains(res.Failed, id) == tc.wantReq {
				t.Fatalf("result %+v", res)
			}
			j := h.job(id)
			if j.State != tc.wantState {
				t.Fatalf("state %s", j.State)
			}
			if tc.wantReq && (j.Restarts != 1 || j.Nodes != nil || !j.StartTime.IsZero()) {
				t.Errorf("requeued job: %+v", j)
			}
			if !tc.wantReq && (!j.EndTime.Equal(time.Unix(0, h.now)) || j.FailReason == "") {
				t.Errorf("failed job: end %v reason %q", j.EndTime, j.FailReason)
			}
			if n := h.node("n1"); n.State != api.NodeDown || n.Reason != tc.cmd.Reason || h.alloc("n1") != [3]int64{} {
				t.Errorf("n1: %s %q %v", n.State, n.Reason, h.alloc("n1"))
			}
			// n2 keeps only the other job's allocation.
			if h.alloc("n2") != [3]int64{2, 1000, 0} || h.job(other).State != api.JobRunning {
				t.Errorf("n2 alloc %v, other job %s", h.alloc("n2"), h.job(other).State)
			}
		})
	}
}

func TestRequeue(t *testing.T) {
	tests := []struct {
		name        string
		setup       func(h *harness) uint64
		wantChanged bool
		wantState   api.JobState
	}{
		{"running", func(h *harness) uint64 { return h.run(api.JobSpec{Requeue: true}, "n1") }, true, api.JobPending},
		{"completed", func(h *harness) uint64 {
			id := h.run(api.JobSpec{Requeue: true}, "n1")
			h.must(Command{Type: CmdJobReport, Report: &api.JobReport{JobID: id, Node: "n1", State: api.JobCompleted, ExitCode: 0}})
			return id
		}, true, api.JobPending},
		{"no-requeue job", func(h *harness) uint64 { return h.run(api.JobSpec{}, "n1") }, false, api.JobRunning},
		{"pending", func(h *harness) uint64 { return h.submit(api.JobSpec{Requeue: true}).JobID }, false, api.JobPending},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := tc.setup(h)
			before := h.job(id)
			changed := h.must(Command{Type: CmdRequeueJobs, JobIDs: []uint64{id}}).([]uint64)
			if slices.Contains(changed, id) != tc.wantChanged {
				t.Fatalf("changed %v", changed)
			}
			j := h.job(id)
			if j.State != tc.wantState {
				t.Fatalf("state %s", j.State)
			}
			if !tc.wantChanged {
				return
			}
			if j.Restarts != before.Restarts+1 || j.Nodes != nil || !j.StartTime.IsZero() || !j.EndTime.IsZero() ||
				j.AllocCPUs != 0 || j.CancelRequested || j.Usage != (api.Usage{}) || j.Reason != api.ReasonNone {
				t.Errorf("requeued job: %+v", j)
			}
			if h.alloc("n1") != [3]int64{} {
				t.Errorf("n1 alloc %v", h.alloc("n1"))
			}
			// The next attempt runs; a report from the old attempt is ignored.
			if r := h.plan(scheduler.Placement{JobID: id, Nodes: []string{"n2"}, CPUs: 1}); r.Applied != 1 {
				t.Fatalf("re-place: %+v", r)
			}
			old := &api.JobReport{JobID: id, Node: "n2", State: api.JobFailed, Attempt: before.Restarts}
			if got := h.must(Command{Type: CmdJobReport, Report: old}); got != false || h.job(id).State != api.JobRunning {
				t.Errorf("stale report applied")
			}
		})
	}
}

func TestRegisterNode(t *testing.T) {
	tests := []struct {
		name       string
		setup      []Command
		wantDrain  bool
		wantReason string
	}{
		{"fresh", nil, false, ""},
		{"drain and reason kept", []Command{{Type: CmdUpdateNodes, NodeNames: []string{"n1"}, NodeState: "drain", Reason: "maint"}}, true, "maint"},
		{"down comes back up", []Command{{Type: CmdNodesDown, NodeNames: []string{"n1"}, Reason: "Not responding"}}, false, ""},
		{"down and drained keeps reason", []Command{
			{Type: CmdUpdateNodes, NodeNames: []string{"n1"}, NodeState: "drain", Reason: "maint"},
			{Type: CmdNodesDown, NodeNames: []string{"n1"}, Reason: "maint"},
		}, true, "maint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.run(api.JobSpec{Requeue: true}, "n2")
			for _, c := range tc.setup {
				h.must(c)
			}
			allocN2 := h.alloc("n2")
			for _, name := range []string{"n2", "n1"} {
				got := h.must(Command{Type: CmdRegisterNode, Register: &api.AgentRegisterRequest{
					Name: name, CPUs: 32, MemoryMB: 128000, GPUs: 1, Features: []string{"avx512"},
					BootTime: 1_699_999_000, AgentVersion: "1.2", Arch: "x86_64", OS: "linux",
				}}).(*api.Node)
				if got != h.node(name) {
					t.Errorf("result is not the stored record")
				}
			}
			n := h.node("n1")
			if n.State != api.NodeUp || n.Drain != tc.wantDrain || n.Reason != tc.wantReason {
				t.Errorf("n1: %s drain %v reason %q", n.State, n.Drain, n.Reason)
			}
			if n.CPUs != 32 || n.GPUs != 1 || n.AgentVersion != "1.2" || !n.BootTime.Equal(time.Unix(1_699_999_000, 0)) ||
				!n.RegisteredAt.Equal(time.Unix(0, h.now)) || n.ModifyIndex != h.idx {
				t.Errorf("n1 inventory: %+v", n)
			}
			if h.alloc("n2") != allocN2 {
				t.Errorf("registration changed n2's allocation: %v → %v", allocN2, h.alloc("n2"))
			}
		})
	}
	t.Run("no name", func(t *testing.T) {
		h := newHarness(t)
		if _, ok := h.do(Command{Type: CmdRegisterNode, Register: &api.AgentRegisterRequest{}}).(error); !ok {
			t.Fatal("accepted a nameless node")
		}
	})
}

func TestUpdateNodes(t *testing.T) {
	tests := []struct {
		name      string
		cmds      []Command
		wantErr   error
		wantState api.NodeState
		wantDrain bool
	}{
		{"drain", []Command{{NodeState: "drain", Reason: "maint"}}, nil, api.NodeUp, true},
		{"resume", []Command{{NodeState: "drain", Reason: "maint"}, {NodeState: "resume"}}, nil, api.NodeUp, false},
		{"resume down", []Command{{NodeState: "down", Reason: "x"}, {NodeState: "resume"}}, nil, api.NodeUp, false},
		{"down", []Command{{NodeState: "down", Reason: "x"}}, nil, api.NodeDown, false},
		{"bad state", []Command{{NodeState: "idle"}}, ErrInvalidCommand, api.NodeUp, false},
		{"unknown node", []Command{{NodeState: "drain", NodeNames: []string{"n1", "zz"}}}, ErrUnknownNode, api.NodeUp, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			var last any
			for _, c := range tc.cmds {
				c.Type = CmdUpdateNodes
				if c.NodeNames == nil {
					c.NodeNames = []string{"n1"}
				}
				last = h.do(c)
			}
			if err, _ := last.(error); !errors.Is(err, tc.wantErr) {
				t.Fatalf("result %v, want %v", last, tc.wantErr)
			}
			n := h.node("n1")
			if n.State != tc.wantState || n.Drain != tc.wantDrain {
				t.Errorf("n1 %s drain %v", n.State, n.Drain)
			}
			if !tc.wantDrain && tc.wantState == api.NodeUp && n.Reason != "" {
				t.Errorf("reason %q kept", n.Reason)
			}
		})
	}
}

func TestSetPartitions(t *testing.T) {
	tests := []struct {
		name    string
		cmd     Command
		wantErr bool
		check   func(t *testing.T, s *Snapshot)
	}{
		{"replace and create nodes", Command{
			Partitions:      []api.Partition{{Name: "new", Nodes: []string{"n1", "n9"}, Default: true}},
			ConfiguredNodes: []api.Node{{Name: "n1", CPUs: 1}, {Name: "n9", CPUs: 4, State: api.NodeUp, AllocCPUs: 3}},
		}, false, func(t *testing.T, s *Snapshot) {
			if len(s.Partitions()) != 1 || s.DefaultPartition().Name != "new" || s.Partition("batch") != nil {
				t.Errorf("partitions %v", s.Partitions())
			}
			if n := s.Node("n9"); n == nil || n.State != api.NodeUnknown || n.CPUs != 4 || n.AllocCPUs != 0 {
				t.Errorf("n9: %+v", n)
			}
			if n := s.Node("n1"); n.State != api.NodeUp || n.CPUs != 8 {
				t.Errorf("registered n1 overwritten: %+v", n)
			}
		}},
		{"no default", Command{Partitions: []api.Partition{{Name: "a"}}}, false, func(t *testing.T, s *Snapshot) {
			if s.DefaultPartition() != nil {
				t.Errorf("default %v", s.DefaultPartition())
			}
		}},
		{"two defaults", Command{Partitions: []api.Partition{{Name: "a", Default: true}, {Name: "b", Default: true}}}, true, nil},
		{"duplicate", Command{Partitions: []api.Partition{{Name: "a"}, {Name: "a"}}}, true, nil},
		{"unnamed node", Command{ConfiguredNodes: []api.Node{{}}}, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.cmd.Type = CmdSetPartitions
			res := h.do(tc.cmd)
			if _, isErr := res.(error); isErr != tc.wantErr {
				t.Fatalf("result %v", res)
			}
			if tc.wantErr {
				if len(h.s.Snapshot().Partitions()) != 3 {
					t.Errorf("rejected command changed partitions")
				}
				return
			}
			tc.check(t, h.s.Snapshot())
		})
	}
}

func TestUsersAccountsControllers(t *testing.T) {
	tests := []struct {
		name    string
		cmd     Command
		wantErr bool
		check   func(t *testing.T, s *Snapshot)
	}{
		{"user", Command{Type: CmdAddUser, User: &api.User{Name: "bob", UID: 1001, TokenID: "tok1", TokenHash: "$argon2id$x"}}, false,
			func(t *testing.T, s *Snapshot) {
				if u := s.UserByTokenID("tok1"); u == nil || u.Name != "bob" || u.TokenHash != "$argon2id$x" {
					t.Errorf("user %+v", u)
				}
			}},
		{"user hash via log field", Command{Type: CmdAddUser, User: &api.User{Name: "bob"}, UserTokenHash: "h2"}, false,
			func(t *testing.T, s *Snapshot) {
				if u := s.User("bob"); u == nil || u.TokenHash != "h2" {
					t.Errorf("user %+v", u)
				}
			}},
		{"nameless user", Command{Type: CmdAddUser, User: &api.User{}}, true, nil},
		{"account", Command{Type: CmdAddAccount, Account: &api.Account{Name: "physics", Parent: "root"}}, false,
			func(t *testing.T, s *Snapshot) {
				if a := s.Account("physics"); a == nil || a.Parent != "root" || len(s.Accounts()) != 1 {
					t.Errorf("accounts %v", s.Accounts())
				}
			}},
		{"controller", Command{Type: CmdSetController, Controller: &api.Controller{ID: "c1", RaftAddr: "a:1"}}, false,
			func(t *testing.T, s *Snapshot) {
				if cs := s.Controllers(); len(cs) != 1 || cs[0].RaftAddr != "a:1" {
					t.Errorf("controllers %v", cs)
				}
			}},
		{"remove controller", Command{Type: CmdRemoveController, Controller: &api.Controller{ID: "c0"}}, false,
			func(t *testing.T, s *Snapshot) {
				if cs := s.Controllers(); len(cs) != 0 {
					t.Errorf("controllers %v", cs)
				}
			}},
		{"unknown command", Command{Type: 200}, true, nil},
		{"submit without job", Command{Type: CmdSubmitJob}, true, nil},
		{"plan without plan", Command{Type: CmdApplyPlan}, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.must(Command{Type: CmdSetController, Controller: &api.Controller{ID: "c0"}})
			if tc.cmd.Type == CmdSetController {
				h.must(Command{Type: CmdRemoveController, Controller: &api.Controller{ID: "c0"}})
			}
			res := h.do(tc.cmd)
			if _, isErr := res.(error); isErr != tc.wantErr {
				t.Fatalf("result %v", res)
			}
			if h.s.Index() != h.idx {
				t.Errorf("index %d, want %d even for rejected commands", h.s.Index(), h.idx)
			}
			if tc.check != nil {
				tc.check(t, h.s.Snapshot())
			}
		})
	}
}

func TestSnapshotIsolation(t *testing.T) {
	h := newHarness(t)
	id := h.submit(api.JobSpec{}).JobID
	before := h.s.Snapshot()
	h.run(api.JobSpec{}, "n1")
	h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{id}})
	if j := before.Job(id); j.State != api.JobPending || len(before.Jobs()) != 1 || before.Node("n1").AllocCPUs != 0 {
		t.Fatalf("old snapshot changed: %+v", j)
	}
	if before.Index() >= h.s.Snapshot().Index() {
		t.Fatalf("index did not advance")
	}
}

func TestWaitForIndex(t *testing.T) {
	h := newHarness(t)
	start := h.s.Index()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := h.s.WaitForIndex(ctx, start); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no change: %v", err)
	}
	if got, err := h.s.WaitForIndex(context.Background(), start-1); err != nil || got != start {
		t.Fatalf("past index: %d %v", got, err)
	}
	done := make(chan uint64)
	go func() {
		got, _ := h.s.WaitForIndex(context.Background(), start)
		done <- got
	}()
	time.Sleep(10 * time.Millisecond)
	h.submit(api.JobSpec{})
	select {
	case got := <-done:
		if got != start+1 {
			t.Fatalf("woke at %d", got)
		}
	case <-time.After(time.Second):
		t.Fatal("not woken")
	}
}

func TestStoreSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdAddUser, User: &api.User{Name: "bob", TokenID: "t", TokenHash: "secret-hash"}})
	h.run(api.JobSpec{Requeue: true, Environment: map[string]string{"B": "2", "A": "1"}}, "n1")
	h.submit(api.JobSpec{ArrayTasks: []int{1, 2}})

	var a bytes.Buffer
	if _, err := h.s.Snapshot().WriteTo(&a); err != nil {
		t.Fatal(err)
	}
	s2 := NewStore()
	if err := s2.Restore(bytes.NewReader(a.Bytes())); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := s2.Snapshot().WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("round trip differs:\n%s\n---\n%s", a.String(), b.String())
	}
	if s2.Index() != h.s.Index() || s2.Snapshot().User("bob").TokenHash != "secret-hash" {
		t.Fatalf("index %d/%d, user %+v", s2.Index(), h.s.Index(), s2.Snapshot().User("bob"))
	}
	// Both continue identically.
	c := Command{Type: CmdSubmitJob, Time: t0, Submit: &SubmitJob{Spec: api.JobSpec{}}}
	r1 := h.s.ApplyCommand(h.idx+1, &c).(*SubmitResult)
	r2 := s2.ApplyCommand(h.idx+1, &c).(*SubmitResult)
	if r1.JobID != r2.JobID {
		t.Fatalf("next ids differ: %d %d", r1.JobID, r2.JobID)
	}

	for _, bad := range []string{"", "{\"format\":\"other\",\"version\":1}\n", "{\"format\":\"stockade-state\",\"version\":1}\n{\"k\":\"what\",\"v\":{}}\n"} {
		if err := s2.Restore(bytes.NewReader([]byte(bad))); err == nil {
			t.Errorf("restored %q", bad)
		}
	}
	if s2.Index() != h.idx+1 {
		t.Errorf("failed restore changed the state")
	}
}

func TestFSMApplyBatch(t *testing.T) {
	s := NewStore()
	f := &fsm{s: s}
	part, _ := encodeCommand(&Command{Type: CmdSetPartitions, Partitions: []api.Partition{{Name: "p", Default: true}}})
	user, _ := encodeCommand(&Command{Type: CmdAddUser, User: &api.User{Name: "u", TokenHash: "h"}})
	sub, _ := encodeCommand(&Command{Type: CmdSubmitJob, Time: t0, Submit: &SubmitJob{Spec: api.JobSpec{}}})
	res := f.ApplyBatch(rafLogs(part, []byte("{not json"), user, nil, sub))
	if res[0] != nil || res[2] != nil || res[3] != nil {
		t.Fatalf("results %v", res)
	}
	if err, _ := res[1].(error); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("bad entry: %v", res[1])
	}
	if r, ok := res[4].(*SubmitResult); !ok || r.JobID != 1 {
		t.Fatalf("submit: %v", res[4])
	}
	if s.Index() != 5 || s.Snapshot().User("u").TokenHash != "h" {
		t.Fatalf("index %d user %+v", s.Index(), s.Snapshot().User("u"))
	}
}

// rafLogs makes consecutive log entries from index 1; nil data stands for
// a configuration entry.
func rafLogs(data ...[]byte) []*raft.Log {
	out := make([]*raft.Log, len(data))
	for i, d := range data {
		out[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: d}
		if d == nil {
			out[i].Type = raft.LogConfiguration
		}
	}
	return out
}

// A handler that fails half-way must not leave its partial writes, nor take
// the other commands of its batch down with it.
func TestApplyBatchIsolatesFailure(t *testing.T) {
	const cmdBoom CommandType = 250
	handlers[cmdBoom] = func(a *applier, cmd *Command) any {
		a.submit(&Command{Submit: &SubmitJob{}}) // a write that must vanish
		must(errors.New("boom"))
		return nil
	}
	defer delete(handlers, cmdBoom)

	h := newHarness(t)
	sub := func() *Command { return &Command{Type: CmdSubmitJob, Time: t0, Submit: &SubmitJob{}} }
	res := h.s.applyBatch([]entry{
		{index: 10, cmd: sub()},
		{index: 11, cmd: &Command{Type: cmdBoom}},
		{index: 12, cmd: sub()},
	})
	if r, ok := res[0].(*SubmitResult); !ok || r.JobID != 1 {
		t.Fatalf("first: %v", res[0])
	}
	if err, _ := res[1].(error); err == nil {
		t.Fatalf("failing command: %v", res[1])
	}
	if r, ok := res[2].(*SubmitResult); !ok || r.JobID != 2 {
		t.Fatalf("third: %v", res[2])
	}
	if n := len(h.s.Snapshot().Jobs()); n != 2 || h.s.Index() != 12 {
		t.Fatalf("%d jobs at index %d", n, h.s.Index())
	}
}
