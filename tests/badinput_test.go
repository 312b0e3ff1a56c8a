package tests

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/testcluster"
)

// TestBadInputChangesNothing: each malformed submission gets a one-line
// error that names the option or line, exit code 1, and nothing is queued.
func TestBadInputChangesNothing(t *testing.T) {
	c := testcluster.StartCluster(t, 1, "node1")
	tok := c.AddUser("alice", aliceUID)
	dir := c.UserDir("alice", aliceUID)
	big := writeScript(t, dir, "big.sh", "#!/bin/sh\n"+strings.Repeat("# padding padding padding\n", 10<<20/26))
	garbage := writeScript(t, dir, "garbage.sh", "#!/bin/sh\n\x00\x01\x02\xff\xfe binary")
	noShebang := writeScript(t, dir, "noshebang.sh", "echo hi\n")
	badDirective := writeScript(t, dir, "bad.sh", "#!/bin/sh\n#SBATCH --job-name=x\n#SBATCH --time=abc\necho hi\n")
	cases := []struct {
		name string
		args []string
		want string // substring of the error line
	}{
		{"bad directive", []string{badDirective}, "line 3"},
		{"bad time option", []string{"--time=banana", "--wrap", "true"}, "--time"},
		{"unknown partition", []string{"-p", "nosuch", "--wrap", "true"}, "nosuch"},
		{"memory too big", []string{"--mem=900G", "--wrap", "true"}, "--mem"},
		{"reversed array", []string{"--array=5-1", "--wrap", "true"}, "5-1"},
		{"missing dependency", []string{"--dependency=afterok:999999", "--wrap", "true"}, "999999"},
		{"no shebang", []string{noShebang}, "#!"},
		{"10 MB script", []string{big}, "script"},
		{"binary garbage", []string{garbage}, "binary"},
		{"unknown option", []string{"--no-such-option", "--wrap", "true"}, "no-such-option"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := c.CLIIn(dir, tok, nil, append([]string{"sbatch"}, tc.args...)...)
			if code != 1 {
				t.Errorf("exit %d, want 1 (stdout %q)", code, out)
			}
			lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q: want one line containing %q", errOut, tc.want)
			}
		})
	}
	// Malformed API JSON.
	cl := c.Client(tok)
	for _, body := range []string{`{"job": {"name": 5}}`, `{"job": {}, "bogus": 1}`, `not json`, `{"job": {"cpus_per_task": -1, "script": "#!/bin/sh\n"}}`} {
		err := rawPost(cl, "/v1/jobs", body)
		var he *api.HTTPError
		if err == nil || !asHTTP(err, &he) || he.Status != 400 || strings.Contains(he.Message, "\n") {
			t.Errorf("POST %s: %v, want a one-line 400", body, err)
		}
	}
	var resp api.JobsResponse
	if err := c.Client("").Do(t.Context(), "GET", "/v1/jobs?all=true", nil, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Jobs) != 0 {
		t.Errorf("%d jobs queued by bad input", len(resp.Jobs))
	}
	_ = os.Remove(big)
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

func rawPost(cl *api.Client, path, body string) error {
	if !bytes.HasPrefix([]byte(strings.TrimSpace(body)), []byte("{")) {
		// Not JSON at all: send it as a JSON string so the server sees a
		// body of the wrong shape.
		return cl.Do(context.Background(), "POST", path, body, nil)
	}
	return cl.Do(context.Background(), "POST", path, rawJSON(body), nil)
}

func asHTTP(err error, target **api.HTTPError) bool {
	he, ok := err.(*api.HTTPError)
	if ok {
		*target = he
	}
	return ok
}
