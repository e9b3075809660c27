package gateway

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/lockout"
	"github.com/codehub-dev/codehub/internal/resources"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/gorilla/mux"
)

// dashboardRoutes registers the admin dashboard and the account page on
// r (multi-user mode). The pages read and change through the same
// functions as the admin API, so that both record the same audit events.
// With multi-user.features.admin-dashboard off only the account page is
// served: the admin API stays, for automation.
func (s *Server) dashboardRoutes(r *mux.Router) {
	if !s.cfg.MultiUser.Features.AdminDashboard {
		s.accountRoutes(r)
		return
	}
	get := []string{http.MethodGet, http.MethodHead}
	page := func(path string, h http.Handler) {
		r.Handle(path, s.dashHeaders(s.staffPage(false, h))).Methods(get...)
	}
	action := func(path string, h http.Handler) {
		r.Handle(path, s.dashHeaders(s.csrf.Handler(s.staffPage(true, h)))).Methods(http.MethodPost)
	}
	page("/admin", s.handleOverviewPage())
	page("/admin/users", s.handleUsersPage())
	page("/admin/users/{id}", s.handleUserPage())
	action("/admin/users/create", s.dashAction("users", "/admin/users", s.createUserAction()))
	action("/admin/users/invite", s.handleInviteAction())
	for _, name := range []string{"disable", "enable", "unlock", "clear-lock", "role", "policy", "delete", "revoke-sessions"} {
		action("/admin/users/{id}/"+name, s.dashAction("users", "/admin/users", s.userAction(name)))
	}
	page("/admin/sessions", s.handleSessionsPage())
	action("/admin/sessions/{id}/revoke", s.dashAction("sessions", "/admin/sessions", s.revokeSessionAction()))
	if s.opts.AdminWorkspaces != nil {
		page("/admin/workspaces", s.handleWorkspacesPage())
		for _, name := range []string{"stop", "restart"} {
			action("/admin/workspaces/{id}/"+name, s.dashAction("workspaces", "/admin/workspaces", s.workspaceAction(name)))
		}
	}
	if s.opts.AuditLog != nil {
		page("/admin/audit", s.handleAuditPage())
	}
	r.Handle("/admin/", http.RedirectHandler("/admin", http.StatusMovedPermanently)).Methods(get...)
	// Anything else under /admin (another method on /admin itself too,
	// which would otherwise go on to the IDE) is no page: to staff as to
	// others.
	noPage := s.dashHeaders(s.staffPage(false, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "not_found", "not found")
	})))
	r.Handle("/admin", noPage)
	r.PathPrefix("/admin/").Handler(noPage)
	s.accountRoutes(r)
}

// stateOrder is the order workspace states are listed in.
var stateOrder = []string{"running", "starting", "queued", "stopping", "stopped", "failed"}

type stateCount struct {
	State string
	Count int
}

// auditRow is an audit event as the pages show it.
type auditRow struct {
	When                       when
	Type, Status, User, UserID string
	IP, Details                string
	Failure                    bool
}

func (s *Server) auditRows(events []audit.Event) []auditRow {
	out := make([]auditRow, len(events))
	for i, e := range events {
		name := e.Username
		if name == "" {
			name = e.UserID
		}
		var details string
		if len(e.Metadata) > 0 {
			var b strings.Builder
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false) // the template escapes
			_ = enc.Encode(e.Metadata)
			details = truncateRunes(strings.TrimSpace(b.String()), 300)
		}
		out[i] = auditRow{When: s.when(e.Timestamp), Type: e.EventType, Status: e.Status, User: name, UserID: e.UserID,
			IP: e.IPAddress, Details: details, Failure: e.Status == audit.StatusFailure}
	}
	return out
}

// overviewPage is the data of admin_overview.html.
type overviewPage struct {
	O         *adminOverview
	States    []stateCount
	HasSeries bool
	Sessions  timeChart
	Starts    timeChart
	Storage   barChart
	Failures  []auditRow
	Recent    []auditRow
	// AuditProblems say which sinks of the audit log fail.
	AuditProblems []string
}

