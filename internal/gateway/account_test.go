package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/resources"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// myWorkspaces is the user's side of the fake registry (Workspaces): the
// status document the API serves, stop and restart.
type myWorkspaces struct {
	ws *fakeWorkspaces

	mu               sync.Mutex
	stops, restarts  int
	failNext         bool
	signedOutOfUsers []string
	// usage, when set, is the running workspace's use, as the API shows it.
	usage any
}

func (m *myWorkspaces) Status(ctx context.Context, userID string) (any, error) {
	w, err := m.ws.Of(ctx, userID)
	if err != nil {
		return map[string]any{"state": "stopped", "policy": map[string]any{"name": "default"}}, nil
	}
	st := map[string]any{
		"state":     string(w.State),
		"workspace": map[string]any{"id": w.ID, "node": "node-1", "startedAt": w.StartedAt, "restarts": w.Restarts},
		"policy":    map[string]any{"name": "default", "memoryMB": 2048},
	}
	if w.State == workspace.StateRunning {
		st["idle"] = map[string]any{"lastActive": time.Now(), "stopAt": time.Now().Add(20 * time.Minute), "warning": false}
		m.mu.Lock()
		if m.usage != nil {
			st["usage"] = m.usage
		}
		m.mu.Unlock()
	} else {
		st["progress"] = map[string]any{"state": string(w.State), "phase": "Preparing your home", "queuePosition": 2}
	}
	return st, nil
}

func (m *myWorkspaces) Progress(string) (string, int, string) { return "Starting", 0, "" }
func (m *myWorkspaces) KeepAlive(string)                      {}
func (m *myWorkspaces) Stop(ctx context.Context, userID string) error {
	m.mu.Lock()
	m.stops++
	m.mu.Unlock()
	return m.ws.StopUser(ctx, userID, "stopped by its user")
}

func (m *myWorkspaces) Restart(ctx context.Context, userID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failNext {
		m.failNext = false
		return context.DeadlineExceeded
	}
	m.restarts++
	w, err := m.ws.Of(ctx, userID)
	if err != nil {
		return err
	}
	_, err = m.ws.RestartWorkspace(ctx, w.ID)
	return err
}

func (m *myWorkspaces) SignedOut(_ context.Context, userID string) {
	m.mu.Lock()
	m.signedOutOfUsers = append(m.signedOutOfUsers, userID)
	m.mu.Unlock()
}
func (m *myWorkspaces) ConnectionLimit(context.Context, string) int { return 0 }

// withMyWorkspaces serves e's gateway again with the user's own
// workspaces, and points the returned browsers' base at it.
func withMyWorkspaces(t *testing.T, e *adminEnv) *myWorkspaces {
	t.Helper()
	m := &myWorkspaces{ws: e.ws}
	opts := e.srv.opts
	opts.Workspaces = m
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(srv)
	t.Cleanup(front.Close)
	e.front = front
	return m
}

