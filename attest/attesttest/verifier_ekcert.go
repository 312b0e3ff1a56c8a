package attesttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"
)

// VerifierCA is a TPM manufacturer CA for tests.
type VerifierCA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewVerifierCA makes a self-signed root CA.
func NewVerifierCA(tb testing.TB, name string) *VerifierCA {
	tb.Helper()
	return verifierIssueCA(tb, name, nil)
}

// Intermediate makes a CA signed by ca.
func (ca *VerifierCA) Intermediate(tb testing.TB, name string) *VerifierCA {
	tb.Helper()
	return verifierIssueCA(tb, name, ca)
}

// Pool returns a pool holding only ca's certificate.
func (ca *VerifierCA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func verifierIssueCA(tb testing.TB, name string, parent *VerifierCA) *VerifierCA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          verifierSerial(tb),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Stockade test TPM vendor"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	issuer, signer := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, signer = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &VerifierCA{Cert: cert, Key: key}
}

func verifierSerial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// VerifierEKCertOptions shapes an EK certificate, to make bad ones.
type VerifierEKCertOptions struct {
	// SAN is the subject alternative name extension's value; nil means
	// VerifierTPMSAN("id:49465800", "SLB9670", "id:0007000D", false), and
	// NoSAN leaves it out.
	SAN   []byte
	NoSAN bool
	// NoEKU leaves out the tcg-kp-EKCertificate extended key usage.
	NoEKU bool
	// ExtraCritical adds a critical extension nobody understands.
	ExtraCritical bool
	// NotAfter defaults to a day from now.
	NotAfter time.Time
}

// TCG EK Credential Profile OIDs.
var (
	verifierOIDSAN          = asn1.ObjectIdentifier{2, 5, 29, 17}
	verifierOIDManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	verifierOIDModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	verifierOIDVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
	verifierOIDEKCert       = asn1.ObjectIdentifier{2, 23, 133, 8, 1}
)

// IssueEKCert issues an EK certificate for ekPublic shaped like vendors'
// ones: empty subject, critical SAN with the TPM attributes, the TCG EK
// extended key usage. It returns the DER.
func (ca *VerifierCA) IssueEKCert(tb testing.TB, ekPublic crypto.PublicKey, o VerifierEKCertOptions) []byte {
	tb.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: verifierSerial(tb),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageKeyEncipherment,
	}
	if !o.NotAfter.IsZero() {
		tmpl.NotAfter = o.NotAfter
		tmpl.NotBefore = o.NotAfter.Add(-48 * time.Hour)
	}
	if !o.NoEKU {
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{verifierOIDEKCert}
	}
	if !o.NoSAN {
		san := o.SAN
		if san == nil {
			san = VerifierTPMSAN(tb, "id:49465800", "SLB9670", "id:0007000D", false)
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: verifierOIDSAN, Critical: true, Value: san})
	}
	if o.ExtraCritical {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{
			Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{0x05, 0x00},
		})
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, ekPublic, ca.Key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// VerifierTPMSAN encodes a subject alternative name holding one
// directoryName with the TPM manufacturer, model and version attributes
// (empty ones left out), in one multi-valued RDN or in three RDNs.
func VerifierTPMSAN(tb testing.TB, manufacturer, model, version string, multiValued bool) []byte {
	tb.Helper()
	var atvs []pkix.AttributeTypeAndValue
	for _, a := range []struct {
		oid asn1.ObjectIdentifier
		v   string
	}{{verifierOIDManufacturer, manufacturer}, {verifierOIDModel, model}, {verifierOIDVersion, version}} {
		if a.v != "" {
			atvs = append(atvs, pkix.AttributeTypeAndValue{Type: a.oid, Value: a.v})
		}
	}
	var name pkix.RDNSequence
	if multiValued {
		name = pkix.RDNSequence{atvs}
	} else {
		for _, atv := range atvs {
			name = append(name, pkix.RelativeDistinguishedNameSET{atv})
		}
	}
	nameDER, err := asn1.Marshal(name)
	if err != nil {
		tb.Fatal(err)
	}
	// GeneralNames ::= SEQUENCE OF GeneralName; directoryName [4] EXPLICIT Name
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: nameDER}})
	if err != nil {
		tb.Fatal(err)
	}
	return san
}
