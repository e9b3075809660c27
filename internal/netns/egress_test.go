package netns_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/codehub-dev/codehub/internal/netns"
)

// rawNS is a namespace the test makes itself, with ip(8), as the outside
// world.
type rawNS string

func (r rawNS) Name() string       { return string(r) }
func (r rawNS) ExecArgs() []string { return []string{"ip", "netns", "exec", string(r)} }

// outside is a stand-in for the internet: a namespace behind a veth link
// of its own (uplink, on the host), holding addresses the host routes
// through that link, as it would through a default gateway.
type outside struct {
	ns        rawNS
	uplink    string // the host side of the link
	hostAddr  string // the host's address on it
	public    string // a routed address served from the outside
	linkLocal string // a 169.254.0.0/16 address served from the outside
}

// newOutside makes an outside world that is removed when t ends. Its
// addresses, random within the benchmarking range 198.18.0.0/15, clash
// with nothing real.
func newOutside(t *testing.T, ctx context.Context) *outside {
	t.Helper()
	r := rand.IntN(1 << 14)
	o := &outside{
		ns:        rawNS(fmt.Sprintf("chtest-out-%d", r)),
		uplink:    fmt.Sprintf("chtup%d", r),
		hostAddr:  fmt.Sprintf("198.18.%d.%d", r>>6, (r&63)*4+1),
		public:    fmt.Sprintf("198.19.%d.%d", r>>8, r&255),
		linkLocal: fmt.Sprintf("169.254.77.%d", 1+r%250),
	}
	peer := fmt.Sprintf("198.18.%d.%d", r>>6, (r&63)*4+2)
	mustRun(t, ctx, "ip", "netns", "add", string(o.ns))
	t.Cleanup(func() {
		// The link, and the host's routes through it, go with the
		// namespace.
		if err := exec.Command("ip", "netns", "del", string(o.ns)).Run(); err != nil {
			t.Errorf("cleanup: ip netns del %s: %v", o.ns, err)
		}
		if _, err := net.InterfaceByName(o.uplink); err == nil {
			_ = exec.Command("ip", "link", "del", o.uplink).Run()
		}
	})
	in := []string{"-n", string(o.ns)}
	for _, args := range [][]string{
		{"link", "add", o.uplink, "type", "veth", "peer", "name", "up0", "netns", string(o.ns)},
		{"addr", "add", o.hostAddr + "/30", "dev", o.uplink},
		{"link", "set", o.uplink, "up"},
		append(in, "addr", "add", peer+"/30", "dev", "up0"),
		append(in, "addr", "add", o.public+"/32", "dev", "lo"),
		append(in, "addr", "add", o.linkLocal+"/32", "dev", "lo"),
		append(in, "link", "set", "lo", "up"),
		append(in, "link", "set", "up0", "up"),
		{"route", "add", o.public + "/32", "via", peer, "dev", o.uplink},
		{"route", "add", o.linkLocal + "/32", "via", peer, "dev", o.uplink},
	} {
		mustRun(t, ctx, "ip", args...)
	}
	return o
}

func mustRun(t *testing.T, ctx context.Context, name string, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// keepForwarding restores the host's ip_forward when t ends. It holds a
// lock meanwhile, which other tests that turn forwarding on (those of
// internal/orchestrator/local) take too, so that none of them restores
// what another one set.
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

// createWith makes a namespace from cfg (a free name and index added) that
// is deleted when t ends.
func createWith(t *testing.T, ctx context.Context, cfg netns.Config) *netns.NS {
	t.Helper()
	free := freeConfig(t)
	cfg.Name, cfg.Index = free.Name, free.Index
	n, err := netns.Create(ctx, cfg)
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

// otherHostAddr returns an IPv4 address of the host's that is neither
// loopback nor on a link this package or the test made, or "".
func otherHostAddr(t *testing.T, o *outside) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifs {
		if strings.HasPrefix(ifc.Name, "chv") || strings.HasPrefix(ifc.Name, "chtup") || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
				return p.Addr().String()
			}
		}
	}
	return ""
}

