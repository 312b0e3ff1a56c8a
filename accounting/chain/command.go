package chain

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// NewCommand is `stockade chain`: for now only --dev, geth's dev-mode chain
// (StartDevChain) with the anchor contract deployed. Production points
// Config.RPCURL at a real node instead.
func NewCommand() *cobra.Command {
	var (
		dev bool
		cfg DevConfig
	)
	cmd := &cobra.Command{
		Use:   "chain",
		Short: "Run a development Ethereum chain for anchoring accounting epochs",
		Long: `Run geth --dev (go-ethereum's dev-mode chain; make geth builds it) as a child
process, with the anchor contract deployed, until interrupted. Prints the
JSON-RPC URL, chain id, the contract address and the dev account's key file:
give them to controllers.

Everything lives in --datadir: the chain, the dev account's key (dev.key,
funded in genesis on the first start), geth's keystore and output
(geth.log) and the contract's address, so a restart on the same directory
resumes the same chain and contract.

geth is --geth, else $STOCKADE_GETH, else geth or tools/geth in this
executable's directory, else geth on $PATH.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !dev {
				return errors.New("only --dev is supported; for a real chain, configure controllers with its RPC URL")
			}
			if cfg.DataDir == "" {
				return errors.New("--datadir is required")
			}
			cmd.SilenceUsage = true
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			d, err := StartDevChain(ctx, cfg)
			if err != nil {
				return err
			}
			defer d.Close()
			addr, err := d.EnsureContract(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "rpc:      %s\n", d.URL())
			fmt.Fprintf(out, "chain id: %d\n", d.ChainID())
			fmt.Fprintf(out, "contract: %s\n", addr.Hex())
			fmt.Fprintf(out, "account:  %s (key %s)\n", d.Account().Hex(), d.KeyFile())
			select {
			case <-ctx.Done():
				return nil
			case <-d.Done():
				return d.Err()
			}
		},
	}
	f := cmd.Flags()
	f.BoolVar(&dev, "dev", false, "run a dev-mode chain (the only mode)")
	f.StringVar(&cfg.DataDir, "datadir", "", "chain data, dev key and contract address")
	f.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8545", "JSON-RPC listen address")
	f.StringVar(&cfg.Geth, "geth", "", "geth binary (default: $"+EnvGeth+", geth or tools/geth beside this executable, $PATH)")
	f.DurationVar(&cfg.Period, "period", 0, "block interval in whole seconds (0: a block per transaction)")
	return cmd
}
