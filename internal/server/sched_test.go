package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/raftstore"
	"github.com/stockade-hpc/stockade/scheduler"
)

func TestSchedulingPolicyRoutes(t *testing.T) {
	c := bootstrapWith(t, func(o *Options) {
		o.Config.Scheduler.Policy = "priority"
		o.Config.QOS = []api.QOS{{Name: "site", Priority: 50}}
	})
	admin := c.client(c.admin)
	alice := c.addUser("alice", 1501)
	ac := c.client(alice)
	ctx := context.Background()
	accounting := func(cl *api.Client) *api.AccountingResponse {
		t.Helper()
		r, err := cl.Accounting(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// The leader applies the configured policy and the default QoS.
	waitFor(t, 20*time.Second, "the configured policy", func() bool {
		cfg, err := ac.SchedConfig(ctx)
		r := accounting(ac)
		has := func(n string) bool { return slices.ContainsFunc(r.QOS, func(q api.QOS) bool { return q.Name == n }) }
		return err == nil && cfg.Policy == "priority" && has("normal") && has("site")
	})

	t.Run("authorization", func(t *testing.T) {
		tests := []struct {
			method, path, token string
			body                string
			status              int
		}{
			{"GET", "/v1/accounting", alice, "", 200},
			{"GET", "/v1/accounting", "", "", 401},
			{"POST", "/v1/accounting", alice, `{"op":"add","qos":[{"name":"x"}]}`, 403},
			{"GET", "/v1/priorities", alice, "", 200},
			{"GET", "/v1/shares", alice, "", 200},
			{"GET", "/v1/schedconfig", alice, "", 200},
			{"GET", "/v1/reservations", alice, "", 200},
			{"POST", "/v1/reservations", alice, `{"op":"delete","reservation":{"name":"x"}}`, 403},
			{"GET", "/v1/priorities", "", "", 401},
		}
		for _, tc := range tests {
			t.Run(tc.method+" "+tc.path+" "+fmt.Sprint(tc.status), func(t *testing.T) {
				code, msg := raw(t, ac, tc.method, tc.path, tc.token, []byte(tc.body))
				if code != tc.status {
					t.Errorf("%d %s, want %d", code, msg, tc.status)
				}
			})
		}
	})

	t.Run("accounting", func(t *testing.T) {
		r := accounting(ac)
		body, _ := json.Marshal(r)
		if strings.Contains(string(body), "token") || strings.Contains(string(body), "argon2") {
			t.Errorf("accounting answer carries tokens: %s", body)
		}
		var keys []string
		for _, as := range r.Associations {
			keys = append(keys, as.Key())
		}
		for _, k := range []string{"root", "root/root", "research", "research/alice"} {
			if !slices.Contains(keys, k) {
				t.Errorf("association %s missing from %v", k, keys)
			}
		}
		res, err := admin.ChangeAccounting(ctx, api.AccountingRequest{Op: "ADD",
			QOS:      []api.QOS{{Name: "tiny", MaxSubmitJobsPerUser: 1}, {Name: "high", Priority: 100}},
			Accounts: []api.Account{{Name: "physics", Parent: "research"}},
			Users:    []api.User{{Name: "bob", UID: 1502, GID: 1502, Accounts: []string{"physics"}}}})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"qos tiny", "qos high", "account physics", "assoc physics/bob", "user bob"}; !slices.Equal(res.Changed, want) {
			t.Errorf("changed %v, want %v", res.Changed, want)
		}
		// bob exists without a token: he cannot log in until user add.
		if u := accounting(admin).Users; !slices.ContainsFunc(u, func(u api.User) bool { return u.Name == "bob" && u.UID == 1502 }) {
			t.Errorf("users %+v", u)
		}
		// user add issues bob's token, keeping what sacctmgr gave him.
		var ua api.UserAddResponse
		if err := admin.Do(ctx, "POST", "/v1/users", api.UserAddRequest{Name: "bob"}, &ua); err != nil {
			t.Fatal(err)
		}
		if ua.User.UID != 1502 || ua.User.DefaultAccount != "physics" || !slices.Equal(ua.User.Accounts, []string{"physics"}) {
			t.Errorf("bob after user add: %+v", ua.User)
		}
		if _, err := c.client(ua.Token).SchedConfig(ctx); err != nil {
			t.Errorf("bob's new token: %v", err)
		}
		if err := admin.Do(ctx, "POST", "/v1/users", api.UserAddRequest{Name: "bob"}, &ua); status(err) != 409 {
			t.Errorf("second user add of bob: %v", err)
		}
		tests := []struct {
			name   string
			body   string
			status int
			want   string
		}{
			{"all or nothing", `{"op":"add","accounts":[{"name":"chem"}],"users":[{"name":"carol","uid":9,"gid":9,"accounts":["nope"]}]}`,
				404, `users[0].accounts: no such account "nope"`},
			{"delete an account with users", `{"op":"delete","accounts":[{"name":"physics"}]}`, 409, "accounts[0].name: account physics has user bob"},
			{"delete the default qos", `{"op":"delete","qos":[{"name":"normal"}]}`, 409, "qos[0].name: qos normal is the cluster's default qos"},
			{"modify a configured qos", `{"op":"modify","qos":[{"name":"site","priority":1}]}`, 409, "qos[0].name: qos site is defined in the cluster configuration file"},
			{"new user unknown to the system", `{"op":"add","users":[{"name":"nosuchuser9","accounts":["physics"]}]}`, 400, "users[0].uid"},
			{"bad op", `{"op":"upsert","qos":[{"name":"x"}]}`, 400, "op: must be add, modify or delete"},
			{"unknown field", `{"op":"add","qos":[{"name":"x","colour":1}]}`, 400, `unknown field "colour"`},
			{"bad preempt mode", `{"op":"add","qos":[{"name":"x","preempt_mode":"suspend"}]}`, 400, "qos[0].preempt_mode"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				before := accounting(admin)
				code, msg := raw(t, admin, "POST", "/v1/accounting", c.admin, []byte(tc.body))
				if code != tc.status || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
					t.Errorf("%d %q, want %d containing %q", code, msg, tc.status, tc.want)
				}
				after := accounting(admin)
				if len(after.Accounts) != len(before.Accounts) || len(after.Users) != len(before.Users) ||
					len(after.QOS) != len(before.QOS) || len(after.Associations) != len(before.Associations) {
					t.Errorf("a refused request changed the accounting tables")
				}
			})
		}
	})

	t.Run("submit resolves account and qos", func(t *testing.T) {
		held := spec("q")
		held.Hold = true
		id := submit(t, ac, held).JobID
		if j := jobs(t, ac, fmt.Sprintf("?id=%d", id))[0]; j.Spec.Account != "research" || j.Spec.QOS != "normal" {
			t.Errorf("account %q qos %q, want research normal", j.Spec.Account, j.Spec.QOS)
		}
		if _, err := admin.ChangeAccounting(ctx, api.AccountingRequest{Op: "modify",
			Associations: []api.Association{{Account: "research", User: "alice", Shares: 1, DefaultQOS: "high"}}}); err != nil {
			t.Fatal(err)
		}
		id = submit(t, ac, held).JobID
		if j := jobs(t, ac, fmt.Sprintf("?id=%d", id))[0]; j.Spec.QOS != "high" {
			t.Errorf("qos %q, want the association's default high", j.Spec.QOS)
		}
		tiny := held
		tiny.QOS = "tiny"
		submit(t, ac, tiny)
		tests := []struct {
			name   string
			mod    func(*api.JobSpec)
			status int
			want   string
		}{
			{"unknown qos", func(s *api.JobSpec) { s.QOS = "gold" }, 400, `job.qos: no such QOS "gold"`},
			{"qos submit limit", func(s *api.JobSpec) { s.QOS = "tiny" }, 400, "MaxSubmitJobsPerUser"},
			{"unknown reservation", func(s *api.JobSpec) { s.Reservation = "nope" }, 400, "reservation"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				sp := held
				tc.mod(&sp)
				body, _ := json.Marshal(api.SubmitRequest{Spec: sp})
				code, msg := raw(t, ac, "POST", "/v1/jobs", alice, body)
				if code != tc.status || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
					t.Errorf("%d %q, want %d containing %q", code, msg, tc.status, tc.want)
				}
			})
		}
	})

	t.Run("priorities and shares", func(t *testing.T) {
		bobJob := spec("bobs")
		bobJob.Hold = true
		if _, err := admin.ChangeAccounting(ctx, api.AccountingRequest{Op: "add",
			Users: []api.User{{Name: "root", Accounts: []string{"research"}}}}); err != nil {
			t.Fatal(err)
		}
		bobJob.Account = "research"
		submit(t, admin, bobJob)
		mine, err := ac.Priorities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all, err := admin.Priorities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(mine.Jobs) == 0 || len(all.Jobs) <= len(mine.Jobs) || mine.Weights != api.DefaultSchedConfig().Weights {
			t.Errorf("alice sees %d, admin %d; weights %+v", len(mine.Jobs), len(all.Jobs), mine.Weights)
		}
		for _, j := range mine.Jobs {
			if j.User != "alice" {
				t.Errorf("alice sees %s's job %d", j.User, j.JobID)
			}
		}
		if !slices.IsSortedFunc(all.Jobs, func(a, b api.PriorityFactors) int { return int(a.JobID) - int(b.JobID) }) {
			t.Error("priorities not in job order")
		}
		sh, err := ac.Shares(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sh.Shares {
			if s.User != "" && s.User != "alice" {
				t.Errorf("alice sees %s's share row", s.User)
			}
		}
	})

	t.Run("reservations", func(t *testing.T) {
		start := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
		resv := func(name string, nodes ...string) api.Reservation {
			return api.Reservation{Name: name, Users: []string{"alice"}, Nodes: nodes, Start: start, End: start.Add(time.Hour)}
		}
		r, err := admin.ChangeReservation(ctx, api.ReservationRequest{Op: "create", Reservation: resv("maint", "node[1-2]")})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(r.Nodes, []string{"node1", "node2"}) || !r.Start.Equal(start) {
			t.Errorf("created %+v", r)
		}
		tests := []struct {
			name   string
			req    api.ReservationRequest
			status int
			want   string
		}{
			{"duplicate", api.ReservationRequest{Op: "create", Reservation: resv("maint", "node1")}, 409, "reservation.name"},
			{"overlap", api.ReservationRequest{Op: "create", Reservation: resv("other", "node2")}, 409, "reservation.nodes: node node2 is reserved by maint"},
			{"no end", api.ReservationRequest{Op: "create", Reservation: api.Reservation{Name: "x", Users: []string{"alice"}, Nodes: []string{"node1"}}},
				400, "reservation.end_time"},
			{"unknown node", api.ReservationRequest{Op: "create", Reservation: resv("x", "node9")}, 404, "reservation.nodes"},
			{"nodes and count", api.ReservationRequest{Op: "create", Reservation: resv("x", "node1"), NodeCount: 1}, 400, "node_count"},
			{"bad op", api.ReservationRequest{Op: "extend", Reservation: resv("maint")}, 400, "op:"},
			{"update unknown", api.ReservationRequest{Op: "update", Reservation: resv("nope")}, 404, "reservation.name"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				body, _ := json.Marshal(tc.req)
				code, msg := raw(t, admin, "POST", "/v1/reservations", c.admin, body)
				if code != tc.status || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
					t.Errorf("%d %q, want %d containing %q", code, msg, tc.status, tc.want)
				}
			})
		}
		// An update changes only what it gives.
		r, err = admin.ChangeReservation(ctx, api.ReservationRequest{Op: "update",
			Reservation: api.Reservation{Name: "maint", End: start.Add(2 * time.Hour)}})
		if err != nil || !r.End.Equal(start.Add(2*time.Hour)) || len(r.Nodes) != 2 || !slices.Equal(r.Users, []string{"alice"}) {
			t.Fatalf("update: %+v %v", r, err)
		}
		list, err := ac.Reservations(ctx)
		if err != nil || len(list.Reservations) != 1 {
			t.Fatalf("list %+v %v", list, err)
		}
		if _, err := admin.ChangeReservation(ctx, api.ReservationRequest{Op: "delete", Reservation: api.Reservation{Name: "maint"}}); err != nil {
			t.Fatal(err)
		}
		if list, _ := ac.Reservations(ctx); len(list.Reservations) != 0 {
			t.Errorf("after delete: %+v", list)
		}
	})

	t.Run("squeue --start", func(t *testing.T) {
		if got := jobs(t, ac, "?start=true&stale=true"); len(got) == 0 {
			t.Error("no jobs")
		}
		if code, msg := raw(t, ac, "GET", "/v1/jobs?start=maybe", alice, nil); code != 400 || !strings.Contains(msg, "start") {
			t.Errorf("bad start: %d %s", code, msg)
		}
	})
}

