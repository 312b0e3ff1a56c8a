package server

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/policy"
)

// Attestation (Keylime's registrar and verifier, run by the leader). The
// short-lived state — enrollment sessions, nonces, the last event logs —
// lives in the leader's memory only: it is worthless after a failover
// (agents simply start over), while what must survive (trust, EK, AK,
// certificate serial, audit) is in Raft.

// Bodies of the admin attestation routes (docs/api.md); the agent's are in
// package attest.
type (
	digestRequest struct {
		Digest string `json:"digest"`
	}
	approveRequest struct {
		Fingerprint string `json:"fingerprint"`
		Comment     string `json:"comment"`
	}
	revokeRequest struct {
		Node   string `json:"node"`
		Reason string `json:"reason"`
		// Serial optionally revokes one more certificate (hex), e.g. a
		// token-joined node's, whose serial the state does not record.
		Serial string `json:"serial,omitempty"`
	}
	attestLogResponse struct {
		Node      string           `json:"node"`
		LastQuote time.Time        `json:"last_quote,omitzero"`
		QuotedAt  time.Time        `json:"quoted_at,omitzero"` // when these measurements were verified
		Code      string           `json:"code,omitempty"`     // the policy's verdict on them ("" passed)
		Entries   []attestLogEntry `json:"measurements"`
	}
	attestLogEntry struct {
		PCR    int    `json:"pcr"`
		Type   uint32 `json:"type"`
		Digest string `json:"digest"`         // lowercase hex, in the policy bank
		Data   string `json:"data,omitempty"` // event data when it is printable text
		// DataHex is the event data in hex when it is not text.
		DataHex string `json:"data_hex,omitempty"`
	}
)

// Attestation codes of the server's own checks (the verifier's and the
// policy's codes are passed through).
const (
	codeEKUntrusted     = "ek-untrusted"
	codeEKChanged       = "ek-changed"
	codeEKNotApproved   = "ek-not-approved"
	codeAKNotActivated  = "ak-not-activated"
	codeNonceUnknown    = "nonce-unknown"
	codeNonceReplayed   = "nonce-replayed"
	codeSessionUnknown  = "session-unknown"
	codeQuoteMissed     = "quote-missed"
	codeRevokedByAdmin  = "revoked-by-admin"
	codeQuoteInvalid    = "quote-invalid"
	codeNotAttested     = "not-attested"
	codeCertSuperseded  = "cert-superseded"
	codeCertRevoked     = "cert-revoked"
	defaultRevokeReason = "revoked by an administrator"
)

// Limits of the in-memory attestation state. Enrollment is open to
// unauthenticated peers, so everything it keeps is bounded.
const (
	sessionTTL       = 60 * time.Second
	maxSessions      = 1024
	minNonceTTL      = 10 * time.Second // a slow TPM takes seconds to quote
	maxNoncesPerNode = 4
	// minQuoteGrace is the least time past its interval a node may go
	// without a quote before it is evicted.
	minQuoteGrace = 5 * time.Second
	attestTick    = time.Second
	// Refusal audit records: a burst, then one per refusalEvery, and the
	// same refusal (node, EK, code) at most once per refusalDedup.
	refusalBurst  = 20
	refusalEvery  = 500 * time.Millisecond
	refusalDedup  = time.Minute
	maxRefusalKey = 4096
)

// enrollSession is an enrollment between enroll and activate.
type enrollSession struct {
	name    string
	id      *attest.Identity
	ekFP    string
	trust   api.Trust
	csrPub  crypto.PublicKey
	csrKey  []byte // PKIX DER, bound into the first quote's nonce
	secret  []byte
	nonce   []byte
	expires time.Time
}

type nonceEntry struct {
	node    string
	issued  time.Time
	expires time.Time
	used    bool
}

// attestLog is the last verified event log of a node.
type attestLog struct {
	at      time.Time
	code    string
	entries []attestLogEntry
}

// attestState is the leader's short-lived attestation state. It is reset
// whenever this member starts leading.
type attestState struct {
	mu       sync.Mutex
	sessions map[string]*enrollSession
	nonces   map[string]*nonceEntry // by hex nonce
	logs     map[string]*attestLog  // by node
	// since is when this member started leading: no node is evicted for
	// a missed quote before since + interval + grace.
	since time.Time

	refusals refusalLimiter
}

func newAttestState() *attestState {
	a := &attestState{}
	a.reset(time.Now())
	return a
}

func (a *attestState) reset(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sessions = map[string]*enrollSession{}
	a.nonces = map[string]*nonceEntry{}
	a.logs = map[string]*attestLog{}
	a.since = now
}

func (a *attestState) leadingSince() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.since
}

var errTooManySessions = errors.New("too many enrollments in progress")

// addSession stores sess under a new random id.
func (a *attestState) addSession(sess *enrollSession, now time.Time) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked(now)
	if len(a.sessions) >= maxSessions {
		return "", errTooManySessions
	}
	id, err := randomID()
	if err != nil {
		return "", err
	}
	sess.expires = now.Add(sessionTTL)
	a.sessions[id] = sess
	return id, nil
}

// takeSession removes and returns a live session: one activation attempt
// per challenge, so the secret cannot be guessed at.
func (a *attestState) takeSession(id string, now time.Time) *enrollSession {
	a.mu.Lock()
	defer a.mu.Unlock()
	sess := a.sessions[id]
	delete(a.sessions, id)
	if sess == nil || !now.Before(sess.expires) {
		return nil
	}
	return sess
}

