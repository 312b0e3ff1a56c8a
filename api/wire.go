package api

import (
	"strconv"
	"time"
)

func utoa(v uint64) string { return strconv.FormatUint(v, 10) }
func itoa(v int) string    { return strconv.Itoa(v) }

// Error is the body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
}

// SubmitRequest asks the controllers to queue a job (or an array).
type SubmitRequest struct {
	Spec JobSpec `json:"job"`
	// TestOnly validates and returns an estimate without queueing.
	TestOnly bool `json:"test_only,omitempty"`
}

// SubmitResponse names the job created; for an array, JobID is the array
// job id and TaskIDs lists every task's own job id.
type SubmitResponse struct {
	JobID   uint64   `json:"job_id"`
	TaskIDs []uint64 `json:"task_ids,omitempty"`
	Warning string   `json:"warning,omitempty"`
	// For --test-only: where and when the job would start.
	Nodes        []string `json:"nodes,omitempty"`
	EstimateNote string   `json:"estimate,omitempty"`
}

// JobsResponse is a list of jobs at a state index.
type JobsResponse struct {
	Jobs  []Job  `json:"jobs"`
	Index uint64 `json:"index"`
}

// NodesResponse is a list of nodes and partitions at a state index.
type NodesResponse struct {
	Nodes      []Node      `json:"nodes"`
	Partitions []Partition `json:"partitions"`
	Index      uint64      `json:"index"`
}

// CancelRequest selects jobs to cancel. Empty filters match everything the
// caller may see; at least one filter or id must be given.
type CancelRequest struct {
	JobIDs []string `json:"job_ids,omitempty"` // "123", "123_4", "123_[1-3]"
	User   string   `json:"user,omitempty"`
	State  string   `json:"state,omitempty"`
	Name   string   `json:"name,omitempty"`
	Signal string   `json:"signal,omitempty"`
}

// CancelResponse lists the job ids that changed.
type CancelResponse struct {
	Cancelled []uint64 `json:"cancelled"`
}

// JobActionRequest is hold, release or requeue of jobs.
type JobActionRequest struct {
	Action string   `json:"action"` // hold | release | requeue | uhold
	JobIDs []string `json:"job_ids"`
}

// NodeUpdateRequest is scontrol update nodename=... state=... reason=...
type NodeUpdateRequest struct {
	Nodes  []string `json:"nodes"`
	State  string   `json:"state"` // drain | resume | down
	Reason string   `json:"reason,omitempty"`
}

// UserAddRequest creates a user and returns its token once.
type UserAddRequest struct {
	Name    string  `json:"name"`
	Account string  `json:"account"`
	Admin   bool    `json:"admin,omitempty"`
	UID     *uint32 `json:"uid,omitempty"`
	GID     *uint32 `json:"gid,omitempty"`
}

// UserAddResponse carries the only copy of the user's bearer token.
type UserAddResponse struct {
	User  User   `json:"user"`
	Token string `json:"token"`
}

// Status is what `stockade status` prints.
type Status struct {
	Leader        string         `json:"leader"`
	Controllers   []Controller   `json:"controllers"`
	RaftIndex     uint64         `json:"raft_applied_index"`
	CommitIndex   uint64         `json:"raft_commit_index"`
	LastContactMs int64          `json:"last_contact_ms"`
	NodesByState  map[string]int `json:"nodes_by_state"`
	JobsByState   map[string]int `json:"jobs_by_state"`
	QueueDepth    int            `json:"queue_depth"`
	ServedBy      string         `json:"served_by"`

	// The usage ledger (/v1/acct): records written and not yet sealed,
	// the last sealed and anchored epochs, the sealed epochs awaiting
	// anchoring, and when the oldest of them was sealed; AcctAnchorLagSec
	// is its age (0 when none waits).
	AcctRecords                  uint64    `json:"acct_records"`
	AcctUnsealedRecords          uint64    `json:"acct_unsealed_records"`
	AcctLastSealedEpoch          uint64    `json:"acct_last_sealed_epoch"`
	AcctLastAnchoredEpoch        uint64    `json:"acct_last_anchored_epoch"`
	AcctUnanchoredEpochs         uint64    `json:"acct_unanchored_epochs"`
	AcctOldestUnanchoredSealedAt time.Time `json:"acct_oldest_unanchored_sealed_at,omitzero"`
	AcctAnchorLagSec             int64     `json:"acct_anchor_lag_sec"`
	// AcctAnchorError is why the leader cannot anchor the waiting epochs
	// (chain unreachable, account out of funds, the chain holding another
	// commitment for an epoch); empty while anchoring works.
	AcctAnchorError string `json:"acct_anchor_error,omitempty"`
}

