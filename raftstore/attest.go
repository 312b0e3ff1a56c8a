package raftstore

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/policy"
)

// Errors of the attestation commands. They guard against verdicts that
// went stale between the verifier's decision and the commit.
var (
	ErrEKNotApproved = errors.New("EK is not on the approved list")
	ErrEKChanged     = errors.New("EK differs from the one the node was admitted with")
	ErrCertRevoked   = errors.New("certificate serial is revoked")
)

// attestDrainPrefix starts the drain reason set by a failed attestation; a
// later successful attestation lifts only such drains, never an admin's.
const attestDrainPrefix = "attestation failed: "

// maxAuditText bounds free text in audit records: refusals come from
// unauthenticated peers and must not grow the log at their will.
const maxAuditText = 512

func clipText(s string) string {
	if len(s) <= maxAuditText {
		return s
	}
	return strings.ToValidUTF8(s[:maxAuditText], "") + "..."
}

// CanonicalSerial returns a certificate serial in the form the state keeps:
// lowercase hex without colons or leading zeros, as big.Int.Text(16) prints
// it. ok is false when s is not hex.
func CanonicalSerial(s string) (string, bool) {
	s = strings.ReplaceAll(strings.ToLower(s), ":", "")
	if s == "" || len(s) > 128 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isDigit(c) && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	if t := strings.TrimLeft(s, "0"); t != "" {
		return t, true
	}
	return "0", true
}

// CanonicalFingerprint returns an EK fingerprint as "sha256:<lowercase
// hex>". ok is false when fp is not one.
func CanonicalFingerprint(fp string) (string, bool) {
	h, ok := strings.CutPrefix(strings.ToLower(fp), "sha256:")
	if !ok || len(h) != 64 {
		return "", false
	}
	for i := 0; i < len(h); i++ {
		if c := h[i]; !isDigit(c) && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return "sha256:" + h, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// trusted reports whether a trust level came from TPM evidence.
func trusted(t api.Trust) bool { return t == api.TrustAttested || t == api.TrustApproved }

func validRequireTrust(t api.Trust) bool {
	switch t {
	case "", api.TrustNone, api.TrustApproved, api.TrustAttested:
		return true
	}
	return false
}

// audit appends a record. Seq is a counter rather than the Raft index
// because one command may write several records (TOFU, revocations).
func (a *applier) audit(r api.AuditRecord) {
	raw, err := a.txn.Last(tAudit, iID)
	must(err)
	r.Seq = 1
	if raw != nil {
		r.Seq = raw.(*api.AuditRecord).Seq + 1
	}
	r.Index = a.index
	r.Reason = clipText(r.Reason)
	r.Code = clipText(r.Code)
	r.Node = clipText(r.Node)
	r.EKFingerprint = clipText(r.EKFingerprint)
	must(a.txn.Insert(tAudit, &r))
}

// policy returns the stored policy (nil when none was set). Do not modify.
func (a *applier) policy() *policy.Policy {
	raw, err := a.txn.First(tPolicy, iID, policyKey)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*policy.Policy)
}

func (a *applier) approvedEK(fp string) *api.ApprovedEK {
	raw, err := a.txn.First(tApprovedEKs, iID, fp)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*api.ApprovedEK)
}

func (a *applier) revoked(serial string) bool {
	raw, err := a.txn.First(tRevoked, iID, serial)
	must(err)
	return raw != nil
}

// setPolicy stores a new cluster policy under the next version.
func (a *applier) setPolicy(cmd *Command) any {
	if cmd.Policy == nil {
		return invalid("set policy without a policy")
	}
	q := cmd.Policy.Clone()
	if err := q.Normalize(); err != nil {
		return invalid("policy: %v", err)
	}
	q.Version = 1
	if old := a.policy(); old != nil {
		q.Version = old.Version + 1
	}
	must(a.txn.Insert(tPolicy, q))
	reason := fmt.Sprintf("version %d", q.Version)
	if cmd.Reason != "" {
		reason += ": " + cmd.Reason
	}
	a.audit(api.AuditRecord{Time: cmdTime(cmd), Kind: api.AuditPolicyChanged, Reason: reason, Actor: cmd.Actor})
	return q.Clone()
}

