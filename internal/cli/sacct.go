package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
	"github.com/stockade-hpc/stockade/internal/sbatch"
)

var sacctCmd = &slurmCommand{
	name:         "sacct",
	short:        "Accounting of finished and running jobs",
	usage:        "sacct [OPTIONS]",
	interspersed: true,
	helpShort:    "h",
	long: `Shows jobs from 00:00 today (-S/-E to change; any time with -j; "now"
with -s), one line per job or array task, each started job followed by its
batch step ("123.batch", which carries the usage statistics such as MaxRSS,
as in Slurm) and its srun steps ("123.0", "123.1", ...); -X leaves the steps
out. Default fields:
` + sacctDefaultFields + `. Without -a or -u a user sees their own jobs; an
admin token sees every user's.

Times (-S, -E): YYYY-MM-DD[THH:MM[:SS]], MMDD[YY], MM/DD[/YY], HH:MM[:SS],
now[-+N[seconds|minutes|hours|days|weeks]], today, midnight, noon, tomorrow.
Fields (-o): see --helpformat; "JobName%30" sets a width. Fields Stockade
has no data for (energy, pages, virtual memory, ...) print empty.

Ended jobs are also read from their usage records, the billed source of
truth for their usage (TotalCPU, MaxRSS, disk I/O): a job the controllers
no longer list still shows, without its name, group, CPU count or
limits. With -D, earlier attempts of requeued jobs show too. Stockade
extensions, on job lines that have a record: Charge (in units of
Currency), Currency, PriceVersion, Epoch (empty until sealed), RecordSeq,
RecordHash and Settlement; --json adds the record as "usage_record".`,
	setup: setupSacct,
}

// acctWindow is sacct's time window and state selection.
type acctWindow struct {
	start, end time.Time // zero start: no lower bound
	states     map[api.JobState]bool
}

// contains reports whether a job belongs in the window: without states,
// jobs submitted by the end that had not ended before the start; with
// states, jobs in one of them during the window, as Slurm selects them.
func (w acctWindow) contains(j *api.Job) bool {
	ended := j.State.Terminal() && !j.EndTime.IsZero()
	if w.states == nil {
		if j.SubmitTime.After(w.end) {
			return false
		}
		return !ended || !j.EndTime.Before(w.start)
	}
	if !w.states[j.State] {
		return false
	}
	switch j.State {
	case api.JobPending:
		return !j.SubmitTime.After(w.end)
	case api.JobRunning:
		return !j.StartTime.IsZero() && !j.StartTime.After(w.end)
	}
	return ended && !j.EndTime.Before(w.start) && !j.EndTime.After(w.end)
}

// sacctFilter holds the other selections.
type sacctFilter struct {
	users, accounts, partitions, names, qos, groups []string
	jobs                                            []jobSel
	nodes                                           map[string]bool
}

func (f *sacctFilter) match(c *fmtCtx, j *api.Job) bool {
	switch {
	case len(f.users) > 0 && !matchUser(j, f.users):
	case len(f.accounts) > 0 && !slices.Contains(f.accounts, j.Spec.Account):
	case len(f.partitions) > 0 && !slices.Contains(f.partitions, j.Spec.Partition):
	case len(f.names) > 0 && !slices.Contains(f.names, j.Spec.Name):
	case len(f.qos) > 0 && !slices.Contains(f.qos, j.Spec.QOS):
	case len(f.groups) > 0 && !slices.Contains(f.groups, c.group(j.GID)) &&
		!slices.Contains(f.groups, strconv.FormatUint(uint64(j.GID), 10)):
	case len(f.jobs) > 0 && !slices.ContainsFunc(f.jobs, func(s jobSel) bool { return s.matches(j) }):
	case f.nodes != nil && !slices.ContainsFunc(j.Nodes, func(n string) bool { return f.nodes[n] }):
	default:
		return true
	}
	return false
}

