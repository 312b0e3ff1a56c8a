package agent

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/executor"
	"github.com/stockade-hpc/stockade/internal/hostlist"
	"github.com/stockade-hpc/stockade/raftstore"
)

// Job steps (srun). The agent long-polls the live steps with tasks on this
// node (and the credentials of the batch scripts it runs) on a route of
// its own, runs each task as a container through the executor like a
// batch script, and reports each task's end with its output.
//
// State-dir layout, beside jobs/:
//
//	steps/<job>.<step>.<rank>/          root 0700: task.json and the executor's files
//	stepout/                            root 0711: search only
//	stepout/<job>.<step>.<rank>/output  the task's stdout and stderr, in a dir
//	                                    owned by the job's user (the shim opens
//	                                    output files as the user)
//
// A task dir lives from just before the launch until the controllers
// accepted the task's report, so tasks survive agent restarts as jobs do.
const (
	stepsSubdir   = "steps"
	stepOutSubdir = "stepout"
	taskMetaFile  = "task.json"
	taskOutFile   = "output"

	// Variables the batch script gets for srun.
	credentialEnv = "STOCKADE_JOB_CREDENTIAL"
	serversEnv    = "STOCKADE_SERVERS"
	caPEMEnv      = "STOCKADE_CA_PEM"

	// credentialWait bounds how long a launch waits for its credential.
	credentialWait = 10 * time.Second
)

// taskScript runs the step's command (its argv follows) as the container's
// process, found through the task's PATH.
const taskScript = "#!/bin/sh\nexec \"$@\"\n"

// cgroupRoot is where cgroup hierarchies are mounted.
var cgroupRoot = "/sys/fs/cgroup"

// taskKey names one task: a rank of a step of a job.
type taskKey struct {
	JobID  uint64
	StepID int
	Rank   int
}

func (k taskKey) String() string {
	return strconv.FormatUint(k.JobID, 10) + "." + strconv.Itoa(k.StepID) + "." + strconv.Itoa(k.Rank)
}

// parseTaskKey parses a task dir name "<job>.<step>.<rank>".
func parseTaskKey(name string) (taskKey, bool) {
	f := strings.Split(name, ".")
	if len(f) != 3 {
		return taskKey{}, false
	}
	id, err1 := strconv.ParseUint(f[0], 10, 64)
	step, err2 := strconv.Atoi(f[1])
	rank, err3 := strconv.Atoi(f[2])
	k := taskKey{id, step, rank}
	if err1 != nil || err2 != nil || err3 != nil || id == 0 || step < 0 || rank < 0 || k.String() != name {
		return taskKey{}, false
	}
	return k, true
}

// taskMeta is the agent's record in a task dir.
type taskMeta struct {
	JobID  uint64 `json:"job_id"`
	StepID int    `json:"step_id"`
	Rank   int    `json:"rank"`
	// Attempt is the job attempt the task belongs to.
	Attempt int       `json:"attempt"`
	UID     uint32    `json:"uid"`
	Created time.Time `json:"created"`
	// Launched is set once the executor accepted the task.
	Launched bool     `json:"launched,omitempty"`
	Outcome  *outcome `json:"outcome,omitempty"`
}

func (m *taskMeta) key() taskKey { return taskKey{m.JobID, m.StepID, m.Rank} }

// localTask is one task dir. Fields are guarded by stepRunner.mu.
type localTask struct {
	key          taskKey
	dir, outDir  string
	meta         taskMeta
	launching    bool
	ended        bool // the task has its result; only the report is left
	cancelWanted bool
	cancelSent   bool
	reportFails  int
	nextReport   time.Time
	missing      int
	inspectErrs  int
}

// stepRunner is the agent's step state.
type stepRunner struct {
	mu    sync.Mutex
	tasks map[taskKey]*localTask
	// done are reported tasks whose dir is gone: a list fetched before the
	// report was applied must not start them again. Forgotten when their
	// step leaves the list.
	done map[taskKey]bool
	// creds are the credentials of the batch scripts run here, by attempt.
	creds map[jobKey]string
	kick  chan struct{}
	// checkDirs warns once about a state dir job users cannot reach.
	checkDirs sync.Once
}

func newStepRunner() *stepRunner {
	return &stepRunner{tasks: map[taskKey]*localTask{}, done: map[taskKey]bool{}, creds: map[jobKey]string{},
		kick: make(chan struct{}, 1)}
}

func (sr *stepRunner) poke() {
	select {
	case sr.kick <- struct{}{}:
	default:
	}
}

