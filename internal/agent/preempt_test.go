package agent

import (
	"reflect"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/executor"
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
			local: []localView{{Key: k, CancelSent: true, CancelDeferred: true}}, work: []api.Job{preempted(running(1, 0), 30)}},
		{name: "a finished preempted job is left to its report",
			local: []localView{{Key: k, Finished: true}}, work: []api.Job{preempted(running(1, 0), 30)}},
		{name: "a user's cancel during the grace time cancels at once",
			local: []localView{{Key: k, CancelSent: true, CancelDeferred: true}}, work: []api.Job{cancelled(preempted(running(1, 0), 30))},
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

func TestPreemptCancelAt(t *testing.T) {
	tests := []struct {
		grace     int64
		killGrace time.Duration
		want      time.Time
	}{
		{grace: 0, killGrace: 10 * time.Second, want: preemptT0},
		{grace: 5, killGrace: 10 * time.Second, want: preemptT0},
		{grace: 10, killGrace: 10 * time.Second, want: preemptT0},
		// SIGTERM 50 s after preemption, SIGKILL when the 60 s grace ends.
		{grace: 60, killGrace: 10 * time.Second, want: preemptT0.Add(50 * time.Second)},
	}
	for _, tc := range tests {
		j := preempted(running(1, 0), tc.grace)
		if got := preemptCancelAt(&j, tc.killGrace); !got.Equal(tc.want) {
			t.Errorf("grace %d s, kill grace %s: cancel at %v, want %v", tc.grace, tc.killGrace, got, tc.want)
		}
	}
}

func TestDecideWatchDeferredCancel(t *testing.T) {
	now := preemptT0.Add(time.Minute)
	running := executor.Status{Running: true, ShimPID: 10}
	tests := []struct {
		name     string
		cancelAt time.Time
		sent     bool
		want     bool
	}{
		{name: "grace time not over", cancelAt: now.Add(time.Second)},
		{name: "grace time over", cancelAt: now, want: true},
		{name: "plain cancel", want: true},
		{name: "already sent", cancelAt: now.Add(-time.Second), sent: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lj := localJob{key: jobKey{1, 0}, meta: jobMeta{JobID: 1, Launched: true},
				cancelWanted: true, cancelAt: tc.cancelAt, cancelSent: tc.sent, startReported: true, lastUsage: now}
			if got := decideWatch(&lj, running, nil, now); got.cancel != tc.want {
				t.Errorf("cancel = %v, want %v", got.cancel, tc.want)
			}
		})
	}
}
