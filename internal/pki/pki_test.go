package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestCA(t *testing.T) {
	ca := newCA(t)
	if !ca.Cert.IsCA || ca.Cert.NotAfter.Before(time.Now().Add(9*365*24*time.Hour)) {
		t.Fatalf("CA: IsCA %v, NotAfter %s", ca.Cert.IsCA, ca.Cert.NotAfter)
	}
	if _, ok := ca.Cert.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatal("CA key is not ECDSA")
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteFile(filepath.Join(dir, "ca.pem"), ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(dir, "ca-key.pem"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "ca-key.pem"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode().Perm())
	}
	back, err := LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !back.Cert.Equal(ca.Cert) || !back.Key.Equal(ca.Key) {
		t.Fatal("CA did not round-trip")
	}
	other := newCA(t)
	otherKey, _ := other.KeyPEM()
	if _, err := ParseCA(ca.CertPEM, otherKey); err == nil {
		t.Error("accepted a CA key that does not match the certificate")
	}
	if _, err := ParseCA([]byte("junk"), nil); err == nil {
		t.Error("accepted junk as a CA")
	}
	certOnly, err := ParseCA(ca.CertPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := NewKey()
	if _, err := certOnly.IssueAgent("n1", &key.PublicKey); err == nil {
		t.Error("issued without the CA key")
	}
}

func TestIssue(t *testing.T) {
	ca := newCA(t)
	key, _ := NewKey()
	tests := []struct {
		name    string
		issue   func() ([]byte, error)
		cn, ou  string
		eku     []x509.ExtKeyUsage
		ips     []string
		dns     []string
		wantErr bool
	}{
		{
			name: "controller",
			issue: func() ([]byte, error) {
				return ca.IssueController("c1", []string{"10.0.0.5", "ctl1.example", "0.0.0.0"}, &key.PublicKey)
			},
			cn: "c1", ou: OUController,
			eku: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			ips: []string{"10.0.0.5", "127.0.0.1", "::1"}, dns: []string{"ctl1.example", "localhost"},
		},
		{
			name:  "agent",
			issue: func() ([]byte, error) { return ca.IssueAgent("node1", &key.PublicKey) },
			cn:    "node1", ou: OUAgent,
			eku: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		},
		{name: "bad controller id", issue: func() ([]byte, error) { return ca.IssueController("a b", nil, &key.PublicKey) }, wantErr: true},
		{name: "bad node name", issue: func() ([]byte, error) { return ca.IssueAgent("../x", &key.PublicKey) }, wantErr: true},
		{name: "empty node name", issue: func() ([]byte, error) { return ca.IssueAgent("", &key.PublicKey) }, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.issue()
			if tc.wantErr {
				if err == nil {
					t.Fatal("issued")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, err := ParseCertPEM(p)
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject.CommonName != tc.cn || Role(c) != tc.ou {
				t.Errorf("subject %v", c.Subject)
			}
			if !slices.Equal(c.ExtKeyUsage, tc.eku) {
				t.Errorf("EKU %v", c.ExtKeyUsage)
			}
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tc.ips) || !slices.Equal(c.DNSNames, tc.dns) {
				t.Errorf("SANs %v %v", ips, c.DNSNames)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: tc.eku}); err != nil {
				t.Errorf("chain: %v", err)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: newCA(t).Pool(), KeyUsages: tc.eku}); err == nil {
				t.Error("verified against another CA")
			}
			keyPEM, _ := EncodeKeyPEM(key)
			if _, err := NewIdentity(p, keyPEM, ca.CertPEM); err != nil {
				t.Errorf("identity: %v", err)
			}
			otherKey, _ := NewKey()
			otherPEM, _ := EncodeKeyPEM(otherKey)
			if _, err := NewIdentity(p, otherPEM, ca.CertPEM); err == nil {
				t.Error("identity with the wrong key")
			}
		})
	}
}

