// Package server is the Stockade controller (`stockade server`): it owns a
// Raft member of the replicated state, serves the /v1 HTTP API over TLS,
// admits new members with join tokens, and while it leads runs the
// scheduler and the node failure detector.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stockade-hpc/stockade/attest"
	"github.com/stockade-hpc/stockade/internal/auth"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/raftstore"
)

// Options configure a controller. Zero values take the defaults of the
// command's flags, except DataDir and ID which are required.
type Options struct {
	DataDir string
	ID      string
	// Listen is the API address (host:port; port 0 picks one, see
	// Server.APIAddr). Advertise is the API address other members and
	// clients use (default: Listen's bound address).
	Listen    string
	Advertise string
	// RaftBind is the Raft address; RaftAdvertise what peers dial.
	RaftBind      string
	RaftAdvertise string
	// Bootstrap creates a new cluster on the first start.
	Bootstrap bool
	// Join lists API addresses of members to join through on the first
	// start, with a controller join token.
	Join      []string
	JoinToken string
	// Config is the cluster configuration (nil: ConfigFile, or the
	// default one-partition config).
	Config     *Config
	ConfigFile string
	// NodeTimeout is how long an UP node may go without a heartbeat
	// before the leader marks it DOWN (default 10 s).
	NodeTimeout time.Duration
	// TLSNames are extra host names or IPs for this controller's
	// certificate.
	TLSNames []string
	// TPMCABundle is a PEM file of the TPM manufacturers' EK CA
	// certificates: enrolling agents whose EK certificate chains to one
	// are trusted "attested". Every controller needs the same file (it is
	// not replicated): any of them may lead.
	TPMCABundle string
	// DevChain says whether this controller runs the dev chain (geth --dev)
	// when the [chain] section asks for one (--dev-chain). Unlike the other
	// options its zero value is off, not the command's default (auto), so
	// that controllers embedded in tests start no chain unless asked.
	DevChain DevChainMode
	// Geth is the geth binary the dev chain runs (--geth); empty:
	// chain.FindGeth ($STOCKADE_GETH, geth or tools/geth beside the
	// stockade binary, $PATH).
	Geth   string
	Logger *slog.Logger

	// Raft timers (tests shorten them); zero keeps raftstore's defaults.
	RaftHeartbeatTimeout time.Duration
	RaftElectionTimeout  time.Duration
}

// DevChainMode is Options.DevChain.
type DevChainMode string

// Dev chain modes. One controller runs the cluster's dev chain: with auto,
// the one that bootstrapped the cluster, which exists from the first
// start. Moving it (the bootstrap machine retired) means on for the new
// one and off for the old; the chain's data stays with the old one.
const (
	DevChainAuto DevChainMode = "auto"
	DevChainOn   DevChainMode = "on"
	DevChainOff  DevChainMode = "off"
)

// DefaultNodeTimeout is --node-timeout's default.
const DefaultNodeTimeout = 10 * time.Second

// Data directory files.
const (
	fileCA           = "ca.pem"
	fileCAKey        = "ca-key.pem"
	fileCert         = "controller.pem"
	fileKey          = "controller-key.pem"
	fileAdminToken   = "admin-token"
	fileAgentToken   = "agent-join-token"
	fileCtlToken     = "controller-join-token"
	fileClusterState = "cluster.json"
	fileAnchorKey    = "anchor-key" // the cluster's anchoring key, hex, 0600
	dirDevChain      = "devchain"   // the dev chain's data
)

