package netns_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/netns"
	"github.com/codehub-dev/codehub/internal/testenv"
)

// The test binary doubles as the programs run inside namespaces: with
// helperEnv set it serves or dials instead of running tests.
const (
	helperEnv = "CODEHUB_NETNS_HELPER" // "serve" or "dial"
	addrsEnv  = "CODEHUB_NETNS_ADDRS"  // comma-separated host:port
	tokenEnv  = "CODEHUB_NETNS_TOKEN"  // what a server says first
	// guard bounds waits; it only turns a hang into a failure.
	guard = 30 * time.Second
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "serve":
		serveHelper()
	case "dial":
		fmt.Println(dial(os.Getenv(addrsEnv)))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveHelper listens on each address of addrsEnv, prints the bound
// addresses, then answers each connection with "<token> <peer>" until its
// stdin closes.
func serveHelper() {
	var bound []string
	for _, a := range strings.Split(os.Getenv(addrsEnv), ",") {
		ln, err := net.Listen("tcp4", a)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		bound = append(bound, ln.Addr().String())
		go serve(ln, os.Getenv(tokenEnv))
	}
	fmt.Println(strings.Join(bound, ","))
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

func serve(ln net.Listener, token string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%s %s\n", token, c.RemoteAddr())
		c.Close()
	}
}

// dial connects to addr and returns "ok <first line>" or "err <error>".
func dial(addr string) string {
	c, err := net.DialTimeout("tcp4", addr, guard)
	if err != nil {
		return "err " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(guard))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "err " + err.Error()
	}
	return "ok " + strings.TrimSpace(line)
}

func TestAddresses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		index            int
		host, ns, ifname string
	}{
		{0, "10.200.0.1", "10.200.0.2", "chv0"},
		{1, "10.200.0.5", "10.200.0.6", "chv1"},
		{64, "10.200.1.1", "10.200.1.2", "chv64"},
		{netns.MaxIndex, "10.200.255.253", "10.200.255.254", "chv16383"},
	} {
		n := netns.ForTest(tc.index)
		if n.HostAddr() != tc.host || n.Addr() != tc.ns || n.HostInterface() != tc.ifname {
			t.Errorf("index %d: host %s, ns %s, if %s; want %s, %s, %s", tc.index, n.HostAddr(), n.Addr(), n.HostInterface(), tc.host, tc.ns, tc.ifname)
		}
		if len(n.HostInterface()) > 15 {
			t.Errorf("interface name %q longer than 15", n.HostInterface())
		}
		idx, ok := netns.IndexOf(netip.MustParsePrefix(tc.ns + "/30"))
		if !ok || idx != tc.index {
			t.Errorf("IndexOf(%s) = %d, %v; want %d", tc.ns, idx, ok, tc.index)
		}
	}
	for _, p := range []string{"10.200.0.1/30", "10.200.0.2/24", "10.201.0.2/30", "192.168.0.2/30"} {
		if _, ok := netns.IndexOf(netip.MustParsePrefix(p)); ok {
			t.Errorf("IndexOf(%s) accepted it", p)
		}
	}
}

func TestCreateRejectsBadConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, cfg := range []netns.Config{
		{Name: "", Index: 1},
		{Name: "a/b", Index: 1},
		{Name: "..", Index: 1},
		{Name: "ok", Index: -1},
		{Name: "ok", Index: netns.MaxIndex + 1},
		{Name: strings.Repeat("a", 65), Index: 1},
	} {
		if _, err := netns.Create(ctx, cfg); !errors.Is(err, netns.ErrInvalid) {
			t.Errorf("Create(%+v) = %v, want ErrInvalid", cfg, err)
		}
	}
}

// needNetns skips or fails t unless it can make network namespaces.
func needNetns(t *testing.T) {
	t.Helper()
	testenv.SkipShort(t)
	if os.Geteuid() != 0 {
		testenv.Need(t, "root (creates network namespaces)")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Need(t, tool+" (apt-get install iproute2 iptables)")
		}
	}
	if err := netns.CheckFirewall(context.Background()); err != nil {
		testenv.Need(t, "a working iptables: "+err.Error())
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // guards a hang only
	t.Cleanup(cancel)
	return ctx
}

