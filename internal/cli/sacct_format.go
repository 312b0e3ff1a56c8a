package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
)

// sacct's default and long field lists.
const (
	sacctDefaultFields = "jobid,jobname,partition,account,alloccpus,state,exitcode"
	sacctBriefFields   = "jobid,state,exitcode"
	sacctLongFields    = "jobid,jobidraw,jobname,partition,maxvmsize,maxvmsizenode,maxvmsizetask," +
		"avevmsize,maxrss,maxrssnode,maxrsstask,averss,maxpages,maxpagesnode,maxpagestask," +
		"avepages,mincpu,mincpunode,mincputask,avecpu,ntasks,alloccpus,elapsed,state,exitcode," +
		"avecpufreq,reqcpufreqmin,reqcpufreqmax,reqcpufreqgov,reqmem,consumedenergy," +
		"maxdiskread,maxdiskreadnode,maxdiskreadtask,avediskread,maxdiskwrite,maxdiskwritenode," +
		"maxdiskwritetask,avediskwrite,reqtres,alloctres,tresusageinave,tresusageinmax," +
		"tresusageinmaxnode,tresusageinmaxtask,tresusageinmin,tresusageinminnode," +
		"tresusageinmintask,tresusageintot,tresusageoutmax,tresusageoutmaxnode," +
		"tresusageoutmaxtask,tresusageoutave,tresusageouttot"
)

// How a field prints, following Slurm's print_fields_* routines: strings
// are cut with a trailing "+", numbers and durations never, dates cut.
const (
	kindStr  = iota // print_fields_str
	kindNum         // print_fields_uint*
	kindDate        // print_fields_date: unset is "Unknown"
	kindSecs        // print_fields_time_from_secs
)

// acctRow is one sacct line: a job (allocation), its batch step, or one
// of its srun steps (srun set; job is then the step seen as a job, with
// the step's times, state, exit code, nodes and usage). rec is the job
// attempt's usage record, on job lines that have one.
type acctRow struct {
	job  *api.Job
	step bool
	srun *api.JobStep
	rec  *accounting.StoredRecord
}

// acctItem is one job attempt sacct lists: the job as the controllers
// list it, or as its usage record tells it (ended jobs they no longer
// list, earlier attempts of requeued jobs); rec is the attempt's usage
// record, nil while it runs or when the controllers keep none.
type acctItem struct {
	job     api.Job
	rec     *accounting.StoredRecord
	earlier bool // an earlier attempt of a requeued job (sacct -D)
}

// itemsOf lists jobs without usage records.
func itemsOf(jobs []api.Job) []acctItem {
	items := make([]acctItem, len(jobs))
	for i := range jobs {
		items[i].job = jobs[i]
	}
	return items
}

// withUsage is j with the usage its record bills, which is the source of
// truth once the job has ended. The record has no RSS figure: MaxRSS
// falls back to its peak memory (cgroup peak, page cache included).
func withUsage(j api.Job, rec *accounting.StoredRecord) api.Job {
	if rec == nil {
		return j
	}
	r := &rec.Record
	j.Usage.CPUTimeNs = r.CPUMillis * 1e6
	j.Usage.MaxMemoryB = r.PeakMemoryBytes
	if j.Usage.MaxRSSB == 0 {
		j.Usage.MaxRSSB = r.PeakMemoryBytes
	}
	j.Usage.BlockReadB, j.Usage.BlockWriteB = r.BlockReadBytes, r.BlockWriteBytes
	j.Usage.WallTimeNs = r.WallSec * 1e9
	return j
}

// recordJob is the job attempt a usage record tells of, over live (the
// job as listed, nil when not listed): the record has no name, group,
// CPU count or limits, so a job known only from its record prints those
// empty or as Slurm's defaults.
func recordJob(rec *accounting.StoredRecord, live *api.Job) api.Job {
	r := &rec.Record
	var j api.Job
	if live != nil {
		j = *live
		j.Usage = api.Usage{}
	} else {
		j = api.Job{ID: r.JobID, ArrayJobID: r.ArrayJobID, ArrayTaskID: int(r.ArrayTaskID), User: r.User, Reason: "None",
			Spec: api.JobSpec{Account: r.Account, Partition: r.Partition, QOS: r.QOS, Image: r.Image, Nodes: max(len(r.Nodes), 1)}}
		if r.WallSec > 0 && len(r.Nodes) > 0 {
			j.AllocGPUs = int(r.GPUSeconds / r.WallSec / uint64(len(r.Nodes)))
			j.Spec.GPUsPerNode = j.AllocGPUs
		}
	}
	j.State = api.JobState(r.State)
	j.SubmitTime, j.StartTime, j.EndTime = r.SubmitTime, r.StartTime, r.EndTime
	j.ExitCode, j.ExitSignal = int(r.ExitCode), int(r.ExitSignal)
	j.Nodes = slices.Clone(r.Nodes)
	return withUsage(j, rec)
}

// sortItems orders items as sacct lists jobs, a requeued job's attempts
// oldest first.
func sortItems(items []acctItem) {
	slices.SortStableFunc(items, func(a, b acctItem) int {
		return cmp.Or(cmp.Compare(arrayJobID(&a.job), arrayJobID(&b.job)), cmp.Compare(a.job.ArrayTaskID, b.job.ArrayTaskID),
			cmp.Compare(a.job.ID, b.job.ID), cmp.Compare(attemptRank(a), attemptRank(b)))
	})
}

