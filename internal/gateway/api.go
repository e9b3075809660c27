package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/gorilla/mux"
)

// maxJSONBytes bounds an API request body.
const maxJSONBytes = 64 * 1024

// apiHeaders marks API answers as data, never to be framed or sniffed.
func (s *Server) apiHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		s.hsts(h)
		next.ServeHTTP(w, r)
	})
}

// authed lets only signed-in callers through, with their principal in the
// request context.
func (s *Server) authed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.principal(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if p == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="codehub"`)
			writeJSONError(w, http.StatusUnauthorized, "unauthorized", "sign in first")
			return
		}
		ctx := context.WithValue(r.Context(), principalKey{}, p)
		actor := audit.ActorFrom(ctx)
		actor.UserID, actor.Username = p.User.ID, p.User.Username
		next.ServeHTTP(w, r.WithContext(audit.WithActor(ctx, actor)))
	})
}

func principalOf(r *http.Request) *identity.Principal {
	return r.Context().Value(principalKey{}).(*identity.Principal)
}

// decodeJSON reads a JSON request body into v, strictly: JSON content type,
// bounded size, no unknown fields, one value. The error is safe to show.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &identity.Error{Code: identity.CodeInvalidInput, Message: "send the request body as JSON (Content-Type: application/json)"}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		msg := "the request body is not valid JSON"
		switch {
		case errors.Is(err, errBodyTooSlow):
			return &identity.Error{Code: codeRequestTimeout, Message: "the request body arrived too slowly"}
		case errors.As(err, &mbe):
			msg = fmt.Sprintf("the request body is larger than %d bytes", maxJSONBytes)
		case errors.As(err, &se):
			msg = fmt.Sprintf("the request body is not valid JSON (at byte %d)", se.Offset)
		case errors.As(err, &te):
			msg = fmt.Sprintf("field %q must be a %s", te.Field, te.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			msg = "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
		case errors.Is(err, io.EOF):
			msg = "the request body is empty"
		}
		return &identity.Error{Code: identity.CodeInvalidInput, Message: msg}
	}
	if dec.More() {
		return &identity.Error{Code: identity.CodeInvalidInput, Message: "the request body holds more than one JSON value"}
	}
	return nil
}

func required(fields map[string]string) error {
	for name, v := range fields {
		if strings.TrimSpace(v) == "" {
			return &identity.Error{Code: identity.CodeInvalidInput, Message: fmt.Sprintf("%q is required", name)}
		}
	}
	return nil
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (s *Server) handleAPILogin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req loginRequest
		if err := decodeJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		if !s.opts.Identity.MultiUser() {
			s.writeError(w, r, &identity.Error{Code: identity.CodeNotFound, Message: "API tokens need multi-user mode"})
			return
		}
		if err := required(map[string]string{"username": req.Username, "password": req.Password}); err != nil {
			s.writeError(w, r, err)
			return
		}
		c, attempt, err := s.beginLogin(w, r, req.Username)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		pair, p, err := s.opts.Identity.LoginAPI(r.Context(), req.Username, req.Password, c)
		if err = s.endLogin(w, r, attempt, req.Username, err); err != nil {
			s.writeError(w, r, err)
			return
		}
		s.opts.Metrics.SessionsCreated.Inc()
		s.log.Info("API login", "user", p.User.Username, "client", c.IP)
		writeJSON(w, http.StatusOK, pair)
	})
}

func (s *Server) handleAPIRefresh() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := decodeJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := required(map[string]string{"refresh_token": req.RefreshToken}); err != nil {
			s.writeError(w, r, err)
			return
		}
		pair, err := s.opts.Identity.Refresh(r.Context(), req.RefreshToken)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, pair)
	})
}

func (s *Server) handleAPILogout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		if err := s.opts.Identity.Logout(r.Context(), p.Session.ID); err != nil {
			s.writeError(w, r, err)
			return
		}
		if p.Via == "cookie" {
			s.clearSessionCookie(w, r)
		}
		s.signedOut(r, p.User.ID)
		w.WriteHeader(http.StatusNoContent)
	})
}

type registerRequest struct {
	Username string `json:"username"`
	Email    string `json:"email"`
	Password string `json:"password"`
	Invite   string `json:"invite,omitempty"`
}

func (s *Server) handleAPIRegister() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req registerRequest
		if err := decodeJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := required(map[string]string{"username": req.Username, "email": req.Email, "password": req.Password}); err != nil {
			s.writeError(w, r, err)
			return
		}
		u, err := s.opts.Identity.Register(r.Context(),
			identity.NewUser{Username: req.Username, Email: req.Email, Password: req.Password}, req.Invite)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.log.Info("user registered", "user", u.Username, "role", u.Roles)
		writeJSON(w, http.StatusCreated, viewUser(u))
	})
}

// userView is a user as the API shows it.
type userView struct {
	ID          string         `json:"id"`
	Username    string         `json:"username"`
	Email       string         `json:"email"`
	Roles       []string       `json:"roles"`
	CreatedAt   time.Time      `json:"createdAt"`
	UpdatedAt   time.Time      `json:"updatedAt"`
	LastLogin   *time.Time     `json:"lastLogin"`
	IsActive    bool           `json:"isActive"`
	LockedUntil *time.Time     `json:"lockedUntil,omitempty"`
	Metadata    map[string]any `json:"metadata"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func viewUser(u *user.User) userView {
	md := u.Metadata
	if md == nil {
		md = map[string]any{}
	}
	v := userView{
		ID: u.ID, Username: u.Username, Email: u.Email, Roles: u.Roles, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt,
		LastLogin: timePtr(u.LastLogin), IsActive: u.Active, Metadata: md,
	}
	if u.Locked(time.Now()) {
		v.LockedUntil = timePtr(u.LockedUntil)
	}
	return v
}

// sessionView is a session as its owner sees it.
type sessionView struct {
	ID           string    `json:"id"`
	Kind         string    `json:"kind"` // browser or api
	CreatedAt    time.Time `json:"createdAt"`
	ExpiresAt    time.Time `json:"expiresAt"`
	LastActivity time.Time `json:"lastActivity"`
	IPAddress    string    `json:"ipAddress"`
	UserAgent    string    `json:"userAgent"`
	Current      bool      `json:"current"`
}

func viewSession(s *session.Session, current string) sessionView {
	kind := "browser"
	if s.RefreshHash != "" {
		kind = "api"
	}
	return sessionView{
		ID: s.ID, Kind: kind, CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt, LastActivity: s.LastActivity,
		IPAddress: s.IPAddress, UserAgent: s.UserAgent, Current: s.ID == current,
	}
}

func (s *Server) handleMe() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		writeJSON(w, http.StatusOK, struct {
			User    userView    `json:"user"`
			Session sessionView `json:"session"`
		}{viewUser(p.User), viewSession(p.Session, p.Session.ID)})
	})
}

