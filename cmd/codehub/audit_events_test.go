package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/gorilla/websocket"
)

// eventSources says, for every audit event type, which action emits it,
// where, and which test performs that action and finds the entry in the
// audit file and in the database. TestAuditEventTable keeps it complete.
var eventSources = map[string]struct{ action, emittedBy, test string }{
	audit.LoginSuccess:     {"sign-in (form or API)", "identity.Service.Login", "TestAuditEventsFromActions"},
	audit.LoginFailure:     {"sign-in with a wrong password", "identity.Service.Login", "TestAuditEventsFromActions"},
	audit.Logout:           {"sign-out form", "identity.Service.Logout", "TestAuditEventsFromActions"},
	audit.AccountLocked:    {"too many failed sign-ins; admin lock", "identity.Service.Login, Lock", "TestAuditEventsFromActions"},
	audit.AccountUnlocked:  {"admin unlock", "identity.Service.Unlock", "TestAuditEventsFromActions"},
	audit.UserCreated:      {"codehub user create; POST /api/v1/admin/users", "identity.Service.CreateUser", "TestAuditEventsFromActions"},
	audit.UserUpdated:      {"PATCH /api/v1/admin/users/{id}", "identity.Service.UpdateUser", "TestAuditEventsFromActions"},
	audit.UserDeleted:      {"DELETE /api/v1/admin/users/{id}; codehub user delete", "identity.Service.DeleteUser", "TestAuditEventsFromActions"},
	audit.UserDisabled:     {"PATCH active=false", "identity.Service.UpdateUser, SetActive", "TestAuditEventsFromActions"},
	audit.UserEnabled:      {"PATCH active=true", "identity.Service.UpdateUser, SetActive", "TestAuditEventsFromActions"},
	audit.RoleChanged:      {"PATCH role; codehub user set-role", "identity.Service.UpdateUser, SetRole", "TestAuditEventsFromActions"},
	audit.PasswordChanged:  {"POST /api/v1/admin/users/{id}/password; own password change", "identity.Service.SetPassword", "TestAuditEventsFromActions"},
	audit.UserRegistered:   {"sign-up with an invite (or open registration)", "identity.Service.Register", "TestAuditEventsFromActions"},
	audit.InviteCreated:    {"POST /api/v1/admin/invites; codehub user invite", "identity.Service.CreateInvite", "TestAuditEventsFromActions"},
	audit.SessionCreated:   {"sign-in", "identity.Service.Login", "TestAuditEventsFromActions"},
	audit.SessionExpired:   {"a session idle past idle-session-minutes, or past its lifetime, swept every expired-session-cleanup-interval", "identity.Service.CleanupExpiredSessions", "TestAuditEventsFromActions"},
	audit.SessionRevoked:   {"admin revokes one session or all of a user's; refresh token replayed", "identity.Service.EndSession, RevokeUser, Refresh", "TestAuditEventsFromActions"},
	audit.TokenRefreshed:   {"POST /api/v1/auth/refresh", "identity.Service.Refresh", "TestAuditEventsFromActions"},
	audit.WorkspaceStarted: {"opening the editor starts the workspace", "cmd/codehub workspaces (Manager.OnStart)", "TestAuditWorkspaceEvents"},
	audit.WorkspaceStopped: {"the user stops the workspace; admin stop; idle; user deleted", "cmd/codehub workspaces (Manager.OnStopped), userclean.go", "TestAuditWorkspaceEvents"},
	audit.WorkspaceFailed:  {"a workspace start fails", "cmd/codehub workspaces (Manager.OnStart)", "TestAuditWorkspaceEvents"},
	audit.WorkspaceConnect: {"an editor WebSocket through the gateway", "gateway.auditAccess", "TestAuditEventsFromActions, TestAuditWorkspaceEvents"},
	audit.FileAccess:       {"a file read through code-server's /vscode-remote-resource", "gateway.auditAccess", "TestAuditEventsFromActions, TestAuditWorkspaceEvents"},
	audit.TerminalAccess:   {"typing into a terminal of the editor (again after 10 minutes without)", "agent activity report -> workspace.Manager.OnTerminal -> cmd/codehub workspaces", "TestOnTerminal (internal/workspace), TestActivityInBrowser (internal/agent)"},
	audit.ConfigChanged:    {"a gateway starts with a configuration that differs from the last start's", "app.recordConfigChange", "TestAuditEventsFromActions"},
	audit.AdminAction:      {"every change through the admin API", "gateway.adminAction", "TestAuditEventsFromActions"},
	audit.QuotaExceeded:    {"a sign-in past max-sessions-per-user; API rate limit; connection limit; storage/memory over quota", "identity.makeRoom, gateway.rateLimitAPI, gateway.handleIDE, resources.Manager", "TestAuditEventsFromActions"},
	audit.Suspicious:       {"cross-origin request; cross-site WebSocket; refresh token replayed", "gateway CSRF deny handler, proxy CheckOrigin, identity.Refresh", "TestAuditEventsFromActions"},
	audit.CheckpointEvent:  {"audit.checkpoint-entries entries, audit.checkpoint-interval after an entry, the log's start and close", "audit.Logger, audit.FileSink", "TestAuditVerifyCLI"},
}

