package gateway

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/ratelimit"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestAPIRateLimit(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	e := newAdminEnv(t, adminSetup{
		limits: &APILimits{
			User:      ratelimit.New(ratelimit.Config{PerMinute: 60, Burst: 3, Now: clock.Now}),
			Anonymous: ratelimit.New(ratelimit.Config{PerMinute: 30, Burst: 2, Now: clock.Now}),
		},
		// Forwarded addresses count, so that the test can come from two.
		mutate: func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.0/8", "::1"} },
	})
	mark := e.audit.mark()
	for i := 0; i < 3; i++ {
		if st, b, _ := e.call("bob", "GET", "/me", ""); st != http.StatusOK {
			t.Fatalf("request %d of the burst: %d %s", i, st, b)
		}
	}
	st, b, h := e.call("bob", "GET", "/me", "")
	code, msg := errorCode(b)
	if st != http.StatusTooManyRequests || code != "rate_limited" || msg == "" || h.Get("Retry-After") != "1" {
		t.Fatalf("after the burst: %d %s Retry-After %q", st, b, h.Get("Retry-After"))
	}
	// Another user is not affected, nor an anonymous caller.
	if st, _, _ := e.call("watcher", "GET", "/admin/users", ""); st != http.StatusOK {
		t.Fatalf("another user: %d", st)
	}
	// The IDE is not rate-limited.
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest("GET", e.front.URL+"/some/file.js", nil)
		req.Header.Set("Authorization", "Bearer "+e.tokens["bob"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			t.Fatal("an IDE request was rate-limited")
		}
	}
	// Refused again: recorded once a minute, not per refusal.
	e.call("bob", "GET", "/me", "")
	var exceeded []audit.Event
	for _, ev := range e.audit.since(mark) {
		if ev.EventType == audit.QuotaExceeded {
			exceeded = append(exceeded, ev)
		}
	}
	if len(exceeded) != 1 || exceeded[0].UserID != e.plain.ID || exceeded[0].Metadata["resource"] != "api_requests" ||
		exceeded[0].Status != audit.StatusFailure {
		t.Fatalf("quota_exceeded events = %+v", exceeded)
	}
	// A second later one token is back.
	clock.Advance(time.Second)
	if st, _, _ := e.call("bob", "GET", "/me", ""); st != http.StatusOK {
		t.Fatalf("a second later: %d", st)
	}

	// Anonymous callers, per address.
	from := func(addr string) (int, http.Header) {
		st, _, h := e.call("", "POST", "/auth/refresh", `{"refresh_token":"x"}`, "X-Forwarded-For", addr)
		return st, h
	}
	for i := 0; i < 2; i++ {
		if st, _ := from("203.0.113.7"); st != http.StatusUnauthorized {
			t.Fatalf("anonymous request %d: %d", i, st)
		}
	}
	st, h = from("203.0.113.7")
	if st != http.StatusTooManyRequests || h.Get("Retry-After") != "2" {
		t.Fatalf("anonymous after the burst: %d Retry-After %q", st, h.Get("Retry-After"))
	}
	if st, _ := from("203.0.113.8"); st != http.StatusUnauthorized {
		t.Fatalf("another address: %d", st)
	}
	// IPv6 addresses of one /64 share a bucket.
	from("2001:db8:1:2::1")
	from("2001:db8:1:2::2")
	if st, _ := from("2001:db8:1:2::3"); st != http.StatusTooManyRequests {
		t.Fatalf("a third address of one /64: %d", st)
	}
	// A signed-in user is counted as themselves, not as their address.
	if st, _, _ := e.call("watcher", "GET", "/me", "", "X-Forwarded-For", "203.0.113.7"); st != http.StatusOK {
		t.Fatalf("a user from a limited address: %d", st)
	}
	if v := testutil.ToFloat64(e.metrics.APIRateLimited.WithLabelValues("user")); v != 2 {
		t.Errorf("rate-limited user requests = %v", v)
	}
	if v := testutil.ToFloat64(e.metrics.APIRateLimited.WithLabelValues("anonymous")); v != 2 {
		t.Errorf("rate-limited anonymous requests = %v", v)
	}
	// A minute on, the refusal is recorded again.
	clock.Advance(time.Minute)
	for i := 0; i < 4; i++ {
		e.call("bob", "GET", "/me", "")
	}
	n := 0
	for _, ev := range e.audit.since(mark) {
		if ev.EventType == audit.QuotaExceeded && ev.UserID == e.plain.ID {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("bob's quota_exceeded events after a minute: %d", n)
	}
}
