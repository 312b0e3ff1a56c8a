package attest

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	goattest "github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2"
)

// AKFile is the name of the sealed attestation key in the state directory.
// The blob is the AK's private part wrapped by the TPM's storage root key:
// useless without that TPM, but kept 0600 anyway.
const AKFile = "ak.blob"

// Agent is the node's attestation identity: its TPM, its endorsement key
// and an attestation key created once and reloaded on later starts (so the
// enrollment made with it stays valid). An agent starts with:
//
//	log, err := attest.OpenEventLog(filepath.Join(stateDir, attest.EventLogFile))
//	tpm, err := attest.Open("/dev/tpmrm0", log) // resumes or restarts the log
//	err = attest.MeasureAgent(tpm, log, attest.DefaultPCR, exe, canonicalConfig)
//	agent, err := attest.LoadOrCreateAK(tpm, stateDir)
//
// and then answers Identity (enrollment), Activate and Quote.
type Agent struct {
	tpm *TPM
	ak  *goattest.AK
	ek  *goattest.EK // chosen on first use, see endorsementKey
}

// LoadOrCreateAK loads the AK stored in stateDir, or creates one and stores
// it there. A stored AK that does not load (the TPM was cleared, or this
// is another TPM) is an error, not a reason to make a new one: a new AK
// needs a new enrollment, so the operator removes the file on purpose.
func LoadOrCreateAK(t *TPM, stateDir string) (*Agent, error) {
	path := filepath.Join(stateDir, AKFile)
	blob, err := os.ReadFile(path)
	switch {
	case err == nil:
		t.mu.Lock()
		ak, err := t.at.LoadAK(blob)
		t.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("attest: load AK from %s (remove it to enroll anew): %w", path, err)
		}
		return &Agent{tpm: t, ak: ak}, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("attest: read AK: %w", err)
	}

	t.mu.Lock()
	ak, err := t.at.NewAK(nil) // RSA 2048, RSASSA-SHA256, under the SRK
	if err == nil {
		blob, err = ak.Marshal()
		if err != nil {
			ak.Close(t.at)
		}
	}
	t.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("attest: create AK: %w", err)
	}
	if err := agentWriteFile(path, blob); err != nil {
		t.mu.Lock()
		ak.Close(t.at)
		t.mu.Unlock()
		return nil, err
	}
	return &Agent{tpm: t, ak: ak}, nil
}

// Close unloads the AK from the TPM. It does not close the TPM.
func (a *Agent) Close() error {
	a.tpm.mu.Lock()
	defer a.tpm.mu.Unlock()
	return a.ak.Close(a.tpm.at)
}

// TPM returns the agent's TPM.
func (a *Agent) TPM() *TPM { return a.tpm }

// Identity returns what the agent enrolls with: the RSA EK's public key,
// its certificate when the TPM holds one in NV, and the AK's parameters.
func (a *Agent) Identity() (*Identity, error) {
	a.tpm.mu.Lock()
	defer a.tpm.mu.Unlock()
	ek, err := a.endorsementKeyLocked()
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(ek.Public)
	if err != nil {
		return nil, fmt.Errorf("attest: encode EK: %w", err)
	}
	id := &Identity{EKPublic: pub, AK: a.ak.AttestationParameters()}
	if ek.Certificate != nil {
		id.EKCert = ek.Certificate.Raw
	}
	return id, nil
}

// endorsementKeyLocked picks the RSA EK. go-attestation's EKs reads the
// RSA EK certificate from NV 0x01c00002 and pairs it with the persistent
// EK at 0x81010001 (where TPM vendors and swtpm_setup put it); without a
// certificate it derives the EK from the standard template.
func (a *Agent) endorsementKeyLocked() (*goattest.EK, error) {
	if a.ek != nil {
		return a.ek, nil
	}
	eks, err := a.tpm.at.EKs()
	if err != nil {
		return nil, fmt.Errorf("attest: read EK: %w", err)
	}
	for i := range eks {
		if _, ok := eks[i].Public.(*rsa.PublicKey); ok {
			a.ek = &eks[i]
			return a.ek, nil
		}
	}
	return nil, errors.New("attest: TPM has no RSA endorsement key")
}