// recordTOFU pins first-seen PCR values. Only evidence judged against the
// current policy version may pin, and every pin bumps the version, so two
// nodes that boot at once cannot both pin (different) values: the second
// gets Stale and must be judged again against the first one's values.
func (a *applier) recordTOFU(cmd *Command) any {
	if len(cmd.NodeNames) == 0 || cmd.NodeNames[0] == "" || len(cmd.TOFU) == 0 {
		return invalid("TOFU record needs a node and values")
	}
	p := a.policy()
	if p == nil {
		p = policy.Default()
	}
	res := &TOFUResult{Version: p.Version}
	if p.Version != cmd.PolicyVersion || !p.TrustOnFirstUse {
		res.Stale = true
		return res
	}
	q := p.Clone()
	for _, pcr := range slices.Sorted(maps.Keys(cmd.TOFU)) {
		if !slices.Contains(q.PCRs, pcr) || pcr == q.AgentPCR || len(q.Golden[pcr]) > 0 {
			continue
		}
		q.Golden[pcr] = []string{cmd.TOFU[pcr]}
		res.Recorded = append(res.Recorded, pcr)
	}
	if len(res.Recorded) == 0 {
		return res
	}
	if err := q.Normalize(); err != nil {
		return invalid("TOFU values: %v", err)
	}
	q.Version++
	must(a.txn.Insert(tPolicy, q))
	res.Version = q.Version
	now := cmdTime(cmd)
	for _, pcr := range res.Recorded {
		a.audit(api.AuditRecord{Time: now, Node: cmd.NodeNames[0], Kind: api.AuditTOFURecorded,
			Reason: fmt.Sprintf("PCR %d = %s (policy version %d)", pcr, q.Golden[pcr][0], q.Version), Actor: cmd.Actor})
	}
	return res
}

func (a *applier) approveEK(cmd *Command) any {
	if cmd.EK == nil {
		return invalid("approve EK without an EK")
	}
	fp, ok := CanonicalFingerprint(cmd.EK.Fingerprint)
	if !ok {
		return invalid("EK fingerprint %q is not sha256:<64 hex>", cmd.EK.Fingerprint)
	}
	by := cmd.EK.ApprovedBy
	if by == "" {
		by = cmd.Actor
	}
	ek := &api.ApprovedEK{Fingerprint: fp, Comment: cmd.EK.Comment, ApprovedBy: by, Time: cmdTime(cmd)}
	must(a.txn.Insert(tApprovedEKs, ek))
	a.audit(api.AuditRecord{Time: ek.Time, Kind: api.AuditEKApproved, Reason: ek.Comment, Actor: by, EKFingerprint: fp})
	return nil
}

// revokeEKApproval removes an EK from the list and at once evicts the nodes
// admitted on that approval: waiting for their next attestation would let
// a TPM the admin no longer vouches for run jobs meanwhile.
func (a *applier) revokeEKApproval(cmd *Command) any {
	if cmd.EK == nil {
		return invalid("revoke EK approval without an EK")
	}
	fp, ok := CanonicalFingerprint(cmd.EK.Fingerprint)
	if !ok {
		return invalid("EK fingerprint %q is not sha256:<64 hex>", cmd.EK.Fingerprint)
	}
	res := &NodesDownResult{}
	if a.approvedEK(fp) == nil {
		return res
	}
	_, err := a.txn.DeleteAll(tApprovedEKs, iID, fp)
	must(err)
	now := cmdTime(cmd)
	a.audit(api.AuditRecord{Time: now, Kind: api.AuditRevoked, Code: "ek-approval-revoked",
		Reason: cmd.Reason, Actor: cmd.Actor, EKFingerprint: fp})

	// Names only: evicting one node frees its jobs' other nodes, so each
	// record is read again just before it is rewritten.
	var hit []string
	it, err := a.txn.Get(tNodes, iID)
	must(err)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if n := raw.(*api.Node); n.Trust == api.TrustApproved && n.EKFingerprint == fp {
			hit = append(hit, n.Name)
		}
	}
	kill := false
	if p := a.policy(); p != nil {
		kill = p.OnFailure == policy.OnFailureKill
	}
	for _, name := range hit {
		r := a.evict(a.node(name), "ek-not-approved", "EK approval revoked", kill, now, cmd.Actor)
		res.Requeued = append(res.Requeued, r.Requeued...)
		res.Failed = append(res.Failed, r.Failed...)
	}
	return res
}

