package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// A join token is "stkjoin.<sha256 of the CA certificate, hex>.<secret>".
// The CA hash lets a new member pin the cluster CA before it trusts anything
// the network tells it (as kubeadm's discovery hash does); the secret proves
// the member may join. Controllers keep only an Argon2id hash of the secret.
const joinTokenPrefix = "stkjoin"

// JoinToken is a parsed join token.
type JoinToken struct {
	CAHash [32]byte
	Secret string
}

// NewJoinToken makes a token for the CA certificate caDER with a fresh
// 256-bit secret.
func NewJoinToken(caDER []byte) (JoinToken, string) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // the kernel's CSPRNG does not fail
	}
	t := JoinToken{CAHash: sha256.Sum256(caDER), Secret: base64.RawURLEncoding.EncodeToString(b[:])}
	return t, t.String()
}

func (t JoinToken) String() string {
	return joinTokenPrefix + "." + hex.EncodeToString(t.CAHash[:]) + "." + t.Secret
}

// ParseJoinToken checks a token's shape.
func ParseJoinToken(s string) (JoinToken, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 3 || parts[0] != joinTokenPrefix {
		return JoinToken{}, errors.New("join token: want stkjoin.<ca-hash>.<secret>")
	}
	h, err := hex.DecodeString(parts[1])
	if err != nil || len(h) != 32 {
		return JoinToken{}, errors.New("join token: CA hash is not 64 hex digits")
	}
	if len(parts[2]) < 32 {
		return JoinToken{}, errors.New("join token: secret too short")
	}
	var t JoinToken
	copy(t.CAHash[:], h)
	t.Secret = parts[2]
	return t, nil
}

// VerifyCAPin parses a PEM CA certificate and checks it against the pin.
func (t JoinToken) VerifyCAPin(caPEM []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(caPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("cluster CA: not a PEM certificate")
	}
	if sha256.Sum256(blk.Bytes) != t.CAHash {
		return nil, errors.New("cluster CA does not match the join token's CA hash: refusing to trust it")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// PinnedTLSConfig trusts exactly the pinned CA. It is used for the one
// request that fetches the CA itself: the server certificate is checked
// against the pin by hand instead of a root pool.
func (t JoinToken) PinnedTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			chain := cs.PeerCertificates
			if len(chain) == 0 {
				return errors.New("server sent no certificate")
			}
			for _, c := range chain {
				if sha256.Sum256(c.Raw) == t.CAHash {
					roots := x509.NewCertPool()
					roots.AddCert(c)
					inter := x509.NewCertPool()
					for _, ic := range chain[1:] {
						inter.AddCert(ic)
					}
					_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
					if err != nil {
						return fmt.Errorf("server certificate not signed by the pinned CA: %w", err)
					}
					return nil
				}
			}
			return errors.New("server did not present the pinned cluster CA in its chain")
		},
	}
}
