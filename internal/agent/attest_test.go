package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/policy"
)

func TestDecideAttest(t *testing.T) {
	tests := []struct {
		name   string
		step   attestStep
		status int
		code   string
		want   attestAction
	}{
		{"no answer", stepQuote, 0, "", attRetry},
		{"leader election", stepQuote, http.StatusServiceUnavailable, "", attRetry},
		{"server error", stepEnroll, http.StatusInternalServerError, "", attRetry},
		{"bad request is retried", stepQuote, http.StatusBadRequest, "", attRetry},
		{"local failure", stepLocal, 0, "", attRetry},
		{"enroll refused", stepEnroll, http.StatusForbidden, "ek-untrusted", attRefused},
		{"enroll refused by admin", stepEnroll, http.StatusForbidden, "revoked-by-admin", attRefused},
		{"activation refused evicts", stepActivate, http.StatusForbidden, "agent-binary-not-allowed", attEvicted},
		{"session lost", stepActivate, http.StatusConflict, codeSessionUnknown, attEnroll},
		{"nonce for a node not admitted", stepNonce, http.StatusForbidden, codeNotAttested, attEnroll},
		{"quote for a node not admitted", stepQuote, http.StatusForbidden, codeNotAttested, attEnroll},
		{"quote refused: evicted", stepQuote, http.StatusForbidden, "pcr-mismatch", attEvicted},
		{"quote refused without a code", stepQuote, http.StatusForbidden, "", attEvicted},
		{"nonce unknown", stepQuote, http.StatusConflict, codeNonceUnknown, attNewNonce},
		{"nonce replayed", stepQuote, http.StatusConflict, codeNonceReplayed, attNewNonce},
		{"other conflict", stepQuote, http.StatusConflict, "", attRetry},
		{"superseded on nonce", stepNonce, http.StatusUnauthorized, "cert-superseded", attEnroll},
		{"superseded on quote", stepQuote, http.StatusUnauthorized, "cert-superseded", attEnroll},
		{"revoked: evicted meanwhile", stepNonce, http.StatusUnauthorized, codeCertRevoked, attEvicted},
		{"no certificate", stepNonce, http.StatusUnauthorized, "", attEnroll},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideAttest(tc.step, tc.status, tc.code); got != tc.want {
				t.Errorf("decideAttest(%s, %d, %q) = %s, want %s", tc.step, tc.status, tc.code, got, tc.want)
			}
		})
	}
}

func TestClassifyAttest(t *testing.T) {
	he := func(status int, msg string) error { return &api.HTTPError{Status: status, Message: msg} }
	tests := []struct {
		name     string
		err      error
		want     attestAction
		wantCode string
	}{
		{"network", stepErr(stepQuote, errors.New("connection refused")), attRetry, ""},
		{"timeout", stepErr(stepNonce, fmt.Errorf("no controller answered: %w", context.DeadlineExceeded)), attRetry, ""},
		{"revoked", stepErr(stepNonce, he(401, "cert-revoked: certificate 1f of node n1 is revoked; enroll again")), attEvicted, "cert-revoked"},
		{"refused", stepErr(stepEnroll, he(403, "ek-untrusted: no EK certificate")), attRefused, "ek-untrusted"},
		{"evicted", stepErr(stepQuote, he(403, "pcr-mismatch: PCR 0 = ab")), attEvicted, "pcr-mismatch"},
		{"session", stepErr(stepActivate, he(409, "session-unknown: no such enrollment session")), attEnroll, "session-unknown"},
		{"no step: local", he(403, "x: y"), attRetry, "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, code := classifyAttest(tc.err)
			if got != tc.want || code != tc.wantCode {
				t.Errorf("classifyAttest = %s, %q; want %s, %q", got, code, tc.want, tc.wantCode)
			}
		})
	}
}

