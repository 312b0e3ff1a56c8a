package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

func TestSqueueGolden(t *testing.T) {
	cases := []struct {
		name     string
		format   string
		noHeader bool
		states   []string // nil: pending and running
		sort     string
	}{
		{name: "squeue_default", format: squeueDefaultFormat},
		{name: "squeue_long", format: squeueLongFormat},
		{name: "squeue_noheader", format: squeueDefaultFormat, noHeader: true},
		{name: "squeue_all_states", format: "%.10i %.3t %.12T %10r %R", states: []string{"all"}},
		{name: "squeue_custom", format: "id=%i %A %F %K %j %u %U %g %G %a %P %q %Q %D %C %c %m %l %L %M %S %V %e %N %b %f %E %k %Z %o %y %h", sort: "i"},
		{name: "squeue_widths", format: "%5i|%.5i|%3j|%.3j|%20N|%.20R|%2M|", sort: "-i"},
		{name: "squeue_prefix_suffix", format: "JOB:%i STATE:%t (%r)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testCtx()
			states, err := parseJobStates(tc.states)
			if err != nil {
				t.Fatal(err)
			}
			sel := &squeueSelection{states: states}
			var jobs []api.Job
			for _, j := range fixtureJobs() {
				if sel.match(&j) {
					jobs = append(jobs, j)
				}
			}
			sortBy := tc.sort
			if sortBy == "" {
				sortBy = squeueDefaultSort
			}
			if err := sortJobs(jobs, sortBy, c); err != nil {
				t.Fatal(err)
			}
			layout, bad := newSqueueLayout(tc.format)
			if len(bad) > 0 {
				t.Fatalf("bad codes: %v", bad)
			}
			golden(t, tc.name, layout.render(c, jobs, tc.noHeader))
		})
	}
}

func TestSqueueJSONGolden(t *testing.T) {
	jobs := fixtureJobs()[:4]
	b, err := squeueJSON(testCtx(), jobs)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "squeue_json", string(b))
}

func TestSqueueLongFormatNames(t *testing.T) {
	cases := []struct {
		spec, want, err string
	}{
		{spec: "JobID,Name:.20,State", want: "%20A%.20j%20T"},
		{spec: "jobarrayid:10,reasonlist", want: "%10i%20R"},
		{spec: "username:,timeused:.8", want: "%20u%.8M"},
		{spec: "bogus", err: "Invalid job format specification: bogus"},
		{spec: "name:x", err: "Invalid job format specification: name:x"},
	}
	for _, tc := range cases {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := squeueLongFormatToShort(tc.spec)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
}

func TestSinfoGolden(t *testing.T) {
	cases := []struct {
		name   string
		view   sinfoView
		filter sinfoFilter
	}{
		{name: "sinfo_default", view: sinfoView{format: sinfoDefaultFormat, showEmpty: true}},
		{name: "sinfo_long", view: sinfoView{format: sinfoLongFormat, showEmpty: true, dateLine: fixNow}},
		{name: "sinfo_node", view: sinfoView{format: sinfoNodeFormat, nodeOriented: true}},
		{name: "sinfo_node_long", view: sinfoView{format: sinfoNodeLongFormat, nodeOriented: true, dateLine: fixNow}},
		{name: "sinfo_summarize", view: sinfoView{format: sinfoSummarizeFormat, showEmpty: true}},
		{name: "sinfo_reasons", view: sinfoView{format: sinfoReasonsFormat},
			filter: sinfoFilter{states: map[string]bool{"down": true, "drain": true, "drng": true}}},
		{name: "sinfo_custom", view: sinfoView{format: "%R %P %a %l %L %D %t %T %c %m %G %f %E %F %C %A %s %N", showEmpty: true}},
		{name: "sinfo_node_state_only", view: sinfoView{format: "%t", nodeOriented: true, noHeader: true},
			filter: sinfoFilter{nodes: map[string]bool{"node1": true}}},
		{name: "sinfo_partition_filter", view: sinfoView{format: sinfoDefaultFormat},
			filter: sinfoFilter{partitions: []string{"small", "gpu-long-name"}}},
		{name: "sinfo_state_filter", view: sinfoView{format: sinfoDefaultFormat},
			filter: sinfoFilter{states: map[string]bool{"idle": true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.view.loc = time.UTC
			out, bad := renderSinfo(tc.view, &tc.filter, fixtureNodes(), fixturePartitions())
			if len(bad) > 0 {
				t.Fatalf("bad codes: %v", bad)
			}
			golden(t, tc.name, out)
		})
	}
}

func TestSinfoJSONGolden(t *testing.T) {
	b, err := sinfoJSON(fixtureNodes()[:2], fixturePartitions()[:2])
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "sinfo_json", string(b))
}

func TestSacctGolden(t *testing.T) {
	cases := []struct {
		name        string
		fields      string
		allocations bool
		out         sacctOutput
	}{
		{name: "sacct_default", fields: sacctDefaultFields},
		{name: "sacct_allocations", fields: sacctDefaultFields, allocations: true},
		{name: "sacct_parsable2", fields: "JobID,JobName,State,ExitCode,Elapsed", out: sacctOutput{parsable: true}},
		{name: "sacct_parsable", fields: "JobID,State,ExitCode", out: sacctOutput{parsable: true, trailing: true}, allocations: true},
		{name: "sacct_noheader", fields: "jobid,state", out: sacctOutput{noHeader: true}, allocations: true},
		{name: "sacct_usage", fields: "JobID,JobIDRaw,User,Group,Elapsed,ElapsedRaw,TotalCPU,UserCPU,SystemCPU,CPUTime,CPUTimeRAW,MaxRSS,AveRSS,MaxDiskRead,MaxDiskWrite,AveCPU,NNodes,NCPUS,NTasks,NodeList"},
		{name: "sacct_times", fields: "JobID,Submit,Start,End,Eligible,Timelimit,TimelimitRaw,Planned,Suspended,State"},
		{name: "sacct_requests", fields: "JobID,ReqCPUS,ReqMem,ReqNodes,ReqTRES%40,AllocTRES%45,AllocNodes,Partition,Account,QOS,Priority,Reason,WorkDir,Comment,Constraints,UID,GID"},
		{name: "sacct_widths", fields: "jobid%20,jobname%-20,state%5,exitcode%3,maxrss%-12,consumedenergy", allocations: false},
		{name: "sacct_tres_usage", fields: "JobID,TRESUsageInMax%40,TRESUsageOutMax%20,TRESUsageInTot%40", out: sacctOutput{parsable: true}},
		{name: "sacct_delimiter", fields: "JobID,State", out: sacctOutput{parsable: true, delimiter: ","}, allocations: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fields, err := parseSacctFields(tc.fields)
			if err != nil {
				t.Fatal(err)
			}
			jobs := fixtureJobs()
			sortAcct(jobs)
			golden(t, tc.name, renderSacct(testCtx(), fields, acctRows(jobs, tc.allocations), tc.out))
		})
	}
}

