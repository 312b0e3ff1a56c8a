package raftstore

import (
	"maps"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/go-memdb"
	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/api"
)

// The usage ledger: one immutable record per job attempt that ran to an
// end (written by finish), price versions, sealed epochs and their anchors.
// A job cancelled while pending used nothing and gets no record; a job
// requeued and run again gets one record per attempt that ended without
// being requeued. Records are never rewritten except to set their epoch
// once and to move their settlement status.
//
// Results:
//
//	CmdSetPrices      *accounting.PriceSet (a copy of the set in force)
//	CmdSealEpoch      *accounting.EpochInfo (a copy of the stored epoch)
//	CmdEpochAnchored  *accounting.EpochInfo (a copy of the stored epoch)
//	CmdSetSettlement  uint64 (records whose status changed)
//	CmdSetChain       nil

func init() {
	handlers[CmdSetPrices] = (*applier).setPrices
	handlers[CmdSealEpoch] = (*applier).sealEpoch
	handlers[CmdEpochAnchored] = (*applier).epochAnchored
	handlers[CmdSetSettlement] = (*applier).setSettlement
	handlers[CmdSetChain] = (*applier).setChain
}

// chainKey is the id of the single chain configuration row.
const chainKey = "cluster"

// Limits on what one command may carry.
const (
	maxSettlementSeqs = 10000
	maxBeneficiaries  = 10000
	maxNameLen        = 256
)

func recordIndexes() map[string]*memdb.IndexSchema {
	rec := func(o any) *accounting.UsageRecord { return &o.(*accounting.StoredRecord).Record }
	seq := uintIndexer{get: func(o any) (uint64, bool) { return rec(o).Seq, true }}
	bySeq := func(name string, first memdb.Indexer) *memdb.IndexSchema {
		return &memdb.IndexSchema{Name: name, Unique: true, AllowMissing: true,
			Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{first, seq}}}
	}
	return map[string]*memdb.IndexSchema{
		iID:     {Name: iID, Unique: true, Indexer: seq},
		iJobSq:  bySeq(iJobSq, uintIndexer{get: func(o any) (uint64, bool) { return rec(o).JobID, true }}),
		iUserSq: bySeq(iUserSq, strIndexer{get: func(o any) (string, bool) { return nonEmpty(rec(o).User) }}),
		iAcctSq: bySeq(iAcctSq, strIndexer{get: func(o any) (string, bool) { return nonEmpty(rec(o).Account) }}),
		// Records without an end time (none written by finish) are left out.
		iEndSq: bySeq(iEndSq, uintIndexer{get: func(o any) (uint64, bool) {
			t := rec(o).EndTime
			return uint64(t.UnixNano()), !t.IsZero()
		}}),
	}
}

// ---- records ----

// writeRecord appends the usage record of a job that just ended after
// running, priced with the set in force.
func (a *applier) writeRecord(j *api.Job) {
	ps := a.prices()
	rec := accounting.NewRecord(j, ps.Prices, ps.Beneficiaries)
	a.meta.RecordSeq++
	rec.Seq = a.meta.RecordSeq
	must(a.txn.Insert(tRecords, &accounting.StoredRecord{
		Record: rec, Hash: rec.Hash(), Settlement: accounting.SettlementUnsettled,
	}))
}

func (a *applier) record(seq uint64) *accounting.StoredRecord {
	return firstIn[accounting.StoredRecord](a, tRecords, seq)
}

// ---- prices ----

// prices is the price set in force: the newest stored, else the default.
func (a *applier) prices() accounting.PriceSet {
	raw, err := a.txn.Last(tPrices, iID)
	must(err)
	if raw == nil {
		return accounting.DefaultPriceSet()
	}
	return *raw.(*accounting.PriceSet)
}

