package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommandFlags(t *testing.T) {
	cmd := NewCommand()
	tests := []struct{ flag, def string }{
		{"state-dir", DefaultStateDir},
		{"heartbeat", "2s"},
		{"kill-grace", "10s"},
		{"log-level", "info"},
		{"cpus", "0"},
		{"gpus", "0"},
		{"memory", ""},
		{"features", ""},
		{"netns", ""},
		{"join-token", ""},
		{"join-token-file", ""},
		{"pids-limit", "0"},
		{"cluster-name", ""},
		{"tpm", ""},
		{"ca-cert", ""},
		{"attest-pcr", "15"},
	}
	for _, tc := range tests {
		f := cmd.Flags().Lookup(tc.flag)
		if f == nil {
			t.Errorf("--%s missing", tc.flag)
			continue
		}
		if f.DefValue != tc.def {
			t.Errorf("--%s default %q, want %q", tc.flag, f.DefValue, tc.def)
		}
	}
	for _, name := range []string{"name", "servers"} {
		if cmd.Flags().Lookup(name) == nil {
			t.Errorf("--%s missing", name)
		}
	}
}

// TestCommandRejectsBadFlags covers errors found before any network or
// state dir access.
func TestCommandRejectsBadFlags(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("stkjoin.x.y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	base := []string{"--name", "node1", "--servers", "127.0.0.1:1", "--state-dir", state}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad memory", []string{"--memory", "lots"}, "--memory"},
		{"bad log level", []string{"--log-level", "chatty"}, "--log-level"},
		{"two tokens", []string{"--join-token", "a", "--join-token-file", tokenFile}, "not both"},
		{"missing token file", []string{"--join-token-file", filepath.Join(t.TempDir(), "none")}, "--join-token-file"},
		{"bad name", []string{"--name", "node/1"}, "--name"},
		{"malformed token", []string{"--join-token-file", tokenFile}, "join token"},
		{"CA without TPM", []string{"--ca-cert", tokenFile}, "--ca-cert"},
		{"bad PCR", []string{"--tpm", "/dev/null", "--attest-pcr", "24"}, "--attest-pcr"},
		{"no TPM there", []string{"--tpm", filepath.Join(t.TempDir(), "tpm0"), "--ca-cert", tokenFile}, "--tpm"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := NewCommand()
			cmd.SetArgs(append(append([]string(nil), base...), tc.args...))
			cmd.SetOut(t.Output())
			cmd.SetErr(t.Output())
			err := cmd.ExecuteContext(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
