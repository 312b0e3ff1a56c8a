package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/simulator"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/attest/attesttest"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/policy"
)

// simNode is an agent's attestation side on the go-tpm-tools simulator:
// the agent binary measured into its PCR, an AK, and the identity it
// enrolls with. The simulator is one per process: close a simNode before
// making the next, and never use it from parallel tests.
type simNode struct {
	t      *testing.T
	name   string
	tpm    *attest.TPM
	ag     *attest.Agent
	id     *attest.Identity
	ekPub  crypto.PublicKey
	digest string // the measured agent binary, sha256:<hex>
	closed bool
}

func newSimNode(t *testing.T, name string) *simNode {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatalf("TPM simulator: %v", err)
	}
	log := attest.NewEventLog()
	tpm, err := attest.OpenTransport(sim, log)
	if err != nil {
		sim.Close()
		t.Fatal(err)
	}
	n := &simNode{t: t, name: name, tpm: tpm}
	t.Cleanup(n.close)
	dir := t.TempDir()
	bin := filepath.Join(dir, "stockade")
	content := []byte("stockade agent for " + name)
	if err := os.WriteFile(bin, content, 0o700); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	n.digest = "sha256:" + hex.EncodeToString(sum[:])
	if err := attest.MeasureAgent(tpm, log, policy.DefaultAgentPCR, bin, []byte(`{"node":"`+name+`"}`)); err != nil {
		t.Fatal(err)
	}
	if n.ag, err = attest.LoadOrCreateAK(tpm, dir); err != nil {
		t.Fatal(err)
	}
	if n.id, err = n.ag.Identity(); err != nil {
		t.Fatal(err)
	}
	if n.ekPub, err = x509.ParsePKIXPublicKey(n.id.EKPublic); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *simNode) close() {
	if n.closed {
		return
	}
	n.closed = true
	n.ag.Close()
	n.tpm.Close() // and the simulator, for the next simNode
}

// withEKCert returns the node's identity with an EK certificate from ca,
// as a TPM whose vendor wrote one into NV would send it.
func (n *simNode) withEKCert(ca *attesttest.VerifierCA) *attest.Identity {
	id := *n.id
	id.EKCert = ca.IssueEKCert(n.t, n.ekPub, attesttest.VerifierEKCertOptions{})
	return &id
}

// agentCert is an agent's client with one certificate.
type agentCert struct {
	cl   *api.Client
	cert *x509.Certificate
}

func newAgentCert(t *testing.T, c *cluster, key *ecdsa.PrivateKey, jr *api.JoinResponse) *agentCert {
	t.Helper()
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	id, err := pki.NewIdentity(jr.Certificate, keyPEM, jr.CACert)
	if err != nil {
		t.Fatal(err)
	}
	return &agentCert{cl: api.NewClient(c.addrs(), "", id.ClientTLS()), cert: id.Leaf}
}

func newCSR(t *testing.T, name string) (*ecdsa.PrivateKey, []byte, []byte) {
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
	return key, csr, der
}

// enroll runs the agent's side of enrollment over HTTP: node name, as id.
func (n *simNode) enroll(c *cluster, name string, id *attest.Identity) (*agentCert, error) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, csr, keyDER := newCSR(n.t, name)
	cl := c.client("")
	var er attest.EnrollResponse
	if err := cl.Do(ctx, "POST", "/v1/attest/enroll", attest.EnrollRequest{Name: name, Identity: id, CSR: csr}, &er); err != nil {
		return nil, err
	}
	secret, err := n.ag.Activate(er.Challenge)
	if err != nil {
		n.t.Fatal(err)
	}
	q, err := n.ag.Quote(attest.BindNonce(er.Challenge.Nonce, keyDER), nil)
	if err != nil {
		n.t.Fatal(err)
	}
	var jr api.JoinResponse
	if err := cl.Do(ctx, "POST", "/v1/attest/activate", attest.ActivateRequest{Session: er.Session, Secret: secret, Quote: q}, &jr); err != nil {
		return nil, err
	}
	return newAgentCert(n.t, c, key, &jr), nil
}

