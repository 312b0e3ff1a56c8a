package sbatch

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
)

type argKind int

const (
	noArg argKind = iota
	reqArg
	optArg // getopt's optional_argument: only "--opt=value" gives a value
)

// optDef is one sbatch option. Options with a nil set are Slurm options
// Stockade accepts and ignores with a warning.
type optDef struct {
	long, short string
	arg         argKind
	bare        string // value of an optArg option given without one
	usage       string
	set         func(p *parser, v string) error
}

// options accumulates what the three sources (directives, environment,
// command line) set; later sources overwrite earlier ones.
type options struct {
	jobName, partition, account, qos, comment, mailType, mailUser string
	reservation                                                   string
	begin                                                         time.Time

	nodes, ntasks, cpusPerTask, ntasksPerNode int
	nodesSet, ntasksSet                       bool

	mem, memPerCPU         int64
	memFrom, memPerCPUFrom source // zero when not given

	timeSec int64
	timeSet bool

	output, errPath, openMode string

	warnSignal, warnTime int
	warnBatch            bool

	array      string
	arrayTasks []int
	arrayMax   int

	dependency string
	deps       []api.Dependency

	gresGPUs, gpus, gpusPerNode      int
	gresSet, gpusSet, gpusPerNodeSet bool

	export    string
	exportSet bool

	chdir             string
	hold, requeue     bool
	exclude, nodelist []string
	constraints       []string
	exclusive         bool
	nice              int
	wrap              string
	wrapSet           bool
	image             string

	parsable, testOnly, dryRun, json bool
	help, version                    bool
}

var errNoArgument = errors.New("option takes no argument")

