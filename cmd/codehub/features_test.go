package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/resources"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/gorilla/websocket"
)

// TestSessionIdleTimeoutFromConfig: the design's
// scaling.auto-cleanup.idle-session-minutes is the sessions' idle timeout
// while auto-cleanup is on; session.idle-timeout, when set, wins.
func TestSessionIdleTimeoutFromConfig(t *testing.T) {
	cases := []struct {
		name, body string
		want       time.Duration
		sweep      bool
	}{
		{"default", "", 60 * time.Minute, true},
		{"design's minutes", "scaling {\n auto_cleanup {\n idle_session_minutes = 15\n }\n }", 15 * time.Minute, true},
		{"never", "scaling {\n auto_cleanup {\n idle_session_minutes = 0\n }\n }", 0, true},
		{"auto-cleanup off", "scaling {\n auto_cleanup {\n enabled = false\n }\n }", 0, false},
		{"session's own", "auth {\n session {\n idle_timeout = \"10m\"\n }\n }\nscaling {\n auto_cleanup {\n enabled = false\n }\n }", 10 * time.Minute, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "codehub.hcl")
			body := "deployment_mode = \"multi\"\nmulti_user {\n" + c.body + "\n}\n"
			if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(config.LoadOptions{File: file, Getenv: testGetenv(t)})
			if err != nil {
				t.Fatal(err)
			}
			if got := sessionIdleTimeout(cfg); got != c.want {
				t.Errorf("idle timeout %s, want %s", got, c.want)
			}
			if got := cfg.MultiUser.Scaling.AutoCleanup.Enabled; got != c.sweep {
				t.Errorf("auto-cleanup %t, want %t", got, c.sweep)
			}
		})
	}
}

