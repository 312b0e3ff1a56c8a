package raftstore

import (
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/stockade-hpc/stockade/api"
)

// Job steps (srun): CmdCreateStep records a step the API validated against
// the job's allocation; agents report each finished task with
// CmdStepReport, and the last report ends the step. CmdCancelStep
// (scancel JOB.STEP) marks a step cancelled: it leaves the agents' lists,
// so they stop its tasks, and the last report ends it CANCELLED.
//
// Results:
//
//	CmdCreateStep  *api.JobStep (the stored record; do not modify)
//	CmdStepReport  bool (whether the report changed the step)
//	CmdCancelStep  bool (whether the step was running and is now cancelled)

func init() {
	handlers[CmdCreateStep] = (*applier).createStep
	handlers[CmdStepReport] = (*applier).stepReport
	handlers[CmdCancelStep] = (*applier).cancelStep
}

// PrefixFromArgs lets a compound index whose first field is a uintIndexer
// be scanned by that field alone (Snapshot.Steps: a job's steps).
func (u uintIndexer) PrefixFromArgs(args ...any) ([]byte, error) { return u.FromArgs(args...) }

// BlockDistribution places tasks on nodes as Slurm's default block
// distribution does: consecutive ranks share a node, and when the count
// does not divide evenly the first nodes get one more. The result is the
// node of each rank.
func BlockDistribution(nodes []string, tasks int) []string {
	if len(nodes) == 0 || tasks <= 0 {
		return nil
	}
	out := make([]string, 0, tasks)
	for i, c := range BlockCounts(len(nodes), tasks) {
		for range c {
			out = append(out, nodes[i])
		}
	}
	return out
}

// BlockCounts is how many of tasks each of nodes (> 0) gets in block
// distribution.
func BlockCounts(nodes, tasks int) []int {
	base, extra := tasks/nodes, tasks%nodes
	out := make([]int, nodes)
	for i := range out {
		out[i] = base
		if i < extra {
			out[i]++
		}
	}
	return out
}

// TasksOn counts the ranks of each node, in the order of nodes.
func TasksOn(nodes, taskNodes []string) []int {
	out := make([]int, len(nodes))
	for _, tn := range taskNodes {
		if i := slices.Index(nodes, tn); i >= 0 {
			out[i]++
		}
	}
	return out
}

// StepLive reports whether a step stored as RUNNING still runs: not
// cancelled itself, and its job runs, not being cancelled, the attempt the
// step was started in. Steps outlive their job's end in the store until a
// report ends them; readers show them CANCELLED.
func StepLive(st *api.JobStep, j *api.Job) bool {
	return st.State == api.JobRunning && !st.CancelRequested && jobLive(st, j)
}

// jobLive reports whether st's job still runs the attempt st was started
// in, not being cancelled.
func jobLive(st *api.JobStep, j *api.Job) bool {
	return j != nil && j.State == api.JobRunning && !j.CancelRequested && !j.StartTime.After(st.StartTime)
}

// StepView is the step as clients should see it: a RUNNING step whose job
// ended or was requeued is CANCELLED at the job's end (or modify) time. A
// step cancelled on its own shows RUNNING (with CancelRequested) until its
// tasks' reports end it, so that srun gets their outcome.
// The result may be st itself: do not modify it.
func StepView(st *api.JobStep, j *api.Job) *api.JobStep {
	if st.State != api.JobRunning || jobLive(st, j) {
		return st
	}
	c := *st
	c.State = api.JobCancelled
	if j != nil {
		c.EndTime = j.EndTime
		if c.EndTime.IsZero() || c.EndTime.Before(c.StartTime) {
			c.EndTime = j.StartTime // requeued: its new attempt started
		}
		c.ModifyIndex = max(c.ModifyIndex, j.ModifyIndex)
	}
	if c.EndTime.Before(c.StartTime) {
		c.EndTime = c.StartTime
	}
	return &c
}

// CapOutput cuts task output to api.StepOutputCap bytes, at a character
// boundary so the record stays valid UTF-8 where the output was.
func CapOutput(s string) string {
	if len(s) <= api.StepOutputCap {
		return s
	}
	cut := api.StepOutputCap
	for cut > 0 && cut > api.StepOutputCap-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func (a *applier) step(jobID uint64, stepID int) *api.JobStep {
	if stepID < 0 {
		return nil
	}
	raw, err := a.txn.First(tSteps, iID, jobID, uint64(stepID))
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*api.JobStep)
}

