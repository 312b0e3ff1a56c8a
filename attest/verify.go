package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"

	goattest "github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/stockade-hpc/stockade/policy"
)

// VerifyError is a kind of verification verifyFailure. Errors returned by this
// package's verifier wrap one, so errors.Is(err, ErrNonce) works and
// FailureCode(err) gives a stable, machine-readable reason.
type VerifyError struct {
	Code string
	text string
}

func (e *VerifyError) Error() string { return e.text }

func newVerifyError(code, text string) *VerifyError {
	return &VerifyError{Code: code, text: text}
}

// Quote verification failures.
var (
	ErrAKPublic          = newVerifyError("ak-public-invalid", "attestation key public area invalid")
	ErrQuoteMalformed    = newVerifyError("quote-malformed", "quote malformed")
	ErrBankMissing       = newVerifyError("bank-missing", "no quote over the requested PCR bank")
	ErrSignature         = newVerifyError("quote-signature", "quote signature invalid")
	ErrNonce             = newVerifyError("nonce-mismatch", "nonce mismatch (replayed or stale quote)")
	ErrPCRNotQuoted      = newVerifyError("pcr-not-quoted", "policy PCR not in the quote")
	ErrPCRValues         = newVerifyError("pcr-values-mismatch", "PCR values do not match the quoted digest")
	ErrEventLogMalformed = newVerifyError("event-log-malformed", "event log malformed")
	ErrEventLog          = newVerifyError("event-log-replay", "event log does not replay to the quoted PCRs")
	ErrNotExplained      = newVerifyError("pcr-not-explained", "PCR value not explained by the event log")
)

// FailureCode returns the Code of the VerifyError err wraps, or "" if it
// wraps none.
func FailureCode(err error) string {
	var v *VerifyError
	if errors.As(err, &v) {
		return v.Code
	}
	return ""
}

// verifyFailure is one verifyFailure: a message with the details, its kind and what
// caused it.
type verifyFailure struct {
	kind  *VerifyError
	msg   string
	cause error
}

func (f *verifyFailure) Error() string { return f.msg }

func (f *verifyFailure) Unwrap() []error {
	if f.cause == nil {
		return []error{f.kind}
	}
	return []error{f.kind, f.cause}
}

func verifyFailf(kind *VerifyError, cause error, format string, args ...any) error {
	return &verifyFailure{kind: kind, msg: fmt.Sprintf(format, args...), cause: cause}
}

// DefaultMaxEventLogSize bounds the event logs VerifyQuote reads when
// Verifier.MaxEventLogSize is zero. Firmware logs are tens of kilobytes.
const DefaultMaxEventLogSize = 4 << 20

// verifyEvNoAction events carry information, not measurements: they are never
// extended into a PCR.
const verifyEvNoAction = 0x03

// verifyPCRCount is the number of PCRs of a PC Client TPM.
const verifyPCRCount = 24

type verifyBank struct {
	hash crypto.Hash
	alg  goattest.HashAlg
	tpm  tpm2.Algorithm
}

var verifyBanks = map[string]verifyBank{
	"sha1":   {crypto.SHA1, goattest.HashSHA1, tpm2.AlgSHA1},
	"sha256": {crypto.SHA256, goattest.HashSHA256, tpm2.AlgSHA256},
	"sha384": {crypto.SHA384, goattest.HashSHA384, tpm2.AlgSHA384},
	"sha512": {crypto.SHA512, goattest.HashSHA512, tpm2.AlgSHA512},
}

// Verifier checks quotes and event logs. It keeps no state between calls;
// the zero value is ready to use and safe for concurrent use.
type Verifier struct {
	// MaxEventLogSize is the largest event log accepted, in bytes; zero
	// means DefaultMaxEventLogSize.
	MaxEventLogSize int
}

