package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/lockout"
	"github.com/codehub-dev/codehub/internal/resources"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/gorilla/mux"
)

// AdminWorkspaces is what administrators see of, and do to, every
// workspace. Errors meant for the administrator are *identity.Error
// (CodeNotFound for a missing workspace, CodeConflict for an action that
// does not apply).
type AdminWorkspaces interface {
	// AllWorkspaces lists every workspace, warm ones included.
	AllWorkspaces(ctx context.Context) ([]WorkspaceInfo, error)
	// StopWorkspace stops a workspace by ID, keeping its files.
	StopWorkspace(ctx context.Context, id string) (*WorkspaceInfo, error)
	// RestartWorkspace stops and starts a user's workspace by ID.
	RestartWorkspace(ctx context.Context, id string) (*WorkspaceInfo, error)
}

// WorkspaceInfo is one workspace as administrators see it.
type WorkspaceInfo struct {
	ID string `json:"id"`
	// UserID is empty for a warm workspace nobody has claimed.
	UserID       string    `json:"userId,omitempty"`
	Username     string    `json:"username,omitempty"`
	State        string    `json:"state"`
	Orchestrator string    `json:"orchestrator"`
	Node         string    `json:"node"`
	CreatedAt    time.Time `json:"createdAt"`
	StartedAt    time.Time `json:"startedAt,omitzero"`
	StoppedAt    time.Time `json:"stoppedAt,omitzero"`
	LastActivity time.Time `json:"lastActivity,omitzero"`
	// UptimeSeconds since the last start, while running.
	UptimeSeconds int64  `json:"uptimeSeconds,omitempty"`
	Restarts      int    `json:"restarts"`
	LastError     string `json:"lastError,omitempty"`
	// Usage is the owner's, while running.
	Usage *resources.Usage `json:"usage,omitempty"`
}

// Warm reports whether w is a warm workspace nobody has claimed.
func (w *WorkspaceInfo) Warm() bool { return w.UserID == "" }

// Resources reports what users use against their quotas (the resource
// manager).
type Resources interface {
	// UsageOf returns the usage of each user, in order.
	UsageOf(ctx context.Context, userIDs []string) ([]resources.Usage, error)
	// Quotas returns the status of each of a user's quotas.
	Quotas(ctx context.Context, userID string) ([]resources.QuotaStatus, error)
	// GetUsage returns a user's usage history (resources.Totals:
	// everyone's) over a period ending now.
	GetUsage(ctx context.Context, userID string, p resources.Period) (*resources.PeriodUsage, error)
	// StoragePerUser returns each user's last measured storage, largest
	// first.
	StoragePerUser(ctx context.Context) ([]resources.UserStorage, error)
	// CleanupUserResources releases what a deleted user held.
	CleanupUserResources(ctx context.Context, userID string) error
}

// AuditQuery filters the audit log; zero values match everything.
type AuditQuery struct {
	UserID, EventType string
	Since, Until      time.Time
	// Offset and Limit page the result, newest first.
	Offset, Limit int
}

// AuditLog answers the admin API's questions about the audit log.
type AuditLog interface {
	// Query returns one page of matching entries, newest first, and how
	// many match in all.
	Query(ctx context.Context, q AuditQuery) ([]audit.Event, int, error)
	// Failures returns the newest entries with status failure since a
	// time, at most limit, and how many there are in all.
	Failures(ctx context.Context, since time.Time, limit int) ([]audit.Event, int, error)
}

// AuditHealth is an AuditLog that can also say whether every sink of the
// audit log takes its events (found by a type assertion): the overview
// shows a sink that fails.
type AuditHealth interface {
	Health() audit.Status
}

// Page sizes of the admin listings: default and most.
const (
	defaultPage = 50
	maxPage     = 500
	maxAudit    = 1000
)

