package sbatch

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxArrayTaskID is the largest array task id accepted: Slurm's default
// MaxArraySize of 1001 allows ids 0..1000.
const MaxArrayTaskID = 1000

// ParseArray parses --array: comma-separated ids ("1,3,5"), ranges ("0-9")
// and stepped ranges ("1-10:2"), optionally followed by "%N" to run at most
// N tasks at once. Task ids come back sorted without duplicates;
// maxRunning is 0 when no limit was given.
func ParseArray(s string) (tasks []int, maxRunning int, err error) {
	spec, limit, hasLimit := strings.Cut(s, "%")
	if hasLimit {
		n, ok := arrayNum(limit)
		if !ok || n < 1 {
			return nil, 0, fmt.Errorf("array %q: invalid task limit %q after %%", s, limit)
		}
		maxRunning = n
	}
	if spec == "" {
		return nil, 0, fmt.Errorf("array %q: no task ids", s)
	}
	for item := range strings.SplitSeq(spec, ",") {
		ids, err := arrayItem(item)
		if err != nil {
			return nil, 0, err
		}
		tasks = append(tasks, ids...)
	}
	slices.Sort(tasks)
	return slices.Compact(tasks), maxRunning, nil
}

func arrayItem(item string) ([]int, error) {
	if item == "" {
		return nil, fmt.Errorf("array: empty task id in list")
	}
	if item[0] == '-' {
		return nil, fmt.Errorf("array task id %q: negative", item)
	}
	rng, stepStr, hasStep := strings.Cut(item, ":")
	loStr, hiStr, isRange := strings.Cut(rng, "-")
	lo, ok := arrayNum(loStr)
	if !ok {
		return nil, fmt.Errorf("array task id %q: not a number", item)
	}
	hi := lo
	if isRange {
		if hiStr != "" && hiStr[0] == '-' {
			return nil, fmt.Errorf("array range %s: negative", rng)
		}
		if hi, ok = arrayNum(hiStr); !ok {
			return nil, fmt.Errorf("array range %q: not a number", rng)
		}
	}
	step := 1
	if hasStep {
		if !isRange {
			return nil, fmt.Errorf("array %q: a step needs a range", item)
		}
		if step, ok = arrayNum(stepStr); !ok {
			return nil, fmt.Errorf("array %q: invalid step %q", item, stepStr)
		}
		if step == 0 {
			return nil, fmt.Errorf("array %q: step 0", item)
		}
	}
	if hi < lo {
		return nil, fmt.Errorf("array range %s: end before start", rng)
	}
	if hi > MaxArrayTaskID {
		return nil, fmt.Errorf("array task id %d is above the maximum %d", hi, MaxArrayTaskID)
	}
	var ids []int
	for i := lo; i <= hi; i += step {
		ids = append(ids, i)
	}
	return ids, nil
}

// arrayNum parses a non-negative decimal of at most 18 digits, so adding a
// step to an id at most MaxArrayTaskID cannot overflow.
func arrayNum(s string) (int, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}
