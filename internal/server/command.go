package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// NewCommand is `stockade server`.
func NewCommand() *cobra.Command {
	var (
		opts      Options
		join      string
		tokenFile string
		logLevel  string
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a controller (Raft member and API server)",
		Long: `Run a Stockade controller.

The first controller of a cluster starts with --bootstrap: it creates the
cluster CA and writes to its data directory, as 0600 files, the admin token
(admin-token, user root), the join tokens for agents (agent-join-token) and
controllers (controller-join-token), and the CA certificate (ca.pem) that
clients need. Other controllers start with --join ADDR and a controller join
token. Later starts with an initialized data directory need neither.

Agents with a TPM enroll instead of using a join token. Their EK certificate
is checked against --tpm-ca-bundle, a PEM file of the TPM vendors' EK CA
certificates; the bundle is not replicated, so give every controller the
same file (any of them may become the leader, which does the checking).
EKs without a verifiable certificate can be approved by an administrator.

Sealed accounting epochs are anchored on the chain of the [chain] section
of --config, signed with the cluster's anchoring key (anchor-key, 0600,
made at bootstrap and given to controllers as they join). Without
rpc_url, one controller runs a development chain, geth --dev as a child
process: with --dev-chain=auto the one that bootstrapped the cluster. geth
is --geth, else $STOCKADE_GETH, else geth or tools/geth in the directory of
this executable (make geth puts it in bin/tools/), else geth on $PATH.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level: %q is not debug, info, warn or error", logLevel)
			}
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			if join != "" {
				for _, a := range strings.Split(join, ",") {
					if a = strings.TrimSpace(a); a != "" {
						opts.Join = append(opts.Join, a)
					}
				}
			}
			if opts.JoinToken == "" {
				opts.JoinToken = os.Getenv("STOCKADE_JOIN_TOKEN")
			}
			if tokenFile != "" {
				if cmd.Flags().Changed("join-token") {
					return errors.New("give --join-token or --join-token-file, not both")
				}
				b, err := os.ReadFile(tokenFile)
				if err != nil {
					return fmt.Errorf("--join-token-file: %w", err)
				}
				opts.JoinToken = strings.TrimSpace(string(b))
			}
			cmd.SilenceUsage = true
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return Run(ctx, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DataDir, "data-dir", "/var/lib/stockade/server", "state directory (Raft log, certificates, tokens)")
	f.StringVar(&opts.ID, "id", "", "controller id, stable across restarts (default: the host name)")
	f.StringVar(&opts.Listen, "listen", "127.0.0.1:7701", "API address (host:port)")
	f.StringVar(&opts.RaftBind, "raft", "127.0.0.1:7702", "Raft address (host:port)")
	f.StringVar(&opts.Advertise, "advertise", "", "API address other members and clients use (default: --listen)")
	f.StringVar(&opts.RaftAdvertise, "raft-advertise", "", "Raft address peers use (default: --raft)")
	f.BoolVar(&opts.Bootstrap, "bootstrap", false, "create a new cluster (first start of the first controller)")
	f.StringVar(&join, "join", "", "API address(es), comma-separated, of members to join through (first start)")
	f.StringVar(&opts.JoinToken, "join-token", "", "controller join token (or $STOCKADE_JOIN_TOKEN)")
	f.StringVar(&tokenFile, "join-token-file", "", "read the controller join token from this file")
	f.StringVar(&opts.ConfigFile, "config", "", "cluster configuration file (TOML: cluster_name, [[partitions]])")
	f.DurationVar(&opts.NodeTimeout, "node-timeout", DefaultNodeTimeout, "mark a node DOWN after this long without a heartbeat")
	f.StringSliceVar(&opts.TLSNames, "tls-san", nil, "extra host names or IPs for this controller's certificate")
	f.StringVar(&opts.TPMCABundle, "tpm-ca-bundle", "", "PEM file of TPM manufacturers' EK CA certificates for attestation (give every controller the same file)")
	f.StringVar((*string)(&opts.DevChain), "dev-chain", string(DevChainAuto), "run the dev chain (geth --dev) here when [chain] uses it: auto (if this controller bootstrapped the cluster), on or off")
	f.StringVar(&opts.Geth, "geth", "", "geth binary for the dev chain (default: $STOCKADE_GETH, geth or tools/geth beside this executable, $PATH)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
