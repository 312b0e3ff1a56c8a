package server

import (
	"cmp"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
	"github.com/stockade-hpc/stockade/internal/sbatch"
	"github.com/stockade-hpc/stockade/raftstore"
	"github.com/stockade-hpc/stockade/scheduler"
)

const (
	maxScript  = 4 << 20
	maxName    = 200
	maxComment = 1024
	maxSubmit  = 128     // submit id length
	maxCount   = 1 << 24 // nodes, tasks, tasks per node, CPUs per task
	// minJobAge is how long ended jobs stay in default listings (Slurm's
	// MinJobAge).
	minJobAge = 5 * time.Minute
)

func (s *Server) handleSubmit(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.SubmitRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	snap := s.store().Snapshot()
	spec := req.Spec
	if err := validateSubmit(snap, c.user, &spec); err != nil {
		return err
	}
	if req.TestOnly {
		writeJSON(w, http.StatusOK, testOnly(snap, c.user, &spec, time.Now()))
		return nil
	}
	// A retried submission already committed needs no new log entry; the
	// state machine deduplicates too (for retries racing the first try).
	if resp, err := retriedSubmit(snap, c.user, &spec); err != nil {
		return err
	} else if resp != nil {
		writeJSON(w, http.StatusOK, *resp)
		return nil
	}
	res, err := s.node.Apply(r.Context(), &raftstore.Command{
		Type:   raftstore.CmdSubmitJob,
		Time:   time.Now().UnixNano(),
		Submit: &raftstore.SubmitJob{Spec: spec, User: c.user.Name, UID: c.user.UID, GID: c.user.GID},
	})
	if err != nil {
		return err
	}
	sr, ok := res.(*raftstore.SubmitResult)
	if !ok {
		return fmt.Errorf("submit: unexpected result %T", res)
	}
	if !sr.Duplicate {
		s.log.Debug("job submitted", "job_id", sr.JobID, "tasks", len(sr.TaskIDs), "user", c.user.Name)
	}
	writeJSON(w, http.StatusOK, api.SubmitResponse{JobID: sr.JobID, TaskIDs: sr.TaskIDs})
	return nil
}

// validateSubmit is handleSubmit's validation: it normalizes spec (fills
// defaults, see normalizeSpec) and runs the scheduler's checks on it.
func validateSubmit(snap *raftstore.Snapshot, u *api.User, spec *api.JobSpec) error {
	if err := normalizeSpec(snap, u, spec); err != nil {
		return err
	}
	if err := scheduler.ValidateSpec(snap, spec); err != nil {
		return badRequest("%s", oneLine(err).Error())
	}
	// QoS and association limits on what may be queued.
	if err := scheduler.CheckSubmit(snap, u.Name, spec, max(1, len(spec.ArrayTasks))); err != nil {
		return badRequest("%s", oneLine(err).Error())
	}
	return nil
}

// retriedSubmit answers a submission by u whose submit id is already
// committed with the first submission's ids; it returns nil for a new
// submission.
func retriedSubmit(snap *raftstore.Snapshot, u *api.User, spec *api.JobSpec) (*api.SubmitResponse, error) {
	if spec.SubmitID == "" {
		return nil, nil
	}
	j := snap.JobBySubmitID(spec.SubmitID)
	if j == nil {
		return nil, nil
	}
	if j.User != u.Name {
		return nil, errorf(http.StatusConflict, "job.submit_id: already used by another submission")
	}
	resp := submitResponse(snap, j)
	return &resp, nil
}

func submitResponse(snap *raftstore.Snapshot, j *api.Job) api.SubmitResponse {
	if j.ArrayJobID == 0 {
		return api.SubmitResponse{JobID: j.ID}
	}
	resp := api.SubmitResponse{JobID: j.ArrayJobID}
	for _, t := range snap.JobsByArray(j.ArrayJobID) {
		resp.TaskIDs = append(resp.TaskIDs, t.ID)
	}
	return resp
}

