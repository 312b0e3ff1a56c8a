package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	osuser "os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/auth"
	"github.com/stockade-hpc/stockade/internal/hostlist"
	"github.com/stockade-hpc/stockade/raftstore"
)

func (s *Server) handleNodes(w http.ResponseWriter, r *http.Request, c *caller) error {
	snap := s.store().Snapshot()
	resp := api.NodesResponse{Nodes: []api.Node{}, Partitions: []api.Partition{}, Index: snap.Index()}
	for _, n := range snap.Nodes() {
		resp.Nodes = append(resp.Nodes, *n)
	}
	for _, p := range snap.Partitions() {
		resp.Partitions = append(resp.Partitions, *p)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) handleNodeUpdate(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.NodeUpdateRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	cmd, err := nodeUpdateCommand(s.store().Snapshot(), &req, time.Now())
	if err != nil {
		return err
	}
	if _, err := s.node.Apply(r.Context(), cmd); err != nil {
		return err
	}
	names, state := cmd.NodeNames, cmd.NodeState
	if state == "resume" {
		// A resumed node gets a fresh grace period from the failure detector.
		s.markSeen(names...)
	}
	s.log.Info("nodes updated", "by", c.user.Name, "nodes", hostlist.Compress(names), "state", state, "reason", req.Reason)
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

// nodeUpdateCommand is handleNodeUpdate's validation: the command that
// sets the nodes the request names to its state (drain, down or resume),
// proposed at now.
func nodeUpdateCommand(snap *raftstore.Snapshot, req *api.NodeUpdateRequest, now time.Time) (*raftstore.Command, error) {
	state := strings.ToLower(strings.TrimSpace(req.State))
	switch state {
	case "drain", "down", "resume":
	case "undrain", "idle", "up":
		state = "resume"
	default:
		return nil, badRequest("state: must be drain, resume or down, not %q", req.State)
	}
	if (state == "drain" || state == "down") && strings.TrimSpace(req.Reason) == "" {
		return nil, badRequest("reason: required when draining or downing nodes")
	}
	if len(req.Reason) > 1024 {
		return nil, badRequest("reason: longer than 1024 characters")
	}
	names, err := expandNodes("nodes", req.Nodes)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, badRequest("nodes: required")
	}
	for _, n := range names {
		if snap.Node(n) == nil {
			return nil, errorf(http.StatusNotFound, "nodes: unknown node %s", n)
		}
	}
	return &raftstore.Command{
		Type: raftstore.CmdUpdateNodes, Time: now.UnixNano(),
		NodeNames: names, NodeState: state, Reason: req.Reason,
	}, nil
}

var userNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`) })

func (s *Server) handleAddUser(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.UserAddRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	accountGiven := req.Account != ""
	if err := normalizeUserAdd(&req); err != nil {
		return err
	}
	// Two concurrent adds of one name must not both pass the check: the
	// second would silently replace the first's token.
	s.userMu.Lock()
	defer s.userMu.Unlock()
	snap := s.store().Snapshot()
	uid, gid, err := newUserIDs(snap, &req)
	if err != nil {
		return err
	}
	// A user sacctmgr created has no token yet: this issues one.
	old := snap.User(req.Name)
	if old != nil && !accountGiven && old.DefaultAccount != "" {
		req.Account = old.DefaultAccount
	}
	tokenID, token, err := auth.NewToken()
	if err != nil {
		return err
	}
	hash, err := auth.HashToken(token)
	if err != nil {
		return err
	}
	if snap.Account(req.Account) == nil {
		parent := "root"
		if req.Account == "root" {
			parent = ""
		}
		if _, err := s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdAddAccount, Time: time.Now().UnixNano(),
			Account: &api.Account{Name: req.Account, Parent: parent}}); err != nil {
			return err
		}
	}
	u := &api.User{Name: req.Name, UID: uid, GID: gid, DefaultAccount: req.Account, Accounts: []string{req.Account},
		Admin: req.Admin, TokenID: tokenID, TokenHash: hash}
	if old != nil {
		u.Accounts = slices.Clone(old.Accounts)
		if !slices.Contains(u.Accounts, req.Account) {
			u.Accounts = append(u.Accounts, req.Account)
		}
		u.DefaultAccount = cmp.Or(old.DefaultAccount, req.Account)
		u.Admin = old.Admin || req.Admin
	}
	if _, err := s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdAddUser, Time: time.Now().UnixNano(), User: u}); err != nil {
		return err
	}
	s.log.Info("user added", "by", c.user.Name, "user", u.Name, "uid", uid, "gid", gid, "account", req.Account, "admin", req.Admin)
	out := *u
	out.TokenHash = ""
	writeJSON(w, http.StatusOK, api.UserAddResponse{User: out, Token: token})
	return nil
}

// normalizeUserAdd is handleAddUser's check of the names in a request; it
// fills in the account (default: the user's name).
func normalizeUserAdd(req *api.UserAddRequest) error {
	if !userNameRE().MatchString(req.Name) {
		return badRequest("name: invalid user name %q (want [a-z_][a-z0-9_.-]*, at most 32)", req.Name)
	}
	if req.Account == "" {
		req.Account = req.Name
	}
	if !partitionNameRE().MatchString(req.Account) {
		return badRequest("account: invalid account name %q", req.Account)
	}
	return nil
}

// newUserIDs is handleAddUser's check of a (normalized) request against
// the state, under userMu: the user must be new, or have no token yet (made
// with sacctmgr). It returns the user's uid and gid (resolveIDs for a new
// one).
func newUserIDs(snap *raftstore.Snapshot, req *api.UserAddRequest) (uid, gid uint32, err error) {
	old := snap.User(req.Name)
	switch {
	case old == nil:
		return resolveIDs(*req)
	case old.TokenID != "":
		return 0, 0, errorf(http.StatusConflict, "name: user %s already exists", req.Name)
	case req.UID != nil && *req.UID != old.UID:
		return 0, 0, errorf(http.StatusConflict, "uid: user %s exists with uid %d", req.Name, old.UID)
	case req.GID != nil && *req.GID != old.GID:
		return 0, 0, errorf(http.StatusConflict, "gid: user %s exists with gid %d", req.Name, old.GID)
	}
	return old.UID, old.GID, nil
}

// resolveIDs takes uid and gid from the request, else from the user of
// that name on the controller's system.
func resolveIDs(req api.UserAddRequest) (uid, gid uint32, err error) {
	var sys *osuser.User
	if req.UID == nil || req.GID == nil {
		sys, _ = osuser.Lookup(req.Name)
	}
	parse := func(field, v string) (uint32, error) {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return 0, badRequest("%s: system user %s has non-numeric id %q", field, req.Name, v)
		}
		return uint32(n), nil
	}
	switch {
	case req.UID != nil:
		uid = *req.UID
	case sys != nil:
		if uid, err = parse("uid", sys.Uid); err != nil {
			return 0, 0, err
		}
	default:
		return 0, 0, badRequest("uid: required: there is no user %q on the controller's system", req.Name)
	}
	switch {
	case req.GID != nil:
		gid = *req.GID
	case sys != nil && (req.UID == nil || sys.Uid == strconv.FormatUint(uint64(*req.UID), 10)):
		if gid, err = parse("gid", sys.Gid); err != nil {
			return 0, 0, err
		}
	default:
		return 0, 0, badRequest("gid: required with uid")
	}
	return uid, gid, nil
}

func (s *Server) handleListUsers(w http.ResponseWriter, r *http.Request, c *caller) error {
	out := []api.User{}
	for _, u := range s.store().Snapshot().Users() {
		cp := *u
		cp.TokenHash = ""
		out = append(out, cp)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request, c *caller) error {
	snap := s.store().Snapshot()
	st := s.node.Stats()
	resp := api.Status{
		Leader:       st.LeaderID,
		RaftIndex:    st.AppliedIndex,
		CommitIndex:  st.CommitIndex,
		NodesByState: map[string]int{},
		JobsByState:  map[string]int{},
		ServedBy:     s.id,
	}
	if !st.LastContact.IsZero() && st.State != "Leader" {
		resp.LastContactMs = time.Since(st.LastContact).Milliseconds()
	}
	known := map[string]*api.Controller{}
	for _, ctl := range snap.Controllers() {
		known[ctl.ID] = ctl
	}
	for _, m := range st.Servers {
		ctl := api.Controller{ID: m.ID, RaftAddr: m.Addr, Voter: m.Voter, Leader: m.ID == st.LeaderID}
		if k := known[m.ID]; k != nil {
			ctl.APIAddr = k.APIAddr
		}
		resp.Controllers = append(resp.Controllers, ctl)
	}
	for _, n := range snap.Nodes() {
		resp.NodesByState[n.SinfoState()]++
	}
	for _, j := range snap.Jobs() {
		resp.JobsByState[string(j.State)]++
	}
	resp.QueueDepth = resp.JobsByState[string(api.JobPending)]
	acctStatus(snap, &resp, time.Now())
	s.anchorStatus(&resp)
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// controllerRecord is the body of POST /v1/cluster/controller: a member
// publishing its own addresses.
type controllerRecord struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
}

func (s *Server) handleSetController(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req controllerRecord
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkControllerRecord(c.controller, &req); err != nil {
		return err
	}
	member := false
	for _, m := range s.node.Stats().Servers {
		member = member || m.ID == req.ID
	}
	if !member {
		// Holding a controller certificate proves it joined with a
		// controller token; the leader that admitted it may have died
		// before adding it to Raft.
		s.startAdmit(req.ID, req.RaftAddr, req.APIAddr)
		writeJSON(w, http.StatusAccepted, struct{}{})
		return nil
	}
	if err := s.setController(r.Context(), req.ID, req.RaftAddr, req.APIAddr); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

// checkControllerRecord is handleSetController's validation of a record
// published by the controller self (its certificate's name).
func checkControllerRecord(self string, req *controllerRecord) error {
	if req.ID != self {
		return errorf(http.StatusForbidden, "id: a controller may publish only its own record")
	}
	for _, a := range []struct{ field, v string }{{"raft_addr", req.RaftAddr}, {"api_addr", req.APIAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return badRequest("%s: not host:port: %q", a.field, a.v)
		}
	}
	return nil
}

// setController records a member's addresses unless they are already
// recorded. Leader only.
func (s *Server) setController(ctx context.Context, id, raftAddr, apiAddr string) error {
	for _, ctl := range s.store().Snapshot().Controllers() {
		if ctl.ID == id && ctl.RaftAddr == raftAddr && ctl.APIAddr == apiAddr {
			return nil
		}
	}
	_, err := s.node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdSetController, Time: time.Now().UnixNano(),
		Controller: &api.Controller{ID: id, RaftAddr: raftAddr, APIAddr: apiAddr, Voter: true}})
	if err == nil {
		s.log.Info("controller record published", "id", id, "raft", raftAddr, "api", apiAddr)
	}
	return err
}

// publishSelf makes sure the cluster knows this controller's current
// addresses: the leader records its own when it takes over; a follower
// asks the leader whenever its record is missing or stale (e.g. after a
// restart with new addresses).
func (s *Server) publishSelf() {
	defer s.wg.Done()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	client := &http.Client{Transport: s.peerTransport, Timeout: 10 * time.Second}
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if s.node.IsLeader() {
			continue
		}
		member := s.isMember()
		if member && s.recordCurrent() {
			continue
		}
		var targets []string
		if _, addr, err := s.leaderAPI(); err == nil {
			targets = []string{addr}
		} else if !member {
			// A joiner knows no leader until Raft adds it: ask the
			// members it joined through (they forward to the leader).
			targets = s.opts.Join
		}
		for _, addr := range targets {
			err := s.postLeader(client, addr)
			if err == nil {
				break
			}
			s.log.Debug("publishing this controller's record", "via", addr, "err", err)
		}
	}
}

func (s *Server) recordCurrent() bool {
	for _, ctl := range s.store().Snapshot().Controllers() {
		if ctl.ID == s.id {
			return ctl.RaftAddr == s.raftAddr && ctl.APIAddr == s.apiAddr
		}
	}
	return false
}

func (s *Server) isMember() bool {
	for _, m := range s.node.Stats().Servers {
		if m.ID == s.id {
			return true
		}
	}
	return false
}

func (s *Server) postLeader(client *http.Client, addr string) error {
	// Go's %q is not JSON's quoting (\x7f, \a): encode the record.
	body, err := json.Marshal(controllerRecord{ID: s.id, RaftAddr: s.raftAddr, APIAddr: s.apiAddr})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/v1/cluster/controller", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return errors.New(resp.Status)
	}
	return nil
}
