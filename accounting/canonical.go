package accounting

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/sha3"
)

// RecordVersion tags the canonical encoding; a new encoding gets a new tag.
const RecordVersion = "stockade-usage-record/v1"

// recordFields is the number of fields the v1 encoding writes.
const recordFields = 38

// Value type tags of the canonical encoding.
const (
	tagUint   = 'U'
	tagInt    = 'I'
	tagTime   = 'T'
	tagString = 'S'
	tagHash   = 'H'
	tagList   = 'L'
	tagMap    = 'M'
)

// Keccak256 is Keccak-256 of the concatenated parts.
func Keccak256(parts ...[]byte) [32]byte {
	k := newHasher()
	for _, p := range parts {
		k.h.Write(p)
	}
	return k.finish()
}

// hasher reuses one Keccak state: hashing is the hot path of sealing.
type hasher struct {
	h   hash.Hash
	buf []byte
	// Scratch space inside the hasher, so that nothing passed to the
	// hash.Hash interface escapes per call.
	node [65]byte
	out  [32]byte
}

func newHasher() *hasher { return &hasher{h: sha3.NewLegacyKeccak256()} }

// finish squeezes the digest; reading instead of Sum avoids cloning the
// state (every use starts with Reset), and reading into k.out keeps the
// result off the heap.
func (k *hasher) finish() [32]byte {
	if r, ok := k.h.(io.Reader); ok {
		r.Read(k.out[:])
		return k.out
	}
	return [32]byte(k.h.Sum(k.out[:0]))
}

func (k *hasher) sum(b []byte) [32]byte {
	k.h.Reset()
	k.h.Write(b)
	return k.finish()
}

// interior hashes 0x01 || l || r in one write.
func (k *hasher) interior(l, r *[32]byte) [32]byte {
	k.node[0] = 0x01
	copy(k.node[1:], l[:])
	copy(k.node[33:], r[:])
	return k.sum(k.node[:])
}

func (k *hasher) leaf(recordHash *[32]byte) [32]byte {
	k.node[0] = 0x00
	copy(k.node[1:], recordHash[:])
	return k.sum(k.node[:33])
}

func (k *hasher) record(r *UsageRecord) [32]byte {
	k.buf = r.appendCanonical(k.buf[:0])
	return k.sum(k.buf)
}

var hasherPool = sync.Pool{New: func() any { return newHasher() }}

// Canonical is the record's canonical encoding, the preimage of Hash.
func (r *UsageRecord) Canonical() []byte { return r.appendCanonical(nil) }

// Hash is Keccak-256 of the record's canonical encoding.
func (r *UsageRecord) Hash() [32]byte {
	k := hasherPool.Get().(*hasher)
	defer hasherPool.Put(k)
	return k.record(r)
}

// HashRecords hashes records in order, spreading large batches over the
// available CPUs.
func HashRecords(records []UsageRecord) [][32]byte {
	out := make([][32]byte, len(records))
	workers := runtime.GOMAXPROCS(0)
	const minChunk = 4096
	if workers < 2 || len(records) < 2*minChunk {
		k := newHasher()
		for i := range records {
			out[i] = k.record(&records[i])
		}
		return out
	}
	chunk := max((len(records)+workers-1)/workers, minChunk)
	var wg sync.WaitGroup
	for lo := 0; lo < len(records); lo += chunk {
		hi := min(lo+chunk, len(records))
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := newHasher()
			for i := lo; i < hi; i++ {
				out[i] = k.record(&records[i])
			}
		}()
	}
	wg.Wait()
	return out
}

