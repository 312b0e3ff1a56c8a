package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/sbatch"
)

var sacctmgrCmd = &slurmCommand{
	name:         "sacctmgr",
	short:        "View and change accounts, users, associations and QoS",
	usage:        "sacctmgr [OPTIONS] COMMAND ENTITY [SPECS]",
	interspersed: true,
	helpShort:    "h",
	long: `Commands: add (create), modify (update), delete (remove), list (show).
Entities: account, user, association (list only), qos.

  sacctmgr add account physics Description="Physics" Parent=root
  sacctmgr add user alice Account=physics DefaultAccount=physics
  sacctmgr add qos high Priority=100 MaxJobsPerUser=10 Preempt=normal PreemptMode=requeue GraceTime=30
  sacctmgr modify user alice where Account=physics set FairShare=10 QOS=normal,high DefaultQOS=normal MaxJobs=5 GrpTRES=cpu=100
  sacctmgr modify qos normal set MaxTRESPerUser=cpu=64,node=4
  sacctmgr delete user alice
  sacctmgr list assoc format=Account,User,FairShare,QOS
  sacctmgr -n -s list user alice format=Account%20

Keys are case-insensitive and may be abbreviated as in Slurm; "where" starts
conditions and "set" the new values. A value of -1 clears a limit; QOS and
Preempt lists take +=/-= too. Association limits: FairShare, GrpTRES
(cpu,mem,node,gres/gpu), GrpCPUs, GrpNodes, GrpMemory, MaxJobs,
MaxSubmitJobs, MaxWall, QOS, DefaultQOS. QoS settings: Description,
Priority, MaxJobsPerUser, MaxSubmitJobsPerUser, MaxTRESPerUser,
MaxTRESPerAccount, MaxWall, Preempt, PreemptMode (cluster, off, requeue,
cancel), GraceTime (seconds), UsageFactor. format= fields take a width
(Account%20; negative: left-justified). Changes apply at once, as with -i:
there is no confirmation prompt. A new user's uid and gid come from the
controllers' user database; "stockade user add" gives users their token.`,
}

// The "help" command prints the command's own help, so setup is set
// once the command exists.
func init() { sacctmgrCmd.setup = setupSacctmgr }

// mgrClusterName is the Cluster column: the CLI configuration names no
// cluster.
const mgrClusterName = "cluster"

// mgrOpts are sacctmgr's options.
type mgrOpts struct {
	noHeader, parsable, parsable2, withAssoc, quiet, readonly bool
}

func setupSacctmgr(fs *pflag.FlagSet) runFunc {
	var o mgrOpts
	fs.BoolVarP(&o.noHeader, "noheader", "n", false, "do not print a header")
	fs.BoolVarP(&o.parsable, "parsable", "p", false, "'|'-delimited output with a trailing '|'")
	fs.BoolVarP(&o.parsable2, "parsable2", "P", false, "'|'-delimited output without a trailing '|'")
	fs.BoolVarP(&o.withAssoc, "associations", "s", false, "list users and accounts with their associations")
	fs.BoolVar(&o.withAssoc, "withassoc", false, "same as --associations")
	fs.BoolP("immediate", "i", false, "accepted for compatibility (changes never ask for confirmation)")
	fs.BoolVarP(&o.quiet, "quiet", "Q", false, "print no messages other than errors")
	fs.BoolVarP(&o.readonly, "readonly", "r", false, "refuse commands that change anything")
	fs.BoolP("oneliner", "o", false, "accepted for compatibility")
	fs.CountP("verbose", "v", "accepted for compatibility")
	return func(ctx context.Context, e *env, args []string) error {
		return runSacctmgr(ctx, e, o, args)
	}
}

// Entities sacctmgr knows.
const (
	entAccount = "account"
	entUser    = "user"
	entAssoc   = "association"
	entQOS     = "qos"
)

func mgrVerb(s string) (string, bool) {
	for _, v := range []struct{ name, verb string }{
		{"add", "add"}, {"create", "add"}, {"modify", "modify"}, {"update", "modify"},
		{"delete", "delete"}, {"remove", "delete"}, {"list", "list"}, {"show", "list"},
	} {
		if matchName(s, v.name, 3) {
			return v.verb, true
		}
	}
	return "", false
}

func mgrEntity(s string) (string, error) {
	switch {
	case matchName(s, "accounts", 3), strings.EqualFold(s, "acct"):
		return entAccount, nil
	case matchName(s, "associations", 3):
		return entAssoc, nil
	case matchName(s, "qos", 1):
		return entQOS, nil
	case matchName(s, "users", 1):
		return entUser, nil
	}
	for _, other := range []string{"cluster", "coordinator", "event", "federation", "job", "problem", "reservation",
		"resource", "runawayjobs", "transaction", "tres", "wckey", "configuration", "stats"} {
		if matchName(s, other, 2) {
			return "", fmt.Errorf("entity %s is not supported by Stockade", other)
		}
	}
	return "", fmt.Errorf("Unknown entity: %s", s)
}

func runSacctmgr(ctx context.Context, e *env, o mgrOpts, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command given (try \"sacctmgr --help\")")
	}
	switch strings.ToLower(args[0]) {
	case "version":
		fmt.Fprintf(e.stdout, "slurm %s\n", slurmCompatVersion)
		return nil
	case "help":
		fmt.Fprint(e.stdout, sacctmgrCmd.helpText())
		return nil
	}
	verb, ok := mgrVerb(args[0])
	if !ok {
		return fmt.Errorf("Invalid command: %s", args[0])
	}
	if len(args) < 2 {
		return fmt.Errorf("%s: an entity is required (account, user, association or qos)", verb)
	}
	ent, err := mgrEntity(args[1])
	if err != nil {
		return err
	}
	specs, err := parseMgrSpecs(args[2:])
	if err != nil {
		return err
	}
	if verb != "list" && o.readonly {
		return fmt.Errorf("Can't run this command in readonly mode.")
	}
	if verb != "list" && ent == entAssoc {
		return fmt.Errorf("%s association is not supported: change associations with %s user or %s account", verb, verb, verb)
	}
	return withClient(ctx, e, func(ctx context.Context, c *api.Client) error {
		data, err := c.Accounting(ctx)
		if err != nil {
			return fmt.Errorf("%s", apiMessage(err))
		}
		if verb == "list" {
			out, err := mgrList(ent, specs, o, data)
			if err != nil {
				return err
			}
			fmt.Fprint(e.stdout, out)
			return nil
		}
		var ch *mgrChange
		switch verb {
		case "add":
			ch, err = mgrAdd(ent, specs, data, e)
		case "modify":
			ch, err = mgrModify(ent, specs, data, e)
		case "delete":
			ch, err = mgrDelete(ent, specs, data)
		}
		if err != nil {
			return err
		}
		if ch.nothing != "" {
			// Slurm's own words, on standard output, and a failure.
			fmt.Fprintln(e.stdout, ch.nothing)
			return errReported
		}
		if _, err := c.ChangeAccounting(ctx, ch.req); err != nil {
			return fmt.Errorf("%s", apiMessage(err))
		}
		if !o.quiet {
			fmt.Fprint(e.stdout, ch.message)
		}
		return nil
	})
}

