package scheduler

import (
	"fmt"
	"slices"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// memState is an in-memory State for tests.
type memState struct {
	jobs     []*api.Job
	nodes    []*api.Node
	parts    []*api.Partition
	accounts []*api.Account
	assocs   []*api.Association
	qos      []*api.QOS
	usage    []*api.FairShareUsage
	resvs    []*api.Reservation
	cfg      *api.SchedConfig // nil: api.DefaultSchedConfig()
}

func (m *memState) Accounts() []*api.Account              { return m.accounts }
func (m *memState) Associations() []*api.Association      { return m.assocs }
func (m *memState) QOSList() []*api.QOS                   { return m.qos }
func (m *memState) FairShareUsage() []*api.FairShareUsage { return m.usage }
func (m *memState) Reservations() []*api.Reservation      { return m.resvs }

func (m *memState) QOS(name string) *api.QOS {
	for _, q := range m.qos {
		if q.Name == name {
			return q
		}
	}
	return nil
}

func (m *memState) SchedConfig() api.SchedConfig {
	if m.cfg != nil {
		return *m.cfg
	}
	return api.DefaultSchedConfig()
}

func (m *memState) byState(s api.JobState) []*api.Job {
	var out []*api.Job
	for _, j := range m.jobs {
		if j.State == s {
			out = append(out, j)
		}
	}
	return out
}

func (m *memState) PendingJobs() []*api.Job { return m.byState(api.JobPending) }
func (m *memState) RunningJobs() []*api.Job { return m.byState(api.JobRunning) }

func (m *memState) Job(id uint64) *api.Job {
	for _, j := range m.jobs {
		if j.ID == id {
			return j
		}
	}
	return nil
}

func (m *memState) JobsByArray(id uint64) []*api.Job {
	var out []*api.Job
	for _, j := range m.jobs {
		if j.ArrayJobID == id && id != 0 {
			out = append(out, j)
		}
	}
	return out
}

func (m *memState) Nodes() []*api.Node { return m.nodes }

func (m *memState) Node(name string) *api.Node {
	for _, n := range m.nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func (m *memState) Partitions() []*api.Partition { return m.parts }

func (m *memState) Partition(name string) *api.Partition {
	for _, p := range m.parts {
		if p.Name == name {
			return p
		}
	}
	return nil
}

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// upNode is a registered, usable node.
func upNode(name string, cpus int, memMB int64, gpus int, features ...string) *api.Node {
	return &api.Node{Name: name, CPUs: cpus, MemoryMB: memMB, GPUs: gpus, Features: features, State: api.NodeUp}
}

// nodes makes count identical nodes named prefix1..prefixN.
func nodes(prefix string, count, cpus int, memMB int64) []*api.Node {
	out := make([]*api.Node, count)
	for i := range out {
		out[i] = upNode(fmt.Sprintf("%s%d", prefix, i+1), cpus, memMB, 0)
	}
	return out
}

func part(name string, tier int, nodes ...*api.Node) *api.Partition {
	p := &api.Partition{Name: name, Up: true, PriorityTier: tier}
	for _, n := range nodes {
		p.Nodes = append(p.Nodes, n.Name)
	}
	return p
}

// pend is a pending 1-CPU job submitted id seconds after t0, already
// carrying the priority the scheduler would give it in a tier-0 partition.
func pend(id uint64, partition string) *api.Job {
	return &api.Job{
		ID: id, ArrayTaskID: -1, User: "alice", State: api.JobPending,
		Spec:       api.JobSpec{Name: "job", Partition: partition, Nodes: 1, Tasks: 1, CPUsPerTask: 1},
		Priority:   100_000,
		SubmitTime: t0.Add(time.Duration(id) * time.Second),
	}
}

// with applies edits to a job, keeping table rows short.
func with(j *api.Job, edits ...func(*api.Job)) *api.Job {
	for _, e := range edits {
		e(j)
	}
	return j
}

func state(s api.JobState) func(*api.Job) { return func(j *api.Job) { j.State = s } }
func reason(r string) func(*api.Job)      { return func(j *api.Job) { j.Reason = r } }
func cpus(n int) func(*api.Job)           { return func(j *api.Job) { j.Spec.CPUsPerTask = n } }
func nnodes(n int) func(*api.Job)         { return func(j *api.Job) { j.Spec.Nodes = n; j.Spec.Tasks = n } }
func mem(mb int64) func(*api.Job)         { return func(j *api.Job) { j.Spec.MemoryPerNodeMB = mb } }
func gpus(n int) func(*api.Job)           { return func(j *api.Job) { j.Spec.GPUsPerNode = n } }
func nice(n int) func(*api.Job)           { return func(j *api.Job) { j.Spec.Nice = n } }
func held(by string) func(*api.Job)       { return func(j *api.Job) { j.HeldBy = by } }
func exclusive() func(*api.Job)           { return func(j *api.Job) { j.Spec.Exclusive = true } }
func named(user, name string) func(*api.Job) {
	return func(j *api.Job) { j.User, j.Spec.Name = user, name }
}
func submitted(d time.Duration) func(*api.Job) { return func(j *api.Job) { j.SubmitTime = t0.Add(d) } }
func prio(p int64) func(*api.Job)              { return func(j *api.Job) { j.Priority = p } }
func nodelist(n ...string) func(*api.Job)      { return func(j *api.Job) { j.Spec.NodeList = n } }
func exclude(n ...string) func(*api.Job)       { return func(j *api.Job) { j.Spec.ExcludeNodes = n } }
func constraint(c ...string) func(*api.Job)    { return func(j *api.Job) { j.Spec.Constraints = c } }
func task(array uint64, idx, maxRunning int) func(*api.Job) {
	return func(j *api.Job) { j.ArrayJobID, j.ArrayTaskID, j.Spec.ArrayMaxRunning = array, idx, maxRunning }
}
func dep(typ string, id uint64, task int) func(*api.Job) {
	return func(j *api.Job) {
		j.Spec.Dependencies = append(j.Spec.Dependencies, api.Dependency{Type: typ, JobID: id, ArrayTask: task})
	}
}

// applyPlan checks a plan the way the state store applies it: every
// placement must pass Fits and the partition's trust rule on every node
// against the running totals.
func applyPlan(st State, plan Plan) error {
	nodes := map[string]*api.Node{}
	for _, n := range st.Nodes() {
		c := *n
		nodes[n.Name] = &c
	}
	for _, p := range plan.Placements {
		if len(p.Nodes) != len(slices.Compact(slices.Clone(p.Nodes))) {
			return fmt.Errorf("job %d: duplicate nodes %v", p.JobID, p.Nodes)
		}
		var pt *api.Partition
		if j := st.Job(p.JobID); j == nil {
			return fmt.Errorf("job %d: unknown", p.JobID)
		} else if j.Spec.Partition == "" {
			pt = DefaultPartition(st)
		} else {
			pt = st.Partition(j.Spec.Partition)
		}
		if pt == nil {
			return fmt.Errorf("job %d: no partition", p.JobID)
		}
		for _, name := range p.Nodes {
			n := nodes[name]
			if n == nil || !Fits(n, p.CPUs, p.MemoryMB, p.GPUs, p.Exclusive) {
				return fmt.Errorf("job %d: does not fit on %s", p.JobID, name)
			}
			if !TrustSatisfies(n, pt.RequireTrust) {
				return fmt.Errorf("job %d: %s is not %s", p.JobID, name, pt.RequireTrust)
			}
		}
		for _, name := range p.Nodes {
			n := nodes[name]
			n.AllocCPUs += p.CPUs
			n.AllocMemoryMB += p.MemoryMB
			n.AllocGPUs += p.GPUs
			n.Exclusive = n.Exclusive || p.Exclusive
		}
	}
	return nil
}

func limit(d time.Duration) func(*api.Job) {
	return func(j *api.Job) { j.TimeLimitSec = int64(d / time.Second) }
}
func by(user string) func(*api.Job) { return func(j *api.Job) { j.User = user } }
func acct(a string) func(*api.Job)  { return func(j *api.Job) { j.Spec.Account = a } }
func inQOS(q string) func(*api.Job) { return func(j *api.Job) { j.Spec.QOS = q } }
func resv(r string) func(*api.Job)  { return func(j *api.Job) { j.Spec.Reservation = r } }

// run is a job of partition "p" running on nodes since t0+start (before
// now when negative) under a time limit (0: none), holding cpus on each.
func run(id uint64, cpus int, start, lim time.Duration, nodes ...string) *api.Job {
	j := with(pend(id, "p"), state(api.JobRunning), limit(lim))
	j.Nodes, j.AllocCPUs, j.StartTime = nodes, cpus, t0.Add(start)
	j.Spec.Nodes, j.Spec.Tasks, j.Spec.CPUsPerTask = len(nodes), len(nodes), cpus
	return j
}

// holding returns copies of nodes allocated to the running jobs, as the
// state store keeps them.
func holding(nodes []*api.Node, jobs []*api.Job) []*api.Node {
	out := make([]*api.Node, len(nodes))
	byName := map[string]*api.Node{}
	for i, n := range nodes {
		c := *n
		out[i], byName[n.Name] = &c, &c
	}
	for _, j := range jobs {
		if j.State != api.JobRunning {
			continue
		}
		for _, name := range j.Nodes {
			if n := byName[name]; n != nil {
				n.AllocCPUs += j.AllocCPUs
				n.AllocMemoryMB += j.AllocMemoryMB
				n.AllocGPUs += j.AllocGPUs
				n.Exclusive = n.Exclusive || j.Spec.Exclusive
			}
		}
	}
	return out
}

// afterPlan is the state once the store applied a plan's placements: the
// jobs run from the plan's time, their nodes allocated.
func afterPlan(st *memState, plan Plan) *memState {
	next := *st
	next.jobs = make([]*api.Job, len(st.jobs))
	byID := map[uint64]*api.Job{}
	for i, j := range st.jobs {
		c := *j
		next.jobs[i], byID[j.ID] = &c, &c
	}
	var started []*api.Job
	for _, p := range plan.Placements {
		j := byID[p.JobID]
		j.State, j.Nodes, j.StartTime = api.JobRunning, p.Nodes, plan.Time
		j.AllocCPUs, j.AllocMemoryMB, j.AllocGPUs = p.CPUs, p.MemoryMB, p.GPUs
		j.Spec.Exclusive = p.Exclusive
		started = append(started, j)
	}
	next.nodes = holding(st.nodes, started)
	return &next
}
