package attest_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	goattest "github.com/google/go-attestation/attest"

	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/attest/attesttest"
	"github.com/stockade-hpc/stockade/policy"
)

// verifierFixture is a simulated node: a TPM with an AK, PCRs 0, 7 and 15
// measured and logged like firmware and the agent do.
type verifierFixture struct {
	sim *attesttest.VerifierSim
	ak  *goattest.AK
	id  *attest.Identity
	// agentDigest is the sha256 "of the agent binary" logged in PCR 15.
	agentDigest []byte
}

var verifierBanks = []struct {
	name string
	alg  goattest.HashAlg
}{{"sha256", goattest.HashSHA256}, {"sha1", goattest.HashSHA1}}

func newVerifierFixture(tb testing.TB, akAlg goattest.Algorithm) *verifierFixture {
	tb.Helper()
	sim := attesttest.NewVerifierSim(tb)
	f := &verifierFixture{sim: sim, ak: verifierNewAK(tb, sim, akAlg)}
	eks, err := sim.TPM.EKs()
	if err != nil || len(eks) == 0 {
		tb.Fatalf("EKs: %v (%d)", err, len(eks))
	}
	ekDER, err := x509.MarshalPKIXPublicKey(eks[0].Public)
	if err != nil {
		tb.Fatal(err)
	}
	f.id = &attest.Identity{EKPublic: ekDER, AK: f.ak.AttestationParameters()}

	sim.Measure(tb, 0, 0x8, []byte("firmware version 1.2.3"))     // EV_S_CRTM_VERSION
	sim.Measure(tb, 0, 0x80000008, []byte("firmware volume"))     // EV_EFI_PLATFORM_FIRMWARE_BLOB
	sim.Measure(tb, 7, 0x80000001, []byte("SecureBoot=1"))        // EV_EFI_VARIABLE_DRIVER_CONFIG
	sim.Measure(tb, 7, 0x4, []byte{0, 0, 0, 0})                   // EV_SEPARATOR
	bin := sha256.Sum256([]byte("the stockade agent executable")) // the file's hash
	f.agentDigest = bin[:]
	sim.MeasureDigests(tb, attesttest.VerifierEvent{
		PCR: 15, Type: 0xD, SHA1: make([]byte, 20), SHA256: bin[:],
		Data: []byte(policy.EventAgentBinary + "/usr/local/bin/stockade"),
	})
	sim.Measure(tb, 15, 0xD, []byte(policy.EventAgentConfig+`{"pcr":15}`))
	return f
}

func verifierNewAK(tb testing.TB, sim *attesttest.VerifierSim, alg goattest.Algorithm) *goattest.AK {
	tb.Helper()
	ak, err := sim.TPM.NewAK(&goattest.AKConfig{Algorithm: alg})
	if err != nil {
		tb.Fatalf("NewAK(%s): %v", alg, err)
	}
	tb.Cleanup(func() { ak.Close(sim.TPM) })
	return ak
}

// quote makes what an agent sends: a quote of pcrs with nonce in the
// sha256 and sha1 banks, their values and the event log.
func (f *verifierFixture) quote(tb testing.TB, ak *goattest.AK, nonce []byte, pcrs []int) *attest.Quote {
	tb.Helper()
	q := &attest.Quote{EventLog: f.sim.EventLog()}
	for _, b := range verifierBanks {
		qt, err := ak.QuotePCRs(f.sim.TPM, nonce, b.alg, pcrs)
		if err != nil {
			tb.Fatalf("quote %s: %v", b.name, err)
		}
		q.Quotes = append(q.Quotes, *qt)
		vals := f.sim.PCRs(tb, b.alg)
		for _, i := range pcrs {
			q.PCRs = append(q.PCRs, attest.PCR{Index: i, Bank: b.name, Digest: vals[i]})
		}
	}
	return q
}

