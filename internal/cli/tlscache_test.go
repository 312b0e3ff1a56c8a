package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/internal/pki/pkitest"
)

// testController is a TLS API server configured as the controllers'
// (pki.Identity.ServerTLS with VerifyClientCertIfGiven) that records
// whether each request's connection resumed a session.
type testController struct {
	srv     *httptest.Server
	addr    string
	mu      sync.Mutex
	resumed []bool
	protos  []string
	leader  string // X-Stockade-Leader of the answers, "" for none
}

func newTestCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func startTestController(t testing.TB, ca *pki.CA) *testController {
	t.Helper()
	id := pkitest.ControllerIdentity(t, ca, "c1", []string{"127.0.0.1", "localhost"})
	tc := &testController{}
	tc.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tc.mu.Lock()
		tc.resumed = append(tc.resumed, r.TLS.DidResume)
		tc.protos = append(tc.protos, r.Proto)
		leader := tc.leader
		tc.mu.Unlock()
		if leader != "" {
			w.Header().Set(api.LeaderHeader, leader)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{}`)
	}))
	tc.srv.TLS = id.ServerTLS(tls.VerifyClientCertIfGiven)
	tc.srv.EnableHTTP2 = true
	tc.srv.StartTLS()
	t.Cleanup(tc.srv.Close)
	tc.addr = strings.TrimPrefix(tc.srv.URL, "https://")
	return tc
}

func (tc *testController) setLeader(addr string) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	tc.leader = addr
}

func (tc *testController) requests() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return len(tc.resumed)
}

func (tc *testController) last() (resumed bool, proto string) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if len(tc.resumed) == 0 {
		return false, ""
	}
	return tc.resumed[len(tc.resumed)-1], tc.protos[len(tc.protos)-1]
}

// runCommand is one CLI process: a cache loaded from path, a client, one
// request.
func runCommand(t *testing.T, path string, caPEM []byte, servers ...string) (*sessionCache, error) {
	t.Helper()
	conf, err := pki.ClientTLSConfig(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	cache := openSessionCache(path, caPEM)
	c := newCLIClient(&clientSettings{Servers: servers, Token: "tok", CAPEM: caPEM}, conf, cache)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return cache, c.Do(ctx, http.MethodGet, "/v1/status", nil, nil)
}

func cachePath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "cache", "stockade", cacheFileName)
}

func TestSessionCacheResumesAcrossProcesses(t *testing.T) {
	ca := newTestCA(t)
	ctl := startTestController(t, ca)
	path := cachePath(t)
	for i, want := range []bool{false, true, true} {
		if _, err := runCommand(t, path, ca.CertPEM, ctl.addr); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		resumed, proto := ctl.last()
		if resumed != want {
			t.Errorf("command %d: DidResume = %v, want %v", i, resumed, want)
		}
		if proto != "HTTP/1.1" {
			t.Errorf("command %d: %s, want HTTP/1.1 (one-shot CLI)", i, proto)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("cache file mode %v, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("cache directory mode %v, want 0700", di.Mode().Perm())
	}
	f, ok := readCacheFile(path)
	if !ok || len(f.Sessions) != 1 || f.Sessions[0].Server != ctl.addr || f.Sessions[0].CA != caFingerprint(ca.CertPEM) {
		t.Errorf("cache file: %+v, %v; want one session for %s", f, ok, ctl.addr)
	}
}

// Each controller has its own ticket keys: sessions are kept per address,
// even for controllers that share a host name.
func TestSessionCachePerController(t *testing.T) {
	ca := newTestCA(t)
	a, b := startTestController(t, ca), startTestController(t, ca)
	path := cachePath(t)
	for i := 0; i < 2; i++ {
		for _, ctl := range []*testController{a, b} {
			if _, err := runCommand(t, path, ca.CertPEM, ctl.addr); err != nil {
				t.Fatal(err)
			}
			if resumed, _ := ctl.last(); resumed != (i == 1) {
				t.Errorf("round %d, %s: DidResume = %v", i, ctl.addr, resumed)
			}
		}
	}
}

func TestSessionCacheFileProblems(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	cases := []struct {
		name string
		// spoil changes the file (written by one full handshake) or its
		// directory before the next command.
		spoil      func(t *testing.T, path string)
		caPEM      []byte // the next command's CA; nil = the same
		wantResume bool
	}{
		{name: "intact", wantResume: true},
		{name: "corrupt", spoil: func(t *testing.T, path string) { write(t, path, "{not a cache file") }},
		{name: "empty", spoil: func(t *testing.T, path string) { write(t, path, "") }},
		{name: "truncated", spoil: func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			write(t, path, string(b[:len(b)/2]))
		}},
		{name: "garbage session", spoil: func(t *testing.T, path string) {
			edit(t, path, func(f *cacheFile) { f.Sessions[0].State = []byte("junk") })
		}},
		{name: "tampered secret", spoil: func(t *testing.T, path string) {
			// The ticket is still the server's, but the PSK is wrong:
			// the server aborts the handshake (bad binder), crypto/tls
			// drops the session and the client's retry is a full
			// handshake. The encoding
			// (SessionState.Bytes) starts with version, type, suite,
			// creation time, then the length-prefixed secret.
			edit(t, path, func(f *cacheFile) { f.Sessions[0].State[14] ^= 0xff })
		}},
		{name: "empty ticket", spoil: func(t *testing.T, path string) {
			edit(t, path, func(f *cacheFile) { f.Sessions[0].Ticket = nil })
		}},
		{name: "foreign ticket", spoil: func(t *testing.T, path string) {
			edit(t, path, func(f *cacheFile) { f.Sessions[0].Ticket = []byte("not a ticket of this server") })
		}},
		{name: "other version", spoil: func(t *testing.T, path string) { edit(t, path, func(f *cacheFile) { f.Version = 99 }) }},
		{name: "expired", spoil: func(t *testing.T, path string) {
			edit(t, path, func(f *cacheFile) { f.Sessions[0].Saved -= int64(8 * 24 * time.Hour / time.Second) })
		}},
		{name: "new cluster CA", caPEM: other.CertPEM},
		{name: "file readable by others", spoil: func(t *testing.T, path string) { chmod(t, path, 0o644) }},
		{name: "directory writable by others", spoil: func(t *testing.T, path string) { chmod(t, filepath.Dir(path), 0o777) }},
		{name: "symlink", spoil: func(t *testing.T, path string) {
			if err := os.Rename(path, path+".real"); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(path+".real", path); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "unreadable", spoil: func(t *testing.T, path string) {
			os.Remove(path)
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctl := startTestController(t, ca)
			path := cachePath(t)
			if _, err := runCommand(t, path, ca.CertPEM, ctl.addr); err != nil {
				t.Fatal(err)
			}
			if tc.spoil != nil {
				tc.spoil(t, path)
			}
			caPEM := ca.CertPEM
			if tc.caPEM != nil {
				caPEM = tc.caPEM
				// A cluster with a new CA: the old session must not be
				// offered (nor could the controller's old chain verify).
				cache := openSessionCache(path, caPEM)
				if s, ok := cache.Get(ctl.addr); ok || s != nil {
					t.Fatal("a session of another cluster CA was offered")
				}
				return
			}
			if _, err := runCommand(t, path, caPEM, ctl.addr); err != nil {
				t.Fatalf("command with a spoiled cache: %v (must never fail)", err)
			}
			if resumed, _ := ctl.last(); resumed != tc.wantResume {
				t.Errorf("DidResume = %v, want %v", resumed, tc.wantResume)
			}
		})
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func edit(t *testing.T, path string, fn func(*cacheFile)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := decodeCacheFile(b)
	if !ok || len(f.Sessions) == 0 {
		t.Fatalf("cache file %q does not parse", b)
	}
	fn(&f)
	write(t, path, string(f.encode()))
}

func TestSessionCacheWrongCA(t *testing.T) {
	ca1, ca2 := newTestCA(t), newTestCA(t)
	ctl := startTestController(t, ca1)
	path := cachePath(t)
	ctl.setLeader(ctl.addr)
	if _, err := runCommand(t, path, ca1.CertPEM, ctl.addr); err != nil {
		t.Fatal(err)
	}
	c1 := openSessionCache(path, ca1.CertPEM)
	if _, ok := c1.Get(ctl.addr); !ok || c1.Leader() != ctl.addr {
		t.Fatalf("same CA: session %v, leader %q", ok, c1.Leader())
	}
	c2 := openSessionCache(path, ca2.CertPEM)
	if _, ok := c2.Get(ctl.addr); ok {
		t.Error("another CA's cache got the session")
	}
	if l := c2.Leader(); l != "" {
		t.Errorf("another CA's cache got the leader %q", l)
	}
	// Entries of both clusters live side by side.
	c2.SetLeader("other:1")
	if f, _ := readCacheFile(path); len(f.Leaders) != 2 || len(f.Sessions) != 1 {
		t.Errorf("file after a second cluster's write: %+v", f)
	}
}

// Concurrent commands of one user each rewrite the file: it must always
// parse, hold one of the writers' sessions, and leave no temporary files.
func TestSessionCacheConcurrentWriters(t *testing.T) {
	ca := newTestCA(t)
	ctl := startTestController(t, ca)
	path := cachePath(t)
	if _, err := runCommand(t, path, ca.CertPEM, ctl.addr); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 4; j++ {
				if _, err := runCommand(t, path, ca.CertPEM, ctl.addr); err != nil {
					errs <- err
				}
				if _, ok := readCacheFile(path); !ok {
					errs <- fmt.Errorf("cache file unreadable during concurrent writes")
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	f, ok := readCacheFile(path)
	if !ok || len(f.Sessions) != 1 {
		t.Fatalf("cache file after concurrent writes: %+v, %v", f, ok)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("cache directory holds %v, want only %s", names, cacheFileName)
	}
	if _, err := runCommand(t, path, ca.CertPEM, ctl.addr); err != nil {
		t.Fatal(err)
	}
	if resumed, _ := ctl.last(); !resumed {
		t.Error("no resumption after concurrent writers")
	}
}

// The leader a controller names is remembered for the next command, and
// only when it is one of the configured servers.
func TestSessionCacheLeaderHint(t *testing.T) {
	ca := newTestCA(t)
	follower, leader := startTestController(t, ca), startTestController(t, ca)
	path := cachePath(t)
	follower.setLeader("10.9.9.9:7701") // not configured: ignored
	if _, err := runCommand(t, path, ca.CertPEM, follower.addr, leader.addr); err != nil {
		t.Fatal(err)
	}
	if l := openSessionCache(path, ca.CertPEM).Leader(); l != "" {
		t.Fatalf("remembered the unconfigured leader %q", l)
	}
	follower.setLeader(leader.addr)
	if _, err := runCommand(t, path, ca.CertPEM, follower.addr, leader.addr); err != nil {
		t.Fatal(err)
	}
	n := leader.requests()
	if _, err := runCommand(t, path, ca.CertPEM, follower.addr, leader.addr); err != nil {
		t.Fatal(err)
	}
	if leader.requests() != n+1 {
		t.Fatal("the next command did not go to the remembered leader")
	}
	// A remembered leader that is no longer configured is ignored.
	n = follower.requests()
	if _, err := runCommand(t, path, ca.CertPEM, follower.addr); err != nil {
		t.Fatal(err)
	}
	if follower.requests() != n+1 {
		t.Fatal("request did not go to the only configured server")
	}
}

func TestSessionCachePath(t *testing.T) {
	cases := []struct {
		env  map[string]string
		home string
		want string
	}{
		{nil, "/home/u", "/home/u/.cache/stockade/" + cacheFileName},
		{map[string]string{"XDG_CACHE_HOME": "/xdg"}, "/home/u", "/xdg/stockade/" + cacheFileName},
		{map[string]string{"XDG_CACHE_HOME": "rel"}, "/home/u", "/home/u/.cache/stockade/" + cacheFileName},
		{map[string]string{"XDG_CACHE_HOME": "/xdg", "STOCKADE_SESSION_CACHE": "off"}, "/home/u", ""},
		{nil, "", ""},
	}
	for _, tc := range cases {
		got := sessionCachePath(func(k string) string { return tc.env[k] }, tc.home)
		if got != tc.want {
			t.Errorf("env %v home %q: %q, want %q", tc.env, tc.home, got, tc.want)
		}
	}
}

// Without a file the cache still resumes within the process.
func TestSessionCacheInMemory(t *testing.T) {
	ca := newTestCA(t)
	ctl := startTestController(t, ca)
	conf, err := pki.ClientTLSConfig(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	cache := openSessionCache("", ca.CertPEM)
	for i := 0; i < 2; i++ {
		c := newCLIClient(&clientSettings{Servers: []string{ctl.addr}}, conf.Clone(), cache)
		if err := c.Do(context.Background(), http.MethodGet, "/", nil, nil); err != nil {
			t.Fatal(err)
		}
		if resumed, _ := ctl.last(); resumed != (i == 1) {
			t.Errorf("connection %d: DidResume = %v", i, resumed)
		}
	}
}

// A ticket that resumes is kept, not rewritten by every command, until it
// is cacheRefresh old; one that no longer resumes (a restarted controller
// has new ticket keys) is replaced at once.
func TestSessionCacheRewrites(t *testing.T) {
	ca := newTestCA(t)
	ctl := startTestController(t, ca)
	path := cachePath(t)
	stat := func() os.FileInfo {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	steps := []struct {
		name        string
		before      func()
		wantResume  bool
		wantRewrite bool
	}{
		{name: "first command", wantResume: false, wantRewrite: true},
		{name: "resumed, fresh ticket", wantResume: true, wantRewrite: false},
		{name: "resumed again", wantResume: true, wantRewrite: false},
		{name: "controller restarted", before: func() {
			ctl.srv.TLS.SetSessionTicketKeys([][32]byte{{1, 2, 3}})
		}, wantResume: false, wantRewrite: true},
		{name: "resumed with the new ticket", wantResume: true, wantRewrite: false},
		{name: "ticket older than cacheRefresh", before: func() {
			edit(t, path, func(f *cacheFile) { f.Sessions[0].Saved -= int64(2 * cacheRefresh / time.Second) })
		}, wantResume: true, wantRewrite: true},
		{name: "refreshed ticket", wantResume: true, wantRewrite: false},
	}
	var last os.FileInfo
	for _, st := range steps {
		if st.before != nil {
			st.before()
			last = stat() // edits rewrite in place
		}
		if _, err := runCommand(t, path, ca.CertPEM, ctl.addr); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if resumed, _ := ctl.last(); resumed != st.wantResume {
			t.Errorf("%s: DidResume = %v, want %v", st.name, resumed, st.wantResume)
		}
		now := stat()
		if rewritten := last == nil || !os.SameFile(last, now); rewritten != st.wantRewrite {
			t.Errorf("%s: file rewritten = %v, want %v", st.name, rewritten, st.wantRewrite)
		}
		last = now
	}
}

func TestCacheFileEncoding(t *testing.T) {
	f := cacheFile{
		Version: cacheVersion,
		Sessions: []cacheSession{
			{CA: "ca1", Server: "a:1", Saved: 1700000000, Ticket: []byte("t1"), State: []byte("s1")},
			{CA: "ca2", Server: "b:2", Saved: 1, Ticket: make([]byte, 300), State: []byte{0}},
		},
		Leaders: []cacheLeader{{CA: "ca1", Server: "a:1", Saved: 1700000001}},
	}
	b := f.encode()
	got, ok := decodeCacheFile(b)
	if !ok || fmt.Sprint(got) != fmt.Sprint(f) {
		t.Fatalf("round trip: %+v, %v; want %+v", got, ok, f)
	}
	// Damaged files are refused, never a panic.
	for n := 0; n < len(b); n++ {
		decodeCacheFile(b[:n])
	}
	for _, bad := range []string{"", "stockade-tls-cache\n", "stockade-tls-cache\n\x01X", "stockade-tls-cache\n\x01S\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"} {
		if _, ok := decodeCacheFile([]byte(bad)); ok {
			t.Errorf("%q decoded", bad)
		}
	}
}

func FuzzCacheFile(f *testing.F) {
	f.Add((&cacheFile{Version: cacheVersion, Sessions: []cacheSession{{CA: "c", Server: "s:1", Saved: 5, Ticket: []byte("t"), State: []byte("s")}}}).encode())
	f.Fuzz(func(t *testing.T, data []byte) {
		if cf, ok := decodeCacheFile(data); ok {
			again, ok := decodeCacheFile(cf.encode())
			if !ok || fmt.Sprint(again) != fmt.Sprint(cf) {
				t.Fatalf("re-encoding %+v gave %+v", cf, again)
			}
		}
	})
}

// The Slurm commands do not build the daemons' commands (runLazy).
func TestExtraCommandsLazy(t *testing.T) {
	e, _, _ := testEnv(t, &fakeAPI{}, nil, nil)
	for _, args := range [][]string{{"sbatch", "--version"}, {"/usr/bin/squeue", "--version"}, {"stockade", "version"}} {
		built := false
		runLazy(context.Background(), e, args, func() []*cobra.Command { built = true; return nil })
		if want := args[0] == "stockade"; built != want {
			t.Errorf("%v: extra commands built = %v, want %v", args, built, want)
		}
	}
}

// BenchmarkCommandConnection is the connection cost of one CLI command,
// client and controller together (both run in this process): a new
// client, one request, the connection closed. cpu-µs/op is the process's
// CPU time per command.
func BenchmarkCommandConnection(b *testing.B) {
	ca, err := pki.NewCA("bench")
	if err != nil {
		b.Fatal(err)
	}
	ctl := startTestController(b, ca)
	path := filepath.Join(b.TempDir(), "stockade", cacheFileName)
	cases := []struct {
		name   string
		client func() *api.Client
	}{
		{"http2-full-handshake", func() *api.Client {
			conf, _ := pki.ClientTLSConfig(ca.CertPEM)
			return api.NewClient([]string{ctl.addr}, "tok", conf)
		}},
		{"http1-full-handshake", func() *api.Client {
			conf, _ := pki.ClientTLSConfig(ca.CertPEM)
			return api.NewClientWith([]string{ctl.addr}, "tok", conf, api.Options{OneShot: true})
		}},
		{"http1-resumed-from-file", func() *api.Client {
			conf, _ := pki.ClientTLSConfig(ca.CertPEM)
			s := &clientSettings{Servers: []string{ctl.addr}, Token: "tok", CAPEM: ca.CertPEM}
			return newCLIClient(s, conf, openSessionCache(path, ca.CertPEM))
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			for b.Loop() {
				c := tc.client()
				if err := c.Do(context.Background(), http.MethodGet, "/v1/status", nil, nil); err != nil {
					b.Fatal(err)
				}
				c.HTTP.CloseIdleConnections()
			}
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
