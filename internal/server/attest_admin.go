package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/policy"
	"github.com/stockade-hpc/stockade/raftstore"
)

// maxAdminText bounds comments and reasons admins write into the state.
const maxAdminText = 1024

func (s *Server) handleGetPolicy(w http.ResponseWriter, r *http.Request, _ *caller) error {
	writeJSON(w, http.StatusOK, s.store().Snapshot().Policy())
	return nil
}

// handlePutPolicy replaces the policy. A body with a version is applied
// only if the policy is still at that version, so an edit of a fetched
// policy cannot undo values pinned on first use meanwhile; version 0
// replaces unconditionally.
func (s *Server) handlePutPolicy(w http.ResponseWriter, r *http.Request, c *caller) error {
	var p policy.Policy
	if err := decodeJSON(w, r, &p); err != nil {
		return err
	}
	q := p.Clone()
	if err := q.Normalize(); err != nil {
		return badRequest("policy: %v", err)
	}
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	if cur := s.store().Snapshot().Policy(); p.Version != 0 && p.Version != cur.Version {
		return errorf(http.StatusConflict, "version: the policy is at version %d, not %d; fetch it and edit again", cur.Version, p.Version)
	}
	return s.setPolicy(w, r, c, q, "")
}

func (s *Server) handleAddDigest(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req digestRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	s.policyMu.Lock()
	defer s.policyMu.Unlock()
	cur := s.store().Snapshot().Policy()
	q := cur.Clone()
	if err := q.AddDigest(strings.TrimSpace(req.Digest)); err != nil {
		return badRequest("digest: %v", err)
	}
	if len(q.AgentDigests) == len(cur.AgentDigests) {
		writeJSON(w, http.StatusOK, cur) // already allowed
		return nil
	}
	return s.setPolicy(w, r, c, q, "agent digest added")
}

// setPolicy stores p and answers the stored policy. Callers hold policyMu.
func (s *Server) setPolicy(w http.ResponseWriter, r *http.Request, c *caller, p *policy.Policy, reason string) error {
	res, err := s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdSetPolicy, Time: time.Now().UnixNano(),
		Policy: p, Reason: reason, Actor: c.user.Name})
	if err != nil {
		return err
	}
	out, ok := res.(*policy.Policy)
	if !ok {
		out = s.store().Snapshot().Policy()
	}
	s.log.Info("attestation policy changed", "by", c.user.Name, "version", out.Version, "reason", reason)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request, _ *caller) error {
	q := r.URL.Query()
	var since uint64
	var limit int
	var err error
	if v := q.Get("since"); v != "" {
		if since, err = strconv.ParseUint(v, 10, 64); err != nil {
			return badRequest("since: not a sequence number: %q", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			return badRequest("limit: not a count: %q", v)
		}
	}
	recs := s.store().Snapshot().Audit(q.Get("node"), since, limit)
	out := make([]api.AuditRecord, 0, len(recs))
	for _, rec := range recs {
		out = append(out, *rec)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// handleApproveEK vouches for an EK that has no verifiable certificate.
func (s *Server) handleApproveEK(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req approveRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	fp := strings.TrimSpace(req.Fingerprint)
	if !strings.Contains(fp, ":") {
		fp = "sha256:" + fp // as sha256sum prints it
	}
	fp, ok := raftstore.CanonicalFingerprint(fp)
	if !ok {
		return badRequest("fingerprint: not sha256:<64 hex>: %q", req.Fingerprint)
	}
	if len(req.Comment) > maxAdminText {
		return badRequest("comment: longer than %d characters", maxAdminText)
	}
	if _, err := s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdApproveEK, Time: time.Now().UnixNano(),
		EK: &api.ApprovedEK{Fingerprint: fp, Comment: req.Comment, ApprovedBy: c.user.Name}, Actor: c.user.Name}); err != nil {
		return err
	}
	s.log.Info("EK approved", "by", c.user.Name, "ek", fp)
	ek := s.store().Snapshot().ApprovedEK(fp)
	if ek == nil {
		return errorf(http.StatusServiceUnavailable, "approval of %s not visible yet; retry", fp)
	}
	writeJSON(w, http.StatusOK, ek)
	return nil
}

// handleRevokeNode evicts a node at an admin's request and revokes its
// certificate.
func (s *Server) handleRevokeNode(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req revokeRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := pki.ValidName(req.Node); err != nil {
		return badRequest("node: %s", err)
	}
	if len(req.Reason) > maxAdminText {
		return badRequest("reason: longer than %d characters", maxAdminText)
	}
	var extra string
	if req.Serial != "" {
		var ok bool
		if extra, ok = raftstore.CanonicalSerial(req.Serial); !ok {
			return badRequest("serial: not hex: %q", req.Serial)
		}
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" {
		reason = defaultRevokeReason
	}
	unlock := s.attestLocks.lock(req.Node)
	defer unlock()
	n := s.store().Snapshot().Node(req.Node)
	if n == nil {
		return errorf(http.StatusNotFound, "node: unknown node %s", req.Node)
	}
	var serials []string
	for _, sn := range []string{n.CertSerial, extra} {
		if sn != "" && (len(serials) == 0 || serials[0] != sn) {
			serials = append(serials, sn)
		}
	}
	// The eviction revokes the node's current certificate too; the
	// explicit revocation covers one it does not know.
	if _, err := s.evict(r.Context(), req.Node, codeRevokedByAdmin, reason, c.user.Name); err != nil {
		return err
	}
	if len(serials) > 0 {
		if _, err := s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdRevokeCert, Time: time.Now().UnixNano(),
			Serials: serials, Reason: reason, Actor: c.user.Name}); err != nil {
			return err
		}
	}
	s.log.Info("node revoked", "by", c.user.Name, "node", req.Node, "serials", serials)
	writeJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (s *Server) handleAttestLog(w http.ResponseWriter, r *http.Request, _ *caller) error {
	name := r.PathValue("name")
	n := s.store().Snapshot().Node(name)
	l := s.attest.log(name)
	if n == nil && l == nil {
		return errorf(http.StatusNotFound, "node: unknown node %s", name)
	}
	resp := attestLogResponse{Node: name, Entries: []attestLogEntry{}}
	if n != nil {
		resp.LastQuote = n.LastQuote
	}
	if l != nil {
		resp.QuotedAt, resp.Code, resp.Entries = l.at, l.code, l.entries
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}
