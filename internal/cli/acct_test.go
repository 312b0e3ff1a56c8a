package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/accounting/chain"
	"github.com/stockade-hpc/stockade/api"
)

// Tests of the usage ledger commands (acct statement, prices, settle,
// proof, verify), sacct over usage records and the status lines.

const (
	testContract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
	testRPC      = "http://chain.test:8545"
)

func testTx(n int) string { return fmt.Sprintf("0x%064x", 0xa000+n) }

// fakeChain is a commitmentReader over a map of anchored epochs.
type fakeChain map[uint64]chainEntry

type chainEntry struct {
	commitment [32]byte
	anchor     accounting.Anchor
}

func (f fakeChain) CommitmentOf(_ context.Context, epoch uint64) ([32]byte, accounting.Anchor, error) {
	e, ok := f[epoch]
	if !ok {
		return [32]byte{}, accounting.Anchor{}, fmt.Errorf("%w: epoch %d", chain.ErrNotAnchored, epoch)
	}
	return e.commitment, e.anchor, nil
}

func (f fakeChain) anchor(d *accounting.EpochDetail, block uint64) {
	a := accounting.Anchor{ChainID: 1337, Contract: testContract, TxHash: testTx(int(d.Epoch.Number)), BlockNumber: block}
	f[d.Epoch.Number] = chainEntry{d.Epoch.Commitment(), a}
	d.Anchor = &a
}

// useFakeChain makes the verify command read ch, checking that it is
// asked at the test contract.
func useFakeChain(t *testing.T, ch fakeChain) *[]string {
	t.Helper()
	var dials []string
	old := dialCommitments
	dialCommitments = func(_ context.Context, rpcURL string, chainID uint64, contract string) (commitmentReader, func(), error) {
		dials = append(dials, fmt.Sprintf("%s %d %s", rpcURL, chainID, contract))
		if !strings.EqualFold(contract, testContract) {
			return nil, nil, fmt.Errorf("chain: %s does not hold the anchor contract (0 bytes of code)", contract)
		}
		return ch, func() {}, nil
	}
	t.Cleanup(func() { dialCommitments = old })
	return &dials
}

// ---- fixtures ----

// testPrices is the default price set with one mapped node operator.
func testPrices() accounting.PriceSet {
	ps := accounting.DefaultPriceSet()
	ps.Beneficiaries.NodeOperators = map[string]string{"gpu1": "op:alice"}
	ps.SetAt = ago(48 * time.Hour)
	return ps
}

// acctLedger is a small ledger over the fixture jobs: job 95 (known only
// from its record, ended yesterday), an earlier attempt of job 109, jobs
// 106, 107, 108, 110 and 109. Epoch 1 (seqs 1-3) is anchored, epoch 2
// (seqs 4-6) sealed but not anchored yet, seq 7 unsealed.
type acctLedger struct {
	recs   []accounting.StoredRecord
	epochs []accounting.EpochInfo
	chain  fakeChain
	info   accounting.ChainInfo
}