func TestSacctJSONGolden(t *testing.T) {
	jobs := fixtureJobs()
	b, err := sacctJSON(testCtx(), []api.Job{jobs[1], jobs[5], jobs[7]}, false)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "sacct_json", string(b))
}

func TestSacctFieldErrors(t *testing.T) {
	cases := []struct{ spec, err string }{
		{"JobID,Bogus", `Invalid field requested: "Bogus"`},
		{"State%x", `Invalid field requested: "State%x"`},
		{",,", "no fields requested"},
	}
	for _, tc := range cases {
		if _, err := parseSacctFields(tc.spec); err == nil || err.Error() != tc.err {
			t.Errorf("%q: err %v, want %q", tc.spec, err, tc.err)
		}
	}
}

func TestSacctHelpFormat(t *testing.T) {
	out := sacctHelpFormat()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "Account              AdminComment") {
		t.Errorf("first line %q", lines[0])
	}
	if want := (len(sacctFields) + 3) / 4; len(lines) != want {
		t.Errorf("%d lines, want %d", len(lines), want)
	}
}

func TestScontrolGolden(t *testing.T) {
	c := testCtx()
	jobs := fixtureJobs()
	nodes := fixtureNodes()
	parts := fixturePartitions()
	byName := map[string]*api.Node{}
	for i := range nodes {
		byName[nodes[i].Name] = &nodes[i]
	}
	np := nodePartitions(parts)
	cases := []struct {
		name string
		out  string
	}{
		{"scontrol_job_running", showJob(c, &jobs[0])},
		{"scontrol_job_pending", showJob(c, &jobs[1])},
		{"scontrol_job_array_task", showJob(c, &jobs[2])},
		{"scontrol_job_held", showJob(c, &jobs[4])},
		{"scontrol_job_completed", showJob(c, &jobs[5])},
		{"scontrol_job_unlimited_gpu", showJob(c, &jobs[10])},
		{"scontrol_job_oneliner", oneLiner(showJob(c, &jobs[6]))},
		{"scontrol_node_mixed", showNode(c, &nodes[0], np["node1"])},
		{"scontrol_node_drain", showNode(c, &nodes[4], np["node5"])},
		{"scontrol_node_draining", showNode(c, &nodes[5], np["node6"])},
		{"scontrol_node_unknown", showNode(c, &nodes[7], np["node8"])},
		{"scontrol_node_gpu", showNode(c, &nodes[8], np["gpu1"])},
		{"scontrol_partition_default", showPartition(&parts[0], byName)},
		{"scontrol_partition_small", showPartition(&parts[1], byName)},
		{"scontrol_partition_empty", showPartition(&parts[3], byName)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, tc.out) })
	}
}

func TestStatusGolden(t *testing.T) {
	cases := []struct {
		name string
		st   api.Status
	}{
		{"status_healthy", api.Status{
			Leader: "c1", ServedBy: "c2", RaftIndex: 1234, CommitIndex: 1235, LastContactMs: 12,
			Controllers: []api.Controller{
				{ID: "c2", APIAddr: "10.0.0.2:7701", RaftAddr: "10.0.0.2:7702", Voter: true},
				{ID: "c1", APIAddr: "10.0.0.1:7701", RaftAddr: "10.0.0.1:7702", Voter: true, Leader: true},
				{ID: "c3", APIAddr: "10.0.0.3:7701", RaftAddr: "10.0.0.3:7702"},
			},
			NodesByState: map[string]int{"idle": 3, "down": 1, "mix": 2, "weird": 1},
			JobsByState:  map[string]int{"RUNNING": 2, "PENDING": 4, "COMPLETED": 10},
			QueueDepth:   4,
		}},
		{"status_no_leader", api.Status{ServedBy: "c1", Controllers: []api.Controller{{ID: "c1", APIAddr: "a:1", RaftAddr: "a:2", Voter: true}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { golden(t, tc.name, formatStatus(&tc.st)) })
	}
}

func TestUsersGolden(t *testing.T) {
	users := []api.User{
		{Name: "zed", UID: 1600, GID: 1600, DefaultAccount: "physics", Accounts: []string{"physics", "chem"}},
		{Name: "admin", UID: 0, GID: 0, DefaultAccount: "root", Accounts: []string{"root"}, Admin: true},
	}
	golden(t, "user_list", formatUsers(users))
	golden(t, "user_added", formatUserAdded(&api.UserAddResponse{User: users[0], Token: "stk_secret"}))
}
