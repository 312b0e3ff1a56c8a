// Package sbatch turns an sbatch invocation (command line, #SBATCH
// directives, SBATCH_* environment) into a normalized api.JobSpec, and
// holds Slurm's time, memory, array, dependency and file-name pattern
// formats. It does no I/O except through what Input passes in.
package sbatch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/stockade-hpc/stockade/api"
)

// MaxScriptSize is Slurm's default max_script_size.
const MaxScriptSize = 4 << 20

var (
	// ErrHelp is returned when the command line asks for help
	// (-h, --help, --usage); print Usage.
	ErrHelp = errors.New("sbatch: help requested")
	// ErrVersion is returned for -V/--version.
	ErrVersion = errors.New("sbatch: version requested")
)

// errNoInterpreter is Slurm's wording, on one line.
var errNoInterpreter = errors.New("This does not look like a batch script. The first line must start with #! followed by the path to an interpreter. For instance: #!/bin/sh")

// Request is a parsed sbatch invocation.
type Request struct {
	Spec                             api.JobSpec
	Parsable, TestOnly, DryRun, JSON bool
	// Warnings name what was accepted but not acted on, e.g. "option
	// --begin is not implemented by Stockade yet; ignored".
	Warnings []string
}

// Input is everything Parse reads.
type Input struct {
	Args []string // command line after the program name
	// Env is the submitting environment: SBATCH_* variables set options,
	// and --export copies from it.
	Env map[string]string
	Cwd string
	// ReadFile reads the script named on the command line and node files
	// (-w/-x values containing "/", -F).
	ReadFile func(path string) ([]byte, error)
	Stdin    io.Reader // the script when no file is named and no --wrap
	// Now is the time relative --begin values count from (zero: the
	// current time).
	Now time.Time
}

type source int

const (
	srcDirective source = iota + 1
	srcEnv
	srcCmdline
)

type parser struct {
	in       Input
	o        options
	src      source
	warnings []string
}

func newParser(in Input) *parser {
	return &parser{in: in, o: options{requeue: true}}
}

// now is the time --begin counts from.
func (p *parser) now() time.Time {
	if p.in.Now.IsZero() {
		return time.Now()
	}
	return p.in.Now
}

func (p *parser) warn(msg string) {
	for _, w := range p.warnings {
		if w == msg {
			return
		}
	}
	p.warnings = append(p.warnings, msg)
}

func (p *parser) abs(path string) string {
	if filepath.IsAbs(path) {
		return filepath.Clean(path)
	}
	return filepath.Join(p.in.Cwd, path)
}

func (p *parser) readFile(path string) ([]byte, error) {
	if p.in.ReadFile == nil {
		return nil, fmt.Errorf("cannot read %s: no file reader", path)
	}
	return p.in.ReadFile(path)
}

// Parse applies, as Slurm's sbatch does, #SBATCH directives first, then
// SBATCH_* environment variables, then the command line, each overriding
// the one before, and fills in Slurm's defaults. Errors are one line and
// name where the bad value came from: "line 3: --time: ...", "--time: ...",
// "SBATCH_TIMELIMIT: ...".
//
// Two Slurm requests have no JobSpec form yet and are passed on as "not
// given" with a warning: --time=UNLIMITED (or 0) and --mem=0 (all of each
// node's memory). Output and Error are kept as written: relative patterns
// are relative to WorkDir, as Slurm resolves them against --chdir.
func Parse(in Input) (*Request, error) {
	r, err := parse(in)
	if err != nil {
		return nil, oneLine(err)
	}
	return r, nil
}

// oneLine keeps an error to one line when it quotes input (a file name, an
// option) that contains line breaks.
func oneLine(err error) error {
	msg := err.Error()
	if !strings.ContainsAny(msg, "\r\n") {
		return err
	}
	return errors.New(strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(msg))
}

