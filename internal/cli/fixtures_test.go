package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.golden files")

// fixNow is the clock of every formatting test.
var fixNow = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return fixNow.Add(-d) }

func testCtx() *fmtCtx {
	return &fmtCtx{now: fixNow, loc: time.UTC, groupName: func(gid uint32) string {
		if gid == 1501 {
			return "alice"
		}
		return ""
	}}
}

// golden compares got with testdata/name.golden (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s\n--- got ---\n%s--- want ---\n%s", name, path, got, want)
	}
}

func spec(name, part string, mut func(*api.JobSpec)) api.JobSpec {
	s := api.JobSpec{Name: name, Partition: part, Account: "research", Nodes: 1, Tasks: 1, CPUsPerTask: 1,
		WorkDir: "/home/alice", Output: "slurm-%j.out", Requeue: true, QOS: "normal"}
	if mut != nil {
		mut(&s)
	}
	return s
}

// fixtureJobs covers every state, an array and the field edge cases
// (long names, unlimited limits, per-CPU memory, usage).
func fixtureJobs() []api.Job {
	alice := func(j api.Job) api.Job {
		j.User, j.UID, j.GID = "alice", 1501, 1501
		if j.ArrayTaskID == 0 && j.ArrayJobID == 0 {
			j.ArrayTaskID = -1
		}
		return j
	}
	return []api.Job{
		alice(api.Job{
			ID: 101, Spec: spec("train-model", "batch", func(s *api.JobSpec) {
				s.Nodes, s.Tasks, s.CPUsPerTask, s.MemoryPerNodeMB, s.Output = 2, 2, 4, 8192, "train-%j.out"
			}),
			State: api.JobRunning, Reason: "None", Priority: 1000, SubmitTime: ago(2 * time.Hour),
			StartTime: ago(time.Hour + 2*time.Minute + 3*time.Second), TimeLimitSec: 7200,
			Nodes: []string{"node1", "node2"}, AllocCPUs: 4, AllocMemoryMB: 8192,
			Usage: api.Usage{CPUTimeNs: 3600e9, UserTimeNs: 3500e9, SystemTimeNs: 100e9, MaxRSSB: 4 << 30},
		}),
		{
			ID: 102, ArrayTaskID: -1, User: "bob", UID: 1502, GID: 1502,
			Spec:  spec("wrap", "batch", func(s *api.JobSpec) { s.MemoryPerCPUMB = 2000; s.WorkDir = "/home/bob" }),
			State: api.JobPending, Reason: api.ReasonPriority, Priority: 900, SubmitTime: ago(5 * time.Minute),
			TimeLimitSec: 3600,
		},
		alice(api.Job{
			ID: 103, ArrayJobID: 103, ArrayTaskID: 1,
			Spec:  spec("arr", "batch", func(s *api.JobSpec) { s.Array = "1-2%1"; s.Output = "arr-%A_%a.out" }),
			State: api.JobRunning, Reason: "None", Priority: 800, SubmitTime: ago(10 * time.Minute),
			StartTime: ago(65 * time.Second), TimeLimitSec: 600, Nodes: []string{"node3"}, AllocCPUs: 1, AllocMemoryMB: 64,
		}),
		alice(api.Job{
			ID: 104, ArrayJobID: 103, ArrayTaskID: 2,
			Spec:  spec("arr", "batch", func(s *api.JobSpec) { s.Array = "1-2%1"; s.Output = "arr-%A_%a.out" }),
			State: api.JobPending, Reason: api.ReasonJobArrayTaskLimit, Priority: 800, SubmitTime: ago(10 * time.Minute),
			TimeLimitSec: 600,
		}),
		alice(api.Job{
			ID: 105, Spec: spec("held", "small", func(s *api.JobSpec) { s.Hold = true; s.Dependency = "afterok:101" }),
			State: api.JobPending, Reason: api.ReasonJobHeldUser, HeldBy: "user", SubmitTime: ago(time.Minute),
			TimeLimitSec: 300,
		}),
		alice(api.Job{
			ID: 106, Spec: spec("done", "batch", nil), State: api.JobCompleted, Reason: "None", Priority: 700,
			SubmitTime: ago(30 * time.Minute), StartTime: ago(20 * time.Minute), EndTime: ago(10 * time.Minute),
			TimeLimitSec: 3600, Nodes: []string{"node4"}, AllocCPUs: 1, AllocMemoryMB: 64,
			Usage: api.Usage{CPUTimeNs: 5_012_000_000, UserTimeNs: 4_900_000_000, SystemTimeNs: 112_000_000,
				MaxRSSB: 126418944, BlockReadB: 4096, BlockWriteB: 1 << 20},
		}),
		alice(api.Job{
			ID: 107, Spec: spec("exit3", "batch", nil), State: api.JobFailed, Reason: "NonZeroExitCode", ExitCode: 3,
			SubmitTime: ago(9 * time.Minute), StartTime: ago(8 * time.Minute), EndTime: ago(8*time.Minute - 2*time.Second),
			TimeLimitSec: 3600, Nodes: []string{"node4"}, AllocCPUs: 1, AllocMemoryMB: 64,
		}),
		alice(api.Job{
			ID: 108, Spec: spec("cancelled-job-name", "batch", nil), State: api.JobCancelled, Reason: "None", ExitSignal: 15,
			SubmitTime: ago(7 * time.Minute), StartTime: ago(6 * time.Minute), EndTime: ago(5 * time.Minute),
			TimeLimitSec: 3600, Nodes: []string{"node4"}, AllocCPUs: 1, AllocMemoryMB: 64,
		}),
		alice(api.Job{
			ID: 109, Spec: spec("slow", "small", nil), State: api.JobTimeout, Reason: "TimeLimit",
			SubmitTime: ago(4 * time.Minute), StartTime: ago(3 * time.Minute), EndTime: ago(time.Minute),
			TimeLimitSec: 120, Nodes: []string{"node1"}, AllocCPUs: 1, AllocMemoryMB: 64,
		}),
		alice(api.Job{
			ID: 110, Spec: spec("hog", "batch", func(s *api.JobSpec) { s.MemoryPerNodeMB = 64 }), State: api.JobOutOfMemory,
			Reason: "OutOfMemory", ExitCode: 0, ExitSignal: 9,
			SubmitTime: ago(3 * time.Minute), StartTime: ago(2 * time.Minute), EndTime: ago(90 * time.Second),
			TimeLimitSec: 3600, Nodes: []string{"node2"}, AllocCPUs: 1, AllocMemoryMB: 64,
			Usage: api.Usage{MaxRSSB: 64 << 20},
		}),
		{
			ID: 111, ArrayTaskID: -1, User: "carol", UID: 1503, GID: 1503,
			Spec:  spec("forever", "gpu-long-name", func(s *api.JobSpec) { s.GPUsPerNode = 2; s.WorkDir = "/home/carol" }),
			State: api.JobRunning, Reason: "None", Priority: 10, SubmitTime: ago(27 * time.Hour),
			StartTime: ago(26*time.Hour + 3*time.Second), Nodes: []string{"gpu1"}, AllocCPUs: 1, AllocMemoryMB: 1536, AllocGPUs: 2,
		},
	}
}

