package server

import (
	"context"
	"encoding/binary"
	"hash"
	"hash/fnv"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/raftstore"
)

// notResponding is the reason the failure detector gives DOWN nodes; a
// heartbeat brings such a node back by itself, unlike an admin's DOWN.
const notResponding = "Not responding"

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.AgentRegisterRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkRegister(c.node, &req); err != nil {
		return err
	}
	res, err := s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdRegisterNode, Time: time.Now().UnixNano(), Register: &req})
	if err != nil {
		return err
	}
	s.markSeen(req.Name)
	n, ok := res.(*api.Node)
	if !ok {
		n = s.store().Snapshot().Node(req.Name)
	}
	s.log.Info("node registered", "node", req.Name, "cpus", req.CPUs, "memory_mb", req.MemoryMB, "gpus", req.GPUs)
	writeJSON(w, http.StatusOK, n)
	return nil
}

// checkRegister is handleRegister's validation of a registration by the
// agent of node (its certificate's name).
func checkRegister(node string, req *api.AgentRegisterRequest) error {
	if req.Name != node {
		return errorf(http.StatusForbidden, "name: node %s may register only itself (certificate is for %s)", req.Name, node)
	}
	switch {
	case req.CPUs < 1:
		return badRequest("cpus: must be >= 1")
	case req.MemoryMB < 0:
		return badRequest("memory_mb: must be >= 0")
	case req.GPUs < 0:
		return badRequest("gpus: must be >= 0")
	}
	return nil
}

func (s *Server) handleHeartbeat(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req api.AgentHeartbeat
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkHeartbeat(c.node, &req); err != nil {
		return err
	}
	n := s.store().Snapshot().Node(c.node)
	if n == nil || n.State == api.NodeUnknown {
		return errorf(http.StatusNotFound, "node %s is not registered; register first", c.node)
	}
	s.markSeen(c.node)
	if n.State == api.NodeDown && n.Reason == notResponding && !n.Drain {
		// It answers again: bring it back with the inventory it had.
		reg := &api.AgentRegisterRequest{Name: n.Name, CPUs: n.CPUs, MemoryMB: n.MemoryMB, GPUs: n.GPUs,
			Features: n.Features, AgentVersion: n.AgentVersion, Arch: n.Arch, OS: n.OS}
		if !n.BootTime.IsZero() {
			reg.BootTime = n.BootTime.Unix()
		}
		if _, err := s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdRegisterNode, Time: time.Now().UnixNano(), Register: reg}); err != nil {
			return err
		}
		s.log.Info("node responding again", "node", n.Name)
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

// checkHeartbeat is handleHeartbeat's check on the body of a heartbeat
// from the agent of node.
func checkHeartbeat(node string, req *api.AgentHeartbeat) error {
	if req.Name != "" && req.Name != node {
		return errorf(http.StatusForbidden, "name: node %s may report only for itself", node)
	}
	return nil
}

func (s *Server) handleReport(w http.ResponseWriter, r *http.Request, c *caller) error {
	var rep api.JobReport
	if err := decodeJSON(w, r, &rep); err != nil {
		return err
	}
	if err := checkReport(s.store().Snapshot(), c.node, &rep); err != nil {
		return err
	}
	s.markSeen(c.node)
	// Reports about an old attempt or an ended job change nothing and
	// are not errors: the agent may resend after a restart.
	if _, err := s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdJobReport, Time: time.Now().UnixNano(), Report: &rep}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

// checkReport is handleReport's validation of a job report from the agent
// of node; it fills in rep.Node if the report leaves it out.
func checkReport(snap *raftstore.Snapshot, node string, rep *api.JobReport) error {
	if rep.Node == "" {
		rep.Node = node
	}
	if rep.Node != node {
		return errorf(http.StatusForbidden, "node: node %s may report only for itself", node)
	}
	switch rep.State {
	case api.JobRunning, api.JobCompleted, api.JobFailed, api.JobCancelled, api.JobTimeout, api.JobOutOfMemory, api.JobNodeFail:
	default:
		return badRequest("state: %q is not RUNNING or a final job state", rep.State)
	}
	j := snap.Job(rep.JobID)
	if j == nil {
		return errorf(http.StatusNotFound, "job %d not found", rep.JobID)
	}
	if !slices.Contains(j.Nodes, node) {
		return errorf(http.StatusConflict, "job %d is not placed on node %s", rep.JobID, node)
	}
	return nil
}