func newAcctLedger(t *testing.T) *acctLedger {
	t.Helper()
	jobs := map[uint64]api.Job{}
	for _, j := range fixtureJobs() {
		jobs[j.ID] = j
	}
	render := api.Job{ID: 95, ArrayTaskID: -1, User: "alice", UID: 1501, GID: 1501,
		Spec:  spec("render", "gpu-long-name", func(s *api.JobSpec) { s.GPUsPerNode = 2; s.Image = "ghcr.io/acme/render:2" }),
		State: api.JobCompleted, SubmitTime: ago(13 * time.Hour), StartTime: ago(12 * time.Hour), EndTime: ago(11 * time.Hour),
		Nodes: []string{"gpu1"}, AllocCPUs: 4, AllocGPUs: 2,
		Usage: api.Usage{CPUTimeNs: 7200e9, MaxMemoryB: 8 << 30, BlockReadB: 3 << 30, BlockWriteB: 1 << 30}}
	first := jobs[109]
	first.State, first.SubmitTime, first.StartTime, first.EndTime = api.JobNodeFail, ago(55*time.Minute), ago(50*time.Minute), ago(40*time.Minute)
	first.Nodes, first.Usage = []string{"node2"}, api.Usage{CPUTimeNs: 590e9, MaxMemoryB: 200 << 20}
	withUsage := func(j api.Job, u api.Usage) api.Job { j.Usage = u; return j }
	attempts := []api.Job{render, first, jobs[106], withUsage(jobs[107], api.Usage{CPUTimeNs: 1500e6, MaxMemoryB: 3 << 20}),
		withUsage(jobs[108], api.Usage{CPUTimeNs: 59e9, MaxMemoryB: 50 << 20}), jobs[110], withUsage(jobs[109], api.Usage{CPUTimeNs: 119e9})}
	ps := testPrices()
	l := &acctLedger{chain: fakeChain{}, info: accounting.ChainInfo{RPCURL: testRPC, ChainID: 1337, Contract: testContract}}
	for i := range attempts {
		r := accounting.NewRecord(&attempts[i], ps.Prices, ps.Beneficiaries)
		r.Seq = uint64(i + 1)
		sr := accounting.StoredRecord{Record: r, Hash: accounting.HexHash(r.Hash()), Settlement: accounting.SettlementUnsettled}
		l.recs = append(l.recs, sr)
	}
	l.recs[0].Settlement, l.recs[0].SettlementAt = accounting.SettlementSettled, ago(time.Hour)
	for n, span := range [][2]int{{0, 3}, {3, 6}} {
		var recs []accounting.UsageRecord
		for i := span[0]; i < span[1]; i++ {
			recs = append(recs, l.recs[i].Record)
			l.recs[i].Epoch = uint64(n + 1)
		}
		e, err := accounting.Seal(uint64(n+1), recs, ago(time.Duration(9-8*n)*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		l.epochs = append(l.epochs, accounting.EpochInfo{Epoch: e, Commitment: accounting.HexHash(e.Commitment())})
	}
	d := l.detail(1)
	l.chain.anchor(d, 57)
	l.epochs[0].Anchor, l.epochs[0].AnchoredAt = d.Anchor, ago(8*time.Minute)
	return l
}

// detail is epoch n with its records, as GET /v1/acct/epochs/{n} answers.
func (l *acctLedger) detail(n uint64) *accounting.EpochDetail {
	i := slices.IndexFunc(l.epochs, func(e accounting.EpochInfo) bool { return e.Epoch.Number == n })
	if i < 0 {
		return nil
	}
	d := &accounting.EpochDetail{EpochInfo: l.epochs[i], Chain: l.info}
	for _, r := range l.recs {
		if r.Epoch == n {
			d.Records = append(d.Records, r)
		}
	}
	return d
}

// proof is the proof the controllers give for seq (nil: not sealed or
// not anchored yet), built from the stored hashes as they are, so that a
// record altered in the store goes out altered.
func (l *acctLedger) proof(seq uint64) *accounting.Proof {
	sr := l.recs[seq-1]
	d := l.detail(sr.Epoch)
	if d == nil || d.Anchor == nil {
		return nil
	}
	_, hashes := d.Split()
	index := seq - d.Epoch.FirstSeq
	path, err := accounting.InclusionProof(hashes, index)
	if err != nil {
		panic(err)
	}
	return &accounting.Proof{Record: sr.Record, RecordHash: sr.Hash, Epoch: sr.Epoch, LeafIndex: index, TreeSize: d.Epoch.Count,
		Path: path, Root: d.Epoch.Root, Anchor: *d.Anchor}
}

// acctAPI serves the /v1/acct routes from a ledger and the rest from
// fakeAPI.
type acctAPI struct {
	base   *fakeAPI
	ledger *acctLedger
	admin  bool
	status api.Status

	mu     sync.Mutex
	reqs   []recorded
	prices accounting.PricesResponse
}

func (a *acctAPI) last(method, path string) *recorded {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.reqs) - 1; i >= 0; i-- {
		if a.reqs[i].method == method && a.reqs[i].path == path {
			return &a.reqs[i]
		}
	}
	return nil
}

func (a *acctAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/v1/acct/") && r.URL.Path != "/v1/status" {
		a.base.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.reqs = append(a.reqs, recorded{r.Method, r.URL.Path, r.URL.Query(), string(body)})
	a.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer tok" {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	fail := func(status int, msg string) {
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(api.Error{Error: msg})
	}
	reply := func(v any) { json.NewEncoder(w).Encode(v) }
	q := r.URL.Query()
	l := a.ledger
	switch {
	case r.Method == "GET" && r.URL.Path == "/v1/status":
		reply(a.status)
	case r.Method == "GET" && r.URL.Path == "/v1/acct/records":
		job, _ := strconv.ParseUint(q.Get("job"), 10, 64)
		after, _ := strconv.ParseUint(q.Get("after_seq"), 10, 64)
		limit, _ := strconv.Atoi(q.Get("limit"))
		from, _ := time.Parse(time.RFC3339Nano, q.Get("from"))
		resp := accounting.RecordsResponse{Records: []accounting.StoredRecord{}}
		for _, sr := range l.recs {
			rec := sr.Record
			if (q.Has("job") && rec.JobID != job) || (q.Has("user") && rec.User != q.Get("user")) ||
				(q.Has("account") && rec.Account != q.Get("account")) || rec.Seq <= after || rec.EndTime.Before(from) {
				continue
			}
			if limit > 0 && len(resp.Records) == limit {
				resp.NextAfterSeq = resp.Records[limit-1].Record.Seq
				break
			}
			resp.Records = append(resp.Records, sr)
		}
		reply(resp)
	case r.Method == "GET" && r.URL.Path == "/v1/acct/epochs":
		from, _ := strconv.ParseUint(q.Get("from"), 10, 64)
		resp := accounting.EpochsResponse{Epochs: []accounting.EpochInfo{}, Chain: l.info}
		for _, e := range l.epochs {
			if e.Epoch.Number >= from {
				resp.Epochs = append(resp.Epochs, e)
			}
		}
		if !q.Has("from") && len(resp.Epochs) > 1 {
			resp.Epochs = resp.Epochs[len(resp.Epochs)-1:] // limit=1, the newest
		}
		reply(resp)
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/acct/epochs/"):
		n, _ := strconv.ParseUint(strings.TrimPrefix(r.URL.Path, "/v1/acct/epochs/"), 10, 64)
		switch d := l.detail(n); {
		case !a.admin:
			fail(http.StatusForbidden, "permission denied: admin only")
		case d == nil:
			fail(http.StatusNotFound, fmt.Sprintf("epoch %d is not sealed", n))
		default:
			reply(d)
		}
	case r.Method == "GET" && r.URL.Path == "/v1/acct/proof":
		seq, _ := strconv.ParseUint(q.Get("seq"), 10, 64)
		if q.Has("job") {
			job, _ := strconv.ParseUint(q.Get("job"), 10, 64)
			for _, sr := range l.recs {
				if sr.Record.JobID == job {
					seq = sr.Record.Seq
				}
			}
		}
		if seq == 0 || seq > uint64(len(l.recs)) {
			fail(http.StatusNotFound, "job: no usage record")
			return
		}
		p := l.proof(seq)
		if p == nil {
			fail(http.StatusConflict, fmt.Sprintf("record %d is not sealed or its epoch not anchored yet; retry later", seq))
			return
		}
		reply(p)
	case r.URL.Path == "/v1/acct/prices":
		a.mu.Lock()
		defer a.mu.Unlock()
		if r.Method == "POST" {
			var req accounting.SetPricesRequest
			json.Unmarshal(body, &req)
			ps := a.prices.Current
			if req.Prices != nil {
				ps.Prices = *req.Prices
			}
			if req.Beneficiaries != nil {
				ps.Beneficiaries = *req.Beneficiaries
			}
			ps.Prices.Version++
			ps.SetBy, ps.SetAt = "root", fixNow
			a.prices.Current, a.prices.History = ps, append(a.prices.History, ps)
		}
		reply(a.prices)
	case r.Method == "GET" && r.URL.Path == "/v1/acct/statement":
		f := accounting.StatementFilter{Account: q.Get("account"), User: q.Get("user"), Beneficiary: q.Get("beneficiary")}
		f.From, _ = time.Parse(time.RFC3339Nano, q.Get("from"))
		f.To, _ = time.Parse(time.RFC3339Nano, q.Get("to"))
		var recs []accounting.UsageRecord
		for _, sr := range l.recs {
			recs = append(recs, sr.Record)
		}
		lines, err := accounting.Statement(recs, f, accounting.Period(q.Get("period")))
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		reply(accounting.StatementResponse{Lines: orEmpty(lines)})
	case r.Method == "POST" && r.URL.Path == "/v1/acct/settlement":
		var req accounting.SettlementRequest
		json.Unmarshal(body, &req)
		var n uint64
		for _, s := range req.Seqs {
			if s <= uint64(len(l.recs)) && l.recs[s-1].Settlement != req.Status {
				n++
			}
		}
		reply(accounting.SettlementResponse{Updated: n})
	default:
		http.NotFound(w, r)
	}
}

