package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// LeaderHeader is the response header in which a controller names the
// current leader's API address (host:port). A client that gets it prefers
// that controller for its next request when the address is one of its
// configured servers, so writes stop costing a follower a forwarding hop.
const LeaderHeader = "X-Stockade-Leader"

// Client talks to the controllers' /v1 API over TLS. It tries the servers in
// order and sticks to the first that answers, or to the leader a
// controller names (LeaderHeader); any controller accepts any request
// (followers forward to the leader).
type Client struct {
	Servers []string // host:port
	Token   string   // bearer token of a user
	HTTP    *http.Client
	// OnLeader, if set, is called with every leader hint that names one
	// of Servers (see LeaderHeader), for callers that remember the leader
	// across processes.
	OnLeader func(addr string)
	last     atomic.Int32 // the server that answered last; shared by goroutines
	// hint is 1 + the index in Servers of the leader named by the last
	// answer, 0 if none; failover moves to it after a success.
	hint atomic.Int32
}

// Options tune a client for the way it is used.
type Options struct {
	// OneShot is for processes that make a request or two and exit (the
	// CLI): HTTP/1.1 only, since HTTP/2's preface and SETTINGS exchange
	// buy nothing for one request, and TLS sessions cached by server
	// address (host:port) rather than by host name, so that a session
	// ticket from one controller is never offered to another controller
	// on the same host (each has its own ticket keys). Set
	// tlsConf.ClientSessionCache to resume sessions across connections.
	// Long-lived clients (agents, controllers, benchmarks) keep the
	// default: HTTP/2 over one multiplexed connection.
	OneShot bool
	// OnLeader sets Client.OnLeader.
	OnLeader func(addr string)
}

// NewClient builds a client that trusts only the cluster CA in tlsConf,
// for long-lived users: HTTP/2 when the server offers it.
func NewClient(servers []string, token string, tlsConf *tls.Config) *Client {
	return NewClientWith(servers, token, tlsConf, Options{})
}

// NewClientWith is NewClient with options (see Options).
func NewClientWith(servers []string, token string, tlsConf *tls.Config, o Options) *Client {
	tr := &http.Transport{
		TLSClientConfig:     tlsConf,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		ForceAttemptHTTP2:   !o.OneShot,
	}
	if o.OneShot {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP1(true)
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			// tr.DialContext is read here, not captured, so that callers
			// may replace it (test clusters in network namespaces do).
			return dialTLS(ctx, tr.DialContext, network, addr, tlsConf)
		}
	}
	return &Client{Servers: servers, Token: token, HTTP: &http.Client{Transport: tr}, OnLeader: o.OnLeader}
}

// dialTLS connects and completes a TLS handshake as http.Transport would
// (ServerName is the host of addr unless conf sets one), except that
// conf's ClientSessionCache is keyed by addr. A handshake that fails
// while resuming makes crypto/tls drop the cached session, so the retry
// (failover) is a full handshake: a damaged cache entry costs a
// handshake, never an error.
func dialTLS(ctx context.Context, dial func(context.Context, string, string) (net.Conn, error),
	network, addr string, conf *tls.Config) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg := conf.Clone()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cache := cfg.ClientSessionCache
	if cache != nil {
		cfg.ClientSessionCache = addrSessionCache{cache, addr}
	}
	raw, err := dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	if o, ok := cache.(HandshakeObserver); ok {
		o.ObserveHandshake(addr, conn.ConnectionState().DidResume)
	}
	return conn, nil
}

// HandshakeObserver may be implemented by the ClientSessionCache of a
// one-shot client (Options.OneShot). ObserveHandshake is called after each
// handshake with the cache key (the server address) and whether the
// session was resumed, before any ticket the connection brings is Put: a
// cache that persists tickets can skip rewriting a ticket that still
// works.
type HandshakeObserver interface {
	ObserveHandshake(key string, resumed bool)
}

// addrSessionCache keys a session cache by the server's address: crypto/tls
// keys it by ServerName, which every controller on one host shares.
// ServerName still guards resumption: crypto/tls checks the cached
// session's certificate against it.
type addrSessionCache struct {
	tls.ClientSessionCache
	addr string
}

func (a addrSessionCache) Get(string) (*tls.ClientSessionState, bool) {
	return a.ClientSessionCache.Get(a.addr)
}

func (a addrSessionCache) Put(_ string, cs *tls.ClientSessionState) {
	a.ClientSessionCache.Put(a.addr, cs)
}

// Prefer makes addr, if it is one of Servers, the first server the next
// request tries, as a remembered leader hint; it reports whether it is.
func (c *Client) Prefer(addr string) bool {
	i := c.serverIndex(addr)
	if i >= 0 {
		c.last.Store(int32(i))
	}
	return i >= 0
}

func (c *Client) serverIndex(addr string) int {
	for i, s := range c.Servers {
		if s == addr {
			return i
		}
	}
	return -1
}

// noteLeader takes a leader hint from an answer: only an address among
// Servers is trusted, and only for where the next request goes.
func (c *Client) noteLeader(h http.Header) {
	addr := h.Get(LeaderHeader)
	if addr == "" {
		return
	}
	i := c.serverIndex(addr)
	if i < 0 {
		return
	}
	c.hint.Store(int32(i + 1))
	if c.OnLeader != nil {
		c.OnLeader(addr)
	}
}

// HTTPError is a non-2xx answer from the API.
type HTTPError struct {
	Status  int
	Message string
}

func (e *HTTPError) Error() string { return e.Message }

// retryable reports whether err means "try another controller".
func retryable(err error) bool {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status == http.StatusServiceUnavailable || he.Status == http.StatusBadGateway
	}
	// A certificate that does not verify will not verify on retry either.
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) {
		return false
	}
	return err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// Do sends one request; in and out are JSON bodies (either may be nil). It
// fails over to the next server on connection errors and 502/503, and
// retries the whole list until ctx ends, so a request made during a leader
// election waits for the new leader. Only idempotent requests may be
// retried: callers make writes idempotent (submit ids) before using Do.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	if len(c.Servers) == 0 {
		return errors.New("no controller address configured (STOCKADE_SERVERS or the client config file)")
	}
	return c.failover(ctx, func(server string) error {
		return c.once(ctx, server, method, path, body, out)
	})
}

// failover calls try with each server in turn, starting with the one that
// answered last, until one succeeds, an error is not worth retrying, or
// ctx ends.
func (c *Client) failover(ctx context.Context, try func(server string) error) error {
	var lastErr error
	backoff := 50 * time.Millisecond
	for {
		for i := 0; i < len(c.Servers); i++ {
			idx := (int(c.last.Load()) + i) % len(c.Servers)
			err := try(c.Servers[idx])
			if err == nil {
				// Stick to this server, or move to the leader it named.
				if h := int(c.hint.Swap(0)) - 1; h >= 0 && h < len(c.Servers) {
					idx = h
				}
				c.last.Store(int32(idx))
				return nil
			}
			if !retryable(err) {
				return err
			}
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no controller answered: %w", lastErr)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

func (c *Client) once(ctx context.Context, server, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+server+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &HTTPError{Status: resp.StatusCode, Message: e.Error}
		}
		return &HTTPError{Status: resp.StatusCode, Message: strings.TrimSpace(resp.Status + " " + string(data))}
	}
	c.noteLeader(resp.Header)
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}