// staffOnly lets administrators through, and auditors when the request
// changes nothing. Auditors asking for a change get 403; anyone else gets
// the 404 of a path that does not exist: to people who are not staff, not
// found and forbidden look the same.
func (s *Server) staffOnly(changes bool, next http.Handler) http.Handler {
	return s.authed(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := principalOf(r).User
		switch {
		case u.IsAdmin():
		case u.HasRole(user.RoleAuditor) && !changes:
		case u.HasRole(user.RoleAuditor):
			writeJSONError(w, http.StatusForbidden, identity.CodeForbidden, "auditors may look at everything but change nothing")
			return
		default:
			writeJSONError(w, http.StatusNotFound, "not_found", "no such API endpoint")
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// adminRoutes registers /api/v1/admin/... on api.
func (s *Server) adminRoutes(api *mux.Router) {
	get := func(path string, h http.Handler) apiRoute {
		return apiRoute{path, []string{http.MethodGet}, s.staffOnly(false, h)}
	}
	change := func(path, method string, h http.Handler) apiRoute {
		return apiRoute{path, []string{method}, s.staffOnly(true, h)}
	}
	routes := []apiRoute{
		get("/admin/overview", s.handleAdminOverview()),
		get("/admin/users", s.handleAdminUsers()),
		change("/admin/users", http.MethodPost, s.handleAdminCreateUser()),
		get("/admin/users/{id}", s.handleAdminUser()),
		change("/admin/users/{id}", http.MethodPatch, s.handleAdminUpdateUser()),
		change("/admin/users/{id}", http.MethodDelete, s.handleAdminDeleteUser()),
		change("/admin/users/{id}/lock", http.MethodPost, s.handleAdminLock()),
		change("/admin/users/{id}/unlock", http.MethodPost, s.handleAdminUnlock()),
		change("/admin/users/{id}/password", http.MethodPost, s.handleAdminSetPassword()),
		change("/admin/users/{id}/sessions", http.MethodDelete, s.handleAdminRevokeUserSessions()),
		change("/admin/invites", http.MethodPost, s.handleAdminInvite()),
		get("/admin/sessions", s.handleAdminSessions()),
		change("/admin/sessions/{id}", http.MethodDelete, s.handleAdminRevokeSession()),
	}
	if s.opts.AdminWorkspaces != nil {
		routes = append(routes,
			get("/admin/workspaces", s.handleAdminWorkspaces()),
			change("/admin/workspaces/{id}/stop", http.MethodPost, s.handleAdminWorkspaceAction("stop")),
			change("/admin/workspaces/{id}/restart", http.MethodPost, s.handleAdminWorkspaceAction("restart")),
		)
	}
	if s.opts.Resources != nil {
		routes = append(routes,
			get("/admin/usage", s.handleAdminUsage()),
			get("/admin/users/{id}/usage", s.handleAdminUserUsage()),
			get("/admin/users/{id}/quotas", s.handleAdminUserQuotas()),
		)
	}
	if s.opts.AuditLog != nil {
		routes = append(routes, get("/admin/audit", s.handleAdminAudit()))
	}
	handleGuardedAPI(api, routes, func(h http.Handler) http.Handler { return s.staffOnly(false, h) })
}

// badInput is an invalid_input error with message msg.
func badInput(format string, args ...any) error {
	return &identity.Error{Code: identity.CodeInvalidInput, Message: fmt.Sprintf(format, args...)}
}

// queryText returns the query parameter name, which must be text of at
// most n bytes.
func queryText(r *http.Request, name string, n int) (string, error) {
	v := r.URL.Query().Get(name)
	if len(v) > n || !user.ValidText(v) {
		return "", badInput("%q must be text of at most %d bytes", name, n)
	}
	return v, nil
}

// queryInt returns the query parameter name as an integer in [lo, hi], or
// def when it is absent.
func queryInt(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, badInput("%q must be a whole number from %d to %d, got %q", name, lo, hi, truncate(v, 32))
	}
	return n, nil
}

// page reads offset and limit.
func page(r *http.Request, def, most int) (offset, limit int, err error) {
	if offset, err = queryInt(r, "offset", 0, 0, 1<<30); err != nil {
		return 0, 0, err
	}
	limit, err = queryInt(r, "limit", def, 1, most)
	return offset, limit, err
}

// queryTime returns the query parameter name as an RFC 3339 time (zero
// when absent).
func queryTime(r *http.Request, name string) (time.Time, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, badInput("%q must be an RFC 3339 time such as 2026-03-01T12:00:00Z, got %q", name, truncate(v, 64))
	}
	return t, nil
}

// pathID is the {id} of the path; ids longer than any real one name
// nothing.
func pathID(r *http.Request, what string) (string, error) {
	id := mux.Vars(r)["id"]
	if id == "" || len(id) > 128 || !user.ValidText(id) {
		return "", &identity.Error{Code: identity.CodeNotFound, Message: "no such " + what}
	}
	return id, nil
}

// decodeOptionalJSON is decodeJSON for a body that may be left out.
func decodeOptionalJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
		return nil
	}
	return decodeJSON(w, r, v)
}

// adminAction records admin.action: what the signed-in administrator did
// to whom, besides the event the change itself records.
func (s *Server) adminAction(r *http.Request, targetID, targetName, action string, details map[string]any) {
	p := principalOf(r)
	md := map[string]any{"action": action, "actor": p.User.Username, "actorId": p.User.ID}
	for k, v := range details {
		md[k] = v
	}
	s.record(r, audit.Event{EventType: audit.AdminAction, UserID: targetID, Username: targetName, Metadata: md})
	s.log.Info("admin action", "action", action, "by", p.User.Username, "target", targetName)
}

