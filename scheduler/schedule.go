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
	// Policy overrides SchedConfig.Policy when not "": PolicyFIFO,
	// PolicyPriority or PolicyBackfill.
	Policy string
	// UpdatePriorities makes the plan carry changed job priorities. The
	// pass always orders by freshly computed priorities; writing them back
	// (for squeue and sprio) is done only now and then, as Slurm's
	// PriorityCalcPeriod does, so age does not cause Raft traffic on
	// every pass.
	UpdatePriorities bool
}

// Scheduling policies, as SchedConfig.Policy and Options.Policy name them.
const (
	// PolicyFIFO starts jobs in submit order; the first job of a
	// partition that cannot start blocks the rest of it.
	PolicyFIFO = "fifo"
	// PolicyPriority is sched/builtin: partition tier, then priority, with
	// the same strict blocking.
	PolicyPriority = "priority"
	// PolicyBackfill is sched/backfill: priority order, and lower jobs
	// start early when they delay no blocked higher one.
	PolicyBackfill = "backfill"
)

// resolvePolicy picks the pass's policy: the option, else the
// configuration, else backfill. "builtin" is Slurm's name for priority.
func resolvePolicy(opts Options, cfg api.SchedConfig) string {
	p := opts.Policy
	if p == "" {
		p = cfg.Policy
	}
	switch p {
	case PolicyFIFO, PolicyPriority:
		return p
	case "builtin":
		return PolicyPriority
	}
	return PolicyBackfill
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

// entry is one pending job with what ordering needs, computed once. It is
// kept small: the queue may hold 100,000 of them.
type entry struct {
	job  *api.Job
	part *api.Partition // nil: missing
	prio int64
}

// queued is the job being considered, with what the checks need.
type queued struct {
	entry
	// Set by prepare once the job is past holds and partition checks.
	ctx   *jobCtx // QoS and associations; nil when accounting is unset
	limit int64   // time limit in seconds (0: none)
	nd    need
	k     int // node count
	resv  int // index in pass.rv of the reservation it runs in, -1: none
}

// request is what the job would add to its user's and accounts' usage.
func (q *queued) request() usage {
	return usage{jobs: 1, cpus: q.nd.cpus * q.k, nodes: q.k, gpus: q.nd.gpus * q.k, mem: q.nd.mem * int64(q.k)}
}

// pass holds the working state of one Schedule call.
type pass struct {
	st     State
	now    time.Time
	opts   Options
	cfg    api.SchedConfig
	policy string
	plan   Plan
	pool   *pool
	// blocked marks partitions (and partition+reservation pairs) whose
	// top job could not get resources.
	blocked map[string]bool
	// arrayRunning counts running tasks per array job, placements included.
	arrayRunning map[uint64]int
	// running holds user+"\x00"+name of running jobs, for singleton.
	running map[string]bool
	deps    map[depKey]depResult
	names   []string

	lim *limits    // nil: no QoS or associations exist
	rv  *resvIndex // nil: no reservation is current
	tl  *timeline  // built when a blocked job first needs a start time
	pre *preemptor // built when a job first may preempt
	// placedEnd[i] is when plan.Placements[i] ends, relative to now.
	placedEnd []time.Duration

	// Backfill: jobs tested behind a blocked one and reservations made,
	// and their caps.
	tested, reserved int
	depth, maxResv   int
	window           time.Duration

	runJobs    []*api.Job // st.RunningJobs(), fetched once
	runFetched bool

	// The job being considered, and the candidate mask and required nodes
	// place last tried.
	cur     queued
	curMask []uint64
	curReq  []int
}

// Schedule runs one pass over a snapshot: pending jobs in policy order,
// each placed best fit or given a pending reason. PolicyFIFO and
// PolicyPriority are strict per partition: once a partition's top job
// cannot get resources, nothing below it in that partition starts.
// PolicyBackfill (the default) gives each blocked job a reservation at its
// earliest start and lets lower jobs start only where and while they do
// not delay it, as Slurm's sched/backfill. Under every policy, QoS,
// association and partition limits and advance reservations hold jobs
// without blocking others, and a job whose QoS may preempt gets running
// jobs of lower QoS stopped (Plan.Preemptions) to start in a later pass.
// Dependencies are judged on the snapshot, so a job whose target starts in
// this pass starts itself in a later one.
func Schedule(now time.Time, st State, opts Options) Plan {
	s := &pass{
		st:      st,
		now:     now,
		opts:    opts,
		plan:    Plan{Time: now},
		blocked: make(map[string]bool),
		deps:    make(map[depKey]depResult),
	}
	pending := st.PendingJobs()
	if len(pending) == 0 {
		return s.plan
	}
	s.cfg = st.SchedConfig()
	s.policy = resolvePolicy(opts, s.cfg)
	def := api.DefaultSchedConfig()
	s.depth = cmp.Or(max(s.cfg.BackfillDepth, 0), def.BackfillDepth)
	s.window = time.Duration(cmp.Or(max(s.cfg.BackfillWindowSec, 0), def.BackfillWindowSec)) * time.Second
	s.maxResv = max(s.cfg.BackfillReservations, 0)

	defPart := DefaultPartition(st)
	parts := make(map[string]*api.Partition)
	for _, p := range st.Partitions() {
		parts[p.Name] = p
	}
	// The values come in PendingJobs order; the map form is the fallback
	// should a State ever list them differently from one call to the next.
	prios := PriorityValues(now, st)
	var byID map[uint64]api.PriorityFactors
	if len(prios) != len(pending) {
		byID = Priorities(now, st)
	}
	queue := make([]entry, 0, len(pending))
	needArrays, needSingleton := false, false
	for k, j := range pending {
		if j.State != api.JobPending {
			continue
		}
		pt := defPart
		if j.Spec.Partition != "" {
			pt = parts[j.Spec.Partition]
		}
		var prio int64
		if byID != nil {
			prio = byID[j.ID].Priority
		} else {
			prio = prios[k]
		}
		if opts.UpdatePriorities && prio != j.Priority {
			if s.plan.Priorities == nil {
				s.plan.Priorities = make(map[uint64]int64)
			}
			s.plan.Priorities[j.ID] = prio
		}
		queue = append(queue, entry{job: j, part: pt, prio: prio})
		if j.HeldBy == "" {
			s.plan.MinCPUs = MinCPUs(s.plan.MinCPUs, j)
		}
		needArrays = needArrays || (j.ArrayJobID != 0 && j.Spec.ArrayMaxRunning > 0)
		for _, d := range j.Spec.Dependencies {
			needSingleton = needSingleton || d.Type == DepSingleton
		}
	}
	bySubmit := func(a, b *entry) int {
		if c := a.job.SubmitTime.Compare(b.job.SubmitTime); c != 0 {
			return c
		}
		return cmp.Compare(a.job.ID, b.job.ID)
	}
	if s.policy == PolicyFIFO {
		slices.SortFunc(queue, func(a, b entry) int { return bySubmit(&a, &b) })
	} else {
		slices.SortFunc(queue, func(a, b entry) int {
			if c := cmp.Compare(tier(b.part), tier(a.part)); c != 0 {
				return c
			}
			if c := cmp.Compare(b.prio, a.prio); c != 0 {
				return c
			}
			return bySubmit(&a, &b)
		})
	}
	if needArrays || needSingleton {
		s.arrayRunning = make(map[uint64]int)
		s.running = make(map[string]bool)
		for _, j := range s.runningJobs() {
			s.noteRunning(j)
		}
	}
	if l := newLimits(st, s.cfg); l.active() {
		s.lim = l
		l.chargeRunning(s.runningJobs())
	}
	s.rv = newResvIndex(now, st)
	for i := range queue {
		s.cur = queued{entry: queue[i]}
		s.consider(&s.cur)
	}
	return s.plan
}

func (s *pass) runningJobs() []*api.Job {
	if !s.runFetched {
		s.runJobs, s.runFetched = s.st.RunningJobs(), true
	}
	return s.runJobs
}

func tier(p *api.Partition) int {
	if p == nil {
		return 0
	}
	return p.PriorityTier
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

// startAt records a pending job's expected start.
func (s *pass) startAt(j *api.Job, at time.Time) {
	if s.plan.StartTimes == nil {
		s.plan.StartTimes = make(map[uint64]time.Time)
	}
	s.plan.StartTimes[j.ID] = at
}

// prepare fills in what the checks past holds and partition need.
func (s *pass) prepare(q *queued) {
	spec := &q.job.Spec
	q.k = max(spec.Nodes, 1, len(spec.NodeList))
	q.nd = need{cpus: spec.CPUsPerNode(), mem: spec.MemoryMBPerNode(), gpus: spec.GPUsPerNode,
		excl: spec.Exclusive || q.part.ExclusiveNodes}
	if q.nd.mem == 0 {
		q.nd.mem = q.part.DefMemPerCPUMB * int64(q.nd.cpus)
	}
	// The store starts the job with the limit resolved at submit, so that
	// is the limit it runs under (0: none), whatever the partition says now.
	q.limit = q.job.TimeLimitSec
	q.resv = -1
	if s.lim != nil {
		q.ctx = s.lim.ctxFor(q.job)
	}
}

// consider decides one job. Reasons are checked in this order: hold,
// partition, QoS and account access, per-job limits, dependency, array
// limit, reservation, usage limits, then resources.
// Only Resources blocks a partition: a job held by a limit or waiting for
// its reservation lets the jobs behind it run, as in Slurm.
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
	if now := s.plan.Time; now.Before(j.Spec.BeginTime) {
		s.setReason(j, api.ReasonBeginTime)
		s.startAt(j, j.Spec.BeginTime)
		return
	}
	s.prepare(q)
	if r := s.jobLimits(q); r != "" {
		s.setReason(j, r)
		return
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
	if r, at := s.reservationGate(q); r != "" {
		s.setReason(j, r)
		if !at.IsZero() {
			s.startAt(j, at)
		}
		return
	}
	if q.ctx != nil {
		if r := q.ctx.exceeds(q.request()); r != "" {
			s.setReason(j, r)
			return
		}
	}
	// A reservation's jobs compete only among themselves, so they block
	// separately from the rest of the partition.
	key := q.part.Name
	if q.resv >= 0 {
		key += "\x00" + s.rv.list[q.resv].Name
	}
	behind := s.blocked[key]
	if behind && (s.policy != PolicyBackfill || s.tested >= s.depth) {
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
	if behind {
		s.tested++
	}
	switch reason := s.place(q); reason {
	case "":
		if q.ctx != nil {
			pl := &s.plan.Placements[len(s.plan.Placements)-1]
			n := len(pl.Nodes)
			s.lim.charge(q.ctx, usage{jobs: 1, cpus: pl.CPUs * n, nodes: n, gpus: pl.GPUs * n, mem: pl.MemoryMB * int64(n)})
		}
	case api.ReasonResources:
		s.blocked[key] = true
		// As Slurm: Resources for the top blocked job, Priority for the
		// ones tested behind it, Resources again for a job waiting for
		// room preemption frees.
		if s.cannotStart(q, !behind) || !behind {
			s.setReason(j, api.ReasonResources)
		} else {
			s.setReason(j, api.ReasonPriority)
		}
	default:
		s.setReason(j, reason)
	}
}

// cannotStart handles a job that has to wait for resources: it preempts
// for it when its QoS may (reporting true), else reserves its earliest
// start under backfill, or estimates it for the top job (top) of a strict
// partition.
func (s *pass) cannotStart(q *queued, top bool) bool {
	if q.ctx != nil && q.ctx.qos != nil && len(q.ctx.qos.Preempt) > 0 && s.preempt(q) {
		return true
	}
	switch {
	case s.policy == PolicyBackfill:
		if s.maxResv > 0 && s.reserved >= s.maxResv {
			return false
		}
		tl := s.timeline()
		at, nodes, ok := tl.earliest(q.nd, q.k, s.curMask, s.curReq, s.window)
		if !ok {
			return false
		}
		tl.hold(nodes, q.nd, at, limitDur(q.limit))
		s.reserved++
		s.startAt(q.job, s.now.Add(at))
	case top:
		if at, _, ok := s.timeline().earliest(q.nd, q.k, s.curMask, s.curReq, s.window); ok {
			s.startAt(q.job, s.now.Add(at))
		}
	}
	return false
}

func (s *pass) ensurePool() *pool {
	if s.pool == nil {
		s.pool = newPool(s.st.Nodes())
	}
	return s.pool
}

// place fits a job on its partition's nodes and appends the placement, or
// returns why it cannot start: Resources when it would fit once running
// jobs end (this blocks the partition), ReqNodeNotAvail when the nodes it
// may use are unusable or too small even when empty (this does not block,
// as sched/builtin only blocks a partition on busy nodes).
func (s *pass) place(q *queued) string {
	p := s.ensurePool()
	spec := &q.job.Spec
	nd := q.nd
	mask := p.candidates(q.part, spec)
	if s.rv != nil {
		mask = s.rv.restrict(s, mask, q)
	}
	required, ok := p.required(spec.NodeList, mask)
	s.curMask, s.curReq = mask, required
	if !ok {
		return api.ReasonReqNodeNotAvail
	}
	end := limitDur(q.limit)
	var guard func(int) bool
	if s.tl != nil && s.tl.held > 0 {
		tl := s.tl
		guard = func(i int) bool { return tl.allows(i, nd, end) }
	}
	chosen := p.pick(mask, required, q.k, nd, guard)
	if chosen == nil {
		if p.couldFit(mask, required, q.k, nd) {
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
		n := p.slots[i].node
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
	p.commit(chosen, nd)
	s.plan.Placements = append(s.plan.Placements, pl)
	s.placedEnd = append(s.placedEnd, end)
	if s.tl != nil {
		s.tl.started(chosen, &pl, end)
	}
	s.noteRunning(q.job)
	return ""
}
