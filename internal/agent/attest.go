package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/executor"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/policy"
)

// TPM mode (--tpm): the node enrolls with its TPM instead of a join token
// and then re-attests on the policy's clock, each time for a new
// short-lived certificate that replaces the last one at once.

const (
	tpmSubdir = "tpm"
	// attestTimeout bounds one exchange with the controllers (api.Client
	// retries unreachable controllers until its context ends).
	attestTimeout = 30 * time.Second
	// defaultAttestInterval is assumed until a controller tells the
	// policy's interval.
	defaultAttestInterval = policy.DefaultIntervalSec * time.Second
	// minRequote is the shortest re-attestation period, and the least time
	// between two re-attestations that a refused request brings forward.
	minRequote = time.Second
)

// ---- what the agent measures ----

// measuredConfig is the configuration measured into the agent PCR: the
// options that change what the node does with jobs and whom it talks to.
// Never secrets: the event log goes to the controllers and their admins.
// Fields are in key order, so encoding/json's output is canonical.
type measuredConfig struct {
	AttestPCR    int      `json:"attest_pcr"`
	CgroupParent string   `json:"cgroup_parent"`
	CPUs         int      `json:"cpus"`
	Features     []string `json:"features"`
	GPUs         int      `json:"gpus"`
	KillGrace    string   `json:"kill_grace"`
	MemoryMB     int64    `json:"memory_mb"`
	Name         string   `json:"name"`
	NetNS        string   `json:"netns"`
	PidsLimit    int64    `json:"pids_limit"`
	Servers      []string `json:"servers"`
}

