package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/raftstore"
)

var acctTestPrices = accounting.PriceTable{Version: 1, Currency: "EUR", CPUHour: 3_600_000,
	Split: accounting.Split{NodeOperator: 7000, ClusterOperator: 2500, ImagePublisher: 500}}

func TestAcctRoutes(t *testing.T) {
	c := bootstrapWith(t, func(o *Options) {
		// Seal by count only, so the test decides when.
		o.Config.Accounting = AcctConfig{Interval: time.Hour, MaxRecords: 3,
			Prices: &acctTestPrices, Beneficiaries: &accounting.Beneficiaries{ClusterOperator: "op:cluster"}}
	})
	ctx := context.Background()
	admin := c.client(c.admin)
	alice, bob := c.addUser("alice", 1601), c.addUser("bob", 1602)
	ac, bc := c.client(alice), c.client(bob)

	// The leader applies the configured prices as the first version.
	waitFor(t, 20*time.Second, "the configured prices", func() bool {
		p, err := accounting.Prices(ctx, ac)
		return err == nil && p.Current.SetBy == configSetBy && p.Current.Prices == acctTestPrices
	})

	n1 := c.agent("node1")
	register(t, n1, "node1")
	stop := make(chan struct{})
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				n1.AgentHeartbeat(ctx, api.AgentHeartbeat{Name: "node1"})
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-hbDone })

	// run submits a job as cl, waits for it to start and reports one
	// CPU-hour.
	run := func(cl *api.Client, name string) uint64 {
		t.Helper()
		sp := spec(name)
		sp.NodeList = []string{"node1"}
		id := submit(t, cl, sp).JobID
		var j api.Job
		waitFor(t, 20*time.Second, name+" running", func() bool {
			return admin.Do(ctx, "GET", fmt.Sprintf("/v1/jobs/%d", id), nil, &j) == nil && j.State == api.JobRunning
		})
		if err := n1.AgentReport(ctx, api.JobReport{JobID: id, Node: "node1", State: api.JobCompleted, EndUnix: time.Now().Unix(),
			Attempt: j.Restarts, Usage: api.Usage{CPUTimeNs: 3600e9}}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	a1 := run(ac, "a1")
	b1 := run(bc, "b1")
	// A job cancelled while pending leaves no record.
	sp := spec("held")
	sp.Hold = true
	held := submit(t, ac, sp).JobID
	if err := ac.Do(ctx, "POST", "/v1/jobs/cancel", api.CancelRequest{JobIDs: []string{fmt.Sprint(held)}}, &api.CancelResponse{}); err != nil {
		t.Fatal(err)
	}

	records := func(cl *api.Client, q accounting.RecordQuery) []accounting.StoredRecord {
		t.Helper()
		r, err := accounting.Records(ctx, cl, q)
		if err != nil {
			t.Fatal(err)
		}
		return r.Records
	}
	t.Run("records", func(t *testing.T) {
		mine := records(ac, accounting.RecordQuery{})
		if len(mine) != 1 || mine[0].Record.JobID != a1 || mine[0].Record.User != "alice" {
			t.Fatalf("alice sees %+v", mine)
		}
		r := mine[0]
		if r.Record.Hash() != [32]byte(r.Hash) || r.Epoch != 0 || r.Settlement != "unsettled" || r.Record.PriceVersion != 1 ||
			r.Record.Currency != "EUR" || r.Record.Charge != 3_600_000 || r.Record.ClusterOperatorPay != 1_080_000 ||
			r.Record.NodeOperatorPay["node:node1"] != 2_520_000 || r.Record.Account != "research" {
			t.Errorf("record %+v", r)
		}
		if _, err := accounting.Records(ctx, ac, accounting.RecordQuery{User: "bob"}); status(err) != 403 {
			t.Errorf("alice asks for bob's records: %v", err)
		}
		if got := records(admin, accounting.RecordQuery{}); len(got) != 2 {
			t.Errorf("admin sees %d records", len(got))
		}
		if got := records(admin, accounting.RecordQuery{User: "bob"}); len(got) != 1 || got[0].Record.JobID != b1 {
			t.Errorf("admin asks for bob's: %+v", got)
		}
		if got := records(admin, accounting.RecordQuery{JobID: held}); len(got) != 0 {
			t.Errorf("pending-cancelled job has records: %+v", got)
		}
		page, err := accounting.Records(ctx, admin, accounting.RecordQuery{Limit: 1})
		if err != nil || len(page.Records) != 1 || page.NextAfterSeq != 1 {
			t.Errorf("first page %+v %v", page, err)
		}
		if code, msg := raw(t, ac, "GET", "/v1/acct/records?from=yesterday", alice, nil); code != 400 || !strings.HasPrefix(msg, "from:") {
			t.Errorf("bad from: %d %s", code, msg)
		}
		if code, msg := raw(t, ac, "GET", "/v1/acct/records?limit=0", alice, nil); code != 400 || !strings.HasPrefix(msg, "limit:") {
			t.Errorf("bad limit: %d %s", code, msg)
		}
	})

	t.Run("unsealed", func(t *testing.T) {
		if _, err := accounting.GetProof(ctx, ac, a1); status(err) != 409 || !strings.Contains(err.Error(), "not sealed") {
			t.Errorf("proof of an unsealed record: %v", err)
		}
		if _, err := accounting.GetProof(ctx, bc, a1); status(err) != 404 {
			t.Errorf("bob asks for alice's proof: %v", err)
		}
		if _, err := accounting.GetEpoch(ctx, ac, 1); status(err) != 403 {
			t.Errorf("alice reads an epoch: %v", err)
		}
		if _, err := accounting.GetEpoch(ctx, admin, 1); status(err) != 404 {
			t.Errorf("unsealed epoch: %v", err)
		}
	})

	// The third record fills an epoch (max_records 3).
	run(ac, "a2")
	var ep accounting.EpochInfo
	waitFor(t, 20*time.Second, "epoch 1 sealed", func() bool {
		es, err := accounting.Epochs(ctx, ac, 0, 0)
		if err != nil || len(es.Epochs) != 1 {
			return false
		}
		ep = es.Epochs[0]
		return true
	})
	if ep.Epoch.Number != 1 || ep.Epoch.FirstSeq != 1 || ep.Epoch.Count != 3 || ep.Anchor != nil || [32]byte(ep.Commitment) != ep.Epoch.Commitment() {
		t.Fatalf("epoch %+v", ep)
	}
	if _, err := accounting.GetProof(ctx, ac, a1); status(err) != 409 || !strings.Contains(err.Error(), "not anchored") {
		t.Errorf("proof of an unanchored epoch: %v", err)
	}

	// Anchoring is another component's; record it as it would.
	anchor := accounting.Anchor{ChainID: 1337, Contract: "0x00000000000000000000000000000000000000aa", TxHash: "0x" + strings.Repeat("cd", 32), BlockNumber: 7}
	if _, err := c.ctls[0].node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdEpochAnchored,
		Anchored: &raftstore.EpochAnchored{Number: 1, Anchor: anchor}}); err != nil {
		t.Fatal(err)
	}

	t.Run("proof", func(t *testing.T) {
		p, err := accounting.GetProof(ctx, ac, a1)
		if err != nil {
			t.Fatal(err)
		}
		// What a verifier reads from the chain is the commitment.
		if err := accounting.VerifyProof(*p, ep.Commitment); err != nil {
			t.Errorf("proof does not verify against the commitment: %v", err)
		}
		if p.Anchor != anchor || p.Epoch != 1 || p.Record.JobID != a1 || p.Commitment() != [32]byte(ep.Commitment) {
			t.Errorf("proof %+v", p)
		}
		wrong := ep.Epoch
		wrong.Count = 2
		if accounting.VerifyProof(*p, wrong.Commitment()) == nil {
			t.Error("proof verifies against a truncated epoch's commitment")
		}
		if _, err := accounting.GetProof(ctx, ac, b1); status(err) != 404 {
			t.Errorf("alice asks for bob's proof: %v", err)
		}
		if q, err := accounting.GetProof(ctx, admin, b1); err != nil || accounting.VerifyProof(*q, ep.Commitment) != nil {
			t.Errorf("admin proof of bob's job: %v", err)
		}
		d, err := accounting.GetEpoch(ctx, admin, 1)
		if err != nil {
			t.Fatal(err)
		}
		recs, hashes := d.Split()
		if ps := accounting.VerifyEpochCommitment(d.Epoch, recs, hashes, ep.Commitment, *p); ps != nil || len(recs) != 3 || d.Anchor == nil {
			t.Errorf("epoch 1 does not verify: %v", ps)
		}
		if code, _ := raw(t, ac, "GET", "/v1/acct/proof", alice, nil); code != 400 {
			t.Errorf("proof without a job: %d", code)
		}
	})

	t.Run("statement", func(t *testing.T) {
		st, err := accounting.GetStatement(ctx, ac, accounting.StatementQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Lines) != 1 || st.Lines[0].Records != 2 || st.Lines[0].Charge != 7_200_000 || st.Lines[0].Account != "research" || st.Lines[0].Currency != "EUR" {
			t.Errorf("alice's statement %+v", st.Lines)
		}
		st, err = accounting.GetStatement(ctx, admin, accounting.StatementQuery{Beneficiary: "op:cluster", Period: accounting.PeriodDay})
		if err != nil || len(st.Lines) != 1 || st.Lines[0].Records != 3 || st.Lines[0].Earned != 3*1_080_000 || st.Lines[0].Start.IsZero() {
			t.Errorf("cluster operator's statement %+v %v", st, err)
		}
		if _, err := accounting.GetStatement(ctx, ac, accounting.StatementQuery{Beneficiary: "op:cluster"}); status(err) != 403 {
			t.Errorf("alice asks for a beneficiary statement: %v", err)
		}
		if _, err := accounting.GetStatement(ctx, ac, accounting.StatementQuery{User: "bob"}); status(err) != 403 {
			t.Errorf("alice asks for bob's statement: %v", err)
		}
		if code, msg := raw(t, ac, "GET", "/v1/acct/statement?period=year", alice, nil); code != 400 || !strings.HasPrefix(msg, "period:") {
			t.Errorf("bad period: %d %s", code, msg)
		}
	})

	t.Run("prices", func(t *testing.T) {
		np := acctTestPrices
		np.CPUHour = 7_200_000
		if _, err := accounting.SetPrices(ctx, ac, accounting.SetPricesRequest{Prices: &np}); status(err) != 403 {
			t.Errorf("alice sets prices: %v", err)
		}
		bad := np
		bad.CPUHour = -1
		if _, err := accounting.SetPrices(ctx, admin, accounting.SetPricesRequest{Prices: &bad}); status(err) != 400 || !strings.Contains(err.Error(), "cpu_hour") {
			t.Errorf("negative price: %v", err)
		}
		for range 2 {
			p, err := accounting.SetPrices(ctx, admin, accounting.SetPricesRequest{Prices: &np})
			if err != nil || p.Current.Prices.Version != 2 || p.Current.SetBy != "root" || len(p.History) != 2 ||
				p.Current.Beneficiaries.ClusterOperator != "op:cluster" {
				t.Errorf("set prices: %+v %v", p, err)
			}
		}
		if code, _ := raw(t, admin, "POST", "/v1/acct/prices", c.admin, []byte(`{}`)); code != 400 {
			t.Errorf("empty price change: %d", code)
		}
	})

	t.Run("settlement", func(t *testing.T) {
		req := accounting.SettlementRequest{Seqs: []uint64{1}, Status: accounting.SettlementSettled}
		if _, err := accounting.SetSettlement(ctx, ac, req); status(err) != 403 {
			t.Errorf("alice settles: %v", err)
		}
		// Resending changes nothing more.
		for _, want := range []uint64{1, 0} {
			r, err := accounting.SetSettlement(ctx, admin, req)
			if err != nil || r.Updated != want {
				t.Errorf("settle: %+v %v, want %d updated", r, err, want)
			}
		}
		if _, err := accounting.SetSettlement(ctx, admin, accounting.SettlementRequest{Seqs: []uint64{1}, Status: "paid"}); status(err) != 400 || !strings.HasPrefix(err.Error(), "status:") {
			t.Errorf("bad status: %v", err)
		}
		if _, err := accounting.SetSettlement(ctx, admin, accounting.SettlementRequest{Seqs: []uint64{99}, Status: "settled"}); status(err) != 404 {
			t.Errorf("unknown seq: %v", err)
		}
		got := records(admin, accounting.RecordQuery{JobID: a1})
		if len(got) != 1 || got[0].Settlement != "settled" || got[0].Record.Hash() != [32]byte(got[0].Hash) || got[0].Epoch != 1 {
			t.Errorf("settled record %+v", got)
		}
	})

	t.Run("status", func(t *testing.T) {
		var st api.Status
		if err := ac.Do(ctx, "GET", "/v1/status", nil, &st); err != nil {
			t.Fatal(err)
		}
		if st.AcctRecords != 3 || st.AcctUnsealedRecords != 0 || st.AcctLastSealedEpoch != 1 || st.AcctLastAnchoredEpoch != 1 ||
			st.AcctUnanchoredEpochs != 0 || st.AcctAnchorLagSec != 0 {
			t.Errorf("status %+v", st)
		}
	})
}

