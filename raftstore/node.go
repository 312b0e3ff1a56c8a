package raftstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// Timing defaults: a follower notices a dead leader after 0.5–1 s without
// heartbeats and a split vote costs another 0.5–1 s, so a new leader serves
// within ~2 s of a kill -9 (the target is 3 s). The lease is at the top of
// its range because a CPU-starved leader (measured: 300–600 ms stalls on a
// loaded 2-CPU host) would otherwise step down needlessly.
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 500 * time.Millisecond
	DefaultSnapshotThreshold  = 16384
	DefaultSnapshotInterval   = 2 * time.Minute
	DefaultTrailingLogs       = 10240
	snapshotsRetained         = 2
	logCacheSize              = 512 // recent entries kept in memory for replication
	transportTimeout          = 10 * time.Second
	transportMaxPool          = 3
)

// Config configures a Node.
type Config struct {
	ID            string // raft server id (controller name)
	DataDir       string
	RaftBind      string // host:port to listen on for Raft
	RaftAdvertise string // defaults to the bound address of RaftBind
	// ServerTLS serves the Raft listener; client certificates are always
	// required and verified against ServerTLS.ClientCAs (mutual TLS).
	ServerTLS *tls.Config
	// ClientTLS dials peers: presents our certificate and verifies theirs
	// against RootCAs (the cluster CA).
	ClientTLS *tls.Config
	// VerifyPeer checks the peer's leaf certificate on both sides after
	// chain verification. Nil means RejectAgentCerts; the controller
	// should require its own controller identity here.
	VerifyPeer func(cert *x509.Certificate) error
	Bootstrap  bool // form a new one-member cluster if no state exists
	Logger     *slog.Logger

	// Zero values take the defaults above.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	SnapshotThreshold  uint64        // log entries between snapshots
	SnapshotInterval   time.Duration // how often to check the threshold
	TrailingLogs       uint64        // entries kept after a snapshot for slow followers
}

// ErrNotLeader is wrapped by errors from leader-only operations on a
// non-leader; errors.As with *NotLeaderError gives the known leader.
var ErrNotLeader = errors.New("not the leader")

// ErrLeadershipLost means leadership was lost before the command's outcome
// was known: it may or may not be committed (retry with a SubmitID).
var ErrLeadershipLost = raft.ErrLeadershipLost

// ErrShutdown is returned after Shutdown.
var ErrShutdown = raft.ErrRaftShutdown

