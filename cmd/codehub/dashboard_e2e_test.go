package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// These tests walk the admin dashboard and the account page in headless
// Chromium, as an administrator and as a user, each in a browser context
// of their own, and keep a screenshot of every page (testenv.ArtifactPath).
// Every console error and uncaught exception of the pages fails them:
// among those, anything the pages' CSP refuses.

// consoleWatch collects the console errors and exceptions of a tab.
type consoleWatch struct {
	mu       sync.Mutex
	problems []string
	stop     context.CancelFunc
	done     chan struct{}
}

func watchConsole(ctx context.Context, who string) *consoleWatch {
	cctx, stop := context.WithCancel(ctx)
	w := &consoleWatch{stop: stop, done: make(chan struct{})}
	messages := chromedp.Console(cctx)
	go func() {
		defer close(w.done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				w.mu.Lock()
				w.problems = append(w.problems, who+": "+m.String()+" ("+m.URL+")")
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// check fails t with every problem seen.
func (w *consoleWatch) check(t *testing.T) {
	t.Helper()
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.problems {
		t.Errorf("browser console: %s", p)
	}
}

// newTab opens a tab in a browser context of its own (its own cookies).
func newTab(t *testing.T, bctx context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// Tall enough that a screenshot shows most of a page.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 1400)); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return ctx
}

// clickAndLoad clicks sel and waits for the page it leads to.
func clickAndLoad(sel chromedp.CSS) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(sel))(ctx, t)
		return err
	})
}