// TestEgress: a workspace namespace with NAT reaches the outside world
// through the uplink, masqueraded, but not a link-local address there (a
// cloud's metadata service); it reaches neither another namespace, NAT or
// not, nor, with or without NAT, any host service: not on its link's
// host address, not on the host's other addresses. The host still
// connects into it. A namespace made with HostAccess shows that the
// guard, not routing, is what refuses. Delete removes every rule.
func TestEgress(t *testing.T) {
	needNetns(t)
	ctx := testCtx(t)
	keepForwarding(t)
	o := newOutside(t, ctx)
	a, b := create(t, ctx), create(t, ctx)
	open := createWith(t, ctx, netns.Config{HostAccess: true})

	tokenO := fmt.Sprintf("outside-%d", rand.Uint64())
	world := startServer(t, o.ns, tokenO, o.public+":0", o.linkLocal+":0")
	public, linkLocal := world[0], world[1]
	tokenA := fmt.Sprintf("agent-a-%d", rand.Uint64())
	agentA := startServer(t, a, tokenA, a.Addr()+":0")[0]
	tokenB := fmt.Sprintf("agent-b-%d", rand.Uint64())
	agentB := startServer(t, b, tokenB, b.Addr()+":0")[0]

	// A host service on every address (a database, a Consul agent...).
	tokenH := fmt.Sprintf("host-service-%d", rand.Uint64())
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serve(ln, tokenH)
	svc := port(ln.Addr().String())
	hostAddrs := func(n *netns.NS) []string {
		addrs := []string{net.JoinHostPort(n.HostAddr(), svc), net.JoinHostPort(o.hostAddr, svc)}
		if other := otherHostAddr(t, o); other != "" {
			addrs = append(addrs, net.JoinHostPort(other, svc))
		}
		return addrs
	}

	// The host reaches everything: the servers are up, the routes right.
	mustReach(t, ctx, nil, public, tokenO)
	mustReach(t, ctx, nil, linkLocal, tokenO)
	for _, addr := range hostAddrs(a) {
		mustReach(t, ctx, nil, addr, tokenH)
	}

	// Without egress: no way out, and the host's services refused.
	mustNotReach(t, ctx, a, public, tokenO)
	mustNotReach(t, ctx, a, net.JoinHostPort(a.HostAddr(), svc), tokenH)
	mustReach(t, ctx, open, net.JoinHostPort(open.HostAddr(), svc), tokenH)

	for _, n := range []*netns.NS{a, b, open} {
		if err := n.EnableNAT(ctx, o.uplink); err != nil {
			t.Fatal(err)
		}
	}
	if n := countRules(t, a); n != guardRules+natRules {
		t.Errorf("%d rules tagged for %s, want %d", n, a.Name(), guardRules+natRules)
	}
	if n := countRules(t, open); n != natRules {
		t.Errorf("%d rules tagged for %s (HostAccess), want %d", n, open.Name(), natRules)
	}

	// With egress: the outside world, seen from the uplink's address...
	got := mustReach(t, ctx, a, public, tokenO)
	if !strings.Contains(got, " "+o.hostAddr+":") {
		t.Errorf("outside saw %q, want the masquerading uplink address %s", got, o.hostAddr)
	}
	mustReach(t, ctx, b, public, tokenO)
	// ...but no link-local address (instance metadata).
	mustNotReach(t, ctx, a, linkLocal, tokenO)

	// No workspace reaches another's agent port, either way.
	mustNotReach(t, ctx, a, agentB, tokenB)
	mustNotReach(t, ctx, b, agentA, tokenA)
	mustNotReach(t, ctx, open, agentA, tokenA)

	// No host service, on any host address; the same addresses are
	// open to the namespace with HostAccess, routed the same way.
	for _, addr := range hostAddrs(a) {
		mustNotReach(t, ctx, a, addr, tokenH)
	}
	for _, addr := range hostAddrs(open) {
		mustReach(t, ctx, open, addr, tokenH)
	}

	// The gateway's direction works, replies included.
	got = mustReach(t, ctx, nil, agentA, tokenA)
	if !strings.Contains(got, " "+a.HostAddr()+":") {
		t.Errorf("agent saw %q, want the host at %s", got, a.HostAddr())
	}
	mustReach(t, ctx, nil, agentB, tokenB)

	for _, n := range []*netns.NS{a, b, open} {
		if err := n.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		if rules := rulesOf(t, n.Name()); len(rules) != 0 {
			t.Errorf("rules tagged for %s after Delete:\n%s", n.Name(), strings.Join(rules, "\n"))
		}
	}
}

