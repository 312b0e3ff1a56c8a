package server

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/raftstore"
)

// Job steps (srun). A batch script's srun authenticates with its job's
// credential (credential.go), which these routes alone accept, and only
// for that job; job owners and admins may use their tokens as well.

const (
	// maxStepData bounds a step's command and environment: they are
	// replicated with the step.
	maxStepData = 4 << 20
	// credentialEnv is the variable that carries the job credential; it
	// is never stored with a step.
	credentialEnv = "STOCKADE_JOB_CREDENTIAL"
)

// stepAccess authenticates a request about job jobID's steps and returns
// the job: a credential must be for this job while it runs; a user token
// must be the owner's or an admin's (other jobs do not exist for users).
func (s *Server) stepAccess(r *http.Request, snap *raftstore.Snapshot, jobID uint64) (*api.Job, error) {
	if tok, _ := bearer(r); isCredential(tok) {
		cred, err := parseCredential(s.caPublicKey(), tok)
		if err != nil {
			return nil, errorf(http.StatusUnauthorized, "%s", err)
		}
		j := snap.Job(jobID)
		if err := cred.check(jobID, j, time.Now()); err != nil {
			return nil, errorf(http.StatusForbidden, "%s", err)
		}
		return j, nil
	}
	c, err := s.authenticate(r, user, "", "")
	if err != nil {
		return nil, err
	}
	j := snap.Job(jobID)
	if j == nil || !c.sees(j) {
		return nil, errorf(http.StatusNotFound, "job %d not found", jobID)
	}
	return j, nil
}

func parseJobIDPath(v string) (uint64, error) {
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil || id == 0 {
		return 0, badRequest("invalid job id %q", v)
	}
	return id, nil
}

func (s *Server) handleCreateStep(w http.ResponseWriter, r *http.Request, _ *caller) error {
	id, err := parseJobIDPath(r.PathValue("id"))
	if err != nil {
		return err
	}
	var req api.StepCreateRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.JobID != 0 && req.JobID != id {
		return badRequest("job_id: %d does not match job %d of the path", req.JobID, id)
	}
	if len(req.RequestID) > maxSubmit || strings.IndexFunc(req.RequestID, unicode.IsControl) >= 0 {
		return badRequest("request_id: longer than %d characters or has control characters", maxSubmit)
	}
	snap := s.store().Snapshot()
	j, err := s.stepAccess(r, snap, id)
	if err != nil {
		return err
	}
	// A retried request already committed needs no new log entry (its
	// job may have ended since); the state machine deduplicates too, for
	// retries racing the first try.
	if st := snap.StepByRequest(id, req.RequestID); st != nil {
		v := withoutOutput(raftstore.StepView(st, j))
		writeJSON(w, http.StatusOK, &v)
		return nil
	}
	st, err := planStep(j, &req)
	if err != nil {
		return err
	}
	st.RequestID = req.RequestID
	res, err := s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdCreateStep, Time: time.Now().UnixNano(), Step: st})
	if err != nil {
		return err
	}
	out, ok := res.(*api.JobStep)
	if !ok {
		return fmt.Errorf("create step: unexpected result %T", res)
	}
	s.log.Debug("step created", "job_id", id, "step", out.StepID, "tasks", len(out.TaskNodes), "nodes", len(out.Nodes))
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleCancelStep cancels a running step (scancel JOB.STEP): the job's
// owner, an admin or the job's credential may. The job runs on; the agents
// stop the step's tasks and their reports end it CANCELLED. The answer is
// the step as recorded; a step that already ended is a 409.
func (s *Server) handleCancelStep(w http.ResponseWriter, r *http.Request, _ *caller) error {
	id, stepID, err := parseStepPath(r)
	if err != nil {
		return err
	}
	snap := s.store().Snapshot()
	j, err := s.stepAccess(r, snap, id)
	if err != nil {
		return err
	}
	st := snap.Step(id, stepID)
	if st == nil {
		return errorf(http.StatusNotFound, "step %d.%d not found", id, stepID)
	}
	if !raftstore.StepLive(st, j) {
		if st.CancelRequested && raftstore.StepView(st, j).State == api.JobRunning {
			// Cancelled already, its tasks still stopping: done.
			v := withoutOutput(st)
			writeJSON(w, http.StatusOK, &v)
			return nil
		}
		return errorf(http.StatusConflict, "step %d.%d: Job/step already completing or completed", id, stepID)
	}
	res, err := s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdCancelStep, Time: time.Now().UnixNano(),
		Step: &api.JobStep{JobID: id, StepID: stepID}})
	if err != nil {
		return err
	}
	snap = s.store().Snapshot()
	st, j = snap.Step(id, stepID), snap.Job(id)
	if changed, _ := res.(bool); !changed && (st == nil || !st.CancelRequested) {
		return errorf(http.StatusConflict, "step %d.%d: Job/step already completing or completed", id, stepID)
	}
	s.log.Info("step cancelled", "job_id", id, "step", stepID, "by_job_credential", byCredential(r))
	v := withoutOutput(raftstore.StepView(st, j))
	writeJSON(w, http.StatusOK, &v)
	return nil
}

