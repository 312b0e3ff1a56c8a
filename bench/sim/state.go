package sim

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/scheduler"
)

// Names of the simulated cluster's single partition, account tree root and
// QoS.
const (
	partitionName = "batch"
	rootAccount   = "root"
	qosName       = "normal"
	nodeMemMBCPU  = 4096 // per CPU; jobs ask for none, so any size works
)

// state is the simulated cluster as the scheduler sees it. It is updated in
// place as jobs are submitted, start and end, so a pass costs what the
// scheduler costs and never a rebuild of the snapshot.
type state struct {
	cfg      api.SchedConfig
	nodes    []*api.Node
	byName   map[string]*api.Node
	parts    []*api.Partition
	pending  []*api.Job
	running  []*api.Job
	runPos   map[uint64]int // index of each running job in running
	jobs     map[uint64]*api.Job
	accounts []*api.Account
	assocs   []*api.Association
	qos      []*api.QOS
	usage    []*api.FairShareUsage
	usageOf  map[string]*api.FairShareUsage
}

var _ scheduler.State = (*state)(nil)

// newState builds a cluster of identical nodes in one default partition,
// with one account per user, all with equal shares, so fair-share has
// something to balance under the priority policies.
func newState(nodes, cpus int, policy string, users []int, origin time.Time) *state {
	st := &state{
		cfg:     api.DefaultSchedConfig(),
		byName:  make(map[string]*api.Node, nodes),
		runPos:  make(map[uint64]int),
		jobs:    make(map[uint64]*api.Job),
		usageOf: make(map[string]*api.FairShareUsage),
	}
	if policy != "" {
		st.cfg.Policy = policy
	}
	pt := &api.Partition{Name: partitionName, Default: true, Up: true, Nodes: make([]string, 0, nodes)}
	width := len(strconv.Itoa(nodes))
	for i := range nodes {
		n := &api.Node{
			Name: fmt.Sprintf("n%0*d", width, i+1), CPUs: cpus, MemoryMB: int64(cpus) * nodeMemMBCPU,
			State: api.NodeUp, Trust: api.TrustNone,
		}
		st.nodes = append(st.nodes, n)
		st.byName[n.Name] = n
		pt.Nodes = append(pt.Nodes, n.Name)
	}
	st.parts = []*api.Partition{pt}
	st.qos = []*api.QOS{{Name: qosName}}
	st.accounts = []*api.Account{{Name: rootAccount}}
	st.assocs = []*api.Association{{Account: rootAccount, Shares: 1}}
	seen := make(map[int]bool)
	for _, u := range users {
		if seen[u] {
			continue
		}
		seen[u] = true
		acct := accountName(u)
		st.accounts = append(st.accounts, &api.Account{Name: acct, Parent: rootAccount})
		st.assocs = append(st.assocs,
			&api.Association{Account: acct, Shares: 1},
			&api.Association{Account: acct, User: userName(u), Shares: 1})
		fu := &api.FairShareUsage{Account: acct, User: userName(u), UpdatedAt: origin}
		st.usage = append(st.usage, fu)
		st.usageOf[fu.Key()] = fu
	}
	// The store lists records in key order; so does this state.
	slices.SortFunc(st.accounts, func(a, b *api.Account) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(st.assocs, func(a, b *api.Association) int { return cmp.Compare(a.Key(), b.Key()) })
	slices.SortFunc(st.usage, func(a, b *api.FairShareUsage) int { return cmp.Compare(a.Key(), b.Key()) })
	return st
}

func userName(uid int) string {
	if uid < 0 {
		return "unknown"
	}
	return "u" + strconv.Itoa(uid)
}

func accountName(uid int) string { return "a-" + userName(uid) }

// shape maps a request for procs CPUs to whole nodes: as few nodes as
// possible, the CPUs spread evenly over them.
func shape(procs, cpusPerNode int) (nodes, cpus int) {
	nodes = (procs + cpusPerNode - 1) / cpusPerNode
	return nodes, (procs + nodes - 1) / nodes
}

// newJob makes the pending job a workload record submits.
func newJob(w *Job, cpusPerNode int, origin time.Time) *api.Job {
	nodes, _ := shape(w.Procs, cpusPerNode)
	return &api.Job{
		ID: w.ID, ArrayTaskID: -1, User: userName(w.User), UID: uint32(max(w.User, 0)), GID: uint32(max(w.Group, 0)),
		Spec: api.JobSpec{
			Name: "swf", Partition: partitionName, Account: accountName(w.User), QOS: qosName,
			Nodes: nodes, Tasks: w.Procs, CPUsPerTask: 1, TimeLimitSec: limitOf(w),
		},
		State:        api.JobPending,
		SubmitTime:   origin.Add(time.Duration(w.Submit) * time.Second),
		TimeLimitSec: limitOf(w),
	}
}

// limitOf is the job's time limit: the requested time, or the run time
// when the trace does not give one (exact estimates), at least a second as
// 0 means "no limit".
func limitOf(w *Job) int64 {
	if w.ReqTime > 0 {
		return w.ReqTime
	}
	return max(w.Run, 1)
}

func (s *state) submit(j *api.Job) {
	s.pending = append(s.pending, j)
	s.jobs[j.ID] = j
}

// start applies one placement as the state store would: it must be for a
// pending job and fit on every node, or it is rejected.
func (s *state) start(pl *scheduler.Placement, now time.Time) error {
	j := s.jobs[pl.JobID]
	if j == nil || j.State != api.JobPending {
		return fmt.Errorf("job %d: not pending", pl.JobID)
	}
	if len(pl.Nodes) == 0 {
		return fmt.Errorf("job %d: no nodes", pl.JobID)
	}
	for x, name := range pl.Nodes {
		n := s.byName[name]
		if n == nil || !scheduler.Fits(n, pl.CPUs, pl.MemoryMB, pl.GPUs, pl.Exclusive) ||
			slices.Contains(pl.Nodes[:x], name) {
			return fmt.Errorf("job %d: does not fit on %s", pl.JobID, name)
		}
	}
	for _, name := range pl.Nodes {
		n := s.byName[name]
		n.AllocCPUs += pl.CPUs
		n.AllocMemoryMB += pl.MemoryMB
		n.AllocGPUs += pl.GPUs
		n.Exclusive = n.Exclusive || pl.Exclusive
	}
	j.State, j.Reason, j.StartTime, j.Nodes = api.JobRunning, api.ReasonNone, now, pl.Nodes
	j.AllocCPUs, j.AllocMemoryMB, j.AllocGPUs = pl.CPUs, pl.MemoryMB, pl.GPUs
	s.runPos[j.ID] = len(s.running)
	s.running = append(s.running, j)
	return nil
}

// compactPending drops the jobs a plan started or cancelled, keeping the
// others in submit order: one sweep per pass rather than one per job.
func (s *state) compactPending() {
	s.pending = slices.DeleteFunc(s.pending, func(j *api.Job) bool { return j.State != api.JobPending })
}

// cancel ends a pending job the scheduler gave up on.
func (s *state) cancel(id uint64, now time.Time) bool {
	j := s.jobs[id]
	if j == nil || j.State != api.JobPending {
		return false
	}
	j.State, j.EndTime = api.JobCancelled, now
	delete(s.jobs, id)
	return true
}

// finish ends a running job: its nodes are freed, its usage is charged to
// its association, and the record is dropped (nothing depends on finished
// jobs here, and a million of them would not fit in memory).
func (s *state) finish(j *api.Job, end api.JobState, now time.Time) {
	for _, name := range j.Nodes {
		n := s.byName[name]
		n.AllocCPUs -= j.AllocCPUs
		n.AllocMemoryMB -= j.AllocMemoryMB
		n.AllocGPUs -= j.AllocGPUs
		if n.AllocCPUs == 0 && n.AllocMemoryMB == 0 && n.AllocGPUs == 0 {
			n.Exclusive = false
		}
	}
	j.State, j.EndTime = end, now
	i := s.runPos[j.ID]
	last := len(s.running) - 1
	s.running[i] = s.running[last]
	s.runPos[s.running[i].ID] = i
	s.running[last] = nil
	s.running = s.running[:last]
	delete(s.runPos, j.ID)
	delete(s.jobs, j.ID)
	// Charged as the state store charges it when a job ends.
	if u := s.usageOf[api.AssocKey(j.Spec.Account, j.User)]; u != nil {
		chargeUsage(u, scheduler.JobUsage(j, now, s.cfg, s.QOS(j.Spec.QOS)), now, s.cfg.DecayHalfLifeSec)
	}
}

// chargeUsage decays an association's usage to now and adds add.
func chargeUsage(u *api.FairShareUsage, add float64, now time.Time, halfLifeSec int64) {
	if now.After(u.UpdatedAt) {
		u.Raw = scheduler.DecayUsage(u.Raw, u.UpdatedAt, now, halfLifeSec)
		u.UpdatedAt = now
	}
	u.Raw += add
}

func (s *state) PendingJobs() []*api.Job               { return s.pending }
func (s *state) RunningJobs() []*api.Job               { return s.running }
func (s *state) Job(id uint64) *api.Job                { return s.jobs[id] }
func (s *state) JobsByArray(uint64) []*api.Job         { return nil }
func (s *state) Nodes() []*api.Node                    { return s.nodes }
func (s *state) Node(name string) *api.Node            { return s.byName[name] }
func (s *state) Partitions() []*api.Partition          { return s.parts }
func (s *state) Accounts() []*api.Account              { return s.accounts }
func (s *state) Associations() []*api.Association      { return s.assocs }
func (s *state) QOSList() []*api.QOS                   { return s.qos }
func (s *state) Reservations() []*api.Reservation      { return nil }
func (s *state) SchedConfig() api.SchedConfig          { return s.cfg }
func (s *state) FairShareUsage() []*api.FairShareUsage { return s.usage }

func (s *state) Partition(name string) *api.Partition {
	if name == partitionName {
		return s.parts[0]
	}
	return nil
}

func (s *state) QOS(name string) *api.QOS {
	if name == qosName {
		return s.qos[0]
	}
	return nil
}
