package executor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/executor/ocitest"
	"github.com/stockade-hpc/stockade/internal/testenv"
)

// The test binary is its own shim and container init, as the stockade
// binary is in production.
func TestMain(m *testing.M) {
	MaybeInit()
	if len(os.Args) > 2 && os.Args[1] == "shim" {
		os.Exit(RunShim(os.Args[2]))
	}
	if dir := os.Getenv(launcherEnv); dir != "" {
		launcherMain(dir)
	}
	code := m.Run()
	if testBase != "" {
		os.RemoveAll(testBase)
	}
	os.Exit(code)
}

const (
	launcherEnv = "STOCKADE_TEST_LAUNCHER"
	nobody      = 65534
)

// launcherMain is a stand-in agent: it launches the job in dir (spec in
// dir.spec), reports the shim's pid and waits to be killed.
func launcherMain(dir string) {
	var spec Spec
	if err := readJSON(dir+".spec", &spec); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	pid, err := Launch(dir, spec)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("launched", pid)
	time.Sleep(time.Hour)
	os.Exit(0)
}

var (
	testBase     string
	testBaseOnce sync.Once
	nextJobID    atomic.Uint64
)

// userDir is a fresh directory the job's user (nobody) can write, below a
// base that everyone can traverse (t.TempDir's parent is 0700).
func userDir(t testing.TB) string {
	t.Helper()
	testBaseOnce.Do(func() {
		b, err := os.MkdirTemp("", "stockade-executor-test-")
		if err == nil {
			err = os.Chmod(b, 0o755)
		}
		if err != nil {
			panic(err)
		}
		testBase = b
	})
	d, err := os.MkdirTemp(testBase, strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}

// baseSpec runs script as nobody with output in a fresh directory.
func baseSpec(t testing.TB, script string) Spec {
	out := userDir(t)
	return Spec{
		JobID:   uint64(os.Getpid())*1000 + nextJobID.Add(1),
		User:    "nobody",
		UID:     nobody,
		GID:     nobody,
		Script:  script,
		Env:     []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/tmp"},
		WorkDir: "/",
		Stdout:  filepath.Join(out, "out.txt"),
	}
}

// run launches spec and waits for its result.
func run(t testing.TB, spec Spec, timeout time.Duration) (Result, string) {
	t.Helper()
	dir := filepath.Join(userDir(t), "job")
	launch(t, dir, spec)
	r := awaitResult(t, dir, timeout)
	out, _ := os.ReadFile(spec.Stdout)
	if err := Remove(dir); err != nil {
		t.Errorf("remove: %v", err)
	}
	return r, string(out)
}

// launch is Launch, and makes sure a failing test leaves no job running.
func launch(t testing.TB, dir string, spec Spec) error {
	t.Helper()
	_, err := Launch(dir, spec)
	if err != nil {
		t.Logf("launch: %v", err)
	}
	t.Cleanup(func() { stopAndRemove(dir) })
	return err
}

func stopAndRemove(dir string) {
	if _, err := os.Stat(dir); err != nil {
		return
	}
	Cancel(dir)
	for i := 0; i < 300; i++ {
		if st, err := Inspect(dir); err != nil || !st.Running {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	Remove(dir)
}

func awaitResult(t testing.TB, dir string, timeout time.Duration) Result {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		st, err := Inspect(dir)
		if err != nil {
			t.Fatalf("inspect: %v", err)
		}
		if st.Result != nil {
			return *st.Result
		}
		if !st.Running && st.ShimPID != 0 {
			// The shim is gone: the result must be there now.
			if st, _ := Inspect(dir); st.Result != nil {
				return *st.Result
			}
			log, _ := os.ReadFile(filepath.Join(dir, logFile))
			t.Fatalf("shim died without a result; log:\n%s", log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(dir, logFile))
	t.Fatalf("no result after %s; shim log:\n%s", timeout, log)
	return Result{}
}

func TestExitStatus(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	cases := []struct {
		name   string
		script string
		argv   []string
		state  api.JobState
		code   int
		out    string
	}{
		{"exit3", "#!/bin/sh\nexit 3\n", nil, api.JobFailed, 3, ""},
		{"exit0", "#!/bin/sh\necho hello\n", nil, api.JobCompleted, 0, "hello\n"},
		{"noShebang", "echo plain; exit 0\n", nil, api.JobCompleted, 0, "plain\n"},
		{"argv", "#!/bin/sh\necho \"$#:$1:$2\"\n", []string{"a b", "c"}, api.JobCompleted, 0, "2:a b:c\n"},
		{"bash", "#!/bin/bash\necho ${BASH_VERSION:+bash}; exit 7\n", nil, api.JobFailed, 7, "bash\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := baseSpec(t, tc.script)
			spec.Argv = tc.argv
			r, out := run(t, spec, 30*time.Second)
			if r.State != tc.state || r.ExitCode != tc.code || r.ExitSignal != 0 {
				t.Errorf("result %+v, want %s exit %d", r, tc.state, tc.code)
			}
			if out != tc.out {
				t.Errorf("stdout %q, want %q", out, tc.out)
			}
			if r.End.Before(r.Start) || r.Usage.WallTimeNs == 0 {
				t.Errorf("times: start %v end %v wall %d", r.Start, r.End, r.Usage.WallTimeNs)
			}
		})
	}
}

func TestIdentityAndConfinement(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	spec := baseSpec(t, `#!/bin/sh
id -u; id -g; id -G
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|SigIgn):' /proc/self/status
echo pid=$$
hostname
ls /dev/loop0
cat /proc/self/cgroup | grep memory
echo stderr-line >&2
`)
	spec.Groups = []uint32{nobody, 100}
	spec.CgroupParent = fmt.Sprintf("stockade/test-%d", os.Getpid())
	t.Cleanup(func() {
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + spec.CgroupParent)
		for _, d := range dirs {
			os.Remove(d)
		}
	})
	spec.GPUDevices = []string{"/dev/loop0"} // any device node stands in for a GPU
	r, out := run(t, spec, 30*time.Second)
	if r.State != api.JobCompleted {
		t.Fatalf("result %+v\n%s", r, out)
	}
	host, _ := os.Hostname()
	want := []string{
		"65534", "65534", "65534 100",
		"CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000",
		"CapBnd:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1", "Seccomp:\t2",
		"SigIgn:\t0000000000000000",
		"pid=1", host, "/dev/loop0",
		fmt.Sprintf("memory:/stockade/test-%d/job_%d_0", os.Getpid(), spec.JobID),
		"stderr-line",
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			if strings.TrimSpace(l) == w || strings.HasSuffix(l, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	fi, err := os.Stat(spec.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody {
		t.Errorf("output owned by uid %d, want %d", st.Uid, nobody)
	}
}

func TestOutputFiles(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	// A root-owned file in a directory nobody may not write.
	rootDir := userDir(t)
	os.Chmod(rootDir, 0o755)
	secret := filepath.Join(rootDir, "passwd")
	if err := os.WriteFile(secret, []byte("root only\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Someone else's group-writable file: writable, but must not be
	// chowned to the job's user by runc.
	shared := filepath.Join(userDir(t), "shared.log")
	if err := os.WriteFile(shared, []byte("old\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(shared, 0o666) // past the umask

	cases := []struct {
		name    string
		stdout  string
		stderr  string
		append  bool
		prefill string
		state   api.JobState
		reason  string
		out     string
		errOut  string
	}{
		{name: "rootOwnedFile", stdout: secret, state: api.JobFailed, reason: "permission denied"},
		{name: "rootOwnedDir", stdout: filepath.Join(rootDir, "new.txt"), state: api.JobFailed, reason: "permission denied"},
		{name: "missingDir", stdout: "/nonexistent-stockade-dir/out", state: api.JobFailed, reason: "no such file"},
		{name: "separateStderr", stdout: "out", stderr: "err", state: api.JobCompleted, out: "o\n", errOut: "e\n"},
		{name: "truncate", stdout: "out", prefill: "previous\n", state: api.JobCompleted, out: "o\ne\n"},
		{name: "append", stdout: "out", append: true, prefill: "previous\n", state: api.JobCompleted, out: "previous\no\ne\n"},
		{name: "othersFile", stdout: shared, append: true, state: api.JobCompleted, out: "old\no\ne\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := baseSpec(t, "#!/bin/sh\necho o\necho e >&2\n")
			dir := filepath.Dir(spec.Stdout)
			abs := func(p string) string {
				if p == "" || filepath.IsAbs(p) {
					return p
				}
				return filepath.Join(dir, p)
			}
			spec.Stdout, spec.Stderr, spec.Append = abs(tc.stdout), abs(tc.stderr), tc.append
			if tc.prefill != "" {
				os.WriteFile(spec.Stdout, []byte(tc.prefill), 0o644)
				os.Chown(spec.Stdout, nobody, nobody)
			}
			r, out := run(t, spec, 30*time.Second)
			if r.State != tc.state || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("result %+v, want %s with reason containing %q", r, tc.state, tc.reason)
			}
			if tc.state != api.JobCompleted {
				return
			}
			if out != tc.out {
				t.Errorf("stdout %q, want %q", out, tc.out)
			}
			if tc.stderr != "" {
				if e, _ := os.ReadFile(spec.Stderr); string(e) != tc.errOut {
					t.Errorf("stderr %q, want %q", e, tc.errOut)
				}
			}
		})
	}
	if b, _ := os.ReadFile(secret); string(b) != "root only\n" {
		t.Errorf("root-owned file changed: %q", b)
	}
	if fi, err := os.Stat(shared); err == nil && fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("someone else's output file was chowned to uid %d", fi.Sys().(*syscall.Stat_t).Uid)
	}
}

// hostDir is a directory on the host's root file system (not /tmp, which is
// private in jobs), readable by nobody.
func hostDir(t testing.TB) string {
	t.Helper()
	// Not the package directory: a checkout may itself live under /tmp.
	d, err := os.MkdirTemp("/var/tmp", "stockade-hostfs-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestHostFileSystem(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	hd := hostDir(t)
	if err := os.WriteFile(filepath.Join(hd, "visible"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostTmp, err := os.CreateTemp("", "stockade-private-tmp-")
	if err != nil {
		t.Fatal(err)
	}
	hostTmp.Close()
	defer os.Remove(hostTmp.Name())
	marker := "/tmp/stockade-job-wrote-" + strconv.Itoa(os.Getpid())

	spec := baseSpec(t, fmt.Sprintf(`#!/bin/sh
cat %[1]s/visible
pwd
test -e %[2]s && echo host-tmp-visible
echo job > %[3]s && echo wrote-tmp
echo job > %[1]s/written && echo wrote-host
(echo x > /etc/stockade-test) 2>/dev/null && echo wrote-etc
touch /sys/stockade 2>/dev/null && echo wrote-sys
mount -t tmpfs none /mnt 2>/dev/null && echo mounted
dd if=/dev/zero of=%[1]s/blk bs=1M count=8 oflag=direct 2>/dev/null && echo dd-write
dd if=%[1]s/blk of=/dev/null bs=1M iflag=direct 2>/dev/null && echo dd-read
`, hd, hostTmp.Name(), marker))
	spec.WorkDir = hd
	r, out := run(t, spec, 30*time.Second)
	if r.State != api.JobCompleted {
		t.Fatalf("result %+v\n%s", r, out)
	}
	want := fmt.Sprintf("from the host\n%s\nwrote-tmp\nwrote-host\ndd-write\ndd-read\n", hd)
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if _, err := os.Stat(marker); err == nil {
		os.Remove(marker)
		t.Errorf("the job's /tmp write reached the host's /tmp")
	}
	if b, _ := os.ReadFile(filepath.Join(hd, "written")); string(b) != "job\n" {
		t.Errorf("host write from the job: %q", b)
	}
	if r.Usage.BlockWriteB < 8<<20 || r.Usage.BlockReadB < 8<<20 {
		t.Errorf("block I/O read %d write %d, want ≥ 8 MiB each", r.Usage.BlockReadB, r.Usage.BlockWriteB)
	}
	// Nothing of the job's mounts may remain on the host.
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), "/"+rootfsDir) {
		t.Errorf("a job rootfs mount leaked into the host:\n%s", mi)
	}
}

func TestWorkDirFallback(t *testing.T) {
	testenv.RequireRoot(t)
	closed := hostDir(t)
	os.Chmod(closed, 0o700)
	cases := []struct{ in, want string }{
		{"", "/tmp"},
		{"relative", "/tmp"},
		{"/", "/"},
		{"/tmp", "/tmp"},
		{"/tmp/x", "/tmp"},
		{"/dev/shm", "/tmp"},
		{"/nonexistent-dir-xyz", "/tmp"},
		{"/usr/bin/", "/usr/bin"},
		{"/etc/passwd", "/tmp"},
		{closed, "/tmp"}, // root's, mode 0700: nobody cannot enter it
	}
	for _, tc := range cases {
		if got := hostCwd(tc.in, nobody, nobody, nil); got != tc.want {
			t.Errorf("hostCwd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestOutOfMemory(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	// tail buffers its endless "line" of zeros: anonymous memory. It is a
	// child of the script, so the script itself exits 0.
	spec := baseSpec(t, "#!/bin/sh\ntail /dev/zero\necho survived\n")
	spec.MemoryBytes = 64 << 20
	r, out := run(t, spec, 60*time.Second)
	if r.State != api.JobOutOfMemory || r.Usage.OOMKills == 0 {
		t.Fatalf("result %+v, want OUT_OF_MEMORY", r)
	}
	if r.ExitCode != 0 || !strings.HasSuffix(out, "survived\n") {
		t.Errorf("exit %d output %q: the OOM must be detected although the script exited 0", r.ExitCode, out)
	}
	if r.Usage.MaxMemoryB < 60<<20 || r.Usage.MaxMemoryB > 64<<20 {
		t.Errorf("max memory %d, want ≈ 64 MiB", r.Usage.MaxMemoryB)
	}
	if r.Usage.MaxRSSB < 16<<20 {
		t.Errorf("max rss %d, want a large part of 64 MiB", r.Usage.MaxRSSB)
	}
}

func TestTimeLimit(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	cases := []struct{ name, script string }{
		{"sleepChild", "#!/bin/sh\nsleep 600\n"},
		{"ignoresTERM", "#!/bin/sh\ntrap '' TERM\nsleep 600\n"},
		{"execSleep", "#!/bin/sh\nexec sleep 600\n"},
	}
	const limit, grace = 2 * time.Second, 1 * time.Second
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := baseSpec(t, tc.script)
			spec.TimeLimit, spec.KillGrace = limit, grace
			r, _ := run(t, spec, limit+grace+10*time.Second)
			if r.State != api.JobTimeout {
				t.Fatalf("result %+v, want TIMEOUT", r)
			}
			if d := r.End.Sub(r.Start); d < limit || d > limit+grace+2*time.Second {
				t.Errorf("ran %s, want between %s and %s", d, limit, limit+grace+2*time.Second)
			}
		})
	}
}

// TestWarnSignal: sbatch --signal's signal comes WarnBefore the time
// limit, to every process of the job or (batch only) to the script alone;
// a job that ends on it finishes before its limit.
func TestWarnSignal(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	// The child reports USR1 if it gets it; the script reports it, waits
	// for the child and exits 0.
	const script = "#!/bin/sh\n" +
		"sh -c 'trap \"echo child USR1; exit 0\" USR1; while :; do sleep 0.1; done' &\n" +
		"trap 'echo batch USR1; sleep 0.5; kill $! 2>/dev/null; wait; exit 0' USR1\n" +
		"while :; do sleep 0.1; done\n"
	cases := []struct {
		name      string
		batchOnly bool
		want      string
	}{
		{"allProcesses", false, "batch USR1\nchild USR1\n"},
		{"batchOnly", true, "batch USR1\n"},
	}
	const limit, before = 5 * time.Second, 3 * time.Second
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := baseSpec(t, script)
			spec.TimeLimit, spec.KillGrace = limit, time.Second
			spec.WarnSignal, spec.WarnBefore, spec.WarnBatchOnly = int(syscall.SIGUSR1), before, tc.batchOnly
			r, out := run(t, spec, limit+10*time.Second)
			// Without B: the sleeps get it too (their shells say so).
			var lines []string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasSuffix(l, " USR1") {
					lines = append(lines, l)
				}
			}
			slices.Sort(lines)
			if r.State != api.JobCompleted || strings.Join(lines, "\n")+"\n" != tc.want {
				t.Fatalf("result %s exit %d, output %q; want COMPLETED and %q", r.State, r.ExitCode, out, tc.want)
			}
			if d := r.End.Sub(r.Start); d < limit-before || d > limit-before+2*time.Second {
				t.Errorf("ran %s, want about %s (the signal at %s)", d, limit-before, limit-before)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	spec := baseSpec(t, "#!/bin/sh\necho started\nsleep 600\n")
	spec.KillGrace = time.Second
	dir := filepath.Join(userDir(t), "job")
	if err := launch(t, dir, spec); err != nil {
		t.Fatal(err)
	}
	st, err := Inspect(dir)
	if err != nil || !st.Running || st.Start.IsZero() || st.ShimPID == 0 {
		t.Fatalf("inspect after launch: %+v %v", st, err)
	}
	t0 := time.Now()
	if err := Cancel(dir); err != nil {
		t.Fatal(err)
	}
	r := awaitResult(t, dir, 15*time.Second)
	if r.State != api.JobCancelled {
		t.Fatalf("result %+v, want CANCELLED", r)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("cancel took %s", d)
	}
	if err := Cancel(dir); err != nil {
		t.Errorf("cancel of a finished job: %v", err)
	}
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("job dir still there: %v", err)
	}
}

// trapTERM is a job that reports SIGTERM and keeps running: only SIGKILL
// ends it.
const trapTERM = "#!/bin/sh\ntrap 'echo TERM' TERM\necho started\nwhile :; do sleep 0.1; done\n"

// launchTrapper launches trapTERM with a kill grace and waits until its
// trap is set.
func launchTrapper(t *testing.T, killGrace time.Duration) (dir string, spec Spec) {
	t.Helper()
	spec = baseSpec(t, trapTERM)
	spec.KillGrace = killGrace
	dir = filepath.Join(userDir(t), "job")
	if err := launch(t, dir, spec); err != nil {
		t.Fatal(err)
	}
	awaitOutput(t, spec.Stdout, "started\n", 10*time.Second)
	return dir, spec
}

// awaitOutput waits until the job's output holds want.
func awaitOutput(t *testing.T, path, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("output %q after %s, want %q in it", b, timeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkKilledAfter checks that a job trapping SIGTERM ended CANCELLED by
// SIGKILL, grace after t0 (give or take the shim's reaction).
func checkKilledAfter(t *testing.T, r Result, t0 time.Time, grace time.Duration) {
	t.Helper()
	if r.State != api.JobCancelled || r.ExitSignal != int(syscall.SIGKILL) {
		t.Errorf("result %+v, want CANCELLED by SIGKILL", r)
	}
	if d := r.End.Sub(t0); d < grace-100*time.Millisecond || d > grace+2*time.Second {
		t.Errorf("killed %s after the stop, want %s", d, grace)
	}
}

// TestStop: a Stop sends SIGTERM at once and SIGKILL after its own grace,
// not the spec's; a later stop may shorten the grace, never lengthen it.
func TestStop(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	cases := []struct {
		name      string
		killGrace time.Duration   // the spec's
		stops     []time.Duration // -1: Cancel
		want      time.Duration
	}{
		{"shorter than the kill grace", time.Minute, []time.Duration{3 * time.Second}, 3 * time.Second},
		{"longer than the kill grace", time.Second, []time.Duration{3 * time.Second}, 3 * time.Second},
		{"zero grace kills at once", time.Minute, []time.Duration{0}, 0},
		{"a cancel cuts a longer grace short", time.Second, []time.Duration{time.Minute, -1}, time.Second},
		{"a longer grace does not extend one", time.Minute, []time.Duration{2 * time.Second, time.Minute}, 2 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, spec := launchTrapper(t, tc.killGrace)
			t0 := time.Now()
			for _, g := range tc.stops {
				var err error
				if g < 0 {
					err = Cancel(dir)
				} else {
					err = Stop(dir, g)
				}
				if err != nil {
					t.Fatal(err)
				}
				if g == tc.stops[0] && g > 0 {
					awaitOutput(t, spec.Stdout, "TERM", 2*time.Second)
				}
			}
			r := awaitResult(t, dir, tc.want+15*time.Second)
			checkKilledAfter(t, r, t0, tc.want)
		})
	}
}

func TestCPUTime(t *testing.T) {
	testenv.RequireRoot(t)
	// Not parallel: with the CPU to itself it takes 3 s, not 30.
	//
	// The script prints the CPU time the kernel charged to its reaped
	// children (cutime+cstime in /proc/self/stat, in clock ticks).
	//
	// The burner stops itself after 3 s of its own CPU time (utime+stime,
	// fields 14 and 15 of /proc/PID/stat, read without forking), so a busy
	// machine only makes the test slower.
	spec := baseSpec(t, `#!/bin/sh
sh -c 'while :; do read -r l < /proc/$$/stat; set -- $l; [ $(( ${14} + ${15} )) -ge 300 ] && exit 0; done'
set -- $(sed 's/.*) //' /proc/$$/stat)
echo $(( ${14} + ${15} ))
`)
	r, out := run(t, spec, 30*time.Second)
	if r.State != api.JobCompleted {
		t.Fatalf("result %+v\n%s", r, out)
	}
	ticks, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	kernel := ticks / 100 // USER_HZ
	got := float64(r.Usage.CPUTimeNs) / 1e9
	t.Logf("cgroup CPU %.3fs, kernel (children of the script) %.3fs, user %.3fs sys %.3fs",
		got, kernel, float64(r.Usage.UserTimeNs)/1e9, float64(r.Usage.SystemTimeNs)/1e9)
	if got < 0.9*kernel || got > 1.1*kernel+0.05 {
		t.Errorf("CPU time %.3fs, kernel says %.3fs", got, kernel)
	}
	if got < 2.7 || got > 3.3 {
		t.Errorf("CPU time %.3fs, want 3s ± 10%%", got)
	}
}

func TestCPUQuota(t *testing.T) {
	testenv.RequireRoot(t)
	// Two burners for 2 s under a one-CPU quota get about 2 s of CPU, not 4.
	spec := baseSpec(t, `#!/bin/sh
timeout 2 sh -c 'while :; do :; done' &
timeout 2 sh -c 'while :; do :; done' &
wait
`)
	spec.CPUs = 1
	r, _ := run(t, spec, 30*time.Second)
	if r.State != api.JobCompleted {
		t.Fatalf("result %+v", r)
	}
	if got := float64(r.Usage.CPUTimeNs) / 1e9; got > 2.4 {
		t.Errorf("CPU time %.2fs under a 1-CPU quota for 2s", got)
	}
	if r.Usage.PidsPeak < 3 {
		t.Errorf("pids peak %d, want ≥ 3", r.Usage.PidsPeak)
	}
}

func TestPids(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	// dash gives up at the first failed fork, so under the limit of 12 the
	// peak is exactly 12: the script and 11 sleeps.
	cases := []struct {
		name  string
		limit int64
		n     int
		state api.JobState
		peak  uint64
	}{
		{"unlimited", 0, 10, api.JobCompleted, 11},
		{"limit12", 12, 20, api.JobFailed, 12},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := baseSpec(t, fmt.Sprintf("#!/bin/sh\nfor i in $(seq %d); do sleep 1 & done 2>/dev/null\nwait\n", tc.n))
			spec.PidsLimit = tc.limit
			r, out := run(t, spec, 30*time.Second)
			if r.State != tc.state || r.Usage.PidsPeak != tc.peak {
				t.Errorf("state %s pids peak %d, want %s and %d (%+v, %q)", r.State, r.Usage.PidsPeak, tc.state, tc.peak, r, out)
			}
		})
	}
}

// The launching process (the agent) is kill -9'd right after Launch: the
// job runs on and its result appears.
func TestSurvivesLauncherKill(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	spec := baseSpec(t, "#!/bin/sh\nsleep 2\necho done\n")
	dir := filepath.Join(userDir(t), "job")
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(dir+".spec", data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), launcherEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAndRemove(dir) })
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if !strings.HasPrefix(line, "launched ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("launcher said %q", line)
	}
	cmd.Process.Kill()
	cmd.Wait()

	st, err := Inspect(dir)
	if err != nil || !st.Running {
		t.Fatalf("after the launcher died: %+v %v", st, err)
	}
	if want := strings.TrimSpace(strings.TrimPrefix(line, "launched ")); strconv.Itoa(st.ShimPID) != want {
		t.Errorf("shim pid %d, launcher reported %s", st.ShimPID, want)
	}
	r := awaitResult(t, dir, 30*time.Second)
	if r.State != api.JobCompleted {
		t.Fatalf("result %+v", r)
	}
	if out, _ := os.ReadFile(spec.Stdout); string(out) != "done\n" {
		t.Errorf("output %q", out)
	}
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
}

func TestImage(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	img := filepath.Join(userDir(t), "busybox")
	if err := ocitest.BuildBusybox(img); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(userDir(t), "cache")
	cases := []struct {
		name    string
		workDir string
		want    string
	}{
		{"home", "/home", "/home"},
		{"missingWorkDir", "/no/such/dir", "/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := baseSpec(t, `#!/bin/sh
pwd
echo $PATH
head -1 /etc/passwd
id -u
test -e /usr/bin/dd || echo no-host-usr
touch /newfile 2>/dev/null || echo rootfs-readonly
touch /tmp/x && echo tmp-writable
echo $FOO
`)
			spec.Image, spec.ImageCacheDir, spec.WorkDir = img, cache, tc.workDir
			spec.Env = append(spec.Env, "FOO=bar")
			r, out := run(t, spec, 60*time.Second)
			if r.State != api.JobCompleted {
				t.Fatalf("result %+v\n%s", r, out)
			}
			want := tc.want + "\n/bin\nroot:x:0:0:root:/root:/bin/sh\n65534\nno-host-usr\nrootfs-readonly\ntmp-writable\nbar\n"
			if out != want {
				t.Errorf("output:\n%s\nwant:\n%s", out, want)
			}
		})
	}
	ents, _ := os.ReadDir(cache)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 1 || !strings.HasPrefix(names[0], "sha256-") {
		t.Errorf("cache entries %v, want one sha256-… entry", names)
	}
}

func TestMergeImageEnv(t *testing.T) {
	cases := []struct {
		image, job, want []string
	}{
		{[]string{"PATH=/bin", "LANG=C"}, []string{"PATH=/usr/bin", "HOME=/h"}, []string{"HOME=/h", "PATH=/bin", "LANG=C"}},
		{nil, []string{"PATH=/usr/bin"}, []string{"PATH=/usr/bin"}},
		{[]string{"LANG=C"}, []string{"LANG=de", "PATH=/x"}, []string{"LANG=de", "PATH=/x"}},
	}
	for _, tc := range cases {
		if got := mergeImageEnv(tc.image, tc.job); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("mergeImageEnv(%v, %v) = %v, want %v", tc.image, tc.job, got, tc.want)
		}
	}
}

func TestCounterParsing(t *testing.T) {
	dir := t.TempDir()
	oom := filepath.Join(dir, "oom")
	os.WriteFile(oom, []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"), 0o644)
	if n, err := oomKillCount(oom); err != nil || n != 3 {
		t.Errorf("oomKillCount = %d, %v", n, err)
	}
	blk := filepath.Join(dir, "blk")
	os.WriteFile(blk, []byte("254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 0\n254:0 Total 12288\n7:0 Read 1\n7:0 Write 2\nTotal 12291\n"), 0o644)
	if r, w, err := blkioBytes(blk); err != nil || r != 4097 || w != 8194 {
		t.Errorf("blkioBytes = %d, %d, %v", r, w, err)
	}
}

func TestLaunchErrors(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(*Spec)
		reason string
	}{
		{"emptyScript", func(s *Spec) { s.Script = "" }, "empty script"},
		{"relativeOutput", func(s *Spec) { s.Stdout = "out" }, "not absolute"},
		{"badImage", func(s *Spec) { s.Image, s.ImageCacheDir = "/nonexistent-image", "/tmp" }, "nonexistent-image"},
		{"badGPU", func(s *Spec) { s.GPUDevices = []string{"/dev/nonexistent-gpu"} }, "nonexistent-gpu"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := baseSpec(t, "#!/bin/sh\ntrue\n")
			tc.mutate(&spec)
			dir := filepath.Join(userDir(t), "job")
			err := launch(t, dir, spec)
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("launch error %v, want %q", err, tc.reason)
			}
			st, ierr := Inspect(dir)
			if ierr != nil || st.Result == nil || st.Result.State != api.JobFailed || !strings.Contains(st.Result.Reason, tc.reason) {
				t.Fatalf("status %+v %v", st, ierr)
			}
			if _, err := Launch(dir, spec); err == nil {
				t.Errorf("a second launch in the same directory succeeded")
			}
			if err := Remove(dir); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNetworkNamespace(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		testenv.Unavailable(t, "unshare (util-linux) not installed")
	}
	holder := exec.Command(unshare, "--net", "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	nsPath := fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)
	for i := 0; i < 100; i++ { // until unshare has made the namespace
		self, _ := os.Readlink("/proc/self/ns/net")
		if other, err := os.Readlink(nsPath); err == nil && other != self {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	spec := baseSpec(t, "#!/bin/sh\ngrep -c : /proc/net/dev\nls /sys/class/net\n")
	spec.NetNSPath = nsPath
	r, out := run(t, spec, 30*time.Second)
	if r.State != api.JobCompleted || out != "1\nlo\n" {
		t.Errorf("result %+v output %q, want only lo", r, out)
	}
}

func TestCancelBeforeStart(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	spec := baseSpec(t, "#!/bin/sh\necho ran\n")
	dir := filepath.Join(userDir(t), "job")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Cancel(dir); err != nil {
		t.Fatal(err)
	}
	if err := launch(t, dir, spec); err == nil {
		t.Fatal("launch of a cancelled job succeeded")
	}
	r := awaitResult(t, dir, 10*time.Second)
	if r.State != api.JobCancelled {
		t.Errorf("result %+v, want CANCELLED", r)
	}
	if out, _ := os.ReadFile(spec.Stdout); len(out) != 0 {
		t.Errorf("the job ran: %q", out)
	}
}

// A shim killed with SIGKILL loses the exit status; the job is reported as
// neither running nor finished, and Remove destroys what is left.
func TestShimDeath(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	spec := baseSpec(t, "#!/bin/sh\nsleep 600\n")
	dir := filepath.Join(userDir(t), "job")
	if err := launch(t, dir, spec); err != nil {
		t.Fatal(err)
	}
	st, _ := Inspect(dir)
	if err := syscall.Kill(st.ShimPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if st, _ = Inspect(dir); !st.Running {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Running || st.Result != nil {
		t.Fatalf("after the shim's death: %+v", st)
	}
	if err := Cancel(dir); err != ErrNoShim {
		t.Errorf("cancel: %v, want ErrNoShim", err)
	}
	cg := fmt.Sprintf("/sys/fs/cgroup/pids/stockade/job_%d_0", spec.JobID)
	if procs, err := os.ReadFile(cg + "/cgroup.procs"); err != nil || len(procs) == 0 {
		t.Fatalf("the orphaned job should still run: %q %v", procs, err)
	}
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cg); !os.IsNotExist(err) {
		t.Errorf("cgroup %s left behind: %v", cg, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("job dir left behind: %v", err)
	}
}

// TestWorkDirUnderTmp: a working directory below /tmp is carried into the
// job's private /tmp, and nothing else of the host's /tmp is.
func TestWorkDirUnderTmp(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	wd, err := os.MkdirTemp("/tmp", "stockade-cwd-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(wd)
	os.Chmod(wd, 0o777)
	other, err := os.CreateTemp("/tmp", "stockade-other-")
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	defer os.Remove(other.Name())
	spec := baseSpec(t, fmt.Sprintf("#!/bin/sh\npwd\necho data > out.txt\ntest -e %s && echo other-visible\ntrue\n", other.Name()))
	spec.WorkDir = wd
	r, out := run(t, spec, 30*time.Second)
	if r.State != api.JobCompleted || out != wd+"\n" {
		t.Fatalf("result %+v, output %q", r, out)
	}
	if b, _ := os.ReadFile(filepath.Join(wd, "out.txt")); string(b) != "data\n" {
		t.Errorf("file written in the working directory: %q", b)
	}
}
