package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/executor"
	"github.com/stockade-hpc/stockade/internal/testenv"
)

var preemptT0 = time.Unix(1_700_000_000, 0)

func preempted(j api.Job, grace int64) api.Job {
	j.PreemptedAt, j.GraceTimeSec, j.PreemptMode = preemptT0, grace, api.PreemptRequeue
	return j
}

func TestReconcilePreemption(t *testing.T) {
	k := jobKey{1, 0}
	tests := []struct {
		name  string
		local []localView
		work  []api.Job
		want  []act
	}{
		{name: "preempted job is stopped",
			local: []localView{{Key: k}}, work: []api.Job{preempted(running(1, 0), 30)},
			want: []act{{actPreempt, k}}},
		{name: "preemption is not repeated",
			local: []localView{{Key: k, CancelSent: true, PreemptStop: true}}, work: []api.Job{preempted(running(1, 0), 30)}},
		{name: "a finished preempted job is left to its report",
			local: []localView{{Key: k, Finished: true}}, work: []api.Job{preempted(running(1, 0), 30)}},
		{name: "a user's cancel during the grace time cancels at once",
			local: []localView{{Key: k, CancelSent: true, PreemptStop: true}}, work: []api.Job{cancelled(preempted(running(1, 0), 30))},
			want: []act{{actCancel, k}}},
		{name: "a cancel already sent is not repeated",
			local: []localView{{Key: k, CancelSent: true}}, work: []api.Job{cancelled(preempted(running(1, 0), 30))}},
		{name: "preempted before it started here",
			work: []api.Job{preempted(running(1, 0), 30)},
			want: []act{{actCancelUnstarted, k}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := reconcile("n1", tc.local, nil, tc.work)
			var got []act
			for _, a := range p.Actions {
				got = append(got, act{a.Kind, a.Key})
				if a.Kind == actPreempt && (a.Job == nil || a.Job.ID != a.Key.ID) {
					t.Errorf("preempt %v carries job %+v", a.Key, a.Job)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("actions\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestPreemptStopBy(t *testing.T) {
	tests := []struct {
		name  string
		grace int64
		now   time.Time
		want  time.Time
	}{
		{name: "no grace time: a plain cancel", grace: 0, now: preemptT0},
		{name: "grace time from the preemption", grace: 60, now: preemptT0, want: preemptT0.Add(time.Minute)},
		{name: "learned late: the deadline stays", grace: 60, now: preemptT0.Add(20 * time.Second), want: preemptT0.Add(time.Minute)},
		{name: "learned after the grace time", grace: 60, now: preemptT0.Add(2 * time.Minute), want: preemptT0.Add(time.Minute)},
		{name: "a clock behind gives no more than the grace", grace: 60, now: preemptT0.Add(-time.Hour),
			want: preemptT0.Add(-time.Hour + time.Minute)},
	}
	for _, tc := range tests {
		j := preempted(running(1, 0), tc.grace)
		if got := preemptStopBy(&j, tc.now); !got.Equal(tc.want) {
			t.Errorf("%s: kill by %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPreemptGrace(t *testing.T) {
	now := preemptT0.Add(20 * time.Second)
	by := preemptT0.Add(time.Minute)
	tests := []struct {
		name      string
		lj        localJob
		want      time.Duration
		wantGrace bool
	}{
		{name: "plain cancel", lj: localJob{cancelWanted: true}},
		{name: "what is left of the grace time", lj: localJob{cancelWanted: true, stopBy: by}, want: 40 * time.Second, wantGrace: true},
		{name: "grace time over: SIGKILL at once", lj: localJob{cancelWanted: true, stopBy: now.Add(-time.Second)}, wantGrace: true},
		{name: "abandoned: plain cancel", lj: localJob{cancelWanted: true, stopBy: by, meta: jobMeta{Abandoned: true}}},
	}
	for _, tc := range tests {
		got, ok := preemptGrace(&tc.lj, now)
		if got != tc.want || ok != tc.wantGrace {
			t.Errorf("%s: grace %s %v, want %s %v", tc.name, got, ok, tc.want, tc.wantGrace)
		}
	}
}

// The stop of a preempted job is sent at once: the executor keeps the
// job for its grace time.
func TestDecideWatchPreemptStop(t *testing.T) {
	now := preemptT0.Add(time.Second)
	running := executor.Status{Running: true, ShimPID: 10}
	for _, tc := range []struct {
		name string
		sent bool
		want bool
	}{{"sent at once", false, true}, {"not repeated", true, false}} {
		lj := localJob{key: jobKey{1, 0}, meta: jobMeta{JobID: 1, Launched: true}, cancelWanted: true,
			stopBy: preemptT0.Add(time.Minute), cancelSent: tc.sent, startReported: true, lastUsage: now}
		if got := decideWatch(&lj, running, nil, now); got.cancel != tc.want {
			t.Errorf("%s: cancel = %v, want %v", tc.name, got.cancel, tc.want)
		}
	}
}

// A user's cancel during the grace time is sent again, plain.
func TestApplyCancelDuringGrace(t *testing.T) {
	a := &agent{opts: Options{Name: "n1"}, log: testLogger(t), jobs: map[jobKey]*localJob{},
		finished: map[jobKey]bool{}, kick: make(chan struct{}, 1)}
	k := jobKey{1, 0}
	lj := &localJob{key: k, meta: jobMeta{JobID: 1, Launched: true}}
	a.jobs[k] = lj
	j := preempted(running(1, 0), 30)
	j.PreemptedAt = time.Now()
	a.apply([]api.Job{j})
	if !lj.cancelWanted || lj.stopBy.Sub(j.PreemptedAt) != 30*time.Second {
		t.Fatalf("after the preemption: cancel %v, kill by %v", lj.cancelWanted, lj.stopBy)
	}
	lj.cancelSent = true
	a.apply([]api.Job{j})
	if !lj.cancelSent {
		t.Fatal("the preemption's stop was sent again")
	}
	a.apply([]api.Job{cancelled(j)})
	if !lj.cancelWanted || lj.cancelSent || !lj.stopBy.IsZero() {
		t.Fatalf("after the cancel: wanted %v sent %v kill by %v, want a plain cancel to send", lj.cancelWanted, lj.cancelSent, lj.stopBy)
	}
}

// TestPreemptedJobGrace runs preempted jobs that trap SIGTERM through the
// agent and the executor: the job gets SIGTERM at once and SIGKILL when
// its grace time ends, whatever the kill grace; without a grace time it is
// cancelled as scancel does it; a cancel during the grace time cuts it to
// the kill grace.
func TestPreemptedJobGrace(t *testing.T) {
	testenv.RequireRoot(t)
	base, err := os.MkdirTemp("", "stockade-agent-preempt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// The job's user must reach its output below base.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(base, "state")
	out := filepath.Join(base, "out")
	for _, d := range []string{filepath.Join(state, jobsSubdir), out} {
		if err := os.MkdirAll(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	// The controllers take every report and have no steps.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) }))
	t.Cleanup(srv.Close)
	parent := "/stockade-test/agent-preempt-" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() { removeCgroupDirs(cgroupRoot, parent) })

	const nobody = 65534
	const script = "#!/bin/sh\ntrap 'echo TERM' TERM\necho started\nwhile :; do sleep 0.1; done\n"
	tests := []struct {
		name      string
		grace     int64
		killGrace time.Duration
		cancel    bool // the user cancels once the job saw SIGTERM
		want      time.Duration
	}{
		{name: "grace time shorter than the kill grace", grace: 3, killGrace: time.Minute, want: 3 * time.Second},
		{name: "grace time longer than the kill grace", grace: 4, killGrace: time.Second, want: 4 * time.Second},
		{name: "no grace time: killed as scancel does", grace: 0, killGrace: 2 * time.Second, want: 2 * time.Second},
		{name: "a cancel cuts the grace time short", grace: 60, killGrace: 2 * time.Second, cancel: true, want: 2 * time.Second},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &agent{
				opts: Options{Name: "node1", Servers: []string{strings.TrimPrefix(srv.URL, "https://")}, StateDir: state,
					KillGrace: tc.killGrace, CgroupParent: parent},
				log: testLogger(t), http: srv.Client(), jobs: map[jobKey]*localJob{}, finished: map[jobKey]bool{},
				registered: make(chan struct{}), kick: make(chan struct{}, 1), steps: newStepRunner(),
			}
			output := filepath.Join(out, strconv.Itoa(i)+".out")
			j := api.Job{ID: uint64(os.Getpid())*10 + uint64(i), User: "nobody", UID: nobody, GID: nobody,
				State: api.JobRunning, Nodes: []string{"node1"}, AllocCPUs: 1, AllocMemoryMB: 128, StartTime: time.Now(),
				Spec: api.JobSpec{Script: script, WorkDir: "/", Output: output}, ArrayTaskID: -1}
			a.apply([]api.Job{j})
			a.launches.Wait()
			k := jobKey{j.ID, 0}
			lj := a.jobs[k]
			if lj == nil || !lj.meta.Launched {
				t.Fatalf("job not launched: %+v", lj)
			}
			t.Cleanup(func() {
				executor.Cancel(lj.dir)
				for n := 0; n < 100; n++ {
					if st, err := executor.Inspect(lj.dir); err != nil || !st.Running {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				executor.Remove(lj.dir)
			})
			waitOutput(t, output, "started\n")

			j.PreemptedAt, j.GraceTimeSec, j.PreemptMode = time.Now(), tc.grace, api.PreemptRequeue
			a.apply([]api.Job{j})
			t0 := time.Now()
			a.watchOnce(context.Background(), a.client()) // sends the stop
			if tc.grace > 0 {
				waitOutput(t, output, "TERM\n")
			}
			if tc.cancel {
				j.CancelRequested = true
				a.apply([]api.Job{j})
				t0 = time.Now()
				a.watchOnce(context.Background(), a.client())
			}
			var r *executor.Result
			for deadline := t0.Add(tc.want + 15*time.Second); r == nil && time.Now().Before(deadline); {
				st, err := executor.Inspect(lj.dir)
				if err != nil {
					t.Fatal(err)
				}
				r = st.Result
				time.Sleep(20 * time.Millisecond)
			}
			if r == nil {
				t.Fatalf("the job still runs %s after its stop", tc.want+15*time.Second)
			}
			if r.State != api.JobCancelled || r.ExitSignal != int(syscall.SIGKILL) {
				t.Errorf("result %+v, want CANCELLED by SIGKILL", r)
			}
			if d := r.End.Sub(t0); d < tc.want-100*time.Millisecond || d > tc.want+2*time.Second {
				t.Errorf("killed %s after the stop, want %s", d, tc.want)
			}
		})
	}
}

// waitOutput waits until a job's output holds want.
func waitOutput(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job output %q, want %q in it", b, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
