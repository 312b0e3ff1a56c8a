package raftstore

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/scheduler"
)

func (h *harness) acct(op string, req api.AccountingRequest) any {
	h.t.Helper()
	req.Op = op
	return h.do(Command{Type: CmdAccounting, Accounting: &req})
}

// policyHarness has accounts physics (under root) and chem (under
// physics), admin root, users alice (physics, chem) and bob (physics),
// and QoS normal, high (preempts normal) and low.
func policyHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.must(Command{Type: CmdAddAccount, Account: &api.Account{Name: "root"}})
	h.must(Command{Type: CmdAddUser, User: &api.User{Name: "root", Admin: true, Accounts: []string{"root"}, DefaultAccount: "root"}})
	h.must(Command{Type: CmdAccounting, Accounting: &api.AccountingRequest{Op: "add",
		QOS:      []api.QOS{{Name: "normal"}, {Name: "high", Priority: 100, Preempt: []string{"normal"}, PreemptMode: "requeue"}, {Name: "low"}},
		Accounts: []api.Account{{Name: "physics"}, {Name: "chem", Parent: "physics"}},
		Users: []api.User{{Name: "alice", UID: 1000, GID: 1000, Accounts: []string{"physics", "chem"}},
			{Name: "bob", UID: 1001, GID: 1001, Accounts: []string{"physics"}}},
	}})
	return h
}

// errKind checks that res is an error of kind whose text contains want.
func errKind(t *testing.T, res any, kind error, want string) {
	t.Helper()
	err, _ := res.(error)
	if err == nil {
		t.Fatalf("accepted (result %v), want %v containing %q", res, kind, want)
	}
	if !errors.Is(err, kind) || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q (%v), want %v containing %q", err, errors.Unwrap(err), kind, want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q spans lines", err)
	}
}

func TestAccountingSetup(t *testing.T) {
	h := policyHarness(t)
	s := h.s.Snapshot()
	var keys []string
	for _, as := range s.Associations() {
		keys = append(keys, as.Key())
		if as.Shares != 1 {
			t.Errorf("association %s has %d shares", as.Key(), as.Shares)
		}
	}
	want := []string{"chem", "chem/alice", "physics", "physics/alice", "physics/bob", "root", "root/root"}
	if !slices.Equal(keys, want) {
		t.Errorf("associations %v, want %v", keys, want)
	}
	if a := s.User("alice"); a.DefaultAccount != "physics" || a.TokenID != "" || a.UID != 1000 || a.Admin {
		t.Errorf("alice %+v", a)
	}
	if c := s.Account("chem"); c.Parent != "physics" {
		t.Errorf("chem %+v", c)
	}
	if p := s.Account("physics"); p.Parent != "root" {
		t.Errorf("physics %+v", p)
	}
	if q := s.QOS("high"); q == nil || q.PreemptMode != api.PreemptRequeue || q.Priority != 100 {
		t.Errorf("high %+v", q)
	}
}

