package agent

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/gorilla/websocket"
)

// TestAgentWithCodeServer runs the agent with the real code-server through
// its life: refusals, health, the workbench and its WebSocket, usage, a
// crash of code-server, and a stop on request.
func TestAgentWithCodeServer(t *testing.T) {
	t.Parallel()
	const limit = 10 << 30
	r := startAgent(t, func(c *Config) { c.StorageLimit = limit })

	t.Run("refused without the secret", func(t *testing.T) { checkRefused(t, r) })

	h := r.waitRunning(t)
	if h.IDE.State != "running" || h.IDE.PID == 0 || h.IDE.Restarts != 0 || h.Version != "test" || h.StartedAt.IsZero() {
		t.Fatalf("health once running: %+v", h)
	}

	t.Run("workbench", func(t *testing.T) {
		// code-server sends / to the folder; the page is VS Code's.
		resp := r.do(t, "GET", "/")
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.Contains(loc, "folder=") {
			t.Fatalf("GET /: %d, Location %q; want a redirect to the folder", resp.StatusCode, loc)
		}
		u, err := url.Parse(r.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		next, _ := u.Parse(loc)
		resp = r.do(t, "GET", next.RequestURI())
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "workbench") {
			t.Fatalf("GET %s: %d\n%.300s", next.RequestURI(), resp.StatusCode, body)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		agentURL, _ := url.Parse(r.URL)
		hdr := http.Header{
			agentapi.SecretHeader: {r.Secret},
			"Origin":              {"http://" + agentURL.Host},
		}
		d := websocket.Dialer{HandshakeTimeout: guard}
		c, resp, err := d.Dial("ws://"+agentURL.Host+"/?reconnectionToken=agent-test&reconnection=false&skipWebSocketFrames=false", hdr)
		if err != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Fatalf("WebSocket upgrade through the agent: %v (%d)", err, status)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("upgrade answered %d", resp.StatusCode)
		}
		waitFor(t, "the WebSocket to count", func() bool { return get[agentapi.Activity](t, r, agentapi.PathActivity).Connections == 1 })
		c.Close()
		waitFor(t, "the WebSocket to be gone", func() bool { return get[agentapi.Activity](t, r, agentapi.PathActivity).Connections == 0 })
	})

	t.Run("usage", func(t *testing.T) {
		var u agentapi.Usage
		waitFor(t, "usage to be measured", func() bool {
			u = get[agentapi.Usage](t, r, agentapi.PathUsage)
			return u.MemoryBytes > 0 && u.StorageBytes > 0 && u.CPUSeconds > 0
		})
		// code-server is a few Node.js processes: tens to hundreds of MB,
		// and the home holds a small file and code-server's state.
		if u.MemoryBytes < 20<<20 || u.MemoryBytes > 8<<30 || u.StorageBytes > 1<<30 || u.StorageLimitBytes != limit || u.CPUSeconds > 600 {
			t.Errorf("usage %+v is not plausible", u)
		}
		t.Logf("usage: %d MB resident, %d kB stored, %.2f s of CPU", u.MemoryBytes>>20, u.StorageBytes>>10, u.CPUSeconds)
	})

	t.Run("restart after a crash", func(t *testing.T) {
		old := get[agentapi.Health](t, r, agentapi.PathHealth).IDE.PID
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var h agentapi.Health
		waitFor(t, "code-server to be restarted", func() bool {
			h = get[agentapi.Health](t, r, agentapi.PathHealth)
			return h.Status == "running" && h.IDE.PID != old
		})
		if h.IDE.Restarts != 1 {
			t.Errorf("after one crash: %+v", h.IDE)
		}
		// Only the launcher was killed: its children (VS Code's server)
		// must not run on, orphaned, in the old process group.
		waitFor(t, "the crashed code-server's children to be gone", func() bool {
			return syscall.Kill(-old, 0) != nil
		})
		if resp := r.do(t, "GET", "/healthz"); resp.StatusCode != http.StatusOK {
			t.Errorf("code-server after its restart: %d", resp.StatusCode)
		}
	})

	t.Run("stop", func(t *testing.T) {
		pid := get[agentapi.Health](t, r, agentapi.PathHealth).IDE.PID
		resp := r.do(t, "POST", agentapi.PathStop)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s: %d", agentapi.PathStop, resp.StatusCode)
		}
		if err := r.waitExit(t); err != nil {
			t.Fatalf("Run after a stop: %v", err)
		}
		if processAlive(pid) {
			t.Errorf("code-server (pid %d) outlived the agent", pid)
		}
		if _, err := http.Get(r.URL + agentapi.PathHealth); err == nil {
			t.Error("the agent still answers after stopping")
		}
	})
}

