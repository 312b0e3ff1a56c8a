package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/pki"
)

// Variables the agent gives a batch script for srun.
const (
	credentialEnv = "STOCKADE_JOB_CREDENTIAL"
	caPEMEnv      = "STOCKADE_CA_PEM"
	caFileEnv     = "STOCKADE_CA_FILE"
)

// srunPollWait is how long one wait for the step's end may last on the
// controller; the request itself gets some more.
const srunPollWait = 30 * time.Second

// srunCancelWait bounds how long an interrupted srun waits for its
// cancelled step's tasks to stop (SIGTERM, then SIGKILL) and report.
const srunCancelWait = 90 * time.Second

var srunCmd = &slurmCommand{
	name:  "srun",
	short: "Run a parallel job step (in a new allocation outside a job)",
	usage: "srun [OPTIONS] COMMAND [ARGS...]",
	long: `Runs COMMAND as a job step: as many tasks as asked (default: the job's),
spread over the job's nodes in block distribution, each in a container
like the batch script's, with SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID,
SLURM_NTASKS, SLURM_STEP_ID and the other srun variables set. srun waits
for every task, prints their output (stdout and stderr together) in rank
order, reports failing tasks on stderr and exits with the highest exit
code (128+N for a task killed by signal N). A step cancelled with scancel
JOBID.STEPID ends CANCELLED: srun reports its tasks (e.g. "task 0:
Terminated") and exits non-zero.

Inside a batch job srun authenticates with the job's credential, which
the node gives the batch script. Outside one it uses your token: with
--jobid (or SLURM_JOB_ID) it runs the step in that running job of yours;
without, it first asks for an allocation of its own, as Slurm's srun does:
a job with the allocation options (-N, -n, --ntasks-per-node, -c, -p, -t,
--mem, -A, -q, -w, --exclusive) whose batch script is this srun, so the
command runs as step 0 on all of the job's nodes and the job ends with
srun's exit code. That batch script finds srun on the PATH you submit
with. Ctrl-C cancels the allocation. Output is printed when the step
ends, not as it is written.`,
	setup: func(fs *pflag.FlagSet) runFunc {
		var o srunOpts
		setupSrun(fs, &o)
		return func(ctx context.Context, e *env, args []string) error {
			_, err := srunMain(ctx, e, &o, args)
			return err
		}
	},
}

// srunOpts are srun's options.
type srunOpts struct {
	ntasks, ntasksPerNode, cpusPerTask int
	nodes, name, export, chdir         string
	label                              bool
	jobID                              uint64
	// alloc are the options that only a new allocation uses (srun outside
	// a job): sbatch's, passed on as given.
	alloc []string
}

// srunAllocOpts are srun's options for a new allocation, passed to the
// job's submission as they are; inside an allocation they are accepted and
// ignored, as Slurm's srun ignores them for a step.
var srunAllocOpts = []struct{ long, short, usage string }{
	{"partition", "p", "`partition` of a new allocation"},
	{"time", "t", "time limit of a new allocation (Slurm `time`)"},
	{"mem", "", "`memory` per node of a new allocation"},
	{"mem-per-cpu", "", "`memory` per CPU of a new allocation"},
	{"account", "A", "`account` of a new allocation"},
	{"qos", "q", "`QOS` of a new allocation"},
	{"nodelist", "w", "`nodes` a new allocation must include"},
	{"exclude", "x", "`nodes` a new allocation must not use"},
	{"constraint", "C", "node `features` of a new allocation"},
}

func setupSrun(fs *pflag.FlagSet, o *srunOpts) {
	fs.IntVarP(&o.ntasks, "ntasks", "n", 0, "number of `tasks` (default: the job's)")
	fs.StringVarP(&o.nodes, "nodes", "N", "", "number of `nodes` (N or N-M; default: the job's)")
	fs.IntVar(&o.ntasksPerNode, "ntasks-per-node", 0, "`tasks` on each node")
	fs.IntVarP(&o.cpusPerTask, "cpus-per-task", "c", 0, "`CPUs` of each task (default: the job's)")
	fs.BoolVarP(&o.label, "label", "l", false, "prefix each output line with the task's rank")
	fs.StringVarP(&o.name, "job-name", "J", "", "step `name` (default: the command's)")
	fs.StringVar(&o.export, "export", "ALL", "environment of the tasks: ALL, NONE or NAME[=value],... (with ALL: on top of all)")
	fs.String("mpi", "", "accepted for compatibility (no MPI plugin is involved)")
	fs.BoolP("unbuffered", "u", false, "accepted for compatibility (output comes at the end)")
	fs.StringVarP(&o.chdir, "chdir", "D", "", "working `directory` of the tasks (default: the current one)")
	fs.Uint64Var(&o.jobID, "jobid", 0, "run the step in this running `job` of yours (outside a batch job)")
	for _, a := range srunAllocOpts {
		fs.VarP(&allocOpt{name: a.long, into: &o.alloc}, a.long, a.short, a.usage)
	}
	fs.VarP(&allocOpt{name: "exclusive", into: &o.alloc}, "exclusive", "", "a new allocation's nodes are not shared")
	fs.Lookup("exclusive").NoOptDefVal = allocFlagOnly
}

