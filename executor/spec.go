package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// DefaultKillGrace is the SIGTERM→SIGKILL grace used when Spec.KillGrace is 0.
const DefaultKillGrace = 10 * time.Second

// ScriptPath is where the job script appears inside every container. It lives
// in the container's private /dev tmpfs so that nothing is ever created on the
// host's (possibly read-only) root file system or in an image's rootfs.
const ScriptPath = "/dev/stockade/job-script"

// Usage is sampled this often by the shim for peaks (RSS, pids); usage.json
// is rewritten every usageWriteEvery.
const (
	sampleEvery     = time.Second
	usageWriteEvery = 10 * time.Second
)

// Files in a job directory.
const (
	specFile   = "spec.json"
	resultFile = "result.json"
	usageFile  = "usage.json"
	pidFile    = "shim.pid"
	logFile    = "shim.log"
	cancelFile = "cancel"
	scriptFile = "job-script"
	rootfsDir  = "rootfs" // host mode: mount point of the rbind of "/" (shim's namespace only)
	stateDir   = "lc"     // libcontainer state root
)

// Spec is everything needed to run one job attempt; stored as <jobDir>/spec.json.
type Spec struct {
	JobID   uint64   `json:"job_id"`
	Attempt int      `json:"attempt"`
	User    string   `json:"user"`
	UID     uint32   `json:"uid"`
	GID     uint32   `json:"gid"`
	Groups  []uint32 `json:"groups,omitempty"` // supplementary
	// Script is the script content; it is bind-mounted read-only at
	// ScriptPath and executed with Argv. A script without "#!" runs under
	// /bin/sh.
	Script string   `json:"script"`
	Argv   []string `json:"argv,omitempty"`
	Env    []string `json:"env,omitempty"` // full environment, K=V
	// WorkDir is the job's working directory. On the host file system a
	// directory that is missing, or hidden by the container's private /tmp,
	// /dev, /proc or /sys, falls back to /tmp as Slurm does; in an image a
	// missing one falls back to "/".
	WorkDir string `json:"work_dir,omitempty"`
	// Stdout and Stderr are absolute host paths opened with the user's file
	// system identity. Stdout "" is /dev/null; Stderr "" is Stdout.
	Stdout string `json:"stdout,omitempty"`
	Stderr string `json:"stderr,omitempty"`
	Append bool   `json:"append,omitempty"` // --open-mode=append
	// CPUs sets the CFS quota to CPUs * 100ms per 100ms (0 = no limit).
	CPUs        int      `json:"cpus,omitempty"`
	CPUSet      string   `json:"cpuset,omitempty"`
	MemoryBytes int64    `json:"memory_bytes,omitempty"` // 0 = no limit; swap is limited to the same total
	PidsLimit   int64    `json:"pids_limit,omitempty"`   // 0 = no limit
	GPUDevices  []string `json:"gpu_devices,omitempty"`  // device paths to allow, e.g. /dev/nvidia0
	// TimeLimit is counted from the container's start (0 = none).
	TimeLimit time.Duration `json:"time_limit,omitempty"`
	// WarnSignal is sent WarnBefore the time limit (sbatch --signal): to
	// every process of the job, or with WarnBatchOnly to the batch
	// script's alone. 0 = none; ignored without a time limit.
	WarnSignal    int           `json:"warn_signal,omitempty"`
	WarnBefore    time.Duration `json:"warn_before,omitempty"`
	WarnBatchOnly bool          `json:"warn_batch_only,omitempty"`
	// KillGrace is the SIGTERM→SIGKILL grace of a timeout or cancel
	// (0 = DefaultKillGrace).
	KillGrace time.Duration `json:"kill_grace,omitempty"`
	// Image is "" for the host file system, else an OCI image layout
	// directory or an image tarball (OCI archive or docker save).
	Image string `json:"image,omitempty"`
	// ImageCacheDir holds unpacked images, one directory per digest.
	ImageCacheDir string `json:"image_cache_dir,omitempty"`
	// NetNSPath is a network namespace to join; "" shares the host's.
	NetNSPath string `json:"netns_path,omitempty"`
	// CgroupParent is the cgroup below which the job's job_<id>_<attempt>
	// is made in every v1 controller; "" is DefaultCgroupParent. Agents
	// sharing a machine (a demo cluster) need distinct parents: a
	// multi-node job has the same cgroup name on each of its nodes.
	CgroupParent string `json:"cgroup_parent,omitempty"`
}

// DefaultCgroupParent is the cgroup parent when Spec.CgroupParent is "".
const DefaultCgroupParent = "/stockade"

func (s *Spec) cgroupPath() string {
	parent := s.CgroupParent
	if parent == "" {
		parent = DefaultCgroupParent
	}
	return path.Join("/", parent, s.containerID())
}

// Result is how a job attempt ended; stored as <jobDir>/result.json.
type Result struct {
	State      api.JobState `json:"state"`
	ExitCode   int          `json:"exit_code"`
	ExitSignal int          `json:"exit_signal"`
	Usage      api.Usage    `json:"usage"`
	Start      time.Time    `json:"start,omitzero"`
	End        time.Time    `json:"end,omitzero"`
	Reason     string       `json:"reason,omitempty"`
}

// Status is what Inspect sees of a job directory.
type Status struct {
	Running bool
	ShimPID int
	Start   time.Time
	Usage   api.Usage // latest periodic sample
	Result  *Result   // non-nil once finished
}

// usageRecord is the content of usage.json.
type usageRecord struct {
	Start time.Time `json:"start"`
	Usage api.Usage `json:"usage"`
}

func (s *Spec) validate() error {
	switch {
	case s.Script == "":
		return errors.New("empty script")
	case s.Stdout != "" && !filepath.IsAbs(s.Stdout):
		return fmt.Errorf("stdout path %q is not absolute", s.Stdout)
	case s.Stderr != "" && !filepath.IsAbs(s.Stderr):
		return fmt.Errorf("stderr path %q is not absolute", s.Stderr)
	case s.Image != "" && s.ImageCacheDir == "":
		return errors.New("image given without an image cache directory")
	case strings.Contains(s.CgroupParent, ".."):
		return fmt.Errorf("cgroup parent %q contains ..", s.CgroupParent)
	case s.CPUs < 0 || s.MemoryBytes < 0 || s.PidsLimit < 0 || s.TimeLimit < 0 || s.KillGrace < 0 || s.WarnBefore < 0:
		return errors.New("negative limit")
	case s.WarnSignal < 0 || s.WarnSignal > 64:
		return fmt.Errorf("warn signal %d is not a signal", s.WarnSignal)
	}
	for _, d := range s.GPUDevices {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("device path %q is not absolute", d)
		}
	}
	return nil
}

func (s *Spec) containerID() string {
	return fmt.Sprintf("job_%d_%d", s.JobID, s.Attempt)
}

func (s *Spec) killGrace() time.Duration {
	if s.KillGrace > 0 {
		return s.KillGrace
	}
	return DefaultKillGrace
}

// writeFileAtomic writes data to path through a temporary file, fsync and
// rename, then syncs the directory, so readers see the old or the new
// content and a crash never leaves a torn file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFile(path, data, perm, true)
}

// writeFile is writeFileAtomic; without durable it skips the fsyncs (the
// rename still makes the update atomic for readers).
func writeFile(path string, data []byte, perm os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if !durable {
		return nil
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func writeJSONAtomic(path string, v any) error {
	return writeJSON(path, v, true)
}

func writeJSON(path string, v any, durable bool) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(data, '\n'), 0o644, durable)
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}
