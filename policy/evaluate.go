package policy

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Decision codes. They are stable: logs, metrics and node state use them.
const (
	CodePolicyInvalid         = "policy-invalid"
	CodeBankMissing           = "bank-missing"
	CodePCRNotQuoted          = "pcr-not-quoted"
	CodePCRNotExplained       = "pcr-not-explained"
	CodePCRMismatch           = "pcr-mismatch"
	CodeAgentNotMeasured      = "agent-not-measured"
	CodeAgentBinaryNotAllowed = "agent-binary-not-allowed"
	CodeUnexpectedMeasurement = "unexpected-measurement"
)

// Decision is the outcome of evaluating evidence against a policy.
type Decision struct {
	OK bool
	// Reason is Code, a colon and a human explanation; empty when OK.
	Reason string
	// Code is one of the Code* constants; empty when OK.
	Code string
	// FirstSeen holds the hex values recorded under trust on first use, set
	// only when OK. The caller must add them to Golden and log every one.
	FirstSeen map[int]string
	// AgentDigest is the measured agent binary, "sha256:<hex>", when found.
	AgentDigest string
	// ConfigDigest is the measured agent configuration, when found.
	ConfigDigest string
}

// Evaluate judges verified evidence. Checks run in a fixed order — bank,
// every policy PCR quoted, every one explained by the log, the agent PCR's
// events, then golden values — so the first failure is always the same one.
//
// A boot PCR with no golden values is, without trust on first use, only
// required to be explained by the event log: the log proves what was
// measured, but nothing says those measurements are good. Golden values or
// TOFU pin them.
//
// The policy is normalized on a copy first; an invalid policy fails closed.
func (p *Policy) Evaluate(ev *Evidence) Decision {
	q := p.Clone()
	if err := q.Normalize(); err != nil {
		return fail(CodePolicyInvalid, "%v", err)
	}
	if ev == nil {
		ev = &Evidence{}
	}
	if ev.Bank != q.Bank {
		return fail(CodeBankMissing, "evidence is in bank %q, the policy requires %s", ev.Bank, q.Bank)
	}
	for _, i := range q.PCRs {
		v, ok := ev.PCRs[i]
		if !ok {
			return fail(CodePCRNotQuoted, "PCR %d is not in the quote", i)
		}
		if len(v) != digestLen {
			return fail(CodePCRNotQuoted, "PCR %d is %d bytes, not a %s value", i, len(v), q.Bank)
		}
	}
	for _, i := range q.PCRs {
		if !ev.Explained[i] {
			return fail(CodePCRNotExplained, "PCR %d holds a value the event log does not account for", i)
		}
	}

	d := q.checkAgent(ev)
	if d.Code != "" {
		return d
	}

	seen := map[int]string{}
	for _, i := range q.PCRs {
		if i == q.AgentPCR {
			continue
		}
		v := hex.EncodeToString(ev.PCRs[i])
		golden := q.Golden[i]
		switch {
		case len(golden) > 0:
			if !slices.Contains(golden, v) {
				return d.failed(CodePCRMismatch, "PCR %d = %s not in the reference manifest", i, v)
			}
		case q.TrustOnFirstUse:
			seen[i] = v
		}
	}
	d.OK = true
	if len(seen) > 0 {
		d.FirstSeen = seen
	}
	return d
}

// checkAgent checks the agent PCR's events. It returns a Decision carrying
// the measured digests, with Code set if the check failed.
func (p *Policy) checkAgent(ev *Evidence) Decision {
	var d Decision
	binaries, configs := 0, 0
	for _, m := range ev.Measurements {
		if m.PCR != p.AgentPCR {
			continue
		}
		data := string(m.Data)
		digest := "sha256:" + hex.EncodeToString(m.Digest)
		switch {
		case strings.HasPrefix(data, EventAgentBinary):
			binaries++
			d.AgentDigest = digest
		case strings.HasPrefix(data, EventAgentConfig):
			configs++
			d.ConfigDigest = digest
		default:
			// The agent PCR is ours alone; anything else extended into it
			// could be hiding what really ran.
			return d.failed(CodeUnexpectedMeasurement, "PCR %d has an event that is not the agent binary or config: %q", p.AgentPCR, clip(data))
		}
	}
	switch {
	case binaries == 0:
		return d.failed(CodeAgentNotMeasured, "PCR %d has no %q event", p.AgentPCR, strings.TrimSpace(EventAgentBinary))
	case binaries > 1:
		return d.failed(CodeUnexpectedMeasurement, "PCR %d has %d agent binary events, want one", p.AgentPCR, binaries)
	case configs > 1:
		return d.failed(CodeUnexpectedMeasurement, "PCR %d has %d agent config events, want at most one", p.AgentPCR, configs)
	}
	if !slices.Contains(p.AgentDigests, d.AgentDigest) {
		return d.failed(CodeAgentBinaryNotAllowed, "%s is not on the allow-list", d.AgentDigest)
	}
	return d
}

func fail(code, format string, args ...any) Decision {
	var d Decision
	return d.failed(code, format, args...)
}

// failed returns d, keeping the digests found so far, marked as failed.
func (d Decision) failed(code, format string, args ...any) Decision {
	d.OK = false
	d.Code = code
	d.Reason = code + ": " + fmt.Sprintf(format, args...)
	d.FirstSeen = nil
	return d
}

// clip keeps reasons one short line even for hostile event data.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
