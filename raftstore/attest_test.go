package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/policy"
	"github.com/stockade-hpc/stockade/scheduler"
)

// fp is a well-formed EK fingerprint made of one repeated hex digit.
func fp(c string) string { return "sha256:" + strings.Repeat(c, 64) }

// pcrValue is a well-formed sha256 PCR value.
func pcrValue(c string) string { return strings.Repeat(c, 64) }

func errIs(res any, want error) bool {
	err, _ := res.(error)
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

// kinds lists the kinds of a node's audit records ("" for all), oldest
// first.
func (h *harness) kinds(node string) []string {
	var out []string
	for _, r := range h.s.Snapshot().Audit(node, 0, 0) {
		out = append(out, r.Kind)
	}
	return out
}

// attest admits a node with a certificate serial.
func (h *harness) attest(node string, trust api.Trust, ek, serial string) *api.Node {
	h.t.Helper()
	return h.must(Command{Type: CmdNodeAttested, Attest: &NodeAttestation{
		Node: node, Trust: trust, EKFingerprint: ek, CertSerial: serial,
	}}).(*api.Node)
}

func TestSetPolicy(t *testing.T) {
	tests := []struct {
		name        string
		policies    []*policy.Policy
		wantErr     error
		wantVersion uint64
		wantAudits  int
	}{
		{name: "first set is version 1", policies: []*policy.Policy{{Version: 42}}, wantVersion: 1, wantAudits: 1},
		{name: "each set bumps", policies: []*policy.Policy{{}, {Version: 1}, {TrustOnFirstUse: true}}, wantVersion: 3, wantAudits: 3},
		{name: "invalid policy", policies: []*policy.Policy{{}, {Bank: "sha1"}}, wantErr: ErrInvalidCommand, wantVersion: 1, wantAudits: 1},
		{name: "golden on the agent PCR", policies: []*policy.Policy{{Golden: map[int][]string{15: {pcrValue("a")}}}}, wantErr: ErrInvalidCommand, wantVersion: 0},
		{name: "no policy", policies: []*policy.Policy{nil}, wantErr: ErrInvalidCommand, wantVersion: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			var last any
			for _, p := range tc.policies {
				last = h.do(Command{Type: CmdSetPolicy, Policy: p, Actor: "root", Reason: "why"})
			}
			if !errIs(last, tc.wantErr) {
				t.Fatalf("result %v, want %v", last, tc.wantErr)
			}
			got := h.s.Snapshot().Policy()
			if got.Version != tc.wantVersion || got.Bank != policy.BankSHA256 || got.IntervalSec != policy.DefaultIntervalSec {
				t.Errorf("policy %+v, want normalized version %d", got, tc.wantVersion)
			}
			if tc.wantErr == nil {
				if p := last.(*policy.Policy); p.Version != tc.wantVersion {
					t.Errorf("result version %d", p.Version)
				}
			}
			audit := h.s.Snapshot().Audit("", 0, 0)
			if len(audit) != tc.wantAudits {
				t.Fatalf("%d audit records, want %d", len(audit), tc.wantAudits)
			}
			for _, r := range audit {
				if r.Kind != api.AuditPolicyChanged || r.Actor != "root" || !strings.HasSuffix(r.Reason, ": why") {
					t.Errorf("audit %+v", r)
				}
			}
		})
	}
	t.Run("result and snapshot are copies", func(t *testing.T) {
		h := newHarness(t)
		p := h.must(Command{Type: CmdSetPolicy, Policy: &policy.Policy{}}).(*policy.Policy)
		p.PCRs[0] = 23
		h.s.Snapshot().Policy().PCRs[0] = 23
		if h.s.Snapshot().Policy().PCRs[0] != 0 {
			t.Error("stored policy was modified through a returned copy")
		}
	})
}

