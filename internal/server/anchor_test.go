package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/accounting/chain"
	"github.com/stockade-hpc/stockade/accounting/chain/chaintest"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/raftstore"
	"github.com/stockade-hpc/stockade/scheduler"
)

// ledger is a state store without Raft: jobs run to an end (one record
// each) and epochs are sealed by applying commands directly.
type ledger struct {
	t   *testing.T
	mu  sync.Mutex
	s   *raftstore.Store
	idx uint64
	now time.Time
}

func newLedger(t *testing.T) *ledger {
	l := &ledger{t: t, s: raftstore.NewStore(), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l.must(&raftstore.Command{Type: raftstore.CmdSetPartitions,
		Partitions:      []api.Partition{{Name: "batch", Nodes: []string{"n1"}, Default: true, Up: true}},
		ConfiguredNodes: []api.Node{{Name: "n1"}}})
	l.must(&raftstore.Command{Type: raftstore.CmdRegisterNode, Register: &api.AgentRegisterRequest{Name: "n1", CPUs: 8, MemoryMB: 16000}})
	return l
}

// apply is what the loop proposes through: the leader's Apply.
func (l *ledger) apply(_ context.Context, cmd *raftstore.Command) (any, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.idx++
	l.now = l.now.Add(time.Second)
	if cmd.Time == 0 {
		cmd.Time = l.now.UnixNano()
	}
	res := l.s.ApplyCommand(l.idx, cmd)
	if err, ok := res.(error); ok {
		return nil, err
	}
	return res, nil
}

func (l *ledger) must(cmd *raftstore.Command) any {
	l.t.Helper()
	res, err := l.apply(context.Background(), cmd)
	if err != nil {
		l.t.Fatalf("command %d: %v", cmd.Type, err)
	}
	return res
}

// epoch runs n jobs to their end and seals their records as one epoch.
func (l *ledger) epoch(n int) *accounting.EpochInfo {
	l.t.Helper()
	for range n {
		id := l.must(&raftstore.Command{Type: raftstore.CmdSubmitJob, Submit: &raftstore.SubmitJob{
			Spec: api.JobSpec{Name: "j", Script: "#!/bin/sh\n", CPUsPerTask: 1, Nodes: 1, Tasks: 1}, User: "alice", UID: 1000, GID: 1000,
		}}).(*raftstore.SubmitResult).JobID
		l.must(&raftstore.Command{Type: raftstore.CmdApplyPlan, Plan: &scheduler.Plan{Placements: []scheduler.Placement{
			{JobID: id, Nodes: []string{"n1"}, CPUs: 1, MemoryMB: 100}}}})
		l.must(&raftstore.Command{Type: raftstore.CmdJobReport, Report: &api.JobReport{JobID: id, Node: "n1",
			State: api.JobCompleted, Usage: api.Usage{CPUTimeNs: 3600e9, WallTimeNs: 3600e9}}})
	}
	snap := l.s.Snapshot()
	number := uint64(1)
	if e := snap.LastEpoch(); e != nil {
		number = e.Epoch.Number + 1
	}
	var recs []accounting.UsageRecord
	for _, r := range snap.UnsealedRecords(0) {
		recs = append(recs, r.Record)
	}
	e, err := accounting.Seal(number, recs, l.now)
	if err != nil {
		l.t.Fatal(err)
	}
	return l.must(&raftstore.Command{Type: raftstore.CmdSealEpoch, Epoch: &e}).(*accounting.EpochInfo)
}

// fakeChain is the anchor contract in memory: each epoch once, in
// increasing order, as the real one.
type fakeChain struct {
	mu      sync.Mutex
	down    bool
	anchors map[uint64][32]byte
	txs     map[uint64]common.Hash
	sent    []uint64 // epochs of the transactions sent, in order
	last    uint64
	block   uint64
	reads   int
}

func newFakeChain() *fakeChain {
	return &fakeChain{anchors: map[uint64][32]byte{}, txs: map[uint64]common.Hash{}}
}

var errChainDown = errors.New("dial tcp 127.0.0.1:8545: connect: connection refused")

func (f *fakeChain) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// put anchors an epoch as another writer would (no transaction of ours).
func (f *fakeChain) put(epoch uint64, c [32]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.block++
	f.anchors[epoch], f.txs[epoch], f.last = c, common.BytesToHash([]byte(fmt.Sprintf("put-%d", epoch))), max(f.last, epoch)
}

func (f *fakeChain) RootOf(_ context.Context, epoch uint64) ([32]byte, chain.AnchorReceipt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.down {
		return [32]byte{}, chain.AnchorReceipt{}, errChainDown
	}
	c, ok := f.anchors[epoch]
	if !ok {
		return [32]byte{}, chain.AnchorReceipt{}, fmt.Errorf("%w: epoch %d", chain.ErrNotAnchored, epoch)
	}
	return c, chain.AnchorReceipt{TxHash: f.txs[epoch], BlockNumber: epoch}, nil
}

func (f *fakeChain) Anchor(_ context.Context, epoch uint64, root [32]byte) (chain.AnchorReceipt, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return chain.AnchorReceipt{}, errChainDown
	}
	if c, ok := f.anchors[epoch]; ok {
		if c != root {
			return chain.AnchorReceipt{}, chain.ErrRootMismatch
		}
		return chain.AnchorReceipt{TxHash: f.txs[epoch], BlockNumber: epoch}, nil
	}
	if epoch <= f.last {
		return chain.AnchorReceipt{}, chain.ErrStaleEpoch
	}
	f.sent = append(f.sent, epoch)
	f.block++
	f.anchors[epoch], f.txs[epoch], f.last = root, common.BytesToHash([]byte(fmt.Sprintf("tx-%d", epoch))), epoch
	return chain.AnchorReceipt{TxHash: f.txs[epoch], BlockNumber: f.block, GasUsed: 35000}, nil
}