// VerifyQuote checks q against the AK it was enrolled with (akPublic is
// the TPMT_PUBLIC from Identity.AK.Public) and returns what it proves in
// bank: the quote of that bank must be signed by the AK, carry
// expectedNonce (callers pass BindNonce(controllerNonce, tlsKey)), cover
// every PCR of pcrs and match the submitted PCR values; the event log must
// replay to the quoted values, and each PCR of pcrs must be explained by
// it. Other quoted PCRs are reported in Evidence.Explained but do not fail.
// Measurements hold only events of explained PCRs: the others are
// unverified claims.
func (v *Verifier) VerifyQuote(akPublic []byte, q *Quote, expectedNonce []byte, pcrs []int, bankName string) (*policy.Evidence, error) {
	b, ok := verifyBanks[bankName]
	if !ok {
		return nil, verifyFailf(ErrBankMissing, nil, "unsupported PCR bank %q", bankName)
	}
	if q == nil {
		return nil, verifyFailf(ErrQuoteMalformed, nil, "%s: no quote", ErrQuoteMalformed)
	}
	if len(expectedNonce) == 0 {
		// Without a nonce any old quote would pass.
		return nil, verifyFailf(ErrNonce, nil, "%s: no expected nonce given", ErrNonce)
	}
	policyPCRs := slices.Clone(pcrs)
	slices.Sort(policyPCRs)
	policyPCRs = slices.Compact(policyPCRs)
	for _, i := range policyPCRs {
		if i < 0 || i >= verifyPCRCount {
			return nil, verifyFailf(ErrPCRNotQuoted, nil, "PCR %d does not exist", i)
		}
	}

	ak, err := goattest.ParseAKPublic(akPublic)
	if err != nil {
		return nil, verifyFailf(ErrAKPublic, err, "%s: %v", ErrAKPublic, err)
	}

	quote, att, err := verifyQuoteForBank(q.Quotes, b, bankName)
	if err != nil {
		return nil, err
	}

	values, err := verifyBankValues(q.PCRs, b, bankName)
	if err != nil {
		return nil, err
	}
	if err := ak.Verify(*quote, values, expectedNonce); err != nil {
		return nil, verifyDiagnose(ak, quote, att, expectedNonce, err)
	}
	// go-attestation does not look at the magic; a restricted AK signs
	// nothing that starts with it unless the TPM made it.
	if att.Magic != verifyTPMGenerated {
		return nil, verifyFailf(ErrQuoteMalformed, nil, "%s: not generated by a TPM (magic %#x)", ErrQuoteMalformed, att.Magic)
	}

	quoted := make(map[int][]byte, len(values))
	for _, p := range values {
		quoted[p.Index] = bytes.Clone(p.Digest)
	}
	for _, i := range policyPCRs {
		if _, ok := quoted[i]; !ok {
			return nil, verifyFailf(ErrPCRNotQuoted, nil, "PCR %d is not in the %s quote", i, bankName)
		}
	}

	el, err := v.parseEventLog(q.EventLog)
	if err != nil {
		return nil, err
	}
	var events []goattest.Event
	if el != nil {
		events = el.Events(b.alg)
	}
	explained := verifyReplayBank(events, quoted, b.hash)
	for _, i := range policyPCRs {
		if !explained[i] {
			return nil, verifyUnexplained(el, b, quoted, policyPCRs, i)
		}
	}

	ev := &policy.Evidence{
		Bank:      bankName,
		PCRs:      quoted,
		Explained: explained,
	}
	for _, e := range events {
		if e.Type == verifyEvNoAction || !explained[e.Index] {
			continue
		}
		ev.Measurements = append(ev.Measurements, policy.Measurement{
			PCR:    e.Index,
			Type:   uint32(e.Type),
			Digest: e.Digest,
			Data:   e.Data,
		})
	}
	return ev, nil
}

// verifyTPMGenerated is TPM_GENERATED_VALUE, the first field of every
// structure a TPM signs.
const verifyTPMGenerated = 0xff544347

// verifyQuoteForBank returns the first quote whose PCR selection is in bank b.
func verifyQuoteForBank(quotes []goattest.Quote, b verifyBank, name string) (*goattest.Quote, *tpm2.AttestationData, error) {
	for i := range quotes {
		att, err := tpm2.DecodeAttestationData(quotes[i].Quote)
		if err != nil {
			return nil, nil, verifyFailf(ErrQuoteMalformed, err, "%s: quote %d: %v", ErrQuoteMalformed, i, err)
		}
		if att.Type != tpm2.TagAttestQuote || att.AttestedQuoteInfo == nil {
			return nil, nil, verifyFailf(ErrQuoteMalformed, nil, "%s: quote %d is not a TPM quote (type %#x)", ErrQuoteMalformed, i, att.Type)
		}
		if att.AttestedQuoteInfo.PCRSelection.Hash == b.tpm {
			return &quotes[i], att, nil
		}
	}
	return nil, nil, verifyFailf(ErrBankMissing, nil, "no quote over the %s PCR bank", name)
}

// verifyBankValues picks the submitted PCR values of bank b.
func verifyBankValues(pcrs []PCR, b verifyBank, name string) ([]goattest.PCR, error) {
	var out []goattest.PCR
	seen := make(map[int]bool)
	for _, p := range pcrs {
		if p.Bank != name {
			continue
		}
		switch {
		case p.Index < 0 || p.Index >= verifyPCRCount:
			return nil, verifyFailf(ErrPCRValues, nil, "%s: PCR %d does not exist", ErrPCRValues, p.Index)
		case seen[p.Index]:
			return nil, verifyFailf(ErrPCRValues, nil, "%s: PCR %d submitted twice", ErrPCRValues, p.Index)
		case len(p.Digest) != b.hash.Size():
			return nil, verifyFailf(ErrPCRValues, nil, "%s: PCR %d is %d bytes, not a %s value", ErrPCRValues, p.Index, len(p.Digest), name)
		}
		seen[p.Index] = true
		out = append(out, goattest.PCR{Index: p.Index, Digest: p.Digest, DigestAlg: b.hash})
	}
	return out, nil
}

