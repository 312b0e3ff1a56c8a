package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

func TestSrunRequest(t *testing.T) {
	environ := map[string]string{"PATH": "/bin", "SLURM_JOB_ID": "42", "HOME": "/home/alice",
		credentialEnv: "stkjob.a.b", "STOCKADE_TOKEN": "stk_x", "OMP_NUM_THREADS": "4"}
	tests := []struct {
		name    string
		opts    srunOpts
		want    api.StepCreateRequest
		wantEnv []string // keys of the request's environment
		err     string
	}{
		{name: "defaults", opts: srunOpts{export: "ALL"},
			want:    api.StepCreateRequest{JobID: 42, Argv: []string{"hostname"}, WorkDir: "/home/alice/run"},
			wantEnv: []string{"HOME", "OMP_NUM_THREADS", "PATH", "SLURM_JOB_ID"}},
		{name: "-N3 -n6 -c2 -J name", opts: srunOpts{export: "ALL", nodes: "3", ntasks: 6, cpusPerTask: 2, name: "mpi"},
			want:    api.StepCreateRequest{JobID: 42, Name: "mpi", Argv: []string{"hostname"}, Nodes: 3, Tasks: 6, CPUsPerTask: 2, WorkDir: "/home/alice/run"},
			wantEnv: []string{"HOME", "OMP_NUM_THREADS", "PATH", "SLURM_JOB_ID"}},
		{name: "-N2-4 takes the minimum", opts: srunOpts{export: "ALL", nodes: "2-4", ntasksPerNode: 2},
			want:    api.StepCreateRequest{JobID: 42, Argv: []string{"hostname"}, Nodes: 2, TasksPerNode: 2, WorkDir: "/home/alice/run"},
			wantEnv: []string{"HOME", "OMP_NUM_THREADS", "PATH", "SLURM_JOB_ID"}},
		{name: "--chdir relative", opts: srunOpts{export: "NONE", chdir: "sub"},
			want:    api.StepCreateRequest{JobID: 42, Argv: []string{"hostname"}, WorkDir: "/home/alice/run/sub"},
			wantEnv: []string{"SLURM_JOB_ID"}},
		{name: "--chdir absolute, --export list", opts: srunOpts{export: "OMP_NUM_THREADS,X=1,MISSING", chdir: "/scratch"},
			want:    api.StepCreateRequest{JobID: 42, Argv: []string{"hostname"}, WorkDir: "/scratch"},
			wantEnv: []string{"OMP_NUM_THREADS", "SLURM_JOB_ID", "X"}},
		{name: "--export=ALL,X=1", opts: srunOpts{export: "ALL,X=1"},
			want:    api.StepCreateRequest{JobID: 42, Argv: []string{"hostname"}, WorkDir: "/home/alice/run"},
			wantEnv: []string{"HOME", "OMP_NUM_THREADS", "PATH", "SLURM_JOB_ID", "X"}},
		{name: "bad node count", opts: srunOpts{export: "ALL", nodes: "x"}, err: "--nodes"},
		{name: "zero nodes", opts: srunOpts{export: "ALL", nodes: "0"}, err: "--nodes"},
		{name: "negative tasks", opts: srunOpts{export: "ALL", ntasks: -1}, err: "--ntasks"},
		{name: "bad export", opts: srunOpts{export: "=x"}, err: "--export"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := srunRequest(&tc.opts, []string{"hostname"}, 42, environ, "/home/alice/run")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for k := range got.Env {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			if !reflect.DeepEqual(keys, tc.wantEnv) {
				t.Errorf("environment %v, want %v (the credential and token never travel)", keys, tc.wantEnv)
			}
			got.Env = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("request %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestStepOutcome(t *testing.T) {
	task := func(rank int, node string, code, sig int, out string) api.StepTask {
		return api.StepTask{Rank: rank, Node: node, Done: true, ExitCode: code, ExitSignal: sig, Output: out}
	}
	many := &api.JobStep{JobID: 5, StepID: 0, State: api.JobCompleted}
	for r := 0; r < 11; r++ {
		many.Tasks = append(many.Tasks, task(r, "n1", 0, 0, "x\n"))
	}
	tests := []struct {
		name    string
		step    *api.JobStep
		label   bool
		out     string
		msgs    []string
		code    int
		outHas  string
		outLine int
	}{
		{name: "rank order", step: &api.JobStep{JobID: 5, State: api.JobCompleted, Tasks: []api.StepTask{
			task(1, "n1", 0, 0, "one\n"), task(0, "n1", 0, 0, "zero\n"), task(2, "n2", 0, 0, "two\n")}},
			out: "zero\none\ntwo\n"},
		{name: "label", label: true, step: &api.JobStep{JobID: 5, State: api.JobCompleted, Tasks: []api.StepTask{
			task(0, "n1", 0, 0, "a\nb\n"), task(1, "n1", 0, 0, ""), task(2, "n2", 0, 0, "partial")}},
			out: "0: a\n0: b\n2: partial\n"},
		{name: "labels are padded to the widest rank", label: true, step: many, outHas: " 0: x\n", outLine: 11},
		{name: "failing tasks", step: &api.JobStep{JobID: 5, State: api.JobFailed, ExitCode: 3, Tasks: []api.StepTask{
			task(0, "n1", 0, 0, ""), task(1, "n1", 0, 0, ""), task(2, "n2", 3, 0, ""), task(3, "n2", 3, 0, ""), task(4, "n3", 1, 0, "")}},
			msgs: []string{"n2: tasks 2-3: Exited with exit code 3", "n3: task 4: Exited with exit code 1"}, code: 3},
		{name: "killed by a signal", step: &api.JobStep{JobID: 5, State: api.JobFailed, ExitCode: 2, ExitSignal: 9, Tasks: []api.StepTask{
			task(0, "n1", 0, 9, ""), task(1, "n1", 2, 0, ""), task(2, "n2", 0, 11, "")}},
			msgs: []string{"n1: task 0: Killed", "n1: task 1: Exited with exit code 2", "n2: task 2: Segmentation fault"}, code: 137},
		{name: "cancelled", step: &api.JobStep{JobID: 5, StepID: 1, State: api.JobCancelled, EndTime: fixNow, Tasks: []api.StepTask{
			task(0, "n1", 0, 0, "ok\n"), {Rank: 1, Node: "n2"}}},
			out: "ok\n", msgs: []string{"*** STEP 5.1 CANCELLED AT 2026-11-21T10:00:00 ***"}, code: 1},
		{name: "cancelled with scancel JOB.STEP", step: &api.JobStep{JobID: 5, StepID: 2, State: api.JobCancelled, EndTime: fixNow,
			ExitSignal: 15, CancelRequested: true, Tasks: []api.StepTask{task(0, "n1", 0, 15, ""), task(1, "n1", 0, 15, ""), task(2, "n2", 0, 9, "")}},
			msgs: []string{"n1: tasks 0-1: Terminated", "n2: task 2: Killed", "*** STEP 5.2 CANCELLED AT 2026-11-21T10:00:00 ***"}, code: 143},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, msgs, code := stepOutcome(tc.step, tc.label, time.UTC)
			switch {
			case tc.outHas != "":
				if !strings.HasPrefix(out, tc.outHas) || strings.Count(out, "\n") != tc.outLine || !strings.Contains(out, "\n10: x\n") {
					t.Errorf("output %q", out)
				}
			case out != tc.out:
				t.Errorf("output %q, want %q", out, tc.out)
			}
			if !reflect.DeepEqual(msgs, tc.msgs) || code != tc.code {
				t.Errorf("messages %q code %d, want %q %d", msgs, code, tc.msgs, tc.code)
			}
		})
	}
}

// fakeSteps is a controller that runs one step: created RUNNING, ended
// with final on the first wait.
type fakeSteps struct {
	mu     sync.Mutex
	final  api.JobStep
	create api.StepCreateRequest
	submit api.SubmitRequest
	auth   []string
	status int // answer to create, if not 0
	// jobEnd: the submitted job ends with this state before any step.
	jobEnd api.JobState
}

func (f *fakeSteps) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	switch {
	case r.Method == "POST" && r.URL.Path == "/v1/jobs/42/steps":
		if f.status != 0 {
			w.WriteHeader(f.status)
			json.NewEncoder(w).Encode(api.Error{Error: "More processors requested than permitted"})
			return
		}
		json.Unmarshal(body, &f.create)
		json.NewEncoder(w).Encode(api.JobStep{JobID: 42, StepID: 0, State: api.JobRunning, ModifyIndex: 5})
	case r.Method == "GET" && r.URL.Path == "/v1/jobs/42/steps/0" && r.URL.Query().Get("index") == "5":
		json.NewEncoder(w).Encode(f.final)
	case r.Method == "POST" && r.URL.Path == "/v1/jobs":
		json.Unmarshal(body, &f.submit)
		json.NewEncoder(w).Encode(api.SubmitResponse{JobID: 42})
	case r.Method == "GET" && r.URL.Path == "/v1/jobs/42":
		j := api.Job{ID: 42, State: api.JobRunning}
		if f.jobEnd != "" {
			j.State, j.ExitCode = f.jobEnd, 127
		}
		json.NewEncoder(w).Encode(j)
	case r.Method == "GET" && r.URL.Path == "/v1/jobs/42/steps/0" && f.submit.Spec.Script != "" && f.jobEnd == "":
		// The allocation's srun created step 0.
		json.NewEncoder(w).Encode(api.JobStep{JobID: 42, StepID: 0, State: api.JobRunning, ModifyIndex: 5})
	default:
		http.NotFound(w, r)
	}
}

func srunEnv(t *testing.T, f http.Handler, vars map[string]string) (*env, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	old := srunClient
	srunClient = func(servers []string, token string, caPEM []byte) (*api.Client, error) {
		if len(servers) != 1 || servers[0] != "ctl:7701" || string(caPEM) != "PEM" {
			t.Errorf("srun connects to %v with CA %q", servers, caPEM)
		}
		return &api.Client{Servers: []string{strings.TrimPrefix(srv.URL, "https://")}, Token: token, HTTP: srv.Client()}, nil
	}
	t.Cleanup(func() { srunClient = old })
	var stdout, stderr bytes.Buffer
	e := &env{
		stdout: &stdout, stderr: &stderr, stdin: strings.NewReader(""),
		getenv: func(k string) string { return vars[k] },
		environ: func() []string {
			out := []string{"PATH=/usr/bin:/bin"}
			for k, v := range vars {
				out = append(out, k+"="+v)
			}
			return out
		},
		getwd: func() (string, error) { return "/home/alice", nil },
		readFile: func(p string) ([]byte, error) {
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		},
		now:   func() time.Time { return fixNow },
		loc:   time.UTC,
		sleep: func(context.Context, time.Duration) error { return errors.New("stop") },
		newID: func() string { return "step-request-1" },
		client: func() (*api.Client, error) {
			return &api.Client{Servers: []string{strings.TrimPrefix(srv.URL, "https://")}, Token: "stk_user", HTTP: srv.Client()}, nil
		},
	}
	return e, &stdout, &stderr
}

func TestSrunRun(t *testing.T) {
	inJob := map[string]string{"SLURM_JOB_ID": "42", credentialEnv: "stkjob.p.s", "STOCKADE_SERVERS": "ctl:7701", caPEMEnv: "PEM"}
	final := api.JobStep{JobID: 42, StepID: 0, State: api.JobFailed, ExitCode: 2, Tasks: []api.StepTask{
		{Rank: 0, Node: "node1", Done: true, Output: "hello 0\n"},
		{Rank: 1, Node: "node2", Done: true, ExitCode: 2, Output: "hello 1\n"},
	}}
	tests := []struct {
		name     string
		vars     map[string]string
		args     []string
		status   int
		code     int
		stdout   string
		stderr   string
		noCreate bool
	}{
		{name: "step runs", vars: inJob, args: []string{"srun", "-l", "-n2", "sh", "-c", "echo hello"}, code: 2,
			stdout: "0: hello 0\n1: hello 1\n", stderr: "srun: error: node2: task 1: Exited with exit code 2\n"},
		{name: "no command", vars: inJob, args: []string{"srun", "-n2"}, code: 1,
			stderr: "srun: error: no command given to execute\n", noCreate: true},
		{name: "refused", vars: inJob, args: []string{"srun", "-n99", "hostname"}, status: 400, code: 1,
			stderr: "srun: error: Unable to create step for job 42: More processors requested than permitted\n"},
		{name: "unknown option", vars: inJob, args: []string{"srun", "--bogus", "hostname"}, code: 1,
			stderr: "srun: error: unknown flag: --bogus\n", noCreate: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeSteps{final: final, status: tc.status}
			e, stdout, stderr := srunEnv(t, f, tc.vars)
			code := run(context.Background(), e, tc.args)
			if code != tc.code || stdout.String() != tc.stdout || stderr.String() != tc.stderr {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d %q %q", code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
			}
			if tc.noCreate {
				if len(f.auth) != 0 {
					t.Errorf("%d requests made", len(f.auth))
				}
				return
			}
			for _, a := range f.auth {
				if a != "Bearer stkjob.p.s" {
					t.Errorf("authorization %q, want the job credential", a)
				}
			}
		})
	}

	// The command after the options is the step's, options and all.
	f := &fakeSteps{final: final}
	e, _, _ := srunEnv(t, f, inJob)
	run(context.Background(), e, []string{"srun", "-N", "2", "--mpi=pmix", "prog", "-n", "5"})
	if !reflect.DeepEqual(f.create.Argv, []string{"prog", "-n", "5"}) || f.create.Nodes != 2 || f.create.Tasks != 0 ||
		f.create.Env[credentialEnv] != "" || f.create.Env["SLURM_JOB_ID"] != "42" || f.create.WorkDir != "/home/alice" ||
		f.create.RequestID != "step-request-1" {
		t.Errorf("request %+v", f.create)
	}
}