var (
	fakeContract = common.HexToAddress("0x00000000000000000000000000000000000000aa")
	fakeAccount  = common.HexToAddress("0x00000000000000000000000000000000000000bb")
)

func (f *fakeChain) ChainID() uint64          { return 1337 }
func (f *fakeChain) Contract() common.Address { return fakeContract }
func (f *fakeChain) Account() common.Address  { return fakeAccount }
func (f *fakeChain) Close()                   {}

func (f *fakeChain) sentEpochs() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sent)
}

func testAnchorLoop(l *ledger, f *fakeChain) *anchorLoop {
	return &anchorLoop{
		log: testLogger(), store: l.s, apply: l.apply, state: newAnchorState(),
		chain:   func(context.Context, *raftstore.Snapshot) (anchorChain, error) { return f, nil },
		backoff: 10 * time.Millisecond, maxBackoff: 80 * time.Millisecond, idle: 20 * time.Millisecond,
	}
}

// start runs the loop until the test ends or stop is called.
func startLoop(t *testing.T, a *anchorLoop) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// checkAnchored checks the state records each epoch as anchored in the
// transaction that holds its commitment on the fake chain.
func checkAnchored(t *testing.T, l *ledger, f *fakeChain, last uint64) {
	t.Helper()
	snap := l.s.Snapshot()
	if snap.AnchoredEpoch() != last {
		t.Fatalf("anchored epoch %d, want %d", snap.AnchoredEpoch(), last)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for n := uint64(1); n <= last; n++ {
		e := snap.Epoch(n)
		if e.Anchor == nil || e.Anchor.TxHash != f.txs[n].Hex() || e.Anchor.ChainID != 1337 ||
			!strings.EqualFold(e.Anchor.Contract, "0x00000000000000000000000000000000000000aa") || f.anchors[n] != [32]byte(e.Commitment) {
			t.Errorf("epoch %d: anchor %+v, chain tx %s", n, e.Anchor, f.txs[n].Hex())
		}
	}
}

func TestAnchorLoopAnchorsInOrder(t *testing.T) {
	l, f := newLedger(t), newFakeChain()
	l.epoch(2)
	l.epoch(1)
	startLoop(t, testAnchorLoop(l, f))
	waitFor(t, 5*time.Second, "epochs 1-2 anchored", func() bool { return l.s.Snapshot().AnchoredEpoch() == 2 })
	// Epochs sealed later are anchored as they come.
	l.epoch(3)
	waitFor(t, 5*time.Second, "epoch 3 anchored", func() bool { return l.s.Snapshot().AnchoredEpoch() == 3 })
	checkAnchored(t, l, f, 3)
	if got := f.sentEpochs(); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("transactions for epochs %v, want one each for 1, 2, 3", got)
	}
}

