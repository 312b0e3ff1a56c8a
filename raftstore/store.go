// Package raftstore is the controllers' replicated state: a go-memdb state
// store driven by a Raft log (hashicorp/raft over mutual TLS, raft-wal on
// disk). Store is the deterministic state machine; Node wires it to Raft.
package raftstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-memdb"
	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/api"
)

// Table and index names.
const (
	tJobs        = "jobs"
	tNodes       = "nodes"
	tPartitions  = "partitions"
	tUsers       = "users"
	tAccounts    = "accounts"
	tControllers = "controllers"
	tMeta        = "meta"
	tPolicy      = "policy"
	tApprovedEKs = "approved_eks"
	tRevoked     = "revoked_certs"
	tAudit       = "audit"
	tQOS         = "qos"
	tAssocs      = "assocs"
	tUsage       = "fairshare_usage"
	tResv        = "reservations"
	tSchedConfig = "sched_config"
	tSteps       = "steps"
	tRecords     = "acct_records"
	tPrices      = "acct_prices"
	tEpochs      = "acct_epochs"
	tChain       = "acct_chain"

	iID     = "id"
	iState  = "state"
	iUser   = "user"
	iArray  = "array"
	iSubmit = "submit"
	iNode   = "node" // non-terminal jobs by allocated node
	iToken  = "token"
	iSerial = "serial"   // nodes by current certificate serial
	iNodeSq = "node_seq" // audit records by node, then seq
	// Usage records by a field, then seq.
	iJobSq  = "job_seq"
	iUserSq = "user_seq"
	iAcctSq = "account_seq"
	iEndSq  = "end_seq"
)

// schedConfigKey is the id of the single scheduler configuration row.
const schedConfigKey = "cluster"

// schedConfigRow holds the stored scheduler configuration.
type schedConfigRow struct {
	Config api.SchedConfig `json:"config"`
}

// policyKey is the id of the single policy row.
const policyKey = "cluster"

const metaKey = "state"

// stateMeta is the one-row table holding counters that must be replicated
// with the rest of the state.
type stateMeta struct {
	Key       string `json:"-"`
	Index     uint64 `json:"index"`
	NextJobID uint64 `json:"next_job_id"`
	// RecordSeq is the seq of the last usage record written (0: none).
	RecordSeq uint64 `json:"record_seq,omitempty"`
	// AnchoredEpoch is the last anchored epoch; epochs are anchored in
	// order, so every one up to it is.
	AnchoredEpoch uint64 `json:"anchored_epoch,omitempty"`
}

// uintIndexer indexes a uint64 big-endian so iteration order is numeric
// (memdb's UintFieldIndex uses varints, which do not sort).
type uintIndexer struct {
	get func(obj any) (uint64, bool)
}

func (u uintIndexer) FromObject(obj any) (bool, []byte, error) {
	v, ok := u.get(obj)
	if !ok {
		return false, nil, nil
	}
	return true, binary.BigEndian.AppendUint64(make([]byte, 0, 16), v), nil
}

func (u uintIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, errors.New("want one argument")
	}
	v, ok := args[0].(uint64)
	if !ok {
		return nil, fmt.Errorf("want uint64, got %T", args[0])
	}
	return binary.BigEndian.AppendUint64(nil, v), nil
}

// strIndexer indexes a string value. The NUL terminator keeps "ab" from
// prefix-matching "abc" in non-unique indexes (memdb appends the id).
type strIndexer struct {
	get func(obj any) (string, bool)
}

func (s strIndexer) FromObject(obj any) (bool, []byte, error) {
	v, ok := s.get(obj)
	if !ok {
		return false, nil, nil
	}
	return true, append([]byte(v), 0), nil
}

func (s strIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, errors.New("want one argument")
	}
	v, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("want string, got %T", args[0])
	}
	return append([]byte(v), 0), nil
}

// strsIndexer indexes every string of a slice.
type strsIndexer struct {
	get func(obj any) []string
}

func (s strsIndexer) FromObject(obj any) (bool, [][]byte, error) {
	vs := s.get(obj)
	if len(vs) == 0 {
		return false, nil, nil
	}
	out := make([][]byte, 0, len(vs))
	for _, v := range vs {
		out = append(out, append([]byte(v), 0))
	}
	return true, out, nil
}

