package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/sbatch"
)

// "stockade acct": the usage ledger. Amounts travel as integer micro-units
// and are printed exactly, never through floats.

// exitNotAnchored is the exit status of acct verify and acct proof when
// nothing was found wrong but something is not anchored yet: try later.
const exitNotAnchored = 2

func acctCommand(e *env) *cobra.Command {
	cmd := groupCommand("acct", "Usage accounting: statements, prices, settlement, proofs and their verification")
	cmd.Long = `The usage ledger: one immutable, priced record per finished job attempt,
sealed into epochs whose commitments are anchored on a chain.

  statement  charges (or a beneficiary's earnings) per day, week or month
  prices     show the price table, or change it (admins)
  settle     move records to a settlement status (admins)
  proof      write a record's self-contained inclusion proof (JSON)
  verify     check records, epochs or a proof file against the chain`
	cmd.AddCommand(acctStatementCommand(e), acctPricesCommand(e), acctSettleCommand(e), acctProofCommand(e), acctVerifyCommand(e))
	return cmd
}

// ---- amounts ----

// formatMicro prints micro-units as a decimal: exact, with at least two
// decimals ("1.50", "0.000125").
func formatMicro(v int64) string {
	sign := ""
	u := uint64(v)
	if v < 0 {
		sign, u = "-", -u // two's complement: right for MinInt64 too
	}
	frac := strings.TrimRight(fmt.Sprintf("%06d", u%1e6), "0")
	for len(frac) < 2 {
		frac += "0"
	}
	return fmt.Sprintf("%s%d.%s", sign, u/1e6, frac)
}

// parseDecimal reads a non-negative decimal with at most places decimals
// as an integer scaled by 10^places.
func parseDecimal(s string, places int) (int64, error) {
	whole, frac, hasFrac := strings.Cut(s, ".")
	digits := func(x string) bool {
		return x != "" && !strings.ContainsFunc(x, func(r rune) bool { return r < '0' || r > '9' })
	}
	switch {
	case s == "" || strings.HasPrefix(s, "-"):
		return 0, errors.New("not a non-negative number")
	case !digits(whole) || (hasFrac && !digits(frac)):
		return 0, errors.New("not a number")
	case len(frac) > places:
		return 0, fmt.Errorf("more than %d decimals", places)
	}
	frac += strings.Repeat("0", places-len(frac))
	w, err := strconv.ParseInt(whole, 10, 64)
	f, _ := strconv.ParseInt(frac, 10, 64)
	scale := int64(math.Pow10(places))
	if err != nil || w > (math.MaxInt64-f)/scale {
		return 0, errors.New("too large")
	}
	return w*scale + f, nil
}

// formatBP prints basis points as a percentage ("70%", "2.5%").
func formatBP(bp uint32) string {
	s := fmt.Sprintf("%d.%02d", bp/100, bp%100)
	return strings.TrimSuffix(strings.TrimRight(s, "0"), ".") + "%"
}

// hours prints v as hours, perHour units of v making an hour; for display
// only (amounts stay exact).
func hours(v uint64, perHour float64) string {
	return strconv.FormatFloat(float64(v)/perHour, 'f', 3, 64)
}

// textTable renders aligned columns two spaces apart; right marks the
// numeric columns, aligned on the right.
func textTable(header []string, right []bool, rows [][]string) string {
	width := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, v := range r {
			width[i] = max(width[i], utf8.RuneCountInString(v))
		}
	}
	var b strings.Builder
	for _, r := range append([][]string{header}, rows...) {
		var line strings.Builder
		for i, v := range r {
			if i > 0 {
				line.WriteString("  ")
			}
			line.WriteString(padStr(v, width[i], right[i], false))
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteByte('\n')
	}
	return b.String()
}

// isHTTP reports whether err is an API error with one of the statuses.
func isHTTP(err error, statuses ...int) bool {
	var he *api.HTTPError
	return errors.As(err, &he) && slices.Contains(statuses, he.Status)
}

// ---- statement ----

