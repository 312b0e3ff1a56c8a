package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/policy"
	"github.com/stockade-hpc/stockade/raftstore"
)

// handleAttestNonce gives an admitted node a fresh single-use nonce for
// its next quote.
func (s *Server) handleAttestNonce(w http.ResponseWriter, r *http.Request, c *caller) error {
	if r.ContentLength != 0 {
		var empty struct{}
		if err := decodeJSON(w, r, &empty); err != nil {
			return err
		}
	}
	snap := s.store().Snapshot()
	n := snap.Node(c.node)
	if !trustedNode(n) {
		return notAttested(c.node, n)
	}
	ttl := max(time.Duration(snap.Policy().IntervalSec)*time.Second, minNonceTTL)
	nonce, err := s.attest.newNonce(c.node, time.Now(), ttl)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, attest.NonceResponse{Nonce: nonce})
	return nil
}

func notAttested(name string, n *api.Node) error {
	trust := api.TrustNone
	if n != nil && n.Trust != "" {
		trust = n.Trust
	}
	return errorf(http.StatusForbidden, "%s: node %s is not admitted by attestation (trust %s); enroll", codeNotAttested, name, trust)
}

// handleAttestQuote is the verifier: an admitted node's quote over our
// nonce, bound to the key of its next certificate, renews its certificate
// or evicts it.
func (s *Server) handleAttestQuote(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req attest.QuoteRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	switch {
	case len(req.Nonce) == 0:
		return badRequest("nonce: required")
	case req.Quote == nil:
		return badRequest("quote: required")
	}
	csr, err := pki.ParseCSR(req.CSR)
	if err != nil {
		return badRequest("%s", err)
	}
	csrKey, err := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if err != nil {
		return badRequest("csr: %v", err)
	}
	// A bad nonce says nothing about the node's state (a retried request,
	// a change of leader): it is refused without eviction, and the node
	// asks for a new one.
	switch code := s.attest.useNonce(c.node, req.Nonce, time.Now()); code {
	case codeNonceReplayed:
		s.refuse(r, c.node, "", code, "a nonce was used twice")
		return errorf(http.StatusConflict, "%s: nonce already used; ask for a new one", code)
	case codeNonceUnknown:
		return errorf(http.StatusConflict, "%s: nonce not issued to node %s by this leader, or expired; ask for a new one", code, c.node)
	}

	unlock := s.attestLocks.lock(c.node)
	defer unlock()
	snap := s.store().Snapshot()
	n := snap.Node(c.node)
	if !trustedNode(n) || len(n.AKPublic) == 0 {
		return notAttested(c.node, n)
	}
	if n.CertSerial != c.serial {
		// Checked again under the lock: a concurrent quote renewed it.
		return errorf(http.StatusUnauthorized, "%s: certificate %s is not node %s's current one", codeCertSuperseded, c.serial, c.node)
	}
	p := snap.Policy()
	ev, err := s.verifier.VerifyQuote(n.AKPublic, req.Quote, attest.BindNonce(req.Nonce, csrKey), p.PCRs, p.Bank)
	if err != nil {
		return s.evictNode(r.Context(), c.node, quoteCode(err), err.Error(), "")
	}
	d, err := s.judge(r.Context(), c.node, ev)
	if err != nil {
		return err
	}
	s.keepLog(c.node, ev, d)
	if !d.OK {
		return s.evictNode(r.Context(), c.node, d.Code, d.Reason, "")
	}
	p = s.store().Snapshot().Policy()
	cert, certPEM, err := s.ca.IssueAgentFor(c.node, csr.PublicKey, certTTL(p))
	if err != nil {
		return err
	}
	serial := cert.SerialNumber.Text(16)
	_, err = s.node.Apply(r.Context(), &raftstore.Command{Type: raftstore.CmdNodeAttested, Time: time.Now().UnixNano(),
		Attest: &raftstore.NodeAttestation{Node: c.node, Trust: n.Trust, EKFingerprint: n.EKFingerprint,
			CertSerial: serial, Renewal: true}})
	switch {
	case errors.Is(err, raftstore.ErrEKNotApproved):
		return s.evictNode(r.Context(), c.node, codeEKNotApproved, "the EK is no longer on the approved list", "")
	case errors.Is(err, raftstore.ErrEKChanged):
		return s.evictNode(r.Context(), c.node, codeEKChanged, err.Error(), "")
	case err != nil:
		return err
	}
	s.log.Debug("node attested", "node", c.node, "serial", serial, "expires", cert.NotAfter)
	writeJSON(w, http.StatusOK, api.JoinResponse{Certificate: certPEM, CACert: s.ca.CertPEM, AttestIntervalSec: p.IntervalSec})
	return nil
}

