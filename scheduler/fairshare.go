package scheduler

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// Fair Tree fair-share (Slurm's PriorityFlags=FAIR_TREE). The association
// tree is root -> accounts -> user leaves. At every level siblings are
// ranked by Level FS = S/U (S: shares over sibling shares, U: usage over
// the parent's usage); a depth-first walk in that order hands out ranks to
// users, and a user's factor is rank/users, so the first user gets 1.0.
//
// Ties follow Slurm: sibling users with equal Level FS share a rank; a user
// tied with a sibling account shares its rank with that account's best
// user; sibling accounts with equal Level FS have their children merged and
// ranked together. Equality is exact float equality, as in Slurm.
//
// Shares come from the associations (0 counts as 1; an account without its
// own association has 1). A job's leaf is its user under its Spec.Account;
// a user without an association gets a leaf with shares 1, directly under
// root (account "root") when the account is empty or unknown. Usage is the
// stored usage decayed to now plus running jobs' JobUsage up to now, and
// an account's is its subtree's.

// InfiniteLevelFS stands for an infinite Level FS (no usage at its level) in
// api.ShareInfo, because JSON cannot carry +Inf. sshare prints it as "inf".
const InfiniteLevelFS = math.MaxFloat64

// DecayUsage decays usage recorded at from to time to with a half-life of
// halfLifeSec: it halves every half-life. A half-life <= 0 means no decay,
// and usage never grows when to is not after from.
func DecayUsage(raw float64, from, to time.Time, halfLifeSec int64) float64 {
	if halfLifeSec <= 0 || !to.After(from) {
		return raw
	}
	return raw * math.Exp2(-to.Sub(from).Seconds()/float64(halfLifeSec))
}

// JobUsage is the fair-share usage a job charges from its StartTime to end:
// (CPUs + GPUs*cfg.GPUWeight) per node, times nodes, times seconds, times
// the QoS UsageFactor when it is > 0 (q may be nil). The allocation is used
// when recorded, else the request. Not started or end <= start: 0. The
// state store charges it when a job ends and the priority calculation for
// running jobs, so both agree.
func JobUsage(j *api.Job, end time.Time, cfg api.SchedConfig, q *api.QOS) float64 {
	if j.StartTime.IsZero() || !end.After(j.StartTime) {
		return 0
	}
	nodes := len(j.Nodes)
	if nodes == 0 {
		nodes = max(j.Spec.Nodes, 1)
	}
	cpus, gpus := j.AllocCPUs, j.AllocGPUs
	if cpus == 0 && gpus == 0 {
		cpus, gpus = j.Spec.CPUsPerNode(), j.Spec.GPUsPerNode
	}
	u := (float64(cpus) + float64(gpus)*cfg.GPUWeight) * float64(nodes) * end.Sub(j.StartTime).Seconds()
	if q != nil && q.UsageFactor > 0 {
		u *= q.UsageFactor
	}
	return u
}

const rootAccount = "root"

// leafKey names a user leaf: the account it hangs under and the user.
type leafKey struct{ account, user string }

type fsNode struct {
	name   string // account, or user for leaves
	parent int32  // -1 for root
	user   bool
	shares int     // 0 already counted as 1
	own    float64 // usage charged to the node itself
	usage  float64 // own plus the subtree's
	// defQOS is the association's DefaultQOS; qos the one resolved up the
	// tree, once qosDone.
	defQOS   string
	qos      string
	qosDone  bool
	children []int32

	normShares, effUsage, levelFS, factor float64
	depth                                 int
}

// fairTree is the association tree of one calculation, with usage as of
// its now.
type fairTree struct {
	nodes    []fsNode
	accounts map[string]int32
	leaves   map[leafKey]int32
	qos      map[string]*api.QOS
	users    int
}

// newFairTree builds the tree of accounts and associations. Leaves for
// pending jobs' users are added with leaf, then finish charges usage and
// ranks.
func newFairTree(st State) *fairTree {
	t := &fairTree{accounts: make(map[string]int32), leaves: make(map[leafKey]int32)}
	t.nodes = append(t.nodes, fsNode{name: rootAccount, parent: -1, shares: 1})
	t.accounts[rootAccount] = 0
	ql := st.QOSList()
	t.qos = make(map[string]*api.QOS, len(ql))
	for _, q := range ql {
		t.qos[q.Name] = q
	}

	// Accounts, in name order so indices do not depend on input order.
	parentOf := make(map[string]string)
	for _, a := range st.Accounts() {
		if a.Name != "" && a.Name != rootAccount {
			parentOf[a.Name] = a.Parent
		}
	}
	assocs := st.Associations()
	for _, a := range assocs {
		if _, ok := parentOf[a.Account]; !ok && a.Account != "" && a.Account != rootAccount {
			parentOf[a.Account] = ""
		}
	}
	names := make([]string, 0, len(parentOf))
	for n := range parentOf {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t.accounts[n] = int32(len(t.nodes))
		t.nodes = append(t.nodes, fsNode{name: n, shares: 1})
	}
	t.resolveParents(parentOf)

	for _, a := range assocs {
		shares := max(a.Shares, 1)
		if a.User == "" {
			n := &t.nodes[t.account(a.Account)]
			n.shares, n.defQOS = shares, a.DefaultQOS
			continue
		}
		i := t.leaf(a.Account, a.User)
		t.nodes[i].shares, t.nodes[i].defQOS = shares, a.DefaultQOS
	}
	return t
}

