package cli

import (
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/policy"
)

func verifyQuoteCommand(e *env) *cobra.Command {
	var akPub, message, signature, pcrs, nonce, policyFile string
	cmd := &cobra.Command{
		Use:   "verify-quote --ak-pub FILE --message FILE --signature FILE --pcrs FILE --nonce HEX [--policy FILE]",
		Short: "Check a tpm2-tools quote offline",
		Long: `Checks, without a cluster, a quote made with tpm2-tools:

  tpm2_createak ... -u ak.pub
  tpm2_quote -c ak.ctx -q NONCE -l sha256:0,1,2,3,4,5,6,7 -m msg -s sig -o pcrs

The AK must be a restricted signing key, its signature over the message
must verify, the message must be a TPM quote carrying NONCE (hex), and the
PCR values file (-F serialized or values) must hash to the quoted digest.

With --policy (a policy JSON document, as "attest policy show --json"
prints it) every policy PCR must also be quoted and hold one of its golden
values. Only golden values can be checked offline: there is no event log,
so PCRs without golden values and the agent PCR's allow-list are not
checked, and neither is that the AK lives in the node's TPM (enrollment
proves that). Exits 0 printing "quote OK: ..." and the sha256 PCR values,
or 1 printing "quote REJECTED: <reason>".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h := strings.TrimPrefix(strings.ToLower(nonce), "0x")
			n, err := hex.DecodeString(h)
			if err != nil || len(n) == 0 {
				return fmt.Errorf("--nonce %q: want the nonce given to tpm2_quote -q, in hex", nonce)
			}
			files := []struct {
				flag, path string
				data       []byte
			}{{"ak-pub", akPub, nil}, {"message", message, nil}, {"signature", signature, nil}, {"pcrs", pcrs, nil}}
			for i := range files {
				if files[i].data, err = e.readFile(files[i].path); err != nil {
					return fmt.Errorf("--%s: %v", files[i].flag, err)
				}
			}
			var pol *policy.Policy
			if policyFile != "" {
				data, err := e.readFile(policyFile)
				if err != nil {
					return fmt.Errorf("--policy: %v", err)
				}
				if pol, err = decodePolicy(data); err != nil {
					return fmt.Errorf("--policy %s: %v", policyFile, err)
				}
				if err := pol.Normalize(); err != nil {
					return fmt.Errorf("--policy %s: invalid policy: %v", policyFile, err)
				}
			}
			values, err := attest.VerifyTPM2ToolsQuote(files[0].data, files[1].data, files[2].data, files[3].data, n)
			if err != nil {
				fmt.Fprintf(e.stdout, "quote REJECTED: %s\n", rejectReason(err))
				return errReported
			}
			out, reason := formatQuoteCheck(values, pol)
			if reason != "" {
				fmt.Fprintf(e.stdout, "quote REJECTED: %s\n", oneLine(reason))
				return errReported
			}
			fmt.Fprint(e.stdout, out)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&akPub, "ak-pub", "", "the AK's public area `file` (tpm2_createak -u)")
	fl.StringVar(&message, "message", "", "the quoted TPMS_ATTEST `file` (tpm2_quote -m)")
	fl.StringVar(&signature, "signature", "", "the signature `file` (tpm2_quote -s)")
	fl.StringVar(&pcrs, "pcrs", "", "the PCR values `file` (tpm2_quote -o)")
	fl.StringVar(&nonce, "nonce", "", "the qualifying data given to tpm2_quote -q, in `hex`")
	fl.StringVar(&policyFile, "policy", "", "also check the golden values of this policy JSON `file`")
	for _, f := range []string{"ak-pub", "message", "signature", "pcrs", "nonce"} {
		if err := cmd.MarkFlagRequired(f); err != nil {
			panic(err) // the flag is defined just above
		}
	}
	return cmd
}

// rejectReason is a verification error led by its stable code, as policy
// decisions print theirs.
func rejectReason(err error) string {
	msg := oneLine(err.Error())
	if code := attest.FailureCode(err); code != "" && !strings.HasPrefix(msg, code+":") {
		return code + ": " + msg
	}
	return msg
}

// formatQuoteCheck checks verified PCR values against the golden values of
// p (when not nil) and renders the verdict. reason is set when a check
// failed; the checks run in Policy.Evaluate's order and use its codes.
func formatQuoteCheck(values map[int][]byte, p *policy.Policy) (out, reason string) {
	pcrs := slices.Sorted(maps.Keys(values))
	note := map[int]string{}
	var matched []int
	if p != nil {
		for _, i := range p.PCRs {
			if _, ok := values[i]; !ok {
				return "", fmt.Sprintf("%s: PCR %d is not in the quote", policy.CodePCRNotQuoted, i)
			}
		}
		for _, i := range p.PCRs {
			v := hex.EncodeToString(values[i])
			switch {
			case i == p.AgentPCR:
				note[i] = "not checked: agent PCR, needs the event log"
			case len(p.Golden[i]) == 0:
				note[i] = "not checked: no golden values, needs the event log"
			case !slices.Contains(p.Golden[i], v):
				return "", fmt.Sprintf("%s: PCR %d = %s not in the policy's golden values", policy.CodePCRMismatch, i, v)
			default:
				note[i] = "golden"
				matched = append(matched, i)
			}
		}
		for _, i := range pcrs {
			if _, ok := note[i]; !ok {
				note[i] = "not in the policy"
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "quote OK: AK signature, nonce and PCR digest verified, %d sha256 PCRs", len(pcrs))
	if p != nil {
		fmt.Fprintf(&b, "; %d golden values of policy version %d matched", len(matched), p.Version)
	}
	b.WriteByte('\n')
	for _, i := range pcrs {
		fmt.Fprintf(&b, "PCR %2d: %s", i, hex.EncodeToString(values[i]))
		if note[i] != "" {
			b.WriteString("  " + note[i])
		}
		b.WriteByte('\n')
	}
	return b.String(), ""
}
