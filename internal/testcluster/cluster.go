// Package testcluster starts real Stockade clusters for integration tests
// and benchmarks: controllers and agents are the stockade binary run as
// separate processes, so tests can kill them.
package testcluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/testenv"
)

var (
	buildOnce   sync.Once
	stockadeBin string
	buildErr    error
)

// Binary returns the stockade binary under test: $STOCKADE_BIN, or one
// built once per process from this module.
func Binary(t testing.TB) string {
	buildOnce.Do(func() {
		stockadeBin = os.Getenv("STOCKADE_BIN")
		if stockadeBin != "" {
			return
		}
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
		if err != nil {
			buildErr = fmt.Errorf("go list -m: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "stockade-bin")
		if err != nil {
			buildErr = err
			return
		}
		stockadeBin = filepath.Join(dir, "stockade")
		cmd := exec.Command("go", "build", "-tags", "seccomp", "-o", stockadeBin, "./cmd/stockade")
		cmd.Dir = strings.TrimSpace(string(out))
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building stockade: %v\n%s", err, b)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return stockadeBin
}

// FreePort is a loopback TCP port free when asked; another process may
// take it before the caller binds it (AddController retries).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Proc is one process of the cluster.
type Proc struct {
	name string
	bin  string // "" is the binary under test
	args []string
	cmd  *exec.Cmd
	log  string
	// done is closed when the last start's process has exited.
	done chan struct{}
	// enter, if set, calls start (which forks the process) in the
	// namespaces the process belongs in (Options.NetNS).
	enter func(start func() error) error
}

// Log is the path of the process's log (stdout and stderr).
func (p *Proc) Log() string { return p.log }

// Pid is the process id of the process's last start (0 before any).
func (p *Proc) Pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Cluster is a set of controller and agent processes under one temp dir.
type Cluster struct {
	t           testing.TB
	Dir         string
	Controllers []*Controller
	Agents      map[string]*Proc
	AdminToken  string
	CAFile      string
	Config      string
	// TPMs are the nodes' software TPMs (Options.TPMNodes), by node name.
	TPMs map[string]*TPM
	// TPMCABundle is the PEM file given to controllers as --tpm-ca-bundle:
	// the TPMs' manufacturer CA (root and intermediate). "" without TPMs.
	TPMCABundle string
	linkDir     string
	// net is the private network of Options.NetNS (nil without).
	net *privateNet
	// agentCPUs is every agent's --cpus.
	agentCPUs int
	// bins are the binaries agents run from other than the one under test
	// (their job shims are killed by Stop too).
	bins []string
}

// Controller is one controller process.
type Controller struct {
	Proc
	ID       string
	APIAddr  string
	RaftAddr string
	DataDir  string
}

func (p *Proc) start(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	bin := p.bin
	if bin == "" {
		bin = stockadeBin
	}
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if p.enter != nil {
		err = p.enter(p.cmd.Start)
	} else {
		err = p.cmd.Start()
	}
	if err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", p.name, err)
	}
	done := make(chan struct{})
	p.done = done
	go func() { p.cmd.Wait(); f.Close(); close(done) }()
}

// exited reports whether the last start's process has ended.
func (p *Proc) exited() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Restart starts the process again, with the arguments of its first
// start (after Kill9 or Stop).
func (p *Proc) Restart(t testing.TB) {
	t.Helper()
	p.start(t)
}

// kill9 kills the process (not its detached job shims).
func (p *Proc) Kill9() {
	if p.cmd != nil && p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		for i := 0; i < 100 && p.cmd.ProcessState == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (p *Proc) Stop() {
	if p.cmd != nil && p.cmd.Process != nil && p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
		deadline := time.Now().Add(5 * time.Second)
		for p.cmd.ProcessState == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		p.Kill9()
	}
}

const testClusterConfig = `cluster_name = "test"
[[partitions]]
name = "batch"
nodes = "node[1-2]"
default = true
max_time = "1-00:00:00"
default_time = "1:00:00"
def_mem_per_cpu = "64M"

[[partitions]]
name = "small"
nodes = "node1"
max_time = "0:10:00"
`

// StartCluster starts n controllers and the named agents.
func StartCluster(t testing.TB, controllers int, agents ...string) *Cluster {
	t.Helper()
	return StartClusterWith(t, Options{Controllers: controllers, Agents: agents})
}

// Options configure StartClusterWith.
type Options struct {
	// Controllers is the number of controllers to start.
	Controllers int
	// Agents are token-joined agents, started and waited for until idle.
	Agents []string
	// Config is the cluster configuration (TOML); "" is a default with
	// partitions over node[1-2].
	Config string
	// TPMNodes each get a software TPM (Cluster.TPMs) before the
	// controllers start, all from one manufacturer whose CA the
	// controllers trust (--tpm-ca-bundle). Their agents are not started:
	// the policy allows no agent binary until an admin adds one (see
	// StartAgentWith).
	TPMNodes []string
	// NetNS runs every agent in a network namespace of its own (and a UTS
	// namespace whose host name is the node name) and the controllers in
	// a "hub" namespace, joined by a private network that lives entirely
	// in namespaces the cluster creates (see netns.go); nothing is
	// configured in the test's own namespace. The test process stays
	// where it is: Client, CLI and DialContext reach the controllers
	// through the hub. Not with TPMNodes (their taps listen on the test's
	// loopback).
	NetNS bool
	// AgentCPUs is the CPU count each agent offers (--cpus); 0 is 2.
	AgentCPUs int
}

// StartClusterWith starts a cluster as opts say.
func StartClusterWith(t testing.TB, opts Options) *Cluster {
	t.Helper()
	testenv.RequireRoot(t)
	Binary(t)
	dir := t.TempDir()
	// Jobs run as ordinary users and must reach their directories here.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := &Cluster{t: t, Dir: dir, Agents: map[string]*Proc{}, TPMs: map[string]*TPM{}, agentCPUs: opts.AgentCPUs}
	if c.agentCPUs <= 0 {
		c.agentCPUs = 2
	}
	if opts.NetNS {
		if len(opts.TPMNodes) > 0 {
			t.Fatal("testcluster: NetNS does not support TPMNodes")
		}
		n, err := newPrivateNet()
		if err != nil {
			t.Fatalf("private network for NetNS: %v", err)
		}
		// Registered before Stop, so it runs after the processes are gone.
		t.Cleanup(n.close)
		c.net = n
	}
	conf := opts.Config
	if conf == "" {
		conf = testClusterConfig
	}
	cfg := filepath.Join(dir, "cluster.toml")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Config = cfg
	// Before Stop is registered, so that cleanup stops the agents before
	// their TPMs.
	if len(opts.TPMNodes) > 0 {
		c.startTPMs(opts.TPMNodes)
	}
	t.Cleanup(c.Stop)
	for i := 0; i < opts.Controllers; i++ {
		c.AddController(cfg)
	}
	for _, name := range opts.Agents {
		c.StartAgent(name)
	}
	for _, name := range opts.Agents {
		c.WaitFor(60*time.Second, "node "+name+" idle", func() bool {
			out, _, _ := c.CLI("", "sinfo", "-h", "-N", "-n", name, "-o", "%t")
			return strings.TrimSpace(out) == "idle"
		})
	}
	return c
}

// AddController starts a controller: the first bootstraps, later ones join.
func (c *Cluster) AddController(cfg string) *Controller {
	t := c.t
	t.Helper()
	n := len(c.Controllers) + 1
	ctl := &Controller{ID: fmt.Sprintf("c%d", n), DataDir: filepath.Join(c.Dir, fmt.Sprintf("c%d", n))}
	if c.net != nil {
		// The controller's own address on the hub's bridge, which its
		// certificate carries as the host it listens on.
		var err error
		if ctl.APIAddr, ctl.RaftAddr, err = c.net.addController(); err != nil {
			t.Fatalf("controller %s address: %v", ctl.ID, err)
		}
		ctl.enter = c.net.inHub
	}
	for attempt := 1; ; attempt++ {
		if c.net == nil {
			ctl.APIAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
			ctl.RaftAddr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		}
		if c.startController(ctl, n, cfg) || attempt == 3 || c.net != nil {
			break
		}
		// Another process took a port between FreePort and the bind:
		// start over with new ports and a clean data dir.
		t.Logf("%s lost a port race; retrying with new ports", ctl.ID)
		if err := os.RemoveAll(ctl.DataDir); err != nil {
			t.Fatal(err)
		}
	}
	c.Controllers = append(c.Controllers, ctl)
	if n == 1 {
		c.WaitFor(30*time.Second, "bootstrap files", func() bool {
			b, err := os.ReadFile(filepath.Join(ctl.DataDir, "admin-token"))
			if err != nil || len(bytes.TrimSpace(b)) == 0 {
				return false
			}
			c.AdminToken = strings.TrimSpace(string(b))
			c.CAFile = filepath.Join(ctl.DataDir, "ca.pem")
			return true
		})
	}
	c.WaitFor(30*time.Second, ctl.ID+" serving", func() bool { return c.serving(ctl) })
	return ctl
}

// startController starts ctl (the n-th controller) and reports false
// when it exited at once because a port it was given was taken.
func (c *Cluster) startController(ctl *Controller, n int, cfg string) bool {
	t := c.t
	ctl.name = ctl.ID
	ctl.log = filepath.Join(c.Dir, ctl.ID+".log")
	ctl.args = []string{"server", "--id", ctl.ID, "--data-dir", ctl.DataDir, "--listen", ctl.APIAddr,
		"--raft", ctl.RaftAddr, "--config", cfg, "--node-timeout", "4s"}
	if c.TPMCABundle != "" {
		ctl.args = append(ctl.args, "--tpm-ca-bundle", c.TPMCABundle)
	}
	if n == 1 {
		ctl.args = append(ctl.args, "--bootstrap")
	} else {
		ctl.args = append(ctl.args, "--join", c.Controllers[0].APIAddr,
			"--join-token-file", filepath.Join(c.Controllers[0].DataDir, "controller-join-token"))
	}
	ctl.start(t)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ctl.exited() {
			b, _ := os.ReadFile(ctl.log)
			if bytes.Contains(b, []byte("address already in use")) {
				return false
			}
			t.Fatalf("controller %s exited at start; its log:\n%s", ctl.ID, b)
		}
		if n == 1 {
			b, err := os.ReadFile(filepath.Join(ctl.DataDir, "admin-token"))
			if err != nil || len(bytes.TrimSpace(b)) == 0 {
				continue
			}
			c.AdminToken = strings.TrimSpace(string(b))
			c.CAFile = filepath.Join(ctl.DataDir, "ca.pem")
		}
		if c.serving(ctl) {
			return true
		}
	}
	return true // the callers' waits report what is missing
}

// serving reports whether the cluster lists ctl as a member under a
// leader. Each try is bounded: the client retries forever while no
// controller answers.
func (c *Cluster) serving(ctl *Controller) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var st api.Status
	cl := c.Client("")
	// Asked directly: ctl may not be in c.Controllers yet.
	cl.Servers = []string{ctl.APIAddr}
	if err := cl.Do(ctx, "GET", "/v1/status", nil, &st); err != nil {
		return false
	}
	for _, m := range st.Controllers {
		if m.ID == ctl.ID {
			return st.Leader != ""
		}
	}
	return false
}

// StartAgent starts (or restarts) an agent for a node. A node with a TPM
// (Options.TPMNodes) enrolls with it; the others join with the agent join
// token.
func (c *Cluster) StartAgent(name string) *Proc {
	c.t.Helper()
	return c.StartAgentWith(name, AgentOptions{})
}

// AgentOptions configure StartAgentWith.
type AgentOptions struct {
	// Binary is the stockade binary the agent runs, e.g. a modified copy;
	// "" is the binary under test.
	Binary string
	// Args are more agent flags.
	Args []string
}

// StartAgentWith starts an agent as opts say, or restarts it with the
// options it was first started with.
func (c *Cluster) StartAgentWith(name string, opts AgentOptions) *Proc {
	t := c.t
	t.Helper()
	p := c.Agents[name]
	if p == nil {
		p = &Proc{name: name, bin: opts.Binary, log: filepath.Join(c.Dir, name+".log")}
		p.args = []string{"agent", "--name", name, "--servers", strings.Join(c.APIAddrs(), ","),
			"--state-dir", c.AgentStateDir(name),
			"--cpus", fmt.Sprint(c.agentCPUs), "--memory", "2G", "--heartbeat", "500ms", "--kill-grace", "2s",
			"--cgroup-parent", c.cgroupParent() + "/" + name}
		if tpm := c.TPMs[name]; tpm != nil {
			p.args = append(p.args, "--tpm", tpm.Spec, "--ca-cert", c.CAFile)
		} else {
			p.args = append(p.args, "--join-token-file", filepath.Join(c.Controllers[0].DataDir, "agent-join-token"))
		}
		p.args = append(p.args, opts.Args...)
		if c.net != nil {
			p.enter = c.net.nodeEnter(name)
		}
		if opts.Binary != "" && !slices.Contains(c.bins, opts.Binary) {
			c.bins = append(c.bins, opts.Binary)
		}
		c.Agents[name] = p
	}
	p.start(t)
	return p
}

// AgentStateDir is the --state-dir of a node's agent.
func (c *Cluster) AgentStateDir(name string) string {
	return filepath.Join(c.Dir, name)
}

func (c *Cluster) APIAddrs() []string {
	var out []string
	for _, ctl := range c.Controllers {
		out = append(out, ctl.APIAddr)
	}
	return out
}

// Stop ends every process and the job shims the agents started.
func (c *Cluster) Stop() {
	for _, a := range c.Agents {
		a.Stop()
	}
	for _, ctl := range c.Controllers {
		ctl.Stop()
	}
	for _, bin := range append([]string{stockadeBin}, c.bins...) {
		exec.Command("pkill", "-KILL", "-f", bin+" shim "+c.Dir).Run()
	}
	// Jobs whose shim was killed with their agent are still in their
	// cgroups: end them so the next cluster starts clean.
	killCgroupTree(c.cgroupParent())
	if c.t.Failed() {
		for _, ctl := range c.Controllers {
			dumpLog(c.t, ctl.log)
		}
		for _, a := range c.Agents {
			dumpLog(c.t, a.log)
		}
	}
}

func dumpLog(t testing.TB, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	t.Logf("---- %s (tail) ----\n%s", filepath.Base(path), b)
}

// Client is an API client for a token ("" = admin).
func (c *Cluster) Client(token string) *api.Client {
	if token == "" {
		token = c.AdminToken
	}
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		c.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cl := api.NewClient(c.APIAddrs(), token, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13})
	if c.net != nil {
		cl.HTTP.Transport.(*http.Transport).DialContext = c.net.dial
	}
	return cl
}