// allocFlagOnly is the value pflag gives a flag used without one.
const allocFlagOnly = "\x00"

// allocOpt collects one allocation option as sbatch arguments.
type allocOpt struct {
	name string
	into *[]string
}

func (a *allocOpt) String() string { return "" }
func (a *allocOpt) Type() string   { return "string" }
func (a *allocOpt) Set(v string) error {
	if v == allocFlagOnly {
		*a.into = append(*a.into, "--"+a.name)
	} else {
		*a.into = append(*a.into, "--"+a.name+"="+v)
	}
	return nil
}

// runSrun runs srun; its exit code is the step's.
func runSrun(ctx context.Context, e *env, args []string) int {
	var o srunOpts
	code := 0
	sc := *srunCmd
	sc.setup = func(fs *pflag.FlagSet) runFunc {
		setupSrun(fs, &o)
		return func(ctx context.Context, e *env, args []string) error {
			var err error
			code, err = srunMain(ctx, e, &o, args)
			return err
		}
	}
	if rc := sc.run(ctx, e, args); rc != 0 {
		return rc
	}
	return code
}

// srunClient connects to the controllers with the job's credential. The
// controllers are recognized by the cluster CA and their role, not their
// host names: the node may know them by any address.
var srunClient = func(servers []string, token string, caPEM []byte) (*api.Client, error) {
	ca, err := pki.ParseCA(caPEM, nil)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	return api.NewClient(servers, token, pki.RoleClientTLS(ca.Pool(), pki.OUController)), nil
}

// srunMain creates the step, waits for it and prints its outcome: in the
// batch job it runs in (with the job's credential), in the job --jobid or
// SLURM_JOB_ID names (with the user's token), or in an allocation of its
// own (srunAllocate).
func srunMain(ctx context.Context, e *env, o *srunOpts, args []string) (int, error) {
	if len(args) == 0 {
		return 0, errors.New("no command given to execute")
	}
	jobText := e.getenv("SLURM_JOB_ID")
	if jobText == "" {
		jobText = e.getenv("SLURM_JOBID")
	}
	cred := strings.TrimSpace(e.getenv(credentialEnv))
	var jobID uint64
	switch {
	case o.jobID != 0:
		jobID = o.jobID
	case jobText != "":
		id, err := strconv.ParseUint(jobText, 10, 64)
		if err != nil || id == 0 {
			return 0, fmt.Errorf("SLURM_JOB_ID=%q is not a job id", jobText)
		}
		jobID = id
	default:
		return srunAllocate(ctx, e, o, args)
	}
	var cl *api.Client
	var err error
	if cred != "" && strconv.FormatUint(jobID, 10) == jobText {
		cl, err = credentialClient(e, cred)
	} else {
		cl, err = e.client()
	}
	if err != nil {
		return 0, err
	}
	return runStep(ctx, e, cl, o, jobID, args)
}

