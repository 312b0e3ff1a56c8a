package accounting

import (
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Wire types of the /v1/acct routes (docs/api.md). The state store keeps
// StoredRecord, PriceSet, EpochInfo and ChainInfo as they are sent.

// Settlement statuses of a stored record. Only an admin moves them; the
// record itself never changes.
const (
	SettlementUnsettled = "unsettled"
	SettlementInvoiced  = "invoiced"
	SettlementSettled   = "settled"
	SettlementDisputed  = "disputed"
	SettlementWaived    = "waived"
)

// ValidSettlement checks a settlement status.
func ValidSettlement(s string) error {
	switch s {
	case SettlementUnsettled, SettlementInvoiced, SettlementSettled, SettlementDisputed, SettlementWaived:
		return nil
	}
	return fmt.Errorf("status: %q is not unsettled, invoiced, settled, disputed or waived", s)
}

// HexHash is a 32-byte hash written as "0x" hex in JSON.
type HexHash [32]byte

func (h HexHash) String() string { return HashHex(h) }

// MarshalText writes "0x" hex.
func (h HexHash) MarshalText() ([]byte, error) { return []byte(HashHex(h)), nil }

// UnmarshalText reads 64 hex digits, "0x" optional.
func (h *HexHash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	*h = v
	return err
}

// StoredRecord is a usage record as the state store keeps it: the record
// and its hash never change; Epoch is set once when sealed; Settlement
// moves by admin command only.
type StoredRecord struct {
	Record UsageRecord `json:"record"`
	Hash   HexHash     `json:"hash"`
	// Epoch is the sealed epoch holding the record; 0 until sealed.
	Epoch      uint64 `json:"epoch"`
	Settlement string `json:"settlement"`
	// SettlementAt is when Settlement last changed; zero while unsettled
	// since the record was written.
	SettlementAt time.Time `json:"settlement_at,omitzero"`
}

// PriceSet is one version of the prices and beneficiaries; a record's
// PriceVersion names the set it was priced with. Prices.Version is the
// version.
type PriceSet struct {
	Prices        PriceTable    `json:"prices"`
	Beneficiaries Beneficiaries `json:"beneficiaries"`
	SetAt         time.Time     `json:"set_at,omitzero"`
	// SetBy is the admin, or "config" for the [accounting] section and
	// "default" for the built-in table.
	SetBy string `json:"set_by,omitempty"`
}

// ChainInfo is the cluster-wide chain endpoint epochs are anchored on.
type ChainInfo struct {
	RPCURL   string `json:"rpc_url"`
	ChainID  uint64 `json:"chain_id"`
	Contract string `json:"contract"`
}

// EpochInfo is a sealed epoch: its header, the commitment anchored for it
// and, once anchored, where.
type EpochInfo struct {
	Epoch      Epoch   `json:"epoch"`
	Commitment HexHash `json:"commitment"`
	// Anchor is nil until the epoch is anchored.
	Anchor     *Anchor   `json:"anchor"`
	AnchoredAt time.Time `json:"anchored_at,omitzero"`
}

// RecordQuery selects records; zero fields do not filter.
type RecordQuery struct {
	JobID   uint64
	User    string
	Account string
	// From (inclusive) and To (exclusive) bound the record's end time.
	From, To time.Time
	// AfterSeq pages: only records with a greater seq.
	AfterSeq uint64
	// Limit caps the answer; 0 is the server's default (1000).
	Limit int
}

// Values is q as query parameters.
func (q RecordQuery) Values() url.Values {
	v := url.Values{}
	if q.JobID != 0 {
		v.Set("job", strconv.FormatUint(q.JobID, 10))
	}
	setStr(v, "user", q.User)
	setStr(v, "account", q.Account)
	setTime(v, "from", q.From)
	setTime(v, "to", q.To)
	if q.AfterSeq != 0 {
		v.Set("after_seq", strconv.FormatUint(q.AfterSeq, 10))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// RecordsResponse answers GET /v1/acct/records, in seq order.
type RecordsResponse struct {
	Records []StoredRecord `json:"records"`
	// NextAfterSeq is the after_seq of the next page; 0 when this was the
	// last.
	NextAfterSeq uint64 `json:"next_after_seq,omitempty"`
}

// EpochsResponse answers GET /v1/acct/epochs, in ascending number.
type EpochsResponse struct {
	Epochs []EpochInfo `json:"epochs"`
	Chain  ChainInfo   `json:"chain"`
}

// EpochDetail answers GET /v1/acct/epochs/{n}: the epoch and all its
// records in seq order.
type EpochDetail struct {
	EpochInfo
	Records []StoredRecord `json:"records"`
	Chain   ChainInfo      `json:"chain"`
}

// Split returns the records and their stored hashes, as VerifyEpoch takes
// them.
func (d *EpochDetail) Split() ([]UsageRecord, [][32]byte) {
	recs := make([]UsageRecord, len(d.Records))
	hashes := make([][32]byte, len(d.Records))
	for i, r := range d.Records {
		recs[i], hashes[i] = r.Record, r.Hash
	}
	return recs, hashes
}

// PricesResponse answers GET and POST /v1/acct/prices.
type PricesResponse struct {
	Current PriceSet `json:"current"`
	// History holds every version, oldest first, the current one last.
	History []PriceSet `json:"history"`
}

// SetPricesRequest is the body of POST /v1/acct/prices; a nil part keeps
// the current one. The server assigns the version; sending what is
// already current changes nothing.
type SetPricesRequest struct {
	Prices        *PriceTable    `json:"prices,omitempty"`
	Beneficiaries *Beneficiaries `json:"beneficiaries,omitempty"`
}

// StatementQuery selects and groups records for GET /v1/acct/statement.
type StatementQuery struct {
	Account     string
	User        string
	Beneficiary string
	// From (inclusive) and To (exclusive) bound the record's end time.
	From, To time.Time
	// Period is day, week, month or all ("" is all).
	Period Period
}

// Values is q as query parameters.
func (q StatementQuery) Values() url.Values {
	v := url.Values{}
	setStr(v, "account", q.Account)
	setStr(v, "user", q.User)
	setStr(v, "beneficiary", q.Beneficiary)
	setTime(v, "from", q.From)
	setTime(v, "to", q.To)
	setStr(v, "period", string(q.Period))
	return v
}

// StatementResponse answers GET /v1/acct/statement.
type StatementResponse struct {
	Lines []StatementLine `json:"lines"`
}

// SettlementRequest is the body of POST /v1/acct/settlement.
type SettlementRequest struct {
	Seqs   []uint64 `json:"seqs"`
	Status string   `json:"status"`
}

// SettlementResponse counts the records whose status changed; records
// already in the status are not counted.
type SettlementResponse struct {
	Updated uint64 `json:"updated"`
}

func setStr(v url.Values, k, s string) {
	if s != "" {
		v.Set(k, s)
	}
}

func setTime(v url.Values, k string, t time.Time) {
	if !t.IsZero() {
		v.Set(k, t.UTC().Format(time.RFC3339Nano))
	}
}

// DefaultPriceSet is price version 1, in force until prices are set:
// credits at 1 per CPU-hour, 0.1 per GiB-hour of peak memory and 20 per
// GPU-hour; 70% to node operators, 25% to the cluster operator
// ("cluster"), 5% to image publishers, none to charity.
func DefaultPriceSet() PriceSet {
	return PriceSet{
		Prices: PriceTable{
			Version:   1,
			Currency:  "credit",
			CPUHour:   1_000_000,
			MemGBHour: 100_000,
			GPUHour:   20_000_000,
			Split:     Split{NodeOperator: 7000, ClusterOperator: 2500, ImagePublisher: 500, Charity: 0},
		},
		Beneficiaries: Beneficiaries{ClusterOperator: "cluster"},
		SetBy:         "default",
	}
}
