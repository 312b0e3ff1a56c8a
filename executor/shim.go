package executor

import (
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/stockade-hpc/stockade/api"
	"golang.org/x/sys/unix"
)

// readyFDEnv names the descriptor on which the shim tells Launch "ok" or why
// it failed; EOF without a message means the shim died.
const readyFDEnv = "_STOCKADE_SHIM_READY_FD"

// RunShim is the shim's main: the CLI calls it for `stockade shim DIR`. It
// runs the job described by DIR/spec.json to its end and returns the shim's
// exit code (0 once result.json is written).
func RunShim(jobDir string) int {
	// Before anything else: a cancel (SIGTERM) must stop the job, never
	// kill the shim and lose the exit status.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT)
	// SIGHUP is caught and dropped, not ignored: an ignored signal stays
	// ignored across exec, in the job. (SIGPIPE needs nothing: our stdio is
	// a file, and on other descriptors Go returns EPIPE.)
	// The same goes for whatever our ancestors ignored (a shell starting the
	// agent in the background ignores SIGINT and SIGQUIT, say): the job must
	// start with every signal at its default.
	drop := make(chan os.Signal, 1)
	signal.Notify(drop, unix.SIGHUP)
	for sig := unix.Signal(1); sig <= 64; sig++ { // through SIGRTMAX
		switch sig {
		case unix.SIGKILL, unix.SIGSTOP, unix.SIGTERM, unix.SIGINT:
			continue
		case 32, 33:
			// glibc's internal signals, which Go never handles (and make
			// ignores them): reset them directly.
			resetIgnoredSignal(sig)
			continue
		}
		if signal.Ignored(sig) {
			signal.Notify(drop, sig)
		}
	}
	go func() {
		for range drop {
		}
	}()
	log.SetPrefix(fmt.Sprintf("shim[%d] ", os.Getpid()))
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	jobDir, err := filepath.Abs(jobDir)
	if err != nil {
		log.Print(err)
		return 1
	}
	ready := readyPipe()
	if !ownMountNS() {
		// Started by hand: the host-mode rootfs mount must not be made in
		// the caller's mount namespace, so run again in a new one.
		return reexecShim(jobDir, ready)
	}
	sh := &shim{dir: jobDir, ready: ready}
	return sh.run(sigs)
}

func readyPipe() *os.File {
	fd, err := strconv.Atoi(os.Getenv(readyFDEnv))
	os.Unsetenv(readyFDEnv)
	if err != nil || fd < 3 {
		return nil
	}
	// Neither the container nor anything else may keep Launch waiting.
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "ready")
}

// ownMountNS reports whether this process is in a different mount namespace
// than its parent, as Launch arranges.
func ownMountNS() bool {
	self, err1 := os.Readlink("/proc/self/ns/mnt")
	parent, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	return err1 == nil && err2 == nil && self != parent
}

func reexecShim(jobDir string, ready *os.File) int {
	exe, err := os.Executable()
	if err != nil {
		log.Print(err)
		return 1
	}
	cmd := exec.Command(exe, "shim", jobDir)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if ready != nil {
		cmd.ExtraFiles = []*os.File{ready}
		cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Cloneflags: unix.CLONE_NEWNS}
	if err := cmd.Start(); err != nil {
		log.Printf("re-exec in a new mount namespace: %v", err)
		return 1
	}
	return 0
}

type shim struct {
	dir   string
	ready *os.File
	spec  Spec

	c          *libcontainer.Container
	proc       *libcontainer.Process
	start      time.Time
	hostRootfs string // host mode: our rbind of "/", detached at the end
	meter      *meter

	stopState api.JobState // TIMEOUT or CANCELLED once a stop began
	stopWhy   string
}

func (sh *shim) path(name string) string { return filepath.Join(sh.dir, name) }

