package attest

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	goattest "github.com/google/go-attestation/attest"
)

// OIDs of the TCG EK Credential Profile.
var (
	ekCertOIDSAN           = asn1.ObjectIdentifier{2, 5, 29, 17}
	ekCertOIDEKU           = asn1.ObjectIdentifier{2, 5, 29, 37}
	ekCertOIDManufacturer  = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	ekCertOIDModel         = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	ekCertOIDVersion       = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
	ekCertOIDEKCertificate = asn1.ObjectIdentifier{2, 23, 133, 8, 1}
)

// EK certificate failures.
var (
	ErrEKCertMalformed   = newVerifyError("ek-cert-malformed", "EK certificate: malformed")
	ErrEKCertSAN         = newVerifyError("ek-cert-san", "EK certificate: no valid TPM subject alternative name")
	ErrEKCertEKU         = newVerifyError("ek-cert-eku", "EK certificate: no TCG EK certificate extended key usage (2.23.133.8.1)")
	ErrEKCertUntrusted   = newVerifyError("ek-cert-untrusted", "EK certificate: not signed by a trusted TPM manufacturer CA")
	ErrEKCertKeyMismatch = newVerifyError("ek-cert-key-mismatch", "EK certificate is for a different key")
)

// ekCertDevice is what the TPM SAN of an EK certificate says about the TPM.
type ekCertDevice struct {
	Manufacturer string // "id:49465800"
	Model        string
	Version      string // "id:0007000D"
}

// VerifyEKCertificate checks that certDER is an EK certificate for ekPublic
// issued by one of roots (through intermediates, which may be nil). The
// TPM subject alternative name and the EK extended key usage are checked
// here because crypto/x509 does not know them; the chain is then verified
// with exactly those two extensions marked as handled.
func VerifyEKCertificate(certDER []byte, ekPublic crypto.PublicKey, roots *x509.CertPool, intermediates *x509.CertPool) error {
	if roots == nil {
		// x509 would fall back to the system web PKI roots.
		return verifyFailf(ErrEKCertUntrusted, nil, "%s: no TPM manufacturer roots configured", ErrEKCertUntrusted)
	}
	// go-attestation strips the NV index header and trailing bytes some
	// vendors leave after the DER.
	cert, err := goattest.ParseEKCertificate(certDER)
	if err != nil {
		return verifyFailf(ErrEKCertMalformed, err, "%s: %v", ErrEKCertMalformed, err)
	}
	if _, err := ekCertTPMDevice(cert); err != nil {
		return verifyFailf(ErrEKCertSAN, err, "%s: %v", ErrEKCertSAN, err)
	}
	if !slices.ContainsFunc(cert.UnknownExtKeyUsage, ekCertOIDEKCertificate.Equal) {
		return ErrEKCertEKU
	}

	certKey, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || ekPublic == nil || !certKey.Equal(ekPublic) {
		return ErrEKCertKeyMismatch
	}

	// Drop, on a copy, only what was checked above: any other unknown
	// critical extension still fails the chain.
	c := *cert
	c.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(cert.UnhandledCriticalExtensions), func(o asn1.ObjectIdentifier) bool {
		return o.Equal(ekCertOIDSAN) || o.Equal(ekCertOIDEKU)
	})
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		// EK certificates carry the TCG EKU, not a web PKI one.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	if _, err := c.Verify(opts); err != nil {
		return verifyFailf(ErrEKCertUntrusted, err, "%s: %v", ErrEKCertUntrusted, err)
	}
	return nil
}

// ekCertTPMDevice parses the subject alternative name of an EK
// certificate: a directoryName holding the TPM manufacturer, model and
// version attributes (TCG EK Credential Profile, 3.2.9).
func ekCertTPMDevice(cert *x509.Certificate) (ekCertDevice, error) {
	var ext *pkix.Extension
	for i := range cert.Extensions {
		if cert.Extensions[i].Id.Equal(ekCertOIDSAN) {
			ext = &cert.Extensions[i]
			break
		}
	}
	if ext == nil {
		return ekCertDevice{}, errors.New("no subject alternative name extension")
	}
	var names []asn1.RawValue
	rest, err := asn1.Unmarshal(ext.Value, &names)
	if err != nil {
		return ekCertDevice{}, fmt.Errorf("subject alternative name: %v", err)
	}
	if len(rest) > 0 {
		return ekCertDevice{}, errors.New("subject alternative name: trailing data")
	}
	lastErr := errors.New("no directoryName")
	for _, n := range names {
		// directoryName [4] EXPLICIT Name
		if n.Class != asn1.ClassContextSpecific || n.Tag != 4 || !n.IsCompound {
			continue
		}
		var rdns pkix.RDNSequence
		rest, err := asn1.Unmarshal(n.Bytes, &rdns)
		if err != nil {
			return ekCertDevice{}, fmt.Errorf("directoryName: %v", err)
		}
		if len(rest) > 0 {
			return ekCertDevice{}, errors.New("directoryName: trailing data")
		}
		d, err := ekCertDeviceFromRDNs(rdns)
		if err == nil {
			return d, nil
		}
		lastErr = err
	}
	return ekCertDevice{}, lastErr
}

// ekCertDeviceFromRDNs reads the three TPM attributes; vendors put them in one
// multi-valued RDN or in separate RDNs, so both are accepted.
func ekCertDeviceFromRDNs(rdns pkix.RDNSequence) (ekCertDevice, error) {
	var d ekCertDevice
	for _, set := range rdns {
		for _, atv := range set {
			var dst *string
			switch {
			case atv.Type.Equal(ekCertOIDManufacturer):
				dst = &d.Manufacturer
			case atv.Type.Equal(ekCertOIDModel):
				dst = &d.Model
			case atv.Type.Equal(ekCertOIDVersion):
				dst = &d.Version
			default:
				continue
			}
			s, ok := atv.Value.(string)
			if !ok {
				return ekCertDevice{}, fmt.Errorf("attribute %v is not a string", atv.Type)
			}
			if *dst != "" {
				return ekCertDevice{}, fmt.Errorf("attribute %v appears twice", atv.Type)
			}
			*dst = s
		}
	}
	switch {
	case d.Manufacturer == "":
		return ekCertDevice{}, errors.New("no TPM manufacturer attribute (2.23.133.2.1)")
	case d.Model == "":
		return ekCertDevice{}, errors.New("no TPM model attribute (2.23.133.2.2)")
	case d.Version == "":
		return ekCertDevice{}, errors.New("no TPM version attribute (2.23.133.2.3)")
	}
	// The manufacturer is the 4-byte TCG vendor ID in hex.
	if id, ok := strings.CutPrefix(d.Manufacturer, "id:"); !ok || len(id) != 8 || !ekCertIsHex(id) {
		return ekCertDevice{}, fmt.Errorf("TPM manufacturer %q is not of the form id:XXXXXXXX", d.Manufacturer)
	}
	return d, nil
}

func ekCertIsHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// EKFingerprint names an EK on the admin approve list: "sha256:" and the
// hex SHA-256 of its PKIX DER. It returns "" for a key that has no PKIX
// encoding (never an RSA or ECC EK), which matches no list entry.
func EKFingerprint(ekPublic crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(ekPublic)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}
