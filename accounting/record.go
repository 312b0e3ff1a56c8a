package accounting

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stockade-hpc/stockade/api"
)

// UsageRecord is the immutable account of one finished job or array task.
// Every field is covered by Hash; the JSON names are the canonical field
// names. Amounts are integer micro-units of Currency.
type UsageRecord struct {
	// Seq is the global record number (from 1), assigned by the state store.
	Seq         uint64 `json:"seq"`
	JobID       uint64 `json:"job_id"`
	ArrayJobID  uint64 `json:"array_job_id"`
	ArrayTaskID int64  `json:"array_task_id"` // -1 when not an array task
	User        string `json:"user"`
	Account     string `json:"account"`
	Partition   string `json:"partition"`
	QOS         string `json:"qos"`
	// Nodes in allocation order; the first gets the node share's remainder.
	Nodes []string `json:"nodes"`
	// Image is the container reference as submitted; ImageDigest its
	// "algorithm:hex" digest when the reference pins one.
	Image       string `json:"image"`
	ImageDigest string `json:"image_digest"`
	// Times are UTC; the zero time means unset.
	SubmitTime time.Time `json:"submit_time,omitzero"`
	StartTime  time.Time `json:"start_time,omitzero"`
	EndTime    time.Time `json:"end_time,omitzero"`
	// WallSec is EndTime-StartTime (else the metered wall time), rounded
	// half up to whole seconds; the quantities below derive from it.
	WallSec         uint64 `json:"wall_sec"`
	CPUMillis       uint64 `json:"cpu_millis"`
	PeakMemoryBytes uint64 `json:"peak_memory_bytes"`
	// MemoryMBSeconds is PeakMemoryBytes/2^20 × WallSec, rounded half up.
	MemoryMBSeconds uint64 `json:"memory_mb_seconds"`
	// GPUSeconds is allocated GPUs per node × nodes × WallSec.
	GPUSeconds      uint64 `json:"gpu_seconds"`
	BlockReadBytes  uint64 `json:"block_read_bytes"`
	BlockWriteBytes uint64 `json:"block_write_bytes"`
	State           string `json:"state"`
	ExitCode        int64  `json:"exit_code"`
	ExitSignal      int64  `json:"exit_signal"`
	PriceVersion    uint64 `json:"price_version"`
	Currency        string `json:"currency"`
	Charge          int64  `json:"charge"`
	// Payouts; they sum to Charge. An empty beneficiary's share went to the
	// cluster operator.
	NodeOperatorPay    map[string]int64 `json:"node_operator_pay"`
	ClusterOperator    string           `json:"cluster_operator"`
	ClusterOperatorPay int64            `json:"cluster_operator_pay"`
	ImagePublisher     string           `json:"image_publisher"`
	ImagePublisherPay  int64            `json:"image_publisher_pay"`
	Charity            string           `json:"charity"`
	CharityPay         int64            `json:"charity_pay"`
	// Private fields, as hashes only (see the package documentation).
	CommandHash [32]byte `json:"command_hash"`
	CommentHash [32]byte `json:"comment_hash"`
	WorkDirHash [32]byte `json:"work_dir_hash"`
	OutputHash  [32]byte `json:"output_hash"`
}

