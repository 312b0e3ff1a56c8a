package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// Tests of the scheduling policy commands: sacctmgr, sprio, sshare,
// scontrol's reservations, squeue --start and sacct's srun steps.

func fixtureAccounting() *api.AccountingResponse {
	return &api.AccountingResponse{
		Accounts: []api.Account{
			{Name: "physics", Parent: "root", Description: "Physics"},
			{Name: "astro", Parent: "physics", Description: "Astrophysics department of the faculty"},
			{Name: "chem", Parent: "root"},
		},
		Users: []api.User{
			{Name: "bob", UID: 1502, GID: 1502, DefaultAccount: "chem", Accounts: []string{"chem"}},
			{Name: "alice", UID: 1501, GID: 1501, DefaultAccount: "physics", Accounts: []string{"physics", "astro"}},
			{Name: "root", DefaultAccount: "root", Accounts: []string{"root"}, Admin: true},
		},
		Associations: []api.Association{
			{Account: "physics", Shares: 40, GrpTRES: api.TRES{CPUs: 100, MemoryMB: 204800, GPUs: 2}, DefaultQOS: "normal"},
			{Account: "physics", User: "alice", Shares: 10, QOS: []string{"normal", "high"}, DefaultQOS: "normal",
				MaxJobs: 5, MaxSubmitJobs: 20, MaxWallSec: 86400},
			{Account: "astro", User: "alice", Shares: 1},
			{Account: "astro", Shares: 0},
			{Account: "chem", Shares: 20},
			{Account: "chem", User: "bob", Shares: 1, GrpTRES: api.TRES{Nodes: 4}},
			{Account: "root", User: "root", Shares: 1},
		},
		QOS: []api.QOS{
			{Name: "normal"},
			{Name: "high", Priority: 100, MaxJobsPerUser: 10, MaxSubmitJobsPerUser: 50, Preempt: []string{"normal", "low"},
				PreemptMode: api.PreemptRequeue, GraceTimeSec: 30, MaxTRESPerUser: api.TRES{CPUs: 64, Nodes: 4},
				MaxTRESPerAccount: api.TRES{CPUs: 256}, MaxWallSec: 2 * 86400, UsageFactor: 2, Description: "urgent work"},
			{Name: "low", Priority: 10, PreemptMode: api.PreemptCancel, UsageFactor: 0.5},
		},
	}
}

func mgrArgs(s string) []mgrSpec {
	specs, err := parseMgrSpecs(strings.Fields(s))
	if err != nil {
		panic(err)
	}
	return specs
}

func TestSacctmgrListGolden(t *testing.T) {
	cases := []struct {
		name, ent, args string
		o               mgrOpts
	}{
		{name: "sacctmgr_user", ent: entUser},
		{name: "sacctmgr_user_assoc", ent: entUser, o: mgrOpts{withAssoc: true}},
		{name: "sacctmgr_user_withassoc_word", ent: entUser, args: "alice withassoc"},
		{name: "sacctmgr_account", ent: entAccount},
		{name: "sacctmgr_account_assoc", ent: entAccount, o: mgrOpts{withAssoc: true}},
		{name: "sacctmgr_assoc", ent: entAssoc},
		{name: "sacctmgr_assoc_format", ent: entAssoc, args: "format=account,user,fairshare,qos"},
		{name: "sacctmgr_assoc_where", ent: entAssoc, args: "where user=alice format=Cluster,Account,User,Share,GrpTRES,MaxJobs,MaxSubmit,MaxWall,QOS,DefaultQOS"},
		{name: "sacctmgr_qos", ent: entQOS},
		{name: "sacctmgr_qos_format", ent: entQOS, args: "format=name,priority,maxjobsperuser"},
		{name: "sacctmgr_qos_parsable2", ent: entQOS, o: mgrOpts{parsable2: true},
			args: "format=Name,Priority,GraceTime,Preempt,PreemptMode,UsageFactor,MaxTRESPU,MaxJobsPU,MaxSubmitPU,MaxTRESPA,MaxWall"},
		{name: "sacctmgr_qos_parsable", ent: entQOS, o: mgrOpts{parsable: true, noHeader: true}, args: "high,low format=name,usagefactor,flags"},
		{name: "sacctmgr_account_widths", ent: entAccount, args: "format=Account%-12,Descr%8,Org%4,ParentName"},
		{name: "sacctmgr_user_filter", ent: entUser, o: mgrOpts{withAssoc: true}, args: "where account=astro format=User,Account,Share,QOS%30,DefaultQOS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := mgrList(tc.ent, mgrArgs(tc.args), tc.o, fixtureAccounting())
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, out)
		})
	}
}

// TestSacctmgrAccountWidth is the acceptance check: one account per line,
// right-justified in 20 columns and followed by print_fields' space.
func TestSacctmgrAccountWidth(t *testing.T) {
	cases := []struct {
		args string
		o    mgrOpts
		want string
	}{
		{"alice format=account%20", mgrOpts{noHeader: true, withAssoc: true}, "             physics \n               astro \n"},
		{"alice format=account%-20", mgrOpts{noHeader: true, withAssoc: true}, "physics              \nastro                \n"},
		{"alice format=account", mgrOpts{noHeader: true, withAssoc: true}, "   physics \n     astro \n"},
		{"alice format=account%20", mgrOpts{withAssoc: true},
			"             Account \n-------------------- \n             physics \n               astro \n"},
		{"alice format=account%20", mgrOpts{noHeader: true, withAssoc: true, parsable2: true}, "physics\nastro\n"},
		{"alice format=account%20,user", mgrOpts{noHeader: true, withAssoc: true, parsable: true}, "physics|alice|\nastro|alice|\n"},
		{"alice format=account%3", mgrOpts{noHeader: true, withAssoc: true}, "ph+ \nas+ \n"},
		{"nobody format=account%20", mgrOpts{noHeader: true, withAssoc: true}, ""},
	}
	for _, tc := range cases {
		out, err := mgrList(entUser, mgrArgs(tc.args), tc.o, fixtureAccounting())
		if err != nil || out != tc.want {
			t.Errorf("%s %+v: %q %v, want %q", tc.args, tc.o, out, err, tc.want)
		}
	}
}

func TestSacctmgrFieldNames(t *testing.T) {
	cases := []struct{ key, header string }{
		{"account", "Account"}, {"acct", "Account"}, {"acc", "Account"}, {"user", "User"}, {"u", "User"},
		{"fairshare", "Share"}, {"share", "Share"}, {"qos", "QOS"}, {"QOSLevel", "QOS"}, {"defaultqos", "Def QOS"},
		{"DefaultAccount", "Def Acct"}, {"adminlevel", "Admin"}, {"maxjobs", "MaxJobs"}, {"maxj", "MaxJobs"},
		{"maxjobsperuser", "MaxJobsPU"}, {"maxjobspu", "MaxJobsPU"}, {"maxsubmit", "MaxSubmit"}, {"maxsubmitpu", "MaxSubmitPU"},
		{"MaxTRESPerUser", "MaxTRESPU"}, {"maxtrespa", "MaxTRESPA"}, {"maxtres", "MaxTRES"}, {"maxtrespernode", "MaxTRESPerNode"},
		{"preempt", "Preempt"}, {"preemptmode", "PreemptMode"}, {"preemptexempttime", "PreemptExemptTime"},
		{"grptres", "GrpTRES"}, {"grptresmins", "GrpTRESMins"}, {"maxwall", "MaxWall"}, {"maxw", "MaxWall"},
		{"maxcpus", "MaxCPUs"}, {"maxcpumins", "MaxCPUMins"}, {"maxnodes", "MaxNodes"}, {"org", "Org"},
		{"parentname", "ParentName"}, {"description", "Descr"}, {"gracetime", "GraceTime"}, {"usagefactor", "UsageFactor"},
		{"name", "Name"}, {"cluster", "Cluster"}, {"Partition", "Partition"}, {"priority", "Priority"},
	}
	for _, tc := range cases {
		f, ok := lookupMgrField(tc.key)
		if !ok || f.header != tc.header {
			t.Errorf("%s: %q %v, want %q", tc.key, f.header, ok, tc.header)
		}
	}
	for _, bad := range []string{"bogus", "a", "max", "acctx"} {
		if _, ok := lookupMgrField(bad); ok {
			t.Errorf("%s: matched", bad)
		}
	}
}

