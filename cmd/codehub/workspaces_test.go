package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/gorilla/websocket"
)

// These tests run workspaces through their life: a gateway killed and
// replaced, a code-server killed, the warm pool, the directory strategy.

var (
	buildOnce  sync.Once
	builtDir   string
	builtBin   string
	builtError error
)

// codehubBinary builds the codehub binary once per test run (without the
// race detector: it is the real program, whose memory is measured), for
// tests that need a gateway in a process of its own.
func codehubBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		// Under /var/lib so that workspace accounts may run the agent from
		// it, were it not copied to the runtime.
		builtDir, builtError = os.MkdirTemp("/var/lib", "codehub-test-bin-")
		if builtError != nil {
			return
		}
		builtBin = filepath.Join(builtDir, "codehub")
		cmd := exec.Command("go", "build", "-o", builtBin, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			builtError = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if builtError != nil {
		t.Fatalf("build codehub: %v", builtError)
	}
	return builtBin
}

// removeBuilt removes what codehubBinary built; TestMain calls it.
func removeBuilt() {
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
}

// procGateway is a gateway running as a process of its own.
type procGateway struct {
	t              *testing.T
	cmd            *exec.Cmd
	URL            string
	stdout, stderr *syncBuffer
	exited         chan error
}

// startProcGateway runs bin as a gateway on the installation and waits
// until it answers. It is SIGKILLed, if still running, when t ends.
func (e *wsEnv) startProcGateway(bin string) *procGateway {
	e.t.Helper()
	p := &procGateway{t: e.t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, "--config", e.File)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.DataDir}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	e.t.Cleanup(func() {
		p.kill()
		if e.t.Failed() {
			e.t.Logf("gateway process %d stderr:\n%s", p.cmd.Process.Pid, tail(p.stderr.String(), 200))
		}
	})
	g := &testGateway{t: e.t, stdout: p.stdout, stderr: p.stderr}
	e.waitAnnounced(g, func() error {
		select {
		case err := <-p.exited:
			p.exited <- err
			return fmt.Errorf("the gateway exited early: %v", err)
		default:
			return nil
		}
	})
	p.URL = g.URL
	return p
}

// gateway returns a testGateway for the helpers that take one.
func (p *procGateway) gateway() *testGateway {
	return &testGateway{t: p.t, URL: p.URL, stdout: p.stdout, stderr: p.stderr}
}

// kill SIGKILLs the gateway, as a crash or `kill -9` would, and reaps it.
func (p *procGateway) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case err := <-p.exited:
		p.exited <- err
	case <-time.After(30 * time.Second):
		p.t.Errorf("gateway process %d did not die", p.cmd.Process.Pid)
	}
}

// TestReattachAfterGatewayKill9: a gateway killed with SIGKILL leaves the
// workspaces running (their agents are in sessions of their own); the next
// gateway on the same configuration re-attaches to them instead of starting
// new ones, and the sessions of before still reach the IDE.
func TestReattachAfterGatewayKill9(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, wsOptions{})
	bin := codehubBinary(t)
	id := e.createUser("alice", alicePW)
	p1 := e.startProcGateway(bin)
	tok := mustFormLogin(t, p1.gateway(), "alice", alicePW)
	openWorkbench(t, p1.gateway(), tok)
	w := e.runningWorkspace(id)
	uid := 0
	fmt.Sscan(w.Meta["uid"], &uid)
	marker := "before the crash " + randomHex(t, 6) + "\n"
	file := writeOwned(t, w, "workspaces/kept.txt", []byte(marker))
	before, err := agentHealth(t, w)
	if err != nil {
		t.Fatal(err)
	}

	p1.kill()
	time.Sleep(time.Second)
	if a := agentsOf(uid); len(a) != 1 || a[0].PID != w.PID {
		t.Fatalf("after the gateway's SIGKILL the agents of alice's account are %+v, want pid %d alone", a, w.PID)
	}
	if h, err := agentHealth(t, w); err != nil || h.Status != "running" || h.IDE.PID != before.IDE.PID {
		t.Fatalf("alice's workspace after the gateway's SIGKILL: %+v %v (code-server was pid %d)", h, err, before.IDE.PID)
	}

	p2 := e.startProcGateway(bin)
	g2 := p2.gateway()
	eventually(t, guard, "the new gateway to say it re-attached", func() bool {
		return strings.Contains(p2.stderr.String(), "re-attached to a running workspace")
	})
	reattached := regexp.MustCompile(`re-attached to a running workspace: workspace=(\S+) user=(\S+) pid=(\d+)`).FindStringSubmatch(p2.stderr.String())
	if reattached == nil || reattached[1] != w.ID || reattached[2] != id || reattached[3] != fmt.Sprint(w.PID) {
		t.Errorf("re-attach log line %q, want workspace %s, user %s, pid %d", reattached, w.ID, id, w.PID)
	}
	// The session of before still opens the IDE, on the same workspace.
	openWorkbench(t, g2, tok)
	if r := remoteResource(t, g2, tok, file); r.Status != http.StatusOK || string(r.Body) != marker {
		t.Errorf("alice's file through the new gateway: %d %.200q", r.Status, r.Body)
	}
	w2 := e.workspaceOf(id)
	if w2.ID != w.ID || w2.PID != w.PID || w2.State != workspace.StateRunning || w2.Restarts != 0 {
		t.Errorf("alice's workspace after the re-attach: %s pid %d %s, %d restarts; was %s pid %d", w2.ID, w2.PID, w2.State, w2.Restarts, w.ID, w.PID)
	}
	if a := agentsOf(uid); len(a) != 1 || a[0].PID != w.PID {
		t.Errorf("after the re-attach the agents of alice's account are %+v, want pid %d alone", a, w.PID)
	}
	if h, err := agentHealth(t, w2); err != nil || h.IDE.PID != before.IDE.PID {
		t.Errorf("alice's code-server after the re-attach: %+v %v, was pid %d", h, err, before.IDE.PID)
	}
	if strings.Contains(p2.stderr.String(), "workspace started") {
		t.Errorf("the new gateway started a workspace:\n%s", tail(p2.stderr.String(), 40))
	}
}