// byCredential reports whether a request carries a job credential.
func byCredential(r *http.Request) bool {
	tok, _ := bearer(r)
	return isCredential(tok)
}

// planStep validates a step request against the job's allocation and
// places its tasks. Defaults follow srun inside an allocation: every node
// of the job, the job's task count (one task per node when only --nodes
// is given), its CPUs per task; tasks go to nodes in block distribution.
func planStep(j *api.Job, req *api.StepCreateRequest) (*api.JobStep, error) {
	if j.State != api.JobRunning || j.CancelRequested {
		return nil, errorf(http.StatusConflict, "job %d is not running", j.ID)
	}
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return nil, badRequest("argv: a command is required")
	}
	size := 0
	for _, a := range req.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, badRequest("argv: contains a NUL byte")
		}
		size += len(a)
	}
	env := make(map[string]string, len(req.Env))
	for k, v := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return nil, badRequest("environment: invalid variable %q", k)
		}
		if k == credentialEnv {
			continue
		}
		env[k] = v
		size += len(k) + len(v)
	}
	if size > maxStepData {
		return nil, badRequest("argv and environment: %d bytes, more than the %d MiB limit", size, maxStepData>>20)
	}
	workDir := req.WorkDir
	if workDir == "" {
		workDir = j.Spec.WorkDir
	}
	if workDir != "" && !filepath.IsAbs(workDir) {
		return nil, badRequest("current_working_directory: must be an absolute path")
	}
	name := strings.TrimSpace(req.Name)
	if name == "" {
		name = filepath.Base(req.Argv[0])
	}
	if len(name) > maxName || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return nil, badRequest("name: longer than %d characters or has control characters", maxName)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"nodes", req.Nodes}, {"tasks", req.Tasks}, {"tasks_per_node", req.TasksPerNode}, {"cpus_per_task", req.CPUsPerTask}} {
		if f.v < 0 || f.v > maxCount {
			return nil, badRequest("%s: must be from 0 to %d", f.name, maxCount)
		}
	}
	alloc := len(j.Nodes)
	if alloc == 0 {
		return nil, errorf(http.StatusConflict, "job %d has no nodes", j.ID)
	}
	if req.Nodes > alloc {
		return nil, badRequest("nodes: %d nodes requested, job %d has %d", req.Nodes, j.ID, alloc)
	}
	nodes, tasks, tpn := req.Nodes, req.Tasks, req.TasksPerNode
	switch {
	case tasks == 0 && tpn > 0:
		tasks = max(nodes, 1) * tpn
		if nodes == 0 {
			tasks = alloc * tpn
		}
	case tasks == 0 && nodes > 0:
		tasks = nodes
	case tasks == 0:
		tasks = max(j.Spec.Tasks, 1)
	case nodes == 0 && tpn > 0:
		nodes = min(alloc, (tasks+tpn-1)/tpn)
	}
	if nodes == 0 {
		nodes = alloc
	}
	// More nodes than tasks: srun shrinks the node count.
	nodes = min(nodes, tasks)
	if tasks > maxCount {
		return nil, badRequest("tasks: more than %d", maxCount)
	}
	if tpn > 0 && tasks > nodes*tpn {
		return nil, badRequest("tasks: %d tasks do not fit %d nodes with %d tasks per node", tasks, nodes, tpn)
	}
	cpt := req.CPUsPerTask
	if cpt == 0 {
		cpt = max(j.Spec.CPUsPerTask, 1)
	}
	stepNodes := slices.Clone(j.Nodes[:nodes])
	taskNodes := raftstore.BlockDistribution(stepNodes, tasks)
	for i, c := range raftstore.TasksOn(stepNodes, taskNodes) {
		if j.AllocCPUs > 0 && c*cpt > j.AllocCPUs {
			return nil, badRequest("More processors requested than permitted: %d tasks of %d CPUs on %s, where job %d has %d CPUs",
				c, cpt, stepNodes[i], j.ID, j.AllocCPUs)
		}
	}
	return &api.JobStep{
		JobID: j.ID, Name: name, User: j.User, Argv: slices.Clone(req.Argv), Env: env, WorkDir: workDir,
		Nodes: stepNodes, TaskNodes: taskNodes, CPUsPerTask: cpt,
	}, nil
}

