package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/raftstore"
	"github.com/stockade-hpc/stockade/scheduler"
)

// Placement benchmark shape. 1,000 nodes × 32 CPUs is 32,000 slots, so the
// 20,000 one-CPU jobs all fit at once: placement is never gated by
// completions, which only add the agents' report traffic to the state
// store between passes.
const (
	placeNodes    = 1000
	placeNodeCPUs = 32
	placeNodeMem  = 128 * 1024 // MiB
	placeJobMem   = 100        // MiB
	// placeMaxPerPass mirrors internal/server's maxPlacements, the cap the
	// leader's scheduler loop passes in scheduler.Options.
	placeMaxPerPass = 1000
	// After each pass the simulated agents complete 1/placeCompleteDiv of
	// the running jobs, oldest first.
	placeCompleteDiv = 4
	// placeReportWorkers is how many agent reports are in flight at once
	// through Raft (reports from different agents are independent).
	placeReportWorkers = 64
	// Pure-pass baseline: at least this many passes and this much time.
	baselineMinPasses = 5
	baselineMinTime   = 500 * time.Millisecond
)

// placeOpts is the scheduler options of the benchmark; the cap can be
// changed with STOCKADE_BENCH_MAX_PLACEMENTS (0: unlimited).
func placeOpts() scheduler.Options {
	maxPer := placeMaxPerPass
	if v, err := strconv.Atoi(os.Getenv("STOCKADE_BENCH_MAX_PLACEMENTS")); err == nil && v >= 0 {
		maxPer = v
	}
	return scheduler.Options{MaxPlacementsPerPass: maxPer}
}

// committer is the path commands take into the state: straight into the
// Store (ApplyCommand) or through a Raft member (Node.Apply).
type committer interface {
	store() *raftstore.Store
	// apply commits one command and returns its result.
	apply(cmd *raftstore.Command) (any, error)
	// applyAll commits independent commands (possibly concurrently, as
	// separate clients would) and returns their results in order.
	applyAll(cmds []*raftstore.Command) ([]any, error)
}

// directCommitter applies commands in-process with increasing indexes.
type directCommitter struct {
	st  *raftstore.Store
	idx uint64
}

func (d *directCommitter) store() *raftstore.Store { return d.st }

func (d *directCommitter) apply(cmd *raftstore.Command) (any, error) {
	d.idx++
	res := d.st.ApplyCommand(d.idx, cmd)
	if err, ok := res.(error); ok {
		return nil, err
	}
	return res, nil
}

