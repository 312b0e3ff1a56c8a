package raftstore

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/scheduler"
)

// Errors returned (wrapped) as command results. The API validates requests
// before proposing them; these are the state machine's safety net.
var (
	ErrInvalidCommand   = errors.New("invalid command")
	ErrUnknownCommand   = errors.New("unknown command type")
	ErrUnknownPartition = errors.New("unknown partition")
	ErrUnknownNode      = errors.New("unknown node")
)

// PlanResult is what Apply returns for CmdApplyPlan.
type PlanResult struct {
	Applied int
	// Rejected lists the jobs whose placement failed the re-check.
	Rejected []uint64
	// Cancelled lists the pending jobs ended by Plan.Cancels.
	Cancelled []uint64
	// Preempted lists the running jobs newly asked to stop by
	// Plan.Preemptions.
	Preempted []uint64
}

// NodesDownResult is what Apply returns for CmdNodesDown and for
// CmdUpdateNodes with NodeState "down": the running jobs the failure hit.
type NodesDownResult struct {
	Requeued []uint64
	Failed   []uint64 // now NODE_FAIL
}

// applier applies commands inside one write transaction.
type applier struct {
	txn   *memdb.Txn
	meta  *stateMeta
	index uint64
	// now is the current command's time (cmdTime).
	now time.Time
	// events counts the transaction's commands (Store.SchedEvents).
	events SchedEvents
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidCommand, fmt.Sprintf(format, args...))
}

// apply dispatches one command. Results per type:
//
//	CmdSubmitJob        *SubmitResult
//	CmdCancelJobs, CmdHoldJobs, CmdReleaseJobs, CmdRequeueJobs
//	                    []uint64 (ids changed)
//	CmdApplyPlan        *PlanResult
//	CmdJobReport        bool (whether the report changed the job)
//	CmdRegisterNode     *api.Node (the stored record; do not modify)
//	CmdNodesDown        *NodesDownResult
//	CmdUpdateNodes      *NodesDownResult for "down", else nil
//	CmdSetPolicy        *policy.Policy (a copy of the stored policy)
//	CmdRecordTOFU       *TOFUResult
//	CmdNodeAttested     *api.Node (the stored record; do not modify)
//	CmdAttestFailed, CmdRevokeEKApproval
//	                    *NodesDownResult (jobs on the evicted nodes)
//	CmdRevokeCert       []string (serials newly revoked, canonical)
//	others              nil
//
// or an error.
func (a *applier) apply(cmd *Command) any {
	if h := handlers[cmd.Type]; h != nil {
		a.now = cmdTime(cmd)
		res := h(a, cmd)
		a.countEvent(cmd, res)
		return res
	}
	return fmt.Errorf("%w %d", ErrUnknownCommand, cmd.Type)
}

// countEvent counts an applied command in a.events (see SchedEvents).
func (a *applier) countEvent(cmd *Command, res any) {
	if _, failed := res.(error); failed {
		return
	}
	switch cmd.Type {
	case CmdApplyPlan, CmdSetController, CmdRemoveController,
		CmdSetPrices, CmdSealEpoch, CmdEpochAnchored, CmdSetSettlement, CmdSetChain:
	case CmdJobReport:
		if changed, _ := res.(bool); changed {
			a.events.Changes++
		}
	case CmdSubmitJob:
		sr, _ := res.(*SubmitResult)
		if sr == nil || sr.Duplicate {
			return
		}
		// Every job of a submission shares its hold, user and account.
		if j := a.job(sr.JobID); j != nil && j.HeldBy != "" && a.assoc(j.Spec.Account, j.User) != nil {
			return
		}
		a.events.Submits++
	default:
		a.events.Changes++
	}
}