func (sh *shim) run(sigs chan os.Signal) int {
	unix.Setsid() // fails harmlessly if Launch already made us a session leader
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		log.Printf("set child subreaper: %v", err)
	}
	// A system-wide OOM should kill jobs, not the shim holding their status.
	os.WriteFile("/proc/self/oom_score_adj", []byte("-998"), 0)
	// No fsync for shim.pid (nor spec.json): after a machine crash the shim
	// and its job are gone anyway. result.json is the durable record.
	if err := writeFile(sh.path(pidFile), []byte(pidRecord(os.Getpid())), 0o644, false); err != nil {
		return sh.failStart(fmt.Errorf("write %s: %w", pidFile, err))
	}
	if err := readJSON(sh.path(specFile), &sh.spec); err != nil {
		return sh.failStart(fmt.Errorf("read %s: %w", specFile, err))
	}
	// A Cancel that came before our signal handler existed left a marker.
	if _, err := os.Stat(sh.path(cancelFile)); err == nil {
		now := time.Now()
		code := sh.finish(&Result{State: api.JobCancelled, Start: now, End: now, Reason: "cancelled before start"})
		sh.notifyReady(errors.New("cancelled before start"))
		return code
	}
	if err := sh.startContainer(); err != nil {
		sh.cleanup()
		return sh.failStart(err)
	}
	// The first sample is there before Launch returns, so Inspect always
	// shows a running job's start time.
	sh.meter = newMeter(sh.c, sh.start)
	sh.writeUsage(time.Now(), false)
	sh.notifyReady(nil)
	log.Printf("job %s started, init pid %s", sh.spec.containerID(), pidString(sh.proc))
	return sh.supervise(sigs)
}

func pidString(p *libcontainer.Process) string {
	pid, err := p.Pid()
	if err != nil {
		return "?"
	}
	return strconv.Itoa(pid)
}

// failStart records a job that never ran; the result is written before
// Launch hears of the failure, so Launch finds it.
func (sh *shim) failStart(err error) int {
	log.Printf("start failed: %v", err)
	now := time.Now()
	sh.finish(&Result{State: api.JobFailed, ExitCode: 1, Start: now, End: now, Reason: err.Error()})
	sh.notifyReady(err)
	return 1
}

func (sh *shim) notifyReady(err error) {
	if sh.ready == nil {
		return
	}
	msg := "ok\n"
	if err != nil {
		msg = "error: " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n"
	}
	sh.ready.WriteString(msg) // the launcher may be gone: EPIPE is fine
	sh.ready.Close()
	sh.ready = nil
}

func (sh *shim) finish(r *Result) int {
	if err := writeJSONAtomic(sh.path(resultFile), r); err != nil {
		log.Printf("write %s: %v", resultFile, err)
		return 1
	}
	log.Printf("job %s: %s %s", sh.spec.containerID(), r.State, r.Reason)
	return 0
}

func (sh *shim) startContainer() error {
	s := &sh.spec
	if err := s.validate(); err != nil {
		return fmt.Errorf("invalid job spec: %w", err)
	}
	if !seccomp.Enabled {
		return errors.New("this stockade binary was built without seccomp support (build with -tags seccomp)")
	}
	stdout, stderr, err := openOutputs(s)
	if err != nil {
		return err
	}
	defer stdout.Close()
	defer stderr.Close()

	script := sh.path(scriptFile)
	os.Remove(script)
	if err := os.WriteFile(script, []byte(s.Script), 0o500); err != nil {
		return fmt.Errorf("write job script: %w", err)
	}
	// Owned by the user so that the ro bind is readable and executable by
	// the job and by nobody else.
	if err := os.Chown(script, int(s.UID), int(s.GID)); err != nil {
		return fmt.Errorf("chown job script: %w", err)
	}

	cs := &containerSetup{ScriptSource: script, Env: s.Env}
	cs.Hostname, _ = os.Hostname()
	if s.Image == "" {
		rootfs, err := sh.mountHostRootfs()
		if err != nil {
			return err
		}
		cs.Rootfs, cs.Cwd = rootfs, hostCwd(s.WorkDir, s.UID, s.GID, s.Groups)
	} else {
		ci, err := prepareImage(s.Image, s.ImageCacheDir)
		if err != nil {
			return err
		}
		cs.Rootfs, cs.Image = ci.Rootfs, true
		cs.Cwd = imageCwd(ci.Rootfs, s.WorkDir)
		cs.Env = mergeImageEnv(ci.Config.Env, s.Env)
	}

	sp, err := ociSpec(s, cs)
	if err != nil {
		return err
	}
	cfg, err := libcontainerConfig(s, sp)
	if err != nil {
		return fmt.Errorf("container config: %w", err)
	}
	c, err := libcontainer.Create(sh.path(stateDir), s.containerID(), cfg)
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	sh.c = c
	groups := make([]int, len(s.Groups))
	for i, g := range s.Groups {
		groups[i] = int(g)
	}
	p := &libcontainer.Process{
		Args:             sp.Process.Args,
		Env:              cs.Env,
		UID:              int(s.UID),
		GID:              int(s.GID),
		AdditionalGroups: groups,
		Cwd:              cs.Cwd,
		Init:             true,
	}
	if ownedBy(stdout, s.UID) && ownedBy(stderr, s.UID) {
		p.Stdout, p.Stderr = stdout, stderr
	} else {
		// runc chowns the init's stdio to the job's user: handing it a file
		// the user only may write (group-writable log, someone else's
		// file) would give the user that file. Pass such files as fds 3
		// and 4 and let a shell move them onto 1 and 2 instead.
		p.ExtraFiles = []*os.File{stdout, stderr}
		p.Args = append([]string{"/bin/sh", "-c", `exec 1>&3 2>&4 3>&- 4>&-; exec "$@"`, "sh"}, p.Args...)
	}
	if err := c.Run(p); err != nil {
		return fmt.Errorf("start job: %w", err)
	}
	sh.proc = p
	sh.start = time.Now()
	return nil
}

