package local_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/cgroup"
	"github.com/codehub-dev/codehub/internal/netns"
	"github.com/codehub-dev/codehub/internal/orchestrator/local"
	"github.com/codehub-dev/codehub/internal/osuser"
	"github.com/codehub-dev/codehub/internal/sandbox"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// TestMain lets this test binary stand in for the codehub agent: the
// orchestrator runs it as "<agent> agent --listen ADDR ...".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		fakeAgent(os.Args[2:])
		return
	}
	if len(os.Args) > 3 && os.Args[1] == sandbox.InitCommand { // as `codehub sandbox-init`
		sandbox.Init(os.Args[3], os.Stdin, os.Stderr)
	}
	os.Exit(m.Run())
}

// fakeAgent does what the orchestrator expects of an agent (waits for
// its go, listens, says where, stops when asked) and, on /dial?addr=,
// reports whether it can connect to addr from inside the workspace.
func fakeAgent(args []string) {
	listen := ""
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--listen" {
			listen = args[i+1]
		}
	}
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	ln, err := net.Listen("tcp4", listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
		c, err := net.DialTimeout("tcp4", r.URL.Query().Get("addr"), 10*time.Second)
		if err != nil {
			fmt.Fprintf(w, "err %v", err)
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Fprintf(w, "ok %s", strings.TrimSpace(line))
	})
	// /spawn starts a process in a session of its own, as code-server's
	// are: it outlives the agent when the agent is killed.
	mux.HandleFunc("/spawn", func(w http.ResponseWriter, r *http.Request) {
		cmd := exec.Command("sleep", "300")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, cmd.Process.Pid)
	})
	mux.HandleFunc(agentapi.PathStop, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		go func() { time.Sleep(50 * time.Millisecond); os.Exit(0) }()
	})
	fmt.Println(agentapi.ReadyPrefix + ln.Addr().String())
	_ = http.Serve(ln, mux)
}

// needProcessStrategy skips t (fails it under CODEHUB_E2E=require) where
// the process strategy with network namespaces cannot run.
func needProcessStrategy(t *testing.T) {
	t.Helper()
	testenv.SkipShort(t)
	if os.Geteuid() != 0 {
		testenv.Need(t, "root, for the process isolation strategy")
	}
	for _, tool := range []string{"useradd", "userdel", "setpriv", "mkfs.ext4", "mount", "umount", "ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Need(t, tool+" on PATH, for the process isolation strategy")
		}
	}
	if _, err := cgroup.Detect(); err != nil {
		testenv.Need(t, "cgroups: "+err.Error())
	}
	if err := netns.CheckFirewall(context.Background()); err != nil {
		testenv.Need(t, "a working iptables: "+err.Error())
	}
}

// testUIDs is this package's uid range for workspace accounts, clear of
// the default range and of cmd/codehub's tests; a lock file keeps two
// runs of this package from sharing it.
const testUIDMin, testUIDMax = 220000, 220099

func lockUIDs(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "codehub-test-uids-local.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // registered first, so it runs last
}

// keepForwarding restores the host's ip_forward, which egress turns on,
// when t ends. It holds a lock meanwhile, which internal/netns's tests
// take too, so that none of them restores what another one set.
func keepForwarding(t *testing.T) {
	t.Helper()
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "codehub-test-ip-forward.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() }) // registered first, so it runs last
	forward, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", forward, 0); err != nil {
			t.Errorf("cleanup: restore ip_forward: %v", err)
		}
	})
}

// installation is a process-strategy installation under a root of its
// own, with this test binary as its agent.
type installation struct {
	root, base, runtime, agent, codeServer string
}