// DialContext connects to an address of the cluster's network: from the
// hub namespace with Options.NetNS (where the controllers listen), else
// from the test's own.
func (c *Cluster) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.net != nil {
		return c.net.dial(ctx, network, addr)
	}
	return (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
}

// slurmNames are the names the binary answers to as a Slurm command.
var slurmNames = []string{"sbatch", "squeue", "scancel", "sinfo", "scontrol", "sacct", "srun"}

// binDir is a directory of links to the binary under test named like the
// Slurm commands (and stockade), for CLI.
func (c *Cluster) binDir() string {
	if c.linkDir == "" {
		c.linkDir = filepath.Join(c.Dir, "bin")
		os.MkdirAll(c.linkDir, 0o755)
		for _, n := range slices.Concat(slurmNames, []string{"stockade"}) {
			os.Symlink(stockadeBin, filepath.Join(c.linkDir, n))
		}
	}
	return c.linkDir
}

// JobBinDir installs the binary under test, with links named like the
// Slurm commands, in dir/bin, owned by uid and readable by all, and
// returns that directory, for the PATH of jobs that run srun or scontrol.
// Jobs see the host's files but a private /tmp, which keeps only their
// working directory: give that (or a directory below it).
func (c *Cluster) JobBinDir(dir string, uid int) string {
	t := c.t
	t.Helper()
	bd := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bd, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(stockadeBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bd, "stockade"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range slurmNames {
		os.Symlink("stockade", filepath.Join(bd, n))
	}
	for _, n := range slices.Concat(slurmNames, []string{"stockade", ""}) {
		os.Lchown(filepath.Join(bd, n), uid, uid)
	}
	return bd
}

// CLI runs the binary under a Slurm command name (argv[0] = args[0]) with
// the cluster's environment; token "" = admin.
func (c *Cluster) CLI(token string, args ...string) (stdout, stderr string, code int) {
	return c.CLIIn("", token, nil, args...)
}

// CLIIn is CLI with a working directory and extra environment.
func (c *Cluster) CLIIn(dir, token string, env []string, args ...string) (string, string, int) {
	if token == "" {
		token = c.AdminToken
	}
	cmd := exec.Command(filepath.Join(c.binDir(), args[0]), args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"STOCKADE_SERVERS="+strings.Join(c.APIAddrs(), ","),
		"STOCKADE_CA="+c.CAFile,
		"STOCKADE_TOKEN="+token,
		"STOCKADE_CONFIG=/nonexistent")
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	var err error
	if c.net != nil {
		// The command runs in the hub, next to the controllers.
		err = c.net.inHub(cmd.Run)
	} else {
		err = cmd.Run()
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	return out.String(), errb.String(), code
}

// WaitFor polls cond until it holds or fails the test.
func (c *Cluster) WaitFor(d time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("timed out after %s waiting for %s", d, what)
}

// Job fetches one job through the API as admin.
func (c *Cluster) Job(id uint64) *api.Job {
	var j api.Job
	if err := c.Client("").Do(context.Background(), "GET", fmt.Sprintf("/v1/jobs/%d", id), nil, &j); err != nil {
		c.t.Fatalf("job %d: %v", id, err)
	}
	return &j
}

// WaitJobEnd waits for a job to reach a terminal state and returns it.
func (c *Cluster) WaitJobEnd(id uint64, d time.Duration) *api.Job {
	c.t.Helper()
	var j *api.Job
	c.WaitFor(d, fmt.Sprintf("job %d to end", id), func() bool {
		j = c.Job(id)
		return j.State.Terminal()
	})
	return j
}

// AddUser creates a user and returns its token.
func (c *Cluster) AddUser(name string, uid uint32) string {
	c.t.Helper()
	var resp api.UserAddResponse
	req := api.UserAddRequest{Name: name, Account: "research", UID: &uid, GID: &uid}
	if err := c.Client("").Do(context.Background(), "POST", "/v1/users", req, &resp); err != nil {
		c.t.Fatalf("add user %s: %v", name, err)
	}
	return resp.Token
}

// UserDir makes a working directory owned by uid.
func (c *Cluster) UserDir(name string, uid int) string {
	d := filepath.Join(c.Dir, "home-"+name)
	os.MkdirAll(d, 0o755)
	os.Chown(d, uid, uid)
	return d
}

// cgroupParent is unique per cluster so clusters never share job cgroups.
func (c *Cluster) cgroupParent() string {
	return "/stockade-test/" + filepath.Base(filepath.Dir(c.Dir)) + "-" + filepath.Base(c.Dir)
}

// killCgroupTree kills every process below a cgroup v1 path and removes the
// cgroups, deepest first.
func killCgroupTree(parent string) {
	for i := 0; i < 50; i++ {
		alive := false
		filepath.WalkDir("/sys/fs/cgroup/pids"+parent, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				var pid int
				fmt.Sscan(f, &pid)
				if pid > 0 {
					syscall.Kill(pid, syscall.SIGKILL)
					alive = true
				}
			}
			return nil
		})
		if !alive {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctrls, _ := os.ReadDir("/sys/fs/cgroup")
	for _, ctrl := range ctrls {
		root := filepath.Join("/sys/fs/cgroup", ctrl.Name()) + parent
		var dirs []string
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			os.Remove(dirs[i])
		}
	}
}