var handlers = map[CommandType]func(*applier, *Command) any{
	CmdSubmitJob:    (*applier).submit,
	CmdCancelJobs:   (*applier).cancel,
	CmdHoldJobs:     (*applier).hold,
	CmdReleaseJobs:  (*applier).release,
	CmdRequeueJobs:  (*applier).requeueJobs,
	CmdApplyPlan:    (*applier).applyPlan,
	CmdJobReport:    (*applier).report,
	CmdRegisterNode: (*applier).registerNode,
	CmdNodesDown: func(a *applier, cmd *Command) any {
		return a.nodesDown(cmd.NodeNames, cmd.Reason, cmdTime(cmd))
	},
	CmdUpdateNodes:   (*applier).updateNodes,
	CmdSetPartitions: (*applier).setPartitions,
	CmdAddUser:       (*applier).addUser,
	CmdAddAccount: func(a *applier, cmd *Command) any {
		if cmd.Account == nil || cmd.Account.Name == "" {
			return invalid("account needs a name")
		}
		c := *cmd.Account
		must(a.txn.Insert(tAccounts, &c))
		return nil
	},
	CmdSetController: func(a *applier, cmd *Command) any {
		if cmd.Controller == nil || cmd.Controller.ID == "" {
			return invalid("controller needs an id")
		}
		c := *cmd.Controller
		must(a.txn.Insert(tControllers, &c))
		return nil
	},
	CmdRemoveController: func(a *applier, cmd *Command) any {
		if cmd.Controller == nil || cmd.Controller.ID == "" {
			return invalid("controller needs an id")
		}
		_, err := a.txn.DeleteAll(tControllers, iID, cmd.Controller.ID)
		must(err)
		return nil
	},
	CmdSetPolicy:        (*applier).setPolicy,
	CmdRecordTOFU:       (*applier).recordTOFU,
	CmdApproveEK:        (*applier).approveEK,
	CmdRevokeEKApproval: (*applier).revokeEKApproval,
	CmdNodeAttested:     (*applier).nodeAttested,
	CmdAttestFailed:     (*applier).attestFailed,
	CmdRefused:          (*applier).refused,
	CmdRevokeCert:       (*applier).revokeCerts,
}

// cmdTime is the proposer's clock, the only time Apply may use.
func cmdTime(cmd *Command) time.Time { return time.Unix(0, cmd.Time).UTC() }

func (a *applier) job(id uint64) *api.Job {
	raw, err := a.txn.First(tJobs, iID, id)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*api.Job)
}

func (a *applier) node(name string) *api.Node {
	raw, err := a.txn.First(tNodes, iID, name)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*api.Node)
}

func (a *applier) partition(name string) *api.Partition {
	raw, err := a.txn.First(tPartitions, iID, name)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*api.Partition)
}

// putJob stores a job record that the caller has freshly copied.
func (a *applier) putJob(j *api.Job) {
	j.ModifyIndex = a.index
	must(a.txn.Insert(tJobs, j))
}

func (a *applier) putNode(n *api.Node) {
	n.ModifyIndex = a.index
	must(a.txn.Insert(tNodes, n))
}

func (a *applier) submit(cmd *Command) any {
	sj := cmd.Submit
	if sj == nil {
		return invalid("submit without a job")
	}
	spec := sj.Spec
	if spec.SubmitID != "" {
		raw, err := a.txn.First(tJobs, iSubmit, spec.SubmitID)
		must(err)
		if raw != nil {
			return a.submitResult(raw.(*api.Job), true)
		}
	}
	var part *api.Partition
	if spec.Partition == "" {
		if part = defaultPartition(a.txn); part == nil {
			return fmt.Errorf("%w: no partition given and no default partition", ErrUnknownPartition)
		}
	} else if part = a.partition(spec.Partition); part == nil {
		return fmt.Errorf("%w %q", ErrUnknownPartition, spec.Partition)
	}
	spec.Partition = part.Name
	a.resolveSubmit(&spec, sj.User)
	limit := spec.TimeLimitSec
	for _, v := range []int64{part.DefaultTimeSec, part.MaxTimeSec} {
		if limit == 0 {
			limit = v
		}
	}

	var tasks []int
	seen := make(map[int]bool, len(spec.ArrayTasks))
	for _, t := range spec.ArrayTasks {
		if t < 0 {
			return invalid("negative array task id %d", t)
		}
		if !seen[t] {
			seen[t] = true
			tasks = append(tasks, t)
		}
	}
	// Tasks are expanded into jobs; keeping the list in every task would
	// make the state quadratic in the array size. Spec.Array keeps the text.
	spec.ArrayTasks = nil

	now := cmdTime(cmd)
	tmpl := api.Job{
		ArrayTaskID: -1,
		User:        sj.User,
		UID:         sj.UID,
		GID:         sj.GID,
		Spec:        spec,
		State:       api.JobPending,
		Reason:      api.ReasonNone,
		// Set now so the first scheduler pass need not rewrite every job.
		Priority:     scheduler.JobPriority(part, spec.Nice),
		SubmitTime:   now,
		TimeLimitSec: limit,
	}
	if spec.Hold {
		tmpl.HeldBy, tmpl.Reason = "user", api.ReasonJobHeldUser
	}
	if len(tasks) == 0 {
		j := tmpl
		j.ID = a.nextJobID()
		a.putJob(&j)
		return &SubmitResult{JobID: j.ID}
	}
	res := &SubmitResult{TaskIDs: make([]uint64, 0, len(tasks))}
	for i, t := range tasks {
		j := tmpl
		j.ID = a.nextJobID()
		if i == 0 {
			res.JobID = j.ID
		}
		j.ArrayJobID, j.ArrayTaskID = res.JobID, t
		a.putJob(&j)
		res.TaskIDs = append(res.TaskIDs, j.ID)
	}
	return res
}

