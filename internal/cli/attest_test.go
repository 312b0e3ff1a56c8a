package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/policy"
)

// pcrHex is a recognizable fake PCR value.
func pcrHex(i int) string { return strings.Repeat(hex.EncodeToString([]byte{byte(0xa0 + i)}), 32) }

func pcrBytes(i int) []byte { b, _ := hex.DecodeString(pcrHex(i)); return b }

func fixturePolicy() *policy.Policy {
	p := &policy.Policy{
		Golden:       map[int][]string{0: {pcrHex(0)}, 7: {pcrHex(7), strings.Repeat("07", 32)}},
		AgentDigests: []string{"sha256:" + strings.Repeat("ee", 32)},
	}
	if err := p.Normalize(); err != nil {
		panic(err)
	}
	p.Version = 7
	return p
}

func fixtureAudit() []api.AuditRecord {
	return []api.AuditRecord{
		{Seq: 12, Time: ago(30 * time.Second), Node: "node9", Kind: api.AuditEvicted, Code: policy.CodePCRMismatch,
			Reason: "pcr-mismatch: PCR 0 = " + strings.Repeat("ab", 32) + " not in the reference manifest"},
		{Seq: 10, Time: ago(time.Hour), Kind: api.AuditPolicyChanged, Reason: "version 7", Actor: "root"},
		{Seq: 11, Time: ago(50 * time.Minute), Node: "node1", Kind: api.AuditAdmitted, EKFingerprint: "sha256:" + sha256Hex("node1")},
		{Seq: 13, Time: ago(10 * time.Second), Kind: api.AuditRefused, Code: "ek-unknown",
			Reason: "EK not approved\x1b[2J\nforged line"},
	}
}

func fixtureAttestLog() *api.AttestLog {
	return &api.AttestLog{Node: "node1", LastQuote: ago(40 * time.Second), QuotedAt: ago(40 * time.Second), Measurements: []api.AttestMeasurement{
		{PCR: 0, Type: 0x08, Digest: pcrHex(0), Data: "1.0"},
		{PCR: 7, Type: 0x800000E0, Digest: pcrHex(7), DataHex: strings.Repeat("db", 60)},
		{PCR: 15, Type: 0x0D, Digest: strings.Repeat("ee", 32), Data: "stockade-agent-binary /usr/local/bin/stockade"},
		{PCR: 15, Type: 0x4242, Digest: strings.Repeat("ff", 32), Data: "tab\there"},
	}}
}

