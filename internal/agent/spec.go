package agent

import (
	"bufio"
	"cmp"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/executor"
	"github.com/stockade-hpc/stockade/internal/hostlist"
	"github.com/stockade-hpc/stockade/internal/sbatch"
	"github.com/stockade-hpc/stockade/raftstore"
)

// defaultPath is PATH for jobs whose environment has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// userInfo is the job owner's passwd entry on this node.
type userInfo struct {
	Name   string
	Home   string
	Shell  string
	Groups []uint32 // supplementary groups
}

// lookupUser finds uid in this node's user database; nil when the user
// is unknown here (jobs still run, with the ids the controllers gave).
func lookupUser(uid uint32) *userInfo {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil
	}
	ui := &userInfo{Name: u.Username, Home: u.HomeDir, Shell: passwdShell("/etc/passwd", uid)}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				ui.Groups = append(ui.Groups, uint32(n))
			}
		}
	}
	return ui
}

// passwdShell reads a user's login shell from a passwd file: os/user does
// not expose it. "" when not found (users from NSS services other than
// files).
func passwdShell(path string, uid uint32) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	want := strconv.FormatUint(uint64(uid), 10)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), ":")
		if len(fs) >= 7 && fs[2] == want {
			return fs[6]
		}
	}
	return ""
}

// specInput is everything buildSpec needs, so that it is a pure function.
type specInput struct {
	Job          *api.Job
	Node         string
	StateDir     string
	ClusterName  string
	KillGrace    time.Duration
	CgroupParent string
	PidsLimit    int64 // 0: automatic
	NetNS        string
	CPUIDs       []int    // pinned CPUs (empty: quota only)
	GPUs         []int    // GPU indices given to the job
	GPUDevices   []string // their device nodes plus the control devices
	User         *userInfo
	Now          time.Time // start time when the job has none
	// Extra variables set last, over the job's (steps.go: srun's).
	Extra map[string]string
}

// autoPidsLimit scales the task limit with the job's CPUs: thread-heavy
// codes need more than a fixed 4096 on large allocations.
func autoPidsLimit(cpus int) int64 {
	return max(4096, 64*int64(cpus))
}

// homeDir is the working directory of a job that names none: the user's
// home, else "/".
func homeDir(u *userInfo) string {
	if u != nil && u.Home != "" {
		return u.Home
	}
	return "/"
}

// groups are the user's supplementary groups.
func (in *specInput) groups() []uint32 {
	if in.User == nil {
		return nil
	}
	return slices.Clone(in.User.Groups)
}

// pidsLimit is the task limit of a container with cpus CPUs.
func (in *specInput) pidsLimit(cpus int) int64 {
	if in.PidsLimit > 0 {
		return in.PidsLimit
	}
	return autoPidsLimit(cpus)
}

// buildSpec turns a job placed on this node into what the executor runs.
func buildSpec(in specInput) executor.Spec {
	j := in.Job
	workDir := cmp.Or(j.Spec.WorkDir, homeDir(in.User))
	stdout, stderr := outputPaths(j, in.Node, workDir)
	return executor.Spec{
		JobID:         j.ID,
		Attempt:       j.Restarts,
		User:          j.User,
		UID:           j.UID,
		GID:           j.GID,
		Groups:        in.groups(),
		Script:        j.Spec.Script,
		Argv:          slices.Clone(j.Spec.Argv),
		Env:           jobEnv(in, workDir),
		WorkDir:       workDir,
		Stdout:        stdout,
		Stderr:        stderr,
		Append:        j.Spec.OpenMode == "append",
		CPUs:          j.AllocCPUs,
		CPUSet:        cpuList(in.CPUIDs),
		MemoryBytes:   j.AllocMemoryMB << 20,
		PidsLimit:     in.pidsLimit(j.AllocCPUs),
		GPUDevices:    slices.Clone(in.GPUDevices),
		TimeLimit:     timeLimit(j.TimeLimitSec),
		WarnSignal:    j.Spec.WarnSignal,
		WarnBefore:    time.Duration(j.Spec.WarnTimeSec) * time.Second,
		WarnBatchOnly: j.Spec.WarnBatchOnly,
		KillGrace:     in.KillGrace,
		Image:         j.Spec.Image,
		ImageCacheDir: filepath.Join(in.StateDir, imagesSubdir),
		NetNSPath:     in.NetNS,
		CgroupParent:  in.CgroupParent,
	}
}

