// Package api holds Stockade's wire types (HTTP/JSON under /v1) and the Go
// client every CLI command uses. The same types are the records kept in the
// replicated state store, so a job looks the same on the wire and on disk.
package api

import "time"

// JobState is a job's state, spelled as Slurm spells it.
type JobState string

const (
	JobPending     JobState = "PENDING"
	JobRunning     JobState = "RUNNING"
	JobCompleted   JobState = "COMPLETED"
	JobFailed      JobState = "FAILED"
	JobCancelled   JobState = "CANCELLED"
	JobTimeout     JobState = "TIMEOUT"
	JobOutOfMemory JobState = "OUT_OF_MEMORY"
	JobNodeFail    JobState = "NODE_FAIL"
)

// Terminal reports whether a job in this state will never run again.
func (s JobState) Terminal() bool {
	switch s {
	case JobPending, JobRunning:
		return false
	}
	return true
}

// Short is the compact state code squeue prints (%t).
func (s JobState) Short() string {
	switch s {
	case JobPending:
		return "PD"
	case JobRunning:
		return "R"
	case JobCompleted:
		return "CD"
	case JobFailed:
		return "F"
	case JobCancelled:
		return "CA"
	case JobTimeout:
		return "TO"
	case JobOutOfMemory:
		return "OOM"
	case JobNodeFail:
		return "NF"
	case JobPreempted:
		return "PR"
	}
	return string(s)
}

// Pending reasons, as Slurm prints them.
const (
	ReasonNone                     = "None"
	ReasonPriority                 = "Priority"
	ReasonResources                = "Resources"
	ReasonDependency               = "Dependency"
	ReasonDependencyNeverSatisfied = "DependencyNeverSatisfied"
	ReasonJobHeldUser              = "JobHeldUser"
	ReasonJobHeldAdmin             = "JobHeldAdmin"
	ReasonPartitionDown            = "PartitionDown"
	ReasonReqNodeNotAvail          = "ReqNodeNotAvail"
	ReasonJobArrayTaskLimit        = "JobArrayTaskLimit"
	ReasonBeginTime                = "BeginTime"
)

// Dependency is one clause of --dependency.
type Dependency struct {
	Type  string `json:"type"` // after, afterok, afterany, afternotok, singleton
	JobID uint64 `json:"job_id,omitempty"`
	// ArrayTask limits the clause to one task of an array (-1: all tasks).
	ArrayTask int `json:"array_task"`
}

// JobSpec is a normalized job description: what sbatch sends. Sizes are in
// MiB, times in seconds. Zero means "not given": defaults come from the
// partition.
type JobSpec struct {
	Name            string            `json:"name"`
	Partition       string            `json:"partition,omitempty"`
	Account         string            `json:"account,omitempty"`
	QOS             string            `json:"qos,omitempty"`
	Script          string            `json:"script"`
	Argv            []string          `json:"argv,omitempty"`
	WorkDir         string            `json:"current_working_directory"`
	Environment     map[string]string `json:"environment,omitempty"`
	Nodes           int               `json:"nodes"`
	Tasks           int               `json:"tasks"`
	TasksPerNode    int               `json:"tasks_per_node,omitempty"`
	CPUsPerTask     int               `json:"cpus_per_task"`
	MemoryPerNodeMB int64             `json:"memory_per_node,omitempty"`
	MemoryPerCPUMB  int64             `json:"memory_per_cpu,omitempty"`
	GPUsPerNode     int               `json:"gpus_per_node,omitempty"`
	TimeLimitSec    int64             `json:"time_limit_sec,omitempty"`
	// WarnSignal (sbatch --signal) is sent WarnTimeSec seconds before the
	// time limit: to every process of the job, or with WarnBatchOnly to
	// the batch shell alone. 0: none.
	WarnSignal      int          `json:"warn_signal,omitempty"`
	WarnTimeSec     int          `json:"warn_time_sec,omitempty"`
	WarnBatchOnly   bool         `json:"warn_batch_only,omitempty"`
	Output          string       `json:"standard_output,omitempty"`
	Error           string       `json:"standard_error,omitempty"`
	OpenMode        string       `json:"open_mode,omitempty"` // truncate | append
	Array           string       `json:"array,omitempty"`     // as given; tasks are expanded at submit
	ArrayTasks      []int        `json:"array_tasks,omitempty"`
	ArrayMaxRunning int          `json:"array_max_running,omitempty"`
	Dependency      string       `json:"dependency,omitempty"` // as given
	Dependencies    []Dependency `json:"dependencies,omitempty"`
	Hold            bool         `json:"hold,omitempty"`
	Requeue         bool         `json:"requeue"`
	ExcludeNodes    []string     `json:"exclude_nodes,omitempty"`
	NodeList        []string     `json:"required_nodes,omitempty"`
	Constraints     []string     `json:"constraints,omitempty"`
	Exclusive       bool         `json:"exclusive,omitempty"`
	Comment         string       `json:"comment,omitempty"`
	MailType        string       `json:"mail_type,omitempty"`
	MailUser        string       `json:"mail_user,omitempty"`
	Image           string       `json:"image,omitempty"`
	Nice            int          `json:"nice,omitempty"`
	// Reservation names the reservation the job must run in.
	Reservation string `json:"reservation,omitempty"`
	// BeginTime defers the job's eligibility (--begin).
	BeginTime time.Time `json:"begin_time,omitzero"`
	// SubmitID makes a submission idempotent: a retried submit with the same
	// id returns the jobs created the first time instead of new ones.
	SubmitID string `json:"submit_id,omitempty"`
}

