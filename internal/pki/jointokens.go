package pki

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/stockade-hpc/stockade/internal/auth"
)

// JoinTokensFile is the name of the join token hash file in a
// controller's data directory.
const JoinTokensFile = "join-tokens.json"

// StoredJoinToken is the hash of one join token's secret and the role it
// grants. The secret itself is never stored by a controller.
type StoredJoinToken struct {
	Role    string    `json:"role"` // agent | controller
	Hash    string    `json:"hash"` // Argon2id PHC string of the secret
	Created time.Time `json:"created"`
}

// JoinTokens is the set of valid join tokens, kept in join-tokens.json.
// Controllers copy it to every controller that joins, so any of them can
// admit new members.
type JoinTokens struct {
	mu     sync.Mutex
	path   string
	Tokens []StoredJoinToken `json:"tokens"`
}

// OpenJoinTokens reads path; a missing file is an empty set.
func OpenJoinTokens(path string) (*JoinTokens, error) {
	jt := &JoinTokens{path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return jt, nil
	}
	if err != nil {
		return nil, err
	}
	if err := jt.decode(data); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return jt, nil
}

func (jt *JoinTokens) decode(data []byte) error {
	var f struct {
		Tokens []StoredJoinToken `json:"tokens"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return err
	}
	for i, t := range f.Tokens {
		if t.Role != OUAgent && t.Role != OUController {
			return fmt.Errorf("tokens[%d].role: %q is not agent or controller", i, t.Role)
		}
	}
	jt.Tokens = f.Tokens
	return nil
}

// Replace sets the tokens from another controller's join-tokens.json
// contents and saves them.
func (jt *JoinTokens) Replace(data []byte) error {
	jt.mu.Lock()
	defer jt.mu.Unlock()
	if err := jt.decode(data); err != nil {
		return fmt.Errorf("join tokens: %w", err)
	}
	return jt.saveLocked()
}

// Add hashes a new token's secret for role and saves the file.
func (jt *JoinTokens) Add(role string, t JoinToken) error {
	if role != OUAgent && role != OUController {
		return fmt.Errorf("join token role %q: want agent or controller", role)
	}
	h, err := auth.Hash(t.Secret)
	if err != nil {
		return err
	}
	jt.mu.Lock()
	defer jt.mu.Unlock()
	jt.Tokens = append(jt.Tokens, StoredJoinToken{Role: role, Hash: h, Created: time.Now().UTC()})
	return jt.saveLocked()
}

// Match returns the role the token's secret grants, or "" if none. Every
// stored hash is tried (Argon2id: tens of ms each), so callers should bound
// how many run at once.
func (jt *JoinTokens) Match(t JoinToken) string {
	jt.mu.Lock()
	tokens := append([]StoredJoinToken(nil), jt.Tokens...)
	jt.mu.Unlock()
	for _, st := range tokens {
		if ok, err := auth.Verify(st.Hash, t.Secret); err == nil && ok {
			return st.Role
		}
	}
	return ""
}

// JSON is the file's contents, for joining controllers.
func (jt *JoinTokens) JSON() ([]byte, error) {
	jt.mu.Lock()
	defer jt.mu.Unlock()
	return jt.marshalLocked()
}

func (jt *JoinTokens) marshalLocked() ([]byte, error) {
	return json.MarshalIndent(struct {
		Tokens []StoredJoinToken `json:"tokens"`
	}{jt.Tokens}, "", "  ")
}

func (jt *JoinTokens) saveLocked() error {
	data, err := jt.marshalLocked()
	if err != nil {
		return err
	}
	return WriteFile(jt.path, append(data, '\n'), 0o600)
}
