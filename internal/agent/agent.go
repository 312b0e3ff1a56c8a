// Package agent is the node daemon, `stockade agent`: it joins the cluster
// once, registers the node's resources, heartbeats, long-polls the jobs the
// controllers placed on the node, runs them through the executor and
// reports how they end. Jobs run in detached shims and every job attempt
// has a directory in the state dir, so the agent can be restarted (or
// crash) at any time without losing a job or its exit status.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/executor"
	"github.com/stockade-hpc/stockade/internal/pki"
)

// Timing of the agent's loops.
const (
	pollWait       = 30 * time.Second // long-poll wait asked of the controllers
	watchEvery     = time.Second      // job dir inspection
	usageEvery     = 30 * time.Second // RUNNING reports with usage
	requestTimeout = 10 * time.Second // heartbeats, registration, reports
	// missingLimit inspections without a shim or a result make a launched
	// job lost (its shim died, e.g. the node rebooted).
	missingLimit = 3
	// inspectErrLimit failed inspections in a row end a job as lost.
	inspectErrLimit = 30
)

// Version is reported at registration; set with -ldflags -X.
var Version = ""

func agentVersion() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}

// localJob is one job dir. All fields are guarded by agent.mu.
type localJob struct {
	key  jobKey
	dir  string
	meta jobMeta
	// launching: the launch goroutine owns the dir until it clears this.
	launching     bool
	finished      bool // the job has its terminal state
	reported      bool // the controllers accepted the terminal state
	cancelWanted  bool
	stopBy        time.Time // a preempted job's grace time ends then: its cancel kills it by then
	cancelSent    bool
	startReported bool
	lastUsage     time.Time
	reportFails   int
	nextReport    time.Time
	missing       int
	inspectErrs   int
}

type agent struct {
	opts    Options
	log     *slog.Logger
	inv     Inventory
	gpuPath map[int]string // GPU index → /dev/nvidiaN
	gpuPool []int
	gpuCtl  []string // nvidiactl, nvidia-uvm...
	http    *http.Client

	mu       sync.Mutex
	jobs     map[jobKey]*localJob
	finished map[jobKey]bool // reported attempts whose dir is gone
	// secondary are multi-node jobs holding this node whose batch script
	// runs on another node.
	secondary []uint64

	// steps are the srun tasks run here (steps.go).
	steps *stepRunner

	needRegister atomic.Bool
	// holdLaunches is set while an evicted node waits to be admitted
	// again: a work list fetched before the eviction is stale.
	holdLaunches atomic.Bool
	registered   chan struct{}
	regOnce      sync.Once
	kick         chan struct{}
	launches     sync.WaitGroup
}

// Run runs the agent until ctx ends. Jobs keep running when it returns.
func Run(ctx context.Context, opts Options) error {
	if err := opts.normalize(); err != nil {
		return err
	}
	log := opts.Logger.With("node", opts.Name)
	if err := os.MkdirAll(filepath.Join(opts.StateDir, jobsSubdir), 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if opts.TPM != "" {
		return runAttested(ctx, log, opts)
	}
	ok, err := enrolled(opts.StateDir)
	if err != nil {
		return err
	}
	if !ok {
		if err := enroll(ctx, log, opts); err != nil {
			return err
		}
	}
	id, err := loadIdentity(opts.StateDir, opts.Name, time.Now())
	if err != nil {
		return err
	}
	if left := time.Until(id.Leaf.NotAfter); left < 30*24*time.Hour {
		log.Warn("the agent certificate expires soon", "expires", id.Leaf.NotAfter)
	}
	if opts.ClusterName == "" {
		opts.ClusterName = clusterNameFromCA(id.CA.Subject.CommonName)
	}
	// Controllers are recognized by the CA and their role rather than by
	// host name, so --servers may name them by any address.
	tlsConf := id.PeerClientTLS(pki.OUController)
	a, err := newAgent(opts, log, api.NewClient(opts.Servers, "", tlsConf).HTTP)
	if err != nil {
		return err
	}
	return a.run(ctx)
}

// newAgent detects the inventory and resumes the job dirs; it makes no
// request.
func newAgent(opts Options, log *slog.Logger, hc *http.Client) (*agent, error) {
	inv, err := detectInventory(opts)
	if err != nil {
		return nil, err
	}
	a := &agent{
		opts:       opts,
		log:        log,
		inv:        inv,
		gpuPath:    map[int]string{},
		gpuCtl:     gpuControlDevices("/dev"),
		http:       hc,
		jobs:       map[jobKey]*localJob{},
		finished:   map[jobKey]bool{},
		registered: make(chan struct{}),
		kick:       make(chan struct{}, 1),
		steps:      newStepRunner(),
	}
	for _, p := range inv.GPUDevices {
		n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(p), "nvidia"))
		a.gpuPath[n] = p
		a.gpuPool = append(a.gpuPool, n)
	}
	if len(a.gpuPool) > inv.GPUs {
		a.gpuPool = a.gpuPool[:inv.GPUs]
	} else if len(a.gpuPool) < inv.GPUs {
		log.Warn("fewer GPU devices than --gpus: GPU jobs may get fewer devices than they asked for",
			"devices", len(a.gpuPool), "gpus", inv.GPUs)
	}
	a.loadJobs()
	a.loadTasks()
	a.needRegister.Store(true)
	return a, nil
}

