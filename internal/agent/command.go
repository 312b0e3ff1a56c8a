package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/internal/sbatch"
)

// Options configure an agent. Zero inventory fields are detected.
type Options struct {
	Name     string
	Servers  []string // controller API host:port
	StateDir string
	// JoinToken is needed only until the node holds a certificate.
	JoinToken string
	CPUs      int
	MemoryMB  int64
	GPUs      int
	Features  []string
	Heartbeat time.Duration
	// NetNS is a network namespace (path) every job joins; "" keeps the
	// executor's default.
	NetNS     string
	KillGrace time.Duration
	// CgroupParent holds this agent's job cgroups; "" is /stockade/<name>,
	// so agents sharing a host (tests, the demo) never collide.
	CgroupParent string
	// PidsLimit caps each job's tasks; 0 picks max(4096, 64 per CPU).
	PidsLimit int64
	// ClusterName is SLURM_CLUSTER_NAME; "" takes it from the cluster CA.
	ClusterName string
	// TPM names the node's TPM for attestation (see attest.Open): the node
	// enrolls with it instead of a join token and keeps proving its state.
	// "" is the join-token path.
	TPM string
	// CACertFile is the cluster CA (PEM) that TPM enrollment trusts; the
	// CA pin of JoinToken, or the CA stored at an earlier enrollment, do
	// as well.
	CACertFile string
	// AttestPCR is the PCR the agent measures itself into; 0 picks
	// attest.DefaultPCR.
	AttestPCR int
	Logger    *slog.Logger
}

// Defaults for flags and zero Options.
const (
	DefaultStateDir  = "/var/lib/stockade/agent"
	DefaultHeartbeat = 2 * time.Second
	DefaultKillGrace = 10 * time.Second
)