func TestRecordTOFU(t *testing.T) {
	golden0 := map[int][]string{0: {pcrValue("0")}}
	tests := []struct {
		name         string
		policy       *policy.Policy // nil: none set (default, TOFU off)
		version      uint64         // PolicyVersion sent; policy versions start at 1
		tofu         map[int]string
		nodes        []string
		wantErr      error
		wantRecorded []int
		wantStale    bool
		wantVersion  uint64
		wantGolden   map[int]string
	}{
		{
			name: "records unpinned PCRs", policy: &policy.Policy{TrustOnFirstUse: true, Golden: golden0}, version: 1,
			tofu:         map[int]string{0: pcrValue("1"), 1: pcrValue("A"), 7: pcrValue("b"), 15: pcrValue("c"), 20: pcrValue("d")},
			wantRecorded: []int{1, 7}, wantVersion: 2,
			wantGolden: map[int]string{0: pcrValue("0"), 1: pcrValue("a"), 7: pcrValue("b")},
		},
		{
			name: "stale version", policy: &policy.Policy{TrustOnFirstUse: true}, version: 0,
			tofu: map[int]string{1: pcrValue("a")}, wantStale: true, wantVersion: 1,
		},
		{
			name: "TOFU off", policy: &policy.Policy{}, version: 1,
			tofu: map[int]string{1: pcrValue("a")}, wantStale: true, wantVersion: 1,
		},
		{
			name: "no policy set", version: 0,
			tofu: map[int]string{1: pcrValue("a")}, wantStale: true, wantVersion: 0,
		},
		{
			name: "nothing left to pin", policy: &policy.Policy{TrustOnFirstUse: true, Golden: golden0}, version: 1,
			tofu: map[int]string{0: pcrValue("1")}, wantVersion: 1, wantGolden: map[int]string{0: pcrValue("0")},
		},
		{
			name: "bad value", policy: &policy.Policy{TrustOnFirstUse: true}, version: 1,
			tofu: map[int]string{1: "zz"}, wantErr: ErrInvalidCommand, wantVersion: 1,
		},
		{
			name: "no node", policy: &policy.Policy{TrustOnFirstUse: true}, version: 1, nodes: []string{},
			tofu: map[int]string{1: pcrValue("a")}, wantErr: ErrInvalidCommand, wantVersion: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.policy != nil {
				h.must(Command{Type: CmdSetPolicy, Policy: tc.policy})
			}
			nodes := tc.nodes
			if nodes == nil {
				nodes = []string{"n1"}
			}
			before := len(h.kinds(""))
			res := h.do(Command{Type: CmdRecordTOFU, NodeNames: nodes, PolicyVersion: tc.version, TOFU: tc.tofu})
			if !errIs(res, tc.wantErr) {
				t.Fatalf("result %v, want %v", res, tc.wantErr)
			}
			p := h.s.Snapshot().Policy()
			if p.Version != tc.wantVersion {
				t.Errorf("policy version %d, want %d", p.Version, tc.wantVersion)
			}
			if tc.wantErr != nil {
				return
			}
			r := res.(*TOFUResult)
			if !slices.Equal(r.Recorded, tc.wantRecorded) || r.Stale != tc.wantStale || r.Version != tc.wantVersion {
				t.Errorf("result %+v", r)
			}
			for pcr, want := range tc.wantGolden {
				if !slices.Equal(p.Golden[pcr], []string{want}) {
					t.Errorf("golden[%d] = %v, want %s", pcr, p.Golden[pcr], want)
				}
			}
			if len(p.Golden) != len(tc.wantGolden) {
				t.Errorf("golden %v", p.Golden)
			}
			audit := h.s.Snapshot().Audit("n1", 0, 0)
			if len(audit) != len(tc.wantRecorded) || len(h.kinds(""))-before != len(tc.wantRecorded) {
				t.Fatalf("audit %v", audit)
			}
			for i, a := range audit {
				if a.Kind != api.AuditTOFURecorded || !strings.HasPrefix(a.Reason, fmt.Sprintf("PCR %d = ", tc.wantRecorded[i])) {
					t.Errorf("audit %+v", a)
				}
			}
		})
	}
	t.Run("second node of the same version does not pin", func(t *testing.T) {
		h := newHarness(t)
		h.must(Command{Type: CmdSetPolicy, Policy: &policy.Policy{TrustOnFirstUse: true}})
		first := h.must(Command{Type: CmdRecordTOFU, NodeNames: []string{"n1"}, PolicyVersion: 1, TOFU: map[int]string{0: pcrValue("a")}}).(*TOFUResult)
		second := h.must(Command{Type: CmdRecordTOFU, NodeNames: []string{"n2"}, PolicyVersion: 1, TOFU: map[int]string{0: pcrValue("b"), 1: pcrValue("b")}}).(*TOFUResult)
		if first.Stale || !second.Stale || len(second.Recorded) != 0 {
			t.Fatalf("first %+v second %+v", first, second)
		}
		p := h.s.Snapshot().Policy()
		if !slices.Equal(p.Golden[0], []string{pcrValue("a")}) || p.Golden[1] != nil || p.Version != 2 {
			t.Errorf("policy %+v", p)
		}
	})
}

