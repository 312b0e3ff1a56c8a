package tests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/testcluster"
)

// attestClusterConfig puts the tampered node in the partition too, so that
// a job may ask for it by name.
const attestClusterConfig = `cluster_name = "test"
[[partitions]]
name = "batch"
nodes = "node[1-3]"
default = true
max_time = "1-00:00:00"
default_time = "1:00:00"
def_mem_per_cpu = "64M"
`

// attestInterval is the policy's re-attestation interval in this test.
const attestInterval = 10 * time.Second

// tamperPCR is the policy PCR extended behind the agent's back: PCR 7
// (Secure Boot policy) is in the default policy and has no events on
// swtpm, so the log cannot explain a change (pcr-not-explained; a PCR with
// events, such as the agent's 15, fails the replay: event-log-replay).
const tamperPCR = 7

// TestAttestation runs three agents with a software TPM each (swtpm, one
// manufacturer CA the controllers trust with --tpm-ca-bundle):
//
//   - node1 and node2 run the allowed agent binary: they are admitted
//     (trust attested) and run jobs;
//   - node3 runs a copy with bytes appended (another digest, the same
//     behaviour): it is refused with agent-binary-not-allowed and never
//     becomes usable;
//   - then a policy PCR of the TPM of the node running a requeueable job
//     is extended behind the agent's back: within one interval that node is
//     evicted (drained, trust none, certificate revoked) and the job runs
//     again, to completion, on the other node.
func TestAttestation(t *testing.T) {
	began := time.Now()
	c := testcluster.StartClusterWith(t, testcluster.Options{
		Controllers: 1,
		Config:      attestClusterConfig,
		TPMNodes:    []string{"node1", "node2", "node3"},
	})
	t.Logf("3 swtpms and a controller up in %s", time.Since(began).Round(100*time.Millisecond))
	bin := testcluster.Binary(t)

	// The policy: a short interval, and the agent binary under test.
	cli(t, c, "stockade", "attest", "policy", "set", "--interval", attestInterval.String(), "--cert-ttl", "60s")
	out := cli(t, c, "stockade", "attest", "policy", "add-digest", "--file", bin)
	t.Logf("%s", strings.TrimSpace(out))

	tampered := filepath.Join(c.Dir, "stockade-tampered")
	tamperedCopy(t, bin, tampered)

	agentsAt := time.Now()
	c.StartAgent("node1")
	c.StartAgent("node2")
	c.StartAgentWith("node3", testcluster.AgentOptions{Binary: tampered})

	// a. The good nodes are admitted and idle.
	c.WaitFor(30*time.Second, "node1 and node2 attested and idle", func() bool {
		nodes := nodeList(t, c)
		for _, name := range []string{"node1", "node2"} {
			if n, ok := nodes[name]; !ok || n.Trust != api.TrustAttested || sinfoState(c, name) != "idle" {
				return false
			}
		}
		return true
	})
	admitted := time.Since(agentsAt)
	t.Logf("node1 and node2 attested and idle %s after their agents started", admitted.Round(100*time.Millisecond))
	out = cli(t, c, "stockade", "node", "list")
	t.Logf("stockade node list:\n%s", out)
	for _, name := range []string{"node1", "node2"} {
		if f := nodeListRow(out, name); len(f) < 3 || f[2] != string(api.TrustAttested) {
			t.Errorf("node list row of %s: %q, want trust attested", name, f)
		}
	}

	tok := c.AddUser("alice", aliceUID)
	dir := c.UserDir("alice", aliceUID)
	quick := map[string]uint64{}
	for _, name := range []string{"node1", "node2"} {
		quick[name] = submit(t, c, tok, dir, "-w", name, "--wrap", "echo hello from $(hostname)")
	}
	// Pinned to the tampered node: it must never start.
	pinned := submit(t, c, tok, dir, "-w", "node3", "--wrap", "echo tampered node ran a job")
	for name, id := range quick {
		j := c.WaitJobEnd(id, 30*time.Second)
		if j.State != api.JobCompleted || !slices.Equal(j.Nodes, []string{name}) {
			t.Errorf("job pinned to %s: %s on %v (%s)", name, j.State, j.Nodes, j.FailReason)
		}
	}

	// b. The tampered node is refused, and audited.
	var refusal *api.AuditRecord
	c.WaitFor(30*time.Second, "node3's refusal in the audit log", func() bool {
		for _, r := range auditRecords(t, c, "node3") {
			if r.Kind == api.AuditRefused {
				refusal = &r
				return true
			}
		}
		return false
	})
	t.Logf("stockade audit --node node3:\n%s", cli(t, c, "stockade", "audit", "--node", "node3"))
	if refusal.Code != "agent-binary-not-allowed" {
		t.Errorf("node3 refused with code %q (%s), want agent-binary-not-allowed", refusal.Code, refusal.Reason)
	}
	for _, r := range auditRecords(t, c, "node3") {
		if r.Kind == api.AuditAdmitted {
			t.Errorf("node3 was admitted: %+v", r)
		}
	}
	checkUnusable := func(name string) {
		t.Helper()
		if n, ok := nodeList(t, c)[name]; ok && (n.Trust != api.TrustNone && n.Trust != "" || (&n).Usable()) {
			t.Errorf("node %s: trust %q, state %s, drain %v; want it not trusted and not usable", name, n.Trust, n.State, n.Drain)
		}
		if st := sinfoState(c, name); st == "idle" || st == "mix" || st == "alloc" {
			t.Errorf("sinfo shows %s %s", name, st)
		}
	}
	checkUnusable("node3")

	// c. A requeueable job runs on one of the good nodes; then a PCR of
	// that node's TPM changes without an event-log entry.
	long := submit(t, c, tok, dir, "-J", "survivor", "--wrap", "sleep 30; echo done")
	var victim string
	c.WaitFor(30*time.Second, "the long job running", func() bool {
		j := c.Job(long)
		if j.State == api.JobRunning && len(j.Nodes) == 1 {
			victim = j.Nodes[0]
			return true
		}
		return false
	})
	other := map[string]string{"node1": "node2", "node2": "node1"}[victim]
	if other == "" {
		t.Fatalf("the long job runs on %q", victim)
	}
	time.Sleep(time.Second) // the job has really started in its container
	tpm := c.TPMs[victim]
	before, err := tpm.PCR("sha256", tamperPCR)
	if err != nil {
		t.Fatalf("reading PCR %d of %s: %v", tamperPCR, victim, err)
	}
	if err := tpm.ExtendUnlogged(tamperPCR, []byte("bootkit")); err != nil {
		t.Fatalf("extending PCR %d of %s: %v", tamperPCR, victim, err)
	}
	extended := time.Now()
	after, err := tpm.PCR("sha256", tamperPCR)
	if err != nil || string(after) == string(before) {
		t.Fatalf("PCR %d of %s did not change: %x -> %x (%v)", tamperPCR, victim, before, after, err)
	}
	t.Logf("extended PCR %d of %s (running job %d) through its running swtpm: %x -> %x", tamperPCR, victim, long, before, after)

	c.WaitFor(attestInterval, victim+" drained after the unlogged extend", func() bool {
		st := sinfoState(c, victim)
		return strings.HasPrefix(st, "drain") || st == "drng"
	})
	evicted := time.Since(extended)
	t.Logf("%s drained %s after the extend (interval %s)", victim, evicted.Round(100*time.Millisecond), attestInterval)
	n := nodeList(t, c)[victim]
	if n.Trust != api.TrustNone || !strings.Contains(n.Reason+" "+n.AttestError, "pcr-not-explained") {
		t.Errorf("%s after the extend: trust %q, reason %q, attest error %q; want none and pcr-not-explained", victim, n.Trust, n.Reason, n.AttestError)
	}
	t.Logf("stockade node list:\n%s", cli(t, c, "stockade", "node", "list"))
	var eviction *api.AuditRecord
	for _, r := range auditRecords(t, c, victim) {
		if r.Kind == api.AuditEvicted {
			eviction = &r
		}
	}
	if eviction == nil || eviction.Code != "pcr-not-explained" {
		t.Errorf("audit of %s: eviction record %+v, want code pcr-not-explained", victim, eviction)
	}
	t.Logf("stockade audit --node %s:\n%s", victim, cli(t, c, "stockade", "audit", "--node", victim))

	// The certificate the agent last got, the one the eviction revoked,
	// no longer authenticates it.
	if serial := checkRevoked(t, c, victim); eviction != nil && eviction.Serial != serial {
		t.Errorf("%s's stored certificate has serial %s, the eviction revoked %s", victim, serial, eviction.Serial)
	}
	c.WaitFor(10*time.Second, victim+"'s agent seeing its eviction", func() bool {
		b, _ := os.ReadFile(c.Agents[victim].Log())
		return strings.Contains(string(b), "evicted")
	})

	// The job runs again, on the other node, to completion.
	j := c.WaitJobEnd(long, 60*time.Second)
	if j.State != api.JobCompleted || j.Restarts != 1 || !slices.Equal(j.Nodes, []string{other}) {
		t.Errorf("job %d after %s's eviction: %s, restarts %d, on %v (%s); want COMPLETED after 1 restart on %s",
			long, victim, j.State, j.Restarts, j.Nodes, j.FailReason, other)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "slurm-"+strconv.FormatUint(long, 10)+".out")); err != nil || !strings.Contains(string(b), "done") {
		t.Errorf("job %d output %q (%v)", long, b, err)
	}

	// The evicted and the tampered nodes stay out of service, and the job
	// pinned to the tampered one never started.
	checkUnusable(victim)
	checkUnusable("node3")
	if j := c.Job(pinned); j.State != api.JobPending {
		t.Errorf("job %d pinned to node3: %s, want PENDING", pinned, j.State)
	}
	t.Logf("sinfo:\n%s", cli(t, c, "sinfo", "-N"))
	t.Logf("timings: admission %s, eviction %s after the extend, whole test %s",
		admitted.Round(100*time.Millisecond), evicted.Round(100*time.Millisecond), time.Since(began).Round(time.Second))
}

