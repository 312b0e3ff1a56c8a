// Command slurm-bench is the driver of `make bench-slurm` (bench/slurm/run.sh
// starts and stops the clusters): it submits N trivial jobs from several
// parallel clients, either with the scheduler's own sbatch (one process
// per job) or through its REST API (-via api: one long-lived HTTP client
// per worker, slurmrestd's for Slurm, the controllers' /v1 API for
// Stockade), waits for all of them to end, reads their submit/start/end
// times from the scheduler's records and writes one result file per run;
// `report` turns the result files into the comparison table and
// results.json.
//
//	slurm-bench run -system slurm|stockade -config NAME -n N -clients P -sbatch PATH -dir DIR -out FILE [...]
//	slurm-bench run -via api -system slurm -socket SLURMRESTD.sock ... | -via api -system stockade ...
//	slurm-bench report -out results.json RUN.json...
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// Run is the outcome of one run: one scheduler, one configuration.
type Run struct {
	System   string `json:"system"`   // slurm or stockade
	Config   string `json:"config"`   // default, tuned-..., stockade
	Settings string `json:"settings"` // what differs from the default, one line
	Jobs     int    `json:"jobs"`
	Clients  int    `json:"clients"`
	// Via is how jobs are submitted: "sbatch" (one process per job; empty
	// in older result files) or "api" (one long-lived HTTP client per
	// client worker).
	Via string `json:"via,omitempty"`
	// APIConnections counts the connections the API clients opened (one
	// per worker when the server keeps them alive).
	APIConnections int `json:"api_connections,omitempty"`
	// Submit: first sbatch started (or request sent) → last one
	// acknowledged. The latencies are per sbatch process or per request.
	SubmitSec      float64 `json:"submit_seconds"`
	SubmitRate     float64 `json:"submit_jobs_per_sec"`
	SubmitP50Ms    float64 `json:"sbatch_p50_ms"`
	SubmitP99Ms    float64 `json:"sbatch_p99_ms"`
	SubmitFailures int     `json:"sbatch_failures_retried"`
	// End to end: first sbatch started → the driver sees the last job
	// ended in the scheduler's records (polled every -poll).
	EndToEndSec  float64 `json:"end_to_end_seconds"`
	EndToEndRate float64 `json:"end_to_end_jobs_per_sec"`
	// Queue wait: start - submit, both from the scheduler's records.
	WaitP50Sec float64 `json:"queue_wait_p50_seconds"`
	WaitP99Sec float64 `json:"queue_wait_p99_seconds"`
	WaitMaxSec float64 `json:"queue_wait_max_seconds"`
	// WaitResolution is the resolution of the recorded times.
	WaitResolution string         `json:"queue_wait_resolution"`
	States         map[string]int `json:"states"`
	// CPUMetered counts jobs whose record carries a non-zero CPU time
	// (Stockade: cgroup metering of the job's container).
	CPUMetered int    `json:"cpu_metered,omitempty"`
	Started    string `json:"started"`
	// LoadAvg is /proc/loadavg when the run ended: the machine is shared.
	LoadAvg string `json:"loadavg_at_end"`
	// CPU is the CPU time each group of processes (a cgroup) used per
	// job: while the jobs were submitted, and in all.
	CPU []CPUUse `json:"cpu_ms_per_job,omitempty"`
}

// CPUUse is the CPU time one cgroup used, per job.
type CPUUse struct {
	Group  string  `json:"group"`
	Submit float64 `json:"submit_phase"`
	Total  float64 `json:"total"`
}

// cpuGroup is a cgroup whose CPU time a run measures.
type cpuGroup struct{ name, dir string }

// usage is the cgroup's CPU time so far (cgroup v1 cpuacct or v2 cpu.stat).
func (g cpuGroup) usage() time.Duration {
	if b, err := os.ReadFile(filepath.Join(g.dir, "cpuacct.usage")); err == nil {
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(n)
	}
	b, _ := os.ReadFile(filepath.Join(g.dir, "cpu.stat"))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return time.Duration(n) * time.Microsecond
		}
	}
	return 0
}

type cpuFlag []cpuGroup

