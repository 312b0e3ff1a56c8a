package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Inventory is what the node offers to jobs.
type Inventory struct {
	CPUs     int
	MemoryMB int64
	GPUs     int
	Features []string
	// CPUIDs are the CPUs jobs may be pinned to (empty: no pinning).
	CPUIDs []int
	// GPUDevices are the /dev/nvidiaN device paths, by index.
	GPUDevices []string
}

// memReserve is the memory kept back for the OS, the agent and the job
// shims when --memory is not given: 5% of RAM, at least 256 MiB and at
// most 4 GiB.
func memReserve(totalMB int64) int64 {
	return min(max(totalMB/20, 256), 4096)
}

// parseMemTotal reads MemTotal (kB) from /proc/meminfo content, in MiB.
func parseMemTotal(meminfo []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("meminfo: %w", err)
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("meminfo: no MemTotal line")
}

// gpuDevices lists /dev/nvidiaN devices under devDir in index order.
func gpuDevices(devDir string) []string {
	ents, err := os.ReadDir(devDir)
	if err != nil {
		return nil
	}
	type dev struct {
		n    int
		path string
	}
	var ds []dev
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), "nvidia")
		if !ok || rest == "" {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < 0 {
			continue
		}
		ds = append(ds, dev{n, filepath.Join(devDir, e.Name())})
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].n < ds[j].n })
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.path
	}
	return out
}

// gpuControlDevices are the shared devices every CUDA process needs besides
// its own /dev/nvidiaN.
func gpuControlDevices(devDir string) []string {
	var out []string
	for _, n := range []string{"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"} {
		p := filepath.Join(devDir, n)
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// affinityCPUs is the agent's CPU affinity: the CPUs of its cpuset.
func affinityCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var ids []int
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			ids = append(ids, i)
		}
	}
	return ids
}

// detectInventory fills what opts leaves zero from the machine. Jobs are
// pinned to CPUs only when the agent offers exactly the CPUs it may run
// on: a --cpus that differs says the node is shared or oversubscribed
// (several agents on one host, say), and the agent cannot know which CPUs
// are its own, so jobs get CPU quotas only.
func detectInventory(opts Options) (Inventory, error) {
	inv := Inventory{CPUs: opts.CPUs, MemoryMB: opts.MemoryMB, GPUs: opts.GPUs, Features: opts.Features}
	ids := affinityCPUs()
	if inv.CPUs <= 0 {
		inv.CPUs = len(ids)
		if inv.CPUs == 0 {
			inv.CPUs = runtime.NumCPU()
		}
	}
	if inv.CPUs == len(ids) {
		inv.CPUIDs = ids
	}
	if inv.MemoryMB <= 0 {
		b, err := os.ReadFile("/proc/meminfo")
		if err != nil {
			return inv, fmt.Errorf("detect memory (give --memory): %w", err)
		}
		total, err := parseMemTotal(b)
		if err != nil {
			return inv, fmt.Errorf("detect memory (give --memory): %w", err)
		}
		inv.MemoryMB = max(total-memReserve(total), 1)
	}
	inv.GPUDevices = gpuDevices("/dev")
	if inv.GPUs <= 0 {
		inv.GPUs = len(inv.GPUDevices)
	}
	return inv, nil
}

// bootTime is the kernel's boot time from /proc/stat (zero if unknown).
func bootTime() time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				return time.Unix(s, 0)
			}
		}
	}
	return time.Time{}
}
