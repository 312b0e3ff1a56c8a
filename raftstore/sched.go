package raftstore

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/scheduler"
)

// Scheduling policy commands: accounting entities (sacctmgr),
// reservations, the scheduler configuration, and the fair-share usage and
// preemption bookkeeping of jobs.
//
// Results:
//
//	CmdAccounting         *api.AccountingResult
//	CmdSetReservation     *api.Reservation (a copy of the stored record)
//	CmdDeleteReservation  nil
//	CmdSetSchedConfig     nil

func init() {
	handlers[CmdAccounting] = (*applier).accounting
	handlers[CmdSetReservation] = (*applier).setReservation
	handlers[CmdDeleteReservation] = (*applier).deleteReservation
	handlers[CmdSetSchedConfig] = (*applier).setSchedConfig
	// Accounts and users made by `stockade user add` (and the bootstrap
	// admin) get their associations in the same command, so the
	// association tree never misses a member.
	addAccount, addUser := handlers[CmdAddAccount], handlers[CmdAddUser]
	handlers[CmdAddAccount] = func(a *applier, cmd *Command) any {
		res := addAccount(a, cmd)
		if _, failed := res.(error); !failed {
			a.ensureAssoc(cmd.Account.Name, "")
		}
		return res
	}
	handlers[CmdAddUser] = func(a *applier, cmd *Command) any {
		res := addUser(a, cmd)
		if _, failed := res.(error); !failed {
			for _, acct := range cmd.User.Accounts {
				if acct == rootAccount || a.account(acct) != nil {
					a.ensureAssoc(acct, cmd.User.Name)
				}
			}
		}
		return res
	}
}

// rootAccount is the top of the account tree; it exists whether or not
// it has a record.
const rootAccount = "root"

// More errors of policy commands (besides ErrInvalidCommand).
var (
	// ErrConflict: a valid request that the current state refuses (a
	// delete of something in use, an overlapping reservation, a
	// duplicate).
	ErrConflict = errors.New("conflicts with the current state")
	// ErrNotFound: the request names something that does not exist.
	ErrNotFound = errors.New("not found")
)

// FieldError is a refused policy command: Field names the request field
// at fault, Err is ErrInvalidCommand, ErrConflict or ErrNotFound.
type FieldError struct {
	Field string
	Msg   string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(kind error, field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...), Err: kind}
}

// prefixed returns err with its field prefixed by prefix (a FieldError)
// or err itself.
func prefixed(prefix string, err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		c := *fe
		c.Field = prefix + "." + c.Field
		return &c
	}
	return err
}

var (
	// Names of accounts, QoS and reservations: they become association
	// keys ("account/user"), so no slash.
	policyNameRE = lazyRegexp(`^[A-Za-z0-9_.-]{1,64}$`)
	userNameRE   = lazyRegexp(`^[a-z_][a-z0-9_.-]{0,31}$`)
	flagRE       = lazyRegexp(`^[A-Z_]{1,32}$`)
)

const maxDescription = 1024

// Check runs cmd against the snapshot without changing anything and
// returns what Apply would: the API validates requests with it before it
// proposes them, so refused changes never reach the log.
func (s *Snapshot) Check(cmd *Command) (res any) {
	txn := s.db.Txn(true)
	defer txn.Abort()
	defer func() {
		if r := recover(); r != nil {
			res = fmt.Errorf("raftstore: checking command %d: %v", cmdType(cmd), unwrapPanic(r))
		}
	}()
	meta := s.meta
	a := &applier{txn: txn, meta: &meta, index: s.meta.Index + 1}
	return a.apply(cmd)
}

// ---- lookups inside a transaction ----

func firstIn[T any](a *applier, table string, args ...any) *T {
	raw, err := a.txn.First(table, iID, args...)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*T)
}

func (a *applier) account(name string) *api.Account { return firstIn[api.Account](a, tAccounts, name) }
func (a *applier) user(name string) *api.User       { return firstIn[api.User](a, tUsers, name) }
func (a *applier) qos(name string) *api.QOS         { return firstIn[api.QOS](a, tQOS, name) }

func (a *applier) assoc(account, user string) *api.Association {
	return firstIn[api.Association](a, tAssocs, api.AssocKey(account, user))
}

func (a *applier) schedConfig() api.SchedConfig {
	if r := firstIn[schedConfigRow](a, tSchedConfig, schedConfigKey); r != nil {
		return r.Config
	}
	return api.DefaultSchedConfig()
}

// ensureAssoc creates an association with default shares if it is missing.
func (a *applier) ensureAssoc(account, user string) {
	if a.assoc(account, user) == nil {
		must(a.txn.Insert(tAssocs, &api.Association{Account: account, User: user, Shares: 1}))
	}
}

// liveJob returns the first pending or running job that match accepts.
func (a *applier) liveJob(match func(*api.Job) bool) *api.Job {
	for _, st := range []api.JobState{api.JobPending, api.JobRunning} {
		it, err := a.txn.Get(tJobs, iState, string(st))
		must(err)
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if j := raw.(*api.Job); match(j) {
				return j
			}
		}
	}
	return nil
}