func acctStatementCommand(e *env) *cobra.Command {
	var q accounting.StatementQuery
	var from, to, period string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "statement [--account A | --user U | --beneficiary B] [--from DATE --to DATE] [--period day|week|month|all] [--json]",
		Short: "Charges per period (or what a beneficiary earned)",
		Long: `Totals usage records per period (UTC; weeks start on Monday) and account:
records, CPU-hours, memory GiB-hours (peak memory × wall time), GPU-hours
and the charge in its currency, then a total per currency. A user sees
their own records; admins see everyone's and may ask for a beneficiary
(a node operator, the cluster operator, an image publisher, a charity),
whose lines total what the records paid it (EARNED).

A record belongs to the period of its end time. --from is inclusive, --to
exclusive: --from 2026-11-01 --to 2026-12-01 is November. DATE is
YYYY-MM-DD[THH:MM[:SS]] or a Slurm time (now-7days, today, MM/DD[/YY], ...),
taken as UTC like the periods.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := e.now()
			var err error
			if from != "" {
				if q.From, err = sbatch.ParseDate(from, now, time.UTC, sbatch.DatePast); err != nil {
					return fmt.Errorf("--from: %v", err)
				}
			}
			if to != "" {
				if q.To, err = sbatch.ParseDate(to, now, time.UTC, sbatch.DateAsIs); err != nil {
					return fmt.Errorf("--to: %v", err)
				}
			}
			if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
				return fmt.Errorf("--to: %s is not after --from %s", q.To.Format(time.RFC3339), q.From.Format(time.RFC3339))
			}
			q.Period = accounting.Period(strings.ToLower(period))
			switch q.Period {
			case accounting.PeriodDay, accounting.PeriodWeek, accounting.PeriodMonth, accounting.PeriodAll:
			default:
				return fmt.Errorf("--period: %q is not day, week, month or all", period)
			}
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				resp, err := accounting.GetStatement(ctx, c, q)
				if err != nil {
					return fmt.Errorf("%s", apiMessage(err))
				}
				totals := statementTotals(resp.Lines, q.Beneficiary)
				if asJSON {
					return writeJSON(e.stdout, struct {
						Lines  []accounting.StatementLine `json:"lines"`
						Totals []accounting.StatementLine `json:"totals"`
					}{Lines: orEmpty(resp.Lines), Totals: orEmpty(totals)})
				}
				fmt.Fprint(e.stdout, formatStatement(resp.Lines, totals, q.Period, q.Beneficiary))
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&q.Account, "account", "", "only this `account`'s records")
	fl.StringVar(&q.User, "user", "", "only this `user`'s records (admins)")
	fl.StringVar(&q.Beneficiary, "beneficiary", "", "what these records paid `beneficiary` (admins)")
	fl.StringVar(&from, "from", "", "records that ended at or after `DATE`")
	fl.StringVar(&to, "to", "", "records that ended before `DATE`")
	fl.StringVar(&period, "period", "month", "line per `day`, week, month, or all in one")
	fl.BoolVar(&asJSON, "json", false, "print the lines and totals as JSON")
	return cmd
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// statementTotals sums lines per currency, in currency order.
func statementTotals(lines []accounting.StatementLine, beneficiary string) []accounting.StatementLine {
	by := map[string]*accounting.StatementLine{}
	for _, l := range lines {
		t := by[l.Currency]
		if t == nil {
			t = &accounting.StatementLine{Currency: l.Currency, Beneficiary: beneficiary}
			by[l.Currency] = t
		}
		t.Records += l.Records
		t.CPUMillis += l.CPUMillis
		t.MemoryMBSeconds += l.MemoryMBSeconds
		t.GPUSeconds += l.GPUSeconds
		t.Charge += l.Charge
		t.Earned += l.Earned
	}
	var out []accounting.StatementLine
	for _, k := range slices.Sorted(maps.Keys(by)) {
		out = append(out, *by[k])
	}
	return out
}

// periodLabel names a line's period: 2026-11-21, 2026-W47 (ISO week),
// 2026-11, or "all".
func periodLabel(start time.Time, p accounting.Period) string {
	if start.IsZero() {
		return "all"
	}
	switch p {
	case accounting.PeriodDay:
		return start.Format(time.DateOnly)
	case accounting.PeriodWeek:
		y, w := start.ISOWeek()
		return fmt.Sprintf("%d-W%02d", y, w)
	case accounting.PeriodMonth:
		return start.Format("2006-01")
	}
	return "all"
}

func formatStatement(lines, totals []accounting.StatementLine, p accounting.Period, beneficiary string) string {
	who, amount := "ACCOUNT", "CHARGE"
	if beneficiary != "" {
		who, amount = "BENEFICIARY", "EARNED"
	}
	header := []string{"PERIOD", who, "RECORDS", "CPU-HOURS", "MEM-GB-HOURS", "GPU-HOURS", amount, "CURRENCY"}
	right := []bool{false, false, true, true, true, true, true, false}
	row := func(label, name string, l accounting.StatementLine) []string {
		v := l.Charge
		if beneficiary != "" {
			v = l.Earned
		}
		return []string{label, name, strconv.FormatUint(l.Records, 10), hours(l.CPUMillis, 3.6e6),
			hours(l.MemoryMBSeconds, 1024*3600), hours(l.GPUSeconds, 3600), formatMicro(v), safeText(l.Currency, 0)}
	}
	var rows [][]string
	for _, l := range lines {
		name := l.Account
		if beneficiary != "" {
			name = beneficiary
		}
		rows = append(rows, row(periodLabel(l.Start, p), safeText(name, 0), l))
	}
	for _, t := range totals {
		rows = append(rows, row("TOTAL", "", t))
	}
	return textTable(header, right, rows)
}

// ---- prices ----

func acctPricesCommand(e *env) *cobra.Command {
	var set, history, asJSON bool
	cmd := &cobra.Command{
		Use:   "prices [--history] [--json] | prices --set KEY=VALUE...",
		Short: "Show the prices and payout split, or change them (admins)",
		Long: `Shows the prices in force (per CPU-hour of CPU time, GiB-hour of peak
memory and allocated GPU-hour), how each charge is split between node
operators, the cluster operator, image publishers and a charity, and who
they are. --history lists every price version; records keep the version
they were priced with.

--set changes them (admins); the controllers assign the next version,
which prices the jobs that end from then on. Keys (amounts in units of the
currency, up to 6 decimals; the split in percent, summing to 100):

  currency=credit  cpu-hour=1.5  mem-gb-hour=0.1  gpu-hour=20
  split=node:70,cluster:25,image:5,charity:0   (a share left out is 0)
  cluster-operator=NAME  charity=NAME   (charity= : none)
  node-operator=NODE=NAME               (NODE= : back to node:NODE)
  image-publisher=PREFIX=NAME           (PREFIX= : back to the image's owner)`,
		Args: func(cmd *cobra.Command, args []string) error {
			if !set && len(args) > 0 {
				return fmt.Errorf("unexpected argument %q (to change prices: --set KEY=VALUE...)", args[0])
			}
			if set && len(args) == 0 {
				return errors.New("--set: give at least one KEY=VALUE")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				cur, err := accounting.Prices(ctx, c)
				if err != nil {
					return fmt.Errorf("%s", apiMessage(err))
				}
				if set {
					ps := cur.Current
					req, err := priceEdits(args, &ps)
					if err != nil {
						return err
					}
					resp, err := accounting.SetPrices(ctx, c, req)
					if err != nil {
						return fmt.Errorf("%s", apiMessage(err))
					}
					if resp.Current.Prices.Version == cur.Current.Prices.Version {
						fmt.Fprintf(e.stderr, "Prices unchanged: version %d already says so.\n", cur.Current.Prices.Version)
					} else {
						fmt.Fprintf(e.stderr, "Price version %d set.\n", resp.Current.Prices.Version)
					}
					cur = resp
				}
				switch {
				case asJSON:
					return writeJSON(e.stdout, cur)
				case history:
					fmt.Fprint(e.stdout, formatPriceHistory(cur.History, e.loc))
				default:
					fmt.Fprint(e.stdout, formatPriceSet(cur.Current, e.loc))
				}
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&set, "set", false, "change the prices: KEY=VALUE arguments follow (admins)")
	fl.BoolVar(&history, "history", false, "list every price version")
	fl.BoolVar(&asJSON, "json", false, "print the current prices and their history as JSON")
	return cmd
}

// priceEdits applies KEY=VALUE settings to ps and returns the request
// carrying the parts that changed. Errors name the key.
func priceEdits(args []string, ps *accounting.PriceSet) (accounting.SetPricesRequest, error) {
	p, b := ps.Prices, ps.Beneficiaries
	b.NodeOperators, b.ImagePublishers = maps.Clone(b.NodeOperators), maps.Clone(b.ImagePublishers)
	var pricesSet, benSet bool
	seen := map[string]bool{}
	for _, arg := range args {
		k, v, ok := strings.Cut(arg, "=")
		key := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(k)), "_", "-")
		if !ok || key == "" {
			return accounting.SetPricesRequest{}, fmt.Errorf("--set: %q is not KEY=VALUE", arg)
		}
		if seen[key] && key != "node-operator" && key != "image-publisher" {
			return accounting.SetPricesRequest{}, fmt.Errorf("--set %s: given twice", key)
		}
		seen[key] = true
		bad := func(format string, a ...any) error {
			return fmt.Errorf("--set %s: %s", key, fmt.Sprintf(format, a...))
		}
		switch key {
		case "currency":
			if v == "" || strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' }) {
				return accounting.SetPricesRequest{}, bad("%q is not a currency name (one word)", v)
			}
			p.Currency, pricesSet = v, true
		case "cpu-hour", "mem-gb-hour", "gpu-hour":
			n, err := parseDecimal(v, 6)
			if err != nil {
				return accounting.SetPricesRequest{}, bad("%q: %v (an amount in units of the currency)", v, err)
			}
			*map[string]*int64{"cpu-hour": &p.CPUHour, "mem-gb-hour": &p.MemGBHour, "gpu-hour": &p.GPUHour}[key] = n
			pricesSet = true
		case "split":
			s, err := parseSplit(v)
			if err != nil {
				return accounting.SetPricesRequest{}, bad("%v", err)
			}
			p.Split, pricesSet = s, true
		case "cluster-operator":
			if v == "" {
				return accounting.SetPricesRequest{}, bad("empty: someone must receive the cluster operator's share")
			}
			b.ClusterOperator, benSet = v, true
		case "charity":
			b.Charity, benSet = v, true
		case "node-operator", "image-publisher":
			what, name, ok := strings.Cut(v, "=")
			if !ok || what == "" {
				form := "NODE=NAME"
				if key == "image-publisher" {
					form = "PREFIX=NAME"
				}
				return accounting.SetPricesRequest{}, bad("%q is not %s", v, form)
			}
			m := &b.NodeOperators
			if key == "image-publisher" {
				m = &b.ImagePublishers
			}
			if name == "" {
				delete(*m, what)
			} else {
				if *m == nil {
					*m = map[string]string{}
				}
				(*m)[what] = name
			}
			benSet = true
		default:
			return accounting.SetPricesRequest{}, fmt.Errorf("--set: unknown key %q (want currency, cpu-hour, mem-gb-hour, gpu-hour, split, cluster-operator, charity, node-operator or image-publisher)", k)
		}
	}
	var req accounting.SetPricesRequest
	if pricesSet {
		if err := p.Validate(); err != nil {
			return req, fmt.Errorf("--set: %v", err)
		}
		req.Prices = &p
	}
	if benSet {
		req.Beneficiaries = &b
	}
	return req, nil
}

