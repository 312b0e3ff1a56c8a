package sbatch

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

const testCwd = "/home/ana/work"

const plainScript = "#!/bin/bash\necho hello\n"

// testInput reads files from a map keyed by absolute path; the script is
// /home/ana/work/job.sh unless files says otherwise.
func testInput(args []string, env map[string]string, files map[string]string) Input {
	all := map[string]string{testCwd + "/job.sh": plainScript}
	maps.Copy(all, files)
	return Input{
		Args: args,
		Env:  env,
		Cwd:  testCwd,
		Now:  time.Date(2026, 3, 10, 14, 30, 0, 0, time.UTC),
		ReadFile: func(path string) ([]byte, error) {
			if s, ok := all[path]; ok {
				return []byte(s), nil
			}
			return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
		},
		Stdin: strings.NewReader(plainScript),
	}
}

func mustParse(t *testing.T, in Input) *Request {
	t.Helper()
	r, err := Parse(in)
	if err != nil {
		t.Fatalf("Parse(%q): %v", in.Args, err)
	}
	return r
}

func script(directives ...string) string {
	return "#!/bin/bash\n" + strings.Join(directives, "\n") + "\necho run\n"
}

func TestDefaults(t *testing.T) {
	r := mustParse(t, testInput([]string{"job.sh", "a1", "--a2"}, map[string]string{"HOME": "/home/ana"}, nil))
	want := api.JobSpec{
		Name:        "job.sh",
		Script:      plainScript,
		Argv:        []string{"a1", "--a2"},
		WorkDir:     testCwd,
		Environment: map[string]string{"HOME": "/home/ana"},
		Nodes:       1,
		Tasks:       1,
		CPUsPerTask: 1,
		Output:      "slurm-%j.out",
		OpenMode:    "truncate",
		Requeue:     true,
	}
	if got, _ := json.Marshal(r.Spec); string(got) != mustJSON(want) {
		t.Errorf("spec = %s\nwant   %s", got, mustJSON(want))
	}
	if r.Parsable || r.TestOnly || r.DryRun || r.JSON || len(r.Warnings) != 0 {
		t.Errorf("request flags/warnings = %+v", r)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestScriptSources(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		files    map[string]string
		wantName string
		wantText string
	}{
		{"file", []string{"job.sh"}, nil, nil, "job.sh", plainScript},
		{"absolute", []string{"/opt/jobs/x.sbatch"}, nil, map[string]string{"/opt/jobs/x.sbatch": "#!/bin/sh\n"}, "x.sbatch", "#!/bin/sh\n"},
		{"stdin", nil, nil, nil, "sbatch", plainScript},
		{"wrap", []string{"--wrap", "hostname -f"}, nil, nil, "wrap",
			"#!/bin/sh\n# This script was created by sbatch --wrap.\n\nhostname -f\n"},
		{"not relative to --chdir", []string{"-D", "/scratch", "run.sh"}, nil,
			map[string]string{"/scratch/run.sh": "#!/bin/false\n", testCwd + "/run.sh": "#!/bin/sh\n"}, "run.sh", "#!/bin/sh\n"},
		{"dot is not searched along PATH", []string{"./job.sh"}, map[string]string{"PATH": "/opt/bin"},
			map[string]string{"/opt/bin/job.sh": "#!/bin/false\n"}, "job.sh", plainScript},
		{"along PATH", []string{"tool.sh"}, map[string]string{"PATH": "/usr/bin:/opt/bin"}, map[string]string{"/opt/bin/tool.sh": "#!/bin/sh\n"}, "tool.sh", "#!/bin/sh\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustParse(t, testInput(tt.args, tt.env, tt.files))
			if r.Spec.Name != tt.wantName || r.Spec.Script != tt.wantText {
				t.Errorf("name %q script %q; want %q %q", r.Spec.Name, r.Spec.Script, tt.wantName, tt.wantText)
			}
		})
	}
}

