package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
)

// squeue's default formats (squeue -l for the long one).
const (
	squeueDefaultFormat = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"
	squeueLongFormat    = "%.18i %.9P %.8j %.8u %.8T %.10M %.9l %.6D %R"
	squeueStartFormat   = "%.18i %.9P %.8j %.8u %.2t %.19S %.6D %20Y %R"
)

// fmtCtx is what formatting needs besides the records: the clock for
// elapsed times, the zone for dates and a group name lookup.
type fmtCtx struct {
	now       time.Time
	loc       *time.Location
	groupName func(gid uint32) string
}

func (c *fmtCtx) group(gid uint32) string {
	if c.groupName != nil {
		if n := c.groupName(gid); n != "" {
			return n
		}
	}
	return strconv.FormatUint(uint64(gid), 10)
}

// jobField is one squeue % code: its header and value, and whether the
// value is cut to the field width (node lists and times are not).
type jobField struct {
	header    string
	value     func(c *fmtCtx, j *api.Job) string
	noCut     bool // value printed whole even when wider than the field
	noCutHead bool
}

func orNull(s string) string {
	if s == "" {
		return "(null)"
	}
	return s
}

func dateOrNA(t time.Time, c *fmtCtx) string { return slurmDate(t, c.loc, "N/A") }

// squeueCodes are the supported -o codes, with squeue's headers.
var squeueCodes = map[byte]jobField{
	'a': {header: "ACCOUNT", value: func(_ *fmtCtx, j *api.Job) string { return j.Spec.Account }},
	'A': {header: "JOBID", value: func(_ *fmtCtx, j *api.Job) string { return strconv.FormatUint(j.ID, 10) }},
	'b': {header: "TRES_PER_NODE", value: func(_ *fmtCtx, j *api.Job) string {
		if g := jobGres(j); g != "" {
			return g
		}
		return "N/A"
	}},
	'B': {header: "EXEC_HOST", value: func(_ *fmtCtx, j *api.Job) string {
		if len(j.Nodes) > 0 {
			return j.Nodes[0]
		}
		return "n/a"
	}},
	'c': {header: "MIN_CPUS", value: func(_ *fmtCtx, j *api.Job) string { return strconv.Itoa(j.Spec.CPUsPerNode()) }},
	'C': {header: "CPUS", value: func(_ *fmtCtx, j *api.Job) string { return strconv.Itoa(jobCPUs(j)) }},
	'D': {header: "NODES", value: func(_ *fmtCtx, j *api.Job) string { return strconv.Itoa(jobNodeCount(j)) }},
	'e': {header: "END_TIME", value: func(c *fmtCtx, j *api.Job) string {
		if j.State == api.JobRunning && j.TimeLimitSec <= 0 {
			return "NONE"
		}
		return dateOrNA(jobEnd(j), c)
	}},
	'E': {header: "DEPENDENCY", value: func(_ *fmtCtx, j *api.Job) string { return j.Spec.Dependency }},
	'f': {header: "FEATURES", value: func(_ *fmtCtx, j *api.Job) string { return orNull(strings.Join(j.Spec.Constraints, "&")) }},
	'F': {header: "ARRAY_JOB_ID", value: func(_ *fmtCtx, j *api.Job) string { return strconv.FormatUint(arrayJobID(j), 10) }},
	'g': {header: "GROUP", value: func(c *fmtCtx, j *api.Job) string { return c.group(j.GID) }},
	'G': {header: "GROUP", value: func(_ *fmtCtx, j *api.Job) string { return strconv.FormatUint(uint64(j.GID), 10) }},
	'h': {header: "OVER_SUBSCRIBE", value: func(_ *fmtCtx, j *api.Job) string {
		if j.Spec.Exclusive {
			return "NO"
		}
		return "OK"
	}},
	'i': {header: "JOBID", value: func(_ *fmtCtx, j *api.Job) string { return j.DisplayID() }},
	'j': {header: "NAME", value: func(_ *fmtCtx, j *api.Job) string { return j.Spec.Name }},
	'k': {header: "COMMENT", value: func(_ *fmtCtx, j *api.Job) string { return orNull(j.Spec.Comment) }},
	'K': {header: "ARRAY_TASK_ID", value: func(_ *fmtCtx, j *api.Job) string {
		if isArrayTask(j) {
			return strconv.Itoa(j.ArrayTaskID)
		}
		return "N/A"
	}},
	'l': {header: "TIME_LIMIT", noCut: true, value: func(_ *fmtCtx, j *api.Job) string {
		if j.TimeLimitSec <= 0 {
			return "UNLIMITED"
		}
		return squeueSecs(j.TimeLimitSec, true)
	}},
	'L': {header: "TIME_LEFT", noCut: true, value: func(c *fmtCtx, j *api.Job) string {
		if j.TimeLimitSec <= 0 {
			return "UNLIMITED"
		}
		return squeueSecs(j.TimeLimitSec-jobElapsed(j, c.now), true)
	}},
	'm': {header: "MIN_MEMORY", value: func(_ *fmtCtx, j *api.Job) string {
		if j.Spec.MemoryPerCPUMB > 0 && j.Spec.MemoryPerNodeMB == 0 {
			return memMB(j.Spec.MemoryPerCPUMB)
		}
		return memMB(jobMemPerNodeMB(j))
	}},
	'M': {header: "TIME", noCut: true, value: func(c *fmtCtx, j *api.Job) string { return squeueSecs(jobElapsed(j, c.now), true) }},
	'n': {header: "REQ_NODES", noCut: true, value: func(_ *fmtCtx, j *api.Job) string { return hostlist.Compress(j.Spec.NodeList) }},
	'N': {header: "NODELIST", noCut: true, noCutHead: true, value: func(_ *fmtCtx, j *api.Job) string { return jobNodeList(j) }},
	'o': {header: "COMMAND", value: func(_ *fmtCtx, j *api.Job) string { return jobCommand(j) }},
	'O': {header: "CONTIGUOUS", value: func(_ *fmtCtx, _ *api.Job) string { return "0" }},
	'p': {header: "PRIORITY", value: func(_ *fmtCtx, j *api.Job) string {
		return fmt.Sprintf("%16.14f", float64(uint32(max(j.Priority, 0)))/float64(0xffffffff))
	}},
	'P': {header: "PARTITION", value: func(_ *fmtCtx, j *api.Job) string { return j.Spec.Partition }},
	'q': {header: "QOS", value: func(_ *fmtCtx, j *api.Job) string { return j.Spec.QOS }},
	'Q': {header: "PRIORITY", value: func(_ *fmtCtx, j *api.Job) string { return strconv.FormatInt(j.Priority, 10) }},
	'r': {header: "REASON", value: func(_ *fmtCtx, j *api.Job) string { return jobReason(j) }},
	'R': {header: "NODELIST(REASON)", noCutHead: true, value: nil}, // see reasonList
	'S': {header: "START_TIME", value: func(c *fmtCtx, j *api.Job) string { return dateOrNA(jobStartTime(j), c) }},
	't': {header: "ST", value: func(_ *fmtCtx, j *api.Job) string { return j.State.Short() }},
	'T': {header: "STATE", value: func(_ *fmtCtx, j *api.Job) string { return string(j.State) }},
	'u': {header: "USER", value: func(_ *fmtCtx, j *api.Job) string { return j.User }},
	'U': {header: "UID", value: func(_ *fmtCtx, j *api.Job) string { return strconv.FormatUint(uint64(j.UID), 10) }},
	'V': {header: "SUBMIT_TIME", value: func(c *fmtCtx, j *api.Job) string { return dateOrNA(j.SubmitTime, c) }},
	'x': {header: "EXC_NODES", noCut: true, value: func(_ *fmtCtx, j *api.Job) string { return hostlist.Compress(j.Spec.ExcludeNodes) }},
	// Stockade plans no nodes for pending jobs ahead of their start.
	'Y': {header: "SCHEDNODES", value: func(_ *fmtCtx, _ *api.Job) string { return "(null)" }},
	'y': {header: "NICE", value: func(_ *fmtCtx, j *api.Job) string { return strconv.Itoa(j.Spec.Nice) }},
	'Z': {header: "WORK_DIR", value: func(_ *fmtCtx, j *api.Job) string { return j.Spec.WorkDir }},
}

