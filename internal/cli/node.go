package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/stockade-hpc/stockade/api"
)

func nodeCommand(e *env) *cobra.Command {
	cmd := groupCommand("node", "Nodes and their TPM trust: list, approve EKs, revoke, event logs")
	cmd.AddCommand(nodeListCommand(e), nodeApproveCommand(e), nodeRevokeCommand(e), nodeAttestLogCommand(e))
	return cmd
}

func nodeListCommand(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List nodes with their trust",
		Long: `Lists nodes with their state (as sinfo names it), how they proved what they
are (attested: EK certificate from a known TPM vendor; approved: EK on the
admin-approved list; none: no TPM evidence), when their last quote was
verified, their EK fingerprint and the reason they are down or drained,
else their last attestation error. --json prints the node records.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				resp, err := c.Nodes(ctx)
				if err != nil {
					return fmt.Errorf("%s", apiMessage(err))
				}
				nodes := slices.Clone(resp.Nodes)
				slices.SortFunc(nodes, func(a, b api.Node) int { return compareHost(a.Name, b.Name) })
				if asJSON {
					if nodes == nil {
						nodes = []api.Node{}
					}
					return writeJSON(e.stdout, nodes)
				}
				fmt.Fprint(e.stdout, formatNodeTrust(nodes, e.loc))
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the nodes as JSON")
	return cmd
}

// nodeTrust is a node's trust as printed; records written before
// attestation existed have none.
func nodeTrust(n *api.Node) string {
	if n.Trust == "" {
		return string(api.TrustNone)
	}
	return string(n.Trust)
}

// safeText makes text from the cluster fit one table cell: nodes and
// unauthenticated peers choose reasons and event data, and must not be
// able to forge lines or send terminal escapes.
func safeText(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) {
		s = strconv.QuoteToASCII(s)
	}
	if limit > 0 && utf8.RuneCountInString(s) > limit {
		s = string([]rune(s)[:limit]) + "..."
	}
	if s == "" {
		return "-"
	}
	return s
}

func formatNodeTrust(nodes []api.Node, loc *time.Location) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tTRUST\tLAST-QUOTE\tEK-FINGERPRINT\tREASON")
	for i := range nodes {
		n := &nodes[i]
		reason := n.Reason
		if reason == "" {
			reason = n.AttestError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", safeText(n.Name, 0), nodeStateOf(n).compact, safeText(nodeTrust(n), 0),
			slurmDate(n.LastQuote, loc, "-"), safeText(n.EKFingerprint, 0), safeText(reason, 0))
	}
	tw.Flush()
	return trimLines(b.String())
}

// canonicalEK returns an EK fingerprint as "sha256:<lowercase hex>",
// accepting the bare hex too.
func canonicalEK(fp string) (string, error) {
	h := strings.ToLower(fp)
	h = strings.TrimPrefix(h, "sha256:")
	if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
		return "", fmt.Errorf("EK fingerprint %q: want sha256:<64 hex digits>", fp)
	}
	return "sha256:" + h, nil
}

func nodeApproveCommand(e *env) *cobra.Command {
	var comment string
	cmd := &cobra.Command{
		Use:   "approve FINGERPRINT [--comment TEXT]",
		Short: "Approve a TPM endorsement key",
		Long: `Vouches for a TPM whose EK certificate cannot be verified (no certificate,
or a vendor not in the CA bundle): a node holding this EK may then enroll,
with trust "approved". FINGERPRINT is "sha256:<hex>" of the EK's public
key, as refused enrollments record it (ek_fingerprint in "stockade audit
--json").`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fp, err := canonicalEK(args[0])
			if err != nil {
				return err
			}
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				ek, err := c.ApproveEK(ctx, fp, comment)
				if err != nil {
					return fmt.Errorf("%s", apiMessage(err))
				}
				fmt.Fprint(e.stdout, formatApprovedEK(ek, e.loc))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "why the EK is trusted, e.g. the machine's asset tag")
	return cmd
}

func formatApprovedEK(ek *api.ApprovedEK, loc *time.Location) string {
	s := "EK " + ek.Fingerprint + " approved"
	if ek.ApprovedBy != "" {
		s += " by " + safeText(ek.ApprovedBy, 0)
	}
	if !ek.Time.IsZero() {
		s += " at " + slurmDate(ek.Time, loc, "")
	}
	if ek.Comment != "" {
		s += ": " + safeText(ek.Comment, 0)
	}
	return s + "\n"
}