// TestOptions checks each implemented option lands in the spec, given on
// the command line and as a directive.
func TestOptions(t *testing.T) {
	nodeFile := map[string]string{"/etc/nodes": "node[1-2] # rack A\nnode4\n\n", testCwd + "/sub/ex": "gpu1,gpu2\n"}
	tests := []struct {
		args  []string
		check func(r *Request) bool
	}{
		{[]string{"-J", "train"}, func(r *Request) bool { return r.Spec.Name == "train" }},
		{[]string{"--job-name=train"}, func(r *Request) bool { return r.Spec.Name == "train" }},
		{[]string{"-p", "gpu"}, func(r *Request) bool { return r.Spec.Partition == "gpu" }},
		{[]string{"--partition=gpu"}, func(r *Request) bool { return r.Spec.Partition == "gpu" }},
		{[]string{"-A", "physics"}, func(r *Request) bool { return r.Spec.Account == "physics" }},
		{[]string{"--account=physics"}, func(r *Request) bool { return r.Spec.Account == "physics" }},
		{[]string{"-q", "high"}, func(r *Request) bool { return r.Spec.QOS == "high" }},
		{[]string{"--qos=high"}, func(r *Request) bool { return r.Spec.QOS == "high" }},
		{[]string{"--reservation=maint"}, func(r *Request) bool { return r.Spec.Reservation == "maint" && len(r.Warnings) == 0 }},
		{[]string{"--reservation", "maint", "-A", "phys", "-q", "high", "--exclusive", "-N", "2", "--ntasks-per-node=4"}, func(r *Request) bool {
			s := r.Spec
			return s.Reservation == "maint" && s.Account == "phys" && s.QOS == "high" && s.Exclusive &&
				s.Nodes == 2 && s.TasksPerNode == 4 && s.Tasks == 8
		}},
		{[]string{"-N", "3"}, func(r *Request) bool { return r.Spec.Nodes == 3 && r.Spec.Tasks == 3 }},
		{[]string{"--nodes=2-4"}, func(r *Request) bool { return r.Spec.Nodes == 2 }},
		{[]string{"-n", "8"}, func(r *Request) bool { return r.Spec.Tasks == 8 && r.Spec.Nodes == 1 }},
		{[]string{"--ntasks=8"}, func(r *Request) bool { return r.Spec.Tasks == 8 }},
		{[]string{"-c", "4"}, func(r *Request) bool { return r.Spec.CPUsPerTask == 4 }},
		{[]string{"--cpus-per-task=4"}, func(r *Request) bool { return r.Spec.CPUsPerTask == 4 }},
		{[]string{"--ntasks-per-node=2", "-N", "3"}, func(r *Request) bool {
			return r.Spec.TasksPerNode == 2 && r.Spec.Tasks == 6 && r.Spec.Nodes == 3
		}},
		{[]string{"--ntasks-per-node=4", "-n", "10"}, func(r *Request) bool { return r.Spec.Nodes == 3 && r.Spec.Tasks == 10 }},
		{[]string{"--mem=4G"}, func(r *Request) bool { return r.Spec.MemoryPerNodeMB == 4096 }},
		{[]string{"--mem-per-cpu=512"}, func(r *Request) bool { return r.Spec.MemoryPerCPUMB == 512 }},
		{[]string{"-t", "1-00:00:00"}, func(r *Request) bool { return r.Spec.TimeLimitSec == 86400 }},
		{[]string{"--time=30"}, func(r *Request) bool { return r.Spec.TimeLimitSec == 1800 }},
		{[]string{"-o", "out-%j.log"}, func(r *Request) bool { return r.Spec.Output == "out-%j.log" && r.Spec.Error == "" }},
		{[]string{"-e", "err.log"}, func(r *Request) bool { return r.Spec.Error == "err.log" }},
		{[]string{"--open-mode=append"}, func(r *Request) bool { return r.Spec.OpenMode == "append" }},
		{[]string{"--open-mode=t"}, func(r *Request) bool { return r.Spec.OpenMode == "truncate" }},
		{[]string{"-a", "1-3%2"}, func(r *Request) bool {
			return r.Spec.Array == "1-3%2" && slices.Equal(r.Spec.ArrayTasks, []int{1, 2, 3}) &&
				r.Spec.ArrayMaxRunning == 2 && r.Spec.Output == "slurm-%A_%a.out"
		}},
		{[]string{"-d", "afterok:12_3,singleton"}, func(r *Request) bool {
			return r.Spec.Dependency == "afterok:12_3,singleton" && len(r.Spec.Dependencies) == 2 &&
				r.Spec.Dependencies[0] == api.Dependency{Type: "afterok", JobID: 12, ArrayTask: 3}
		}},
		{[]string{"--gres=gpu:2"}, func(r *Request) bool { return r.Spec.GPUsPerNode == 2 }},
		{[]string{"--gres=gpu"}, func(r *Request) bool { return r.Spec.GPUsPerNode == 1 }},
		{[]string{"--gres=gpu:a100:4"}, func(r *Request) bool { return r.Spec.GPUsPerNode == 4 && len(r.Warnings) == 1 }},
		{[]string{"--gres=none"}, func(r *Request) bool { return r.Spec.GPUsPerNode == 0 }},
		{[]string{"-G", "4", "-N", "2"}, func(r *Request) bool { return r.Spec.GPUsPerNode == 2 }},
		{[]string{"--gpus=3", "-N", "2"}, func(r *Request) bool { return r.Spec.GPUsPerNode == 2 && len(r.Warnings) == 1 }},
		{[]string{"--gpus-per-node=2"}, func(r *Request) bool { return r.Spec.GPUsPerNode == 2 }},
		{[]string{"--gpus-per-node=2", "--gres=gpu:2"}, func(r *Request) bool { return r.Spec.GPUsPerNode == 2 }},
		{[]string{"-D", "sub/dir"}, func(r *Request) bool { return r.Spec.WorkDir == testCwd+"/sub/dir" }},
		{[]string{"--chdir=/scratch/x/"}, func(r *Request) bool { return r.Spec.WorkDir == "/scratch/x" }},
		{[]string{"-H"}, func(r *Request) bool { return r.Spec.Hold }},
		{[]string{"--hold"}, func(r *Request) bool { return r.Spec.Hold }},
		{[]string{"--no-requeue"}, func(r *Request) bool { return !r.Spec.Requeue }},
		{[]string{"--no-requeue", "--requeue"}, func(r *Request) bool { return r.Spec.Requeue }},
		{[]string{"--requeue", "--no-requeue"}, func(r *Request) bool { return !r.Spec.Requeue }},
		{[]string{"-x", "node[1-3],node1"}, func(r *Request) bool {
			return slices.Equal(r.Spec.ExcludeNodes, []string{"node1", "node2", "node3"})
		}},
		{[]string{"--exclude=sub/ex"}, func(r *Request) bool { return slices.Equal(r.Spec.ExcludeNodes, []string{"gpu1", "gpu2"}) }},
		{[]string{"-w", "node[01-02]"}, func(r *Request) bool {
			return slices.Equal(r.Spec.NodeList, []string{"node01", "node02"}) && r.Spec.Nodes == 2 && r.Spec.Tasks == 2
		}},
		{[]string{"--nodelist=/etc/nodes"}, func(r *Request) bool {
			return slices.Equal(r.Spec.NodeList, []string{"node1", "node2", "node4"}) && r.Spec.Nodes == 3
		}},
		{[]string{"-F", "/etc/nodes"}, func(r *Request) bool { return len(r.Spec.NodeList) == 3 }},
		{[]string{"-w", "n[1-4]", "-n", "2"}, func(r *Request) bool {
			return r.Spec.Nodes == 2 && slices.Equal(r.Spec.NodeList, []string{"n1", "n2"}) && len(r.Warnings) == 1
		}},
		{[]string{"-C", "avx2&ib"}, func(r *Request) bool { return slices.Equal(r.Spec.Constraints, []string{"avx2", "ib"}) }},
		{[]string{"--constraint=a,b,a"}, func(r *Request) bool { return slices.Equal(r.Spec.Constraints, []string{"a", "b"}) }},
		{[]string{"--comment", "two words"}, func(r *Request) bool { return r.Spec.Comment == "two words" }},
		{[]string{"--mail-type=end,fail"}, func(r *Request) bool { return r.Spec.MailType == "END,FAIL" }},
		{[]string{"--mail-type=NONE"}, func(r *Request) bool { return r.Spec.MailType == "" }},
		{[]string{"--mail-user=ana@example.org"}, func(r *Request) bool { return r.Spec.MailUser == "ana@example.org" }},
		{[]string{"--exclusive"}, func(r *Request) bool { return r.Spec.Exclusive }},
		{[]string{"--exclusive=user"}, func(r *Request) bool { return !r.Spec.Exclusive && len(r.Warnings) == 1 }},
		{[]string{"--nice"}, func(r *Request) bool { return r.Spec.Nice == 100 }},
		{[]string{"--nice=-5"}, func(r *Request) bool { return r.Spec.Nice == -5 }},
		{[]string{"--parsable"}, func(r *Request) bool { return r.Parsable }},
		{[]string{"--test-only"}, func(r *Request) bool { return r.TestOnly }},
		{[]string{"--dry-run", "--json"}, func(r *Request) bool { return r.DryRun && r.JSON }},
		{[]string{"--image=img/layout"}, func(r *Request) bool { return r.Spec.Image == testCwd+"/img/layout" }},
		{[]string{"--image", "/srv/alpine.tar"}, func(r *Request) bool { return r.Spec.Image == "/srv/alpine.tar" }},
		{[]string{"-t", "UNLIMITED"}, func(r *Request) bool { return r.Spec.TimeLimitSec == 0 && len(r.Warnings) == 1 }},
		{[]string{"--mem=0"}, func(r *Request) bool { return r.Spec.MemoryPerNodeMB == 0 && len(r.Warnings) == 1 }},
		// getopt_long accepts unambiguous prefixes.
		{[]string{"--part=debug", "--job", "x", "--cpus-per-t=2"}, func(r *Request) bool {
			return r.Spec.Partition == "debug" && r.Spec.Name == "x" && r.Spec.CPUsPerTask == 2
		}},
		// Short options cluster, and take their value attached or apart.
		{[]string{"-HN2", "-n4", "-J", "x"}, func(r *Request) bool {
			return r.Spec.Hold && r.Spec.Nodes == 2 && r.Spec.Tasks == 4 && r.Spec.Name == "x"
		}},
		{[]string{"--", "job.sh", "-J", "x"}, func(r *Request) bool {
			return r.Spec.Name == "job.sh" && slices.Equal(r.Spec.Argv, []string{"-J", "x"})
		}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := tt.args
			if !slices.Contains(args, "job.sh") {
				args = append(slices.Clone(args), "job.sh")
			}
			r := mustParse(t, testInput(args, nil, nodeFile))
			if !tt.check(r) {
				t.Errorf("command line: spec %+v warnings %q", r.Spec, r.Warnings)
			}
			if slices.Contains(tt.args, "--") {
				return
			}
			dir := "#SBATCH " + quoteWords(tt.args)
			r = mustParse(t, testInput([]string{"s.sh"}, nil, merge(nodeFile, map[string]string{testCwd + "/s.sh": script(dir)})))
			r.Spec.Name = strings.Replace(r.Spec.Name, "s.sh", "job.sh", 1)
			if !tt.check(r) {
				t.Errorf("directive %q: spec %+v warnings %q", dir, r.Spec, r.Warnings)
			}
		})
	}
}