// adminUserView is an account as administrators see it.
type adminUserView struct {
	userView
	// Policy is the user's isolation policy; "" is the default one.
	Policy string `json:"policy"`
}

func (s *Server) viewAdminUser(u *user.User) adminUserView {
	return adminUserView{userView: viewUser(u), Policy: identity.PolicyOf(u)}
}

// checkPolicy refuses a policy name that is malformed or, when the
// gateway knows its policies, unknown.
func (s *Server) checkPolicy(name string) error {
	if name == "" {
		return nil
	}
	if err := identity.ValidatePolicyName(name); err != nil {
		return err
	}
	if len(s.opts.Policies) > 0 && !slices.Contains(s.opts.Policies, name) {
		return badInput("unknown policy %q: use one of %s", name, strings.Join(s.opts.Policies, ", "))
	}
	return nil
}

// targetUser loads the user of the path's {id}.
func (s *Server) targetUser(r *http.Request) (*user.User, error) {
	id, err := pathID(r, "user")
	if err != nil {
		return nil, err
	}
	return s.opts.Identity.User(r.Context(), id)
}

// usernames maps user IDs to names; unknown IDs are left out.
func (s *Server) usernames(ctx context.Context, ids []string) map[string]string {
	out := map[string]string{}
	if len(ids) > 20 {
		us, _, err := s.opts.Identity.ListUsers(ctx, user.ListOptions{})
		if err == nil {
			for _, u := range us {
				out[u.ID] = u.Username
			}
			return out
		}
	}
	for _, id := range ids {
		if _, done := out[id]; done || id == "" {
			continue
		}
		if u, err := s.opts.Identity.User(ctx, id); err == nil {
			out[id] = u.Username
		}
	}
	return out
}

// userList is one page of accounts, as the users and usage lists take
// it: search, offset and limit from the query.
type userList struct {
	Search        string
	Users         []*user.User
	Total         int
	Offset, Limit int
}

func (s *Server) listUsers(r *http.Request) (userList, error) {
	search, err := queryText(r, "search", 256)
	if err != nil {
		return userList{}, err
	}
	offset, limit, err := page(r, defaultPage, maxPage)
	if err != nil {
		return userList{}, err
	}
	us, total, err := s.opts.Identity.ListUsers(r.Context(), user.ListOptions{Search: search, Offset: offset, Limit: limit})
	if err != nil {
		return userList{}, err
	}
	return userList{Search: search, Users: us, Total: total, Offset: offset, Limit: limit}, nil
}

func (s *Server) handleAdminUsers() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l, err := s.listUsers(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		us, total, offset, limit := l.Users, l.Total, l.Offset, l.Limit
		out := make([]adminUserView, len(us))
		for i, u := range us {
			out[i] = s.viewAdminUser(u)
		}
		writeJSON(w, http.StatusOK, struct {
			Users  []adminUserView `json:"users"`
			Total  int             `json:"total"`
			Offset int             `json:"offset"`
			Limit  int             `json:"limit"`
		}{out, total, offset, limit})
	})
}

type adminCreateUser struct {
	Username string         `json:"username"`
	Email    string         `json:"email"`
	Password string         `json:"password"`
	Role     string         `json:"role"`
	Policy   string         `json:"policy"`
	Metadata map[string]any `json:"metadata"`
}

func (s *Server) handleAdminCreateUser() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req adminCreateUser
		if err := decodeJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		u, err := s.adminCreateUser(r, req)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, s.viewAdminUser(u))
	})
}

// adminCreateUser creates an account as an administrator asked, through
// the API or the dashboard, and records admin.action.
func (s *Server) adminCreateUser(r *http.Request, req adminCreateUser) (*user.User, error) {
	if err := required(map[string]string{"username": req.Username, "email": req.Email, "password": req.Password}); err != nil {
		return nil, err
	}
	if err := identity.ValidateMetadata(req.Metadata); err != nil {
		return nil, err
	}
	if err := s.checkPolicy(req.Policy); err != nil {
		return nil, err
	}
	md := req.Metadata
	if req.Policy != "" {
		if md == nil {
			md = map[string]any{}
		}
		md[identity.PolicyKey] = req.Policy
	}
	u, err := s.opts.Identity.CreateUser(r.Context(), identity.NewUser{
		Username: req.Username, Email: req.Email, Password: req.Password, Role: req.Role, Metadata: md,
	})
	if err != nil {
		return nil, err
	}
	s.adminAction(r, u.ID, u.Username, "user.create", map[string]any{"role": strings.Join(u.Roles, ","), "email": u.Email})
	return u, nil
}

