package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/stockade-hpc/stockade/api"
)

// Job and state selectors as the Slurm commands accept them.

// splitList splits a comma list, keeping commas inside brackets
// ("123_[1,3],124" is two items) and dropping empty items.
func splitList(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch s[i] {
			case '[':
				depth++
				continue
			case ']':
				depth--
				continue
			case ',':
				if depth > 0 {
					continue
				}
			default:
				continue
			}
		}
		if item := strings.TrimSpace(s[start:i]); item != "" {
			out = append(out, item)
		}
		start = i + 1
	}
	return out
}

// splitLists splits every value of a repeated list flag.
func splitLists(vals []string) []string {
	var out []string
	for _, v := range vals {
		out = append(out, splitList(v)...)
	}
	return out
}

// jobSel selects a job, an array (every task) or some tasks of an array.
type jobSel struct {
	id    uint64
	tasks []int // nil: the job itself or every task of the array
	text  string
}

// parseJobSel parses "123", "123_4" or "123_[1-3,5]".
func parseJobSel(s string) (jobSel, error) {
	sel := jobSel{text: s}
	base, task, isTask := strings.Cut(s, "_")
	id, err := strconv.ParseUint(base, 10, 64)
	if err != nil || id == 0 {
		return sel, fmt.Errorf("Invalid job id: %s", s)
	}
	sel.id = id
	if !isTask {
		return sel, nil
	}
	if strings.HasPrefix(task, "[") && strings.HasSuffix(task, "]") {
		task = task[1 : len(task)-1]
	}
	for _, part := range strings.Split(task, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a || b-a > 1000000 {
			return sel, fmt.Errorf("Invalid job id: %s", s)
		}
		for t := a; t <= b; t++ {
			sel.tasks = append(sel.tasks, t)
		}
	}
	return sel, nil
}

// parseJobSels parses comma lists of job ids.
func parseJobSels(vals []string) ([]jobSel, error) {
	var out []jobSel
	for _, item := range splitLists(vals) {
		sel, err := parseJobSel(item)
		if err != nil {
			return nil, err
		}
		out = append(out, sel)
	}
	return out, nil
}

// matches reports whether j is selected.
func (s jobSel) matches(j *api.Job) bool {
	if s.tasks == nil {
		return j.ID == s.id || (isArrayTask(j) && j.ArrayJobID == s.id)
	}
	if isArrayTask(j) && j.ArrayJobID == s.id {
		return slices.Contains(s.tasks, j.ArrayTaskID)
	}
	return false
}

// queryIDs is the id= parameter for a selection: tasks spelled out.
func queryIDs(sels []jobSel) []string {
	var out []string
	for _, s := range sels {
		// A long task list is asked for as the whole array and filtered
		// here, so the URL stays short.
		if s.tasks == nil || len(s.tasks) > 64 {
			out = append(out, strconv.FormatUint(s.id, 10))
			continue
		}
		for _, t := range s.tasks {
			out = append(out, fmt.Sprintf("%d_%d", s.id, t))
		}
	}
	return out
}

// jobStateNames maps every spelling squeue, sacct and scancel accept to a
// state. Slurm states Stockade never enters are valid but match nothing.
var jobStateNames = map[string]api.JobState{
	"PD": api.JobPending, "PENDING": api.JobPending,
	"R": api.JobRunning, "RUNNING": api.JobRunning,
	"CD": api.JobCompleted, "COMPLETED": api.JobCompleted,
	"F": api.JobFailed, "FAILED": api.JobFailed,
	"CA": api.JobCancelled, "CANCELLED": api.JobCancelled,
	"TO": api.JobTimeout, "TIMEOUT": api.JobTimeout,
	"OOM": api.JobOutOfMemory, "OUT_OF_MEMORY": api.JobOutOfMemory,
	"NF": api.JobNodeFail, "NODE_FAIL": api.JobNodeFail,
	"S": "SUSPENDED", "SUSPENDED": "SUSPENDED",
	"CG": "COMPLETING", "COMPLETING": "COMPLETING",
	"CF": "CONFIGURING", "CONFIGURING": "CONFIGURING",
	"PR": api.JobPreempted, "PREEMPTED": api.JobPreempted,
	"BF": "BOOT_FAIL", "BOOT_FAIL": "BOOT_FAIL",
	"DL": "DEADLINE", "DEADLINE": "DEADLINE",
	"RQ": "REQUEUED", "REQUEUED": "REQUEUED",
	"RS": "RESIZING", "RESIZING": "RESIZING",
	"RV": "REVOKED", "REVOKED": "REVOKED",
	"SE": "SPECIAL_EXIT", "SPECIAL_EXIT": "SPECIAL_EXIT",
	"ST": "STOPPED", "STOPPED": "STOPPED",
}

// allJobStates are the states Stockade jobs take, in Slurm's order.
var allJobStates = []api.JobState{
	api.JobPending, api.JobRunning, api.JobCompleted, api.JobCancelled, api.JobFailed,
	api.JobTimeout, api.JobNodeFail, api.JobPreempted, api.JobOutOfMemory,
}

// parseJobStates parses a -t/--states list; "all" selects every state.
func parseJobStates(vals []string) (map[api.JobState]bool, error) {
	items := splitLists(vals)
	if len(items) == 0 {
		return nil, nil
	}
	out := map[api.JobState]bool{}
	for _, it := range items {
		if strings.EqualFold(it, "all") {
			for _, s := range allJobStates {
				out[s] = true
			}
			continue
		}
		st, ok := jobStateNames[strings.ToUpper(it)]
		if !ok {
			return nil, fmt.Errorf("Invalid job state specified: %s", it)
		}
		out[st] = true
	}
	return out, nil
}

// stateList lists the Stockade states of a selection, in Slurm's order.
func stateList(m map[api.JobState]bool) []api.JobState {
	var out []api.JobState
	for _, s := range allJobStates {
		if m[s] {
			out = append(out, s)
		}
	}
	return out
}

// stateRank orders states as Slurm's job_state numbers do.
func stateRank(s api.JobState) int {
	switch s {
	case api.JobPending:
		return 0
	case api.JobRunning:
		return 1
	case api.JobCompleted:
		return 3
	case api.JobCancelled:
		return 4
	case api.JobFailed:
		return 5
	case api.JobTimeout:
		return 6
	case api.JobNodeFail:
		return 7
	case api.JobPreempted:
		return 8
	case api.JobOutOfMemory:
		return 11
	}
	return 12
}

// matchUser reports whether a job's owner is in a user list of names or
// uids.
func matchUser(j *api.Job, users []string) bool {
	uid := strconv.FormatUint(uint64(j.UID), 10)
	for _, u := range users {
		if u == j.User || u == uid {
			return true
		}
	}
	return false
}
