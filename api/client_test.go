package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServer is one controller: it records the protocol and whether the
// TLS session was resumed, and answers with a leader header if set.
type testServer struct {
	srv    *httptest.Server
	addr   string
	mu     sync.Mutex
	hits   int
	proto  string
	resume bool
	leader string
	status int
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	ts := &testServer{status: http.StatusOK}
	ts.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.mu.Lock()
		ts.hits++
		ts.proto, ts.resume = r.Proto, r.TLS.DidResume
		leader, status := ts.leader, ts.status
		ts.mu.Unlock()
		if leader != "" {
			w.Header().Set(LeaderHeader, leader)
		}
		w.WriteHeader(status)
		fmt.Fprint(w, `{}`)
	}))
	ts.srv.EnableHTTP2 = true
	ts.srv.StartTLS()
	t.Cleanup(ts.srv.Close)
	ts.addr = strings.TrimPrefix(ts.srv.URL, "https://")
	return ts
}

func (ts *testServer) set(leader string, status int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.leader, ts.status = leader, status
}

func (ts *testServer) seen() (hits int, proto string, resumed bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.hits, ts.proto, ts.resume
}

func clientTLS(servers ...*testServer) *tls.Config {
	pool := x509.NewCertPool()
	for _, s := range servers {
		pool.AddCert(s.srv.Certificate())
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
}

func get(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Do(ctx, http.MethodGet, "/v1/status", nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestClientProtocols(t *testing.T) {
	ts := newTestServer(t)
	cases := []struct {
		name   string
		client *Client
		want   string
	}{
		{"long-lived", NewClient([]string{ts.addr}, "", clientTLS(ts)), "HTTP/2.0"},
		{"one-shot", NewClientWith([]string{ts.addr}, "", clientTLS(ts), Options{OneShot: true}), "HTTP/1.1"},
	}
	for _, tc := range cases {
		get(t, tc.client)
		if _, proto, _ := ts.seen(); proto != tc.want {
			t.Errorf("%s client: %s, want %s", tc.name, proto, tc.want)
		}
	}
}

// recordingCache is a session cache that records its keys and the
// handshakes it is told about (HandshakeObserver).
type recordingCache struct {
	tls.ClientSessionCache
	mu         sync.Mutex
	keys       []string
	handshakes []string
}

func (r *recordingCache) ObserveHandshake(key string, resumed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handshakes = append(r.handshakes, fmt.Sprintf("%s %v", key, resumed))
}

func (r *recordingCache) Put(key string, cs *tls.ClientSessionState) {
	r.mu.Lock()
	r.keys = append(r.keys, key)
	r.mu.Unlock()
	r.ClientSessionCache.Put(key, cs)
}

// One-shot clients resume sessions from their cache, which is keyed by
// address: two servers on one host keep their own tickets.
func TestClientOneShotResumption(t *testing.T) {
	a, b := newTestServer(t), newTestServer(t)
	cache := &recordingCache{ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	for round := 0; round < 2; round++ {
		for _, ts := range []*testServer{a, b} {
			conf := clientTLS(a, b)
			conf.ClientSessionCache = cache
			// A new client per request: a new process of the CLI.
			get(t, NewClientWith([]string{ts.addr}, "", conf, Options{OneShot: true}))
			if _, _, resumed := ts.seen(); resumed != (round == 1) {
				t.Errorf("round %d, %s: DidResume = %v", round, ts.addr, resumed)
			}
		}
	}
	cache.mu.Lock()
	defer cache.mu.Unlock()
	want := []string{a.addr + " false", b.addr + " false", a.addr + " true", b.addr + " true"}
	if !slices.Equal(cache.handshakes, want) {
		t.Errorf("handshakes observed: %q, want %q", cache.handshakes, want)
	}
	for _, k := range cache.keys {
		if k != a.addr && k != b.addr {
			t.Errorf("session cache key %q, want a server address", k)
		}
	}
}

func TestClientLeaderHint(t *testing.T) {
	cases := []struct {
		name   string
		hint   func(servers []*testServer) string
		status int
		// want is the server (index) the second request goes to; the
		// first goes to server 0.
		want     int
		onLeader bool
	}{
		{"no header", func([]*testServer) string { return "" }, http.StatusOK, 0, false},
		{"leader named", func(s []*testServer) string { return s[2].addr }, http.StatusOK, 2, true},
		{"itself", func(s []*testServer) string { return s[0].addr }, http.StatusOK, 0, true},
		{"not configured", func([]*testServer) string { return "10.9.9.9:7701" }, http.StatusOK, 0, false},
		{"not configured, same host", func(s []*testServer) string { return strings.Split(s[0].addr, ":")[0] + ":1" }, http.StatusOK, 0, false},
		// An error answer is not a reason to move.
		{"on an error", func(s []*testServer) string { return s[2].addr }, http.StatusNotFound, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			servers := []*testServer{newTestServer(t), newTestServer(t), newTestServer(t)}
			var addrs []string
			for _, s := range servers {
				addrs = append(addrs, s.addr)
			}
			servers[0].set(tc.hint(servers), tc.status)
			var got []string
			c := NewClientWith(addrs, "", clientTLS(servers...), Options{OneShot: true, OnLeader: func(a string) { got = append(got, a) }})
			c.Do(context.Background(), http.MethodGet, "/", nil, nil)
			servers[0].set("", http.StatusOK)
			get(t, c)
			for i, s := range servers {
				hits, _, _ := s.seen()
				want := 0
				if i == 0 {
					want++
				}
				if i == tc.want {
					want++
				}
				if hits != want {
					t.Errorf("server %d: %d requests, want %d", i, hits, want)
				}
			}
			if tc.onLeader != (len(got) > 0) || slices.ContainsFunc(got, func(a string) bool { return !slices.Contains(addrs, a) }) {
				t.Errorf("OnLeader calls %v", got)
			}
		})
	}
}

func TestClientPrefer(t *testing.T) {
	servers := []*testServer{newTestServer(t), newTestServer(t)}
	c := NewClientWith([]string{servers[0].addr, servers[1].addr}, "", clientTLS(servers...), Options{OneShot: true})
	if c.Prefer("10.9.9.9:7701") {
		t.Error("Prefer accepted an address that is not configured")
	}
	if !c.Prefer(servers[1].addr) {
		t.Error("Prefer refused a configured address")
	}
	get(t, c)
	if hits, _, _ := servers[1].seen(); hits != 1 {
		t.Errorf("preferred server got %d requests, want 1", hits)
	}
}