// lockView is the failure state of one of a user's sign-in names from
// one client, as the admin API shows it.
type lockView struct {
	// Name is the username or email the failures were for.
	Name string `json:"name"`
	// Client is the address (IPv6 by /64), "device:<id>" for a browser
	// trusted by a device cookie, or "*" for the lock of the name for
	// every address.
	Client string `json:"client"`
	// Failures since the last success or lock; LockCount counts locks in
	// a row, each twice as long as the one before.
	Failures    int        `json:"failures"`
	LockCount   int        `json:"lockCount"`
	Locked      bool       `json:"locked"`
	LockedUntil *time.Time `json:"lockedUntil,omitempty"`
	LastFailure *time.Time `json:"lastFailure,omitempty"`
}

func viewLocks(ls []lockout.Lock) []lockView {
	out := make([]lockView, len(ls))
	for i, l := range ls {
		out[i] = lockView{Name: l.Name, Client: l.Client, Failures: l.Failures, LockCount: l.LockCount, Locked: l.Locked,
			LastFailure: timePtr(l.LastFailure)}
		if l.Locked {
			out[i].LockedUntil = timePtr(l.LockedUntil)
		}
	}
	return out
}

func (s *Server) handleAdminUser() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.targetUser(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		locks, err := s.opts.Identity.Locks(r.Context(), u.ID)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			adminUserView
			Locks []lockView `json:"locks"`
		}{s.viewAdminUser(u), viewLocks(locks)})
	})
}

type adminUpdateUser struct {
	Username *string        `json:"username"`
	Email    *string        `json:"email"`
	Metadata map[string]any `json:"metadata"`
	Role     *string        `json:"role"`
	Policy   *string        `json:"policy"`
	Active   *bool          `json:"active"`
}

func (s *Server) handleAdminUpdateUser() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, err := s.targetUser(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var req adminUpdateUser
		if err := decodeJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		u, err := s.adminUpdateUser(r, target, req)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, s.viewAdminUser(u))
	})
}

// adminUpdateUser is an administrator changing target's account (the API
// and the dashboard): it refuses what would lock the administrator out,
// applies the changes and records admin.action.
func (s *Server) adminUpdateUser(r *http.Request, target *user.User, req adminUpdateUser) (*user.User, error) {
	ch := identity.UserChanges{Username: req.Username, Email: req.Email, Metadata: req.Metadata,
		Role: req.Role, Policy: req.Policy, Active: req.Active}
	if ch.Empty() {
		return nil, badInput("nothing to change: send username, email, metadata, role, policy or active")
	}
	if req.Policy != nil {
		if err := s.checkPolicy(*req.Policy); err != nil {
			return nil, err
		}
	}
	if target.ID == principalOf(r).User.ID {
		switch {
		case req.Role != nil && *req.Role != user.RoleAdmin:
			return nil, &identity.Error{Code: identity.CodeConflict,
				Message: "you cannot take away your own administrator role; ask another administrator"}
		case req.Active != nil && !*req.Active:
			return nil, &identity.Error{Code: identity.CodeConflict, Message: "you cannot disable your own account"}
		}
	}
	u, err := s.opts.Identity.UpdateUser(r.Context(), target.ID, ch)
	if err != nil {
		return nil, err
	}
	var fields []string
	for name, set := range map[string]bool{"username": req.Username != nil, "email": req.Email != nil,
		"metadata": req.Metadata != nil, "role": req.Role != nil, "policy": req.Policy != nil, "active": req.Active != nil} {
		if set {
			fields = append(fields, name)
		}
	}
	slices.Sort(fields)
	details := map[string]any{"fields": fields}
	if req.Role != nil {
		details["role"] = *req.Role
	}
	if req.Active != nil {
		details["active"] = *req.Active
	}
	if req.Policy != nil {
		details["policy"] = *req.Policy
	}
	if req.Username != nil {
		details["previousUsername"] = target.Username
	}
	s.adminAction(r, u.ID, u.Username, "user.update", details)
	return u, nil
}

// notYourself refuses an action an administrator may not take on their
// own account (they would lock themselves out).
func notYourself(r *http.Request, target *user.User, what string) error {
	if target.ID == principalOf(r).User.ID {
		return &identity.Error{Code: identity.CodeConflict, Message: "you cannot " + what + " your own account; ask another administrator"}
	}
	return nil
}