// ---- specs: name, key=value, key+=value, key-=value ----

type mgrSpec struct {
	key, op, val string // op is "" for a bare word
}

func parseMgrSpecs(args []string) ([]mgrSpec, error) {
	var out []mgrSpec
	for _, a := range args {
		i := strings.IndexByte(a, '=')
		if i < 0 {
			out = append(out, mgrSpec{key: a})
			continue
		}
		s := mgrSpec{key: a[:i], op: "=", val: a[i+1:]}
		if n := len(s.key); n > 0 && (s.key[n-1] == '+' || s.key[n-1] == '-') {
			s.op = s.key[n-1:] + "="
			s.key = s.key[:n-1]
		}
		if s.key == "" {
			return nil, fmt.Errorf("Bad format on %s: a name is needed before '='", a)
		}
		out = append(out, s)
	}
	return out, nil
}

// splitWhereSet separates conditions (before "set", or after "where")
// from new values (after "set").
func splitWhereSet(specs []mgrSpec) (cond, set []mgrSpec) {
	inSet := false
	for _, s := range specs {
		if s.op == "" {
			switch {
			case strings.EqualFold(s.key, "where"):
				inSet = false
				continue
			case strings.EqualFold(s.key, "set"):
				inSet = true
				continue
			}
		}
		if inSet {
			set = append(set, s)
		} else {
			cond = append(cond, s)
		}
	}
	return cond, set
}

// matchKey returns the name a spec key abbreviates, if any.
func matchKey(key string, names []mgrName) (string, bool) {
	for _, n := range names {
		if matchName(key, n.name, n.min) {
			return n.name, true
		}
	}
	return "", false
}

// keyIs reports whether a spec key abbreviates one of the names.
func keyIs(key string, names ...mgrName) bool {
	_, ok := matchKey(key, names)
	return ok
}

// qosKeys name a QoS list (association QOS=, +=, -=).
var qosKeys = nm("QosLevel", 1, "QOS", 1)

// ---- conditions ----

// mgrCond is a parsed where clause.
type mgrCond struct {
	mgrFilter
	clusters  []string
	format    []string
	withAssoc bool
	any       bool // some condition was given
}