func TestErrorCode(t *testing.T) {
	tests := []struct{ msg, want string }{
		{"cert-superseded: certificate 1 is not node n1's current one", "cert-superseded"},
		{"pcr-mismatch: PCR 0 = ab", "pcr-mismatch"},
		{"ek-untrusted", ""},
		{"503 Service Unavailable", ""},
		{"Post \"https://h:1/v1\": dial tcp", ""},
		{": text", ""},
	}
	for _, tc := range tests {
		if got := errorCode(tc.msg); got != tc.want {
			t.Errorf("errorCode(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}

func TestCanonicalConfig(t *testing.T) {
	base := Options{
		Name: "node1", Servers: []string{"c2:7701", "c1:7701"}, StateDir: "/var/lib/x", CPUs: 8, MemoryMB: 16384,
		GPUs: 1, Features: []string{"ib", "avx512"}, NetNS: "/run/netns/jobs", KillGrace: 10 * time.Second,
		CgroupParent: "/stockade/node1", PidsLimit: 4096, AttestPCR: 15,
		JoinToken: "stkjoin.0123456789abcdef.s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t", TPM: "/dev/tpmrm0",
		CACertFile: "/etc/stockade/ca.pem", Heartbeat: 2 * time.Second, ClusterName: "c",
	}
	want := `{"attest_pcr":15,"cgroup_parent":"/stockade/node1","cpus":8,"features":["avx512","ib"],"gpus":1,` +
		`"kill_grace":"10s","memory_mb":16384,"name":"node1","netns":"/run/netns/jobs","pids_limit":4096,` +
		`"servers":["c1:7701","c2:7701"]}`
	got, err := canonicalConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("canonicalConfig =\n%s\nwant\n%s", got, want)
	}
	if bytes.Contains(got, []byte("s3cr3t")) {
		t.Fatal("the join token is measured")
	}
	tests := []struct {
		name    string
		mod     func(*Options)
		changed bool
	}{
		{"join token", func(o *Options) { o.JoinToken = "" }, false},
		{"TPM", func(o *Options) { o.TPM = "swtpm:127.0.0.1:1" }, false},
		{"CA file", func(o *Options) { o.CACertFile = "" }, false},
		{"state dir", func(o *Options) { o.StateDir = "/tmp/x" }, false},
		{"heartbeat", func(o *Options) { o.Heartbeat = time.Minute }, false},
		{"server order", func(o *Options) { o.Servers = []string{"c1:7701", "c2:7701", "c1:7701"} }, false},
		{"feature order", func(o *Options) { o.Features = []string{"avx512", "ib"} }, false},
		{"name", func(o *Options) { o.Name = "node2" }, true},
		{"servers", func(o *Options) { o.Servers = []string{"evil:7701"} }, true},
		{"cpus", func(o *Options) { o.CPUs = 4 }, true},
		{"memory", func(o *Options) { o.MemoryMB = 1 }, true},
		{"gpus", func(o *Options) { o.GPUs = 0 }, true},
		{"features", func(o *Options) { o.Features = nil }, true},
		{"netns", func(o *Options) { o.NetNS = "" }, true},
		{"pids limit", func(o *Options) { o.PidsLimit = 0 }, true},
		{"cgroup parent", func(o *Options) { o.CgroupParent = "/" }, true},
		{"kill grace", func(o *Options) { o.KillGrace = time.Second }, true},
		{"attest pcr", func(o *Options) { o.AttestPCR = 14 }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.mod(&o)
			b, err := canonicalConfig(o)
			if err != nil {
				t.Fatal(err)
			}
			if changed := !bytes.Equal(b, got); changed != tc.changed {
				t.Errorf("changed = %v, want %v: %s", changed, tc.changed, b)
			}
		})
	}
}

func TestDecideMeasure(t *testing.T) {
	bin := sha256.Sum256([]byte("agent v1"))
	bin2 := sha256.Sum256([]byte("agent v2"))
	cfg, cfg2 := []byte(`{"cpus":0}`), []byte(`{"cpus":4}`)
	binEv := func(sum [32]byte) attest.EventLogEntry {
		return attest.EventLogEntry{PCR: 15, Type: attest.EventTypeIPL, SHA256: sum[:], Data: []byte(policy.EventAgentBinary + "/usr/bin/stockade")}
	}
	cfgEv := func(c []byte) attest.EventLogEntry {
		s := sha256.Sum256(c)
		return attest.EventLogEntry{PCR: 15, Type: attest.EventTypeIPL, SHA256: s[:], Data: append([]byte(policy.EventAgentConfig), c...)}
	}
	other := attest.EventLogEntry{PCR: 15, Type: attest.EventTypeIPL, SHA256: make([]byte, 32), Data: []byte("something else")}
	boot := attest.EventLogEntry{PCR: 4, Type: attest.EventTypeIPL, SHA256: make([]byte, 32), Data: []byte("grub")}
	moved := binEv(bin)
	moved.Data = []byte(policy.EventAgentBinary + "/opt/stockade")
	tests := []struct {
		name string
		log  []attest.EventLogEntry
		want measureDecision
	}{
		{"first start since the TPM reset", nil, measureDecision{Need: true}},
		{"only other PCRs", []attest.EventLogEntry{boot}, measureDecision{Need: true}},
		{"restart, same binary and config", []attest.EventLogEntry{boot, binEv(bin), cfgEv(cfg)}, measureDecision{}},
		{"same binary at another path", []attest.EventLogEntry{moved, cfgEv(cfg)}, measureDecision{}},
		{"new binary", []attest.EventLogEntry{binEv(bin2), cfgEv(cfg)}, measureDecision{Need: true, Others: 2}},
		{"new config", []attest.EventLogEntry{binEv(bin), cfgEv(cfg2)}, measureDecision{Need: true, Others: 2}},
		{"back to an earlier binary", []attest.EventLogEntry{binEv(bin), cfgEv(cfg), binEv(bin2), cfgEv(cfg)},
			measureDecision{Need: true, Others: 4}},
		{"already re-measured after an upgrade", []attest.EventLogEntry{binEv(bin2), cfgEv(cfg), binEv(bin), cfgEv(cfg)},
			measureDecision{Others: 2}},
		{"died between the two extends", []attest.EventLogEntry{binEv(bin)}, measureDecision{Need: true, Others: 1}},
		{"foreign event after ours", []attest.EventLogEntry{binEv(bin), cfgEv(cfg), other}, measureDecision{Need: true, Others: 3}},
		{"foreign event before ours", []attest.EventLogEntry{other, binEv(bin), cfgEv(cfg)}, measureDecision{Others: 1}},
		{"config then binary", []attest.EventLogEntry{cfgEv(cfg), binEv(bin)}, measureDecision{Need: true, Others: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := decideMeasure(tc.log, 15, bin[:], cfg); got != tc.want {
				t.Errorf("decideMeasure = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestAttestTiming(t *testing.T) {
	every := []struct{ interval, want time.Duration }{
		{0, 20 * time.Second}, // not told yet: the policy default
		{60 * time.Second, 20 * time.Second},
		{9 * time.Second, 3 * time.Second},
		{2 * time.Second, time.Second},
	}
	for _, tc := range every {
		if got := requoteEvery(tc.interval); got != tc.want {
			t.Errorf("requoteEvery(%s) = %s, want %s", tc.interval, got, tc.want)
		}
	}
	retry := []struct {
		fails  int
		period time.Duration
		want   time.Duration
	}{
		{1, 20 * time.Second, time.Second},
		{2, 20 * time.Second, 2 * time.Second},
		{4, 20 * time.Second, 5 * time.Second},
		{50, 20 * time.Second, 5 * time.Second},
		{3, 3 * time.Second, 3 * time.Second},
		{3, time.Second, time.Second},
	}
	for _, tc := range retry {
		if got := requoteRetry(tc.fails, tc.period); got != tc.want {
			t.Errorf("requoteRetry(%d, %s) = %s, want %s", tc.fails, tc.period, got, tc.want)
		}
	}
	enroll := []struct {
		act   attestAction
		fails int
		want  time.Duration
	}{
		{attEnroll, 1, 0},
		{attEnroll, 3, 0},
		{attEnroll, 4, 8 * time.Second},
		{attRetry, 1, time.Second},
		{attRetry, 10, 30 * time.Second},
		{attRefused, 1, 5 * time.Second},
		{attRefused, 3, 20 * time.Second},
		{attRefused, 20, time.Minute},
		{attEvicted, 2, 10 * time.Second},
	}
	for _, tc := range enroll {
		if got := enrollRetry(tc.act, tc.fails); got != tc.want {
			t.Errorf("enrollRetry(%s, %d) = %s, want %s", tc.act, tc.fails, got, tc.want)
		}
	}
}

func TestStopAllJobs(t *testing.T) {
	state := t.TempDir()
	a := &agent{opts: Options{StateDir: state}, log: testLogger(t), jobs: map[jobKey]*localJob{}, kick: make(chan struct{}, 1)}
	add := func(id uint64, mod func(*localJob)) *localJob {
		k := jobKey{id, 0}
		lj := &localJob{key: k, dir: jobDir(state, k), meta: jobMeta{JobID: id, Launched: true}}
		if err := os.MkdirAll(lj.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if mod != nil {
			mod(lj)
		}
		a.jobs[k] = lj
		return lj
	}
	running := add(1, nil)
	finished := add(2, func(l *localJob) { l.finished = true })
	launching := add(3, func(l *localJob) { l.launching = true })
	a.stopAllJobs("test")

	if !running.meta.Abandoned || !running.cancelSent {
		t.Errorf("running job: abandoned %v, cancel sent %v", running.meta.Abandoned, running.cancelSent)
	}
	if m, err := readMeta(running.dir); err != nil || !m.Abandoned {
		t.Errorf("running job's record: %+v, %v", m, err)
	}
	if _, err := os.Stat(filepath.Join(running.dir, "cancel")); err != nil {
		t.Errorf("no cancel marker: %v", err)
	}
	if finished.meta.Abandoned || finished.cancelSent {
		t.Error("a finished job was stopped")
	}
	// The launch goroutine owns the dir; the watcher cancels it after.
	if !launching.meta.Abandoned || launching.cancelSent {
		t.Errorf("launching job: abandoned %v, cancel sent %v", launching.meta.Abandoned, launching.cancelSent)
	}
	if _, err := os.Stat(filepath.Join(launching.dir, "cancel")); err == nil {
		t.Error("cancel marker in a dir the launch owns")
	}
}

func TestNormalizeAttest(t *testing.T) {
	base := Options{Name: "node1", Servers: []string{"h:1"}}
	tests := []struct {
		name    string
		mod     func(*Options)
		wantPCR int
		wantErr string
	}{
		{"default PCR", nil, attest.DefaultPCR, ""},
		{"PCR 16", func(o *Options) { o.AttestPCR = 16 }, 16, ""},
		{"PCR out of range", func(o *Options) { o.AttestPCR = 24 }, 0, "--attest-pcr"},
		{"negative PCR", func(o *Options) { o.AttestPCR = -1 }, 0, "--attest-pcr"},
		{"CA without TPM", func(o *Options) { o.CACertFile = "ca.pem" }, 0, "--ca-cert"},
		{"CA with TPM", func(o *Options) { o.CACertFile, o.TPM = "ca.pem", "/dev/tpmrm0" }, attest.DefaultPCR, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			if tc.mod != nil {
				tc.mod(&o)
			}
			err := o.normalize()
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case o.AttestPCR != tc.wantPCR:
				t.Errorf("AttestPCR %d, want %d", o.AttestPCR, tc.wantPCR)
			}
		})
	}
}

// TestAttestWireNames checks the agent's wire types against the JSON field names
// of docs/api.md.
func TestAttestWireNames(t *testing.T) {
	tests := []struct {
		v    any
		keys []string
	}{
		{attest.EnrollRequest{}, []string{"name", "identity", "csr"}},
		{attest.ActivateRequest{}, []string{"session", "secret", "quote"}},
		{attest.QuoteRequest{}, []string{"nonce", "quote", "csr"}},
		{attest.EnrollResponse{}, []string{"session", "challenge"}},
		{attest.NonceResponse{}, []string{"nonce"}},
		{api.JoinResponse{AttestIntervalSec: 1}, []string{"certificate", "ca_certificate", "attest_interval_sec"}},
	}
	for _, tc := range tests {
		b, err := json.Marshal(tc.v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range tc.keys {
			if _, ok := m[k]; !ok {
				t.Errorf("%T has no %q: %s", tc.v, k, b)
			}
		}
		if len(m) != len(tc.keys) {
			t.Errorf("%T has other fields: %s", tc.v, b)
		}
	}
}
