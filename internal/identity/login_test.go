package identity_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/lockout"
	"github.com/codehub-dev/codehub/internal/session"
)

func TestLoginStartsSession(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")

	res := g.mustLogin(t, "alice")
	if res.CookieToken == "" {
		t.Fatal("Login returned no cookie token")
	}
	p := res.Principal
	if p.Via != "cookie" || p.User.ID != alice.ID || p.User.Username != "alice" {
		t.Fatalf("Login principal = user %s (%s) via %q; want alice by cookie", p.User.ID, p.User.Username, p.Via)
	}
	id := p.Session.ID
	if want := session.IDFromToken(res.CookieToken); id != want {
		t.Fatalf("session id %q is not the hash of the cookie token (%q)", id, want)
	}
	if strings.Contains(id, res.CookieToken) {
		t.Fatal("the session id contains the cookie token")
	}

	s := g.stored(t, id)
	if s == nil {
		t.Fatal("the session is not in the store")
	}
	if s.UserID != alice.ID || s.IPAddress != client.IP || s.UserAgent != client.UserAgent {
		t.Errorf("stored session = user %q, ip %q, ua %q; want %q, %q, %q", s.UserID, s.IPAddress, s.UserAgent, alice.ID, client.IP, client.UserAgent)
	}
	if !s.CreatedAt.Equal(epoch) || !s.LastActivity.Equal(epoch) || !s.ExpiresAt.Equal(epoch.Add(sessionTTL)) {
		t.Errorf("stored session times = created %v, active %v, expires %v; want %v, %v, %v",
			s.CreatedAt, s.LastActivity, s.ExpiresAt, epoch, epoch, epoch.Add(sessionTTL))
	}
	if got := g.created.all(); !slices.Equal(got, []string{id}) {
		t.Errorf("OnSessionCreated got %v; want [%s]", got, id)
	}

	got := g.wantLive(t, res.CookieToken, alice.ID)
	if got.Session.ID != id {
		t.Errorf("FromCookie session = %s; want %s", got.Session.ID, id)
	}
	u, err := g.users.Get(context.Background(), alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !u.LastLogin.Equal(epoch) {
		t.Errorf("LastLogin = %v; want %v", u.LastLogin, epoch)
	}

	for _, bad := range []string{"", "x", res.CookieToken + "x", strings.Repeat("a", 129), id} {
		if p := g.fromCookie(t, bad); p != nil {
			t.Errorf("FromCookie(%.20q) = a principal of %s; want nil", bad, p.User.ID)
		}
	}
}

func TestLoginRefused(t *testing.T) {
	g := newGateway(t, setup{})
	g.mustUser(t, "alice", "")

	tests := []struct {
		name, username, password, code string
	}{
		{"wrong password", "alice", "wrong-password-1", identity.CodeInvalidCredentials},
		{"unknown user", "mallory", goodPW, identity.CodeInvalidCredentials},
		{"unknown email", "mallory@example.com", goodPW, identity.CodeInvalidCredentials},
		{"empty password", "alice", "", identity.CodeInvalidCredentials},
		{"empty username", "", goodPW, identity.CodeInvalidCredentials},
		{"wrong password by email", "alice@example.com", "wrong-password-1", identity.CodeInvalidCredentials},
		{"username too long", strings.Repeat("a", 257), goodPW, identity.CodeInvalidInput},
		{"password too long", "alice", strings.Repeat("a", 1025), identity.CodeInvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := g.svc.Login(context.Background(), tt.username, tt.password, client)
			if res != nil {
				t.Errorf("Login returned a result with its error")
			}
			wantCode(t, err, tt.code)
		})
	}
	// No user enumeration: a wrong password and an unknown user read the same.
	_, errWrong := g.svc.Login(context.Background(), "alice", "wrong-password-1", client)
	_, errUnknown := g.svc.Login(context.Background(), "nobody", "wrong-password-1", client)
	if errWrong == nil || errUnknown == nil || errWrong.Error() != errUnknown.Error() {
		t.Errorf("wrong password says %v, unknown user %v; want the same", errWrong, errUnknown)
	}
	n, err := g.store.Count(context.Background())
	if err != nil || n != 0 {
		t.Errorf("sessions after refused sign-ins = %d, %v; want 0", n, err)
	}
	if len(g.created.all()) != 0 {
		t.Errorf("OnSessionCreated called for refused sign-ins")
	}
}