func reqJSON(t *testing.T, r api.AccountingRequest) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSacctmgrChanges(t *testing.T) {
	cases := []struct {
		verb, ent, args string
		req             string // the request as JSON
		msg             string
		nothing         string
	}{
		{verb: "add", ent: entAccount, args: `geo Description=Geology parent=physics`,
			req: `{"op":"add","accounts":[{"name":"geo","parent":"physics","description":"Geology"}]}`,
			msg: " Adding Account(s)\n  geo\n Settings\n  Description     = Geology\n  Organization    = Parent/Account Name\n" +
				" Associations\n  A = geo        C = cluster   \n Settings\n  Parent        = physics\n"},
		{verb: "add", ent: entAccount, args: `geo,bio fairshare=5 grptres=cpu=8,mem=4G maxjobs=-1`,
			req: `{"op":"add","accounts":[{"name":"geo"},{"name":"bio"}],"associations":[` +
				`{"account":"geo","shares":5,"grp_tres":{"cpu":8,"mem":4096}},{"account":"bio","shares":5,"grp_tres":{"cpu":8,"mem":4096}}]}`,
			msg: " Adding Account(s)\n  geo\n  bio\n Settings\n  Description     = Account Name\n  Organization    = Parent/Account Name\n" +
				" Associations\n  A = geo        C = cluster   \n  A = bio        C = cluster   \n" +
				" Settings\n  Fairshare     = 5\n  GrpTRES       = cpu=8,mem=4G\n  MaxJobs       = NONE\n"},
		{verb: "add", ent: entAccount, args: `physics`, nothing: " Nothing new added."},
		{verb: "add", ent: entUser, args: `carol account=physics,chem defaultaccount=chem`,
			req: `{"op":"add","users":[{"name":"carol","uid":0,"gid":0,"default_account":"chem","accounts":["physics","chem"]}]}`,
			msg: " Adding User(s)\n  carol\n Settings =\n  Default Account = chem\n Associations =\n" +
				"  U = carol     A = physics    C = cluster   \n  U = carol     A = chem       C = cluster   \n"},
		{verb: "add", ent: entUser, args: `alice account=chem fairshare=3 qos=normal`,
			req: `{"op":"add","users":[{"name":"alice","uid":1501,"gid":1501,"default_account":"","accounts":["chem"]}],` +
				`"associations":[{"account":"chem","user":"alice","shares":3,"qos":["normal"]}]}`,
			msg: " Associations =\n  U = alice     A = chem       C = cluster   \n Non Default Settings\n  Fairshare     = 3\n  QOS           = normal\n"},
		{verb: "add", ent: entUser, args: `alice account=physics`, nothing: " Nothing new added."},
		{verb: "add", ent: entQOS, args: `urgent priority=100 maxjobsperuser=10 preempt=normal preemptmode=requeue gracetime=30`,
			req: `{"op":"add","qos":[{"name":"urgent","priority":100,"max_jobs_per_user":10,"preempt":["normal"],` +
				`"preempt_mode":"requeue","grace_time_sec":30}]}`,
			msg: " Adding QOS(s)\n  urgent\n Settings\n  Description    = QOS Name\n  Priority       = 100\n" +
				"  MaxJobsPerUser = 10\n  Preempt        = normal\n  PreemptMode    = REQUEUE\n  GraceTime      = 00:00:30\n"},
		{verb: "add", ent: entQOS, args: `high`, nothing: " Nothing new added."},
		{verb: "modify", ent: entUser, args: `alice set defaultaccount=astro`,
			req: `{"op":"modify","users":[{"name":"alice","uid":0,"gid":0,"default_account":"astro","accounts":null}]}`,
			msg: " Modified users...\n  alice\n"},
		{verb: "modify", ent: entUser, args: `alice where account=physics set fairshare=10 qos=normal,high defaultqos=normal maxjobs=5 grptres=cpu=100`,
			req: `{"op":"modify","associations":[{"account":"physics","user":"alice","shares":10,"default_qos":"normal",` +
				`"qos":["normal","high"],"max_jobs":5,"max_submit_jobs":20,"grp_tres":{"cpu":100},"max_wall_sec":86400}]}`,
			msg: " Modified user associations...\n  C = cluster    A = physics              U = alice    \n"},
		{verb: "modify", ent: entUser, args: `where name=alice set qos-=high maxwall=-1 MaxSubmitJobs=-1`,
			req: `{"op":"modify","associations":[{"account":"physics","user":"alice","shares":10,"default_qos":"normal",` +
				`"qos":["normal"],"max_jobs":5},{"account":"astro","user":"alice","shares":1}]}`,
			msg: " Modified user associations...\n  C = cluster    A = physics              U = alice    \n" +
				"  C = cluster    A = astro                U = alice    \n"},
		{verb: "modify", ent: entUser, args: `nobody set maxjobs=1`, nothing: " Nothing modified"},
		{verb: "modify", ent: entAccount, args: `chem set description="Chemistry" parent=physics GrpCPUs=32`,
			req: `{"op":"modify","accounts":[{"name":"chem","parent":"physics","description":"\"Chemistry\""}],` +
				`"associations":[{"account":"chem","shares":20,"grp_tres":{"cpu":32}}]}`,
			msg: " Modified accounts...\n  chem\n Modified account associations...\n  C = cluster    A = chem                \n"},
		{verb: "modify", ent: entQOS, args: `normal set MaxTRESPerUser=cpu=64,node=4`,
			req: `{"op":"modify","qos":[{"name":"normal","priority":0,"max_tres_per_user":{"cpu":64,"node":4}}]}`,
			msg: " Modified qos...\n  normal\n"},
		{verb: "modify", ent: entQOS, args: `where name=high set MaxTRESPerUser=node=-1 preempt+=normal preempt-=low usagefactor=1.5 PreemptMode=cluster`,
			req: `{"op":"modify","qos":[{"name":"high","description":"urgent work","priority":100,"max_jobs_per_user":10,` +
				`"max_submit_jobs_per_user":50,"max_tres_per_user":{"cpu":64},"max_tres_per_account":{"cpu":256},"max_wall_sec":172800,` +
				`"preempt":["normal"],"grace_time_sec":30,"usage_factor":1.5}]}`,
			msg: " Modified qos...\n  high\n"},
		{verb: "delete", ent: entUser, args: `bob`, req: `{"op":"delete","users":[{"name":"bob","uid":0,"gid":0,"default_account":"","accounts":null}]}`,
			msg: " Deleting users...\n  bob\n"},
		{verb: "delete", ent: entUser, args: `alice where account=astro`,
			req: `{"op":"delete","associations":[{"account":"astro","user":"alice","shares":0}]}`,
			msg: " Deleting user associations...\n  C = cluster    A = astro                U = alice    \n"},
		{verb: "delete", ent: entUser, args: `nobody`, nothing: " Nothing deleted"},
		{verb: "delete", ent: entAccount, args: `chem`, req: `{"op":"delete","accounts":[{"name":"chem"}]}`,
			msg: " Deleting accounts...\n  chem\n"},
		{verb: "delete", ent: entQOS, args: `low,high`, req: `{"op":"delete","qos":[{"name":"high","priority":0},{"name":"low","priority":0}]}`,
			msg: " Deleting QOS(s)...\n  high\n  low\n"},
	}
	for _, tc := range cases {
		t.Run(tc.verb+" "+tc.ent+" "+tc.args, func(t *testing.T) {
			e, _, _ := testEnv(t, &fakeAPI{}, nil, nil)
			specs := mgrArgs(tc.args)
			var ch *mgrChange
			var err error
			switch tc.verb {
			case "add":
				ch, err = mgrAdd(tc.ent, specs, fixtureAccounting(), e)
			case "modify":
				ch, err = mgrModify(tc.ent, specs, fixtureAccounting(), e)
			case "delete":
				ch, err = mgrDelete(tc.ent, specs, fixtureAccounting())
			}
			if err != nil {
				t.Fatal(err)
			}
			if ch.nothing != tc.nothing {
				t.Fatalf("nothing %q, want %q", ch.nothing, tc.nothing)
			}
			if tc.nothing != "" {
				return
			}
			if got := reqJSON(t, ch.req); got != tc.req {
				t.Errorf("request\n got %s\nwant %s", got, tc.req)
			}
			if ch.message != tc.msg {
				t.Errorf("message\n got %q\nwant %q", ch.message, tc.msg)
			}
		})
	}
}