func TestAccounting(t *testing.T) {
	type check func(t *testing.T, s *Snapshot)
	tests := []struct {
		name    string
		setup   func(h *harness)
		op      string
		req     api.AccountingRequest
		kind    error // nil: success
		want    string
		changed []string
		check   check
	}{
		{name: "add account under an account", op: "add",
			req:     api.AccountingRequest{Accounts: []api.Account{{Name: "bio", Parent: "chem", Description: "biology"}}},
			changed: []string{"account bio"},
			check: func(t *testing.T, s *Snapshot) {
				if a := s.Account("bio"); a == nil || a.Parent != "chem" || s.Association("bio", "") == nil {
					t.Errorf("bio %+v, assoc %v", a, s.Association("bio", ""))
				}
			}},
		{name: "add account and user in it at once", op: "add",
			req: api.AccountingRequest{Accounts: []api.Account{{Name: "bio"}},
				Users: []api.User{{Name: "carol", UID: 1002, GID: 1002, DefaultAccount: "bio"}}},
			changed: []string{"account bio", "assoc bio/carol", "user carol"},
			check: func(t *testing.T, s *Snapshot) {
				if u := s.User("carol"); u == nil || u.DefaultAccount != "bio" || !slices.Equal(u.Accounts, []string{"bio"}) {
					t.Errorf("carol %+v", u)
				}
			}},
		{name: "add existing user to another account keeps her default", op: "add",
			req:     api.AccountingRequest{Users: []api.User{{Name: "bob", Accounts: []string{"chem"}}}},
			changed: []string{"assoc chem/bob", "user bob"},
			check: func(t *testing.T, s *Snapshot) {
				if u := s.User("bob"); u.DefaultAccount != "physics" || !slices.Equal(u.Accounts, []string{"physics", "chem"}) || u.UID != 1001 {
					t.Errorf("bob %+v", u)
				}
			}},
		{name: "association with limits", op: "add",
			req: api.AccountingRequest{Associations: []api.Association{{Account: "physics", User: "bob", Shares: 5,
				DefaultQOS: "high", QOS: []string{"high", "normal"}, MaxJobs: 2, GrpTRES: api.TRES{CPUs: 8}}}},
			changed: []string{"assoc physics/bob"},
			check: func(t *testing.T, s *Snapshot) {
				if as := s.Association("physics", "bob"); as.Shares != 5 || as.DefaultQOS != "high" || as.GrpTRES.CPUs != 8 {
					t.Errorf("assoc %+v", as)
				}
			}},
		{name: "qos preempting one added after it", op: "add",
			req:     api.AccountingRequest{QOS: []api.QOS{{Name: "urgent", Preempt: []string{"scavenger"}, PreemptMode: "CANCEL"}, {Name: "scavenger"}}},
			changed: []string{"qos urgent", "qos scavenger"},
			check: func(t *testing.T, s *Snapshot) {
				if q := s.QOS("urgent"); q.PreemptMode != api.PreemptCancel {
					t.Errorf("preempt mode %q not normalized", q.PreemptMode)
				}
			}},
		{name: "duplicate account", op: "add", req: api.AccountingRequest{Accounts: []api.Account{{Name: "physics"}}},
			kind: ErrConflict, want: "accounts[0].name: account physics already exists"},
		{name: "root account", op: "add", req: api.AccountingRequest{Accounts: []api.Account{{Name: "root"}}},
			kind: ErrConflict, want: "accounts[0].name"},
		{name: "unknown parent", op: "add", req: api.AccountingRequest{Accounts: []api.Account{{Name: "x", Parent: "nope"}}},
			kind: ErrNotFound, want: "accounts[0].parent"},
		{name: "bad account name", op: "add", req: api.AccountingRequest{Accounts: []api.Account{{Name: "a/b"}}},
			kind: ErrInvalidCommand, want: "accounts[0].name"},
		{name: "new user without uid", op: "add", req: api.AccountingRequest{Users: []api.User{{Name: "carol", Accounts: []string{"physics"}}}},
			kind: ErrInvalidCommand, want: "users[0].uid"},
		{name: "new user without gid", op: "add", req: api.AccountingRequest{Users: []api.User{{Name: "carol", UID: 5, Accounts: []string{"physics"}}}},
			kind: ErrInvalidCommand, want: "users[0].gid"},
		{name: "user without account", op: "add", req: api.AccountingRequest{Users: []api.User{{Name: "carol", UID: 5, GID: 5}}},
			kind: ErrInvalidCommand, want: "users[0].accounts"},
		{name: "user in unknown account", op: "add", req: api.AccountingRequest{Users: []api.User{{Name: "carol", UID: 5, GID: 5, Accounts: []string{"nope"}}}},
			kind: ErrNotFound, want: "users[0].accounts"},
		{name: "user with a token", op: "add", req: api.AccountingRequest{Users: []api.User{{Name: "carol", UID: 5, GID: 5, Accounts: []string{"physics"}, TokenID: "t"}}},
			kind: ErrInvalidCommand, want: "users[0].token_id"},
		{name: "association of a user outside the account", op: "add",
			req:  api.AccountingRequest{Associations: []api.Association{{Account: "chem", User: "bob"}}},
			kind: ErrInvalidCommand, want: "associations[0].user: user bob is not in account chem"},
		{name: "association with unknown qos", op: "add",
			req:  api.AccountingRequest{Associations: []api.Association{{Account: "physics", QOS: []string{"gold"}}}},
			kind: ErrNotFound, want: "associations[0].qos"},
		{name: "association default outside its list", op: "add",
			req:  api.AccountingRequest{Associations: []api.Association{{Account: "physics", DefaultQOS: "low", QOS: []string{"high"}}}},
			kind: ErrInvalidCommand, want: "associations[0].default_qos"},
		{name: "negative shares", op: "add",
			req:  api.AccountingRequest{Associations: []api.Association{{Account: "physics", Shares: -1}}},
			kind: ErrInvalidCommand, want: "associations[0].shares"},
		{name: "qos preempting an unknown qos", op: "add", req: api.AccountingRequest{QOS: []api.QOS{{Name: "x", Preempt: []string{"nope"}}}},
			kind: ErrNotFound, want: "qos[0].preempt"},
		{name: "qos preempting itself", op: "add", req: api.AccountingRequest{QOS: []api.QOS{{Name: "x", Preempt: []string{"x"}}}},
			kind: ErrInvalidCommand, want: "qos[0].preempt"},
		{name: "bad preempt mode", op: "add", req: api.AccountingRequest{QOS: []api.QOS{{Name: "x", PreemptMode: "suspend"}}},
			kind: ErrInvalidCommand, want: "qos[0].preempt_mode"},
		{name: "negative qos limit", op: "add", req: api.AccountingRequest{QOS: []api.QOS{{Name: "x", MaxTRESPerUser: api.TRES{CPUs: -1}}}},
			kind: ErrInvalidCommand, want: "qos[0].max_tres_per_user"},
		{name: "empty request", op: "add", kind: ErrInvalidCommand, want: "op:"},
		{name: "unknown op", op: "upsert", req: api.AccountingRequest{QOS: []api.QOS{{Name: "x"}}}, kind: ErrInvalidCommand, want: "op: must be"},

		{name: "modify account parent and description", op: "modify",
			req:     api.AccountingRequest{Accounts: []api.Account{{Name: "chem", Description: "chemistry"}}},
			changed: []string{"account chem"},
			check: func(t *testing.T, s *Snapshot) {
				if a := s.Account("chem"); a.Parent != "root" || a.Description != "chemistry" {
					t.Errorf("chem %+v", a)
				}
			}},
		{name: "account below its own child", op: "modify",
			req:  api.AccountingRequest{Accounts: []api.Account{{Name: "physics", Parent: "chem"}}},
			kind: ErrInvalidCommand, want: "accounts[0].parent: account physics cannot be below itself"},
		{name: "modify unknown account", op: "modify", req: api.AccountingRequest{Accounts: []api.Account{{Name: "nope"}}},
			kind: ErrNotFound, want: "accounts[0].name"},
		{name: "modify user default account and admin", op: "modify",
			req:     api.AccountingRequest{Users: []api.User{{Name: "alice", DefaultAccount: "chem", Admin: true}}},
			changed: []string{"user alice"},
			check: func(t *testing.T, s *Snapshot) {
				if u := s.User("alice"); u.DefaultAccount != "chem" || !u.Admin || len(u.Accounts) != 2 {
					t.Errorf("alice %+v", u)
				}
			}},
		{name: "default account the user is not in", op: "modify",
			req:  api.AccountingRequest{Users: []api.User{{Name: "bob", DefaultAccount: "chem"}}},
			kind: ErrInvalidCommand, want: "users[0].default_account"},
		{name: "demote the last admin", op: "modify", req: api.AccountingRequest{Users: []api.User{{Name: "root"}}},
			kind: ErrConflict, want: "without an administrator"},
		{name: "modify qos", op: "modify", req: api.AccountingRequest{QOS: []api.QOS{{Name: "low", Priority: 5, GraceTimeSec: 30}}},
			changed: []string{"qos low"},
			check: func(t *testing.T, s *Snapshot) {
				if q := s.QOS("low"); q.Priority != 5 || q.GraceTimeSec != 30 {
					t.Errorf("low %+v", q)
				}
			}},
		{name: "modify unknown association", op: "modify", req: api.AccountingRequest{Associations: []api.Association{{Account: "chem", User: "bob"}}},
			kind: ErrNotFound, want: "associations[0]"},

		{name: "delete user association", op: "delete",
			req:     api.AccountingRequest{Associations: []api.Association{{Account: "physics", User: "alice"}}},
			changed: []string{"assoc physics/alice"},
			check: func(t *testing.T, s *Snapshot) {
				if u := s.User("alice"); u.DefaultAccount != "chem" || !slices.Equal(u.Accounts, []string{"chem"}) || s.Association("physics", "alice") != nil {
					t.Errorf("alice %+v", u)
				}
			}},
		{name: "delete account association", op: "delete", req: api.AccountingRequest{Associations: []api.Association{{Account: "chem"}}},
			kind: ErrInvalidCommand, want: "associations[0].user"},
		{name: "delete account with a child", op: "delete", req: api.AccountingRequest{Accounts: []api.Account{{Name: "physics"}}},
			kind: ErrConflict, want: "accounts[0].name: account physics has child account chem"},
		{name: "delete account with users", op: "delete", req: api.AccountingRequest{Accounts: []api.Account{{Name: "chem"}}},
			kind: ErrConflict, want: "account chem has user alice"},
		{name: "delete account with its last user's association first", op: "delete",
			req: api.AccountingRequest{Associations: []api.Association{{Account: "chem", User: "alice"}},
				Accounts: []api.Account{{Name: "chem"}}},
			changed: []string{"assoc chem/alice", "account chem"},
			check: func(t *testing.T, s *Snapshot) {
				if s.Account("chem") != nil || s.Association("chem", "") != nil {
					t.Error("chem left behind")
				}
			}},
		{name: "delete account with jobs", op: "delete",
			setup: func(h *harness) {
				h.must(Command{Type: CmdAccounting, Accounting: &api.AccountingRequest{Op: "add", Accounts: []api.Account{{Name: "bio"}}}})
				h.submit(api.JobSpec{Account: "bio", Hold: true})
			},
			req:  api.AccountingRequest{Accounts: []api.Account{{Name: "bio"}}},
			kind: ErrConflict, want: "account bio has job"},
		{name: "delete root account", op: "delete", req: api.AccountingRequest{Accounts: []api.Account{{Name: "root"}}},
			kind: ErrInvalidCommand, want: "accounts[0].name"},
		{name: "delete user with jobs", op: "delete", setup: func(h *harness) { h.submit(api.JobSpec{Hold: true}) },
			req: api.AccountingRequest{Users: []api.User{{Name: "alice"}}}, kind: ErrConflict, want: "users[0].name: user alice has job"},
		{name: "delete user", op: "delete", req: api.AccountingRequest{Users: []api.User{{Name: "bob"}}},
			changed: []string{"user bob"},
			check: func(t *testing.T, s *Snapshot) {
				if s.User("bob") != nil || s.Association("physics", "bob") != nil {
					t.Error("bob left behind")
				}
			}},
		{name: "delete user root", op: "delete", req: api.AccountingRequest{Users: []api.User{{Name: "root"}}},
			kind: ErrInvalidCommand, want: "users[0].name"},
		{name: "delete qos used by a job", op: "delete", setup: func(h *harness) { h.submit(api.JobSpec{QOS: "low", Hold: true}) },
			req: api.AccountingRequest{QOS: []api.QOS{{Name: "low"}}}, kind: ErrConflict, want: "qos[0].name: qos low is used by job"},
		{name: "delete qos named by an association", op: "delete",
			setup: func(h *harness) {
				h.must(Command{Type: CmdAccounting, Accounting: &api.AccountingRequest{Op: "modify",
					Associations: []api.Association{{Account: "physics", User: "bob", DefaultQOS: "low"}}}})
			},
			req: api.AccountingRequest{QOS: []api.QOS{{Name: "low"}}}, kind: ErrConflict, want: "named by association physics/bob"},
		{name: "delete the default qos", op: "delete", req: api.AccountingRequest{QOS: []api.QOS{{Name: "normal"}}},
			kind: ErrConflict, want: "default qos"},
		{name: "delete a preempted qos", op: "delete",
			setup: func(h *harness) {
				cfg := api.DefaultSchedConfig()
				cfg.DefaultQOS = "low"
				h.must(Command{Type: CmdSetSchedConfig, SchedConfig: &cfg})
			},
			req: api.AccountingRequest{QOS: []api.QOS{{Name: "normal"}}}, kind: ErrConflict, want: "preempt list of qos high"},
		{name: "delete qos", op: "delete", req: api.AccountingRequest{QOS: []api.QOS{{Name: "low"}}}, changed: []string{"qos low"},
			check: func(t *testing.T, s *Snapshot) {
				if s.QOS("low") != nil {
					t.Error("low left behind")
				}
			}},
		{name: "delete unknown qos", op: "delete", req: api.AccountingRequest{QOS: []api.QOS{{Name: "gold"}}}, kind: ErrNotFound, want: "qos[0].name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := policyHarness(t)
			if tc.setup != nil {
				tc.setup(h)
			}
			before := dump(t, h.s)
			// The dry run answers as the command will, and changes nothing.
			req := tc.req
			req.Op = tc.op
			dry := h.s.Snapshot().Check(&Command{Type: CmdAccounting, Accounting: &req})
			res := h.acct(tc.op, tc.req)
			if tc.kind != nil {
				errKind(t, res, tc.kind, tc.want)
				errKind(t, dry, tc.kind, tc.want)
				if after := dump(t, h.s); !bytes.Equal(withoutMeta(before), withoutMeta(after)) {
					t.Errorf("refused request changed the state")
				}
				return
			}
			r, ok := res.(*api.AccountingResult)
			if !ok {
				t.Fatalf("result %v", res)
			}
			if d, ok := dry.(*api.AccountingResult); !ok || !slices.Equal(d.Changed, r.Changed) {
				t.Errorf("dry run %v, command %v", dry, r.Changed)
			}
			if !slices.Equal(r.Changed, tc.changed) {
				t.Errorf("changed %q, want %q", r.Changed, tc.changed)
			}
			if tc.check != nil {
				tc.check(t, h.s.Snapshot())
			}
		})
	}
}