// parseSplit reads "node:70,cluster:25,image:5,charity:0" (percent, up to
// two decimals); shares left out are 0.
func parseSplit(s string) (accounting.Split, error) {
	var sp accounting.Split
	seen := map[*uint32]bool{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return sp, fmt.Errorf("%q is not ROLE:PERCENT", part)
		}
		var dst *uint32
		switch strings.ReplaceAll(strings.ToLower(k), "_", "-") {
		case "node", "node-operator", "node-operators":
			dst = &sp.NodeOperator
		case "cluster", "cluster-operator":
			dst = &sp.ClusterOperator
		case "image", "image-publisher", "image-publishers":
			dst = &sp.ImagePublisher
		case "charity":
			dst = &sp.Charity
		default:
			return sp, fmt.Errorf("unknown role %q (want node, cluster, image or charity)", k)
		}
		if seen[dst] {
			return sp, fmt.Errorf("%s given twice", k)
		}
		seen[dst] = true
		bp, err := parseDecimal(strings.TrimSuffix(v, "%"), 2)
		if err != nil || bp > 10000 {
			return sp, fmt.Errorf("%s: %q is not a percentage from 0 to 100", k, v)
		}
		*dst = uint32(bp)
	}
	if sum := sp.NodeOperator + sp.ClusterOperator + sp.ImagePublisher + sp.Charity; sum != 10000 {
		return sp, fmt.Errorf("shares sum to %s, want 100%%", formatBP(sum))
	}
	return sp, nil
}

