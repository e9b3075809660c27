package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/gorilla/websocket"
	"time"

	"github.com/codehub-dev/codehub/internal/auth"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/codehub-dev/codehub/internal/web"
)

// anonymous is who every request comes from when auth is "none".
var anonymous = &identity.Principal{
	User:    &user.User{ID: auth.SingleUserID, Username: auth.SingleUserID, Roles: []string{user.RoleAdmin}, Active: true},
	Session: &session.Session{UserID: auth.SingleUserID},
}

// handleIDE authenticates the request and forwards it to the caller's own
// workspace. The workspace is chosen from the session alone, never from the
// path or a header the client controls.
func (s *Server) handleIDE() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if agentapi.IsAgentPath(r.URL) {
			// The workspace agent's own endpoints are the gateway's to call,
			// never a browser's.
			s.fail(w, r, http.StatusNotFound, "not_found", "not found")
			return
		}
		p := anonymous
		if s.opts.Identity != nil {
			var err error
			p, err = s.principal(r)
			if err != nil {
				s.log.Error("session lookup", "error", err)
				s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "sessions are unavailable right now")
				return
			}
			if p == nil {
				s.unauthenticated(w, r)
				return
			}
		}
		if s.opts.Workspaces != nil {
			limit := s.opts.Workspaces.ConnectionLimit(r.Context(), p.User.ID)
			release, ok := s.limits.acquire(p.User.ID, limit)
			if !ok {
				s.record(r, audit.Event{EventType: audit.QuotaExceeded, UserID: p.User.ID, Username: p.User.Username,
					Status: audit.StatusFailure, Metadata: map[string]any{"resource": "connections", "limit": limit}})
				w.Header().Set("Retry-After", "5")
				s.fail(w, r, http.StatusTooManyRequests, "too_many_connections",
					"too many open connections for your account; close some editor tabs and try again")
				return
			}
			defer release()
		} else if release, ok := s.limits.acquire("", 0); ok {
			defer release()
		} else {
			s.fail(w, r, http.StatusServiceUnavailable, "too_many_connections", "the gateway is at its connection limit")
			return
		}
		target, err := s.opts.Upstreams.Target(r, p)
		if errors.Is(err, ErrStarting) {
			s.starting(w, r, p)
			return
		}
		if errors.Is(err, ErrStopped) {
			s.fail(w, r, http.StatusServiceUnavailable, "workspace_stopped",
				"your workspace is stopped; reload the page to start it")
			return
		}
		if err != nil {
			s.log.Error("find workspace", "user", p.User.Username, "error", err)
			s.fail(w, r, http.StatusBadGateway, "workspace_unavailable", "your workspace is not reachable right now")
			return
		}
		s.auditAccess(r, p)
		addr, fwd, proto := s.clientInfo(r)
		s.proxy.Serve(w, r, target, proxy.Client{Owner: p.Session.ID, Addr: addr.String(), ForwardedFor: fwd, Proto: proto})
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

// starting tells the user the workspace is on its way, with what it is
// doing and their place in the start queue.
func (s *Server) starting(w http.ResponseWriter, r *http.Request, p *identity.Principal) {
	retryAfter(w, 2*time.Second)
	phase, pos, failure := "Your editor is starting.", 0, ""
	if s.opts.Workspaces != nil && p != nil {
		phase, pos, failure = s.opts.Workspaces.Progress(p.User.ID)
	}
	if wantsHTML(r) {
		h := w.Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		detail := "This page reloads by itself."
		if pos > 0 {
			detail = fmt.Sprintf("You are number %d in line. This page reloads by itself.", pos)
		}
		if failure != "" {
			detail = "The last attempt failed: " + failure
		}
		s.render(w, http.StatusServiceUnavailable, "message.html", web.Page{
			Title: "Starting your workspace", RefreshSeconds: 1,
			Data: message{Message: phase, Detail: detail, Progress: true},
		})
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]any{
		"code": "workspace_starting", "message": "the workspace is starting; retry shortly",
		"phase": phase, "queuePosition": pos,
	}})
}

// auditAccess records what the gateway can see of a person's work: editor
// connections (the remote and terminal channels are WebSockets) and files
// read through code-server's resource route.
func (s *Server) auditAccess(r *http.Request, p *identity.Principal) {
	if s.opts.Identity == nil || !s.opts.Identity.MultiUser() {
		return
	}
	switch {
	case websocket.IsWebSocketUpgrade(r):
		s.record(r, audit.Event{EventType: audit.WorkspaceConnect, UserID: p.User.ID, Username: p.User.Username,
			Metadata: map[string]any{"path": r.URL.Path, "sessionId": p.Session.ID}})
	case strings.HasSuffix(r.URL.Path, "/vscode-remote-resource"):
		s.record(r, audit.Event{EventType: audit.FileAccess, UserID: p.User.ID, Username: p.User.Username,
			Metadata: map[string]any{"path": truncate(r.URL.Query().Get("path"), 1024), "method": r.Method}})
	}
}
