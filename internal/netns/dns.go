package netns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// hostResolvConf is the host's resolver configuration.
const hostResolvConf = "/etc/resolv.conf"

// upstreamResolvConfs lists where local caching resolvers keep the name
// servers they forward to: systemd-resolved, then NetworkManager.
func upstreamResolvConfs() []string {
	return []string{"/run/systemd/resolve/resolv.conf", "/run/NetworkManager/no-stub-resolv.conf"}
}

// maxNameservers is how many name servers glibc's resolver reads (MAXNS).
const maxNameservers = 3

// SetupDNS makes name resolution work inside the namespace for programs
// started with ExecArgs. A program there reads the host's /etc/resolv.conf,
// whose name servers may be out of its reach: loopback ones (127.0.0.53
// for systemd-resolved, 127.0.0.1 for dnsmasq) are the namespace's own
// loopback, the host's own addresses are refused by Create's rules, and
// the link has no IPv6. When the host's file names any such server,
// SetupDNS writes EtcDir/<name>/resolv.conf, which ExecArgs mounts over
// /etc/resolv.conf, naming the host's other servers or, if none is left,
// those a local resolver forwards to (/run/systemd/resolve/resolv.conf,
// NetworkManager's no-stub-resolv.conf); search and options lines are
// kept. When the host's file works as it is, it removes any such file
// left behind. Returns an error wrapping ErrNoResolver, and writes
// nothing, when no reachable name server is found. The file is a copy
// made now: programs already running inside keep what they read, and a
// change of the host's servers reaches the namespace when SetupDNS is
// called again. Delete removes it.
func (n *NS) SetupDNS() error {
	return n.setupDNS(hostResolvConf, upstreamResolvConfs())
}

func (n *NS) setupDNS(hostFile string, upstreamFiles []string) error {
	host, err := os.ReadFile(hostFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) { // a missing file means 127.0.0.1, as an empty one
		return fmt.Errorf("set up DNS for %s: %w", n.name, err)
	}
	var upstreams [][]byte
	for _, f := range upstreamFiles {
		if b, err := os.ReadFile(f); err == nil {
			upstreams = append(upstreams, b)
		}
	}
	conf, err := namespaceResolvConf(n.name, host, upstreams, hostAddrs())
	if conf == nil {
		if rerr := n.removeEtc(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		if err != nil {
			return fmt.Errorf("set up DNS for %s: %w", n.name, err)
		}
		return nil
	}
	dir := filepath.Join(EtcDir, n.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("set up DNS for %s: %w", n.name, err)
	}
	tmp := filepath.Join(dir, ".resolv.conf.tmp")
	if err := os.WriteFile(tmp, conf, 0o644); err != nil {
		return fmt.Errorf("set up DNS for %s: %w", n.name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "resolv.conf")); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("set up DNS for %s: %w", n.name, err)
	}
	return nil
}

// namespaceResolvConf returns the resolv.conf the namespace name needs, or
// nil if the host's works there. isHost reports the host's own addresses.
func namespaceResolvConf(name string, host []byte, upstreams [][]byte, isHost func(netip.Addr) bool) ([]byte, error) {
	servers, unreachable, other := parseResolvConf(host, isHost)
	if len(servers) > 0 && len(unreachable) == 0 {
		return nil, nil
	}
	for _, u := range upstreams {
		if len(servers) > 0 {
			break
		}
		servers, _, _ = parseResolvConf(u, isHost)
	}
	if len(servers) == 0 {
		listed := "none"
		if len(unreachable) > 0 {
			listed = strings.Join(unreachable, ", ")
		}
		return nil, fmt.Errorf("%w: the host's %s lists %s, and no upstream list (%s) names another",
			ErrNoResolver, hostResolvConf, listed, strings.Join(upstreamResolvConfs(), ", "))
	}
	if len(servers) > maxNameservers {
		servers = servers[:maxNameservers]
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Written by codehub for the network namespace %s, which cannot\n", name)
	fmt.Fprintf(&b, "# reach the name servers of the host's %s. Removed with it.\n", hostResolvConf)
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	for _, l := range other {
		fmt.Fprintln(&b, l)
	}
	return b.Bytes(), nil
}

// parseResolvConf splits a resolv.conf into the name servers a namespace
// can reach, those it cannot, and the lines to keep (search, options...).
func parseResolvConf(b []byte, isHost func(netip.Addr) bool) (reachable, unreachable, other []string) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";"):
		case f[0] == "nameserver" && len(f) >= 2:
			a, err := netip.ParseAddr(f[1])
			a = a.Unmap()
			if err == nil && a.Is4() && !a.IsLoopback() && !a.IsUnspecified() && !isHost(a) {
				reachable = append(reachable, a.String())
			} else {
				unreachable = append(unreachable, f[1])
			}
		case f[0] == "search" || f[0] == "domain" || f[0] == "options" || f[0] == "sortlist":
			other = append(other, line)
		}
	}
	return reachable, unreachable, other
}

// hostAddrs returns a test for the host's own addresses.
func hostAddrs() func(netip.Addr) bool {
	own := map[netip.Addr]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				own[p.Addr().Unmap()] = true
			}
		}
	}
	return func(a netip.Addr) bool { return own[a] }
}

// removeEtc removes the namespace's files under EtcDir.
func (n *NS) removeEtc() error {
	dir := filepath.Join(EtcDir, n.name)
	var errs []error
	for _, f := range []string{"resolv.conf", ".resolv.conf.tmp"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// Left in place if someone put other files there.
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
