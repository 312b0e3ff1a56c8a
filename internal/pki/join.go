package pki

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/stockade-hpc/stockade/api"
)

// JoinResponse is the body of POST /v1/join: the public api.JoinResponse
// plus, for controllers only, the join token hashes (join-tokens.json) so
// the new controller can admit members too.
type JoinResponse struct {
	api.JoinResponse
	JoinTokens json.RawMessage `json:"join_tokens,omitempty"`
}

// JoinRequest describes the member asking to join.
type JoinRequest struct {
	Servers []string // API addresses of any members
	Token   string   // stkjoin.<ca-hash>.<secret>
	Name    string   // controller id or node name (the certificate CN)
	// Controllers only: their Raft and API addresses, and extra SANs.
	RaftAddr string
	APIAddr  string
	Hosts    []string
}

// Joined is a new member's credentials, all PEM.
type Joined struct {
	Key, Cert, CACert []byte
	CAKey             []byte // controllers only
	AnchorKey         []byte // controllers only: the cluster's anchoring key, if it has one
	JoinTokens        []byte // controllers only: join-tokens.json contents
}

// Join fetches the cluster CA over a connection pinned to the token's CA
// hash, then trades the token and a fresh CSR for a certificate. The key
// never leaves this process.
func Join(ctx context.Context, r JoinRequest) (*Joined, error) {
	tok, err := ParseJoinToken(r.Token)
	if err != nil {
		return nil, err
	}
	if err := ValidName(r.Name); err != nil {
		return nil, err
	}
	// The pinned config verifies the server's chain ends at the pinned CA,
	// so it is safe for the token-bearing request as well.
	c := api.NewClient(r.Servers, "", tok.PinnedTLSConfig())
	caPEM, err := c.FetchClusterCA(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetching the cluster CA: %w", err)
	}
	if _, err := tok.VerifyCAPin(caPEM); err != nil {
		return nil, err
	}
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	csr, err := NewCSR(key, r.Name, r.Hosts)
	if err != nil {
		return nil, err
	}
	var resp JoinResponse
	err = c.Do(ctx, http.MethodPost, "/v1/join", api.JoinRequest{
		Token: r.Token, Name: r.Name, CSR: csr, RaftAddr: r.RaftAddr, APIAddr: r.APIAddr,
	}, &resp)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	if _, err := tok.VerifyCAPin(resp.CACert); err != nil {
		return nil, fmt.Errorf("join answer: %w", err)
	}
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	if _, err := NewIdentity(resp.Certificate, keyPEM, resp.CACert); err != nil {
		return nil, fmt.Errorf("join answer: %w", err)
	}
	j := &Joined{Key: keyPEM, Cert: resp.Certificate, CACert: resp.CACert, CAKey: resp.CAKey, AnchorKey: resp.AnchorKey, JoinTokens: resp.JoinTokens}
	if r.RaftAddr != "" {
		if len(j.CAKey) == 0 || len(j.JoinTokens) == 0 {
			return nil, errors.New("join answer: controller join without the CA key or join tokens")
		}
		if _, err := ParseCA(resp.CACert, resp.CAKey); err != nil {
			return nil, fmt.Errorf("join answer: %w", err)
		}
	}
	return j, nil
}
