package server

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/sbatch"
	"github.com/stockade-hpc/stockade/raftstore"
)

// jobRef is one job id as users write it: 123 (a job, or every task of
// array 123), 123_4 (one task), 123_[1-3,7] (some tasks).
type jobRef struct {
	id    uint64
	tasks []int // nil: the whole job or array
	text  string
}

// parseJobRefs parses ids; each element may itself be a comma list
// (brackets keep their commas).
func parseJobRefs(list []string) ([]jobRef, error) {
	var out []jobRef
	for _, item := range list {
		for _, s := range splitOutsideBrackets(item) {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			ref, err := parseJobRef(s)
			if err != nil {
				return nil, err
			}
			out = append(out, ref)
		}
	}
	return out, nil
}

func splitOutsideBrackets(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

func parseJobRef(s string) (jobRef, error) {
	ref := jobRef{text: s}
	idPart, taskPart, hasTask := strings.Cut(s, "_")
	id, err := strconv.ParseUint(idPart, 10, 64)
	if err != nil || id == 0 {
		return ref, fmt.Errorf("invalid job id %q", s)
	}
	ref.id = id
	if !hasTask {
		return ref, nil
	}
	if strings.HasPrefix(taskPart, "[") && strings.HasSuffix(taskPart, "]") {
		taskPart = taskPart[1 : len(taskPart)-1]
	}
	tasks, _, err := sbatch.ParseArray(taskPart)
	if err != nil || len(tasks) == 0 {
		return ref, fmt.Errorf("invalid job id %q", s)
	}
	ref.tasks = tasks
	return ref, nil
}

// resolve returns the jobs a reference names (nil if none).
func (ref jobRef) resolve(snap *raftstore.Snapshot) []*api.Job {
	if ref.tasks != nil {
		var out []*api.Job
		for _, j := range snap.JobsByArray(ref.id) {
			if _, ok := slices.BinarySearch(ref.tasks, j.ArrayTaskID); ok {
				out = append(out, j)
			}
		}
		return out
	}
	if tasks := snap.JobsByArray(ref.id); len(tasks) > 0 {
		return tasks
	}
	if j := snap.Job(ref.id); j != nil {
		return []*api.Job{j}
	}
	return nil
}

// parseDependencies parses --dependency text into clauses:
// "afterok:12:13_2,singleton". Any-of ('?') and +time are not supported.
func parseDependencies(s string) ([]api.Dependency, error) {
	if strings.Contains(s, "?") {
		return nil, fmt.Errorf("'?' (any of) dependencies are not supported")
	}
	var out []api.Dependency
	for _, clause := range strings.Split(s, ",") {
		clause = strings.TrimSpace(clause)
		if clause == "" {
			continue
		}
		parts := strings.Split(clause, ":")
		typ := strings.ToLower(parts[0])
		switch typ {
		case "singleton":
			if len(parts) != 1 {
				return nil, fmt.Errorf("singleton takes no job ids (%q)", clause)
			}
			out = append(out, api.Dependency{Type: typ, ArrayTask: -1})
			continue
		case "after", "afterok", "afternotok", "afterany":
		default:
			return nil, fmt.Errorf("unknown dependency type %q", parts[0])
		}
		if len(parts) < 2 {
			return nil, fmt.Errorf("%s needs a job id", typ)
		}
		for _, idText := range parts[1:] {
			if strings.Contains(idText, "+") {
				return nil, fmt.Errorf("%s: +time is not supported", clause)
			}
			ref, err := parseJobRef(idText)
			if err != nil {
				return nil, err
			}
			d := api.Dependency{Type: typ, JobID: ref.id, ArrayTask: -1}
			if ref.tasks != nil {
				if len(ref.tasks) != 1 {
					return nil, fmt.Errorf("%s: one array task per id", idText)
				}
				d.ArrayTask = ref.tasks[0]
			}
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty dependency")
	}
	return out, nil
}

// parseStates parses a state list: full names or squeue's short codes.
func parseStates(list []string) (map[api.JobState]bool, error) {
	if len(list) == 0 {
		return nil, nil
	}
	all := []api.JobState{api.JobPending, api.JobRunning, api.JobCompleted, api.JobFailed,
		api.JobCancelled, api.JobTimeout, api.JobOutOfMemory, api.JobNodeFail, api.JobPreempted}
	out := map[api.JobState]bool{}
	for _, s := range list {
		s = strings.ToUpper(strings.TrimSpace(s))
		if s == "" {
			continue
		}
		if s == "ALL" {
			for _, st := range all {
				out[st] = true
			}
			continue
		}
		found := false
		for _, st := range all {
			if s == string(st) || s == st.Short() || (st == api.JobCancelled && s == "CANCELED") {
				out[st] = true
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown job state %q", s)
		}
	}
	return out, nil
}

// splitList splits comma lists from repeated query parameters.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
