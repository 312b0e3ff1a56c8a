package agent

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/executor"
)

func TestDecideWatch(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	done := &executor.Result{State: api.JobCompleted, Start: now.Add(-time.Minute), End: now}
	launched := func(mod func(*localJob)) localJob {
		lj := localJob{key: jobKey{1, 0}, meta: jobMeta{JobID: 1, Launched: true}}
		if mod != nil {
			mod(&lj)
		}
		return lj
	}
	running := executor.Status{Running: true, ShimPID: 10}
	ioErr := errors.New("read result.json: bad json")
	tests := []struct {
		name string
		job  localJob
		st   executor.Status
		err  error
		want watchPlan
	}{
		{
			name: "reported job: only the dir is left",
			job:  launched(func(l *localJob) { l.reported = true }),
			want: watchPlan{remove: true},
		},
		{
			name: "fresh launch: first progress report",
			job:  launched(nil),
			st:   running,
			want: watchPlan{running: true, progress: true},
		},
		{
			name: "usage reported recently: nothing to send",
			job:  launched(func(l *localJob) { l.startReported, l.lastUsage = true, now.Add(-10*time.Second) }),
			st:   running,
			want: watchPlan{running: true},
		},
		{
			name: "usage due",
			job:  launched(func(l *localJob) { l.startReported, l.lastUsage = true, now.Add(-usageEvery) }),
			st:   running,
			want: watchPlan{running: true, progress: true},
		},
		{
			name: "progress report backing off",
			job:  launched(func(l *localJob) { l.nextReport = now.Add(time.Second) }),
			st:   running,
			want: watchPlan{running: true},
		},
		{
			name: "cancel wanted",
			job:  launched(func(l *localJob) { l.cancelWanted, l.startReported, l.lastUsage = true, true, now }),
			st:   running,
			want: watchPlan{running: true, cancel: true},
		},
		{
			name: "cancel already sent",
			job:  launched(func(l *localJob) { l.cancelWanted, l.cancelSent, l.startReported, l.lastUsage = true, true, true, now }),
			st:   running,
			want: watchPlan{running: true},
		},
		{
			name: "abandoned running job is stopped and not reported",
			job:  launched(func(l *localJob) { l.meta.Abandoned = true }),
			st:   running,
			want: watchPlan{running: true, cancel: true},
		},
		{
			name: "ended job is reported",
			job:  launched(nil),
			st:   executor.Status{Result: done},
			want: watchPlan{end: done},
		},
		{
			name: "ended job waits for the report backoff",
			job:  launched(func(l *localJob) { l.nextReport = now.Add(time.Second) }),
			st:   executor.Status{Result: done},
			want: watchPlan{},
		},
		{
			name: "ended abandoned job is removed without a report",
			job:  launched(func(l *localJob) { l.meta.Abandoned = true }),
			st:   executor.Status{Result: done},
			want: watchPlan{remove: true},
		},
		{
			name: "agent-decided outcome is reported without inspecting",
			job: launched(func(l *localJob) {
				l.meta.Launched = false
				l.meta.Outcome = &outcome{State: api.JobCancelled, Reason: "cancelled before it started", At: now}
			}),
			want: watchPlan{end: &executor.Result{State: api.JobCancelled, Start: now, End: now, Reason: "cancelled before it started"}},
		},
		{
			name: "shim running for a launch the agent did not see finish is adopted",
			job:  launched(func(l *localJob) { l.meta.Launched = false }),
			st:   running,
			want: watchPlan{running: true, adopt: true, progress: true},
		},
		{
			name: "interrupted launch with nothing running is dropped for relaunch",
			job:  launched(func(l *localJob) { l.meta.Launched = false }),
			want: watchPlan{remove: true, relaunch: true},
		},
		{
			name: "interrupted launch with an unreadable dir is dropped for relaunch",
			job:  launched(func(l *localJob) { l.meta.Launched = false }),
			err:  ioErr,
			want: watchPlan{remove: true, relaunch: true},
		},
		{
			name: "interrupted launch whose shim failed reports the failure",
			job:  launched(func(l *localJob) { l.meta.Launched = false }),
			st:   executor.Status{Result: done},
			want: watchPlan{end: done},
		},
		{
			name: "shim gone without a result: counted first",
			job:  launched(func(l *localJob) { l.missing = missingLimit - 2 }),
			want: watchPlan{countMissing: true},
		},
		{
			name: "shim gone without a result: lost at the limit",
			job:  launched(func(l *localJob) { l.missing = missingLimit - 1 }),
			want: watchPlan{lost: "the job's shim ended without recording a result (node reboot or shim killed)"},
		},
		{
			name: "inspect error counted",
			job:  launched(nil),
			err:  ioErr,
			want: watchPlan{countInspectErr: true},
		},
		{
			name: "inspect errors end the job at the limit",
			job:  launched(func(l *localJob) { l.inspectErrs = inspectErrLimit - 1 }),
			err:  ioErr,
			want: watchPlan{lost: "the agent cannot read the job's state: " + ioErr.Error()},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := decideWatch(&tc.job, tc.st, tc.err, now)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("plan\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