func (s *Server) handleMySessions() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		ss, err := s.opts.Identity.UserSessions(r.Context(), p.User.ID)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out := make([]sessionView, len(ss))
		for i, x := range ss {
			out[i] = viewSession(x, p.Session.ID)
		}
		writeJSON(w, http.StatusOK, struct {
			Sessions []sessionView `json:"sessions"`
		}{out})
	})
}

func (s *Server) handleRevokeMySession() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		id := mux.Vars(r)["id"]
		if len(id) > 128 {
			s.writeError(w, r, &identity.Error{Code: identity.CodeNotFound, Message: "no such session"})
			return
		}
		if err := s.opts.Identity.RevokeSession(r.Context(), p.User.ID, id); err != nil {
			s.writeError(w, r, err)
			return
		}
		s.log.Info("session revoked by its user", "user", p.User.Username)
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleRevokeMySessions signs the user out everywhere else.
func (s *Server) handleRevokeMySessions() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		n, err := s.opts.Identity.RevokeUser(r.Context(), p.User.ID, p.Session.ID)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Revoked int `json:"revoked"`
		}{n})
	})
}

func (s *Server) handleChangePassword() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := principalOf(r)
		var req struct {
			Current string `json:"current_password"`
			New     string `json:"new_password"`
		}
		if err := decodeJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := required(map[string]string{"current_password": req.Current, "new_password": req.New}); err != nil {
			s.writeError(w, r, err)
			return
		}
		if !s.opts.Identity.MultiUser() {
			s.writeError(w, r, &identity.Error{Code: identity.CodeNotFound,
				Message: "the single-user password is set in the configuration"})
			return
		}
		if err := s.opts.Identity.ChangePassword(r.Context(), p, req.Current, req.New); err != nil {
			s.writeError(w, r, err)
			return
		}
		s.log.Info("password changed", "user", p.User.Username)
		w.WriteHeader(http.StatusNoContent)
	})
}
