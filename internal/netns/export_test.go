package netns

import "net/netip"

// ForTest returns an NS for index without creating anything, to test the
// address arithmetic.
func ForTest(index int) *NS { return newNS("test", index) }

// IndexOf exposes indexOf to the tests.
func IndexOf(p netip.Prefix) (int, bool) { return indexOf(p) }

// SetupDNSFrom is SetupDNS reading hostFile as the host's resolv.conf and
// upstreamFiles as the local resolver's upstream lists.
func SetupDNSFrom(n *NS, hostFile string, upstreamFiles ...string) error {
	return n.setupDNS(hostFile, upstreamFiles)
}

// NamespaceResolvConf exposes namespaceResolvConf to the tests.
func NamespaceResolvConf(name string, host []byte, upstreams [][]byte, isHost func(netip.Addr) bool) ([]byte, error) {
	return namespaceResolvConf(name, host, upstreams, isHost)
}

// DefaultUplinkFrom is DefaultUplink reading out as ip's answer.
func DefaultUplinkFrom(out []byte) (string, error) { return defaultUplink(out) }