func fixtureNodes() []api.Node {
	up := func(name string, cpus, alloc int, mut func(*api.Node)) api.Node {
		n := api.Node{Name: name, CPUs: cpus, MemoryMB: 16000, State: api.NodeUp, AllocCPUs: alloc,
			AllocMemoryMB: int64(alloc) * 1024, Arch: "x86_64", OS: "Linux 6.1.0", AgentVersion: "0.1.0",
			BootTime: ago(48 * time.Hour), RegisteredAt: ago(47 * time.Hour)}
		if mut != nil {
			mut(&n)
		}
		return n
	}
	attested := func(n *api.Node) {
		n.Trust, n.LastQuote = api.TrustAttested, ago(40*time.Second)
		sum := sha256.Sum256([]byte(n.Name))
		n.EKFingerprint = "sha256:" + hex.EncodeToString(sum[:])
	}
	return []api.Node{
		up("node1", 8, 5, attested),
		up("node2", 8, 5, func(n *api.Node) {
			n.Trust, n.LastQuote = api.TrustApproved, ago(70*time.Second)
			n.EKFingerprint = "sha256:" + strings.Repeat("2b", 32)
		}),
		up("node3", 4, 4, func(n *api.Node) { n.Trust = api.TrustNone }),
		up("node4", 4, 0, nil),
		up("node5", 4, 0, func(n *api.Node) { n.Drain, n.Reason = true, "disk replaced" }),
		up("node6", 4, 2, func(n *api.Node) { n.Drain, n.Reason = true, "kernel update" }),
		up("node7", 4, 0, func(n *api.Node) { n.State, n.Reason = api.NodeDown, "Not responding" }),
		{Name: "node8", CPUs: 4, MemoryMB: 16000, State: api.NodeUnknown},
		up("gpu1", 16, 1, func(n *api.Node) {
			attested(n)
			n.GPUs, n.AllocGPUs, n.Features, n.MemoryMB, n.AllocMemoryMB = 4, 2, []string{"a100", "nvlink"}, 256000, 1536
		}),
		// In no partition: attestation failed and the node was drained.
		up("node9", 4, 0, func(n *api.Node) {
			attested(n)
			n.Drain, n.Reason = true, "attestation failed: pcr-mismatch"
			n.Trust, n.AttestError = api.TrustNone, "pcr-mismatch: PCR 0 = "+strings.Repeat("ab", 32)+" not in the reference manifest"
		}),
	}
}

func fixturePartitions() []api.Partition {
	return []api.Partition{
		{Name: "batch", Nodes: []string{"node[1-8]"}, Default: true, Up: true, MaxTimeSec: 86400, DefaultTimeSec: 3600, DefMemPerCPUMB: 64},
		{Name: "small", Nodes: []string{"node1"}, Up: true, MaxTimeSec: 600, MaxNodes: 1, RequireTrust: api.TrustApproved},
		{Name: "gpu-long-name", Nodes: []string{"gpu1"}, Up: true, PriorityTier: 2, RequireTrust: api.TrustAttested},
		{Name: "debug", Nodes: nil, Up: false},
	}
}