// jobSteps lists a job's steps in step order.
func (a *applier) jobSteps(jobID uint64) []*api.JobStep {
	it, err := a.txn.Get(tSteps, iID+"_prefix", jobID)
	must(err)
	var out []*api.JobStep
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*api.JobStep))
	}
	return out
}

func (a *applier) putStep(st *api.JobStep) {
	st.ModifyIndex = a.index
	must(a.txn.Insert(tSteps, st))
}

// stepByRequest is the step of job jobID created by request id, or nil.
func (a *applier) stepByRequest(jobID uint64, id string) *api.JobStep {
	if id == "" {
		return nil
	}
	for _, st := range a.jobSteps(jobID) {
		if st.RequestID == id {
			return st
		}
	}
	return nil
}

// StepByRequest is the step of job jobID created by request id (a retried
// StepCreateRequest), or nil.
func (s *Snapshot) StepByRequest(jobID uint64, id string) *api.JobStep {
	if id == "" {
		return nil
	}
	for _, st := range s.Steps(jobID) {
		if st.RequestID == id {
			return st
		}
	}
	return nil
}

// createStep records a new step of a running job. The API has already
// placed the tasks; this re-checks them against the job's allocation. A
// request id already used for the job returns that step unchanged, whatever
// became of it or the job since: the client retried a request whose answer
// it lost.
func (a *applier) createStep(cmd *Command) any {
	in := cmd.Step
	if in == nil {
		return invalid("create step without a step")
	}
	if st := a.stepByRequest(in.JobID, in.RequestID); st != nil {
		return st
	}
	j := a.job(in.JobID)
	switch {
	case j == nil:
		return invalid("job %d unknown", in.JobID)
	case j.State != api.JobRunning || j.CancelRequested:
		return invalid("job %d is not running", in.JobID)
	case in.User != j.User:
		return invalid("step user %q is not job %d's owner", in.User, in.JobID)
	case len(in.Argv) == 0:
		return invalid("step without a command")
	case len(in.Nodes) == 0 || len(in.TaskNodes) < len(in.Nodes):
		return invalid("step needs at least one task on each of its nodes")
	}
	for i, n := range in.Nodes {
		if !slices.Contains(j.Nodes, n) || slices.Contains(in.Nodes[:i], n) {
			return invalid("step node %q is not one of job %d's nodes, or is listed twice", n, in.JobID)
		}
	}
	cpt := max(in.CPUsPerTask, 1)
	for i, c := range TasksOn(in.Nodes, in.TaskNodes) {
		if c == 0 {
			return invalid("step node %s has no task", in.Nodes[i])
		}
		if j.AllocCPUs > 0 && c*cpt > j.AllocCPUs {
			return invalid("step needs %d CPUs on %s; job %d has %d there", c*cpt, in.Nodes[i], in.JobID, j.AllocCPUs)
		}
	}
	for _, tn := range in.TaskNodes {
		if !slices.Contains(in.Nodes, tn) {
			return invalid("task node %q is not one of the step's nodes", tn)
		}
	}
	next := 0
	if prev := a.jobSteps(j.ID); len(prev) > 0 {
		next = prev[len(prev)-1].StepID + 1
	}
	st := api.JobStep{
		JobID: j.ID, StepID: next, Name: in.Name, User: j.User,
		Argv: slices.Clone(in.Argv), Env: maps.Clone(in.Env), WorkDir: in.WorkDir,
		Nodes: slices.Clone(in.Nodes), TaskNodes: slices.Clone(in.TaskNodes), CPUsPerTask: cpt,
		State: api.JobRunning, RequestID: in.RequestID,
		// Not before the job's start, so StepLive never takes a step of
		// this attempt for one of an earlier attempt when leader clocks
		// differ.
		StartTime: cmdTime(cmd),
		Tasks:     make([]api.StepTask, len(in.TaskNodes)),
	}
	if st.StartTime.Before(j.StartTime) {
		st.StartTime = j.StartTime
	}
	for r, n := range st.TaskNodes {
		st.Tasks[r] = api.StepTask{Rank: r, Node: n}
	}
	a.putStep(&st)
	return &st
}

