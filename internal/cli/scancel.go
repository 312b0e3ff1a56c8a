package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/hostlist"
)

var scancelCmd = &slurmCommand{
	name:         "scancel",
	short:        "Cancel or signal jobs",
	usage:        "scancel [OPTIONS] [JOBID[_TASK][.STEPID]...]",
	interspersed: true,
	long: `Cancels the named jobs (123, 123_4, 123_[1-3]; a plain array id means every
task) and/or every pending or running job matching the filters, or sends
them a signal with -s. Like Slurm's scancel it looks the jobs up first, so
an id that does not exist (or is not yours) is reported as
"Kill job error on job id N: Invalid job id specified" and the exit code
is 1.

JOBID.STEPID (123.0, 123_4.1) cancels one srun step: its tasks get SIGTERM,
then SIGKILL after the grace time, the step ends CANCELLED and its srun
exits non-zero; the job runs on. Inside a batch job, scancel may cancel the
job's own steps with the job's credential when no user token is
configured. Steps cannot be sent other signals (-s).`,
	setup: setupScancel,
}

// cancelPlan is what scancel will do: the jobs and steps to cancel and
// the errors to report for ids that cannot be.
type cancelPlan struct {
	targets []string // display ids sent to the controllers
	steps   []stepTarget
	errors  []string // one line each, without the "scancel: error: " prefix
}

// stepTarget is a step to cancel.
type stepTarget struct {
	jobID uint64
	step  int
	text  string // display id: JOBID.STEPID or JOBID_TASK.STEPID
}

// stepSel is a step named on the command line: JOBID.STEPID or
// JOBID_TASK.STEPID (JOBID_[1-3].STEPID: that step of each task).
type stepSel struct {
	job  jobSel
	step int
	text string
}

// matches reports whether j is the job of the step: a plain id names that
// job alone (not an array's other tasks), as in Slurm.
func (s stepSel) matches(j *api.Job) bool {
	if s.job.tasks == nil {
		return j.ID == s.job.id
	}
	return s.job.matches(j)
}

// parseScancelIDs splits scancel's comma lists of ids into jobs and steps.
func parseScancelIDs(vals []string) ([]jobSel, []stepSel, error) {
	var jobs []jobSel
	var steps []stepSel
	for _, item := range splitLists(vals) {
		base, stepText, isStep := strings.Cut(item, ".")
		if !isStep {
			sel, err := parseJobSel(item)
			if err != nil {
				return nil, nil, err
			}
			jobs = append(jobs, sel)
			continue
		}
		n, err := strconv.Atoi(stepText)
		if err != nil || n < 0 || strconv.Itoa(n) != stepText {
			return nil, nil, fmt.Errorf("Invalid job id: %s", item)
		}
		sel, err := parseJobSel(base)
		if err != nil {
			return nil, nil, fmt.Errorf("Invalid job id: %s", item)
		}
		steps = append(steps, stepSel{job: sel, step: n, text: item})
	}
	return jobs, steps, nil
}

// scancelSelection is scancel's filters.
type scancelSelection struct {
	jobs                                    []jobSel
	steps                                   []stepSel
	users, accounts, partitions, names, qos []string
	states                                  map[api.JobState]bool
	nodes                                   map[string]bool
	quiet                                   bool
}

func (s *scancelSelection) filtered() bool {
	return len(s.users)+len(s.accounts)+len(s.partitions)+len(s.names)+len(s.qos) > 0 ||
		s.states != nil || s.nodes != nil
}

// matchFilters applies the filters other than ids; scancel acts only on
// pending and running jobs (or the states -t names).
func (s *scancelSelection) matchFilters(j *api.Job) bool {
	states := s.states
	if states == nil {
		states = map[api.JobState]bool{api.JobPending: true, api.JobRunning: true}
	}
	switch {
	case !states[j.State]:
	case len(s.users) > 0 && !matchUser(j, s.users):
	case len(s.accounts) > 0 && !slices.Contains(s.accounts, j.Spec.Account):
	case len(s.partitions) > 0 && !slices.Contains(s.partitions, j.Spec.Partition):
	case len(s.names) > 0 && !slices.Contains(s.names, j.Spec.Name):
	case len(s.qos) > 0 && !slices.Contains(s.qos, j.Spec.QOS):
	case s.nodes != nil && !slices.ContainsFunc(j.Nodes, func(n string) bool { return s.nodes[n] }):
	default:
		return true
	}
	return false
}

