package server

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/policy"
	"github.com/stockade-hpc/stockade/raftstore"
)

// maxAttestLogs bounds the event logs kept for nodes the state does not
// know (refused enrollments).
const maxAttestLogs = 10000

// handleEnroll is the registrar's first step: an agent names itself and
// shows its EK and AK; if the EK is trusted it gets a credential only its
// TPM can activate and a nonce for its first quote.
func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request, _ *caller) error {
	var req attest.EnrollRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	e, err := checkEnroll(&req)
	if err != nil {
		return err
	}
	snap := s.store().Snapshot()
	trust, code, reason := ekTrust(snap, req.Identity, e.ekPub, e.ekFP, s.tpmRoots)
	if code != "" {
		return s.refuse(r, req.Name, e.ekFP, code, reason)
	}
	if n := snap.Node(req.Name); trustedNode(n) && n.EKFingerprint != e.ekFP {
		return s.refuse(r, req.Name, e.ekFP, codeEKChanged, "node "+req.Name+" was admitted with EK "+n.EKFingerprint)
	}
	if n := revokedByAdmin(snap, req.Name, e.ekFP); n != nil {
		return s.refuse(r, req.Name, e.ekFP, codeRevokedByAdmin,
			"node "+n.Name+" (EK "+n.EKFingerprint+") was revoked by an administrator; resuming it allows enrollment again")
	}
	ch, secret, err := attest.NewChallenge(req.Identity)
	if err != nil {
		code := attest.FailureCode(err)
		if code == "" {
			return err
		}
		return s.refuse(r, req.Name, e.ekFP, code, err.Error())
	}
	sess := &enrollSession{name: req.Name, id: req.Identity, ekFP: e.ekFP, trust: trust,
		csrPub: e.csrPub, csrKey: e.csrKey, secret: secret, nonce: ch.Nonce}
	id, err := s.attest.addSession(sess, time.Now())
	if errors.Is(err, errTooManySessions) {
		return errorf(http.StatusServiceUnavailable, "%v; retry", err)
	}
	if err != nil {
		return err
	}
	s.log.Info("enrollment challenge sent", "node", req.Name, "ek", e.ekFP, "trust", trust, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, attest.EnrollResponse{Session: id, Challenge: ch})
	return nil
}

// enrollment is what checkEnroll extracts from a request.
type enrollment struct {
	ekPub  crypto.PublicKey
	ekFP   string
	csrPub crypto.PublicKey
	csrKey []byte
}

// checkEnroll is handleEnroll's validation of the request's form.
func checkEnroll(req *attest.EnrollRequest) (*enrollment, error) {
	if err := pki.ValidName(req.Name); err != nil {
		return nil, badRequest("name: %s", err)
	}
	csr, err := pki.ParseCSR(req.CSR)
	if err != nil {
		return nil, badRequest("%s", err)
	}
	key, err := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if err != nil {
		return nil, badRequest("csr: %v", err)
	}
	if req.Identity == nil {
		return nil, badRequest("identity: required")
	}
	ek, err := x509.ParsePKIXPublicKey(req.Identity.EKPublic)
	if err != nil {
		return nil, badRequest("identity.ek_public: not a PKIX public key: %v", err)
	}
	fp := attest.EKFingerprint(ek)
	if fp == "" {
		return nil, badRequest("identity.ek_public: unsupported key type %T", ek)
	}
	if len(req.Identity.AK.Public) == 0 {
		return nil, badRequest("identity.ak: required")
	}
	return &enrollment{ekPub: ek, ekFP: fp, csrPub: csr.PublicKey, csrKey: key}, nil
}

// revokedByAdmin returns the node an admin revoked that has name or the
// EK fp and is still drained. A revocation must outlast the next
// enrollment, which would otherwise readmit the node (a successful
// attestation lifts attestation drains); the admin's resume lifts it.
func revokedByAdmin(snap *raftstore.Snapshot, name, fp string) *api.Node {
	revoked := func(n *api.Node) bool {
		return n != nil && n.Drain && !trustedNode(n) && strings.HasPrefix(n.AttestError, codeRevokedByAdmin)
	}
	if n := snap.Node(name); revoked(n) {
		return n
	}
	for _, n := range snap.Nodes() {
		if n.EKFingerprint == fp && revoked(n) {
			return n
		}
	}
	return nil
}