// acctEnv is testEnv talking to an acctAPI over the ledger.
func acctEnv(t *testing.T, l *acctLedger, admin bool, files map[string]string) (*env, *acctAPI, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	base := &fakeAPI{failures: map[string]api.HTTPError{}}
	a := &acctAPI{base: base, ledger: l, admin: admin, prices: accounting.PricesResponse{Current: testPrices(), History: []accounting.PriceSet{testPrices()}},
		status: api.Status{Leader: "c1", AcctRecords: 7, AcctUnsealedRecords: 1, AcctLastSealedEpoch: 2, AcctLastAnchoredEpoch: 1, AcctUnanchoredEpochs: 1}}
	e, stdout, stderr := testEnv(t, base, nil, files)
	srv := httptest.NewUnstartedServer(a)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tlsConf := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tlsConf.MinVersion = tls.VersionTLS13
	addr := strings.TrimPrefix(srv.URL, "https://")
	e.client = func() (*api.Client, error) { return api.NewClient([]string{addr}, "tok", tlsConf), nil }
	return e, a, stdout, stderr
}

// ---- sacct over usage records ----

func TestSacctRecordsGolden(t *testing.T) {
	l := newAcctLedger(t)
	c := testCtx()
	keep := func(j *api.Job) bool { return true }
	listed := map[uint64]bool{}
	for _, j := range fixtureJobs() {
		listed[j.ID] = true
	}
	usage := "JobID,JobName,State,Elapsed,TotalCPU,MaxRSS,CPUTimeRAW,AveDiskRead,AveDiskWrite,Charge,Currency,PriceVersion,Epoch,RecordSeq,Settlement"
	cases := []struct {
		name        string
		fields      string
		duplicates  bool
		allocations bool
		out         sacctOutput
	}{
		{name: "sacct_records", fields: usage},
		{name: "sacct_records_duplicates", fields: usage, duplicates: true, allocations: true},
		{name: "sacct_records_parsable", fields: "JobID,State,Charge,Currency,Epoch,RecordSeq,RecordHash,Settlement",
			allocations: true, out: sacctOutput{parsable: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fields, err := parseSacctFields(tc.fields)
			if err != nil {
				t.Fatal(err)
			}
			items := mergeUsage(fixtureJobs(), listed, l.recs, keep, tc.duplicates)
			golden(t, tc.name, renderSacct(c, fields, acctRowsItems(items, nil, tc.allocations), tc.out))
		})
	}
	t.Run("json", func(t *testing.T) {
		jobs := fixtureJobs()
		items := mergeUsage([]api.Job{jobs[5]}, listed, l.recs[:3], keep, false)
		b, err := sacctJSONItems(c, items, nil, true)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, "sacct_records_json", string(b))
	})
}

// Without records, the merged listing is exactly the old one.
func TestSacctWithoutRecordsUnchanged(t *testing.T) {
	jobs := fixtureJobs()
	sortAcct(jobs)
	fields, err := parseSacctFields(sacctLongFields)
	if err != nil {
		t.Fatal(err)
	}
	items := mergeUsage(fixtureJobs(), nil, nil, func(*api.Job) bool { return true }, true)
	c := testCtx()
	if a, b := renderSacct(c, fields, acctRows(jobs, false), sacctOutput{}), renderSacct(c, fields, acctRowsItems(items, nil, false), sacctOutput{}); a != b {
		t.Errorf("rows differ:\n%s\nvs\n%s", a, b)
	}
}

// A record is the source of truth for usage: it overrides the live job's.
func TestSacctRecordOverridesUsage(t *testing.T) {
	l := newAcctLedger(t)
	jobs := fixtureJobs()
	j := jobs[5] // 106
	j.Usage.CPUTimeNs = 1
	items := mergeUsage([]api.Job{j}, map[uint64]bool{106: true}, l.recs[2:3], func(*api.Job) bool { return true }, false)
	if len(items) != 1 || items[0].rec == nil || items[0].rec.Record.Seq != 3 {
		t.Fatalf("items %+v", items)
	}
	if got := items[0].job.Usage.CPUTimeNs; got != l.recs[2].Record.CPUMillis*1e6 {
		t.Errorf("cpu %d, want the record's", got)
	}
}

func TestSacctCommandReadsRecords(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		stdout string
		check  func(t *testing.T, a *acctAPI)
	}{
		{
			name: "window with a job known only from its record",
			args: []string{"sacct", "-S", "2026-11-20", "-X", "-n", "-P", "-o", "JobID,State,TotalCPU,Charge,Epoch,RecordSeq", "-s", "CD,F,CA,TO,OOM,NF"},
			stdout: "95|COMPLETED|02:00:00|42.80|1|1\n106|COMPLETED|00:05.012|0.001392|1|3\n107|FAILED|00:01.500|0.000417|2|4\n" +
				"108|CANCELLED by 1501|00:00:59|0.01647|2|5\n109|TIMEOUT|00:01:59|0.033056||7\n110|OUT_OF_MEMORY|00:00:00|0.00|2|6\n",
			check: func(t *testing.T, a *acctAPI) {
				q := a.last("GET", "/v1/acct/records").query
				if q.Get("from") != "2026-11-20T00:00:00Z" || q.Has("to") || q.Get("limit") != "10000" {
					t.Errorf("records query %v", q)
				}
			},
		},
		{
			name:   "-D shows the earlier attempt",
			args:   []string{"sacct", "-D", "-j", "109", "-X", "-n", "-P", "-o", "JobID,State,NodeList,RecordSeq"},
			stdout: "109|NODE_FAIL|node2|2\n109|TIMEOUT|node1|7\n",
			check: func(t *testing.T, a *acctAPI) {
				if q := a.last("GET", "/v1/acct/records").query; q.Get("job") != "109" {
					t.Errorf("records query %v", q)
				}
			},
		},
		{
			name:   "a named job known only from its record",
			args:   []string{"sacct", "-j", "95", "-X", "-n", "-P", "-o", "JobID,User,Account,Partition,NodeList,AllocTRES,Charge,Currency"},
			stdout: "95|alice|research|gpu-long-name|gpu1|billing=1,cpu=1,gres/gpu=2,node=1|42.80|credit\n",
		},
		{
			name:   "today's default window",
			args:   []string{"sacct", "-n", "-X", "-P", "-o", "JobID,RecordSeq", "-u", "alice"},
			stdout: "101|\n103_1|\n103_2|\n105|\n106|3\n107|4\n108|5\n109|7\n110|6\n",
			check: func(t *testing.T, a *acctAPI) {
				q := a.last("GET", "/v1/acct/records").query
				if q.Get("user") != "alice" || q.Get("from") != "2026-11-21T00:00:00Z" {
					t.Errorf("records query %v", q)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, a, stdout, stderr := acctEnv(t, newAcctLedger(t), true, nil)
			if code := run(context.Background(), e, tc.args); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if stdout.String() != tc.stdout {
				t.Errorf("stdout\n%s\nwant\n%s", stdout, tc.stdout)
			}
			if tc.check != nil {
				tc.check(t, a)
			}
		})
	}
}