// CPUsPerNode is the number of CPUs the job needs on each of its nodes.
func (s *JobSpec) CPUsPerNode() int {
	cpt := max(s.CPUsPerTask, 1)
	nodes := max(s.Nodes, 1)
	tasks := max(s.Tasks, 1)
	tpn := s.TasksPerNode
	if tpn == 0 {
		tpn = (tasks + nodes - 1) / nodes
	}
	return tpn * cpt
}

// MemoryMBPerNode is the memory the job needs on each node (0: unlimited
// request, the partition default applies).
func (s *JobSpec) MemoryMBPerNode() int64 {
	if s.MemoryPerNodeMB > 0 {
		return s.MemoryPerNodeMB
	}
	if s.MemoryPerCPUMB > 0 {
		return s.MemoryPerCPUMB * int64(s.CPUsPerNode())
	}
	return 0
}

// Usage is what the executor metered from the job's cgroup.
type Usage struct {
	CPUTimeNs     uint64 `json:"cpu_time_ns"`
	UserTimeNs    uint64 `json:"user_time_ns"`
	SystemTimeNs  uint64 `json:"system_time_ns"`
	MaxMemoryB    uint64 `json:"max_memory_bytes"`
	MaxRSSB       uint64 `json:"max_rss_bytes"`
	PidsPeak      uint64 `json:"pids_peak"`
	BlockReadB    uint64 `json:"block_read_bytes"`
	BlockWriteB   uint64 `json:"block_write_bytes"`
	WallTimeNs    uint64 `json:"wall_time_ns"`
	OOMKills      uint64 `json:"oom_kills"`
	SampledAtUnix int64  `json:"sampled_at_unix,omitempty"`
}

// Job is one runnable unit: a plain job or one task of an array.
type Job struct {
	ID          uint64   `json:"job_id"`
	ArrayJobID  uint64   `json:"array_job_id,omitempty"`
	ArrayTaskID int      `json:"array_task_id"` // -1 when not an array task
	User        string   `json:"user_name"`
	UID         uint32   `json:"user_id"`
	GID         uint32   `json:"group_id"`
	Spec        JobSpec  `json:"spec"`
	State       JobState `json:"job_state"`
	Reason      string   `json:"state_reason"`
	// HeldBy is "user" or "admin" while the job is held.
	HeldBy       string    `json:"held_by,omitempty"`
	Priority     int64     `json:"priority"`
	SubmitTime   time.Time `json:"submit_time"`
	StartTime    time.Time `json:"start_time,omitzero"`
	EndTime      time.Time `json:"end_time,omitzero"`
	TimeLimitSec int64     `json:"time_limit_sec"` // resolved against the partition
	Nodes        []string  `json:"nodes,omitempty"`
	// Resources allocated on each node.
	AllocCPUs     int   `json:"alloc_cpus_per_node,omitempty"`
	AllocMemoryMB int64 `json:"alloc_memory_per_node,omitempty"`
	AllocGPUs     int   `json:"alloc_gpus_per_node,omitempty"`
	ExitCode      int   `json:"exit_code"`
	ExitSignal    int   `json:"exit_signal"`
	Usage         Usage `json:"usage"`
	Restarts      int   `json:"restart_cnt"`
	// CancelRequested is set when a running job was cancelled; the agent
	// stops it and reports the final state.
	CancelRequested bool   `json:"cancel_requested,omitempty"`
	FailReason      string `json:"fail_reason,omitempty"`
	ModifyIndex     uint64 `json:"modify_index"`
	// ExpectedStart is the scheduler's latest estimate of a pending job's
	// start (squeue --start). It is not replicated: the leader fills it in
	// answers from its last pass.
	ExpectedStart time.Time `json:"expected_start,omitzero"`
	// PreemptedAt is when preemption asked a running job to stop; the
	// agent gives it its QoS grace time, then kills it.
	PreemptedAt time.Time `json:"preempted_at,omitzero"`
	// GraceTimeSec is the grace a preempted job gets before SIGKILL.
	GraceTimeSec int64 `json:"grace_time_sec,omitempty"`
	// PreemptMode is how a preempted job ends (PreemptRequeue or
	// PreemptCancel), set with PreemptedAt.
	PreemptMode string `json:"preempt_mode,omitempty"`
}