// NewRecord computes the record of a finished job, priced with prices and
// paid out to b. Seq is left for the state store. Callers validate prices
// and b first; with an invalid split the whole charge goes to the cluster
// operator.
func NewRecord(job *api.Job, prices PriceTable, b Beneficiaries) UsageRecord {
	s := &job.Spec
	u := &job.Usage
	r := UsageRecord{
		JobID:           job.ID,
		ArrayJobID:      job.ArrayJobID,
		ArrayTaskID:     int64(job.ArrayTaskID),
		User:            utf8Clean(job.User),
		Account:         utf8Clean(s.Account),
		Partition:       utf8Clean(s.Partition),
		QOS:             utf8Clean(s.QOS),
		Image:           utf8Clean(s.Image),
		SubmitTime:      cleanTime(job.SubmitTime),
		StartTime:       cleanTime(job.StartTime),
		EndTime:         cleanTime(job.EndTime),
		CPUMillis:       divRound(u.CPUTimeNs, 1e6),
		PeakMemoryBytes: u.MaxMemoryB,
		BlockReadBytes:  u.BlockReadB,
		BlockWriteBytes: u.BlockWriteB,
		State:           utf8Clean(string(job.State)),
		ExitCode:        int64(job.ExitCode),
		ExitSignal:      int64(job.ExitSignal),
		CommandHash:     PrivateHash("command", append([]string{s.Script}, s.Argv...)...),
		CommentHash:     PrivateHash("comment", s.Comment),
		WorkDirHash:     PrivateHash("workdir", s.WorkDir),
		OutputHash:      PrivateHash("output", s.Output, s.Error),
	}
	if len(job.Nodes) > 0 {
		r.Nodes = make([]string, len(job.Nodes))
		for i, n := range job.Nodes {
			r.Nodes[i] = utf8Clean(n)
		}
	}
	r.ImageDigest = imageDigest(r.Image)
	wall := u.WallTimeNs
	if !job.StartTime.IsZero() && !job.EndTime.IsZero() && !job.EndTime.Before(job.StartTime) {
		wall = uint64(job.EndTime.Sub(job.StartTime)) // Sub saturates
	}
	r.WallSec = divRound(wall, 1e9)
	r.MemoryMBSeconds = mulDivRound(r.PeakMemoryBytes, r.WallSec, 1<<20)
	r.GPUSeconds = mulSat(mulSat(uint64(max(job.AllocGPUs, 0)), uint64(len(job.Nodes))), r.WallSec)
	return Price(r, prices, b)
}

// MemoryGBHours is MemoryMBSeconds in GiB-hours, for display only.
func (r *UsageRecord) MemoryGBHours() float64 {
	return float64(r.MemoryMBSeconds) / (1024 * 3600)
}

// Earnings is what the record pays beneficiary across all roles.
func (r *UsageRecord) Earnings(beneficiary string) int64 {
	e := r.NodeOperatorPay[beneficiary]
	if r.ClusterOperator == beneficiary {
		e += r.ClusterOperatorPay
	}
	if r.ImagePublisher == beneficiary {
		e += r.ImagePublisherPay
	}
	if r.Charity == beneficiary {
		e += r.CharityPay
	}
	return e
}

// Pays reports whether beneficiary has a role in the record.
func (r *UsageRecord) Pays(beneficiary string) bool {
	if _, ok := r.NodeOperatorPay[beneficiary]; ok {
		return true
	}
	return r.ClusterOperator == beneficiary || r.ImagePublisher == beneficiary || r.Charity == beneficiary
}

// Validate checks that the record is encodable without ambiguity (UTF-8
// strings, times in (1970, 2262]) and that its payouts add up.
func (r *UsageRecord) Validate() error {
	if err := r.encodable(); err != nil {
		return err
	}
	if r.Charge < 0 {
		return errors.New("charge: negative")
	}
	sum, ok := int64(0), true
	add := func(name string, v int64) error {
		if v < 0 {
			return fmt.Errorf("%s: negative", name)
		}
		var o bool
		sum, o = addInt(sum, v)
		ok = ok && o
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(r.NodeOperatorPay)) {
		if err := add("node_operator_pay", r.NodeOperatorPay[k]); err != nil {
			return fmt.Errorf("%w for %s", err, k)
		}
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"cluster_operator_pay", r.ClusterOperatorPay}, {"image_publisher_pay", r.ImagePublisherPay}, {"charity_pay", r.CharityPay}} {
		if err := add(f.name, f.v); err != nil {
			return err
		}
	}
	if !ok || sum != r.Charge {
		return fmt.Errorf("payouts: sum to %d, charge is %d", sum, r.Charge)
	}
	return nil
}