// cli runs a command as admin and fails the test if it fails.
func cli(t *testing.T, c *testcluster.Cluster, args ...string) string {
	t.Helper()
	out, errOut, code := c.CLI("", args...)
	if code != 0 {
		t.Fatalf("%s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// tamperedCopy copies the binary with a few bytes appended: it behaves
// the same, its digest differs.
func tamperedCopy(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, append(b, "\x00tampered\x00"...), 0o755); err != nil {
		t.Fatal(err)
	}
}

// nodeList is `stockade node list --json`, by name.
func nodeList(t *testing.T, c *testcluster.Cluster) map[string]api.Node {
	t.Helper()
	var nodes []api.Node
	if err := json.Unmarshal([]byte(cli(t, c, "stockade", "node", "list", "--json")), &nodes); err != nil {
		t.Fatalf("node list --json: %v", err)
	}
	out := map[string]api.Node{}
	for _, n := range nodes {
		out[n.Name] = n
	}
	return out
}

// nodeListRow is the fields of a node's row in `stockade node list`.
func nodeListRow(out, name string) []string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return f
		}
	}
	return nil
}

// auditRecords is `stockade audit --node NODE --json`.
func auditRecords(t *testing.T, c *testcluster.Cluster, node string) []api.AuditRecord {
	t.Helper()
	var recs []api.AuditRecord
	if err := json.Unmarshal([]byte(cli(t, c, "stockade", "audit", "--node", node, "--json")), &recs); err != nil {
		t.Fatalf("audit --json: %v", err)
	}
	return recs
}

