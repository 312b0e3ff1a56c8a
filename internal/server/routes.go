package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/pki"
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
)

var errNoLeader = errors.New("no leader elected; retry")

// mode says where a request is served.
type mode int

const (
	local mode = iota // on any controller, from its replica
	read              // linearizable: on the leader after a read barrier (?stale=true: local)
	write             // on the leader
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
	controller string    // controller routes
}

func (c *caller) admin() bool { return c.user != nil && c.user.Admin }

type handler func(w http.ResponseWriter, r *http.Request, c *caller) error

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, m mode, a access, fn handler) {
		mux.Handle(pattern, s.wrap(m, a, fn))
	}
	h("GET /v1/cluster/ca", local, anyone, s.handleCA)
	h("POST /v1/join", write, anyone, s.handleJoin)
	h("POST /v1/cluster/controller", write, controller, s.handleSetController)

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

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errorf(http.StatusNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// wrap runs a route: forward it to the leader if it must run there,
// authenticate the caller, then call fn.
func (s *Server) wrap(m mode, a access, fn handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		role, name := pki.PeerRole(r.TLS)
		if role != pki.OUController {
			r.Header.Del(hdrForwarded)
			r.Header.Del(hdrAgent)
		}
		switch m {
		case write:
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
		h := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || strings.TrimSpace(tok) == "" {
			return nil, errorf(http.StatusUnauthorized, "authentication required: send Authorization: Bearer <token>")
		}
		snap := s.store().Snapshot()
		u, err := s.auth.Authenticate(r.Context(), strings.TrimSpace(tok), snap.UserByTokenID)
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
		if role == pki.OUAgent {
			return &caller{node: name}, nil
		}
		if role == pki.OUController {
			if n := r.Header.Get(hdrAgent); n != "" {
				return &caller{node: n}, nil
			}
		}
		return nil, errorf(http.StatusForbidden, "agent routes need an agent client certificate")
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
	leaderID, addr, err := s.leaderAPI()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if leaderID == s.id {
		s.writeError(w, r, errorf(http.StatusServiceUnavailable, "leadership is changing; retry"))
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
			}
		},
		Transport: s.peerTransport,
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
