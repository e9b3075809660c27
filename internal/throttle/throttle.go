// Package throttle limits failed login attempts with token buckets: one per
// client address and one shared by all, so that neither a single address nor
// many addresses together can guess passwords quickly. Only failures cost a
// token: a person who types the right password is never slowed down.
package throttle

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
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

// Limiter is safe for concurrent use.
type Limiter struct {
	cfg    Config
	global *rate.Limiter

	mu        sync.Mutex
	perAddr   map[netip.Prefix]*rate.Limiter
	lastSweep time.Time
}

// New returns a Limiter for cfg.
func New(cfg Config) *Limiter {
	if cfg.MaxAddresses <= 0 {
		cfg.MaxAddresses = 100000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limiter{
		cfg:     cfg,
		global:  rate.NewLimiter(rate.Every(cfg.GlobalInterval), cfg.GlobalBurst),
		perAddr: map[netip.Prefix]*rate.Limiter{},
	}
}

// Attempt is one login attempt holding a token of each bucket.
type Attempt struct {
	l          *Limiter
	addr, glob *rate.Reservation
}

// Succeeded returns the tokens: a correct password costs nothing.
func (a *Attempt) Succeeded() {
	now := a.l.cfg.Now()
	a.addr.CancelAt(now)
	a.glob.CancelAt(now)
}

// Failed keeps the tokens spent.
func (a *Attempt) Failed() {}

// Begin takes a token from the address's bucket and the global one. When
// either is empty it returns nil and how long to wait before trying again.
func (l *Limiter) Begin(addr netip.Addr) (*Attempt, time.Duration) {
	now := l.cfg.Now()
	l.mu.Lock()
	lim := l.bucketLocked(addrKey(addr), now)
	ra := lim.ReserveN(now, 1)
	rg := l.global.ReserveN(now, 1)
	l.mu.Unlock()
	wait := max(ra.DelayFrom(now), rg.DelayFrom(now))
	if wait > 0 {
		ra.CancelAt(now)
		rg.CancelAt(now)
		return nil, wait.Round(time.Second) + time.Second
	}
	return &Attempt{l: l, addr: ra, glob: rg}, 0
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

func (l *Limiter) bucketLocked(k netip.Prefix, now time.Time) *rate.Limiter {
	if lim, ok := l.perAddr[k]; ok {
		return lim
	}
	if len(l.perAddr) >= l.cfg.MaxAddresses || now.Sub(l.lastSweep) > time.Minute {
		l.sweepLocked(now)
	}
	lim := rate.NewLimiter(rate.Every(l.cfg.PerAddressInterval), l.cfg.PerAddressBurst)
	l.perAddr[k] = lim
	return lim
}

// sweepLocked drops buckets that have refilled: they hold no information.
// If every bucket is in use, the map may exceed MaxAddresses briefly rather
// than forgive an attacker.
func (l *Limiter) sweepLocked(now time.Time) {
	l.lastSweep = now
	for k, lim := range l.perAddr {
		if lim.TokensAt(now) >= float64(l.cfg.PerAddressBurst) {
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
