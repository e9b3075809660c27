package main

import (
	"bytes"
	"context"
	"crypto/tls"
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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/testenv"
)

// guard bounds waits that only a bug makes long.
const guard = 2 * time.Minute

// syncBuffer is a goroutine-safe output sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testGateway is a codehub run in-process through run(), as main runs it.
type testGateway struct {
	t        *testing.T
	URL      string
	Password string
	Folder   string
	DataHome string
	stdout   *syncBuffer
	stderr   *syncBuffer
	cancel   context.CancelFunc
	done     chan error
}

var urlRE = regexp.MustCompile(`URL:\s+(\S+)`)

// startGateway runs codehub with a real code-server on a free port, a
// fresh folder and data directory, and waits until it is healthy.
func startGateway(t *testing.T, env map[string]string, args ...string) *testGateway {
	t.Helper()
	cs := testenv.CodeServer(t)
	dir := t.TempDir()
	g := &testGateway{
		t: t, Password: "test-password-123", Folder: filepath.Join(dir, "project"),
		DataHome: filepath.Join(dir, "data"), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1),
	}
	if err := os.MkdirAll(g.Folder, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g.Folder, "hello-codehub.txt"), []byte("hello from the test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"HOME":                     dir,
		"XDG_DATA_HOME":            g.DataHome,
		"PASSWORD":                 g.Password,
		"CODEHUB_CODE_SERVER_PATH": cs,
		"CODEHUB_LOG_LEVEL":        "debug",
	}
	for k, v := range env {
		vars[k] = v
	}
	getenv := func(k string) string { return vars[k] }
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	argv := append([]string{"codehub", "--bind-addr", "127.0.0.1:0"}, args...)
	argv = append(argv, g.Folder)
	go func() { g.done <- run(ctx, argv, getenv, strings.NewReader(""), g.stdout, g.stderr) }()
	t.Cleanup(func() {
		g.stop()
		if t.Failed() {
			t.Logf("gateway stderr:\n%s", g.stderr.String())
		}
	})

	deadline := time.Now().Add(guard)
	for g.URL == "" {
		if m := urlRE.FindStringSubmatch(g.stdout.String()); m != nil {
			g.URL = strings.TrimSuffix(m[1], "/")
			break
		}
		select {
		case err := <-g.done:
			t.Fatalf("codehub exited early: %v\n%s", err, g.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("codehub printed no URL:\n%s", g.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.waitHealthy(func(h health) bool { return h.Workspace.State == "running" })
	return g
}

// stop cancels the gateway as SIGTERM would and returns run's result.
func (g *testGateway) stop() error {
	if g.cancel == nil {
		return nil
	}
	g.cancel()
	g.cancel = nil
	select {
	case err := <-g.done:
		return err
	case <-time.After(guard):
		g.t.Error("codehub did not stop")
		return errors.New("did not stop")
	}
}

type health struct {
	Status    string `json:"status"`
	Workspace struct {
		State    string `json:"state"`
		PID      int    `json:"pid"`
		Restarts int    `json:"restarts"`
	} `json:"workspace"`
}

func (g *testGateway) health() (health, int) {
	var h health
	resp, err := g.httpClient(nil).Get(g.URL + "/healthz")
	if err != nil {
		return h, 0
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&h)
	return h, resp.StatusCode
}

func (g *testGateway) waitHealthy(ok func(health) bool) health {
	g.t.Helper()
	deadline := time.Now().Add(guard)
	for {
		h, code := g.health()
		if code == http.StatusOK && ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("gateway not healthy: %d %+v\n%s", code, h, g.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (g *testGateway) httpClient(jar http.CookieJar) *http.Client {
	return &http.Client{
		Jar:       jar,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login signs in over HTTP and returns a client holding the session.
func (g *testGateway) login(password string) (*http.Client, *http.Response) {
	g.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := g.httpClient(jar)
	resp, err := c.Get(g.URL + "/login")
	if err != nil {
		g.t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRE.FindSubmatch(page)
	if m == nil {
		g.t.Fatalf("no CSRF token on the login page:\n%s", page)
	}
	resp, err = c.PostForm(g.URL+"/login", url.Values{"csrf": {string(m[1])}, "password": {password}, "to": {"/"}})
	if err != nil {
		g.t.Fatal(err)
	}
	resp.Body.Close()
	return c, resp
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestVersionAndHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"codehub", "--version"}, os.Getenv, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "codehub ") || !strings.Contains(out.String(), "code-server 4.139.1") {
		t.Fatalf("--version: %q", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"codehub", "--help"}, os.Getenv, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hash-password", "config validate", "-bind-addr", "-deployment-mode", "-cert"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	err := run(context.Background(), []string{"codehub", "--no-such-flag"}, os.Getenv, nil, io.Discard, io.Discard)
	var ue usageError
	if !errors.As(err, &ue) {
		t.Fatalf("unknown flag: %v, want a usage error", err)
	}
}

func TestHashPassword(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"codehub", "hash-password"}, os.Getenv, strings.NewReader("s3cret pass\n"), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	hash := strings.TrimSpace(out.String())
	if !strings.HasPrefix(hash, "$argon2id$v=19$") {
		t.Fatalf("hash %q", hash)
	}
	// The hash works as hashed-password.
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("hashed-password: '"+hash+"'\n"), 0o600)
	out.Reset()
	if err := run(context.Background(), []string{"codehub", "config", "validate", file}, os.Getenv, nil, &out, io.Discard); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if err := run(context.Background(), []string{"codehub", "hash-password"}, os.Getenv, strings.NewReader(""), io.Discard, io.Discard); err == nil {
		t.Fatal("empty password accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	var out, errOut bytes.Buffer
	env := func(k string) string {
		if k == "CODEHUB_EXAMPLE_PASSWORD" {
			return "x"
		}
		return os.Getenv(k)
	}
	for _, f := range []string{"../../configs/single-user.yaml", "../../configs/single-user.hcl"} {
		out.Reset()
		if err := run(context.Background(), []string{"codehub", "config", "validate", f}, env, nil, &out, &errOut); err != nil {
			t.Fatalf("%s: %v %s", f, err, errOut.String())
		}
		if !strings.Contains(out.String(), "valid") {
			t.Fatalf("%s: %q", f, out.String())
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.hcl")
	os.WriteFile(bad, []byte("auth = \"ldap\"\nbind_addr = 80\n"), 0o600)
	errOut.Reset()
	err := run(context.Background(), []string{"codehub", "config", "validate", bad}, env, nil, &out, &errOut)
	if err == nil {
		t.Fatal("bad config validated")
	}
	for _, want := range []string{bad + `:1:1: auth: must be one of password, none, got "ldap"`, bad + `:2:1: bind_addr: expected host:port, got "80"`} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("missing %q in:\n%s", want, errOut.String())
		}
	}
}

func TestBadStartupInputs(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--deployment-mode", "cluster"}, nil, `flag --deployment-mode: deployment-mode: must be one of single, multi, got "cluster"`},
		{[]string{"--config", "/nonexistent/codehub.hcl"}, nil, "read config: open /nonexistent/codehub.hcl"},
		{nil, map[string]string{"CODEHUB_CODE_SERVER_PATH": "/nonexistent/code-server"}, "environment variable CODEHUB_CODE_SERVER_PATH: code-server.path: stat /nonexistent/code-server"},
		{[]string{"--cert=/nonexistent.crt", "--cert-key=/nonexistent.key"}, map[string]string{"CODEHUB_UPSTREAM": "http://127.0.0.1:1"}, "load certificate /nonexistent.crt"},
	}
	for _, c := range cases {
		dir := t.TempDir()
		env := map[string]string{"HOME": dir, "PASSWORD": "x"}
		for k, v := range c.env {
			env[k] = v
		}
		args := append([]string{"codehub", "--bind-addr", "127.0.0.1:0"}, c.args...)
		err := run(context.Background(), args, func(k string) string { return env[k] }, nil, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want %q", c.args, err, c.want)
		}
	}
}

func TestChildEnvDropsSecrets(t *testing.T) {
	got := childEnv([]string{"PATH=/bin", "PASSWORD=x", "HASHED_PASSWORD=y", "CODEHUB_PASSWORD=z", "CODE_SERVER_CONFIG=c", "HOME=/h"})
	if strings.Join(got, " ") != "PATH=/bin HOME=/h" {
		t.Fatalf("child env: %q", got)
	}
}

// startUpstreamGateway runs codehub in front of a small running IDE
// stand-in (--upstream), for tests that need no real code-server.
func startUpstreamGateway(t *testing.T, args ...string) *testGateway {
	t.Helper()
	testenv.SkipShort(t)
	ide := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "running IDE: %s", r.URL.Path)
	})}
	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	go ide.Serve(ln)
	t.Cleanup(func() { ide.Close() })

	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	g := &testGateway{t: t, Password: "pw", DataHome: dir, stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	env := map[string]string{"HOME": dir, "PASSWORD": g.Password}
	argv := append([]string{"codehub", "--bind-addr", "127.0.0.1:0", "--upstream", "http://" + ln.Addr().String()}, args...)
	go func() { g.done <- run(ctx, argv, func(k string) string { return env[k] }, nil, g.stdout, g.stderr) }()
	t.Cleanup(func() { g.stop() })
	deadline := time.Now().Add(guard)
	for g.URL == "" {
		if m := urlRE.FindStringSubmatch(g.stdout.String()); m != nil {
			g.URL = strings.TrimSuffix(m[1], "/")
		}
		if time.Now().After(deadline) {
			t.Fatalf("no URL printed:\n%s", g.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.waitHealthy(func(health) bool { return true })
	return g
}

// TestUpstreamMode proxies to an IDE that is already running.
func TestUpstreamMode(t *testing.T) {
	g := startUpstreamGateway(t)
	c, resp := g.login(g.Password)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	if _, body := get(t, c, g.URL+"/hello"); body != "running IDE: /hello" {
		t.Fatalf("proxied: %q", body)
	}
	if err := g.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestSelfSignedTLS: --cert without a file serves HTTPS with a generated
// certificate, kept for the next start, with HSTS and Secure cookies.
func TestSelfSignedTLS(t *testing.T) {
	g := startUpstreamGateway(t, "--cert")
	if !strings.HasPrefix(g.URL, "https://") {
		t.Fatalf("URL %q is not https", g.URL)
	}
	c, resp := g.login(g.Password)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login over TLS: %d", resp.StatusCode)
	}
	var secure bool
	for _, ck := range resp.Cookies() {
		if ck.Name == "codehub_session" {
			secure = ck.Secure
		}
	}
	if !secure {
		t.Error("session cookie lacks Secure under TLS")
	}
	if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Error("no HSTS under TLS")
	}
	if _, body := get(t, c, g.URL+"/x"); body != "running IDE: /x" {
		t.Fatalf("proxied over TLS: %q", body)
	}
}

func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