func taskDir(stateDir string, k taskKey) string {
	return filepath.Join(stateDir, stepsSubdir, k.String())
}

func taskOutDir(stateDir string, k taskKey) string {
	return filepath.Join(stateDir, stepOutSubdir, k.String())
}

// loadTasks resumes the task dirs an earlier run left behind; a dir
// without a readable record is taken as launched, so the executor's state
// decides what became of it.
func (a *agent) loadTasks() {
	root := filepath.Join(a.opts.StateDir, stepsSubdir)
	ents, err := os.ReadDir(root)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.log.Warn("task dirs", "err", err)
		}
		return
	}
	for _, e := range ents {
		k, ok := parseTaskKey(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		lt := &localTask{key: k, dir: taskDir(a.opts.StateDir, k), outDir: taskOutDir(a.opts.StateDir, k)}
		b, err := os.ReadFile(filepath.Join(lt.dir, taskMetaFile))
		if err == nil {
			err = json.Unmarshal(b, &lt.meta)
		}
		if err != nil || lt.meta.key() != k {
			a.log.Warn("task record unreadable; relying on the executor's state", "task", k.String(), "err", err)
			lt.meta = taskMeta{JobID: k.JobID, StepID: k.StepID, Rank: k.Rank, Launched: true}
		}
		a.steps.tasks[k] = lt
		a.log.Info("resuming step task", "task", k.String())
	}
}

func writeTaskMeta(dir string, m *taskMeta) error {
	return writeRecord(filepath.Join(dir, taskMetaFile), m)
}

// stepLoop runs the step poll and the task watcher until ctx ends.
func (a *agent) stepLoop(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.stepPollLoop(ctx) }()
	go func() { defer wg.Done(); a.taskWatchLoop(ctx) }()
	wg.Wait()
}

// agentSteps long-polls this node's steps and credentials.
func agentSteps(ctx context.Context, cl *api.Client, index uint64, wait time.Duration) (api.AgentWork, error) {
	q := url.Values{}
	q.Set("index", strconv.FormatUint(index, 10))
	q.Set("wait", wait.String())
	var w api.AgentWork
	err := cl.Do(ctx, http.MethodGet, "/v1/agent/steps?"+q.Encode(), nil, &w)
	return w, err
}

func (a *agent) stepPollLoop(ctx context.Context) {
	a.pollLoop(ctx, "steps", agentSteps, func(w *api.AgentWork) { a.applySteps(w) })
}

// stepPlan is what one step list calls for.
type stepPlan struct {
	launch []taskLaunch
	cancel []taskKey
	forget []taskKey
}

type taskLaunch struct {
	key  taskKey
	job  *api.Job
	step *api.JobStep
}

// planSteps compares the step list with the local tasks: tasks of this
// node not yet run here are launched; local tasks whose job no longer
// runs the task's attempt, or whose step left the list (it ended, so it
// was cancelled) or is listed cancelled (scancel JOB.STEP), are stopped
// with the job cancel's grace: SIGTERM, then SIGKILL.
func planSteps(node string, w *api.AgentWork, local map[taskKey]*localTask, done map[taskKey]bool) stepPlan {
	var p stepPlan
	running := map[uint64]*api.Job{}
	for i := range w.Jobs {
		if j := &w.Jobs[i]; j.State == api.JobRunning && !j.CancelRequested {
			running[j.ID] = j
		}
	}
	listed := map[taskKey]bool{}
	for i := range w.Steps {
		st := &w.Steps[i]
		if st.CancelRequested {
			continue // the controllers leave these out; older ones did not have them
		}
		j := running[st.JobID]
		for rank, n := range st.TaskNodes {
			if n != node {
				continue
			}
			k := taskKey{st.JobID, st.StepID, rank}
			listed[k] = true
			isDone := done[k] || (rank < len(st.Tasks) && st.Tasks[rank].Done)
			if _, ok := local[k]; ok || isDone || j == nil {
				continue
			}
			p.launch = append(p.launch, taskLaunch{key: k, job: j, step: st})
		}
	}
	for k, lt := range local {
		j := running[k.JobID]
		if lt.cancelWanted || lt.ended || lt.meta.Outcome != nil {
			continue
		}
		if j == nil || j.Restarts != lt.meta.Attempt || !listed[k] {
			p.cancel = append(p.cancel, k)
		}
	}
	for k := range done {
		if !listed[k] {
			p.forget = append(p.forget, k)
		}
	}
	less := func(x, y taskKey) int {
		switch {
		case x.JobID != y.JobID:
			return cmp.Compare(x.JobID, y.JobID)
		case x.StepID != y.StepID:
			return x.StepID - y.StepID
		}
		return x.Rank - y.Rank
	}
	slices.SortFunc(p.launch, func(x, y taskLaunch) int { return less(x.key, y.key) })
	slices.SortFunc(p.cancel, less)
	slices.SortFunc(p.forget, less)
	return p
}