// policyStore is a state with partition batch (n1-n3, default), n1 busy,
// n2 idle, n3 drained, user alice and a reservation of n2 in the first
// hour after base.
func policyStore(t *testing.T, base time.Time) *raftstore.Store {
	st := raftstore.NewStore()
	apply := func(cmd *raftstore.Command) any {
		t.Helper()
		cmd.Time = base.UnixNano()
		res := st.ApplyCommand(st.Index()+1, cmd)
		if err, ok := res.(error); ok {
			t.Fatalf("command %d: %v", cmd.Type, err)
		}
		return res
	}
	apply(&raftstore.Command{Type: raftstore.CmdSetPartitions,
		Partitions:      []api.Partition{{Name: "batch", Nodes: []string{"n1", "n2", "n3", "n4"}, Default: true, Up: true}},
		ConfiguredNodes: []api.Node{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}, {Name: "n4"}}})
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		apply(&raftstore.Command{Type: raftstore.CmdRegisterNode, Register: &api.AgentRegisterRequest{Name: n, CPUs: 8, MemoryMB: 8000}})
	}
	apply(&raftstore.Command{Type: raftstore.CmdUpdateNodes, NodeNames: []string{"n3"}, NodeState: "drain", Reason: "broken"})
	apply(&raftstore.Command{Type: raftstore.CmdAddAccount, Account: &api.Account{Name: "research", Parent: "root"}})
	apply(&raftstore.Command{Type: raftstore.CmdAddUser, User: &api.User{Name: "alice", UID: 1000, GID: 1000,
		Accounts: []string{"research"}, DefaultAccount: "research"}})
	id := apply(&raftstore.Command{Type: raftstore.CmdSubmitJob, Submit: &raftstore.SubmitJob{Spec: api.JobSpec{}, User: "alice"}}).(*raftstore.SubmitResult).JobID
	apply(&raftstore.Command{Type: raftstore.CmdApplyPlan, Plan: &scheduler.Plan{Placements: []scheduler.Placement{{JobID: id, Nodes: []string{"n1"}, CPUs: 4}}}})
	apply(&raftstore.Command{Type: raftstore.CmdSetReservation, Reservation: &api.Reservation{Name: "early", Users: []string{"alice"},
		Nodes: []string{"n2"}, Start: base, End: base.Add(time.Hour)}})
	return st
}