// planCancel decides, from the jobs the caller can see, which to cancel
// and which ids to report, as Slurm's scancel does after loading the jobs.
func planCancel(s *scancelSelection, visible []api.Job) cancelPlan {
	var p cancelPlan
	seen := map[uint64]bool{}
	add := func(j *api.Job) {
		if !seen[j.ID] {
			seen[j.ID] = true
			p.targets = append(p.targets, j.DisplayID())
		}
	}
	for _, sel := range s.steps {
		found := false
		for i := range visible {
			j := &visible[i]
			if !sel.matches(j) {
				continue
			}
			found = true
			text := fmt.Sprintf("%s.%d", j.DisplayID(), sel.step)
			switch {
			case j.State == api.JobPending:
				p.errors = append(p.errors, fmt.Sprintf("Kill job error on job step id %s: Job is pending execution", text))
			case j.State.Terminal():
				if !s.quiet {
					p.errors = append(p.errors, fmt.Sprintf("Kill job error on job step id %s: Job/step already completing or completed", text))
				}
			case !s.filtered() || s.matchFilters(j):
				p.steps = append(p.steps, stepTarget{jobID: j.ID, step: sel.step, text: text})
			}
		}
		if !found {
			p.errors = append(p.errors, fmt.Sprintf("Kill job error on job step id %s: Invalid job id specified", sel.text))
		}
	}
	if len(s.jobs) == 0 {
		if len(s.steps) > 0 {
			return p // the filters narrow the steps named
		}
		for i := range visible {
			if s.matchFilters(&visible[i]) {
				add(&visible[i])
			}
		}
		return p
	}
	for _, sel := range s.jobs {
		var found, live []*api.Job
		for i := range visible {
			if sel.matches(&visible[i]) {
				found = append(found, &visible[i])
				if !visible[i].State.Terminal() {
					live = append(live, &visible[i])
				}
			}
		}
		switch {
		case len(found) == 0:
			p.errors = append(p.errors, fmt.Sprintf("Kill job error on job id %s: Invalid job id specified", sel.text))
			continue
		case len(live) == 0 && !s.filtered():
			if !s.quiet {
				p.errors = append(p.errors, fmt.Sprintf("Kill job error on job id %s: Job/step already completing or completed", sel.text))
			}
			continue
		}
		for _, j := range live {
			if s.matchFilters(j) {
				add(j)
			}
		}
	}
	return p
}

