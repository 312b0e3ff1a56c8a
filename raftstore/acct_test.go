package raftstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/scheduler"
)

var testUsage = api.Usage{CPUTimeNs: 7200e9, MaxMemoryB: 2 << 30, WallTimeNs: 3600e9}

// end reports a running job's end on its first node.
func (h *harness) end(id uint64, st api.JobState) {
	h.t.Helper()
	j := h.job(id)
	if got := h.must(Command{Type: CmdJobReport, Report: &api.JobReport{JobID: id, Node: j.Nodes[0], State: st,
		Attempt: j.Restarts, Usage: testUsage}}); got != true {
		h.t.Fatalf("report for job %d did not apply", id)
	}
}

func (h *harness) records() []*accounting.StoredRecord {
	return h.s.Snapshot().Records(accounting.RecordQuery{})
}

// seal seals every unsealed record as the leader does.
func (h *harness) seal() *accounting.EpochInfo {
	h.t.Helper()
	snap := h.s.Snapshot()
	n := uint64(1)
	if e := snap.LastEpoch(); e != nil {
		n = e.Epoch.Number + 1
	}
	var recs []accounting.UsageRecord
	for _, r := range snap.UnsealedRecords(0) {
		recs = append(recs, r.Record)
	}
	e, err := accounting.Seal(n, recs, time.Unix(0, h.now))
	if err != nil {
		h.t.Fatal(err)
	}
	return h.must(Command{Type: CmdSealEpoch, Epoch: &e}).(*accounting.EpochInfo)
}

func wantErr(t *testing.T, res any, kind error, field string) {
	t.Helper()
	err, _ := res.(error)
	var fe *FieldError
	if !errors.Is(err, kind) || !errors.As(err, &fe) || fe.Field != field {
		t.Errorf("got %v, want %v on %s", res, kind, field)
	}
}

func TestRecordPerFinishedJob(t *testing.T) {
	h := newHarness(t)
	id := h.run(api.JobSpec{Account: "physics", Image: "ghcr.io/acme/tool:1"}, "n1", "n2")
	h.end(id, api.JobCompleted)
	// A stale repeat of the report changes nothing.
	h.do(Command{Type: CmdJobReport, Report: &api.JobReport{JobID: id, Node: "n1", State: api.JobCompleted}})

	recs := h.records()
	if len(recs) != 1 || h.s.Snapshot().RecordCount() != 1 {
		t.Fatalf("%d records after one job", len(recs))
	}
	r := recs[0]
	j := h.job(id)
	want := accounting.NewRecord(j, accounting.DefaultPriceSet().Prices, accounting.DefaultPriceSet().Beneficiaries)
	want.Seq = 1
	if !reflect.DeepEqual(r.Record, want) {
		t.Errorf("record\n%+v\nwant\n%+v", r.Record, want)
	}
	if [32]byte(r.Hash) != want.Hash() || r.Epoch != 0 || r.Settlement != accounting.SettlementUnsettled {
		t.Errorf("stored %s epoch %d settlement %q", r.Hash, r.Epoch, r.Settlement)
	}
	if r.Record.PriceVersion != 1 || r.Record.Charge == 0 || r.Record.ImagePublisher != "ghcr.io/acme" || len(r.Record.Nodes) != 2 {
		t.Errorf("record %+v", r.Record)
	}

	// Array tasks get one record each; a task cancelled while pending none.
	res := h.submit(api.JobSpec{Array: "0-2", ArrayTasks: []int{0, 1, 2}})
	tasks := res.TaskIDs
	h.plan(scheduler.Placement{JobID: tasks[0], Nodes: []string{"n1"}, CPUs: 1, MemoryMB: 100},
		scheduler.Placement{JobID: tasks[1], Nodes: []string{"n2"}, CPUs: 1, MemoryMB: 100})
	h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{tasks[2]}})
	h.end(tasks[1], api.JobFailed)
	h.end(tasks[0], api.JobCompleted)
	// A running job cancelled ends through its agent's report.
	run := h.run(api.JobSpec{}, "n1")
	h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{run}})
	h.end(run, api.JobCancelled)
	// A never-started job cancelled: nothing.
	pend := h.submit(api.JobSpec{Hold: true}).JobID
	h.must(Command{Type: CmdCancelJobs, JobIDs: []uint64{pend}})
	// A node failure ends a non-requeueable job NODE_FAIL.
	nf := h.run(api.JobSpec{}, "n2")
	h.must(Command{Type: CmdNodesDown, NodeNames: []string{"n2"}, Reason: "gone"})

	recs = h.records()
	var got []uint64
	for i, r := range recs {
		if r.Record.Seq != uint64(i+1) {
			t.Errorf("record %d has seq %d", i, r.Record.Seq)
		}
		got = append(got, r.Record.JobID)
	}
	if want := []uint64{id, tasks[1], tasks[0], run, nf}; !reflect.DeepEqual(got, want) {
		t.Errorf("records for jobs %v, want %v", got, want)
	}
	if r := h.s.Snapshot().RecordByJob(tasks[1]); r == nil || r.Record.ArrayJobID != res.JobID || r.Record.ArrayTaskID != 1 || r.Record.State != "FAILED" {
		t.Errorf("array task record %+v", r)
	}
	if h.s.Snapshot().RecordByJob(tasks[2]) != nil || h.s.Snapshot().RecordByJob(pend) != nil {
		t.Error("a job cancelled while pending has a record")
	}
	if r := h.s.Snapshot().RecordByJob(nf); r == nil || r.Record.State != "NODE_FAIL" {
		t.Errorf("node-fail record %+v", r)
	}

	// A finished job requeued and run again: one record per attempt.
	again := h.run(api.JobSpec{Requeue: true}, "n1")
	h.end(again, api.JobFailed)
	h.must(Command{Type: CmdRequeueJobs, JobIDs: []uint64{again}})
	h.plan(scheduler.Placement{JobID: again, Nodes: []string{"n1"}, CPUs: 1, MemoryMB: 100})
	h.end(again, api.JobCompleted)
	all := h.s.Snapshot().RecordsByJob(again)
	if len(all) != 2 || all[0].Record.State != "FAILED" || all[1].Record.State != "COMPLETED" ||
		h.s.Snapshot().RecordByJob(again).Record.Seq != all[1].Record.Seq {
		t.Errorf("requeued job records %+v", all)
	}
}