// TestAnchorLoopExactlyOnce: an epoch the chain already holds with its
// commitment (a leader anchored it and lost office before recording it)
// is recorded without a second transaction.
func TestAnchorLoopExactlyOnce(t *testing.T) {
	l, f := newLedger(t), newFakeChain()
	e1 := l.epoch(2)
	l.epoch(1)
	f.put(1, e1.Commitment)
	startLoop(t, testAnchorLoop(l, f))
	waitFor(t, 5*time.Second, "epochs anchored", func() bool { return l.s.Snapshot().AnchoredEpoch() == 2 })
	checkAnchored(t, l, f, 2)
	if got := f.sentEpochs(); !slices.Equal(got, []uint64{2}) {
		t.Errorf("transactions for epochs %v, want only epoch 2's", got)
	}
}

// TestAnchorLoopLeaderDiesBeforeRecording: the first leader's transaction
// is mined, then it stops (the hold keeps it from recording); the next
// leader records that anchor and sends nothing for it.
func TestAnchorLoopLeaderDiesBeforeRecording(t *testing.T) {
	l, f := newLedger(t), newFakeChain()
	l.epoch(1)
	first := testAnchorLoop(l, f)
	first.hold = time.Hour
	stop := startLoop(t, first)
	waitFor(t, 5*time.Second, "epoch 1 on chain", func() bool { return len(f.sentEpochs()) == 1 })
	stop()
	if n := l.s.Snapshot().AnchoredEpoch(); n != 0 {
		t.Fatalf("the held leader recorded epoch %d", n)
	}
	l.epoch(1)
	startLoop(t, testAnchorLoop(l, f))
	waitFor(t, 5*time.Second, "epochs anchored", func() bool { return l.s.Snapshot().AnchoredEpoch() == 2 })
	checkAnchored(t, l, f, 2)
	if got := f.sentEpochs(); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("transactions for epochs %v, want one each for 1, 2", got)
	}
}

// TestAnchorLoopChainDown: epochs sealed while the chain is unreachable
// wait, the error shows in the status, and once it is back they are
// anchored in order.
func TestAnchorLoopChainDown(t *testing.T) {
	l, f := newLedger(t), newFakeChain()
	l.epoch(1)
	a := testAnchorLoop(l, f)
	startLoop(t, a)
	waitFor(t, 5*time.Second, "epoch 1 anchored", func() bool { return l.s.Snapshot().AnchoredEpoch() == 1 })
	f.setDown(true)
	for range 3 {
		l.epoch(1)
	}
	waitFor(t, 5*time.Second, "the error reported", func() bool { return strings.Contains(a.state.errText(), "connection refused") })
	var st api.Status
	acctStatus(l.s.Snapshot(), &st, time.Now())
	s := &Server{anchor: a.state}
	s.anchorStatus(&st)
	if st.AcctUnanchoredEpochs != 3 || !strings.Contains(st.AcctAnchorError, "reading epoch 2 back from the chain") {
		t.Errorf("status while the chain is down: %d unanchored, error %q", st.AcctUnanchoredEpochs, st.AcctAnchorError)
	}
	// Records keep flowing and sealing goes on meanwhile.
	l.epoch(2)
	time.Sleep(200 * time.Millisecond) // several retries
	if n := l.s.Snapshot().AnchoredEpoch(); n != 1 {
		t.Fatalf("anchored epoch %d while the chain is down", n)
	}
	f.setDown(false)
	waitFor(t, 5*time.Second, "the queue worked off", func() bool { return l.s.Snapshot().AnchoredEpoch() == 5 })
	checkAnchored(t, l, f, 5)
	if got := f.sentEpochs(); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Errorf("transactions for epochs %v, want 1..5 in order, once each", got)
	}
	waitFor(t, 5*time.Second, "the error cleared", func() bool { return a.state.errText() == "" })
}

