package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/accounting/chain"
	"github.com/stockade-hpc/stockade/api"
)

// commitmentReader reads the commitment anchored for an epoch and where it
// was anchored; chain.ErrNotAnchored when there is none. The chain client
// implements it; tests use a map, so the checks run without a chain.
type commitmentReader interface {
	CommitmentOf(ctx context.Context, epoch uint64) ([32]byte, accounting.Anchor, error)
}

// anchorReader adapts the chain client.
type anchorReader struct{ a *chain.Anchorer }

func (r anchorReader) CommitmentOf(ctx context.Context, epoch uint64) ([32]byte, accounting.Anchor, error) {
	c, rc, err := r.a.RootOf(ctx, epoch)
	if err != nil {
		return [32]byte{}, accounting.Anchor{}, err
	}
	return c, accounting.Anchor{ChainID: r.a.ChainID(), Contract: r.a.Contract().Hex(), TxHash: rc.TxHash.Hex(), BlockNumber: rc.BlockNumber}, nil
}

// dialCommitments connects to a chain without a key (read-only); tests
// replace it.
var dialCommitments = func(ctx context.Context, rpcURL string, chainID uint64, contract string) (commitmentReader, func(), error) {
	a, err := chain.Dial(ctx, chain.Config{RPCURL: rpcURL, ChainID: chainID, Contract: contract})
	if err != nil {
		return nil, nil, err
	}
	return anchorReader{a}, a.Close, nil
}

var (
	errNoChain    = errors.New("no chain endpoint known: the controllers report none; give --rpc URL")
	errNoContract = errors.New("no anchor contract known: give --contract ADDRESS")
	addressRE     = regexp.MustCompile(`^0[xX][0-9a-fA-F]{40}$`)
)

// verifier checks records, epochs and proofs against the chain and prints
// one line per thing checked and per problem.
type verifier struct {
	out io.Writer
	// rpc, chainID and pinned (--contract) say where to read; fallback is
	// the cluster's contract, for epochs whose anchor names none.
	rpc      string
	chainID  uint64
	pinned   string
	fallback string
	// earlier are proofs exported before, which locate changed records.
	earlier []accounting.Proof
	// bound limits each call to the controllers or the chain.
	bound func(context.Context) (context.Context, context.CancelFunc)

	readers map[string]commitmentReader
	closers []func()

	ok, unanchored, failed int
}

func (v *verifier) close() {
	for _, c := range v.closers {
		c()
	}
}

func (v *verifier) call(ctx context.Context, f func(context.Context) error) error {
	if v.bound == nil {
		return f(ctx)
	}
	ctx, cancel := v.bound(ctx)
	defer cancel()
	return f(ctx)
}

// result is the exit status: 1 when anything failed, 2 when nothing did
// but something is not anchored yet.
func (v *verifier) result() error {
	switch {
	case v.failed > 0:
		return errReported
	case v.unanchored > 0:
		return exitCode(exitNotAnchored)
	}
	return nil
}

// reader is the commitment reader for an epoch whose anchor names
// contract (""), and the contract it reads.
func (v *verifier) reader(ctx context.Context, named string) (commitmentReader, string, error) {
	contract := cmp.Or(v.pinned, named, v.fallback)
	if v.rpc == "" {
		return nil, contract, errNoChain
	}
	if contract == "" {
		return nil, "", errNoContract
	}
	key := strings.ToLower(contract)
	if r, ok := v.readers[key]; ok {
		return r, contract, nil
	}
	var r commitmentReader
	err := v.call(ctx, func(ctx context.Context) error {
		var closeFn func()
		var err error
		r, closeFn, err = dialCommitments(ctx, v.rpc, v.chainID, contract)
		if closeFn != nil {
			v.closers = append(v.closers, closeFn)
		}
		return err
	})
	if err != nil {
		return nil, contract, fmt.Errorf("chain at %s: %v", v.rpc, err)
	}
	if v.readers == nil {
		v.readers = map[string]commitmentReader{}
	}
	v.readers[key] = r
	return r, contract, nil
}