func TestPriceVersions(t *testing.T) {
	h := newHarness(t)
	set := func(ps accounting.PriceSet) any {
		return h.do(Command{Type: CmdSetPrices, Prices: &ps})
	}
	p := accounting.DefaultPriceSet()
	p.Prices.CPUHour = 2_000_000
	p.Beneficiaries.NodeOperators = map[string]string{"n1": "op:alice"}
	p.SetBy = "root"
	// Nothing priced yet: the first set replaces the default as version 1.
	got := set(p).(*accounting.PriceSet)
	if got.Prices.Version != 1 || got.SetBy != "root" || got.SetAt.IsZero() {
		t.Errorf("first set %+v", got)
	}
	id := h.run(api.JobSpec{}, "n1")
	h.end(id, api.JobCompleted)

	p.Prices.CPUHour = 3_000_000
	if got := set(p).(*accounting.PriceSet); got.Prices.Version != 2 {
		t.Errorf("second set version %d", got.Prices.Version)
	}
	// The same content again makes no version; empty maps equal nil ones.
	q := p
	q.Beneficiaries.ImagePublishers = map[string]string{}
	if got := set(q).(*accounting.PriceSet); got.Prices.Version != 2 || len(h.s.Snapshot().PriceHistory()) != 2 {
		t.Errorf("repeat made version %d", got.Prices.Version)
	}
	id2 := h.run(api.JobSpec{}, "n1")
	h.end(id2, api.JobCompleted)
	r1, r2 := h.s.Snapshot().RecordByJob(id).Record, h.s.Snapshot().RecordByJob(id2).Record
	if r1.PriceVersion != 1 || r2.PriceVersion != 2 || r2.Charge-r1.Charge != 2_000_000 || r1.NodeOperatorPay["op:alice"] == 0 {
		t.Errorf("records priced %d (%d) and %d (%d)", r1.PriceVersion, r1.Charge, r2.PriceVersion, r2.Charge)
	}

	for _, tc := range []struct {
		edit  func(*accounting.PriceSet)
		field string
		msg   string
	}{
		{func(p *accounting.PriceSet) { p.Prices.CPUHour = -1 }, "prices", "cpu_hour: negative"},
		{func(p *accounting.PriceSet) { p.Prices.Split.Charity = 1 }, "prices", "split: basis points sum to 10001"},
		{func(p *accounting.PriceSet) { p.Prices.Currency = "" }, "prices", "currency: empty"},
		{func(p *accounting.PriceSet) { p.Beneficiaries.ClusterOperator = "" }, "beneficiaries", "cluster_operator: empty"},
		{func(p *accounting.PriceSet) { p.Beneficiaries.NodeOperators = map[string]string{"n1": ""} }, "beneficiaries.node_operators", "has no beneficiary"},
	} {
		x := p
		tc.edit(&x)
		res := set(x)
		wantErr(t, res, ErrInvalidCommand, tc.field)
		if err, _ := res.(error); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("error %v, want %q", res, tc.msg)
		}
	}
	if v := h.s.Snapshot().Prices().Prices.Version; v != 2 {
		t.Errorf("refused sets moved the version to %d", v)
	}

	// Records priced with the default keep it as version 1.
	h2 := newHarness(t)
	h2.end(h2.run(api.JobSpec{}, "n1"), api.JobCompleted)
	ps := p
	if got := h2.must(Command{Type: CmdSetPrices, Prices: &ps}).(*accounting.PriceSet); got.Prices.Version != 2 {
		t.Errorf("set after default-priced records: version %d", got.Prices.Version)
	}
	hist := h2.s.Snapshot().PriceHistory()
	if len(hist) != 2 || hist[0].SetBy != "default" || hist[0].Prices != accounting.DefaultPriceSet().Prices {
		t.Errorf("history %+v", hist)
	}
}