func TestSignCSR(t *testing.T) {
	ca := newCA(t)
	key, _ := NewKey()
	good, err := NewCSR(key, "evil-asks-for-this-cn", []string{"10.1.1.1", "c2.example"})
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(good)
	tampered := slices.Clone(blk.Bytes)
	tampered[len(tampered)-3] ^= 0xff // inside the signature
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, edKey)
	tests := []struct {
		name    string
		csr     []byte
		role    string
		cn      string
		wantErr string
	}{
		{"controller", good, OUController, "c2", ""},
		{"agent", good, OUAgent, "node7", ""},
		{"tampered", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}), OUAgent, "n", "csr"},
		{"not pem", []byte("hello"), OUAgent, "n", "PEM"},
		{"wrong block", ca.CertPEM, OUAgent, "n", "PEM"},
		{"ed25519", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: edDER}), OUAgent, "n", "P-256"},
		{"bad role", good, "admin", "n", "role"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ca.SignCSR(tc.csr, tc.role, tc.cn, []string{"10.9.9.9"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, _ := ParseCertPEM(p)
			if c.Subject.CommonName != tc.cn || Role(c) != tc.role {
				t.Errorf("subject %v: the requester's subject was not overridden", c.Subject)
			}
			if !c.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
				t.Error("certificate is not for the CSR's key")
			}
			if tc.role == OUAgent && (len(c.IPAddresses) != 0 || len(c.DNSNames) != 0) {
				t.Errorf("agent certificate carries SANs %v %v", c.IPAddresses, c.DNSNames)
			}
			if tc.role == OUController && !slices.Contains(c.DNSNames, "c2.example") {
				t.Errorf("controller SANs %v", c.DNSNames)
			}
		})
	}
}

// member is an identity signed by ca with role.
func member(t *testing.T, ca *CA, role, name string) *Identity {
	t.Helper()
	key, _ := NewKey()
	var p []byte
	var err error
	if role == OUController {
		p, err = ca.IssueController(name, nil, &key.PublicKey)
	} else {
		p, err = ca.IssueAgent(name, &key.PublicKey)
	}
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := EncodeKeyPEM(key)
	id, err := NewIdentity(p, kp, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// handshake serves one TLS connection with srv and dials it with cli; it
// returns the client's error and the role the server saw.
func handshake(t *testing.T, srv, cli *tls.Config, addrName string) (error, string) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			seen <- ""
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if tc.Handshake() != nil {
			seen <- ""
			return
		}
		cs := tc.ConnectionState()
		role, name := PeerRole(&cs)
		seen <- role + "/" + name
		tc.Write([]byte("x"))
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	conn, err := tls.Dial("tcp", net.JoinHostPort(addrName, port), cli)
	if err == nil {
		// TLS 1.3 client certificates are checked after the client's
		// handshake ends: read to learn the server's verdict.
		_, err = io.ReadFull(conn, make([]byte, 1))
		conn.Close()
	}
	return err, <-seen
}

func TestTLS(t *testing.T) {
	ca := newCA(t)
	ctl := member(t, ca, OUController, "c1")
	ctl2 := member(t, ca, OUController, "c2")
	agent := member(t, ca, OUAgent, "node1")
	otherCA := newCA(t)
	stranger := member(t, otherCA, OUController, "c1")
	_, tok := NewJoinToken(ca.Cert.Raw)
	jt, _ := ParseJoinToken(tok)
	_, badTok := NewJoinToken(otherCA.Cert.Raw)
	bad, _ := ParseJoinToken(badTok)
	userTLS, err := ClientTLSConfig(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		srv    *tls.Config
		cli    *tls.Config
		host   string
		ok     bool
		peerAs string
	}{
		{"user to API", ctl.ServerTLS(tls.VerifyClientCertIfGiven), userTLS, "127.0.0.1", true, "/"},
		{"user by localhost", ctl.ServerTLS(tls.VerifyClientCertIfGiven), userTLS, "localhost", true, "/"},
		{"agent to API", ctl.ServerTLS(tls.VerifyClientCertIfGiven), agent.ClientTLS(), "127.0.0.1", true, "agent/node1"},
		{"stranger cert to API", ctl.ServerTLS(tls.VerifyClientCertIfGiven), stranger.ClientTLS(), "127.0.0.1", false, ""},
		{"pinned join", ctl.ServerTLS(tls.VerifyClientCertIfGiven), jt.PinnedTLSConfig(), "127.0.0.1", true, "/"},
		{"wrong pin", ctl.ServerTLS(tls.VerifyClientCertIfGiven), bad.PinnedTLSConfig(), "127.0.0.1", false, ""},
		{"user to stranger", stranger.ServerTLS(tls.VerifyClientCertIfGiven), userTLS, "127.0.0.1", false, ""},
		{"raft peer", ctl.PeerServerTLS(OUController), ctl2.PeerClientTLS(OUController), "127.0.0.1", true, "controller/c2"},
		{"agent to raft", ctl.PeerServerTLS(OUController), agent.ClientTLS(), "127.0.0.1", false, ""},
		{"no cert to raft", ctl.PeerServerTLS(OUController), userTLS, "127.0.0.1", false, ""},
		{"raft to agent-role server", agent.ServerTLS(tls.RequireAndVerifyClientCert), ctl.PeerClientTLS(OUController), "127.0.0.1", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err, peer := handshake(t, tc.srv, tc.cli, tc.host)
			if (err == nil) != tc.ok {
				t.Fatalf("handshake err = %v, want ok %v", err, tc.ok)
			}
			if tc.ok && peer != tc.peerAs {
				t.Errorf("server saw peer %q, want %q", peer, tc.peerAs)
			}
		})
	}
	if len(ctl.Cert.Certificate) != 2 || !ctl.CA.Equal(ca.Cert) {
		t.Error("served chain does not include the CA")
	}
}

