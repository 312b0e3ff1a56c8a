package tests

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/attest/attesttest"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/internal/testcluster"
	"github.com/stockade-hpc/stockade/policy"
)

// Wire shapes of POST /v1/attest/enroll and /v1/attest/activate, as an
// agent (or whoever pretends to be one) sends them.
type (
	attackEnrollRequest struct {
		Name     string           `json:"name"`
		Identity *attest.Identity `json:"identity"`
		CSR      []byte           `json:"csr"`
	}
	attackEnrollResponse struct {
		Session   string            `json:"session"`
		Challenge *attest.Challenge `json:"challenge"`
	}
	attackActivateRequest struct {
		Session string        `json:"session"`
		Secret  []byte        `json:"secret"`
		Quote   *attest.Quote `json:"quote"`
	}
)

// evilTPM is a real swtpm the test drives itself through the attest
// library: the agent binary measured into its PCR with an event log, an
// AK, and the identity it would enroll with.
type evilTPM struct {
	tpm    *attest.TPM
	log    *attest.EventLog
	ag     *attest.Agent
	id     *attest.Identity
	binary string // the measured "agent binary"
}

func startEvilTPM(t *testing.T, dir, caDir string) *evilTPM {
	t.Helper()
	sw := attesttest.StartSwtpmWith(t, dir, attesttest.SwtpmConfig{CADir: caDir})
	e := &evilTPM{log: attest.NewEventLog(), binary: filepath.Join(dir, "stockade-agent")}
	var err error
	if e.tpm, err = attest.Open(sw.Spec, e.log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.tpm.Close() })
	if err := os.WriteFile(e.binary, []byte("agent binary of "+dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := attest.MeasureAgent(e.tpm, e.log, policy.DefaultAgentPCR, e.binary, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	akDir := filepath.Join(dir, "agent")
	if err := os.MkdirAll(akDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if e.ag, err = attest.LoadOrCreateAK(e.tpm, akDir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ag.Close() })
	if e.id, err = e.ag.Identity(); err != nil {
		t.Fatal(err)
	}
	if len(e.id.EKCert) == 0 {
		t.Fatalf("swtpm in %s has no EK certificate", dir)
	}
	return e
}

func (e *evilTPM) ekFingerprint(t *testing.T) string {
	t.Helper()
	pub, err := x509.ParsePKIXPublicKey(e.id.EKPublic)
	if err != nil {
		t.Fatal(err)
	}
	return attest.EKFingerprint(pub)
}

func (e *evilTPM) activate(t *testing.T, ch *attest.Challenge) []byte {
	t.Helper()
	secret, err := e.ag.Activate(ch)
	if err != nil {
		t.Fatalf("activating a genuine credential: %v", err)
	}
	return secret
}

func (e *evilTPM) quote(t *testing.T, nonce []byte) *attest.Quote {
	t.Helper()
	q, err := e.ag.Quote(nonce, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// attacker speaks the enrollment protocol over HTTP to the real controller,
// with no credentials at all, as an agent does.
type attacker struct {
	cl *api.Client
}

// session is an open enrollment session and the key of its CSR.
type session struct {
	id     string
	ch     *attest.Challenge
	keyDER []byte
}

// enroll asks for a challenge; the step must succeed.
func (a *attacker) enroll(t *testing.T, name string, id *attest.Identity) *session {
	t.Helper()
	s, err := a.tryEnroll(t, name, id)
	if err != nil {
		t.Fatalf("enroll %s: %v", name, err)
	}
	return s
}

func (a *attacker) tryEnroll(t *testing.T, name string, id *attest.Identity) (*session, error) {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(key, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var er attackEnrollResponse
	if err := a.cl.Do(ctx, "POST", "/v1/attest/enroll", attackEnrollRequest{Name: name, Identity: id, CSR: csr}, &er); err != nil {
		return nil, err
	}
	if er.Session == "" || er.Challenge == nil {
		t.Fatalf("enroll %s: answer without session or challenge: %+v", name, er)
	}
	return &session{id: er.Session, ch: er.Challenge, keyDER: der}, nil
}

func (a *attacker) activate(s *session, secret []byte, q *attest.Quote) (*api.JoinResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var jr api.JoinResponse
	err := a.cl.Do(ctx, "POST", "/v1/attest/activate", attackActivateRequest{Session: s.id, Secret: secret, Quote: q}, &jr)
	return &jr, err
}

// encodeEventLog is an event log in the agent's format (attest.EventLog)
// with the given records: the header of an empty log, then one
// TCG_PCR_EVENT2 per entry.
func encodeEventLog(entries []attest.EventLogEntry) []byte {
	le := binary.LittleEndian
	b := attest.NewEventLog().Bytes()
	for _, e := range entries {
		b = le.AppendUint32(b, uint32(e.PCR))
		b = le.AppendUint32(b, e.Type)
		b = le.AppendUint32(b, 2)
		b = le.AppendUint16(b, 0x0004) // TPM_ALG_SHA1
		b = append(b, e.SHA1...)
		b = le.AppendUint16(b, 0x000b) // TPM_ALG_SHA256
		b = append(b, e.SHA256...)
		b = le.AppendUint32(b, uint32(len(e.Data)))
		b = append(b, e.Data...)
	}
	return b
}

// TestAttestAttacks plays a malicious agent against a real controller
// (started with --tpm-ca-bundle by testcluster) over HTTP, with real
// swtpms: two from the manufacturer the controller trusts (A and B) and
// one from another local CA (an unknown manufacturer). Each attack must be
// refused with its code, audited as a refusal with that code, and leave no
// usable node behind. A last, honest enrollment of A is admitted: the
// attacks failed for their flaw, not for a broken harness.
func TestAttestAttacks(t *testing.T) {
	began := time.Now()
	c := testcluster.StartClusterWith(t, testcluster.Options{Controllers: 1, TPMNodes: []string{"node1"}})
	clusterUp := time.Since(began)

	tpmsAt := time.Now()
	a := startEvilTPM(t, filepath.Join(c.Dir, "evil-a"), c.TPMCADir())
	b := startEvilTPM(t, filepath.Join(c.Dir, "evil-b"), c.TPMCADir())
	rogue := startEvilTPM(t, filepath.Join(c.Dir, "evil-rogue"), filepath.Join(c.Dir, "rogue-ca"))
	tpmsUp := time.Since(tpmsAt)
	t.Logf("controller and node1's swtpm up in %s; the attacker's 3 swtpms in %s",
		clusterUp.Round(100*time.Millisecond), tpmsUp.Round(100*time.Millisecond))

	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	ev := &attacker{cl: api.NewClient(c.APIAddrs(), "", &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13})}
	admin := c.Client("")

	tests := []struct {
		name   string
		node   string
		status int
		code   string
		// also, if set, must appear in the refusal's text
		detail string
		attack func(t *testing.T, node string) error
	}{
		{
			name: "EK certificate from an unknown CA", node: "evil-rogue-ca",
			status: 403, code: "ek-untrusted", detail: "not signed by a trusted TPM manufacturer CA",
			attack: func(t *testing.T, node string) error {
				_, err := ev.tryEnroll(t, node, rogue.id)
				return err
			},
		},
		{
			name: "EK certificate for a different key", node: "evil-ek-swap",
			status: 403, code: "ek-untrusted", detail: "different key",
			attack: func(t *testing.T, node string) error {
				id := *b.id
				id.EKCert = a.id.EKCert // A's genuine certificate, B's EK
				_, err := ev.tryEnroll(t, node, &id)
				return err
			},
		},
		{
			name: "AK not activated", node: "evil-ak-not-activated",
			status: 403, code: "ak-not-activated",
			attack: func(t *testing.T, node string) error {
				// A's trusted EK, but B's AK: the credential is for EK A and
				// AK B, which no TPM holds together.
				id := *a.id
				id.AK = b.id.AK
				s := ev.enroll(t, node, &id)
				if _, err := a.ag.Activate(s.ch); err == nil {
					t.Error("TPM A activated a credential made for B's AK")
				}
				if _, err := b.ag.Activate(s.ch); err == nil {
					t.Error("TPM B activated a credential made for A's EK")
				}
				// The best the attacker has: a genuine secret, obtained by TPM
				// B for a credential of its own.
				own := ev.enroll(t, node+"-b", b.id)
				secret := b.activate(t, own.ch)
				return ev.activateErr(s, secret, b.quote(t, attest.BindNonce(s.ch.Nonce, s.keyDER)))
			},
		},
		{
			name: "replayed nonce", node: "evil-replayed-nonce",
			status: 403, code: "nonce-mismatch",
			attack: func(t *testing.T, node string) error {
				old := ev.enroll(t, node, a.id)
				s := ev.enroll(t, node, a.id)
				secret := a.activate(t, s.ch)
				// The previous session's nonce, bound to this session's key.
				return ev.activateErr(s, secret, a.quote(t, attest.BindNonce(old.ch.Nonce, s.keyDER)))
			},
		},
		{
			name: "stale quote", node: "evil-stale-quote",
			status: 403, code: "nonce-mismatch",
			attack: func(t *testing.T, node string) error {
				old := ev.enroll(t, node, a.id)
				stale := a.quote(t, attest.BindNonce(old.ch.Nonce, old.keyDER)) // recorded earlier
				s := ev.enroll(t, node, a.id)
				return ev.activateErr(s, a.activate(t, s.ch), stale)
			},
		},
		{
			name: "quote bound to another TLS key", node: "evil-relayed-quote",
			status: 403, code: "nonce-mismatch",
			attack: func(t *testing.T, node string) error {
				s := ev.enroll(t, node, a.id)
				other := ev.enroll(t, node+"-victim", a.id) // the key of someone else's CSR
				return ev.activateErr(s, a.activate(t, s.ch), a.quote(t, attest.BindNonce(s.ch.Nonce, other.keyDER)))
			},
		},
		{
			name: "tampered PCR value", node: "evil-tampered-pcr",
			status: 403, code: "pcr-values-mismatch",
			attack: func(t *testing.T, node string) error {
				s := ev.enroll(t, node, a.id)
				q := a.quote(t, attest.BindNonce(s.ch.Nonce, s.keyDER))
				i := slices.IndexFunc(q.PCRs, func(p attest.PCR) bool { return p.Index == 0 && p.Bank == "sha256" })
				if i < 0 {
					t.Fatal("quote without PCR 0 in sha256")
				}
				q.PCRs[i].Digest = append([]byte(nil), q.PCRs[i].Digest...)
				q.PCRs[i].Digest[0] ^= 0xff
				return ev.activateErr(s, a.activate(t, s.ch), q)
			},
		},
		{
			name: "event log with an event dropped", node: "evil-log-dropped",
			status: 403, code: "event-log-replay",
			attack: func(t *testing.T, node string) error {
				s := ev.enroll(t, node, a.id)
				q := a.quote(t, attest.BindNonce(s.ch.Nonce, s.keyDER))
				entries := a.log.Entries()
				if len(entries) < 2 {
					t.Fatalf("A's event log has %d events", len(entries))
				}
				q.EventLog = encodeEventLog(entries[:len(entries)-1])
				return ev.activateErr(s, a.activate(t, s.ch), q)
			},
		},
		{
			name: "event log with an event altered", node: "evil-log-altered",
			status: 403, code: "event-log-replay",
			attack: func(t *testing.T, node string) error {
				s := ev.enroll(t, node, a.id)
				q := a.quote(t, attest.BindNonce(s.ch.Nonce, s.keyDER))
				entries := a.log.Entries()
				// Claim another agent binary was measured.
				other := []byte("the allowed agent binary")
				s1, s256 := sha1.Sum(other), sha256.Sum256(other)
				entries[0].SHA1, entries[0].SHA256 = s1[:], s256[:]
				q.EventLog = encodeEventLog(entries)
				return ev.activateErr(s, a.activate(t, s.ch), q)
			},
		},
		{
			name: "man in the middle swaps the AK", node: "evil-ak-swap",
			status: 403, code: "quote-signature",
			attack: func(t *testing.T, node string) error {
				// Enrolled and activated with A's AK; the quote is made with
				// B's, on the middle man's own TPM.
				s := ev.enroll(t, node, a.id)
				return ev.activateErr(s, a.activate(t, s.ch), b.quote(t, attest.BindNonce(s.ch.Nonce, s.keyDER)))
			},
		},
	}

	fps := []string{a.ekFingerprint(t), b.ekFingerprint(t), rogue.ekFingerprint(t)}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := tc.attack(t, tc.node)
			var he *api.HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("attack answered %v; want HTTP %d %s", err, tc.status, tc.code)
			}
			if he.Status != tc.status || !strings.HasPrefix(he.Message, tc.code) || !strings.Contains(he.Message, tc.detail) {
				t.Errorf("refused with %d %q; want %d %s (…%s)", he.Status, he.Message, tc.status, tc.code, tc.detail)
			}
			var refusal *api.AuditRecord
			for _, r := range attackAudit(t, admin, tc.node) {
				switch {
				case r.Node == tc.node && r.Kind == api.AuditRefused && r.Code == tc.code:
					refusal = &r
				case r.Kind == api.AuditAdmitted:
					t.Errorf("audit: %s admitted: %+v", tc.node, r)
				}
			}
			if refusal == nil {
				t.Errorf("no %s refusal of %s in the audit log", tc.code, tc.node)
			}
			checkNotAdmitted(t, admin, tc.node, fps)
			t.Logf("%d %s (%s)", he.Status, he.Message, time.Since(start).Round(time.Millisecond))
		})
	}

	// The control: the same TPM, honest, with its binary allowed, is
	// admitted; so each refusal above was for the attack alone.
	t.Run("honest enrollment of A", func(t *testing.T) {
		cli(t, c, "stockade", "attest", "policy", "add-digest", "--file", a.binary)
		s := ev.enroll(t, "honest-a", a.id)
		jr, err := ev.activate(s, a.activate(t, s.ch), a.quote(t, attest.BindNonce(s.ch.Nonce, s.keyDER)))
		if err != nil {
			t.Fatalf("honest enrollment: %v", err)
		}
		if len(jr.Certificate) == 0 {
			t.Fatalf("honest enrollment: no certificate: %+v", jr)
		}
		var nodes api.NodesResponse
		if err := admin.Do(context.Background(), "GET", "/v1/nodes", nil, &nodes); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(nodes.Nodes, func(n api.Node) bool { return n.Name == "honest-a" })
		if i < 0 || nodes.Nodes[i].Trust != api.TrustAttested || nodes.Nodes[i].EKFingerprint != fps[0] {
			t.Fatalf("honest-a after enrolling: %v", nodes.Nodes)
		}
	})
	for _, tc := range tests {
		checkNotAdmitted(t, admin, tc.node, nil)
	}
	t.Logf("timings: cluster %s, swtpms %s, whole test %s", clusterUp.Round(100*time.Millisecond),
		tpmsUp.Round(100*time.Millisecond), time.Since(began).Round(100*time.Millisecond))
}