func (s *Server) handleOverviewPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		o, err := s.adminOverview(ctx)
		if err != nil {
			s.dashError(w, r, "overview", "/admin", err)
			return
		}
		pg := overviewPage{O: o}
		if o.Workspaces != nil {
			for _, st := range stateOrder {
				pg.States = append(pg.States, stateCount{st, o.Workspaces.ByState[st]})
			}
			for st, n := range o.Workspaces.ByState {
				if !slices.Contains(stateOrder, st) {
					pg.States = append(pg.States, stateCount{st, n})
				}
			}
		}
		if sr := o.Series; sr != nil {
			pg.HasSeries = true
			pg.Sessions = newTimeChart("sessions-chart", "Active sessions, last 24 hours", "active sessions",
				sr.From, sr.To, sr.StepSeconds, sr.ActiveSessions, false)
			pg.Starts = newTimeChart("starts-chart", "Workspace starts, last 24 hours", "workspace starts",
				sr.From, sr.To, sr.StepSeconds, sr.WorkspaceStarts, true)
			rows := make([]storageRow, len(o.Storage))
			for i, x := range o.Storage {
				name := x.Username
				if name == "" {
					name = x.UserID
				}
				rows[i] = storageRow{Label: name, Bytes: x.Bytes, Limit: x.LimitBytes}
			}
			pg.Storage = newStorageChart(rows)
		}
		if o.RecentFailures != nil {
			pg.Failures = s.auditRows(o.RecentFailures.Latest)
			recent, _, err := s.opts.AuditLog.Query(ctx, AuditQuery{Limit: 10})
			if err != nil {
				s.dashError(w, r, "overview", "/admin", err)
				return
			}
			pg.Recent = s.auditRows(recent)
		}
		if st := o.AuditLog; st != nil {
			for _, x := range st.Sinks {
				if x.Backlog == 0 && x.Dropped == 0 && !x.Failing {
					continue
				}
				msg := fmt.Sprintf("The audit log's %s is failing (the gateway's log says why): %d events wait to be written to it", x.Name, x.Backlog)
				if x.Dropped > 0 {
					msg += fmt.Sprintf(", %d were dropped from it", x.Dropped)
				}
				pg.AuditProblems = append(pg.AuditProblems, msg+". The other sinks have them; codehub audit verify names what each lacks.")
			}
		}
		s.renderDash(w, r, http.StatusOK, "admin_overview.html", "Overview", "overview", pg)
	})
}

// userRow is an account as the pages list it.
type userRow struct {
	ID, Username, Email, Role, Policy string
	// Status is active, disabled or locked.
	Status             string
	Active, Locked     bool
	LastLogin, Created when
	LockedUntil        when
}

func (s *Server) userRow(u *user.User) userRow {
	row := userRow{ID: u.ID, Username: u.Username, Email: u.Email, Role: strings.Join(u.Roles, ", "),
		Policy: identity.PolicyOf(u), Active: u.Active, Locked: u.Locked(s.now()),
		LastLogin: s.when(u.LastLogin), Created: s.when(u.CreatedAt)}
	switch {
	case !u.Active:
		row.Status = "disabled"
	case row.Locked:
		row.Status = "locked"
		row.LockedUntil = s.when(u.LockedUntil)
	default:
		row.Status = "active"
	}
	return row
}

// usersPage is the data of admin_users.html.
type usersPage struct {
	Search string
	Users  []userRow
	Pager  pager
	// Roles and Policies are the choices of the forms that add people;
	// CanInvite whether invites can be redeemed (registration "invite"
	// or "open").
	Roles, Policies []option
	CanInvite       bool
	InviteTTLs      []option
}

func (s *Server) handleUsersPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l, err := s.listUsers(r)
		if err != nil {
			s.dashError(w, r, "users", "/admin/users", err)
			return
		}
		pg := usersPage{Search: l.Search, Pager: newPager(r, l.Offset, l.Limit, len(l.Users), l.Total),
			Roles: s.roleOptions(user.RoleUser), Policies: s.policyOptions(""),
			CanInvite:  s.opts.Identity.Registration() != identity.RegisterAdmin,
			InviteTTLs: []option{{"24h", "1 day", false}, {"72h", "3 days", true}, {"168h", "7 days", false}, {"720h", "30 days", false}}}
		for _, u := range l.Users {
			pg.Users = append(pg.Users, s.userRow(u))
		}
		s.renderDash(w, r, http.StatusOK, "admin_users.html", "Users", "users", pg)
	})
}

