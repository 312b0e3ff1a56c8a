package attest_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	goattest "github.com/google/go-attestation/attest"

	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/attest/attesttest"
	"github.com/stockade-hpc/stockade/policy"
)

// agentNode is a TPM the agent tests run against. open opens it (again)
// with the log; reboot resets it like a host reboot.
type agentNode struct {
	open       func(log *attest.EventLog) (*attest.TPM, error)
	reboot     func() error
	powerCycle func() error // swtpm: a new process on the same state
}

// agentBackends are the TPMs every agent test runs on.
var agentBackends = []struct {
	name  string
	start func(t *testing.T) agentNode
}{
	{"simulator", func(t *testing.T) agentNode {
		sim := attesttest.OpenSimulator(t)
		return agentNode{open: sim.Open, reboot: sim.Reboot, powerCycle: sim.Reboot}
	}},
	{"swtpm-tcp", func(t *testing.T) agentNode {
		sw := attesttest.StartSwtpm(t, t.TempDir())
		return agentSwtpmNode(sw)
	}},
	{"swtpm-unix", func(t *testing.T) agentNode {
		sw := attesttest.StartSwtpmWith(t, agentShortTempDir(t), attesttest.SwtpmConfig{Unix: true})
		return agentSwtpmNode(sw)
	}},
}

func agentSwtpmNode(sw *attesttest.Swtpm) agentNode {
	return agentNode{
		open:       func(log *attest.EventLog) (*attest.TPM, error) { return attest.Open(sw.Spec, log) },
		reboot:     sw.Reboot,
		powerCycle: sw.Restart,
	}
}

