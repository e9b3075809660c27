package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/cgroup"
	"github.com/codehub-dev/codehub/internal/netns"
	"github.com/codehub-dev/codehub/internal/osuser"
	"github.com/codehub-dev/codehub/internal/sandbox"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// These helpers run multi-user gateways with real workspaces: `codehub
// agent` processes supervising real code-servers, started by the local
// orchestrator. Each test gets an installation of its own (wsEnv): a root
// directory under /var/lib that workspace accounts can traverse, holding
// the users' base path, the runtime the orchestrator prepares, the data
// directory and the SQLite database; and a uid range no other test uses.
// When the test ends, everything it made is taken down: workspace
// processes (they outlive the gateway on purpose), mounts, network
// namespaces, cgroups, accounts.

const (
	// hogCommand makes this test binary allocate memory until it is
	// killed (see runHog).
	hogCommand = "codehub-test-hog"
	// uidBase is the start of the tests' uid ranges: a test holds
	// uidBase+slot*100 .. +99 (see acquireUIDs), clear of the default
	// range (200000-209999) a gateway on this machine may use.
	uidBase = 210000
	// uidSlots is the number of such ranges.
	uidSlots = 98
)

// TestMain lets this test binary stand in for the codehub binary: under go
// test, the orchestrator of an in-process gateway starts agents from
// os.Executable(), which is this binary, with the arguments "agent ...".
// (Tests that need a gateway in a process of its own run the real binary:
// codehubBinary.)
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "agent", sandbox.InitCommand:
			main()
			os.Exit(0)
		case hogCommand:
			os.Exit(runHog(os.Stdin, os.Stdout))
		case probeCommand:
			os.Exit(runProbe(os.Args[2:]))
		}
	}
	code := m.Run()
	removeBuilt()
	os.Exit(code)
}

// hogSink keeps the hog's memory reachable.
var hogSink [][]byte

// runHog waits for a line on stdin (so that it can be put into a cgroup
// first), then allocates and touches memory in 16 MiB steps, reporting on
// stdout, up to 8 GiB; it returns 0 only if nothing stopped it.
func runHog(in io.Reader, out io.Writer) int {
	if _, err := bufio.NewReader(in).ReadString('\n'); err != nil {
		fmt.Fprintln(out, "no start line:", err)
		return 2
	}
	const step = 16 << 20
	for total := 0; total < 8<<30; total += step {
		b := make([]byte, step)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		hogSink = append(hogSink, b)
		fmt.Fprintf(out, "allocated %d MiB\n", (total+step)>>20)
	}
	return 0
}

// wsOptions chooses a test installation's settings.
type wsOptions struct {
	// Strategy is "process" (default) or "directory".
	Strategy string
	// MemoryMB, StorageMB and CPUPercent are the limits (defaults 2048,
	// 1024, 200).
	MemoryMB, StorageMB, CPUPercent int
	// WarmPool is the warm pool's size (0: the pool is disabled).
	WarmPool int
	// SampleInterval is the usage sampler's (default the configuration's
	// 1m).
	SampleInterval time.Duration
}

// wsEnv is one test's installation.
type wsEnv struct {
	t              *testing.T
	opts           wsOptions
	Root           string // mode 0711, under /var/lib
	Base           string // the users' base path
	DataDir        string
	DBPath         string
	File           string // the configuration file
	CodeServer     string
	UIDMin, UIDMax int

	regOnce sync.Once
	reg     *sqlstore.DB
}

// needProcessIsolation skips t (fails it under CODEHUB_E2E=require) where
// the process strategy cannot run.
func needProcessIsolation(t *testing.T) {
	t.Helper()
	testenv.SkipShort(t)
	if os.Geteuid() != 0 {
		testenv.Need(t, "root, for the process isolation strategy")
	}
	for _, tool := range []string{"useradd", "userdel", "setpriv", "mkfs.ext4", "mount", "umount", "ip", "nsenter", "getent"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Need(t, tool+" on PATH, for the process isolation strategy")
		}
	}
	if _, err := cgroup.Detect(); err != nil {
		testenv.Need(t, "cgroups: "+err.Error())
	}
}

