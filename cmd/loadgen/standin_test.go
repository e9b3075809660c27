package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/codeserver"
	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
)

// TestMain lets this test binary be the stand-in IDE, as loadgen's own
// executable is: the workspace scenario starts os.Executable() through a
// link named codehub-loadgen-ide.
func TestMain(m *testing.M) {
	if isStandin(os.Args[0]) {
		os.Exit(standinMain(os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}

func TestIsStandin(t *testing.T) {
	for argv0, want := range map[string]bool{
		"codehub-loadgen-ide":                     true,
		"/tmp/x/bin/codehub-loadgen-ide":          true,
		"loadgen":                                 false,
		"/tmp/x/codehub-loadgen-ide/loadgen":      false,
		"/usr/bin/codehub-loadgen-ide-not-really": false,
		"": false,
	} {
		if got := isStandin(argv0); got != want {
			t.Errorf("isStandin(%q) = %v, want %v", argv0, got, want)
		}
	}
}

func TestIdentity(t *testing.T) {
	line := formatIdentity("u-123", "ws-abc")
	if line != "codehub-loadgen-ide user=u-123 workspace=ws-abc" {
		t.Errorf("formatIdentity = %q", line)
	}
	for name, tt := range map[string]struct {
		in         string
		user, ws   string
		wantParsed bool
	}{
		"line alone":             {line, "u-123", "ws-abc", true},
		"first line of a page":   {line + "\n<!doctype html>...", "u-123", "ws-abc", true},
		"warm, no user yet":      {formatIdentity("", "ws-abc"), "", "ws-abc", true},
		"another page":           {"<!doctype html>\n" + line, "", "", false},
		"no workspace":           {"codehub-loadgen-ide user=u-123", "", "", false},
		"empty workspace":        {"codehub-loadgen-ide user=u-123 workspace=", "", "", false},
		"empty":                  {"", "", "", false},
		"tag of something else":  {"codehub-loadgen user=u-123 workspace=ws-abc", "", "", false},
		"identity on line two":   {"x\n" + line, "", "", false},
		"workspace ends at line": {line + "\nworkspace=ws-other", "u-123", "ws-abc", true},
	} {
		user, ws, ok := parseIdentity([]byte(tt.in))
		if ok != tt.wantParsed || (ok && (user != tt.user || ws != tt.ws)) {
			t.Errorf("%s: parseIdentity(%q) = %q, %q, %v; want %q, %q, %v", name, tt.in, user, ws, ok, tt.user, tt.ws, tt.wantParsed)
		}
	}
}

// TestNewStandinTakesTheAgentsCommandLine parses the command line the
// agent really gives code-server, so that a change of it shows here.
func TestNewStandinTakesTheAgentsCommandLine(t *testing.T) {
	home := "/srv/users/ws-0123456789ab"
	sup := codeserver.New(codeserver.Config{
		SocketPath:    "/tmp/codehub-agent-1/code-server.sock",
		UserDataDir:   home + "/state",
		ExtensionsDir: home + "/extensions",
		Folder:        home + "/workspaces",
	}, hclog.NewNullLogger())
	s, err := newStandin(sup.Args())
	if err != nil {
		t.Fatalf("newStandin(%q): %v", sup.Args(), err)
	}
	if s.socket != "/tmp/codehub-agent-1/code-server.sock" || s.socketMode != 0o600 ||
		s.workspace != "ws-0123456789ab" || s.usersDir != "/srv/users" {
		t.Errorf("newStandin = socket %q mode %v workspace %q users %q", s.socket, s.socketMode, s.workspace, s.usersDir)
	}

	// The --flag=value spelling, a trailing slash, no folder.
	s, err = newStandin([]string{"--socket=/run/s.sock", "--auth=none", "--user-data-dir=/b/ws-1/state/"})
	if err != nil {
		t.Fatal(err)
	}
	if s.socket != "/run/s.sock" || s.socketMode != 0o600 || s.workspace != "ws-1" || s.usersDir != "/b" {
		t.Errorf("newStandin = %+v", s)
	}

	ok := []string{"--socket", "/s", "--auth", "none", "--user-data-dir", "/b/ws-1/state"}
	for name, args := range map[string][]string{
		"no socket":         {"--auth", "none", "--user-data-dir", "/b/ws-1/state"},
		"password auth":     {"--socket", "/s", "--auth", "password", "--user-data-dir", "/b/ws-1/state"},
		"no auth":           {"--socket", "/s", "--user-data-dir", "/b/ws-1/state"},
		"no user data dir":  {"--socket", "/s", "--auth", "none"},
		"unknown flag":      append([]string{"--bind-addr", "0.0.0.0:8080"}, ok...),
		"two folders":       append(ok[:len(ok):len(ok)], "/a", "/b"),
		"socket mode 999":   append([]string{"--socket-mode", "999"}, ok...),
		"socket mode 10000": append([]string{"--socket-mode", "10000"}, ok...),
		"help":              {"-h"},
	} {
		if _, err := newStandin(args); err == nil {
			t.Errorf("%s: newStandin(%q) succeeded, want an error", name, args)
		}
	}
	if _, err := newStandin(append(ok, "/b/ws-1/workspaces")); err != nil {
		t.Errorf("with a folder: %v", err)
	}
}

// TestStandinServes runs the stand-in on a unix socket in a users
// directory laid out as the directory strategy does: its page and
// WebSocket greeting name the user whose link points at its home, once
// there is one.
func TestStandinServes(t *testing.T) {
	base := t.TempDir()
	home := filepath.Join(base, "ws-0123456789ab")
	for _, d := range []string{filepath.Join(home, "state"), filepath.Join(base, "ws-other")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Another user's link, to another workspace.
	if err := os.Symlink("ws-other", filepath.Join(base, "u-other")); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "ide.sock")
	s, err := newStandin([]string{"--socket", sock, "--socket-mode", "600", "--auth", "none",
		"--user-data-dir", filepath.Join(home, "state")})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.listen()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v, %v; want mode 0600", fi, err)
	}
	srv := &http.Server{Handler: s}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: dial}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get("http://ide" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(body)
	}

	if resp, body := get("/healthz"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"status":"alive"`) {
		t.Errorf("/healthz: %s %q", resp.Status, body)
	}
	// A warm workspace: nobody's yet.
	_, body := get("/x")
	if user, ws, ok := parseIdentity([]byte(body)); !ok || user != "" || ws != "ws-0123456789ab" {
		t.Errorf("unclaimed: identity %q, %q, %v", user, ws, ok)
	}
	// Claimed: <base>/<user-id> names the home, as the orchestrator links it.
	if err := os.Symlink("ws-0123456789ab", filepath.Join(base, "u-1")); err != nil {
		t.Fatal(err)
	}
	resp, body := get("/")
	user, ws, ok := parseIdentity([]byte(body))
	if !ok || user != "u-1" || ws != "ws-0123456789ab" {
		t.Errorf("GET /: identity %q, %q, %v", user, ws, ok)
	}
	if len(body) != bodySize || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("GET /: %d bytes of %s, want %d of text/html", len(body), resp.Header.Get("Content-Type"), bodySize)
	}
	resp, body = get("/static/x.js")
	if len(body) != bodySize || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("GET /static/x.js: %d bytes of %s, want %d of text/plain", len(body), resp.Header.Get("Content-Type"), bodySize)
	}

	dialer := websocket.Dialer{NetDialContext: dial, HandshakeTimeout: 10 * time.Second}
	conn, _, err := dialer.Dial("ws://ide/stable-1234", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, greeting, err := conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if string(greeting) != formatIdentity("u-1", "ws-0123456789ab") {
		t.Errorf("greeting %q", greeting)
	}
	for _, msg := range []string{"hello", strings.Repeat("x", 5000)} {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, got, err := conn.ReadMessage(); err != nil || string(got) != msg {
			t.Errorf("echo of %d bytes: %d bytes, %v", len(msg), len(got), err)
		}
	}
}