// attemptRank puts earlier attempts by seq, then the current one.
func attemptRank(it acctItem) uint64 {
	if !it.earlier {
		return math.MaxUint64
	}
	return it.rec.Record.Seq
}

// recOnly wraps a value of the usage record: job lines that have one.
func recOnly(f func(r *accounting.StoredRecord) (string, bool)) func(*fmtCtx, acctRow) (string, bool) {
	return func(_ *fmtCtx, r acctRow) (string, bool) {
		if r.step || r.rec == nil {
			return "", false
		}
		return f(r.rec)
	}
}

// stepAsJob is the job as its srun step s ran it, so that the step line
// reads the usual job fields.
func stepAsJob(j *api.Job, s *api.JobStep) *api.Job {
	sj := *j
	sj.StartTime, sj.EndTime = s.StartTime, s.EndTime
	sj.State, sj.ExitCode, sj.ExitSignal = s.State, s.ExitCode, s.ExitSignal
	sj.Nodes, sj.Usage = s.Nodes, s.Usage
	sj.AllocCPUs = max(s.CPUsPerTask, 1) * max(len(s.TaskNodes), 1)
	return &sj
}

// stepSuffix is what follows the job id on a step line.
func stepSuffix(r acctRow) string {
	if r.srun != nil {
		return "." + itoa(r.srun.StepID)
	}
	return ".batch"
}

// stepNodeCount is the nodes of a step line: the batch step runs on the
// first node.
func stepNodeCount(r acctRow) int {
	if r.srun != nil {
		return len(r.srun.Nodes)
	}
	return 1
}

// acctField is one sacct field. value returns ok=false for "no value".
type acctField struct {
	name  string
	width int // negative: left-justified
	kind  int
	value func(c *fmtCtx, r acctRow) (string, bool)
}

func some(s string) (string, bool) { return s, true }

// jobOnly wraps a value that only the job line has (steps print nothing).
func jobOnly(f func(c *fmtCtx, j *api.Job) string) func(*fmtCtx, acctRow) (string, bool) {
	return func(c *fmtCtx, r acctRow) (string, bool) {
		if r.step {
			return "", false
		}
		return f(c, r.job), true
	}
}

// stepOnly wraps a usage value: Slurm keeps usage statistics on steps, so
// the job line leaves them empty.
func stepOnly(f func(c *fmtCtx, j *api.Job) string) func(*fmtCtx, acctRow) (string, bool) {
	return func(c *fmtCtx, r acctRow) (string, bool) {
		if !r.step {
			return "", false
		}
		return f(c, r.job), true
	}
}

// both wraps a value printed on job and step lines alike.
func both(f func(c *fmtCtx, j *api.Job) string) func(*fmtCtx, acctRow) (string, bool) {
	return func(c *fmtCtx, r acctRow) (string, bool) { return f(c, r.job), true }
}

func itoa(v int) string { return strconv.Itoa(v) }

// acctState is the State field: "CANCELLED by UID" on the job line, as
// Slurm prints it (Stockade records no canceller, so the owner's uid is
// shown). The batch step of a job killed at its limit is CANCELLED.
func acctState(r acctRow) string {
	j := r.job
	switch {
	case r.step && j.State == api.JobTimeout:
		return string(api.JobCancelled)
	case !r.step && j.State == api.JobCancelled:
		return fmt.Sprintf("CANCELLED by %d", j.UID)
	}
	return string(j.State)
}

func jobExitCode(j *api.Job) string { return fmt.Sprintf("%d:%d", j.ExitCode, j.ExitSignal) }

func firstNodeName(j *api.Job) string {
	if len(j.Nodes) > 0 {
		return j.Nodes[0]
	}
	return ""
}

// stepCPUs is the batch step's CPU count: the first node's allocation.
func stepCPUs(j *api.Job) int {
	if j.AllocCPUs > 0 {
		return j.AllocCPUs
	}
	return j.Spec.CPUsPerNode()
}

// stepTRES is a step's TRES, as a job's without billing.
func stepTRES(j *api.Job, nodes int) string {
	nodes = max(nodes, 1)
	return tresByName(stepCPUs(j), j.AllocMemoryMB*int64(nodes), nodes, j.AllocGPUs*nodes)
}

// tresByName is a TRES list as sacct prints it, sorted by name.
func tresByName(cpus int, memMBTotal int64, nodes, gpus int) string {
	parts := []string{"cpu=" + itoa(cpus)}
	if gpus > 0 {
		parts = append(parts, "gres/gpu="+itoa(gpus))
	}
	if memMBTotal > 0 {
		parts = append(parts, "mem="+memMB(memMBTotal))
	}
	return strings.Join(append(parts, "node="+itoa(nodes)), ",")
}

// sortedTRES is a job's TRES list: tresByName with billing, equal to the
// CPUs as under Slurm's default weights.
func sortedTRES(cpus int, memMBTotal int64, nodes, gpus int) string {
	return "billing=" + itoa(cpus) + "," + tresByName(cpus, memMBTotal, nodes, gpus)
}

