package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stockade-hpc/stockade/api"
)

func statusCommand(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the controllers, the Raft state and the cluster's load",
		Long: `Shows the controllers (the leader marked *), the Raft applied and commit
indexes, how long ago the serving controller heard from the leader, nodes
by state, jobs by state, the queue depth and the usage ledger: records,
those not sealed into an epoch yet, the last sealed and anchored epochs
and how far anchoring lags (a WARNING line when it lags by more than
` + anchorLagWarn.String() + `). Exits 1 when no leader is elected. --json
prints the API's status document.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := e.client()
			if err != nil {
				return err
			}
			rctx, cancel, err := e.requestContext(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			st, err := client.Status(rctx)
			if err != nil {
				return fmt.Errorf("%s", apiMessage(err))
			}
			if asJSON {
				b, err := json.MarshalIndent(st, "", "  ")
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "%s\n", b)
			} else {
				fmt.Fprint(e.stdout, formatStatus(st))
			}
			if st.Leader == "" {
				return fmt.Errorf("no leader elected: the controllers have no quorum")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

// Display orders for the state counts.
var (
	nodeStateOrder = []string{"idle", "mix", "alloc", "drng", "drain", "down", "unk"}
	jobStateOrder  = []string{"PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED"}
)

// countLine prints "3 idle, 1 down (4 total)" in the given order, other
// keys after it alphabetically.
func countLine(m map[string]int, order []string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		if i := slices.Index(order, k); i >= 0 {
			return i
		}
		return len(order)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
	var parts []string
	total := 0
	for _, k := range keys {
		if m[k] == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
		total += m[k]
	}
	if len(parts) == 0 {
		return "none"
	}
	return fmt.Sprintf("%s (%d total)", strings.Join(parts, ", "), total)
}

// formatStatus renders stockade status.
func formatStatus(st *api.Status) string {
	var b strings.Builder
	leader := st.Leader
	if leader == "" {
		leader = "none (no quorum)"
	}
	fmt.Fprintf(&b, "Leader:       %s\n", leader)
	if st.ServedBy != "" {
		fmt.Fprintf(&b, "Served by:    %s\n", st.ServedBy)
	}
	fmt.Fprintf(&b, "Raft index:   applied %d, commit %d\n", st.RaftIndex, st.CommitIndex)
	fmt.Fprintf(&b, "Last contact: %d ms ago\n", st.LastContactMs)
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTROLLER\tAPI ADDRESS\tRAFT ADDRESS\tVOTER\tLEADER")
	ctls := slices.Clone(st.Controllers)
	slices.SortFunc(ctls, func(a, b api.Controller) int { return strings.Compare(a.ID, b.ID) })
	for _, c := range ctls {
		voter, mark := "no", ""
		if c.Voter {
			voter = "yes"
		}
		if c.Leader {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.APIAddr, c.RaftAddr, voter, mark)
	}
	tw.Flush()
	b.WriteString("\n")
	fmt.Fprintf(&b, "Nodes:        %s\n", countLine(st.NodesByState, nodeStateOrder))
	fmt.Fprintf(&b, "Jobs:         %s\n", countLine(st.JobsByState, jobStateOrder))
	fmt.Fprintf(&b, "Queue depth:  %d\n", st.QueueDepth)
	b.WriteString("\n")
	formatAcctStatus(&b, st)
	return trimLines(b.String())
}

// anchorLagWarn is the anchoring lag status warns about: an epoch is
// anchored seconds after it is sealed, so this long means anchoring is
// stuck (chain unreachable, anchoring account out of funds, ...).
const anchorLagWarn = 30 * time.Minute

// formatAcctStatus renders the usage ledger's part of the status.
func formatAcctStatus(b *strings.Builder, st *api.Status) {
	fmt.Fprintf(b, "Accounting:   %d usage records, %d not sealed yet\n", st.AcctRecords, st.AcctUnsealedRecords)
	if st.AcctLastSealedEpoch == 0 {
		b.WriteString("Epochs:       none sealed yet\n")
		return
	}
	fmt.Fprintf(b, "Epochs:       last sealed %d, last anchored %d\n", st.AcctLastSealedEpoch, st.AcctLastAnchoredEpoch)
	if st.AcctUnanchoredEpochs == 0 {
		b.WriteString("Anchoring:    up to date\n")
		return
	}
	lag := time.Duration(st.AcctAnchorLagSec) * time.Second
	waiting := fmt.Sprintf("%d epochs waiting", st.AcctUnanchoredEpochs)
	if st.AcctUnanchoredEpochs == 1 {
		waiting = "1 epoch waiting"
	}
	since := ""
	if !st.AcctOldestUnanchoredSealedAt.IsZero() {
		since = " since " + st.AcctOldestUnanchoredSealedAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(b, "Anchoring:    %s%s (lag %s)\n", waiting, since, lag)
	if st.AcctAnchorError != "" {
		fmt.Fprintf(b, "Anchor error: %s\n", st.AcctAnchorError)
	}
	if lag >= anchorLagWarn {
		fmt.Fprintf(b, "WARNING:      anchoring lags %s behind sealing (epochs %d..%d waiting): see the leader's log for the chain endpoint's errors and the anchoring account's funds\n",
			lag, st.AcctLastAnchoredEpoch+1, st.AcctLastSealedEpoch)
	}
}

// trimLines drops the trailing blanks tabwriter leaves after empty cells.
func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}