// NotLeaderError names the leader as this member knows it (empty when
// unknown, e.g. during an election).
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "not the leader (no leader known)"
	}
	return fmt.Sprintf("not the leader (leader is %s at %s)", e.LeaderID, e.LeaderAddr)
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// Node is one controller's Raft member with its replicated Store.
type Node struct {
	id     string
	log    *slog.Logger
	raft   *raft.Raft
	wal    *wal.WAL
	snaps  *raft.FileSnapshotStore
	trans  *raft.NetworkTransport
	stream *tlsStream
	store  *Store
	notify chan bool

	lmu         sync.Mutex
	epoch       uint64        // bumped on every leadership change
	established bool          // leader and every earlier entry applied
	ready       chan struct{} // closed once established in this epoch
	subs        map[chan bool]struct{}
	shared      chan bool // LeadershipChanges' subscription
	closed      bool

	done     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// Open starts a member: it opens the log and snapshots under DataDir,
// restores the latest snapshot, listens for peers and joins the election.
func Open(cfg Config) (*Node, error) {
	if cfg.ID == "" || cfg.DataDir == "" || cfg.RaftBind == "" {
		return nil, errors.New("raftstore: ID, DataDir and RaftBind are required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("raft_id", cfg.ID)
	hlog := newHCLog(logger, "raft", hclog.Info)
	verify := cfg.VerifyPeer
	if verify == nil {
		verify = RejectAgentCerts
	}

	raftDir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, err
	}
	w, err := wal.Open(raftDir, wal.WithLogger(hlog.Named("wal")))
	if err != nil {
		return nil, fmt.Errorf("raftstore: open log: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotsRetained, hlog.Named("snapshots"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("raftstore: snapshot store: %w", err)
	}
	stream, err := newTLSStream(cfg.RaftBind, cfg.RaftAdvertise, cfg.ServerTLS, cfg.ClientTLS, verify)
	if err != nil {
		w.Close()
		return nil, err
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		Logger:  hlog.Named("transport"),
	})

	n := &Node{
		id:     cfg.ID,
		log:    logger,
		wal:    w,
		snaps:  snaps,
		trans:  trans,
		stream: stream,
		store:  NewStore(),
		notify: make(chan bool, 8),
		ready:  make(chan struct{}),
		subs:   map[chan bool]struct{}{},
		done:   make(chan struct{}),
	}
	rc := raftConfig(cfg, hlog, n.notify)
	fail := func(err error) (*Node, error) {
		trans.Close()
		w.Close()
		return nil, err
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return fail(fmt.Errorf("raftstore: %w", err))
	}
	if cfg.Bootstrap {
		has, err := raft.HasExistingState(w, w, snaps)
		if err != nil {
			return fail(fmt.Errorf("raftstore: %w", err))
		}
		if !has {
			conf := raft.Configuration{Servers: []raft.Server{{
				Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
			}}}
			if err := raft.BootstrapCluster(rc, w, w, snaps, trans, conf); err != nil {
				return fail(fmt.Errorf("raftstore: bootstrap: %w", err))
			}
		}
	}
	// Replication reads back entries the leader has just written; the cache
	// serves them from memory instead of the WAL.
	logs, err := raft.NewLogCache(logCacheSize, w)
	if err != nil {
		return fail(fmt.Errorf("raftstore: %w", err))
	}
	r, err := raft.NewRaft(rc, &fsm{s: n.store}, logs, w, snaps, trans)
	if err != nil {
		return fail(fmt.Errorf("raftstore: %w", err))
	}
	n.raft = r
	n.wg.Add(1)
	go n.watchLeadership()
	return n, nil
}

func raftConfig(cfg Config, hlog hclog.Logger, notify chan bool) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	rc.NotifyCh = notify
	// Group commit: concurrent Applies share one fsync and one AppendEntries.
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 1024
	rc.HeartbeatTimeout = or(cfg.HeartbeatTimeout, DefaultHeartbeatTimeout)
	rc.ElectionTimeout = or(cfg.ElectionTimeout, DefaultElectionTimeout)
	rc.LeaderLeaseTimeout = or(cfg.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	rc.SnapshotThreshold = or(cfg.SnapshotThreshold, DefaultSnapshotThreshold)
	rc.SnapshotInterval = or(cfg.SnapshotInterval, DefaultSnapshotInterval)
	rc.TrailingLogs = or(cfg.TrailingLogs, DefaultTrailingLogs)
	return rc
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// watchLeadership follows Raft's leadership notifications. A new leader is
// "established" once a barrier shows every earlier entry applied; only then
// do ReadBarrier and subscribers see it as leader.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	for {
		select {
		case <-n.done:
			return
		case leader := <-n.notify:
			n.lmu.Lock()
			n.epoch++
			if n.established {
				n.established = false
				n.emit(false)
			} else {
				// Wake ReadBarriers of the old epoch; they see the epoch
				// moved and start over.
				close(n.ready)
			}
			n.ready = make(chan struct{})
			ep := n.epoch
			n.lmu.Unlock()
			if leader {
				n.wg.Add(1)
				go n.establish(ep)
			}
		}
	}
}

func (n *Node) establish(ep uint64) {
	defer n.wg.Done()
	for {
		err := n.raft.Barrier(0).Error()
		n.lmu.Lock()
		if n.epoch != ep || n.closed {
			n.lmu.Unlock()
			return
		}
		if err == nil {
			n.established = true
			close(n.ready)
			n.emit(true)
			n.lmu.Unlock()
			n.log.Info("raft leadership established", "index", n.store.Index())
			return
		}
		n.lmu.Unlock()
		if errors.Is(err, raft.ErrRaftShutdown) || n.raft.State() != raft.Leader {
			return
		}
		n.log.Warn("raft leader barrier failed; retrying", "err", err)
		select {
		case <-n.done:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// emit sends the leadership state to every subscriber, dropping the oldest
// queued value if a subscriber is behind. Caller holds lmu.
func (n *Node) emit(v bool) {
	for ch := range n.subs {
		select {
		case ch <- v:
			continue
		default:
		}
		select {
		case <-ch:
		default:
		}
		select {
		case ch <- v:
		default:
		}
	}
}

// Subscribe returns a channel of leadership changes: true once this member
// leads and has applied every earlier entry (the state is complete), false
// when it stops leading. If it already leads, true is sent at once. A slow
// reader loses the oldest queued values, never the latest. The channel is
// closed by cancel or Shutdown.
func (n *Node) Subscribe() (<-chan bool, func()) {
	n.lmu.Lock()
	defer n.lmu.Unlock()
	return n.subscribeLocked()
}

func (n *Node) subscribeLocked() (chan bool, func()) {
	ch := make(chan bool, 8)
	if n.closed {
		close(ch)
		return ch, func() {}
	}
	n.subs[ch] = struct{}{}
	if n.established {
		ch <- true
	}
	return ch, func() {
		n.lmu.Lock()
		defer n.lmu.Unlock()
		if _, ok := n.subs[ch]; ok {
			delete(n.subs, ch)
			close(ch)
		}
	}
}

// LeadershipChanges is one shared Subscribe channel for the single consumer
// that runs leader-only work (the server); every call returns the same one.
func (n *Node) LeadershipChanges() <-chan bool {
	n.lmu.Lock()
	defer n.lmu.Unlock()
	if n.shared == nil {
		n.shared, _ = n.subscribeLocked()
	}
	return n.shared
}

// Store is the replicated state. Read it; change it only through Apply.
func (n *Node) Store() *Store { return n.store }

// IsLeader reports whether Raft considers this member the leader. It may be
// true briefly before the state is complete; see Subscribe and ReadBarrier.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's id and Raft address, empty when unknown.
func (n *Node) Leader() (id, raftAddr string) {
	addr, lid := n.raft.LeaderWithID()
	return string(lid), string(addr)
}

func (n *Node) notLeader() error {
	id, addr := n.Leader()
	if id == n.id {
		id, addr = "", ""
	}
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr}
}

// mapErr turns raft's errors into this package's.
func (n *Node) mapErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return n.notLeader()
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("raftstore: %w (outcome unknown)", ErrLeadershipLost)
	}
	return err
}

// wait waits for a raft future, or for ctx. A command still pending when
// ctx ends may commit later.
func wait(ctx context.Context, f raft.Future) error {
	if ctx.Done() == nil {
		return f.Error()
	}
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return fmt.Errorf("raftstore: %w (outcome unknown)", ctx.Err())
	}
}

