// Package throttle limits failed login attempts with token buckets: one per
// client address and one shared by all, so that neither a single address nor
// many addresses together can guess passwords quickly. Only failures cost a
// token: a person who types the right password is never slowed down.
//
// The shared bucket slows attackers without refusing everyone: when it is
// empty, an address that has not failed lately (its own bucket is full)
// still gets its attempt, so an attack from elsewhere never keeps the
// real user out; an address that has failed waits.
package throttle

import (
	"net/netip"
	"sync"
	"time"
)

// Config sets the two buckets.
type Config struct {
	PerAddressBurst    int
	PerAddressInterval time.Duration
	GlobalBurst        int
	GlobalInterval     time.Duration
	// MaxAddresses bounds the memory held for per-address buckets; full
	// (idle) buckets are dropped first. Default 100000.
	MaxAddresses int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// bucket is a token bucket that can also take a token back, which
// golang.org/x/time/rate cannot do once the reservation's time has passed
// (a password check takes a while): an attempt holds its token while the
// password is checked and returns it if the password was right.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) refill(now time.Time, burst int, every time.Duration) {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(float64(burst), b.tokens+float64(elapsed)/float64(every))
	}
	b.last = now
}

// take removes a token, or says how long until one is there.
func (b *bucket) take(now time.Time, burst int, every time.Duration) time.Duration {
	b.refill(now, burst, every)
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(every))
}

func (b *bucket) give(now time.Time, burst int, every time.Duration) {
	b.refill(now, burst, every)
	b.tokens = min(float64(burst), b.tokens+1)
}

// Limiter is safe for concurrent use.
type Limiter struct {
	cfg Config

	mu        sync.Mutex
	global    bucket
	perAddr   map[netip.Prefix]*bucket
	lastSweep time.Time
}

// New returns a Limiter for cfg, with full buckets.
func New(cfg Config) *Limiter {
	if cfg.MaxAddresses <= 0 {
		cfg.MaxAddresses = 100000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limiter{
		cfg:     cfg,
		global:  bucket{tokens: float64(cfg.GlobalBurst), last: cfg.Now()},
		perAddr: map[netip.Prefix]*bucket{},
	}
}

// Attempt is one login attempt holding a token of its address's bucket,
// and of the global bucket when it had one. A nil Attempt (an attempt
// the throttle does not apply to) does nothing.
type Attempt struct {
	l      *Limiter
	key    netip.Prefix
	global bool // took a global token
}

// Succeeded returns the tokens: a correct password costs nothing.
func (a *Attempt) Succeeded() {
	if a == nil {
		return
	}
	l := a.l
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.global {
		l.global.give(now, l.cfg.GlobalBurst, l.cfg.GlobalInterval)
	}
	if b, ok := l.perAddr[a.key]; ok {
		b.give(now, l.cfg.PerAddressBurst, l.cfg.PerAddressInterval)
	}
}

// Failed keeps the tokens spent.
func (a *Attempt) Failed() {}

// Begin takes a token from the address's bucket and from the global one.
// When the address's bucket is empty it takes none and returns nil and
// how long to wait before trying again. When only the global bucket is
// empty, an address whose own bucket is full (no failure lately) goes on
// all the same: the global bucket slows addresses that fail, and never
// refuses the first attempt of one that has not.
func (l *Limiter) Begin(addr netip.Addr) (*Attempt, time.Duration) {
	now := l.cfg.Now()
	key := addrKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketLocked(key, now)
	b.refill(now, l.cfg.PerAddressBurst, l.cfg.PerAddressInterval)
	clean := b.tokens >= float64(l.cfg.PerAddressBurst)
	wait := b.take(now, l.cfg.PerAddressBurst, l.cfg.PerAddressInterval)
	if wait > 0 {
		return nil, roundUp(wait)
	}
	gw := l.global.take(now, l.cfg.GlobalBurst, l.cfg.GlobalInterval)
	if gw > 0 && !clean {
		b.give(now, l.cfg.PerAddressBurst, l.cfg.PerAddressInterval)
		return nil, roundUp(gw)
	}
	return &Attempt{l: l, key: key, global: gw == 0}, 0
}

func roundUp(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

// addrKey groups IPv6 addresses by /64, the block one host usually holds.
func addrKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

func (l *Limiter) bucketLocked(k netip.Prefix, now time.Time) *bucket {
	if b, ok := l.perAddr[k]; ok {
		return b
	}
	if len(l.perAddr) >= l.cfg.MaxAddresses || now.Sub(l.lastSweep) > time.Minute {
		l.sweepLocked(now)
	}
	b := &bucket{tokens: float64(l.cfg.PerAddressBurst), last: now}
	l.perAddr[k] = b
	return b
}

// sweepLocked drops buckets that have refilled: they hold no information.
// If every bucket is in use, the map may exceed MaxAddresses briefly rather
// than forgive an attacker.
func (l *Limiter) sweepLocked(now time.Time) {
	l.lastSweep = now
	for k, b := range l.perAddr {
		b.refill(now, l.cfg.PerAddressBurst, l.cfg.PerAddressInterval)
		if b.tokens >= float64(l.cfg.PerAddressBurst) {
			delete(l.perAddr, k)
		}
	}
}

// Tracked reports how many addresses have a partly spent bucket.
func (l *Limiter) Tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.perAddr)
}
