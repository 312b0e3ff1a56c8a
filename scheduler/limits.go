package scheduler

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/stockade-hpc/stockade/api"
)

// Slurm reasons api has no constant for.
const (
	reasonQOSMaxGRESPerAccount   = "QOSMaxGRESPerAccount"
	reasonQOSMaxMemoryPerAccount = "QOSMaxMemoryPerAccount"
	reasonAssocMaxWall           = "AssocMaxWallDurationPerJobLimit"
)

// usage is what running jobs hold against one limit. Nodes are summed
// per job, so two jobs sharing a node count it twice.
type usage struct {
	jobs, cpus, nodes, gpus int
	mem                     int64
}

func (u *usage) add(v usage) {
	u.jobs += v.jobs
	u.cpus += v.cpus
	u.nodes += v.nodes
	u.gpus += v.gpus
	u.mem += v.mem
}

// runningUsage is what a running job holds.
func runningUsage(j *api.Job) usage {
	n := len(j.Nodes)
	return usage{jobs: 1, cpus: j.AllocCPUs * n, nodes: n, gpus: j.AllocGPUs * n, mem: j.AllocMemoryMB * int64(n)}
}

// tresReasons names the pending reason for each resource of one TRES cap.
type tresReasons struct{ cpu, node, gpu, mem string }

var (
	qosUserReasons = tresReasons{api.ReasonQOSMaxCPUPerUserLimit, api.ReasonQOSMaxNodePerUserLimit,
		api.ReasonQOSMaxGRESPerUserLimit, api.ReasonQOSMaxMemoryPerUserLimit}
	qosAccountReasons = tresReasons{api.ReasonQOSMaxCPUPerAccountLimit, api.ReasonQOSMaxNodePerAccountLimit,
		reasonQOSMaxGRESPerAccount, reasonQOSMaxMemoryPerAccount}
	grpReasons = tresReasons{api.ReasonAssocGrpCPULimit, api.ReasonAssocGrpNodeLimit,
		api.ReasonAssocGrpGRES, api.ReasonAssocGrpMemLimit}
)

// exceedsTRES names the first resource of limit that held plus req would
// go over ("" when none).
func exceedsTRES(limit api.TRES, held *usage, req usage, r tresReasons) string {
	switch {
	case limit.CPUs > 0 && held.cpus+req.cpus > limit.CPUs:
		return r.cpu
	case limit.Nodes > 0 && held.nodes+req.nodes > limit.Nodes:
		return r.node
	case limit.GPUs > 0 && held.gpus+req.gpus > limit.GPUs:
		return r.gpu
	case limit.MemoryMB > 0 && held.mem+req.mem > limit.MemoryMB:
		return r.mem
	}
	return ""
}

// overWall reports whether a time limit (0: none) exceeds a maximum (0:
// none). A job without a limit exceeds every maximum: it would run past it.
func overWall(limit, maxSec int64) bool {
	return maxSec > 0 && (limit <= 0 || limit > maxSec)
}

// grpCap is one association's GrpTRES with the usage it caps.
type grpCap struct {
	max api.TRES
	use *usage
}

// jobCtx is what limits need to know about jobs of one user, account and
// requested QoS; it is shared by all of them.
type jobCtx struct {
	qosName string
	qos     *api.QOS // nil: no QoS (or an unknown one, see bad)
	// bad is InvalidQOS or QOSNotAllowed when the job may not run at all.
	bad string
	// Inherited association limits: the nearest association on the path
	// from the user's association up the account tree that sets one
	// (Slurm's Max* inheritance). They apply to the user in this account.
	maxJobs, maxSubmit int
	maxWall            int64
	wallFrom           string // key of the association maxWall comes from
	qosUser, qosAcct   *usage // nil without a QoS
	user               *usage // the user's jobs in the account; nil without associations
	grps               []grpCap
	// charge lists every usage a running job of this context adds to.
	charge []*usage
}

