package policy

import (
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Policy is the cluster's measurement policy. Controllers store it in Raft
// as JSON; every node's evidence is evaluated against the same policy.
type Policy struct {
	// Version is bumped by every change; the state store sets it.
	Version uint64 `json:"version"`
	// Bank is the required PCR bank. Only "sha256" is supported.
	Bank string `json:"bank"`
	// PCRs must all be quoted and explained by the event log.
	PCRs []int `json:"pcrs"`
	// Golden holds the allowed lowercase hex values per firmware/boot PCR,
	// usually from a reference manifest (see ParseManifest).
	Golden map[int][]string `json:"golden"`
	// TrustOnFirstUse, set only by an admin, makes Evaluate report the
	// values of policy PCRs without golden values so the caller records
	// them in Golden; from then on they are required like golden values.
	TrustOnFirstUse bool `json:"trust_on_first_use"`
	// AgentPCR is the PCR the Stockade agent measures itself into.
	AgentPCR int `json:"agent_pcr"`
	// AgentDigests is the allow-list of agent binaries, "sha256:<hex>".
	AgentDigests []string `json:"agent_digests"`
	// IntervalSec is the re-attestation interval.
	IntervalSec int64 `json:"interval_sec"`
	// OnFailure is what happens to a failed node's jobs.
	OnFailure string `json:"on_failure"`
	// CertTTLSec is the lifetime of the node certificate issued on success.
	CertTTLSec int64 `json:"cert_ttl_sec"`
}

// Defaults and accepted values.
const (
	BankSHA256         = "sha256"
	DefaultAgentPCR    = 15
	DefaultIntervalSec = 60
	DefaultCertTTLSec  = 3600
	OnFailureRequeue   = "requeue"
	OnFailureKill      = "kill"

	maxPCR    = 23
	digestLen = 32 // bytes of a sha256 digest
)

// Default returns the policy a new cluster starts with: PCRs 0-7 and the
// agent PCR must be quoted and explained, and no agent binary is allowed
// until an admin adds one.
func Default() *Policy {
	p := &Policy{}
	if err := p.Normalize(); err != nil {
		panic("policy: default policy is invalid: " + err.Error())
	}
	return p
}

// Normalize fills defaults for unset fields and validates the policy,
// canonicalizing hex to lowercase and sorting/deduplicating lists. On error p
// is left unchanged. A zero AgentPCR means "unset" (PCR 0 belongs to the
// firmware and could never be the agent's anyway).
func (p *Policy) Normalize() error {
	q := p.Clone()
	if q.Bank == "" {
		q.Bank = BankSHA256
	}
	if q.Bank != BankSHA256 {
		return fmt.Errorf("bank: only %s is supported, not %q", BankSHA256, q.Bank)
	}
	if q.AgentPCR == 0 {
		q.AgentPCR = DefaultAgentPCR
	}
	// 0-7 are measured by firmware; 16 and 23 can be reset by software and
	// 17-22 belong to DRTM, so only 8-15 can hold a trustworthy agent chain.
	if q.AgentPCR < 8 || q.AgentPCR > 15 {
		return fmt.Errorf("agent_pcr: %d out of range 8-15", q.AgentPCR)
	}
	if len(q.PCRs) == 0 {
		q.PCRs = []int{0, 1, 2, 3, 4, 5, 6, 7, q.AgentPCR}
	}
	for _, i := range q.PCRs {
		if i < 0 || i > maxPCR {
			return fmt.Errorf("pcrs: %d out of range 0-%d", i, maxPCR)
		}
	}
	slices.Sort(q.PCRs)
	q.PCRs = slices.Compact(q.PCRs)
	// Without the agent PCR quoted and explained, the agent measurements in
	// the log would be unauthenticated.
	if !slices.Contains(q.PCRs, q.AgentPCR) {
		return fmt.Errorf("pcrs: must include agent_pcr %d", q.AgentPCR)
	}

	if q.Golden == nil {
		q.Golden = map[int][]string{}
	}
	for _, i := range slices.Sorted(maps.Keys(q.Golden)) {
		switch {
		case !slices.Contains(q.PCRs, i):
			return fmt.Errorf("golden[%d]: PCR %d is not in pcrs", i, i)
		case i == q.AgentPCR:
			// Its value changes with every agent upgrade; the allow-list governs it.
			return fmt.Errorf("golden[%d]: the agent PCR is checked against agent_digests, not golden values", i)
		case len(q.Golden[i]) == 0:
			return fmt.Errorf("golden[%d]: empty list", i)
		}
		vals, err := canonicalHexList(q.Golden[i])
		if err != nil {
			return fmt.Errorf("golden[%d]%s", i, err)
		}
		q.Golden[i] = vals
	}

	for n, d := range q.AgentDigests {
		c, ok := canonicalDigest(d)
		if !ok {
			return fmt.Errorf("agent_digests[%d]: not sha256:<64 hex>", n)
		}
		q.AgentDigests[n] = c
	}
	slices.Sort(q.AgentDigests)
	q.AgentDigests = slices.Compact(q.AgentDigests)

	if q.IntervalSec == 0 {
		q.IntervalSec = DefaultIntervalSec
	}
	if q.IntervalSec < 0 {
		return fmt.Errorf("interval_sec: %d must be positive", q.IntervalSec)
	}
	if q.CertTTLSec == 0 {
		q.CertTTLSec = DefaultCertTTLSec
	}
	// A certificate that expires before the next attestation would take a
	// healthy node out of service.
	if q.CertTTLSec <= q.IntervalSec {
		return fmt.Errorf("cert_ttl_sec: %d must exceed interval_sec %d", q.CertTTLSec, q.IntervalSec)
	}
	if q.OnFailure == "" {
		q.OnFailure = OnFailureRequeue
	}
	if q.OnFailure != OnFailureRequeue && q.OnFailure != OnFailureKill {
		return fmt.Errorf("on_failure: %q is not %s or %s", q.OnFailure, OnFailureRequeue, OnFailureKill)
	}
	*p = *q
	return nil
}

// AddDigest adds an agent binary digest to the allow-list. It accepts
// "sha256:<hex>" or the bare hex that sha256sum prints; adding a digest
// that is already allowed is not an error.
func (p *Policy) AddDigest(d string) error {
	if !strings.Contains(d, ":") {
		d = "sha256:" + d
	}
	c, ok := canonicalDigest(d)
	if !ok {
		return fmt.Errorf("agent digest %q: not sha256:<64 hex>", d)
	}
	if !slices.Contains(p.AgentDigests, c) {
		p.AgentDigests = append(p.AgentDigests, c)
		slices.Sort(p.AgentDigests)
	}
	return nil
}

// Clone returns a deep copy, so a stored policy can be changed without
// racing its readers.
func (p *Policy) Clone() *Policy {
	q := *p
	q.PCRs = slices.Clone(p.PCRs)
	q.AgentDigests = slices.Clone(p.AgentDigests)
	if p.Golden != nil {
		q.Golden = make(map[int][]string, len(p.Golden))
		for i, v := range p.Golden {
			q.Golden[i] = slices.Clone(v)
		}
	}
	return &q
}

// String is the summary `stockade attest policy show` prints: settings,
// then how each policy PCR is judged.
func (p *Policy) String() string {
	var b strings.Builder
	tofu := "off"
	if p.TrustOnFirstUse {
		tofu = "on"
	}
	fmt.Fprintf(&b, "version:            %d\n", p.Version)
	fmt.Fprintf(&b, "bank:               %s\n", p.Bank)
	fmt.Fprintf(&b, "pcrs:               %s\n", pcrRanges(p.PCRs))
	fmt.Fprintf(&b, "trust on first use: %s\n", tofu)
	fmt.Fprintf(&b, "interval:           %ds\n", p.IntervalSec)
	fmt.Fprintf(&b, "certificate ttl:    %ds\n", p.CertTTLSec)
	fmt.Fprintf(&b, "on failure:         %s\n", p.OnFailure)
	if len(p.AgentDigests) == 0 {
		fmt.Fprintf(&b, "agent digests:      none (every node fails attestation)\n")
	} else {
		fmt.Fprintf(&b, "agent digests:      %d\n", len(p.AgentDigests))
		for _, d := range p.AgentDigests {
			fmt.Fprintf(&b, "  %s\n", d)
		}
	}
	b.WriteString("pcr checks:\n")
	for _, i := range p.PCRs {
		switch {
		case i == p.AgentPCR:
			fmt.Fprintf(&b, "  PCR %2d: agent binary on the allow-list\n", i)
		case len(p.Golden[i]) > 0:
			fmt.Fprintf(&b, "  PCR %2d: one of %d golden values\n", i, len(p.Golden[i]))
			for _, v := range p.Golden[i] {
				fmt.Fprintf(&b, "          %s\n", v)
			}
		case p.TrustOnFirstUse:
			fmt.Fprintf(&b, "  PCR %2d: recorded on first use\n", i)
		default:
			fmt.Fprintf(&b, "  PCR %2d: explained by the event log only\n", i)
		}
	}
	return b.String()
}

// canonicalDigest returns d as "sha256:<lowercase hex>" if it is one.
func canonicalDigest(d string) (string, bool) {
	h, ok := strings.CutPrefix(strings.ToLower(d), "sha256:")
	if !ok || !isDigestHex(h) {
		return "", false
	}
	return "sha256:" + h, true
}

// canonicalHexList lowercases, validates, sorts and deduplicates PCR
// values; the error starts with the "[n]" index of the bad entry.
func canonicalHexList(vals []string) ([]string, error) {
	out := make([]string, len(vals))
	for n, v := range vals {
		v = strings.ToLower(v)
		if !isDigestHex(v) {
			return nil, fmt.Errorf("[%d]: not 64 hex digits", n)
		}
		out[n] = v
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func isDigestHex(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == digestLen
}

// pcrRanges formats sorted PCR indices compactly: "0-7,15".
func pcrRanges(pcrs []int) string {
	var parts []string
	for n := 0; n < len(pcrs); {
		m := n
		for m+1 < len(pcrs) && pcrs[m+1] == pcrs[m]+1 {
			m++
		}
		s := strconv.Itoa(pcrs[n])
		if m > n {
			s += "-" + strconv.Itoa(pcrs[m])
		}
		parts = append(parts, s)
		n = m + 1
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}