// userLiveJob returns a pending or running job of user that match
// accepts (nil match: any).
func (a *applier) userLiveJob(user string, match func(*api.Job) bool) *api.Job {
	it, err := a.txn.Get(tJobs, iUser, user)
	must(err)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if j := raw.(*api.Job); !j.State.Terminal() && (match == nil || match(j)) {
			return j
		}
	}
	return nil
}

// policyReader is what default QoS resolution reads; Snapshot is one.
type policyReader interface {
	Account(name string) *api.Account
	Association(account, user string) *api.Association
	QOS(name string) *api.QOS
	SchedConfig() api.SchedConfig
}

// txnReader reads the policy tables through an applier's transaction.
type txnReader struct{ a *applier }

func (r txnReader) Account(name string) *api.Account { return r.a.account(name) }
func (r txnReader) Association(account, user string) *api.Association {
	return r.a.assoc(account, user)
}
func (r txnReader) QOS(name string) *api.QOS     { return r.a.qos(name) }
func (r txnReader) SchedConfig() api.SchedConfig { return r.a.schedConfig() }

// ResolveQOS is the QoS of a job of user in account that names none: the
// nearest association default (the user's, then its account's and the
// account's ancestors'), else the cluster's DefaultQOS. It is "" when the
// QoS found does not exist.
func ResolveQOS(st policyReader, account, user string) string {
	name := ""
	if as := st.Association(account, user); as != nil && user != "" {
		name = as.DefaultQOS
	}
	for acct, depth := account, 0; name == "" && acct != "" && depth < 64; depth++ {
		if as := st.Association(acct, ""); as != nil {
			name = as.DefaultQOS
		}
		if acct == rootAccount {
			break
		}
		parent := rootAccount
		if r := st.Account(acct); r != nil && r.Parent != "" {
			parent = r.Parent
		}
		acct = parent
	}
	if name == "" {
		name = st.SchedConfig().DefaultQOS
	}
	if name == "" || st.QOS(name) == nil {
		return ""
	}
	return name
}

// resolveSubmit fills a submitted spec's account (the user's default)
// and QoS (ResolveQOS) when the API did not: every member stores the
// same resolved job.
func (a *applier) resolveSubmit(spec *api.JobSpec, user string) {
	if spec.Account == "" {
		if u := a.user(user); u != nil {
			spec.Account = u.DefaultAccount
		}
	}
	if spec.QOS == "" {
		spec.QOS = ResolveQOS(txnReader{a}, spec.Account, user)
	}
}

// ---- accounting (sacctmgr) ----

// overlay holds a request's pending changes to one table over the
// transaction, so that every check sees the request's earlier changes
// and nothing is written until all of them passed.
type overlay[T any] struct {
	table string
	key   func(*T) string
	m     map[string]*T // nil value: deleted
}

func newOverlay[T any](table string, key func(*T) string) *overlay[T] {
	return &overlay[T]{table: table, key: key, m: map[string]*T{}}
}

func (o *overlay[T]) get(a *applier, key string) *T {
	if v, ok := o.m[key]; ok {
		return v
	}
	return firstIn[T](a, o.table, key)
}

func (o *overlay[T]) put(v *T)          { o.m[o.key(v)] = v }
func (o *overlay[T]) remove(key string) { o.m[key] = nil }

// all returns the merged records in key order.
func (o *overlay[T]) all(a *applier) []*T {
	var out []*T
	it, err := a.txn.Get(o.table, iID)
	must(err)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		v := raw.(*T)
		if _, changed := o.m[o.key(v)]; !changed {
			out = append(out, v)
		}
	}
	for _, v := range o.m {
		if v != nil {
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(x, y *T) int { return strings.Compare(o.key(x), o.key(y)) })
	return out
}

func (o *overlay[T]) flush(a *applier) {
	keys := make([]string, 0, len(o.m))
	for k := range o.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if v := o.m[k]; v != nil {
			must(a.txn.Insert(o.table, v))
		} else {
			_, err := a.txn.DeleteAll(o.table, iID, k)
			must(err)
		}
	}
}

// acctView is the accounting tables as a request changes them.
type acctView struct {
	a        *applier
	accounts *overlay[api.Account]
	users    *overlay[api.User]
	assocs   *overlay[api.Association]
	qos      *overlay[api.QOS]
	usage    []string // usage rows of deleted associations
	changed  []string
	demoted  bool
}

func newAcctView(a *applier) *acctView {
	return &acctView{
		a:        a,
		accounts: newOverlay(tAccounts, func(x *api.Account) string { return x.Name }),
		users:    newOverlay(tUsers, func(x *api.User) string { return x.Name }),
		assocs:   newOverlay(tAssocs, func(x *api.Association) string { return x.Key() }),
		qos:      newOverlay(tQOS, func(x *api.QOS) string { return x.Name }),
	}
}

