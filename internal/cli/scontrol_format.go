package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
)

// scontrol show's Key=Value records. Each line after the first is
// indented three spaces; fields Stockade has no data for are left out
// rather than invented, fields that are fixed facts (no reservations, no
// suspension) keep Slurm's values.

func yesNo(b bool) string {
	if b {
		return "YES"
	}
	return "NO"
}

func boolNum(b bool) int {
	if b {
		return 1
	}
	return 0
}

// tresString is Slurm's TRES list in TRES order (cpu, mem, node,
// billing, gres).
func tresString(cpus int, memMBTotal int64, nodes, gpus int) string {
	s := "cpu=" + strconv.Itoa(cpus)
	if memMBTotal > 0 {
		s += ",mem=" + memMB(memMBTotal)
	}
	s += ",node=" + strconv.Itoa(nodes) + ",billing=" + strconv.Itoa(cpus)
	if gpus > 0 {
		s += ",gres/gpu=" + strconv.Itoa(gpus)
	}
	return s
}

// showJob is one job of scontrol show job.
func showJob(c *fmtCtx, j *api.Job) string {
	var b strings.Builder
	line := func(format string, a ...any) {
		b.WriteString("   ")
		fmt.Fprintf(&b, format, a...)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "JobId=%d ", j.ID)
	if isArrayTask(j) {
		fmt.Fprintf(&b, "ArrayJobId=%d ArrayTaskId=%d ", j.ArrayJobID, j.ArrayTaskID)
	}
	fmt.Fprintf(&b, "JobName=%s\n", j.Spec.Name)
	line("UserId=%s(%d) GroupId=%s(%d) MCS_label=N/A", j.User, j.UID, c.group(j.GID), j.GID)
	line("Priority=%d Nice=%d Account=%s QOS=%s", j.Priority, j.Spec.Nice, orNull(j.Spec.Account), orNull(j.Spec.QOS))
	line("JobState=%s Reason=%s Dependency=%s", j.State, jobReason(j), orNull(j.Spec.Dependency))
	line("Requeue=%d Restarts=%d BatchFlag=1 Reboot=0 ExitCode=%s", boolNum(j.Spec.Requeue), j.Restarts, jobExitCode(j))
	line("RunTime=%s TimeLimit=%s TimeMin=N/A", slurmSecs(jobElapsed(j, c.now)), slurmLimit(j.TimeLimitSec))
	line("SubmitTime=%s", slurmDate(j.SubmitTime, c.loc, "Unknown"))
	line("StartTime=%s EndTime=%s Deadline=N/A", slurmDate(j.StartTime, c.loc, "Unknown"), slurmDate(jobEnd(j), c.loc, "Unknown"))
	line("SuspendTime=None SecsPreSuspend=0")
	line("Partition=%s", j.Spec.Partition)
	line("ReqNodeList=%s ExcNodeList=%s", orNull(hostlist.Compress(j.Spec.NodeList)), orNull(hostlist.Compress(j.Spec.ExcludeNodes)))
	line("NodeList=%s", orNull(jobNodeList(j)))
	if len(j.Nodes) > 0 {
		line("BatchHost=%s", j.Nodes[0])
	}
	nodes := jobNodeCount(j)
	line("NumNodes=%d NumCPUs=%d NumTasks=%d CPUs/Task=%d ReqB:S:C:T=0:0:*:*", nodes, jobCPUs(j), jobTasks(j), max(j.Spec.CPUsPerTask, 1))
	reqNodes := max(j.Spec.Nodes, 1)
	line("ReqTRES=%s", tresString(j.Spec.CPUsPerNode()*reqNodes, jobMemPerNodeMB(j)*int64(reqNodes), reqNodes, j.Spec.GPUsPerNode*reqNodes))
	if jobStarted(j) {
		line("AllocTRES=%s", tresString(jobCPUs(j), j.AllocMemoryMB*int64(len(j.Nodes)), len(j.Nodes), j.AllocGPUs*len(j.Nodes)))
	} else {
		line("AllocTRES=(null)")
	}
	line("Socks/Node=* NtasksPerN:B:S:C=%d:0:*:* CoreSpec=*", j.Spec.TasksPerNode)
	if j.Spec.MemoryPerCPUMB > 0 && j.Spec.MemoryPerNodeMB == 0 {
		line("MinCPUsNode=%d MinMemoryCPU=%s MinTmpDiskNode=0", j.Spec.CPUsPerNode(), memMB(j.Spec.MemoryPerCPUMB))
	} else {
		line("MinCPUsNode=%d MinMemoryNode=%s MinTmpDiskNode=0", j.Spec.CPUsPerNode(), memMB(jobMemPerNodeMB(j)))
	}
	line("Features=%s DelayBoot=00:00:00", orNull(strings.Join(j.Spec.Constraints, "&")))
	oversub := "OK"
	if j.Spec.Exclusive {
		oversub = "NO"
	}
	line("OverSubscribe=%s Contiguous=0 Licenses=(null) Network=(null)", oversub)
	line("Command=%s", jobCommand(j))
	line("WorkDir=%s", j.Spec.WorkDir)
	if j.Spec.Comment != "" {
		line("Comment=%s", j.Spec.Comment)
	}
	line("StdErr=%s", jobStdPath(j, errPattern(j)))
	line("StdIn=/dev/null")
	line("StdOut=%s", jobStdPath(j, j.Spec.Output))
	if j.Spec.Image != "" {
		line("Container=%s", j.Spec.Image)
	}
	if j.FailReason != "" {
		line("FailReason=%s", j.FailReason)
	}
	return b.String()
}