func (c *cpuFlag) String() string { return fmt.Sprint(*c) }
func (c *cpuFlag) Set(v string) error {
	name, dir, ok := strings.Cut(v, "=")
	if !ok {
		return errors.New("want NAME=CGROUP-DIR")
	}
	*c = append(*c, cpuGroup{name, dir})
	return nil
}

func readUsage(gs []cpuGroup) []time.Duration {
	out := make([]time.Duration, len(gs))
	for i, g := range gs {
		out[i] = g.usage()
	}
	return out
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: slurm-bench run|report [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "report":
		err = reportCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "slurm-bench:", err)
		os.Exit(1)
	}
}

type runOpts struct {
	system, config, settings string
	n, clients               int
	sbatch, dir, out         string
	jobcomp                  string // slurm: the jobcomp/filetxt file
	user                     string // stockade: the submitting user
	poll, timeout            time.Duration
	hold                     bool // submit held jobs and do not wait for them
	cpu                      cpuFlag
	via                      string // sbatch or api
	socket                   string // slurm -via api: slurmrestd's Unix socket
	restVersion              string // slurm -via api: the OpenAPI plugin's version
}

func runCmd(args []string) error {
	var o runOpts
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	fs.StringVar(&o.system, "system", "", "slurm or stockade")
	fs.StringVar(&o.config, "config", "", "name of the configuration")
	fs.StringVar(&o.settings, "settings", "", "what the configuration changes, for the report")
	fs.IntVar(&o.n, "n", 1000, "jobs")
	fs.IntVar(&o.clients, "clients", 8, "parallel sbatch clients")
	fs.StringVar(&o.sbatch, "sbatch", "sbatch", "the sbatch to run")
	fs.StringVar(&o.dir, "dir", ".", "working directory of sbatch (and of the jobs)")
	fs.StringVar(&o.out, "out", "", "result file (JSON)")
	fs.StringVar(&o.jobcomp, "jobcomp", "", "slurm: JobCompLoc of jobcomp/filetxt")
	fs.StringVar(&o.user, "user", "", "stockade: the submitting user's name")
	fs.DurationVar(&o.poll, "poll", 200*time.Millisecond, "how often to look for ended jobs")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up after this long")
	fs.Var(&o.cpu, "cpu", "NAME=DIR: report the CPU time of this cgroup (repeatable)")
	fs.BoolVar(&o.hold, "hold", false, "submit held jobs (--hold) and measure the submission only: no job runs meanwhile")
	fs.StringVar(&o.via, "via", "sbatch", "sbatch: one sbatch process per job; api: one long-lived REST client per worker")
	fs.StringVar(&o.socket, "socket", "", "slurm -via api: slurmrestd's Unix socket (rest_auth/local)")
	fs.StringVar(&o.restVersion, "rest-version", "v0.0.38", "slurm -via api: slurmrestd's OpenAPI plugin version")
	fs.Parse(args)
	if o.via != "sbatch" && o.via != "api" {
		return fmt.Errorf("-via must be sbatch or api, not %q", o.via)
	}
	if o.via == "api" && o.system == "slurm" {
		if o.socket == "" {
			return errors.New("slurm -via api needs -socket")
		}
		if err := slurmRESTReady(o, 60*time.Second); err != nil {
			return err
		}
	}
	var src records
	switch o.system {
	case "slurm":
		if o.jobcomp == "" {
			return errors.New("slurm needs -jobcomp")
		}
		src = &jobcompFile{path: o.jobcomp}
	case "stockade":
		cl, err := stockadeClient()
		if err != nil {
			return err
		}
		src = &stockadeAPI{c: cl, user: o.user, since: time.Now().Add(-time.Minute)}
	default:
		return fmt.Errorf("-system must be slurm or stockade, not %q", o.system)
	}
	r, err := run(o, src)
	if err != nil {
		return err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	if o.out != "" {
		if err := os.WriteFile(o.out, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	printRun(os.Stdout, r)
	return nil
}

// rec is one job as the scheduler recorded it.
type rec struct {
	state              string
	submit, start, end time.Time
	cpuNs              uint64
}

// records reads the scheduler's job records.
type records interface {
	// ended returns the ended jobs among ids that it has not returned
	// before.
	ended(ctx context.Context, ids map[uint64]bool) (map[uint64]rec, error)
	resolution() string
	// progress describes how far the jobs are, given how many ended.
	progress(ended, total int) string
}

func run(o runOpts, src records) (*Run, error) {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	var st clientStats
	subs, err := newSubmitters(o, &st)
	if err != nil {
		return nil, err
	}
	config := o.config
	if o.via == "api" {
		config += "-api"
	}
	ids := make([]uint64, o.n)
	lat := make([]time.Duration, o.n)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	cpu0 := readUsage(o.cpu)
	self0 := selfCPU()
	start := time.Now()
	for _, sub := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= o.n || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				id, err := sub(ctx)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				ids[i], lat[i] = id, time.Since(t0)
			}
		}()
	}
	wg.Wait()
	submitted := time.Since(start)
	cpu1 := readUsage(o.cpu)
	// The client's CPU: the sbatch processes' (rusage of each), or this
	// process's own while it submitted through the API (the workers, their
	// HTTP clients and the Go runtime: nothing else runs meanwhile).
	clientCPU, clientGroup := time.Duration(st.cpu.Load()), "sbatch processes"
	if o.via == "api" {
		clientCPU, clientGroup = selfCPU()-self0, fmt.Sprintf("API client (%d workers, 1 process)", len(subs))
	}
	cpuUse := func(end []time.Duration) []CPUUse {
		c := ms(clientCPU) / float64(o.n)
		out := []CPUUse{{Group: clientGroup, Submit: c, Total: c}}
		for i, g := range o.cpu {
			u := CPUUse{Group: g.name, Submit: ms(cpu1[i]-cpu0[i]) / float64(o.n)}
			if end != nil {
				u.Total = ms(end[i]-cpu0[i]) / float64(o.n)
			}
			out = append(out, u)
		}
		return out
	}
	if firstErr != nil {
		return nil, firstErr
	}
	fmt.Fprintf(os.Stderr, "%s/%s: %d jobs submitted in %.2f s (%.1f jobs/s), waiting for them to end\n",
		o.system, config, o.n, submitted.Seconds(), float64(o.n)/submitted.Seconds())

	if o.hold {
		sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
		return &Run{System: o.system, Config: config + "-held", Settings: o.settings, Jobs: o.n, Clients: o.clients,
			Via: o.via, APIConnections: int(st.dials.Load()),
			SubmitSec: submitted.Seconds(), SubmitRate: float64(o.n) / submitted.Seconds(),
			SubmitP50Ms: ms(pct(lat, 50)), SubmitP99Ms: ms(pct(lat, 99)), SubmitFailures: int(st.failures.Load()),
			Started: start.UTC().Format(time.RFC3339), LoadAvg: loadAvg(), CPU: cpuUse(nil)}, nil
	}
	want := map[uint64]bool{}
	for _, id := range ids {
		want[id] = true
	}
	got := map[uint64]rec{}
	lastLog := time.Now()
	var done time.Time
	for {
		recs, err := src.ended(ctx, want)
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "reading job records: %v (retrying)\n", err)
		}
		for id, r := range recs {
			got[id] = r
		}
		if len(got) == len(want) {
			done = time.Now()
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s/%s: only %d of %d jobs ended within %s", o.system, config, len(got), len(want), o.timeout)
		}
		if time.Since(lastLog) > 10*time.Second {
			fmt.Fprintf(os.Stderr, "  %s after %.0f s\n", src.progress(len(got), len(want)), time.Since(start).Seconds())
			lastLog = time.Now()
		}
		time.Sleep(o.poll)
	}
	e2e := done.Sub(start)
	cpu2 := readUsage(o.cpu)

	r := &Run{
		System: o.system, Config: config, Settings: o.settings, Jobs: o.n, Clients: o.clients,
		Via: o.via, APIConnections: int(st.dials.Load()),
		SubmitSec: submitted.Seconds(), SubmitRate: float64(o.n) / submitted.Seconds(),
		SubmitFailures: int(st.failures.Load()),
		EndToEndSec:    e2e.Seconds(), EndToEndRate: float64(o.n) / e2e.Seconds(),
		WaitResolution: src.resolution(), States: map[string]int{},
		Started: start.UTC().Format(time.RFC3339), LoadAvg: loadAvg(), CPU: cpuUse(cpu2),
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	r.SubmitP50Ms = ms(pct(lat, 50))
	r.SubmitP99Ms = ms(pct(lat, 99))
	var waits []time.Duration
	for _, x := range got {
		r.States[x.state]++
		if x.cpuNs > 0 {
			r.CPUMetered++
		}
		if !x.start.IsZero() && !x.submit.IsZero() {
			waits = append(waits, x.start.Sub(x.submit))
		}
	}
	sort.Slice(waits, func(a, b int) bool { return waits[a] < waits[b] })
	if len(waits) > 0 {
		r.WaitP50Sec = pct(waits, 50).Seconds()
		r.WaitP99Sec = pct(waits, 99).Seconds()
		r.WaitMaxSec = waits[len(waits)-1].Seconds()
	}
	return r, nil
}