func (s strsIndexer) FromArgs(args ...any) ([]byte, error) {
	return strIndexer{}.FromArgs(args...)
}

func nonEmpty(s string) (string, bool) { return s, s != "" }

func schema() *memdb.DBSchema {
	job := func(o any) *api.Job { return o.(*api.Job) }
	byName := func(get func(any) string) map[string]*memdb.IndexSchema {
		return map[string]*memdb.IndexSchema{iID: {
			Name: iID, Unique: true,
			Indexer: strIndexer{get: func(o any) (string, bool) { return nonEmpty(get(o)) }},
		}}
	}
	users := byName(func(o any) string { return o.(*api.User).Name })
	users[iToken] = &memdb.IndexSchema{
		Name: iToken, AllowMissing: true,
		Indexer: strIndexer{get: func(o any) (string, bool) { return nonEmpty(o.(*api.User).TokenID) }},
	}
	nodes := byName(func(o any) string { return o.(*api.Node).Name })
	nodes[iSerial] = &memdb.IndexSchema{
		Name: iSerial, AllowMissing: true,
		Indexer: strIndexer{get: func(o any) (string, bool) { return nonEmpty(o.(*api.Node).CertSerial) }},
	}
	audit := func(o any) *api.AuditRecord { return o.(*api.AuditRecord) }
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tJobs: {Name: tJobs, Indexes: map[string]*memdb.IndexSchema{
			iID: {Name: iID, Unique: true,
				Indexer: uintIndexer{get: func(o any) (uint64, bool) { return job(o).ID, true }}},
			iState: {Name: iState,
				Indexer: strIndexer{get: func(o any) (string, bool) { return string(job(o).State), true }}},
			iUser: {Name: iUser,
				Indexer: strIndexer{get: func(o any) (string, bool) { return job(o).User, true }}},
			iArray: {Name: iArray, AllowMissing: true,
				Indexer: uintIndexer{get: func(o any) (uint64, bool) { return job(o).ArrayJobID, job(o).ArrayJobID != 0 }}},
			iSubmit: {Name: iSubmit, AllowMissing: true,
				Indexer: strIndexer{get: func(o any) (string, bool) { return nonEmpty(job(o).Spec.SubmitID) }}},
			// Only live jobs: terminal ones keep Nodes for history but must
			// not slow down per-node lookups.
			iNode: {Name: iNode, AllowMissing: true,
				Indexer: strsIndexer{get: func(o any) []string {
					if j := job(o); !j.State.Terminal() {
						return j.Nodes
					}
					return nil
				}}},
		}},
		tNodes:       {Name: tNodes, Indexes: nodes},
		tPartitions:  {Name: tPartitions, Indexes: byName(func(o any) string { return o.(*api.Partition).Name })},
		tUsers:       {Name: tUsers, Indexes: users},
		tAccounts:    {Name: tAccounts, Indexes: byName(func(o any) string { return o.(*api.Account).Name })},
		tControllers: {Name: tControllers, Indexes: byName(func(o any) string { return o.(*api.Controller).ID })},
		tMeta:        {Name: tMeta, Indexes: byName(func(o any) string { return o.(*stateMeta).Key })},
		tPolicy:      {Name: tPolicy, Indexes: byName(func(any) string { return policyKey })},
		tApprovedEKs: {Name: tApprovedEKs, Indexes: byName(func(o any) string { return o.(*api.ApprovedEK).Fingerprint })},
		tRevoked:     {Name: tRevoked, Indexes: byName(func(o any) string { return o.(*api.RevokedCert).Serial })},
		tQOS:         {Name: tQOS, Indexes: byName(func(o any) string { return o.(*api.QOS).Name })},
		tAssocs:      {Name: tAssocs, Indexes: byName(func(o any) string { return o.(*api.Association).Key() })},
		tUsage:       {Name: tUsage, Indexes: byName(func(o any) string { return o.(*api.FairShareUsage).Key() })},
		tResv:        {Name: tResv, Indexes: byName(func(o any) string { return o.(*api.Reservation).Name })},
		tSchedConfig: {Name: tSchedConfig, Indexes: byName(func(any) string { return schedConfigKey })},
		// Steps by job then step id.
		tSteps: {Name: tSteps, Indexes: map[string]*memdb.IndexSchema{
			iID: {Name: iID, Unique: true,
				Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
					uintIndexer{get: func(o any) (uint64, bool) { return o.(*api.JobStep).JobID, true }},
					uintIndexer{get: func(o any) (uint64, bool) { return uint64(o.(*api.JobStep).StepID), true }},
				}}},
		}},
		tRecords: {Name: tRecords, Indexes: recordIndexes()},
		tPrices: {Name: tPrices, Indexes: map[string]*memdb.IndexSchema{
			iID: {Name: iID, Unique: true,
				Indexer: uintIndexer{get: func(o any) (uint64, bool) { return o.(*accounting.PriceSet).Prices.Version, true }}},
		}},
		tEpochs: {Name: tEpochs, Indexes: map[string]*memdb.IndexSchema{
			iID: {Name: iID, Unique: true,
				Indexer: uintIndexer{get: func(o any) (uint64, bool) { return o.(*accounting.EpochInfo).Epoch.Number, true }}},
		}},
		tChain: {Name: tChain, Indexes: byName(func(any) string { return chainKey })},
		tAudit: {Name: tAudit, Indexes: map[string]*memdb.IndexSchema{
			iID: {Name: iID, Unique: true,
				Indexer: uintIndexer{get: func(o any) (uint64, bool) { return audit(o).Seq, true }}},
			// Node then seq, so one node's log pages without a scan.
			iNodeSq: {Name: iNodeSq, Unique: true, AllowMissing: true,
				Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
					strIndexer{get: func(o any) (string, bool) { return nonEmpty(audit(o).Node) }},
					uintIndexer{get: func(o any) (uint64, bool) { return audit(o).Seq, true }},
				}}},
		}},
	}}
}