func TestApproveEK(t *testing.T) {
	tests := []struct {
		name    string
		cmds    []Command
		wantErr error
		wantFPs []string
	}{
		{"approve canonicalizes", []Command{{Type: CmdApproveEK, EK: &api.ApprovedEK{Fingerprint: strings.ToUpper(fp("a")), Comment: "rack 4"}}}, nil, []string{fp("a")}},
		{"approve twice", []Command{
			{Type: CmdApproveEK, EK: &api.ApprovedEK{Fingerprint: fp("a")}},
			{Type: CmdApproveEK, EK: &api.ApprovedEK{Fingerprint: fp("a"), Comment: "again"}},
		}, nil, []string{fp("a")}},
		{"revoke", []Command{
			{Type: CmdApproveEK, EK: &api.ApprovedEK{Fingerprint: fp("a")}},
			{Type: CmdApproveEK, EK: &api.ApprovedEK{Fingerprint: fp("b")}},
			{Type: CmdRevokeEKApproval, EK: &api.ApprovedEK{Fingerprint: fp("a")}},
		}, nil, []string{fp("b")}},
		{"revoke unknown is a no-op", []Command{{Type: CmdRevokeEKApproval, EK: &api.ApprovedEK{Fingerprint: fp("a")}}}, nil, nil},
		{"bad fingerprint", []Command{{Type: CmdApproveEK, EK: &api.ApprovedEK{Fingerprint: "sha1:abc"}}}, ErrInvalidCommand, nil},
		{"no EK", []Command{{Type: CmdApproveEK}}, ErrInvalidCommand, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			var last any
			for _, c := range tc.cmds {
				c.Actor = "root"
				last = h.do(c)
			}
			if !errIs(last, tc.wantErr) {
				t.Fatalf("result %v, want %v", last, tc.wantErr)
			}
			var fps []string
			for _, ek := range h.s.Snapshot().ApprovedEKs() {
				fps = append(fps, ek.Fingerprint)
				if ek.ApprovedBy != "root" || ek.Time.IsZero() {
					t.Errorf("approval %+v", ek)
				}
			}
			if !slices.Equal(fps, tc.wantFPs) {
				t.Errorf("approved %v, want %v", fps, tc.wantFPs)
			}
			for _, f := range tc.wantFPs {
				if h.s.Snapshot().ApprovedEK(strings.ToUpper(f)) == nil {
					t.Errorf("lookup of %s failed", f)
				}
			}
		})
	}
	t.Run("evicting two nodes of one job keeps allocations right", func(t *testing.T) {
		h := newHarness(t)
		h.must(Command{Type: CmdApproveEK, EK: &api.ApprovedEK{Fingerprint: fp("a")}})
		h.attest("n1", api.TrustApproved, fp("a"), "1")
		h.attest("n2", api.TrustApproved, fp("a"), "2")
		h.must(Command{Type: CmdSetPolicy, Policy: &policy.Policy{OnFailure: policy.OnFailureKill}})
		id := h.run(api.JobSpec{Requeue: true, Nodes: 2}, "n1", "n2")
		res := h.must(Command{Type: CmdRevokeEKApproval, EK: &api.ApprovedEK{Fingerprint: fp("a")}}).(*NodesDownResult)
		if !slices.Equal(res.Failed, []uint64{id}) || len(res.Requeued) != 0 {
			t.Errorf("result %+v (policy says kill)", res)
		}
		for _, n := range []string{"n1", "n2"} {
			if h.alloc(n) != [3]int64{} || h.node(n).Trust != api.TrustNone {
				t.Errorf("%s: %+v", n, h.node(n))
			}
		}
	})
	t.Run("revoking evicts nodes admitted on the approval", func(t *testing.T) {
		h := newHarness(t)
		h.must(Command{Type: CmdApproveEK, EK: &api.ApprovedEK{Fingerprint: fp("a")}})
		h.attest("n1", api.TrustApproved, fp("a"), "1a")
		h.attest("n2", api.TrustAttested, fp("a"), "2a") // trusted via its EK certificate
		id := h.run(api.JobSpec{Requeue: true}, "n1")
		res := h.must(Command{Type: CmdRevokeEKApproval, EK: &api.ApprovedEK{Fingerprint: fp("a")}}).(*NodesDownResult)
		if !slices.Equal(res.Requeued, []uint64{id}) {
			t.Errorf("result %+v", res)
		}
		n1, n2 := h.node("n1"), h.node("n2")
		if n1.Trust != api.TrustNone || !n1.Drain || !h.s.Snapshot().CertRevoked("1a") {
			t.Errorf("n1 %+v", n1)
		}
		if n2.Trust != api.TrustAttested || n2.Drain {
			t.Errorf("n2 %+v", n2)
		}
		if got := h.kinds(""); !slices.Equal(got, []string{"ek-approved", "admitted", "admitted", "revoked", "evicted"}) {
			t.Errorf("audit %v", got)
		}
	})
}

