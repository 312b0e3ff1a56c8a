package tests

import (
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/testcluster"
)

const aliceUID = 1501

// submit runs sbatch --parsable as a user in dir and returns the job id.
func submit(t *testing.T, c *testcluster.Cluster, token, dir string, args ...string) uint64 {
	t.Helper()
	out, errOut, code := c.CLIIn(dir, token, nil, append([]string{"sbatch", "--parsable"}, args...)...)
	if code != 0 {
		t.Fatalf("sbatch %v: exit %d: %s", args, code, errOut)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(strings.Split(out, ";")[0]), 10, 64)
	if err != nil {
		t.Fatalf("sbatch printed %q: %v", out, err)
	}
	return id
}

func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestJobOutcomes checks the states, exit codes and usage of jobs that
// complete, fail, run out of memory, time out and burn CPU.
func TestJobOutcomes(t *testing.T) {
	c := testcluster.StartCluster(t, 1, "node1", "node2")
	tok := c.AddUser("alice", aliceUID)
	dir := c.UserDir("alice", aliceUID)

	ok := submit(t, c, tok, dir, "--wrap", `echo "id=$(id -u) job=$SLURM_JOB_ID name=$SLURM_JOB_NAME nodes=$SLURM_JOB_NODELIST"; echo private >/tmp/x`, "-J", "hello", "-o", "hello-%j.out")
	fail := submit(t, c, tok, dir, "--wrap", "exit 3")
	oom := submit(t, c, tok, dir, "--mem=64M", "--wrap", "tail /dev/zero; echo survived")
	timeout := submit(t, c, tok, dir, "--time=0:02", "--wrap", "sleep 600")
	// sbatch --signal: the batch shell hears of its limit 2 s early and ends well.
	warned := submit(t, c, tok, dir, "--time=0:04", "--signal=B:USR1@2", "-o", "warned.out",
		"--wrap", "trap 'echo warned; exit 0' USR1; sleep 600 & wait")
	burnStart := time.Now()
	// The job burns CPU for 5 s and prints what the kernel accounted to it
	// (the shell's `times`: user and system time of itself and its children).
	burn := submit(t, c, tok, dir, "-o", "burn.out", "--wrap", `end=$(( $(date +%s) + 5 )); while [ "$(date +%s)" -lt "$end" ]; do :; done; times`)

	j := c.WaitJobEnd(ok, 60*time.Second)
	if j.State != api.JobCompleted || j.ExitCode != 0 {
		t.Errorf("ok job: %s exit %d (%s)", j.State, j.ExitCode, j.FailReason)
	}
	out, err := os.ReadFile(filepath.Join(dir, "hello-"+strconv.FormatUint(ok, 10)+".out"))
	if err != nil {
		t.Fatalf("output file: %v", err)
	}
	want := "id=1501 job=" + strconv.FormatUint(ok, 10) + " name=hello nodes=node"
	if !strings.HasPrefix(string(out), want) {
		t.Errorf("output %q, want prefix %q", out, want)
	}
	if _, err := os.Stat("/tmp/x"); err == nil {
		if b, _ := os.ReadFile("/tmp/x"); string(b) == "private\n" {
			t.Errorf("the job's /tmp is not private")
		}
	}

	j = c.WaitJobEnd(fail, 60*time.Second)
	if j.State != api.JobFailed || j.ExitCode != 3 || j.ExitSignal != 0 {
		t.Errorf("exit 3 job: %s %d:%d", j.State, j.ExitCode, j.ExitSignal)
	}
	sacct, sacctErr, _ := c.CLI(tok, "sacct", "-j", strconv.FormatUint(fail, 10), "-X", "-n", "-P", "--format=JobID,State,ExitCode")
	if strings.TrimSpace(sacct) != strconv.FormatUint(fail, 10)+"|FAILED|3:0" {
		t.Errorf("sacct for exit 3: %q %s", sacct, sacctErr)
	}

	j = c.WaitJobEnd(oom, 60*time.Second)
	if j.State != api.JobOutOfMemory {
		t.Errorf("oom job: %s exit %d (%s)", j.State, j.ExitCode, j.FailReason)
	}

	j = c.WaitJobEnd(timeout, 60*time.Second)
	if j.State != api.JobTimeout {
		t.Errorf("timeout job: %s", j.State)
	}
	if el := j.EndTime.Sub(j.StartTime); el > 12*time.Second {
		t.Errorf("timeout job ran %s for a 2 s limit", el)
	}

	j = c.WaitJobEnd(warned, 60*time.Second)
	if b, _ := os.ReadFile(filepath.Join(dir, "warned.out")); j.State != api.JobCompleted || string(b) != "warned\n" {
		// Without the signal it would end TIMEOUT at 4 s.
		t.Errorf("--signal=B:USR1@2 job: %s exit %d, output %q; want COMPLETED and warned", j.State, j.ExitCode, b)
	}

	j = c.WaitJobEnd(burn, 60*time.Second)
	if j.State != api.JobCompleted {
		t.Errorf("burn job: %s", j.State)
	}
	cpu := time.Duration(j.Usage.CPUTimeNs)
	b, err := os.ReadFile(filepath.Join(dir, "burn.out"))
	if err != nil {
		t.Fatal(err)
	}
	kernel := parseTimes(t, string(b))
	if diff := math.Abs(float64(cpu-kernel)) / float64(kernel); diff > 0.10 || kernel < 2*time.Second {
		t.Errorf("metered CPU time %s, kernel says %s (%.1f%% apart; wall %s)", cpu, kernel, diff*100, time.Since(burnStart))
	}
	t.Logf("CPU burn: metered %s, kernel %s", cpu, kernel)
	if j.Usage.WallTimeNs == 0 || j.Usage.MaxMemoryB == 0 {
		t.Errorf("burn job usage not metered: %+v", j.Usage)
	}
}