func setupScancel(fs *pflag.FlagSet) runFunc {
	accounts := fs.StringArrayP("account", "A", nil, "only jobs of these `accounts`")
	fs.BoolP("batch", "b", false, "signal the batch script (the only process Stockade starts)")
	fs.BoolP("full", "f", false, "accepted for compatibility")
	fs.BoolP("hurry", "H", false, "accepted for compatibility")
	names := fs.StringArrayP("name", "n", nil, "only jobs with these `names`")
	jobNames := fs.StringArray("jobname", nil, "same as --name (`names`)")
	partitions := fs.StringArrayP("partition", "p", nil, "only jobs in these `partitions`")
	qos := fs.StringArrayP("qos", "q", nil, "only jobs with these `qos`")
	quiet := fs.BoolP("quiet", "Q", false, "do not report jobs that already ended")
	signal := fs.StringP("signal", "s", "", "send this `signal` (name or number) instead of cancelling")
	states := fs.StringArrayP("state", "t", nil, "only jobs in these `states`: PENDING, RUNNING")
	users := fs.StringArrayP("user", "u", nil, "only jobs of these `users` (names or uids)")
	me := fs.Bool("me", false, "only my jobs")
	nodes := fs.StringP("nodelist", "w", "", "only jobs running on these `nodes` (host list)")
	verbose := fs.CountP("verbose", "v", "report each job acted on")

	return func(ctx context.Context, e *env, args []string) error {
		s := &scancelSelection{
			users: splitLists(*users), accounts: splitLists(*accounts), partitions: splitLists(*partitions),
			names: splitLists(append(*names, *jobNames...)), qos: splitLists(*qos), quiet: *quiet,
		}
		var err error
		if s.jobs, s.steps, err = parseScancelIDs(args); err != nil {
			return err
		}
		if *signal != "" && len(s.steps) > 0 {
			return fmt.Errorf("--signal: job steps (%s) cannot be signalled here; cancel the step, or signal the job", s.steps[0].text)
		}
		if s.states, err = parseJobStates(*states); err != nil {
			return err
		}
		if *me {
			name, err := e.username()
			if err != nil {
				return fmt.Errorf("--me: %v", err)
			}
			s.users = append(s.users, name)
		}
		if *nodes != "" {
			list, err := hostlist.Expand(*nodes)
			if err != nil {
				return fmt.Errorf("--nodelist: %v", err)
			}
			s.nodes = map[string]bool{}
			for _, n := range list {
				s.nodes[n] = true
			}
		}
		if len(s.jobs)+len(s.steps) == 0 && !s.filtered() {
			return fmt.Errorf("No job identification provided")
		}

		client, err := e.client()
		if err != nil {
			// Inside a batch job without a user token: the job's own
			// steps may be cancelled with its credential.
			cl, ok := credentialSteps(e, s)
			if !ok {
				return err
			}
			rctx, cancel, err := e.requestContext(ctx)
			if err != nil {
				return err
			}
			defer cancel()
			p := cancelPlan{}
			for _, sel := range s.steps {
				p.steps = append(p.steps, stepTarget{jobID: sel.job.id, step: sel.step, text: sel.text})
			}
			if cancelSteps(rctx, e, cl, p.steps, *verbose > 0, s.quiet) {
				return errReported
			}
			return nil
		}
		rctx, cancel, err := e.requestContext(ctx)
		if err != nil {
			return err
		}
		defer cancel()
		sels := slices.Clone(s.jobs)
		for _, st := range s.steps {
			sels = append(sels, st.job)
		}
		q := api.JobQuery{All: true, Users: serverUsers(s.users), IDs: queryIDs(sels)}
		if len(sels) == 0 {
			// Ids are checked against every state; filters see live jobs.
			q.States = []api.JobState{api.JobPending, api.JobRunning}
			if s.states != nil {
				q.States = stateList(s.states)
			}
		}
		resp, err := client.Jobs(rctx, q)
		if err != nil {
			return fmt.Errorf("%s", apiMessage(err))
		}
		plan := planCancel(s, resp.Jobs)
		failed := len(plan.errors) > 0
		for _, msg := range plan.errors {
			fmt.Fprintf(e.stderr, "scancel: error: %s\n", msg)
		}
		if len(plan.targets) > 0 {
			if *verbose > 0 {
				verb := "Terminating"
				if *signal != "" {
					verb = "Signal " + *signal + " to"
				}
				for _, id := range plan.targets {
					fmt.Fprintf(e.stderr, "scancel: %s job %s\n", verb, id)
				}
			}
			_, err := client.Cancel(rctx, api.CancelRequest{JobIDs: plan.targets, Signal: *signal})
			if err != nil {
				// Retry one by one so each failure names its job.
				for _, id := range plan.targets {
					if _, err := client.Cancel(rctx, api.CancelRequest{JobIDs: []string{id}, Signal: *signal}); err != nil {
						failed = true
						fmt.Fprintf(e.stderr, "scancel: error: Kill job error on job id %s: %s\n", id, apiMessage(err))
					}
				}
			}
		}
		if cancelSteps(rctx, e, client, plan.steps, *verbose > 0, s.quiet) {
			failed = true
		}
		if failed {
			return errReported
		}
		return nil
	}
}

// cancelSteps cancels steps one by one, reporting each failure as Slurm's
// scancel does; it returns whether one was reported.
func cancelSteps(ctx context.Context, e *env, cl *api.Client, steps []stepTarget, verbose, quiet bool) bool {
	failed := false
	for _, st := range steps {
		if verbose {
			fmt.Fprintf(e.stderr, "scancel: Terminating step %s\n", st.text)
		}
		_, err := cl.CancelStep(ctx, st.jobID, st.step)
		if err == nil {
			continue
		}
		msg := apiMessage(err)
		var he *api.HTTPError
		if errors.As(err, &he) {
			switch he.Status {
			case http.StatusNotFound:
				msg = "Invalid job id specified"
			case http.StatusConflict:
				if quiet {
					continue
				}
				msg = "Job/step already completing or completed"
			}
		}
		failed = true
		fmt.Fprintf(e.stderr, "scancel: error: Kill job error on job step id %s: %s\n", st.text, msg)
	}
	return failed
}

// credentialSteps is the client for cancelling steps with the batch
// script's job credential: when only steps of plain job ids are named, no
// filters given, and the environment has the credential.
func credentialSteps(e *env, s *scancelSelection) (*api.Client, bool) {
	cred := strings.TrimSpace(e.getenv(credentialEnv))
	if cred == "" || len(s.steps) == 0 || len(s.jobs) > 0 || s.filtered() {
		return nil, false
	}
	for _, st := range s.steps {
		if st.job.tasks != nil {
			return nil, false
		}
	}
	cl, err := credentialClient(e, cred)
	if err != nil {
		return nil, false
	}
	return cl, true
}
