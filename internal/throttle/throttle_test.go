package throttle

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newLimiter(clock *fakeClock) *Limiter {
	return New(Config{
		PerAddressBurst: 3, PerAddressInterval: time.Minute,
		GlobalBurst: 5, GlobalInterval: 10 * time.Second,
		Now: clock.Now,
	})
}

var (
	alice = netip.MustParseAddr("192.0.2.1")
	bob   = netip.MustParseAddr("192.0.2.2")
)

func fail(t *testing.T, l *Limiter, a netip.Addr) {
	t.Helper()
	at, wait := l.Begin(a)
	if at == nil {
		t.Fatalf("attempt from %s refused (wait %v), want allowed", a, wait)
	}
	at.Failed()
}

func refused(t *testing.T, l *Limiter, a netip.Addr) time.Duration {
	t.Helper()
	at, wait := l.Begin(a)
	if at != nil {
		t.Fatalf("attempt from %s allowed, want refused", a)
	}
	if wait <= 0 {
		t.Fatalf("refusal without a wait")
	}
	return wait
}

func TestPerAddress(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l := newLimiter(clock)
	for i := 0; i < 3; i++ {
		fail(t, l, alice)
	}
	wait := refused(t, l, alice)
	if wait < 59*time.Second || wait > 62*time.Second {
		t.Fatalf("wait = %v, want about a minute", wait)
	}
	// Another address is not affected.
	fail(t, l, bob)
	clock.Advance(time.Minute)
	fail(t, l, alice) // one token came back
	refused(t, l, alice)
}

func TestGlobal(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l := newLimiter(clock)
	// Five different addresses exhaust the global bucket...
	for i := 1; i <= 5; i++ {
		fail(t, l, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	// ...so an address that has failed must wait, however few tokens it
	// spent of its own bucket.
	refused(t, l, netip.AddrFrom4([4]byte{198, 51, 100, 1}))
	clock.Advance(10 * time.Second)
	fail(t, l, netip.AddrFrom4([4]byte{198, 51, 100, 1}))
}

// An attack that empties the global bucket must not refuse the real user:
// an address that has not failed lately gets its attempt, and a right
// password gives its token back, so it can sign in again and again.
func TestGlobalEmptyStillLetsCleanAddresses(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l := newLimiter(clock)
	for i := 1; i <= 5; i++ {
		fail(t, l, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	refused(t, l, netip.AddrFrom4([4]byte{198, 51, 100, 2}))
	user := netip.MustParseAddr("203.0.113.9")
	for i := range 10 {
		at, wait := l.Begin(user)
		if at == nil {
			t.Fatalf("sign-in %d from a clean address refused (wait %v) while the global bucket is empty", i, wait)
		}
		clock.Advance(100 * time.Millisecond)
		at.Succeeded()
	}
	// The giving back did not refill the global bucket for the attackers.
	refused(t, l, netip.AddrFrom4([4]byte{198, 51, 100, 3}))
	// A clean address that fails while the global bucket is empty has
	// had its one try: it waits like the others.
	mallory := netip.MustParseAddr("203.0.113.66")
	fail(t, l, mallory)
	refused(t, l, mallory)
}

func TestSuccessCostsNothing(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l := newLimiter(clock)
	for i := 0; i < 20; i++ {
		at, _ := l.Begin(alice)
		if at == nil {
			t.Fatalf("successful login %d was throttled", i)
		}
		// Checking a password takes a while: the refund must still work.
		clock.Advance(300 * time.Millisecond)
		at.Succeeded()
	}
	for i := 0; i < 3; i++ {
		fail(t, l, alice)
	}
}

func TestIPv6GroupedBy64(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l := New(Config{PerAddressBurst: 3, PerAddressInterval: time.Minute, GlobalBurst: 100, GlobalInterval: time.Second, Now: clock.Now})
	for i := 1; i <= 3; i++ {
		fail(t, l, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}))
	}
	// Same /64, new address: still throttled.
	refused(t, l, netip.MustParseAddr("2001:db8::ffff:1"))
	// IPv4-mapped and plain IPv4 are one address.
	for i := 0; i < 3; i++ {
		fail(t, l, netip.MustParseAddr("::ffff:192.0.2.77"))
	}
	refused(t, l, netip.MustParseAddr("192.0.2.77"))
}

func TestConcurrentFailuresNeverExceedBurst(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l := New(Config{PerAddressBurst: 10, PerAddressInterval: time.Hour, GlobalBurst: 1000, GlobalInterval: time.Second, Now: clock.Now})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if at, _ := l.Begin(alice); at != nil {
				at.Failed()
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if allowed != 10 {
		t.Fatalf("%d concurrent attempts allowed, want exactly the burst of 10", allowed)
	}
}

func TestSweepForgetsRefilledAddresses(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	l := New(Config{PerAddressBurst: 2, PerAddressInterval: time.Second, GlobalBurst: 1 << 20, GlobalInterval: time.Millisecond,
		MaxAddresses: 100, Now: clock.Now})
	for i := 0; i < 100; i++ {
		fail(t, l, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
	}
	clock.Advance(time.Hour)
	fail(t, l, netip.MustParseAddr("10.1.0.1"))
	if n := l.Tracked(); n != 1 {
		t.Fatalf("tracked %d addresses after refill, want 1", n)
	}
}