// run runs the agent's loops, and extra ones (re-attestation), until ctx
// ends.
func (a *agent) run(ctx context.Context, extra ...func(context.Context)) error {
	inv := a.inv
	a.log.Info("agent starting", "servers", a.opts.Servers, "cpus", inv.CPUs, "memory_mb", inv.MemoryMB,
		"gpus", inv.GPUs, "features", inv.Features, "pinning", len(inv.CPUIDs) > 0, "jobs", len(a.jobs))

	var wg sync.WaitGroup
	loops := append([]func(context.Context){a.heartbeatLoop, a.workLoop, a.watchLoop, a.stepLoop}, extra...)
	for _, loop := range loops {
		wg.Add(1)
		go func() { defer wg.Done(); loop(ctx) }()
	}
	wg.Wait()
	a.launches.Wait()
	a.log.Info("agent stopped; jobs keep running in their shims")
	return nil
}

// client returns an API client for one loop. api.Client is not safe for
// concurrent use (it remembers the last good server), so every loop has
// its own, all sharing one connection pool.
func (a *agent) client() *api.Client {
	return &api.Client{Servers: a.opts.Servers, HTTP: a.http}
}

// loadJobs resumes every job dir an earlier run left behind.
func (a *agent) loadJobs() {
	found, errs := scanJobs(a.opts.StateDir)
	for _, err := range errs {
		a.log.Warn("job dir", "err", err)
	}
	for _, s := range found {
		lj := &localJob{key: s.Meta.key(), dir: s.Dir, meta: *s.Meta}
		lj.finished = lj.meta.Outcome != nil
		a.jobs[lj.key] = lj
		a.log.Info("resuming job", "job", lj.key.ID, "attempt", lj.key.Attempt, "abandoned", lj.meta.Abandoned)
	}
}

func (a *agent) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// forgotten reports whether an error means the controllers do not know
// this node (never registered, removed, or state restored without it):
// the controllers answer heartbeats of such nodes with 404, and the agent
// must register again.
func forgotten(err error) bool {
	var he *api.HTTPError
	return errors.As(err, &he) && (he.Status == http.StatusNotFound || he.Status == http.StatusGone)
}

// ---- registration and heartbeats ----

