package scheduler

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/stockade-hpc/stockade/api"
)

// ValidateSpec rejects at submit time what could never run, with a
// one-line error naming the offending option. Resource checks use only
// nodes that have registered (a configured node in state UNKNOWN with no
// inventory says nothing about its hardware); when no node of the partition
// has registered yet, resources are accepted so a fresh cluster can queue
// work before its agents come up.
func ValidateSpec(st State, spec *api.JobSpec) error {
	if spec == nil {
		return errors.New("job: empty specification")
	}
	var pt *api.Partition
	if spec.Partition == "" {
		if pt = DefaultPartition(st); pt == nil {
			return errors.New("--partition: no partition given and no default partition is configured")
		}
	} else if pt = st.Partition(spec.Partition); pt == nil {
		return fmt.Errorf("--partition: invalid partition specified: %s", spec.Partition)
	}
	for _, c := range []struct {
		flag string
		v    int64
	}{
		{"--nodes", int64(spec.Nodes)},
		{"--ntasks", int64(spec.Tasks)},
		{"--ntasks-per-node", int64(spec.TasksPerNode)},
		{"--cpus-per-task", int64(spec.CPUsPerTask)},
		{"--mem", spec.MemoryPerNodeMB},
		{"--mem-per-cpu", spec.MemoryPerCPUMB},
		{"--gpus-per-node", int64(spec.GPUsPerNode)},
		{"--time", spec.TimeLimitSec},
		{"--array", int64(spec.ArrayMaxRunning)},
	} {
		if c.v < 0 {
			return fmt.Errorf("%s: must not be negative (got %d)", c.flag, c.v)
		}
	}
	if pt.MaxTimeSec > 0 && spec.TimeLimitSec > pt.MaxTimeSec {
		return fmt.Errorf("--time: %s exceeds partition %s's MaxTime %s",
			formatDuration(spec.TimeLimitSec), pt.Name, formatDuration(pt.MaxTimeSec))
	}
	if err := validateNodes(pt, spec); err != nil {
		return err
	}
	if err := validateDependencies(st, spec); err != nil {
		return err
	}
	return validateResources(st, pt, spec)
}

func validateNodes(pt *api.Partition, spec *api.JobSpec) error {
	k := max(spec.Nodes, 1, len(spec.NodeList))
	if k > len(pt.Nodes) {
		return fmt.Errorf("--nodes: %d nodes requested but partition %s has only %d", k, pt.Name, len(pt.Nodes))
	}
	if pt.MaxNodes > 0 && k > pt.MaxNodes {
		return fmt.Errorf("--nodes: %d exceeds partition %s's MaxNodes %d", k, pt.Name, pt.MaxNodes)
	}
	for _, name := range spec.NodeList {
		if !slices.Contains(pt.Nodes, name) {
			return fmt.Errorf("--nodelist: node %s is not in partition %s", name, pt.Name)
		}
		if slices.Contains(spec.ExcludeNodes, name) {
			return fmt.Errorf("--exclude: node %s is both required (--nodelist) and excluded", name)
		}
	}
	if len(spec.ExcludeNodes) > 0 {
		left := 0
		for _, name := range pt.Nodes {
			if !slices.Contains(spec.ExcludeNodes, name) {
				left++
			}
		}
		if left < k {
			return fmt.Errorf("--exclude: partition %s has %d nodes left after exclusions, %d requested", pt.Name, left, k)
		}
	}
	return nil
}

func validateDependencies(st State, spec *api.JobSpec) error {
	for _, d := range spec.Dependencies {
		switch d.Type {
		case DepSingleton:
			continue
		case DepAfter, DepAfterOK, DepAfterNotOK, DepAfterAny:
		default:
			return fmt.Errorf("--dependency: unknown dependency type %q", d.Type)
		}
		if d.JobID == 0 {
			return fmt.Errorf("--dependency: %s needs a job id", d.Type)
		}
		// A job cannot depend on itself: it has no id until it is queued.
		if dependencyTargets(st, d.JobID, d.ArrayTask) == nil {
			id := fmt.Sprint(d.JobID)
			if d.ArrayTask >= 0 {
				id += fmt.Sprintf("_%d", d.ArrayTask)
			}
			return fmt.Errorf("--dependency: job %s does not exist", id)
		}
	}
	return nil
}

