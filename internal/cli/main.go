// Package cli is the stockade command tree and the Slurm commands (sbatch,
// squeue, scancel, sinfo, scontrol, sacct) with Slurm's options, output
// formats and error habits, since workflow tools parse them. Formatting is
// done by pure functions (records in, text out); the commands only fetch
// the records and pick the format.
package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is the stockade version; set with -ldflags
// "-X github.com/stockade-hpc/stockade/internal/cli.Version=...", else
// taken from the build information.
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// slurmCommands are the multi-call names handled by the pflag runner.
var slurmCommands = map[string]*slurmCommand{
	"squeue":   squeueCmd,
	"scancel":  scancelCmd,
	"sinfo":    sinfoCmd,
	"scontrol": scontrolCmd,
	"sacct":    sacctCmd,
	"sacctmgr": sacctmgrCmd,
	"sprio":    sprioCmd,
	"sshare":   sshareCmd,
}

// Main runs the binary: as the Slurm command named by args[0] when called
// through a symlink (sbatch, squeue, scancel, sinfo, scontrol, sacct),
// else as "stockade" with subcommands, extra ones (server, agent, shim)
// included. extra is called only when the binary runs as "stockade": a
// Slurm command (sbatch, run once per job by workflow tools) does not pay
// for building the daemons' commands and flags. It returns the exit code:
// errors are one line on stderr prefixed like Slurm's ("squeue: error:
// ...") and exit 1.
func Main(args []string, extra func() []*cobra.Command) int {
	return runLazy(context.Background(), osEnv(), args, extra)
}

func run(ctx context.Context, e *env, args []string, extra ...*cobra.Command) int {
	return runLazy(ctx, e, args, func() []*cobra.Command { return extra })
}

func runLazy(ctx context.Context, e *env, args []string, extra func() []*cobra.Command) int {
	name := "stockade"
	if len(args) > 0 {
		name = filepath.Base(args[0])
		args = args[1:]
	}
	if name == "sbatch" {
		return runSbatch(ctx, e, args)
	}
	if name == "srun" {
		return runSrun(ctx, e, args)
	}
	if sc, ok := slurmCommands[name]; ok {
		return sc.run(ctx, e, args)
	}
	var more []*cobra.Command
	if extra != nil {
		more = extra()
	}
	root := newRootCommand(e, more...)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var ec exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return int(ec)
	case errors.Is(err, errReported):
		return 1
	}
	fmt.Fprintf(e.stderr, "stockade: error: %s\n", oneLine(err.Error()))
	return 1
}

// exitCode carries a Slurm command's exit code out of cobra; the command
// has printed its own messages.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

func newRootCommand(e *env, extra ...*cobra.Command) *cobra.Command {
	root := &cobra.Command{
		Use:   "stockade",
		Short: "Stockade: a Slurm-compatible HPC batch scheduler",
		Long: `Stockade runs batch jobs on a cluster with Slurm's user experience. This one
binary is the controller (server), the node agent (agent) and every client
command. Linked or copied under the name sbatch, squeue, scancel, sinfo,
scontrol or sacct it behaves as that command; "stockade squeue ..." is the
same as "squeue ...".

Client configuration: STOCKADE_SERVERS (host:port,...), STOCKADE_TOKEN,
STOCKADE_CA (cluster CA PEM file), or the TOML file $STOCKADE_CONFIG
(default ~/.config/stockade/client.toml) with servers = [...],
token = "..." or token_file = "...", and ca_file = "...".`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       version(),
	}
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetIn(e.stdin)
	root.SetVersionTemplate("stockade {{.Version}}\n")

	// The Slurm commands parse their own options, so "stockade squeue" is
	// exactly squeue; their help is the command's own.
	// Their help is built when asked for: building every command's option
	// list cost each "stockade" run about 0.4 ms.
	slurm := func(use, short string, help func() string, run func(context.Context, []string) int) *cobra.Command {
		c := &cobra.Command{
			Use: use, Short: short, DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				if code := run(cmd.Context(), args); code != 0 {
					return exitCode(code)
				}
				return nil
			},
		}
		c.SetHelpFunc(func(*cobra.Command, []string) { fmt.Fprint(e.stdout, help()) })
		return c
	}
	root.AddCommand(slurm("sbatch [OPTIONS] [SCRIPT [ARGS...]]", "Submit a batch script",
		sbatchHelp, func(ctx context.Context, args []string) int {
			return runSbatch(ctx, e, args)
		}))
	for _, name := range []string{"squeue", "scancel", "sinfo", "scontrol", "sacct"} {
		sc := slurmCommands[name]
		root.AddCommand(slurm(sc.usage, sc.short, sc.helpText, func(ctx context.Context, args []string) int {
			return sc.run(ctx, e, args)
		}))
	}
	// The scheduling policy commands; "stockade prio" is sprio and
	// "stockade share" sshare.
	for _, n := range []struct{ use, name string }{{"sacctmgr", "sacctmgr"}, {"prio", "sprio"}, {"share", "sshare"}} {
		sc := slurmCommands[n.name]
		c := slurm(n.use+" [OPTIONS]", sc.short, sc.helpText, func(ctx context.Context, args []string) int {
			return sc.run(ctx, e, args)
		})
		if n.use != n.name {
			c.Aliases = []string{n.name}
		}
		root.AddCommand(c)
	}
	root.AddCommand(statusCommand(e), userCommand(e), nodeCommand(e), auditCommand(e), attestCommand(e), versionCommand(e))
	root.AddCommand(acctCommand(e)) // usage ledger: statements, prices, proofs, verification
	for _, c := range extra {
		if c != nil {
			root.AddCommand(c)
		}
	}
	return root
}

func versionCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the stockade version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(e.stdout, "stockade %s (Slurm-compatible commands: slurm %s)\n", version(), slurmCompatVersion)
			return nil
		},
	}
}
