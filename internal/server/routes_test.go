package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

// TestLeaderHeader: every answer of every controller names the leader's
// API address, once, forwarded or not, errors included, and follows a
// change of leader.
func TestLeaderHeader(t *testing.T) {
	c := bootstrap(t)
	c.join("c2")
	c.join("c3")
	alice := c.addUser("alice", 1501)
	leader := c.ctls[0].APIAddr()
	get := func(server, method, path, token, body string) []string {
		t.Helper()
		req, err := http.NewRequest(method, "https://"+server+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.client(token, server).HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Values(hdrLeader)
	}
	submit := `{"job":{"name":"h","script":"#!/bin/sh\n","current_working_directory":"/tmp","hold":true}}`
	for _, x := range c.ctls {
		for _, rq := range []struct{ method, path, token, body string }{
			{"GET", "/v1/status", alice, ""},             // linearizable: forwarded by followers
			{"GET", "/v1/status?stale=true", alice, ""},  // served by each
			{"POST", "/v1/jobs", alice, submit},          // a write
			{"GET", "/v1/cluster/ca", "", ""},            // anyone
			{"GET", "/v1/jobs", "", ""},                  // 401
			{"GET", "/v1/nope", alice, ""},               // 404
			{"POST", "/v1/jobs", alice, `{"job":{}}`},    // 400 from the leader
			{"POST", "/v1/users", alice, `{"name":"x"}`}, // 403 from the leader
		} {
			if got := get(x.APIAddr(), rq.method, rq.path, rq.token, rq.body); len(got) != 1 || got[0] != leader {
				t.Errorf("%s %s via %s: %s %q, want %q", rq.method, rq.path, x.ID(), hdrLeader, got, leader)
			}
		}
	}

	// A new leader: the survivors name it at once (the cache is keyed
	// by the leader's id).
	c.ctls[0].Close()
	survivors := c.client(alice, c.ctls[1].APIAddr(), c.ctls[2].APIAddr())
	var st api.Status
	waitFor(t, 15*time.Second, "a new leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := survivors.Do(ctx, "GET", "/v1/status", nil, &st)
		return err == nil && st.Leader != "" && st.Leader != "c1"
	})
	var want string
	for _, m := range st.Controllers {
		if m.ID == st.Leader {
			want = m.APIAddr
		}
	}
	for _, x := range c.ctls[1:] {
		waitFor(t, 5*time.Second, x.ID()+" naming the new leader", func() bool {
			got := get(x.APIAddr(), "GET", "/v1/status?stale=true", alice, "")
			return len(got) == 1 && got[0] == want
		})
	}
}
