package server

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/pki"
)

func TestPlanStep(t *testing.T) {
	running := func(mod func(*api.Job)) *api.Job {
		j := &api.Job{ID: 7, User: "alice", State: api.JobRunning, Nodes: []string{"n1", "n2", "n3"}, AllocCPUs: 4,
			Spec: api.JobSpec{Tasks: 6, CPUsPerTask: 1, WorkDir: "/home/alice"}}
		if mod != nil {
			mod(j)
		}
		return j
	}
	req := func(mod func(*api.StepCreateRequest)) *api.StepCreateRequest {
		r := &api.StepCreateRequest{Argv: []string{"/bin/hostname"}}
		if mod != nil {
			mod(r)
		}
		return r
	}
	tests := []struct {
		name      string
		job       *api.Job
		req       *api.StepCreateRequest
		wantNodes []string
		wantTasks []string
		wantCPT   int
		status    int
		errText   string
	}{
		{name: "defaults: the job's nodes and tasks", job: running(nil), req: req(nil),
			wantNodes: []string{"n1", "n2", "n3"}, wantTasks: []string{"n1", "n1", "n2", "n2", "n3", "n3"}, wantCPT: 1},
		{name: "-n4: block distribution", job: running(nil), req: req(func(r *api.StepCreateRequest) { r.Tasks = 4 }),
			wantNodes: []string{"n1", "n2", "n3"}, wantTasks: []string{"n1", "n1", "n2", "n3"}, wantCPT: 1},
		{name: "-N2: one task per node", job: running(nil), req: req(func(r *api.StepCreateRequest) { r.Nodes = 2 }),
			wantNodes: []string{"n1", "n2"}, wantTasks: []string{"n1", "n2"}, wantCPT: 1},
		{name: "-n2 shrinks the nodes", job: running(nil), req: req(func(r *api.StepCreateRequest) { r.Tasks = 2 }),
			wantNodes: []string{"n1", "n2"}, wantTasks: []string{"n1", "n2"}, wantCPT: 1},
		{name: "--ntasks-per-node", job: running(nil), req: req(func(r *api.StepCreateRequest) { r.TasksPerNode = 3 }),
			wantNodes: []string{"n1", "n2", "n3"}, wantTasks: []string{"n1", "n1", "n1", "n2", "n2", "n2", "n3", "n3", "n3"}, wantCPT: 1},
		{name: "-n4 --ntasks-per-node=2 takes two nodes", job: running(nil), req: req(func(r *api.StepCreateRequest) { r.Tasks, r.TasksPerNode = 4, 2 }),
			wantNodes: []string{"n1", "n2"}, wantTasks: []string{"n1", "n1", "n2", "n2"}, wantCPT: 1},
		{name: "-c2 from the job", job: running(func(j *api.Job) { j.Spec.CPUsPerTask, j.Spec.Tasks = 2, 3 }), req: req(nil),
			wantNodes: []string{"n1", "n2", "n3"}, wantTasks: []string{"n1", "n2", "n3"}, wantCPT: 2},
		{name: "too many CPUs", job: running(nil), req: req(func(r *api.StepCreateRequest) { r.Tasks, r.CPUsPerTask = 6, 3 }),
			status: 400, errText: "More processors requested than permitted"},
		{name: "too many nodes", job: running(nil), req: req(func(r *api.StepCreateRequest) { r.Nodes = 4 }), status: 400, errText: "nodes: 4 nodes requested"},
		{name: "tasks over tasks per node", job: running(nil), req: req(func(r *api.StepCreateRequest) { r.Nodes, r.Tasks, r.TasksPerNode = 1, 3, 2 }),
			status: 400, errText: "do not fit"},
		{name: "no command", job: running(nil), req: &api.StepCreateRequest{}, status: 400, errText: "argv"},
		{name: "NUL in argv", job: running(nil), req: req(func(r *api.StepCreateRequest) { r.Argv = []string{"a\x00b"} }), status: 400, errText: "NUL"},
		{name: "bad variable", job: running(nil), req: req(func(r *api.StepCreateRequest) { r.Env = map[string]string{"A=B": "x"} }), status: 400, errText: "environment"},
		{name: "relative workdir", job: running(nil), req: req(func(r *api.StepCreateRequest) { r.WorkDir = "rel" }), status: 400, errText: "absolute"},
		{name: "negative count", job: running(nil), req: req(func(r *api.StepCreateRequest) { r.Tasks = -1 }), status: 400, errText: "tasks"},
		{name: "job not running", job: running(func(j *api.Job) { j.State = api.JobCompleted }), req: req(nil), status: 409, errText: "not running"},
		{name: "job being cancelled", job: running(func(j *api.Job) { j.CancelRequested = true }), req: req(nil), status: 409, errText: "not running"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := planStep(tc.job, tc.req)
			if tc.status != 0 {
				he, ok := err.(*httpError)
				if !ok || he.status != tc.status || !strings.Contains(he.msg, tc.errText) {
					t.Fatalf("error %v, want %d containing %q", err, tc.status, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(st.Nodes, tc.wantNodes) || !reflect.DeepEqual(st.TaskNodes, tc.wantTasks) || st.CPUsPerTask != tc.wantCPT {
				t.Errorf("step on %v tasks %v cpt %d, want %v %v %d", st.Nodes, st.TaskNodes, st.CPUsPerTask, tc.wantNodes, tc.wantTasks, tc.wantCPT)
			}
			if st.User != "alice" || st.JobID != 7 || st.Name != "hostname" || st.WorkDir != "/home/alice" {
				t.Errorf("step %+v", st)
			}
		})
	}

	st, err := planStep(running(nil), req(func(r *api.StepCreateRequest) {
		r.Env = map[string]string{"A": "1", credentialEnv: "stkjob.x.y"}
	}))
	if err != nil || st.Env["A"] != "1" || st.Env[credentialEnv] != "" {
		t.Errorf("environment %v (%v): the credential must not be stored", st.Env, err)
	}
}

// stepCluster is a one-controller cluster with two heartbeating agents
// and users alice and bob.
type stepCluster struct {
	*cluster
	alice, bob string
	agents     map[string]*api.Client
}

func newStepCluster(t *testing.T) *stepCluster {
	c := &stepCluster{cluster: bootstrap(t), agents: map[string]*api.Client{}}
	c.alice, c.bob = c.addUser("alice", 1501), c.addUser("bob", 1502)
	for _, n := range []string{"node1", "node2"} {
		c.agents[n] = c.agent(n)
		register(t, c.agents[n], n)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				for n, a := range c.agents {
					a.AgentHeartbeat(context.Background(), api.AgentHeartbeat{Name: n})
				}
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
	return c
}

// running submits a job as token and waits until it runs.
func (c *stepCluster) running(token string, sp api.JobSpec) *api.Job {
	c.t.Helper()
	cl := c.client(token)
	id := submit(c.t, cl, sp).JobID
	var j api.Job
	waitFor(c.t, 20*time.Second, fmt.Sprintf("job %d running", id), func() bool {
		return cl.Do(context.Background(), "GET", fmt.Sprintf("/v1/jobs/%d", id), nil, &j) == nil && j.State == api.JobRunning
	})
	return &j
}

// work polls an agent's steps and credentials at once.
func (c *stepCluster) work(node string) api.AgentWork {
	c.t.Helper()
	var w api.AgentWork
	if err := c.agents[node].Do(context.Background(), "GET", "/v1/agent/steps?index=0", nil, &w); err != nil {
		c.t.Fatalf("steps work of %s: %v", node, err)
	}
	return w
}

func TestSteps(t *testing.T) {
	c := newStepCluster(t)
	sp := spec("mpi")
	sp.Nodes, sp.Tasks = 2, 4
	j := c.running(c.alice, sp)
	batch, other := j.Nodes[0], j.Nodes[1]
	cred := c.work(batch).Credentials[j.ID]
	if !isCredential(cred) {
		t.Fatalf("batch host %s got credential %q", batch, cred)
	}
	if w := c.work(other); len(w.Credentials) != 0 || len(w.Jobs) != 1 {
		t.Errorf("the other node's work: %d jobs, credentials %v", len(w.Jobs), w.Credentials)
	}
	sp2 := spec("second")
	j2 := c.running(c.alice, sp2)
	cred2 := c.work(j2.Nodes[0]).Credentials[j2.ID]

	withCred := c.client(cred)
	st, err := withCred.CreateStep(context.Background(), api.StepCreateRequest{JobID: j.ID, Argv: []string{"hostname"},
		Env: map[string]string{"X": "1", credentialEnv: cred}})
	if err != nil {
		t.Fatal(err)
	}
	if st.StepID != 0 || st.State != api.JobRunning || len(st.TaskNodes) != 4 || !reflect.DeepEqual(st.Nodes, j.Nodes) ||
		st.Env[credentialEnv] != "" || st.User != "alice" {
		t.Fatalf("step %+v", st)
	}

	t.Run("who may use the step routes", func(t *testing.T) {
		otherCA, _ := pki.NewCA("other")
		forged := credentialFor(j)
		foreign, _ := signCredential(otherCA.Key, &forged)
		stepPath := fmt.Sprintf("/v1/jobs/%d/steps/0", j.ID)
		createPath := fmt.Sprintf("/v1/jobs/%d/steps", j.ID)
		body := `{"argv":["true"]}`
		tests := []struct {
			name, method, path, token, body string
			status                          int
		}{
			{"credential: its job's step", "GET", stepPath, cred, "", 200},
			{"credential: new step", "POST", createPath, cred, body, 200},
			{"credential: another job's steps", "GET", fmt.Sprintf("/v1/jobs/%d/steps/0", j2.ID), cred, "", 403},
			{"credential: another job's new step", "POST", fmt.Sprintf("/v1/jobs/%d/steps", j2.ID), cred, body, 403},
			{"credential of the other job", "POST", createPath, cred2, body, 403},
			{"credential: job list", "GET", "/v1/jobs", cred, "", 401},
			{"credential: the job itself", "GET", fmt.Sprintf("/v1/jobs/%d", j.ID), cred, "", 401},
			{"credential: step list", "GET", "/v1/steps", cred, "", 401},
			{"credential: cancel", "POST", "/v1/jobs/cancel", cred, fmt.Sprintf(`{"job_ids":["%d"]}`, j.ID), 401},
			{"credential of another CA", "POST", createPath, foreign, body, 401},
			{"tampered credential", "POST", createPath, cred[:len(cred)-3] + "abc", body, 401},
			{"no token", "POST", createPath, "", body, 401},
			{"another user's token", "POST", createPath, c.bob, body, 404},
			{"another user's token: get", "GET", stepPath, c.bob, "", 404},
			{"owner's token", "GET", stepPath, c.alice, "", 200},
			{"admin's token", "GET", stepPath, c.admin, "", 200},
			{"unknown step", "GET", fmt.Sprintf("/v1/jobs/%d/steps/99", j.ID), c.alice, "", 404},
			{"bad step id", "GET", fmt.Sprintf("/v1/jobs/%d/steps/x", j.ID), c.alice, "", 400},
			{"path and body disagree", "POST", createPath, cred, fmt.Sprintf(`{"job_id":%d,"argv":["true"]}`, j2.ID), 400},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var b []byte
				if tc.body != "" {
					b = []byte(tc.body)
				}
				code, msg := raw(t, withCred, tc.method, tc.path, tc.token, b)
				if code != tc.status {
					t.Errorf("%d %s, want %d", code, msg, tc.status)
				}
			})
		}
	})

	t.Run("agents run and report tasks", func(t *testing.T) {
		w := c.work(other)
		if len(w.Steps) == 0 || w.Steps[0].StepID != 0 || len(w.Steps[0].Tasks) != 4 {
			t.Fatalf("the other node's steps: %+v", w.Steps)
		}
		// srun waits for the step while the agents report.
		final := make(chan *api.JobStep, 1)
		go func() {
			idx := st.ModifyIndex
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				got, err := withCred.Step(ctx, j.ID, 0, idx, 10*time.Second)
				cancel()
				if err != nil || got.State.Terminal() {
					final <- got
					return
				}
				idx = got.ModifyIndex
			}
		}()
		refused := []struct {
			name   string
			agent  string
			rep    api.StepReport
			status int
		}{
			{"a task of another node", other, api.StepReport{JobID: j.ID, StepID: 0, Task: api.StepTask{Rank: 0}}, 409},
			{"as another node", other, api.StepReport{JobID: j.ID, StepID: 0, Node: batch, Task: api.StepTask{Rank: 0}}, 403},
			{"no such rank", batch, api.StepReport{JobID: j.ID, StepID: 0, Task: api.StepTask{Rank: 9}}, 400},
			{"no such step", batch, api.StepReport{JobID: j.ID, StepID: 9, Task: api.StepTask{Rank: 0}}, 404},
		}
		for _, tc := range refused {
			if err := c.agents[tc.agent].AgentStepReport(context.Background(), tc.rep); status(err) != tc.status {
				t.Errorf("%s: %v, want %d", tc.name, err, tc.status)
			}
		}
		for rank, node := range st.TaskNodes {
			code := 0
			if rank == 2 {
				code = 3
			}
			rep := api.StepReport{JobID: j.ID, StepID: 0, Task: api.StepTask{Rank: rank, ExitCode: code, Output: fmt.Sprintf("rank %d\n", rank)}}
			if err := c.agents[node].AgentStepReport(context.Background(), rep); err != nil {
				t.Fatalf("report rank %d: %v", rank, err)
			}
		}
		var got *api.JobStep
		select {
		case got = <-final:
		case <-time.After(20 * time.Second):
			t.Fatal("the step long poll did not end")
		}
		if got == nil || got.State != api.JobFailed || got.ExitCode != 3 || got.Tasks[1].Output != "rank 1\n" || !got.Tasks[3].Done {
			t.Fatalf("final step %+v", got)
		}
		for _, n := range j.Nodes {
			for _, s := range c.work(n).Steps {
				if s.StepID == 0 {
					t.Errorf("%s still has the ended step", n)
				}
			}
		}
	})

	t.Run("listing", func(t *testing.T) {
		var resp api.StepsResponse
		if err := c.client(c.alice).Do(context.Background(), "GET", fmt.Sprintf("/v1/steps?job=%d", j.ID), nil, &resp); err != nil {
			t.Fatal(err)
		}
		if len(resp.Steps) != 2 || resp.Steps[0].StepID != 0 || resp.Steps[0].Tasks[1].Output != "" || resp.Steps[0].ExitCode != 3 {
			t.Errorf("alice's steps %+v", resp.Steps)
		}
		if err := c.client(c.bob).Do(context.Background(), "GET", fmt.Sprintf("/v1/steps?job=%d", j.ID), nil, &resp); err != nil || len(resp.Steps) != 0 {
			t.Errorf("bob sees %d of alice's steps (%v)", len(resp.Steps), err)
		}
		if resp, err := c.client(c.admin).Steps(context.Background(), nil); err != nil || len(resp.Steps) != 2 {
			t.Errorf("admin lists %d steps (%v)", len(resp.Steps), err)
		}
	})

	t.Run("the job ends", func(t *testing.T) {
		// Step 1 (from the table above) still runs when the job ends.
		if err := c.agents[batch].AgentReport(context.Background(), api.JobReport{JobID: j.ID, Node: batch, State: api.JobCompleted, Attempt: j.Restarts}); err != nil {
			t.Fatal(err)
		}
		got, err := c.client(c.alice).Step(context.Background(), j.ID, 1, 0, 0)
		if err != nil || got.State != api.JobCancelled || got.EndTime.IsZero() {
			t.Fatalf("step of the ended job: %+v %v", got, err)
		}
		if _, err := withCred.CreateStep(context.Background(), api.StepCreateRequest{JobID: j.ID, Argv: []string{"true"}}); status(err) != 403 {
			t.Errorf("credential of an ended job: %v", err)
		}
		if _, err := c.client(c.alice).CreateStep(context.Background(), api.StepCreateRequest{JobID: j.ID, Argv: []string{"true"}}); status(err) != 409 {
			t.Errorf("new step in an ended job: %v", err)
		}
		if w := c.work(other); len(w.Steps) != 0 || len(w.Jobs) != 0 {
			t.Errorf("work after the job ended: %+v", w)
		}
	})
}