// Server is a running controller.
type Server struct {
	opts   Options
	id     string
	log    *slog.Logger
	cfg    *Config
	node   *raftstore.Node
	ident  *pki.Identity
	ca     *pki.CA
	tokens *pki.JoinTokens
	auth   *auth.Authenticator

	apiAddr  string // advertised
	raftAddr string // advertised
	ln       net.Listener
	http     *http.Server

	peerTransport *http.Transport
	joinSem       chan struct{} // bounds concurrent Argon2id join checks

	// leading is true once this member leads with a complete state (every
	// entry of earlier terms applied).
	leading atomic.Bool
	// hint caches the leader's API address for hdrLeader (routes.go).
	hint   atomic.Pointer[leaderHint]
	userMu sync.Mutex // serializes user creation (check, then Apply)

	seenMu sync.Mutex
	seen   map[string]time.Time // leader only: last heartbeat per node

	work *workCache

	// Attestation: the manufacturer roots (nil: none, so EKs can only be
	// approved), the leader's short-lived state, per-node verdict locks,
	// and policyMu serializing policy read-modify-writes on the leader.
	tpmRoots    *x509.CertPool
	attest      *attestState
	attestLocks keyedMutex
	policyMu    sync.Mutex
	verifier    attest.Verifier

	admitMu   sync.Mutex
	admitting map[string]bool // controllers being added to Raft

	// Anchoring (anchor.go): the chain connection, kept across terms so a
	// transaction in flight is waited for rather than sent again, and the
	// last anchoring error for GET /v1/status.
	anchor *anchorState

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}
	errMu  sync.Mutex
	err    error
	once   sync.Once
}

// Run starts a controller and serves until ctx ends or it fails.
func Run(ctx context.Context, opts Options) error {
	s, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-s.Done():
	}
	cerr := s.Close()
	if err := s.Err(); err != nil {
		return err
	}
	return cerr
}

func (o *Options) setDefaults() error {
	if o.DataDir == "" {
		return errors.New("--data-dir is required")
	}
	if o.ID == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("--id: %w", err)
		}
		o.ID = h
	}
	if !nodeNameRE().MatchString(o.ID) {
		return fmt.Errorf("--id: invalid controller id %q: want 1-63 of [A-Za-z0-9._-]", o.ID)
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:7701"
	}
	if o.RaftBind == "" {
		o.RaftBind = "127.0.0.1:7702"
	}
	switch o.DevChain {
	case "", DevChainAuto, DevChainOn, DevChainOff:
	default:
		return fmt.Errorf("--dev-chain: %q is not auto, on or off", o.DevChain)
	}
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = DefaultNodeTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	for _, a := range []struct{ flag, v string }{{"--listen", o.Listen}, {"--raft", o.RaftBind},
		{"--advertise", o.Advertise}, {"--raft-advertise", o.RaftAdvertise}} {
		if a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return fmt.Errorf("%s: %q is not host:port", a.flag, a.v)
		}
	}
	return nil
}