// TestLeftovers: rules and files a namespace leaves when it dies without
// Delete are removed by the next Create of its name, or by Remove when
// Open cannot attach to what is left.
func TestLeftovers(t *testing.T) {
	needNetns(t)
	ctx := testCtx(t)
	cfg := freeConfig(t)
	t.Cleanup(func() {
		if err := netns.Remove(context.Background(), cfg.Name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	n, err := netns.Create(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	hostConf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(hostConf, []byte("nameserver 127.0.0.53\nnameserver 192.0.2.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := netns.SetupDNSFrom(n, hostConf); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(netns.EtcDir, cfg.Name)

	// The namespace dies behind the package's back.
	mustRun(t, ctx, "ip", "link", "del", n.HostInterface())
	mustRun(t, ctx, "ip", "netns", "del", cfg.Name)
	if got := countRules(t, n); got != guardRules {
		t.Fatalf("%d rules left, want the %d of Create", got, guardRules)
	}
	if _, err := netns.Open(ctx, cfg.Name); !errors.Is(err, netns.ErrNotFound) {
		t.Fatalf("Open = %v, want ErrNotFound", err)
	}

	// Made again, elsewhere: only the new namespace's rules remain.
	moved := freeConfig(t)
	moved.Name = cfg.Name
	again, err := netns.Create(ctx, moved)
	if err != nil {
		t.Fatal(err)
	}
	rules := rulesOf(t, cfg.Name)
	if len(rules) != guardRules {
		t.Errorf("rules after re-creation:\n%s\nwant %d", strings.Join(rules, "\n"), guardRules)
	}
	for _, r := range rules {
		if !strings.Contains(r, "-i "+again.HostInterface()+" ") {
			t.Errorf("rule not for the new interface %s: %s", again.HostInterface(), r)
		}
	}
	if _, err := os.Stat(etc); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s survived re-creation (%v)", etc, err)
	}

	// Half gone: the namespace is there but Open cannot attach to it.
	mustRun(t, ctx, "ip", "link", "del", again.HostInterface())
	if _, err := netns.Open(ctx, cfg.Name); !errors.Is(err, netns.ErrNotFound) {
		t.Fatalf("Open = %v, want ErrNotFound", err)
	}
	if err := netns.Remove(ctx, cfg.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(again.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s survived Remove (%v)", again.Path(), err)
	}
	if rules := rulesOf(t, cfg.Name); len(rules) != 0 {
		t.Errorf("rules after Remove:\n%s", strings.Join(rules, "\n"))
	}
	if err := netns.Remove(ctx, cfg.Name); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

// TestSetupDNS: the resolv.conf SetupDNS writes is what a program started
// with ExecArgs reads as /etc/resolv.conf; none is written when the host's
// works, and Delete removes it.
func TestSetupDNS(t *testing.T) {
	needNetns(t)
	ctx := testCtx(t)
	n := create(t, ctx)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	inside := func() string {
		args := append(n.ExecArgs(), "cat", "/etc/resolv.conf")
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return string(out)
	}
	stub := write("stub", "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n")
	upstream := write("upstream", "nameserver 192.0.2.53\nnameserver 192.0.2.54\n")
	etc := filepath.Join(netns.EtcDir, n.Name())

	if err := netns.SetupDNSFrom(n, stub, filepath.Join(dir, "missing"), upstream); err != nil {
		t.Fatal(err)
	}
	got := inside()
	for _, want := range []string{"nameserver 192.0.2.53\n", "nameserver 192.0.2.54\n", "search corp.example\n", "options edns0 trust-ad\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("resolv.conf inside lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "127.0.0.53") {
		t.Errorf("resolv.conf inside names the loopback resolver:\n%s", got)
	}

	// A host file that works: the namespace reads the host's own.
	if err := netns.SetupDNSFrom(n, write("fine", "nameserver 192.0.2.99\n"), upstream); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(etc); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there for a host file that works (%v)", etc, err)
	}
	if host, err := os.ReadFile("/etc/resolv.conf"); err == nil && inside() != string(host) {
		t.Errorf("inside reads %q, want the host's %q", inside(), host)
	}

	// Nothing reachable: an error, and no file.
	err := netns.SetupDNSFrom(n, write("dnsmasq", "nameserver 127.0.0.1\n"), filepath.Join(dir, "missing"))
	if !errors.Is(err, netns.ErrNoResolver) {
		t.Errorf("SetupDNS with loopback only = %v, want ErrNoResolver", err)
	}
	if _, err := os.Stat(etc); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s written with no reachable server (%v)", etc, err)
	}

	if err := netns.SetupDNSFrom(n, stub, upstream); err != nil {
		t.Fatal(err)
	}
	if err := n.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(etc); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s survived Delete (%v)", etc, err)
	}
}

func TestNamespaceResolvConf(t *testing.T) {
	t.Parallel()
	self := netip.MustParseAddr("192.0.2.2")
	isHost := func(a netip.Addr) bool { return a == self }
	for _, tc := range []struct {
		name      string
		host      string
		upstreams []string
		want      []string // nameservers written; nil: none written
		keep      []string // other lines written
		err       error
	}{
		{name: "reachable", host: "nameserver 10.255.255.53\nsearch x\n"},
		{name: "resolved stub", host: "# stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n",
			upstreams: []string{"nameserver 10.0.0.2\nnameserver 10.0.0.3\n"},
			want:      []string{"10.0.0.2", "10.0.0.3"}, keep: []string{"options edns0 trust-ad", "search corp.example"}},
		{name: "upstream list of loopback only skipped", host: "nameserver 127.0.0.53\n",
			upstreams: []string{"nameserver 127.0.0.1\n", "nameserver 10.0.0.9\n"}, want: []string{"10.0.0.9"}},
		{name: "dnsmasq, no upstream", host: "nameserver 127.0.0.1\n", err: netns.ErrNoResolver},
		{name: "mixed keeps the reachable", host: "nameserver 127.0.0.1\nnameserver 9.9.9.9\n",
			upstreams: []string{"nameserver 10.0.0.2\n"}, want: []string{"9.9.9.9"}},
		{name: "the host's own address", host: "nameserver 192.0.2.2\n",
			upstreams: []string{"nameserver 10.0.0.2\n"}, want: []string{"10.0.0.2"}},
		{name: "IPv6 only", host: "nameserver 2001:db8::1\nnameserver ::1\n",
			upstreams: []string{"nameserver 10.0.0.2\n"}, want: []string{"10.0.0.2"}},
		{name: "empty means 127.0.0.1", host: "", upstreams: []string{"nameserver 10.0.0.2\n"}, want: []string{"10.0.0.2"}},
		{name: "empty, no upstream", host: "", err: netns.ErrNoResolver},
		{name: "at most three", host: "nameserver 127.0.0.53\n",
			upstreams: []string{"nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n"},
			want:      []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ups [][]byte
			for _, u := range tc.upstreams {
				ups = append(ups, []byte(u))
			}
			out, err := netns.NamespaceResolvConf("ns", []byte(tc.host), ups, isHost)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if tc.want == nil {
				if out != nil {
					t.Fatalf("wrote %q, want nothing", out)
				}
				return
			}
			var servers, other []string
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if s, ok := strings.CutPrefix(line, "nameserver "); ok {
					servers = append(servers, s)
				} else if !strings.HasPrefix(line, "#") {
					other = append(other, line)
				}
			}
			if fmt.Sprint(servers) != fmt.Sprint(tc.want) || fmt.Sprint(other) != fmt.Sprint(tc.keep) {
				t.Errorf("wrote servers %v and %q; want %v and %q:\n%s", servers, other, tc.want, tc.keep, out)
			}
		})
	}
}

func TestDefaultUplink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		out, want string
		err       error
	}{
		{out: "", err: netns.ErrNoRoute},
		{out: "[]\n", err: netns.ErrNoRoute},
		{out: `[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]}]`, want: "eth0"},
		{out: `[{"dst":"default","gateway":"192.0.2.1","dev":"wlan0","metric":600,"flags":[]},` +
			`{"dst":"default","gateway":"198.51.100.1","dev":"enp3s0","metric":100,"flags":[]}]`, want: "enp3s0"},
		{out: `[{"type":"unreachable","dst":"default","flags":[]}]`, err: netns.ErrNoRoute},
		{out: `[{"type":"blackhole","dst":"default","flags":[]},{"dst":"default","dev":"wg0","metric":50,"flags":[]}]`, want: "wg0"},
		{out: `[{"dst":"default","flags":[],"nexthops":[{"gateway":"192.0.2.1","dev":"bond0","weight":1,"flags":[]}]}]`, want: "bond0"},
	} {
		got, err := netns.DefaultUplinkFrom([]byte(tc.out))
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("%s: %q, %v; want %q, %v", tc.out, got, err, tc.want, tc.err)
		}
	}
	// This host's answer: an interface that exists, or none.
	if _, err := exec.LookPath("ip"); err != nil {
		return
	}
	dev, err := netns.DefaultUplink(context.Background())
	if errors.Is(err, netns.ErrNoRoute) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := net.InterfaceByName(dev); err != nil {
		t.Errorf("DefaultUplink = %q: %v", dev, err)
	}
}