// finish charges usage as of now and ranks the users.
func (t *fairTree) finish(now time.Time, st State, cfg api.SchedConfig) {
	// Running jobs accrue usage up to now, undecayed until they end.
	for _, j := range st.RunningJobs() {
		i := t.leaf(j.Spec.Account, j.User)
		t.nodes[i].own += JobUsage(j, now, cfg, t.qos[t.jobQOS(j, i, cfg.DefaultQOS)])
	}
	// Stored usage; a user with usage but no leaf charges its account.
	for _, u := range st.FairShareUsage() {
		raw := DecayUsage(u.Raw, u.UpdatedAt, now, cfg.DecayHalfLifeSec)
		acct := t.account(u.Account)
		i := acct
		if u.User != "" {
			if l, ok := t.leaves[leafKey{t.nodes[acct].name, u.User}]; ok {
				i = l
			}
		}
		t.nodes[i].own += raw
	}

	for i := int32(1); i < int32(len(t.nodes)); i++ {
		p := t.nodes[i].parent
		t.nodes[p].children = append(t.nodes[p].children, i)
	}
	t.rollUp(0, 0)
	t.levels(0)
	rank, next := t.users, t.users
	t.rankLevel(slices.Clone(t.nodes[0].children), &rank, &next, false)
}

// resolveParents links accounts to their parents. An empty, "root" or
// unknown parent means root; an account in a parent cycle is cut loose
// under root so the walk terminates.
func (t *fairTree) resolveParents(parentOf map[string]string) {
	const (
		unseen = iota
		visiting
		done
	)
	mark := make([]uint8, len(t.nodes))
	mark[0] = done
	var resolve func(i int32)
	resolve = func(i int32) {
		if mark[i] != unseen {
			return
		}
		mark[i] = visiting
		p := int32(0)
		if pi, ok := t.accounts[parentOf[t.nodes[i].name]]; ok && mark[pi] != visiting {
			resolve(pi)
			p = pi
		}
		t.nodes[i].parent = p
		mark[i] = done
	}
	for i := int32(1); i < int32(len(t.nodes)); i++ {
		resolve(i)
	}
}

// account is the node of an account name; "" and unknown names are root.
func (t *fairTree) account(name string) int32 {
	return t.accounts[name] // missing: 0, root
}

// leaf finds or creates the leaf of user in account. A user without an
// association is a leaf with shares 1; an unknown or empty account puts it
// directly under root.
func (t *fairTree) leaf(account, user string) int32 {
	if i, ok := t.leaves[leafKey{account, user}]; ok {
		return i
	}
	acct := t.account(account)
	key := leafKey{t.nodes[acct].name, user}
	if i, ok := t.leaves[key]; ok {
		return i
	}
	i := int32(len(t.nodes))
	t.nodes = append(t.nodes, fsNode{name: user, parent: acct, user: true, shares: 1})
	t.leaves[key] = i
	t.users++
	return i
}

// leafQOS is the default QoS of a leaf: its own association's, else the
// nearest account's up the tree ("" when none names one).
func (t *fairTree) leafQOS(i int32) string {
	n := &t.nodes[i]
	if !n.qosDone {
		for a := i; a >= 0 && n.qos == ""; a = t.nodes[a].parent {
			n.qos = t.nodes[a].defQOS
		}
		n.qosDone = true
	}
	return n.qos
}

// jobQOS resolves a job's QoS: its own, else its association's default,
// else the cluster default def.
func (t *fairTree) jobQOS(j *api.Job, leaf int32, def string) string {
	if j.Spec.QOS != "" {
		return j.Spec.QOS
	}
	if q := t.leafQOS(leaf); q != "" {
		return q
	}
	return def
}