// openOutputs opens the job's stdout and stderr as the user. The returned
// files are distinct *os.File values (possibly the same open file) so that
// both can be closed.
func openOutputs(s *Spec) (stdout, stderr *os.File, err error) {
	flag := os.O_WRONLY | os.O_CREATE | unix.O_NOCTTY | unix.O_CLOEXEC
	if s.Append {
		flag |= os.O_APPEND
	} else {
		flag |= os.O_TRUNC
	}
	open := func(what, path string) (*os.File, error) {
		if path == "" {
			return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		}
		f, err := openAsUser(path, flag, 0o644, s.UID, s.GID, s.Groups)
		if err != nil {
			return nil, fmt.Errorf("cannot open %s file as user %s (uid %d): %w", what, userName(s), s.UID, err)
		}
		return f, nil
	}
	if stdout, err = open("output", s.Stdout); err != nil {
		return nil, nil, err
	}
	if s.Stderr == "" || s.Stderr == s.Stdout {
		// One open file description: both streams share the offset.
		fd, err := unix.FcntlInt(stdout.Fd(), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			stdout.Close()
			return nil, nil, err
		}
		return stdout, os.NewFile(uintptr(fd), stdout.Name()), nil
	}
	if stderr, err = open("error", s.Stderr); err != nil {
		stdout.Close()
		return nil, nil, err
	}
	return stdout, stderr, nil
}

func userName(s *Spec) string {
	if s.User != "" {
		return s.User
	}
	return strconv.Itoa(int(s.UID))
}

// ownedBy reports whether runc's stdio chown would be a no-op for f.
func ownedBy(f *os.File, uid uint32) bool {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == unix.Mkdev(1, 3) {
		return true // /dev/null is never chowned
	}
	return st.Uid == uid
}

// mountHostRootfs makes <jobDir>/rootfs an rbind of the host's "/". The
// shim runs in its own mount namespace (see Launch), so the mount exists
// only there and in the container copied from it, and dies with the shim.
// runc cannot use "/" itself as the rootfs: pivot_root and MS_MOVE both
// refuse the current root.
func (sh *shim) mountHostRootfs() (string, error) {
	// Mounts made by the host later still propagate in; ours never go out.
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return "", fmt.Errorf("make mounts slave: %w", err)
	}
	dir := sh.path(rootfsDir)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	if err := unix.Mount("/", dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "", fmt.Errorf("bind host root: %w", err)
	}
	sh.hostRootfs = dir
	return dir, nil
}

// privateMounts are replaced inside the container, so host directories
// below them are not visible there.
var privateMounts = []string{"/tmp", "/dev", "/proc", "/sys"}

// hostCwd is the working directory on the host file system. Slurm falls
// back to /tmp when the requested one is unusable: missing, not a directory
// the user may enter, or hidden by one of the container's private mounts.
func hostCwd(dir string, uid, gid uint32, groups []uint32) string {
	if dir == "" || !filepath.IsAbs(dir) {
		return "/tmp"
	}
	dir = filepath.Clean(dir)
	for _, m := range privateMounts {
		// A directory below /tmp is carried into the private /tmp (see
		// jobMounts): users who work in /tmp/scratch keep working there.
		if dir == m || (strings.HasPrefix(dir, m+"/") && m != "/tmp") {
			return "/tmp"
		}
	}
	err := asUser(uid, gid, groups, func() error {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return unix.ENOTDIR
		}
		// AT_EACCESS: check with the fsuid set by asUser, not the real uid.
		return unix.Faccessat(unix.AT_FDCWD, dir, unix.X_OK, unix.AT_EACCESS)
	})
	if err != nil {
		return "/tmp"
	}
	return dir
}

