package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/pki"
	"github.com/stockade-hpc/stockade/raftstore"
)

// Headers between controllers. They are trusted only on connections that
// present a controller certificate and stripped from everyone else's.
const (
	// hdrForwarded marks a request a follower forwarded to the leader; a
	// non-leader answers it with 503 instead of forwarding again.
	hdrForwarded = "X-Stockade-Forwarded-By"
	// hdrAgent carries the node name of the agent whose request was
	// forwarded (its client certificate ends at the follower).
	hdrAgent = "X-Stockade-Agent"
	// hdrAgentSerial carries that agent's certificate serial (hex), which
	// the leader checks against revocations and the node's current one.
	hdrAgentSerial = "X-Stockade-Agent-Serial"
)

// hdrLeader is on every answer of every controller while a leader is
// known: the leader's API address as clients reach it (host:port, as the
// leader publishes it), so that a client can go straight there next time
// instead of through a follower, which forwards.
const hdrLeader = api.LeaderHeader

// leaderHintTTL bounds how long a follower trusts its cached leader
// address: a leader restarted with another address keeps its id.
const leaderHintTTL = time.Second

// leaderHint is the cached answer for hdrLeader.
type leaderHint struct {
	id, addr string
	until    time.Time
}

// leader returns the leader's id ("" when none is known) and API address
// ("" until it has published it), cached per leader id for leaderHintTTL:
// most calls cost a read of Raft's leader.
func (s *Server) leader() (id, addr string) {
	id, _ = s.node.Leader()
	if id == "" {
		return "", ""
	}
	now := time.Now()
	if h := s.hint.Load(); h != nil && h.id == id && now.Before(h.until) {
		return id, h.addr
	}
	addr = s.apiAddr
	if id != s.id {
		addr = ""
		for _, c := range s.store().Snapshot().Controllers() {
			if c.ID == id {
				addr = c.APIAddr
				break
			}
		}
		if addr == "" {
			return id, "" // not published yet: look again next time
		}
	}
	s.hint.Store(&leaderHint{id: id, addr: addr, until: now.Add(leaderHintTTL)})
	return id, addr
}

// leaderAddr is the leader's API address for hdrLeader ("" when unknown).
func (s *Server) leaderAddr() string {
	_, addr := s.leader()
	return addr
}

// withLeaderHint sets hdrLeader on every answer of next.
func (s *Server) withLeaderHint(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if addr := s.leaderAddr(); addr != "" {
			w.Header().Set(hdrLeader, addr)
		}
		next.ServeHTTP(w, r)
	})
}

var errNoLeader = errors.New("no leader elected; retry")

// mode says where a request is served.
type mode int

const (
	local    mode = iota // on any controller, from its replica
	read                 // linearizable: on the leader after a read barrier (?stale=true: local)
	write                // on the leader
	onLeader             // on the leader, which alone holds the state it reads (like write)
)

// access says who may call a route.
type access int

const (
	anyone access = iota
	user
	admin
	agent
	controller
)

// caller is the authenticated client of a request.
type caller struct {
	user       *api.User // user and admin routes
	node       string    // agent routes: the node name
	serial     string    // agent routes: the certificate's serial (canonical hex)
	controller string    // controller routes
}

func (c *caller) admin() bool { return c.user != nil && c.user.Admin }

// sees reports whether a user caller may see job j: their own, or any
// for an admin.
func (c *caller) sees(j *api.Job) bool { return c.admin() || j.User == c.user.Name }

// bearer is the request's bearer token ("" without one) and whether the
// Authorization header has the Bearer scheme.
func bearer(r *http.Request) (string, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return strings.TrimSpace(tok), ok
}