// implemented lists the options Stockade acts on. The first group are
// Slurm's, the last Stockade's own.
var implemented = []optDef{
	{long: "job-name", short: "J", arg: reqArg, usage: "name of the job",
		set: func(p *parser, v string) error { p.o.jobName = v; return nil }},
	{long: "partition", short: "p", arg: reqArg, usage: "partition requested",
		set: func(p *parser, v string) error { p.o.partition = v; return nil }},
	{long: "account", short: "A", arg: reqArg, usage: "charge job to the account",
		set: func(p *parser, v string) error { p.o.account = v; return nil }},
	{long: "qos", short: "q", arg: reqArg, usage: "quality of service",
		set: func(p *parser, v string) error { p.o.qos = v; return nil }},
	{long: "reservation", arg: reqArg, usage: "run the job in this reservation",
		set: func(p *parser, v string) error { p.o.reservation = v; return nil }},
	{long: "begin", short: "b", arg: reqArg, usage: "defer the job until this time (now+1hour, 16:00, 2026-01-31T08:00)",
		set: func(p *parser, v string) (err error) { p.o.begin, err = ParseBegin(v, p.now()); return err }},
	{long: "nodes", short: "N", arg: reqArg, usage: "number of nodes (N or min-max; the minimum is used)",
		set: setNodes},
	{long: "ntasks", short: "n", arg: reqArg, usage: "number of tasks",
		set: func(p *parser, v string) (err error) {
			p.o.ntasks, err = positive(v)
			p.o.ntasksSet = err == nil
			return err
		}},
	{long: "cpus-per-task", short: "c", arg: reqArg, usage: "CPUs per task",
		set: func(p *parser, v string) (err error) { p.o.cpusPerTask, err = positive(v); return err }},
	{long: "ntasks-per-node", arg: reqArg, usage: "tasks on each node",
		set: func(p *parser, v string) (err error) { p.o.ntasksPerNode, err = positive(v); return err }},
	{long: "mem", arg: reqArg, usage: "memory per node (K, M, G, T suffix; MiB without)",
		set: func(p *parser, v string) (err error) {
			p.o.mem, err = ParseMemory(v)
			p.o.memFrom = p.src
			return err
		}},
	{long: "mem-per-cpu", arg: reqArg, usage: "memory per allocated CPU",
		set: func(p *parser, v string) (err error) {
			p.o.memPerCPU, err = ParseMemory(v)
			p.o.memPerCPUFrom = p.src
			return err
		}},
	{long: "time", short: "t", arg: reqArg, usage: "time limit (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S)",
		set: func(p *parser, v string) (err error) {
			p.o.timeSec, err = ParseTime(v)
			p.o.timeSet = true
			return err
		}},
	{long: "signal", arg: reqArg, usage: "[B:]SIG[@TIME]: send SIG (name or number) TIME seconds (default 60) before the time limit; B: to the batch shell only",
		set: func(p *parser, v string) (err error) {
			p.o.warnSignal, p.o.warnTime, p.o.warnBatch, err = ParseSignalOption(v)
			return err
		}},
	{long: "output", short: "o", arg: reqArg, usage: "file for the script's standard output",
		set: func(p *parser, v string) error { p.o.output = v; return nil }},
	{long: "error", short: "e", arg: reqArg, usage: "file for the script's standard error",
		set: func(p *parser, v string) error { p.o.errPath = v; return nil }},
	{long: "open-mode", arg: reqArg, usage: "append or truncate output files",
		set: func(p *parser, v string) error {
			switch {
			case v != "" && (v[0] == 'a' || v[0] == 'A'):
				p.o.openMode = "append"
			case v != "" && (v[0] == 't' || v[0] == 'T'):
				p.o.openMode = "truncate"
			default:
				return fmt.Errorf("invalid open mode %q (append or truncate)", v)
			}
			return nil
		}},
	{long: "array", short: "a", arg: reqArg, usage: "job array index values (e.g. 0-9, 1-10:2, 0-99%10)",
		set: func(p *parser, v string) (err error) {
			p.o.arrayTasks, p.o.arrayMax, err = ParseArray(v)
			p.o.array = v
			return err
		}},
	{long: "dependency", short: "d", arg: reqArg, usage: "defer the job until type:jobid[:jobid] is satisfied",
		set: func(p *parser, v string) (err error) {
			p.o.deps, err = ParseDependency(v)
			p.o.dependency = v
			return err
		}},
	{long: "gres", arg: reqArg, usage: "generic resources per node (gpu:N or gpu:type:N)", set: setGres},
	{long: "gpus", short: "G", arg: reqArg, usage: "GPUs for the whole job ([type:]N), spread over its nodes",
		set: func(p *parser, v string) (err error) {
			p.o.gpus, err = p.gpuCount(v, "--gpus")
			p.o.gpusSet = err == nil
			return err
		}},
	{long: "gpus-per-node", arg: reqArg, usage: "GPUs on each node ([type:]N)",
		set: func(p *parser, v string) (err error) {
			p.o.gpusPerNode, err = p.gpuCount(v, "--gpus-per-node")
			p.o.gpusPerNodeSet = err == nil
			return err
		}},
	{long: "export", arg: reqArg, usage: "environment to export: ALL, NONE or [ALL,]NAME[=value],...",
		set: func(p *parser, v string) error { p.o.export, p.o.exportSet = v, true; return nil }},
	{long: "chdir", short: "D", arg: reqArg, usage: "working directory of the job",
		set: func(p *parser, v string) error {
			if v == "" {
				return errors.New("empty directory")
			}
			p.o.chdir = p.abs(v)
			return nil
		}},
	{long: "hold", short: "H", usage: "submit the job held",
		set: func(p *parser, v string) error { p.o.hold = true; return nil }},
	{long: "requeue", usage: "allow the job to be requeued",
		set: func(p *parser, v string) error { p.o.requeue = true; return nil }},
	{long: "no-requeue", usage: "never requeue the job",
		set: func(p *parser, v string) error { p.o.requeue = false; return nil }},
	{long: "exclude", short: "x", arg: reqArg, usage: "nodes to avoid (host list, or a file if it contains /)",
		set: func(p *parser, v string) (err error) { p.o.exclude, err = p.hostList(v, true); return err }},
	{long: "nodelist", short: "w", arg: reqArg, usage: "nodes required (host list, or a file if it contains /)",
		set: func(p *parser, v string) (err error) { p.o.nodelist, err = p.hostList(v, true); return err }},
	{long: "nodefile", short: "F", arg: reqArg, usage: "file listing the nodes required",
		set: func(p *parser, v string) (err error) { p.o.nodelist, err = p.hostList(v, false); return err }},
	{long: "constraint", short: "C", arg: reqArg, usage: "node features required, joined with &",
		set: func(p *parser, v string) (err error) { p.o.constraints, err = parseConstraint(v); return err }},
	{long: "comment", arg: reqArg, usage: "arbitrary comment",
		set: func(p *parser, v string) error { p.o.comment = v; return nil }},
	{long: "mail-type", arg: reqArg, usage: "mail on BEGIN, END, FAIL, ... (stored, not yet sent)",
		set: func(p *parser, v string) (err error) { p.o.mailType, err = parseMailType(v); return err }},
	{long: "mail-user", arg: reqArg, usage: "who receives mail",
		set: func(p *parser, v string) error { p.o.mailUser = v; return nil }},
	{long: "exclusive", arg: optArg, bare: "exclusive", usage: "do not share nodes with other jobs",
		set: setExclusive},
	{long: "nice", arg: optArg, bare: "100", usage: "lower the job's priority by value (100 when bare)",
		set: setNice},
	{long: "wrap", arg: reqArg, usage: "submit a /bin/sh script running this command",
		set: func(p *parser, v string) error { p.o.wrap, p.o.wrapSet = v, true; return nil }},
	{long: "parsable", usage: "print only the job id",
		set: func(p *parser, v string) error { p.o.parsable = true; return nil }},
	{long: "test-only", usage: "validate and estimate the start without submitting",
		set: func(p *parser, v string) error { p.o.testOnly = true; return nil }},
	{long: "help", short: "h", usage: "show this help",
		set: func(p *parser, v string) error { p.o.help = true; return nil }},
	{long: "usage", usage: "show this help",
		set: func(p *parser, v string) error { p.o.help = true; return nil }},
	{long: "version", short: "V", usage: "print the version",
		set: func(p *parser, v string) error { p.o.version = true; return nil }},

	{long: "dry-run", usage: "Stockade: parse and print the job without submitting",
		set: func(p *parser, v string) error { p.o.dryRun = true; return nil }},
	{long: "json", usage: "Stockade: with --dry-run, print the job as JSON",
		set: func(p *parser, v string) error { p.o.json = true; return nil }},
	{long: "image", arg: reqArg, usage: "Stockade: OCI image layout directory or tarball to run the job in",
		set: func(p *parser, v string) error {
			if v == "" {
				return errors.New("empty image path")
			}
			p.o.image = p.abs(v)
			return nil
		}},
}

