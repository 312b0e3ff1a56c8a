// Package attesttest holds test helpers for package attest: simulated
// and software TPMs, event logs and EK certificates.
package attesttest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"testing"

	goattest "github.com/google/go-attestation/attest"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
)

// VerifierEvent is one TCG_PCR_EVENT2 record of a crypto-agile event log.
type VerifierEvent struct {
	PCR    int
	Type   uint32
	SHA1   []byte
	SHA256 []byte
	Data   []byte
}

// VerifierSim is the go-tpm-tools TPM simulator opened through
// go-attestation, with a log of the events measured through it. The
// simulator is a process-wide singleton: a second NewVerifierSim blocks
// until the first is closed, so tests using it must not run in parallel.
type VerifierSim struct {
	TPM    *goattest.TPM
	RW     io.ReadWriter // the raw simulator, for commands go-attestation lacks
	events []VerifierEvent
}

// verifierChannel gives go-attestation the simulator and the sim's log.
type verifierChannel struct {
	io.ReadWriteCloser
	sim *VerifierSim
}

func (c verifierChannel) MeasurementLog() ([]byte, error) { return c.sim.EventLog(), nil }

// NewVerifierSim powers on a freshly manufactured simulator (all PCRs
// zero) and closes it when the test ends.
func NewVerifierSim(tb testing.TB) *VerifierSim {
	tb.Helper()
	sim, err := simulator.Get()
	if err != nil {
		tb.Fatalf("TPM simulator: %v", err)
	}
	s := &VerifierSim{RW: sim}
	t, err := goattest.OpenTPM(&goattest.OpenConfig{CommandChannel: verifierChannel{sim, s}})
	if err != nil {
		sim.Close()
		tb.Fatalf("open simulator through go-attestation: %v", err)
	}
	s.TPM = t
	tb.Cleanup(func() { t.Close() }) // closes the simulator
	return s
}

// Measure extends pcr in the sha1 and sha256 banks with the hashes of data
// and logs the event.
func (s *VerifierSim) Measure(tb testing.TB, pcr int, typ uint32, data []byte) {
	tb.Helper()
	d1, d256 := sha1.Sum(data), sha256.Sum256(data)
	s.MeasureDigests(tb, VerifierEvent{PCR: pcr, Type: typ, SHA1: d1[:], SHA256: d256[:], Data: data})
}

// MeasureDigests extends e.PCR with e's digests and logs e, for events
// whose digest is not of their data (a file's hash, with its path as data).
func (s *VerifierSim) MeasureDigests(tb testing.TB, e VerifierEvent) {
	tb.Helper()
	s.extend(tb, e.PCR, e.SHA1, e.SHA256)
	s.events = append(s.events, e)
}

// ExtendUnlogged extends pcr with the hashes of data without logging it:
// what tampering looks like to a verifier.
func (s *VerifierSim) ExtendUnlogged(tb testing.TB, pcr int, data []byte) {
	tb.Helper()
	d1, d256 := sha1.Sum(data), sha256.Sum256(data)
	s.extend(tb, pcr, d1[:], d256[:])
}

func (s *VerifierSim) extend(tb testing.TB, pcr int, d1, d256 []byte) {
	tb.Helper()
	if err := tpm2.PCRExtend(s.RW, tpmutil.Handle(pcr), tpm2.AlgSHA1, d1, ""); err != nil {
		tb.Fatalf("extend PCR %d sha1: %v", pcr, err)
	}
	if err := tpm2.PCRExtend(s.RW, tpmutil.Handle(pcr), tpm2.AlgSHA256, d256, ""); err != nil {
		tb.Fatalf("extend PCR %d sha256: %v", pcr, err)
	}
}

// Events returns a copy of the logged events, to build lying logs from.
func (s *VerifierSim) Events() []VerifierEvent {
	return append([]VerifierEvent(nil), s.events...)
}

// EventLog returns the log of the events measured so far.
func (s *VerifierSim) EventLog() []byte {
	return VerifierEventLog(s.events)
}

// PCRs reads every PCR of a bank.
func (s *VerifierSim) PCRs(tb testing.TB, alg goattest.HashAlg) map[int][]byte {
	tb.Helper()
	pcrs, err := s.TPM.PCRs(alg)
	if err != nil {
		tb.Fatalf("read %v PCRs: %v", alg, err)
	}
	out := make(map[int][]byte, len(pcrs))
	for _, p := range pcrs {
		out[p.Index] = p.Digest
	}
	return out
}

// VerifierEventLog encodes events as a TCG PC Client crypto-agile log: a
// TCG_PCR_EVENT carrying the Spec ID Event03 (sha1 and sha256), then one
// TCG_PCR_EVENT2 per event, little-endian.
func VerifierEventLog(events []VerifierEvent) []byte {
	le := binary.LittleEndian
	var spec []byte
	spec = append(spec, "Spec ID Event03\x00"...)
	spec = le.AppendUint32(spec, 0)      // platformClass
	spec = append(spec, 0, 2, 0, 2)      // minor, major, errata, uintnSize
	spec = le.AppendUint32(spec, 2)      // numberOfAlgorithms
	spec = le.AppendUint16(spec, 0x0004) // sha1
	spec = le.AppendUint16(spec, sha1.Size)
	spec = le.AppendUint16(spec, 0x000b) // sha256
	spec = le.AppendUint16(spec, sha256.Size)
	spec = append(spec, 0) // vendorInfoSize

	var b bytes.Buffer
	b.Write(le.AppendUint32(nil, 0))
	b.Write(le.AppendUint32(nil, 0x3)) // EV_NO_ACTION
	b.Write(make([]byte, sha1.Size))
	b.Write(le.AppendUint32(nil, uint32(len(spec))))
	b.Write(spec)
	for _, e := range events {
		b.Write(le.AppendUint32(nil, uint32(e.PCR)))
		b.Write(le.AppendUint32(nil, e.Type))
		n := 0
		if e.SHA1 != nil {
			n++
		}
		if e.SHA256 != nil {
			n++
		}
		b.Write(le.AppendUint32(nil, uint32(n)))
		if e.SHA1 != nil {
			b.Write(le.AppendUint16(nil, 0x0004))
			b.Write(e.SHA1)
		}
		if e.SHA256 != nil {
			b.Write(le.AppendUint16(nil, 0x000b))
			b.Write(e.SHA256)
		}
		b.Write(le.AppendUint32(nil, uint32(len(e.Data))))
		b.Write(e.Data)
	}
	return b.Bytes()
}