// reqTRES is the job's request (ReqTRES).
func reqTRES(j *api.Job) string {
	nodes := max(j.Spec.Nodes, 1)
	return sortedTRES(j.Spec.CPUsPerNode()*nodes, jobMemPerNodeMB(j)*int64(nodes), nodes, j.Spec.GPUsPerNode*nodes)
}

// allocTRES is what the job holds (AllocTRES), once started.
func allocTRES(j *api.Job) string {
	nodes := len(j.Nodes)
	return sortedTRES(jobCPUs(j), j.AllocMemoryMB*int64(nodes), nodes, j.AllocGPUs*nodes)
}

func bytesNum(b uint64) string { return convertNum(b, unitNone) }

func cpuSecs(j *api.Job) string { return cpuTime(j.Usage.CPUTimeNs / 1e9 * 1e9) }

// usageIn is TRESUsageInMax/Tot for the batch step (one task).
func usageIn(j *api.Job) string {
	return fmt.Sprintf("cpu=%s,fs/disk=%d,mem=%s", cpuTime(j.Usage.CPUTimeNs/1e9*1e9), j.Usage.BlockReadB, bytesNum(j.Usage.MaxRSSB))
}

func usageOut(j *api.Job) string { return fmt.Sprintf("fs/disk=%d", j.Usage.BlockWriteB) }

func zeroTask(*fmtCtx, *api.Job) string { return "0" }