// imageCwd is dir when it exists in the image, else "/".
func imageCwd(rootfs, dir string) string {
	if dir == "" || !filepath.IsAbs(dir) {
		return "/"
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return "/"
	}
	defer root.Close()
	rel := strings.TrimPrefix(filepath.Clean(dir), "/")
	if rel == "" {
		return "/"
	}
	if fi, err := root.Stat(rel); err != nil || !fi.IsDir() {
		return "/"
	}
	return filepath.Clean(dir)
}

// mergeImageEnv is the job's environment plus the image's variables it does
// not set; the image's PATH wins, since host directories mean nothing there.
func mergeImageEnv(image, job []string) []string {
	keys := map[string]bool{}
	var out []string
	imagePath := ""
	for _, kv := range image {
		if strings.HasPrefix(kv, "PATH=") {
			imagePath = kv
		}
	}
	for _, kv := range job {
		k, _, _ := strings.Cut(kv, "=")
		if k == "PATH" && imagePath != "" {
			continue
		}
		keys[k] = true
		out = append(out, kv)
	}
	for _, kv := range image {
		k, _, _ := strings.Cut(kv, "=")
		if !keys[k] {
			keys[k] = true
			out = append(out, kv)
		}
	}
	return out
}

type waitResult struct {
	state *os.ProcessState
	err   error
}

// supervise runs until the job's init exits, enforcing the time limit and
// cancellation and sampling usage, then records the result.
func (sh *shim) supervise(sigs chan os.Signal) int {
	s := &sh.spec
	done := make(chan waitResult, 1)
	go func() {
		st, err := sh.proc.Wait()
		done <- waitResult{st, err}
	}()
	oom, err := sh.c.NotifyOOM()
	if err != nil {
		log.Printf("oom notification unavailable: %v", err)
	}
	lastWrite := time.Now()

	var limitC, graceC, warnC <-chan time.Time
	if s.TimeLimit > 0 {
		t := time.NewTimer(time.Until(sh.start.Add(s.TimeLimit)))
		defer t.Stop()
		limitC = t.C
		if s.WarnSignal > 0 {
			w := time.NewTimer(time.Until(sh.start.Add(s.TimeLimit - s.WarnBefore)))
			defer w.Stop()
			warnC = w.C
		}
	}
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	// The first stop sends SIGTERM and sets the SIGKILL; a later one may
	// only bring the SIGKILL forward (a cancel during a preemption grace).
	var killAt time.Time
	stop := func(state api.JobState, why string, grace time.Duration) {
		at := time.Now().Add(grace)
		switch {
		case sh.stopState == "":
			sh.stopState, sh.stopWhy = state, why
			log.Printf("%s: SIGTERM to all processes, SIGKILL in %s", why, grace)
			sh.signalAll(unix.SIGTERM)
		case at.Before(killAt):
			log.Printf("%s: SIGKILL in %s", why, grace)
		default:
			return
		}
		killAt = at
		graceC = time.After(grace)
	}
	for {
		select {
		case w := <-done:
			return sh.exited(w)
		case <-limitC:
			stop(api.JobTimeout, fmt.Sprintf("time limit of %s reached", s.TimeLimit), s.killGrace())
		case <-warnC:
			// sbatch --signal: once, and not after a stop began.
			if sh.stopState == "" {
				sig := unix.Signal(s.WarnSignal)
				if s.WarnBatchOnly {
					log.Printf("%s to the batch script, %s before the time limit", unix.SignalName(sig), s.WarnBefore)
					if err := sh.proc.Signal(sig); err != nil {
						log.Printf("signal the batch script: %v", err)
					}
				} else {
					log.Printf("%s to all processes, %s before the time limit", unix.SignalName(sig), s.WarnBefore)
					sh.signalAll(sig)
				}
			}
		case sig := <-sigs:
			stop(api.JobCancelled, fmt.Sprintf("cancelled (%s)", sig), sh.cancelGrace())
		case <-graceC:
			log.Printf("grace period over: SIGKILL")
			sh.kill()
		case _, ok := <-oom:
			if !ok {
				oom = nil
				continue
			}
			log.Printf("memory cgroup reports an out-of-memory condition")
		case now := <-tick.C:
			sh.meter.sample(now)
			if now.Sub(lastWrite) >= usageWriteEvery {
				sh.writeUsage(now, true)
				lastWrite = now
			}
		}
	}
}