// Activate recovers the secret of a credential the verifier made for this
// agent's EK and AK (TPM2_ActivateCredential).
func (a *Agent) Activate(ch *Challenge) ([]byte, error) {
	if ch == nil {
		return nil, errors.New("attest: nil challenge")
	}
	a.tpm.mu.Lock()
	defer a.tpm.mu.Unlock()
	ek, err := a.endorsementKeyLocked()
	if err != nil {
		return nil, err
	}
	secret, err := a.ak.ActivateCredentialWithEK(a.tpm.at, ch.Credential, *ek)
	if err != nil {
		return nil, fmt.Errorf("attest: activate credential: %w", err)
	}
	return secret, nil
}

// agentQuoteAttempts bounds retries when a PCR changes between reading it
// and quoting it (IMA extends PCR 10 at any time, for instance).
const agentQuoteAttempts = 5

// Quote quotes pcrs (all 24 if empty) with nonce in the sha256 and the sha1
// bank, whichever the TPM has allocated, and returns the quotes, the values
// of exactly the quoted PCRs in each bank, and the event log. The log and
// the PCRs are taken together, with no extend of ours in between.
func (a *Agent) Quote(nonce []byte, pcrs []int) (*Quote, error) {
	if len(pcrs) == 0 {
		pcrs = make([]int, tpmNumPCRs)
		for i := range pcrs {
			pcrs[i] = i
		}
	}
	a.tpm.mu.Lock()
	defer a.tpm.mu.Unlock()
	akPub, err := goattest.ParseAKPublic(a.ak.AttestationParameters().Public)
	if err != nil {
		return nil, fmt.Errorf("attest: parse AK: %w", err)
	}
	out := &Quote{}
	for _, b := range tpmBanks {
		q, vals, err := a.quoteBankLocked(akPub, b.alg, b.hash, nonce, pcrs)
		if err != nil {
			return nil, fmt.Errorf("attest: quote %s: %w", b.name, err)
		}
		if q == nil {
			continue // bank not allocated
		}
		out.Quotes = append(out.Quotes, *q)
		for _, p := range pcrs {
			out.PCRs = append(out.PCRs, PCR{Index: p, Bank: b.name, Digest: vals[p]})
		}
	}
	if len(out.Quotes) == 0 {
		return nil, errors.New("attest: TPM has neither a sha1 nor a sha256 PCR bank")
	}
	if log := a.tpm.EventLog(); log != nil {
		out.EventLog = log.Bytes()
	}
	return out, nil
}

// quoteBankLocked reads the PCRs and quotes them, until the quote's PCR
// digest matches the values read. It returns nil for an unallocated bank.
func (a *Agent) quoteBankLocked(akPub *goattest.AKPublic, alg tpm2.TPMAlgID, hash crypto.Hash, nonce []byte, pcrs []int) (*goattest.Quote, map[int][]byte, error) {
	var lastErr error
	for range agentQuoteAttempts {
		vals, ok, err := a.tpm.readPCRsLocked(alg, pcrs)
		if err != nil || !ok {
			return nil, nil, err
		}
		q, err := a.ak.QuotePCRs(a.tpm.at, nonce, goattest.HashAlg(alg), pcrs)
		if err != nil {
			return nil, nil, err
		}
		check := make([]goattest.PCR, 0, len(pcrs))
		for _, p := range pcrs {
			check = append(check, goattest.PCR{Index: p, Digest: vals[p], DigestAlg: hash})
		}
		if lastErr = akPub.Verify(*q, check, nonce); lastErr == nil {
			return q, vals, nil
		}
	}
	return nil, nil, fmt.Errorf("PCRs kept changing while quoting: %w", lastErr)
}

// agentWriteFile replaces path with b (mode 0600) atomically and durably:
// temporary file, fsync, rename, fsync of the directory.
func agentWriteFile(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("attest: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if err = tmp.Chmod(0o600); err == nil {
		if _, err = tmp.Write(b); err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("attest: write %s: %w", path, err)
	}
	return elSyncDir(dir)
}