// verifierCase is one VerifyQuote scenario; setup returns its arguments
// from a fresh fixture in which the verifier expects nonce and the policy
// is PCRs 0, 7 and 15 in sha256.
type verifierCase struct {
	name    string
	akAlg   goattest.Algorithm
	setup   func(t *testing.T, f *verifierFixture, args *verifierArgs)
	wantErr *attest.VerifyError
	wantMsg string
	check   func(t *testing.T, f *verifierFixture, ev *policy.Evidence)
}

type verifierArgs struct {
	akPub []byte
	quote *attest.Quote
	nonce []byte
	pcrs  []int
	bank  string
}

var verifierPolicyPCRs = []int{0, 7, 15}

func verifierTLSKey(name string) []byte {
	s := sha256.Sum256([]byte(name))
	return s[:]
}

func TestVerifyQuote(t *testing.T) {
	nonce := attest.BindNonce([]byte("controller nonce 1"), verifierTLSKey("node tls key"))
	cases := []verifierCase{
		{
			name: "good",
			check: func(t *testing.T, f *verifierFixture, ev *policy.Evidence) {
				verifierCheckEvidence(t, f, ev, "sha256", goattest.HashSHA256)
			},
		},
		{
			name:  "good with an ECDSA AK",
			akAlg: goattest.ECDSA,
			check: func(t *testing.T, f *verifierFixture, ev *policy.Evidence) {
				verifierCheckEvidence(t, f, ev, "sha256", goattest.HashSHA256)
			},
		},
		{
			name:  "good in the sha1 bank",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) { a.bank = "sha1" },
			check: func(t *testing.T, f *verifierFixture, ev *policy.Evidence) {
				verifierCheckEvidence(t, f, ev, "sha1", goattest.HashSHA1)
			},
		},
		{
			name: "untouched PCR with no events is explained",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				a.pcrs = []int{0, 7, 8, 15}
				a.quote = f.quote(t, f.ak, a.nonce, a.pcrs)
			},
			check: func(t *testing.T, f *verifierFixture, ev *policy.Evidence) {
				if !ev.Explained[8] || !bytes.Equal(ev.PCRs[8], make([]byte, 32)) {
					t.Errorf("PCR 8 = %x explained=%v, want zeros, explained", ev.PCRs[8], ev.Explained[8])
				}
			},
		},
		{
			name: "quote relayed for another TLS key (man in the middle)",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				a.nonce = attest.BindNonce([]byte("controller nonce 1"), verifierTLSKey("attacker tls key"))
			},
			wantErr: attest.ErrNonce,
			wantMsg: "nonce mismatch (replayed or stale quote)",
		},
		{
			name: "replayed nonce",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				// A fresh quote over the nonce of an earlier round.
				old := attest.BindNonce([]byte("controller nonce 0"), verifierTLSKey("node tls key"))
				a.quote = f.quote(t, f.ak, old, a.pcrs)
			},
			wantErr: attest.ErrNonce,
		},
		{
			name: "stale quote",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				// The quote of an earlier round, kept from before a change.
				old := attest.BindNonce([]byte("controller nonce 0"), verifierTLSKey("node tls key"))
				a.quote = f.quote(t, f.ak, old, a.pcrs)
				f.sim.ExtendUnlogged(t, 15, []byte("the agent was replaced"))
			},
			wantErr: attest.ErrNonce,
		},
		{
			name: "tampered PCR value",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				verifierPCR(t, a.quote, "sha256", 15).Digest[3] ^= 1
			},
			wantErr: attest.ErrPCRValues,
		},
		{
			name: "PCR value withheld",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				a.quote.PCRs = slices.DeleteFunc(a.quote.PCRs, func(p attest.PCR) bool { return p.Bank == "sha256" && p.Index == 7 })
			},
			wantErr: attest.ErrPCRValues,
		},
		{
			name: "PCR value submitted twice",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				a.quote.PCRs = append(a.quote.PCRs, *verifierPCR(t, a.quote, "sha256", 7))
			},
			wantErr: attest.ErrPCRValues,
		},
		{
			name: "tampered signature",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				s := a.quote.Quotes[0].Signature
				s[len(s)-1] ^= 1
			},
			wantErr: attest.ErrSignature,
			wantMsg: "quote signature invalid",
		},
		{
			name: "quote signed by another AK than the enrolled one",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				other := verifierNewAK(t, f.sim, goattest.RSA)
				a.quote = f.quote(t, other, a.nonce, a.pcrs)
			},
			wantErr: attest.ErrSignature,
		},
		{
			name: "event log lies: an event's digest altered",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				ev := f.sim.Events()
				ev[4].SHA256 = bytes.Repeat([]byte{0xab}, 32) // the agent binary
				a.quote.EventLog = attesttest.VerifierEventLog(ev)
			},
			wantErr: attest.ErrEventLog,
			wantMsg: "event log does not replay to the quoted PCRs",
		},
		{
			name: "event log lies: an event removed",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				ev := f.sim.Events()
				a.quote.EventLog = attesttest.VerifierEventLog(slices.Delete(ev, 5, 6)) // the config
			},
			wantErr: attest.ErrEventLog,
		},
		{
			name: "event log lies: all of a PCR's events removed",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				ev := f.sim.Events()
				a.quote.EventLog = attesttest.VerifierEventLog(slices.DeleteFunc(ev, func(e attesttest.VerifierEvent) bool { return e.PCR == 15 }))
			},
			wantErr: attest.ErrNotExplained,
			wantMsg: "PCR 15 value not explained by the event log",
		},
		{
			name: "no event log",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				a.quote.EventLog = nil
			},
			wantErr: attest.ErrNotExplained,
			wantMsg: "PCR 0 value not explained by the event log",
		},
		{
			name: "malformed event log",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				a.quote.EventLog = a.quote.EventLog[:len(a.quote.EventLog)-3]
			},
			wantErr: attest.ErrEventLogMalformed,
		},
		{
			name: "PCR extended without a log event",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				f.sim.ExtendUnlogged(t, 16, []byte("hidden"))
				a.pcrs = []int{0, 7, 15, 16}
				a.quote = f.quote(t, f.ak, a.nonce, a.pcrs)
			},
			wantErr: attest.ErrNotExplained,
			wantMsg: "PCR 16 value not explained by the event log",
		},
		{
			name: "PCR extended without a log event after logged ones",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				f.sim.ExtendUnlogged(t, 15, []byte("hidden"))
				a.quote = f.quote(t, f.ak, a.nonce, a.pcrs)
			},
			wantErr: attest.ErrEventLog,
		},
		{
			name: "unexplained PCR outside the policy is reported, its events dropped",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				f.sim.ExtendUnlogged(t, 16, []byte("hidden"))
				a.quote = f.quote(t, f.ak, a.nonce, []int{0, 7, 15, 16})
				d := sha256.Sum256([]byte("a claim"))
				a.quote.EventLog = attesttest.VerifierEventLog(append(f.sim.Events(), attesttest.VerifierEvent{
					PCR: 16, Type: 0xD, SHA1: make([]byte, 20), SHA256: d[:], Data: []byte(policy.EventAgentBinary + "/fake"),
				}))
			},
			check: func(t *testing.T, f *verifierFixture, ev *policy.Evidence) {
				if ev.Explained[16] || len(ev.PCRs[16]) != 32 {
					t.Errorf("PCR 16 = %x explained=%v, want quoted and unexplained", ev.PCRs[16], ev.Explained[16])
				}
				for _, m := range ev.Measurements {
					if m.PCR == 16 {
						t.Errorf("measurement of unexplained PCR 16 kept: %q", m.Data)
					}
				}
			},
		},
		{
			name: "policy PCR not quoted",
			setup: func(t *testing.T, f *verifierFixture, a *verifierArgs) {
				a.quote = f.quote(t, f.ak, a.nonce, []int{0, 7})
			},
			wantErr: attest.ErrPCRNotQuoted,
		},
		{
			name:    "bank not quoted",
			setup:   func(t *testing.T, f *verifierFixture, a *verifierArgs) { a.bank = "sha384" },
			wantErr: attest.ErrBankMissing,
		},
		{
			name:    "garbage AK",
			setup:   func(t *testing.T, f *verifierFixture, a *verifierArgs) { a.akPub = []byte{0, 1, 2, 3} },
			wantErr: attest.ErrAKPublic,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newVerifierFixture(t, verifierAlg(tc.akAlg))
			a := &verifierArgs{akPub: f.id.AK.Public, nonce: nonce, pcrs: verifierPolicyPCRs, bank: "sha256"}
			a.quote = f.quote(t, f.ak, nonce, a.pcrs)
			if tc.setup != nil {
				tc.setup(t, f, a)
			}
			var v attest.Verifier
			ev, err := v.VerifyQuote(a.akPub, a.quote, a.nonce, a.pcrs, a.bank)
			if tc.wantErr != nil {
				verifierWantErr(t, err, tc.wantErr, tc.wantMsg)
				if ev != nil {
					t.Errorf("evidence returned with an error: %+v", ev)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyQuote: %v", err)
			}
			verifierGoAttestationAgrees(t, a, ev)
			if tc.check != nil {
				tc.check(t, f, ev)
			}
		})
	}
}