// withoutMeta drops the meta record (the index moves with every command).
func withoutMeta(dump []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(dump, []byte("\n")) {
		if !bytes.Contains(l, []byte(`"k":"meta"`)) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func TestAccountingAllOrNothing(t *testing.T) {
	h := policyHarness(t)
	before := dump(t, h.s)
	// Everything but the last entity is fine.
	res := h.acct("add", api.AccountingRequest{
		QOS:          []api.QOS{{Name: "gold"}},
		Accounts:     []api.Account{{Name: "bio"}},
		Users:        []api.User{{Name: "carol", UID: 7, GID: 7, Accounts: []string{"bio"}}},
		Associations: []api.Association{{Account: "bio", User: "carol", Shares: 3}, {Account: "bio", User: "dave"}},
	})
	errKind(t, res, ErrNotFound, `associations[1].user: no such user "dave"`)
	if !bytes.Equal(withoutMeta(before), withoutMeta(dump(t, h.s))) {
		t.Fatal("a refused request left changes behind")
	}
	s := h.s.Snapshot()
	if s.QOS("gold") != nil || s.Account("bio") != nil || s.User("carol") != nil || s.Association("bio", "carol") != nil {
		t.Fatal("partial change visible")
	}
}

func TestAddUserCreatesAssociations(t *testing.T) {
	h := newHarness(t)
	h.must(Command{Type: CmdAddAccount, Account: &api.Account{Name: "research", Parent: "root"}})
	h.must(Command{Type: CmdAddUser, User: &api.User{Name: "alice", UID: 1000, GID: 1000, DefaultAccount: "research",
		Accounts: []string{"research", "ghost"}, TokenID: "t", TokenHash: "h"}})
	s := h.s.Snapshot()
	if s.Association("research", "") == nil || s.Association("research", "alice") == nil {
		t.Errorf("associations %v", s.Associations())
	}
	if s.Association("ghost", "alice") != nil {
		t.Error("association for an account that does not exist")
	}
	// A re-add (new token) keeps a modified association.
	h.must(Command{Type: CmdAccounting, Accounting: &api.AccountingRequest{Op: "modify",
		Associations: []api.Association{{Account: "research", User: "alice", Shares: 9}}}})
	h.must(Command{Type: CmdAddUser, User: &api.User{Name: "alice", UID: 1000, GID: 1000, DefaultAccount: "research",
		Accounts: []string{"research"}, TokenID: "t2", TokenHash: "h2"}})
	if as := h.s.Snapshot().Association("research", "alice"); as.Shares != 9 {
		t.Errorf("re-add reset the association: %+v", as)
	}
}

func TestSubmitResolvesAccountAndQOS(t *testing.T) {
	h := policyHarness(t)
	h.must(Command{Type: CmdAccounting, Accounting: &api.AccountingRequest{Op: "modify",
		Associations: []api.Association{{Account: "chem", DefaultQOS: "low"}}}})
	tests := []struct {
		name, account, qos string
		wantAcct, wantQOS  string
		modCfg             func(*api.SchedConfig)
	}{
		{name: "user default account, cluster default qos", wantAcct: "physics", wantQOS: "normal"},
		{name: "account's default qos", account: "chem", wantAcct: "chem", wantQOS: "low"},
		{name: "given qos kept", account: "chem", qos: "high", wantAcct: "chem", wantQOS: "high"},
		{name: "missing default qos left empty", wantAcct: "physics", wantQOS: "",
			modCfg: func(c *api.SchedConfig) { c.DefaultQOS = "gold" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.modCfg != nil {
				cfg := api.DefaultSchedConfig()
				tc.modCfg(&cfg)
				h.must(Command{Type: CmdSetSchedConfig, SchedConfig: &cfg})
			}
			id := h.submit(api.JobSpec{Account: tc.account, QOS: tc.qos, Hold: true}).JobID
			if j := h.job(id); j.Spec.Account != tc.wantAcct || j.Spec.QOS != tc.wantQOS {
				t.Errorf("account %q qos %q, want %q %q", j.Spec.Account, j.Spec.QOS, tc.wantAcct, tc.wantQOS)
			}
		})
	}
}

func TestFairShareUsage(t *testing.T) {
	h := policyHarness(t)
	cfg := api.DefaultSchedConfig()
	cfg.DecayHalfLifeSec = 100
	h.must(Command{Type: CmdSetSchedConfig, SchedConfig: &cfg})
	h.must(Command{Type: CmdAccounting, Accounting: &api.AccountingRequest{Op: "modify",
		QOS: []api.QOS{{Name: "low", UsageFactor: 0.5}}}})

	end := func(id uint64, at time.Time, st api.JobState) {
		t.Helper()
		j := h.job(id)
		if res := h.must(Command{Type: CmdJobReport, Report: &api.JobReport{JobID: id, Node: j.Nodes[0], State: st,
			Attempt: j.Restarts, EndUnix: at.Unix()}}); res != true {
			t.Fatalf("report refused")
		}
	}
	usage := func(acct, user string) *api.FairShareUsage {
		for _, u := range h.s.Snapshot().FairShareUsage() {
			if u.Account == acct && u.User == user {
				return u
			}
		}
		return nil
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-6*max(1, want) }

	// 2 CPUs on one node for 100 s: 200 CPU-seconds.
	a := h.run(api.JobSpec{Account: "physics"}, "n1")
	start := h.job(a).StartTime
	end(a, start.Add(100*time.Second), api.JobCompleted)
	u := usage("physics", "alice")
	if u == nil || !near(u.Raw, 200) || !u.UpdatedAt.Equal(start.Add(100*time.Second)) {
		t.Fatalf("after one job: %+v", u)
	}
	// A second job ends one half-life later: the first 200 decays to 100.
	b := h.run(api.JobSpec{Account: "physics"}, "n1")
	startB := h.job(b).StartTime
	endB := start.Add(200 * time.Second)
	end(b, endB, api.JobFailed)
	want := 100 + 2*endB.Sub(startB).Seconds()
	if u = usage("physics", "alice"); !near(u.Raw, want) || !u.UpdatedAt.Equal(endB) {
		t.Fatalf("after two jobs: raw %v at %v, want %v at %v", u.Raw, u.UpdatedAt, want, endB)
	}
	// The QoS usage factor scales, and other associations are separate.
	c := h.run(api.JobSpec{Account: "chem", QOS: "low"}, "n2")
	end(c, h.job(c).StartTime.Add(10*time.Second), api.JobCompleted)
	if u = usage("chem", "alice"); u == nil || !near(u.Raw, 10) {
		t.Fatalf("chem usage %+v, want 10", u)
	}
	// Jobs ended by a node failure are charged too.
	d := h.run(api.JobSpec{Account: "chem"}, "n2")
	h.must(Command{Type: CmdNodesDown, NodeNames: []string{"n2"}, Reason: "gone"})
	if u = usage("chem", "alice"); u.Raw <= 10 {
		t.Errorf("node failure did not charge: %+v (job %v)", u, h.job(d).State)
	}
	// Jobs that never ran charge nothing.
	p := h.submit(api.JobSpec{Account: "physics", Hold: true}).JobID
	before := usage("physics", "alice").Raw
	h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{p}})
	if got := usage("physics", "alice").Raw; got != before {
		t.Errorf("a cancelled pending job charged %v", got-before)
	}
}