// renew asks for a nonce and sends a quote with ac; it returns the quote
// request too, to replay it.
func (n *simNode) renew(c *cluster, ac *agentCert) (*agentCert, attest.QuoteRequest, error) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var nr attest.NonceResponse
	if err := ac.cl.Do(ctx, "POST", "/v1/attest/nonce", struct{}{}, &nr); err != nil {
		return nil, attest.QuoteRequest{}, err
	}
	key, csr, keyDER := newCSR(n.t, n.name)
	q, err := n.ag.Quote(attest.BindNonce(nr.Nonce, keyDER), nil)
	if err != nil {
		n.t.Fatal(err)
	}
	req := attest.QuoteRequest{Nonce: nr.Nonce, Quote: q, CSR: csr}
	var jr api.JoinResponse
	if err := ac.cl.Do(ctx, "POST", "/v1/attest/quote", req, &jr); err != nil {
		return nil, req, err
	}
	return newAgentCert(n.t, c, key, &jr), req, nil
}

func heartbeat(ac *agentCert, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ac.cl.Do(ctx, "POST", "/v1/agent/heartbeat", api.AgentHeartbeat{Name: name}, nil)
}

// wantRefused fails unless err is an HTTP error of status whose message
// starts with code.
func wantRefused(t *testing.T, err error, want int, code string) {
	t.Helper()
	if err == nil || status(err) != want || !strings.HasPrefix(err.Error(), code) {
		t.Fatalf("got %v (status %d), want %d %s", err, status(err), want, code)
	}
}

func auditHas(t *testing.T, admin *api.Client, node, kind, code string) bool {
	t.Helper()
	var recs []api.AuditRecord
	if err := admin.Do(context.Background(), "GET", "/v1/audit?node="+node, nil, &recs); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Kind == kind && r.Code == code {
			return true
		}
	}
	return false
}

func getNode(t *testing.T, admin *api.Client, name string) api.Node {
	t.Helper()
	var resp api.NodesResponse
	if err := admin.Do(context.Background(), "GET", "/v1/nodes", nil, &resp); err != nil {
		t.Fatal(err)
	}
	for _, n := range resp.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no node %s", name)
	return api.Node{}
}

