// Package netns gives each workspace a network namespace of its own, so
// that the servers a user starts (and that code-server's port forwarding,
// /proxy/<port>/ → localhost:<port>, reaches) are visible to that user's
// workspace only: every namespace has its own loopback, and 127.0.0.1:3000
// in one is not 127.0.0.1:3000 in another, nor on the host.
//
// The gateway (on the host) reaches a workspace through a veth pair: the
// host side has 10.200.X.Y+1/30, the namespace side ("eth0") 10.200.X.Y+2,
// both derived from Config.Index, so 16384 workspaces fit in 10.200.0.0/16.
// Without EnableNAT the namespace has no default route: it can reach its
// own /30 only. IPv6 is not configured on the link, and is disabled on its
// host side.
//
// The host is guarded: unless Config.HostAccess, Create adds iptables
// INPUT rules so that the namespace cannot open connections to the host,
// whether to its side of the link or to any other of its addresses (the
// services it runs on 0.0.0.0: databases, Redis, Nomad and Consul
// agents...), while the host's own connections into the namespace, the
// gateway's to the agent, work both ways.
//
// The work is done with ip(8) from iproute2 and iptables(8); their stderr
// is wrapped into the errors returned. Every iptables rule carries the
// comment "codehub-netns:<name>", by which Delete (or Remove, or a later
// Create of the same name) finds and removes it.
package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/codehub-dev/codehub/internal/filelock"
)

// Error is the type of the package's sentinel errors; they are constants so
// that no caller can reassign them.
type Error string

// Error returns the message.
func (e Error) Error() string { return string(e) }

// Errors returned by this package; test with errors.Is.
const (
	// ErrNotFound: Open found no such namespace (or one not made by Create).
	ErrNotFound Error = "no such network namespace"
	// ErrExists: Create found the namespace, or its host interface, there.
	ErrExists Error = "network namespace already exists"
	// ErrInvalid: a bad name or index.
	ErrInvalid Error = "invalid network namespace config"
	// ErrNoRoute: DefaultUplink found no IPv4 default route on the host.
	ErrNoRoute Error = "the host has no IPv4 default route"
	// ErrNoResolver: SetupDNS found no name server the namespace can
	// reach.
	ErrNoResolver Error = "no name server reachable from the network namespace"
)

const (
	// MaxIndex is the largest Config.Index: 10.200.0.0/16 holds 16384 /30s.
	MaxIndex = 1<<14 - 1
	// RunDir is where ip-netns(8) keeps named namespaces.
	RunDir = "/run/netns"
	// EtcDir holds, per namespace, the files `ip netns exec` bind-mounts
	// over /etc's (SetupDNS's resolv.conf).
	EtcDir = "/etc/netns"
	// hostVethPrefix names host-side interfaces "chv<index>" (at most 8 of
	// the 15 characters Linux allows).
	hostVethPrefix = "chv"
	// nsVeth is the namespace side's name, inside the namespace.
	nsVeth = "eth0"
	// ruleTag marks this package's iptables rules (with the namespace
	// name), so Delete finds them whatever uplink they used.
	ruleTag = "codehub-netns:"
)

// subnetBase returns 10.200.0.0, the start of the workspaces' addresses.
func subnetBase() netip.Addr { return netip.AddrFrom4([4]byte{10, 200, 0, 0}) }

// Config says what namespace Create makes.
type Config struct {
	// Name is the namespace's name (a file under /run/netns):
	// [A-Za-z0-9_-], at most 64 characters.
	Name string
	// Index, 0..MaxIndex, picks the link's addresses and the host-side
	// interface name; it must be unique among live namespaces on the host.
	Index int
	// HostAccess lets the namespace open connections to the host. By
	// default Create forbids them with iptables rules, and so needs a
	// working iptables (see CheckFirewall); set HostAccess only where
	// there is none, knowing that every host service listening on 0.0.0.0
	// is then reachable from the namespace.
	HostAccess bool
}

func (c Config) validate() error {
	if !validName(c.Name) {
		return fmt.Errorf("%w: name %q", ErrInvalid, c.Name)
	}
	if c.Index < 0 || c.Index > MaxIndex {
		return fmt.Errorf("%w: index %d outside 0..%d", ErrInvalid, c.Index, MaxIndex)
	}
	return nil
}

