// Command stockade is the single Stockade binary: controller (server), node
// agent, per-job shim, and the user and admin CLI. Invoked through a symlink
// named sbatch, squeue, scancel, sinfo, scontrol or sacct it behaves like
// that Slurm command.
package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/stockade-hpc/stockade/accounting/chain"
	"github.com/stockade-hpc/stockade/bench/sim"
	"github.com/stockade-hpc/stockade/executor"
	"github.com/stockade-hpc/stockade/internal/agent"
	"github.com/stockade-hpc/stockade/internal/cli"
	"github.com/stockade-hpc/stockade/internal/server"
)

func main() {
	// A container's init re-executes this binary as "stockade init": it
	// must take over before anything else runs.
	executor.MaybeInit()
	// The daemons' commands are built only when they are asked for: a Slurm
	// command (one process per sbatch) never pays for them.
	os.Exit(cli.Main(os.Args, func() []*cobra.Command {
		return []*cobra.Command{server.NewCommand(), agent.NewCommand(), shimCommand(), sim.NewCommand(), chain.NewCommand()}
	}))
}

func shimCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "shim JOBDIR",
		Short:  "Own one job's container (started by the agent)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		Run: func(_ *cobra.Command, args []string) {
			os.Exit(executor.RunShim(args[0]))
		},
	}
}