// Store is the controller state: an in-memory database whose every change
// comes from a Command. It is safe for concurrent use; writes are
// serialized, reads go through immutable snapshots.
type Store struct {
	db  atomic.Pointer[memdb.MemDB]
	wmu sync.Mutex // serializes writers and restore

	mu      sync.Mutex
	index   uint64
	changed chan struct{} // closed and replaced when index advances
	events  SchedEvents
}

// SchedEvents counts the commands this Store applied by what they may
// change for the scheduler, so that the leader can tell whether a pass
// could start a job the previous one could not (internal/server's
// scheduleLoop). The counts belong to this process (they are neither
// replicated nor persisted) and only grow; compare two readings for
// equality. Commands that failed count nowhere.
type SchedEvents struct {
	// Submits counts submissions that added jobs a pass may start: not
	// held, or held but of a user and account without an association (a
	// new fair-share leaf, which may reorder the whole queue).
	Submits uint64
	// Changes counts every other command that may let a pending job
	// start or change the order of the queue: job reports that changed a
	// job, cancels, holds, releases, requeues, steps, node, partition,
	// user, account, QoS, association, reservation, attestation, policy
	// and configuration changes, and restored snapshots. Not counted, as
	// they cannot: submissions of held jobs of known users, duplicate
	// submissions, the scheduler's own plans, controller records and the
	// usage ledger.
	Changes uint64
}

// SchedEvents returns the counts so far. Read them before taking the
// snapshot they should describe: a change applied in between then counts
// as not yet seen, which costs a pass but never hides a change.
func (s *Store) SchedEvents() SchedEvents {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.events
}

func (s *Store) addEvents(ev SchedEvents) {
	s.mu.Lock()
	s.events.Submits += ev.Submits
	s.events.Changes += ev.Changes
	s.mu.Unlock()
}

// NewStore returns an empty state (index 0, next job id 1).
func NewStore() *Store {
	s := &Store{changed: make(chan struct{})}
	s.db.Store(newDB())
	return s
}

func newDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		panic(err) // the schema is static; this is a programming error
	}
	return db
}

// Index is the Raft index of the last command applied.
func (s *Store) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

// Snapshot returns an immutable view of the current state.
func (s *Store) Snapshot() *Snapshot {
	return newSnapshot(s.db.Load().Snapshot())
}