func TestNodeAttested(t *testing.T) {
	att := func(node string, tr api.Trust, ek, serial string, renewal bool) Command {
		return Command{Type: CmdNodeAttested, Attest: &NodeAttestation{Node: node, Trust: tr, EKFingerprint: ek, CertSerial: serial, Renewal: renewal}}
	}
	tests := []struct {
		name       string
		setup      []Command
		cmd        Command
		wantErr    error
		wantTrust  api.Trust
		wantSerial string
		wantKinds  []string // audit of n1
		wantDrain  bool
	}{
		{name: "first admission", cmd: att("n1", api.TrustAttested, fp("a"), "00AB:CD", false),
			wantTrust: api.TrustAttested, wantSerial: "abcd", wantKinds: []string{"admitted"}},
		{name: "approved needs the list", cmd: att("n1", api.TrustApproved, fp("a"), "1", false),
			wantErr: ErrEKNotApproved, wantTrust: api.TrustNone},
		{name: "approved on the list",
			setup: []Command{{Type: CmdApproveEK, EK: &api.ApprovedEK{Fingerprint: fp("a")}}},
			cmd:   att("n1", api.TrustApproved, fp("a"), "1", false), wantTrust: api.TrustApproved, wantSerial: "1", wantKinds: []string{"admitted"}},
		{name: "renewal with the same certificate is not audited",
			setup: []Command{att("n1", api.TrustAttested, fp("a"), "1", false)},
			cmd:   att("n1", api.TrustAttested, fp("a"), "", true), wantTrust: api.TrustAttested, wantSerial: "1", wantKinds: []string{"admitted"}},
		{name: "renewal with a new certificate",
			setup: []Command{att("n1", api.TrustAttested, fp("a"), "1", false)},
			cmd:   att("n1", api.TrustAttested, fp("a"), "2", true), wantTrust: api.TrustAttested, wantSerial: "2", wantKinds: []string{"admitted"}},
		{name: "renewal from another TPM",
			setup: []Command{att("n1", api.TrustAttested, fp("a"), "1", false)},
			cmd:   att("n1", api.TrustAttested, fp("b"), "2", true), wantErr: ErrEKChanged, wantTrust: api.TrustAttested, wantSerial: "1", wantKinds: []string{"admitted"}},
		{name: "renewal after a failure is an admission",
			setup: []Command{att("n1", api.TrustAttested, fp("a"), "1", false), {Type: CmdAttestFailed, Attest: &NodeAttestation{Node: "n1", Reason: "x"}}},
			cmd:   att("n1", api.TrustAttested, fp("a"), "2", true), wantTrust: api.TrustAttested, wantSerial: "2", wantKinds: []string{"admitted", "evicted", "admitted"}},
		{name: "attestation lifts its own drain",
			setup: []Command{{Type: CmdAttestFailed, Attest: &NodeAttestation{Node: "n1", Code: "pcr-mismatch", Reason: "bad"}}},
			cmd:   att("n1", api.TrustAttested, fp("a"), "1", false), wantTrust: api.TrustAttested, wantSerial: "1", wantKinds: []string{"refused", "admitted"}},
		{name: "attestation keeps an admin drain",
			setup: []Command{{Type: CmdUpdateNodes, NodeNames: []string{"n1"}, NodeState: "drain", Reason: "maint"}},
			cmd:   att("n1", api.TrustAttested, fp("a"), "1", false), wantTrust: api.TrustAttested, wantSerial: "1", wantKinds: []string{"admitted"}, wantDrain: true},
		{name: "revoked serial",
			setup: []Command{{Type: CmdRevokeCert, Serials: []string{"ff"}}},
			cmd:   att("n1", api.TrustAttested, fp("a"), "FF", false), wantErr: ErrCertRevoked, wantTrust: api.TrustNone},
		{name: "trust none", cmd: att("n1", api.TrustNone, fp("a"), "1", false), wantErr: ErrInvalidCommand, wantTrust: api.TrustNone},
		{name: "bad fingerprint", cmd: att("n1", api.TrustAttested, "abc", "1", false), wantErr: ErrInvalidCommand, wantTrust: api.TrustNone},
		{name: "bad serial", cmd: att("n1", api.TrustAttested, fp("a"), "xyz", false), wantErr: ErrInvalidCommand, wantTrust: api.TrustNone},
		{name: "no node", cmd: att("", api.TrustAttested, fp("a"), "1", false), wantErr: ErrInvalidCommand, wantTrust: api.TrustNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			for _, c := range tc.setup {
				h.must(c)
			}
			res := h.do(tc.cmd)
			if !errIs(res, tc.wantErr) {
				t.Fatalf("result %v, want %v", res, tc.wantErr)
			}
			n := h.node("n1")
			if tc.wantErr == nil {
				if res.(*api.Node) != n {
					t.Errorf("result is not the stored record")
				}
				if n.EKFingerprint != fp("a") || !n.LastQuote.Equal(time.Unix(0, h.now)) || n.AttestError != "" {
					t.Errorf("n1 %+v", n)
				}
			}
			if n.Trust != tc.wantTrust || n.CertSerial != tc.wantSerial || n.Drain != tc.wantDrain {
				t.Errorf("n1 trust %q serial %q drain %v reason %q", n.Trust, n.CertSerial, n.Drain, n.Reason)
			}
			if got := h.kinds("n1"); !slices.Equal(got, tc.wantKinds) {
				t.Errorf("audit %v, want %v", got, tc.wantKinds)
			}
		})
	}
	t.Run("unknown node is created and keeps trust when it registers", func(t *testing.T) {
		h := newHarness(t)
		h.attest("n7", api.TrustAttested, fp("a"), "7")
		if n := h.node("n7"); n.State != api.NodeUnknown || n.Usable() {
			t.Fatalf("n7 %+v", n)
		}
		h.must(Command{Type: CmdNodesDown, NodeNames: []string{"n7"}})
		h.must(Command{Type: CmdRegisterNode, Register: &api.AgentRegisterRequest{Name: "n7", CPUs: 4, MemoryMB: 1000}})
		n := h.node("n7")
		if n.State != api.NodeUp || n.Trust != api.TrustAttested || n.CertSerial != "7" || n.EKFingerprint != fp("a") || n.LastQuote.IsZero() {
			t.Errorf("n7 %+v", n)
		}
	})
}