// maxTimeLimitSec is the longest time limit enforced (about 100 years):
// longer ones are no limit. time.Duration holds at most about 292 years,
// and a larger limit would wrap to a negative or short one.
const maxTimeLimitSec = 100 * 365 * 24 * 3600

// timeLimit is a job's time limit in seconds as the executor takes it:
// 0 (none) for 0 or more than maxTimeLimitSec. A negative one (which the
// controller never sends) stays negative, for the executor to refuse.
func timeLimit(sec int64) time.Duration {
	if sec > maxTimeLimitSec {
		return 0
	}
	return time.Duration(max(sec, -maxTimeLimitSec)) * time.Second
}

// isArrayTask reports whether the job is one task of an array.
func isArrayTask(j *api.Job) bool { return j.ArrayJobID != 0 && j.ArrayTaskID >= 0 }

// outputPaths expands --output and --error (Slurm's defaults when not
// given) to absolute paths. stderr is "" when it goes to the stdout file.
func outputPaths(j *api.Job, node, workDir string) (stdout, stderr string) {
	vars := sbatch.PatternVars{
		JobID:       j.ID,
		ArrayTaskID: -1,
		JobName:     j.Spec.Name,
		User:        j.User,
		FirstNode:   node,
	}
	if len(j.Nodes) > 0 {
		vars.FirstNode = j.Nodes[0]
	}
	if isArrayTask(j) {
		vars.ArrayJobID, vars.ArrayTaskID = j.ArrayJobID, j.ArrayTaskID
	}
	out := j.Spec.Output
	if out == "" {
		out = "slurm-%j.out"
		if isArrayTask(j) {
			out = "slurm-%A_%a.out"
		}
	}
	stdout = absUnder(workDir, sbatch.ExpandPattern(out, vars))
	if j.Spec.Error != "" {
		stderr = absUnder(workDir, sbatch.ExpandPattern(j.Spec.Error, vars))
		if stderr == stdout {
			stderr = "" // one file, opened once
		}
	}
	return stdout, stderr
}