// verifyDiagnose names why go-attestation rejected a quote. It runs only on
// verifyFailure, so a good quote's signature is checked once.
func verifyDiagnose(ak *goattest.AKPublic, quote *goattest.Quote, att *tpm2.AttestationData, nonce []byte, verr error) error {
	if err := verifyAKSignature(ak, quote.Quote, quote.Signature); err != nil {
		return verifyFailf(ErrSignature, err, "%s: %v", ErrSignature, err)
	}
	if subtle.ConstantTimeCompare(att.ExtraData, nonce) != 1 {
		return ErrNonce
	}
	return verifyFailf(ErrPCRValues, verr, "%s: %v", ErrPCRValues, verr)
}

// verifyAKSignature verifies a TPMT_SIGNATURE over msg with an AK, as
// go-attestation does for quotes.
func verifyAKSignature(ak *goattest.AKPublic, msg, sig []byte) error {
	s, err := tpm2.DecodeSignature(bytes.NewBuffer(sig))
	if err != nil {
		return fmt.Errorf("decoding signature: %v", err)
	}
	h := ak.Hash.New()
	h.Write(msg)
	digest := h.Sum(nil)
	switch pub := ak.Public.(type) {
	case *rsa.PublicKey:
		if s.RSA == nil {
			return errors.New("not an RSA signature")
		}
		return rsa.VerifyPKCS1v15(pub, ak.Hash, digest, s.RSA.Signature)
	case *ecdsa.PublicKey:
		if s.ECC == nil {
			return errors.New("not an ECDSA signature")
		}
		if !ecdsa.Verify(pub, digest, s.ECC.R, s.ECC.S) {
			return errors.New("ECDSA verification failed")
		}
		return nil
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
}

// parseEventLog parses the log; an empty log is nil, with no events.
func (v *Verifier) parseEventLog(log []byte) (*goattest.EventLog, error) {
	limit := v.MaxEventLogSize
	if limit <= 0 {
		limit = DefaultMaxEventLogSize
	}
	if len(log) > limit {
		return nil, verifyFailf(ErrEventLogMalformed, nil, "%s: %d bytes, more than the %d allowed", ErrEventLogMalformed, len(log), limit)
	}
	if len(log) == 0 {
		return nil, nil
	}
	el, err := goattest.ParseEventLog(log)
	if err != nil {
		return nil, verifyFailf(ErrEventLogMalformed, err, "%s: %v", ErrEventLogMalformed, err)
	}
	return el, nil
}

// verifyUnexplained says why policy PCR i is not explained. go-attestation
// replays the log only here: its Verify passes whenever verifyReplayBank
// explains every policy PCR (same extend rules; it also skips PCRs without
// events), so on success it would only repeat the work. On failure it
// tells a log whose events do not replay from a PCR the log is silent on.
func verifyUnexplained(el *goattest.EventLog, b verifyBank, quoted map[int][]byte, policyPCRs []int, i int) error {
	if el != nil {
		pcrs := make([]goattest.PCR, 0, len(policyPCRs))
		for _, p := range policyPCRs {
			pcrs = append(pcrs, goattest.PCR{Index: p, Digest: quoted[p], DigestAlg: b.hash})
		}
		if _, err := el.Verify(pcrs); err != nil {
			return verifyFailf(ErrEventLog, err, "%s: %v", ErrEventLog, err)
		}
	}
	return verifyFailf(ErrNotExplained, nil, "PCR %d value not explained by the event log", i)
}

// verifyReplayBank extends each quoted PCR's events in log order, as the TPM
// did, and reports which PCRs end at their quoted value. go-attestation's
// Verify passes PCRs that have no events whatever their value; here such
// a PCR is explained only if it still holds its reset value.
func verifyReplayBank(events []goattest.Event, quoted map[int][]byte, h crypto.Hash) map[int]bool {
	type state struct {
		value    []byte
		locality byte
		broken   bool
	}
	st := make(map[int]*state, len(quoted))
	for i := range quoted {
		st[i] = &state{}
	}
	hasher := h.New()
	for _, e := range events {
		s, ok := st[e.Index]
		if !ok || s.broken {
			continue
		}
		if e.Type == verifyEvNoAction {
			// TXT platforms start PCR 0 at the locality TPM2_Startup
			// came from; the log says which (PC Client spec 9.4.5.3).
			if e.Index == 0 && len(e.Data) == 17 && strings.HasPrefix(string(e.Data), "StartupLocality") {
				s.locality = e.Data[16]
			}
			continue
		}
		if len(e.Digest) != h.Size() {
			// An event with no digest in this bank cannot be replayed.
			s.broken = true
			continue
		}
		if s.value == nil {
			s.value = verifyResetValue(h.Size(), s.locality)
		}
		hasher.Reset()
		hasher.Write(s.value)
		hasher.Write(e.Digest)
		s.value = hasher.Sum(s.value[:0])
	}
	explained := make(map[int]bool, len(quoted))
	for i, want := range quoted {
		s := st[i]
		got := s.value
		if got == nil {
			got = verifyResetValue(h.Size(), s.locality)
		}
		explained[i] = !s.broken && bytes.Equal(got, want)
	}
	return explained
}

func verifyResetValue(size int, locality byte) []byte {
	v := make([]byte, size)
	v[size-1] = locality
	return v
}