func TestReservationCommand(t *testing.T) {
	base := time.Unix(1_800_000_000, 0).UTC()
	window := func(name string, from, to time.Duration) api.Reservation {
		return api.Reservation{Name: name, Users: []string{"alice"}, Start: base.Add(from), End: base.Add(to)}
	}
	flagged := func(r api.Reservation, flags ...string) api.Reservation { r.Flags = flags; return r }
	nodes := func(r api.Reservation, names ...string) api.Reservation { r.Nodes = names; return r }
	tests := []struct {
		name      string
		req       api.ReservationRequest
		wantNodes []string
		wantFlags []string
		status    int
		want      string
	}{
		{name: "idlest usable free node first", req: api.ReservationRequest{Op: "create", Reservation: window("a", 0, time.Hour), NodeCount: 1},
			wantNodes: []string{"n4"}},
		{name: "a node running a job past the start is not picked", req: api.ReservationRequest{Op: "create", Reservation: window("a", 0, time.Hour), NodeCount: 2},
			status: 409, want: "node_count: only 1 usable nodes of partition batch are free of other reservations and running jobs"},
		{name: "IGNORE_JOBS picks busy nodes after idle ones", req: api.ReservationRequest{Op: "create", Reservation: flagged(window("a", 0, time.Hour), "ignore_jobs"), NodeCount: 2},
			wantNodes: []string{"n1", "n4"}, wantFlags: []string{"IGNORE_JOBS"}},
		{name: "requested nodes are busy", req: api.ReservationRequest{Op: "create", Reservation: nodes(window("a", 0, time.Hour), "n1", "n4")},
			status: 409, want: "reservation.nodes: Requested nodes are busy: job 1 runs on n1"},
		{name: "MAINT alone does not ignore jobs", req: api.ReservationRequest{Op: "create", Reservation: flagged(nodes(window("a", 0, time.Hour), "n1"), "MAINT")},
			status: 409, want: "Requested nodes are busy"},
		{name: "MAINT,IGNORE_JOBS takes busy nodes", req: api.ReservationRequest{Op: "create",
			Reservation: flagged(nodes(window("a", 0, time.Hour), "n1", "n4"), "maint", "Ignore_Jobs", "MAINT")},
			wantNodes: []string{"n1", "n4"}, wantFlags: []string{"MAINT", "IGNORE_JOBS"}},
		{name: "an update that adds a busy node", req: api.ReservationRequest{Op: "update", Reservation: nodes(window("early", 0, time.Hour), "n1", "n2")},
			status: 409, want: "Requested nodes are busy"},
		{name: "an update that keeps its nodes", req: api.ReservationRequest{Op: "update", Reservation: window("early", 0, 2*time.Hour)},
			wantNodes: []string{"n2"}},
		{name: "unknown flag", req: api.ReservationRequest{Op: "create", Reservation: flagged(nodes(window("a", 0, time.Hour), "n4"), "MAINT", "FLEX")},
			status: 400, want: `reservation.flags: unsupported flag "FLEX"`},
		{name: "reserved node free later", req: api.ReservationRequest{Op: "create", Reservation: window("a", 2*time.Hour, 3*time.Hour), NodeCount: 2},
			wantNodes: []string{"n2", "n4"}},
		{name: "not enough nodes", req: api.ReservationRequest{Op: "create", Reservation: window("a", 0, time.Hour), NodeCount: 3},
			status: 409, want: "node_count: only 1 usable nodes of partition batch"},
		{name: "update re-picks without clashing with itself", req: api.ReservationRequest{Op: "update", Reservation: window("early", 0, time.Hour), NodeCount: 2},
			wantNodes: []string{"n2", "n4"}},
		{name: "start defaults to now", req: api.ReservationRequest{Op: "create", Reservation: api.Reservation{Name: "now", Users: []string{"alice"},
			Nodes: []string{"n4"}, End: base.Add(time.Hour)}}, wantNodes: []string{"n4"}},
		{name: "unknown partition", req: api.ReservationRequest{Op: "create", Reservation: api.Reservation{Name: "p", Users: []string{"alice"},
			Partition: "gpu", Start: base, End: base.Add(time.Hour)}, NodeCount: 1}, status: 404, want: "reservation.partition"},
		{name: "negative count", req: api.ReservationRequest{Op: "create", Reservation: window("a", 0, time.Hour), NodeCount: -1},
			status: 400, want: "node_count"},
		{name: "bad host list", req: api.ReservationRequest{Op: "create", Reservation: api.Reservation{Name: "h", Users: []string{"alice"},
			Nodes: []string{"n[3-1]"}, Start: base, End: base.Add(time.Hour)}}, status: 400, want: "reservation.nodes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := policyStore(t, base)
			snap := st.Snapshot()
			cmd, err := reservationCommand(snap, &tc.req, base)
			if tc.status != 0 {
				var he *httpError
				if err == nil || !errors.As(err, &he) || he.status != tc.status || !strings.Contains(he.msg, tc.want) {
					t.Fatalf("error %v, want %d containing %q", err, tc.status, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cmd.Reservation.Nodes, tc.wantNodes) {
				t.Errorf("nodes %v, want %v", cmd.Reservation.Nodes, tc.wantNodes)
			}
			if !slices.Equal(cmd.Reservation.Flags, tc.wantFlags) {
				t.Errorf("flags %v, want %v", cmd.Reservation.Flags, tc.wantFlags)
			}
			if cmd.Reservation.Start.IsZero() {
				t.Error("no start time")
			}
			// The state machine accepts what the API chose.
			if res, ok := snap.Check(cmd).(error); ok {
				t.Errorf("state machine refuses: %v", res)
			}
		})
	}
}

func TestPolicyCommands(t *testing.T) {
	base := time.Unix(1_800_000_000, 0).UTC()
	st := policyStore(t, base)
	cfg := DefaultConfig()
	cfg.Scheduler.Policy = "fifo"
	cfg.QOS = []api.QOS{{Name: "high", Priority: 10, Preempt: []string{"normal"}}}
	apply := func(cmds []*raftstore.Command) {
		for _, c := range cmds {
			if err, ok := st.ApplyCommand(st.Index()+1, c).(error); ok {
				t.Fatalf("command %d: %v", c.Type, err)
			}
		}
	}
	// Before: defaults, no QoS, and the reservation "early" ended by later.
	cmds := policyCommands(cfg, st.Snapshot(), base.Add(2*time.Hour))
	var types []raftstore.CommandType
	for _, c := range cmds {
		types = append(types, c.Type)
	}
	if want := []raftstore.CommandType{raftstore.CmdSetSchedConfig, raftstore.CmdAccounting, raftstore.CmdDeleteReservation}; !slices.Equal(types, want) {
		t.Fatalf("commands %v, want %v", types, want)
	}
	apply(cmds)
	snap := st.Snapshot()
	if snap.SchedConfig().Policy != "fifo" || snap.QOS("normal") == nil || snap.QOS("high") == nil || len(snap.Reservations()) != 0 {
		t.Fatalf("not applied: %+v %v", snap.SchedConfig(), snap.QOSList())
	}
	if cmds := policyCommands(cfg, snap, base.Add(2*time.Hour)); len(cmds) != 0 {
		t.Errorf("in sync, yet %d commands", len(cmds))
	}
	// A configured QoS changed behind the file's back is put back.
	apply([]*raftstore.Command{{Type: raftstore.CmdAccounting, Accounting: &api.AccountingRequest{Op: "modify",
		QOS: []api.QOS{{Name: "high", Priority: 99}}}}})
	cmds = policyCommands(cfg, st.Snapshot(), base)
	if len(cmds) != 1 || cmds[0].Accounting.Op != "modify" {
		t.Fatalf("commands %+v", cmds)
	}
	apply(cmds)
	if q := st.Snapshot().QOS("high"); q.Priority != 10 || !slices.Equal(q.Preempt, []string{"normal"}) {
		t.Errorf("high %+v", q)
	}
}

func TestPrepareAccounting(t *testing.T) {
	st := policyStore(t, time.Unix(1_800_000_000, 0))
	cfg := DefaultConfig()
	cfg.QOS = []api.QOS{{Name: "site"}}
	tests := []struct {
		name   string
		req    api.AccountingRequest
		status int
		want   string
	}{
		{name: "op is case-insensitive", req: api.AccountingRequest{Op: " Add ", QOS: []api.QOS{{Name: "x"}}}},
		{name: "existing user needs no ids", req: api.AccountingRequest{Op: "add", Users: []api.User{{Name: "alice", Accounts: []string{"research"}}}}},
		{name: "new user with ids", req: api.AccountingRequest{Op: "add", Users: []api.User{{Name: "zed", UID: 5, GID: 5}}}},
		{name: "new user unknown to the system", req: api.AccountingRequest{Op: "add", Users: []api.User{{Name: "nosuchuser9"}}},
			status: 400, want: "users[0].uid"},
		{name: "configured qos", req: api.AccountingRequest{Op: "delete", QOS: []api.QOS{{Name: "site"}}}, status: 409, want: "qos[0].name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := prepareAccounting(st.Snapshot(), cfg, &tc.req)
			if tc.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var he *httpError
			if err == nil || !errors.As(err, &he) || he.status != tc.status || !strings.Contains(he.msg, tc.want) {
				t.Fatalf("error %v, want %d containing %q", err, tc.status, tc.want)
			}
		})
	}
}

