package attest

import (
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	goattest "github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// TPM is an open TPM together with the event log that describes its PCRs.
// Every command goes through mu: go-attestation issues multi-command
// sequences (sessions, transient handles) that must not interleave, and an
// extend and its log entry must look atomic to a quote.
type TPM struct {
	mu           sync.Mutex
	ch           *tpmChannel
	at           *goattest.TPM
	logRestarted bool
}

// Open opens the TPM named by spec:
//
//	/dev/tpmrm0, /dev/tpm0 (any device path)  the kernel's character device
//	swtpm:HOST:PORT                           a swtpm server port (MS simulator TCP framing)
//	unix:PATH                                 a swtpm unixio socket (raw TPM commands)
//
// (swtpm 0.7 takes either framing on either socket; measured.)
//
// log, if not nil, becomes the TPM's measurement log (go-attestation reads
// it through the command channel). If log's events do not replay to the
// TPM's PCRs, the TPM was reset since they were logged (a reboot or a swtpm
// restart zeroes the PCRs, while the log file survives): the log is then
// restarted empty and LogRestarted reports true. See EventLog.
func Open(spec string, log *EventLog) (*TPM, error) {
	rt, err := tpmDial(spec)
	if err != nil {
		return nil, err
	}
	return tpmOpen(rt, log)
}

// OpenTransport opens a TPM reached through rwc, which must behave like a
// TPM character device: each Write is one command, the next Read returns
// the whole response (as go-tpm-tools' simulator does). The log is handled
// as in Open.
func OpenTransport(rwc io.ReadWriteCloser, log *EventLog) (*TPM, error) {
	if rwc == nil {
		return nil, errors.New("attest: nil TPM transport")
	}
	return tpmOpen(&tpmCharDevRT{rwc: rwc}, log)
}

func tpmOpen(rt tpmRoundTripper, log *EventLog) (*TPM, error) {
	ch := &tpmChannel{rt: rt, log: log}
	at, err := goattest.OpenTPM(&goattest.OpenConfig{CommandChannel: ch})
	if err != nil {
		rt.Close()
		return nil, fmt.Errorf("attest: open TPM: %w", err)
	}
	t := &TPM{ch: ch, at: at}
	if log != nil {
		restarted, err := log.reconcile(t)
		if err != nil {
			t.Close()
			return nil, err
		}
		t.logRestarted = restarted
	}
	return t, nil
}

// Close closes the connection to the TPM. It does not close the event log.
func (t *TPM) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.at.Close()
}

// EventLog returns the log given to Open, or nil.
func (t *TPM) EventLog() *EventLog { return t.ch.log }

// LogRestarted reports whether Open found the stored event log stale (the
// TPM was reset since) and started a new one.
func (t *TPM) LogRestarted() bool { return t.logRestarted }

// PCR reads one PCR in one bank ("sha1" or "sha256").
func (t *TPM) PCR(bank string, index int) ([]byte, error) {
	alg, ok := tpmBankAlgs[bank]
	if !ok {
		return nil, fmt.Errorf("attest: unknown PCR bank %q", bank)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	vals, ok, err := t.readPCRsLocked(alg, []int{index})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("attest: PCR bank %s is not allocated", bank)
	}
	return vals[index], nil
}

// Wire names of the PCR banks the agent logs and quotes, in preference
// order.
var tpmBanks = []struct {
	name string
	alg  tpm2.TPMAlgID
	hash crypto.Hash
}{
	{"sha256", tpm2.TPMAlgSHA256, crypto.SHA256},
	{"sha1", tpm2.TPMAlgSHA1, crypto.SHA1},
}

var tpmBankAlgs = map[string]tpm2.TPMAlgID{
	"sha256": tpm2.TPMAlgSHA256,
	"sha1":   tpm2.TPMAlgSHA1,
}

// tpmTransport lets go-tpm's tpm2 package use the channel. Callers hold mu.
func (t *TPM) tpmTransport() transport.TPM {
	return transport.FromReadWriter(t.ch)
}