// canonicalConfig is the measured configuration of normalized options.
// Inventory values are the configured ones (0 = detected), so a restart
// measures the same bytes. Lists are sorted: their order changes nothing
// that matters to a verifier, and must not force a re-measurement.
func canonicalConfig(o Options) ([]byte, error) {
	sorted := func(l []string) []string {
		out := slices.Clone(l)
		if out == nil {
			out = []string{}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return json.Marshal(measuredConfig{
		AttestPCR:    o.AttestPCR,
		CgroupParent: o.CgroupParent,
		CPUs:         o.CPUs,
		Features:     sorted(o.Features),
		GPUs:         o.GPUs,
		KillGrace:    o.KillGrace.String(),
		MemoryMB:     o.MemoryMB,
		Name:         o.Name,
		NetNS:        o.NetNS,
		PidsLimit:    o.PidsLimit,
		Servers:      sorted(o.Servers),
	})
}

// measureDecision says whether the agent must measure itself at start.
type measureDecision struct {
	Need bool
	// Others counts agent-PCR events other than this agent's measurement:
	// the policy refuses the node while the log holds them (one agent
	// binary and one configuration per TPM boot).
	Others int
}

// decideMeasure compares the event log with this agent's binary digest
// and configuration. The measurement is skipped only when the log's last
// two agent-PCR events already are this binary and this configuration:
// then the agent restarted within one TPM boot, and measuring again would
// add events the policy refuses. Anything else (first start since the TPM
// reset, a new binary, a new configuration) is measured, so the log always
// ends with what runs now.
func decideMeasure(log []attest.EventLogEntry, pcr int, binSHA256, config []byte) measureDecision {
	var on []attest.EventLogEntry
	for _, e := range log {
		if e.PCR == pcr {
			on = append(on, e)
		}
	}
	cfgSum := sha256.Sum256(config)
	n := len(on)
	if n >= 2 &&
		on[n-2].Type == attest.EventTypeIPL && bytes.HasPrefix(on[n-2].Data, []byte(policy.EventAgentBinary)) &&
		bytes.Equal(on[n-2].SHA256, binSHA256) &&
		on[n-1].Type == attest.EventTypeIPL && bytes.HasPrefix(on[n-1].Data, []byte(policy.EventAgentConfig)) &&
		bytes.Equal(on[n-1].SHA256, cfgSum[:]) {
		return measureDecision{Others: n - 2}
	}
	return measureDecision{Need: true, Others: n}
}

func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// ---- what the controllers answer ----

// attestStep is the request (or local work) an attestation error came from.
type attestStep int

const (
	stepLocal attestStep = iota // TPM work, or checking an answer
	stepEnroll
	stepActivate
	stepNonce
	stepQuote
)

func (s attestStep) String() string {
	return [...]string{"local", "enroll", "activate", "nonce", "quote"}[s]
}

type attestStepError struct {
	step attestStep
	err  error
}

func (e *attestStepError) Error() string { return e.step.String() + ": " + e.err.Error() }
func (e *attestStepError) Unwrap() error { return e.err }

func stepErr(step attestStep, err error) error {
	if err == nil {
		return nil
	}
	return &attestStepError{step, err}
}

// attestAction is what the agent does about a failed attestation step.
type attestAction int

const (
	// attRetry: transient (no answer, 5xx, a local failure); the same step
	// again after a short backoff.
	attRetry attestAction = iota
	// attNewNonce: the nonce was unknown or used; quote again with a new one.
	attNewNonce
	// attEnroll: the certificate or the session is no longer good (a newer
	// certificate superseded it, the session died with a leader change,
	// the node is not admitted); enroll again.
	attEnroll
	// attRefused: the controllers refuse to admit this node; enroll again
	// with a long backoff, since only an administrator can change that.
	attRefused
	// attEvicted: the controllers evicted the node and requeued or ended
	// its jobs: kill every local job, then enroll again.
	attEvicted
)

func (a attestAction) String() string {
	return [...]string{"retry", "new-nonce", "enroll", "refused", "evicted"}[a]
}

// Codes the agent acts on (internal/server/attest.go).
const (
	codeSessionUnknown = "session-unknown"
	codeNonceUnknown   = "nonce-unknown"
	codeNonceReplayed  = "nonce-replayed"
	codeNotAttested    = "not-attested"
	codeCertRevoked    = "cert-revoked"
)

// decideAttest maps an answer to an action. status is 0 when no
// controller answered.
func decideAttest(step attestStep, status int, code string) attestAction {
	switch {
	case status == http.StatusUnauthorized:
		// Eviction revokes the certificate, so a node evicted between two
		// quotes (quote-missed, an admin's revoke) learns it here.
		if code == codeCertRevoked {
			return attEvicted
		}
		return attEnroll // cert-superseded, or no usable certificate
	case status == http.StatusForbidden:
		switch step {
		case stepEnroll:
			return attRefused
		case stepActivate:
			// A node admitted before with this TPM is evicted by a failed
			// activation; one never admitted has no jobs to lose.
			return attEvicted
		case stepNonce:
			return attEnroll // not-attested
		case stepQuote:
			if code == codeNotAttested {
				return attEnroll
			}
			return attEvicted
		}
	case status == http.StatusConflict:
		switch code {
		case codeSessionUnknown:
			return attEnroll
		case codeNonceUnknown, codeNonceReplayed:
			return attNewNonce
		}
	}
	return attRetry
}

// classifyAttest decides about err from one of the attestor's steps and
// returns the controllers' error code, if any.
func classifyAttest(err error) (attestAction, string) {
	step := stepLocal
	var se *attestStepError
	if errors.As(err, &se) {
		step = se.step
	}
	var he *api.HTTPError
	if !errors.As(err, &he) {
		return attRetry, ""
	}
	code := errorCode(he.Message)
	return decideAttest(step, he.Status, code), code
}

// errorCode is the "<code>" of a controller's "<code>: text" error, or "".
func errorCode(msg string) string {
	code, _, ok := strings.Cut(msg, ":")
	if !ok || code == "" {
		return ""
	}
	for _, r := range code {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return ""
		}
	}
	return code
}

// requoteEvery is the re-attestation period for a policy interval: a third
// of it leaves two more tries before the controllers' deadline (interval +
// max(interval/2, 5 s)).
func requoteEvery(interval time.Duration) time.Duration {
	if interval <= 0 {
		interval = defaultAttestInterval
	}
	return max(interval/3, minRequote)
}

// requoteRetry is the wait after the fails-th failure in a row: fast, and
// never longer than the period, so retries fit before the deadline.
func requoteRetry(fails int, period time.Duration) time.Duration {
	d := time.Second << min(max(fails-1, 0), 3)
	return min(d, 5*time.Second, max(period, minRequote))
}

// enrollRetry is the wait after the fails-th failed enrollment in a row.
// Refusals back off further: they last until an administrator acts.
func enrollRetry(act attestAction, fails int) time.Duration {
	switch act {
	case attEnroll:
		if fails <= 3 {
			return 0 // a lost session: start over at once
		}
	case attRefused, attEvicted:
		return min(5*time.Second<<min(max(fails-1, 0), 4), time.Minute)
	}
	return min(time.Second<<min(max(fails-1, 0), 5), 30*time.Second)
}

// ---- TLS with a certificate that changes ----

// controllerTLS trusts controllers by the cluster CA and their role, not
// by host name, so --servers may name them by any address.
func controllerTLS(ca *x509.Certificate) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return pki.RoleClientTLS(roots, pki.OUController)
}

