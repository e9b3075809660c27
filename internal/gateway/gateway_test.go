package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/auth"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/metrics"
	"github.com/codehub-dev/codehub/internal/password"
	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/codehub-dev/codehub/internal/session/memory"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/throttle"
	"github.com/codehub-dev/codehub/internal/web"
	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const testPassword = "correct horse battery staple"

// cheap argon2 parameters keep the tests fast; the algorithm is the same.
var cheap = password.Params{Memory: 64, Time: 1, Threads: 1}

type upstreamLog struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (l *upstreamLog) add(r *http.Request) {
	l.mu.Lock()
	l.reqs = append(l.reqs, r.Clone(context.Background()))
	l.mu.Unlock()
}

func (l *upstreamLog) last() *http.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.reqs) == 0 {
		return nil
	}
	return l.reqs[len(l.reqs)-1]
}

type env struct {
	t        testing.TB
	srv      *Server
	front    *httptest.Server
	metrics  *metrics.Metrics
	conns    *proxy.Registry
	upstream *upstreamLog
	cfg      *config.Config
}

// newEnv runs a gateway in front of a small stand-in IDE that answers HTTP
// with "IDE:<path>" and echoes WebSocket messages.
func newEnv(t testing.TB, mutate ...func(*config.Config)) *env {
	t.Helper()
	return newEnvLogging(t, testenv.Logger(t), mutate...)
}

