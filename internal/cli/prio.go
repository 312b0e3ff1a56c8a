package cli

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/stockade-hpc/stockade/api"
)

var sprioCmd = &slurmCommand{
	name:         "sprio",
	short:        "View the priority factors of pending jobs",
	usage:        "sprio [OPTIONS]",
	interspersed: true,
	long: `Shows each pending job's multifactor priority and its weighted factors, as
Slurm's sprio does. Columns of factors whose weight is 0 are left out of the
default format; -l shows them all with the user and nice value, -n the
normalized factors (0 to 1), -w the weights.

Format codes (-o): %a/%A age (normalized/weighted), %c cluster, %f/%F fair-share,
%i job id, %j/%J job size, %n QoS name, %N nice, %o account, %p/%P partition
priority, %q/%Q QoS priority, %r partition, %S site, %t/%T TRES, %u user,
%y/%Y priority. "%.10A" right-justifies in 10 columns.`,
	setup: setupSprio,
}

// sprioView is how sprio prints: the format and the weights line.
type sprioView struct {
	format   string
	noHeader bool
	weights  bool // -w: the weights line instead of jobs
}

// sprioDefaultFormat is sprio 22.05's format: columns of factors with a
// weight, the user column with -u, normalized values with -n.
func sprioDefaultFormat(w api.PriorityWeights, long, norm, users bool) string {
	switch {
	case long && norm:
		return "%.15i %9r %.8u %10y %10a %10f %10j %10p %10q %20t"
	case long:
		return "%.15i %9r %.8u %.10Y %.10S %.10A %.10F %.10J %.10P %.10Q %.11N %.20T"
	}
	var b strings.Builder
	b.WriteString("%.15i %9r")
	if users {
		b.WriteString(" %.8u")
	}
	if norm {
		b.WriteString(" %10y")
	} else {
		b.WriteString(" %.10Y %.10S")
	}
	for _, f := range sprioFactors {
		switch {
		case f.weight(&w) == 0:
		case norm:
			fmt.Fprintf(&b, " %%10%c", f.norm)
		default:
			fmt.Fprintf(&b, " %%.10%c", f.weighted)
		}
	}
	return b.String()
}

// sprioRow is a job's factors, or the weights line (weights set).
type sprioRow struct {
	job     *api.PriorityFactors
	weights *api.PriorityWeights
}

// sprioField is one % code: its header and its value for a job and on
// the weights line.
type sprioField struct {
	header string
	job    func(j *api.PriorityFactors, w *api.PriorityWeights) string
	weight func(w *api.PriorityWeights) string
}

func i64(v int64) string { return strconv.FormatInt(v, 10) }

// normFactor is a weighted factor over its weight, as sprio -n prints it.
func normFactor(v, weight int64) string {
	f := 0.0
	if weight != 0 {
		f = float64(v) / float64(weight)
	}
	return fmt.Sprintf("%.7f", f)
}

func noWeight(*api.PriorityWeights) string { return "" }

func factorFields(header string, get func(*api.PriorityFactors) int64, weight func(*api.PriorityWeights) int64) (norm, weighted sprioField) {
	w := func(pw *api.PriorityWeights) string { return i64(weight(pw)) }
	norm = sprioField{header, func(j *api.PriorityFactors, pw *api.PriorityWeights) string {
		return normFactor(get(j), weight(pw))
	}, w}
	weighted = sprioField{header, func(j *api.PriorityFactors, _ *api.PriorityWeights) string { return i64(get(j)) }, w}
	return norm, weighted
}

var sprioCodes = func() map[byte]sprioField {
	m := map[byte]sprioField{
		'c': {"CLUSTER", func(*api.PriorityFactors, *api.PriorityWeights) string { return mgrClusterName }, noWeight},
		'i': {"JOBID", func(j *api.PriorityFactors, _ *api.PriorityWeights) string { return strconv.FormatUint(j.JobID, 10) },
			func(*api.PriorityWeights) string { return "Weights" }},
		'n': {"QOSNAME", func(j *api.PriorityFactors, _ *api.PriorityWeights) string { return j.QOS }, noWeight},
		'N': {"NICE", func(j *api.PriorityFactors, _ *api.PriorityWeights) string { return i64(j.Nice) }, noWeight},
		'o': {"ACCOUNT", func(j *api.PriorityFactors, _ *api.PriorityWeights) string { return j.Account }, noWeight},
		'r': {"PARTITION", func(j *api.PriorityFactors, _ *api.PriorityWeights) string { return j.Partition }, noWeight},
		// Stockade has no site factor: it is 0, its weight 1.
		'S': {"SITE", func(*api.PriorityFactors, *api.PriorityWeights) string { return "0" },
			func(*api.PriorityWeights) string { return "1" }},
		'u': {"USER", func(j *api.PriorityFactors, _ *api.PriorityWeights) string { return j.User }, noWeight},
		'y': {"PRIORITY", func(j *api.PriorityFactors, _ *api.PriorityWeights) string {
			return fmt.Sprintf("%16.14f", float64(max(j.Priority, 0))/float64(0xffffffff))
		}, noWeight},
		'Y': {"PRIORITY", func(j *api.PriorityFactors, _ *api.PriorityWeights) string { return i64(j.Priority) }, noWeight},
		// No TRES factors: Stockade weighs jobs by size.
		't': {"TRES", func(*api.PriorityFactors, *api.PriorityWeights) string { return "" }, noWeight},
		'T': {"TRES", func(*api.PriorityFactors, *api.PriorityWeights) string { return "" }, noWeight},
	}
	for _, f := range sprioFactors {
		m[f.norm], m[f.weighted] = factorFields(f.header, f.get, f.weight)
	}
	return m
}()