// commitmentOf reads the anchored commitment; anchored is false when the
// contract holds none for the epoch.
func (v *verifier) commitmentOf(ctx context.Context, r commitmentReader, epoch uint64) (c [32]byte, a accounting.Anchor, anchored bool, err error) {
	err = v.call(ctx, func(ctx context.Context) error {
		c, a, err = r.CommitmentOf(ctx, epoch)
		return err
	})
	if errors.Is(err, chain.ErrNotAnchored) {
		return c, a, false, nil
	}
	if err != nil {
		return c, a, false, fmt.Errorf("chain at %s: %v", v.rpc, err)
	}
	return c, a, true, nil
}

// ---- epochs ----

// checkEpoch verifies an epoch's records against the commitment on chain
// (or, not anchored yet, against its own header) and prints the verdict;
// pre are problems the caller already found. Errors are failures to check
// at all.
func (v *verifier) checkEpoch(ctx context.Context, d *accounting.EpochDetail, pre []string) error {
	n := d.Epoch.Number
	probs := slices.Clone(pre)
	if c := d.Epoch.Commitment(); [32]byte(d.Commitment) != c {
		probs = append(probs, fmt.Sprintf("epoch %d: commitment: the stored commitment %s is not its header's %s", n, d.Commitment, accounting.HashHex(c)))
	}
	for _, r := range d.Records {
		if r.Epoch != n {
			probs = append(probs, fmt.Sprintf("epoch %d: seq %d (job %s): the record says it is in epoch %d", n, r.Record.Seq, recordJobID(&r.Record), r.Epoch))
		}
	}
	var stored accounting.Anchor
	if d.Anchor != nil {
		stored = *d.Anchor
	}
	r, contract, err := v.reader(ctx, stored.Contract)
	var anchored [32]byte
	var anchor accounting.Anchor
	isAnchored := false
	switch {
	case errors.Is(err, errNoChain) || errors.Is(err, errNoContract):
		if d.Anchor != nil {
			return fmt.Errorf("epoch %d is anchored (tx %s) but cannot be read: %v", n, stored.TxHash, err)
		}
	case err != nil:
		return err
	default:
		if anchored, anchor, isAnchored, err = v.commitmentOf(ctx, r, n); err != nil {
			return err
		}
		switch {
		case !isAnchored && d.Anchor != nil:
			probs = append(probs, fmt.Sprintf("epoch %d: anchor: the controllers record it anchored in block %d tx %s, but contract %s holds no anchor for it",
				n, stored.BlockNumber, stored.TxHash, contract))
		case isAnchored && stored.TxHash != "" && !strings.EqualFold(stored.TxHash, anchor.TxHash):
			probs = append(probs, fmt.Sprintf("epoch %d: anchor: the controllers record tx %s, but the chain's anchor is in tx %s", n, stored.TxHash, anchor.TxHash))
		}
	}
	// Unanchored, the records are checked against the header they were
	// sealed under, so tampering shows before the anchor exists.
	target := d.Epoch.Commitment()
	if isAnchored {
		target = anchored
	}
	recs, hashes := d.Split()
	var suspects []string
	for _, p := range accounting.VerifyEpochCommitment(d.Epoch, recs, hashes, target, v.earlier...) {
		line, sus := v.problemLines(p, recs)
		probs, suspects = append(probs, line), append(suspects, sus...)
	}
	head := fmt.Sprintf("epoch %d: %d records, root %s", n, d.Epoch.Count, accounting.HashHex(d.Epoch.Root))
	switch {
	case len(probs) > 0:
		fmt.Fprintf(v.out, "%s : FAILED (%s)\n", head, plural(len(probs), "problem"))
		for _, p := range append(probs, suspects...) {
			fmt.Fprintln(v.out, oneLine(p))
		}
		v.failed++
	case !isAnchored:
		fmt.Fprintf(v.out, "%s : not anchored yet\n", head)
		v.unanchored++
	default:
		fmt.Fprintf(v.out, "%s, anchored in block %d tx %s : OK\n", head, anchor.BlockNumber, anchor.TxHash)
		v.ok++
	}
	return nil
}

