package server

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/auth"
	"github.com/stockade-hpc/stockade/internal/hostlist"
	"github.com/stockade-hpc/stockade/raftstore"
	"github.com/stockade-hpc/stockade/scheduler"
)

const (
	// schedCoalesce is the least time between scheduler passes, so a
	// submit storm becomes a few large plans instead of one per job.
	schedCoalesce = 5 * time.Millisecond
	schedTick     = time.Second
	livenessTick  = time.Second
	configTick    = 2 * time.Second
	maxPlacements = 1000
	// priorityPeriod is how often a pass writes recomputed priorities
	// back (Slurm's PriorityCalcPeriod); newly submitted jobs get theirs
	// sooner, but at most every priorityNewJobs.
	priorityPeriod  = time.Minute
	priorityNewJobs = 5 * time.Second
)

// leadership starts the leader's loops when this member becomes leader
// (with a complete state) and stops them when it stops leading.
func (s *Server) leadership() {
	defer s.wg.Done()
	defer s.dropSchedMem()
	changes := s.node.LeadershipChanges()
	var stop func()
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for {
		select {
		case <-s.ctx.Done():
			return
		case leading, ok := <-changes:
			if !ok {
				return
			}
			s.leading.Store(leading)
			switch {
			case leading && stop == nil:
				stop = s.startLeading()
			case !leading && stop != nil:
				stop()
				stop = nil
			}
		}
	}
}

// startLeading runs the leader's loops until the returned stop is called.
func (s *Server) startLeading() (stop func()) {
	ctx, cancel := context.WithCancel(s.ctx)
	var loops sync.WaitGroup
	s.log.Info("leading: starting the scheduler and failure detector")
	s.resetSeen()
	// Sessions and nonces of an earlier term are gone with it, and every
	// node gets a fresh grace for its next quote.
	s.attest.reset(time.Now())
	loops.Add(1)
	go func() {
		defer loops.Done()
		s.takeOver(ctx)
		loops.Add(6)
		go func() { defer loops.Done(); s.scheduleLoop(ctx) }()
		go func() { defer loops.Done(); s.livenessLoop(ctx) }()
		go func() { defer loops.Done(); s.configLoop(ctx) }()
		go func() { defer loops.Done(); s.attestLoop(ctx) }()
		go func() { defer loops.Done(); s.acctLoop(ctx) }()
		go func() { defer loops.Done(); s.acctAnchorLoop(ctx) }()
	}()
	return func() {
		cancel()
		loops.Wait()
		s.log.Info("no longer leading: leader loops stopped")
	}
}

// takeOver does the one-time work of a new leader: publish its own
// addresses, create the admin user after bootstrap. Each step retries
// until it succeeds or leadership ends.
func (s *Server) takeOver(ctx context.Context) {
	retry(ctx, s, "publishing this controller's record", func() error {
		return s.setController(ctx, s.id, s.raftAddr, s.apiAddr)
	})
	retry(ctx, s, "creating the admin user", func() error { return s.ensureAdmin(ctx) })
}

func retry(ctx context.Context, s *Server, what string, fn func() error) {
	for {
		err := fn()
		if err == nil || ctx.Err() != nil {
			return
		}
		s.log.Warn(what, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ensureAdmin creates user root (uid 0, admin, account root) with the
// token in the admin-token file, on the member that bootstrapped.
func (s *Server) ensureAdmin(ctx context.Context) error {
	snap := s.store().Snapshot()
	if snap.User("root") != nil {
		return nil
	}
	data, err := os.ReadFile(s.path(fileAdminToken))
	if errors.Is(err, os.ErrNotExist) {
		return nil // not the bootstrap member: nothing to do
	}
	if err != nil {
		return err
	}
	tok := strings.TrimSpace(string(data))
	tokenID, _, err := auth.ParseToken(tok)
	if err != nil {
		return errors.New(s.path(fileAdminToken) + ": not a Stockade token")
	}
	hash, err := auth.HashToken(tok)
	if err != nil {
		return err
	}
	if snap.Account("root") == nil {
		if _, err := s.node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdAddAccount, Time: time.Now().UnixNano(),
			Account: &api.Account{Name: "root", Description: "administrators"}}); err != nil {
			return err
		}
	}
	if _, err := s.node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdAddUser, Time: time.Now().UnixNano(),
		User: &api.User{Name: "root", UID: 0, GID: 0, DefaultAccount: "root", Accounts: []string{"root"},
			Admin: true, TokenID: tokenID, TokenHash: hash}}); err != nil {
		return err
	}
	s.log.Info("created admin user root", "token_file", s.path(fileAdminToken))
	return nil
}