// exceeds names the limit a job asking req would break now, "" if none.
func (c *jobCtx) exceeds(req usage) string {
	if q := c.qos; q != nil {
		if q.MaxJobsPerUser > 0 && c.qosUser.jobs+req.jobs > q.MaxJobsPerUser {
			return api.ReasonQOSMaxJobsPerUserLimit
		}
		if r := exceedsTRES(q.MaxTRESPerUser, c.qosUser, req, qosUserReasons); r != "" {
			return r
		}
		if r := exceedsTRES(q.MaxTRESPerAccount, c.qosAcct, req, qosAccountReasons); r != "" {
			return r
		}
	}
	if c.maxJobs > 0 && c.user != nil && c.user.jobs+req.jobs > c.maxJobs {
		return api.ReasonAssocMaxJobsLimit
	}
	for _, g := range c.grps {
		if r := exceedsTRES(g.max, g.use, req, grpReasons); r != "" {
			return r
		}
	}
	return ""
}

type ctxKey struct{ user, account, qos string }

// useKey names a usage counter: kind 'u' (QoS a, user b), 'a' (QoS a,
// account b), 's' (account a, user b; user "" is the account's subtree).
type useKey struct {
	kind byte
	a, b string
}

// limits resolves jobs' QoS and associations and counts what running jobs
// (this pass's placements included) hold against QoS and association
// limits.
type limits struct {
	cfg      api.SchedConfig
	qos      map[string]*api.QOS
	assocs   map[string]*api.Association
	parent   map[string]string
	accounts map[string]bool
	ctxs     map[ctxKey]*jobCtx
	uses     map[useKey]*usage
}

func newLimits(st State, cfg api.SchedConfig) *limits {
	l := &limits{
		cfg:      cfg,
		qos:      make(map[string]*api.QOS),
		assocs:   make(map[string]*api.Association),
		parent:   make(map[string]string),
		accounts: make(map[string]bool),
		ctxs:     make(map[ctxKey]*jobCtx),
		uses:     make(map[useKey]*usage),
	}
	for _, q := range st.QOSList() {
		l.qos[q.Name] = q
	}
	for _, a := range st.Associations() {
		l.assocs[a.Key()] = a
		l.accounts[a.Account] = true
	}
	for _, a := range st.Accounts() {
		l.accounts[a.Name] = true
		if a.Parent != "" && a.Parent != a.Name {
			l.parent[a.Name] = a.Parent
		}
	}
	return l
}

// active reports whether any QoS or association exists: without them
// every job has no QoS or association limit and the pass skips them.
func (l *limits) active() bool { return len(l.qos) > 0 || len(l.assocs) > 0 }

// chain is an account and its ancestors, nearest first. A cycle in the
// tree ends it.
func (l *limits) chain(account string) []string {
	var out []string
	for a := account; a != "" && !slices.Contains(out, a); a = l.parent[a] {
		out = append(out, a)
	}
	return out
}

// path is the existing associations a job of user in account is under:
// the user's own, then the account's and its ancestors'.
func (l *limits) path(user, account string) []*api.Association {
	if account == "" {
		return nil
	}
	var out []*api.Association
	if a := l.assocs[api.AssocKey(account, user)]; a != nil && user != "" {
		out = append(out, a)
	}
	for _, acc := range l.chain(account) {
		if a := l.assocs[acc]; a != nil {
			out = append(out, a)
		}
	}
	return out
}

func (l *limits) use(k useKey) *usage {
	u := l.uses[k]
	if u == nil {
		u = new(usage)
		l.uses[k] = u
	}
	return u
}

func (l *limits) ctxFor(j *api.Job) *jobCtx { return l.ctx(j.User, j.Spec.Account, j.Spec.QOS) }

