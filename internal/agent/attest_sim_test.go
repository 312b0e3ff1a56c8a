package agent

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/attest/attesttest"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/internal/pki/pkitest"
	"github.com/stockade-hpc/stockade/policy"
)

// fakeController plays the controllers' attestation routes for one node,
// checking what the agent sends as the real ones do (CSR, activation,
// quote signature, nonce binding, policy) and refusing every certificate
// but the newest. Scripted answers go first.
type fakeController struct {
	t      *testing.T
	ca     *pki.CA
	srv    *httptest.Server
	policy *policy.Policy

	mu       sync.Mutex
	sessions map[string]*fakeSession
	nonces   map[string]bool
	ak       []byte // the admitted node's AK; nil when not admitted
	serial   string // its current certificate
	script   map[string][]fakeAnswer
	calls    map[string]int
}

type fakeSession struct {
	id     *attest.Identity
	secret []byte
	nonce  []byte
	csrPub crypto.PublicKey
	csrKey []byte
}

type fakeAnswer struct {
	status int
	msg    string
}

func newFakeController(t *testing.T, agentDigest string) *fakeController {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	id := pkitest.ControllerIdentity(t, ca, "c1", []string{"127.0.0.1"})
	f := &fakeController{t: t, ca: ca, sessions: map[string]*fakeSession{}, nonces: map[string]bool{},
		script: map[string][]fakeAnswer{}, calls: map[string]int{},
		policy: &policy.Policy{Bank: "sha256", PCRs: []int{15}, AgentPCR: 15, AgentDigests: []string{agentDigest}, IntervalSec: 9}}
	if err := f.policy.Normalize(); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/attest/enroll", f.enroll)
	mux.HandleFunc("POST /v1/attest/activate", f.activate)
	mux.HandleFunc("POST /v1/attest/nonce", f.nonce)
	mux.HandleFunc("POST /v1/attest/quote", f.quote)
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.EnableHTTP2 = true // connections are kept and multiplexed, as with the controllers
	f.srv.TLS = id.ServerTLS(tls.VerifyClientCertIfGiven)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeController) addr() string { return strings.TrimPrefix(f.srv.URL, "https://") }

// answer queues a scripted answer for a route ("enroll", "quote"...).
func (f *fakeController) answer(route string, status int, msg string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script[route] = append(f.script[route], fakeAnswer{status, msg})
}

func (f *fakeController) count(route string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[route]
}

func (f *fakeController) current() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.serial
}

// begin counts the call and sends a scripted answer if one is queued.
func (f *fakeController) begin(w http.ResponseWriter, route string) bool {
	f.calls[route]++
	if q := f.script[route]; len(q) > 0 {
		f.script[route] = q[1:]
		fail(w, q[0].status, q[0].msg)
		return false
	}
	return true
}

func fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func decodeStrict(r *http.Request, v any) error {
	d := json.NewDecoder(r.Body)
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func (f *fakeController) enroll(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.begin(w, "enroll") {
		return
	}
	if len(r.TLS.PeerCertificates) != 0 {
		fail(w, 400, "enrollment with a client certificate")
		return
	}
	var req attest.EnrollRequest
	if err := decodeStrict(r, &req); err != nil || req.Name != "node1" || req.Identity == nil {
		fail(w, 400, fmt.Sprintf("bad enroll request: %v", err))
		return
	}
	csr, err := pki.ParseCSR(req.CSR)
	if err != nil {
		fail(w, 400, err.Error())
		return
	}
	key, _ := x509.MarshalPKIXPublicKey(csr.PublicKey)
	ch, secret, err := attest.NewChallenge(req.Identity)
	if err != nil {
		fail(w, 403, "ek-untrusted: "+err.Error())
		return
	}
	id := randHex(f.t)
	f.sessions[id] = &fakeSession{id: req.Identity, secret: secret, nonce: ch.Nonce, csrPub: csr.PublicKey, csrKey: key}
	reply(w, attest.EnrollResponse{Session: id, Challenge: ch})
}

func (f *fakeController) activate(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.begin(w, "activate") {
		return
	}
	var req attest.ActivateRequest
	if err := decodeStrict(r, &req); err != nil {
		fail(w, 400, err.Error())
		return
	}
	sess := f.sessions[req.Session]
	delete(f.sessions, req.Session)
	if sess == nil {
		fail(w, 409, "session-unknown: no such enrollment session")
		return
	}
	if err := attest.CheckActivation(sess.secret, req.Secret); err != nil {
		fail(w, 403, "ak-not-activated: "+err.Error())
		return
	}
	if !f.judge(w, sess.id.AK.Public, req.Quote, attest.BindNonce(sess.nonce, sess.csrKey)) {
		return
	}
	f.ak = sess.id.AK.Public
	f.issue(w, sess.csrPub)
}

// caller checks the client certificate is the node's current one.
func (f *fakeController) caller(w http.ResponseWriter, r *http.Request) bool {
	if len(r.TLS.PeerCertificates) == 0 {
		fail(w, 401, "no client certificate")
		return false
	}
	serial := r.TLS.PeerCertificates[0].SerialNumber.Text(16)
	if f.ak == nil || serial != f.serial {
		fail(w, 401, "cert-superseded: certificate "+serial+" is not node node1's current one")
		return false
	}
	return true
}

func (f *fakeController) nonce(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.begin(w, "nonce") || !f.caller(w, r) {
		return
	}
	n := randHex(f.t)
	f.nonces[n] = true
	b, _ := hex.DecodeString(n)
	reply(w, attest.NonceResponse{Nonce: b})
}

func (f *fakeController) quote(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.begin(w, "quote") || !f.caller(w, r) {
		return
	}
	var req attest.QuoteRequest
	if err := decodeStrict(r, &req); err != nil {
		fail(w, 400, err.Error())
		return
	}
	csr, err := pki.ParseCSR(req.CSR)
	if err != nil {
		fail(w, 400, err.Error())
		return
	}
	n := hex.EncodeToString(req.Nonce)
	if !f.nonces[n] {
		fail(w, 409, "nonce-unknown: nonce not issued")
		return
	}
	delete(f.nonces, n)
	key, _ := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if !f.judge(w, f.ak, req.Quote, attest.BindNonce(req.Nonce, key)) {
		f.ak, f.serial = nil, "" // evicted
		return
	}
	f.issue(w, csr.PublicKey)
}

// judge verifies a quote and evaluates it; false after answering 403.
func (f *fakeController) judge(w http.ResponseWriter, ak []byte, q *attest.Quote, nonce []byte) bool {
	var v attest.Verifier
	ev, err := v.VerifyQuote(ak, q, nonce, f.policy.PCRs, f.policy.Bank)
	if err != nil {
		fail(w, 403, attest.FailureCode(err)+": "+err.Error())
		return false
	}
	if d := f.policy.Evaluate(ev); !d.OK {
		fail(w, 403, d.Reason)
		return false
	}
	return true
}

func (f *fakeController) issue(w http.ResponseWriter, pub crypto.PublicKey) {
	cert, certPEM, err := f.ca.IssueAgentFor("node1", pub, time.Hour)
	if err != nil {
		fail(w, 500, err.Error())
		return
	}
	f.serial = cert.SerialNumber.Text(16)
	reply(w, api.JoinResponse{Certificate: certPEM, CACert: f.ca.CertPEM, AttestIntervalSec: f.policy.IntervalSec})
}

func randHex(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestAttestorLifecycle runs the agent's attestation against the TPM
// simulator and a fake controller: enrollment, renewals on a new
// connection pool, the answers that call for a new nonce, re-enrollment
// or eviction, and restarts within one TPM boot and across a reset.
func TestAttestorLifecycle(t *testing.T) {
	sim := attesttest.OpenSimulator(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := fileSHA256(exe)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeController(t, fmt.Sprintf("sha256:%x", sum))
	state := t.TempDir()
	caPath := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caPath, f.ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	opts := Options{Name: "node1", Servers: []string{f.addr()}, StateDir: state, TPM: "sim", CACertFile: caPath,
		Logger: testLogger(t)}
	if err := opts.normalize(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	var stops int
	start := func(t *testing.T, o Options) *attestor {
		t.Helper()
		m, err := openAttestor(o.Logger, o, sim.Open)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.loadCA(ctx); err != nil {
			m.close()
			t.Fatal(err)
		}
		m.stopJobs = func(string) { stops++ }
		return m
	}
	agentEvents := func(m *attestor) int {
		n := 0
		for _, e := range m.evlog.Entries() {
			if e.PCR == 15 {
				n++
			}
		}
		return n
	}
	gen := func(m *attestor) uint64 { g, _ := m.rt.current(); return g }
	serial := func(m *attestor) string { _, l := m.rt.current(); return l.SerialNumber.Text(16) }
	stored := func() string {
		b, err := os.ReadFile(filepath.Join(state, tlsSubdir, certFile))
		if err != nil {
			t.Fatal(err)
		}
		c, err := pki.ParseCertPEM(b)
		if err != nil {
			t.Fatal(err)
		}
		return c.SerialNumber.Text(16)
	}

	m := start(t, opts)
	if n := agentEvents(m); n != 2 {
		t.Fatalf("%d agent events after the first start, want 2", n)
	}
	wait, ok := m.establish(ctx)
	if !ok || wait != 3*time.Second || f.count("activate") != 1 {
		t.Fatalf("establish = %s, %v after %d activations; want 3s (interval 9s), true, 1", wait, ok, f.count("activate"))
	}
	if serial(m) != f.current() || stored() != f.current() {
		t.Fatalf("certificate in use %s, stored %s, current %s", serial(m), stored(), f.current())
	}

	t.Run("renewals switch certificates", func(t *testing.T) {
		for range 3 {
			g := gen(m)
			if wait := m.cycle(ctx); wait != 3*time.Second {
				t.Fatalf("cycle = %s, want 3s", wait)
			}
			// The fake refuses any certificate but the newest, so each
			// renewal must also have been made on a fresh connection.
			if gen(m) != g+1 || serial(m) != f.current() || stored() != f.current() {
				t.Fatalf("generation %d→%d, serial %s, current %s", g, gen(m), serial(m), f.current())
			}
		}
	})

	t.Run("old certificate is refused, current one is not", func(t *testing.T) {
		old := m.rt.cert.Load()
		_, oldLeaf := m.rt.current()
		if m.cycle(ctx) != 3*time.Second {
			t.Fatal("renewal failed")
		}
		cl := &api.Client{Servers: []string{f.addr()}, HTTP: &http.Client{Transport: m.rt}}
		var nr attest.NonceResponse
		if err := cl.Do(ctx, http.MethodPost, "/v1/attest/nonce", struct{}{}, &nr); err != nil {
			t.Fatalf("request with the current certificate: %v", err)
		}
		if m.refusedGen.Load() != 0 {
			t.Fatal("a refusal was recorded")
		}
		stale := newCertTransport(m.ca)
		stale.set(*old)
		var got uint64
		stale.refused = func(g uint64) { got = g }
		cl.HTTP = &http.Client{Transport: stale}
		err := cl.Do(ctx, http.MethodPost, "/v1/attest/nonce", struct{}{}, &nr)
		if act, code := classifyAttest(stepErr(stepNonce, err)); act != attEnroll || code != "cert-superseded" {
			t.Fatalf("old certificate %s: %v (%s, %s)", oldLeaf.SerialNumber.Text(16), err, act, code)
		}
		if got != 1 {
			t.Errorf("refusal reported for generation %d, want 1", got)
		}
	})

	t.Run("nonce refused: new nonce at once", func(t *testing.T) {
		f.answer("quote", 409, "nonce-unknown: nonce not issued to node node1 by this leader, or expired")
		nonces := f.count("nonce")
		if wait := m.cycle(ctx); wait != 0 {
			t.Fatalf("cycle = %s, want 0", wait)
		}
		if wait := m.cycle(ctx); wait != 3*time.Second || m.fails != 0 || f.count("nonce") != nonces+2 {
			t.Fatalf("cycle = %s, fails %d, %d nonces", wait, m.fails, f.count("nonce")-nonces)
		}
	})

	t.Run("unavailable: retried", func(t *testing.T) {
		for range 3 {
			f.answer("quote", 503, "no leader elected; retry")
		}
		quotes := f.count("quote")
		if wait := m.cycle(ctx); wait != 3*time.Second || f.count("quote") != quotes+4 {
			t.Fatalf("cycle = %s after %d quotes", wait, f.count("quote")-quotes)
		}
	})

	t.Run("failure: fast retry", func(t *testing.T) {
		f.answer("quote", 400, "quote: required")
		if wait := m.cycle(ctx); wait != time.Second || m.fails != 1 {
			t.Fatalf("cycle = %s, fails %d; want 1s, 1", wait, m.fails)
		}
		if wait := m.cycle(ctx); wait != 3*time.Second || m.fails != 0 {
			t.Fatalf("cycle after a failure = %s, fails %d", wait, m.fails)
		}
	})

	t.Run("superseded: enroll again, jobs kept", func(t *testing.T) {
		f.answer("nonce", 401, "cert-superseded: certificate 1 is not node node1's current one")
		acts, s := f.count("activate"), stops
		if wait := m.cycle(ctx); wait != 3*time.Second || f.count("activate") != acts+1 || stops != s {
			t.Fatalf("cycle = %s, activations %d, stops %d", wait, f.count("activate")-acts, stops-s)
		}
		if serial(m) != f.current() {
			t.Fatal("not re-enrolled")
		}
	})

	t.Run("revoked: evicted, jobs killed, enroll again", func(t *testing.T) {
		f.answer("nonce", 401, "cert-revoked: certificate 1 of node node1 is revoked; enroll again")
		acts, s := f.count("activate"), stops
		if m.cycle(ctx) != 3*time.Second || f.count("activate") != acts+1 || stops != s+1 {
			t.Fatalf("activations %d, stops %d", f.count("activate")-acts, stops-s)
		}
	})

	t.Run("session lost: enroll again at once", func(t *testing.T) {
		f.answer("activate", 409, "session-unknown: no such enrollment session; enroll again")
		enrolls := f.count("enroll")
		if !m.admit(ctx) || f.count("enroll") != enrolls+2 {
			t.Fatalf("enrollments %d, want 2", f.count("enroll")-enrolls)
		}
	})

	t.Run("quote refused: evicted", func(t *testing.T) {
		f.answer("quote", 403, "pcr-mismatch: PCR 0 = 00 not in the reference manifest")
		s := stops
		if m.cycle(ctx) != 3*time.Second || stops != s+1 || serial(m) != f.current() {
			t.Fatalf("stops %d", stops-s)
		}
	})
	m.close()

	t.Run("restart in the same TPM boot", func(t *testing.T) {
		m := start(t, opts)
		defer m.close()
		if n := agentEvents(m); n != 2 {
			t.Fatalf("%d agent events after a restart, want 2 (no new measurement)", n)
		}
		acts := f.count("activate")
		wait, ok := m.establish(ctx)
		if !ok || wait != 3*time.Second || f.count("activate") != acts {
			t.Fatalf("establish = %s, %v, %d activations; want the stored certificate renewed", wait, ok, f.count("activate")-acts)
		}
	})

	t.Run("new configuration: measured again, refused until a reset", func(t *testing.T) {
		o := opts
		o.CPUs = 1
		m := start(t, o)
		if n := agentEvents(m); n != 4 {
			t.Fatalf("%d agent events, want 4", n)
		}
		// Evicted by the quote, then refused at every enrollment until ctx
		// ends.
		s, acts := stops, f.count("activate")
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		if _, ok := m.establish(cctx); ok {
			t.Error("admitted")
		}
		ccancel()
		m.close()
		if stops < s+2 || f.count("activate") != acts+1 {
			t.Fatalf("stops %d, activations %d; want at least 2 and 1", stops-s, f.count("activate")-acts)
		}
		if f.current() != "" {
			t.Fatal("the fake admitted the node")
		}
	})

	t.Run("after a TPM reset", func(t *testing.T) {
		if err := sim.Reboot(); err != nil {
			t.Fatal(err)
		}
		o := opts
		o.CPUs = 1
		m := start(t, o)
		defer m.close()
		if !m.tpm.LogRestarted() || agentEvents(m) != 2 {
			t.Fatalf("log restarted %v, %d agent events; want true, 2", m.tpm.LogRestarted(), agentEvents(m))
		}
		if wait, ok := m.establish(ctx); !ok || wait != 3*time.Second || serial(m) != f.current() {
			t.Fatalf("establish = %s, %v", wait, ok)
		}
	})
}
