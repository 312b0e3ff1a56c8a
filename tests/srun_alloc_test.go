package tests

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// TestSrunAllocation: srun outside a job gets an allocation of its own,
// as Slurm's does: six ranks over three nodes (agents in their own
// network namespaces), output labelled in rank order; a failing rank
// makes srun and its job fail with that exit code; srun --jobid runs a
// step in a running job of the user's; a refused allocation queues
// nothing.
func TestSrunAllocation(t *testing.T) {
	// The allocation's batch script runs srun from the PATH srun was
	// called with.
	c, tok, dir, env := srunCluster(t, 1, "node1", "node2", "node3")
	srun := func(args ...string) (string, string, int) {
		t.Helper()
		start := time.Now()
		out, errOut, code := c.CLIIn(dir, tok, env, append([]string{"srun"}, args...)...)
		t.Logf("srun %s: exit %d in %s\nstdout:\n%sstderr:\n%s", strings.Join(args, " "), code,
			time.Since(start).Round(time.Millisecond), out, errOut)
		return out, errOut, code
	}
	jobs := func() []string {
		t.Helper()
		out, errOut, code := c.CLI(tok, "sacct", "-X", "-n", "-P", "--format=JobID,JobName,State,ExitCode,NNodes")
		if code != 0 {
			t.Fatalf("sacct: exit %d: %s", code, errOut)
		}
		return strings.Fields(out)
	}

	t.Run("Ranks", func(t *testing.T) {
		out, _, code := srun("-N3", "-n6", "-l", "sh", "-c", "echo rank=$SLURM_PROCID node=$SLURMD_NODENAME ntasks=$SLURM_NTASKS")
		var want []string
		for r := range 6 {
			want = append(want, fmt.Sprintf("%d: rank=%d node=node%d ntasks=6", r, r, r/2+1))
		}
		if code != 0 || out != strings.Join(want, "\n")+"\n" {
			t.Errorf("exit %d, output:\n%swant:\n%s", code, out, strings.Join(want, "\n"))
		}
	})

	t.Run("FailingRank", func(t *testing.T) {
		out, errOut, code := srun("-N3", "sh", "-c", "echo r$SLURM_PROCID; [ $SLURM_PROCID != 1 ] || exit 5")
		if code != 5 || out != "r0\nr1\nr2\n" || !strings.Contains(errOut, "srun: error: node2: task 1: Exited with exit code 5") {
			t.Errorf("exit %d, stdout %q, stderr %q; want 5, three ranks, task 1 reported", code, out, errOut)
		}
		// The allocation ends as srun did; sacct shows its step.
		var last []string
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
			js := jobs()
			if len(js) > 0 && strings.HasSuffix(js[len(js)-1], "|FAILED|5:0|3") {
				last = strings.Split(js[len(js)-1], "|")
				break
			}
		}
		if last == nil {
			t.Fatalf("no allocation FAILED 5:0 on 3 nodes; sacct: %q", jobs())
		}
		steps, _, _ := c.CLI(tok, "sacct", "-j", last[0], "-n", "-P", "--format=JobID,State,ExitCode")
		if !strings.Contains(steps, last[0]+".0|FAILED|5:0") {
			t.Errorf("sacct -j %s: no step 0 FAILED 5:0:\n%s", last[0], steps)
		}
	})

	t.Run("JobID", func(t *testing.T) {
		id := submitEnv(t, c, tok, dir, env, "-w", "node3", "-n1", "-o", "/dev/null", "--wrap", "sleep 300")
		c.WaitFor(60*time.Second, "the job to run", func() bool { return c.Job(id).State == api.JobRunning })
		out, _, code := srun("--jobid="+strconv.FormatUint(id, 10), "sh", "-c", "echo $SLURMD_NODENAME $SLURM_STEP_ID")
		if code != 0 || out != "node3 0\n" {
			t.Errorf("exit %d, output %q; want node3 0", code, out)
		}
		if _, errOut, code := c.CLI(tok, "scancel", strconv.FormatUint(id, 10)); code != 0 {
			t.Fatalf("scancel: %s", errOut)
		}
		c.WaitJobEnd(id, 60*time.Second)
	})

	t.Run("Refused", func(t *testing.T) {
		before := jobs()
		_, errOut, code := srun("-p", "nosuch", "hostname")
		if code != 1 || !strings.HasPrefix(errOut, "srun: error: Unable to allocate resources: ") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("exit %d, stderr %q; want 1 and one error line", code, errOut)
		}
		if after := jobs(); !slices.Equal(after, before) {
			t.Errorf("jobs after a refused allocation %q, before %q", after, before)
		}
	})
}
