package agent

import (
	"sort"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// localView is what reconcile needs to know about a local job dir.
type localView struct {
	Key jobKey
	// Finished: the job has its terminal state (result or agent outcome)
	// and waits for the report to be accepted.
	Finished   bool
	CancelSent bool
	// PreemptStop: the cancel is a preempted job's, which keeps its grace
	// time; a user's cancel is sent after it, to cut that short.
	PreemptStop bool
	Abandoned   bool
}

type actionKind int

const (
	// actLaunch starts the job's batch script here.
	actLaunch actionKind = iota + 1
	// actCancel stops a local job the controllers want cancelled; its
	// terminal state is reported when the executor has it.
	actCancel
	// actCancelUnstarted ends a job cancelled before it started here: no
	// shim exists, so the agent itself reports CANCELLED.
	actCancelUnstarted
	// actAbandon stops and forgets a local job the controllers no longer
	// run here (requeued, ended elsewhere): no report is sent.
	actAbandon
	// actPreempt stops a local job that was preempted: SIGTERM at once,
	// SIGKILL when its grace time ends (preemptStopBy); its end is
	// reported, and the controllers requeue or end it.
	actPreempt
)

func (k actionKind) String() string {
	switch k {
	case actLaunch:
		return "launch"
	case actCancel:
		return "cancel"
	case actCancelUnstarted:
		return "cancel-unstarted"
	case actAbandon:
		return "abandon"
	case actPreempt:
		return "preempt"
	}
	return "?"
}

type action struct {
	Kind actionKind
	Key  jobKey
	Job  *api.Job // for launch, cancel-unstarted and preempt
}

// plan is reconcile's answer.
type plan struct {
	Actions []action
	// Forget lists remembered finished attempts the work list no longer
	// holds: they can no longer be launched again by a stale list.
	Forget []jobKey
}

// batchHost reports whether node runs the job's batch script: Slurm runs
// it on the first node of the allocation; the other nodes only hold the
// allocation for the job's own srun/mpirun.
func batchHost(j *api.Job, node string) bool {
	return len(j.Nodes) == 0 || j.Nodes[0] == node
}

// reconcile compares the work list (jobs the controllers placed on node
// and consider live) with the local jobs and decides what to do. finished
// holds attempts whose terminal state was already accepted and whose dir
// is gone: a work list fetched before that report was applied must not
// start them again. Abandons and cancels come before launches so a
// requeued job's resources are released before its next attempt starts.
func reconcile(node string, local []localView, finished map[jobKey]bool, work []api.Job) plan {
	var p plan
	local = append([]localView(nil), local...)
	sort.Slice(local, func(a, b int) bool { return keyLess(local[a].Key, local[b].Key) })
	byKey := make(map[jobKey]localView, len(local))
	newest := make(map[uint64]int, len(local)) // highest local attempt per job
	for _, l := range local {
		byKey[l.Key] = l
		if a, ok := newest[l.Key.ID]; !ok || l.Key.Attempt > a {
			newest[l.Key.ID] = l.Key.Attempt
		}
	}
	live := make(map[uint64]*api.Job, len(work)) // running here, by id
	for i := range work {
		j := &work[i]
		if j.State != api.JobRunning || !batchHost(j, node) {
			continue
		}
		if prev, ok := live[j.ID]; ok && prev.Restarts >= j.Restarts {
			continue // duplicate delivery: keep the newest attempt
		}
		live[j.ID] = j
	}

	for _, l := range local {
		if l.Abandoned {
			continue
		}
		j, ok := live[l.Key.ID]
		switch {
		case !ok || j.Restarts > l.Key.Attempt:
			p.Actions = append(p.Actions, action{Kind: actAbandon, Key: l.Key})
		case j.Restarts < l.Key.Attempt:
			// Newer than the list says: the list cannot be older than a
			// launch made from an earlier list, so leave it alone.
		case j.CancelRequested && !l.Finished && (!l.CancelSent || l.PreemptStop):
			p.Actions = append(p.Actions, action{Kind: actCancel, Key: l.Key})
		case !j.PreemptedAt.IsZero() && !l.Finished && !l.CancelSent:
			p.Actions = append(p.Actions, action{Kind: actPreempt, Key: l.Key, Job: j})
		}
	}

	ids := make([]uint64, 0, len(live))
	for id := range live {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	for _, id := range ids {
		j := live[id]
		k := jobKey{j.ID, j.Restarts}
		if _, ok := byKey[k]; ok || finished[k] {
			continue
		}
		if a, ok := newest[k.ID]; ok && a > k.Attempt {
			continue
		}
		if j.CancelRequested || !j.PreemptedAt.IsZero() {
			p.Actions = append(p.Actions, action{Kind: actCancelUnstarted, Key: k, Job: j})
			continue
		}
		p.Actions = append(p.Actions, action{Kind: actLaunch, Key: k, Job: j})
	}

	for k := range finished {
		if j, ok := live[k.ID]; !ok || j.Restarts != k.Attempt {
			p.Forget = append(p.Forget, k)
		}
	}
	sort.Slice(p.Forget, func(a, b int) bool { return keyLess(p.Forget[a], p.Forget[b]) })
	return p
}

// preemptStopBy is when a preempted job's grace time ends: it gets
// SIGTERM at once and SIGKILL then. Without a grace time it is zero: the
// job is cancelled as scancel does it (SIGKILL after the kill grace), as
// Slurm kills a job preempted without GraceTime through its usual
// SIGTERM, KillWait, SIGKILL. An agent that learns of the preemption late
// (a restart) keeps the deadline, and a clock behind the controller's
// never gives more than the grace time from now.
func preemptStopBy(j *api.Job, now time.Time) time.Time {
	if j.GraceTimeSec <= 0 {
		return time.Time{}
	}
	grace := time.Duration(min(j.GraceTimeSec, maxTimeLimitSec)) * time.Second
	if by := j.PreemptedAt.Add(grace); by.Before(now.Add(grace)) {
		return by
	}
	return now.Add(grace)
}

// preemptGrace is what is left at now of the grace time of a preempted
// job being stopped; false for a plain cancel.
func preemptGrace(s *localJob, now time.Time) (time.Duration, bool) {
	if s.stopBy.IsZero() || s.meta.Abandoned {
		return 0, false
	}
	return max(s.stopBy.Sub(now), 0), true
}