// serveAttest answers the attestation routes for fakeAPI.
func (f *fakeAPI) serveAttest(w http.ResponseWriter, r *http.Request, body []byte) bool {
	reply := func(v any) { json.NewEncoder(w).Encode(v) }
	route := r.Method + " " + r.URL.Path
	switch {
	case route == "GET /v1/attest/policy":
		reply(fixturePolicy())
	case route == "PUT /v1/attest/policy":
		var p policy.Policy
		json.Unmarshal(body, &p)
		if err := p.Normalize(); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			reply(api.Error{Error: err.Error()})
			return true
		}
		p.Version = 8
		reply(&p)
	case route == "POST /v1/attest/policy/digests":
		var req struct{ Digest string }
		json.Unmarshal(body, &req)
		p := fixturePolicy()
		p.AddDigest(req.Digest)
		p.Version = 8
		reply(p)
	case route == "GET /v1/audit":
		reply(fixtureAudit())
	case route == "POST /v1/nodes/approve":
		var req struct{ Fingerprint, Comment string }
		json.Unmarshal(body, &req)
		reply(api.ApprovedEK{Fingerprint: req.Fingerprint, Comment: req.Comment, ApprovedBy: "root", Time: fixNow})
	case route == "POST /v1/nodes/revoke":
		reply(struct{}{})
	case route == "GET /v1/nodes/node1/attest-log":
		reply(fixtureAttestLog())
	case r.Method == "GET" && strings.HasSuffix(r.URL.Path, "/attest-log"):
		w.WriteHeader(http.StatusNotFound)
		reply(api.Error{Error: "node: unknown node " + strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/nodes/"), "/attest-log")})
	default:
		return false
	}
	return true
}

// tpm2toolsQuote makes the files tpm2_createak -u and tpm2_quote -m -s -o
// (-F values) would write for an ECDSA P-256 AK quoting values in sha256.
func tpm2toolsQuote(t *testing.T, nonce []byte, values map[int][]byte) map[string]string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := key.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	pub := tpm2.TPMTPublic{
		Type: tpm2.TPMAlgECC, NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true,
			UserWithAuth: true, Restricted: true, SignEncrypt: true},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
			Scheme: tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256})},
			CurveID: tpm2.TPMECCNistP256,
			KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: pt[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: pt[33:]}}),
	}
	area := tpm2.Marshal(pub)
	akPub := binary.BigEndian.AppendUint16(nil, uint16(len(area)))
	akPub = append(akPub, area...)

	sel := make([]byte, 3)
	var vals []byte
	for _, i := range slices.Sorted(maps.Keys(values)) {
		sel[i/8] |= 1 << (i % 8)
		vals = append(vals, values[i]...)
	}
	digest := sha256.Sum256(vals)
	msg := tpm2.Marshal(tpm2.TPMSAttest{
		Magic: tpm2.TPMGeneratedValue, Type: tpm2.TPMSTAttestQuote,
		QualifiedSigner: tpm2.TPM2BName{Buffer: []byte{0, 0x0b}},
		ExtraData:       tpm2.TPM2BData{Buffer: nonce},
		Attested: tpm2.NewTPMUAttest(tpm2.TPMSTAttestQuote, &tpm2.TPMSQuoteInfo{
			PCRSelect: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: tpm2.TPMAlgSHA256, PCRSelect: sel}}},
			PCRDigest: tpm2.TPM2BDigest{Buffer: digest[:]},
		}),
	})
	h := sha256.Sum256(msg)
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := tpm2.Marshal(tpm2.TPMTSignature{SigAlg: tpm2.TPMAlgECDSA, Signature: tpm2.NewTPMUSignature(tpm2.TPMAlgECDSA,
		&tpm2.TPMSSignatureECC{Hash: tpm2.TPMAlgSHA256, SignatureR: tpm2.TPM2BECCParameter{Buffer: r.Bytes()},
			SignatureS: tpm2.TPM2BECCParameter{Buffer: s.Bytes()}})})
	return map[string]string{"ak.pub": string(akPub), "quote.msg": string(msg), "quote.sig": string(sig), "quote.pcrs": string(vals)}
}

func policyJSON(t *testing.T, mut func(*policy.Policy)) string {
	t.Helper()
	p := fixturePolicy()
	if mut != nil {
		mut(p)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAttestGolden(t *testing.T) {
	parts := append(fixturePartitions(), api.Partition{Name: "quarantine", Nodes: []string{"node9"}, Up: true})
	allNodes := fixtureNodes()
	byName := map[string]*api.Node{}
	for i := range allNodes {
		byName[allNodes[i].Name] = &allNodes[i]
	}
	sinfo := func(format string, nodeOriented bool) string {
		out, bad := renderSinfo(sinfoView{format: format, nodeOriented: nodeOriented, loc: time.UTC}, &sinfoFilter{}, fixtureNodes(), parts)
		if len(bad) > 0 {
			t.Fatalf("bad codes: %v", bad)
		}
		return out
	}
	values := map[int][]byte{0: pcrBytes(0), 1: pcrBytes(1), 7: pcrBytes(7), 15: pcrBytes(15), 16: pcrBytes(16)}
	pol := fixturePolicy()
	pol.PCRs = []int{0, 1, 7, 15}
	ok, reason := formatQuoteCheck(values, pol)
	if reason != "" {
		t.Fatalf("policy check failed: %s", reason)
	}
	plain, _ := formatQuoteCheck(map[int][]byte{0: pcrBytes(0), 7: pcrBytes(7)}, nil)
	cases := []struct {
		name string
		out  string
	}{
		{"node_list_empty", formatNodeTrust(nil, time.UTC)},
		{"attest_log_never", formatAttestLog(&api.AttestLog{Node: "node4"}, time.UTC)},
		{"attest_log_failed", formatAttestLog(&api.AttestLog{Node: "node9", LastQuote: ago(time.Hour), QuotedAt: ago(30 * time.Second),
			Code: policy.CodePCRMismatch, Measurements: fixtureAttestLog().Measurements[:1]}, time.UTC)},
		{"ek_approved", formatApprovedEK(&api.ApprovedEK{Fingerprint: "sha256:" + strings.Repeat("c", 64),
			Comment: "asset 4711", ApprovedBy: "root", Time: fixNow}, time.UTC)},
		{"verify_quote_policy", ok},
		{"verify_quote_plain", plain},
		{"scontrol_node_attested", showNode(testCtx(), byName["node1"], []string{"batch", "small"})},
		{"scontrol_node_attest_error", showNode(testCtx(), byName["node9"], nil)},
		{"scontrol_partition_require_trust", showPartition(&parts[2], byName)},
		{"sinfo_trust", sinfo("%#P %.8y %.6D %N", false)},
		{"sinfo_trust_nodes", sinfo("%#N %#P %9y %19q %K %Q", true)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, tc.out) })
	}
}