func (a *applier) nextJobID() uint64 {
	id := a.meta.NextJobID
	a.meta.NextJobID++
	return id
}

// submitResult rebuilds the answer of an earlier submission from its jobs.
func (a *applier) submitResult(j *api.Job, dup bool) *SubmitResult {
	if j.ArrayJobID == 0 {
		return &SubmitResult{JobID: j.ID, Duplicate: dup}
	}
	res := &SubmitResult{JobID: j.ArrayJobID, Duplicate: dup}
	it, err := a.txn.Get(tJobs, iArray, j.ArrayJobID)
	must(err)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		res.TaskIDs = append(res.TaskIDs, raw.(*api.Job).ID)
	}
	return res
}

// cancel ends pending jobs at once and asks agents to stop running ones.
func (a *applier) cancel(cmd *Command) any {
	changed := []uint64{}
	now := cmdTime(cmd)
	for _, id := range cmd.JobIDs {
		j := a.job(id)
		if j == nil {
			continue
		}
		c := *j
		switch {
		case j.State == api.JobPending:
			c.State, c.EndTime, c.Reason = api.JobCancelled, now, ""
		case j.State == api.JobRunning && !j.CancelRequested:
			c.CancelRequested = true
		default:
			continue
		}
		a.putJob(&c)
		changed = append(changed, id)
	}
	return changed
}

func heldReason(by string) string {
	if by == "admin" {
		return api.ReasonJobHeldAdmin
	}
	return api.ReasonJobHeldUser
}

// hold holds pending jobs. An admin hold is not weakened by a user hold.
func (a *applier) hold(cmd *Command) any {
	if cmd.HeldBy != "user" && cmd.HeldBy != "admin" {
		return invalid("held_by must be user or admin, not %q", cmd.HeldBy)
	}
	changed := []uint64{}
	for _, id := range cmd.JobIDs {
		j := a.job(id)
		if j == nil || j.State != api.JobPending || j.HeldBy == cmd.HeldBy || j.HeldBy == "admin" {
			continue
		}
		c := *j
		c.HeldBy, c.Reason = cmd.HeldBy, heldReason(cmd.HeldBy)
		a.putJob(&c)
		changed = append(changed, id)
	}
	return changed
}

// release clears holds. For CmdReleaseJobs, HeldBy names who releases: a
// "user" release leaves admin holds in place (the API also checks this).
func (a *applier) release(cmd *Command) any {
	if cmd.HeldBy != "user" && cmd.HeldBy != "admin" {
		return invalid("held_by (the releaser) must be user or admin, not %q", cmd.HeldBy)
	}
	changed := []uint64{}
	for _, id := range cmd.JobIDs {
		j := a.job(id)
		if j == nil || j.State != api.JobPending || j.HeldBy == "" ||
			(j.HeldBy == "admin" && cmd.HeldBy == "user") {
			continue
		}
		c := *j
		c.HeldBy, c.Reason = "", api.ReasonNone
		a.putJob(&c)
		changed = append(changed, id)
	}
	return changed
}

// requeueJobs puts running and finished jobs back in the queue, as
// scontrol requeue does for batch jobs. Only jobs submitted with Requeue
// qualify (Slurm refuses to requeue --no-requeue jobs); pending ones are
// left alone.
func (a *applier) requeueJobs(cmd *Command) any {
	changed := []uint64{}
	for _, id := range cmd.JobIDs {
		j := a.job(id)
		if j == nil || j.State == api.JobPending || !j.Spec.Requeue {
			continue
		}
		a.requeue(j)
		changed = append(changed, id)
	}
	return changed
}

