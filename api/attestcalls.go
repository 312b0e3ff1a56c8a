package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/stockade-hpc/stockade/policy"
)

// Typed wrappers for the admin attestation routes of docs/api.md. Do may
// resend them after a lost answer. Adding a digest, approving an EK or
// revoking a node twice changes nothing more; a policy PUT carrying the
// version it edits is refused (409) once the first one applied, one
// without a version stores the same content again.

// AttestLog is the last event log the verifier judged for a node.
type AttestLog struct {
	Node      string    `json:"node"`
	LastQuote time.Time `json:"last_quote,omitzero"`
	// QuotedAt is when Measurements were verified; zero when the serving
	// controller holds no log for the node.
	QuotedAt time.Time `json:"quoted_at,omitzero"`
	// Code is the policy's verdict on them ("" passed).
	Code         string              `json:"code,omitempty"`
	Measurements []AttestMeasurement `json:"measurements"`
}

// AttestMeasurement is one event of an attestation log.
type AttestMeasurement struct {
	PCR    int    `json:"pcr"`
	Type   uint32 `json:"type"`   // TCG event type
	Digest string `json:"digest"` // lowercase hex, in the policy's bank
	// Data is the event data when it is printable text, else DataHex
	// holds it in hex.
	Data    string `json:"data,omitempty"`
	DataHex string `json:"data_hex,omitempty"`
}

// AttestPolicy fetches the cluster's measurement policy.
func (c *Client) AttestPolicy(ctx context.Context) (*policy.Policy, error) {
	var p policy.Policy
	if err := c.Do(ctx, http.MethodGet, "/v1/attest/policy", nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// SetAttestPolicy replaces the policy; the answer is the stored policy
// under its new version.
func (c *Client) SetAttestPolicy(ctx context.Context, p *policy.Policy) (*policy.Policy, error) {
	var out policy.Policy
	if err := c.Do(ctx, http.MethodPut, "/v1/attest/policy", p, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AddAgentDigest allows an agent binary ("sha256:<hex>") and returns the
// policy that now holds it.
func (c *Client) AddAgentDigest(ctx context.Context, digest string) (*policy.Policy, error) {
	var out policy.Policy
	in := struct {
		Digest string `json:"digest"`
	}{digest}
	if err := c.Do(ctx, http.MethodPost, "/v1/attest/policy/digests", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Audit lists attestation audit records. Zero values do not filter: node
// "" is every node, since 0 the whole log, limit 0 the server's default.
func (c *Client) Audit(ctx context.Context, node string, since uint64, limit int) ([]AuditRecord, error) {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	if since > 0 {
		q.Set("since", strconv.FormatUint(since, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/audit"
	if enc := q.Encode(); enc != "" {
		path += "?" + enc
	}
	var recs []AuditRecord
	if err := c.Do(ctx, http.MethodGet, path, nil, &recs); err != nil {
		return nil, err
	}
	return recs, nil
}

// ApproveEK vouches for an endorsement key whose certificate cannot be
// verified, so a node holding it may enroll.
func (c *Client) ApproveEK(ctx context.Context, fingerprint, comment string) (*ApprovedEK, error) {
	in := struct {
		Fingerprint string `json:"fingerprint"`
		Comment     string `json:"comment,omitempty"`
	}{fingerprint, comment}
	var out ApprovedEK
	if err := c.Do(ctx, http.MethodPost, "/v1/nodes/approve", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokeNode evicts a node and revokes its certificate.
func (c *Client) RevokeNode(ctx context.Context, node, reason string) error {
	in := struct {
		Node   string `json:"node"`
		Reason string `json:"reason,omitempty"`
	}{node, reason}
	return c.Do(ctx, http.MethodPost, "/v1/nodes/revoke", in, nil)
}

// AttestLog fetches the last verified event log of a node.
func (c *Client) AttestLog(ctx context.Context, node string) (*AttestLog, error) {
	var out AttestLog
	if err := c.Do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(node)+"/attest-log", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