// notEmitted are the event types no action emits, and why.
var notEmitted = map[string]string{}

// TestAuditEventTable: every event type is either emitted by an action
// that a test performs, or listed with the reason no action emits it.
func TestAuditEventTable(t *testing.T) {
	for _, typ := range audit.Types {
		src, ok := eventSources[typ]
		why, skipped := notEmitted[typ]
		switch {
		case !ok:
			t.Errorf("event type %s is missing from eventSources", typ)
		case skipped && src.test != "":
			t.Errorf("event type %s is both emitted (%s) and listed as not emitted (%s)", typ, src.test, why)
		case !skipped && (src.test == "" || src.emittedBy == "" || src.action == ""):
			t.Errorf("event type %s: no action, emitter or test named", typ)
		}
	}
	if len(eventSources) != len(audit.Types) {
		t.Errorf("eventSources lists %d types, audit.Types %d", len(eventSources), len(audit.Types))
	}
}

// auditEnv is a gateway whose audit log a test checks, with an
// administrator's access token.
type auditEnv struct {
	t     *testing.T
	cfg   *opsConfig
	file  string
	g     *testGateway
	admin string // access token
	want  []eventMatch
}

// expect adds what the audit log must hold.
func (e *auditEnv) expect(ms ...eventMatch) { e.want = append(e.want, ms...) }

// userID returns the ID of the account named name.
func (e *auditEnv) userID(name string) string {
	e.t.Helper()
	r := do(e.t, http.MethodGet, e.g.URL+"/api/v1/admin/users?search="+url.QueryEscape(name), nil, bearer(e.admin)...)
	var page struct {
		Users []struct{ ID, Username string } `json:"users"`
	}
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &page) != nil {
		e.t.Fatalf("GET /api/v1/admin/users: %d %s", r.Status, r.Body)
	}
	for _, u := range page.Users {
		if u.Username == name {
			return u.ID
		}
	}
	e.t.Fatalf("no user %s: %s", name, r.Body)
	return ""
}

// admin sends an admin API request and checks its status.
func (e *auditEnv) adminDo(method, path string, body any, status int) reply {
	e.t.Helper()
	var r reply
	if body != nil {
		b, _ := json.Marshal(body)
		r = do(e.t, method, e.g.URL+path, strings.NewReader(string(b)), append(bearer(e.admin), "Content-Type", "application/json")...)
	} else {
		r = do(e.t, method, e.g.URL+path, nil, bearer(e.admin)...)
	}
	if r.Status != status {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, r.Status, r.Body, status)
	}
	return r
}

