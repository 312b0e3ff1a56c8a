package sim

import (
	"bytes"
	"compress/gzip"
	"slices"
	"strings"
	"testing"
)

// rec builds an 18-field SWF line from the fields the parser reads.
func rec(id, submit, run, alloc, req, reqTime, user string) string {
	return strings.Join([]string{id, submit, "-1", run, alloc, "-1", "-1", req, reqTime, "-1", "1", user, "1",
		"-1", "-1", "-1", "-1", "-1"}, " ")
}

func TestParseSWF(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		limit    int
		jobs     []Job
		skipped  int
		maxNodes int
		maxProcs int
		header   int
	}{
		{
			name: "header and comments",
			in: "; Version: 2.2\n;\n; MaxNodes: 128\n  ; MaxProcs: 256\n; Note: x: y\n\n" +
				rec("1", "0", "10", "4", "-1", "-1", "3"),
			jobs:     []Job{{ID: 1, Submit: 0, Run: 10, Procs: 4, ReqTime: -1, User: 3, Group: 1}},
			maxNodes: 128, maxProcs: 256, header: 5,
		},
		{
			name: "requested processors win over allocated",
			in:   rec("7", "5", "10", "4", "8", "600", "2"),
			jobs: []Job{{ID: 7, Submit: 5, Run: 10, Procs: 8, ReqTime: 600, User: 2, Group: 1}},
		},
		{
			name: "fractional seconds are truncated",
			in:   rec("1", "3.7", "10.9", "1", "-1", "60.5", "1"),
			jobs: []Job{{ID: 1, Submit: 3, Run: 10, Procs: 1, ReqTime: 60, User: 1, Group: 1}},
		},
		{
			name: "unreplayable records are skipped",
			in: strings.Join([]string{
				rec("1", "0", "-1", "4", "-1", "-1", "1"), // no run time
				rec("2", "0", "10", "0", "-1", "-1", "1"), // no processors
				rec("3", "0", "10", "-1", "-1", "-1", "1"),
				rec("4", "-1", "10", "2", "-1", "-1", "1"), // no submit time
				rec("5", "9", "0", "2", "-1", "-1", "1"),   // zero run time is fine
			}, "\n"),
			jobs:    []Job{{ID: 5, Submit: 9, Run: 0, Procs: 2, ReqTime: -1, User: 1, Group: 1}},
			skipped: 4,
		},
		{
			name: "sorted by submit time, ties in file order",
			in: strings.Join([]string{
				rec("1", "20", "1", "1", "-1", "-1", "1"),
				rec("2", "10", "1", "1", "-1", "-1", "1"),
				rec("3", "10", "1", "1", "-1", "-1", "1"),
			}, "\n"),
			jobs: []Job{
				{ID: 2, Submit: 10, Run: 1, Procs: 1, ReqTime: -1, User: 1, Group: 1},
				{ID: 3, Submit: 10, Run: 1, Procs: 1, ReqTime: -1, User: 1, Group: 1},
				{ID: 1, Submit: 20, Run: 1, Procs: 1, ReqTime: -1, User: 1, Group: 1},
			},
		},
		{
			name: "limit counts replayable jobs",
			in: strings.Join([]string{
				rec("1", "0", "-1", "1", "-1", "-1", "1"),
				rec("2", "1", "5", "1", "-1", "-1", "1"),
				rec("3", "2", "5", "1", "-1", "-1", "1"),
				"garbage after the limit is never read",
			}, "\n"),
			limit:   1,
			jobs:    []Job{{ID: 2, Submit: 1, Run: 5, Procs: 1, ReqTime: -1, User: 1, Group: 1}},
			skipped: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := ParseSWF(strings.NewReader(tt.in), tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(w.Jobs, tt.jobs) {
				t.Errorf("jobs = %+v, want %+v", w.Jobs, tt.jobs)
			}
			if w.Skipped != tt.skipped || w.MaxNodes != tt.maxNodes || w.MaxProcs != tt.maxProcs || len(w.Header) != tt.header {
				t.Errorf("skipped %d, max nodes %d, max procs %d, %d header lines; want %d, %d, %d, %d",
					w.Skipped, w.MaxNodes, w.MaxProcs, len(w.Header), tt.skipped, tt.maxNodes, tt.maxProcs, tt.header)
			}
		})
	}
}

func TestParseSWFErrors(t *testing.T) {
	good := rec("1", "0", "10", "1", "-1", "-1", "1")
	tests := []struct {
		name, in, want string
	}{
		{"too few fields", "; c\n" + good + "\n1 2 3\n", "line 3: want 18 fields, got 3"},
		{"too many fields", good + " 19\n", "line 1: want 18 fields, got 19"},
		{"bad run time", "\n" + rec("1", "0", "ten", "1", "-1", "-1", "1"), `line 2: field 4 (run time): not a number: "ten"`},
		{"bad user", rec("1", "0", "1", "1", "-1", "-1", "bob"), "line 1: field 12 (user id)"},
		{"not finite", rec("1", "NaN", "1", "1", "-1", "-1", "1"), "line 1: field 2 (submit time)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSWF(strings.NewReader(tt.in), 0)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseSWFGzip(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte("; MaxProcs: 4\n" + rec("1", "0", "10", "2", "-1", "-1", "1") + "\n"))
	zw.Close()
	w, err := ParseSWF(&buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Jobs) != 1 || w.Jobs[0].Procs != 2 || w.MaxProcs != 4 {
		t.Fatalf("got %+v", w)
	}
}

// TestReadNASATrace checks the copy of the trace the benchmarks use.
func TestReadNASATrace(t *testing.T) {
	w, err := ReadSWF(nasaTrace, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Jobs) != 18239 || w.Skipped != 0 || w.MaxNodes != 128 || w.MaxProcs != 128 {
		t.Fatalf("%d jobs, %d skipped, MaxNodes %d, MaxProcs %d", len(w.Jobs), w.Skipped, w.MaxNodes, w.MaxProcs)
	}
}
