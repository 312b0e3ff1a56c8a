package sbatch

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/stockade-hpc/stockade/api"
)

// ParseDependency parses --dependency: clauses joined by "," (all must
// hold), each "after", "afterok", "afterany" or "afternotok" followed by
// ":ID[:ID...]", or "singleton". An id is a job id ("123") or one array
// task ("123_4"); a clause names one job per Dependency returned, with
// ArrayTask -1 for a whole job. The empty string means no dependencies.
func ParseDependency(s string) ([]api.Dependency, error) {
	if s == "" {
		return nil, nil
	}
	if strings.Contains(s, "?") {
		return nil, errors.New("OR dependencies (?) are not supported by Stockade yet; use ',' (all must be satisfied)")
	}
	var deps []api.Dependency
	for clause := range strings.SplitSeq(s, ",") {
		typ, ids, hasIDs := strings.Cut(clause, ":")
		typ = strings.ToLower(typ)
		switch typ {
		case "singleton":
			if hasIDs {
				return nil, fmt.Errorf("dependency %q: singleton takes no job ids", clause)
			}
			deps = append(deps, api.Dependency{Type: typ, ArrayTask: -1})
			continue
		case "after", "afterok", "afterany", "afternotok":
		case "aftercorr", "afterburstbuffer", "expand":
			return nil, fmt.Errorf("dependency type %q is not supported by Stockade yet", typ)
		case "":
			return nil, fmt.Errorf("dependency %q: missing type", s)
		default:
			return nil, fmt.Errorf("dependency %q: unknown type %q", clause, typ)
		}
		if !hasIDs || ids == "" {
			return nil, fmt.Errorf("dependency %q: missing job id", clause)
		}
		for id := range strings.SplitSeq(ids, ":") {
			if strings.Contains(id, "+") {
				return nil, fmt.Errorf("dependency %q: time delays (+minutes) are not supported by Stockade yet", clause)
			}
			d, err := parseDepID(id)
			if err != nil {
				return nil, fmt.Errorf("dependency %q: %w", clause, err)
			}
			d.Type = typ
			deps = append(deps, d)
		}
	}
	return deps, nil
}

func parseDepID(s string) (api.Dependency, error) {
	job, task, isTask := strings.Cut(s, "_")
	id, err := strconv.ParseUint(job, 10, 64)
	if err != nil || id == 0 || !allDigits(job) {
		return api.Dependency{}, fmt.Errorf("invalid job id %q", s)
	}
	d := api.Dependency{JobID: id, ArrayTask: -1}
	if isTask {
		t, ok := arrayNum(task)
		if !ok || t > MaxArrayTaskID {
			return api.Dependency{}, fmt.Errorf("invalid array task in job id %q", s)
		}
		d.ArrayTask = t
	}
	return d, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