// scheduleLoop runs a scheduler pass after state changes (at most one
// per schedCoalesce) and at least every schedTick, and commits non-empty
// plans. A change after which a pass could start nothing the last one did
// not start is let go (see passGate): during a storm of submissions that
// cannot start, the queue is not walked again after every batch.
func (s *Server) scheduleLoop(ctx context.Context) {
	st := s.store()
	var last uint64
	var lastPass time.Time
	var passTook time.Duration
	var prio priorityClock
	var gate passGate
	for ctx.Err() == nil {
		wctx, cancel := context.WithTimeout(ctx, schedTick)
		if gate.ran {
			// The periodic pass is due schedTick after the last one, even
			// if changes that needed none came in between.
			cancel()
			wctx, cancel = context.WithDeadline(ctx, gate.at.Add(schedTick))
		}
		st.WaitForIndex(wctx, last)
		cancel()
		if ctx.Err() != nil {
			return
		}
		// Wait at least as long as the last pass took, so that with a deep
		// queue the scheduler leaves half the CPU to the API.
		if d := max(schedCoalesce, passTook) - time.Since(lastPass); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		// The counts before the snapshot: a change in between is taken
		// for unseen, never the other way round.
		ev := st.SchedEvents()
		snap := st.Snapshot()
		last = snap.Index()
		s.endReservationJobs(ctx, snap, time.Now())
		if !gate.needed(time.Now(), ev, snap) {
			continue
		}
		lastPass = time.Now()
		plan := scheduler.Schedule(lastPass, snap, scheduler.Options{MaxPlacementsPerPass: maxPlacements,
			UpdatePriorities: prio.due(lastPass, snap.NextJobID())})
		passTook = time.Since(lastPass)
		s.schedMem().setStartTimes(plan.StartTimes)
		// Not quiet until its plan is committed.
		gate = newPassGate(lastPass, ev, snap, &plan)
		if plan.Empty() {
			gate.quiet = true
			continue
		}
		res, err := s.node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdApplyPlan, Time: lastPass.UnixNano(), Plan: &plan})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("committing a scheduler plan", "err", err)
			}
			continue
		}
		gate.quiet = len(plan.Placements) == 0 && len(plan.Preemptions) == 0 && len(plan.Cancels) == 0
		if pr, ok := res.(*raftstore.PlanResult); ok && (pr.Applied > 0 || len(pr.Rejected) > 0) {
			s.log.Debug("scheduler pass", "started", pr.Applied, "rejected", len(pr.Rejected),
				"pending", len(snap.PendingJobs()), "took", time.Since(lastPass))
		}
		if pr, ok := res.(*raftstore.PlanResult); ok && len(pr.Preempted) > 0 {
			s.log.Info("jobs preempted", "jobs", pr.Preempted)
		}
	}
}

// passGate remembers the last scheduler pass of this term, to tell when
// another could do nothing new. A pass can start (or preempt) a job the
// last one did not only if the last one was not quiet (it started,
// preempted or cancelled something, or its plan was not committed), or
// since its snapshot
//
//   - something happened that may free resources, make a pending job
//     eligible or reorder the queue (SchedEvents.Changes: job ends,
//     cancels, releases, node, partition, reservation, QoS and
//     configuration changes; and a reservation's start or end passing),
//     or
//   - jobs that may start were submitted (SchedEvents.Submits: held jobs
//     never start) and some usable node has as many free CPUs as one of
//     the pending jobs that are not held needs (scheduler.Saturated).
//
// Otherwise the pass is skipped: it would only refresh pending reasons
// and start estimates, which the periodic pass (schedTick) still does.
// The scheduler's own plans, controller records and the usage ledger
// count as nothing.
type passGate struct {
	ran   bool      // a pass ran in this term
	quiet bool      // it started, preempted and cancelled nothing, and its plan was committed
	at    time.Time // when it ran
	ev    raftstore.SchedEvents
	// minCPUs is the fewest CPUs per node asked for by the jobs not held
	// that were pending in the pass's snapshot or submitted since, up to
	// job id next (0: none; scheduler.MinCPUs).
	minCPUs int
	next    uint64
}

// gateView is what the gate reads of a snapshot.
type gateView interface {
	scheduler.State
	NextJobID() uint64
}

