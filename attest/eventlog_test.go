package attest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	goattest "github.com/google/go-attestation/attest"
	"github.com/google/go-tpm-tools/simulator"

	"github.com/stockade-hpc/stockade/internal/testenv"
)

func elTestEntry(pcr int, data string) EventLogEntry {
	e := measureEntry(pcr, EventTypeIPL, []byte(data))
	e.Data = []byte(data)
	return e
}

func elNoExtend() error { return nil }

func TestEventLogParsesWithGoAttestation(t *testing.T) {
	tests := []struct {
		name    string
		entries []EventLogEntry
	}{
		{"empty", nil},
		{"one", []EventLogEntry{elTestEntry(15, "a")}},
		{"several PCRs", []EventLogEntry{elTestEntry(15, "a"), elTestEntry(14, "b"), elTestEntry(15, "")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := NewEventLog()
			for _, e := range tc.entries {
				if err := l.append(e, elNoExtend); err != nil {
					t.Fatal(err)
				}
			}
			el, err := goattest.ParseEventLog(l.Bytes())
			if err != nil {
				t.Fatalf("ParseEventLog: %v", err)
			}
			if len(el.Algs) != 2 || el.Algs[0] != goattest.HashSHA1 || el.Algs[1] != goattest.HashSHA256 {
				t.Fatalf("algorithms %v", el.Algs)
			}
			for _, bank := range []struct {
				name string
				alg  goattest.HashAlg
			}{{"sha1", goattest.HashSHA1}, {"sha256", goattest.HashSHA256}} {
				events := el.Events(bank.alg)
				if len(events) != len(tc.entries) {
					t.Fatalf("%d events, want %d", len(events), len(tc.entries))
				}
				for i, e := range events {
					want := tc.entries[i].SHA256
					if bank.name == "sha1" {
						want = tc.entries[i].SHA1
					}
					if e.Index != tc.entries[i].PCR || !bytes.Equal(e.Digest, want) || !bytes.Equal(e.Data, tc.entries[i].Data) {
						t.Fatalf("event %d differs", i)
					}
				}
				// The log's own replay is what go-attestation accepts.
				replay, err := l.Replay(bank.name)
				if err != nil {
					t.Fatal(err)
				}
				var pcrs []goattest.PCR
				for i, d := range replay {
					h := tpmBanks[0].hash
					if bank.name == "sha1" {
						h = tpmBanks[1].hash
					}
					pcrs = append(pcrs, goattest.PCR{Index: i, Digest: d, DigestAlg: h})
				}
				if _, err := el.Verify(pcrs); err != nil {
					t.Fatalf("Verify with the log's replay: %v", err)
				}
			}
		})
	}
}