func TestPreemption(t *testing.T) {
	tests := []struct {
		name         string
		requeue      bool
		mode         string
		report       api.JobState
		cancelFirst  bool
		wantState    api.JobState
		wantReason   string
		wantRestarts int
	}{
		{name: "requeue mode requeues", requeue: true, mode: api.PreemptRequeue, report: api.JobCancelled,
			wantState: api.JobPending, wantReason: api.ReasonPreempted, wantRestarts: 1},
		{name: "requeue mode, any end state", requeue: true, mode: api.PreemptRequeue, report: api.JobCompleted,
			wantState: api.JobPending, wantReason: api.ReasonPreempted, wantRestarts: 1},
		{name: "cancel mode ends PREEMPTED", requeue: true, mode: api.PreemptCancel, report: api.JobCancelled,
			wantState: api.JobPreempted},
		{name: "requeue mode on a --no-requeue job cancels", requeue: false, mode: api.PreemptRequeue, report: api.JobCancelled,
			wantState: api.JobPreempted},
		{name: "a user's cancel during the grace time wins", requeue: true, mode: api.PreemptRequeue, report: api.JobCancelled,
			cancelFirst: true, wantState: api.JobCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := policyHarness(t)
			id := h.run(api.JobSpec{Account: "physics", Requeue: tc.requeue}, "n1")
			res := h.must(Command{Type: CmdApplyPlan, Plan: &scheduler.Plan{Preemptions: []scheduler.Preemption{
				{JobID: id, Mode: tc.mode, GraceSec: 30, For: 99}}}}).(*PlanResult)
			if !slices.Equal(res.Preempted, []uint64{id}) {
				t.Fatalf("preempted %v", res.Preempted)
			}
			j := h.job(id)
			at := j.PreemptedAt
			if at.UnixNano() != h.now || j.GraceTimeSec != 30 || j.PreemptMode != tc.mode || j.State != api.JobRunning {
				t.Fatalf("preempted job %+v", j)
			}
			// A second preemption of the same job changes nothing.
			res = h.must(Command{Type: CmdApplyPlan, Plan: &scheduler.Plan{Preemptions: []scheduler.Preemption{
				{JobID: id, Mode: api.PreemptCancel, GraceSec: 1}}}}).(*PlanResult)
			if len(res.Preempted) != 0 || !h.job(id).PreemptedAt.Equal(at) || h.job(id).PreemptMode != tc.mode {
				t.Fatalf("preempted twice: %+v", h.job(id))
			}
			if tc.cancelFirst {
				h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{id}})
			}
			h.must(Command{Type: CmdJobReport, Report: &api.JobReport{JobID: id, Node: "n1", State: tc.report, ExitSignal: 15}})
			j = h.job(id)
			if j.State != tc.wantState || j.Restarts != tc.wantRestarts || (tc.wantReason != "" && j.Reason != tc.wantReason) {
				t.Errorf("state %s reason %q restarts %d, want %s %q %d", j.State, j.Reason, j.Restarts, tc.wantState, tc.wantReason, tc.wantRestarts)
			}
			if j.State == api.JobPending && (!j.PreemptedAt.IsZero() || j.GraceTimeSec != 0 || j.PreemptMode != "" || len(j.Nodes) != 0) {
				t.Errorf("requeued job keeps its preemption: %+v", j)
			}
			if h.alloc("n1") != [3]int64{} {
				t.Errorf("n1 still allocated %v", h.alloc("n1"))
			}
			if len(h.s.Snapshot().FairShareUsage()) != 1 {
				t.Errorf("preempted run not charged: %v", h.s.Snapshot().FairShareUsage())
			}
		})
	}
}