func (s *Server) handleAdminDeleteUser() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, err := s.targetUser(r)
		if err == nil {
			err = s.adminDeleteUser(r, target)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// adminDeleteUser deletes target's account and what it held, and records
// admin.action.
func (s *Server) adminDeleteUser(r *http.Request, target *user.User) error {
	if err := notYourself(r, target, "delete"); err != nil {
		return err
	}
	if err := s.opts.Identity.DeleteUser(r.Context(), target.ID); err != nil {
		return err
	}
	if s.opts.Resources != nil {
		if err := s.opts.Resources.CleanupUserResources(r.Context(), target.ID); err != nil {
			s.log.Error("clean up after a deleted user", "user", target.Username, "error", err)
		}
	}
	s.adminAction(r, target.ID, target.Username, "user.delete", map[string]any{"email": target.Email})
	return nil
}

func (s *Server) handleAdminLock() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, err := s.targetUser(r)
		if err == nil {
			err = notYourself(r, target, "lock")
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var req struct {
			Until *time.Time `json:"until"`
		}
		if err := decodeOptionalJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		now := s.now()
		until := now.AddDate(100, 0, 0) // until unlocked
		if req.Until != nil {
			if !req.Until.After(now) {
				s.writeError(w, r, badInput(`"until" must be in the future`))
				return
			}
			until = *req.Until
		}
		if err := s.opts.Identity.Lock(r.Context(), target.ID, until); err != nil {
			s.writeError(w, r, err)
			return
		}
		details := map[string]any{}
		if req.Until != nil {
			details["until"] = until.UTC().Format(time.RFC3339)
		}
		s.adminAction(r, target.ID, target.Username, "user.lock", details)
		w.WriteHeader(http.StatusNoContent)
	})
}

// handleAdminUnlock lifts every lock of the account (an administrator's
// and the failure locks of its names from every address), or, with
// {"client"}, the failure lock from that one client.
func (s *Server) handleAdminUnlock() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, err := s.targetUser(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var req struct {
			Client *string `json:"client"`
		}
		if err := decodeOptionalJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		if req.Client != nil {
			err = s.adminClearLock(r, target, *req.Client)
		} else {
			err = s.adminUnlock(r, target)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// adminClearLock forgets the failures of target's names from one client
// and records admin.action.
func (s *Server) adminClearLock(r *http.Request, target *user.User, client string) error {
	if err := s.opts.Identity.ClearLock(r.Context(), target.ID, client); err != nil {
		return err
	}
	s.adminAction(r, target.ID, target.Username, "user.clear_lock", map[string]any{"client": client})
	return nil
}

// adminUnlock lifts any lock of target's account and records admin.action.
func (s *Server) adminUnlock(r *http.Request, target *user.User) error {
	if err := s.opts.Identity.Unlock(r.Context(), target.ID); err != nil {
		return err
	}
	s.adminAction(r, target.ID, target.Username, "user.unlock", nil)
	return nil
}

func (s *Server) handleAdminSetPassword() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, err := s.targetUser(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var req struct {
			Password string `json:"password"`
		}
		if err := decodeJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := required(map[string]string{"password": req.Password}); err != nil {
			s.writeError(w, r, err)
			return
		}
		p := principalOf(r)
		keep := ""
		if target.ID == p.User.ID {
			keep = p.Session.ID // do not sign yourself out
		}
		if err := s.opts.Identity.SetPassword(r.Context(), target.ID, req.Password, keep); err != nil {
			s.writeError(w, r, err)
			return
		}
		s.adminAction(r, target.ID, target.Username, "user.set_password", nil)
		w.WriteHeader(http.StatusNoContent)
	})
}

func (s *Server) handleAdminRevokeUserSessions() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target, err := s.targetUser(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		n, err := s.adminRevokeUserSessions(r, target)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Revoked int `json:"revoked"`
		}{n})
	})
}

// adminRevokeUserSessions ends every session of target (but the
// administrator's own current one), records admin.action and returns how
// many ended.
func (s *Server) adminRevokeUserSessions(r *http.Request, target *user.User) (int, error) {
	p := principalOf(r)
	keep := ""
	if target.ID == p.User.ID {
		keep = p.Session.ID
	}
	n, err := s.opts.Identity.RevokeUser(r.Context(), target.ID, keep)
	if err != nil {
		return 0, err
	}
	s.signedOut(r, target.ID)
	s.adminAction(r, target.ID, target.Username, "user.revoke_sessions", map[string]any{"sessions": n})
	return n, nil
}

func (s *Server) handleAdminInvite() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Email string `json:"email"`
			Role  string `json:"role"`
			TTL   string `json:"ttl"`
		}
		if err := decodeOptionalJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
		tok, inv, err := s.adminInvite(r, req.Email, req.Role, req.TTL)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, struct {
			Token        string       `json:"token"`
			URL          string       `json:"url"`
			Invite       *user.Invite `json:"invite"`
			Registration string       `json:"registration"`
		}{tok, invitePath(tok), inv, s.opts.Identity.Registration()})
	})
}

// defaultInviteTTL is how long an invite lasts unless asked otherwise.
const defaultInviteTTL = 72 * time.Hour