// The credential is a bearer token: it must not unlock anything through
// the agent routes either (they need an agent certificate).
func TestCredentialNotAnAgent(t *testing.T) {
	c := newStepCluster(t)
	j := c.running(c.alice, spec("one"))
	cred := c.work(j.Nodes[0]).Credentials[j.ID]
	conf, err := pki.ClientTLSConfig(c.caPEM)
	if err != nil {
		t.Fatal(err)
	}
	cl := api.NewClient(c.addrs(), cred, conf)
	for _, path := range []string{"/v1/agent/steps", "/v1/agent/work"} {
		if code, msg := raw(t, cl, "GET", path, cred, nil); code != http.StatusForbidden {
			t.Errorf("%s with a credential: %d %s", path, code, msg)
		}
	}
}

// A retried step create (same request id) gets the first step; steps are
// cancelled on their own, the job running on.
func TestStepRetryAndCancel(t *testing.T) {
	c := newStepCluster(t)
	sp := spec("mpi")
	sp.Nodes, sp.Tasks = 2, 2
	j := c.running(c.alice, sp)
	cred := c.work(j.Nodes[0]).Credentials[j.ID]
	j2 := c.running(c.alice, spec("second"))
	cred2 := c.work(j2.Nodes[0]).Credentials[j2.ID]
	withCred := c.client(cred)
	ctx := context.Background()

	req := api.StepCreateRequest{JobID: j.ID, Argv: []string{"sleep", "100"}, RequestID: "req-1"}
	st, err := withCred.CreateStep(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*api.Client{withCred, c.client(c.alice)} {
		again, err := cl.CreateStep(ctx, req)
		if err != nil || again.StepID != st.StepID || again.RequestID != "req-1" {
			t.Fatalf("retried create: %+v %v", again, err)
		}
	}
	if resp, err := c.client(c.alice).Steps(ctx, []uint64{j.ID}); err != nil || len(resp.Steps) != 1 {
		t.Fatalf("steps after a retried create: %+v %v", resp, err)
	}
	long := req
	long.RequestID = strings.Repeat("x", maxSubmit+1)
	if _, err := withCred.CreateStep(ctx, long); status(err) != 400 {
		t.Errorf("long request id: %v", err)
	}
	other, err := c.client(c.alice).CreateStep(ctx, api.StepCreateRequest{JobID: j.ID, Argv: []string{"true"}, Tasks: 1})
	if err != nil || other.StepID != 1 {
		t.Fatalf("second step: %+v %v", other, err)
	}

	cancelPath := func(job uint64, step string) string { return fmt.Sprintf("/v1/jobs/%d/steps/%s/cancel", job, step) }
	refused := []struct {
		name, path, token string
		status            int
	}{
		{"another user's token", cancelPath(j.ID, "0"), c.bob, 404},
		{"credential of another job", cancelPath(j.ID, "0"), cred2, 403},
		{"no token", cancelPath(j.ID, "0"), "", 401},
		{"unknown step", cancelPath(j.ID, "9"), c.alice, 404},
		{"bad step id", cancelPath(j.ID, "x"), c.alice, 400},
		{"unknown job", cancelPath(99999, "0"), c.alice, 404},
	}
	for _, tc := range refused {
		if code, msg := raw(t, withCred, "POST", tc.path, tc.token, nil); code != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, code, msg, tc.status)
		}
	}

	// srun waits for step 0 while it is cancelled.
	final := make(chan *api.JobStep, 1)
	go func() {
		idx := st.ModifyIndex
		for {
			pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			got, err := withCred.Step(pctx, j.ID, 0, idx, 10*time.Second)
			cancel()
			if err != nil || got.State.Terminal() {
				final <- got
				return
			}
			idx = got.ModifyIndex
		}
	}()
	got, err := withCred.CancelStep(ctx, j.ID, 0)
	if err != nil || !got.CancelRequested || got.State != api.JobRunning {
		t.Fatalf("cancel with the credential: %+v %v", got, err)
	}
	if _, err := c.client(c.alice).CancelStep(ctx, j.ID, 0); err != nil {
		t.Errorf("second cancel while the tasks stop: %v", err)
	}
	for _, n := range j.Nodes {
		for _, s := range c.work(n).Steps {
			if s.JobID == j.ID && s.StepID == 0 {
				t.Errorf("%s still lists the cancelled step: its tasks would not be stopped", n)
			}
		}
	}
	for rank, node := range st.TaskNodes {
		rep := api.StepReport{JobID: j.ID, StepID: 0, Task: api.StepTask{Rank: rank, ExitSignal: 15, Output: "bye\n"}}
		if err := c.agents[node].AgentStepReport(ctx, rep); err != nil {
			t.Fatalf("kill report of rank %d: %v", rank, err)
		}
	}
	select {
	case got = <-final:
	case <-time.After(20 * time.Second):
		t.Fatal("the step long poll did not end")
	}
	if got == nil || got.State != api.JobCancelled || got.ExitSignal != 15 || got.Tasks[1].Output != "bye\n" {
		t.Fatalf("cancelled step as srun sees it: %+v", got)
	}
	if _, err := withCred.CancelStep(ctx, j.ID, 0); status(err) != 409 {
		t.Errorf("cancel of an ended step: %v", err)
	}

	// An admin may cancel a user's step; the job runs on.
	if got, err := c.client(c.admin).CancelStep(ctx, j.ID, 1); err != nil || !got.CancelRequested {
		t.Errorf("admin's cancel: %+v %v", got, err)
	}
	var jj api.Job
	if err := c.client(c.alice).Do(ctx, "GET", fmt.Sprintf("/v1/jobs/%d", j.ID), nil, &jj); err != nil || jj.State != api.JobRunning || jj.CancelRequested {
		t.Errorf("job after its steps' cancel: %s cancel=%v %v", jj.State, jj.CancelRequested, err)
	}
	// The retried create of step 0 still answers step 0, ended.
	if again, err := withCred.CreateStep(ctx, req); err != nil || again.StepID != 0 || again.State != api.JobCancelled {
		t.Errorf("create retried after the step ended: %+v %v", again, err)
	}
}

// TestCancelSignals: a cancel takes TERM or KILL by name (any case, with
// or without SIG) or number; any other signal is refused by name.
func TestCancelSignals(t *testing.T) {
	for _, tc := range []struct {
		sig string
		ok  bool
	}{
		{"", true}, {"KILL", true}, {"sigterm", true}, {"SIGKILL", true}, {"9", true}, {"15", true}, {"term", true},
		{"USR1", false}, {"SIGHUP", false}, {"2", false}, {"bogus", false}, {"SIG", false},
	} {
		// No jobs and no filter: a signal that passes meets the next check.
		_, err := cancelTargets(nil, nil, &api.CancelRequest{Signal: tc.sig}, time.Now())
		if got := err != nil && strings.HasPrefix(err.Error(), "signal:"); got == tc.ok {
			t.Errorf("signal %q: %v", tc.sig, err)
		}
	}
}