// nodeAttested records a good verdict. A node not known yet is created in
// state UNKNOWN: its agent registers its inventory afterwards.
func (a *applier) nodeAttested(cmd *Command) any {
	at := cmd.Attest
	if at == nil || at.Node == "" {
		return invalid("attestation needs a node")
	}
	if !trusted(at.Trust) {
		return invalid("attested trust must be %s or %s, not %q", api.TrustAttested, api.TrustApproved, at.Trust)
	}
	fp, ok := CanonicalFingerprint(at.EKFingerprint)
	if !ok {
		return invalid("EK fingerprint %q is not sha256:<64 hex>", at.EKFingerprint)
	}
	serial := ""
	if at.CertSerial != "" {
		if serial, ok = CanonicalSerial(at.CertSerial); !ok {
			return invalid("certificate serial %q is not hex", at.CertSerial)
		}
		if a.revoked(serial) {
			return fmt.Errorf("%w: %s", ErrCertRevoked, serial)
		}
	}
	// Re-checked here because the approval may have been revoked after the
	// verifier looked.
	if at.Trust == api.TrustApproved && a.approvedEK(fp) == nil {
		return fmt.Errorf("%w: %s", ErrEKNotApproved, fp)
	}
	old := a.node(at.Node)
	c := api.Node{Name: at.Node, State: api.NodeUnknown}
	if old != nil {
		c = *old
	}
	wasTrusted := old != nil && trusted(old.Trust)
	// A renewal proves the same TPM is still there; another EK under the
	// same name is a new enrollment at best and an impostor at worst.
	if at.Renewal && wasTrusted && old.EKFingerprint != fp {
		return fmt.Errorf("%w: node %s has %s, got %s", ErrEKChanged, at.Node, old.EKFingerprint, fp)
	}
	c.Trust, c.EKFingerprint, c.AttestError = at.Trust, fp, ""
	c.LastQuote = cmdTime(cmd)
	if serial != "" {
		c.CertSerial = serial
	}
	if !at.Renewal || len(at.AKPublic) > 0 {
		c.AKPublic = at.AKPublic
	}
	if c.Drain && strings.HasPrefix(c.Reason, attestDrainPrefix) {
		c.Drain, c.Reason = false, ""
	}
	a.putNode(&c)

	rec := api.AuditRecord{Time: c.LastQuote, Node: c.Name, Code: string(c.Trust), Actor: cmd.Actor,
		EKFingerprint: fp, Serial: c.CertSerial}
	switch {
	case !at.Renewal || !wasTrusted:
		rec.Kind = api.AuditAdmitted
		if old != nil && old.EKFingerprint != "" && old.EKFingerprint != fp {
			rec.Reason = "EK changed from " + old.EKFingerprint
		}
	case c.Trust != old.Trust:
		// Renewals happen every interval on every node, each with a new
		// certificate; auditing them would bury everything else. Only a
		// change of trust tier is worth a record.
		rec.Kind = api.AuditRenewed
	default:
		return &c
	}
	a.audit(rec)
	return &c
}

