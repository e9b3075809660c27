package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// These tests drive headless Chromium against a gateway whose users have
// real workspaces. They do not run in parallel with others, so that the
// times they measure are the machine's, not the other tests'.

// explorerSection is VS Code's explorer header for the folder every
// workspace opens (<home>/workspaces).
var explorerSection = chromedp.CSS(`[aria-label="Explorer Section: workspaces"]`)

// explorerRow is the explorer's row for a file.
func explorerRow(name string) chromedp.CSS {
	return chromedp.CSS(`.explorer-folders-view .monaco-list-row[aria-label="` + name + `"]`)
}

// fillLogin opens the login page and types the credentials, leaving the
// form to be submitted.
func fillLogin(ctx context.Context, g *testGateway, username, pw string) error {
	return chromedp.Do(ctx,
		chromedp.Navigate(g.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SendKeys(chromedp.CSS(`#username`), username),
		chromedp.SendKeys(chromedp.CSS(`#password`), pw),
	)
}

// submitLogin submits the login form and waits for the explorer.
func submitLogin(ctx context.Context) error {
	return chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type="submit"]`)),
		chromedp.WaitVisible(explorerSection),
	)
}

// explorerRows lists the names the explorer shows.
func explorerRows(ctx context.Context) ([]string, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll('.explorer-folders-view .monaco-list-row')).map(e => e.getAttribute('aria-label'))`))
}

// TestWorkspaceIsolationTwoBrowsers: alice and bob, signed in at once in
// two browsers, each see their own files and their own settings, and not
// the other's.
func TestWorkspaceIsolationTwoBrowsers(t *testing.T) {
	e := newWSEnv(t, wsOptions{})
	type person struct {
		name, pw, file, theme, themeClass string
		id, tok                           string
		w                                 *workspace.Workspace
		ctx                               context.Context
	}
	people := []*person{
		{name: "alice", pw: alicePW, file: "alice-only.txt", theme: "Default Light Modern", themeClass: "vs"},
		{name: "bob", pw: bobPW, file: "bob-only.txt", theme: "Default Dark Modern", themeClass: "vs-dark"},
	}
	for _, p := range people {
		p.id = e.createUser(p.name, p.pw)
	}
	g := e.startGateway()

	// Start both workspaces, then give each a file and settings of their
	// own, as their accounts' files.
	for _, p := range people {
		p.tok = mustFormLogin(t, g, p.name, p.pw)
		navigate(t, g.URL+"/", p.tok) // the start goes on in the background
	}
	for _, p := range people {
		openWorkbench(t, g, p.tok)
		p.w = e.runningWorkspace(p.id)
		writeOwned(t, p.w, "workspaces/"+p.file, []byte("only "+p.name+" sees this\n"))
		writeOwned(t, p.w, "state/User/settings.json", []byte(fmt.Sprintf(
			"{\n  \"workbench.colorTheme\": %q,\n  \"workbench.startupEditor\": \"none\",\n  \"editor.fontSize\": %d\n}\n", p.theme, 11+len(p.name))))
	}

	// The settings are two files, on two file systems, owned by two
	// accounts; each reads only their own through the IDE.
	alice, bob := people[0], people[1]
	var stA, stB syscall.Stat_t
	setA := workspace.Layout{Home: alice.w.Home}.StateUser() + "/settings.json"
	setB := workspace.Layout{Home: bob.w.Home}.StateUser() + "/settings.json"
	if err := syscall.Stat(setA, &stA); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(setB, &stB); err != nil {
		t.Fatal(err)
	}
	if stA.Uid == stB.Uid || stA.Dev == stB.Dev || fmt.Sprint(stA.Uid) != alice.w.Meta["uid"] || fmt.Sprint(stB.Uid) != bob.w.Meta["uid"] {
		t.Errorf("settings files: alice's uid %d dev %d, bob's uid %d dev %d; want each on its own file system, owned by its account (%s, %s)",
			stA.Uid, stA.Dev, stB.Uid, stB.Dev, alice.w.Meta["uid"], bob.w.Meta["uid"])
	}
	if r := remoteResource(t, g, alice.tok, setA); r.Status != http.StatusOK || !strings.Contains(string(r.Body), alice.theme) {
		t.Errorf("alice's settings through her IDE: %d %.200q", r.Status, r.Body)
	}
	if r := remoteResource(t, g, alice.tok, setB); r.Status == http.StatusOK {
		t.Errorf("alice reads bob's settings through her IDE: %.200q", r.Body)
	}

	// Both sign in in browsers of their own, at the same time.
	for _, p := range people {
		p.ctx = testenv.Browser(t)
	}
	errs := make([]error, len(people))
	var wg sync.WaitGroup
	for i, p := range people {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(p.ctx, guard)
			defer cancel()
			if err := fillLogin(ctx, g, p.name, p.pw); err != nil {
				errs[i] = fmt.Errorf("login page: %w", err)
				return
			}
			if err := submitLogin(ctx); err != nil {
				errs[i] = fmt.Errorf("explorer after signing in: %w", err)
				return
			}
			errs[i] = chromedp.Do(ctx, chromedp.WaitVisible(explorerRow(p.file)))
		}()
	}
	wg.Wait()
	for i, p := range people {
		if errs[i] != nil {
			testenv.Screenshot(t, p.ctx, p.name)
			t.Fatalf("%s's browser: %v", p.name, errs[i])
		}
	}
	for i, p := range people {
		defer testenv.Screenshot(t, p.ctx, p.name)
		other := people[1-i]
		rows, err := explorerRows(p.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(rows, p.file) || slices.Contains(rows, other.file) {
			t.Errorf("%s's explorer lists %q: want %s, not %s", p.name, rows, p.file, other.file)
		}
		// The theme applies once the built-in themes have loaded.
		ctx, cancel := context.WithTimeout(p.ctx, guard)
		_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('.monaco-workbench').classList.contains('`+p.themeClass+`')`))
		cancel()
		if err != nil {
			classes, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.querySelector('.monaco-workbench').className`))
			t.Errorf("%s's workbench has classes %q, want %q from the %s theme in their settings (%v)", p.name, classes, p.themeClass, p.theme, err)
		}
		if loc, _ := chromedp.Run(p.ctx, chromedp.Location()); !strings.Contains(loc, filepath.Base(p.w.Home)) {
			t.Errorf("%s's browser is at %s, not in their workspace %s", p.name, loc, p.w.ID)
		}
	}
}

