package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/accounting/chain"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/raftstore"
)

// Anchoring: the leader publishes each sealed epoch's commitment on the
// chain of the [chain] section, in epoch order, and records where through
// Raft (CmdEpochAnchored). The chain is the source of truth for what was
// published: before sending, the leader reads the epoch back, so an epoch
// its predecessor anchored but did not live to record is recorded, not
// anchored twice. The contract accepts each epoch once and in increasing
// order, so even two leaders racing cannot anchor an epoch twice.
//
// Without rpc_url the chain is the dev chain, geth --dev: one for the
// cluster, run as a child process by one controller (Options.DevChain),
// funded in its genesis for the cluster's anchoring key. That controller
// records its endpoint and contract through Raft (CmdSetChain); whichever
// leads dials it.

// Anchoring timing.
const (
	anchorBackoff    = 500 * time.Millisecond // first retry after an error
	anchorMaxBackoff = 30 * time.Second
	anchorIdle       = 2 * time.Second // poll when nothing waits, besides waking on every apply
	anchorTimeout    = 2 * time.Minute // one epoch's transaction, sent and mined
	chainDialTimeout = 30 * time.Second
	devChainCheck    = 2 * time.Second // how often the dev chain's host checks its record
)

// envAnchorHold is a test hook: "c1=30s" makes controller c1 wait that long
// between an epoch's transaction being mined and recording it, so a test
// can kill the leader in between.
const envAnchorHold = "STOCKADE_TEST_ANCHOR_HOLD"

// errAnchorConflict marks what no retry fixes: the chain holds another
// commitment for an epoch, or a later epoch than this cluster's.
var errAnchorConflict = errors.New("anchoring stopped")

// anchorChain is what anchoring needs of a chain: *chain.Anchorer, or a
// fake in tests.
type anchorChain interface {
	RootOf(ctx context.Context, epoch uint64) ([32]byte, chain.AnchorReceipt, error)
	Anchor(ctx context.Context, epoch uint64, root [32]byte) (chain.AnchorReceipt, error)
	ChainID() uint64
	Contract() common.Address
	Account() common.Address
	Close()
}

// chainTarget is the chain to anchor on and the key to sign with.
type chainTarget struct {
	rpcURL   string
	chainID  uint64 // 0: the node's
	contract string // "": deploy one
	keyFile  string
}

// anchorState outlives leader terms: the connection (whose Anchorer waits
// for a transaction it sent rather than sending another) and the error
// GET /v1/status reports.
type anchorState struct {
	mu     sync.Mutex // connection; held while dialling
	conn   anchorChain
	target chainTarget

	errMu sync.Mutex
	err   string
	// devErr is why this controller's dev chain is not running, if it
	// should: anchoring errors name it.
	devErr string
}

func newAnchorState() *anchorState { return &anchorState{} }

func (a *anchorState) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		a.conn.Close()
		a.conn = nil
	}
}

func (a *anchorState) setErr(msg string) {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	a.err = msg
}

func (a *anchorState) errText() string {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	return a.err
}

func (a *anchorState) setDevErr(msg string) {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	a.devErr = msg
}

// devErrText is the dev chain's error ("" if none, or without a state).
func (a *anchorState) devErrText() string {
	if a == nil {
		return ""
	}
	a.errMu.Lock()
	defer a.errMu.Unlock()
	return a.devErr
}

// anchorStatus fills the anchoring error of GET /v1/status (served by the
// leader, which alone anchors).
func (s *Server) anchorStatus(st *api.Status) {
	if st.AcctUnanchoredEpochs > 0 {
		st.AcctAnchorError = s.anchor.errText()
	}
}

// ---- the leader's loop ----

// anchorLoop anchors a store's sealed epochs in order. Its parts are
// functions so that tests drive it without Raft or a chain.
type anchorLoop struct {
	log   *slog.Logger
	store *raftstore.Store
	apply func(context.Context, *raftstore.Command) (any, error)
	// chain is the chain to anchor on for a state: dialled (and its
	// contract deployed) on first use, then reused.
	chain func(context.Context, *raftstore.Snapshot) (anchorChain, error)
	state *anchorState
	// hold is envAnchorHold's wait.
	hold                time.Duration
	backoff, maxBackoff time.Duration
	idle                time.Duration
}

// acctAnchorLoop is the leader's anchoring loop.
func (s *Server) acctAnchorLoop(ctx context.Context) {
	l := &anchorLoop{
		log: s.log, store: s.store(), apply: s.node.Apply, chain: s.anchorChain, state: s.anchor,
		hold: anchorHold(s.id), backoff: anchorBackoff, maxBackoff: anchorMaxBackoff, idle: anchorIdle,
	}
	l.run(ctx)
}

