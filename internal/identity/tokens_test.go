package identity_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/token"
)

// refreshParts parses a refresh token, failing t if it is malformed.
func refreshParts(t *testing.T, tok string) (sid string, gen int) {
	t.Helper()
	sid, gen, _, err := token.ParseRefresh(tok)
	if err != nil {
		t.Fatalf("ParseRefresh(%q): %v", tok, err)
	}
	return sid, gen
}

// forgeRefresh makes a well-formed refresh token for a session and
// generation with a secret nobody was given.
func forgeRefresh(t *testing.T, sid string, gen int) string {
	t.Helper()
	tok, _, err := token.NewRefresh(sid, gen)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wantBearer fails t unless the access token names a live session of
// userID.
func (g *gateway) wantBearer(t *testing.T, access, userID, sid string) *identity.Principal {
	t.Helper()
	p := g.fromBearer(t, access)
	if p == nil {
		t.Fatalf("FromBearer = nil; want a principal of %s", userID)
	}
	if p.User.ID != userID || p.Session.ID != sid || p.Via != "bearer" {
		t.Fatalf("FromBearer = user %s, session %s, via %q; want %s, %s by bearer", p.User.ID, p.Session.ID, p.Via, userID, sid)
	}
	return p
}

func (g *gateway) wantNoBearer(t *testing.T, access string) {
	t.Helper()
	if p := g.fromBearer(t, access); p != nil {
		t.Fatalf("FromBearer = session %s of %s; want nil", p.Session.ID, p.User.ID)
	}
}

func TestLoginAPI(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")

	pair, p := g.mustLoginAPI(t, "alice")
	if pair.TokenType != "Bearer" {
		t.Errorf("token_type = %q; want Bearer", pair.TokenType)
	}
	if want := int(accessTTL / time.Second); pair.ExpiresIn != want {
		t.Errorf("expires_in = %d; want %d", pair.ExpiresIn, want)
	}
	if p.User.ID != alice.ID {
		t.Fatalf("principal is %s; want alice", p.User.ID)
	}
	sid, gen := refreshParts(t, pair.RefreshToken)
	if sid != p.Session.ID || gen != 0 {
		t.Errorf("refresh token names session %s gen %d; want %s gen 0", sid, gen, p.Session.ID)
	}
	claims, err := g.tokens.VerifyAccess(context.Background(), pair.AccessToken)
	if err != nil {
		t.Fatalf("VerifyAccess: %v", err)
	}
	if claims.UserID != alice.ID || claims.SessionID != sid || !claims.ExpiresAt.Equal(epoch.Add(accessTTL)) {
		t.Errorf("access claims = sub %s sid %s exp %v; want %s %s %v", claims.UserID, claims.SessionID, claims.ExpiresAt, alice.ID, sid, epoch.Add(accessTTL))
	}
	s := g.stored(t, sid)
	if s == nil || s.RefreshGen != 0 || s.RefreshHash == "" || strings.Contains(pair.RefreshToken, s.RefreshHash) {
		t.Fatalf("stored session = %+v; want gen 0 and the hash of the secret only", s)
	}
	if s.IPAddress != client.IP || s.UserAgent != client.UserAgent {
		t.Errorf("stored session ip %q ua %q; want %q %q", s.IPAddress, s.UserAgent, client.IP, client.UserAgent)
	}
	g.wantBearer(t, pair.AccessToken, alice.ID, sid)
	if ids := g.sessionIDs(t, alice.ID); len(ids) != 1 || ids[0] != sid {
		t.Errorf("UserSessions = %v; want the API session", ids)
	}

	// The access token dies with its TTL (and the leeway).
	g.clock.Advance(accessTTL + token.DefaultLeeway + time.Second)
	g.wantNoBearer(t, pair.AccessToken)

	for _, bad := range []string{"", "Bearer", "a.b.c", pair.RefreshToken, strings.Repeat("a", 4097)} {
		g.wantNoBearer(t, bad)
	}
}

func TestLoginAPIWrongPassword(t *testing.T) {
	g := newGateway(t, setup{})
	g.mustUser(t, "alice", "")
	pair, p, err := g.svc.LoginAPI(context.Background(), "alice", "wrong-password-1", client)
	wantCode(t, err, identity.CodeInvalidCredentials)
	if pair != nil || p != nil {
		t.Error("LoginAPI returned tokens with its error")
	}
}

func TestRefreshRotates(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	ctx := context.Background()
	pair0, p := g.mustLoginAPI(t, "alice")
	sid := p.Session.ID
	cookie := g.mustLogin(t, "alice") // another session of the same user

	g.clock.Advance(5 * time.Minute)
	pair1, err := g.svc.Refresh(ctx, pair0.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if pair1.RefreshToken == pair0.RefreshToken || pair1.AccessToken == pair0.AccessToken {
		t.Fatal("Refresh did not rotate the tokens")
	}
	if s, gen := refreshParts(t, pair1.RefreshToken); s != sid || gen != 1 {
		t.Fatalf("new refresh token = session %s gen %d; want %s gen 1", s, gen, sid)
	}
	if pair1.TokenType != "Bearer" || pair1.ExpiresIn != int(accessTTL/time.Second) {
		t.Errorf("pair = %s, %ds; want Bearer, %ds", pair1.TokenType, pair1.ExpiresIn, int(accessTTL/time.Second))
	}
	if st := g.stored(t, sid); st.RefreshGen != 1 || !st.LastActivity.Equal(g.clock.Now()) {
		t.Errorf("stored gen %d, last activity %v; want 1, %v", st.RefreshGen, st.LastActivity, g.clock.Now())
	}
	g.wantBearer(t, pair1.AccessToken, alice.ID, sid)
	g.wantBearer(t, pair0.AccessToken, alice.ID, sid) // still within its TTL

	pair2, err := g.svc.Refresh(ctx, pair1.RefreshToken)
	if err != nil {
		t.Fatalf("second Refresh: %v", err)
	}
	g.wantBearer(t, pair2.AccessToken, alice.ID, sid)

	// pair1's refresh token was exchanged already: a copy is in use.
	_, err = g.svc.Refresh(ctx, pair1.RefreshToken)
	wantCode(t, err, identity.CodeTokenReused)
	if g.stored(t, sid) != nil {
		t.Fatal("the session survived a replayed refresh token")
	}
	if !g.revoked.has(sid) {
		t.Error("OnRevoke not called with the replayed session")
	}
	for _, access := range []string{pair0.AccessToken, pair1.AccessToken, pair2.AccessToken} {
		g.wantNoBearer(t, access)
	}
	for _, refresh := range []string{pair0.RefreshToken, pair1.RefreshToken, pair2.RefreshToken} {
		_, err := g.svc.Refresh(ctx, refresh)
		wantCode(t, err, identity.CodeInvalidToken)
	}
	// Only that session ended.
	g.wantLive(t, cookie.CookieToken, alice.ID)
}

func TestRefreshForgedSecret(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	ctx := context.Background()
	pair0, p := g.mustLoginAPI(t, "alice")
	sid := p.Session.ID
	pair1, err := g.svc.Refresh(ctx, pair0.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name string
		gen  int
	}{
		{"current generation", 1},
		{"future generation", 2},
		{"far future generation", 1 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := g.svc.Refresh(ctx, forgeRefresh(t, sid, tt.gen))
			wantCode(t, err, identity.CodeInvalidToken)
			if st := g.stored(t, sid); st == nil || st.RefreshGen != 1 {
				t.Fatalf("stored session = %+v after a forged token; want it untouched at gen 1", st)
			}
			g.wantBearer(t, pair1.AccessToken, alice.ID, sid)
		})
	}
	if g.revoked.has(sid) {
		t.Error("a forged refresh token ended the session")
	}
	// The real token still works.
	if _, err := g.svc.Refresh(ctx, pair1.RefreshToken); err != nil {
		t.Fatalf("Refresh with the real token after forgeries: %v", err)
	}
}

func TestRefreshMalformed(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	ctx := context.Background()
	pair, p := g.mustLoginAPI(t, "alice")
	cookie := g.mustLogin(t, "alice")
	sid := p.Session.ID
	parts := strings.Split(pair.RefreshToken, ".")
	if len(parts) != 4 {
		t.Fatalf("refresh token %q has %d parts", pair.RefreshToken, len(parts))
	}
	secret := parts[3]

	tests := map[string]string{
		"empty":              "",
		"garbage":            "not a token",
		"access token":       pair.AccessToken,
		"wrong prefix":       "chr2." + sid + ".0." + secret,
		"leading zero":       "chr1." + sid + ".00." + secret,
		"negative gen":       "chr1." + sid + ".-1." + secret,
		"short session id":   "chr1.abc.0." + secret,
		"short secret":       "chr1." + sid + ".0.abc",
		"extra part":         pair.RefreshToken + ".x",
		"too long":           pair.RefreshToken + strings.Repeat("a", 200),
		"trailing newline":   pair.RefreshToken + "\n",
		"unknown session":    forgeRefresh(t, session.IDFromToken("no such session"), 0),
		"cookie session":     forgeRefresh(t, cookie.Principal.Session.ID, 0),
		"cookie session gen": forgeRefresh(t, cookie.Principal.Session.ID, 3),
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			pair, err := g.svc.Refresh(ctx, tok)
			wantCode(t, err, identity.CodeInvalidToken)
			if pair != nil {
				t.Error("Refresh returned tokens with its error")
			}
		})
	}
	g.wantBearer(t, pair.AccessToken, alice.ID, sid)
	g.wantLive(t, cookie.CookieToken, alice.ID)
	if _, err := g.svc.Refresh(ctx, pair.RefreshToken); err != nil {
		t.Fatalf("Refresh with the real token: %v", err)
	}
}