// encodable rejects values two of which would encode alike: strings the
// JSON form cannot carry and times outside the canonical range.
func (r *UsageRecord) encodable() error {
	for _, f := range [...]struct{ name, v string }{
		{"user", r.User}, {"account", r.Account}, {"partition", r.Partition}, {"qos", r.QOS},
		{"image", r.Image}, {"image_digest", r.ImageDigest}, {"state", r.State}, {"currency", r.Currency},
		{"cluster_operator", r.ClusterOperator}, {"image_publisher", r.ImagePublisher}, {"charity", r.Charity},
	} {
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%s: not UTF-8", f.name)
		}
	}
	for _, s := range r.Nodes {
		if !utf8.ValidString(s) {
			return errors.New("nodes: not UTF-8")
		}
	}
	for s := range r.NodeOperatorPay {
		if !utf8.ValidString(s) {
			return errors.New("node_operator_pay: not UTF-8")
		}
	}
	for _, f := range [...]struct {
		name string
		t    time.Time
	}{{"submit_time", r.SubmitTime}, {"start_time", r.StartTime}, {"end_time", r.EndTime}} {
		if !validTime(f.t) {
			return fmt.Errorf("%s: %s is outside 1970..2262", f.name, f.t.Format(time.RFC3339Nano))
		}
	}
	return nil
}

// recordJSON overrides the hash fields of the embedded record with their
// hex form; the shallower fields win in encoding/json.
type recordJSON struct {
	*recordAlias
	CommandHash hexHash `json:"command_hash"`
	CommentHash hexHash `json:"comment_hash"`
	WorkDirHash hexHash `json:"work_dir_hash"`
	OutputHash  hexHash `json:"output_hash"`
}

type recordAlias UsageRecord

// MarshalJSON writes hashes as "0x" hex.
func (r UsageRecord) MarshalJSON() ([]byte, error) {
	return json.Marshal(recordJSON{(*recordAlias)(&r), r.CommandHash, r.CommentHash, r.WorkDirHash, r.OutputHash})
}

// UnmarshalJSON refuses records that could not have been hashed
// unambiguously.
func (r *UsageRecord) UnmarshalJSON(b []byte) error {
	var v recordJSON
	v.recordAlias = new(recordAlias)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	rec := UsageRecord(*v.recordAlias)
	rec.CommandHash, rec.CommentHash, rec.WorkDirHash, rec.OutputHash = v.CommandHash, v.CommentHash, v.WorkDirHash, v.OutputHash
	if err := rec.encodable(); err != nil {
		return fmt.Errorf("usage record: %w", err)
	}
	*r = rec
	return nil
}

// PrivateHash is how a private field enters a record: Keccak-256 of
// str("stockade-private/v1/"+kind), the part count and str(part) per part,
// or zero when every part is empty. It is unsalted, so that owners can
// check it; a guessable value (a short comment, a usual path) can be
// confirmed by hashing guesses.
func PrivateHash(kind string, parts ...string) [32]byte {
	empty := true
	for _, p := range parts {
		empty = empty && p == ""
	}
	if empty {
		return [32]byte{}
	}
	b := appendStr(nil, "stockade-private/v1/"+kind)
	b = binary.BigEndian.AppendUint32(b, uint32(len(parts)))
	for _, p := range parts {
		b = appendStr(b, p)
	}
	return Keccak256(b)
}

// imageDigest is the digest a reference pins ("name@sha256:..."), or "".
func imageDigest(ref string) string {
	if i := strings.LastIndexByte(ref, '@'); i >= 0 {
		return ref[i+1:]
	}
	return ""
}

// utf8Clean keeps records encodable: JSON could not carry invalid bytes.
func utf8Clean(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// cleanTime is t in UTC without its monotonic reading; a time the
// canonical form cannot carry becomes unset.
func cleanTime(t time.Time) time.Time {
	if !validTime(t) {
		return time.Time{}
	}
	if t.IsZero() {
		return t
	}
	return t.UTC().Round(0)
}

// divRound is a/d rounded half up.
func divRound(a, d uint64) uint64 {
	q, r := a/d, a%d
	if r >= d-r {
		q++
	}
	return q
}

// mulDivRound is a×b/d rounded half up, saturating.
func mulDivRound(a, b, d uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	lo, c := bits.Add64(lo, d/2, 0)
	hi += c
	if hi >= d {
		return math.MaxUint64
	}
	q, _ := bits.Div64(hi, lo, d)
	return q
}

func mulSat(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
}

func addInt(a, b int64) (int64, bool) {
	s := a + b
	return s, (s > a) == (b > 0)
}