func TestSacctmgrErrors(t *testing.T) {
	cases := []struct {
		verb, ent, args, err string
	}{
		{"add", entUser, "carol", "Need a default account for these users to add."},
		{"add", entUser, "alice account=nosuch", "This account 'nosuch' doesn't exist. Contact your admin to add this account."},
		{"add", entAccount, "geo parent=nosuch", "Parent account 'nosuch' doesn't exist."},
		{"add", entAccount, "geo cluster=other", "This cluster 'other' doesn't exist (the cluster is cluster)"},
		{"add", entAccount, "geo grpjobs=4", "GrpJobs is not supported by Stockade"},
		{"add", entAccount, "geo bogus=4", "Unknown option: bogus (use keyword 'where' to modify a condition)"},
		{"add", entAccount, "", "Need name of account to add."},
		{"add", entQOS, "x priority=high", "Invalid Priority value: high"},
		{"add", entQOS, "x maxjobsperuser=-5", "Invalid MaxJobsPerUser value: -5"},
		{"add", entQOS, "x preempt=nosuch", "Invalid Preempt value: no such qos nosuch"},
		{"add", entQOS, "x preemptmode=suspend", "PreemptMode=suspend is not supported by Stockade (cluster, off, requeue or cancel)"},
		{"add", entQOS, "x MaxTRESPerUser=billing=4", "Invalid MaxTRESPerUser value: TRES billing is not supported by Stockade (cpu, mem, node, gres/gpu)"},
		{"add", entQOS, "x MaxTRESPerUser=cpu", "Invalid MaxTRESPerUser value: cpu (want cpu=N,mem=N,node=N,gres/gpu=N)"},
		{"add", entQOS, "x usagefactor=-1", "Invalid UsageFactor value: -1"},
		{"add", entQOS, "x flags=DenyOnLimit", "Flags is not supported by Stockade"},
		{"add", entUser, "alice account=chem adminlevel=operator", "AdminLevel=Operator is not supported by Stockade (None or Administrator)"},
		{"modify", entUser, "alice", "You didn't give me anything to set"},
		{"modify", entUser, "alice set defaultaccount=chem", "Invalid DefaultAccount value: user alice has no association with account chem"},
		{"modify", entUser, "alice set qos=nosuch", "Invalid QOS value: no such qos nosuch"},
		{"modify", entUser, "alice set maxwall=soon", "Invalid MaxWall value: soon"},
		{"modify", entUser, "alice where account=physics set defaultqos=low", "Invalid DefaultQOS value: low is not in the QOS list of physics/alice"},
		{"modify", entUser, "bogus=1 set maxjobs=1", "Unknown condition: bogus"},
		{"modify", entUser, "alice where partition=x set maxjobs=1", "Partitions is not supported by Stockade"},
		{"modify", entUser, "alice set fairshare", "Bad format on fairshare: End your option with an '=' sign"},
		{"modify", entQOS, "high set preempt=high", "Invalid Preempt value: qos high cannot preempt itself"},
		{"modify", entAccount, "root set parent=chem", "Invalid Parent value: account root has no parent"},
		{"delete", entUser, "", "No conditions given to remove, not executing."},
		{"delete", entQOS, "format=name", "No conditions given to remove, not executing."},
		{"delete", entUser, "alice set maxjobs=1", "Unknown condition: set (delete takes no new values)"},
	}
	for _, tc := range cases {
		t.Run(tc.verb+" "+tc.ent+" "+tc.args, func(t *testing.T) {
			e, _, _ := testEnv(t, &fakeAPI{}, nil, nil)
			specs := mgrArgs(tc.args)
			var err error
			switch tc.verb {
			case "add":
				_, err = mgrAdd(tc.ent, specs, fixtureAccounting(), e)
			case "modify":
				_, err = mgrModify(tc.ent, specs, fixtureAccounting(), e)
			case "delete":
				_, err = mgrDelete(tc.ent, specs, fixtureAccounting())
			}
			if err == nil || err.Error() != tc.err {
				t.Errorf("err %v, want %q", err, tc.err)
			}
		})
	}
}

// ---- a fake controller for the policy routes ----

type policyAPI struct {
	mu       sync.Mutex
	reqs     []recorded
	failures map[string]api.HTTPError
	jobs     []api.Job
	steps    []api.JobStep
	resvs    []api.Reservation
}