type handler func(w http.ResponseWriter, r *http.Request, c *caller) error

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, m mode, a access, fn handler) {
		mux.Handle(pattern, s.wrap(m, a, fn))
	}
	h("GET /v1/cluster/ca", local, anyone, s.handleCA)
	h("POST /v1/join", write, anyone, s.handleJoin)
	h("POST /v1/cluster/controller", write, controller, s.handleSetController)
	h("POST /v1/cluster/chain", write, controller, s.handleSetChain) // anchor.go

	h("POST /v1/jobs", write, user, s.handleSubmit)
	h("GET /v1/jobs", read, user, s.handleListJobs)
	h("GET /v1/jobs/{id}", read, user, s.handleGetJob)
	h("POST /v1/jobs/cancel", write, user, s.handleCancel)
	h("POST /v1/jobs/action", write, user, s.handleJobAction)

	h("GET /v1/nodes", read, user, s.handleNodes)
	h("POST /v1/nodes/update", write, admin, s.handleNodeUpdate)
	h("GET /v1/status", read, user, s.handleStatus)
	h("POST /v1/users", write, admin, s.handleAddUser)
	h("GET /v1/users", read, admin, s.handleListUsers)

	h("POST /v1/agent/register", write, agent, s.handleRegister)
	h("POST /v1/agent/heartbeat", write, agent, s.handleHeartbeat)
	h("GET /v1/agent/work", local, agent, s.handleWork)
	h("POST /v1/agent/report", write, agent, s.handleReport)

	h("POST /v1/attest/enroll", write, anyone, s.handleEnroll)
	h("POST /v1/attest/activate", write, anyone, s.handleActivate)
	h("POST /v1/attest/nonce", write, agent, s.handleAttestNonce)
	h("POST /v1/attest/quote", write, agent, s.handleAttestQuote)
	h("GET /v1/attest/policy", read, admin, s.handleGetPolicy)
	h("PUT /v1/attest/policy", write, admin, s.handlePutPolicy)
	h("POST /v1/attest/policy/digests", write, admin, s.handleAddDigest)
	h("GET /v1/audit", read, admin, s.handleAudit)
	h("POST /v1/nodes/approve", write, admin, s.handleApproveEK)
	h("POST /v1/nodes/revoke", write, admin, s.handleRevokeNode)
	h("GET /v1/nodes/{name}/attest-log", onLeader, admin, s.handleAttestLog)

	h("GET /v1/accounting", read, user, s.handleAccounting)
	h("POST /v1/accounting", write, admin, s.handleChangeAccounting)
	h("GET /v1/priorities", read, user, s.handlePriorities)
	h("GET /v1/shares", read, user, s.handleShares)
	h("GET /v1/schedconfig", read, user, s.handleSchedConfig)
	h("GET /v1/reservations", read, user, s.handleReservations)
	h("POST /v1/reservations", write, admin, s.handleChangeReservation)

	// Job steps (srun): the step routes of a job authenticate themselves,
	// since they also take the job's credential.
	h("POST /v1/jobs/{id}/steps", write, anyone, s.handleCreateStep)
	h("GET /v1/jobs/{id}/steps/{step}", read, anyone, s.handleGetStep)
	h("POST /v1/jobs/{id}/steps/{step}/cancel", write, anyone, s.handleCancelStep)
	h("GET /v1/steps", read, user, s.handleListSteps)
	h("GET /v1/agent/steps", local, agent, s.handleAgentSteps)
	h("POST /v1/agent/step-report", write, agent, s.handleStepReport)

	// Usage ledger (acct.go).
	h("GET /v1/acct/records", read, user, s.handleAcctRecords)
	h("GET /v1/acct/epochs", read, user, s.handleAcctEpochs)
	h("GET /v1/acct/epochs/{n}", read, admin, s.handleAcctEpoch)
	h("GET /v1/acct/proof", read, user, s.handleAcctProof)
	h("GET /v1/acct/prices", read, user, s.handleAcctPrices)
	h("POST /v1/acct/prices", write, admin, s.handleSetAcctPrices)
	h("GET /v1/acct/statement", read, user, s.handleAcctStatement)
	h("POST /v1/acct/settlement", write, admin, s.handleAcctSettlement)

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errorf(http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return s.withLeaderHint(mux)
}