// option is one choice of a <select>.
type option struct {
	Value, Label string
	Selected     bool
}

// userPage is the data of admin_user.html.
type userPage struct {
	User userRow
	// Self is set when the administrator looks at their own account.
	Self     bool
	Roles    []option
	Policies []option
	Quotas   []gauge
	Sessions []sessionRow
	// Locks are the failed sign-ins of the user's names, per client.
	Locks []lockRow
}

// lockRow is the failure state of one of a user's names from one client,
// as the user page lists it.
type lockRow struct {
	Name, Client, From string
	// State says what the entry is: a running lock, or failures counted.
	State                string
	Locked               bool
	LockedUntil, LastTry when
}

func (s *Server) lockRows(ls []lockout.Lock) []lockRow {
	out := make([]lockRow, len(ls))
	for i, l := range ls {
		from := l.Client
		switch {
		case l.Client == lockout.AllClients:
			from = "every address (many addresses failed)"
		case lockout.IsDevice(l.Client):
			from = "a browser it signed in from before (" + truncateRunes(strings.TrimPrefix(l.Client, "device:"), 8) + ")"
		}
		out[i] = lockRow{Name: l.Name, Client: l.Client, From: from, Locked: l.Locked, LastTry: s.when(l.LastFailure),
			State: fmt.Sprintf("%d failed attempt(s)", l.Failures)}
		if l.Locked {
			out[i].LockedUntil = s.when(l.LockedUntil)
			out[i].State = "locked"
			if l.LockCount > 1 {
				out[i].State = fmt.Sprintf("locked (%d locks in a row, each twice as long)", l.LockCount)
			}
		}
	}
	return out
}

func (s *Server) handleUserPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.targetUser(r)
		if err != nil {
			s.dashError(w, r, "users", "/admin/users", err)
			return
		}
		pg := userPage{User: s.userRow(u), Self: u.ID == principalOf(r).User.ID}
		pg.Roles = s.roleOptions(u.Roles...)
		pg.Policies = s.policyOptions(pg.User.Policy)
		if s.opts.Resources != nil {
			qs, err := s.opts.Resources.Quotas(r.Context(), u.ID)
			if err != nil {
				s.log.Warn("quotas of a user", "user", u.Username, "error", err)
			}
			pg.Quotas = quotaGauges(qs)
		}
		ss, _, err := s.adminSessions(r, u.ID, 0, maxAudit)
		if err != nil {
			s.dashError(w, r, "users", "/admin/users", err)
			return
		}
		pg.Sessions = s.sessionRows(ss)
		locks, err := s.opts.Identity.Locks(r.Context(), u.ID)
		if err != nil {
			s.dashError(w, r, "users", "/admin/users", err)
			return
		}
		pg.Locks = s.lockRows(locks)
		s.renderDash(w, r, http.StatusOK, "admin_user.html", u.Username, "users", pg)
	})
}

// roleOptions are the roles to choose from, those of selected chosen.
func (s *Server) roleOptions(selected ...string) []option {
	var out []option
	for _, role := range []string{user.RoleUser, user.RoleAuditor, user.RoleAdmin} {
		out = append(out, option{role, role, slices.Contains(selected, role)})
	}
	return out
}

// policyOptions are the isolation policies to choose from, selected
// chosen (""; the default), or none when the policies are not known (the
// page then offers a text field).
func (s *Server) policyOptions(selected string) []option {
	if len(s.opts.Policies) == 0 {
		return nil
	}
	out := []option{{"", "default", selected == ""}}
	for _, name := range s.opts.Policies {
		out = append(out, option{name, name, name == selected})
	}
	return out
}