// sacctFields is sacct's field table (alphabetical, as Slurm's): name,
// default width, print kind and value. Fields Stockade has no data for
// print empty.
var sacctFields = []acctField{
	{"Account", 10, kindStr, both(func(_ *fmtCtx, j *api.Job) string { return j.Spec.Account })},
	{"AdminComment", 15, kindStr, nil},
	{"AllocCPUS", 10, kindNum, func(c *fmtCtx, r acctRow) (string, bool) {
		if r.step {
			return some(itoa(stepCPUs(r.job)))
		}
		return some(itoa(jobCPUs(r.job)))
	}},
	{"AllocNodes", 10, kindStr, func(c *fmtCtx, r acctRow) (string, bool) {
		if r.step {
			return some(itoa(stepNodeCount(r)))
		}
		return some(itoa(len(r.job.Nodes)))
	}},
	{"AllocTRES", 10, kindStr, func(c *fmtCtx, r acctRow) (string, bool) {
		if r.step {
			return some(stepTRES(r.job, stepNodeCount(r)))
		}
		if !jobStarted(r.job) {
			return "", false
		}
		return some(allocTRES(r.job))
	}},
	{"AssocID", 7, kindNum, nil},
	{"AveCPU", 10, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return cpuSecs(j) })},
	{"AveCPUFreq", 10, kindStr, nil},
	{"AveDiskRead", 14, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return bytesNum(j.Usage.BlockReadB) })},
	{"AveDiskWrite", 14, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return bytesNum(j.Usage.BlockWriteB) })},
	{"AvePages", 10, kindStr, nil},
	{"AveRSS", 10, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return bytesNum(j.Usage.MaxRSSB) })},
	{"AveVMSize", 10, kindStr, nil},
	{"BlockID", 16, kindStr, nil},
	{"Cluster", 10, kindStr, nil},
	{"Comment", 14, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string { return j.Spec.Comment })},
	{"Constraints", 19, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string { return strings.Join(j.Spec.Constraints, "&") })},
	{"ConsumedEnergy", 14, kindStr, nil},
	{"ConsumedEnergyRaw", 17, kindNum, nil},
	{"Container", 19, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string { return j.Spec.Image })},
	{"CPUTime", 10, kindSecs, func(c *fmtCtx, r acctRow) (string, bool) {
		cpus := jobCPUs(r.job)
		if r.step {
			cpus = stepCPUs(r.job)
		}
		return some(slurmSecs(jobElapsed(r.job, c.now) * int64(cpus)))
	}},
	{"CPUTimeRAW", 10, kindNum, func(c *fmtCtx, r acctRow) (string, bool) {
		cpus := jobCPUs(r.job)
		if r.step {
			cpus = stepCPUs(r.job)
		}
		return some(strconv.FormatInt(jobElapsed(r.job, c.now)*int64(cpus), 10))
	}},
	{"DerivedExitCode", 15, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string { return jobExitCode(j) })},
	{"Elapsed", 10, kindSecs, both(func(c *fmtCtx, j *api.Job) string { return slurmSecs(jobElapsed(j, c.now)) })},
	{"ElapsedRaw", 10, kindNum, both(func(c *fmtCtx, j *api.Job) string { return strconv.FormatInt(jobElapsed(j, c.now), 10) })},
	{"Eligible", 19, kindDate, func(c *fmtCtx, r acctRow) (string, bool) {
		if r.step {
			return some(slurmDate(r.job.StartTime, c.loc, "Unknown"))
		}
		return "", false
	}},
	{"End", 19, kindDate, both(func(c *fmtCtx, j *api.Job) string {
		if !j.State.Terminal() {
			return "Unknown"
		}
		return slurmDate(j.EndTime, c.loc, "Unknown")
	})},
	{"ExitCode", 8, kindStr, both(func(_ *fmtCtx, j *api.Job) string { return jobExitCode(j) })},
	{"Flags", 19, kindStr, nil},
	{"GID", 6, kindNum, jobOnly(func(_ *fmtCtx, j *api.Job) string { return strconv.FormatUint(uint64(j.GID), 10) })},
	{"Group", 9, kindStr, func(c *fmtCtx, r acctRow) (string, bool) {
		// sacct leaves Group empty when the gid has no name here.
		if r.step || c.groupName == nil {
			return "", false
		}
		name := c.groupName(r.job.GID)
		return name, name != ""
	}},
	{"JobID", -12, kindStr, func(_ *fmtCtx, r acctRow) (string, bool) {
		if r.step {
			return some(r.job.DisplayID() + stepSuffix(r))
		}
		return some(r.job.DisplayID())
	}},
	{"JobIDRaw", -12, kindStr, func(_ *fmtCtx, r acctRow) (string, bool) {
		id := strconv.FormatUint(r.job.ID, 10)
		if r.step {
			return some(id + stepSuffix(r))
		}
		return some(id)
	}},
	{"JobName", 10, kindStr, func(_ *fmtCtx, r acctRow) (string, bool) {
		if r.srun != nil {
			return some(r.srun.Name)
		}
		if r.step {
			return some("batch")
		}
		return some(r.job.Spec.Name)
	}},
	{"Layout", 9, kindStr, nil},
	{"MaxDiskRead", 12, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return bytesNum(j.Usage.BlockReadB) })},
	{"MaxDiskReadNode", 15, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return firstNodeName(j) })},
	{"MaxDiskReadTask", 15, kindNum, stepOnly(zeroTask)},
	{"MaxDiskWrite", 12, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return bytesNum(j.Usage.BlockWriteB) })},
	{"MaxDiskWriteNode", 16, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return firstNodeName(j) })},
	{"MaxDiskWriteTask", 16, kindNum, stepOnly(zeroTask)},
	{"MaxPages", 8, kindStr, nil},
	{"MaxPagesNode", 12, kindStr, nil},
	{"MaxPagesTask", 14, kindNum, nil},
	{"MaxRSS", 10, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return bytesNum(j.Usage.MaxRSSB) })},
	{"MaxRSSNode", 10, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return firstNodeName(j) })},
	{"MaxRSSTask", 10, kindNum, stepOnly(zeroTask)},
	{"MaxVMSize", 10, kindStr, nil},
	{"MaxVMSizeNode", 14, kindStr, nil},
	{"MaxVMSizeTask", 14, kindNum, nil},
	{"McsLabel", 12, kindStr, nil},
	{"MinCPU", 10, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return cpuSecs(j) })},
	{"MinCPUNode", 10, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return firstNodeName(j) })},
	{"MinCPUTask", 10, kindNum, stepOnly(zeroTask)},
	{"NCPUS", 10, kindNum, func(c *fmtCtx, r acctRow) (string, bool) {
		if r.step {
			return some(itoa(stepCPUs(r.job)))
		}
		return some(itoa(jobCPUs(r.job)))
	}},
	{"NNodes", 8, kindNum, func(_ *fmtCtx, r acctRow) (string, bool) {
		if r.step {
			return some(itoa(stepNodeCount(r)))
		}
		return some(itoa(jobNodeCount(r.job)))
	}},
	{"NodeList", 15, kindStr, func(_ *fmtCtx, r acctRow) (string, bool) {
		if r.srun != nil {
			return some(hostlist.Compress(r.srun.Nodes))
		}
		if r.step {
			return some(firstNodeName(r.job))
		}
		if len(r.job.Nodes) == 0 {
			return some("None assigned")
		}
		return some(jobNodeList(r.job))
	}},
	{"NTasks", 8, kindNum, func(_ *fmtCtx, r acctRow) (string, bool) {
		switch {
		case r.srun != nil:
			return some(itoa(max(len(r.srun.TaskNodes), 1)))
		case r.step:
			return some("1")
		}
		return "", false
	}},
	{"Partition", 10, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string { return j.Spec.Partition })},
	{"Planned", 10, kindSecs, jobOnly(func(c *fmtCtx, j *api.Job) string {
		end := j.StartTime
		if end.IsZero() {
			end = c.now
		}
		return slurmSecs(max(int64(end.Sub(j.SubmitTime)/time.Second), 0))
	})},
	{"Priority", 10, kindNum, jobOnly(func(_ *fmtCtx, j *api.Job) string { return strconv.FormatInt(j.Priority, 10) })},
	{"QOS", 10, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string { return j.Spec.QOS })},
	{"QOSRAW", 6, kindNum, nil},
	{"Reason", 22, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string { return jobReason(j) })},
	{"ReqCPUFreq", 10, kindStr, nil},
	{"ReqCPUFreqGov", 13, kindStr, nil},
	{"ReqCPUFreqMax", 13, kindStr, nil},
	{"ReqCPUFreqMin", 13, kindStr, nil},
	{"ReqCPUS", 8, kindNum, func(_ *fmtCtx, r acctRow) (string, bool) {
		if r.step {
			return some(itoa(stepCPUs(r.job)))
		}
		return some(itoa(r.job.Spec.CPUsPerNode() * max(r.job.Spec.Nodes, 1)))
	}},
	{"ReqMem", 10, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string {
		if j.Spec.MemoryPerCPUMB > 0 && j.Spec.MemoryPerNodeMB == 0 {
			return memMB(j.Spec.MemoryPerCPUMB)
		}
		return memMB(jobMemPerNodeMB(j))
	})},
	{"ReqNodes", 8, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string { return itoa(max(j.Spec.Nodes, 1)) })},
	{"ReqTRES", 10, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string { return reqTRES(j) })},
	{"Reservation", 20, kindStr, nil},
	{"ReservationId", 13, kindNum, nil},
	{"Start", 19, kindDate, both(func(c *fmtCtx, j *api.Job) string { return slurmDate(j.StartTime, c.loc, "Unknown") })},
	{"State", 10, kindStr, func(_ *fmtCtx, r acctRow) (string, bool) { return some(acctState(r)) }},
	{"Submit", 19, kindDate, func(c *fmtCtx, r acctRow) (string, bool) {
		if r.step {
			return some(slurmDate(r.job.StartTime, c.loc, "Unknown"))
		}
		return some(slurmDate(r.job.SubmitTime, c.loc, "Unknown"))
	}},
	{"SubmitLine", 20, kindStr, nil},
	{"Suspended", 10, kindSecs, both(func(*fmtCtx, *api.Job) string { return slurmSecs(0) })},
	{"SystemComment", 15, kindStr, nil},
	{"SystemCPU", 10, kindStr, both(func(_ *fmtCtx, j *api.Job) string { return cpuTime(j.Usage.SystemTimeNs) })},
	{"Timelimit", 10, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string { return slurmLimit(j.TimeLimitSec) })},
	{"TimelimitRaw", 10, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string {
		if j.TimeLimitSec <= 0 {
			return "UNLIMITED"
		}
		return strconv.FormatInt(j.TimeLimitSec/60, 10)
	})},
	{"TotalCPU", 10, kindStr, both(func(_ *fmtCtx, j *api.Job) string { return cpuTime(j.Usage.CPUTimeNs) })},
	{"TRESUsageInAve", 14, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return usageIn(j) })},
	{"TRESUsageInMax", 14, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return usageIn(j) })},
	{"TRESUsageInMaxNode", 18, kindStr, nil},
	{"TRESUsageInMaxTask", 18, kindStr, nil},
	{"TRESUsageInMin", 14, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return usageIn(j) })},
	{"TRESUsageInMinNode", 18, kindStr, nil},
	{"TRESUsageInMinTask", 18, kindStr, nil},
	{"TRESUsageInTot", 14, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return usageIn(j) })},
	{"TRESUsageOutAve", 15, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return usageOut(j) })},
	{"TRESUsageOutMax", 15, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return usageOut(j) })},
	{"TRESUsageOutMaxNode", 19, kindStr, nil},
	{"TRESUsageOutMaxTask", 19, kindStr, nil},
	{"TRESUsageOutMin", 15, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return usageOut(j) })},
	{"TRESUsageOutMinNode", 19, kindStr, nil},
	{"TRESUsageOutMinTask", 19, kindStr, nil},
	{"TRESUsageOutTot", 15, kindStr, stepOnly(func(_ *fmtCtx, j *api.Job) string { return usageOut(j) })},
	{"UID", 6, kindNum, jobOnly(func(_ *fmtCtx, j *api.Job) string { return strconv.FormatUint(uint64(j.UID), 10) })},
	{"User", 9, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string { return j.User })},
	{"UserCPU", 10, kindStr, both(func(_ *fmtCtx, j *api.Job) string { return cpuTime(j.Usage.UserTimeNs) })},
	{"WCKey", 10, kindStr, nil},
	{"WCKeyID", 10, kindNum, nil},
	{"WorkDir", 20, kindStr, jobOnly(func(_ *fmtCtx, j *api.Job) string { return j.Spec.WorkDir })},

	// Stockade extensions, from the job attempt's usage record (empty
	// until it has one). After Slurm's fields, so that abbreviations keep
	// meaning what they mean in Slurm.
	{"Charge", 12, kindNum, recOnly(func(r *accounting.StoredRecord) (string, bool) { return some(formatMicro(r.Record.Charge)) })},
	{"Currency", 8, kindStr, recOnly(func(r *accounting.StoredRecord) (string, bool) { return some(r.Record.Currency) })},
	{"PriceVersion", 12, kindNum, recOnly(func(r *accounting.StoredRecord) (string, bool) {
		return some(strconv.FormatUint(r.Record.PriceVersion, 10))
	})},
	{"Epoch", 8, kindNum, recOnly(func(r *accounting.StoredRecord) (string, bool) {
		return strconv.FormatUint(r.Epoch, 10), r.Epoch != 0 // empty until sealed
	})},
	{"RecordSeq", 10, kindNum, recOnly(func(r *accounting.StoredRecord) (string, bool) { return some(strconv.FormatUint(r.Record.Seq, 10)) })},
	{"RecordHash", 66, kindStr, recOnly(func(r *accounting.StoredRecord) (string, bool) { return some(r.Hash.String()) })},
	{"Settlement", 10, kindStr, recOnly(func(r *accounting.StoredRecord) (string, bool) { return some(r.Settlement) })},
}