func TestSealEpoch(t *testing.T) {
	h := newHarness(t)
	for range 3 {
		h.end(h.run(api.JobSpec{}, "n1"), api.JobCompleted)
	}
	snap := h.s.Snapshot()
	var recs []accounting.UsageRecord
	for _, r := range snap.UnsealedRecords(0) {
		recs = append(recs, r.Record)
	}
	good, err := accounting.Seal(1, recs, time.Unix(0, h.now))
	if err != nil {
		t.Fatal(err)
	}
	seal := func(edit func(*accounting.Epoch)) any {
		e := good
		edit(&e)
		return h.do(Command{Type: CmdSealEpoch, Epoch: &e})
	}
	wantErr(t, seal(func(e *accounting.Epoch) { e.Number = 2 }), ErrConflict, "epoch.number")
	wantErr(t, seal(func(e *accounting.Epoch) { e.FirstSeq, e.LastSeq = 2, 4 }), ErrConflict, "epoch.first_seq")
	wantErr(t, seal(func(e *accounting.Epoch) { e.Root[0] ^= 1 }), ErrConflict, "epoch.root")
	wantErr(t, seal(func(e *accounting.Epoch) { e.Count, e.LastSeq = 4, 4 }), ErrConflict, "epoch.last_seq")
	wantErr(t, seal(func(e *accounting.Epoch) { e.Count = 0 }), ErrInvalidCommand, "epoch.count")
	wantErr(t, seal(func(e *accounting.Epoch) { e.LastSeq = 2 }), ErrInvalidCommand, "epoch.last_seq")
	// The root of the first two records is not accepted for all three.
	two, _ := accounting.Seal(1, recs[:2], time.Unix(0, h.now))
	wantErr(t, seal(func(e *accounting.Epoch) { e.Root = two.Root }), ErrConflict, "epoch.root")
	if h.s.Snapshot().LastEpoch() != nil {
		t.Fatal("a refused seal stored an epoch")
	}

	info := h.must(Command{Type: CmdSealEpoch, Epoch: &good}).(*accounting.EpochInfo)
	if info.Epoch.Root != good.Root || info.Commitment != good.Commitment() || info.Anchor != nil {
		t.Errorf("epoch %+v", info)
	}
	snap = h.s.Snapshot()
	for _, r := range snap.EpochRecords(1) {
		if r.Epoch != 1 {
			t.Errorf("record %d epoch %d", r.Record.Seq, r.Epoch)
		}
	}
	if len(snap.EpochRecords(1)) != 3 || snap.UnsealedCount() != 0 || len(snap.UnsealedRecords(0)) != 0 {
		t.Errorf("epoch 1 has %d records, %d unsealed", len(snap.EpochRecords(1)), snap.UnsealedCount())
	}
	// Sealing the same epoch again is refused; the next starts at seq 4.
	wantErr(t, h.do(Command{Type: CmdSealEpoch, Epoch: &good}), ErrConflict, "epoch.number")
	h.end(h.run(api.JobSpec{}, "n1"), api.JobCompleted)
	if e := h.seal(); e.Epoch.Number != 2 || e.Epoch.FirstSeq != 4 || e.Epoch.Count != 1 {
		t.Errorf("second epoch %+v", e.Epoch)
	}
	if d := accounting.VerifyChain([]accounting.Epoch{snap.Epoch(1).Epoch, h.s.Snapshot().Epoch(2).Epoch}); d != nil {
		t.Errorf("chain: %v", d)
	}
}