func TestPreemptionIgnored(t *testing.T) {
	h := policyHarness(t)
	run := h.run(api.JobSpec{}, "n1")
	pend := h.submit(api.JobSpec{Hold: true}).JobID
	h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{run}})
	res := h.must(Command{Type: CmdApplyPlan, Plan: &scheduler.Plan{Preemptions: []scheduler.Preemption{
		{JobID: pend, Mode: api.PreemptRequeue},
		{JobID: run, Mode: api.PreemptRequeue}, // already being cancelled
		{JobID: 12345, Mode: api.PreemptCancel},
	}}}).(*PlanResult)
	if len(res.Preempted) != 0 {
		t.Errorf("preempted %v", res.Preempted)
	}
	h2 := policyHarness(t)
	id := h2.run(api.JobSpec{}, "n1")
	res = h2.must(Command{Type: CmdApplyPlan, Plan: &scheduler.Plan{Preemptions: []scheduler.Preemption{
		{JobID: id, Mode: api.PreemptOff}, {JobID: id, Mode: ""}}}}).(*PlanResult)
	if len(res.Preempted) != 0 || !h2.job(id).PreemptedAt.IsZero() {
		t.Errorf("mode off preempted: %+v", h2.job(id))
	}
	// A preempted job on a node that fails is handled as any other.
	h2.must(Command{Type: CmdApplyPlan, Plan: &scheduler.Plan{Preemptions: []scheduler.Preemption{{JobID: id, Mode: api.PreemptCancel}}}})
	h2.must(Command{Type: CmdNodesDown, NodeNames: []string{"n1"}, Reason: "gone"})
	if j := h2.job(id); j.State != api.JobNodeFail {
		t.Errorf("preempted job on a failed node: %s", j.State)
	}
}

