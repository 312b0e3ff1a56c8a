package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// slurmCompatVersion is the Slurm release whose commands' behaviour these
// follow; --version prints it as Slurm's tools do ("slurm 23.11.0"), since
// workflow tools parse that line.
const slurmCompatVersion = "23.11.0"

// runFunc runs a command with its positional arguments.
type runFunc func(ctx context.Context, e *env, args []string) error

// slurmCommand is one Slurm command: pflag options parsed the way Slurm's
// getopt_long does (short and long forms, -u alice, --user=alice, -tPD).
type slurmCommand struct {
	name  string
	short string // one line
	usage string // synopsis
	long  string // text before the option list
	// interspersed allows options after positional arguments.
	interspersed bool
	// helpShort is the one-letter form of --help, for the commands whose
	// -h is help rather than --noheader (sacct, scontrol).
	helpShort string
	// setup defines the options on fs and returns the command body.
	setup func(fs *pflag.FlagSet) runFunc
}

// flagSet builds the command's options (plus --help, --usage and
// --version), returning the body.
func (sc *slurmCommand) flagSet() (*pflag.FlagSet, runFunc, *bool, *bool) {
	fs := pflag.NewFlagSet(sc.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	fs.SetInterspersed(sc.interspersed)
	run := sc.setup(fs)
	help := fs.BoolP("help", sc.helpShort, false, "show this help and exit")
	fs.Var(&aliasBool{help}, "usage", "show this help and exit")
	fs.Lookup("usage").NoOptDefVal = "true"
	version := fs.BoolP("version", "V", false, "print the Slurm version these commands follow and exit")
	return fs, run, help, version
}

// aliasBool makes one bool flag set another.
type aliasBool struct{ p *bool }

func (a *aliasBool) String() string   { return fmt.Sprint(*a.p) }
func (a *aliasBool) Set(string) error { *a.p = true; return nil }
func (a *aliasBool) Type() string     { return "bool" }
func (a *aliasBool) IsBoolFlag() bool { return true }

// helpText is the command's help: synopsis, description, options.
func (sc *slurmCommand) helpText() string {
	fs, _, _, _ := sc.flagSet()
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n\n", sc.usage)
	if sc.long != "" {
		b.WriteString(strings.TrimSpace(sc.long))
		b.WriteString("\n\n")
	}
	b.WriteString("Options:\n")
	b.WriteString(fs.FlagUsages())
	return b.String()
}

// run parses args and runs the command; the result is the exit code.
// Every error is one line on stderr: "<command>: error: <message>".
func (sc *slurmCommand) run(ctx context.Context, e *env, args []string) int {
	fs, body, help, version := sc.flagSet()
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(e.stderr, "%s: error: %s\n", sc.name, oneLine(err.Error()))
		return 1
	}
	if *help {
		fmt.Fprint(e.stdout, sc.helpText())
		return 0
	}
	if *version {
		fmt.Fprintf(e.stdout, "slurm %s\n", slurmCompatVersion)
		return 0
	}
	if err := body(ctx, e, fs.Args()); err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintf(e.stderr, "%s: error: %s\n", sc.name, oneLine(err.Error()))
		}
		return 1
	}
	return 0
}