// pct is the nearest-rank percentile of sorted values.
func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(p)/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// clientEnv is the small environment both schedulers' sbatch run with:
// Slurm's and Stockade's sbatch export the environment into the job, so
// both get the same few variables.
func clientEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH" || k == "HOME" || k == "LANG" || k == "TZ":
		case strings.HasPrefix(k, "SLURM_CONF"):
		case strings.HasPrefix(k, "STOCKADE_"):
		default:
			continue
		}
		env = append(env, kv)
	}
	return env
}

// sbatchArgs is the job: a 1-CPU job running true, the same for both
// systems and both ways of submitting (the API clients send what these
// options make).
func sbatchArgs(hold bool) []string {
	args := []string{"--parsable", "-J", "bench", "-n", "1", "-c", "1", "--wrap=true"}
	if hold {
		args = append(args, "--hold")
	}
	return args
}

// submit runs one sbatch for a 1-CPU job running true and returns its id.
// A failed sbatch is retried (and counted), as a user's script would.
func submit(ctx context.Context, o runOpts, env []string, failures, cpu *atomic.Int64) (uint64, error) {
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		cmd := exec.CommandContext(ctx, o.sbatch, sbatchArgs(o.hold)...)
		cmd.Dir = o.dir
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if ps := cmd.ProcessState; ps != nil {
			cpu.Add(int64(ps.UserTime() + ps.SystemTime()))
		}
		if err == nil {
			f, _, _ := strings.Cut(strings.TrimSpace(string(out)), ";")
			id, perr := strconv.ParseUint(f, 10, 64)
			if perr == nil {
				return id, nil
			}
			err = fmt.Errorf("unexpected output %q", out)
		}
		last = fmt.Errorf("%s: %v: %s", o.sbatch, err, strings.TrimSpace(stderr.String()))
		if ctx.Err() != nil {
			break
		}
		failures.Add(1)
		time.Sleep(200 * time.Millisecond)
	}
	return 0, last
}

