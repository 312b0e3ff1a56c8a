package attesttest

import (
	"io"
	"testing"

	"github.com/google/go-tpm-tools/simulator"

	"github.com/stockade-hpc/stockade/attest"
)

// Simulator is go-tpm-tools' in-process (cgo) TPM simulator. There is one
// per process: OpenSimulator blocks while another test holds it, so tests
// using it must not run in parallel.
type Simulator struct {
	sim *simulator.Simulator
}

// OpenSimulator powers on a fresh simulator (new seeds, so a new EK and
// SRK) and turns it off when the test ends.
func OpenSimulator(t testing.TB) *Simulator {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatalf("attesttest: simulator: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return &Simulator{sim: sim}
}

// Open opens the simulator as an attest.TPM with log (see attest.Open).
// Closing that TPM leaves the simulator on, so a test can reopen it the
// way a restarted agent reopens its TPM.
func (s *Simulator) Open(log *attest.EventLog) (*attest.TPM, error) {
	return attest.OpenTransport(agentNopCloser{s.sim}, log)
}

// Reboot resets the simulator like a host reboot: PCRs back to zero,
// persistent objects and NV kept.
func (s *Simulator) Reboot() error { return s.sim.Reset() }

// agentNopCloser keeps attest.TPM.Close from shutting the simulator down.
type agentNopCloser struct{ io.ReadWriter }

func (agentNopCloser) Close() error { return nil }