// ignored lists the other options of Slurm 22.05's sbatch. They are
// accepted, with their argument, so Slurm scripts run, and each produces a
// warning. (Checkpoint options were removed from Slurm in 20.11 and are
// errors, as in Slurm.)
var ignored = []optDef{
	{long: "acctg-freq", arg: reqArg},
	{long: "batch", arg: reqArg},
	{long: "bb", arg: reqArg},
	{long: "bbf", arg: reqArg},
	{long: "cluster", arg: reqArg},
	{long: "cluster-constraint", arg: reqArg},
	{long: "clusters", short: "M", arg: reqArg},
	{long: "container", arg: reqArg},
	{long: "contiguous"},
	{long: "core-spec", short: "S", arg: reqArg},
	{long: "cores-per-socket", arg: reqArg},
	{long: "cpu-freq", arg: reqArg},
	{long: "cpus-per-gpu", arg: reqArg},
	{long: "deadline", arg: reqArg},
	{long: "delay-boot", arg: reqArg},
	{long: "distribution", short: "m", arg: reqArg},
	{long: "export-file", arg: reqArg},
	{long: "extra-node-info", short: "B", arg: reqArg},
	{long: "get-user-env", arg: optArg, bare: "set"},
	{long: "gid", arg: reqArg},
	{long: "gpu-bind", arg: reqArg},
	{long: "gpu-freq", arg: reqArg},
	{long: "gpus-per-socket", arg: reqArg},
	{long: "gpus-per-task", arg: reqArg},
	{long: "gres-flags", arg: reqArg},
	{long: "hint", arg: reqArg},
	{long: "ignore-pbs"},
	{long: "input", short: "i", arg: reqArg},
	{long: "kill-on-invalid-dep", arg: reqArg},
	{long: "licenses", short: "L", arg: reqArg},
	{long: "mcs-label", arg: reqArg},
	{long: "mem-bind", arg: reqArg},
	{long: "mem-per-gpu", arg: reqArg},
	{long: "mincpus", arg: reqArg},
	{long: "network", arg: reqArg},
	{long: "no-kill", short: "k", arg: optArg, bare: "set"},
	{long: "ntasks-per-core", arg: reqArg},
	{long: "ntasks-per-gpu", arg: reqArg},
	{long: "ntasks-per-socket", arg: reqArg},
	{long: "overcommit", short: "O"},
	{long: "oversubscribe", short: "s"},
	{long: "power", arg: reqArg},
	{long: "prefer", arg: reqArg},
	{long: "priority", arg: reqArg},
	{long: "profile", arg: reqArg},
	{long: "propagate", arg: optArg, bare: "set"},
	{long: "quiet", short: "Q"},
	{long: "reboot"},
	{long: "sockets-per-node", arg: reqArg},
	{long: "spread-job"},
	{long: "switches", arg: reqArg},
	{long: "thread-spec", arg: reqArg},
	{long: "threads-per-core", arg: reqArg},
	{long: "time-min", arg: reqArg},
	{long: "tmp", arg: reqArg},
	{long: "tres-per-task", arg: reqArg},
	{long: "uid", arg: reqArg},
	{long: "use-min-nodes"},
	{long: "verbose", short: "v"},
	{long: "wait", short: "W"},
	{long: "wait-all-nodes", arg: reqArg},
	{long: "wckey", arg: reqArg},
}