// ctx resolves the QoS (the requested one, else the nearest association
// default, else SchedConfig.DefaultQOS) and the association limits of a
// job. A missing QoS is invalid unless it is the configured default on a
// cluster that has no QoS at all.
func (l *limits) ctx(user, account, qosName string) *jobCtx {
	k := ctxKey{user, account, qosName}
	if c, ok := l.ctxs[k]; ok {
		return c
	}
	c := &jobCtx{}
	path := l.path(user, account)
	for _, a := range path {
		if qosName != "" {
			break
		}
		qosName = a.DefaultQOS
	}
	if qosName == "" {
		qosName = l.cfg.DefaultQOS
	}
	c.qosName = qosName
	if qosName != "" {
		if c.qos = l.qos[qosName]; c.qos == nil && (qosName != l.cfg.DefaultQOS || len(l.qos) > 0) {
			c.bad = api.ReasonInvalidQOS
		}
	}
	for _, a := range path {
		if len(a.QOS) > 0 {
			if c.bad == "" && !slices.Contains(a.QOS, qosName) {
				c.bad = api.ReasonQOSNotAllowed
			}
			break
		}
	}
	for _, a := range path {
		if c.maxJobs == 0 {
			c.maxJobs = a.MaxJobs
		}
		if c.maxSubmit == 0 {
			c.maxSubmit = a.MaxSubmitJobs
		}
		if c.maxWall == 0 && a.MaxWallSec > 0 {
			c.maxWall, c.wallFrom = a.MaxWallSec, a.Key()
		}
	}
	if c.qos != nil {
		c.qosUser = l.use(useKey{'u', qosName, user})
		c.qosAcct = l.use(useKey{'a', qosName, account})
		c.charge = append(c.charge, c.qosUser, c.qosAcct)
	}
	if account != "" && len(l.assocs) > 0 {
		c.user = l.use(useKey{'s', account, user})
		c.charge = append(c.charge, c.user)
		if a := l.assocs[api.AssocKey(account, user)]; a != nil && user != "" && !a.GrpTRES.Zero() {
			c.grps = append(c.grps, grpCap{a.GrpTRES, c.user})
		}
		// Only accounts with a GrpTRES are counted: nothing reads the
		// others' subtree usage.
		for _, acc := range l.chain(account) {
			if a := l.assocs[acc]; a != nil && !a.GrpTRES.Zero() {
				u := l.use(useKey{'s', acc, ""})
				c.grps = append(c.grps, grpCap{a.GrpTRES, u})
				c.charge = append(c.charge, u)
			}
		}
	}
	l.ctxs[k] = c
	return c
}

func (l *limits) charge(c *jobCtx, u usage) {
	for _, p := range c.charge {
		p.add(u)
	}
}

func (l *limits) chargeRunning(running []*api.Job) {
	for _, j := range running {
		if j.State == api.JobRunning {
			l.charge(l.ctxFor(j), runningUsage(j))
		}
	}
}

// jobLimits checks what holds a job whatever else runs: QoS and account
// access and per-job limits of its partition, QoS and association.
func (s *pass) jobLimits(q *queued) string {
	pt := q.part
	account, qosName := q.job.Spec.Account, q.job.Spec.QOS
	c := q.ctx
	if c != nil {
		if c.bad != "" {
			return c.bad
		}
		qosName = c.qosName
	} else if qosName == "" {
		qosName = s.cfg.DefaultQOS
	} else if qosName != s.cfg.DefaultQOS {
		// No QoS exists at all: only the configured default is valid.
		return api.ReasonInvalidQOS
	}
	switch {
	case len(pt.AllowAccounts) > 0 && !slices.Contains(pt.AllowAccounts, account):
		return api.ReasonAccountNotAllowed
	case len(pt.AllowQOS) > 0 && !slices.Contains(pt.AllowQOS, qosName):
		return api.ReasonQOSNotAllowed
	case pt.MaxNodes > 0 && q.k > pt.MaxNodes:
		return api.ReasonPartitionNodeLimit
	case overWall(q.limit, pt.MaxTimeSec):
		return api.ReasonPartitionTimeLimit
	case c == nil:
	case c.qos != nil && overWall(q.limit, c.qos.MaxWallSec):
		return api.ReasonQOSMaxWallDurationPerJob
	case overWall(q.limit, c.maxWall):
		return reasonAssocMaxWall
	}
	return ""
}

