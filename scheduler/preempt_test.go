package scheduler

import (
	"maps"
	"reflect"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

func TestPreemption(t *testing.T) {
	h := time.Hour
	qos := []*api.QOS{
		{Name: "scavenger", Priority: 0, PreemptMode: api.PreemptCancel},
		{Name: "low", Priority: 10, PreemptMode: api.PreemptRequeue, GraceTimeSec: 60},
		{Name: "mid", Priority: 50, PreemptMode: api.PreemptRequeue},
		{Name: "normal", Priority: 20, PreemptMode: api.PreemptOff},
		{Name: "high", Priority: 100, Preempt: []string{"scavenger", "low", "normal", "high"}, PreemptMode: api.PreemptRequeue},
	}
	// victim runs on node with cpus there, in a QoS with a job priority,
	// started ago before now.
	victim := func(id uint64, q string, p int64, ago time.Duration, cpus int, node string) *api.Job {
		j := with(run(id, cpus, -ago, 0, node), inQOS(q), prio(p))
		return j
	}
	two := []*api.Node{upNode("n1", 2, 2000, 0)}
	tests := []struct {
		name        string
		nodes       []*api.Node
		jobs        []*api.Job
		want        []Preemption
		wantReasons map[uint64]string
		wantStarts  map[uint64]time.Duration
	}{
		{
			name:  "lowest QoS priority first",
			nodes: two,
			jobs: []*api.Job{
				victim(100, "low", 1, h, 1, "n1"), victim(101, "scavenger", 1000, h, 1, "n1"),
				with(pend(1, "p"), inQOS("high")),
			},
			want:        []Preemption{{JobID: 101, Mode: api.PreemptCancel, For: 1}},
			wantReasons: map[uint64]string{1: api.ReasonResources},
			wantStarts:  map[uint64]time.Duration{1: 0},
		},
		{
			name:  "then lowest job priority",
			nodes: two,
			jobs: []*api.Job{
				victim(100, "low", 500, h, 1, "n1"), victim(101, "low", 100, 2*h, 1, "n1"),
				with(pend(1, "p"), inQOS("high")),
			},
			want:        []Preemption{{JobID: 101, Mode: api.PreemptRequeue, GraceSec: 60, For: 1}},
			wantReasons: map[uint64]string{1: api.ReasonResources},
			wantStarts:  map[uint64]time.Duration{1: time.Minute},
		},
		{
			name:  "then the youngest",
			nodes: two,
			jobs: []*api.Job{
				victim(100, "low", 100, h, 1, "n1"), victim(101, "low", 100, 2*h, 1, "n1"),
				with(pend(1, "p"), inQOS("high")),
			},
			want:        []Preemption{{JobID: 100, Mode: api.PreemptRequeue, GraceSec: 60, For: 1}},
			wantReasons: map[uint64]string{1: api.ReasonResources},
			wantStarts:  map[uint64]time.Duration{1: time.Minute},
		},
		{
			name:  "as many victims as needed, in order",
			nodes: []*api.Node{upNode("n1", 4, 4000, 0)},
			jobs: []*api.Job{
				victim(100, "low", 4, h, 1, "n1"), victim(101, "low", 1, h, 1, "n1"),
				victim(102, "low", 3, h, 1, "n1"), victim(103, "low", 2, h, 1, "n1"),
				with(pend(1, "p"), inQOS("high"), cpus(3)),
			},
			want: []Preemption{
				{JobID: 101, Mode: api.PreemptRequeue, GraceSec: 60, For: 1},
				{JobID: 103, Mode: api.PreemptRequeue, GraceSec: 60, For: 1},
				{JobID: 102, Mode: api.PreemptRequeue, GraceSec: 60, For: 1},
			},
			wantReasons: map[uint64]string{1: api.ReasonResources},
			wantStarts:  map[uint64]time.Duration{1: time.Minute},
		},
		{
			name:  "victims the chosen node does not need are spared",
			nodes: []*api.Node{upNode("n1", 2, 2000, 0), upNode("n2", 2, 2000, 0)},
			jobs: []*api.Job{
				victim(100, "scavenger", 1, h, 1, "n1"), victim(101, "scavenger", 2, h, 2, "n2"),
				victim(102, "low", 1, h, 1, "n1"),
				with(pend(1, "p"), inQOS("high"), cpus(2)),
			},
			want:        []Preemption{{JobID: 101, Mode: api.PreemptCancel, For: 1}},
			wantReasons: map[uint64]string{1: api.ReasonResources},
			wantStarts:  map[uint64]time.Duration{1: 0},
		},
		{
			name:  "never the same QoS, an unlisted one or one that is not preemptable",
			nodes: two,
			jobs: []*api.Job{
				victim(100, "high", 1, h, 1, "n1"), victim(101, "mid", 1, h, 1, "n1"),
				victim(102, "normal", 1, h, 1, "n1"),
				with(pend(1, "p"), inQOS("high")),
			},
			wantReasons: map[uint64]string{1: api.ReasonResources},
		},
		{
			name:  "not enough to free: no victims at all",
			nodes: two,
			jobs: []*api.Job{
				victim(100, "low", 1, h, 1, "n1"), victim(101, "mid", 1, h, 1, "n1"),
				with(pend(1, "p"), inQOS("high"), cpus(2)),
			},
			wantReasons: map[uint64]string{1: api.ReasonResources},
		},
		{
			name:  "jobs already being preempted are enough",
			nodes: two,
			jobs: []*api.Job{
				with(victim(100, "low", 1, h, 1, "n1"), func(j *api.Job) { j.PreemptedAt, j.GraceTimeSec = t0.Add(-10*time.Second), 60 }),
				victim(101, "low", 1, h, 1, "n1"),
				with(pend(1, "p"), inQOS("high")),
			},
			wantReasons: map[uint64]string{1: api.ReasonResources},
			wantStarts:  map[uint64]time.Duration{1: 50 * time.Second},
		},
		{
			name:  "the room freed for one job is not counted for the next",
			nodes: two,
			jobs: []*api.Job{
				victim(100, "low", 1, h, 1, "n1"), victim(101, "low", 2, h, 1, "n1"),
				with(pend(1, "p"), inQOS("high")),
				with(pend(2, "p"), inQOS("high")),
			},
			want: []Preemption{
				{JobID: 100, Mode: api.PreemptRequeue, GraceSec: 60, For: 1},
				{JobID: 101, Mode: api.PreemptRequeue, GraceSec: 60, For: 2},
			},
			wantReasons: map[uint64]string{1: api.ReasonResources, 2: api.ReasonResources},
			wantStarts:  map[uint64]time.Duration{1: time.Minute, 2: time.Minute},
		},
		{
			name:  "a job that fits starts without preempting",
			nodes: []*api.Node{upNode("n1", 4, 4000, 0)},
			jobs: []*api.Job{
				victim(100, "low", 1, h, 1, "n1"),
				with(pend(1, "p"), inQOS("high")),
			},
			wantReasons: map[uint64]string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &memState{jobs: tc.jobs, nodes: holding(tc.nodes, tc.jobs), parts: []*api.Partition{part("p", 0, tc.nodes...)}, qos: qos}
			plan := Schedule(t0, st, Options{})
			if !reflect.DeepEqual(plan.Preemptions, tc.want) {
				t.Errorf("preemptions = %+v, want %+v", plan.Preemptions, tc.want)
			}
			for _, p := range plan.Placements {
				if p.JobID < 100 && len(tc.want) > 0 {
					t.Errorf("job %d started while preempting", p.JobID)
				}
			}
			if !maps.Equal(orEmpty(plan.Reasons), orEmpty(tc.wantReasons)) {
				t.Errorf("reasons = %v, want %v", plan.Reasons, tc.wantReasons)
			}
			starts := map[uint64]time.Duration{}
			for id, at := range plan.StartTimes {
				starts[id] = at.Sub(t0)
			}
			if !maps.Equal(starts, orEmpty(tc.wantStarts)) {
				t.Errorf("start times = %v, want %v", starts, tc.wantStarts)
			}
			if again := Schedule(t0, st, Options{}); !reflect.DeepEqual(again, plan) {
				t.Errorf("second pass differs: %+v vs %+v", again, plan)
			}
		})
	}
}