// run anchors until ctx ends: after each pass that leaves nothing waiting
// it sleeps until the state changes; after an error it backs off, up to
// maxBackoff. Records and seals go on meanwhile, and the queue is worked
// off in order once the chain is back.
func (l *anchorLoop) run(ctx context.Context) {
	defer l.state.setErr("") // the next leader reports its own
	delay := l.backoff
	var lastErr string
	for ctx.Err() == nil {
		index, err := l.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if lastErr != "" {
				l.log.Info("anchoring resumed")
			}
			lastErr, delay = "", l.backoff
			l.state.setErr("")
			wctx, cancel := context.WithTimeout(ctx, l.idle)
			l.store.WaitForIndex(wctx, index)
			cancel()
			continue
		}
		msg := err.Error()
		l.state.setErr(msg)
		switch {
		case errors.Is(err, errAnchorConflict):
			// Loud every time: nothing is anchored until someone looks.
			l.log.Error("ANCHORING STOPPED", "err", err)
			delay = l.maxBackoff
		case msg != lastErr:
			l.log.Warn("anchoring accounting epochs; retrying", "err", err, "retry_in", delay)
		default:
			l.log.Debug("anchoring accounting epochs; retrying", "err", err, "retry_in", delay)
		}
		lastErr = msg
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, l.maxBackoff)
	}
}

// pass anchors every epoch waiting, oldest first, and returns the state
// index it started from.
func (l *anchorLoop) pass(ctx context.Context) (uint64, error) {
	snap := l.store.Snapshot()
	queue := snap.UnanchoredEpochs()
	if len(queue) == 0 {
		return snap.Index(), nil
	}
	ch, err := l.chain(ctx, snap)
	if err != nil {
		return 0, err
	}
	for _, e := range queue {
		if err := l.anchorEpoch(ctx, ch, e); err != nil {
			return 0, err
		}
	}
	return snap.Index(), nil
}

// anchorEpoch publishes one epoch's commitment unless the chain already
// holds it, then records where it is.
func (l *anchorLoop) anchorEpoch(ctx context.Context, ch anchorChain, e *accounting.EpochInfo) error {
	n, commitment := e.Epoch.Number, [32]byte(e.Commitment)
	if commitment != e.Epoch.Commitment() {
		return fmt.Errorf("%w: epoch %d: the stored commitment %s is not its header's %s", errAnchorConflict,
			n, e.Commitment, accounting.HashHex(e.Epoch.Commitment()))
	}
	have, rc, err := ch.RootOf(ctx, n)
	switch {
	case err == nil && have == commitment:
		// Anchored by a leader that lost office before recording it.
		l.log.Info("epoch already anchored on chain; recording it", "epoch", n, "tx", rc.TxHash.Hex(), "block", rc.BlockNumber)
	case err == nil:
		return conflict(ch, n, have, commitment)
	case errors.Is(err, chain.ErrNotAnchored):
		actx, cancel := context.WithTimeout(ctx, anchorTimeout)
		rc, err = ch.Anchor(actx, n, commitment)
		cancel()
		switch {
		case errors.Is(err, chain.ErrRootMismatch):
			// Another leader anchored something else since RootOf.
			have, _, rerr := ch.RootOf(ctx, n)
			if rerr != nil {
				return fmt.Errorf("%w: epoch %d: %v", errAnchorConflict, n, err)
			}
			return conflict(ch, n, have, commitment)
		case errors.Is(err, chain.ErrStaleEpoch):
			return fmt.Errorf("%w: epoch %d: contract %s on chain %d already holds later epochs (%v): it is not this cluster's alone; "+
				"give the cluster its own contract ([chain] contract)", errAnchorConflict, n, ch.Contract().Hex(), ch.ChainID(), err)
		case errors.Is(err, chain.ErrNotOwner):
			return fmt.Errorf("anchoring epoch %d: account %s does not own contract %s: [chain] key_file must be the owner's key: %w",
				n, ch.Account().Hex(), ch.Contract().Hex(), err)
		case errors.Is(err, chain.ErrInsufficientFunds):
			return fmt.Errorf("anchoring epoch %d: fund the anchoring account %s on chain %d: %w", n, ch.Account().Hex(), ch.ChainID(), err)
		case err != nil:
			return fmt.Errorf("anchoring epoch %d: %w", n, err)
		}
		l.log.Info("anchored accounting epoch", "epoch", n, "commitment", e.Commitment, "tx", rc.TxHash.Hex(),
			"block", rc.BlockNumber, "gas", rc.GasUsed)
		if l.hold > 0 {
			l.log.Warn("test hook: holding before recording the anchor", "epoch", n, "hold", l.hold, "env", envAnchorHold)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(l.hold):
			}
		}
	default:
		return fmt.Errorf("reading epoch %d back from the chain: %w", n, err)
	}
	_, err = l.apply(ctx, &raftstore.Command{Type: raftstore.CmdEpochAnchored, Time: time.Now().UnixNano(),
		Anchored: &raftstore.EpochAnchored{Number: n, Anchor: accounting.Anchor{ChainID: ch.ChainID(), Contract: ch.Contract().Hex(),
			TxHash: rc.TxHash.Hex(), BlockNumber: rc.BlockNumber}}})
	if err != nil {
		return fmt.Errorf("recording the anchor of epoch %d: %w", n, err)
	}
	return nil
}