func TestQuotePolicyChecks(t *testing.T) {
	values := map[int][]byte{0: pcrBytes(0), 1: pcrBytes(1), 7: pcrBytes(7), 15: pcrBytes(15)}
	cases := []struct {
		name   string
		mut    func(p *policy.Policy, v map[int][]byte)
		reason string
	}{
		{name: "all golden values match"},
		{name: "a golden value differs", mut: func(_ *policy.Policy, v map[int][]byte) { v[7] = pcrBytes(8) },
			reason: "pcr-mismatch: PCR 7 = " + pcrHex(8) + " not in the policy's golden values"},
		{name: "a policy PCR is not quoted", mut: func(_ *policy.Policy, v map[int][]byte) { delete(v, 1) },
			reason: "pcr-not-quoted: PCR 1 is not in the quote"},
		{name: "unquoted beats mismatch, as in Evaluate", mut: func(_ *policy.Policy, v map[int][]byte) { delete(v, 15); v[0] = pcrBytes(9) },
			reason: "pcr-not-quoted: PCR 15 is not in the quote"},
		{name: "the agent PCR is never compared", mut: func(p *policy.Policy, v map[int][]byte) { v[15] = pcrBytes(3) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := fixturePolicy()
			p.PCRs = []int{0, 1, 7, 15}
			v := maps.Clone(values)
			if tc.mut != nil {
				tc.mut(p, v)
			}
			out, reason := formatQuoteCheck(v, p)
			if reason != tc.reason {
				t.Fatalf("reason %q, want %q", reason, tc.reason)
			}
			if (out == "") == (tc.reason == "") {
				t.Errorf("output %q with reason %q", out, reason)
			}
		})
	}
}

