package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/raftstore"
	"github.com/stockade-hpc/stockade/scheduler"
)

// Scheduling policy routes (sacctmgr, sprio, sshare, scontrol
// reservations) and the leader's scheduling memory.

// schedMem is what a leader keeps between scheduler passes.
type schedMem struct {
	mu         sync.Mutex
	startTimes map[uint64]time.Time // the last pass's estimates (squeue --start)
	// resvMu serializes choosing a reservation's nodes and committing it.
	resvMu sync.Mutex
}

// schedMems holds each Server's schedMem; a field of Server would do as
// well, this keeps the policy code in one file.
var schedMems sync.Map // *Server → *schedMem

func (s *Server) schedMem() *schedMem {
	v, _ := schedMems.LoadOrStore(s, &schedMem{})
	return v.(*schedMem)
}

func (s *Server) dropSchedMem() { schedMems.Delete(s) }

func (m *schedMem) setStartTimes(st map[uint64]time.Time) {
	m.mu.Lock()
	m.startTimes = st
	m.mu.Unlock()
}

func (m *schedMem) startTime(id uint64) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.startTimes[id]
}

// policyError turns a refused policy command into its HTTP answer.
func policyError(err error) error {
	var fe *raftstore.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, raftstore.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, raftstore.ErrConflict):
		status = http.StatusConflict
	}
	return errorf(status, "%s", oneLine(fe).Error())
}

// propose validates cmd against snap (the leader's current state) and, if
// it passes, commits it; the answer is the command's result.
func (s *Server) propose(r *http.Request, snap *raftstore.Snapshot, cmd *raftstore.Command) (any, error) {
	if res, ok := snap.Check(cmd).(error); ok {
		return nil, policyError(res)
	}
	res, err := s.node.Apply(r.Context(), cmd)
	if err != nil {
		return nil, policyError(err)
	}
	return res, nil
}

// ---- accounting ----

func (s *Server) handleAccounting(w http.ResponseWriter, r *http.Request, c *caller) error {
	writeJSON(w, http.StatusOK, accountingResponse(s.store().Snapshot()))
	return nil
}

// accountingResponse lists the accounting tables; tokens stay out.
func accountingResponse(snap *raftstore.Snapshot) api.AccountingResponse {
	resp := api.AccountingResponse{Accounts: []api.Account{}, Users: []api.User{},
		Associations: []api.Association{}, QOS: []api.QOS{}}
	for _, a := range snap.Accounts() {
		resp.Accounts = append(resp.Accounts, *a)
	}
	for _, u := range snap.Users() {
		cp := *u
		cp.TokenID, cp.TokenHash = "", ""
		resp.Users = append(resp.Users, cp)
	}
	for _, a := range snap.Associations() {
		resp.Associations = append(resp.Associations, *a)
	}
	for _, q := range snap.QOSList() {
		resp.QOS = append(resp.QOS, *q)
	}
	return resp
}