// TestAttestation drives enrollment and continuous attestation through
// the API with simulated TPMs. Not parallel: the simulator is global.
func TestAttestation(t *testing.T) {
	vendor := attesttest.NewVerifierCA(t, "TPM vendor EK CA")
	rogue := attesttest.NewVerifierCA(t, "unknown EK CA")
	bundle := filepath.Join(t.TempDir(), "tpm-ca.pem")
	if err := os.WriteFile(bundle, pki.EncodeCertPEM(vendor.Cert.Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	c := bootstrapWith(t, func(o *Options) {
		o.TPMCABundle = bundle
		// Evictions, not the failure detector, must end the jobs here.
		o.NodeTimeout = 5 * time.Minute
	})
	admin := c.client(c.admin)
	ctx := context.Background()

	n1 := newSimNode(t, "node1")

	t.Run("refused enrollments", func(t *testing.T) {
		tests := []struct {
			name     string
			node     string
			id       *attest.Identity
			wantCode string
		}{
			{"unknown EK CA", "rogue1", n1.withEKCert(rogue), codeEKUntrusted},
			{"no EK certificate, not approved", "rogue2", n1.id, codeEKUntrusted},
			{"agent binary not on the allow-list", "node1", n1.withEKCert(vendor), policy.CodeAgentBinaryNotAllowed},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := n1.enroll(c, tc.node, tc.id)
				wantRefused(t, err, 403, tc.wantCode)
				if !auditHas(t, admin, tc.node, api.AuditRefused, tc.wantCode) {
					t.Errorf("no %s refusal audited for %s", tc.wantCode, tc.node)
				}
			})
		}
		if n := getNode(t, admin, "node1"); n.Trust != api.TrustNone {
			t.Fatalf("refused node1 has trust %s", n.Trust)
		}
	})

	var p policy.Policy
	if err := admin.Do(ctx, "POST", "/v1/attest/policy/digests", digestRequest{Digest: n1.digest}, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.AgentDigests) != 1 || p.AgentDigests[0] != n1.digest {
		t.Fatalf("policy after adding the digest: %+v", p)
	}
	var p2 policy.Policy
	if err := admin.Do(ctx, "PUT", "/v1/attest/policy", p, &p2); err != nil || p2.Version != p.Version+1 {
		t.Fatalf("PUT of the current version: %v, version %d", err, p2.Version)
	}
	if err := admin.Do(ctx, "PUT", "/v1/attest/policy", p, nil); status(err) != 409 {
		t.Fatalf("PUT of a stale policy version: %v, want 409", err)
	}

	ac, err := n1.enroll(c, "node1", n1.withEKCert(vendor))
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	if ttl := time.Until(ac.cert.NotAfter); ttl > time.Hour || ttl < 50*time.Minute {
		t.Errorf("certificate lives %s, want the policy's hour", ttl)
	}
	node := getNode(t, admin, "node1")
	if node.Trust != api.TrustAttested || node.CertSerial != ac.cert.SerialNumber.Text(16) || len(node.AKPublic) == 0 ||
		node.EKFingerprint != attest.EKFingerprint(n1.ekPub) {
		t.Fatalf("enrolled node: %+v", node)
	}
	register(t, ac.cl, "node1")
	if err := heartbeat(ac, "node1"); err != nil {
		t.Fatalf("heartbeat with the attested certificate: %v", err)
	}
	var alog attestLogResponse
	if err := admin.Do(ctx, "GET", "/v1/nodes/node1/attest-log", nil, &alog); err != nil {
		t.Fatal(err)
	}
	if len(alog.Entries) != 2 || !strings.HasPrefix(alog.Entries[0].Data, policy.EventAgentBinary) || alog.LastQuote.IsZero() {
		t.Fatalf("attest log: %+v", alog)
	}

	// A token-joined certificate for an attested name is not the node's.
	tokenAgent := &agentCert{cl: c.agent("node1")}
	wantRefused(t, heartbeat(tokenAgent, "node1"), 401, codeCertSuperseded)

	renewed, replay, err := n1.renew(c, ac)
	if err != nil {
		t.Fatalf("renewal: %v", err)
	}
	t.Run("after renewal", func(t *testing.T) {
		wantRefused(t, heartbeat(ac, "node1"), 401, codeCertSuperseded)
		if err := heartbeat(renewed, "node1"); err != nil {
			t.Fatalf("heartbeat with the renewed certificate: %v", err)
		}
		var jr api.JoinResponse
		wantRefused(t, renewed.cl.Do(ctx, "POST", "/v1/attest/quote", replay, &jr), 409, codeNonceReplayed)
		unknown := replay
		unknown.Nonce = make([]byte, 32)
		wantRefused(t, renewed.cl.Do(ctx, "POST", "/v1/attest/quote", unknown, &jr), 409, codeNonceUnknown)
		if !auditHas(t, admin, "node1", api.AuditRefused, codeNonceReplayed) {
			t.Error("replayed nonce not audited")
		}
		if n := getNode(t, admin, "node1"); n.Trust != api.TrustAttested || n.Drain {
			t.Fatalf("a bad nonce evicted the node: %+v", n)
		}
	})
	ac = renewed

	alice := c.client(c.addUser("alice", 1501))
	id := submit(t, alice, spec("attested")).JobID
	waitFor(t, 20*time.Second, "job running on node1", func() bool {
		var j api.Job
		return alice.Do(ctx, "GET", fmt.Sprintf("/v1/jobs/%d", id), nil, &j) == nil && j.State == api.JobRunning
	})

	t.Run("unlogged extend evicts", func(t *testing.T) {
		if err := attest.ExtendUnlogged(n1.tpm, policy.DefaultAgentPCR, []byte("rootkit")); err != nil {
			t.Fatal(err)
		}
		_, _, err := n1.renew(c, ac)
		wantRefused(t, err, 403, attest.ErrEventLog.Code)
		n := getNode(t, admin, "node1")
		if n.Trust != api.TrustNone || !n.Drain || n.CertSerial != "" || !strings.Contains(n.Reason, attest.ErrEventLog.Code) {
			t.Fatalf("node after a failed quote: %+v", n)
		}
		var j api.Job
		if err := alice.Do(ctx, "GET", fmt.Sprintf("/v1/jobs/%d", id), nil, &j); err != nil || j.State != api.JobPending {
			t.Fatalf("job on the evicted node: %v %+v", err, j.State)
		}
		wantRefused(t, heartbeat(ac, "node1"), 401, codeCertRevoked)
		if !auditHas(t, admin, "node1", api.AuditEvicted, attest.ErrEventLog.Code) {
			t.Error("eviction not audited")
		}
	})
	n1.close()

	t.Run("approved EK, revoked by admin", func(t *testing.T) {
		n2 := newSimNode(t, "node2")
		fp := attest.EKFingerprint(n2.ekPub)
		if err := admin.Do(ctx, "POST", "/v1/attest/policy/digests", digestRequest{Digest: n2.digest}, nil); err != nil {
			t.Fatal(err)
		}
		_, err := n2.enroll(c, "node2", n2.id)
		wantRefused(t, err, 403, codeEKUntrusted)
		var ek api.ApprovedEK
		if err := admin.Do(ctx, "POST", "/v1/nodes/approve", approveRequest{Fingerprint: fp, Comment: "lab box"}, &ek); err != nil {
			t.Fatal(err)
		}
		if ek.Fingerprint != fp || ek.ApprovedBy != "root" {
			t.Fatalf("approval: %+v", ek)
		}
		// Trust on first use pins the boot PCRs this node reports.
		var cur policy.Policy
		if err := admin.Do(ctx, "GET", "/v1/attest/policy", nil, &cur); err != nil {
			t.Fatal(err)
		}
		cur.TrustOnFirstUse = true
		if err := admin.Do(ctx, "PUT", "/v1/attest/policy", cur, nil); err != nil {
			t.Fatal(err)
		}
		ac2, err := n2.enroll(c, "node2", n2.id)
		if err != nil {
			t.Fatalf("enroll with an approved EK: %v", err)
		}
		if err := admin.Do(ctx, "GET", "/v1/attest/policy", nil, &cur); err != nil {
			t.Fatal(err)
		}
		if len(cur.Golden) != 8 || !auditHas(t, admin, "node2", api.AuditTOFURecorded, "") {
			t.Fatalf("PCRs pinned on first use: %v", cur.Golden)
		}
		if n := getNode(t, admin, "node2"); n.Trust != api.TrustApproved {
			t.Fatalf("node2 trust %s, want approved", n.Trust)
		}
		register(t, ac2.cl, "node2")

		// Another (approved) EK under an admitted node's name.
		otherEK, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		otherID := *n2.id
		if otherID.EKPublic, err = x509.MarshalPKIXPublicKey(otherEK.Public()); err != nil {
			t.Fatal(err)
		}
		if err := admin.Do(ctx, "POST", "/v1/nodes/approve", approveRequest{Fingerprint: attest.EKFingerprint(otherEK.Public())}, nil); err != nil {
			t.Fatal(err)
		}
		_, err = n2.enroll(c, "node2", &otherID)
		wantRefused(t, err, 403, codeEKChanged)

		if err := admin.Do(ctx, "POST", "/v1/nodes/revoke", revokeRequest{Node: "node2", Reason: "stolen"}, nil); err != nil {
			t.Fatal(err)
		}
		wantRefused(t, heartbeat(ac2, "node2"), 401, codeCertRevoked)
		var nr attest.NonceResponse
		wantRefused(t, ac2.cl.Do(ctx, "POST", "/v1/attest/nonce", struct{}{}, &nr), 401, codeCertRevoked)
		if n := getNode(t, admin, "node2"); n.Trust != api.TrustNone || !n.Drain {
			t.Fatalf("revoked node: %+v", n)
		}
		if !auditHas(t, admin, "node2", api.AuditEvicted, codeRevokedByAdmin) {
			t.Error("revocation not audited")
		}
		// The TPM stays out, under any name, until an admin resumes the node.
		for _, name := range []string{"node2", "spare"} {
			_, err := n2.enroll(c, name, n2.id)
			wantRefused(t, err, 403, codeRevokedByAdmin)
		}
		if err := admin.Do(ctx, "POST", "/v1/nodes/update", api.NodeUpdateRequest{Nodes: []string{"node2"}, State: "resume"}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := n2.enroll(c, "node2", n2.id); err != nil {
			t.Fatalf("enroll after the admin resumed the node: %v", err)
		}
	})
}
