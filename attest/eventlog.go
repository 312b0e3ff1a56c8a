package attest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/google/go-tpm/tpm2"
)

// EventLogFile is the name of the event log in the agent's state directory.
const EventLogFile = "eventlog.bin"

// EventLog is the agent's append-only TCG PC Client crypto-agile event log:
// a TCG_PCR_EVENT header carrying the "Spec ID Event03" structure (banks
// sha1 and sha256), then one TCG_PCR_EVENT2 record per extend. The bytes
// are what go-attestation's ParseEventLog and tpm2_eventlog read.
//
// A log opened with OpenEventLog is a file in the agent's state directory:
// each event is written and fsynced before its PCR is extended, so agent
// restarts resume the log. PCRs, though, only reset with the TPM (reboot,
// swtpm restart). The rule, applied when Open binds a log to a TPM:
//
//   - the log's events replay to the TPM's PCRs in every allocated bank:
//     the log is resumed;
//   - they do so without the last event: the agent died between writing
//     that event and extending its PCR; the event is dropped and the log
//     resumed;
//   - otherwise the TPM was reset (or the log is not this TPM's): a new,
//     empty log is started. PCRs that were extended since the reset are
//     then left unexplained, so the verifier rejects the node until the
//     next reset, which is the point.
type EventLog struct {
	mu      sync.Mutex
	buf     []byte // the whole log, header included
	entries []EventLogEntry
	path    string
	f       *os.File // nil for an in-memory log
}

// EventLogEntry is one TCG_PCR_EVENT2 record.
type EventLogEntry struct {
	PCR    int
	Type   uint32
	SHA1   []byte
	SHA256 []byte
	Data   []byte
}

// TCG algorithm IDs and the event type of the header.
const (
	elAlgSHA1       = uint16(tpm2.TPMAlgSHA1)
	elAlgSHA256     = uint16(tpm2.TPMAlgSHA256)
	elEvNoAction    = 0x3
	elMaxEventSize  = 1 << 20
	elSpecSignature = "Spec ID Event03\x00"
)

// elHeader is the TCG_PCR_EVENT carrying TCG_EfiSpecIDEventStruct: PC
// client platform class, spec 2.0 errata 0, UINTN of 8 bytes, two banks,
// no vendor info.
var elHeader = func() []byte {
	var spec bytes.Buffer
	spec.WriteString(elSpecSignature)
	le := binary.LittleEndian
	spec.Write(le.AppendUint32(nil, 0)) // platformClass
	spec.Write([]byte{0, 2, 0, 2})      // minor, major, errata, uintnSize
	spec.Write(le.AppendUint32(nil, 2)) // numberOfAlgorithms
	spec.Write(le.AppendUint16(nil, elAlgSHA1))
	spec.Write(le.AppendUint16(nil, sha1.Size))
	spec.Write(le.AppendUint16(nil, elAlgSHA256))
	spec.Write(le.AppendUint16(nil, sha256.Size))
	spec.WriteByte(0) // vendorInfoSize

	var h []byte
	h = le.AppendUint32(h, 0) // PCRIndex
	h = le.AppendUint32(h, elEvNoAction)
	h = append(h, make([]byte, sha1.Size)...)
	h = le.AppendUint32(h, uint32(spec.Len()))
	return append(h, spec.Bytes()...)
}()

// NewEventLog returns an empty log kept in memory only.
func NewEventLog() *EventLog {
	return &EventLog{buf: append([]byte(nil), elHeader...)}
}

// OpenEventLog opens the log file at path, creating it with just the header
// if it does not exist. A torn last record (the agent died while appending
// it) is cut off; any other damage is an error, since the file is only
// ever appended to by the agent.
func OpenEventLog(path string) (*EventLog, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		l := &EventLog{path: path}
		if err := l.rewrite(nil); err != nil {
			return nil, err
		}
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("attest: read event log: %w", err)
	}
	entries, valid, err := elParse(b)
	if err != nil {
		return nil, fmt.Errorf("attest: event log %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("attest: open event log: %w", err)
	}
	if valid < len(b) {
		if err := elTruncate(f, int64(valid)); err != nil {
			f.Close()
			return nil, err
		}
		b = b[:valid]
	}
	return &EventLog{buf: b, entries: entries, path: path, f: f}, nil
}