// sortAcct orders jobs as sacct lists them: by job, array tasks in order.
func sortAcct(jobs []api.Job) {
	slices.SortFunc(jobs, func(a, b api.Job) int {
		if r := cmp.Compare(arrayJobID(&a), arrayJobID(&b)); r != 0 {
			return r
		}
		if r := cmp.Compare(a.ArrayTaskID, b.ArrayTaskID); r != 0 {
			return r
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// serverUsers is the user= filter for the API: names only, since a uid
// can only be matched here.
func serverUsers(users []string) []string {
	for _, u := range users {
		if _, err := strconv.ParseUint(u, 10, 32); err == nil {
			return nil
		}
	}
	return users
}

func setupSacct(fs *pflag.FlagSet) runFunc {
	fs.BoolP("allusers", "a", false, "every user's jobs (what the token may see)")
	accounts := fs.StringArrayP("accounts", "A", nil, "only jobs of these `accounts`")
	brief := fs.BoolP("brief", "b", false, "fields "+sacctBriefFields)
	duplicates := fs.BoolP("duplicates", "D", false, "earlier attempts of requeued jobs too")
	delimiter := fs.String("delimiter", "|", "field `delimiter` for -p and -P")
	helpFormat := fs.BoolP("helpformat", "e", false, "list the fields --format accepts")
	endTime := fs.StringP("endtime", "E", "", "end of the time window (default now; see Times above)")
	groups := fs.StringArrayP("group", "g", nil, "only jobs of these `groups` (names or gids)")
	jobs := fs.StringArrayP("jobs", "j", nil, "only these `jobs`: 123, 123_4, 123_[1-3]")
	long := fs.BoolP("long", "l", false, "the long field list")
	fs.BoolP("allclusters", "L", false, "accepted for compatibility (one cluster)")
	noHeader := fs.BoolP("noheader", "n", false, "do not print a header")
	nodes := fs.StringP("nodelist", "N", "", "only jobs that ran on these `nodes` (host list)")
	names := fs.StringArray("name", nil, "only jobs with these `names`")
	format := fs.StringP("format", "o", "", "comma-separated `fields`, e.g. JobID,State,Elapsed,MaxRSS (env SACCT_FORMAT)")
	parsable := fs.BoolP("parsable", "p", false, "'|'-delimited output with a trailing '|'")
	parsable2 := fs.BoolP("parsable2", "P", false, "'|'-delimited output without a trailing '|'")
	qos := fs.StringArrayP("qos", "q", nil, "only jobs with these `qos`")
	partitions := fs.StringArrayP("partition", "r", nil, "only jobs in these `partitions`")
	states := fs.StringArrayP("state", "s", nil, "only jobs in these `states` during the window: CD,F,CA,TO,OOM,NF,PD,R")
	startTime := fs.StringP("starttime", "S", "", "start of the time window (default 00:00 today; see Times above)")
	users := fs.StringArrayP("user", "u", nil, "only jobs of these `users` (names or uids)")
	uids := fs.StringArray("uid", nil, "same as --user (`users`)")
	allocations := fs.BoolP("allocations", "X", false, "no step lines: jobs only")
	asJSON := fs.Bool("json", false, "print jobs as JSON")
	fs.Bool("noconvert", false, "accepted for compatibility")
	fs.CountP("verbose", "v", "accepted for compatibility")

	return func(ctx context.Context, e *env, args []string) error {
		if *helpFormat {
			fmt.Fprint(e.stdout, sacctHelpFormat())
			return nil
		}
		if len(args) > 0 {
			return fmt.Errorf("unrecognized argument: %s", args[0])
		}
		spec := *format
		switch {
		case spec != "":
		case *brief:
			spec = sacctBriefFields
		case *long:
			spec = sacctLongFields
		case e.getenv("SACCT_FORMAT") != "":
			spec = e.getenv("SACCT_FORMAT")
		default:
			spec = sacctDefaultFields
		}
		fields, err := parseSacctFields(spec)
		if err != nil {
			return err
		}
		f := &sacctFilter{
			users: splitLists(append(*users, *uids...)), accounts: splitLists(*accounts), partitions: splitLists(*partitions),
			names: splitLists(*names), qos: splitLists(*qos), groups: splitLists(*groups),
		}
		if f.jobs, err = parseJobSels(*jobs); err != nil {
			return err
		}
		if *nodes != "" {
			list, err := hostlist.Expand(*nodes)
			if err != nil {
				return fmt.Errorf("--nodelist: %v", err)
			}
			f.nodes = map[string]bool{}
			for _, n := range list {
				f.nodes[n] = true
			}
		}
		now := e.now()
		var w acctWindow
		if w.states, err = parseJobStates(*states); err != nil {
			return err
		}
		switch {
		case *startTime != "":
			if w.start, err = sbatch.ParseDate(*startTime, now, e.loc, sbatch.DatePast); err != nil {
				return fmt.Errorf("--starttime: %v", err)
			}
		case w.states != nil:
			w.start = now
		case len(f.jobs) > 0:
			// Any time: the jobs were named.
		default:
			n := now.In(e.loc)
			w.start = time.Date(n.Year(), n.Month(), n.Day(), 0, 0, 0, 0, e.loc)
		}
		w.end = now
		if *endTime != "" {
			if w.end, err = sbatch.ParseDate(*endTime, now, e.loc, sbatch.DatePast); err != nil {
				return fmt.Errorf("--endtime: %v", err)
			}
		}
		if !w.start.IsZero() && w.end.Before(w.start) {
			return fmt.Errorf("start time (%s) is after end time (%s)",
				slurmDate(w.start, e.loc, ""), slurmDate(w.end, e.loc, ""))
		}

		client, err := e.client()
		if err != nil {
			return err
		}
		q := api.JobQuery{
			All: true, Users: serverUsers(f.users), Partitions: f.partitions, Names: f.names,
			IDs: queryIDs(f.jobs), Since: w.start, Until: w.end,
		}
		if w.states != nil {
			if q.States = stateList(w.states); len(q.States) == 0 {
				return printSacct(e, fields, nil, nil, now, *asJSON, *allocations, *noHeader, *parsable, *parsable2, *delimiter)
			}
		}
		rctx, cancel, err := e.requestContext(ctx)
		if err != nil {
			return err
		}
		defer cancel()
		resp, err := client.Jobs(rctx, q)
		if err != nil {
			return fmt.Errorf("%s", apiMessage(err))
		}
		c := &fmtCtx{now: now, loc: e.loc, groupName: e.groupName}
		var shown []api.Job
		listed := map[uint64]bool{}
		for i := range resp.Jobs {
			j := &resp.Jobs[i]
			listed[j.ID] = true
			if w.contains(j) && f.match(c, j) {
				shown = append(shown, *j)
			}
		}
		recs, err := fetchUsageRecords(rctx, client, f, w, shown, listed, *duplicates)
		if err != nil {
			return err
		}
		items := mergeUsage(shown, listed, recs, func(j *api.Job) bool { return w.contains(j) && f.match(c, j) }, *duplicates)
		var steps map[uint64][]api.JobStep
		if !*allocations {
			var started []api.Job
			for _, it := range items {
				if !it.earlier {
					started = append(started, it.job)
				}
			}
			if steps, err = fetchSteps(rctx, client, started); err != nil {
				return err
			}
		}
		return printSacct(e, fields, items, steps, now, *asJSON, *allocations, *noHeader, *parsable, *parsable2, *delimiter)
	}
}

// stepsPerRequest bounds the job ids of one steps request (they go in the
// URL).
const stepsPerRequest = 200

// fetchSteps gets the srun steps of the started jobs, by job id.
// Controllers that predate steps answer 404: their jobs have none.
func fetchSteps(ctx context.Context, c *api.Client, jobs []api.Job) (map[uint64][]api.JobStep, error) {
	var ids []uint64
	for i := range jobs {
		if !jobs[i].StartTime.IsZero() {
			ids = append(ids, jobs[i].ID)
		}
	}
	steps := map[uint64][]api.JobStep{}
	for len(ids) > 0 {
		n := min(len(ids), stepsPerRequest)
		resp, err := c.Steps(ctx, ids[:n])
		var he *api.HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s", apiMessage(err))
		}
		for _, s := range resp.Steps {
			steps[s.JobID] = append(steps[s.JobID], s)
		}
		ids = ids[n:]
	}
	return steps, nil
}

func printSacct(e *env, fields []acctField, items []acctItem, steps map[uint64][]api.JobStep, now time.Time, asJSON, allocations, noHeader, parsable, parsable2 bool, delimiter string) error {
	c := &fmtCtx{now: now, loc: e.loc, groupName: e.groupName}
	if asJSON {
		b, err := sacctJSONItems(c, items, steps, allocations)
		if err != nil {
			return err
		}
		_, err = e.stdout.Write(b)
		return err
	}
	o := sacctOutput{parsable: parsable || parsable2, trailing: parsable && !parsable2, delimiter: delimiter, noHeader: noHeader}
	if strings.ContainsAny(delimiter, "\n") {
		return fmt.Errorf("--delimiter may not contain a newline")
	}
	fmt.Fprint(e.stdout, renderSacct(c, fields, acctRowsItems(items, steps, allocations), o))
	return nil
}

// fetchUsageRecords gets the usage records sacct may show. For named jobs
// (-j), those of the listed ones that can have one (ended, or requeued
// with -D) and of those not listed at all, so that polling running jobs
// costs nothing more; else those that ended in the window, narrowed by
// one user or account when given. Controllers without a ledger (404), or
// a user asking for others' records (403), give none: the live job list
// still answers.
func fetchUsageRecords(ctx context.Context, c *api.Client, f *sacctFilter, w acctWindow, shown []api.Job, listed map[uint64]bool, duplicates bool) ([]accounting.StoredRecord, error) {
	if w.states != nil && !slices.ContainsFunc(stateList(w.states), api.JobState.Terminal) {
		return nil, nil // only pending or running jobs: none has a record of this run
	}
	var queries []accounting.RecordQuery
	if len(f.jobs) > 0 {
		ids := map[uint64]bool{}
		for _, s := range f.jobs {
			if !listed[s.id] {
				ids[s.id] = true
			}
		}
		for i := range shown {
			if j := &shown[i]; j.State.Terminal() || (duplicates && j.Restarts > 0) {
				ids[j.ID] = true
			}
		}
		for _, id := range slices.Sorted(maps.Keys(ids)) {
			queries = append(queries, accounting.RecordQuery{JobID: id})
		}
	} else {
		q := accounting.RecordQuery{From: w.start}
		if users := serverUsers(f.users); len(users) == 1 {
			q.User = users[0]
		}
		if len(f.accounts) == 1 {
			q.Account = f.accounts[0]
		}
		queries = append(queries, q)
	}
	var out []accounting.StoredRecord
	for _, q := range queries {
		q.Limit = maxRecordPage
		for {
			resp, err := accounting.Records(ctx, c, q)
			if isHTTP(err, http.StatusNotFound, http.StatusForbidden) {
				return nil, nil
			}
			if err != nil {
				return nil, fmt.Errorf("%s", apiMessage(err))
			}
			out = append(out, resp.Records...)
			if resp.NextAfterSeq == 0 {
				break
			}
			q.AfterSeq = resp.NextAfterSeq
		}
	}
	return out, nil
}

// mergeUsage pairs listed jobs with the usage record of the attempt they
// show (their newest record, when it ended when the job did) and adds
// jobs known only from their records when keep selects them. With
// duplicates, earlier attempts of requeued jobs come too.
func mergeUsage(shown []api.Job, listed map[uint64]bool, recs []accounting.StoredRecord, keep func(*api.Job) bool, duplicates bool) []acctItem {
	byJob := map[uint64][]*accounting.StoredRecord{}
	seen := map[uint64]bool{}
	for i := range recs {
		r := &recs[i]
		if seen[r.Record.Seq] {
			continue // asked for twice
		}
		seen[r.Record.Seq] = true
		byJob[r.Record.JobID] = append(byJob[r.Record.JobID], r)
	}
	for _, rs := range byJob {
		slices.SortFunc(rs, func(a, b *accounting.StoredRecord) int { return cmp.Compare(a.Record.Seq, b.Record.Seq) })
	}
	var items []acctItem
	earlier := func(rs []*accounting.StoredRecord, live *api.Job) {
		if !duplicates {
			return
		}
		for _, r := range rs {
			if j := recordJob(r, live); live != nil || keep(&j) {
				items = append(items, acctItem{job: j, rec: r, earlier: true})
			}
		}
	}
	for i := range shown {
		j := &shown[i]
		rs := byJob[j.ID]
		var cur *accounting.StoredRecord
		if n := len(rs); n > 0 && j.State.Terminal() && rs[n-1].Record.EndTime.Equal(j.EndTime) {
			cur, rs = rs[n-1], rs[:n-1]
		}
		earlier(rs, j)
		items = append(items, acctItem{job: withUsage(*j, cur), rec: cur})
	}
	for id, rs := range byJob {
		if listed[id] {
			continue // listed but not selected, or shown above
		}
		n := len(rs)
		if j := recordJob(rs[n-1], nil); keep(&j) {
			items = append(items, acctItem{job: j, rec: rs[n-1]})
		}
		earlier(rs[:n-1], nil)
	}
	sortItems(items)
	return items
}