func (a *applier) setPrices(cmd *Command) any {
	in := cmd.Prices
	if in == nil {
		return fieldErr(ErrInvalidCommand, "prices", "missing")
	}
	raw, err := a.txn.Last(tPrices, iID)
	must(err)
	cur := accounting.DefaultPriceSet()
	if raw != nil {
		cur = *raw.(*accounting.PriceSet)
	}
	p, b := in.Prices, normBeneficiaries(in.Beneficiaries)
	p.Version = cur.Prices.Version + 1
	if raw == nil && a.meta.RecordSeq == 0 {
		// Nothing was priced with the default: the first set replaces it.
		p.Version = 1
	}
	if err := ValidatePriceSet(&accounting.PriceSet{Prices: p, Beneficiaries: b}); err != nil {
		return err
	}
	q := cur.Prices
	q.Version = p.Version
	if q == p && reflect.DeepEqual(normBeneficiaries(cur.Beneficiaries), b) {
		return copyPriceSet(cur) // already in force: nothing to version
	}
	if raw == nil && p.Version == 2 {
		// Records were priced with the default: keep it as version 1.
		d := accounting.DefaultPriceSet()
		must(a.txn.Insert(tPrices, &d))
	}
	ps := &accounting.PriceSet{Prices: p, Beneficiaries: b, SetAt: a.now, SetBy: in.SetBy}
	must(a.txn.Insert(tPrices, ps))
	return copyPriceSet(*ps)
}

// normBeneficiaries makes empty maps nil, so equal sets compare equal.
func normBeneficiaries(b accounting.Beneficiaries) accounting.Beneficiaries {
	if len(b.NodeOperators) == 0 {
		b.NodeOperators = nil
	} else {
		b.NodeOperators = maps.Clone(b.NodeOperators)
	}
	if len(b.ImagePublishers) == 0 {
		b.ImagePublishers = nil
	} else {
		b.ImagePublishers = maps.Clone(b.ImagePublishers)
	}
	return b
}

// ValidatePriceSet checks prices and beneficiaries; errors name the field.
func ValidatePriceSet(ps *accounting.PriceSet) error {
	if err := ps.Prices.Validate(); err != nil {
		return fieldErr(ErrInvalidCommand, "prices", "%v", err)
	}
	return validBeneficiaries(ps.Beneficiaries)
}

func validBeneficiaries(b accounting.Beneficiaries) error {
	if err := b.Validate(); err != nil {
		return fieldErr(ErrInvalidCommand, "beneficiaries", "%v", err)
	}
	name := func(field, s string) error {
		if !utf8.ValidString(s) || len(s) > maxNameLen || strings.ContainsAny(s, "\x00\n") {
			return fieldErr(ErrInvalidCommand, "beneficiaries."+field, "%q is not a name of at most %d UTF-8 bytes", s, maxNameLen)
		}
		return nil
	}
	if err := name("cluster_operator", b.ClusterOperator); err != nil {
		return err
	}
	if err := name("charity", b.Charity); err != nil {
		return err
	}
	for field, m := range map[string]map[string]string{"node_operators": b.NodeOperators, "image_publishers": b.ImagePublishers} {
		if len(m) > maxBeneficiaries {
			return fieldErr(ErrInvalidCommand, "beneficiaries."+field, "%d entries, at most %d", len(m), maxBeneficiaries)
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if k == "" {
				return fieldErr(ErrInvalidCommand, "beneficiaries."+field, "empty key")
			}
			if err := name(field, k); err != nil {
				return err
			}
			if m[k] == "" {
				return fieldErr(ErrInvalidCommand, "beneficiaries."+field, "%q has no beneficiary", k)
			}
			if err := name(field, m[k]); err != nil {
				return err
			}
		}
	}
	return nil
}

func copyPriceSet(ps accounting.PriceSet) *accounting.PriceSet {
	ps.Beneficiaries.NodeOperators = maps.Clone(ps.Beneficiaries.NodeOperators)
	ps.Beneficiaries.ImagePublishers = maps.Clone(ps.Beneficiaries.ImagePublishers)
	return &ps
}

// ---- epochs ----

func (a *applier) lastEpoch() *accounting.EpochInfo {
	raw, err := a.txn.Last(tEpochs, iID)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*accounting.EpochInfo)
}