// adminInvite creates an invite as an administrator asked (ttl a Go
// duration, "" for the default), through the API or the dashboard, and
// records admin.action. It returns the token to hand over.
func (s *Server) adminInvite(r *http.Request, email, role, ttl string) (string, *user.Invite, error) {
	d := defaultInviteTTL
	if ttl != "" {
		var err error
		if d, err = time.ParseDuration(ttl); err != nil {
			return "", nil, badInput(`"ttl" must be a duration such as "72h", got %q`, truncate(ttl, 32))
		}
	}
	p := principalOf(r)
	tok, inv, err := s.opts.Identity.CreateInvite(r.Context(), p.User.Username, email, role, d)
	if err != nil {
		return "", nil, err
	}
	s.adminAction(r, "", "", "invite.create", map[string]any{"email": inv.Email, "role": inv.Role,
		"expiresAt": inv.ExpiresAt.UTC().Format(time.RFC3339)})
	return tok, inv, nil
}

// invitePath is where an invite's token is redeemed.
func invitePath(token string) string { return "/signup?invite=" + url.QueryEscape(token) }

// adminSessionView is a session as administrators see it.
type adminSessionView struct {
	sessionView
	UserID   string `json:"userId"`
	Username string `json:"username"`
}

func (s *Server) handleAdminSessions() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, err := queryText(r, "user", 128)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		offset, limit, err := page(r, 100, maxAudit)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out, total, err := s.adminSessions(r, who, offset, limit)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Sessions []adminSessionView `json:"sessions"`
			Total    int                `json:"total"`
			Offset   int                `json:"offset"`
			Limit    int                `json:"limit"`
		}{out, total, offset, limit})
	})
}

// adminSessions returns one page of the live sessions, of the user with
// ID who if not empty, oldest first, and how many there are in all.
func (s *Server) adminSessions(r *http.Request, who string, offset, limit int) ([]adminSessionView, int, error) {
	all, err := s.opts.Identity.AllSessions(r.Context())
	if err != nil {
		return nil, 0, err
	}
	if who != "" {
		all = slices.DeleteFunc(all, func(x *session.Session) bool { return x.UserID != who })
	}
	total := len(all)
	all = all[min(offset, total):min(offset+limit, total)]
	ids := make([]string, len(all))
	for i, x := range all {
		ids[i] = x.UserID
	}
	names := s.usernames(r.Context(), ids)
	current := principalOf(r).Session.ID
	out := make([]adminSessionView, len(all))
	for i, x := range all {
		out[i] = adminSessionView{sessionView: viewSession(x, current), UserID: x.UserID, Username: names[x.UserID]}
	}
	return out, total, nil
}

func (s *Server) handleAdminRevokeSession() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r, "session")
		if err == nil {
			err = s.adminRevokeSession(r, id)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// adminRevokeSession ends any user's session and records admin.action.
func (s *Server) adminRevokeSession(r *http.Request, id string) error {
	sess, err := s.opts.Identity.EndSession(r.Context(), id)
	if err != nil {
		return err
	}
	s.signedOut(r, sess.UserID)
	name := s.usernames(r.Context(), []string{sess.UserID})[sess.UserID]
	s.adminAction(r, sess.UserID, name, "session.revoke", map[string]any{"sessionId": sess.ID})
	return nil
}

func (s *Server) handleAdminWorkspaces() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := s.adminWorkspaces(r.Context())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Workspaces []WorkspaceInfo `json:"workspaces"`
			Total      int             `json:"total"`
		}{ws, len(ws)})
	})
}

// adminWorkspaces lists every workspace with its owner's name and, while
// it runs, its uptime and the owner's usage.
func (s *Server) adminWorkspaces(ctx context.Context) ([]WorkspaceInfo, error) {
	ws, err := s.opts.AdminWorkspaces.AllWorkspaces(ctx)
	if err != nil {
		return nil, err
	}
	var ids, running []string
	for _, x := range ws {
		ids = append(ids, x.UserID)
		if x.State == "running" && !x.Warm() {
			running = append(running, x.UserID)
		}
	}
	names := s.usernames(ctx, ids)
	usage := map[string]*resources.Usage{}
	if s.opts.Resources != nil && len(running) > 0 {
		us, err := s.opts.Resources.UsageOf(ctx, running)
		if err != nil {
			s.log.Warn("workspace usage", "error", err)
		}
		for i := range us {
			usage[us[i].UserID] = &us[i]
		}
	}
	now := s.now()
	for i := range ws {
		x := &ws[i]
		if x.Username == "" {
			x.Username = names[x.UserID]
		}
		if x.State == "running" && !x.StartedAt.IsZero() {
			x.UptimeSeconds = int64(now.Sub(x.StartedAt) / time.Second)
			x.Usage = usage[x.UserID]
		}
	}
	if ws == nil {
		ws = []WorkspaceInfo{}
	}
	return ws, nil
}