func formatPriceSet(ps accounting.PriceSet, loc *time.Location) string {
	p, b := ps.Prices, ps.Beneficiaries
	var s strings.Builder
	fmt.Fprintf(&s, "Price version:     %d (set %s by %s)\n", p.Version, slurmDate(ps.SetAt, loc, "-"), safeText(ps.SetBy, 0))
	fmt.Fprintf(&s, "Currency:          %s\n", safeText(p.Currency, 0))
	fmt.Fprintf(&s, "CPU-hour:          %s\n", formatMicro(p.CPUHour))
	fmt.Fprintf(&s, "Memory GiB-hour:   %s\n", formatMicro(p.MemGBHour))
	fmt.Fprintf(&s, "GPU-hour:          %s\n", formatMicro(p.GPUHour))
	fmt.Fprintf(&s, "Split:             node operators %s, cluster operator %s, image publishers %s, charity %s\n",
		formatBP(p.Split.NodeOperator), formatBP(p.Split.ClusterOperator), formatBP(p.Split.ImagePublisher), formatBP(p.Split.Charity))
	fmt.Fprintf(&s, "Cluster operator:  %s (also paid every share nobody fills)\n", safeText(b.ClusterOperator, 0))
	charity := safeText(b.Charity, 0)
	if b.Charity == "" {
		charity = "none (its share goes to the cluster operator)"
	}
	fmt.Fprintf(&s, "Charity:           %s\n", charity)
	mapping := func(m map[string]string, others string) string {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			parts = append(parts, safeText(k, 0)+"="+safeText(m[k], 0))
		}
		return strings.Join(append(parts, others), "; ")
	}
	fmt.Fprintf(&s, "Node operators:    %s\n", mapping(b.NodeOperators, "others node:<name>"))
	fmt.Fprintf(&s, "Image publishers:  %s\n", mapping(b.ImagePublishers, "others the image's registry/owner"))
	return s.String()
}