// createUserAction creates an account from the users page's form and
// goes to its page.
func (s *Server) createUserAction() func(r *http.Request) (*pendingAction, error) {
	return func(r *http.Request) (*pendingAction, error) {
		pa := &pendingAction{Immediate: true}
		pa.Do = func() (string, error) {
			u, err := s.adminCreateUser(r, adminCreateUser{
				Username: r.PostFormValue("username"), Email: r.PostFormValue("email"),
				Password: r.PostFormValue("password"), Role: r.PostFormValue("role"),
				Policy: strings.TrimSpace(r.PostFormValue("policy")),
			})
			if err != nil {
				return "", err
			}
			pa.Then = "/admin/users/" + u.ID
			return fmt.Sprintf("%s is created: they sign in with the password you chose, and can change it on their account page.", u.Username), nil
		}
		return pa, nil
	}
}

// invitePage is the data of admin_invite.html.
type invitePage struct {
	URL, Email, Role string
	Expires          when
}

// handleInviteAction creates an invite from the users page's form and
// shows its link, once: only its hash is kept.
func (s *Server) handleInviteAction() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		back, ok := s.readDashForm(w, r, "users", "/admin/users")
		if !ok {
			return
		}
		tok, inv, err := s.adminInvite(r, r.PostFormValue("email"), r.PostFormValue("role"), r.PostFormValue("ttl"))
		if err != nil {
			s.dashError(w, r, "users", back, err)
			return
		}
		scheme := "http"
		if s.secureCookies(r) {
			scheme = "https"
		}
		w.Header().Set("Cache-Control", "no-store")
		s.renderDash(w, r, http.StatusOK, "admin_invite.html", "Invitation", "users", invitePage{
			URL: scheme + "://" + r.Host + invitePath(tok), Email: inv.Email, Role: inv.Role, Expires: s.when(inv.ExpiresAt),
		})
	})
}

// quotaGauges shows the seed's QuotaStatus list as gauges.
func quotaGauges(qs []resources.QuotaStatus) []gauge {
	var out []gauge
	for _, q := range qs {
		label, format := string(q.Resource), formatCount
		switch q.Resource {
		case resources.Sessions:
			label = "Sessions"
		case resources.Connections:
			label = "Open connections"
		case resources.Storage:
			label, format = "Storage", formatBytes
		case resources.Memory:
			label, format = "Memory", formatMB
		case resources.CPU:
			label, format = "CPU", formatPercent
		}
		g := newGauge(label, q.Current, q.Limit, format)
		g.Exceeded, g.Warning = q.Exceeded, q.Warning
		switch {
		case q.Resource == resources.Storage && !q.Unlimited:
			pct := 100.0
			if !q.Exceeded {
				pct = min(99, math.Floor(100*q.Current/q.Limit))
			}
			g.Text = storageText(resources.StorageUsage{Used: int64(q.Current), Limit: int64(q.Limit), Percent: pct,
				Full: q.Exceeded, Warning: q.Warning})
		case q.Resource == resources.Memory && q.OOMKills > 0:
			g.Text += "; " + oomText(q.OOMKills)
			g.Warning = true
		}
		out = append(out, g)
	}
	return out
}

