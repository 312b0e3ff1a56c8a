package raftstore

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stockade-hpc/stockade/api"
)

// testPKI is a throwaway cluster CA.
type testPKI struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pool   *x509.CertPool
	serial atomic.Int64
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test cluster CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &testPKI{cert: cert, key: key, pool: x509.NewCertPool()}
	p.pool.AddCert(cert)
	p.serial.Store(1)
	return p
}

// issue signs a certificate for 127.0.0.1 usable as server and client.
func (p *testPKI) issue(t testing.TB, cn, ou string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn, OrganizationalUnit: []string{ou}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (p *testPKI) configs(t testing.TB, cn, ou string) (server, client *tls.Config) {
	cert := p.issue(t, cn, ou)
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: p.pool}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: p.pool}
	return server, client
}

func testLogger() *slog.Logger {
	if os.Getenv("STOCKADE_TEST_RAFTLOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testCluster runs members in this process on loopback.
type testCluster struct {
	t     testing.TB
	pki   *testPKI
	cfgs  []Config
	nodes []*Node // nil once shut down
}

func newCluster(t testing.TB, size int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, pki: newPKI(t)}
	t.Cleanup(c.shutdownAll)
	c.add(true)
	c.leader(5 * time.Second)
	for i := 1; i < size; i++ {
		c.join(c.add(false))
	}
	return c
}

// add opens a new member with a fresh data dir.
func (c *testCluster) add(bootstrap bool) int {
	c.t.Helper()
	i := len(c.cfgs)
	srv, cli := c.pki.configs(c.t, fmt.Sprintf("c%d", i), "controller")
	c.cfgs = append(c.cfgs, Config{
		ID: fmt.Sprintf("c%d", i), DataDir: c.t.TempDir(), RaftBind: "127.0.0.1:0",
		ServerTLS: srv, ClientTLS: cli, Bootstrap: bootstrap, Logger: testLogger(),
	})
	c.nodes = append(c.nodes, nil)
	c.start(i)
	return i
}

// start opens member i from its data dir, on the address it had before.
func (c *testCluster) start(i int) *Node {
	c.t.Helper()
	n, err := Open(c.cfgs[i])
	if err != nil {
		c.t.Fatalf("open c%d: %v", i, err)
	}
	c.cfgs[i].RaftBind = string(n.trans.LocalAddr())
	c.nodes[i] = n
	return n
}

func (c *testCluster) join(i int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.leader(5*time.Second).AddVoter(ctx, c.cfgs[i].ID, c.cfgs[i].RaftBind); err != nil {
		c.t.Fatalf("add voter c%d: %v", i, err)
	}
}

func (c *testCluster) stop(i int) {
	c.t.Helper()
	if err := c.nodes[i].Shutdown(); err != nil {
		c.t.Errorf("shutdown c%d: %v", i, err)
	}
	c.nodes[i] = nil
}

func (c *testCluster) shutdownAll() {
	for i, n := range c.nodes {
		if n != nil {
			n.Shutdown()
			c.nodes[i] = nil
		}
	}
}

// leader waits for a live member that leads and serves linearizable reads.
func (c *testCluster) leader(timeout time.Duration) *Node {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n == nil || !n.IsLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			err := n.ReadBarrier(ctx)
			cancel()
			if err == nil {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("no leader within %v", timeout)
	return nil
}

func (c *testCluster) followers(leader *Node) []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if n != nil && n != leader {
			out = append(out, n)
		}
	}
	return out
}

// caughtUp waits until n has applied index.
func caughtUp(t testing.TB, n *Node, index uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for n.Store().Index() < index {
		if _, err := n.Store().WaitForIndex(ctx, n.Store().Index()); err != nil {
			t.Fatalf("%s stuck at index %d, want %d", n.id, n.Store().Index(), index)
		}
	}
}