// check waits until every expected entry is in the audit file, then
// finds each in the database through the admin API, the same as in the
// file.
func (e *auditEnv) check() {
	t := e.t
	t.Helper()
	var fileEvents []audit.Event
	missing := func() []eventMatch {
		fileEvents = readAuditFile(t, e.cfg.AuditFile)
		var out []eventMatch
		for _, m := range e.want {
			if _, ok := m.find(fileEvents); !ok {
				out = append(out, m)
			}
		}
		return out
	}
	deadline := time.Now().Add(guard)
	for left := missing(); len(left) > 0; left = missing() {
		if time.Now().After(deadline) {
			for _, m := range left {
				t.Errorf("not in the audit file: %v", m)
			}
			for _, ev := range fileEvents {
				b, _ := json.Marshal(ev)
				t.Logf("file: %s", b)
			}
			t.FailNow()
		}
		time.Sleep(50 * time.Millisecond)
	}
	dbEvents := adminAudit(t, e.g, e.admin, "")
	for _, m := range e.want {
		fe, _ := m.find(fileEvents)
		found := false
		for _, de := range dbEvents {
			if m.matches(de) && sameEntry(fe, de) {
				found = true
				break
			}
		}
		if !found {
			b, _ := json.Marshal(fe)
			t.Errorf("in the audit file but not in the database (GET /api/v1/admin/audit): %v\n  file: %s", m, b)
		}
	}
	// Both logs hold the same entries, each its own chain.
	if len(dbEvents) != len(fileEvents) {
		t.Errorf("the database holds %d entries, the file %d", len(dbEvents), len(fileEvents))
	}
}