// jobcompFile reads Slurm's jobcomp/filetxt records: one line per ended
// job, "JobId=.. JobState=.. StartTime=.. EndTime=.. SubmitTime=..", times
// in local time with 1 s resolution.
type jobcompFile struct {
	path string
	off  int64
	part string
}

func (f *jobcompFile) resolution() string { return "1 s (jobcomp/filetxt)" }

func (f *jobcompFile) progress(ended, total int) string {
	return fmt.Sprintf("%d of %d jobs ended", ended, total)
}

func (f *jobcompFile) ended(_ context.Context, ids map[uint64]bool) (map[uint64]rec, error) {
	fh, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	if _, err := fh.Seek(f.off, io.SeekStart); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(fh)
	if err != nil {
		return nil, err
	}
	f.off += int64(len(b))
	text := f.part + string(b)
	lines := strings.Split(text, "\n")
	f.part = lines[len(lines)-1] // an unfinished line
	out := map[uint64]rec{}
	for _, line := range lines[:len(lines)-1] {
		kv := map[string]string{}
		for _, field := range strings.Fields(line) {
			k, v, _ := strings.Cut(field, "=")
			kv[k] = v
		}
		id, err := strconv.ParseUint(kv["JobId"], 10, 64)
		if err != nil || !ids[id] {
			continue
		}
		out[id] = rec{state: kv["JobState"], submit: slurmTime(kv["SubmitTime"]),
			start: slurmTime(kv["StartTime"]), end: slurmTime(kv["EndTime"])}
	}
	return out, nil
}

