package executor

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/stockade-hpc/stockade/api"
)

// meter turns the container's cgroup counters into api.Usage.
//
//   - CPUTimeNs: cpuacct.usage; UserTimeNs/SystemTimeNs: cpuacct.stat
//     (tick resolution, so they need not add up exactly to CPUTimeNs).
//   - MaxMemoryB: memory.max_usage_in_bytes (includes page cache).
//   - MaxRSSB: the larger of the peak memory.stat total_rss (anonymous +
//     shmem of the whole cgroup) seen in the once-a-second samples and the
//     largest single process's peak RSS (getrusage of the job's init and
//     what it reaped). A lower bound: a spike between samples in a process
//     that was not reaped by the job's init is missed.
//   - PidsPeak: pids.peak when the kernel has it and the job went past the
//     count it had when it started, else the sampled peak of pids.current.
//     pids.peak counts tasks (threads) and also saw the container runtime's
//     multi-threaded init before it exec'd the job; that setup peak (about
//     7) says nothing about the job, so it is not reported, and neither is
//     the task count of the sample taken right at the start.
//   - BlockReadB/BlockWriteB: blkio.throttle.io_service_bytes_recursive
//     (counted because of the metering rules in blkioMeteringRules). Buffered
//     writes flushed later by the kernel's writeback are not charged to the
//     job under cgroup v1.
//   - OOMKills: oom_kill from memory.oom_control.
type meter struct {
	c         *libcontainer.Container
	paths     map[string]string // controller → cgroup directory
	start     time.Time
	peakRSS   uint64
	peakPids  uint64
	setupPeak uint64 // pids.peak when the job started
	sampled   bool   // the first sample's task count is still the runtime's init
	last      api.Usage
}

func newMeter(c *libcontainer.Container, start time.Time) *meter {
	m := &meter{c: c, start: start}
	if st, err := c.State(); err == nil {
		m.paths = st.CgroupPaths
	}
	if p := m.paths["pids"]; p != "" {
		m.setupPeak, _ = readUint(filepath.Join(p, "pids.peak"))
	}
	return m
}

// sample reads the counters now. Errors of single counters leave them at
// their last value: a sample is best effort, the cgroup may be going away.
func (m *meter) sample(now time.Time) api.Usage {
	u := m.last
	if st, err := m.c.Stats(); err == nil && st.CgroupStats != nil {
		cs := st.CgroupStats
		u.CPUTimeNs = cs.CpuStats.CpuUsage.TotalUsage
		u.UserTimeNs = cs.CpuStats.CpuUsage.UsageInUsermode
		u.SystemTimeNs = cs.CpuStats.CpuUsage.UsageInKernelmode
		u.MaxMemoryB = max(u.MaxMemoryB, cs.MemoryStats.Usage.MaxUsage)
		m.peakRSS = max(m.peakRSS, cs.MemoryStats.Stats["total_rss"])
		if m.sampled {
			m.peakPids = max(m.peakPids, cs.PidsStats.Current)
		}
		m.sampled = true
	}
	u.MaxRSSB = max(u.MaxRSSB, m.peakRSS)
	u.PidsPeak = max(u.PidsPeak, m.peakPids, 1) // the job's init, at least
	if p := m.paths["pids"]; p != "" {
		if v, err := readUint(filepath.Join(p, "pids.peak")); err == nil && v > m.setupPeak {
			u.PidsPeak = max(u.PidsPeak, v)
		}
	}
	if p := m.paths["blkio"]; p != "" {
		if r, w, err := blkioBytes(filepath.Join(p, "blkio.throttle.io_service_bytes_recursive")); err == nil {
			u.BlockReadB, u.BlockWriteB = max(u.BlockReadB, r), max(u.BlockWriteB, w)
		}
	}
	if n, err := m.oomKills(); err == nil {
		u.OOMKills = n
	}
	if !m.start.IsZero() && now.After(m.start) {
		u.WallTimeNs = uint64(now.Sub(m.start))
	}
	u.SampledAtUnix = now.Unix()
	m.last = u
	return u
}

func (m *meter) oomKills() (uint64, error) {
	p := m.paths["memory"]
	if p == "" {
		return 0, os.ErrNotExist
	}
	return oomKillCount(filepath.Join(p, "memory.oom_control"))
}

func oomKillCount(file string) (uint64, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok && k == "oom_kill" {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, nil
}

func readUint(file string) (uint64, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
}

// blkioBytes sums the Read and Write lines of a blkio io_service_bytes file
// ("MAJ:MIN Read N").
func blkioBytes(file string) (read, write uint64, err error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			continue
		}
		n, err := strconv.ParseUint(fields[2], 10, 64)
		if err != nil {
			continue
		}
		switch fields[1] {
		case "Read":
			read += n
		case "Write":
			write += n
		}
	}
	return read, write, sc.Err()
}