// appendCanonical writes the v1 encoding; fields are written by hand in
// name order because this is the hot path (the tests check the order).
func (r *UsageRecord) appendCanonical(b []byte) []byte {
	b = appendName(b, RecordVersion)
	b = binary.BigEndian.AppendUint32(b, recordFields)
	b = fString(b, "account", r.Account)
	b = fUint(b, "array_job_id", r.ArrayJobID)
	b = fInt(b, "array_task_id", r.ArrayTaskID)
	b = fUint(b, "block_read_bytes", r.BlockReadBytes)
	b = fUint(b, "block_write_bytes", r.BlockWriteBytes)
	b = fInt(b, "charge", r.Charge)
	b = fString(b, "charity", r.Charity)
	b = fInt(b, "charity_pay", r.CharityPay)
	b = fString(b, "cluster_operator", r.ClusterOperator)
	b = fInt(b, "cluster_operator_pay", r.ClusterOperatorPay)
	b = fHash(b, "command_hash", &r.CommandHash)
	b = fHash(b, "comment_hash", &r.CommentHash)
	b = fUint(b, "cpu_millis", r.CPUMillis)
	b = fString(b, "currency", r.Currency)
	b = fTime(b, "end_time", r.EndTime)
	b = fInt(b, "exit_code", r.ExitCode)
	b = fInt(b, "exit_signal", r.ExitSignal)
	b = fUint(b, "gpu_seconds", r.GPUSeconds)
	b = fString(b, "image", r.Image)
	b = fString(b, "image_digest", r.ImageDigest)
	b = fString(b, "image_publisher", r.ImagePublisher)
	b = fInt(b, "image_publisher_pay", r.ImagePublisherPay)
	b = fUint(b, "job_id", r.JobID)
	b = fUint(b, "memory_mb_seconds", r.MemoryMBSeconds)
	b = fMap(b, "node_operator_pay", r.NodeOperatorPay)
	b = fList(b, "nodes", r.Nodes)
	b = fHash(b, "output_hash", &r.OutputHash)
	b = fString(b, "partition", r.Partition)
	b = fUint(b, "peak_memory_bytes", r.PeakMemoryBytes)
	b = fUint(b, "price_version", r.PriceVersion)
	b = fString(b, "qos", r.QOS)
	b = fUint(b, "seq", r.Seq)
	b = fTime(b, "start_time", r.StartTime)
	b = fString(b, "state", r.State)
	b = fTime(b, "submit_time", r.SubmitTime)
	b = fString(b, "user", r.User)
	b = fUint(b, "wall_sec", r.WallSec)
	b = fHash(b, "work_dir_hash", &r.WorkDirHash)
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// appendName writes a 1-byte length: names are short ASCII constants, and
// the bytes saved keep a typical record within fewer Keccak blocks.
func appendName(b []byte, name string) []byte {
	return append(append(b, byte(len(name))), name...)
}

func fHead(b []byte, name string, tag byte, n int) []byte {
	b = appendName(b, name)
	b = append(b, tag)
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

func fUint(b []byte, name string, v uint64) []byte {
	return binary.BigEndian.AppendUint64(fHead(b, name, tagUint, 8), v)
}

func fInt(b []byte, name string, v int64) []byte {
	return binary.BigEndian.AppendUint64(fHead(b, name, tagInt, 8), uint64(v))
}

func fTime(b []byte, name string, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(fHead(b, name, tagTime, 8), uint64(unixNanos(t)))
}

func fString(b []byte, name, v string) []byte {
	return append(fHead(b, name, tagString, len(v)), v...)
}

func fHash(b []byte, name string, h *[32]byte) []byte {
	return append(fHead(b, name, tagHash, 32), h[:]...)
}

func fList(b []byte, name string, l []string) []byte {
	n := 4
	for _, s := range l {
		n += 4 + len(s)
	}
	b = fHead(b, name, tagList, n)
	b = binary.BigEndian.AppendUint32(b, uint32(len(l)))
	for _, s := range l {
		b = appendStr(b, s)
	}
	return b
}

func fMap(b []byte, name string, m map[string]int64) []byte {
	var small [8]string
	keys := small[:0]
	n := 4
	for k := range m {
		keys = append(keys, k)
		n += 4 + len(k) + 8
	}
	slices.Sort(keys)
	b = fHead(b, name, tagMap, n)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = appendStr(b, k)
		b = binary.BigEndian.AppendUint64(b, uint64(m[k]))
	}
	return b
}

// maxTime is the last instant whose Unix nanoseconds fit an int64.
var maxTime = time.Unix(0, 1<<63-1).UTC()

// unixNanos is the canonical value of a time: 0 for the zero time. Times
// outside (1970, maxTime] are not encodable (validTime); they would not
// map to distinct values.
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func validTime(t time.Time) bool {
	return t.IsZero() || (t.After(time.Unix(0, 0)) && !t.After(maxTime))
}

// HashHex is the "0x"-prefixed lowercase hex form used in JSON.
func HashHex(h [32]byte) string { return "0x" + hex.EncodeToString(h[:]) }

// ParseHash reads a 32-byte hash in hex, with or without "0x".
func ParseHash(s string) ([32]byte, error) {
	var h [32]byte
	s = strings.TrimPrefix(s, "0x")
	if len(s) != 64 {
		return h, errors.New("hash: want 64 hex digits")
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, errors.New("hash: not hex")
	}
	return h, nil
}

// hexHash gives [32]byte fields their JSON form.
type hexHash [32]byte

func (h hexHash) MarshalText() ([]byte, error) { return []byte(HashHex(h)), nil }

func (h *hexHash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	*h = v
	return err
}

func toHex(hs [][32]byte) []hexHash {
	out := make([]hexHash, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out
}

func fromHex(hs []hexHash) [][32]byte {
	if hs == nil {
		return nil
	}
	out := make([][32]byte, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out
}