// envOptions maps Slurm's sbatch input environment variables to options,
// in the order Slurm applies them.
var envOptions = []struct{ env, opt string }{
	{"SBATCH_ACCOUNT", "account"},
	{"SBATCH_ARRAY_INX", "array"},
	{"SBATCH_ACCTG_FREQ", "acctg-freq"},
	{"SBATCH_BATCH", "batch"},
	{"SBATCH_CLUSTER_CONSTRAINT", "cluster-constraint"},
	{"SBATCH_CLUSTERS", "clusters"},
	{"SLURM_CLUSTERS", "clusters"},
	{"SBATCH_CONSTRAINT", "constraint"},
	{"SBATCH_CONTAINER", "container"},
	{"SBATCH_CORE_SPEC", "core-spec"},
	{"SBATCH_CPUS_PER_GPU", "cpus-per-gpu"},
	{"SBATCH_DEBUG", "verbose"},
	{"SBATCH_DELAY_BOOT", "delay-boot"},
	{"SBATCH_DISTRIBUTION", "distribution"},
	{"SBATCH_ERROR", "error"},
	{"SBATCH_EXCLUSIVE", "exclusive"},
	{"SBATCH_EXPORT", "export"},
	{"SBATCH_GET_USER_ENV", "get-user-env"},
	{"SBATCH_GRES", "gres"},
	{"SBATCH_GRES_FLAGS", "gres-flags"},
	{"SBATCH_GPUS", "gpus"},
	{"SBATCH_GPU_BIND", "gpu-bind"},
	{"SBATCH_GPU_FREQ", "gpu-freq"},
	{"SBATCH_GPUS_PER_NODE", "gpus-per-node"},
	{"SBATCH_GPUS_PER_SOCKET", "gpus-per-socket"},
	{"SBATCH_GPUS_PER_TASK", "gpus-per-task"},
	{"SLURM_HINT", "hint"},
	{"SBATCH_HINT", "hint"},
	{"SBATCH_IGNORE_PBS", "ignore-pbs"},
	{"SBATCH_INPUT", "input"},
	{"SBATCH_JOB_NAME", "job-name"},
	{"SBATCH_MEM_BIND", "mem-bind"},
	{"SBATCH_MEM_PER_CPU", "mem-per-cpu"},
	{"SBATCH_MEM_PER_GPU", "mem-per-gpu"},
	{"SBATCH_MEM_PER_NODE", "mem"},
	{"SBATCH_NETWORK", "network"},
	{"SBATCH_NO_KILL", "no-kill"},
	{"SBATCH_NO_REQUEUE", "no-requeue"},
	{"SBATCH_OPEN_MODE", "open-mode"},
	{"SBATCH_OUTPUT", "output"},
	{"SBATCH_OVERCOMMIT", "overcommit"},
	{"SBATCH_PARTITION", "partition"},
	{"SBATCH_POWER", "power"},
	{"SBATCH_PROFILE", "profile"},
	{"SBATCH_QOS", "qos"},
	{"SBATCH_REQ_SWITCH", "switches"},
	{"SBATCH_REQUEUE", "requeue"},
	{"SBATCH_RESERVATION", "reservation"},
	{"SBATCH_SIGNAL", "signal"},
	{"SBATCH_SPREAD_JOB", "spread-job"},
	{"SBATCH_THREAD_SPEC", "thread-spec"},
	{"SBATCH_THREADS_PER_CORE", "threads-per-core"},
	{"SBATCH_TIMELIMIT", "time"},
	{"SBATCH_USE_MIN_NODES", "use-min-nodes"},
	{"SBATCH_WAIT", "wait"},
	{"SBATCH_WAIT_ALL_NODES", "wait-all-nodes"},
	{"SBATCH_WAIT4SWITCH", "switches"},
	{"SBATCH_WCKEY", "wckey"},
}