// rollUp sums usage up the tree and sets depths.
func (t *fairTree) rollUp(i int32, depth int) float64 {
	n := &t.nodes[i]
	n.depth = depth
	u := n.own
	for _, c := range n.children {
		u += t.rollUp(c, depth+1)
	}
	t.nodes[i].usage = u
	return u
}

// levels sets NormShares, EffectvUsage and Level FS of every node below i.
func (t *fairTree) levels(i int32) {
	p := &t.nodes[i]
	sum := 0
	for _, c := range p.children {
		sum += t.nodes[c].shares
	}
	for _, c := range p.children {
		n := &t.nodes[c]
		n.normShares = float64(n.shares) / float64(sum)
		if p.usage > 0 {
			n.effUsage = n.usage / p.usage
		}
		n.levelFS = math.Inf(1)
		if n.effUsage > 0 {
			n.levelFS = n.normShares / n.effUsage
		}
		t.levels(c)
	}
}

// cmpLevel orders siblings by Level FS, highest first; users before
// accounts on a tie (so a tied account inherits the user's rank), then by
// name and parent name for determinism.
func (t *fairTree) cmpLevel(a, b int32) int {
	x, y := &t.nodes[a], &t.nodes[b]
	if c := cmp.Compare(y.levelFS, x.levelFS); c != 0 {
		return c
	}
	if x.user != y.user {
		if x.user {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(x.name, y.name); c != 0 {
		return c
	}
	return cmp.Compare(t.nodes[x.parent].name, t.nodes[y.parent].name)
}

// rankLevel is Slurm's _calc_tree_fs: rank is the rank being handed out,
// next the one the next untied user gets.
func (t *fairTree) rankLevel(sib []int32, rank, next *int, accountTied bool) {
	slices.SortFunc(sib, t.cmpLevel)
	prev := math.NaN()
	for k := 0; k < len(sib); k++ {
		n := &t.nodes[sib[k]]
		tied := accountTied || n.levelFS == prev
		accountTied = false
		prev = n.levelFS
		if n.user {
			if !tied {
				*rank = *next
			}
			n.factor = float64(*rank) / float64(t.users)
			*next--
			continue
		}
		merged := slices.Clone(n.children)
		for k+1 < len(sib) && !t.nodes[sib[k+1]].user && t.nodes[sib[k+1]].levelFS == n.levelFS {
			k++
			merged = append(merged, t.nodes[sib[k]].children...)
		}
		t.rankLevel(merged, rank, next, tied)
	}
}

// FairShare computes sshare's rows at now in tree order: root first, then
// depth-first with each parent before its children, a parent's users
// (by name) before its sub-accounts (by name), as sshare lists them.
//
// RawShares is the shares used (0 and missing count as 1); NormShares is
// shares over the siblings' sum; RawUsage the decayed usage of the subtree
// plus running jobs' accrued usage; NormUsage that over the whole tree's;
// EffectvUsage that over the parent's (Fair Tree's U); LevelFS is S/U
// (InfiniteLevelFS without usage). FairShare is the Fair Tree factor of
// users; accounts have none and carry 0 (sshare leaves it blank). The root
// row has NormShares, EffectvUsage and LevelFS 1 (NormUsage 1, or 0 when
// nothing was used).
func FairShare(now time.Time, st State) []api.ShareInfo {
	t := newFairTree(st)
	for _, j := range st.PendingJobs() {
		t.leaf(j.Spec.Account, j.User)
	}
	t.finish(now, st, st.SchedConfig())
	total := t.nodes[0].usage
	out := make([]api.ShareInfo, 0, len(t.nodes))
	var walk func(i int32)
	walk = func(i int32) {
		n := &t.nodes[i]
		row := api.ShareInfo{Account: n.name, Depth: n.depth, RawShares: n.shares, NormShares: n.normShares,
			RawUsage: n.usage, EffectvUsage: n.effUsage, LevelFS: n.levelFS}
		if n.user {
			row.Account, row.User, row.FairShare = t.nodes[n.parent].name, n.name, n.factor
		}
		if i == 0 {
			row.NormShares, row.EffectvUsage, row.LevelFS = 1, 1, 1
		}
		if total > 0 {
			row.NormUsage = n.usage / total
		}
		if math.IsInf(row.LevelFS, 1) {
			row.LevelFS = InfiniteLevelFS
		}
		out = append(out, row)
		kids := slices.Clone(n.children)
		slices.SortFunc(kids, func(a, b int32) int {
			x, y := &t.nodes[a], &t.nodes[b]
			if x.user != y.user {
				if x.user {
					return -1
				}
				return 1
			}
			return cmp.Compare(x.name, y.name)
		})
		for _, c := range kids {
			walk(c)
		}
	}
	walk(0)
	return out
}
