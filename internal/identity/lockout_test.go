package identity_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/auth"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/lockout"
)

// from is a client at address ip.
func from(ip string) identity.Client { return identity.Client{IP: ip, UserAgent: "test-browser/1.0"} }

// answer is everything a person or an attacker learns from one attempt.
type answer struct {
	Code, Message string
	RetryAfter    time.Duration
}

func (a answer) String() string {
	return fmt.Sprintf("%s %q retry %v", a.Code, a.Message, a.RetryAfter)
}

func answerOf(err error) answer {
	var e *identity.Error
	if !errors.As(err, &e) {
		return answer{Code: "no identity.Error: " + fmt.Sprint(err)}
	}
	return answer{e.Code, e.Message, e.RetryAfter}
}

// try signs in as name from c and returns the answer; a success is
// answered "ok".
func (g *gateway) try(t *testing.T, name, pw string, c identity.Client) answer {
	t.Helper()
	_, err := g.svc.Login(context.Background(), name, pw, c)
	if err == nil {
		return answer{Code: "ok"}
	}
	return answerOf(err)
}

// Failures from one address lock that address out of the name, with
// growing delays; the right password from another address still works,
// and the lock ends with time.
func TestLockoutPerAddress(t *testing.T) {
	g := newGateway(t, setup{lock: lockout.Policy{MaxFailures: 3, BaseLock: time.Minute, MaxLock: 4 * time.Minute}})
	g.mustUser(t, "alice", "")
	home, office := from("192.0.2.7"), from("198.51.100.20")

	for range 2 {
		if a := g.try(t, "alice", "wrong-password-1", home); a.Code != identity.CodeInvalidCredentials {
			t.Fatalf("failure: %v", a)
		}
	}
	if a := g.try(t, "alice", "wrong-password-1", home); a.Code != identity.CodeAccountLocked || a.RetryAfter != time.Minute {
		t.Fatalf("third failure: %v; want locked for 1m", a)
	}
	// While locked from home the right password is refused there...
	g.clock.Advance(20 * time.Second)
	if a := g.try(t, "alice", goodPW, home); a.Code != identity.CodeAccountLocked || a.RetryAfter != 40*time.Second ||
		!strings.Contains(a.Message, "from your address") {
		t.Fatalf("right password from the locked address: %v", a)
	}
	// ...and accepted from anywhere else, as often as the person likes.
	for range 3 {
		if a := g.try(t, "alice", goodPW, office); a.Code != "ok" {
			t.Fatalf("right password from another address: %v; want signed in", a)
		}
	}
	// The IPv6 /64 of an address is one client: its neighbours are locked
	// with it, another /64 is not.
	v6 := lockout.Policy{MaxFailures: 2, BaseLock: time.Minute, MaxLock: time.Hour}
	g6 := newGateway(t, setup{lock: v6, clock: g.clock})
	g6.mustUser(t, "alice", "")
	g6.try(t, "alice", "wrong-password-1", from("2001:db8:1:2::1"))
	g6.try(t, "alice", "wrong-password-1", from("2001:db8:1:2::99"))
	if a := g6.try(t, "alice", goodPW, from("2001:db8:1:2:aaaa::5")); a.Code != identity.CodeAccountLocked {
		t.Fatalf("same /64: %v; want locked", a)
	}
	if a := g6.try(t, "alice", goodPW, from("2001:db8:1:3::1")); a.Code != "ok" {
		t.Fatalf("another /64: %v; want signed in", a)
	}

	// Locks in a row from home grow: 1m, 2m, 4m, then stay at MaxLock.
	remaining := 40 * time.Second
	for _, next := range []time.Duration{2 * time.Minute, 4 * time.Minute, 4 * time.Minute} {
		g.clock.Advance(remaining)
		g.try(t, "alice", "wrong-password-1", home)
		g.try(t, "alice", "wrong-password-1", home)
		if a := g.try(t, "alice", "wrong-password-1", home); a.Code != identity.CodeAccountLocked || a.RetryAfter != next {
			t.Fatalf("lock: %v; want %v", a, next)
		}
		remaining = next
	}
	// The lock ends with time, and a success from home starts over.
	g.clock.Advance(remaining)
	if a := g.try(t, "alice", goodPW, home); a.Code != "ok" {
		t.Fatalf("after the lock: %v", a)
	}
	g.try(t, "alice", "wrong-password-1", home)
	g.try(t, "alice", "wrong-password-1", home)
	if a := g.try(t, "alice", "wrong-password-1", home); a.RetryAfter != time.Minute {
		t.Fatalf("first lock after a success: %v; want 1m", a)
	}
	// Locks are audited with the client.
	locked := g.audit.of(audit.AccountLocked)
	if len(locked) == 0 || locked[0].Metadata["client"] != "192.0.2.7" || locked[0].Metadata["scope"] != "client" {
		t.Fatalf("user.locked events: %+v", locked)
	}
}

