package cli

import (
	"io/fs"
	"slices"
	"strings"
	"testing"
)

func TestLoadClientSettings(t *testing.T) {
	const home = "/home/u"
	const defaultPath = "/home/u/.config/stockade/client.toml"
	cases := []struct {
		name    string
		env     map[string]string
		files   map[string]string
		servers []string
		token   string
		ca      string
		err     string // substring
	}{
		{
			name:    "environment only",
			env:     map[string]string{"STOCKADE_SERVERS": "a:1, b:2", "STOCKADE_TOKEN": "tok\n", "STOCKADE_CA": "/ca.pem", "STOCKADE_CONFIG": "/nonexistent"},
			files:   map[string]string{"/ca.pem": "CA"},
			servers: []string{"a:1", "b:2"}, token: "tok", ca: "CA",
		},
		{
			name: "default file with relative paths",
			files: map[string]string{
				defaultPath:                            "servers = [\"c1:7701\", \"c2:7701\"]\ntoken_file = \"alice.token\"\nca_file = \"ca.pem\"\n",
				"/home/u/.config/stockade/alice.token": "  secret\n",
				"/home/u/.config/stockade/ca.pem":      "CA2",
			},
			servers: []string{"c1:7701", "c2:7701"}, token: "secret", ca: "CA2",
		},
		{
			name:    "environment overrides the file",
			env:     map[string]string{"STOCKADE_SERVERS": "x:9", "STOCKADE_CONFIG": "/etc/c.toml"},
			files:   map[string]string{"/etc/c.toml": "servers = [\"c1:1\"]\ntoken = \"t\"\nca_file = \"/ca\"\n", "/ca": "CA"},
			servers: []string{"x:9"}, token: "t", ca: "CA",
		},
		{
			name: "explicit file missing",
			env:  map[string]string{"STOCKADE_CONFIG": "/nope.toml", "STOCKADE_SERVERS": "a:1"},
			err:  "/nope.toml",
		},
		{
			name: "nothing configured",
			err:  "no controller address: set STOCKADE_SERVERS or servers in the client config " + defaultPath,
		},
		{
			name:  "unknown key",
			files: map[string]string{defaultPath: "servers = [\"a:1\"]\ntokn = \"x\"\n"},
			err:   `unknown key "tokn"`,
		},
		{
			name:  "token and token_file",
			files: map[string]string{defaultPath: "servers = [\"a:1\"]\ntoken = \"x\"\ntoken_file = \"y\"\nca_file = \"/ca\"\n"},
			err:   "token and token_file are exclusive",
		},
		{
			name: "server without port",
			env:  map[string]string{"STOCKADE_SERVERS": "ctl1"},
			err:  `"ctl1" is not host:port`,
		},
		{
			name:  "no token",
			env:   map[string]string{"STOCKADE_SERVERS": "a:1"},
			files: map[string]string{defaultPath: "ca_file = \"/ca\"\n"},
			err:   "no token",
		},
		{
			name: "no CA",
			env:  map[string]string{"STOCKADE_SERVERS": "a:1", "STOCKADE_TOKEN": "t"},
			err:  "no cluster CA",
		},
		{
			name:  "empty token file",
			files: map[string]string{defaultPath: "servers = [\"a:1\"]\ntoken_file = \"/t\"\nca_file = \"/ca\"\n", "/t": "\n", "/ca": "CA"},
			err:   "token_file /t is empty",
		},
		{
			name:  "bad TOML",
			files: map[string]string{defaultPath: "servers = [\n"},
			err:   defaultPath + ":",
		},
		{
			name: "CA file missing",
			env:  map[string]string{"STOCKADE_SERVERS": "a:1", "STOCKADE_TOKEN": "t", "STOCKADE_CA": "/missing"},
			err:  "cluster CA",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string { return tc.env[k] }
			readFile := func(p string) ([]byte, error) {
				if s, ok := tc.files[p]; ok {
					return []byte(s), nil
				}
				return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
			}
			s, err := loadClientSettings(getenv, readFile, home)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want it to contain %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error spans lines: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Servers, tc.servers) || s.Token != tc.token || string(s.CAPEM) != tc.ca {
				t.Errorf("got %+v / %q, want %v %q %q", s.Servers, s.Token, tc.servers, tc.token, tc.ca)
			}
		})
	}
}
