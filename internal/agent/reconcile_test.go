package agent

import (
	"reflect"
	"testing"

	"github.com/stockade-hpc/stockade/api"
)

func running(id uint64, restarts int, nodes ...string) api.Job {
	if len(nodes) == 0 {
		nodes = []string{"n1"}
	}
	return api.Job{ID: id, Restarts: restarts, State: api.JobRunning, Nodes: nodes, ArrayTaskID: -1}
}

func cancelled(j api.Job) api.Job { j.CancelRequested = true; return j }

type act struct {
	Kind actionKind
	Key  jobKey
}

func TestReconcile(t *testing.T) {
	k := func(id uint64, att int) jobKey { return jobKey{id, att} }
	tests := []struct {
		name     string
		local    []localView
		finished map[jobKey]bool
		work     []api.Job
		want     []act
		forget   []jobKey
	}{
		{
			name: "nothing to do",
		},
		{
			name: "new job is launched",
			work: []api.Job{running(1, 0)},
			want: []act{{actLaunch, k(1, 0)}},
		},
		{
			name:  "duplicate delivery of a launched job is ignored",
			local: []localView{{Key: k(1, 0)}},
			work:  []api.Job{running(1, 0), running(1, 0)},
		},
		{
			name: "the same job twice in one list launches once, newest attempt",
			work: []api.Job{running(1, 0), running(1, 1)},
			want: []act{{actLaunch, k(1, 1)}},
		},
		{
			name: "pending job is not launched",
			work: []api.Job{{ID: 1, State: api.JobPending, Nodes: []string{"n1"}}},
		},
		{
			name: "multi-node job whose batch host is another node is only held",
			work: []api.Job{running(1, 0, "n0", "n1")},
		},
		{
			name: "multi-node job with this node first runs here",
			work: []api.Job{running(1, 0, "n1", "n2")},
			want: []act{{actLaunch, k(1, 0)}},
		},
		{
			name:  "cancel request stops a running job",
			local: []localView{{Key: k(1, 0)}},
			work:  []api.Job{cancelled(running(1, 0))},
			want:  []act{{actCancel, k(1, 0)}},
		},
		{
			name:  "cancel is not sent twice",
			local: []localView{{Key: k(1, 0), CancelSent: true}},
			work:  []api.Job{cancelled(running(1, 0))},
		},
		{
			name:  "a finished job is not cancelled",
			local: []localView{{Key: k(1, 0), Finished: true}},
			work:  []api.Job{cancelled(running(1, 0))},
		},
		{
			name: "job cancelled before it started here is ended without a launch",
			work: []api.Job{cancelled(running(1, 0))},
			want: []act{{actCancelUnstarted, k(1, 0)}},
		},
		{
			name:  "job gone from the list is abandoned",
			local: []localView{{Key: k(1, 0)}},
			want:  []act{{actAbandon, k(1, 0)}},
		},
		{
			name:  "requeued job back as pending is abandoned",
			local: []localView{{Key: k(1, 0)}},
			work:  []api.Job{{ID: 1, State: api.JobPending}},
			want:  []act{{actAbandon, k(1, 0)}},
		},
		{
			name:  "requeued and placed here again: old attempt abandoned, new one launched",
			local: []localView{{Key: k(1, 0)}},
			work:  []api.Job{running(1, 1)},
			want:  []act{{actAbandon, k(1, 0)}, {actLaunch, k(1, 1)}},
		},
		{
			name:  "requeued job now on another node",
			local: []localView{{Key: k(1, 0)}},
			work:  []api.Job{running(1, 1, "n2")},
			want:  []act{{actAbandon, k(1, 0)}},
		},
		{
			name:  "finished job whose report was accepted elsewhere is abandoned (dropped)",
			local: []localView{{Key: k(1, 0), Finished: true}},
			want:  []act{{actAbandon, k(1, 0)}},
		},
		{
			name:  "already abandoned job is left to the watcher",
			local: []localView{{Key: k(1, 0), Abandoned: true}},
		},
		{
			name:  "local attempt newer than the list is kept",
			local: []localView{{Key: k(1, 2)}},
			work:  []api.Job{running(1, 1)},
		},
		{
			name:     "reported attempt in a stale list is not relaunched",
			finished: map[jobKey]bool{k(1, 0): true},
			work:     []api.Job{running(1, 0)},
		},
		{
			name:     "reported attempt gone from the list is forgotten",
			finished: map[jobKey]bool{k(1, 0): true, k(2, 0): true},
			work:     []api.Job{running(2, 0)},
			forget:   []jobKey{k(1, 0)},
		},
		{
			name:     "reported attempt whose job was requeued here launches the new attempt",
			finished: map[jobKey]bool{k(1, 0): true},
			work:     []api.Job{running(1, 1)},
			want:     []act{{actLaunch, k(1, 1)}},
			forget:   []jobKey{k(1, 0)},
		},
		{
			name:  "mixed list, actions ordered: abandons and cancels before launches",
			local: []localView{{Key: k(5, 0)}, {Key: k(2, 0)}, {Key: k(3, 0)}},
			work:  []api.Job{running(4, 0), cancelled(running(3, 0)), running(2, 0), running(1, 0)},
			want:  []act{{actCancel, k(3, 0)}, {actAbandon, k(5, 0)}, {actLaunch, k(1, 0)}, {actLaunch, k(4, 0)}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := reconcile("n1", tc.local, tc.finished, tc.work)
			var got []act
			for _, a := range p.Actions {
				got = append(got, act{a.Kind, a.Key})
				if (a.Kind == actLaunch || a.Kind == actCancelUnstarted) && (a.Job == nil || a.Job.ID != a.Key.ID) {
					t.Errorf("%s %v carries job %+v", a.Kind, a.Key, a.Job)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("actions\n got %v\nwant %v", got, tc.want)
			}
			if !reflect.DeepEqual(p.Forget, tc.forget) {
				t.Errorf("forget %v, want %v", p.Forget, tc.forget)
			}
		})
	}
}

func TestBatchHost(t *testing.T) {
	tests := []struct {
		nodes []string
		want  bool
	}{
		{nil, true},
		{[]string{"n1"}, true},
		{[]string{"n1", "n2"}, true},
		{[]string{"n0", "n1"}, false},
		{[]string{"n2"}, false},
	}
	for _, tc := range tests {
		if got := batchHost(&api.Job{Nodes: tc.nodes}, "n1"); got != tc.want {
			t.Errorf("batchHost(%v) = %v, want %v", tc.nodes, got, tc.want)
		}
	}
}