// Five failures from five addresses no longer lock anyone out: the right
// password from a sixth address signs in.
func TestLockoutFiveAddressesThenRightPassword(t *testing.T) {
	g := newGateway(t, setup{lock: lockout.Policy{MaxFailures: 5, BaseLock: time.Minute, MaxLock: time.Hour,
		NameClients: 10, NameWindow: time.Hour, NameLock: 15 * time.Minute}})
	g.mustUser(t, "alice", "")
	for i := 1; i <= 5; i++ {
		if a := g.try(t, "alice", "wrong-password-1", from(fmt.Sprintf("203.0.113.%d", i))); a.Code != identity.CodeInvalidCredentials {
			t.Fatalf("failure %d: %v", i, a)
		}
	}
	if a := g.try(t, "alice", goodPW, from("192.0.2.7")); a.Code != "ok" {
		t.Fatalf("right password from a sixth address: %v; want signed in", a)
	}
	// And from each of the five, whose single failures lock nothing.
	if a := g.try(t, "alice", goodPW, from("203.0.113.1")); a.Code != "ok" {
		t.Fatalf("right password from a failing address: %v", a)
	}
}

// Failures from many addresses lock the name for everyone: then the right
// password is answered exactly as a wrong one (a second factor would get
// through: the authenticator says so), and a browser that signed in
// before, with its device cookie, still gets in.
func TestLockoutNameLockAndDeviceCookie(t *testing.T) {
	g := newGateway(t, setup{lock: lockPolicy, deviceTTL: 30 * 24 * time.Hour})
	alice := g.mustUser(t, "alice", "")
	ctx := context.Background()
	laptop := from("192.0.2.7")
	res, err := g.svc.Login(ctx, "alice", goodPW, laptop)
	if err != nil {
		t.Fatal(err)
	}
	if res.Device == "" || !res.DeviceExpires.Equal(epoch.Add(30*24*time.Hour).Truncate(time.Second)) {
		t.Fatalf("device cookie %q until %v", res.Device, res.DeviceExpires)
	}
	if !g.svc.TrustedDevice(res.Device, "ALICE ") || g.svc.TrustedDevice(res.Device, "bob") ||
		g.svc.TrustedDevice(res.Device[:len(res.Device)-2]+"xx", "alice") {
		t.Fatal("TrustedDevice: a cookie trusts its name (normalized) and nothing else")
	}

	for i := 1; i <= lockPolicy.NameClients; i++ {
		g.try(t, "alice", "wrong-password-1", from(fmt.Sprintf("203.0.113.%d", i)))
	}
	wrong := g.try(t, "alice", "wrong-password-1", from("198.51.100.1"))
	right := g.try(t, "alice", goodPW, from("198.51.100.2"))
	if wrong.Code != identity.CodeAccountLocked || wrong.RetryAfter != 2*time.Minute || wrong != right {
		t.Fatalf("during a name lock: wrong password %v, right password %v; want the same lock", wrong, right)
	}
	// The seam for a second factor: the authenticator tells the right
	// password apart, for the caller to ask for the second factor.
	_, err = g.authn(t).Authenticate(ctx, auth.Attempt{Username: "alice", Password: goodPW, Address: netip.MustParseAddr("198.51.100.3")})
	var second *auth.SecondFactorRequired
	if !errors.As(err, &second) || second.UserID != alice.ID || second.Lock.Scope != auth.ScopeName {
		t.Fatalf("Authenticate during a name lock = %v; want SecondFactorRequired for alice", err)
	}
	// The laptop's device cookie gets through, from any address.
	c := laptop
	c.Device = res.Device
	c.IP = "203.0.113.1"
	if a := g.try(t, "alice", goodPW, c); a.Code != "ok" {
		t.Fatalf("trusted browser during a name lock: %v; want signed in", a)
	}
	// A trusted browser's failures are its own: they lock that browser,
	// not its address.
	for range 2 {
		g.try(t, "alice", "wrong-password-1", c)
	}
	if a := g.try(t, "alice", "wrong-password-1", c); a.Code != identity.CodeAccountLocked || !strings.Contains(a.Message, "this browser") {
		t.Fatalf("third failure of a trusted browser: %v", a)
	}
	// The name lock ends with time.
	g.clock.Advance(2 * time.Minute)
	if a := g.try(t, "alice", goodPW, from("198.51.100.2")); a.Code != "ok" {
		t.Fatalf("after the name lock: %v", a)
	}
}

