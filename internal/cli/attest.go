package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/policy"
)

// groupCommand is a command that only holds subcommands. It is runnable so
// that a misspelt subcommand is an error rather than cobra's help and exit 0.
func groupCommand(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
}

// writeJSON prints v indented, as the other --json outputs are.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func attestCommand(e *env) *cobra.Command {
	cmd := groupCommand("attest", "TPM attestation: the measurement policy and offline quote checks")
	pol := groupCommand("policy", "Show or change the cluster's measurement policy (admins)")
	pol.AddCommand(policyShowCommand(e), policySetCommand(e), policyAddDigestCommand(e))
	cmd.AddCommand(pol, verifyQuoteCommand(e))
	return cmd
}

func policyShowCommand(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show the measurement policy",
		Long: `Shows the policy nodes are judged against: its settings, the allowed agent
binaries and how each quoted PCR is checked. --json prints the policy
document, which "stockade attest policy set FILE" accepts back.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				p, err := c.AttestPolicy(ctx)
				if err != nil {
					return fmt.Errorf("%s", apiMessage(err))
				}
				if asJSON {
					return writeJSON(e.stdout, p)
				}
				fmt.Fprint(e.stdout, p.String())
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the policy as JSON")
	return cmd
}

// policyEdits are the changes "attest policy set" makes; nil or zero
// fields leave the policy as it is.
type policyEdits struct {
	golden    map[int][]string // from --manifest
	tofu      *bool
	interval  time.Duration
	onFailure string
	certTTL   time.Duration
}

// apply changes p and validates the result. Scalars go first so that
// Normalize fills the default PCR list before the manifest's PCRs are
// added to it.
func (ed *policyEdits) apply(p *policy.Policy) error {
	if ed.tofu != nil {
		p.TrustOnFirstUse = *ed.tofu
	}
	if ed.interval > 0 {
		p.IntervalSec = int64(ed.interval / time.Second)
	}
	if ed.certTTL > 0 {
		p.CertTTLSec = int64(ed.certTTL / time.Second)
	}
	if ed.onFailure != "" {
		p.OnFailure = ed.onFailure
	}
	if err := p.Normalize(); err != nil {
		return fmt.Errorf("invalid policy: %v", err)
	}
	if ed.golden == nil {
		return nil
	}
	// Golden values for a PCR mean it must be quoted; the agent PCR is left
	// for Normalize to refuse.
	for i, vals := range ed.golden {
		if !slices.Contains(p.PCRs, i) && i != p.AgentPCR {
			p.PCRs = append(p.PCRs, i)
		}
		p.Golden[i] = slices.Clone(vals)
	}
	if err := p.Normalize(); err != nil {
		return fmt.Errorf("invalid policy: %v", err)
	}
	return nil
}

// wholeSeconds checks a duration flag: the policy counts in seconds, and
// zero would silently mean "the default".
func wholeSeconds(name string, d time.Duration) error {
	if d <= 0 || d%time.Second != 0 {
		return fmt.Errorf("--%s %v: want a positive whole number of seconds such as 60s", name, d)
	}
	return nil
}

// decodePolicy reads a policy JSON document. Unknown keys are errors so
// that a misspelt key cannot silently leave a setting at its default.
func decodePolicy(data []byte) (*policy.Policy, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p policy.Policy
	if err := dec.Decode(&p); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON object")
	}
	return &p, nil
}

func policySetCommand(e *env) *cobra.Command {
	var manifest, tofu, onFailure string
	var interval, certTTL time.Duration
	cmd := &cobra.Command{
		Use:   "set [FILE] [--manifest FILE] [--tofu on|off] [--interval 60s] [--on-failure requeue|kill] [--cert-ttl 1h]",
		Short: "Change the measurement policy",
		Long: `Stores a new measurement policy. With FILE (a policy JSON document, as
"policy show --json" prints it) the file is the whole new policy; without,
the current policy is fetched and changed. The options then apply on top:

  --manifest FILE   golden PCR values from a reference manifest (TOML or
                    JSON); the PCRs it lists get exactly its values and are
                    added to the quoted PCRs, the other PCRs keep theirs
  --tofu on|off     record the values of PCRs without golden values the
                    first time a node shows them
  --interval D      re-attestation interval
  --on-failure A    what happens to a failed node's jobs: requeue or kill
  --cert-ttl D      lifetime of node certificates; must exceed the interval

The result is checked here before it is sent; the controllers store it
under the next version. An edit is refused if the policy changed since it
was fetched (e.g. values were recorded on first use meanwhile): a FILE's
"version" must be the current one, or 0 to replace the policy regardless.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ed policyEdits
			changed := len(args) > 0
			fl := cmd.Flags()
			if fl.Changed("tofu") {
				var on bool
				switch tofu {
				case "on":
					on = true
				case "off":
				default:
					return fmt.Errorf("--tofu %q: want on or off", tofu)
				}
				ed.tofu, changed = &on, true
			}
			if fl.Changed("interval") {
				if err := wholeSeconds("interval", interval); err != nil {
					return err
				}
				ed.interval, changed = interval, true
			}
			if fl.Changed("cert-ttl") {
				if err := wholeSeconds("cert-ttl", certTTL); err != nil {
					return err
				}
				ed.certTTL, changed = certTTL, true
			}
			if fl.Changed("on-failure") {
				if onFailure != policy.OnFailureRequeue && onFailure != policy.OnFailureKill {
					return fmt.Errorf("--on-failure %q: want %s or %s", onFailure, policy.OnFailureRequeue, policy.OnFailureKill)
				}
				ed.onFailure, changed = onFailure, true
			}
			if fl.Changed("manifest") {
				data, err := e.readFile(manifest)
				if err != nil {
					return fmt.Errorf("--manifest: %v", err)
				}
				if ed.golden, err = policy.ParseManifest(data); err != nil {
					return fmt.Errorf("--manifest %s: %v", manifest, err)
				}
				changed = true
			}
			if !changed {
				return errors.New("nothing to change: give a policy FILE or --manifest, --tofu, --interval, --on-failure or --cert-ttl")
			}
			var fromFile *policy.Policy
			if len(args) > 0 {
				data, err := e.readFile(args[0])
				if err != nil {
					return err
				}
				if fromFile, err = decodePolicy(data); err != nil {
					return fmt.Errorf("%s: %v", args[0], err)
				}
				if err := ed.apply(fromFile); err != nil {
					return fmt.Errorf("%s: %v", args[0], err)
				}
			}
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				p := fromFile
				if p == nil {
					cur, err := c.AttestPolicy(ctx)
					if err != nil {
						return fmt.Errorf("%s", apiMessage(err))
					}
					if err := ed.apply(cur); err != nil {
						return err
					}
					p = cur
				}
				stored, err := c.SetAttestPolicy(ctx, p)
				if err != nil {
					return fmt.Errorf("%s", apiMessage(err))
				}
				fmt.Fprint(e.stdout, stored.String())
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&manifest, "manifest", "", "set golden PCR values from this reference manifest `file`")
	fl.StringVar(&tofu, "tofu", "", "trust on first use: on or off")
	fl.DurationVar(&interval, "interval", 0, "re-attestation `interval`, e.g. 60s")
	fl.StringVar(&onFailure, "on-failure", "", "what happens to a failed node's jobs: requeue or kill")
	fl.DurationVar(&certTTL, "cert-ttl", 0, "node certificate `lifetime`, e.g. 1h")
	return cmd
}