// freeConfig returns a name and an index no live namespace uses.
func freeConfig(t *testing.T) netns.Config {
	t.Helper()
	for range 100 {
		cfg := netns.Config{Name: fmt.Sprintf("chtest-%d", rand.IntN(1_000_000)), Index: 8192 + rand.IntN(netns.MaxIndex-8192)}
		_, errIf := net.InterfaceByName(netns.ForTest(cfg.Index).HostInterface())
		_, errNS := os.Stat(netns.RunDir + "/" + cfg.Name)
		if errIf != nil && errNS != nil {
			return cfg
		}
	}
	t.Fatal("no free namespace config")
	return netns.Config{}
}

// create makes a namespace that is deleted when t ends.
func create(t *testing.T, ctx context.Context) *netns.NS {
	t.Helper()
	n, err := netns.Create(ctx, freeConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Delete(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return n
}

// inside is where a helper runs: a namespace.
type inside interface {
	Name() string
	ExecArgs() []string
}

// helperCmd returns the test binary run as a helper inside n.
func helperCmd(ctx context.Context, n inside, mode, token string, addrs ...string) *exec.Cmd {
	args := append(n.ExecArgs(), os.Args[0])
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, addrsEnv+"="+strings.Join(addrs, ","), tokenEnv+"="+token,
		"GORACE=atexit_sleep_ms=0") // under -race, a helper would idle 1s on exit
	return cmd
}

// startServer serves token on addrs inside n until t ends, and returns the
// bound addresses.
func startServer(t *testing.T, n inside, token string, addrs ...string) []string {
	t.Helper()
	cmd := helperCmd(context.Background(), n, "serve", token, addrs...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(guard):
			cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- strings.TrimSpace(line)
		done <- cmd.Wait()
	}()
	select {
	case line := <-lines:
		if line == "" {
			t.Fatalf("server in %s did not start", n.Name())
		}
		return strings.Split(line, ",")
	case <-time.After(guard):
		t.Fatalf("server in %s: no addresses after %v", n.Name(), guard)
		return nil
	}
}

// dialFrom connects to addr from inside n (from the host if n is nil).
func dialFrom(t *testing.T, ctx context.Context, n inside, addr string) string {
	t.Helper()
	if n == nil {
		return dial(addr)
	}
	cmd := helperCmd(ctx, n, "dial", "", addr)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dial helper in %s: %v", n.Name(), err)
	}
	return strings.TrimSpace(string(out))
}

func where(n inside) string {
	if n == nil {
		return "the host"
	}
	return n.Name()
}

func mustReach(t *testing.T, ctx context.Context, from inside, addr, token string) string {
	t.Helper()
	got := dialFrom(t, ctx, from, addr)
	if !strings.HasPrefix(got, "ok "+token+" ") {
		t.Errorf("from %s, %s: %q; want the %s server", where(from), addr, got, token)
	}
	return got
}