func TestAttestCommands(t *testing.T) {
	nonce := []byte("fresh-nonce-0001")
	quoted := map[int][]byte{0: pcrBytes(0), 7: pcrBytes(7), 15: pcrBytes(15)}
	quoteFiles := tpm2toolsQuote(t, nonce, quoted)
	withFiles := func(extra map[string]string) map[string]string {
		m := maps.Clone(quoteFiles)
		maps.Copy(m, extra)
		return m
	}
	verify := func(extra ...string) []string {
		return append([]string{"stockade", "attest", "verify-quote", "--ak-pub", "ak.pub", "--message", "quote.msg",
			"--signature", "quote.sig", "--pcrs", "quote.pcrs"}, extra...)
	}
	nonceHex := hex.EncodeToString(nonce)
	noRequests := func(t *testing.T, f *fakeAPI) {
		if n := len(f.requests()); n != 0 {
			t.Errorf("%d requests", n)
		}
	}
	sentPolicy := func(check func(t *testing.T, p *policy.Policy)) func(t *testing.T, f *fakeAPI) {
		return func(t *testing.T, f *fakeAPI) {
			r := f.last("PUT", "/v1/attest/policy")
			if r == nil {
				t.Fatal("no policy PUT")
			}
			var p policy.Policy
			if err := json.Unmarshal([]byte(r.body), &p); err != nil {
				t.Fatal(err)
			}
			check(t, &p)
		}
	}

	cases := []struct {
		name     string
		args     []string
		files    map[string]string
		failures map[string]api.HTTPError
		code     int
		stdout   string // exact, unless golden is set
		reject   string // a verdict's start after "quote REJECTED: ", when stdout is not given
		golden   string
		stderr   string // exact
		check    func(t *testing.T, f *fakeAPI)
	}{
		{name: "policy show", args: []string{"stockade", "attest", "policy", "show"}, golden: "cmd_attest_policy_show"},
		{name: "policy show json", args: []string{"stockade", "attest", "policy", "show", "--json"}, golden: "cmd_attest_policy_show_json"},
		{name: "policy show forbidden", args: []string{"stockade", "attest", "policy", "show"}, code: 1,
			failures: map[string]api.HTTPError{"GET /v1/attest/policy": {Status: 403, Message: "admin only"}},
			stderr:   "stockade: error: admin only\n"},
		{
			name: "policy set options", golden: "cmd_attest_policy_set",
			args: []string{"stockade", "attest", "policy", "set", "--tofu", "on", "--interval", "30s", "--cert-ttl", "2h", "--on-failure", "kill"},
			check: sentPolicy(func(t *testing.T, p *policy.Policy) {
				want := fixturePolicy()
				want.TrustOnFirstUse, want.IntervalSec, want.CertTTLSec, want.OnFailure = true, 30, 7200, "kill"
				if b, w := mustJSON(t, p), mustJSON(t, want); b != w {
					t.Errorf("sent %s\nwant %s", b, w)
				}
			}),
		},
		{
			name: "policy set manifest", args: []string{"stockade", "attest", "policy", "set", "--manifest", "ref.toml"},
			files: map[string]string{"ref.toml": "[pcr]\n0 = [\"" + strings.ToUpper(pcrHex(1)) + "\"]\n8 = [\"" + pcrHex(8) + "\"]\n"},
			check: sentPolicy(func(t *testing.T, p *policy.Policy) {
				// PCR 0 replaced, 7 kept, 8 added and now quoted.
				want := map[int][]string{0: {pcrHex(1)}, 7: fixturePolicy().Golden[7], 8: {pcrHex(8)}}
				if mustJSON(t, p.Golden) != mustJSON(t, want) || !slices.Contains(p.PCRs, 8) {
					t.Errorf("golden %v pcrs %v", p.Golden, p.PCRs)
				}
			}),
		},
		{
			name: "policy set file", args: []string{"stockade", "attest", "policy", "set", "new.json", "--interval", "120s"},
			files: map[string]string{"new.json": `{"golden": {"1": ["` + pcrHex(1) + `"]}, "cert_ttl_sec": 600}`},
			check: func(t *testing.T, f *fakeAPI) {
				if f.last("GET", "/v1/attest/policy") != nil {
					t.Error("fetched the current policy though FILE replaces it")
				}
				sentPolicy(func(t *testing.T, p *policy.Policy) {
					if p.IntervalSec != 120 || p.CertTTLSec != 600 || len(p.Golden) != 1 || len(p.AgentDigests) != 0 {
						t.Errorf("sent %+v", p)
					}
				})(t, f)
			},
		},
		{name: "policy set misspelt key", args: []string{"stockade", "attest", "policy", "set", "new.json"}, code: 1,
			files:  map[string]string{"new.json": `{"intervl_sec": 30}`},
			stderr: "stockade: error: new.json: json: unknown field \"intervl_sec\"\n", check: noRequests},
		{name: "policy set names the bad field", args: []string{"stockade", "attest", "policy", "set", "--interval", "2h"}, code: 1,
			stderr: "stockade: error: invalid policy: cert_ttl_sec: 3600 must exceed interval_sec 7200\n",
			check: func(t *testing.T, f *fakeAPI) {
				if f.last("PUT", "/v1/attest/policy") != nil {
					t.Error("sent an invalid policy")
				}
			}},
		{name: "policy set golden on the agent PCR", args: []string{"stockade", "attest", "policy", "set", "--manifest", "m.json"}, code: 1,
			files:  map[string]string{"m.json": `{"pcr": {"15": ["` + pcrHex(5) + `"]}}`},
			stderr: "stockade: error: invalid policy: golden[15]: the agent PCR is checked against agent_digests, not golden values\n"},
		{name: "policy set bad manifest", args: []string{"stockade", "attest", "policy", "set", "--manifest", "m.toml"}, code: 1,
			files:  map[string]string{"m.toml": "[pcr]\n07 = [\"" + pcrHex(7) + "\"]\n"},
			stderr: "stockade: error: --manifest m.toml: manifest: pcr.07: not a PCR index 0-23\n", check: noRequests},
		{name: "policy set missing manifest", args: []string{"stockade", "attest", "policy", "set", "--manifest", "nope.toml"}, code: 1,
			stderr: "stockade: error: --manifest: open nope.toml: file does not exist\n", check: noRequests},
		{name: "policy set nothing", args: []string{"stockade", "attest", "policy", "set"}, code: 1,
			stderr: "stockade: error: nothing to change: give a policy FILE or --manifest, --tofu, --interval, --on-failure or --cert-ttl\n", check: noRequests},
		{name: "policy set bad tofu", args: []string{"stockade", "attest", "policy", "set", "--tofu", "yes"}, code: 1,
			stderr: "stockade: error: --tofu \"yes\": want on or off\n", check: noRequests},
		{name: "policy set fractional interval", args: []string{"stockade", "attest", "policy", "set", "--interval", "1500ms"}, code: 1,
			stderr: "stockade: error: --interval 1.5s: want a positive whole number of seconds such as 60s\n", check: noRequests},
		{name: "policy set zero ttl", args: []string{"stockade", "attest", "policy", "set", "--cert-ttl", "0s"}, code: 1,
			stderr: "stockade: error: --cert-ttl 0s: want a positive whole number of seconds such as 60s\n", check: noRequests},
		{name: "policy set bad on-failure", args: []string{"stockade", "attest", "policy", "set", "--on-failure", "drain"}, code: 1,
			stderr: "stockade: error: --on-failure \"drain\": want requeue or kill\n", check: noRequests},
		{name: "policy set bad duration", args: []string{"stockade", "attest", "policy", "set", "--interval", "soon"}, code: 1, check: noRequests},
		{
			name: "add-digest", args: []string{"stockade", "attest", "policy", "add-digest", strings.Repeat("AB", 32)},
			stdout: "Agent binary sha256:" + strings.Repeat("ab", 32) + " allowed (policy version 8, 2 allowed)\n",
			check: func(t *testing.T, f *fakeAPI) {
				r := f.last("POST", "/v1/attest/policy/digests")
				if r == nil || r.body != `{"digest":"sha256:`+strings.Repeat("ab", 32)+`"}` {
					t.Errorf("request %+v", r)
				}
			},
		},
		{
			name: "add-digest of a binary", args: []string{"stockade", "attest", "policy", "add-digest", "--file", "stockade"},
			files:  map[string]string{"stockade": "\x7fELF agent"},
			stdout: "Agent binary sha256:" + sha256Hex("\x7fELF agent") + " allowed (policy version 8, 2 allowed)\n",
		},
		{name: "add-digest both", args: []string{"stockade", "attest", "policy", "add-digest", "sha256:00", "--file", "x"}, code: 1,
			stderr: "stockade: error: give either DIGEST or --file, not both\n", check: noRequests},
		{name: "add-digest neither", args: []string{"stockade", "attest", "policy", "add-digest"}, code: 1,
			stderr: "stockade: error: give the agent binary's DIGEST or --file BINARY\n", check: noRequests},
		{name: "add-digest bad", args: []string{"stockade", "attest", "policy", "add-digest", "md5:abc"}, code: 1,
			stderr: "stockade: error: agent digest \"md5:abc\": not sha256:<64 hex>\n", check: noRequests},
		{name: "node list", args: []string{"stockade", "node", "list"}, golden: "cmd_node_list"},
		{name: "node list json", args: []string{"stockade", "node", "list", "--json"}, check: func(t *testing.T, f *fakeAPI) {}},
		{
			name: "node approve", args: []string{"stockade", "node", "approve", strings.Repeat("C", 64), "--comment", "asset 4711"},
			stdout: "EK sha256:" + strings.Repeat("c", 64) + " approved by root at 2026-11-21T10:00:00: asset 4711\n",
			check: func(t *testing.T, f *fakeAPI) {
				r := f.last("POST", "/v1/nodes/approve")
				if r == nil || r.body != `{"fingerprint":"sha256:`+strings.Repeat("c", 64)+`","comment":"asset 4711"}` {
					t.Errorf("request %+v", r)
				}
			},
		},
		{name: "node approve bad fingerprint", args: []string{"stockade", "node", "approve", "sha1:abcd"}, code: 1,
			stderr: "stockade: error: EK fingerprint \"sha1:abcd\": want sha256:<64 hex digits>\n", check: noRequests},
		{name: "node approve no fingerprint", args: []string{"stockade", "node", "approve"}, code: 1,
			stderr: "stockade: error: accepts 1 arg(s), received 0\n", check: noRequests},
		{
			name: "node revoke", args: []string{"stockade", "node", "revoke", "node9", "--reason", "stolen disk"},
			stdout: "Node node9 revoked: evicted, certificate revoked\n",
			check: func(t *testing.T, f *fakeAPI) {
				r := f.last("POST", "/v1/nodes/revoke")
				if r == nil || r.body != `{"node":"node9","reason":"stolen disk"}` {
					t.Errorf("request %+v", r)
				}
			},
		},
		{name: "node revoke refused", args: []string{"stockade", "node", "revoke", "nosuch"}, code: 1,
			failures: map[string]api.HTTPError{"POST /v1/nodes/revoke": {Status: 404, Message: "node nosuch not found"}},
			stderr:   "stockade: error: node nosuch not found\n"},
		{name: "node attest-log", args: []string{"stockade", "node", "attest-log", "node1"}, golden: "cmd_node_attest_log"},
		{name: "node attest-log json", args: []string{"stockade", "node", "attest-log", "node1", "--json"}, golden: "cmd_node_attest_log_json"},
		{name: "node attest-log unknown", args: []string{"stockade", "node", "attest-log", "node4"}, code: 1,
			stderr: "stockade: error: node: unknown node node4\n"},
		{name: "node misspelt subcommand", args: []string{"stockade", "node", "lst"}, code: 1,
			stderr: "stockade: error: unknown command \"lst\" for \"stockade node\"\n", check: noRequests},
		{
			name: "audit", args: []string{"stockade", "audit", "--node", "node9", "--since", "11", "--limit", "5"}, golden: "cmd_audit",
			check: func(t *testing.T, f *fakeAPI) {
				q := f.last("GET", "/v1/audit").query
				if q.Get("node") != "node9" || q.Get("since") != "11" || q.Get("limit") != "5" {
					t.Errorf("query %v", q)
				}
			},
		},
		{
			name: "audit unfiltered", args: []string{"stockade", "audit", "--json"}, golden: "cmd_audit_json",
			check: func(t *testing.T, f *fakeAPI) {
				if q := f.last("GET", "/v1/audit").query; len(q) != 0 {
					t.Errorf("query %v", q)
				}
			},
		},
		{name: "audit bad limit", args: []string{"stockade", "audit", "--limit", "-1"}, code: 1,
			stderr: "stockade: error: --limit -1: want a positive number\n", check: noRequests},
		{name: "audit bad since", args: []string{"stockade", "audit", "--since", "x"}, code: 1, check: noRequests},
		{name: "verify-quote ok", args: verify("--nonce", nonceHex), files: quoteFiles, golden: "cmd_verify_quote_ok", check: noRequests},
		{name: "verify-quote with policy", args: verify("--nonce", "0x"+strings.ToUpper(nonceHex), "--policy", "p.json"),
			files:  withFiles(map[string]string{"p.json": policyJSON(t, func(p *policy.Policy) { p.PCRs = []int{0, 7, 15} })}),
			golden: "cmd_verify_quote_policy", check: noRequests},
		{name: "verify-quote golden mismatch", args: verify("--nonce", nonceHex, "--policy", "p.json"), code: 1,
			files: withFiles(map[string]string{"p.json": policyJSON(t, func(p *policy.Policy) {
				p.PCRs, p.Golden[0] = []int{0, 7, 15}, []string{pcrHex(9)}
			})}),
			stdout: "quote REJECTED: pcr-mismatch: PCR 0 = " + pcrHex(0) + " not in the policy's golden values\n", check: noRequests},
		{name: "verify-quote policy PCR not quoted", args: verify("--nonce", nonceHex, "--policy", "p.json"), code: 1,
			files:  withFiles(map[string]string{"p.json": policyJSON(t, nil)}),
			stdout: "quote REJECTED: pcr-not-quoted: PCR 1 is not in the quote\n", check: noRequests},
		{name: "verify-quote wrong nonce", args: verify("--nonce", "00ff"), files: quoteFiles, code: 1,
			stdout: "quote REJECTED: nonce-mismatch: nonce mismatch (replayed or stale quote)\n", check: noRequests},
		{name: "verify-quote tampered PCR file", args: verify("--nonce", nonceHex), code: 1,
			files:  withFiles(map[string]string{"quote.pcrs": string(pcrBytes(1)) + quoteFiles["quote.pcrs"][32:]}),
			stdout: "quote REJECTED: pcr-values-mismatch: PCR values do not match the quoted digest: the PCR file does not hash to the quoted PCR digest\n"},
		{name: "verify-quote swapped signature", args: verify("--nonce", nonceHex), code: 1,
			files:  withFiles(map[string]string{"quote.sig": tpm2toolsQuote(t, nonce, quoted)["quote.sig"]}),
			stdout: "quote REJECTED: quote-signature: quote signature invalid: ECDSA verification failed\n"},
		{name: "verify-quote garbage AK", args: verify("--nonce", nonceHex), code: 1,
			files: withFiles(map[string]string{"ak.pub": "not a key"}), reject: "ak-public-invalid: ", check: noRequests},
		{name: "verify-quote missing flags", args: []string{"stockade", "attest", "verify-quote", "--nonce", "00"}, code: 1,
			stderr: "stockade: error: required flag(s) \"ak-pub\", \"message\", \"pcrs\", \"signature\" not set\n", check: noRequests},
		{name: "verify-quote bad nonce", args: verify("--nonce", "xyz"), files: quoteFiles, code: 1,
			stderr: "stockade: error: --nonce \"xyz\": want the nonce given to tpm2_quote -q, in hex\n", check: noRequests},
		{name: "verify-quote empty nonce", args: verify("--nonce", ""), files: quoteFiles, code: 1,
			stderr: "stockade: error: --nonce \"\": want the nonce given to tpm2_quote -q, in hex\n", check: noRequests},
		{name: "verify-quote missing file", args: verify("--nonce", nonceHex), code: 1,
			files:  map[string]string{"ak.pub": "x", "quote.msg": "x", "quote.pcrs": "x"},
			stderr: "stockade: error: --signature: open quote.sig: file does not exist\n", check: noRequests},
		{name: "verify-quote invalid policy", args: verify("--nonce", nonceHex, "--policy", "p.json"), code: 1,
			files:  withFiles(map[string]string{"p.json": `{"bank": "sha1"}`}),
			stderr: "stockade: error: --policy p.json: invalid policy: bank: only sha256 is supported, not \"sha1\"\n", check: noRequests},
		{name: "verify-quote takes no arguments", args: verify("--nonce", nonceHex, "extra"), files: quoteFiles, code: 1,
			stderr: "stockade: error: unknown command \"extra\" for \"stockade attest verify-quote\"\n", check: noRequests},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAPI{failures: tc.failures}
			e, stdout, stderr := testEnv(t, f, nil, tc.files)
			code := run(context.Background(), e, tc.args)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", code, tc.code, stdout.String(), stderr.String())
			}
			switch {
			case tc.golden != "":
				golden(t, tc.golden, stdout.String())
			case tc.stdout != "" || tc.check == nil:
				if stdout.String() != tc.stdout {
					t.Errorf("stdout %q, want %q", stdout.String(), tc.stdout)
				}
			}
			switch {
			case tc.stderr != "":
				if stderr.String() != tc.stderr {
					t.Errorf("stderr %q, want %q", stderr.String(), tc.stderr)
				}
			case tc.code != 0 && stdout.Len() == 0:
				if n := strings.Count(stderr.String(), "\n"); n != 1 {
					t.Errorf("stderr has %d lines, want one: %q", n, stderr.String())
				}
			case tc.code != 0:
				// A verdict: one line on stdout, nothing on stderr.
				if !strings.HasPrefix(stdout.String(), "quote REJECTED: "+tc.reject) || strings.Count(stdout.String(), "\n") != 1 || stderr.Len() != 0 {
					t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
				}
			case stderr.Len() != 0:
				t.Errorf("stderr %q", stderr.String())
			}
			if tc.check != nil {
				tc.check(t, f)
			}
		})
	}
}

func TestAttestHelp(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"stockade", "--help"}, []string{"attest", "audit", "node"}},
		{[]string{"stockade", "attest", "verify-quote", "--help"}, []string{"no event log", "--ak-pub", "--policy", "quote REJECTED"}},
		{[]string{"stockade", "attest", "policy", "set", "--help"}, []string{"--manifest", "--tofu", "--cert-ttl", "must exceed the interval"}},
		{[]string{"stockade", "node"}, []string{"approve", "revoke", "attest-log", "list"}},
		{[]string{"sinfo", "--help"}, []string{"%y trust", "%q", "%K", "%Q"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			e, stdout, _ := testEnv(t, &fakeAPI{}, nil, nil)
			if code := run(context.Background(), e, tc.args); code != 0 {
				t.Fatalf("exit %d", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("help lacks %q:\n%s", w, stdout.String())
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