// applySteps carries out planSteps for one answer and keeps its
// credentials for the batch launches.
func (a *agent) applySteps(w *api.AgentWork) {
	sr := a.steps
	sr.mu.Lock()
	defer sr.mu.Unlock()
	sr.creds = map[jobKey]string{}
	for i := range w.Jobs {
		j := &w.Jobs[i]
		if c := w.Credentials[j.ID]; c != "" {
			sr.creds[jobKey{j.ID, j.Restarts}] = c
		}
	}
	p := planSteps(a.opts.Name, w, sr.tasks, sr.done)
	for _, k := range p.forget {
		delete(sr.done, k)
	}
	for _, k := range p.cancel {
		a.log.Info("stopping step task: its step was cancelled or its job ended", "task", k.String())
		sr.tasks[k].cancelWanted = true
	}
	for _, l := range p.launch {
		if a.holdLaunches.Load() {
			a.log.Info("not launching step task: the node was evicted and is not admitted again yet", "task", l.key.String())
			break
		}
		lt := &localTask{key: l.key, dir: taskDir(a.opts.StateDir, l.key), outDir: taskOutDir(a.opts.StateDir, l.key),
			launching: true, meta: taskMeta{JobID: l.key.JobID, StepID: l.key.StepID, Rank: l.key.Rank,
				Attempt: l.job.Restarts, UID: l.job.UID, Created: time.Now()}}
		sr.tasks[l.key] = lt
		job, step := *l.job, *l.step
		a.launches.Add(1)
		go func() {
			defer a.launches.Done()
			a.launchTask(lt, &job, &step)
		}()
	}
	sr.poke()
}

// launchTask prepares a task's dirs and hands it to the executor.
func (a *agent) launchTask(lt *localTask, j *api.Job, st *api.JobStep) {
	log := a.log.With("task", lt.key.String())
	sr := a.steps
	finish := func(o *outcome) {
		sr.mu.Lock()
		defer sr.mu.Unlock()
		if o != nil {
			log.Error("step task launch failed", "reason", o.Reason)
			lt.meta.Outcome = o
		} else {
			lt.meta.Launched = true
		}
		lt.launching = false
		if err := writeTaskMeta(lt.dir, &lt.meta); err != nil {
			log.Warn("task record", "err", err)
		}
		sr.poke()
	}
	failed := func(err error) {
		finish(&outcome{State: api.JobFailed, ExitCode: 1, Reason: err.Error(), At: time.Now()})
	}
	sr.mu.Lock()
	meta := lt.meta
	sr.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(lt.dir), 0o700); err != nil {
		failed(err)
		return
	}
	if err := os.Mkdir(lt.dir, 0o700); err != nil {
		failed(err)
		return
	}
	if err := writeTaskMeta(lt.dir, &meta); err != nil {
		failed(err)
		return
	}
	sr.checkDirs.Do(func() {
		if d := unsearchableParent(a.opts.StateDir); d != "" {
			a.log.Warn("job users cannot search "+d+", above the state dir: step tasks cannot write their output and fail; "+
				"give it search permission for others (chmod o+x)", "state_dir", a.opts.StateDir)
		}
	})
	if err := prepareOutDir(a.opts.StateDir, lt.outDir, j.UID, j.GID); err != nil {
		failed(fmt.Errorf("task output directory: %w", err))
		return
	}
	spec := buildTaskSpec(taskInput{specInput: a.specInput(j), Step: st, Rank: lt.key.Rank,
		Output: filepath.Join(lt.outDir, taskOutFile)})
	pid, err := executor.Launch(lt.dir, spec)
	if err != nil {
		// The executor recorded the failure in the dir as well.
		log.Warn("step task launch failed", "err", err)
		finish(nil)
		return
	}
	log.Info("step task launched", "shim_pid", pid, "argv0", st.Argv[0])
	finish(nil)
}