// Close closes the log file; the log stays readable in memory.
func (l *EventLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// Bytes returns a copy of the whole log in TCG format.
func (l *EventLog) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.buf...)
}

// Entries returns the log's records in order.
func (l *EventLog) Entries() []EventLogEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]EventLogEntry(nil), l.entries...)
}

// Replay returns, for every PCR the log extends, the value its events
// produce in bank ("sha1" or "sha256") from a reset PCR (all zeros).
func (l *EventLog) Replay(bank string) (map[int][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return elReplay(l.entries, bank)
}

func elReplay(entries []EventLogEntry, bank string) (map[int][]byte, error) {
	out := map[int][]byte{}
	for _, e := range entries {
		var d []byte
		var size int
		switch bank {
		case "sha1":
			d, size = e.SHA1, sha1.Size
		case "sha256":
			d, size = e.SHA256, sha256.Size
		default:
			return nil, fmt.Errorf("attest: unknown PCR bank %q", bank)
		}
		if e.Type == elEvNoAction {
			continue
		}
		cur, ok := out[e.PCR]
		if !ok {
			cur = make([]byte, size)
		}
		out[e.PCR] = elExtend(bank, cur, d)
	}
	return out, nil
}

func elExtend(bank string, pcr, digest []byte) []byte {
	if bank == "sha1" {
		h := sha1.New()
		h.Write(pcr)
		h.Write(digest)
		return h.Sum(nil)
	}
	h := sha256.New()
	h.Write(pcr)
	h.Write(digest)
	return h.Sum(nil)
}

// elRecord encodes a TCG_PCR_EVENT2.
func elRecord(e EventLogEntry) []byte {
	le := binary.LittleEndian
	var r []byte
	r = le.AppendUint32(r, uint32(e.PCR))
	r = le.AppendUint32(r, e.Type)
	r = le.AppendUint32(r, 2) // TPML_DIGEST_VALUES.count
	r = le.AppendUint16(r, elAlgSHA1)
	r = append(r, e.SHA1...)
	r = le.AppendUint16(r, elAlgSHA256)
	r = append(r, e.SHA256...)
	r = le.AppendUint32(r, uint32(len(e.Data)))
	return append(r, e.Data...)
}

// elParse checks the header and decodes the records. valid is the length
// of the complete records; bytes after it are a torn last record.
func elParse(b []byte) (entries []EventLogEntry, valid int, err error) {
	if len(b) < len(elHeader) || !bytes.Equal(b[:len(elHeader)], elHeader) {
		return nil, 0, errors.New("not a Stockade event log (header differs)")
	}
	le := binary.LittleEndian
	off := len(elHeader)
	for off < len(b) {
		r := b[off:]
		const fixed = 4 + 4 + 4 + 2 + sha1.Size + 2 + sha256.Size + 4
		if len(r) < fixed {
			return entries, off, nil
		}
		e := EventLogEntry{PCR: int(le.Uint32(r)), Type: le.Uint32(r[4:])}
		if n := le.Uint32(r[8:]); n != 2 {
			return nil, 0, fmt.Errorf("record at %d: %d digests", off, n)
		}
		p := 12
		if le.Uint16(r[p:]) != elAlgSHA1 {
			return nil, 0, fmt.Errorf("record at %d: first digest is not sha1", off)
		}
		e.SHA1 = append([]byte(nil), r[p+2:p+2+sha1.Size]...)
		p += 2 + sha1.Size
		if le.Uint16(r[p:]) != elAlgSHA256 {
			return nil, 0, fmt.Errorf("record at %d: second digest is not sha256", off)
		}
		e.SHA256 = append([]byte(nil), r[p+2:p+2+sha256.Size]...)
		p += 2 + sha256.Size
		size := le.Uint32(r[p:])
		p += 4
		if e.PCR < 0 || e.PCR >= tpmNumPCRs || size > elMaxEventSize {
			return nil, 0, fmt.Errorf("record at %d: PCR %d, %d bytes of data", off, e.PCR, size)
		}
		if len(r) < p+int(size) {
			return entries, off, nil
		}
		e.Data = append([]byte(nil), r[p:p+int(size)]...)
		entries = append(entries, e)
		off += p + int(size)
	}
	return entries, off, nil
}

// append writes e to the file (fsynced) and then runs extend, the TPM
// extend it records. Logging first means a crash in between leaves an
// event whose extend is missing, which reconcile detects and drops; the
// other order would leave an extend nobody can explain. If extend fails
// the record is cut off again.
func (l *EventLog) append(e EventLogEntry, extend func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec := elRecord(e)
	if l.path != "" && l.f == nil {
		return errors.New("attest: event log is closed")
	}
	if l.f != nil {
		if _, err := l.f.Write(rec); err != nil {
			// Cut back whatever part got written.
			_ = elTruncate(l.f, int64(len(l.buf)))
			return fmt.Errorf("attest: write event log: %w", err)
		}
		if err := l.f.Sync(); err != nil {
			_ = elTruncate(l.f, int64(len(l.buf)))
			return fmt.Errorf("attest: sync event log: %w", err)
		}
	}
	if err := extend(); err != nil {
		if l.f != nil {
			if terr := elTruncate(l.f, int64(len(l.buf))); terr != nil {
				return errors.Join(err, terr)
			}
		}
		return err
	}
	l.buf = append(l.buf, rec...)
	l.entries = append(l.entries, e)
	return nil
}

// elTruncate cuts f (opened O_APPEND, so writes follow) to size.
func elTruncate(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("attest: truncate event log: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("attest: sync event log: %w", err)
	}
	return nil
}

// rewrite replaces the log with the header and entries, atomically on
// disk (temporary file, fsync, rename, fsync of the directory). Callers
// hold mu, or own l exclusively.
func (l *EventLog) rewrite(entries []EventLogEntry) error {
	buf := append([]byte(nil), elHeader...)
	for _, e := range entries {
		buf = append(buf, elRecord(e)...)
	}
	if l.path != "" {
		f, err := elWriteFile(l.path, buf)
		if err != nil {
			return err
		}
		if l.f != nil {
			l.f.Close()
		}
		l.f = f
	}
	l.buf = buf
	l.entries = append([]EventLogEntry(nil), entries...)
	return nil
}

// elWriteFile atomically replaces path with b and returns it opened for
// appending.
func elWriteFile(path string, b []byte) (*os.File, error) {
	if err := agentWriteFile(path, b); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("attest: open event log: %w", err)
	}
	return f, nil
}

func elSyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("attest: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("attest: sync %s: %w", dir, err)
	}
	return nil
}

// reconcile applies the rule in the EventLog comment against t's PCRs and
// reports whether the log was restarted.
func (l *EventLog) reconcile(t *TPM) (restarted bool, err error) {
	// Lock order everywhere: the TPM, then its log.
	t.mu.Lock()
	defer t.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.entries) == 0 {
		return false, nil
	}
	match, err := l.matchesLocked(t, l.entries)
	if err != nil || match {
		return false, err
	}
	last := len(l.entries) - 1
	if match, err := l.matchesLocked(t, l.entries[:last]); err != nil {
		return false, err
	} else if match {
		return false, l.rewrite(l.entries[:last])
	}
	return true, l.rewrite(nil)
}

// matchesLocked reports whether entries replay to t's PCRs in every
// allocated bank. The PCRs of the whole log are compared, so that
// dropping a trailing event is judged against its PCR too.
func (l *EventLog) matchesLocked(t *TPM, entries []EventLogEntry) (bool, error) {
	var pcrs []int
	seen := map[int]bool{}
	for _, e := range l.entries {
		if !seen[e.PCR] {
			seen[e.PCR] = true
			pcrs = append(pcrs, e.PCR)
		}
	}
	checked := false
	for _, b := range tpmBanks {
		vals, ok, err := t.readPCRsLocked(b.alg, pcrs)
		if err != nil {
			return false, err
		}
		if !ok {
			continue
		}
		checked = true
		replay, err := elReplay(entries, b.name)
		if err != nil {
			return false, err
		}
		for _, p := range pcrs {
			want, ok := replay[p]
			if !ok {
				want = make([]byte, b.hash.Size())
			}
			if !bytes.Equal(vals[p], want) {
				return false, nil
			}
		}
	}
	if !checked {
		return false, errors.New("attest: TPM has neither a sha1 nor a sha256 PCR bank")
	}
	return true, nil
}
