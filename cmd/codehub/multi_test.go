package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	goredis "github.com/redis/go-redis/v9"
)

// These tests run multi-user mode through run(), as main does, in front of
// a stand-in IDE (upstream), with users in SQLite or PostgreSQL and
// sessions in the database or Redis.

// ideMarker is the id of an element of the stand-in IDE's page.
const ideMarker = "stand-in-ide"

const ideHTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Stand-in IDE</title><link rel="icon" href="data:,"></head>
<body><h1 id="` + ideMarker + `">IDE:/</h1></body></html>
`

// startStandInIDE runs an IDE stand-in and returns its URL: "/" is a small
// HTML page holding ideMarker, any other path answers "IDE:<path>", and a
// WebSocket upgrade echoes every message back.
func startStandInIDE(t *testing.T) string {
	t.Helper()
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				mt, msg, err := c.ReadMessage()
				if err != nil {
					return
				}
				if err := c.WriteMessage(mt, msg); err != nil {
					return
				}
			}
		}
		if r.URL.Path == "/" {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, ideHTML)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "IDE:%s", r.URL.Path)
	}), ReadHeaderTimeout: 10 * time.Second}
	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// multiConfig describes a multi-user gateway's configuration file.
type multiConfig struct {
	Upstream string
	// DataDir is the gateway's own; the SQLite database lives there unless
	// SQLitePath names another file.
	DataDir    string
	SQLitePath string
	// PostgresURL, when set, keeps users there instead of SQLite.
	PostgresURL string
	// Sessions is "database" (default), "memory" or "redis".
	Sessions              string
	RedisURL, RedisPrefix string
	// KeysFile is tokens.keys_file; empty: in DataDir.
	KeysFile string
	// Registration is "admin" (default), "invite" or "open".
	Registration string
	// DefaultSessionCap keeps the product's max-sessions-per-user
	// instead of room for 100.
	DefaultSessionCap bool
	// TrustLoopbackProxy believes X-Forwarded-For from loopback, so that
	// a test's requests can come from any address.
	TrustLoopbackProxy bool
}

// write writes the configuration as HCL into a new file and returns its
// path.
func (c multiConfig) write(t *testing.T) string {
	t.Helper()
	if c.DataDir == "" {
		c.DataDir = filepath.Join(t.TempDir(), "data")
	}
	if c.Sessions == "" {
		c.Sessions = "database"
	}
	if c.Registration == "" {
		c.Registration = "admin"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "deployment_mode = \"multi\"\nbind_addr = \"127.0.0.1:0\"\nlog_level = \"debug\"\n")
	fmt.Fprintf(&b, "data_dir = %q\nupstream = %q\n", c.DataDir, c.Upstream)
	if c.TrustLoopbackProxy {
		fmt.Fprintf(&b, "trusted_proxies = [\"127.0.0.0/8\", \"::1\"]\n")
	}
	// Tests sign in often from one address; throttling has its own tests.
	fmt.Fprintf(&b, "login_throttle {\n  per_address_burst = 1000\n  global_burst = 1000\n}\n")
	fmt.Fprintf(&b, "multi_user {\n  auth {\n    registration = %q\n", c.Registration)
	if c.PostgresURL != "" {
		fmt.Fprintf(&b, "    database {\n      type = \"postgres\"\n      url = %q\n    }\n", c.PostgresURL)
	} else {
		p := c.SQLitePath
		if p == "" {
			p = filepath.Join(c.DataDir, "users.db")
		}
		fmt.Fprintf(&b, "    database {\n      type = \"sqlite\"\n      path = %q\n    }\n", p)
	}
	fmt.Fprintf(&b, "    session {\n      store = %q\n", c.Sessions)
	if c.Sessions == "redis" {
		fmt.Fprintf(&b, "      url = %q\n      prefix = %q\n", c.RedisURL, c.RedisPrefix)
	}
	fmt.Fprintf(&b, "    }\n")
	// The cheapest hashing the configuration allows: the tests hash a lot.
	fmt.Fprintf(&b, "    password {\n      memory_kib = 8192\n      iterations = 1\n    }\n")
	if c.KeysFile != "" {
		fmt.Fprintf(&b, "    tokens {\n      keys_file = %q\n    }\n", c.KeysFile)
	}
	fmt.Fprintf(&b, "  }\n")
	// Room for the many sign-ins of one user in a test.
	if c.DefaultSessionCap {
		fmt.Fprintf(&b, "}\n")
	} else {
		fmt.Fprintf(&b, "  limits {\n    max_sessions_per_user = 100\n  }\n}\n")
	}
	file := filepath.Join(t.TempDir(), "codehub.hcl")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// testGetenv is the environment of a codehub run by a test: a home of its
// own and nothing of the process's.
func testGetenv(t *testing.T) func(string) string {
	home := t.TempDir()
	return func(k string) string {
		if k == "HOME" {
			return home
		}
		return ""
	}
}

// startMultiGateway runs `codehub --config file` in-process and waits until
// it has printed its whole announcement and answers /healthz.
func startMultiGateway(t *testing.T, file string) *testGateway {
	t.Helper()
	testenv.SkipShort(t)
	ctx, cancel := context.WithCancel(context.Background())
	g := &testGateway{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	getenv := testGetenv(t)
	argv := []string{"codehub", "--config", file}
	go func() { g.done <- run(ctx, argv, getenv, strings.NewReader(""), g.stdout, g.stderr) }()
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("gateway %s stdout:\n%s\nstderr:\n%s", g.URL, g.stdout.String(), g.stderr.String())
		}
	})
	// "Upstream:" is the last line of the announcement.
	deadline := time.Now().Add(guard)
	for !strings.Contains(g.stdout.String(), "  Upstream:  ") {
		select {
		case err := <-g.done:
			g.cancel = nil
			t.Fatalf("codehub exited early: %v\n%s", err, g.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("codehub printed no announcement:\n%s", g.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	m := urlRE.FindStringSubmatch(g.stdout.String())
	if m == nil {
		t.Fatalf("no URL in %q", g.stdout.String())
	}
	g.URL = strings.TrimSuffix(m[1], "/")
	g.waitHealthy(func(health) bool { return true })
	return g
}

// runCLI runs `codehub user ARGS... --config file` with stdin and returns
// what it printed.
func runCLI(t *testing.T, file, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	argv := append([]string{"codehub", "user"}, args...)
	if file != "" {
		argv = append(argv, "--config", file)
	}
	err = run(context.Background(), argv, testGetenv(t), strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

// mustCLI is runCLI that fails t on an error.
func mustCLI(t *testing.T, file, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(t, file, stdin, args...)
	if err != nil {
		t.Fatalf("codehub user %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// createUser makes an account with the CLI.
func createUser(t *testing.T, file, username, pw string, extra ...string) {
	t.Helper()
	args := append([]string{"create", "--username", username, "--email", username + "@example.com", "--password-stdin"}, extra...)
	mustCLI(t, file, pw+"\n", args...)
}

// noRedirects is an HTTP client that shows redirects instead of following
// them, with no cookie jar: cookies are sent explicitly.
var noRedirects = &http.Client{
	Timeout:       guard,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// reply is an HTTP response read in full.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// apiErrorBody is the JSON shape of the gateway's errors.
type apiErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// errorBody decodes the JSON error of r, failing t if it is not one.
func (r reply) errorBody(t *testing.T) apiErrorBody {
	t.Helper()
	var e apiErrorBody
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error response: Content-Type %q, want JSON; body %.300q", ct, r.Body)
	}
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Errorf("error response is not JSON: %v: %.300q", err, r.Body)
	}
	if e.Error.Code == "" || e.Error.Message == "" {
		t.Errorf("error response lacks error.code or error.message: %.300q", r.Body)
	}
	return e
}

// do sends a request; hdr holds header name-value pairs.
func do(t *testing.T, method, u string, body io.Reader, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// postJSON posts v as JSON; hdr as for do.
func postJSON(t *testing.T, u string, v any, hdr ...string) reply {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, http.MethodPost, u, bytes.NewReader(b), append([]string{"Content-Type", "application/json"}, hdr...)...)
}

// sessionCookie is the header value that presents a session token.
func sessionCookie(token string) string { return "codehub_session=" + token }

// tokenPair is the API's answer to a sign-in or refresh.
type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
}

// apiLogin signs in through the JSON API and returns the tokens.
func apiLogin(t *testing.T, g *testGateway, username, pw string) tokenPair {
	t.Helper()
	r := postJSON(t, g.URL+"/api/v1/auth/login", map[string]string{"username": username, "password": pw})
	if r.Status != http.StatusOK {
		t.Fatalf("API login of %s on %s: %d %s", username, g.URL, r.Status, r.Body)
	}
	var p tokenPair
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatal(err)
	}
	if p.AccessToken == "" || p.RefreshToken == "" || p.TokenType != "Bearer" || p.ExpiresIn <= 0 {
		t.Fatalf("API login: token pair %+v", p)
	}
	return p
}

// me is the answer of GET /api/v1/me.
type me struct {
	User struct {
		ID       string   `json:"id"`
		Username string   `json:"username"`
		Roles    []string `json:"roles"`
	} `json:"user"`
	Session struct {
		ID   string `json:"id"`
		Kind string `json:"kind"`
	} `json:"session"`
}

// getMe calls GET /api/v1/me with the header pair (Authorization or
// Cookie) and returns the reply and, on 200, its decoded body.
func getMe(t *testing.T, g *testGateway, hdr ...string) (reply, me) {
	t.Helper()
	r := do(t, http.MethodGet, g.URL+"/api/v1/me", nil, hdr...)
	var m me
	if r.Status == http.StatusOK {
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatalf("/api/v1/me: %v: %s", err, r.Body)
		}
	}
	return r, m
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// formLogin signs in with the login form (username and password) in a
// fresh cookie jar, and returns the response to the form post and the
// session token ("" when none was set).
func formLogin(t *testing.T, g *testGateway, username, pw string) (*http.Response, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := g.httpClient(jar)
	resp, page := get(t, c, g.URL+"/login")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /login: %d", resp.StatusCode)
	}
	if !strings.Contains(page, `name="username"`) {
		t.Fatalf("the multi-user login page asks for no username:\n%s", page)
	}
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the login page:\n%s", page)
	}
	resp, err := c.PostForm(g.URL+"/login", url.Values{"csrf": {m[1]}, "username": {username}, "password": {pw}, "to": {"/"}})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "codehub_session" && ck.MaxAge >= 0 {
			return resp, ck.Value
		}
	}
	return resp, ""
}

// mustFormLogin signs in with the form and returns the session token.
func mustFormLogin(t *testing.T, g *testGateway, username, pw string) string {
	t.Helper()
	resp, tok := formLogin(t, g, username, pw)
	if resp.StatusCode != http.StatusSeeOther || tok == "" {
		t.Fatalf("form login of %s on %s: %d, session cookie %t", username, g.URL, resp.StatusCode, tok != "")
	}
	return tok
}

// formLogout signs the session out with the sign-out page's form, as a
// browser does.
func formLogout(t *testing.T, g *testGateway, token string) {
	t.Helper()
	r := do(t, http.MethodGet, g.URL+"/logout", nil, "Cookie", sessionCookie(token))
	if r.Status != http.StatusOK {
		t.Fatalf("GET /logout: %d", r.Status)
	}
	m := csrfRE.FindSubmatch(r.Body)
	if m == nil {
		t.Fatalf("no CSRF token on the sign-out page:\n%s", r.Body)
	}
	var csrfCookie string
	for _, ck := range (&http.Response{Header: r.Header}).Cookies() {
		if ck.Name == "codehub_csrf" {
			csrfCookie = ck.Value
		}
	}
	r = do(t, http.MethodPost, g.URL+"/logout", strings.NewReader(url.Values{"csrf": {string(m[1])}}.Encode()),
		"Content-Type", "application/x-www-form-urlencoded",
		"Cookie", sessionCookie(token)+"; codehub_csrf="+csrfCookie)
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/login" {
		t.Fatalf("POST /logout: %d, Location %q: %s", r.Status, r.Header.Get("Location"), r.Body)
	}
}

// ideGet fetches path of the IDE through g with a session token.
func ideGet(t *testing.T, g *testGateway, path, token string) reply {
	t.Helper()
	return do(t, http.MethodGet, g.URL+path, nil, "Cookie", sessionCookie(token))
}

// wantIDE checks that the session token reaches the IDE through g.
func wantIDE(t *testing.T, g *testGateway, token, path string) {
	t.Helper()
	r := ideGet(t, g, path, token)
	if r.Status != http.StatusOK || string(r.Body) != "IDE:"+path {
		t.Fatalf("%s%s with the session: %d %.200q, want the IDE", g.URL, path, r.Status, r.Body)
	}
}

// wantNoIDE checks that the session token no longer reaches the IDE.
func wantNoIDE(t *testing.T, g *testGateway, token, path string) {
	t.Helper()
	r := ideGet(t, g, path, token)
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("%s%s with an ended session: %d %.200q, want 401", g.URL, path, r.Status, r.Body)
	}
	r.errorBody(t)
}

// eventually polls cond until it holds, failing t after limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// defaultTestPostgres is the server used unless CODEHUB_TEST_POSTGRES names
// another; it must allow CREATE DATABASE.
const defaultTestPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// testPostgres creates a database of its own for t, dropped when t ends,
// and returns its URL. It skips t (fails under CODEHUB_E2E=require) when
// PostgreSQL does not answer.
func testPostgres(t *testing.T) string {
	t.Helper()
	testenv.SkipShort(t)
	adminURL := os.Getenv("CODEHUB_TEST_POSTGRES")
	if adminURL == "" {
		adminURL = defaultTestPostgres
	}
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("CODEHUB_TEST_POSTGRES: want a postgres:// URL, got %q", adminURL)
	}
	db, err := sql.Open("pgx", adminURL)
	if err != nil {
		t.Fatalf("CODEHUB_TEST_POSTGRES: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		testenv.Need(t, fmt.Sprintf("PostgreSQL at %s (CODEHUB_TEST_POSTGRES): %v", u.Redacted(), err))
	}
	name := "codehub_test_" + randomHex(t, 8)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+ident); err != nil {
		db.Close()
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// testRedis returns the URL of the Redis at CODEHUB_TEST_REDIS (host:port
// or a redis:// URL) and a key prefix of t's own, whose keys are deleted
// when t ends. It skips t (fails under CODEHUB_E2E=require) when Redis does
// not answer.
func testRedis(t *testing.T) (redisURL, prefix string) {
	t.Helper()
	testenv.SkipShort(t)
	redisURL = os.Getenv("CODEHUB_TEST_REDIS")
	if redisURL == "" {
		redisURL = "127.0.0.1:6379"
	}
	if !strings.Contains(redisURL, "://") {
		redisURL = "redis://" + redisURL
	}
	opts, err := goredis.ParseURL(redisURL)
	if err != nil {
		t.Fatalf("CODEHUB_TEST_REDIS: %v", err)
	}
	c := goredis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		testenv.Need(t, "Redis at "+opts.Addr+" (CODEHUB_TEST_REDIS): "+err.Error())
	}
	prefix = "codehub-test-" + randomHex(t, 6) + ":"
	t.Cleanup(func() {
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("list the test's Redis keys: %v", err)
			return
		}
		if len(keys) > 0 {
			if err := c.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("delete the test's Redis keys: %v", err)
			}
		}
	})
	return redisURL, prefix
}

var adminRE = regexp.MustCompile(`(?m)^  Admin:     admin / (\S+)   \(`)

// TestMultiFirstAdmin: the first start on an empty database creates an
// administrator and prints its password once; it signs in with the form
// and the API. A second start creates nobody and prints no password.
func TestMultiFirstAdmin(t *testing.T) {
	t.Parallel()
	cfg := multiConfig{Upstream: startStandInIDE(t)}.write(t)

	g := startMultiGateway(t, cfg)
	out := g.stdout.String()
	m := adminRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the first start printed no administrator:\n%s", out)
	}
	pw := m[1]
	if !strings.Contains(out, "multi-user mode") {
		t.Errorf("announcement does not say multi-user mode:\n%s", out)
	}
	tok := mustFormLogin(t, g, "admin", pw)
	wantIDE(t, g, tok, "/first")
	if resp, _ := formLogin(t, g, "admin", pw+"x"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("form login with a wrong password: %d, want 401", resp.StatusCode)
	}
	p := apiLogin(t, g, "admin", pw)
	r, who := getMe(t, g, bearer(p.AccessToken)...)
	if r.Status != http.StatusOK || who.User.Username != "admin" || strings.Join(who.User.Roles, ",") != "admin" {
		t.Fatalf("/api/v1/me of the first administrator: %d %s", r.Status, r.Body)
	}
	if err := g.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	g2 := startMultiGateway(t, cfg)
	out = g2.stdout.String()
	if strings.Contains(out, "Admin:") || strings.Contains(out, pw) {
		t.Fatalf("the second start printed an administrator again:\n%s", out)
	}
	if !strings.Contains(out, "Sign-in:   user accounts") {
		t.Errorf("the second start does not say how to sign in:\n%s", out)
	}
	var users []struct{ Username string }
	if err := json.Unmarshal([]byte(mustCLI(t, cfg, "", "list", "--json")), &users); err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0].Username != "admin" {
		t.Fatalf("users after two starts: %+v, want only admin", users)
	}
	wantIDE(t, g2, mustFormLogin(t, g2, "admin", pw), "/second")
}

// TestMultiGatewaysShareSessions runs two gateways on one PostgreSQL
// database, one session store and one token key file: a session or token
// from one works on the other, and signing out on one ends it on both,
// including the WebSockets the other proxies.
func TestMultiGatewaysShareSessions(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"database", "redis"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			shared := multiConfig{
				Upstream:    startStandInIDE(t),
				PostgresURL: testPostgres(t),
				Sessions:    store,
				KeysFile:    filepath.Join(t.TempDir(), "jwt-keys.json"),
			}
			if store == "redis" {
				shared.RedisURL, shared.RedisPrefix = testRedis(t)
			}
			cfgA := shared.write(t) // each write has its own data directory
			cfgB := shared.write(t)
			const pw = "alice-password-1"
			createUser(t, cfgA, "alice", pw)
			a := startMultiGateway(t, cfgA)
			b := startMultiGateway(t, cfgB)

			// A browser session from A works on B.
			tok := mustFormLogin(t, a, "alice", pw)
			wantIDE(t, b, tok, "/from-a")

			// An access token from A works on B, and its sign-out on A ends
			// it on B well within the cache's lifetime (30s): the event
			// crossed over.
			p := apiLogin(t, a, "alice", pw)
			r, who := getMe(t, b, bearer(p.AccessToken)...)
			if r.Status != http.StatusOK || who.User.Username != "alice" || who.Session.Kind != "api" {
				t.Fatalf("B with A's access token: %d %s", r.Status, r.Body)
			}
			if r := do(t, http.MethodPost, a.URL+"/api/v1/auth/logout", nil, bearer(p.AccessToken)...); r.Status != http.StatusNoContent {
				t.Fatalf("API logout on A: %d %s", r.Status, r.Body)
			}
			eventually(t, 15*time.Second, "B still accepts an access token signed out on A", func() bool {
				r, _ := getMe(t, b, bearer(p.AccessToken)...)
				return r.Status == http.StatusUnauthorized
			})

			// A WebSocket through B with A's cookie; sign out on A closes it.
			bu, _ := url.Parse(b.URL)
			d := websocket.Dialer{HandshakeTimeout: guard}
			ws, resp, err := d.Dial("ws://"+bu.Host+"/ws?x=1", http.Header{"Origin": {b.URL}, "Cookie": {sessionCookie(tok)}})
			if err != nil {
				t.Fatalf("WebSocket through B: %v (%v)", err, resp)
			}
			defer ws.Close()
			ws.SetReadDeadline(time.Now().Add(guard))
			if err := ws.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			if _, msg, err := ws.ReadMessage(); err != nil || string(msg) != "ping" {
				t.Fatalf("echo through B: %q, %v", msg, err)
			}
			closed := make(chan error, 1)
			go func() {
				for {
					if _, _, err := ws.ReadMessage(); err != nil {
						closed <- err
						return
					}
				}
			}()
			formLogout(t, a, tok)
			select {
			case err := <-closed:
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
					t.Fatalf("WebSocket on B ended with %v, want a close frame 1008", err)
				}
			case <-time.After(guard):
				t.Fatal("WebSocket on B still open after signing out on A")
			}
			wantNoIDE(t, a, tok, "/after")
			wantNoIDE(t, b, tok, "/after")
		})
	}
}

// TestMultiRestartKeepsSessions: sessions kept in the database or in Redis
// outlive the gateway: after a restart the old cookie still reaches the
// IDE, the old access token is still valid (the keys are kept) and the old
// refresh token still refreshes.
func TestMultiRestartKeepsSessions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(t *testing.T, c *multiConfig)
	}{
		{"sqlite-database", func(t *testing.T, c *multiConfig) {}},
		{"postgres-redis", func(t *testing.T, c *multiConfig) {
			c.PostgresURL = testPostgres(t)
			c.Sessions = "redis"
			c.RedisURL, c.RedisPrefix = testRedis(t)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := multiConfig{Upstream: startStandInIDE(t)}
			tc.setup(t, &c)
			cfg := c.write(t)
			const pw = "alice-password-1"
			createUser(t, cfg, "alice", pw)

			g := startMultiGateway(t, cfg)
			tok := mustFormLogin(t, g, "alice", pw)
			wantIDE(t, g, tok, "/before")
			p := apiLogin(t, g, "alice", pw)
			if err := g.stop(); err != nil {
				t.Fatalf("stop: %v", err)
			}

			g = startMultiGateway(t, cfg)
			wantIDE(t, g, tok, "/after")
			if r, who := getMe(t, g, bearer(p.AccessToken)...); r.Status != http.StatusOK || who.User.Username != "alice" {
				t.Fatalf("access token from before the restart: %d %s", r.Status, r.Body)
			}
			r := postJSON(t, g.URL+"/api/v1/auth/refresh", map[string]string{"refresh_token": p.RefreshToken})
			if r.Status != http.StatusOK {
				t.Fatalf("refresh token from before the restart: %d %s", r.Status, r.Body)
			}
			var next tokenPair
			if err := json.Unmarshal(r.Body, &next); err != nil {
				t.Fatal(err)
			}
			if next.RefreshToken == "" || next.RefreshToken == p.RefreshToken {
				t.Fatalf("refresh did not rotate the token: %s", r.Body)
			}
			if r, _ := getMe(t, g, bearer(next.AccessToken)...); r.Status != http.StatusOK {
				t.Fatalf("refreshed access token: %d %s", r.Status, r.Body)
			}
		})
	}
}