// newWSEnv makes a test installation and arranges its teardown.
func newWSEnv(t *testing.T, o wsOptions) *wsEnv {
	t.Helper()
	if o.Strategy == "" {
		o.Strategy = "process"
	}
	if o.Strategy == "process" {
		needProcessIsolation(t)
	}
	cs := testenv.CodeServer(t)
	if o.MemoryMB == 0 {
		o.MemoryMB = 2048
	}
	if o.StorageMB == 0 {
		o.StorageMB = 1024
	}
	if o.CPUPercent == 0 {
		o.CPUPercent = 200
	}
	uidMin, uidMax := acquireUIDs(t)
	root, err := os.MkdirTemp("/var/lib", "codehub-test-")
	if err != nil {
		t.Fatal(err)
	}
	e := &wsEnv{
		t: t, opts: o, Root: root, Base: filepath.Join(root, "users"),
		DataDir: filepath.Join(root, "data"), CodeServer: cs, UIDMin: uidMin, UIDMax: uidMax,
	}
	e.DBPath = filepath.Join(e.DataDir, "codehub.db")
	e.cleanAccounts() // left by an earlier run that died
	t.Cleanup(e.teardown)
	if err := os.Chmod(root, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(e.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	e.File = filepath.Join(e.DataDir, "codehub.hcl")
	if err := os.WriteFile(e.File, []byte(e.config()), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// acquireUIDs gives t a uid range that no other test holds, in this
// process or another one running the same tests: it holds a lock (flock)
// on a file per range until t's other cleanups have run, or its process
// dies. Accounts left in the range by a run that died are then deleted.
func acquireUIDs(t *testing.T) (int, int) {
	t.Helper()
	dir := "/run/lock"
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		dir = os.TempDir()
	}
	for slot := range uidSlots {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("codehub-test-uids-%d.lock", slot)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		t.Cleanup(func() { f.Close() }) // registered first, so it runs last
		return uidBase + slot*100, uidBase + slot*100 + 99
	}
	t.Fatalf("all %d test uid ranges are in use", uidSlots)
	return 0, 0
}

// config is the installation's configuration file.
func (e *wsEnv) config() string {
	o := e.opts
	var b strings.Builder
	fmt.Fprintf(&b, "deployment_mode = \"multi\"\nbind_addr = \"127.0.0.1:0\"\nlog_level = \"debug\"\n")
	fmt.Fprintf(&b, "data_dir = %q\n", e.DataDir)
	fmt.Fprintf(&b, "code_server {\n  path = %q\n}\n", e.CodeServer)
	fmt.Fprintf(&b, "login_throttle {\n  per_address_burst = 1000\n  global_burst = 1000\n}\n")
	fmt.Fprintf(&b, "multi_user {\n  auth {\n    registration = \"admin\"\n")
	fmt.Fprintf(&b, "    database {\n      type = \"sqlite\"\n      path = %q\n    }\n", e.DBPath)
	fmt.Fprintf(&b, "    session {\n      store = \"database\"\n    }\n")
	fmt.Fprintf(&b, "    password {\n      memory_kib = 8192\n      iterations = 1\n    }\n  }\n")
	fmt.Fprintf(&b, "  isolation {\n    strategy = %q\n    base_path = %q\n    uid_min = %d\n    uid_max = %d\n    network = true\n    cleanup_grace = \"0s\"\n  }\n",
		o.Strategy, e.Base, e.UIDMin, e.UIDMax)
	fmt.Fprintf(&b, "  limits {\n    max_sessions_per_user = 100\n    memory_limit_mb = %d\n    storage_quota_mb = %d\n    cpu_limit_percent = %d\n    max_processes = 2048\n  }\n",
		o.MemoryMB, o.StorageMB, o.CPUPercent)
	if o.SampleInterval > 0 {
		fmt.Fprintf(&b, "  usage {\n    sample_interval = %q\n  }\n", o.SampleInterval.String())
	}
	fmt.Fprintf(&b, "  scaling {\n    start_concurrency = 4\n    container_pool {\n      enabled = %t\n      warm_pool_size = %d\n      max_idle_minutes = 0\n    }\n  }\n}\n",
		o.WarmPool > 0, o.WarmPool)
	return b.String()
}

// getenv is the environment of the installation's gateways and CLI runs.
func (e *wsEnv) getenv(k string) string {
	if k == "HOME" {
		return e.DataDir
	}
	return ""
}

// registry opens the installation's workspace registry (the gateway's
// SQLite database), once.
func (e *wsEnv) registry() workspace.Store {
	e.t.Helper()
	e.regOnce.Do(func() {
		db, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.DriverSQLite, Path: e.DBPath}, nil)
		if err != nil {
			e.t.Fatalf("open the registry: %v", err)
		}
		e.reg = db
	})
	if e.reg == nil {
		e.t.Fatal("the registry is not open")
	}
	return e.reg.Workspaces()
}

// workspaces lists the registry.
func (e *wsEnv) workspaces() []*workspace.Workspace {
	ws, err := e.registry().List(context.Background())
	if err != nil {
		e.t.Fatalf("list workspaces: %v", err)
	}
	return ws
}

// workspaceOf returns the user's workspace record.
func (e *wsEnv) workspaceOf(userID string) *workspace.Workspace {
	e.t.Helper()
	w, err := e.registry().ByUser(context.Background(), userID)
	if err != nil {
		e.t.Fatalf("workspace of %s: %v", userID, err)
	}
	return w
}

// runningWorkspace waits until the user's workspace runs and returns it.
func (e *wsEnv) runningWorkspace(userID string) *workspace.Workspace {
	e.t.Helper()
	var w *workspace.Workspace
	eventually(e.t, guard, "the workspace of "+userID+" to run", func() bool {
		var err error
		w, err = e.registry().ByUser(context.Background(), userID)
		return err == nil && w.State == workspace.StateRunning && w.Address != ""
	})
	return w
}

// createUser makes an account with `codehub user create` and returns its
// id.
func (e *wsEnv) createUser(name, pw string) string {
	e.t.Helper()
	var out, errOut bytes.Buffer
	argv := []string{"codehub", "user", "create", "--username", name, "--email", name + "@example.com", "--password-stdin", "--config", e.File}
	if err := run(context.Background(), argv, e.getenv, strings.NewReader(pw+"\n"), &out, &errOut); err != nil {
		e.t.Fatalf("codehub user create %s: %v\n%s", name, err, errOut.String())
	}
	out.Reset()
	argv = []string{"codehub", "user", "list", "--json", "--config", e.File}
	if err := run(context.Background(), argv, e.getenv, nil, &out, &errOut); err != nil {
		e.t.Fatalf("codehub user list: %v\n%s", err, errOut.String())
	}
	var us []listedUser
	if err := json.Unmarshal(out.Bytes(), &us); err != nil {
		e.t.Fatal(err)
	}
	for _, u := range us {
		if u.Username == name {
			return u.ID
		}
	}
	e.t.Fatalf("user %s not listed: %s", name, out.String())
	return ""
}

// startGateway runs a gateway on the installation in-process, as main
// does, and waits until it answers.
func (e *wsEnv) startGateway() *testGateway {
	e.t.Helper()
	t := e.t
	ctx, cancel := context.WithCancel(context.Background())
	g := &testGateway{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	argv := []string{"codehub", "--config", e.File}
	go func() { g.done <- run(ctx, argv, e.getenv, strings.NewReader(""), g.stdout, g.stderr) }()
	t.Cleanup(func() {
		if err := g.stop(); err != nil {
			t.Errorf("gateway stopped with %v", err)
		}
		if t.Failed() {
			t.Logf("gateway %s stdout:\n%s\nstderr:\n%s", g.URL, g.stdout.String(), tail(g.stderr.String(), 300))
		}
	})
	e.waitAnnounced(g, func() error {
		select {
		case err := <-g.done:
			g.cancel = nil
			return fmt.Errorf("codehub exited early: %v", err)
		default:
			return nil
		}
	})
	return g
}

// waitAnnounced waits for the gateway's announcement and its health.
func (e *wsEnv) waitAnnounced(g *testGateway, exited func() error) {
	e.t.Helper()
	deadline := time.Now().Add(guard)
	for {
		out := g.stdout.String()
		if m := urlRE.FindStringSubmatch(out); m != nil && (strings.Contains(out, "  Sign-in:") || strings.Contains(out, "  Admin:")) {
			g.URL = strings.TrimSuffix(m[1], "/")
			break
		}
		if err := exited(); err != nil {
			e.t.Fatalf("%v\n%s", err, tail(g.stderr.String(), 100))
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("codehub printed no announcement:\n%s", tail(g.stderr.String(), 100))
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.waitHealthy(func(health) bool { return true })
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// navigate sends a browser-like GET: a person opening a page, which starts
// a stopped workspace.
func navigate(t *testing.T, u, token string, hdr ...string) reply {
	t.Helper()
	h := append([]string{"Accept", "text/html,application/xhtml+xml", "Sec-Fetch-Mode", "navigate"}, hdr...)
	if token != "" {
		h = append(h, "Cookie", sessionCookie(token))
	}
	return do(t, http.MethodGet, u, nil, h...)
}

// openWorkbench opens the IDE with the session as a browser would, waiting
// through the start page, and returns the workbench's URL (code-server
// sends / to /?folder=...) and page.
func openWorkbench(t *testing.T, g *testGateway, token string) (string, string) {
	t.Helper()
	var last reply
	deadline := time.Now().Add(guard)
	for time.Now().Before(deadline) {
		last = navigate(t, g.URL+"/", token)
		if last.Status == http.StatusFound {
			loc, err := url.Parse(last.Header.Get("Location"))
			if err != nil || loc.Query().Get("folder") == "" {
				t.Fatalf("GET / redirects to %q, want code-server's ?folder=", last.Header.Get("Location"))
			}
			u := g.URL + "/?" + loc.RawQuery
			r := navigate(t, u, token)
			if r.Status == http.StatusOK && bytes.Contains(r.Body, []byte("workbench")) {
				return u, string(r.Body)
			}
			last = r
		}
		if last.Status != http.StatusServiceUnavailable && last.Status != http.StatusFound {
			t.Fatalf("GET / with a session: %d %.300q", last.Status, last.Body)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("the workbench did not load within %s: last answer %d %.300q", guard, last.Status, last.Body)
	return "", ""
}

// remoteResource reads a file through the workspace's code-server: VS
// Code's /vscode-remote-resource?path= route reads any file its process
// may read.
func remoteResource(t *testing.T, g *testGateway, token, path string, hdr ...string) reply {
	t.Helper()
	h := append([]string{"Cookie", sessionCookie(token)}, hdr...)
	return send(t, http.MethodGet, g.URL+"/vscode-remote-resource?path="+url.QueryEscape(path), nil, h...)
}

// send is do with a Host header that really sets the request's host.
func send(t *testing.T, method, u string, body io.Reader, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if http.CanonicalHeaderKey(hdr[i]) == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// agentHealth asks a workspace's agent directly, as the gateway does.
func agentHealth(t *testing.T, w *workspace.Workspace) (agentapi.Health, error) {
	t.Helper()
	var h agentapi.Health
	req, err := http.NewRequest(http.MethodGet, "http://"+w.Address+agentapi.PathHealth, nil)
	if err != nil {
		return h, err
	}
	req.Header.Set(agentapi.SecretHeader, w.Secret)
	req.Header.Set(agentapi.ControlHeader, w.Secret)
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return h, fmt.Errorf("agent health: %s", resp.Status)
	}
	return h, json.NewDecoder(resp.Body).Decode(&h)
}

// asWorkspace returns a command that runs argv as the workspace's account
// inside its sandbox (process strategy: the mount, PID, network, UTS, IPC
// and cgroup namespaces of its first process, w.PID), without
// capabilities and with no_new_privs, as the agent runs; or, for the
// directory strategy, as the gateway's own account. (The sandbox's
// seccomp filter is the one thing it does not apply: the tests that need
// it read the agent's own /proc/<pid>/status.) It does not move the
// command into the workspace's cgroup: see inCgroup.
func asWorkspace(w *workspace.Workspace, argv ...string) *exec.Cmd {
	var full []string
	if w.Meta["uid"] != "" {
		full = append(full, "nsenter", "--target", strconv.Itoa(w.PID),
			"--mount", "--pid", "--net", "--uts", "--ipc", "--cgroup", "--root", "--wd="+w.Home, "--",
			"setpriv", "--reuid", w.Meta["uid"], "--regid", w.Meta["gid"],
			"--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--")
	}
	full = append(full, argv...)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + w.Home, "LC_ALL=C"}
	return cmd
}

// agentOf returns the workspace's agent: its first process, or under the
// process strategy, the child of its sandbox's init.
func agentOf(w *workspace.Workspace) (procInfo, bool) {
	if p, ok := procOf(w.PID); ok && len(p.Cmdline) > 1 && p.Cmdline[1] == "agent" {
		return p, true
	}
	for _, p := range processes() {
		if p.PPID == w.PID && len(p.Cmdline) > 1 && p.Cmdline[1] == "agent" {
			return p, true
		}
	}
	return procInfo{}, false
}

// hostPID returns the host's pid of the process that w's sandbox knows as
// pid (what its agent reports), or pid itself without a sandbox.
func hostPID(w *workspace.Workspace, pid int) int {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", w.PID))
	if err != nil || w.Meta["uid"] == "" {
		return pid
	}
	for _, p := range processes() {
		if other, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p.PID)); err != nil || other != ns {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" && f[len(f)-1] == strconv.Itoa(pid) {
				return p.PID
			}
		}
	}
	return 0
}

// inCgroup makes cmd wait, before it enters the workspace, for a line on
// its stdin: start it, move cmd.Process.Pid into the workspace's cgroup,
// then write that line. Whatever it then starts is in the cgroup.
func inCgroup(cmd *exec.Cmd) *exec.Cmd {
	cmd.Args = append([]string{"/bin/sh", "-c", `IFS= read -r _ && exec "$@"`, "sh"}, cmd.Args...)
	cmd.Path = "/bin/sh"
	return cmd
}

// writeOwned writes a file into a workspace's home as root, then gives it
// to the workspace's account.
func writeOwned(t *testing.T, w *workspace.Workspace, rel string, data []byte) string {
	t.Helper()
	p := filepath.Join(w.Home, rel)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(w.Meta["uid"])
	gid, _ := strconv.Atoi(w.Meta["gid"])
	if err := os.Chown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
	return p
}

// procInfo is what /proc says of a process.
type procInfo struct {
	PID, PPID, SID, UID int
	Comm                string
	Cmdline             []string
}

// processes lists the machine's processes.
func processes() []procInfo {
	ents, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		p, ok := procOf(pid)
		if ok {
			out = append(out, p)
		}
	}
	return out
}

func procOf(pid int) (procInfo, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procInfo{}, false
	}
	s := string(stat)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return procInfo{}, false
	}
	f := strings.Fields(s[closing+1:])
	if len(f) < 4 || f[0] == "Z" {
		return procInfo{}, false
	}
	p := procInfo{PID: pid, Comm: s[open+1 : closing]}
	p.PPID, _ = strconv.Atoi(f[1])
	p.SID, _ = strconv.Atoi(f[3])
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			if fs := strings.Fields(rest); len(fs) > 0 {
				p.UID, _ = strconv.Atoi(fs[0])
			}
		}
	}
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	p.Cmdline = strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
	return p, true
}

