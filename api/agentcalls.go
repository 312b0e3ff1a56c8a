package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// AgentRegister sends a node's inventory; the answer is the node as the
// controllers now record it.
func (c *Client) AgentRegister(ctx context.Context, req AgentRegisterRequest) (Node, error) {
	var n Node
	err := c.Do(ctx, http.MethodPost, "/v1/agent/register", req, &n)
	return n, err
}

// AgentHeartbeat tells the controllers the node is alive.
func (c *Client) AgentHeartbeat(ctx context.Context, hb AgentHeartbeat) error {
	return c.Do(ctx, http.MethodPost, "/v1/agent/heartbeat", hb, nil)
}

// AgentWork long-polls the jobs placed on the calling node: it returns once
// the state index passes index, or after about wait with the current list.
// ctx must outlive wait or every poll ends in a timeout.
func (c *Client) AgentWork(ctx context.Context, index uint64, wait time.Duration) (AgentWork, error) {
	q := url.Values{}
	q.Set("index", strconv.FormatUint(index, 10))
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	var w AgentWork
	err := c.Do(ctx, http.MethodGet, "/v1/agent/work?"+q.Encode(), nil, &w)
	return w, err
}

// AgentReport sends a job's progress or end.
func (c *Client) AgentReport(ctx context.Context, r JobReport) error {
	return c.Do(ctx, http.MethodPost, "/v1/agent/report", r, nil)
}

// FetchClusterCA gets the cluster CA certificate (PEM). The answer is not
// JSON, so this bypasses Do but keeps its failover: every server is tried
// in turn until one answers or ctx ends. The caller must check the PEM
// against its join token's pin before trusting it.
func (c *Client) FetchClusterCA(ctx context.Context) ([]byte, error) {
	if len(c.Servers) == 0 {
		return nil, errors.New("no controller address configured")
	}
	var pem []byte
	err := c.failover(ctx, func(server string) error {
		var err error
		pem, err = c.getRaw(ctx, server, "/v1/cluster/ca")
		return err
	})
	return pem, err
}

func (c *Client) getRaw(ctx context.Context, server, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+server+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, &HTTPError{Status: resp.StatusCode, Message: resp.Status}
	}
	return data, nil
}