func (v *acctView) accountExists(name string) bool {
	return name == rootAccount || v.accounts.get(v.a, name) != nil
}

func (v *acctView) note(format string, args ...any) {
	v.changed = append(v.changed, fmt.Sprintf(format, args...))
}

func (v *acctView) flush() {
	v.qos.flush(v.a)
	v.accounts.flush(v.a)
	v.users.flush(v.a)
	v.assocs.flush(v.a)
	for _, k := range v.usage {
		_, err := v.a.txn.DeleteAll(tUsage, iID, k)
		must(err)
	}
}

// accounting applies an sacctmgr request all or nothing: every entity is
// checked against the state as the request's earlier entities changed it,
// and nothing is written unless all pass. Add and modify go QoS,
// accounts, users, associations (what later ones refer to comes first);
// delete goes the other way.
func (a *applier) accounting(cmd *Command) any {
	req := cmd.Accounting
	if req == nil {
		return invalid("accounting command without a request")
	}
	if len(req.Accounts)+len(req.Users)+len(req.Associations)+len(req.QOS) == 0 {
		return fieldErr(ErrInvalidCommand, "op", "the request names no accounts, users, associations or qos")
	}
	v := newAcctView(a)
	var err error
	switch req.Op {
	case "add":
		err = v.add(req)
	case "modify":
		err = v.modify(req)
	case "delete":
		err = v.delete(req)
	default:
		err = fieldErr(ErrInvalidCommand, "op", "must be add, modify or delete, not %q", req.Op)
	}
	if err != nil {
		return err
	}
	v.flush()
	return &api.AccountingResult{Changed: v.changed}
}

func (v *acctView) add(req *api.AccountingRequest) error {
	if err := v.putQOS(req.QOS, false); err != nil {
		return err
	}
	if err := v.putAccounts(req.Accounts, false); err != nil {
		return err
	}
	for i := range req.Users {
		if err := v.addUser(fmt.Sprintf("users[%d]", i), &req.Users[i]); err != nil {
			return err
		}
	}
	return v.putAssocs(req.Associations, false)
}

// putQOS adds (modify false) or changes the request's QoS, then checks
// their preempt lists.
func (v *acctView) putQOS(qs []api.QOS, modify bool) error {
	for i := range qs {
		f := fmt.Sprintf("qos[%d]", i)
		q, err := cleanQOS(&qs[i])
		if err != nil {
			return prefixed(f, err)
		}
		switch old := v.qos.get(v.a, q.Name); {
		case modify && old == nil:
			return fieldErr(ErrNotFound, f+".name", "no such qos %q", q.Name)
		case !modify && old != nil:
			return fieldErr(ErrConflict, f+".name", "qos %s already exists", q.Name)
		}
		v.qos.put(q)
		v.note("qos %s", q.Name)
	}
	return v.checkPreempt(qs)
}

// putAccounts adds (modify false, with their associations) or changes the
// request's accounts.
func (v *acctView) putAccounts(accts []api.Account, modify bool) error {
	for i := range accts {
		f := fmt.Sprintf("accounts[%d]", i)
		ac, err := v.cleanAccount(f, &accts[i])
		if err != nil {
			return err
		}
		switch {
		case modify && v.accounts.get(v.a, ac.Name) == nil:
			return fieldErr(ErrNotFound, f+".name", "no such account %q", ac.Name)
		case modify:
			if err := v.checkCycle(f, ac); err != nil {
				return err
			}
		case v.accountExists(ac.Name):
			return fieldErr(ErrConflict, f+".name", "account %s already exists", ac.Name)
		}
		v.accounts.put(ac)
		v.note("account %s", ac.Name)
		if !modify && v.assocs.get(v.a, ac.Name) == nil {
			v.assocs.put(&api.Association{Account: ac.Name, Shares: 1})
		}
	}
	return nil
}

// putAssocs adds or (modify true: they must exist) changes the request's
// associations.
func (v *acctView) putAssocs(assocs []api.Association, modify bool) error {
	for i := range assocs {
		f := fmt.Sprintf("associations[%d]", i)
		if key := assocs[i].Key(); modify && v.assocs.get(v.a, key) == nil {
			return fieldErr(ErrNotFound, f, "no such association %s", key)
		}
		as, err := v.cleanAssoc(f, &assocs[i])
		if err != nil {
			return err
		}
		v.assocs.put(as)
		v.note("assoc %s", as.Key())
	}
	return nil
}

