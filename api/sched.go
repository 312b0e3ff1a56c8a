package api

import (
	"strings"
	"time"
)

// Scheduling policy records: QoS, associations, reservations, fair-share
// usage and the scheduler configuration. They live in the replicated state
// store and are managed with sacctmgr and scontrol.

// More job states and pending reasons used by the scheduling policies.
const (
	// JobPreempted ends a job cancelled by preemption (PreemptMode=cancel).
	JobPreempted JobState = "PREEMPTED"

	ReasonQOSMaxJobsPerUserLimit    = "QOSMaxJobsPerUserLimit"
	ReasonQOSMaxCPUPerUserLimit     = "QOSMaxCpuPerUserLimit"
	ReasonQOSMaxNodePerUserLimit    = "QOSMaxNodePerUserLimit"
	ReasonQOSMaxGRESPerUserLimit    = "QOSMaxGRESPerUser"
	ReasonQOSMaxMemoryPerUserLimit  = "QOSMaxMemoryPerUser"
	ReasonQOSMaxCPUPerAccountLimit  = "QOSMaxCpuPerAccountLimit"
	ReasonQOSMaxNodePerAccountLimit = "QOSMaxNodePerAccountLimit"
	ReasonQOSMaxWallDurationPerJob  = "QOSMaxWallDurationPerJobLimit"
	ReasonAssocMaxJobsLimit         = "AssocMaxJobsLimit"
	ReasonAssocGrpCPULimit          = "AssocGrpCpuLimit"
	ReasonAssocGrpNodeLimit         = "AssocGrpNodeLimit"
	ReasonAssocGrpMemLimit          = "AssocGrpMemLimit"
	ReasonAssocGrpGRES              = "AssocGrpGRES"
	ReasonPartitionTimeLimit        = "PartitionTimeLimit"
	ReasonPartitionNodeLimit        = "PartitionNodeLimit"
	ReasonReservation               = "Reservation"
	ReasonPreempted                 = "Preempted"
	ReasonInvalidQOS                = "InvalidQOS"
	ReasonInvalidAccount            = "InvalidAccount"
	ReasonQOSNotAllowed             = "QOSNotAllowed"
	ReasonAccountNotAllowed         = "AccountNotAllowed"
)

// TRES is a set of trackable resources, used for caps. Zero fields are
// "no limit".
type TRES struct {
	CPUs     int   `json:"cpu,omitempty"`
	Nodes    int   `json:"node,omitempty"`
	GPUs     int   `json:"gres/gpu,omitempty"`
	MemoryMB int64 `json:"mem,omitempty"`
}

// Zero reports whether no resource is set.
func (t TRES) Zero() bool { return t == TRES{} }

// Preempt modes of a QoS (Slurm's PreemptMode).
const (
	PreemptOff     = "off"
	PreemptRequeue = "requeue"
	PreemptCancel  = "cancel"
)

// QOS is a quality of service: a priority factor, limits and preemption.
type QOS struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Priority is the QoS's raw priority, normalized by the largest one
	// across all QoS for the multifactor priority.
	Priority             int   `json:"priority"`
	MaxJobsPerUser       int   `json:"max_jobs_per_user,omitempty"`        // running
	MaxSubmitJobsPerUser int   `json:"max_submit_jobs_per_user,omitempty"` // pending + running
	MaxTRESPerUser       TRES  `json:"max_tres_per_user,omitzero"`         // running, summed
	MaxTRESPerAccount    TRES  `json:"max_tres_per_account,omitzero"`      // running, summed
	MaxWallSec           int64 `json:"max_wall_sec,omitempty"`
	// Preempt lists the QoS whose running jobs this QoS's pending jobs may
	// preempt.
	Preempt []string `json:"preempt,omitempty"`
	// PreemptMode is what happens to this QoS's jobs when they are
	// preempted: PreemptRequeue, PreemptCancel or PreemptOff ("" = off).
	PreemptMode string `json:"preempt_mode,omitempty"`
	// GraceTimeSec is how long a preempted job gets between SIGTERM and
	// SIGKILL; with 0 it is cancelled at once, as scancel does.
	GraceTimeSec int64 `json:"grace_time_sec,omitempty"`
	// UsageFactor scales the usage the QoS's jobs charge to fair-share
	// (0 counts as 1).
	UsageFactor float64 `json:"usage_factor,omitempty"`
}

// Association binds a user to an account (User "" is the account's own
// association, which carries the account's shares and group limits). The
// association tree is the account tree with users as leaves.
type Association struct {
	Account string `json:"account"`
	User    string `json:"user,omitempty"`
	// Shares is Slurm's Fairshare value (0 counts as 1).
	Shares int `json:"shares"`
	// DefaultQOS is the QoS of jobs that name none; QOS are the allowed
	// ones (empty: every QoS).
	DefaultQOS    string   `json:"default_qos,omitempty"`
	QOS           []string `json:"qos,omitempty"`
	MaxJobs       int      `json:"max_jobs,omitempty"`        // running
	MaxSubmitJobs int      `json:"max_submit_jobs,omitempty"` // pending + running
	// GrpTRES caps what all running jobs under the association (an
	// account's whole subtree for User "") may hold at once.
	GrpTRES    TRES  `json:"grp_tres,omitzero"`
	MaxWallSec int64 `json:"max_wall_sec,omitempty"`
}