func TestEventLogReplay(t *testing.T) {
	a, b := elTestEntry(15, "a"), elTestEntry(15, "b")
	zero1, zero256 := make([]byte, sha1.Size), make([]byte, sha256.Size)
	h1 := func(parts ...[]byte) []byte { s := sha1.Sum(bytes.Join(parts, nil)); return s[:] }
	h256 := func(parts ...[]byte) []byte { s := sha256.Sum256(bytes.Join(parts, nil)); return s[:] }
	tests := []struct {
		bank string
		want []byte
	}{
		{"sha1", h1(h1(zero1, a.SHA1), b.SHA1)},
		{"sha256", h256(h256(zero256, a.SHA256), b.SHA256)},
	}
	l := NewEventLog()
	for _, e := range []EventLogEntry{a, b} {
		if err := l.append(e, elNoExtend); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range tests {
		got, err := l.Replay(tc.bank)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !bytes.Equal(got[15], tc.want) {
			t.Fatalf("%s replay %x, want PCR 15 = %x", tc.bank, got, tc.want)
		}
	}
	if _, err := l.Replay("sha384"); err == nil {
		t.Fatal("replayed an unknown bank")
	}
}

// TestEventLogFile: appends survive reopening, a torn last record is cut
// off, anything else damaged is refused.
func TestEventLogFile(t *testing.T) {
	entries := []EventLogEntry{elTestEntry(15, "binary"), elTestEntry(15, "config")}
	full := NewEventLog()
	for _, e := range entries {
		if err := full.append(e, elNoExtend); err != nil {
			t.Fatal(err)
		}
	}
	whole := full.Bytes()
	lastStart := len(whole) - len(elRecord(entries[1]))
	tests := []struct {
		name        string
		content     []byte // nil: no file
		wantEntries int
		wantErr     bool
	}{
		{"missing", nil, 0, false},
		{"header only", elHeader, 0, false},
		{"complete", whole, 2, false},
		{"torn in digests", whole[:lastStart+20], 1, false},
		{"torn in data", whole[:len(whole)-1], 1, false},
		{"torn header", elHeader[:10], 0, true},
		{"other header", append([]byte("garbage!"), whole[8:]...), 0, true},
		{"three digests", func() []byte {
			b := append([]byte(nil), whole...)
			b[lastStart+8] = 3
			return b
		}(), 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), EventLogFile)
			if tc.content != nil {
				if err := os.WriteFile(path, tc.content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			l, err := OpenEventLog(path)
			if tc.wantErr {
				if err == nil {
					t.Fatal("opened a damaged log")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if n := len(l.Entries()); n != tc.wantEntries {
				t.Fatalf("%d entries, want %d", n, tc.wantEntries)
			}
			more := elTestEntry(15, "more")
			if err := l.append(more, elNoExtend); err != nil {
				t.Fatal(err)
			}
			l.Close()
			onDisk, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(onDisk, l.Bytes()) {
				t.Fatal("file differs from the log in memory")
			}
			again, err := OpenEventLog(path)
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			if n := len(again.Entries()); n != tc.wantEntries+1 {
				t.Fatalf("reopened: %d entries, want %d", n, tc.wantEntries+1)
			}
		})
	}
}

func TestEventLogAppendRollsBackFailedExtend(t *testing.T) {
	path := filepath.Join(t.TempDir(), EventLogFile)
	l, err := OpenEventLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.append(elTestEntry(15, "ok"), elNoExtend); err != nil {
		t.Fatal(err)
	}
	before := l.Bytes()
	boom := errors.New("TPM gone")
	if err := l.append(elTestEntry(15, "lost"), func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("append: %v", err)
	}
	onDisk, _ := os.ReadFile(path)
	if !bytes.Equal(l.Bytes(), before) || !bytes.Equal(onDisk, before) {
		t.Fatal("failed extend left its event in the log")
	}
	if err := l.append(elTestEntry(15, "next"), elNoExtend); err != nil {
		t.Fatal(err)
	}
	if n := len(l.Entries()); n != 2 {
		t.Fatalf("%d entries, want 2", n)
	}
}

// TestEventLogTPM2Tools checks the log against an independent parser.
func TestEventLogTPM2Tools(t *testing.T) {
	testenv.RequireTools(t, "tpm2_eventlog")
	path := filepath.Join(t.TempDir(), EventLogFile)
	l, err := OpenEventLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, e := range []EventLogEntry{elTestEntry(15, "stockade-agent-binary /x"), elTestEntry(15, "stockade-agent-config {}")} {
		if err := l.append(e, elNoExtend); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("tpm2_eventlog", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_eventlog: %v\n%s", err, out)
	}
	replay, _ := l.Replay("sha256")
	for _, want := range []string{"EV_IPL", "pcrs:", "sha256:"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("tpm2_eventlog output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(strings.ToLower(string(out)), hex.EncodeToString(replay[15])) {
		t.Fatalf("tpm2_eventlog's PCR 15 is not %x:\n%s", replay[15], out)
	}
}

// elSimTPM opens go-tpm-tools' simulator without closing it with the TPM,
// so a test can reopen it like a restarted agent.
type elSimTPM struct{ io.ReadWriter }

func (elSimTPM) Close() error { return nil }

// TestEventLogReconcile applies the rule of the EventLog comment.
func TestEventLogReconcile(t *testing.T) {
	tests := []struct {
		name          string
		between       func(t *testing.T, sim *simulator.Simulator, tpm *TPM, l *EventLog) // before reopening
		wantRestarted bool
		wantEntries   int
	}{
		{"nothing happened", func(*testing.T, *simulator.Simulator, *TPM, *EventLog) {}, false, 2},
		{"crash between logging and extending", func(t *testing.T, _ *simulator.Simulator, _ *TPM, l *EventLog) {
			if err := l.append(elTestEntry(15, "never extended"), elNoExtend); err != nil {
				t.Fatal(err)
			}
		}, false, 2},
		{"crash between logging and extending a new PCR", func(t *testing.T, _ *simulator.Simulator, _ *TPM, l *EventLog) {
			if err := l.append(elTestEntry(14, "never extended"), elNoExtend); err != nil {
				t.Fatal(err)
			}
		}, false, 2},
		{"reboot", func(t *testing.T, sim *simulator.Simulator, _ *TPM, _ *EventLog) {
			if err := sim.Reset(); err != nil {
				t.Fatal(err)
			}
		}, true, 0},
		{"unlogged extend", func(t *testing.T, _ *simulator.Simulator, tpm *TPM, _ *EventLog) {
			if err := ExtendUnlogged(tpm, 15, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}, true, 0},
		{"unlogged extend of another PCR", func(t *testing.T, _ *simulator.Simulator, tpm *TPM, _ *EventLog) {
			if err := ExtendUnlogged(tpm, 14, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}, false, 2}, // not the log's business: the verifier sees PCR 14
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim, err := simulator.Get()
			if err != nil {
				t.Fatal(err)
			}
			defer sim.Close()
			path := filepath.Join(t.TempDir(), EventLogFile)
			l, err := OpenEventLog(path)
			if err != nil {
				t.Fatal(err)
			}
			tpm, err := OpenTransport(elSimTPM{sim}, l)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{"a", "b"} {
				if err := Extend(tpm, l, 15, []byte(d), EventTypeIPL); err != nil {
					t.Fatal(err)
				}
			}
			tc.between(t, sim, tpm, l)
			tpm.Close()
			l.Close()

			l, err = OpenEventLog(path)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			tpm, err = OpenTransport(elSimTPM{sim}, l)
			if err != nil {
				t.Fatal(err)
			}
			defer tpm.Close()
			if tpm.LogRestarted() != tc.wantRestarted || len(l.Entries()) != tc.wantEntries {
				t.Fatalf("restarted %v with %d entries, want %v with %d", tpm.LogRestarted(), len(l.Entries()), tc.wantRestarted, tc.wantEntries)
			}
			onDisk, _ := os.ReadFile(path)
			if !bytes.Equal(onDisk, l.Bytes()) {
				t.Fatal("file differs from the log in memory")
			}
			// Whatever happened, what the log now says is true.
			if err := Extend(tpm, l, 15, []byte("c"), EventTypeIPL); err != nil {
				t.Fatal(err)
			}
			for _, b := range tpmBanks {
				replay, _ := l.Replay(b.name)
				got, err := tpm.PCR(b.name, 15)
				if err != nil {
					t.Fatal(err)
				}
				if tc.name != "unlogged extend" && !bytes.Equal(got, replay[15]) {
					t.Fatalf("%s PCR 15 %x, log replays to %x", b.name, got, replay[15])
				}
			}
		})
	}
}
