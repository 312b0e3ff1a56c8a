package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/stockade-hpc/stockade/api"
)

// fakeAPI serves the user routes from fixtures and records requests.
type fakeAPI struct {
	mu   sync.Mutex
	reqs []recorded
	// failures maps "METHOD path" to an HTTP error to answer.
	failures map[string]api.HTTPError
}

type recorded struct {
	method, path string
	query        url.Values
	body         string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.URL.Query(), string(body)})
	fail, failing := f.failures[r.Method+" "+r.URL.Path]
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer tok" {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if failing {
		w.WriteHeader(fail.Status)
		json.NewEncoder(w).Encode(api.Error{Error: fail.Message})
		return
	}
	reply := func(v any) { json.NewEncoder(w).Encode(v) }
	switch r.Method + " " + r.URL.Path {
	case "POST /v1/jobs":
		var req api.SubmitRequest
		json.Unmarshal(body, &req)
		if req.TestOnly {
			reply(api.SubmitResponse{JobID: 1000, Nodes: []string{"node4"},
				EstimateNote: "Job 1000 to start at 2026-11-21T10:00:00 using 1 processors on nodes node4 in partition batch"})
			return
		}
		reply(api.SubmitResponse{JobID: 1000})
	case "GET /v1/jobs":
		reply(api.JobsResponse{Jobs: fixtureJobs(), Index: 7})
	case "GET /v1/nodes":
		reply(api.NodesResponse{Nodes: fixtureNodes(), Partitions: fixturePartitions(), Index: 7})
	case "POST /v1/jobs/cancel", "POST /v1/jobs/action":
		reply(api.CancelResponse{Cancelled: []uint64{105}})
	case "POST /v1/nodes/update":
		reply(struct{}{})
	case "GET /v1/status":
		reply(api.Status{Leader: "c1", ServedBy: "c1", RaftIndex: 9, CommitIndex: 9,
			Controllers:  []api.Controller{{ID: "c1", APIAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2", Voter: true, Leader: true}},
			NodesByState: map[string]int{"idle": 1}, JobsByState: map[string]int{"PENDING": 1}, QueueDepth: 1})
	case "POST /v1/users":
		var req api.UserAddRequest
		json.Unmarshal(body, &req)
		reply(api.UserAddResponse{User: api.User{Name: req.Name, UID: *req.UID, GID: *req.GID, DefaultAccount: req.Account}, Token: "newtoken"})
	case "GET /v1/users":
		reply([]api.User{{Name: "alice", UID: 1501, GID: 1501, DefaultAccount: "research", Accounts: []string{"research"}}})
	default:
		if !f.serveAttest(w, r, body) {
			http.NotFound(w, r)
		}
	}
}

func (f *fakeAPI) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// last returns the last request to method and path, or nil.
func (f *fakeAPI) last(method, path string) *recorded {
	reqs := f.requests()
	for i := len(reqs) - 1; i >= 0; i-- {
		if reqs[i].method == method && reqs[i].path == path {
			return &reqs[i]
		}
	}
	return nil
}

// testEnv is an env wired to a fake controller, with fixed clock, user,
// working directory and files.
func testEnv(t *testing.T, f *fakeAPI, vars map[string]string, files map[string]string) (*env, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	srv := httptest.NewUnstartedServer(f)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tlsConf := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsConf.MinVersion = tls.VersionTLS13
	addr := strings.TrimPrefix(srv.URL, "https://")
	var stdout, stderr bytes.Buffer
	e := &env{
		stdout: &stdout, stderr: &stderr, stdin: strings.NewReader(""),
		getenv: func(k string) string { return vars[k] },
		environ: func() []string {
			out := []string{"PATH=/usr/bin:/bin", "HOME=/home/alice"}
			for k, v := range vars {
				out = append(out, k+"="+v)
			}
			return out
		},
		getwd: func() (string, error) { return "/home/alice", nil },
		readFile: func(p string) ([]byte, error) {
			if s, ok := files[p]; ok {
				return []byte(s), nil
			}
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		},
		now: func() time.Time { return fixNow },
		loc: time.UTC,
		client: func() (*api.Client, error) {
			return api.NewClient([]string{addr}, "tok", tlsConf), nil
		},
		username:  func() (string, error) { return "alice", nil },
		groupName: testCtx().groupName,
		sleep:     func(context.Context, time.Duration) error { return errors.New("stop") },
		newID:     func() string { return "00112233445566778899aabbccddeeff" },
	}
	return e, &stdout, &stderr
}

func TestCommands(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		vars   map[string]string
		files  map[string]string
		code   int
		stdout string // exact, unless golden is set
		golden string
		stderr string // exact
		check  func(t *testing.T, f *fakeAPI)
	}{
		{
			name: "sbatch parsable", args: []string{"sbatch", "--parsable", "--wrap", "echo hi"},
			stdout: "1000\n",
			check: func(t *testing.T, f *fakeAPI) {
				r := f.last("POST", "/v1/jobs")
				var req api.SubmitRequest
				if r == nil || json.Unmarshal([]byte(r.body), &req) != nil {
					t.Fatalf("no submit: %v", r)
				}
				if !strings.Contains(req.Spec.Script, "echo hi") || req.Spec.SubmitID != "00112233445566778899aabbccddeeff" || req.TestOnly {
					t.Errorf("submitted %+v", req)
				}
			},
		},
		{
			name: "sbatch script file", args: []string{"sbatch", "job.sh", "arg1"},
			files:  map[string]string{"/home/alice/job.sh": "#!/bin/sh\n#SBATCH -J named\necho $1\n"},
			stdout: "Submitted batch job 1000\n",
			check: func(t *testing.T, f *fakeAPI) {
				var req api.SubmitRequest
				json.Unmarshal([]byte(f.last("POST", "/v1/jobs").body), &req)
				if req.Spec.Name != "named" || len(req.Spec.Argv) != 1 || req.Spec.Argv[0] != "arg1" {
					t.Errorf("spec %+v", req.Spec)
				}
			},
		},
		{
			name: "sbatch test-only", args: []string{"sbatch", "--test-only", "--wrap", "true"},
			stderr: "sbatch: Job 1000 to start at 2026-11-21T10:00:00 using 1 processors on nodes node4 in partition batch\n",
			check: func(t *testing.T, f *fakeAPI) {
				var req api.SubmitRequest
				json.Unmarshal([]byte(f.last("POST", "/v1/jobs").body), &req)
				if !req.TestOnly {
					t.Error("test_only not sent")
				}
			},
		},
		{
			name: "sbatch dry-run never contacts the cluster", args: []string{"sbatch", "--dry-run", "--json", "--wrap", "true"},
			check: func(t *testing.T, f *fakeAPI) {
				if n := len(f.requests()); n != 0 {
					t.Errorf("%d requests", n)
				}
			},
		},
		{
			name: "sbatch bad option", args: []string{"sbatch", "--time=banana", "--wrap", "true"}, code: 1,
			check: func(t *testing.T, f *fakeAPI) {
				if len(f.requests()) != 0 {
					t.Error("submitted anyway")
				}
			},
		},
		{
			name: "sbatch rejected", args: []string{"sbatch", "-p", "nosuch", "--wrap", "true"}, code: 1,
			stderr: "sbatch: error: Batch job submission failed: invalid partition specified: nosuch\n",
		},
		{
			name: "squeue held job", args: []string{"squeue", "-h", "-j", "105", "-o", "%i %t %r"},
			stdout: "105 PD JobHeldUser\n",
			check: func(t *testing.T, f *fakeAPI) {
				q := f.last("GET", "/v1/jobs").query
				if q.Get("id") != "105" || q.Has("all") || q.Has("state") {
					t.Errorf("query %v", q)
				}
			},
		},
		{name: "squeue default", args: []string{"squeue"}, golden: "squeue_default"},
		{name: "squeue long has a date line", args: []string{"squeue", "-l", "-u", "carol"},
			stdout: "Sat Nov 21 10:00:00 2026\n" +
				"             JOBID PARTITION     NAME     USER    STATE       TIME TIME_LIMI  NODES NODELIST(REASON)\n" +
				"               111 gpu-long-  forever    carol  RUNNING 1-02:00:03 UNLIMITED      1 gpu1\n"},
		{
			name: "squeue user and compact states", args: []string{"squeue", "-u", "bob", "-tPD", "-h", "-o", "%i"},
			stdout: "102\n",
			check: func(t *testing.T, f *fakeAPI) {
				q := f.last("GET", "/v1/jobs").query
				if q.Get("user") != "bob" || q.Get("state") != "PENDING" {
					t.Errorf("query %v", q)
				}
			},
		},
		{name: "squeue --me", args: []string{"squeue", "--me", "-h", "-o", "%i", "--sort=i"}, stdout: "101\n103_1\n103_2\n105\n"},
		{name: "squeue uid", args: []string{"squeue", "--user=1502", "-h", "-o", "%u"}, stdout: "bob\n",
			check: func(t *testing.T, f *fakeAPI) {
				if q := f.last("GET", "/v1/jobs").query; q.Has("user") {
					t.Errorf("uid sent as a name: %v", q)
				}
			}},
		{name: "squeue array tasks", args: []string{"squeue", "-h", "-j", "103", "-o", "%i %A %F %K", "-t", "all"}, stdout: "103_2 104 103 2\n103_1 103 103 1\n"},
		{name: "squeue named job in any state", args: []string{"squeue", "-h", "-o", "%i %t", "107,108"}, stdout: "108 CA\n107 F\n"},
		{name: "squeue unknown job", args: []string{"squeue", "-j", "999"}, code: 1, stderr: "slurm_load_jobs error: Invalid job id specified\n"},
		{name: "squeue states the controllers never use", args: []string{"squeue", "-h", "-t", "S"},
			check: func(t *testing.T, f *fakeAPI) {
				if len(f.requests()) != 0 {
					t.Error("queried for suspended jobs")
				}
			}},
		{name: "squeue -O", args: []string{"squeue", "-h", "-O", "JobArrayID:8,UserName:.6", "-p", "small"}, stdout: "105      alice\n"},
		{name: "squeue SQUEUE_FORMAT", args: []string{"squeue", "-h", "-p", "small"}, vars: map[string]string{"SQUEUE_FORMAT": "%j"}, stdout: "held\n"},
		{name: "squeue bad state", args: []string{"squeue", "-t", "bogus"}, code: 1, stderr: "squeue: error: Invalid job state specified: bogus\n"},
		{name: "squeue bad flag", args: []string{"squeue", "--bogus"}, code: 1, stderr: "squeue: error: unknown flag: --bogus\n"},
		{name: "squeue bad code", args: []string{"squeue", "-h", "-p", "small", "-o", "%i%z"}, stdout: "105\n", stderr: "squeue: error: Invalid job format specification: z\n"},
		{name: "squeue json", args: []string{"squeue", "--json", "-p", "small"}, check: func(t *testing.T, f *fakeAPI) {}},
		{name: "squeue version", args: []string{"squeue", "--version"}, stdout: "slurm 23.11.0\n"},
		{
			name: "scancel unknown id", args: []string{"scancel", "999"}, code: 1,
			stderr: "scancel: error: Kill job error on job id 999: Invalid job id specified\n",
			check: func(t *testing.T, f *fakeAPI) {
				if f.last("POST", "/v1/jobs/cancel") != nil {
					t.Error("cancel sent for an unknown id")
				}
			},
		},
		{
			name: "scancel one job", args: []string{"scancel", "105"},
			check: func(t *testing.T, f *fakeAPI) {
				var req api.CancelRequest
				json.Unmarshal([]byte(f.last("POST", "/v1/jobs/cancel").body), &req)
				if len(req.JobIDs) != 1 || req.JobIDs[0] != "105" {
					t.Errorf("cancel %+v", req)
				}
			},
		},
		{
			name: "scancel an array", args: []string{"scancel", "103"},
			check: func(t *testing.T, f *fakeAPI) {
				var req api.CancelRequest
				json.Unmarshal([]byte(f.last("POST", "/v1/jobs/cancel").body), &req)
				if strings.Join(req.JobIDs, ",") != "103_1,103_2" {
					t.Errorf("cancel %+v", req)
				}
			},
		},
		{name: "scancel finished job", args: []string{"scancel", "106"}, code: 1,
			stderr: "scancel: error: Kill job error on job id 106: Job/step already completing or completed\n"},
		{name: "scancel finished job quietly", args: []string{"scancel", "-Q", "106"}},
		{
			name: "scancel filters", args: []string{"scancel", "-u", "alice", "-t", "PD", "-p", "batch"},
			check: func(t *testing.T, f *fakeAPI) {
				var req api.CancelRequest
				json.Unmarshal([]byte(f.last("POST", "/v1/jobs/cancel").body), &req)
				if strings.Join(req.JobIDs, ",") != "103_2" {
					t.Errorf("cancel %+v", req)
				}
			},
		},
		{name: "scancel nothing", args: []string{"scancel"}, code: 1, stderr: "scancel: error: No job identification provided\n"},
		{name: "sinfo node state", args: []string{"sinfo", "-h", "-N", "-n", "node1", "-o", "%t"}, stdout: "mix\n"},
		{name: "sinfo default", args: []string{"sinfo"}, golden: "sinfo_default"},
		{name: "sinfo summarize", args: []string{"sinfo", "-s"}, golden: "sinfo_summarize"},
		{name: "sinfo reasons", args: []string{"sinfo", "-R"}, golden: "sinfo_reasons"},
		{name: "sinfo states", args: []string{"sinfo", "-t", "idle"}, golden: "sinfo_state_filter"},
		{name: "sinfo bad state", args: []string{"sinfo", "-t", "sleepy"}, code: 1, stderr: "sinfo: error: Invalid node state specified: sleepy\n"},
		{name: "scontrol show job", args: []string{"scontrol", "show", "job", "105"}, golden: "cmd_scontrol_show_job"},
		{name: "scontrol show job oneliner", args: []string{"scontrol", "-o", "show", "job", "107"}, golden: "scontrol_job_oneliner"},
		{name: "scontrol option after the command", args: []string{"scontrol", "show", "job", "107", "--oneliner"}, golden: "scontrol_job_oneliner"},
		{name: "scontrol unknown job", args: []string{"scontrol", "show", "job", "999"}, code: 1,
			stderr: "slurm_load_jobs error: Invalid job id specified\n"},
		{name: "scontrol show node", args: []string{"scontrol", "show", "node", "node1"}, golden: "cmd_scontrol_show_node"},
		{name: "scontrol unknown node", args: []string{"scontrol", "show", "node", "node99"}, code: 1, stderr: "scontrol: error: Node node99 not found\n"},
		{name: "scontrol show partition", args: []string{"scontrol", "show", "partition", "small"}, golden: "cmd_scontrol_show_partition"},
		{name: "scontrol hostnames", args: []string{"scontrol", "show", "hostnames", "node[1-3],gpu1"}, stdout: "node1\nnode2\nnode3\ngpu1\n"},
		{name: "scontrol hostnames from the job", args: []string{"scontrol", "show", "hostnames"},
			vars: map[string]string{"SLURM_JOB_NODELIST": "n[08-10]"}, stdout: "n08\nn09\nn10\n"},
		{name: "scontrol hostlist", args: []string{"scontrol", "show", "hostlist", "n1,n2,n3,n7"}, stdout: "n[1-3,7]\n"},
		{
			name: "scontrol drain", args: []string{"scontrol", "update", "NodeName=node[1-2]", "State=DRAIN", "Reason=disk check"},
			check: func(t *testing.T, f *fakeAPI) {
				var req api.NodeUpdateRequest
				json.Unmarshal([]byte(f.last("POST", "/v1/nodes/update").body), &req)
				if strings.Join(req.Nodes, ",") != "node1,node2" || req.State != "drain" || req.Reason != "disk check" {
					t.Errorf("update %+v", req)
				}
			},
		},
		{
			name: "scontrol resume, lower-case keys", args: []string{"scontrol", "update", "nodename=node5", "state=resume"},
			check: func(t *testing.T, f *fakeAPI) {
				var req api.NodeUpdateRequest
				json.Unmarshal([]byte(f.last("POST", "/v1/nodes/update").body), &req)
				if req.State != "resume" {
					t.Errorf("update %+v", req)
				}
			},
		},
		{name: "scontrol drain without reason", args: []string{"scontrol", "update", "nodename=node1", "state=drain"}, code: 1,
			stderr: "scontrol: error: You must specify a reason when DOWNING or DRAINING a node. Request denied\n"},
		{name: "scontrol update unknown key", args: []string{"scontrol", "update", "NodeName=node1", "Weight=5"}, code: 1,
			stderr: "scontrol: error: Update of this parameter is not supported: Weight=5\n"},
		{
			name: "scontrol release", args: []string{"scontrol", "release", "105,103_[1-2]"},
			check: func(t *testing.T, f *fakeAPI) {
				var req api.JobActionRequest
				json.Unmarshal([]byte(f.last("POST", "/v1/jobs/action").body), &req)
				if req.Action != "release" || strings.Join(req.JobIDs, " ") != "105 103_[1-2]" {
					t.Errorf("action %+v", req)
				}
			},
		},
		{name: "scontrol unknown command", args: []string{"scontrol", "frobnicate"}, code: 1, stderr: "scontrol: error: invalid command: frobnicate\n"},
		{name: "scontrol unknown entity", args: []string{"scontrol", "show", "config"}, code: 1, stderr: "scontrol: error: invalid entity: config for keyword: show\n"},
		{
			name: "sacct one job", args: []string{"sacct", "-j", "107", "-X", "-n", "-P", "--format=JobID,State,ExitCode"},
			stdout: "107|FAILED|3:0\n",
			check: func(t *testing.T, f *fakeAPI) {
				q := f.last("GET", "/v1/jobs").query
				if q.Get("id") != "107" || q.Get("all") != "true" || q.Has("since") {
					t.Errorf("query %v", q)
				}
			},
		},
		{
			name: "sacct today", args: []string{"sacct"}, golden: "sacct_default",
			check: func(t *testing.T, f *fakeAPI) {
				q := f.last("GET", "/v1/jobs").query
				if q.Get("since") != "2026-11-21T00:00:00Z" || q.Get("until") != "2026-11-21T10:00:00Z" {
					t.Errorf("query %v", q)
				}
			},
		},
		{name: "sacct window", args: []string{"sacct", "-S", "now-4minutes", "-X", "-n", "-P", "-o", "jobid"},
			stdout: "101\n102\n103_1\n103_2\n105\n109\n110\n111\n"},
		{name: "sacct states now", args: []string{"sacct", "-s", "R", "-n", "-X", "-P", "-o", "jobid,state"},
			stdout: "101|RUNNING\n103_1|RUNNING\n111|RUNNING\n"},
		{name: "sacct users", args: []string{"sacct", "-a", "-u", "bob,carol", "-n", "-X", "-p", "-o", "jobid,user"},
			stdout: "102|bob|\n111|carol|\n"},
		{name: "sacct -h is help", args: []string{"sacct", "-h"}},
		{name: "sacct bad time", args: []string{"sacct", "-S", "whenever"}, code: 1,
			stderr: "sacct: error: --starttime: invalid time specification: whenever\n"},
		{name: "sacct bad field", args: []string{"sacct", "-o", "JobID,Nope"}, code: 1, stderr: "sacct: error: Invalid field requested: \"Nope\"\n"},
		{name: "stockade squeue is squeue", args: []string{"stockade", "squeue", "-h", "-j", "105", "-o", "%i %t %r"}, stdout: "105 PD JobHeldUser\n"},
		{name: "stockade sbatch is sbatch", args: []string{"/usr/bin/stockade", "sbatch", "--parsable", "--wrap", "true"}, stdout: "1000\n"},
		{name: "symlink path", args: []string{"/opt/bin/squeue", "-h", "-p", "small", "-o", "%i"}, stdout: "105\n"},
		{name: "status", args: []string{"stockade", "status"}, golden: "cmd_status"},
		{name: "status json", args: []string{"stockade", "status", "--json"}, golden: "cmd_status_json"},
		{
			name: "user add", args: []string{"stockade", "user", "add", "bob", "--account", "research", "--uid", "1502", "--gid", "1502"},
			stdout: "User bob added: uid 1502, gid 1502, account research\ntoken: newtoken\n",
			stderr: "The token is shown only once: store it now.\n",
			check: func(t *testing.T, f *fakeAPI) {
				var req api.UserAddRequest
				json.Unmarshal([]byte(f.last("POST", "/v1/users").body), &req)
				if req.Name != "bob" || req.Account != "research" || req.UID == nil || *req.UID != 1502 {
					t.Errorf("user add %+v", req)
				}
			},
		},
		{name: "user add without account", args: []string{"stockade", "user", "add", "bob"}, code: 1, stderr: "stockade: error: --account is required\n"},
		{name: "user list", args: []string{"stockade", "user", "list"},
			stdout: "NAME   UID   GID   DEFAULT_ACCOUNT  ACCOUNTS  ADMIN\nalice  1501  1501  research         research  no\n"},
		{name: "unknown subcommand", args: []string{"stockade", "frobnicate"}, code: 1,
			stderr: "stockade: error: unknown command \"frobnicate\" for \"stockade\"\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAPI{failures: map[string]api.HTTPError{}}
			if tc.name == "sbatch rejected" {
				f.failures["POST /v1/jobs"] = api.HTTPError{Status: 400, Message: "invalid partition specified: nosuch"}
			}
			e, stdout, stderr := testEnv(t, f, tc.vars, tc.files)
			code := run(context.Background(), e, tc.args)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr.String())
			}
			switch {
			case tc.golden != "":
				golden(t, tc.golden, stdout.String())
			case tc.stdout != "" || tc.check == nil:
				if tc.stdout != "" && stdout.String() != tc.stdout {
					t.Errorf("stdout %q, want %q", stdout.String(), tc.stdout)
				}
			}
			if tc.code != 0 && tc.stderr == "" {
				if n := strings.Count(stderr.String(), "\n"); n != 1 {
					t.Errorf("stderr has %d lines, want one: %q", n, stderr.String())
				}
			} else if stderr.String() != tc.stderr {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.stderr)
			}
			if tc.check != nil {
				tc.check(t, f)
			}
		})
	}
}

