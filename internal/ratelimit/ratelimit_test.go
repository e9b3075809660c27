package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func TestBurstThenRate(t *testing.T) {
	c := newClock()
	l := New(Config{PerMinute: 60, Burst: 3, Now: c.Now})
	for i := 0; i < 3; i++ {
		if d := l.Allow("alice"); !d.Allowed {
			t.Fatalf("request %d of the burst refused: %+v", i, d)
		}
	}
	d := l.Allow("alice")
	if d.Allowed || d.RetryAfter != time.Second || !d.Report {
		t.Fatalf("after the burst: %+v", d)
	}
	// Another key has its own bucket.
	if d := l.Allow("bob"); !d.Allowed {
		t.Fatalf("bob refused: %+v", d)
	}
	// Refused again: not reported again within the minute.
	c.Advance(500 * time.Millisecond)
	if d := l.Allow("alice"); d.Allowed || d.Report || d.RetryAfter != 500*time.Millisecond {
		t.Fatalf("second refusal: %+v", d)
	}
	c.Advance(500 * time.Millisecond)
	if d := l.Allow("alice"); !d.Allowed {
		t.Fatalf("a token after a second: %+v", d)
	}
	if d := l.Allow("alice"); d.Allowed {
		t.Fatalf("only one token came back: %+v", d)
	}
	c.Advance(time.Minute)
	for i := 0; i < 3; i++ {
		l.Allow("alice")
	}
	if d := l.Allow("alice"); d.Allowed || !d.Report {
		t.Fatalf("refused a minute later: reported again? %+v", d)
	}
}

func TestOff(t *testing.T) {
	l := New(Config{})
	for i := 0; i < 1000; i++ {
		if !l.Allow("x").Allowed {
			t.Fatal("a limiter without a rate refused")
		}
	}
	var nilLimiter *Limiter
	if !nilLimiter.Allow("x").Allowed {
		t.Fatal("a nil limiter refused")
	}
}

func TestMemoryBounded(t *testing.T) {
	c := newClock()
	l := New(Config{PerMinute: 600, Burst: 10, MaxKeys: 100, Now: c.Now})
	for i := 0; i < 1000; i++ {
		l.Allow(fmt.Sprint("addr-", i))
		if n := l.Len(); n > 100 {
			t.Fatalf("%d buckets held, max 100", n)
		}
	}
	// Idle buckets refill and are swept.
	c.Advance(2 * time.Minute)
	l.Allow("new")
	if n := l.Len(); n != 1 {
		t.Fatalf("after a sweep: %d buckets", n)
	}

	// A bucket not refilled yet survives the sweep: emptying it and
	// coming back does not buy a new burst.
	slow := New(Config{PerMinute: 1, Burst: 5, Now: c.Now})
	for i := 0; i < 5; i++ {
		slow.Allow("busy")
	}
	c.Advance(time.Minute)
	slow.Allow("other") // sweeps
	if d := slow.Allow("busy"); !d.Allowed {
		t.Fatalf("a token came back in a minute: %+v", d)
	}
	if d := slow.Allow("busy"); d.Allowed {
		t.Fatal("the sweep dropped a bucket in use")
	}
}

func TestConcurrent(t *testing.T) {
	l := New(Config{PerMinute: 60, Burst: 50})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if l.Allow("k").Allowed {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed < 50 || allowed > 52 {
		t.Fatalf("allowed %d of 160 with a burst of 50", allowed)
	}
}
