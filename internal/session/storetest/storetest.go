// Package storetest is the contract every session.Store must meet. Each
// backend's tests call Run with a constructor; the suite is the only
// definition of correct behaviour, so backends cannot drift apart.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/session"
)

// Clock is a settable clock shared by the suite and the store under test.
type Clock struct{ ns atomic.Int64 }

// NewClock starts at the real time, truncated to the microsecond (the
// precision of the SQL backends).
func NewClock() *Clock {
	c := &Clock{}
	c.ns.Store(time.Now().Truncate(time.Microsecond).UnixNano())
	return c
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Factory returns a new, empty store reading time from clock.
type Factory func(t *testing.T, clock *Clock) session.Store

func newSession(t *testing.T, clock *Clock, user string, ttl time.Duration) *session.Session {
	t.Helper()
	_, id, err := session.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	now := clock.Now()
	return &session.Session{
		ID: id, UserID: user, CreatedAt: now, ExpiresAt: now.Add(ttl), LastActivity: now,
		IPAddress: "192.0.2.7", UserAgent: "storetest/1.0", Metadata: map[string]string{"k": "v"},
	}
}

func equal(a, b *session.Session) error {
	switch {
	case a.ID != b.ID, a.UserID != b.UserID, a.IPAddress != b.IPAddress, a.UserAgent != b.UserAgent,
		a.WorkspaceID != b.WorkspaceID:
		return fmt.Errorf("got %+v, want %+v", a, b)
	case a.RefreshGen != b.RefreshGen, a.RefreshHash != b.RefreshHash:
		return fmt.Errorf("refresh state: got %d/%q, want %d/%q", a.RefreshGen, a.RefreshHash, b.RefreshGen, b.RefreshHash)
	case !a.CreatedAt.Equal(b.CreatedAt), !a.ExpiresAt.Equal(b.ExpiresAt), !a.LastActivity.Equal(b.LastActivity):
		return fmt.Errorf("times differ: got %v/%v/%v, want %v/%v/%v",
			a.CreatedAt, a.ExpiresAt, a.LastActivity, b.CreatedAt, b.ExpiresAt, b.LastActivity)
	case len(a.Metadata) != len(b.Metadata):
		return fmt.Errorf("metadata: got %v, want %v", a.Metadata, b.Metadata)
	}
	for k, v := range b.Metadata {
		if a.Metadata[k] != v {
			return fmt.Errorf("metadata: got %v, want %v", a.Metadata, b.Metadata)
		}
	}
	return nil
}

func ids(ss []*session.Session) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

// Run runs the contract against stores made by newStore.
func Run(t *testing.T, newStore Factory) {
	ctx := context.Background()

	t.Run("SetGetRoundTrip", func(t *testing.T) {
		clock := NewClock()
		st := newStore(t, clock)
		s := newSession(t, clock, "u1", time.Hour)
		s.WorkspaceID = "ws-1"
		s.RefreshGen, s.RefreshHash = 3, "abc"
		if err := st.Set(ctx, s); err != nil {
			t.Fatal(err)
		}
		got, err := st.Get(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := equal(got, s); err != nil {
			t.Fatal(err)
		}
		// The store must not alias the caller's value.
		got.Metadata["k"] = "changed"
		again, _ := st.Get(ctx, s.ID)
		if again.Metadata["k"] != "v" {
			t.Fatal("store returned a value sharing state with a previous result")
		}
	})

	t.Run("GetMissing", func(t *testing.T) {
		st := newStore(t, NewClock())
		if _, err := st.Get(ctx, "does-not-exist"); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Get missing: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("SetReplaces", func(t *testing.T) {
		clock := NewClock()
		st := newStore(t, clock)
		s := newSession(t, clock, "u1", time.Hour)
		if err := st.Set(ctx, s); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
		s.LastActivity = clock.Now()
		s.ExpiresAt = clock.Now().Add(2 * time.Hour)
		if err := st.Set(ctx, s); err != nil {
			t.Fatal(err)
		}
		got, err := st.Get(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := equal(got, s); err != nil {
			t.Fatal(err)
		}
		if n, _ := st.UserCount(ctx, "u1"); n != 1 {
			t.Fatalf("UserCount after replace = %d, want 1", n)
		}
	})

	t.Run("UpdateIsAtomic", func(t *testing.T) {
		clock := NewClock()
		st := newStore(t, clock)
		s := newSession(t, clock, "u1", time.Hour)
		if err := st.Set(ctx, s); err != nil {
			t.Fatal(err)
		}
		// Many concurrent increments: none may be lost.
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := st.Update(ctx, s.ID, func(x *session.Session) error {
					x.RefreshGen++
					return nil
				})
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got, err := st.Get(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.RefreshGen != n {
			t.Fatalf("RefreshGen = %d after %d concurrent updates", got.RefreshGen, n)
		}
		// An error from fn stores nothing.
		boom := errors.New("boom")
		if _, err := st.Update(ctx, s.ID, func(x *session.Session) error {
			x.RefreshHash = "changed"
			return boom
		}); !errors.Is(err, boom) {
			t.Fatalf("Update returned %v, want fn's error", err)
		}
		if got, _ := st.Get(ctx, s.ID); got.RefreshHash != "" {
			t.Fatal("Update stored a change although fn failed")
		}
		// The result is returned and stored.
		upd, err := st.Update(ctx, s.ID, func(x *session.Session) error {
			x.RefreshHash, x.WorkspaceID = "h2", "ws-9"
			return nil
		})
		if err != nil || upd.RefreshHash != "h2" {
			t.Fatalf("Update = %+v, %v", upd, err)
		}
		if got, _ := st.Get(ctx, s.ID); got.RefreshHash != "h2" || got.WorkspaceID != "ws-9" || got.UserID != "u1" {
			t.Fatalf("stored after Update: %+v", got)
		}
		if _, err := st.Update(ctx, "missing", func(*session.Session) error { return nil }); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Update of a missing session: %v", err)
		}
		clock.Advance(2 * time.Hour)
		if _, err := st.Update(ctx, s.ID, func(*session.Session) error { return nil }); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Update of an expired session: %v", err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		clock := NewClock()
		st := newStore(t, clock)
		s := newSession(t, clock, "u1", time.Hour)
		_ = st.Set(ctx, s)
		if err := st.Delete(ctx, s.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Get(ctx, s.ID); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Get after Delete: err = %v", err)
		}
		if err := st.Delete(ctx, s.ID); err != nil {
			t.Fatalf("second Delete: %v", err)
		}
		if n, _ := st.UserCount(ctx, "u1"); n != 0 {
			t.Fatalf("UserCount after Delete = %d", n)
		}
	})

	t.Run("ExpiryHidesSession", func(t *testing.T) {
		clock := NewClock()
		st := newStore(t, clock)
		s := newSession(t, clock, "u1", time.Minute)
		_ = st.Set(ctx, s)
		clock.Advance(time.Minute)
		if _, err := st.Get(ctx, s.ID); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("Get at expiry: err = %v, want ErrNotFound", err)
		}
		if n, _ := st.Count(ctx); n != 0 {
			t.Fatalf("Count with only an expired session = %d", n)
		}
		if ss, _ := st.UserSessions(ctx, "u1"); len(ss) != 0 {
			t.Fatalf("UserSessions lists an expired session")
		}
	})

	t.Run("UserSessionsOldestFirst", func(t *testing.T) {
		clock := NewClock()
		st := newStore(t, clock)
		var want []string
		for i := 0; i < 3; i++ {
			s := newSession(t, clock, "alice", time.Hour)
			_ = st.Set(ctx, s)
			want = append(want, s.ID)
			clock.Advance(time.Second)
		}
		_ = st.Set(ctx, newSession(t, clock, "bob", time.Hour))
		got, err := st.UserSessions(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ids(got)) != fmt.Sprint(want) {
			t.Fatalf("UserSessions = %v, want %v", ids(got), want)
		}
		if n, _ := st.UserCount(ctx, "alice"); n != 3 {
			t.Fatalf("UserCount(alice) = %d", n)
		}
		if n, _ := st.Count(ctx); n != 4 {
			t.Fatalf("Count = %d", n)
		}
		all, _ := st.AllActive(ctx)
		if len(all) != 4 || all[0].ID != want[0] || all[3].UserID != "bob" {
			t.Fatalf("AllActive = %v", ids(all))
		}
	})

	t.Run("DeleteUserSessions", func(t *testing.T) {
		clock := NewClock()
		st := newStore(t, clock)
		a1, a2 := newSession(t, clock, "alice", time.Hour), newSession(t, clock, "alice", time.Hour)
		b := newSession(t, clock, "bob", time.Hour)
		for _, s := range []*session.Session{a1, a2, b} {
			_ = st.Set(ctx, s)
		}
		gone, err := st.DeleteUserSessions(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if len(gone) != 2 {
			t.Fatalf("DeleteUserSessions returned %d sessions, want 2", len(gone))
		}
		for _, s := range []*session.Session{a1, a2} {
			if _, err := st.Get(ctx, s.ID); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("alice's session survived DeleteUserSessions")
			}
		}
		if _, err := st.Get(ctx, b.ID); err != nil {
			t.Fatalf("bob's session was deleted too: %v", err)
		}
	})

	t.Run("DeleteExpired", func(t *testing.T) {
		clock := NewClock()
		st := newStore(t, clock)
		short, long := newSession(t, clock, "u", time.Minute), newSession(t, clock, "u", time.Hour)
		_ = st.Set(ctx, short)
		_ = st.Set(ctx, long)
		clock.Advance(2 * time.Minute)
		n, err := st.DeleteExpired(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("DeleteExpired = %d, want 1", n)
		}
		if _, err := st.Get(ctx, long.ID); err != nil {
			t.Fatalf("live session removed: %v", err)
		}
		if n, _ := st.DeleteExpired(ctx); n != 0 {
			t.Fatalf("second DeleteExpired = %d, want 0", n)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		clock := NewClock()
		st := newStore(t, clock)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				user := fmt.Sprintf("user-%d", w%2)
				for i := 0; i < 10; i++ {
					s := newSession(t, clock, user, time.Hour)
					if err := st.Set(ctx, s); err != nil {
						errs <- err
						return
					}
					if _, err := st.Get(ctx, s.ID); err != nil {
						errs <- err
						return
					}
					if i%3 == 0 {
						if err := st.Delete(ctx, s.ID); err != nil {
							errs <- err
							return
						}
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// 8 workers x 10 sessions, 4 of each worker's deleted.
		if n, _ := st.Count(ctx); n != 8*6 {
			t.Fatalf("Count = %d, want %d", n, 8*6)
		}
	})
}