// evictNode takes a node out of service after a failed attestation and
// returns the 403 answer. Callers hold the node's attestation lock.
func (s *Server) evictNode(ctx context.Context, node, code, reason, actor string) error {
	text, err := s.evict(ctx, node, code, reason, actor)
	if err != nil {
		return err
	}
	return errorf(http.StatusForbidden, "%s", text)
}

// evict applies CmdAttestFailed: the node is drained, its certificate
// revoked, its jobs requeued or killed as the policy says. It returns the
// reason given, or why the eviction could not be committed.
func (s *Server) evict(ctx context.Context, node, code, reason, actor string) (string, error) {
	text := refusalText(code, reason)
	kill := s.store().Snapshot().Policy().OnFailure == policy.OnFailureKill
	s.attest.dropNonces(node)
	res, err := s.node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdAttestFailed, Time: time.Now().UnixNano(),
		Attest: &raftstore.NodeAttestation{Node: node, Code: code, Reason: text}, Kill: kill, Actor: actor})
	if err != nil {
		// Not evicted: the node stays as it was and is judged again.
		s.log.Error("evicting a node", "node", node, "code", code, "err", err)
		return "", err
	}
	args := []any{"node", node, "code", code, "reason", text, "kill", kill}
	if r, ok := res.(*raftstore.NodesDownResult); ok {
		args = append(args, "requeued", len(r.Requeued), "failed", len(r.Failed))
	}
	if actor != "" {
		args = append(args, "by", actor)
	}
	s.log.Warn("node evicted", args...)
	return text, nil
}

// attestLoop is the verifier's clock: it evicts admitted nodes that stop
// quoting, and expires sessions and nonces.
func (s *Server) attestLoop(ctx context.Context) {
	t := time.NewTicker(attestTick)
	defer t.Stop()
	var interval time.Duration
	var intervalSince time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		s.attest.expire(now)
		snap := s.store().Snapshot()
		iv := time.Duration(snap.Policy().IntervalSec) * time.Second
		if iv != interval {
			// Nodes quote on the old interval until they notice the new one.
			interval, intervalSince = iv, now
		}
		since := s.attest.leadingSince()
		if intervalSince.After(since) {
			since = intervalSince
		}
		for _, n := range snap.Nodes() {
			if trustedNode(n) && !now.Before(quoteDeadline(n.LastQuote, since, interval)) {
				s.quoteMissed(ctx, n.Name, since, interval)
			}
		}
	}
}

// quoteMissed evicts a node whose quote is overdue, after checking again
// under its lock (a quote may have just renewed it).
func (s *Server) quoteMissed(ctx context.Context, name string, since time.Time, interval time.Duration) {
	unlock := s.attestLocks.lock(name)
	defer unlock()
	n := s.store().Snapshot().Node(name)
	if !trustedNode(n) || time.Now().Before(quoteDeadline(n.LastQuote, since, interval)) {
		return
	}
	reason := fmt.Sprintf("no quote since %s (interval %s)", n.LastQuote.UTC().Format(time.RFC3339), interval)
	s.evict(ctx, name, codeQuoteMissed, reason, "") // logs either way
}
