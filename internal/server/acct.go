package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"time"

	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/raftstore"
)

// The usage ledger routes (/v1/acct, docs/api.md) and the leader's
// sealing loop.

// configSetBy marks price sets applied from the [accounting] section; it
// cannot be a user name.
const configSetBy = "[accounting]"

// Answer sizes.
const (
	defaultRecordLimit = 1000
	maxRecordLimit     = 10000
	defaultEpochLimit  = 100
	maxEpochLimit      = 1000
)

// ---- records ----

func (s *Server) handleAcctRecords(w http.ResponseWriter, r *http.Request, c *caller) error {
	snap := s.store().Snapshot()
	v := r.URL.Query()
	var q accounting.RecordQuery
	var err error
	if q.JobID, err = jobParam(snap, v, "job"); err != nil {
		return err
	}
	q.User, q.Account = v.Get("user"), v.Get("account")
	if q.From, err = timeParam(v, "from"); err != nil {
		return err
	}
	if q.To, err = timeParam(v, "to"); err != nil {
		return err
	}
	if q.AfterSeq, err = uintParam(v, "after_seq"); err != nil {
		return err
	}
	if q.Limit, err = limitParam(v, defaultRecordLimit, maxRecordLimit); err != nil {
		return err
	}
	if q.User, err = ownUser(c, q.User); err != nil {
		return err
	}
	limit := q.Limit
	q.Limit++ // one more says whether a next page exists
	recs := snap.Records(q)
	resp := accounting.RecordsResponse{Records: make([]accounting.StoredRecord, 0, min(len(recs), limit))}
	if len(recs) > limit {
		recs = recs[:limit]
		resp.NextAfterSeq = recs[limit-1].Record.Seq
	}
	for _, rec := range recs {
		resp.Records = append(resp.Records, *rec)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// ownUser is the user whose records a caller may read: admins any (""
// for all), others only their own.
func ownUser(c *caller, asked string) (string, error) {
	if c.admin() {
		return asked, nil
	}
	if asked != "" && asked != c.user.Name {
		return "", errorf(http.StatusForbidden, "user: permission denied: you may only see your own records")
	}
	return c.user.Name, nil
}

// ---- epochs and proofs ----

func (s *Server) handleAcctEpochs(w http.ResponseWriter, r *http.Request, c *caller) error {
	v := r.URL.Query()
	from, err := uintParam(v, "from")
	if err != nil {
		return err
	}
	limit, err := limitParam(v, defaultEpochLimit, maxEpochLimit)
	if err != nil {
		return err
	}
	snap := s.store().Snapshot()
	resp := accounting.EpochsResponse{Epochs: []accounting.EpochInfo{}, Chain: snap.ChainConfig()}
	for _, e := range snap.Epochs(from, limit) {
		resp.Epochs = append(resp.Epochs, *e)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) handleAcctEpoch(w http.ResponseWriter, r *http.Request, c *caller) error {
	n, err := strconv.ParseUint(r.PathValue("n"), 10, 64)
	if err != nil || n == 0 {
		return badRequest("epoch: %q is not an epoch number", r.PathValue("n"))
	}
	snap := s.store().Snapshot()
	e := snap.Epoch(n)
	if e == nil {
		return errorf(http.StatusNotFound, "epoch %d is not sealed", n)
	}
	recs := snap.EpochRecords(n)
	resp := accounting.EpochDetail{EpochInfo: *e, Records: make([]accounting.StoredRecord, 0, len(recs)), Chain: snap.ChainConfig()}
	for _, rec := range recs {
		resp.Records = append(resp.Records, *rec)
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) handleAcctProof(w http.ResponseWriter, r *http.Request, c *caller) error {
	snap := s.store().Snapshot()
	v := r.URL.Query()
	id, err := jobParam(snap, v, "job")
	if err != nil {
		return err
	}
	seq, err := uintParam(v, "seq")
	if err != nil {
		return err
	}
	var rec *accounting.StoredRecord
	switch {
	case seq != 0:
		if rec = snap.Record(seq); rec != nil && id != 0 && rec.Record.JobID != id {
			rec = nil
		}
	case id != 0:
		rec = snap.RecordByJob(id)
	default:
		return badRequest("job: required (or seq)")
	}
	// Other users' records do not exist as far as a user can tell.
	if rec == nil || (!c.admin() && rec.Record.User != c.user.Name) {
		if seq != 0 {
			return errorf(http.StatusNotFound, "seq: no usage record %d", seq)
		}
		return errorf(http.StatusNotFound, "job: job %s has no usage record (it has not ended, or never ran)", v.Get("job"))
	}
	if rec.Epoch == 0 {
		ac := s.cfg.Accounting.withDefaults()
		return errorf(http.StatusConflict, "record %d (job %d) is not sealed yet: epochs are sealed every %s or %d records; retry later",
			rec.Record.Seq, rec.Record.JobID, ac.Interval, ac.MaxRecords)
	}
	e := snap.Epoch(rec.Epoch)
	if e == nil {
		return errorf(http.StatusInternalServerError, "record %d names epoch %d, which is not stored", rec.Record.Seq, rec.Epoch)
	}
	if e.Anchor == nil {
		return errorf(http.StatusConflict, "epoch %d holding record %d (job %d) is sealed but not anchored yet; retry later",
			rec.Epoch, rec.Record.Seq, rec.Record.JobID)
	}
	p, err := epochProof(snap, e, rec)
	if err != nil {
		return errorf(http.StatusInternalServerError, "%v", err)
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// epochProof builds rec's proof from its epoch's stored hashes (a tree of
// one epoch; at the default size well under a second).
func epochProof(snap *raftstore.Snapshot, e *accounting.EpochInfo, rec *accounting.StoredRecord) (*accounting.Proof, error) {
	recs := snap.EpochRecords(e.Epoch.Number)
	hashes := make([][32]byte, len(recs))
	for i, r := range recs {
		hashes[i] = r.Hash
	}
	tree := accounting.NewTree(hashes)
	if tree.Root() != e.Epoch.Root {
		return nil, errors.New("stored record hashes do not produce the epoch's root")
	}
	p, err := tree.Proof(e.Epoch, rec.Record)
	if err != nil {
		return nil, err
	}
	if e.Anchor != nil {
		p.Anchor = *e.Anchor
	}
	return &p, nil
}

// ---- prices ----

func (s *Server) handleAcctPrices(w http.ResponseWriter, r *http.Request, c *caller) error {
	writeJSON(w, http.StatusOK, pricesResponse(s.store().Snapshot()))
	return nil
}

func pricesResponse(snap *raftstore.Snapshot) accounting.PricesResponse {
	return accounting.PricesResponse{Current: snap.Prices(), History: snap.PriceHistory()}
}

func (s *Server) handleSetAcctPrices(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req accounting.SetPricesRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Prices == nil && req.Beneficiaries == nil {
		return badRequest("prices: give prices, beneficiaries or both")
	}
	snap := s.store().Snapshot()
	ps := snap.Prices()
	if req.Prices != nil {
		ps.Prices = *req.Prices
	}
	if req.Beneficiaries != nil {
		ps.Beneficiaries = *req.Beneficiaries
	}
	ps.SetBy = c.user.Name
	if _, err := s.propose(r, snap, &raftstore.Command{Type: raftstore.CmdSetPrices, Time: time.Now().UnixNano(),
		Prices: &ps, Actor: c.user.Name}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, pricesResponse(s.store().Snapshot()))
	return nil
}

// ---- statements and settlement ----

func (s *Server) handleAcctStatement(w http.ResponseWriter, r *http.Request, c *caller) error {
	v := r.URL.Query()
	f := accounting.StatementFilter{Account: v.Get("account"), User: v.Get("user"), Beneficiary: v.Get("beneficiary")}
	var err error
	if f.From, err = timeParam(v, "from"); err != nil {
		return err
	}
	if f.To, err = timeParam(v, "to"); err != nil {
		return err
	}
	period := accounting.Period(v.Get("period"))
	if period == "" {
		period = accounting.PeriodAll
	}
	if f.Beneficiary != "" && !c.admin() {
		return errorf(http.StatusForbidden, "beneficiary: permission denied: beneficiary statements are for administrators")
	}
	if f.User, err = ownUser(c, f.User); err != nil {
		return err
	}
	recs := s.store().Snapshot().Records(accounting.RecordQuery{User: f.User, Account: f.Account, From: f.From, To: f.To})
	vals := make([]accounting.UsageRecord, len(recs))
	for i, rec := range recs {
		vals[i] = rec.Record
	}
	lines, err := accounting.Statement(vals, f, period)
	if err != nil {
		return badRequest("%v", err)
	}
	if lines == nil {
		lines = []accounting.StatementLine{}
	}
	writeJSON(w, http.StatusOK, accounting.StatementResponse{Lines: lines})
	return nil
}

func (s *Server) handleAcctSettlement(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req accounting.SettlementRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	snap := s.store().Snapshot()
	res, err := s.propose(r, snap, &raftstore.Command{Type: raftstore.CmdSetSettlement, Time: time.Now().UnixNano(),
		Settlement: &req, Actor: c.user.Name})
	if err != nil {
		return err
	}
	n, _ := res.(uint64)
	writeJSON(w, http.StatusOK, accounting.SettlementResponse{Updated: n})
	return nil
}

// ---- status ----

// acctStatus fills the ledger part of GET /v1/status.
func acctStatus(snap *raftstore.Snapshot, st *api.Status, now time.Time) {
	st.AcctRecords = snap.RecordCount()
	st.AcctUnsealedRecords = snap.UnsealedCount()
	st.AcctLastAnchoredEpoch = snap.AnchoredEpoch()
	if e := snap.LastEpoch(); e != nil {
		st.AcctLastSealedEpoch = e.Epoch.Number
	}
	st.AcctUnanchoredEpochs = st.AcctLastSealedEpoch - st.AcctLastAnchoredEpoch
	if st.AcctUnanchoredEpochs > 0 {
		if e := snap.Epoch(st.AcctLastAnchoredEpoch + 1); e != nil {
			st.AcctOldestUnanchoredSealedAt = e.Epoch.SealedAt
			st.AcctAnchorLagSec = max(0, int64(now.Sub(e.Epoch.SealedAt)/time.Second))
		}
	}
}

// ---- leader: configured prices and sealing ----

// acctLoop applies the [accounting] prices once per term, then seals
// epochs when due.
func (s *Server) acctLoop(ctx context.Context) {
	retry(ctx, s, "applying the [accounting] prices", func() error {
		cmd := acctConfigCommand(s.cfg, s.store().Snapshot(), time.Now())
		if cmd == nil {
			return nil
		}
		res, err := s.node.Apply(ctx, cmd)
		if ps, ok := res.(*accounting.PriceSet); ok {
			s.log.Info("[accounting] prices applied", "version", ps.Prices.Version)
		}
		return err
	})
	ac := s.cfg.Accounting.withDefaults()
	t := time.NewTicker(min(ac.Interval/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.sealDue(ctx, ac, time.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("sealing an accounting epoch", "err", err)
		}
	}
}

// withDefaults fills what a Config built in code may leave zero.
func (ac AcctConfig) withDefaults() AcctConfig {
	if ac.Interval <= 0 {
		ac.Interval = defaultSealInterval
	}
	if ac.MaxRecords <= 0 {
		ac.MaxRecords = defaultSealRecords
	}
	return ac
}

// acctConfigCommand is the price change the [accounting] section asks
// for, or nil: when the state already holds it, or when the file's
// content is what it last applied (an admin's later change stands).
func acctConfigCommand(cfg *Config, snap *raftstore.Snapshot, now time.Time) *raftstore.Command {
	ac := cfg.Accounting
	if ac.Prices == nil && ac.Beneficiaries == nil {
		return nil
	}
	cur := snap.Prices()
	want := cur
	if ac.Prices != nil {
		want.Prices = *ac.Prices
	}
	if ac.Beneficiaries != nil {
		want.Beneficiaries = *ac.Beneficiaries
	}
	if samePriceSet(cur, want) {
		return nil
	}
	hist := snap.PriceHistory()
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].SetBy != configSetBy {
			continue
		}
		last := hist[i]
		if (ac.Prices == nil || samePrices(last.Prices, *ac.Prices)) &&
			(ac.Beneficiaries == nil || sameBeneficiaries(last.Beneficiaries, *ac.Beneficiaries)) {
			return nil
		}
		break
	}
	want.SetBy = configSetBy
	return &raftstore.Command{Type: raftstore.CmdSetPrices, Time: now.UnixNano(), Prices: &want}
}

func samePriceSet(a, b accounting.PriceSet) bool {
	return samePrices(a.Prices, b.Prices) && sameBeneficiaries(a.Beneficiaries, b.Beneficiaries)
}

// samePrices compares tables without their versions.
func samePrices(a, b accounting.PriceTable) bool {
	a.Version, b.Version = 0, 0
	return a == b
}

func sameBeneficiaries(a, b accounting.Beneficiaries) bool {
	norm := func(m map[string]string) map[string]string {
		if len(m) == 0 {
			return nil
		}
		return maps.Clone(m)
	}
	a.NodeOperators, a.ImagePublishers = norm(a.NodeOperators), norm(a.ImagePublishers)
	b.NodeOperators, b.ImagePublishers = norm(b.NodeOperators), norm(b.ImagePublishers)
	return reflect.DeepEqual(a, b)
}

// sealDue seals the next epochs when due: once ac.Interval has passed
// since the last seal (for the first epoch, since the first record ended),
// or while ac.MaxRecords records are unsealed. An epoch holds at most
// ac.MaxRecords records, so a backlog becomes several epochs.
func (s *Server) sealDue(ctx context.Context, ac AcctConfig, now time.Time) error {
	for ctx.Err() == nil {
		snap := s.store().Snapshot()
		unsealed := snap.UnsealedCount()
		if unsealed == 0 {
			return nil
		}
		number, since := uint64(1), time.Time{}
		if last := snap.LastEpoch(); last != nil {
			number, since = last.Epoch.Number+1, last.Epoch.SealedAt
		} else if first := snap.Record(1); first != nil {
			since = first.Record.EndTime
		}
		if unsealed < uint64(ac.MaxRecords) && now.Sub(since) < ac.Interval {
			return nil
		}
		stored := snap.UnsealedRecords(ac.MaxRecords)
		recs := make([]accounting.UsageRecord, len(stored))
		for i, r := range stored {
			recs[i] = r.Record
		}
		e, tree, err := accounting.SealTree(number, recs, now)
		if err != nil {
			return err
		}
		// A record that no longer matches its stored hash must not be
		// sealed; say which, since the apply would only see the root.
		for i, h := range tree.RecordHashes() {
			if h != [32]byte(stored[i].Hash) {
				return fmt.Errorf("record %d (job %d) does not match its stored hash %s",
					stored[i].Record.Seq, stored[i].Record.JobID, stored[i].Hash)
			}
		}
		if _, err := s.node.Apply(ctx, &raftstore.Command{Type: raftstore.CmdSealEpoch, Time: now.UnixNano(), Epoch: &e}); err != nil {
			return err
		}
		s.log.Info("sealed accounting epoch", "epoch", e.Number, "records", e.Count,
			"seqs", strconv.FormatUint(e.FirstSeq, 10)+".."+strconv.FormatUint(e.LastSeq, 10), "root", accounting.HashHex(e.Root))
		if unsealed-e.Count < uint64(ac.MaxRecords) {
			return nil
		}
	}
	return nil
}

// ---- query parameters ----

// jobParam reads a job id ("123", or "123_4" for one array task); 0 when
// absent.
func jobParam(snap *raftstore.Snapshot, v url.Values, key string) (uint64, error) {
	s := v.Get(key)
	if s == "" {
		return 0, nil
	}
	ref, err := parseJobRef(s)
	if err != nil {
		return 0, badRequest("%s: %q is not a job id", key, s)
	}
	if ref.tasks == nil {
		return ref.id, nil
	}
	jobs := ref.resolve(snap)
	if len(jobs) != 1 {
		return 0, errorf(http.StatusNotFound, "%s: %q names no single array task", key, s)
	}
	return jobs[0].ID, nil
}

func uintParam(v url.Values, key string) (uint64, error) {
	s := v.Get(key)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, badRequest("%s: %q is not a whole number", key, s)
	}
	return n, nil
}

func limitParam(v url.Values, def, maxN int) (int, error) {
	s := v.Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxN {
		return 0, badRequest("limit: %q is not 1..%d", s, maxN)
	}
	return n, nil
}

// timeParam reads an RFC 3339 time or a UTC date (2006-01-02).
func timeParam(v url.Values, key string) (time.Time, error) {
	s := v.Get(key)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, badRequest("%s: %q is not an RFC 3339 time or a date (2006-01-02)", key, s)
}