func (s *Server) handleAdminWorkspaceAction(action string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r, "workspace")
		if err == nil {
			err = s.adminWorkspaceAction(r, action, id)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// adminWorkspaceAction stops ("stop") or restarts ("restart") a workspace
// by ID and records admin.action.
func (s *Server) adminWorkspaceAction(r *http.Request, action, id string) error {
	var (
		info *WorkspaceInfo
		err  error
	)
	if action == "restart" {
		info, err = s.opts.AdminWorkspaces.RestartWorkspace(r.Context(), id)
	} else {
		info, err = s.opts.AdminWorkspaces.StopWorkspace(r.Context(), id)
	}
	if err != nil {
		return err
	}
	name := info.Username
	if name == "" && info.UserID != "" {
		name = s.usernames(r.Context(), []string{info.UserID})[info.UserID]
	}
	s.adminAction(r, info.UserID, name, "workspace."+action, map[string]any{"workspaceId": info.ID})
	return nil
}

func (s *Server) handleAdminUsage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l, err := s.listUsers(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		us, total, offset, limit := l.Users, l.Total, l.Offset, l.Limit
		ids := make([]string, len(us))
		for i, u := range us {
			ids[i] = u.ID
		}
		usage, err := s.opts.Resources.UsageOf(r.Context(), ids)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		type row struct {
			resources.Usage
			Username string `json:"username"`
		}
		out := make([]row, len(usage))
		for i := range usage {
			out[i] = row{usage[i], us[i].Username}
		}
		writeJSON(w, http.StatusOK, struct {
			Usage  []row `json:"usage"`
			Total  int   `json:"total"`
			Offset int   `json:"offset"`
			Limit  int   `json:"limit"`
		}{out, total, offset, limit})
	})
}

func (s *Server) handleAdminUserUsage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.targetUser(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		p, err := resources.ParsePeriod(r.URL.Query().Get("period"))
		if err != nil {
			s.writeError(w, r, badInput(`"period" must be 1h, 24h or 7d`))
			return
		}
		pu, err := s.opts.Resources.GetUsage(r.Context(), u.ID, p)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, pu)
	})
}

func (s *Server) handleAdminUserQuotas() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.targetUser(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		qs, err := s.opts.Resources.Quotas(r.Context(), u.ID)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			UserID string                  `json:"userId"`
			Quotas []resources.QuotaStatus `json:"quotas"`
		}{u.ID, qs})
	})
}

func (s *Server) handleAdminAudit() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := s.auditQuery(r, queryTime)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		events, total, err := s.opts.AuditLog.Query(r.Context(), q)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if events == nil {
			events = []audit.Event{}
		}
		writeJSON(w, http.StatusOK, struct {
			Events []audit.Event `json:"events"`
			Total  int           `json:"total"`
			Offset int           `json:"offset"`
			Limit  int           `json:"limit"`
		}{events, total, q.Offset, q.Limit})
	})
}

// auditQuery reads an audit log query from r's parameters user, type,
// since and until (read by readTime), offset and limit. "user" is an ID
// (of an account that may be gone), or the username of an account.
func (s *Server) auditQuery(r *http.Request, readTime func(*http.Request, string) (time.Time, error)) (AuditQuery, error) {
	q := AuditQuery{}
	var err error
	var who string
	if who, err = queryText(r, "user", 128); err != nil {
		return q, err
	}
	if q.EventType, err = queryText(r, "type", 64); err != nil {
		return q, err
	}
	if q.EventType != "" && !slices.Contains(audit.Types, q.EventType) {
		return q, badInput("unknown event type %q: use one of %s", q.EventType, strings.Join(audit.Types, ", "))
	}
	if q.Since, err = readTime(r, "since"); err != nil {
		return q, err
	}
	if q.Until, err = readTime(r, "until"); err != nil {
		return q, err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return q, badInput(`"until" must be after "since"`)
	}
	if q.Offset, q.Limit, err = page(r, 100, maxAudit); err != nil {
		return q, err
	}
	q.UserID = who
	if who != "" {
		if _, err := s.opts.Identity.User(r.Context(), who); err != nil {
			if u, err := s.opts.Identity.UserByName(r.Context(), who); err == nil {
				q.UserID = u.ID
			}
		}
	}
	return q, nil
}

// point is one value of a chart's time series.
type point struct {
	At    time.Time `json:"at"`
	Value float64   `json:"value"`
}

type overviewWorkspaces struct {
	Total      int            `json:"total"`
	ByState    map[string]int `json:"byState"`
	StartQueue int            `json:"startQueue"`
	WarmPool   int            `json:"warmPool"`
}

type overviewFailures struct {
	Since  time.Time     `json:"since"`
	Count  int           `json:"count"`
	Latest []audit.Event `json:"latest"`
}