func TestReservations(t *testing.T) {
	base := time.Unix(1_800_000_000, 0).UTC()
	resv := func(name string, from, to int, nodes ...string) *api.Reservation {
		return &api.Reservation{Name: name, Users: []string{"alice"}, Nodes: nodes,
			Start: base.Add(time.Duration(from) * time.Hour), End: base.Add(time.Duration(to) * time.Hour)}
	}
	tests := []struct {
		name string
		r    *api.Reservation
		kind error
		want string
	}{
		{name: "same node later", r: resv("later", 2, 3, "n1")},
		{name: "other node same time", r: resv("other", 0, 2, "n2")},
		{name: "update itself", r: resv("maint", 0, 4, "n1", "g1")},
		{name: "overlap refused", r: resv("clash", 1, 3, "n2", "n1"), kind: ErrConflict, want: "reservation.nodes: node n1 is reserved by maint"},
		{name: "end before start", r: resv("x", 2, 1, "n1"), kind: ErrInvalidCommand, want: "reservation.end_time"},
		{name: "unknown node", r: resv("x", 5, 6, "n9"), kind: ErrNotFound, want: "reservation.nodes"},
		{name: "no nodes", r: resv("x", 5, 6), kind: ErrInvalidCommand, want: "reservation.nodes: required"},
		{name: "nobody", r: &api.Reservation{Name: "x", Nodes: []string{"n1"}, Start: base.Add(9 * time.Hour), End: base.Add(10 * time.Hour)},
			kind: ErrInvalidCommand, want: "reservation.users"},
		{name: "unknown user", r: &api.Reservation{Name: "x", Users: []string{"zed"}, Nodes: []string{"n1"}, Start: base.Add(9 * time.Hour), End: base.Add(10 * time.Hour)},
			kind: ErrNotFound, want: "reservation.users"},
		{name: "bad name", r: resv("a b", 5, 6, "n1"), kind: ErrInvalidCommand, want: "reservation.name"},
		{name: "no start", r: &api.Reservation{Name: "x", Users: []string{"alice"}, Nodes: []string{"n1"}, End: base},
			kind: ErrInvalidCommand, want: "reservation.start_time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := policyHarness(t)
			h.must(Command{Type: CmdSetReservation, Reservation: resv("maint", 0, 2, "n1")})
			res := h.do(Command{Type: CmdSetReservation, Reservation: tc.r})
			if tc.kind != nil {
				errKind(t, res, tc.kind, tc.want)
				if got := h.s.Snapshot().Reservations(); len(got) != 1 || got[0].End != base.Add(2*time.Hour) {
					t.Errorf("reservations after a refusal: %v", got)
				}
				return
			}
			r, ok := res.(*api.Reservation)
			if !ok || r.Name != tc.r.Name {
				t.Fatalf("result %v", res)
			}
			if got := h.s.Snapshot().Reservation(tc.r.Name); got == nil || !got.End.Equal(tc.r.End) || !slices.IsSorted(got.Nodes) {
				t.Errorf("stored %+v", got)
			}
		})
	}

	h := policyHarness(t)
	h.must(Command{Type: CmdSetReservation, Reservation: resv("maint", 0, 2, "n1")})
	errKind(t, h.do(Command{Type: CmdDeleteReservation, Reservation: &api.Reservation{Name: "nope"}}), ErrNotFound, "reservation.name")
	h.must(Command{Type: CmdDeleteReservation, Reservation: &api.Reservation{Name: "maint"}})
	if len(h.s.Snapshot().Reservations()) != 0 {
		t.Error("reservation not deleted")
	}
	// With it gone, the window is free.
	h.must(Command{Type: CmdSetReservation, Reservation: resv("clash", 1, 3, "n1")})
}