func (a *agent) register(ctx context.Context, cl *api.Client) bool {
	bt := bootTime()
	req := api.AgentRegisterRequest{
		Name:         a.opts.Name,
		CPUs:         a.inv.CPUs,
		MemoryMB:     a.inv.MemoryMB,
		GPUs:         a.inv.GPUs,
		Features:     a.inv.Features,
		AgentVersion: agentVersion(),
		Arch:         runtime.GOARCH,
		OS:           runtime.GOOS,
	}
	if !bt.IsZero() {
		req.BootTime = bt.Unix()
	}
	backoff := time.Second
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		n, err := cl.AgentRegister(rctx, req)
		cancel()
		if err == nil {
			a.needRegister.Store(false)
			a.regOnce.Do(func() { close(a.registered) })
			a.log.Info("registered", "state", n.State, "drain", n.Drain, "reason", n.Reason)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		a.log.Warn("register failed; retrying", "err", err, "in", backoff)
		if !sleepCtx(ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (a *agent) heartbeatLoop(ctx context.Context) {
	cl := a.client()
	failing := false
	for {
		if a.needRegister.Load() && !a.register(ctx, cl) {
			return
		}
		hctx, cancel := context.WithTimeout(ctx, max(requestTimeout, 2*a.opts.Heartbeat))
		err := cl.AgentHeartbeat(hctx, api.AgentHeartbeat{Name: a.opts.Name, Running: a.runningIDs()})
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && forgotten(err):
			a.log.Warn("the controllers do not know this node; registering again", "err", err)
			a.needRegister.Store(true)
			continue
		case err != nil && !failing:
			a.log.Warn("heartbeat failed", "err", err)
			failing = true
		case err == nil && failing:
			a.log.Info("heartbeats delivered again")
			failing = false
		}
		if !sleepCtx(ctx, a.opts.Heartbeat) {
			return
		}
	}
}

// runningIDs are the jobs this node holds: every local attempt that was
// not abandoned and whose end is not yet accepted, plus multi-node jobs
// whose script runs elsewhere.
func (a *agent) runningIDs() []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := slices.Clone(a.secondary)
	for k, lj := range a.jobs {
		if !lj.meta.Abandoned && !lj.reported {
			ids = append(ids, k.ID)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// ---- work ----

func (a *agent) workLoop(ctx context.Context) {
	work := func(ctx context.Context, cl *api.Client, index uint64, wait time.Duration) (api.AgentWork, error) {
		w, err := cl.AgentWork(ctx, index, wait)
		if err != nil && forgotten(err) {
			a.needRegister.Store(true)
		}
		return w, err
	}
	a.pollLoop(ctx, "work", work, func(w *api.AgentWork) { a.apply(w.Jobs) })
}

// pollLoop long-polls the controllers for what (work or steps) once
// registered, and applies each list, until ctx ends.
func (a *agent) pollLoop(ctx context.Context, what string,
	poll func(ctx context.Context, cl *api.Client, index uint64, wait time.Duration) (api.AgentWork, error),
	apply func(*api.AgentWork)) {
	select {
	case <-a.registered:
	case <-ctx.Done():
		return
	}
	cl := a.client()
	var index uint64
	backoff := 500 * time.Millisecond
	failing := false
	for ctx.Err() == nil {
		began := time.Now()
		pctx, cancel := context.WithTimeout(ctx, pollWait+15*time.Second)
		w, err := poll(pctx, cl, index, pollWait)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				a.log.Warn("polling for "+what+" failed; retrying", "err", err)
				failing = true
			}
			sleepCtx(ctx, backoff)
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		if failing {
			a.log.Info("polling for " + what + " again")
			failing = false
		}
		backoff = 500 * time.Millisecond
		if w.Index < index {
			// A lagging controller answered with an older state: it may
			// lack jobs launched from a newer list, which would then be
			// abandoned. The Raft index never goes back, so skip it.
			a.log.Debug("ignoring an older list", "what", what, "index", w.Index, "seen", index)
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		unchanged := w.Index == index
		index = w.Index
		apply(&w)
		// A controller that answers at once with nothing new must not
		// make this loop spin.
		if unchanged && time.Since(began) < 200*time.Millisecond {
			sleepCtx(ctx, 200*time.Millisecond)
		}
	}
}

// apply carries out reconcile's plan for one work list.
func (a *agent) apply(work []api.Job) {
	a.mu.Lock()
	defer a.mu.Unlock()
	views := make([]localView, 0, len(a.jobs))
	for _, lj := range a.jobs {
		views = append(views, localView{
			Key:         lj.key,
			Finished:    lj.finished || lj.reported,
			CancelSent:  lj.cancelWanted,
			PreemptStop: lj.cancelWanted && !lj.stopBy.IsZero(),
			Abandoned:   lj.meta.Abandoned,
		})
	}
	p := reconcile(a.opts.Name, views, a.finished, work)
	a.secondary = a.secondary[:0]
	for i := range work {
		if work[i].State == api.JobRunning && !batchHost(&work[i], a.opts.Name) {
			a.secondary = append(a.secondary, work[i].ID)
		}
	}
	for _, k := range p.Forget {
		delete(a.finished, k)
	}
	for _, act := range p.Actions {
		a.log.Debug("reconcile", "action", act.Kind.String(), "job", act.Key.ID, "attempt", act.Key.Attempt)
		switch act.Kind {
		case actAbandon:
			lj := a.jobs[act.Key]
			lj.meta.Abandoned = true
			if lj.finished || lj.reported {
				// Usually our own final report, accepted while the watcher
				// was still busy with it. Not persisted: after a restart
				// the report is sent again and ignored.
				a.log.Debug("ended job left the work list", "job", act.Key.ID, "attempt", act.Key.Attempt)
				break
			}
			a.log.Info("job no longer runs here (requeued or ended elsewhere); stopping it without a report",
				"job", act.Key.ID, "attempt", act.Key.Attempt)
			if !lj.launching {
				if err := writeMeta(lj.dir, &lj.meta); err != nil {
					a.log.Warn("job record", "job", act.Key.ID, "err", err)
				}
			}
		case actCancel:
			a.log.Info("cancelling job", "job", act.Key.ID, "attempt", act.Key.Attempt)
			lj := a.jobs[act.Key]
			if !lj.stopBy.IsZero() {
				// Sent again, plain: it cuts a longer preemption grace short.
				lj.cancelSent = false
			}
			lj.cancelWanted, lj.stopBy = true, time.Time{}
		case actPreempt:
			lj := a.jobs[act.Key]
			lj.cancelWanted, lj.stopBy = true, preemptStopBy(act.Job, time.Now())
			a.log.Info("job preempted: SIGTERM now, SIGKILL once its grace time is over", "job", act.Key.ID,
				"attempt", act.Key.Attempt, "mode", act.Job.PreemptMode, "grace_sec", act.Job.GraceTimeSec, "kill_by", lj.stopBy)
		case actCancelUnstarted:
			reason := "cancelled before it started"
			if act.Job != nil && !act.Job.PreemptedAt.IsZero() && !act.Job.CancelRequested {
				reason = "preempted before it started"
			}
			a.log.Info("job ended before it started here", "job", act.Key.ID, "reason", reason)
			a.addFinished(act.Key, api.JobCancelled, reason)
		case actLaunch:
			if a.holdLaunches.Load() {
				a.log.Info("not launching: the node was evicted and is not admitted again yet", "job", act.Key.ID)
				break
			}
			a.startLaunch(act.Job)
		}
	}
	a.poke()
}

// addFinished records a job that ends without running: its dir holds only
// the agent's record with the outcome, which the watcher reports.
func (a *agent) addFinished(k jobKey, state api.JobState, reason string) {
	lj := &localJob{key: k, dir: jobDir(a.opts.StateDir, k), finished: true,
		meta: jobMeta{JobID: k.ID, Attempt: k.Attempt, Created: time.Now(),
			Outcome: &outcome{State: state, Reason: reason, At: time.Now()}}}
	if err := os.Mkdir(lj.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		a.log.Warn("job dir", "job", k.ID, "err", err)
	} else if err := writeMeta(lj.dir, &lj.meta); err != nil {
		a.log.Warn("job record", "job", k.ID, "err", err)
	}
	a.jobs[k] = lj
}

// usedResources are the CPUs and GPUs held by jobs that still run here.
// Abandoned jobs are being killed: their resources go to the next attempt.
func (a *agent) usedResources() (cpus, gpus map[int]bool) {
	cpus, gpus = map[int]bool{}, map[int]bool{}
	for _, lj := range a.jobs {
		if lj.finished || lj.reported || lj.meta.Abandoned {
			continue
		}
		for _, c := range lj.meta.CPUIDs {
			cpus[c] = true
		}
		for _, g := range lj.meta.GPUs {
			gpus[g] = true
		}
	}
	return cpus, gpus
}

// startLaunch claims resources and the job dir (under a.mu) and launches
// in the background, so a slow launch (an image to unpack) does not hold
// up cancels or other jobs.
func (a *agent) startLaunch(j *api.Job) {
	k := jobKey{j.ID, j.Restarts}
	usedCPU, usedGPU := a.usedResources()
	meta := jobMeta{JobID: k.ID, Attempt: k.Attempt, Created: time.Now()}
	if len(a.inv.CPUIDs) > 0 && j.AllocCPUs > 0 {
		meta.CPUIDs = pickFree(a.inv.CPUIDs, usedCPU, j.AllocCPUs)
		if meta.CPUIDs == nil {
			a.log.Warn("not enough free CPUs to pin the job; it runs with a CPU quota only",
				"job", k.ID, "cpus", j.AllocCPUs)
		}
	}
	if j.AllocGPUs > 0 {
		free := 0
		for _, g := range a.gpuPool {
			if !usedGPU[g] {
				free++
			}
		}
		if free < j.AllocGPUs {
			a.log.Warn("fewer free GPU devices than the job was given", "job", k.ID, "gpus", j.AllocGPUs, "free", free)
		}
		meta.GPUs = pickFree(a.gpuPool, usedGPU, min(free, j.AllocGPUs))
	}
	lj := &localJob{key: k, dir: jobDir(a.opts.StateDir, k), meta: meta, launching: true}
	a.jobs[k] = lj
	job := *j
	a.launches.Add(1)
	go func() {
		defer a.launches.Done()
		a.launch(lj, &job, meta)
	}()
}

// specInput is what every container of job j on this node (its batch
// script, its step tasks) is built from.
func (a *agent) specInput(j *api.Job) specInput {
	return specInput{
		Job:          j,
		Node:         a.opts.Name,
		StateDir:     a.opts.StateDir,
		ClusterName:  a.opts.ClusterName,
		KillGrace:    a.opts.KillGrace,
		CgroupParent: a.opts.CgroupParent,
		PidsLimit:    a.opts.PidsLimit,
		NetNS:        a.opts.NetNS,
		User:         lookupUser(j.UID),
		Now:          time.Now(),
	}
}

// launch writes the job's record and hands the job to the executor.
func (a *agent) launch(lj *localJob, j *api.Job, meta jobMeta) {
	log := a.log.With("job", j.ID, "attempt", j.Restarts)
	fail := func(state api.JobState, reason string) {
		log.Error("launch failed", "state", state, "reason", reason)
		a.mu.Lock()
		defer a.mu.Unlock()
		lj.meta.Outcome = &outcome{State: state, ExitCode: 1, Reason: reason, At: time.Now()}
		lj.finished, lj.launching = true, false
		if err := writeMeta(lj.dir, &lj.meta); err != nil {
			log.Warn("job record", "err", err) // reported from memory anyway
		}
		a.poke()
	}
	if err := os.Mkdir(lj.dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		fail(api.JobNodeFail, "agent state dir: "+err.Error())
		return
	}
	if err := writeMeta(lj.dir, &meta); err != nil {
		fail(api.JobNodeFail, "agent state dir: "+err.Error())
		return
	}
	var devs []string
	for _, g := range meta.GPUs {
		devs = append(devs, a.gpuPath[g])
	}
	if len(devs) > 0 {
		devs = append(devs, a.gpuCtl...)
	}
	in := a.specInput(j)
	in.CPUIDs, in.GPUs, in.GPUDevices, in.Extra = meta.CPUIDs, meta.GPUs, devs, a.batchStepEnv(j)
	spec := buildSpec(in)
	pid, err := executor.Launch(lj.dir, spec)
	if err != nil {
		fail(api.JobFailed, "launch: "+err.Error())
		return
	}
	log.Info("job launched", "shim_pid", pid, "stdout", spec.Stdout, "cpuset", spec.CPUSet)
	a.mu.Lock()
	defer a.mu.Unlock()
	lj.meta.Launched = true
	lj.meta.Started = time.Now()
	lj.launching = false
	if err := writeMeta(lj.dir, &lj.meta); err != nil {
		// The shim runs; a restarted agent finds it by inspecting the dir.
		log.Warn("job record", "err", err)
	}
	a.poke()
}

// ---- watching and reporting ----

func (a *agent) watchLoop(ctx context.Context) {
	cl := a.client()
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		a.watchOnce(ctx, cl)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kick:
		}
	}
}

func (a *agent) watchOnce(ctx context.Context, cl *api.Client) {
	rp := &reporter{cl: cl}
	a.mu.Lock()
	list := make([]*localJob, 0, len(a.jobs))
	for _, lj := range a.jobs {
		if !lj.launching {
			list = append(list, lj)
		}
	}
	a.mu.Unlock()
	slices.SortFunc(list, func(x, y *localJob) int {
		if keyLess(x.key, y.key) {
			return -1
		}
		return 1
	})
	for _, lj := range list {
		if ctx.Err() != nil {
			return
		}
		a.watchJob(ctx, rp, lj)
	}
}

// watchJob moves one job along: stop it if asked, report its start and
// usage, and report its end until the controllers accept it.
func (a *agent) watchJob(ctx context.Context, rp *reporter, lj *localJob) {
	a.mu.Lock()
	s := *lj // a consistent copy; changes are written back under a.mu
	a.mu.Unlock()
	log := a.log.With("job", s.key.ID, "attempt", s.key.Attempt)
	now := time.Now()
	var st executor.Status
	var inspectErr error
	if !s.reported && s.meta.Outcome == nil {
		st, inspectErr = executor.Inspect(s.dir)
	}
	p := decideWatch(&s, st, inspectErr, now)

	a.mu.Lock()
	switch {
	case p.adopt:
		lj.meta.Launched = true // the shim started before an agent crash
		if err := writeMeta(lj.dir, &lj.meta); err != nil {
			log.Warn("job record", "err", err)
		}
		fallthrough
	case p.running:
		lj.missing, lj.inspectErrs = 0, 0
	case p.countMissing:
		lj.missing++
	case p.countInspectErr:
		lj.inspectErrs++
		if lj.inspectErrs == 1 {
			log.Warn("cannot inspect job; retrying", "err", inspectErr)
		}
	case p.lost != "":
		lj.meta.Outcome = &outcome{State: api.JobNodeFail, ExitCode: 1, At: now, Reason: p.lost}
		lj.finished = true
		if err := writeMeta(lj.dir, &lj.meta); err != nil {
			log.Warn("job record; the outcome is reported from memory", "err", err)
		}
	}
	if p.end != nil {
		lj.finished = true
	}
	a.mu.Unlock()

	if p.lost != "" {
		log.Error("job lost", "reason", p.lost)
		a.poke()
		return
	}
	if p.relaunch {
		log.Warn("found a launch cut short by an agent restart; the job will be launched again")
	}
	if p.remove {
		a.removeJob(lj, log)
		return
	}
	if p.cancel {
		var err error
		if grace, ok := preemptGrace(&s, now); ok {
			err = executor.Stop(s.dir, grace)
		} else {
			err = executor.Cancel(s.dir)
		}
		if err != nil {
			log.Warn("cancel failed; retrying", "err", err)
		} else {
			a.mu.Lock()
			lj.cancelSent = true
			a.mu.Unlock()
		}
	}
	if p.progress {
		r := api.JobReport{JobID: s.key.ID, Node: a.opts.Name, State: api.JobRunning, Usage: st.Usage, Attempt: s.key.Attempt}
		// The shim records the start with its first usage sample; until
		// then the launch time stands in.
		switch {
		case !st.Start.IsZero():
			r.StartUnix = st.Start.Unix()
		case !s.meta.Started.IsZero():
			r.StartUnix = s.meta.Started.Unix()
		}
		err := rp.send(ctx, r)
		a.mu.Lock()
		switch {
		case errors.Is(err, errDeferred):
		case err != nil:
			backOff(&lj.reportFails, &lj.nextReport, now)
			log.Debug("progress report failed", "err", err)
		default:
			lj.reportFails = 0
			lj.startReported = true
			lj.lastUsage = now
		}
		a.mu.Unlock()
	}
	if p.end == nil {
		return
	}
	res := p.end
	r := api.JobReport{
		JobID: s.key.ID, Node: a.opts.Name, State: res.State, ExitCode: res.ExitCode, ExitSignal: res.ExitSignal,
		Usage: res.Usage, Reason: res.Reason, Attempt: s.key.Attempt,
	}
	if !res.Start.IsZero() {
		r.StartUnix = res.Start.Unix()
	}
	if !res.End.IsZero() {
		r.EndUnix = res.End.Unix()
	}
	err := rp.send(ctx, r)
	if errors.Is(err, errDeferred) {
		return
	}
	if err != nil && !rejected(err) {
		a.mu.Lock()
		n := backOff(&lj.reportFails, &lj.nextReport, now)
		a.mu.Unlock()
		if n == 1 || n%10 == 0 {
			log.Warn("final report failed; the job dir is kept and the report retried", "err", err, "tries", n)
		}
		return
	}
	if err != nil {
		log.Warn("the controllers refused the final report; dropping it", "state", res.State, "err", err)
	} else {
		log.Info("job ended", "state", res.State, "exit_code", res.ExitCode, "signal", res.ExitSignal, "reason", res.Reason)
	}
	a.mu.Lock()
	lj.reported = true
	a.finished[s.key] = true
	a.mu.Unlock()
	a.removeJob(lj, log)
}

// watchPlan is what one inspection of a job dir calls for.
type watchPlan struct {
	remove          bool // delete the dir and forget the job, without a report
	relaunch        bool // (with remove) an interrupted launch: the next work list starts it again
	adopt           bool // a shim runs for a launch the agent did not see finish
	running         bool // the shim runs
	cancel          bool // send the executor a cancel
	progress        bool // send a RUNNING report with usage
	end             *executor.Result
	countMissing    bool   // neither a shim nor a result: count towards lost
	countInspectErr bool   // the dir could not be read: count towards lost
	lost            string // give up on the job: record NODE_FAIL with this reason
}

// decideWatch is the watcher's decision for one job from its state and
// what the executor reports (st and inspectErr are unused when the job
// was already reported or has an agent-decided outcome).
func decideWatch(s *localJob, st executor.Status, inspectErr error, now time.Time) watchPlan {
	var p watchPlan
	if s.reported {
		p.remove = true // only the dir was left
		return p
	}
	res := (*executor.Result)(nil)
	switch o := s.meta.Outcome; {
	case o != nil:
		res = &executor.Result{State: o.State, ExitCode: o.ExitCode, Start: o.At, End: o.At, Reason: o.Reason}
	case inspectErr != nil && !s.meta.Launched, inspectErr == nil && st.Result == nil && !st.Running && !s.meta.Launched:
		// The agent stopped between creating the dir and the shim's
		// start: nothing runs and nothing ran.
		p.remove, p.relaunch = true, true
		return p
	case inspectErr != nil:
		if s.inspectErrs+1 >= inspectErrLimit {
			p.lost = "the agent cannot read the job's state: " + inspectErr.Error()
		} else {
			p.countInspectErr = true
		}
		return p
	case st.Result != nil:
		res = st.Result
	case st.Running:
		p.running, p.adopt = true, !s.meta.Launched
		p.cancel = (s.meta.Abandoned || s.cancelWanted) && !s.cancelSent
		p.progress = !s.meta.Abandoned && !now.Before(s.nextReport) &&
			(!s.startReported || now.Sub(s.lastUsage) >= usageEvery)
		return p
	case s.missing+1 >= missingLimit:
		p.lost = "the job's shim ended without recording a result (node reboot or shim killed)"
		return p
	default:
		p.countMissing = true
		return p
	}
	// Ended.
	if s.meta.Abandoned {
		p.remove = true
		return p
	}
	if !now.Before(s.nextReport) {
		p.end = res
	}
	return p
}

// reporter sends the reports of one watcher pass. Once a report finds no
// controller at all, the rest of the pass is deferred: each would block
// for the whole request timeout while the controllers fail over.
type reporter struct {
	cl   *api.Client
	down bool
}

var errDeferred = errors.New("no controller reachable; report deferred")

func (rp *reporter) send(ctx context.Context, r api.JobReport) error {
	if rp.down {
		return errDeferred
	}
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	err := rp.cl.AgentReport(rctx, r)
	var he *api.HTTPError
	if err != nil && !errors.As(err, &he) && ctx.Err() == nil {
		rp.down = true
	}
	return err
}

// rejected reports whether the controllers answered a report with a
// definite no: the job is unknown (404), not placed on this node any more
// (409: requeued), or the report is malformed (400). Sending it again
// cannot succeed. Anything else, including authorization errors that a
// fixed configuration may cure, is retried so no exit status is lost.
// (Reports about an old attempt are accepted and ignored by the
// controllers.)
func rejected(err error) bool {
	var he *api.HTTPError
	if !errors.As(err, &he) {
		return false
	}
	switch he.Status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusGone, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// backOff counts a failed report and schedules the next try; it returns
// the failures so far.
func backOff(fails *int, next *time.Time, now time.Time) int {
	*fails++
	*next = now.Add(retryDelay(*fails))
	return *fails
}

// retryDelay backs off failed reports: 1 s, 2 s, 4 s... up to 30 s.
func retryDelay(fails int) time.Duration {
	if fails <= 0 {
		return 0
	}
	return min(time.Second<<min(fails-1, 5), 30*time.Second)
}

// removeJob deletes a job dir through the executor, which also destroys
// whatever a dead shim left behind, and forgets the job. The executor
// refuses while a shim runs without a result, so a live job is never
// deleted from under its shim.
func (a *agent) removeJob(lj *localJob, log *slog.Logger) {
	if err := executor.Remove(lj.dir); err != nil {
		log.Warn("cannot remove job dir; retrying", "dir", lj.dir, "err", err)
		return
	}
	a.mu.Lock()
	if a.jobs[lj.key] == lj {
		delete(a.jobs, lj.key)
	}
	a.mu.Unlock()
}