func TestRefreshRefusedForDisabledOrDeletedUser(t *testing.T) {
	ctx := context.Background()

	t.Run("SetActive", func(t *testing.T) {
		g := newGateway(t, setup{})
		alice := g.mustUser(t, "alice", "")
		pair, _ := g.mustLoginAPI(t, "alice")
		if _, err := g.svc.SetActive(ctx, alice.ID, false); err != nil {
			t.Fatal(err)
		}
		_, err := g.svc.Refresh(ctx, pair.RefreshToken)
		wantCode(t, err, identity.CodeInvalidToken)
		g.wantNoBearer(t, pair.AccessToken)
	})

	t.Run("disabled in the store", func(t *testing.T) {
		// Disabled behind the Service's back (no event): the user cache
		// may answer until CacheTTL, then the refresh is refused though
		// the session is still stored.
		g := newGateway(t, setup{})
		alice := g.mustUser(t, "alice", "")
		pair, p := g.mustLoginAPI(t, "alice")
		u, err := g.users.Get(ctx, alice.ID)
		if err != nil {
			t.Fatal(err)
		}
		u.Active = false
		if err := g.users.Update(ctx, u); err != nil {
			t.Fatal(err)
		}
		g.clock.Advance(cacheTTL + time.Second)
		_, err = g.svc.Refresh(ctx, pair.RefreshToken)
		wantCode(t, err, identity.CodeInvalidToken)
		g.wantNoBearer(t, pair.AccessToken)
		if st := g.stored(t, p.Session.ID); st == nil || st.RefreshGen != 0 {
			t.Errorf("stored session = %+v; want it unrotated", st)
		}
	})

	t.Run("DeleteUser", func(t *testing.T) {
		g := newGateway(t, setup{})
		alice := g.mustUser(t, "alice", "")
		pair, _ := g.mustLoginAPI(t, "alice")
		if err := g.svc.DeleteUser(ctx, alice.ID); err != nil {
			t.Fatal(err)
		}
		_, err := g.svc.Refresh(ctx, pair.RefreshToken)
		wantCode(t, err, identity.CodeInvalidToken)
		g.wantNoBearer(t, pair.AccessToken)
	})
}

