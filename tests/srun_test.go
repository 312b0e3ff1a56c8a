package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/testcluster"
)

// threeNodeConfig is a cluster whose default partition spans node[1-3].
const threeNodeConfig = `cluster_name = "test"
[[partitions]]
name = "batch"
nodes = "node[1-3]"
default = true
max_time = "1-00:00:00"
default_time = "1:00:00"
def_mem_per_cpu = "64M"
`

// netnsInode is the inode of a process's network namespace.
func netnsInode(t *testing.T, pid int) uint64 {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("no process (pid %d)", pid)
	}
	fi, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatalf("network namespace of %d: %v", pid, err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// netDevs are the interface names in a /proc/net/dev text, sorted.
func netDevs(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		name, _, ok := strings.Cut(l, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " |=") {
			continue
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// procNetDevs are the interfaces of a process's network namespace.
func procNetDevs(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		t.Fatal(err)
	}
	return netDevs(string(b))
}

// submitEnv is submit with extra environment for sbatch (and so the job).
func submitEnv(t *testing.T, c *testcluster.Cluster, token, dir string, env []string, args ...string) uint64 {
	t.Helper()
	out, errOut, code := c.CLIIn(dir, token, env, append([]string{"sbatch", "--parsable"}, args...)...)
	if code != 0 {
		t.Fatalf("sbatch %v: exit %d: %s", args, code, errOut)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(strings.Split(out, ";")[0]), 10, 64)
	if err != nil {
		t.Fatalf("sbatch printed %q: %v", out, err)
	}
	return id
}

// srunCluster is a cluster for srun tests: agents in network namespaces
// of their own with 2 CPUs each, alice, her directory, and the job
// environment that puts the binary under test (srun, scontrol) first on
// the PATH, as a user's shell on a login node would.
func srunCluster(t *testing.T, controllers int, agents ...string) (c *testcluster.Cluster, tok, dir string, env []string) {
	t.Helper()
	c = testcluster.StartClusterWith(t, testcluster.Options{
		Controllers: controllers, Agents: agents, Config: threeNodeConfig, NetNS: true, AgentCPUs: 2,
	})
	tok = c.AddUser("alice", aliceUID)
	dir = c.UserDir("alice", aliceUID)
	env = []string{"PATH=" + c.JobBinDir(dir, aliceUID) + ":" + os.Getenv("PATH")}
	return c, tok, dir, env
}

// checkNamespaces checks that the controllers share one network namespace
// and every agent has its own, none of them the test's, and that the
// test's namespace holds none of the cluster's interfaces.
func checkNamespaces(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	self := netnsInode(t, os.Getpid())
	selfDevs := procNetDevs(t, os.Getpid())
	hub := netnsInode(t, c.Controllers[0].Pid())
	if hub == self {
		t.Errorf("controllers run in the test's network namespace")
	}
	for _, ctl := range c.Controllers[1:] {
		if ino := netnsInode(t, ctl.Pid()); ino != hub {
			t.Errorf("controller %s in network namespace %d, %s in %d", ctl.ID, ino, c.Controllers[0].ID, hub)
		}
	}
	seen := map[uint64]string{self: "the test", hub: "the controllers"}
	pids := map[string]int{"the controllers": c.Controllers[0].Pid()}
	for name, a := range c.Agents {
		ino := netnsInode(t, a.Pid())
		if other, ok := seen[ino]; ok {
			t.Errorf("agent %s shares network namespace %d with %s", name, ino, other)
		}
		seen[ino] = "agent " + name
		pids["agent "+name] = a.Pid()
	}
	for who, pid := range pids {
		for _, d := range procNetDevs(t, pid) {
			if d != "lo" && slices.Contains(selfDevs, d) {
				t.Errorf("interface %s of %s's namespace is in the test's namespace too", d, who)
			}
		}
	}
}

// TestNetNSAgents checks the NetNS test cluster itself: three controllers
// in a hub namespace and two agents each in a network namespace of its
// own register, and a batch job runs in its agent's namespace, under its
// node's host name.
func TestNetNSAgents(t *testing.T) {
	c := testcluster.StartClusterWith(t, testcluster.Options{
		Controllers: 3, Agents: []string{"node1", "node2"}, NetNS: true, AgentCPUs: 2,
	})
	checkNamespaces(t, c)

	out, errOut, code := c.CLI("", "sinfo", "-h", "-N", "-o", "%N %c %t")
	if code != 0 {
		t.Fatalf("sinfo: %s", errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	slices.Sort(lines)
	if want := []string{"node1 2 idle", "node2 2 idle"}; !slices.Equal(lines, want) {
		t.Errorf("sinfo %q, want %q", lines, want)
	}

	tok := c.AddUser("alice", aliceUID)
	dir := c.UserDir("alice", aliceUID)
	// Jobs reach every controller (as srun in a job must).
	reach := ""
	for _, a := range c.APIAddrs() {
		host, port, _ := strings.Cut(a, ":")
		reach += fmt.Sprintf(`bash -c 'exec 3<>/dev/tcp/%s/%s' && echo reach=%s; `, host, port, a)
	}
	ids := map[string]uint64{}
	for _, node := range []string{"node1", "node2"} {
		ids[node] = submit(t, c, tok, dir, "-w", node, "-o", "netns-"+node+".out", "--wrap",
			reach+`echo host=$(hostname); echo netns=$(readlink /proc/self/ns/net); cat /proc/net/dev`)
	}
	for node, id := range ids {
		j := c.WaitJobEnd(id, 60*time.Second)
		b, _ := os.ReadFile(filepath.Join(dir, "netns-"+node+".out"))
		if j.State != api.JobCompleted {
			t.Errorf("job on %s: %s exit %d (%s); output:\n%s", node, j.State, j.ExitCode, j.FailReason, b)
			continue
		}
		got := string(b)
		if !strings.Contains(got, "host="+node+"\n") {
			t.Errorf("job on %s: host name not %s:\n%s", node, node, got)
		}
		agent := c.Agents[node]
		if want := fmt.Sprintf("netns=net:[%d]\n", netnsInode(t, agent.Pid())); !strings.Contains(got, want) {
			t.Errorf("job on %s not in its agent's network namespace (want %q):\n%s", node, want, got)
		}
		for _, a := range c.APIAddrs() {
			if !strings.Contains(got, "reach="+a+"\n") {
				t.Errorf("job on %s did not reach controller %s:\n%s", node, a, got)
			}
		}
		if devs, want := netDevs(got), procNetDevs(t, agent.Pid()); !slices.Equal(devs, want) {
			t.Errorf("job on %s sees interfaces %q, its agent %q", node, devs, want)
		}
		t.Logf("job on %s:\n%s", node, got)
	}
}

// srunScript runs two steps over the whole allocation: one that prints
// each task's rank, node and step, and one in which rank 3 exits 7.
const srunScript = `#!/bin/sh
srun sh -c 'echo rank=$SLURM_PROCID node=$SLURM_NODEID ntasks=$SLURM_NTASKS step=$SLURM_STEP_ID host=$SLURMD_NODENAME'
echo srun0=$?
echo nodelist=$SLURM_JOB_NODELIST
scontrol show hostnames $SLURM_JOB_NODELIST | sed 's/^/hostname=/'
srun sh -c '[ $SLURM_PROCID = 3 ] && exit 7; echo ok'
echo srun=$?
`

var rankLine = regexp.MustCompile(`^rank=(\d+) node=(\d+) ntasks=(\S*) step=(\S*) host=(\S*)$`)

// TestSrunMultiNode is the acceptance test of multi-node steps: a job of 6
// tasks over 3 nodes, each agent in a network namespace of its own (so the
// tasks really run on different "hosts" that reach the controllers over a
// network), runs srun steps from its batch script.
func TestSrunMultiNode(t *testing.T) {
	// srun and scontrol are the binary under test, found on the job's PATH
	// (sbatch exports the submitter's environment) before any other.
	// Nothing else: the job's credential, the controllers' addresses and
	// the cluster CA come with the job.
	c, tok, dir, env := srunCluster(t, 3, "node1", "node2", "node3")
	t.Run("AgentsInOwnNetNS", func(t *testing.T) { checkNamespaces(t, c) })
	script := writeScript(t, dir, "steps.sh", srunScript)
	id := submitEnv(t, c, tok, dir, env, "-N3", "-n6", "--ntasks-per-node=2", "-o", "steps-%j.out", script)
	sid := strconv.FormatUint(id, 10)
	j := c.WaitJobEnd(id, 180*time.Second)
	b, err := os.ReadFile(filepath.Join(dir, "steps-"+sid+".out"))
	if err != nil {
		t.Fatalf("output file: %v", err)
	}
	out := string(b)
	t.Logf("job %d: %s exit %d on %v; output:\n%s", id, j.State, j.ExitCode, j.Nodes, out)
	if j.State != api.JobCompleted || j.ExitCode != 0 {
		t.Errorf("job %d: %s exit %d (%s)", id, j.State, j.ExitCode, j.FailReason)
	}
	lines := strings.Split(out, "\n")

	t.Run("Ranks", func(t *testing.T) {
		ranks := map[int]bool{}
		hosts := map[string]bool{}
		n := 0
		for _, l := range lines {
			if !strings.HasPrefix(l, "rank=") {
				continue
			}
			n++
			m := rankLine.FindStringSubmatch(l)
			if m == nil {
				t.Errorf("rank line %q", l)
				continue
			}
			rank, _ := strconv.Atoi(m[1])
			node, _ := strconv.Atoi(m[2])
			if ranks[rank] {
				t.Errorf("rank %d twice", rank)
			}
			ranks[rank] = true
			hosts[m[5]] = true
			// Block distribution: two tasks per node, node ids in the
			// order of the job's node list.
			if node != rank/2 {
				t.Errorf("rank %d: SLURM_NODEID=%d, want %d", rank, node, rank/2)
			}
			if want := fmt.Sprintf("node%d", node+1); m[5] != want {
				t.Errorf("rank %d (node id %d): SLURMD_NODENAME=%q, want %q", rank, node, m[5], want)
			}
			if m[3] != "6" {
				t.Errorf("rank %d: SLURM_NTASKS=%q, want 6", rank, m[3])
			}
			if m[4] != "0" {
				t.Errorf("rank %d: SLURM_STEP_ID=%q, want 0", rank, m[4])
			}
		}
		if n != 6 {
			t.Errorf("%d rank lines, want 6", n)
		}
		for r := 0; r < 6; r++ {
			if !ranks[r] {
				t.Errorf("no line of rank %d", r)
			}
		}
		if len(hosts) != 3 {
			t.Errorf("tasks ran on %d hosts %v, want 3", len(hosts), hosts)
		}
		if !slices.Contains(lines, "srun0=0") {
			t.Errorf("the first srun did not exit 0")
		}
	})

	t.Run("NodeList", func(t *testing.T) {
		if !slices.Contains(lines, "nodelist=node[1-3]") {
			t.Errorf("no line nodelist=node[1-3]")
		}
		var hostnames []string
		for _, l := range lines {
			if h, ok := strings.CutPrefix(l, "hostname="); ok {
				hostnames = append(hostnames, h)
			}
		}
		if want := []string{"node1", "node2", "node3"}; !slices.Equal(hostnames, want) {
			t.Errorf("scontrol show hostnames: %q, want %q", hostnames, want)
		}
	})

	t.Run("FailingRank", func(t *testing.T) {
		if !slices.Contains(lines, "srun=7") {
			t.Errorf("srun of the step whose rank 3 exits 7 did not exit 7")
		}
		ok := 0
		for _, l := range lines {
			if l == "ok" {
				ok++
			}
		}
		if ok != 5 {
			t.Errorf("%d tasks printed ok, want 5", ok)
		}
		want := map[string]string{
			sid:            "COMPLETED|0:0",
			sid + ".batch": "COMPLETED|0:0",
			sid + ".0":     "COMPLETED|0:0",
			sid + ".1":     "FAILED|7:0",
		}
		var got map[string]string
		var sacct, sacctErr string
		// Step records may trail the job's end by a moment.
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			sacct, sacctErr, _ = c.CLI(tok, "sacct", "-j", sid, "--format=JobID,State,ExitCode", "-P", "-n")
			got = map[string]string{}
			for _, l := range strings.Split(strings.TrimSpace(sacct), "\n") {
				if jid, rest, ok := strings.Cut(l, "|"); ok && jid != sid+".extern" {
					got[jid] = rest
				}
			}
			if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
				break
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("sacct -j %s:\n%s%s\nwant (any order, .extern aside) %v", sid, sacct, sacctErr, want)
		}
	})
}

// stepCancelScript's first step is cancelled by the test with the user's
// scancel; the script cancels its second itself, with the job's
// credential (no user token); the third runs to its end: the job goes on.
const stepCancelScript = `#!/bin/sh
srun sh -c 'echo step0 up; trap "exit 143" TERM; sleep 300 & wait'
echo srun0=$?
srun sh -c 'trap "exit 143" TERM; sleep 300 & wait' &
pid=$!
n=0
until env -u STOCKADE_TOKEN -u STOCKADE_CA STOCKADE_CONFIG=/nonexistent scancel $SLURM_JOB_ID.1 2>scancel.err; do
	n=$((n+1)); [ $n -gt 120 ] && { echo scancel1 never worked; cat scancel.err; break; }
	sleep 0.5
done
wait $pid
echo srun1=$?
srun true
echo srun2=$?
`

// TestSrunStepCancel: scancel JOBID.STEPID stops one step, whose srun
// exits non-zero, while the job runs on; sacct shows the step CANCELLED.
func TestSrunStepCancel(t *testing.T) {
	c, tok, dir, env := srunCluster(t, 1, "node1")
	script := writeScript(t, dir, "cancel.sh", stepCancelScript)
	id := submitEnv(t, c, tok, dir, env, "-w", "node1", "-n1", "-o", "cancel-%j.out", script)
	sid := strconv.FormatUint(id, 10)
	outFile := filepath.Join(dir, "cancel-"+sid+".out")

	// Cancel step 0 once it runs.
	deadline := time.Now().Add(90 * time.Second)
	for {
		b, _ := os.ReadFile(outFile)
		if strings.Contains(string(b), "step0 up") {
			break
		}
		// Output comes when the step ends: look for the step instead.
		sacct, _, _ := c.CLI(tok, "sacct", "-j", sid, "--format=JobID,State", "-P", "-n")
		if strings.Contains(sacct, sid+".0|RUNNING") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("step %s.0 never ran; sacct:\n%s", sid, sacct)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if out, errOut, code := c.CLI(tok, "scancel", sid+".0"); code != 0 {
		t.Fatalf("scancel %s.0: exit %d: %s%s", sid, code, out, errOut)
	}

	j := c.WaitJobEnd(id, 120*time.Second)
	b, _ := os.ReadFile(outFile)
	out := string(b)
	t.Logf("job %d: %s exit %d; output:\n%s", id, j.State, j.ExitCode, out)
	if j.State != api.JobCompleted || j.ExitCode != 0 {
		t.Errorf("job %d: %s exit %d (%s): the step cancels must leave it running", id, j.State, j.ExitCode, j.FailReason)
	}
	lines := strings.Split(out, "\n")
	for _, step := range []string{"0", "1"} {
		var code int
		for _, l := range lines {
			if v, ok := strings.CutPrefix(l, "srun"+step+"="); ok {
				code, _ = strconv.Atoi(v)
			}
		}
		if code == 0 {
			t.Errorf("srun of cancelled step %s exited 0 (or never returned)", step)
		}
		if want := "*** STEP " + sid + "." + step + " CANCELLED AT "; !strings.Contains(out, want) {
			t.Errorf("no line %q", want)
		}
	}
	if !slices.Contains(lines, "srun2=0") {
		t.Errorf("the step after the cancels did not exit 0")
	}
	if !strings.Contains(out, "srun: error: node1: task 0: ") {
		t.Errorf("srun did not report the stopped task")
	}

	want := map[string]string{sid + ".0": "CANCELLED", sid + ".1": "CANCELLED", sid + ".2": "COMPLETED"}
	var got map[string]string
	var sacct string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		sacct, _, _ = c.CLI(tok, "sacct", "-j", sid, "--format=JobID,State", "-P", "-n")
		got = map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(sacct), "\n") {
			if jid, st, ok := strings.Cut(l, "|"); ok && want[jid] != "" {
				got[jid] = st
			}
		}
		if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
			break
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sacct -j %s:\n%s\nwant %v", sid, sacct, want)
	}
}

// srunKilledScript kills its srun once the step's task runs: the step
// must be cancelled with it rather than run on.
const srunKilledScript = `#!/bin/sh
rm -f up.$SLURM_JOB_ID
srun sh -c 'touch up.$SLURM_JOB_ID; sleep 300' &
pid=$!
n=0
until [ -e up.$SLURM_JOB_ID ]; do
	n=$((n+1)); [ $n -gt 600 ] && { echo the step never started; break; }
	sleep 0.2
done
kill -TERM $pid
wait $pid
echo srun=$?
`

// TestSrunKilled: a killed srun cancels its step, whose task stops; the
// job goes on to its end.
func TestSrunKilled(t *testing.T) {
	c, tok, dir, env := srunCluster(t, 1, "node1")
	script := writeScript(t, dir, "killed.sh", srunKilledScript)
	start := time.Now()
	id := submitEnv(t, c, tok, dir, env, "-n1", "-o", "killed-%j.out", script)
	sid := strconv.FormatUint(id, 10)
	j := c.WaitJobEnd(id, 120*time.Second)
	b, _ := os.ReadFile(filepath.Join(dir, "killed-"+sid+".out"))
	out := string(b)
	t.Logf("job %d: %s exit %d after %s; output:\n%s", id, j.State, j.ExitCode, time.Since(start).Round(time.Millisecond), out)
	if j.State != api.JobCompleted {
		t.Errorf("job %d: %s (%s)", id, j.State, j.FailReason)
	}
	if !strings.Contains(out, "srun: interrupted: cancelling step "+sid+".0") {
		t.Errorf("srun did not say it cancels the step")
	}
	var code int
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "srun="); ok {
			code, _ = strconv.Atoi(v)
		}
	}
	if code == 0 {
		t.Errorf("killed srun exited 0 (or never returned)")
	}
	sacct, _, _ := c.CLI(tok, "sacct", "-j", sid, "--format=JobID,State", "-P", "-n")
	if !strings.Contains(sacct, sid+".0|CANCELLED") {
		t.Errorf("sacct -j %s: step 0 not CANCELLED:\n%s", sid, sacct)
	}
}
