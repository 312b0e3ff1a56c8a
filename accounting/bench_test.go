package accounting

import (
	"encoding/json"
	"sync"
	"testing"
	"time"
)

const benchEpoch = 1_000_000

// benchRecords are a million distinct records sharing one template's
// slices and map (hashing reads them; nothing writes).
var benchRecords = sync.OnceValue(func() []UsageRecord {
	tmpl := NewRecord(testJob(), testPrices, testBeneficiaries)
	out := make([]UsageRecord, benchEpoch)
	for i := range out {
		r := tmpl
		r.Seq = uint64(i + 1)
		r.JobID = uint64(100_000 + i)
		r.CPUMillis += uint64(i)
		r.EndTime = r.EndTime.Add(time.Duration(i) * time.Millisecond)
		out[i] = r
	}
	return out
})

func perSecond(b *testing.B, records int) {
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkRecordHash is the canonical encoding and Keccak of one record.
func BenchmarkRecordHash(b *testing.B) {
	r := NewRecord(testJob(), testPrices, testBeneficiaries)
	b.SetBytes(int64(len(r.Canonical())))
	b.ReportAllocs()
	for b.Loop() {
		r.Seq++
		r.Hash()
	}
	perSecond(b, 1)
}

// BenchmarkSeal1M hashes and seals an epoch of a million records.
func BenchmarkSeal1M(b *testing.B) {
	recs := benchRecords()
	for b.Loop() {
		if _, _, err := SealTree(1, recs, t0); err != nil {
			b.Fatal(err)
		}
	}
	perSecond(b, len(recs))
}

// BenchmarkTree1M builds the tree alone from record hashes.
func BenchmarkTree1M(b *testing.B) {
	hashes := HashRecords(benchRecords())
	for b.Loop() {
		NewTree(hashes)
	}
	perSecond(b, len(hashes))
}

// BenchmarkVerifyProof1M checks one record's proof in an epoch of a
// million: the record hash recomputed, then the audit path.
func BenchmarkVerifyProof1M(b *testing.B) {
	recs := benchRecords()
	e, tree, err := SealTree(1, recs, t0)
	if err != nil {
		b.Fatal(err)
	}
	p, err := tree.Proof(e, recs[benchEpoch/3])
	if err != nil {
		b.Fatal(err)
	}
	js, _ := json.Marshal(p)
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifyProof(p, e.Root); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(p.Path)), "path-hashes")
	b.ReportMetric(float64(32*len(p.Path)), "path-bytes")
	b.ReportMetric(float64(len(js)), "proof-json-bytes")
}