func dump(t testing.TB, s *Store) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// seed applies partitions, a node and jobs jobs through the leader.
func seed(t testing.TB, n *Node, jobs int) []uint64 {
	t.Helper()
	ctx := context.Background()
	if _, err := n.Apply(ctx, &Command{Type: CmdSetPartitions,
		Partitions:      []api.Partition{{Name: "batch", Nodes: []string{"n1"}, Default: true, Up: true}},
		ConfiguredNodes: []api.Node{{Name: "n1"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(ctx, &Command{Type: CmdAddUser, User: &api.User{Name: "alice", TokenID: "t1", TokenHash: "hash1"}}); err != nil {
		t.Fatal(err)
	}
	return submitN(t, n, jobs)
}

func submitN(t testing.TB, n *Node, jobs int) []uint64 {
	t.Helper()
	var ids []uint64
	for i := range jobs {
		// A loaded test machine can cost the leader its lease mid-commit;
		// the submit id makes the retry safe, as it is for real clients.
		sid := fmt.Sprintf("%p-%d-%d", n, time.Now().UnixNano(), i)
		var res any
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			res, err = n.Apply(context.Background(), &Command{Type: CmdSubmitJob, Submit: &SubmitJob{Spec: api.JobSpec{Name: "j", SubmitID: sid}, User: "alice"}})
			if !errors.Is(err, ErrLeadershipLost) {
				break
			}
			time.Sleep(time.Second) // the same member usually wins again
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.(*SubmitResult).JobID)
	}
	return ids
}

func TestClusterReplication(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.leader(5 * time.Second)
	ids := seed(t, leader, 5)
	want := leader.Store().Index()
	lid, laddr := leader.Leader()

	tests := []struct {
		name string
		run  func(t *testing.T, f *Node)
	}{
		{"replicated", func(t *testing.T, f *Node) {
			caughtUp(t, f, want)
			for _, id := range ids {
				if j := f.Store().Snapshot().Job(id); j == nil || j.State != api.JobPending {
					t.Fatalf("job %d on %s: %+v", id, f.id, j)
				}
			}
			if u := f.Store().Snapshot().User("alice"); u == nil || u.TokenHash != "hash1" {
				t.Fatalf("token hash lost in the log: %+v", u)
			}
			if !bytes.Equal(dump(t, f.Store()), dump(t, leader.Store())) {
				t.Fatal("follower state differs from leader's")
			}
		}},
		{"apply on follower", func(t *testing.T, f *Node) {
			_, err := f.Apply(context.Background(), &Command{Type: CmdCancelJobs, JobIDs: ids})
			var nle *NotLeaderError
			if !errors.Is(err, ErrNotLeader) || !errors.As(err, &nle) || nle.LeaderID != lid || nle.LeaderAddr != laddr {
				t.Fatalf("got %v", err)
			}
		}},
		{"read barrier on follower", func(t *testing.T, f *Node) {
			if err := f.ReadBarrier(context.Background()); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("got %v", err)
			}
		}},
		{"leader-only admin on follower", func(t *testing.T, f *Node) {
			if err := f.AddVoter(context.Background(), "x", "127.0.0.1:1"); !errors.Is(err, ErrNotLeader) {
				t.Fatalf("got %v", err)
			}
		}},
		{"stats", func(t *testing.T, f *Node) {
			st := f.Stats()
			if st.State != "Follower" || st.LeaderID != lid || len(st.Servers) != 3 || st.Term == 0 || st.AppliedIndex == 0 {
				t.Fatalf("stats %+v", st)
			}
			for _, s := range st.Servers {
				if !s.Voter {
					t.Fatalf("non-voter %+v", s)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, f := range c.followers(leader) {
				tc.run(t, f)
			}
		})
	}

	t.Run("state machine errors", func(t *testing.T) {
		_, err := leader.Apply(context.Background(), &Command{Type: CmdSubmitJob, Submit: &SubmitJob{Spec: api.JobSpec{Partition: "nope"}}})
		if !errors.Is(err, ErrUnknownPartition) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("linearizable read", func(t *testing.T) {
		res, err := leader.Apply(context.Background(), &Command{Type: CmdCancelJobs, JobIDs: ids[:1]})
		if err != nil || len(res.([]uint64)) != 1 {
			t.Fatalf("cancel: %v %v", res, err)
		}
		if err := leader.ReadBarrier(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := leader.Store().Snapshot().Job(ids[0]).State; st != api.JobCancelled {
			t.Fatalf("state %s after barrier", st)
		}
	})
}

func TestLeaderFailover(t *testing.T) {
	c := newCluster(t, 3)
	old := c.leader(5 * time.Second)
	ids := seed(t, old, 50)

	subs := map[*Node]<-chan bool{}
	for _, f := range c.followers(old) {
		subs[f] = f.LeadershipChanges()
	}
	for i, n := range c.nodes {
		if n == old {
			killed := time.Now()
			c.stop(i)
			nl := c.leader(3 * time.Second)
			elapsed := time.Since(killed)
			t.Logf("new leader %s serving %v after the old one stopped", nl.id, elapsed)
			if elapsed > 3*time.Second {
				t.Fatalf("failover took %v", elapsed)
			}
			snap := nl.Store().Snapshot()
			for _, id := range ids {
				if snap.Job(id) == nil {
					t.Fatalf("acknowledged job %d lost", id)
				}
			}
			select {
			case v := <-subs[nl]:
				if !v {
					t.Fatalf("leadership notification %v", v)
				}
			case <-time.After(time.Second):
				t.Fatal("no leadership notification")
			}
			more := submitN(t, nl, 1)
			if more[0] != ids[len(ids)-1]+1 {
				t.Fatalf("job ids continue at %d after %d", more[0], ids[len(ids)-1])
			}
			return
		}
	}
	t.Fatal("leader not among the members")
}

func TestSnapshotRestore(t *testing.T) {
	tests := []struct {
		name string
		size int
		// member restarts the member to snapshot and restart.
		member func(c *testCluster) int
	}{
		{"follower catches up from snapshot and log", 3, func(c *testCluster) int {
			l := c.leader(5 * time.Second)
			for i, n := range c.nodes {
				if n != l {
					return i
				}
			}
			return -1
		}},
		{"single member replays its own log", 1, func(c *testCluster) int { return 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, tc.size)
			l := c.leader(5 * time.Second)
			seed(t, l, 100)
			i := tc.member(c)
			n := c.nodes[i]
			caughtUp(t, n, l.Store().Index())
			if err := n.TakeSnapshot(); err != nil {
				t.Fatal(err)
			}
			if metas, err := n.snaps.List(); err != nil || len(metas) == 0 {
				t.Fatalf("no snapshot: %v", err)
			}
			submitN(t, l, 10) // in the log after the snapshot
			caughtUp(t, n, l.Store().Index())
			before := dump(t, n.Store())
			c.stop(i)
			if tc.size > 1 {
				submitN(t, c.leader(5*time.Second), 10) // missed while down
			}

			n = c.start(i)
			l = c.leader(5 * time.Second)
			if tc.size == 1 && !bytes.Equal(dump(t, n.Store()), before) {
				t.Fatal("restarted member's state differs from before the restart")
			}
			caughtUp(t, n, l.Store().Index())
			if !bytes.Equal(dump(t, n.Store()), dump(t, l.Store())) {
				t.Fatal("restarted member's state differs from the leader's")
			}
			if u := n.Store().Snapshot().User("alice"); u == nil || u.TokenHash != "hash1" {
				t.Fatalf("token hash lost in the snapshot: %+v", u)
			}
		})
	}
}

func TestAddVoterCatchesUp(t *testing.T) {
	c := newCluster(t, 3)
	l := c.leader(5 * time.Second)
	seed(t, l, 200)
	if err := l.TakeSnapshot(); err != nil { // the newcomer installs it
		t.Fatal(err)
	}
	submitN(t, l, 20)

	i := c.add(false)
	c.join(i)
	n := c.nodes[i]
	submitN(t, l, 5)
	caughtUp(t, n, l.Store().Index())
	if !bytes.Equal(dump(t, n.Store()), dump(t, l.Store())) {
		t.Fatal("new member's state differs from the leader's")
	}
	if got := len(l.Stats().Servers); got != 4 {
		t.Fatalf("%d servers", got)
	}
	if err := l.RemoveServer(context.Background(), n.id); err != nil {
		t.Fatal(err)
	}
	if got := len(l.Stats().Servers); got != 3 {
		t.Fatalf("%d servers after remove", got)
	}
}

func TestMutualTLS(t *testing.T) {
	c := newCluster(t, 1)
	addr := c.cfgs[0].RaftBind
	other := newPKI(t)
	agent := c.pki.issue(t, "node1", "agent")
	stranger := other.issue(t, "c9", "controller")

	peer := c.pki.issue(t, "c8", "controller")
	tests := []struct {
		name   string
		client *tls.Config
		accept bool
	}{
		{"controller certificate", &tls.Config{RootCAs: c.pki.pool, Certificates: []tls.Certificate{peer}}, true},
		{"no client certificate", &tls.Config{RootCAs: c.pki.pool}, false},
		{"agent certificate", &tls.Config{RootCAs: c.pki.pool, Certificates: []tls.Certificate{agent}}, false},
		{"certificate from another CA", &tls.Config{RootCAs: c.pki.pool, Certificates: []tls.Certificate{stranger}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr, tc.client)
			if err == nil {
				// TLS 1.3 reports the server's verdict on the first read;
				// an accepted peer just waits for an RPC.
				conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
				_, err = conn.Read(make([]byte, 1))
				conn.Close()
			}
			var ne net.Error
			accepted := errors.As(err, &ne) && ne.Timeout()
			if accepted != tc.accept {
				t.Fatalf("accepted %v: %v", accepted, err)
			}
		})
	}

	t.Run("server refuses to dial an agent", func(t *testing.T) {
		srv, _ := c.pki.configs(t, "node2", "agent")
		ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if conn, err := ln.Accept(); err == nil {
				conn.Read(make([]byte, 1))
				conn.Close()
			}
		}()
		if _, err := c.nodes[0].stream.Dial(raft.ServerAddress(ln.Addr().String()), time.Second); err == nil {
			t.Fatal("dialed a peer presenting an agent certificate")
		}
	})

	srv, cli := c.pki.configs(t, "cx", "controller")
	bad := []struct {
		name string
		mod  func(cfg *Config)
	}{
		{"no client CAs", func(cfg *Config) { cfg.ServerTLS = &tls.Config{Certificates: srv.Certificates} }},
		{"no root CAs", func(cfg *Config) { cfg.ClientTLS = &tls.Config{Certificates: cli.Certificates} }},
		{"no client certificate", func(cfg *Config) { cfg.ClientTLS = &tls.Config{RootCAs: cli.RootCAs} }},
		{"no TLS", func(cfg *Config) { cfg.ServerTLS, cfg.ClientTLS = nil, nil }},
		{"per-client server config", func(cfg *Config) {
			cfg.ServerTLS = srv.Clone()
			cfg.ServerTLS.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return nil, nil }
		}},
		{"unspecified advertise", func(cfg *Config) { cfg.RaftBind = "0.0.0.0:0" }},
	}
	for _, tc := range bad {
		t.Run("open rejects "+tc.name, func(t *testing.T) {
			cfg := Config{ID: "cx", DataDir: t.TempDir(), RaftBind: "127.0.0.1:0", ServerTLS: srv, ClientTLS: cli, Logger: testLogger()}
			tc.mod(&cfg)
			if n, err := Open(cfg); err == nil {
				n.Shutdown()
				t.Fatal("opened")
			}
		})
	}
}

// BenchmarkApplySubmit3Nodes measures committed submissions per second with
// 256 concurrent proposers against a 3-member cluster over TLS. A proposer
// that loses the leader finds the new one and retries; the count is
// reported, since a starved host can trigger elections.
func BenchmarkApplySubmit3Nodes(b *testing.B) {
	c := newCluster(b, 3)
	seed(b, c.leader(5*time.Second), 0)
	var leader atomic.Pointer[Node]
	leader.Store(c.leader(5 * time.Second))
	var retries atomic.Int64
	spec := api.JobSpec{Name: "bench", Script: "#!/bin/sh\ntrue\n", WorkDir: "/home/alice", Nodes: 1, Tasks: 1, CPUsPerTask: 1}
	b.SetParallelism(max(1, 256/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			for {
				l := leader.Load()
				_, err := l.Apply(context.Background(), &Command{Type: CmdSubmitJob, Submit: &SubmitJob{Spec: spec, User: "alice"}})
				if err == nil {
					break
				}
				if !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrLeadershipLost) {
					b.Error(err)
					return
				}
				retries.Add(1)
				time.Sleep(20 * time.Millisecond)
				for _, n := range c.nodes {
					if n.IsLeader() {
						leader.CompareAndSwap(l, n)
					}
				}
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
	b.ReportMetric(float64(retries.Load()), "retries")
}

func TestLeadershipSubscribe(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	shared := n.LeadershipChanges()
	if n.LeadershipChanges() != shared {
		t.Fatal("LeadershipChanges is not one shared channel")
	}
	sub, cancel := n.Subscribe()
	for name, ch := range map[string]<-chan bool{"shared": shared, "subscriber": sub} {
		select {
		case v := <-ch:
			if !v {
				t.Fatalf("%s: got %v", name, v)
			}
		case <-time.After(time.Second):
			t.Fatalf("%s: established leadership not reported on subscribe", name)
		}
	}
	cancel()
	if _, ok := <-sub; ok {
		t.Fatal("cancelled subscription still open")
	}
	c.stop(0)
	for v := range shared { // drains a possible false, then ends
		if v {
			t.Fatal("true after shutdown")
		}
	}
}
