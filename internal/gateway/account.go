package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/resources"
	"github.com/gorilla/mux"
)

// accountRoutes registers /account, every signed-in person's own page:
// their workspace, what it uses against their limits, their sessions and
// their password.
func (s *Server) accountRoutes(r *mux.Router) {
	get := []string{http.MethodGet, http.MethodHead}
	r.Handle("/account", s.dashHeaders(s.signedInPage(s.handleAccountPage()))).Methods(get...)
	post := func(path string, h http.Handler) {
		r.Handle(path, s.dashHeaders(s.csrf.Handler(s.signedInPage(h)))).Methods(http.MethodPost)
	}
	post("/account/password", s.handleAccountPassword())
	post("/account/sessions/{id}/revoke", s.dashAction("account", "/account", s.accountRevokeSession()))
	if s.opts.Workspaces != nil {
		post("/account/workspace/stop", s.dashAction("account", "/account", s.accountWorkspaceAction("stop")))
		post("/account/workspace/restart", s.dashAction("account", "/account", s.accountWorkspaceAction("restart")))
	}
	// Anything else under /account, and another method on /account
	// itself, is no page (rather than the IDE's).
	noPage := s.dashHeaders(s.signedInPage(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "not_found", "not found")
	})))
	r.Handle("/account", noPage)
	r.PathPrefix("/account/").Handler(noPage)
}

// myWorkspaceStatus is what the page reads of GET /api/v1/me/workspace
// (Workspaces.Status): the page shows the document the API serves.
type myWorkspaceStatus struct {
	State    string `json:"state"`
	Progress *struct {
		Phase         string `json:"phase"`
		QueuePosition int    `json:"queuePosition"`
		Error         string `json:"error"`
	} `json:"progress"`
	Workspace *struct {
		ID        string    `json:"id"`
		Node      string    `json:"node"`
		StartedAt time.Time `json:"startedAt"`
		Restarts  int       `json:"restarts"`
	} `json:"workspace"`
	Idle *struct {
		StopAt  time.Time `json:"stopAt"`
		Warning bool      `json:"warning"`
	} `json:"idle"`
	Usage *struct {
		Storage resources.StorageUsage `json:"storage"`
		Memory  resources.MemoryUsage  `json:"memory"`
	} `json:"usage"`
	Policy struct {
		Name string `json:"name"`
	} `json:"policy"`
}

// accountWorkspace is the workspace part of account.html.
type accountWorkspace struct {
	State, Phase, Error string
	QueuePosition       int
	ID, Node, Policy    string
	Started, IdleStop   when
	IdleWarning         bool
	Restarts            int
	// Storage is the home's use, measured now, when the workspace runs,
	// and StorageText says it; OOMText says how many of its processes
	// were killed for lack of memory since it started ("" for none).
	Storage              *resources.StorageUsage
	StorageText, OOMText string
	// Settled is false while the workspace is on its way up or down: the
	// page then follows it.
	Settled             bool
	CanStop, CanRestart bool
}

// accountPage is the data of account.html.
type accountPage struct {
	User      userRow
	Workspace *accountWorkspace
	// WorkspaceError says why the workspace could not be shown.
	WorkspaceError string
	Usage          []gauge
	Sessions       []sessionRow
	// PasswordError is the change-password form's failure.
	PasswordError string
}

func (s *Server) handleAccountPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.renderAccount(w, r, http.StatusOK, "")
	})
}

// renderAccount renders the account page, with pwError on the password
// form.
func (s *Server) renderAccount(w http.ResponseWriter, r *http.Request, status int, pwError string) {
	ctx := r.Context()
	p := principalOf(r)
	pg := accountPage{User: s.userRow(p.User), PasswordError: pwError}
	if s.opts.Workspaces != nil {
		ws, err := s.myWorkspace(r)
		if err != nil {
			s.log.Warn("workspace status for the account page", "user", p.User.Username, "error", err)
			pg.WorkspaceError = "Your workspace's state is unavailable right now."
		}
		pg.Workspace = ws
	}
	if s.opts.Resources != nil {
		us, err := s.opts.Resources.UsageOf(ctx, []string{p.User.ID})
		if err != nil || len(us) != 1 {
			s.log.Warn("usage for the account page", "user", p.User.Username, "error", err)
		} else {
			pg.Usage = quotaGauges(us[0].Quotas())
		}
	}
	ss, err := s.opts.Identity.UserSessions(ctx, p.User.ID)
	if err != nil {
		s.dashError(w, r, "account", "/account", err)
		return
	}
	views := make([]adminSessionView, len(ss))
	for i, x := range ss {
		views[i] = adminSessionView{sessionView: viewSession(x, p.Session.ID), UserID: x.UserID, Username: p.User.Username}
	}
	pg.Sessions = s.sessionRows(views)
	s.renderDash(w, r, status, "account.html", "Your account", "account", pg)
}

