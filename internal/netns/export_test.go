package netns

import (
	"context"
	"net/netip"

	"github.com/codehub-dev/codehub/internal/filelock"
)

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

// Forwarding points the forwarding switch and its record at files of a
// test's, and NAT left at left, until the test ends.
func Forwarding(t interface{ Cleanup(func()) }, sw, record string, left func() bool) {
	oldSw, oldRec, oldLeft := forwardingSwitch, forwardingRecord, natLeft
	forwardingSwitch, forwardingRecord = sw, record
	natLeft = func(context.Context) bool { return left() }
	t.Cleanup(func() { forwardingSwitch, forwardingRecord, natLeft = oldSw, oldRec, oldLeft })
}

// EnableForwarding is enableForwarding, under its lock as EnableNAT takes it.
func EnableForwarding() error {
	return filelock.With(context.Background(), forwardingLock(), enableForwarding)
}