func absUnder(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// ownedEnv are the variables the agent sets from the job itself: values of
// the same names in the submitted environment (say, from a submission
// made inside another job) are dropped so they cannot describe the wrong
// job.
var ownedEnv = []string{
	"SLURM_JOB_ID", "SLURM_JOBID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
	"SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX", "SLURM_ARRAY_TASK_STEP",
	"SLURM_JOB_NAME", "SLURM_JOB_USER", "SLURM_JOB_UID", "SLURM_JOB_GID", "SLURM_JOB_ACCOUNT",
	"SLURM_JOB_PARTITION", "SLURM_JOB_QOS", "SLURM_JOB_NODELIST", "SLURM_NODELIST",
	"SLURM_JOB_NUM_NODES", "SLURM_NNODES", "SLURM_NTASKS", "SLURM_NPROCS", "SLURM_TASKS_PER_NODE",
	"SLURM_NTASKS_PER_NODE", "SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE", "SLURM_JOB_CPUS_PER_NODE",
	"SLURM_MEM_PER_NODE", "SLURM_MEM_PER_CPU", "SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS",
	"CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "SLURM_RESTART_COUNT", "SLURMD_NODENAME",
	"SLURM_NODEID", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_CLUSTER_NAME", "ENVIRONMENT",
	"SLURM_JOB_START_TIME", "SLURM_JOB_END_TIME", "STOCKADE_JOB_ID", "STOCKADE_NODE", "STOCKADE_ATTEMPT",
	credentialEnv, "SLURM_STEP_ID", "SLURM_STEPID", "SLURM_STEP_NODELIST", "SLURM_STEP_NUM_NODES",
	"SLURM_STEP_NUM_TASKS", "SLURM_STEP_TASKS_PER_NODE", "SLURM_GTIDS", "SLURM_DISTRIBUTION",
}

// jobEnv is the batch script's environment: the submitted one (--export)
// plus what Slurm sets for a batch job, as sorted KEY=value strings.
func jobEnv(in specInput, workDir string) []string {
	j := in.Job
	env := map[string]string{}
	for k, v := range j.Spec.Environment {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			continue // not representable in an environment block
		}
		env[k] = v
	}
	for _, k := range ownedEnv {
		delete(env, k)
	}
	set := func(k, v string) { env[k] = v }
	setDefault := func(k, v string) {
		if _, ok := env[k]; !ok && v != "" {
			env[k] = v
		}
	}
	itoa := strconv.Itoa
	utoa := func(v uint64) string { return strconv.FormatUint(v, 10) }

	id := utoa(j.ID)
	set("SLURM_JOB_ID", id)
	set("SLURM_JOBID", id)
	if isArrayTask(j) {
		set("SLURM_ARRAY_JOB_ID", utoa(j.ArrayJobID))
		set("SLURM_ARRAY_TASK_ID", itoa(j.ArrayTaskID))
		tasks := j.Spec.ArrayTasks
		if len(tasks) == 0 {
			tasks = []int{j.ArrayTaskID}
		}
		lo, hi, step := arrayStats(tasks)
		set("SLURM_ARRAY_TASK_COUNT", itoa(len(tasks)))
		set("SLURM_ARRAY_TASK_MIN", itoa(lo))
		set("SLURM_ARRAY_TASK_MAX", itoa(hi))
		set("SLURM_ARRAY_TASK_STEP", itoa(step))
	}
	set("SLURM_JOB_NAME", j.Spec.Name)
	set("SLURM_JOB_USER", j.User)
	set("SLURM_JOB_UID", utoa(uint64(j.UID)))
	set("SLURM_JOB_GID", utoa(uint64(j.GID)))
	for k, v := range map[string]string{
		"SLURM_JOB_ACCOUNT":   j.Spec.Account,
		"SLURM_JOB_PARTITION": j.Spec.Partition,
		"SLURM_JOB_QOS":       j.Spec.QOS,
		"SLURM_CLUSTER_NAME":  in.ClusterName,
	} {
		if v != "" {
			set(k, v)
		}
	}
	// sbatch may send the real submit dir when --chdir moved the job.
	setDefault("SLURM_SUBMIT_DIR", workDir)

	nodes := j.Nodes
	if len(nodes) == 0 {
		nodes = []string{in.Node}
	}
	nl := hostlist.Compress(nodes)
	set("SLURM_JOB_NODELIST", nl)
	set("SLURM_NODELIST", nl)
	set("SLURM_JOB_NUM_NODES", itoa(len(nodes)))
	set("SLURM_NNODES", itoa(len(nodes)))
	tpn := tasksPerNode(j.Spec, len(nodes))
	ntasks := 0
	for _, n := range tpn {
		ntasks += n
	}
	set("SLURM_NTASKS", itoa(ntasks))
	set("SLURM_NPROCS", itoa(ntasks))
	set("SLURM_TASKS_PER_NODE", repeatList(tpn))
	if j.Spec.TasksPerNode > 0 {
		set("SLURM_NTASKS_PER_NODE", itoa(j.Spec.TasksPerNode))
	}
	if j.Spec.CPUsPerTask > 0 {
		set("SLURM_CPUS_PER_TASK", itoa(j.Spec.CPUsPerTask))
	}
	cpus := j.AllocCPUs
	if cpus <= 0 {
		cpus = j.Spec.CPUsPerNode()
	}
	set("SLURM_CPUS_ON_NODE", itoa(cpus))
	set("SLURM_JOB_CPUS_PER_NODE", repeatList(slices.Repeat([]int{cpus}, len(nodes))))
	switch {
	case j.Spec.MemoryPerCPUMB > 0:
		set("SLURM_MEM_PER_CPU", strconv.FormatInt(j.Spec.MemoryPerCPUMB, 10))
	case j.AllocMemoryMB > 0:
		set("SLURM_MEM_PER_NODE", strconv.FormatInt(j.AllocMemoryMB, 10))
	}
	if len(in.GPUs) > 0 {
		set("SLURM_GPUS_ON_NODE", itoa(len(in.GPUs)))
		set("SLURM_JOB_GPUS", joinInts(in.GPUs))
		// The job sees only its own GPUs, which CUDA numbers from 0.
		local := make([]int, len(in.GPUs))
		for i := range local {
			local[i] = i
		}
		set("CUDA_VISIBLE_DEVICES", joinInts(local))
		set("GPU_DEVICE_ORDINAL", joinInts(local))
	}
	set("SLURM_RESTART_COUNT", itoa(j.Restarts))
	set("SLURMD_NODENAME", in.Node)
	set("SLURM_NODEID", "0")
	set("SLURM_PROCID", "0")
	set("SLURM_LOCALID", "0")
	set("ENVIRONMENT", "BATCH")
	start := j.StartTime
	if start.IsZero() {
		start = in.Now
	}
	set("SLURM_JOB_START_TIME", strconv.FormatInt(start.Unix(), 10))
	if limit := timeLimit(j.TimeLimitSec); limit > 0 {
		set("SLURM_JOB_END_TIME", strconv.FormatInt(start.Unix()+int64(limit/time.Second), 10))
	}
	set("STOCKADE_JOB_ID", id)
	set("STOCKADE_NODE", in.Node)
	set("STOCKADE_ATTEMPT", itoa(j.Restarts))
	for k, v := range in.Extra {
		set(k, v)
	}

	home, shell := workDir, "/bin/sh"
	if in.User != nil {
		if in.User.Home != "" {
			home = in.User.Home
		}
		if in.User.Shell != "" {
			shell = in.User.Shell
		}
	}
	setDefault("HOME", home)
	setDefault("USER", j.User)
	setDefault("LOGNAME", j.User)
	setDefault("SHELL", shell)
	if env["PATH"] == "" {
		env["PATH"] = defaultPath
	}

	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// arrayStats gives an array's lowest and highest task id and its step:
// the common difference when the ids are evenly spaced, else 1.
func arrayStats(tasks []int) (lo, hi, step int) {
	s := slices.Clone(tasks)
	sort.Ints(s)
	lo, hi, step = s[0], s[len(s)-1], 1
	if len(s) > 1 {
		d := s[1] - s[0]
		for i := 2; i < len(s); i++ {
			if s[i]-s[i-1] != d {
				d = 1
				break
			}
		}
		step = max(d, 1)
	}
	return lo, hi, step
}

// tasksPerNode spreads the job's tasks over its nodes as Slurm's default
// block distribution does: the first nodes get one more when the count
// does not divide evenly.
func tasksPerNode(s api.JobSpec, nodes int) []int {
	nodes = max(nodes, 1)
	if s.TasksPerNode > 0 && s.Tasks <= 0 {
		return slices.Repeat([]int{s.TasksPerNode}, nodes)
	}
	tasks := s.Tasks
	if tasks <= 0 {
		tasks = nodes
	}
	return raftstore.BlockCounts(nodes, tasks)
}

// repeatList formats counts as Slurm does: runs of equal values as v(xN),
// e.g. [2 2 2 1] → "2(x3),1".
func repeatList(v []int) string {
	var parts []string
	for i := 0; i < len(v); {
		j := i
		for j < len(v) && v[j] == v[i] {
			j++
		}
		p := strconv.Itoa(v[i])
		if j-i > 1 {
			p += "(x" + strconv.Itoa(j-i) + ")"
		}
		parts = append(parts, p)
		i = j
	}
	return strings.Join(parts, ",")
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