func validName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// NS is a workspace's network namespace.
type NS struct {
	name  string
	index int
}

func newNS(name string, index int) *NS { return &NS{name: name, index: index} }

// Name returns the namespace's name.
func (n *NS) Name() string { return n.name }

// Index returns the index its addresses derive from.
func (n *NS) Index() int { return n.index }

// Path returns the namespace's file, for setns(2) or nsenter --net=.
func (n *NS) Path() string { return filepath.Join(RunDir, n.name) }

// Addr returns the namespace side's address: where the gateway reaches
// servers the workspace runs on 0.0.0.0 or on this address.
func (n *NS) Addr() string { return n.addr(2).String() }

// HostAddr returns the host side's address, the namespace's next hop.
func (n *NS) HostAddr() string { return n.addr(1).String() }

// HostInterface returns the name of the host side of the veth pair.
func (n *NS) HostInterface() string { return hostVethPrefix + strconv.Itoa(n.index) }

func (n *NS) subnet() netip.Prefix { return netip.PrefixFrom(n.addr(0), 30) }

func (n *NS) addr(host int) netip.Addr {
	b := subnetBase().As4()
	off := n.index*4 + host
	b[2], b[3] = byte(off>>8), byte(off)
	return netip.AddrFrom4(b)
}

// ExecArgs returns the command prefix that runs a program inside the
// namespace: append the program and its arguments. It needs root (or
// CAP_SYS_ADMIN); to run the program as the workspace's user, drop
// privileges after entering, e.g. `setpriv --reuid U --regid G
// --init-groups`, not with SysProcAttr.Credential, which would drop them
// before entering.
//
// The prefix is `ip netns exec <name>`, which execs the program (its pid
// is the one started) in the namespace and in a mount namespace of its
// own where /sys shows the namespace's interfaces and the files under
// EtcDir/<name> (SetupDNS's resolv.conf) are mounted over /etc's. Mounts
// made on the host later still appear inside (the copy is a slave), and
// nothing mounted inside reaches the host. (nsenter --net would do none
// of this: the program would see the host's /etc/resolv.conf.)
func (n *NS) ExecArgs() []string {
	return []string{"ip", "netns", "exec", n.name}
}

// Create makes the namespace cfg.Name, with loopback up, a veth link to
// the host and, unless cfg.HostAccess, the rules that keep it from
// opening connections to the host: at the top of filter/INPUT, packets
// coming in from its link are accepted if they belong to a connection the
// host opened (conntrack ESTABLISHED,RELATED), rejected otherwise. Rules
// and files a dead namespace of the same name left behind are removed
// first. Returns ErrExists if the namespace or the host interface for
// cfg.Index exists. On failure it removes what it made.
func Create(ctx context.Context, cfg Config) (_ *NS, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := newNS(cfg.Name, cfg.Index)
	if _, err := os.Stat(n.Path()); err == nil {
		return nil, fmt.Errorf("create netns %s: %w", n.name, ErrExists)
	}
	if _, err := net.InterfaceByName(n.HostInterface()); err == nil {
		return nil, fmt.Errorf("create netns %s: interface %s: %w", n.name, n.HostInterface(), ErrExists)
	}
	if err := run(ctx, "ip", "netns", "add", n.name); err != nil {
		return nil, fmt.Errorf("create netns %s: %w", n.name, err)
	}
	host, ns := n.HostInterface(), []string{"-n", n.name}
	vethMade := false
	defer func() {
		// Undo only what this call made: a host interface of the same
		// index may belong to a namespace another Create just made.
		if err == nil {
			return
		}
		uctx := context.WithoutCancel(ctx)
		if vethMade {
			err = errors.Join(err, run(uctx, "ip", "link", "del", host))
		}
		err = errors.Join(err, n.removeRulesAndFiles(uctx), run(uctx, "ip", "netns", "del", n.name))
	}()
	// The name is this call's now (ip netns add refuses an existing one):
	// rules and files tagged with it are left over from a dead namespace,
	// and rules on its old interface would follow that interface's index.
	if err := n.removeRulesAndFiles(ctx); err != nil {
		return nil, fmt.Errorf("create netns %s: leftovers: %w", n.name, err)
	}
	// Guarded before the link exists: nothing inside ever reaches the host.
	if !cfg.HostAccess {
		if err := n.guardHost(ctx); err != nil {
			return nil, fmt.Errorf("create netns %s: %w", n.name, err)
		}
	}
	steps := [][]string{
		{"link", "add", host, "type", "veth", "peer", "name", nsVeth, "netns", n.name},
		// No IPv6 link-local addresses: nothing should speak IPv6 here.
		{"link", "set", host, "addrgenmode", "none"},
		append(ns, "link", "set", nsVeth, "addrgenmode", "none"),
		{"addr", "add", n.HostAddr() + "/30", "dev", host},
		append(ns, "addr", "add", n.Addr()+"/30", "dev", nsVeth),
		append(ns, "link", "set", "lo", "up"),
		append(ns, "link", "set", nsVeth, "up"),
		{"link", "set", host, "up"},
	}
	for i, args := range steps {
		if err := run(ctx, "ip", args...); err != nil {
			return nil, fmt.Errorf("create netns %s: %w", n.name, err)
		}
		vethMade = vethMade || i == 0
		if i == 0 {
			// With IPv6 off on the host side, no IPv6 packet from the
			// namespace is even received. (The file is missing when the
			// host has no IPv6 at all.)
			f := filepath.Join("/proc/sys/net/ipv6/conf", host, "disable_ipv6")
			if err := os.WriteFile(f, []byte("1"), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("create netns %s: %w", n.name, err)
			}
		}
	}
	return n, nil
}