// sinfoState is the node's state as sinfo prints it, "" if sinfo does
// not list it.
func sinfoState(c *testcluster.Cluster, node string) string {
	out, _, _ := c.CLI("", "sinfo", "-h", "-N", "-n", node, "-o", "%t")
	return strings.TrimSpace(out)
}

// checkRevoked makes an agent request with the certificate a node's agent
// stored last (the one current when it was evicted): the controllers must
// refuse it. It returns the certificate's serial (hex).
func checkRevoked(t *testing.T, c *testcluster.Cluster, node string) string {
	t.Helper()
	tlsDir := filepath.Join(c.AgentStateDir(node), "tls")
	cert, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "agent.pem"), filepath.Join(tlsDir, "agent-key.pem"))
	if err != nil {
		t.Fatalf("%s's certificate: %v", node, err)
	}
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cl := api.NewClient(c.APIAddrs(), "", &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var resp struct {
		Nonce []byte `json:"nonce"`
	}
	err = cl.Do(ctx, "POST", "/v1/attest/nonce", struct{}{}, &resp)
	var he *api.HTTPError
	switch {
	case errors.As(err, &he) && he.Status == 401 && strings.Contains(he.Message, "cert-revoked"):
		t.Logf("%s's last certificate is refused: %d %s", node, he.Status, he.Message)
	case err == nil:
		t.Errorf("%s's last certificate still authenticates: got a nonce", node)
	default:
		t.Errorf("%s's last certificate: %v; want 401 cert-revoked", node, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Text(16)
}
