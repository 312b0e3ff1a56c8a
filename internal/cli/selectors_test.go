package cli

import (
	"slices"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

func TestSplitList(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"a,b", []string{"a", "b"}},
		{"123_[1,3],124", []string{"123_[1,3]", "124"}},
		{" a , ,b,", []string{"a", "b"}},
		{"", nil},
		{"node[1-2],gpu[1,3]", []string{"node[1-2]", "gpu[1,3]"}},
	}
	for _, tc := range cases {
		if got := splitList(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestJobSel(t *testing.T) {
	plain := api.Job{ID: 7, ArrayTaskID: -1}
	task := api.Job{ID: 12, ArrayJobID: 10, ArrayTaskID: 2}
	first := api.Job{ID: 10, ArrayJobID: 10, ArrayTaskID: 0}
	cases := []struct {
		sel     string
		matches []api.Job
		misses  []api.Job
		err     bool
	}{
		{sel: "7", matches: []api.Job{plain}, misses: []api.Job{task}},
		{sel: "10", matches: []api.Job{task, first}, misses: []api.Job{plain}},
		{sel: "10_2", matches: []api.Job{task}, misses: []api.Job{first, plain}},
		{sel: "10_[0-1,5]", matches: []api.Job{first}, misses: []api.Job{task}},
		{sel: "12", matches: []api.Job{task}, misses: []api.Job{first}},
		{sel: "abc", err: true},
		{sel: "10_[3-1]", err: true},
		{sel: "0", err: true},
		{sel: "10_x", err: true},
	}
	for _, tc := range cases {
		s, err := parseJobSel(tc.sel)
		if tc.err {
			if err == nil {
				t.Errorf("%q: want an error", tc.sel)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tc.sel, err)
		}
		for _, j := range tc.matches {
			if !s.matches(&j) {
				t.Errorf("%q does not match job %d", tc.sel, j.ID)
			}
		}
		for _, j := range tc.misses {
			if s.matches(&j) {
				t.Errorf("%q matches job %d", tc.sel, j.ID)
			}
		}
	}
}

func TestQueryIDs(t *testing.T) {
	sels, err := parseJobSels([]string{"5,6_[1-2]", "7_[1-100]"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"5", "6_1", "6_2", "7"}
	if got := queryIDs(sels); !slices.Equal(got, want) {
		t.Errorf("queryIDs = %q, want %q", got, want)
	}
}

func TestParseJobStates(t *testing.T) {
	cases := []struct {
		in   []string
		want []api.JobState
		err  bool
	}{
		{in: []string{"PD,R"}, want: []api.JobState{api.JobPending, api.JobRunning}},
		{in: []string{"pending", "running"}, want: []api.JobState{api.JobPending, api.JobRunning}},
		{in: []string{"cd,ca,f,to,oom,nf"}, want: []api.JobState{api.JobCompleted, api.JobCancelled, api.JobFailed, api.JobTimeout, api.JobNodeFail, api.JobOutOfMemory}},
		{in: []string{"all"}, want: allJobStates},
		{in: []string{"S"}, want: nil},
		{in: []string{"bogus"}, err: true},
	}
	for _, tc := range cases {
		m, err := parseJobStates(tc.in)
		if tc.err {
			if err == nil || err.Error() != "Invalid job state specified: bogus" {
				t.Errorf("%q: err %v", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := stateList(m); !slices.Equal(got, tc.want) {
			t.Errorf("%q: %v, want %v", tc.in, got, tc.want)
		}
	}
	if m, _ := parseJobStates(nil); m != nil {
		t.Errorf("no states: %v, want nil", m)
	}
}

func TestSortJobs(t *testing.T) {
	jobs := fixtureJobs()
	if err := sortJobs(jobs, "-Q,i", testCtx()); err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	want := []uint64{101, 102, 103, 104, 106, 111, 105, 107, 108, 109, 110}
	if !slices.Equal(ids, want) {
		t.Errorf("order %v, want %v", ids, want)
	}
	if err := sortJobs(jobs, "Z", testCtx()); err == nil {
		t.Error("sort key Z accepted")
	}
}

func TestAcctWindow(t *testing.T) {
	jobs := fixtureJobs()
	byID := map[uint64]*api.Job{}
	for i := range jobs {
		byID[jobs[i].ID] = &jobs[i]
	}
	midnight := fixNow.Truncate(24 * time.Hour)
	cases := []struct {
		name string
		w    acctWindow
		want []uint64
	}{
		{"today", acctWindow{start: midnight, end: fixNow}, []uint64{101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111}},
		{"last 4 min", acctWindow{start: fixNow.Add(-4 * time.Minute), end: fixNow}, []uint64{101, 102, 103, 104, 105, 109, 110, 111}},
		{"state CD now", acctWindow{start: fixNow, end: fixNow, states: map[api.JobState]bool{api.JobCompleted: true}}, nil},
		{"state CD today", acctWindow{start: midnight, end: fixNow, states: map[api.JobState]bool{api.JobCompleted: true}}, []uint64{106}},
		{"running now", acctWindow{start: fixNow, end: fixNow, states: map[api.JobState]bool{api.JobRunning: true}}, []uint64{101, 103, 111}},
		{"before anything", acctWindow{start: midnight.Add(-72 * time.Hour), end: midnight.Add(-48 * time.Hour)}, nil},
	}
	for _, tc := range cases {
		var got []uint64
		for _, j := range jobs {
			if tc.w.contains(byID[j.ID]) {
				got = append(got, j.ID)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