func TestLoginNormalizesNameAndEmail(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	for _, name := range []string{"alice", "ALICE", "  Alice  ", "alice@example.com", "Alice@EXAMPLE.com", " alice@example.com "} {
		res, err := g.svc.Login(context.Background(), name, goodPW, client)
		if err != nil {
			t.Errorf("Login(%q): %v", name, err)
			continue
		}
		if res.Principal.User.ID != alice.ID {
			t.Errorf("Login(%q) signed in %s; want alice", name, res.Principal.User.Username)
		}
	}
	// The password is not normalized.
	_, err := g.svc.Login(context.Background(), "alice", strings.ToUpper(goodPW), client)
	wantCode(t, err, identity.CodeInvalidCredentials)
}

func TestLoginDisabledAccount(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	if _, err := g.svc.SetActive(context.Background(), alice.ID, false); err != nil {
		t.Fatal(err)
	}
	_, err := g.svc.Login(context.Background(), "alice", goodPW, client)
	wantCode(t, err, identity.CodeAccountDisabled)
	_, err = g.svc.Login(context.Background(), "alice", "wrong-password-1", client)
	wantCode(t, err, identity.CodeInvalidCredentials)
	_, _, err = g.svc.LoginAPI(context.Background(), "alice", goodPW, client)
	wantCode(t, err, identity.CodeAccountDisabled)
	if n, _ := g.store.UserCount(context.Background(), alice.ID); n != 0 {
		t.Errorf("a disabled account got %d sessions", n)
	}

	if _, err := g.svc.SetActive(context.Background(), alice.ID, true); err != nil {
		t.Fatal(err)
	}
	g.mustLogin(t, "alice")
}

// lockPolicy locks a name from one address after three failures, for 1m,
// then 2m, then 4m at most; and a name for every address after failures
// from four addresses within an hour, for 2m, then 4m.
var lockPolicy = lockout.Policy{MaxFailures: 3, BaseLock: time.Minute, MaxLock: 4 * time.Minute,
	NameClients: 4, NameWindow: time.Hour, NameLock: 2 * time.Minute}

// failLogins signs in with a wrong password n times and returns the last
// error.
func failLogins(t *testing.T, g *gateway, name string, n int) error {
	t.Helper()
	var err error
	for range n {
		_, err = g.svc.Login(context.Background(), name, "wrong-password-1", client)
		if err == nil {
			t.Fatal("Login with a wrong password succeeded")
		}
	}
	return err
}

// wantLocked fails t unless err is an account lock lasting retry.
func wantLocked(t *testing.T, err error, retry time.Duration) {
	t.Helper()
	e := wantCode(t, err, identity.CodeAccountLocked)
	if e.RetryAfter != retry {
		t.Fatalf("RetryAfter = %v; want %v", e.RetryAfter, retry)
	}
}

func TestAdminLock(t *testing.T) {
	g := newGateway(t, setup{lock: lockPolicy})
	alice := g.mustUser(t, "alice", "")
	ctx := context.Background()
	res := g.mustLogin(t, "alice")

	if err := g.svc.Lock(ctx, alice.ID, epoch.Add(time.Hour)); err != nil {
		t.Fatalf("Lock: %v", err)
	}
	g.wantEnded(t, res.CookieToken)
	if !g.revoked.has(res.Principal.Session.ID) {
		t.Error("OnRevoke was not told of the locked user's session")
	}
	_, err := g.svc.Login(ctx, "alice", goodPW, client)
	wantLocked(t, err, time.Hour)

	g.clock.Advance(time.Hour)
	g.mustLogin(t, "alice")

	wantCode(t, g.svc.Lock(ctx, "4a0c7c8e-59a4-4a69-9d56-5a1ce2e4a1b0", epoch.Add(2*time.Hour)), identity.CodeNotFound)
}