// jobStartTime is %S: a pending job's expected start (zero when the
// scheduler has none), else when the job started.
func jobStartTime(j *api.Job) time.Time {
	if j.State == api.JobPending {
		return j.ExpectedStart
	}
	return j.StartTime
}

// compareStart orders start times with unknown (zero) ones last.
func compareStart(a, b time.Time) int {
	switch {
	case a.IsZero() && b.IsZero():
		return 0
	case a.IsZero():
		return 1
	case b.IsZero():
		return -1
	}
	return a.Compare(b)
}

// reasonList is %R: "(Reason)" for jobs that wait or ended badly, the
// node list otherwise. The reason is cut to the width, the list never.
func reasonList(j *api.Job) (string, bool) {
	switch j.State {
	case api.JobPending, api.JobTimeout, api.JobOutOfMemory, api.JobFailed:
		return "(" + jobReason(j) + ")", true
	}
	return jobNodeList(j), false
}

// jobCommand is Slurm's COMMAND: the script's path. Stockade sends the
// script's text, not its path, so this is (null), as Slurm prints for
// --wrap and standard-input scripts.
func jobCommand(*api.Job) string { return "(null)" }

// fmtItem is one parsed field of a format: its code, width, justification
// and the literal text that follows it.
type fmtItem struct {
	code   byte // 0 for a leading literal
	width  int
	right  bool
	auto   bool // "#": as wide as the longest value (sinfo %#P, %#N)
	suffix string
}

