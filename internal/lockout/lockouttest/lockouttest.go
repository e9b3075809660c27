// Package lockouttest is the contract every lockout.Store must meet. Each
// backend's tests call Run with a constructor, so backends cannot drift
// apart. Times are fixed, UTC and whole microseconds (the precision of the
// SQL backends): the store takes "now" as an argument.
package lockouttest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/lockout"
)

// t0 is when the suite's failures start.
var t0 = time.Date(2030, time.March, 14, 15, 9, 26, 535897000, time.UTC)

// policy is what the suite records failures with.
var policy = lockout.Policy{
	MaxFailures: 3, BaseLock: time.Minute, MaxLock: 4 * time.Minute, ResetAfter: 24 * time.Hour,
	NameClients: 4, NameWindow: time.Hour, NameLock: 2 * time.Minute,
}

// Run runs the contract against stores made by open, one per subtest.
func Run(t *testing.T, open func(t *testing.T) lockout.Store) {
	ctx := context.Background()
	fail := func(t *testing.T, st lockout.Store, name, client string, at time.Time) lockout.Outcome {
		t.Helper()
		out, err := st.RecordFailure(ctx, name, client, at, policy)
		if err != nil {
			t.Fatalf("RecordFailure(%s, %s): %v", name, client, err)
		}
		return out
	}

	t.Run("SecretMadeOnce", func(t *testing.T) {
		st := open(t)
		calls := 0
		gen := func() ([]byte, error) {
			calls++
			return []byte(fmt.Sprintf("key number %d: 32 bytes long....", calls)), nil
		}
		a, err := st.Secret(ctx, gen)
		if err != nil {
			t.Fatal(err)
		}
		b, err := st.Secret(ctx, gen)
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) || calls != 1 || len(a) != len("key number 1: 32 bytes long....") {
			t.Fatalf("Secret = %q then %q after %d generations; want one key, made once", a, b, calls)
		}
	})

	t.Run("EmptyGet", func(t *testing.T) {
		st := open(t)
		c, n, err := st.Get(ctx, "k", "192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		if c != (lockout.Entry{NameKey: "k", Client: "192.0.2.1"}) || n != (lockout.Entry{NameKey: "k", Client: lockout.AllClients}) {
			t.Fatalf("Get on an empty store = %+v, %+v", c, n)
		}
	})

	t.Run("ClientLocksGrow", func(t *testing.T) {
		st := open(t)
		now := t0
		for _, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 4 * time.Minute} {
			for i := 1; i < policy.MaxFailures; i++ {
				out := fail(t, st, "k", "192.0.2.1", now)
				if out.ClientLocking || out.Client.Locked(now) || out.Client.Failures != i {
					t.Fatalf("failure %d: %+v; want counted, not locked", i, out)
				}
			}
			out := fail(t, st, "k", "192.0.2.1", now)
			if !out.ClientLocking || !out.Client.LockedUntil.Equal(now.Add(want)) || out.Client.Failures != 0 {
				t.Fatalf("locking failure: %+v; want locked until %v", out.Client, now.Add(want))
			}
			c, _, err := st.Get(ctx, "k", "192.0.2.1")
			if err != nil || !c.LockedUntil.Equal(now.Add(want)) {
				t.Fatalf("Get = %+v, %v; want locked until %v", c, err, now.Add(want))
			}
			// Failures while locked neither count nor extend.
			if out := fail(t, st, "k", "192.0.2.1", now.Add(time.Second)); out.ClientLocking || !out.Client.LockedUntil.Equal(now.Add(want)) {
				t.Fatalf("failure while locked: %+v", out)
			}
			// Another client of the same name is untouched.
			if c, _, _ := st.Get(ctx, "k", "198.51.100.1"); c.Failures != 0 || !c.LockedUntil.IsZero() {
				t.Fatalf("another client: %+v", c)
			}
			now = now.Add(want)
		}
	})

	t.Run("ForgetAndReset", func(t *testing.T) {
		st := open(t)
		fail(t, st, "k", "192.0.2.1", t0)
		fail(t, st, "k", "192.0.2.1", t0)
		if err := st.Forget(ctx, "k", "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		if out := fail(t, st, "k", "192.0.2.1", t0); out.Client.Failures != 1 {
			t.Fatalf("after Forget: %+v; want counting from 1", out.Client)
		}
		// A day later without failures, the count and lock history start over.
		fail(t, st, "k", "192.0.2.1", t0)
		fail(t, st, "k", "192.0.2.1", t0) // locks: 1 lock in a row
		later := t0.Add(25 * time.Hour)
		if out := fail(t, st, "k", "192.0.2.1", later); out.Client.Failures != 1 || out.Client.LockCount != 0 {
			t.Fatalf("after a quiet day: %+v; want a fresh count", out.Client)
		}
	})

	t.Run("NameLockOnManyClients", func(t *testing.T) {
		st := open(t)
		// An old failure and trusted browsers do not count.
		fail(t, st, "k", "203.0.113.9", t0.Add(-2*time.Hour))
		fail(t, st, "k", "device:abc", t0)
		fail(t, st, "k", "device:def", t0)
		for i := 1; i < policy.NameClients; i++ {
			out := fail(t, st, "k", fmt.Sprintf("192.0.2.%d", i), t0)
			if out.NameLocking || out.Name.Locked(t0) {
				t.Fatalf("client %d: name locked too early: %+v", i, out.Name)
			}
		}
		out := fail(t, st, "k", "192.0.2.200", t0)
		if !out.NameLocking || !out.Name.LockedUntil.Equal(t0.Add(policy.NameLock)) {
			t.Fatalf("client %d: %+v; want the name locked for %v", policy.NameClients, out, policy.NameLock)
		}
		// Other names are not.
		if _, n, _ := st.Get(ctx, "other", "192.0.2.1"); n.Locked(t0) {
			t.Fatalf("other name locked: %+v", n)
		}
		_, n, err := st.Get(ctx, "k", "198.51.100.7")
		if err != nil || !n.LockedUntil.Equal(t0.Add(policy.NameLock)) {
			t.Fatalf("Get name = %+v, %v", n, err)
		}
		// While locked, failures do not relock; after, the signal locks
		// again for twice as long.
		if out := fail(t, st, "k", "192.0.2.201", t0.Add(time.Minute)); out.NameLocking {
			t.Fatalf("relocked while locked: %+v", out)
		}
		after := t0.Add(policy.NameLock)
		if out := fail(t, st, "k", "192.0.2.202", after); !out.NameLocking || !out.Name.LockedUntil.Equal(after.Add(2*policy.NameLock)) {
			t.Fatalf("after the lock: %+v; want locked again for %v", out.Name, 2*policy.NameLock)
		}
	})

	t.Run("ListClearPrune", func(t *testing.T) {
		st := open(t)
		for i := range policy.MaxFailures {
			fail(t, st, "a", "192.0.2.1", t0.Add(time.Duration(i)*time.Second))
		}
		fail(t, st, "a", "192.0.2.2", t0)
		fail(t, st, "b", "192.0.2.1", t0)
		fail(t, st, "c", "192.0.2.1", t0)
		es, err := st.List(ctx, []string{"a", "b"})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range es {
			got = append(got, e.NameKey+" "+e.Client)
		}
		want := fmt.Sprint([]string{"a *", "a 192.0.2.1", "a 192.0.2.2", "b *", "b 192.0.2.1"})
		if fmt.Sprint(got) != want {
			t.Fatalf("List = %v; want %v", got, want)
		}
		if es[1].Failures != 0 || !es[1].Locked(t0) || es[2].Failures != 1 {
			t.Fatalf("List entries: %+v", es)
		}
		if n, err := st.Clear(ctx, []string{"a"}, "192.0.2.1"); err != nil || n != 1 {
			t.Fatalf("Clear one client = %d, %v; want 1", n, err)
		}
		if c, _, _ := st.Get(ctx, "a", "192.0.2.1"); c.Locked(t0) {
			t.Fatal("cleared client still locked")
		}
		if n, err := st.Clear(ctx, []string{"a", "b"}, ""); err != nil || n != 4 {
			t.Fatalf("Clear all = %d, %v; want 4", n, err)
		}
		if es, _ := st.List(ctx, []string{"a", "b"}); len(es) != 0 {
			t.Fatalf("after Clear: %+v", es)
		}
		// Prune keeps running locks and recent failures.
		for range policy.MaxFailures {
			fail(t, st, "d", "192.0.2.1", t0)
		}
		n, err := st.Prune(ctx, t0.Add(30*time.Second), t0.Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		// c's two entries go; d's client is locked (kept), d's name entry goes.
		if n != 3 {
			t.Fatalf("Prune removed %d; want 3", n)
		}
		if c, _, _ := st.Get(ctx, "d", "192.0.2.1"); !c.Locked(t0) {
			t.Fatal("Prune removed a running lock")
		}
	})

	t.Run("OddKeys", func(t *testing.T) {
		st := open(t)
		for _, k := range []string{"bad\x00key", "\xff"} {
			if _, _, err := st.Get(ctx, k, "x"); err != nil {
				t.Fatalf("Get(%q): %v", k, err)
			}
			if _, err := st.RecordFailure(ctx, k, "x", t0, policy); err == nil {
				t.Fatalf("RecordFailure(%q) succeeded", k)
			}
		}
		if _, err := st.RecordFailure(ctx, "k", lockout.AllClients, t0, policy); err == nil {
			t.Fatal("RecordFailure for AllClients succeeded")
		}
		if _, err := st.Clear(ctx, []string{"k'; DROP TABLE login_failures; --"}, ""); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ConcurrentFailures", func(t *testing.T) {
		st := open(t)
		p := policy
		p.MaxFailures = 1000
		p.NameClients = 8
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			locking int
		)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 3 {
					out, err := st.RecordFailure(ctx, "k", fmt.Sprintf("192.0.2.%d", i%8), t0, p)
					if err != nil {
						t.Errorf("RecordFailure: %v", err)
						return
					}
					if out.NameLocking {
						mu.Lock()
						locking++
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		es, err := st.List(ctx, []string{"k"})
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, e := range es[1:] {
			total += e.Failures
		}
		if len(es) != 9 || total != 48 || locking != 1 {
			t.Fatalf("after 48 concurrent failures from 8 clients: %d entries, %d counted, name locked %d times; want 9, 48, 1", len(es), total, locking)
		}
	})
}
