package attest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm-tools/simulator"

	"github.com/stockade-hpc/stockade/policy"
)

func TestMeasureAgent(t *testing.T) {
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	log := NewEventLog()
	tpm, err := OpenTransport(elSimTPM{sim}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()

	bin := filepath.Join(t.TempDir(), "stockade")
	binContent := []byte("\x7fELF agent")
	if err := os.WriteFile(bin, binContent, 0o755); err != nil {
		t.Fatal(err)
	}
	config := []byte(`{"pcr":15}`)
	if err := MeasureAgent(tpm, log, DefaultPCR, bin, config); err != nil {
		t.Fatal(err)
	}
	b1, b256 := sha1.Sum(binContent), sha256.Sum256(binContent)
	c1, c256 := sha1.Sum(config), sha256.Sum256(config)
	want := []EventLogEntry{
		{PCR: DefaultPCR, Type: EventTypeIPL, SHA1: b1[:], SHA256: b256[:], Data: []byte(policy.EventAgentBinary + bin)},
		{PCR: DefaultPCR, Type: EventTypeIPL, SHA1: c1[:], SHA256: c256[:], Data: []byte(policy.EventAgentConfig + string(config))},
	}
	got := log.Entries()
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.PCR != w.PCR || g.Type != w.Type || !bytes.Equal(g.SHA1, w.SHA1) || !bytes.Equal(g.SHA256, w.SHA256) || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("entry %d = %+v, want %+v", i, g, w)
		}
	}
	for _, b := range tpmBanks {
		pcr, err := tpm.PCR(b.name, DefaultPCR)
		if err != nil {
			t.Fatal(err)
		}
		replay, _ := log.Replay(b.name)
		if !bytes.Equal(pcr, replay[DefaultPCR]) {
			t.Fatalf("%s PCR %x, log replays to %x", b.name, pcr, replay[DefaultPCR])
		}
	}

	if err := MeasureAgent(tpm, log, DefaultPCR, filepath.Join(t.TempDir(), "missing"), config); err == nil {
		t.Fatal("measured a missing binary")
	}
	if n := len(log.Entries()); n != 2 {
		t.Fatalf("failed measurement logged: %d entries", n)
	}
}

func TestMeasureRejectsForeignLog(t *testing.T) {
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	own := NewEventLog()
	tpm, err := OpenTransport(elSimTPM{sim}, own)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	tests := []struct {
		name string
		log  *EventLog
		pcr  int
		typ  uint32
		ok   bool
	}{
		{"own log", own, 15, EventTypeIPL, true},
		{"other log", NewEventLog(), 15, EventTypeIPL, false},
		{"no log", nil, 15, EventTypeIPL, false},
		{"PCR out of range", own, 24, EventTypeIPL, false},
		{"negative PCR", own, -1, EventTypeIPL, false},
		{"EV_NO_ACTION", own, 15, 3, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := len(own.Entries())
			err := Extend(tpm, tc.log, tc.pcr, []byte("x"), tc.typ)
			if (err == nil) != tc.ok {
				t.Fatalf("Extend: %v", err)
			}
			if want := n + map[bool]int{true: 1, false: 0}[tc.ok]; len(own.Entries()) != want {
				t.Fatalf("%d entries, want %d", len(own.Entries()), want)
			}
		})
	}
}