// sprioFactors are the weighted factors, in sprio's column order: the
// codes of their normalized and weighted values, header, value and
// weight.
var sprioFactors = []struct {
	norm, weighted byte
	header         string
	get            func(*api.PriorityFactors) int64
	weight         func(*api.PriorityWeights) int64
}{
	{'a', 'A', "AGE", func(j *api.PriorityFactors) int64 { return j.Age }, func(w *api.PriorityWeights) int64 { return w.Age }},
	{'f', 'F', "FAIRSHARE", func(j *api.PriorityFactors) int64 { return j.FairShare }, func(w *api.PriorityWeights) int64 { return w.FairShare }},
	{'j', 'J', "JOBSIZE", func(j *api.PriorityFactors) int64 { return j.JobSize }, func(w *api.PriorityWeights) int64 { return w.JobSize }},
	{'p', 'P', "PARTITION", func(j *api.PriorityFactors) int64 { return j.PartPrio }, func(w *api.PriorityWeights) int64 { return w.Partition }},
	{'q', 'Q', "QOS", func(j *api.PriorityFactors) int64 { return j.QOSPrio }, func(w *api.PriorityWeights) int64 { return w.QOS }},
}

// renderSprio prints the header (unless noHeader) and the jobs, or the
// weights line with -w. Unknown codes are returned, as sprio reports and
// skips them.
func renderSprio(v sprioView, w api.PriorityWeights, jobs []api.PriorityFactors) (string, []string) {
	var items []fmtItem
	var bad []string
	for _, it := range parseSlurmFormat(v.format) {
		if it.code != 0 {
			if _, ok := sprioCodes[it.code]; !ok {
				bad = append(bad, "Invalid job format specification: "+string(it.code))
				continue
			}
		}
		items = append(items, it)
	}
	var b strings.Builder
	line := func(val func(f sprioField) string) {
		for _, it := range items {
			if it.code != 0 {
				b.WriteString(padStr(val(sprioCodes[it.code]), it.width, it.right, true))
			}
			b.WriteString(it.suffix)
		}
		b.WriteByte('\n')
	}
	if !v.noHeader {
		line(func(f sprioField) string { return f.header })
	}
	if v.weights {
		line(func(f sprioField) string { return f.weight(&w) })
		return b.String(), bad
	}
	for i := range jobs {
		j := &jobs[i]
		line(func(f sprioField) string { return f.job(j, &w) })
	}
	return b.String(), bad
}

// sprioSortKey compares two jobs by one -S key.
func sprioSortKey(k byte) (func(a, b *api.PriorityFactors) int, bool) {
	by := func(get func(*api.PriorityFactors) int64) func(a, b *api.PriorityFactors) int {
		return func(a, b *api.PriorityFactors) int { return cmp.Compare(get(a), get(b)) }
	}
	byStr := func(get func(*api.PriorityFactors) string) func(a, b *api.PriorityFactors) int {
		return func(a, b *api.PriorityFactors) int { return cmp.Compare(get(a), get(b)) }
	}
	switch k {
	case 'i':
		return func(a, b *api.PriorityFactors) int { return cmp.Compare(a.JobID, b.JobID) }, true
	case 'N':
		return by(func(j *api.PriorityFactors) int64 { return j.Nice }), true
	case 'n':
		return byStr(func(j *api.PriorityFactors) string { return j.QOS }), true
	case 'o':
		return byStr(func(j *api.PriorityFactors) string { return j.Account }), true
	case 'r':
		return byStr(func(j *api.PriorityFactors) string { return j.Partition }), true
	case 'u':
		return byStr(func(j *api.PriorityFactors) string { return j.User }), true
	case 't', 'T':
		return func(*api.PriorityFactors, *api.PriorityFactors) int { return 0 }, true
	case 'y', 'Y':
		return by(func(j *api.PriorityFactors) int64 { return j.Priority }), true
	}
	for _, f := range sprioFactors {
		if k == f.norm || k == f.weighted {
			return by(f.get), true
		}
	}
	return nil, false
}