// prepareOutDir makes a task's output dir, owned by the job's user, below
// the search-only stepout dir. The state dir gets search permission for
// everyone (no read) so that the shim, opening the output as the user,
// can reach it.
func prepareOutDir(stateDir, dir string, uid, gid uint32) error {
	fi, err := os.Stat(stateDir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o111 != 0o111 {
		if err := os.Chmod(stateDir, fi.Mode().Perm()|0o111); err != nil {
			return err
		}
	}
	root := filepath.Dir(dir)
	if err := os.Mkdir(root, 0o711); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := os.Chmod(root, 0o711); err != nil {
		return err
	}
	// A leftover from an interrupted launch belongs to the same task.
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	return os.Chown(dir, int(uid), int(gid))
}

// unsearchableParent is the first directory above dir that others may
// not search, or "".
func unsearchableParent(dir string) string {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o001 == 0 {
			return p
		}
		if p == filepath.Dir(p) {
			return ""
		}
	}
}

// taskInput is what buildTaskSpec needs.
type taskInput struct {
	specInput
	Step   *api.JobStep
	Rank   int
	Output string // host path of the output file
}

// buildTaskSpec is what the executor runs for one rank of a step: the
// command in a container like the job's (same user, image, network),
// limited to the task's CPUs and the job's memory per node.
func buildTaskSpec(in taskInput) executor.Spec {
	j, st := in.Job, in.Step
	workDir := cmp.Or(st.WorkDir, j.Spec.WorkDir, homeDir(in.User))
	cpt := max(st.CPUsPerTask, 1)
	var limit time.Duration
	if tl := timeLimit(j.TimeLimitSec); tl > 0 && !j.StartTime.IsZero() {
		// Tasks end with their job at the latest.
		now := in.Now
		if now.IsZero() {
			now = time.Now()
		}
		limit = max(j.StartTime.Add(tl).Sub(now), time.Second)
	}
	return executor.Spec{
		JobID:   j.ID,
		Attempt: j.Restarts,
		User:    j.User,
		UID:     j.UID,
		GID:     j.GID,
		Groups:  in.groups(),
		Script:  taskScript,
		Argv:    slices.Clone(st.Argv),
		Env:     taskEnv(in, workDir),
		WorkDir: workDir,
		Stdout:  in.Output,
		// Stderr "" shares the output file: one stream, as written.
		CPUs:          cpt,
		MemoryBytes:   j.AllocMemoryMB << 20,
		PidsLimit:     in.pidsLimit(cpt),
		TimeLimit:     limit,
		KillGrace:     in.KillGrace,
		Image:         j.Spec.Image,
		ImageCacheDir: filepath.Join(in.StateDir, imagesSubdir),
		NetNSPath:     in.NetNS,
		// The job's own cgroup name is the batch script's: each task
		// nests its container in a parent of its own.
		CgroupParent: taskCgroupParent(in.CgroupParent, taskKey{j.ID, st.StepID, in.Rank}),
	}
}

// taskCgroupParent is the cgroup parent of a task's container below the
// agent's parent ("": the executor's default).
func taskCgroupParent(parent string, k taskKey) string {
	return strings.TrimSuffix(cmp.Or(parent, executor.DefaultCgroupParent), "/") + "/step_" + k.String()
}

// taskEnv is a task's environment: the job's for this node, with srun's
// environment as the submitted one, then the step's and the rank's
// variables, as Slurm sets them for srun tasks.
func taskEnv(in taskInput, workDir string) []string {
	j, st := *in.Job, in.Step
	if st.Env != nil {
		j.Spec.Environment = st.Env
	}
	nodes := st.Nodes
	counts := raftstore.TasksOn(nodes, st.TaskNodes)
	nodeID := max(slices.Index(nodes, in.Node), 0)
	local, gtids := 0, []int{}
	for r, n := range st.TaskNodes {
		if n != in.Node {
			continue
		}
		if r < in.Rank {
			local++
		}
		gtids = append(gtids, r)
	}
	itoa := strconv.Itoa
	nl := hostlist.Compress(nodes)
	extra := map[string]string{
		"SLURM_STEP_ID":             itoa(st.StepID),
		"SLURM_STEPID":              itoa(st.StepID),
		"SLURM_STEP_NODELIST":       nl,
		"SLURM_NODELIST":            nl,
		"SLURM_STEP_NUM_NODES":      itoa(len(nodes)),
		"SLURM_NNODES":              itoa(len(nodes)),
		"SLURM_STEP_NUM_TASKS":      itoa(len(st.TaskNodes)),
		"SLURM_NTASKS":              itoa(len(st.TaskNodes)),
		"SLURM_NPROCS":              itoa(len(st.TaskNodes)),
		"SLURM_STEP_TASKS_PER_NODE": repeatList(counts),
		"SLURM_TASKS_PER_NODE":      repeatList(counts),
		"SLURM_PROCID":              itoa(in.Rank),
		"SLURM_LOCALID":             itoa(local),
		"SLURM_NODEID":              itoa(nodeID),
		"SLURM_GTIDS":               joinInts(gtids),
		"SLURM_CPUS_PER_TASK":       itoa(max(st.CPUsPerTask, 1)),
		"SLURM_DISTRIBUTION":        "block",
	}
	si := in.specInput
	si.Job, si.Extra = &j, extra
	return jobEnv(si, workDir)
}

