package raftstore

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/scheduler"
)

func TestBlockDistribution(t *testing.T) {
	tests := []struct {
		nodes []string
		tasks int
		want  []string
	}{
		{[]string{"a", "b", "c"}, 6, []string{"a", "a", "b", "b", "c", "c"}},
		{[]string{"a", "b", "c"}, 4, []string{"a", "a", "b", "c"}},
		{[]string{"a", "b", "c", "d"}, 5, []string{"a", "a", "b", "c", "d"}},
		{[]string{"a", "b"}, 1, []string{"a"}},
		{[]string{"a"}, 3, []string{"a", "a", "a"}},
		{nil, 3, nil},
		{[]string{"a"}, 0, nil},
	}
	for _, tc := range tests {
		if got := BlockDistribution(tc.nodes, tc.tasks); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("BlockDistribution(%v, %d) = %v, want %v", tc.nodes, tc.tasks, got, tc.want)
		}
	}
	if got := TasksOn([]string{"a", "b", "c"}, []string{"a", "a", "c"}); !reflect.DeepEqual(got, []int{2, 0, 1}) {
		t.Errorf("TasksOn = %v", got)
	}
}

// stepCmd is a step of job id on nodes with tasks placed by block
// distribution.
func stepCmd(id uint64, user string, nodes []string, tasks, cpt int) Command {
	return Command{Type: CmdCreateStep, Step: &api.JobStep{
		JobID: id, User: user, Argv: []string{"hostname"}, Nodes: nodes,
		TaskNodes: BlockDistribution(nodes, tasks), CPUsPerTask: cpt,
	}}
}

func taskReport(id uint64, step, rank int, node string, code, sig int) Command {
	return Command{Type: CmdStepReport, StepReport: &api.StepReport{
		JobID: id, StepID: step, Node: node,
		Task: api.StepTask{Rank: rank, ExitCode: code, ExitSignal: sig, Output: "out " + node + "\n",
			Usage: api.Usage{CPUTimeNs: 10, MaxRSSB: uint64(100 * (rank + 1))}},
	}}
}

func TestCreateStep(t *testing.T) {
	h := newHarness(t)
	id := h.run(api.JobSpec{Name: "mpi", Nodes: 2, Tasks: 4}, "n1", "n2") // 2 CPUs per node

	// Step ids count from 0 per job.
	for want := 0; want < 3; want++ {
		st := h.must(stepCmd(id, "alice", []string{"n1", "n2"}, 4, 1)).(*api.JobStep)
		if st.StepID != want || st.State != api.JobRunning || len(st.Tasks) != 4 || st.ModifyIndex != h.idx {
			t.Fatalf("step %d: %+v", want, st)
		}
		if st.StartTime.Before(h.job(id).StartTime) {
			t.Errorf("step starts before its job")
		}
	}
	other := h.run(api.JobSpec{Name: "other"}, "n1")
	if st := h.must(stepCmd(other, "alice", []string{"n1"}, 1, 1)).(*api.JobStep); st.StepID != 0 {
		t.Errorf("another job's first step is %d", st.StepID)
	}
	if got := len(h.s.Snapshot().Steps(id)); got != 3 {
		t.Errorf("Snapshot.Steps = %d steps, want 3", got)
	}
	st := h.s.Snapshot().Step(id, 0)
	if st == nil || !reflect.DeepEqual(st.TaskNodes, []string{"n1", "n1", "n2", "n2"}) || st.Tasks[3].Node != "n2" || st.Tasks[3].Rank != 3 {
		t.Fatalf("stored step %+v", st)
	}

	pending := h.submit(api.JobSpec{Name: "waits", Nodes: 2}).JobID
	tests := []struct {
		name string
		cmd  Command
		want string
	}{
		{"unknown job", stepCmd(999, "alice", []string{"n1"}, 1, 1), "unknown"},
		{"pending job", stepCmd(pending, "alice", []string{"n1"}, 1, 1), "not running"},
		{"another user", stepCmd(id, "mallory", []string{"n1"}, 1, 1), "owner"},
		{"node outside the allocation", stepCmd(id, "alice", []string{"g1"}, 1, 1), "not one of job"},
		{"node twice", stepCmd(id, "alice", []string{"n1", "n1"}, 2, 1), "twice"},
		{"too many CPUs", stepCmd(id, "alice", []string{"n1", "n2"}, 6, 1), "needs 3 CPUs"},
		{"too many CPUs per task", stepCmd(id, "alice", []string{"n1"}, 1, 3), "needs 3 CPUs"},
		{"node without a task", stepCmd(id, "alice", []string{"n1", "n2"}, 1, 1), "at least one task"},
		{"no command", Command{Type: CmdCreateStep, Step: &api.JobStep{JobID: id, User: "alice", Nodes: []string{"n1"}, TaskNodes: []string{"n1"}}}, "command"},
		{"task off the step's nodes", Command{Type: CmdCreateStep, Step: &api.JobStep{JobID: id, User: "alice", Argv: []string{"x"},
			Nodes: []string{"n1"}, TaskNodes: []string{"n1", "n2"}}}, "not one of the step's nodes"},
		{"no step", Command{Type: CmdCreateStep}, "without a step"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := h.do(tc.cmd)
			err, ok := res.(error)
			if !ok || !errors.Is(err, ErrInvalidCommand) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("result %v, want an invalid-command error containing %q", res, tc.want)
			}
		})
	}
	if got := len(h.s.Snapshot().Steps(id)); got != 3 {
		t.Errorf("refused steps were stored: %d steps", got)
	}
}

