package gateway

import (
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/codehub-dev/codehub/internal/auth"
	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/web"
)

// anonymous is the session of every request when auth is "none".
var anonymous = &session.Session{ID: "", UserID: auth.SingleUserID}

// handleIDE authenticates the request and forwards it to the caller's own
// workspace. The workspace is chosen from the session alone, never from the
// path or a header the client controls.
func (s *Server) handleIDE() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess := anonymous
		if s.opts.Auth != nil {
			var err error
			sess, err = s.sessionFromRequest(r)
			if err != nil {
				s.log.Error("session lookup", "error", err)
				s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "sessions are unavailable right now")
				return
			}
			if sess == nil {
				s.unauthenticated(w, r)
				return
			}
		}
		target, err := s.opts.Upstreams.Target(r.Context(), sess)
		if errors.Is(err, ErrStarting) {
			s.starting(w, r)
			return
		}
		if err != nil {
			s.log.Error("find workspace", "user", sess.UserID, "error", err)
			s.fail(w, r, http.StatusBadGateway, "workspace_unavailable", "your workspace is not reachable right now")
			return
		}
		addr, fwd, proto := s.clientInfo(r)
		s.proxy.Serve(w, r, target, proxy.Client{Owner: sess.ID, Addr: addr.String(), ForwardedFor: fwd, Proto: proto})
	})
}

// unauthenticated sends browsers to the login page and tells API clients
// and scripts 401 in JSON.
func (s *Server) unauthenticated(w http.ResponseWriter, r *http.Request) {
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && wantsHTML(r) {
		http.Redirect(w, r, "/login?to="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
		return
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="codehub"`)
	writeJSONError(w, http.StatusUnauthorized, "unauthorized", "sign in first")
}

// starting tells the user the workspace is on its way.
func (s *Server) starting(w http.ResponseWriter, r *http.Request) {
	retryAfter(w, 2*time.Second)
	if wantsHTML(r) {
		h := w.Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		s.render(w, http.StatusServiceUnavailable, "message.html", web.Page{
			Title: "Starting your workspace", RefreshSeconds: 2,
			Data: message{Message: "Your editor is starting. This page reloads by itself.", Progress: true},
		})
		return
	}
	writeJSONError(w, http.StatusServiceUnavailable, "workspace_starting", "the workspace is starting; retry shortly")
}
