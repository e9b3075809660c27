package gateway

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/throttle"
	"github.com/codehub-dev/codehub/internal/web"
)

const (
	csrfCookie = "codehub_csrf"
	csrfField  = "csrf"
	// deviceCookie trusts a browser that signed in before, for the name
	// it signed in with (see internal/lockout).
	deviceCookie = "codehub_device"
	// maxFormBytes bounds a login form; a password longer than this is
	// not a password.
	maxFormBytes = 16 * 1024
)

// loginData is the data of login.html.
type loginData struct {
	CSRF, To, Error, Username, Hint string
	AskUsername, CanSignUp          bool
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
	id := s.opts.Identity
	d.AskUsername = id.AskUsername()
	d.CanSignUp = id.MultiUser() && id.Registration() == identity.RegisterOpen
	if !d.AskUsername && d.Hint == "" && s.cfg.Password == "" && s.cfg.HashedPassword == "" {
		d.Hint = "The password was generated when codehub started: see its output, or the file " +
			"\"password\" in its data directory."
	}
	s.render(w, status, "login.html", web.Page{Title: "Sign in", Data: d})
}

func (s *Server) handleLoginPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to := safeRedirect(r.URL.Query().Get("to"))
		if p, _ := s.principal(r); p != nil {
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		s.renderLogin(w, r, http.StatusOK, loginData{To: to})
	})
}

// loginMessage turns a sign-in failure into what the page says.
func loginMessage(err error, askUsername bool) string {
	var ie *identity.Error
	if errors.As(err, &ie) {
		switch ie.Code {
		case identity.CodeInvalidCredentials:
			if !askUsername {
				return "Wrong password."
			}
			return "Wrong username or password."
		case identity.CodeUnavailable:
			return "Sign-in is unavailable right now. Please try again shortly."
		}
		return strings.ToUpper(ie.Message[:1]) + ie.Message[1:] + "."
	}
	return "Sign-in is unavailable right now. Please try again shortly."
}

func (s *Server) handleLogin() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			s.fail(w, r, http.StatusBadRequest, "bad_form", "the sign-in form could not be read")
			return
		}
		to := safeRedirect(r.PostFormValue("to"))
		username := strings.TrimSpace(r.PostFormValue("username"))
		if !s.checkCSRF(r) {
			s.log.Warn("login refused: missing or wrong CSRF token", "client", r.RemoteAddr)
			s.renderLogin(w, r, http.StatusForbidden, loginData{To: to, Username: username,
				Error: "Your sign-in form expired or your browser blocks cookies. Please try again."})
			return
		}
		res, err := s.login(w, r, username, r.PostFormValue("password"))
		if err != nil {
			status := statusOf(err)
			s.renderLogin(w, r, status, loginData{To: to, Username: username,
				Error: loginMessage(err, s.opts.Identity.AskUsername())})
			return
		}
		s.setSessionCookie(w, r, res.CookieToken)
		if res.Notice != "" {
			http.Redirect(w, r, "/login/notice?to="+url.QueryEscape(to), http.StatusSeeOther)
			return
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
	})
}

// login runs one browser sign-in attempt through the throttle, records it
// and logs failures, and gives the browser a device cookie when it
// succeeds. Throttling and lockout set Retry-After.
func (s *Server) login(w http.ResponseWriter, r *http.Request, username, pw string) (*identity.LoginResult, error) {
	c, attempt, err := s.beginLogin(w, r, username)
	if err != nil {
		return nil, err
	}
	res, err := s.opts.Identity.Login(r.Context(), username, pw, c)
	if err = s.endLogin(w, r, attempt, username, err); err != nil {
		return nil, err
	}
	s.setDeviceCookie(w, r, res.Device, res.DeviceExpires)
	s.opts.Metrics.SessionsCreated.Inc()
	s.log.Info("login", "user", res.Principal.User.Username, "client", c.IP)
	return res, nil
}

// beginLogin says who a sign-in attempt comes from and takes its tokens
// of the throttle. A browser whose device cookie is trusted for the name
// is not throttled by address: its own failures lock it out of that name
// (see internal/lockout). A refused attempt's error is returned with
// Retry-After set; it does not depend on the name.
func (s *Server) beginLogin(w http.ResponseWriter, r *http.Request, username string) (identity.Client, *throttle.Attempt, error) {
	addr, _, _ := s.clientInfo(r)
	c := identity.Client{IP: addr.String(), UserAgent: r.UserAgent()}
	if dc, err := r.Cookie(deviceCookie); err == nil {
		c.Device = dc.Value
	}
	if s.opts.Identity.TrustedDevice(c.Device, username) {
		return c, nil, nil
	}
	attempt, wait := s.opts.Throttle.Begin(addr)
	if attempt == nil {
		s.opts.Metrics.LoginAttempts.WithLabelValues("throttled").Inc()
		s.log.Warn("login throttled", "client", addr, "retry_after", wait)
		s.record(r, audit.Event{EventType: audit.Suspicious, Username: truncate(username, 128), Status: audit.StatusFailure,
			Metadata: map[string]any{"reason": "login_throttled", "retryAfterSeconds": int(wait.Seconds())}})
		retryAfter(w, wait)
		return c, nil, &identity.Error{Code: codeThrottled, RetryAfter: wait,
			Message: "too many failed sign-in attempts from your address: try again in " + wait.String()}
	}
	return c, attempt, nil
}

