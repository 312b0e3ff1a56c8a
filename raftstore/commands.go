package raftstore

import (
	"github.com/stockade-hpc/stockade/api"
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