// batchStepEnv is what a batch script needs for srun: its job credential,
// the controllers and the cluster CA. The credential comes with the step
// list; a launch that finds none yet fetches the list itself.
func (a *agent) batchStepEnv(j *api.Job) map[string]string {
	k := jobKey{j.ID, j.Restarts}
	a.steps.mu.Lock()
	cred := a.steps.creds[k]
	a.steps.mu.Unlock()
	if cred == "" {
		ctx, cancel := context.WithTimeout(context.Background(), credentialWait)
		w, err := agentSteps(ctx, a.client(), 0, 0)
		cancel()
		if err == nil {
			cred = w.Credentials[j.ID]
			for _, wj := range w.Jobs {
				if wj.ID == j.ID && wj.Restarts != j.Restarts {
					cred = "" // for another attempt
				}
			}
		}
		if cred == "" {
			a.log.Warn("no job credential for the batch script: srun will not work in it", "job", j.ID, "err", err)
		}
	}
	env := map[string]string{serversEnv: strings.Join(a.opts.Servers, ",")}
	if cred != "" {
		env[credentialEnv] = cred
	}
	if ca, err := os.ReadFile(filepath.Join(a.opts.StateDir, tlsSubdir, caFile)); err == nil {
		env[caPEMEnv] = string(ca)
	}
	return env
}

// taskWatchLoop moves tasks along: stop them when asked, report their end.
func (a *agent) taskWatchLoop(ctx context.Context) {
	cl := a.client()
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		a.watchTasks(ctx, cl)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.steps.kick:
		}
	}
}

func (a *agent) watchTasks(ctx context.Context, cl *api.Client) {
	sr := a.steps
	sr.mu.Lock()
	list := make([]*localTask, 0, len(sr.tasks))
	for _, lt := range sr.tasks {
		if !lt.launching {
			list = append(list, lt)
		}
	}
	sr.mu.Unlock()
	sort.Slice(list, func(x, y int) bool { return list[x].key.String() < list[y].key.String() })
	for _, lt := range list {
		if ctx.Err() != nil {
			return
		}
		a.watchTask(ctx, cl, lt)
	}
}

// taskEnd is how a task ended, as reported.
type taskEnd struct {
	code, sig int
	note      string // the agent's explanation, appended to the output
	usage     api.Usage
}

// endOf maps an executor result (or an agent outcome) to the task's exit
// code and signal. Tasks stopped by a limit or a cancel count as killed.
func endOf(res *executor.Result) taskEnd {
	e := taskEnd{code: res.ExitCode, sig: res.ExitSignal, usage: res.Usage}
	switch res.State {
	case api.JobCompleted, api.JobFailed:
		// Never ran: the launch failed, which only the reason explains.
		if res.State == api.JobFailed && res.ExitSignal == 0 && res.Usage == (api.Usage{}) && res.Reason != "" {
			e.note = res.Reason
		}
	default:
		// Killed by the shim, as Slurm reports it (0:9), whatever the
		// dying shell made of it.
		if e.sig == 0 {
			e.code, e.sig = 0, int(unix.SIGKILL)
		}
		e.note = strings.TrimSpace(string(res.State) + ": " + res.Reason)
	}
	return e
}

