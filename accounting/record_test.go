package accounting

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

func TestKeccak256KnownAnswers(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"},
		{"abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"},
		{"hello world", "47173285a8d7341e5e972fc677286384f802f8ef42a5ec5f03bbfa254cb01fad"},
	} {
		if got := hexOf(Keccak256([]byte(tc.in))); got != tc.want {
			t.Errorf("Keccak256(%q) = %s, want %s", tc.in, got, tc.want)
		}
		k := newHasher()
		if got := hexOf(k.sum([]byte(tc.in))); got != tc.want {
			t.Errorf("reused hasher(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	// Split input hashes like the concatenation.
	if Keccak256([]byte("ab"), nil, []byte("c")) != Keccak256([]byte("abc")) {
		t.Error("Keccak256 of parts differs from the concatenation")
	}
}

// specEncode encodes a record from the package documentation alone, by
// reflection over the JSON names, independently of appendCanonical.
func specEncode(t *testing.T, r *UsageRecord) []byte {
	t.Helper()
	v := reflect.ValueOf(*r)
	type field struct {
		name string
		v    reflect.Value
	}
	var fields []field
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		fields = append(fields, field{name, v.Field(i)})
	}
	slices.SortFunc(fields, func(a, b field) int { return strings.Compare(a.name, b.name) })
	str := func(b []byte, s string) []byte {
		return append(binary.BigEndian.AppendUint32(b, uint32(len(s))), s...)
	}
	name := func(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }
	b := name(nil, "stockade-usage-record/v1")
	b = binary.BigEndian.AppendUint32(b, uint32(len(fields)))
	for _, f := range fields {
		b = name(b, f.name)
		var tag byte
		var val []byte
		switch x := f.v.Interface().(type) {
		case uint64:
			tag, val = 'U', binary.BigEndian.AppendUint64(nil, x)
		case int64:
			tag, val = 'I', binary.BigEndian.AppendUint64(nil, uint64(x))
		case time.Time:
			ns := int64(0)
			if !x.IsZero() {
				ns = x.UnixNano()
			}
			tag, val = 'T', binary.BigEndian.AppendUint64(nil, uint64(ns))
		case string:
			tag, val = 'S', []byte(x)
		case [32]byte:
			tag, val = 'H', x[:]
		case []string:
			tag, val = 'L', binary.BigEndian.AppendUint32(nil, uint32(len(x)))
			for _, s := range x {
				val = str(val, s)
			}
		case map[string]int64:
			keys := slices.Sorted(func(yield func(string) bool) {
				for k := range x {
					if !yield(k) {
						return
					}
				}
			})
			tag, val = 'M', binary.BigEndian.AppendUint32(nil, uint32(len(x)))
			for _, k := range keys {
				val = binary.BigEndian.AppendUint64(str(val, k), uint64(x[k]))
			}
		default:
			t.Fatalf("field %s: type %T has no canonical encoding", f.name, x)
		}
		b = append(b, tag)
		b = binary.BigEndian.AppendUint32(b, uint32(len(val)))
		b = append(b, val...)
	}
	return b
}

func TestCanonicalMatchesSpec(t *testing.T) {
	if n := reflect.TypeFor[UsageRecord]().NumField(); n != recordFields {
		t.Fatalf("UsageRecord has %d fields, the encoding writes %d", n, recordFields)
	}
	recs := []UsageRecord{{}, NewRecord(testJob(), testPrices, testBeneficiaries)}
	recs = append(recs, testRecords(1, 5)...)
	for i := range recs {
		if got, want := recs[i].Canonical(), specEncode(t, &recs[i]); !bytes.Equal(got, want) {
			t.Errorf("record %d: canonical encoding differs from the spec\n got %x\nwant %x", i, got, want)
		}
	}
}

// TestRecordHashGolden pins v1: a change here breaks every stored proof.
func TestRecordHashGolden(t *testing.T) {
	r := NewRecord(testJob(), testPrices, testBeneficiaries)
	r.Seq = 1
	for _, tc := range []struct {
		name string
		rec  UsageRecord
		want string
	}{
		// Also computed from the spec by an independent implementation.
		{"zero", UsageRecord{}, "517192a5117e4769a2d1e9cb0e6d540c23c9c05d963562b1344a9706dd1d0a35"},
		{"job", r, "b717a4c8f6a2f48d235e454f791c3c3cf77e83b89bbae41f7fbcef10258a63ed"},
	} {
		if got := hexOf(tc.rec.Hash()); got != tc.want {
			t.Errorf("%s: hash %s, want %s", tc.name, got, tc.want)
		}
		if k := Keccak256(tc.rec.Canonical()); hexOf(k) != hexOf(tc.rec.Hash()) {
			t.Errorf("%s: Hash is not Keccak256(Canonical)", tc.name)
		}
	}
}

// TestHashCoversEveryField changes each field alone and expects a new hash.
func TestHashCoversEveryField(t *testing.T) {
	base := NewRecord(testJob(), testPrices, testBeneficiaries)
	h0 := base.Hash()
	typ := reflect.TypeFor[UsageRecord]()
	for i := range typ.NumField() {
		r := base
		r.Nodes = slices.Clone(base.Nodes)
		r.NodeOperatorPay = map[string]int64{}
		for k, v := range base.NodeOperatorPay {
			r.NodeOperatorPay[k] = v
		}
		f := reflect.ValueOf(&r).Elem().Field(i)
		switch x := f.Addr().Interface().(type) {
		case *uint64:
			*x++
		case *int64:
			*x++
		case *string:
			*x += "x"
		case *time.Time:
			*x = x.Add(time.Nanosecond)
		case *[32]byte:
			x[31] ^= 1
		case *[]string:
			*x = append(*x, "")
		case *map[string]int64:
			(*x)["op:alice"]++
		default:
			t.Fatalf("field %s: no mutation for %T", typ.Field(i).Name, x)
		}
		if r.Hash() == h0 {
			t.Errorf("changing %s does not change the hash", typ.Field(i).Name)
		}
	}
	// Moving bytes between adjacent strings must change the hash too.
	a, b := base, base
	a.User, a.Account = "ab", "c"
	b.User, b.Account = "a", "bc"
	if a.Hash() == b.Hash() {
		t.Error("length prefixes do not separate adjacent strings")
	}
}

func TestNewRecord(t *testing.T) {
	r := NewRecord(testJob(), testPrices, testBeneficiaries)
	want := UsageRecord{
		JobID: 4242, ArrayJobID: 4240, ArrayTaskID: 2,
		User: "ada", Account: "physics", Partition: "gpu", QOS: "normal",
		Nodes:       []string{"gpu3", "gpu1"},
		Image:       "ghcr.io/acme/train@sha256:" + fmt.Sprintf("%064x", 7),
		ImageDigest: "sha256:" + fmt.Sprintf("%064x", 7),
		SubmitTime:  t0.Add(-time.Minute), StartTime: t0, EndTime: t0.Add(2*time.Hour + 499*time.Millisecond),
		WallSec:         7200,       // 7200.499 s rounds down
		CPUMillis:       10_800_002, // 10,800,001.5 ms rounds up
		PeakMemoryBytes: 8 << 30,
		MemoryMBSeconds: 8192 * 7200,
		GPUSeconds:      4 * 2 * 7200,
		BlockReadBytes:  1 << 20, BlockWriteBytes: 2 << 20,
		State:        "COMPLETED",
		PriceVersion: 3, Currency: "EUR",
		// 60,000.011 (CPU) + 40,000 (16 GiB-h) + 14,400,000 (16 GPU-h)
		Charge:             14_500_000,
		NodeOperatorPay:    map[string]int64{"op:bob": 5_075_000, "op:alice": 5_075_000},
		ClusterOperator:    "op:cluster",
		ClusterOperatorPay: 2_900_000,
		ImagePublisher:     "pub:acme",
		ImagePublisherPay:  725_000,
		Charity:            "charity:wikimedia",
		CharityPay:         725_000,
		CommandHash:        PrivateHash("command", "#!/bin/sh\nsrun ./train\n", "--epochs", "3"),
		CommentHash:        PrivateHash("comment", "secret project"),
		WorkDirHash:        PrivateHash("workdir", "/home/ada/run"),
		OutputHash:         PrivateHash("output", "out-%j.txt", ""),
	}
	if !reflect.DeepEqual(r, want) {
		gotJSON, _ := json.MarshalIndent(r, "", " ")
		wantJSON, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("NewRecord:\n%s\nwant\n%s", gotJSON, wantJSON)
	}
	if err := r.Validate(); err != nil {
		t.Error(err)
	}
	if g := r.MemoryGBHours(); g != 16 {
		t.Errorf("MemoryGBHours = %v, want 16", g)
	}
}

func TestNewRecordEdges(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(j *api.Job)
		check func(r UsageRecord) string
	}{
		{"never started: metered wall, no nodes", func(j *api.Job) {
			j.StartTime, j.EndTime, j.Nodes = time.Time{}, time.Time{}, nil
			j.Usage.WallTimeNs = 1_500_000_000
		}, func(r UsageRecord) string {
			if r.WallSec != 2 || r.GPUSeconds != 0 || r.NodeOperatorPay != nil {
				return fmt.Sprintf("wall %d gpu %d nodes %v", r.WallSec, r.GPUSeconds, r.NodeOperatorPay)
			}
			return ""
		}},
		{"end before start: metered wall", func(j *api.Job) {
			j.EndTime = j.StartTime.Add(-time.Second)
			j.Usage.WallTimeNs = 10e9
		}, func(r UsageRecord) string {
			if r.WallSec != 10 {
				return fmt.Sprintf("wall %d", r.WallSec)
			}
			return ""
		}},
		{"invalid UTF-8 and local times", func(j *api.Job) {
			j.User = "a\xffb"
			j.StartTime = j.StartTime.In(time.FixedZone("X", 3600))
		}, func(r UsageRecord) string {
			if r.User != "a\uFFFDb" || r.StartTime.Location() != time.UTC || r.Validate() != nil {
				return fmt.Sprintf("user %q start %v", r.User, r.StartTime)
			}
			return ""
		}},
		{"time before 1970 dropped", func(j *api.Job) {
			j.SubmitTime = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)
		}, func(r UsageRecord) string {
			if !r.SubmitTime.IsZero() {
				return fmt.Sprintf("submit %v", r.SubmitTime)
			}
			return ""
		}},
		{"no image, no private fields", func(j *api.Job) {
			j.Spec.Image, j.Spec.Comment, j.Spec.WorkDir, j.Spec.Output = "", "", "", ""
		}, func(r UsageRecord) string {
			if r.ImagePublisher != "" || r.ImagePublisherPay != 0 || r.CommentHash != ([32]byte{}) ||
				r.WorkDirHash != ([32]byte{}) || r.OutputHash != ([32]byte{}) || r.ClusterOperatorPay != 3_625_000 {
				return fmt.Sprintf("%+v", r)
			}
			return ""
		}},
	} {
		j := testJob()
		tc.edit(j)
		r := NewRecord(j, testPrices, testBeneficiaries)
		if msg := tc.check(r); msg != "" {
			t.Errorf("%s: %s", tc.name, msg)
		}
	}
}