// ekTrust decides whether an EK is trusted: attested when its certificate
// chains to a TPM manufacturer CA, approved when an admin listed it. An
// admin's approval also covers an EK whose certificate does not verify
// (a vendor CA missing from the bundle). code is set when neither holds.
func ekTrust(snap *raftstore.Snapshot, id *attest.Identity, ekPub crypto.PublicKey, fp string, roots *x509.CertPool) (trust api.Trust, code, reason string) {
	var certErr error
	if len(id.EKCert) > 0 {
		if certErr = attest.VerifyEKCertificate(id.EKCert, ekPub, roots, nil); certErr == nil {
			return api.TrustAttested, "", ""
		}
	}
	if snap.ApprovedEK(fp) != nil {
		return api.TrustApproved, "", ""
	}
	if certErr != nil {
		return "", codeEKUntrusted, certErr.Error()
	}
	return "", codeEKUntrusted, "no EK certificate, and EK " + fp + " is not on the approved list"
}

// handleActivate is the registrar's second step: the recovered secret
// proves the AK lives in the TPM of the EK; the first quote, bound to the
// requested certificate's key, must satisfy the policy.
func (s *Server) handleActivate(w http.ResponseWriter, r *http.Request, _ *caller) error {
	var req attest.ActivateRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	switch {
	case req.Session == "":
		return badRequest("session: required")
	case req.Quote == nil:
		return badRequest("quote: required")
	}
	sess := s.attest.takeSession(req.Session, time.Now())
	if sess == nil {
		return errorf(http.StatusConflict, "%s: no such enrollment session (sessions last %s, allow one activation and die with a change of leader); enroll again",
			codeSessionUnknown, sessionTTL)
	}
	if err := attest.CheckActivation(sess.secret, req.Secret); err != nil {
		return s.refuse(r, sess.name, sess.ekFP, codeAKNotActivated, err.Error())
	}
	p := s.store().Snapshot().Policy()
	ev, err := s.verifier.VerifyQuote(sess.id.AK.Public, req.Quote, attest.BindNonce(sess.nonce, sess.csrKey), p.PCRs, p.Bank)
	unlock := s.attestLocks.lock(sess.name)
	defer unlock()
	if n := s.store().Snapshot().Node(sess.name); trustedNode(n) && n.EKFingerprint != sess.ekFP {
		// Another TPM enrolled under this name since the challenge; checked
		// before judging, so that this one pins no values on first use.
		return s.refuse(r, sess.name, sess.ekFP, codeEKChanged, "node "+sess.name+" was admitted with EK "+n.EKFingerprint)
	}
	if err != nil {
		return s.refuseActivated(r, sess, quoteCode(err), err.Error())
	}
	d, err := s.judge(r.Context(), sess.name, ev)
	if err != nil {
		return err
	}
	s.keepLog(sess.name, ev, d)
	if !d.OK {
		return s.refuseActivated(r, sess, d.Code, d.Reason)
	}
	p = s.store().Snapshot().Policy()
	cert, certPEM, err := s.ca.IssueAgentFor(sess.name, sess.csrPub, certTTL(p))
	if err != nil {
		return err
	}
	serial := cert.SerialNumber.Text(16)
	_, err = s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdNodeAttested, Time: time.Now().UnixNano(),
		Attest: &raftstore.NodeAttestation{Node: sess.name, Trust: sess.trust, EKFingerprint: sess.ekFP,
			CertSerial: serial, AKPublic: sess.id.AK.Public}})
	if errors.Is(err, raftstore.ErrEKNotApproved) {
		return s.refuse(r, sess.name, sess.ekFP, codeEKNotApproved, "the EK's approval was revoked during enrollment")
	}
	if err != nil {
		return err
	}
	s.markSeen(sess.name)
	s.log.Info("node admitted", "node", sess.name, "trust", sess.trust, "ek", sess.ekFP, "serial", serial,
		"agent", d.AgentDigest, "expires", cert.NotAfter)
	writeJSON(w, http.StatusOK, api.JoinResponse{Certificate: certPEM, CACert: s.ca.CertPEM, AttestIntervalSec: p.IntervalSec})
	return nil
}

