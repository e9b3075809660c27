package identity_test

import (
	"context"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/auth"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/session/memory"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/user"
)

// singleUser is the single-user wiring of cmd/codehub: one password, no
// user store, memory sessions, no API tokens.
func singleUser(t *testing.T) (*identity.Service, *fakeClock, *revokeLog) {
	t.Helper()
	authn, err := auth.NewSinglePassword(goodPW, cheap)
	if err != nil {
		t.Fatal(err)
	}
	clock, revoked := newClock(), &revokeLog{}
	svc := identity.New(identity.Config{SessionTTL: time.Hour, Now: clock.Now}, identity.Deps{
		Authn: authn, Sessions: memory.New(clock.Now), OnRevoke: revoked.record,
	}, testenv.Logger(t))
	return svc, clock, revoked
}

func TestSingleUserMode(t *testing.T) {
	svc, clock, revoked := singleUser(t)
	ctx := context.Background()
	if svc.MultiUser() || svc.AskUsername() || svc.Registration() != identity.RegisterAdmin || svc.Tokens() != nil {
		t.Errorf("single-user Service: multi %v, ask username %v, registration %q, tokens %v",
			svc.MultiUser(), svc.AskUsername(), svc.Registration(), svc.Tokens())
	}

	var cookies []string
	for _, name := range []string{"", "anyone", "admin", "owner"} {
		res, err := svc.Login(ctx, name, goodPW, client)
		if err != nil {
			t.Fatalf("Login(%q): %v", name, err)
		}
		u := res.Principal.User
		if u.ID != auth.SingleUserID || !u.IsAdmin() || !u.Active {
			t.Fatalf("Login(%q) principal = %+v; want the active owner with role admin", name, u)
		}
		cookies = append(cookies, res.CookieToken)
	}
	_, err := svc.Login(ctx, "owner", "wrong-password-1", client)
	wantCode(t, err, identity.CodeInvalidCredentials)

	p, err := svc.FromCookie(ctx, cookies[0])
	if err != nil || p == nil || p.User.ID != auth.SingleUserID || p.Via != "cookie" {
		t.Fatalf("FromCookie = %+v, %v; want the owner", p, err)
	}
	u, err := svc.User(ctx, auth.SingleUserID)
	if err != nil || u.ID != auth.SingleUserID {
		t.Errorf("User(owner) = %+v, %v", u, err)
	}
	_, err = svc.User(ctx, "someone-else")
	wantCode(t, err, identity.CodeNotFound)

	notFound := map[string]func() error{
		"CreateUser": func() error {
			_, err := svc.CreateUser(ctx, identity.NewUser{Username: "alice", Email: "alice@example.com", Password: goodPW})
			return err
		},
		"Register": func() error {
			_, err := svc.Register(ctx, identity.NewUser{Username: "alice", Email: "alice@example.com", Password: goodPW}, "")
			return err
		},
		"CreateInvite": func() error { _, _, err := svc.CreateInvite(ctx, "owner", "", "", time.Hour); return err },
		"ListUsers":    func() error { _, _, err := svc.ListUsers(ctx, user.ListOptions{}); return err },
		"CountUsers":   func() error { _, err := svc.CountUsers(ctx); return err },
		"UserByName":   func() error { _, err := svc.UserByName(ctx, "owner"); return err },
		"SetRole":      func() error { _, err := svc.SetRole(ctx, auth.SingleUserID, user.RoleUser); return err },
		"SetActive":    func() error { _, err := svc.SetActive(ctx, auth.SingleUserID, false); return err },
		"SetPassword":  func() error { return svc.SetPassword(ctx, auth.SingleUserID, otherPW, "") },
		"Lock":         func() error { return svc.Lock(ctx, auth.SingleUserID, epoch.Add(time.Hour)) },
		"Unlock":       func() error { return svc.Unlock(ctx, auth.SingleUserID) },
		"DeleteUser":   func() error { return svc.DeleteUser(ctx, auth.SingleUserID) },
		"LoginAPI":     func() error { _, _, err := svc.LoginAPI(ctx, "owner", goodPW, client); return err },
		"Refresh":      func() error { _, err := svc.Refresh(ctx, "chr1.x.0.y"); return err },
	}
	for name, op := range notFound {
		t.Run(name, func(t *testing.T) { wantCode(t, op(), identity.CodeNotFound) })
	}
	if p, err := svc.FromBearer(ctx, "a.b.c"); p != nil || err != nil {
		t.Errorf("FromBearer without tokens = %+v, %v; want nil", p, err)
	}
	// The owner still works after all that.
	if p, _ := svc.FromCookie(ctx, cookies[1]); p == nil {
		t.Fatal("the owner's session ended")
	}

	// Sessions work as in multi-user mode.
	ss, err := svc.UserSessions(ctx, auth.SingleUserID)
	if err != nil || len(ss) != len(cookies) {
		t.Fatalf("UserSessions = %d, %v; want %d", len(ss), err, len(cookies))
	}
	first := session.IDFromToken(cookies[0])
	if err := svc.Logout(ctx, first); err != nil {
		t.Fatal(err)
	}
	if p, _ := svc.FromCookie(ctx, cookies[0]); p != nil {
		t.Error("FromCookie after Logout found the session")
	}
	if !revoked.has(first) {
		t.Error("OnRevoke not called on Logout")
	}
	if n, err := svc.RevokeUser(ctx, auth.SingleUserID, session.IDFromToken(cookies[1])); err != nil || n != len(cookies)-2 {
		t.Errorf("RevokeUser(keep) = %d, %v; want %d", n, err, len(cookies)-2)
	}
	if p, _ := svc.FromCookie(ctx, cookies[2]); p != nil {
		t.Error("RevokeUser(keep) left another session")
	}
	clock.Advance(time.Hour)
	if p, _ := svc.FromCookie(ctx, cookies[1]); p != nil {
		t.Error("a session outlived its TTL")
	}
}