func TestAccountPage(t *testing.T) {
	e := newAdminEnv(t, adminSetup{})
	withMyWorkspaces(t, e)
	e.running(e.plain)
	if err := e.res.TrackUsage(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := e.anonymous().get("/account")
	if r.status != http.StatusFound || r.location != "/login?to=%2Faccount" {
		t.Fatalf("anonymous /account: %d to %q", r.status, r.location)
	}
	bob := e.browser("bob")
	r = bob.get("/account")
	wantPage(t, "bob's account page", r, http.StatusOK,
		`id="account-username">bob<`, `id="ws-state">running<`, `data-settled="true"`, "node-1",
		`action="/account/workspace/stop"`, `action="/account/workspace/restart"`, "<meter", "300.0 MiB of 1.0 GiB",
		`id="current-session">this session<`, `<label for="current-password">`, `<label for="new-password">`,
		`<label for="confirm-password">`, `autocomplete="new-password"`, `src="/_codehub/static/dashboard.js"`,
		`aria-current="page">Your account`)
	if strings.Contains(r.body, `href="/admin"`) {
		t.Error("a user's page links to the dashboard")
	}
	if got := r.header.Get("Content-Security-Policy"); !strings.Contains(got, "script-src 'self'") || !strings.Contains(got, "connect-src 'self'") {
		t.Errorf("account page CSP %q", got)
	}
	// bob's API session (mustUser) is listed with a sign-out form; the
	// current one without.
	ss, _ := e.id.UserSessions(context.Background(), e.plain.ID)
	if len(ss) != 2 {
		t.Fatalf("bob has %d sessions", len(ss))
	}
	for _, x := range ss {
		form := `action="/account/sessions/` + x.ID + `/revoke"`
		if x.ID == sessionOf(t, e, bob) {
			if strings.Contains(r.body, form) {
				t.Error("the current session has a revoke form")
			}
		} else if !strings.Contains(r.body, form) {
			t.Error("another session has no revoke form")
		}
	}
	wantPage(t, "no such account page", bob.get("/account/settings"), http.StatusNotFound)
	if r := e.browser("watcher").get("/account"); !strings.Contains(r.body, `href="/admin"`) {
		t.Error("an auditor's page does not link to the dashboard")
	}
}

// sessionOf returns the session ID of b's cookie.
func sessionOf(t *testing.T, e *adminEnv, b *pageClient) string {
	t.Helper()
	p, err := e.id.FromCookie(context.Background(), b.session)
	if err != nil || p == nil {
		t.Fatalf("the browser's session: %v", err)
	}
	return p.Session.ID
}

func TestAccountRevokeSession(t *testing.T) {
	e := newAdminEnv(t, adminSetup{})
	bob, other := e.browser("bob"), e.browser("bob")
	otherID := sessionOf(t, e, other)
	wantPage(t, "the other browser", other.get("/account"), http.StatusOK)

	// Someone else's session is no session of bob's.
	rootID := sessionOf(t, e, e.browser("root"))
	wantPage(t, "revoke root's session", bob.confirm("/account/sessions/"+rootID+"/revoke", nil), http.StatusNotFound, "No such session")
	if _, err := e.id.FromCookie(context.Background(), e.browser("root").session); err != nil {
		t.Fatal(err)
	}

	mark := e.audit.mark()
	r := bob.post("/account/sessions/"+otherID+"/revoke", url.Values{"back": {"/account"}})
	wantPage(t, "unconfirmed", r, http.StatusOK, "Sign out the browser session", `name="confirmed" value="yes"`)
	if len(e.audit.since(mark)) != 0 {
		t.Fatal("an unconfirmed revoke recorded events")
	}
	r = bob.confirm("/account/sessions/"+otherID+"/revoke", url.Values{"back": {"/account"}})
	if r.status != http.StatusSeeOther || r.location != "/account" {
		t.Fatalf("revoke: %d to %q", r.status, r.location)
	}
	if r := other.get("/account"); r.status != http.StatusFound || !strings.HasPrefix(r.location, "/login") {
		t.Errorf("the revoked session still opens the account page: %d", r.status)
	}
	wantPage(t, "after the revoke", bob.get("/account"), http.StatusOK, "The session is signed out.")
	var revoked bool
	for _, ev := range e.audit.since(mark) {
		revoked = revoked || (ev.EventType == audit.SessionRevoked && ev.Metadata["sessionId"] == otherID)
	}
	if !revoked {
		t.Errorf("no session.revoked for the session: %+v", e.audit.since(mark))
	}
}

func TestAccountChangePassword(t *testing.T) {
	e := newAdminEnv(t, adminSetup{})
	bob, other := e.browser("bob"), e.browser("bob")
	const newPW = "a-much-newer-pass-7"
	cases := []struct {
		name                 string
		current, next, again string
		want                 int
		says                 string
	}{
		{"nothing", "", "", "", 400, "Fill in"},
		{"no confirmation", multiPW, newPW, "", 400, "Fill in"},
		{"mismatch", multiPW, newPW, newPW + "x", 400, "differ"},
		{"wrong current", "not-the-password", newPW, newPW, 401, "current password is wrong"},
		{"too short", multiPW, "short", "short", 400, "at least"},
		{"the username", multiPW, "bob", "bob", 400, "t least"},
	}
	for _, tc := range cases {
		r := bob.post("/account/password", url.Values{"current_password": {tc.current}, "new_password": {tc.next},
			"confirm_password": {tc.again}})
		wantPage(t, tc.name, r, tc.want, tc.says, `id="password-error"`, `aria-invalid="true"`)
	}
	if _, err := e.id.Login(context.Background(), "bob", multiPW, identity.Client{IP: "192.0.2.9"}); err != nil {
		t.Fatalf("a refused change changed the password: %v", err)
	}
	mark := e.audit.mark()
	r := bob.post("/account/password", url.Values{"current_password": {multiPW}, "new_password": {newPW}, "confirm_password": {newPW}})
	if r.status != http.StatusSeeOther || r.location != "/account" {
		t.Fatalf("change: %d to %q: %.400s", r.status, r.location, r.body)
	}
	wantPage(t, "after the change", bob.get("/account"), http.StatusOK, "Your password is changed")
	if r := other.get("/account"); r.status != http.StatusFound {
		t.Errorf("another session survived the change: %d", r.status)
	}
	if _, err := e.id.Login(context.Background(), "bob", multiPW, identity.Client{IP: "192.0.2.9"}); identity.CodeOf(err) != identity.CodeInvalidCredentials {
		t.Errorf("the old password: %v", err)
	}
	if _, err := e.id.Login(context.Background(), "bob", newPW, identity.Client{IP: "192.0.2.9"}); err != nil {
		t.Errorf("the new password: %v", err)
	}
	var changed bool
	for _, ev := range e.audit.since(mark) {
		changed = changed || (ev.EventType == audit.PasswordChanged && ev.UserID == e.plain.ID)
	}
	if !changed {
		t.Error("no user.password_changed")
	}
}

func TestAccountWorkspaceActions(t *testing.T) {
	e := newAdminEnv(t, adminSetup{})
	m := withMyWorkspaces(t, e)
	e.running(e.plain)
	bob := e.browser("bob")

	r := bob.post("/account/workspace/stop", url.Values{"back": {"/account"}})
	wantPage(t, "unconfirmed stop", r, http.StatusOK, "Stop your workspace?")
	if m.stops != 0 {
		t.Fatal("an unconfirmed stop stopped")
	}
	r = bob.confirm("/account/workspace/stop", url.Values{"back": {"/account"}})
	if r.status != http.StatusSeeOther || r.location != "/account" || m.stops != 1 {
		t.Fatalf("stop: %d to %q, %d stops", r.status, r.location, m.stops)
	}
	wantPage(t, "after the stop", bob.get("/account"), http.StatusOK, "Your workspace is stopped.", `id="ws-state">stopped<`,
		"Start and open the editor")

	r = bob.confirm("/account/workspace/restart", url.Values{"back": {"/account"}})
	if r.status != http.StatusSeeOther || m.restarts != 1 {
		t.Fatalf("restart: %d, %d restarts", r.status, m.restarts)
	}
	if w, _ := e.ws.Of(context.Background(), e.plain.ID); w.State != workspace.StateRunning {
		t.Fatalf("after the restart: %s", w.State)
	}
	// A failing restart says so, without detail, and is not a 500.
	m.failNext = true
	r = bob.confirm("/account/workspace/restart", url.Values{"back": {"/account"}})
	wantPage(t, "failed restart", r, http.StatusServiceUnavailable, "could not be restarted")
	if strings.Contains(r.body, "deadline") {
		t.Error("the page tells the internal error")
	}

	// While it starts, the page follows it.
	e.ws.mu.Lock()
	for _, w := range e.ws.ws {
		if w.UserID == e.plain.ID {
			w.State = workspace.StateQueued
		}
	}
	e.ws.mu.Unlock()
	wantPage(t, "queued", bob.get("/account"), http.StatusOK, `data-settled="false"`, "Preparing your home — number 2 in line",
		`role="progressbar"`)
}

// TestFullHomeShown: a full home and processes killed for lack of memory
// are said on the user's page (from the workspace's status, measured
// now), in the quotas of the user's admin page and in the workspaces list
// (from the usage sampler); a home nearly full is a warning.
func TestFullHomeShown(t *testing.T) {
	e := newAdminEnv(t, adminSetup{})
	my := withMyWorkspaces(t, e)
	e.running(e.plain)
	const capacity = 1 << 30
	report := func(used int64, full bool, oom int64) {
		t.Helper()
		u := agentapi.Usage{StorageBytes: used, StorageLimitBytes: capacity, StorageCapacityBytes: capacity,
			StorageAvailableBytes: capacity - used, StorageFull: full, MemoryBytes: 256 << 20, OOMKills: oom}
		e.ws.mu.Lock()
		e.ws.usage = &u
		e.ws.mu.Unlock()
		my.mu.Lock()
		my.usage = map[string]any{
			"storage": resources.StorageOfAgent(u, capacity, 90),
			"memory":  resources.MemoryUsage{MB: 256, Limit: 2048, OOMKills: oom},
		}
		my.mu.Unlock()
		if err := e.res.TrackUsage(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	bob, root := e.browser("bob"), e.browser("root")

	report(capacity/2, false, 0)
	r := bob.get("/account")
	wantPage(t, "half full", r, http.StatusOK, "512.0 MiB of 1.0 GiB (50%)")
	if strings.Contains(r.body, `id="storage-warning"`) || strings.Contains(r.body, `id="oom-kills"`) {
		t.Errorf("a warning on a half-full home:\n%s", r.body)
	}

	report(capacity/1000*925, false, 0)
	wantPage(t, "92% full", bob.get("/account"), http.StatusOK,
		`id="storage-warning" data-level="warning">Your home is 92% full`, "nearly full", `class="gauge warn"`)

	report(capacity-1<<20, true, 2)
	wantPage(t, "full, two OOM kills", bob.get("/account"), http.StatusOK,
		`id="storage-warning" data-level="full">Your home is full (1023.0 MiB of 1.0 GiB (100%), full: writes fail)`,
		`id="oom-kills">2 processes killed for lack of memory since the workspace started`, `class="gauge over"`)
	wantPage(t, "the user's admin page", root.get("/admin/users/"+e.plain.ID), http.StatusOK,
		"1023.0 MiB of 1.0 GiB (100%), full: writes fail", "2 processes killed for lack of memory")
	wantPage(t, "the workspaces page", root.get("/admin/workspaces"), http.StatusOK,
		`<td class="error">1023.0 MiB of 1.0 GiB (100%), full: writes fail</td>`, "2 processes killed for lack of memory")
}