// myWorkspace reads the signed-in user's workspace as the API shows it.
func (s *Server) myWorkspace(r *http.Request) (*accountWorkspace, error) {
	st, err := s.opts.Workspaces.Status(r.Context(), principalOf(r).User.ID)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode workspace status: %w", err)
	}
	var v myWorkspaceStatus
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("decode workspace status: %w", err)
	}
	ws := &accountWorkspace{State: v.State, Policy: v.Policy.Name}
	if ws.Policy == "" {
		ws.Policy = "default"
	}
	if pr := v.Progress; pr != nil {
		ws.Phase, ws.QueuePosition, ws.Error = pr.Phase, pr.QueuePosition, pr.Error
	}
	if x := v.Workspace; x != nil {
		ws.ID, ws.Node, ws.Restarts = x.ID, x.Node, x.Restarts
		if v.State == "running" {
			ws.Started = s.when(x.StartedAt)
		}
	}
	if v.Idle != nil {
		ws.IdleStop, ws.IdleWarning = s.when(v.Idle.StopAt), v.Idle.Warning
	}
	if u := v.Usage; u != nil {
		ws.Storage, ws.StorageText = &u.Storage, storageText(u.Storage)
		if u.Memory.OOMKills > 0 {
			ws.OOMText = oomText(u.Memory.OOMKills)
		}
	}
	switch v.State {
	case "running":
		ws.Settled, ws.CanStop, ws.CanRestart = true, true, true
	case "stopped", "failed", "":
		ws.Settled, ws.CanRestart = true, v.State == "failed"
	default: // queued, starting, stopping
		ws.CanStop = v.State != "stopping"
	}
	return ws, nil
}

func (s *Server) handleAccountPassword() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			s.renderAccount(w, r, http.StatusBadRequest, "The form could not be read.")
			return
		}
		if !s.checkCSRF(r) {
			s.log.Warn("password change refused: missing or wrong CSRF token", "client", r.RemoteAddr)
			s.renderAccount(w, r, http.StatusForbidden, "The form expired or your browser blocks cookies. Please try again.")
			return
		}
		p := principalOf(r)
		current, next, again := r.PostFormValue("current_password"), r.PostFormValue("new_password"), r.PostFormValue("confirm_password")
		switch {
		case current == "" || next == "" || again == "":
			s.renderAccount(w, r, http.StatusBadRequest, "Fill in your current password and the new one twice.")
			return
		case next != again:
			s.renderAccount(w, r, http.StatusBadRequest, "The two new passwords differ.")
			return
		}
		if err := s.opts.Identity.ChangePassword(r.Context(), p, current, next); err != nil {
			var ie *identity.Error
			msg := "Passwords cannot be changed right now. Please try again shortly."
			if errors.As(err, &ie) && ie.Code != identity.CodeUnavailable {
				msg = sentence(ie.Message)
			} else {
				s.log.Error("change password", "user", p.User.Username, "error", err)
			}
			s.renderAccount(w, r, statusOf(err), msg)
			return
		}
		s.log.Info("password changed", "user", p.User.Username)
		s.setFlash(w, r, "Your password is changed. Your other sessions are signed out.")
		http.Redirect(w, r, "/account", http.StatusSeeOther)
	})
}

func (s *Server) accountRevokeSession() func(r *http.Request) (*pendingAction, error) {
	return func(r *http.Request) (*pendingAction, error) {
		p := principalOf(r)
		id := mux.Vars(r)["id"]
		ss, err := s.opts.Identity.UserSessions(r.Context(), p.User.ID)
		if err != nil {
			return nil, err
		}
		var found bool
		var prompt string
		for _, x := range ss {
			if x.ID != id {
				continue
			}
			found = true
			v := viewSession(x, p.Session.ID)
			prompt = fmt.Sprintf("Sign out the %s session from %s, last active %s?", v.Kind, orDash(v.IPAddress), ago(s.now().Sub(v.LastActivity)))
		}
		if !found {
			return nil, &identity.Error{Code: identity.CodeNotFound, Message: "no such session: it may have ended already"}
		}
		then := ""
		if id == p.Session.ID {
			prompt, then = "Sign out this session, the one you are using?", "/login"
		}
		return &pendingAction{Prompt: prompt, Button: "Sign out session", Danger: true, Then: then, Do: func() (string, error) {
			if err := s.opts.Identity.RevokeSession(r.Context(), p.User.ID, id); err != nil {
				return "", err
			}
			s.signedOut(r, p.User.ID)
			s.log.Info("session revoked by its user", "user", p.User.Username)
			return "The session is signed out.", nil
		}}, nil
	}
}

func (s *Server) accountWorkspaceAction(name string) func(r *http.Request) (*pendingAction, error) {
	return func(r *http.Request) (*pendingAction, error) {
		p := principalOf(r)
		pa := &pendingAction{Danger: true}
		switch name {
		case "stop":
			pa.Prompt, pa.Button = "Stop your workspace? Open editor tabs disconnect; your files are kept. It starts again when you open the editor.", "Stop workspace"
		case "restart":
			pa.Prompt, pa.Button = "Restart your workspace? Open editor tabs disconnect and reconnect when it is back.", "Restart workspace"
		}
		pa.Do = func() (string, error) {
			if name == "stop" {
				if err := s.opts.Workspaces.Stop(r.Context(), p.User.ID); err != nil {
					return "", &identity.Error{Code: identity.CodeUnavailable, Message: "the workspace could not be stopped", Err: err}
				}
				s.log.Info("workspace stopped by its user", "user", p.User.Username)
				return "Your workspace is stopped.", nil
			}
			if err := s.opts.Workspaces.Restart(r.Context(), p.User.ID); err != nil {
				return "", &identity.Error{Code: identity.CodeUnavailable, Message: "the workspace could not be restarted", Err: err}
			}
			s.log.Info("workspace restarted by its user", "user", p.User.Username)
			return "Your workspace is restarting.", nil
		}
		return pa, nil
	}
}