// sacctAliases are other names Slurm accepts for a field.
var sacctAliases = map[string]string{"reserved": "Planned", "jobstep": "JobID"}

// parseSacctFields resolves a --format list ("JobID,State%20"): names are
// case-insensitive, an abbreviation picks the first field in table order
// that it starts, as in Slurm, and %N sets the width (negative:
// left-justified).
func parseSacctFields(spec string) ([]acctField, error) {
	var out []acctField
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, widthStr, hasWidth := strings.Cut(item, "%")
		var f *acctField
		lname := strings.ToLower(name)
		if alias, ok := sacctAliases[lname]; ok {
			lname = strings.ToLower(alias)
		}
		for i := range sacctFields {
			if strings.ToLower(sacctFields[i].name) == lname {
				f = &sacctFields[i]
				break
			}
		}
		if f == nil && lname != "" {
			for i := range sacctFields {
				if strings.HasPrefix(strings.ToLower(sacctFields[i].name), lname) {
					f = &sacctFields[i]
					break
				}
			}
		}
		if f == nil {
			return nil, fmt.Errorf("Invalid field requested: \"%s\"", name)
		}
		fld := *f
		if !fieldWidth(&fld.width, widthStr, hasWidth) {
			return nil, fmt.Errorf("Invalid field requested: \"%s\"", item)
		}
		out = append(out, fld)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no fields requested")
	}
	return out, nil
}

