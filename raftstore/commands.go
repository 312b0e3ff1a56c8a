package raftstore

import (
	"time"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/policy"
	"github.com/stockade-hpc/stockade/scheduler"
)

// CommandType names one kind of replicated state change. Values are part of
// the on-disk log format: append new ones, never renumber.
type CommandType uint8

const (
	CmdSubmitJob CommandType = iota + 1
	CmdCancelJobs
	CmdHoldJobs
	CmdReleaseJobs
	CmdRequeueJobs
	CmdApplyPlan
	CmdJobReport
	CmdRegisterNode
	CmdNodesDown
	CmdUpdateNodes
	CmdSetPartitions
	CmdAddUser
	CmdAddAccount
	CmdSetController
	CmdRemoveController
	CmdSetPolicy
	CmdRecordTOFU
	CmdApproveEK
	CmdRevokeEKApproval
	CmdNodeAttested
	CmdAttestFailed
	CmdRefused
	CmdRevokeCert
	// Scheduling policy (sacctmgr, scontrol reservation, scheduler config).
	CmdAccounting
	CmdSetReservation
	CmdDeleteReservation
	CmdSetSchedConfig
	// Job steps (srun).
	CmdCreateStep
	CmdStepReport
	// Usage accounting ledger (acct.go).
	CmdSetPrices
	CmdSealEpoch
	CmdEpochAnchored
	CmdSetSettlement
	CmdSetChain
	// Job steps: scancel JOB.STEP (steps.go).
	CmdCancelStep
)

// Command is one log entry. Time (Unix nanoseconds) is chosen by the
// proposer so that Apply never reads a clock and every member computes the
// same state.
type Command struct {
	Type CommandType `json:"t"`
	Time int64       `json:"ts"`

	Submit     *SubmitJob                `json:"submit,omitempty"`
	JobIDs     []uint64                  `json:"job_ids,omitempty"`
	HeldBy     string                    `json:"held_by,omitempty"` // CmdHoldJobs: "user" | "admin"
	Plan       *scheduler.Plan           `json:"plan,omitempty"`
	Report     *api.JobReport            `json:"report,omitempty"`
	Register   *api.AgentRegisterRequest `json:"register,omitempty"`
	NodeNames  []string                  `json:"nodes,omitempty"`
	NodeState  string                    `json:"node_state,omitempty"` // CmdUpdateNodes: drain | resume | down
	Reason     string                    `json:"reason,omitempty"`
	Partitions []api.Partition           `json:"partitions,omitempty"`
	// ConfiguredNodes are nodes named by the partition config; they exist in
	// state UNKNOWN until their agent registers.
	ConfiguredNodes []api.Node      `json:"configured_nodes,omitempty"`
	User            *api.User       `json:"user,omitempty"`
	Account         *api.Account    `json:"account,omitempty"`
	Controller      *api.Controller `json:"controller,omitempty"`
	// UserTokenHash carries User.TokenHash through the log, since api.User
	// does not marshal it. Node.Apply fills it in.
	UserTokenHash string `json:"user_token_hash,omitempty"`

	// Policy is the new cluster policy (CmdSetPolicy); its Version is
	// ignored, the state machine assigns the next one.
	Policy *policy.Policy `json:"policy,omitempty"`
	// PolicyVersion is the policy version the evidence behind TOFU values
	// was evaluated against (CmdRecordTOFU).
	PolicyVersion uint64 `json:"policy_version,omitempty"`
	// TOFU maps PCR index to the hex value first seen (CmdRecordTOFU,
	// policy.Decision.FirstSeen); NodeNames[0] is the node it came from.
	TOFU   map[int]string   `json:"tofu,omitempty"`
	EK     *api.ApprovedEK  `json:"ek,omitempty"`
	Attest *NodeAttestation `json:"attest,omitempty"`
	// Kill ends a failed node's running jobs NODE_FAIL even when they
	// could be requeued (policy on_failure "kill"; CmdAttestFailed).
	Kill bool `json:"kill,omitempty"`
	// Serials are certificate serials to revoke (CmdRevokeCert).
	Serials []string `json:"serials,omitempty"`
	// Actor is the authenticated admin behind the command, for the audit
	// log ("" for the controllers' own verifier).
	Actor string `json:"actor,omitempty"`

	// Accounting is an sacctmgr change, applied all or nothing
	// (CmdAccounting).
	Accounting *api.AccountingRequest `json:"accounting,omitempty"`
	// Reservation is created or replaced (CmdSetReservation) or, by name,
	// deleted (CmdDeleteReservation).
	Reservation *api.Reservation `json:"reservation,omitempty"`
	// SchedConfig replaces the scheduler configuration (CmdSetSchedConfig).
	SchedConfig *api.SchedConfig `json:"sched_config,omitempty"`
	// Step is a new step (CmdCreateStep); the state machine assigns its id.
	// CmdCancelStep names the step to cancel by its JobID and StepID.
	Step *api.JobStep `json:"step,omitempty"`
	// StepReport is a finished task (CmdStepReport).
	StepReport *api.StepReport `json:"step_report,omitempty"`

	// Prices is the new price set (CmdSetPrices); the state machine
	// assigns its version and time.
	Prices *accounting.PriceSet `json:"prices,omitempty"`
	// Epoch is the header of the next epoch (CmdSealEpoch).
	Epoch *accounting.Epoch `json:"epoch,omitempty"`
	// Anchored says where an epoch's commitment was published
	// (CmdEpochAnchored).
	Anchored *EpochAnchored `json:"anchored,omitempty"`
	// Settlement moves records' settlement status (CmdSetSettlement).
	Settlement *accounting.SettlementRequest `json:"settlement,omitempty"`
	// Chain is the cluster-wide anchoring chain endpoint (CmdSetChain).
	Chain *accounting.ChainInfo `json:"chain,omitempty"`
}