func parse(in Input) (*Request, error) {
	// A first pass over the command line finds the script and --wrap.
	first := newParser(in)
	rest, err := first.parseArgs(in.Args, false)
	if err != nil {
		return nil, err
	}
	if first.o.help {
		return nil, ErrHelp
	}
	if first.o.version {
		return nil, ErrVersion
	}
	if len(rest) > 0 && rest[0] == ":" {
		return nil, errors.New("heterogeneous jobs (':') are not supported by Stockade yet")
	}
	script, name, err := first.loadScript(rest)
	if err != nil {
		return nil, err
	}

	p := newParser(in)
	p.src = srcDirective
	if err := p.parseDirectives(script); err != nil {
		return nil, err
	}
	p.src = srcEnv
	if err := p.applyEnv(); err != nil {
		return nil, err
	}
	p.src = srcCmdline
	if _, err := p.parseArgs(in.Args, false); err != nil {
		return nil, err
	}
	spec, err := p.finish(script, name, rest)
	if err != nil {
		return nil, err
	}
	return &Request{
		Spec:     *spec,
		Parsable: p.o.parsable,
		TestOnly: p.o.testOnly,
		DryRun:   p.o.dryRun,
		JSON:     p.o.json,
		Warnings: p.warnings,
	}, nil
}

// loadScript returns the script text and the job's default name.
func (p *parser) loadScript(rest []string) (string, string, error) {
	if p.o.wrapSet {
		if len(rest) > 0 {
			return "", "", errors.New("script arguments not permitted with --wrap option")
		}
		s := "#!/bin/sh\n# This script was created by sbatch --wrap.\n\n" + p.o.wrap + "\n"
		return s, "wrap", checkScript([]byte(s))
	}
	var b []byte
	name := "sbatch"
	if len(rest) > 0 {
		var err error
		if b, err = p.readScript(rest[0]); err != nil {
			return "", "", err
		}
		name = filepath.Base(rest[0])
	} else {
		if p.in.Stdin == nil {
			return "", "", errors.New("no batch script given")
		}
		var err error
		if b, err = io.ReadAll(io.LimitReader(p.in.Stdin, MaxScriptSize+1)); err != nil {
			return "", "", fmt.Errorf("reading the script from standard input: %w", err)
		}
	}
	if err := checkScript(b); err != nil {
		return "", "", err
	}
	return string(b), name, nil
}

// readScript resolves the script as Slurm does: relative to the current
// directory (not --chdir, which Slurm applies only after finding the
// script), then, for a name not starting with ".", along PATH.
func (p *parser) readScript(path string) ([]byte, error) {
	cands := []string{path}
	if !filepath.IsAbs(path) {
		cands = []string{filepath.Join(p.in.Cwd, path)}
		if !strings.HasPrefix(path, ".") {
			for dir := range strings.SplitSeq(p.in.Env["PATH"], ":") {
				if filepath.IsAbs(dir) {
					cands = append(cands, filepath.Join(dir, path))
				}
			}
		}
	}
	var firstErr error
	for _, c := range cands {
		b, err := p.readFile(c)
		if err == nil {
			return b, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	return nil, fmt.Errorf("unable to open batch script %q: %w", path, firstErr)
}

// checkScript applies Slurm's checks on a batch script's text.
func checkScript(b []byte) error {
	if len(b) > MaxScriptSize {
		return fmt.Errorf("batch script is larger than %d bytes (4 MiB, Slurm's default max_script_size)", MaxScriptSize)
	}
	if len(b) == 0 {
		return errors.New("batch script is empty")
	}
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == 0 || (r == utf8.RuneError && size <= 1) {
			return fmt.Errorf("script contains binary data at line %d", bytes.Count(b[:i], []byte("\n"))+1)
		}
		i += size
	}
	if !bytes.HasPrefix(b, []byte("#!")) {
		return errNoInterpreter
	}
	if bytes.Contains(b, []byte("\r\n")) {
		return errors.New(`batch script contains DOS line breaks (\r\n) instead of expected UNIX line breaks (\n)`)
	}
	return nil
}

// flagSet builds the one option table, bound to p, for any source.
func (p *parser) flagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("sbatch", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false
	for _, d := range allOptions {
		f := fs.VarPF(&optValue{p: p, d: d}, d.long, d.short, d.usage)
		switch d.arg {
		case noArg:
			f.NoOptDefVal = "true"
		case optArg:
			f.NoOptDefVal = d.bare
		}
		f.Hidden = d.set == nil
	}
	return fs
}

// optValue routes pflag's Set to the option's setter.
type optValue struct {
	p *parser
	d *optDef
}

func (v *optValue) String() string { return "" }

func (v *optValue) Type() string {
	if v.d.arg == noArg {
		return "bool" // keeps "[=true]" out of the usage text
	}
	return "value"
}

func (v *optValue) Set(s string) error {
	if v.d.arg == noArg && s != "true" {
		return errNoArgument
	}
	return v.p.apply(v.d, s, "")
}

func (p *parser) apply(d *optDef, v, env string) error {
	if d.set == nil {
		if env != "" {
			p.warn(fmt.Sprintf("option --%s (from %s) is not implemented by Stockade yet; ignored", d.long, env))
		} else {
			p.warn(fmt.Sprintf("option --%s is not implemented by Stockade yet; ignored", d.long))
		}
		return nil
	}
	return d.set(p, v)
}

// parseArgs parses command-line style arguments and returns the ones that
// are not options. Directives allow options after other words (getopt's
// permuting); the command line stops at the script name.
func (p *parser) parseArgs(args []string, interspersed bool) ([]string, error) {
	args, err := canonicalArgs(args, interspersed)
	if err != nil {
		return nil, err
	}
	fs := p.flagSet()
	fs.SetInterspersed(interspersed)
	if err := fs.Parse(args); err != nil {
		return nil, translate(err)
	}
	return fs.Args(), nil
}

// canonicalArgs rewrites abbreviated long options to their full names, as
// getopt_long accepts "--part" for "--partition", so pflag can parse them.
func canonicalArgs(args []string, interspersed bool) ([]string, error) {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(out, args[i:]...), nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			if name == "" || name[0] == '-' {
				return nil, fmt.Errorf("unrecognized option '%s'", a)
			}
			d, err := lookupLong(name)
			if err != nil {
				return nil, err
			}
			if hasVal {
				out = append(out, "--"+d.long+"="+val)
				continue
			}
			out = append(out, "--"+d.long)
			if d.arg == reqArg && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
		case len(a) > 1 && a[0] == '-':
			out = append(out, a)
			// Find whether the cluster's last option takes the next word.
			for j := 1; j < len(a); j++ {
				d := byShort[a[j]]
				if d == nil || d.arg == optArg {
					break
				}
				if d.arg == reqArg {
					if j == len(a)-1 && i+1 < len(args) {
						i++
						out = append(out, args[i])
					}
					break
				}
			}
		default:
			if !interspersed {
				return append(out, args[i:]...), nil
			}
			out = append(out, a)
		}
	}
	return out, nil
}