// TestWorkspaceCodeServerKilled: a code-server killed with SIGKILL is
// started again by its agent; the IDE comes back through the gateway and
// the user's files are intact.
func TestWorkspaceCodeServerKilled(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, wsOptions{})
	id := e.createUser("alice", alicePW)
	g := e.startGateway()
	tok := mustFormLogin(t, g, "alice", alicePW)
	openWorkbench(t, g, tok)
	w := e.runningWorkspace(id)
	marker := "written before code-server died " + randomHex(t, 6) + "\n"
	file := writeOwned(t, w, "workspaces/kept.txt", []byte(marker))
	h, err := agentHealth(t, w)
	if err != nil || h.IDE.PID == 0 {
		t.Fatalf("agent health: %+v %v", h, err)
	}
	// code-server leads a process group of its own.
	if err := syscall.Kill(-hostPID(w, h.IDE.PID), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, guard, "code-server to be running again", func() bool {
		h2, err := agentHealth(t, w)
		return err == nil && h2.Status == "running" && h2.IDE.PID != h.IDE.PID && h2.IDE.State == "running"
	})
	openWorkbench(t, g, tok)
	if r := remoteResource(t, g, tok, file); r.Status != http.StatusOK || string(r.Body) != marker {
		t.Errorf("the file through the IDE after the restart: %d %.200q", r.Status, r.Body)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != marker {
		t.Errorf("the file on disk after the restart: %q %v", b, err)
	}
	h2, _ := agentHealth(t, w)
	if h2.IDE.Restarts != 1 {
		t.Errorf("code-server restarts = %d, want 1", h2.IDE.Restarts)
	}
	// The agent did the restart; the workspace itself did not change.
	if w2 := e.workspaceOf(id); w2.ID != w.ID || w2.PID != w.PID || w2.State != workspace.StateRunning {
		t.Errorf("the workspace after code-server's restart: %s pid %d %s; was %s pid %d", w2.ID, w2.PID, w2.State, w.ID, w.PID)
	}
}

// TestWarmPoolClaim: with a warm pool of one, a workspace runs before
// anyone signs in; the first user to sign in gets it (its id is theirs,
// <base>/<user-id> points to it) and the pool fills up again.
func TestWarmPoolClaim(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, wsOptions{WarmPool: 1})
	g := e.startGateway()
	warm := e.waitWarm("")
	if _, err := os.Stat(warm.Home); err != nil {
		t.Fatalf("the warm workspace's home: %v", err)
	}

	id := e.createUser("carol", "carol-password-1")
	tok := mustFormLogin(t, g, "carol", "carol-password-1")
	openWorkbench(t, g, tok)
	w := e.workspaceOf(id)
	if w.ID != warm.ID || w.PID != warm.PID {
		t.Fatalf("carol got workspace %s (pid %d), want the warm %s (pid %d)", w.ID, w.PID, warm.ID, warm.PID)
	}
	link, err := os.Readlink(filepath.Join(e.Base, id))
	if err != nil || filepath.Base(link) != warm.ID {
		t.Errorf("%s/%s links to %q (%v), want %s", e.Base, id, link, err, warm.ID)
	}
	if !strings.Contains(g.stderr.String(), "warm workspace claimed: workspace="+warm.ID) {
		t.Errorf("the gateway did not log the claim of %s", warm.ID)
	}
	marker := "carol's " + randomHex(t, 6) + "\n"
	writeOwned(t, w, "workspaces/mine.txt", []byte(marker))
	if r := remoteResource(t, g, tok, filepath.Join(e.Base, id, "workspaces", "mine.txt")); r.Status != http.StatusOK || string(r.Body) != marker {
		t.Errorf("carol's file through <base>/<user-id>: %d %.200q", r.Status, r.Body)
	}
	next := e.waitWarm(warm.ID)
	t.Logf("claimed %s; the pool refilled with %s", warm.ID, next.ID)
}