// sealEpoch stores the next epoch after checking its root against the
// stored hashes of exactly its records, and marks them sealed.
func (a *applier) sealEpoch(cmd *Command) any {
	e := cmd.Epoch
	if e == nil {
		return fieldErr(ErrInvalidCommand, "epoch", "missing")
	}
	wantN, wantFirst := uint64(1), uint64(1)
	if last := a.lastEpoch(); last != nil {
		wantN, wantFirst = last.Epoch.Number+1, last.Epoch.LastSeq+1
	}
	switch {
	case e.Number != wantN:
		return fieldErr(ErrConflict, "epoch.number", "%d is not the next epoch, %d", e.Number, wantN)
	case e.FirstSeq != wantFirst:
		return fieldErr(ErrConflict, "epoch.first_seq", "%d is not the first unsealed seq, %d", e.FirstSeq, wantFirst)
	case e.Count == 0:
		return fieldErr(ErrInvalidCommand, "epoch.count", "an epoch holds at least one record")
	case e.LastSeq != e.FirstSeq+e.Count-1:
		return fieldErr(ErrInvalidCommand, "epoch.last_seq", "%d does not end %d records from seq %d", e.LastSeq, e.Count, e.FirstSeq)
	case e.LastSeq > a.meta.RecordSeq || e.LastSeq < e.FirstSeq:
		return fieldErr(ErrConflict, "epoch.last_seq", "record %d does not exist (the last is %d)", e.LastSeq, a.meta.RecordSeq)
	}
	recs := make([]*accounting.StoredRecord, 0, e.Count)
	hashes := make([][32]byte, 0, e.Count)
	it, err := a.txn.LowerBound(tRecords, iID, e.FirstSeq)
	must(err)
	for raw := it.Next(); raw != nil && uint64(len(recs)) < e.Count; raw = it.Next() {
		r := raw.(*accounting.StoredRecord)
		if r.Record.Seq != e.FirstSeq+uint64(len(recs)) {
			return fieldErr(ErrConflict, "epoch", "record %d is missing", e.FirstSeq+uint64(len(recs)))
		}
		recs = append(recs, r)
		hashes = append(hashes, r.Hash)
	}
	if uint64(len(recs)) != e.Count {
		return fieldErr(ErrConflict, "epoch", "records %d..%d are not all stored", e.FirstSeq, e.LastSeq)
	}
	if root := accounting.Root(hashes); root != e.Root {
		return fieldErr(ErrConflict, "epoch.root", "%s is not the root of records %d..%d (%s)",
			accounting.HashHex(e.Root), e.FirstSeq, e.LastSeq, accounting.HashHex(root))
	}
	ep := *e
	ep.SealedAt = a.now // the command's time: every member stores the same
	info := &accounting.EpochInfo{Epoch: ep, Commitment: ep.Commitment()}
	must(a.txn.Insert(tEpochs, info))
	for _, r := range recs {
		c := *r
		c.Epoch = ep.Number
		must(a.txn.Insert(tRecords, &c))
	}
	return copyEpoch(info)
}