// TestSrunOutsideJob: without a job srun gets an allocation whose batch
// script is srun, and prints step 0's outcome; with --jobid it runs the
// step in that job with the user's token.
func TestSrunOutsideJob(t *testing.T) {
	final := api.JobStep{JobID: 42, StepID: 0, State: api.JobFailed, ExitCode: 2, Tasks: []api.StepTask{
		{Rank: 0, Node: "node1", Done: true, Output: "hello 0\n"},
		{Rank: 1, Node: "node2", Done: true, ExitCode: 2, Output: "hello 1\n"},
	}}
	outside := map[string]string{"STOCKADE_SERVERS": "ctl:7701", "STOCKADE_TOKEN": "stk_user"}
	t.Run("new allocation", func(t *testing.T) {
		f := &fakeSteps{final: final}
		e, stdout, stderr := srunEnv(t, f, outside)
		code := run(context.Background(), e, []string{"srun", "-N2", "-l", "-p", "batch", "--exclusive", "sh", "-c", "echo $SLURM_PROCID"})
		if code != 2 || stdout.String() != "0: hello 0\n1: hello 1\n" ||
			stderr.String() != "srun: error: node2: task 1: Exited with exit code 2\n" {
			t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		sp := f.submit.Spec
		if sp.Nodes != 2 || sp.Tasks != 2 || sp.Name != "sh" || sp.Partition != "batch" ||
			!strings.Contains(sp.Script, "exec srun --export=ALL sh -c 'echo $SLURM_PROCID'") {
			t.Errorf("allocation %+v", sp)
		}
		if _, ok := sp.Environment["STOCKADE_TOKEN"]; ok || sp.Environment["PATH"] == "" {
			t.Errorf("allocation environment %v: want PATH and no token", sp.Environment)
		}
		for _, a := range f.auth {
			if a != "Bearer stk_user" {
				t.Errorf("authorization %q, want the user's token", a)
			}
		}
	})
	t.Run("allocation ends before its step", func(t *testing.T) {
		f := &fakeSteps{final: final, jobEnd: api.JobFailed}
		e, stdout, stderr := srunEnv(t, f, outside)
		code := run(context.Background(), e, []string{"srun", "hostname"})
		if code != 1 || stdout.Len() != 0 || !strings.HasPrefix(stderr.String(), "srun: error: job 42 ended FAILED before its step started (exit code 127)") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})
	t.Run("--jobid", func(t *testing.T) {
		f := &fakeSteps{final: final}
		e, stdout, _ := srunEnv(t, f, outside)
		code := run(context.Background(), e, []string{"srun", "--jobid=42", "-n2", "hostname"})
		if code != 2 || stdout.String() != "hello 0\nhello 1\n" || f.create.Tasks != 2 || f.submit.Spec.Script != "" {
			t.Errorf("exit %d, stdout %q, step %+v, submitted %+v", code, stdout, f.create, f.submit)
		}
		for _, a := range f.auth {
			if a != "Bearer stk_user" {
				t.Errorf("authorization %q, want the user's token", a)
			}
		}
	})
	t.Run("bad step option submits nothing", func(t *testing.T) {
		f := &fakeSteps{final: final}
		e, _, stderr := srunEnv(t, f, outside)
		if code := run(context.Background(), e, []string{"srun", "-N", "x", "hostname"}); code != 1 ||
			stderr.String() != "srun: error: --nodes: invalid node count \"x\"\n" || len(f.auth) != 0 {
			t.Errorf("exit %d, stderr %q, %d requests", code, stderr, len(f.auth))
		}
	})
}

func TestSrunAllocArgs(t *testing.T) {
	tests := []struct {
		name string
		opts srunOpts
		args []string
		want []string
	}{
		{"defaults", srunOpts{export: "ALL"}, []string{"hostname"},
			[]string{"--job-name=hostname", "--output=/dev/null", "--error=/dev/null", "--wrap=exec srun --export=ALL hostname"}},
		{"-N3 is a task per node", srunOpts{export: "ALL", nodes: "3"}, []string{"/bin/true"},
			[]string{"--job-name=true", "--output=/dev/null", "--error=/dev/null", "--nodes=3", "--ntasks=3", "--wrap=exec srun --export=ALL /bin/true"}},
		{"-N2 --ntasks-per-node", srunOpts{export: "ALL", nodes: "2", ntasksPerNode: 4}, []string{"a"},
			[]string{"--job-name=a", "--output=/dev/null", "--error=/dev/null", "--nodes=2", "--ntasks-per-node=4", "--wrap=exec srun --export=ALL a"}},
		{"name, quoting, allocation options", srunOpts{export: "NONE,X=a b", name: "j", ntasks: 2, cpusPerTask: 3, chdir: "/s",
			alloc: []string{"--time=5", "--exclusive"}}, []string{"echo", "it's", ""},
			[]string{"--job-name=j", "--output=/dev/null", "--error=/dev/null", "--ntasks=2", "--cpus-per-task=3", "--chdir=/s",
				"--time=5", "--exclusive", `--wrap=exec srun '--export=NONE,X=a b' --job-name=j echo 'it'\''s' ''`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := srunAllocArgs(&tc.opts, tc.args); !slices.Equal(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
