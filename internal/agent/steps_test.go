package agent

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/executor"
	"github.com/stockade-hpc/stockade/internal/testenv"
)

// The test binary is also the shim and the container init, as the
// stockade binary is for a real agent (TestTaskRunner).
func TestMain(m *testing.M) {
	executor.MaybeInit()
	if len(os.Args) > 2 && os.Args[1] == "shim" {
		os.Exit(executor.RunShim(os.Args[2]))
	}
	os.Exit(m.Run())
}

func TestParseTaskKey(t *testing.T) {
	tests := []struct {
		name string
		want taskKey
		ok   bool
	}{
		{"42.0.3", taskKey{42, 0, 3}, true},
		{"7.12.0", taskKey{7, 12, 0}, true},
		{"42.0", taskKey{}, false},
		{"0.0.0", taskKey{}, false},
		{"42.-1.0", taskKey{}, false},
		{"42.01.0", taskKey{}, false},
		{"42.0.3.1", taskKey{}, false},
		{"x.0.0", taskKey{}, false},
	}
	for _, tc := range tests {
		got, ok := parseTaskKey(tc.name)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseTaskKey(%q) = %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
		if ok && got.String() != tc.name {
			t.Errorf("%v prints as %q", got, got.String())
		}
	}
}

// stepWork is a work list with job 5 (attempt 1) on node1 and node2 and
// its step 0: ranks 0-1 on node1, 2-3 on node2.
func stepWork(mod func(*api.AgentWork)) *api.AgentWork {
	w := &api.AgentWork{
		Jobs: []api.Job{{ID: 5, State: api.JobRunning, Restarts: 1, Nodes: []string{"node1", "node2"}}},
		Steps: []api.JobStep{{JobID: 5, StepID: 0, Nodes: []string{"node1", "node2"},
			TaskNodes: []string{"node1", "node1", "node2", "node2"}, State: api.JobRunning,
			Tasks: []api.StepTask{{Rank: 0}, {Rank: 1}, {Rank: 2}, {Rank: 3}}}},
	}
	if mod != nil {
		mod(w)
	}
	return w
}

func TestPlanSteps(t *testing.T) {
	k := func(step, rank int) taskKey { return taskKey{5, step, rank} }
	local := func(keys ...taskKey) map[taskKey]*localTask {
		m := map[taskKey]*localTask{}
		for _, key := range keys {
			m[key] = &localTask{key: key, meta: taskMeta{JobID: 5, StepID: key.StepID, Rank: key.Rank, Attempt: 1}}
		}
		return m
	}
	tests := []struct {
		name   string
		node   string
		work   *api.AgentWork
		local  map[taskKey]*localTask
		done   map[taskKey]bool
		launch []taskKey
		cancel []taskKey
		forget []taskKey
	}{
		{name: "new step: this node's ranks", node: "node2", work: stepWork(nil), local: local(),
			launch: []taskKey{k(0, 2), k(0, 3)}},
		{name: "running tasks are left alone", node: "node1", work: stepWork(nil), local: local(k(0, 0), k(0, 1))},
		{name: "reported tasks are not run again", node: "node1", work: stepWork(nil), local: local(),
			done: map[taskKey]bool{k(0, 0): true}, launch: []taskKey{k(0, 1)}},
		{name: "tasks done per the list are not run again", node: "node1",
			work: stepWork(func(w *api.AgentWork) { w.Steps[0].Tasks[1].Done = true }), local: local(), launch: []taskKey{k(0, 0)}},
		{name: "job ended: stop its tasks", node: "node1", work: stepWork(func(w *api.AgentWork) { w.Jobs, w.Steps = nil, nil }),
			local: local(k(0, 0), k(0, 1)), done: map[taskKey]bool{k(1, 0): true},
			cancel: []taskKey{k(0, 0), k(0, 1)}, forget: []taskKey{k(1, 0)}},
		{name: "job being cancelled: stop, launch nothing", node: "node1",
			work: stepWork(func(w *api.AgentWork) { w.Jobs[0].CancelRequested = true }), local: local(k(0, 0)), cancel: []taskKey{k(0, 0)}},
		{name: "job requeued: the old attempt's tasks stop", node: "node1",
			work: stepWork(func(w *api.AgentWork) { w.Jobs[0].Restarts = 2; w.Steps = nil }), local: local(k(0, 0)), cancel: []taskKey{k(0, 0)}},
		{name: "step left the list: cancelled", node: "node1", work: stepWork(func(w *api.AgentWork) { w.Steps = nil }),
			local: local(k(0, 1)), cancel: []taskKey{k(0, 1)}},
		{name: "step cancelled on its own: stop its tasks, launch none", node: "node1",
			work: stepWork(func(w *api.AgentWork) { w.Steps[0].CancelRequested = true }), local: local(k(0, 1)), cancel: []taskKey{k(0, 1)}},
		{name: "no tasks here", node: "node3", work: stepWork(nil), local: local()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done := tc.done
			if done == nil {
				done = map[taskKey]bool{}
			}
			p := planSteps(tc.node, tc.work, tc.local, done)
			var launched []taskKey
			for _, l := range p.launch {
				launched = append(launched, l.key)
				if l.job.ID != 5 || l.step.StepID != l.key.StepID {
					t.Errorf("launch %v with job %d step %d", l.key, l.job.ID, l.step.StepID)
				}
			}
			if !reflect.DeepEqual(launched, tc.launch) || !reflect.DeepEqual(p.cancel, tc.cancel) || !reflect.DeepEqual(p.forget, tc.forget) {
				t.Errorf("launch %v cancel %v forget %v, want %v %v %v", launched, p.cancel, p.forget, tc.launch, tc.cancel, tc.forget)
			}
		})
	}
}