func listVal(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// unsupportedKeys are Slurm keys Stockade keeps no data for.
var unsupportedKeys = nm("Partitions", 4, "DefaultWCKey", 8, "WCKeys", 2, "NewName", 3, "GrpJobs", 4, "GrpJobsAccrue", 8,
	"GrpSubmitJobs", 4, "GrpWall", 4, "GrpTRESMins", 8, "GrpTRESRunMins", 8, "GrpCPUMins", 7, "GrpCPURunMins", 7,
	"MaxTRESPerJob", 11, "MaxTRES", 7, "MaxTRESPerNode", 11, "MaxTRESMinsPerJob", 8, "MaxCPUMinsPerJob", 7,
	"MaxCPUsPerJob", 7, "MaxNodesPerJob", 4, "MaxJobsAccrue", 8, "MinPrioThreshold", 4, "Priority", 3, "Flags", 2,
	"PreemptExemptTime", 8, "UsageThreshold", 6, "LimitFactor", 6, "MinTRESPerJob", 7, "MaxJobsPerAccount", 11,
	"MaxSubmitJobsPerAccount", 17, "RawUsage", 7, "Comment", 3, "ID", 2)

func unsupportedKey(key string) error {
	if name, ok := matchKey(key, unsupportedKeys); ok {
		return fmt.Errorf("%s is not supported by Stockade", name)
	}
	return nil
}

// parseMgrCond reads the conditions of ent.
func parseMgrCond(ent string, specs []mgrSpec) (*mgrCond, error) {
	c := &mgrCond{}
	for _, s := range specs {
		k := s.key
		if s.op == "" {
			switch {
			case matchName(k, "withassoc", 5):
				c.withAssoc = true
			case matchName(k, "withcoordinators", 5), matchName(k, "withdeleted", 5), matchName(k, "withsubaccounts", 5),
				matchName(k, "wolimits", 4), matchName(k, "woplimits", 4), matchName(k, "wopinfo", 4),
				matchName(k, "withrawqoslevel", 5), matchName(k, "tree", 4), matchName(k, "onlydefaults", 4):
				// Display options Stockade's lists do not need.
			default:
				c.names = append(c.names, listVal(k)...)
				c.any = true
			}
			continue
		}
		if s.op != "=" {
			return nil, fmt.Errorf("Unknown condition: %s%s%s (use keyword 'set' to modify a value)", k, s.op, s.val)
		}
		v := listVal(s.val)
		switch {
		case keyIs(k, nm("Format", 1)...):
			c.format = append(c.format, v...)
			continue
		case keyIs(k, nm("Clusters", 1)...):
			c.clusters = append(c.clusters, v...)
			continue
		}
		c.any = true
		switch ent {
		case entUser:
			switch {
			case keyIs(k, nm("Names", 1, "Users", 1)...):
				c.names = append(c.names, v...)
			case keyIs(k, nm("Accounts", 2, "Acct", 4)...):
				c.accounts = append(c.accounts, v...)
			case keyIs(k, nm("AdminLevel", 2)...):
				admin, err := parseAdminLevel(s.val)
				if err != nil {
					return nil, err
				}
				c.admin = &admin
			case keyIs(k, nm("DefaultAccount", 8)...):
				c.defAccounts = append(c.defAccounts, v...)
			case keyIs(k, qosKeys...):
				c.qos = append(c.qos, v...)
			default:
				return nil, condError(k)
			}
		case entAccount:
			switch {
			case keyIs(k, nm("Names", 1, "Accounts", 2, "Acct", 4)...):
				c.names = append(c.names, v...)
			case keyIs(k, nm("Parent", 3)...):
				c.parents = append(c.parents, v...)
			case keyIs(k, nm("Users", 1)...):
				c.users = append(c.users, v...)
			case keyIs(k, qosKeys...):
				c.qos = append(c.qos, v...)
			case keyIs(k, nm("Descriptions", 1, "Organizations", 1)...):
				return nil, fmt.Errorf("%s is not a condition Stockade supports", k)
			default:
				return nil, condError(k)
			}
		case entAssoc:
			switch {
			case keyIs(k, nm("Accounts", 2, "Acct", 4)...):
				c.accounts = append(c.accounts, v...)
			case keyIs(k, nm("Users", 1)...):
				c.users = append(c.users, v...)
			case keyIs(k, qosKeys...):
				c.qos = append(c.qos, v...)
			default:
				return nil, condError(k)
			}
		case entQOS:
			switch {
			case keyIs(k, nm("Names", 1)...):
				c.names = append(c.names, v...)
			default:
				return nil, condError(k)
			}
		}
	}
	return c, nil
}

func condError(key string) error {
	if err := unsupportedKey(key); err != nil {
		return err
	}
	return fmt.Errorf("Unknown condition: %s", key)
}

func parseAdminLevel(v string) (bool, error) {
	switch {
	case matchName(v, "none", 1):
		return false, nil
	case matchName(v, "administrator", 1), matchName(v, "superuser", 1):
		return true, nil
	case matchName(v, "operator", 1):
		return false, fmt.Errorf("AdminLevel=Operator is not supported by Stockade (None or Administrator)")
	}
	return false, fmt.Errorf("Invalid AdminLevel value: %s", v)
}

// ---- list ----

func mgrList(ent string, specs []mgrSpec, o mgrOpts, data *api.AccountingResponse) (string, error) {
	cond, set := splitWhereSet(specs)
	if len(set) > 0 {
		return "", fmt.Errorf("Unknown condition: set (list takes no new values)")
	}
	c, err := parseMgrCond(ent, cond)
	if err != nil {
		return "", err
	}
	withAssoc := o.withAssoc || c.withAssoc
	format := c.format
	if len(format) == 0 {
		switch ent {
		case entUser:
			format = listVal(mgrUserFields)
			if withAssoc {
				format = append(format, listVal(mgrUserAssocFields)...)
			}
		case entAccount:
			format = listVal(mgrAccountFields)
			if withAssoc {
				format = append(format, listVal(mgrAccountAssocField)...)
			}
		case entAssoc:
			format = listVal(mgrAssocFields)
		case entQOS:
			format = listVal(mgrQOSFields)
		}
	}
	fields, err := parseMgrFields(format)
	if err != nil {
		return "", err
	}
	data = withRoot(data)
	var rows []mgrRow
	if inList(c.clusters, mgrClusterName) {
		switch ent {
		case entUser:
			rows = userRows(data, &c.mgrFilter, withAssoc)
		case entAccount:
			rows = accountRows(data, &c.mgrFilter, withAssoc)
		case entAssoc:
			f := c.mgrFilter
			f.users = append(f.users, f.names...)
			rows = assocRows(data, &f)
		case entQOS:
			rows = qosRows(data, &c.mgrFilter)
		}
	}
	out := mgrOutput{parsable: o.parsable || o.parsable2, trailing: o.parsable && !o.parsable2, noHeader: o.noHeader}
	return renderMgr(newMgrCtx(mgrClusterName, data), fields, rows, out), nil
}

// ---- new values ----

// intSet is a new integer limit; clear (-1) removes it.
type intSet struct {
	set bool
	v   int64
}

func parseLimit(name, v string) (intSet, error) {
	if v == "-1" {
		return intSet{set: true}, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt32 {
		return intSet{}, fmt.Errorf("Invalid %s value: %s", name, v)
	}
	return intSet{set: true, v: n}, nil
}

func parseWall(name, v string) (intSet, error) {
	sec, err := sbatch.ParseTime(v)
	if err != nil {
		return intSet{}, fmt.Errorf("Invalid %s value: %s", name, v)
	}
	return intSet{set: true, v: sec}, nil
}

// tresSet is a new TRES limit: each named resource set or (-1) cleared.
type tresSet map[string]int64

func parseTRES(name, v string) (tresSet, error) {
	t := tresSet{}
	for _, item := range listVal(v) {
		k, val, ok := strings.Cut(item, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok {
			return nil, fmt.Errorf("Invalid %s value: %s (want cpu=N,mem=N,node=N,gres/gpu=N)", name, v)
		}
		switch k {
		case "cpu", "node", "gres/gpu":
		case "gpu":
			k = "gres/gpu"
		case "mem", "memory":
			k = "mem"
		default:
			return nil, fmt.Errorf("Invalid %s value: TRES %s is not supported by Stockade (cpu, mem, node, gres/gpu)", name, k)
		}
		switch {
		case val == "-1":
			t[k] = -1
		case k == "mem":
			mb, err := sbatch.ParseMemory(val)
			if err != nil {
				return nil, fmt.Errorf("Invalid %s value: %s", name, item)
			}
			t[k] = mb
		default:
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n < 0 || n > math.MaxInt32 {
				return nil, fmt.Errorf("Invalid %s value: %s", name, item)
			}
			t[k] = n
		}
	}
	if len(t) == 0 {
		return nil, fmt.Errorf("Invalid %s value: %s", name, v)
	}
	return t, nil
}

func (t tresSet) apply(in api.TRES) api.TRES {
	get := func(k string, old int64) int64 {
		v, ok := t[k]
		switch {
		case !ok:
			return old
		case v < 0:
			return 0
		}
		return v
	}
	return api.TRES{CPUs: int(get("cpu", int64(in.CPUs))), Nodes: int(get("node", int64(in.Nodes))),
		GPUs: int(get("gres/gpu", int64(in.GPUs))), MemoryMB: get("mem", in.MemoryMB)}
}

// listSet is a new name list: replaced (=), added to (+=) or taken from
// (-=), by each of its operations in turn.
type listSet struct {
	ops []listOp
}

type listOp struct {
	op    string // "", "+=" or "-="
	names []string
}

// add appends an operation, "=" being "" (to a new set when l is nil).
func (l *listSet) add(op string, names []string) *listSet {
	if l == nil {
		l = &listSet{}
	}
	if op == "=" {
		op = ""
	}
	l.ops = append(l.ops, listOp{op, names})
	return l
}

// incremental reports whether some operation adds or removes.
func (l *listSet) incremental() bool {
	return slices.ContainsFunc(l.ops, func(o listOp) bool { return o.op != "" })
}

func (l *listSet) apply(old []string) []string {
	out := slices.Clone(old)
	for _, o := range l.ops {
		switch o.op {
		case "+=":
			for _, n := range o.names {
				if !slices.Contains(out, n) {
					out = append(out, n)
				}
			}
		case "-=":
			out = slices.DeleteFunc(out, func(s string) bool { return slices.Contains(o.names, s) })
		default:
			out = slices.Clone(o.names)
		}
	}
	return out
}

func (l *listSet) String() string {
	parts := make([]string, len(l.ops))
	for i, o := range l.ops {
		parts[i] = strings.TrimSuffix(o.op, "=") + strings.Join(o.names, ",")
	}
	return strings.Join(parts, " ")
}

// parseQOSList adds a QoS list setting (=, += or -=) to l; every name
// must be a QoS.
func parseQOSList(name string, s mgrSpec, qosNames []string, l *listSet) (*listSet, error) {
	names := listVal(strings.Trim(s.val, "'\""))
	for _, q := range names {
		if !slices.Contains(qosNames, q) {
			return l, fmt.Errorf("Invalid %s value: no such qos %s", name, q)
		}
	}
	return l.add(s.op, names), nil
}

// assocSet holds new association values.
type assocSet struct {
	shares, maxJobs, maxSubmit, maxWall intSet
	grpTRES                             tresSet
	qos                                 *listSet
	defQOS                              *string
	any                                 bool
}

// parseAssocSet reads one association setting; false: not one.
func (a *assocSet) parse(s mgrSpec, qosNames []string) (bool, error) {
	k, v := s.key, s.val
	var err error
	switch {
	case keyIs(k, nm("DefaultQOS", 3)...):
		q := v
		if q == "-1" || q == "''" {
			q = ""
		}
		if q != "" && !slices.Contains(qosNames, q) {
			return true, fmt.Errorf("Invalid DefaultQOS value: no such qos %s", q)
		}
		a.defQOS = &q
	case keyIs(k, nm("FairShare", 1, "Shares", 1)...):
		if strings.EqualFold(v, "parent") {
			return true, fmt.Errorf("FairShare=parent is not supported by Stockade")
		}
		a.shares, err = parseLimit("FairShare", v)
	case keyIs(k, nm("GrpTRES", 7)...):
		a.grpTRES, err = parseTRES("GrpTRES", v)
	case keyIs(k, nm("GrpCPUs", 6)...):
		err = a.setTRES("GrpCPUs", "cpu", v)
	case keyIs(k, nm("GrpNodes", 4)...):
		err = a.setTRES("GrpNodes", "node", v)
	case keyIs(k, nm("GrpMemory", 4)...):
		err = a.setTRES("GrpMemory", "mem", v)
	case keyIs(k, nm("MaxJobs", 4)...):
		a.maxJobs, err = parseLimit("MaxJobs", v)
	case keyIs(k, nm("MaxSubmitJobs", 4)...):
		a.maxSubmit, err = parseLimit("MaxSubmitJobs", v)
	case keyIs(k, nm("MaxWallDurationPerJob", 4)...):
		a.maxWall, err = parseWall("MaxWall", v)
	case keyIs(k, qosKeys...):
		a.qos, err = parseQOSList("QOS", s, qosNames, a.qos)
	default:
		return false, nil
	}
	if err == nil {
		a.any = true
	}
	return true, err
}

func (a *assocSet) setTRES(name, tres, v string) error {
	if v != "-1" {
		v = tres + "=" + v
	} else {
		v = tres + "=-1"
	}
	t, err := parseTRES(name, v)
	if err != nil {
		return err
	}
	if a.grpTRES == nil {
		a.grpTRES = tresSet{}
	}
	for k, n := range t {
		a.grpTRES[k] = n
	}
	return nil
}

func (a *assocSet) apply(in api.Association) api.Association {
	out := in
	out.QOS = slices.Clone(in.QOS)
	if a.shares.set {
		out.Shares = int(a.shares.v)
	}
	if a.maxJobs.set {
		out.MaxJobs = int(a.maxJobs.v)
	}
	if a.maxSubmit.set {
		out.MaxSubmitJobs = int(a.maxSubmit.v)
	}
	if a.maxWall.set {
		out.MaxWallSec = a.maxWall.v
	}
	if a.grpTRES != nil {
		out.GrpTRES = a.grpTRES.apply(in.GrpTRES)
	}
	if a.qos != nil {
		out.QOS = a.qos.apply(in.QOS)
	}
	if a.defQOS != nil {
		out.DefaultQOS = *a.defQOS
	}
	return out
}

// limitLines are sacctmgr_print_assoc_limits' lines for the settings.
func (a *assocSet) limitLines(parent string) string {
	var b strings.Builder
	line := func(k, v string) { fmt.Fprintf(&b, "  %-13s = %s\n", k, v) }
	num := func(k string, s intSet) {
		if s.set {
			if s.v == 0 && k != "Fairshare" {
				line(k, "NONE")
			} else {
				line(k, strconv.FormatInt(s.v, 10))
			}
		}
	}
	num("Fairshare", a.shares)
	if a.grpTRES != nil {
		line("GrpTRES", tresSetText(a.grpTRES))
	}
	num("MaxJobs", a.maxJobs)
	num("MaxSubmitJobs", a.maxSubmit)
	if a.maxWall.set {
		line("MaxWall", wallText(a.maxWall.v))
	}
	if parent != "" {
		line("Parent", parent)
	}
	if a.qos != nil {
		line("QOS", a.qos.String())
	}
	if a.defQOS != nil {
		line("DefQOS", cmp.Or(*a.defQOS, "NONE"))
	}
	return b.String()
}

func wallText(sec int64) string {
	if sec == 0 {
		return "NONE"
	}
	return slurmSecs(sec)
}

// tresSetText is a TRES list as sacctmgr prints it, in Slurm's TRES
// order; -1 clears a limit.
func tresSetText(t tresSet) string {
	var parts []string
	for _, k := range []string{"cpu", "mem", "node", "gres/gpu"} {
		v, ok := t[k]
		switch {
		case !ok:
		case v < 0:
			parts = append(parts, k+"=-1")
		case k == "mem":
			parts = append(parts, k+"="+memMB(v))
		default:
			parts = append(parts, k+"="+strconv.FormatInt(v, 10))
		}
	}
	return strings.Join(parts, ",")
}

// qosSet holds new QoS values.
type qosSet struct {
	description                  *string
	priority, maxJobs, maxSubmit intSet
	maxWall, grace               intSet
	maxTRESPU, maxTRESPA         tresSet
	preempt                      *listSet
	preemptMode                  *string
	usageFactor                  *float64
	lines                        []string // as sacctmgr_print_qos_limits shows them
	any                          bool
}

func (q *qosSet) parse(s mgrSpec, qosNames []string) (bool, error) {
	k, v := s.key, s.val
	var err error
	show := func(name, val string) { q.lines = append(q.lines, fmt.Sprintf("  %-14s = %s\n", name, val)) }
	switch {
	case keyIs(k, nm("Description", 1)...):
		d := v
		q.description = &d
		return true, nil
	case keyIs(k, nm("GraceTime", 3)...):
		q.grace, err = parseLimit("GraceTime", v)
		if err == nil {
			show("GraceTime", slurmSecs(q.grace.v))
		}
	case keyIs(k, nm("MaxCPUsPerUser", 11, "MaxCPUsPU", 9)...):
		var t tresSet
		if t, err = parseTRES("MaxCPUsPerUser", "cpu="+v); err == nil {
			q.maxTRESPU = mergeTRES(q.maxTRESPU, t)
			show("MaxCPUsPerUser", v)
		}
	case keyIs(k, nm("MaxNodesPerUser", 12, "MaxNodesPU", 10)...):
		var t tresSet
		if t, err = parseTRES("MaxNodesPerUser", "node="+v); err == nil {
			q.maxTRESPU = mergeTRES(q.maxTRESPU, t)
			show("MaxNodesPerUser", v)
		}
	case keyIs(k, nm("MaxJobsPerUser", 4, "MaxJobsPU", 9)...):
		if q.maxJobs, err = parseLimit("MaxJobsPerUser", v); err == nil {
			show("MaxJobsPerUser", v)
		}
	case keyIs(k, nm("MaxSubmitJobsPerUser", 4, "MaxSubmitJobsPU", 10, "MaxSubmitPU", 6)...):
		if q.maxSubmit, err = parseLimit("MaxSubmitJobsPerUser", v); err == nil {
			show("MaxSubmitJobsPerUser", v)
		}
	case keyIs(k, nm("MaxTRESPerAccount", 11, "MaxTRESPerAcct", 11, "MaxTRESPA", 9)...):
		var t tresSet
		if t, err = parseTRES("MaxTRESPerAccount", v); err == nil {
			q.maxTRESPA = mergeTRES(q.maxTRESPA, t)
			show("MaxTRESPerAccount", tresSetText(t))
		}
	case keyIs(k, nm("MaxTRESPerUser", 11, "MaxTRESPU", 9)...):
		var t tresSet
		if t, err = parseTRES("MaxTRESPerUser", v); err == nil {
			q.maxTRESPU = mergeTRES(q.maxTRESPU, t)
			show("MaxTRESPerUser", tresSetText(t))
		}
	case keyIs(k, nm("MaxWallDurationPerJob", 4)...):
		if q.maxWall, err = parseWall("MaxWall", v); err == nil {
			show("MaxWall", wallText(q.maxWall.v))
		}
	case keyIs(k, nm("PreemptMode", 8)...):
		var m string // "" is off, as the cluster's default
		switch {
		case strings.EqualFold(v, "cluster"), strings.EqualFold(v, "off"):
		case strings.EqualFold(v, "requeue"):
			m = api.PreemptRequeue
		case strings.EqualFold(v, "cancel"):
			m = api.PreemptCancel
		case strings.EqualFold(v, "suspend"), strings.EqualFold(v, "gang"), strings.EqualFold(v, "within"):
			return true, fmt.Errorf("PreemptMode=%s is not supported by Stockade (cluster, off, requeue or cancel)", v)
		default:
			return true, fmt.Errorf("Invalid PreemptMode value: %s", v)
		}
		q.preemptMode = &m
		show("PreemptMode", strings.ToUpper(v))
	case keyIs(k, nm("Preempt", 7)...):
		if q.preempt, err = parseQOSList("Preempt", s, qosNames, q.preempt); err == nil {
			show("Preempt", q.preempt.String())
		}
	case keyIs(k, nm("Priority", 3)...):
		if q.priority, err = parseLimit("Priority", v); err == nil {
			show("Priority", strconv.FormatInt(q.priority.v, 10))
		}
	case keyIs(k, nm("UsageFactor", 6)...):
		f, perr := strconv.ParseFloat(v, 64)
		if perr != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return true, fmt.Errorf("Invalid UsageFactor value: %s", v)
		}
		q.usageFactor = &f
		show("UsageFactor", fmt.Sprintf("%f", f))
	default:
		return false, nil
	}
	if err == nil {
		q.any = true
	}
	return true, err
}

func mergeTRES(old, t tresSet) tresSet {
	if old == nil {
		old = tresSet{}
	}
	for k, v := range t {
		old[k] = v
	}
	return old
}

func (q *qosSet) apply(in api.QOS) api.QOS {
	out := in
	out.Preempt = slices.Clone(in.Preempt)
	if q.description != nil {
		out.Description = *q.description
	}
	if q.priority.set {
		out.Priority = int(q.priority.v)
	}
	if q.maxJobs.set {
		out.MaxJobsPerUser = int(q.maxJobs.v)
	}
	if q.maxSubmit.set {
		out.MaxSubmitJobsPerUser = int(q.maxSubmit.v)
	}
	if q.maxWall.set {
		out.MaxWallSec = q.maxWall.v
	}
	if q.grace.set {
		out.GraceTimeSec = q.grace.v
	}
	if q.maxTRESPU != nil {
		out.MaxTRESPerUser = q.maxTRESPU.apply(in.MaxTRESPerUser)
	}
	if q.maxTRESPA != nil {
		out.MaxTRESPerAccount = q.maxTRESPA.apply(in.MaxTRESPerAccount)
	}
	if q.preempt != nil {
		out.Preempt = q.preempt.apply(in.Preempt)
	}
	if q.preemptMode != nil {
		out.PreemptMode = *q.preemptMode
	}
	if q.usageFactor != nil {
		out.UsageFactor = *q.usageFactor
	}
	return out
}

// setError is the error of a key that is not a setting of ent.
func setError(key string) error {
	if err := unsupportedKey(key); err != nil {
		return err
	}
	return fmt.Errorf("Unknown option: %s (use keyword 'where' to modify a condition)", key)
}

// mgrSetter reads one new value of an entity's limits; false: the key
// is not one of them.
type mgrSetter interface {
	parse(s mgrSpec, qosNames []string) (bool, error)
}

// parseSets reads new values: own takes the entity's own keys (false:
// not one of them), set the rest; only listKeys take += and -=.
func parseSets(specs []mgrSpec, qosNames []string, set mgrSetter, own func(mgrSpec) (bool, error), listKeys ...mgrName) error {
	for _, s := range specs {
		if s.op != "=" && !keyIs(s.key, listKeys...) {
			return fmt.Errorf("Bad format on %s%s%s: use '='", s.key, s.op, s.val)
		}
		var ok bool
		var err error
		if own != nil {
			ok, err = own(s)
		}
		if !ok && err == nil {
			ok, err = set.parse(s, qosNames)
		}
		if err != nil {
			return err
		}
		if !ok {
			return setError(s.key)
		}
	}
	return nil
}

// userSetting reads a user's own settings, DefaultAccount and
// AdminLevel; false: the key is neither.
func userSetting(s mgrSpec, defAcct *string, admin **bool) (bool, error) {
	switch {
	case keyIs(s.key, nm("DefaultAccount", 8)...):
		*defAcct = s.val
	case keyIs(s.key, nm("AdminLevel", 2)...):
		a, err := parseAdminLevel(s.val)
		if err != nil {
			return true, err
		}
		*admin = &a
	default:
		return false, nil
	}
	return true, nil
}

// orgIgnored warns that Organization is not kept.
const orgIgnored = "sacctmgr: warning: Organization is not kept by Stockade (it follows the account tree); ignored\n"

// writeNames writes a change message's header and one indented line per
// name.
func writeNames(b *strings.Builder, header string, names []string) {
	b.WriteString(header)
	for _, n := range names {
		fmt.Fprintf(b, "  %s\n", n)
	}
}

// ---- changes ----

// mgrChange is a request and what to print once it is applied; nothing
// is Slurm's message when there is nothing to do.
type mgrChange struct {
	req     api.AccountingRequest
	message string
	nothing string
}

func accountNames(data *api.AccountingResponse) map[string]*api.Account {
	m := map[string]*api.Account{}
	for i := range data.Accounts {
		m[data.Accounts[i].Name] = &data.Accounts[i]
	}
	return m
}

func qosNameList(data *api.AccountingResponse) []string {
	var out []string
	for _, q := range data.QOS {
		out = append(out, q.Name)
	}
	return out
}

func findAssoc(data *api.AccountingResponse, account, user string) *api.Association {
	for i := range data.Associations {
		if a := &data.Associations[i]; a.Account == account && a.User == user {
			return a
		}
	}
	return nil
}

func findUser(data *api.AccountingResponse, name string) *api.User {
	for i := range data.Users {
		if data.Users[i].Name == name {
			return &data.Users[i]
		}
	}
	return nil
}

// assocObject names an association as Slurm's change messages do.
func assocObject(a *api.Association) string {
	if a.User == "" {
		return fmt.Sprintf("C = %-10s A = %-20s", mgrClusterName, a.Account)
	}
	return fmt.Sprintf("C = %-10s A = %-20s U = %-9s", mgrClusterName, a.Account, a.User)
}

func checkClusters(v string) error {
	for _, c := range listVal(v) {
		if c != mgrClusterName {
			return fmt.Errorf("This cluster '%s' doesn't exist (the cluster is %s)", c, mgrClusterName)
		}
	}
	return nil
}

func mgrAdd(ent string, specs []mgrSpec, data *api.AccountingResponse, e *env) (*mgrChange, error) {
	var names []string
	var rest []mgrSpec
	for _, s := range specs {
		switch {
		case s.op == "" && (strings.EqualFold(s.key, "where") || strings.EqualFold(s.key, "set")):
		case s.op == "":
			names = append(names, listVal(s.key)...)
		case s.op == "=" && keyIs(s.key, nm("Names", 1)...):
			names = append(names, listVal(s.val)...)
		case s.op == "=" && ent == entAccount && keyIs(s.key, nm("Accounts", 2, "Acct", 4)...):
			names = append(names, listVal(s.val)...)
		case s.op == "=" && keyIs(s.key, nm("Clusters", 1)...):
			if err := checkClusters(s.val); err != nil {
				return nil, err
			}
		default:
			rest = append(rest, s)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("Need name of %s to add.", ent)
	}
	switch ent {
	case entAccount:
		return addAccounts(names, rest, data, e)
	case entUser:
		return addUsers(names, rest, data)
	case entQOS:
		return addQOS(names, rest, data)
	}
	return nil, fmt.Errorf("add %s is not supported", ent)
}

func addAccounts(names []string, specs []mgrSpec, data *api.AccountingResponse, e *env) (*mgrChange, error) {
	var desc, parent string
	var limits assocSet
	err := parseSets(specs, qosNameList(data), &limits, func(s mgrSpec) (bool, error) {
		switch {
		case keyIs(s.key, nm("Description", 1)...):
			desc = s.val
		case keyIs(s.key, nm("Organization", 1)...):
			fmt.Fprint(e.stderr, orgIgnored)
		case keyIs(s.key, nm("Parent", 1)...):
			parent = s.val
		default:
			return false, nil
		}
		return true, nil
	}, qosKeys...)
	if err != nil {
		return nil, err
	}
	known := accountNames(data)
	if parent != "" && parent != rootAccountName && known[parent] == nil {
		return nil, fmt.Errorf("Parent account '%s' doesn't exist.", parent)
	}
	ch := &mgrChange{req: api.AccountingRequest{Op: "add"}}
	var added []string
	for _, n := range names {
		if known[n] != nil || n == rootAccountName || slices.Contains(added, n) {
			continue
		}
		added = append(added, n)
		ch.req.Accounts = append(ch.req.Accounts, api.Account{Name: n, Parent: parent, Description: desc})
		if limits.any {
			ch.req.Associations = append(ch.req.Associations, limits.apply(api.Association{Account: n, Shares: 1}))
		}
	}
	if len(added) == 0 {
		ch.nothing = " Nothing new added."
		return ch, nil
	}
	var b strings.Builder
	writeNames(&b, " Adding Account(s)\n", added)
	b.WriteString(" Settings\n")
	fmt.Fprintf(&b, "  Description     = %s\n", cmp.Or(desc, "Account Name"))
	fmt.Fprintf(&b, "  Organization    = %s\n", "Parent/Account Name")
	b.WriteString(" Associations\n")
	for _, n := range added {
		fmt.Fprintf(&b, "  A = %-10.10s C = %-10.10s\n", n, mgrClusterName)
	}
	if lines := limits.limitLines(parent); lines != "" {
		b.WriteString(" Settings\n" + lines)
	}
	ch.message = b.String()
	return ch, nil
}

func addUsers(names []string, specs []mgrSpec, data *api.AccountingResponse) (*mgrChange, error) {
	var accounts []string
	var defAcct string
	var admin *bool
	var limits assocSet
	err := parseSets(specs, qosNameList(data), &limits, func(s mgrSpec) (bool, error) {
		if keyIs(s.key, nm("Accounts", 2, "Acct", 4)...) {
			accounts = append(accounts, listVal(s.val)...)
			return true, nil
		}
		return userSetting(s, &defAcct, &admin)
	}, qosKeys...)
	if err != nil {
		return nil, err
	}
	if defAcct != "" && !slices.Contains(accounts, defAcct) {
		accounts = append([]string{defAcct}, accounts...)
	}
	if len(accounts) == 0 {
		return nil, fmt.Errorf("Need a default account for these users to add.")
	}
	known := accountNames(data)
	for _, a := range accounts {
		if a != rootAccountName && known[a] == nil {
			return nil, fmt.Errorf("This account '%s' doesn't exist. Contact your admin to add this account.", a)
		}
	}
	ch := &mgrChange{req: api.AccountingRequest{Op: "add"}}
	var newUsers []string
	var assocs []api.Association
	for _, n := range names {
		old := findUser(data, n)
		// A new user's uid and gid are left to the controllers, which look
		// them up in their user database.
		u := api.User{Name: n}
		if old == nil {
			u.DefaultAccount = cmp.Or(defAcct, accounts[0])
			if admin != nil {
				u.Admin = *admin
			}
			newUsers = append(newUsers, n)
		} else {
			u.UID, u.GID = old.UID, old.GID
		}
		for _, a := range accounts {
			if old != nil && (slices.Contains(old.Accounts, a) || findAssoc(data, a, n) != nil) {
				continue
			}
			u.Accounts = append(u.Accounts, a)
			as := api.Association{Account: a, User: n, Shares: 1}
			if limits.any {
				as = limits.apply(as)
			}
			assocs = append(assocs, as)
		}
		if old == nil || len(u.Accounts) > 0 {
			ch.req.Users = append(ch.req.Users, u)
		}
	}
	if len(assocs) == 0 {
		ch.nothing = " Nothing new added."
		return ch, nil
	}
	if limits.any {
		ch.req.Associations = assocs
	}
	var b strings.Builder
	if len(newUsers) > 0 {
		writeNames(&b, " Adding User(s)\n", newUsers)
		b.WriteString(" Settings =\n")
		fmt.Fprintf(&b, "  Default Account = %s\n", cmp.Or(defAcct, accounts[0]))
		if admin != nil {
			fmt.Fprintf(&b, "  Admin Level     = %s\n", adminLevel(&api.User{Admin: *admin}))
		}
	}
	b.WriteString(" Associations =\n")
	for _, a := range assocs {
		fmt.Fprintf(&b, "  U = %-9.9s A = %-10.10s C = %-10.10s\n", a.User, a.Account, mgrClusterName)
	}
	if limits.any {
		b.WriteString(" Non Default Settings\n" + limits.limitLines(""))
	}
	ch.message = b.String()
	return ch, nil
}

func addQOS(names []string, specs []mgrSpec, data *api.AccountingResponse) (*mgrChange, error) {
	var set qosSet
	if err := parseSets(specs, append(qosNameList(data), names...), &set, nil, nm("Preempt", 7)...); err != nil {
		return nil, err
	}
	existing := qosNameList(data)
	ch := &mgrChange{req: api.AccountingRequest{Op: "add"}}
	var added []string
	for _, n := range names {
		if slices.Contains(existing, n) || slices.Contains(added, n) {
			continue
		}
		added = append(added, n)
		ch.req.QOS = append(ch.req.QOS, set.apply(api.QOS{Name: n}))
	}
	if len(added) == 0 {
		ch.nothing = " Nothing new added."
		return ch, nil
	}
	var b strings.Builder
	writeNames(&b, " Adding QOS(s)\n", added)
	b.WriteString(" Settings\n")
	desc := "QOS Name"
	if set.description != nil {
		desc = *set.description
	}
	fmt.Fprintf(&b, "  %-14s = %s\n", "Description", desc)
	for _, l := range set.lines {
		b.WriteString(l)
	}
	ch.message = b.String()
	return ch, nil
}

// ---- modify ----

func mgrModify(ent string, specs []mgrSpec, data *api.AccountingResponse, e *env) (*mgrChange, error) {
	condSpecs, setSpecs := splitWhereSet(specs)
	if len(setSpecs) == 0 {
		return nil, fmt.Errorf("You didn't give me anything to set")
	}
	cond, err := parseMgrCond(ent, condSpecs)
	if err != nil {
		return nil, err
	}
	if !inList(cond.clusters, mgrClusterName) {
		return &mgrChange{nothing: " Nothing modified"}, nil
	}
	qn := qosNameList(data)
	for _, s := range setSpecs {
		if s.op == "" {
			return nil, fmt.Errorf("Bad format on %s: End your option with an '=' sign", s.key)
		}
	}
	switch ent {
	case entUser:
		return modifyUsers(cond, setSpecs, data, qn)
	case entAccount:
		return modifyAccounts(cond, setSpecs, data, qn, e)
	case entQOS:
		return modifyQOS(cond, setSpecs, data, qn)
	}
	return nil, fmt.Errorf("modify %s is not supported", ent)
}

func modifyUsers(cond *mgrCond, specs []mgrSpec, data *api.AccountingResponse, qn []string) (*mgrChange, error) {
	var defAcct string
	var admin *bool
	var limits assocSet
	err := parseSets(specs, qn, &limits, func(s mgrSpec) (bool, error) {
		return userSetting(s, &defAcct, &admin)
	}, qosKeys...)
	if err != nil {
		return nil, err
	}
	users := userRows(data, &cond.mgrFilter, false)
	ch := &mgrChange{req: api.AccountingRequest{Op: "modify"}}
	var b strings.Builder
	if defAcct != "" || admin != nil {
		var changed []string
		for _, r := range users {
			u := *r.user
			if defAcct != "" {
				if !slices.Contains(u.Accounts, defAcct) {
					return nil, fmt.Errorf("Invalid DefaultAccount value: user %s has no association with account %s", u.Name, defAcct)
				}
				u.DefaultAccount = defAcct
			}
			if admin != nil {
				u.Admin = *admin
			}
			// The controllers keep the default account when none is sent.
			ch.req.Users = append(ch.req.Users, api.User{Name: u.Name, DefaultAccount: defAcct, Admin: u.Admin})
			changed = append(changed, u.Name)
		}
		if len(changed) > 0 {
			writeNames(&b, " Modified users...\n", changed)
		}
	}
	if limits.any {
		var objs []string
		for _, a := range assocTree(data) {
			if a.User == "" || !slices.ContainsFunc(users, func(r mgrRow) bool { return r.user.Name == a.User }) ||
				!inList(cond.accounts, a.Account) {
				continue
			}
			na := limits.apply(*a)
			if na.DefaultQOS != "" && len(na.QOS) > 0 && !slices.Contains(na.QOS, na.DefaultQOS) {
				return nil, fmt.Errorf("Invalid DefaultQOS value: %s is not in the QOS list of %s", na.DefaultQOS, a.Key())
			}
			ch.req.Associations = append(ch.req.Associations, na)
			objs = append(objs, assocObject(a))
		}
		if len(objs) > 0 {
			writeNames(&b, " Modified user associations...\n", objs)
		}
	}
	if len(ch.req.Users)+len(ch.req.Associations) == 0 {
		return &mgrChange{nothing: " Nothing modified"}, nil
	}
	ch.message = b.String()
	return ch, nil
}

func modifyAccounts(cond *mgrCond, specs []mgrSpec, data *api.AccountingResponse, qn []string, e *env) (*mgrChange, error) {
	var desc, parent *string
	var limits assocSet
	err := parseSets(specs, qn, &limits, func(s mgrSpec) (bool, error) {
		switch {
		case keyIs(s.key, nm("Description", 1)...):
			d := s.val
			desc = &d
		case keyIs(s.key, nm("Organization", 1)...):
			fmt.Fprint(e.stderr, orgIgnored)
		case keyIs(s.key, nm("Parent", 1)...):
			p := s.val
			if p != rootAccountName && accountNames(data)[p] == nil {
				return true, fmt.Errorf("Parent account '%s' doesn't exist.", p)
			}
			parent = &p
		default:
			return false, nil
		}
		return true, nil
	}, qosKeys...)
	if err != nil {
		return nil, err
	}
	data = withRoot(data)
	f := cond.mgrFilter
	f.users = nil
	accts := accountRows(data, &f, false)
	ch := &mgrChange{req: api.AccountingRequest{Op: "modify"}}
	var b strings.Builder
	if desc != nil || parent != nil {
		var changed []string
		for _, r := range accts {
			if r.acct.Name == rootAccountName && parent != nil {
				return nil, fmt.Errorf("Invalid Parent value: account root has no parent")
			}
			a := *r.acct
			if desc != nil {
				a.Description = *desc
			}
			if parent != nil {
				a.Parent = *parent
			}
			ch.req.Accounts = append(ch.req.Accounts, a)
			changed = append(changed, a.Name)
		}
		if len(changed) > 0 {
			writeNames(&b, " Modified accounts...\n", changed)
		}
	}
	if limits.any {
		var objs []string
		for _, a := range assocTree(data) {
			if !slices.ContainsFunc(accts, func(r mgrRow) bool { return r.acct.Name == a.Account }) {
				continue
			}
			if len(cond.users) > 0 {
				if a.User == "" || !inList(cond.users, a.User) {
					continue
				}
			} else if a.User != "" {
				continue
			}
			ch.req.Associations = append(ch.req.Associations, limits.apply(*a))
			objs = append(objs, assocObject(a))
		}
		if len(objs) > 0 {
			header := " Modified account associations...\n"
			if len(cond.users) > 0 {
				header = " Modified user associations...\n"
			}
			writeNames(&b, header, objs)
		}
	}
	if len(ch.req.Accounts)+len(ch.req.Associations) == 0 {
		return &mgrChange{nothing: " Nothing modified"}, nil
	}
	ch.message = b.String()
	return ch, nil
}

func modifyQOS(cond *mgrCond, specs []mgrSpec, data *api.AccountingResponse, qn []string) (*mgrChange, error) {
	var set qosSet
	if err := parseSets(specs, qn, &set, nil, nm("Preempt", 7)...); err != nil {
		return nil, err
	}
	if !set.any && set.description == nil {
		return nil, fmt.Errorf("You didn't give me anything to set")
	}
	ch := &mgrChange{req: api.AccountingRequest{Op: "modify"}}
	var names []string
	for _, r := range qosRows(data, &cond.mgrFilter) {
		q := set.apply(*r.qos)
		if slices.Contains(q.Preempt, q.Name) {
			return nil, fmt.Errorf("Invalid Preempt value: qos %s cannot preempt itself", q.Name)
		}
		ch.req.QOS = append(ch.req.QOS, q)
		names = append(names, q.Name)
	}
	if len(ch.req.QOS) == 0 {
		return &mgrChange{nothing: " Nothing modified"}, nil
	}
	var b strings.Builder
	writeNames(&b, " Modified qos...\n", names)
	ch.message = b.String()
	return ch, nil
}

// ---- delete ----

func mgrDelete(ent string, specs []mgrSpec, data *api.AccountingResponse) (*mgrChange, error) {
	condSpecs, setSpecs := splitWhereSet(specs)
	if len(setSpecs) > 0 {
		return nil, fmt.Errorf("Unknown condition: set (delete takes no new values)")
	}
	cond, err := parseMgrCond(ent, condSpecs)
	if err != nil {
		return nil, err
	}
	if !cond.any {
		return nil, fmt.Errorf("No conditions given to remove, not executing.")
	}
	nothing := &mgrChange{nothing: " Nothing deleted"}
	if !inList(cond.clusters, mgrClusterName) {
		return nothing, nil
	}
	ch := &mgrChange{req: api.AccountingRequest{Op: "delete"}}
	var names []string
	var header string
	switch ent {
	case entUser:
		users := userRows(data, &mgrFilter{names: cond.names, defAccounts: cond.defAccounts, admin: cond.admin, qos: cond.qos}, false)
		if len(cond.accounts) > 0 {
			return deleteUserAssocs(data, func(a *api.Association) bool {
				return inList(cond.accounts, a.Account) && slices.ContainsFunc(users, func(r mgrRow) bool { return r.user.Name == a.User })
			}), nil
		}
		header = " Deleting users...\n"
		for _, r := range users {
			ch.req.Users = append(ch.req.Users, api.User{Name: r.user.Name})
			names = append(names, r.user.Name)
		}
	case entAccount:
		if len(cond.names) == 0 {
			return nil, fmt.Errorf("No conditions given to remove, not executing.")
		}
		if len(cond.users) > 0 {
			return deleteUserAssocs(data, func(a *api.Association) bool {
				return inList(cond.names, a.Account) && inList(cond.users, a.User)
			}), nil
		}
		f := cond.mgrFilter
		header = " Deleting accounts...\n"
		for _, r := range accountRows(data, &f, false) {
			ch.req.Accounts = append(ch.req.Accounts, api.Account{Name: r.acct.Name})
			names = append(names, r.acct.Name)
		}
	case entQOS:
		if len(cond.names) == 0 {
			return nil, fmt.Errorf("No conditions given to remove, not executing.")
		}
		header = " Deleting QOS(s)...\n"
		for _, r := range qosRows(data, &cond.mgrFilter) {
			ch.req.QOS = append(ch.req.QOS, api.QOS{Name: r.qos.Name})
			names = append(names, r.qos.Name)
		}
	default:
		return nil, errors.New("delete " + ent + " is not supported")
	}
	if len(names) == 0 {
		return nothing, nil
	}
	var b strings.Builder
	writeNames(&b, header, names)
	ch.message = b.String()
	return ch, nil
}

// deleteUserAssocs is the change deleting the user associations that
// keep selects.
func deleteUserAssocs(data *api.AccountingResponse, keep func(*api.Association) bool) *mgrChange {
	ch := &mgrChange{req: api.AccountingRequest{Op: "delete"}}
	var objs []string
	for _, a := range assocTree(data) {
		if a.User != "" && keep(a) {
			ch.req.Associations = append(ch.req.Associations, api.Association{Account: a.Account, User: a.User})
			objs = append(objs, assocObject(a))
		}
	}
	if len(objs) == 0 {
		return &mgrChange{nothing: " Nothing deleted"}
	}
	var b strings.Builder
	writeNames(&b, " Deleting user associations...\n", objs)
	ch.message = b.String()
	return ch
}