// confirmInDialog clicks sel, an action button, checks that the
// confirmation dialog asks with prompt, screenshots it as shot, and
// confirms, waiting for the page the action returns to.
func confirmInDialog(t *testing.T, ctx context.Context, sel, prompt, shot string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(sel)),
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog[open] #confirm-ok")),
	)
	if err != nil {
		testenv.Screenshot(t, ctx, shot+"-failed")
		t.Fatalf("open the confirmation of %s: %v", sel, err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#confirm-text")))
	if err != nil || !strings.Contains(text, prompt) {
		t.Errorf("the dialog asks %q (%v), want %q", text, err, prompt)
	}
	testenv.Screenshot(t, ctx, shot)
	if err := chromedp.Do(ctx, clickAndLoad(chromedp.CSS("#confirm-ok"))); err != nil {
		t.Fatalf("confirm %s: %v", sel, err)
	}
}

// wantFlash checks the outcome the page says.
func wantFlash(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#flash")))
	if err != nil || !strings.Contains(text, want) {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("the page (%s) says %q (%v), want %q", loc, text, err, want)
	}
}

// browserLogin signs in with the login form, going to "to" afterwards.
func browserLogin(t *testing.T, ctx context.Context, base, username, pw, to, wantSel string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/login?to="+to),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), username),
		chromedp.SendKeys(chromedp.CSS("#password"), pw),
		clickAndLoad(chromedp.CSS(`form[action="/login"] button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(wantSel)),
	)
	if err != nil {
		testenv.Screenshot(t, ctx, "login-"+username+"-failed")
		t.Fatalf("sign in as %s: %v", username, err)
	}
}

func heading(t *testing.T, ctx context.Context) string {
	t.Helper()
	h, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main h1")))
	if err != nil {
		t.Fatalf("the page's heading: %v", err)
	}
	return strings.TrimSpace(h)
}

// TestDashboardAdminAndAccount: an administrator walks the dashboard of
// a multi-user gateway (in front of the stand-in IDE), disables a user
// and ends another user's session; a user opens their account page, ends
// their other session and changes their password.
func TestDashboardAdminAndAccount(t *testing.T) {
	t.Parallel()
	cfg := multiConfig{Upstream: startStandInIDE(t)}.write(t)
	const pw = "dashboard-pass-1"
	createUser(t, cfg, "root", pw, "--role", "admin")
	for _, name := range []string{"alice", "carol", "dave"} {
		createUser(t, cfg, name, pw)
	}
	g := startMultiGateway(t, cfg)
	// carol signs in elsewhere; the administrator will end that session.
	carolTok := mustFormLogin(t, g, "carol", pw)
	if r, _ := getMe(t, g, "Cookie", sessionCookie(carolTok)); r.Status != http.StatusOK {
		t.Fatalf("carol's session: %d", r.Status)
	}

	bctx := testenv.Browser(t)
	ctx, cancel := context.WithTimeout(bctx, guard)
	defer cancel()
	admin := newTab(t, ctx)
	adminConsole := watchConsole(admin, "admin")

	// Sign in straight to the dashboard: the overview.
	browserLogin(t, admin, g.URL, "root", pw, "/admin", "#stat-active-users")
	testenv.Screenshot(t, admin, "overview")
	if h := heading(t, admin); h != "Overview" {
		t.Errorf("overview heading %q", h)
	}
	if n, err := chromedp.Run(admin, chromedp.Text(chromedp.CSS("#stat-sessions"))); err != nil || n != "2" {
		t.Errorf("live sessions on the overview: %q, %v (want root's and carol's)", n, err)
	}

	// Keyboard: the first Tab reaches the skip link, Enter moves to the
	// content.
	focused := func() string {
		v, err := chromedp.Run(admin, chromedp.Evaluate[string](`document.activeElement.id || document.activeElement.className`))
		if err != nil {
			t.Fatalf("active element: %v", err)
		}
		return v
	}
	if err := chromedp.Do(admin, chromedp.KeyEvent(kb.Tab)); err != nil {
		t.Fatal(err)
	}
	if f := focused(); f != "skip-link" {
		t.Errorf("the first Tab focuses %q, want the skip link", f)
	}
	if err := chromedp.Do(admin, chromedp.KeyEvent(kb.Enter)); err != nil {
		t.Fatal(err)
	}
	if f := focused(); f != "content" {
		t.Errorf("the skip link leads to %q, want the content", f)
	}

	// Users: search, open alice, disable her.
	err := chromedp.Do(admin,
		clickAndLoad(chromedp.CSS(`nav.dash-nav a[href="/admin/users"]`)),
		chromedp.WaitVisible(chromedp.CSS("#users-table")),
		chromedp.SendKeys(chromedp.CSS("#user-search"), "ali"),
		clickAndLoad(chromedp.CSS(`form.filters button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="alice"]`)),
	)
	testenv.Screenshot(t, admin, "users")
	if err != nil {
		t.Fatalf("search users: %v", err)
	}
	if rows, err := chromedp.Run(admin, chromedp.Evaluate[int](`document.querySelectorAll("#users-table tbody tr[data-user]").length`)); err != nil || rows != 1 {
		t.Errorf("searching 'ali' lists %d users (%v)", rows, err)
	}
	err = chromedp.Do(admin,
		clickAndLoad(chromedp.CSS(`tr[data-user="alice"] a`)),
		chromedp.WaitVisible(chromedp.CSS("#action-disable")),
	)
	testenv.Screenshot(t, admin, "user")
	if err != nil {
		t.Fatalf("alice's page: %v", err)
	}
	confirmInDialog(t, admin, "#action-disable", "Disable alice?", "confirm-disable")
	wantFlash(t, admin, "alice is disabled.")
	if s, _ := chromedp.Run(admin, chromedp.Text(chromedp.CSS("#user-status"))); s != "disabled" {
		t.Errorf("alice's status after disabling: %q", s)
	}
	testenv.Screenshot(t, admin, "user-disabled")
	if u := listUsers(t, cfg)["alice"]; u.Active {
		t.Error("alice is still active")
	}
	if resp, _ := formLogin(t, g, "alice", pw); resp.StatusCode == http.StatusSeeOther {
		t.Error("alice signs in while disabled")
	}

	// Sessions: carol's session, ended from the list. First with the
	// keyboard only: Enter on the button opens the dialog with Cancel
	// focused, Escape closes it, and nothing happens.
	err = chromedp.Do(admin,
		clickAndLoad(chromedp.CSS(`nav.dash-nav a[href="/admin/sessions"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="carol"] button`)),
	)
	testenv.Screenshot(t, admin, "sessions")
	if err != nil {
		t.Fatalf("sessions page: %v", err)
	}
	err = chromedp.Do(admin,
		chromedp.Focus(chromedp.CSS(`tr[data-user="carol"] button`)),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog[open]")),
	)
	if err != nil {
		t.Fatalf("open the dialog with the keyboard: %v", err)
	}
	if f := focused(); f != "confirm-cancel" {
		t.Errorf("the dialog opens with %q focused, want Cancel", f)
	}
	if err := chromedp.Do(admin, chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS("#confirm-dialog"))); err != nil {
		t.Fatalf("close the dialog with Escape: %v", err)
	}
	if r, _ := getMe(t, g, "Cookie", sessionCookie(carolTok)); r.Status != http.StatusOK {
		t.Fatalf("a cancelled dialog ended carol's session: %d", r.Status)
	}
	confirmInDialog(t, admin, `tr[data-user="carol"] button`, "End this session of carol", "confirm-revoke")
	wantFlash(t, admin, "The session of carol has ended.")
	testenv.Screenshot(t, admin, "sessions-after")
	if r, _ := getMe(t, g, "Cookie", sessionCookie(carolTok)); r.Status != http.StatusUnauthorized {
		t.Errorf("carol's cookie after the revocation: %d, want 401", r.Status)
	}
	wantNoIDE(t, g, carolTok, "/after-revoke")

	// The audit log: the administrator's actions, filtered by type.
	err = chromedp.Do(admin,
		clickAndLoad(chromedp.CSS(`nav.dash-nav a[href="/admin/audit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#audit-type")),
		chromedp.SetValue(chromedp.CSS("#audit-type"), "admin.action"),
		clickAndLoad(chromedp.CSS(`form.filters button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#audit-events table")),
	)
	testenv.Screenshot(t, admin, "audit")
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	events, err := chromedp.Run(admin, chromedp.Text(chromedp.CSS("#audit-events")))
	if err != nil || !strings.Contains(events, `"action":"user.update"`) || !strings.Contains(events, `"action":"session.revoke"`) ||
		strings.Contains(events, "user.login ") {
		t.Errorf("admin.action events on the audit page: %v\n%s", err, events)
	}
	// Back to the overview: the disabled user and the ended session show.
	if err := chromedp.Do(admin, clickAndLoad(chromedp.CSS(`nav.dash-nav a[href="/admin"]`))); err != nil {
		t.Fatal(err)
	}
	testenv.Screenshot(t, admin, "overview-after")
	if n, _ := chromedp.Run(admin, chromedp.Text(chromedp.CSS("#stat-sessions"))); n != "1" {
		t.Errorf("live sessions on the overview after the revocation: %q", n)
	}

	// Add a person: erin, created with the users page's form, signs in
	// with the password chosen for her.
	err = chromedp.Do(admin,
		clickAndLoad(chromedp.CSS(`nav.dash-nav a[href="/admin/users"]`)),
		chromedp.WaitVisible(chromedp.CSS("#create-user")),
		chromedp.SendKeys(chromedp.CSS("#new-username"), "erin"),
		chromedp.SendKeys(chromedp.CSS("#new-email"), "erin@example.com"),
		chromedp.SendKeys(chromedp.CSS("#new-password"), pw),
		clickAndLoad(chromedp.CSS("#action-create")),
		chromedp.WaitVisible(chromedp.CSS("#user-status")),
	)
	testenv.Screenshot(t, admin, "user-created")
	if err != nil {
		t.Fatalf("create erin with the form: %v", err)
	}
	wantFlash(t, admin, "erin is created")
	if h := heading(t, admin); !strings.HasPrefix(h, "erin") {
		t.Errorf("after creating erin the page is %q, want her page", h)
	}
	if resp, _ := formLogin(t, g, "erin", pw); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("erin cannot sign in: %d", resp.StatusCode)
	}

	// dave, in a browser of his own, with another session elsewhere.
	daveOther := mustFormLogin(t, g, "dave", pw)
	_, otherMe := getMe(t, g, "Cookie", sessionCookie(daveOther))
	user := newTab(t, ctx)
	userConsole := watchConsole(user, "dave")
	browserLogin(t, user, g.URL, "dave", pw, "/account", "#password-form")
	testenv.Screenshot(t, user, "account")
	if h := heading(t, user); h != "Your account" {
		t.Errorf("account heading %q", h)
	}
	if n, err := chromedp.Run(user, chromedp.Evaluate[int](`document.querySelectorAll("#my-sessions tbody tr").length`)); err != nil || n != 2 {
		t.Errorf("dave's page lists %d sessions (%v), want 2", n, err)
	}
	if _, err := chromedp.Run(user, chromedp.Text(chromedp.CSS("#current-session"))); err != nil {
		t.Errorf("the current session is not marked: %v", err)
	}
	if n, _ := chromedp.Run(user, chromedp.Evaluate[int](`document.querySelectorAll('a[href="/admin"]').length`)); n != 0 {
		t.Error("a user's page links to the dashboard")
	}
	confirmInDialog(t, user, `tr[data-session="`+otherMe.Session.ID+`"] button`, "Sign out this browser session", "account-confirm-revoke")
	wantFlash(t, user, "The session is signed out.")
	if r, _ := getMe(t, g, "Cookie", sessionCookie(daveOther)); r.Status != http.StatusUnauthorized {
		t.Errorf("dave's other cookie after he signed it out: %d, want 401", r.Status)
	}

	// Change the password: the page refuses two different new passwords
	// before anything is sent, then the change works.
	const newPW = "dashboard-pass-2"
	err = chromedp.Do(user,
		chromedp.SendKeys(chromedp.CSS("#current-password"), pw),
		chromedp.SendKeys(chromedp.CSS("#new-password"), newPW),
		chromedp.SendKeys(chromedp.CSS("#confirm-password"), newPW+"x"),
		chromedp.Click(chromedp.CSS("#change-password")),
	)
	testenv.Screenshot(t, user, "account-password-mismatch")
	if err != nil {
		t.Fatalf("mismatched passwords: %v", err)
	}
	if bad, err := chromedp.Run(user, chromedp.Evaluate[bool](`document.getElementById("confirm-password").validity.customError`)); err != nil || !bad {
		t.Errorf("two different new passwords are not flagged: %v", err)
	}
	if loc, _ := chromedp.Run(user, chromedp.Location()); loc != g.URL+"/account" {
		t.Errorf("two different new passwords were sent: the browser is at %s", loc)
	}
	err = chromedp.Do(user,
		chromedp.Evaluate[chromedp.Void](`document.getElementById("confirm-password").value = ""`),
		chromedp.SendKeys(chromedp.CSS("#confirm-password"), newPW),
		clickAndLoad(chromedp.CSS("#change-password")),
	)
	if err != nil {
		t.Fatalf("change the password: %v", err)
	}
	wantFlash(t, user, "Your password is changed.")
	testenv.Screenshot(t, user, "account-password-changed")
	if resp, _ := formLogin(t, g, "dave", pw); resp.StatusCode == http.StatusSeeOther {
		t.Error("the old password still signs in")
	}
	mustFormLogin(t, g, "dave", newPW)

	// The no-script confirmation page, in the browser: a form posted
	// without the dialog.
	err = chromedp.Do(admin,
		chromedp.Navigate(g.URL+"/admin/users"),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="dave"] a`)),
		clickAndLoad(chromedp.CSS(`tr[data-user="dave"] a`)),
		chromedp.WaitVisible(chromedp.CSS("#action-revoke-sessions")),
		chromedp.RemoveAttribute(chromedp.CSS(`form[action$="/revoke-sessions"]`), "data-confirm"),
		clickAndLoad(chromedp.CSS("#action-revoke-sessions")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-submit")),
	)
	testenv.Screenshot(t, admin, "confirm-page")
	if err != nil {
		t.Fatalf("the confirmation page: %v", err)
	}
	if err := chromedp.Do(admin, clickAndLoad(chromedp.CSS("#confirm-submit"))); err != nil {
		t.Fatal(err)
	}
	wantFlash(t, admin, "session(s) of dave")
	if err := chromedp.Do(user, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	if loc, _ := chromedp.Run(user, chromedp.Location()); !strings.Contains(loc, "/login") {
		t.Errorf("dave's browser after the administrator ended his sessions is at %s, want the login page", loc)
	}

	adminConsole.check(t)
	userConsole.check(t)
	if s := g.stderr.String(); strings.Contains(s, "panic") {
		t.Errorf("the gateway panicked:\n%s", s)
	}
}

// dashUser creates an account with a role through the CLI, on a wsEnv.
func dashUser(t *testing.T, e *wsEnv, name, pw, role string) {
	t.Helper()
	var out, errOut bytes.Buffer
	argv := []string{"codehub", "user", "create", "--username", name, "--email", name + "@example.com",
		"--role", role, "--password-stdin", "--config", e.File}
	if err := run(context.Background(), argv, e.getenv, strings.NewReader(pw+"\n"), &out, &errOut); err != nil {
		t.Fatalf("codehub user create %s: %v\n%s", name, err, errOut.String())
	}
}

// TestDashboardWorkspaces runs real workspaces (the directory strategy:
// agents and code-servers as processes): the administrator sees a user's
// running workspace and stops it from the dashboard; the user sees it on
// their account page, with its use against the policy's limits, and stops
// it there once it runs again.
func TestDashboardWorkspaces(t *testing.T) {
	e := newWSEnv(t, wsOptions{Strategy: "directory"})
	const pw = "workspace-pass-1"
	dashUser(t, e, "root", pw, "admin")
	erinID := e.createUser("erin", pw)
	g := e.startGateway()

	erinTok := mustFormLogin(t, g, "erin", pw)
	openWorkbench(t, g, erinTok)
	e.runningWorkspace(erinID)

	bctx := testenv.Browser(t)
	ctx, cancel := context.WithTimeout(bctx, guard)
	defer cancel()

	// erin's page: the running workspace, its use, stop and restart.
	user := newTab(t, ctx)
	userConsole := watchConsole(user, "erin")
	browserLogin(t, user, g.URL, "erin", pw, "/account", "#workspace")
	testenv.Screenshot(t, user, "account-running")
	if st, _ := chromedp.Run(user, chromedp.Text(chromedp.CSS("#ws-state"))); st != "running" {
		t.Errorf("erin's page says the workspace is %q", st)
	}
	if n, err := chromedp.Run(user, chromedp.Evaluate[int](`document.querySelectorAll(".gauges meter").length`)); err != nil || n < 3 {
		t.Errorf("erin's page shows %d meters (%v), want storage, memory, CPU and more", n, err)
	}
	for _, sel := range []string{"#workspace-stop", "#workspace-restart"} {
		if _, err := chromedp.Run(user, chromedp.Text(chromedp.CSS(sel))); err != nil {
			t.Errorf("no %s: %v", sel, err)
		}
	}

	// The administrator stops it from the workspaces page.
	admin := newTab(t, ctx)
	adminConsole := watchConsole(admin, "admin")
	browserLogin(t, admin, g.URL, "root", pw, "/admin", "#stat-workspaces")
	testenv.Screenshot(t, admin, "overview-workspaces")
	err := chromedp.Do(admin,
		clickAndLoad(chromedp.CSS(`nav.dash-nav a[href="/admin/workspaces"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-user="erin"] .badge-running`)),
	)
	testenv.Screenshot(t, admin, "workspaces")
	if err != nil {
		t.Fatalf("workspaces page: %v", err)
	}
	row, err := chromedp.Run(admin, chromedp.Text(chromedp.CSS(`tr[data-user="erin"]`)))
	if err != nil || !strings.Contains(row, "running") {
		t.Errorf("erin's row: %q, %v", row, err)
	}
	confirmInDialog(t, admin, `tr[data-user="erin"] button.danger`, "Stop the workspace of erin?", "confirm-stop")
	wantFlash(t, admin, "The workspace of erin is stopped.")
	testenv.Screenshot(t, admin, "workspaces-stopped")
	if w := e.workspaceOf(erinID); w.State != workspace.StateStopped {
		t.Errorf("erin's workspace after the stop: %s", w.State)
	}
	if st, _ := chromedp.Run(admin, chromedp.Text(chromedp.CSS(`tr[data-user="erin"] .badge`))); st != "stopped" {
		t.Errorf("the workspaces page says %q after the stop", st)
	}

	// erin's open page follows by itself (dashboard.js polls her
	// workspace's state): stopped, with the way back to the editor.
	if err := chromedp.Do(user, chromedp.WaitVisible(chromedp.CSS(`#workspace[data-state="stopped"] #open-editor`))); err != nil {
		t.Fatalf("erin's page does not follow the stop: %v", err)
	}
	testenv.Screenshot(t, user, "account-stopped")
	if st, _ := chromedp.Run(user, chromedp.Text(chromedp.CSS("#ws-state"))); st != "stopped" {
		t.Errorf("erin's page says %q after the stop", st)
	}

	// It runs again when erin opens the editor; she stops it herself.
	openWorkbench(t, g, erinTok)
	e.runningWorkspace(erinID)
	if err := chromedp.Do(user, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#workspace-stop"))); err != nil {
		t.Fatal(err)
	}
	confirmInDialog(t, user, "#workspace-stop", "Stop your workspace?", "account-confirm-stop")
	wantFlash(t, user, "Your workspace is stopped.")
	testenv.Screenshot(t, user, "account-stopped-by-user")
	if w := e.workspaceOf(erinID); w.State != workspace.StateStopped {
		t.Errorf("erin's workspace after she stopped it: %s", w.State)
	}

	adminConsole.check(t)
	userConsole.check(t)
}
