package cli

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
)

var squeueCmd = &slurmCommand{
	name:         "squeue",
	short:        "View jobs in the queue",
	usage:        "squeue [OPTIONS] [JOBID...]",
	interspersed: true,
	long: `Shows pending and running jobs (other states with -t; named jobs in any
state while the controllers still list them, a few minutes after they end),
one line per job and array task, sorted by partition, state and decreasing
priority. The default
format is "` + squeueDefaultFormat + `"; -l uses
"` + squeueLongFormat + `".

Format codes (-o): %a account, %A job id, %b GRES, %B batch host, %c min CPUs,
%C CPUs, %D nodes, %e end time, %E dependency, %f features, %F array job id,
%g group, %G gid, %h oversubscribe, %i job id (123_4 for array tasks), %j name,
%k comment, %K array task id, %l time limit, %L time left, %m memory,
%M time used, %n requested nodes, %N node list, %o command, %p priority
(normalized), %P partition, %q QOS, %Q priority, %r reason, %R node list or
(reason), %S start time, %t state (compact), %T state, %u user, %U uid,
%V submit time, %x excluded nodes, %y nice, %Y scheduled nodes, %Z work dir.
"%.10j" right-justifies in 10 columns, "%10j" left-justifies; both cut.
--start lists pending jobs by expected start time (%S: N/A when the
scheduler has no estimate) with "` + squeueStartFormat + `".`,
	setup: setupSqueue,
}

// squeueSelection is what squeue shows: filters, sort and format.
type squeueSelection struct {
	users, accounts, partitions, names, qos []string
	states                                  map[api.JobState]bool // nil: pending and running
	jobs                                    []jobSel
	nodes                                   map[string]bool
}

func (s *squeueSelection) match(j *api.Job) bool {
	// Named jobs show in any state (as long as the controllers still list
	// them); otherwise only pending and running jobs, unless -t says.
	switch {
	case s.states != nil:
		if !s.states[j.State] {
			return false
		}
	case len(s.jobs) == 0:
		if j.State != api.JobPending && j.State != api.JobRunning {
			return false
		}
	}
	if len(s.users) > 0 && !matchUser(j, s.users) {
		return false
	}
	if len(s.accounts) > 0 && !slices.Contains(s.accounts, j.Spec.Account) {
		return false
	}
	if len(s.partitions) > 0 && !slices.Contains(s.partitions, j.Spec.Partition) {
		return false
	}
	if len(s.names) > 0 && !slices.Contains(s.names, j.Spec.Name) {
		return false
	}
	if len(s.qos) > 0 && !slices.Contains(s.qos, j.Spec.QOS) {
		return false
	}
	if len(s.jobs) > 0 && !slices.ContainsFunc(s.jobs, func(sel jobSel) bool { return sel.matches(j) }) {
		return false
	}
	if s.nodes != nil && !slices.ContainsFunc(j.Nodes, func(n string) bool { return s.nodes[n] }) {
		return false
	}
	return true
}

// squeueSortKeys are squeue's default sort: partition, state, then
// decreasing priority.
const squeueDefaultSort = "P,t,-p"

// jobSortKey compares two jobs by one squeue -S key.
func jobSortKey(key byte, c *fmtCtx) (func(a, b *api.Job) int, bool) {
	switch key {
	case 'i', 'A', 'F':
		return func(a, b *api.Job) int { return cmp.Compare(arrayJobID(a), arrayJobID(b)) }, true
	case 'j':
		return func(a, b *api.Job) int { return cmp.Compare(a.Spec.Name, b.Spec.Name) }, true
	case 'u':
		return func(a, b *api.Job) int { return cmp.Compare(a.User, b.User) }, true
	case 'U':
		return func(a, b *api.Job) int { return cmp.Compare(a.UID, b.UID) }, true
	case 'a':
		return func(a, b *api.Job) int { return cmp.Compare(a.Spec.Account, b.Spec.Account) }, true
	case 'P':
		return func(a, b *api.Job) int { return cmp.Compare(a.Spec.Partition, b.Spec.Partition) }, true
	case 't', 'T':
		return func(a, b *api.Job) int { return cmp.Compare(stateRank(a.State), stateRank(b.State)) }, true
	case 'p', 'Q':
		return func(a, b *api.Job) int { return cmp.Compare(a.Priority, b.Priority) }, true
	case 'M':
		return func(a, b *api.Job) int { return cmp.Compare(jobElapsed(a, c.now), jobElapsed(b, c.now)) }, true
	case 'l':
		return func(a, b *api.Job) int { return cmp.Compare(a.TimeLimitSec, b.TimeLimitSec) }, true
	case 'L':
		return func(a, b *api.Job) int {
			return cmp.Compare(a.TimeLimitSec-jobElapsed(a, c.now), b.TimeLimitSec-jobElapsed(b, c.now))
		}, true
	case 'D':
		return func(a, b *api.Job) int { return cmp.Compare(jobNodeCount(a), jobNodeCount(b)) }, true
	case 'C':
		return func(a, b *api.Job) int { return cmp.Compare(jobCPUs(a), jobCPUs(b)) }, true
	case 'V':
		return func(a, b *api.Job) int { return a.SubmitTime.Compare(b.SubmitTime) }, true
	case 'S':
		return func(a, b *api.Job) int { return compareStart(jobStartTime(a), jobStartTime(b)) }, true
	case 'e':
		return func(a, b *api.Job) int { return jobEnd(a).Compare(jobEnd(b)) }, true
	case 'N':
		return func(a, b *api.Job) int { return cmp.Compare(jobNodeList(a), jobNodeList(b)) }, true
	case 'r':
		return func(a, b *api.Job) int { return cmp.Compare(jobReason(a), jobReason(b)) }, true
	case 'm':
		return func(a, b *api.Job) int { return cmp.Compare(jobMemPerNodeMB(a), jobMemPerNodeMB(b)) }, true
	}
	return nil, false
}