// TestAnchorLoopConflict: the chain holds another commitment for an epoch:
// nothing more is sent, and the status says why.
func TestAnchorLoopConflict(t *testing.T) {
	l, f := newLedger(t), newFakeChain()
	l.epoch(1)
	l.epoch(1)
	f.put(1, [32]byte{0xbe, 0xef})
	a := testAnchorLoop(l, f)
	startLoop(t, a)
	waitFor(t, 5*time.Second, "the conflict reported", func() bool { return strings.Contains(a.state.errText(), "anchoring stopped") })
	time.Sleep(200 * time.Millisecond)
	if n := l.s.Snapshot().AnchoredEpoch(); n != 0 || len(f.sentEpochs()) != 0 {
		t.Errorf("after a conflict: anchored epoch %d, transactions %v", n, f.sentEpochs())
	}
	msg := a.state.errText()
	for _, want := range []string{"epoch 1", "0xbeef", "[chain] contract", "0x00000000000000000000000000000000000000AA"} {
		if !strings.Contains(msg, want) {
			t.Errorf("conflict error %q does not mention %q", msg, want)
		}
	}
	// A later epoch anchored by someone else: the contract refuses ours.
	l2, f2 := newLedger(t), newFakeChain()
	l2.epoch(1)
	f2.put(5, [32]byte{1})
	a2 := testAnchorLoop(l2, f2)
	startLoop(t, a2)
	waitFor(t, 5*time.Second, "the stale epoch reported", func() bool {
		return strings.Contains(a2.state.errText(), "anchoring stopped") && strings.Contains(a2.state.errText(), "later epochs")
	})
}

func TestAnchorTarget(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, fileAnchorKey)
	if _, err := chain.GenerateKeyFile(key); err != nil {
		t.Fatal(err)
	}
	l := newLedger(t)
	contract := "0x00000000000000000000000000000000000000Aa"
	target := func(cc ChainConfig, rec accounting.ChainInfo) (chainTarget, error) {
		t.Helper()
		if rec.RPCURL != "" {
			l.must(&raftstore.Command{Type: raftstore.CmdSetChain, Chain: &rec})
		}
		s := &Server{opts: Options{DataDir: dir}, cfg: &Config{Chain: cc}}
		return s.anchorTarget(l.s.Snapshot())
	}
	// External chain as configured.
	got, err := target(ChainConfig{RPCURL: "http://n:8545", ChainID: 5, Contract: contract}, accounting.ChainInfo{})
	if want := (chainTarget{"http://n:8545", 5, contract, key}); err != nil || got != want {
		t.Errorf("external = %+v, %v; want %+v", got, err, want)
	}
	// The dev chain: waiting until its host records it.
	if _, err := target(ChainConfig{Dev: true}, accounting.ChainInfo{}); !errors.Is(err, errDevChainWaiting) {
		t.Errorf("dev chain not recorded: %v", err)
	}
	got, err = target(ChainConfig{Dev: true}, accounting.ChainInfo{RPCURL: "http://127.0.0.1:9545", ChainID: 1337, Contract: contract})
	if want := (chainTarget{"http://127.0.0.1:9545", 1337, contract, key}); err != nil || got != want {
		t.Errorf("dev = %+v, %v; want %+v", got, err, want)
	}
	// External without a contract: the one recorded (deployed by an
	// earlier leader) on the same chain, else none (deploy).
	got, err = target(ChainConfig{RPCURL: "http://n:8545", KeyFile: "/k"}, accounting.ChainInfo{})
	if want := (chainTarget{"http://n:8545", 1337, contract, "/k"}); err != nil || got != want {
		t.Errorf("external, recorded contract = %+v, %v; want %+v", got, err, want)
	}
	got, err = target(ChainConfig{RPCURL: "http://n:8545", ChainID: 1}, accounting.ChainInfo{})
	if want := (chainTarget{"http://n:8545", 1, "", key}); err != nil || got != want {
		t.Errorf("external, another chain = %+v, %v; want %+v", got, err, want)
	}
	if _, err := target(ChainConfig{}, accounting.ChainInfo{}); !errors.Is(err, errAnchoringOff) {
		t.Errorf("no chain: %v", err)
	}
	// This controller's dev chain does not start: the error says why.
	s := &Server{opts: Options{DataDir: dir}, cfg: &Config{Chain: ChainConfig{Dev: true}}, anchor: newAnchorState()}
	s.anchor.setDevErr(chain.ErrGethNotFound.Error())
	l2 := newLedger(t)
	if _, err := s.anchorTarget(l2.s.Snapshot()); err == nil || !strings.Contains(err.Error(), "geth not found") {
		t.Errorf("dev chain failing here: %v", err)
	}
	os.Remove(key)
	if _, err := target(ChainConfig{Dev: true}, accounting.ChainInfo{}); err == nil || !strings.Contains(err.Error(), "no anchoring key") {
		t.Errorf("without the key: %v", err)
	}
}