// nodePartitions maps node names to the partitions holding them, in
// partition order.
func nodePartitions(parts []api.Partition) map[string][]string {
	m := map[string][]string{}
	for _, p := range parts {
		for _, n := range expandNames(p.Nodes) {
			m[n] = append(m[n], p.Name)
		}
	}
	return m
}

// showNode is one node of scontrol show node.
func showNode(c *fmtCtx, n *api.Node, partitions []string) string {
	return showNodeIn(c, n, partitions, nil)
}

// showNodeIn is showNode knowing the nodes of active MAINT reservations
// (maintNodes), whose State gets "+MAINT".
func showNodeIn(c *fmtCtx, n *api.Node, partitions []string, maint map[string]bool) string {
	var b strings.Builder
	line := func(format string, a ...any) {
		b.WriteString("   ")
		fmt.Fprintf(&b, format, a...)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "NodeName=%s Arch=%s\n", n.Name, orNA(n.Arch))
	line("CPUAlloc=%d CPUEfctv=%d CPUTot=%d", n.AllocCPUs, n.CPUs, n.CPUs)
	line("AvailableFeatures=%s", nodeFeatures(n))
	line("ActiveFeatures=%s", nodeFeatures(n))
	line("Gres=%s", nodeGres(n))
	line("NodeHostName=%s Version=%s", n.Name, orNA(n.AgentVersion))
	if n.OS != "" {
		line("OS=%s", n.OS)
	}
	line("RealMemory=%d AllocMem=%d FreeMem=N/A", n.MemoryMB, n.AllocMemoryMB)
	line("State=%s Weight=1 Owner=N/A MCS_label=N/A", nodeStateIn(n, maint).upper)
	line("Partitions=%s", orNull(strings.Join(partitions, ",")))
	line("BootTime=%s SlurmdStartTime=%s", slurmDate(n.BootTime, c.loc, "None"), slurmDate(n.RegisteredAt, c.loc, "None"))
	line("CfgTRES=%s", nodeTRES(n.CPUs, n.MemoryMB, n.GPUs))
	line("AllocTRES=%s", allocNodeTRES(n))
	// Stockade's own fields, on a line of their own after Slurm's; before
	// Reason, whose free text parsers read to the end of the line.
	line("Trust=%s LastQuote=%s EKFingerprint=%s", nodeTrust(n), slurmDate(n.LastQuote, c.loc, "None"), orNull(n.EKFingerprint))
	if n.Reason != "" {
		line("Reason=%s", n.Reason)
	}
	if n.AttestError != "" {
		line("AttestError=%s", safeText(n.AttestError, 0))
	}
	return b.String()
}