func TestPrivateHash(t *testing.T) {
	// The preimage, spelled out from the spec.
	pre := []byte("\x00\x00\x00\x1bstockade-private/v1/command\x00\x00\x00\x02\x00\x00\x00\x02ab\x00\x00\x00\x01c")
	for _, tc := range []struct {
		name  string
		got   [32]byte
		want  [32]byte
		equal bool
	}{
		{"spec preimage", PrivateHash("command", "ab", "c"), refKeccak(pre), true},
		{"parts are separated", PrivateHash("command", "ab", "c"), PrivateHash("command", "a", "bc"), false},
		{"kinds are separated", PrivateHash("comment", "x"), PrivateHash("workdir", "x"), false},
		{"empty is zero", PrivateHash("output", "", ""), [32]byte{}, true},
	} {
		if (tc.got == tc.want) != tc.equal {
			t.Errorf("%s: %x vs %x", tc.name, tc.got, tc.want)
		}
	}
}

func TestRecordJSON(t *testing.T) {
	r := NewRecord(testJob(), testPrices, testBeneficiaries)
	r.Seq = 9
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"seq":9`, `"command_hash":"0x`, `"submit_time":"2025-03-14T15:08:26.535897932Z"`, `"node_operator_pay":{"op:alice":5075000,"op:bob":5075000}`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	var back UsageRecord
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Hash() != r.Hash() {
		t.Errorf("round trip changed the hash:\n%s", b)
	}
	for _, tc := range []struct{ name, json, err string }{
		{"before 1970", `{"submit_time":"1969-12-31T23:59:59Z"}`, "submit_time: 1969-12-31T23:59:59Z is outside 1970..2262"},
		{"the epoch itself", `{"end_time":"1970-01-01T00:00:00Z"}`, "end_time: 1970-01-01T00:00:00Z is outside 1970..2262"},
		{"after 2262", `{"start_time":"2300-01-01T00:00:00Z"}`, "start_time: 2300-01-01T00:00:00Z is outside 1970..2262"},
		{"bad hash", `{"output_hash":"0x12"}`, "hash: want 64 hex digits"},
	} {
		var r UsageRecord
		if err := json.Unmarshal([]byte(tc.json), &r); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
		}
	}
}