// verifierGoAttestationAgrees checks what VerifyQuote relies on to skip
// go-attestation's replay on success: that replay passes too.
func verifierGoAttestationAgrees(t *testing.T, a *verifierArgs, ev *policy.Evidence) {
	t.Helper()
	el, err := goattest.ParseEventLog(a.quote.EventLog)
	if err != nil {
		t.Fatal(err)
	}
	var pcrs []goattest.PCR
	for _, i := range a.pcrs {
		pcrs = append(pcrs, goattest.PCR{Index: i, Digest: ev.PCRs[i], DigestAlg: map[string]crypto.Hash{"sha1": crypto.SHA1, "sha256": crypto.SHA256}[a.bank]})
	}
	if _, err := el.Verify(pcrs); err != nil {
		t.Fatalf("go-attestation rejects what VerifyQuote accepted: %v", err)
	}
}

func verifierAlg(a goattest.Algorithm) goattest.Algorithm {
	if a == "" {
		return goattest.RSA
	}
	return a
}

func verifierWantErr(t *testing.T, err error, want *attest.VerifyError, msg string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
	t.Logf("rejected: %v", err)
	if got := attest.FailureCode(err); got != want.Code {
		t.Errorf("FailureCode = %q, want %q", got, want.Code)
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Errorf("err = %q, want it to say %q", err, msg)
	}
}

