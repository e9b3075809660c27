package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/codehub-dev/codehub/internal/cgroup"
	"github.com/codehub-dev/codehub/internal/netns"
	"github.com/codehub-dev/codehub/internal/osuser"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// probeCommand makes this test binary, run inside a workspace, report
// what it can see and reach of the host and of other users (probeFindings,
// as JSON on stdout).
const probeCommand = "codehub-test-probe"

// probeFindings is what a probe saw from inside a workspace.
type probeFindings struct {
	UID        int
	Processes  map[int]string // pid: uid and command line, as /proc shows them
	Reached    map[string]string
	VarLib     []string
	Run        []string
	RunCodehub []string
	Passwd     string
	EtcEntries []string
}

// runProbe is the probe. Its arguments are UNIX sockets (and TCP
// addresses, "tcp:host:port") to try to connect to.
func runProbe(targets []string) int {
	f := probeFindings{UID: os.Getuid(), Processes: map[int]string{}, Reached: map[string]string{}}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		var uid string
		if fi, err := os.Stat("/proc/" + e.Name()); err == nil {
			uid = strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid))
		}
		f.Processes[pid] = uid + " " + strings.ReplaceAll(string(cmd), "\x00", " ")
	}
	for _, t := range targets {
		network, addr := "unix", t
		if a, ok := strings.CutPrefix(t, "tcp:"); ok {
			network, addr = "tcp", a
		}
		c, err := net.Dial(network, addr)
		if err == nil {
			c.Close()
			f.Reached[t] = "connected"
		} else {
			f.Reached[t] = err.Error()
		}
	}
	for dir, out := range map[string]*[]string{"/var/lib": &f.VarLib, "/run": &f.Run, "/run/codehub": &f.RunCodehub, "/etc": &f.EtcEntries} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			*out = append(*out, e.Name())
		}
	}
	b, _ := os.ReadFile("/etc/passwd")
	f.Passwd = string(b)
	if err := json.NewEncoder(os.Stdout).Encode(f); err != nil {
		return 1
	}
	return 0
}

// TestIsolationHostFromInside: from inside alice's workspace, as her
// account, nothing of the host or of bob is visible or reachable: no UNIX
// socket of the host (PostgreSQL's real one included), no other user's
// processes or command lines, nothing of the host's /var/lib or /run, no
// host TCP service; and every process of the workspace, her terminals'
// included, runs without capabilities, with no_new_privs, under the
// seccomp filter.
func TestIsolationHostFromInside(t *testing.T) {
	t.Parallel()
	tu := startTwoUsers(t, wsOptions{})
	wa, wb := tu.wa, tu.wb

	// The host: a UNIX socket anyone may connect to in /run, a process of
	// another account with a password on its command line.
	sock := fmt.Sprintf("/run/codehub-isolation-test-%d.sock", os.Getpid())
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	secret := fmt.Sprintf("--password=host-secret-%d", os.Getpid())
	victim := exec.Command("sleep", "3600", secret)
	victim.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = victim.Process.Kill(); _ = victim.Wait() })

	targets := []string{sock}
	// PostgreSQL's own socket, which trusts local connections on these
	// machines: reachable from a workspace, it made its user an admin.
	for _, pg := range []string{"/var/run/postgresql/.s.PGSQL.5432", "/run/mysqld/mysqld.sock", "/var/run/docker.sock", "/run/podman/podman.sock"} {
		if _, err := os.Stat(pg); err == nil {
			targets = append(targets, pg)
		}
	}
	targets = append(targets, "tcp:127.0.0.1:5432", "tcp:"+strings.TrimPrefix(tu.g.URL, "http://"))
	// Sound only if the host reaches them.
	for _, tg := range targets {
		network, addr := "unix", tg
		if a, ok := strings.CutPrefix(tg, "tcp:"); ok {
			network, addr = "tcp", a
		}
		if c, err := net.Dial(network, addr); err != nil {
			t.Fatalf("%s does not answer on the host: %v", tg, err)
		} else {
			c.Close()
		}
	}

	agent, ok := agentOf(wa)
	if !ok {
		t.Fatal("alice's agent is gone")
	}
	cmd := asWorkspace(wa, append([]string{agent.Cmdline[0], probeCommand}, targets...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("probe: %v: %s", err, errOut.String())
	}
	var f probeFindings
	if err := json.Unmarshal(out.Bytes(), &f); err != nil {
		t.Fatalf("probe said %q: %v", out.String(), err)
	}
	t.Logf("alice's workspace sees processes %v, /var/lib %v, /run %v", f.Processes, f.VarLib, f.Run)

	aliceUID := wa.Meta["uid"]
	if strconv.Itoa(f.UID) != aliceUID {
		t.Fatalf("the probe ran as uid %d, want alice's %s", f.UID, aliceUID)
	}
	for tg, got := range f.Reached {
		if got == "connected" {
			t.Errorf("alice's workspace connects to the host's %s", tg)
		}
	}
	for pid, p := range f.Processes {
		uid, cmdline, _ := strings.Cut(p, " ")
		if uid != aliceUID {
			t.Errorf("alice's workspace sees process %d of uid %s: %s", pid, uid, cmdline)
		}
		if strings.Contains(cmdline, secret) || strings.Contains(cmdline, wb.ID) {
			t.Errorf("alice's workspace reads another's command line: %d %s", pid, cmdline)
		}
	}
	if len(f.Processes) == 0 {
		t.Error("the probe saw no process at all, not even itself")
	}
	for _, e := range f.VarLib {
		switch e {
		case "postgresql", "dpkg", "apt", "redis":
			t.Errorf("alice's workspace sees the host's /var/lib/%s", e)
		}
	}
	for _, e := range f.Run {
		if e != "user" && e != "codehub" {
			t.Errorf("alice's workspace sees /run/%s", e)
		}
	}
	// Her own secret's directory, nothing else of the gateway's.
	if len(f.RunCodehub) != 1 || f.RunCodehub[0] != wa.ID {
		t.Errorf("alice's workspace sees /run/codehub/%v, want only her own %s", f.RunCodehub, wa.ID)
	}
	for _, e := range f.EtcEntries {
		if e == "shadow" || e == "gshadow" {
			t.Errorf("alice's workspace sees /etc/%s", e)
		}
	}
	if bobUser := wb.Meta["user"]; bobUser == "" || strings.Contains(f.Passwd, bobUser+":") {
		t.Errorf("alice's /etc/passwd names bob's account %q", bobUser)
	}

	// The agent, code-server and everything below them, as the kernel
	// sees them.
	for _, w := range []*workspace.Workspace{wa, wb} {
		h, err := agentHealth(t, w)
		if err != nil {
			t.Fatal(err)
		}
		ag, _ := agentOf(w)
		for what, pid := range map[string]int{"agent": ag.PID, "code-server": hostPID(w, h.IDE.PID)} {
			st := procStatus(t, pid)
			for k, want := range map[string]string{"CapEff": "0000000000000000", "CapBnd": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"} {
				if st[k] != want {
					t.Errorf("%s of %s (pid %d): %s = %q, want %q", what, w.ID, pid, k, st[k], want)
				}
			}
		}
	}
}

