package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/session/redis"
	"github.com/codehub-dev/codehub/internal/session/storetest"
	"github.com/codehub-dev/codehub/internal/testenv"
)

// guard bounds waits that only a hang would exceed.
const guard = 30 * time.Second

// client connects to the Redis at CODEHUB_TEST_REDIS (host:port or a
// redis:// URL), or skips t (fails under CODEHUB_E2E=require).
func client(t *testing.T) goredis.UniversalClient {
	t.Helper()
	testenv.SkipShort(t)
	addr := os.Getenv("CODEHUB_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	opts := &goredis.Options{Addr: addr}
	if strings.Contains(addr, "://") {
		var err error
		if opts, err = goredis.ParseURL(addr); err != nil {
			t.Fatalf("CODEHUB_TEST_REDIS: %v", err)
		}
	}
	c := goredis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		testenv.Need(t, "Redis at "+addr+" (CODEHUB_TEST_REDIS): "+err.Error())
	}
	return c
}

// prefix returns a fresh key prefix whose keys are deleted when t ends.
// The server may be shared, so nothing else is touched (no FLUSHDB).
func prefix(t *testing.T, c goredis.UniversalClient) string {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	p := "codehub-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ks, err := scan(c, p)
		if err == nil && len(ks) > 0 {
			err = c.Del(context.Background(), ks...).Err()
		}
		if err != nil {
			t.Logf("cleanup of %s*: %v", p, err)
		}
	})
	return p
}

func TestContract(t *testing.T) {
	c := client(t)
	storetest.Run(t, func(t *testing.T, clock *storetest.Clock) session.Store {
		return redis.New(redis.Config{Client: c, Prefix: prefix(t, c), Now: clock.Now}, testenv.Logger(t))
	})
}

func newSession(t *testing.T, user string, now time.Time, ttl time.Duration) *session.Session {
	t.Helper()
	_, id, err := session.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	return &session.Session{ID: id, UserID: user, CreatedAt: now, ExpiresAt: now.Add(ttl), LastActivity: now}
}

// scan returns the keys under p (SCAN, not KEYS: the server may be shared).
func scan(c goredis.UniversalClient, p string) ([]string, error) {
	ctx := context.Background()
	var ks []string
	iter := c.Scan(ctx, 0, p+"*", 100).Iterator()
	for iter.Next(ctx) {
		ks = append(ks, iter.Val())
	}
	return ks, iter.Err()
}