// translate turns pflag's errors into getopt-like one-liners.
func translate(err error) error {
	var inv *pflag.InvalidValueError
	var req *pflag.ValueRequiredError
	var ne *pflag.NotExistError
	var syn *pflag.InvalidSyntaxError
	switch {
	case errors.As(err, &inv):
		if errors.Is(inv, errNoArgument) {
			return fmt.Errorf("option '--%s' doesn't allow an argument", inv.GetFlag().Name)
		}
		return fmt.Errorf("--%s: %w", inv.GetFlag().Name, inv.Unwrap())
	case errors.As(err, &req):
		return fmt.Errorf("option '--%s' requires an argument", req.GetFlag().Name)
	case errors.As(err, &ne):
		if ne.GetSpecifiedShortnames() != "" {
			return fmt.Errorf("invalid option -- '%s'", ne.GetSpecifiedName())
		}
		return fmt.Errorf("unrecognized option '--%s'", ne.GetSpecifiedName())
	case errors.As(err, &syn):
		return fmt.Errorf("unrecognized option '%s'", syn.GetSpecifiedFlag())
	}
	return err
}

// parseDirectives applies the #SBATCH lines that come before the first
// command; later ones are ignored, as Slurm ignores them.
func (p *parser) parseDirectives(script string) error {
	lineno := 0
	for line := range strings.SplitSeq(script, "\n") {
		lineno++
		rest, ok := strings.CutPrefix(line, "#SBATCH")
		if !ok {
			if t := strings.TrimLeft(line, " \t\v\f\r"); t != "" && t[0] != '#' {
				return nil
			}
			continue
		}
		args, err := splitDirective(rest)
		if err != nil {
			return fmt.Errorf("line %d: %w", lineno, err)
		}
		if len(args) == 0 {
			continue
		}
		if strings.EqualFold(args[0], "hetjob") || strings.EqualFold(args[0], "packjob") {
			return fmt.Errorf("line %d: heterogeneous jobs are not supported by Stockade yet", lineno)
		}
		left, err := p.parseArgs(args, true)
		if err != nil {
			return fmt.Errorf("line %d: %w", lineno, err)
		}
		if len(left) > 0 {
			return fmt.Errorf("line %d: invalid directive found in batch script: %s", lineno, left[0])
		}
	}
	return nil
}