// enqueueTimeout bounds how long raft may wait to accept an operation.
func enqueueTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return 0
}

// Apply replicates a command and returns its result (see the result types
// on each command). It sets cmd.Time to now if zero. On a non-leader it
// returns a *NotLeaderError (wrapping ErrNotLeader); a command the state
// machine rejected returns that error.
func (n *Node) Apply(ctx context.Context, cmd *Command) (any, error) {
	if n.raft.State() != raft.Leader {
		return nil, n.notLeader()
	}
	if cmd.Time == 0 {
		cmd.Time = time.Now().UnixNano()
	}
	data, err := encodeCommand(cmd)
	if err != nil {
		return nil, fmt.Errorf("raftstore: encode command: %w", err)
	}
	f := n.raft.Apply(data, enqueueTimeout(ctx))
	if err := wait(ctx, f); err != nil {
		return nil, n.mapErr(err)
	}
	resp := f.Response()
	if err, ok := resp.(error); ok {
		return nil, err
	}
	return resp, nil
}

// ReadBarrier makes the next read of Store linearizable (the ReadIndex
// technique): it takes the commit index, confirms leadership with a quorum,
// then waits until the state machine has applied that index.
func (n *Node) ReadBarrier(ctx context.Context) error {
	for {
		if n.raft.State() != raft.Leader {
			return n.notLeader()
		}
		n.lmu.Lock()
		ready, ep := n.ready, n.epoch
		n.lmu.Unlock()
		// Until a barrier of this term is applied, the commit index may
		// lag what an earlier leader acknowledged.
		select {
		case <-ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		ci := n.raft.CommitIndex()
		if err := wait(ctx, n.raft.VerifyLeader()); err != nil {
			return n.mapErr(err)
		}
		n.lmu.Lock()
		same := ep == n.epoch
		n.lmu.Unlock()
		if same {
			return n.waitApplied(ctx, ci)
		}
	}
}

// waitApplied waits until the state reflects every entry up to index.
// Raft's no-op and barrier entries never reach the state machine, so the
// wait is for the last entry at or below index that does.
func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	for {
		applied := n.store.Index()
		target := index
		for target > applied {
			var l raft.Log
			if err := n.wal.GetLog(target, &l); err != nil {
				// Compacted away: covered by the snapshot the state came from.
				if target <= n.lastSnapshotIndex() {
					target = applied
				}
				break
			}
			if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
				break
			}
			target--
		}
		if target <= applied {
			return nil
		}
		if _, err := n.store.WaitForIndex(ctx, target-1); err != nil {
			return err
		}
	}
}

