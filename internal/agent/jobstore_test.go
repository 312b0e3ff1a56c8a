package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

func TestParseJobKey(t *testing.T) {
	tests := []struct {
		in   string
		want jobKey
		ok   bool
	}{
		{"12.0", jobKey{12, 0}, true},
		{"12.3", jobKey{12, 3}, true},
		{"18446744073709551615.1", jobKey{18446744073709551615, 1}, true},
		{"12", jobKey{}, false},
		{"0.1", jobKey{}, false},
		{"012.1", jobKey{}, false},
		{"12.01", jobKey{}, false},
		{"12.-1", jobKey{}, false},
		{"a.1", jobKey{}, false},
		{"12.1.tmp", jobKey{}, false},
		{".12.1", jobKey{}, false},
	}
	for _, tc := range tests {
		got, ok := parseJobKey(tc.in)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseJobKey(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
		if ok && got.String() != tc.in {
			t.Errorf("round trip %q → %q", tc.in, got.String())
		}
	}
}

func TestScanJobs(t *testing.T) {
	state := t.TempDir()
	mk := func(name string, m *jobMeta) {
		d := filepath.Join(state, jobsSubdir, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if m != nil {
			if err := writeMeta(d, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	full := &jobMeta{JobID: 7, Attempt: 1, CPUIDs: []int{2, 3}, GPUs: []int{1}, Created: at, Launched: true}
	mk("7.1", full)
	mk("3.0", nil) // crash between mkdir and the first record
	mk("9.0", &jobMeta{JobID: 8, Attempt: 0, Outcome: &outcome{State: api.JobCancelled, At: at}})
	mk("junk", nil)
	if err := os.WriteFile(filepath.Join(state, jobsSubdir, "5.0"), nil, 0o600); err != nil {
		t.Fatal(err) // a file, not a dir
	}

	got, errs := scanJobs(state)
	if len(errs) != 2 {
		t.Errorf("errors %v, want 2 (missing record, mismatched record)", errs)
	}
	var keys []jobKey
	for _, s := range got {
		keys = append(keys, s.Meta.key())
		if s.Dir != jobDir(state, s.Meta.key()) {
			t.Errorf("dir %s for %v", s.Dir, s.Meta.key())
		}
	}
	if want := []jobKey{{3, 0}, {7, 1}, {9, 0}}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	if !reflect.DeepEqual(got[1].Meta, full) {
		t.Errorf("record round trip: %+v, want %+v", got[1].Meta, full)
	}
	if got[2].Meta.Outcome == nil || got[2].Meta.Outcome.State != api.JobCancelled {
		t.Errorf("outcome lost: %+v", got[2].Meta)
	}
	if fi, err := os.Stat(filepath.Join(jobDir(state, jobKey{7, 1}), metaFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode: %v %v", fi, err)
	}

	none, errs := scanJobs(filepath.Join(state, "nothing-here"))
	if none != nil || errs != nil {
		t.Errorf("missing jobs dir: %v %v", none, errs)
	}
}