// parseSlurmFormat splits a squeue/sinfo format string as Slurm does:
// text before the first % is a prefix; each "%[.][width|#]c" is a field
// and the text up to the next % its suffix. Runs of % collapse (strtok).
func parseSlurmFormat(format string) []fmtItem {
	var items []fmtItem
	if i := strings.IndexByte(format, '%'); i != 0 {
		if i < 0 {
			return []fmtItem{{suffix: format}}
		}
		items = append(items, fmtItem{suffix: format[:i]})
	}
	for _, tok := range strings.Split(format, "%")[1:] {
		if tok == "" {
			continue
		}
		var it fmtItem
		k := 0
		if tok[k] == '.' {
			it.right = true
			k++
		}
		if k < len(tok) && tok[k] == '#' {
			it.auto = true
			k++
		}
		for k < len(tok) && tok[k] >= '0' && tok[k] <= '9' {
			it.width = it.width*10 + int(tok[k]-'0')
			k++
		}
		if k < len(tok) {
			it.code = tok[k]
			it.suffix = tok[k+1:]
		} else {
			it.code = '?'
		}
		items = append(items, it)
	}
	return items
}

// squeueLayout is a parsed -o format with its unknown codes dropped.
type squeueLayout struct {
	items []fmtItem
}

// newSqueueLayout parses format; unknown codes are reported and skipped,
// as squeue does.
func newSqueueLayout(format string) (squeueLayout, []string) {
	var l squeueLayout
	var bad []string
	for _, it := range parseSlurmFormat(format) {
		if it.code != 0 {
			if _, ok := squeueCodes[it.code]; !ok {
				bad = append(bad, "Invalid job format specification: "+string(it.code))
				continue
			}
		}
		l.items = append(l.items, it)
	}
	return l, bad
}

// uses reports whether the layout prints the field code.
func (l squeueLayout) uses(code byte) bool {
	return slices.ContainsFunc(l.items, func(it fmtItem) bool { return it.code == code })
}