// readPCRsLocked reads the given PCRs of one bank. ok is false when the
// bank is not allocated (the TPM then returns an empty selection).
func (t *TPM) readPCRsLocked(alg tpm2.TPMAlgID, pcrs []int) (vals map[int][]byte, ok bool, err error) {
	vals = make(map[int][]byte, len(pcrs))
	for _, p := range pcrs {
		if p < 0 || p >= tpmNumPCRs {
			return nil, false, fmt.Errorf("attest: PCR %d out of range", p)
		}
	}
	// A TPM may return fewer PCRs than asked (8 per call is common), so
	// ask again for the rest.
	for len(vals) < len(pcrs) {
		var want []uint
		for _, p := range pcrs {
			if _, done := vals[p]; !done {
				want = append(want, uint(p))
			}
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{
			PCRSelections: []tpm2.TPMSPCRSelection{{
				Hash:      alg,
				PCRSelect: tpm2.PCClientCompatible.PCRs(want...),
			}},
		}}.Execute(t.tpmTransport())
		if err != nil {
			return nil, false, fmt.Errorf("attest: PCR_Read: %w", err)
		}
		var got []int
		for _, sel := range rsp.PCRSelectionOut.PCRSelections {
			if sel.Hash != alg {
				continue
			}
			for i, b := range sel.PCRSelect {
				for bit := 0; bit < 8; bit++ {
					if b&(1<<bit) != 0 {
						got = append(got, i*8+bit)
					}
				}
			}
		}
		if len(got) == 0 {
			if len(vals) == 0 {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("attest: PCR_Read returned no PCRs")
		}
		if len(got) != len(rsp.PCRValues.Digests) {
			return nil, false, fmt.Errorf("attest: PCR_Read returned %d values for %d PCRs", len(rsp.PCRValues.Digests), len(got))
		}
		for i, p := range got {
			vals[p] = rsp.PCRValues.Digests[i].Buffer
		}
	}
	return vals, true, nil
}

const tpmNumPCRs = 24

// tpmChannel is the go-attestation command channel: every Write is one
// command, whose whole response the next Read returns (go-tpm reads a
// response with a single Read). MeasurementLog hands over our event log.
type tpmChannel struct {
	rt   tpmRoundTripper
	resp []byte
	log  *EventLog
}

func (c *tpmChannel) Write(cmd []byte) (int, error) {
	resp, err := c.rt.RoundTrip(cmd)
	if err != nil {
		c.resp = nil
		return 0, err
	}
	c.resp = resp
	return len(cmd), nil
}

func (c *tpmChannel) Read(p []byte) (int, error) {
	if len(c.resp) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.resp)
	c.resp = c.resp[n:]
	return n, nil
}

func (c *tpmChannel) Close() error { return c.rt.Close() }

// MeasurementLog implements goattest.CommandChannelTPM20.
func (c *tpmChannel) MeasurementLog() ([]byte, error) {
	if c.log == nil {
		return nil, errors.New("attest: TPM opened without an event log")
	}
	return c.log.Bytes(), nil
}

// tpmRoundTripper sends one TPM command and returns its whole response.
type tpmRoundTripper interface {
	RoundTrip(cmd []byte) ([]byte, error)
	Close() error
}

func tpmDial(spec string) (tpmRoundTripper, error) {
	switch {
	case strings.HasPrefix(spec, "swtpm:"):
		return tpmDialSwtpm(strings.TrimPrefix(spec, "swtpm:"))
	case strings.HasPrefix(spec, "unix:"):
		return tpmDialUnix(strings.TrimPrefix(spec, "unix:"))
	case spec == "":
		return nil, errors.New("attest: empty TPM spec")
	}
	f, err := os.OpenFile(spec, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("attest: open TPM device: %w", err)
	}
	return &tpmCharDevRT{rwc: f}, nil
}

// tpmMaxResponse bounds a response; TPM 2.0 responses fit in 4 KiB on PC
// client TPMs, the rest is headroom.
const tpmMaxResponse = 1 << 16

// tpmCharDevRT talks to a character device (or the cgo simulator): the
// kernel executes a blocking write synchronously and returns the whole
// response in one read.
type tpmCharDevRT struct {
	rwc io.ReadWriteCloser
	buf []byte
}

func (d *tpmCharDevRT) RoundTrip(cmd []byte) ([]byte, error) {
	if _, err := d.rwc.Write(cmd); err != nil {
		return nil, fmt.Errorf("attest: TPM write: %w", err)
	}
	if d.buf == nil {
		d.buf = make([]byte, tpmMaxResponse)
	}
	n, err := d.rwc.Read(d.buf)
	if err != nil && !(errors.Is(err, io.EOF) && n > 0) {
		return nil, fmt.Errorf("attest: TPM read: %w", err)
	}
	return append([]byte(nil), d.buf[:n]...), nil
}

func (d *tpmCharDevRT) Close() error { return d.rwc.Close() }