// requeue makes a running or terminal job pending again as a new attempt.
func (a *applier) requeue(j *api.Job) {
	if j.State == api.JobRunning {
		a.freeNodes(j)
	}
	c := *j
	c.State, c.Reason = api.JobPending, api.ReasonNone
	if c.HeldBy != "" {
		c.Reason = heldReason(c.HeldBy)
	}
	a.endJobSteps(j.ID, a.now)
	c.Restarts++
	c.Nodes = nil
	c.StartTime, c.EndTime = time.Time{}, time.Time{}
	c.AllocCPUs, c.AllocMemoryMB, c.AllocGPUs = 0, 0, 0
	c.CancelRequested = false
	c.PreemptedAt, c.GraceTimeSec, c.PreemptMode = time.Time{}, 0, ""
	c.Usage = api.Usage{}
	c.ExitCode, c.ExitSignal, c.FailReason = 0, 0, ""
	a.putJob(&c)
}

// finish ends a job in a terminal state; the only path besides requeue that
// frees a running job's resources.
func (a *applier) finish(j *api.Job, st api.JobState, end time.Time, mod func(*api.Job)) {
	if j.State == api.JobRunning {
		a.freeNodes(j)
		a.chargeUsage(j, end)
	}
	a.endJobSteps(j.ID, end)
	c := *j
	c.State, c.EndTime, c.CancelRequested = st, end, false
	if mod != nil {
		mod(&c)
	}
	a.putJob(&c)
	// Only an attempt that ran used anything: a pending cancel is free.
	if j.State == api.JobRunning {
		a.writeRecord(&c)
	}
}

// freeNodes returns a job's per-node allocation to its nodes.
func (a *applier) freeNodes(j *api.Job) {
	for _, name := range j.Nodes {
		n := a.node(name)
		if n == nil {
			continue
		}
		c := *n
		c.AllocCPUs = max(0, c.AllocCPUs-j.AllocCPUs)
		c.AllocMemoryMB = max(0, c.AllocMemoryMB-j.AllocMemoryMB)
		c.AllocGPUs = max(0, c.AllocGPUs-j.AllocGPUs)
		// An exclusive job is alone on its nodes.
		if c.AllocCPUs == 0 && c.AllocMemoryMB == 0 && c.AllocGPUs == 0 {
			c.Exclusive = false
		}
		a.putNode(&c)
	}
}