func TestEpochAnchored(t *testing.T) {
	h := newHarness(t)
	for range 3 {
		h.end(h.run(api.JobSpec{}, "n1"), api.JobCompleted)
		h.seal()
	}
	anchor := func(n uint64, tx string, block uint64) any {
		return h.do(Command{Type: CmdEpochAnchored, Anchored: &EpochAnchored{Number: n,
			Anchor: accounting.Anchor{ChainID: 1337, Contract: "0x00000000000000000000000000000000000000aa", TxHash: tx, BlockNumber: block}}})
	}
	wantErr(t, anchor(2, "0x02", 10), ErrConflict, "anchored.number")
	wantErr(t, anchor(4, "0x04", 10), ErrNotFound, "anchored.number")
	wantErr(t, anchor(1, "", 10), ErrInvalidCommand, "anchored.anchor.tx_hash")
	if e := anchor(1, "0x01", 10).(*accounting.EpochInfo); e.Anchor == nil || e.Anchor.TxHash != "0x01" || e.AnchoredAt.IsZero() {
		t.Fatalf("anchored %+v", e)
	}
	at := h.s.Snapshot().Epoch(1).AnchoredAt
	// Repeating it is harmless; another transaction is refused.
	if e := anchor(1, "0x01", 10).(*accounting.EpochInfo); !e.AnchoredAt.Equal(at) {
		t.Errorf("repeat moved anchored_at to %v", e.AnchoredAt)
	}
	wantErr(t, anchor(1, "0xff", 11), ErrConflict, "anchored.anchor")
	// A reorg moves the same transaction to another block.
	if e := anchor(1, "0x01", 12).(*accounting.EpochInfo); e.Anchor.BlockNumber != 12 {
		t.Errorf("reorg not followed: %+v", e.Anchor)
	}
	snap := h.s.Snapshot()
	if snap.AnchoredEpoch() != 1 || len(snap.UnanchoredEpochs()) != 2 || snap.UnanchoredEpochs()[0].Epoch.Number != 2 {
		t.Errorf("anchored %d, unanchored %d", snap.AnchoredEpoch(), len(snap.UnanchoredEpochs()))
	}
	wantErr(t, anchor(3, "0x03", 13), ErrConflict, "anchored.number")
	anchor(2, "0x02", 13)
	anchor(3, "0x03", 14)
	if snap := h.s.Snapshot(); snap.AnchoredEpoch() != 3 || len(snap.UnanchoredEpochs()) != 0 {
		t.Errorf("anchored %d", snap.AnchoredEpoch())
	}
	if es := h.s.Snapshot().Epochs(0, 2); len(es) != 2 || es[0].Epoch.Number != 2 || es[1].Epoch.Number != 3 {
		t.Errorf("latest two epochs %+v", es)
	}
	if es := h.s.Snapshot().Epochs(2, 0); len(es) != 2 || es[0].Epoch.Number != 2 {
		t.Errorf("epochs from 2: %+v", es)
	}
}