func (n *Node) lastSnapshotIndex() uint64 {
	metas, err := n.snaps.List()
	if err != nil || len(metas) == 0 {
		return 0
	}
	return metas[0].Index
}

// AddVoter adds a member (or makes a non-voter vote). Leader only.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	f := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, enqueueTimeout(ctx))
	return n.mapErr(wait(ctx, f))
}

// RemoveServer removes a member. Leader only.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	f := n.raft.RemoveServer(raft.ServerID(id), 0, enqueueTimeout(ctx))
	return n.mapErr(wait(ctx, f))
}

// TransferLeadership hands leadership to another voter, for a graceful
// shutdown or upgrade of the leader. Leader only.
func (n *Node) TransferLeadership(ctx context.Context) error {
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	return n.mapErr(wait(ctx, n.raft.LeadershipTransfer()))
}

// TakeSnapshot snapshots the state now and compacts the log.
func (n *Node) TakeSnapshot() error { return n.raft.Snapshot().Error() }

// ServerInfo is one member of the Raft configuration.
type ServerInfo struct {
	ID    string
	Addr  string
	Voter bool
}

// Stats is this member's view of the cluster.
type Stats struct {
	ID           string
	State        string // Leader, Follower, Candidate, Shutdown
	Term         uint64
	LeaderID     string
	LeaderAddr   string
	AppliedIndex uint64 // the state store's index
	CommitIndex  uint64
	LastLogIndex uint64
	// LastContact is when a follower last heard from the leader (zero if
	// never); on the leader it is not meaningful.
	LastContact time.Time
	Servers     []ServerInfo
}

// Stats returns the member's Raft state.
func (n *Node) Stats() Stats {
	st := Stats{
		ID:           n.id,
		State:        n.raft.State().String(),
		AppliedIndex: n.store.Index(),
		CommitIndex:  n.raft.CommitIndex(),
		LastLogIndex: n.raft.LastIndex(),
		LastContact:  n.raft.LastContact(),
	}
	st.LeaderID, st.LeaderAddr = n.Leader()
	st.Term = n.raft.CurrentTerm()
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Servers = append(st.Servers, ServerInfo{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
		}
	}
	return st
}

// Shutdown stops the member without handing over leadership (see
// TransferLeadership) and closes its files and subscriptions.
func (n *Node) Shutdown() error {
	n.stopOnce.Do(func() {
		n.stopErr = n.raft.Shutdown().Error()
		n.lmu.Lock()
		n.closed = true
		n.lmu.Unlock()
		close(n.done)
		n.wg.Wait()
		n.lmu.Lock()
		for ch := range n.subs {
			close(ch)
		}
		n.subs = nil
		n.lmu.Unlock()
		if err := n.trans.Close(); err != nil && n.stopErr == nil {
			n.stopErr = err
		}
		if err := n.wal.Close(); err != nil && n.stopErr == nil {
			n.stopErr = err
		}
	})
	return n.stopErr
}