// addUser creates the user if needed (without a token: `stockade user
// add` issues one) and adds the accounts, with their associations.
func (v *acctView) addUser(f string, in *api.User) error {
	if !userNameRE().MatchString(in.Name) {
		return fieldErr(ErrInvalidCommand, f+".name", "invalid user name %q", in.Name)
	}
	if in.TokenID != "" || in.TokenHash != "" {
		return fieldErr(ErrInvalidCommand, f+".token_id", "tokens are issued only by `stockade user add`")
	}
	accts := slices.Clone(in.Accounts)
	if in.DefaultAccount != "" && !slices.Contains(accts, in.DefaultAccount) {
		accts = append(accts, in.DefaultAccount)
	}
	if len(accts) == 0 {
		return fieldErr(ErrInvalidCommand, f+".accounts", "name at least one account")
	}
	for _, acct := range accts {
		if !v.accountExists(acct) {
			return fieldErr(ErrNotFound, f+".accounts", "no such account %q", acct)
		}
	}
	var u api.User
	if old := v.users.get(v.a, in.Name); old != nil {
		u = *old
		u.Accounts = slices.Clone(old.Accounts)
	} else {
		if in.UID == 0 {
			return fieldErr(ErrInvalidCommand, f+".uid", "required for a new user (uid 0 is never created)")
		}
		if in.GID == 0 {
			return fieldErr(ErrInvalidCommand, f+".gid", "required for a new user (gid 0 is never created)")
		}
		u = api.User{Name: in.Name, UID: in.UID, GID: in.GID, Admin: in.Admin}
	}
	for _, acct := range accts {
		if !slices.Contains(u.Accounts, acct) {
			u.Accounts = append(u.Accounts, acct)
		}
		if v.assocs.get(v.a, api.AssocKey(acct, u.Name)) == nil {
			v.assocs.put(&api.Association{Account: acct, User: u.Name, Shares: 1})
			v.note("assoc %s", api.AssocKey(acct, u.Name))
		}
	}
	if u.DefaultAccount == "" {
		u.DefaultAccount = cmp.Or(in.DefaultAccount, accts[0])
	}
	v.users.put(&u)
	v.note("user %s", u.Name)
	return nil
}

func (v *acctView) modify(req *api.AccountingRequest) error {
	if err := v.putQOS(req.QOS, true); err != nil {
		return err
	}
	if err := v.putAccounts(req.Accounts, true); err != nil {
		return err
	}
	for i := range req.Users {
		f := fmt.Sprintf("users[%d]", i)
		in := &req.Users[i]
		old := v.users.get(v.a, in.Name)
		if old == nil {
			return fieldErr(ErrNotFound, f+".name", "no such user %q", in.Name)
		}
		u := *old
		if in.DefaultAccount != "" {
			if !slices.Contains(u.Accounts, in.DefaultAccount) {
				return fieldErr(ErrInvalidCommand, f+".default_account", "user %s is not in account %s", u.Name, in.DefaultAccount)
			}
			u.DefaultAccount = in.DefaultAccount
		}
		v.demoted = v.demoted || (u.Admin && !in.Admin)
		u.Admin = in.Admin
		v.users.put(&u)
		v.note("user %s", u.Name)
	}
	if err := v.checkAdminLeft(); err != nil {
		return err
	}
	return v.putAssocs(req.Associations, true)
}

