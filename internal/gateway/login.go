package gateway

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/codehub-dev/codehub/internal/auth"
	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/web"
)

const (
	csrfCookie = "codehub_csrf"
	csrfField  = "csrf"
	// maxFormBytes bounds a login form; a password longer than this is
	// not a password.
	maxFormBytes = 16 * 1024
	// activityEvery limits how often a session's last activity is written.
	activityEvery = time.Minute
)

// loginData is the data of login.html.
type loginData struct {
	CSRF, To, Error, Username, Hint string
	AskUsername                     bool
}

// csrfToken returns the form token bound to the browser's CSRF cookie,
// setting the cookie first if the browser has none.
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: tok, Path: "/", HttpOnly: true,
		Secure: s.secureCookies(r), SameSite: http.SameSiteStrictMode,
	})
	return tok
}

// checkCSRF compares the form's token with the cookie (double submit), in
// addition to the Origin / Sec-Fetch-Site check of CrossOriginProtection.
func (s *Server) checkCSRF(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || c.Value == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue(csrfField))) == 1
}

func (s *Server) secureCookies(r *http.Request) bool {
	if s.cfg.TLSEnabled() {
		return true
	}
	_, _, proto := s.clientInfo(r)
	return proto == "https"
}

func (s *Server) renderLogin(w http.ResponseWriter, r *http.Request, status int, d loginData) {
	d.CSRF = s.csrfToken(w, r)
	d.AskUsername = s.opts.Auth.AskUsername()
	if !d.AskUsername && d.Hint == "" && s.cfg.Password == "" && s.cfg.HashedPassword == "" {
		d.Hint = "The password was generated when codehub started: see its output, or the file " +
			"\"password\" in its data directory."
	}
	s.render(w, status, "login.html", web.Page{Title: "Sign in", Data: d})
}

func (s *Server) handleLoginPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to := safeRedirect(r.URL.Query().Get("to"))
		if sess, _ := s.sessionFromRequest(r); sess != nil {
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		s.renderLogin(w, r, http.StatusOK, loginData{To: to})
	})
}

func (s *Server) handleLogin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			s.fail(w, r, http.StatusBadRequest, "bad_form", "the sign-in form could not be read")
			return
		}
		to := safeRedirect(r.PostFormValue("to"))
		username := r.PostFormValue("username")
		if !s.checkCSRF(r) {
			s.log.Warn("login refused: missing or wrong CSRF token", "client", r.RemoteAddr)
			s.renderLogin(w, r, http.StatusForbidden, loginData{To: to, Username: username,
				Error: "Your sign-in form expired or your browser blocks cookies. Please try again."})
			return
		}
		addr, _, _ := s.clientInfo(r)
		attempt, wait := s.opts.Throttle.Begin(addr)
		if attempt == nil {
			s.opts.Metrics.LoginAttempts.WithLabelValues("throttled").Inc()
			s.log.Warn("login throttled", "client", addr, "retry_after", wait)
			retryAfter(w, wait)
			s.renderLogin(w, r, http.StatusTooManyRequests, loginData{To: to, Username: username,
				Error: "Too many failed sign-in attempts. Try again in " + wait.String() + "."})
			return
		}
		userID, err := s.opts.Auth.Authenticate(r.Context(), username, r.PostFormValue("password"))
		if err != nil {
			attempt.Failed()
			s.opts.Metrics.LoginAttempts.WithLabelValues("failure").Inc()
			if !errors.Is(err, auth.ErrBadCredentials) {
				s.log.Error("login failed: authenticator error", "client", addr, "error", err)
				s.renderLogin(w, r, http.StatusServiceUnavailable, loginData{To: to, Username: username,
					Error: "Sign-in is unavailable right now. Please try again shortly."})
				return
			}
			s.log.Warn("login failed: wrong credentials", "client", addr, "username", username,
				"user_agent", r.UserAgent())
			msg := "Wrong password."
			if s.opts.Auth.AskUsername() {
				msg = "Wrong username or password."
			}
			s.renderLogin(w, r, http.StatusUnauthorized, loginData{To: to, Username: username, Error: msg})
			return
		}
		attempt.Succeeded()
		if err := s.startSession(w, r, userID); err != nil {
			s.log.Error("create session", "error", err)
			s.renderLogin(w, r, http.StatusServiceUnavailable, loginData{To: to, Username: username,
				Error: "Sign-in is unavailable right now. Please try again shortly."})
			return
		}
		s.opts.Metrics.LoginAttempts.WithLabelValues("success").Inc()
		s.log.Info("login", "user", userID, "client", addr)
		http.Redirect(w, r, to, http.StatusSeeOther)
	})
}

// startSession creates a session for userID and sets its cookie.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, userID string) error {
	token, id, err := session.NewToken()
	if err != nil {
		return err
	}
	now := s.now()
	addr, _, _ := s.clientInfo(r)
	ttl := s.cfg.Session.TTL.D()
	sess := &session.Session{
		ID: id, UserID: userID, CreatedAt: now, ExpiresAt: now.Add(ttl), LastActivity: now,
		IPAddress: addr.String(), UserAgent: truncate(r.UserAgent(), 512),
	}
	if err := s.opts.Sessions.Set(r.Context(), sess); err != nil {
		return err
	}
	s.opts.Metrics.SessionsCreated.Inc()
	http.SetCookie(w, &http.Cookie{
		Name: s.cfg.Session.CookieName, Value: token, Path: "/",
		MaxAge: int(ttl.Seconds()), HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteLaxMode,
	})
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// sessionFromRequest returns the live session named by the request's
// cookie, or nil.
func (s *Server) sessionFromRequest(r *http.Request) (*session.Session, error) {
	c, err := r.Cookie(s.cfg.Session.CookieName)
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, nil
	}
	sess, err := s.opts.Sessions.Get(r.Context(), session.IDFromToken(c.Value))
	if errors.Is(err, session.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if now := s.now(); now.Sub(sess.LastActivity) > activityEvery {
		sess.LastActivity = now
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
		if err := s.opts.Sessions.Set(ctx, sess); err != nil {
			s.log.Warn("record session activity", "error", err)
		}
		cancel()
	}
	return sess, nil
}

func (s *Server) clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cfg.Session.CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) handleLogoutPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sess, _ := s.sessionFromRequest(r); sess == nil {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		s.render(w, http.StatusOK, "logout.html", web.Page{
			Title: "Sign out", Data: struct{ CSRF string }{s.csrfToken(w, r)},
		})
	})
}

func (s *Server) handleLogout() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil || !s.checkCSRF(r) {
			s.fail(w, r, http.StatusForbidden, "csrf", "the sign-out form expired; reload the page and try again")
			return
		}
		sess, err := s.sessionFromRequest(r)
		if err != nil {
			s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "sign-out is unavailable right now")
			return
		}
		if sess != nil {
			if err := s.opts.Sessions.Delete(r.Context(), sess.ID); err != nil {
				s.log.Error("delete session", "error", err)
				s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "sign-out is unavailable right now")
				return
			}
			n := s.opts.Conns.CloseOwner(sess.ID, proxy.CloseRevoked, "signed out")
			s.log.Info("logout", "user", sess.UserID, "closed_websockets", n)
		}
		s.clearSessionCookie(w, r)
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
}