func nodeRevokeCommand(e *env) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "revoke NODE [--reason TEXT]",
		Short: "Evict a node and revoke its certificate",
		Long: `Evicts a node (its jobs are requeued or killed as the policy says) and
revokes its certificate, so it can no longer talk to the controllers until
it enrolls again and passes attestation.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			node := args[0]
			if strings.TrimSpace(node) == "" {
				return errors.New("node name is empty")
			}
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				if err := c.RevokeNode(ctx, node, reason); err != nil {
					return fmt.Errorf("%s", apiMessage(err))
				}
				fmt.Fprintf(e.stdout, "Node %s revoked: evicted, certificate revoked\n", node)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	return cmd
}

func nodeAttestLogCommand(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "attest-log NODE",
		Short: "Show the last verified event log of a node",
		Long: `Shows the event log the verifier last judged for NODE, with its verdict:
each measurement's PCR, TCG event type, digest and event data (text, or
"hex:" and the bytes; shortened and escaped, --json prints it whole).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				l, err := c.AttestLog(ctx, args[0])
				if err != nil {
					return fmt.Errorf("%s", apiMessage(err))
				}
				if asJSON {
					if l.Measurements == nil {
						l.Measurements = []api.AttestMeasurement{}
					}
					return writeJSON(e.stdout, l)
				}
				fmt.Fprint(e.stdout, formatAttestLog(l, e.loc))
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the log as JSON")
	return cmd
}

// tcgEventTypes names the event types of the TCG PC Client Platform
// Firmware Profile.
var tcgEventTypes = map[uint32]string{
	0x00: "EV_PREBOOT_CERT", 0x01: "EV_POST_CODE", 0x02: "EV_UNUSED", 0x03: "EV_NO_ACTION",
	0x04: "EV_SEPARATOR", 0x05: "EV_ACTION", 0x06: "EV_EVENT_TAG", 0x07: "EV_S_CRTM_CONTENTS",
	0x08: "EV_S_CRTM_VERSION", 0x09: "EV_CPU_MICROCODE", 0x0A: "EV_PLATFORM_CONFIG_FLAGS",
	0x0B: "EV_TABLE_OF_DEVICES", 0x0C: "EV_COMPACT_HASH", 0x0D: "EV_IPL", 0x0E: "EV_IPL_PARTITION_DATA",
	0x0F: "EV_NONHOST_CODE", 0x10: "EV_NONHOST_CONFIG", 0x11: "EV_NONHOST_INFO", 0x12: "EV_OMIT_BOOT_DEVICE_EVENTS",
	0x80000001: "EV_EFI_VARIABLE_DRIVER_CONFIG", 0x80000002: "EV_EFI_VARIABLE_BOOT",
	0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION", 0x80000004: "EV_EFI_BOOT_SERVICES_DRIVER",
	0x80000005: "EV_EFI_RUNTIME_SERVICES_DRIVER", 0x80000006: "EV_EFI_GPT_EVENT", 0x80000007: "EV_EFI_ACTION",
	0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB", 0x80000009: "EV_EFI_HANDOFF_TABLES",
	0x8000000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2", 0x8000000B: "EV_EFI_HANDOFF_TABLES2",
	0x8000000C: "EV_EFI_VARIABLE_BOOT2", 0x80000010: "EV_EFI_HCRTM_EVENT", 0x800000E0: "EV_EFI_VARIABLE_AUTHORITY",
	0x800000E1: "EV_EFI_SPDM_FIRMWARE_BLOB", 0x800000E2: "EV_EFI_SPDM_FIRMWARE_CONFIG",
}

func eventTypeName(t uint32) string {
	if s, ok := tcgEventTypes[t]; ok {
		return s
	}
	return fmt.Sprintf("0x%08x", t)
}

// attestDataWidth keeps event data, which may be a whole EFI variable, to
// one readable column.
const attestDataWidth = 60

func formatAttestLog(l *api.AttestLog, loc *time.Location) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Node %s: last quote %s\n", safeText(l.Node, 0), slurmDate(l.LastQuote, loc, "never"))
	if l.QuotedAt.IsZero() && len(l.Measurements) == 0 {
		b.WriteString("No verified event log\n")
		return b.String()
	}
	verdict := "passed"
	if l.Code != "" {
		verdict = "failed: " + safeText(l.Code, 0)
	}
	fmt.Fprintf(&b, "Event log verified %s, %s, %d measurements\n", slurmDate(l.QuotedAt, loc, "Unknown"), verdict, len(l.Measurements))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PCR\tTYPE\tDIGEST\tDATA")
	for _, m := range l.Measurements {
		data := m.Data
		if data == "" && m.DataHex != "" {
			data = "hex:" + m.DataHex
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", m.PCR, eventTypeName(m.Type), safeText(m.Digest, 0), safeText(data, attestDataWidth))
	}
	tw.Flush()
	return trimLines(b.String())
}
