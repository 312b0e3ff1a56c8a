package cli

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stockade-hpc/stockade/api"
)

func auditCommand(e *env) *cobra.Command {
	var node string
	var since uint64
	var limit int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "audit [--node NAME] [--since SEQ] [--limit N] [--json]",
		Short: "Show the attestation audit log (admins)",
		Long: `Shows the replicated attestation log: nodes admitted, refused, evicted,
revoked and renewed, policy changes, approved EKs and values recorded on
first use, oldest first. SEQ numbers the records: --since SEQ continues
after a record already seen; --limit N keeps the newest N. --json prints
the records whole (with EK fingerprints and certificate serials).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit %d: want a positive number", limit)
			}
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				recs, err := c.Audit(ctx, node, since, limit)
				if err != nil {
					return fmt.Errorf("%s", apiMessage(err))
				}
				slices.SortStableFunc(recs, func(a, b api.AuditRecord) int { return cmp.Compare(a.Seq, b.Seq) })
				if asJSON {
					if recs == nil {
						recs = []api.AuditRecord{}
					}
					return writeJSON(e.stdout, recs)
				}
				fmt.Fprint(e.stdout, formatAudit(recs, e.loc))
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&node, "node", "", "only records about this `node`")
	fl.Uint64Var(&since, "since", 0, "only records after sequence number `SEQ`")
	fl.IntVar(&limit, "limit", 0, "only the newest `N` records (0: all)")
	fl.BoolVar(&asJSON, "json", false, "print the records as JSON")
	return cmd
}

// auditReasonWidth keeps a refusal's reason, which an unauthenticated peer
// may have made long, from stretching every row.
const auditReasonWidth = 80

func formatAudit(recs []api.AuditRecord, loc *time.Location) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tNODE\tCODE\tREASON\tACTOR")
	for _, r := range recs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", strconv.FormatUint(r.Seq, 10), slurmDate(r.Time, loc, "-"),
			safeText(r.Kind, 0), safeText(r.Node, 0), safeText(r.Code, 0), safeText(r.Reason, auditReasonWidth), safeText(r.Actor, 0))
	}
	tw.Flush()
	return trimLines(b.String())
}