// epochAnchored records where an epoch's commitment was published. Epochs
// are anchored in order, each once; repeating an anchor is harmless.
func (a *applier) epochAnchored(cmd *Command) any {
	x := cmd.Anchored
	if x == nil {
		return fieldErr(ErrInvalidCommand, "anchored", "missing")
	}
	if x.Anchor.TxHash == "" {
		return fieldErr(ErrInvalidCommand, "anchored.anchor.tx_hash", "empty")
	}
	info := firstIn[accounting.EpochInfo](a, tEpochs, x.Number)
	if info == nil {
		return fieldErr(ErrNotFound, "anchored.number", "epoch %d is not sealed", x.Number)
	}
	if old := info.Anchor; old != nil {
		if old.TxHash != x.Anchor.TxHash || old.ChainID != x.Anchor.ChainID || !strings.EqualFold(old.Contract, x.Anchor.Contract) {
			return fieldErr(ErrConflict, "anchored.anchor", "epoch %d is already anchored in tx %s", x.Number, old.TxHash)
		}
		if old.BlockNumber == x.Anchor.BlockNumber {
			return copyEpoch(info)
		}
		// The same transaction in another block (a reorg): follow it.
	} else if x.Number != a.meta.AnchoredEpoch+1 {
		return fieldErr(ErrConflict, "anchored.number", "epoch %d cannot be anchored before epoch %d", x.Number, a.meta.AnchoredEpoch+1)
	}
	c := *info
	anc := x.Anchor
	c.Anchor = &anc
	if c.AnchoredAt = x.AnchoredAt.UTC(); x.AnchoredAt.IsZero() {
		c.AnchoredAt = a.now
	}
	must(a.txn.Insert(tEpochs, &c))
	a.meta.AnchoredEpoch = max(a.meta.AnchoredEpoch, x.Number)
	return copyEpoch(&c)
}

func copyEpoch(e *accounting.EpochInfo) *accounting.EpochInfo {
	c := *e
	if e.Anchor != nil {
		anc := *e.Anchor
		c.Anchor = &anc
	}
	return &c
}

// ---- settlement and chain ----

func (a *applier) setSettlement(cmd *Command) any {
	s := cmd.Settlement
	if s == nil {
		return fieldErr(ErrInvalidCommand, "settlement", "missing")
	}
	if err := accounting.ValidSettlement(s.Status); err != nil {
		return fieldErr(ErrInvalidCommand, "status", "%q is not unsettled, invoiced, settled, disputed or waived", s.Status)
	}
	if len(s.Seqs) == 0 {
		return fieldErr(ErrInvalidCommand, "seqs", "empty")
	}
	if len(s.Seqs) > maxSettlementSeqs {
		return fieldErr(ErrInvalidCommand, "seqs", "%d records, at most %d per request", len(s.Seqs), maxSettlementSeqs)
	}
	seqs := slices.Compact(slices.Sorted(slices.Values(s.Seqs)))
	recs := make([]*accounting.StoredRecord, len(seqs))
	for i, seq := range seqs {
		if recs[i] = a.record(seq); recs[i] == nil {
			return fieldErr(ErrNotFound, "seqs", "record %d does not exist", seq)
		}
	}
	var n uint64
	for _, r := range recs {
		if r.Settlement == s.Status {
			continue
		}
		c := *r
		c.Settlement, c.SettlementAt = s.Status, a.now
		must(a.txn.Insert(tRecords, &c))
		n++
	}
	return n
}

func (a *applier) setChain(cmd *Command) any {
	c := cmd.Chain
	if c == nil {
		return fieldErr(ErrInvalidCommand, "chain", "missing")
	}
	if err := ValidateChain(c); err != nil {
		return err
	}
	cc := *c
	must(a.txn.Insert(tChain, &cc))
	return nil
}

// ValidateChain checks a chain endpoint; errors name the field.
func ValidateChain(c *accounting.ChainInfo) error {
	u, err := url.Parse(c.RPCURL)
	switch {
	case c.RPCURL == "":
		return fieldErr(ErrInvalidCommand, "rpc_url", "empty")
	case len(c.RPCURL) > 2048 || err != nil || u.Host == "":
		return fieldErr(ErrInvalidCommand, "rpc_url", "%q is not a URL with a host", c.RPCURL)
	case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "ws" && u.Scheme != "wss":
		return fieldErr(ErrInvalidCommand, "rpc_url", "scheme %q is not http, https, ws or wss", u.Scheme)
	case c.Contract != "" && !isAddress(c.Contract):
		return fieldErr(ErrInvalidCommand, "contract", "%q is not a 0x-prefixed 20-byte hex address", c.Contract)
	}
	return nil
}

func isAddress(s string) bool {
	h, ok := strings.CutPrefix(s, "0x")
	if !ok || len(h) != 40 {
		return false
	}
	for _, r := range h {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}
