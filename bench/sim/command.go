package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// WorkloadInfo describes the replayed workload in reports.
type WorkloadInfo struct {
	Name        string  `json:"name"`
	Jobs        int     `json:"jobs"`
	Skipped     int     `json:"skipped"`
	Oversize    int     `json:"oversize"`
	Nodes       int     `json:"nodes"`
	CPUsPerNode int     `json:"cpus_per_node"`
	OfferedLoad float64 `json:"offered_load"`
	LoadScale   float64 `json:"load_scale,omitempty"`
}

// Report is what the command prints with --json.
type Report struct {
	Workload *WorkloadInfo  `json:"workload,omitempty"`
	Runs     []*Result      `json:"runs,omitempty"`
	Stress   []StressResult `json:"stress,omitempty"`
}

type options struct {
	trace       string
	synthetic   int
	stress      bool
	nodes       int
	cpus        int
	policy      string
	limit       int
	maxPassJobs int
	interval    int64
	load        float64
	loadScale   float64
	seed        uint64
	users       int
	pending     int
	passes      int
	tau         int64
	json        bool
}

// NewCommand returns "stockade sim".
func NewCommand() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "sim (--trace FILE.swf[.gz] | --synthetic JOBS | --stress) [flags]",
		Short: "Replay a workload through the scheduler in virtual time",
		Long: `Replay a workload through the real scheduler in virtual time, on simulated nodes,
and report utilization, wait times, bounded slowdown and the cost of each pass.

  --trace FILE       a Standard Workload Format trace (gzipped or not); the machine
                     defaults to the trace header's MaxNodes and MaxProcs
  --synthetic JOBS   generated jobs (power-of-two sizes, log-uniform run times,
                     Poisson arrivals at --load); 10,000 nodes × 32 CPUs by default
  --stress           time single passes: --nodes × --cpus-per-node, half the CPUs
                     held by running jobs, --pending jobs queued

A job asking for P processors runs on ceil(P/C) nodes with P spread evenly over
them (C = --cpus-per-node). Jobs without a requested time get their run time
as limit; jobs running past their limit are killed at it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.trace, "trace", "", "SWF trace to replay")
	f.IntVar(&o.synthetic, "synthetic", 0, "generate this many jobs")
	f.BoolVar(&o.stress, "stress", false, "time single passes over a large, half-busy cluster with a deep queue")
	f.IntVar(&o.nodes, "nodes", 0, "nodes (default: trace header, or 10000)")
	f.IntVar(&o.cpus, "cpus-per-node", 0, "CPUs per node (default: trace header, or 32)")
	f.StringVar(&o.policy, "policy", "all", "fifo, priority, backfill, a comma-separated list, or all")
	f.IntVar(&o.limit, "limit", 0, "replay only the first N jobs of the trace")
	f.IntVar(&o.maxPassJobs, "max-pass-jobs", 0, "placements per pass, as the leader caps them (0: unlimited)")
	f.Int64Var(&o.interval, "interval", 0, "run passes every N virtual seconds instead of at every event")
	f.Float64Var(&o.load, "load", 0.9, "offered load of --synthetic")
	f.Float64Var(&o.loadScale, "load-scale", 1, "compress inter-arrival times to multiply the offered load by this")
	f.Uint64Var(&o.seed, "seed", 1, "seed of --synthetic and --stress")
	f.IntVar(&o.users, "users", 100, "users of --synthetic and --stress")
	f.IntVar(&o.pending, "pending", 100_000, "pending jobs of --stress")
	f.IntVar(&o.passes, "passes", 3, "timed passes per policy of --stress")
	f.Int64Var(&o.tau, "tau", DefaultTau, "bounded slowdown threshold in seconds")
	f.BoolVar(&o.json, "json", false, "print JSON")
	return cmd
}

// policies expands --policy.
func policies(s string) ([]string, error) {
	if s == "all" {
		return Policies, nil
	}
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(Policies, p) {
			return nil, fmt.Errorf("--policy: unknown policy %q (fifo, priority, backfill or all)", p)
		}
		out = append(out, p)
	}
	return out, nil
}

func (o *options) run(out io.Writer) error {
	modes := 0
	for _, on := range []bool{o.trace != "", o.synthetic > 0, o.stress} {
		if on {
			modes++
		}
	}
	if modes != 1 {
		return errors.New("give exactly one of --trace, --synthetic and --stress")
	}
	pols, err := policies(o.policy)
	if err != nil {
		return err
	}
	if o.loadScale <= 0 || math.IsInf(o.loadScale, 0) {
		return errors.New("--load-scale: must be positive")
	}
	if o.nodes < 0 || o.cpus < 0 {
		return errors.New("--nodes and --cpus-per-node: must be positive")
	}
	rep := &Report{}
	if o.stress {
		nodes, cpus := orDefault(o.nodes, 10_000), orDefault(o.cpus, 32)
		rep.Stress, err = Stress(StressConfig{Nodes: nodes, CPUsPerNode: cpus, Pending: o.pending, Passes: o.passes,
			MaxPassJobs: o.maxPassJobs, Users: o.users, Seed: o.seed}, pols)
		if err != nil {
			return err
		}
		return o.print(out, rep)
	}
	var w *Workload
	var nodes, cpus int
	if o.trace != "" {
		if w, err = ReadSWF(o.trace, o.limit); err != nil {
			return err
		}
		w.Name = filepath.Base(o.trace)
		nodes, cpus = traceMachine(w, o.nodes, o.cpus)
		if nodes == 0 {
			return errors.New("the trace header gives no MaxNodes or MaxProcs: give --nodes")
		}
	} else {
		nodes, cpus = orDefault(o.nodes, 10_000), orDefault(o.cpus, 32)
		w, err = Synthetic(SyntheticConfig{Jobs: o.synthetic, Nodes: nodes, CPUsPerNode: cpus, Load: o.load,
			Users: o.users, Seed: o.seed})
		if err != nil {
			return err
		}
	}
	cfg := Config{Nodes: nodes, CPUsPerNode: cpus, MaxPassJobs: o.maxPassJobs, Interval: o.interval, Tau: o.tau}
	info := &WorkloadInfo{Name: w.Name, Skipped: w.Skipped, Nodes: nodes, CPUsPerNode: cpus}
	w.Jobs = slices.DeleteFunc(w.Jobs, func(j Job) bool {
		if cfg.Fits(&j) {
			return false
		}
		info.Oversize++
		return true
	})
	if o.loadScale != 1 {
		compress(w, o.loadScale)
		info.LoadScale = o.loadScale
	}
	info.Jobs = len(w.Jobs)
	info.OfferedLoad = OfferedLoad(w, nodes, cpus)
	rep.Workload = info
	for _, p := range pols {
		cfg.Policy = p
		r, err := Run(w, cfg)
		if err != nil {
			return err
		}
		rep.Runs = append(rep.Runs, r)
	}
	return o.print(out, rep)
}

func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// traceMachine sizes the machine from the flags and the trace header.
func traceMachine(w *Workload, nodes, cpus int) (int, int) {
	procs := w.MaxProcs
	if procs == 0 {
		procs = w.MaxNodes
	}
	hnodes := w.MaxNodes
	if hnodes == 0 {
		hnodes = procs
	}
	switch {
	case nodes > 0 && cpus > 0:
	case nodes > 0:
		cpus = max(procs/nodes, 1)
	case cpus > 0:
		nodes = (procs + cpus - 1) / cpus
	default:
		nodes, cpus = hnodes, 1
		if hnodes > 0 {
			cpus = max(procs/hnodes, 1)
		}
	}
	return nodes, cpus
}

// compress divides the time since the first submission by scale, the usual
// way to replay a trace at a higher load.
func compress(w *Workload, scale float64) {
	if len(w.Jobs) == 0 {
		return
	}
	first := w.Jobs[0].Submit
	for i := range w.Jobs {
		w.Jobs[i].Submit = first + int64(float64(w.Jobs[i].Submit-first)/scale)
	}
}

func (o *options) print(out io.Writer, rep *Report) error {
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	if w := rep.Workload; w != nil {
		fmt.Fprintf(tw, "workload %s: %d jobs (%d records skipped, %d larger than the machine), %d nodes × %d CPUs, offered load %.2f",
			w.Name, w.Jobs, w.Skipped, w.Oversize, w.Nodes, w.CPUsPerNode, w.OfferedLoad)
		if w.LoadScale != 0 {
			fmt.Fprintf(tw, " (arrivals compressed %.2f×)", w.LoadScale)
		}
		fmt.Fprintln(tw)
		row(tw, "policy", rep.Runs, func(r *Result) string { return r.Policy })
		row(tw, "jobs completed", rep.Runs, func(r *Result) string { return fmt.Sprint(r.Completed) })
		row(tw, "killed at time limit", rep.Runs, func(r *Result) string { return fmt.Sprint(r.TimedOut) })
		row(tw, "never started", rep.Runs, func(r *Result) string { return fmt.Sprint(r.Unstarted) })
		row(tw, "rejected placements", rep.Runs, func(r *Result) string { return fmt.Sprint(r.Rejected) })
		row(tw, "utilization", rep.Runs, func(r *Result) string { return fmt.Sprintf("%.1f%%", 100*r.Utilization) })
		row(tw, "  while jobs arrive", rep.Runs, func(r *Result) string { return fmt.Sprintf("%.1f%%", 100*r.ArrivalUtilization) })
		row(tw, "makespan", rep.Runs, func(r *Result) string { return duration(float64(r.MakespanSec)) })
		row(tw, "mean wait", rep.Runs, func(r *Result) string { return duration(r.MeanWaitSec) })
		row(tw, "p95 wait", rep.Runs, func(r *Result) string { return duration(r.P95WaitSec) })
		row(tw, "max wait", rep.Runs, func(r *Result) string { return duration(r.MaxWaitSec) })
		row(tw, "mean bounded slowdown", rep.Runs, func(r *Result) string { return fmt.Sprintf("%.2f", r.MeanBoundedSlow) })
		row(tw, "scheduler passes", rep.Runs, func(r *Result) string { return fmt.Sprint(r.Passes) })
		row(tw, "pass time mean", rep.Runs, func(r *Result) string { return msec(r.PassMeanMs) })
		row(tw, "pass time p95", rep.Runs, func(r *Result) string { return msec(r.PassP95Ms) })
		row(tw, "pass time max", rep.Runs, func(r *Result) string { return msec(r.PassMaxMs) })
		row(tw, "placements/s in passes", rep.Runs, func(r *Result) string { return fmt.Sprintf("%.0f", r.PlacementsPerSec) })
		row(tw, "simulation wall time", rep.Runs, func(r *Result) string { return fmt.Sprintf("%.1f s", r.WallSec) })
	}
	if len(rep.Stress) > 0 {
		s := rep.Stress[0]
		fmt.Fprintf(tw, "stress: %d nodes × %d CPUs, %d running jobs holding %d CPUs, %d pending jobs\n",
			s.Nodes, s.CPUsPerNode, s.Running, s.BusyCPUs, s.Pending)
		row(tw, "policy", rep.Stress, func(r StressResult) string { return r.Policy })
		row(tw, "placements in one pass", rep.Stress, func(r StressResult) string { return fmt.Sprint(r.Placements) })
		row(tw, "pass time min", rep.Stress, func(r StressResult) string { return msec(r.PassMinMs) })
		row(tw, "pass time mean", rep.Stress, func(r StressResult) string { return msec(r.PassMeanMs) })
		row(tw, "pass time max", rep.Stress, func(r StressResult) string { return msec(r.PassMaxMs) })
		row(tw, "placements/s", rep.Stress, func(r StressResult) string { return fmt.Sprintf("%.0f", r.PlacementsPerSec) })
	}
	return tw.Flush()
}

// row prints one line of a table with a column per run.
func row[T any](tw io.Writer, label string, runs []T, cell func(T) string) {
	// Padded by hand: the tabwriter right-aligns every column, figures
	// read better that way but labels do not.
	fmt.Fprintf(tw, "%-24s\t", label)
	for _, r := range runs {
		fmt.Fprint(tw, cell(r), "\t")
	}
	fmt.Fprintln(tw)
}

func duration(sec float64) string {
	switch {
	case sec < 60:
		return fmt.Sprintf("%.0f s", sec)
	case sec < 48*3600:
		return (time.Duration(sec) * time.Second).String()
	}
	return fmt.Sprintf("%.1f days", sec/86400)
}

func msec(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}
