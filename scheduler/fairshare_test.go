package scheduler

import (
	"encoding/json"
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

func TestDecayUsage(t *testing.T) {
	hour := t0.Add(time.Hour)
	tests := []struct {
		name     string
		from, to time.Time
		halfLife int64
		want     float64
	}{
		{"one half-life halves", t0, hour, 3600, 50},
		{"two half-lives quarter", t0, t0.Add(2 * time.Hour), 3600, 25},
		{"half a half-life", t0, t0.Add(30 * time.Minute), 3600, 100 / math.Sqrt2},
		{"zero half-life keeps", t0, hour, 0, 100},
		{"negative half-life keeps", t0, hour, -5, 100},
		{"no time passed keeps", hour, hour, 3600, 100},
		{"to before from keeps", hour, t0, 3600, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := DecayUsage(100, tc.from, tc.to, tc.halfLife); !approx(got, tc.want) {
				t.Errorf("DecayUsage = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestJobUsage(t *testing.T) {
	cfg := api.DefaultSchedConfig() // GPUWeight 10
	started := func(j *api.Job) { j.State, j.StartTime = api.JobRunning, t0 }
	alloc := func(cpus, gpus int, nodes ...string) func(*api.Job) {
		return func(j *api.Job) { j.AllocCPUs, j.AllocGPUs, j.Nodes = cpus, gpus, nodes }
	}
	end := t0.Add(100 * time.Second)
	tests := []struct {
		name string
		job  *api.Job
		end  time.Time
		qos  *api.QOS
		want float64
	}{
		{"not started", pend(1, "p"), end, nil, 0},
		{"end before start", with(pend(1, "p"), started, alloc(2, 0, "n1")), t0.Add(-time.Second), nil, 0},
		{"cpus times nodes times seconds", with(pend(1, "p"), started, alloc(2, 0, "n1", "n2", "n3")), end, nil, 600},
		{"gpus weighted", with(pend(1, "p"), started, alloc(4, 2, "n1", "n2")), end, nil, (4 + 2*10) * 2 * 100},
		{"usage factor scales", with(pend(1, "p"), started, alloc(4, 2, "n1", "n2")), end,
			&api.QOS{Name: "half", UsageFactor: 0.5}, 2400},
		{"usage factor 0 counts as 1", with(pend(1, "p"), started, alloc(4, 2, "n1", "n2")), end,
			&api.QOS{Name: "zero"}, 4800},
		{"request when no allocation recorded", with(pend(1, "p"), started, cpus(3), gpus(1)), end, nil, (3 + 10) * 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := JobUsage(tc.job, tc.end, cfg, tc.qos); !approx(got, tc.want) {
				t.Errorf("JobUsage = %v, want %v", got, tc.want)
			}
		})
	}
}

// fsNow is when the fair-share tests compute; usage is recorded then, so
// it is not decayed unless a row says so.
var fsNow = t0.Add(24 * time.Hour)

func fsAccount(name, parent string) *api.Account { return &api.Account{Name: name, Parent: parent} }

func fsAssoc(account, user string, shares int) *api.Association {
	return &api.Association{Account: account, User: user, Shares: shares}
}

func fsUsed(account, user string, raw float64) *api.FairShareUsage {
	return &api.FairShareUsage{Account: account, User: user, Raw: raw, UpdatedAt: fsNow}
}

// jobOf is a pending 1-CPU job of user in account.
func fsJob(id uint64, account, user string) *api.Job {
	return with(pend(id, "p"), func(j *api.Job) { j.User, j.Spec.Account = user, account })
}

func TestFairTree(t *testing.T) {
	ab := []*api.Account{fsAccount("A", ""), fsAccount("B", "root")}
	users := func(us ...string) []*api.Association {
		var out []*api.Association
		for _, u := range us {
			out = append(out, fsAssoc(u[:1], u, 1))
		}
		return out
	}
	tests := []struct {
		name     string
		accounts []*api.Account
		assocs   []*api.Association
		usage    []*api.FairShareUsage
		jobs     []*api.Job
		cfg      *api.SchedConfig
		want     map[string]float64 // "account/user" -> factor, every user
	}{
		{
			name:     "no usage: everyone 1",
			accounts: ab,
			assocs:   users("Aa1", "Aa2", "Bb1"),
			want:     map[string]float64{"A/Aa1": 1, "A/Aa2": 1, "B/Bb1": 1},
		},
		{
			// A: S .5 U .2 -> 2.5; B: S .5 U .8 -> .625. b1 and b2 tie.
			name:     "users of the over-used account rank below",
			accounts: ab,
			assocs:   users("Aa1", "Aa2", "Bb1", "Bb2"),
			usage:    []*api.FairShareUsage{fsUsed("A", "Aa1", 10), fsUsed("B", "Bb1", 20), fsUsed("B", "Bb2", 20)},
			want:     map[string]float64{"A/Aa2": 1, "A/Aa1": 0.75, "B/Bb1": 0.5, "B/Bb2": 0.5},
		},
		{
			// Aa1 used three times what Bb1 did, but A as a whole is
			// under-served, so Aa1 still ranks above both B users.
			name:     "heavy user of an under-used account outranks an over-used account",
			accounts: ab,
			assocs:   users("Aa1", "Aa2", "Bb1", "Bb2"),
			usage:    []*api.FairShareUsage{fsUsed("A", "Aa1", 30), fsUsed("B", "Bb1", 10), fsUsed("B", "Bb2", 90)},
			want:     map[string]float64{"A/Aa2": 1, "A/Aa1": 0.75, "B/Bb1": 0.5, "B/Bb2": 0.25},
		},
		{
			name:     "users with shares 2:1 and usage 2:1 tie",
			accounts: ab,
			assocs:   []*api.Association{fsAssoc("A", "Au1", 2), fsAssoc("A", "Au2", 1), fsAssoc("B", "Bb1", 1)},
			usage:    []*api.FairShareUsage{fsUsed("A", "Au1", 200), fsUsed("A", "Au2", 100)},
			want:     map[string]float64{"B/Bb1": 1, "A/Au1": 2.0 / 3, "A/Au2": 2.0 / 3},
		},
		{
			// A: S .5 U 2/3 and B: S .25 U 1/3 both give .75.
			name:     "accounts with shares 2:1 and usage 2:1 tie",
			accounts: append(slices.Clone(ab), fsAccount("C", "")),
			assocs:   append(users("Aa1", "Bb1", "Cc1"), fsAssoc("A", "", 2)),
			usage:    []*api.FairShareUsage{fsUsed("A", "Aa1", 200), fsUsed("B", "Bb1", 100)},
			want:     map[string]float64{"C/Cc1": 1, "A/Aa1": 2.0 / 3, "B/Bb1": 2.0 / 3},
		},
		{
			// A and B tie at the root, so their users are ranked together:
			// Aa1 (5), Bb1 = Bb2 (1), Aa2 (.56), not A's users first.
			name:     "tied accounts merge their children",
			accounts: ab,
			assocs:   users("Aa1", "Aa2", "Bb1", "Bb2"),
			usage: []*api.FairShareUsage{fsUsed("A", "Aa1", 10), fsUsed("A", "Aa2", 90),
				fsUsed("B", "Bb1", 50), fsUsed("B", "Bb2", 50)},
			want: map[string]float64{"A/Aa1": 1, "B/Bb1": 0.75, "B/Bb2": 0.75, "A/Aa2": 0.25},
		},
		{
			// r1 and A both have Level FS 1; A's best user shares r1's rank.
			name:     "user tied with a sibling account shares its best user's rank",
			accounts: []*api.Account{fsAccount("A", "")},
			assocs:   []*api.Association{fsAssoc("root", "r1", 1), fsAssoc("A", "Aa1", 1), fsAssoc("A", "Aa2", 1)},
			usage:    []*api.FairShareUsage{fsUsed("root", "r1", 100), fsUsed("A", "Aa1", 100)},
			want:     map[string]float64{"root/r1": 1, "A/Aa2": 1, "A/Aa1": 1.0 / 3},
		},
		{
			// dave: known account, no association; erin: unknown account;
			// frank: no account. The last two hang under root.
			name:     "users without association",
			accounts: []*api.Account{fsAccount("A", "")},
			assocs:   []*api.Association{fsAssoc("A", "Aa1", 1)},
			usage:    []*api.FairShareUsage{fsUsed("A", "Aa1", 100)},
			jobs:     []*api.Job{fsJob(1, "A", "dave"), fsJob(2, "ghost", "erin"), fsJob(3, "", "frank")},
			want:     map[string]float64{"root/erin": 1, "root/frank": 1, "A/dave": 0.5, "A/Aa1": 0.25},
		},
		{
			name:     "running jobs' accrued usage counts",
			accounts: ab,
			assocs:   users("Aa1", "Bb1"),
			jobs: []*api.Job{with(fsJob(1, "A", "Aa1"), func(j *api.Job) {
				j.State, j.StartTime, j.AllocCPUs, j.Nodes = api.JobRunning, fsNow.Add(-time.Hour), 2, []string{"n1"}
			})},
			want: map[string]float64{"B/Bb1": 1, "A/Aa1": 0.5},
		},
		{
			// 400 two half-lives ago is 100 now, less than Bb1's 150.
			name:     "stored usage decays to now",
			accounts: ab,
			assocs:   users("Aa1", "Bb1"),
			usage: []*api.FairShareUsage{{Account: "A", User: "Aa1", Raw: 400, UpdatedAt: fsNow.Add(-2 * time.Hour)},
				fsUsed("B", "Bb1", 150)},
			cfg:  &api.SchedConfig{DecayHalfLifeSec: 3600},
			want: map[string]float64{"A/Aa1": 1, "B/Bb1": 0.5},
		},
		{
			name:     "usage of a user without a leaf charges the account",
			accounts: ab,
			assocs:   users("Aa1", "Bb1"),
			usage:    []*api.FairShareUsage{fsUsed("A", "Aa1", 10), fsUsed("B", "zed", 50)},
			want:     map[string]float64{"A/Aa1": 1, "B/Bb1": 0.5},
		},
		{
			// X and Y name each other; Y is cut loose under root.
			name:     "account cycle terminates",
			accounts: []*api.Account{fsAccount("X", "Y"), fsAccount("Y", "X")},
			assocs:   []*api.Association{fsAssoc("X", "x1", 1), fsAssoc("Y", "y1", 1)},
			usage:    []*api.FairShareUsage{fsUsed("X", "x1", 10)},
			want:     map[string]float64{"Y/y1": 1, "X/x1": 0.5},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := &memState{accounts: tc.accounts, assocs: tc.assocs, usage: tc.usage, jobs: tc.jobs, cfg: tc.cfg}
			got := map[string]float64{}
			for _, r := range FairShare(fsNow, st) {
				if r.User != "" {
					got[r.Account+"/"+r.User] = r.FairShare
				}
			}
			if !maps.EqualFunc(got, tc.want, approx) {
				t.Errorf("factors = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFairShareRows(t *testing.T) {
	st := &memState{
		accounts: []*api.Account{fsAccount("science", ""), fsAccount("chem", "science"), fsAccount("bio", "root")},
		assocs: []*api.Association{
			fsAssoc("science", "", 3), fsAssoc("chem", "", 0), fsAssoc("bio", "", 1),
			fsAssoc("science", "sam", 1), fsAssoc("chem", "cody", 1), fsAssoc("chem", "cat", 1), fsAssoc("bio", "bob", 1),
		},
		usage: []*api.FairShareUsage{fsUsed("science", "sam", 100), fsUsed("chem", "cat", 100), fsUsed("bio", "bob", 200)},
	}
	// science (1.5) before bio (.5); in science sam and chem tie at 1, so
	// chem's best user cody shares sam's rank 4; cat gets 2, bob 1.
	want := []api.ShareInfo{
		{Account: "root", Depth: 0, RawShares: 1, NormShares: 1, RawUsage: 400, NormUsage: 1, EffectvUsage: 1, LevelFS: 1},
		{Account: "bio", Depth: 1, RawShares: 1, NormShares: 0.25, RawUsage: 200, NormUsage: 0.5, EffectvUsage: 0.5, LevelFS: 0.5},
		{Account: "bio", User: "bob", Depth: 2, RawShares: 1, NormShares: 1, RawUsage: 200, NormUsage: 0.5, EffectvUsage: 1,
			LevelFS: 1, FairShare: 0.25},
		{Account: "science", Depth: 1, RawShares: 3, NormShares: 0.75, RawUsage: 200, NormUsage: 0.5, EffectvUsage: 0.5,
			LevelFS: 1.5},
		{Account: "science", User: "sam", Depth: 2, RawShares: 1, NormShares: 0.5, RawUsage: 100, NormUsage: 0.25,
			EffectvUsage: 0.5, LevelFS: 1, FairShare: 1},
		{Account: "chem", Depth: 2, RawShares: 1, NormShares: 0.5, RawUsage: 100, NormUsage: 0.25, EffectvUsage: 0.5, LevelFS: 1},
		{Account: "chem", User: "cat", Depth: 3, RawShares: 1, NormShares: 0.5, RawUsage: 100, NormUsage: 0.25, EffectvUsage: 1,
			LevelFS: 0.5, FairShare: 0.5},
		{Account: "chem", User: "cody", Depth: 3, RawShares: 1, NormShares: 0.5, LevelFS: InfiniteLevelFS, FairShare: 1},
	}
	got := FairShare(fsNow, st)
	if !slices.EqualFunc(got, want, shareNear) {
		t.Errorf("rows:\n got %+v\nwant %+v", got, want)
	}
	if _, err := json.Marshal(got); err != nil {
		t.Errorf("rows do not marshal: %v", err)
	}
}

func TestFairShareEmpty(t *testing.T) {
	want := []api.ShareInfo{{Account: "root", RawShares: 1, NormShares: 1, EffectvUsage: 1, LevelFS: 1}}
	if got := FairShare(fsNow, &memState{}); !slices.Equal(got, want) {
		t.Errorf("rows = %+v, want %+v", got, want)
	}
}

func approx(a, b float64) bool { return a == b || math.Abs(a-b) <= 1e-9*max(1, math.Abs(b)) }

func shareNear(a, b api.ShareInfo) bool {
	return a.Account == b.Account && a.User == b.User && a.Depth == b.Depth && a.RawShares == b.RawShares &&
		approx(a.NormShares, b.NormShares) && approx(a.RawUsage, b.RawUsage) && approx(a.NormUsage, b.NormUsage) &&
		approx(a.EffectvUsage, b.EffectvUsage) && approx(a.LevelFS, b.LevelFS) && approx(a.FairShare, b.FairShare)
}