func TestPolicyErrorStatus(t *testing.T) {
	tests := []struct {
		err    error
		status int
	}{
		{&raftstore.FieldError{Field: "a", Msg: "b", Err: raftstore.ErrInvalidCommand}, http.StatusBadRequest},
		{&raftstore.FieldError{Field: "a", Msg: "b", Err: raftstore.ErrNotFound}, http.StatusNotFound},
		{&raftstore.FieldError{Field: "a", Msg: "b", Err: raftstore.ErrConflict}, http.StatusConflict},
	}
	for _, tc := range tests {
		var he *httpError
		if err := policyError(tc.err); !errors.As(err, &he) || he.status != tc.status || he.msg != "a: b" {
			t.Errorf("%v: %v", tc.err, err)
		}
	}
}

func TestNewUserIDs(t *testing.T) {
	st := policyStore(t, time.Unix(1_800_000_000, 0))
	if err, ok := st.ApplyCommand(st.Index()+1, &raftstore.Command{Type: raftstore.CmdAddUser,
		User: &api.User{Name: "bob", UID: 7, GID: 7, Accounts: []string{"research"}, TokenID: "t", TokenHash: "h"}}).(error); ok {
		t.Fatal(err)
	}
	id := func(v uint32) *uint32 { return &v }
	tests := []struct {
		name     string
		req      api.UserAddRequest
		uid, gid uint32
		status   int
	}{
		{name: "new user", req: api.UserAddRequest{Name: "carol", UID: id(9), GID: id(9)}, uid: 9, gid: 9},
		{name: "user without a token gets one", req: api.UserAddRequest{Name: "alice"}, uid: 1000, gid: 1000},
		{name: "same ids given", req: api.UserAddRequest{Name: "alice", UID: id(1000), GID: id(1000)}, uid: 1000, gid: 1000},
		{name: "other uid", req: api.UserAddRequest{Name: "alice", UID: id(1)}, status: 409},
		{name: "other gid", req: api.UserAddRequest{Name: "alice", GID: id(1)}, status: 409},
		{name: "user with a token", req: api.UserAddRequest{Name: "bob"}, status: 409},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uid, gid, err := newUserIDs(st.Snapshot(), &tc.req)
			if tc.status != 0 {
				var he *httpError
				if !errors.As(err, &he) || he.status != tc.status {
					t.Fatalf("error %v, want %d", err, tc.status)
				}
				return
			}
			if err != nil || uid != tc.uid || gid != tc.gid {
				t.Errorf("%d:%d %v, want %d:%d", uid, gid, err, tc.uid, tc.gid)
			}
		})
	}
}

