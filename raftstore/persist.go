package raftstore

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-memdb"
	"github.com/stockade-hpc/stockade/accounting"
	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/policy"
)

// The snapshot stream is JSON lines: a header, then one record per line.
// Records use the wire types, so the format changes only with api.
// Version 2 added the attestation tables, version 3 the scheduling
// policy tables and job steps, version 4 the usage ledger; older streams,
// which lack them, are still read.
const (
	snapshotFormat     = "stockade-state"
	snapshotVersion    = 4
	snapshotMinVersion = 1
)

type snapHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

type snapRecord struct {
	Kind string `json:"k"`
	Val  any    `json:"v"`
	// TokenHash sits beside the user because api.User does not marshal it.
	TokenHash string `json:"token_hash,omitempty"`
}

type snapRecordIn struct {
	Kind      string          `json:"k"`
	Val       json.RawMessage `json:"v"`
	TokenHash string          `json:"token_hash,omitempty"`
}

// Record kinds with their tables, in write order.
var snapTables = []struct{ kind, table string }{
	{"meta", tMeta},
	{"partition", tPartitions},
	{"node", tNodes},
	{"user", tUsers},
	{"account", tAccounts},
	{"controller", tControllers},
	{"job", tJobs},
	{"policy", tPolicy},
	{"approved_ek", tApprovedEKs},
	{"revoked_cert", tRevoked},
	{"audit", tAudit},
	{"qos", tQOS},
	{"assoc", tAssocs},
	{"fairshare_usage", tUsage},
	{"reservation", tResv},
	{"sched_config", tSchedConfig},
	{"step", tSteps},
	{"acct_prices", tPrices},
	{"acct_record", tRecords},
	{"acct_epoch", tEpochs},
	{"acct_chain", tChain},
}

// WriteTo writes the whole state as a versioned JSON-lines stream, the
// format of Raft snapshots. Output is deterministic for a given state.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 256<<10)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(snapHeader{Format: snapshotFormat, Version: snapshotVersion}); err != nil {
		return cw.n, err
	}
	txn := s.txn()
	for _, t := range snapTables {
		it, err := txn.Get(t.table, iID)
		if err != nil {
			return cw.n, err
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			rec := snapRecord{Kind: t.kind, Val: raw}
			if u, ok := raw.(*api.User); ok {
				rec.TokenHash = u.TokenHash
			}
			if err := enc.Encode(&rec); err != nil {
				return cw.n, err
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Restore replaces the whole state with one written by Snapshot.WriteTo.
// The new state is built aside and swapped in at once; on error the
// current state is untouched.
func (s *Store) Restore(r io.Reader) error {
	db, err := readState(r)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.db.Store(db)
	s.addEvents(SchedEvents{Changes: 1})
	s.publish(newSnapshot(db).Index())
	return nil
}

func readState(r io.Reader) (*memdb.MemDB, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 256<<10))
	var h snapHeader
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("state snapshot header: %w", err)
	}
	if h.Format != snapshotFormat || h.Version < snapshotMinVersion || h.Version > snapshotVersion {
		return nil, fmt.Errorf("state snapshot: unsupported format %q version %d", h.Format, h.Version)
	}
	db := newDB()
	txn := db.Txn(true)
	defer txn.Abort()
	for n := 1; ; n++ {
		var rec snapRecordIn
		if err := dec.Decode(&rec); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("state snapshot record %d: %w", n, err)
		}
		obj, table, err := decodeRecord(&rec)
		if err != nil {
			return nil, fmt.Errorf("state snapshot record %d: %w", n, err)
		}
		if err := txn.Insert(table, obj); err != nil {
			return nil, fmt.Errorf("state snapshot record %d (%s): %w", n, rec.Kind, err)
		}
	}
	txn.Commit()
	return db, nil
}

func decodeRecord(rec *snapRecordIn) (any, string, error) {
	var obj any
	var table string
	switch rec.Kind {
	case "meta":
		obj, table = &stateMeta{Key: metaKey}, tMeta
	case "partition":
		obj, table = &api.Partition{}, tPartitions
	case "node":
		obj, table = &api.Node{}, tNodes
	case "user":
		obj, table = &api.User{}, tUsers
	case "account":
		obj, table = &api.Account{}, tAccounts
	case "controller":
		obj, table = &api.Controller{}, tControllers
	case "job":
		obj, table = &api.Job{}, tJobs
	case "policy":
		obj, table = &policy.Policy{}, tPolicy
	case "approved_ek":
		obj, table = &api.ApprovedEK{}, tApprovedEKs
	case "revoked_cert":
		obj, table = &api.RevokedCert{}, tRevoked
	case "audit":
		obj, table = &api.AuditRecord{}, tAudit
	case "qos":
		obj, table = &api.QOS{}, tQOS
	case "assoc":
		obj, table = &api.Association{}, tAssocs
	case "fairshare_usage":
		obj, table = &api.FairShareUsage{}, tUsage
	case "reservation":
		obj, table = &api.Reservation{}, tResv
	case "sched_config":
		obj, table = &schedConfigRow{}, tSchedConfig
	case "step":
		obj, table = &api.JobStep{}, tSteps
	case "acct_prices":
		obj, table = &accounting.PriceSet{}, tPrices
	case "acct_record":
		obj, table = &accounting.StoredRecord{}, tRecords
	case "acct_epoch":
		obj, table = &accounting.EpochInfo{}, tEpochs
	case "acct_chain":
		obj, table = &accounting.ChainInfo{}, tChain
	default:
		return nil, "", fmt.Errorf("unknown record kind %q", rec.Kind)
	}
	if err := json.Unmarshal(rec.Val, obj); err != nil {
		return nil, "", err
	}
	if u, ok := obj.(*api.User); ok {
		u.TokenHash = rec.TokenHash
	}
	return obj, table, nil
}