type overviewSeries struct {
	From            time.Time `json:"from"`
	To              time.Time `json:"to"`
	StepSeconds     int       `json:"stepSeconds"`
	ActiveSessions  []point   `json:"activeSessions"`
	ActiveUsers     []point   `json:"activeUsers"`
	WorkspaceStarts []point   `json:"workspaceStarts"`
}

type overviewStorage struct {
	UserID     string    `json:"userId"`
	Username   string    `json:"username"`
	Bytes      int64     `json:"bytes"`
	LimitBytes int64     `json:"limitBytes"`
	At         time.Time `json:"at"`
}

// maxOverviewStorage bounds the storage-per-user list of the overview.
const maxOverviewStorage = 50

// adminOverview is the state of the installation at a glance.
type adminOverview struct {
	GeneratedAt time.Time `json:"generatedAt"`
	Users       struct {
		Total  int `json:"total"`
		Active int `json:"active"`
	} `json:"users"`
	Sessions struct {
		Active int `json:"active"`
	} `json:"sessions"`
	Workspaces     *overviewWorkspaces `json:"workspaces,omitempty"`
	RecentFailures *overviewFailures   `json:"recentFailures,omitempty"`
	AuditLog       *audit.Status       `json:"auditLog,omitempty"`
	Series         *overviewSeries     `json:"series,omitempty"`
	Storage        []overviewStorage   `json:"storage"`
}

func (s *Server) handleAdminOverview() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, err := s.adminOverview(r.Context())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// adminOverview gathers the overview: users, sessions, workspaces by
// state, the last day's failures and usage series, storage per user; the
// parts whose source the gateway lacks are left out.
func (s *Server) adminOverview(ctx context.Context) (*adminOverview, error) {
	now := s.now()
	out := &adminOverview{GeneratedAt: now, Storage: []overviewStorage{}}
	n, err := s.opts.Identity.CountUsers(ctx)
	if err != nil {
		return nil, err
	}
	out.Users.Total = n
	all, err := s.opts.Identity.AllSessions(ctx)
	if err != nil {
		return nil, err
	}
	active := map[string]bool{}
	for _, x := range all {
		active[x.UserID] = true
	}
	out.Users.Active, out.Sessions.Active = len(active), len(all)

	if s.opts.AdminWorkspaces != nil {
		ws, err := s.opts.AdminWorkspaces.AllWorkspaces(ctx)
		if err != nil {
			return nil, err
		}
		o := &overviewWorkspaces{Total: len(ws), ByState: map[string]int{}}
		for _, x := range ws {
			o.ByState[x.State]++
			switch {
			case x.State == "queued":
				o.StartQueue++
			case x.State == "running" && x.Warm():
				o.WarmPool++
			}
		}
		out.Workspaces = o
	}
	if s.opts.AuditLog != nil {
		since := now.Add(-24 * time.Hour)
		latest, count, err := s.opts.AuditLog.Failures(ctx, since, 10)
		if err != nil {
			return nil, err
		}
		if latest == nil {
			latest = []audit.Event{}
		}
		out.RecentFailures = &overviewFailures{Since: since, Count: count, Latest: latest}
		if h, ok := s.opts.AuditLog.(AuditHealth); ok {
			st := h.Health()
			out.AuditLog = &st
		}
	}
	if s.opts.Resources != nil {
		day, err := s.opts.Resources.GetUsage(ctx, resources.Totals, resources.Periods["24h"])
		if err != nil {
			return nil, err
		}
		sr := &overviewSeries{From: day.From, To: day.To, StepSeconds: day.StepSeconds,
			ActiveSessions: []point{}, ActiveUsers: []point{}, WorkspaceStarts: []point{}}
		for _, x := range day.Samples {
			sr.ActiveSessions = append(sr.ActiveSessions, point{x.At, float64(x.Sessions)})
			sr.ActiveUsers = append(sr.ActiveUsers, point{x.At, float64(x.ActiveUsers)})
			sr.WorkspaceStarts = append(sr.WorkspaceStarts, point{x.At, float64(x.WorkspaceStarts)})
		}
		out.Series = sr
		st, err := s.opts.Resources.StoragePerUser(ctx)
		if err != nil {
			return nil, err
		}
		st = st[:min(len(st), maxOverviewStorage)]
		ids := make([]string, len(st))
		for i, x := range st {
			ids[i] = x.UserID
		}
		names := s.usernames(ctx, ids)
		for _, x := range st {
			out.Storage = append(out.Storage, overviewStorage{UserID: x.UserID, Username: names[x.UserID],
				Bytes: x.Bytes, LimitBytes: x.LimitBytes, At: x.At})
		}
	}
	return out, nil
}

// OpenConnections returns the proxied connections userID has open through
// this gateway (what the resource manager counts against their quota).
func (s *Server) OpenConnections(userID string) int { return s.limits.open(userID) }