// TestAnchorDevChainNoGeth: a controller that should run the dev chain
// but finds no geth keeps running, and its anchoring error says what to do.
func TestAnchorDevChainNoGeth(t *testing.T) {
	t.Setenv(chain.EnvGeth, "")
	t.Setenv("PATH", t.TempDir())
	c := bootstrapWith(t, func(o *Options) {
		o.Config.Chain = ChainConfig{Dev: true, DevHTTP: "127.0.0.1:0"}
		o.DevChain = DevChainOn
	})
	s := c.ctls[0].Server
	waitFor(t, 10*time.Second, "the dev chain's error", func() bool {
		return strings.Contains(s.anchor.devErrText(), "geth not found: run `make geth`")
	})
	if _, err := s.anchorTarget(s.store().Snapshot()); err == nil || !strings.Contains(err.Error(), "geth not found") {
		t.Errorf("anchoring error: %v", err)
	}
	t.Log(s.anchor.devErrText())
}

func TestAnchorHold(t *testing.T) {
	t.Setenv(envAnchorHold, "c2=1s, c1=250ms")
	if anchorHold("c1") != 250*time.Millisecond || anchorHold("c2") != time.Second || anchorHold("c3") != 0 {
		t.Errorf("holds %v %v %v", anchorHold("c1"), anchorHold("c2"), anchorHold("c3"))
	}
}

