package identity_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/revocation"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/user"
)

// dbBus is the SQLite revocation bus, polling fast.
func dbBus(db *sqlstore.DB) revocation.Bus { return db.RevocationBus(20 * time.Millisecond) }

// twoGateways starts two Services sharing one SQLite file (each through
// its own handle and bus), one key file and one clock, and waits until
// both receive events. b's session store counts Gets.
func twoGateways(t *testing.T, memoryOnA bool) (a, b *gateway, bStore *hookStore) {
	t.Helper()
	dir := t.TempDir()
	clock := newClock()
	shared := setup{clock: clock, dbPath: filepath.Join(dir, "codehub.db"), keysPath: filepath.Join(dir, "keys.json"), bus: dbBus}
	sa := shared
	sa.memorySessions = memoryOnA
	a = newGateway(t, sa)
	bStore = &hookStore{}
	sb := shared
	sb.wrap = func(s session.Store) session.Store { bStore.Store = s; return bStore }
	b = newGateway(t, sb)
	a.run(t)
	b.run(t)
	waitSubscribed(t, a.bus, a.revoked, b.revoked)
	return a, b, bStore
}

func TestRevocationAcrossGateways(t *testing.T) {
	a, b, bStore := twoGateways(t, false)
	ctx := context.Background()
	alice := a.mustUser(t, "alice", "")
	bob := a.mustUser(t, "bob", "")
	// The clock stands still from here on: no cache entry expires by
	// itself, only events can drop them.

	t.Run("logout", func(t *testing.T) {
		res := a.mustLogin(t, "alice")
		id := res.Principal.Session.ID
		b.wantLive(t, res.CookieToken, alice.ID)
		gets := bStore.getCount()
		b.wantLive(t, res.CookieToken, alice.ID)
		if bStore.getCount() != gets {
			t.Fatal("B read the store again: the session was not cached")
		}

		if err := a.svc.Logout(ctx, id); err != nil {
			t.Fatal(err)
		}
		a.wantEnded(t, res.CookieToken)
		eventually(t, "B to drop the logged-out session", func() bool { return b.fromCookie(t, res.CookieToken) == nil })
		eventually(t, "B's OnRevoke", func() bool { return b.revoked.has(id) })
	})

	t.Run("role", func(t *testing.T) {
		res := a.mustLogin(t, "alice")
		if p := b.wantLive(t, res.CookieToken, alice.ID); !p.User.HasRole(user.RoleUser) || p.User.IsAdmin() {
			t.Fatalf("roles = %v; want user", p.User.Roles)
		}
		if _, err := a.svc.SetRole(ctx, alice.ID, user.RoleAdmin); err != nil {
			t.Fatal(err)
		}
		if p := a.wantLive(t, res.CookieToken, alice.ID); !p.User.IsAdmin() {
			t.Errorf("A still sees roles %v", p.User.Roles)
		}
		eventually(t, "B to see the new role", func() bool {
			p := b.wantLive(t, res.CookieToken, alice.ID)
			return p.User.IsAdmin() && len(p.User.Roles) == 1
		})
	})

	t.Run("disable", func(t *testing.T) {
		res := a.mustLogin(t, "bob")
		id := res.Principal.Session.ID
		b.wantLive(t, res.CookieToken, bob.ID)
		if _, err := a.svc.SetActive(ctx, bob.ID, false); err != nil {
			t.Fatal(err)
		}
		a.wantEnded(t, res.CookieToken)
		eventually(t, "B to refuse the disabled user's session", func() bool { return b.fromCookie(t, res.CookieToken) == nil })
		eventually(t, "B's OnRevoke", func() bool { return b.revoked.has(id) })
		_, err := b.svc.Login(ctx, "bob", goodPW, client)
		wantCode(t, err, identity.CodeAccountDisabled)
	})

	t.Run("tokens", func(t *testing.T) {
		pair, p := a.mustLoginAPI(t, "alice")
		sid := p.Session.ID
		b.wantBearer(t, pair.AccessToken, alice.ID, sid)
		next, err := b.svc.Refresh(ctx, pair.RefreshToken)
		if err != nil {
			t.Fatalf("Refresh on B: %v", err)
		}
		a.wantBearer(t, next.AccessToken, alice.ID, sid)
		b.wantBearer(t, next.AccessToken, alice.ID, sid)

		_, err = a.svc.Refresh(ctx, pair.RefreshToken) // replayed on the other gateway
		wantCode(t, err, identity.CodeTokenReused)
		a.wantNoBearer(t, next.AccessToken)
		eventually(t, "B to drop the replayed session", func() bool { return b.fromBearer(t, next.AccessToken) == nil })
		eventually(t, "B's OnRevoke", func() bool { return b.revoked.has(sid) })
	})

	t.Run("delete user", func(t *testing.T) {
		carol := a.mustUser(t, "carol", "")
		res := a.mustLogin(t, "carol")
		b.wantLive(t, res.CookieToken, carol.ID)
		if err := a.svc.DeleteUser(ctx, carol.ID); err != nil {
			t.Fatal(err)
		}
		eventually(t, "B to drop the deleted user's session", func() bool { return b.fromCookie(t, res.CookieToken) == nil })
		eventually(t, "B's OnRevoke", func() bool { return b.revoked.has(res.Principal.Session.ID) })
	})
}

