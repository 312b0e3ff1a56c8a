package raftstore

import (
	"bytes"
	"testing"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/scheduler"
)

func TestSchedEvents(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdAddAccount, Account: &api.Account{Name: "research"}})
	h.must(Command{Type: CmdAddUser, User: &api.User{Name: "alice", UID: 1000, GID: 1000,
		DefaultAccount: "research", Accounts: []string{"research"}}})
	spec := func(held bool, submitID string) api.JobSpec {
		return api.JobSpec{Name: "j", Script: "#!/bin/sh\n", WorkDir: "/tmp", Nodes: 1, Tasks: 1, CPUsPerTask: 1,
			Hold: held, SubmitID: submitID}
	}
	submit := func(user string, s api.JobSpec) Command {
		return Command{Type: CmdSubmitJob, Submit: &SubmitJob{Spec: s, User: user, UID: 1000, GID: 1000}}
	}
	var running uint64
	for _, tc := range []struct {
		name string
		cmd  func() *Command // nil result: ApplyCommand(nil), a configuration entry
		want SchedEvents     // the difference the command makes
	}{
		{"held job of a known user", func() *Command { c := submit("alice", spec(true, "a")); return &c }, SchedEvents{}},
		{"duplicate submission", func() *Command { c := submit("alice", spec(false, "a")); return &c }, SchedEvents{}},
		{"held array of a known user", func() *Command {
			s := spec(true, "arr")
			s.ArrayTasks = []int{1, 2, 3}
			c := submit("alice", s)
			return &c
		}, SchedEvents{}},
		{"job that may start", func() *Command { c := submit("alice", spec(false, "b")); return &c }, SchedEvents{Submits: 1}},
		{"held job of a user without an association", func() *Command { c := submit("bob", spec(true, "c")); return &c },
			SchedEvents{Submits: 1}},
		{"failed submission", func() *Command {
			s := spec(false, "d")
			s.Partition = "nope"
			c := submit("alice", s)
			return &c
		}, SchedEvents{}},
		{"the scheduler's plan", func() *Command {
			running = h.submit(spec(false, "")).JobID // counted before the baseline
			return &Command{Type: CmdApplyPlan, Plan: &scheduler.Plan{
				Placements: []scheduler.Placement{{JobID: running, Nodes: []string{"n1"}, CPUs: 1, MemoryMB: 100}},
				Reasons:    map[uint64]string{1: api.ReasonPriority}}}
		}, SchedEvents{}},
		{"a report that changes nothing", func() *Command {
			return &Command{Type: CmdJobReport, Report: &api.JobReport{JobID: 999, Node: "n1", State: api.JobCompleted}}
		}, SchedEvents{}},
		{"a job ends", func() *Command {
			return &Command{Type: CmdJobReport, Report: &api.JobReport{JobID: running, Node: "n1", State: api.JobCompleted}}
		}, SchedEvents{Changes: 1}},
		{"cancel", func() *Command { return &Command{Type: CmdCancelJobs, JobIDs: []uint64{1}} }, SchedEvents{Changes: 1}},
		{"release", func() *Command {
			return &Command{Type: CmdReleaseJobs, HeldBy: "user", JobIDs: []uint64{2}}
		}, SchedEvents{Changes: 1}},
		{"node registers", func() *Command {
			return &Command{Type: CmdRegisterNode, Register: &api.AgentRegisterRequest{Name: "n2", CPUs: 8, MemoryMB: 16000}}
		}, SchedEvents{Changes: 1}},
		{"node drained", func() *Command {
			return &Command{Type: CmdUpdateNodes, NodeNames: []string{"n2"}, NodeState: "drain", Reason: "x"}
		}, SchedEvents{Changes: 1}},
		{"scheduler configuration", func() *Command {
			return &Command{Type: CmdSetSchedConfig, SchedConfig: &api.SchedConfig{Policy: "fifo"}}
		}, SchedEvents{Changes: 1}},
		{"controller record", func() *Command {
			return &Command{Type: CmdSetController, Controller: &api.Controller{ID: "c1", APIAddr: "127.0.0.1:1"}}
		}, SchedEvents{}},
		{"configuration entry", func() *Command { return nil }, SchedEvents{}},
	} {
		cmd := tc.cmd()
		before := h.s.SchedEvents()
		h.idx++
		if cmd != nil {
			h.now += 1e9
			if cmd.Time == 0 {
				cmd.Time = h.now
			}
		}
		h.s.ApplyCommand(h.idx, cmd)
		after := h.s.SchedEvents()
		got := SchedEvents{Submits: after.Submits - before.Submits, Changes: after.Changes - before.Changes}
		if got != tc.want {
			t.Errorf("%s: counted %+v, want %+v", tc.name, got, tc.want)
		}
	}

	// A restored snapshot may change anything.
	var buf bytes.Buffer
	if _, err := h.s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	s := NewStore()
	if err := s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if got := s.SchedEvents(); got.Changes != 1 || got.Submits != 0 {
		t.Fatalf("after a restore: %+v", got)
	}
}