// runStep creates a step of job jobID through cl, waits for it and prints
// its outcome.
func runStep(ctx context.Context, e *env, cl *api.Client, o *srunOpts, jobID uint64, args []string) (int, error) {
	cwd, err := e.getwd()
	if err != nil {
		return 0, fmt.Errorf("cannot get the current directory: %v", err)
	}
	req, err := srunRequest(o, args, jobID, e.envMap(), cwd)
	if err != nil {
		return 0, err
	}
	// The client retries a request whose answer it lost (a leader
	// change): the id makes the retry get the step created the first
	// time instead of a second one.
	req.RequestID = e.newID()
	cctx, cancel, err := e.requestContext(ctx)
	if err != nil {
		return 0, err
	}
	st, err := cl.CreateStep(cctx, req)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("Unable to create step for job %d: %s", jobID, apiMessage(err))
	}
	// Ctrl-C or a kill of srun cancels the step, as Slurm's srun passes
	// the signal on to its tasks: they must not outlive it. A second
	// signal ends srun at once.
	sctx, stop := signal.NotifyContext(ctx, srunStopSignals...)
	defer stop()
	started := st
	st, err = waitStep(sctx, e, cl, started)
	if err != nil && sctx.Err() != nil && ctx.Err() == nil {
		stop()
		fmt.Fprintf(e.stderr, "srun: interrupted: cancelling step %d.%d\n", jobID, started.StepID)
		cctx, cancel := context.WithTimeout(ctx, srunCancelWait)
		defer cancel()
		if _, err := cl.CancelStep(cctx, jobID, started.StepID); err != nil {
			return 0, fmt.Errorf("step %d.%d not cancelled: %s", jobID, started.StepID, apiMessage(err))
		}
		st, err = waitStep(cctx, e, cl, started)
	}
	if err != nil {
		return 0, err
	}
	out, msgs, code := stepOutcome(st, o.label, e.loc)
	io.WriteString(e.stdout, out)
	for _, m := range msgs {
		fmt.Fprintf(e.stderr, "srun: error: %s\n", m)
	}
	return code, nil
}

// credentialClient connects to the controllers named in the batch
// script's environment with the job credential cred.
func credentialClient(e *env, cred string) (*api.Client, error) {
	servers, err := parseServers(strings.Split(e.getenv("STOCKADE_SERVERS"), ","), "STOCKADE_SERVERS")
	if err != nil {
		return nil, err
	}
	caPEM := []byte(e.getenv(caPEMEnv))
	if len(caPEM) == 0 {
		file := e.getenv(caFileEnv)
		if file == "" {
			file = e.getenv("STOCKADE_CA")
		}
		if file == "" {
			return nil, fmt.Errorf("no cluster CA: %s, %s or STOCKADE_CA must be set", caPEMEnv, caFileEnv)
		}
		if caPEM, err = e.readFile(file); err != nil {
			return nil, fmt.Errorf("cluster CA: %w", err)
		}
	}
	return srunClient(servers, cred, caPEM)
}

// waitStep long-polls the step until it ends. Unreachable controllers are
// waited for (the job's time limit bounds the wait); a refusal ends it.
func waitStep(ctx context.Context, e *env, cl *api.Client, st *api.JobStep) (*api.JobStep, error) {
	warned := false
	for !st.State.Terminal() {
		pctx, cancel := context.WithTimeout(ctx, srunPollWait+30*time.Second)
		got, err := cl.Step(pctx, st.JobID, st.StepID, st.ModifyIndex, srunPollWait)
		cancel()
		var he *api.HTTPError
		switch {
		case err == nil:
			st = got
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.As(err, &he) && he.Status != http.StatusServiceUnavailable && he.Status != http.StatusBadGateway:
			return nil, fmt.Errorf("step %d.%d: %s", st.JobID, st.StepID, apiMessage(err))
		case !warned:
			fmt.Fprintf(e.stderr, "srun: error: waiting for step %d.%d: %s; retrying\n", st.JobID, st.StepID, apiMessage(err))
			warned = true
		default:
			if err := e.sleep(ctx, time.Second); err != nil {
				return nil, err
			}
		}
	}
	return st, nil
}

// srunRequest builds the step request from srun's options, its
// environment and working directory.
func srunRequest(o *srunOpts, args []string, jobID uint64, environ map[string]string, cwd string) (api.StepCreateRequest, error) {
	req := api.StepCreateRequest{JobID: jobID, Name: o.name, Argv: slices.Clone(args),
		Tasks: o.ntasks, TasksPerNode: o.ntasksPerNode, CPUsPerTask: o.cpusPerTask, WorkDir: cwd}
	for _, f := range []struct {
		name string
		v    int
	}{{"--ntasks", o.ntasks}, {"--ntasks-per-node", o.ntasksPerNode}, {"--cpus-per-task", o.cpusPerTask}} {
		if f.v < 0 {
			return req, fmt.Errorf("%s: must be a positive number", f.name)
		}
	}
	if o.nodes != "" {
		n, err := minNodes(o.nodes)
		if err != nil {
			return req, err
		}
		req.Nodes = n
	}
	if o.chdir != "" {
		req.WorkDir = o.chdir
		if !filepath.IsAbs(o.chdir) {
			req.WorkDir = filepath.Join(cwd, o.chdir)
		}
	}
	env, err := exportEnv(o.export, environ)
	if err != nil {
		return req, err
	}
	req.Env = env
	return req, nil
}