func policyAddDigestCommand(e *env) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "add-digest DIGEST | --file BINARY",
		Short: "Allow an agent binary",
		Long: `Adds an agent binary to the allow-list: DIGEST is "sha256:<hex>" or the bare
hex sha256sum prints; --file hashes the binary instead. Nodes whose agent
measured another binary fail attestation.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var digest string
			switch {
			case len(args) == 1 && file != "":
				return errors.New("give either DIGEST or --file, not both")
			case len(args) == 1:
				digest = args[0]
			case file != "":
				data, err := e.readFile(file)
				if err != nil {
					return fmt.Errorf("--file: %v", err)
				}
				sum := sha256.Sum256(data)
				digest = "sha256:" + hex.EncodeToString(sum[:])
			default:
				return errors.New("give the agent binary's DIGEST or --file BINARY")
			}
			// Canonical form, and a bad digest is refused before any request.
			var scratch policy.Policy
			if err := scratch.AddDigest(digest); err != nil {
				return err
			}
			digest = scratch.AgentDigests[0]
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				p, err := c.AddAgentDigest(ctx, digest)
				if err != nil {
					return fmt.Errorf("%s", apiMessage(err))
				}
				fmt.Fprintf(e.stdout, "Agent binary %s allowed (policy version %d, %d allowed)\n", digest, p.Version, len(p.AgentDigests))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "hash this agent `binary` for its digest")
	return cmd
}