func (p *policyAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	route := r.Method + " " + r.URL.Path
	p.mu.Lock()
	p.reqs = append(p.reqs, recorded{r.Method, r.URL.Path, r.URL.Query(), string(body)})
	fail, failing := p.failures[route]
	p.mu.Unlock()
	reply := func(v any) { json.NewEncoder(w).Encode(v) }
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(http.StatusUnauthorized)
		reply(api.Error{Error: "unauthorized"})
		return
	}
	if failing {
		w.WriteHeader(fail.Status)
		reply(api.Error{Error: fail.Message})
		return
	}
	switch route {
	case "GET /v1/accounting":
		reply(fixtureAccounting())
	case "POST /v1/accounting":
		reply(api.AccountingResult{Changed: []string{"something"}})
	case "GET /v1/priorities":
		reply(api.PrioritiesResponse{Weights: fixtureWeights(), Jobs: fixturePriorities()})
	case "GET /v1/shares":
		reply(api.SharesResponse{Shares: fixtureShares()})
	case "GET /v1/reservations":
		reply(api.ReservationsResponse{Reservations: p.resvs})
	case "POST /v1/reservations":
		var req api.ReservationRequest
		json.Unmarshal(body, &req)
		if req.NodeCount > 0 {
			req.Reservation.Nodes = []string{"node1", "node2"}[:min(req.NodeCount, 2)]
		}
		reply(req.Reservation)
	case "GET /v1/nodes":
		reply(api.NodesResponse{Nodes: fixtureNodes(), Partitions: fixturePartitions()})
	case "GET /v1/jobs":
		reply(api.JobsResponse{Jobs: p.jobs})
	case "GET /v1/steps":
		reply(api.StepsResponse{Steps: p.steps})
	default:
		http.NotFound(w, r)
	}
}

func (p *policyAPI) last(method, path string) *recorded {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.reqs) - 1; i >= 0; i-- {
		if p.reqs[i].method == method && p.reqs[i].path == path {
			return &p.reqs[i]
		}
	}
	return nil
}

// policyEnv is a test env whose client talks to p.
func policyEnv(t *testing.T, p *policyAPI, vars map[string]string) (*env, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	e, stdout, stderr := testEnv(t, &fakeAPI{}, vars, nil)
	srv := httptest.NewUnstartedServer(p)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tlsConf := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsConf.MinVersion = tls.VersionTLS13
	addr := strings.TrimPrefix(srv.URL, "https://")
	e.client = func() (*api.Client, error) { return api.NewClient([]string{addr}, "tok", tlsConf), nil }
	return e, stdout, stderr
}

