package policy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

var (
	hexA = strings.Repeat("a", 64)
	hexB = strings.Repeat("b", 64)
	hexC = strings.Repeat("c", 64)
)

func TestDefault(t *testing.T) {
	p := Default()
	want := &Policy{
		Bank:        "sha256",
		PCRs:        []int{0, 1, 2, 3, 4, 5, 6, 7, 15},
		Golden:      map[int][]string{},
		AgentPCR:    15,
		IntervalSec: 60,
		OnFailure:   "requeue",
		CertTTLSec:  3600,
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("Default() = %+v, want %+v", p, want)
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		in      Policy
		wantErr string
		check   func(t *testing.T, p *Policy)
	}{
		{name: "zero gets defaults", check: func(t *testing.T, p *Policy) {
			if !reflect.DeepEqual(p, Default()) {
				t.Errorf("got %+v", p)
			}
		}},
		{name: "default pcrs follow agent_pcr", in: Policy{AgentPCR: 14}, check: func(t *testing.T, p *Policy) {
			if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 14}; !reflect.DeepEqual(p.PCRs, want) {
				t.Errorf("pcrs = %v, want %v", p.PCRs, want)
			}
		}},
		{name: "canonicalizes", in: Policy{
			PCRs:         []int{15, 7, 0, 7},
			Golden:       map[int][]string{7: {strings.ToUpper(hexB), hexA, hexB}},
			AgentDigests: []string{"SHA256:" + strings.ToUpper(hexC), "sha256:" + hexA, "sha256:" + hexC},
			OnFailure:    "kill",
		}, check: func(t *testing.T, p *Policy) {
			if want := []int{0, 7, 15}; !reflect.DeepEqual(p.PCRs, want) {
				t.Errorf("pcrs = %v, want %v", p.PCRs, want)
			}
			if want := []string{hexA, hexB}; !reflect.DeepEqual(p.Golden[7], want) {
				t.Errorf("golden[7] = %v, want %v", p.Golden[7], want)
			}
			if want := []string{"sha256:" + hexA, "sha256:" + hexC}; !reflect.DeepEqual(p.AgentDigests, want) {
				t.Errorf("agent_digests = %v, want %v", p.AgentDigests, want)
			}
			if p.OnFailure != "kill" {
				t.Errorf("on_failure = %q", p.OnFailure)
			}
		}},
		{name: "bank", in: Policy{Bank: "sha1"}, wantErr: `bank: only sha256 is supported, not "sha1"`},
		{name: "pcr too high", in: Policy{PCRs: []int{0, 24, 15}}, wantErr: "pcrs: 24 out of range 0-23"},
		{name: "pcr negative", in: Policy{PCRs: []int{-1, 15}}, wantErr: "pcrs: -1 out of range 0-23"},
		{name: "pcrs without agent pcr", in: Policy{PCRs: []int{0, 7}}, wantErr: "pcrs: must include agent_pcr 15"},
		{name: "agent pcr firmware", in: Policy{AgentPCR: 7}, wantErr: "agent_pcr: 7 out of range 8-15"},
		{name: "agent pcr resettable", in: Policy{AgentPCR: 23}, wantErr: "agent_pcr: 23 out of range 8-15"},
		{name: "golden outside pcrs", in: Policy{Golden: map[int][]string{9: {hexA}}}, wantErr: "golden[9]: PCR 9 is not in pcrs"},
		{name: "golden on agent pcr", in: Policy{Golden: map[int][]string{15: {hexA}}}, wantErr: "golden[15]: the agent PCR is checked against agent_digests, not golden values"},
		{name: "golden empty", in: Policy{Golden: map[int][]string{0: {}}}, wantErr: "golden[0]: empty list"},
		{name: "golden bad hex", in: Policy{Golden: map[int][]string{0: {hexA, "xyz"}}}, wantErr: "golden[0][1]: not 64 hex digits"},
		{name: "golden sha1 length", in: Policy{Golden: map[int][]string{0: {strings.Repeat("a", 40)}}}, wantErr: "golden[0][0]: not 64 hex digits"},
		{name: "digest without prefix", in: Policy{AgentDigests: []string{"sha256:" + hexA, "sha256:" + hexB, hexC}}, wantErr: "agent_digests[2]: not sha256:<64 hex>"},
		{name: "digest short", in: Policy{AgentDigests: []string{"sha256:abcd"}}, wantErr: "agent_digests[0]: not sha256:<64 hex>"},
		{name: "interval negative", in: Policy{IntervalSec: -5}, wantErr: "interval_sec: -5 must be positive"},
		{name: "ttl not above interval", in: Policy{IntervalSec: 60, CertTTLSec: 60}, wantErr: "cert_ttl_sec: 60 must exceed interval_sec 60"},
		{name: "ttl default below interval", in: Policy{IntervalSec: 7200}, wantErr: "cert_ttl_sec: 3600 must exceed interval_sec 7200"},
		{name: "on_failure", in: Policy{OnFailure: "drain"}, wantErr: `on_failure: "drain" is not requeue or kill`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.in.Clone()
			err := p.Normalize()
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Normalize() error = %v, want %q", err, tt.wantErr)
				}
				if !reflect.DeepEqual(p, tt.in.Clone()) {
					t.Errorf("failed Normalize changed the policy: %+v", p)
				}
				return
			}
			if err != nil {
				t.Fatalf("Normalize() error = %v", err)
			}
			tt.check(t, p)
			// Normalizing is idempotent, so stored policies stay stable.
			again := p.Clone()
			if err := again.Normalize(); err != nil || !reflect.DeepEqual(again, p) {
				t.Errorf("second Normalize() = %+v, %v", again, err)
			}
		})
	}
}