// problemLines renders a problem and what is known of the change: the
// fields that differ from an earlier proof, and fields that contradict
// each other. A root mismatch names no record, so every record whose
// fields disagree is returned as a suspect.
func (v *verifier) problemLines(p accounting.Problem, recs []accounting.UsageRecord) (string, []string) {
	line := p.String()
	if p.Index >= 0 && p.Index < len(recs) && (p.Kind == accounting.ProblemTampered || p.Kind == accounting.ProblemChanged) {
		rec := &recs[p.Index]
		for _, e := range v.earlier {
			if e.Epoch == p.Epoch && e.Record.Seq == rec.Seq {
				if d := recordDiff(&e.Record, rec); d != "" {
					line += "; changed since the earlier proof: " + d
				}
				break
			}
		}
		if h := recordHints(rec); len(h) > 0 {
			line += "; " + strings.Join(h, "; ")
		}
	}
	var suspects []string
	if p.Kind == accounting.ProblemRoot {
		for i := range recs {
			if h := recordHints(&recs[i]); len(h) > 0 {
				suspects = append(suspects, fmt.Sprintf("epoch %d: suspect: seq %d (job %s): %s", p.Epoch, recs[i].Seq, recordJobID(&recs[i]), strings.Join(h, "; ")))
			}
		}
	}
	return line, suspects
}

// plural is "1 problem", "2 problems".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// recordDiff lists the fields that differ between two versions of a
// record: "charge 1500000 → 900000, state ...".
func recordDiff(was, now *accounting.UsageRecord) string {
	fields := func(r *accounting.UsageRecord) map[string]json.RawMessage {
		b, err := json.Marshal(r)
		m := map[string]json.RawMessage{}
		if err == nil {
			_ = json.Unmarshal(b, &m)
		}
		return m
	}
	a, b := fields(was), fields(now)
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	show := func(m json.RawMessage) string {
		if m == nil {
			return "(unset)"
		}
		return safeText(string(m), 80)
	}
	var parts []string
	for _, k := range keys {
		if !bytes.Equal(a[k], b[k]) {
			parts = append(parts, fmt.Sprintf("%s %s → %s", k, show(a[k]), show(b[k])))
		}
	}
	return strings.Join(parts, ", ")
}

// recordHints are a record's fields that contradict the others (as
// accounting.NewRecord derives them): they locate a change that its hash
// alone cannot.
func recordHints(r *accounting.UsageRecord) []string {
	var out []string
	if err := r.Validate(); err != nil {
		out = append(out, "record."+err.Error())
	}
	if !r.StartTime.IsZero() && !r.EndTime.IsZero() && !r.EndTime.Before(r.StartTime) {
		ns := r.EndTime.Sub(r.StartTime)
		if want := uint64((ns + time.Second/2) / time.Second); ns < 1<<62 && r.WallSec != want {
			out = append(out, fmt.Sprintf("record.wall_sec: %d, but start_time to end_time is %d s", r.WallSec, want))
		}
	}
	mem := new(big.Int).Mul(new(big.Int).SetUint64(r.PeakMemoryBytes), new(big.Int).SetUint64(r.WallSec))
	mem.Add(mem, big.NewInt(1<<19)).Rsh(mem, 20)
	if mem.IsUint64() && mem.Uint64() != r.MemoryMBSeconds {
		out = append(out, fmt.Sprintf("record.memory_mb_seconds: %d, but peak_memory_bytes × wall_sec gives %d", r.MemoryMBSeconds, mem.Uint64()))
	}
	if per := r.WallSec * uint64(len(r.Nodes)); per > 0 && r.GPUSeconds%per != 0 {
		out = append(out, fmt.Sprintf("record.gpu_seconds: %d is not a whole number of GPUs × %d nodes × %d s", r.GPUSeconds, len(r.Nodes), r.WallSec))
	}
	return out
}