// ---- statement, prices, settlement ----

func TestStatementGolden(t *testing.T) {
	l := newAcctLedger(t)
	var recs []accounting.UsageRecord
	for _, sr := range l.recs {
		recs = append(recs, sr.Record)
	}
	for _, tc := range []struct {
		name        string
		period      accounting.Period
		beneficiary string
	}{
		{"acct_statement_day", accounting.PeriodDay, ""},
		{"acct_statement_month", accounting.PeriodMonth, ""},
		{"acct_statement_beneficiary", accounting.PeriodWeek, "op:alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines, err := accounting.Statement(recs, accounting.StatementFilter{Beneficiary: tc.beneficiary}, tc.period)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, formatStatement(lines, statementTotals(lines, tc.beneficiary), tc.period, tc.beneficiary))
		})
	}
}

func TestAcctCommands(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		golden string
		stderr string
		check  func(t *testing.T, a *acctAPI, stdout string)
	}{
		{
			name: "statement", args: []string{"stockade", "acct", "statement", "--period", "day", "--from", "2026-11-20", "--to", "now"},
			golden: "cmd_acct_statement",
			check: func(t *testing.T, a *acctAPI, _ string) {
				q := a.last("GET", "/v1/acct/statement").query
				if q.Get("period") != "day" || q.Get("from") != "2026-11-20T00:00:00Z" || q.Get("to") != "2026-11-21T10:00:00Z" {
					t.Errorf("query %v", q)
				}
			},
		},
		{
			name: "statement json", args: []string{"stockade", "acct", "statement", "--account", "research", "--json"},
			check: func(t *testing.T, a *acctAPI, out string) {
				var v struct{ Lines, Totals []accounting.StatementLine }
				if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Lines) != 1 || len(v.Totals) != 1 || v.Totals[0].Records != 7 {
					t.Errorf("json %v %s", err, out)
				}
				if q := a.last("GET", "/v1/acct/statement").query; q.Get("account") != "research" || q.Get("period") != "month" {
					t.Errorf("query %v", q)
				}
			},
		},
		{name: "statement bad period", args: []string{"stockade", "acct", "statement", "--period", "year"}, code: 1,
			stderr: "stockade: error: --period: \"year\" is not day, week, month or all\n"},
		{name: "statement bad date", args: []string{"stockade", "acct", "statement", "--from", "someday"}, code: 1,
			stderr: "stockade: error: --from: invalid time specification: someday\n"},
		{name: "statement empty window", args: []string{"stockade", "acct", "statement", "--from", "2026-11-21", "--to", "2026-11-20"}, code: 1,
			stderr: "stockade: error: --to: 2026-11-20T00:00:00Z is not after --from 2026-11-21T00:00:00Z\n"},
		{name: "prices", args: []string{"stockade", "acct", "prices"}, golden: "cmd_acct_prices"},
		{
			name: "prices set", args: []string{"stockade", "acct", "prices", "--set", "cpu-hour=1.5", "mem-gb-hour=0.1", "gpu-hour=20",
				"split=node:70,cluster:25,image:2.5,charity:2.5", "currency=credit", "charity=care", "node-operator=node1=op:bob"},
			stderr: "Price version 2 set.\n",
			check: func(t *testing.T, a *acctAPI, out string) {
				var req accounting.SetPricesRequest
				if err := json.Unmarshal([]byte(a.last("POST", "/v1/acct/prices").body), &req); err != nil || req.Prices == nil || req.Beneficiaries == nil {
					t.Fatalf("request %v %+v", err, req)
				}
				p := *req.Prices
				if p.CPUHour != 1_500_000 || p.MemGBHour != 100_000 || p.GPUHour != 20_000_000 || p.Currency != "credit" ||
					p.Split != (accounting.Split{NodeOperator: 7000, ClusterOperator: 2500, ImagePublisher: 250, Charity: 250}) {
					t.Errorf("prices %+v", p)
				}
				b := *req.Beneficiaries
				if b.Charity != "care" || b.NodeOperators["node1"] != "op:bob" || b.NodeOperators["gpu1"] != "op:alice" {
					t.Errorf("beneficiaries %+v", b)
				}
				if !strings.Contains(out, "Price version:     2 (set 2026-11-21T10:00:00 by root)") || !strings.Contains(out, "CPU-hour:          1.50") {
					t.Errorf("stdout %s", out)
				}
			},
		},
		{name: "prices set bad amount", args: []string{"stockade", "acct", "prices", "--set", "gpu-hour=-3"}, code: 1,
			stderr: "stockade: error: --set gpu-hour: \"-3\": not a non-negative number (an amount in units of the currency)\n"},
		{name: "prices set too precise", args: []string{"stockade", "acct", "prices", "--set", "cpu-hour=0.0000001"}, code: 1,
			stderr: "stockade: error: --set cpu-hour: \"0.0000001\": more than 6 decimals (an amount in units of the currency)\n"},
		{name: "prices set bad split", args: []string{"stockade", "acct", "prices", "--set", "split=node:70,cluster:25"}, code: 1,
			stderr: "stockade: error: --set split: shares sum to 95%, want 100%\n"},
		{name: "prices set unknown key", args: []string{"stockade", "acct", "prices", "--set", "disk-hour=1"}, code: 1,
			stderr: "stockade: error: --set: unknown key \"disk-hour\" (want currency, cpu-hour, mem-gb-hour, gpu-hour, split, cluster-operator, charity, node-operator or image-publisher)\n"},
		{name: "prices set nothing", args: []string{"stockade", "acct", "prices", "--set"}, code: 1,
			stderr: "stockade: error: --set: give at least one KEY=VALUE\n"},
		{name: "prices history", args: []string{"stockade", "acct", "prices", "--history"},
			stdout: "VERSION  SET                  BY       CURRENCY  CPU-HOUR  MEM-GB-HOUR  GPU-HOUR  SPLIT(NODE/CLUSTER/IMAGE/CHARITY)\n" +
				"      1  2026-11-19T10:00:00  default  credit        1.00         0.10     20.00  70%/25%/5%/0%\n"},
		{
			name: "settle", args: []string{"stockade", "acct", "settle", "--seq", "1-3,5,2", "--status", "settled"},
			stdout: "3 records marked settled (1 already were)\n",
			check: func(t *testing.T, a *acctAPI, _ string) {
				var req accounting.SettlementRequest
				json.Unmarshal([]byte(a.last("POST", "/v1/acct/settlement").body), &req)
				if !slices.Equal(req.Seqs, []uint64{1, 2, 3, 5}) || req.Status != "settled" {
					t.Errorf("request %+v", req)
				}
			},
		},
		{name: "settle bad status", args: []string{"stockade", "acct", "settle", "--seq", "1", "--status", "paid"}, code: 1,
			stderr: "stockade: error: --status: \"paid\" is not unsettled, invoiced, settled, disputed or waived\n"},
		{name: "settle bad range", args: []string{"stockade", "acct", "settle", "--seq", "5-3", "--status", "settled"}, code: 1,
			stderr: "stockade: error: --seq: \"5-3\" is not a seq or a range N-M (seqs start at 1)\n"},
		{name: "settle without seq", args: []string{"stockade", "acct", "settle", "--status", "settled"}, code: 1,
			stderr: "stockade: error: required flag(s) \"seq\" not set\n"},
		{
			name: "proof", args: []string{"stockade", "acct", "proof", "--job", "106"},
			check: func(t *testing.T, a *acctAPI, out string) {
				var p accounting.Proof
				if err := json.Unmarshal([]byte(out), &p); err != nil {
					t.Fatal(err)
				}
				if p.Record.JobID != 106 || p.Anchor.TxHash != testTx(1) || accounting.VerifyProof(p, p.Commitment()) != nil {
					t.Errorf("proof %+v", p)
				}
			},
		},
		{name: "proof not anchored yet", args: []string{"stockade", "acct", "proof", "--seq", "5"}, code: 2,
			stderr: "stockade: error: record 5 is not sealed or its epoch not anchored yet; retry later\n"},
		{name: "proof bad job", args: []string{"stockade", "acct", "proof", "--job", "12x"}, code: 1,
			stderr: "stockade: error: --job: \"12x\" is not a job id (123 or 123_4)\n"},
		{name: "unknown acct command", args: []string{"stockade", "acct", "bill"}, code: 1,
			stderr: "stockade: error: unknown command \"bill\" for \"stockade acct\"\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, a, stdout, stderr := acctEnv(t, newAcctLedger(t), true, nil)
			code := run(context.Background(), e, tc.args)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			switch {
			case tc.golden != "":
				golden(t, tc.golden, stdout.String())
			case tc.stdout != "":
				if stdout.String() != tc.stdout {
					t.Errorf("stdout\n%s\nwant\n%s", stdout, tc.stdout)
				}
			}
			if stderr.String() != tc.stderr {
				t.Errorf("stderr %q, want %q", stderr, tc.stderr)
			}
			if tc.check != nil {
				tc.check(t, a, stdout.String())
			}
		})
	}
}