func TestJoinTokens(t *testing.T) {
	if testing.Short() {
		t.Skip("Argon2id")
	}
	ca := newCA(t)
	path := filepath.Join(t.TempDir(), JoinTokensFile)
	jt, err := OpenJoinTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	agentTok, _ := NewJoinToken(ca.Cert.Raw)
	ctlTok, _ := NewJoinToken(ca.Cert.Raw)
	other, _ := NewJoinToken(ca.Cert.Raw)
	if err := jt.Add(OUAgent, agentTok); err != nil {
		t.Fatal(err)
	}
	if err := jt.Add(OUController, ctlTok); err != nil {
		t.Fatal(err)
	}
	if err := jt.Add("admin", other); err == nil {
		t.Error("added a token with a bogus role")
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), agentTok.Secret) || strings.Contains(string(raw), ctlTok.Secret) {
		t.Fatal("join-tokens.json holds a secret")
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	back, err := OpenJoinTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tok  JoinToken
		role string
	}{{"agent", agentTok, OUAgent}, {"controller", ctlTok, OUController}, {"unknown", other, ""}} {
		if got := back.Match(tc.tok); got != tc.role {
			t.Errorf("%s: Match = %q, want %q", tc.name, got, tc.role)
		}
	}
	// A joining controller receives and stores the same file.
	data, _ := back.JSON()
	copyPath := filepath.Join(t.TempDir(), JoinTokensFile)
	cp, _ := OpenJoinTokens(copyPath)
	if err := cp.Replace(data); err != nil {
		t.Fatal(err)
	}
	if cp.Match(ctlTok) != OUController {
		t.Error("copied tokens do not match")
	}
	if err := cp.Replace([]byte(`{"tokens":[{"role":"root","hash":"x"}]}`)); err == nil {
		t.Error("accepted a bogus role")
	}
	if err := cp.Replace([]byte(`{"tokens":[],"extra":1}`)); err == nil {
		t.Error("accepted an unknown field")
	}
}