// splitDirective splits a directive's text into words as Slurm does:
// white space separates, quotes group, a backslash escapes the next
// character, and an unquoted # starts a comment.
func splitDirective(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, escaped := false, false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped, inWord = true, true
			continue
		case quote != 0:
			if c == quote {
				quote = 0
				continue
			}
		case c == '"' || c == '\'':
			quote, inWord = c, true
			continue
		case c == '#':
			if inWord {
				words = append(words, cur.String())
			}
			return words, nil
		case c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
			continue
		}
		if !inWord && c == ':' {
			return nil, errors.New("heterogeneous jobs (':') are not supported by Stockade yet")
		}
		cur.WriteByte(c)
		inWord = true
	}
	if quote != 0 {
		return nil, fmt.Errorf("unmatched %c", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// applyEnv applies the SBATCH_* input environment variables.
func (p *parser) applyEnv() error {
	for _, e := range envOptions {
		v, ok := p.in.Env[e.env]
		if !ok {
			continue
		}
		d := byLong[e.opt]
		switch d.arg {
		case noArg:
			v = "true"
		case optArg:
			if v == "" {
				v = d.bare
			}
		}
		if err := p.apply(d, v, e.env); err != nil {
			return fmt.Errorf("%s: %w", e.env, err)
		}
	}
	return nil
}

// finish applies Slurm's defaults and cross-option rules.
func (p *parser) finish(script, name string, rest []string) (*api.JobSpec, error) {
	o := &p.o
	s := &api.JobSpec{
		Name:            name,
		Partition:       o.partition,
		Account:         o.account,
		QOS:             o.qos,
		Reservation:     o.reservation,
		BeginTime:       o.begin,
		Script:          script,
		WorkDir:         p.in.Cwd,
		CPUsPerTask:     1,
		TasksPerNode:    o.ntasksPerNode,
		TimeLimitSec:    o.timeSec,
		WarnSignal:      o.warnSignal,
		WarnTimeSec:     o.warnTime,
		WarnBatchOnly:   o.warnBatch,
		Output:          o.output,
		Error:           o.errPath,
		OpenMode:        o.openMode,
		Array:           o.array,
		ArrayTasks:      o.arrayTasks,
		ArrayMaxRunning: o.arrayMax,
		Dependency:      o.dependency,
		Dependencies:    o.deps,
		Hold:            o.hold,
		Requeue:         o.requeue,
		ExcludeNodes:    o.exclude,
		NodeList:        o.nodelist,
		Constraints:     o.constraints,
		Exclusive:       o.exclusive,
		Comment:         o.comment,
		MailType:        o.mailType,
		MailUser:        o.mailUser,
		Image:           o.image,
		Nice:            o.nice,
	}
	if len(rest) > 1 {
		s.Argv = append([]string(nil), rest[1:]...)
	}
	if o.jobName != "" {
		s.Name = o.jobName
	}
	if o.chdir != "" {
		s.WorkDir = o.chdir
	}
	if s.Output == "" {
		s.Output = "slurm-%j.out"
		if s.Array != "" {
			s.Output = "slurm-%A_%a.out"
		}
	}
	if s.OpenMode == "" {
		s.OpenMode = "truncate"
	}
	if o.cpusPerTask > 0 {
		s.CPUsPerTask = o.cpusPerTask
	}
	if o.timeSet && o.timeSec == 0 {
		p.warn("--time: Stockade cannot request no time limit yet; the partition's default time limit applies")
	}

	// Nodes and tasks, as Slurm's _opt_verify: a node list raises the node
	// count to its length, and without --ntasks each node runs
	// --ntasks-per-node tasks (one by default).
	switch {
	case o.nodesSet:
		s.Nodes = o.nodes
	case o.ntasksSet && o.ntasksPerNode > 0:
		s.Nodes = (o.ntasks + o.ntasksPerNode - 1) / o.ntasksPerNode
	default:
		s.Nodes = 1
	}
	s.Nodes = max(s.Nodes, len(s.NodeList))
	switch {
	case o.ntasksSet:
		s.Tasks = o.ntasks
	case o.ntasksPerNode > 0:
		s.Tasks = s.Nodes * o.ntasksPerNode
	default:
		s.Tasks = s.Nodes
	}
	if s.Tasks < s.Nodes {
		p.warn(fmt.Sprintf("can't run %d processes on %d nodes, setting nnodes to %d", s.Tasks, s.Nodes, s.Tasks))
		s.Nodes = s.Tasks
		if len(s.NodeList) > s.Nodes {
			s.NodeList = s.NodeList[:s.Nodes]
		}
	}

	if err := p.memory(s); err != nil {
		return nil, err
	}
	if err := p.gpus(s); err != nil {
		return nil, err
	}
	env, err := exportEnv(o.export, o.exportSet, p.in.Env)
	if err != nil {
		return nil, fmt.Errorf("--export: %w", err)
	}
	s.Environment = env
	return s, nil
}

// memory applies Slurm's rule that --mem and --mem-per-cpu exclude each
// other, except that one given in the script or on the command line
// overrides the other taken from the environment.
func (p *parser) memory(s *api.JobSpec) error {
	o := &p.o
	mem, perCPU := o.memFrom != 0, o.memPerCPUFrom != 0
	switch {
	case mem && perCPU && (o.memFrom == srcEnv) != (o.memPerCPUFrom == srcEnv):
		if o.memFrom == srcEnv {
			mem = false
		} else {
			perCPU = false
		}
	case mem && perCPU:
		return errors.New("--mem and --mem-per-cpu are mutually exclusive")
	}
	if (mem && o.mem == 0) || (perCPU && o.memPerCPU == 0) {
		p.warn("--mem=0 (all of each node's memory) is not implemented by Stockade yet; the partition's default memory applies")
	}
	if mem {
		s.MemoryPerNodeMB = o.mem
	}
	if perCPU {
		s.MemoryPerCPUMB = o.memPerCPU
	}
	return nil
}

// gpus resolves --gpus-per-node, --gres=gpu and --gpus (a job total split
// over the nodes) into GPUs per node; given together they must agree.
func (p *parser) gpus(s *api.JobSpec) error {
	o := &p.o
	type ask struct {
		opt string
		n   int
	}
	var asks []ask
	if o.gpusPerNodeSet {
		asks = append(asks, ask{fmt.Sprintf("--gpus-per-node=%d", o.gpusPerNode), o.gpusPerNode})
	}
	if o.gresSet {
		asks = append(asks, ask{fmt.Sprintf("--gres=gpu:%d", o.gresGPUs), o.gresGPUs})
	}
	if o.gpusSet {
		per := (o.gpus + s.Nodes - 1) / s.Nodes
		if o.gpus%s.Nodes != 0 {
			p.warn(fmt.Sprintf("--gpus=%d does not divide evenly over %d nodes; %d GPUs are requested on each", o.gpus, s.Nodes, per))
		}
		asks = append(asks, ask{fmt.Sprintf("--gpus=%d", o.gpus), per})
	}
	for _, a := range asks[min(1, len(asks)):] {
		if a.n != asks[0].n {
			return fmt.Errorf("%s and %s ask for different numbers of GPUs per node", asks[0].opt, a.opt)
		}
	}
	if len(asks) > 0 {
		s.GPUsPerNode = asks[0].n
	}
	return nil
}

// exportEnv builds the job's environment per --export, as Slurm's sbatch:
// ALL (the default) copies everything; otherwise SLURM_* variables are
// copied and then each item in order: ALL copies everything, NAME copies
// one variable, NAME=value sets one. NONE alone copies only SLURM_*.
func exportEnv(export string, set bool, env map[string]string) (map[string]string, error) {
	out := make(map[string]string)
	if !set || strings.EqualFold(export, "ALL") {
		maps.Copy(out, env)
		return out, nil
	}
	for k, v := range env {
		if strings.HasPrefix(k, "SLURM_") {
			out[k] = v
		}
	}
	items, err := splitQuoted(export)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		switch k, v, hasVal := strings.Cut(it, "="); {
		case strings.EqualFold(it, "ALL"):
			maps.Copy(out, env)
		case strings.EqualFold(it, "NONE"), it == "":
		case k == "":
			return nil, fmt.Errorf("invalid item %q", it)
		case hasVal:
			out[k] = unquote(v)
		default:
			if v, ok := env[k]; ok {
				out[k] = v
			}
		}
	}
	return out, nil
}

// splitQuoted splits at commas outside quotes.
func splitQuoted(s string) ([]string, error) {
	var out []string
	var quote byte
	start := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == ',':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unmatched %c", quote)
	}
	return append(out, s[start:]), nil
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// Usage is the help text for the options Stockade implements.
func Usage() string {
	return "Usage: sbatch [OPTIONS...] script [args...]\n\n" + newParser(Input{}).flagSet().FlagUsages()
}