var (
	allOptions []*optDef
	byLong     = map[string]*optDef{}
	byShort    = map[byte]*optDef{}
)

func init() {
	for _, list := range [][]optDef{implemented, ignored} {
		for i := range list {
			d := &list[i]
			allOptions = append(allOptions, d)
			byLong[d.long] = d
			if d.short != "" {
				byShort[d.short[0]] = d
			}
		}
	}
}

// lookupLong resolves a long option name, allowing an unambiguous prefix
// as getopt_long does.
func lookupLong(name string) (*optDef, error) {
	if d, ok := byLong[name]; ok {
		return d, nil
	}
	var cands []*optDef
	for _, d := range allOptions {
		if strings.HasPrefix(d.long, name) {
			cands = append(cands, d)
		}
	}
	switch len(cands) {
	case 0:
		return nil, fmt.Errorf("unrecognized option '--%s'", name)
	case 1:
		return cands[0], nil
	}
	names := make([]string, len(cands))
	for i, d := range cands {
		names[i] = "'--" + d.long + "'"
	}
	slices.Sort(names)
	return nil, fmt.Errorf("option '--%s' is ambiguous; possibilities: %s", name, strings.Join(names, " "))
}

func positive(v string) (int, error) {
	n, ok := arrayNum(v)
	if !ok || n < 1 || n > 1<<30 {
		return 0, fmt.Errorf("invalid count %q", v)
	}
	return n, nil
}

func setNodes(p *parser, v string) error {
	lo, hi, isRange := strings.Cut(v, "-")
	n, err := positive(lo)
	if err != nil {
		return fmt.Errorf("invalid node count %q", v)
	}
	if isRange {
		m, err := positive(hi)
		if err != nil || m < n {
			return fmt.Errorf("invalid node count %q", v)
		}
	}
	p.o.nodes, p.o.nodesSet = n, true
	return nil
}

func setExclusive(p *parser, v string) error {
	switch strings.ToLower(v) {
	case "", "exclusive":
		p.o.exclusive = true
	case "user", "mcs", "oversubscribe":
		p.o.exclusive = false
		p.warn("option --exclusive=" + v + " is not implemented by Stockade yet; ignored")
	default:
		return fmt.Errorf("invalid --exclusive specification %q", v)
	}
	return nil
}

// maxNice is Slurm's bound on --nice (NICE_OFFSET - 3).
const maxNice = 2147483645

func setNice(p *parser, v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return fmt.Errorf("invalid nice value %q", v)
	}
	if n > maxNice || n < -maxNice {
		return fmt.Errorf("nice value %d out of range (+/- %d)", n, maxNice)
	}
	p.o.nice = int(n)
	return nil
}

