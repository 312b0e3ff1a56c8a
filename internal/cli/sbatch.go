package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/sbatch"
)

const sbatchLong = `Submits a batch script (a file, standard input, or --wrap) with Slurm's
options, #SBATCH directives and SBATCH_* variables. Prints
"Submitted batch job N", or N with --parsable. --test-only reports where
and when the job would start without queueing it; --dry-run prints the
normalized job (JSON with --json) and does not contact the cluster.`

// runSbatch is sbatch: its options are parsed by package sbatch, which
// knows every #SBATCH form, so it bypasses the pflag runner.
func runSbatch(ctx context.Context, e *env, args []string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(e.stderr, "sbatch: error: %s\n", oneLine(fmt.Sprintf(format, a...)))
		return 1
	}
	cwd, err := e.getwd()
	if err != nil {
		return fail("cannot get the current directory: %v", err)
	}
	req, err := sbatch.Parse(sbatch.Input{
		Args: args, Env: e.jobEnv(), Cwd: cwd, ReadFile: e.readFile, Stdin: e.stdin,
	})
	switch {
	case errors.Is(err, sbatch.ErrHelp):
		fmt.Fprint(e.stdout, sbatchHelp())
		return 0
	case errors.Is(err, sbatch.ErrVersion):
		fmt.Fprintf(e.stdout, "slurm %s\n", slurmCompatVersion)
		return 0
	case err != nil:
		return fail("%s", err.Error())
	}
	for _, w := range req.Warnings {
		fmt.Fprintf(e.stderr, "sbatch: warning: %s\n", oneLine(w))
	}
	if req.DryRun {
		b, err := sbatch.DryRunJSON(req)
		if err != nil {
			return fail("%v", err)
		}
		e.stdout.Write(b)
		return 0
	}
	req.Spec.SubmitID = e.newID()

	client, err := e.client()
	if err != nil {
		return fail("%v", err)
	}
	rctx, cancel, err := e.requestContext(ctx)
	if err != nil {
		return fail("%v", err)
	}
	defer cancel()
	resp, err := client.Submit(rctx, api.SubmitRequest{Spec: req.Spec, TestOnly: req.TestOnly})
	if err != nil {
		return fail("Batch job submission failed: %s", apiMessage(err))
	}
	if resp.Warning != "" {
		fmt.Fprintf(e.stderr, "sbatch: warning: %s\n", oneLine(resp.Warning))
	}
	if req.TestOnly {
		// Slurm prints the estimate as an info line on stderr.
		note := resp.EstimateNote
		if note == "" {
			note = fmt.Sprintf("Job %d: the controllers gave no start estimate", resp.JobID)
		}
		fmt.Fprintf(e.stderr, "sbatch: %s\n", oneLine(note))
		return 0
	}
	switch {
	case req.JSON:
		b, err := json.MarshalIndent(struct {
			JobID    uint64   `json:"job_id"`
			StepID   string   `json:"step_id"`
			TaskIDs  []uint64 `json:"task_ids,omitempty"`
			Warnings []string `json:"warnings"`
		}{resp.JobID, "batch", resp.TaskIDs, append(append([]string{}, req.Warnings...), nonEmpty(resp.Warning)...)}, "", "  ")
		if err != nil {
			return fail("%v", err)
		}
		fmt.Fprintf(e.stdout, "%s\n", b)
	case req.Parsable:
		fmt.Fprintf(e.stdout, "%d\n", resp.JobID)
	default:
		fmt.Fprintf(e.stdout, "Submitted batch job %d\n", resp.JobID)
	}
	return 0
}

// jobEnv is the environment a submitted job exports, less the
// submitter's credentials, which must never travel with a job: the
// environment is stored in the cluster state and given to the job's
// processes.
func (e *env) jobEnv() map[string]string {
	m := e.envMap()
	delete(m, "STOCKADE_TOKEN")
	delete(m, credentialEnv)
	return m
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// sbatchHelp is sbatch's option list (from package sbatch, which parses
// the options) and what the command does.
func sbatchHelp() string { return sbatch.Usage() + "\n" + sbatchLong + "\n" }
