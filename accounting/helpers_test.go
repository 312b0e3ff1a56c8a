package accounting

import (
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/sha3"

	"github.com/stockade-hpc/stockade/api"
)

// refKeccak is Keccak-256 straight from the library, independent of the
// package's reused hasher.
func refKeccak(parts ...[]byte) [32]byte {
	h := sha3.NewLegacyKeccak256()
	for _, p := range parts {
		h.Write(p)
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

func mustHex(t testing.TB, s string) [32]byte {
	t.Helper()
	h, err := ParseHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

var testPrices = PriceTable{
	Version:   3,
	Currency:  "EUR",
	CPUHour:   20_000,  // 0.02 per CPU-hour
	MemGBHour: 2_500,   // 0.0025 per GiB-hour
	GPUHour:   900_000, // 0.90 per GPU-hour
	Split:     Split{NodeOperator: 7000, ClusterOperator: 2000, ImagePublisher: 500, Charity: 500},
}

var testBeneficiaries = Beneficiaries{
	ClusterOperator: "op:cluster",
	Charity:         "charity:wikimedia",
	NodeOperators:   map[string]string{"gpu1": "op:alice", "gpu2": "op:alice", "gpu3": "op:bob"},
	ImagePublishers: map[string]string{"ghcr.io/acme/": "pub:acme"},
}

var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)

// testJob is a finished two-node GPU job.
func testJob() *api.Job {
	return &api.Job{
		ID: 4242, ArrayJobID: 4240, ArrayTaskID: 2, User: "ada", UID: 1000,
		Spec: api.JobSpec{
			Name: "train", Partition: "gpu", Account: "physics", QOS: "normal",
			Script: "#!/bin/sh\nsrun ./train\n", Argv: []string{"--epochs", "3"},
			WorkDir: "/home/ada/run", Output: "out-%j.txt", Comment: "secret project",
			Image: "ghcr.io/acme/train@sha256:" + fmt.Sprintf("%064x", 7),
		},
		State:      api.JobCompleted,
		SubmitTime: t0.Add(-time.Minute),
		StartTime:  t0,
		EndTime:    t0.Add(2*time.Hour + 499*time.Millisecond),
		Nodes:      []string{"gpu3", "gpu1"},
		AllocGPUs:  4,
		ExitCode:   0,
		Usage: api.Usage{
			CPUTimeNs:   3*3600*1e9 + 1_500_000, // 3 CPU-hours and 1.5 ms
			MaxMemoryB:  8 << 30,
			BlockReadB:  1 << 20,
			BlockWriteB: 2 << 20,
			WallTimeNs:  7200e9,
		},
	}
}

// testRecords are n records with seqs first.. and varied fields.
func testRecords(first uint64, n int) []UsageRecord {
	out := make([]UsageRecord, n)
	for i := range out {
		j := testJob()
		j.ID = 10000 + first + uint64(i)
		j.ArrayTaskID = -1
		j.ArrayJobID = 0
		j.User = fmt.Sprintf("user%d", i%7)
		j.Spec.Account = fmt.Sprintf("acct%d", i%3)
		j.Usage.CPUTimeNs = uint64(i+1) * 1e9
		j.StartTime = t0.Add(time.Duration(i) * time.Minute)
		j.EndTime = j.StartTime.Add(time.Duration(i%90+1) * time.Second)
		j.Nodes = []string{fmt.Sprintf("n%03d", i%50)}
		j.AllocGPUs = i % 2
		r := NewRecord(j, testPrices, testBeneficiaries)
		r.Seq = first + uint64(i)
		out[i] = r
	}
	return out
}

func hexOf(h [32]byte) string { return hex.EncodeToString(h[:]) }