// TestAgentCancel stops the agent the way SIGTERM does: its context ends.
func TestAgentCancel(t *testing.T) {
	t.Parallel()
	r := startAgent(t)
	pid := r.waitRunning(t).IDE.PID
	r.cancel()
	if err := r.waitExit(t); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	if processAlive(pid) {
		t.Errorf("code-server (pid %d) outlived the agent", pid)
	}
}

// TestAgentWaitStart checks that --wait-start holds code-server back until
// a byte arrives, while the agent already answers.
func TestAgentWaitStart(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	defer pw.Close()
	r := startAgent(t, func(c *Config) { c.WaitStart = pr })
	// Long enough for code-server to have started had it not been held.
	for i := 0; i < 20; i++ {
		h := get[agentapi.Health](t, r, agentapi.PathHealth)
		if h.Status != "starting" || h.IDE.State != "stopped" || h.IDE.PID != 0 {
			t.Fatalf("health while held: %+v", h)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := pw.Write([]byte{'\n'}); err != nil {
		t.Fatal(err)
	}
	r.waitRunning(t)
}

// TestAgentWaitStartEOF checks that an agent whose start byte never comes
// (the gateway died) exits with an error instead of starting.
func TestAgentWaitStartEOF(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	r := startFakeAgent(t, 0, func(c *Config) { c.WaitStart = pr })
	pw.Close()
	if err := r.waitExit(t); err == nil || !strings.Contains(err.Error(), "start byte") {
		t.Fatalf("Run with stdin closed: %v", err)
	}
}

// TestRunRefuses checks the configurations Run refuses before listening.
func TestRunRefuses(t *testing.T) {
	t.Parallel()
	cases := map[string]Config{
		"no secret":      {CodeServer: "/bin/true"},
		"short secret":   {CodeServer: "/bin/true", Secret: []byte("short")},
		"no code-server": {CodeServer: "/nonexistent/code-server", Secret: []byte(testSecret)},
		"bad address":    {CodeServer: "/bin/true", Secret: []byte(testSecret), Listen: "256.0.0.1:1"},
	}
	for name, cfg := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		err := Run(ctx, cfg)
		cancel()
		if err == nil {
			t.Errorf("%s: Run succeeded", name)
		}
	}
}

// TestAgentCreatesItsFolders: a fresh home (a new volume, a warm
// workspace) has no folder yet; the agent makes it rather than have the
// IDE open on a folder that does not exist.
func TestAgentCreatesItsFolders(t *testing.T) {
	t.Parallel()
	fresh := filepath.Join(t.TempDir(), "home")
	r := startFakeAgent(t, 0, func(c *Config) {
		c.Folder = filepath.Join(fresh, "workspaces")
		c.UserDataDir = filepath.Join(fresh, "state")
		c.ExtensionsDir = filepath.Join(fresh, "extensions")
	})
	r.waitRunning(t)
	for _, d := range []string{"workspaces", "state", "extensions", "state/Machine/settings.json"} {
		if _, err := os.Stat(filepath.Join(fresh, d)); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(fresh, "workspaces")); err == nil && fi.Mode().Perm() != 0o700 {
		t.Errorf("folder mode %v, want 0700", fi.Mode().Perm())
	}
}