func TestAddDigest(t *testing.T) {
	tests := []struct {
		name    string
		start   []string
		add     string
		want    []string
		wantErr bool
	}{
		{name: "prefixed", add: "sha256:" + hexB, want: []string{"sha256:" + hexB}},
		{name: "bare hex from sha256sum", add: strings.ToUpper(hexB), want: []string{"sha256:" + hexB}},
		{name: "kept sorted", start: []string{"sha256:" + hexC}, add: hexA, want: []string{"sha256:" + hexA, "sha256:" + hexC}},
		{name: "duplicate is a no-op", start: []string{"sha256:" + hexA}, add: "sha256:" + hexA, want: []string{"sha256:" + hexA}},
		{name: "other algorithm", add: "sha1:" + strings.Repeat("a", 40), wantErr: true},
		{name: "short", add: "abcd", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Policy{AgentDigests: tt.start}
			err := p.AddDigest(tt.add)
			if (err != nil) != tt.wantErr {
				t.Fatalf("AddDigest(%q) error = %v, wantErr %v", tt.add, err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(p.AgentDigests, tt.want) {
				t.Errorf("agent_digests = %v, want %v", p.AgentDigests, tt.want)
			}
		})
	}
}

func TestCloneIsDeep(t *testing.T) {
	p := Default()
	p.Golden[0] = []string{hexA}
	p.AgentDigests = []string{"sha256:" + hexA}
	q := p.Clone()
	q.Golden[0][0] = hexB
	q.Golden[1] = []string{hexB}
	q.PCRs[0] = 9
	q.AgentDigests[0] = "sha256:" + hexB
	if p.Golden[0][0] != hexA || len(p.Golden) != 1 || p.PCRs[0] != 0 || p.AgentDigests[0] != "sha256:"+hexA {
		t.Errorf("changing the clone changed the original: %+v", p)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	p := Default()
	p.Version = 3
	p.Golden[0] = []string{hexA}
	p.AgentDigests = []string{"sha256:" + hexC}
	p.TrustOnFirstUse = true
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var q Policy
	if err := json.Unmarshal(data, &q); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&q, p) {
		t.Errorf("round trip = %+v, want %+v", &q, p)
	}
}

func TestString(t *testing.T) {
	p := Default()
	p.Version = 4
	p.Golden[0] = []string{hexA, hexB}
	p.PCRs = []int{0, 1, 2, 3, 8, 15}
	tests := []struct {
		name string
		tofu bool
		want []string
	}{
		{name: "explained only", want: []string{
			"version:            4\n",
			"pcrs:               0-3,8,15\n",
			"agent digests:      none (every node fails attestation)\n",
			"  PCR  0: one of 2 golden values\n          " + hexA + "\n          " + hexB + "\n",
			"  PCR  1: explained by the event log only\n",
			"  PCR 15: agent binary on the allow-list\n",
		}},
		{name: "tofu", tofu: true, want: []string{
			"trust on first use: on\n",
			"  PCR  8: recorded on first use\n",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := p.Clone()
			q.TrustOnFirstUse = tt.tofu
			s := q.String()
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Errorf("String() lacks %q:\n%s", w, s)
				}
			}
		})
	}
}