// EpochAnchored is the payload of CmdEpochAnchored.
type EpochAnchored struct {
	Number uint64            `json:"number"`
	Anchor accounting.Anchor `json:"anchor"`
	// AnchoredAt is when the transaction was mined; zero means the
	// command's time.
	AnchoredAt time.Time `json:"anchored_at,omitzero"`
}

// NodeAttestation is the verifier's verdict on one node, for
// CmdNodeAttested, CmdAttestFailed and CmdRefused.
type NodeAttestation struct {
	Node string `json:"node"`
	// Trust is TrustAttested or TrustApproved (CmdNodeAttested).
	Trust api.Trust `json:"trust,omitempty"`
	// EKFingerprint is "sha256:<hex>" of the EK's PKIX DER.
	EKFingerprint string `json:"ek_fingerprint,omitempty"`
	// CertSerial is the serial of the certificate issued with this
	// verdict, in hex; "" keeps the node's current one.
	CertSerial string `json:"cert_serial,omitempty"`
	// Renewal marks a periodic re-attestation of an admitted node.
	Renewal bool `json:"renewal,omitempty"`
	// AKPublic is the enrolled attestation key (TPMT_PUBLIC); an
	// enrollment sets it, a renewal without one keeps the node's.
	AKPublic []byte `json:"ak_public,omitempty"`
	// Code and Reason explain a failure or refusal (policy decision codes).
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// TOFUResult is what Apply returns for CmdRecordTOFU.
type TOFUResult struct {
	// Version is the policy version after the command.
	Version uint64
	// Recorded lists the PCRs pinned by this command, in order.
	Recorded []int
	// Stale is set when nothing could be recorded because the policy
	// changed since the evidence was judged (or TOFU is off): the node must
	// be re-evaluated against the current policy before it is admitted.
	Stale bool
}

// SubmitJob queues a job or an array. The submitter's identity was
// authenticated by the API layer before the command was proposed.
type SubmitJob struct {
	Spec api.JobSpec `json:"spec"`
	User string      `json:"user"`
	UID  uint32      `json:"uid"`
	GID  uint32      `json:"gid"`
}

// SubmitResult is what Apply returns for CmdSubmitJob.
type SubmitResult struct {
	JobID   uint64
	TaskIDs []uint64
	// Duplicate is true when SubmitID matched an earlier submission.
	Duplicate bool
}