func slurmTime(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02T15:04:05", s, time.Local)
	if err != nil {
		return time.Time{}
	}
	return t
}

// stockadeAPI reads Stockade's job records through the API (what sacct
// reads, with the full time resolution).
type stockadeAPI struct {
	c      *api.Client
	user   string
	since  time.Time
	active int // pending + running at the last poll
}

func (s *stockadeAPI) progress(_, total int) string {
	return fmt.Sprintf("%d of %d jobs pending or running", s.active, total)
}

func (s *stockadeAPI) resolution() string {
	return "1 ns (submit and start are stamped by the controller)"
}

func (s *stockadeAPI) ended(ctx context.Context, ids map[uint64]bool) (map[uint64]rec, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// While jobs are queued or running, poll the cheap job counts of
	// GET /v1/status (the cluster runs only this benchmark's jobs); read
	// the records once they are all done.
	var st api.Status
	if err := s.c.Do(rctx, "GET", "/v1/status", nil, &st); err != nil {
		return nil, err
	}
	if n := st.JobsByState[string(api.JobPending)] + st.JobsByState[string(api.JobRunning)]; n > 0 {
		s.active = n
		return nil, nil
	}
	q := api.JobQuery{All: true, Since: s.since}
	if s.user != "" {
		q.Users = []string{s.user}
	}
	resp, err := s.c.Jobs(rctx, q)
	if err != nil {
		return nil, err
	}
	out := map[uint64]rec{}
	for _, j := range resp.Jobs {
		if !ids[j.ID] || !j.State.Terminal() {
			continue
		}
		out[j.ID] = rec{state: string(j.State), submit: j.SubmitTime, start: j.StartTime, end: j.EndTime,
			cpuNs: j.Usage.CPUTimeNs}
	}
	return out, nil
}

