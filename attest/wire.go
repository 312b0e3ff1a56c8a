// Package attest proves what a node is with its TPM: the agent side opens
// the TPM (a device, a swtpm over TCP or a unix socket), keeps a sealed
// attestation key, measures the agent into a PCR with a TCG event log and
// answers quotes; the verifier side checks EK certificates, credential
// activation, quotes and event logs, and hands policy.Evidence to the
// policy. Enrollment (the registrar) and continuous attestation (the
// verifier) are separate steps, as in Keylime.
package attest

import (
	"crypto/sha256"

	goattest "github.com/google/go-attestation/attest"
)

// Identity is what an agent sends to enroll: its endorsement key and the
// parameters of its attestation key.
type Identity struct {
	EKPublic []byte                         `json:"ek_public"`         // PKIX DER
	EKCert   []byte                         `json:"ek_cert,omitempty"` // DER; empty for TPMs without one
	AK       goattest.AttestationParameters `json:"ak"`
}

// Challenge is the credential the verifier made for the agent's EK and AK;
// only the TPM that holds both can recover the secret.
type Challenge struct {
	Credential goattest.EncryptedCredential `json:"credential"`
	Nonce      []byte                       `json:"nonce"` // fresh, for the first quote
}

// Quote is an agent's answer to a nonce: a quote over the policy PCRs in
// every bank it has, the PCR values, and its whole event log.
type Quote struct {
	Quotes   []goattest.Quote `json:"quotes"`
	PCRs     []PCR            `json:"pcrs"`
	EventLog []byte           `json:"event_log"`
}

// PCR is one PCR value in one bank.
type PCR struct {
	Index  int    `json:"index"`
	Bank   string `json:"bank"` // "sha1" | "sha256"
	Digest []byte `json:"digest"`
}

// BindNonce is the value a quote must carry for a controller nonce and the
// public key (PKIX DER) of the TLS certificate the agent asks for: the
// certificate's key is bound to the attestation, so a quote relayed by a
// man in the middle cannot get the middle-man's key certified.
func BindNonce(nonce, tlsPublicKey []byte) []byte {
	h := sha256.New()
	h.Write([]byte("stockade-attest-v1\x00"))
	h.Write(nonce)
	k := sha256.Sum256(tlsPublicKey)
	h.Write(k[:])
	return h.Sum(nil)
}

// Bodies of the attestation routes (docs/api.md "Attestation (TPM)"),
// shared by the agent that sends them and the controllers that answer.
type (
	// EnrollRequest starts an enrollment: who the node is and the key it
	// wants certified.
	EnrollRequest struct {
		Name     string    `json:"name"`
		Identity *Identity `json:"identity"`
		CSR      []byte    `json:"csr"` // PEM
	}
	EnrollResponse struct {
		Session   string     `json:"session"`
		Challenge *Challenge `json:"challenge"`
	}
	// ActivateRequest proves the AK lives with the EK and sends the first quote.
	ActivateRequest struct {
		Session string `json:"session"`
		Secret  []byte `json:"secret"`
		Quote   *Quote `json:"quote"`
	}
	NonceResponse struct {
		Nonce []byte `json:"nonce"`
	}
	// QuoteRequest is a re-attestation: a quote over a fresh nonce and the
	// key of the renewed certificate.
	QuoteRequest struct {
		Nonce []byte `json:"nonce"`
		Quote *Quote `json:"quote"`
		CSR   []byte `json:"csr"` // PEM
	}
)
