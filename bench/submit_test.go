// Package bench holds Stockade's end-to-end benchmarks. Each reports its
// figure next to a baseline measured in the same run, because these
// machines are noisy: ratios travel, absolute numbers do not.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/testcluster"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// load runs total requests from workers goroutines and returns the rate
// and the latency percentiles.
func load(workers, total int, do func(i int) error) (rate float64, p50, p99 time.Duration, err error) {
	lat := make([]time.Duration, total)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				t0 := time.Now()
				if e := do(i); e != nil {
					firstErr.CompareAndSwap(nil, e)
					return
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if e, ok := firstErr.Load().(error); ok {
		return 0, 0, 0, e
	}
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	return float64(total) / el.Seconds(), lat[total/2], lat[total*99/100], nil
}

// BenchmarkSubmit3Controllers measures acknowledged submissions per second
// through the API of a 3-controller cluster (each one a Raft commit), with
// p50/p99 latency. The baseline is an authenticated no-op request
// (linearizable GET /v1/status) at the same concurrency in the same run:
// the ratio is what replication and the state store cost on top of TLS,
// HTTP and auth.
func BenchmarkSubmit3Controllers(b *testing.B) {
	c := testcluster.StartCluster(b, 1)
	c.AddController(c.Config)
	c.AddController(c.Config)
	tok := c.AddUser("bench", 1601)
	workers := envInt("BENCH_WORKERS", 128)
	total := envInt("BENCH_SUBMITS", 20000)
	cl := c.Client(tok)
	ctx := context.Background()
	// Warm connections.
	for i := 0; i < workers; i++ {
		cl.Do(ctx, "GET", "/v1/status", nil, nil)
	}
	b.ResetTimer()
	for range b.N {
		baseRate, bp50, bp99, err := load(workers, total/2, func(int) error {
			return cl.Do(ctx, "GET", "/v1/status", nil, nil)
		})
		if err != nil {
			b.Fatal(err)
		}
		rate, p50, p99, err := load(workers, total, func(i int) error {
			var sid [16]byte
			rand.Read(sid[:])
			req := api.SubmitRequest{Spec: api.JobSpec{
				Name: "bench", Script: "#!/bin/sh\ntrue\n", WorkDir: "/tmp", Nodes: 1, Tasks: 1, CPUsPerTask: 1,
				Hold: true, Requeue: true, SubmitID: hex.EncodeToString(sid[:]),
			}}
			var resp api.SubmitResponse
			return cl.Do(ctx, "POST", "/v1/jobs", req, &resp)
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(rate, "submits/s")
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
		b.ReportMetric(baseRate, "noop-req/s")
		b.ReportMetric(rate/baseRate, "submit/noop")
		fmt.Printf("submit: %.0f jobs/s p50 %s p99 %s | baseline no-op: %.0f req/s p50 %s p99 %s | ratio %.2f (%d workers, %d submits)\n",
			rate, p50, p99, baseRate, bp50, bp99, rate/baseRate, workers, total)
	}
}