func envOf(list []string) map[string]string {
	m := map[string]string{}
	for _, kv := range list {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func TestTaskSpec(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	job := &api.Job{ID: 9, User: "alice", UID: 1501, GID: 1501, State: api.JobRunning, Restarts: 1,
		Nodes: []string{"node1", "node2", "node3"}, AllocCPUs: 4, AllocMemoryMB: 2048, StartTime: start, TimeLimitSec: 600,
		Spec: api.JobSpec{Name: "mpi", Nodes: 3, Tasks: 6, CPUsPerTask: 1, WorkDir: "/home/alice",
			Environment: map[string]string{"FROM_SBATCH": "1"}}}
	step := &api.JobStep{JobID: 9, StepID: 2, Argv: []string{"./a.out", "x"}, WorkDir: "/home/alice/run",
		Env:   map[string]string{"FROM_SRUN": "1", "SLURM_PROCID": "0", "SLURM_NODEID": "0", credentialEnv: "stkjob.a.b"},
		Nodes: []string{"node1", "node2", "node3"}, TaskNodes: []string{"node1", "node1", "node2", "node2", "node3", "node3"}, CPUsPerTask: 2}
	spec := buildTaskSpec(taskInput{
		specInput: specInput{Job: job, Node: "node2", StateDir: "/state", ClusterName: "c", KillGrace: time.Second,
			CgroupParent: "/stockade/node2", Now: start.Add(100 * time.Second)},
		Step: step, Rank: 3, Output: "/state/stepout/9.2.3/output",
	})
	env := envOf(spec.Env)
	want := map[string]string{
		"SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_NTASKS": "6", "SLURM_NPROCS": "6",
		"SLURM_NNODES": "3", "SLURM_STEP_NUM_NODES": "3", "SLURM_STEP_NUM_TASKS": "6", "SLURM_STEP_ID": "2", "SLURM_STEPID": "2",
		"SLURM_STEP_NODELIST": "node[1-3]", "SLURM_NODELIST": "node[1-3]", "SLURM_JOB_NODELIST": "node[1-3]",
		"SLURM_TASKS_PER_NODE": "2(x3)", "SLURM_STEP_TASKS_PER_NODE": "2(x3)", "SLURM_GTIDS": "2,3",
		"SLURM_CPUS_PER_TASK": "2", "SLURM_JOB_ID": "9", "SLURMD_NODENAME": "node2", "SLURM_JOB_NUM_NODES": "3",
		"FROM_SRUN": "1", "FROM_SBATCH": "", credentialEnv: "", "STOCKADE_NODE": "node2", "SLURM_DISTRIBUTION": "block",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	if spec.Script != taskScript || !reflect.DeepEqual(spec.Argv, step.Argv) || spec.WorkDir != "/home/alice/run" ||
		spec.Stdout != "/state/stepout/9.2.3/output" || spec.Stderr != "" || spec.CPUs != 2 || spec.MemoryBytes != 2048<<20 ||
		spec.UID != 1501 || spec.Attempt != 1 || spec.TimeLimit != 500*time.Second ||
		spec.CgroupParent != "/stockade/node2/step_9.2.3" || spec.KillGrace != time.Second {
		t.Errorf("spec %+v", spec)
	}
}

// The batch script of a multi-node job sees Slurm's compressed node list
// and the task layout, and srun's variables.
func TestBatchEnvMultiNode(t *testing.T) {
	tests := []struct {
		name                  string
		nodes                 []string
		spec                  api.JobSpec
		nodelist, ntasks, tpn string
	}{
		{"padded names with a gap", []string{"node01", "node02", "node03", "node04", "node07"}, api.JobSpec{Nodes: 5, Tasks: 7},
			"node[01-04,07]", "7", "2(x2),1(x3)"},
		{"-N3 -n6", []string{"n1", "n2", "n3"}, api.JobSpec{Nodes: 3, Tasks: 6}, "n[1-3]", "6", "2(x3)"},
		{"--ntasks-per-node", []string{"a", "b"}, api.JobSpec{Nodes: 2, Tasks: 4, TasksPerNode: 2}, "a,b", "4", "2(x2)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Environment = map[string]string{credentialEnv: "stale", "SLURM_STEP_ID": "3"}
			j := &api.Job{ID: 3, User: "alice", Nodes: tc.nodes, Spec: tc.spec, AllocCPUs: 2}
			env := envOf(jobEnv(specInput{Job: j, Node: tc.nodes[0], Extra: map[string]string{serversEnv: "c1:7701"}}, "/"))
			if env["SLURM_JOB_NODELIST"] != tc.nodelist || env["SLURM_NODELIST"] != tc.nodelist || env["SLURM_NTASKS"] != tc.ntasks ||
				env["SLURM_TASKS_PER_NODE"] != tc.tpn {
				t.Errorf("nodelist %q ntasks %q tasks per node %q", env["SLURM_JOB_NODELIST"], env["SLURM_NTASKS"], env["SLURM_TASKS_PER_NODE"])
			}
			if _, ok := env[credentialEnv]; ok || env["SLURM_STEP_ID"] != "" || env[serversEnv] != "c1:7701" {
				t.Errorf("submitted credential or step id kept, or extra missing: %v", env)
			}
		})
	}
}

func TestEndOf(t *testing.T) {
	used := api.Usage{WallTimeNs: 5}
	tests := []struct {
		name      string
		res       executor.Result
		code, sig int
		note      string
	}{
		{"completed", executor.Result{State: api.JobCompleted, Usage: used}, 0, 0, ""},
		{"exit 3", executor.Result{State: api.JobFailed, ExitCode: 3, Reason: "exit code 3", Usage: used}, 3, 0, ""},
		{"signal", executor.Result{State: api.JobFailed, ExitSignal: 11, Reason: "killed by signal 11", Usage: used}, 0, 11, ""},
		{"never started", executor.Result{State: api.JobFailed, ExitCode: 1, Reason: "cannot open output file"}, 1, 0, "cannot open output file"},
		{"cancelled", executor.Result{State: api.JobCancelled, Reason: "cancelled", Usage: used}, 0, 9, "CANCELLED: cancelled"},
		{"cancelled after its shell exited", executor.Result{State: api.JobCancelled, ExitCode: 143, Usage: used}, 0, 9, "CANCELLED:"},
		{"timeout keeps its signal", executor.Result{State: api.JobTimeout, ExitSignal: 15, Usage: used}, 0, 15, "TIMEOUT:"},
		{"out of memory", executor.Result{State: api.JobOutOfMemory, Reason: "1 process(es) killed", Usage: used}, 0, 9, "OUT_OF_MEMORY: 1 process(es) killed"},
	}
	for _, tc := range tests {
		e := endOf(&tc.res)
		if e.code != tc.code || e.sig != tc.sig || e.note != tc.note {
			t.Errorf("%s: %d:%d %q, want %d:%d %q", tc.name, e.code, e.sig, e.note, tc.code, tc.sig, tc.note)
		}
	}
}

func TestReadTaskOutput(t *testing.T) {
	dir := t.TempDir()
	uid := uint32(os.Getuid())
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := write("plain", "hello\n")
	big := write("big", strings.Repeat("x", api.StepOutputCap+100))
	link := filepath.Join(dir, "link")
	os.Symlink(plain, link)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		uid  uint32
		want int
	}{
		{"regular file", plain, uid, 6},
		{"capped", big, uid, api.StepOutputCap},
		{"symlink refused", link, uid, 0},
		{"fifo refused without blocking", fifo, uid, 0},
		{"another user's file refused", plain, uid + 1, 0},
		{"missing", filepath.Join(dir, "none"), uid, 0},
	}
	for _, tc := range tests {
		if got := readTaskOutput(tc.path, tc.uid); len(got) != tc.want {
			t.Errorf("%s: %d bytes, want %d", tc.name, len(got), tc.want)
		}
	}
	if got := appendNote(strings.Repeat("y", api.StepOutputCap), "note\n"); len(got) != api.StepOutputCap || !strings.HasSuffix(got, "\nnote\n") {
		t.Errorf("note over a full output: %d bytes, suffix %q", len(got), got[len(got)-10:])
	}
	if got := appendNote("partial", "note\n"); got != "partial\nnote\n" {
		t.Errorf("appendNote = %q", got)
	}
}

func TestUnsearchableParent(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	closed := filepath.Join(open, "closed")
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{open, 0o755}, {closed, 0o700}, {filepath.Join(closed, "state"), 0o700}} {
		if err := os.Mkdir(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d.path, d.mode)
	}
	os.Chmod(base, 0o755)
	tests := []struct{ dir, want string }{
		{filepath.Join(closed, "state"), closed},
		{filepath.Join(open, "x"), ""},
	}
	for _, tc := range tests {
		// Directories above the test's temp dir may be closed too.
		if got := unsearchableParent(tc.dir); got != tc.want && !(tc.want == "" && !strings.HasPrefix(got, base)) {
			t.Errorf("unsearchableParent(%s) = %q, want %q", tc.dir, got, tc.want)
		}
	}
}

