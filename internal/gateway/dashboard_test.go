package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// These tests drive the admin dashboard and the account page as a
// browser does: session cookie, CSRF cookie and token from the page,
// forms posted with Sec-Fetch-Site, redirects not followed.

// pageClient is one browser: a session cookie and a CSRF cookie.
type pageClient struct {
	t       testing.TB
	base    string
	session string // the session cookie's token
	csrf    string // the CSRF cookie, and the form token
	flash   string
}

// browser signs name in with their password (a cookie session) on e's
// gateway.
func (e *adminEnv) browser(name string) *pageClient {
	e.t.Helper()
	res, err := e.id.Login(context.Background(), name, multiPW, identity.Client{IP: "192.0.2.7", UserAgent: "test browser"})
	if err != nil {
		e.t.Fatalf("Login(%s): %v", name, err)
	}
	return &pageClient{t: e.t, base: e.front.URL, session: res.CookieToken}
}

// anonymous is a browser signed in as nobody.
func (e *adminEnv) anonymous() *pageClient { return &pageClient{t: e.t, base: e.front.URL} }

type pageReply struct {
	status   int
	body     string
	header   http.Header
	location string
}

func (b *pageClient) send(method, path string, form url.Values, hdr ...string) pageReply {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.base)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	var cookies []string
	if b.session != "" {
		cookies = append(cookies, "codehub_session="+b.session)
	}
	if b.csrf != "" {
		cookies = append(cookies, csrfCookie+"="+b.csrf)
	}
	if b.flash != "" {
		cookies = append(cookies, flashCookie+"="+b.flash)
	}
	if len(cookies) > 0 {
		req.Header.Set("Cookie", strings.Join(cookies, "; "))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		switch c.Name {
		case csrfCookie:
			b.csrf = c.Value
		case flashCookie:
			b.flash = c.Value
			if c.MaxAge < 0 {
				b.flash = ""
			}
		case "codehub_session":
			if c.MaxAge < 0 {
				b.session = ""
			}
		}
	}
	return pageReply{status: resp.StatusCode, body: string(raw), header: resp.Header, location: resp.Header.Get("Location")}
}

func (b *pageClient) get(path string) pageReply {
	b.t.Helper()
	return b.send(http.MethodGet, path, nil)
}

// post posts form with the page's CSRF token (fetching a page first if
// the browser has no CSRF cookie yet).
func (b *pageClient) post(path string, form url.Values, hdr ...string) pageReply {
	b.t.Helper()
	for _, page := range []string{"/account", "/login"} {
		if b.csrf == "" {
			b.get(page)
		}
	}
	if b.csrf == "" {
		b.t.Fatal("no CSRF cookie from /account or /login")
	}
	if form == nil {
		form = url.Values{}
	}
	if _, set := form["csrf"]; !set {
		form.Set("csrf", b.csrf)
	}
	return b.send(http.MethodPost, path, form, hdr...)
}

// confirm posts form confirmed, as the dialog does.
func (b *pageClient) confirm(path string, form url.Values) pageReply {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("confirmed", "yes")
	return b.post(path, form)
}

// wantPage checks that r is a page of the dashboard with status want.
func wantPage(t *testing.T, what string, r pageReply, want int, contains ...string) {
	t.Helper()
	if r.status != want {
		t.Fatalf("%s: %d, want %d: %.600s", what, r.status, want, r.body)
	}
	for _, c := range contains {
		if !strings.Contains(r.body, c) {
			t.Errorf("%s lacks %q", what, c)
		}
	}
	if want != http.StatusSeeOther && want != http.StatusFound {
		checkPageSafety(t, what, r)
	}
}

var inlineScriptRE = regexp.MustCompile(`<script(?:\s[^>]*)?>`)