// activateErr is activate's error; an admission is an error too.
func (a *attacker) activateErr(s *session, secret []byte, q *attest.Quote) error {
	jr, err := a.activate(s, secret, q)
	if err == nil {
		return fmt.Errorf("admitted: got a certificate of %d bytes", len(jr.Certificate))
	}
	return err
}

// attackAudit is GET /v1/audit?node=NODE.
func attackAudit(t *testing.T, admin *api.Client, node string) []api.AuditRecord {
	t.Helper()
	var recs []api.AuditRecord
	if err := admin.Do(context.Background(), "GET", "/v1/audit?node="+node, nil, &recs); err != nil {
		t.Fatalf("GET /v1/audit: %v", err)
	}
	return recs
}

// checkNotAdmitted fails unless GET /v1/nodes shows no node of that name
// trusted or usable, and no node trusted with one of the attacker's EKs
// (fps).
func checkNotAdmitted(t *testing.T, admin *api.Client, name string, fps []string) {
	t.Helper()
	var resp api.NodesResponse
	if err := admin.Do(context.Background(), "GET", "/v1/nodes", nil, &resp); err != nil {
		t.Fatalf("GET /v1/nodes: %v", err)
	}
	for _, n := range resp.Nodes {
		trusted := n.Trust == api.TrustAttested || n.Trust == api.TrustApproved
		if n.Name == name && (trusted || n.Usable()) {
			t.Errorf("node %s: trust %q, state %s, drain %v; want it absent or not trusted", n.Name, n.Trust, n.State, n.Drain)
		}
		if trusted && slices.Contains(fps, n.EKFingerprint) {
			t.Errorf("node %s is trusted (%s) with the attacker's EK %s", n.Name, n.Trust, n.EKFingerprint)
		}
	}
}