// refuseActivated refuses an enrollment whose TPM proved it holds the EK.
// If that EK is the one a trusted node of this name was admitted with, the
// node itself now fails the policy: it is evicted, not merely refused.
func (s *Server) refuseActivated(r *http.Request, sess *enrollSession, code, reason string) error {
	if n := s.store().Snapshot().Node(sess.name); trustedNode(n) && n.EKFingerprint == sess.ekFP {
		return s.evictNode(r.Context(), sess.name, code, reason, "")
	}
	return s.refuse(r, sess.name, sess.ekFP, code, reason)
}

// judge evaluates verified evidence against the current policy. Under
// trust on first use it pins the values seen first; every pin bumps the
// policy version, so if the pin went stale (or pinned only some values)
// the evidence is judged again against the policy that won.
func (s *Server) judge(ctx context.Context, node string, ev *policy.Evidence) (policy.Decision, error) {
	for range 5 {
		p := s.store().Snapshot().Policy()
		d := p.Evaluate(ev)
		if !d.OK || len(d.FirstSeen) == 0 {
			return d, nil
		}
		s.policyMu.Lock()
		res, err := s.node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdRecordTOFU, Time: time.Now().UnixNano(),
			NodeNames: []string{node}, TOFU: d.FirstSeen, PolicyVersion: p.Version})
		s.policyMu.Unlock()
		if err != nil {
			return d, err
		}
		if r, ok := res.(*raftstore.TOFUResult); ok && !r.Stale && coversAll(r.Recorded, d.FirstSeen) {
			s.log.Info("trust on first use: PCR values recorded", "node", node, "pcrs", r.Recorded, "policy_version", r.Version)
			return d, nil
		}
	}
	return policy.Decision{}, errorf(http.StatusServiceUnavailable, "the policy kept changing while judging node %s; retry", node)
}

func coversAll(recorded []int, seen map[int]string) bool {
	in := make(map[int]bool, len(recorded))
	for _, p := range recorded {
		in[p] = true
	}
	for p := range seen {
		if !in[p] {
			return false
		}
	}
	return true
}

// keepLog remembers the measurements of a verified quote for the
// attest-log route.
func (s *Server) keepLog(node string, ev *policy.Evidence, d policy.Decision) {
	if s.attest.log(node) == nil && s.store().Snapshot().Node(node) == nil {
		s.attest.mu.Lock()
		full := len(s.attest.logs) >= maxAttestLogs
		s.attest.mu.Unlock()
		if full {
			return
		}
	}
	s.attest.setLog(node, &attestLog{at: time.Now(), code: d.Code, entries: logEntries(ev.Measurements)})
}

// refuse audits a refused enrollment (rate-limited: the peer is not
// authenticated) and returns the 403 answer.
func (s *Server) refuse(r *http.Request, node, ekFP, code, reason string) error {
	text := refusalText(code, reason)
	s.log.Warn("attestation refused", "node", node, "ek", ekFP, "code", code, "reason", text, "remote", r.RemoteAddr)
	if s.attest.refusals.allow(node+"\x00"+ekFP+"\x00"+code, time.Now()) {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		defer cancel()
		_, err := s.node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdRefused, Time: time.Now().UnixNano(),
			Attest: &raftstore.NodeAttestation{Node: node, EKFingerprint: ekFP, Code: code, Reason: text}})
		if err != nil {
			s.log.Warn("auditing a refusal", "node", node, "code", code, "err", err)
		}
	}
	return errorf(http.StatusForbidden, "%s", text)
}

// quoteCode is the stable code of a quote verification failure.
func quoteCode(err error) string {
	if c := attest.FailureCode(err); c != "" {
		return c
	}
	return codeQuoteInvalid
}

// certTTL is the lifetime of the certificates attestation issues.
func certTTL(p *policy.Policy) time.Duration {
	if p.CertTTLSec <= 0 {
		return policy.DefaultCertTTLSec * time.Second
	}
	return time.Duration(p.CertTTLSec) * time.Second
}