// fakeStepController serves the agent's step routes from a work list and
// records the task reports.
type fakeStepController struct {
	mu      sync.Mutex
	work    api.AgentWork
	reports []api.StepReport
}

func (f *fakeStepController) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case "/v1/agent/steps":
		json.NewEncoder(w).Encode(f.work)
	case "/v1/agent/step-report":
		var rep api.StepReport
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &rep)
		f.reports = append(f.reports, rep)
		w.Write([]byte("{}"))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeStepController) got() map[int]api.StepReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[int]api.StepReport{}
	for _, r := range f.reports {
		m[r.Task.Rank] = r
	}
	return m
}

// TestTaskRunner runs step tasks through the executor: their environment
// and output reach the reports, a task survives an agent restart, and the
// tasks of an ended job are killed and reported with signal 9.
func TestTaskRunner(t *testing.T) {
	testenv.RequireRoot(t)
	base, err := os.MkdirTemp("", "stockade-agent-steps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// The job's user must reach its output dir below the state dir.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(base, "state")
	if err := os.MkdirAll(filepath.Join(state, tlsSubdir), 0o700); err != nil {
		t.Fatal(err)
	}
	fc := &fakeStepController{}
	srv := httptest.NewTLSServer(fc)
	t.Cleanup(srv.Close)
	parent := "/stockade-test/agent-steps-" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() { removeCgroupDirs(cgroupRoot, parent) })
	newTestAgent := func() *agent {
		a := &agent{
			opts: Options{Name: "node1", Servers: []string{strings.TrimPrefix(srv.URL, "https://")}, StateDir: state,
				KillGrace: time.Second, CgroupParent: parent},
			log: testLogger(t), http: srv.Client(), jobs: map[jobKey]*localJob{}, finished: map[jobKey]bool{},
			registered: make(chan struct{}), kick: make(chan struct{}, 1), steps: newStepRunner(),
		}
		a.loadTasks()
		return a
	}
	const nobody = 65534
	job := api.Job{ID: 77, User: "nobody", UID: nobody, GID: nobody, State: api.JobRunning, Nodes: []string{"node1", "node2"},
		AllocCPUs: 2, AllocMemoryMB: 256, StartTime: time.Now(), Spec: api.JobSpec{WorkDir: "/", Tasks: 3}}
	step := func(id int, script string) api.JobStep {
		return api.JobStep{JobID: 77, StepID: id, State: api.JobRunning, Argv: []string{"/bin/sh", "-c", script},
			Env: map[string]string{"PATH": "/usr/bin:/bin"}, Nodes: []string{"node1", "node2"},
			TaskNodes: []string{"node1", "node1", "node2"}, CPUsPerTask: 1,
			Tasks: []api.StepTask{{Rank: 0}, {Rank: 1}, {Rank: 2}}}
	}
	waitReports := func(a *agent, n int) map[int]api.StepReport {
		t.Helper()
		cl := a.client()
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			a.watchTasks(context.Background(), cl)
			if got := fc.got(); len(got) >= n {
				return got
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%d task reports after 60 s, want %d", len(fc.got()), n)
		return nil
	}

	t.Run("tasks run and report", func(t *testing.T) {
		a := newTestAgent()
		w := api.AgentWork{Index: 1, Jobs: []api.Job{job},
			Steps: []api.JobStep{step(0, `echo "rank $SLURM_PROCID of $SLURM_NTASKS local $SLURM_LOCALID node $SLURM_NODEID step $SLURM_STEP_ID uid $(id -u)"; echo err >&2; exit $((SLURM_PROCID + 2))`)}}
		a.applySteps(&w)
		got := waitReports(a, 2)
		for rank := 0; rank < 2; rank++ {
			r := got[rank]
			want := "rank " + strconv.Itoa(rank) + " of 3 local " + strconv.Itoa(rank) + " node 0 step 0 uid 65534\nerr\n"
			if r.JobID != 77 || r.StepID != 0 || r.Node != "node1" || r.Task.ExitCode != rank+2 || r.Task.Output != want || !r.Task.Done {
				t.Errorf("rank %d report %+v, want output %q", rank, r, want)
			}
		}
		a.steps.mu.Lock()
		left := len(a.steps.tasks)
		a.steps.mu.Unlock()
		if left != 0 {
			t.Errorf("%d tasks left after their reports", left)
		}
		for _, d := range []string{stepsSubdir, stepOutSubdir} {
			ents, _ := os.ReadDir(filepath.Join(state, d))
			for _, e := range ents {
				if e.IsDir() {
					t.Errorf("%s/%s left behind", d, e.Name())
				}
			}
		}
		if _, err := os.Stat(filepath.Join(cgroupRoot, "pids", parent, "step_77.0.0")); err == nil {
			t.Errorf("the task's cgroup parent is left behind")
		}
		// A list fetched before the reports must not start them again.
		a.applySteps(&w)
		a.steps.mu.Lock()
		left = len(a.steps.tasks)
		a.steps.mu.Unlock()
		if left != 0 {
			t.Errorf("reported tasks launched again")
		}
	})

	t.Run("a task survives an agent restart", func(t *testing.T) {
		fc.mu.Lock()
		fc.reports = nil
		fc.mu.Unlock()
		a := newTestAgent()
		w := api.AgentWork{Index: 2, Jobs: []api.Job{job}, Steps: []api.JobStep{step(1, `sleep 2; echo done $SLURM_PROCID`)}}
		a.applySteps(&w)
		a.launches.Wait()
		// The agent goes away; a new one finds the running tasks.
		b := newTestAgent()
		b.steps.mu.Lock()
		n := len(b.steps.tasks)
		b.steps.mu.Unlock()
		if n != 2 {
			t.Fatalf("the restarted agent resumed %d tasks, want 2", n)
		}
		got := waitReports(b, 2)
		if got[0].Task.Output != "done 0\n" || got[1].Task.Output != "done 1\n" || got[1].Task.ExitCode != 0 {
			t.Errorf("reports after the restart: %+v", got)
		}
	})

	t.Run("tasks of an ended job are killed", func(t *testing.T) {
		fc.mu.Lock()
		fc.reports = nil
		fc.mu.Unlock()
		a := newTestAgent()
		w := api.AgentWork{Index: 3, Jobs: []api.Job{job}, Steps: []api.JobStep{step(2, `echo started; sleep 600`)}}
		a.applySteps(&w)
		a.launches.Wait()
		for rank := 0; rank < 2; rank++ {
			out := filepath.Join(taskOutDir(state, taskKey{77, 2, rank}), taskOutFile)
			deadline := time.Now().Add(10 * time.Second)
			for b, _ := os.ReadFile(out); string(b) != "started\n" && time.Now().Before(deadline); b, _ = os.ReadFile(out) {
				time.Sleep(20 * time.Millisecond)
			}
		}
		a.watchTasks(context.Background(), a.client())
		a.applySteps(&api.AgentWork{Index: 4})
		got := waitReports(a, 2)
		for rank := 0; rank < 2; rank++ {
			if r := got[rank]; r.Task.ExitSignal != 9 || !strings.HasPrefix(r.Task.Output, "started\n") ||
				!strings.Contains(r.Task.Output, "CANCELLED") {
				t.Errorf("rank %d of the ended job: %+v", rank, r.Task)
			}
		}
	})

	t.Run("tasks of a cancelled step stop, the job runs on", func(t *testing.T) {
		fc.mu.Lock()
		fc.reports = nil
		fc.mu.Unlock()
		a := newTestAgent()
		// The task exits on SIGTERM, in the grace the cancel gives it.
		st := step(3, `trap 'echo term; exit 143' TERM; echo started; while :; do sleep 0.1; done`)
		w := api.AgentWork{Index: 5, Jobs: []api.Job{job}, Steps: []api.JobStep{st}}
		a.applySteps(&w)
		a.launches.Wait()
		for rank := 0; rank < 2; rank++ {
			out := filepath.Join(taskOutDir(state, taskKey{77, 3, rank}), taskOutFile)
			deadline := time.Now().Add(10 * time.Second)
			for b, _ := os.ReadFile(out); string(b) != "started\n" && time.Now().Before(deadline); b, _ = os.ReadFile(out) {
				time.Sleep(20 * time.Millisecond)
			}
		}
		a.watchTasks(context.Background(), a.client())
		// The step leaves the list; its job stays.
		a.applySteps(&api.AgentWork{Index: 6, Jobs: []api.Job{job}})
		start := time.Now()
		got := waitReports(a, 2)
		for rank := 0; rank < 2; rank++ {
			r := got[rank]
			// SIGTERM came first (the trap ran); the report says 0:9
			// for any task the shim stopped (endOf).
			if r.StepID != 3 || !strings.HasPrefix(r.Task.Output, "started\n") || !strings.Contains(r.Task.Output, "term\n") ||
				!strings.Contains(r.Task.Output, "CANCELLED") || r.Task.ExitSignal != 9 {
				t.Errorf("rank %d of the cancelled step: %+v", rank, r.Task)
			}
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("the cancel took %v", d)
		}
	})

	if ents, _ := os.ReadDir(filepath.Join(state, stepsSubdir)); len(ents) != 0 {
		names := []string{}
		for _, e := range ents {
			names = append(names, e.Name())
		}
		slices.Sort(names)
		t.Errorf("task dirs left: %v", names)
	}
}

// A batch script gets its job's credential (fetched at launch when the
// step poll has not brought it yet), the controllers and the CA.
func TestBatchStepEnv(t *testing.T) {
	fc := &fakeStepController{}
	srv := httptest.NewTLSServer(fc)
	t.Cleanup(srv.Close)
	state := t.TempDir()
	os.MkdirAll(filepath.Join(state, tlsSubdir), 0o700)
	os.WriteFile(filepath.Join(state, tlsSubdir, caFile), []byte("CA PEM"), 0o644)
	addr := strings.TrimPrefix(srv.URL, "https://")
	a := &agent{opts: Options{Name: "node1", Servers: []string{addr}, StateDir: state}, log: testLogger(t),
		http: srv.Client(), steps: newStepRunner()}
	job := &api.Job{ID: 8, Restarts: 2, State: api.JobRunning, Nodes: []string{"node1"}}
	tests := []struct {
		name     string
		cached   map[jobKey]string
		work     api.AgentWork
		wantCred string
	}{
		{"from the step poll", map[jobKey]string{{8, 2}: "stkjob.cached"}, api.AgentWork{}, "stkjob.cached"},
		{"fetched at launch", nil, api.AgentWork{Jobs: []api.Job{*job}, Credentials: map[uint64]string{8: "stkjob.fetched"}}, "stkjob.fetched"},
		{"only for this attempt", map[jobKey]string{{8, 1}: "stkjob.old"},
			api.AgentWork{Jobs: []api.Job{{ID: 8, Restarts: 3}}, Credentials: map[uint64]string{8: "stkjob.next"}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a.steps.creds = tc.cached
			if a.steps.creds == nil {
				a.steps.creds = map[jobKey]string{}
			}
			fc.mu.Lock()
			fc.work = tc.work
			fc.mu.Unlock()
			env := a.batchStepEnv(job)
			if env[credentialEnv] != tc.wantCred || env[serversEnv] != addr || env[caPEMEnv] != "CA PEM" {
				t.Errorf("env %v, want credential %q", env, tc.wantCred)
			}
		})
	}
}