// render prints the header (unless noHeader) and one line per job.
func (l squeueLayout) render(c *fmtCtx, jobs []api.Job, noHeader bool) string {
	var b strings.Builder
	if !noHeader {
		for _, it := range l.items {
			if it.code != 0 {
				f := squeueCodes[it.code]
				b.WriteString(padStr(f.header, it.width, it.right, !f.noCutHead))
			}
			b.WriteString(it.suffix)
		}
		b.WriteByte('\n')
	}
	for i := range jobs {
		j := &jobs[i]
		for _, it := range l.items {
			if it.code != 0 {
				f := squeueCodes[it.code]
				if it.code == 'R' {
					v, cut := reasonList(j)
					b.WriteString(padStr(v, it.width, it.right, cut))
				} else {
					b.WriteString(padStr(f.value(c, j), it.width, it.right, !f.noCut))
				}
			}
			b.WriteString(it.suffix)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// squeueLongNames maps squeue -O field names to % codes.
var squeueLongNames = map[string]byte{
	"account": 'a', "arrayjobid": 'F', "arraytaskid": 'K', "command": 'o', "comment": 'k',
	"contiguous": 'O', "dependency": 'E', "endtime": 'e', "exechost": 'B', "excnodes": 'x',
	"feature": 'f', "groupid": 'G', "groupname": 'g', "jobarrayid": 'i', "jobid": 'A',
	"mincpus": 'c', "minmemory": 'm', "name": 'j', "nice": 'y', "nodelist": 'N',
	"numcpus": 'C', "numnodes": 'D', "oversubscribe": 'h', "partition": 'P', "priority": 'p',
	"prioritylong": 'Q', "qos": 'q', "reason": 'r', "reasonlist": 'R', "reqnodes": 'n',
	"starttime": 'S', "state": 'T', "statecompact": 't', "submittime": 'V', "timeleft": 'L',
	"timelimit": 'l', "timeused": 'M', "tres-per-node": 'b', "userid": 'U', "username": 'u',
	"workdir": 'Z',
}

// squeueLongFormatToShort converts a -O list ("JobID:10,Name:.20,State")
// into an -o format. Fields are 20 wide unless sized; "." right-justifies.
func squeueLongFormatToShort(spec string) (string, error) {
	var b strings.Builder
	for _, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, size, hasSize := strings.Cut(f, ":")
		code, ok := squeueLongNames[strings.ToLower(name)]
		if !ok {
			return "", fmt.Errorf("Invalid job format specification: %s", name)
		}
		right := false
		if hasSize && strings.HasPrefix(size, ".") {
			right = true
			size = size[1:]
		}
		width := 20
		if hasSize && size != "" {
			n, err := strconv.Atoi(size)
			if err != nil || n < 0 {
				return "", fmt.Errorf("Invalid job format specification: %s", f)
			}
			width = n
		}
		b.WriteByte('%')
		if right {
			b.WriteByte('.')
		}
		b.WriteString(strconv.Itoa(width))
		b.WriteByte(code)
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("empty --Format")
	}
	return b.String(), nil
}

// squeueJSONJob is one job of squeue --json, named as Slurm's fields.
type squeueJSONJob struct {
	JobID         uint64  `json:"job_id"`
	ArrayJobID    uint64  `json:"array_job_id"`
	ArrayTaskID   *int    `json:"array_task_id"`
	Name          string  `json:"name"`
	JobState      string  `json:"job_state"`
	StateReason   string  `json:"state_reason"`
	UserName      string  `json:"user_name"`
	UserID        uint32  `json:"user_id"`
	GroupID       uint32  `json:"group_id"`
	Account       string  `json:"account"`
	Partition     string  `json:"partition"`
	QOS           string  `json:"qos"`
	Nodes         string  `json:"nodes"`
	NodeCount     int     `json:"node_count"`
	CPUs          int     `json:"cpus"`
	MemoryPerNode int64   `json:"memory_per_node"`
	Priority      int64   `json:"priority"`
	SubmitTime    int64   `json:"submit_time"`
	StartTime     int64   `json:"start_time"`
	EndTime       int64   `json:"end_time"`
	TimeLimit     *int64  `json:"time_limit"` // minutes; null: unlimited
	Elapsed       int64   `json:"elapsed"`    // seconds
	WorkDir       string  `json:"current_working_directory"`
	StdOut        string  `json:"standard_output"`
	StdErr        string  `json:"standard_error"`
	Dependency    string  `json:"dependency"`
	Comment       string  `json:"comment"`
	ExitCode      *[2]int `json:"exit_code"` // [status, signal] once ended
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// squeueJSON renders jobs as squeue --json does: {"jobs": [...]}.
func squeueJSON(c *fmtCtx, jobs []api.Job) ([]byte, error) {
	out := struct {
		Jobs []squeueJSONJob `json:"jobs"`
	}{Jobs: []squeueJSONJob{}}
	for i := range jobs {
		j := &jobs[i]
		o := squeueJSONJob{
			JobID: j.ID, Name: j.Spec.Name, JobState: string(j.State), StateReason: jobReason(j),
			UserName: j.User, UserID: j.UID, GroupID: j.GID, Account: j.Spec.Account,
			Partition: j.Spec.Partition, QOS: j.Spec.QOS, Nodes: jobNodeList(j), NodeCount: jobNodeCount(j),
			CPUs: jobCPUs(j), MemoryPerNode: jobMemPerNodeMB(j), Priority: j.Priority,
			SubmitTime: unixOrZero(j.SubmitTime), StartTime: unixOrZero(j.StartTime), EndTime: unixOrZero(jobEnd(j)),
			Elapsed: jobElapsed(j, c.now), WorkDir: j.Spec.WorkDir,
			StdOut: jobStdPath(j, j.Spec.Output), StdErr: jobStdPath(j, errPattern(j)),
			Dependency: j.Spec.Dependency, Comment: j.Spec.Comment,
		}
		if isArrayTask(j) {
			o.ArrayJobID = j.ArrayJobID
			t := j.ArrayTaskID
			o.ArrayTaskID = &t
		}
		if j.TimeLimitSec > 0 {
			m := j.TimeLimitSec / 60
			o.TimeLimit = &m
		}
		if j.State.Terminal() {
			o.ExitCode = &[2]int{j.ExitCode, j.ExitSignal}
		}
		out.Jobs = append(out.Jobs, o)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// errPattern is the job's error file pattern: --error, else --output
// (stderr goes where stdout goes unless told otherwise).
func errPattern(j *api.Job) string {
	if j.Spec.Error != "" {
		return j.Spec.Error
	}
	return j.Spec.Output
}
