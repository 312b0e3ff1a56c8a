package scheduler

import (
	"cmp"
	"slices"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// Options tunes one scheduling pass.
type Options struct {
	// MaxPlacementsPerPass bounds the number of placements in one plan
	// (0: unlimited), keeping Raft entries and pass times small.
	MaxPlacementsPerPass int
	// Policy overrides SchedConfig.Policy when not "": "fifo",
	// "priority" or "backfill".
	Policy string
	// UpdatePriorities makes the plan carry changed job priorities. The
	// pass always orders by freshly computed priorities; writing them back
	// (for squeue and sprio) is done only now and then, as Slurm's
	// PriorityCalcPeriod does, so age does not cause Raft traffic on
	// every pass.
	UpdatePriorities bool
}

// JobPriority is sched/builtin's priority: the partition's tier dominates,
// then nice. It never drops below 1 because Slurm reserves 0 for held jobs.
func JobPriority(p *api.Partition, nice int) int64 {
	tier := 0
	if p != nil {
		tier = p.PriorityTier
	}
	return max(int64(tier)*1_000_000+100_000-int64(nice), 1)
}

// DefaultPartition is the partition a job that names none runs in (nil when
// none is marked default; the lowest name wins if several are, so every
// controller agrees).
func DefaultPartition(st State) *api.Partition {
	var def *api.Partition
	for _, p := range st.Partitions() {
		if p.Default && (def == nil || p.Name < def.Name) {
			def = p
		}
	}
	return def
}

// queued is one pending job with what ordering needs, computed once.
type queued struct {
	job  *api.Job
	part *api.Partition // nil: missing
	prio int64
}

// pass holds the working state of one Schedule call.
type pass struct {
	st      State
	opts    Options
	plan    Plan
	pool    *pool
	blocked map[string]bool
	// arrayRunning counts running tasks per array job, placements included.
	arrayRunning map[uint64]int
	// running holds user+"\x00"+name of running jobs, for singleton.
	running map[string]bool
	deps    map[depKey]depResult
	names   []string
}

// Schedule runs one pass of Slurm's sched/builtin over a snapshot: pending
// jobs in priority order, each placed best fit or given a pending reason.
// Without backfill, priority is strict per partition: once a partition's
// top job cannot get resources, nothing below it in that partition starts.
// Dependencies are judged on the snapshot, so a job whose target starts in
// this pass starts itself in a later one.
func Schedule(now time.Time, st State, opts Options) Plan {
	s := &pass{
		st:      st,
		opts:    opts,
		plan:    Plan{Time: now},
		blocked: make(map[string]bool),
		deps:    make(map[depKey]depResult),
	}
	pending := st.PendingJobs()
	if len(pending) == 0 {
		return s.plan
	}
	def := DefaultPartition(st)
	prios := Priorities(now, st)
	queue := make([]queued, 0, len(pending))
	needArrays, needSingleton := false, false
	for _, j := range pending {
		if j.State != api.JobPending {
			continue
		}
		pt := def
		if j.Spec.Partition != "" {
			pt = st.Partition(j.Spec.Partition)
		}
		prio := prios[j.ID].Priority
		if opts.UpdatePriorities && prio != j.Priority {
			if s.plan.Priorities == nil {
				s.plan.Priorities = make(map[uint64]int64)
			}
			s.plan.Priorities[j.ID] = prio
		}
		queue = append(queue, queued{job: j, part: pt, prio: prio})
		needArrays = needArrays || (j.ArrayJobID != 0 && j.Spec.ArrayMaxRunning > 0)
		for _, d := range j.Spec.Dependencies {
			needSingleton = needSingleton || d.Type == DepSingleton
		}
	}
	slices.SortFunc(queue, func(a, b queued) int {
		if c := cmp.Compare(b.prio, a.prio); c != 0 {
			return c
		}
		if c := a.job.SubmitTime.Compare(b.job.SubmitTime); c != 0 {
			return c
		}
		return cmp.Compare(a.job.ID, b.job.ID)
	})
	if needArrays || needSingleton {
		s.arrayRunning = make(map[uint64]int)
		s.running = make(map[string]bool)
		for _, j := range st.RunningJobs() {
			s.noteRunning(j)
		}
	}
	for i := range queue {
		s.consider(&queue[i])
	}
	return s.plan
}

func (s *pass) noteRunning(j *api.Job) {
	if s.running == nil {
		return
	}
	if j.ArrayJobID != 0 {
		s.arrayRunning[j.ArrayJobID]++
	}
	s.running[j.User+"\x00"+j.Spec.Name] = true
}

// setReason records a reason only when it changes, so a steady queue
// produces an empty plan and no Raft traffic.
func (s *pass) setReason(j *api.Job, reason string) {
	if j.Reason == reason {
		return
	}
	if s.plan.Reasons == nil {
		s.plan.Reasons = make(map[uint64]string)
	}
	s.plan.Reasons[j.ID] = reason
}

// consider decides one job. Reasons are checked in Slurm's order of
// precedence: hold, partition, dependency, array limit, then resources.
func (s *pass) consider(q *queued) {
	j := q.job
	switch {
	case j.HeldBy == "admin":
		s.setReason(j, api.ReasonJobHeldAdmin)
		return
	case j.HeldBy != "":
		s.setReason(j, api.ReasonJobHeldUser)
		return
	case q.part == nil || !q.part.Up:
		s.setReason(j, api.ReasonPartitionDown)
		return
	case j.CancelRequested:
		return // being cancelled: never start it
	}
	if len(j.Spec.Dependencies) > 0 {
		switch s.dependencies(j) {
		case depWait:
			s.setReason(j, api.ReasonDependency)
			return
		case depNever:
			s.setReason(j, api.ReasonDependencyNeverSatisfied)
			return
		}
	}
	if j.ArrayJobID != 0 && j.Spec.ArrayMaxRunning > 0 && s.arrayRunning[j.ArrayJobID] >= j.Spec.ArrayMaxRunning {
		s.setReason(j, api.ReasonJobArrayTaskLimit)
		return
	}
	if s.blocked[q.part.Name] {
		s.setReason(j, api.ReasonPriority)
		return
	}
	if s.opts.MaxPlacementsPerPass > 0 && len(s.plan.Placements) >= s.opts.MaxPlacementsPerPass {
		// Not tried this pass: waiting its turn. Resources stays as is so a
		// capped pass does not flip the reason back and forth.
		if j.Reason != api.ReasonResources {
			s.setReason(j, api.ReasonPriority)
		}
		return
	}
	switch reason := s.place(q); reason {
	case "":
	case api.ReasonResources:
		s.blocked[q.part.Name] = true
		s.setReason(j, reason)
	default:
		s.setReason(j, reason)
	}
}

// place fits a job on its partition's nodes and appends the placement, or
// returns why it cannot start: Resources when it would fit once running
// jobs end (this blocks the partition), ReqNodeNotAvail when the nodes it
// may use are unusable or too small even when empty (this does not block,
// as sched/builtin only blocks a partition on busy nodes).
func (s *pass) place(q *queued) string {
	if s.pool == nil {
		s.pool = newPool(s.st.Nodes())
	}
	spec := &q.job.Spec
	k := max(spec.Nodes, 1, len(spec.NodeList))
	nd := need{cpus: spec.CPUsPerNode(), mem: spec.MemoryMBPerNode(), gpus: spec.GPUsPerNode, excl: spec.Exclusive}
	if nd.mem == 0 {
		nd.mem = q.part.DefMemPerCPUMB * int64(nd.cpus)
	}
	mask := s.pool.candidates(q.part, spec)
	required, ok := s.pool.required(spec.NodeList, mask)
	if !ok {
		return api.ReasonReqNodeNotAvail
	}
	chosen := s.pool.pick(mask, required, k, nd)
	if chosen == nil {
		if s.pool.couldFit(mask, required, k, nd) {
			return api.ReasonResources
		}
		return api.ReasonReqNodeNotAvail
	}
	slices.Sort(chosen)
	// Node name slices are carved from a shared buffer: one allocation per
	// many placements instead of one each, which matters for GC at scale.
	if cap(s.names)-len(s.names) < len(chosen) {
		s.names = make([]string, 0, max(len(chosen), 1024))
	}
	names := s.names[len(s.names) : len(s.names)+len(chosen) : len(s.names)+len(chosen)]
	s.names = s.names[:len(s.names)+len(chosen)]
	pl := Placement{JobID: q.job.ID, Nodes: names, CPUs: nd.cpus, MemoryMB: nd.mem, GPUs: nd.gpus, Exclusive: nd.excl}
	for x, i := range chosen {
		n := s.pool.slots[i].node
		pl.Nodes[x] = n.Name
		if nd.excl {
			// One value serves every node, so take the smallest node's
			// inventory: the store's Fits accepts it on all of them, and
			// the exclusive flag holds the rest of each node anyway.
			if x == 0 {
				pl.CPUs, pl.MemoryMB, pl.GPUs = n.CPUs, n.MemoryMB, n.GPUs
			}
			pl.CPUs, pl.MemoryMB, pl.GPUs = min(pl.CPUs, n.CPUs), min(pl.MemoryMB, n.MemoryMB), min(pl.GPUs, n.GPUs)
		}
	}
	s.pool.commit(chosen, nd)
	s.plan.Placements = append(s.plan.Placements, pl)
	s.noteRunning(q.job)
	return ""
}