// stockadeClient is an API client from the CLI's environment variables.
func stockadeClient() (*api.Client, error) {
	servers := strings.Split(os.Getenv("STOCKADE_SERVERS"), ",")
	pem, err := os.ReadFile(os.Getenv("STOCKADE_CA"))
	if err != nil {
		return nil, fmt.Errorf("STOCKADE_CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tok := os.Getenv("STOCKADE_TOKEN")
	if tok == "" {
		return nil, errors.New("STOCKADE_TOKEN is not set")
	}
	return api.NewClient(servers, tok, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}), nil
}

func printRun(w io.Writer, r *Run) {
	fmt.Fprintf(w, "%-9s %-22s jobs %5d  submit %7.1f jobs/s (%s p50 %.1f ms, p99 %.1f ms, %d retried)  end-to-end %7.2f jobs/s (%.1f s)  queue wait p50 %.3f s p99 %.3f s  states %v",
		r.System, r.Config, r.Jobs, r.SubmitRate, via(r), r.SubmitP50Ms, r.SubmitP99Ms, r.SubmitFailures, r.EndToEndRate, r.EndToEndSec,
		r.WaitP50Sec, r.WaitP99Sec, r.States)
	if isAPI(r) {
		fmt.Fprintf(w, "  %d API connections opened", r.APIConnections)
	}
	fmt.Fprintf(w, "  loadavg %s", r.LoadAvg)
	for _, c := range r.CPU {
		fmt.Fprintf(w, "\n    CPU of %-28s %7.2f ms/job while submitting, %7.2f ms/job in all", c.Group, c.Submit, c.Total)
	}
	if r.System == "stockade" {
		fmt.Fprintf(w, "  cpu metered %d/%d", r.CPUMetered, r.Jobs)
	}
	fmt.Fprintln(w)
}

// Results is results.json.
type Results struct {
	Host    string  `json:"host"`
	Runs    []*Run  `json:"runs"`
	Summary Summary `json:"summary"`
}

// Summary compares Stockade with the best Slurm figures of the run.
type Summary struct {
	SlurmDefault      string  `json:"slurm_default_config"`
	SlurmBestSubmit   string  `json:"slurm_tuned_best_submit_config"`
	SlurmBestEndToEnd string  `json:"slurm_tuned_best_end_to_end_config"`
	SubmitRatio       float64 `json:"stockade_over_slurm_tuned_submit"`
	EndToEndRatio     float64 `json:"stockade_over_slurm_tuned_end_to_end"`
	SubmitRatioDef    float64 `json:"stockade_over_slurm_default_submit"`
	EndToEndRatioDef  float64 `json:"stockade_over_slurm_default_end_to_end"`
	SubmitTargetMet   bool    `json:"submit_target_met"`
	EndToEndTargetMet bool    `json:"end_to_end_target_met"`
	HeldSubmitRatio   float64 `json:"stockade_over_slurm_submit_held_jobs,omitempty"`
	// Through the REST APIs (long-lived clients): slurmrestd against the
	// controllers' /v1 API.
	APIHeldSubmitRatio float64 `json:"api_stockade_over_slurm_submit_held_jobs,omitempty"`
	APISubmitRatio     float64 `json:"api_stockade_over_slurm_submit,omitempty"`
	APIEndToEndRatio   float64 `json:"api_stockade_over_slurm_end_to_end,omitempty"`
}

func reportCmd(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	out := fs.String("out", "", "results.json to write")
	host := fs.String("host", "", "a description of the machine")
	fs.Parse(args)
	res := Results{Host: *host}
	for _, p := range fs.Args() {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var r Run
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		res.Runs = append(res.Runs, &r)
	}
	var def, bestSub, bestE2E, stk, stkHeld, slurmHeld *Run
	// The API runs, by system and held or not ("stockade held").
	apiRuns := map[string]*Run{}
	for _, r := range res.Runs {
		held := isHeld(r)
		if isAPI(r) {
			k := r.System
			if held {
				k += " held"
			}
			if p := apiRuns[k]; p == nil || r.SubmitRate > p.SubmitRate {
				apiRuns[k] = r
			}
			continue
		}
		switch {
		case r.System == "stockade" && held:
			stkHeld = r
		case r.System == "stockade":
			stk = r
		case held:
			if slurmHeld == nil || r.SubmitRate > slurmHeld.SubmitRate {
				slurmHeld = r
			}
		case r.Config == "default":
			def = r
		default:
			if bestSub == nil || r.SubmitRate > bestSub.SubmitRate {
				bestSub = r
			}
			if bestE2E == nil || r.EndToEndRate > bestE2E.EndToEndRate {
				bestE2E = r
			}
		}
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | jobs | via | clients | submit (jobs/s) | submit p50 / p99 (per sbatch or request) | end to end (jobs/s) | queue wait p50 | queue wait p99 | load average |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range res.Runs {
		e2e, w50, w99 := fmt.Sprintf("%.2f (%.1f s)", r.EndToEndRate, r.EndToEndSec), secs(r.WaitP50Sec), secs(r.WaitP99Sec)
		if isHeld(r) {
			e2e, w50, w99 = "— (held)", "—", "—"
		}
		v := via(r)
		if isAPI(r) {
			v = fmt.Sprintf("REST API (%d connections)", r.APIConnections)
		}
		fmt.Fprintf(w, "| %s %s | %d | %s | %d | %.0f | %.1f / %.1f ms | %s | %s | %s | %s |\n", r.System, r.Config, r.Jobs, v, r.Clients,
			r.SubmitRate, r.SubmitP50Ms, r.SubmitP99Ms, e2e, w50, w99, r.LoadAvg)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU time per job (ms): the clients (the sbatch processes' rusage, or the API driver's own), the daemons and the job containers (their cgroups)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| run | processes | while submitting | in all |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range res.Runs {
		var sub, tot float64
		for _, c := range r.CPU {
			t := fmt.Sprintf("%.2f", c.Total)
			if isHeld(r) {
				t = "—"
			}
			fmt.Fprintf(w, "| %s %s | %s | %.2f | %s |\n", r.System, r.Config, c.Group, c.Submit, t)
			sub, tot = sub+c.Submit, tot+c.Total
		}
		if len(r.CPU) > 1 {
			t := fmt.Sprintf("**%.2f**", tot)
			if isHeld(r) {
				t = "—"
			}
			fmt.Fprintf(w, "| %s %s | **all** | **%.2f** | %s |\n", r.System, r.Config, sub, t)
		}
	}
	fmt.Fprintln(w)
	seen := map[string]bool{}
	for _, r := range res.Runs {
		name := r.System + " " + strings.TrimSuffix(r.Config, "-held")
		if !seen[name] {
			seen[name] = true
			fmt.Fprintf(w, "- %s: %s\n", name, r.Settings)
		}
	}
	fmt.Fprintln(w)
	if stk != nil {
		s := &res.Summary
		ratio := func(label string, a, b float64, of *Run) float64 {
			if of == nil || b == 0 {
				return 0
			}
			fmt.Fprintf(w, "%-46s %8.2f / %8.2f = %6.2fx  (vs slurm %s)\n", label, a, b, a/b, of.Config)
			return a / b
		}
		if def != nil {
			s.SlurmDefault = def.Config
			s.SubmitRatioDef = ratio("submit rate, stockade / slurm default", stk.SubmitRate, def.SubmitRate, def)
			s.EndToEndRatioDef = ratio("end-to-end, stockade / slurm default", stk.EndToEndRate, def.EndToEndRate, def)
		}
		if bestSub != nil {
			s.SlurmBestSubmit, s.SlurmBestEndToEnd = bestSub.Config, bestE2E.Config
			s.SubmitRatio = ratio("submit rate, stockade / best tuned slurm", stk.SubmitRate, bestSub.SubmitRate, bestSub)
			s.EndToEndRatio = ratio("end-to-end, stockade / best tuned slurm", stk.EndToEndRate, bestE2E.EndToEndRate, bestE2E)
			s.SubmitTargetMet, s.EndToEndTargetMet = s.SubmitRatio >= 2, s.EndToEndRatio >= 2
			fmt.Fprintf(w, "targets (>= 2x the best tuned slurm): submit %s, end-to-end %s\n",
				met(s.SubmitTargetMet), met(s.EndToEndTargetMet))
		}
		if stkHeld != nil && slurmHeld != nil {
			s.HeldSubmitRatio = ratio("submission alone (held jobs, none running)", stkHeld.SubmitRate, slurmHeld.SubmitRate, slurmHeld)
		}
	}
	// Through the REST APIs: the controllers' /v1 API against slurmrestd,
	// both from long-lived clients.
	ratio := func(label string, a, b *Run, f func(*Run) float64) float64 {
		if a == nil || b == nil || f(b) == 0 {
			return 0
		}
		fmt.Fprintf(w, "%-46s %8.2f / %8.2f = %6.2fx  (%s %s / %s %s)\n", label, f(a), f(b), f(a)/f(b), a.System, a.Config, b.System, b.Config)
		return f(a) / f(b)
	}
	submitRate := func(r *Run) float64 { return r.SubmitRate }
	e2eRate := func(r *Run) float64 { return r.EndToEndRate }
	s := &res.Summary
	s.APIHeldSubmitRatio = ratio("REST API, held: submit, stockade / slurm", apiRuns["stockade held"], apiRuns["slurm held"], submitRate)
	s.APISubmitRatio = ratio("REST API, jobs run: submit, stockade / slurm", apiRuns["stockade"], apiRuns["slurm"], submitRate)
	s.APIEndToEndRatio = ratio("REST API, jobs run: end-to-end, stockade / slurm", apiRuns["stockade"], apiRuns["slurm"], e2eRate)
	ratio("held: stockade, REST API / sbatch", apiRuns["stockade held"], stkHeld, submitRate)
	ratio("held: slurm, REST API / sbatch", apiRuns["slurm held"], slurmHeld, submitRate)
	if *out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(w, "wrote %s\n", *out)
	}
	return nil
}

func isHeld(r *Run) bool { return strings.HasSuffix(r.Config, "-held") }

func isAPI(r *Run) bool { return r.Via == "api" }

// via names how a run submitted, for the tables.
func via(r *Run) string {
	if isAPI(r) {
		return "REST API"
	}
	return "sbatch"
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func secs(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.3f s", s)
	}
	return fmt.Sprintf("%.1f s", s)
}