// recordJobID is the job id as Slurm prints it: 123, or 103_1 for an
// array task.
func recordJobID(r *accounting.UsageRecord) string {
	if r.ArrayJobID != 0 && r.ArrayTaskID >= 0 {
		return fmt.Sprintf("%d_%d", r.ArrayJobID, r.ArrayTaskID)
	}
	return strconv.FormatUint(r.JobID, 10)
}

// ---- proofs ----

// proofCheck is what checking a proof found. Problems name the proof
// field that failed; notes do not fail it.
type proofCheck struct {
	problems []string
	notes    []string
	anchor   accounting.Anchor // where the chain holds the commitment
	contract string
}

// checkProof follows the proof from the record's fields to the commitment
// the chain holds for its epoch. Errors are failures to check at all.
func (v *verifier) checkProof(ctx context.Context, p *accounting.Proof) (proofCheck, error) {
	var pc proofCheck
	add := func(format string, a ...any) { pc.problems = append(pc.problems, fmt.Sprintf(format, a...)) }
	rec := &p.Record
	if h := rec.Hash(); h != p.RecordHash {
		add("record: its fields hash to %s, not the record_hash %s: the record was altered", accounting.HashHex(h), accounting.HashHex(p.RecordHash))
	}
	pc.problems = append(pc.problems, recordHints(rec)...)
	switch err := accounting.VerifyInclusion(p.RecordHash, p.LeafIndex, p.TreeSize, p.Path, p.Root); {
	case err == nil:
	case p.LeafIndex >= p.TreeSize:
		add("leaf_index: %d is outside the tree_size %d", p.LeafIndex, p.TreeSize)
	case errors.Is(err, accounting.ErrInclusion):
		add("audit_path: does not lead from the record_hash at leaf %d of %d to the root %s", p.LeafIndex, p.TreeSize, accounting.HashHex(p.Root))
	default:
		add("audit_path: %v", err)
	}
	if p.Epoch == 0 {
		add("epoch: 0 is not an epoch (they start at 1)")
	}
	if p.FirstSeq() == 0 {
		add("leaf_index: leaf %d cannot hold seq %d (seqs start at 1)", p.LeafIndex, rec.Seq)
	}
	r, contract, err := v.reader(ctx, p.Anchor.Contract)
	if err != nil {
		return pc, err
	}
	pc.contract = contract
	c, a, anchored, err := v.commitmentOf(ctx, r, p.Epoch)
	if err != nil {
		return pc, err
	}
	if !anchored {
		add("epoch: contract %s holds no anchor for epoch %d", contract, p.Epoch)
		return pc, nil
	}
	pc.anchor = a
	if got := p.Commitment(); got != c {
		add("epoch: the chain holds %s for epoch %d, but the proof's header (epoch %d, first seq %d, tree_size %d, root %s) gives %s",
			accounting.HashHex(c), p.Epoch, p.Epoch, p.FirstSeq(), p.TreeSize, accounting.HashHex(p.Root), accounting.HashHex(got))
	}
	if p.Anchor.TxHash != "" && !strings.EqualFold(p.Anchor.TxHash, a.TxHash) {
		add("anchor.tx_hash: the proof says %s, but the chain's anchor of epoch %d is in tx %s", p.Anchor.TxHash, p.Epoch, a.TxHash)
	}
	if p.Anchor.ChainID != 0 && a.ChainID != 0 && p.Anchor.ChainID != a.ChainID {
		add("anchor.chain_id: the proof says chain %d, but it was checked on chain %d", p.Anchor.ChainID, a.ChainID)
	}
	if p.Anchor.BlockNumber != 0 && p.Anchor.BlockNumber != a.BlockNumber {
		pc.notes = append(pc.notes, fmt.Sprintf("anchor.block_number: the proof says block %d, the chain has the anchor in block %d (reorganised since?)", p.Anchor.BlockNumber, a.BlockNumber))
	}
	if p.Anchor.Contract != "" && !strings.EqualFold(p.Anchor.Contract, contract) {
		pc.notes = append(pc.notes, fmt.Sprintf("anchor.contract: the proof names %s; checked at %s as --contract says", p.Anchor.Contract, contract))
	}
	// The library's own check, the last word.
	if len(pc.problems) == 0 {
		if err := accounting.VerifyProof(*p, c); err != nil {
			add("proof: %v", err)
		}
	}
	return pc, nil
}