func TestPolicyCommands(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		vars     map[string]string
		failures map[string]api.HTTPError
		code     int
		stdout   string // exact unless golden
		golden   string
		stderr   string // exact
		check    func(t *testing.T, p *policyAPI)
	}{
		{name: "acceptance", args: []string{"sacctmgr", "-n", "-s", "list", "user", "alice", "format=account%20"},
			stdout: "             physics \n               astro \n"},
		{name: "options after the command", args: []string{"sacctmgr", "list", "user", "alice", "format=account%20", "-n", "-s"},
			stdout: "             physics \n               astro \n"},
		{name: "show is list", args: []string{"sacctmgr", "show", "qos", "format=name,priority,maxjobsperuser", "-P", "-n"},
			stdout: "high|100|10\nlow|10|\nnormal|0|\n"},
		{name: "default user list", args: []string{"sacctmgr", "list", "users"}, golden: "sacctmgr_user"},
		{name: "stockade sacctmgr", args: []string{"stockade", "sacctmgr", "list", "assoc", "format=account,user,fairshare,qos"},
			golden: "sacctmgr_assoc_format"},
		{name: "add account", args: []string{"sacctmgr", "-i", "add", "account", "geo", "Description=Geology"},
			stdout: " Adding Account(s)\n  geo\n Settings\n  Description     = Geology\n  Organization    = Parent/Account Name\n" +
				" Associations\n  A = geo        C = cluster   \n",
			check: func(t *testing.T, p *policyAPI) {
				var req api.AccountingRequest
				json.Unmarshal([]byte(p.last("POST", "/v1/accounting").body), &req)
				if req.Op != "add" || len(req.Accounts) != 1 || req.Accounts[0].Name != "geo" {
					t.Errorf("request %+v", req)
				}
			}},
		{name: "quiet", args: []string{"sacctmgr", "-Q", "-i", "modify", "user", "alice", "set", "maxjobs=1"}},
		{name: "organization is warned about", args: []string{"sacctmgr", "-Q", "add", "account", "geo", "Organization=earth"},
			stderr: "sacctmgr: warning: Organization is not kept by Stockade (it follows the account tree); ignored\n"},
		{name: "nothing new", args: []string{"sacctmgr", "add", "account", "physics"}, code: 1, stdout: " Nothing new added.\n",
			check: func(t *testing.T, p *policyAPI) {
				if p.last("POST", "/v1/accounting") != nil {
					t.Error("request sent")
				}
			}},
		{name: "nothing modified", args: []string{"sacctmgr", "modify", "qos", "nosuch", "set", "priority=1"}, code: 1,
			stdout: " Nothing modified\n"},
		{name: "refused by the controllers", args: []string{"sacctmgr", "delete", "account", "physics"}, code: 1,
			failures: map[string]api.HTTPError{"POST /v1/accounting": {Status: 409, Message: "accounts[0].name: account physics has user alice"}},
			stderr:   "sacctmgr: error: accounts[0].name: account physics has user alice\n"},
		{name: "bad key changes nothing", args: []string{"sacctmgr", "modify", "user", "alice", "set", "maxjobs=many"}, code: 1,
			stderr: "sacctmgr: error: Invalid MaxJobs value: many\n",
			check: func(t *testing.T, p *policyAPI) {
				if p.last("POST", "/v1/accounting") != nil {
					t.Error("request sent")
				}
			}},
		{name: "readonly", args: []string{"sacctmgr", "-r", "delete", "user", "bob"}, code: 1,
			stderr: "sacctmgr: error: Can't run this command in readonly mode.\n"},
		{name: "unknown entity", args: []string{"sacctmgr", "list", "gizmo"}, code: 1, stderr: "sacctmgr: error: Unknown entity: gizmo\n"},
		{name: "unsupported entity", args: []string{"sacctmgr", "list", "wckey"}, code: 1,
			stderr: "sacctmgr: error: entity wckey is not supported by Stockade\n"},
		{name: "unknown field", args: []string{"sacctmgr", "list", "user", "format=bogus"}, code: 1,
			stderr: "sacctmgr: error: Unknown field 'bogus'\n"},
		{name: "bad verb", args: []string{"sacctmgr", "frob", "user"}, code: 1, stderr: "sacctmgr: error: Invalid command: frob\n"},
		{name: "modify association", args: []string{"sacctmgr", "modify", "assoc", "set", "maxjobs=1"}, code: 1,
			stderr: "sacctmgr: error: modify association is not supported: change associations with modify user or modify account\n"},
		{name: "sacctmgr version", args: []string{"sacctmgr", "version"}, stdout: "slurm 23.11.0\n"},

		{name: "sprio", args: []string{"sprio"}, golden: "sprio_default"},
		{name: "stockade prio", args: []string{"stockade", "prio"}, golden: "sprio_default"},
		{name: "sprio jobs", args: []string{"sprio", "-h", "-j", "201,203", "-o", "%i %Y"}, stdout: "201 10411\n203 1270\n"},
		{name: "sprio jobs positional", args: []string{"sprio", "-h", "-j", "202", "-o", "%i"}, stdout: "202\n"},
		{name: "sprio no such job", args: []string{"sprio", "-j", "999"}, stdout: "Unable to find jobs matching user/id(s) specified\n"},
		{name: "sprio users", args: []string{"sprio", "-u", "bob"}, golden: "cmd_sprio_user"},
		{name: "sprio sort", args: []string{"sprio", "-h", "-S", "-y", "-o", "%i"}, stdout: "201\n202\n204\n203\n"},
		{name: "sprio env format", args: []string{"sprio", "-h", "-p", "gpu-long-name"}, vars: map[string]string{"SPRIO_FORMAT": "%i %r"},
			stdout: "204 gpu-long-name\n"},
		{name: "sprio long and format", args: []string{"sprio", "-l", "-o", "%i"}, code: 1,
			stderr: "sprio: error: Options -o(--format) and -l(--long) are mutually exclusive. Please remove one and retry.\n"},
		{name: "sprio bad job", args: []string{"sprio", "-j", "x1"}, code: 1, stderr: "sprio: error: Invalid job id: x1\n"},
		{name: "sprio bad code", args: []string{"sprio", "-h", "-j", "202", "-o", "%i%z"}, stdout: "202\n",
			stderr: "sprio: error: Invalid job format specification: z\n"},

		{name: "sshare mine", args: []string{"sshare"}, golden: "sshare_mine"},
		{name: "stockade share all", args: []string{"stockade", "share", "-a"}, golden: "sshare_all"},
		{name: "sshare users only", args: []string{"sshare", "-U", "-u", "bob,carol", "-P", "-n"},
			stdout: "  chem|bob|1|1.000000|0|0.000000|1.000000\n"},
		{name: "sshare accounts", args: []string{"sshare", "-a", "-A", "astro", "-o", "Account,User,RawS", "-p"},
			stdout: "Account|User|RawShares|\n  astro||1|\n   astro|alice|1|\n"},
		{name: "sshare bad field", args: []string{"sshare", "-o", "Nope"}, code: 1, stderr: "sshare: error: Invalid field requested: \"Nope\"\n"},

		{name: "show reservation", args: []string{"scontrol", "show", "reservation"}, golden: "cmd_scontrol_show_reservation"},
		{name: "show one reservation oneliner", args: []string{"scontrol", "-o", "show", "res", "maint"},
			stdout: "ReservationName=maint StartTime=2026-11-21T09:00:00 EndTime=2026-11-21T11:00:00 Duration=02:00:00 " +
				"Nodes=node[1-3] NodeCnt=3 CoreCnt=20 Features=(null) PartitionName=batch Flags=MAINT,IGNORE_JOBS " +
				"TRES=cpu=20 Users=alice,bob Groups=(null) Accounts=(null) Licenses=(null) State=ACTIVE BurstBuffer=(null) Watts=n/a " +
				"MaxStartDelay=(null)\n"},
		{name: "unknown reservation", args: []string{"scontrol", "show", "reservation", "nosuch"}, code: 1,
			stderr: "scontrol: error: Reservation nosuch not found\n"},
		{name: "create reservation", args: []string{"scontrol", "create", "reservation", "ReservationName=train", "Users=alice,bob",
			"Accounts=physics", "StartTime=now+1hour", "Duration=1:00:00", "Nodes=node[1-3]", "PartitionName=batch", "Flags=maint"},
			stdout: "Reservation created: train\n",
			check: func(t *testing.T, p *policyAPI) {
				want := `{"op":"create","reservation":{"name":"train","users":["alice","bob"],"accounts":["physics"],` +
					`"nodes":["node1","node2","node3"],"start_time":"2026-11-21T11:00:00Z","end_time":"2026-11-21T12:00:00Z",` +
					`"partition":"batch","flags":["MAINT"]}}`
				if got := strings.TrimSpace(p.last("POST", "/v1/reservations").body); got != want {
					t.Errorf("request\n got %s\nwant %s", got, want)
				}
			}},
		{name: "create reservation by count, named for its user", args: []string{"scontrol", "create", "res", "users=carol",
			"starttime=2026-12-01T08:00:00", "endtime=2026-12-01T20:00:00", "nodecnt=2"},
			stdout: "Reservation created: carol_1\n",
			check: func(t *testing.T, p *policyAPI) {
				var req api.ReservationRequest
				json.Unmarshal([]byte(p.last("POST", "/v1/reservations").body), &req)
				if req.NodeCount != 2 || len(req.Reservation.Nodes) != 0 || req.Reservation.Name != "carol_1" {
					t.Errorf("request %+v", req)
				}
			}},
		{name: "create reservation without users", args: []string{"scontrol", "create", "reservation", "StartTime=now",
			"Duration=60", "Nodes=node1"}, code: 1,
			stderr: "scontrol: error: Either Users or Accounts must be specified. No reservation created.\n"},
		{name: "create reservation refused", args: []string{"scontrol", "create", "reservation", "ReservationName=x", "StartTime=now",
			"Duration=60", "Nodes=node1", "Users=alice"}, code: 1,
			failures: map[string]api.HTTPError{"POST /v1/reservations": {Status: 409, Message: "reservation.nodes: node node1 is reserved by maint"}},
			stderr:   "scontrol: error: Error creating the reservation: reservation.nodes: node node1 is reserved by maint\n"},
		{name: "update reservation", args: []string{"scontrol", "update", "ReservationName=maint", "Users-=bob", "Users+=carol",
			"Duration=3:00:00", "Flags-=IGNORE_JOBS"},
			stdout: "Reservation updated.\n",
			check: func(t *testing.T, p *policyAPI) {
				var req api.ReservationRequest
				json.Unmarshal([]byte(p.last("POST", "/v1/reservations").body), &req)
				r := req.Reservation
				if req.Op != "update" || strings.Join(r.Users, ",") != "alice,carol" || !r.End.Equal(ago(-2*time.Hour)) ||
					strings.Join(r.Flags, ",") != "MAINT" || len(r.Nodes) != 3 {
					t.Errorf("request %+v", req)
				}
			}},
		{name: "update unknown reservation", args: []string{"scontrol", "update", "ReservationName=nosuch", "Duration=60"}, code: 1,
			stderr: "scontrol: error: Error updating the reservation: Requested reservation is invalid\n"},
		{name: "delete reservation", args: []string{"scontrol", "delete", "reservation", "maint"},
			check: func(t *testing.T, p *policyAPI) {
				if b := p.last("POST", "/v1/reservations").body; !strings.Contains(b, `"op":"delete"`) || !strings.Contains(b, `"name":"maint"`) {
					t.Errorf("request %s", b)
				}
			}},
		{name: "delete ReservationName=", args: []string{"scontrol", "delete", "ReservationName=maint"}},
		{name: "scontrol hostlist still works", args: []string{"scontrol", "show", "hostnames", "n[1-2]"}, stdout: "n1\nn2\n"},

		{name: "squeue --start", args: []string{"squeue", "--start"}, golden: "squeue_start",
			check: func(t *testing.T, p *policyAPI) {
				q := p.last("GET", "/v1/jobs").query
				if q.Get("start") != "true" || q.Get("state") != "PENDING" {
					t.Errorf("query %v", q)
				}
			}},
		{name: "squeue %S asks for estimates", args: []string{"squeue", "-h", "-t", "PD", "-o", "%i %S", "-S", "S"},
			stdout: "103_2 2026-11-21T10:30:00\n102 2026-11-21T11:00:00\n105 N/A\n",
			check: func(t *testing.T, p *policyAPI) {
				if q := p.last("GET", "/v1/jobs").query; q.Get("start") != "true" {
					t.Errorf("query %v", q)
				}
			}},
		{name: "squeue without %S", args: []string{"squeue", "-h", "-o", "%i"}, stdout: "102\n103_2\n101\n103_1\n111\n105\n",
			check: func(t *testing.T, p *policyAPI) {
				if q := p.last("GET", "/v1/jobs").query; q.Has("start") {
					t.Errorf("query %v", q)
				}
			}},

		{name: "sacct steps", args: []string{"sacct", "-j", "101,106", "--format=JobID,JobName,State,ExitCode,Elapsed,NNodes,NTasks,NodeList"},
			golden: "cmd_sacct_steps",
			check: func(t *testing.T, p *policyAPI) {
				if q := p.last("GET", "/v1/steps").query; strings.Join(q["job"], ",") != "101,106" {
					t.Errorf("steps query %v", q)
				}
			}},
		{name: "sacct -X has no steps", args: []string{"sacct", "-X", "-j", "101", "-n", "-P", "--format=JobID"}, stdout: "101\n",
			check: func(t *testing.T, p *policyAPI) {
				if p.last("GET", "/v1/steps") != nil {
					t.Error("steps fetched")
				}
			}},
		{name: "sacct on controllers without steps", args: []string{"sacct", "-j", "106", "-n", "-P", "--format=JobID"},
			failures: map[string]api.HTTPError{"GET /v1/steps": {Status: 404, Message: "404 page not found"}},
			stdout:   "106\n106.batch\n"},
		{name: "sacct steps failing", args: []string{"sacct", "-j", "106"}, code: 1,
			failures: map[string]api.HTTPError{"GET /v1/steps": {Status: 500, Message: "boom"}},
			stderr:   "sacct: error: boom\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &policyAPI{failures: tc.failures, jobs: startJobs(), steps: fixtureSteps(), resvs: fixtureReservations()}
			e, stdout, stderr := policyEnv(t, p, tc.vars)
			code := run(context.Background(), e, tc.args)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr.String())
			}
			switch {
			case tc.golden != "":
				golden(t, tc.golden, stdout.String())
			case stdout.String() != tc.stdout:
				t.Errorf("stdout %q, want %q", stdout.String(), tc.stdout)
			}
			if stderr.String() != tc.stderr {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.stderr)
			}
			if tc.code != 0 && strings.Count(stderr.String(), "\n") > 1 {
				t.Errorf("stderr has more than one line: %q", stderr.String())
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
}