// checkPageSafety checks the headers and that nothing in the page needs
// what its CSP forbids (inline scripts, inline styles, other origins).
func checkPageSafety(t *testing.T, what string, r pageReply) {
	t.Helper()
	csp := r.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
		strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("%s: CSP %q", what, csp)
	}
	if r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: no nosniff", what)
	}
	for _, tag := range inlineScriptRE.FindAllString(r.body, -1) {
		if !strings.Contains(tag, `src="/_codehub/static/`) {
			t.Errorf("%s: script not from the gateway's static files: %s", what, tag)
		}
	}
	for _, bad := range []string{"style=", " onclick=", " onload=", "javascript:"} {
		if strings.Contains(r.body, bad) {
			t.Errorf("%s holds %q, which the CSP forbids", what, bad)
		}
	}
	for _, m := range regexp.MustCompile(`(?:src|href)="(https?:)?//`).FindAllString(r.body, -1) {
		t.Errorf("%s loads from another origin: %s", what, m)
	}
}

// adminPages are the dashboard's pages, for e.
func adminPages(e *adminEnv) []string {
	return []string{"/admin", "/admin/users", "/admin/users?search=bo", "/admin/users/" + e.plain.ID,
		"/admin/sessions", "/admin/sessions?user=bob", "/admin/workspaces", "/admin/audit",
		"/admin/audit?type=user.created&user=bob"}
}

// adminActions are the dashboard's action forms: path, form and a check
// that the action took effect, for e.
type pageAction struct {
	name    string
	prepare func(e *adminEnv) (path string, form url.Values, target *user.User)
	// action is admin.action's "action"; events what the change records
	// itself; check looks at the result.
	action string
	events []string
	check  func(t *testing.T, e *adminEnv, target *user.User)
	// says is what the page says afterwards.
	says string
}

func userPath(u *user.User, action string) string { return "/admin/users/" + u.ID + "/" + action }

