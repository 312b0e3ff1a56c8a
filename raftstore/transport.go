package raftstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

const (
	defaultDialTimeout = 10 * time.Second
	handshakeTimeout   = 10 * time.Second
)

// RejectAgentCerts is the default Config.VerifyPeer: agents hold
// certificates from the same CA (OU "agent") and must never speak Raft.
func RejectAgentCerts(cert *x509.Certificate) error {
	for _, ou := range cert.Subject.OrganizationalUnit {
		if strings.EqualFold(ou, "agent") {
			return fmt.Errorf("raft: certificate %q is an agent's, not a controller's", cert.Subject.CommonName)
		}
	}
	return nil
}

// tlsStream is a raft.StreamLayer over TCP with mutual TLS.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config
}

var _ raft.StreamLayer = (*tlsStream)(nil)

type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// verifyPeer wraps verify as a tls.Config.VerifyConnection hook, keeping
// any hook the caller already set.
func verifyPeer(cfg *tls.Config, verify func(*x509.Certificate) error) {
	prev := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("raft: peer sent no certificate")
		}
		if err := verify(cs.PeerCertificates[0]); err != nil {
			return err
		}
		if prev != nil {
			return prev(cs)
		}
		return nil
	}
}

func newTLSStream(bind, advertise string, server, client *tls.Config, verify func(*x509.Certificate) error) (*tlsStream, error) {
	if server == nil || client == nil {
		return nil, errors.New("raft: ServerTLS and ClientTLS are required")
	}
	if server.ClientCAs == nil {
		return nil, errors.New("raft: ServerTLS.ClientCAs must hold the cluster CA (mutual TLS)")
	}
	if len(server.Certificates) == 0 && server.GetCertificate == nil {
		return nil, errors.New("raft: ServerTLS has no certificate")
	}
	if server.GetConfigForClient != nil {
		// The config it returns would bypass the client-certificate checks.
		return nil, errors.New("raft: ServerTLS.GetConfigForClient is not supported")
	}
	if client.RootCAs == nil {
		return nil, errors.New("raft: ClientTLS.RootCAs must hold the cluster CA")
	}
	if len(client.Certificates) == 0 && client.GetClientCertificate == nil {
		return nil, errors.New("raft: ClientTLS has no client certificate")
	}
	srv := server.Clone()
	// Whatever the caller set, Raft peers must prove who they are.
	srv.ClientAuth = tls.RequireAndVerifyClientCert
	srv.MinVersion = max(srv.MinVersion, tls.VersionTLS12)
	cli := client.Clone()
	cli.MinVersion = max(cli.MinVersion, tls.VersionTLS12)
	if verify != nil {
		verifyPeer(srv, verify)
		verifyPeer(cli, verify)
	}

	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft: listen %s: %w", bind, err)
	}
	adv := net.Addr(ln.Addr())
	if advertise != "" {
		adv = advertiseAddr(advertise)
	}
	if host, _, err := net.SplitHostPort(adv.String()); err != nil {
		ln.Close()
		return nil, fmt.Errorf("raft: advertise address %q: %w", adv, err)
	} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft: advertise address %s is not reachable by peers; set RaftAdvertise", adv)
	}
	return &tlsStream{Listener: tls.NewListener(ln, srv), advertise: adv, client: cli}, nil
}

func (s *tlsStream) Addr() net.Addr { return s.advertise }

// Accept hands out connections whose handshake runs on first use, in the
// transport's per-connection goroutine, under a deadline: a silent client
// cannot hold the accept loop.
func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeConn{Conn: c.(*tls.Conn)}, nil
}

func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	cfg := s.client
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(string(address))
		if err != nil {
			return nil, err
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	// The dialer's timeout covers the TCP connect and the TLS handshake.
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), cfg)
}

type handshakeConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *handshakeConn) handshake() error {
	c.once.Do(func() {
		c.Conn.SetDeadline(time.Now().Add(handshakeTimeout))
		c.err = c.Conn.Handshake()
		c.Conn.SetDeadline(time.Time{})
	})
	return c.err
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *handshakeConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