func TestHelpDocumentsOptions(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"squeue", "--help"}, []string{"Usage: squeue", "--noheader", "-t, --states", "%R"}},
		{[]string{"sinfo", "--usage"}, []string{"Usage: sinfo", "--list-reasons", "--summarize"}},
		{[]string{"sacct", "--help"}, []string{"Usage: sacct", "--allocations", "--parsable2", "now[-+N"}},
		{[]string{"scancel", "--help"}, []string{"Usage: scancel", "--signal"}},
		{[]string{"scontrol", "--help"}, []string{"show hostnames", "update NodeName"}},
		{[]string{"stockade", "help", "squeue"}, []string{"--format"}},
		{[]string{"stockade", "--help"}, []string{"STOCKADE_SERVERS", "sbatch", "status", "user"}},
		{[]string{"sbatch", "--help"}, []string{"Usage: sbatch"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			e, stdout, _ := testEnv(t, &fakeAPI{}, nil, nil)
			if code := run(context.Background(), e, tc.args); code != 0 {
				t.Fatalf("exit %d", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("help lacks %q:\n%s", w, stdout.String())
				}
			}
		})
	}
}

func TestUnreachableControllers(t *testing.T) {
	f := &fakeAPI{}
	e, _, stderr := testEnv(t, f, map[string]string{"STOCKADE_TIMEOUT": "300ms"}, nil)
	e.client = func() (*api.Client, error) {
		return api.NewClient([]string{"127.0.0.1:1"}, "tok", &tls.Config{MinVersion: tls.VersionTLS13}), nil
	}
	cases := []struct{ args []string }{{[]string{"squeue"}}, {[]string{"sinfo"}}, {[]string{"sacct"}}, {[]string{"scontrol", "show", "job"}}}
	for _, tc := range cases {
		stderr.Reset()
		if code := run(context.Background(), e, tc.args); code != 1 {
			t.Errorf("%v: exit %d", tc.args, code)
		}
		want := tc.args[0] + ": error: Unable to contact the Stockade controllers: "
		if !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%v: stderr %q", tc.args, stderr.String())
		}
	}
}