// sacctOutput says how sacct prints: aligned columns, or delimited with
// (parsable) or without (parsable2) a trailing delimiter.
type sacctOutput struct {
	parsable  bool
	trailing  bool // -p: delimiter after the last field too
	delimiter string
	noHeader  bool
}

// cell renders one aligned field as print_fields_* do, followed by the
// space that separates columns (the last column too).
func cell(f acctField, v string, ok bool) string {
	abs := f.width
	if abs < 0 {
		abs = -abs
	}
	right := f.width > 0
	if !ok {
		v = " "
	} else if f.kind == kindStr && utf8.RuneCountInString(v) > abs {
		r := []rune(v)
		v = string(r[:abs-1]) + "+"
	} else if f.kind == kindDate && utf8.RuneCountInString(v) > abs {
		v = string([]rune(v)[:abs])
	}
	return padStr(v, abs, right, false) + " "
}

// renderSacct prints rows with fields.
func renderSacct(c *fmtCtx, fields []acctField, rows []acctRow, o sacctOutput) string {
	var b strings.Builder
	delim := o.delimiter
	if delim == "" {
		delim = "|"
	}
	line := func(vals []string, oks []bool) {
		for i, f := range fields {
			if o.parsable {
				v := vals[i]
				if !oks[i] {
					v = ""
				}
				b.WriteString(v)
				if i < len(fields)-1 || o.trailing {
					b.WriteString(delim)
				}
				continue
			}
			b.WriteString(cell(f, vals[i], oks[i]))
		}
		b.WriteByte('\n')
	}
	if !o.noHeader {
		if o.parsable {
			names := make([]string, len(fields))
			oks := make([]bool, len(fields))
			for i, f := range fields {
				names[i], oks[i] = f.name, true
			}
			line(names, oks)
		} else {
			cols := make([]printCol, len(fields))
			for i, f := range fields {
				cols[i] = printCol{header: f.name, width: f.width}
			}
			alignedHeader(&b, cols)
		}
	}
	for _, r := range rows {
		vals := make([]string, len(fields))
		oks := make([]bool, len(fields))
		for i, f := range fields {
			if f.value != nil {
				vals[i], oks[i] = f.value(c, r)
			}
			if f.kind == kindDate && !oks[i] {
				// print_fields_date prints an unset time as Unknown.
				vals[i], oks[i] = "Unknown", true
			}
		}
		line(vals, oks)
	}
	return b.String()
}

// acctRows expands jobs into lines: each job, then its batch step once it
// has started (unless allocationsOnly, sacct -X).
func acctRows(jobs []api.Job, allocationsOnly bool) []acctRow {
	return acctRowsSteps(jobs, nil, allocationsOnly)
}

// acctRowsSteps is acctRows with each started job's srun steps (by job id)
// after its batch step, in step order.
func acctRowsSteps(jobs []api.Job, steps map[uint64][]api.JobStep, allocationsOnly bool) []acctRow {
	return acctRowsItems(itemsOf(jobs), steps, allocationsOnly)
}

// acctRowsItems is acctRowsSteps over job attempts; an earlier attempt
// has its batch step but no srun steps (those are the current one's).
func acctRowsItems(items []acctItem, steps map[uint64][]api.JobStep, allocationsOnly bool) []acctRow {
	var rows []acctRow
	for i := range items {
		j := &items[i].job
		rows = append(rows, acctRow{job: j, rec: items[i].rec})
		if allocationsOnly || j.StartTime.IsZero() {
			continue
		}
		rows = append(rows, acctRow{job: j, step: true})
		if items[i].earlier {
			continue
		}
		for _, s := range sortedSteps(steps[j.ID]) {
			rows = append(rows, acctRow{job: stepAsJob(j, s), step: true, srun: s})
		}
	}
	return rows
}