// endLogin settles the throttle, the metrics and the log of an attempt
// that got an answer (err nil for a success), and returns err.
func (s *Server) endLogin(w http.ResponseWriter, r *http.Request, attempt *throttle.Attempt, username string, err error) error {
	addr, _, _ := s.clientInfo(r)
	if err == nil {
		attempt.Succeeded()
		s.opts.Metrics.LoginAttempts.WithLabelValues("success").Inc()
		return nil
	}
	attempt.Failed()
	s.opts.Metrics.LoginAttempts.WithLabelValues("failure").Inc()
	code := identity.CodeOf(err)
	if code == identity.CodeUnavailable {
		s.log.Error("login failed: technical error", "client", addr, "error", err)
	} else {
		s.log.Warn("login failed", "reason", code, "client", addr, "username", username, "user_agent", r.UserAgent())
	}
	var ie *identity.Error
	if errors.As(err, &ie) && ie.RetryAfter > 0 {
		retryAfter(w, ie.RetryAfter)
	}
	return err
}

// setDeviceCookie gives the browser its device cookie, when there is one.
func (s *Server) setDeviceCookie(w http.ResponseWriter, r *http.Request, value string, expires time.Time) {
	if value == "" {
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: deviceCookie, Value: value, Path: "/", Expires: expires, MaxAge: int(time.Until(expires).Seconds()),
		HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteStrictMode,
	})
}

// handleNotice shows a signed-in person, once, what they should know
// about their sign-in (that it ended their least recently used session),
// then sends them on: reloading the page, as it does by itself, goes to
// where they were going.
func (s *Server) handleNotice() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to := safeRedirect(r.URL.Query().Get("to"))
		p, err := s.principal(r)
		if err != nil || p == nil {
			http.Redirect(w, r, "/login?to="+url.QueryEscape(to), http.StatusSeeOther)
			return
		}
		notice, err := s.opts.Identity.TakeNotice(r.Context(), p.Session.ID)
		if err != nil {
			s.log.Warn("read a sign-in notice", "error", err)
		}
		if notice == "" {
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		s.render(w, http.StatusOK, "message.html", web.Page{
			Title: "Signed in", RefreshSeconds: noticeSeconds,
			Data: message{Message: notice, Detail: "Your sessions are listed on your account page, where you can end them. " +
				"This page goes on by itself.", Link: to, LinkText: "Continue"},
		})
	})
}

// noticeSeconds is how long the notice stays before the page goes on.
const noticeSeconds = 15

// setSessionCookie gives the browser its session token.
func (s *Server) setSessionCookie(w http.ResponseWriter, r *http.Request, token string) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cfg.Session.CookieName, Value: token, Path: "/",
		MaxAge: int(s.sessionTTL().Seconds()), HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) sessionTTL() time.Duration {
	if s.cfg.DeploymentMode == "multi" {
		return s.cfg.MultiUser.Auth.Session.TTL.D()
	}
	return s.cfg.Session.TTL.D()
}

type principalKey struct{}

// principal returns who the request comes from: the session cookie, or an
// API access token. nil when neither names a live session.
func (s *Server) principal(r *http.Request) (*identity.Principal, error) {
	if p, ok := r.Context().Value(principalKey{}).(*identity.Principal); ok {
		return p, nil
	}
	id := s.opts.Identity
	if c, err := r.Cookie(s.cfg.Session.CookieName); err == nil && c.Value != "" {
		p, err := id.FromCookie(r.Context(), c.Value)
		if p != nil || err != nil {
			return p, err
		}
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return id.FromBearer(r.Context(), strings.TrimSpace(h[7:]))
	}
	return nil, nil
}

func (s *Server) clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: s.cfg.Session.CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secureCookies(r), SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) handleLogoutPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, _ := s.principal(r); p == nil {
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
		p, err := s.principal(r)
		if err != nil {
			s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "sign-out is unavailable right now")
			return
		}
		if p != nil {
			if err := s.opts.Identity.Logout(r.Context(), p.Session.ID); err != nil {
				s.log.Error("logout", "error", err)
				s.fail(w, r, http.StatusServiceUnavailable, "unavailable", "sign-out is unavailable right now")
				return
			}
			s.log.Info("logout", "user", p.User.Username)
			s.signedOut(r, p.User.ID)
		}
		s.clearSessionCookie(w, r)
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
}
