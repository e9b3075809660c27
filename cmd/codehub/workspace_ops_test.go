package main

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/gorilla/websocket"
)

// These tests run real workspaces (the directory strategy: `codehub
// agent` and a real code-server as the test's own account) behind an
// in-process gateway, and look at the audit log, the metrics and the
// clean-up around them.

// opsWSEnv is a wsEnv whose configuration adds an audit file, a fast
// usage sampler and extra, and whose administrator is signed in.
type opsWSEnv struct {
	*wsEnv
	AuditFile string
	g         *testGateway
	admin     string // access token
}

// newOpsWSEnv makes the installation; extra goes into multi_user, top at
// the top level.
func newOpsWSEnv(t *testing.T, extra, top string) *opsWSEnv {
	t.Helper()
	e := &opsWSEnv{wsEnv: newWSEnv(t, wsOptions{Strategy: "directory"})}
	e.AuditFile = filepath.Join(e.DataDir, "audit", "audit.log")
	cfg := strings.TrimSuffix(e.config(), "}\n") // multi_user's end
	cfg += "  usage {\n    sample_interval = \"1s\"\n  }\n" + extra + "}\n"
	cfg += "audit {\n  file = " + strconv.Quote(e.AuditFile) + "\n}\n" + top
	if err := os.WriteFile(e.File, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cli("create", "--username", "admin", "--email", "admin@example.com", "--role", "admin", "--password-stdin")
	return e
}

// cli runs `codehub user ARGS` on the installation.
func (e *opsWSEnv) cli(args ...string) string {
	e.t.Helper()
	var out, errOut bytes.Buffer
	argv := append(append([]string{"codehub", "user"}, args...), "--config", e.File)
	if err := run(context.Background(), argv, e.getenv, strings.NewReader(auditAdminPW+"\n"), &out, &errOut); err != nil {
		e.t.Fatalf("codehub user %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// start runs the gateway and signs the administrator in.
func (e *opsWSEnv) start() *testGateway {
	e.t.Helper()
	e.g = e.startGateway()
	e.admin = apiLogin(e.t, e.g, "admin", auditAdminPW).AccessToken
	return e.g
}

// waitAudit waits until the audit file holds an entry m selects, and
// checks that the database holds the same; it returns the entry.
func (e *opsWSEnv) waitAudit(m eventMatch) audit.Event {
	e.t.Helper()
	var fe audit.Event
	eventually(e.t, guard, "the audit file to hold "+m.String(), func() bool {
		var ok bool
		fe, ok = m.find(readAuditFile(e.t, e.AuditFile))
		return ok
	})
	for _, de := range adminAudit(e.t, e.g, e.admin, "type="+url.QueryEscape(m.Type)) {
		if m.matches(de) && sameEntry(fe, de) {
			return fe
		}
	}
	e.t.Errorf("in the audit file but not in the database: %v", m)
	return fe
}

// stopped waits until the user's workspace is stopped and its agent gone.
func (e *opsWSEnv) stopped(w *workspace.Workspace) {
	e.t.Helper()
	eventually(e.t, guard, "the workspace of "+w.UserID+" to stop", func() bool {
		cur := e.workspaceOf(w.UserID)
		_, alive := procOf(w.PID)
		return cur.State == workspace.StateStopped && !alive
	})
}

// editorSocketURL is VS Code's remote-connection WebSocket on g.
func editorSocketURL(g *testGateway) string {
	return "ws" + strings.TrimPrefix(g.URL, "http") +
		"/?reconnectionToken=7f3c1a2e-0000-4000-8000-000000000002&reconnection=false&skipWebSocketFrames=false"
}

// TestAuditWorkspaceEvents: starting a workspace, reading a file and
// connecting the editor through it, stopping it, and a start that fails,
// each leave their entry in the audit file and the database.
func TestAuditWorkspaceEvents(t *testing.T) {
	t.Parallel()
	e := newOpsWSEnv(t, "", "")
	wendy := e.createUser("wendy", "wendy-password-1")
	xena := e.createUser("xena", "xena-password-1")
	// xena's home name is taken by something else: her start fails.
	if err := os.MkdirAll(e.Base, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("ws-not-hers", filepath.Join(e.Base, xena)); err != nil {
		t.Fatal(err)
	}
	g := e.start()

	tok := mustFormLogin(t, g, "wendy", "wendy-password-1")
	openWorkbench(t, g, tok)
	w := e.runningWorkspace(wendy)
	e.waitAudit(eventMatch{Type: audit.WorkspaceStarted, UserID: wendy, Username: "wendy", Status: "success",
		Meta: map[string]any{"workspaceId": w.ID, "source": "cold"}})

	settings := filepath.Join(w.Home, "settings.json")
	if r := remoteResource(t, g, tok, settings); r.Status != http.StatusOK {
		t.Fatalf("reading %s through the editor: %d %.200s", settings, r.Status, r.Body)
	}
	e.waitAudit(eventMatch{Type: audit.FileAccess, UserID: wendy, Username: "wendy", Client: true,
		Meta: map[string]any{"path": settings}})
	d := websocket.Dialer{HandshakeTimeout: guard}
	ws, resp, err := d.Dial(editorSocketURL(g), http.Header{"Cookie": {sessionCookie(tok)}, "Origin": {g.URL}})
	if err != nil {
		t.Fatalf("the editor's WebSocket: %v (%v)", err, resp)
	}
	ws.Close()
	e.waitAudit(eventMatch{Type: audit.WorkspaceConnect, UserID: wendy, Username: "wendy", Client: true,
		Meta: map[string]any{"path": "/"}})

	r := do(t, http.MethodPost, g.URL+"/api/v1/me/workspace/stop", nil, "Cookie", sessionCookie(tok))
	if r.Status != http.StatusNoContent {
		t.Fatalf("stop my workspace: %d %s", r.Status, r.Body)
	}
	e.stopped(w)
	e.waitAudit(eventMatch{Type: audit.WorkspaceStopped, UserID: wendy, Username: "wendy", Client: false,
		Meta: map[string]any{"workspaceId": w.ID, "reason": "stopped by its user"}})

	xtok := mustFormLogin(t, g, "xena", "xena-password-1")
	navigate(t, g.URL+"/", xtok)
	f := e.waitAudit(eventMatch{Type: audit.WorkspaceFailed, UserID: xena, Username: "xena", Status: "failure"})
	if msg, _ := f.Metadata["error"].(string); !strings.Contains(msg, "already names another workspace") {
		t.Errorf("workspace.failed says %q; want why", msg)
	}
}

// metricSample is one line of the Prometheus text format.
type metricSample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

var (
	sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)`)
	labelRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape returns what GET /metrics on g shows.
func scrape(t *testing.T, g *testGateway) []metricSample {
	t.Helper()
	r := do(t, http.MethodGet, g.URL+"/metrics", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", r.Status)
	}
	var out []metricSample
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("/metrics: cannot read %q", line)
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("/metrics: %q: %v", line, err)
		}
		s := metricSample{Name: m[1], Labels: map[string]string{}, Value: v}
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			s.Labels[l[1]] = l[2]
		}
		out = append(out, s)
	}
	return out
}

// value sums the samples of name whose labels include want; found says
// whether there was one.
func value(samples []metricSample, name string, want map[string]string) (sum float64, found bool) {
	for _, s := range samples {
		if s.Name != name {
			continue
		}
		ok := true
		for k, v := range want {
			ok = ok && s.Labels[k] == v
		}
		if ok {
			sum += s.Value
			found = true
		}
	}
	return sum, found
}

// TestMetricsAfterLoginStartStop: after a sign-in, a workspace start and
// its stop, /metrics shows every metric of the design (§12.2) under its
// exact name, with values that tell what happened, and the gateway's own
// (start queue, warm pool, WebSockets, storage per user).
func TestMetricsAfterLoginStartStop(t *testing.T) {
	t.Parallel()
	e := newOpsWSEnv(t, "", "")
	wendy := e.createUser("wendy", "wendy-password-1")
	g := e.start()
	if resp, _ := formLogin(t, g, "wendy", "not-her-password"); resp.StatusCode == http.StatusSeeOther {
		t.Fatal("a wrong password signed in")
	}
	tok := mustFormLogin(t, g, "wendy", "wendy-password-1")
	openWorkbench(t, g, tok)
	w := e.runningWorkspace(wendy)
	d := websocket.Dialer{HandshakeTimeout: guard}
	ws, resp, err := d.Dial(editorSocketURL(g), http.Header{"Cookie": {sessionCookie(tok)}, "Origin": {g.URL}})
	if err != nil {
		t.Fatalf("the editor's WebSocket: %v (%v)", err, resp)
	}
	defer ws.Close()
	// The gateway counts the connection once it has joined both ends,
	// which may be just after the browser's handshake completed.
	eventually(t, guard, "codehub_websockets_open = 1 with the editor's WebSocket open", func() bool {
		v, _ := value(scrape(t, g), "codehub_websockets_open", nil)
		return v == 1
	})

	// While running, once the sampler (every second) has seen it.
	var s []metricSample
	eventually(t, guard, "the sampler to see the running workspace and its storage", func() bool {
		s = scrape(t, g)
		running, _ := value(s, "code_server_active_containers", map[string]string{"status": "running"})
		storage, _ := value(s, "codehub_user_storage_bytes", map[string]string{"user": "wendy"})
		return running == 1 && storage > 0
	})
	checks := []struct {
		name   string
		labels map[string]string
		ok     func(float64) bool
		want   string
	}{
		{"code_server_login_attempts_total", map[string]string{"status": "success"}, func(v float64) bool { return v == 2 }, "2 (admin, wendy)"},
		{"code_server_login_attempts_total", map[string]string{"status": "failure"}, func(v float64) bool { return v == 1 }, "1"},
		{"code_server_login_attempts_total", map[string]string{"status": "throttled"}, func(v float64) bool { return v == 0 }, "0"},
		{"code_server_sessions_created_total", nil, func(v float64) bool { return v == 2 }, "2"},
		{"code_server_active_users", nil, func(v float64) bool { return v == 2 }, "2"},
		{"code_server_active_sessions", nil, func(v float64) bool { return v == 2 }, "2"},
		{"code_server_active_containers", map[string]string{"status": "running"}, func(v float64) bool { return v == 1 }, "1"},
		{"code_server_active_containers", map[string]string{"status": "starting"}, func(v float64) bool { return v == 0 }, "0"},
		{"code_server_active_containers", map[string]string{"status": "stopping"}, func(v float64) bool { return v == 0 }, "0"},
		{"code_server_request_duration_seconds_count", map[string]string{"method": "POST", "route": "/login", "status": "303"},
			func(v float64) bool { return v >= 1 }, ">= 1"},
		{"code_server_request_duration_seconds_bucket", map[string]string{"le": "+Inf"}, func(v float64) bool { return v >= 5 }, ">= 5"},
		{"code_server_container_startup_seconds_count", map[string]string{"source": "cold"}, func(v float64) bool { return v == 1 }, "1"},
		{"code_server_container_startup_seconds_sum", map[string]string{"source": "cold"}, func(v float64) bool { return v > 0 && v < guard.Seconds() }, "the start's duration"},
		{"codehub_workspace_start_queue", nil, func(v float64) bool { return v == 0 }, "0"},
		{"codehub_warm_pool_size", nil, func(v float64) bool { return v == 0 }, "0 (no pool)"},
		{"codehub_websockets_open", nil, func(v float64) bool { return v <= 1 }, "0 or 1 (code-server may have closed it)"},
		{"codehub_user_storage_bytes", map[string]string{"user": "wendy"}, func(v float64) bool { return v > 0 }, "> 0"},
		{"codehub_workspace_starts_total", map[string]string{"result": "success"}, func(v float64) bool { return v == 1 }, "1"},
	}
	for _, c := range checks {
		v, found := value(s, c.name, c.labels)
		if !found {
			t.Errorf("/metrics has no %s%v", c.name, c.labels)
		} else if !c.ok(v) {
			t.Errorf("%s%v = %v, want %s", c.name, c.labels, v, c.want)
		}
	}
	ws.Close()

	r := do(t, http.MethodPost, g.URL+"/api/v1/me/workspace/stop", nil, "Cookie", sessionCookie(tok))
	if r.Status != http.StatusNoContent {
		t.Fatalf("stop my workspace: %d %s", r.Status, r.Body)
	}
	e.stopped(w)
	eventually(t, guard, "the metrics to show the workspace stopped", func() bool {
		s = scrape(t, g)
		running, _ := value(s, "code_server_active_containers", map[string]string{"status": "running"})
		stopped, _ := value(s, "code_server_active_containers", map[string]string{"status": "stopped"})
		open, _ := value(s, "codehub_websockets_open", nil)
		return running == 0 && stopped == 1 && open == 0
	})
	// The home's storage stays known after the stop.
	if v, _ := value(s, "codehub_user_storage_bytes", map[string]string{"user": "wendy"}); v <= 0 {
		t.Errorf("storage of wendy after the stop: %v", v)
	}
}

// TestUserDeleteStopsWorkspace: `codehub user delete` releases what the
// account held, as the admin API's delete does: the workspace is stopped
// (recorded as workspace.stopped), its files kept, and the gateway that
// started it does not restart it.
func TestUserDeleteStopsWorkspace(t *testing.T) {
	t.Parallel()
	e := newOpsWSEnv(t, "", "")
	wendy := e.createUser("wendy", "wendy-password-1")
	g := e.start()
	tok := mustFormLogin(t, g, "wendy", "wendy-password-1")
	openWorkbench(t, g, tok)
	w := e.runningWorkspace(wendy)

	out := e.cli("delete", "wendy", "--yes")
	if !strings.Contains(out, "deleted wendy") {
		t.Errorf("codehub user delete printed %q", out)
	}
	e.stopped(w)
	e.waitAudit(eventMatch{Type: audit.UserDeleted, UserID: wendy, Username: "wendy"})
	e.waitAudit(eventMatch{Type: audit.WorkspaceStopped, UserID: wendy,
		Meta: map[string]any{"workspaceId": w.ID, "reason": "its user was deleted"}})
	if _, err := os.Stat(filepath.Join(w.Home, "settings.json")); err != nil {
		t.Errorf("the deleted user's files: %v", err)
	}
	// The gateway's health checks (every 5s) must not take the stop for
	// a crash and start it again.
	time.Sleep(12 * time.Second)
	if cur := e.workspaceOf(wendy); cur.State != workspace.StateStopped || cur.Restarts != 0 {
		t.Errorf("after the gateway's health checks: %+v; want it to stay stopped", cur)
	}
	wantNoIDE(t, g, tok, "/x")
}
