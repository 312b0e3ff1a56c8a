package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/pki"
)

// handleJoin admits a member: the token's secret must match a stored
// Argon2id hash, whose role decides what is issued. Agents get a client
// certificate; controllers get a controller certificate, the CA key, the
// anchoring key and the join token hashes, and are added to Raft once
// they listen.
func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request, _ *caller) error {
	var req api.JoinRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	tok, err := checkJoin(s.ca, &req)
	if err != nil {
		return err
	}
	// Argon2id takes 64 MiB per check: a few at a time.
	select {
	case s.joinSem <- struct{}{}:
	case <-r.Context().Done():
		return r.Context().Err()
	}
	role := s.tokens.Match(tok)
	<-s.joinSem
	if role == "" {
		s.log.Warn("join refused: invalid token", "name", req.Name, "remote", r.RemoteAddr)
		return errorf(http.StatusForbidden, "token: invalid join token")
	}
	resp := pki.JoinResponse{JoinResponse: api.JoinResponse{CACert: s.ca.CertPEM}}
	if resp.Certificate, err = signJoin(s.ca, &req, role); err != nil {
		return err
	}
	if role == pki.OUController {
		if resp.CAKey, err = s.ca.KeyPEM(); err != nil {
			return err
		}
		if resp.JoinTokens, err = s.tokens.JSON(); err != nil {
			return err
		}
		// Any controller may lead, and the leader anchors: it needs the
		// key. Missing only in a cluster made before anchoring existed.
		if resp.AnchorKey, err = os.ReadFile(s.path(fileAnchorKey)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		s.startAdmit(req.Name, req.RaftAddr, req.APIAddr)
	}
	s.log.Info("member joined", "role", role, "name", req.Name, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// checkJoin is handleJoin's validation of a request before its token is
// matched (Argon2id): the token must be for ca's cluster and the name
// valid. It returns the parsed token.
func checkJoin(ca *pki.CA, req *api.JoinRequest) (pki.JoinToken, error) {
	tok, err := pki.ParseJoinToken(req.Token)
	if err != nil {
		return pki.JoinToken{}, errorf(http.StatusForbidden, "token: invalid join token")
	}
	if tok.CAHash != sha256.Sum256(ca.Cert.Raw) {
		return pki.JoinToken{}, errorf(http.StatusForbidden, "token: join token is for another cluster")
	}
	if err := pki.ValidName(req.Name); err != nil {
		return pki.JoinToken{}, badRequest("name: %s", err)
	}
	return tok, nil
}

// signJoin is handleJoin's validation of a request whose token matched
// role, and the certificate (PEM) ca issues for it: an agent certificate,
// or a controller certificate for the hosts of its addresses. It issues
// nothing for another role.
func signJoin(ca *pki.CA, req *api.JoinRequest, role string) ([]byte, error) {
	switch role {
	case pki.OUAgent:
		if req.RaftAddr != "" {
			return nil, badRequest("raft_addr: an agent join token cannot admit a controller")
		}
		cert, err := ca.SignCSR(req.CSR, pki.OUAgent, req.Name, nil)
		if err != nil {
			return nil, badRequest("%s", err)
		}
		return cert, nil
	case pki.OUController:
		var hosts []string
		for _, a := range []struct{ field, v string }{{"raft_addr", req.RaftAddr}, {"api_addr", req.APIAddr}} {
			h, _, err := net.SplitHostPort(a.v)
			if err != nil || h == "" {
				return nil, badRequest("%s: controllers must give a host:port, not %q", a.field, a.v)
			}
			hosts = append(hosts, h)
		}
		cert, err := ca.SignCSR(req.CSR, pki.OUController, req.Name, hosts)
		if err != nil {
			return nil, badRequest("%s", err)
		}
		return cert, nil
	}
	return nil, nil
}

// startAdmit runs admitController unless it already runs for id.
func (s *Server) startAdmit(id, raftAddr, apiAddr string) {
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	if s.admitting[id] {
		return
	}
	s.admitting[id] = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.admitController(id, raftAddr, apiAddr)
		s.admitMu.Lock()
		delete(s.admitting, id)
		s.admitMu.Unlock()
	}()
}

// admitController adds a joined controller to Raft once its Raft port
// answers (adding it before would stall a one-member cluster, whose quorum
// becomes two), then records its addresses.
func (s *Server) admitController(id, raftAddr, apiAddr string) {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Minute)
	defer cancel()
	log := s.log.With("member", id, "raft", raftAddr)
	for {
		if !s.node.IsLeader() {
			log.Warn("lost leadership before adding the member; it must join again")
			return
		}
		var d net.Dialer
		dctx, dcancel := context.WithTimeout(ctx, time.Second)
		conn, err := d.DialContext(dctx, "tcp", raftAddr)
		dcancel()
		if err == nil {
			conn.Close()
			break
		}
		select {
		case <-ctx.Done():
			log.Warn("joined member never listened for Raft; not added")
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	for {
		actx, acancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.node.AddVoter(actx, id, raftAddr)
		if err == nil {
			err = s.setController(actx, id, raftAddr, apiAddr)
		}
		acancel()
		if err == nil {
			log.Info("member added to Raft")
			return
		}
		log.Warn("adding member to Raft", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		if !s.node.IsLeader() {
			return
		}
	}
}