func TestAttestFailed(t *testing.T) {
	tests := []struct {
		name         string
		admitted     bool
		kill         bool
		wantRequeued bool // the --requeue job
		wantKind     string
	}{
		{name: "requeue per job", admitted: true, wantRequeued: true, wantKind: api.AuditEvicted},
		{name: "kill", admitted: true, kill: true, wantKind: api.AuditEvicted},
		{name: "never admitted", wantRequeued: true, wantKind: api.AuditRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if tc.admitted {
				h.attest("n1", api.TrustAttested, fp("a"), "1a")
			}
			requeue := h.run(api.JobSpec{Requeue: true, Nodes: 2}, "n1", "n2")
			noRequeue := h.run(api.JobSpec{}, "n1")
			other := h.run(api.JobSpec{}, "n2")

			res := h.must(Command{Type: CmdAttestFailed, Kill: tc.kill,
				Attest: &NodeAttestation{Node: "n1", Code: "pcr-mismatch", Reason: "pcr-mismatch: PCR 0"}}).(*NodesDownResult)

			wantReq, wantFail := []uint64{requeue}, []uint64{noRequeue}
			if !tc.wantRequeued {
				wantReq, wantFail = nil, []uint64{requeue, noRequeue}
			}
			if !slices.Equal(res.Requeued, wantReq) || !slices.Equal(res.Failed, wantFail) {
				t.Errorf("result %+v, want requeued %v failed %v", res, wantReq, wantFail)
			}
			if j := h.job(requeue); tc.wantRequeued && (j.State != api.JobPending || j.Restarts != 1 || j.Nodes != nil) {
				t.Errorf("requeued job %+v", j)
			}
			if j := h.job(noRequeue); j.State != api.JobNodeFail || !strings.Contains(j.FailReason, "attestation failed") {
				t.Errorf("failed job %s %q", j.State, j.FailReason)
			}
			if h.job(other).State != api.JobRunning {
				t.Errorf("job on n2 hit")
			}
			if h.alloc("n1") != [3]int64{} || h.alloc("n2") != [3]int64{2, 1000, 0} {
				t.Errorf("alloc n1 %v n2 %v", h.alloc("n1"), h.alloc("n2"))
			}
			n := h.node("n1")
			if !n.Drain || n.Reason != "attestation failed: pcr-mismatch: PCR 0" || n.Trust != api.TrustNone ||
				n.AttestError != "pcr-mismatch: PCR 0" || n.CertSerial != "" || n.Usable() {
				t.Errorf("n1 %+v", n)
			}
			if got := h.s.Snapshot().CertRevoked("1A"); got != tc.admitted {
				t.Errorf("serial revoked: %v", got)
			}
			audit := h.s.Snapshot().Audit("n1", 0, 0)
			last := audit[len(audit)-1]
			if last.Kind != tc.wantKind || last.Code != "pcr-mismatch" {
				t.Errorf("audit %+v", last)
			}
			// The verifier repeating itself adds nothing to the log.
			h.must(Command{Type: CmdAttestFailed, Attest: &NodeAttestation{Node: "n1", Code: "pcr-mismatch", Reason: "pcr-mismatch: PCR 0"}})
			if got := h.s.Snapshot().Audit("n1", 0, 0); len(got) != len(audit) {
				t.Errorf("repeat audited: %d → %d records", len(audit), len(got))
			}
			// Scheduling never sees the node.
			id := h.submit(api.JobSpec{NodeList: []string{"n1"}}).JobID
			if r := h.plan(scheduler.Placement{JobID: id, Nodes: []string{"n1"}, CPUs: 1}); r.Applied != 0 {
				t.Errorf("placed on an evicted node")
			}
		})
	}
	t.Run("unknown node", func(t *testing.T) {
		h := newHarness(t)
		if res := h.do(Command{Type: CmdAttestFailed, Attest: &NodeAttestation{Node: "zz", Reason: "x"}}); !errIs(res, ErrUnknownNode) {
			t.Fatalf("result %v", res)
		}
	})
}

func TestRefused(t *testing.T) {
	tests := []struct {
		name    string
		attest  *NodeAttestation
		wantErr error
		wantFP  string
	}{
		{"unknown node", &NodeAttestation{Node: "zz", Code: "ek-not-approved", Reason: "no EK certificate", EKFingerprint: strings.ToUpper(fp("c"))}, nil, fp("c")},
		{"known node", &NodeAttestation{Node: "n1", Code: "ek-not-approved", EKFingerprint: "garbage"}, nil, "garbage"},
		{"EK only", &NodeAttestation{EKFingerprint: fp("c")}, nil, fp("c")},
		{"nothing", &NodeAttestation{Code: "x"}, ErrInvalidCommand, ""},
		{"no attestation", nil, ErrInvalidCommand, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.attest("n1", api.TrustAttested, fp("a"), "1")
			before := h.node("n1")
			nodes := len(h.s.Snapshot().Nodes())
			res := h.do(Command{Type: CmdRefused, Attest: tc.attest})
			if !errIs(res, tc.wantErr) {
				t.Fatalf("result %v, want %v", res, tc.wantErr)
			}
			if len(h.s.Snapshot().Nodes()) != nodes || h.node("n1") != before {
				t.Errorf("refusal changed nodes")
			}
			audit := h.s.Snapshot().Audit("", 0, 0)
			if tc.wantErr != nil {
				if len(audit) != 1 {
					t.Errorf("audit %v", audit)
				}
				return
			}
			r := audit[len(audit)-1]
			if len(audit) != 2 || r.Kind != api.AuditRefused || r.Node != tc.attest.Node || r.Code != tc.attest.Code || r.EKFingerprint != tc.wantFP {
				t.Errorf("audit %+v", r)
			}
		})
	}
}