// sortJobs orders jobs by a squeue -S list ("P,t,-p"); ties go to the
// lower job id, then array task, so the output is stable.
func sortJobs(jobs []api.Job, spec string, c *fmtCtx) error {
	type key struct {
		f    func(a, b *api.Job) int
		desc bool
	}
	var keys []key
	for _, k := range strings.Split(spec, ",") {
		k = strings.TrimSpace(k)
		desc := false
		switch {
		case strings.HasPrefix(k, "-"):
			desc, k = true, k[1:]
		case strings.HasPrefix(k, "+"):
			k = k[1:]
		}
		k = strings.TrimPrefix(k, "%")
		if k == "" {
			continue
		}
		f, ok := jobSortKey(k[0], c)
		if len(k) != 1 || !ok {
			return fmt.Errorf("Invalid sort specification: %s", k)
		}
		keys = append(keys, key{f, desc})
	}
	slices.SortStableFunc(jobs, func(a, b api.Job) int {
		for _, k := range keys {
			if r := k.f(&a, &b); r != 0 {
				if k.desc {
					return -r
				}
				return r
			}
		}
		if r := cmp.Compare(arrayJobID(&a), arrayJobID(&b)); r != 0 {
			return r
		}
		if r := cmp.Compare(a.ArrayTaskID, b.ArrayTaskID); r != 0 {
			return r
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return nil
}

func setupSqueue(fs *pflag.FlagSet) runFunc {
	accounts := fs.StringArrayP("account", "A", nil, "show jobs of these `accounts`")
	fs.BoolP("all", "a", false, "accepted for compatibility (every partition is shown)")
	noHeader := fs.BoolP("noheader", "h", false, "do not print a header")
	iterate := fs.IntP("iterate", "i", 0, "repeat every `seconds` seconds")
	jobs := fs.StringArrayP("jobs", "j", nil, "show these `jobs`: 123, 123_4, 123_[1-3] (also positional)")
	long := fs.BoolP("long", "l", false, "long format (state, time limit) after a date line")
	names := fs.StringArrayP("name", "n", nil, "show jobs with these `names`")
	format := fs.StringP("format", "o", "", "output `format` with % codes (see above; env SQUEUE_FORMAT)")
	longFormat := fs.StringP("Format", "O", "", "output `fields` by name: JobID,Name:.20,State,...")
	partitions := fs.StringArrayP("partition", "p", nil, "show jobs in these `partitions`")
	qos := fs.StringArrayP("qos", "q", nil, "show jobs with these `qos`")
	fs.BoolP("array", "r", false, "one line per array task (always the case)")
	sortSpec := fs.StringP("sort", "S", "", "sort `keys`, e.g. \"P,t,-p\" (default; - for decreasing)")
	states := fs.StringArrayP("states", "t", nil, "show jobs in these `states`: PD,R,CD,F,CA,TO,OOM,NF or names, or all")
	users := fs.StringArrayP("user", "u", nil, "show jobs of these `users` (names or uids)")
	me := fs.Bool("me", false, "show only my jobs")
	nodes := fs.StringP("nodelist", "w", "", "show jobs running on these `nodes` (host list)")
	asJSON := fs.Bool("json", false, "print jobs as JSON")
	start := fs.Bool("start", false, "pending jobs with their expected start times, soonest first")
	fs.Bool("noconvert", false, "accepted for compatibility")
	fs.CountP("verbose", "v", "accepted for compatibility")

	return func(ctx context.Context, e *env, args []string) error {
		sel := &squeueSelection{
			users: splitLists(*users), accounts: splitLists(*accounts), partitions: splitLists(*partitions),
			names: splitLists(*names), qos: splitLists(*qos),
		}
		var err error
		if sel.states, err = parseJobStates(*states); err != nil {
			return err
		}
		if *start && len(*states) == 0 {
			sel.states = map[api.JobState]bool{api.JobPending: true}
		}
		if sel.jobs, err = parseJobSels(append(*jobs, args...)); err != nil {
			return err
		}
		if *me {
			name, err := e.username()
			if err != nil {
				return fmt.Errorf("--me: %v", err)
			}
			sel.users = append(sel.users, name)
		}
		if *nodes != "" {
			names, err := hostlist.Expand(*nodes)
			if err != nil {
				return fmt.Errorf("--nodelist: %v", err)
			}
			sel.nodes = map[string]bool{}
			for _, n := range names {
				sel.nodes[n] = true
			}
		}
		f := *format
		switch {
		case *longFormat != "":
			if f, err = squeueLongFormatToShort(*longFormat); err != nil {
				return err
			}
		case f != "":
		case *long:
			f = squeueLongFormat
		case *start:
			f = squeueStartFormat
		case e.getenv("SQUEUE_FORMAT") != "":
			f = e.getenv("SQUEUE_FORMAT")
		default:
			f = squeueDefaultFormat
		}
		layout, bad := newSqueueLayout(f)
		for _, msg := range bad {
			fmt.Fprintf(e.stderr, "squeue: error: %s\n", msg)
		}
		sortBy := *sortSpec
		if sortBy == "" {
			sortBy = e.getenv("SQUEUE_SORT")
		}
		if sortBy == "" && *start {
			sortBy = "S"
		}
		if sortBy == "" {
			sortBy = squeueDefaultSort
		}
		if *iterate < 0 {
			return fmt.Errorf("invalid --iterate value: %d", *iterate)
		}

		client, err := e.client()
		if err != nil {
			return err
		}
		// Without all=true the controllers list finished jobs only for a few
		// minutes after they end, as Slurm's controller keeps them
		// (MinJobAge), so squeue -t CD or -j shows what Slurm's would.
		q := api.JobQuery{
			Users: serverUsers(sel.users), Partitions: sel.partitions, Names: sel.names, IDs: queryIDs(sel.jobs),
			Start: *start || layout.uses('S') || strings.Contains(sortBy, "S"),
		}
		switch {
		case sel.states != nil:
			q.States = stateList(sel.states)
		case len(sel.jobs) == 0:
			q.States = []api.JobState{api.JobPending, api.JobRunning}
		}
		for {
			rctx, cancel, err := e.requestContext(ctx)
			if err != nil {
				return err
			}
			var resp *api.JobsResponse
			if sel.states != nil && len(q.States) == 0 {
				resp = &api.JobsResponse{} // only states Stockade never uses
			} else {
				resp, err = client.Jobs(rctx, q)
			}
			cancel()
			if err != nil {
				return fmt.Errorf("%s", apiMessage(err))
			}
			now := e.now()
			c := &fmtCtx{now: now, loc: e.loc, groupName: e.groupName}
			var shown []api.Job
			for i := range resp.Jobs {
				if sel.match(&resp.Jobs[i]) {
					shown = append(shown, resp.Jobs[i])
				}
			}
			if len(shown) == 0 && len(sel.jobs) == 1 && !slices.ContainsFunc(resp.Jobs, func(j api.Job) bool { return sel.jobs[0].matches(&j) }) {
				// One named job the controllers do not know: Slurm's error.
				fmt.Fprintln(e.stderr, "slurm_load_jobs error: Invalid job id specified")
				return errReported
			}
			if err := sortJobs(shown, sortBy, c); err != nil {
				return err
			}
			if *asJSON {
				b, err := squeueJSON(c, shown)
				if err != nil {
					return err
				}
				e.stdout.Write(b)
			} else {
				if !*noHeader && (*long || *iterate > 0) {
					fmt.Fprintln(e.stdout, ctimeLine(now, e.loc))
				}
				fmt.Fprint(e.stdout, layout.render(c, shown, *noHeader))
			}
			if *iterate == 0 {
				return nil
			}
			fmt.Fprintln(e.stdout)
			if err := e.sleep(ctx, time.Duration(*iterate)*time.Second); err != nil {
				return nil // interrupted: squeue -i ends on a signal
			}
		}
	}
}
