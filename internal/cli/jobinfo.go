package cli

import (
	"path/filepath"
	"strconv"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
	"github.com/stockade-hpc/stockade/internal/sbatch"
)

// Derived job facts shared by squeue, scontrol and sacct, computed the way
// Slurm's tools compute them.

// jobNodeCount is the number of nodes a job holds, or asks for.
func jobNodeCount(j *api.Job) int {
	if len(j.Nodes) > 0 {
		return len(j.Nodes)
	}
	return max(j.Spec.Nodes, 1)
}

// jobStarted reports whether the job has been given nodes.
func jobStarted(j *api.Job) bool { return !j.StartTime.IsZero() && len(j.Nodes) > 0 }

// jobCPUs is the job's CPU count: allocated once it started, else
// requested.
func jobCPUs(j *api.Job) int {
	if jobStarted(j) && j.AllocCPUs > 0 {
		return j.AllocCPUs * len(j.Nodes)
	}
	return j.Spec.CPUsPerNode() * max(j.Spec.Nodes, 1)
}

// jobMemPerNodeMB is the memory per node the job holds or asks for (0:
// not known before the partition default applies).
func jobMemPerNodeMB(j *api.Job) int64 {
	if jobStarted(j) && j.AllocMemoryMB > 0 {
		return j.AllocMemoryMB
	}
	return j.Spec.MemoryMBPerNode()
}

// jobTasks is the number of tasks asked for.
func jobTasks(j *api.Job) int {
	if j.Spec.Tasks > 0 {
		return j.Spec.Tasks
	}
	if j.Spec.TasksPerNode > 0 {
		return j.Spec.TasksPerNode * max(j.Spec.Nodes, 1)
	}
	return max(j.Spec.Nodes, 1)
}

// jobElapsed is squeue's TIME and sacct's Elapsed: 0 until the job starts,
// then up to now (running) or to the end.
func jobElapsed(j *api.Job, now time.Time) int64 {
	if j.StartTime.IsZero() || j.State == api.JobPending {
		return 0
	}
	end := j.EndTime
	if j.State == api.JobRunning || end.IsZero() {
		end = now
	}
	if end.Before(j.StartTime) {
		return 0
	}
	return int64(end.Sub(j.StartTime) / time.Second)
}

// jobEnd is the end Slurm reports: the real end of a finished job, the
// limit-bound end of a running one.
func jobEnd(j *api.Job) time.Time {
	if j.State == api.JobRunning && !j.StartTime.IsZero() && j.TimeLimitSec > 0 {
		return j.StartTime.Add(time.Duration(j.TimeLimitSec) * time.Second)
	}
	if j.State.Terminal() {
		return j.EndTime
	}
	return time.Time{}
}

// jobReason is the pending reason as Slurm prints it.
func jobReason(j *api.Job) string {
	if j.Reason == "" {
		return api.ReasonNone
	}
	return j.Reason
}

// jobNodeList is the compressed host list, "" when none.
func jobNodeList(j *api.Job) string {
	if len(j.Nodes) == 0 {
		return ""
	}
	return hostlist.Compress(j.Nodes)
}

// arrayJobID is the array's id for tasks, else the job's own.
func arrayJobID(j *api.Job) uint64 {
	if isArrayTask(j) {
		return j.ArrayJobID
	}
	return j.ID
}

func isArrayTask(j *api.Job) bool { return j.ArrayJobID != 0 && j.ArrayTaskID >= 0 }

// jobGres is the job's GRES request as Slurm spells it.
func jobGres(j *api.Job) string {
	if j.Spec.GPUsPerNode > 0 {
		return "gres/gpu:" + strconv.Itoa(j.Spec.GPUsPerNode)
	}
	return ""
}

// jobStdPath is the job's output (or error) file as scontrol prints it:
// the pattern expanded, relative to the working directory.
func jobStdPath(j *api.Job, pattern string) string {
	if pattern == "" {
		pattern = "slurm-%j.out"
		if isArrayTask(j) {
			pattern = "slurm-%A_%a.out"
		}
	}
	task := -1
	if isArrayTask(j) {
		task = j.ArrayTaskID
	}
	p := sbatch.ExpandPattern(pattern, sbatch.PatternVars{
		JobID: j.ID, ArrayJobID: j.ArrayJobID, ArrayTaskID: task,
		JobName: j.Spec.Name, User: j.User, FirstNode: firstNodeName(j),
	})
	if !filepath.IsAbs(p) && j.Spec.WorkDir != "" {
		p = filepath.Join(j.Spec.WorkDir, p)
	}
	return p
}