// wrap runs a route: forward it to the leader if it must run there,
// authenticate the caller, then call fn.
func (s *Server) wrap(m mode, a access, fn handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, name := pki.PeerRole(r.TLS)
		if role != pki.OUController {
			r.Header.Del(hdrForwarded)
			r.Header.Del(hdrAgent)
			r.Header.Del(hdrAgentSerial)
		}
		switch m {
		case write, onLeader:
			if !s.node.IsLeader() {
				s.forward(w, r, role, name)
				return
			}
			if !s.leading.Load() {
				// A new leader may not have applied the last term's
				// entries yet; handlers validate against the state.
				if err := s.node.ReadBarrier(r.Context()); err != nil {
					s.writeError(w, r, err)
					return
				}
			}
		case read:
			if stale, _ := strconv.ParseBool(r.URL.Query().Get("stale")); stale {
				break
			}
			if !s.node.IsLeader() {
				s.forward(w, r, role, name)
				return
			}
			if err := s.node.ReadBarrier(r.Context()); err != nil {
				s.writeError(w, r, err)
				return
			}
		}
		c, err := s.authenticate(r, a, role, name)
		var he *httpError
		if err != nil && m == read && errors.As(err, &he) && he.status == http.StatusUnauthorized &&
			!s.node.IsLeader() && r.Header.Get(hdrForwarded) == "" {
			// A follower serving a stale read may not have the user
			// created a moment ago yet: let the leader judge the token.
			s.forward(w, r, role, name)
			return
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := fn(w, r, c); err != nil {
			s.writeError(w, r, err)
		}
	})
}

func (s *Server) authenticate(r *http.Request, a access, role, name string) (*caller, error) {
	switch a {
	case anyone:
		return &caller{}, nil
	case user, admin:
		tok, ok := bearer(r)
		if !ok || tok == "" {
			return nil, errorf(http.StatusUnauthorized, "authentication required: send Authorization: Bearer <token>")
		}
		snap := s.store().Snapshot()
		u, err := s.auth.Authenticate(r.Context(), tok, snap.UserByTokenID)
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil, err
			}
			return nil, errorf(http.StatusUnauthorized, "invalid token")
		}
		if a == admin && !u.Admin {
			return nil, errorf(http.StatusForbidden, "permission denied: administrators only")
		}
		return &caller{user: u}, nil
	case agent:
		var node, serial string
		switch {
		case role == pki.OUAgent:
			node, serial = name, r.TLS.PeerCertificates[0].SerialNumber.Text(16)
		case role == pki.OUController && r.Header.Get(hdrAgent) != "":
			node, serial = r.Header.Get(hdrAgent), r.Header.Get(hdrAgentSerial)
		default:
			return nil, errorf(http.StatusForbidden, "agent routes need an agent client certificate")
		}
		serial, _ = raftstore.CanonicalSerial(serial)
		if err := s.checkAgentCert(r.Context(), node, serial); err != nil {
			return nil, err
		}
		return &caller{node: node, serial: serial}, nil
	case controller:
		if role == pki.OUController {
			return &caller{controller: name}, nil
		}
		return nil, errorf(http.StatusForbidden, "controller routes need a controller client certificate")
	}
	return nil, errorf(http.StatusInternalServerError, "unknown access class")
}

// leaderAPI returns the API address of the current leader.
func (s *Server) leaderAPI() (id, addr string, err error) {
	id, _ = s.node.Leader()
	if id == "" {
		return "", "", errNoLeader
	}
	for _, c := range s.store().Snapshot().Controllers() {
		if c.ID == id && c.APIAddr != "" {
			return id, c.APIAddr, nil
		}
	}
	return id, "", errorf(http.StatusServiceUnavailable, "leader %s has not published its API address yet; retry", id)
}

