package server

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/attest/attesttest"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/policy"
	"github.com/stockade-hpc/stockade/raftstore"
)

func TestNonces(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	type step struct {
		use  int // index of the issued nonce to use; -1: one never issued
		node string
		at   time.Duration
		want string
	}
	tests := []struct {
		name   string
		issue  []string // a nonce per entry, to that node, at t0
		steps  []step
		ttl    time.Duration
		maxPer bool
	}{
		{name: "single use", issue: []string{"n1"}, ttl: time.Minute, steps: []step{
			{0, "n1", time.Second, ""},
			{0, "n1", 2 * time.Second, codeNonceReplayed},
		}},
		{name: "another node's nonce", issue: []string{"n1"}, ttl: time.Minute, steps: []step{
			{0, "n2", time.Second, codeNonceUnknown},
			{0, "n1", time.Second, ""},
		}},
		{name: "never issued", issue: []string{"n1"}, ttl: time.Minute, steps: []step{
			{-1, "n1", time.Second, codeNonceUnknown},
		}},
		{name: "expired", issue: []string{"n1"}, ttl: time.Minute, steps: []step{
			{0, "n1", time.Minute, codeNonceUnknown},
		}},
		{name: "oldest dropped past the per-node limit", issue: []string{"n1", "n1", "n1", "n1", "n1", "n2"}, ttl: time.Minute, steps: []step{
			{0, "n1", time.Second, codeNonceUnknown},
			{1, "n1", time.Second, ""},
			{4, "n1", time.Second, ""},
			{5, "n2", time.Second, ""},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAttestState()
			var nonces [][]byte
			for i, node := range tc.issue {
				n, err := a.newNonce(node, t0.Add(time.Duration(i)*time.Millisecond), tc.ttl)
				if err != nil {
					t.Fatal(err)
				}
				nonces = append(nonces, n)
			}
			for i, s := range tc.steps {
				n := bytes.Repeat([]byte{7}, 32)
				if s.use >= 0 {
					n = nonces[s.use]
				}
				if got := a.useNonce(s.node, n, t0.Add(s.at)); got != s.want {
					t.Errorf("step %d: got %q, want %q", i, got, s.want)
				}
			}
		})
	}
}

func TestSessions(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name  string
		takes []time.Duration // when the session is taken
		want  []bool
	}{
		{"one activation per session", []time.Duration{time.Second, 2 * time.Second}, []bool{true, false}},
		{"expired", []time.Duration{sessionTTL}, []bool{false}},
		{"just in time", []time.Duration{sessionTTL - time.Millisecond}, []bool{true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAttestState()
			id, err := a.addSession(&enrollSession{name: "n1"}, t0)
			if err != nil {
				t.Fatal(err)
			}
			for i, at := range tc.takes {
				if got := a.takeSession(id, t0.Add(at)) != nil; got != tc.want[i] {
					t.Errorf("take %d at +%s: %v, want %v", i, at, got, tc.want[i])
				}
			}
		})
	}

	t.Run("bounded", func(t *testing.T) {
		a := newAttestState()
		for i := range maxSessions {
			if _, err := a.addSession(&enrollSession{}, t0); err != nil {
				t.Fatalf("session %d: %v", i, err)
			}
		}
		if _, err := a.addSession(&enrollSession{}, t0); err != errTooManySessions {
			t.Fatalf("past the limit: %v", err)
		}
		if _, err := a.addSession(&enrollSession{}, t0.Add(sessionTTL)); err != nil {
			t.Fatalf("after the others expired: %v", err)
		}
	})
}

func TestRefusalLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name string
		keys []string
		at   []time.Duration
		want int // allowed
	}{
		{"same refusal once a minute", []string{"a", "a", "a"}, []time.Duration{0, time.Second, refusalDedup}, 2},
		{"distinct refusals up to the burst", seq(refusalBurst + 5), make([]time.Duration, refusalBurst+5), refusalBurst},
		{"refills", seq(refusalBurst + 2), append(make([]time.Duration, refusalBurst+1), 2*refusalEvery), refusalBurst + 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var l refusalLimiter
			got := 0
			for i, k := range tc.keys {
				if l.allow(k, t0.Add(tc.at[i])) {
					got++
				}
			}
			if got != tc.want {
				t.Errorf("allowed %d, want %d", got, tc.want)
			}
		})
	}
}

func seq(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strings.Repeat("k", i+1)
	}
	return out
}