// attestFailed takes a node out of service after a failed attestation.
func (a *applier) attestFailed(cmd *Command) any {
	at := cmd.Attest
	if at == nil || at.Node == "" {
		return invalid("attestation failure needs a node")
	}
	n := a.node(at.Node)
	if n == nil {
		return fmt.Errorf("%w %q (use CmdRefused for enrollments)", ErrUnknownNode, at.Node)
	}
	reason := at.Reason
	if reason == "" {
		reason = at.Code
	}
	if reason == "" {
		reason = "unspecified"
	}
	return a.evict(n, at.Code, reason, cmd.Kill, cmdTime(cmd), cmd.Actor)
}

// evict drains a node whose trust is gone, revokes its certificate and
// ends or requeues its running jobs as a node failure does (all NODE_FAIL
// if kill).
func (a *applier) evict(n *api.Node, code, reason string, kill bool, now time.Time, actor string) *NodesDownResult {
	admitted := trusted(n.Trust) || !n.LastQuote.IsZero()
	// The verifier may report the same failure every interval: record it
	// once.
	repeat := !trusted(n.Trust) && n.Drain && n.AttestError == reason && n.CertSerial == ""
	c := *n
	c.Drain, c.Reason = true, attestDrainPrefix+reason
	c.Trust, c.AttestError = api.TrustNone, reason
	revoked := c.CertSerial
	if revoked != "" {
		a.revoke(revoked, c.Name, c.Reason, now)
		c.CertSerial = ""
	}
	a.putNode(&c)
	res := &NodesDownResult{}
	a.endJobs(c.Name, c.Reason, now, kill, res)
	if !repeat {
		kind := api.AuditEvicted
		if !admitted {
			kind = api.AuditRefused
		}
		a.audit(api.AuditRecord{Time: now, Node: c.Name, Kind: kind, Code: code, Reason: reason,
			Actor: actor, EKFingerprint: c.EKFingerprint, Serial: revoked})
	}
	return res
}

// refused records a refused enrollment. The node gets no record: a name
// alone must not make one appear in sinfo.
func (a *applier) refused(cmd *Command) any {
	at := cmd.Attest
	if at == nil || (at.Node == "" && at.EKFingerprint == "") {
		return invalid("refusal needs a node or an EK")
	}
	fp := at.EKFingerprint
	if c, ok := CanonicalFingerprint(fp); ok {
		fp = c
	}
	a.audit(api.AuditRecord{Time: cmdTime(cmd), Node: at.Node, Kind: api.AuditRefused, Code: at.Code,
		Reason: at.Reason, Actor: cmd.Actor, EKFingerprint: fp})
	return nil
}

// revokeCerts adds serials to the revoked set and returns those newly
// revoked. A node whose current certificate is revoked keeps its trust but
// no longer has a valid certificate.
func (a *applier) revokeCerts(cmd *Command) any {
	if len(cmd.Serials) == 0 {
		return invalid("revoke without serials")
	}
	serials := make([]string, len(cmd.Serials))
	for i, s := range cmd.Serials {
		c, ok := CanonicalSerial(s)
		if !ok {
			return invalid("certificate serial %q is not hex", s)
		}
		serials[i] = c
	}
	now := cmdTime(cmd)
	out := []string{}
	for _, s := range serials {
		if a.revoked(s) {
			continue
		}
		node := ""
		raw, err := a.txn.First(tNodes, iSerial, s)
		must(err)
		if raw != nil {
			c := *raw.(*api.Node)
			node, c.CertSerial = c.Name, ""
			a.putNode(&c)
		}
		a.revoke(s, node, cmd.Reason, now)
		a.audit(api.AuditRecord{Time: now, Node: node, Kind: api.AuditRevoked, Code: "cert-revoked",
			Reason: cmd.Reason, Actor: cmd.Actor, Serial: s})
		out = append(out, s)
	}
	return out
}

// revoke adds a canonical serial to the revoked set. Entries are never
// pruned: agent certificates are issued for the CA's lifetime today, so no
// entry can be known to have expired.
func (a *applier) revoke(serial, node, reason string, now time.Time) {
	if a.revoked(serial) {
		return
	}
	must(a.txn.Insert(tRevoked, &api.RevokedCert{Serial: serial, Time: now, Node: node, Reason: clipText(reason)}))
}
