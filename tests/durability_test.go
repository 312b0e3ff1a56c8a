package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/testcluster"
)

func submitID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// TestLeaderKillDuringSubmits: 4 clients submit 1,000 jobs to 3 controllers;
// the leader is killed with SIGKILL midway. Every acknowledged job exists
// exactly once afterwards, a new leader serves within 3 s, and placement
// continues.
func TestLeaderKillDuringSubmits(t *testing.T) {
	c := testcluster.StartCluster(t, 1)
	c.AddController(c.Config)
	c.AddController(c.Config)
	c.StartAgent("node1")
	c.WaitFor(60*time.Second, "node1 idle", func() bool {
		out, _, _ := c.CLI("", "sinfo", "-h", "-N", "-n", "node1", "-o", "%t")
		return out == "idle\n"
	})
	tok := c.AddUser("alice", aliceUID)
	dir := c.UserDir("alice", aliceUID)

	var st api.Status
	if err := c.Client("").Do(t.Context(), "GET", "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	var leader *testcluster.Controller
	for _, ctl := range c.Controllers {
		if ctl.ID == st.Leader {
			leader = ctl
		}
	}
	if leader == nil {
		t.Fatalf("leader %q not among controllers", st.Leader)
	}

	const clients, perClient = 4, 250
	type ack struct {
		sid string
		id  uint64
	}
	var mu sync.Mutex
	var acks []ack
	var submitted sync.WaitGroup
	killAt := make(chan struct{})
	var once sync.Once
	for w := 0; w < clients; w++ {
		submitted.Add(1)
		go func() {
			defer submitted.Done()
			cl := c.Client(tok)
			for i := 0; i < perClient; i++ {
				sid := submitID()
				req := api.SubmitRequest{Spec: api.JobSpec{
					Name: "storm", Script: "#!/bin/sh\ntrue\n", WorkDir: dir, CPUsPerTask: 1, Nodes: 1, Tasks: 1,
					Requeue: true, Hold: true, SubmitID: sid, Output: "/dev/null",
				}}
				var resp api.SubmitResponse
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := cl.Do(ctx, "POST", "/v1/jobs", req, &resp)
				cancel()
				if err != nil {
					t.Errorf("submit: %v", err)
					return
				}
				mu.Lock()
				acks = append(acks, ack{sid, resp.JobID})
				if len(acks) == clients*perClient/3 {
					once.Do(func() { close(killAt) })
				}
				mu.Unlock()
			}
		}()
	}
	<-killAt
	killed := time.Now()
	leader.Kill9()
	// A new leader must serve within 3 s of the kill.
	var others []string
	for _, ctl := range c.Controllers {
		if ctl != leader {
			others = append(others, ctl.APIAddr)
		}
	}
	var newLeader string
	var serving time.Duration
	for time.Since(killed) < 10*time.Second {
		cl := c.Client("")
		cl.Servers = others
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		var s api.Status
		err := cl.Do(ctx, "GET", "/v1/status", nil, &s)
		cancel()
		if err == nil && s.Leader != "" && s.Leader != leader.ID {
			newLeader, serving = s.Leader, time.Since(killed)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("new leader %s serving %s after the kill", newLeader, serving)
	if newLeader == "" || serving > 3*time.Second {
		t.Errorf("no new leader within 3 s (got %q after %s)", newLeader, serving)
	}
	submitted.Wait()

	// Every acknowledged submission exists exactly once.
	cl := c.Client("")
	cl.Servers = others
	var resp api.JobsResponse
	if err := cl.Do(t.Context(), "GET", "/v1/jobs?all=true&name=storm", nil, &resp); err != nil {
		t.Fatal(err)
	}
	bySID := map[string][]uint64{}
	byID := map[uint64]api.Job{}
	for _, j := range resp.Jobs {
		bySID[j.Spec.SubmitID] = append(bySID[j.Spec.SubmitID], j.ID)
		byID[j.ID] = j
	}
	if len(acks) != clients*perClient {
		t.Errorf("%d of %d submissions acknowledged", len(acks), clients*perClient)
	}
	for _, a := range acks {
		ids := bySID[a.sid]
		if len(ids) != 1 || ids[0] != a.id {
			t.Errorf("submission %s acknowledged as job %d, found as %v", a.sid, a.id, ids)
		}
	}
	if len(resp.Jobs) != len(acks) {
		t.Errorf("%d storm jobs stored, %d acknowledged", len(resp.Jobs), len(acks))
	}
	// Placement continues under the new leader.
	id := submit(t, c, tok, dir, "--wrap", "exit 0")
	if j := c.WaitJobEnd(id, 60*time.Second); j.State != api.JobCompleted {
		t.Errorf("job after failover: %s", j.State)
	}
}

// TestAgentRestartKeepsExitStatus: kill -9 the agent while a 20-second job
// runs and start it again: the job ends COMPLETED with its exit code and
// usage.
func TestAgentRestartKeepsExitStatus(t *testing.T) {
	c := testcluster.StartCluster(t, 1, "node1")
	tok := c.AddUser("alice", aliceUID)
	dir := c.UserDir("alice", aliceUID)
	id := submit(t, c, tok, dir, "--wrap", `i=0; while [ $i -lt 20 ]; do sleep 1; i=$((i+1)); done; echo done`)
	c.WaitFor(30*time.Second, "job running", func() bool { return c.Job(id).State == api.JobRunning })
	time.Sleep(3 * time.Second)
	c.Agents["node1"].Kill9()
	time.Sleep(2 * time.Second)
	c.StartAgent("node1")
	j := c.WaitJobEnd(id, 60*time.Second)
	if j.State != api.JobCompleted || j.ExitCode != 0 {
		t.Fatalf("job after agent restart: %s exit %d (%s)", j.State, j.ExitCode, j.FailReason)
	}
	if el := j.EndTime.Sub(j.StartTime); el < 19*time.Second {
		t.Errorf("job ran only %s", el)
	}
	if j.Usage.WallTimeNs < uint64(19*time.Second) {
		t.Errorf("usage lost: %+v", j.Usage)
	}
	if j.Restarts != 0 {
		t.Errorf("job was restarted %d times; it should have kept running", j.Restarts)
	}
}

// TestNodeFailureRequeues: a node whose agent stops heartbeating goes DOWN;
// its requeueable job runs again elsewhere, a --no-requeue job ends
// NODE_FAIL.
func TestNodeFailureRequeues(t *testing.T) {
	c := testcluster.StartCluster(t, 1, "node1")
	tok := c.AddUser("alice", aliceUID)
	dir := c.UserDir("alice", aliceUID)
	rq := submit(t, c, tok, dir, "-w", "node1", "--wrap", "sleep 30")
	nrq := submit(t, c, tok, dir, "-w", "node1", "--no-requeue", "--wrap", "sleep 30")
	c.WaitFor(30*time.Second, "jobs running", func() bool {
		return c.Job(rq).State == api.JobRunning && c.Job(nrq).State == api.JobRunning
	})
	c.Agents["node1"].Kill9()
	c.WaitFor(30*time.Second, "node1 down", func() bool {
		out, _, _ := c.CLI("", "sinfo", "-h", "-N", "-n", "node1", "-o", "%t")
		return out == "down\n" || out == "down*\n"
	})
	if j := c.Job(nrq); j.State != api.JobNodeFail {
		t.Errorf("--no-requeue job on a failed node: %s", j.State)
	}
	j := c.Job(rq)
	if j.State != api.JobPending || j.Restarts != 1 {
		t.Errorf("requeueable job on a failed node: %s restarts %d", j.State, j.Restarts)
	}
}
