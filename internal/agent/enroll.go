package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stockade-hpc/stockade/internal/pki"
)

const (
	tlsSubdir = "tls"
	certFile  = "agent.pem"
	keyFile   = "agent-key.pem"
	caFile    = "ca.pem"
	// enrollTimeout bounds the join; a service manager restarts the agent.
	enrollTimeout = 2 * time.Minute
)

// enrolled reports whether the state dir holds a certificate. The
// certificate is written last, so its presence means the join finished.
func enrolled(stateDir string) (bool, error) {
	_, err := os.Stat(filepath.Join(stateDir, tlsSubdir, certFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// enroll joins the cluster with a join token (pki.Join pins the cluster CA
// to the token's hash before trusting anything) and stores the identity.
func enroll(ctx context.Context, log *slog.Logger, opts Options) error {
	if opts.JoinToken == "" {
		return errors.New("this node has not joined the cluster yet: give --join-token or --join-token-file")
	}
	dir := filepath.Join(opts.StateDir, tlsSubdir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	log.Info("joining the cluster", "servers", opts.Servers, "name", opts.Name)
	// The client retries until its context ends: bound the wait so a
	// wrong address or token ends in an error rather than silence.
	ctx, cancel := context.WithTimeout(ctx, enrollTimeout)
	defer cancel()
	j, err := pki.Join(ctx, pki.JoinRequest{Servers: opts.Servers, Token: opts.JoinToken, Name: opts.Name})
	if err != nil {
		return err
	}
	cert, err := pki.ParseCertPEM(j.Cert)
	if err != nil {
		return fmt.Errorf("join answer: %w", err)
	}
	if err := checkAgentCert(cert, opts.Name); err != nil {
		return fmt.Errorf("join answer: %w", err)
	}
	// The certificate goes last: it marks the join as complete.
	if err := pki.WriteFile(filepath.Join(dir, caFile), j.CACert, 0o644); err != nil {
		return err
	}
	if err := pki.WriteFile(filepath.Join(dir, keyFile), j.Key, 0o600); err != nil {
		return err
	}
	if err := pki.WriteFile(filepath.Join(dir, certFile), j.Cert, 0o644); err != nil {
		return err
	}
	log.Info("joined the cluster", "name", opts.Name, "expires", cert.NotAfter)
	return nil
}

// checkAgentCert checks that a certificate is an agent certificate for
// this node: a controller join token would yield a controller identity.
func checkAgentCert(cert *x509.Certificate, name string) error {
	if cert.Subject.CommonName != name {
		return fmt.Errorf("certificate is for %q, not %q", cert.Subject.CommonName, name)
	}
	if r := pki.Role(cert); r != pki.OUAgent {
		return fmt.Errorf("certificate has role %q, not %q: use an agent join token", r, pki.OUAgent)
	}
	return nil
}

// loadIdentity reads the joined identity and checks it is this node's.
func loadIdentity(stateDir, name string, now time.Time) (*pki.Identity, error) {
	dir := filepath.Join(stateDir, tlsSubdir)
	id, err := pki.LoadIdentity(filepath.Join(dir, certFile), filepath.Join(dir, keyFile), filepath.Join(dir, caFile))
	if err != nil {
		return nil, fmt.Errorf("agent identity in %s: %w", dir, err)
	}
	if err := checkAgentCert(id.Leaf, name); err != nil {
		return nil, fmt.Errorf("%s: %w (remove %s to join again)", dir, err, dir)
	}
	if now.After(id.Leaf.NotAfter) {
		return nil, fmt.Errorf("the agent certificate expired on %s (remove %s and join again with a new token)",
			id.Leaf.NotAfter.Format(time.RFC3339), dir)
	}
	return id, nil
}

// clusterNameFromCA recovers the cluster name from the CA's subject
// ("Stockade CA <name>", as pki.NewCA writes it); "" if it has another form.
func clusterNameFromCA(cn string) string {
	name, ok := strings.CutPrefix(cn, "Stockade CA ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(name)
}