var pageActions = []pageAction{
	{"disable", func(e *adminEnv) (string, url.Values, *user.User) {
		u := e.target("p-dis")
		return userPath(u, "disable"), nil, u
	}, "user.update", []string{audit.UserUpdated, audit.UserDisabled, audit.SessionRevoked}, func(t *testing.T, e *adminEnv, u *user.User) {
		if got := mustGetUser(t, e, u.ID); got.Active {
			t.Error("still active")
		}
		if ss, _ := e.id.UserSessions(context.Background(), u.ID); len(ss) != 0 {
			t.Errorf("%d sessions left", len(ss))
		}
	}, "p-dis is disabled."},
	{"enable", func(e *adminEnv) (string, url.Values, *user.User) {
		u := e.target("p-ena")
		off := false
		if _, err := e.id.UpdateUser(context.Background(), u.ID, identity.UserChanges{Active: &off}); err != nil {
			e.t.Fatal(err)
		}
		return userPath(u, "enable"), nil, u
	}, "user.update", []string{audit.UserUpdated, audit.UserEnabled}, func(t *testing.T, e *adminEnv, u *user.User) {
		if got := mustGetUser(t, e, u.ID); !got.Active {
			t.Error("still disabled")
		}
	}, "p-ena is enabled."},
	{"unlock", func(e *adminEnv) (string, url.Values, *user.User) {
		u := e.target("p-unl")
		if err := e.id.Lock(context.Background(), u.ID, time.Now().Add(time.Hour)); err != nil {
			e.t.Fatal(err)
		}
		return userPath(u, "unlock"), nil, u
	}, "user.unlock", []string{audit.AccountUnlocked}, func(t *testing.T, e *adminEnv, u *user.User) {
		if got := mustGetUser(t, e, u.ID); got.Locked(time.Now()) {
			t.Error("still locked")
		}
	}, "p-unl is unlocked."},
	{"set role", func(e *adminEnv) (string, url.Values, *user.User) {
		u := e.target("p-rol")
		return userPath(u, "role"), url.Values{"role": {"auditor"}}, u
	}, "user.update", []string{audit.UserUpdated, audit.RoleChanged}, func(t *testing.T, e *adminEnv, u *user.User) {
		if got := mustGetUser(t, e, u.ID); !slices.Equal(got.Roles, []string{"auditor"}) {
			t.Errorf("roles %v", got.Roles)
		}
	}, "p-rol now has the role &#34;auditor&#34;."},
	{"set policy", func(e *adminEnv) (string, url.Values, *user.User) {
		u := e.target("p-pol")
		return userPath(u, "policy"), url.Values{"policy": {"big"}}, u
	}, "user.update", []string{audit.UserUpdated}, func(t *testing.T, e *adminEnv, u *user.User) {
		if got := mustGetUser(t, e, u.ID); identity.PolicyOf(got) != "big" {
			t.Errorf("policy %q", identity.PolicyOf(got))
		}
	}, "p-pol now has the policy &#34;big&#34;."},
	{"revoke all sessions", func(e *adminEnv) (string, url.Values, *user.User) {
		u := e.target("p-rvk")
		return userPath(u, "revoke-sessions"), nil, u
	}, "user.revoke_sessions", []string{audit.SessionRevoked}, func(t *testing.T, e *adminEnv, u *user.User) {
		if ss, _ := e.id.UserSessions(context.Background(), u.ID); len(ss) != 0 {
			t.Errorf("%d sessions left", len(ss))
		}
	}, "Ended 1 session(s) of p-rvk."},
	{"delete", func(e *adminEnv) (string, url.Values, *user.User) {
		u := e.target("p-del")
		return userPath(u, "delete"), nil, u
	}, "user.delete", []string{audit.UserDeleted}, func(t *testing.T, e *adminEnv, u *user.User) {
		if _, err := e.id.User(context.Background(), u.ID); identity.CodeOf(err) != identity.CodeNotFound {
			t.Errorf("the deleted user: %v", err)
		}
	}, "p-del is deleted."},
	{"revoke session", func(e *adminEnv) (string, url.Values, *user.User) {
		u := e.target("p-ses")
		ss, _ := e.id.UserSessions(context.Background(), u.ID)
		return "/admin/sessions/" + ss[0].ID + "/revoke", nil, u
	}, "session.revoke", []string{audit.SessionRevoked}, func(t *testing.T, e *adminEnv, u *user.User) {
		if ss, _ := e.id.UserSessions(context.Background(), u.ID); len(ss) != 0 {
			t.Errorf("%d sessions left", len(ss))
		}
	}, "The session of p-ses has ended."},
	{"stop workspace", func(e *adminEnv) (string, url.Values, *user.User) {
		u := e.target("p-wss")
		return "/admin/workspaces/" + e.running(u) + "/stop", nil, u
	}, "workspace.stop", []string{audit.WorkspaceStopped}, func(t *testing.T, e *adminEnv, u *user.User) {
		if w, _ := e.ws.Of(context.Background(), u.ID); w.State != workspace.StateStopped {
			t.Errorf("state %s", w.State)
		}
	}, "The workspace of p-wss is stopped."},
	{"restart workspace", func(e *adminEnv) (string, url.Values, *user.User) {
		u := e.target("p-wsr")
		return "/admin/workspaces/" + e.running(u) + "/restart", nil, u
	}, "workspace.restart", []string{audit.WorkspaceStopped, audit.WorkspaceStarted}, func(t *testing.T, e *adminEnv, u *user.User) {
		if w, _ := e.ws.Of(context.Background(), u.ID); w.Restarts != 1 {
			t.Errorf("restarts %d", w.Restarts)
		}
	}, "The workspace of p-wsr is restarting."},
}

