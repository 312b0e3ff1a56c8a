package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/sbatch"
)

// srunAllocPoll is how often srun looks at the job it is waiting for.
const srunAllocPoll = 250 * time.Millisecond

// srunAllocate is srun outside a job: like Slurm's srun it first gets an
// allocation. The allocation is a job with srun's resource options whose
// batch script runs this same srun, which inside the job starts the
// command as step 0 on all of its nodes; this process waits for that step
// and prints its outcome, and the job ends with srun's exit code, as the
// allocation Slurm's srun makes does.
func srunAllocate(ctx context.Context, e *env, o *srunOpts, args []string) (int, error) {
	cwd, err := e.getwd()
	if err != nil {
		return 0, fmt.Errorf("cannot get the current directory: %v", err)
	}
	// The step's own options are checked here: inside the job their
	// errors would reach only the job's output.
	if _, err := srunRequest(o, args, 0, nil, cwd); err != nil {
		return 0, err
	}
	req, err := sbatch.Parse(sbatch.Input{Args: srunAllocArgs(o, args), Env: e.jobEnv(), Cwd: cwd,
		ReadFile: e.readFile, Stdin: strings.NewReader("")})
	if err != nil {
		return 0, err
	}
	for _, w := range req.Warnings {
		fmt.Fprintf(e.stderr, "srun: warning: %s\n", oneLine(w))
	}
	req.Spec.SubmitID = e.newID()
	cl, err := e.client()
	if err != nil {
		return 0, err
	}
	rctx, cancel, err := e.requestContext(ctx)
	if err != nil {
		return 0, err
	}
	resp, err := cl.Submit(rctx, api.SubmitRequest{Spec: req.Spec})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("Unable to allocate resources: %s", apiMessage(err))
	}
	if resp.Warning != "" {
		fmt.Fprintf(e.stderr, "srun: warning: %s\n", oneLine(resp.Warning))
	}

	// Ctrl-C (or a kill) gives the allocation back.
	sctx, stop := signal.NotifyContext(ctx, srunStopSignals...)
	defer stop()
	code, err := awaitAllocationStep(sctx, e, cl, resp.JobID, o.label)
	if sctx.Err() != nil && ctx.Err() == nil {
		fmt.Fprintf(e.stderr, "srun: interrupted: cancelling job %d\n", resp.JobID)
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, cerr := cl.Cancel(cctx, api.CancelRequest{JobIDs: []string{strconv.FormatUint(resp.JobID, 10)}}); cerr != nil {
			return 0, fmt.Errorf("job %d not cancelled: %s", resp.JobID, apiMessage(cerr))
		}
		return 128 + int(syscall.SIGINT), nil
	}
	return code, err
}

// srunAllocArgs are the sbatch arguments of srun's allocation: its
// resource options and a batch script that runs srun with the step's.
func srunAllocArgs(o *srunOpts, args []string) []string {
	name := o.name
	if name == "" {
		name = filepath.Base(args[0])
	}
	out := []string{"--job-name=" + name, "--output=/dev/null", "--error=/dev/null"}
	if o.nodes != "" {
		out = append(out, "--nodes="+o.nodes)
	}
	ntasks := o.ntasks
	if ntasks == 0 && o.ntasksPerNode == 0 && o.nodes != "" {
		// srun -N N runs a task per node (sbatch -N alone asks for one);
		// srunAllocate checked the count.
		ntasks, _ = minNodes(o.nodes)
	}
	if ntasks > 0 {
		out = append(out, "--ntasks="+strconv.Itoa(ntasks))
	}
	if o.ntasksPerNode > 0 {
		out = append(out, "--ntasks-per-node="+strconv.Itoa(o.ntasksPerNode))
	}
	if o.cpusPerTask > 0 {
		out = append(out, "--cpus-per-task="+strconv.Itoa(o.cpusPerTask))
	}
	if o.chdir != "" {
		out = append(out, "--chdir="+o.chdir)
	}
	out = append(out, o.alloc...)
	step := []string{"exec", "srun", "--export=" + o.export}
	if o.name != "" {
		step = append(step, "--job-name="+o.name)
	}
	step = append(step, args...)
	for i, w := range step {
		step[i] = shellQuote(w)
	}
	return append(out, "--wrap="+strings.Join(step, " "))
}

// shellQuote quotes w for sh when it needs it.
func shellQuote(w string) string {
	if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") == "" {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

// awaitAllocationStep waits for job id to start and for its step 0 to
// end, and prints the step's outcome; the result is srun's exit code.
func awaitAllocationStep(ctx context.Context, e *env, cl *api.Client, id uint64, label bool) (int, error) {
	queued := false
	for {
		j, err := cl.Job(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("job %d: %s", id, apiMessage(err))
		}
		if j.State == api.JobPending {
			if !queued {
				fmt.Fprintf(e.stderr, "srun: job %d queued and waiting for resources\n", id)
				queued = true
			}
		} else {
			if queued {
				fmt.Fprintf(e.stderr, "srun: job %d has been allocated resources\n", id)
				queued = false
			}
			st, err := cl.Step(ctx, id, 0, 0, 0)
			var he *api.HTTPError
			switch {
			case err == nil:
				if st, err = waitStep(ctx, e, cl, st); err != nil {
					return 0, err
				}
				out, msgs, code := stepOutcome(st, label, e.loc)
				io.WriteString(e.stdout, out)
				for _, m := range msgs {
					fmt.Fprintf(e.stderr, "srun: error: %s\n", m)
				}
				return code, nil
			case ctx.Err() != nil:
				return 0, ctx.Err()
			case !errors.As(err, &he) || he.Status != http.StatusNotFound:
				return 0, fmt.Errorf("job %d: %s", id, apiMessage(err))
			case j.State.Terminal():
				return 0, fmt.Errorf("job %d ended %s before its step started (exit code %d%s); "+
					"its batch script runs srun, which must be on the PATH srun was called with",
					id, j.State, j.ExitCode, reasonSuffix(j.FailReason))
			}
		}
		if err := e.sleep(ctx, srunAllocPoll); err != nil {
			return 0, err
		}
	}
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}
