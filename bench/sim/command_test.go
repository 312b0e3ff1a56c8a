package sim

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func runCommand(args ...string) (string, error) {
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestCommand(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string // substrings of the output
	}{
		{"trace, machine from the header", []string{"--trace", backfillSWF, "--policy", "fifo,backfill"},
			[]string{"backfill.swf: 3 jobs", "4 nodes × 1 CPUs", "mean bounded slowdown", "fifo", "backfill"}},
		{"synthetic", []string{"--synthetic", "300", "--nodes", "32", "--cpus-per-node", "4", "--policy", "priority"},
			[]string{"synthetic: 300 jobs", "32 nodes × 4 CPUs", "priority"}},
		{"stress", []string{"--stress", "--nodes", "64", "--pending", "500", "--passes", "1", "--policy", "fifo"},
			[]string{"stress: 64 nodes × 32 CPUs", "500 pending jobs", "placements/s"}},
		{"oversize jobs dropped", []string{"--trace", backfillSWF, "--nodes", "3", "--policy", "fifo"},
			[]string{"2 jobs (0 records skipped, 1 larger than the machine)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCommand(tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestCommandJSON(t *testing.T) {
	out, err := runCommand("--trace", backfillSWF, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Workload == nil || rep.Workload.Jobs != 3 || len(rep.Runs) != len(Policies) {
		t.Fatalf("report %+v", rep)
	}
	for i, r := range rep.Runs {
		if r.Policy != Policies[i] || r.Completed != 3 {
			t.Errorf("run %d: %+v", i, r)
		}
	}
}

func TestCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no workload", nil, "exactly one of"},
		{"two workloads", []string{"--stress", "--synthetic", "10"}, "exactly one of"},
		{"bad policy", []string{"--stress", "--policy", "lottery"}, `unknown policy "lottery"`},
		{"bad load scale", []string{"--synthetic", "10", "--load-scale", "0"}, "--load-scale"},
		{"missing trace", []string{"--trace", "testdata/none.swf"}, "none.swf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runCommand(tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