// sortedSteps returns pointers to a job's steps by step id.
func sortedSteps(steps []api.JobStep) []*api.JobStep {
	out := make([]*api.JobStep, len(steps))
	for i := range steps {
		out[i] = &steps[i]
	}
	slices.SortFunc(out, func(a, b *api.JobStep) int { return cmp.Compare(a.StepID, b.StepID) })
	return out
}

// sacctHelpFormat lists the field names, four per line (sacct -e).
func sacctHelpFormat() string {
	var b strings.Builder
	for i, f := range sacctFields {
		if i%4 != 0 {
			b.WriteByte(' ')
		} else if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%-20s", f.name)
	}
	b.WriteByte('\n')
	return b.String()
}

// sacct --json, in the shape of Slurm's (plain numbers for times and
// codes).
type acctTRES struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

type acctExit struct {
	Status     []string `json:"status"`
	ReturnCode int      `json:"return_code"`
	Signal     struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	} `json:"signal"`
}

type acctCPUTime struct {
	Seconds      int64 `json:"seconds"`
	Microseconds int64 `json:"microseconds"`
}

type acctTime struct {
	Elapsed    int64       `json:"elapsed"`
	Submission int64       `json:"submission"`
	Start      int64       `json:"start"`
	End        int64       `json:"end"`
	Limit      *int64      `json:"limit,omitempty"` // minutes; absent: unlimited
	Total      acctCPUTime `json:"total"`
	User       acctCPUTime `json:"user"`
	System     acctCPUTime `json:"system"`
}

