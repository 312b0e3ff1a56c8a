package attest_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/attest/attesttest"
)

func verifierRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVerifyEKCertificate(t *testing.T) {
	t.Parallel() // no simulator
	root := attesttest.NewVerifierCA(t, "TPM vendor root")
	inter := root.Intermediate(t, "TPM vendor EK CA")
	stranger := attesttest.NewVerifierCA(t, "someone else")
	ek := verifierRSAKey(t)
	other := verifierRSAKey(t)
	ecEK, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	san := func(m, model, v string, multi bool) []byte {
		return attesttest.VerifierTPMSAN(t, m, model, v, multi)
	}

	cases := []struct {
		name          string
		cert          func() []byte
		ekPublic      crypto.PublicKey
		noRoots       bool
		intermediates *x509.CertPool
		wantErr       *attest.VerifyError
		wantMsg       string
	}{
		{
			name: "good, issued by the root",
			cert: func() []byte { return root.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{}) },
		},
		{
			name:          "good, through an intermediate",
			cert:          func() []byte { return inter.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{}) },
			intermediates: inter.Pool(),
		},
		{
			name:     "good, ECC EK",
			cert:     func() []byte { return root.IssueEKCert(t, &ecEK.PublicKey, attesttest.VerifierEKCertOptions{}) },
			ekPublic: &ecEK.PublicKey,
		},
		{
			name: "good, TPM attributes in one multi-valued RDN",
			cert: func() []byte {
				return root.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{SAN: san("id:4E544300", "NPCT75x", "id:00070002", true)})
			},
		},
		{
			name: "good, in the NV index wrapper with trailing bytes",
			cert: func() []byte {
				der := root.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{})
				b := append([]byte{0x10, 0x01, 0x00}, binary.BigEndian.AppendUint16(nil, uint16(len(der)))...)
				return append(append(b, der...), 0xff, 0xff)
			},
		},
		{
			name:    "unknown CA",
			cert:    func() []byte { return stranger.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{}) },
			wantErr: attest.ErrEKCertUntrusted,
			wantMsg: "EK certificate: not signed by a trusted TPM manufacturer CA: x509:",
		},
		{
			name:    "intermediate missing",
			cert:    func() []byte { return inter.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{}) },
			wantErr: attest.ErrEKCertUntrusted,
		},
		{
			name:    "no roots configured",
			cert:    func() []byte { return root.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{}) },
			noRoots: true,
			wantErr: attest.ErrEKCertUntrusted,
		},
		{
			name:     "certificate for a different key",
			cert:     func() []byte { return root.IssueEKCert(t, &other.PublicKey, attesttest.VerifierEKCertOptions{}) },
			wantErr:  attest.ErrEKCertKeyMismatch,
			wantMsg:  "EK certificate is for a different key",
			ekPublic: &ek.PublicKey,
		},
		{
			name: "expired",
			cert: func() []byte {
				return root.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{NotAfter: time.Now().Add(-time.Hour)})
			},
			wantErr: attest.ErrEKCertUntrusted,
		},
		{
			name: "unknown critical extension is not ignored",
			cert: func() []byte {
				return root.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{ExtraCritical: true})
			},
			wantErr: attest.ErrEKCertUntrusted,
			wantMsg: "unhandled critical extension",
		},
		{
			name: "no TPM subject alternative name",
			cert: func() []byte {
				return root.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{NoSAN: true})
			},
			wantErr: attest.ErrEKCertSAN,
		},
		{
			name: "SAN without the TPM model",
			cert: func() []byte {
				return root.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{SAN: san("id:49465800", "", "id:0007000D", false)})
			},
			wantErr: attest.ErrEKCertSAN,
			wantMsg: "no TPM model attribute",
		},
		{
			name: "SAN with a malformed manufacturer",
			cert: func() []byte {
				return root.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{SAN: san("Infineon", "SLB9670", "id:0007000D", false)})
			},
			wantErr: attest.ErrEKCertSAN,
		},
		{
			name: "no EK extended key usage",
			cert: func() []byte {
				return root.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{NoEKU: true})
			},
			wantErr: attest.ErrEKCertEKU,
		},
		{
			name:    "not a certificate",
			cert:    func() []byte { return []byte("garbage") },
			wantErr: attest.ErrEKCertMalformed,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ekPub := tc.ekPublic
			if ekPub == nil {
				ekPub = &ek.PublicKey
			}
			roots := root.Pool()
			if tc.noRoots {
				roots = nil
			}
			err := attest.VerifyEKCertificate(tc.cert(), ekPub, roots, tc.intermediates)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("VerifyEKCertificate: %v", err)
				}
				return
			}
			verifierWantErr(t, err, tc.wantErr, tc.wantMsg)
		})
	}
}

// The test certificates must fail plain x509 verification the way real EK
// certificates do, or the cases above prove nothing.
func TestVerifierEKCertLooksReal(t *testing.T) {
	t.Parallel()
	root := attesttest.NewVerifierCA(t, "TPM vendor root")
	ek := verifierRSAKey(t)
	cert, err := x509.ParseCertificate(root.IssueEKCert(t, &ek.PublicKey, attesttest.VerifierEKCertOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: root.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err == nil || !strings.Contains(err.Error(), "unhandled critical extension") {
		t.Fatalf("plain Verify: %v, want an unhandled critical extension error", err)
	}
	if !slices.ContainsFunc(cert.UnhandledCriticalExtensions, func(o asn1.ObjectIdentifier) bool { return o.String() == "2.5.29.17" }) {
		t.Fatalf("unhandled critical extensions = %v, want the SAN", cert.UnhandledCriticalExtensions)
	}
}

func TestEKFingerprint(t *testing.T) {
	t.Parallel()
	ek := verifierRSAKey(t)
	der, err := x509.MarshalPKIXPublicKey(&ek.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	cases := []struct {
		name string
		key  crypto.PublicKey
		want string
	}{
		{"RSA EK", &ek.PublicKey, "sha256:" + hex.EncodeToString(sum[:])},
		{"not a public key", struct{}{}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := attest.EKFingerprint(tc.key); got != tc.want {
				t.Fatalf("EKFingerprint = %q, want %q", got, tc.want)
			}
		})
	}
}
