package cli

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/stockade-hpc/stockade/api"
)

func TestParseScancelIDs(t *testing.T) {
	tests := []struct {
		args      []string
		wantJobs  []string
		wantSteps []string // text job.step
		err       string
	}{
		{args: []string{"123"}, wantJobs: []string{"123"}},
		{args: []string{"123.0"}, wantSteps: []string{"123.0"}},
		{args: []string{"123.0,124", "125_3.2"}, wantJobs: []string{"124"}, wantSteps: []string{"123.0", "125_3.2"}},
		{args: []string{"125_[1-2].7"}, wantSteps: []string{"125_[1-2].7"}},
		{args: []string{"123.batch"}, err: "Invalid job id: 123.batch"},
		{args: []string{"123.-1"}, err: "Invalid job id: 123.-1"},
		{args: []string{"123.01"}, err: "Invalid job id: 123.01"},
		{args: []string{"123."}, err: "Invalid job id: 123."},
		{args: []string{".0"}, err: "Invalid job id: .0"},
		{args: []string{"x.0"}, err: "Invalid job id: x.0"},
		{args: []string{"123.0.1"}, err: "Invalid job id: 123.0.1"},
	}
	for _, tc := range tests {
		jobs, steps, err := parseScancelIDs(tc.args)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		var gotJobs, gotSteps []string
		for _, j := range jobs {
			gotJobs = append(gotJobs, j.text)
		}
		for _, s := range steps {
			gotSteps = append(gotSteps, s.text)
		}
		if !reflect.DeepEqual(gotJobs, tc.wantJobs) || !reflect.DeepEqual(gotSteps, tc.wantSteps) {
			t.Errorf("%v: jobs %v steps %v, want %v %v", tc.args, gotJobs, gotSteps, tc.wantJobs, tc.wantSteps)
		}
	}
	_, steps, _ := parseScancelIDs([]string{"125_[1-2].7"})
	if s := steps[0]; s.job.id != 125 || !reflect.DeepEqual(s.job.tasks, []int{1, 2}) || s.step != 7 {
		t.Errorf("parsed %+v", s)
	}
}

// stepCancelAPI answers step cancels and passes the rest to fakeAPI.
type stepCancelAPI struct {
	base *fakeAPI
	// answers maps a cancel path to its status (200 when missing).
	answers map[string]int
	auth    string // the token expected
	mu      sync.Mutex
	cancels []string
}

func (f *stepCancelAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" || !strings.HasSuffix(r.URL.Path, "/cancel") || !strings.Contains(r.URL.Path, "/steps/") {
		f.base.ServeHTTP(w, r)
		return
	}
	f.mu.Lock()
	f.cancels = append(f.cancels, r.URL.Path)
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+f.auth {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(api.Error{Error: "unauthorized"})
		return
	}
	if code := f.answers[r.URL.Path]; code != 0 && code != 200 {
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(api.Error{Error: "step refused"})
		return
	}
	json.NewEncoder(w).Encode(api.JobStep{State: api.JobRunning, CancelRequested: true})
}