// newEnvLogging is newEnv with another logger.
func newEnvLogging(t testing.TB, logger hclog.Logger, mutate ...func(*config.Config)) *env {
	t.Helper()
	e := &env{t: t, upstream: &upstreamLog{}}
	wsUp := websocket.Upgrader{}
	ide := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.upstream.add(r)
		if websocket.IsWebSocketUpgrade(r) {
			c, err := wsUp.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				mt, m, err := c.ReadMessage()
				if err != nil {
					return
				}
				c.WriteMessage(mt, m)
			}
		}
		if r.URL.Path == "/upload" { // counts the body, then waits as asked
			n, err := io.Copy(io.Discard, r.Body)
			if d, _ := time.ParseDuration(r.URL.Query().Get("then-wait")); d > 0 {
				time.Sleep(d)
			}
			fmt.Fprintf(w, "IDE:received %d %v", n, err)
			return
		}
		io.WriteString(w, "IDE:"+r.URL.Path)
	}))
	t.Cleanup(ide.Close)

	cfg, err := config.Load(config.LoadOptions{Getenv: func(k string) string {
		if k == "HOME" {
			return t.TempDir()
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = testPassword
	for _, m := range mutate {
		m(cfg)
	}
	e.cfg = cfg
	a, err := auth.NewSinglePassword(testPassword, cheap)
	if err != nil {
		t.Fatal(err)
	}
	templates, err := web.Parse()
	if err != nil {
		t.Fatal(err)
	}
	e.metrics = metrics.New()
	e.conns = proxy.NewRegistry(proxy.RegistryConfig{})
	t.Cleanup(e.conns.Stop)
	u, _ := url.Parse(ide.URL)
	opts := Options{
		Config: cfg, Logger: logger, Metrics: e.metrics,
		Upstreams: FixedUpstream{T: &proxy.Target{Key: "ide", URL: u}},
		Conns:     e.conns,
		Throttle: throttle.New(throttle.Config{
			PerAddressBurst: cfg.LoginThrottle.PerAddressBurst, PerAddressInterval: cfg.LoginThrottle.PerAddressInterval.D(),
			GlobalBurst: cfg.LoginThrottle.GlobalBurst, GlobalInterval: cfg.LoginThrottle.GlobalInterval.D(),
		}),
		Templates: templates,
		Health:    func() Health { return Health{Ready: true, Workspace: map[string]string{"state": "running"}} },
		Version:   "test",
	}
	if cfg.Auth == config.AuthPassword {
		opts.Identity = identity.New(identity.Config{SessionTTL: cfg.Session.TTL.D()}, identity.Deps{
			Authn: a, Sessions: memory.New(nil),
			OnRevoke: func(ids []string) {
				for _, id := range ids {
					e.conns.CloseOwner(id, proxy.CloseRevoked, "signed out")
				}
			},
		}, logger)
	}
	e.srv, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.front = httptest.NewServer(e.srv)
	t.Cleanup(e.front.Close)
	return e
}

// client is a browser-like client: a cookie jar, no automatic redirects.
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (e *env) do(c *http.Client, method, path string, body url.Values, hdr map[string]string) *http.Response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(body.Encode())
	}
	req, err := http.NewRequest(method, e.front.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// loginForm fetches the login page and returns its CSRF token.
func (e *env) loginForm(c *http.Client) string {
	e.t.Helper()
	resp := e.do(c, "GET", "/login", nil, map[string]string{"Accept": "text/html"})
	body := readBody(e.t, resp)
	m := csrfRE.FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		e.t.Fatalf("login page: %d %s", resp.StatusCode, body)
	}
	return m[1]
}

func (e *env) login(c *http.Client, pw string) *http.Response {
	e.t.Helper()
	tok := e.loginForm(c)
	return e.do(c, "POST", "/login", url.Values{"csrf": {tok}, "password": {pw}, "to": {"/?folder=/src"}},
		map[string]string{"Accept": "text/html"})
}

func TestUnauthenticated(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	resp := e.do(c, "GET", "/some/file.js?v=1", nil, map[string]string{"Accept": "text/html,application/xhtml+xml"})
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/login?to=%2Fsome%2Ffile.js%3Fv%3D1" {
		t.Fatalf("browser: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = e.do(c, "GET", "/api/thing", nil, map[string]string{"Accept": "application/json"})
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"code": "unauthorized"`) ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("API: %d %s", resp.StatusCode, body)
	}
	resp = e.do(c, "POST", "/", url.Values{"x": {"1"}}, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	if e.upstream.last() != nil {
		t.Fatal("an unauthenticated request reached the IDE")
	}
}

func TestLoginFlow(t *testing.T) {
	e := newEnv(t)
	c := e.client()

	resp := e.login(c, "wrong password")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Wrong password.") {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == e.cfg.Session.CookieName {
			t.Fatal("a session cookie was set for a wrong password")
		}
	}

	resp = e.login(c, testPassword)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/?folder=/src" {
		t.Fatalf("login: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var sess *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == e.cfg.Session.CookieName {
			sess = ck
		}
	}
	if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Secure || sess.Path != "/" || sess.MaxAge != 86400 {
		t.Fatalf("session cookie: %+v", sess)
	}
	if len(sess.Value) < 40 {
		t.Fatalf("session token too short: %q", sess.Value)
	}

	resp = e.do(c, "GET", "/index.html", nil, nil)
	if got := readBody(t, resp); got != "IDE:/index.html" {
		t.Fatalf("after login: %d %q", resp.StatusCode, got)
	}
	if ck := e.upstream.last().Header.Get("Cookie"); strings.Contains(ck, sess.Value) {
		t.Fatal("the session cookie reached the IDE")
	}

	// Logged in, /login goes straight on.
	resp = e.do(c, "GET", "/login?to=/x", nil, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/x" {
		t.Fatalf("login page when logged in: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	if v := testutil.ToFloat64(e.metrics.LoginAttempts.WithLabelValues("success")); v != 1 {
		t.Errorf("success metric = %v", v)
	}
	if v := testutil.ToFloat64(e.metrics.LoginAttempts.WithLabelValues("failure")); v != 1 {
		t.Errorf("failure metric = %v", v)
	}
}

func TestForgedAndStaleCookies(t *testing.T) {
	e := newEnv(t)
	for _, v := range []string{"forged", strings.Repeat("A", 43), strings.Repeat("x", 5000), "a b", "\x00"} {
		c := e.client()
		u, _ := url.Parse(e.front.URL)
		c.Jar.SetCookies(u, []*http.Cookie{{Name: e.cfg.Session.CookieName, Value: v}})
		resp := e.do(c, "GET", "/", nil, map[string]string{"Accept": "text/html"})
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Errorf("cookie %.10q: status %d, want redirect to login", v, resp.StatusCode)
		}
	}
	if e.upstream.last() != nil {
		t.Fatal("a forged cookie reached the IDE")
	}
}

func TestOpenRedirectRefused(t *testing.T) {
	for _, to := range []string{"//evil.example/", "/\\evil.example", "https://evil.example/", "javascript:alert(1)", "/ok\r\nSet-Cookie: x"} {
		if got := safeRedirect(to); got != "/" {
			t.Errorf("safeRedirect(%q) = %q", to, got)
		}
	}
	if got := safeRedirect("/?folder=/home/me&x=1"); got != "/?folder=/home/me&x=1" {
		t.Errorf("a local path was rewritten: %q", got)
	}
	e := newEnv(t)
	c := e.client()
	tok := e.loginForm(c)
	resp := e.do(c, "POST", "/login", url.Values{"csrf": {tok}, "password": {testPassword}, "to": {"//evil.example/x"}}, nil)
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); loc != "/" {
		t.Fatalf("Location = %q", loc)
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	e.loginForm(c)
	// Right password, wrong token.
	resp := e.do(c, "POST", "/login", url.Values{"csrf": {"nope"}, "password": {testPassword}}, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("wrong CSRF token: %d", resp.StatusCode)
	}
	// No cookie at all (a cross-site form): refused.
	resp = e.do(e.client(), "POST", "/login", url.Values{"csrf": {"x"}, "password": {testPassword}}, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no CSRF cookie: %d", resp.StatusCode)
	}
	// A cross-origin browser POST is refused before the form is read.
	tok := e.loginForm(c)
	resp = e.do(c, "POST", "/login", url.Values{"csrf": {tok}, "password": {testPassword}},
		map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin POST: %d", resp.StatusCode)
	}
}

func TestThrottle(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.LoginThrottle.PerAddressBurst = 2
		c.LoginThrottle.PerAddressInterval = config.Duration(time.Hour)
	})
	c := e.client()
	for i := 0; i < 2; i++ {
		resp := e.login(c, "wrong")
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, resp.StatusCode)
		}
	}
	// Even the right password waits now: the attacker cannot probe.
	resp := e.login(c, testPassword)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(body, "Too many failed sign-in attempts") {
		t.Fatalf("throttled: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if v := testutil.ToFloat64(e.metrics.LoginAttempts.WithLabelValues("throttled")); v != 1 {
		t.Errorf("throttled metric = %v", v)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	tok := e.loginForm(c)
	huge := strings.Repeat("p", maxFormBytes+10)
	resp := e.do(c, "POST", "/login", url.Values{"csrf": {tok}, "password": {huge}}, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("oversized form: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("POST", e.front.URL+"/login", strings.NewReader("%zz=%%%"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed form: %d", resp.StatusCode)
	}
	resp = e.do(c, "DELETE", "/login", nil, nil)
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		t.Fatalf("DELETE /login: %d", resp.StatusCode)
	}
}

func TestPageSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	resp := e.do(e.client(), "GET", "/login", nil, nil)
	resp.Body.Close()
	h := resp.Header
	if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
		!strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") ||
		h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("login page headers: %v", h)
	}
	if h.Get("Strict-Transport-Security") != "" {
		t.Fatal("HSTS over plain HTTP")
	}
	c := e.client()
	e.login(c, testPassword).Body.Close()
	resp = e.do(c, "GET", "/", nil, nil)
	resp.Body.Close()
	if resp.Header.Get("X-Frame-Options") != "SAMEORIGIN" || resp.Header.Get("Content-Security-Policy") != "frame-ancestors 'self'" {
		t.Fatalf("proxied headers: %v", resp.Header)
	}
}

func TestHSTSUnderTLS(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Cert = config.Cert{Enabled: true} })
	resp := e.do(e.client(), "GET", "/login", nil, nil)
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Fatalf("no HSTS with TLS on: %v", resp.Header)
	}
}

// TestTrustedProxy: forwarded headers count only from a trusted proxy.
func TestTrustedProxy(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		e := newEnv(t, func(c *config.Config) {
			if trusted {
				c.TrustedProxies = []string{"127.0.0.0/8"}
			}
		})
		c := e.client()
		tok := e.loginForm(c)
		resp := e.do(c, "POST", "/login", url.Values{"csrf": {tok}, "password": {testPassword}},
			map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.50"})
		resp.Body.Close()
		var secure bool
		for _, ck := range resp.Cookies() {
			if ck.Name == e.cfg.Session.CookieName {
				secure = ck.Secure
			}
		}
		if secure != trusted {
			t.Errorf("trusted=%v: Secure cookie = %v", trusted, secure)
		}
		resp = e.do(c, "GET", "/", nil, map[string]string{"X-Forwarded-For": "203.0.113.50"})
		resp.Body.Close()
		xff := e.upstream.last().Header.Get("X-Forwarded-For")
		want := "127.0.0.1"
		if trusted {
			want = "203.0.113.50"
		}
		if xff != want {
			t.Errorf("trusted=%v: X-Forwarded-For upstream = %q, want %q", trusted, xff, want)
		}
	}
}

func wsDial(t *testing.T, e *env, c *http.Client, origin string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	u, _ := url.Parse(e.front.URL)
	d := websocket.Dialer{Jar: c.Jar, HandshakeTimeout: 30 * time.Second}
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	return d.Dial("ws://"+u.Host+"/?reconnectionToken=1", h)
}

func TestWebSocketAuthAndOrigin(t *testing.T) {
	e := newEnv(t)
	own := "http://" + strings.TrimPrefix(e.front.URL, "http://")
	// Not logged in: refused.
	if _, resp, err := wsDial(t, e, e.client(), own); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous WebSocket: %v %v", err, resp)
	}
	c := e.client()
	e.login(c, testPassword).Body.Close()
	// Logged in but from another site: cross-site WebSocket hijacking.
	if _, resp, err := wsDial(t, e, c, "https://evil.example"); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin WebSocket: %v %v", err, resp)
	}
	ws, _, err := wsDial(t, e, c, own)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteMessage(websocket.TextMessage, []byte("ping"))
	if _, m, err := ws.ReadMessage(); err != nil || string(m) != "ping" {
		t.Fatalf("echo: %q %v", m, err)
	}
}

// TestLogoutClosesWebSockets: signing out ends the session everywhere,
// including the editor's open sockets.
func TestLogoutClosesWebSockets(t *testing.T) {
	e := newEnv(t)
	own := "http://" + strings.TrimPrefix(e.front.URL, "http://")
	c := e.client()
	e.login(c, testPassword).Body.Close()
	ws, _, err := wsDial(t, e, c, own)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()

	resp := e.do(c, "GET", "/logout", nil, nil)
	body := readBody(t, resp)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("logout page: %s", body)
	}
	resp = e.do(c, "POST", "/logout", url.Values{"csrf": {m[1]}}, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("logout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != proxy.CloseRevoked {
		t.Fatalf("open WebSocket after logout: %v", err)
	}
	// The old cookie is dead, even if replayed.
	resp = e.do(c, "GET", "/", nil, map[string]string{"Accept": "text/html"})
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("after logout: %d", resp.StatusCode)
	}
}

func TestAuthNone(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Auth = config.AuthNone })
	resp := e.do(e.client(), "GET", "/x", nil, nil)
	if body := readBody(t, resp); body != "IDE:/x" {
		t.Fatalf("auth none: %d %q", resp.StatusCode, body)
	}
	resp = e.do(e.client(), "GET", "/login", nil, nil)
	if body := readBody(t, resp); body != "IDE:/login" {
		t.Fatalf("with auth none, /login belongs to the IDE: %q", body)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	e := newEnv(t)
	resp := e.do(e.client(), "GET", "/healthz", nil, nil)
	body := readBody(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, `"status": "ok"`) || !strings.Contains(body, `"state": "running"`) {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
	c := e.client()
	e.login(c, "nope").Body.Close()
	e.login(c, testPassword).Body.Close()
	e.do(c, "GET", "/static/x.js", nil, nil).Body.Close()
	resp = e.do(e.client(), "GET", "/metrics", nil, nil)
	body = readBody(t, resp)
	for _, want := range []string{
		`code_server_login_attempts_total{status="failure"} 1`,
		`code_server_login_attempts_total{status="success"} 1`,
		`code_server_sessions_created_total 1`,
		`code_server_request_duration_seconds_count{method="POST",route="/login",status="303"} 1`,
		`code_server_request_duration_seconds_count{method="GET",route="proxy",status="200"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestStartingPage(t *testing.T) {
	e := newEnv(t)
	never := make(chan struct{})
	e.srv.opts.Upstreams = FixedUpstream{T: &proxy.Target{}, Ready: func() <-chan struct{} { return never }, Wait: time.Millisecond}
	c := e.client()
	e.login(c, testPassword).Body.Close()
	resp := e.do(c, "GET", "/", nil, map[string]string{"Accept": "text/html"})
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Starting your workspace") ||
		resp.Header.Get("Retry-After") == "" {
		t.Fatalf("starting page: %d", resp.StatusCode)
	}
	resp = e.do(c, "GET", "/x.js", nil, nil)
	body = readBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "workspace_starting") {
		t.Fatalf("starting, API: %d %s", resp.StatusCode, body)
	}
}

// TestAgentPathsNeverProxied: a person's traffic never reaches the
// workspace agent's own endpoints, however the path is spelled.
func TestAgentPathsNeverProxied(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	e.login(c, testPassword).Body.Close()
	for _, p := range []string{"/_agent/stop", "/_agent/health", "/%5Fagent/stop", "/_AGENT/health", "/x/../_agent/stop", "/_agent", "/%5f%61gent/usage"} {
		req, _ := http.NewRequest("POST", e.front.URL+p, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}
	if r := e.upstream.last(); r != nil {
		t.Fatalf("an agent path reached the workspace: %s", r.URL.Path)
	}
	// Headers a client sets to imitate the gateway are stripped.
	req, _ := http.NewRequest("GET", e.front.URL+"/x", nil)
	req.Header.Set("X-Codehub-Agent-Control", "guess")
	req.Header.Set("X-Codehub-Workspace-Secret", "guess")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if up := e.upstream.last(); up.Header.Get("X-Codehub-Agent-Control") != "" || up.Header.Get("X-Codehub-Workspace-Secret") != "" {
		t.Fatalf("client-supplied agent headers reached the workspace: %v", up.Header)
	}
}