// guardHost adds the filter/INPUT rules that keep the namespace from
// opening connections to the host.
func (n *NS) guardHost(ctx context.Context) error {
	host := n.HostInterface()
	// Listed bottom first: each is inserted at the top.
	return n.insertRules(ctx, []rule{
		{"filter", "INPUT", []string{"-i", host}, rejectTarget},
		{"filter", "INPUT", []string{"-i", host, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED"}, acceptTarget},
	})
}

// Open re-attaches to the namespace name made by Create, for instance
// after a gateway restart, recovering its index from its address.
// Returns ErrNotFound if there is no such namespace or it has no link
// made by Create.
func Open(ctx context.Context, name string) (*NS, error) {
	if !validName(name) {
		return nil, fmt.Errorf("%w: name %q", ErrInvalid, name)
	}
	if _, err := os.Stat(filepath.Join(RunDir, name)); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open netns %s: %w", name, ErrNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	out, err := output(ctx, "ip", "-n", name, "-o", "-4", "addr", "show", "dev", nsVeth)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w: %w", name, ErrNotFound, err)
	}
	// "2: eth0    inet 10.200.0.6/30 scope global eth0\ …"
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] != "inet" {
			continue
		}
		p, err := netip.ParsePrefix(f[i+1])
		if err != nil {
			continue
		}
		if idx, ok := indexOf(p); ok {
			return newNS(name, idx), nil
		}
	}
	return nil, fmt.Errorf("open netns %s: no 10.200.0.0/16 address on %s: %w", name, nsVeth, ErrNotFound)
}

// indexOf returns the index whose namespace-side address is p.
func indexOf(p netip.Prefix) (int, bool) {
	if p.Bits() != 30 || !netip.PrefixFrom(subnetBase(), 16).Contains(p.Addr()) {
		return 0, false
	}
	b := p.Addr().As4()
	off := int(b[2])<<8 | int(b[3])
	if off%4 != 2 {
		return 0, false
	}
	return off / 4, true
}