// The CLI (or any gateway) revoking a user's sessions cannot reach sessions
// another gateway keeps in its memory; the AllSessions event makes that
// gateway end them itself.
func TestAllSessionsEventEndsMemorySessions(t *testing.T) {
	mem, other, _ := twoGateways(t, true)
	ctx := context.Background()
	alice := mem.mustUser(t, "alice", "")
	bob := mem.mustUser(t, "bob", "")
	a1 := mem.mustLogin(t, "alice")
	a2 := mem.mustLogin(t, "alice")
	b1 := mem.mustLogin(t, "bob")

	n, err := other.svc.RevokeUser(ctx, alice.ID, "")
	if err != nil || n != 0 {
		t.Fatalf("RevokeUser on the other gateway = %d, %v; want 0 (it holds none of them)", n, err)
	}
	for _, res := range []string{a1.CookieToken, a2.CookieToken} {
		eventually(t, "the memory gateway to end alice's sessions", func() bool { return mem.fromCookie(t, res) == nil })
	}
	for _, id := range []string{a1.Principal.Session.ID, a2.Principal.Session.ID} {
		eventually(t, "OnRevoke on the memory gateway", func() bool { return mem.revoked.has(id) })
		if mem.stored(t, id) != nil {
			t.Errorf("session %s is still in the memory store", id)
		}
	}
	mem.wantLive(t, b1.CookieToken, bob.ID)
	if mem.revoked.has(b1.Principal.Session.ID) {
		t.Error("OnRevoke called with bob's session")
	}
}

