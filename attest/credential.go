package attest

import (
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"fmt"

	goattest "github.com/google/go-attestation/attest"
)

// ChallengeNonceSize is the size of the nonce NewChallenge makes.
const ChallengeNonceSize = 32

// Enrollment failures.
var (
	ErrEKPublic     = newVerifyError("ek-public-invalid", "endorsement key invalid")
	ErrAKParameters = newVerifyError("ak-not-attestation-key", "AK is not a restricted signing key created in the TPM")
	ErrActivation   = newVerifyError("activation-failed", "credential activation failed (the AK is not on the TPM of the EK)")
)

// NewChallenge makes the credential-activation challenge for an enrolling
// agent: a secret only the TPM holding both id's EK and AK can recover,
// and a fresh nonce for the first quote. Generate checks the AK's creation
// attestation first, so an AK that is not a TPM-made restricted signing
// key is refused here. Whether the EK itself is trusted (its certificate
// or the approve list) is the caller's decision.
func NewChallenge(id *Identity) (ch *Challenge, secret []byte, err error) {
	if id == nil {
		return nil, nil, verifyFailf(ErrEKPublic, nil, "%s: no identity", ErrEKPublic)
	}
	ek, err := x509.ParsePKIXPublicKey(id.EKPublic)
	if err != nil {
		return nil, nil, verifyFailf(ErrEKPublic, err, "%s: %v", ErrEKPublic, err)
	}
	ap := goattest.ActivationParameters{EK: ek, AK: id.AK}
	// Checked apart from Generate so that a bad AK and a bad EK give
	// different reasons.
	if err := ap.CheckAKParameters(); err != nil {
		return nil, nil, verifyFailf(ErrAKParameters, err, "%s: %v", ErrAKParameters, err)
	}
	secret, cred, err := ap.Generate()
	if err != nil {
		return nil, nil, verifyFailf(ErrEKPublic, err, "%s: making the credential: %v", ErrEKPublic, err)
	}
	nonce := make([]byte, ChallengeNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, fmt.Errorf("challenge nonce: %w", err)
	}
	return &Challenge{Credential: *cred, Nonce: nonce}, secret, nil
}

// CheckActivation compares the secret the agent recovered with the one
// NewChallenge returned, in constant time.
func CheckActivation(secret, answer []byte) error {
	if len(secret) == 0 {
		return verifyFailf(ErrActivation, nil, "%s: no secret to compare with", ErrActivation)
	}
	if subtle.ConstantTimeCompare(secret, answer) != 1 {
		return ErrActivation
	}
	return nil
}