// sortSprio orders jobs by a -S list ("-y,i"): keys in order, "-"
// descending; ties by job id.
func sortSprio(jobs []api.PriorityFactors, spec string) error {
	type key struct {
		f    func(a, b *api.PriorityFactors) int
		desc bool
	}
	var keys []key
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		if c == ',' || c == '+' || c == '-' {
			continue
		}
		f, ok := sprioSortKey(c)
		if !ok {
			return fmt.Errorf("Invalid sort specification: %c", c)
		}
		keys = append(keys, key{f, i > 0 && spec[i-1] == '-'})
	}
	slices.SortStableFunc(jobs, func(a, b api.PriorityFactors) int {
		for _, k := range keys {
			if r := k.f(&a, &b); r != 0 {
				if k.desc {
					return -r
				}
				return r
			}
		}
		return cmp.Compare(a.JobID, b.JobID)
	})
	return nil
}

func setupSprio(fs *pflag.FlagSet) runFunc {
	noHeader := fs.BoolP("noheader", "h", false, "do not print a header")
	jobs := fs.StringP("jobs", "j", "", "show only these `jobs` (comma-separated ids; also positional after -j)")
	fs.Lookup("jobs").NoOptDefVal = " "
	long := fs.BoolP("long", "l", false, "every factor, with the user and nice value")
	fs.StringP("clusters", "M", "", "accepted for compatibility (one cluster)")
	norm := fs.BoolP("norm", "n", false, "normalized factors (0 to 1) instead of weighted ones")
	format := fs.StringP("format", "o", "", "output `format` with % codes (see above; env SPRIO_FORMAT)")
	partitions := fs.StringArrayP("partition", "p", nil, "show only jobs in these `partitions`")
	sortSpec := fs.StringP("sort", "S", "", "sort `keys`, e.g. \"-y\" (default: job id; - for decreasing)")
	users := fs.StringArrayP("user", "u", nil, "show only jobs of these `users`")
	weights := fs.BoolP("weights", "w", false, "print the weight of each factor")
	fs.CountP("verbose", "v", "accepted for compatibility")
	return func(ctx context.Context, e *env, args []string) error {
		if *long && *format != "" {
			return fmt.Errorf("Options -o(--format) and -l(--long) are mutually exclusive. Please remove one and retry.")
		}
		jobFlag := fs.Changed("jobs")
		var ids []uint64
		jobList := strings.TrimSpace(*jobs)
		if jobFlag && jobList == "" && len(args) > 0 {
			jobList, args = args[0], args[1:]
		}
		if len(args) > 0 {
			return fmt.Errorf("Unrecognized option: %s", args[0])
		}
		for _, s := range listVal(jobList) {
			id, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return fmt.Errorf("Invalid job id: %s", s)
			}
			ids = append(ids, id)
		}
		parts, userList := splitLists(*partitions), splitLists(*users)
		return withClient(ctx, e, func(ctx context.Context, c *api.Client) error {
			resp, err := c.Priorities(ctx)
			if err != nil {
				return fmt.Errorf("Couldn't get priority factors from controller: %s", apiMessage(err))
			}
			var shown []api.PriorityFactors
			for _, j := range resp.Jobs {
				if (len(ids) == 0 || slices.Contains(ids, j.JobID)) && inList(parts, j.Partition) && inList(userList, j.User) {
					shown = append(shown, j)
				}
			}
			if jobFlag && len(ids) > 0 && len(shown) == 0 {
				fmt.Fprintln(e.stdout, "Unable to find jobs matching user/id(s) specified")
				return nil
			}
			if err := sortSprio(shown, cmp.Or(*sortSpec, "i")); err != nil {
				return err
			}
			f := *format
			if f == "" && !*long {
				f = e.getenv("SPRIO_FORMAT")
			}
			if f == "" {
				f = sprioDefaultFormat(resp.Weights, *long, *norm, len(userList) > 0)
			}
			out, bad := renderSprio(sprioView{format: f, noHeader: *noHeader, weights: *weights}, resp.Weights, shown)
			for _, msg := range bad {
				fmt.Fprintf(e.stderr, "sprio: error: %s\n", msg)
			}
			fmt.Fprint(e.stdout, out)
			return nil
		})
	}
}
