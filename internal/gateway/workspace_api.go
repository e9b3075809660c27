package gateway

import (
	"net/http"

	"github.com/codehub-dev/codehub/internal/identity"
)

// handleMyWorkspace shows the user's own workspace: state, start progress,
// idle warning, use against the policy's limits.
func (s *Server) handleMyWorkspace() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, err := s.opts.Workspaces.Status(r.Context(), principalOf(r).User.ID)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	})
}

// handleKeepAlive is the idle warning's "keep working".
func (s *Server) handleKeepAlive() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.opts.Workspaces.KeepAlive(principalOf(r).User.ID)
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Server) handleStopMyWorkspace() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		if err := s.opts.Workspaces.Stop(r.Context(), p.User.ID); err != nil {
			s.writeError(w, r, &identity.Error{Code: identity.CodeUnavailable, Message: "the workspace could not be stopped", Err: err})
			return
		}
		s.log.Info("workspace stopped by its user", "user", p.User.Username)
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Server) handleRestartMyWorkspace() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		if err := s.opts.Workspaces.Restart(r.Context(), p.User.ID); err != nil {
			s.writeError(w, r, &identity.Error{Code: identity.CodeUnavailable, Message: "the workspace could not be restarted", Err: err})
			return
		}
		s.log.Info("workspace restarted by its user", "user", p.User.Username)
		w.WriteHeader(http.StatusNoContent)
	})
}

// signedOut tells the workspaces that a user may have no session left.
func (s *Server) signedOut(r *http.Request, userID string) {
	if s.opts.Workspaces == nil || s.opts.Identity == nil {
		return
	}
	ss, err := s.opts.Identity.UserSessions(r.Context(), userID)
	if err == nil && len(ss) == 0 {
		s.opts.Workspaces.SignedOut(r.Context(), userID)
	}
}
