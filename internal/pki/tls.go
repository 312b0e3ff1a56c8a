package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Identity is a member's certificate and key plus the cluster CA.
type Identity struct {
	// Cert's chain is the leaf followed by the CA certificate: joiners pin
	// the CA by hash and must see it in the handshake.
	Cert tls.Certificate
	Leaf *x509.Certificate
	CA   *x509.Certificate
	pool *x509.CertPool
}

// NewIdentity builds an identity from PEM data and checks that the
// certificate was issued by the CA for the key.
func NewIdentity(certPEM, keyPEM, caPEM []byte) (*Identity, error) {
	ca, err := ParseCA(caPEM, nil)
	if err != nil {
		return nil, err
	}
	leaf, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("key does not match the certificate")
	}
	pool := ca.Pool()
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("certificate not issued by the cluster CA: %w", err)
	}
	return &Identity{
		Cert: tls.Certificate{Certificate: [][]byte{leaf.Raw, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf},
		Leaf: leaf,
		CA:   ca.Cert,
		pool: pool,
	}, nil
}

// LoadIdentity reads the three PEM files.
func LoadIdentity(certFile, keyFile, caFile string) (*Identity, error) {
	var data [3][]byte
	for i, f := range []string{certFile, keyFile, caFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		data[i] = b
	}
	return NewIdentity(data[0], data[1], data[2])
}

// Name is the certificate's CN (controller id or node name).
func (id *Identity) Name() string { return id.Leaf.Subject.CommonName }

// Pool holds only the cluster CA.
func (id *Identity) Pool() *x509.CertPool { return id.pool }

// ServerTLS serves with the identity's certificate (chain includes the CA)
// and verifies client certificates against the CA as clientAuth says:
// tls.VerifyClientCertIfGiven for the API (users come with tokens, agents
// with certificates), tls.RequireAndVerifyClientCert for Raft.
func (id *Identity) ServerTLS(clientAuth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		ClientAuth:   clientAuth,
		ClientCAs:    id.pool,
	}
}

// ClientTLS presents the identity's certificate and trusts only the CA,
// with normal host name checks.
func (id *Identity) ClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.Cert},
		RootCAs:      id.pool,
	}
}

// PeerServerTLS is for member-to-member listeners (Raft): the client must
// present a certificate from the CA with the given role.
func (id *Identity) PeerServerTLS(role string) *tls.Config {
	c := id.ServerTLS(tls.RequireAndVerifyClientCert)
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 || Role(cs.PeerCertificates[0]) != role {
			return fmt.Errorf("peer is not a %s", role)
		}
		return nil
	}
	return c
}

// PeerClientTLS is for member-to-member connections (Raft, forwarding):
// the server is authenticated by the CA and its role, not by host name, so
// members may address each other by any IP or name.
func (id *Identity) PeerClientTLS(role string) *tls.Config {
	c := RoleClientTLS(id.pool, role)
	c.Certificates = []tls.Certificate{id.Cert}
	return c
}

// RoleClientTLS trusts servers by roots and their role, not their host
// name, and presents no certificate.
func RoleClientTLS(roots *x509.CertPool, role string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		RootCAs:            roots, // unused by the handshake; documents the trust
		InsecureSkipVerify: true,  // replaced by VerifyConnection: CA + role
		VerifyConnection:   VerifyPeer(roots, role),
	}
}

// ClientTLSConfig trusts only the cluster CA in caPEM; for users' CLIs,
// which authenticate with tokens instead of certificates.
func ClientTLSConfig(caPEM []byte) (*tls.Config, error) {
	ca, err := ParseCA(caPEM, nil)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca.Pool()}, nil
}

// PeerRole returns the role and name of a verified client certificate on a
// TLS connection, or "" when none was given. The server's ClientCAs has
// already verified the chain.
func PeerRole(cs *tls.ConnectionState) (role, name string) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return "", ""
	}
	leaf := cs.PeerCertificates[0]
	return Role(leaf), leaf.Subject.CommonName
}

// VerifyPeer checks a server's chain against the cluster CA and its role
// (the OU), not its host name: members and agents may address controllers
// by any IP or name. Use it as tls.Config.VerifyConnection together with
// InsecureSkipVerify, which it replaces.
func VerifyPeer(roots *x509.CertPool, role string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("peer sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		if Role(leaf) != role {
			return fmt.Errorf("peer %q is not a %s", leaf.Subject.CommonName, role)
		}
		return nil
	}
}