// A refresh token is a use of its session like any request: presented
// after IdleTimeout it must not revive a session principal() would end.
func TestRefreshAfterIdleTimeout(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{IdleTimeout: 30 * time.Minute}})
	g.mustUser(t, "alice", "")
	pair, p := g.mustLoginAPI(t, "alice")

	g.clock.Advance(31 * time.Minute)
	next, err := g.svc.Refresh(context.Background(), pair.RefreshToken)
	if err == nil {
		t.Fatalf("Refresh of a session idle for 31m (idle timeout 30m) succeeded; want it refused (gen %d)", g.stored(t, p.Session.ID).RefreshGen)
	}
	wantCode(t, err, identity.CodeInvalidToken)
	if next != nil {
		t.Error("Refresh returned tokens with its error")
	}
	if g.stored(t, p.Session.ID) != nil {
		t.Error("the idle session is still stored")
	}
}

func TestFromBearerEndedSession(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	ctx := context.Background()

	pair, p := g.mustLoginAPI(t, "alice")
	g.wantBearer(t, pair.AccessToken, alice.ID, p.Session.ID)
	if err := g.svc.Logout(ctx, p.Session.ID); err != nil {
		t.Fatal(err)
	}
	g.wantNoBearer(t, pair.AccessToken)

	// Deleted behind the Service's back: once the cache entry is no
	// longer trusted, the token is refused.
	pair, p = g.mustLoginAPI(t, "alice")
	if err := g.store.Delete(ctx, p.Session.ID); err != nil {
		t.Fatal(err)
	}
	g.clock.Advance(cacheTTL + time.Second)
	g.wantNoBearer(t, pair.AccessToken)
}