func TestPolicyHelp(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"sacctmgr", "--help"}, []string{"Usage: sacctmgr", "--parsable2", "--associations", "MaxTRESPerUser"}},
		{[]string{"sacctmgr", "help"}, []string{"Usage: sacctmgr"}},
		{[]string{"sprio", "--help"}, []string{"Usage: sprio", "--weights", "--norm"}},
		{[]string{"sshare", "--help"}, []string{"Usage: sshare", "--long", "--parsable2"}},
		{[]string{"stockade", "help", "prio"}, []string{"Usage: sprio"}},
		{[]string{"squeue", "--help"}, []string{"--start", "%Y"}},
		{[]string{"scontrol", "--help"}, []string{"create reservation", "show reservation", "delete reservation"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			e, stdout, _ := testEnv(t, &fakeAPI{}, nil, nil)
			if code := run(context.Background(), e, tc.args); code != 0 {
				t.Fatalf("exit %d", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("help lacks %q", w)
				}
			}
		})
	}
}

// ---- sprio ----

func fixtureWeights() api.PriorityWeights {
	return api.PriorityWeights{Age: 1000, FairShare: 10000, JobSize: 1000, Partition: 0, QOS: 10000}
}

func fixturePriorities() []api.PriorityFactors {
	return []api.PriorityFactors{
		{JobID: 203, User: "alice", Account: "physics", Partition: "batch", QOS: "normal", Priority: 1270, Age: 250, FairShare: 1000, JobSize: 20},
		{JobID: 201, User: "alice", Account: "physics", Partition: "batch", QOS: "high", Priority: 10411, Age: 1000, FairShare: 5000,
			JobSize: 411, QOSPrio: 4000},
		{JobID: 204, User: "carol", Account: "chem", Partition: "gpu-long-name", QOS: "low", Priority: 2000, Age: 1, FairShare: 2000,
			JobSize: 99, QOSPrio: 400, Nice: 500},
		{JobID: 202, User: "bob", Account: "chem", Partition: "batch", QOS: "normal", Priority: 3333, Age: 33, FairShare: 3300},
	}
}

func TestSprioGolden(t *testing.T) {
	w := fixtureWeights()
	cases := []struct {
		name string
		view sprioView
	}{
		{"sprio_default", sprioView{format: sprioDefaultFormat(w, false, false, false)}},
		{"sprio_long", sprioView{format: sprioDefaultFormat(w, true, false, false)}},
		{"sprio_norm", sprioView{format: sprioDefaultFormat(w, false, true, false)}},
		{"sprio_long_norm", sprioView{format: sprioDefaultFormat(w, true, true, false)}},
		{"sprio_users", sprioView{format: sprioDefaultFormat(w, false, false, true)}},
		{"sprio_weights", sprioView{format: sprioDefaultFormat(w, false, false, false), weights: true}},
		{"sprio_weights_long", sprioView{format: sprioDefaultFormat(w, true, false, false), weights: true, noHeader: true}},
		{"sprio_custom", sprioView{format: "id=%i %o %n %N %c %S %.5r|%5u|%T|%t"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			jobs := fixturePriorities()
			if err := sortSprio(jobs, "i"); err != nil {
				t.Fatal(err)
			}
			out, bad := renderSprio(tc.view, w, jobs)
			if len(bad) > 0 {
				t.Fatal(bad)
			}
			golden(t, tc.name, out)
		})
	}
}

func TestSprioDefaultFormat(t *testing.T) {
	cases := []struct {
		w                 api.PriorityWeights
		long, norm, users bool
		want              string
	}{
		{api.DefaultSchedConfig().Weights, false, false, false, "%.15i %9r %.10Y %.10S %.10A %.10F %.10J %.10P %.10Q"},
		{api.PriorityWeights{FairShare: 1}, false, false, true, "%.15i %9r %.8u %.10Y %.10S %.10F"},
		{api.PriorityWeights{Age: 1, QOS: 1}, false, true, false, "%.15i %9r %10y %10a %10q"},
		{api.PriorityWeights{}, true, false, false, "%.15i %9r %.8u %.10Y %.10S %.10A %.10F %.10J %.10P %.10Q %.11N %.20T"},
	}
	for _, tc := range cases {
		if got := sprioDefaultFormat(tc.w, tc.long, tc.norm, tc.users); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc, got, tc.want)
		}
	}
	if err := sortSprio(nil, "x"); err == nil || err.Error() != "Invalid sort specification: x" {
		t.Errorf("bad sort: %v", err)
	}
}

// ---- sshare ----

