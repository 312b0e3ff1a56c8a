package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/executor"
	"github.com/stockade-hpc/stockade/internal/testenv"
)

var testStart = time.Unix(1_700_000_000, 0)

// baseJob is a one-node, one-task job of user alice placed on n1.
func baseJob() *api.Job {
	return &api.Job{
		ID: 42, ArrayTaskID: -1, User: "alice", UID: 1501, GID: 1501,
		Spec: api.JobSpec{
			Name: "hello", Partition: "batch", Account: "research", Script: "#!/bin/sh\ntrue\n",
			WorkDir: "/home/alice/run", Nodes: 1, Tasks: 1, CPUsPerTask: 2,
			Environment: map[string]string{"FOO": "bar"},
		},
		State: api.JobRunning, StartTime: testStart, TimeLimitSec: 3600,
		Nodes: []string{"n1"}, AllocCPUs: 2, AllocMemoryMB: 1024,
	}
}

func baseInput(j *api.Job) specInput {
	return specInput{
		Job: j, Node: "n1", StateDir: "/var/lib/stockade/agent", ClusterName: "test",
		KillGrace: 5 * time.Second, Now: testStart.Add(time.Minute),
	}
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func TestBuildSpec(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(*specInput)
		check  func(t *testing.T, s executor.Spec)
		env    map[string]string // must be set to these values
		absent []string          // must not be set
	}{
		{
			name: "sbatch --signal=B:USR1@90",
			mod: func(in *specInput) {
				in.Job.Spec.WarnSignal, in.Job.Spec.WarnTimeSec, in.Job.Spec.WarnBatchOnly = 10, 90, true
			},
			check: func(t *testing.T, s executor.Spec) {
				if s.WarnSignal != 10 || s.WarnBefore != 90*time.Second || !s.WarnBatchOnly {
					t.Errorf("warn signal %d before %s batch only %v", s.WarnSignal, s.WarnBefore, s.WarnBatchOnly)
				}
			},
		},
		{
			name: "plain job",
			check: func(t *testing.T, s executor.Spec) {
				want := executor.Spec{
					JobID: 42, Attempt: 0, User: "alice", UID: 1501, GID: 1501, Script: "#!/bin/sh\ntrue\n",
					WorkDir: "/home/alice/run", Stdout: "/home/alice/run/slurm-42.out", CPUs: 2,
					MemoryBytes: 1 << 30, PidsLimit: 4096, TimeLimit: time.Hour, KillGrace: 5 * time.Second,
					ImageCacheDir: "/var/lib/stockade/agent/images",
				}
				s.Env = nil
				if !reflect.DeepEqual(s, want) {
					t.Errorf("spec\n got %+v\nwant %+v", s, want)
				}
			},
			env: map[string]string{
				"FOO": "bar", "SLURM_JOB_ID": "42", "SLURM_JOBID": "42", "SLURM_JOB_NAME": "hello",
				"SLURM_JOB_USER": "alice", "SLURM_JOB_UID": "1501", "SLURM_JOB_GID": "1501",
				"SLURM_JOB_ACCOUNT": "research", "SLURM_JOB_PARTITION": "batch", "SLURM_SUBMIT_DIR": "/home/alice/run",
				"SLURM_JOB_NODELIST": "n1", "SLURM_NODELIST": "n1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NNODES": "1",
				"SLURM_NTASKS": "1", "SLURM_NPROCS": "1", "SLURM_TASKS_PER_NODE": "1", "SLURM_CPUS_PER_TASK": "2",
				"SLURM_CPUS_ON_NODE": "2", "SLURM_JOB_CPUS_PER_NODE": "2", "SLURM_MEM_PER_NODE": "1024",
				"SLURM_RESTART_COUNT": "0", "SLURMD_NODENAME": "n1", "SLURM_NODEID": "0", "SLURM_PROCID": "0",
				"SLURM_LOCALID": "0", "SLURM_CLUSTER_NAME": "test", "ENVIRONMENT": "BATCH",
				"SLURM_JOB_START_TIME": "1700000000", "SLURM_JOB_END_TIME": "1700003600",
				"STOCKADE_JOB_ID": "42", "STOCKADE_NODE": "n1", "STOCKADE_ATTEMPT": "0",
				"HOME": "/home/alice/run", "USER": "alice", "LOGNAME": "alice", "SHELL": "/bin/sh", "PATH": defaultPath,
			},
			absent: []string{"SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_QOS", "SLURM_MEM_PER_CPU",
				"CUDA_VISIBLE_DEVICES", "SLURM_GPUS_ON_NODE", "SLURM_SUBMIT_HOST", "SLURM_NTASKS_PER_NODE"},
		},
		{
			name: "array task with patterns, append and a second attempt",
			mod: func(in *specInput) {
				j := in.Job
				j.ID, j.ArrayJobID, j.ArrayTaskID, j.Restarts = 57, 50, 7, 2
				j.Spec.ArrayTasks = []int{1, 3, 5, 7, 9}
				j.Spec.Output = "arr-%A_%a.out"
				j.Spec.Error = "logs/%x-%j.err"
				j.Spec.OpenMode = "append"
			},
			check: func(t *testing.T, s executor.Spec) {
				if s.Stdout != "/home/alice/run/arr-50_7.out" || s.Stderr != "/home/alice/run/logs/hello-57.err" || !s.Append {
					t.Errorf("stdout %q stderr %q append %v", s.Stdout, s.Stderr, s.Append)
				}
				if s.Attempt != 2 || s.JobID != 57 {
					t.Errorf("job %d attempt %d", s.JobID, s.Attempt)
				}
			},
			env: map[string]string{
				"SLURM_JOB_ID": "57", "SLURM_ARRAY_JOB_ID": "50", "SLURM_ARRAY_TASK_ID": "7",
				"SLURM_ARRAY_TASK_COUNT": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "9",
				"SLURM_ARRAY_TASK_STEP": "2", "SLURM_RESTART_COUNT": "2", "STOCKADE_ATTEMPT": "2",
			},
		},
		{
			name: "default output of an array task",
			mod: func(in *specInput) {
				in.Job.ArrayJobID, in.Job.ArrayTaskID = 40, 2
			},
			check: func(t *testing.T, s executor.Spec) {
				if s.Stdout != "/home/alice/run/slurm-40_2.out" {
					t.Errorf("stdout %q", s.Stdout)
				}
			},
			env: map[string]string{"SLURM_ARRAY_TASK_COUNT": "1", "SLURM_ARRAY_TASK_MIN": "2", "SLURM_ARRAY_TASK_STEP": "1"},
		},
		{
			name: "absolute output, error to the same file",
			mod: func(in *specInput) {
				in.Job.Spec.Output = "/scratch/%u/out-%j"
				in.Job.Spec.Error = "/scratch/alice/out-42"
			},
			check: func(t *testing.T, s executor.Spec) {
				if s.Stdout != "/scratch/alice/out-42" || s.Stderr != "" {
					t.Errorf("stdout %q stderr %q", s.Stdout, s.Stderr)
				}
			},
		},
		{
			name: "GPUs, pinning, image, netns and an explicit pids limit",
			mod: func(in *specInput) {
				in.Job.AllocGPUs = 2
				in.Job.Spec.Image = "/images/pytorch.tar"
				in.GPUs = []int{2, 3}
				in.GPUDevices = []string{"/dev/nvidia2", "/dev/nvidia3", "/dev/nvidiactl"}
				in.CPUIDs = []int{4, 5}
				in.PidsLimit = 100
				in.NetNS = "/run/netns/jobs"
			},
			check: func(t *testing.T, s executor.Spec) {
				if !reflect.DeepEqual(s.GPUDevices, []string{"/dev/nvidia2", "/dev/nvidia3", "/dev/nvidiactl"}) {
					t.Errorf("devices %v", s.GPUDevices)
				}
				if s.CPUSet != "4-5" || s.PidsLimit != 100 || s.Image != "/images/pytorch.tar" || s.NetNSPath != "/run/netns/jobs" {
					t.Errorf("cpuset %q pids %d image %q netns %q", s.CPUSet, s.PidsLimit, s.Image, s.NetNSPath)
				}
			},
			env: map[string]string{"SLURM_GPUS_ON_NODE": "2", "SLURM_JOB_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "0,1", "GPU_DEVICE_ORDINAL": "0,1"},
		},
		{
			name: "multi-node job with tasks and memory per CPU",
			mod: func(in *specInput) {
				j := in.Job
				j.Nodes = []string{"n3", "n1", "n2", "n4"}
				j.Spec.Nodes, j.Spec.Tasks, j.Spec.CPUsPerTask = 4, 10, 0
				j.Spec.MemoryPerCPUMB = 512
				j.AllocCPUs = 3
				j.TimeLimitSec = 0
			},
			check: func(t *testing.T, s executor.Spec) {
				if s.TimeLimit != 0 || s.PidsLimit != 4096 {
					t.Errorf("time limit %s pids %d", s.TimeLimit, s.PidsLimit)
				}
			},
			env: map[string]string{
				"SLURM_JOB_NODELIST": "n[1-4]", "SLURM_NNODES": "4", "SLURM_NTASKS": "10",
				"SLURM_TASKS_PER_NODE": "3(x2),2(x2)", "SLURM_JOB_CPUS_PER_NODE": "3(x4)", "SLURM_CPUS_ON_NODE": "3",
				"SLURM_MEM_PER_CPU": "512",
			},
			absent: []string{"SLURM_MEM_PER_NODE", "SLURM_CPUS_PER_TASK", "SLURM_JOB_END_TIME"},
		},
		{
			name: "time limit of 100 years",
			mod:  func(in *specInput) { in.Job.TimeLimitSec = maxTimeLimitSec },
			check: func(t *testing.T, s executor.Spec) {
				if s.TimeLimit != 100*365*24*time.Hour {
					t.Errorf("time limit %s", s.TimeLimit)
				}
			},
			env: map[string]string{"SLURM_JOB_END_TIME": "4853600000"},
		},
		{
			name: "huge time limit is no limit, not an overflow",
			mod:  func(in *specInput) { in.Job.TimeLimitSec = 1<<63 - 1 },
			check: func(t *testing.T, s executor.Spec) {
				if s.TimeLimit != 0 {
					t.Errorf("time limit %s", s.TimeLimit)
				}
			},
			absent: []string{"SLURM_JOB_END_TIME"},
		},
		{
			name: "time limit of 317 years (beyond time.Duration) is no limit",
			mod:  func(in *specInput) { in.Job.TimeLimitSec = 10_000_000_000 },
			check: func(t *testing.T, s executor.Spec) {
				if s.TimeLimit != 0 {
					t.Errorf("time limit %s", s.TimeLimit)
				}
			},
			absent: []string{"SLURM_JOB_END_TIME"},
		},
		{
			name: "known user: passwd values unless exported, supplementary groups",
			mod: func(in *specInput) {
				in.User = &userInfo{Name: "alice", Home: "/home/alice", Shell: "/bin/zsh", Groups: []uint32{1501, 27}}
				in.Job.Spec.Environment = map[string]string{"HOME": "/exported/home", "PATH": "/opt/bin"}
				in.Job.Spec.WorkDir = ""
			},
			check: func(t *testing.T, s executor.Spec) {
				if !reflect.DeepEqual(s.Groups, []uint32{1501, 27}) || s.WorkDir != "/home/alice" {
					t.Errorf("groups %v workdir %q", s.Groups, s.WorkDir)
				}
			},
			env: map[string]string{"HOME": "/exported/home", "SHELL": "/bin/zsh", "PATH": "/opt/bin", "SLURM_SUBMIT_DIR": "/home/alice"},
		},
		{
			name: "stale and invalid submitted variables are dropped",
			mod: func(in *specInput) {
				in.Job.Spec.Environment = map[string]string{
					"SLURM_JOB_ID": "1", "SLURM_ARRAY_TASK_ID": "3", "SLURM_MEM_PER_CPU": "9", "CUDA_VISIBLE_DEVICES": "7",
					"SLURM_SUBMIT_DIR": "/home/alice", "SLURM_SUBMIT_HOST": "login1",
					"BAD=KEY": "x", "": "empty", "NUL": "a\x00b", "PATH": "",
				}
				in.Job.StartTime = time.Time{}
			},
			env: map[string]string{"SLURM_JOB_ID": "42", "SLURM_SUBMIT_DIR": "/home/alice", "SLURM_SUBMIT_HOST": "login1",
				"PATH": defaultPath, "SLURM_JOB_START_TIME": "1700000060"},
			absent: []string{"SLURM_ARRAY_TASK_ID", "SLURM_MEM_PER_CPU", "CUDA_VISIBLE_DEVICES", "BAD", "BAD=KEY", "", "NUL"},
		},
		{
			name: "no workdir and unknown user",
			mod:  func(in *specInput) { in.Job.Spec.WorkDir = "" },
			check: func(t *testing.T, s executor.Spec) {
				if s.WorkDir != "/" || s.Stdout != "/slurm-42.out" || s.Groups != nil {
					t.Errorf("workdir %q stdout %q groups %v", s.WorkDir, s.Stdout, s.Groups)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput(baseJob())
			if tc.mod != nil {
				tc.mod(&in)
			}
			s := buildSpec(in)
			env := envMap(s.Env)
			if len(env) != len(s.Env) {
				t.Errorf("duplicate variables in %q", s.Env)
			}
			for i := 1; i < len(s.Env); i++ {
				if s.Env[i-1] > s.Env[i] {
					t.Errorf("environment not sorted at %q", s.Env[i])
				}
			}
			for k, v := range tc.env {
				if got, ok := env[k]; !ok || got != v {
					t.Errorf("%s = %q (set %v), want %q", k, got, ok, v)
				}
			}
			for _, k := range tc.absent {
				if v, ok := env[k]; ok {
					t.Errorf("%s set to %q, want unset", k, v)
				}
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestTasksPerNode(t *testing.T) {
	tests := []struct {
		name  string
		spec  api.JobSpec
		nodes int
		want  string
	}{
		{"defaults", api.JobSpec{}, 1, "1"},
		{"one per node by default", api.JobSpec{Nodes: 3}, 3, "1(x3)"},
		{"even", api.JobSpec{Tasks: 8}, 2, "4(x2)"},
		{"uneven", api.JobSpec{Tasks: 3}, 2, "2,1"},
		{"per node", api.JobSpec{TasksPerNode: 4}, 3, "4(x3)"},
		{"tasks win over per node", api.JobSpec{Tasks: 5, TasksPerNode: 4}, 2, "3,2"},
		{"zero nodes", api.JobSpec{Tasks: 2}, 0, "2"},
	}
	for _, tc := range tests {
		if got := repeatList(tasksPerNode(tc.spec, tc.nodes)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestArrayStats(t *testing.T) {
	tests := []struct {
		tasks        []int
		lo, hi, step int
	}{
		{[]int{4}, 4, 4, 1},
		{[]int{1, 2, 3, 4}, 1, 4, 1},
		{[]int{10, 0, 5}, 0, 10, 5},
		{[]int{1, 2, 5}, 1, 5, 1},
	}
	for _, tc := range tests {
		lo, hi, step := arrayStats(tc.tasks)
		if lo != tc.lo || hi != tc.hi || step != tc.step {
			t.Errorf("arrayStats(%v) = %d %d %d, want %d %d %d", tc.tasks, lo, hi, step, tc.lo, tc.hi, tc.step)
		}
	}
}

func TestPasswdShell(t *testing.T) {
	p := filepath.Join(t.TempDir(), "passwd")
	data := "root:x:0:0:root:/root:/bin/bash\nalice:x:1501:1501::/home/alice:/bin/zsh\nbroken:x\n"
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		uid  uint32
		want string
	}{
		{0, "/bin/bash"}, {1501, "/bin/zsh"}, {7, ""},
	}
	for _, tc := range tests {
		if got := passwdShell(p, tc.uid); got != tc.want {
			t.Errorf("passwdShell(%d) = %q, want %q", tc.uid, got, tc.want)
		}
	}
	if got := passwdShell(filepath.Join(t.TempDir(), "none"), 0); got != "" {
		t.Errorf("missing file: %q", got)
	}
}

func TestLookupUserRoot(t *testing.T) {
	u := lookupUser(0)
	if u == nil {
		testenv.Unavailable(t, "no passwd entry for uid 0 here")
	}
	if u.Name != "root" || u.Home == "" {
		t.Errorf("root: %+v", u)
	}
}
