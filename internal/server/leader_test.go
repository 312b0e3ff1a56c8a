package server

import (
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/raftstore"
	"github.com/stockade-hpc/stockade/scheduler"
)

// gateCluster is a state store with partition batch over n1 and n2 (4
// CPUs each, up) and user alice in account research, driven without
// Raft, and the scheduler passes the leader would run over it.
type gateCluster struct {
	t   *testing.T
	st  *raftstore.Store
	idx uint64
	now time.Time
}

func newGateCluster(t *testing.T) *gateCluster {
	c := &gateCluster{t: t, st: raftstore.NewStore(), now: time.Unix(1_700_000_000, 0)}
	c.do(&raftstore.Command{Type: raftstore.CmdSetPartitions,
		Partitions:      []api.Partition{{Name: "batch", Nodes: []string{"n1", "n2"}, Default: true, Up: true}},
		ConfiguredNodes: []api.Node{{Name: "n1"}, {Name: "n2"}}})
	for _, n := range []string{"n1", "n2"} {
		c.do(&raftstore.Command{Type: raftstore.CmdRegisterNode, Register: &api.AgentRegisterRequest{Name: n, CPUs: 4, MemoryMB: 8000}})
	}
	c.do(&raftstore.Command{Type: raftstore.CmdAddAccount, Account: &api.Account{Name: "research"}})
	c.do(&raftstore.Command{Type: raftstore.CmdAddUser, User: &api.User{Name: "alice", UID: 1000, GID: 1000,
		DefaultAccount: "research", Accounts: []string{"research"}}})
	return c
}

func (c *gateCluster) do(cmd *raftstore.Command) any {
	c.t.Helper()
	c.idx++
	c.now = c.now.Add(time.Millisecond)
	cmd.Time = c.now.UnixNano()
	res := c.st.ApplyCommand(c.idx, cmd)
	if err, ok := res.(error); ok {
		c.t.Fatalf("command %d: %v", cmd.Type, err)
	}
	return res
}

// submit queues a job of alice (bob has no association) needing cpus
// CPUs on one node.
func (c *gateCluster) submit(user string, cpus int, held bool) uint64 {
	c.t.Helper()
	res := c.do(&raftstore.Command{Type: raftstore.CmdSubmitJob, Submit: &raftstore.SubmitJob{User: user, UID: 1000, GID: 1000,
		Spec: api.JobSpec{Name: "j", Script: "#!/bin/sh\n", WorkDir: "/tmp", Nodes: 1, Tasks: 1, CPUsPerTask: cpus, Hold: held}}})
	return res.(*raftstore.SubmitResult).JobID
}

// pass runs one pass as scheduleLoop does and returns its gate.
func (c *gateCluster) pass() passGate {
	ev := c.st.SchedEvents()
	snap := c.st.Snapshot()
	plan := scheduler.Schedule(c.now, snap, scheduler.Options{MaxPlacementsPerPass: maxPlacements})
	g := newPassGate(c.now, ev, snap, &plan)
	if !plan.Empty() {
		c.do(&raftstore.Command{Type: raftstore.CmdApplyPlan, Plan: &plan})
	}
	g.quiet = len(plan.Placements) == 0 && len(plan.Preemptions) == 0 && len(plan.Cancels) == 0
	return g
}

// settle runs passes until one is quiet.
func (c *gateCluster) settle() passGate {
	c.t.Helper()
	for range 5 {
		if g := c.pass(); g.quiet {
			return g
		}
	}
	c.t.Fatal("the scheduler does not settle")
	return passGate{}
}

func (c *gateCluster) needed(g *passGate) bool {
	return g.needed(c.now, c.st.SchedEvents(), c.st.Snapshot())
}

