package cli

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/stockade-hpc/stockade/api"
)

// sacctmgr's list output, following Slurm's print_fields routines: every
// column is followed by a space, strings are cut with a trailing "+",
// numbers and times never are, positive widths right-justify.

// How a sacctmgr field prints.
const (
	mgrStr    = iota // print_fields_str: cut to the width with "+"
	mgrNum           // print_fields_uint and the time printers: never cut
	mgrDouble        // print_fields_double: "%f", or "%e" when too wide
)

// mgrRow is one line of a list: a user, an account, an association or a
// QoS (an association row may carry its user or account too).
type mgrRow struct {
	user  *api.User
	acct  *api.Account
	assoc *api.Association
	qos   *api.QOS
}

// mgrCtx is what values need besides the row.
type mgrCtx struct {
	cluster  string
	accounts map[string]*api.Account
	qosNames []string // every QoS, sorted: an association without a list allows them all
}

func newMgrCtx(cluster string, data *api.AccountingResponse) *mgrCtx {
	c := &mgrCtx{cluster: cluster, accounts: map[string]*api.Account{}}
	for i := range data.Accounts {
		c.accounts[data.Accounts[i].Name] = &data.Accounts[i]
	}
	for _, q := range data.QOS {
		c.qosNames = append(c.qosNames, q.Name)
	}
	slices.Sort(c.qosNames)
	return c
}

// org is the account's organization as Slurm defaults it: the account
// under root that the account descends from (root's is root).
func (c *mgrCtx) org(name string) string {
	for depth := 0; depth < 1000; depth++ {
		a := c.accounts[name]
		if a == nil || a.Parent == "" || a.Parent == rootAccountName {
			return name
		}
		name = a.Parent
	}
	return name
}

// rootAccountName is the top of the account tree.
const rootAccountName = "root"

type mgrValue func(c *mgrCtx, r *mgrRow) (string, bool)

// mgrField is one sacctmgr format field. names are the spellings it
// answers to with the least number of letters each needs, tried in
// table order as Slurm's _get_print_field does.
type mgrField struct {
	names  []mgrName
	header string
	width  int // negative: left-justified
	kind   int
	value  mgrValue
}

type mgrName struct {
	name string
	min  int
}

func nm(pairs ...any) []mgrName {
	var out []mgrName
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, mgrName{pairs[i].(string), pairs[i+1].(int)})
	}
	return out
}

// matchName reports whether key abbreviates name: a case-insensitive
// prefix at least min letters long.
func matchName(key, name string, min int) bool {
	return len(key) >= min && len(key) <= len(name) && strings.EqualFold(name[:len(key)], key)
}

func num(v int) (string, bool) {
	if v == 0 {
		return "", false
	}
	return strconv.Itoa(v), true
}

// tresText is a TRES list as sacctmgr prints it (tresSetText), its set
// resources only.
func tresText(t api.TRES) string {
	set := tresSet{}
	for k, v := range map[string]int64{"cpu": int64(t.CPUs), "mem": t.MemoryMB, "node": int64(t.Nodes), "gres/gpu": int64(t.GPUs)} {
		if v > 0 {
			set[k] = v
		}
	}
	return tresSetText(set)
}

func tresVal(t api.TRES) (string, bool) {
	if t.Zero() {
		return "", false
	}
	return tresText(t), true
}

// minutesText is print_fields_time: whole minutes as [D-]HH:MM:SS.
func minutesText(sec int64) (string, bool) {
	if sec <= 0 {
		return "", false
	}
	return slurmSecs(sec / 60 * 60), true
}

func unset(*mgrCtx, *mgrRow) (string, bool) { return "", false }

// assocOr picks the association's value or the QoS's.
func assocOr(fa func(*api.Association) (string, bool), fq func(*api.QOS) (string, bool)) mgrValue {
	return func(_ *mgrCtx, r *mgrRow) (string, bool) {
		switch {
		case r.assoc != nil && fa != nil:
			return fa(r.assoc)
		case r.qos != nil && fq != nil:
			return fq(r.qos)
		}
		return "", false
	}
}

func qosOnly(f func(*api.QOS) (string, bool)) mgrValue { return assocOr(nil, f) }