// keys returns the keys under p.
func keys(t *testing.T, c goredis.UniversalClient, p string) []string {
	t.Helper()
	ks, err := scan(c, p)
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// TestRedisExpiresKeys checks that Redis itself removes what the store
// wrote, so nothing piles up when DeleteExpired never runs.
func TestRedisExpiresKeys(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	p := prefix(t, c)
	st := redis.New(redis.Config{Client: c, Prefix: p}, testenv.Logger(t))

	long := newSession(t, "alice", time.Now(), time.Hour)
	if err := st.Set(ctx, long); err != nil {
		t.Fatal(err)
	}
	ks := keys(t, c, p)
	if len(ks) != 3 {
		t.Fatalf("keys after one Set: %v, want the session and two indexes", ks)
	}
	for _, k := range ks {
		ttl, err := c.TTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 || ttl > time.Hour {
			t.Errorf("TTL %s = %v, want in (0, 1h]", k, ttl)
		}
	}

	// A second, shorter session must not shorten the indexes' lives.
	short := newSession(t, "alice", time.Now(), time.Minute)
	if err := st.Set(ctx, short); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys(t, c, p) {
		ttl, _ := c.TTL(ctx, k).Result()
		if !strings.Contains(k, short.ID) && ttl <= time.Minute {
			t.Errorf("TTL %s = %v after adding a shorter session, want about an hour", k, ttl)
		}
	}

	// And Redis really drops them: a session about to expire, on a prefix
	// of its own.
	p2 := prefix(t, c)
	st2 := redis.New(redis.Config{Client: c, Prefix: p2}, testenv.Logger(t))
	if err := st2.Set(ctx, newSession(t, "bob", time.Now(), 200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(guard)
	for len(keys(t, c, p2)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Redis has not expired %v", keys(t, c, p2))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTwoGateways checks that two Stores on the same prefix (two gateways,
// each with its own connection) see one set of sessions, and that Updates
// from both are serialized.
func TestTwoGateways(t *testing.T) {
	ctx := context.Background()
	c1, c2 := client(t), client(t)
	p := prefix(t, c1)
	g1 := redis.New(redis.Config{Client: c1, Prefix: p}, testenv.Logger(t))
	g2 := redis.New(redis.Config{Client: c2, Prefix: p}, testenv.Logger(t))

	s := newSession(t, "alice", time.Now(), time.Hour)
	if err := g1.Set(ctx, s); err != nil {
		t.Fatal(err)
	}
	got, err := g2.Get(ctx, s.ID)
	if err != nil {
		t.Fatalf("gateway 2 does not see gateway 1's session: %v", err)
	}
	if got.UserID != "alice" {
		t.Fatalf("gateway 2 read %+v", got)
	}
	if ss, _ := g2.UserSessions(ctx, "alice"); len(ss) != 1 {
		t.Fatalf("gateway 2 UserSessions = %d sessions", len(ss))
	}

	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		for _, g := range []*redis.Store{g1, g2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := g.Update(ctx, s.ID, func(x *session.Session) error {
					x.RefreshGen++
					return nil
				}); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got, _ := g1.Get(ctx, s.ID); got.RefreshGen != 2*n {
		t.Fatalf("RefreshGen = %d after %d updates from two gateways", got.RefreshGen, 2*n)
	}

	if err := g2.Delete(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := g1.Get(ctx, s.ID); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("gateway 1 still sees the session gateway 2 deleted: %v", err)
	}
}

// TestSetMovesSessionToNewOwner checks that re-storing a session under
// another user takes it out of the first user's index.
func TestSetMovesSessionToNewOwner(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	st := redis.New(redis.Config{Client: c, Prefix: prefix(t, c)}, testenv.Logger(t))
	s := newSession(t, "alice", time.Now(), time.Hour)
	if err := st.Set(ctx, s); err != nil {
		t.Fatal(err)
	}
	s.UserID = "bob"
	if err := st.Set(ctx, s); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.UserCount(ctx, "alice"); n != 0 {
		t.Fatalf("UserCount(alice) = %d after the session moved to bob", n)
	}
	if n, _ := st.UserCount(ctx, "bob"); n != 1 {
		t.Fatalf("UserCount(bob) = %d", n)
	}
	if gone, _ := st.DeleteUserSessions(ctx, "alice"); len(gone) != 0 {
		t.Fatalf("DeleteUserSessions(alice) removed bob's session")
	}
	if _, err := st.Get(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
}

// TestPrunesEntriesOfVanishedKeys checks that a session key that vanished
// without the store (Redis expired or evicted it) leaves no trace in reads.
func TestPrunesEntriesOfVanishedKeys(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	p := prefix(t, c)
	st := redis.New(redis.Config{Client: c, Prefix: p}, testenv.Logger(t))
	keep, lost := newSession(t, "alice", time.Now(), time.Hour), newSession(t, "alice", time.Now(), time.Hour)
	for _, s := range []*session.Session{keep, lost} {
		if err := st.Set(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	var lostKey string
	for _, k := range keys(t, c, p) {
		if strings.HasSuffix(k, lost.ID) {
			lostKey = k
		}
	}
	if lostKey == "" {
		t.Fatalf("no key for session %s among %v", lost.ID, keys(t, c, p))
	}
	if err := c.Del(ctx, lostKey).Err(); err != nil {
		t.Fatal(err)
	}
	if ss, _ := st.UserSessions(ctx, "alice"); len(ss) != 1 || ss[0].ID != keep.ID {
		t.Fatalf("UserSessions = %d sessions, want only the kept one", len(ss))
	}
	if all, _ := st.AllActive(ctx); len(all) != 1 {
		t.Fatalf("AllActive = %d sessions", len(all))
	}
	if n, _ := st.Count(ctx); n != 1 {
		t.Fatalf("Count after AllActive pruned = %d", n)
	}
}

// TestBoundedRetries checks that Update gives up after MaxAttempts lost
// races with an error, and that no successful Update is lost.
func TestBoundedRetries(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	st := redis.New(redis.Config{Client: c, Prefix: prefix(t, c), MaxAttempts: 1}, testenv.Logger(t))
	s := newSession(t, "alice", time.Now(), time.Hour)
	if err := st.Set(ctx, s); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	results := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.Update(ctx, s.ID, func(x *session.Session) error {
				x.RefreshGen++
				return nil
			})
			results <- err
		}()
	}
	wg.Wait()
	close(results)
	ok := 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, goredis.TxFailedErr):
			t.Fatalf("Update: %v, want nil or a wrapped TxFailedErr", err)
		}
	}
	if got, _ := st.Get(ctx, s.ID); got.RefreshGen != ok {
		t.Fatalf("RefreshGen = %d, but %d Updates succeeded", got.RefreshGen, ok)
	}
}
