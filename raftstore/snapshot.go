package raftstore

import (
	"math"
	"slices"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/policy"
	"github.com/stockade-hpc/stockade/scheduler"
)

// Snapshot is an immutable view of the state at one index. It is safe for
// concurrent use. The records it returns are shared with the store and
// other snapshots: callers must not modify them (copy first).
type Snapshot struct {
	db   *memdb.MemDB
	meta stateMeta
}

var _ scheduler.State = (*Snapshot)(nil)

func newSnapshot(db *memdb.MemDB) *Snapshot {
	s := &Snapshot{db: db}
	if raw, err := db.Txn(false).First(tMeta, iID, metaKey); err == nil && raw != nil {
		s.meta = *raw.(*stateMeta)
	} else {
		s.meta = stateMeta{Key: metaKey, NextJobID: 1}
	}
	return s
}

// Index is the Raft index of the last command reflected in this view.
func (s *Snapshot) Index() uint64 { return s.meta.Index }

// NextJobID is the id the next submitted job will get.
func (s *Snapshot) NextJobID() uint64 { return s.meta.NextJobID }

// A fresh read transaction per call: memdb read transactions are cheap and
// this keeps a Snapshot safe to share between goroutines.
func (s *Snapshot) txn() *memdb.Txn { return s.db.Txn(false) }

func first[T any](s *Snapshot, table, index string, args ...any) *T {
	raw, err := s.txn().First(table, index, args...)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*T)
}

func list[T any](s *Snapshot, table, index string, args ...any) []*T {
	it, err := s.txn().Get(table, index, args...)
	if err != nil {
		return nil
	}
	var out []*T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*T))
	}
	return out
}

// Job returns any job, terminal ones included (nil if unknown).
func (s *Snapshot) Job(id uint64) *api.Job { return first[api.Job](s, tJobs, iID, id) }

// Jobs returns every job in id order.
func (s *Snapshot) Jobs() []*api.Job { return list[api.Job](s, tJobs, iID) }

// JobsByUser returns a user's jobs in id order.
func (s *Snapshot) JobsByUser(user string) []*api.Job {
	return list[api.Job](s, tJobs, iUser, user)
}

// JobsByNode returns the non-terminal jobs allocated on a node.
func (s *Snapshot) JobsByNode(node string) []*api.Job {
	return list[api.Job](s, tJobs, iNode, node)
}

// JobsByState returns the jobs in one state in id order.
func (s *Snapshot) JobsByState(st api.JobState) []*api.Job {
	return list[api.Job](s, tJobs, iState, string(st))
}

// JobBySubmitID returns the first job created by a submission id.
func (s *Snapshot) JobBySubmitID(id string) *api.Job {
	if id == "" {
		return nil
	}
	return first[api.Job](s, tJobs, iSubmit, id)
}

// PendingJobs returns every PENDING job in id order.
func (s *Snapshot) PendingJobs() []*api.Job { return s.JobsByState(api.JobPending) }

// RunningJobs returns every RUNNING job in id order.
func (s *Snapshot) RunningJobs() []*api.Job { return s.JobsByState(api.JobRunning) }

// JobsByArray returns every task of an array job in id order.
func (s *Snapshot) JobsByArray(arrayJobID uint64) []*api.Job {
	return list[api.Job](s, tJobs, iArray, arrayJobID)
}

// Nodes returns every node in name order.
func (s *Snapshot) Nodes() []*api.Node { return list[api.Node](s, tNodes, iID) }

// Node returns a node by name (nil if unknown).
func (s *Snapshot) Node(name string) *api.Node { return first[api.Node](s, tNodes, iID, name) }

// Partitions returns every partition in name order.
func (s *Snapshot) Partitions() []*api.Partition {
	return list[api.Partition](s, tPartitions, iID)
}

// Partition returns a partition by name (nil if unknown).
func (s *Snapshot) Partition(name string) *api.Partition {
	return first[api.Partition](s, tPartitions, iID, name)
}

// DefaultPartition returns the partition marked Default (nil if none).
func (s *Snapshot) DefaultPartition() *api.Partition {
	return defaultPartition(s.txn())
}

func defaultPartition(txn *memdb.Txn) *api.Partition {
	it, err := txn.Get(tPartitions, iID)
	if err != nil {
		return nil
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if p := raw.(*api.Partition); p.Default {
			return p
		}
	}
	return nil
}

// Users returns every user in name order.
func (s *Snapshot) Users() []*api.User { return list[api.User](s, tUsers, iID) }

// User returns a user by name (nil if unknown).
func (s *Snapshot) User(name string) *api.User { return first[api.User](s, tUsers, iID, name) }