func TestRevokeCert(t *testing.T) {
	tests := []struct {
		name        string
		serials     []string
		wantErr     error
		wantNew     []string
		wantRevoked []string
		wantN1      string // n1's serial afterwards
	}{
		{name: "node's current certificate", serials: []string{"0A:BC"}, wantNew: []string{"abc"}, wantRevoked: []string{"abc"}},
		{name: "other serials", serials: []string{"1", "2", "1"}, wantNew: []string{"1", "2"}, wantRevoked: []string{"1", "2"}, wantN1: "abc"},
		{name: "bad serial rejects all", serials: []string{"1", "xyz"}, wantErr: ErrInvalidCommand, wantN1: "abc"},
		{name: "none", wantErr: ErrInvalidCommand, wantN1: "abc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.attest("n1", api.TrustAttested, fp("a"), "abc")
			res := h.do(Command{Type: CmdRevokeCert, Serials: tc.serials, Reason: "key leaked", Actor: "root"})
			if !errIs(res, tc.wantErr) {
				t.Fatalf("result %v, want %v", res, tc.wantErr)
			}
			if tc.wantErr == nil && !slices.Equal(res.([]string), tc.wantNew) {
				t.Errorf("newly revoked %v, want %v", res, tc.wantNew)
			}
			var got []string
			for _, r := range h.s.Snapshot().RevokedCerts() {
				got = append(got, r.Serial)
				if r.Reason != "key leaked" || r.Time.IsZero() {
					t.Errorf("entry %+v", r)
				}
			}
			if !slices.Equal(got, tc.wantRevoked) {
				t.Errorf("revoked %v, want %v", got, tc.wantRevoked)
			}
			for _, s := range tc.wantRevoked {
				if !h.s.Snapshot().CertRevoked(strings.ToUpper("00" + s)) {
					t.Errorf("CertRevoked(%s) false", s)
				}
			}
			if h.s.Snapshot().CertRevoked("ff") || h.s.Snapshot().CertRevoked("not hex") {
				t.Errorf("unrevoked serial reported revoked")
			}
			n := h.node("n1")
			if n.CertSerial != tc.wantN1 || n.Trust != api.TrustAttested {
				t.Errorf("n1 serial %q trust %q", n.CertSerial, n.Trust)
			}
			audit := h.s.Snapshot().Audit("", 1, 0) // after the admission
			if len(audit) != len(tc.wantNew) {
				t.Fatalf("audit %v", audit)
			}
			for i, r := range audit {
				if r.Kind != api.AuditRevoked || r.Serial != tc.wantNew[i] || r.Actor != "root" {
					t.Errorf("audit %+v", r)
				}
				if r.Serial == "abc" && r.Node != "n1" {
					t.Errorf("revocation of n1's certificate not attributed: %+v", r)
				}
			}
		})
	}
	t.Run("again is a no-op", func(t *testing.T) {
		h := newHarness(t)
		h.must(Command{Type: CmdRevokeCert, Serials: []string{"1"}})
		if res := h.must(Command{Type: CmdRevokeCert, Serials: []string{"01"}}).([]string); len(res) != 0 || len(h.kinds("")) != 1 {
			t.Errorf("result %v audit %v", res, h.kinds(""))
		}
	})
}

func TestAuditQuery(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSetPolicy, Policy: &policy.Policy{}})                       // 1 cluster-wide
	h.attest("n1", api.TrustAttested, fp("a"), "1")                                     // 2
	h.attest("n2", api.TrustAttested, fp("b"), "2")                                     // 3
	h.must(Command{Type: CmdRefused, Attest: &NodeAttestation{Node: "n10", Code: "x"}}) // 4: prefix of no one
	h.must(Command{Type: CmdAttestFailed, Attest: &NodeAttestation{Node: "n1", Reason: "x"}})
	h.must(Command{Type: CmdRevokeCert, Serials: []string{"9"}}) // 6 and 7: two records, one index
	h.attest("n1", api.TrustAttested, fp("a"), "3")
	tests := []struct {
		node     string
		since    uint64
		limit    int
		wantSeqs []uint64
	}{
		{"", 0, 0, []uint64{1, 2, 3, 4, 5, 6, 7}},
		{"", 0, 2, []uint64{6, 7}},
		{"", 5, 0, []uint64{6, 7}},
		{"", 5, 1, []uint64{7}},
		{"", 7, 0, nil},
		{"n1", 0, 0, []uint64{2, 5, 7}},
		{"n1", 2, 0, []uint64{5, 7}},
		{"n1", 0, 1, []uint64{7}},
		{"n2", 0, 0, []uint64{3}},
		{"n10", 0, 0, []uint64{4}},
		{"zz", 0, 0, nil},
	}
	for _, tc := range tests {
		var seqs []uint64
		for _, r := range h.s.Snapshot().Audit(tc.node, tc.since, tc.limit) {
			seqs = append(seqs, r.Seq)
		}
		if !slices.Equal(seqs, tc.wantSeqs) {
			t.Errorf("Audit(%q, %d, %d) = %v, want %v", tc.node, tc.since, tc.limit, seqs, tc.wantSeqs)
		}
	}
	all := h.s.Snapshot().Audit("", 0, 0)
	if all[5].Index != all[4].Index+1 || all[5].Kind != api.AuditRevoked || all[6].Kind != api.AuditAdmitted {
		t.Errorf("records %+v %+v", all[5], all[6])
	}
}

func TestSetPartitionsTrust(t *testing.T) {
	tests := []struct {
		name    string
		require api.Trust
		wantErr bool
	}{
		{"any", "", false},
		{"none", api.TrustNone, false},
		{"approved", api.TrustApproved, false},
		{"attested", api.TrustAttested, false},
		{"misspelt", "Attested", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			res := h.do(Command{Type: CmdSetPartitions,
				Partitions: []api.Partition{{Name: "p", Nodes: []string{"n1", "n9"}, RequireTrust: tc.require}},
				// Configuration cannot vouch for a node.
				ConfiguredNodes: []api.Node{{Name: "n9", Trust: api.TrustAttested, EKFingerprint: fp("a"), CertSerial: "1"}},
			})
			if _, isErr := res.(error); isErr != tc.wantErr {
				t.Fatalf("result %v", res)
			}
			if tc.wantErr {
				return
			}
			if n := h.node("n9"); n.Trust != api.TrustNone || n.EKFingerprint != "" || n.CertSerial != "" {
				t.Errorf("n9 %+v", n)
			}
			if h.s.Snapshot().Partition("p").RequireTrust != tc.require {
				t.Errorf("partition %+v", h.s.Snapshot().Partition("p"))
			}
		})
	}
}