func TestMaxSessionsRefuse(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{MaxSessionsPerUser: 2, OnLimit: "refuse"}})
	alice := g.mustUser(t, "alice", "")
	g.mustUser(t, "bob", "")

	first := g.mustLogin(t, "alice")
	g.clock.Advance(time.Second)
	second := g.mustLogin(t, "alice")
	for _, try := range []func() error{
		func() error { _, err := g.svc.Login(context.Background(), "alice", goodPW, client); return err },
		func() error { _, _, err := g.svc.LoginAPI(context.Background(), "alice", goodPW, client); return err },
	} {
		wantCode(t, try(), identity.CodeTooManySessions)
	}
	if got, want := g.sessionIDs(t, alice.ID), []string{first.Principal.Session.ID, second.Principal.Session.ID}; !slices.Equal(got, want) {
		t.Errorf("sessions after refusals = %v; want %v", got, want)
	}
	g.wantLive(t, first.CookieToken, alice.ID)
	g.wantLive(t, second.CookieToken, alice.ID)
	if n := len(g.created.all()); n != 2 {
		t.Errorf("OnSessionCreated called %d times; want 2", n)
	}
	g.mustLogin(t, "bob") // the limit is per user

	// Signing out makes room.
	if err := g.svc.Logout(context.Background(), first.Principal.Session.ID); err != nil {
		t.Fatal(err)
	}
	g.mustLogin(t, "alice")
}

func TestMaxSessionsEvictOldest(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{MaxSessionsPerUser: 2, OnLimit: "evict-oldest"}})
	alice := g.mustUser(t, "alice", "")

	var logins []*identity.LoginResult
	for range 4 {
		logins = append(logins, g.mustLogin(t, "alice"))
		g.clock.Advance(time.Second)
	}
	id := func(i int) string { return logins[i].Principal.Session.ID }
	for _, old := range []int{0, 1} {
		g.wantEnded(t, logins[old].CookieToken)
		if g.stored(t, id(old)) != nil {
			t.Errorf("evicted session %d is still stored", old)
		}
		if got := g.revoked.count(id(old)); got == 0 {
			t.Errorf("OnRevoke was not called with evicted session %d", old)
		}
	}
	for _, kept := range []int{2, 3} {
		g.wantLive(t, logins[kept].CookieToken, alice.ID)
		if g.revoked.has(id(kept)) {
			t.Errorf("OnRevoke was called with live session %d", kept)
		}
	}
	if got, want := g.sessionIDs(t, alice.ID), []string{id(2), id(3)}; !slices.Equal(got, want) {
		t.Errorf("sessions = %v; want %v", got, want)
	}
}

// An idle-expired session can never be used again (principal ends it when
// presented), so it must not hold one of the user's places: otherwise a
// user who closed their browsers is refused for the whole SessionTTL.
func TestMaxSessionsIgnoresIdleSessions(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{
		MaxSessionsPerUser: 1, OnLimit: "refuse", IdleTimeout: 30 * time.Minute,
	}})
	g.mustUser(t, "alice", "")
	old := g.mustLogin(t, "alice")

	g.clock.Advance(31 * time.Minute)
	res, err := g.svc.Login(context.Background(), "alice", goodPW, client)
	if err != nil {
		t.Fatalf("Login after the only session went idle: %v; want a new session", err)
	}
	g.wantLive(t, res.CookieToken, res.Principal.User.ID)
	g.wantEnded(t, old.CookieToken)
}

func TestLoginUserAgentTruncated(t *testing.T) {
	g := newGateway(t, setup{})
	g.mustUser(t, "alice", "")
	ctx := context.Background()

	long := strings.Repeat("a", 600)
	res, err := g.svc.Login(ctx, "alice", goodPW, identity.Client{IP: "2001:db8::1", UserAgent: long})
	if err != nil {
		t.Fatal(err)
	}
	if got := g.stored(t, res.Principal.Session.ID).UserAgent; got != long[:512] {
		t.Errorf("stored user agent has %d bytes; want the first 512", len(got))
	}

	// A cut must not split a character: the user agent is shown in the
	// session list and sent as JSON.
	ua := "x" + strings.Repeat("é", 300)
	res, err = g.svc.Login(ctx, "alice", goodPW, identity.Client{UserAgent: ua})
	if err != nil {
		t.Fatal(err)
	}
	got := g.stored(t, res.Principal.Session.ID).UserAgent
	if len(got) > 512 || !strings.HasPrefix(ua, got) || len(got) < 500 {
		t.Errorf("stored user agent has %d bytes; want a prefix of at most 512", len(got))
	}
	if !utf8.ValidString(got) {
		t.Errorf("stored user agent %q is not valid UTF-8: the cut split a character", got[len(got)-4:])
	}
}