func fixtureShares() []api.ShareInfo {
	return []api.ShareInfo{
		{Account: "root", Depth: 0, RawShares: 1, NormShares: 1, RawUsage: 5000000.75, NormUsage: 1, EffectvUsage: 1, LevelFS: 1},
		{Account: "root", User: "root", Depth: 1, RawShares: 1, NormShares: 1.0 / 61, LevelFS: 1.7976931348623157e308, FairShare: 1},
		{Account: "chem", Depth: 1, RawShares: 20, NormShares: 20.0 / 61, RawUsage: 1000000, NormUsage: 0.2, EffectvUsage: 0.2,
			LevelFS: 1.639344},
		{Account: "chem", User: "bob", Depth: 2, RawShares: 1, NormShares: 1, RawUsage: 0, EffectvUsage: 0, LevelFS: 1.7976931348623157e308,
			FairShare: 1},
		{Account: "physics", Depth: 1, RawShares: 40, NormShares: 40.0 / 61, RawUsage: 4000000.5, NormUsage: 0.8, EffectvUsage: 0.8,
			LevelFS: 0.819672},
		{Account: "physics", User: "alice", Depth: 2, RawShares: 10, NormShares: 10.0 / 11, RawUsage: 3000000, NormUsage: 0.6,
			EffectvUsage: 0.75, LevelFS: 1.212121, FairShare: 0.5},
		{Account: "astro", Depth: 2, RawShares: 1, NormShares: 1.0 / 11, RawUsage: 1000000.5, NormUsage: 0.2, EffectvUsage: 0.25,
			LevelFS: 0.363636},
		{Account: "astro", User: "alice", Depth: 3, RawShares: 1, NormShares: 1, RawUsage: 1000000.5, NormUsage: 0.2, EffectvUsage: 1,
			LevelFS: 1, FairShare: 0.25},
	}
}

func TestSshareGolden(t *testing.T) {
	cases := []struct {
		name   string
		fields string
		f      sshareFilter
		o      mgrOutput
	}{
		{"sshare_all", sshareDefaultFields, sshareFilter{all: true}, mgrOutput{}},
		{"sshare_mine", sshareDefaultFields, sshareFilter{users: []string{"alice"}}, mgrOutput{}},
		{"sshare_long", sshareLongFields, sshareFilter{all: true}, mgrOutput{}},
		{"sshare_parsable2", sshareLongFields, sshareFilter{all: true}, mgrOutput{parsable: true}},
		{"sshare_fields", "a%12,u%-8,c,id,partition,normu%4,rawu%5", sshareFilter{all: true}, mgrOutput{noHeader: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fields, err := parseSshareFields(listVal(tc.fields))
			if err != nil {
				t.Fatal(err)
			}
			var rows []api.ShareInfo
			for _, s := range fixtureShares() {
				if tc.f.keep(&s) {
					rows = append(rows, s)
				}
			}
			golden(t, tc.name, renderSshare(fields, rows, tc.o))
		})
	}
}

func TestMgrDoubleText(t *testing.T) {
	cases := []struct {
		v     float64
		width int
		want  string
	}{
		{1, 10, "  1.000000"},
		{0.5, 13, "     0.500000"},
		{12345678.5, 11, "1.23457e+07"},
		{1.7976931348623157e308, 10, "inf"},
	}
	for _, tc := range cases {
		if got := mgrDoubleText(tc.v, tc.width); got != tc.want {
			t.Errorf("%v/%d: %q, want %q", tc.v, tc.width, got, tc.want)
		}
	}
}

// ---- reservations ----

func fixtureReservations() []api.Reservation {
	return []api.Reservation{
		{Name: "later", Accounts: []string{"physics", "chem"}, Nodes: []string{"gpu1"}, Start: ago(-24 * time.Hour), End: ago(-25 * time.Hour),
			Partition: ""},
		{Name: "maint", Users: []string{"alice", "bob"}, Nodes: []string{"node1", "node2", "node3"}, Start: ago(time.Hour),
			End: ago(-time.Hour), Partition: "batch", Flags: []string{"MAINT", "IGNORE_JOBS"}},
	}
}

func TestReservationGolden(t *testing.T) {
	c := testCtx()
	nodes := fixtureNodes()
	byName := map[string]*api.Node{}
	for i := range nodes {
		byName[nodes[i].Name] = &nodes[i]
	}
	rs := fixtureReservations()
	rs[0].End = ago(-26*time.Hour - 90*time.Second)
	golden(t, "scontrol_reservation_active", showReservation(c, &rs[1], byName))
	golden(t, "scontrol_reservation_inactive", showReservation(c, &rs[0], byName))
}

func TestReservationSpecs(t *testing.T) {
	old := fixtureReservations()[1]
	cases := []struct {
		name   string
		update bool
		args   string
		want   string // the request as JSON
		err    string
	}{
		{name: "create with duration in minutes", args: "ReservationName=r Users=alice StartTime=now Duration=90 Nodes=node[1-2]",
			want: `{"op":"create","reservation":{"name":"r","users":["alice"],"nodes":["node1","node2"],` +
				`"start_time":"2026-11-21T10:00:00Z","end_time":"2026-11-21T11:30:00Z"}}`},
		{name: "create with end time and days", args: "reservation=r accounts=physics starttime=2026-11-22 endtime=2026-11-23T12:00 nodecnt=4 partitionname=batch",
			want: `{"op":"create","reservation":{"name":"r","accounts":["physics"],"nodes":null,` +
				`"start_time":"2026-11-22T00:00:00Z","end_time":"2026-11-23T12:00:00Z","partition":"batch"},"node_count":4}`},
		{name: "end time wins over duration", args: "ReservationName=r Users=alice StartTime=now Duration=1-00:00:00 EndTime=now+2hours Nodes=node1",
			want: `{"op":"create","reservation":{"name":"r","users":["alice"],"nodes":["node1"],` +
				`"start_time":"2026-11-21T10:00:00Z","end_time":"2026-11-21T12:00:00Z"}}`},
		{name: "no start", args: "ReservationName=r Users=alice Duration=60 Nodes=node1",
			err: "A start time must be given. No reservation created."},
		{name: "no end", args: "ReservationName=r Users=alice StartTime=now Nodes=node1",
			err: "An end time or duration must be given. No reservation created."},
		{name: "no nodes", args: "ReservationName=r Users=alice StartTime=now Duration=5",
			err: "Either Nodes or NodeCnt must be specified. No reservation created."},
		{name: "ends before start", args: "ReservationName=r Users=alice StartTime=now EndTime=now-1hour Nodes=node1",
			err: "Invalid EndTime value: the reservation must end after it starts. No reservation created."},
		{name: "list ops on create", args: "ReservationName=r Users+=alice StartTime=now Duration=5 Nodes=node1",
			err: "Invalid input: += and -= only update a reservation. No reservation created."},
		{name: "bad time", args: "StartTime=whenever", err: "Invalid StartTime value: whenever"},
		{name: "bad duration", args: "Duration=soon", err: "Invalid Duration value: soon"},
		{name: "unlimited duration", args: "Duration=UNLIMITED", err: "Duration=UNLIMITED is not supported by Stockade: give a time"},
		{name: "bad node count", args: "NodeCnt=0", err: "Invalid NodeCnt value: 0"},
		{name: "bad nodes", args: "ReservationName=r Users=alice StartTime=now Duration=5 Nodes=node[1-", err: "Invalid Nodes value: "},
		{name: "unsupported key", args: "Licenses=matlab:1", err: "Licenses is not supported by Stockade"},
		{name: "unknown key", args: "Color=red", err: "Unknown parameter: Color"},
		{name: "not key=value", args: "maint", err: "Invalid input: maint (want Key=Value)"},
		{name: "update start keeps the end", update: true, args: "ReservationName=maint StartTime=now+30minutes Accounts=chem",
			want: `{"op":"update","reservation":{"name":"maint","users":["alice","bob"],"accounts":["chem"],` +
				`"nodes":["node1","node2","node3"],"start_time":"2026-11-21T10:30:00Z","end_time":"2026-11-21T11:00:00Z",` +
				`"partition":"batch","flags":["MAINT","IGNORE_JOBS"]}}`},
		{name: "update node count", update: true, args: "ReservationName=maint NodeCnt=1 Flags-=ignore_jobs",
			want: `{"op":"update","reservation":{"name":"maint","users":["alice","bob"],"nodes":null,` +
				`"start_time":"2026-11-21T09:00:00Z","end_time":"2026-11-21T11:00:00Z","partition":"batch",` +
				`"flags":["MAINT"]},"node_count":1}`},
		{name: "flags in any case", args: "ReservationName=m StartTime=now Duration=10 Users=alice Nodes=node1 Flags=maint,Ignore_Jobs",
			want: `{"op":"create","reservation":{"name":"m","users":["alice"],"nodes":["node1"],` +
				`"start_time":"2026-11-21T10:00:00Z","end_time":"2026-11-21T10:10:00Z","flags":["MAINT","IGNORE_JOBS"]}}`},
		{name: "a Slurm flag Stockade lacks", args: "ReservationName=m StartTime=now Duration=10 Users=alice Nodes=node1 Flags=MAINT,flex",
			err: "Flags=FLEX is not supported by Stockade (it takes MAINT and IGNORE_JOBS)"},
		{name: "an unknown flag", update: true, args: "ReservationName=maint Flags+=bogus",
			err: "Invalid reservation flag: bogus (Stockade takes MAINT and IGNORE_JOBS)"},
		{name: "update removes every user", update: true, args: "ReservationName=maint Users-=alice,bob",
			err: "Either Users or Accounts must be specified"},
		{name: "update ends before start", update: true, args: "ReservationName=maint StartTime=now+3hours",
			err: "Invalid EndTime value: the reservation must end after it starts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseResvSpec(strings.Fields(tc.args), fixNow, time.UTC)
			var req *api.ReservationRequest
			if err == nil {
				if tc.update {
					req, err = buildUpdate(r, old, nil)
				} else {
					req, err = buildCreate(r, nil)
				}
			}
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(req)
			if string(b) != tc.want {
				t.Errorf("request\n got %s\nwant %s", b, tc.want)
			}
		})
	}
	if got := autoResvName(&api.Reservation{Accounts: []string{"physics"}}, []api.Reservation{{Name: "physics_1"}}); got != "physics_2" {
		t.Errorf("auto name %q", got)
	}
}

