package gateway

import (
	"net/http"
	"strings"

	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/web"
)

// signupData is the data of signup.html.
type signupData struct {
	CSRF, Invite, Username, Email, Error string
	MinLength                            int
	Closed                               bool
}

func (s *Server) renderSignup(w http.ResponseWriter, r *http.Request, status int, d signupData) {
	id := s.opts.Identity
	d.CSRF = s.csrfToken(w, r)
	d.MinLength = s.cfg.MultiUser.Auth.Password.MinLength
	switch id.Registration() {
	case identity.RegisterOpen:
	case identity.RegisterInvite:
		d.Closed = d.Invite == ""
	default:
		d.Closed = true
	}
	s.render(w, status, "signup.html", web.Page{Title: "Create your account", Data: d})
}

func (s *Server) handleSignupPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, _ := s.principal(r); p != nil {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		invite := r.URL.Query().Get("invite")
		if len(invite) > 128 {
			invite = ""
		}
		s.renderSignup(w, r, http.StatusOK, signupData{Invite: invite})
	})
}

func (s *Server) handleSignup() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			s.fail(w, r, http.StatusBadRequest, "bad_form", "the sign-up form could not be read")
			return
		}
		d := signupData{
			Invite:   r.PostFormValue("invite"),
			Username: strings.TrimSpace(r.PostFormValue("username")),
			Email:    strings.TrimSpace(r.PostFormValue("email")),
		}
		if !s.checkCSRF(r) {
			d.Error = "Your sign-up form expired or your browser blocks cookies. Please try again."
			s.renderSignup(w, r, http.StatusForbidden, d)
			return
		}
		addr, _, _ := s.clientInfo(r)
		attempt, wait := s.opts.Throttle.Begin(addr)
		if attempt == nil {
			retryAfter(w, wait)
			d.Error = "Too many attempts from your address. Try again in " + wait.String() + "."
			s.renderSignup(w, r, http.StatusTooManyRequests, d)
			return
		}
		pw := r.PostFormValue("password")
		u, err := s.opts.Identity.Register(r.Context(),
			identity.NewUser{Username: d.Username, Email: d.Email, Password: pw}, d.Invite)
		if err != nil {
			attempt.Failed()
			if identity.CodeOf(err) == identity.CodeUnavailable {
				s.log.Error("sign-up failed", "error", err)
			}
			d.Error = loginMessage(err, true)
			s.renderSignup(w, r, statusOf(err), d)
			return
		}
		attempt.Succeeded()
		s.log.Info("user registered", "user", u.Username, "client", addr)
		res, err := s.login(w, r, u.Username, pw)
		if err != nil {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		}
		s.setSessionCookie(w, r, res.CookieToken)
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
}
