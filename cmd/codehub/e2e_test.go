package main

import (
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/gorilla/websocket"
)

// These tests run the real code-server behind codehub.

// TestWorkbenchOverHTTP signs in over HTTP, then loads the VS Code
// workbench page and its scripts and styles through the proxy.
func TestWorkbenchOverHTTP(t *testing.T) {
	g := startGateway(t, nil)

	// Wrong password: no session, no IDE.
	c, resp := g.login("not the password")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	if resp, _ := get(t, c, g.URL+"/"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("IDE without a session: %d", resp.StatusCode)
	}

	c, resp = g.login(g.Password)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	// code-server redirects / to the folder it was opened with.
	resp, _ = get(t, c, g.URL+"/")
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "folder=") {
		t.Fatalf("GET /: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	page := g.URL + "/" + strings.TrimPrefix(loc.String(), "./")
	resp, body := get(t, c, page)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "workbench") {
		t.Fatalf("workbench page: %d\n%.500s", resp.StatusCode, body)
	}
	// Every script and stylesheet the page names loads through the proxy.
	assets := regexp.MustCompile(`(?:src|href)="(?:\./)?([^":]+\.(?:js|css|svg|json))"`).FindAllStringSubmatch(body, -1)
	if len(assets) < 4 {
		t.Fatalf("found %d assets in the workbench page", len(assets))
	}
	for _, a := range assets {
		u := g.URL + "/" + a[1]
		resp, body := get(t, c, u)
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("asset %s: %d (%d bytes)", a[1], resp.StatusCode, len(body))
		}
		ct := resp.Header.Get("Content-Type")
		if strings.HasSuffix(a[1], ".js") && !strings.Contains(ct, "javascript") {
			t.Errorf("asset %s: Content-Type %q", a[1], ct)
		}
	}
}

// TestWebSocketToCodeServer opens VS Code's remote-connection WebSocket
// through the gateway: code-server's own Origin check must accept what the
// gateway forwards, and the gateway must refuse a foreign Origin.
func TestWebSocketToCodeServer(t *testing.T) {
	g := startGateway(t, nil)
	c, _ := g.login(g.Password)
	u, _ := url.Parse(g.URL)
	wsu := "ws://" + u.Host + "/?reconnectionToken=7f3c1a2e-0000-4000-8000-000000000001&reconnection=false&skipWebSocketFrames=false"

	d := websocket.Dialer{Jar: c.Jar, HandshakeTimeout: guard}
	ws, resp, err := d.Dial(wsu, http.Header{"Origin": {g.URL}})
	if err != nil {
		t.Fatalf("WebSocket to code-server: %v (%v)", err, resp)
	}
	ws.Close()

	_, resp, err = d.Dial(wsu, http.Header{"Origin": {"https://attacker.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin WebSocket: err %v, response %v", err, resp)
	}
	anon := websocket.Dialer{HandshakeTimeout: guard}
	_, resp, err = anon.Dial(wsu, http.Header{"Origin": {g.URL}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous WebSocket: err %v, response %v", err, resp)
	}
}

// TestCodeServerComesBack kills code-server and expects the gateway to
// restart it and serve the IDE again.
func TestCodeServerComesBack(t *testing.T) {
	g := startGateway(t, nil)
	h, _ := g.health()
	if h.Workspace.PID == 0 {
		t.Fatal("no pid in /healthz")
	}
	if err := syscall.Kill(-h.Workspace.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h2 := g.waitHealthy(func(n health) bool {
		return n.Workspace.State == "running" && n.Workspace.PID != h.Workspace.PID
	})
	if h2.Workspace.Restarts != 1 {
		t.Errorf("restarts = %d, want 1", h2.Workspace.Restarts)
	}
	c, _ := g.login(g.Password)
	if resp, _ := get(t, c, g.URL+"/"); resp.StatusCode != http.StatusFound {
		t.Fatalf("IDE after restart: %d", resp.StatusCode)
	}
}

// TestGracefulShutdown: on SIGTERM (context cancel) open WebSockets get a
// close frame, run returns cleanly and code-server is gone.
func TestGracefulShutdown(t *testing.T) {
	g := startGateway(t, nil)
	h, _ := g.health()
	c, _ := g.login(g.Password)
	u, _ := url.Parse(g.URL)
	d := websocket.Dialer{Jar: c.Jar, HandshakeTimeout: guard}
	ws, _, err := d.Dial("ws://"+u.Host+"/?reconnectionToken=7f3c1a2e-0000-4000-8000-000000000002&reconnection=false&skipWebSocketFrames=false",
		http.Header{"Origin": {g.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	closed := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				closed <- err
				return
			}
		}
	}()
	if err := g.stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	select {
	case err := <-closed:
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
			t.Fatalf("WebSocket ended with %v, want close 1001", err)
		}
	case <-time.After(guard):
		t.Fatal("WebSocket not closed on shutdown")
	}
	deadline := time.Now().Add(guard)
	for processAlive(h.Workspace.PID) {
		if time.Now().After(deadline) {
			t.Fatalf("code-server (pid %d) still running after shutdown", h.Workspace.PID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBrowserSignInShowsExplorer drives headless Chromium: open the
// gateway, sign in, and wait until VS Code's explorer lists the folder.
func TestBrowserSignInShowsExplorer(t *testing.T) {
	g := startGateway(t, nil)
	ctx := testenv.Browser(t)
	folder := g.Folder[strings.LastIndex(g.Folder, "/")+1:]
	err := chromedp.Do(ctx,
		chromedp.Navigate(g.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#password`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Screenshot(t, ctx, "login")
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`#password`), "wrong"),
		chromedp.Submit(chromedp.CSS(`#password`)),
		chromedp.WaitVisible(chromedp.CSS(`#login-error`)),
		chromedp.SendKeys(chromedp.CSS(`#password`), g.Password),
		chromedp.Submit(chromedp.CSS(`#password`)),
		chromedp.WaitVisible(chromedp.CSS(`[aria-label="Explorer Section: `+folder+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.explorer-folders-view .monaco-list-row[aria-label="hello-codehub.txt"]`)),
	)
	testenv.Screenshot(t, ctx, "explorer")
	if err != nil {
		t.Fatalf("VS Code explorer did not show the folder: %v", err)
	}
}