// assocQOS is an association's allowed QoS, sorted; none listed allows
// every QoS.
func assocQOS(c *mgrCtx, a *api.Association) string {
	list := slices.Clone(a.QOS)
	if len(list) == 0 {
		list = slices.Clone(c.qosNames)
	}
	slices.Sort(list)
	return strings.Join(list, ",")
}

func adminLevel(u *api.User) string {
	if u.Admin {
		return "Administrator"
	}
	return "None"
}

// mgrFields is sacctmgr's field table, in the order Slurm matches names.
// Fields Stockade keeps no data for print empty.
var mgrFields = []mgrField{
	{nm("Account", 3, "Acct", 4), "Account", 10, mgrStr, func(_ *mgrCtx, r *mgrRow) (string, bool) {
		switch {
		case r.assoc != nil:
			return r.assoc.Account, true
		case r.acct != nil:
			return r.acct.Name, true
		}
		return "", false
	}},
	{nm("AdminLevel", 2), "Admin", 9, mgrStr, func(_ *mgrCtx, r *mgrRow) (string, bool) {
		if r.user == nil {
			return "", false
		}
		return adminLevel(r.user), true
	}},
	{nm("Clusters", 2), "Cluster", 10, mgrStr, func(c *mgrCtx, r *mgrRow) (string, bool) {
		if r.assoc == nil {
			return "", false
		}
		return c.cluster, true
	}},
	{nm("DefaultAccount", 8), "Def Acct", 10, mgrStr, func(_ *mgrCtx, r *mgrRow) (string, bool) {
		if r.user == nil {
			return "", false
		}
		return r.user.DefaultAccount, true
	}},
	{nm("DefaultQOS", 8), "Def QOS", 9, mgrStr, assocOr(func(a *api.Association) (string, bool) {
		return a.DefaultQOS, a.DefaultQOS != ""
	}, nil)},
	{nm("DefaultWCKey", 8), "Def WCKey", 10, mgrStr, unset},
	{nm("Description", 3), "Descr", 20, mgrStr, func(_ *mgrCtx, r *mgrRow) (string, bool) {
		switch {
		case r.qos != nil:
			return cmp.Or(r.qos.Description, r.qos.Name), true
		case r.acct != nil:
			return cmp.Or(r.acct.Description, r.acct.Name), true
		}
		return "", false
	}},
	{nm("Flags", 2), "Flags", 20, mgrStr, qosOnly(func(*api.QOS) (string, bool) { return "", true })},
	{nm("GraceTime", 3), "GraceTime", 10, mgrNum, qosOnly(func(q *api.QOS) (string, bool) {
		return slurmSecs(q.GraceTimeSec), true
	})},
	{nm("GrpCPUs", 6), "GrpCPUs", 8, mgrNum, assocOr(func(a *api.Association) (string, bool) { return num(a.GrpTRES.CPUs) }, nil)},
	{nm("GrpCPUMins", 7), "GrpCPUMins", 11, mgrNum, unset},
	{nm("GrpCPURunMins", 7), "GrpCPURunMins", 13, mgrNum, unset},
	{nm("GrpTRES", 7), "GrpTRES", 13, mgrStr, assocOr(func(a *api.Association) (string, bool) { return tresVal(a.GrpTRES) }, nil)},
	{nm("GrpTRESMins", 7), "GrpTRESMins", 13, mgrStr, unset},
	{nm("GrpTRESRunMins", 7), "GrpTRESRunMins", 13, mgrStr, unset},
	{nm("GrpJobs", 4), "GrpJobs", 7, mgrNum, unset},
	{nm("GrpJobsAccrue", 8), "GrpJobsAccrue", 13, mgrNum, unset},
	{nm("GrpMemory", 4), "GrpMem", 7, mgrNum, assocOr(func(a *api.Association) (string, bool) {
		return num(int(a.GrpTRES.MemoryMB))
	}, nil)},
	{nm("GrpNodes", 4), "GrpNodes", 8, mgrNum, assocOr(func(a *api.Association) (string, bool) { return num(a.GrpTRES.Nodes) }, nil)},
	{nm("GrpSubmitJobs", 4), "GrpSubmit", 9, mgrNum, unset},
	{nm("GrpWall", 4), "GrpWall", 11, mgrNum, unset},
	{nm("ID", 2), "ID", 6, mgrNum, unset},
	{nm("LFT", 1), "LFT", 6, mgrNum, unset},
	{nm("MaxCPUMinsPerJob", 7), "MaxCPUMins", 11, mgrNum, unset},
	{nm("MaxCPURunMinsPerUser", 7, "MaxCPURunMinsPU", 7), "MaxCPURunMinsPU", 15, mgrNum, unset},
	{nm("MaxCPUsPerJob", 7), "MaxCPUs", 8, mgrNum, unset},
	{nm("MaxCPUsPerUser", 11, "MaxCPUsPU", 9), "MaxCPUsPU", 9, mgrNum, qosOnly(func(q *api.QOS) (string, bool) {
		return num(q.MaxTRESPerUser.CPUs)
	})},
	{nm("MaxTRES", 7, "MaxTRESPerJob", 11), "MaxTRES", 13, mgrStr, unset},
	{nm("MaxTRESPerNode", 11), "MaxTRESPerNode", 14, mgrStr, unset},
	{nm("MaxTRESMinsPerJob", 8), "MaxTRESMins", 13, mgrStr, unset},
	{nm("MaxTRESRunMinsPerAccount", 18, "MaxTRESRunMinsPerAcct", 18, "MaxTRESRunMinsPA", 15), "MaxTRESRunMinsPA", 15, mgrStr, unset},
	{nm("MaxTRESRunMinsPerUser", 8, "MaxTRESRunMinsPU", 8), "MaxTRESRunMinsPU", 15, mgrStr, unset},
	{nm("MaxTRESPerAccount", 11, "MaxTRESPerAcct", 11, "MaxTRESPA", 9), "MaxTRESPA", 13, mgrStr,
		qosOnly(func(q *api.QOS) (string, bool) { return tresVal(q.MaxTRESPerAccount) })},
	{nm("MaxTRESPerUser", 11, "MaxTRESPU", 9), "MaxTRESPU", 13, mgrStr,
		qosOnly(func(q *api.QOS) (string, bool) { return tresVal(q.MaxTRESPerUser) })},
	{nm("MaxJobs", 4), "MaxJobs", 7, mgrNum, assocOr(func(a *api.Association) (string, bool) { return num(a.MaxJobs) },
		func(q *api.QOS) (string, bool) { return num(q.MaxJobsPerUser) })},
	{nm("MaxJobsAccrue", 4), "MaxJobsAccrue", 13, mgrNum, unset},
	{nm("MaxJobsAccruePerAccount", 17, "MaxJobsAccruePerAcct", 17, "MaxJobsAccruePA", 15), "MaxJobsAccruePA", 15, mgrNum, unset},
	{nm("MaxJobsAccruePerUser", 17, "MaxJobsAccruePU", 15), "MaxJobsAccruePU", 15, mgrNum, unset},
	{nm("MaxJobsPerAccount", 11, "MaxJobsPerAcct", 11, "MaxJobsPA", 9), "MaxJobsPA", 9, mgrNum, unset},
	{nm("MaxJobsPerUser", 11, "MaxJobsPU", 9), "MaxJobsPU", 9, mgrNum, assocOr(func(a *api.Association) (string, bool) { return num(a.MaxJobs) },
		func(q *api.QOS) (string, bool) { return num(q.MaxJobsPerUser) })},
	{nm("MaxNodesPerJob", 4), "MaxNodes", 8, mgrNum, unset},
	{nm("MaxNodesPerUser", 12, "MaxNodesPU", 10), "MaxNodesPU", 10, mgrNum, qosOnly(func(q *api.QOS) (string, bool) {
		return num(q.MaxTRESPerUser.Nodes)
	})},
	{nm("MinPrioThreshold", 4), "MinPrioThres", 12, mgrNum, unset},
	{nm("MaxSubmitJobs", 4), "MaxSubmit", 9, mgrNum, assocOr(func(a *api.Association) (string, bool) { return num(a.MaxSubmitJobs) },
		func(q *api.QOS) (string, bool) { return num(q.MaxSubmitJobsPerUser) })},
	{nm("MaxSubmitJobsPerAccount", 17, "MaxSubmitJobsPerAcct", 17, "MaxSubmitJobsPA", 15, "MaxSubmitPA", 11), "MaxSubmitPA", 11, mgrNum, unset},
	{nm("MaxSubmitJobsPerUser", 10, "MaxSubmitJobsPU", 10, "MaxSubmitPU", 6), "MaxSubmitPU", 11, mgrNum,
		assocOr(func(a *api.Association) (string, bool) { return num(a.MaxSubmitJobs) },
			func(q *api.QOS) (string, bool) { return num(q.MaxSubmitJobsPerUser) })},
	{nm("MaxWallDurationPerJob", 4), "MaxWall", 11, mgrNum, assocOr(func(a *api.Association) (string, bool) { return minutesText(a.MaxWallSec) },
		func(q *api.QOS) (string, bool) { return minutesText(q.MaxWallSec) })},
	{nm("MinCPUsPerJob", 7), "MinCPUs", 8, mgrNum, unset},
	{nm("MinTRESPerJob", 7), "MinTRES", 13, mgrStr, unset},
	{nm("Name", 2), "Name", 10, mgrStr, func(_ *mgrCtx, r *mgrRow) (string, bool) {
		switch {
		case r.qos != nil:
			return r.qos.Name, true
		case r.user != nil:
			return r.user.Name, true
		case r.acct != nil:
			return r.acct.Name, true
		}
		return "", false
	}},
	{nm("Organization", 1), "Org", 20, mgrStr, func(c *mgrCtx, r *mgrRow) (string, bool) {
		switch {
		case r.acct != nil:
			return c.org(r.acct.Name), true
		case r.assoc != nil && r.assoc.User == "":
			return c.org(r.assoc.Account), true
		}
		return "", false
	}},
	{nm("ParentID", 7), "ParentID", 8, mgrNum, unset},
	{nm("ParentName", 7), "ParentName", 10, mgrStr, func(c *mgrCtx, r *mgrRow) (string, bool) {
		if r.assoc == nil || r.assoc.User != "" || r.assoc.Account == rootAccountName {
			return "", false
		}
		if a := c.accounts[r.assoc.Account]; a != nil && a.Parent != "" {
			return a.Parent, true
		}
		return rootAccountName, true
	}},
	{nm("Partition", 4), "Partition", 10, mgrStr, unset},
	{nm("PreemptMode", 8), "PreemptMode", 11, mgrStr, qosOnly(func(q *api.QOS) (string, bool) {
		switch m := strings.ToLower(q.PreemptMode); m {
		case "":
			return "cluster", true
		default:
			return m, true
		}
	})},
	{nm("Preempt", 7), "Preempt", 10, mgrStr, qosOnly(func(q *api.QOS) (string, bool) {
		list := slices.Clone(q.Preempt)
		slices.Sort(list)
		return strings.Join(list, ","), true
	})},
	{nm("PreemptExemptTime", 8), "PreemptExemptTime", 19, mgrNum, unset},
	{nm("Priority", 3), "Priority", 10, mgrNum, qosOnly(func(q *api.QOS) (string, bool) { return strconv.Itoa(q.Priority), true })},
	{nm("QOSLevel", 3, "QOS", 1), "QOS", 20, mgrStr, func(c *mgrCtx, r *mgrRow) (string, bool) {
		if r.assoc == nil {
			return "", false
		}
		return assocQOS(c, r.assoc), true
	}},
	{nm("RGT", 1), "RGT", 6, mgrNum, unset},
	{nm("Share", 1, "FairShare", 2), "Share", 9, mgrNum, assocOr(func(a *api.Association) (string, bool) {
		return strconv.Itoa(max(a.Shares, 1)), true
	}, nil)},
	{nm("UsageFactor", 6), "UsageFactor", 11, mgrDouble, qosOnly(func(q *api.QOS) (string, bool) {
		f := q.UsageFactor
		if f == 0 {
			f = 1
		}
		return strconv.FormatFloat(f, 'g', -1, 64), true
	})},
	{nm("UsageThreshold", 6), "UsageThres", 10, mgrDouble, unset},
	{nm("LimitFactor", 6), "LimitFactor", 11, mgrDouble, unset},
	{nm("User", 1), "User", 10, mgrStr, func(_ *mgrCtx, r *mgrRow) (string, bool) {
		switch {
		case r.assoc != nil:
			return r.assoc.User, r.assoc.User != ""
		case r.user != nil:
			return r.user.Name, true
		}
		return "", false
	}},
	{nm("WCKeys", 2), "WCKeys", 20, mgrStr, unset},
}