// minNodes is the node count of --nodes N or N-M (the minimum, which a
// step or allocation gets).
func minNodes(spec string) (int, error) {
	lo, _, _ := strings.Cut(spec, "-")
	n, err := strconv.Atoi(strings.TrimSpace(lo))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("--nodes: invalid node count %q", spec)
	}
	return n, nil
}

// srunStopSignals interrupt srun: it gives back what it asked for (the
// step, or its own allocation) before it exits.
var srunStopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// exportEnv is the tasks' environment for --export: ALL (srun's whole
// environment), NONE (only SLURM_* variables) or a list of NAME or
// NAME=value on top of the SLURM_* variables (or of all with ALL). Tokens
// never travel with a step.
func exportEnv(spec string, environ map[string]string) (map[string]string, error) {
	out := map[string]string{}
	all := false
	var items []string
	for _, it := range strings.Split(spec, ",") {
		switch it = strings.TrimSpace(it); strings.ToUpper(it) {
		case "":
		case "ALL":
			all = true
		case "NONE":
		default:
			items = append(items, it)
		}
	}
	for k, v := range environ {
		if all || strings.HasPrefix(k, "SLURM_") {
			out[k] = v
		}
	}
	for _, it := range items {
		k, v, hasValue := strings.Cut(it, "=")
		if k == "" || strings.ContainsRune(k, 0) {
			return nil, fmt.Errorf("--export: invalid variable %q", it)
		}
		if !hasValue {
			var ok bool
			if v, ok = environ[k]; !ok {
				continue
			}
		}
		out[k] = v
	}
	delete(out, credentialEnv)
	delete(out, "STOCKADE_TOKEN")
	return out, nil
}

// stepOutcome renders an ended step as srun does: the tasks' output in
// rank order (with label, each line prefixed "RANK: ", ranks padded to a
// common width), one error line per run of tasks of a node that failed
// alike, and the exit code: the highest exit code, or 128+N for a task
// killed by signal N. Times are shown in loc.
func stepOutcome(st *api.JobStep, label bool, loc *time.Location) (out string, msgs []string, code int) {
	tasks := slices.Clone(st.Tasks)
	slices.SortFunc(tasks, func(a, b api.StepTask) int { return a.Rank - b.Rank })
	width := len(strconv.Itoa(max(len(tasks)-1, 0)))
	var b strings.Builder
	for _, t := range tasks {
		if !label {
			b.WriteString(t.Output)
			continue
		}
		text := strings.TrimSuffix(t.Output, "\n")
		if t.Output == "" {
			continue
		}
		for _, line := range strings.Split(text, "\n") {
			fmt.Fprintf(&b, "%*d: %s\n", width, t.Rank, line)
		}
	}
	status := func(t api.StepTask) string {
		switch {
		case !t.Done:
			return ""
		case t.ExitSignal != 0:
			return signalText(t.ExitSignal)
		case t.ExitCode != 0:
			return fmt.Sprintf("Exited with exit code %d", t.ExitCode)
		}
		return ""
	}
	for i := 0; i < len(tasks); {
		s := status(tasks[i])
		j := i + 1
		for j < len(tasks) && tasks[j].Node == tasks[i].Node && status(tasks[j]) == s && tasks[j].Rank == tasks[j-1].Rank+1 {
			j++
		}
		if s != "" {
			which := fmt.Sprintf("task %d", tasks[i].Rank)
			if j-i > 1 {
				which = fmt.Sprintf("tasks %d-%d", tasks[i].Rank, tasks[j-1].Rank)
			}
			msgs = append(msgs, fmt.Sprintf("%s: %s: %s", tasks[i].Node, which, s))
		}
		i = j
	}
	if st.State == api.JobCancelled {
		msgs = append(msgs, fmt.Sprintf("*** STEP %d.%d CANCELLED AT %s ***", st.JobID, st.StepID, st.EndTime.In(loc).Format(slurmTimeLayout)))
	}
	code = st.ExitCode
	if st.ExitSignal > 0 {
		code = max(code, 128+st.ExitSignal)
	}
	if code == 0 && st.State != api.JobCompleted {
		code = 1
	}
	return b.String(), msgs, min(code, 255)
}

// signalText names a signal as strsignal does ("Killed", "Segmentation
// fault").
func signalText(sig int) string {
	s := syscall.Signal(sig).String()
	if strings.HasPrefix(s, "signal ") {
		return "Signal " + strconv.Itoa(sig)
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