// maxWait bounds a work long-poll.
const maxWait = 5 * time.Minute

// handleWork long-polls the jobs placed on the calling node. It returns
// when the node's job list changed since the index the agent last saw, or
// after wait with the current list. It reads the local replica: a stale
// answer only delays the agent's next poll.
func (s *Server) handleWork(w http.ResponseWriter, r *http.Request, c *caller) error {
	// Wake only for changes to this node's jobs, not every submit.
	err := s.awaitNodeChange(r, s.work, c.node, func(snap *raftstore.Snapshot) uint64 {
		return fingerprint(snap.JobsByNode(c.node))
	})
	if err != nil {
		return err
	}
	snap := s.store().Snapshot()
	jobs := snap.JobsByNode(c.node)
	resp := api.AgentWork{Jobs: make([]api.Job, 0, len(jobs)), Index: snap.Index()}
	for _, j := range jobs {
		resp.Jobs = append(resp.Jobs, *j)
	}
	s.work.put(c.node, resp.Index, fingerprint(jobs))
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// awaitNodeChange is the wait of a node's long-poll: until the state
// passes ?index with a change that fp sees (cache holds fp's value of the
// last answer at that index), ?wait runs out or the server shuts down.
func (s *Server) awaitNodeChange(r *http.Request, cache *workCache, node string, fp func(*raftstore.Snapshot) uint64) error {
	after, wait, err := parseWorkQuery(r.URL.Query())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel) // shutdown ends long polls
	defer stop()

	st := s.store()
	prev, known := cache.get(node, after)
	for cur := after; ; {
		idx, err := st.WaitForIndex(ctx, cur)
		if err != nil {
			return nil // timeout: answer with the current state
		}
		cur = idx
		if !known || fp(st.Snapshot()) != prev {
			return nil
		}
	}
}

// parseWorkQuery parses the query parameters of a work long-poll: the
// index the agent last saw (0: none) and how long to wait for a change.
func parseWorkQuery(q url.Values) (after uint64, wait time.Duration, err error) {
	if v := q.Get("index"); v != "" {
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			return 0, 0, badRequest("index: not a number: %q", v)
		}
	}
	wait = 30 * time.Second
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, 0, badRequest("wait: invalid duration %q", v)
		}
		wait = min(d, maxWait)
	}
	return after, wait, nil
}

// fingerprint identifies a node's job list: ids and modify indexes.
func fingerprint(jobs []*api.Job) uint64 {
	h := fnv.New64a()
	for _, j := range jobs {
		hashWords(h, j.ID, j.ModifyIndex)
	}
	return h.Sum64()
}

// hashWords feeds words to a fingerprint hash, little-endian.
func hashWords(h hash.Hash64, words ...uint64) {
	var b [8]byte
	for _, v := range words {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
}

// workCache remembers, per node, the index and job list fingerprint of
// the last answer, so a poll at that index can sleep through unrelated
// state changes.
type workCache struct {
	mu sync.Mutex
	m  map[string]workEntry
}

type workEntry struct {
	index uint64
	fp    uint64
}

func newWorkCache() *workCache { return &workCache{m: map[string]workEntry{}} }

func (c *workCache) get(node string, index uint64) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[node]
	if !ok || e.index != index || index == 0 {
		return 0, false
	}
	return e.fp, true
}

func (c *workCache) put(node string, index, fp uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[node] = workEntry{index: index, fp: fp}
}

// markSeen records a sign of life from nodes (meaningful on the leader).
func (s *Server) markSeen(names ...string) {
	now := time.Now()
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	for _, n := range names {
		s.seen[n] = now
	}
}