// Default field lists of sacctmgr 22.05's list commands (-s adds the
// association columns).
const (
	mgrUserFields        = "User,DefaultAccount,AdminLevel"
	mgrUserAssocFields   = "Cluster,Account,Partition,Share,Priority,MaxJobs,MaxNodes,MaxCPUs,MaxSubmit,MaxWall,MaxCPUMins,QOS,DefaultQOS"
	mgrAccountFields     = "Account,Description,Organization"
	mgrAccountAssocField = "Cluster,ParentName,User,Share,Priority,GrpJobs,GrpNodes,GrpCPUs,GrpMemory,GrpSubmit,GrpWall,GrpCPUMins," +
		"MaxJobs,MaxNodes,MaxCPUs,MaxSubmit,MaxWall,MaxCPUMins,QOS,DefaultQOS"
	mgrAssocFields = "Cluster,Account,User,Partition,Share,Priority,GrpJobs,GrpTRES,GrpSubmit,GrpWall,GrpTRESMins,MaxJobs,MaxTRES," +
		"MaxTRESPerNode,MaxSubmit,MaxWall,MaxTRESMins,QOS,DefaultQOS,GrpTRESRunMins"
	mgrQOSFields = "Name,Priority,GraceTime,Preempt,PreemptExemptTime,PreemptMode,Flags%40,UsageThreshold,UsageFactor," +
		"GrpTRES,GrpTRESMins,GrpTRESRunMins,GrpJobs,GrpSubmit,GrpWall,MaxTRES,MaxTRESPerNode,MaxTRESMins,MaxWall," +
		"MaxTRESPerUser,MaxJobsPerUser,MaxSubmitJobsPerUser,MaxTRESPerAccount,MaxJobsPerAccount,MaxSubmitJobsPerAccount,MinTRES"
)