func quoteWords(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + a + "'"
	}
	return strings.Join(q, " ")
}

func merge(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

func TestPrecedence(t *testing.T) {
	files := map[string]string{testCwd + "/job.sh": script("#SBATCH -J dir --time=10 -p dirpart -A diracct --mem=1G")}
	env := map[string]string{"SBATCH_JOB_NAME": "env", "SBATCH_TIMELIMIT": "20", "SBATCH_PARTITION": "envpart"}

	r := mustParse(t, testInput([]string{"job.sh"}, nil, files))
	if r.Spec.Name != "dir" || r.Spec.TimeLimitSec != 600 || r.Spec.Partition != "dirpart" {
		t.Errorf("directives only: %+v", r.Spec)
	}
	r = mustParse(t, testInput([]string{"job.sh"}, env, files))
	if r.Spec.Name != "env" || r.Spec.TimeLimitSec != 1200 || r.Spec.Partition != "envpart" || r.Spec.Account != "diracct" {
		t.Errorf("env over directives: %+v", r.Spec)
	}
	r = mustParse(t, testInput([]string{"-J", "cli", "--partition=clipart", "job.sh"}, env, files))
	if r.Spec.Name != "cli" || r.Spec.TimeLimitSec != 1200 || r.Spec.Partition != "clipart" {
		t.Errorf("command line over env: %+v", r.Spec)
	}
	// A --mem-per-cpu on the command line drops --mem from the environment
	// (and the reverse), as in Slurm.
	r = mustParse(t, testInput([]string{"--mem-per-cpu=100", "job.sh"}, map[string]string{"SBATCH_MEM_PER_NODE": "5G"}, nil))
	if r.Spec.MemoryPerCPUMB != 100 || r.Spec.MemoryPerNodeMB != 0 {
		t.Errorf("cli --mem-per-cpu over env --mem: %+v", r.Spec)
	}
	r = mustParse(t, testInput([]string{"--mem=2G", "job.sh"}, map[string]string{"SBATCH_MEM_PER_CPU": "5G"}, nil))
	if r.Spec.MemoryPerCPUMB != 0 || r.Spec.MemoryPerNodeMB != 2048 {
		t.Errorf("cli --mem over env --mem-per-cpu: %+v", r.Spec)
	}
}

func TestEnvironmentVariables(t *testing.T) {
	tests := []struct {
		env   map[string]string
		check func(s *api.JobSpec) bool
	}{
		{map[string]string{"SBATCH_ACCOUNT": "a"}, func(s *api.JobSpec) bool { return s.Account == "a" }},
		{map[string]string{"SBATCH_ARRAY_INX": "0-3"}, func(s *api.JobSpec) bool { return len(s.ArrayTasks) == 4 }},
		{map[string]string{"SBATCH_CONSTRAINT": "x&y"}, func(s *api.JobSpec) bool { return len(s.Constraints) == 2 }},
		{map[string]string{"SBATCH_ERROR": "e.log"}, func(s *api.JobSpec) bool { return s.Error == "e.log" }},
		{map[string]string{"SBATCH_OUTPUT": "o.log"}, func(s *api.JobSpec) bool { return s.Output == "o.log" }},
		{map[string]string{"SBATCH_EXCLUSIVE": ""}, func(s *api.JobSpec) bool { return s.Exclusive }},
		{map[string]string{"SBATCH_EXPORT": "NONE"}, func(s *api.JobSpec) bool { return len(s.Environment) == 0 }},
		{map[string]string{"SBATCH_GPUS": "2"}, func(s *api.JobSpec) bool { return s.GPUsPerNode == 2 }},
		{map[string]string{"SBATCH_GPUS_PER_NODE": "3"}, func(s *api.JobSpec) bool { return s.GPUsPerNode == 3 }},
		{map[string]string{"SBATCH_GRES": "gpu:1"}, func(s *api.JobSpec) bool { return s.GPUsPerNode == 1 }},
		{map[string]string{"SBATCH_JOB_NAME": "n"}, func(s *api.JobSpec) bool { return s.Name == "n" }},
		{map[string]string{"SBATCH_MEM_PER_CPU": "1G"}, func(s *api.JobSpec) bool { return s.MemoryPerCPUMB == 1024 }},
		{map[string]string{"SBATCH_MEM_PER_NODE": "1G"}, func(s *api.JobSpec) bool { return s.MemoryPerNodeMB == 1024 }},
		{map[string]string{"SBATCH_NO_REQUEUE": "1"}, func(s *api.JobSpec) bool { return !s.Requeue }},
		{map[string]string{"SBATCH_NO_REQUEUE": "1", "SBATCH_REQUEUE": "1"}, func(s *api.JobSpec) bool { return s.Requeue }},
		{map[string]string{"SBATCH_OPEN_MODE": "append"}, func(s *api.JobSpec) bool { return s.OpenMode == "append" }},
		{map[string]string{"SBATCH_PARTITION": "p"}, func(s *api.JobSpec) bool { return s.Partition == "p" }},
		{map[string]string{"SBATCH_QOS": "q"}, func(s *api.JobSpec) bool { return s.QOS == "q" }},
		{map[string]string{"SBATCH_RESERVATION": "r"}, func(s *api.JobSpec) bool { return s.Reservation == "r" }},
		{map[string]string{"SBATCH_TIMELIMIT": "1:00:00"}, func(s *api.JobSpec) bool { return s.TimeLimitSec == 3600 }},
	}
	for _, tt := range tests {
		r := mustParse(t, testInput([]string{"job.sh"}, tt.env, nil))
		if !tt.check(&r.Spec) {
			t.Errorf("env %v: spec %+v", tt.env, r.Spec)
		}
	}
}

func TestExport(t *testing.T) {
	env := map[string]string{"HOME": "/h", "PATH": "/bin", "SLURM_CONF": "/etc/slurm.conf", "EDITOR": "vi"}
	tests := []struct {
		export string
		want   map[string]string
	}{
		{"", env},
		{"ALL", env},
		{"all", env},
		{"NONE", map[string]string{"SLURM_CONF": "/etc/slurm.conf"}},
		{"HOME,EDITOR=emacs,MISSING", map[string]string{"SLURM_CONF": "/etc/slurm.conf", "HOME": "/h", "EDITOR": "emacs"}},
		{"ALL,EDITOR=emacs", merge(env, map[string]string{"EDITOR": "emacs"})},
		{"EDITOR=emacs,ALL", env},
		{`A="x,y",B='z'`, map[string]string{"SLURM_CONF": "/etc/slurm.conf", "A": "x,y", "B": "z"}},
		{"X=", map[string]string{"SLURM_CONF": "/etc/slurm.conf", "X": ""}},
	}
	for _, tt := range tests {
		args := []string{"job.sh"}
		if tt.export != "" {
			args = []string{"--export=" + tt.export, "job.sh"}
		}
		r := mustParse(t, testInput(args, env, nil))
		if !maps.Equal(r.Spec.Environment, tt.want) {
			t.Errorf("--export=%s: environment %v, want %v", tt.export, r.Spec.Environment, tt.want)
		}
	}
}

func TestDirectives(t *testing.T) {
	tests := []struct {
		name   string
		script string
		check  func(r *Request) bool
	}{
		{"stop at first command", script("#SBATCH -J first", "hostname", "#SBATCH -J second", "#SBATCH --bogus"),
			func(r *Request) bool { return r.Spec.Name == "first" }},
		{"comments and blank lines keep parsing", script("", "# note", "   # indented note", "\t", "#SBATCH -J kept"),
			func(r *Request) bool { return r.Spec.Name == "kept" }},
		{"indented #SBATCH is a comment", script("  #SBATCH -J ignored"),
			func(r *Request) bool { return r.Spec.Name == "s.sh" }},
		{"quotes and escapes", script(`#SBATCH --comment="a b" -J 'c d' --mail-user=e\ f`),
			func(r *Request) bool {
				return r.Spec.Comment == "a b" && r.Spec.Name == "c d" && r.Spec.MailUser == "e f"
			}},
		{"trailing comment", script("#SBATCH -J x # -J y", "#SBATCH --comment=a#b"),
			func(r *Request) bool { return r.Spec.Name == "x" && r.Spec.Comment == "a" }},
		{"quoted hash", script(`#SBATCH --comment="a#b"`),
			func(r *Request) bool { return r.Spec.Comment == "a#b" }},
		{"several per line", script("#SBATCH -J foo --time=5 -N2"),
			func(r *Request) bool { return r.Spec.Name == "foo" && r.Spec.TimeLimitSec == 300 && r.Spec.Nodes == 2 }},
		{"empty directive", script("#SBATCH", "#SBATCH   ", "#SBATCH -J x"),
			func(r *Request) bool { return r.Spec.Name == "x" }},
		{"last directive wins", script("#SBATCH -J a", "#SBATCH -J b"),
			func(r *Request) bool { return r.Spec.Name == "b" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustParse(t, testInput([]string{"s.sh"}, nil, map[string]string{testCwd + "/s.sh": tt.script}))
			if !tt.check(r) {
				t.Errorf("spec %+v", r.Spec)
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		script string
		want   []string
	}{
		{"command line", []string{"--wckey=w1", "job.sh"}, nil, "",
			[]string{"option --wckey is not implemented by Stockade yet; ignored"}},
		{"short form with argument", []string{"-M", "c1", "-J", "x", "job.sh"}, nil, "",
			[]string{"option --clusters is not implemented by Stockade yet; ignored"}},
		{"directive", []string{"job.sh"}, nil, script("#SBATCH --mincpus=2 --reservation=r1 --wckey=w"),
			[]string{"option --mincpus is not implemented by Stockade yet; ignored",
				"option --wckey is not implemented by Stockade yet; ignored"}},
		{"repeated once", []string{"-v", "-vv", "job.sh"}, nil, "",
			[]string{"option --verbose is not implemented by Stockade yet; ignored"}},
		{"optional argument", []string{"--get-user-env", "--propagate=STACK", "-k", "job.sh"}, nil, "",
			[]string{"option --get-user-env is not implemented by Stockade yet; ignored",
				"option --propagate is not implemented by Stockade yet; ignored",
				"option --no-kill is not implemented by Stockade yet; ignored"}},
		{"environment", []string{"job.sh"}, map[string]string{"SBATCH_WCKEY": "w", "SLURM_HINT": "nomultithread"}, "",
			[]string{"option --hint (from SLURM_HINT) is not implemented by Stockade yet; ignored",
				"option --wckey (from SBATCH_WCKEY) is not implemented by Stockade yet; ignored"}},
		{"other gres", []string{"--gres=gpu:1,mps:100", "job.sh"}, nil, "",
			[]string{`option --gres=mps:100: generic resource "mps" is not implemented by Stockade yet; ignored`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{}
			if tt.script != "" {
				files[testCwd+"/job.sh"] = tt.script
			}
			r := mustParse(t, testInput(tt.args, tt.env, files))
			if !slices.Equal(r.Warnings, tt.want) {
				t.Errorf("warnings %q, want %q", r.Warnings, tt.want)
			}
		})
	}
}

// TestEveryIgnoredOption accepts each Slurm option Stockade does not
// implement, in long and short form, with a warning naming it.
func TestEveryIgnoredOption(t *testing.T) {
	for _, d := range ignored {
		forms := [][]string{{"--" + d.long}}
		if d.short != "" {
			forms = append(forms, []string{"-" + d.short})
		}
		for _, form := range forms {
			if d.arg == reqArg {
				form = append(form, "x")
			}
			args := append(form, "job.sh")
			r, err := Parse(testInput(args, nil, nil))
			if err != nil {
				t.Errorf("Parse(%q): %v", args, err)
				continue
			}
			want := fmt.Sprintf("option --%s is not implemented by Stockade yet; ignored", d.long)
			if !slices.Equal(r.Warnings, []string{want}) || r.Spec.Name != "job.sh" {
				t.Errorf("Parse(%q): warnings %q name %q", args, r.Warnings, r.Spec.Name)
			}
		}
	}
}

// job returns files holding job.sh with the given text.
func job(text string) map[string]string { return map[string]string{testCwd + "/job.sh": text} }

func TestErrors(t *testing.T) {
	big := "#!/bin/sh\n" + strings.Repeat("# padding line\n", 10<<20/15)
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		files map[string]string // nil: job.sh is plainScript
		want  string
	}{
		{"bad time on command line", []string{"--time=abc", "job.sh"}, nil, nil, `--time: invalid time "abc"`},
		{"bad time short form", []string{"-t", "abc", "job.sh"}, nil, nil, `--time: invalid time "abc"`},
		{"bad time in directive", []string{"job.sh"}, nil, job(script("# x", "#SBATCH --time=abc")), `line 3: --time: invalid time "abc"`},
		{"bad time in environment", []string{"job.sh"}, map[string]string{"SBATCH_TIMELIMIT": "abc"}, nil, `SBATCH_TIMELIMIT: invalid time "abc"`},
		{"array end before start", []string{"--array=5-1", "job.sh"}, nil, nil, "--array: array range 5-1: end before start"},
		{"array too big", []string{"-a", "0-1001", "job.sh"}, nil, nil, "--array: array task id 1001 is above the maximum 1000"},
		{"bad memory", []string{"--mem=lots", "job.sh"}, nil, nil, `--mem: invalid memory size "lots"`},
		{"mem and mem-per-cpu", []string{"--mem=1G", "--mem-per-cpu=1G", "job.sh"}, nil, nil, "--mem and --mem-per-cpu are mutually exclusive"},
		{"mem and mem-per-cpu across directive and command line", []string{"--mem=1G", "job.sh"}, nil,
			job(script("#SBATCH --mem-per-cpu=1G")), "--mem and --mem-per-cpu are mutually exclusive"},
		{"mem and mem-per-cpu both from env", []string{"job.sh"}, map[string]string{"SBATCH_MEM_PER_NODE": "1", "SBATCH_MEM_PER_CPU": "1"}, nil,
			"--mem and --mem-per-cpu are mutually exclusive"},
		{"unknown long option", []string{"--frobnicate", "job.sh"}, nil, nil, "unrecognized option '--frobnicate'"},
		{"unknown short option", []string{"-z", "job.sh"}, nil, nil, "invalid option -- 'z'"},
		{"unknown option in directive", []string{"job.sh"}, nil, job(script("#SBATCH --frobnicate=1")), "line 2: unrecognized option '--frobnicate'"},
		{"removed checkpoint option", []string{"--checkpoint=5", "job.sh"}, nil, nil, "unrecognized option '--checkpoint'"},
		{"salloc-only option", []string{"--kill-command", "job.sh"}, nil, nil, "unrecognized option '--kill-command'"},
		{"ambiguous prefix", []string{"--mem-per=1", "job.sh"}, nil, nil, "option '--mem-per' is ambiguous; possibilities: '--mem-per-cpu' '--mem-per-gpu'"},
		{"missing argument", []string{"--time"}, nil, nil, "option '--time' requires an argument"},
		{"missing argument short", []string{"-t"}, nil, nil, "option '--time' requires an argument"},
		{"flag with value", []string{"--hold=yes", "job.sh"}, nil, nil, "option '--hold' doesn't allow an argument"},
		{"bad syntax", []string{"---x", "job.sh"}, nil, nil, "unrecognized option '---x'"},
		{"invalid directive word", []string{"job.sh"}, nil, job(script("#SBATCH -J x extra")), "line 2: invalid directive found in batch script: extra"},
		{"unmatched quote", []string{"job.sh"}, nil, job(script(`#SBATCH --comment="open`)), `line 2: unmatched "`},
		{"wrap with script", []string{"--wrap=true", "job.sh"}, nil, nil, "script arguments not permitted with --wrap option"},
		{"no interpreter", []string{"job.sh"}, nil, job("echo hi\n"),
			"This does not look like a batch script. The first line must start with #! followed by the path to an interpreter. For instance: #!/bin/sh"},
		{"empty script", []string{"job.sh"}, nil, job(""), "batch script is empty"},
		{"10 MB script", []string{"job.sh"}, nil, job(big), "batch script is larger than 4194304 bytes (4 MiB, Slurm's default max_script_size)"},
		{"NUL byte", []string{"job.sh"}, nil, job("#!/bin/sh\necho\n\x00\x01\x02"), "script contains binary data at line 3"},
		{"binary garbage", []string{"job.sh"}, nil, job("\x7fELF\x02\x01\x01\xff\xfe"), "script contains binary data at line 1"},
		{"DOS line breaks", []string{"job.sh"}, nil, job("#!/bin/sh\r\necho\r\n"), `batch script contains DOS line breaks (\r\n) instead of expected UNIX line breaks (\n)`},
		{"missing script file", []string{"nope.sh"}, nil, nil, `unable to open batch script "nope.sh": open /home/ana/work/nope.sh: file does not exist`},
		{"OR dependency", []string{"-d", "afterok:1?afterok:2", "job.sh"}, nil, nil,
			"--dependency: OR dependencies (?) are not supported by Stockade yet; use ',' (all must be satisfied)"},
		{"bad node count", []string{"-N", "0", "job.sh"}, nil, nil, `--nodes: invalid node count "0"`},
		{"bad node range", []string{"-N", "4-2", "job.sh"}, nil, nil, `--nodes: invalid node count "4-2"`},
		{"bad ntasks", []string{"-n", "x", "job.sh"}, nil, nil, `--ntasks: invalid count "x"`},
		{"bad host list", []string{"-w", "node[1-", "job.sh"}, nil, nil, `--nodelist: hostlist "node[1-": unclosed '['`},
		{"missing node file", []string{"-x", "./ex", "job.sh"}, nil, nil, "--exclude: reading node file: open /home/ana/work/ex: file does not exist"},
		{"OR constraint", []string{"-C", "a|b", "job.sh"}, nil, nil, `--constraint: constraint "a|b": only features joined with & are supported by Stockade yet`},
		{"gpu disagreement", []string{"--gres=gpu:1", "--gpus-per-node=2", "job.sh"}, nil, nil,
			"--gpus-per-node=2 and --gres=gpu:1 ask for different numbers of GPUs per node"},
		{"bad mail type", []string{"--mail-type=SOMETIMES", "job.sh"}, nil, nil, `--mail-type: invalid mail type "SOMETIMES"`},
		{"bad open mode", []string{"--open-mode=x", "job.sh"}, nil, nil, `--open-mode: invalid open mode "x" (append or truncate)`},
		{"bad exclusive", []string{"job.sh"}, map[string]string{"SBATCH_EXCLUSIVE": "1"}, nil, `SBATCH_EXCLUSIVE: invalid --exclusive specification "1"`},
		{"nice out of range", []string{"--nice=9999999999", "job.sh"}, nil, nil, "--nice: nice value 9999999999 out of range (+/- 2147483645)"},
		{"heterogeneous job", []string{"-N1", ":", "-N2", "job.sh"}, nil, nil, "heterogeneous jobs (':') are not supported by Stockade yet"},
		{"hetjob directive", []string{"job.sh"}, nil, job(script("#SBATCH -N1", "#SBATCH hetjob")), "line 3: heterogeneous jobs are not supported by Stockade yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse(testInput(tt.args, tt.env, tt.files))
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want error %q", tt.args, r.Spec, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Parse(%q) error\n got %q\nwant %q", tt.args, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error has more than one line: %q", err)
			}
		})
	}
}

func TestStdinLimit(t *testing.T) {
	in := testInput(nil, nil, nil)
	in.Stdin = strings.NewReader("#!/bin/sh\n" + strings.Repeat("x", MaxScriptSize))
	if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized stdin script: %v", err)
	}
	in.Stdin = nil
	if _, err := Parse(in); err == nil || err.Error() != "no batch script given" {
		t.Errorf("no script: %v", err)
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"--usage"}, {"--help", "job.sh"}} {
		if _, err := Parse(testInput(args, nil, nil)); err != ErrHelp {
			t.Errorf("Parse(%q) = %v, want ErrHelp", args, err)
		}
	}
	for _, args := range [][]string{{"-V"}, {"--version"}} {
		if _, err := Parse(testInput(args, nil, nil)); err != ErrVersion {
			t.Errorf("Parse(%q) = %v, want ErrVersion", args, err)
		}
	}
	u := Usage()
	if !strings.Contains(u, "--job-name") || strings.Contains(u, "--wckey") {
		t.Errorf("Usage() should list implemented options only:\n%s", u)
	}
}