func TestSchedConfig(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*api.SchedConfig)
		want string // "" accepted
	}{
		{name: "defaults", mod: func(*api.SchedConfig) {}},
		{name: "fifo", mod: func(c *api.SchedConfig) { c.Policy = "fifo"; c.Weights.Age = 0 }},
		{name: "bad policy", mod: func(c *api.SchedConfig) { c.Policy = "random" }, want: "config.policy"},
		{name: "negative weight", mod: func(c *api.SchedConfig) { c.Weights.QOS = -1 }, want: "config.weights.qos"},
		{name: "huge weight", mod: func(c *api.SchedConfig) { c.Weights.Age = 1 << 40 }, want: "config.weights.age"},
		{name: "negative half-life", mod: func(c *api.SchedConfig) { c.DecayHalfLifeSec = -1 }, want: "config.decay_half_life_sec"},
		{name: "NaN gpu weight", mod: func(c *api.SchedConfig) { c.GPUWeight = math.NaN() }, want: "config.gpu_weight"},
		{name: "bad default qos", mod: func(c *api.SchedConfig) { c.DefaultQOS = "a/b" }, want: "config.default_qos"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if got := h.s.Snapshot().SchedConfig(); got != api.DefaultSchedConfig() {
				t.Fatalf("unset config %+v", got)
			}
			cfg := api.DefaultSchedConfig()
			cfg.BackfillDepth = 7
			tc.mod(&cfg)
			res := h.do(Command{Type: CmdSetSchedConfig, SchedConfig: &cfg})
			if tc.want != "" {
				errKind(t, res, ErrInvalidCommand, tc.want)
				if h.s.Snapshot().SchedConfig() != api.DefaultSchedConfig() {
					t.Error("refused config stored")
				}
				return
			}
			if res != nil {
				t.Fatalf("result %v", res)
			}
			if got := h.s.Snapshot().SchedConfig(); got != cfg {
				t.Errorf("stored %+v, want %+v", got, cfg)
			}
		})
	}
}