// agentsOf lists the workspaces running as uid by their first process:
// the sandbox's init (process strategy), or the `agent` itself.
func agentsOf(uid int) []procInfo {
	var out []procInfo
	all := processes()
	isInit := map[int]bool{}
	for _, p := range all {
		if len(p.Cmdline) > 1 && p.Cmdline[1] == sandbox.InitCommand {
			isInit[p.PID] = true
		}
	}
	for _, p := range all {
		if p.UID != uid || len(p.Cmdline) < 2 {
			continue
		}
		if isInit[p.PID] || p.Cmdline[1] == "agent" && !isInit[p.PPID] {
			out = append(out, p)
		}
	}
	return out
}

// rssKiB returns a process's resident memory.
func rssKiB(pid int) int {
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if fs := strings.Fields(rest); len(fs) > 0 {
				n, _ := strconv.Atoi(fs[0])
				return n
			}
		}
	}
	return 0
}

// teardown takes down everything the installation's workspaces hold. The
// gateways were stopped before (their cleanups were registered later).
func (e *wsEnv) teardown() {
	t := e.t
	ctx := context.Background()
	ids := map[string]bool{}
	var agentPIDs []int
	db := e.reg
	if db == nil && e.DBPath != "" {
		if _, err := os.Stat(e.DBPath); err == nil {
			db, _ = sqlstore.Open(ctx, sqlstore.Config{Driver: sqlstore.DriverSQLite, Path: e.DBPath}, nil)
		}
	}
	if db != nil {
		ws, err := db.Workspaces().List(ctx)
		if err != nil {
			t.Errorf("teardown: list workspaces: %v", err)
		}
		for _, w := range ws {
			ids[w.ID] = true
			if w.PID > 0 {
				agentPIDs = append(agentPIDs, w.PID)
			}
		}
		db.Close()
	}
	if ents, err := os.ReadDir(e.Base); err == nil {
		for _, ent := range ents {
			if strings.HasPrefix(ent.Name(), "ws-") && ent.IsDir() {
				ids[ent.Name()] = true
			}
		}
	}

	// Processes: the workspaces' cgroups, the agents' sessions (directory
	// strategy), and anything left running as the test's uids.
	for id := range ids {
		if g, err := cgroup.Open("codehub/" + id); err == nil {
			_ = g.Kill()
		}
	}
	e.killWhere(func(p procInfo) bool {
		return (p.UID >= e.UIDMin && p.UID <= e.UIDMax) || slices.Contains(agentPIDs, p.SID)
	})
	for id := range ids {
		if g, err := cgroup.Open("codehub/" + id); err == nil {
			if err := g.Remove(); err != nil {
				t.Errorf("teardown: remove cgroup of %s: %v", id, err)
			}
		}
		short := strings.TrimPrefix(id, "ws-")
		if n, err := netns.Open(ctx, "codehub-"+short); err == nil {
			if err := n.Delete(ctx); err != nil {
				t.Errorf("teardown: %v", err)
			}
		} else if _, serr := os.Stat(filepath.Join(netns.RunDir, "codehub-"+short)); serr == nil {
			_ = exec.Command("ip", "netns", "del", "codehub-"+short).Run()
		}
		_ = os.RemoveAll(filepath.Join("/run/codehub", id))
	}

	// Mounts under the root (homes, the runtime's bind mounts), deepest
	// first.
	mounted := e.mounts()
	for _, m := range mounted {
		if out, err := exec.Command("umount", m).CombinedOutput(); err != nil {
			time.Sleep(500 * time.Millisecond)
			if out2, err := exec.Command("umount", m).CombinedOutput(); err != nil {
				t.Errorf("teardown: umount %s: %s / %s", m, out, out2)
				_ = exec.Command("umount", "-l", m).Run()
			}
		}
	}
	e.cleanAccounts()
	// What the workspaces' accounts left in the shared temporary
	// directories: the agents' runtime directories, code-server's sockets.
	for _, dir := range []string{"/tmp", "/var/tmp", "/dev/shm"} {
		ents, _ := os.ReadDir(dir)
		for _, ent := range ents {
			p := filepath.Join(dir, ent.Name())
			var st syscall.Stat_t
			if syscall.Lstat(p, &st) == nil && int(st.Uid) >= e.UIDMin && int(st.Uid) <= e.UIDMax {
				_ = os.RemoveAll(p)
			}
		}
	}
	if rest := e.mounts(); len(rest) > 0 {
		t.Errorf("teardown: still mounted, %s left in place: %v", e.Root, rest)
		return
	}
	if err := os.RemoveAll(e.Root); err != nil {
		t.Errorf("teardown: %v", err)
	}
}