func TestQuoteDeadline(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name     string
		last     time.Time
		since    time.Time
		interval time.Duration
		want     time.Time
	}{
		{"grace is half the interval", t0, t0.Add(-time.Hour), time.Minute, t0.Add(90 * time.Second)},
		{"at least minQuoteGrace", t0, time.Time{}, 4 * time.Second, t0.Add(4*time.Second + minQuoteGrace)},
		{"a new leader gives a fresh grace", t0, t0.Add(time.Hour), time.Minute, t0.Add(time.Hour + 90*time.Second)},
		{"never quoted", time.Time{}, t0, time.Minute, t0.Add(90 * time.Second)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := quoteDeadline(tc.last, tc.since, tc.interval); !got.Equal(tc.want) {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestRefusalText(t *testing.T) {
	tests := []struct{ code, reason, want string }{
		{"ek-untrusted", "EK certificate: bad", "ek-untrusted: EK certificate: bad"},
		{"pcr-mismatch", "pcr-mismatch: PCR 0 = 00", "pcr-mismatch: PCR 0 = 00"},
		{"nonce-mismatch", "", "nonce-mismatch"},
		{"x", "two\nlines", "x: two lines"},
	}
	for _, tc := range tests {
		if got := refusalText(tc.code, tc.reason); got != tc.want {
			t.Errorf("refusalText(%q, %q) = %q, want %q", tc.code, tc.reason, got, tc.want)
		}
	}
}

func TestLogEntries(t *testing.T) {
	tests := []struct {
		name     string
		data     []byte
		wantText string
		wantHex  string
	}{
		{"text", []byte(policy.EventAgentBinary + "/usr/bin/stockade"), policy.EventAgentBinary + "/usr/bin/stockade", ""},
		{"NUL-terminated text", []byte("grub_cmd: linux\x00"), "grub_cmd: linux\x00", ""},
		{"binary", []byte{0x61, 0xdf, 0xe4, 0x8b, 0x00, 0x01}, "", "61dfe48b0001"},
		{"control characters", []byte("a\x1b[2Jb"), "", "611b5b324a62"},
		{"empty", nil, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := logEntries([]policy.Measurement{{PCR: 15, Type: 0xd, Digest: []byte{0xab}, Data: tc.data}})
			if len(got) != 1 || got[0].Data != tc.wantText || got[0].DataHex != tc.wantHex || got[0].Digest != "ab" {
				t.Errorf("got %+v", got)
			}
		})
	}
}

func TestParseTPMCABundle(t *testing.T) {
	ca := attesttest.NewVerifierCA(t, "vendor")
	ca2 := attesttest.NewVerifierCA(t, "vendor 2")
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pki.EncodeCertPEM(ca.Cert.Raw)
	tests := []struct {
		name    string
		data    []byte
		want    int
		wantErr bool
	}{
		{"one", certPEM, 1, false},
		{"two, with other blocks and text", slices.Concat([]byte("# vendors\n"), certPEM, keyPEM, pki.EncodeCertPEM(ca2.Cert.Raw)), 2, false},
		{"empty", nil, 0, true},
		{"no certificates", keyPEM, 0, true},
		{"damaged certificate", pki.EncodeCertPEM([]byte("nope")), 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, n, err := parseTPMCABundle(tc.data)
			if (err != nil) != tc.wantErr || n != tc.want {
				t.Errorf("got %d, %v", n, err)
			}
		})
	}
}

func TestCheckEnroll(t *testing.T) {
	_, csr, _ := newCSR(t, "n1")
	ek, err := pki.NewKey() // any PKIX key parses; the EK's kind is the TPM's business
	if err != nil {
		t.Fatal(err)
	}
	ekDER, err := x509.MarshalPKIXPublicKey(ek.Public())
	if err != nil {
		t.Fatal(err)
	}
	good := func() *attest.EnrollRequest {
		id := &attest.Identity{EKPublic: ekDER}
		id.AK.Public = []byte{1}
		return &attest.EnrollRequest{Name: "n1", Identity: id, CSR: csr}
	}
	tests := []struct {
		name string
		edit func(*attest.EnrollRequest)
		want string // error prefix; "" passes
	}{
		{"good", func(*attest.EnrollRequest) {}, ""},
		{"bad name", func(r *attest.EnrollRequest) { r.Name = "../x" }, "name:"},
		{"no CSR", func(r *attest.EnrollRequest) { r.CSR = nil }, "csr:"},
		{"no identity", func(r *attest.EnrollRequest) { r.Identity = nil }, "identity:"},
		{"bad EK", func(r *attest.EnrollRequest) { r.Identity.EKPublic = []byte("x") }, "identity.ek_public:"},
		{"no AK", func(r *attest.EnrollRequest) { r.Identity.AK.Public = nil }, "identity.ak:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := good()
			tc.edit(r)
			e, err := checkEnroll(r)
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want == "" && e.ekFP != attest.EKFingerprint(ek.Public()):
				t.Errorf("fingerprint %s", e.ekFP)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Errorf("got %v, want %s...", err, tc.want)
			case tc.want != "" && err.(*httpError).status != http.StatusBadRequest:
				t.Errorf("status %d", err.(*httpError).status)
			}
		})
	}
}