// DisplayID is the id as squeue prints it: 123 or 123_4.
func (j *Job) DisplayID() string {
	if j.ArrayTaskID >= 0 && j.ArrayJobID != 0 {
		return utoa(j.ArrayJobID) + "_" + itoa(j.ArrayTaskID)
	}
	return utoa(j.ID)
}

// NodeState is the administrative/health state stored for a node. The
// allocation states sinfo shows (idle, mix, alloc) are derived from it and
// from the node's allocated resources.
type NodeState string

const (
	NodeUnknown NodeState = "UNKNOWN" // configured, never registered
	NodeUp      NodeState = "UP"
	NodeDown    NodeState = "DOWN"
)

// Node is a compute node as the controllers know it.
type Node struct {
	Name     string    `json:"name"`
	CPUs     int       `json:"cpus"`
	MemoryMB int64     `json:"real_memory"`
	GPUs     int       `json:"gpus"`
	Features []string  `json:"features,omitempty"`
	State    NodeState `json:"state"`
	Drain    bool      `json:"drain,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	// Allocated resources, maintained by the state store as jobs start and end.
	AllocCPUs     int       `json:"alloc_cpus"`
	AllocMemoryMB int64     `json:"alloc_memory"`
	AllocGPUs     int       `json:"alloc_gpus"`
	Exclusive     bool      `json:"exclusive_alloc,omitempty"` // held by an --exclusive job
	RegisteredAt  time.Time `json:"registered_at,omitzero"`
	BootTime      time.Time `json:"boot_time,omitzero"`
	AgentVersion  string    `json:"agent_version,omitempty"`
	Arch          string    `json:"architecture,omitempty"`
	OS            string    `json:"operating_system,omitempty"`
	ModifyIndex   uint64    `json:"modify_index"`
	// Trust is how the node proved what it is; "" (records written before
	// attestation existed) means TrustNone.
	Trust         Trust     `json:"trust"`
	EKFingerprint string    `json:"ek_fingerprint"`
	LastQuote     time.Time `json:"last_quote,omitzero"`
	// AttestError is the reason of the last attestation failure.
	AttestError string `json:"attest_error,omitempty"`
	// CertSerial is the serial (lowercase hex) of the node's current
	// certificate; older certificates of the node are superseded.
	CertSerial string `json:"cert_serial,omitempty"`
	// AKPublic is the TPMT_PUBLIC of the attestation key the node enrolled
	// with; its periodic quotes are verified against it.
	AKPublic []byte `json:"ak_public,omitempty"`
}

// Usable reports whether the scheduler may place new work on the node.
func (n *Node) Usable() bool { return n.State == NodeUp && !n.Drain }

// SinfoState is the lower-case state sinfo prints: idle, mix, alloc, drain,
// drng (draining with jobs), down, unk.
func (n *Node) SinfoState() string {
	switch {
	case n.State == NodeDown:
		return "down"
	case n.State == NodeUnknown:
		return "unk"
	case n.Drain && n.AllocCPUs > 0:
		return "drng"
	case n.Drain:
		return "drain"
	case n.Exclusive || (n.AllocCPUs >= n.CPUs && n.CPUs > 0):
		return "alloc"
	case n.AllocCPUs > 0:
		return "mix"
	}
	return "idle"
}

// Partition groups nodes with limits and defaults.
type Partition struct {
	Name           string   `json:"name"`
	Nodes          []string `json:"nodes"`
	Default        bool     `json:"default,omitempty"`
	Up             bool     `json:"up"`
	MaxTimeSec     int64    `json:"max_time_sec,omitempty"` // 0: unlimited
	DefaultTimeSec int64    `json:"default_time_sec,omitempty"`
	MaxNodes       int      `json:"max_nodes,omitempty"`
	DefMemPerCPUMB int64    `json:"def_mem_per_cpu,omitempty"`
	PriorityTier   int      `json:"priority_tier,omitempty"`
	// RequireTrust is the least trust a node needs to run the partition's
	// jobs: "" any, TrustApproved approved or attested, TrustAttested only
	// attested.
	RequireTrust Trust `json:"require_trust,omitempty"`
	// AllowAccounts and AllowQOS restrict who may submit (empty: all).
	AllowAccounts []string `json:"allow_accounts,omitempty"`
	AllowQOS      []string `json:"allow_qos,omitempty"`
	// ExclusiveNodes is OverSubscribe=EXCLUSIVE: every job gets whole nodes.
	ExclusiveNodes bool `json:"exclusive_nodes,omitempty"`
}

// User is an account holder. TokenHash is an Argon2id PHC string; the token
// itself is never stored.
type User struct {
	Name           string   `json:"name"`
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	DefaultAccount string   `json:"default_account"`
	Accounts       []string `json:"accounts"`
	Admin          bool     `json:"admin,omitempty"`
	TokenID        string   `json:"token_id,omitempty"`
	TokenHash      string   `json:"-"`
}

// Account is a node of the accounting tree.
type Account struct {
	Name        string `json:"name"`
	Parent      string `json:"parent,omitempty"`
	Description string `json:"description,omitempty"`
}

// Controller is one Raft member as seen by the cluster.
type Controller struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

// Trust is how a node proved its identity and boot state with its TPM.
type Trust string

const (
	// TrustAttested: the EK certificate chains to a known TPM vendor and the
	// latest quote satisfied the policy.
	TrustAttested Trust = "attested"
	// TrustApproved: the EK is on the admin-approved list (no usable EK
	// certificate) and the latest quote satisfied the policy.
	TrustApproved Trust = "approved"
	// TrustNone: no TPM evidence; the node joined with a token only, or its
	// attestation failed.
	TrustNone Trust = "none"
)

// Audit record kinds.
const (
	AuditAdmitted      = "admitted"
	AuditRefused       = "refused"
	AuditEvicted       = "evicted"
	AuditRevoked       = "revoked"
	AuditRenewed       = "renewed"
	AuditPolicyChanged = "policy-changed"
	AuditEKApproved    = "ek-approved"
	AuditTOFURecorded  = "tofu-recorded"
)

// AuditRecord is one entry of the replicated, append-only attestation log.
type AuditRecord struct {
	// Seq orders the log; it is unique and grows with the Raft index.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Node string    `json:"node,omitempty"`
	// Kind is one of the Audit* constants.
	Kind string `json:"kind"`
	// Code is a stable machine-readable cause (a policy decision code, or
	// e.g. "cert-revoked").
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Actor is the admin who caused the change ("" for the verifier).
	Actor string `json:"actor,omitempty"`
	// Index is the Raft index of the command that wrote the record;
	// records written by one command share it.
	Index         uint64 `json:"raft_index"`
	EKFingerprint string `json:"ek_fingerprint,omitempty"`
	Serial        string `json:"serial,omitempty"`
}

// ApprovedEK is an endorsement key an admin vouched for, for TPMs whose EK
// certificate cannot be verified.
type ApprovedEK struct {
	// Fingerprint is "sha256:" and the lowercase hex SHA-256 of the EK's
	// PKIX DER encoding.
	Fingerprint string    `json:"fingerprint"`
	Comment     string    `json:"comment,omitempty"`
	ApprovedBy  string    `json:"approved_by,omitempty"`
	Time        time.Time `json:"time,omitzero"`
}

// RevokedCert is a certificate serial that must be refused in TLS
// handshakes until the certificate has expired.
type RevokedCert struct {
	Serial string    `json:"serial"` // lowercase hex, no leading zeros
	Time   time.Time `json:"time"`
	Node   string    `json:"node,omitempty"`
	Reason string    `json:"reason,omitempty"`
}
