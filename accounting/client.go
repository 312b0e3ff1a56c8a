package accounting

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/stockade-hpc/stockade/api"
)

// Typed calls of the /v1/acct routes (docs/api.md). Failures are
// *api.HTTPError; a proof asked for too early is status 409.

// Records lists stored records; users see only their own.
func Records(ctx context.Context, c *api.Client, q RecordQuery) (*RecordsResponse, error) {
	var out RecordsResponse
	if err := c.Do(ctx, http.MethodGet, withQuery("/v1/acct/records", q.Values()), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Epochs lists sealed epochs from number from (0: the latest limit
// epochs); limit 0 is the server's default (100).
func Epochs(ctx context.Context, c *api.Client, from uint64, limit int) (*EpochsResponse, error) {
	v := url.Values{}
	if from != 0 {
		v.Set("from", strconv.FormatUint(from, 10))
	}
	if limit != 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	var out EpochsResponse
	if err := c.Do(ctx, http.MethodGet, withQuery("/v1/acct/epochs", v), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetEpoch fetches epoch n with all its records (admins only).
func GetEpoch(ctx context.Context, c *api.Client, n uint64) (*EpochDetail, error) {
	var out EpochDetail
	if err := c.Do(ctx, http.MethodGet, "/v1/acct/epochs/"+strconv.FormatUint(n, 10), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetProof fetches the inclusion proof of a job's record; check it with
// VerifyProof against the commitment the chain holds for its epoch.
func GetProof(ctx context.Context, c *api.Client, jobID uint64) (*Proof, error) {
	var out Proof
	if err := c.Do(ctx, http.MethodGet, "/v1/acct/proof?job="+strconv.FormatUint(jobID, 10), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetProofBySeq fetches the inclusion proof of the record with seq.
func GetProofBySeq(ctx context.Context, c *api.Client, seq uint64) (*Proof, error) {
	var out Proof
	if err := c.Do(ctx, http.MethodGet, "/v1/acct/proof?seq="+strconv.FormatUint(seq, 10), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Prices fetches the current prices and beneficiaries and their history.
func Prices(ctx context.Context, c *api.Client) (*PricesResponse, error) {
	var out PricesResponse
	if err := c.Do(ctx, http.MethodGet, "/v1/acct/prices", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetPrices stores a new price version (admins only). Resending is
// harmless: content already current makes no new version.
func SetPrices(ctx context.Context, c *api.Client, req SetPricesRequest) (*PricesResponse, error) {
	var out PricesResponse
	if err := c.Do(ctx, http.MethodPost, "/v1/acct/prices", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetStatement totals records per period.
func GetStatement(ctx context.Context, c *api.Client, q StatementQuery) (*StatementResponse, error) {
	var out StatementResponse
	if err := c.Do(ctx, http.MethodGet, withQuery("/v1/acct/statement", q.Values()), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetSettlement moves records to a settlement status (admins only);
// resending changes nothing more.
func SetSettlement(ctx context.Context, c *api.Client, req SettlementRequest) (*SettlementResponse, error) {
	var out SettlementResponse
	if err := c.Do(ctx, http.MethodPost, "/v1/acct/settlement", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func withQuery(path string, v url.Values) string {
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}