// killWhere SIGKILLs the processes match selects, until none is left.
func (e *wsEnv) killWhere(match func(procInfo) bool) {
	self := os.Getpid()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var left []procInfo
		for _, p := range processes() {
			if p.PID != self && match(p) {
				left = append(left, p)
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Errorf("teardown: processes survive SIGKILL: %+v", left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mounts lists the mount points under the root, deepest first.
func (e *wsEnv) mounts() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := strings.ReplaceAll(f[4], `\040`, " ")
		if strings.HasPrefix(mp, e.Root+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return slices.Compact(out)
}

// cleanAccounts deletes the workspace accounts in the test's uid range.
func (e *wsEnv) cleanAccounts() {
	out, err := exec.Command("getent", "passwd").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 3 || !strings.HasPrefix(f[0], "codehub-") {
			continue
		}
		uid, err := strconv.Atoi(f[2])
		if err != nil || uid < e.UIDMin || uid > e.UIDMax {
			continue
		}
		e.killWhere(func(p procInfo) bool { return p.UID == uid })
		if err := osuser.Delete(context.Background(), f[0]); err != nil {
			e.t.Errorf("teardown: %v", err)
		}
	}
}

// errAs reports whether err is or wraps a *T.
func errAs[T error](err error) (T, bool) {
	var target T
	ok := errors.As(err, &target)
	return target, ok
}