func conflict(ch anchorChain, n uint64, have, want [32]byte) error {
	return fmt.Errorf("%w: contract %s on chain %d holds %s for epoch %d, but this cluster sealed it with commitment %s: "+
		"another cluster (or this one before its state was lost) anchors with this contract; find out which, "+
		"then give the cluster its own contract ([chain] contract)", errAnchorConflict, ch.Contract().Hex(), ch.ChainID(),
		accounting.HashHex(have), n, accounting.HashHex(want))
}

// anchorHold reads envAnchorHold for controller id.
func anchorHold(id string) time.Duration {
	for _, item := range strings.Split(os.Getenv(envAnchorHold), ",") {
		if name, v, ok := strings.Cut(strings.TrimSpace(item), "="); ok && name == id {
			if d, err := time.ParseDuration(v); err == nil {
				return d
			}
		}
	}
	return 0
}

// ---- which chain ----

var (
	errDevChainWaiting = errors.New("waiting for the dev chain to be recorded " +
		"(it runs on the controller that bootstrapped the cluster, or the one started with --dev-chain=on)")
	errAnchoringOff = errors.New("no chain to anchor on: [chain] has dev = false and no rpc_url")
)

// anchorTarget is the chain a state says to anchor on: the configured
// one (with the contract deployed for it earlier, when the file names
// none), or the dev chain its host recorded.
func (s *Server) anchorTarget(snap *raftstore.Snapshot) (chainTarget, error) {
	cc := s.cfg.Chain
	rec := snap.ChainConfig()
	t := chainTarget{keyFile: cmp.Or(cc.KeyFile, s.path(fileAnchorKey))}
	switch {
	case cc.RPCURL != "":
		t.rpcURL, t.chainID, t.contract = cc.RPCURL, cc.ChainID, cc.Contract
		if t.contract == "" && rec.Contract != "" && rec.ChainID != 0 && (cc.ChainID == 0 || cc.ChainID == rec.ChainID) {
			// Deployed by an earlier leader; the dial checks the node
			// is on the chain it was deployed on.
			t.chainID, t.contract = rec.ChainID, rec.Contract
		}
	case cc.Dev:
		if rec.RPCURL == "" || rec.Contract == "" {
			if e := s.anchor.devErrText(); e != "" {
				return t, fmt.Errorf("this controller's dev chain does not start: %s", e)
			}
			return t, errDevChainWaiting
		}
		t.rpcURL, t.chainID, t.contract = rec.RPCURL, rec.ChainID, rec.Contract
	default:
		return t, errAnchoringOff
	}
	if cc.KeyFile == "" && !exists(t.keyFile) {
		return t, fmt.Errorf("this controller has no anchoring key (%s): it joined the cluster before the cluster had one; "+
			"give [chain] key_file, or let a controller with the key lead", t.keyFile)
	}
	return t, nil
}