func (d *directCommitter) applyAll(cmds []*raftstore.Command) ([]any, error) {
	out := make([]any, len(cmds))
	for i, c := range cmds {
		r, err := d.apply(c)
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

// raftCommitter proposes commands to a single-member Raft cluster.
type raftCommitter struct {
	node *raftstore.Node
}

func (r *raftCommitter) store() *raftstore.Store { return r.node.Store() }

func (r *raftCommitter) apply(cmd *raftstore.Command) (any, error) {
	return r.node.Apply(context.Background(), cmd)
}

func (r *raftCommitter) applyAll(cmds []*raftstore.Command) ([]any, error) {
	out := make([]any, len(cmds))
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range min(placeReportWorkers, len(cmds)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(cmds) || firstErr.Load() != nil {
					return
				}
				res, err := r.apply(cmds[i])
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				out[i] = res
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	return out, nil
}

// benchClock hands out strictly increasing command times.
type benchClock struct{ t time.Time }

func (c *benchClock) next() time.Time {
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func placeNodeName(i int) string { return fmt.Sprintf("node%04d", i+1) }

// setupPlacement loads the partition, the nodes, a user and jobs pending
// jobs, as the API would propose them.
func setupPlacement(b *testing.B, c committer, clk *benchClock, jobs int) {
	b.Helper()
	names := make([]string, placeNodes)
	configured := make([]api.Node, placeNodes)
	for i := range names {
		names[i] = placeNodeName(i)
		configured[i] = api.Node{Name: names[i]}
	}
	if _, err := c.apply(&raftstore.Command{Type: raftstore.CmdSetPartitions, Time: clk.next().UnixNano(),
		Partitions:      []api.Partition{{Name: "batch", Nodes: names, Default: true, Up: true}},
		ConfiguredNodes: configured}); err != nil {
		b.Fatalf("set partitions: %v", err)
	}
	regs := make([]*raftstore.Command, placeNodes)
	for i, name := range names {
		regs[i] = &raftstore.Command{Type: raftstore.CmdRegisterNode, Time: clk.next().UnixNano(),
			Register: &api.AgentRegisterRequest{Name: name, CPUs: placeNodeCPUs, MemoryMB: placeNodeMem,
				BootTime: clk.t.Unix(), AgentVersion: "bench", Arch: "x86_64", OS: "linux"}}
	}
	if _, err := c.applyAll(regs); err != nil {
		b.Fatalf("register nodes: %v", err)
	}
	if _, err := c.apply(&raftstore.Command{Type: raftstore.CmdAddUser, Time: clk.next().UnixNano(),
		User: &api.User{Name: "bench", UID: 1000, GID: 1000, DefaultAccount: "bench", Accounts: []string{"bench"}}}); err != nil {
		b.Fatalf("add user: %v", err)
	}
	subs := make([]*raftstore.Command, jobs)
	for i := range subs {
		subs[i] = &raftstore.Command{Type: raftstore.CmdSubmitJob, Time: clk.next().UnixNano(),
			Submit: &raftstore.SubmitJob{User: "bench", UID: 1000, GID: 1000, Spec: api.JobSpec{
				Name: "bench", Script: "#!/bin/sh\ntrue\n", WorkDir: "/tmp",
				Nodes: 1, Tasks: 1, CPUsPerTask: 1, MemoryPerNodeMB: placeJobMem, Requeue: true,
			}}}
	}
	if _, err := c.applyAll(subs); err != nil {
		b.Fatalf("submit: %v", err)
	}
	snap := c.store().Snapshot()
	if n := len(snap.PendingJobs()); n != jobs {
		b.Fatalf("%d pending jobs after setup, want %d", n, jobs)
	}
	up := 0
	for _, n := range snap.Nodes() {
		if n.Usable() {
			up++
		}
	}
	if up != placeNodes {
		b.Fatalf("%d usable nodes after setup, want %d", up, placeNodes)
	}
}

// pureRate measures the scheduler pass alone over one snapshot, nothing
// committed: placements per second of Schedule (memdb reads included).
func pureRate(snap scheduler.State, now time.Time, opts scheduler.Options) (placed int, took time.Duration) {
	start := time.Now()
	for pass := 0; pass < baselineMinPasses || time.Since(start) < baselineMinTime; pass++ {
		plan := scheduler.Schedule(now, snap, opts)
		placed += len(plan.Placements)
	}
	return placed, time.Since(start)
}

// cycleStats is what one end-to-end run measured.
type cycleStats struct {
	placed, rejected, completed, passes int
	total, sched, commit, reports       time.Duration
}

func (s *cycleStats) add(o cycleStats) {
	s.placed += o.placed
	s.rejected += o.rejected
	s.completed += o.completed
	s.passes += o.passes
	s.total += o.total
	s.sched += o.sched
	s.commit += o.commit
	s.reports += o.reports
}

// runCycle is the leader's scheduler loop driven back to back: snapshot,
// pass, commit the plan, then the simulated agents complete a share of the
// running jobs, until a pass places nothing.
func runCycle(b *testing.B, c committer, clk *benchClock, opts scheduler.Options) cycleStats {
	b.Helper()
	var s cycleStats
	st := c.store()
	start := time.Now()
	for {
		t0 := time.Now()
		snap := st.Snapshot()
		now := clk.next()
		plan := scheduler.Schedule(now, snap, opts)
		t1 := time.Now()
		s.sched += t1.Sub(t0)
		if len(plan.Placements) == 0 {
			break
		}
		res, err := c.apply(&raftstore.Command{Type: raftstore.CmdApplyPlan, Time: now.UnixNano(), Plan: &plan})
		if err != nil {
			b.Fatalf("apply plan: %v", err)
		}
		pr := res.(*raftstore.PlanResult)
		s.placed += pr.Applied
		s.rejected += len(pr.Rejected)
		s.passes++
		t2 := time.Now()
		s.commit += t2.Sub(t1)

		running := st.Snapshot().RunningJobs()
		done := running[:len(running)/placeCompleteDiv]
		reps := make([]*raftstore.Command, len(done))
		for i, j := range done {
			reps[i] = &raftstore.Command{Type: raftstore.CmdJobReport, Time: clk.next().UnixNano(),
				Report: &api.JobReport{JobID: j.ID, Node: j.Nodes[0], State: api.JobCompleted,
					StartUnix: j.StartTime.Unix(), EndUnix: clk.t.Unix(), Attempt: j.Restarts}}
		}
		out, err := c.applyAll(reps)
		if err != nil {
			b.Fatalf("job reports: %v", err)
		}
		for _, r := range out {
			if ok, _ := r.(bool); ok {
				s.completed++
			}
		}
		s.reports += time.Since(t2)
	}
	s.total = time.Since(start)
	if n := len(st.Snapshot().PendingJobs()); n != 0 {
		b.Fatalf("%d jobs still pending after the last pass", n)
	}
	return s
}

// benchmarkPlacement runs b.N fresh clusters through runCycle and reports
// end-to-end placements/s next to the pure scheduler pass over the same
// initial snapshot.
func benchmarkPlacement(b *testing.B, name string, open func(b *testing.B) (committer, func())) {
	jobs := envInt("STOCKADE_BENCH_PLACE_JOBS", 20_000)
	opts := placeOpts()
	var e2e cycleStats
	var purePlaced int
	var pureTook time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		c, closeFn := open(b)
		clk := &benchClock{t: time.Now().UTC().Truncate(time.Second)}
		setupPlacement(b, c, clk, jobs)
		p, d := pureRate(c.store().Snapshot(), clk.next(), opts)
		purePlaced += p
		pureTook += d
		b.StartTimer()
		e2e.add(runCycle(b, c, clk, opts))
		b.StopTimer()
		closeFn()
		b.StartTimer()
	}
	if e2e.rejected > 0 {
		b.Errorf("%d placements rejected by the state store", e2e.rejected)
	}
	rate := float64(e2e.placed) / e2e.total.Seconds()
	pure := float64(purePlaced) / pureTook.Seconds()
	b.ReportMetric(rate, "placements/s")
	b.ReportMetric(pure, "pure-placements/s")
	b.ReportMetric(rate/pure, "e2e/pure")
	b.ReportMetric(float64(e2e.passes)/float64(b.N), "passes/op")
	b.ReportMetric(float64(e2e.completed)/float64(b.N), "completions/op")
	b.ReportMetric(float64(e2e.sched.Milliseconds())/float64(b.N), "sched-ms/op")
	b.ReportMetric(float64(e2e.commit.Milliseconds())/float64(b.N), "commit-ms/op")
	b.ReportMetric(float64(e2e.reports.Milliseconds())/float64(b.N), "reports-ms/op")
	fmt.Printf("%s: %.0f placements/s end to end (%d nodes, %d jobs) | pure scheduler pass %.0f placements/s | ratio %.2f\n",
		name, rate, placeNodes, jobs, pure, rate/pure)
}

// BenchmarkPlacement1000Nodes measures placements per second on 1,000
// nodes through the real state store: each pass snapshots the store, runs
// the scheduler and applies the plan with ApplyCommand (the leader's loop
// without the Raft round trip), and in-process simulated agents complete a
// quarter of the running jobs with CmdJobReport between passes. The
// baseline is the scheduler pass alone over the initial snapshot.
func BenchmarkPlacement1000Nodes(b *testing.B) {
	benchmarkPlacement(b, "placement", func(*testing.B) (committer, func()) {
		return &directCommitter{st: raftstore.NewStore()}, func() {}
	})
}

// BenchmarkPlacement1000NodesRaft is the same cycle with every command
// (plans and agent reports) committed through a single-member Raft
// cluster over mutual TLS on loopback, with its log on disk.
func BenchmarkPlacement1000NodesRaft(b *testing.B) {
	benchmarkPlacement(b, "placement via raft", openBenchRaft)
}

func openBenchRaft(b *testing.B) (committer, func()) {
	b.Helper()
	srv, cli := benchTLS(b, "bench0")
	node, err := raftstore.Open(raftstore.Config{
		ID: "bench0", DataDir: b.TempDir(), RaftBind: "127.0.0.1:0",
		ServerTLS: srv, ClientTLS: cli, Bootstrap: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatalf("raftstore.Open: %v", err)
	}
	changes := node.LeadershipChanges()
	deadline := time.After(15 * time.Second)
	for leader := false; !leader || !node.IsLeader(); {
		select {
		case leader = <-changes:
		case <-deadline:
			node.Shutdown()
			b.Fatal("no Raft leadership within 15 s")
		}
	}
	return &raftCommitter{node: node}, func() {
		if err := node.Shutdown(); err != nil {
			b.Errorf("raft shutdown: %v", err)
		}
	}
}

// benchTLS makes a throwaway CA and one controller certificate for
// 127.0.0.1, usable for both sides of mutual TLS.
func benchTLS(b *testing.B, cn string) (server, client *tls.Config) {
	b.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench cluster CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		b.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		b.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: cn, OrganizationalUnit: []string{"controller"}},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, MinVersion: tls.VersionTLS13},
		&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13}
}