// TestFeaturesOff: with the design's features switched off, a gateway
// keeps no audit log (and says so), stores no usage history, serves no
// /metrics and no dashboard pages (the admin API and the account page
// stay), and sweeps no sessions.
func TestFeaturesOff(t *testing.T) {
	t.Parallel()
	cfg := &opsConfig{
		Upstream: startStandInIDE(t),
		Extra: "  features {\n    audit_logging = false\n    usage_analytics = false\n    admin_dashboard = false\n" +
			"    metrics_export = \"none\"\n  }\n" +
			"  scaling {\n    auto_cleanup {\n      enabled = false\n      expired_session_cleanup_interval = \"100ms\"\n    }\n  }\n" +
			"  usage {\n    sample_interval = \"1s\"\n  }\n",
	}
	file := cfg.write(t)
	createUser(t, file, "admin", auditAdminPW, "--role", "admin")
	createUser(t, file, "alice", "alice-password-1")
	g := startMultiGateway(t, file)
	if log := g.stderr.String(); !strings.Contains(log, "audit-logging is off: no audit log is kept") {
		t.Errorf("the gateway does not warn that no audit log is kept:\n%s", tail(log, 30))
	}
	admin := apiLogin(t, g, "admin", auditAdminPW)
	adminCookie := mustFormLogin(t, g, "admin", auditAdminPW)
	tok := mustFormLogin(t, g, "alice", "alice-password-1")
	formLogin(t, g, "alice", "wrong-password")

	// No audit log: no file, nothing in the database, no query API.
	if _, err := os.Stat(cfg.AuditFile); !os.IsNotExist(err) {
		t.Errorf("audit file %s: %v; want none", cfg.AuditFile, err)
	}
	if r := do(t, http.MethodGet, g.URL+"/api/v1/admin/audit", nil, bearer(admin.AccessToken)...); r.Status != http.StatusNotFound {
		t.Errorf("GET /api/v1/admin/audit: %d, want 404", r.Status)
	}
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.DriverSQLite,
		Path: filepath.Join(cfg.DataDir, "users.db")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if r, err := db.AuditLog().Verify(context.Background(), audit.VerifyOptions{}); err != nil || r.Count != 0 {
		t.Errorf("the database audit log holds %d entries (%v); want none", r.Count, err)
	}

	// No metrics endpoint.
	if r := do(t, http.MethodGet, g.URL+"/metrics", nil); r.Status == http.StatusOK || strings.Contains(string(r.Body), "code_server_") {
		t.Errorf("GET /metrics with metrics-export none: %d %.200s", r.Status, r.Body)
	}

	// No dashboard pages: /admin is the IDE's like any other path; the
	// admin API and the account page stay.
	if r := ideGet(t, g, "/admin", adminCookie); r.Status != http.StatusOK || string(r.Body) != "IDE:/admin" {
		t.Errorf("GET /admin with the dashboard off: %d %.200q; want the IDE's", r.Status, r.Body)
	}
	if r := ideGet(t, g, "/admin/users", adminCookie); string(r.Body) != "IDE:/admin/users" {
		t.Errorf("GET /admin/users with the dashboard off: %d %.200q; want the IDE's", r.Status, r.Body)
	}
	if r := do(t, http.MethodGet, g.URL+"/api/v1/admin/users", nil, bearer(admin.AccessToken)...); r.Status != http.StatusOK {
		t.Errorf("the admin API with the dashboard off: %d", r.Status)
	}
	if r := ideGet(t, g, "/account", tok); r.Status != http.StatusOK || strings.Contains(string(r.Body), "IDE:") {
		t.Errorf("the account page with the dashboard off: %d %.200q", r.Status, r.Body)
	}

	// No usage history, though the sampler runs (every second).
	time.Sleep(2500 * time.Millisecond)
	samples, err := db.Usage().Samples(context.Background(), resources.Totals, time.Now().Add(-time.Hour), time.Now().Add(time.Minute))
	if err != nil || len(samples) != 0 {
		t.Errorf("stored usage samples: %d (%v); want none", len(samples), err)
	}

	// No sweep: a session unused for two hours is neither swept nor ended
	// (the idle timeout is auto-cleanup's); one past its lifetime (which
	// no store returns) stays in the store.
	sid := session.IDFromToken(tok)
	if _, err := db.Sessions().Update(context.Background(), sid, func(s *session.Session) error {
		s.LastActivity = time.Now().Add(-2 * time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	oldTok := mustFormLogin(t, g, "alice", "alice-password-1")
	if _, err := db.Sessions().Update(context.Background(), session.IDFromToken(oldTok), func(s *session.Session) error {
		s.ExpiresAt = time.Now().Add(-time.Second)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // five sweep intervals
	if _, err := db.Sessions().Get(context.Background(), sid); err != nil {
		t.Errorf("the idle session was ended with auto-cleanup off: %v", err)
	}
	wantIDE(t, g, tok, "/still-here")
	var expired int
	if err := db.SQL().QueryRow("SELECT count(*) FROM sessions WHERE id = ?", session.IDFromToken(oldTok)).Scan(&expired); err != nil {
		t.Fatal(err)
	}
	if expired != 1 {
		t.Errorf("the expired session was swept with auto-cleanup off")
	}
}

// TestOpenEditorKeepsSessionAlive: sessions unused past the idle timeout
// are swept on the clean-up interval, but an open editor (messages on its
// WebSocket, which the gateway relays without a new sign-in check) keeps
// its session in use.
func TestOpenEditorKeepsSessionAlive(t *testing.T) {
	t.Parallel()
	cfg := &opsConfig{
		Upstream: startStandInIDE(t),
		Session:  "      idle_timeout = \"3s\"\n      cleanup_interval = \"200ms\"",
	}
	file := cfg.write(t)
	createUser(t, file, "alice", "alice-password-1")
	createUser(t, file, "bob", "bob-password-1")
	g := startMultiGateway(t, file)
	editing := mustFormLogin(t, g, "alice", "alice-password-1")
	idle := mustFormLogin(t, g, "bob", "bob-password-1")

	d := websocket.Dialer{HandshakeTimeout: guard}
	ws, _, err := d.Dial("ws"+strings.TrimPrefix(g.URL, "http")+"/editor", http.Header{
		"Cookie": {sessionCookie(editing)}, "Origin": {g.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	deadline := time.Now().Add(6 * time.Second) // twice the idle timeout
	for time.Now().Before(deadline) {
		if err := ws.WriteMessage(websocket.TextMessage, []byte("typing")); err != nil {
			t.Fatalf("the editor's WebSocket closed: %v", err)
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			t.Fatalf("the editor's WebSocket closed: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	wantNoIDE(t, g, idle, "/x")
	wantIDE(t, g, editing, "/x")
}
