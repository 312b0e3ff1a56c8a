package server

import (
	"crypto/ecdsa"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/pki"
)

func TestJobCredential(t *testing.T) {
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1_700_000_000, 0)
	job := func(mod func(*api.Job)) *api.Job {
		j := &api.Job{ID: 42, User: "alice", UID: 1501, State: api.JobRunning, StartTime: start,
			TimeLimitSec: 3600, Nodes: []string{"node1", "node2"}, Restarts: 1}
		if mod != nil {
			mod(j)
		}
		return j
	}
	sign := func(key *pki.CA, j *api.Job) string {
		c := credentialFor(j)
		tok, err := signCredential(key.Key, &c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := sign(ca, job(nil))
	payload, sig, _ := strings.Cut(strings.TrimPrefix(good, credPrefix), ".")
	forged := func() string {
		b, _ := base64.RawURLEncoding.DecodeString(payload)
		b = []byte(strings.Replace(string(b), `"user":"alice"`, `"user":"bobby"`, 1))
		return credPrefix + base64.RawURLEncoding.EncodeToString(b) + "." + sig
	}()
	pub := ca.Cert.PublicKey

	tests := []struct {
		name     string
		tok      string
		jobID    uint64
		job      *api.Job
		now      time.Time
		parseErr bool
		want     string // check error; "" accepts
	}{
		{name: "valid", tok: good, jobID: 42, job: job(nil), now: start.Add(time.Minute)},
		{name: "other job", tok: good, jobID: 43, job: job(func(j *api.Job) { j.ID = 43 }), now: start, want: "for job 42, not job 43"},
		{name: "expired", tok: good, jobID: 42, job: job(nil), now: start.Add(time.Hour + credGrace), want: "expired"},
		{name: "job ended", tok: good, jobID: 42, job: job(func(j *api.Job) { j.State = api.JobCompleted }), now: start, want: "not running"},
		{name: "job unknown", tok: good, jobID: 42, now: start, want: "not running"},
		{name: "job requeued since", tok: good, jobID: 42, job: job(func(j *api.Job) { j.Restarts = 2 }), now: start, want: "earlier run"},
		{name: "tampered payload", tok: forged, parseErr: true},
		{name: "tampered signature", tok: good[:len(good)-4] + "AAAA", parseErr: true},
		{name: "signed by another CA", tok: sign(other, job(nil)), parseErr: true},
		{name: "a user token", tok: "stk_0123456789abcdef_" + strings.Repeat("x", 43), parseErr: true},
		{name: "no signature", tok: credPrefix + payload, parseErr: true},
		{name: "garbage", tok: credPrefix + "!!.!!", parseErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseCredential(pub.(*ecdsa.PublicKey), tc.tok)
			if tc.parseErr {
				if err == nil {
					t.Fatalf("parsed %+v", c)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			err = c.check(tc.jobID, tc.job, tc.now)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}

	t.Run("contents", func(t *testing.T) {
		c, err := parseCredential(pub.(*ecdsa.PublicKey), good)
		if err != nil {
			t.Fatal(err)
		}
		if c.JobID != 42 || c.User != "alice" || c.UID != 1501 || c.Attempt != 1 || strings.Join(c.Nodes, ",") != "node1,node2" ||
			c.Expires != start.Add(time.Hour+credGrace).Unix() {
			t.Errorf("credential %+v", c)
		}
		if !isCredential(good) || isCredential("stk_abc") {
			t.Errorf("isCredential misclassifies")
		}
	})

	t.Run("expiry without a time limit", func(t *testing.T) {
		c := credentialFor(job(func(j *api.Job) { j.TimeLimitSec = 0 }))
		if got := time.Unix(c.Expires, 0).Sub(start); got != credNoLimit {
			t.Errorf("valid for %s, want %s", got, credNoLimit)
		}
	})

	t.Run("no key", func(t *testing.T) {
		c := credentialFor(job(nil))
		if _, err := signCredential(nil, &c); err == nil {
			t.Errorf("signed without a key")
		}
	})
}