// UserByTokenID returns the user holding a token id (nil if none).
func (s *Snapshot) UserByTokenID(id string) *api.User {
	if id == "" {
		return nil
	}
	return first[api.User](s, tUsers, iToken, id)
}

// Accounts returns every account in name order.
func (s *Snapshot) Accounts() []*api.Account { return list[api.Account](s, tAccounts, iID) }

// Account returns an account by name (nil if unknown).
func (s *Snapshot) Account(name string) *api.Account {
	return first[api.Account](s, tAccounts, iID, name)
}

// Controllers returns the controllers recorded with CmdSetController, in id
// order. Their Leader flag is whatever was stored; the live Raft view is
// Node.Stats.
func (s *Snapshot) Controllers() []*api.Controller {
	return list[api.Controller](s, tControllers, iID)
}

// Policy returns a copy of the cluster policy, or the normalized default
// policy (version 0) when none was ever set. The copy may be modified.
func (s *Snapshot) Policy() *policy.Policy {
	if p := first[policy.Policy](s, tPolicy, iID, policyKey); p != nil {
		return p.Clone()
	}
	return policy.Default()
}

// ApprovedEK returns an approved EK by fingerprint (nil if not approved).
func (s *Snapshot) ApprovedEK(fingerprint string) *api.ApprovedEK {
	fp, ok := CanonicalFingerprint(fingerprint)
	if !ok {
		return nil
	}
	return first[api.ApprovedEK](s, tApprovedEKs, iID, fp)
}

// ApprovedEKs returns every approved EK in fingerprint order.
func (s *Snapshot) ApprovedEKs() []*api.ApprovedEK {
	return list[api.ApprovedEK](s, tApprovedEKs, iID)
}

// CertRevoked reports whether a certificate serial (hex in any case, with
// or without colons, e.g. cert.SerialNumber.Text(16)) is revoked. It is
// one index lookup, cheap enough for every TLS handshake.
func (s *Snapshot) CertRevoked(serial string) bool {
	c, ok := CanonicalSerial(serial)
	return ok && first[api.RevokedCert](s, tRevoked, iID, c) != nil
}

// RevokedCerts returns every revoked serial in serial order.
func (s *Snapshot) RevokedCerts() []*api.RevokedCert {
	return list[api.RevokedCert](s, tRevoked, iID)
}

// Audit returns the newest limit audit records with Seq > since, oldest
// first (newest last); limit <= 0 returns all of them. An empty node means
// every record, cluster-wide ones included. To follow the log, pass the
// last Seq seen as since with limit 0.
func (s *Snapshot) Audit(node string, since uint64, limit int) []*api.AuditRecord {
	var it memdb.ResultIterator
	var err error
	if node == "" {
		it, err = s.txn().ReverseLowerBound(tAudit, iID, uint64(math.MaxUint64))
	} else {
		it, err = s.txn().ReverseLowerBound(tAudit, iNodeSq, node, uint64(math.MaxUint64))
	}
	if err != nil {
		return nil
	}
	var out []*api.AuditRecord
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*api.AuditRecord)
		if (node != "" && r.Node != node) || r.Seq <= since || (limit > 0 && len(out) == limit) {
			break
		}
		out = append(out, r)
	}
	slices.Reverse(out)
	return out
}

// QOSList returns every QoS in name order.
func (s *Snapshot) QOSList() []*api.QOS { return list[api.QOS](s, tQOS, iID) }

// QOS looks up a QoS by name (nil if unknown).
func (s *Snapshot) QOS(name string) *api.QOS { return first[api.QOS](s, tQOS, iID, name) }

// Associations returns every association in key order.
func (s *Snapshot) Associations() []*api.Association {
	return list[api.Association](s, tAssocs, iID)
}

// Association looks up the association of user in account (user "" for
// the account's own).
func (s *Snapshot) Association(account, user string) *api.Association {
	return first[api.Association](s, tAssocs, iID, api.AssocKey(account, user))
}

// FairShareUsage returns the stored decayed usage of every association.
func (s *Snapshot) FairShareUsage() []*api.FairShareUsage {
	return list[api.FairShareUsage](s, tUsage, iID)
}

// Reservations returns every reservation in name order.
func (s *Snapshot) Reservations() []*api.Reservation {
	return list[api.Reservation](s, tResv, iID)
}

// Reservation looks up a reservation by name.
func (s *Snapshot) Reservation(name string) *api.Reservation {
	return first[api.Reservation](s, tResv, iID, name)
}

// SchedConfig returns the scheduler configuration, or the defaults when
// none was ever set.
func (s *Snapshot) SchedConfig() api.SchedConfig {
	if r := first[schedConfigRow](s, tSchedConfig, iID, schedConfigKey); r != nil {
		return r.Config
	}
	return api.DefaultSchedConfig()
}