func TestValidate(t *testing.T) {
	good := NewRecord(testJob(), testPrices, testBeneficiaries)
	for _, tc := range []struct {
		name string
		edit func(r *UsageRecord)
		err  string
	}{
		{"good", func(r *UsageRecord) {}, ""},
		{"payouts short", func(r *UsageRecord) { r.CharityPay-- }, "payouts: sum to 14499999, charge is 14500000"},
		{"negative payout", func(r *UsageRecord) { r.CharityPay, r.ClusterOperatorPay = -1, r.ClusterOperatorPay+725_001 }, "charity_pay: negative"},
		{"negative node pay", func(r *UsageRecord) { r.NodeOperatorPay["op:bob"] = -5 }, "node_operator_pay: negative for op:bob"},
		{"negative charge", func(r *UsageRecord) { r.Charge = -1 }, "charge: negative"},
		{"bad UTF-8", func(r *UsageRecord) { r.Account = "\xff" }, "account: not UTF-8"},
		{"bad node", func(r *UsageRecord) { r.Nodes = []string{"\xfe"} }, "nodes: not UTF-8"},
	} {
		r := good
		r.NodeOperatorPay = map[string]int64{"op:bob": 5_075_000, "op:alice": 5_075_000}
		tc.edit(&r)
		err := r.Validate()
		if (err == nil && tc.err != "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
		}
	}
}
