package server

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/scheduler"
)

func TestParseConfig(t *testing.T) {
	good := `cluster_name = "hpc"
[[partitions]]
name = "batch"
nodes = "node[1-2]"
default = true
max_time = "1-00:00:00"
default_time = "1:00:00"
max_nodes = 0
def_mem_per_cpu = "256M"
priority_tier = 1
state = "UP"
require_trust = "attested"

[[partitions]]
name = "gpu"
nodes = "gpu[01-02],node1"
max_time = 120
state = "down"

[[partitions]]
name = "all"
nodes = "ALL"
`
	c, err := ParseConfig([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClusterName != "hpc" || len(c.Partitions) != 3 {
		t.Fatalf("config %+v", c)
	}
	b := c.Partitions[0]
	want := api.Partition{Name: "batch", Nodes: []string{"node1", "node2"}, Default: true, Up: true,
		MaxTimeSec: 86400, DefaultTimeSec: 3600, DefMemPerCPUMB: 256, PriorityTier: 1, RequireTrust: api.TrustAttested}
	if b.RequireTrust != want.RequireTrust {
		t.Errorf("batch require_trust = %q", b.RequireTrust)
	}
	if b.Name != want.Name || !slices.Equal(b.Nodes, want.Nodes) || b.Default != want.Default || b.Up != want.Up ||
		b.MaxTimeSec != want.MaxTimeSec || b.DefaultTimeSec != want.DefaultTimeSec ||
		b.DefMemPerCPUMB != want.DefMemPerCPUMB || b.PriorityTier != want.PriorityTier {
		t.Errorf("batch = %+v, want %+v", b.Partition, want)
	}
	g := c.Partitions[1]
	if g.Up || g.MaxTimeSec != 7200 || !slices.Equal(g.Nodes, []string{"gpu01", "gpu02", "node1"}) {
		t.Errorf("gpu = %+v", g.Partition)
	}
	if !c.Partitions[2].AllNodes {
		t.Error("ALL not recognised")
	}

	parts, nodes := c.desired([]*api.Node{{Name: "node1"}, {Name: "node9"}})
	if len(parts) != 3 || parts[0].Name != "all" || !slices.Equal(parts[0].Nodes, []string{"node1", "node9"}) {
		t.Errorf("desired partitions %+v", parts)
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
		if n.State != api.NodeUnknown {
			t.Errorf("configured node %s in state %s", n.Name, n.State)
		}
	}
	if !slices.Equal(names, []string{"gpu01", "gpu02", "node1", "node2"}) {
		t.Errorf("configured nodes %v", names)
	}
	have := make([]*api.Partition, len(parts))
	for i := range parts {
		p := parts[i]
		have[i] = &p
	}
	if !partitionsEqual(parts, have) {
		t.Error("partitionsEqual(x, x) = false")
	}
	have[1] = &api.Partition{Name: have[1].Name}
	if partitionsEqual(parts, have) {
		t.Error("partitionsEqual ignores a changed partition")
	}
}

func TestParseConfigErrors(t *testing.T) {
	part := func(body string) string { return "[[partitions]]\nname = \"p\"\nnodes = \"n1\"\n" + body }
	tests := []struct {
		name string
		text string
		want string
	}{
		{"bad toml", "cluster_name = ", "toml"},
		{"unknown top key", "clusters = 1", "clusters: unknown key"},
		{"unknown partition key", part("colour = \"red\""), "partitions[0].colour: unknown key"},
		{"bad max_time", part(`max_time = "x"`), `partitions[0].max_time: invalid time "x"`},
		{"bad default_time", part(`default_time = "1:xx"`), `partitions[0].default_time: invalid time "1:xx"`},
		{"negative minutes", part(`max_time = -5`), "partitions[0].max_time: invalid time -5"},
		{"default above max", part("max_time = \"1:00:00\"\ndefault_time = \"2:00:00\""), "partitions[0].default_time: exceeds max_time"},
		{"bad mem", part(`def_mem_per_cpu = "lots"`), `partitions[0].def_mem_per_cpu: invalid size "lots"`},
		{"bad state", part(`state = "MAYBE"`), `partitions[0].state: want UP or DOWN, got "MAYBE"`},
		{"bad tier", part(`priority_tier = -1`), "partitions[0].priority_tier"},
		{"bad trust", part(`require_trust = "trusted"`), "partitions[0].require_trust"},
		{"bad max_nodes", part(`max_nodes = "two"`), "partitions[0].max_nodes"},
		{"bad default", part(`default = "yes"`), "partitions[0].default"},
		{"no name", "[[partitions]]\nnodes = \"n1\"", "partitions[0].name: required"},
		{"bad name", "[[partitions]]\nname = \"a b\"\nnodes = \"n1\"", "partitions[0].name: invalid partition name"},
		{"no nodes", "[[partitions]]\nname = \"p\"", "partitions[0].nodes: required"},
		{"bad hostlist", "[[partitions]]\nname = \"p\"\nnodes = \"n[3-1]\"", "partitions[0].nodes: invalid host list"},
		{"nodes not string", "[[partitions]]\nname = \"p\"\nnodes = 5", "partitions[0].nodes"},
		{"duplicate", part("") + "\n" + part(""), `partitions[1].name: duplicate partition "p"`},
		{"two defaults", part("default = true") + "\n[[partitions]]\nname = \"q\"\nnodes = \"n2\"\ndefault = true",
			`partitions[1].default: partition "p" is already the default`},
		{"bad cluster name", `cluster_name = "a/b"`, "cluster_name: invalid name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.text))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.text)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	parts, nodes := c.desired([]*api.Node{{Name: "a"}, {Name: "b"}})
	if len(parts) != 1 || !parts[0].Default || !parts[0].Up || !slices.Equal(parts[0].Nodes, []string{"a", "b"}) || len(nodes) != 0 {
		t.Errorf("default config: %+v %+v", parts, nodes)
	}
	parts, _ = c.desired(nil)
	if parts[0].Nodes == nil {
		t.Error("empty ALL partition has nil nodes")
	}
}

func TestParseJobRefs(t *testing.T) {
	tests := []struct {
		in    []string
		want  []jobRef
		isErr bool
	}{
		{in: []string{"12"}, want: []jobRef{{id: 12}}},
		{in: []string{"12,13_4"}, want: []jobRef{{id: 12}, {id: 13, tasks: []int{4}}}},
		{in: []string{"13_[1-3,7]", "14"}, want: []jobRef{{id: 13, tasks: []int{1, 2, 3, 7}}, {id: 14}}},
		{in: []string{"0"}, isErr: true},
		{in: []string{"x"}, isErr: true},
		{in: []string{"12_"}, isErr: true},
		{in: []string{"12_[5-1]"}, isErr: true},
		{in: []string{"-3"}, isErr: true},
	}
	for _, tc := range tests {
		got, err := parseJobRefs(tc.in)
		if (err != nil) != tc.isErr {
			t.Errorf("%v: err %v", tc.in, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("%v: got %v", tc.in, got)
			continue
		}
		for i := range got {
			if got[i].id != tc.want[i].id || !slices.Equal(got[i].tasks, tc.want[i].tasks) {
				t.Errorf("%v: got %+v, want %+v", tc.in, got[i], tc.want[i])
			}
		}
	}
}

func TestParseDependencies(t *testing.T) {
	tests := []struct {
		in      string
		want    []api.Dependency
		wantErr string
	}{
		{in: "afterok:12", want: []api.Dependency{{Type: "afterok", JobID: 12, ArrayTask: -1}}},
		{in: "afterany:12:13_2,singleton", want: []api.Dependency{
			{Type: "afterany", JobID: 12, ArrayTask: -1}, {Type: "afterany", JobID: 13, ArrayTask: 2}, {Type: "singleton", ArrayTask: -1}}},
		{in: "AfterNotOK:7", want: []api.Dependency{{Type: "afternotok", JobID: 7, ArrayTask: -1}}},
		{in: "afterok:1?afterok:2", wantErr: "any of"},
		{in: "aftercorr:5", wantErr: "aftercorr"},
		{in: "afterok", wantErr: "needs a job id"},
		{in: "afterok:x", wantErr: "x"},
		{in: "after:5+10", wantErr: "+time"},
		{in: "singleton:3", wantErr: "singleton"},
		{in: ",", wantErr: "empty"},
	}
	for _, tc := range tests {
		got, err := parseDependencies(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseStates(t *testing.T) {
	got, err := parseStates([]string{"pd", "RUNNING", "CA"})
	if err != nil || len(got) != 3 || !got[api.JobPending] || !got[api.JobRunning] || !got[api.JobCancelled] {
		t.Errorf("parseStates: %v %v", got, err)
	}
	if _, err := parseStates([]string{"SLEEPING"}); err == nil {
		t.Error("accepted an unknown state")
	}
	if got, _ := parseStates(nil); got != nil {
		t.Error("no states should mean no filter")
	}
}

func TestJobFilter(t *testing.T) {
	now := time.Now()
	alice := &api.User{Name: "alice"}
	root := &api.User{Name: "root", Admin: true}
	job := func(user string, st api.JobState, ended time.Duration) *api.Job {
		j := &api.Job{User: user, State: st, SubmitTime: now.Add(-time.Hour), Spec: api.JobSpec{Name: "n", Partition: "batch"}}
		if st.Terminal() {
			j.EndTime = now.Add(-ended)
		}
		return j
	}
	tests := []struct {
		name string
		f    jobFilter
		j    *api.Job
		want bool
	}{
		{"own pending", jobFilter{self: alice}, job("alice", api.JobPending, 0), true},
		{"other's job", jobFilter{self: alice}, job("bob", api.JobPending, 0), false},
		{"admin sees other's", jobFilter{self: root}, job("bob", api.JobPending, 0), true},
		{"recently ended", jobFilter{self: alice}, job("alice", api.JobCompleted, time.Minute), true},
		{"ended long ago", jobFilter{self: alice}, job("alice", api.JobCompleted, time.Hour), false},
		{"ended long ago, all", jobFilter{self: alice, allEnded: true}, job("alice", api.JobFailed, time.Hour), true},
		{"state filter", jobFilter{self: alice, states: map[api.JobState]bool{api.JobRunning: true}}, job("alice", api.JobPending, 0), false},
		{"partition filter", jobFilter{self: alice, partitions: []string{"gpu"}}, job("alice", api.JobPending, 0), false},
		{"name filter", jobFilter{self: alice, names: []string{"n"}}, job("alice", api.JobPending, 0), true},
		{"user filter", jobFilter{self: root, users: []string{"alice"}}, job("bob", api.JobPending, 0), false},
		{"submitted after until", jobFilter{self: alice, until: now.Add(-2 * time.Hour), allEnded: true}, job("alice", api.JobPending, 0), false},
		{"ended before since", jobFilter{self: alice, since: now.Add(-time.Minute), allEnded: true}, job("alice", api.JobCompleted, 30*time.Minute), false},
		{"running across since", jobFilter{self: alice, since: now.Add(-time.Minute), allEnded: true}, job("alice", api.JobRunning, 0), true},
	}
	for _, tc := range tests {
		tc.f.now = now
		if got := tc.f.match(tc.j); got != tc.want {
			t.Errorf("%s: match = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestCommandFlags(t *testing.T) {
	cmd := NewCommand()
	tests := []struct{ flag, def string }{
		{"data-dir", "/var/lib/stockade/server"},
		{"id", ""},
		{"listen", "127.0.0.1:7701"},
		{"raft", "127.0.0.1:7702"},
		{"advertise", ""},
		{"raft-advertise", ""},
		{"bootstrap", "false"},
		{"join", ""},
		{"join-token", ""},
		{"join-token-file", ""},
		{"config", ""},
		{"node-timeout", "10s"},
		{"tls-san", "[]"},
		{"log-level", "info"},
		{"dev-chain", "auto"},
	}
	for _, tc := range tests {
		f := cmd.Flags().Lookup(tc.flag)
		if f == nil {
			t.Errorf("--%s missing", tc.flag)
			continue
		}
		if f.DefValue != tc.def {
			t.Errorf("--%s default %q, want %q", tc.flag, f.DefValue, tc.def)
		}
	}
}

func TestParseConfigPolicy(t *testing.T) {
	text := `
[[partitions]]
name = "batch"
nodes = "n1"
allow_accounts = ["physics", "chem", "physics"]
allow_qos = "normal, high"
exclusive_nodes = true

[scheduler]
policy = "fifo"
decay_half_life_sec = 3600
gpu_weight = 2.5
default_qos = "standard"
[scheduler.weights]
fairshare = 5

[[qos]]
name = "high"
description = "deadlines"
priority = 100
max_jobs_per_user = 10
max_submit_jobs_per_user = 20
max_tres_per_user = "cpu=64, node=4, gres/gpu=8, mem=2G"
max_tres_per_account = "cpu=256"
max_wall = "2-00:00:00"
preempt = ["low", "standard"]
preempt_mode = "REQUEUE"
grace_time = "0:02:00"
usage_factor = 2

[[qos]]
name = "low"
preempt_mode = "off"
grace_time = 30
usage_factor = 0.5
`
	c, err := ParseConfig([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Partitions[0]
	if !slices.Equal(p.AllowAccounts, []string{"physics", "chem"}) || !slices.Equal(p.AllowQOS, []string{"normal", "high"}) || !p.ExclusiveNodes {
		t.Errorf("partition %+v", p.Partition)
	}
	want := api.DefaultSchedConfig()
	want.Policy, want.DecayHalfLifeSec, want.GPUWeight, want.DefaultQOS = "fifo", 3600, 2.5, "standard"
	want.Weights.FairShare = 5
	if c.Scheduler != want {
		t.Errorf("scheduler %+v, want %+v (unset keys keep the defaults)", c.Scheduler, want)
	}
	wantQOS := []api.QOS{
		{Name: "high", Description: "deadlines", Priority: 100, MaxJobsPerUser: 10, MaxSubmitJobsPerUser: 20,
			MaxTRESPerUser: api.TRES{CPUs: 64, Nodes: 4, GPUs: 8, MemoryMB: 2048}, MaxTRESPerAccount: api.TRES{CPUs: 256},
			MaxWallSec: 2 * 86400, Preempt: []string{"low", "standard"}, PreemptMode: api.PreemptRequeue, GraceTimeSec: 120, UsageFactor: 2},
		{Name: "low", GraceTimeSec: 30, UsageFactor: 0.5},
	}
	if len(c.QOS) != 2 || !qosEqual(&c.QOS[0], &wantQOS[0]) || !qosEqual(&c.QOS[1], &wantQOS[1]) {
		t.Errorf("qos\n got %+v\nwant %+v", c.QOS, wantQOS)
	}

	// The new partition keys take part in the comparison with the state.
	parts, _ := c.desired(nil)
	changed := parts[0]
	changed.AllowQOS = []string{"normal"}
	if partitionsEqual(parts, []*api.Partition{&changed}) {
		t.Error("partitionsEqual ignores allow_qos")
	}
	if d := DefaultConfig(); d.Scheduler != api.DefaultSchedConfig() || len(d.QOS) != 0 {
		t.Errorf("default config %+v", d)
	}
}

func TestParseConfigPolicyErrors(t *testing.T) {
	part := "[[partitions]]\nname = \"p\"\nnodes = \"n1\"\n"
	qos := func(body string) string { return "[[qos]]\nname = \"q\"\n" + body }
	tests := []struct {
		name string
		text string
		want string
	}{
		{"bad allow_accounts", part + `allow_accounts = 5`, "partitions[0].allow_accounts"},
		{"bad allow_qos name", part + `allow_qos = ["a b"]`, `partitions[0].allow_qos: invalid name "a b"`},
		{"bad exclusive_nodes", part + `exclusive_nodes = "yes"`, "partitions[0].exclusive_nodes"},
		{"unknown scheduler key", "[scheduler]\ncolour = 1", "scheduler.colour: unknown key"},
		{"unknown weight", "[scheduler.weights]\nnice = 1", "scheduler.weights.nice: unknown key"},
		{"bad policy", "[scheduler]\npolicy = \"lottery\"", "scheduler.policy"},
		{"bad resv_over_run", "[scheduler]\nresv_over_run = \"soon\"", `scheduler.resv_over_run: invalid time "soon" (a time or "UNLIMITED")`},
		{"negative resv_over_run", "[scheduler]\nresv_over_run = -5", "scheduler.resv_over_run: invalid time -5"},
		{"negative weight", "[scheduler.weights]\nqos = -1", "scheduler.weights.qos"},
		{"wrong type", "[scheduler]\nbackfill_depth = \"deep\"", "scheduler"},
		{"qos without name", "[[qos]]\npriority = 1", "qos[0].name: required"},
		{"bad qos name", "[[qos]]\nname = \"a/b\"", "qos[0].name"},
		{"duplicate qos", qos("") + "\n" + qos(""), `qos[1].name: duplicate qos "q"`},
		{"unknown qos key", qos("colour = 1"), "qos[0].colour: unknown key"},
		{"negative priority", qos("priority = -1"), "qos[0].priority"},
		{"bad tres", qos(`max_tres_per_user = "cpu=x"`), "qos[0].max_tres_per_user"},
		{"unknown tres", qos(`max_tres_per_user = "licenses=3"`), `qos[0].max_tres_per_user: unknown resource "licenses"`},
		{"bad wall", qos(`max_wall = "soon"`), "qos[0].max_wall"},
		{"bad preempt mode", qos(`preempt_mode = "suspend"`), "qos[0].preempt_mode"},
		{"preempt unknown", qos(`preempt = ["gold"]`), `qos[0].preempt: qos "gold" is not defined in this file`},
		{"preempt itself", qos(`preempt = "q"`), "qos[0].preempt: qos q cannot preempt itself"},
		{"bad usage factor", qos(`usage_factor = "lots"`), "qos[0].usage_factor"},
		{"negative usage factor", qos(`usage_factor = -1.0`), "qos[0].usage_factor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.text))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.text)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
		})
	}
}

func TestParseConfigAccounting(t *testing.T) {
	c, err := ParseConfig([]byte(`
[accounting]
interval = "90s"
max_records = 500
[accounting.prices]
currency = "EUR"
cpu_hour = 20000
[accounting.prices.split]
node_operator = 6000
cluster_operator = 3000
image_publisher = 500
charity = 500
[accounting.beneficiaries]
cluster_operator = "op:hpc"
charity = "charity:wikimedia"
node_operators = { gpu1 = "op:alice", "node[2]" = "op:bob" }
image_publishers = { "ghcr.io/acme/" = "pub:acme" }
`))
	if err != nil {
		t.Fatal(err)
	}
	ac := c.Accounting
	want := accounting.PriceTable{Version: 1, Currency: "EUR", CPUHour: 20000, MemGBHour: 100_000, GPUHour: 20_000_000,
		Split: accounting.Split{NodeOperator: 6000, ClusterOperator: 3000, ImagePublisher: 500, Charity: 500}}
	if ac.Interval != 90*time.Second || ac.MaxRecords != 500 || ac.Prices == nil || *ac.Prices != want {
		t.Errorf("accounting %+v prices %+v", ac, ac.Prices)
	}
	if b := ac.Beneficiaries; b == nil || b.ClusterOperator != "op:hpc" || b.Charity != "charity:wikimedia" ||
		b.NodeOperators["node[2]"] != "op:bob" || b.ImagePublishers["ghcr.io/acme/"] != "pub:acme" {
		t.Errorf("beneficiaries %+v", ac.Beneficiaries)
	}

	// Defaults: sealing every 10 minutes or 10000 records, prices left to
	// the state (nil).
	for _, text := range []string{"", "[accounting]\n"} {
		c, err := ParseConfig([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if a := c.Accounting; a.Interval != 10*time.Minute || a.MaxRecords != 10000 || a.Prices != nil || a.Beneficiaries != nil {
			t.Errorf("%q: accounting %+v", text, a)
		}
	}
	if a := DefaultConfig().Accounting; a.Interval != 10*time.Minute || a.MaxRecords != 10000 {
		t.Errorf("default config accounting %+v", a)
	}
	// An unset split keeps the default one.
	c, err = ParseConfig([]byte("[accounting.prices]\ngpu_hour = 5\n"))
	if err != nil || c.Accounting.Prices.GPUHour != 5 || c.Accounting.Prices.Split != accounting.DefaultPriceSet().Prices.Split {
		t.Errorf("partial prices %+v %v", c.Accounting.Prices, err)
	}
}

func TestParseConfigAccountingErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"[accounting]\ninterval = \"soon\"", "accounting.interval:"},
		{"[accounting]\ninterval = \"10ms\"", "accounting.interval:"},
		{"[accounting]\nmax_records = 0", "accounting.max_records:"},
		{"[accounting]\nmax_records = 2000000", "accounting.max_records:"},
		{"[accounting]\nbogus = 1", "accounting.bogus: unknown key"},
		{"[accounting.prices]\ncpu_hour = -1", "accounting.prices.cpu_hour: negative"},
		{"[accounting.prices]\ncurrency = \"\"", "accounting.prices.currency: empty"},
		{"[accounting.prices]\nbogus = 1", "accounting.prices.bogus: unknown key"},
		{"[accounting.prices.split]\ncharity = 100", "accounting.prices.split: basis points sum to 10100"},
		{"[accounting.prices.split]\ncharity = -1", "accounting.prices.split.charity:"},
		{"[accounting.prices]\ncpu_hour = \"1\"", "accounting:"},
		{"[accounting.beneficiaries]\ncluster_operator = \"\"", "accounting.beneficiaries: cluster_operator: empty"},
		{"[accounting.beneficiaries]\nnode_operators = { n1 = \"\" }", "accounting.beneficiaries.node_operators:"},
	}
	for _, tc := range tests {
		_, err := ParseConfig([]byte(tc.text))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%q: error %v, want %q...", tc.text, err, tc.want)
		}
	}
}

func TestParseConfigChain(t *testing.T) {
	tests := []struct {
		text string
		want ChainConfig
	}{
		// No section, or an empty one: the embedded dev chain.
		{"", ChainConfig{Dev: true}},
		{"[chain]\n", ChainConfig{Dev: true}},
		{"[chain]\ndev_http = \"127.0.0.1:7745\"\ndev_period = \"2s\"\n", ChainConfig{Dev: true, DevHTTP: "127.0.0.1:7745", DevPeriod: 2 * time.Second}},
		{"[chain]\ndev = true\ndev_http = \"localhost:0\"\ndev_period = 3\n", ChainConfig{Dev: true, DevHTTP: "localhost:0", DevPeriod: 3 * time.Second}},
		// No chain at all: epochs are sealed, never anchored.
		{"[chain]\ndev = false\n", ChainConfig{}},
		// An external chain: dev is off unless said, and then an error.
		{`[chain]
rpc_url = "https://rpc.example.org:8545/v1"
chain_id = 11155111
contract = "0x00000000000000000000000000000000000000aA"
key_file = "/etc/stockade/anchor.key"
`, ChainConfig{RPCURL: "https://rpc.example.org:8545/v1", ChainID: 11155111, Contract: "0x00000000000000000000000000000000000000aA",
			KeyFile: "/etc/stockade/anchor.key"}},
		{"[chain]\nrpc_url = \"ws://10.0.0.5:8546\"\ndev = false\n", ChainConfig{RPCURL: "ws://10.0.0.5:8546"}},
	}
	for _, tc := range tests {
		c, err := ParseConfig([]byte(tc.text))
		if err != nil {
			t.Errorf("%q: %v", tc.text, err)
			continue
		}
		if c.Chain != tc.want {
			t.Errorf("%q: chain %+v, want %+v", tc.text, c.Chain, tc.want)
		}
	}
	if d := DefaultConfig().Chain; d != (ChainConfig{Dev: true}) {
		t.Errorf("default config chain %+v", d)
	}
}

func TestParseConfigChainErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"[chain]\nrpc_url = \"node:8545\"", "chain.rpc_url:"},
		{"[chain]\nrpc_url = \"ftp://node:8545\"", "chain.rpc_url: scheme"},
		{"[chain]\nrpc_url = \"http://n:1\"\ncontract = \"0x12\"", "chain.contract:"},
		{"[chain]\nrpc_url = \"http://n:1\"\nchain_id = -1", "chain.chain_id:"},
		{"[chain]\nrpc_url = \"http://n:1\"\ndev = true", "chain.dev: true with rpc_url"},
		{"[chain]\nrpc_url = \"http://n:1\"\ndev_http = \"127.0.0.1:1\"", "chain.dev_http:"},
		{"[chain]\ncontract = \"0x00000000000000000000000000000000000000aa\"", "chain.contract: only with rpc_url"},
		{"[chain]\nkey_file = \"/k\"", "chain.key_file: only with rpc_url"},
		{"[chain]\nchain_id = 5", "chain.chain_id: only with rpc_url"},
		{"[chain]\ndev = false\ndev_period = \"1s\"", "chain.dev_http:"},
		{"[chain]\ndev_http = \"8545\"", "chain.dev_http:"},
		{"[chain]\ndev_http = \"node1:8545\"", "chain.dev_http:"},
		{"[chain]\ndev_http = \"127.0.0.1:99999\"", "chain.dev_http:"},
		{"[chain]\ndev_period = \"1.5s\"", "chain.dev_period:"},
		{"[chain]\ndev_period = \"-1s\"", "chain.dev_period:"},
		{"[chain]\ndev_period = 7200", "chain.dev_period:"},
		{"[chain]\ndev_period = true", "chain.dev_period:"},
		{"[chain]\ndev = \"yes\"", "chain:"},
		{"[chain]\nrpc = \"http://n:1\"", "chain.rpc: unknown key"},
	}
	for _, tc := range tests {
		_, err := ParseConfig([]byte(tc.text))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%q: error %v, want %q...", tc.text, err, tc.want)
		}
	}
}

// TestParseConfigResvOverRun: [scheduler] resv_over_run is slurm.conf's
// ResvOverRun (minutes when an integer) or UNLIMITED.
func TestParseConfigResvOverRun(t *testing.T) {
	for _, tc := range []struct {
		text string
		want time.Duration
	}{
		{"[scheduler]\npolicy = \"fifo\"", 0},
		{"[scheduler]\nresv_over_run = 5", 5 * time.Minute},
		{"[scheduler]\nresv_over_run = \"0:30\"", 30 * time.Second},
		{"[scheduler]\nresv_over_run = \"unlimited\"", scheduler.OverRunUnlimited},
		{"[scheduler]\nresv_over_run = 0\n[scheduler.weights]\nqos = 1", 0},
	} {
		c, err := ParseConfig([]byte(tc.text))
		if err != nil {
			t.Errorf("%q: %v", tc.text, err)
			continue
		}
		if c.ResvOverRun != tc.want {
			t.Errorf("%q: %v, want %v", tc.text, c.ResvOverRun, tc.want)
		}
	}
}