// Steps returns a job's steps in step order.
func (s *Snapshot) Steps(jobID uint64) []*api.JobStep {
	return list[api.JobStep](s, tSteps, iID+"_prefix", jobID)
}

// Step looks up one step.
func (s *Snapshot) Step(jobID uint64, stepID int) *api.JobStep {
	return first[api.JobStep](s, tSteps, iID, jobID, uint64(stepID))
}

// ---- usage ledger ----

// RecordCount is the number of usage records written, which is the seq
// of the last one.
func (s *Snapshot) RecordCount() uint64 { return s.meta.RecordSeq }

// AnchoredEpoch is the last anchored epoch (0: none); every epoch up to it
// is anchored.
func (s *Snapshot) AnchoredEpoch() uint64 { return s.meta.AnchoredEpoch }

// Record looks up a usage record by seq.
func (s *Snapshot) Record(seq uint64) *accounting.StoredRecord {
	return first[accounting.StoredRecord](s, tRecords, iID, seq)
}

// RecordByJob is the newest record of a job (nil if it has none): a job
// requeued after it ended has one record per attempt.
func (s *Snapshot) RecordByJob(id uint64) *accounting.StoredRecord {
	recs := s.RecordsByJob(id)
	if len(recs) == 0 {
		return nil
	}
	return recs[len(recs)-1]
}

// RecordsByJob returns a job's records in seq order.
func (s *Snapshot) RecordsByJob(id uint64) []*accounting.StoredRecord {
	return s.Records(accounting.RecordQuery{JobID: id})
}

// Records returns the records q selects in seq order, at most q.Limit
// (0: all).
func (s *Snapshot) Records(q accounting.RecordQuery) []*accounting.StoredRecord {
	if q.AfterSeq == math.MaxUint64 {
		return nil
	}
	from, to := nanos(q.From), nanos(q.To)
	match := func(r *accounting.UsageRecord) bool {
		end := nanos(r.EndTime)
		return (q.JobID == 0 || r.JobID == q.JobID) && (q.User == "" || r.User == q.User) &&
			(q.Account == "" || r.Account == q.Account) && r.Seq > q.AfterSeq &&
			(q.From.IsZero() || end >= from) && (q.To.IsZero() || end < to)
	}
	full := func(out []*accounting.StoredRecord) bool { return q.Limit > 0 && len(out) >= q.Limit }
	txn := s.txn()
	// The narrowest index, walked in seq order where it allows.
	var it memdb.ResultIterator
	var err error
	var same func(r *accounting.UsageRecord) bool
	switch {
	case q.JobID != 0:
		it, err = txn.LowerBound(tRecords, iJobSq, q.JobID, q.AfterSeq+1)
		same = func(r *accounting.UsageRecord) bool { return r.JobID == q.JobID }
	case q.User != "":
		it, err = txn.LowerBound(tRecords, iUserSq, q.User, q.AfterSeq+1)
		same = func(r *accounting.UsageRecord) bool { return r.User == q.User }
	case q.Account != "":
		it, err = txn.LowerBound(tRecords, iAcctSq, q.Account, q.AfterSeq+1)
		same = func(r *accounting.UsageRecord) bool { return r.Account == q.Account }
	case !q.From.IsZero() || !q.To.IsZero():
		// End-time order: collect the range, then restore seq order.
		if it, err = txn.LowerBound(tRecords, iEndSq, uint64(from), uint64(0)); err != nil {
			return nil
		}
		var out []*accounting.StoredRecord
		for raw := it.Next(); raw != nil; raw = it.Next() {
			r := raw.(*accounting.StoredRecord)
			if !q.To.IsZero() && nanos(r.Record.EndTime) >= to {
				break
			}
			if match(&r.Record) {
				out = append(out, r)
			}
		}
		slices.SortFunc(out, func(a, b *accounting.StoredRecord) int { return cmpSeq(a.Record.Seq, b.Record.Seq) })
		if q.Limit > 0 && len(out) > q.Limit {
			out = out[:q.Limit]
		}
		return out
	default:
		it, err = txn.LowerBound(tRecords, iID, q.AfterSeq+1)
		same = func(*accounting.UsageRecord) bool { return true }
	}
	if err != nil {
		return nil
	}
	var out []*accounting.StoredRecord
	for raw := it.Next(); raw != nil && !full(out); raw = it.Next() {
		r := raw.(*accounting.StoredRecord)
		if !same(&r.Record) {
			break
		}
		if match(&r.Record) {
			out = append(out, r)
		}
	}
	return out
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// nanos is t in Unix nanoseconds, clamped to what the end-time index holds.
func nanos(t time.Time) int64 {
	switch {
	case t.IsZero() || t.Unix() < 0:
		return 0
	case t.Unix() >= math.MaxInt64/1_000_000_000:
		return math.MaxInt64
	}
	return t.UnixNano()
}

// seqRun returns up to n records from seq first on, in seq order (n 0:
// all).
func (s *Snapshot) seqRun(first uint64, n uint64) []*accounting.StoredRecord {
	it, err := s.txn().LowerBound(tRecords, iID, first)
	if err != nil {
		return nil
	}
	var out []*accounting.StoredRecord
	for raw := it.Next(); raw != nil && (n == 0 || uint64(len(out)) < n); raw = it.Next() {
		out = append(out, raw.(*accounting.StoredRecord))
	}
	return out
}

// UnsealedRecords returns up to limit records not yet in an epoch, in seq
// order (limit 0: all).
func (s *Snapshot) UnsealedRecords(limit int) []*accounting.StoredRecord {
	first := uint64(1)
	if e := s.LastEpoch(); e != nil {
		first = e.Epoch.LastSeq + 1
	}
	return s.seqRun(first, uint64(max(limit, 0)))
}

// UnsealedCount is the number of records not yet in an epoch.
func (s *Snapshot) UnsealedCount() uint64 {
	if e := s.LastEpoch(); e != nil {
		return s.meta.RecordSeq - e.Epoch.LastSeq
	}
	return s.meta.RecordSeq
}

// Epoch looks up a sealed epoch (nil if not sealed).
func (s *Snapshot) Epoch(n uint64) *accounting.EpochInfo {
	return first[accounting.EpochInfo](s, tEpochs, iID, n)
}

// LastEpoch is the newest sealed epoch (nil: none).
func (s *Snapshot) LastEpoch() *accounting.EpochInfo {
	raw, err := s.txn().Last(tEpochs, iID)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*accounting.EpochInfo)
}