// userAction prepares one action on the account of the path's {id}.
func (s *Server) userAction(name string) func(r *http.Request) (*pendingAction, error) {
	return func(r *http.Request) (*pendingAction, error) {
		target, err := s.targetUser(r)
		if err != nil {
			return nil, err
		}
		who := target.Username
		update := func(req adminUpdateUser, done string) func() (string, error) {
			return func() (string, error) {
				if _, err := s.adminUpdateUser(r, target, req); err != nil {
					return "", err
				}
				return done, nil
			}
		}
		switch name {
		case "disable":
			if err := notYourself(r, target, "disable"); err != nil {
				return nil, err
			}
			off := false
			return &pendingAction{Prompt: fmt.Sprintf("Disable %s? Their sessions end now, and they cannot sign in until the account is enabled again.", who),
				Button: "Disable " + who, Danger: true, Do: update(adminUpdateUser{Active: &off}, who+" is disabled.")}, nil
		case "enable":
			on := true
			return &pendingAction{Prompt: fmt.Sprintf("Enable %s? They can sign in again.", who),
				Button: "Enable " + who, Do: update(adminUpdateUser{Active: &on}, who+" is enabled.")}, nil
		case "unlock":
			return &pendingAction{Prompt: fmt.Sprintf("Unlock %s? Their failed sign-ins are forgotten.", who),
				Button: "Unlock " + who, Do: func() (string, error) {
					if err := s.adminUnlock(r, target); err != nil {
						return "", err
					}
					return who + " is unlocked.", nil
				}}, nil
		case "clear-lock":
			client := r.PostFormValue("client")
			if client == "" || len(client) > 128 {
				return nil, badInput("name the lock to clear")
			}
			from := client
			if client == lockout.AllClients {
				from = "every address"
			}
			return &pendingAction{Prompt: fmt.Sprintf("Clear the sign-in lock of %s from %s? Its failed sign-ins are forgotten.", who, from),
				Button: "Clear lock", Do: func() (string, error) {
					if err := s.adminClearLock(r, target, client); err != nil {
						return "", err
					}
					return fmt.Sprintf("The lock of %s from %s is cleared.", who, from), nil
				}}, nil
		case "role":
			role := r.PostFormValue("role")
			if !user.ValidRole(role) {
				return nil, badInput("unknown role %q: use user, auditor or admin", truncate(role, 32))
			}
			if target.ID == principalOf(r).User.ID && role != user.RoleAdmin {
				return nil, &identity.Error{Code: identity.CodeConflict,
					Message: "you cannot take away your own administrator role; ask another administrator"}
			}
			return &pendingAction{Prompt: fmt.Sprintf("Give %s the role %q?", who, role), Button: "Set role",
				Danger: role == user.RoleAdmin, Do: update(adminUpdateUser{Role: &role}, fmt.Sprintf("%s now has the role %q.", who, role))}, nil
		case "policy":
			policy := strings.TrimSpace(r.PostFormValue("policy"))
			if err := s.checkPolicy(policy); err != nil {
				return nil, err
			}
			shown := policy
			if shown == "" {
				shown = "default"
			}
			return &pendingAction{Prompt: fmt.Sprintf("Give %s the isolation policy %q? It applies from their next workspace start.", who, shown),
				Button: "Set policy", Do: update(adminUpdateUser{Policy: &policy}, fmt.Sprintf("%s now has the policy %q.", who, shown))}, nil
		case "revoke-sessions":
			return &pendingAction{Prompt: fmt.Sprintf("End every session of %s? They are signed out everywhere.", who),
				Button: "End sessions", Danger: true, Do: func() (string, error) {
					n, err := s.adminRevokeUserSessions(r, target)
					if err != nil {
						return "", err
					}
					return fmt.Sprintf("Ended %d session(s) of %s.", n, who), nil
				}}, nil
		case "delete":
			if err := notYourself(r, target, "delete"); err != nil {
				return nil, err
			}
			return &pendingAction{Prompt: fmt.Sprintf("Delete the account %s (%s)? This cannot be undone. Their workspace is stopped; their files are kept.", who, target.Email),
				Button: "Delete " + who, Danger: true, Then: "/admin/users", Do: func() (string, error) {
					if err := s.adminDeleteUser(r, target); err != nil {
						return "", err
					}
					return who + " is deleted.", nil
				}}, nil
		}
		return nil, &identity.Error{Code: identity.CodeNotFound, Message: "no such action"}
	}
}

// sessionRow is a session as the pages list it.
type sessionRow struct {
	ID, User, UserID, Kind   string
	Created, Active, Expires when
	IP, UserAgent            string
	Current                  bool
}

func (s *Server) sessionRows(ss []adminSessionView) []sessionRow {
	out := make([]sessionRow, len(ss))
	for i, x := range ss {
		name := x.Username
		if name == "" {
			name = x.UserID
		}
		out[i] = sessionRow{ID: x.ID, User: name, UserID: x.UserID, Kind: x.Kind, Created: s.when(x.CreatedAt),
			Active: s.when(x.LastActivity), Expires: s.when(x.ExpiresAt), IP: x.IPAddress,
			UserAgent: truncateRunes(x.UserAgent, 80), Current: x.Current}
	}
	return out
}

