package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/server"
	"github.com/stockade-hpc/stockade/internal/testcluster"
)

// BenchmarkSubmitStorm measures the controllers' CPU per job submission
// in a storm of sbatch processes: every submission is a new client with a
// TLS connection of its own (a new transport and tls.Config, no session
// cache), BENCH_STORM_WORKERS (8) at a time, BENCH_STORM_SUBMITS (500) per
// iteration, against 3 controller processes and no agents. The CPU is the
// utime+stime the controller processes spent (/proc/PID/stat) from the
// first request to the last answer plus a short settling time, leader and
// followers apart.
//
//   - held: sbatch --hold, nothing could ever start.
//   - pending: jobs not held; with no agents they stay pending, so the
//     queue the scheduler looks at grows with every submission.
//
// BENCH_STORM_VIA=follower sends every submission to a follower first (the
// client's server list starts with one), which forwards it; the default
// starts with the leader. BENCH_STORM_RESUME=1 gives the clients one TLS
// session cache (as if sbatch kept its tickets between runs), so their
// handshakes resume; BENCH_STORM_HTTP1=1 makes them speak HTTP/1.1
// instead of HTTP/2. BENCH_STORM_PROFILE=DIR writes CPU and allocation
// profiles of the controllers during each storm to DIR/held and
// DIR/pending (server.CPUProfileEnv).
// Run with -benchtime=1x: each iteration is a whole storm and the pending
// queue grows from one to the next. STOCKADE_BIN reuses a built binary.
//
//	go test ./bench -run '^$' -bench SubmitStorm -benchtime=1x
func BenchmarkSubmitStorm(b *testing.B) {
	for _, held := range []bool{true, false} {
		name := "held"
		if !held {
			name = "pending"
		}
		b.Run(name, func(b *testing.B) { submitStorm(b, held) })
	}
}