// The plan re-check applies the partition's trust rule as the scheduler
// does, so a plan made before an eviction cannot land on the node.
func TestApplyPlanTrust(t *testing.T) {
	tests := []struct {
		name    string
		require api.Trust
		trust   api.Trust // of n1; "" leaves it as registered
		want    bool
	}{
		{"any on token node", "", "", true},
		{"attested on attested", api.TrustAttested, api.TrustAttested, true},
		{"attested on approved", api.TrustAttested, api.TrustApproved, false},
		{"attested on token node", api.TrustAttested, "", false},
		{"approved on attested", api.TrustApproved, api.TrustAttested, true},
		{"approved on approved", api.TrustApproved, api.TrustApproved, true},
		{"approved on token node", api.TrustApproved, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.must(Command{Type: CmdSetPartitions, Partitions: []api.Partition{
				{Name: "p", Nodes: []string{"n1"}, Default: true, Up: true, RequireTrust: tc.require},
			}})
			if tc.trust == api.TrustApproved {
				h.must(Command{Type: CmdApproveEK, EK: &api.ApprovedEK{Fingerprint: fp("a")}})
			}
			if tc.trust != "" {
				h.attest("n1", tc.trust, fp("a"), "1")
			}
			id := h.submit(api.JobSpec{}).JobID
			r := h.plan(scheduler.Placement{JobID: id, Nodes: []string{"n1"}, CPUs: 1, MemoryMB: 100})
			if got := r.Applied == 1; got != tc.want {
				t.Errorf("applied %v, want %v (%+v)", got, tc.want, r)
			}
			if !tc.want && (h.job(id).State != api.JobPending || h.alloc("n1") != [3]int64{}) {
				t.Errorf("rejected placement changed state")
			}
		})
	}
	t.Run("partition gone", func(t *testing.T) {
		h := newHarness(t)
		id := h.submit(api.JobSpec{Partition: "open"}).JobID
		h.must(Command{Type: CmdSetPartitions, Partitions: []api.Partition{{Name: "batch", Nodes: []string{"n1"}, Up: true}}})
		if r := h.plan(scheduler.Placement{JobID: id, Nodes: []string{"n1"}, CPUs: 1}); r.Applied != 0 {
			t.Errorf("placed a job whose partition is gone")
		}
	})
}

func TestSnapshotRoundTripAttestation(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdSetPolicy, Policy: &policy.Policy{TrustOnFirstUse: true, AgentDigests: []string{"sha256:" + pcrValue("d")}}})
	h.must(Command{Type: CmdRecordTOFU, NodeNames: []string{"n1"}, PolicyVersion: 1, TOFU: map[int]string{0: pcrValue("a"), 1: pcrValue("b")}})
	h.must(Command{Type: CmdApproveEK, EK: &api.ApprovedEK{Fingerprint: fp("e"), Comment: "old board"}, Actor: "root"})
	h.attest("n1", api.TrustAttested, fp("a"), "11")
	h.attest("n2", api.TrustApproved, fp("e"), "22")
	h.must(Command{Type: CmdAttestFailed, Attest: &NodeAttestation{Node: "n2", Reason: "bad"}})
	h.must(Command{Type: CmdRevokeCert, Serials: []string{"33"}, Reason: "lost"})
	h.must(Command{Type: CmdRefused, Attest: &NodeAttestation{Node: "x9", Code: "ek-not-approved"}})

	var a bytes.Buffer
	if _, err := h.s.Snapshot().WriteTo(&a); err != nil {
		t.Fatal(err)
	}
	s2 := NewStore()
	if err := s2.Restore(bytes.NewReader(a.Bytes())); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := s2.Snapshot().WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("round trip differs:\n%s\n---\n%s", a.String(), b.String())
	}
	snap := s2.Snapshot()
	if p := snap.Policy(); p.Version != 2 || !p.TrustOnFirstUse || len(p.Golden) != 2 {
		t.Errorf("policy %+v", p)
	}
	if !snap.CertRevoked("22") || !snap.CertRevoked("33") || snap.CertRevoked("11") || snap.ApprovedEK(fp("e")) == nil {
		t.Errorf("revoked %v, approved %v", snap.RevokedCerts(), snap.ApprovedEKs())
	}
	if n := snap.Node("n1"); n.Trust != api.TrustAttested || n.CertSerial != "11" || n.LastQuote.IsZero() {
		t.Errorf("n1 %+v", n)
	}
	want := h.s.Snapshot().Audit("", 0, 0)
	got := snap.Audit("", 0, 0)
	if len(got) != len(want) || len(got) != 9 || *got[8] != *want[8] || len(snap.Audit("n2", 0, 0)) != 2 {
		t.Errorf("audit %d records, want %d", len(got), len(want))
	}
	// Both continue identically: the audit sequence and the policy version.
	c := Command{Type: CmdSetPolicy, Time: t0, Policy: &policy.Policy{}}
	r1 := h.s.ApplyCommand(h.idx+1, &c).(*policy.Policy)
	r2 := s2.ApplyCommand(h.idx+1, &c).(*policy.Policy)
	if r1.Version != 3 || r2.Version != 3 || *h.s.Snapshot().Audit("", 9, 0)[0] != *s2.Snapshot().Audit("", 9, 0)[0] {
		t.Errorf("diverged: %d %d", r1.Version, r2.Version)
	}
}