func TestAgentCertError(t *testing.T) {
	st := raftstore.NewStore()
	fp := "sha256:" + strings.Repeat("ab", 32)
	for i, cmd := range []*raftstore.Command{
		{Type: raftstore.CmdRegisterNode, Register: &api.AgentRegisterRequest{Name: "token", CPUs: 1}},
		{Type: raftstore.CmdNodeAttested, Attest: &raftstore.NodeAttestation{Node: "tpm", Trust: api.TrustAttested, EKFingerprint: fp, CertSerial: "a1"}},
		{Type: raftstore.CmdRevokeCert, Serials: []string{"dead"}},
		{Type: raftstore.CmdNodeAttested, Attest: &raftstore.NodeAttestation{Node: "bare", Trust: api.TrustAttested, EKFingerprint: fp, CertSerial: "b1"}},
		{Type: raftstore.CmdRevokeCert, Serials: []string{"b1"}},
	} {
		cmd.Time = time.Now().UnixNano()
		if err, ok := st.ApplyCommand(uint64(i+1), cmd).(error); ok {
			t.Fatal(err)
		}
	}
	snap := st.Snapshot()
	tests := []struct {
		name, node, serial string
		wantStatus         int
		wantSuperseded     bool
	}{
		{"token node, any certificate", "token", "1234", 0, false},
		{"token node, revoked", "token", "dead", 401, false},
		{"attested node, current", "tpm", "a1", 0, false},
		{"attested node, older certificate", "tpm", "a0", 401, true},
		{"attested node, no serial forwarded", "tpm", "", 401, true},
		{"unknown node", "new", "77", 0, false},
		{"current certificate revoked", "bare", "b1", 401, false},
		{"current certificate revoked, no serial forwarded", "bare", "", 401, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			superseded, err := agentCertError(snap, tc.node, tc.serial)
			got := 0
			if err != nil {
				got = err.(*httpError).status
			}
			if got != tc.wantStatus || superseded != tc.wantSuperseded {
				t.Errorf("got %d superseded=%v (%v)", got, superseded, err)
			}
		})
	}
}

// TestAttestWire pins the JSON field names agents and the CLI rely on.
func TestAttestWire(t *testing.T) {
	tests := []struct {
		name string
		v    any
		keys []string
	}{
		{"enroll request", attest.EnrollRequest{Identity: &attest.Identity{}}, []string{"name", "identity", "csr"}},
		{"enroll response", attest.EnrollResponse{}, []string{"session", "challenge"}},
		{"activate request", attest.ActivateRequest{}, []string{"session", "secret", "quote"}},
		{"nonce response", attest.NonceResponse{}, []string{"nonce"}},
		{"quote request", attest.QuoteRequest{}, []string{"nonce", "quote", "csr"}},
		{"digest request", digestRequest{}, []string{"digest"}},
		{"approve request", approveRequest{}, []string{"fingerprint", "comment"}},
		{"revoke request", revokeRequest{Serial: "1"}, []string{"node", "reason", "serial"}},
		{"attest log", attestLogResponse{LastQuote: time.Unix(1, 0)}, []string{"node", "last_quote", "measurements"}},
		{"measurement", attestLogEntry{Data: "x"}, []string{"pcr", "type", "digest", "data"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			for _, k := range tc.keys {
				if _, ok := m[k]; !ok {
					t.Errorf("%s has no %q: %s", tc.name, k, b)
				}
			}
		})
	}
}

func TestCoversAll(t *testing.T) {
	tests := []struct {
		recorded []int
		seen     map[int]string
		want     bool
	}{
		{[]int{0, 1}, map[int]string{0: "a", 1: "b"}, true},
		{[]int{0}, map[int]string{0: "a", 1: "b"}, false},
		{nil, map[int]string{}, true},
	}
	for _, tc := range tests {
		if got := coversAll(tc.recorded, tc.seen); got != tc.want {
			t.Errorf("coversAll(%v, %v) = %v", tc.recorded, tc.seen, got)
		}
	}
}