func (v *acctView) delete(req *api.AccountingRequest) error {
	for i := range req.Associations {
		f := fmt.Sprintf("associations[%d]", i)
		in := &req.Associations[i]
		key := api.AssocKey(in.Account, in.User)
		if v.assocs.get(v.a, key) == nil {
			return fieldErr(ErrNotFound, f, "no such association %s", key)
		}
		if in.User == "" {
			return fieldErr(ErrInvalidCommand, f+".user", "an account's own association goes with the account: delete the account")
		}
		if j := v.a.userLiveJob(in.User, func(j *api.Job) bool { return j.Spec.Account == in.Account }); j != nil {
			return fieldErr(ErrConflict, f, "user %s has job %s in account %s", in.User, j.DisplayID(), in.Account)
		}
		v.dropAssoc(key)
		if old := v.users.get(v.a, in.User); old != nil {
			u := *old
			u.Accounts = slices.DeleteFunc(slices.Clone(old.Accounts), func(s string) bool { return s == in.Account })
			if u.DefaultAccount == in.Account {
				u.DefaultAccount = ""
				if len(u.Accounts) > 0 {
					u.DefaultAccount = u.Accounts[0]
				}
			}
			v.users.put(&u)
		}
		v.note("assoc %s", key)
	}
	for i := range req.Users {
		f := fmt.Sprintf("users[%d]", i)
		name := req.Users[i].Name
		if v.users.get(v.a, name) == nil {
			return fieldErr(ErrNotFound, f+".name", "no such user %q", name)
		}
		if name == "root" {
			return fieldErr(ErrInvalidCommand, f+".name", "user root cannot be deleted")
		}
		if j := v.a.userLiveJob(name, nil); j != nil {
			return fieldErr(ErrConflict, f+".name", "user %s has job %s pending or running", name, j.DisplayID())
		}
		v.demoted = v.demoted || v.users.get(v.a, name).Admin
		v.users.remove(name)
		v.dropAssocs(func(as *api.Association) bool { return as.User == name })
		v.note("user %s", name)
	}
	if err := v.checkAdminLeft(); err != nil {
		return err
	}
	for i := range req.Accounts {
		f := fmt.Sprintf("accounts[%d]", i)
		name := req.Accounts[i].Name
		if name == rootAccount {
			return fieldErr(ErrInvalidCommand, f+".name", "account root cannot be deleted")
		}
		if v.accounts.get(v.a, name) == nil {
			return fieldErr(ErrNotFound, f+".name", "no such account %q", name)
		}
		for _, ac := range v.accounts.all(v.a) {
			if ac.Parent == name {
				return fieldErr(ErrConflict, f+".name", "account %s has child account %s", name, ac.Name)
			}
		}
		for _, u := range v.users.all(v.a) {
			if slices.Contains(u.Accounts, name) || u.DefaultAccount == name {
				return fieldErr(ErrConflict, f+".name", "account %s has user %s", name, u.Name)
			}
		}
		if j := v.a.liveJob(func(j *api.Job) bool { return j.Spec.Account == name }); j != nil {
			return fieldErr(ErrConflict, f+".name", "account %s has job %s pending or running", name, j.DisplayID())
		}
		v.accounts.remove(name)
		v.dropAssocs(func(as *api.Association) bool { return as.Account == name })
		v.note("account %s", name)
	}
	cfg := v.a.schedConfig()
	for i := range req.QOS {
		f := fmt.Sprintf("qos[%d]", i)
		name := req.QOS[i].Name
		if v.qos.get(v.a, name) == nil {
			return fieldErr(ErrNotFound, f+".name", "no such qos %q", name)
		}
		if cfg.DefaultQOS == name {
			return fieldErr(ErrConflict, f+".name", "qos %s is the cluster's default qos", name)
		}
		if j := v.a.liveJob(func(j *api.Job) bool { return j.Spec.QOS == name }); j != nil {
			return fieldErr(ErrConflict, f+".name", "qos %s is used by job %s", name, j.DisplayID())
		}
		for _, as := range v.assocs.all(v.a) {
			// An allowed list left empty would allow every QoS.
			if as.DefaultQOS == name || slices.Contains(as.QOS, name) {
				return fieldErr(ErrConflict, f+".name", "qos %s is named by association %s", name, as.Key())
			}
		}
		v.qos.remove(name)
		for _, q := range v.qos.all(v.a) {
			if slices.Contains(q.Preempt, name) {
				return fieldErr(ErrConflict, f+".name", "qos %s is in the preempt list of qos %s", name, q.Name)
			}
		}
		v.note("qos %s", name)
	}
	return nil
}

// checkAdminLeft refuses demoting or deleting the last administrator.
func (v *acctView) checkAdminLeft() error {
	if v.demoted && !slices.ContainsFunc(v.users.all(v.a), func(u *api.User) bool { return u.Admin }) {
		return fieldErr(ErrConflict, "users", "the change would leave the cluster without an administrator")
	}
	return nil
}

func (v *acctView) dropAssoc(key string) {
	v.assocs.remove(key)
	v.usage = append(v.usage, key)
}

// dropAssocs drops the associations that match accepts.
func (v *acctView) dropAssocs(match func(*api.Association) bool) {
	for _, as := range v.assocs.all(v.a) {
		if match(as) {
			v.dropAssoc(as.Key())
		}
	}
}

// checkPreempt checks the preempt lists of the request's QoS against the
// QoS as the request leaves them.
func (v *acctView) checkPreempt(qs []api.QOS) error {
	for i := range qs {
		q := v.qos.get(v.a, qs[i].Name)
		for _, p := range q.Preempt {
			if p == q.Name {
				return fieldErr(ErrInvalidCommand, fmt.Sprintf("qos[%d].preempt", i), "qos %s cannot preempt itself", q.Name)
			}
			if v.qos.get(v.a, p) == nil {
				return fieldErr(ErrNotFound, fmt.Sprintf("qos[%d].preempt", i), "no such qos %q", p)
			}
		}
	}
	return nil
}

func (v *acctView) cleanAccount(f string, in *api.Account) (*api.Account, error) {
	ac := *in
	if !policyNameRE().MatchString(ac.Name) {
		return nil, fieldErr(ErrInvalidCommand, f+".name", "invalid account name %q", ac.Name)
	}
	if err := checkText(f+".description", ac.Description); err != nil {
		return nil, err
	}
	if ac.Name == rootAccount {
		if ac.Parent != "" && ac.Parent != rootAccount {
			return nil, fieldErr(ErrInvalidCommand, f+".parent", "account root has no parent")
		}
		ac.Parent = ""
		return &ac, nil
	}
	ac.Parent = cmp.Or(ac.Parent, rootAccount)
	if !v.accountExists(ac.Parent) {
		return nil, fieldErr(ErrNotFound, f+".parent", "no such account %q", ac.Parent)
	}
	return &ac, nil
}