// newPassGate records a pass over snap, whose counts were ev.
func newPassGate(at time.Time, ev raftstore.SchedEvents, snap gateView, plan *scheduler.Plan) passGate {
	return passGate{ran: true, at: at, ev: ev, minCPUs: plan.MinCPUs, next: snap.NextJobID()}
}

// needed reports whether a pass is due at now over snap, whose counts are
// ev.
func (g *passGate) needed(now time.Time, ev raftstore.SchedEvents, snap gateView) bool {
	switch {
	case !g.ran || !g.quiet || now.Sub(g.at) >= schedTick || ev.Changes != g.ev.Changes:
		return true
	case scheduler.ReservationBoundary(snap, g.at, now):
		return true // a reservation started or ended: its nodes changed hands
	case ev.Submits == g.ev.Submits:
		return false // nothing new, or only held jobs
	}
	// Jobs were submitted: fold in those not seen yet (each once, however
	// many passes are skipped).
	for next := snap.NextJobID(); g.next < next; g.next++ {
		if j := snap.Job(g.next); j != nil && j.State == api.JobPending && j.HeldBy == "" {
			g.minCPUs = scheduler.MinCPUs(g.minCPUs, j)
		}
	}
	return g.minCPUs != 0 && !scheduler.Saturated(snap, g.minCPUs)
}

// priorityClock decides when a pass writes priorities back: every
// priorityPeriod, and sooner (at most every priorityNewJobs) once jobs
// were submitted since the last write, whose stored priority is only the
// submit-time estimate.
type priorityClock struct {
	last   time.Time
	nextID uint64 // NextJobID at the last write
}

func (p *priorityClock) due(now time.Time, nextID uint64) bool {
	since := now.Sub(p.last)
	if since >= priorityPeriod || (nextID > p.nextID && since >= priorityNewJobs) {
		p.last, p.nextID = now, nextID
		return true
	}
	return false
}

// resetSeen gives every node a fresh grace period: a new leader has no
// heartbeat history (as Nomad does on failover).
func (s *Server) resetSeen() {
	now := time.Now()
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	clear(s.seen)
	for _, n := range s.store().Snapshot().Nodes() {
		s.seen[n.Name] = now
	}
}

// livenessLoop marks UP nodes DOWN when they have not been heard from for
// NodeTimeout; the state machine requeues or fails their jobs.
func (s *Server) livenessLoop(ctx context.Context) {
	t := time.NewTicker(livenessTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var dead []string
		s.seenMu.Lock()
		for _, n := range s.store().Snapshot().Nodes() {
			if n.State != api.NodeUp {
				continue
			}
			seen, ok := s.seen[n.Name]
			if !ok {
				s.seen[n.Name] = now // registered through another leader
				continue
			}
			if now.Sub(seen) > s.opts.NodeTimeout {
				dead = append(dead, n.Name)
			}
		}
		s.seenMu.Unlock()
		if len(dead) == 0 {
			continue
		}
		res, err := s.node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdNodesDown, Time: now.UnixNano(),
			NodeNames: dead, Reason: notResponding})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("marking unresponsive nodes down", "err", err)
			}
			continue
		}
		args := []any{"nodes", hostlist.Compress(dead), "timeout", s.opts.NodeTimeout}
		if r, ok := res.(*raftstore.NodesDownResult); ok {
			args = append(args, "requeued", len(r.Requeued), "failed", len(r.Failed))
		}
		s.log.Warn("nodes not responding: marked DOWN", args...)
	}
}

// configLoop applies the configured partitions whenever the state differs
// (at takeover, and as nodes appear for "ALL" partitions).
func (s *Server) configLoop(ctx context.Context) {
	t := time.NewTicker(configTick)
	defer t.Stop()
	for {
		snap := s.store().Snapshot()
		parts, nodes := s.cfg.desired(snap.Nodes())
		missing := false
		for _, n := range nodes {
			missing = missing || snap.Node(n.Name) == nil
		}
		if missing || !partitionsEqual(parts, snap.Partitions()) {
			_, err := s.node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdSetPartitions, Time: time.Now().UnixNano(),
				Partitions: parts, ConfiguredNodes: nodes})
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("applying the partition configuration", "err", err)
				}
			} else {
				s.log.Info("partition configuration applied", "partitions", len(parts))
			}
		}
		for _, cmd := range policyCommands(s.cfg, s.store().Snapshot(), time.Now()) {
			if _, err := s.node.Apply(ctx, cmd); err != nil {
				if ctx.Err() == nil {
					s.log.Warn("applying the scheduling policy configuration", "command", cmd.Type, "err", err)
				}
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