func TestPolicySnapshotRoundTrip(t *testing.T) {
	h := policyHarness(t)
	cfg := api.DefaultSchedConfig()
	cfg.Policy = "priority"
	h.must(Command{Type: CmdSetSchedConfig, SchedConfig: &cfg})
	h.must(Command{Type: CmdSetReservation, Reservation: &api.Reservation{Name: "maint", Accounts: []string{"physics"},
		Nodes: []string{"n1"}, Start: time.Unix(1_800_000_000, 0), End: time.Unix(1_800_003_600, 0), Flags: []string{"maint"}}})
	id := h.run(api.JobSpec{Account: "physics"}, "n1")
	h.must(Command{Type: CmdApplyPlan, Plan: &scheduler.Plan{Preemptions: []scheduler.Preemption{{JobID: id, Mode: api.PreemptCancel, GraceSec: 5}}}})
	h.run(api.JobSpec{Account: "chem"}, "n2")
	h.must(Command{Type: CmdJobReport, Report: &api.JobReport{JobID: id + 1, Node: "n2", State: api.JobCompleted}})

	a := dump(t, h.s)
	for _, kind := range []string{`"k":"qos"`, `"k":"assoc"`, `"k":"fairshare_usage"`, `"k":"reservation"`, `"k":"sched_config"`, `"preempt_mode":"cancel"`} {
		if !bytes.Contains(a, []byte(kind)) {
			t.Errorf("snapshot lacks %s", kind)
		}
	}
	s2 := NewStore()
	if err := s2.Restore(bytes.NewReader(a)); err != nil {
		t.Fatal(err)
	}
	if b := dump(t, s2); !bytes.Equal(a, b) {
		t.Fatalf("round trip differs:\n%s\n---\n%s", a, b)
	}
	snap := s2.Snapshot()
	if snap.SchedConfig().Policy != "priority" || snap.Reservation("maint") == nil || snap.QOS("high") == nil ||
		snap.Association("chem", "alice") == nil || len(snap.FairShareUsage()) != 1 || snap.Job(id).PreemptMode != api.PreemptCancel {
		t.Errorf("restored state incomplete")
	}
	// Both continue identically.
	c := Command{Type: CmdAccounting, Time: t0, Accounting: &api.AccountingRequest{Op: "delete", QOS: []api.QOS{{Name: "low"}}}}
	h.s.ApplyCommand(h.idx+1, &c)
	s2.ApplyCommand(h.idx+1, &c)
	if !bytes.Equal(dump(t, h.s), dump(t, s2)) {
		t.Error("stores diverge after restore")
	}
}

func TestPolicyCommandsThroughLog(t *testing.T) {
	// Commands survive the log encoding (JSON) unchanged.
	cmds := []*Command{
		{Type: CmdAccounting, Accounting: &api.AccountingRequest{Op: "add", QOS: []api.QOS{{Name: "q", Preempt: []string{}, UsageFactor: 0.5}}}},
		{Type: CmdSetReservation, Reservation: &api.Reservation{Name: "r", Users: []string{"alice"}, Nodes: []string{"n1"},
			Start: time.Unix(1, 0).UTC(), End: time.Unix(2, 0).UTC()}},
		{Type: CmdSetSchedConfig, SchedConfig: &api.SchedConfig{Policy: "fifo", GPUWeight: 2.5}},
	}
	for _, c := range cmds {
		data, err := encodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeCommand(data)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := encodeCommand(back)
		if !bytes.Equal(data, again) {
			t.Errorf("command %d changes through the log:\n%s\n%s", c.Type, data, again)
		}
	}
}