// certTransport sends every request with the node's current certificate,
// which GetClientCertificate reads from an atomic pointer. Connections
// keep the certificate of their handshake, and the controllers refuse a
// superseded one at once, so each certificate also gets a new connection
// pool: requests in flight finish on the old one, whose idle connections
// are closed (the rest when they go idle, after IdleConnTimeout).
type certTransport struct {
	conf *tls.Config
	cert atomic.Pointer[tls.Certificate]
	cur  atomic.Pointer[certGen]
	mu   sync.Mutex // serializes set
	// refused is called with the generation of a request answered 401.
	refused func(gen uint64)
}

type certGen struct {
	n    uint64
	rt   http.RoundTripper
	leaf *x509.Certificate
}

func newCertTransport(ca *x509.Certificate) *certTransport {
	t := &certTransport{conf: controllerTLS(ca)}
	t.conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if c := t.cert.Load(); c != nil {
			return c, nil
		}
		return &tls.Certificate{}, nil // none yet: the controllers answer 401
	}
	return t
}

// set makes c the certificate of every request from now on and returns
// its generation.
func (t *certTransport) set(c tls.Certificate) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cert.Store(&c)
	old := t.cur.Load()
	g := &certGen{n: 1, rt: api.NewClient(nil, "", t.conf.Clone()).HTTP.Transport, leaf: c.Leaf}
	if old != nil {
		g.n = old.n + 1
	}
	t.cur.Store(g)
	if old != nil {
		if ci, ok := old.rt.(interface{ CloseIdleConnections() }); ok {
			ci.CloseIdleConnections()
		}
	}
	return g.n
}

// current returns the generation and leaf of the current certificate (0
// and nil before the first).
func (t *certTransport) current() (uint64, *x509.Certificate) {
	g := t.cur.Load()
	if g == nil {
		return 0, nil
	}
	return g.n, g.leaf
}

func (t *certTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	g := t.cur.Load()
	if g == nil {
		return nil, errors.New("agent: no node certificate yet")
	}
	resp, err := g.rt.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusUnauthorized && t.refused != nil {
		t.refused(g.n)
	}
	return resp, err
}

// ---- the attestor ----

// attestor is the agent's attestation side: its TPM, the enrollment and
// the re-attestation loop.
type attestor struct {
	opts  Options
	log   *slog.Logger
	tpm   *attest.TPM
	evlog *attest.EventLog
	ak    *attest.Agent

	ca    *x509.Certificate
	caPEM []byte
	rt    *certTransport
	// enrollCl presents no certificate; cl presents the current one.
	enrollCl, cl *api.Client

	interval   atomic.Int64 // the policy's, in seconds; 0 until told
	refusedGen atomic.Uint64
	poke       chan struct{}
	lastCycle  time.Time
	fails      int

	// Set by runAttested: stop every local job, and hold or resume
	// launches around a re-enrollment.
	stopJobs   func(reason string)
	evicted    func()
	readmitted func()
}

// runAttested is Run with --tpm.
func runAttested(ctx context.Context, log *slog.Logger, opts Options) error {
	m, err := openAttestor(log, opts, func(l *attest.EventLog) (*attest.TPM, error) { return attest.Open(opts.TPM, l) })
	if err != nil {
		return err
	}
	defer m.close()
	if err := m.loadCA(ctx); err != nil {
		return err
	}
	if opts.ClusterName == "" {
		opts.ClusterName = clusterNameFromCA(m.ca.Subject.CommonName)
	}
	a, err := newAgent(opts, log, &http.Client{Transport: m.rt})
	if err != nil {
		return err
	}
	m.stopJobs = a.stopAllJobs
	m.evicted = func() { a.holdLaunches.Store(true) }
	m.readmitted = func() {
		a.holdLaunches.Store(false)
		a.needRegister.Store(true) // an eviction drained the node; show it is back
	}
	wait, ok := m.establish(ctx)
	if !ok {
		log.Info("stopped before the node was admitted")
		return nil
	}
	return a.run(ctx, func(ctx context.Context) { m.loop(ctx, wait) })
}