// sessionsPage is the data of admin_sessions.html.
type sessionsPage struct {
	User     string
	Sessions []sessionRow
	Pager    pager
}

// userIDOf resolves who, a user ID or username, to an ID; who itself
// when it names no account.
func (s *Server) userIDOf(r *http.Request, who string) string {
	if who == "" {
		return ""
	}
	if _, err := s.opts.Identity.User(r.Context(), who); err == nil {
		return who
	}
	if u, err := s.opts.Identity.UserByName(r.Context(), who); err == nil {
		return u.ID
	}
	return who
}

func (s *Server) handleSessionsPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, err := queryText(r, "user", 128)
		if err != nil {
			s.dashError(w, r, "sessions", "/admin/sessions", err)
			return
		}
		offset, limit, err := page(r, 100, maxAudit)
		if err != nil {
			s.dashError(w, r, "sessions", "/admin/sessions", err)
			return
		}
		ss, total, err := s.adminSessions(r, s.userIDOf(r, strings.TrimSpace(who)), offset, limit)
		if err != nil {
			s.dashError(w, r, "sessions", "/admin/sessions", err)
			return
		}
		pg := sessionsPage{User: who, Sessions: s.sessionRows(ss), Pager: newPager(r, offset, limit, len(ss), total)}
		s.renderDash(w, r, http.StatusOK, "admin_sessions.html", "Sessions", "sessions", pg)
	})
}

func (s *Server) revokeSessionAction() func(r *http.Request) (*pendingAction, error) {
	return func(r *http.Request) (*pendingAction, error) {
		id, err := pathID(r, "session")
		if err != nil {
			return nil, err
		}
		ss, _, err := s.adminSessions(r, "", 0, 1<<30)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(ss, func(x adminSessionView) bool { return x.ID == id })
		if i < 0 {
			return nil, &identity.Error{Code: identity.CodeNotFound, Message: "no such session: it may have ended already"}
		}
		x := ss[i]
		prompt := fmt.Sprintf("End this session of %s (%s, from %s)? It is signed out at once.", x.Username, x.Kind, orDash(x.IPAddress))
		then := ""
		if x.Current {
			prompt = "End your own current session? You are signed out at once."
			then = "/login"
		}
		return &pendingAction{Prompt: prompt, Button: "End session", Danger: true, Then: then, Do: func() (string, error) {
			if err := s.adminRevokeSession(r, id); err != nil {
				return "", err
			}
			return fmt.Sprintf("The session of %s has ended.", x.Username), nil
		}}, nil
	}
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// workspaceRow is a workspace as the page lists it.
type workspaceRow struct {
	ID, User, UserID, State, Node, Orchestrator string
	Warm                                        bool
	Uptime                                      string
	Restarts                                    int
	Started, LastActivity                       when
	Storage, Memory, CPU                        string
	StorageFull, StorageWarning                 bool
	OOMKills                                    int64
	LastError                                   string
	CanStop, CanRestart                         bool
}

// workspacesPage is the data of admin_workspaces.html.
type workspacesPage struct {
	Workspaces []workspaceRow
}

func (s *Server) handleWorkspacesPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := s.adminWorkspaces(r.Context())
		if err != nil {
			s.dashError(w, r, "workspaces", "/admin/workspaces", err)
			return
		}
		var pg workspacesPage
		for _, x := range ws {
			row := workspaceRow{ID: x.ID, User: x.Username, UserID: x.UserID, State: x.State, Node: x.Node,
				Orchestrator: x.Orchestrator, Warm: x.Warm(), Restarts: x.Restarts, Started: s.when(x.StartedAt),
				LastActivity: s.when(x.LastActivity), LastError: truncateRunes(x.LastError, 200),
				CanStop: x.State != "stopped" && x.State != "stopping", CanRestart: !x.Warm()}
			if row.User == "" && !row.Warm {
				row.User = x.UserID
			}
			if x.UptimeSeconds > 0 {
				row.Uptime = span(time.Duration(x.UptimeSeconds) * time.Second)
			}
			if u := x.Usage; u != nil {
				row.Storage = storageText(u.Storage)
				row.StorageFull, row.StorageWarning = u.Storage.Full, u.Storage.Warning
				row.Memory = newGauge("", u.Memory.MB, float64(u.Memory.Limit), formatMB).Text
				if u.Memory.OOMKills > 0 {
					row.Memory += "; " + oomText(u.Memory.OOMKills)
					row.OOMKills = u.Memory.OOMKills
				}
				row.CPU = newGauge("", u.CPU.Percent, float64(u.CPU.Limit), formatPercent).Text
			}
			pg.Workspaces = append(pg.Workspaces, row)
		}
		s.renderDash(w, r, http.StatusOK, "admin_workspaces.html", "Workspaces", "workspaces", pg)
	})
}

