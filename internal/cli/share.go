package cli

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/stockade-hpc/stockade/api"
)

var sshareCmd = &slurmCommand{
	name:         "sshare",
	short:        "View fair-share shares and usage",
	usage:        "sshare [OPTIONS]",
	interspersed: true,
	helpShort:    "h",
	long: `Shows the fair-share tree as Slurm's sshare does with Fair Tree: every
account, indented by its depth, and the users under them (only your own
without -a or -u). RawUsage is decayed CPU-seconds (GPU-seconds weighted);
EffectvUsage is the usage over the parent's; FairShare is the users' Fair
Tree factor. -l adds NormUsage, LevelFS, GrpTRESMins and TRESRunMins.

Fields (-o, "Account%30" sets a width): Account, Cluster, EffectvUsage,
FairShare, LevelFS, ID, NormShares, NormUsage, Partition, RawShares,
RawUsage, User, GrpTRESMins, TRESRunMins.`,
	setup: setupSshare,
}

// sshareField is one sshare column, as in sshare's fields table: width
// (negative: left-justified), print kind and value.
type sshareField struct {
	name  string
	width int
	kind  int
	value func(s *api.ShareInfo) (string, bool)
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// isRoot reports whether the row is the root account's.
func isRoot(s *api.ShareInfo) bool { return s.User == "" && s.Depth == 0 }

// sshareFields is sshare's table; -o names pick the first field they
// begin, in this order.
var sshareFields = []sshareField{
	{"Account", -20, mgrStr, func(s *api.ShareInfo) (string, bool) {
		// Accounts are indented one space per level; a user's row shows
		// its account one level deeper.
		return strings.Repeat(" ", max(s.Depth, 0)) + s.Account, true
	}},
	{"Cluster", 10, mgrStr, func(*api.ShareInfo) (string, bool) { return mgrClusterName, true }},
	{"EffectvUsage", 13, mgrDouble, func(s *api.ShareInfo) (string, bool) { return fmtFloat(s.EffectvUsage), true }},
	{"FairShare", 10, mgrDouble, func(s *api.ShareInfo) (string, bool) {
		// Fair Tree gives accounts no factor.
		return fmtFloat(s.FairShare), s.User != ""
	}},
	{"LevelFS", 10, mgrDouble, func(s *api.ShareInfo) (string, bool) {
		if s.LevelFS >= math.MaxFloat64 {
			return "inf", true
		}
		return fmtFloat(s.LevelFS), true
	}},
	{"ID", 6, mgrNum, func(*api.ShareInfo) (string, bool) { return "", false }},
	{"NormShares", 11, mgrDouble, func(s *api.ShareInfo) (string, bool) { return fmtFloat(s.NormShares), true }},
	{"NormUsage", 11, mgrDouble, func(s *api.ShareInfo) (string, bool) { return fmtFloat(s.NormUsage), true }},
	{"Partition", 12, mgrStr, func(*api.ShareInfo) (string, bool) { return "", false }},
	{"RawShares", 10, mgrNum, func(s *api.ShareInfo) (string, bool) {
		if isRoot(s) {
			return "", false
		}
		return strconv.Itoa(s.RawShares), true
	}},
	{"RawUsage", 11, mgrNum, func(s *api.ShareInfo) (string, bool) {
		return strconv.FormatUint(uint64(max(s.RawUsage, 0)), 10), true
	}},
	{"User", 10, mgrStr, func(s *api.ShareInfo) (string, bool) { return s.User, s.User != "" }},
	// Stockade keeps no TRES-minute limits or running TRES-minutes.
	{"GrpTRESMins", 30, mgrStr, func(*api.ShareInfo) (string, bool) { return "", true }},
	{"TRESRunMins", 30, mgrStr, func(*api.ShareInfo) (string, bool) { return "", true }},
}

// sshare's default field lists (Fair Tree).
const (
	sshareDefaultFields = "Account,User,RawShares,NormShares,RawUsage,EffectvUsage,FairShare"
	sshareLongFields    = "Account,User,RawShares,NormShares,RawUsage,NormUsage,EffectvUsage,FairShare,LevelFS,GrpTRESMins,TRESRunMins"
)

// parseSshareFields resolves -o names: the first field whose name begins
// with the item, case-insensitive; "%N" sets the width.
func parseSshareFields(items []string) ([]sshareField, error) {
	var out []sshareField
	for _, item := range items {
		name, w, hasWidth := strings.Cut(strings.TrimSpace(item), "%")
		if name == "" {
			continue
		}
		i := slices.IndexFunc(sshareFields, func(f sshareField) bool {
			return len(name) <= len(f.name) && strings.EqualFold(f.name[:len(name)], name)
		})
		if i < 0 {
			return nil, fmt.Errorf("Invalid field requested: \"%s\"", name)
		}
		f := sshareFields[i]
		if !fieldWidth(&f.width, w, hasWidth) {
			return nil, fmt.Errorf("Invalid field requested: \"%s\"", item)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no fields requested")
	}
	return out, nil
}

// renderSshare prints the rows with print_fields' layout.
func renderSshare(fields []sshareField, rows []api.ShareInfo, o mgrOutput) string {
	cols := make([]printCol, len(fields))
	for i, f := range fields {
		cols[i] = printCol{f.name, f.width, f.kind}
	}
	return renderPrintFields(cols, len(rows), func(i, j int) (string, bool) { return fields[j].value(&rows[i]) }, o)
}

// sshareFilter is which rows sshare shows.
type sshareFilter struct {
	accounts  []string
	users     []string // user rows of these users only; nil with all
	all       bool
	usersOnly bool
}

func (f *sshareFilter) keep(s *api.ShareInfo) bool {
	if len(f.accounts) > 0 && !inList(f.accounts, s.Account) {
		return false
	}
	if s.User == "" {
		return !f.usersOnly
	}
	return f.all || inList(f.users, s.User)
}

func setupSshare(fs *pflag.FlagSet) runFunc {
	all := fs.BoolP("all", "a", false, "every user's rows (default: yours only)")
	accounts := fs.StringArrayP("accounts", "A", nil, "only these `accounts`")
	helpFormat := fs.BoolP("helpformat", "e", false, "list the fields --format accepts")
	long := fs.BoolP("long", "l", false, "also NormUsage, LevelFS, GrpTRESMins and TRESRunMins")
	fs.StringP("clusters", "M", "", "accepted for compatibility (one cluster)")
	noHeader := fs.BoolP("noheader", "n", false, "do not print a header")
	format := fs.StringArrayP("format", "o", nil, "comma-separated `fields` (see above)")
	parsable := fs.BoolP("parsable", "p", false, "'|'-delimited output with a trailing '|'")
	parsable2 := fs.BoolP("parsable2", "P", false, "'|'-delimited output without a trailing '|'")
	users := fs.StringArrayP("users", "u", nil, "rows of these `users` (all: every user)")
	usersOnly := fs.BoolP("Users", "U", false, "only user rows")
	fs.BoolP("partition", "m", false, "accepted for compatibility (associations have no partitions)")
	fs.CountP("verbose", "v", "accepted for compatibility")
	return func(ctx context.Context, e *env, args []string) error {
		if *helpFormat {
			names := make([]string, len(sshareFields))
			for i, f := range sshareFields {
				names[i] = f.name
			}
			fmt.Fprintln(e.stdout, strings.Join(names, " "))
			return nil
		}
		if len(args) > 0 {
			return fmt.Errorf("Unrecognized option: %s", args[0])
		}
		spec := splitLists(*format)
		if len(spec) == 0 {
			spec = listVal(sshareDefaultFields)
			if *long {
				spec = listVal(sshareLongFields)
			}
		}
		fields, err := parseSshareFields(spec)
		if err != nil {
			return err
		}
		f := &sshareFilter{accounts: splitLists(*accounts), users: splitLists(*users), all: *all, usersOnly: *usersOnly}
		if slices.Contains(f.users, "all") {
			f.all = true
		}
		if !f.all && len(f.users) == 0 {
			name, err := e.username()
			if err != nil {
				return fmt.Errorf("cannot tell who you are: %v (use -a or -u)", err)
			}
			f.users = []string{name}
		}
		return withClient(ctx, e, func(ctx context.Context, c *api.Client) error {
			resp, err := c.Shares(ctx)
			if err != nil {
				return fmt.Errorf("%s", apiMessage(err))
			}
			var rows []api.ShareInfo
			for i := range resp.Shares {
				if f.keep(&resp.Shares[i]) {
					rows = append(rows, resp.Shares[i])
				}
			}
			o := mgrOutput{parsable: *parsable || *parsable2, trailing: *parsable && !*parsable2, noHeader: *noHeader}
			fmt.Fprint(e.stdout, renderSshare(fields, rows, o))
			return nil
		})
	}
}