func TestFromBearerSubjectMustOwnSession(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	mallory := g.mustUser(t, "mallory", "")
	ctx := context.Background()
	victim, p := g.mustLoginAPI(t, "alice")
	own, mp := g.mustLoginAPI(t, "mallory")

	// Tokens signed with the real key, but naming the other's session.
	forged, _, err := g.tokens.IssueAccess(ctx, mallory.ID, p.Session.ID)
	if err != nil {
		t.Fatal(err)
	}
	g.wantNoBearer(t, forged)
	forged, _, err = g.tokens.IssueAccess(ctx, alice.ID, mp.Session.ID)
	if err != nil {
		t.Fatal(err)
	}
	g.wantNoBearer(t, forged)
	// The genuine tokens still work.
	g.wantBearer(t, victim.AccessToken, alice.ID, p.Session.ID)
	g.wantBearer(t, own.AccessToken, mallory.ID, mp.Session.ID)

	// A token of another key (another deployment) is refused.
	other := newGateway(t, setup{clock: g.clock})
	other.mustUser(t, "alice", "")
	foreign, _ := other.mustLoginAPI(t, "alice")
	g.wantNoBearer(t, foreign.AccessToken)
}

func TestRefreshConcurrentSameToken(t *testing.T) {
	g := newGateway(t, setup{})
	g.mustUser(t, "alice", "")
	ctx := context.Background()
	pair, p := g.mustLoginAPI(t, "alice")
	sid := p.Session.ID

	const n = 10
	type result struct {
		pair *identity.TokenPair
		err  error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			pr, err := g.svc.Refresh(ctx, pair.RefreshToken)
			results[i] = result{pr, err}
		})
	}
	close(start)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * guard):
		t.Fatal("concurrent refreshes did not finish: deadlock?")
	}

	var winners []*identity.TokenPair
	reused := 0
	for i, r := range results {
		switch code := identity.CodeOf(r.err); {
		case r.err == nil:
			winners = append(winners, r.pair)
		case code == identity.CodeTokenReused:
			reused++
		case code == identity.CodeInvalidToken:
		default:
			t.Errorf("refresh %d: %v; want success, %s or %s", i, r.err, identity.CodeTokenReused, identity.CodeInvalidToken)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d refreshes of one token succeeded; want exactly 1", len(winners))
	}
	if reused == 0 {
		t.Fatalf("no refresh saw the replay")
	}
	// The replay ended the session, winner included.
	if g.stored(t, sid) != nil {
		t.Fatal("the session survived concurrent uses of one refresh token")
	}
	if !g.revoked.has(sid) {
		t.Error("OnRevoke not called with the session")
	}
	_, err := g.svc.Refresh(ctx, winners[0].RefreshToken)
	wantCode(t, err, identity.CodeInvalidToken)
	// A copy of the winner's session may linger in the cache if it was
	// stored after the replay dropped it (see
	// TestRefreshReplayDuringRotationEndsSession); once CacheTTL has
	// passed it must be refused whatever the interleaving.
	g.clock.Advance(cacheTTL + time.Second)
	g.wantNoBearer(t, winners[0].AccessToken)
	g.wantNoBearer(t, pair.AccessToken)
}

// The winner of a refresh caches its session after its update commits; a
// replay that ends the session in between must not be undone by that
// cache write, or the winner's access token works on after revocation.
func TestRefreshReplayDuringRotationEndsSession(t *testing.T) {
	hooks := &hookStore{}
	g := newGateway(t, setup{wrap: func(s session.Store) session.Store { hooks.Store = s; return hooks }})
	g.mustUser(t, "alice", "")
	ctx := context.Background()
	pair, p := g.mustLoginAPI(t, "alice")

	var replayErr error
	hooks.mu.Lock()
	hooks.afterUpdate = func(*session.Session) {
		// The rotation has committed; the copy presents the old token.
		_, replayErr = g.svc.Refresh(ctx, pair.RefreshToken)
	}
	hooks.mu.Unlock()

	won, err := g.svc.Refresh(ctx, pair.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	wantCode(t, replayErr, identity.CodeTokenReused)
	if g.stored(t, p.Session.ID) != nil {
		t.Fatal("the session survived the replay")
	}
	if p := g.fromBearer(t, won.AccessToken); p != nil {
		t.Fatalf("FromBearer of the winner's token = a principal of session %s after the replay ended it: a stale cache write revived it", p.Session.ID)
	}
}
