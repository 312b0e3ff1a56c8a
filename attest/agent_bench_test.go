package attest_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/attest/attesttest"
)

// agentBenchSwtpm opens a measured swtpm for a benchmark.
func agentBenchSwtpm(b *testing.B) (*attest.TPM, string) {
	b.Helper()
	sw := attesttest.StartSwtpm(b, b.TempDir())
	stateDir := b.TempDir()
	log, err := attest.OpenEventLog(filepath.Join(stateDir, attest.EventLogFile))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { log.Close() })
	tpm, err := attest.Open(sw.Spec, log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tpm.Close() })
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	if err := attest.MeasureAgent(tpm, log, attest.DefaultPCR, exe, []byte(`{}`)); err != nil {
		b.Fatal(err)
	}
	return tpm, stateDir
}

// BenchmarkQuoteSwtpm is the agent's cost of answering a nonce: PCR reads,
// a quote per bank (sha256, sha1) and a copy of the log.
func BenchmarkQuoteSwtpm(b *testing.B) {
	tests := []struct {
		name string
		pcrs []int
	}{
		{"pcr15", []int{attest.DefaultPCR}},
		{"all24", nil},
	}
	tpm, stateDir := agentBenchSwtpm(b)
	a, err := attest.LoadOrCreateAK(tpm, stateDir)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	nonce := make([]byte, 32)
	for _, tc := range tests {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := a.Quote(nonce, tc.pcrs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEnrollAgentSide is the agent's part of enrolling: create and
// store the AK, then gather the identity (EK, EK certificate, AK).
func BenchmarkEnrollAgentSide(b *testing.B) {
	tpm, stateDir := agentBenchSwtpm(b)
	for b.Loop() {
		os.Remove(filepath.Join(stateDir, attest.AKFile))
		a, err := attest.LoadOrCreateAK(tpm, stateDir)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := a.Identity(); err != nil {
			b.Fatal(err)
		}
		a.Close()
	}
}