// verifyProofFile checks a proof file without the cluster and prints what
// was verified, or each failure.
func (v *verifier) verifyProofFile(ctx context.Context, name string, data []byte) error {
	var p accounting.Proof
	if err := json.Unmarshal(data, &p); err != nil {
		return fmt.Errorf("--proof %s: not a proof: %v", name, oneLine(err.Error()))
	}
	v.chainID = cmp.Or(v.chainID, p.Anchor.ChainID)
	pc, err := v.checkProof(ctx, &p)
	if err != nil {
		return err
	}
	rec := &p.Record
	for _, n := range pc.notes {
		fmt.Fprintf(v.out, "note: %s\n", oneLine(n))
	}
	if len(pc.problems) > 0 {
		for _, m := range pc.problems {
			fmt.Fprintf(v.out, "proof FAILED: %s\n", oneLine(m))
		}
		v.failed++
		return nil
	}
	v.ok++
	var b strings.Builder
	fmt.Fprintf(&b, "proof OK: the usage record of job %s is in epoch %d as anchored on chain %d\n", recordJobID(rec), p.Epoch, pc.anchor.ChainID)
	row := func(k, format string, a ...any) { fmt.Fprintf(&b, "  %-12s %s\n", k+":", fmt.Sprintf(format, a...)) }
	row("job", "%s (job id %d, seq %d)", recordJobID(rec), rec.JobID, rec.Seq)
	row("user", "%s", safeText(rec.User, 0))
	row("account", "%s", safeText(rec.Account, 0))
	row("charge", "%s %s (price version %d)", formatMicro(rec.Charge), safeText(rec.Currency, 0), rec.PriceVersion)
	row("ran", "%s to %s, %s, %d s wall, %s CPU-hours", rec.StartTime.UTC().Format(time.RFC3339), rec.EndTime.UTC().Format(time.RFC3339),
		safeText(rec.State, 0), rec.WallSec, hours(rec.CPUMillis, 3.6e6))
	row("record hash", "%s", accounting.HashHex(p.RecordHash))
	row("epoch", "%d (leaf %d of %d, first seq %d)", p.Epoch, p.LeafIndex, p.TreeSize, p.FirstSeq())
	row("root", "%s", accounting.HashHex(p.Root))
	row("commitment", "%s", accounting.HashHex(p.Commitment()))
	row("anchored", "block %d, tx %s", pc.anchor.BlockNumber, pc.anchor.TxHash)
	row("contract", "%s on chain %d", pc.contract, pc.anchor.ChainID)
	fmt.Fprint(v.out, b.String())
	return nil
}

// checkJobRecord verifies one stored record of a job through its proof.
func (v *verifier) checkJobRecord(ctx context.Context, c *api.Client, sr *accounting.StoredRecord) error {
	label := fmt.Sprintf("job %s (seq %d)", recordJobID(&sr.Record), sr.Record.Seq)
	if sr.Epoch == 0 {
		fmt.Fprintf(v.out, "%s: not sealed into an epoch yet : not anchored yet\n", label)
		v.unanchored++
		return nil
	}
	var p *accounting.Proof
	err := v.call(ctx, func(ctx context.Context) (err error) {
		p, err = accounting.GetProofBySeq(ctx, c, sr.Record.Seq)
		return err
	})
	if isHTTP(err, http.StatusConflict) {
		fmt.Fprintf(v.out, "%s in epoch %d: sealed : not anchored yet\n", label, sr.Epoch)
		v.unanchored++
		return nil
	}
	if err != nil {
		return fmt.Errorf("proof of %s: %s", label, apiMessage(err))
	}
	pc, err := v.checkProof(ctx, p)
	if err != nil {
		return err
	}
	if d := recordDiff(&sr.Record, &p.Record); d != "" || [32]byte(sr.Hash) != p.RecordHash || sr.Epoch != p.Epoch {
		pc.problems = append(pc.problems, fmt.Sprintf("record: the record listed (hash %s, epoch %d) is not the proof's (hash %s, epoch %d): %s",
			sr.Hash, sr.Epoch, accounting.HashHex(p.RecordHash), p.Epoch, cmp.Or(d, "same fields")))
	}
	for _, n := range pc.notes {
		fmt.Fprintf(v.out, "%s: note: %s\n", label, oneLine(n))
	}
	if len(pc.problems) > 0 {
		fmt.Fprintf(v.out, "%s in epoch %d : FAILED (%s)\n", label, p.Epoch, plural(len(pc.problems), "problem"))
		for _, m := range pc.problems {
			fmt.Fprintf(v.out, "%s: %s\n", label, oneLine(m))
		}
		v.failed++
		return nil
	}
	fmt.Fprintf(v.out, "%s in epoch %d: charge %s %s, record hash %s, anchored in block %d tx %s : OK\n", label, p.Epoch,
		formatMicro(p.Record.Charge), safeText(p.Record.Currency, 0), accounting.HashHex(p.RecordHash), pc.anchor.BlockNumber, pc.anchor.TxHash)
	v.ok++
	return nil
}

