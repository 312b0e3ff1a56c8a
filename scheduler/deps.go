package scheduler

import "github.com/stockade-hpc/stockade/api"

// Dependency types accepted in api.Dependency.Type.
const (
	DepAfter      = "after"
	DepAfterOK    = "afterok"
	DepAfterNotOK = "afternotok"
	DepAfterAny   = "afterany"
	DepSingleton  = "singleton"
)

type depResult int8

const (
	depMet depResult = iota
	depWait
	depNever
)

type depKey struct {
	typ  string
	id   uint64
	task int
}

// dependencyTargets resolves a clause's job id: an array job id names all
// its tasks (or the one task ArrayTask selects), any other id names one job.
// nil means the target does not exist.
func dependencyTargets(st State, id uint64, task int) []*api.Job {
	if tasks := st.JobsByArray(id); len(tasks) > 0 {
		if task < 0 {
			return tasks
		}
		for _, t := range tasks {
			if t.ArrayTaskID == task {
				return []*api.Job{t}
			}
		}
		return nil
	}
	j := st.Job(id)
	if j == nil || (task >= 0 && (j.ArrayJobID == 0 || j.ArrayTaskID != task)) {
		return nil
	}
	return []*api.Job{j}
}

// evalClause applies one clause type to its resolved targets.
func evalClause(typ string, targets []*api.Job) depResult {
	if len(targets) == 0 {
		return depNever
	}
	var started, terminal, completed int
	for _, t := range targets {
		if t.State != api.JobPending {
			started++
		}
		if t.State.Terminal() {
			terminal++
			if t.State == api.JobCompleted {
				completed++
			}
		}
	}
	all := len(targets)
	switch typ {
	case DepAfter:
		if started == all {
			return depMet
		}
	case DepAfterOK:
		if terminal > completed {
			return depNever
		}
		if completed == all {
			return depMet
		}
	case DepAfterNotOK:
		if completed > 0 {
			return depNever
		}
		if terminal == all {
			return depMet
		}
	case DepAfterAny:
		if terminal == all {
			return depMet
		}
	default:
		return depNever
	}
	return depWait
}

// dependencies evaluates every clause of a job; clauses are ANDed (Slurm's
// ',' separator), so one never-satisfiable clause dooms the job.
func (s *pass) dependencies(j *api.Job) depResult {
	res := depMet
	for _, d := range j.Spec.Dependencies {
		var r depResult
		switch {
		case d.Type == DepSingleton:
			if s.running[j.User+"\x00"+j.Spec.Name] {
				r = depWait
			}
		case d.JobID == j.ID || (j.ArrayJobID != 0 && d.JobID == j.ArrayJobID):
			// Possibly self-referential: not cacheable, since the answer
			// depends on which job asks.
			targets := dependencyTargets(s.st, d.JobID, d.ArrayTask)
			r = evalClause(d.Type, targets)
			for _, t := range targets {
				if t.ID == j.ID {
					r = depNever
				}
			}
		default:
			k := depKey{d.Type, d.JobID, d.ArrayTask}
			var ok bool
			if r, ok = s.deps[k]; !ok {
				r = evalClause(d.Type, dependencyTargets(s.st, d.JobID, d.ArrayTask))
				s.deps[k] = r
			}
		}
		if r == depNever {
			return depNever
		}
		if r == depWait {
			res = depWait
		}
	}
	return res
}
