package scheduler

import (
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// State is the read-only view of the cluster the scheduler works on: an
// immutable snapshot of the replicated state store. Slices returned must not
// be modified.
type State interface {
	// PendingJobs returns every job in state PENDING.
	PendingJobs() []*api.Job
	// RunningJobs returns every job in state RUNNING.
	RunningJobs() []*api.Job
	// Job looks up any job, terminal ones included (nil if unknown).
	Job(id uint64) *api.Job
	// JobsByArray returns every task of an array job.
	JobsByArray(arrayJobID uint64) []*api.Job
	Nodes() []*api.Node
	Node(name string) *api.Node
	Partitions() []*api.Partition
	Partition(name string) *api.Partition
	// Accounts returns the account tree's nodes; Associations the
	// account (User "") and user associations.
	Accounts() []*api.Account
	Associations() []*api.Association
	QOSList() []*api.QOS
	QOS(name string) *api.QOS
	// FairShareUsage returns the stored decayed usage per association.
	FairShareUsage() []*api.FairShareUsage
	Reservations() []*api.Reservation
	// SchedConfig is the scheduler configuration (defaults when unset).
	SchedConfig() api.SchedConfig
}

// Placement starts one job on a set of nodes with the same resources on each.
type Placement struct {
	JobID    uint64   `json:"job_id"`
	Nodes    []string `json:"nodes"`
	CPUs     int      `json:"cpus_per_node"`
	MemoryMB int64    `json:"memory_per_node"`
	GPUs     int      `json:"gpus_per_node"`
	// Exclusive jobs hold their nodes whole.
	Exclusive bool `json:"exclusive,omitempty"`
}

// Plan is the scheduler's output for one pass. It is committed through Raft;
// the state store re-checks every placement against the newest state before
// it applies it, so a stale plan can lose placements but never overcommit.
type Plan struct {
	Placements []Placement `json:"placements,omitempty"`
	// Reasons sets the pending reason of jobs whose reason changed.
	Reasons map[uint64]string `json:"reasons,omitempty"`
	// Priorities sets the priority of jobs whose priority changed.
	Priorities map[uint64]int64 `json:"priorities,omitempty"`
	// Cancels ends pending jobs that can never run (none in the first
	// version; kept for DependencyNeverSatisfied with kill_invalid_depend).
	Cancels []uint64 `json:"cancels,omitempty"`
	// Preemptions stop running jobs so that higher-QoS pending jobs can
	// start; the jobs they make room for start in a later pass.
	Preemptions []Preemption `json:"preemptions,omitempty"`
	// Time is the scheduler's notion of now for this pass.
	Time time.Time `json:"time"`
	// StartTimes is the expected start of pending jobs the pass could not
	// start (squeue --start). It is not committed: the leader keeps the
	// latest pass's estimates in memory.
	StartTimes map[uint64]time.Time `json:"-"`
	// MinCPUs is the fewest CPUs per node that a pending job not held
	// asks for (0: no such job), for callers that want to know later
	// whether any of them could start on the free CPUs (Saturated). It
	// is not committed.
	MinCPUs int `json:"-"`
}

// Preemption asks a running job to stop: requeued or cancelled (api.Preempt*
// mode of its QoS) after GraceSec.
type Preemption struct {
	JobID    uint64 `json:"job_id"`
	Mode     string `json:"mode"`
	GraceSec int64  `json:"grace_sec,omitempty"`
	// For is the pending job the room is made for.
	For uint64 `json:"for"`
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool {
	return len(p.Placements) == 0 && len(p.Reasons) == 0 && len(p.Priorities) == 0 && len(p.Cancels) == 0 &&
		len(p.Preemptions) == 0
}

// Fits reports whether a node has room for a placement's per-node resources.
// The state store uses the same check when it applies a plan.
func Fits(n *api.Node, cpus int, memMB int64, gpus int, exclusive bool) bool {
	if !n.Usable() || n.Exclusive {
		return false
	}
	if exclusive {
		return n.AllocCPUs == 0 && n.AllocMemoryMB == 0 && n.AllocGPUs == 0 &&
			cpus <= n.CPUs && memMB <= n.MemoryMB && gpus <= n.GPUs
	}
	return n.AllocCPUs+cpus <= n.CPUs &&
		n.AllocMemoryMB+memMB <= n.MemoryMB &&
		n.AllocGPUs+gpus <= n.GPUs
}

// TrustSatisfies reports whether a node's trust meets a partition's
// RequireTrust: attested ⊇ approved ⊇ any. The scheduler and the state
// store's plan re-check both use it. An unknown requirement is never met,
// so a misspelt one fails closed.
func TrustSatisfies(n *api.Node, need api.Trust) bool {
	switch need {
	case "", api.TrustNone:
		return true
	case api.TrustApproved:
		return n.Trust == api.TrustApproved || n.Trust == api.TrustAttested
	case api.TrustAttested:
		return n.Trust == api.TrustAttested
	}
	return false
}