func TestSessionTTL(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{SessionTTL: time.Hour}})
	alice := g.mustUser(t, "alice", "")
	res := g.mustLogin(t, "alice")

	g.clock.Advance(time.Hour - time.Second)
	g.wantLive(t, res.CookieToken, alice.ID)
	// Activity does not extend the lifetime.
	if s := g.stored(t, res.Principal.Session.ID); !s.ExpiresAt.Equal(epoch.Add(time.Hour)) {
		t.Errorf("ExpiresAt = %v after activity; want %v", s.ExpiresAt, epoch.Add(time.Hour))
	}
	g.clock.Advance(time.Second)
	g.wantEnded(t, res.CookieToken)
	if ids := g.sessionIDs(t, alice.ID); len(ids) != 0 {
		t.Errorf("UserSessions lists expired sessions %v", ids)
	}
}

func TestIdleTimeout(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{IdleTimeout: 10 * time.Minute}})
	alice := g.mustUser(t, "alice", "")
	res := g.mustLogin(t, "alice")
	id := res.Principal.Session.ID

	g.clock.Advance(10*time.Minute + time.Second)
	g.wantEnded(t, res.CookieToken)
	if g.stored(t, id) != nil {
		t.Error("the idle session is still stored")
	}
	if !g.revoked.has(id) {
		t.Error("OnRevoke was not called with the idle session")
	}
	if ids := g.sessionIDs(t, alice.ID); len(ids) != 0 {
		t.Errorf("UserSessions = %v; want none", ids)
	}
}

func TestActivityExtendsIdleWindow(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{IdleTimeout: 10 * time.Minute}})
	alice := g.mustUser(t, "alice", "")
	res := g.mustLogin(t, "alice")
	id := res.Principal.Session.ID

	for i := range 3 {
		g.clock.Advance(6 * time.Minute)
		g.wantLive(t, res.CookieToken, alice.ID)
		want := epoch.Add(time.Duration(i+1) * 6 * time.Minute)
		if got := g.stored(t, id).LastActivity; !got.Equal(want) {
			t.Fatalf("LastActivity = %v; want %v", got, want)
		}
	}
	g.clock.Advance(10*time.Minute + time.Second)
	g.wantEnded(t, res.CookieToken)
}

// Activity is recorded at most once a minute; an idle timeout shorter
// than that must still be extended by use, not end a session in use.
func TestIdleTimeoutShorterThanTouchInterval(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{IdleTimeout: 30 * time.Second}})
	alice := g.mustUser(t, "alice", "")
	res := g.mustLogin(t, "alice")

	for range 3 {
		g.clock.Advance(20 * time.Second) // used every 20s: never idle for 30s
		if p := g.fromCookie(t, res.CookieToken); p == nil {
			t.Fatalf("session in use every 20s ended %v after sign-in by a 30s idle timeout", g.clock.Now().Sub(epoch))
		}
	}
	g.wantLive(t, res.CookieToken, alice.ID)
}

func TestLogout(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	res := g.mustLogin(t, "alice")
	other := g.mustLogin(t, "alice")
	id := res.Principal.Session.ID
	g.wantLive(t, res.CookieToken, alice.ID) // cached now

	if err := g.svc.Logout(context.Background(), id); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	g.wantEnded(t, res.CookieToken)
	if g.stored(t, id) != nil {
		t.Error("the session is still stored")
	}
	if g.revoked.count(id) != 1 {
		t.Errorf("OnRevoke called %d times with the session; want once (no Run, no echo)", g.revoked.count(id))
	}
	g.wantLive(t, other.CookieToken, alice.ID)
	// Again: nothing to do, no error.
	if err := g.svc.Logout(context.Background(), id); err != nil {
		t.Errorf("second Logout: %v", err)
	}
}

