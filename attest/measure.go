package attest

import (
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/go-tpm/tpm2"

	"github.com/stockade-hpc/stockade/policy"
)

// DefaultPCR is the PCR the agent measures itself into. PCR 15 is free for
// the OS in the PC Client profile, is extendable from locality 0 and, unlike
// 16 and 23, cannot be reset by software: only a TPM reset clears it.
const DefaultPCR = 15

// EventTypeIPL (EV_IPL, 0xD) is the type of the agent's events: a type
// whose digest need not hash the event data (the binary event carries a
// path, its digest is of the file). go-attestation accepts it on any PCR;
// tpm2_eventlog parses it but warns that it expects EV_IPL in PCR 8, 9, 12
// or 14.
const EventTypeIPL uint32 = 0xD

// MeasureAgent extends pcr with the agent's executable and its effective
// configuration, logging both to log (which must be t's log), in this
// order:
//
//	digest: SHA of the file at binaryPath  data: policy.EventAgentBinary + binaryPath
//	digest: SHA of config                  data: policy.EventAgentConfig + config
//
// Each digest goes to both the sha1 and the sha256 bank. config is the
// canonical JSON of the effective configuration.
func MeasureAgent(t *TPM, log *EventLog, pcr int, binaryPath string, config []byte) error {
	if binaryPath == "" {
		return errors.New("attest: no agent binary to measure")
	}
	f, err := os.Open(binaryPath)
	if err != nil {
		return fmt.Errorf("attest: measure agent binary: %w", err)
	}
	h1, h256 := sha1.New(), sha256.New()
	_, err = io.Copy(io.MultiWriter(h1, h256), f)
	f.Close()
	if err != nil {
		return fmt.Errorf("attest: measure agent binary: %w", err)
	}
	bin := EventLogEntry{
		PCR:    pcr,
		Type:   EventTypeIPL,
		SHA1:   h1.Sum(nil),
		SHA256: h256.Sum(nil),
		Data:   []byte(policy.EventAgentBinary + binaryPath),
	}
	if err := measureLogged(t, log, bin); err != nil {
		return err
	}
	cfg := measureEntry(pcr, EventTypeIPL, config)
	cfg.Data = append([]byte(policy.EventAgentConfig), config...)
	return measureLogged(t, log, cfg)
}

// Extend extends pcr with the hashes of data (sha1 and sha256 banks) and
// logs an event of eventType whose data is data.
func Extend(t *TPM, log *EventLog, pcr int, data []byte, eventType uint32) error {
	e := measureEntry(pcr, eventType, data)
	e.Data = append([]byte(nil), data...)
	return measureLogged(t, log, e)
}

// ExtendUnlogged extends pcr with the hashes of data without logging it,
// which is what tampering looks like to a verifier. For tests.
func ExtendUnlogged(t *TPM, pcr int, data []byte) error {
	e := measureEntry(pcr, 0, data)
	t.mu.Lock()
	defer t.mu.Unlock()
	return measureExtendLocked(t, e)
}

func measureEntry(pcr int, eventType uint32, data []byte) EventLogEntry {
	s1, s256 := sha1.Sum(data), sha256.Sum256(data)
	return EventLogEntry{PCR: pcr, Type: eventType, SHA1: s1[:], SHA256: s256[:]}
}

func measureLogged(t *TPM, log *EventLog, e EventLogEntry) error {
	if log == nil || log != t.EventLog() {
		// An extend logged elsewhere would leave the TPM's log unable to
		// explain its PCR.
		return errors.New("attest: extend needs the event log the TPM was opened with")
	}
	if e.Type == elEvNoAction {
		return errors.New("attest: EV_NO_ACTION events do not extend PCRs")
	}
	if e.PCR < 0 || e.PCR >= tpmNumPCRs {
		return fmt.Errorf("attest: PCR %d out of range", e.PCR)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return log.append(e, func() error { return measureExtendLocked(t, e) })
}

// measureExtendLocked runs TPM2_PCR_Extend with both digests in one
// TPML_DIGEST_VALUES. A TPM ignores digests of banks it has not allocated.
func measureExtendLocked(t *TPM, e EventLogEntry) error {
	if e.PCR < 0 || e.PCR >= tpmNumPCRs {
		return fmt.Errorf("attest: PCR %d out of range", e.PCR)
	}
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{
			Handle: tpm2.TPMHandle(e.PCR),
			Auth:   tpm2.PasswordAuth(nil),
		},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{
			{HashAlg: tpm2.TPMAlgSHA1, Digest: e.SHA1},
			{HashAlg: tpm2.TPMAlgSHA256, Digest: e.SHA256},
		}},
	}.Execute(t.tpmTransport())
	if err != nil {
		return fmt.Errorf("attest: PCR_Extend %d: %w", e.PCR, err)
	}
	return nil
}