func TestSettlementOnlyMovesStatus(t *testing.T) {
	h := newHarness(t)
	for range 2 {
		h.end(h.run(api.JobSpec{}, "n1"), api.JobCompleted)
	}
	h.seal()
	before := h.records()
	set := func(status string, seqs ...uint64) any {
		return h.do(Command{Type: CmdSetSettlement, Settlement: &accounting.SettlementRequest{Seqs: seqs, Status: status}})
	}
	wantErr(t, set("paid", 1), ErrInvalidCommand, "status")
	wantErr(t, set("settled"), ErrInvalidCommand, "seqs")
	wantErr(t, set("settled", 1, 9), ErrNotFound, "seqs")
	if h.s.Snapshot().Record(1).Settlement != accounting.SettlementUnsettled {
		t.Fatal("a refused command moved a status")
	}
	if n := set("settled", 1, 1); n != uint64(1) {
		t.Errorf("settled %v records", n)
	}
	if n := set("settled", 1, 2); n != uint64(1) {
		t.Errorf("second settle changed %v", n)
	}
	after := h.records()
	for i := range after {
		b, a := before[i], after[i]
		if !reflect.DeepEqual(a.Record, b.Record) || a.Hash != b.Hash || a.Epoch != b.Epoch {
			t.Errorf("record %d changed beyond its status", i+1)
		}
		if a.Settlement != accounting.SettlementSettled || a.SettlementAt.IsZero() {
			t.Errorf("record %d: %q at %v", i+1, a.Settlement, a.SettlementAt)
		}
	}
}

func TestSetChain(t *testing.T) {
	h := newHarness(t)
	c := accounting.ChainInfo{RPCURL: "http://127.0.0.1:8545", ChainID: 1337, Contract: "0x00000000000000000000000000000000000000aA"}
	h.must(Command{Type: CmdSetChain, Chain: &c})
	if got := h.s.Snapshot().ChainConfig(); got != c {
		t.Errorf("chain %+v", got)
	}
	for _, tc := range []struct {
		c     accounting.ChainInfo
		field string
	}{
		{accounting.ChainInfo{}, "rpc_url"},
		{accounting.ChainInfo{RPCURL: "ftp://x"}, "rpc_url"},
		{accounting.ChainInfo{RPCURL: "http://x", Contract: "0x12"}, "contract"},
	} {
		wantErr(t, h.do(Command{Type: CmdSetChain, Chain: &tc.c}), ErrInvalidCommand, tc.field)
	}
}

func TestRecordQueries(t *testing.T) {
	h := newHarness(t)
	var ids []uint64
	for i, acct := range []string{"physics", "chem", "physics", "chem"} {
		id := h.submit(api.JobSpec{Account: acct}).JobID
		if i == 3 {
			h.must(Command{Type: CmdSubmitJob, Submit: &SubmitJob{Spec: api.JobSpec{}, User: "bob", UID: 1001, GID: 1001}})
		}
		h.plan(scheduler.Placement{JobID: id, Nodes: []string{"n1"}, CPUs: 1, MemoryMB: 100})
		h.end(id, api.JobCompleted)
		ids = append(ids, id)
	}
	bob := h.s.Snapshot().NextJobID() - 1
	h.plan(scheduler.Placement{JobID: bob, Nodes: []string{"n2"}, CPUs: 1, MemoryMB: 100})
	h.end(bob, api.JobCompleted)
	snap := h.s.Snapshot()
	seqs := func(q accounting.RecordQuery) []uint64 {
		var out []uint64
		for _, r := range snap.Records(q) {
			out = append(out, r.Record.Seq)
		}
		return out
	}
	t3 := snap.Record(3).Record.EndTime
	for name, tc := range map[string]struct {
		q    accounting.RecordQuery
		want []uint64
	}{
		"all":           {accounting.RecordQuery{}, []uint64{1, 2, 3, 4, 5}},
		"user":          {accounting.RecordQuery{User: "alice"}, []uint64{1, 2, 3, 4}},
		"other user":    {accounting.RecordQuery{User: "bob"}, []uint64{5}},
		"account":       {accounting.RecordQuery{Account: "chem"}, []uint64{2, 4}},
		"user+account":  {accounting.RecordQuery{User: "alice", Account: "physics", AfterSeq: 1}, []uint64{3}},
		"job":           {accounting.RecordQuery{JobID: ids[2]}, []uint64{3}},
		"after, limit":  {accounting.RecordQuery{AfterSeq: 1, Limit: 2}, []uint64{2, 3}},
		"from":          {accounting.RecordQuery{From: t3}, []uint64{3, 4, 5}},
		"to":            {accounting.RecordQuery{To: t3}, []uint64{1, 2}},
		"from-to limit": {accounting.RecordQuery{From: t3, To: t3.Add(time.Hour), Limit: 2, AfterSeq: 3}, []uint64{4, 5}},
		"user and time": {accounting.RecordQuery{User: "alice", From: t3}, []uint64{3, 4}},
	} {
		if got := seqs(tc.q); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: seqs %v, want %v", name, got, tc.want)
		}
	}
}

func TestAcctSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.end(h.run(api.JobSpec{Account: "physics"}, "n1"), api.JobCompleted)
	ps := accounting.DefaultPriceSet()
	ps.Prices.GPUHour = 1
	ps.Beneficiaries.ImagePublishers = map[string]string{"ghcr.io/acme/": "pub:acme"}
	h.must(Command{Type: CmdSetPrices, Prices: &ps})
	h.end(h.run(api.JobSpec{Image: "ghcr.io/acme/x@sha256:" + strings.Repeat("a", 64)}, "n1", "n2"), api.JobOutOfMemory)
	h.seal()
	h.end(h.run(api.JobSpec{}, "n2"), api.JobCompleted)
	h.must(Command{Type: CmdEpochAnchored, Anchored: &EpochAnchored{Number: 1, Anchor: accounting.Anchor{ChainID: 1, TxHash: "0xab", BlockNumber: 5}}})
	h.must(Command{Type: CmdSetSettlement, Settlement: &accounting.SettlementRequest{Seqs: []uint64{2}, Status: accounting.SettlementInvoiced}})
	h.must(Command{Type: CmdSetChain, Chain: &accounting.ChainInfo{RPCURL: "ws://chain:8546", ChainID: 1}})

	var a bytes.Buffer
	if _, err := h.s.Snapshot().WriteTo(&a); err != nil {
		t.Fatal(err)
	}
	s2 := NewStore()
	if err := s2.Restore(bytes.NewReader(a.Bytes())); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := s2.Snapshot().WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatalf("round trip differs:\n%s\n---\n%s", a.String(), b.String())
	}
	s1, r := h.s.Snapshot(), s2.Snapshot()
	if !reflect.DeepEqual(s1.Records(accounting.RecordQuery{}), r.Records(accounting.RecordQuery{})) ||
		!reflect.DeepEqual(s1.Epochs(0, 0), r.Epochs(0, 0)) || !reflect.DeepEqual(s1.PriceHistory(), r.PriceHistory()) ||
		s1.ChainConfig() != r.ChainConfig() || r.RecordCount() != 3 || r.AnchoredEpoch() != 1 || r.UnsealedCount() != 1 {
		t.Error("restored ledger differs")
	}
	for _, sr := range r.Records(accounting.RecordQuery{}) {
		if sr.Record.Hash() != [32]byte(sr.Hash) {
			t.Errorf("record %d no longer matches its hash after restore", sr.Record.Seq)
		}
	}
	// Both continue identically.
	h2 := &harness{t: t, s: s2, idx: h.idx, now: h.now}
	for _, x := range []*harness{h, h2} {
		x.end(x.run(api.JobSpec{}, "n1"), api.JobCompleted)
		x.seal()
	}
	if !reflect.DeepEqual(h.s.Snapshot().Epoch(2), s2.Snapshot().Epoch(2)) || s2.Snapshot().RecordCount() != 4 {
		t.Error("diverged after restore")
	}
}

// Every ledger command survives the log encoding intact.
func TestAcctCommandsThroughLog(t *testing.T) {
	ps := accounting.DefaultPriceSet()
	ps.Beneficiaries.NodeOperators = map[string]string{"n1": "op"}
	e := accounting.Epoch{Number: 3, FirstSeq: 7, LastSeq: 9, Count: 3, Root: [32]byte{1, 2}, SealedAt: time.Unix(5, 6).UTC()}
	for _, c := range []Command{
		{Type: CmdSetPrices, Prices: &ps},
		{Type: CmdSealEpoch, Epoch: &e},
		{Type: CmdEpochAnchored, Anchored: &EpochAnchored{Number: 3, Anchor: accounting.Anchor{ChainID: 5, Contract: "0xaa", TxHash: "0xbb", BlockNumber: 9}, AnchoredAt: time.Unix(7, 0).UTC()}},
		{Type: CmdSetSettlement, Settlement: &accounting.SettlementRequest{Seqs: []uint64{1, 2}, Status: "settled"}},
		{Type: CmdSetChain, Chain: &accounting.ChainInfo{RPCURL: "http://x", ChainID: 1, Contract: "0x"}},
	} {
		b, err := json.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		var got Command
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("command %d: %+v, want %+v", c.Type, got, c)
		}
	}
}