// TestArrayAndDependencies runs an array with a concurrency cap and a
// dependency chain.
func TestArrayAndDependencies(t *testing.T) {
	c := testcluster.StartCluster(t, 1, "node1", "node2")
	tok := c.AddUser("alice", aliceUID)
	dir := c.UserDir("alice", aliceUID)

	arr := submit(t, c, tok, dir, "--array=1-4%2", "-o", "arr-%A_%a.out", "--wrap", "echo task=$SLURM_ARRAY_TASK_ID; sleep 1")
	first := submit(t, c, tok, dir, "--wrap", "exit 1")
	never := submit(t, c, tok, dir, "--dependency=afterok:"+strconv.FormatUint(first, 10), "--wrap", "true")
	after := submit(t, c, tok, dir, "--dependency=afternotok:"+strconv.FormatUint(first, 10), "--wrap", "true")
	held := submit(t, c, tok, dir, "--hold", "--wrap", "true")

	c.WaitFor(60*time.Second, "array to finish", func() bool {
		var resp api.JobsResponse
		c.Client("").Do(t.Context(), "GET", "/v1/jobs?all=true&id="+strconv.FormatUint(arr, 10), nil, &resp)
		done := 0
		for _, j := range resp.Jobs {
			if j.State == api.JobCompleted {
				done++
			}
		}
		return done == 4
	})
	for i := 1; i <= 4; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "arr-"+strconv.FormatUint(arr, 10)+"_"+strconv.Itoa(i)+".out"))
		if err != nil || strings.TrimSpace(string(b)) != "task="+strconv.Itoa(i) {
			t.Errorf("array task %d output %q %v", i, b, err)
		}
	}
	if j := c.WaitJobEnd(after, 60*time.Second); j.State != api.JobCompleted {
		t.Errorf("afternotok job: %s", j.State)
	}
	c.WaitFor(20*time.Second, "DependencyNeverSatisfied", func() bool {
		return c.Job(never).Reason == api.ReasonDependencyNeverSatisfied
	})
	out, _, _ := c.CLI(tok, "squeue", "-h", "-j", strconv.FormatUint(held, 10), "-o", "%i %t %r")
	if strings.TrimSpace(out) != strconv.FormatUint(held, 10)+" PD JobHeldUser" {
		t.Errorf("held job in squeue: %q", out)
	}
	if _, e, code := c.CLI(tok, "scontrol", "release", strconv.FormatUint(held, 10)); code != 0 {
		t.Fatalf("release: %s", e)
	}
	if j := c.WaitJobEnd(held, 60*time.Second); j.State != api.JobCompleted {
		t.Errorf("released job: %s", j.State)
	}
	if _, e, code := c.CLI(tok, "scancel", strconv.FormatUint(never, 10)); code != 0 {
		t.Fatalf("scancel: %s", e)
	}
	if j := c.WaitJobEnd(never, 10*time.Second); j.State != api.JobCancelled {
		t.Errorf("cancelled job: %s", j.State)
	}
}

// TestUsersSeeOnlyTheirJobs checks authorization between two users.
func TestUsersSeeOnlyTheirJobs(t *testing.T) {
	c := testcluster.StartCluster(t, 1, "node1")
	alice := c.AddUser("alice", aliceUID)
	bob := c.AddUser("bob", aliceUID+1)
	dir := c.UserDir("alice", aliceUID)
	id := submit(t, c, alice, dir, "--hold", "--wrap", "true")
	out, _, _ := c.CLI(bob, "squeue", "-h", "-o", "%i")
	if strings.Contains(out, strconv.FormatUint(id, 10)) {
		t.Errorf("bob sees alice's job: %q", out)
	}
	if _, _, code := c.CLI(bob, "scancel", strconv.FormatUint(id, 10)); code == 0 {
		t.Errorf("bob cancelled alice's job")
	}
	if j := c.Job(id); j.State != api.JobPending {
		t.Errorf("alice's job after bob's scancel: %s", j.State)
	}
	out, _, _ = c.CLI("", "squeue", "-h", "-o", "%i")
	if !strings.Contains(out, strconv.FormatUint(id, 10)) {
		t.Errorf("admin does not see alice's job: %q", out)
	}
}

// parseTimes sums the four figures of a POSIX shell's `times` output
// ("0m1.230000s 0m0.010000s" for the shell, then for its children).
func parseTimes(t *testing.T, out string) time.Duration {
	t.Helper()
	var total time.Duration
	ms := regexp.MustCompile(`(\d+)m([\d.]+)s`).FindAllStringSubmatch(out, -1)
	if len(ms) != 4 {
		t.Fatalf("times output %q", out)
	}
	for _, m := range ms {
		min, _ := strconv.Atoi(m[1])
		sec, _ := strconv.ParseFloat(m[2], 64)
		total += time.Duration(min)*time.Minute + time.Duration(sec*float64(time.Second))
	}
	return total
}