// Key identifies an association: "account" or "account/user".
func (a *Association) Key() string { return AssocKey(a.Account, a.User) }

// AssocKey is the key of the association of user in account.
func AssocKey(account, user string) string {
	if user == "" {
		return account
	}
	return account + "/" + user
}

// FairShareUsage is an association's decayed usage: billing-weighted
// CPU-seconds (GPU-seconds weighted by SchedConfig.GPUWeight) halved every
// SchedConfig.DecayHalfLifeSec. Usage of finished jobs is added as they
// end; running jobs are counted by the priority calculation itself.
type FairShareUsage struct {
	Account string `json:"account"`
	User    string `json:"user,omitempty"`
	// Raw is the decayed usage as of UpdatedAt.
	Raw       float64   `json:"raw_usage"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Key is the usage's association key.
func (u *FairShareUsage) Key() string { return AssocKey(u.Account, u.User) }

// Reservation holds nodes for some users or accounts during a window.
type Reservation struct {
	Name     string    `json:"name"`
	Users    []string  `json:"users,omitempty"`
	Accounts []string  `json:"accounts,omitempty"`
	Nodes    []string  `json:"nodes"` // chosen at creation when NodeCount was given
	Start    time.Time `json:"start_time"`
	End      time.Time `json:"end_time"`
	// Partition limits a node-count reservation's choice of nodes.
	Partition string `json:"partition,omitempty"`
	// Flags as scontrol takes them, upper case: ResvFlagMaint,
	// ResvFlagIgnoreJobs.
	Flags []string `json:"flags,omitempty"`
}

// Reservation flags Stockade interprets (Slurm's spellings).
const (
	// ResvFlagMaint marks the reservation's nodes as in maintenance
	// (sinfo's "maint") while it is active.
	ResvFlagMaint = "MAINT"
	// ResvFlagIgnoreJobs lets the reservation take nodes whose running
	// jobs would still run when it starts.
	ResvFlagIgnoreJobs = "IGNORE_JOBS"
)

// HasFlag reports whether the reservation carries flag (any case).
func (r *Reservation) HasFlag(flag string) bool {
	for _, f := range r.Flags {
		if strings.EqualFold(f, flag) {
			return true
		}
	}
	return false
}

// Active reports whether the reservation covers time t.
func (r *Reservation) Active(t time.Time) bool { return !t.Before(r.Start) && t.Before(r.End) }

// Admits reports whether a job of user in account may use the reservation.
func (r *Reservation) Admits(user, account string) bool {
	for _, u := range r.Users {
		if u == user {
			return true
		}
	}
	for _, a := range r.Accounts {
		if a == account {
			return true
		}
	}
	return false
}

// PriorityWeights are Slurm's PriorityWeight* settings: each factor is
// normalized to [0,1] and multiplied by its weight.
type PriorityWeights struct {
	Age       int64 `json:"age" toml:"age"`
	FairShare int64 `json:"fairshare" toml:"fairshare"`
	JobSize   int64 `json:"job_size" toml:"job_size"`
	Partition int64 `json:"partition" toml:"partition"`
	QOS       int64 `json:"qos" toml:"qos"`
}

// SchedConfig is the cluster-wide scheduler configuration, replicated so
// every controller that becomes leader schedules the same way.
type SchedConfig struct {
	Weights PriorityWeights `json:"weights" toml:"weights"`
	// MaxAgeSec is PriorityMaxAge: the age at which the age factor is 1.
	MaxAgeSec int64 `json:"max_age_sec" toml:"max_age_sec"`
	// DecayHalfLifeSec is PriorityDecayHalfLife (0: no decay).
	DecayHalfLifeSec int64 `json:"decay_half_life_sec" toml:"decay_half_life_sec"`
	// FavorSmall is PriorityFavorSmall: smaller jobs get the larger size
	// factor.
	FavorSmall bool `json:"favor_small,omitempty" toml:"favor_small"`
	// GPUWeight is the billing weight of one GPU-second in CPU-seconds.
	GPUWeight float64 `json:"gpu_weight" toml:"gpu_weight"`
	// Policy is "backfill" (default), "priority" (strict priority, no
	// backfill) or "fifo" (submit order, no backfill).
	Policy string `json:"policy" toml:"policy"`
	// BackfillDepth is bf_max_job_test: how many pending jobs backfill
	// looks at per pass.
	BackfillDepth int `json:"backfill_depth" toml:"backfill_depth"`
	// BackfillWindowSec is bf_window: how far ahead reservations for
	// higher-priority jobs are planned.
	BackfillWindowSec int64 `json:"backfill_window_sec" toml:"backfill_window_sec"`
	// BackfillReservations bounds how many blocked higher-priority jobs get
	// a reserved start time per pass (0: every tested job, as Slurm does).
	BackfillReservations int `json:"backfill_reservations,omitempty" toml:"backfill_reservations"`
	// DefaultQOS is the QoS of jobs whose association names none.
	DefaultQOS string `json:"default_qos" toml:"default_qos"`
}

// DefaultSchedConfig is the configuration of a cluster that set none:
// Slurm's usual multifactor weights and a backfill scheduler.
func DefaultSchedConfig() SchedConfig {
	return SchedConfig{
		Weights:           PriorityWeights{Age: 1000, FairShare: 10000, JobSize: 1000, Partition: 10000, QOS: 10000},
		MaxAgeSec:         7 * 24 * 3600,
		DecayHalfLifeSec:  7 * 24 * 3600,
		GPUWeight:         10,
		Policy:            "backfill",
		BackfillDepth:     1000,
		BackfillWindowSec: 24 * 3600,
		DefaultQOS:        "normal",
	}
}

// PriorityFactors is one pending job's priority broken down as sprio
// shows it: each weighted factor and their sum minus nice.
type PriorityFactors struct {
	JobID     uint64 `json:"job_id"`
	User      string `json:"user_name"`
	Account   string `json:"account"`
	Partition string `json:"partition"`
	QOS       string `json:"qos"`
	Priority  int64  `json:"priority"`
	Age       int64  `json:"age"`
	FairShare int64  `json:"fairshare"`
	JobSize   int64  `json:"job_size"`
	PartPrio  int64  `json:"partition_prio"`
	QOSPrio   int64  `json:"qos_prio"`
	Nice      int64  `json:"nice"`
}

// ShareInfo is one row of sshare: an association with its shares, usage
// and fair-share factor.
type ShareInfo struct {
	Account string `json:"account"`
	User    string `json:"user,omitempty"`
	// Depth is the association's depth in the tree (root = 0).
	Depth        int     `json:"depth"`
	RawShares    int     `json:"raw_shares"`
	NormShares   float64 `json:"norm_shares"`
	RawUsage     float64 `json:"raw_usage"`
	NormUsage    float64 `json:"norm_usage"`
	EffectvUsage float64 `json:"effective_usage"`
	// LevelFS is Fair Tree's level fair-share (shares/usage at its level).
	LevelFS   float64 `json:"level_fs"`
	FairShare float64 `json:"fairshare"`
}

// JobStep is one srun step of a job. Step ids count from 0; the batch
// script itself is the "batch" step, which sacct derives from the job.
type JobStep struct {
	JobID   uint64            `json:"job_id"`
	StepID  int               `json:"step_id"`
	Name    string            `json:"name"`
	User    string            `json:"user_name"`
	Argv    []string          `json:"argv"`
	Env     map[string]string `json:"environment,omitempty"`
	WorkDir string            `json:"current_working_directory,omitempty"`
	// Nodes run the step; TaskNodes[rank] is the node of each task, so
	// len(TaskNodes) is the task count.
	Nodes       []string  `json:"nodes"`
	TaskNodes   []string  `json:"task_nodes"`
	CPUsPerTask int       `json:"cpus_per_task"`
	State       JobState  `json:"state"`
	StartTime   time.Time `json:"start_time,omitzero"`
	EndTime     time.Time `json:"end_time,omitzero"`
	// ExitCode and ExitSignal combine the tasks': the highest exit code,
	// or the signal of a task killed by one.
	ExitCode   int        `json:"exit_code"`
	ExitSignal int        `json:"exit_signal"`
	Tasks      []StepTask `json:"tasks"`
	Usage      Usage      `json:"usage"`
	// CancelRequested is set when the step was cancelled (scancel
	// JOB.STEP) while its job runs on: the agents stop its tasks, and the
	// last task's report ends it CANCELLED.
	CancelRequested bool `json:"cancel_requested,omitempty"`
	// RequestID is the creating request's (StepCreateRequest.RequestID):
	// a retried request gets this step instead of a new one.
	RequestID   string `json:"request_id,omitempty"`
	ModifyIndex uint64 `json:"modify_index"`
}

// StepTask is one rank of a step.
type StepTask struct {
	Rank       int    `json:"rank"`
	Node       string `json:"node"`
	Done       bool   `json:"done"`
	ExitCode   int    `json:"exit_code"`
	ExitSignal int    `json:"exit_signal"`
	// Output is the task's stdout and stderr, interleaved as written,
	// capped at StepOutputCap bytes.
	Output string `json:"output,omitempty"`
	Usage  Usage  `json:"usage"`
}

// StepOutputCap bounds the output one task may return through the
// controllers (it is replicated with the step record).
const StepOutputCap = 1 << 20