// forward proxies a request to the leader, passing on the agent identity
// that the TLS connection to this controller proved.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, role, name string) {
	if r.Header.Get(hdrForwarded) != "" {
		// Leadership moved while the request was in flight: let the
		// client retry rather than bounce between controllers.
		s.writeError(w, r, errorf(http.StatusServiceUnavailable, "not the leader; retry"))
		return
	}
	leaderID, addr := s.leader()
	switch {
	case leaderID == "":
		s.writeError(w, r, errNoLeader)
		return
	case leaderID == s.id:
		s.writeError(w, r, errorf(http.StatusServiceUnavailable, "leadership is changing; retry"))
		return
	case addr == "":
		s.writeError(w, r, errorf(http.StatusServiceUnavailable, "leader %s has not published its API address yet; retry", leaderID))
		return
	}
	target := &url.URL{Scheme: "https", Host: addr}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = addr
			pr.Out.Header.Set(hdrForwarded, s.id)
			if role == pki.OUAgent {
				pr.Out.Header.Set(hdrAgent, name)
				pr.Out.Header.Set(hdrAgentSerial, r.TLS.PeerCertificates[0].SerialNumber.Text(16))
			}
		},
		Transport:  s.peerTransport,
		BufferPool: proxyBuffers,
		ModifyResponse: func(resp *http.Response) error {
			// The leader's own word replaces this member's (the proxy
			// adds the answer's headers to those already set).
			if resp.Header.Get(hdrLeader) != "" {
				w.Header().Del(hdrLeader)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.writeError(w, r, errorf(http.StatusServiceUnavailable, "forwarding to leader %s: %v", leaderID, err))
		},
	}
	proxy.ServeHTTP(w, r)
}

func (s *Server) handleCA(w http.ResponseWriter, r *http.Request, _ *caller) error {
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, err := w.Write(s.ca.CertPEM)
	return err
}

// agentCertLag bounds how long a follower waits for its replica to catch
// up with a certificate the leader has just issued.
const agentCertLag = 2 * time.Second

// checkAgentCert refuses a revoked agent certificate and, for a node
// admitted on TPM evidence, any certificate but the one issued with its
// last verdict: renewals supersede older certificates without revoking
// them. Expired certificates never get here (TLS refuses them).
func (s *Server) checkAgentCert(ctx context.Context, node, serial string) error {
	st := s.store()
	deadline := time.Now().Add(agentCertLag)
	for {
		snap := st.Snapshot()
		superseded, err := agentCertError(snap, node, serial)
		if err == nil || !superseded || s.node.IsLeader() || !time.Now().Before(deadline) {
			return err
		}
		// A follower may not have applied the renewal that issued this
		// certificate yet.
		wctx, cancel := context.WithDeadline(ctx, deadline)
		_, werr := st.WaitForIndex(wctx, snap.Index())
		cancel()
		if werr != nil {
			return err
		}
	}
}

// agentCertError is checkAgentCert's verdict on one state. superseded is
// true when the certificate is refused only for not being the node's
// current one, which a newer state may change.
func agentCertError(snap *raftstore.Snapshot, node, serial string) (superseded bool, err error) {
	if serial != "" && snap.CertRevoked(serial) {
		return false, errorf(http.StatusUnauthorized, "%s: certificate %s of node %s is revoked; enroll again", codeCertRevoked, serial, node)
	}
	// A node whose current certificate was revoked has no current one.
	if n := snap.Node(node); trustedNode(n) && (serial == "" || serial != n.CertSerial) {
		return true, errorf(http.StatusUnauthorized, "%s: certificate %s is not node %s's current one; use the newest or enroll again",
			codeCertSuperseded, serial, node)
	}
	return false, nil
}

// proxyBuffers lends forward's proxies their copy buffers, which they
// would otherwise allocate (32 KiB) per request.
var proxyBuffers = &bufferPool{}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