// anchorChain returns the connection for the state's target, dialling it
// (and deploying a contract where none is configured or recorded) when
// the target changed. A configured chain is recorded for clients.
func (s *Server) anchorChain(ctx context.Context, snap *raftstore.Snapshot) (anchorChain, error) {
	t, err := s.anchorTarget(snap)
	if err != nil {
		return nil, err
	}
	a := s.anchor
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil || a.target != t {
		if a.conn != nil {
			a.conn.Close()
			a.conn = nil
		}
		c, err := s.dialChain(ctx, t)
		if err != nil {
			if e := a.devErrText(); e != "" && s.cfg.Chain.RPCURL == "" {
				err = fmt.Errorf("%w (this controller's dev chain: %s)", err, e)
			}
			return nil, err
		}
		a.conn, a.target = c, t
	}
	if cc := s.cfg.Chain; cc.RPCURL != "" {
		info := accounting.ChainInfo{RPCURL: cc.RPCURL, ChainID: a.conn.ChainID(), Contract: a.conn.Contract().Hex()}
		if !sameChain(snap.ChainConfig(), info) {
			if _, err := s.node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdSetChain, Chain: &info}); err != nil {
				return nil, fmt.Errorf("recording the chain: %w", err)
			}
			s.log.Info("anchoring chain recorded", "rpc", info.RPCURL, "chain_id", info.ChainID, "contract", info.Contract)
		}
	}
	return a.conn, nil
}

func (s *Server) dialChain(ctx context.Context, t chainTarget) (anchorChain, error) {
	ctx, cancel := context.WithTimeout(ctx, chainDialTimeout)
	defer cancel()
	c, err := chain.Dial(ctx, chain.Config{RPCURL: t.rpcURL, ChainID: t.chainID, KeyFile: t.keyFile, Contract: t.contract})
	if err != nil {
		return nil, fmt.Errorf("connecting to the chain: %w", err)
	}
	if t.contract == "" {
		// Deploying twice (a leader dying before recording the first)
		// only wastes the first contract: it never holds an anchor.
		addr, err := c.Deploy(ctx)
		if err != nil {
			c.Close()
			if errors.Is(err, chain.ErrInsufficientFunds) {
				return nil, fmt.Errorf("deploying the anchor contract: fund the anchoring account %s on chain %d: %w", c.Account().Hex(), c.ChainID(), err)
			}
			return nil, fmt.Errorf("deploying the anchor contract: %w", err)
		}
		s.log.Info("deployed the anchor contract", "contract", addr.Hex(), "owner", c.Account().Hex(), "chain_id", c.ChainID())
	}
	s.log.Info("anchoring on chain", "rpc", t.rpcURL, "chain_id", c.ChainID(), "contract", c.Contract().Hex(), "account", c.Account().Hex())
	return c, nil
}

func sameChain(a, b accounting.ChainInfo) bool {
	return a.RPCURL == b.RPCURL && a.ChainID == b.ChainID && strings.EqualFold(a.Contract, b.Contract)
}

// ---- the dev chain ----

// servesDevChain reports whether this controller runs the cluster's dev
// chain: one does, so that there is one chain (see DevChainMode).
func (s *Server) servesDevChain() bool {
	if !s.cfg.Chain.Dev {
		return false
	}
	switch s.opts.DevChain {
	case DevChainOn:
		return true
	case DevChainAuto:
		return s.bootstrapMember()
	}
	return false
}

// runDevChain runs the dev chain (geth, a child process) until the
// controller stops, and keeps its endpoint recorded in the state. A start
// that fails (geth missing, its port taken) is retried, and so is geth
// exiting; anchoring waits meanwhile, its error saying why.
func (s *Server) runDevChain() {
	defer s.wg.Done()
	log := s.log.With("component", "dev chain")
	delay := time.Second
	var lastErr string
	for s.ctx.Err() == nil {
		d, info, err := s.startDevChain()
		if err == nil {
			s.anchor.setDevErr("")
			lastErr = ""
			started := time.Now()
			s.serveDevChain(log, d, info)
			if err := d.Close(); err != nil {
				log.Warn("stopping the dev chain", "err", err)
			}
			if s.ctx.Err() != nil {
				return
			}
			if err = d.Err(); err == nil {
				err = errors.New("geth exited")
			}
			log.Error("the dev chain stopped; restarting it", "err", err)
			lastErr = err.Error()
			if time.Since(started) > anchorMaxBackoff {
				delay = time.Second
				continue // at once: it ran well for a while
			}
		}
		if s.ctx.Err() != nil {
			return
		}
		s.anchor.setDevErr(err.Error())
		if msg := err.Error(); msg != lastErr {
			log.Error("starting the dev chain; anchoring waits for it", "err", err, "retry_in", delay)
			lastErr = msg
		} else {
			log.Debug("starting the dev chain; anchoring waits for it", "err", err, "retry_in", delay)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, anchorMaxBackoff)
	}
}