func mustNotReach(t *testing.T, ctx context.Context, from inside, addr, token string) {
	t.Helper()
	got := dialFrom(t, ctx, from, addr)
	if strings.Contains(got, token) {
		t.Errorf("from %s, %s reached the %s server: %q", where(from), addr, token, got)
	}
	t.Logf("from %s, %s: %s", where(from), addr, got)
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func TestIsolation(t *testing.T) {
	needNetns(t)
	ctx := testCtx(t)
	a, b := create(t, ctx), create(t, ctx)
	tokenA := fmt.Sprintf("server-a-%d", rand.Uint64())
	addrs := startServer(t, a, tokenA, "127.0.0.1:0", a.Addr()+":0")
	loopA, linkA := addrs[0], addrs[1]
	if !strings.HasPrefix(linkA, a.Addr()+":") {
		t.Fatalf("server bound %s, want %s", linkA, a.Addr())
	}

	// The gateway reaches A's server on A's address, coming from A's
	// host-side address.
	got := mustReach(t, ctx, nil, linkA, tokenA)
	if !strings.Contains(got, " "+a.HostAddr()+":") {
		t.Errorf("server saw %q, want a peer at %s", got, a.HostAddr())
	}
	// A itself reaches its loopback server: lo is up.
	mustReach(t, ctx, a, loopA, tokenA)
	// Nobody else reaches A's loopback: not B, not the host.
	mustNotReach(t, ctx, b, "127.0.0.1:"+port(loopA), tokenA)
	mustNotReach(t, ctx, nil, "127.0.0.1:"+port(loopA), tokenA)
	// B cannot reach A's link address either: it has no route there.
	mustNotReach(t, ctx, b, linkA, tokenA)

	// The host's loopback is not the namespace's.
	tokenH := fmt.Sprintf("server-host-%d", rand.Uint64())
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ln, tokenH)
	mustReach(t, ctx, nil, ln.Addr().String(), tokenH)
	mustNotReach(t, ctx, a, "127.0.0.1:"+port(ln.Addr().String()), tokenH)
}

func TestCreateOpenDelete(t *testing.T) {
	needNetns(t)
	ctx := testCtx(t)
	cfg := freeConfig(t)
	n, err := netns.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Delete(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if n.Name() != cfg.Name || n.Index() != cfg.Index {
		t.Errorf("Create = %s/%d, want %s/%d", n.Name(), n.Index(), cfg.Name, cfg.Index)
	}

	// Neither the name nor the index can be taken twice, and a refused
	// Create leaves the first namespace working.
	if _, err := netns.Create(ctx, cfg); !errors.Is(err, netns.ErrExists) {
		t.Errorf("Create(same name) = %v, want ErrExists", err)
	}
	other := freeConfig(t)
	other.Index = cfg.Index
	if _, err := netns.Create(ctx, other); !errors.Is(err, netns.ErrExists) {
		t.Errorf("Create(same index) = %v, want ErrExists", err)
	}
	if _, err := os.Stat(netns.RunDir + "/" + other.Name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused Create left %s (%v)", other.Name, err)
	}
	token := fmt.Sprintf("server-%d", rand.Uint64())
	addrs := startServer(t, n, token, n.Addr()+":0")
	mustReach(t, ctx, nil, addrs[0], token)

	// What runs inside sees lo and eth0 only, eth0 with the .2 address
	// and no IPv6.
	args := append(n.ExecArgs(), "ip", "-o", "addr")
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v: %s", args, err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		ok := len(f) >= 4 && (f[1] == "lo" || f[1] == "eth0" && f[2] == "inet" && f[3] == n.Addr()+"/30")
		if !ok {
			t.Errorf("unexpected address inside: %q", line)
		}
	}

	again, err := netns.Open(ctx, cfg.Name)
	if err != nil {
		t.Fatal(err)
	}
	if again.Index() != cfg.Index || again.Addr() != n.Addr() || again.HostInterface() != n.HostInterface() {
		t.Errorf("Open = %d %s %s, want %d %s %s", again.Index(), again.Addr(), again.HostInterface(), cfg.Index, n.Addr(), n.HostInterface())
	}

	if err := again.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there after Delete (%v)", n.Path(), err)
	}
	if _, err := net.InterfaceByName(n.HostInterface()); err == nil {
		t.Errorf("interface %s still there after Delete", n.HostInterface())
	}
	if _, err := netns.Open(ctx, cfg.Name); !errors.Is(err, netns.ErrNotFound) {
		t.Errorf("Open after Delete = %v, want ErrNotFound", err)
	}
	if err := n.Delete(ctx); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