// NewCommand is `stockade agent`.
func NewCommand() *cobra.Command {
	var (
		opts      Options
		servers   string
		tokenFile string
		memory    string
		features  string
		logLevel  string
	)
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node daemon: enroll, offer this node's resources, run the jobs placed on it",
		Long: `The agent runs on every compute node. The first start needs an agent join
token (the bootstrap controller writes one to agent-join-token in its data
dir): the agent pins the cluster CA with it and obtains a client certificate
kept in <state-dir>/tls. Later starts need only --servers.

With --tpm the node proves with its TPM what it is instead: at start the
agent measures its own binary and its configuration into --attest-pcr
(once per TPM boot; the event log and the attestation key are kept in
<state-dir>/tpm), enrolls with its endorsement and attestation keys, and
then quotes its PCRs every third of the policy interval for a short-lived
certificate (in <state-dir>/tls). Enrollment trusts the cluster CA given by
--ca-cert (the ca.pem of a controller's data dir) or pinned by --join-token
(only its CA hash is used); later starts may omit both and trust the CA
stored at enrollment. A node the controllers evict has all its jobs killed
and enrolls again. Changing the agent binary or a measured option (name,
servers, cpus, memory, gpus, features, netns, pids-limit, cgroup-parent,
kill-grace, attest-pcr) adds a second measurement, which the policy
refuses until the TPM is reset (reboot).

Jobs run in detached shims: stopping or restarting the agent does not stop
them, and their exit status is reported when the agent is back.

Resources default to what the node has: the CPUs the agent may run on, the
RAM less a reserve for the system (5%, at least 256 MiB, at most 4 GiB) and
the /dev/nvidiaN devices.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)
			}
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			opts.Servers = splitList(servers)
			opts.Features = splitList(features)
			if memory != "" {
				mb, err := sbatch.ParseMemory(memory)
				if err != nil {
					return fmt.Errorf("--memory: %w", err)
				}
				opts.MemoryMB = mb
			}
			switch {
			case tokenFile != "" && opts.JoinToken != "":
				return errors.New("give --join-token or --join-token-file, not both")
			case tokenFile != "":
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("--join-token-file: %w", err)
				}
				opts.JoinToken = strings.TrimSpace(string(b))
			case opts.JoinToken == "":
				opts.JoinToken = os.Getenv("STOCKADE_JOIN_TOKEN")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return Run(ctx, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Name, "name", host, "node name (the certificate's CN)")
	f.StringVar(&servers, "servers", os.Getenv("STOCKADE_SERVERS"), "controller API addresses, host:port, comma separated (default $STOCKADE_SERVERS)")
	f.StringVar(&opts.StateDir, "state-dir", DefaultStateDir, "directory for the node identity and job records")
	f.StringVar(&opts.JoinToken, "join-token", "", "agent join token, needed on the first start (or $STOCKADE_JOIN_TOKEN)")
	f.StringVar(&tokenFile, "join-token-file", "", "read the join token from this file")
	f.IntVar(&opts.CPUs, "cpus", 0, "CPUs offered to jobs (default: the CPUs this process may use)")
	f.StringVar(&memory, "memory", "", "memory offered to jobs, e.g. 16G or 16384 (MiB) (default: RAM less a reserve; 0 too)")
	f.IntVar(&opts.GPUs, "gpus", 0, "GPUs offered to jobs (default: the /dev/nvidiaN devices)")
	f.StringVar(&features, "features", "", "node features for --constraint, comma separated")
	f.DurationVar(&opts.Heartbeat, "heartbeat", DefaultHeartbeat, "heartbeat interval")
	f.StringVar(&opts.NetNS, "netns", "", "network namespace (path) that jobs join")
	f.DurationVar(&opts.KillGrace, "kill-grace", DefaultKillGrace, "time between SIGTERM and SIGKILL when a job is cancelled or times out")
	f.StringVar(&opts.CgroupParent, "cgroup-parent", "", "cgroup under which job cgroups are made (default /stockade/<name>)")
	f.Int64Var(&opts.PidsLimit, "pids-limit", 0, "maximum tasks per job (default: 4096 or 64 per allocated CPU, whichever is larger)")
	f.StringVar(&opts.ClusterName, "cluster-name", "", "SLURM_CLUSTER_NAME of jobs (default: the name in the cluster CA)")
	f.StringVar(&opts.TPM, "tpm", "", "enroll and attest with this TPM: /dev/tpmrm0, swtpm:HOST:PORT or unix:PATH (default: none, join-token enrollment)")
	f.StringVar(&opts.CACertFile, "ca-cert", "", "cluster CA certificate (PEM) trusted for TPM enrollment, e.g. a controller's <data-dir>/ca.pem")
	f.IntVar(&opts.AttestPCR, "attest-pcr", attest.DefaultPCR, "PCR the agent measures its binary and configuration into (with --tpm)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// splitList splits a comma separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// normalize checks opts and fills defaults.
func (o *Options) normalize() error {
	if o.Name == "" {
		return errors.New("no node name: give --name")
	}
	if err := pki.ValidName(o.Name); err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	if len(o.Servers) == 0 {
		return errors.New("no controller address: give --servers host:port[,host:port...]")
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	abs, err := filepath.Abs(o.StateDir)
	if err != nil {
		return err
	}
	o.StateDir = abs
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.CgroupParent == "" {
		o.CgroupParent = "/stockade/" + o.Name
	}
	if o.KillGrace <= 0 {
		o.KillGrace = DefaultKillGrace
	}
	if o.CPUs < 0 || o.MemoryMB < 0 || o.GPUs < 0 || o.PidsLimit < 0 {
		return errors.New("--cpus, --memory, --gpus and --pids-limit must not be negative")
	}
	if o.NetNS != "" {
		if _, err := os.Stat(o.NetNS); err != nil {
			return fmt.Errorf("--netns: %w", err)
		}
	}
	if o.CACertFile != "" && o.TPM == "" {
		return errors.New("--ca-cert is for TPM enrollment: give --tpm too, or use --join-token")
	}
	if o.AttestPCR == 0 {
		o.AttestPCR = attest.DefaultPCR
	}
	if o.AttestPCR < 0 || o.AttestPCR > 23 {
		return fmt.Errorf("--attest-pcr %d: want a PCR from 1 to 23", o.AttestPCR)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}
