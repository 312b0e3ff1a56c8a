package sbatch

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(script("#SBATCH -J x --time=5 -N 2", "#SBATCH --mem=1G --array=1-3%2")), "--gres=gpu:2")
	f.Add([]byte(script(`#SBATCH --comment="a b" # c`, "#SBATCH -w node[1-3] -x n9")), "-n4")
	f.Add([]byte(script("#SBATCH --export=A=1,B", "#SBATCH --begin=now", "#SBATCH -d afterok:1_2")), "--wrap=hostname")
	f.Add([]byte("#!/bin/sh\r\n"), "--part=x")
	f.Add([]byte("\x00\xff"), "-HN2")
	f.Fuzz(func(t *testing.T, text []byte, arg string) {
		in := testInput([]string{arg, "job.sh", "a"}, map[string]string{"HOME": "/h"}, job(string(text)))
		r, err := Parse(in)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		s := &r.Spec
		if s.Nodes < 1 || s.Tasks < s.Nodes || s.CPUsPerTask < 1 || s.Script == "" || s.OpenMode == "" || s.Output == "" {
			t.Fatalf("implausible spec %+v", s)
		}
		out, err := DryRunJSON(r)
		if err != nil || !json.Valid(out) {
			t.Fatalf("DryRunJSON: %v\n%s", err, out)
		}
	})
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"5", "5:30", "1:02:03", "2-3", "2-3:04", "2-3:04:05", "UNLIMITED", "-1", "1:2:3:4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sec, err := ParseTime(s)
		if err != nil {
			return
		}
		if sec < 0 {
			t.Fatalf("ParseTime(%q) = %d", s, sec)
		}
		// Both printed forms parse back to the same value.
		for _, p := range []string{FormatDuration(sec), FormatElapsed(sec)} {
			if back, err := ParseTime(p); err != nil || back != sec {
				t.Fatalf("ParseTime(%q) = %d; printed %q parses to %d, %v", s, sec, p, back, err)
			}
		}
	})
}

func FuzzParseMemory(f *testing.F) {
	for _, s := range []string{"0", "100", "2G", "1024K", "1tb", "5mB", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mib, err := ParseMemory(s)
		if err == nil && mib < 0 {
			t.Fatalf("ParseMemory(%q) = %d", s, mib)
		}
	})
}

func FuzzParseArray(f *testing.F) {
	for _, s := range []string{"0-9", "1,3,5", "1-10:2", "0-99%10", "1-3,7,10-20:5%4", "5-1", "1-10:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tasks, maxRunning, err := ParseArray(s)
		if err != nil {
			return
		}
		if len(tasks) == 0 || maxRunning < 0 || !slices.IsSorted(tasks) || len(slices.Compact(slices.Clone(tasks))) != len(tasks) {
			t.Fatalf("ParseArray(%q) = %v, %d", s, tasks, maxRunning)
		}
		if tasks[0] < 0 || tasks[len(tasks)-1] > MaxArrayTaskID {
			t.Fatalf("ParseArray(%q) = %v: out of range", s, tasks)
		}
	})
}

func FuzzParseDependency(f *testing.F) {
	for _, s := range []string{"afterok:1", "after:1:2_3,singleton", "afterany:5?afterok:6", "after:1+5", "afternotok:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		deps, err := ParseDependency(s)
		if err != nil {
			return
		}
		for _, d := range deps {
			switch d.Type {
			case "after", "afterok", "afterany", "afternotok":
				if d.JobID == 0 {
					t.Fatalf("ParseDependency(%q): %+v has no job", s, d)
				}
			case "singleton":
				if d.JobID != 0 {
					t.Fatalf("ParseDependency(%q): %+v", s, d)
				}
			default:
				t.Fatalf("ParseDependency(%q): type %q", s, d.Type)
			}
			if d.ArrayTask < -1 || d.ArrayTask > MaxArrayTaskID {
				t.Fatalf("ParseDependency(%q): %+v", s, d)
			}
		}
	})
}