func TestStepReports(t *testing.T) {
	type rep struct {
		rank, code, sig int
	}
	tests := []struct {
		name      string
		reports   []rep
		wantState api.JobState
		wantCode  int
		wantSig   int
	}{
		{"all succeed", []rep{{0, 0, 0}, {1, 0, 0}, {2, 0, 0}}, api.JobCompleted, 0, 0},
		{"highest exit code wins", []rep{{0, 0, 0}, {1, 3, 0}, {2, 7, 0}}, api.JobFailed, 7, 0},
		{"a signal fails the step", []rep{{2, 0, 0}, {0, 0, 9}, {1, 0, 0}}, api.JobFailed, 0, 9},
		{"not all done", []rep{{0, 0, 0}, {2, 0, 0}}, api.JobRunning, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.run(api.JobSpec{Name: "mpi", Nodes: 2, Tasks: 3}, "n1", "n2")
			h.must(stepCmd(id, "alice", []string{"n1", "n2"}, 3, 1)) // n1 n1 n2
			for _, r := range tc.reports {
				node := h.s.Snapshot().Step(id, 0).TaskNodes[r.rank]
				if res := h.must(taskReport(id, 0, r.rank, node, r.code, r.sig)); res != true {
					t.Fatalf("report of rank %d ignored", r.rank)
				}
			}
			st := h.s.Snapshot().Step(id, 0)
			if st.State != tc.wantState || st.ExitCode != tc.wantCode || st.ExitSignal != tc.wantSig {
				t.Fatalf("step %s %d:%d, want %s %d:%d", st.State, st.ExitCode, st.ExitSignal, tc.wantState, tc.wantCode, tc.wantSig)
			}
			if (st.State == api.JobRunning) != st.EndTime.IsZero() {
				t.Errorf("end time %v for state %s", st.EndTime, st.State)
			}
			for _, r := range tc.reports {
				task := st.Tasks[r.rank]
				if !task.Done || task.ExitCode != r.code || task.Output != "out "+task.Node+"\n" {
					t.Errorf("task %d recorded as %+v", r.rank, task)
				}
			}
			if st.Usage.CPUTimeNs != uint64(10*len(tc.reports)) {
				t.Errorf("usage CPU time %d, want the sum", st.Usage.CPUTimeNs)
			}
		})
	}
}

func TestStepReportsIgnored(t *testing.T) {
	h := newHarness(t)
	id := h.run(api.JobSpec{Name: "mpi", Nodes: 2, Tasks: 2}, "n1", "n2")
	h.must(stepCmd(id, "alice", []string{"n1", "n2"}, 2, 1)) // step 0: n1 n2
	h.must(stepCmd(id, "alice", []string{"n1"}, 1, 1))       // step 1: n1
	h.must(taskReport(id, 1, 0, "n1", 0, 0))                 // step 1 ends
	h.must(taskReport(id, 0, 0, "n1", 4, 0))                 // step 0 rank 0 done

	tests := []struct {
		name string
		cmd  Command
	}{
		{"unknown step", taskReport(id, 5, 0, "n1", 0, 0)},
		{"unknown job", taskReport(999, 0, 0, "n1", 0, 0)},
		{"negative step", taskReport(id, -1, 0, "n1", 0, 0)},
		{"finished step", taskReport(id, 1, 0, "n1", 1, 0)},
		{"task of another node", taskReport(id, 0, 1, "n1", 0, 0)},
		{"rank out of range", taskReport(id, 0, 2, "n2", 0, 0)},
		{"negative rank", taskReport(id, 0, -1, "n1", 0, 0)},
		{"task already done", taskReport(id, 0, 0, "n1", 0, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := h.s.Snapshot()
			if res := h.do(tc.cmd); res != false {
				t.Fatalf("result %v, want false (ignored)", res)
			}
			after := h.s.Snapshot()
			if !reflect.DeepEqual(before.Steps(id), after.Steps(id)) {
				t.Errorf("an ignored report changed the steps")
			}
		})
	}
	if st := h.s.Snapshot().Step(id, 0); st.Tasks[0].ExitCode != 4 || st.State != api.JobRunning {
		t.Errorf("step 0 after ignored reports: %+v", st)
	}
	if res := h.do(Command{Type: CmdStepReport}); !errors.Is(res.(error), ErrInvalidCommand) {
		t.Errorf("report without a body: %v", res)
	}
}