// TestAcctConfigCommand: the file's prices apply once; an admin's later
// change stands until the file changes.
func TestAcctConfigCommand(t *testing.T) {
	s := raftstore.NewStore()
	idx := uint64(0)
	apply := func(cmd *raftstore.Command) {
		t.Helper()
		idx++
		if err, ok := s.ApplyCommand(idx, cmd).(error); ok {
			t.Fatal(err)
		}
	}
	now := time.Unix(1_700_000_000, 0)
	cfg := DefaultConfig()
	if acctConfigCommand(cfg, s.Snapshot(), now) != nil {
		t.Error("a file without prices changes them")
	}
	p := acctTestPrices
	cfg.Accounting.Prices = &p
	cmd := acctConfigCommand(cfg, s.Snapshot(), now)
	if cmd == nil || cmd.Prices.SetBy != configSetBy || cmd.Prices.Prices.CPUHour != p.CPUHour ||
		cmd.Prices.Beneficiaries.ClusterOperator != "cluster" {
		t.Fatalf("command %+v", cmd)
	}
	apply(cmd)
	if acctConfigCommand(cfg, s.Snapshot(), now) != nil {
		t.Error("applied twice")
	}
	byAdmin := s.Snapshot().Prices()
	byAdmin.Prices.CPUHour, byAdmin.SetBy = 1, "root"
	apply(&raftstore.Command{Type: raftstore.CmdSetPrices, Time: now.UnixNano(), Prices: &byAdmin})
	if acctConfigCommand(cfg, s.Snapshot(), now) != nil {
		t.Error("the file overrides an admin's change")
	}
	p2 := p
	p2.GPUHour = 5
	cfg.Accounting.Prices = &p2
	if cmd := acctConfigCommand(cfg, s.Snapshot(), now); cmd == nil || cmd.Prices.Prices.GPUHour != 5 || cmd.Prices.Prices.CPUHour != p.CPUHour {
		t.Errorf("changed file: %+v", cmd)
	}
}