// ---- squeue --start ----

// startJobs are the fixture jobs with start estimates for two pending ones.
func startJobs() []api.Job {
	jobs := fixtureJobs()
	for i := range jobs {
		switch jobs[i].ID {
		case 102:
			jobs[i].ExpectedStart = ago(-time.Hour)
		case 104:
			jobs[i].ExpectedStart = ago(-30 * time.Minute)
		case 101:
			jobs[i].ExpectedStart = ago(-5 * time.Hour) // ignored: the job runs
		}
	}
	return jobs
}

func TestSqueueStartGolden(t *testing.T) {
	c := testCtx()
	sel := &squeueSelection{states: map[api.JobState]bool{api.JobPending: true}}
	var jobs []api.Job
	for _, j := range startJobs() {
		if sel.match(&j) {
			jobs = append(jobs, j)
		}
	}
	if err := sortJobs(jobs, "S", c); err != nil {
		t.Fatal(err)
	}
	layout, bad := newSqueueLayout(squeueStartFormat)
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	golden(t, "squeue_start", layout.render(c, jobs, false))
}

func TestJobQueryStart(t *testing.T) {
	q := api.JobQuery{Start: true, States: []api.JobState{api.JobPending}}
	if got := q.Values().Encode(); got != "start=true&state=PENDING" {
		t.Errorf("query %q", got)
	}
	if v, _ := url.ParseQuery(api.JobQuery{}.Values().Encode()); v.Has("start") {
		t.Error("start sent unasked")
	}
}

// ---- sacct steps ----

func fixtureSteps() []api.JobStep {
	return []api.JobStep{
		{JobID: 101, StepID: 1, Name: "hostname", Nodes: []string{"node2"}, TaskNodes: []string{"node2"}, CPUsPerTask: 1,
			State: api.JobRunning, StartTime: ago(10 * time.Minute)},
		{JobID: 101, StepID: 0, Name: "mpi-solver-long-name", Nodes: []string{"node1", "node2"},
			TaskNodes: []string{"node1", "node1", "node2", "node2"}, CPUsPerTask: 2, State: api.JobCompleted,
			StartTime: ago(time.Hour), EndTime: ago(30 * time.Minute),
			Usage: api.Usage{CPUTimeNs: 7200e9, UserTimeNs: 7000e9, SystemTimeNs: 200e9, MaxRSSB: 2 << 30, BlockReadB: 8192, BlockWriteB: 4096}},
		{JobID: 106, StepID: 0, Name: "false", Nodes: []string{"node4"}, TaskNodes: []string{"node4"}, CPUsPerTask: 1,
			State: api.JobFailed, ExitCode: 1, StartTime: ago(19 * time.Minute), EndTime: ago(18 * time.Minute)},
		{JobID: 106, StepID: 1, Name: "sleep", Nodes: []string{"node4"}, TaskNodes: []string{"node4"}, CPUsPerTask: 1,
			State: api.JobCancelled, ExitSignal: 9, StartTime: ago(18 * time.Minute), EndTime: ago(11 * time.Minute)},
	}
}

func stepsByJob() map[uint64][]api.JobStep {
	m := map[uint64][]api.JobStep{}
	for _, s := range fixtureSteps() {
		m[s.JobID] = append(m[s.JobID], s)
	}
	return m
}

func TestSacctStepsGolden(t *testing.T) {
	cases := []struct {
		name        string
		fields      string
		allocations bool
		out         sacctOutput
	}{
		{name: "sacct_steps", fields: sacctDefaultFields},
		{name: "sacct_steps_allocations", fields: sacctDefaultFields, allocations: true},
		{name: "sacct_steps_usage", fields: "JobID,JobName%22,State,ExitCode,Start,End,Elapsed,NNodes,NTasks,NCPUS,NodeList," +
			"AllocTRES%30,TotalCPU,MaxRSS", out: sacctOutput{parsable: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fields, err := parseSacctFields(tc.fields)
			if err != nil {
				t.Fatal(err)
			}
			var jobs []api.Job
			for _, j := range fixtureJobs() {
				if j.ID == 101 || j.ID == 102 || j.ID == 106 {
					jobs = append(jobs, j)
				}
			}
			golden(t, tc.name, renderSacct(testCtx(), fields, acctRowsSteps(jobs, stepsByJob(), tc.allocations), tc.out))
		})
	}
}

func TestSacctStepsJSONGolden(t *testing.T) {
	var jobs []api.Job
	for _, j := range fixtureJobs() {
		if j.ID == 106 {
			jobs = append(jobs, j)
		}
	}
	b, err := sacctJSONSteps(testCtx(), jobs, stepsByJob(), false)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "sacct_steps_json", string(b))
}