// setGres takes the GPU count from a --gres list; other generic resources
// are warned about and ignored.
func setGres(p *parser, v string) error {
	p.o.gresGPUs, p.o.gresSet = 0, false
	if strings.EqualFold(v, "none") {
		return nil
	}
	for item := range strings.SplitSeq(v, ",") {
		name, rest, hasRest := strings.Cut(item, ":")
		name = strings.TrimPrefix(name, "gres/")
		if name == "" || (hasRest && rest == "") {
			return fmt.Errorf("invalid generic resource %q", item)
		}
		count, typ := 1, ""
		if hasRest {
			fields := strings.Split(rest, ":")
			if last := fields[len(fields)-1]; allDigits(last) {
				n, ok := arrayNum(last)
				if !ok || n > 1<<20 {
					return fmt.Errorf("invalid count in %q", item)
				}
				count, fields = n, fields[:len(fields)-1]
			}
			if len(fields) > 1 || (len(fields) == 1 && fields[0] == "") {
				return fmt.Errorf("invalid generic resource %q (name[:type][:count])", item)
			}
			if len(fields) == 1 {
				typ = fields[0]
			}
		}
		if name != "gpu" {
			p.warn(fmt.Sprintf("option --gres=%s: generic resource %q is not implemented by Stockade yet; ignored", item, name))
			continue
		}
		if p.o.gresSet {
			return errors.New("gpu given more than once")
		}
		if typ != "" {
			p.warnGPUType(typ)
		}
		p.o.gresGPUs, p.o.gresSet = count, true
	}
	return nil
}

// gpuCount parses "[type:]N" of --gpus and --gpus-per-node.
func (p *parser) gpuCount(v, opt string) (int, error) {
	typ, num, hasType := strings.Cut(v, ":")
	if !hasType {
		num = typ
	}
	n, ok := arrayNum(num)
	if !ok || n > 1<<20 || (hasType && typ == "") {
		return 0, fmt.Errorf("invalid GPU count %q ([type:]count)", v)
	}
	if hasType {
		p.warnGPUType(typ)
	}
	return n, nil
}

func (p *parser) warnGPUType(typ string) {
	p.warn(fmt.Sprintf("GPU type %q is not implemented by Stockade yet; any GPU may be allocated", typ))
}

var mailTypes = []string{"BEGIN", "END", "FAIL", "REQUEUE", "ALL", "INVALID_DEPEND",
	"STAGE_OUT", "TIME_LIMIT", "TIME_LIMIT_90", "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS"}

// parseMailType validates a --mail-type list and returns it upper-cased;
// NONE alone returns "".
func parseMailType(v string) (string, error) {
	if strings.EqualFold(v, "NONE") {
		return "", nil
	}
	var out []string
	for t := range strings.SplitSeq(v, ",") {
		u := strings.ToUpper(t)
		if !slices.Contains(mailTypes, u) {
			return "", fmt.Errorf("invalid mail type %q", t)
		}
		out = append(out, u)
	}
	return strings.Join(out, ","), nil
}

// parseConstraint accepts features joined with & (or ,), all required.
func parseConstraint(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	if strings.ContainsAny(v, "|[]*()!") {
		return nil, fmt.Errorf("constraint %q: only features joined with & are supported by Stockade yet", v)
	}
	var out []string
	for f := range strings.SplitSeq(strings.ReplaceAll(v, ",", "&"), "&") {
		if f == "" || strings.ContainsAny(f, " \t\r\n") {
			return nil, fmt.Errorf("constraint %q: invalid feature name %q", v, f)
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// hostList expands a node list; with fileIfSlash a value containing "/"
// names a file, as Slurm's -w and -x; otherwise the value is a file name.
func (p *parser) hostList(v string, fileIfSlash bool) ([]string, error) {
	if !fileIfSlash || strings.Contains(v, "/") {
		b, err := p.readFile(p.abs(v))
		if err != nil {
			return nil, fmt.Errorf("reading node file: %w", err)
		}
		var fields []string
		for line := range strings.SplitSeq(string(b), "\n") {
			line, _, _ = strings.Cut(line, "#")
			fields = append(fields, strings.Fields(line)...)
		}
		v = strings.Join(fields, ",")
	}
	names, err := hostlist.Expand(v)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(names))
	out := names[:0]
	for _, n := range names {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}
