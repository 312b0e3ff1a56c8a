package executor

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/stockade-hpc/stockade/api"
	"golang.org/x/sys/unix"

	// Device rules need the cgroup devices manager; without this import
	// every start fails ("cgroup manager is not configured to set device
	// rules").
	_ "github.com/opencontainers/cgroups/devices"
	// The C half of `init`: joins the namespaces before the Go runtime
	// starts.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// ErrNoShim means the job's shim is gone without having written a result:
// the exit status is lost (the container may still be running; Remove
// destroys it).
var ErrNoShim = errors.New("executor: the job's shim is not running and left no result")

// MaybeInit must be called first thing in main(): when the binary was
// re-executed by libcontainer as `argv0 init`, it becomes the container's
// init and never returns.
func MaybeInit() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns
	}
}

// Launch starts the job described by spec in jobDir (created if missing)
// under a new shim, `<this binary> shim <jobDir>`, in its own session and
// mount namespace, detached: it survives the caller being killed. Launch
// returns once the container runs. On failure the error says why and
// result.json holds a FAILED result.
func Launch(jobDir string, spec Spec) (shimPID int, err error) {
	jobDir, err = filepath.Abs(jobDir)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(jobDir, 0o700); err != nil {
		return 0, err
	}
	if _, err := os.Lstat(filepath.Join(jobDir, pidFile)); err == nil {
		return 0, fmt.Errorf("executor: %s was already launched", jobDir)
	}
	fail := func(err error) (int, error) {
		now := time.Now()
		if _, serr := os.Stat(filepath.Join(jobDir, resultFile)); errors.Is(serr, fs.ErrNotExist) {
			writeJSONAtomic(filepath.Join(jobDir, resultFile), &Result{State: api.JobFailed, ExitCode: 1, Start: now, End: now, Reason: err.Error()})
		}
		return shimPID, err
	}
	if err := spec.validate(); err != nil {
		return fail(fmt.Errorf("invalid job spec: %w", err))
	}
	if err := writeJSON(filepath.Join(jobDir, specFile), &spec, false); err != nil {
		return fail(err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	logf, err := os.OpenFile(filepath.Join(jobDir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer r.Close()
	cmd := exec.Command(exe, "shim", jobDir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.Dir = "/"
	// Own session: no SIGHUP/SIGINT from the caller's terminal or process
	// group. Own mount namespace: the host-mode rootfs bind lives there.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: unix.CLONE_NEWNS}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fail(fmt.Errorf("start shim: %w", err))
	}
	shimPID = cmd.Process.Pid
	// Reap the shim if it exits while we live; after we die, init does.
	go cmd.Wait()
	line, _ := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "ok" {
		return shimPID, nil
	}
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return fail(errors.New(msg))
	}
	return fail(fmt.Errorf("shim exited before starting the job (see %s)", filepath.Join(jobDir, logFile)))
}

// Inspect reads a job directory; it works from any process, whether or not
// it launched the job.
func Inspect(jobDir string) (Status, error) {
	var st Status
	if _, err := os.Stat(jobDir); err != nil {
		return st, err
	}
	// Liveness before the result: the shim writes result.json before it
	// exits, so a dead shim's result is always visible below.
	pid, alive := shimAlive(jobDir)
	st.ShimPID = pid
	var u usageRecord
	if err := readJSON(filepath.Join(jobDir, usageFile), &u); err == nil {
		st.Start, st.Usage = u.Start, u.Usage
	}
	var r Result
	err := readJSON(filepath.Join(jobDir, resultFile), &r)
	switch {
	case err == nil:
		st.Result, st.Usage = &r, r.Usage
		if !r.Start.IsZero() {
			st.Start = r.Start
		}
	case errors.Is(err, fs.ErrNotExist):
		st.Running = alive
	default:
		return st, err
	}
	return st, nil
}

// Cancel asks the shim to stop the job: SIGTERM to every process, SIGKILL
// after the spec's grace period; the result is CANCELLED. Cancelling a
// finished job does nothing.
func Cancel(jobDir string) error { return cancel(jobDir, nil) }

// Stop is Cancel with a grace period of its own between SIGTERM and
// SIGKILL (0: SIGKILL at once), as a preempted job's grace time. A stop
// under way is only ever cut short: by a Stop or Cancel whose grace ends
// sooner.
func Stop(jobDir string, grace time.Duration) error {
	return cancel(jobDir, []byte(max(grace, 0).String()+"\n"))
}

// cancel writes the cancel marker, holding the grace of a Stop, and
// signals the shim, which reads it.
func cancel(jobDir string, marker []byte) error {
	if _, err := os.Stat(filepath.Join(jobDir, resultFile)); err == nil {
		return nil
	}
	// The marker also covers a shim that has not installed its handler
	// yet. Replaced whole: the shim may read it at any time.
	if err := writeFile(filepath.Join(jobDir, cancelFile), marker, 0o644, false); err != nil {
		return err
	}
	pid, alive := shimAlive(jobDir)
	if !alive {
		if _, err := os.Stat(filepath.Join(jobDir, resultFile)); err == nil {
			return nil
		}
		if pid == 0 {
			return nil // not started yet: the shim will see the marker
		}
		return ErrNoShim
	}
	return unix.Kill(pid, unix.SIGTERM)
}

// Remove deletes a finished job's directory, first destroying whatever a
// dead shim left behind (processes, cgroups).
func Remove(jobDir string) error {
	jobDir, err := filepath.Abs(jobDir)
	if err != nil {
		return err
	}
	if _, alive := shimAlive(jobDir); alive {
		if _, err := os.Stat(filepath.Join(jobDir, resultFile)); err != nil {
			return fmt.Errorf("executor: job in %s is still running", jobDir)
		}
		// The result is written: the shim is only exiting.
		for i := 0; alive && i < 100; i++ {
			time.Sleep(50 * time.Millisecond)
			_, alive = shimAlive(jobDir)
		}
		if alive {
			return fmt.Errorf("executor: shim of %s does not exit", jobDir)
		}
	}
	var spec Spec
	if err := readJSON(filepath.Join(jobDir, specFile), &spec); err == nil {
		if err := destroyLeftovers(filepath.Join(jobDir, stateDir), spec.containerID()); err != nil {
			return err
		}
	}
	// The rootfs directory is a mount point of "/" inside the shim's
	// namespace. Here it must be an empty directory: never recurse into it
	// if it is anything else.
	if err := unix.Rmdir(filepath.Join(jobDir, rootfsDir)); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("executor: refusing to delete %s: %s: %w", jobDir, rootfsDir, err)
	}
	return os.RemoveAll(jobDir)
}

func destroyLeftovers(root, id string) error {
	c, err := libcontainer.Load(root, id)
	if err != nil {
		return nil // no state: nothing left
	}
	if st, err := c.Status(); err == nil && st != libcontainer.Stopped {
		c.Signal(unix.SIGKILL)
		for i := 0; i < 100; i++ {
			if st, err := c.Status(); err != nil || st == libcontainer.Stopped {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := c.Destroy(); err != nil {
		return fmt.Errorf("executor: destroy leftover container %s: %w", id, err)
	}
	return nil
}

// pidRecord identifies a process across PID reuse: "pid starttime".
func pidRecord(pid int) string {
	start, _ := procStart(pid)
	return fmt.Sprintf("%d %d\n", pid, start)
}

// shimAlive reads shim.pid and checks that the same process still runs.
func shimAlive(jobDir string) (pid int, alive bool) {
	data, err := os.ReadFile(filepath.Join(jobDir, pidFile))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return 0, false
	}
	pid, err1 := strconv.Atoi(f[0])
	want, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return 0, false
	}
	got, err := procStart(pid)
	return pid, err == nil && got == want
}

// procStart is field 22 (starttime) of /proc/PID/stat; an error for a zombie
// or a missing process.
func procStart(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// comm may contain spaces and parentheses: parse after the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, errors.New("bad stat")
	}
	if f[0] == "Z" || f[0] == "X" {
		return 0, errors.New("exited")
	}
	return strconv.ParseUint(f[19], 10, 64)
}
