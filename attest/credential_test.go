package attest_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"testing"

	goattest "github.com/google/go-attestation/attest"

	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/attest/attesttest"
)

func TestNewChallenge(t *testing.T) {
	cases := []struct {
		name string
		// mutate changes the identity the agent enrolls with.
		mutate func(t *testing.T, id *attest.Identity)
		// wantErr is NewChallenge's error; nil means the challenge is
		// made and the TPM must activate it to the same secret.
		wantErr *attest.VerifyError
		// notActivated means the challenge is made but the TPM must not
		// recover its secret.
		notActivated bool
	}{
		{name: "good"},
		{
			name: "credential made for another EK",
			mutate: func(t *testing.T, id *attest.Identity) {
				k, err := rsa.GenerateKey(rand.Reader, 2048)
				if err != nil {
					t.Fatal(err)
				}
				id.EKPublic, err = x509.MarshalPKIXPublicKey(&k.PublicKey)
				if err != nil {
					t.Fatal(err)
				}
			},
			notActivated: true,
		},
		{
			name:    "EK not PKIX",
			mutate:  func(t *testing.T, id *attest.Identity) { id.EKPublic = []byte("not a key") },
			wantErr: attest.ErrEKPublic,
		},
		{
			name: "AK attributes changed (no longer restricted)",
			mutate: func(t *testing.T, id *attest.Identity) {
				// TPMT_PUBLIC: type u16, nameAlg u16, objectAttributes u32;
				// restricted is bit 16.
				id.AK.Public = bytes.Clone(id.AK.Public)
				id.AK.Public[5] &^= 0x01
			},
			wantErr: attest.ErrAKParameters,
		},
		{
			name: "AK creation attestation not signed by the AK",
			mutate: func(t *testing.T, id *attest.Identity) {
				id.AK.CreateSignature = bytes.Clone(id.AK.CreateSignature)
				id.AK.CreateSignature[len(id.AK.CreateSignature)-1] ^= 1
			},
			wantErr: attest.ErrAKParameters,
		},
		{
			name:    "no AK",
			mutate:  func(t *testing.T, id *attest.Identity) { id.AK = goattest.AttestationParameters{} },
			wantErr: attest.ErrAKParameters,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newVerifierFixture(t, goattest.RSA)
			id := *f.id
			if tc.mutate != nil {
				tc.mutate(t, &id)
			}
			ch, secret, err := attest.NewChallenge(&id)
			if tc.wantErr != nil {
				verifierWantErr(t, err, tc.wantErr, "")
				return
			}
			if err != nil {
				t.Fatalf("NewChallenge: %v", err)
			}
			if len(ch.Nonce) != attest.ChallengeNonceSize || len(secret) == 0 {
				t.Fatalf("nonce %x, secret %x", ch.Nonce, secret)
			}
			got, err := f.ak.ActivateCredential(f.sim.TPM, ch.Credential)
			if tc.notActivated {
				// The TPM refuses, or recovers something else; either way
				// the check must fail.
				if err == nil {
					err = attest.CheckActivation(secret, got)
					verifierWantErr(t, err, attest.ErrActivation, "")
				}
				t.Logf("not activated: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("ActivateCredential: %v", err)
			}
			if err := attest.CheckActivation(secret, got); err != nil {
				t.Fatalf("CheckActivation: %v", err)
			}
		})
	}
}

func TestNewChallengeNoncesDiffer(t *testing.T) {
	f := newVerifierFixture(t, goattest.RSA)
	a, sa, err := attest.NewChallenge(f.id)
	if err != nil {
		t.Fatal(err)
	}
	b, sb, err := attest.NewChallenge(f.id)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Nonce, b.Nonce) || bytes.Equal(sa, sb) {
		t.Fatal("two challenges share a nonce or a secret")
	}
}

func TestCheckActivation(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	cases := []struct {
		name           string
		secret, answer []byte
		ok             bool
	}{
		{"equal", secret, bytes.Clone(secret), true},
		{"wrong secret", secret, bytes.Repeat([]byte{8}, 32), false},
		{"truncated", secret, secret[:31], false},
		{"empty answer", secret, nil, false},
		{"no secret", nil, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := attest.CheckActivation(tc.secret, tc.answer)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			verifierWantErr(t, err, attest.ErrActivation, "")
		})
	}
}

// The simulator helper's log must read back as go-attestation parses it.
func TestVerifierEventLogParses(t *testing.T) {
	ev := []attesttest.VerifierEvent{{PCR: 15, Type: 0xD, SHA1: make([]byte, 20), SHA256: make([]byte, 32), Data: []byte("x")}}
	el, err := goattest.ParseEventLog(attesttest.VerifierEventLog(ev))
	if err != nil {
		t.Fatal(err)
	}
	got := el.Events(goattest.HashSHA256)
	if len(got) != 1 || got[0].Index != 15 || string(got[0].Data) != "x" {
		t.Fatalf("events = %+v", got)
	}
}