func TestRevokeSession(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	bob := g.mustUser(t, "bob", "")
	a := g.mustLogin(t, "alice")
	b := g.mustLogin(t, "bob")
	ctx := context.Background()

	wantCode(t, g.svc.RevokeSession(ctx, alice.ID, b.Principal.Session.ID), identity.CodeNotFound)
	g.wantLive(t, b.CookieToken, bob.ID)
	if g.revoked.has(b.Principal.Session.ID) {
		t.Error("OnRevoke called with the session of another user")
	}
	wantCode(t, g.svc.RevokeSession(ctx, alice.ID, session.IDFromToken("no such token")), identity.CodeNotFound)

	if err := g.svc.RevokeSession(ctx, alice.ID, a.Principal.Session.ID); err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}
	g.wantEnded(t, a.CookieToken)
	if !g.revoked.has(a.Principal.Session.ID) {
		t.Error("OnRevoke not called with the revoked session")
	}
	// Not found is what a missing and a foreign session both say.
	wantCode(t, g.svc.RevokeSession(ctx, alice.ID, a.Principal.Session.ID), identity.CodeNotFound)
}

func TestRevokeUser(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	bob := g.mustUser(t, "bob", "")
	var a []*identity.LoginResult
	for range 3 {
		a = append(a, g.mustLogin(t, "alice"))
		g.clock.Advance(time.Second)
	}
	b := g.mustLogin(t, "bob")
	ctx := context.Background()

	n, err := g.svc.RevokeUser(ctx, alice.ID, a[1].Principal.Session.ID)
	if err != nil || n != 2 {
		t.Fatalf("RevokeUser(keep) = %d, %v; want 2", n, err)
	}
	g.wantEnded(t, a[0].CookieToken)
	g.wantEnded(t, a[2].CookieToken)
	g.wantLive(t, a[1].CookieToken, alice.ID)
	g.wantLive(t, b.CookieToken, bob.ID)
	if !g.revoked.has(a[0].Principal.Session.ID) || !g.revoked.has(a[2].Principal.Session.ID) || g.revoked.has(a[1].Principal.Session.ID) {
		t.Error("OnRevoke was not told of exactly the two ended sessions")
	}
	if got := g.sessionIDs(t, alice.ID); !slices.Equal(got, []string{a[1].Principal.Session.ID}) {
		t.Errorf("sessions = %v; want only the kept one", got)
	}

	n, err = g.svc.RevokeUser(ctx, alice.ID, "")
	if err != nil || n != 1 {
		t.Fatalf("RevokeUser = %d, %v; want 1", n, err)
	}
	g.wantEnded(t, a[1].CookieToken)
	g.wantLive(t, b.CookieToken, bob.ID)

	n, err = g.svc.RevokeUser(ctx, alice.ID, "")
	if err != nil || n != 0 {
		t.Errorf("RevokeUser without sessions = %d, %v; want 0", n, err)
	}
}

func TestUserSessionsOldestFirst(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{SessionTTL: time.Hour}})
	alice := g.mustUser(t, "alice", "")
	g.mustUser(t, "bob", "")
	var want []string
	for range 4 {
		want = append(want, g.mustLogin(t, "alice").Principal.Session.ID)
		g.mustLogin(t, "bob")
		g.clock.Advance(10 * time.Minute)
	}
	if got := g.sessionIDs(t, alice.ID); !slices.Equal(got, want) {
		t.Fatalf("UserSessions = %v; want oldest first %v", got, want)
	}
	// At 1h05m the first is expired and the second not.
	g.clock.Advance(25 * time.Minute)
	if got := g.sessionIDs(t, alice.ID); !slices.Equal(got, want[1:]) {
		t.Fatalf("UserSessions = %v; want the live ones %v", got, want[1:])
	}
}

func TestRunDeletesExpiredSessions(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{SessionTTL: time.Hour, CleanupInterval: 10 * time.Millisecond}})
	g.mustUser(t, "alice", "")
	g.mustUser(t, "bob", "")
	g.mustLogin(t, "alice")
	g.clock.Advance(30 * time.Minute)
	bob := g.mustLogin(t, "bob")
	g.clock.Advance(31 * time.Minute)
	g.run(t)

	rows := func() int {
		var n int
		if err := g.db.SQL().QueryRow("SELECT count(*) FROM sessions").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	eventually(t, "the expired session to be deleted", func() bool { return rows() == 1 })
	g.wantLive(t, bob.CookieToken, bob.Principal.User.ID)
}