// Epochs returns up to limit epochs in ascending number from number from;
// from 0 means the newest limit epochs. Limit 0 is no limit.
func (s *Snapshot) Epochs(from uint64, limit int) []*accounting.EpochInfo {
	if from == 0 {
		from = 1
		if last := s.LastEpoch(); last != nil && limit > 0 && last.Epoch.Number > uint64(limit) {
			from = last.Epoch.Number - uint64(limit) + 1
		}
	}
	it, err := s.txn().LowerBound(tEpochs, iID, from)
	if err != nil {
		return nil
	}
	var out []*accounting.EpochInfo
	for raw := it.Next(); raw != nil && (limit <= 0 || len(out) < limit); raw = it.Next() {
		out = append(out, raw.(*accounting.EpochInfo))
	}
	return out
}

// UnanchoredEpochs returns the sealed epochs not yet anchored, oldest
// first: the anchoring queue.
func (s *Snapshot) UnanchoredEpochs() []*accounting.EpochInfo {
	return s.Epochs(s.meta.AnchoredEpoch+1, 0)
}

// EpochRecords returns an epoch's records in seq order (nil if the epoch
// is not sealed).
func (s *Snapshot) EpochRecords(n uint64) []*accounting.StoredRecord {
	e := s.Epoch(n)
	if e == nil {
		return nil
	}
	return s.seqRun(e.Epoch.FirstSeq, e.Epoch.Count)
}

// Prices is the price set in force: the newest stored, else the default.
func (s *Snapshot) Prices() accounting.PriceSet {
	raw, err := s.txn().Last(tPrices, iID)
	if err != nil || raw == nil {
		return accounting.DefaultPriceSet()
	}
	return *raw.(*accounting.PriceSet)
}

// PriceVersion looks up one price version (the default for version 1
// while none is stored).
func (s *Snapshot) PriceVersion(v uint64) *accounting.PriceSet {
	if ps := first[accounting.PriceSet](s, tPrices, iID, v); ps != nil {
		return ps
	}
	if d := accounting.DefaultPriceSet(); v == 1 {
		return &d
	}
	return nil
}

// PriceHistory returns every price version, oldest first.
func (s *Snapshot) PriceHistory() []accounting.PriceSet {
	var out []accounting.PriceSet
	for _, ps := range list[accounting.PriceSet](s, tPrices, iID) {
		out = append(out, *ps)
	}
	if len(out) == 0 {
		out = append(out, accounting.DefaultPriceSet())
	}
	return out
}

// ChainConfig is the cluster-wide anchoring chain endpoint (zero: unset).
func (s *Snapshot) ChainConfig() accounting.ChainInfo {
	if c := first[accounting.ChainInfo](s, tChain, iID, chainKey); c != nil {
		return *c
	}
	return accounting.ChainInfo{}
}
