package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/testenv"
)

// TestBrowserSixSignInsWithDefaultCap: a person signs in from six
// browsers in a row (closed windows, private windows, a cleared cookie
// jar) with the default cap of five sessions. Every sign-in reaches the
// IDE; the sixth says, once, which session it ended (the least recently
// used, the first), and the audit log says why. Five sessions remain.
func TestBrowserSixSignInsWithDefaultCap(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	cfg := multiConfig{Upstream: startStandInIDE(t), DataDir: dataDir, DefaultSessionCap: true}.write(t)
	const pw = "six-browsers-1"
	createUser(t, cfg, "alice", pw)
	g := startMultiGateway(t, cfg)
	bctx := testenv.Browser(t)

	var tabs []context.Context
	for i := 1; i <= 6; i++ {
		tab := newTab(t, bctx)
		tabs = append(tabs, tab)
		if i < 6 {
			browserLogin(t, tab, g.URL, "alice", pw, "/", "#"+ideMarker)
			continue
		}
		browserLogin(t, tab, g.URL, "alice", pw, "/", "main a.button")
		testenv.Screenshot(t, tab, "sixth-sign-in-notice")
		text, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("main")))
		if err != nil || !strings.Contains(text, "You were signed in 5 times, the most allowed, so the session last used") ||
			!strings.Contains(text, "was ended") {
			t.Fatalf("the page after the sixth sign-in says %q (%v)", text, err)
		}
		if err := chromedp.Do(tab, clickAndLoad(chromedp.CSS("main a.button")), chromedp.WaitVisible(chromedp.CSS("#"+ideMarker))); err != nil {
			testenv.Screenshot(t, tab, "sixth-continue-failed")
			t.Fatalf("continue to the IDE: %v", err)
		}
	}
	// The notice was shown once: the IDE again, straight.
	if err := chromedp.Do(tabs[5], chromedp.Navigate(g.URL+"/login/notice?to=/"), chromedp.WaitVisible(chromedp.CSS("#"+ideMarker))); err != nil {
		t.Fatalf("the notice page a second time: %v", err)
	}
	// The first browser's session, the least recently used, ended; the
	// other five go on.
	if err := chromedp.Do(tabs[0], chromedp.Navigate(g.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#username"))); err != nil {
		testenv.Screenshot(t, tabs[0], "first-browser-after-sixth")
		t.Fatalf("the first browser after the sixth sign-in: %v; want the sign-in page", err)
	}
	for i, tab := range tabs[1:] {
		if err := chromedp.Do(tab, chromedp.Navigate(g.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#"+ideMarker))); err != nil {
			t.Fatalf("browser %d after the sixth sign-in: %v; want the IDE", i+2, err)
		}
	}
	var sessions struct {
		Sessions []struct {
			Current bool `json:"current"`
		} `json:"sessions"`
	}
	if err := chromedp.Do(tabs[5], chromedp.Navigate(g.URL+"/api/v1/me/sessions")); err != nil {
		t.Fatal(err)
	}
	body, err := chromedp.Run(tabs[5], chromedp.Text(chromedp.CSS("body")))
	if err != nil || json.Unmarshal([]byte(body), &sessions) != nil || len(sessions.Sessions) != 5 {
		t.Fatalf("alice's sessions: %v %s; want 5", err, body)
	}

	// The audit log has the ended session, with why.
	var found bool
	eventually(t, guard, "no session.revoked event for the ended session in the audit log", func() bool {
		f, err := os.Open(filepath.Join(dataDir, "audit.log"))
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e audit.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.EventType == audit.SessionRevoked && e.Username == "alice" &&
				e.Metadata["reason"] == "max sessions per user: least recently used ended" {
				found = true
			}
		}
		return found
	})
	if m := do(t, http.MethodGet, g.URL+"/metrics", nil); !strings.Contains(string(m.Body), "\ncodehub_sessions_evicted_total 1\n") {
		t.Errorf("metrics lack one evicted session:\n%s", m.Body)
	}
	if s := g.stderr.String(); strings.Contains(s, "panic") {
		t.Errorf("the gateway panicked:\n%s", s)
	}
}

// TestCLIUnlockClearsFailureLocks: failures lock a name from an address;
// `codehub user unlock` lifts those locks too, on the running gateway.
func TestCLIUnlockClearsFailureLocks(t *testing.T) {
	t.Parallel()
	cfg := multiConfig{Upstream: startStandInIDE(t)}.write(t)
	createUser(t, cfg, "alice", "alice-pass-01")
	g := startMultiGateway(t, cfg)
	for range 5 {
		postJSON(t, g.URL+"/api/v1/auth/login", map[string]string{"username": "alice", "password": "wrong-password"})
	}
	r := postJSON(t, g.URL+"/api/v1/auth/login", map[string]string{"username": "alice", "password": "alice-pass-01"})
	if r.Status != http.StatusLocked || r.Header.Get("Retry-After") != "60" {
		t.Fatalf("right password after five failures from this address: %d %s", r.Status, r.Body)
	}
	if m := do(t, http.MethodGet, g.URL+"/metrics", nil); !strings.Contains(string(m.Body), "\ncodehub_signin_locks_total{scope=\"client\"} 1\n") {
		t.Errorf("metrics lack the lock:\n%s", m.Body)
	}
	if out := mustCLI(t, cfg, "", "unlock", "alice"); out != "alice is unlocked\n" {
		t.Errorf("unlock: %q", out)
	}
	apiLogin(t, g, "alice", "alice-pass-01")
}