func TestDryRunJSON(t *testing.T) {
	r := mustParse(t, testInput([]string{"-J", "j", "-t", "90:30", "--mem=2G", "-N", "2", "-C", "a&b", "-w", "n[1-2]",
		"--gpus-per-node=1", "--reservation=maint", "--wckey=w", "job.sh", "x"}, map[string]string{"B": "2", "A": "1"}, nil))
	out, err := DryRunJSON(r)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Job      map[string]any `json:"job"`
		Warnings []string       `json:"warnings"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("invalid JSON %s: %v", out, err)
	}
	want := map[string]any{
		"name": "j", "script": plainScript, "argv": []any{"x"}, "current_working_directory": testCwd,
		"environment": []any{"A=1", "B=2"}, "nodes": 2.0, "tasks": 2.0, "cpus_per_task": 1.0,
		"standard_output": "slurm-%j.out", "open_mode": "truncate", "requeue": true, "hold": false,
		"exclusive": false, "time_limit": 91.0, "memory_per_node": 2048.0, "constraints": "a&b",
		"required_nodes": []any{"n1", "n2"}, "gpus_per_node": 1.0, "reservation": "maint",
	}
	if mustJSON(got.Job) != mustJSON(want) {
		t.Errorf("job\n got %s\nwant %s", mustJSON(got.Job), mustJSON(want))
	}
	if !slices.Equal(got.Warnings, []string{"option --wckey is not implemented by Stockade yet; ignored"}) {
		t.Errorf("warnings %q", got.Warnings)
	}
	if !strings.HasPrefix(string(out), "{\n  \"job\": {\n    \"name\": \"j\",") || !strings.HasSuffix(string(out), "}\n") {
		t.Errorf("layout:\n%s", out)
	}

	r = mustParse(t, testInput([]string{"job.sh"}, nil, nil))
	out, _ = DryRunJSON(r)
	for _, absent := range []string{"time_limit", "partition", "memory_per_node", "array"} {
		if strings.Contains(string(out), `"`+absent+`"`) {
			t.Errorf("unset %s present:\n%s", absent, out)
		}
	}
	for _, empty := range []string{`"warnings": []`, `"argv": []`, `"environment": []`} {
		if !strings.Contains(string(out), empty) {
			t.Errorf("want %s in:\n%s", empty, out)
		}
	}
}

func TestSignalOption(t *testing.T) {
	tests := []struct {
		in     string
		sig    int
		before int
		batch  bool
		err    string
	}{
		{in: "USR1", sig: 10, before: 60},
		{in: "B:USR2@90", sig: 12, before: 90, batch: true},
		{in: "SIGTERM@0", sig: 15, before: 0},
		{in: "b:10@65535", sig: 10, before: 65535, batch: true},
		{in: "usr1@5", sig: 10, before: 5},
		{in: "R:USR1", err: "R flag"},
		{in: "X:USR1", err: "invalid flag"},
		{in: "USR9", err: `invalid signal "USR9"`},
		{in: "65", err: `invalid signal "65"`},
		{in: "", err: "invalid signal"},
		{in: "USR1@-1", err: `invalid time "-1"`},
		{in: "USR1@65536", err: "invalid time"},
		{in: "USR1@x", err: "invalid time"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			sig, before, batch, err := ParseSignalOption(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.HasPrefix(err.Error(), "--signal=") {
					t.Fatalf("error %v, want one naming --signal and %q", err, tt.err)
				}
				return
			}
			if err != nil || sig != tt.sig || before != tt.before || batch != tt.batch {
				t.Errorf("got %d %d %v %v, want %d %d %v", sig, before, batch, err, tt.sig, tt.before, tt.batch)
			}
		})
	}
	// Through a directive and the environment, into the job.
	r := mustParse(t, testInput([]string{"job.sh"}, map[string]string{"SBATCH_SIGNAL": "B:USR2@90"},
		map[string]string{testCwd + "/job.sh": script("#SBATCH --signal=USR1")}))
	if s := r.Spec; s.WarnSignal != 12 || s.WarnTimeSec != 90 || !s.WarnBatchOnly || len(r.Warnings) != 0 {
		t.Errorf("spec signal %d@%d batch %v, warnings %q; want the environment's B:USR2@90", s.WarnSignal, s.WarnTimeSec, s.WarnBatchOnly, r.Warnings)
	}
}