func TestPassGate(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before runs before the cluster settles, after between the last
		// (quiet) pass and the question.
		before, after func(c *gateCluster)
		want          bool
	}{
		{name: "nothing happened", want: false},
		{name: "a job submitted to an idle cluster starts at once", want: true,
			after: func(c *gateCluster) { c.submit("alice", 1, false) }},
		{name: "held jobs never start", want: false,
			after: func(c *gateCluster) {
				for range 10 {
					c.submit("alice", 1, true)
				}
			}},
		{name: "held job of a user without an association, nothing pending", want: false,
			after: func(c *gateCluster) { c.submit("bob", 1, true) }},
		{name: "full cluster: submissions cannot start", want: false,
			before: func(c *gateCluster) { c.submit("alice", 4, false); c.submit("alice", 4, false) },
			after: func(c *gateCluster) {
				c.submit("alice", 1, false)
				c.submit("alice", 2, true)
			}},
		{name: "full cluster: a job ends", want: true,
			before: func(c *gateCluster) { c.submit("alice", 4, false); c.submit("alice", 4, false) },
			after: func(c *gateCluster) {
				c.submit("alice", 1, false)
				c.do(&raftstore.Command{Type: raftstore.CmdJobReport, Report: &api.JobReport{JobID: 1, Node: "n1", State: api.JobCompleted}})
			}},
		{name: "full cluster: a job is cancelled", want: true,
			before: func(c *gateCluster) {
				c.submit("alice", 4, false)
				c.submit("alice", 4, false)
				c.submit("alice", 4, false)
			},
			after: func(c *gateCluster) { c.do(&raftstore.Command{Type: raftstore.CmdCancelJobs, JobIDs: []uint64{3}}) }},
		{name: "full cluster: a held job is released", want: true,
			before: func(c *gateCluster) {
				c.submit("alice", 4, false)
				c.submit("alice", 4, false)
				c.submit("alice", 1, true)
			},
			after: func(c *gateCluster) {
				c.do(&raftstore.Command{Type: raftstore.CmdReleaseJobs, HeldBy: "user", JobIDs: []uint64{3}})
			}},
		{name: "full cluster: a node is resumed", want: true,
			before: func(c *gateCluster) {
				c.submit("alice", 4, false)
				c.submit("alice", 4, false)
				c.do(&raftstore.Command{Type: raftstore.CmdUpdateNodes, NodeNames: []string{"n2"}, NodeState: "drain", Reason: "x"})
			},
			after: func(c *gateCluster) {
				c.do(&raftstore.Command{Type: raftstore.CmdUpdateNodes, NodeNames: []string{"n2"}, NodeState: "resume"})
			}},
		{name: "full cluster: the scheduler configuration changes", want: true,
			before: func(c *gateCluster) { c.submit("alice", 4, false); c.submit("alice", 4, false) },
			after: func(c *gateCluster) {
				c.do(&raftstore.Command{Type: raftstore.CmdSetSchedConfig, SchedConfig: &api.SchedConfig{Policy: "fifo"}})
			}},
		{name: "full cluster with a preempting QoS", want: true,
			before: func(c *gateCluster) {
				c.do(&raftstore.Command{Type: raftstore.CmdAccounting, Accounting: &api.AccountingRequest{Op: "add",
					QOS: []api.QOS{{Name: "normal"}, {Name: "high", Preempt: []string{"normal"}, PreemptMode: "requeue"}}}})
				c.submit("alice", 4, false)
				c.submit("alice", 4, false)
			},
			after: func(c *gateCluster) { c.submit("alice", 1, false) }},
		{name: "2 CPUs free, pending jobs need 3", want: false,
			before: twoFreeThreePending,
			after:  func(c *gateCluster) { c.submit("alice", 4, false) }},
		{name: "2 CPUs free, a job needing 2 comes", want: true,
			before: twoFreeThreePending,
			after:  func(c *gateCluster) { c.submit("alice", 4, false); c.submit("alice", 2, false) }},
		{name: "2 CPUs free, a held job of a new user may reorder a queue that fits", want: false,
			// The pending 3-CPU job cannot use the 2 free CPUs whatever
			// its rank.
			before: twoFreeThreePending,
			after:  func(c *gateCluster) { c.submit("bob", 1, true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newGateCluster(t)
			if tc.before != nil {
				tc.before(c)
			}
			g := c.settle()
			if tc.after != nil {
				tc.after(c)
			}
			if got := c.needed(&g); got != tc.want {
				t.Fatalf("pass needed = %v, want %v", got, tc.want)
			}
			if !tc.want {
				// The gate is exact: a pass now would start nothing.
				if g2 := c.pass(); !g2.quiet {
					t.Fatal("the pass the gate would skip starts or preempts something")
				}
			}
		})
	}
}

// twoFreeThreePending leaves 2 CPUs free on n2 and a job needing 3
// pending.
func twoFreeThreePending(c *gateCluster) {
	c.t.Helper()
	c.submit("alice", 4, false)
	c.submit("alice", 2, false)
	c.settle()
	c.submit("alice", 3, false)
	snap := c.st.Snapshot()
	if n1, n2 := snap.Node("n1"), snap.Node("n2"); n1.AllocCPUs+n2.AllocCPUs != 6 {
		c.t.Fatalf("allocated: n1 %d, n2 %d", n1.AllocCPUs, n2.AllocCPUs)
	}
}

func TestPassGateAlwaysRuns(t *testing.T) {
	c := newGateCluster(t)
	if g := (passGate{}); !c.needed(&g) {
		t.Error("the first pass of a term is skipped")
	}
	c.submit("alice", 4, false)
	c.submit("alice", 4, false)
	if g := c.pass(); g.quiet || !c.needed(&g) {
		t.Errorf("a pass that started jobs (quiet %v) is not followed by another", g.quiet)
	}
	g := c.settle()
	c.submit("alice", 1, false)
	if c.needed(&g) {
		t.Fatal("a job that cannot start needs a pass")
	}
	g.quiet = false // its plan failed to commit
	if !c.needed(&g) {
		t.Error("a pass whose plan was not committed is not retried")
	}
	g.quiet = true
	c.now = g.at.Add(schedTick)
	if !c.needed(&g) {
		t.Error("the periodic pass is skipped")
	}
}

// TestPassGateCountsEachJobOnce checks that skipped checks fold new jobs
// in once and keep the least need.
func TestPassGateCountsEachJobOnce(t *testing.T) {
	c := newGateCluster(t)
	twoFreeThreePending(c)
	g := c.settle()
	for range 3 {
		c.submit("alice", 3, false)
		if c.needed(&g) {
			t.Fatal("3-CPU jobs cannot start on 2 free CPUs")
		}
	}
	if g.next != c.st.Snapshot().NextJobID() || g.minCPUs != 3 {
		t.Fatalf("gate next %d minCPUs %d", g.next, g.minCPUs)
	}
	c.submit("alice", 2, true) // held: never counted
	if c.needed(&g) || g.minCPUs != 3 {
		t.Fatalf("a held job changed the gate (minCPUs %d)", g.minCPUs)
	}
	c.submit("alice", 1, false)
	if !c.needed(&g) {
		t.Fatal("a 1-CPU job fits")
	}
}