// serveDevChain keeps the running dev chain recorded until the
// controller stops or geth exits.
func (s *Server) serveDevChain(log *slog.Logger, d *chain.DevChain, info accounting.ChainInfo) {
	log.Info("dev chain running", "rpc", info.RPCURL, "chain_id", info.ChainID, "contract", info.Contract,
		"data_dir", s.path(dirDevChain), "geth_log", d.LogFile())
	t := time.NewTicker(devChainCheck)
	defer t.Stop()
	var lastErr string
	for {
		err := s.recordDevChain(info)
		switch {
		case err != nil && err.Error() != lastErr && s.ctx.Err() == nil && !errors.Is(err, errNoLeader):
			log.Warn("recording the dev chain's endpoint; retrying", "err", err)
		case err == nil && lastErr != "":
			log.Info("dev chain endpoint recorded")
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
		select {
		case <-s.ctx.Done():
			return
		case <-d.Done():
			return
		case <-t.C:
		}
	}
}

// startDevChain starts the dev chain on the data directory with the
// cluster's anchoring key as its funded account, deploys the anchor
// contract on its first start, and returns the endpoint to record.
func (s *Server) startDevChain() (*chain.DevChain, accounting.ChainInfo, error) {
	var info accounting.ChainInfo
	dir := s.path(dirDevChain)
	if err := chain.SeedDevKey(dir, s.path(fileAnchorKey)); err != nil {
		return nil, info, err
	}
	cc := s.cfg.Chain
	addr := cc.DevHTTP
	if addr == "" {
		host, _, err := net.SplitHostPort(s.opts.Listen)
		if err != nil || host == "" {
			host = "0.0.0.0"
		}
		addr = net.JoinHostPort(host, fmt.Sprint(DefaultDevChainPort))
	}
	d, err := chain.StartDevChain(s.ctx, chain.DevConfig{DataDir: dir, HTTPAddr: addr, Period: cc.DevPeriod, Geth: s.opts.Geth})
	if err != nil {
		return nil, info, err
	}
	contract, err := d.EnsureContract(s.ctx)
	if err != nil {
		d.Close()
		return nil, info, err
	}
	rpc, err := s.devChainURL(d.URL())
	if err != nil {
		d.Close()
		return nil, info, err
	}
	return d, accounting.ChainInfo{RPCURL: rpc, ChainID: d.ChainID(), Contract: contract.Hex()}, nil
}

// devChainURL is the URL others dial: the bound one, with an unspecified
// host replaced by the API's advertised host, and a name by its address,
// since the dev chain answers only requests to an IP address or localhost.
func (s *Server) devChainURL(bound string) (string, error) {
	u, err := url.Parse(bound)
	if err != nil {
		return "", fmt.Errorf("dev chain URL %q: %w", bound, err)
	}
	host, port := u.Hostname(), u.Port()
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host, _, _ = net.SplitHostPort(s.apiAddr)
	}
	if net.ParseIP(host) == nil && host != "localhost" {
		ips, err := net.DefaultResolver.LookupIP(s.ctx, "ip", host)
		if err != nil || len(ips) == 0 {
			return "", fmt.Errorf("dev chain host %q: give [chain] dev_http as an IP address: %v", host, err)
		}
		host = ips[0].String()
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// recordDevChain makes the state's chain the dev chain: directly on the
// leader, else through it.
func (s *Server) recordDevChain(info accounting.ChainInfo) error {
	if rec := s.store().Snapshot().ChainConfig(); sameChain(rec, info) {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	if s.node.IsLeader() {
		if _, err := s.node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdSetChain, Chain: &info}); err != nil {
			return err
		}
		s.log.Info("anchoring chain recorded (the dev chain)", "rpc", info.RPCURL, "contract", info.Contract)
		return nil
	}
	_, addr, err := s.leaderAPI()
	if err != nil {
		return err
	}
	body, err := json.Marshal(info)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/v1/cluster/chain", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: s.peerTransport}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return errors.New(resp.Status)
	}
	return nil
}

// handleSetChain records the dev chain's endpoint for the controller
// running it (POST /v1/cluster/chain, controllers only).
func (s *Server) handleSetChain(w http.ResponseWriter, r *http.Request, c *caller) error {
	var info accounting.ChainInfo
	if err := decodeJSON(w, r, &info); err != nil {
		return err
	}
	if _, err := s.propose(r, s.store().Snapshot(), &raftstore.Command{Type: raftstore.CmdSetChain,
		Time: time.Now().UnixNano(), Chain: &info}); err != nil {
		return err
	}
	s.log.Info("anchoring chain recorded", "by", c.controller, "rpc", info.RPCURL, "chain_id", info.ChainID, "contract", info.Contract)
	writeJSON(w, http.StatusOK, info)
	return nil
}