// openAttestor opens the TPM (with open) and the event log in
// <state-dir>/tpm, measures the agent (once per TPM boot) and loads or
// creates the AK.
func openAttestor(log *slog.Logger, opts Options, open func(*attest.EventLog) (*attest.TPM, error)) (*attestor, error) {
	dir := filepath.Join(opts.StateDir, tpmSubdir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("TPM state dir: %w", err)
	}
	evlog, err := attest.OpenEventLog(filepath.Join(dir, attest.EventLogFile))
	if err != nil {
		return nil, err
	}
	tpm, err := open(evlog)
	if err != nil {
		evlog.Close()
		return nil, fmt.Errorf("--tpm %s: %w", opts.TPM, err)
	}
	m := &attestor{opts: opts, log: log, tpm: tpm, evlog: evlog, poke: make(chan struct{}, 1)}
	if tpm.LogRestarted() {
		log.Info("the TPM was reset since the event log was written; starting a new log")
	}
	if err := m.measure(); err != nil {
		m.close()
		return nil, err
	}
	if m.ak, err = attest.LoadOrCreateAK(tpm, dir); err != nil {
		m.close()
		return nil, err
	}
	return m, nil
}

func (m *attestor) close() {
	if m.ak != nil {
		m.ak.Close()
	}
	m.tpm.Close()
	m.evlog.Close()
}

// measure extends the agent PCR with this binary and configuration unless
// this TPM boot's log already ends with them.
func (m *attestor) measure() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("agent binary: %w", err)
	}
	sum, err := fileSHA256(exe)
	if err != nil {
		return fmt.Errorf("agent binary: %w", err)
	}
	cfg, err := canonicalConfig(m.opts)
	if err != nil {
		return err
	}
	pcr := m.opts.AttestPCR
	d := decideMeasure(m.evlog.Entries(), pcr, sum, cfg)
	digest := fmt.Sprintf("sha256:%x", sum)
	if d.Others > 0 {
		m.log.Warn("the agent PCR holds other measurements since the TPM was reset (another agent binary or configuration); "+
			"the attestation policy refuses this node until the TPM is reset (reboot)", "pcr", pcr, "events", d.Others)
	}
	if !d.Need {
		m.log.Info("agent already measured in this TPM boot", "pcr", pcr, "binary", digest)
		return nil
	}
	if err := attest.MeasureAgent(m.tpm, m.evlog, pcr, exe, cfg); err != nil {
		return err
	}
	m.log.Info("agent measured", "pcr", pcr, "binary", exe, "digest", digest, "config", string(cfg))
	return nil
}

// loadCA picks the cluster CA enrollment trusts: --ca-cert, else the CA
// pinned by --join-token (fetched from the controllers), else the one
// stored at an earlier enrollment. --ca-cert and a token must agree.
func (m *attestor) loadCA(ctx context.Context) error {
	stored := filepath.Join(m.opts.StateDir, tlsSubdir, caFile)
	var tok *pki.JoinToken
	if m.opts.JoinToken != "" {
		t, err := pki.ParseJoinToken(m.opts.JoinToken)
		if err != nil {
			return err
		}
		tok = &t
	}
	var caPEM []byte
	var err error
	switch {
	case m.opts.CACertFile != "":
		if caPEM, err = os.ReadFile(m.opts.CACertFile); err != nil {
			return fmt.Errorf("--ca-cert: %w", err)
		}
		if tok != nil {
			if _, err := tok.VerifyCAPin(caPEM); err != nil {
				return fmt.Errorf("--ca-cert: %w", err)
			}
		}
	case tok != nil:
		fctx, cancel := context.WithTimeout(ctx, enrollTimeout)
		caPEM, err = api.NewClient(m.opts.Servers, "", tok.PinnedTLSConfig()).FetchClusterCA(fctx)
		cancel()
		if err != nil {
			return fmt.Errorf("fetching the cluster CA: %w", err)
		}
		if _, err := tok.VerifyCAPin(caPEM); err != nil {
			return err
		}
	default:
		if caPEM, err = os.ReadFile(stored); errors.Is(err, os.ErrNotExist) {
			return errors.New("TPM enrollment needs the cluster CA: give --ca-cert FILE (ca.pem in a controller's data dir) or --join-token (for its CA pin)")
		} else if err != nil {
			return err
		}
	}
	ca, err := pki.ParseCA(caPEM, nil)
	if err != nil {
		return fmt.Errorf("cluster CA: %w", err)
	}
	m.ca, m.caPEM = ca.Cert, caPEM
	m.rt = newCertTransport(ca.Cert)
	m.rt.refused = func(gen uint64) {
		m.refusedGen.Store(gen)
		select {
		case m.poke <- struct{}{}:
		default:
		}
	}
	m.enrollCl = api.NewClient(m.opts.Servers, "", controllerTLS(ca.Cert))
	m.cl = &api.Client{Servers: m.opts.Servers, HTTP: &http.Client{Transport: m.rt}}
	return nil
}

