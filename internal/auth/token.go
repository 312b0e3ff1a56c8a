package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"runtime"
	"strings"
	"sync"

	"github.com/stockade-hpc/stockade/api"
)

// TokenPrefix starts every user token, so that leaked tokens are easy to
// recognise by secret scanners.
const TokenPrefix = "stk_"

// ErrInvalidToken is the one answer for every bad token, so that callers
// cannot tell an unknown token id from a wrong secret.
var ErrInvalidToken = errors.New("invalid token")

// NewToken returns a fresh token stk_<tokenid>_<secret> and its id. The id
// (64 random bits, hex) finds the user; the secret (256 bits) proves it.
func NewToken() (tokenID, token string, err error) {
	var id [8]byte
	var secret [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", "", err
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return "", "", err
	}
	tokenID = hex.EncodeToString(id[:])
	return tokenID, TokenPrefix + tokenID + "_" + base64.RawURLEncoding.EncodeToString(secret[:]), nil
}

// ParseToken splits a token into its id and secret. The secret may itself
// contain '_' (base64url), the id never does.
func ParseToken(token string) (tokenID, secret string, err error) {
	rest, ok := strings.CutPrefix(token, TokenPrefix)
	if !ok {
		return "", "", ErrInvalidToken
	}
	tokenID, secret, ok = strings.Cut(rest, "_")
	if !ok || len(tokenID) != 16 || len(secret) < 32 {
		return "", "", ErrInvalidToken
	}
	if _, err := hex.DecodeString(tokenID); err != nil {
		return "", "", ErrInvalidToken
	}
	return tokenID, secret, nil
}

// HashToken is the TokenHash stored for a user: Argon2id over the whole
// token, so the hash is bound to the token id as well.
func HashToken(token string) (string, error) { return Hash(token) }

// Authenticator checks bearer tokens against user records. Argon2id is far
// too slow to run per request, so a verified token is remembered under
// HMAC-SHA256(token) with a key that lives only in this process: the cache
// holds nothing that would let anyone rebuild or test a token offline.
type Authenticator struct {
	key [32]byte
	max int
	sem chan struct{} // bounds concurrent Argon2id runs (64 MiB each)

	mu       sync.Mutex
	entries  map[[32]byte]cacheEntry
	inflight map[[32]byte]chan struct{}
}

type cacheEntry struct {
	user string
	// tokenHash is the record's hash when the token was verified; a user
	// whose hash changed (new token) misses the cache.
	tokenHash string
}

// NewAuthenticator returns an empty cache of at most maxEntries tokens
// (0: 100,000).
func NewAuthenticator(maxEntries int) *Authenticator {
	if maxEntries <= 0 {
		maxEntries = 100_000
	}
	a := &Authenticator{
		max:      maxEntries,
		sem:      make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2)),
		entries:  map[[32]byte]cacheEntry{},
		inflight: map[[32]byte]chan struct{}{},
	}
	if _, err := rand.Read(a.key[:]); err != nil {
		panic(err) // the kernel's CSPRNG does not fail
	}
	return a
}

func (a *Authenticator) mac(token string) [32]byte {
	h := hmac.New(sha256.New, a.key[:])
	h.Write([]byte(token))
	var k [32]byte
	copy(k[:], h.Sum(nil))
	return k
}

// Authenticate returns the user a token belongs to. lookup finds the user
// record by token id (nil if none); the record's TokenHash is the truth, the
// cache only skips re-verifying a token already proven against that hash.
func (a *Authenticator) Authenticate(ctx context.Context, token string, lookup func(tokenID string) *api.User) (*api.User, error) {
	tokenID, _, err := ParseToken(token)
	if err != nil {
		return nil, err
	}
	u := lookup(tokenID)
	if u == nil || u.TokenHash == "" || u.TokenID != tokenID {
		return nil, ErrInvalidToken
	}
	k := a.mac(token)
	for {
		a.mu.Lock()
		e, hit := a.entries[k]
		if hit && e.user == u.Name && e.tokenHash == u.TokenHash {
			a.mu.Unlock()
			return u, nil
		}
		if hit {
			delete(a.entries, k) // the user's token changed
		}
		wait, busy := a.inflight[k]
		if !busy {
			wait = make(chan struct{})
			a.inflight[k] = wait
		}
		a.mu.Unlock()
		if busy {
			// Someone is verifying this very token: reuse the outcome
			// instead of burning another 64 MiB.
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ok, err := a.verify(ctx, u.TokenHash, token)
		a.mu.Lock()
		if ok {
			if len(a.entries) >= a.max {
				for old := range a.entries { // evict an arbitrary entry
					delete(a.entries, old)
					break
				}
			}
			a.entries[k] = cacheEntry{user: u.Name, tokenHash: u.TokenHash}
		}
		delete(a.inflight, k)
		close(wait)
		a.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, ErrInvalidToken
		}
		return u, nil
	}
}

func (a *Authenticator) verify(ctx context.Context, phc, token string) (bool, error) {
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-a.sem }()
	ok, err := Verify(phc, token)
	if err != nil {
		// A malformed stored hash can never match; say "invalid token"
		// rather than leak details about the record.
		return false, nil
	}
	return ok, nil
}

// Len is the number of cached tokens.
func (a *Authenticator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries)
}

// Forget drops every cached token (e.g. after a user's token was revoked
// in a way the hash comparison cannot see).
func (a *Authenticator) Forget() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.entries)
}