// parseMgrFields resolves format= items ("Account%20"): %N sets the
// width, a negative one left-justifies.
func parseMgrFields(items []string) ([]mgrField, error) {
	var out []mgrField
	for _, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, w, hasWidth := strings.Cut(item, "%")
		f, ok := lookupMgrField(name)
		if !ok {
			return nil, fmt.Errorf("Unknown field '%s'", name)
		}
		if !fieldWidth(&f.width, w, hasWidth) {
			return nil, fmt.Errorf("Unknown field '%s'", item)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no fields given to format")
	}
	return out, nil
}

func lookupMgrField(key string) (mgrField, bool) {
	for _, f := range mgrFields {
		if keyIs(key, f.names...) {
			return f, true
		}
	}
	return mgrField{}, false
}

// mgrOutput says how rows print: aligned, or parsable with (-p) or
// without (-P) a trailing "|".
type mgrOutput struct {
	parsable, trailing, noHeader bool
}

// mgrDoubleText is print_fields_double in a column: "%*f", or "%*.*e"
// narrowed until it fits.
func mgrDoubleText(v float64, width int) string {
	if math.IsInf(v, 1) || v >= math.MaxFloat64 {
		return "inf"
	}
	s := fmt.Sprintf("%*f", width, v)
	if len(s) <= width {
		return s
	}
	w := width
	e := fmt.Sprintf("%*.*e", w, w, v)
	if len(e) > w {
		w -= len(e) - w
	}
	if w < 0 {
		// printf takes a negative precision as none given (6).
		return fmt.Sprintf("%-*e", -w, v)
	}
	return fmt.Sprintf("%*.*e", w, w, v)
}