func newInstallation(t *testing.T) *installation {
	t.Helper()
	root, err := os.MkdirTemp("/var/lib", "codehub-local-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(root); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	in := &installation{
		root: root, base: filepath.Join(root, "users"), runtime: filepath.Join(root, "run"),
		agent: filepath.Join(root, "bin", "codehub"), codeServer: filepath.Join(root, "bin", "code-server"),
	}
	if err := os.Chmod(root, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	out, err := os.OpenFile(in.agent, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, self); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in.codeServer, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return in
}

func (in *installation) orchestrator(t *testing.T, egress bool) *local.Orchestrator {
	t.Helper()
	o, err := local.New(local.Config{
		Strategy: local.StrategyProcess, BasePath: in.base, RuntimeDir: in.runtime,
		Agent: in.agent, CodeServer: in.codeServer, UIDMin: testUIDMin, UIDMax: testUIDMax,
		Network: true, Egress: egress,
	}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// start starts w and arranges its stop; it fills in what Start returned.
func start(t *testing.T, ctx context.Context, o *local.Orchestrator, w *workspace.Workspace) {
	t.Helper()
	t.Cleanup(func() {
		if w.PID != 0 {
			stop(t, context.Background(), o, w)
		}
	})
	l, err := o.Start(ctx, workspace.Spec{Workspace: w, Policy: workspace.Policy{
		Name: "test", Driver: local.StrategyProcess, MemoryMB: 256, CPUPercent: 100, Pids: 256, StorageMB: 16,
	}}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	w.Address, w.PID, w.Meta = l.Address, l.PID, l.Meta
}

// stop stops w and forgets what Start returned.
func stop(t *testing.T, ctx context.Context, o *local.Orchestrator, w *workspace.Workspace) {
	t.Helper()
	if err := o.Stop(ctx, w); err != nil {
		t.Errorf("stop: %v", err)
	}
	w.Address, w.PID, w.Meta = "", 0, nil
}

// has reports whether a rule contains every one of parts.
func has(rules []string, parts ...string) bool {
	for _, r := range rules {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(r+" ", p)
		}
		if all {
			return true
		}
	}
	return false
}

// dialFromWorkspace asks w's agent, from inside the workspace, to connect
// to addr: this is also the gateway connecting to the agent.
func dialFromWorkspace(t *testing.T, w *workspace.Workspace, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + w.Address + "/dial?addr=" + url.QueryEscape(addr))
	if err != nil {
		t.Fatalf("the host cannot reach the agent: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// tagged returns the iptables rules of the namespace name.
func tagged(t *testing.T, name string) []string {
	t.Helper()
	var rules []string
	for _, table := range []string{"nat", "filter"} {
		out, err := exec.Command("iptables", "-w", "-t", table, "-S").CombinedOutput()
		if err != nil {
			t.Fatalf("iptables -S: %v: %s", err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "codehub-netns:"+name+" ") || strings.Contains(line, "codehub-netns:"+name+`"`) {
				rules = append(rules, line)
			}
		}
	}
	return rules
}

func defaultRoute(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", name, "-4", "route", "show", "default").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route in %s: %v: %s", name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestEgress starts one workspace with egress, then without: with it, its
// namespace has a default route through its link and is NATed through
// the uplink of the host's default route; without it, neither. Either
// way the workspace cannot connect to a service on the host, the host
// (the gateway) reaches its agent, and Stop leaves no rule behind.
func TestEgress(t *testing.T) {
	needProcessStrategy(t)
	lockUIDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // guards a hang only
	t.Cleanup(cancel)
	keepForwarding(t)
	in := newInstallation(t)
	id := "ws-lt" + randomHex(t, 5)
	t.Cleanup(func() {
		if err := osuser.Delete(context.Background(), "codehub-"+strings.TrimPrefix(id, "ws-")); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	w := &workspace.Workspace{ID: id, Home: filepath.Join(in.base, id), Secret: randomHex(t, 16)}

	// A host service on every address.
	token := "host-service-" + randomHex(t, 8)
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, token)
			c.Close()
		}
	}()
	_, svc, _ := net.SplitHostPort(ln.Addr().String())
	refused := func(t *testing.T, addr string) {
		t.Helper()
		got := dialFromWorkspace(t, w, addr)
		if strings.Contains(got, token) {
			t.Errorf("the workspace reached the host service at %s: %q", addr, got)
		}
		t.Logf("from the workspace, %s: %s", addr, got)
	}

	uplink, err := netns.DefaultUplink(ctx)
	if errors.Is(err, netns.ErrNoRoute) {
		uplink = "" // the workspace must then start without egress
	} else if err != nil {
		t.Fatal(err)
	}

	t.Run("egress", func(t *testing.T) {
		o := in.orchestrator(t, true)
		start(t, ctx, o, w)
		name := w.Meta["netns"]
		if name == "" {
			t.Fatalf("no network namespace: %v", w.Meta)
		}
		ns, err := netns.Open(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		rules := tagged(t, name)
		if uplink == "" {
			t.Logf("this host has no default route: checking the workspace started without egress")
			if route := defaultRoute(t, name); route != "" || w.Meta["egress"] != "" || len(rules) != 2 {
				t.Errorf("no default route on the host, yet route %q, egress %q, rules:\n%s", route, w.Meta["egress"], strings.Join(rules, "\n"))
			}
		} else {
			if w.Meta["egress"] != uplink {
				t.Errorf("meta egress = %q, want %q", w.Meta["egress"], uplink)
			}
			if route := defaultRoute(t, name); !strings.HasPrefix(route, "default via "+ns.HostAddr()+" ") {
				t.Errorf("default route %q, want one via %s", route, ns.HostAddr())
			}
			host := ns.HostInterface()
			for _, want := range [][]string{
				{"-A POSTROUTING ", "-o " + uplink + " ", "-j MASQUERADE"},
				{"-A INPUT -i " + host + " ", "ESTABLISHED", "-j ACCEPT"},
				{"-A INPUT -i " + host + " ", "-j REJECT"},
				{"-A FORWARD ", "-i " + host + " -o " + uplink + " ", "-j ACCEPT"},
			} {
				if !has(rules, want...) {
					t.Errorf("no rule with %q among:\n%s", want, strings.Join(rules, "\n"))
				}
			}
			if len(rules) != 8 {
				t.Errorf("%d rules, want 8:\n%s", len(rules), strings.Join(rules, "\n"))
			}
		}
		refused(t, net.JoinHostPort(ns.HostAddr(), svc))
		if uplink != "" {
			if ifc, err := net.InterfaceByName(uplink); err == nil {
				if addrs, _ := ifc.Addrs(); len(addrs) > 0 {
					refused(t, net.JoinHostPort(strings.Split(addrs[0].String(), "/")[0], svc))
				}
			}
		}
		stop(t, ctx, o, w)
		if rules := tagged(t, name); len(rules) != 0 {
			t.Errorf("rules left after Stop:\n%s", strings.Join(rules, "\n"))
		}
		if _, err := os.Stat(filepath.Join(netns.RunDir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s left after Stop (%v)", name, err)
		}
	})

	t.Run("no egress", func(t *testing.T) {
		o := in.orchestrator(t, false)
		start(t, ctx, o, w)
		name := w.Meta["netns"]
		ns, err := netns.Open(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if route := defaultRoute(t, name); route != "" {
			t.Errorf("default route %q without egress", route)
		}
		if w.Meta["egress"] != "" {
			t.Errorf("meta egress = %q without egress", w.Meta["egress"])
		}
		rules := tagged(t, name)
		for _, r := range rules {
			if !strings.HasPrefix(r, "-A INPUT -i "+ns.HostInterface()+" ") {
				t.Errorf("rule other than the host's guard without egress: %s", r)
			}
		}
		if len(rules) != 2 {
			t.Errorf("%d rules, want the 2 of the guard:\n%s", len(rules), strings.Join(rules, "\n"))
		}
		refused(t, net.JoinHostPort(ns.HostAddr(), svc))
		stop(t, ctx, o, w)
		if rules := tagged(t, name); len(rules) != 0 {
			t.Errorf("rules left after Stop:\n%s", strings.Join(rules, "\n"))
		}
	})
}