// For a name with an account and one without, the whole sequence of
// answers is the same: code, message and Retry-After, through client
// locks, growing delays and a name lock. Each attempt costs one argon2
// verification, a dummy one for the name without an account (times are
// not asserted: they are dominated by that work).
func TestLockoutSameAnswersForUnknownNames(t *testing.T) {
	sequence := func(name string, exists bool) []answer {
		g := newGateway(t, setup{lock: lockPolicy})
		if exists {
			g.mustUser(t, name, "")
		}
		var out []answer
		step := func(c identity.Client) {
			out = append(out, g.try(t, name, "wrong-password-1", c))
			real, dummy := g.hasher.counts()
			if real+dummy != 1 || (!exists && real != 0) {
				t.Errorf("%s, attempt %d: %d real and %d dummy verifications; want one (dummy for a name without account)",
					name, len(out), real, dummy)
			}
		}
		for range 8 {
			step(from("192.0.2.7"))
		}
		g.clock.Advance(30 * time.Second)
		step(from("192.0.2.7"))
		g.clock.Advance(31 * time.Second)
		for range 4 {
			step(from("192.0.2.7"))
		}
		for i := 1; i <= 5; i++ {
			step(from(fmt.Sprintf("203.0.113.%d", i)))
		}
		step(from("2001:db8::1"))
		return out
	}
	known := sequence("alice", true)
	unknown := sequence("nobody", false)
	if !slices.Equal(known, unknown) {
		for i := range known {
			t.Logf("%2d  %v\n    %v", i+1, known[i], unknown[i])
		}
		t.Fatal("a name with an account and one without were answered differently")
	}
	// The sequence did meet every kind of answer.
	var codes []string
	for _, a := range known {
		codes = append(codes, a.Code+fmt.Sprint(a.RetryAfter))
	}
	for _, want := range []string{"invalid_credentials0s", "account_locked1m0s", "account_locked2m0s", "account_locked2m0s"} {
		if !slices.Contains(codes, want) {
			t.Fatalf("answers %v lack %s", codes, want)
		}
	}
}