// AgentRegisterRequest is an agent's inventory, sent at start and whenever it
// changes.
type AgentRegisterRequest struct {
	Name         string   `json:"name"`
	CPUs         int      `json:"cpus"`
	MemoryMB     int64    `json:"memory_mb"`
	GPUs         int      `json:"gpus"`
	Features     []string `json:"features,omitempty"`
	BootTime     int64    `json:"boot_time_unix"`
	AgentVersion string   `json:"agent_version"`
	Arch         string   `json:"arch"`
	OS           string   `json:"os"`
}

// AgentHeartbeat tells the leader the node is alive and which jobs it runs.
type AgentHeartbeat struct {
	Name    string   `json:"name"`
	Running []uint64 `json:"running,omitempty"`
}

// AgentWork is what an agent should run or stop, long-polled by index.
type AgentWork struct {
	Jobs  []Job  `json:"jobs"` // jobs placed on this node and not terminal
	Index uint64 `json:"index"`
	// Steps are the live steps with tasks on this node (task output left
	// out).
	Steps []JobStep `json:"steps,omitempty"`
	// Credentials are the job credentials of the batch scripts this node
	// runs, by job id: srun authenticates with them.
	Credentials map[uint64]string `json:"credentials,omitempty"`
}

// JobReport is an agent's report of a job's progress or end.
type JobReport struct {
	JobID      uint64   `json:"job_id"`
	Node       string   `json:"node"`
	State      JobState `json:"state"` // RUNNING for progress, terminal at end
	ExitCode   int      `json:"exit_code"`
	ExitSignal int      `json:"exit_signal"`
	StartUnix  int64    `json:"start_unix,omitempty"`
	EndUnix    int64    `json:"end_unix,omitempty"`
	Usage      Usage    `json:"usage"`
	Reason     string   `json:"reason,omitempty"`
	// Attempt is the job's restart count when it was started, so a report
	// about an old attempt of a requeued job is ignored.
	Attempt int `json:"attempt"`
}

// JoinRequest asks for a certificate with a join token.
type JoinRequest struct {
	Token string `json:"token"`
	Name  string `json:"name"`
	CSR   []byte `json:"csr"` // PEM
	// Controller joins also carry the member's Raft and API addresses.
	RaftAddr string `json:"raft_addr,omitempty"`
	APIAddr  string `json:"api_addr,omitempty"`
}

// JoinResponse carries the signed certificate and the cluster CA.
type JoinResponse struct {
	Certificate []byte `json:"certificate"` // PEM
	CACert      []byte `json:"ca_certificate"`
	// CAKey is given only to joining controllers, which sign for agents.
	CAKey []byte `json:"ca_key,omitempty"`
	// AnchorKey is the cluster's anchoring key (hex text), also only for
	// joining controllers: whichever leads anchors accounting epochs.
	AnchorKey []byte `json:"anchor_key,omitempty"`
	// AttestIntervalSec is the policy's re-attestation interval, in the
	// answers of the attestation routes: the agent must quote well within
	// it or be evicted.
	AttestIntervalSec int64 `json:"attest_interval_sec,omitempty"`
}
