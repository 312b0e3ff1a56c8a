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