// agentShortTempDir keeps unix socket paths under the 108-byte limit.
func agentShortTempDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "stockade-agent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// agentStart is the agent's start sequence: open the log in the state
// directory, the TPM with it, measure the agent, load or create the AK.
func agentStart(t *testing.T, node agentNode, stateDir string, config []byte) (*attest.Agent, *attest.TPM) {
	t.Helper()
	log, err := attest.OpenEventLog(filepath.Join(stateDir, attest.EventLogFile))
	if err != nil {
		t.Fatalf("OpenEventLog: %v", err)
	}
	t.Cleanup(func() { log.Close() })
	tpm, err := node.open(log)
	if err != nil {
		t.Fatalf("open TPM: %v", err)
	}
	t.Cleanup(func() { tpm.Close() })
	if err := attest.MeasureAgent(tpm, log, attest.DefaultPCR, agentBinary(t), config); err != nil {
		t.Fatalf("MeasureAgent: %v", err)
	}
	a, err := attest.LoadOrCreateAK(tpm, stateDir)
	if err != nil {
		t.Fatalf("LoadOrCreateAK: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a, tpm
}

// agentBinary is a stand-in for the agent's executable.
func agentBinary(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// agentVerify does what the verifier does with a quote: check the
// signatures over every bank, then replay the log against the PCRs.
func agentVerify(id *attest.Identity, nonce []byte, q *attest.Quote) ([]goattest.Event, error) {
	akPub, err := goattest.ParseAKPublic(id.AK.Public)
	if err != nil {
		return nil, err
	}
	var pcrs []goattest.PCR
	for _, p := range q.PCRs {
		h := crypto.SHA256
		if p.Bank == "sha1" {
			h = crypto.SHA1
		}
		pcrs = append(pcrs, goattest.PCR{Index: p.Index, Digest: p.Digest, DigestAlg: h})
	}
	if err := akPub.VerifyAll(q.Quotes, pcrs, nonce); err != nil {
		return nil, err
	}
	el, err := goattest.ParseEventLog(q.EventLog)
	if err != nil {
		return nil, err
	}
	return el.Verify(pcrs)
}

func agentNonce(t testing.TB) []byte {
	n := make([]byte, 32)
	if _, err := rand.Read(n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAgentEnrollAndQuote(t *testing.T) {
	for _, b := range agentBackends {
		t.Run(b.name, func(t *testing.T) {
			node := b.start(t)
			config := []byte(`{"controller":"ctl:6817","pcr":15}`)
			a, _ := agentStart(t, node, t.TempDir(), config)

			id, err := a.Identity()
			if err != nil {
				t.Fatalf("Identity: %v", err)
			}
			ekPub, err := x509.ParsePKIXPublicKey(id.EKPublic)
			if err != nil {
				t.Fatalf("EK public: %v", err)
			}

			// The verifier's side of credential activation.
			params := goattest.ActivationParameters{EK: ekPub, AK: id.AK}
			secret, cred, err := params.Generate()
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			got, err := a.Activate(&attest.Challenge{Credential: *cred})
			if err != nil {
				t.Fatalf("Activate: %v", err)
			}
			if !bytes.Equal(got, secret) {
				t.Fatal("activated secret differs")
			}

			nonce := attest.BindNonce(agentNonce(t), []byte("tls key"))
			q, err := a.Quote(nonce, []int{0, 7, attest.DefaultPCR})
			if err != nil {
				t.Fatalf("Quote: %v", err)
			}
			if len(q.Quotes) != 2 || len(q.PCRs) != 6 {
				t.Fatalf("got %d quotes, %d PCRs; want 2 banks of 3", len(q.Quotes), len(q.PCRs))
			}
			events, err := agentVerify(id, nonce, q)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			wantData := []string{
				policy.EventAgentBinary + agentBinary(t),
				policy.EventAgentConfig + string(config),
			}
			var gotData []string
			for _, e := range events {
				if e.Index == attest.DefaultPCR {
					gotData = append(gotData, string(e.Data))
				}
			}
			if strings.Join(gotData, "\n") != strings.Join(wantData, "\n") {
				t.Fatalf("verified events %q, want %q", gotData, wantData)
			}
			if _, err := agentVerify(id, agentNonce(t), q); err == nil {
				t.Fatal("quote verified with another nonce")
			}
		})
	}
}

func TestAgentTamperingFailsReplay(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(tpm *attest.TPM, log *attest.EventLog) error
		ok     bool
	}{
		{"logged extend", func(tpm *attest.TPM, log *attest.EventLog) error {
			return attest.Extend(tpm, log, attest.DefaultPCR, []byte("job prolog"), attest.EventTypeIPL)
		}, true},
		{"unlogged extend", func(tpm *attest.TPM, _ *attest.EventLog) error {
			return attest.ExtendUnlogged(tpm, attest.DefaultPCR, []byte("rootkit"))
		}, false},
		{"unlogged extend of another PCR", func(tpm *attest.TPM, _ *attest.EventLog) error {
			return attest.ExtendUnlogged(tpm, 14, []byte("rootkit"))
		}, true}, // go-attestation skips PCRs without events: the verifier's job
	}
	for _, b := range agentBackends[:2] {
		for _, tc := range tests {
			t.Run(b.name+"/"+tc.name, func(t *testing.T) {
				node := b.start(t)
				a, tpm := agentStart(t, node, t.TempDir(), []byte(`{}`))
				if err := tc.tamper(tpm, tpm.EventLog()); err != nil {
					t.Fatal(err)
				}
				id, err := a.Identity()
				if err != nil {
					t.Fatal(err)
				}
				nonce := agentNonce(t)
				q, err := a.Quote(nonce, nil)
				if err != nil {
					t.Fatal(err)
				}
				_, err = agentVerify(id, nonce, q)
				var replay goattest.ReplayError
				switch {
				case tc.ok && err != nil:
					t.Fatalf("verify: %v", err)
				case !tc.ok && !errors.As(err, &replay):
					t.Fatalf("verify: %v, want a ReplayError", err)
				case !tc.ok && !(len(replay.InvalidPCRs) == 1 && replay.InvalidPCRs[0] == attest.DefaultPCR):
					t.Fatalf("invalid PCRs %v, want [%d]", replay.InvalidPCRs, attest.DefaultPCR)
				}
			})
		}
	}
}

// TestAgentRestartAndReboot: an agent restart resumes the log and the AK;
// a TPM reset starts a new log, and the AK still loads.
func TestAgentRestartAndReboot(t *testing.T) {
	for _, b := range agentBackends {
		t.Run(b.name, func(t *testing.T) {
			node := b.start(t)
			stateDir := t.TempDir()
			a, tpm := agentStart(t, node, stateDir, []byte(`{"v":1}`))
			id1, err := a.Identity()
			if err != nil {
				t.Fatal(err)
			}
			a.Close()
			tpm.Close()
			tpm.EventLog().Close()

			steps := []struct {
				name          string
				reset         func() error // nil: only the agent restarts
				wantRestarted bool
				wantEvents    int // in the log after this start's measurement
			}{
				{"agent restart", nil, false, 4},
				{"second agent restart", nil, false, 6},
				{"reboot", node.reboot, true, 2},
				{"restart after reboot", nil, false, 4},
				{"power cycle", node.powerCycle, true, 2},
				{"restart after power cycle", nil, false, 4},
			}
			for _, st := range steps {
				if st.reset != nil {
					if err := st.reset(); err != nil {
						t.Fatalf("%s: %v", st.name, err)
					}
				}
				log, err := attest.OpenEventLog(filepath.Join(stateDir, attest.EventLogFile))
				if err != nil {
					t.Fatal(err)
				}
				tpm, err := node.open(log)
				if err != nil {
					t.Fatalf("%s: open: %v", st.name, err)
				}
				if tpm.LogRestarted() != st.wantRestarted {
					t.Fatalf("%s: LogRestarted = %v", st.name, tpm.LogRestarted())
				}
				if st.reset != nil {
					pcr, err := tpm.PCR("sha256", attest.DefaultPCR)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(pcr, make([]byte, 32)) || len(log.Entries()) != 0 {
						t.Fatalf("%s: PCR %x, %d events; want zero and none", st.name, pcr, len(log.Entries()))
					}
				}
				if err := attest.MeasureAgent(tpm, log, attest.DefaultPCR, agentBinary(t), []byte(`{"v":1}`)); err != nil {
					t.Fatal(err)
				}
				if n := len(log.Entries()); n != st.wantEvents {
					t.Fatalf("%s: %d events, want %d", st.name, n, st.wantEvents)
				}
				a, err := attest.LoadOrCreateAK(tpm, stateDir)
				if err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				id, err := a.Identity()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(id.AK.Public, id1.AK.Public) || !bytes.Equal(id.EKPublic, id1.EKPublic) {
					t.Fatalf("%s: identity changed", st.name)
				}
				nonce := agentNonce(t)
				q, err := a.Quote(nonce, nil)
				if err != nil {
					t.Fatal(err)
				}
				// Verified against the identity enrolled before the restarts.
				if _, err := agentVerify(id1, nonce, q); err != nil {
					t.Fatalf("%s: verify: %v", st.name, err)
				}
				a.Close()
				tpm.Close()
				log.Close()
			}
		})
	}
}

func TestAgentSwtpmEKCertificate(t *testing.T) {
	tests := []struct {
		name string
		cfg  attesttest.SwtpmConfig
	}{
		{"sha1 and sha256 banks", attesttest.SwtpmConfig{}},
		{"sha256 bank only", attesttest.SwtpmConfig{PCRBanks: "sha256"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sw := attesttest.StartSwtpmWith(t, t.TempDir(), tc.cfg)
			a, _ := agentStart(t, agentSwtpmNode(sw), t.TempDir(), []byte(`{}`))
			id, err := a.Identity()
			if err != nil {
				t.Fatal(err)
			}
			if len(id.EKCert) == 0 {
				t.Fatal("no EK certificate")
			}
			cert, err := goattest.ParseEKCertificate(id.EKCert)
			if err != nil {
				t.Fatalf("ParseEKCertificate: %v", err)
			}
			certPub, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(certPub, id.EKPublic) {
				t.Fatal("EK certificate is not for the EK")
			}
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(agentParsePEM(t, sw.CACertPEM))
			inter.AddCert(agentParsePEM(t, sw.IntermediatePEM))
			// EK certificates carry TPM-specific extensions and an empty
			// subject; check the signature chain only.
			cert.UnhandledCriticalExtensions = nil
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Fatalf("EK certificate chain: %v", err)
			}

			nonce := agentNonce(t)
			q, err := a.Quote(nonce, []int{attest.DefaultPCR})
			if err != nil {
				t.Fatal(err)
			}
			wantQuotes := strings.Count(tc.cfg.PCRBanks, ",") + 1
			if tc.cfg.PCRBanks == "" {
				wantQuotes = 2
			}
			if len(q.Quotes) != wantQuotes {
				t.Fatalf("%d quotes, want %d", len(q.Quotes), wantQuotes)
			}
			if _, err := agentVerify(id, nonce, q); err != nil {
				t.Fatalf("verify: %v", err)
			}
		})
	}
}

func agentParsePEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAgentAKFile(t *testing.T) {
	node := agentBackends[0].start(t)
	stateDir := t.TempDir()
	agentStart(t, node, stateDir, []byte(`{}`))
	fi, err := os.Stat(filepath.Join(stateDir, attest.AKFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("AK blob mode %v, want 0600", fi.Mode().Perm())
	}

	tests := []struct {
		name string
		blob []byte
	}{
		{"garbage", []byte("not a key")},
		{"empty", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, attest.AKFile), tc.blob, 0o600); err != nil {
				t.Fatal(err)
			}
			tpm, err := node.open(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tpm.Close()
			if _, err := attest.LoadOrCreateAK(tpm, dir); err == nil {
				t.Fatal("a bad AK blob loaded")
			}
		})
	}
}

// TestAgentQuoteWhileMeasuring: quotes taken while the agent extends
// always come with a log that explains them.
func TestAgentQuoteWhileMeasuring(t *testing.T) {
	node := agentBackends[0].start(t)
	a, tpm := agentStart(t, node, t.TempDir(), []byte(`{}`))
	id, err := a.Identity()
	if err != nil {
		t.Fatal(err)
	}
	const n = 30
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := attest.Extend(tpm, tpm.EventLog(), attest.DefaultPCR, []byte{byte(i)}, attest.EventTypeIPL); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for range n {
		nonce := agentNonce(t)
		q, err := a.Quote(nonce, []int{attest.DefaultPCR})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agentVerify(id, nonce, q); err != nil {
			t.Fatalf("verify: %v", err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