type acctStep struct {
	Step struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"step"`
	State    string   `json:"state"`
	ExitCode acctExit `json:"exit_code"`
	Time     acctTime `json:"time"`
	Nodes    struct {
		Count int      `json:"count"`
		List  []string `json:"list"`
	} `json:"nodes"`
	Tasks struct {
		Count int `json:"count"`
	} `json:"tasks"`
	TRES struct {
		Allocated []acctTRES `json:"allocated"`
		Requested struct {
			Max []acctTRES `json:"max"`
		} `json:"requested"`
		Consumed struct {
			Max []acctTRES `json:"max"`
		} `json:"consumed"`
	} `json:"tres"`
}

type acctJob struct {
	JobID     uint64 `json:"job_id"`
	Name      string `json:"name"`
	User      string `json:"user"`
	Group     string `json:"group"`
	Account   string `json:"account"`
	Partition string `json:"partition"`
	QOS       string `json:"qos"`
	Array     struct {
		JobID  uint64 `json:"job_id"`
		TaskID *int   `json:"task_id"`
	} `json:"array"`
	State struct {
		Current []string `json:"current"`
		Reason  string   `json:"reason"`
	} `json:"state"`
	ExitCode        acctExit `json:"exit_code"`
	DerivedExitCode acctExit `json:"derived_exit_code"`
	Time            acctTime `json:"time"`
	Nodes           string   `json:"nodes"`
	AllocationNodes int      `json:"allocation_nodes"`
	Priority        int64    `json:"priority"`
	Restarts        int      `json:"restart_cnt"`
	WorkDir         string   `json:"working_directory"`
	Comment         string   `json:"comment"`
	TRES            struct {
		Allocated []acctTRES `json:"allocated"`
		Requested []acctTRES `json:"requested"`
	} `json:"tres"`
	Steps []acctStep `json:"steps"`
	// UsageRecord is the attempt's usage record (a Stockade extension).
	UsageRecord *accounting.StoredRecord `json:"usage_record,omitempty"`
}

func nsTime(ns uint64) acctCPUTime {
	return acctCPUTime{Seconds: int64(ns / 1e9), Microseconds: int64(ns % 1e9 / 1e3)}
}

func acctExitOf(j *api.Job) acctExit {
	var e acctExit
	e.ReturnCode = j.ExitCode
	e.Signal.ID = j.ExitSignal
	switch {
	case !j.State.Terminal():
		e.Status = []string{"PENDING"}
	case j.ExitSignal != 0:
		e.Status = []string{"SIGNALED"}
		e.Signal.Name = signalName(j.ExitSignal)
	case j.ExitCode != 0:
		e.Status = []string{"ERROR"}
	default:
		e.Status = []string{"SUCCESS"}
	}
	return e
}

func signalName(sig int) string {
	names := map[int]string{1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS",
		8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM",
		15: "SIGTERM", 24: "SIGXCPU", 25: "SIGXFSZ"}
	return names[sig]
}

// tresList parses "cpu=2,mem=4G,node=1" into JSON TRES entries; memory
// counts are in MiB, as Slurm's JSON has them.
func tresList(s string) []acctTRES {
	out := []acctTRES{}
	if s == "" {
		return out
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		t := acctTRES{Type: k}
		if typ, name, ok := strings.Cut(k, "/"); ok {
			t.Type, t.Name = typ, name
		}
		t.Count = parseMemMB(v)
		out = append(out, t)
	}
	return out
}

// parseMemMB reads the numbers memMB prints back as MiB (plain numbers
// stay as they are).
func parseMemMB(v string) int64 {
	mult := 1.0
	switch {
	case strings.HasSuffix(v, "M"):
		v = v[:len(v)-1]
	case strings.HasSuffix(v, "G"):
		v, mult = v[:len(v)-1], 1024
	case strings.HasSuffix(v, "T"):
		v, mult = v[:len(v)-1], 1024*1024
	}
	f, _ := strconv.ParseFloat(v, 64)
	return int64(f * mult)
}

// sacctJSON renders jobs as sacct --json does: {"jobs": [...]}.
func sacctJSON(c *fmtCtx, jobs []api.Job, allocationsOnly bool) ([]byte, error) {
	return sacctJSONSteps(c, jobs, nil, allocationsOnly)
}

// acctTimeOf is a job's times in sacct --json, submitted at submit.
func acctTimeOf(j *api.Job, submit, now time.Time) acctTime {
	t := acctTime{
		Elapsed: jobElapsed(j, now), Submission: unixOrZero(submit), Start: unixOrZero(j.StartTime),
		Total: nsTime(j.Usage.CPUTimeNs), User: nsTime(j.Usage.UserTimeNs), System: nsTime(j.Usage.SystemTimeNs),
	}
	if j.State.Terminal() {
		t.End = unixOrZero(j.EndTime)
	}
	return t
}

// acctStepOf is one step of sacct --json: r's job is the step seen as a
// job, run as tasks tasks on nodes.
func acctStepOf(r acctRow, id, name string, t acctTime, nodes []string, tasks int) acctStep {
	j := r.job
	var s acctStep
	s.Step.ID, s.Step.Name = id, name
	s.State, s.ExitCode, s.Time = acctState(r), acctExitOf(j), t
	s.Nodes.Count, s.Nodes.List = len(nodes), nodes
	s.Tasks.Count = tasks
	s.TRES.Allocated = tresList(stepTRES(j, len(nodes)))
	s.TRES.Requested.Max = []acctTRES{
		{Type: "cpu", Count: int64(j.Usage.CPUTimeNs / 1e6)},
		{Type: "fs", Name: "disk", Count: int64(j.Usage.BlockReadB)},
		{Type: "mem", Count: int64(j.Usage.MaxRSSB)},
	}
	s.TRES.Consumed.Max = []acctTRES{{Type: "fs", Name: "disk", Count: int64(j.Usage.BlockWriteB)}}
	return s
}

// acctStepJSON is one srun step of sacct --json.
func acctStepJSON(c *fmtCtx, j *api.Job, st *api.JobStep) acctStep {
	sj := stepAsJob(j, st)
	return acctStepOf(acctRow{job: sj, step: true, srun: st}, strconv.FormatUint(j.ID, 10)+"."+itoa(st.StepID), st.Name,
		acctTimeOf(sj, sj.StartTime, c.now), append([]string{}, st.Nodes...), max(len(st.TaskNodes), 1))
}

// sacctJSONSteps is sacctJSON with the jobs' srun steps (by job id).
func sacctJSONSteps(c *fmtCtx, jobs []api.Job, steps map[uint64][]api.JobStep, allocationsOnly bool) ([]byte, error) {
	return sacctJSONItems(c, itemsOf(jobs), steps, allocationsOnly)
}

// sacctJSONItems is sacctJSONSteps over job attempts, each with its usage
// record.
func sacctJSONItems(c *fmtCtx, items []acctItem, steps map[uint64][]api.JobStep, allocationsOnly bool) ([]byte, error) {
	out := struct {
		Jobs []acctJob `json:"jobs"`
	}{Jobs: []acctJob{}}
	for i := range items {
		j := &items[i].job
		o := acctJob{
			JobID: j.ID, Name: j.Spec.Name, User: j.User, Group: c.group(j.GID), Account: j.Spec.Account,
			Partition: j.Spec.Partition, QOS: j.Spec.QOS, ExitCode: acctExitOf(j), DerivedExitCode: acctExitOf(j),
			Nodes: jobNodeList(j), AllocationNodes: len(j.Nodes), Priority: j.Priority, Restarts: j.Restarts,
			WorkDir: j.Spec.WorkDir, Comment: j.Spec.Comment, Steps: []acctStep{}, UsageRecord: items[i].rec,
		}
		if isArrayTask(j) {
			o.Array.JobID = j.ArrayJobID
			t := j.ArrayTaskID
			o.Array.TaskID = &t
		}
		o.State.Current = []string{string(j.State)}
		o.State.Reason = jobReason(j)
		o.Time = acctTimeOf(j, j.SubmitTime, c.now)
		if j.TimeLimitSec > 0 {
			m := j.TimeLimitSec / 60
			o.Time.Limit = &m
		}
		o.TRES.Requested = tresList(reqTRES(j))
		o.TRES.Allocated = []acctTRES{}
		if jobStarted(j) {
			o.TRES.Allocated = tresList(allocTRES(j))
		}
		if !allocationsOnly && !j.StartTime.IsZero() {
			o.Steps = append(o.Steps, acctStepOf(acctRow{job: j, step: true}, strconv.FormatUint(j.ID, 10)+".batch", "batch",
				acctTimeOf(j, j.SubmitTime, c.now), []string{firstNodeName(j)}, 1))
			var srun []*api.JobStep
			if !items[i].earlier { // the srun steps are the current attempt's
				srun = sortedSteps(steps[j.ID])
			}
			for _, st := range srun {
				o.Steps = append(o.Steps, acctStepJSON(c, j, st))
			}
		}
		out.Jobs = append(out.Jobs, o)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
