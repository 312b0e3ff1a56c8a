package sbatch

import (
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// dryRunJob uses slurmrestd's job-description field names where one
// exists. Fields that are always present come first; the rest are omitted
// when unset.
type dryRunJob struct {
	Name           string   `json:"name"`
	Script         string   `json:"script"`
	Argv           []string `json:"argv"`
	WorkDir        string   `json:"current_working_directory"`
	Environment    []string `json:"environment"`
	Nodes          int      `json:"nodes"`
	Tasks          int      `json:"tasks"`
	CPUsPerTask    int      `json:"cpus_per_task"`
	StandardOutput string   `json:"standard_output"`
	OpenMode       string   `json:"open_mode"`
	Requeue        bool     `json:"requeue"`
	Hold           bool     `json:"hold"`
	Exclusive      bool     `json:"exclusive"`
	Partition      string   `json:"partition,omitempty"`
	Account        string   `json:"account,omitempty"`
	QOS            string   `json:"qos,omitempty"`
	Reservation    string   `json:"reservation,omitempty"`
	BeginTime      string   `json:"begin_time,omitempty"`
	TimeLimit      int64    `json:"time_limit,omitempty"`
	TasksPerNode   int      `json:"tasks_per_node,omitempty"`
	MemoryPerNode  int64    `json:"memory_per_node,omitempty"`
	MemoryPerCPU   int64    `json:"memory_per_cpu,omitempty"`
	GPUsPerNode    int      `json:"gpus_per_node,omitempty"`
	Array          string   `json:"array,omitempty"`
	Dependency     string   `json:"dependency,omitempty"`
	StandardError  string   `json:"standard_error,omitempty"`
	Constraints    string   `json:"constraints,omitempty"`
	RequiredNodes  []string `json:"required_nodes,omitempty"`
	ExcludeNodes   []string `json:"exclude_nodes,omitempty"`
	Comment        string   `json:"comment,omitempty"`
	MailType       string   `json:"mail_type,omitempty"`
	MailUser       string   `json:"mail_user,omitempty"`
	Nice           int      `json:"nice,omitempty"`
	Image          string   `json:"image,omitempty"`
}

// DryRunJSON renders a request for `sbatch --dry-run --json`, indented by
// two spaces and ending in a newline:
//
//	{"job": {...}, "warnings": ["...", ...]}
//
// "job" always holds name, script, argv, current_working_directory,
// environment (sorted "NAME=value" strings), nodes, tasks, cpus_per_task,
// standard_output, open_mode, requeue, hold and exclusive; it holds
// partition, account, qos, reservation, time_limit (whole minutes, rounded up),
// tasks_per_node, memory_per_node and memory_per_cpu (MiB), gpus_per_node,
// array, dependency (both as given), standard_error, constraints (joined
// with "&"), required_nodes, exclude_nodes, comment, mail_type, mail_user,
// nice and image only when set. Lists are [] rather than null when empty.
func DryRunJSON(r *Request) ([]byte, error) {
	s := &r.Spec
	env := make([]string, 0, len(s.Environment))
	for k, v := range s.Environment {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	job := dryRunJob{
		Name:           s.Name,
		Script:         s.Script,
		Argv:           nonNil(s.Argv),
		WorkDir:        s.WorkDir,
		Environment:    env,
		Nodes:          s.Nodes,
		Tasks:          s.Tasks,
		CPUsPerTask:    s.CPUsPerTask,
		StandardOutput: s.Output,
		OpenMode:       s.OpenMode,
		Requeue:        s.Requeue,
		Hold:           s.Hold,
		Exclusive:      s.Exclusive,
		Partition:      s.Partition,
		Account:        s.Account,
		QOS:            s.QOS,
		Reservation:    s.Reservation,
		BeginTime:      beginText(s.BeginTime),
		TimeLimit:      (s.TimeLimitSec + 59) / 60,
		TasksPerNode:   s.TasksPerNode,
		MemoryPerNode:  s.MemoryPerNodeMB,
		MemoryPerCPU:   s.MemoryPerCPUMB,
		GPUsPerNode:    s.GPUsPerNode,
		Array:          s.Array,
		Dependency:     s.Dependency,
		StandardError:  s.Error,
		Constraints:    strings.Join(s.Constraints, "&"),
		RequiredNodes:  s.NodeList,
		ExcludeNodes:   s.ExcludeNodes,
		Comment:        s.Comment,
		MailType:       s.MailType,
		MailUser:       s.MailUser,
		Nice:           s.Nice,
		Image:          s.Image,
	}
	out, err := json.MarshalIndent(struct {
		Job      dryRunJob `json:"job"`
		Warnings []string  `json:"warnings"`
	}{job, nonNil(r.Warnings)}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// beginText is --begin as --test-only shows it ("" when not given).
func beginText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format("2006-01-02T15:04:05")
}