// handleGetStep long-polls a step: it answers once the step's modify
// index passes ?index (a step whose job ended counts as changed), or after
// ?wait with the current record. Task output comes once the step ended.
func (s *Server) handleGetStep(w http.ResponseWriter, r *http.Request, _ *caller) error {
	id, stepID, err := parseStepPath(r)
	if err != nil {
		return err
	}
	after, wait, err := parseWorkQuery(r.URL.Query())
	if err != nil {
		return err
	}
	if r.URL.Query().Get("wait") == "" {
		wait = 0
	}
	st := s.store()
	snap := st.Snapshot()
	if _, err := s.stepAccess(r, snap, id); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel) // shutdown ends long polls
	defer stop()
	for {
		step := snap.Step(id, stepID)
		if step == nil {
			return errorf(http.StatusNotFound, "step %d.%d not found", id, stepID)
		}
		v := raftstore.StepView(step, snap.Job(id))
		if v.ModifyIndex > after || ctx.Err() != nil {
			if v.State == api.JobRunning {
				// Output comes with the ended step: srun prints it then,
				// and a poll per report would resend it all every time.
				c := withoutOutput(v)
				v = &c
			}
			writeJSON(w, http.StatusOK, v)
			return nil
		}
		if _, err := st.WaitForIndex(ctx, snap.Index()); err != nil && r.Context().Err() != nil {
			return err
		}
		snap = st.Snapshot()
	}
}