func mustGetUser(t *testing.T, e *adminEnv, id string) *user.User {
	t.Helper()
	u, err := e.id.User(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestDashboardRBAC: nobody is sent to the login page; a user is told
// every dashboard page and action does not exist; an auditor sees every
// page without one action control, and is refused every action; an
// administrator sees the controls.
func TestDashboardRBAC(t *testing.T) {
	e := newAdminEnv(t, adminSetup{policies: []string{"default", "big"}})
	nobody, bob, watcher, root := e.anonymous(), e.browser("bob"), e.browser("watcher"), e.browser("root")
	for _, path := range append(adminPages(e), "/admin/no/such/page") {
		r := nobody.get(path)
		if r.status != http.StatusFound || r.location != "/login?to="+url.QueryEscape(path) {
			t.Errorf("anonymous GET %s: %d to %q", path, r.status, r.location)
		}
		wantPage(t, "user GET "+path, bob.get(path), http.StatusNotFound)
		if path == "/admin/no/such/page" {
			wantPage(t, "auditor GET "+path, watcher.get(path), http.StatusNotFound)
			continue
		}
		r = watcher.get(path)
		wantPage(t, "auditor GET "+path, r, http.StatusOK, `href="/admin/users"`, "read only")
		if strings.Contains(r.body, `method="post" action="/admin`) || strings.Contains(r.body, "data-confirm=") {
			t.Errorf("auditor GET %s shows action controls", path)
		}
		wantPage(t, "admin GET "+path, root.get(path), http.StatusOK, `href="/admin/audit"`)
	}
	if r := root.get("/admin/users/" + e.plain.ID); !strings.Contains(r.body, `action="/admin/users/`+e.plain.ID+`/disable"`) {
		t.Errorf("the administrator's user page has no disable form")
	}
	// A plain user's account page does not link to the dashboard; staff's do.
	if r := bob.get("/account"); strings.Contains(r.body, `href="/admin"`) {
		t.Error("a user's account page links to the dashboard")
	}
	if r := watcher.get("/account"); !strings.Contains(r.body, `href="/admin"`) {
		t.Error("an auditor's account page does not link to the dashboard")
	}

	for _, a := range pageActions {
		t.Run(a.name, func(t *testing.T) {
			e.t, bob.t, watcher.t, nobody.t = t, t, t, t
			path, form, target := a.prepare(e)
			before := mustGetUser(t, e, target.ID)
			mark := e.audit.mark()
			if r := nobody.confirm(path, cloneForm(form)); r.status != http.StatusUnauthorized {
				t.Errorf("anonymous: %d", r.status)
			}
			wantPage(t, "user", bob.confirm(path, cloneForm(form)), http.StatusNotFound)
			wantPage(t, "auditor", watcher.confirm(path, cloneForm(form)), http.StatusForbidden, "change nothing")
			for _, ev := range e.audit.since(mark) {
				if ev.EventType == audit.AdminAction || slices.Contains(a.events, ev.EventType) {
					t.Errorf("a refused action recorded %s", ev.EventType)
				}
			}
			after, err := e.id.User(context.Background(), target.ID)
			if err != nil || after.Active != before.Active || !slices.Equal(after.Roles, before.Roles) {
				t.Errorf("a refused action changed the user: %+v, %v", after, err)
			}
		})
	}
}

func cloneForm(f url.Values) url.Values {
	out := url.Values{}
	for k, v := range f {
		out[k] = slices.Clone(v)
	}
	return out
}

// TestDashboardActions: each action first answers with a confirmation
// page and changes nothing; confirmed, it changes what it says, records
// admin.action as the admin API does plus the change's own events, and
// returns to the page it came from, which says what was done.
func TestDashboardActions(t *testing.T) {
	e := newAdminEnv(t, adminSetup{policies: []string{"default", "big"}})
	root := e.browser("root")
	for _, a := range pageActions {
		t.Run(a.name, func(t *testing.T) {
			e.t, root.t = t, t
			path, form, target := a.prepare(e)
			back := "/admin/users/" + target.ID
			if strings.HasPrefix(path, "/admin/sessions/") {
				back = "/admin/sessions?user=" + target.Username
			}
			if form == nil {
				form = url.Values{}
			}
			form.Set("back", back)

			mark := e.audit.mark()
			r := root.post(path, cloneForm(form))
			wantPage(t, "unconfirmed", r, http.StatusOK, `name="confirmed" value="yes"`, `action="`+path+`"`, `href="`+htmlEscape(back)+`"`)
			for k := range form {
				if !strings.Contains(r.body, `name="`+k+`"`) {
					t.Errorf("the confirmation page does not post %q again", k)
				}
			}
			if evs := e.audit.since(mark); len(evs) != 0 {
				t.Fatalf("an unconfirmed action recorded %v", evs)
			}

			r = root.confirm(path, cloneForm(form))
			wantBack := back
			if a.name == "delete" {
				wantBack = "/admin/users"
			}
			if r.status != http.StatusSeeOther || r.location != wantBack {
				t.Fatalf("confirmed: %d to %q, want 303 to %q: %.400s", r.status, r.location, wantBack, r.body)
			}
			a.check(t, e, target)
			var types []string
			var action *audit.Event
			for _, ev := range e.audit.since(mark) {
				types = append(types, ev.EventType)
				if ev.EventType == audit.AdminAction {
					action = &ev
				}
			}
			if action == nil {
				t.Fatalf("no admin.action among %v", types)
			}
			if action.Metadata["action"] != a.action || action.Metadata["actor"] != "root" || action.UserID != target.ID ||
				action.Username != target.Username || action.IPAddress == "" {
				t.Errorf("admin.action = %+v", action)
			}
			for _, want := range a.events {
				if !slices.Contains(types, want) {
					t.Errorf("no %s among %v", want, types)
				}
			}
			page := root.get(r.location)
			wantPage(t, "the page after the action", page, http.StatusOK, `class="flash" role="status" id="flash">`+a.says+`<`)
			if again := root.get(r.location); strings.Contains(again.body, `class="flash"`) {
				t.Error("the outcome is shown twice")
			}
		})
	}
}

func htmlEscape(s string) string { return strings.ReplaceAll(s, "&", "&amp;") }

// TestDashboardCSRF: a form posted from another site, or without the
// page's token, changes nothing.
func TestDashboardCSRF(t *testing.T) {
	e := newAdminEnv(t, adminSetup{})
	root := e.browser("root")
	target := e.target("victim")
	path := userPath(target, "disable")
	mark := e.audit.mark()
	cases := []struct {
		name string
		form url.Values
		hdr  []string
		want int
	}{
		{"cross-site", url.Values{"confirmed": {"yes"}}, []string{"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"other origin, no fetch metadata", url.Values{"confirmed": {"yes"}}, []string{"Origin", "https://evil.example", "Sec-Fetch-Site", ""}, http.StatusForbidden},
		{"no token", url.Values{"confirmed": {"yes"}, "csrf": {""}}, nil, http.StatusForbidden},
		{"wrong token", url.Values{"confirmed": {"yes"}, "csrf": {strings.Repeat("x", 43)}}, nil, http.StatusForbidden},
	}
	for _, tc := range cases {
		r := root.post(path, tc.form, tc.hdr...)
		if r.status != tc.want {
			t.Errorf("%s: %d, want %d: %.300s", tc.name, r.status, tc.want, r.body)
		}
	}
	for _, ev := range e.audit.since(mark) {
		if ev.EventType == audit.AdminAction || ev.EventType == audit.UserDisabled {
			t.Errorf("a forged form changed something: %+v", ev)
		}
	}
	if !mustGetUser(t, e, target.ID).Active {
		t.Fatal("a forged form disabled the user")
	}
	// The password form of the account page is protected alike.
	bob := e.browser("bob")
	r := bob.post("/account/password", url.Values{"current_password": {multiPW}, "new_password": {"brand-new-pass-1"},
		"confirm_password": {"brand-new-pass-1"}}, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if r.status != http.StatusForbidden {
		t.Errorf("cross-site password change: %d", r.status)
	}
	r = bob.post("/account/password", url.Values{"csrf": {"nope"}, "current_password": {multiPW},
		"new_password": {"brand-new-pass-1"}, "confirm_password": {"brand-new-pass-1"}})
	if r.status != http.StatusForbidden {
		t.Errorf("password change without the token: %d", r.status)
	}
	if _, err := e.id.Login(context.Background(), "bob", multiPW, identity.Client{IP: "192.0.2.9"}); err != nil {
		t.Errorf("a forged form changed bob's password: %v", err)
	}
}

// TestDashboardBadInput: wrong input gets a 4xx page saying what is wrong,
// never a 500, and changes nothing.
func TestDashboardBadInput(t *testing.T) {
	e := newAdminEnv(t, adminSetup{policies: []string{"default", "big"}})
	root := e.browser("root")
	victim := e.target("bad-in")
	long := strings.Repeat("a", 300)
	gets := []struct {
		path string
		want int
		says string
	}{
		{"/admin/users?offset=-1", 400, "offset"},
		{"/admin/users?limit=100000", 400, "limit"},
		{"/admin/users?search=%ff%fe", 400, "search"},
		{"/admin/users?search=" + long, 400, "search"},
		{"/admin/users/no-such-user", 404, "No such user"},
		{"/admin/users/" + strings.Repeat("x", 200), 404, "No such user"},
		{"/admin/users/%00", 404, "No such user"},
		{"/admin/sessions?offset=x", 400, "offset"},
		{"/admin/audit?since=yesterday", 400, "since"},
		{"/admin/audit?since=2026-03-01T12:00&until=2026-03-01T11:00", 400, "until"},
		{"/admin/audit?type=no.such.type", 400, "nknown event type"},
		{"/admin/audit?user=%ff", 400, "user"},
	}
	for _, g := range gets {
		wantPage(t, "GET "+g.path, root.get(g.path), g.want, g.says)
	}
	mark := e.audit.mark()
	posts := []struct {
		path string
		form url.Values
		want int
		says string
	}{
		{userPath(victim, "role"), url.Values{"role": {"emperor"}}, 400, "nknown role"},
		{userPath(victim, "role"), url.Values{}, 400, "nknown role"},
		{userPath(victim, "policy"), url.Values{"policy": {"huge"}}, 400, "nknown policy"},
		{userPath(victim, "policy"), url.Values{"policy": {"Bad Name!"}}, 400, "policy name"},
		{userPath(e.admin, "disable"), nil, 409, "your own account"},
		{userPath(e.admin, "delete"), nil, 409, "your own account"},
		{userPath(e.admin, "role"), url.Values{"role": {"user"}}, 409, "your own administrator role"},
		{"/admin/users/no-such-user/disable", nil, 404, "No such user"},
		{"/admin/users/" + victim.ID + "/explode", nil, 404, ""},
		{"/admin/sessions/no-such-session/revoke", nil, 404, "No such session"},
		{"/admin/workspaces/no-such-workspace/stop", nil, 404, "No such workspace"},
		{"/admin/workspaces/no-such-workspace/restart", nil, 404, "No such workspace"},
		{"/account/sessions/no-such-session/revoke", nil, 404, "No such session"},
	}
	for _, p := range posts {
		r := root.confirm(p.path, p.form)
		wantPage(t, "POST "+p.path, r, p.want, p.says)
	}
	// A form too large to be a form.
	r := root.post(userPath(victim, "role"), url.Values{"role": {strings.Repeat("x", maxFormBytes)}})
	wantPage(t, "a huge form", r, http.StatusBadRequest, "could not be read")
	for _, ev := range e.audit.since(mark) {
		if ev.EventType == audit.AdminAction {
			t.Errorf("bad input recorded %+v", ev)
		}
	}
	if u := mustGetUser(t, e, victim.ID); !slices.Equal(u.Roles, []string{"user"}) || identity.PolicyOf(u) != "" || !u.Active {
		t.Errorf("bad input changed the user: %+v", u)
	}
	// Methods the pages do not take.
	for _, m := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch} {
		r := root.send(m, "/admin/users", url.Values{})
		if r.status < 400 || r.status >= 500 {
			t.Errorf("%s /admin/users: %d", m, r.status)
		}
	}
}

// TestDashboardContent: the pages show what the API reads: the overview's
// numbers and charts, searching and paging users, the audit log filtered
// by user, type and time, sessions with the current one marked.
func TestDashboardContent(t *testing.T) {
	ctx := context.Background()
	e := newAdminEnv(t, adminSetup{})
	for i := 1; i <= 12; i++ {
		e.mustUser(fmt.Sprintf("dev%02d", i), user.RoleUser)
	}
	e.running(e.plain)
	e.ws.add(&workspace.Workspace{ID: "warm-1", State: workspace.StateRunning, CreatedAt: time.Now()})
	e.ws.add(&workspace.Workspace{ID: "queued-1", UserID: "someone", State: workspace.StateQueued, CreatedAt: time.Now()})
	if err := e.res.TrackUsage(ctx); err != nil {
		t.Fatal(err)
	}
	e.audit.Record(audit.Event{EventType: audit.LoginFailure, Username: "mallory", Status: audit.StatusFailure,
		Metadata: map[string]any{"reason": "<b>bad</b>"}})
	root := e.browser("root")

	r := root.get("/admin")
	wantPage(t, "overview", r, http.StatusOK,
		`id="stat-active-users">15<`, `active users of 15`, `id="stat-workspaces">3<`, `id="stat-queue">1<`, `id="stat-warm">1<`,
		`<svg`, `id="sessions-chart"`, `id="starts-chart"`, `id="storage-chart"`, `class="chart-line"`,
		`class="chart-bar"`, `bob: 300.0 MiB of 1.0 GiB`, "user.login_failed", "mallory", "&lt;b&gt;bad&lt;/b&gt;",
		`<a class="skip-link" href="#content">`, `<main id="content"`, `aria-current="page">Overview`)
	if strings.Contains(r.body, "<b>bad</b>") {
		t.Error("audit metadata is not escaped")
	}

	r = root.get("/admin/users?search=DEV&offset=5&limit=4")
	wantPage(t, "users page", r, http.StatusOK, "Showing 6–9 of 12", `data-user="dev06"`, `data-user="dev09"`,
		`href="/admin/users?limit=4&amp;offset=1&amp;search=DEV" rel="prev"`, `href="/admin/users?limit=4&amp;offset=9&amp;search=DEV" rel="next"`)
	if strings.Contains(r.body, `data-user="dev05"`) || strings.Contains(r.body, `data-user="dev10"`) {
		t.Error("the users page shows rows of other pages")
	}
	r = root.get("/admin/users?search=nobody-at-all")
	wantPage(t, "users page, no match", r, http.StatusOK, "No user matches", "Nothing to show")

	r = root.get("/admin/sessions")
	wantPage(t, "sessions page", r, http.StatusOK, `this session`, `data-user="bob"`, `data-user="dev12"`)
	r = root.get("/admin/sessions?user=bob")
	wantPage(t, "bob's sessions", r, http.StatusOK, `data-user="bob"`)
	if strings.Contains(r.body, `data-user="dev12"`) {
		t.Error("the sessions filter lets other users through")
	}

	r = root.get("/admin/workspaces")
	wantPage(t, "workspaces page", r, http.StatusOK, `data-workspace="ws-bob"`, "warm pool", `badge-queued`,
		"300.0 MiB of 1.0 GiB", `action="/admin/workspaces/ws-bob/stop"`, `action="/admin/workspaces/warm-1/stop"`)
	if strings.Contains(r.body, `action="/admin/workspaces/warm-1/restart"`) {
		t.Error("a warm workspace offers a restart")
	}

	r = root.get("/admin/audit?user=dev03&type=user.created")
	wantPage(t, "audit filtered", r, http.StatusOK, "user.created", "dev03", `<option value="user.created" selected>`)
	if strings.Count(r.body, "<code>user.created</code>") != 1 || strings.Contains(r.body, ">dev04<") {
		t.Errorf("the audit filter lets other events through:\n%s", r.body)
	}
	future := time.Now().Add(time.Hour).UTC().Format("2006-01-02T15:04")
	r = root.get("/admin/audit?since=" + future)
	wantPage(t, "audit from the future", r, http.StatusOK, "Nothing yet", `value="`+future+`"`)
	r = root.get("/admin/audit?limit=3")
	wantPage(t, "audit paged", r, http.StatusOK, "Showing 1–3 of", `rel="next"`)

	r = root.get("/admin/users/" + e.plain.ID)
	wantPage(t, "user page", r, http.StatusOK, "<meter", "300.0 MiB of 1.0 GiB", `<option value="user" selected>`,
		`<label for="role">Role</label>`, `<label for="policy">Isolation policy</label>`, "api")

	// The JSON API still reads the same.
	var o adminOverview
	e.decode("root", "GET", "/admin/overview", "", &o)
	if o.Users.Total != 15 || o.Workspaces.StartQueue != 1 || o.Series == nil {
		t.Errorf("overview API: %+v", o)
	}
}