func validateResources(st State, pt *api.Partition, spec *api.JobSpec) error {
	var nodes []*api.Node
	for _, name := range pt.Nodes {
		if n := st.Node(name); n != nil && !(n.State == api.NodeUnknown && n.CPUs == 0 && n.MemoryMB == 0 && n.GPUs == 0) {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return nil
	}
	nd := need{cpus: spec.CPUsPerNode(), mem: spec.MemoryMBPerNode(), gpus: spec.GPUsPerNode}
	var maxCPUs, maxGPUs int
	var maxMem int64
	for _, n := range nodes {
		maxCPUs, maxMem, maxGPUs = max(maxCPUs, n.CPUs), max(maxMem, n.MemoryMB), max(maxGPUs, n.GPUs)
	}
	if nd.cpus > maxCPUs {
		flag := "--ntasks"
		switch {
		case spec.CPUsPerTask > 1:
			flag = "--cpus-per-task"
		case spec.TasksPerNode > 0:
			flag = "--ntasks-per-node"
		}
		return fmt.Errorf("%s: %d CPUs per node is more than any node of partition %s has (max %d)", flag, nd.cpus, pt.Name, maxCPUs)
	}
	memFlag, memNote := "--mem", ""
	switch {
	case spec.MemoryPerNodeMB > 0:
	case spec.MemoryPerCPUMB > 0:
		memFlag = "--mem-per-cpu"
	case pt.DefMemPerCPUMB > 0:
		nd.mem = pt.DefMemPerCPUMB * int64(nd.cpus)
		memNote = fmt.Sprintf(" (partition default %dM per CPU x %d CPUs)", pt.DefMemPerCPUMB, nd.cpus)
	}
	if nd.mem > maxMem {
		return fmt.Errorf("%s: %dM per node%s is more than any node of partition %s has (max %dM)", memFlag, nd.mem, memNote, pt.Name, maxMem)
	}
	if nd.gpus > maxGPUs {
		return fmt.Errorf("--gpus-per-node: %d GPUs per node is more than any node of partition %s has (max %d)", nd.gpus, pt.Name, maxGPUs)
	}
	if len(spec.Constraints) > 0 && !slices.ContainsFunc(nodes, func(n *api.Node) bool { return hasFeatures(n, spec.Constraints) }) {
		return fmt.Errorf("--constraint: no node of partition %s has features %s", pt.Name, strings.Join(spec.Constraints, "&"))
	}
	holds := func(n *api.Node) bool {
		return hasFeatures(n, spec.Constraints) && nd.cpus <= n.CPUs && nd.mem <= n.MemoryMB && nd.gpus <= n.GPUs
	}
	for _, n := range nodes {
		if slices.Contains(spec.NodeList, n.Name) && !holds(n) {
			return fmt.Errorf("--nodelist: node %s cannot hold %d CPUs, %dM and %d GPUs per node%s",
				n.Name, nd.cpus, nd.mem, nd.gpus, constraintNote(spec))
		}
	}
	if !slices.ContainsFunc(nodes, func(n *api.Node) bool { return !slices.Contains(spec.ExcludeNodes, n.Name) && holds(n) }) {
		// Two or more requests conflict; name the most specific one.
		flag := "--ntasks"
		switch {
		case len(spec.Constraints) > 0:
			flag = "--constraint"
		case len(spec.ExcludeNodes) > 0:
			flag = "--exclude"
		case nd.gpus > 0:
			flag = "--gpus-per-node"
		case nd.mem > 0:
			flag = memFlag
		}
		return fmt.Errorf("%s: no node of partition %s has %d CPUs, %dM and %d GPUs together%s",
			flag, pt.Name, nd.cpus, nd.mem, nd.gpus, constraintNote(spec))
	}
	return nil
}

func constraintNote(spec *api.JobSpec) string {
	if len(spec.Constraints) == 0 {
		return ""
	}
	return " with features " + strings.Join(spec.Constraints, "&")
}

// formatDuration prints seconds as Slurm prints time limits: [D-]HH:MM:SS.
func formatDuration(sec int64) string {
	d, h, m, s := sec/86400, sec/3600%24, sec/60%60, sec%60
	if d > 0 {
		return fmt.Sprintf("%d-%02d:%02d:%02d", d, h, m, s)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
}