// stepReport records one finished task. A report about an unknown or
// ended step, a task of another node or a task already done is ignored
// (agents resend after restarts). The last task ends the step, CANCELLED
// if the step was cancelled; a report arriving after the job ended ends it
// CANCELLED at once.
func (a *applier) stepReport(cmd *Command) any {
	r := cmd.StepReport
	if r == nil {
		return invalid("step report without a report")
	}
	st := a.step(r.JobID, r.StepID)
	rank := r.Task.Rank
	if st == nil || st.State != api.JobRunning || rank < 0 || rank >= len(st.Tasks) ||
		st.TaskNodes[rank] != r.Node || st.Tasks[rank].Done {
		return false
	}
	c := *st
	c.Tasks = slices.Clone(st.Tasks)
	t := &c.Tasks[rank]
	t.Done, t.ExitCode, t.ExitSignal = true, r.Task.ExitCode, r.Task.ExitSignal
	t.Output, t.Usage = CapOutput(r.Task.Output), r.Task.Usage
	c.Usage = addUsage(c.Usage, r.Task.Usage)
	now := cmdTime(cmd)
	allDone := !slices.ContainsFunc(c.Tasks, func(t api.StepTask) bool { return !t.Done })
	switch {
	case !jobLive(st, a.job(r.JobID)), allDone && st.CancelRequested:
		a.endStep(&c, api.JobCancelled, now)
	case allDone:
		a.endStep(&c, "", now)
	}
	a.putStep(&c)
	return true
}

// cancelStep marks a running step of a running job cancelled (scancel
// JOB.STEP). The agents stop its tasks when it leaves their lists; their
// reports end it. A step already ended or cancelled, or whose job no
// longer runs it, is left alone (false); the API answers those before
// proposing.
func (a *applier) cancelStep(cmd *Command) any {
	in := cmd.Step
	if in == nil {
		return invalid("cancel step without a step")
	}
	st := a.step(in.JobID, in.StepID)
	if st == nil {
		return invalid("step %d.%d unknown", in.JobID, in.StepID)
	}
	if !StepLive(st, a.job(in.JobID)) {
		return false
	}
	c := *st
	c.CancelRequested = true
	a.putStep(&c)
	return true
}

// endStep ends a step: state "" derives it from the tasks (COMPLETED when
// every one exited 0 without a signal, else FAILED). The exit code and
// signal are the highest of the finished tasks'.
func (a *applier) endStep(c *api.JobStep, state api.JobState, now time.Time) {
	c.ExitCode, c.ExitSignal = 0, 0
	for _, t := range c.Tasks {
		if t.Done {
			c.ExitCode, c.ExitSignal = max(c.ExitCode, t.ExitCode), max(c.ExitSignal, t.ExitSignal)
		}
	}
	if state == "" {
		state = api.JobCompleted
		if c.ExitCode != 0 || c.ExitSignal != 0 {
			state = api.JobFailed
		}
	}
	c.State, c.EndTime = state, now
	if c.EndTime.Before(c.StartTime) {
		c.EndTime = c.StartTime
	}
}

// endJobSteps ends a job's running steps CANCELLED. Reports and readers
// already treat the steps of an ended job as cancelled; calling this where
// a job ends or is requeued makes the record say so at once.
func (a *applier) endJobSteps(jobID uint64, now time.Time) {
	for _, st := range a.jobSteps(jobID) {
		if st.State != api.JobRunning {
			continue
		}
		c := *st
		a.endStep(&c, api.JobCancelled, now)
		a.putStep(&c)
	}
}

// addUsage combines two tasks' usage: times and I/O add up, peaks are the
// highest.
func addUsage(x, y api.Usage) api.Usage {
	return api.Usage{
		CPUTimeNs:     x.CPUTimeNs + y.CPUTimeNs,
		UserTimeNs:    x.UserTimeNs + y.UserTimeNs,
		SystemTimeNs:  x.SystemTimeNs + y.SystemTimeNs,
		MaxMemoryB:    max(x.MaxMemoryB, y.MaxMemoryB),
		MaxRSSB:       max(x.MaxRSSB, y.MaxRSSB),
		PidsPeak:      max(x.PidsPeak, y.PidsPeak),
		BlockReadB:    x.BlockReadB + y.BlockReadB,
		BlockWriteB:   x.BlockWriteB + y.BlockWriteB,
		WallTimeNs:    max(x.WallTimeNs, y.WallTimeNs),
		OOMKills:      x.OOMKills + y.OOMKills,
		SampledAtUnix: max(x.SampledAtUnix, y.SampledAtUnix),
	}
}
