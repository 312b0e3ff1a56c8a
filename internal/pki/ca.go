// Package pki is Stockade's cluster certificate authority: it creates the
// CA, issues controller and agent certificates, builds TLS configurations
// and keeps the hashes of join tokens.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"
)

// Organizational units name a certificate's role.
const (
	OUController = "controller"
	OUAgent      = "agent"
)

const caLifetime = 10 * 365 * 24 * time.Hour

// CA is the cluster CA. Key is nil where only the certificate is known.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     *ecdsa.PrivateKey
}

// NewKey makes an ECDSA P-256 key.
func NewKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// NewCA creates a self-signed CA valid for 10 years.
func NewCA(clusterName string) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "Stockade CA " + clusterName, Organization: []string{"Stockade"}},
		NotBefore:             now.Add(-5 * time.Minute), // tolerate clock skew between members
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: EncodeCertPEM(der), Key: key}, nil
}

// ParseCA reads a CA from PEM; keyPEM may be nil.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("CA certificate: not a CA")
	}
	ca := &CA{Cert: cert, CertPEM: EncodeCertPEM(cert.Raw)}
	if keyPEM != nil {
		key, err := ParseKeyPEM(keyPEM)
		if err != nil {
			return nil, fmt.Errorf("CA key: %w", err)
		}
		if !key.PublicKey.Equal(cert.PublicKey) {
			return nil, errors.New("CA key does not match the CA certificate")
		}
		ca.Key = key
	}
	return ca, nil
}

// LoadCA reads ca.pem and, if keyFile is not empty, the CA key.
func LoadCA(certFile, keyFile string) (*CA, error) {
	c, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	var k []byte
	if keyFile != "" {
		if k, err = os.ReadFile(keyFile); err != nil {
			return nil, err
		}
	}
	return ParseCA(c, k)
}

// KeyPEM encodes the CA key (PKCS#8).
func (ca *CA) KeyPEM() ([]byte, error) {
	if ca.Key == nil {
		return nil, errors.New("CA key not available on this member")
	}
	return EncodeKeyPEM(ca.Key)
}

// Pool is a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`) })

// ValidName checks a controller id or node name used as a certificate CN.
func ValidName(name string) error {
	if !nameRE().MatchString(name) {
		return fmt.Errorf("invalid name %q: want 1-63 of [A-Za-z0-9._-], starting with a letter or digit", name)
	}
	return nil
}

// IssueController signs a controller certificate (server and client auth)
// for pub: CN = id, OU = controller, SANs = hosts + 127.0.0.1 + localhost.
func (ca *CA) IssueController(id string, hosts []string, pub crypto.PublicKey) ([]byte, error) {
	if err := ValidName(id); err != nil {
		return nil, err
	}
	all := append(slices.Clone(hosts), "127.0.0.1", "::1", "localhost")
	return ca.issue(pub, pkix.Name{CommonName: id, OrganizationalUnit: []string{OUController}, Organization: []string{"Stockade"}},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, all)
}

// IssueAgent signs an agent certificate (client auth): CN = node name,
// OU = agent.
func (ca *CA) IssueAgent(node string, pub crypto.PublicKey) ([]byte, error) {
	if err := ValidName(node); err != nil {
		return nil, err
	}
	return ca.issue(pub, pkix.Name{CommonName: node, OrganizationalUnit: []string{OUAgent}, Organization: []string{"Stockade"}},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil)
}

// SignCSR checks a CSR's self-signature and issues a certificate for its
// key. The subject is ours, not the requester's: role and name come from
// the verified join token and request. For controllers the CSR's SANs are
// kept, plus hosts.
func (ca *CA) SignCSR(csrPEM []byte, role, name string, hosts []string) ([]byte, error) {
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	switch role {
	case OUController:
		all := slices.Clone(hosts)
		all = append(all, csr.DNSNames...)
		for _, ip := range csr.IPAddresses {
			all = append(all, ip.String())
		}
		return ca.IssueController(name, all, csr.PublicKey)
	case OUAgent:
		return ca.IssueAgent(name, csr.PublicKey)
	}
	return nil, fmt.Errorf("csr: unknown role %q", role)
}

// ParseCSR decodes a PEM certificate request and checks its
// self-signature and that its key is ECDSA P-256, the only kind issued.
func ParseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	blk, _ := pem.Decode(csrPEM)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("csr: not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr: bad signature: %w", err)
	}
	if k, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return nil, errors.New("csr: key must be ECDSA P-256")
	}
	return csr, nil
}

// IssueAgentFor signs an agent certificate like IssueAgent that expires
// after ttl (at the latest with the CA): attested nodes get short-lived
// certificates, renewed by each successful attestation. It returns the
// certificate and its PEM.
func (ca *CA) IssueAgentFor(node string, pub crypto.PublicKey, ttl time.Duration) (*x509.Certificate, []byte, error) {
	if err := ValidName(node); err != nil {
		return nil, nil, err
	}
	if ttl <= 0 {
		return nil, nil, errors.New("certificate lifetime must be positive")
	}
	notAfter := time.Now().Add(ttl)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	p, err := ca.issueUntil(pub, pkix.Name{CommonName: node, OrganizationalUnit: []string{OUAgent}, Organization: []string{"Stockade"}},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, notAfter)
	if err != nil {
		return nil, nil, err
	}
	cert, err := ParseCertPEM(p)
	if err != nil {
		return nil, nil, err
	}
	return cert, p, nil
}

func (ca *CA) issue(pub crypto.PublicKey, subject pkix.Name, eku []x509.ExtKeyUsage, hosts []string) ([]byte, error) {
	// Without attestation there is no renewal: live as long as the CA.
	return ca.issueUntil(pub, subject, eku, hosts, ca.Cert.NotAfter)
}

func (ca *CA) issueUntil(pub crypto.PublicKey, subject pkix.Name, eku []x509.ExtKeyUsage, hosts []string, notAfter time.Time) ([]byte, error) {
	if ca.Key == nil {
		return nil, errors.New("cannot issue certificates: CA key not available on this member")
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               subject,
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, err
	}
	return EncodeCertPEM(der), nil
}

// NewCSR makes a PEM certificate request for key with CN = name and the
// given hosts as SANs.
func NewCSR(key *ecdsa.PrivateKey, name string, hosts []string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// EncodeCertPEM wraps a DER certificate in PEM.
func EncodeCertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// EncodeKeyPEM encodes an ECDSA key as PKCS#8 PEM.
func EncodeKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCertPEM parses the first certificate in PEM data.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// ParseKeyPEM parses an ECDSA key (PKCS#8 or SEC 1).
func ParseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(data)
	if blk == nil {
		return nil, errors.New("not a PEM key")
	}
	switch blk.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, err
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, errors.New("key is not ECDSA")
		}
		return ek, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(blk.Bytes)
	}
	return nil, fmt.Errorf("unexpected PEM block %q", blk.Type)
}

// Role is the certificate's role (its OU): controller, agent or "".
func Role(cert *x509.Certificate) string {
	for _, ou := range cert.Subject.OrganizationalUnit {
		if ou == OUController || ou == OUAgent {
			return ou
		}
	}
	return ""
}

// WriteFile writes data atomically (temp file, fsync, rename) with perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
