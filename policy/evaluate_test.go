package policy

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

var (
	agentBin  = bytes.Repeat([]byte{0xaa}, 32)
	agentCfg  = bytes.Repeat([]byte{0xcc}, 32)
	binDigest = "sha256:" + hex.EncodeToString(agentBin)
	cfgDigest = "sha256:" + hex.EncodeToString(agentCfg)
)

// pcrValue is a distinct quoted value for PCR i.
func pcrValue(i int) []byte { return bytes.Repeat([]byte{byte(0x10 + i)}, 32) }

func pcrHex(i int) string { return hex.EncodeToString(pcrValue(i)) }

// goodEvidence satisfies testPolicy: PCRs 0-7 and 15 quoted and explained,
// the agent binary and config measured into PCR 15.
func goodEvidence() *Evidence {
	ev := &Evidence{Bank: "sha256", PCRs: map[int][]byte{}, Explained: map[int]bool{}}
	for _, i := range []int{0, 1, 2, 3, 4, 5, 6, 7, 15} {
		ev.PCRs[i] = pcrValue(i)
		ev.Explained[i] = true
	}
	ev.Measurements = []Measurement{
		{PCR: 0, Type: 8, Digest: pcrValue(0), Data: []byte("firmware")},
		{PCR: 15, Type: 13, Digest: agentBin, Data: []byte(EventAgentBinary + "/usr/local/bin/stockade")},
		{PCR: 15, Type: 13, Digest: agentCfg, Data: []byte(EventAgentConfig + `{"controller":"c1"}`)},
	}
	return ev
}