// watchTask inspects one task and reports it once it ended.
func (a *agent) watchTask(ctx context.Context, cl *api.Client, lt *localTask) {
	sr := a.steps
	sr.mu.Lock()
	s := *lt
	sr.mu.Unlock()
	log := a.log.With("task", s.key.String())
	now := time.Now()

	var res *executor.Result
	if o := s.meta.Outcome; o != nil {
		res = &executor.Result{State: o.State, ExitCode: o.ExitCode, Reason: o.Reason}
	} else {
		st, err := executor.Inspect(s.dir)
		switch {
		case err != nil && s.inspectErrs+1 < inspectErrLimit:
			sr.mu.Lock()
			lt.inspectErrs++
			sr.mu.Unlock()
			return
		case err != nil:
			res = &executor.Result{State: api.JobNodeFail, ExitCode: 1, Reason: "the agent cannot read the task's state: " + err.Error()}
		case st.Result != nil:
			res = st.Result
		case st.Running:
			sr.mu.Lock()
			lt.missing, lt.inspectErrs = 0, 0
			if !lt.meta.Launched {
				lt.meta.Launched = true // adopted after an agent restart
				writeTaskMeta(lt.dir, &lt.meta)
			}
			cancel := lt.cancelWanted && !lt.cancelSent
			sr.mu.Unlock()
			if cancel {
				if err := executor.Cancel(s.dir); err != nil {
					log.Warn("stopping step task failed; retrying", "err", err)
				} else {
					sr.mu.Lock()
					lt.cancelSent = true
					sr.mu.Unlock()
				}
			}
			return
		case s.missing+1 < missingLimit:
			sr.mu.Lock()
			lt.missing++
			sr.mu.Unlock()
			return
		default:
			res = &executor.Result{State: api.JobNodeFail, ExitCode: 1,
				Reason: "the task's shim ended without recording a result (node reboot, shim killed or launch cut short)"}
		}
	}
	sr.mu.Lock()
	lt.ended = true
	sr.mu.Unlock()
	if now.Before(s.nextReport) {
		return
	}
	e := endOf(res)
	out := readTaskOutput(filepath.Join(s.outDir, taskOutFile), s.meta.UID)
	if e.note != "" {
		out = appendNote(out, fmt.Sprintf("stockade: task %d on %s: %s\n", s.key.Rank, a.opts.Name, e.note))
	}
	rep := api.StepReport{JobID: s.key.JobID, StepID: s.key.StepID, Node: a.opts.Name,
		Task: api.StepTask{Rank: s.key.Rank, Node: a.opts.Name, Done: true, ExitCode: e.code, ExitSignal: e.sig, Output: out, Usage: e.usage}}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	err := cl.AgentStepReport(rctx, rep)
	cancel()
	if err != nil && !rejected(err) {
		sr.mu.Lock()
		n := backOff(&lt.reportFails, &lt.nextReport, now)
		sr.mu.Unlock()
		if n == 1 || n%10 == 0 {
			log.Warn("step task report failed; retrying", "err", err, "tries", n)
		}
		return
	}
	if err != nil {
		log.Warn("the controllers refused the step task report; dropping it", "err", err)
	} else {
		log.Info("step task ended", "exit_code", e.code, "signal", e.sig)
	}
	sr.mu.Lock()
	sr.done[s.key] = true
	sr.mu.Unlock()
	a.removeTask(lt, log)
}

// readTaskOutput reads up to api.StepOutputCap bytes of a task's output.
// The dir is the user's: the file is read only if it is a regular file of
// the task's user (not a link to, or a hard link of, someone else's).
func readTaskOutput(path string, uid uint32) string {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != uid {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, api.StepOutputCap))
	return raftstore.CapOutput(string(b))
}

// appendNote adds the agent's note to the output, within the cap.
func appendNote(out, note string) string {
	if len(out)+len(note)+1 > api.StepOutputCap {
		out = raftstore.CapOutput(out[:api.StepOutputCap-len(note)-1])
	}
	if out != "" && !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return out + note
}

// removeTask deletes a reported task's dirs and the cgroup parent its
// container was nested in, and forgets the task.
func (a *agent) removeTask(lt *localTask, log *slog.Logger) {
	if err := executor.Remove(lt.dir); err != nil {
		log.Warn("cannot remove task dir; retrying", "dir", lt.dir, "err", err)
		return
	}
	if err := os.RemoveAll(lt.outDir); err != nil {
		log.Warn("cannot remove task output dir", "dir", lt.outDir, "err", err)
	}
	removeCgroupDirs(cgroupRoot, taskCgroupParent(a.opts.CgroupParent, lt.key))
	sr := a.steps
	sr.mu.Lock()
	if sr.tasks[lt.key] == lt {
		delete(sr.tasks, lt.key)
	}
	sr.mu.Unlock()
}

// removeCgroupDirs removes the (empty) cgroup rel in every hierarchy.
func removeCgroupDirs(root, rel string) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return
	}
	os.Remove(filepath.Join(root, rel)) // a unified hierarchy
	for _, e := range ents {
		if e.IsDir() {
			os.Remove(filepath.Join(root, e.Name(), rel))
		}
	}
}