// checkCycle refuses a parent that is the account or one of its
// descendants.
func (v *acctView) checkCycle(f string, ac *api.Account) error {
	for p, depth := ac.Parent, 0; p != "" && p != rootAccount; depth++ {
		if p == ac.Name || depth > 1000 {
			return fieldErr(ErrInvalidCommand, f+".parent", "account %s cannot be below itself", ac.Name)
		}
		r := v.accounts.get(v.a, p)
		if r == nil {
			break
		}
		p = r.Parent
	}
	return nil
}

func (v *acctView) cleanAssoc(f string, in *api.Association) (*api.Association, error) {
	as := *in
	as.QOS = slices.Clone(in.QOS)
	if !v.accountExists(as.Account) {
		return nil, fieldErr(ErrNotFound, f+".account", "no such account %q", as.Account)
	}
	if as.User != "" {
		u := v.users.get(v.a, as.User)
		if u == nil {
			return nil, fieldErr(ErrNotFound, f+".user", "no such user %q", as.User)
		}
		if !slices.Contains(u.Accounts, as.Account) {
			return nil, fieldErr(ErrInvalidCommand, f+".user", "user %s is not in account %s (add the user to it first)", as.User, as.Account)
		}
	}
	if err := nonNegative(f+".", numField{"shares", int64(as.Shares)}, numField{"max_jobs", int64(as.MaxJobs)},
		numField{"max_submit_jobs", int64(as.MaxSubmitJobs)}, numField{"max_wall_sec", as.MaxWallSec}); err != nil {
		return nil, err
	}
	if err := checkTRES(f+".grp_tres", as.GrpTRES); err != nil {
		return nil, err
	}
	for _, q := range as.QOS {
		if v.qos.get(v.a, q) == nil {
			return nil, fieldErr(ErrNotFound, f+".qos", "no such qos %q", q)
		}
	}
	if as.DefaultQOS != "" {
		if v.qos.get(v.a, as.DefaultQOS) == nil {
			return nil, fieldErr(ErrNotFound, f+".default_qos", "no such qos %q", as.DefaultQOS)
		}
		if len(as.QOS) > 0 && !slices.Contains(as.QOS, as.DefaultQOS) {
			return nil, fieldErr(ErrInvalidCommand, f+".default_qos", "qos %s is not in the association's qos list", as.DefaultQOS)
		}
	}
	return &as, nil
}

// cleanQOS validates a QoS and returns a normalized copy.
func cleanQOS(in *api.QOS) (*api.QOS, error) {
	q := *in
	q.Preempt = slices.Clone(in.Preempt)
	q.PreemptMode = strings.ToLower(q.PreemptMode)
	if q.PreemptMode == api.PreemptOff {
		q.PreemptMode = ""
	}
	return &q, ValidateQOS(&q)
}

// ValidateQOS checks a QoS's own fields (not the QoS its preempt list
// names); errors name the field.
func ValidateQOS(q *api.QOS) error {
	if !policyNameRE().MatchString(q.Name) {
		return fieldErr(ErrInvalidCommand, "name", "invalid qos name %q", q.Name)
	}
	if err := checkText("description", q.Description); err != nil {
		return err
	}
	if err := nonNegative("", numField{"priority", int64(q.Priority)}, numField{"max_jobs_per_user", int64(q.MaxJobsPerUser)},
		numField{"max_submit_jobs_per_user", int64(q.MaxSubmitJobsPerUser)}, numField{"max_wall_sec", q.MaxWallSec},
		numField{"grace_time_sec", q.GraceTimeSec}); err != nil {
		return err
	}
	if q.Priority > math.MaxInt32 {
		return fieldErr(ErrInvalidCommand, "priority", "larger than %d", math.MaxInt32)
	}
	if err := checkTRES("max_tres_per_user", q.MaxTRESPerUser); err != nil {
		return err
	}
	if err := checkTRES("max_tres_per_account", q.MaxTRESPerAccount); err != nil {
		return err
	}
	switch strings.ToLower(q.PreemptMode) {
	case "", api.PreemptOff, api.PreemptRequeue, api.PreemptCancel:
	default:
		return fieldErr(ErrInvalidCommand, "preempt_mode", "must be off, requeue or cancel, not %q", q.PreemptMode)
	}
	if q.UsageFactor < 0 || math.IsNaN(q.UsageFactor) || math.IsInf(q.UsageFactor, 0) {
		return fieldErr(ErrInvalidCommand, "usage_factor", "must be a number >= 0")
	}
	for _, p := range q.Preempt {
		if !policyNameRE().MatchString(p) {
			return fieldErr(ErrInvalidCommand, "preempt", "invalid qos name %q", p)
		}
	}
	return nil
}

// numField is a numeric request field and its value.
type numField struct {
	field string
	v     int64
}