// Snapshots written before attestation existed (version 1) still restore,
// with the default policy and empty attestation tables.
func TestRestoreVersion1(t *testing.T) {
	h := newHarness(t)
	h.run(api.JobSpec{}, "n1")
	var buf bytes.Buffer
	if _, err := h.s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	v1 := strings.Replace(buf.String(), `"version":4`, `"version":1`, 1)
	tests := []struct {
		name    string
		stream  string
		wantErr bool
	}{
		{"version 1", v1, false},
		{"version 2", strings.Replace(buf.String(), `"version":4`, `"version":2`, 1), false},
		{"version 3", strings.Replace(buf.String(), `"version":4`, `"version":3`, 1), false},
		{"version 4", buf.String(), false},
		{"version 5", strings.Replace(buf.String(), `"version":4`, `"version":5`, 1), true},
		{"version 0", strings.Replace(buf.String(), `"version":4`, `"version":0`, 1), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStore()
			err := s.Restore(strings.NewReader(tc.stream))
			if (err != nil) != tc.wantErr {
				t.Fatalf("restore: %v", err)
			}
			if tc.wantErr {
				return
			}
			snap := s.Snapshot()
			if snap.Policy().Version != 0 || len(snap.Audit("", 0, 0)) != 0 || len(snap.RevokedCerts()) != 0 || len(snap.Jobs()) != 1 {
				t.Errorf("restored state: policy %d, %d jobs", snap.Policy().Version, len(snap.Jobs()))
			}
		})
	}
}

// Every new command survives the log encoding (JSON, int map keys) intact.
func TestAttestCommandsThroughLog(t *testing.T) {
	tests := []Command{
		{Type: CmdSetPolicy, Policy: &policy.Policy{TrustOnFirstUse: true, Golden: map[int][]string{0: {pcrValue("a")}}}, Actor: "root"},
		{Type: CmdRecordTOFU, NodeNames: []string{"n1"}, PolicyVersion: 1, TOFU: map[int]string{1: pcrValue("b"), 7: pcrValue("c")}},
		{Type: CmdApproveEK, EK: &api.ApprovedEK{Fingerprint: fp("e"), Comment: "c"}},
		{Type: CmdNodeAttested, Attest: &NodeAttestation{Node: "n1", Trust: api.TrustAttested, EKFingerprint: fp("a"), CertSerial: "1", Renewal: true}},
		{Type: CmdAttestFailed, Kill: true, Attest: &NodeAttestation{Node: "n1", Code: "c", Reason: "r"}},
		{Type: CmdRefused, Attest: &NodeAttestation{Node: "n9", EKFingerprint: fp("f")}},
		{Type: CmdRevokeCert, Serials: []string{"1", "2"}, Reason: "r"},
		{Type: CmdRevokeEKApproval, EK: &api.ApprovedEK{Fingerprint: fp("e")}},
	}
	h := newHarness(t)
	for _, c := range tests {
		data, err := encodeCommand(&c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeCommand(data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*got, c) {
			t.Errorf("command %d: decoded %+v, want %+v", c.Type, *got, c)
		}
		if res := h.do(*got); errIs(res, ErrUnknownCommand) || errIs(res, ErrInvalidCommand) {
			t.Errorf("command %d: %v", c.Type, res)
		}
	}
}

// TestAttestDrainSurvivesNodeDown: a node evicted by attestation that then
// stops heartbeating keeps its attestation drain reason, so a later
// re-admission can lift the drain.
func TestAttestDrainSurvivesNodeDown(t *testing.T) {
	s := NewStore()
	idx := uint64(0)
	apply := func(c Command) any {
		idx++
		c.Time = int64(idx) * 1e9
		return s.ApplyCommand(idx, &c)
	}
	apply(Command{Type: CmdSetPartitions, Partitions: []api.Partition{{Name: "p", Nodes: []string{"n1"}, Default: true, Up: true}}})
	apply(Command{Type: CmdRegisterNode, Register: &api.AgentRegisterRequest{Name: "n1", CPUs: 2, MemoryMB: 1024}})
	apply(Command{Type: CmdNodeAttested, Attest: &NodeAttestation{Node: "n1", Trust: api.TrustAttested, EKFingerprint: "sha256:" + strings.Repeat("a", 64), CertSerial: "1"}})
	apply(Command{Type: CmdAttestFailed, Attest: &NodeAttestation{Node: "n1", Code: "pcr-mismatch", Reason: "bad"}})
	apply(Command{Type: CmdNodesDown, NodeNames: []string{"n1"}, Reason: "Not responding"})
	n := s.Snapshot().Node("n1")
	if n.State != api.NodeDown || !n.Drain || !strings.HasPrefix(n.Reason, attestDrainPrefix) {
		t.Fatalf("after eviction and node down: %+v", n)
	}
	apply(Command{Type: CmdRegisterNode, Register: &api.AgentRegisterRequest{Name: "n1", CPUs: 2, MemoryMB: 1024}})
	apply(Command{Type: CmdNodeAttested, Attest: &NodeAttestation{Node: "n1", Trust: api.TrustAttested, EKFingerprint: "sha256:" + strings.Repeat("a", 64), CertSerial: "2"}})
	if n := s.Snapshot().Node("n1"); n.Drain || n.State != api.NodeUp {
		t.Fatalf("re-admitted node still unusable: %+v", n)
	}
}