func parsableDouble(s string) string {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	if math.IsInf(v, 1) || v >= math.MaxFloat64 {
		return "inf"
	}
	return fmt.Sprintf("%f", v)
}

// mgrCell renders one aligned value and its separating space.
func mgrCell(kind, width int, v string, ok bool) string {
	abs := width
	if abs < 0 {
		abs = -abs
	}
	right := width > 0
	switch {
	case !ok:
		v = " "
	case kind == mgrStr && utf8.RuneCountInString(v) > abs:
		r := []rune(v)
		v = string(r[:abs-1]) + "+"
	case kind == mgrDouble:
		f, err := strconv.ParseFloat(v, 64)
		if err == nil {
			v = strings.TrimSpace(mgrDoubleText(f, abs))
		}
	}
	return padStr(v, abs, right, false) + " "
}

// renderMgr prints the header and rows as sacctmgr's list commands do.
func renderMgr(c *mgrCtx, fields []mgrField, rows []mgrRow, o mgrOutput) string {
	cols := make([]printCol, len(fields))
	for i, f := range fields {
		cols[i] = printCol{f.header, f.width, f.kind}
	}
	return renderPrintFields(cols, len(rows), func(i, j int) (string, bool) { return fields[j].value(c, &rows[i]) }, o)
}

// renderPrintFields prints n rows of cols with print_fields' layout
// (sacctmgr, sshare); value is row i's value in column j.
func renderPrintFields(cols []printCol, n int, value func(i, j int) (string, bool), o mgrOutput) string {
	var b strings.Builder
	last := len(cols) - 1
	delim := func(i int) {
		if i < last || o.trailing {
			b.WriteByte('|')
		}
	}
	switch {
	case o.noHeader:
	case o.parsable:
		for i, c := range cols {
			b.WriteString(c.header)
			delim(i)
		}
		b.WriteByte('\n')
	default:
		alignedHeader(&b, cols)
	}
	for i := range n {
		for j, c := range cols {
			v, ok := value(i, j)
			if o.parsable {
				if ok {
					if c.kind == mgrDouble {
						v = parsableDouble(v)
					}
					b.WriteString(v)
				}
				delim(j)
				continue
			}
			b.WriteString(mgrCell(c.kind, c.width, v, ok))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// ---- rows of each list ----

// withRoot adds the root account and its association when the
// controllers keep no record of them: root always exists.
func withRoot(data *api.AccountingResponse) *api.AccountingResponse {
	d := *data
	if !slices.ContainsFunc(d.Accounts, func(a api.Account) bool { return a.Name == rootAccountName }) {
		d.Accounts = append([]api.Account{{Name: rootAccountName, Description: "default root account"}}, d.Accounts...)
	}
	if !slices.ContainsFunc(d.Associations, func(a api.Association) bool { return a.Account == rootAccountName && a.User == "" }) {
		d.Associations = append([]api.Association{{Account: rootAccountName, Shares: 1}}, d.Associations...)
	}
	return &d
}

// assocTree orders associations as sacctmgr lists them: depth first from
// root, each account's own association, then its users by name, then its
// sub-accounts by name.
func assocTree(data *api.AccountingResponse) []*api.Association {
	children := map[string][]string{}
	for _, a := range data.Accounts {
		if a.Name == rootAccountName {
			continue
		}
		p := cmp.Or(a.Parent, rootAccountName)
		children[p] = append(children[p], a.Name)
	}
	own := map[string]*api.Association{}
	users := map[string][]*api.Association{}
	for i := range data.Associations {
		a := &data.Associations[i]
		if a.User == "" {
			own[a.Account] = a
		} else {
			users[a.Account] = append(users[a.Account], a)
		}
	}
	var out []*api.Association
	seen := map[string]bool{}
	var walk func(acct string)
	walk = func(acct string) {
		if seen[acct] {
			return
		}
		seen[acct] = true
		if a := own[acct]; a != nil {
			out = append(out, a)
		}
		us := users[acct]
		slices.SortFunc(us, func(x, y *api.Association) int { return strings.Compare(x.User, y.User) })
		out = append(out, us...)
		kids := children[acct]
		slices.Sort(kids)
		for _, k := range kids {
			walk(k)
		}
	}
	walk(rootAccountName)
	// Associations of accounts outside the tree (no record) come last.
	var rest []string
	for i := range data.Associations {
		if !seen[data.Associations[i].Account] && !slices.Contains(rest, data.Associations[i].Account) {
			rest = append(rest, data.Associations[i].Account)
		}
	}
	slices.Sort(rest)
	for _, a := range rest {
		walk(a)
	}
	return out
}

// mgrFilter selects rows: empty lists do not filter.
type mgrFilter struct {
	names, accounts, users, parents, qos, defAccounts []string
	admin                                             *bool
}

func inList(list []string, v string) bool {
	return len(list) == 0 || slices.ContainsFunc(list, func(s string) bool { return strings.EqualFold(s, v) })
}

// userRows is sacctmgr list user: one row per user, or with assocs one
// per association of the user.
func userRows(data *api.AccountingResponse, f *mgrFilter, withAssoc bool) []mgrRow {
	users := slices.Clone(data.Users)
	slices.SortFunc(users, func(a, b api.User) int { return strings.Compare(a.Name, b.Name) })
	tree := assocTree(data)
	var rows []mgrRow
	for i := range users {
		u := &users[i]
		if !inList(f.names, u.Name) || !inList(f.defAccounts, u.DefaultAccount) || (f.admin != nil && u.Admin != *f.admin) {
			continue
		}
		if len(f.accounts) > 0 && !slices.ContainsFunc(u.Accounts, func(a string) bool { return inList(f.accounts, a) }) {
			continue
		}
		if !withAssoc {
			rows = append(rows, mgrRow{user: u})
			continue
		}
		n := 0
		for _, a := range tree {
			if a.User == u.Name && inList(f.accounts, a.Account) && qosMatch(f.qos, a) {
				rows = append(rows, mgrRow{user: u, assoc: a})
				n++
			}
		}
		if n == 0 && len(f.accounts) == 0 && len(f.qos) == 0 {
			rows = append(rows, mgrRow{user: u})
		}
	}
	return rows
}

func qosMatch(list []string, a *api.Association) bool {
	if len(list) == 0 {
		return true
	}
	if len(a.QOS) == 0 {
		return true // every QoS is allowed
	}
	return slices.ContainsFunc(a.QOS, func(q string) bool { return inList(list, q) })
}

// accountRows is sacctmgr list account: one row per account, or with
// assocs one per association in the account (its own, then its users').
func accountRows(data *api.AccountingResponse, f *mgrFilter, withAssoc bool) []mgrRow {
	accts := map[string]*api.Account{}
	for i := range data.Accounts {
		accts[data.Accounts[i].Name] = &data.Accounts[i]
	}
	keep := func(a *api.Account) bool {
		return inList(f.names, a.Name) && inList(f.parents, cmp.Or(a.Parent, rootAccountName))
	}
	var rows []mgrRow
	if !withAssoc {
		names := make([]string, 0, len(accts))
		for n := range accts {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			if keep(accts[n]) {
				rows = append(rows, mgrRow{acct: accts[n]})
			}
		}
		return rows
	}
	for _, a := range assocTree(data) {
		ac := accts[a.Account]
		if ac == nil || !keep(ac) || !inList(f.users, a.User) || !qosMatch(f.qos, a) {
			continue
		}
		rows = append(rows, mgrRow{acct: ac, assoc: a})
	}
	return rows
}

// assocRows is sacctmgr list assoc, in tree order.
func assocRows(data *api.AccountingResponse, f *mgrFilter) []mgrRow {
	var rows []mgrRow
	for _, a := range assocTree(data) {
		if !inList(f.accounts, a.Account) || !qosMatch(f.qos, a) {
			continue
		}
		if len(f.users) > 0 && (a.User == "" || !inList(f.users, a.User)) {
			continue
		}
		rows = append(rows, mgrRow{assoc: a})
	}
	return rows
}

// qosRows is sacctmgr list qos, by name.
func qosRows(data *api.AccountingResponse, f *mgrFilter) []mgrRow {
	qs := slices.Clone(data.QOS)
	slices.SortFunc(qs, func(a, b api.QOS) int { return strings.Compare(a.Name, b.Name) })
	var rows []mgrRow
	for i := range qs {
		if inList(f.names, qs[i].Name) {
			rows = append(rows, mgrRow{qos: &qs[i]})
		}
	}
	return rows
}
