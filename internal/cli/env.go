package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// env is everything a command touches outside its arguments, so tests can
// run commands against a fake controller with fixed clocks and files.
type env struct {
	stdout, stderr io.Writer
	stdin          io.Reader
	getenv         func(string) string
	environ        func() []string
	getwd          func() (string, error)
	readFile       func(string) ([]byte, error)
	now            func() time.Time
	loc            *time.Location
	// client connects to the controllers (LoadClient outside tests).
	client func() (*api.Client, error)
	// username is the local user, for --me and the like.
	username func() (string, error)
	// groupName resolves a gid for %g and Group; "" when unknown.
	groupName func(gid uint32) string
	// sleep waits between squeue --iterate rounds.
	sleep func(context.Context, time.Duration) error
	// newID makes submit ids.
	newID func() string
}

func osEnv() *env {
	return &env{
		stdout:   os.Stdout,
		stderr:   os.Stderr,
		stdin:    os.Stdin,
		getenv:   os.Getenv,
		environ:  os.Environ,
		getwd:    os.Getwd,
		readFile: os.ReadFile,
		now:      time.Now,
		loc:      time.Local,
		client:   LoadClient,
		username: func() (string, error) {
			u, err := user.Current()
			if err != nil {
				return "", err
			}
			return u.Username, nil
		},
		groupName: func(gid uint32) string {
			g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10))
			if err != nil {
				return ""
			}
			return g.Name
		},
		sleep: func(ctx context.Context, d time.Duration) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
				return nil
			}
		},
		newID: randomID,
	}
}

// randomID is a 128-bit hex id. A submit id makes the client's automatic
// retry after a leader failure return the job created the first time
// instead of queueing a duplicate.
func randomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // the kernel's CSPRNG does not fail
	}
	return hex.EncodeToString(b[:])
}

// envMap turns environ() into a map (later entries win, as getenv does).
func (e *env) envMap() map[string]string {
	m := map[string]string{}
	for _, kv := range e.environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// defaultTimeout bounds how long a command waits for a controller. The
// client retries through elections until its context ends, so without a
// bound a command would hang while the cluster is down.
const defaultTimeout = 60 * time.Second

// requestContext is the context of one command's API calls:
// $STOCKADE_TIMEOUT (a Go duration) or defaultTimeout.
func (e *env) requestContext(parent context.Context) (context.Context, context.CancelFunc, error) {
	d := defaultTimeout
	if s := e.getenv("STOCKADE_TIMEOUT"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil || v <= 0 {
			return nil, nil, fmt.Errorf("STOCKADE_TIMEOUT=%q: want a positive duration such as 30s", s)
		}
		d = v
	}
	ctx, cancel := context.WithTimeout(parent, d)
	return ctx, cancel, nil
}

// errReported means the command already printed its errors; only the exit
// code is left to set.
var errReported = errors.New("error already reported")

// apiMessage renders an API error for a one-line message: the server's
// text for HTTP errors, a hint for unreachable controllers.
func apiMessage(err error) string {
	var he *api.HTTPError
	if errors.As(err, &he) {
		return oneLine(he.Message)
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.HasPrefix(err.Error(), "no controller answered") {
		return "Unable to contact the Stockade controllers: " + oneLine(err.Error())
	}
	return oneLine(err.Error())
}

// oneLine folds a message onto one line: every error is a single line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