func TestResyncClearsCaches(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	g.run(t)
	waitSubscribed(t, g.bus, g.revoked)
	ctx := context.Background()

	res := g.mustLogin(t, "alice")
	g.wantLive(t, res.CookieToken, alice.ID)
	// Changed behind the Service's back, with no event: the caches answer.
	if err := g.store.Delete(ctx, res.Principal.Session.ID); err != nil {
		t.Fatal(err)
	}
	bob := g.mustUser(t, "bob", "")
	bres := g.mustLogin(t, "bob")
	g.wantLive(t, bres.CookieToken, bob.ID)
	u, err := g.users.Get(ctx, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	u.Roles = []string{user.RoleAuditor}
	if err := g.users.Update(ctx, u); err != nil {
		t.Fatal(err)
	}
	g.wantLive(t, res.CookieToken, alice.ID)
	if p := g.wantLive(t, bres.CookieToken, bob.ID); !p.User.HasRole(user.RoleUser) {
		t.Fatalf("bob's roles = %v before the resync; want the cached user", p.User.Roles)
	}

	if err := g.bus.Publish(ctx, revocation.Event{Resync: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the resync to drop the cached session", func() bool { return g.fromCookie(t, res.CookieToken) == nil })
	if p := g.wantLive(t, bres.CookieToken, bob.ID); !p.User.HasRole(user.RoleAuditor) {
		t.Errorf("bob's roles = %v after the resync; want auditor", p.User.Roles)
	}
}

// The database bus announces each (re)subscription with a Resync: what
// was cached before Run may have missed events.
func TestRunResyncsOnSubscribe(t *testing.T) {
	g := newGateway(t, setup{bus: dbBus})
	alice := g.mustUser(t, "alice", "")
	res := g.mustLogin(t, "alice")
	g.wantLive(t, res.CookieToken, alice.ID)
	if err := g.store.Delete(context.Background(), res.Principal.Session.ID); err != nil {
		t.Fatal(err)
	}
	g.wantLive(t, res.CookieToken, alice.ID) // cached

	g.run(t)
	eventually(t, "the subscription's resync", func() bool { return g.fromCookie(t, res.CookieToken) == nil })
}

// A request that read a session from the store just before a logout must
// not put it back into the cache after the logout dropped it.
func TestLogoutDuringLookupStaysLoggedOut(t *testing.T) {
	hooks := &hookStore{}
	g := newGateway(t, setup{wrap: func(s session.Store) session.Store { hooks.Store = s; return hooks }})
	g.mustUser(t, "alice", "")
	res := g.mustLogin(t, "alice")
	id := res.Principal.Session.ID
	g.clock.Advance(cacheTTL + time.Second) // the sign-in's cache entry is stale

	var logoutErr error
	hooks.mu.Lock()
	hooks.afterGet = func(*session.Session) { logoutErr = g.svc.Logout(context.Background(), id) }
	hooks.mu.Unlock()
	// This request was in flight when the logout came: it may pass.
	g.fromCookie(t, res.CookieToken)
	if logoutErr != nil {
		t.Fatal(logoutErr)
	}
	if g.stored(t, id) != nil {
		t.Fatal("Logout did not delete the session")
	}
	if p := g.fromCookie(t, res.CookieToken); p != nil {
		t.Fatalf("FromCookie after Logout = a principal of %s: the in-flight lookup cached the ended session", p.User.ID)
	}
}

// An AllSessions event tells gateways to end sessions they hold in
// memory. Applied late (here: the publisher's own echo, delayed on the
// bus), it must not end sessions started after the revocation.
func TestRevokeAllEchoSparesNewerSessions(t *testing.T) {
	bus := &gatedBus{
		Bus:  revocation.NewLocal(),
		hold: func(ev revocation.Event) bool { return ev.AllSessions },
		open: make(chan struct{}),
	}
	g := newGateway(t, setup{bus: func(*sqlstore.DB) revocation.Bus { return bus }})
	alice := g.mustUser(t, "alice", "")
	g.run(t)
	waitSubscribed(t, bus, g.revoked)
	ctx := context.Background()

	old := g.mustLogin(t, "alice")
	if n, err := g.svc.RevokeUser(ctx, alice.ID, ""); err != nil || n != 1 {
		t.Fatalf("RevokeUser = %d, %v; want 1", n, err)
	}
	g.wantEnded(t, old.CookieToken)

	g.clock.Advance(time.Second)
	fresh := g.mustLogin(t, "alice") // signing in again at once
	close(bus.open)
	eventually(t, "the revocation's echo", func() bool { return g.revoked.count(old.Principal.Session.ID) == 2 })

	if g.revoked.has(fresh.Principal.Session.ID) {
		t.Error("OnRevoke was called with the session started after the revocation")
	}
	if g.stored(t, fresh.Principal.Session.ID) == nil {
		t.Fatal("the session started after RevokeUser was deleted when the revocation event was applied again")
	}
	g.wantLive(t, fresh.CookieToken, alice.ID)
}