// TestReservationEndEnforced: a job that started in a reservation is
// cancelled once the reservation has ended (plus ResvOverRun), and the
// reservation is kept until the job has ended.
func TestReservationEndEnforced(t *testing.T) {
	base := time.Unix(1_800_000_000, 0).UTC()
	st := policyStore(t, base)
	apply := func(cmd *raftstore.Command) any {
		t.Helper()
		res := st.ApplyCommand(st.Index()+1, cmd)
		if err, ok := res.(error); ok {
			t.Fatalf("command %d: %v", cmd.Type, err)
		}
		return res
	}
	id := apply(&raftstore.Command{Type: raftstore.CmdSubmitJob, Time: base.UnixNano(), Submit: &raftstore.SubmitJob{
		Spec: api.JobSpec{Reservation: "early", TimeLimitSec: 3 * 3600}, User: "alice"}}).(*raftstore.SubmitResult).JobID
	apply(&raftstore.Command{Type: raftstore.CmdApplyPlan, Time: base.Add(time.Minute).UnixNano(),
		Plan: &scheduler.Plan{Placements: []scheduler.Placement{{JobID: id, Nodes: []string{"n2"}, CPUs: 1}}}})
	cfg := DefaultConfig()
	deletes := func(now time.Time) bool {
		return slices.ContainsFunc(policyCommands(cfg, st.Snapshot(), now), func(c *raftstore.Command) bool {
			return c.Type == raftstore.CmdDeleteReservation
		})
	}
	end := base.Add(time.Hour)
	for _, tc := range []struct {
		name    string
		overRun time.Duration
		at      time.Time
		want    []uint64
	}{
		{"before the end", 0, end.Add(-time.Second), nil},
		{"at the end", 0, end, []uint64{id}},
		{"within the over-run", 10 * time.Minute, end.Add(5 * time.Minute), nil},
		{"after the over-run", 10 * time.Minute, end.Add(10 * time.Minute), []uint64{id}},
		{"UNLIMITED", scheduler.OverRunUnlimited, end.Add(time.Hour), nil},
	} {
		if got := scheduler.ReservationEnds(tc.at, st.Snapshot(), tc.overRun); !slices.Equal(got, tc.want) {
			t.Errorf("%s: ends %v, want %v", tc.name, got, tc.want)
		}
	}
	if deletes(end) {
		t.Fatal("the reservation is deleted while its job runs")
	}
	// What endReservationJobs commits: scancel's command.
	apply(&raftstore.Command{Type: raftstore.CmdCancelJobs, Time: end.UnixNano(), JobIDs: []uint64{id}})
	if got := scheduler.ReservationEnds(end.Add(time.Second), st.Snapshot(), 0); len(got) != 0 {
		t.Errorf("cancelled again: %v", got)
	}
	if deletes(end.Add(time.Second)) {
		t.Fatal("the reservation is deleted before its job ended")
	}
	apply(&raftstore.Command{Type: raftstore.CmdJobReport, Time: end.Add(2 * time.Second).UnixNano(),
		Report: &api.JobReport{JobID: id, Node: "n2", State: api.JobCancelled}})
	if !deletes(end.Add(3 * time.Second)) {
		t.Error("the ended reservation is kept after its job ended")
	}
	// With UNLIMITED the reservation goes at its end, the job running on.
	cfg.ResvOverRun = scheduler.OverRunUnlimited
	if !deletes(end) {
		t.Error("UNLIMITED: the reservation is kept past its end")
	}
}