func TestScancelSteps(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		answers map[string]int
		code    int
		stderr  string
		cancels []string
		noJobs  bool // no job cancel request expected
	}{
		{name: "one step", args: []string{"scancel", "101.0"}, cancels: []string{"/v1/jobs/101/steps/0/cancel"}, noJobs: true},
		{name: "step of an array task", args: []string{"scancel", "103_1.2"}, cancels: []string{"/v1/jobs/103/steps/2/cancel"}, noJobs: true},
		{name: "a plain id is that job, not the array's tasks", args: []string{"scancel", "-v", "103.1"},
			cancels: []string{"/v1/jobs/103/steps/1/cancel"}, stderr: "scancel: Terminating step 103_1.1\n", noJobs: true},
		{name: "steps and jobs", args: []string{"scancel", "101.3,111"}, cancels: []string{"/v1/jobs/101/steps/3/cancel"}},
		{name: "unknown job", args: []string{"scancel", "999.0"}, code: 1,
			stderr: "scancel: error: Kill job error on job step id 999.0: Invalid job id specified\n", noJobs: true},
		{name: "pending job", args: []string{"scancel", "103_2.0"}, code: 1,
			stderr: "scancel: error: Kill job error on job step id 103_2.0: Job is pending execution\n", noJobs: true},
		{name: "ended job", args: []string{"scancel", "106.0"}, code: 1,
			stderr: "scancel: error: Kill job error on job step id 106.0: Job/step already completing or completed\n", noJobs: true},
		{name: "ended job quietly", args: []string{"scancel", "-Q", "106.0"}, noJobs: true},
		{name: "unknown step", args: []string{"scancel", "101.9"}, answers: map[string]int{"/v1/jobs/101/steps/9/cancel": 404}, code: 1,
			cancels: []string{"/v1/jobs/101/steps/9/cancel"},
			stderr:  "scancel: error: Kill job error on job step id 101.9: Invalid job id specified\n", noJobs: true},
		{name: "ended step", args: []string{"scancel", "101.1"}, answers: map[string]int{"/v1/jobs/101/steps/1/cancel": 409}, code: 1,
			cancels: []string{"/v1/jobs/101/steps/1/cancel"},
			stderr:  "scancel: error: Kill job error on job step id 101.1: Job/step already completing or completed\n", noJobs: true},
		{name: "ended step quietly", args: []string{"scancel", "-Q", "101.1"}, answers: map[string]int{"/v1/jobs/101/steps/1/cancel": 409},
			cancels: []string{"/v1/jobs/101/steps/1/cancel"}, noJobs: true},
		{name: "filters narrow the steps named", args: []string{"scancel", "-u", "carol", "101.0,111.0"},
			cancels: []string{"/v1/jobs/111/steps/0/cancel"}, noJobs: true},
		{name: "signal", args: []string{"scancel", "-s", "USR1", "101.0"}, code: 1,
			stderr: "scancel: error: --signal: job steps (101.0) cannot be signalled here; cancel the step, or signal the job\n", noJobs: true},
		{name: "bad step", args: []string{"scancel", "101.x"}, code: 1, stderr: "scancel: error: Invalid job id: 101.x\n", noJobs: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := &fakeAPI{}
			f := &stepCancelAPI{base: base, answers: tc.answers, auth: "tok"}
			e, _, stderr := testEnv(t, base, nil, nil)
			e.client = serveClient(t, f, "tok")
			code := run(context.Background(), e, tc.args)
			if code != tc.code || stderr.String() != tc.stderr {
				t.Errorf("exit %d, stderr %q; want %d %q", code, stderr, tc.code, tc.stderr)
			}
			if !reflect.DeepEqual(f.cancels, tc.cancels) {
				t.Errorf("step cancels %v, want %v", f.cancels, tc.cancels)
			}
			if got := base.last("POST", "/v1/jobs/cancel"); tc.noJobs && got != nil {
				t.Errorf("jobs cancelled: %s", got.body)
			} else if !tc.noJobs && got == nil {
				t.Errorf("no job cancel")
			}
		})
	}
}

// serveClient serves f over TLS and returns the env's client function.
func serveClient(t *testing.T, f http.Handler, token string) func() (*api.Client, error) {
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	return func() (*api.Client, error) {
		return &api.Client{Servers: []string{strings.TrimPrefix(srv.URL, "https://")}, Token: token, HTTP: srv.Client()}, nil
	}
}

// Inside a batch job without a user token, scancel cancels the job's own
// steps with the job credential.
func TestScancelStepWithCredential(t *testing.T) {
	f := &stepCancelAPI{base: &fakeAPI{}, auth: "stkjob.p.s"}
	inJob := map[string]string{"SLURM_JOB_ID": "42", credentialEnv: "stkjob.p.s", "STOCKADE_SERVERS": "ctl:7701", caPEMEnv: "PEM"}
	e, _, stderr := srunEnv(t, f, inJob)
	e.client = func() (*api.Client, error) { return nil, errors.New("no token configured") }
	e.username = func() (string, error) { return "alice", nil }
	if code := run(context.Background(), e, []string{"scancel", "42.0"}); code != 0 || stderr.String() != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if !reflect.DeepEqual(f.cancels, []string{"/v1/jobs/42/steps/0/cancel"}) {
		t.Errorf("cancels %v", f.cancels)
	}
	// Jobs, filters and array tasks need the user's token.
	for _, args := range [][]string{{"scancel", "42"}, {"scancel", "-u", "alice", "42.0"}, {"scancel", "42_1.0"}} {
		stderr.Reset()
		if code := run(context.Background(), e, args); code != 1 || !strings.Contains(stderr.String(), "no token configured") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}
