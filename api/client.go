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

// Client talks to the controllers' /v1 API over TLS. It tries the servers in
// order and sticks to the first that answers; any controller accepts any
// request (followers forward to the leader).
type Client struct {
	Servers []string // host:port
	Token   string   // bearer token of a user
	HTTP    *http.Client
	last    atomic.Int32 // the server that answered last; shared by goroutines
}

// NewClient builds a client that trusts only the cluster CA in tlsConf.
func NewClient(servers []string, token string, tlsConf *tls.Config) *Client {
	tr := &http.Transport{
		TLSClientConfig:     tlsConf,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		ForceAttemptHTTP2:   true,
	}
	return &Client{Servers: servers, Token: token, HTTP: &http.Client{Transport: tr}}
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
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}
