package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/stockade-hpc/stockade/accounting/chain"
	"github.com/stockade-hpc/stockade/internal/auth"
	"github.com/stockade-hpc/stockade/internal/pki"
)

// clusterState is cluster.json: written once Raft has opened on the first
// start, it marks the data directory as initialized and pins the id.
type clusterState struct {
	ID          string    `json:"id"`
	ClusterName string    `json:"cluster_name,omitempty"`
	Created     time.Time `json:"created"`
	// Bootstrapped is true on the member that created the cluster.
	Bootstrapped bool `json:"bootstrapped,omitempty"`
}

func (s *Server) path(name string) string { return filepath.Join(s.opts.DataDir, name) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// checkID refuses a data directory initialized for another controller id
// (Raft identities must not change).
func (s *Server) checkID() error {
	data, err := os.ReadFile(s.path(fileClusterState))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var cs clusterState
	if err := json.Unmarshal(data, &cs); err != nil {
		return fmt.Errorf("%s: %w", s.path(fileClusterState), err)
	}
	if cs.ID != s.id {
		return fmt.Errorf("data dir %s belongs to controller %q, not %q (--id)", s.opts.DataDir, cs.ID, s.id)
	}
	return nil
}

// initDataDir loads this controller's identity, creating it on the first
// start by bootstrapping a new cluster or joining one. It reports whether
// Raft must bootstrap.
func (s *Server) initDataDir(ctx context.Context) (bootstrap bool, err error) {
	if data, err := os.ReadFile(s.path(fileClusterState)); err == nil {
		var cs clusterState
		if err := json.Unmarshal(data, &cs); err != nil {
			return false, fmt.Errorf("%s: %w", s.path(fileClusterState), err)
		}
		if cs.ID != s.id {
			return false, fmt.Errorf("data dir %s belongs to controller %q, not %q (--id)", s.opts.DataDir, cs.ID, s.id)
		}
		if s.opts.Bootstrap || len(s.opts.Join) > 0 {
			s.log.Info("data dir already initialized: --bootstrap/--join ignored")
		}
		return false, s.loadIdentity()
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	switch {
	case s.opts.Bootstrap && len(s.opts.Join) > 0:
		return false, errors.New("give --bootstrap or --join, not both")
	case s.opts.Bootstrap:
		return true, s.bootstrapFiles()
	case len(s.opts.Join) > 0:
		return false, s.joinCluster(ctx)
	}
	return false, fmt.Errorf("data dir %s is not initialized: start the first controller with --bootstrap, "+
		"others with --join ADDR --join-token-file FILE", s.opts.DataDir)
}

func (s *Server) loadIdentity() error {
	id, err := pki.LoadIdentity(s.path(fileCert), s.path(fileKey), s.path(fileCA))
	if err != nil {
		return fmt.Errorf("controller identity: %w", err)
	}
	if pki.Role(id.Leaf) != pki.OUController || id.Name() != s.id {
		return fmt.Errorf("%s is not a controller certificate for %q", s.path(fileCert), s.id)
	}
	ca, err := pki.LoadCA(s.path(fileCA), s.path(fileCAKey))
	if err != nil {
		return fmt.Errorf("cluster CA: %w", err)
	}
	s.ident, s.ca = id, ca
	return nil
}

// certHosts are the names this controller's certificate must carry: every
// host it listens on or advertises, the machine's name, --tls-san, and
// every local address when it listens on all of them.
func (s *Server) certHosts() []string {
	var hosts []string
	wildcard := false
	for _, a := range []string{s.opts.Listen, s.apiAddr, s.opts.RaftBind, s.raftAddr} {
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
			wildcard = true
			continue
		}
		hosts = append(hosts, h)
	}
	if wildcard {
		hosts = append(hosts, localIPs()...)
	}
	if hn, err := os.Hostname(); err == nil && hn != "" {
		hosts = append(hosts, hn)
	}
	hosts = append(hosts, s.opts.TLSNames...)
	slices.Sort(hosts)
	return slices.Compact(hosts)
}

// bootstrapFiles creates the cluster's CA, this controller's certificate,
// the two join tokens and the admin token. Secrets go only to 0600 files;
// the log names the files, never their contents. A retry after a crash
// before Raft opened reuses what exists.
func (s *Server) bootstrapFiles() error {
	var ca *pki.CA
	var err error
	if exists(s.path(fileCA)) && exists(s.path(fileCAKey)) {
		if ca, err = pki.LoadCA(s.path(fileCA), s.path(fileCAKey)); err != nil {
			return err
		}
	} else {
		if ca, err = pki.NewCA(s.cfg.ClusterName); err != nil {
			return err
		}
		keyPEM, err := ca.KeyPEM()
		if err != nil {
			return err
		}
		if err := pki.WriteFile(s.path(fileCAKey), keyPEM, 0o600); err != nil {
			return err
		}
		// The CA certificate is public (GET /v1/cluster/ca serves it).
		if err := pki.WriteFile(s.path(fileCA), ca.CertPEM, 0o644); err != nil {
			return err
		}
	}
	if err := s.issueOwnCert(ca); err != nil {
		return err
	}
	tokens, err := pki.OpenJoinTokens(s.path(pki.JoinTokensFile))
	if err != nil {
		return err
	}
	for _, t := range []struct{ role, file string }{{pki.OUAgent, fileAgentToken}, {pki.OUController, fileCtlToken}} {
		if exists(s.path(t.file)) {
			continue
		}
		jt, text := pki.NewJoinToken(ca.Cert.Raw)
		if err := tokens.Add(t.role, jt); err != nil {
			return err
		}
		if err := pki.WriteFile(s.path(t.file), []byte(text+"\n"), 0o600); err != nil {
			return err
		}
		s.log.Info("wrote join token", "role", t.role, "file", s.path(t.file))
	}
	if !exists(s.path(fileAdminToken)) {
		_, tok, err := auth.NewToken()
		if err != nil {
			return err
		}
		// The user record is created through Raft once this member leads
		// (ensureAdmin); the file comes first so the token is never lost.
		if err := pki.WriteFile(s.path(fileAdminToken), []byte(tok+"\n"), 0o600); err != nil {
			return err
		}
		s.log.Info("wrote admin token (user root)", "file", s.path(fileAdminToken))
	}
	if err := s.newAnchorKey(); err != nil {
		return err
	}
	s.log.Info("bootstrapped a new cluster", "cluster", s.cfg.ClusterName, "ca", s.path(fileCA))
	return s.loadIdentity()
}

// newAnchorKey creates the cluster's anchoring key unless it exists: the
// account that owns the anchor contract. Like the CA key it goes to every
// controller that joins, so that whichever leads can anchor. The log
// names the file and the account, never the key.
func (s *Server) newAnchorKey() error {
	if exists(s.path(fileAnchorKey)) {
		return nil
	}
	account, err := chain.GenerateKeyFile(s.path(fileAnchorKey))
	if err != nil {
		return err
	}
	s.log.Info("wrote the cluster's anchoring key", "file", s.path(fileAnchorKey), "account", account.Hex())
	return nil
}

// ensureAnchorKey gives the member that bootstrapped a cluster made before
// anchoring existed its anchoring key. Controllers that joined such a
// cluster have none until they join again; see anchorTarget.
func (s *Server) ensureAnchorKey() error {
	if exists(s.path(fileAnchorKey)) || !s.bootstrapMember() {
		return nil
	}
	return s.newAnchorKey()
}

// bootstrapMember reports whether this controller created the cluster.
func (s *Server) bootstrapMember() bool {
	data, err := os.ReadFile(s.path(fileClusterState))
	if err != nil {
		return s.opts.Bootstrap
	}
	var cs clusterState
	return json.Unmarshal(data, &cs) == nil && cs.Bootstrapped
}

func (s *Server) issueOwnCert(ca *pki.CA) error {
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	cert, err := ca.IssueController(s.id, s.certHosts(), &key.PublicKey)
	if err != nil {
		return err
	}
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		return err
	}
	if err := pki.WriteFile(s.path(fileKey), keyPEM, 0o600); err != nil {
		return err
	}
	return pki.WriteFile(s.path(fileCert), cert, 0o644)
}