// Start brings a controller up: it initializes the data directory on the
// first start (bootstrap or join), opens Raft and serves the API. It
// returns once the API listens.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	cfg := opts.Config
	if cfg == nil && opts.ConfigFile != "" {
		var err error
		if cfg, err = LoadConfig(opts.ConfigFile); err != nil {
			return nil, err
		}
	}
	if cfg == nil {
		cfg = DefaultConfig()
	}
	var tpmRoots *x509.CertPool
	if opts.TPMCABundle != "" {
		pool, n, err := loadTPMCABundle(opts.TPMCABundle)
		if err != nil {
			return nil, err
		}
		tpmRoots = pool
		opts.Logger.Info("TPM manufacturer CA bundle loaded", "file", opts.TPMCABundle, "certificates", n)
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, err
	}
	s := &Server{
		opts:      opts,
		id:        opts.ID,
		log:       opts.Logger.With("controller", opts.ID),
		cfg:       cfg,
		auth:      auth.NewAuthenticator(0),
		joinSem:   make(chan struct{}, 2),
		seen:      map[string]time.Time{},
		work:      newWorkCache(),
		attest:    newAttestState(),
		tpmRoots:  tpmRoots,
		admitting: map[string]bool{},
		anchor:    newAnchorState(),
		done:      make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			s.cancel()
			if s.ln != nil {
				s.ln.Close()
			}
		}
	}()

	if err := s.checkID(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	s.ln = ln
	s.apiAddr = advertised(opts.Advertise, ln.Addr().String())
	s.raftAddr = advertised(opts.RaftAdvertise, opts.RaftBind)
	if strings.HasSuffix(s.raftAddr, ":0") {
		return nil, errors.New("--raft: give a fixed port (peers must know it before Raft starts)")
	}

	bootstrap, err := s.initDataDir(ctx)
	if err != nil {
		return nil, err
	}
	if s.tokens, err = pki.OpenJoinTokens(s.path(pki.JoinTokensFile)); err != nil {
		return nil, err
	}
	s.peerTransport = &http.Transport{
		TLSClientConfig:     s.ident.PeerClientTLS(pki.OUController),
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
	}

	node, err := raftstore.Open(raftstore.Config{
		ID:               s.id,
		DataDir:          opts.DataDir,
		RaftBind:         opts.RaftBind,
		RaftAdvertise:    s.raftAddr,
		ServerTLS:        s.ident.PeerServerTLS(pki.OUController),
		ClientTLS:        s.ident.PeerClientTLS(pki.OUController),
		VerifyPeer:       requireController,
		Bootstrap:        bootstrap,
		Logger:           opts.Logger,
		HeartbeatTimeout: opts.RaftHeartbeatTimeout,
		ElectionTimeout:  opts.RaftElectionTimeout,
	})
	if err != nil {
		return nil, err
	}
	s.node = node
	if err := s.markInitialized(); err != nil {
		node.Shutdown()
		return nil, err
	}
	if err := s.ensureAnchorKey(); err != nil {
		node.Shutdown()
		return nil, err
	}

	s.http = &http.Server{
		Handler:           s.logRequests(s.routes()),
		TLSConfig:         s.ident.ServerTLS(tls.VerifyClientCertIfGiven),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.http.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.fail(fmt.Errorf("API server: %w", err))
		}
	}()
	s.wg.Add(2)
	go s.leadership()
	go s.publishSelf()
	s.profileOnSignal()
	if s.servesDevChain() {
		s.wg.Add(1)
		go s.runDevChain()
	}
	ok = true
	s.log.Info("controller serving", "api", s.apiAddr, "raft", s.raftAddr, "data_dir", opts.DataDir)
	return s, nil
}

func requireController(cert *x509.Certificate) error {
	if pki.Role(cert) != pki.OUController {
		return fmt.Errorf("raft peer %q is not a controller", cert.Subject.CommonName)
	}
	return nil
}

// advertised picks the address others should dial: the explicit one, else
// bound with an unspecified host replaced by this machine's first
// non-loopback address.
func advertised(explicit, bound string) string {
	if explicit != "" {
		return explicit
	}
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if ips := localIPs(); len(ips) > 0 {
			return net.JoinHostPort(ips[0], port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return bound
}

// localIPs lists this machine's non-loopback unicast addresses, IPv4 first.
func localIPs() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var v4, v6 []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || !ipn.IP.IsGlobalUnicast() {
			continue
		}
		if ipn.IP.To4() != nil {
			v4 = append(v4, ipn.IP.String())
		} else {
			v6 = append(v6, ipn.IP.String())
		}
	}
	return append(v4, v6...)
}

// APIAddr is the advertised API address.
func (s *Server) APIAddr() string { return s.apiAddr }

// ID is the controller id.
func (s *Server) ID() string { return s.id }

// Node is the Raft member (tests inspect it).
func (s *Server) Node() *raftstore.Node { return s.node }

// Done is closed when the server stopped on its own (see Err).
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is the error that stopped the server, if any.
func (s *Server) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

func (s *Server) fail(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
	s.log.Error("controller failed", "err", err)
	s.once.Do(func() { close(s.done) })
}

// Close stops serving and leaves Raft (without handing over leadership:
// the others elect a new leader within seconds).
func (s *Server) Close() error {
	s.cancel()
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	herr := s.http.Shutdown(sctx)
	if herr != nil {
		s.http.Close()
	}
	nerr := s.node.Shutdown()
	s.wg.Wait()
	s.anchor.close()
	s.peerTransport.CloseIdleConnections()
	s.once.Do(func() { close(s.done) })
	s.log.Info("controller stopped")
	if nerr != nil {
		return nerr
	}
	if herr != nil && !errors.Is(herr, context.DeadlineExceeded) {
		return herr
	}
	return nil
}

func (s *Server) store() *raftstore.Store { return s.node.Store() }
