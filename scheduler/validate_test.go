package scheduler

import (
	"testing"

	"github.com/stockade-hpc/stockade/api"
)

func TestValidateSpec(t *testing.T) {
	unregistered := func(name string) *api.Node { return &api.Node{Name: name, State: api.NodeUnknown} }
	b1, b2, b3 := upNode("b1", 16, 16000, 0, "fast"), upNode("b2", 8, 8000, 2), unregistered("b3")
	batch := part("batch", 0, b1, b2, b3)
	batch.Default, batch.MaxTimeSec, batch.MaxNodes = true, 86400, 2
	defmem := part("defmem", 0, b1, b2)
	defmem.DefMemPerCPUMB = 2000
	f1, f2 := unregistered("f1"), unregistered("f2")
	st := &memState{
		nodes: []*api.Node{b1, b2, b3, f1, f2},
		parts: []*api.Partition{batch, defmem, part("fresh", 0, f1, f2)},
		jobs: []*api.Job{
			with(pend(50, "batch"), state(api.JobCompleted)),
			with(pend(61, "batch"), task(60, 0, 0)),
			with(pend(62, "batch"), task(60, 1, 0)),
		},
	}
	noDefault := &memState{nodes: st.nodes, parts: []*api.Partition{defmem}}

	tests := []struct {
		name string
		st   State
		spec api.JobSpec
		want string // "" = valid
	}{
		{name: "minimal job in the default partition", spec: api.JobSpec{}},
		{name: "named partition", spec: api.JobSpec{Partition: "defmem", CPUsPerTask: 4}},
		{name: "unknown partition", spec: api.JobSpec{Partition: "nope"},
			want: "--partition: invalid partition specified: nope"},
		{name: "no default partition", st: noDefault, spec: api.JobSpec{},
			want: "--partition: no partition given and no default partition is configured"},
		{name: "negative nodes", spec: api.JobSpec{Nodes: -1},
			want: "--nodes: must not be negative (got -1)"},
		{name: "time at MaxTime", spec: api.JobSpec{TimeLimitSec: 86400}},
		{name: "time over MaxTime", spec: api.JobSpec{TimeLimitSec: 2 * 86400},
			want: "--time: 2-00:00:00 exceeds partition batch's MaxTime 1-00:00:00"},
		{name: "more nodes than MaxNodes", spec: api.JobSpec{Nodes: 3},
			want: "--nodes: 3 exceeds partition batch's MaxNodes 2"},
		{name: "more nodes than the partition has", spec: api.JobSpec{Partition: "defmem", Nodes: 3},
			want: "--nodes: 3 nodes requested but partition defmem has only 2"},
		{name: "nodelist outside partition", spec: api.JobSpec{NodeList: []string{"f1"}},
			want: "--nodelist: node f1 is not in partition batch"},
		{name: "nodelist and exclude overlap", spec: api.JobSpec{NodeList: []string{"b1"}, ExcludeNodes: []string{"b1"}},
			want: "--exclude: node b1 is both required (--nodelist) and excluded"},
		{name: "exclude leaves too few nodes", spec: api.JobSpec{Nodes: 2, ExcludeNodes: []string{"b1", "b2"}},
			want: "--exclude: partition batch has 1 nodes left after exclusions, 2 requested"},
		{name: "nodelist node too small", spec: api.JobSpec{NodeList: []string{"b2"}, CPUsPerTask: 16},
			want: "--nodelist: node b2 cannot hold 16 CPUs, 0M and 0 GPUs per node"},
		{name: "memory per node", spec: api.JobSpec{MemoryPerNodeMB: 65536},
			want: "--mem: 65536M per node is more than any node of partition batch has (max 16000M)"},
		{name: "memory per CPU", spec: api.JobSpec{MemoryPerCPUMB: 4000, CPUsPerTask: 8},
			want: "--mem-per-cpu: 32000M per node is more than any node of partition batch has (max 16000M)"},
		{name: "partition default memory", spec: api.JobSpec{Partition: "defmem", CPUsPerTask: 16},
			want: "--mem: 32000M per node (partition default 2000M per CPU x 16 CPUs) is more than any node of partition defmem has (max 16000M)"},
		{name: "CPUs per task", spec: api.JobSpec{CPUsPerTask: 32},
			want: "--cpus-per-task: 32 CPUs per node is more than any node of partition batch has (max 16)"},
		{name: "tasks on one node", spec: api.JobSpec{Tasks: 17},
			want: "--ntasks: 17 CPUs per node is more than any node of partition batch has (max 16)"},
		{name: "tasks spread over nodes fit", spec: api.JobSpec{Tasks: 20, Nodes: 2}},
		{name: "tasks per node", spec: api.JobSpec{TasksPerNode: 20},
			want: "--ntasks-per-node: 20 CPUs per node is more than any node of partition batch has (max 16)"},
		{name: "GPUs", spec: api.JobSpec{GPUsPerNode: 4},
			want: "--gpus-per-node: 4 GPUs per node is more than any node of partition batch has (max 2)"},
		{name: "GPUs fit", spec: api.JobSpec{GPUsPerNode: 2}},
		{name: "unknown feature", spec: api.JobSpec{Constraints: []string{"slow"}},
			want: "--constraint: no node of partition batch has features slow"},
		{name: "feature alternatives", spec: api.JobSpec{Constraints: []string{"slow|fast"}}},
		{name: "feature and GPU never on one node", spec: api.JobSpec{Constraints: []string{"fast"}, GPUsPerNode: 1},
			want: "--constraint: no node of partition batch has 1 CPUs, 0M and 1 GPUs together with features fast"},
		{name: "CPUs and GPUs never on one node", spec: api.JobSpec{CPUsPerTask: 16, GPUsPerNode: 1},
			want: "--gpus-per-node: no node of partition batch has 16 CPUs, 0M and 1 GPUs together"},
		{name: "only an excluded node fits", spec: api.JobSpec{CPUsPerTask: 16, ExcludeNodes: []string{"b1"}},
			want: "--exclude: no node of partition batch has 16 CPUs, 0M and 0 GPUs together"},
		{name: "nothing registered yet accepts resources", spec: api.JobSpec{Partition: "fresh", MemoryPerNodeMB: 1 << 20, GPUsPerNode: 8, Constraints: []string{"x"}}},
		{name: "nothing registered yet still counts nodes", spec: api.JobSpec{Partition: "fresh", Nodes: 3},
			want: "--nodes: 3 nodes requested but partition fresh has only 2"},
		{name: "dependency on a job", spec: api.JobSpec{Dependencies: []api.Dependency{{Type: "afterok", JobID: 50, ArrayTask: -1}}}},
		{name: "dependency on an array", spec: api.JobSpec{Dependencies: []api.Dependency{{Type: "afterany", JobID: 60, ArrayTask: -1}}}},
		{name: "dependency on an array task", spec: api.JobSpec{Dependencies: []api.Dependency{{Type: "after", JobID: 60, ArrayTask: 1}}}},
		{name: "dependency on a task's own id", spec: api.JobSpec{Dependencies: []api.Dependency{{Type: "afternotok", JobID: 62, ArrayTask: -1}}}},
		{name: "singleton", spec: api.JobSpec{Dependencies: []api.Dependency{{Type: "singleton", ArrayTask: -1}}}},
		{name: "missing job", spec: api.JobSpec{Dependencies: []api.Dependency{{Type: "afterok", JobID: 999, ArrayTask: -1}}},
			want: "--dependency: job 999 does not exist"},
		{name: "missing array task", spec: api.JobSpec{Dependencies: []api.Dependency{{Type: "afterok", JobID: 60, ArrayTask: 5}}},
			want: "--dependency: job 60_5 does not exist"},
		{name: "dependency without id", spec: api.JobSpec{Dependencies: []api.Dependency{{Type: "afterok", ArrayTask: -1}}},
			want: "--dependency: afterok needs a job id"},
		{name: "unknown dependency type", spec: api.JobSpec{Dependencies: []api.Dependency{{Type: "aftercorr", JobID: 50}}},
			want: `--dependency: unknown dependency type "aftercorr"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.st
			if s == nil {
				s = st
			}
			got := ""
			if err := ValidateSpec(s, &tc.spec); err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	for _, tc := range []struct {
		sec  int64
		want string
	}{
		{0, "00:00:00"},
		{59, "00:00:59"},
		{3661, "01:01:01"},
		{86399, "23:59:59"},
		{86400, "1-00:00:00"},
		{90061, "1-01:01:01"},
		{30 * 86400, "30-00:00:00"},
	} {
		if got := formatDuration(tc.sec); got != tc.want {
			t.Errorf("formatDuration(%d) = %q, want %q", tc.sec, got, tc.want)
		}
	}
}

func TestCompareNames(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"n1", "n1", 0},
		{"n2", "n10", -1},
		{"n10", "n9", 1},
		{"node001", "node2", -1},
		{"n1", "n01", -1},
		{"a", "b", -1},
		{"n1a", "n1b", -1},
		{"n", "n1", -1},
		{"rack2-n3", "rack10-n1", -1},
	} {
		if got := compareNames(tc.a, tc.b); got != tc.want {
			t.Errorf("compareNames(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := compareNames(tc.b, tc.a); got != -tc.want {
			t.Errorf("compareNames(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestHasFeatures(t *testing.T) {
	n := upNode("n1", 1, 1, 0, "intel", "ib", "gpu")
	for _, tc := range []struct {
		constraints []string
		want        bool
	}{
		{nil, true},
		{[]string{"intel"}, true},
		{[]string{"amd"}, false},
		{[]string{"intel", "ib"}, true},
		{[]string{"intel", "amd"}, false},
		{[]string{"amd|intel"}, true},
		{[]string{"intel&ib"}, true},
		{[]string{"intel&amd"}, false},
		{[]string{"intel&amd|ib"}, true},
		{[]string{" amd | gpu "}, true},
	} {
		if got := hasFeatures(n, tc.constraints); got != tc.want {
			t.Errorf("hasFeatures(%q) = %v, want %v", tc.constraints, got, tc.want)
		}
	}
}