// nonNegative refuses the first negative field; prefix goes before its
// name.
func nonNegative(prefix string, fields ...numField) error {
	for _, n := range fields {
		if n.v < 0 {
			return fieldErr(ErrInvalidCommand, prefix+n.field, "must be >= 0")
		}
	}
	return nil
}

func checkTRES(f string, t api.TRES) error {
	if t.CPUs < 0 || t.Nodes < 0 || t.GPUs < 0 || t.MemoryMB < 0 {
		return fieldErr(ErrInvalidCommand, f, "limits must be >= 0")
	}
	return nil
}

func checkText(f, s string) error {
	if len(s) > maxDescription {
		return fieldErr(ErrInvalidCommand, f, "longer than %d characters", maxDescription)
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fieldErr(ErrInvalidCommand, f, "contains control characters")
	}
	return nil
}

// ---- scheduler configuration ----

// maxWeight keeps a weighted priority sum far from overflowing int64.
const maxWeight = 1<<32 - 1

// ValidateSchedConfig checks a scheduler configuration; errors name the
// field (as in the TOML [scheduler] table).
func ValidateSchedConfig(c *api.SchedConfig) error {
	for _, w := range []struct {
		field string
		v     int64
	}{{"weights.age", c.Weights.Age}, {"weights.fairshare", c.Weights.FairShare}, {"weights.job_size", c.Weights.JobSize},
		{"weights.partition", c.Weights.Partition}, {"weights.qos", c.Weights.QOS}} {
		if w.v < 0 || w.v > maxWeight {
			return fieldErr(ErrInvalidCommand, w.field, "must be between 0 and %d", int64(maxWeight))
		}
	}
	if err := nonNegative("", numField{"max_age_sec", c.MaxAgeSec}, numField{"decay_half_life_sec", c.DecayHalfLifeSec},
		numField{"backfill_depth", int64(c.BackfillDepth)}, numField{"backfill_window_sec", c.BackfillWindowSec},
		numField{"backfill_reservations", int64(c.BackfillReservations)}); err != nil {
		return err
	}
	if c.GPUWeight < 0 || math.IsNaN(c.GPUWeight) || math.IsInf(c.GPUWeight, 0) {
		return fieldErr(ErrInvalidCommand, "gpu_weight", "must be a number >= 0")
	}
	switch c.Policy {
	case "backfill", "priority", "fifo":
	default:
		return fieldErr(ErrInvalidCommand, "policy", "must be backfill, priority or fifo, not %q", c.Policy)
	}
	if c.DefaultQOS != "" && !policyNameRE().MatchString(c.DefaultQOS) {
		return fieldErr(ErrInvalidCommand, "default_qos", "invalid qos name %q", c.DefaultQOS)
	}
	return nil
}

func (a *applier) setSchedConfig(cmd *Command) any {
	if cmd.SchedConfig == nil {
		return invalid("scheduler configuration command without a configuration")
	}
	c := *cmd.SchedConfig
	if err := ValidateSchedConfig(&c); err != nil {
		return prefixed("config", err)
	}
	must(a.txn.Insert(tSchedConfig, &schedConfigRow{Config: c}))
	return nil
}

// ---- reservations ----

// Overlaps reports whether two reservations hold a common node at a
// common time; it returns the first such node.
func Overlaps(a, b *api.Reservation) (string, bool) {
	if !a.Start.Before(b.End) || !b.Start.Before(a.End) {
		return "", false
	}
	for _, n := range a.Nodes {
		if slices.Contains(b.Nodes, n) {
			return n, true
		}
	}
	return "", false
}

func (a *applier) setReservation(cmd *Command) any {
	if cmd.Reservation == nil {
		return invalid("reservation command without a reservation")
	}
	r := *cmd.Reservation
	r.Users, r.Accounts, r.Nodes = slices.Clone(r.Users), slices.Clone(r.Accounts), slices.Clone(r.Nodes)
	r.Flags = slices.Clone(r.Flags)
	r.Start, r.End = r.Start.UTC(), r.End.UTC()
	if err := a.checkReservation(&r); err != nil {
		return prefixed("reservation", err)
	}
	must(a.txn.Insert(tResv, &r))
	out := r
	return &out
}