// nodeTRES is a node's configured TRES (cpu, mem, billing, gres).
func nodeTRES(cpus int, mem int64, gpus int) string {
	s := "cpu=" + strconv.Itoa(cpus)
	if mem > 0 {
		s += ",mem=" + memMB(mem)
	}
	s += ",billing=" + strconv.Itoa(cpus)
	if gpus > 0 {
		s += ",gres/gpu=" + strconv.Itoa(gpus)
	}
	return s
}

// allocNodeTRES is what jobs hold on the node ("" when idle).
func allocNodeTRES(n *api.Node) string {
	if n.AllocCPUs == 0 && n.AllocMemoryMB == 0 && n.AllocGPUs == 0 {
		return ""
	}
	s := "cpu=" + strconv.Itoa(n.AllocCPUs)
	if n.AllocMemoryMB > 0 {
		s += ",mem=" + memMB(n.AllocMemoryMB)
	}
	if n.AllocGPUs > 0 {
		s += ",gres/gpu=" + strconv.Itoa(n.AllocGPUs)
	}
	return s
}

// showPartition is one partition of scontrol show partition.
func showPartition(p *api.Partition, nodes map[string]*api.Node) string {
	var b strings.Builder
	line := func(format string, a ...any) {
		b.WriteString("   ")
		fmt.Fprintf(&b, format, a...)
		b.WriteByte('\n')
	}
	names := expandNames(p.Nodes)
	var cpus, gpus int
	var mem int64
	for _, name := range names {
		if n := nodes[name]; n != nil {
			cpus += n.CPUs
			mem += n.MemoryMB
			gpus += n.GPUs
		}
	}
	maxNodes := "UNLIMITED"
	if p.MaxNodes > 0 {
		maxNodes = strconv.Itoa(p.MaxNodes)
	}
	defTime := "NONE"
	if p.DefaultTimeSec > 0 {
		defTime = slurmSecs(p.DefaultTimeSec)
	}
	defMem := "UNLIMITED"
	if p.DefMemPerCPUMB > 0 {
		defMem = strconv.FormatInt(p.DefMemPerCPUMB, 10)
	}
	state := "DOWN"
	if p.Up {
		state = "UP"
	}
	fmt.Fprintf(&b, "PartitionName=%s\n", p.Name)
	line("AllowGroups=ALL AllowAccounts=%s AllowQos=%s", allOr(p.AllowAccounts), allOr(p.AllowQOS))
	line("AllocNodes=ALL Default=%s QoS=N/A", yesNo(p.Default))
	line("DefaultTime=%s DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO", defTime)
	line("MaxNodes=%s MaxTime=%s MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED", maxNodes, slurmLimit(p.MaxTimeSec))
	line("Nodes=%s", orNull(hostlist.Compress(names)))
	oversub := "NO"
	if p.ExclusiveNodes {
		oversub = "EXCLUSIVE"
	}
	line("PriorityJobFactor=1 PriorityTier=%d RootOnly=NO ReqResv=NO OverSubscribe=%s", p.PriorityTier, oversub)
	line("OverTimeLimit=NONE PreemptMode=OFF")
	line("State=%s TotalCPUs=%d TotalNodes=%d SelectTypeParameters=NONE", state, cpus, len(names))
	line("JobDefaults=(null)")
	line("DefMemPerCPU=%s MaxMemPerNode=UNLIMITED", defMem)
	line("TRES=%s", tresString(cpus, mem, len(names), gpus))
	line("RequireTrust=%s", partitionTrust(p)) // Stockade's own
	return b.String()
}

// oneLiner joins a record's lines, as scontrol -o prints it.
func oneLiner(rec string) string {
	return strings.ReplaceAll(strings.TrimRight(rec, "\n"), "\n   ", " ") + "\n"
}

// partitionTrust is the least trust a partition's nodes need; "none"
// (like "") admits any node.
func partitionTrust(p *api.Partition) string {
	if p.RequireTrust == "" {
		return string(api.TrustNone)
	}
	return string(p.RequireTrust)
}

// allOr is a partition's allow list as scontrol prints it: ALL when empty.
func allOr(list []string) string {
	if len(list) == 0 {
		return "ALL"
	}
	return strings.Join(list, ",")
}
