// Package ratelimit limits request rates with token buckets, one per key
// (a user, a client address): a burst at once, then a steady rate. Memory
// stays bounded: buckets that have refilled hold no information and are
// swept, and the number of buckets is capped.
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// Config sets every bucket of a Limiter.
type Config struct {
	// PerMinute tokens are added to each bucket every minute; 0 turns the
	// limiter off (everything is allowed).
	PerMinute int
	// Burst is a bucket's size: requests allowed at once (default
	// PerMinute/6, at least 1).
	Burst int
	// MaxKeys bounds the buckets kept (default 100000). When every bucket
	// is in use and a new key comes, all are dropped: a short lapse of the
	// limit rather than unbounded memory.
	MaxKeys int
	// ReportEvery is how often Allow sets Report for a key that keeps
	// being refused (default 1m).
	ReportEvery time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

type bucket struct {
	tokens   float64
	last     time.Time
	reported time.Time
}

// Limiter is safe for concurrent use.
type Limiter struct {
	cfg   Config
	every time.Duration // one token per every

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

// New returns a Limiter; buckets start full.
func New(cfg Config) *Limiter {
	if cfg.Burst <= 0 {
		cfg.Burst = max(1, cfg.PerMinute/6)
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100000
	}
	if cfg.ReportEvery <= 0 {
		cfg.ReportEvery = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	l := &Limiter{cfg: cfg, buckets: map[string]*bucket{}, lastSweep: cfg.Now()}
	if cfg.PerMinute > 0 {
		l.every = time.Minute / time.Duration(cfg.PerMinute)
	}
	return l
}

// Decision is the answer to one request.
type Decision struct {
	// Allowed is false when the key's bucket is empty.
	Allowed bool
	// RetryAfter is how long until a token is there (refused requests).
	RetryAfter time.Duration
	// Report is set on the first refusal of a key, then at most once per
	// ReportEvery: when to record the refusal somewhere lasting.
	Report bool
}

// Allow takes a token from key's bucket.
func (l *Limiter) Allow(key string) Decision {
	if l == nil || l.every == 0 {
		return Decision{Allowed: true}
	}
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucketLocked(key, now)
	b.refill(now, l.cfg.Burst, l.every)
	if b.tokens >= 1 {
		b.tokens--
		return Decision{Allowed: true}
	}
	d := Decision{RetryAfter: time.Duration(math.Ceil((1 - b.tokens) * float64(l.every)))}
	if b.reported.IsZero() || now.Sub(b.reported) >= l.cfg.ReportEvery {
		b.reported, d.Report = now, true
	}
	return d
}

// PerMinute returns the steady rate (0: off).
func (l *Limiter) PerMinute() int {
	if l == nil {
		return 0
	}
	return l.cfg.PerMinute
}

// Len returns the number of buckets held.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

func (b *bucket) refill(now time.Time, burst int, every time.Duration) {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(float64(burst), b.tokens+float64(elapsed)/float64(every))
		b.last = now
	}
}

func (l *Limiter) bucketLocked(key string, now time.Time) *bucket {
	if b, ok := l.buckets[key]; ok {
		return b
	}
	if len(l.buckets) >= l.cfg.MaxKeys || now.Sub(l.lastSweep) >= time.Minute {
		l.sweepLocked(now)
	}
	if len(l.buckets) >= l.cfg.MaxKeys {
		clear(l.buckets)
	}
	b := &bucket{tokens: float64(l.cfg.Burst), last: now}
	l.buckets[key] = b
	return b
}

// sweepLocked drops the buckets that have refilled (and whose refusal
// report, if any, is old): a new full bucket would behave the same.
func (l *Limiter) sweepLocked(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		full := b.tokens+float64(now.Sub(b.last))/float64(l.every) >= float64(l.cfg.Burst)
		if full && now.Sub(b.reported) >= l.cfg.ReportEvery {
			delete(l.buckets, k)
		}
	}
}
