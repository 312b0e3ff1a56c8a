package pki

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestIssueAgentFor(t *testing.T) {
	ca := newCA(t)
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		node    string
		ttl     time.Duration
		wantTTL time.Duration // from now; 0 with wantErr
		wantErr bool
	}{
		{name: "an hour", node: "node1", ttl: time.Hour, wantTTL: time.Hour},
		{name: "capped by the CA", node: "node1", ttl: 20 * 365 * 24 * time.Hour, wantTTL: time.Until(ca.Cert.NotAfter)},
		{name: "zero lifetime", node: "node1", ttl: 0, wantErr: true},
		{name: "bad name", node: "a/b", ttl: time.Hour, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert, p, err := ca.IssueAgentFor(tc.node, &key.PublicKey, tc.ttl)
			if tc.wantErr {
				if err == nil {
					t.Fatal("issued")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := ParseCertPEM(p)
			if err != nil || !parsed.Equal(cert) {
				t.Fatalf("PEM does not hold the certificate: %v", err)
			}
			if d := time.Until(cert.NotAfter) - tc.wantTTL; d > time.Minute || d < -time.Minute {
				t.Errorf("expires %s, want in %s", cert.NotAfter, tc.wantTTL)
			}
			if Role(cert) != OUAgent || cert.Subject.CommonName != tc.node || !key.PublicKey.Equal(cert.PublicKey) {
				t.Errorf("certificate %v for %T", cert.Subject, cert.PublicKey)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Error(err)
			}
		})
	}
}
