// Package auth makes and checks secrets: user bearer tokens
// (stk_<tokenid>_<secret>) and the Argon2id hashes kept in place of any
// secret, with a cache so that a verified token costs one HMAC afterwards.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are Argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
	SaltLen uint32
	KeyLen  uint32
}

// DefaultParams cost about 50-100 ms and 64 MiB per hash: slow enough that
// a stolen state store does not give the tokens away.
var DefaultParams = Params{Memory: 64 * 1024, Time: 3, Threads: 2, SaltLen: 16, KeyLen: 32}

var b64 = base64.RawStdEncoding

// Hash returns the PHC string of secret with DefaultParams:
// $argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>.
func Hash(secret string) (string, error) { return HashWith(DefaultParams, secret) }

// HashWith is Hash with explicit parameters (tests use cheap ones).
func HashWith(p Params, secret string) (string, error) {
	if p.SaltLen < 8 || p.KeyLen < 16 || p.Time < 1 || p.Memory < 8*uint32(p.Threads) || p.Threads < 1 {
		return "", errors.New("argon2id: parameters too weak")
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(secret), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// maxMemoryKiB bounds what a stored hash may ask for, so a corrupt or
// hostile record cannot make Verify allocate without limit.
const maxMemoryKiB = 1 << 20

// Verify reports whether secret matches the PHC string phc. The comparison
// is constant-time; a malformed phc is an error.
func Verify(phc, secret string) (bool, error) {
	p, salt, want, err := parsePHC(phc)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(secret), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

func parsePHC(phc string) (Params, []byte, []byte, error) {
	var p Params
	parts := strings.Split(phc, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errors.New("argon2id: not a PHC argon2id string")
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, fmt.Errorf("argon2id: unsupported version %q", parts[2])
	}
	var threads uint32
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &threads); err != nil {
		return p, nil, nil, fmt.Errorf("argon2id: bad parameters %q", parts[3])
	}
	if threads < 1 || threads > 255 || p.Time < 1 || p.Memory < 8*threads || p.Memory > maxMemoryKiB || p.Time > 64 {
		return p, nil, nil, fmt.Errorf("argon2id: parameters out of range %q", parts[3])
	}
	p.Threads = uint8(threads)
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return p, nil, nil, errors.New("argon2id: bad salt")
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 128 {
		return p, nil, nil, errors.New("argon2id: bad hash")
	}
	return p, salt, key, nil
}