// establish gets the node a certificate the agent loops can start with:
// the one stored by the last run if it is still valid (re-attestation
// follows at once and deals with it being superseded or revoked), else a
// new enrollment. It returns the wait before the next re-attestation, and
// false if ctx ended first.
func (m *attestor) establish(ctx context.Context) (time.Duration, bool) {
	if id := m.storedIdentity(time.Now()); id != nil {
		m.rt.set(id.Cert)
		m.log.Info("re-attesting with the stored node certificate", "expires", id.Leaf.NotAfter)
		return m.cycle(ctx), ctx.Err() == nil
	}
	ok := m.admit(ctx) // first: it learns the interval
	return requoteEvery(m.intervalDur()), ok
}

// storedIdentity is the certificate stored in <state-dir>/tls if it is this
// node's, from the cluster CA and not about to expire.
func (m *attestor) storedIdentity(now time.Time) *pki.Identity {
	dir := filepath.Join(m.opts.StateDir, tlsSubdir)
	certPEM, err1 := os.ReadFile(filepath.Join(dir, certFile))
	keyPEM, err2 := os.ReadFile(filepath.Join(dir, keyFile))
	if err1 != nil || err2 != nil {
		return nil
	}
	id, err := pki.NewIdentity(certPEM, keyPEM, m.caPEM)
	if err == nil {
		err = checkAgentCert(id.Leaf, m.opts.Name)
	}
	if err != nil {
		m.log.Warn("ignoring the stored node certificate", "dir", dir, "err", err)
		return nil
	}
	if now.Add(time.Minute).After(id.Leaf.NotAfter) {
		return nil
	}
	return id
}

func (m *attestor) intervalDur() time.Duration {
	return time.Duration(m.interval.Load()) * time.Second
}

// loop re-attests every third of the policy interval until ctx ends.
func (m *attestor) loop(ctx context.Context, wait time.Duration) {
	for m.sleep(ctx, wait) {
		wait = m.cycle(ctx)
	}
}

// sleep waits d, or less once a request made with the current certificate
// was refused (401): re-attesting then shows whether it was superseded or
// revoked. Refusals of older certificates are expected just after a
// renewal and ignored.
func (m *attestor) sleep(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-m.poke:
			gen, _ := m.rt.current()
			if m.refusedGen.Load() != gen {
				continue
			}
			// Not sooner than minRequote after the last attempt.
			if next := m.lastCycle.Add(minRequote); next.Before(deadline) {
				m.log.Debug("the current certificate was refused; re-attesting")
				deadline = next
				t.Reset(time.Until(next))
			}
		}
	}
}

// cycle runs one re-attestation, acts on its outcome and returns the wait
// before the next.
func (m *attestor) cycle(ctx context.Context) time.Duration {
	m.lastCycle = time.Now()
	period := requoteEvery(m.intervalDur())
	if _, leaf := m.rt.current(); leaf == nil || !time.Now().Before(leaf.NotAfter) {
		// Not renewed in time (controllers unreachable): TLS refuses the
		// certificate now. Enrolling again tells whether the node was
		// evicted meanwhile; the work list then abandons its jobs.
		m.log.Warn("the node certificate expired (or there is none); enrolling again")
		m.admit(ctx)
		return requoteEvery(m.intervalDur())
	}
	err := m.requote(ctx)
	if ctx.Err() != nil {
		return 0
	}
	if err == nil {
		if m.fails > 0 {
			m.log.Info("re-attested after failures", "tries", m.fails+1)
		}
		m.fails = 0
		return requoteEvery(m.intervalDur())
	}
	m.fails++
	act, code := classifyAttest(err)
	switch act {
	case attNewNonce:
		m.log.Info("nonce refused; quoting again with a new one", "code", code)
		if m.fails <= 3 {
			return 0
		}
	case attEnroll:
		m.log.Warn("the controllers no longer accept the node certificate; enrolling again", "code", code, "err", err)
		m.admit(ctx)
		return requoteEvery(m.intervalDur())
	case attEvicted:
		m.log.Error("the node was evicted: killing all local jobs and enrolling again", "code", code, "err", err)
		m.evict(code)
		m.admit(ctx)
		return requoteEvery(m.intervalDur())
	default:
		if m.fails == 1 || m.fails%10 == 0 {
			m.log.Warn("re-attestation failed; retrying", "err", err, "tries", m.fails)
		}
	}
	return requoteRetry(m.fails, period)
}