func (a *applier) checkReservation(r *api.Reservation) error {
	if !policyNameRE().MatchString(r.Name) {
		return fieldErr(ErrInvalidCommand, "name", "invalid reservation name %q", r.Name)
	}
	if r.Start.IsZero() {
		return fieldErr(ErrInvalidCommand, "start_time", "required")
	}
	if !r.End.After(r.Start) {
		return fieldErr(ErrInvalidCommand, "end_time", "must be after start_time")
	}
	if len(r.Users) == 0 && len(r.Accounts) == 0 {
		return fieldErr(ErrInvalidCommand, "users", "give users or accounts the reservation is for")
	}
	for _, u := range r.Users {
		if a.user(u) == nil {
			return fieldErr(ErrNotFound, "users", "no such user %q", u)
		}
	}
	for _, ac := range r.Accounts {
		if ac != rootAccount && a.account(ac) == nil {
			return fieldErr(ErrNotFound, "accounts", "no such account %q", ac)
		}
	}
	if r.Partition != "" && a.partition(r.Partition) == nil {
		return fieldErr(ErrNotFound, "partition", "no such partition %q", r.Partition)
	}
	if len(r.Nodes) == 0 {
		return fieldErr(ErrInvalidCommand, "nodes", "required")
	}
	slices.Sort(r.Nodes)
	r.Nodes = slices.Compact(r.Nodes)
	for _, n := range r.Nodes {
		if a.node(n) == nil {
			return fieldErr(ErrNotFound, "nodes", "no such node %q", n)
		}
	}
	for i, fl := range r.Flags {
		r.Flags[i] = strings.ToUpper(fl)
		if !flagRE().MatchString(r.Flags[i]) {
			return fieldErr(ErrInvalidCommand, "flags", "invalid flag %q", fl)
		}
	}
	it, err := a.txn.Get(tResv, iID)
	must(err)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		o := raw.(*api.Reservation)
		if o.Name == r.Name {
			continue
		}
		if n, ok := Overlaps(r, o); ok {
			return fieldErr(ErrConflict, "nodes", "node %s is reserved by %s from %s to %s", n, o.Name,
				o.Start.Format(time.RFC3339), o.End.Format(time.RFC3339))
		}
	}
	return nil
}

func (a *applier) deleteReservation(cmd *Command) any {
	if cmd.Reservation == nil {
		return invalid("reservation command without a reservation")
	}
	name := cmd.Reservation.Name
	if firstIn[api.Reservation](a, tResv, name) == nil {
		return fieldErr(ErrNotFound, "reservation.name", "no such reservation %q", name)
	}
	_, err := a.txn.DeleteAll(tResv, iID, name)
	must(err)
	return nil
}

// ---- fair-share usage and preemption ----

// chargeUsage adds what a running job used until end to its user
// association's fair-share usage, first decaying the stored usage to end.
// Only command times are used, so every member computes the same value.
func (a *applier) chargeUsage(j *api.Job, end time.Time) {
	if j.State != api.JobRunning || j.StartTime.IsZero() || j.Spec.Account == "" || j.User == "" {
		return
	}
	cfg := a.schedConfig()
	var q *api.QOS
	if j.Spec.QOS != "" {
		q = a.qos(j.Spec.QOS)
	}
	add := scheduler.JobUsage(j, end, cfg, q)
	if !(add > 0) || math.IsInf(add, 0) {
		return
	}
	u := api.FairShareUsage{Account: j.Spec.Account, User: j.User, UpdatedAt: end}
	if old := firstIn[api.FairShareUsage](a, tUsage, u.Key()); old != nil {
		u = *old
		// A report may carry an end before the last update: it is added
		// undecayed rather than moving the clock back.
		if end.After(u.UpdatedAt) {
			u.Raw = scheduler.DecayUsage(u.Raw, u.UpdatedAt, end, cfg.DecayHalfLifeSec)
			u.UpdatedAt = end
		}
	}
	u.Raw += add
	must(a.txn.Insert(tUsage, &u))
}

// preempt marks running jobs preempted; the agents stop them after their
// grace time and report, and report() ends or requeues them.
func (a *applier) preempt(ps []scheduler.Preemption, now time.Time) []uint64 {
	var done []uint64
	for _, p := range ps {
		mode := strings.ToLower(p.Mode)
		if mode != api.PreemptRequeue && mode != api.PreemptCancel {
			continue
		}
		j := a.job(p.JobID)
		if j == nil || j.State != api.JobRunning || !j.PreemptedAt.IsZero() || j.CancelRequested {
			continue
		}
		c := *j
		c.PreemptedAt, c.GraceTimeSec, c.PreemptMode = now, max(0, p.GraceSec), mode
		a.putJob(&c)
		done = append(done, p.JobID)
	}
	return done
}

// endPreempted ends a preempted job whose agent reported its end (in any
// state): requeued as Slurm's PreemptMode=REQUEUE does for requeueable
// jobs, else PREEMPTED.
func (a *applier) endPreempted(j *api.Job, r *api.JobReport, end time.Time) {
	if j.PreemptMode == api.PreemptRequeue && j.Spec.Requeue {
		a.chargeUsage(j, end)
		a.requeue(j)
		c := *a.job(j.ID)
		if c.HeldBy == "" {
			c.Reason = api.ReasonPreempted
		}
		a.putJob(&c)
		return
	}
	a.finish(j, api.JobPreempted, end, func(c *api.Job) {
		c.ExitCode, c.ExitSignal, c.Usage = r.ExitCode, r.ExitSignal, r.Usage
		c.FailReason = "preempted"
	})
}

// lazyRegexp compiles expr on first use: bounded repetitions such as
// {1,64} cost hundreds of allocations to compile, and every run of the
// binary (each sbatch too) would pay them at init.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