func submitStorm(b *testing.B, held bool) {
	total := envInt("BENCH_STORM_SUBMITS", 500)
	workers := envInt("BENCH_STORM_WORKERS", 8)
	profDir := os.Getenv("BENCH_STORM_PROFILE")
	if profDir != "" {
		name := "pending"
		if held {
			name = "held"
		}
		abs, err := filepath.Abs(filepath.Join(profDir, name))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			b.Fatal(err)
		}
		profDir = abs
		b.Setenv(server.CPUProfileEnv, profDir)
	}
	c := testcluster.StartCluster(b, 1)
	c.AddController(c.Config)
	c.AddController(c.Config)
	tok := c.AddUser("bench", 1601)
	ctx := context.Background()

	var st api.Status
	if err := c.Client(tok).Do(ctx, "GET", "/v1/status", nil, &st); err != nil {
		b.Fatal(err)
	}
	var leader *testcluster.Controller
	var followers []*testcluster.Controller
	for _, ctl := range c.Controllers {
		if ctl.ID == st.Leader {
			leader = ctl
		} else {
			followers = append(followers, ctl)
		}
	}
	if leader == nil || len(followers) != 2 {
		b.Fatalf("leader %q not among the controllers", st.Leader)
	}
	servers := []string{leader.APIAddr, followers[0].APIAddr, followers[1].APIAddr}
	if os.Getenv("BENCH_STORM_VIA") == "follower" {
		servers = []string{followers[0].APIAddr, leader.APIAddr, followers[1].APIAddr}
	}
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		b.Fatal(err)
	}
	// What sbatch sends with --export=ALL: a typical login environment.
	env := map[string]string{}
	for i := range 30 {
		env[fmt.Sprintf("BENCH_VAR_%02d", i)] = strings.Repeat("x", 40)
	}
	var tickets tls.ClientSessionCache
	if os.Getenv("BENCH_STORM_RESUME") == "1" {
		tickets = tls.NewLRUClientSessionCache(64)
	}
	http1 := os.Getenv("BENCH_STORM_HTTP1") == "1"
	submit := func(int) error {
		// A new process: its own CA pool, TLS configuration and
		// connection.
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		cl := api.NewClient(servers, tok, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, ClientSessionCache: tickets})
		if http1 {
			tr := cl.HTTP.Transport.(*http.Transport)
			tr.ForceAttemptHTTP2 = false
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		defer cl.HTTP.CloseIdleConnections()
		var sid [16]byte
		rand.Read(sid[:])
		req := api.SubmitRequest{Spec: api.JobSpec{
			Name: "storm", Script: "#!/bin/sh\n#SBATCH -n 1\ntrue\n", WorkDir: "/tmp", Nodes: 1, Tasks: 1, CPUsPerTask: 1,
			Hold: held, Requeue: true, SubmitID: hex.EncodeToString(sid[:]), Environment: env,
		}}
		var resp api.SubmitResponse
		return cl.Do(ctx, "POST", "/v1/jobs", req, &resp)
	}
	// Let the cluster settle (elections, the partition configuration),
	// then measure what it burns idle, to tell it apart.
	time.Sleep(2 * time.Second)
	ctls := append([]*testcluster.Controller{leader}, followers...)
	idle0 := cpuTimes(b, ctls)
	time.Sleep(2 * time.Second)
	idle := sub(cpuTimes(b, ctls), idle0)
	b.ResetTimer()
	for range b.N {
		if profDir != "" {
			signalAll(b, ctls, syscall.SIGUSR1)
		}
		before := cpuTimes(b, ctls)
		t0 := time.Now()
		rate, p50, p99, err := load(workers, total, submit)
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // followers apply the tail
		el := time.Since(t0)
		used := sub(cpuTimes(b, ctls), before)
		if profDir != "" {
			signalAll(b, ctls, syscall.SIGUSR1)
		}
		per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(total) }
		fol := used[1] + used[2]
		b.ReportMetric(per(used[0]), "leader-ms/submit")
		b.ReportMetric(per(fol), "followers-ms/submit")
		b.ReportMetric(per(used[0]+fol), "ctl-ms/submit")
		b.ReportMetric(rate, "submits/s")
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
		fmt.Printf("storm held=%v: %d submissions, %d at a time: %.0f/s p50 %s p99 %s | CPU per submission: leader %.3f ms, followers %.3f + %.3f ms, total %.3f ms (idle before: %.1f, %.1f, %.1f ms/s over %s)\n",
			held, total, workers, rate, p50, p99, per(used[0]), per(used[1]), per(used[2]), per(used[0]+fol),
			msPerSec(idle[0]), msPerSec(idle[1]), msPerSec(idle[2]), el.Round(time.Millisecond))
	}
	b.StopTimer()
	if profDir != "" {
		// Profiles are renamed into place once written.
		for _, ctl := range ctls {
			want := filepath.Join(profDir, fmt.Sprintf("cpu-%s-%d.pprof", ctl.ID, b.N))
			c.WaitFor(10*time.Second, want, func() bool { _, err := os.Stat(want); return err == nil })
		}
		fmt.Printf("profiles in %s (leader %s)\n", profDir, leader.ID)
	}
}

// msPerSec is CPU time spent over the 2 s idle window, per second.
func msPerSec(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / 2 }

func signalAll(b *testing.B, ctls []*testcluster.Controller, sig syscall.Signal) {
	for _, ctl := range ctls {
		if err := syscall.Kill(ctl.Pid(), sig); err != nil {
			b.Fatal(err)
		}
	}
}

// clockTick is the unit of /proc/PID/stat's times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// cpuTimes is each controller's utime+stime so far.
func cpuTimes(b *testing.B, ctls []*testcluster.Controller) []time.Duration {
	out := make([]time.Duration, len(ctls))
	for i, ctl := range ctls {
		d, err := procCPU(ctl.Pid())
		if err != nil {
			b.Fatal(err)
		}
		out[i] = d
	}
	return out
}

// procCPU reads utime+stime of a process (all its threads, live or gone).
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces: fields start after its ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times %q %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * clockTick, nil
}

func sub(a, b []time.Duration) []time.Duration {
	out := make([]time.Duration, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}