// evict stops every local job: the controllers requeued or ended them.
func (m *attestor) evict(code string) {
	if m.evicted != nil {
		m.evicted()
	}
	if m.stopJobs != nil {
		m.stopJobs("node evicted: " + code)
	}
}

// admit enrolls until the controllers admit the node; false if ctx ended
// first.
func (m *attestor) admit(ctx context.Context) bool {
	for fails := 1; ; fails++ {
		err := m.enroll(ctx)
		if err == nil {
			m.fails = 0
			_, leaf := m.rt.current()
			m.log.Info("node admitted by attestation", "expires", leaf.NotAfter, "interval", m.intervalDur())
			if m.readmitted != nil {
				m.readmitted()
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		act, code := classifyAttest(err)
		wait := enrollRetry(act, fails)
		switch act {
		case attEnroll:
			m.log.Info("enrollment session lost; enrolling again", "code", code, "in", wait)
		case attEvicted:
			m.log.Error("the controllers refused the node's attestation (an admitted node is evicted): killing all local jobs; "+
				"retrying in case an administrator changes the policy", "code", code, "err", err, "in", wait)
			m.evict(code)
		case attRefused:
			m.log.Error("the controllers refused to admit the node; retrying in case an administrator changes the policy",
				"code", code, "err", err, "in", wait)
		default:
			m.log.Warn("enrollment failed; retrying", "err", err, "in", wait)
		}
		if !sleepCtx(ctx, wait) {
			return false
		}
	}
}

// enroll runs one enrollment: identity and CSR, then the credential
// activation and the first quote, bound to the CSR's key.
func (m *attestor) enroll(ctx context.Context) error {
	id, err := m.ak.Identity()
	if err != nil {
		return stepErr(stepLocal, err)
	}
	key, csr, keyDER, err := m.newKey()
	if err != nil {
		return stepErr(stepLocal, err)
	}
	rctx, cancel := context.WithTimeout(ctx, attestTimeout)
	defer cancel()
	var er attest.EnrollResponse
	err = m.enrollCl.Do(rctx, http.MethodPost, "/v1/attest/enroll",
		attest.EnrollRequest{Name: m.opts.Name, Identity: id, CSR: csr}, &er)
	if err != nil {
		return stepErr(stepEnroll, err)
	}
	if er.Session == "" || er.Challenge == nil {
		return stepErr(stepLocal, errors.New("enroll answer without a session or challenge"))
	}
	secret, err := m.ak.Activate(er.Challenge)
	if err != nil {
		return stepErr(stepLocal, err)
	}
	q, err := m.ak.Quote(attest.BindNonce(er.Challenge.Nonce, keyDER), nil)
	if err != nil {
		return stepErr(stepLocal, err)
	}
	var jr api.JoinResponse
	err = m.enrollCl.Do(rctx, http.MethodPost, "/v1/attest/activate",
		attest.ActivateRequest{Session: er.Session, Secret: secret, Quote: q}, &jr)
	if err != nil {
		return stepErr(stepActivate, err)
	}
	return stepErr(stepLocal, m.install(key, &jr))
}

// requote re-attests: a fresh nonce, a quote bound to a new key, and the
// certificate for that key.
func (m *attestor) requote(ctx context.Context) error {
	key, csr, keyDER, err := m.newKey()
	if err != nil {
		return stepErr(stepLocal, err)
	}
	rctx, cancel := context.WithTimeout(ctx, attestTimeout)
	defer cancel()
	var nr attest.NonceResponse
	if err := m.cl.Do(rctx, http.MethodPost, "/v1/attest/nonce", struct{}{}, &nr); err != nil {
		return stepErr(stepNonce, err)
	}
	if len(nr.Nonce) == 0 {
		return stepErr(stepLocal, errors.New("nonce answer without a nonce"))
	}
	q, err := m.ak.Quote(attest.BindNonce(nr.Nonce, keyDER), nil)
	if err != nil {
		return stepErr(stepLocal, err)
	}
	var jr api.JoinResponse
	if err := m.cl.Do(rctx, http.MethodPost, "/v1/attest/quote",
		attest.QuoteRequest{Nonce: nr.Nonce, Quote: q, CSR: csr}, &jr); err != nil {
		return stepErr(stepQuote, err)
	}
	return stepErr(stepLocal, m.install(key, &jr))
}

// newKey makes the ECDSA P-256 key of the next certificate, its CSR and
// its public key (PKIX DER), which the quote's nonce binds.
func (m *attestor) newKey() (*ecdsa.PrivateKey, []byte, []byte, error) {
	key, err := pki.NewKey()
	if err != nil {
		return nil, nil, nil, err
	}
	csr, err := pki.NewCSR(key, m.opts.Name, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, nil, err
	}
	return key, csr, der, nil
}

// install checks a certificate answer, switches every connection to it and
// stores it in <state-dir>/tls for the next start.
func (m *attestor) install(key *ecdsa.PrivateKey, jr *api.JoinResponse) error {
	ca, err := pki.ParseCertPEM(jr.CACert)
	if err != nil {
		return fmt.Errorf("certificate answer: cluster CA: %w", err)
	}
	if !ca.Equal(m.ca) {
		return errors.New("certificate answer names another cluster CA than the one trusted")
	}
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		return err
	}
	id, err := pki.NewIdentity(jr.Certificate, keyPEM, m.caPEM)
	if err != nil {
		return fmt.Errorf("certificate answer: %w", err)
	}
	if err := checkAgentCert(id.Leaf, m.opts.Name); err != nil {
		return fmt.Errorf("certificate answer: %w", err)
	}
	m.rt.set(id.Cert)
	if jr.AttestIntervalSec > 0 {
		if old := m.interval.Swap(jr.AttestIntervalSec); old != jr.AttestIntervalSec {
			m.log.Info("attestation interval", "interval", time.Duration(jr.AttestIntervalSec)*time.Second,
				"requote_every", requoteEvery(time.Duration(jr.AttestIntervalSec)*time.Second))
		}
	}
	m.log.Debug("node certificate renewed", "serial", id.Leaf.SerialNumber.Text(16), "expires", id.Leaf.NotAfter)
	// The certificate goes last: with a key that does not match, a restart
	// ignores the files and enrolls.
	dir := filepath.Join(m.opts.StateDir, tlsSubdir)
	err = os.MkdirAll(dir, 0o700)
	if err == nil {
		err = pki.WriteFile(filepath.Join(dir, caFile), m.caPEM, 0o644)
	}
	if err == nil {
		err = pki.WriteFile(filepath.Join(dir, keyFile), keyPEM, 0o600)
	}
	if err == nil {
		err = pki.WriteFile(filepath.Join(dir, certFile), jr.Certificate, 0o644)
	}
	if err != nil {
		// The certificate is in use; only a restart misses it.
		m.log.Warn("cannot store the node certificate", "dir", dir, "err", err)
	}
	return nil
}

// stopAllJobs kills every job that still runs here, at once, without a
// report: the controllers evicted the node and requeued or ended its jobs.
// Launches in progress are cancelled by the watcher when they finish.
func (a *agent) stopAllJobs(reason string) {
	a.mu.Lock()
	var stop []*localJob
	for _, lj := range a.jobs {
		if lj.finished || lj.reported || lj.cancelSent {
			continue
		}
		if !lj.meta.Abandoned {
			lj.meta.Abandoned = true
			if !lj.launching {
				if err := writeMeta(lj.dir, &lj.meta); err != nil {
					a.log.Warn("job record", "job", lj.key.ID, "err", err)
				}
			}
		}
		if !lj.launching {
			stop = append(stop, lj)
		}
	}
	a.mu.Unlock()
	for _, lj := range stop {
		a.log.Warn("stopping job", "job", lj.key.ID, "attempt", lj.key.Attempt, "reason", reason)
		if err := executor.Cancel(lj.dir); err != nil {
			a.log.Warn("cancel failed; the watcher retries", "job", lj.key.ID, "err", err)
			continue
		}
		a.mu.Lock()
		lj.cancelSent = true
		a.mu.Unlock()
	}
	a.poke()
}
