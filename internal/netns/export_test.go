package netns

import "net/netip"

// ForTest returns an NS for index without creating anything, to test the
// address arithmetic.
func ForTest(index int) *NS { return newNS("test", index) }

// IndexOf exposes indexOf to the tests.
func IndexOf(p netip.Prefix) (int, bool) { return indexOf(p) }
