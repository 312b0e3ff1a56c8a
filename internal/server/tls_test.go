package server

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stockade-hpc/stockade/api"
)

// TestAPISessionResumption: the API listener resumes TLS 1.3 sessions
// (a client that keeps its tickets skips the certificate exchange on its
// next connection), for users with tokens and agents with certificates
// alike, and a resumed agent session still carries the agent's identity
// and is still refused once its certificate is revoked.
func TestAPISessionResumption(t *testing.T) {
	c := bootstrap(t)
	alice := c.addUser("alice", 1501)
	ag := c.agent("node1")
	register(t, ag, "node1")

	// call sends one request on a new connection and reports whether the
	// session was resumed.
	call := func(cl *api.Client, method, path, body string, want int) bool {
		t.Helper()
		cl.HTTP.CloseIdleConnections()
		req, err := http.NewRequest(method, "https://"+cl.Servers[0]+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if cl.Token != "" {
			req.Header.Set("Authorization", "Bearer "+cl.Token)
		}
		resp, err := cl.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %s %s, want %d", method, path, resp.Status, b, want)
		}
		if resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
			t.Fatalf("%s %s: not TLS 1.3", method, path)
		}
		return resp.TLS.DidResume
	}
	withCache := func(cl *api.Client) *api.Client {
		tr := cl.HTTP.Transport.(*http.Transport)
		tr.TLSClientConfig = tr.TLSClientConfig.Clone()
		tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		return cl
	}

	user := withCache(c.client(alice))
	if call(user, "GET", "/v1/status", "", 200) {
		t.Fatal("the first connection resumed a session")
	}
	if !call(user, "GET", "/v1/status", "", 200) {
		t.Fatal("a user's second connection did not resume its session")
	}

	ag = withCache(ag)
	hb := `{"name":"node1"}`
	if call(ag, "POST", "/v1/agent/heartbeat", hb, 200) {
		t.Fatal("the agent's first connection resumed a session")
	}
	// The agent routes need the client certificate: a resumed session
	// that lost it would get 403.
	if !call(ag, "POST", "/v1/agent/heartbeat", hb, 200) {
		t.Fatal("an agent's second connection did not resume its session")
	}
	serial := ag.HTTP.Transport.(*http.Transport).TLSClientConfig.Certificates[0].Leaf.SerialNumber.Text(16)
	if err := c.client(c.admin).Do(context.Background(), "POST", "/v1/nodes/revoke",
		revokeRequest{Node: "node1", Reason: "test", Serial: serial}, nil); err != nil {
		t.Fatal(err)
	}
	if !call(ag, "POST", "/v1/agent/heartbeat", hb, 401) {
		t.Fatal("the revoked agent's connection did not resume (the refusal is not tested)")
	}
}