func sortedKeys[V any](m map[uint64]V) []uint64 {
	keys := make([]uint64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// applyPlan commits a scheduler pass, re-checking every placement against
// the current state: a stale plan may lose placements but never overcommit.
func (a *applier) applyPlan(cmd *Command) any {
	p := cmd.Plan
	if p == nil {
		return invalid("apply plan without a plan")
	}
	res := &PlanResult{}
	now := cmdTime(cmd)
	// Sorted so every member writes in the same order.
	for _, id := range sortedKeys(p.Priorities) {
		if j := a.job(id); j != nil && j.State == api.JobPending && j.Priority != p.Priorities[id] {
			c := *j
			c.Priority = p.Priorities[id]
			a.putJob(&c)
		}
	}
	for _, id := range sortedKeys(p.Reasons) {
		if j := a.job(id); j != nil && j.State == api.JobPending && j.Reason != p.Reasons[id] {
			c := *j
			c.Reason = p.Reasons[id]
			a.putJob(&c)
		}
	}
	for i := range p.Placements {
		pl := &p.Placements[i]
		if a.place(pl, now) {
			res.Applied++
		} else {
			res.Rejected = append(res.Rejected, pl.JobID)
		}
	}
	for _, id := range p.Cancels {
		if j := a.job(id); j != nil && j.State == api.JobPending {
			c := *j
			c.State, c.EndTime = api.JobCancelled, now
			a.putJob(&c)
			res.Cancelled = append(res.Cancelled, id)
		}
	}
	res.Preempted = a.preempt(p.Preemptions, now)
	return res
}

// place starts one job if all of its nodes still have room (all or nothing).
func (a *applier) place(pl *scheduler.Placement, now time.Time) bool {
	j := a.job(pl.JobID)
	if j == nil || j.State != api.JobPending || j.HeldBy != "" {
		return false
	}
	if len(pl.Nodes) == 0 || pl.CPUs < 1 || pl.MemoryMB < 0 || pl.GPUs < 0 {
		return false
	}
	// Without its partition the trust requirement is unknown: fail closed.
	pt := a.partition(j.Spec.Partition)
	if pt == nil {
		return false
	}
	nodes := make([]*api.Node, len(pl.Nodes))
	for i, name := range pl.Nodes {
		n := a.node(name)
		// A node listed twice would be checked against a stale allocation.
		if n == nil || slices.Contains(pl.Nodes[:i], name) ||
			!scheduler.Fits(n, pl.CPUs, pl.MemoryMB, pl.GPUs, pl.Exclusive) ||
			!scheduler.TrustSatisfies(n, pt.RequireTrust) {
			return false
		}
		nodes[i] = n
	}
	for _, n := range nodes {
		c := *n
		c.AllocCPUs += pl.CPUs
		c.AllocMemoryMB += pl.MemoryMB
		c.AllocGPUs += pl.GPUs
		if pl.Exclusive {
			c.Exclusive = true
		}
		a.putNode(&c)
	}
	c := *j
	c.State, c.Reason, c.StartTime = api.JobRunning, api.ReasonNone, now
	c.Nodes = slices.Clone(pl.Nodes)
	c.AllocCPUs, c.AllocMemoryMB, c.AllocGPUs = pl.CPUs, pl.MemoryMB, pl.GPUs
	a.putJob(&c)
	return true
}

// report records an agent's progress or final report for the current
// attempt of a running job; anything else is stale and ignored.
func (a *applier) report(cmd *Command) any {
	r := cmd.Report
	if r == nil {
		return invalid("job report without a report")
	}
	j := a.job(r.JobID)
	if j == nil || j.State != api.JobRunning || r.Attempt != j.Restarts || !slices.Contains(j.Nodes, r.Node) {
		return false
	}
	switch {
	case r.State == api.JobRunning:
		if j.Usage == r.Usage {
			return false
		}
		c := *j
		c.Usage = r.Usage
		a.putJob(&c)
	case knownEnd(r.State):
		end := cmdTime(cmd)
		if r.EndUnix > 0 {
			end = time.Unix(r.EndUnix, 0).UTC()
		}
		// A user's cancel during the grace time wins over preemption.
		if !j.PreemptedAt.IsZero() && !j.CancelRequested {
			a.endPreempted(j, r, end)
			return true
		}
		a.finish(j, r.State, end, func(c *api.Job) {
			c.ExitCode, c.ExitSignal, c.Usage, c.FailReason = r.ExitCode, r.ExitSignal, r.Usage, r.Reason
		})
	default:
		return false
	}
	return true
}

// knownEnd reports whether st is a terminal state an agent may report
// (Terminal alone would accept any unknown string).
func knownEnd(st api.JobState) bool {
	switch st {
	case api.JobCompleted, api.JobFailed, api.JobCancelled, api.JobTimeout, api.JobOutOfMemory, api.JobNodeFail:
		return true
	}
	return false
}

// registerNode records an agent's inventory. Drain, allocation, an
// admin's reason and attestation results survive; a DOWN node comes back UP
// and, unless drained, loses the reason it went down for.
func (a *applier) registerNode(cmd *Command) any {
	reg := cmd.Register
	if reg == nil || reg.Name == "" {
		return invalid("node registration needs a name")
	}
	var c api.Node
	if old := a.node(reg.Name); old != nil {
		c = *old
		if old.State == api.NodeDown && !old.Drain {
			c.Reason = ""
		}
	}
	c.Name = reg.Name
	c.CPUs, c.MemoryMB, c.GPUs = reg.CPUs, reg.MemoryMB, reg.GPUs
	c.Features = slices.Clone(reg.Features)
	c.State = api.NodeUp
	c.RegisteredAt = cmdTime(cmd)
	c.BootTime = time.Time{}
	if reg.BootTime > 0 {
		c.BootTime = time.Unix(reg.BootTime, 0).UTC()
	}
	c.AgentVersion, c.Arch, c.OS = reg.AgentVersion, reg.Arch, reg.OS
	if c.Trust == "" {
		c.Trust = api.TrustNone
	}
	a.putNode(&c)
	return &c
}

// nodesDown marks nodes DOWN and ends or requeues the running jobs on them.
// Unknown names are skipped: the caller is the controller's own failure
// detector, not a user.
func (a *applier) nodesDown(names []string, reason string, now time.Time) *NodesDownResult {
	res := &NodesDownResult{}
	for _, name := range names {
		n := a.node(name)
		if n == nil {
			continue
		}
		c := *n
		c.State = api.NodeDown
		// An attestation drain keeps its reason: re-admission lifts only
		// that drain, and it must still recognise it once the node also
		// stopped answering.
		if !(c.Drain && strings.HasPrefix(c.Reason, attestDrainPrefix)) {
			c.Reason = reason
		}
		a.putNode(&c)
		a.endJobs(name, reason, now, false, res)
	}
	return res
}

// endJobs handles a node failure for the running jobs on a node: requeued
// if they allow it and kill is false, else ended NODE_FAIL.
func (a *applier) endJobs(name, reason string, now time.Time, kill bool, res *NodesDownResult) {
	// Collect first: memdb iterators must not see their own writes.
	var ids []uint64
	it, err := a.txn.Get(tJobs, iNode, name)
	must(err)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		ids = append(ids, raw.(*api.Job).ID)
	}
	for _, id := range ids {
		j := a.job(id)
		if j == nil || j.State != api.JobRunning {
			continue
		}
		if j.Spec.Requeue && !kill {
			a.requeue(j)
			res.Requeued = append(res.Requeued, id)
			continue
		}
		a.finish(j, api.JobNodeFail, now, func(c *api.Job) {
			c.FailReason = "node " + name + " failed"
			if reason != "" {
				c.FailReason += ": " + reason
			}
		})
		res.Failed = append(res.Failed, id)
	}
}

// updateNodes is scontrol update nodename=... state=drain|resume|down.
func (a *applier) updateNodes(cmd *Command) any {
	switch cmd.NodeState {
	case "drain", "resume", "down":
	default:
		return invalid("node state must be drain, resume or down, not %q", cmd.NodeState)
	}
	for _, name := range cmd.NodeNames {
		if a.node(name) == nil {
			return fmt.Errorf("%w %q", ErrUnknownNode, name)
		}
	}
	if cmd.NodeState == "down" {
		return a.nodesDown(cmd.NodeNames, cmd.Reason, cmdTime(cmd))
	}
	for _, name := range cmd.NodeNames {
		c := *a.node(name)
		if cmd.NodeState == "drain" {
			c.Drain, c.Reason = true, cmd.Reason
		} else {
			c.Drain, c.Reason = false, ""
			if c.State == api.NodeDown {
				c.State = api.NodeUp
			}
		}
		a.putNode(&c)
	}
	return nil
}

// setPartitions replaces the partition table and creates configured nodes
// that do not exist yet, in state UNKNOWN until their agent registers.
func (a *applier) setPartitions(cmd *Command) any {
	seen := map[string]bool{}
	defaults := 0
	for _, p := range cmd.Partitions {
		if p.Name == "" || seen[p.Name] {
			return invalid("partition names must be unique and non-empty (%q)", p.Name)
		}
		seen[p.Name] = true
		if p.Default {
			defaults++
		}
		if !validRequireTrust(p.RequireTrust) {
			return invalid("partition %s: require_trust %q is not empty, %s, %s or %s", p.Name, p.RequireTrust, api.TrustNone, api.TrustApproved, api.TrustAttested)
		}
	}
	if defaults > 1 {
		return invalid("%d default partitions", defaults)
	}
	for _, n := range cmd.ConfiguredNodes {
		if n.Name == "" {
			return invalid("configured node without a name")
		}
	}
	_, err := a.txn.DeleteAll(tPartitions, iID)
	must(err)
	for _, p := range cmd.Partitions {
		c := p
		c.Nodes = slices.Clone(p.Nodes)
		must(a.txn.Insert(tPartitions, &c))
	}
	for _, n := range cmd.ConfiguredNodes {
		if a.node(n.Name) != nil {
			continue
		}
		c := n
		c.Features = slices.Clone(n.Features)
		c.State, c.Drain = api.NodeUnknown, false
		c.AllocCPUs, c.AllocMemoryMB, c.AllocGPUs, c.Exclusive = 0, 0, 0, false
		// Trust comes only from attestation, never from configuration.
		c.Trust, c.EKFingerprint, c.LastQuote, c.AttestError, c.CertSerial = api.TrustNone, "", time.Time{}, "", ""
		a.putNode(&c)
	}
	return nil
}

// addUser upserts a user. The token hash travels in UserTokenHash because
// api.User does not marshal it.
func (a *applier) addUser(cmd *Command) any {
	if cmd.User == nil || cmd.User.Name == "" {
		return invalid("user needs a name")
	}
	c := *cmd.User
	c.Accounts = slices.Clone(c.Accounts)
	if cmd.UserTokenHash != "" {
		c.TokenHash = cmd.UserTokenHash
	}
	must(a.txn.Insert(tUsers, &c))
	return nil
}
