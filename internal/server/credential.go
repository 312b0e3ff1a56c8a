package server

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// A job credential lets the processes of a running batch job start steps
// of that job (srun) without the user's token, which jobs do not have. The
// controllers sign it with the cluster CA key, which every controller
// holds, so any of them can issue or check it:
//
//	stkjob.<base64url(JSON payload)>.<base64url(ECDSA-SHA256 signature)>
//
// The signature covers credDomain and the encoded payload, so it can never
// pass for a certificate signature of the same key.
const (
	credPrefix = "stkjob."
	credDomain = "stockade job credential v1\n"
	// credGrace keeps a credential valid a while past its job's time
	// limit: a job ends somewhat after its limit (kill grace, reports).
	credGrace = time.Hour
	// credNoLimit is the validity of a credential of a job without a
	// time limit. The job's state is checked on every use anyway.
	credNoLimit = 366 * 24 * time.Hour
)

// jobCredential is what a job credential asserts.
type jobCredential struct {
	JobID   uint64   `json:"job_id"`
	Attempt int      `json:"attempt"`
	User    string   `json:"user"`
	UID     uint32   `json:"uid"`
	Nodes   []string `json:"nodes"`
	Expires int64    `json:"exp"` // Unix seconds
}

var errBadCredential = errors.New("invalid job credential")

// isCredential tells a job credential from a user token.
func isCredential(tok string) bool { return strings.HasPrefix(tok, credPrefix) }

// credentialFor is the credential of a running job's current attempt.
func credentialFor(j *api.Job) jobCredential {
	exp := j.StartTime.Add(credNoLimit)
	if lim := timeLimitDuration(j.TimeLimitSec); lim > 0 {
		exp = j.StartTime.Add(lim + credGrace)
	}
	return jobCredential{JobID: j.ID, Attempt: j.Restarts, User: j.User, UID: j.UID,
		Nodes: slices.Clone(j.Nodes), Expires: exp.Unix()}
}

// timeLimitDuration is a time limit in seconds, 0 for none or one too
// large for a time.Duration.
func timeLimitDuration(sec int64) time.Duration {
	if sec <= 0 || sec > int64(credNoLimit/time.Second) {
		return 0
	}
	return time.Duration(sec) * time.Second
}

func credDigest(payload string) []byte {
	h := sha256.Sum256([]byte(credDomain + credPrefix + payload))
	return h[:]
}

// signCredential encodes and signs c.
func signCredential(key *ecdsa.PrivateKey, c *jobCredential) (string, error) {
	if key == nil {
		return "", errors.New("job credential: the CA key is not available on this controller")
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(b)
	sig, err := ecdsa.SignASN1(rand.Reader, key, credDigest(payload))
	if err != nil {
		return "", err
	}
	return credPrefix + payload + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// parseCredential checks a credential's signature with the CA's public
// key and decodes it. It does not check what the credential asserts.
func parseCredential(pub *ecdsa.PublicKey, tok string) (*jobCredential, error) {
	rest, ok := strings.CutPrefix(tok, credPrefix)
	if !ok || pub == nil {
		return nil, errBadCredential
	}
	payload, sigText, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, errBadCredential
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigText)
	if err != nil || !ecdsa.VerifyASN1(pub, credDigest(payload), sig) {
		return nil, errBadCredential
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil, errBadCredential
	}
	var c jobCredential
	if err := json.Unmarshal(b, &c); err != nil || c.JobID == 0 || c.User == "" {
		return nil, errBadCredential
	}
	return &c, nil
}

// check accepts c for a request about job jobID, whose record is j, at
// now: the credential names that job, has not expired, and the job runs
// the attempt it was issued for, for the same user.
func (c *jobCredential) check(jobID uint64, j *api.Job, now time.Time) error {
	switch {
	case c.JobID != jobID:
		return fmt.Errorf("the job credential is for job %d, not job %d", c.JobID, jobID)
	case !now.Before(time.Unix(c.Expires, 0)):
		return fmt.Errorf("the job credential of job %d has expired", c.JobID)
	case j == nil || j.State != api.JobRunning:
		return fmt.Errorf("job %d is not running", jobID)
	case j.Restarts != c.Attempt || j.User != c.User || j.UID != c.UID:
		return fmt.Errorf("the job credential is for an earlier run of job %d", jobID)
	}
	return nil
}

// caPublicKey is the key job credentials are checked with.
func (s *Server) caPublicKey() *ecdsa.PublicKey {
	pub, _ := s.ca.Cert.PublicKey.(*ecdsa.PublicKey)
	return pub
}