// newNonce issues a single-use nonce to node, valid for ttl. A node keeps
// at most maxNoncesPerNode; older ones are dropped.
func (a *attestState) newNonce(node string, now time.Time, ttl time.Duration) ([]byte, error) {
	n := make([]byte, attest.ChallengeNonceSize)
	if _, err := rand.Read(n); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked(now)
	var oldest string
	count := 0
	for k, e := range a.nonces {
		if e.node != node || e.used {
			continue
		}
		count++
		if oldest == "" || e.issued.Before(a.nonces[oldest].issued) {
			oldest = k
		}
	}
	if count >= maxNoncesPerNode {
		delete(a.nonces, oldest)
	}
	a.nonces[hex.EncodeToString(n)] = &nonceEntry{node: node, issued: now, expires: now.Add(ttl)}
	return n, nil
}

// useNonce consumes a nonce issued to node. It returns "" or the code of
// why the nonce cannot be used.
func (a *attestState) useNonce(node string, nonce []byte, now time.Time) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	k := hex.EncodeToString(nonce)
	e := a.nonces[k]
	switch {
	case e == nil || e.node != node:
		// Another node's nonce is as good as none: do not tell them apart.
		return codeNonceUnknown
	case !now.Before(e.expires):
		delete(a.nonces, k)
		return codeNonceUnknown
	case e.used:
		return codeNonceReplayed
	}
	// Kept, marked used, until it expires: a replay is then recognized.
	e.used = true
	return ""
}

// dropNonces forgets node's nonces (it was evicted).
func (a *attestState) dropNonces(node string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, e := range a.nonces {
		if e.node == node {
			delete(a.nonces, k)
		}
	}
}

func (a *attestState) expire(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked(now)
}

func (a *attestState) expireLocked(now time.Time) {
	for k, s := range a.sessions {
		if !now.Before(s.expires) {
			delete(a.sessions, k)
		}
	}
	for k, e := range a.nonces {
		if !now.Before(e.expires) {
			delete(a.nonces, k)
		}
	}
}

func (a *attestState) setLog(node string, l *attestLog) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.logs[node] = l
}

func (a *attestState) log(node string) *attestLog {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logs[node]
}

// refusalLimiter bounds the audit records refusals write: they come from
// unauthenticated peers, and each is a Raft entry kept forever.
type refusalLimiter struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
	recent map[string]time.Time
}

// allow reports whether a refusal identified by key may be audited now.
func (l *refusalLimiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.recent == nil {
		l.recent = map[string]time.Time{}
		l.tokens = refusalBurst
		l.last = now
	}
	if t, ok := l.recent[key]; ok && now.Sub(t) < refusalDedup {
		return false
	}
	l.tokens = min(refusalBurst, l.tokens+float64(now.Sub(l.last))/float64(refusalEvery))
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	if len(l.recent) >= maxRefusalKey {
		for k, t := range l.recent {
			if now.Sub(t) >= refusalDedup {
				delete(l.recent, k)
			}
		}
		if len(l.recent) >= maxRefusalKey {
			clear(l.recent)
		}
	}
	l.recent[key] = now
	return true
}

// keyedMutex serializes the attestation verdicts on one node, so that an
// eviction cannot be overtaken by a renewal judged before it.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

func randomID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// loadTPMCABundle reads the TPM manufacturers' EK CA certificates. Every
// certificate in the file is a trust anchor, intermediates included, as
// in Keylime's tpm_cert_store: vendors publish both and EK certificates
// rarely carry their chain.
func loadTPMCABundle(path string) (*x509.CertPool, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("--tpm-ca-bundle: %w", err)
	}
	pool, n, err := parseTPMCABundle(data)
	if err != nil {
		return nil, 0, fmt.Errorf("--tpm-ca-bundle %s: %w", path, err)
	}
	return pool, n, nil
}

func parseTPMCABundle(data []byte) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n := 0
	for len(data) > 0 {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, 0, errors.New("no PEM certificates")
	}
	return pool, n, nil
}

// logEntries converts verified measurements for the attest-log route.
func logEntries(ms []policy.Measurement) []attestLogEntry {
	out := make([]attestLogEntry, 0, len(ms))
	for _, m := range ms {
		e := attestLogEntry{PCR: m.PCR, Type: m.Type, Digest: hex.EncodeToString(m.Digest)}
		if isText(m.Data) {
			e.Data = string(m.Data)
		} else {
			e.DataHex = hex.EncodeToString(m.Data)
		}
		out = append(out, e)
	}
	return out
}

// isText reports whether event data reads as text (a trailing NUL, as
// some firmware writes, allowed).
func isText(b []byte) bool {
	s := strings.TrimSuffix(string(b), "\x00")
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != '\t' {
			return false
		}
	}
	return true
}

// refusalText is the one-line answer and audit reason of a refusal: the
// code first, so agents and scripts can match it.
func refusalText(code, reason string) string {
	reason = strings.Join(strings.Fields(reason), " ")
	if reason == "" || reason == code {
		return code
	}
	if strings.HasPrefix(reason, code+":") {
		return reason
	}
	return code + ": " + reason
}

// trustedNode reports whether a node is admitted on TPM evidence.
func trustedNode(n *api.Node) bool {
	return n != nil && (n.Trust == api.TrustAttested || n.Trust == api.TrustApproved)
}

// quoteDeadline is when a node that last quoted at lastQuote is evicted
// for missing its quotes, given the policy interval and when this member
// started leading (a new leader gives every node a fresh grace).
func quoteDeadline(lastQuote, since time.Time, interval time.Duration) time.Time {
	grace := max(interval/2, minQuoteGrace)
	last := lastQuote
	if since.After(last) {
		last = since
	}
	return last.Add(interval + grace)
}