// TestBrowserDashboardClearsLock: an administrator sees, on a user's
// dashboard page, that failed sign-ins locked the user's name from an
// address, and clears that lock through the confirmation dialog; the user
// signs in from there again.
func TestBrowserDashboardClearsLock(t *testing.T) {
	t.Parallel()
	cfg := multiConfig{Upstream: startStandInIDE(t)}.write(t)
	const pw = "dashboard-pass-1"
	createUser(t, cfg, "root", pw, "--role", "admin")
	createUser(t, cfg, "alice", pw)
	g := startMultiGateway(t, cfg)
	for range 5 {
		postJSON(t, g.URL+"/api/v1/auth/login", map[string]string{"username": "alice", "password": "wrong-password"})
	}
	if r := postJSON(t, g.URL+"/api/v1/auth/login", map[string]string{"username": "alice", "password": pw}); r.Status != http.StatusLocked {
		t.Fatalf("alice after five failures: %d", r.Status)
	}
	aliceID := listUsers(t, cfg)["alice"].ID

	bctx := testenv.Browser(t)
	ctx, cancel := context.WithTimeout(bctx, guard)
	defer cancel()
	admin := newTab(t, ctx)
	console := watchConsole(admin, "admin")
	browserLogin(t, admin, g.URL, "root", pw, "/admin/users/"+aliceID, "#locks-table")
	testenv.Screenshot(t, admin, "user-with-lock")
	row, err := chromedp.Run(admin, chromedp.Text(chromedp.CSS(`#locks-table tr[data-client="127.0.0.1"]`)))
	if err != nil || !strings.Contains(row, "alice") || !strings.Contains(row, "127.0.0.1") {
		t.Fatalf("the lock's row: %q (%v)", row, err)
	}
	confirmInDialog(t, admin, `#locks-table tr[data-client="127.0.0.1"] button`, "Clear the sign-in lock of alice from 127.0.0.1?", "confirm-clear-lock")
	wantFlash(t, admin, "The lock of alice from 127.0.0.1 is cleared.")
	testenv.Screenshot(t, admin, "user-lock-cleared")
	apiLogin(t, g, "alice", pw)
	console.check(t)
}

// TestLockoutSharedAcrossGatewaysPostgres: two gateways on one PostgreSQL
// count the failures of one name from one address together, lock it from
// that address on both, and let the right password in from another; a
// name with no account is answered the same way throughout.
func TestLockoutSharedAcrossGatewaysPostgres(t *testing.T) {
	t.Parallel()
	shared := multiConfig{Upstream: startStandInIDE(t), PostgresURL: testPostgres(t), TrustLoopbackProxy: true}
	cfgA, cfgB := shared.write(t), shared.write(t)
	const pw = "alice-password-1"
	createUser(t, cfgA, "alice", pw)
	gws := []*testGateway{startMultiGateway(t, cfgA), startMultiGateway(t, cfgB)}
	login := func(g *testGateway, name, pw, ip string) (int, string) {
		r := postJSON(t, g.URL+"/api/v1/auth/login", map[string]string{"username": name, "password": pw}, "X-Forwarded-For", ip)
		if r.Status == http.StatusOK {
			return r.Status, ""
		}
		return r.Status, r.errorBody(t).Error.Code
	}
	type answer struct {
		Status int
		Code   string
	}
	var seqs [2][]answer
	for i, name := range []string{"alice", "nobody"} {
		for n := range 6 {
			st, code := login(gws[n%2], name, "wrong-password", "192.0.2.7")
			seqs[i] = append(seqs[i], answer{st, code})
		}
	}
	if !slices.Equal(seqs[0], seqs[1]) {
		t.Fatalf("alice was answered %v, a name without account %v", seqs[0], seqs[1])
	}
	if seqs[0][3].Status != http.StatusUnauthorized || seqs[0][4].Status != http.StatusLocked || seqs[0][5].Code != "account_locked" {
		t.Fatalf("five failures over two gateways: %v; want the fifth to lock", seqs[0])
	}
	for _, g := range gws {
		if st, _ := login(g, "alice", pw, "192.0.2.7"); st != http.StatusLocked {
			t.Errorf("right password from the locked address on %s: %d", g.URL, st)
		}
		if st, _ := login(g, "alice", pw, "198.51.100.8"); st != http.StatusOK {
			t.Errorf("right password from another address on %s: %d", g.URL, st)
		}
	}
}
