package identity_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/auth"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/password"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/testenv"
)

// auditLog records audit events in memory.
type auditLog struct {
	mu     sync.Mutex
	events []audit.Event
}

func (a *auditLog) Record(e audit.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, e)
}

// of returns the events of type typ.
func (a *auditLog) of(typ string) []audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Event
	for _, e := range a.events {
		if e.EventType == typ {
			out = append(out, e)
		}
	}
	return out
}

// cleanupService is a Service on SQLite with database sessions, a fake
// clock and an audit log, and its store for checks behind its back.
type cleanupService struct {
	svc     *identity.Service
	store   session.Store
	clock   *fakeClock
	audit   *auditLog
	revoked *revokeLog
}

func newCleanupService(t *testing.T, cfg identity.Config) *cleanupService {
	t.Helper()
	clock := newClock()
	log := testenv.Logger(t)
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{
		Driver: sqlstore.DriverSQLite, Path: filepath.Join(t.TempDir(), "codehub.db"), Now: clock.Now,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	hasher, err := password.NewHasher(cheap, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := &cleanupService{store: db.Sessions(), clock: clock, audit: &auditLog{}, revoked: &revokeLog{}}
	cfg.Now, cfg.SessionTTL, cfg.MinPasswordLength = clock.Now, sessionTTL, 8
	c.svc = identity.New(cfg, identity.Deps{
		Authn:    auth.NewDatabase(auth.DatabaseConfig{Users: db.Users(), Hasher: hasher, Now: clock.Now, Log: log.Named("auth")}),
		Users:    db.Users(),
		Sessions: c.store,
		Hasher:   hasher,
		OnRevoke: c.revoked.record,
		Audit:    c.audit,
	}, log.Named("identity"))
	return c
}

func (c *cleanupService) login(t *testing.T, name string) *identity.LoginResult {
	t.Helper()
	if _, err := c.svc.UserByName(context.Background(), name); err != nil {
		if _, err := c.svc.CreateUser(context.Background(), identity.NewUser{Username: name, Email: name + "@example.com", Password: goodPW}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := c.svc.Login(context.Background(), name, goodPW, client)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (c *cleanupService) live(t *testing.T, id string) bool {
	t.Helper()
	_, err := c.store.Get(context.Background(), id)
	return err == nil
}

// TestCleanupEndsIdleSessions: the sweep ends the sessions unused for
// longer than the idle timeout, each recorded as session.expired with its
// user, and tells every gateway (OnRevoke); sessions in use stay.
func TestCleanupEndsIdleSessions(t *testing.T) {
	c := newCleanupService(t, identity.Config{IdleTimeout: time.Hour})
	idle := c.login(t, "alice")
	busy := c.login(t, "bob")

	c.clock.Advance(50 * time.Minute)
	// bob's editor is open: a WebSocket message (written in the
	// background) counts as use.
	c.svc.SessionActive(busy.Principal.Session.ID)
	eventually(t, "bob's activity written", func() bool {
		s, err := c.store.Get(context.Background(), busy.Principal.Session.ID)
		return err == nil && s.LastActivity.Equal(c.clock.Now())
	})
	c.clock.Advance(11 * time.Minute)

	n, err := c.svc.CleanupExpiredSessions(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("CleanupExpiredSessions = %d, %v; want 1 session ended", n, err)
	}
	if c.live(t, idle.Principal.Session.ID) {
		t.Error("alice's idle session is still in the store")
	}
	if !c.live(t, busy.Principal.Session.ID) {
		t.Error("bob's session, used 11 minutes ago, was ended")
	}
	if !c.revoked.has(idle.Principal.Session.ID) {
		t.Error("the idle session was not revoked on the gateways (its WebSockets stay open)")
	}
	ev := c.audit.of(audit.SessionExpired)
	if len(ev) != 1 {
		t.Fatalf("session.expired events: %+v; want one", ev)
	}
	e := ev[0]
	if e.UserID != idle.Principal.User.ID || e.Username != "alice" || e.Metadata["sessionId"] != idle.Principal.Session.ID ||
		e.Metadata["reason"] != "idle timeout" {
		t.Errorf("session.expired = %+v; want alice's session, reason idle timeout", e)
	}
}

// TestCleanupDeletesExpiredSessions: sessions past their lifetime are
// deleted by the sweep, counted in one session.expired entry.
func TestCleanupDeletesExpiredSessions(t *testing.T) {
	c := newCleanupService(t, identity.Config{})
	c.login(t, "alice")
	c.login(t, "alice")
	c.clock.Advance(sessionTTL + time.Second)
	n, err := c.svc.CleanupExpiredSessions(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("CleanupExpiredSessions = %d, %v; want 2", n, err)
	}
	ev := c.audit.of(audit.SessionExpired)
	if len(ev) != 1 || ev[0].Metadata["count"] != 2 || ev[0].Metadata["reason"] != "expired" {
		t.Fatalf("session.expired events: %+v; want one counting 2", ev)
	}
	if n, _ := c.svc.CleanupExpiredSessions(context.Background()); n != 0 {
		t.Errorf("a second sweep removed %d more", n)
	}
}

// TestCleanupRunsOnItsInterval: Run sweeps every CleanupInterval, and not
// at all with DisableCleanup (auto-cleanup.enabled = false), where an idle
// session still cannot be used.
func TestCleanupRunsOnItsInterval(t *testing.T) {
	for _, disabled := range []bool{false, true} {
		t.Run(map[bool]string{false: "enabled", true: "disabled"}[disabled], func(t *testing.T) {
			c := newCleanupService(t, identity.Config{IdleTimeout: time.Minute, CleanupInterval: 10 * time.Millisecond,
				DisableCleanup: disabled})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.svc.Run(ctx) }()
			defer func() { cancel(); <-done }()
			res := c.login(t, "alice")
			c.clock.Advance(2 * time.Minute)
			if !disabled {
				eventually(t, "the idle session swept", func() bool { return !c.live(t, res.Principal.Session.ID) })
				return
			}
			time.Sleep(200 * time.Millisecond) // twenty intervals
			if !c.live(t, res.Principal.Session.ID) {
				t.Fatal("the session was swept with the clean-up disabled")
			}
			if len(c.audit.of(audit.SessionExpired)) != 0 {
				t.Fatal("session.expired recorded with the clean-up disabled")
			}
			p, err := c.svc.FromCookie(context.Background(), res.CookieToken)
			if err != nil || p != nil {
				t.Fatalf("FromCookie of an idle session = %v, %v; want nil", p, err)
			}
			if ev := c.audit.of(audit.SessionExpired); len(ev) != 1 || ev[0].Metadata["reason"] != "idle timeout" {
				t.Fatalf("presenting the idle session: session.expired events %+v", ev)
			}
		})
	}
}

// TestSessionActiveWritesSeldom: a stream of WebSocket messages writes
// the session's activity at most once per touch interval.
func TestSessionActiveWritesSeldom(t *testing.T) {
	c := newCleanupService(t, identity.Config{IdleTimeout: time.Hour})
	res := c.login(t, "alice")
	id := res.Principal.Session.ID
	start := c.clock.Now()
	c.clock.Advance(31 * time.Minute)
	c.svc.SessionActive(id)
	eventually(t, "activity written", func() bool {
		s, err := c.store.Get(context.Background(), id)
		return err == nil && s.LastActivity.After(start)
	})
	first := c.clock.Now()
	c.clock.Advance(30 * time.Second)
	for range 100 {
		c.svc.SessionActive(id)
	}
	time.Sleep(50 * time.Millisecond)
	s, err := c.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !s.LastActivity.Equal(first) {
		t.Errorf("last activity %s, want %s: written again within the interval", s.LastActivity, first)
	}
	c.svc.SessionActive("") // no session: nothing happens
}
