package server

import (
	"context"
	"crypto/sha256"
	"net"
	"net/http"
	"time"

	"github.com/stockade-hpc/stockade/api"
	"github.com/stockade-hpc/stockade/internal/pki"
)

// handleJoin admits a member: the token's secret must match a stored
// Argon2id hash, whose role decides what is issued. Agents get a client
// certificate; controllers get a controller certificate, the CA key and
// the join token hashes, and are added to Raft once they listen.
func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request, _ *caller) error {
	var req api.JoinRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	tok, err := pki.ParseJoinToken(req.Token)
	if err != nil {
		return errorf(http.StatusForbidden, "token: invalid join token")
	}
	if tok.CAHash != sha256.Sum256(s.ca.Cert.Raw) {
		return errorf(http.StatusForbidden, "token: join token is for another cluster")
	}
	if err := pki.ValidName(req.Name); err != nil {
		return badRequest("name: %s", err)
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
	switch role {
	case pki.OUAgent:
		if req.RaftAddr != "" {
			return badRequest("raft_addr: an agent join token cannot admit a controller")
		}
		if resp.Certificate, err = s.ca.SignCSR(req.CSR, pki.OUAgent, req.Name, nil); err != nil {
			return badRequest("%s", err)
		}
	case pki.OUController:
		var hosts []string
		for _, a := range []struct{ field, v string }{{"raft_addr", req.RaftAddr}, {"api_addr", req.APIAddr}} {
			h, _, err := net.SplitHostPort(a.v)
			if err != nil || h == "" {
				return badRequest("%s: controllers must give a host:port, not %q", a.field, a.v)
			}
			hosts = append(hosts, h)
		}
		if resp.Certificate, err = s.ca.SignCSR(req.CSR, pki.OUController, req.Name, hosts); err != nil {
			return badRequest("%s", err)
		}
		if resp.CAKey, err = s.ca.KeyPEM(); err != nil {
			return err
		}
		if resp.JoinTokens, err = s.tokens.JSON(); err != nil {
			return err
		}
		s.startAdmit(req.Name, req.RaftAddr, req.APIAddr)
	}
	s.log.Info("member joined", "role", role, "name", req.Name, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, resp)
	return nil
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
