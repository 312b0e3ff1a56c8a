package sbatch

import (
	"slices"
	"strings"
	"testing"

	"github.com/stockade-hpc/stockade/api"
)

func TestParseTime(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"5", 300},
		{"90", 5400},
		{"0", 0},
		{"5:30", 330},
		{"1:90", 150},
		{"1:02:03", 3723},
		{"2-3", 2*86400 + 3*3600},
		{"2-3:04", 2*86400 + 3*3600 + 4*60},
		{"2-3:04:05", 2*86400 + 3*3600 + 4*60 + 5},
		{"0-0:0:1", 1},
		{"UNLIMITED", 0},
		{"unlimited", 0},
		{"INFINITE", 0},
		{"Infinite", 0},
		{"-1", 0},
	}
	for _, tt := range tests {
		got, err := ParseTime(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseTime(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseTimeErrors(t *testing.T) {
	for _, in := range []string{
		"", "abc", "1:2:3:4", "1-2:3:4:5", "-5", "1-", "-", "1--2", "1-2-3", "1:", ":1",
		"1.5", " 5", "5 ", "+5", "1h", "1234567890", "999999999-0",
	} {
		if got, err := ParseTime(in); err == nil {
			t.Errorf("ParseTime(%q) = %d, want an error", in, got)
		}
	}
	if _, err := ParseTime("abc"); err == nil || err.Error() != `invalid time "abc"` {
		t.Errorf(`ParseTime("abc") error = %v, want invalid time "abc"`, err)
	}
}

func TestFormatTime(t *testing.T) {
	tests := []struct {
		sec                      int64
		duration, limit, elapsed string
	}{
		{0, "0:00", "UNLIMITED", "00:00:00"},
		{5, "0:05", "0:05", "00:00:05"},
		{754, "12:34", "12:34", "00:12:34"},
		{3600, "1:00:00", "1:00:00", "01:00:00"},
		{3723, "1:02:03", "1:02:03", "01:02:03"},
		{86399, "23:59:59", "23:59:59", "23:59:59"},
		{86400, "1-00:00:00", "1-00:00:00", "1-00:00:00"},
		{10*86400 + 3723, "10-01:02:03", "10-01:02:03", "10-01:02:03"},
		{-1, "INVALID", "INVALID", "INVALID"},
	}
	for _, tt := range tests {
		if got := FormatDuration(tt.sec); got != tt.duration {
			t.Errorf("FormatDuration(%d) = %q, want %q", tt.sec, got, tt.duration)
		}
		if got := FormatLimit(tt.sec); got != tt.limit {
			t.Errorf("FormatLimit(%d) = %q, want %q", tt.sec, got, tt.limit)
		}
		if got := FormatElapsed(tt.sec); got != tt.elapsed {
			t.Errorf("FormatElapsed(%d) = %q, want %q", tt.sec, got, tt.elapsed)
		}
	}
}

func TestParseMemory(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"100", 100},
		{"100M", 100},
		{"100m", 100},
		{"100MB", 100},
		{"100mb", 100},
		{"2G", 2048},
		{"2g", 2048},
		{"2GB", 2048},
		{"1T", 1 << 20},
		{"1tb", 1 << 20},
		{"1K", 1},
		{"1024K", 1},
		{"1025K", 2},
		{"0K", 0},
		{"4kB", 1},
	}
	for _, tt := range tests {
		got, err := ParseMemory(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "G", "-1", "1.5G", "1P", "1B", "1GG", "1 G", " 1", "1GBB", "99999999999999T", "1234567890123456789"} {
		if got, err := ParseMemory(in); err == nil {
			t.Errorf("ParseMemory(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseArray(t *testing.T) {
	tests := []struct {
		in    string
		tasks []int
		max   int
	}{
		{"0-9", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 0},
		{"1,3,5", []int{1, 3, 5}, 0},
		{"1-10:2", []int{1, 3, 5, 7, 9}, 0},
		{"0-4%2", []int{0, 1, 2, 3, 4}, 2},
		{"1-3,7,10-20:5%4", []int{1, 2, 3, 7, 10, 15, 20}, 4},
		{"5,1,3,1,2-3", []int{1, 2, 3, 5}, 0},
		{"7", []int{7}, 0},
		{"1000", []int{1000}, 0},
		{"0-1000:1000", []int{0, 1000}, 0},
		{"3-3", []int{3}, 0},
	}
	for _, tt := range tests {
		tasks, max, err := ParseArray(tt.in)
		if err != nil || !slices.Equal(tasks, tt.tasks) || max != tt.max {
			t.Errorf("ParseArray(%q) = %v, %d, %v; want %v, %d", tt.in, tasks, max, err, tt.tasks, tt.max)
		}
	}
}

func TestParseArrayErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"5-1", "array range 5-1: end before start"},
		{"-1", "negative"},
		{"1--3", "negative"},
		{"1-10:0", "step 0"},
		{"1001", "above the maximum 1000"},
		{"0-5000", "above the maximum 1000"},
		{"99999999999999999", "above the maximum 1000"},
		{"", "no task ids"},
		{"%4", "no task ids"},
		{"1-3%0", "invalid task limit"},
		{"1-3%", "invalid task limit"},
		{"1-3%x", "invalid task limit"},
		{"1,,3", "empty task id"},
		{"a-b", "not a number"},
		{"1-b", "not a number"},
		{"1-5:x", "invalid step"},
		{"5:2", "a step needs a range"},
		{"1 ,2", "not a number"},
	}
	for _, tt := range tests {
		_, _, err := ParseArray(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseArray(%q) error = %v, want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestParseDependency(t *testing.T) {
	tests := []struct {
		in   string
		want []api.Dependency
	}{
		{"", nil},
		{"afterok:123", []api.Dependency{{Type: "afterok", JobID: 123, ArrayTask: -1}}},
		{"after:1:2", []api.Dependency{{Type: "after", JobID: 1, ArrayTask: -1}, {Type: "after", JobID: 2, ArrayTask: -1}}},
		{"afterany:123_4", []api.Dependency{{Type: "afterany", JobID: 123, ArrayTask: 4}}},
		{"afternotok:5,singleton", []api.Dependency{{Type: "afternotok", JobID: 5, ArrayTask: -1}, {Type: "singleton", ArrayTask: -1}}},
		{"AfterOK:7", []api.Dependency{{Type: "afterok", JobID: 7, ArrayTask: -1}}},
		{"singleton", []api.Dependency{{Type: "singleton", ArrayTask: -1}}},
	}
	for _, tt := range tests {
		got, err := ParseDependency(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParseDependency(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseDependencyErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"afterok:1?afterok:2", "OR dependencies (?) are not supported"},
		{"after:123+5", "time delays (+minutes) are not supported"},
		{"afterok", "missing job id"},
		{"afterok:", "missing job id"},
		{"afterok:abc", "invalid job id"},
		{"afterok:0", "invalid job id"},
		{"afterok:-1", "invalid job id"},
		{"afterok:1::2", "invalid job id"},
		{"afterok:1_x", "invalid array task"},
		{"afterok:1_1001", "invalid array task"},
		{"afterok:1_", "invalid array task"},
		{"singleton:1", "singleton takes no job ids"},
		{"before:1", "unknown type"},
		{":1", "missing type"},
		{"afterok:1,", "missing type"},
		{"aftercorr:1", "not supported by Stockade"},
		{"expand:1", "not supported by Stockade"},
	}
	for _, tt := range tests {
		_, err := ParseDependency(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseDependency(%q) error = %v, want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestExpandPattern(t *testing.T) {
	plain := PatternVars{JobID: 42, ArrayTaskID: -1, JobName: "train", User: "ana", FirstNode: "node01.cluster.example"}
	task := PatternVars{JobID: 50, ArrayJobID: 40, ArrayTaskID: 7, JobName: "sweep", User: "bo", FirstNode: "gpu3"}
	tests := []struct {
		pattern string
		v       PatternVars
		want    string
	}{
		{"slurm-%j.out", plain, "slurm-42.out"},
		{"slurm-%A_%a.out", task, "slurm-40_7.out"},
		{"slurm-%A_%a.out", plain, "slurm-42_4294967294.out"},
		{"%x-%u-%N.log", plain, "train-ana-node01.log"},
		{"%N", task, "gpu3"},
		{"%4a", task, "0007"},
		{"%6j", plain, "000042"},
		{"%1j", plain, "42"},
		{"%20j", plain, "0000000042"},
		{"%4x", plain, "train"},
		{"100%%", plain, "100%"},
		{"%J.%s.%n.%t", plain, "42.batch.0.0"},
		{"%z%q", plain, "%z%q"},
		{"%5z", plain, "%5z"},
		{"end%", plain, "end%"},
		{"end%12", plain, "end%12"},
		{"%3%j", plain, "%342"},
		{`out\%j`, plain, "out%j"},
		{"/abs/path/%j/%a", task, "/abs/path/50/7"},
		{"", plain, ""},
	}
	for _, tt := range tests {
		if got := ExpandPattern(tt.pattern, tt.v); got != tt.want {
			t.Errorf("ExpandPattern(%q) = %q, want %q", tt.pattern, got, tt.want)
		}
	}
}