func TestParseDecimalAndMoney(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  bool
	}{{"1.5", 1_500_000, false}, {"0", 0, false}, {"20", 20_000_000, false}, {"0.000001", 1, false},
		{"1e3", 0, true}, {"", 0, true}, {".5", 0, true}, {"-1", 0, true}, {"9223372036854.775807", 9223372036854775807, false}, {"9223372036854.775808", 0, true}} {
		got, err := parseDecimal(tc.in, 6)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseDecimal(%q) = %d, %v", tc.in, got, err)
		}
	}
	for v, want := range map[int64]string{0: "0.00", 1_500_000: "1.50", 125: "0.000125", -2_000_000: "-2.00", 123_456_789: "123.456789"} {
		if got := formatMicro(v); got != want {
			t.Errorf("formatMicro(%d) = %q, want %q", v, got, want)
		}
	}
}

// ---- verification ----

// ledgerRecord is a priced record of a finished one-node job.
func ledgerRecord(seq uint64) accounting.UsageRecord {
	start := fixNow.Add(-time.Duration(100-seq) * time.Minute)
	j := api.Job{ID: 1000 + seq, ArrayTaskID: -1, User: "alice", Spec: api.JobSpec{Account: "research", Partition: "batch"},
		State: api.JobCompleted, SubmitTime: start.Add(-time.Minute), StartTime: start, EndTime: start.Add(10 * time.Minute),
		Nodes: []string{"node1"}, Usage: api.Usage{CPUTimeNs: seq * 60e9, MaxMemoryB: 1 << 30}}
	ps := accounting.DefaultPriceSet()
	r := accounting.NewRecord(&j, ps.Prices, ps.Beneficiaries)
	r.Seq = seq
	return r
}

// sealedEpoch is epoch number holding recs, as the controllers store it.
func sealedEpoch(t *testing.T, number uint64, recs []accounting.UsageRecord) *accounting.EpochDetail {
	t.Helper()
	e, err := accounting.Seal(number, recs, fixNow)
	if err != nil {
		t.Fatal(err)
	}
	d := &accounting.EpochDetail{EpochInfo: accounting.EpochInfo{Epoch: e, Commitment: accounting.HexHash(e.Commitment())}}
	for _, r := range recs {
		d.Records = append(d.Records, accounting.StoredRecord{Record: r, Hash: accounting.HexHash(r.Hash()), Epoch: number, Settlement: "unsettled"})
	}
	return d
}

func testVerifier(out io.Writer, ch fakeChain, earlier ...accounting.Proof) *verifier {
	return &verifier{out: out, rpc: testRPC, fallback: testContract, earlier: earlier,
		readers: map[string]commitmentReader{strings.ToLower(testContract): ch}}
}