// joinCluster trades the controller join token for a certificate, the CA
// (with its key: controllers sign agents' certificates) and the join token
// hashes. The leader adds this member to Raft once it listens.
func (s *Server) joinCluster(ctx context.Context) error {
	if s.opts.JoinToken == "" {
		return errors.New("--join needs --join-token or --join-token-file")
	}
	s.log.Info("joining the cluster", "via", s.opts.Join)
	j, err := pki.Join(ctx, pki.JoinRequest{
		Servers:  s.opts.Join,
		Token:    s.opts.JoinToken,
		Name:     s.id,
		RaftAddr: s.raftAddr,
		APIAddr:  s.apiAddr,
		Hosts:    s.certHosts(),
	})
	if err != nil {
		return err
	}
	tokens, err := pki.OpenJoinTokens(s.path(pki.JoinTokensFile))
	if err != nil {
		return err
	}
	if err := tokens.Replace(j.JoinTokens); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{fileCA, j.CACert, 0o644},
		{fileCAKey, j.CAKey, 0o600},
		{fileKey, j.Key, 0o600},
		{fileCert, j.Cert, 0o644},
	} {
		if err := pki.WriteFile(s.path(f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	if err := s.writeAnchorKey(j.AnchorKey); err != nil {
		return err
	}
	s.log.Info("joined the cluster; waiting for the leader to add this member to Raft")
	return s.loadIdentity()
}

// writeAnchorKey stores the anchoring key a join answer carried. A cluster
// made before anchoring existed may have none to give: this controller
// then cannot anchor while it leads, which the leader's status says.
func (s *Server) writeAnchorKey(key []byte) error {
	if len(key) == 0 {
		s.log.Warn("the cluster gave no anchoring key: this controller cannot anchor epochs while it leads")
		return nil
	}
	if err := pki.WriteFile(s.path(fileAnchorKey), key, 0o600); err != nil {
		return err
	}
	if _, err := chain.LoadKeyFile(s.path(fileAnchorKey)); err != nil {
		os.Remove(s.path(fileAnchorKey))
		return fmt.Errorf("join answer: anchoring key: %w", err)
	}
	return nil
}

// markInitialized writes cluster.json once Raft has opened.
func (s *Server) markInitialized() error {
	if exists(s.path(fileClusterState)) {
		return nil
	}
	data, err := json.MarshalIndent(clusterState{
		ID: s.id, ClusterName: s.cfg.ClusterName, Created: time.Now().UTC(), Bootstrapped: s.opts.Bootstrap,
	}, "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFile(s.path(fileClusterState), append(data, '\n'), 0o600)
}