// TestAuditEventsFromActions performs, against a gateway in front of the
// stand-in IDE, each action that leaves an audit entry, and finds the
// entry, in the design's format, in the audit file and in the database.
// (Workspace events need real workspaces: TestAuditWorkspaceEvents.)
func TestAuditEventsFromActions(t *testing.T) {
	t.Parallel()
	cfg := &opsConfig{
		Upstream: startStandInIDE(t), Registration: "invite", MaxFailures: 3, MaxSessions: 3,
		APIPerMinute: 60, APIBurst: 100,
		// Refusing beyond the cap (an opt-in) is what records the quota event.
		Session: `      on_limit = "refuse"`,
		Extra: "  scaling {\n    auto_cleanup {\n      enabled = true\n      idle_session_minutes = 60\n" +
			"      expired_session_cleanup_interval = \"200ms\"\n    }\n  }\n",
	}
	file := cfg.write(t)
	createUser(t, file, "admin", auditAdminPW, "--role", "admin")
	for _, name := range []string{"alice", "bob", "carol", "erin", "frank"} {
		createUser(t, file, name, name+"-password-1")
	}
	e := &auditEnv{t: t, cfg: cfg, file: file}
	e.expect(eventMatch{Type: audit.UserCreated, Username: "admin", Meta: map[string]any{"role": "admin"}},
		eventMatch{Type: audit.UserCreated, Username: "alice"})
	e.g = startMultiGateway(t, file)
	g := e.g
	e.expect(eventMatch{Type: audit.ConfigChanged, Meta: map[string]any{"file": file, "mode": "multi"}})
	e.admin = apiLogin(t, g, "admin", auditAdminPW).AccessToken
	ids := map[string]string{}
	for _, name := range []string{"admin", "alice", "bob", "carol", "erin", "frank"} {
		ids[name] = e.userID(name)
	}

	// Sign-in, failed sign-in, lockout.
	aliceTok := mustFormLogin(t, g, "alice", "alice-password-1")
	aliceSID := session.IDFromToken(aliceTok)
	e.expect(
		eventMatch{Type: audit.LoginSuccess, UserID: ids["alice"], Username: "alice", Status: "success", Client: true,
			Meta: map[string]any{"sessionId": aliceSID, "mfa": false}},
		eventMatch{Type: audit.SessionCreated, UserID: ids["alice"], Username: "alice", Client: true,
			Meta: map[string]any{"sessionId": aliceSID}})
	if resp, tok := formLogin(t, g, "alice", "wrong-password"); tok != "" || resp.StatusCode == http.StatusSeeOther {
		t.Fatalf("a wrong password signed in: %d", resp.StatusCode)
	}
	e.expect(eventMatch{Type: audit.LoginFailure, Username: "alice", Status: "failure", Client: true,
		Meta: map[string]any{"reason": "invalid_credentials"}})
	for range 3 {
		formLogin(t, g, "carol", "wrong-password")
	}
	formLogin(t, g, "carol", "carol-password-1") // while locked: refused, no new lock
	e.expect(eventMatch{Type: audit.AccountLocked, Username: "carol", Status: "failure"},
		eventMatch{Type: audit.LoginFailure, Username: "carol", Status: "failure", Meta: map[string]any{"reason": "account_locked"}})

	// User management through the admin API: each change is recorded,
	// and so is the administrator's action.
	r := e.adminDo(http.MethodPost, "/api/v1/admin/users", map[string]string{
		"username": "dave", "email": "dave@example.com", "password": "dave-password-1"}, http.StatusCreated)
	var dave struct{ ID string }
	json.Unmarshal(r.Body, &dave)
	adminAct := func(action, target string) eventMatch {
		return eventMatch{Type: audit.AdminAction, Username: target, Client: true,
			Meta: map[string]any{"action": action, "actor": "admin", "actorId": ids["admin"]}}
	}
	e.expect(eventMatch{Type: audit.UserCreated, UserID: dave.ID, Username: "dave", Client: true, Meta: map[string]any{"actor": "admin"}},
		adminAct("user.create", "dave"))
	daveURL := "/api/v1/admin/users/" + dave.ID
	e.adminDo(http.MethodPatch, daveURL, map[string]any{"email": "dave@example.org"}, http.StatusOK)
	e.expect(eventMatch{Type: audit.UserUpdated, UserID: dave.ID, Username: "dave", Client: true}, adminAct("user.update", "dave"))
	e.adminDo(http.MethodPatch, daveURL, map[string]any{"role": "auditor"}, http.StatusOK)
	e.expect(eventMatch{Type: audit.RoleChanged, UserID: dave.ID, Username: "dave", Client: true})
	e.adminDo(http.MethodPatch, daveURL, map[string]any{"active": false}, http.StatusOK)
	e.expect(eventMatch{Type: audit.UserDisabled, UserID: dave.ID, Client: true})
	e.adminDo(http.MethodPatch, daveURL, map[string]any{"active": true}, http.StatusOK)
	e.expect(eventMatch{Type: audit.UserEnabled, UserID: dave.ID, Client: true})
	e.adminDo(http.MethodPost, daveURL+"/lock", nil, http.StatusNoContent)
	e.expect(eventMatch{Type: audit.AccountLocked, UserID: dave.ID, Username: "dave", Client: true, Meta: map[string]any{"by": "administrator"}},
		adminAct("user.lock", "dave"))
	e.adminDo(http.MethodPost, daveURL+"/unlock", nil, http.StatusNoContent)
	e.expect(eventMatch{Type: audit.AccountUnlocked, UserID: dave.ID, Username: "dave", Client: true}, adminAct("user.unlock", "dave"))
	e.adminDo(http.MethodPost, daveURL+"/password", map[string]string{"password": "dave-password-2"}, http.StatusNoContent)
	e.expect(eventMatch{Type: audit.PasswordChanged, UserID: dave.ID, Username: "dave", Client: true}, adminAct("user.set_password", "dave"))

	// Sessions: revoke all of a user's, revoke one.
	mustFormLogin(t, g, "bob", "bob-password-1")
	mustFormLogin(t, g, "bob", "bob-password-1")
	e.adminDo(http.MethodDelete, "/api/v1/admin/users/"+ids["bob"]+"/sessions", nil, http.StatusOK)
	e.expect(eventMatch{Type: audit.SessionRevoked, UserID: ids["bob"], Username: "bob", Client: true, Meta: map[string]any{"sessions": 2}},
		adminAct("user.revoke_sessions", "bob"))
	bobTok := mustFormLogin(t, g, "bob", "bob-password-1")
	bobSID := session.IDFromToken(bobTok)
	e.adminDo(http.MethodDelete, "/api/v1/admin/sessions/"+url.PathEscape(bobSID), nil, http.StatusNoContent)
	e.expect(eventMatch{Type: audit.SessionRevoked, UserID: ids["bob"], Username: "bob", Client: true,
		Meta: map[string]any{"sessionId": bobSID, "reason": "revoked by an administrator"}})
	wantNoIDE(t, g, bobTok, "/x")

	// An invite, and the sign-up with it.
	r = e.adminDo(http.MethodPost, "/api/v1/admin/invites", map[string]string{"email": "gina@example.com"}, http.StatusCreated)
	var inv struct{ Token string }
	json.Unmarshal(r.Body, &inv)
	e.expect(eventMatch{Type: audit.InviteCreated, Client: true, Meta: map[string]any{"email": "gina@example.com"}},
		eventMatch{Type: audit.AdminAction, Meta: map[string]any{"action": "invite.create"}})
	r = postJSON(t, g.URL+"/api/v1/auth/register", map[string]string{
		"username": "gina", "email": "gina@example.com", "password": "gina-password-1", "invite": inv.Token})
	if r.Status != http.StatusCreated {
		t.Fatalf("register with the invite: %d %s", r.Status, r.Body)
	}
	e.expect(eventMatch{Type: audit.UserRegistered, Username: "gina", Client: true})

	// Delete.
	e.adminDo(http.MethodDelete, daveURL, nil, http.StatusNoContent)
	e.expect(eventMatch{Type: audit.UserDeleted, UserID: dave.ID, Username: "dave", Client: true}, adminAct("user.delete", "dave"))

	// API tokens: a refresh, then the replay of the old refresh token.
	pair := apiLogin(t, g, "erin", "erin-password-1")
	_, erinMe := getMe(t, g, bearer(pair.AccessToken)...)
	r = postJSON(t, g.URL+"/api/v1/auth/refresh", map[string]string{"refresh_token": pair.RefreshToken})
	if r.Status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.Status, r.Body)
	}
	e.expect(eventMatch{Type: audit.TokenRefreshed, UserID: ids["erin"], Username: "erin", Client: true})
	if r = postJSON(t, g.URL+"/api/v1/auth/refresh", map[string]string{"refresh_token": pair.RefreshToken}); r.Status == http.StatusOK {
		t.Fatal("a replayed refresh token was exchanged")
	}
	e.expect(eventMatch{Type: audit.Suspicious, UserID: ids["erin"], Username: "erin", Status: "failure", Client: true,
		Meta: map[string]any{"reason": "refresh_token_reused", "sessionId": erinMe.Session.ID}},
		eventMatch{Type: audit.SessionRevoked, UserID: ids["erin"], Username: "erin", Meta: map[string]any{"reason": "refresh token replayed"}})

	// Quotas: a sign-in past max-sessions-per-user (3), and the API rate
	// limit (burst 100).
	for range 3 {
		mustFormLogin(t, g, "erin", "erin-password-1")
	}
	if resp, tok := formLogin(t, g, "erin", "erin-password-1"); tok != "" {
		t.Fatalf("a fourth session was created: %d", resp.StatusCode)
	}
	e.expect(eventMatch{Type: audit.QuotaExceeded, UserID: ids["erin"], Username: "erin", Status: "failure", Client: true,
		Meta: map[string]any{"resource": "sessions", "limit": 3}})
	frank := apiLogin(t, g, "frank", "frank-password-1").AccessToken
	limited := false
	for i := 0; i < 300 && !limited; i++ {
		r = do(t, http.MethodGet, g.URL+"/api/v1/me", nil, bearer(frank)...)
		limited = r.Status == http.StatusTooManyRequests
	}
	if !limited || r.Header.Get("Retry-After") == "" {
		t.Fatalf("no 429 with Retry-After after 300 API requests: %d %v", r.Status, r.Header)
	}
	e.expect(eventMatch{Type: audit.QuotaExceeded, UserID: ids["frank"], Username: "frank", Status: "failure", Client: true,
		Meta: map[string]any{"resource": "api_requests", "caller": "user"}})

	// A cross-origin request is refused and recorded.
	r = do(t, http.MethodPost, g.URL+"/api/v1/auth/login", strings.NewReader(`{"username":"alice","password":"x"}`),
		"Content-Type", "application/json", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if r.Status != http.StatusForbidden {
		t.Fatalf("cross-origin sign-in: %d %s", r.Status, r.Body)
	}
	e.expect(eventMatch{Type: audit.Suspicious, Status: "failure", Client: true,
		Meta: map[string]any{"reason": "cross_origin_request", "origin": "https://evil.example"}})

	// What the gateway sees of the work in the editor: a file read
	// through code-server's resource route, an editor WebSocket.
	if r = ideGet(t, g, "/vscode-remote-resource?path="+url.QueryEscape("/home/alice/notes.txt"), aliceTok); r.Status != http.StatusOK {
		t.Fatalf("resource: %d", r.Status)
	}
	e.expect(eventMatch{Type: audit.FileAccess, UserID: ids["alice"], Username: "alice", Client: true,
		Meta: map[string]any{"path": "/home/alice/notes.txt", "method": "GET"}})
	d := websocket.Dialer{HandshakeTimeout: guard}
	ws, _, err := d.Dial("ws"+strings.TrimPrefix(g.URL, "http")+"/stable-123?reconnectionToken=x",
		http.Header{"Cookie": {sessionCookie(aliceTok)}, "Origin": {g.URL}})
	if err != nil {
		t.Fatalf("editor WebSocket: %v", err)
	}
	ws.Close()
	e.expect(eventMatch{Type: audit.WorkspaceConnect, UserID: ids["alice"], Username: "alice", Client: true,
		Meta: map[string]any{"path": "/stable-123", "sessionId": aliceSID}})

	// Sign-out.
	formLogout(t, g, aliceTok)
	e.expect(eventMatch{Type: audit.Logout, UserID: ids["alice"], Username: "alice", Client: true,
		Meta: map[string]any{"sessionId": aliceSID, "reason": "logout"}})

	// Expiry, swept every expired-session-cleanup-interval: a session
	// unused for longer than idle-session-minutes (60), and one past its
	// lifetime. The clock is moved by ageing the sessions in the store.
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.DriverSQLite,
		Path: filepath.Join(cfg.DataDir, "users.db")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	idleTok := mustFormLogin(t, g, "bob", "bob-password-1")
	idleSID := session.IDFromToken(idleTok)
	if _, err := db.Sessions().Update(context.Background(), idleSID, func(s *session.Session) error {
		s.LastActivity = time.Now().Add(-61 * time.Minute)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, guard, "the idle session swept", func() bool {
		_, err := db.Sessions().Get(context.Background(), idleSID)
		return err != nil
	})
	wantNoIDE(t, g, idleTok, "/x")
	e.expect(eventMatch{Type: audit.SessionExpired, UserID: ids["bob"], Username: "bob",
		Meta: map[string]any{"sessionId": idleSID, "reason": "idle timeout"}})
	oldTok := mustFormLogin(t, g, "bob", "bob-password-1")
	if _, err := db.Sessions().Update(context.Background(), session.IDFromToken(oldTok), func(s *session.Session) error {
		s.ExpiresAt = time.Now().Add(-time.Second)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.expect(eventMatch{Type: audit.SessionExpired, Meta: map[string]any{"reason": "expired", "count": 1}})

	e.check()
	locks := 0
	for _, ev := range readAuditFile(t, cfg.AuditFile) {
		if ev.EventType == audit.AccountLocked && ev.Username == "carol" {
			locks++
		}
	}
	if locks != 1 {
		t.Errorf("carol's account was locked once, and %d user.locked entries say so", locks)
	}

	// Every type but the workspaces' (TestAuditWorkspaceEvents) and those
	// no action emits was expected here.
	var seen []string
	for _, m := range e.want {
		seen = append(seen, m.Type)
	}
	for _, typ := range audit.Types {
		src := eventSources[typ]
		if strings.Contains(src.test, "TestAuditEventsFromActions") && !slices.Contains(seen, typ) {
			t.Errorf("%s is said to be checked here but is not", typ)
		}
	}
}