// TestAnchorDevChain: controllers in this process, the joining one
// running the dev chain (--dev-chain=on; off on the first), so that it
// records the chain through the leader. It got the cluster's anchoring
// key; jobs' records are sealed and anchored, and the chain holds each
// epoch's commitment in the transaction the state records.
func TestAnchorDevChain(t *testing.T) {
	geth := chaintest.Geth(t)
	configure := func(o *Options) {
		o.Config.Accounting = AcctConfig{Interval: time.Hour, MaxRecords: 2}
		o.Config.Chain = ChainConfig{Dev: true, DevHTTP: "127.0.0.1:0"}
	}
	c := bootstrapWith(t, func(o *Options) {
		configure(o)
		o.DevChain = DevChainOff
	})
	opts := newOptions(t, "c2")
	configure(&opts)
	opts.DevChain = DevChainOn
	opts.Geth = geth
	opts.Join = []string{c.ctls[0].APIAddr()}
	opts.JoinToken = c.token(fileCtlToken)
	c2 := startCtl(t, opts)
	c.ctls = append(c.ctls, c2)
	c.waitServing(c2)
	if exists(filepath.Join(c.dir0, dirDevChain)) {
		t.Error("c1 (--dev-chain=off) made a dev chain")
	}
	k1, err1 := os.ReadFile(filepath.Join(c.dir0, fileAnchorKey))
	k2, err2 := os.ReadFile(filepath.Join(c2.opts.DataDir, fileAnchorKey))
	if err1 != nil || err2 != nil || len(k1) == 0 || string(k1) != string(k2) {
		t.Fatalf("anchoring keys: c1 %v, c2 %v (equal: %v)", err1, err2, string(k1) == string(k2))
	}
	if fi, err := os.Stat(filepath.Join(c2.opts.DataDir, fileAnchorKey)); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Fatalf("c2's anchoring key has mode %v", fi.Mode())
	}
	ctx := context.Background()
	admin := c.client(c.admin)
	var ci accounting.ChainInfo
	waitFor(t, 30*time.Second, "the dev chain recorded", func() bool {
		er, err := accounting.Epochs(ctx, admin, 0, 1)
		if err == nil {
			ci = er.Chain
		}
		return err == nil && ci.Contract != "" && ci.ChainID == chain.DevChainID
	})

	alice := c.client(c.addUser("alice", 1601))
	n1 := c.agent("node1")
	register(t, n1, "node1")
	for i := range 4 {
		sp := spec(fmt.Sprint("a", i))
		sp.NodeList = []string{"node1"}
		id := submit(t, alice, sp).JobID
		var j api.Job
		waitFor(t, 20*time.Second, "job running", func() bool {
			n1.AgentHeartbeat(ctx, api.AgentHeartbeat{Name: "node1"})
			return admin.Do(ctx, "GET", fmt.Sprintf("/v1/jobs/%d", id), nil, &j) == nil && j.State == api.JobRunning
		})
		if err := n1.AgentReport(ctx, api.JobReport{JobID: id, Node: "node1", State: api.JobCompleted, EndUnix: time.Now().Unix(),
			Attempt: j.Restarts, Usage: api.Usage{CPUTimeNs: 60e9}}); err != nil {
			t.Fatal(err)
		}
	}
	var st api.Status
	waitFor(t, 30*time.Second, "epochs 1-2 anchored", func() bool {
		return admin.Do(ctx, "GET", "/v1/status", nil, &st) == nil && st.AcctLastAnchoredEpoch == 2
	})
	if st.AcctUnanchoredEpochs != 0 || st.AcctAnchorError != "" {
		t.Errorf("status %+v", st)
	}
	a, err := chain.Dial(ctx, chain.Config{RPCURL: ci.RPCURL, ChainID: ci.ChainID, Contract: ci.Contract})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	er, err := accounting.Epochs(ctx, admin, 1, 10)
	if err != nil || len(er.Epochs) != 2 {
		t.Fatalf("epochs %+v %v", er, err)
	}
	for _, e := range er.Epochs {
		have, rc, err := a.RootOf(ctx, e.Epoch.Number)
		if err != nil || have != [32]byte(e.Commitment) || e.Anchor == nil || rc.TxHash.Hex() != e.Anchor.TxHash || rc.BlockNumber != e.Anchor.BlockNumber {
			t.Errorf("epoch %d: chain %x %+v %v; state %+v", e.Epoch.Number, have, rc, err, e.Anchor)
		}
	}
	// A proof verifies against the chain.
	p, err := accounting.GetProofBySeq(ctx, alice, 1)
	if err != nil {
		t.Fatal(err)
	}
	have, _, err := a.RootOf(ctx, p.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	if err := accounting.VerifyProof(*p, have); err != nil {
		t.Errorf("proof: %v", err)
	}
}

func TestDevChainOption(t *testing.T) {
	for _, m := range []DevChainMode{"", DevChainAuto, DevChainOn, DevChainOff} {
		o := Options{DataDir: t.TempDir(), ID: "c1", DevChain: m}
		if err := o.setDefaults(); err != nil {
			t.Errorf("--dev-chain=%q: %v", m, err)
		}
	}
	o := Options{DataDir: t.TempDir(), ID: "c1", DevChain: "yes"}
	if err := o.setDefaults(); err == nil || !strings.HasPrefix(err.Error(), "--dev-chain:") {
		t.Errorf("--dev-chain=yes: %v", err)
	}
	// Who runs the dev chain: only where the [chain] section uses it.
	dir := t.TempDir()
	for _, tc := range []struct {
		mode         DevChainMode
		dev, bootstr bool
		want         bool
	}{
		{DevChainAuto, true, true, true},
		{DevChainAuto, true, false, false},
		{DevChainOn, true, false, true},
		{DevChainOff, true, true, false},
		{"", true, true, false},
		{DevChainOn, false, true, false},
	} {
		s := &Server{opts: Options{DataDir: dir, DevChain: tc.mode, Bootstrap: tc.bootstr}, cfg: &Config{Chain: ChainConfig{Dev: tc.dev}}}
		if got := s.servesDevChain(); got != tc.want {
			t.Errorf("mode %q, dev %v, bootstrap %v: serves %v", tc.mode, tc.dev, tc.bootstr, got)
		}
	}
}