// normalizeSpec fills defaults and rejects what the scheduler's checks do
// not cover. Errors name the JSON field.
func normalizeSpec(snap *raftstore.Snapshot, u *api.User, spec *api.JobSpec) error {
	spec.Name = strings.TrimSpace(spec.Name)
	if spec.Name == "" {
		spec.Name = "sbatch"
	}
	if len(spec.Name) > maxName {
		return badRequest("job.name: longer than %d characters", maxName)
	}
	if strings.IndexFunc(spec.Name, unicode.IsControl) >= 0 {
		return badRequest("job.name: contains control characters")
	}
	switch {
	case spec.Script == "":
		return badRequest("job.script: required")
	case len(spec.Script) > maxScript:
		return badRequest("job.script: %d bytes, larger than the 4 MiB limit", len(spec.Script))
	case strings.IndexByte(spec.Script, 0) >= 0:
		return badRequest("job.script: contains binary data (NUL bytes); a batch script must be text")
	case !strings.HasPrefix(spec.Script, "#!"):
		return badRequest("job.script: must start with #! (e.g. #!/bin/sh)")
	}
	if spec.WorkDir == "" || !filepath.IsAbs(spec.WorkDir) {
		return badRequest("job.current_working_directory: must be an absolute path")
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"nodes", &spec.Nodes}, {"tasks", &spec.Tasks}, {"cpus_per_task", &spec.CPUsPerTask}} {
		if *f.v < 0 {
			return badRequest("job.%s: must be >= 1", f.name)
		}
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"tasks_per_node", int64(spec.TasksPerNode)}, {"memory_per_node", spec.MemoryPerNodeMB},
		{"memory_per_cpu", spec.MemoryPerCPUMB}, {"gpus_per_node", int64(spec.GPUsPerNode)},
		{"time_limit_sec", spec.TimeLimitSec}, {"array_max_running", int64(spec.ArrayMaxRunning)},
		{"warn_time_sec", int64(spec.WarnTimeSec)}} {
		if f.v < 0 {
			return badRequest("job.%s: must be >= 0", f.name)
		}
	}
	if spec.WarnSignal < 0 || spec.WarnSignal > 64 {
		return badRequest("job.warn_signal: %d is not a signal (1-64, 0 for none)", spec.WarnSignal)
	}
	// CPUs and memory per node are products of these (api.JobSpec's
	// CPUsPerNode, MemoryMBPerNode): huge values would overflow them and
	// slip through the scheduler's resource checks.
	for _, f := range []struct {
		name string
		v    int
	}{{"nodes", spec.Nodes}, {"tasks", spec.Tasks}, {"tasks_per_node", spec.TasksPerNode}, {"cpus_per_task", spec.CPUsPerTask}} {
		if f.v > maxCount {
			return badRequest("job.%s: larger than %d", f.name, maxCount)
		}
	}
	// Zero means "not given" (api.JobSpec): one node, one CPU per task,
	// one task per node.
	spec.Nodes = max(spec.Nodes, 1)
	spec.CPUsPerTask = max(spec.CPUsPerTask, 1)
	if spec.Tasks == 0 {
		spec.Tasks = spec.Nodes * max(spec.TasksPerNode, 1)
	}
	if spec.Tasks < spec.Nodes {
		return badRequest("job.tasks: %d tasks cannot run on %d nodes", spec.Tasks, spec.Nodes)
	}
	if spec.MemoryPerNodeMB > 0 && spec.MemoryPerCPUMB > 0 {
		return badRequest("job.memory_per_cpu: mutually exclusive with memory_per_node")
	}
	if cpus := int64(spec.CPUsPerNode()); spec.MemoryPerCPUMB > math.MaxInt64/cpus {
		return badRequest("job.memory_per_cpu: %dM per CPU for %d CPUs per node is too large", spec.MemoryPerCPUMB, cpus)
	}
	if spec.Nice < 0 && !u.Admin {
		return errorf(http.StatusForbidden, "job.nice: only administrators may set a negative nice value")
	}
	switch spec.OpenMode {
	case "", "truncate", "append":
	default:
		return badRequest("job.open_mode: must be truncate or append, not %q", spec.OpenMode)
	}
	for k, v := range spec.Environment {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return badRequest("job.environment: invalid variable %q", k)
		}
	}
	if len(spec.Comment) > maxComment {
		return badRequest("job.comment: longer than %d characters", maxComment)
	}
	if len(spec.SubmitID) > maxSubmit {
		return badRequest("job.submit_id: longer than %d characters", maxSubmit)
	}
	if spec.Array != "" && len(spec.ArrayTasks) == 0 {
		tasks, maxRun, err := sbatch.ParseArray(spec.Array)
		if err != nil {
			return badRequest("job.array: %s", oneLine(err).Error())
		}
		spec.ArrayTasks = tasks
		if spec.ArrayMaxRunning == 0 {
			spec.ArrayMaxRunning = maxRun
		}
	}
	for _, t := range spec.ArrayTasks {
		if t < 0 || t > sbatch.MaxArrayTaskID {
			return badRequest("job.array_tasks: task id %d out of range 0-%d", t, sbatch.MaxArrayTaskID)
		}
	}
	if spec.Dependency != "" && len(spec.Dependencies) == 0 {
		deps, err := parseDependencies(spec.Dependency)
		if err != nil {
			return badRequest("job.dependency: %s", err)
		}
		spec.Dependencies = deps
	}
	for _, d := range spec.Dependencies {
		if d.ArrayTask < -1 {
			return badRequest("job.dependencies: array_task %d (use -1 for every task)", d.ArrayTask)
		}
	}
	var err error
	if spec.NodeList, err = expandNodes("job.required_nodes", spec.NodeList); err != nil {
		return err
	}
	if spec.ExcludeNodes, err = expandNodes("job.exclude_nodes", spec.ExcludeNodes); err != nil {
		return err
	}
	if spec.Partition == "" {
		if p := snap.DefaultPartition(); p != nil {
			spec.Partition = p.Name
		}
	}
	if spec.Account == "" {
		spec.Account = u.DefaultAccount
	}
	if spec.Account != "" {
		if snap.Account(spec.Account) == nil {
			return badRequest("job.account: no such account %q", spec.Account)
		}
		if !u.Admin && spec.Account != u.DefaultAccount && !slices.Contains(u.Accounts, spec.Account) {
			return errorf(http.StatusForbidden, "job.account: user %s may not use account %s", u.Name, spec.Account)
		}
	}
	// No QoS given: the association's default, else the cluster's.
	if spec.QOS == "" {
		spec.QOS = raftstore.ResolveQOS(snap, spec.Account, u.Name)
	} else if !policyName(spec.QOS) || snap.QOS(spec.QOS) == nil {
		return badRequest("job.qos: no such QOS %q", spec.QOS)
	}
	return nil
}

