package auth

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// cheap keeps tests fast; the format and code path are the same.
var cheap = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestHashVerify(t *testing.T) {
	phc, err := HashWith(cheap, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("PHC string %q", phc)
	}
	other, _ := HashWith(cheap, "s3cret")
	if other == phc {
		t.Fatal("two hashes of one secret are equal: salt not random")
	}
	tests := []struct {
		name    string
		phc     string
		secret  string
		ok      bool
		wantErr bool
	}{
		{"right secret", phc, "s3cret", true, false},
		{"wrong secret", phc, "s3creT", false, false},
		{"empty secret", phc, "", false, false},
		{"not phc", "plain", "s3cret", false, true},
		{"argon2i", strings.Replace(phc, "argon2id", "argon2i", 1), "s3cret", false, true},
		{"bad version", strings.Replace(phc, "v=19", "v=16", 1), "s3cret", false, true},
		{"huge memory", strings.Replace(phc, "m=64", "m=99999999", 1), "s3cret", false, true},
		{"bad salt", phc[:strings.LastIndex(phc, "$")-3] + "!!!" + phc[strings.LastIndex(phc, "$"):], "s3cret", false, true},
		{"truncated", phc[:len(phc)-30], "s3cret", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := Verify(tc.phc, tc.secret)
			if (err != nil) != tc.wantErr || ok != tc.ok {
				t.Errorf("Verify = %v, %v; want %v, err %v", ok, err, tc.ok, tc.wantErr)
			}
		})
	}
}

func TestDefaultParamsFormat(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB hash")
	}
	start := time.Now()
	phc, err := Hash("x")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("default Argon2id hash took %s", time.Since(start))
	if !strings.HasPrefix(phc, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("PHC string %q", phc)
	}
	if ok, err := Verify(phc, "x"); !ok || err != nil {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
}

func TestParseToken(t *testing.T) {
	id, tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "stk_"+id+"_") {
		t.Fatalf("token %q does not carry id %q", tok, id)
	}
	tests := []struct {
		name string
		tok  string
		ok   bool
	}{
		{"fresh", tok, true},
		{"underscore in secret", "stk_0123456789abcdef_" + strings.Repeat("a_", 20), true},
		{"no prefix", strings.TrimPrefix(tok, "stk_"), false},
		{"no secret", "stk_" + id, false},
		{"short secret", "stk_" + id + "_abc", false},
		{"short id", "stk_abc_" + strings.Repeat("x", 43), false},
		{"id not hex", "stk_zzzzzzzzzzzzzzzz_" + strings.Repeat("x", 43), false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gotID, _, err := ParseToken(tc.tok)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseToken(%q) err = %v, want ok %v", tc.tok, err, tc.ok)
			}
			if tc.ok && len(gotID) != 16 {
				t.Errorf("id %q", gotID)
			}
		})
	}
}

// users is a lookup table counting lookups.
type users struct {
	mu sync.Mutex
	m  map[string]*api.User
}

func (u *users) lookup(id string) *api.User {
	u.mu.Lock()
	defer u.mu.Unlock()
	if r := u.m[id]; r != nil {
		c := *r
		return &c
	}
	return nil
}

func newUser(t *testing.T, name string) (*api.User, string) {
	t.Helper()
	id, tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	h, err := HashWith(cheap, tok)
	if err != nil {
		t.Fatal(err)
	}
	return &api.User{Name: name, TokenID: id, TokenHash: h}, tok
}

func TestAuthenticate(t *testing.T) {
	alice, aliceTok := newUser(t, "alice")
	bob, bobTok := newUser(t, "bob")
	db := &users{m: map[string]*api.User{alice.TokenID: alice, bob.TokenID: bob}}
	a := NewAuthenticator(0)
	ctx := context.Background()
	_, other, _ := NewToken()
	tests := []struct {
		name  string
		token string
		user  string
	}{
		{"alice", aliceTok, "alice"},
		{"alice cached", aliceTok, "alice"},
		{"bob", bobTok, "bob"},
		{"unknown id", other, ""},
		{"alice id with bob's secret", "stk_" + alice.TokenID + bobTok[len("stk_")+16:], ""},
		{"garbage", "Bearer x", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := a.Authenticate(ctx, tc.token, db.lookup)
			if tc.user == "" {
				if err == nil {
					t.Fatalf("authenticated as %s", u.Name)
				}
				return
			}
			if err != nil || u.Name != tc.user {
				t.Fatalf("Authenticate = %v, %v; want %s", u, err, tc.user)
			}
		})
	}
	if n := a.Len(); n != 2 {
		t.Errorf("cache holds %d tokens, want 2", n)
	}
	for k := range a.entries {
		for _, tok := range []string{aliceTok, bobTok} {
			if strings.Contains(string(k[:]), tok) {
				t.Fatal("cache key contains the plain token")
			}
		}
	}

	// A new token for alice invalidates the cached old one.
	alice2, alice2Tok := newUser(t, "alice")
	alice2.TokenID = alice.TokenID // same id, new hash: the old secret must fail
	db.mu.Lock()
	db.m[alice.TokenID] = alice2
	db.mu.Unlock()
	if _, err := a.Authenticate(ctx, aliceTok, db.lookup); err == nil {
		t.Error("old token still accepted after the user's hash changed")
	}
	_ = alice2Tok
}

func TestAuthenticateCachesAndCoalesces(t *testing.T) {
	// Real parameters: the cache must make repeated checks cheap.
	if testing.Short() {
		t.Skip("64 MiB hashes")
	}
	id, tok, _ := NewToken()
	h, err := HashToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	var lookups atomic.Int64
	lookup := func(tid string) *api.User {
		lookups.Add(1)
		if tid != id {
			return nil
		}
		return &api.User{Name: "carol", TokenID: id, TokenHash: h}
	}
	a := NewAuthenticator(0)
	start := time.Now()
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Authenticate(context.Background(), tok, lookup); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	first := time.Since(start)
	start = time.Now()
	const n = 20000
	for range n {
		if _, err := a.Authenticate(context.Background(), tok, lookup); err != nil {
			t.Fatal(err)
		}
	}
	per := time.Since(start) / n
	t.Logf("32 concurrent first checks %s; cached check %s", first, per)
	if per > 100*time.Microsecond {
		t.Errorf("cached check takes %s", per)
	}
	if first > 5*time.Second {
		t.Errorf("32 concurrent checks of one token took %s: not coalesced", first)
	}
}

func TestAuthenticateEviction(t *testing.T) {
	a := NewAuthenticator(3)
	db := &users{m: map[string]*api.User{}}
	var toks []string
	for i := range 5 {
		u, tok := newUser(t, string(rune('a'+i)))
		db.m[u.TokenID] = u
		toks = append(toks, tok)
	}
	for _, tok := range toks {
		if _, err := a.Authenticate(context.Background(), tok, db.lookup); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.Len(); n != 3 {
		t.Errorf("cache holds %d, want at most 3", n)
	}
	a.Forget()
	if n := a.Len(); n != 0 {
		t.Errorf("after Forget: %d", n)
	}
}

func TestAuthenticateCancelled(t *testing.T) {
	u, tok := newUser(t, "dave")
	a := NewAuthenticator(0)
	// Occupy every Argon2id slot so the check has to wait.
	for range cap(a.sem) {
		a.sem <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := a.Authenticate(ctx, tok, func(string) *api.User { return u })
	if err == nil {
		t.Fatal("authenticated without a free hashing slot")
	}
}