func (s *Server) workspaceAction(name string) func(r *http.Request) (*pendingAction, error) {
	return func(r *http.Request) (*pendingAction, error) {
		id, err := pathID(r, "workspace")
		if err != nil {
			return nil, err
		}
		ws, err := s.opts.AdminWorkspaces.AllWorkspaces(r.Context())
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(ws, func(x WorkspaceInfo) bool { return x.ID == id })
		if i < 0 {
			return nil, &identity.Error{Code: identity.CodeNotFound, Message: "no such workspace"}
		}
		x := ws[i]
		owner := x.Username
		if owner == "" && !x.Warm() {
			owner = s.usernames(r.Context(), []string{x.UserID})[x.UserID]
		}
		whose := "the warm workspace " + x.ID
		if !x.Warm() {
			whose = "the workspace of " + orDash(owner)
		}
		pa := &pendingAction{Danger: true}
		switch name {
		case "stop":
			pa.Prompt = fmt.Sprintf("Stop %s? Open editors disconnect; the files are kept.", whose)
			pa.Button = "Stop workspace"
		case "restart":
			pa.Prompt = fmt.Sprintf("Restart %s? Open editors disconnect and reconnect when it is back.", whose)
			pa.Button = "Restart workspace"
		}
		pa.Do = func() (string, error) {
			if err := s.adminWorkspaceAction(r, name, id); err != nil {
				return "", err
			}
			if name == "stop" {
				return capitalize(whose) + " is stopped.", nil
			}
			return capitalize(whose) + " is restarting.", nil
		}
		return pa, nil
	}
}

// auditPage is the data of admin_audit.html.
type auditPage struct {
	User, Type, Since, Until string
	Types                    []option
	Events                   []auditRow
	Pager                    pager
}

// pageTime reads a time of the audit filter form: RFC 3339, or what a
// datetime-local field sends, in UTC.
func pageTime(r *http.Request, name string) (time.Time, error) {
	v := strings.TrimSpace(r.URL.Query().Get(name))
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, badInput("%q must be a time such as 2026-03-01T12:00 (UTC), got %q", name, truncate(v, 64))
}

func (s *Server) handleAuditPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := s.auditQuery(r, pageTime)
		if err != nil {
			s.dashError(w, r, "audit", "/admin/audit", err)
			return
		}
		events, total, err := s.opts.AuditLog.Query(r.Context(), q)
		if err != nil {
			s.dashError(w, r, "audit", "/admin/audit", err)
			return
		}
		v := r.URL.Query()
		pg := auditPage{User: v.Get("user"), Type: q.EventType, Events: s.auditRows(events),
			Pager: newPager(r, q.Offset, q.Limit, len(events), total)}
		if !q.Since.IsZero() {
			pg.Since = q.Since.UTC().Format("2006-01-02T15:04")
		}
		if !q.Until.IsZero() {
			pg.Until = q.Until.UTC().Format("2006-01-02T15:04")
		}
		pg.Types = append(pg.Types, option{"", "Any type", q.EventType == ""})
		for _, t := range audit.Types {
			pg.Types = append(pg.Types, option{t, t, t == q.EventType})
		}
		s.renderDash(w, r, http.StatusOK, "admin_audit.html", "Audit log", "audit", pg)
	})
}
