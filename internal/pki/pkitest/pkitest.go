// Package pkitest makes TLS identities signed by a test CA.
package pkitest

import (
	"testing"

	"github.com/stockade-hpc/stockade/internal/pki"
)

// ControllerIdentity is a controller's identity (fresh key, certificate
// for id and hosts) signed by ca, as a fake controller serves with.
func ControllerIdentity(t testing.TB, ca *pki.CA, id string, hosts []string) *pki.Identity {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.IssueController(id, hosts, &key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	ident, err := pki.NewIdentity(certPEM, keyPEM, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return ident
}
