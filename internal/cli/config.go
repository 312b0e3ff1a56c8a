package cli

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/pki"
)

// The client configuration tells every command where the controllers are
// and how to authenticate. Environment variables come first:
//
//	STOCKADE_SERVERS  controllers' API addresses, comma-separated host:port
//	STOCKADE_TOKEN    the user's bearer token
//	STOCKADE_CA       PEM file of the cluster CA
//	STOCKADE_CONFIG   the file below (default ~/.config/stockade/client.toml)
//	STOCKADE_TIMEOUT  how long a command waits for the controllers (default 60s)
//
// What the environment leaves unset comes from the TOML file:
//
//	servers    = ["ctl1:7701", "ctl2:7701", "ctl3:7701"]  # host:port
//	token      = "..."                 # the bearer token, or:
//	token_file = "alice.token"         # a file holding it (mode 0600)
//	ca_file    = "/etc/stockade/ca.pem"
//
// token and token_file are exclusive; relative paths are relative to the
// file's directory; any other key is an error. The connection is TLS 1.3
// and trusts only the cluster CA; sessions are resumed across commands
// from a per-user cache file (see sessionCache; STOCKADE_SESSION_CACHE=off
// disables the file).
type clientFile struct {
	Servers   []string `toml:"servers"`
	Token     string   `toml:"token"`
	TokenFile string   `toml:"token_file"`
	CAFile    string   `toml:"ca_file"`
}

// clientSettings is the resolved configuration.
type clientSettings struct {
	Servers []string
	Token   string
	CAPEM   []byte
}

// LoadClient builds the API client from the environment and the client
// configuration file (see clientFile for the format).
func LoadClient() (*api.Client, error) {
	home, _ := os.UserHomeDir()
	s, err := loadClientSettings(os.Getenv, os.ReadFile, home)
	if err != nil {
		return nil, err
	}
	tlsConf, err := pki.ClientTLSConfig(s.CAPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	return newCLIClient(s, tlsConf, openSessionCache(sessionCachePath(os.Getenv, home), s.CAPEM)), nil
}

// newCLIClient is the client of one command: a process that makes a
// request or two, so HTTP/1.1 (api.Options.OneShot) and TLS sessions
// resumed from the per-user cache, which also remembers the leader.
func newCLIClient(s *clientSettings, tlsConf *tls.Config, cache *sessionCache) *api.Client {
	tlsConf.ClientSessionCache = cache
	c := api.NewClientWith(s.Servers, s.Token, tlsConf, api.Options{OneShot: true, OnLeader: cache.SetLeader})
	if l := cache.Leader(); l != "" {
		c.Prefer(l) // ignored unless it is one of s.Servers
	}
	return c
}

func loadClientSettings(getenv func(string) string, readFile func(string) ([]byte, error), home string) (*clientSettings, error) {
	var s clientSettings
	var caFile, tokenFile string
	if v := getenv("STOCKADE_SERVERS"); v != "" {
		servers, err := parseServers(strings.Split(v, ","), "STOCKADE_SERVERS")
		if err != nil {
			return nil, err
		}
		s.Servers = servers
	}
	s.Token = strings.TrimSpace(getenv("STOCKADE_TOKEN"))
	caFile = getenv("STOCKADE_CA")

	// The file is read only for what the environment leaves unset, so a
	// fully configured environment works without one.
	if len(s.Servers) == 0 || s.Token == "" || caFile == "" {
		path := getenv("STOCKADE_CONFIG")
		explicit := path != ""
		if !explicit && home != "" {
			path = filepath.Join(home, ".config", "stockade", "client.toml")
		}
		var f clientFile
		if path != "" {
			data, err := readFile(path)
			switch {
			case err == nil:
				if f, err = parseClientFile(path, data); err != nil {
					return nil, err
				}
			case explicit || !errors.Is(err, fs.ErrNotExist):
				return nil, fmt.Errorf("client config: %w", err)
			}
		}
		dir := filepath.Dir(path)
		rel := func(p string) string {
			if p == "" || filepath.IsAbs(p) {
				return p
			}
			return filepath.Join(dir, p)
		}
		if len(s.Servers) == 0 && len(f.Servers) > 0 {
			servers, err := parseServers(f.Servers, path+": servers")
			if err != nil {
				return nil, err
			}
			s.Servers = servers
		}
		if s.Token == "" {
			s.Token = f.Token
			tokenFile = rel(f.TokenFile)
		}
		if caFile == "" {
			caFile = rel(f.CAFile)
		}
		where := "the client config " + path
		if path == "" {
			where = "a client config file"
		}
		switch {
		case len(s.Servers) == 0:
			return nil, fmt.Errorf("no controller address: set STOCKADE_SERVERS or servers in %s", where)
		case s.Token == "" && tokenFile == "":
			return nil, fmt.Errorf("no token: set STOCKADE_TOKEN or token/token_file in %s", where)
		case caFile == "":
			return nil, fmt.Errorf("no cluster CA: set STOCKADE_CA or ca_file in %s", where)
		}
	}
	if tokenFile != "" {
		b, err := readFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token_file: %w", err)
		}
		if s.Token = strings.TrimSpace(string(b)); s.Token == "" {
			return nil, fmt.Errorf("token_file %s is empty", tokenFile)
		}
	}
	ca, err := readFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	s.CAPEM = ca
	return &s, nil
}

func parseClientFile(path string, data []byte) (clientFile, error) {
	var f clientFile
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return f, fmt.Errorf("%s: %s", path, oneLine(err.Error()))
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		slices.Sort(keys)
		return f, fmt.Errorf("%s: unknown key %q", path, keys[0])
	}
	if f.Token != "" && f.TokenFile != "" {
		return f, fmt.Errorf("%s: token and token_file are exclusive", path)
	}
	return f, nil
}

// parseServers checks host:port addresses, dropping empty entries.
func parseServers(list []string, where string) ([]string, error) {
	var out []string
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
			return nil, fmt.Errorf("%s: %q is not host:port", where, s)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no address given", where)
	}
	return out, nil
}