func (s *Server) handleChangeAccounting(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.AccountingRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	snap := s.store().Snapshot()
	if err := prepareAccounting(snap, s.cfg, &req); err != nil {
		return err
	}
	res, err := s.propose(r, snap, &raftstore.Command{Type: raftstore.CmdAccounting, Time: time.Now().UnixNano(),
		Accounting: &req, Actor: c.user.Name})
	if err != nil {
		return err
	}
	out, ok := res.(*api.AccountingResult)
	if !ok {
		return fmt.Errorf("accounting: unexpected result %T", res)
	}
	if out.Changed == nil {
		out.Changed = []string{}
	}
	s.log.Info("accounting changed", "by", c.user.Name, "op", req.Op, "changed", out.Changed)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// prepareAccounting is handleChangeAccounting's part beyond the state
// machine's checks: the op's spelling, the ids of new users from the
// controller's system, and QoS that the configuration file owns.
func prepareAccounting(snap *raftstore.Snapshot, cfg *Config, req *api.AccountingRequest) error {
	req.Op = strings.ToLower(strings.TrimSpace(req.Op))
	if req.Op == "add" {
		for i := range req.Users {
			u := &req.Users[i]
			if snap.User(u.Name) != nil || !userNameRE().MatchString(u.Name) || (u.UID != 0 && u.GID != 0) {
				continue
			}
			ur := api.UserAddRequest{Name: u.Name}
			if u.UID != 0 {
				ur.UID = &u.UID
			}
			uid, gid, err := resolveIDs(ur)
			if err != nil {
				return badRequest("users[%d].%s", i, err.Error())
			}
			u.UID, u.GID = uid, gid
		}
	}
	if req.Op == "modify" || req.Op == "delete" {
		for i, q := range req.QOS {
			if slices.ContainsFunc(cfg.QOS, func(c api.QOS) bool { return c.Name == q.Name }) {
				return errorf(http.StatusConflict, "qos[%d].name: qos %s is defined in the cluster configuration file; change it there", i, q.Name)
			}
		}
	}
	return nil
}

// ---- priorities, shares, configuration ----

func (s *Server) handlePriorities(w http.ResponseWriter, r *http.Request, c *caller) error {
	snap := s.store().Snapshot()
	writeJSON(w, http.StatusOK, prioritiesResponse(snap, c, time.Now()))
	return nil
}

// prioritiesResponse is sprio's data as c may see it: users see only
// their own jobs, as in job listings.
func prioritiesResponse(snap *raftstore.Snapshot, c *caller, now time.Time) api.PrioritiesResponse {
	resp := api.PrioritiesResponse{Weights: snap.SchedConfig().Weights, Jobs: []api.PriorityFactors{}}
	for _, f := range scheduler.Priorities(now, snap) {
		if c.admin() || f.User == c.user.Name {
			resp.Jobs = append(resp.Jobs, f)
		}
	}
	slices.SortFunc(resp.Jobs, func(a, b api.PriorityFactors) int { return cmp.Compare(a.JobID, b.JobID) })
	return resp
}

func (s *Server) handleShares(w http.ResponseWriter, r *http.Request, c *caller) error {
	resp := api.SharesResponse{Shares: []api.ShareInfo{}}
	for _, sh := range scheduler.FairShare(time.Now(), s.store().Snapshot()) {
		// Users see the accounts and their own rows, as sshare without -a.
		if c.admin() || sh.User == "" || sh.User == c.user.Name {
			resp.Shares = append(resp.Shares, sh)
		}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) handleSchedConfig(w http.ResponseWriter, r *http.Request, c *caller) error {
	writeJSON(w, http.StatusOK, s.store().Snapshot().SchedConfig())
	return nil
}

// ---- reservations ----

func (s *Server) handleReservations(w http.ResponseWriter, r *http.Request, c *caller) error {
	resp := api.ReservationsResponse{Reservations: []api.Reservation{}}
	for _, rv := range s.store().Snapshot().Reservations() {
		resp.Reservations = append(resp.Reservations, *rv)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) handleChangeReservation(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.ReservationRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	m := s.schedMem()
	m.resvMu.Lock()
	defer m.resvMu.Unlock()
	snap := s.store().Snapshot()
	now := time.Now()
	cmd, err := reservationCommand(snap, &req, now)
	if err != nil {
		return err
	}
	cmd.Actor = c.user.Name
	res, err := s.propose(r, snap, cmd)
	if err != nil {
		return err
	}
	out := *cmd.Reservation
	if rv, ok := res.(*api.Reservation); ok {
		out = *rv
	}
	s.log.Info("reservation changed", "by", c.user.Name, "op", req.Op, "name", out.Name, "nodes", out.Nodes)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// reservationCommand is handleChangeReservation's validation: the command
// for req at now, with the nodes chosen when the request gives a count.
// A delete's command carries the reservation as it was.
func reservationCommand(snap *raftstore.Snapshot, req *api.ReservationRequest, now time.Time) (*raftstore.Command, error) {
	rv := req.Reservation
	old := snap.Reservation(rv.Name)
	cmd := &raftstore.Command{Type: raftstore.CmdSetReservation, Time: now.UnixNano()}
	switch op := strings.ToLower(strings.TrimSpace(req.Op)); op {
	case "delete":
		if old == nil {
			return nil, errorf(http.StatusNotFound, "reservation.name: no such reservation %q", rv.Name)
		}
		cmd.Type, cmd.Reservation = raftstore.CmdDeleteReservation, old
		return cmd, nil
	case "create":
		if old != nil {
			return nil, errorf(http.StatusConflict, "reservation.name: reservation %s already exists", rv.Name)
		}
		if rv.Start.IsZero() {
			rv.Start = now.Truncate(time.Second)
		}
	case "update":
		if old == nil {
			return nil, errorf(http.StatusNotFound, "reservation.name: no such reservation %q", rv.Name)
		}
		// Fields left out keep their values.
		rv.Start = cmp.Or(rv.Start, old.Start)
		rv.End = cmp.Or(rv.End, old.End)
		rv.Partition = cmp.Or(rv.Partition, old.Partition)
		if len(rv.Users) == 0 && len(rv.Accounts) == 0 {
			rv.Users, rv.Accounts = old.Users, old.Accounts
		}
		if rv.Flags == nil {
			rv.Flags = old.Flags
		}
		if len(rv.Nodes) == 0 && req.NodeCount == 0 {
			rv.Nodes = old.Nodes
		}
	default:
		return nil, badRequest("op: must be create, update or delete, not %q", req.Op)
	}
	if rv.End.IsZero() {
		return nil, badRequest("reservation.end_time: required")
	}
	var err error
	var had []string
	if old != nil {
		had = old.Flags
	}
	if rv.Flags, err = reservationFlags(rv.Flags, had); err != nil {
		return nil, err
	}
	if rv.Nodes, err = expandNodes("reservation.nodes", rv.Nodes); err != nil {
		return nil, err
	}
	switch {
	case req.NodeCount < 0:
		return nil, badRequest("node_count: must be >= 0")
	case req.NodeCount > 0 && len(rv.Nodes) > 0:
		return nil, badRequest("node_count: give nodes or node_count, not both")
	case req.NodeCount > 0:
		if rv.Nodes, err = pickReservationNodes(snap, &rv, req.NodeCount); err != nil {
			return nil, err
		}
	}
	// As Slurm, nodes whose running jobs would still run when the
	// reservation starts are refused unless IGNORE_JOBS is given; an
	// update is checked only when it moves the start earlier or adds
	// nodes.
	if old == nil || rv.Start.Before(old.Start) || slices.ContainsFunc(rv.Nodes, func(n string) bool { return !slices.Contains(old.Nodes, n) }) {
		busy := scheduler.RunningInTheWay(snap, &rv)
		for _, n := range rv.Nodes {
			if id, ok := busy[n]; ok {
				return nil, errorf(http.StatusConflict, "reservation.nodes: Requested nodes are busy: job %d runs on %s past the start (Flags=IGNORE_JOBS reserves it anyway)", id, n)
			}
		}
	}
	cmd.Reservation = &rv
	return cmd, nil
}

// reservationFlags checks and normalizes reservation flags: Slurm's
// spellings of the flags Stockade interprets, any case, each once. Flags
// the reservation already had (stored before they were checked) stay.
func reservationFlags(flags, had []string) ([]string, error) {
	var out []string
	for _, f := range flags {
		u := strings.ToUpper(strings.TrimSpace(f))
		switch {
		case u == api.ResvFlagMaint, u == api.ResvFlagIgnoreJobs, slices.Contains(had, u):
		default:
			return nil, badRequest("reservation.flags: unsupported flag %q (Stockade takes MAINT and IGNORE_JOBS)", f)
		}
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out, nil
}

// pickReservationNodes chooses count usable nodes of the reservation's
// partition (or the default one) that no overlapping reservation holds
// and, without IGNORE_JOBS, that run no job past its start, the idlest
// first.
func pickReservationNodes(snap *raftstore.Snapshot, rv *api.Reservation, count int) ([]string, error) {
	pt := snap.DefaultPartition()
	if rv.Partition != "" {
		pt = snap.Partition(rv.Partition)
	}
	if pt == nil {
		if rv.Partition != "" {
			return nil, errorf(http.StatusNotFound, "reservation.partition: no such partition %q", rv.Partition)
		}
		return nil, badRequest("reservation.partition: required: there is no default partition")
	}
	var free []*api.Node
	busy := scheduler.RunningInTheWay(snap, rv)
	for _, name := range pt.Nodes {
		n := snap.Node(name)
		if n == nil || !n.Usable() {
			continue
		}
		if _, ok := busy[name]; ok {
			continue
		}
		probe := api.Reservation{Start: rv.Start, End: rv.End, Nodes: []string{name}}
		taken := slices.ContainsFunc(snap.Reservations(), func(o *api.Reservation) bool {
			_, clash := raftstore.Overlaps(&probe, o)
			return clash && o.Name != rv.Name
		})
		if !taken {
			free = append(free, n)
		}
	}
	if len(free) < count {
		return nil, errorf(http.StatusConflict, "node_count: only %d usable nodes of partition %s are free of other reservations and running jobs then, %d asked",
			len(free), pt.Name, count)
	}
	slices.SortStableFunc(free, func(a, b *api.Node) int {
		if c := cmp.Compare(b.CPUs-b.AllocCPUs, a.CPUs-a.AllocCPUs); c != 0 {
			return c
		}
		if c := cmp.Compare(len(a.Name), len(b.Name)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	out := make([]string, count)
	for i := range out {
		out[i] = free[i].Name
	}
	slices.Sort(out)
	return out, nil
}

// ---- the leader's policy configuration ----

// policyCommands are the commands that bring the state in line with the
// configuration file's scheduling policy: the scheduler table, the QoS it
// defines, the default QoS, associations missing for accounts and users
// (created before associations existed), and the removal of ended
// reservations.
func policyCommands(cfg *Config, snap *raftstore.Snapshot, now time.Time) []*raftstore.Command {
	var out []*raftstore.Command
	cmd := func(c *raftstore.Command) {
		c.Time = now.UnixNano()
		out = append(out, c)
	}
	if snap.SchedConfig() != cfg.Scheduler {
		sc := cfg.Scheduler
		cmd(&raftstore.Command{Type: raftstore.CmdSetSchedConfig, SchedConfig: &sc})
	}
	var add, mod []api.QOS
	defined := false
	for _, q := range cfg.QOS {
		defined = defined || q.Name == cfg.Scheduler.DefaultQOS
		switch have := snap.QOS(q.Name); {
		case have == nil:
			add = append(add, q)
		case !qosEqual(have, &q):
			mod = append(mod, q)
		}
	}
	if d := cfg.Scheduler.DefaultQOS; d != "" && !defined && snap.QOS(d) == nil {
		add = append([]api.QOS{{Name: d, Description: "default"}}, add...)
	}
	if len(add) > 0 {
		cmd(&raftstore.Command{Type: raftstore.CmdAccounting, Accounting: &api.AccountingRequest{Op: "add", QOS: add}})
	}
	if len(mod) > 0 {
		cmd(&raftstore.Command{Type: raftstore.CmdAccounting, Accounting: &api.AccountingRequest{Op: "modify", QOS: mod}})
	}
	var assocs []api.Association
	for _, a := range snap.Accounts() {
		if snap.Association(a.Name, "") == nil {
			assocs = append(assocs, api.Association{Account: a.Name, Shares: 1})
		}
	}
	for _, u := range snap.Users() {
		for _, a := range u.Accounts {
			if snap.Account(a) != nil && snap.Association(a, u.Name) == nil {
				assocs = append(assocs, api.Association{Account: a, User: u.Name, Shares: 1})
			}
		}
	}
	if len(assocs) > 0 {
		cmd(&raftstore.Command{Type: raftstore.CmdAccounting, Accounting: &api.AccountingRequest{Op: "add", Associations: assocs}})
	}
	for _, rv := range snap.Reservations() {
		if scheduler.ReservationDone(now, snap, rv, cfg.ResvOverRun) {
			cmd(&raftstore.Command{Type: raftstore.CmdDeleteReservation, Reservation: &api.Reservation{Name: rv.Name}})
		}
	}
	return out
}

// endReservationJobs is the leader's enforcement of reservation ends
// (Slurm's ResvOverRun): jobs that started in a reservation are cancelled
// once it has ended and the over-run time is over, through scancel's
// command. The reservation is kept until they have ended (policyCommands).
func (s *Server) endReservationJobs(ctx context.Context, snap *raftstore.Snapshot, now time.Time) {
	ids := scheduler.ReservationEnds(now, snap, s.cfg.ResvOverRun)
	if len(ids) == 0 {
		return
	}
	_, err := s.node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdCancelJobs, Time: now.UnixNano(), JobIDs: ids,
		Reason: "reservation ended"})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("ending the jobs of ended reservations", "jobs", ids, "err", err)
		}
		return
	}
	s.log.Info("reservation ended: jobs cancelled", "jobs", ids, "over_run", s.cfg.ResvOverRun)
}

// qosEqual compares a stored QoS with a configured one (nil and empty
// lists alike).
func qosEqual(a, b *api.QOS) bool {
	x, y := *a, *b
	if len(x.Preempt) == 0 {
		x.Preempt = nil
	}
	if len(y.Preempt) == 0 {
		y.Preempt = nil
	}
	return reflect.DeepEqual(x, y)
}

// ---- job listings ----

// leaderOnlyStart forwards a squeue --start listing to the leader, which
// alone has the scheduler's estimates; it reports whether it did.
func (s *Server) leaderOnlyStart(w http.ResponseWriter, r *http.Request) bool {
	if s.node.IsLeader() {
		return false
	}
	role, name := pki.PeerRole(r.TLS)
	s.forward(w, r, role, name)
	return true
}