func TestVerifyEpoch(t *testing.T) {
	var recs []accounting.UsageRecord
	for s := uint64(21); s <= 28; s++ {
		recs = append(recs, ledgerRecord(s))
	}
	// An earlier proof of seq 23, exported while the epoch was intact.
	orig := sealedEpoch(t, 3, recs)
	_, hashes := orig.Split()
	earlier, err := accounting.NewTree(hashes).Proof(orig.Epoch, recs[2])
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		mutate   func(d *accounting.EpochDetail)
		unanchor bool // the chain holds nothing for the epoch
		earlier  []accounting.Proof
		want     string // "OK", "not anchored yet" or "FAILED"
		lines    []string
	}{
		{name: "intact", want: "OK", lines: []string{"epoch 3: 8 records, root " + accounting.HashHex(orig.Epoch.Root) +
			", anchored in block 57 tx " + testTx(3) + " : OK"}},
		{name: "one field tampered", want: "FAILED", mutate: func(d *accounting.EpochDetail) { d.Records[2].Record.Charge += 500 },
			lines: []string{"epoch 3: record-tampered: seq 23 (job 1023): fields do not match the stored hash", "record.payouts: sum to"}},
		{name: "one field tampered, with an earlier proof", want: "FAILED", earlier: []accounting.Proof{earlier},
			mutate: func(d *accounting.EpochDetail) { d.Records[2].Record.User = "mallory" },
			lines:  []string{"record-tampered: seq 23 (job 1023)", `changed since the earlier proof: user "alice" → "mallory"`}},
		{name: "record and hash tampered", want: "FAILED", mutate: func(d *accounting.EpochDetail) {
			r := &d.Records[2].Record
			r.Charge -= 100 // the payouts no longer add up
			d.Records[2].Hash = accounting.HexHash(r.Hash())
		}, lines: []string{"epoch 3: root-mismatch: the records do not produce the anchored root",
			"epoch 3: suspect: seq 23 (job 1023): record.payouts"}},
		{name: "record and hash tampered, with an earlier proof", want: "FAILED", earlier: []accounting.Proof{earlier},
			mutate: func(d *accounting.EpochDetail) {
				ps := accounting.DefaultPriceSet()
				r := &d.Records[2].Record
				r.CPUMillis /= 2
				*r = accounting.Price(*r, ps.Prices, ps.Beneficiaries) // consistent: no field hints
				d.Records[2].Hash = accounting.HexHash(r.Hash())
			}, lines: []string{"epoch 3: record-changed: seq 23 (job 1023) differs from the proof exported for leaf 2",
				"changed since the earlier proof: charge 400000 → 208333, cluster_operator_pay 120000 → 62500, cpu_millis 1380000 → 690000, " +
					`node_operator_pay {"node:node1":280000} → {"node:node1":145833}`}},
		{name: "dropped record", want: "FAILED", mutate: func(d *accounting.EpochDetail) { d.Records = slices.Delete(d.Records, 4, 5) },
			lines: []string{"epoch 3: missing-record: seq 25 missing: dropped"}},
		{name: "reordered", want: "FAILED", mutate: func(d *accounting.EpochDetail) { d.Records[1], d.Records[2] = d.Records[2], d.Records[1] },
			lines: []string{"epoch 3: out-of-order: seq 23 (job 1023) is at position 1, where seq 22 belongs: reordered"}},
		{name: "replaced epoch", want: "FAILED", mutate: func(d *accounting.EpochDetail) {
			forged := slices.Clone(recs)
			forged[5].Charge, forged[5].ClusterOperatorPay = 0, 0
			forged[5].NodeOperatorPay = map[string]int64{"node:node1": 0}
			*d = *sealedEpoch(t, 3, forged)
			d.Anchor = orig.Anchor
		}, lines: []string{"epoch 3: epoch-replaced: stored header", "the epoch was replaced"}},
		{name: "not anchored yet", unanchor: true, want: "not anchored yet", mutate: func(d *accounting.EpochDetail) { d.Anchor = nil },
			lines: []string{"epoch 3: 8 records, root " + accounting.HashHex(orig.Epoch.Root) + " : not anchored yet"}},
		{name: "tampered before anchoring", unanchor: true, want: "FAILED", mutate: func(d *accounting.EpochDetail) {
			d.Anchor = nil
			d.Records[0].Record.Account = "other"
		}, lines: []string{"record-tampered: seq 21 (job 1021)"}},
		{name: "anchor the chain does not have", unanchor: true, want: "FAILED",
			lines: []string{"epoch 3: anchor: the controllers record it anchored in block 57 tx " + testTx(3) + ", but contract " + testContract + " holds no anchor for it"}},
		{name: "anchored in another transaction", want: "FAILED", mutate: func(d *accounting.EpochDetail) {
			a := *d.Anchor
			a.TxHash = testTx(99)
			d.Anchor = &a
		}, lines: []string{"epoch 3: anchor: the controllers record tx " + testTx(99) + ", but the chain's anchor is in tx " + testTx(3)}},
		{name: "stored commitment altered", want: "FAILED", mutate: func(d *accounting.EpochDetail) { d.Commitment[0] ^= 1 },
			lines: []string{"epoch 3: commitment: the stored commitment"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := sealedEpoch(t, 3, recs)
			ch := fakeChain{}
			ch.anchor(d, 57)
			if tc.unanchor {
				delete(ch, 3)
			}
			if tc.mutate != nil {
				tc.mutate(d)
			}
			var out bytes.Buffer
			v := testVerifier(&out, ch, tc.earlier...)
			if err := v.checkEpoch(context.Background(), d, nil); err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(out.String(), "\n")
			if !strings.HasSuffix(first, ": "+tc.want) && !strings.Contains(first, ": "+tc.want+" (") {
				t.Errorf("verdict line %q, want %s", first, tc.want)
			}
			for _, l := range tc.lines {
				if !strings.Contains(out.String(), l) {
					t.Errorf("output lacks %q:\n%s", l, out.String())
				}
			}
			wantCode := map[string]error{"OK": nil, "not anchored yet": exitCode(2), "FAILED": errReported}[tc.want]
			if got := v.result(); got != wantCode {
				t.Errorf("result %v, want %v", got, wantCode)
			}
			if tc.want == "FAILED" {
				for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
					if !strings.HasPrefix(l, "epoch 3: ") {
						t.Errorf("problem line %q does not name the epoch", l)
					}
				}
			}
		})
	}
}