// WaitForIndex blocks until the state index is greater than after, and
// returns it. It returns ctx's error if ctx ends first.
func (s *Store) WaitForIndex(ctx context.Context, after uint64) (uint64, error) {
	for {
		s.mu.Lock()
		idx, ch := s.index, s.changed
		s.mu.Unlock()
		if idx > after {
			return idx, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return idx, ctx.Err()
		}
	}
}

func (s *Store) publish(index uint64) {
	s.mu.Lock()
	if index != s.index {
		s.index = index
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
}

// ApplyCommand applies one command at a Raft index and returns its result:
// a value described on each command, or an error. It is the deterministic
// core of the FSM (no clock, no I/O); tests and benchmarks of other
// packages drive the state through it without Raft. Indexes should grow.
// A nil cmd only advances the index (as a Raft configuration entry does).
func (s *Store) ApplyCommand(index uint64, cmd *Command) any {
	return s.applyBatch([]entry{{index: index, cmd: cmd}})[0]
}

// entry is one log entry for applyBatch. A nil cmd with nil err only
// advances the index (a Raft configuration entry).
type entry struct {
	index uint64
	cmd   *Command
	err   error // decode failure, returned as the result
}

// internalError aborts a command from deep inside a handler (a memdb
// failure, which means a bug); applyBatch turns it into the command's error.
type internalError struct{ err error }

func must(err error) {
	if err != nil {
		panic(internalError{err})
	}
}

// applyBatch applies entries in one memdb transaction (one commit and one
// wake-up per Raft batch). Handlers validate before they write, so an
// error result leaves no partial change. If a handler panics, the batch is
// redone with one transaction per command so that only the failing one is
// dropped: the outcome is still deterministic on every member.
func (s *Store) applyBatch(es []entry) []any {
	if len(es) == 0 {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	db := s.db.Load()
	out := make([]any, len(es))
	if ok := s.tryApply(db, es, out); !ok {
		for i := range es {
			s.tryApply(db, es[i:i+1], out[i:i+1])
		}
	}
	s.publish(es[len(es)-1].index)
	return out
}

// tryApply applies es in one transaction and, once it is committed,
// counts their SchedEvents.
func (s *Store) tryApply(db *memdb.MemDB, es []entry, out []any) (ok bool) {
	txn := db.Txn(true)
	defer func() {
		if r := recover(); r != nil {
			txn.Abort()
			if len(es) == 1 {
				out[0] = fmt.Errorf("raftstore: command %d at index %d failed: %v", cmdType(es[0].cmd), es[0].index, unwrapPanic(r))
				s.commitIndexOnly(db, es[0].index)
				ok = true
				return
			}
			ok = false
		}
	}()
	a := &applier{txn: txn, meta: readMeta(txn)}
	for i, e := range es {
		a.index = e.index
		switch {
		case e.err != nil:
			out[i] = e.err
		case e.cmd != nil:
			out[i] = a.apply(e.cmd)
		}
	}
	a.meta.Index = es[len(es)-1].index
	must(txn.Insert(tMeta, a.meta))
	txn.Commit()
	// After the commit: a reader that sees the counts sees the changes.
	s.addEvents(a.events)
	return true
}

// commitIndexOnly records that an index was consumed by a failed command.
func (s *Store) commitIndexOnly(db *memdb.MemDB, index uint64) {
	txn := db.Txn(true)
	m := readMeta(txn)
	m.Index = index
	if err := txn.Insert(tMeta, m); err != nil {
		txn.Abort()
		return
	}
	txn.Commit()
}

func unwrapPanic(r any) any {
	if ie, ok := r.(internalError); ok {
		return ie.err
	}
	return r
}

func cmdType(c *Command) CommandType {
	if c == nil {
		return 0
	}
	return c.Type
}

// readMeta returns a private copy of the meta row.
func readMeta(txn *memdb.Txn) *stateMeta {
	raw, err := txn.First(tMeta, iID, metaKey)
	must(err)
	if raw == nil {
		return &stateMeta{Key: metaKey, NextJobID: 1}
	}
	m := *raw.(*stateMeta)
	return &m
}