// TestWorkspaceSignInTimings measures, in Chromium, the time from
// submitting the login form to VS Code's explorer showing: cold (the
// workspace starts on sign-in) and from the warm pool, three new users
// each. The gateway (and so the agents) is the real binary, not this test
// binary with the race detector. The figures are logged, for the README;
// nothing is asserted about them.
func TestWorkspaceSignInTimings(t *testing.T) {
	const runs = 3
	bctx := testenv.Browser(t)
	measure := func(t *testing.T, e *wsEnv, g *testGateway, name string, before func()) time.Duration {
		t.Helper()
		e.createUser(name, "timing-password-1")
		ctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
		defer cancel()
		ctx, cancelT := context.WithTimeout(ctx, guard)
		defer cancelT()
		if err := fillLogin(ctx, g, name, "timing-password-1"); err != nil {
			t.Fatalf("login page: %v", err)
		}
		before()
		start := time.Now()
		err := submitLogin(ctx)
		d := time.Since(start)
		if err != nil {
			testenv.Screenshot(t, ctx, name)
			t.Fatalf("%s: explorer after signing in: %v", name, err)
		}
		// Where the time went: until the workbench page's first byte
		// (sign-in, workspace start, redirects), then in the browser.
		first, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.timeOrigin + performance.getEntriesByType('navigation')[0].responseStart`))
		if err == nil {
			page := time.UnixMicro(int64(first * 1000)).Sub(start)
			t.Logf("%s: sign-in to explorer %s (workbench page after %s, then %s in the browser)",
				name, d.Round(time.Millisecond), page.Round(time.Millisecond), (d - page).Round(time.Millisecond))
		}
		return d
	}

	var cold, warm []time.Duration
	t.Run("cold", func(t *testing.T) {
		e := newWSEnv(t, wsOptions{})
		g := e.startProcGateway(codehubBinary(t)).gateway()
		for i := range runs {
			cold = append(cold, measure(t, e, g, fmt.Sprintf("cold%d", i), func() {}))
		}
	})
	t.Run("warm", func(t *testing.T) {
		e := newWSEnv(t, wsOptions{WarmPool: 1})
		g := e.startProcGateway(codehubBinary(t)).gateway()
		claimed := ""
		for i := range runs {
			name := fmt.Sprintf("warm%d", i)
			var ready *workspace.Workspace
			d := measure(t, e, g, name, func() {
				ready = e.waitWarm(claimed)
				time.Sleep(time.Second) // let the pool's start settle
			})
			id := listUsersOf(t, e)[name]
			if w := e.workspaceOf(id); w.ID != ready.ID {
				t.Errorf("%s got workspace %s, not the warm %s", name, w.ID, ready.ID)
			}
			claimed = ready.ID
			warm = append(warm, d)
		}
	})
	if len(cold) == runs && len(warm) == runs {
		load, _ := os.ReadFile("/proc/loadavg")
		t.Logf("FIGURE sign-in to explorer in Chromium, p50 of %d: cold %s, warm pool %s (cold runs %v, warm runs %v; %d CPUs, load average %s)",
			runs, p50(cold).Round(10*time.Millisecond), p50(warm).Round(10*time.Millisecond), cold, warm,
			runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "))
	}
}

// listUsersOf maps the installation's usernames to ids.
func listUsersOf(t *testing.T, e *wsEnv) map[string]string {
	t.Helper()
	m := map[string]string{}
	for name, u := range listUsers(t, e.File) {
		m[name] = u.ID
	}
	return m
}

// TestStorageWarningInEditor: a person at work in the editor is warned
// when their home is nearly full (90%), and again when it is full, in the
// editor's page itself, before saving fails unannounced (before, nothing
// was shown, and VS Code's state files were left empty).
func TestStorageWarningInEditor(t *testing.T) {
	const quotaMB = 64
	e := newWSEnv(t, wsOptions{StorageMB: quotaMB, SampleInterval: time.Second})
	id := e.createUser("alice", alicePW)
	g := e.startGateway()
	ctx := testenv.Browser(t)
	if err := fillLogin(ctx, g, "alice", alicePW); err != nil {
		t.Fatalf("login page: %v", err)
	}
	if err := submitLogin(ctx); err != nil {
		testenv.Screenshot(t, ctx, "alice")
		t.Fatalf("explorer after signing in: %v", err)
	}
	defer testenv.Screenshot(t, ctx, "storage-warning")
	w := e.runningWorkspace(id)
	folder := workspace.Layout{Home: w.Home}.Workspaces()
	tok := mustFormLogin(t, g, "alice", alicePW)

	// banner waits for the editor's storage warning at level (it polls
	// every 30 seconds) and returns its text.
	banner := func(level string) string {
		t.Helper()
		pred := `(() => { const b = document.getElementById('codehub-storage-warning'); return !!b && b.dataset.level === ` +
			strconv.Quote(level) + ` && b.offsetHeight > 0; })()`
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](pred, chromedp.WithPollingInterval(500*time.Millisecond),
			chromedp.WithPollingTimeout(guard))); err != nil {
			testenv.Screenshot(t, ctx, "no-"+level+"-warning")
			t.Fatalf("no %s storage warning in the editor: %v (the API says %+v)", level, err, myWorkspace(t, g, tok).Usage)
		}
		text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('codehub-storage-warning').innerText`))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the editor says: %s", text)
		return text
	}
	if n, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#codehub-storage-warning').length`)); n != 0 {
		t.Fatal("a storage warning on an empty home")
	}

	// Up to 91%.
	s := myWorkspace(t, g, tok).Usage.Storage
	mib := (s.Limit*91/100-s.Used)>>20 + 1
	if out, err := asWorkspace(w, "dd", "if=/dev/zero", "of="+filepath.Join(folder, "big.bin"), "bs=1M",
		"count="+strconv.FormatInt(mib, 10), "status=none").CombinedOutput(); err != nil {
		t.Fatalf("write up to 91%%: %v %s", err, out)
	}
	if text := banner("warning"); !strings.Contains(text, "% full") || !strings.Contains(text, "Free some space") {
		t.Errorf("the warning at 91%%: %q", text)
	}
	// Dismissed, it stays away while the level holds.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#codehub-storage-warning button`))); err != nil {
		t.Fatal(err)
	}

	// Full: the warning comes back, saying so.
	out, err := asWorkspace(w, "dd", "if=/dev/zero", "of="+filepath.Join(folder, "fill.bin"), "bs=1M").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "No space left on device") {
		t.Fatalf("filling the home: %v %s", err, out)
	}
	if text := banner("full"); !strings.Contains(text, "Your home is full") || !strings.Contains(text, "No space left on device") {
		t.Errorf("the warning when full: %q", text)
	}
}