func formatPriceHistory(hist []accounting.PriceSet, loc *time.Location) string {
	var rows [][]string
	for _, ps := range hist {
		p := ps.Prices
		rows = append(rows, []string{strconv.FormatUint(p.Version, 10), slurmDate(ps.SetAt, loc, "-"), safeText(ps.SetBy, 0),
			safeText(p.Currency, 0), formatMicro(p.CPUHour), formatMicro(p.MemGBHour), formatMicro(p.GPUHour),
			strings.Join([]string{formatBP(p.Split.NodeOperator), formatBP(p.Split.ClusterOperator), formatBP(p.Split.ImagePublisher), formatBP(p.Split.Charity)}, "/")})
	}
	return textTable([]string{"VERSION", "SET", "BY", "CURRENCY", "CPU-HOUR", "MEM-GB-HOUR", "GPU-HOUR", "SPLIT(NODE/CLUSTER/IMAGE/CHARITY)"},
		[]bool{true, false, false, false, true, true, true, false}, rows)
}

// ---- settlement ----

// maxSettleSeqs bounds one settle command; the API takes 10000 per request.
const (
	maxSettleSeqs    = 1_000_000
	settleSeqsPerReq = 10000
)

func acctSettleCommand(e *env) *cobra.Command {
	var seqs, status string
	cmd := &cobra.Command{
		Use:   "settle --seq RANGES --status STATUS",
		Short: "Move usage records to a settlement status (admins)",
		Long: `Sets the settlement status of records by seq (as sacct's RecordSeq field
and acct verify show them): unsettled, invoiced, settled, disputed or
waived. The records themselves never change. RANGES is a comma list of
seqs and ranges: 1-100,105. Records already in the status are left as
they are and counted apart.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := accounting.ValidSettlement(status); err != nil {
				return fmt.Errorf("--%v", err)
			}
			list, err := parseSeqRanges(seqs)
			if err != nil {
				return err
			}
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				var updated uint64
				for chunk := range slices.Chunk(list, settleSeqsPerReq) {
					resp, err := accounting.SetSettlement(ctx, c, accounting.SettlementRequest{Seqs: chunk, Status: status})
					if err != nil {
						if updated > 0 {
							return fmt.Errorf("%s (%d records were marked %s before this)", apiMessage(err), updated, status)
						}
						return fmt.Errorf("%s", apiMessage(err))
					}
					updated += resp.Updated
				}
				fmt.Fprintf(e.stdout, "%d records marked %s (%d already were)\n", updated, status, uint64(len(list))-updated)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&seqs, "seq", "", "record `RANGES`: 1-100,105")
	cmd.Flags().StringVar(&status, "status", "", "`STATUS`: unsettled, invoiced, settled, disputed or waived")
	for _, f := range []string{"seq", "status"} {
		if err := cmd.MarkFlagRequired(f); err != nil {
			panic(err) // defined just above
		}
	}
	return cmd
}

// parseSeqRanges reads "1-100,105" into distinct seqs in ascending order.
func parseSeqRanges(s string) ([]uint64, error) {
	set := map[uint64]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.ParseUint(lo, 10, 64)
		b, err2 := a, error(nil)
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 64)
		}
		if err1 != nil || err2 != nil || a == 0 || b < a {
			return nil, fmt.Errorf("--seq: %q is not a seq or a range N-M (seqs start at 1)", part)
		}
		if b-a >= maxSettleSeqs || len(set)+int(b-a+1) > maxSettleSeqs {
			return nil, fmt.Errorf("--seq: more than %d records in one command", maxSettleSeqs)
		}
		for n := a; ; n++ {
			set[n] = true
			if n == b {
				break
			}
		}
	}
	return slices.Sorted(maps.Keys(set)), nil
}

// ---- proof ----

func acctProofCommand(e *env) *cobra.Command {
	var job string
	var seq uint64
	cmd := &cobra.Command{
		Use:   "proof --job ID | --seq N > proof.json",
		Short: "Write a record's self-contained inclusion proof",
		Long: `Writes, as JSON, the proof that a job's usage record (its newest, for a
requeued job; or the record with seq N) is in an anchored epoch: the
record, its hash, the Merkle audit path, the epoch's root and where the
epoch's commitment was anchored (chain id, contract, block, transaction).

Anyone can check the file later without the cluster:

  stockade acct verify --proof proof.json --rpc URL

Exits 2 while the record's epoch is not sealed or not anchored yet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (job == "") == (seq == 0) {
				return errors.New("--job: give --job ID or --seq N")
			}
			if job != "" {
				if _, err := parseJobSel(job); err != nil || strings.Contains(job, "[") {
					return fmt.Errorf("--job: %q is not a job id (123 or 123_4)", job)
				}
			}
			return withClient(cmd.Context(), e, func(ctx context.Context, c *api.Client) error {
				var p *accounting.Proof
				var err error
				if seq != 0 {
					p, err = accounting.GetProofBySeq(ctx, c, seq)
				} else {
					p, err = getProofByJob(ctx, c, job)
				}
				if isHTTP(err, http.StatusConflict) {
					fmt.Fprintf(e.stderr, "stockade: error: %s\n", apiMessage(err))
					return exitCode(exitNotAnchored)
				}
				if err != nil {
					return fmt.Errorf("%s", apiMessage(err))
				}
				if p.Anchor.Contract == "" || p.Anchor.ChainID == 0 {
					// Make the file self-contained: where to look it up.
					if er, err := accounting.Epochs(ctx, c, 0, 1); err == nil {
						p.Anchor.Contract = cmp.Or(p.Anchor.Contract, er.Chain.Contract)
						p.Anchor.ChainID = cmp.Or(p.Anchor.ChainID, er.Chain.ChainID)
					}
				}
				return writeJSON(e.stdout, p)
			})
		},
	}
	cmd.Flags().StringVar(&job, "job", "", "the job `ID` (123, or 123_4 for an array task)")
	cmd.Flags().Uint64Var(&seq, "seq", 0, "the record with seq `N`")
	return cmd
}

// getProofByJob asks for a job's proof; "123_4" goes as it is, since the
// controllers resolve array tasks.
func getProofByJob(ctx context.Context, c *api.Client, job string) (*accounting.Proof, error) {
	if id, err := strconv.ParseUint(job, 10, 64); err == nil {
		return accounting.GetProof(ctx, c, id)
	}
	var p accounting.Proof
	if err := c.Do(ctx, http.MethodGet, "/v1/acct/proof?"+url.Values{"job": {job}}.Encode(), nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}
