package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stockade-hpc/stockade/api"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestErrorClasses(t *testing.T) {
	he := func(code int) error { return fmt.Errorf("wrapped: %w", &api.HTTPError{Status: code, Message: "x"}) }
	tests := []struct {
		name                string
		err                 error
		forgotten, rejected bool
	}{
		{"network", errors.New("connection refused"), false, false},
		{"unknown node", he(http.StatusNotFound), true, true},
		{"job moved", he(http.StatusConflict), false, true},
		{"gone", he(http.StatusGone), true, true},
		{"bad report", he(http.StatusBadRequest), false, true},
		{"forbidden is retried", he(http.StatusForbidden), false, false},
		{"unavailable", he(http.StatusServiceUnavailable), false, false},
		{"server error", he(http.StatusInternalServerError), false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := forgotten(tc.err); got != tc.forgotten {
				t.Errorf("forgotten = %v", got)
			}
			if got := rejected(tc.err); got != tc.rejected {
				t.Errorf("rejected = %v", got)
			}
		})
	}
}

func TestRetryDelay(t *testing.T) {
	tests := []struct {
		fails int
		want  time.Duration
	}{
		{0, 0}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{5, 16 * time.Second}, {6, 30 * time.Second}, {100, 30 * time.Second},
	}
	for _, tc := range tests {
		if got := retryDelay(tc.fails); got != tc.want {
			t.Errorf("retryDelay(%d) = %s, want %s", tc.fails, got, tc.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{"ok", Options{Name: "node1", Servers: []string{"h:1"}, StateDir: "rel"}, false},
		{"no name", Options{Servers: []string{"h:1"}}, true},
		{"bad name", Options{Name: "node 1", Servers: []string{"h:1"}}, true},
		{"no servers", Options{Name: "node1"}, true},
		{"negative cpus", Options{Name: "node1", Servers: []string{"h:1"}, CPUs: -1}, true},
		{"missing netns", Options{Name: "node1", Servers: []string{"h:1"}, NetNS: "/nonexistent/ns"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			err := o.normalize()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v", err)
			}
			if err == nil && (o.Heartbeat != DefaultHeartbeat || o.KillGrace != DefaultKillGrace || o.Logger == nil || o.StateDir[0] != '/') {
				t.Errorf("defaults not filled: %+v", o)
			}
		})
	}
}

func TestSplitList(t *testing.T) {
	got := splitList(" a, b,,c ,")
	if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Errorf("splitList = %q", got)
	}
	if splitList("") != nil {
		t.Errorf("empty list not nil")
	}
}