// testPolicy pins PCR 0 and 7 and allows the test agent binary.
func testPolicy() *Policy {
	p := Default()
	p.Golden = map[int][]string{0: {hexA, pcrHex(0)}, 7: {pcrHex(7)}}
	p.AgentDigests = []string{binDigest}
	return p
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name       string
		policy     func(p *Policy)
		evidence   func(ev *Evidence)
		nilEv      bool
		wantCode   string
		wantReason string
		wantAgent  string
		wantConfig string
		wantSeen   map[int]string
	}{
		{name: "ok", wantAgent: binDigest, wantConfig: cfgDigest},
		{name: "ok without config event", evidence: func(ev *Evidence) { ev.Measurements = ev.Measurements[:2] }, wantAgent: binDigest},
		{name: "ok with uppercase policy hex",
			policy:    func(p *Policy) { p.Golden[7] = []string{strings.ToUpper(pcrHex(7))} },
			wantAgent: binDigest, wantConfig: cfgDigest},
		{name: "unpinned pcr only needs to be explained",
			evidence:  func(ev *Evidence) { ev.PCRs[3] = pcrValue(9) },
			wantAgent: binDigest, wantConfig: cfgDigest},
		{name: "tofu records unpinned pcrs",
			policy:    func(p *Policy) { p.TrustOnFirstUse = true },
			wantAgent: binDigest, wantConfig: cfgDigest,
			wantSeen: map[int]string{1: pcrHex(1), 2: pcrHex(2), 3: pcrHex(3), 4: pcrHex(4), 5: pcrHex(5), 6: pcrHex(6)}},
		{name: "tofu values are then required",
			policy: func(p *Policy) {
				p.TrustOnFirstUse = true
				for i := 1; i <= 6; i++ {
					p.Golden[i] = []string{pcrHex(i)}
				}
			},
			evidence: func(ev *Evidence) { ev.PCRs[4] = pcrValue(9) },
			wantCode: CodePCRMismatch, wantReason: "pcr-mismatch: PCR 4 = " + pcrHex(9) + " not in the reference manifest",
			wantAgent: binDigest, wantConfig: cfgDigest},
		{name: "invalid policy fails closed",
			policy:   func(p *Policy) { p.OnFailure = "ignore" },
			wantCode: CodePolicyInvalid, wantReason: `policy-invalid: on_failure: "ignore" is not requeue or kill`},
		{name: "nil evidence", nilEv: true,
			wantCode: CodeBankMissing, wantReason: `bank-missing: evidence is in bank "", the policy requires sha256`},
		{name: "wrong bank", evidence: func(ev *Evidence) { ev.Bank = "sha1" },
			wantCode: CodeBankMissing, wantReason: `bank-missing: evidence is in bank "sha1", the policy requires sha256`},
		{name: "pcr not quoted", evidence: func(ev *Evidence) { delete(ev.PCRs, 5) },
			wantCode: CodePCRNotQuoted, wantReason: "pcr-not-quoted: PCR 5 is not in the quote"},
		{name: "pcr wrong size", evidence: func(ev *Evidence) { ev.PCRs[2] = make([]byte, 20) },
			wantCode: CodePCRNotQuoted, wantReason: "pcr-not-quoted: PCR 2 is 20 bytes, not a sha256 value"},
		{name: "agent pcr not explained", evidence: func(ev *Evidence) { ev.Explained[15] = false },
			wantCode: CodePCRNotExplained, wantReason: "pcr-not-explained: PCR 15 holds a value the event log does not account for"},
		{name: "boot pcr not explained under tofu",
			policy:   func(p *Policy) { p.TrustOnFirstUse = true },
			evidence: func(ev *Evidence) { delete(ev.Explained, 4) },
			wantCode: CodePCRNotExplained, wantReason: "pcr-not-explained: PCR 4 holds a value the event log does not account for"},
		{name: "golden mismatch", evidence: func(ev *Evidence) { ev.PCRs[0] = pcrValue(9) },
			wantCode: CodePCRMismatch, wantReason: "pcr-mismatch: PCR 0 = " + pcrHex(9) + " not in the reference manifest",
			wantAgent: binDigest, wantConfig: cfgDigest},
		{name: "agent not measured", evidence: func(ev *Evidence) { ev.Measurements = ev.Measurements[:1] },
			wantCode: CodeAgentNotMeasured, wantReason: `agent-not-measured: PCR 15 has no "stockade-agent-binary" event`},
		{name: "agent measured into another pcr",
			evidence: func(ev *Evidence) { ev.Measurements[1].PCR = 14; ev.Measurements[2].PCR = 14 },
			wantCode: CodeAgentNotMeasured, wantReason: `agent-not-measured: PCR 15 has no "stockade-agent-binary" event`},
		{name: "agent binary not allowed", policy: func(p *Policy) { p.AgentDigests = []string{"sha256:" + hexB} },
			wantCode: CodeAgentBinaryNotAllowed, wantReason: "agent-binary-not-allowed: " + binDigest + " is not on the allow-list",
			wantAgent: binDigest, wantConfig: cfgDigest},
		{name: "empty allow-list", policy: func(p *Policy) { p.AgentDigests = nil },
			wantCode: CodeAgentBinaryNotAllowed, wantReason: "agent-binary-not-allowed: " + binDigest + " is not on the allow-list",
			wantAgent: binDigest, wantConfig: cfgDigest},
		{name: "foreign event on agent pcr",
			evidence: func(ev *Evidence) {
				ev.Measurements = append(ev.Measurements, Measurement{PCR: 15, Digest: agentBin, Data: []byte("shim")})
			},
			wantCode: CodeUnexpectedMeasurement, wantReason: `unexpected-measurement: PCR 15 has an event that is not the agent binary or config: "shim"`,
			wantAgent: binDigest, wantConfig: cfgDigest},
		{name: "two agent binaries",
			evidence: func(ev *Evidence) { ev.Measurements = append(ev.Measurements, ev.Measurements[1]) },
			wantCode: CodeUnexpectedMeasurement, wantReason: "unexpected-measurement: PCR 15 has 2 agent binary events, want one",
			wantAgent: binDigest, wantConfig: cfgDigest},
		{name: "two agent configs",
			evidence: func(ev *Evidence) { ev.Measurements = append(ev.Measurements, ev.Measurements[2]) },
			wantCode: CodeUnexpectedMeasurement, wantReason: "unexpected-measurement: PCR 15 has 2 agent config events, want at most one",
			wantAgent: binDigest, wantConfig: cfgDigest},
		{name: "tofu records nothing on failure",
			policy:   func(p *Policy) { p.TrustOnFirstUse = true },
			evidence: func(ev *Evidence) { ev.PCRs[7] = pcrValue(9) },
			wantCode: CodePCRMismatch, wantReason: "pcr-mismatch: PCR 7 = " + pcrHex(9) + " not in the reference manifest",
			wantAgent: binDigest, wantConfig: cfgDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			if tt.policy != nil {
				tt.policy(p)
			}
			ev := goodEvidence()
			if tt.evidence != nil {
				tt.evidence(ev)
			}
			if tt.nilEv {
				ev = nil
			}
			before := p.Clone()
			d := p.Evaluate(ev)
			want := Decision{
				OK:           tt.wantCode == "",
				Code:         tt.wantCode,
				Reason:       tt.wantReason,
				FirstSeen:    tt.wantSeen,
				AgentDigest:  tt.wantAgent,
				ConfigDigest: tt.wantConfig,
			}
			if !reflect.DeepEqual(d, want) {
				t.Errorf("Evaluate() =\n%+v\nwant\n%+v", d, want)
			}
			if !reflect.DeepEqual(p, before) {
				t.Errorf("Evaluate changed the policy")
			}
		})
	}
}