// waitWarm waits until the pool holds a running workspace other than
// not, and returns it.
func (e *wsEnv) waitWarm(not string) *workspace.Workspace {
	e.t.Helper()
	var found *workspace.Workspace
	eventually(e.t, guard, "a running warm workspace", func() bool {
		for _, w := range e.workspaces() {
			if w.UserID == "" && w.State == workspace.StateRunning && w.ID != not {
				found = w
				return true
			}
		}
		return false
	})
	return found
}

// TestWorkspaceDirectoryStrategy: without process isolation a workspace
// runs as the gateway's own account, in a directory of its own, and the
// gateway says at start what that does not isolate.
func TestWorkspaceDirectoryStrategy(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, wsOptions{Strategy: "directory"})
	id := e.createUser("dave", "dave-password-1")
	g := e.startGateway()
	log := g.stderr.String()
	for _, want := range []string{
		`isolation strategy "directory"`, "every user can read and change the others' files",
		"see and signal their processes", "reach their ports", "its UNIX sockets included",
		"no memory, CPU, process or storage limit applies",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the start-up log does not say %q:\n%s", want, tail(log, 20))
		}
	}
	tok := mustFormLogin(t, g, "dave", "dave-password-1")
	u, _ := openWorkbench(t, g, tok)
	w := e.runningWorkspace(id)
	if !strings.Contains(u, url.QueryEscape(filepath.Join(w.Home, "workspaces"))) && !strings.Contains(u, filepath.Join(w.Home, "workspaces")) {
		t.Errorf("the workbench %s does not open %s", u, filepath.Join(w.Home, "workspaces"))
	}
	p, ok := procOf(w.PID)
	if !ok || p.UID != os.Geteuid() {
		t.Errorf("the agent %+v, want it running as the gateway's uid %d", p, os.Geteuid())
	}
	if w.Meta["strategy"] != "directory" || w.Meta["cgroup"] != "" || w.Meta["netns"] != "" || w.Meta["uid"] != "" {
		t.Errorf("a directory workspace's facts: %v", w.Meta)
	}
	if !strings.HasPrefix(w.Address, "127.0.0.1:") {
		t.Errorf("the agent listens on %s, want loopback", w.Address)
	}
	for _, d := range []string{"workspaces", "extensions", "state/User", "logs"} {
		if fi, err := os.Stat(filepath.Join(w.Home, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s/%s: %v", w.Home, d, err)
		}
	}
}

// TestWorkspaceGatewayRSS measures the gateway's memory (the real binary,
// in a process of its own) with users signed in and their editors
// connected but idle: two WebSockets each, as a workbench tab holds.
func TestWorkspaceGatewayRSS(t *testing.T) {
	t.Parallel()
	const users = 4
	e := newWSEnv(t, wsOptions{MemoryMB: 1024})
	bin := codehubBinary(t)
	ids := make([]string, users)
	for i := range ids {
		ids[i] = e.createUser(fmt.Sprintf("user%d", i), "user-password-1")
	}
	p := e.startProcGateway(bin)
	g := p.gateway()
	time.Sleep(3 * time.Second)
	idle := rssKiB(p.cmd.Process.Pid)
	gu, _ := url.Parse(g.URL)
	var conns []*websocket.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	toks := make([]string, users)
	for i := range ids {
		toks[i] = mustFormLogin(t, g, fmt.Sprintf("user%d", i), "user-password-1")
		navigate(t, g.URL+"/", toks[i]) // the start goes on in the background
	}
	for i := range ids {
		openWorkbench(t, g, toks[i])
		for j := range 2 {
			d := websocket.Dialer{HandshakeTimeout: guard}
			u := fmt.Sprintf("ws://%s/?reconnectionToken=7f3c1a2e-0000-4000-8000-%012d&reconnection=false&skipWebSocketFrames=false", gu.Host, i*10+j)
			c, resp, err := d.Dial(u, http.Header{"Origin": {g.URL}, "Cookie": {sessionCookie(toks[i])}})
			if err != nil {
				t.Fatalf("WebSocket of user%d: %v (%v)", i, err, resp)
			}
			conns = append(conns, c)
		}
	}
	time.Sleep(3 * time.Second)
	busy := rssKiB(p.cmd.Process.Pid)
	open := regexp.MustCompile(`(?m)^codehub_websockets_open (\d+)`).FindSubmatch(do(t, http.MethodGet, g.URL+"/metrics", nil).Body)
	if open == nil || string(open[1]) != fmt.Sprint(len(conns)) {
		t.Errorf("the gateway relays %q WebSockets, want %d", open, len(conns))
	}
	t.Logf("FIGURE gateway RSS: %.1f MiB idle, %.1f MiB with %d users signed in, editors connected (%d WebSockets)",
		float64(idle)/1024, float64(busy)/1024, users, len(conns))
}

// p50 returns the median of ds.
func p50(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