// CheckSubmit applies at submit time the QoS, association, partition
// access and reservation rules that would keep the job from ever running
// or that count submissions: count is how many jobs the submission
// creates (array tasks). Errors are one line naming the option, as
// sbatch's. It complements ValidateSpec, which checks the job's shape.
func CheckSubmit(st State, user string, spec *api.JobSpec, count int) error {
	if spec == nil {
		return errors.New("job: empty specification")
	}
	count = max(count, 1)
	cfg := st.SchedConfig()
	l := newLimits(st, cfg)
	account := spec.Account
	if account != "" && len(l.accounts) > 0 && !l.accounts[account] {
		return fmt.Errorf("--account: invalid account specified: %s", account)
	}
	c := l.ctx(user, account, spec.QOS)
	switch c.bad {
	case api.ReasonInvalidQOS:
		return fmt.Errorf("--qos: invalid QoS specified: %s", c.qosName)
	case api.ReasonQOSNotAllowed:
		return fmt.Errorf("--qos: QoS %s is not allowed for user %s in account %s", c.qosName, user, account)
	}
	pt := DefaultPartition(st)
	if spec.Partition != "" {
		pt = st.Partition(spec.Partition)
	}
	limit := spec.TimeLimitSec
	if pt != nil {
		if len(pt.AllowAccounts) > 0 && !slices.Contains(pt.AllowAccounts, account) {
			return fmt.Errorf("--account: account %q is not allowed in partition %s", account, pt.Name)
		}
		if len(pt.AllowQOS) > 0 && !slices.Contains(pt.AllowQOS, c.qosName) {
			return fmt.Errorf("--qos: QoS %q is not allowed in partition %s", c.qosName, pt.Name)
		}
		// Resolved as submit resolves it: the partition default, else
		// its maximum.
		limit = cmp.Or(limit, pt.DefaultTimeSec, pt.MaxTimeSec)
	}
	if q := c.qos; q != nil && overWall(limit, q.MaxWallSec) {
		return fmt.Errorf("--time: %s exceeds QoS %s's MaxWall %s", wallText(limit), q.Name, formatDuration(q.MaxWallSec))
	}
	if overWall(limit, c.maxWall) {
		return fmt.Errorf("--time: %s exceeds association %s's MaxWall %s", wallText(limit), c.wallFrom, formatDuration(c.maxWall))
	}
	if spec.Reservation != "" {
		var r *api.Reservation
		for _, x := range st.Reservations() {
			if x.Name == spec.Reservation {
				r = x
			}
		}
		switch {
		case r == nil:
			return fmt.Errorf("--reservation: reservation %s not found", spec.Reservation)
		case !r.Admits(user, account):
			return fmt.Errorf("--reservation: access denied to reservation %s for user %s", r.Name, user)
		}
	}
	var qosMax int
	if c.qos != nil {
		qosMax = c.qos.MaxSubmitJobsPerUser
	}
	if qosMax == 0 && c.maxSubmit == 0 {
		return nil
	}
	var inQOS, inAccount int
	for _, jobs := range [][]*api.Job{st.PendingJobs(), st.RunningJobs()} {
		for _, j := range jobs {
			if j.User != user || j.State.Terminal() {
				continue
			}
			if j.Spec.Account == account {
				inAccount++
			}
			if qosMax > 0 && l.ctxFor(j).qosName == c.qosName {
				inQOS++
			}
		}
	}
	if qosMax > 0 && inQOS+count > qosMax {
		return fmt.Errorf("--qos: QoS %s MaxSubmitJobsPerUser is %d: user %s has %d jobs pending or running and submits %d",
			c.qosName, qosMax, user, inQOS, count)
	}
	if c.maxSubmit > 0 && inAccount+count > c.maxSubmit {
		return fmt.Errorf("--account: association MaxSubmitJobs is %d: user %s has %d jobs pending or running in account %s and submits %d",
			c.maxSubmit, user, inAccount, account, count)
	}
	return nil
}

func wallText(limit int64) string {
	if limit <= 0 {
		return "no time limit"
	}
	return formatDuration(limit)
}