// procStatus reads /proc/<pid>/status into a map.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatalf("status of %d: %v", pid, err)
	}
	st := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		st[k] = strings.TrimSpace(v)
	}
	return st
}

// hostLeftovers lists what the host holds of workspace id, of the
// installation e.
func (e *wsEnv) hostLeftovers(id string) []string {
	short := strings.TrimPrefix(id, "ws-")
	var left []string
	if _, err := cgroup.Open("codehub/" + id); err == nil {
		left = append(left, "cgroup")
	}
	if _, err := os.Stat(filepath.Join(netns.RunDir, "codehub-"+short)); err == nil {
		left = append(left, "network namespace")
	}
	if out, err := exec.Command("iptables-save").CombinedOutput(); err == nil && strings.Contains(string(out), "codehub-netns:codehub-"+short) {
		left = append(left, "firewall rules")
	}
	if _, err := osuser.Lookup("codehub-" + short); err == nil {
		left = append(left, "account")
	}
	for what, p := range map[string]string{
		"image": filepath.Join(e.Base, ".images", id+".img"), "home": filepath.Join(e.Base, id),
		"secret": filepath.Join("/run/codehub", id), "sandbox spec": filepath.Join("/run/codehub/.sandbox", id+".json"),
	} {
		if _, err := os.Stat(p); err == nil {
			left = append(left, what)
		}
	}
	for _, m := range e.mounts() {
		if strings.Contains(m, id) {
			left = append(left, "mount "+m)
		}
	}
	return left
}

// TestGatewayKill9MidStart: a gateway killed (SIGKILL) in the middle of
// starting a warm workspace, after it made the account and storage and
// before it recorded anything else, leaves debris; the next gateway
// frees all of it: no namespace, firewall rule, cgroup, account, image,
// home or mount of that workspace is left, and the pool has a working
// warm workspace again.
func TestGatewayKill9MidStart(t *testing.T) {
	t.Parallel()
	bin := codehubBinary(t)
	var (
		e  *wsEnv
		id string
	)
	for attempt := 1; ; attempt++ {
		e = newWSEnv(t, wsOptions{WarmPool: 1})
		p1 := e.startProcGateway(bin)
		// The warm workspace's storage is made early in its start; kill
		// the gateway the moment it appears.
		images := filepath.Join(e.Base, ".images")
		eventually(t, guard, "the warm workspace's storage to appear", func() bool {
			ents, _ := os.ReadDir(images)
			for _, ent := range ents {
				if name, ok := strings.CutSuffix(ent.Name(), ".img"); ok {
					id = name
					return true
				}
			}
			return false
		})
		p1.kill()
		var w *workspace.Workspace
		for _, x := range e.workspaces() {
			if x.ID == id {
				w = x
			}
		}
		if w != nil && w.PID == 0 && w.State != workspace.StateRunning {
			t.Logf("gateway killed mid-start of %s (attempt %d): the host holds %v", id, attempt, e.hostLeftovers(id))
			break
		}
		if attempt == 3 {
			t.Fatalf("three times the warm workspace had started before the gateway could be killed (last: %+v)", w)
		}
		t.Logf("attempt %d: the start of %s got further than its storage before the kill; again", attempt, id)
	}
	if left := e.hostLeftovers(id); !slices.Contains(left, "account") || !slices.Contains(left, "image") {
		t.Fatalf("the test's premise: the killed start left %v, want at least its account and image", left)
	}

	p2 := e.startProcGateway(bin)
	eventually(t, 2*guard, "the next gateway to free what the killed start left", func() bool {
		return len(e.hostLeftovers(id)) == 0
	})
	for _, w := range e.workspaces() {
		if w.ID == id {
			t.Errorf("the registry still has the workspace whose start was cut short: %+v", w)
		}
	}
	eventually(t, 2*guard, "a new warm workspace to run", func() bool {
		for _, w := range e.workspaces() {
			if w.UserID == "" && w.State == workspace.StateRunning {
				return true
			}
		}
		return false
	})
	if !strings.Contains(p2.stderr.String(), "deleted the account of a workspace that no longer exists") {
		t.Errorf("the next gateway did not log the account it deleted:\n%s", tail(p2.stderr.String(), 60))
	}
}