// cancelGrace is the grace between SIGTERM and SIGKILL a cancel asks
// for: the one a Stop wrote in the cancel marker, else the spec's.
func (sh *shim) cancelGrace() time.Duration {
	if b, err := os.ReadFile(sh.path(cancelFile)); err == nil {
		if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil && d >= 0 {
			return d
		}
	}
	return sh.spec.killGrace()
}

func (sh *shim) writeUsage(now time.Time, durable bool) {
	u := sh.meter.sample(now)
	if err := writeJSON(sh.path(usageFile), usageRecord{Start: sh.start, Usage: u}, durable); err != nil {
		log.Printf("write %s: %v", usageFile, err)
	}
}

func (sh *shim) signalAll(sig unix.Signal) {
	pids, err := sh.c.Processes()
	if err != nil {
		log.Printf("list processes: %v", err)
	}
	for _, pid := range pids {
		unix.Kill(pid, sig)
	}
}

func (sh *shim) kill() {
	// SIGKILL to the init of a pid namespace kills every process in it.
	if err := sh.c.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
		log.Printf("kill init: %v", err)
	}
	sh.signalAll(unix.SIGKILL)
}

// exited meters the finished job, destroys the container and writes the
// result.
func (sh *shim) exited(w waitResult) int {
	end := time.Now()
	s := &sh.spec
	// Stats before Destroy: the counters go away with the cgroup.
	u := sh.meter.sample(end)
	r := &Result{Start: sh.start, End: end}
	signaled := false
	if w.state != nil {
		if ru, ok := w.state.SysUsage().(*syscall.Rusage); ok && ru != nil {
			u.MaxRSSB = max(u.MaxRSSB, uint64(ru.Maxrss)*1024)
		}
		if ws, ok := w.state.Sys().(syscall.WaitStatus); ok {
			switch {
			case ws.Exited():
				r.ExitCode = ws.ExitStatus()
			case ws.Signaled():
				r.ExitSignal = int(ws.Signal())
				signaled = true
			}
		}
	}
	r.Usage = u
	switch {
	case w.state == nil:
		r.State, r.ExitCode = api.JobFailed, 1
		r.Reason = fmt.Sprintf("lost the job's exit status: %v", w.err)
	case sh.stopState != "":
		r.State, r.Reason = sh.stopState, sh.stopWhy
	case u.OOMKills > 0:
		r.State = api.JobOutOfMemory
		r.Reason = fmt.Sprintf("%d process(es) killed by the OOM killer (memory limit %d bytes)", u.OOMKills, s.MemoryBytes)
	case signaled:
		r.State, r.Reason = api.JobFailed, fmt.Sprintf("killed by signal %d (%s)", r.ExitSignal, unix.SignalName(syscall.Signal(r.ExitSignal)))
	case r.ExitCode != 0:
		r.State, r.Reason = api.JobFailed, fmt.Sprintf("exit code %d", r.ExitCode)
	default:
		r.State = api.JobCompleted
	}
	sh.cleanup()
	return sh.finish(r)
}

// cleanup destroys the container, reaps whatever was reparented to us and
// detaches the host rootfs mount.
func (sh *shim) cleanup() {
	if sh.c != nil {
		if err := sh.c.Destroy(); err != nil {
			log.Printf("destroy container: %v", err)
		}
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			break
		}
	}
	if sh.hostRootfs != "" {
		if err := unix.Unmount(sh.hostRootfs, unix.MNT_DETACH); err != nil {
			log.Printf("unmount %s: %v", sh.hostRootfs, err)
		}
	}
}

// kernelSigaction is the kernel's struct sigaction on x86-64 and arm64.
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

// resetIgnoredSignal sets sig back to its default action if it is ignored.
func resetIgnoredSignal(sig unix.Signal) {
	var old kernelSigaction
	if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0, uintptr(unsafe.Pointer(&old)), 8, 0, 0); e != 0 {
		return
	}
	if old.handler != 1 { // SIG_IGN
		return
	}
	def := kernelSigaction{}
	unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&def)), 0, 8, 0, 0)
}