func TestVerifyCommand(t *testing.T) {
	cases := []struct {
		name   string
		args   []string
		admin  bool
		mutate func(l *acctLedger)
		code   int
		stdout []string // lines, in order
		stderr string
	}{
		{name: "job", args: []string{"stockade", "acct", "verify", "--job", "106"}, stdout: []string{
			"job 106 (seq 3) in epoch 1: charge 0.001392 credit, record hash 0x", "anchored in block 57 tx " + testTx(1) + " : OK"}},
		{name: "job in an unanchored epoch", args: []string{"stockade", "acct", "verify", "--job", "107"}, code: 2,
			stdout: []string{"job 107 (seq 4) in epoch 2: sealed : not anchored yet"}},
		{name: "job with an unsealed and an anchored record", args: []string{"stockade", "acct", "verify", "--job", "109"}, code: 2,
			stdout: []string{"job 109 (seq 2) in epoch 1: charge", ": OK", "job 109 (seq 7): not sealed into an epoch yet : not anchored yet"}},
		{name: "job whose record the controllers altered", args: []string{"stockade", "acct", "verify", "--job", "95"}, code: 1,
			mutate: func(l *acctLedger) { l.recs[0].Record.Charge = 1 },
			stdout: []string{"job 95 (seq 1) in epoch 1 : FAILED", "job 95 (seq 1): record: its fields hash to", "job 95 (seq 1): record.payouts: sum to"}},
		{name: "job without records", args: []string{"stockade", "acct", "verify", "--job", "101"}, code: 1,
			stderr: "stockade: error: --job: job 101 has no usage record (it has not ended, or never ran)\n"},
		{name: "epoch", admin: true, args: []string{"stockade", "acct", "verify", "--epoch", "1"},
			stdout: []string{"epoch 1: 3 records, root 0x", "anchored in block 57 tx " + testTx(1) + " : OK"}},
		{name: "epoch as a user", args: []string{"stockade", "acct", "verify", "--epoch", "1"}, code: 1,
			stderr: "stockade: error: --epoch: permission denied: epochs hold every user's records, so only admins check them; check your own jobs with --job ID\n"},
		{name: "all", admin: true, args: []string{"stockade", "acct", "verify", "--all"}, code: 2, stdout: []string{
			"epoch 1: 3 records", ": OK", "epoch 2: 3 records", " : not anchored yet", "1 record not sealed yet",
			"2 epochs checked: 1 OK, 1 not anchored yet, 0 FAILED"}},
		{name: "all with a dropped epoch", admin: true, args: []string{"stockade", "acct", "verify", "--all"}, code: 1,
			mutate: func(l *acctLedger) { l.epochs = l.epochs[1:] },
			stdout: []string{"epoch 2: 3 records", ": FAILED (1 problem)",
				"epoch 2: missing-record: the first epoch is number 2 from seq 4, not epoch 1 from seq 1: epochs missing",
				"1 epoch checked: 0 OK, 0 not anchored yet, 1 FAILED"}},
		{name: "no mode", args: []string{"stockade", "acct", "verify"}, code: 1,
			stderr: "stockade: error: --job: give one of --job ID, --epoch N, --all or --proof FILE\n"},
		{name: "two modes", args: []string{"stockade", "acct", "verify", "--all", "--epoch", "2"}, code: 1,
			stderr: "stockade: error: --job: give one of --job ID, --epoch N, --all or --proof FILE\n"},
		{name: "bad contract", args: []string{"stockade", "acct", "verify", "--all", "--contract", "0x12"}, code: 1,
			stderr: "stockade: error: --contract: \"0x12\" is not an address (0x and 40 hex digits)\n"},
		{name: "bad rpc", args: []string{"stockade", "acct", "verify", "--all", "--rpc", "chain.test"}, code: 1,
			stderr: "stockade: error: --rpc: \"chain.test\" is not an http, https, ws or wss URL\n"},
		{name: "proof needs rpc", args: []string{"stockade", "acct", "verify", "--proof", "p.json"}, code: 1,
			stderr: "stockade: error: --rpc: required with --proof: the chain's JSON-RPC URL (the cluster is not contacted)\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newAcctLedger(t)
			dials := useFakeChain(t, l.chain)
			if tc.mutate != nil {
				tc.mutate(l)
			}
			e, _, stdout, stderr := acctEnv(t, l, tc.admin, nil)
			code := run(context.Background(), e, tc.args)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q, stdout %q)", code, tc.code, stderr, stdout)
			}
			if stderr.String() != tc.stderr {
				t.Errorf("stderr %q, want %q", stderr, tc.stderr)
			}
			rest := stdout.String()
			for _, want := range tc.stdout {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Errorf("stdout lacks %q (in order):\n%s", want, stdout)
					break
				}
				rest = rest[i+len(want):]
			}
			for _, d := range *dials {
				if d != testRPC+" 1337 "+testContract {
					t.Errorf("dialled %q, want the controllers' chain", d)
				}
			}
		})
	}
}

