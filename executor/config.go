package executor

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	cpuPeriod = 100000 // µs: 100 ms
	// blkio throttle rate that never throttles; the rule only exists to make
	// the kernel keep the throttle.io_service_bytes counters.
	unlimitedBPS = 1 << 50
)

// containerSetup is what the shim resolved before building the config.
type containerSetup struct {
	Rootfs       string   // host mode: the shim's rbind of "/"; image: the unpacked rootfs
	Image        bool     // rootfs is an image: read-only, fresh sysfs
	Cwd          string   // inside the container
	Env          []string // final environment
	ScriptSource string   // host path of the script file bind-mounted at ScriptPath
	Hostname     string
}

// ociSpec builds the runtime spec of a job container.
func ociSpec(s *Spec, cs *containerSetup) (*specs.Spec, error) {
	groups := make([]uint32, len(s.Groups))
	copy(groups, s.Groups)
	zero := 0
	sp := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: cs.Rootfs, Readonly: cs.Image},
		Hostname: cs.Hostname,
		Process: &specs.Process{
			User: specs.User{UID: s.UID, GID: s.GID, AdditionalGids: groups},
			Args: jobArgs(s),
			Env:  cs.Env,
			Cwd:  cs.Cwd,
			// Non-nil and empty: every capability set is cleared. A nil set
			// would leave root's capabilities untouched.
			Capabilities:    &specs.LinuxCapabilities{},
			NoNewPrivileges: true,
			// The shim protects itself from the OOM killer; the job must not
			// inherit that.
			OOMScoreAdj: &zero,
		},
		Mounts: jobMounts(s, cs),
		Linux: &specs.Linux{
			CgroupsPath: s.cgroupPath(),
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
			},
			// Host mounts made later (autofs homes, scratch) still appear in
			// the job, and nothing the job mounts reaches the host.
			RootfsPropagation: "rslave",
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
				"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
				"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
			},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	if s.NetNSPath != "" {
		sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: s.NetNSPath})
	}
	res, devs, err := jobResources(s)
	if err != nil {
		return nil, err
	}
	sp.Linux.Resources = res
	sp.Linux.Devices = devs

	// Docker's default profile, filtered for the (empty) capability set.
	sc, err := seccomp.GetDefaultProfile(sp)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	sp.Linux.Seccomp = sc
	return sp, nil
}

// libcontainerConfig converts the runtime spec.
func libcontainerConfig(s *Spec, sp *specs.Spec) (*configs.Config, error) {
	return specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName: s.containerID(),
		Spec:       sp,
	})
}

// jobArgs is the container's argv: the script itself (its #! line picks the
// interpreter, as in Slurm), or /bin/sh for a script without one.
func jobArgs(s *Spec) []string {
	args := []string{ScriptPath}
	if !strings.HasPrefix(s.Script, "#!") {
		args = []string{"/bin/sh", ScriptPath}
	}
	return append(args, s.Argv...)
}

func jobMounts(s *Spec, cs *containerSetup) []specs.Mount {
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		// Unsized tmpfs: its pages are charged to the job's memory cgroup.
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "nodev", "noexec", "mode=1777"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
	}
	if cs.Image || s.NetNSPath != "" {
		// sysfs shows the network devices of the mounter's namespace.
		ms = append(ms, specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}})
	} else {
		// A fresh sysfs cannot be mounted over the host's: sharing the
		// network namespace means the same superblock on the same mount
		// point, which the kernel refuses (EBUSY). A recursive read-only
		// bind gives the same view, /sys/fs/cgroup included.
		ms = append(ms, specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "rro", "nosuid", "noexec", "nodev"}})
	}
	ms = append(ms,
		specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		specs.Mount{Destination: ScriptPath, Type: "bind", Source: cs.ScriptSource, Options: []string{"bind", "ro", "nosuid", "nodev"}},
	)
	if !cs.Image && strings.HasPrefix(cs.Cwd, "/tmp/") {
		// The job's own working directory stays visible through the
		// private /tmp; the rest of the host's /tmp does not.
		ms = append(ms, specs.Mount{Destination: cs.Cwd, Type: "bind", Source: cs.Cwd, Options: []string{"rbind", "nosuid", "nodev"}})
	}
	return ms
}

func jobResources(s *Spec) (*specs.LinuxResources, []specs.LinuxDevice, error) {
	res := &specs.LinuxResources{
		// Deny every device, then allow the defaults (appended by specconv)
		// and the GPUs.
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
	}
	var devs []specs.LinuxDevice
	for _, p := range s.GPUDevices {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return nil, nil, fmt.Errorf("gpu device %s: %w", p, err)
		}
		typ := ""
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			typ = "c"
		case unix.S_IFBLK:
			typ = "b"
		default:
			return nil, nil, fmt.Errorf("gpu device %s is not a device node", p)
		}
		major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		mode := os.FileMode(0o666)
		uid, gid := uint32(0), uint32(0)
		devs = append(devs, specs.LinuxDevice{Path: p, Type: typ, Major: major, Minor: minor, FileMode: &mode, UID: &uid, GID: &gid})
		res.Devices = append(res.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &major, Minor: &minor, Access: "rwm"})
	}
	if s.CPUs > 0 || s.CPUSet != "" {
		res.CPU = &specs.LinuxCPU{Cpus: s.CPUSet}
		if s.CPUs > 0 {
			quota, period := int64(s.CPUs)*cpuPeriod, uint64(cpuPeriod)
			res.CPU.Quota, res.CPU.Period = &quota, &period
		}
	}
	if s.MemoryBytes > 0 {
		limit := s.MemoryBytes
		res.Memory = &specs.LinuxMemory{Limit: &limit}
		// memsw = memory: swapping cannot hide an out-of-memory job.
		if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
			swap := limit
			res.Memory.Swap = &swap
		}
	}
	if s.PidsLimit > 0 {
		limit := s.PidsLimit
		res.Pids = &specs.LinuxPids{Limit: &limit}
	}
	if bio := blkioMeteringRules(); bio != nil {
		res.BlockIO = bio
	}
	return res, devs, nil
}

// blkioMeteringRules returns never-binding throttle rules for every block
// device with media: cgroup v1 only counts a device's I/O in
// blkio.throttle.io_service_bytes once a throttle rule exists for it.
func blkioMeteringRules() *specs.LinuxBlockIO {
	ents, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil
	}
	bio := &specs.LinuxBlockIO{}
	for _, e := range ents {
		dir := filepath.Join("/sys/block", e.Name())
		if size, err := os.ReadFile(filepath.Join(dir, "size")); err != nil || strings.TrimSpace(string(size)) == "0" {
			continue // no media (unattached loop device, empty drive)
		}
		dev, err := os.ReadFile(filepath.Join(dir, "dev"))
		if err != nil {
			continue
		}
		maj, min, ok := strings.Cut(strings.TrimSpace(string(dev)), ":")
		if !ok {
			continue
		}
		major, err1 := strconv.ParseInt(maj, 10, 64)
		minor, err2 := strconv.ParseInt(min, 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		d := specs.LinuxThrottleDevice{Rate: unlimitedBPS}
		d.Major, d.Minor = major, minor
		bio.ThrottleReadBpsDevice = append(bio.ThrottleReadBpsDevice, d)
		bio.ThrottleWriteBpsDevice = append(bio.ThrottleWriteBpsDevice, d)
	}
	if len(bio.ThrottleReadBpsDevice) == 0 {
		return nil
	}
	return bio
}