// ---- the command ----

func acctVerifyCommand(e *env) *cobra.Command {
	var job, proofFile, rpc, contract string
	var epoch, chainID uint64
	var all bool
	var earlierFiles []string
	cmd := &cobra.Command{
		Use:   "verify --job ID | --epoch N | --all | --proof FILE [--rpc URL] [--contract ADDRESS] [--chain-id N]",
		Short: "Check usage records against the commitments anchored on chain",
		Long: `Recomputes each record's hash from its fields, the Merkle root of its epoch
and the epoch's commitment, reads the commitment anchored for the epoch
from the chain and compares. Prints one line per job record or epoch
checked ("... : OK", "... : not anchored yet", "... : FAILED") and one
line per problem, naming the record (seq, job) and what is wrong.

  --job ID      a job's records, through their proofs (users: own jobs)
  --epoch N     one epoch with all its records (admins)
  --all         every sealed epoch, and that none is missing (admins)
  --proof FILE  a file from "acct proof" ("-": standard input), checked
                without contacting the cluster: --rpc is required

The chain endpoint, chain id and anchor contract come from the
controllers unless --rpc, --chain-id and --contract say otherwise; for a
check that trusts nothing the cluster says, give your own node (--rpc)
and the contract the operator published (--contract). --earlier FILE
(repeatable) adds proofs exported before: a record changed together with
its stored hash is then named, with the fields that changed.

Exit status: 0 all checked and OK; 1 something is wrong (or could not be
checked); 2 nothing wrong, but some records or epochs are not anchored
yet (sealing and anchoring lag behind the jobs; try again later).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			modes := 0
			for _, set := range []bool{job != "", epoch != 0, all, proofFile != ""} {
				if set {
					modes++
				}
			}
			if modes != 1 {
				return errors.New("--job: give one of --job ID, --epoch N, --all or --proof FILE")
			}
			if job != "" {
				if _, err := parseJobSel(job); err != nil || strings.Contains(job, "[") {
					return fmt.Errorf("--job: %q is not a job id (123 or 123_4)", job)
				}
			}
			if rpc != "" {
				if u, err := url.Parse(rpc); err != nil || u.Host == "" || !slices.Contains([]string{"http", "https", "ws", "wss"}, u.Scheme) {
					return fmt.Errorf("--rpc: %q is not an http, https, ws or wss URL", rpc)
				}
			}
			if contract != "" && !addressRE.MatchString(contract) {
				return fmt.Errorf("--contract: %q is not an address (0x and 40 hex digits)", contract)
			}
			if proofFile != "" && rpc == "" {
				return errors.New("--rpc: required with --proof: the chain's JSON-RPC URL (the cluster is not contacted)")
			}
			if len(earlierFiles) > 0 && epoch == 0 && !all {
				return errors.New("--earlier: only with --epoch or --all")
			}
			v := &verifier{out: e.stdout, rpc: rpc, chainID: chainID, pinned: contract,
				bound: func(ctx context.Context) (context.Context, context.CancelFunc) {
					ctx, cancel, err := e.requestContext(ctx)
					if err != nil { // checked below, before any call
						return context.WithCancel(ctx)
					}
					return ctx, cancel
				}}
			_, cancel, err := e.requestContext(context.Background())
			if err != nil {
				return err
			}
			cancel()
			defer v.close()
			for _, f := range earlierFiles {
				data, err := e.readFile(f)
				if err != nil {
					return fmt.Errorf("--earlier: %v", err)
				}
				var p accounting.Proof
				if err := json.Unmarshal(data, &p); err != nil {
					return fmt.Errorf("--earlier %s: not a proof: %v", f, oneLine(err.Error()))
				}
				v.earlier = append(v.earlier, p)
			}
			ctx := cmd.Context()
			if proofFile != "" {
				var data []byte
				var err error
				if proofFile == "-" {
					data, err = io.ReadAll(e.stdin)
				} else {
					data, err = e.readFile(proofFile)
				}
				if err != nil {
					return fmt.Errorf("--proof: %v", err)
				}
				if err := v.verifyProofFile(ctx, proofFile, data); err != nil {
					return err
				}
				return v.result()
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			switch {
			case job != "":
				err = v.verifyJob(ctx, c, job)
			case epoch != 0:
				err = v.verifyEpoch(ctx, c, epoch)
			default:
				err = v.verifyAll(ctx, c)
			}
			if err != nil {
				return err
			}
			return v.result()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&job, "job", "", "verify the records of job `ID` (123, or 123_4)")
	fl.Uint64Var(&epoch, "epoch", 0, "verify epoch `N` and all its records (admins)")
	fl.BoolVar(&all, "all", false, "verify every sealed epoch (admins)")
	fl.StringVar(&proofFile, "proof", "", "verify a proof `FILE` from \"acct proof\" without the cluster")
	fl.StringVar(&rpc, "rpc", "", "the chain's JSON-RPC `URL` (default: the controllers')")
	fl.StringVar(&contract, "contract", "", "the anchor contract `ADDRESS` (default: the proof's or the controllers')")
	fl.Uint64Var(&chainID, "chain-id", 0, "the chain id `N` the node must be on (default: the proof's or the controllers')")
	fl.StringArrayVar(&earlierFiles, "earlier", nil, "a proof `FILE` exported earlier, to locate changed records (repeatable)")
	return cmd
}

// useChain takes the cluster's chain endpoint where no flag overrides it.
func (v *verifier) useChain(ci accounting.ChainInfo) {
	v.rpc = cmp.Or(v.rpc, ci.RPCURL)
	v.chainID = cmp.Or(v.chainID, ci.ChainID)
	v.fallback = ci.Contract
}

func (v *verifier) verifyJob(ctx context.Context, c *api.Client, job string) error {
	var er *accounting.EpochsResponse
	err := v.call(ctx, func(ctx context.Context) (err error) {
		er, err = accounting.Epochs(ctx, c, 0, 1)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s", apiMessage(err))
	}
	v.useChain(er.Chain)
	var recs []accounting.StoredRecord
	q := accounting.RecordQuery{Limit: maxRecordPage}
	for {
		var resp accounting.RecordsResponse
		err := v.call(ctx, func(ctx context.Context) error {
			vals := q.Values()
			vals.Set("job", job) // as given: the controllers resolve 123_4
			return c.Do(ctx, http.MethodGet, "/v1/acct/records?"+vals.Encode(), nil, &resp)
		})
		if err != nil {
			return fmt.Errorf("%s", apiMessage(err))
		}
		recs = append(recs, resp.Records...)
		if resp.NextAfterSeq == 0 {
			break
		}
		q.AfterSeq = resp.NextAfterSeq
	}
	if len(recs) == 0 {
		return fmt.Errorf("--job: job %s has no usage record (it has not ended, or never ran)", job)
	}
	for i := range recs {
		if err := v.checkJobRecord(ctx, c, &recs[i]); err != nil {
			return err
		}
	}
	return nil
}

// epochDetail fetches an epoch; a refusal says who may check epochs.
func (v *verifier) epochDetail(ctx context.Context, c *api.Client, n uint64) (*accounting.EpochDetail, error) {
	var d *accounting.EpochDetail
	err := v.call(ctx, func(ctx context.Context) (err error) {
		d, err = accounting.GetEpoch(ctx, c, n)
		return err
	})
	switch {
	case isHTTP(err, http.StatusForbidden):
		return nil, errors.New("--epoch: permission denied: epochs hold every user's records, so only admins check them; check your own jobs with --job ID")
	case isHTTP(err, http.StatusNotFound):
		return nil, fmt.Errorf("--epoch: epoch %d is not sealed", n)
	case err != nil:
		return nil, fmt.Errorf("epoch %d: %s", n, apiMessage(err))
	}
	return d, nil
}

func (v *verifier) verifyEpoch(ctx context.Context, c *api.Client, n uint64) error {
	d, err := v.epochDetail(ctx, c, n)
	if err != nil {
		return err
	}
	v.useChain(d.Chain)
	return v.checkEpoch(ctx, d, nil)
}

// Page sizes: the most the controllers answer at once.
const (
	maxRecordPage = 10000
	maxEpochPage  = 1000
)

func (v *verifier) verifyAll(ctx context.Context, c *api.Client) error {
	var infos []accounting.EpochInfo
	from := uint64(1)
	for {
		var er *accounting.EpochsResponse
		err := v.call(ctx, func(ctx context.Context) (err error) {
			er, err = accounting.Epochs(ctx, c, from, maxEpochPage)
			return err
		})
		if err != nil {
			return fmt.Errorf("%s", apiMessage(err))
		}
		if from == 1 {
			v.useChain(er.Chain)
		}
		infos = append(infos, er.Epochs...)
		if len(er.Epochs) < maxEpochPage {
			break
		}
		from = er.Epochs[len(er.Epochs)-1].Epoch.Number + 1
	}
	// The epochs must cover the ledger from seq 1 without a gap.
	pre := map[uint64][]string{}
	headers := make([]accounting.Epoch, len(infos))
	for i, in := range infos {
		headers[i] = in.Epoch
	}
	if len(headers) > 0 && (headers[0].Number != 1 || headers[0].FirstSeq != 1) {
		n := headers[0].Number
		pre[n] = append(pre[n], fmt.Sprintf("epoch %d: missing-record: the first epoch is number %d from seq %d, not epoch 1 from seq 1: epochs missing",
			n, n, headers[0].FirstSeq))
	}
	for _, p := range accounting.VerifyChain(headers) {
		pre[p.Epoch] = append(pre[p.Epoch], p.String())
	}
	for _, in := range infos {
		d, err := v.epochDetail(ctx, c, in.Epoch.Number)
		if err != nil {
			return err
		}
		probs := pre[in.Epoch.Number]
		if d.Epoch.Commitment() != in.Epoch.Commitment() {
			probs = append(probs, fmt.Sprintf("epoch %d: the epoch listing and the epoch's records disagree on its header", in.Epoch.Number))
		}
		if err := v.checkEpoch(ctx, d, probs); err != nil {
			return err
		}
	}
	var st *api.Status
	if v.call(ctx, func(ctx context.Context) (err error) { st, err = c.Status(ctx); return err }) == nil && st.AcctUnsealedRecords > 0 {
		fmt.Fprintf(v.out, "%s not sealed yet: checked once sealed and anchored\n", plural(int(st.AcctUnsealedRecords), "record"))
	}
	if len(infos) == 0 {
		fmt.Fprintln(v.out, "no sealed epochs yet")
		return nil
	}
	fmt.Fprintf(v.out, "%s checked: %d OK, %d not anchored yet, %d FAILED\n", plural(len(infos), "epoch"), v.ok, v.unanchored, v.failed)
	return nil
}