// TestNAT: a namespace with NAT reaches a server beyond the uplink,
// masqueraded; one without does not; NAT opens no path between
// namespaces; Delete removes the rules. Another namespace plays the
// outside world, its host-side interface the uplink. (TestEgress does
// the same with a routed outside and checks the host's guard.)
func TestNAT(t *testing.T) {
	needNetns(t)
	ctx := testCtx(t)
	keepForwarding(t)
	outside, a, b := create(t, ctx), create(t, ctx), create(t, ctx)
	tokenO := fmt.Sprintf("outside-%d", rand.Uint64())
	world := startServer(t, outside, tokenO, outside.Addr()+":0")[0]
	tokenB := fmt.Sprintf("server-b-%d", rand.Uint64())
	linkB := startServer(t, b, tokenB, b.Addr()+":0")[0]

	mustNotReach(t, ctx, a, world, tokenO)
	if err := a.EnableNAT(ctx, outside.HostInterface()); err != nil {
		t.Fatal(err)
	}
	if err := a.EnableNAT(ctx, outside.HostInterface()); err != nil {
		t.Fatalf("second EnableNAT: %v", err)
	}
	if n := countRules(t, a); n != guardRules+natRules {
		t.Errorf("%d rules tagged for %s, want %d", n, a.Name(), guardRules+natRules)
	}
	got := mustReach(t, ctx, a, world, tokenO)
	if !strings.Contains(got, " "+outside.HostAddr()+":") {
		t.Errorf("outside saw %q, want the masquerading uplink address %s", got, outside.HostAddr())
	}
	mustNotReach(t, ctx, b, world, tokenO)
	// With NAT on both, each has a default route through the forwarding
	// host: only the rules keep them apart.
	if err := b.EnableNAT(ctx, outside.HostInterface()); err != nil {
		t.Fatal(err)
	}
	mustReach(t, ctx, b, world, tokenO)
	mustNotReach(t, ctx, a, linkB, tokenB)
	mustReach(t, ctx, nil, linkB, tokenB)

	if err := a.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countRules(t, a); n != 0 {
		t.Errorf("%d rules tagged for %s after Delete", n, a.Name())
	}
	if n := countRules(t, b); n != guardRules+natRules {
		t.Errorf("%d rules tagged for %s after deleting %s, want its %d", n, b.Name(), a.Name(), guardRules+natRules)
	}
}

// The rules Create adds (filter/INPUT), and those EnableNAT adds
// (nat/POSTROUTING and filter/FORWARD).
const guardRules, natRules = 2, 6

func countRules(t *testing.T, n *netns.NS) int {
	t.Helper()
	return len(rulesOf(t, n.Name()))
}

// rulesOf returns the iptables rules, in every chain of the nat and filter
// tables, tagged for the namespace name.
func rulesOf(t *testing.T, name string) []string {
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

// TestForwardingRestored: the first EnableNAT records that the host's
// forwarding was off; once no namespace has NAT it is turned off again,
// and a host where it was on before is left on.
func TestForwardingRestored(t *testing.T) {
	dir := t.TempDir()
	sw, record := filepath.Join(dir, "ip_forward"), filepath.Join(dir, "record")
	left := true
	netns.Forwarding(t, sw, record, func() bool { return left })
	read := func() string {
		b, err := os.ReadFile(sw)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	ctx := context.Background()

	// Off before: on while namespaces have NAT, off once none has.
	if err := os.WriteFile(sw, []byte("0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second namespace's NAT changes nothing
		if err := netns.EnableForwarding(); err != nil {
			t.Fatal(err)
		}
	}
	if read() != "1" {
		t.Fatalf("forwarding %s after EnableNAT, want 1", read())
	}
	if done, err := netns.RestoreForwarding(ctx); err != nil || done || read() != "1" {
		t.Fatalf("with NAT left: restored %v, %v, forwarding %s; want it kept on", done, err, read())
	}
	left = false
	if done, err := netns.RestoreForwarding(ctx); err != nil || !done || read() != "0" {
		t.Fatalf("with no NAT left: restored %v, %v, forwarding %s; want it off again", done, err, read())
	}

	// On before codehub: left on.
	if err := os.WriteFile(sw, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := netns.EnableForwarding(); err != nil {
		t.Fatal(err)
	}
	if done, err := netns.RestoreForwarding(ctx); err != nil || done || read() != "1" {
		t.Fatalf("forwarding on before: restored %v, %v, forwarding %s; want it left on", done, err, read())
	}
}