func TestExtraCommands(t *testing.T) {
	ran := false
	extra := &cobra.Command{Use: "server", RunE: func(*cobra.Command, []string) error { ran = true; return nil }}
	failing := &cobra.Command{Use: "agent", RunE: func(*cobra.Command, []string) error { return errors.New("cannot start\nat all") }}
	e, _, stderr := testEnv(t, &fakeAPI{}, nil, nil)
	if code := run(context.Background(), e, []string{"stockade", "server"}, extra, failing); code != 0 || !ran {
		t.Errorf("server: exit %d ran %v", code, ran)
	}
	if code := run(context.Background(), e, []string{"stockade", "agent"}, extra, failing); code != 1 {
		t.Errorf("agent: exit %d", code)
	}
	if stderr.String() != "stockade: error: cannot start; at all\n" {
		t.Errorf("stderr %q", stderr.String())
	}
}

func TestJobQueryValues(t *testing.T) {
	cases := []struct {
		q    api.JobQuery
		want string
	}{
		{api.JobQuery{}, ""},
		{api.JobQuery{Users: []string{"a", "b"}, States: []api.JobState{api.JobPending}, All: true},
			"all=true&state=PENDING&user=a%2Cb"},
		{api.JobQuery{IDs: []string{"1", "2_3"}, Partitions: []string{"p"}, Names: []string{"n"}, Stale: true,
			Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600)), Until: time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC)},
			"id=1%2C2_3&name=n&partition=p&since=2026-01-02T02%3A04%3A05Z&stale=true&until=2026-01-03T00%3A00%3A00Z"},
	}
	for _, tc := range cases {
		if got := tc.q.Values().Encode(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.q, got, tc.want)
		}
	}
}