// policyName reports whether s could name a QoS, account or reservation.
func policyName(s string) bool { return partitionNameRE().MatchString(s) }

// expandNodes expands host list expressions (node[1-3]) in a node list.
func expandNodes(field string, in []string) ([]string, error) {
	if len(in) == 0 {
		return in, nil
	}
	var out []string
	seen := map[string]bool{}
	total := 0
	for _, expr := range in {
		names, err := hostlist.Expand(expr)
		if err != nil {
			return nil, badRequest("%s: %s", field, oneLine(err).Error())
		}
		// hostlist bounds one expression; bound the list too, or a body
		// of many large expressions costs the leader minutes of CPU.
		if total += len(names); total > hostlist.MaxHosts {
			return nil, badRequest("%s: more than %d node names", field, hostlist.MaxHosts)
		}
		for _, n := range names {
			if !nodeNameRE().MatchString(n) {
				return nil, badRequest("%s: invalid node name %q", field, n)
			}
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// hypothetical is a snapshot with one more pending job, for --test-only.
type hypothetical struct {
	*raftstore.Snapshot
	job *api.Job
}

func (h hypothetical) PendingJobs() []*api.Job {
	return append(slices.Clone(h.Snapshot.PendingJobs()), h.job)
}

func (h hypothetical) Job(id uint64) *api.Job {
	if id == h.job.ID {
		return h.job
	}
	return h.Snapshot.Job(id)
}

// testOnly runs one scheduler pass with the job added and reports whether
// and where it would start now (the first task, for an array).
func testOnly(snap *raftstore.Snapshot, u *api.User, spec *api.JobSpec, now time.Time) api.SubmitResponse {
	j := &api.Job{
		ID: snap.NextJobID(), ArrayTaskID: -1, User: u.Name, UID: u.UID, GID: u.GID,
		Spec: *spec, State: api.JobPending, Reason: api.ReasonNone, SubmitTime: now,
	}
	if spec.Hold {
		j.HeldBy, j.Reason = "user", api.ReasonJobHeldUser
	}
	// Resolved as the state machine resolves it at submit.
	if pt := snap.Partition(spec.Partition); pt != nil {
		j.TimeLimitSec = cmp.Or(spec.TimeLimitSec, pt.DefaultTimeSec, pt.MaxTimeSec)
	}
	if len(spec.ArrayTasks) > 0 {
		j.ArrayJobID, j.ArrayTaskID = j.ID, spec.ArrayTasks[0]
	}
	plan := scheduler.Schedule(now, hypothetical{snap, j}, scheduler.Options{})
	resp := api.SubmitResponse{JobID: j.ID}
	for _, p := range plan.Placements {
		if p.JobID == j.ID {
			resp.Nodes = p.Nodes
			resp.EstimateNote = fmt.Sprintf("Job %d to start at %s using %d processors on nodes %s in partition %s",
				j.ID, now.Format("2006-01-02T15:04:05"), p.CPUs*len(p.Nodes), hostlist.Compress(p.Nodes), spec.Partition)
			return resp
		}
	}
	reason := plan.Reasons[j.ID]
	if reason == "" {
		reason = j.Reason
	}
	resp.EstimateNote = fmt.Sprintf("Job %d would not start now in partition %s (reason: %s)", j.ID, spec.Partition, reason)
	return resp
}

// jobFilter selects jobs for listing and cancelling.
type jobFilter struct {
	self         *api.User // non-admins see only their jobs
	users        []string
	states       map[api.JobState]bool
	partitions   []string
	names        []string
	since, until time.Time
	allEnded     bool // include ended jobs of any age
	start        bool // squeue --start: answered by the leader
	now          time.Time
}

func (f *jobFilter) match(j *api.Job) bool {
	if f.self != nil && !f.self.Admin && j.User != f.self.Name {
		return false
	}
	if len(f.users) > 0 && !slices.Contains(f.users, j.User) {
		return false
	}
	if f.states != nil && !f.states[j.State] {
		return false
	}
	if len(f.partitions) > 0 && !slices.Contains(f.partitions, j.Spec.Partition) {
		return false
	}
	if len(f.names) > 0 && !slices.Contains(f.names, j.Spec.Name) {
		return false
	}
	// since/until select jobs that existed during the window.
	if !f.until.IsZero() && j.SubmitTime.After(f.until) {
		return false
	}
	if !f.since.IsZero() && !j.EndTime.IsZero() && j.EndTime.Before(f.since) {
		return false
	}
	if j.State.Terminal() && !f.allEnded && f.now.Sub(j.EndTime) > minJobAge {
		return false
	}
	return true
}

// parseTimeParam accepts RFC 3339, Slurm's YYYY-MM-DD[THH:MM[:SS]] (local
// time) and Unix seconds.
func parseTimeParam(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, badRequest("%s: invalid time %q (want RFC 3339, YYYY-MM-DD[THH:MM[:SS]] or Unix seconds)", name, v)
}

// parseListQuery parses the query parameters of GET /v1/jobs for a
// listing by self at now: the filter and the job ids asked for.
func parseListQuery(q url.Values, self *api.User, now time.Time) (*jobFilter, []jobRef, error) {
	f := &jobFilter{self: self, now: now, users: splitList(q["user"]),
		partitions: splitList(q["partition"]), names: splitList(q["name"])}
	var err error
	if f.states, err = parseStates(splitList(q["state"])); err != nil {
		return nil, nil, badRequest("state: %s", err)
	}
	if f.since, err = parseTimeParam("since", q.Get("since")); err != nil {
		return nil, nil, err
	}
	if f.until, err = parseTimeParam("until", q.Get("until")); err != nil {
		return nil, nil, err
	}
	if v := q.Get("all"); v != "" {
		if f.allEnded, err = strconv.ParseBool(v); err != nil {
			return nil, nil, badRequest("all: want true or false, not %q", v)
		}
	}
	if v := q.Get("start"); v != "" {
		if f.start, err = strconv.ParseBool(v); err != nil {
			return nil, nil, badRequest("start: want true or false, not %q", v)
		}
	}
	if !f.since.IsZero() || !f.until.IsZero() {
		f.allEnded = true
	}
	refs, err := parseJobRefs(q["id"])
	if err != nil {
		return nil, nil, badRequest("id: %s", err)
	}
	return f, refs, nil
}

func (s *Server) handleListJobs(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	f, refs, err := parseListQuery(q, c.user, time.Now())
	if err != nil {
		return err
	}
	// Expected starts live in the leader's memory: a stale read of them
	// goes there too.
	if f.start && s.leaderOnlyStart(w, r) {
		return nil
	}
	snap := s.store().Snapshot()
	var cands []*api.Job
	switch {
	case len(q["id"]) > 0:
		for _, ref := range refs {
			cands = append(cands, ref.resolve(snap)...)
		}
	case !c.admin():
		cands = snap.JobsByUser(c.user.Name)
	case len(f.users) > 0:
		for _, u := range f.users {
			cands = append(cands, snap.JobsByUser(u)...)
		}
	case f.allEnded:
		cands = snap.Jobs()
	default:
		cands = append(snap.PendingJobs(), snap.RunningJobs()...)
		for _, st := range []api.JobState{api.JobCompleted, api.JobFailed, api.JobCancelled,
			api.JobTimeout, api.JobOutOfMemory, api.JobNodeFail, api.JobPreempted} {
			cands = append(cands, snap.JobsByState(st)...)
		}
	}
	resp := api.JobsResponse{Jobs: []api.Job{}, Index: snap.Index()}
	seen := map[uint64]bool{}
	leader := s.node.IsLeader()
	for _, j := range cands {
		if seen[j.ID] || !f.match(j) {
			continue
		}
		seen[j.ID] = true
		cp := *j
		if leader && cp.State == api.JobPending {
			cp.ExpectedStart = s.schedMem().startTime(cp.ID)
		}
		resp.Jobs = append(resp.Jobs, cp)
	}
	slices.SortFunc(resp.Jobs, func(a, b api.Job) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) handleGetJob(w http.ResponseWriter, r *http.Request, c *caller) error {
	ref, err := parseJobRef(r.PathValue("id"))
	if err != nil {
		return badRequest("%s", err)
	}
	snap := s.store().Snapshot()
	var j *api.Job
	if ref.tasks == nil {
		j = snap.Job(ref.id)
	} else if jobs := ref.resolve(snap); len(jobs) == 1 {
		j = jobs[0]
	}
	// Other users' jobs do not exist as far as a user can tell.
	if j == nil || !c.sees(j) {
		return errorf(http.StatusNotFound, "job %s not found", ref.text)
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

// selectOwned resolves explicit ids for a change: every id must exist and
// belong to the caller (or the caller is an admin).
func selectOwned(snap *raftstore.Snapshot, c *caller, ids []string) ([]*api.Job, error) {
	refs, err := parseJobRefs(ids)
	if err != nil {
		return nil, badRequest("job_ids: %s", err)
	}
	var out []*api.Job
	for _, ref := range refs {
		jobs := ref.resolve(snap)
		if len(jobs) == 0 {
			return nil, errorf(http.StatusNotFound, "job %s: invalid job id specified", ref.text)
		}
		for _, j := range jobs {
			if !c.sees(j) {
				if ref.tasks == nil && len(jobs) == 1 {
					return nil, errorf(http.StatusForbidden, "job %s: access/permission denied", ref.text)
				}
				return nil, errorf(http.StatusForbidden, "job %s: access/permission denied", j.DisplayID())
			}
			out = append(out, j)
		}
	}
	return out, nil
}

func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.CancelRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	ids, err := cancelTargets(s.store().Snapshot(), c, &req, time.Now())
	if err != nil {
		return err
	}
	resp := api.CancelResponse{Cancelled: []uint64{}}
	if len(ids) > 0 {
		res, err := s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdCancelJobs, Time: time.Now().UnixNano(), JobIDs: ids})
		if err != nil {
			return err
		}
		if changed, ok := res.([]uint64); ok && changed != nil {
			resp.Cancelled = changed
		}
		s.log.Info("jobs cancelled", "by", c.user.Name, "count", len(resp.Cancelled))
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// cancelTargets is handleCancel's validation and selection: the ids of the
// jobs the request cancels, as c at now (none: nothing to do).
func cancelTargets(snap *raftstore.Snapshot, c *caller, req *api.CancelRequest, now time.Time) ([]uint64, error) {
	switch {
	case req.Signal == "", sbatch.SignalNumber(req.Signal) == 9, sbatch.SignalNumber(req.Signal) == 15:
	default:
		return nil, badRequest("signal: only KILL and TERM (cancel) are supported, not %q", req.Signal)
	}
	if len(req.JobIDs) == 0 && req.User == "" && req.State == "" && req.Name == "" {
		return nil, badRequest("job_ids: give job ids or a filter (user, state, name)")
	}
	f := &jobFilter{self: c.user, now: now, allEnded: true}
	if req.User != "" {
		f.users = splitList([]string{req.User})
		if !c.admin() && slices.ContainsFunc(f.users, func(u string) bool { return u != c.user.Name }) {
			return nil, errorf(http.StatusForbidden, "user: permission denied: you may cancel only your own jobs")
		}
	}
	if req.Name != "" {
		f.names = splitList([]string{req.Name})
	}
	var err error
	if f.states, err = parseStates(splitList([]string{req.State})); err != nil {
		return nil, badRequest("state: %s", err)
	}
	var cands []*api.Job
	if len(req.JobIDs) > 0 {
		if cands, err = selectOwned(snap, c, req.JobIDs); err != nil {
			return nil, err
		}
	} else if !c.admin() {
		cands = snap.JobsByUser(c.user.Name)
	} else {
		cands = append(snap.PendingJobs(), snap.RunningJobs()...)
	}
	var ids []uint64
	for _, j := range cands {
		if !j.State.Terminal() && f.match(j) && !slices.Contains(ids, j.ID) {
			ids = append(ids, j.ID)
		}
	}
	return ids, nil
}

func (s *Server) handleJobAction(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.JobActionRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	cmd, err := jobActionCommand(s.store().Snapshot(), c, &req, time.Now())
	if err != nil {
		return err
	}
	res, err := s.node.Apply(r.Context(), cmd)
	if err != nil {
		return err
	}
	resp := api.CancelResponse{Cancelled: []uint64{}}
	if changed, ok := res.([]uint64); ok && changed != nil {
		resp.Cancelled = changed
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// jobActionCommand is handleJobAction's validation: the command that
// applies the action to the jobs the request names, as c at now.
func jobActionCommand(snap *raftstore.Snapshot, c *caller, req *api.JobActionRequest, now time.Time) (*raftstore.Command, error) {
	if len(req.JobIDs) == 0 {
		return nil, badRequest("job_ids: required")
	}
	jobs, err := selectOwned(snap, c, req.JobIDs)
	if err != nil {
		return nil, err
	}
	ids := make([]uint64, 0, len(jobs))
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	by := "user"
	if c.admin() {
		by = "admin"
	}
	cmd := &raftstore.Command{Time: now.UnixNano(), JobIDs: ids}
	switch strings.ToLower(req.Action) {
	case "hold":
		cmd.Type, cmd.HeldBy = raftstore.CmdHoldJobs, by
	case "uhold":
		cmd.Type, cmd.HeldBy = raftstore.CmdHoldJobs, "user"
	case "release":
		if !c.admin() {
			for _, j := range jobs {
				if j.HeldBy == "admin" {
					return nil, errorf(http.StatusForbidden, "job %s: held by an administrator; only an administrator may release it", j.DisplayID())
				}
			}
		}
		cmd.Type, cmd.HeldBy = raftstore.CmdReleaseJobs, by
	case "requeue":
		cmd.Type = raftstore.CmdRequeueJobs
	default:
		return nil, badRequest("action: must be hold, uhold, release or requeue, not %q", req.Action)
	}
	return cmd, nil
}