func TestStepsOfEndedJobs(t *testing.T) {
	h := newHarness(t)
	id := h.run(api.JobSpec{Name: "mpi", Nodes: 2, Tasks: 2, Requeue: true}, "n1", "n2")
	h.must(stepCmd(id, "alice", []string{"n1", "n2"}, 2, 1))
	snap := h.s.Snapshot()
	if st := snap.Step(id, 0); !StepLive(st, snap.Job(id)) || StepView(st, snap.Job(id)) != st {
		t.Fatalf("step of a running job not live")
	}

	// A job being cancelled: its steps are over, and the kill reports end
	// them cancelled.
	other := h.run(api.JobSpec{Name: "other"}, "n1")
	h.must(stepCmd(other, "alice", []string{"n1"}, 1, 1))
	h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{other}})
	snap = h.s.Snapshot()
	if v := StepView(snap.Step(other, 0), snap.Job(other)); v.State != api.JobCancelled {
		t.Errorf("step of a job being cancelled viewed as %s", v.State)
	}
	h.must(taskReport(other, 0, 0, "n1", 0, 9))
	if st := h.s.Snapshot().Step(other, 0); st.State != api.JobCancelled {
		t.Errorf("step of a cancelled job ended %s", st.State)
	}

	// The job is requeued and runs again: the old attempt's step is over.
	h.must(Command{Type: CmdRequeueJobs, JobIDs: []uint64{id}})
	snap = h.s.Snapshot()
	v := StepView(snap.Step(id, 0), snap.Job(id))
	if v.State != api.JobCancelled || v.ModifyIndex != snap.Job(id).ModifyIndex {
		t.Errorf("step of a requeued job viewed as %s (modify %d)", v.State, v.ModifyIndex)
	}
	h.plan(placement(id, "n1", "n2"))
	snap = h.s.Snapshot()
	if StepLive(snap.Step(id, 0), snap.Job(id)) {
		t.Errorf("a step of the previous attempt is live")
	}
	// The requeue ended the old attempt's step; its task's late kill
	// report changes nothing.
	if res := h.must(taskReport(id, 0, 1, "n2", 0, 9)); res != false {
		t.Fatalf("late kill report applied")
	}
	st := h.s.Snapshot().Step(id, 0)
	if st.State != api.JobCancelled || st.EndTime.IsZero() {
		t.Errorf("step after the requeue: %s %d:%d end %v", st.State, st.ExitCode, st.ExitSignal, st.EndTime)
	}
	// Steps of the new attempt are numbered on.
	if st := h.must(stepCmd(id, "alice", []string{"n1"}, 1, 1)).(*api.JobStep); st.StepID != 1 {
		t.Errorf("new attempt's step id %d, want 1", st.StepID)
	}

	// endJobSteps ends every running step at once.
	h.must(stepCmd(id, "alice", []string{"n2"}, 1, 1))
	h.idx++
	a := &applier{txn: h.s.db.Load().Txn(true), meta: &stateMeta{Key: metaKey}, index: h.idx}
	a.endJobSteps(id, time.Unix(0, h.now))
	a.txn.Commit()
	for _, st := range h.s.Snapshot().Steps(id) {
		if st.State == api.JobRunning {
			t.Errorf("step %d still running after endJobSteps", st.StepID)
		}
	}
}

func placement(id uint64, nodes ...string) scheduler.Placement {
	return scheduler.Placement{JobID: id, Nodes: nodes, CPUs: 2, MemoryMB: 1000}
}

func TestCapOutput(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int
	}{
		{"short", "hello", 5},
		{"at the cap", strings.Repeat("a", api.StepOutputCap), api.StepOutputCap},
		{"over the cap", strings.Repeat("a", api.StepOutputCap+10), api.StepOutputCap},
		// "é" is 2 bytes: the cap falls inside the last one.
		{"cut inside a character", strings.Repeat("a", api.StepOutputCap-1) + "é", api.StepOutputCap - 1},
	}
	for _, tc := range tests {
		if got := CapOutput(tc.in); len(got) != tc.want || !strings.HasPrefix(tc.in, got) {
			t.Errorf("%s: %d bytes, want %d", tc.name, len(got), tc.want)
		}
	}
}

func TestStepsSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t)
	id := h.run(api.JobSpec{Name: "mpi", Nodes: 2, Tasks: 2}, "n1", "n2")
	h.must(stepCmd(id, "alice", []string{"n1", "n2"}, 2, 1))
	h.must(taskReport(id, 0, 0, "n1", 0, 0))
	var buf bytes.Buffer
	if _, err := h.s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	s2 := NewStore()
	if err := s2.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if a, b := h.s.Snapshot().Steps(id), s2.Snapshot().Steps(id); len(b) != 1 || !reflect.DeepEqual(a, b) {
		t.Errorf("restored steps differ:\n%+v\n%+v", a, b)
	}
}

func TestCreateStepIdempotent(t *testing.T) {
	withID := func(c Command, id string) Command {
		s := *c.Step
		s.RequestID = id
		c.Step = &s
		return c
	}
	tests := []struct {
		name string
		// ids of the creates applied in order; "" has no request id.
		ids       []string
		wantSteps []int // the step id each create answers
		wantCount int
	}{
		{"retry of one request", []string{"r1", "r1"}, []int{0, 0}, 1},
		{"distinct requests", []string{"r1", "r2", "r1", "r2"}, []int{0, 1, 0, 1}, 2},
		{"no request id never dedups", []string{"", ""}, []int{0, 1}, 2},
		{"retry after later steps", []string{"r1", "", "r1"}, []int{0, 1, 0}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.run(api.JobSpec{Name: "mpi", Nodes: 2, Tasks: 2}, "n1", "n2")
			answered := map[string]*api.JobStep{}
			for i, rid := range tc.ids {
				st := h.must(withID(stepCmd(id, "alice", []string{"n1", "n2"}, 2, 1), rid)).(*api.JobStep)
				if st.StepID != tc.wantSteps[i] || st.RequestID != rid {
					t.Fatalf("create %d (%q): step %d request %q, want step %d", i, rid, st.StepID, st.RequestID, tc.wantSteps[i])
				}
				if f := answered[rid]; rid != "" && f != nil && !reflect.DeepEqual(f, st) {
					t.Errorf("retried create %d answered a different record:\n%+v\n%+v", i, f, st)
				} else if f == nil {
					answered[rid] = st
				}
			}
			if got := len(h.s.Snapshot().Steps(id)); got != tc.wantCount {
				t.Errorf("%d steps stored, want %d", got, tc.wantCount)
			}
			if st := h.s.Snapshot().StepByRequest(id, tc.ids[0]); tc.ids[0] != "" && (st == nil || st.StepID != 0) {
				t.Errorf("StepByRequest = %+v", st)
			}
		})
	}

	// The same request id in another job is another request.
	h := newHarness(t)
	a := h.run(api.JobSpec{Name: "a"}, "n1")
	b := h.run(api.JobSpec{Name: "b"}, "n2")
	h.must(withID(stepCmd(a, "alice", []string{"n1"}, 1, 1), "same"))
	if st := h.must(withID(stepCmd(b, "alice", []string{"n2"}, 1, 1), "same")).(*api.JobStep); st.JobID != b || st.StepID != 0 {
		t.Errorf("step of job b: %+v", st)
	}
	if len(h.s.Snapshot().Steps(b)) != 1 {
		t.Errorf("job b has %d steps", len(h.s.Snapshot().Steps(b)))
	}

	// A retry that arrives after the job ended still gets its step (the
	// first try succeeded), not a refusal.
	h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{a}})
	if res := h.do(withID(stepCmd(a, "alice", []string{"n1"}, 1, 1), "same")); res == nil {
		t.Fatal("nil result")
	} else if st, ok := res.(*api.JobStep); !ok || st.StepID != 0 {
		t.Errorf("retry after the job's cancel: %v", res)
	}
	if res := h.do(withID(stepCmd(a, "alice", []string{"n1"}, 1, 1), "new")); !errors.Is(res.(error), ErrInvalidCommand) {
		t.Errorf("new request after the job's cancel: %v", res)
	}
}

func cancelStepCmd(id uint64, step int) Command {
	return Command{Type: CmdCancelStep, Step: &api.JobStep{JobID: id, StepID: step}}
}