// Delete removes the namespace, its link, its iptables rules (Create's
// and EnableNAT's) and SetupDNS's file. Processes still inside keep the
// namespace alive, cut off from the host, until they exit: kill them
// (their cgroup) first. Deleting what is already gone succeeds.
func (n *NS) Delete(ctx context.Context) error {
	var errs []error
	if err := n.removeRulesAndFiles(ctx); err != nil {
		errs = append(errs, err)
	}
	if _, err := net.InterfaceByName(n.HostInterface()); err == nil {
		// Deleting one end of a veth pair deletes both.
		if err := run(ctx, "ip", "link", "del", n.HostInterface()); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat(n.Path()); err == nil {
		if err := run(ctx, "ip", "netns", "del", n.name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete netns %s: %w", n.name, err)
	}
	if _, err := RestoreForwarding(ctx); err != nil {
		return fmt.Errorf("delete netns %s: %w", n.name, err)
	}
	return nil
}

// EnableNAT lets the namespace open connections to the outside world
// through the host's uplink interface (see DefaultUplink), masqueraded
// behind the uplink's address. It is off by default, and it CHANGES HOST
// STATE:
//
//   - it turns on IPv4 forwarding for the whole host
//     (net.ipv4.ip_forward=1); Delete and Remove turn it off again when
//     no namespace with NAT is left and it was off before the first
//     EnableNAT (see RestoreForwarding);
//   - it gives the namespace a default route through its link;
//   - it adds iptables rules, tagged like Create's, that Delete removes: a
//     MASQUERADE rule in nat/POSTROUTING and, at the top of filter/FORWARD,
//     rules that reject what the namespace sends to link-local addresses
//     (169.254.0.0/16: a cloud's instance metadata service, which hands
//     out the machine's credentials), let it reach the uplink (and the
//     replies back) and reject any other forwarding to or from it, so that
//     a namespace still cannot reach another one, nor the host's other
//     networks.
//
// Connections to the host itself are not forwarding: Create's rules keep
// refusing them. Calling EnableNAT again is harmless.
func (n *NS) EnableNAT(ctx context.Context, uplink string) error {
	if _, err := net.InterfaceByName(uplink); err != nil {
		return fmt.Errorf("enable NAT for %s: uplink %q: %w", n.name, uplink, err)
	}
	host, src := n.HostInterface(), n.subnet().String()
	// Forwarding on and the rules in under the lock RestoreForwarding
	// takes, so that it never finds forwarding on for a namespace whose
	// NAT rule is not there yet, and turns it off under it.
	err := filelock.With(ctx, forwardingLock(), func() error {
		if err := enableForwarding(); err != nil {
			return err
		}
		// Listed bottom first: each is inserted at the top.
		return n.insertRules(ctx, []rule{
			{"nat", "POSTROUTING", []string{"-s", src, "-o", uplink}, []string{"-j", "MASQUERADE"}},
			{"filter", "FORWARD", []string{"-o", host}, rejectTarget},
			{"filter", "FORWARD", []string{"-i", host}, rejectTarget},
			{"filter", "FORWARD", []string{"-i", uplink, "-o", host, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED"}, acceptTarget},
			{"filter", "FORWARD", []string{"-i", host, "-o", uplink, "-s", src}, acceptTarget},
			{"filter", "FORWARD", []string{"-i", host, "-d", "169.254.0.0/16"}, rejectTarget},
		})
	})
	if err != nil {
		return fmt.Errorf("enable NAT for %s: %w", n.name, err)
	}
	// The route last: nothing leaves before the rules are in place.
	if err := run(ctx, "ip", "-n", n.name, "route", "replace", "default", "via", n.HostAddr(), "dev", nsVeth); err != nil {
		return fmt.Errorf("enable NAT for %s: %w", n.name, err)
	}
	return nil
}

// DefaultUplink returns the interface of the host's IPv4 default route
// (the one of lowest metric), for EnableNAT. Returns ErrNoRoute if there
// is none.
func DefaultUplink(ctx context.Context) (string, error) {
	out, err := output(ctx, "ip", "-j", "-4", "route", "show", "default")
	if err != nil {
		return "", fmt.Errorf("default route: %w", err)
	}
	return defaultUplink(out)
}

// defaultUplink picks the uplink from `ip -j route show default`.
func defaultUplink(out []byte) (string, error) {
	var routes []struct {
		Type     string `json:"type"` // absent for unicast
		Dev      string `json:"dev"`
		Metric   int    `json:"metric"`
		Nexthops []struct {
			Dev string `json:"dev"`
		} `json:"nexthops"`
	}
	if len(bytes.TrimSpace(out)) > 0 {
		if err := json.Unmarshal(out, &routes); err != nil {
			return "", fmt.Errorf("default route: ip -j route: %w", err)
		}
	}
	best, metric := "", 0
	for _, r := range routes {
		dev := r.Dev
		if dev == "" && len(r.Nexthops) > 0 {
			dev = r.Nexthops[0].Dev
		}
		if dev == "" || r.Type != "" && r.Type != "unicast" { // unreachable, blackhole...
			continue
		}
		if best == "" || r.Metric < metric {
			best, metric = dev, r.Metric
		}
	}
	if best == "" {
		return "", ErrNoRoute
	}
	return best, nil
}

// CheckFirewall reports why iptables(8), which Create (without HostAccess)
// and EnableNAT need, cannot be used here: not installed, not root, or no
// netfilter in the kernel. It returns nil when it works.
func CheckFirewall(ctx context.Context) error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return fmt.Errorf("iptables: %w", err)
	}
	return run(ctx, "iptables", "-w", "-t", "filter", "-S", "INPUT")
}

var (
	acceptTarget = []string{"-j", "ACCEPT"}
	// rejectTarget fails connections at once ("no route to host") rather
	// than letting them hang.
	rejectTarget = []string{"-j", "REJECT", "--reject-with", "icmp-admin-prohibited"}
)

// rule is one iptables rule: its match, then this package's tag, then its
// target.
type rule struct {
	table, chain  string
	match, target []string
}

// insertRules inserts each rule at the top of its chain unless it is there
// already, so that inserting the same list again changes nothing.
func (n *NS) insertRules(ctx context.Context, rules []rule) error {
	tag := []string{"-m", "comment", "--comment", ruleTag + n.name}
	for _, r := range rules {
		spec := join(r.match, tag, r.target)
		check := join([]string{"-w", "-t", r.table, "-C", r.chain}, spec)
		if run(ctx, "iptables", check...) == nil {
			continue // already there
		}
		add := join([]string{"-w", "-t", r.table, "-I", r.chain, "1"}, spec)
		if err := run(ctx, "iptables", add...); err != nil {
			return err
		}
	}
	return nil
}

// removeRulesAndFiles removes everything of the namespace's that outlives
// it: its tagged iptables rules and its directory under EtcDir.
func (n *NS) removeRulesAndFiles(ctx context.Context) error {
	return errors.Join(n.deleteRules(ctx), n.removeEtc())
}

// Remove deletes what Create, EnableNAT and SetupDNS made under name when
// Open cannot attach to it, say after a Create or a Delete cut short: its
// tagged iptables rules, its files under EtcDir and the namespace, whose
// link goes with it once no process is left inside. Removing what is not
// there succeeds.
func Remove(ctx context.Context, name string) error {
	if !validName(name) {
		return fmt.Errorf("%w: name %q", ErrInvalid, name)
	}
	n := &NS{name: name}
	errs := []error{n.removeRulesAndFiles(ctx)}
	if _, err := os.Stat(n.Path()); err == nil {
		errs = append(errs, run(ctx, "ip", "netns", "del", name))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove netns %s: %w", name, err)
	}
	if _, err := RestoreForwarding(ctx); err != nil {
		return fmt.Errorf("remove netns %s: %w", name, err)
	}
	return nil
}

// deleteRules removes the namespace's iptables rules, found by their tag.
func (n *NS) deleteRules(ctx context.Context) error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil // no iptables, so no rules of ours
	}
	marker := `"` + ruleTag + n.name + `"`
	var errs []error
	for _, tc := range [][2]string{{"nat", "POSTROUTING"}, {"filter", "FORWARD"}, {"filter", "INPUT"}} {
		out, err := output(ctx, "iptables", "-w", "-t", tc[0], "-S", tc[1])
		if err != nil {
			// No usable netfilter here (a container without it, say):
			// Create and EnableNAT cannot have added rules either.
			// Failing would block tearing down every workspace.
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || f[0] != "-A" || !matchesTag(f, ruleTag+n.name, marker) {
				continue
			}
			f[0] = "-D"
			if err := run(ctx, "iptables", append([]string{"-w", "-t", tc[0]}, f...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// matchesTag reports whether an `iptables -S` rule carries exactly our
// comment (iptables may print it with or without quotes).
func matchesTag(fields []string, tag, quoted string) bool {
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == "--comment" && (fields[i+1] == tag || fields[i+1] == quoted) {
			if fields[i+1] == quoted {
				fields[i+1] = tag // pass it unquoted to -D
			}
			return true
		}
	}
	return false
}

func join(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// cmdError is a failed command with its stderr.
type cmdError struct {
	cmd    string
	stderr string
	err    error
}

func (e *cmdError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("%s: %v", e.cmd, e.err)
	}
	return fmt.Sprintf("%s: %v: %s", e.cmd, e.err, e.stderr)
}

func (e *cmdError) Unwrap() error { return e.err }

func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

// output runs a command and returns its stdout; a failure is a *cmdError
// carrying its stderr.
func output(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if err := cmd.Run(); err != nil {
		return nil, &cmdError{cmd: name + " " + strings.Join(args, " "), stderr: strings.TrimSpace(stderr.String()), err: err}
	}
	return stdout.Bytes(), nil
}

// Names returns the names starting with prefix of every namespace this
// package may have left something of on the host: a namespace under
// RunDir, files under EtcDir, or tagged iptables rules. After a crash,
// Remove each that is no longer wanted.
func Names(ctx context.Context, prefix string) ([]string, error) {
	seen := map[string]bool{}
	for _, dir := range []string{RunDir, EtcDir} {
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) && validName(e.Name()) {
				seen[e.Name()] = true
			}
		}
	}
	if _, err := exec.LookPath("iptables"); err == nil {
		for _, tc := range [][2]string{{"nat", "POSTROUTING"}, {"filter", "FORWARD"}, {"filter", "INPUT"}} {
			out, err := output(ctx, "iptables", "-w", "-t", tc[0], "-S", tc[1])
			if err != nil {
				continue // no usable netfilter: no rules of ours either
			}
			for _, line := range strings.Split(string(out), "\n") {
				f := strings.Fields(line)
				for i := 0; i+1 < len(f); i++ {
					if f[i] != "--comment" {
						continue
					}
					name, ok := strings.CutPrefix(strings.Trim(f[i+1], `"`), ruleTag)
					if ok && strings.HasPrefix(name, prefix) && validName(name) {
						seen[name] = true
					}
				}
			}
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

// Paths of the host's IPv4 forwarding switch, and of the record of its
// setting before the first EnableNAT turned it on (a variable for tests).
var (
	forwardingSwitch = "/proc/sys/net/ipv4/ip_forward"
	forwardingRecord = "/run/codehub-ip_forward"
)

// forwardingLock is the file every process of this package locks around
// the forwarding switch, its record and the NAT rules.
func forwardingLock() string { return forwardingRecord + ".lock" }

// enableForwarding turns the host's IPv4 forwarding on, first recording
// that it was off, unless a record is there already (an earlier
// EnableNAT's). The caller holds forwardingLock.
func enableForwarding() error {
	cur, err := os.ReadFile(forwardingSwitch)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(cur)) == "0" {
		if _, err := os.Stat(forwardingRecord); errors.Is(err, fs.ErrNotExist) {
			if err := os.WriteFile(forwardingRecord, []byte("0\n"), 0o600); err != nil {
				return fmt.Errorf("record the host's forwarding setting: %w", err)
			}
		}
	}
	return os.WriteFile(forwardingSwitch, []byte("1"), 0)
}

// RestoreForwarding turns the host's IPv4 forwarding off again when
// EnableNAT turned it on and no namespace with NAT is left (no rule of
// this package's in nat/POSTROUTING, whichever process made it). It
// reports whether it did. Delete and Remove call it.
func RestoreForwarding(ctx context.Context) (bool, error) {
	restored := false
	err := filelock.With(ctx, forwardingLock(), func() error {
		if _, err := os.Stat(forwardingRecord); errors.Is(err, fs.ErrNotExist) {
			return nil // on before codehub, or never turned on by it
		}
		if natLeft(ctx) {
			return nil // a namespace still has NAT
		}
		if err := os.WriteFile(forwardingSwitch, []byte("0"), 0); err != nil {
			return fmt.Errorf("restore the host's forwarding setting: %w", err)
		}
		restored = true
		return os.Remove(forwardingRecord)
	})
	return restored, err
}

// natLeft reports whether any namespace still has NAT: a rule of this
// package's in nat/POSTROUTING, whichever process made it (a variable for
// tests).
var natLeft = func(ctx context.Context) bool {
	out, err := output(ctx, "iptables", "-w", "-t", "nat", "-S", "POSTROUTING")
	if err != nil {
		return true // cannot tell: leave forwarding as it is
	}
	return strings.Contains(string(out), ruleTag)
}