func verifierPCR(t *testing.T, q *attest.Quote, bank string, index int) *attest.PCR {
	t.Helper()
	for i := range q.PCRs {
		if q.PCRs[i].Bank == bank && q.PCRs[i].Index == index {
			return &q.PCRs[i]
		}
	}
	t.Fatalf("no %s PCR %d", bank, index)
	return nil
}

// verifierCheckEvidence checks evidence against the simulator's PCRs and
// the fixture's log.
func verifierCheckEvidence(t *testing.T, f *verifierFixture, ev *policy.Evidence, bank string, alg goattest.HashAlg) {
	t.Helper()
	if ev.Bank != bank {
		t.Errorf("Bank = %q, want %q", ev.Bank, bank)
	}
	vals := f.sim.PCRs(t, alg)
	for _, i := range verifierPolicyPCRs {
		if !bytes.Equal(ev.PCRs[i], vals[i]) {
			t.Errorf("PCR %d = %x, want %x", i, ev.PCRs[i], vals[i])
		}
		if !ev.Explained[i] {
			t.Errorf("PCR %d not explained", i)
		}
	}
	var want []policy.Measurement
	for _, e := range f.sim.Events() {
		d := e.SHA256
		if bank == "sha1" {
			d = e.SHA1
		}
		want = append(want, policy.Measurement{PCR: e.PCR, Type: e.Type, Digest: d, Data: e.Data})
	}
	if fmt.Sprint(ev.Measurements) != fmt.Sprint(want) {
		t.Errorf("Measurements =\n%v\nwant\n%v", ev.Measurements, want)
	}
	if bank == "sha256" {
		m := ev.Measurements[4]
		if m.PCR != 15 || !bytes.Equal(m.Digest, f.agentDigest) || !strings.HasPrefix(string(m.Data), policy.EventAgentBinary) {
			t.Errorf("agent binary measurement = %+v", m)
		}
	}
}