func TestCancelStep(t *testing.T) {
	h := newHarness(t)
	id := h.run(api.JobSpec{Name: "mpi", Nodes: 2, Tasks: 3}, "n1", "n2")
	h.must(stepCmd(id, "alice", []string{"n1", "n2"}, 3, 1)) // step 0: n1 n1 n2
	h.must(stepCmd(id, "alice", []string{"n1"}, 1, 1))       // step 1: n1
	h.must(taskReport(id, 0, 0, "n1", 0, 0))                 // rank 0 ended before the cancel

	if res := h.must(cancelStepCmd(id, 0)); res != true {
		t.Fatalf("cancel: %v", res)
	}
	snap := h.s.Snapshot()
	st, j := snap.Step(id, 0), snap.Job(id)
	switch {
	case st.State != api.JobRunning || !st.CancelRequested || st.ModifyIndex != h.idx:
		t.Fatalf("cancelled step stored as %s cancel=%v modify=%d", st.State, st.CancelRequested, st.ModifyIndex)
	case StepLive(st, j):
		t.Errorf("a cancelled step is live: agents would keep its tasks")
	case StepView(st, j) != st:
		t.Errorf("a cancelled step is viewed as ended before its tasks reported")
	case j.State != api.JobRunning || j.CancelRequested:
		t.Errorf("the step's cancel touched the job: %s cancel=%v", j.State, j.CancelRequested)
	case !StepLive(snap.Step(id, 1), j):
		t.Errorf("the other step was cancelled too")
	}

	tests := []struct {
		name string
		cmd  Command
		want any // true, false or an error text
	}{
		{"again", cancelStepCmd(id, 0), false},
		{"unknown step", cancelStepCmd(id, 7), "unknown"},
		{"unknown job", cancelStepCmd(999, 0), "unknown"},
		{"negative step", cancelStepCmd(id, -1), "unknown"},
		{"no step", Command{Type: CmdCancelStep}, "without a step"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := h.s.Snapshot().Steps(id)
			res := h.do(tc.cmd)
			if text, ok := tc.want.(string); ok {
				if err, _ := res.(error); !errors.Is(err, ErrInvalidCommand) || !strings.Contains(err.Error(), text) {
					t.Fatalf("result %v, want an invalid-command error containing %q", res, text)
				}
			} else if res != tc.want {
				t.Fatalf("result %v, want %v", res, tc.want)
			}
			if !reflect.DeepEqual(before, h.s.Snapshot().Steps(id)) {
				t.Errorf("the steps changed")
			}
		})
	}

	// The killed tasks report: the step ends CANCELLED with the last one,
	// every task's outcome recorded.
	if res := h.must(taskReport(id, 0, 2, "n2", 0, 15)); res != true {
		t.Fatal("report of rank 2 ignored")
	}
	if st := h.s.Snapshot().Step(id, 0); st.State != api.JobRunning || !st.Tasks[2].Done {
		t.Fatalf("after one kill report: %s", st.State)
	}
	h.must(taskReport(id, 0, 1, "n1", 0, 15))
	st = h.s.Snapshot().Step(id, 0)
	if st.State != api.JobCancelled || st.ExitSignal != 15 || st.EndTime.IsZero() || !st.Tasks[1].Done || st.Tasks[0].ExitSignal != 0 {
		t.Fatalf("cancelled step ended %s %d:%d end %v tasks %+v", st.State, st.ExitCode, st.ExitSignal, st.EndTime, st.Tasks)
	}
	if res := h.do(cancelStepCmd(id, 0)); res != false {
		t.Errorf("cancel of an ended step: %v", res)
	}
	// The ended step is CANCELLED even if every task exited 0 in its grace.
	h.must(cancelStepCmd(id, 1))
	h.must(taskReport(id, 1, 0, "n1", 0, 0))
	if st := h.s.Snapshot().Step(id, 1); st.State != api.JobCancelled {
		t.Errorf("cancelled step whose task exited 0 ended %s", st.State)
	}
	if j := h.job(id); j.State != api.JobRunning {
		t.Errorf("job %s after its steps' cancel", j.State)
	}
	// New steps still start.
	if st := h.must(stepCmd(id, "alice", []string{"n1"}, 1, 1)).(*api.JobStep); st.StepID != 2 || !StepLive(st, h.job(id)) {
		t.Errorf("step after the cancels: %+v", st)
	}

	// A step of a job being cancelled is not cancelled on its own.
	other := h.run(api.JobSpec{Name: "other"}, "n1")
	h.must(stepCmd(other, "alice", []string{"n1"}, 1, 1))
	h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{other}})
	if res := h.do(cancelStepCmd(other, 0)); res != false {
		t.Errorf("cancel of a step of a cancelled job: %v", res)
	}
}