// Administrators see the locks of an account's names, per client, and
// clear one or all; Unlock also lifts an administrator's lock.
func TestUnlockClearsLocks(t *testing.T) {
	g := newGateway(t, setup{lock: lockPolicy})
	alice := g.mustUser(t, "alice", "")
	ctx := context.Background()
	for range 3 {
		g.try(t, "alice", "wrong-password-1", from("192.0.2.7"))
		g.try(t, "alice@example.com", "wrong-password-1", from("198.51.100.9"))
	}
	g.try(t, "alice", "wrong-password-1", from("203.0.113.5"))
	locks, err := g.svc.Locks(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range locks {
		got = append(got, fmt.Sprintf("%s %s %d %v", l.Name, l.Client, l.Failures, l.Locked))
	}
	want := []string{"alice 192.0.2.7 0 true", "alice 203.0.113.5 1 false", "alice@example.com 198.51.100.9 0 true"}
	if !slices.Equal(got, want) {
		t.Fatalf("Locks = %q; want %q", got, want)
	}

	if err := g.svc.ClearLock(ctx, alice.ID, "192.0.2.7"); err != nil {
		t.Fatal(err)
	}
	if a := g.try(t, "alice", goodPW, from("192.0.2.7")); a.Code != "ok" {
		t.Fatalf("after clearing the lock: %v", a)
	}
	if a := g.try(t, "alice@example.com", goodPW, from("198.51.100.9")); a.Code != identity.CodeAccountLocked {
		t.Fatalf("another lock: %v; want still locked", a)
	}
	wantCode(t, g.svc.ClearLock(ctx, alice.ID, "192.0.2.7"), identity.CodeNotFound)
	wantCode(t, g.svc.ClearLock(ctx, alice.ID, ""), identity.CodeInvalidInput)
	wantCode(t, g.svc.ClearLock(ctx, unknownID, "192.0.2.7"), identity.CodeNotFound)

	if err := g.svc.Lock(ctx, alice.ID, epoch.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := g.svc.Unlock(ctx, alice.ID); err != nil {
		t.Fatal(err)
	}
	if locks, _ := g.svc.Locks(ctx, alice.ID); len(locks) != 0 {
		t.Fatalf("after Unlock: %+v", locks)
	}
	if a := g.try(t, "alice@example.com", goodPW, from("198.51.100.9")); a.Code != "ok" {
		t.Fatalf("after Unlock: %v", a)
	}
	if n := len(g.audit.of(audit.AccountUnlocked)); n != 2 {
		t.Fatalf("%d user.unlocked events; want 2", n)
	}
	wantCode(t, g.svc.Unlock(ctx, unknownID), identity.CodeNotFound)
}

// An administrator's lock is told only after the right password, like a
// disabled account: a wrong password is answered as for any name.
func TestAdminLockToldOnlyAfterRightPassword(t *testing.T) {
	g := newGateway(t, setup{lock: lockPolicy})
	alice := g.mustUser(t, "alice", "")
	if err := g.svc.Lock(context.Background(), alice.ID, epoch.AddDate(100, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if a, b := g.try(t, "alice", "wrong-password-1", from("192.0.2.7")), g.try(t, "nobody", "wrong-password-1", from("192.0.2.8")); a != b {
		t.Fatalf("wrong password of a locked account %v, of no account %v", a, b)
	}
	if a := g.try(t, "alice", goodPW, from("192.0.2.9")); a.Code != identity.CodeAccountLocked || a.RetryAfter < 99*365*24*time.Hour {
		t.Fatalf("right password of a locked account: %v", a)
	}
}

// authn returns the Service's authenticator.
func (g *gateway) authn(t *testing.T) *auth.Database {
	t.Helper()
	return auth.NewDatabase(auth.DatabaseConfig{Users: g.users, Hasher: g.hasher, Lockout: g.guard, Now: g.clock.Now})
}

// A sign-in over the session cap ends the user's least recently used
// session (not the oldest), on every gateway, tells the person once, and
// audits why; the cap still bounds how many live at once. This is the
// default: no OnLimit set.
func TestMaxSessionsEvictsLeastRecentlyUsed(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{MaxSessionsPerUser: 3}})
	alice := g.mustUser(t, "alice", "")
	ctx := context.Background()
	var logins []*identity.LoginResult
	for i := range 3 {
		res, err := g.svc.Login(ctx, "alice", goodPW, identity.Client{IP: fmt.Sprintf("192.0.2.%d", i+1), UserAgent: fmt.Sprintf("Browser/%d", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		if res.Notice != "" {
			t.Fatalf("sign-in %d under the cap has a notice: %q", i+1, res.Notice)
		}
		logins = append(logins, res)
		g.clock.Advance(time.Minute)
	}
	// The first, oldest session is the one in use; the second is not.
	g.clock.Advance(2 * time.Minute)
	g.wantLive(t, logins[0].CookieToken, alice.ID)

	res, err := g.svc.Login(ctx, "alice", goodPW, from("198.51.100.4"))
	if err != nil {
		t.Fatalf("sign-in over the cap: %v; want the least recently used session ended", err)
	}
	g.wantEnded(t, logins[1].CookieToken)
	g.wantLive(t, logins[0].CookieToken, alice.ID)
	g.wantLive(t, logins[2].CookieToken, alice.ID)
	if !g.revoked.has(logins[1].Principal.Session.ID) {
		t.Error("OnRevoke (which closes WebSockets on every gateway) was not told of the ended session")
	}
	if ids := g.sessionIDs(t, alice.ID); len(ids) != 3 {
		t.Fatalf("%d sessions live; want the cap, 3", len(ids))
	}
	want := "You were signed in 3 times, the most allowed, so the session last used 2026-03-01 12:01 UTC from Browser/2 at 192.0.2.2 was ended."
	if res.Notice != want {
		t.Fatalf("notice = %q\nwant     %q", res.Notice, want)
	}
	// Shown once.
	for i, wantNotice := range []string{want, ""} {
		got, err := g.svc.TakeNotice(ctx, res.Principal.Session.ID)
		if err != nil || got != wantNotice {
			t.Fatalf("TakeNotice %d = %q, %v; want %q", i+1, got, err, wantNotice)
		}
	}
	var found bool
	for _, e := range g.audit.of(audit.SessionRevoked) {
		if e.Metadata["sessionId"] == logins[1].Principal.Session.ID && e.UserID == alice.ID &&
			strings.Contains(fmt.Sprint(e.Metadata["reason"]), "least recently used") && e.Metadata["sessionIp"] == "192.0.2.2" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no session.revoked event for the ended session: %+v", g.audit.of(audit.SessionRevoked))
	}

	// The API says so too.
	pair, _, err := g.svc.LoginAPI(ctx, "alice", goodPW, client)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pair.Notice, "You were signed in 3 times") {
		t.Fatalf("API notice = %q", pair.Notice)
	}
}