// TestEnrollmentAndPolicy runs enrollment and one attestation round end
// to end and hands the evidence to the policy.
func TestEnrollmentAndPolicy(t *testing.T) {
	f := newVerifierFixture(t, goattest.RSA)
	ek, err := x509.ParsePKIXPublicKey(f.id.EKPublic)
	if err != nil {
		t.Fatal(err)
	}
	ca := attesttest.NewVerifierCA(t, "TPM vendor root")
	f.id.EKCert = ca.IssueEKCert(t, ek, attesttest.VerifierEKCertOptions{})
	if err := attest.VerifyEKCertificate(f.id.EKCert, ek, ca.Pool(), nil); err != nil {
		t.Fatalf("VerifyEKCertificate: %v", err)
	}

	ch, secret, err := attest.NewChallenge(f.id)
	if err != nil {
		t.Fatalf("NewChallenge: %v", err)
	}
	got, err := f.ak.ActivateCredential(f.sim.TPM, ch.Credential)
	if err != nil {
		t.Fatalf("ActivateCredential: %v", err)
	}
	if err := attest.CheckActivation(secret, got); err != nil {
		t.Fatalf("CheckActivation: %v", err)
	}

	tlsKey := verifierTLSKey("node tls key")
	nonce := attest.BindNonce(ch.Nonce, tlsKey)
	pcrs := []int{0, 1, 2, 3, 4, 5, 6, 7, 15}
	q := f.quote(t, f.ak, nonce, pcrs)
	var v attest.Verifier
	ev, err := v.VerifyQuote(f.id.AK.Public, q, nonce, pcrs, "sha256")
	if err != nil {
		t.Fatalf("VerifyQuote: %v", err)
	}
	p := &policy.Policy{
		PCRs:            pcrs,
		AgentDigests:    []string{fmt.Sprintf("sha256:%x", f.agentDigest)},
		TrustOnFirstUse: true,
	}
	if d := p.Evaluate(ev); !d.OK {
		t.Fatalf("policy: %s", d.Reason)
	}
}

// BenchmarkVerifyQuote measures VerifyQuote, event log replay included, on
// one core, for an RSA and an ECDSA AK and a short (agent only) and a
// boot-sized log.
func BenchmarkVerifyQuote(b *testing.B) {
	for _, bc := range []struct {
		name   string
		alg    goattest.Algorithm
		events int // extra firmware-like events, spread over PCRs 0-7
	}{
		{"RSA/agent-log", goattest.RSA, 0},
		{"RSA/boot-log-100", goattest.RSA, 100},
		{"ECDSA/agent-log", goattest.ECDSA, 0},
		{"ECDSA/boot-log-100", goattest.ECDSA, 100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newVerifierFixture(b, bc.alg)
			for i := range bc.events {
				f.sim.Measure(b, i%8, 0x80000008, fmt.Appendf(nil, "firmware blob %d", i))
			}
			nonce := attest.BindNonce([]byte("bench nonce"), verifierTLSKey("node tls key"))
			pcrs := []int{0, 1, 2, 3, 4, 5, 6, 7, 15}
			q := f.quote(b, f.ak, nonce, pcrs)
			var v attest.Verifier
			if _, err := v.VerifyQuote(f.id.AK.Public, q, nonce, pcrs, "sha256"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := v.VerifyQuote(f.id.AK.Public, q, nonce, pcrs, "sha256"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
		})
	}
}