// handleListSteps lists the steps of ?job=ID (repeated or comma
// separated), or of every job the caller may see, task output left out.
func (s *Server) handleListSteps(w http.ResponseWriter, r *http.Request, c *caller) error {
	var ids []uint64
	for _, v := range splitList(r.URL.Query()["job"]) {
		id, err := parseJobIDPath(v)
		if err != nil {
			return badRequest("job: invalid job id %q", v)
		}
		ids = append(ids, id)
	}
	snap := s.store().Snapshot()
	var jobs []*api.Job
	switch {
	case len(ids) > 0:
		for _, id := range ids {
			if j := snap.Job(id); j != nil {
				jobs = append(jobs, j)
			}
		}
	case c.admin():
		jobs = snap.Jobs()
	default:
		jobs = snap.JobsByUser(c.user.Name)
	}
	resp := api.StepsResponse{Steps: []api.JobStep{}}
	seen := map[uint64]bool{}
	for _, j := range jobs {
		if seen[j.ID] || !c.sees(j) {
			continue
		}
		seen[j.ID] = true
		for _, st := range snap.Steps(j.ID) {
			resp.Steps = append(resp.Steps, withoutOutput(raftstore.StepView(st, j)))
		}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// withoutOutput copies a step without its tasks' output, which can be
// large and is only for the srun that waits for it.
func withoutOutput(st *api.JobStep) api.JobStep {
	c := *st
	c.Tasks = slices.Clone(st.Tasks)
	for i := range c.Tasks {
		c.Tasks[i].Output = ""
	}
	return c
}

// nodeSteps is what an agent needs for steps: the jobs placed on node,
// the live steps with tasks there, and a fingerprint of both.
func nodeSteps(snap *raftstore.Snapshot, node string) (api.AgentWork, uint64) {
	h := fnv.New64a()
	jobs := snap.JobsByNode(node)
	work := api.AgentWork{Jobs: make([]api.Job, 0, len(jobs)), Index: snap.Index()}
	for _, j := range jobs {
		work.Jobs = append(work.Jobs, *j)
		hashWords(h, j.ID, j.ModifyIndex)
		for _, st := range snap.Steps(j.ID) {
			if !raftstore.StepLive(st, j) || !slices.Contains(st.Nodes, node) {
				continue
			}
			work.Steps = append(work.Steps, withoutOutput(st))
			hashWords(h, uint64(st.StepID), st.ModifyIndex)
		}
	}
	return work, h.Sum64()
}

// stepPolls remembers, per server and node, the last answer of the step
// long-poll (see workCache).
var stepPolls sync.Map // *Server → *workCache

func (s *Server) stepPollCache() *workCache {
	c, _ := stepPolls.LoadOrStore(s, newWorkCache())
	return c.(*workCache)
}

// handleAgentSteps long-polls the steps and credentials of the calling
// node, as handleWork does for jobs: it answers when the node's jobs or
// their steps there changed since ?index, or after ?wait. Credentials are
// signed for the running jobs whose batch script runs on the node.
func (s *Server) handleAgentSteps(w http.ResponseWriter, r *http.Request, c *caller) error {
	cache := s.stepPollCache()
	err := s.awaitNodeChange(r, cache, c.node, func(snap *raftstore.Snapshot) uint64 {
		_, fp := nodeSteps(snap, c.node)
		return fp
	})
	if err != nil {
		return err
	}
	work, fp := nodeSteps(s.store().Snapshot(), c.node)
	for i := range work.Jobs {
		j := &work.Jobs[i]
		if j.State != api.JobRunning || len(j.Nodes) == 0 || j.Nodes[0] != c.node {
			continue
		}
		cred := credentialFor(j)
		tok, err := signCredential(s.ca.Key, &cred)
		if err != nil {
			// The jobs still run; only their srun will not.
			s.log.Warn("cannot sign job credentials", "job_id", j.ID, "err", err)
			break
		}
		if work.Credentials == nil {
			work.Credentials = map[uint64]string{}
		}
		work.Credentials[j.ID] = tok
	}
	cache.put(c.node, work.Index, fp)
	writeJSON(w, http.StatusOK, work)
	return nil
}

// handleStepReport records a finished task reported by the agent of its
// node. Reports about ended steps are accepted and ignored: agents resend
// after restarts.
func (s *Server) handleStepReport(w http.ResponseWriter, r *http.Request, c *caller) error {
	var rep api.StepReport
	if err := decodeJSON(w, r, &rep); err != nil {
		return err
	}
	if err := checkStepReport(s.store().Snapshot(), c.node, &rep); err != nil {
		return err
	}
	s.markSeen(c.node)
	if _, err := s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdStepReport, Time: time.Now().UnixNano(), StepReport: &rep}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

// checkStepReport validates a task report from the agent of node and
// normalizes it (node filled in, output capped).
func checkStepReport(snap *raftstore.Snapshot, node string, rep *api.StepReport) error {
	if rep.Node == "" {
		rep.Node = node
	}
	if rep.Node != node {
		return errorf(http.StatusForbidden, "node: node %s may report only for itself", node)
	}
	st := snap.Step(rep.JobID, rep.StepID)
	if st == nil {
		return errorf(http.StatusNotFound, "step %d.%d not found", rep.JobID, rep.StepID)
	}
	rank := rep.Task.Rank
	if rank < 0 || rank >= len(st.TaskNodes) {
		return badRequest("task.rank: %d is not a rank of step %d.%d", rank, rep.JobID, rep.StepID)
	}
	if st.TaskNodes[rank] != node {
		return errorf(http.StatusConflict, "task %d of step %d.%d runs on %s, not %s", rank, rep.JobID, rep.StepID, st.TaskNodes[rank], node)
	}
	rep.Task.Node, rep.Task.Done = node, true
	rep.Task.Output = raftstore.CapOutput(rep.Task.Output)
	return nil
}

// parseStepPath reads the {id} and {step} of a step route.
func parseStepPath(r *http.Request) (uint64, int, error) {
	id, err := parseJobIDPath(r.PathValue("id"))
	if err != nil {
		return 0, 0, err
	}
	stepID, err := strconv.Atoi(r.PathValue("step"))
	if err != nil || stepID < 0 {
		return 0, 0, badRequest("invalid step id %q", r.PathValue("step"))
	}
	return id, stepID, nil
}
