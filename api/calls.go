package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Typed wrappers over Do for the user-facing routes of docs/api.md. Writes
// are safe to retry as Do does: submits carry a SubmitID, cancel, job
// actions and node updates converge to the same state when repeated. Only
// AddUser is not: a retry after a lost answer fails with "exists".

// Submit queues a job or an array (or, with TestOnly, only estimates it).
func (c *Client) Submit(ctx context.Context, req SubmitRequest) (*SubmitResponse, error) {
	var resp SubmitResponse
	if err := c.Do(ctx, http.MethodPost, "/v1/jobs", req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// JobQuery selects jobs for GET /v1/jobs. Empty fields do not filter; list
// fields match any of their values and are sent comma-separated.
type JobQuery struct {
	Users      []string   // user=alice,bob: owners' names
	States     []JobState // state=PENDING,RUNNING
	Partitions []string   // partition=
	IDs        []string   // id=123,124_2: a plain id also matches every task of that array
	Names      []string   // name=: job names
	// All lists finished jobs of any age; without it they are listed only
	// for a few minutes after they end (Slurm's MinJobAge). Users see only
	// their own jobs, admins every user's, either way.
	All bool // all=true
	// Since and Until bound a time window: jobs that had not ended before
	// Since and were submitted no later than Until (RFC 3339). Either one
	// implies All.
	Since time.Time // since=
	Until time.Time // until=
	// Stale answers from the serving controller's replica instead of a
	// linearizable read through the leader.
	Stale bool // stale=true
	// Start asks for pending jobs' expected start times (squeue --start).
	Start bool // start=true
}

// Values encodes the query as URL parameters.
func (q JobQuery) Values() url.Values {
	v := url.Values{}
	set := func(key string, vals []string) {
		if len(vals) > 0 {
			v.Set(key, strings.Join(vals, ","))
		}
	}
	set("user", q.Users)
	states := make([]string, len(q.States))
	for i, s := range q.States {
		states[i] = string(s)
	}
	set("state", states)
	set("partition", q.Partitions)
	set("id", q.IDs)
	set("name", q.Names)
	if q.All {
		v.Set("all", "true")
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.Stale {
		v.Set("stale", "true")
	}
	if q.Start {
		v.Set("start", "true")
	}
	return v
}

// Jobs lists the jobs q selects.
func (c *Client) Jobs(ctx context.Context, q JobQuery) (*JobsResponse, error) {
	path := "/v1/jobs"
	if enc := q.Values().Encode(); enc != "" {
		path += "?" + enc
	}
	var resp JobsResponse
	if err := c.Do(ctx, http.MethodGet, path, nil, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Job fetches one job by its own id.
func (c *Client) Job(ctx context.Context, id uint64) (*Job, error) {
	var j Job
	if err := c.Do(ctx, http.MethodGet, "/v1/jobs/"+strconv.FormatUint(id, 10), nil, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// Cancel cancels (or signals) the jobs req selects.
func (c *Client) Cancel(ctx context.Context, req CancelRequest) (*CancelResponse, error) {
	var resp CancelResponse
	if err := c.Do(ctx, http.MethodPost, "/v1/jobs/cancel", req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// JobAction holds, releases or requeues jobs.
func (c *Client) JobAction(ctx context.Context, req JobActionRequest) (*CancelResponse, error) {
	var resp CancelResponse
	if err := c.Do(ctx, http.MethodPost, "/v1/jobs/action", req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Nodes lists the nodes and partitions.
func (c *Client) Nodes(ctx context.Context) (*NodesResponse, error) {
	var resp NodesResponse
	if err := c.Do(ctx, http.MethodGet, "/v1/nodes", nil, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// UpdateNodes drains, resumes or downs nodes (admins only).
func (c *Client) UpdateNodes(ctx context.Context, req NodeUpdateRequest) error {
	return c.Do(ctx, http.MethodPost, "/v1/nodes/update", req, nil)
}

// Status reports the controllers, the Raft indexes and the cluster's load.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// AddUser creates a user; the answer holds the only copy of its token.
func (c *Client) AddUser(ctx context.Context, req UserAddRequest) (*UserAddResponse, error) {
	var resp UserAddResponse
	if err := c.Do(ctx, http.MethodPost, "/v1/users", req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Users lists the users (admins only).
func (c *Client) Users(ctx context.Context) ([]User, error) {
	var users []User
	if err := c.Do(ctx, http.MethodGet, "/v1/users", nil, &users); err != nil {
		return nil, err
	}
	return users, nil
}