// A proof file round trip: written by acct proof, checked by acct verify
// --proof against the chain alone; any field changed fails, named.
func TestVerifyProofFile(t *testing.T) {
	l := newAcctLedger(t)
	e, _, stdout, _ := acctEnv(t, l, false, nil)
	if code := run(context.Background(), e, []string{"stockade", "acct", "proof", "--job", "95"}); code != 0 {
		t.Fatalf("acct proof: exit %d", code)
	}
	proofJSON := stdout.String()

	edit := func(f func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(proofJSON), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	record := func(m map[string]any) map[string]any { return m["record"].(map[string]any) }
	cases := []struct {
		name  string
		proof string
		args  []string
		code  int
		want  []string
	}{
		{name: "round trip", proof: proofJSON, want: []string{
			"proof OK: the usage record of job 95 is in epoch 1 as anchored on chain 1337\n",
			"  job:         95 (job id 95, seq 1)\n", "  user:        alice\n", "  account:     research\n",
			"  charge:      42.80 credit (price version 1)\n", "  epoch:       1 (leaf 0 of 3, first seq 1)\n",
			"  anchored:    block 57, tx " + testTx(1) + "\n", "  contract:    " + testContract + " on chain 1337\n"}},
		{name: "charge changed", code: 1, proof: edit(func(m map[string]any) { record(m)["charge"] = 1 }),
			want: []string{"proof FAILED: record: its fields hash to", "proof FAILED: record.payouts: sum to 42800000, charge is 1\n"}},
		{name: "times changed", code: 1, proof: edit(func(m map[string]any) { record(m)["end_time"] = "2026-11-21T00:00:00Z" }),
			want: []string{"proof FAILED: record: its fields hash to", "proof FAILED: record.wall_sec: 3600, but start_time to end_time is 7200 s\n"}},
		{name: "record and record hash changed", code: 1, proof: func() string {
			var p accounting.Proof
			json.Unmarshal([]byte(proofJSON), &p)
			p.Record.User = "bob"
			p.RecordHash = p.Record.Hash()
			b, _ := json.Marshal(p)
			return string(b)
		}(), want: []string{"proof FAILED: audit_path: does not lead from the record_hash at leaf 0 of 3 to the root"}},
		{name: "audit path changed", code: 1, proof: edit(func(m map[string]any) {
			m["audit_path"].([]any)[0] = accounting.HashHex([32]byte{1})
		}), want: []string{"proof FAILED: audit_path: does not lead"}},
		{name: "epoch changed", code: 1, proof: edit(func(m map[string]any) { m["epoch"] = 2 }),
			want: []string{"proof FAILED: epoch: contract " + testContract + " holds no anchor for epoch 2\n"}},
		{name: "tree size changed", code: 1, proof: edit(func(m map[string]any) { m["tree_size"] = 2 }),
			want: []string{"proof FAILED: audit_path:"}},
		{name: "anchor transaction changed", code: 1, proof: edit(func(m map[string]any) { m["anchor"].(map[string]any)["tx_hash"] = testTx(7) }),
			want: []string{"proof FAILED: anchor.tx_hash: the proof says " + testTx(7) + ", but the chain's anchor of epoch 1 is in tx " + testTx(1) + "\n"}},
		{name: "not a proof", code: 1, proof: `{"record": {"user": 3}}`},
		{name: "from standard input", proof: proofJSON, args: []string{"--proof", "-"}, want: []string{"proof OK"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			useFakeChain(t, l.chain)
			e, stdout, stderr := testEnv(t, &fakeAPI{}, nil, map[string]string{"proof.json": tc.proof})
			e.stdin = strings.NewReader(tc.proof)
			e.client = func() (*api.Client, error) { return nil, errors.New("the cluster was contacted") }
			args := []string{"stockade", "acct", "verify", "--rpc", testRPC}
			args = append(args, cmpOr(tc.args, []string{"--proof", "proof.json"})...)
			code := run(context.Background(), e, args)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q, stdout %q)", code, tc.code, stderr, stdout)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			if tc.code == 1 && len(tc.want) == 0 && strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("stderr %q, want one line", stderr)
			}
		})
	}
}

func cmpOr(a, b []string) []string {
	if len(a) > 0 {
		return a
	}
	return b
}

// The chain's address comes from the proof unless --contract pins one.
func TestVerifyProofContract(t *testing.T) {
	l := newAcctLedger(t)
	p := l.proof(1)
	p.Anchor.Contract = "0x000000000000000000000000000000000000dEaD"
	b, _ := json.Marshal(p)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 1, "does not hold the anchor contract"},
		{[]string{"--contract", testContract}, 0, "note: anchor.contract: the proof names 0x000000000000000000000000000000000000dEaD; checked at " + testContract},
	} {
		useFakeChain(t, l.chain)
		e, stdout, stderr := testEnv(t, &fakeAPI{}, nil, map[string]string{"p.json": string(b)})
		code := run(context.Background(), e, append([]string{"stockade", "acct", "verify", "--proof", "p.json", "--rpc", testRPC}, tc.args...))
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, output %s%s", tc.args, code, stdout, stderr)
		}
	}
}

func TestRecordDiffAndHints(t *testing.T) {
	a := ledgerRecord(5)
	b := a
	b.State, b.ExitCode = "FAILED", 3
	if got := recordDiff(&a, &b); got != `exit_code 0 → 3, state "COMPLETED" → "FAILED"` {
		t.Errorf("diff %q", got)
	}
	if h := recordHints(&a); len(h) != 0 {
		t.Errorf("hints of a consistent record: %v", h)
	}
	b = a
	b.PeakMemoryBytes *= 2
	b.GPUSeconds = 7
	h := strings.Join(recordHints(&b), "; ")
	if !strings.Contains(h, "record.memory_mb_seconds: 614400, but peak_memory_bytes × wall_sec gives 1228800") ||
		!strings.Contains(h, "record.gpu_seconds: 7 is not a whole number of GPUs × 1 nodes × 600 s") {
		t.Errorf("hints %q", h)
	}
}

// ---- status ----

func TestStatusAccountingGolden(t *testing.T) {
	st := api.Status{Leader: "c1", ServedBy: "c1", Controllers: []api.Controller{{ID: "c1", APIAddr: "a:1", RaftAddr: "a:2", Voter: true, Leader: true}},
		AcctRecords: 120456, AcctUnsealedRecords: 456, AcctLastSealedEpoch: 14, AcctLastAnchoredEpoch: 11, AcctUnanchoredEpochs: 3,
		AcctOldestUnanchoredSealedAt: ago(2 * time.Hour), AcctAnchorLagSec: 7200}
	golden(t, "status_accounting_lagging", formatStatus(&st))
	st.AcctUnanchoredEpochs, st.AcctLastAnchoredEpoch, st.AcctAnchorLagSec, st.AcctOldestUnanchoredSealedAt = 1, 13, 42, ago(42*time.Second)
	out := formatStatus(&st)
	if !strings.Contains(out, "Anchoring:    1 epoch waiting since 2026-11-21T09:59:18Z (lag 42s)\n") || strings.Contains(out, "WARNING") {
		t.Errorf("status:\n%s", out)
	}
	st.AcctUnanchoredEpochs, st.AcctLastAnchoredEpoch = 0, 14
	if out := formatStatus(&st); !strings.Contains(out, "Epochs:       last sealed 14, last anchored 14\nAnchoring:    up to date\n") {
		t.Errorf("status:\n%s", out)
	}
}

func TestAcctHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"stockade", "acct", "--help"}, []string{"statement", "prices", "settle", "proof", "verify"}},
		{[]string{"stockade", "acct", "verify", "--help"}, []string{"--proof", "--rpc", "--contract", "Exit status: 0", "2 nothing wrong"}},
		{[]string{"sacct", "--help"}, []string{"Charge", "RecordHash", "usage_record"}},
	} {
		e, stdout, _ := testEnv(t, &fakeAPI{}, nil, nil)
		if code := run(context.Background(), e, tc.args); code != 0 {
			t.Errorf("%v: exit %d", tc.args, code)
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%v lacks %q", tc.args, w)
			}
		}
	}
}
