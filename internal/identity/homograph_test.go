package identity_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/identity"
)

// Letters of other scripts that look like Latin ones.
const (
	cyrA   = "\u0430" // а
	cyrE   = "\u0435" // е
	greekO = "\u03bf" // ο
	kelvin = "\u212a" // K, which strings.ToLower turns into "k"
)

// TestHomographAccountsRefused: no account is created, renamed or invited
// with a name that imitates another's; an internationalized domain is kept
// in its ASCII form, the one every list shows.
func TestHomographAccountsRefused(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{Registration: identity.RegisterOpen}})
	ctx := context.Background()
	alice := g.mustUser(t, "alice", "")

	for _, in := range []identity.NewUser{
		{Username: "alice2", Email: cyrA + "lice@example.com"},
		{Username: "alice3", Email: "alic" + cyrE + "@example.com"},
		{Username: "bob", Email: "b" + greekO + "b@example.com"},
		{Username: cyrA + "lice", Email: "alice4@example.com"},
		{Username: kelvin + "ate", Email: "kate@example.com"},
	} {
		in.Password = goodPW
		u, err := g.svc.CreateUser(ctx, in)
		ie := wantCode(t, err, identity.CodeInvalidInput)
		if u != nil {
			t.Errorf("CreateUser(%q, %q) made an account", in.Username, in.Email)
		}
		if !strings.Contains(ie.Message, "ASCII") {
			t.Errorf("CreateUser(%q, %q): message %q does not say what is wrong", in.Username, in.Email, ie.Message)
		}
		_, err = g.svc.Register(ctx, in, "")
		wantCode(t, err, identity.CodeInvalidInput)
	}
	_, _, err := g.svc.CreateInvite(ctx, "admin", cyrA+"lice@example.com", "", time.Hour)
	wantCode(t, err, identity.CodeInvalidInput)

	bad := cyrA + "lice@example.com"
	_, err = g.svc.UpdateUser(ctx, alice.ID, identity.UserChanges{Email: &bad})
	wantCode(t, err, identity.CodeInvalidInput)
	badName := "al" + cyrE + "x"
	_, err = g.svc.UpdateUser(ctx, alice.ID, identity.UserChanges{Username: &badName})
	wantCode(t, err, identity.CodeInvalidInput)

	// A domain in another script is kept in the form that shows it for
	// what it is.
	u, err := g.svc.CreateUser(ctx, identity.NewUser{Username: "carol", Email: "carol@ex" + cyrA + "mple.com", Password: goodPW})
	if err != nil || u.Email != "carol@xn--exmple-4nf.com" {
		t.Fatalf("CreateUser with a Cyrillic domain = %+v, %v; want carol@xn--exmple-4nf.com", u, err)
	}
	idn := "carol@BÜCHER.de"
	u, err = g.svc.UpdateUser(ctx, u.ID, identity.UserChanges{Email: &idn})
	if err != nil || u.Email != "carol@xn--bcher-kva.de" {
		t.Fatalf("UpdateUser to an internationalized domain = %+v, %v", u, err)
	}
}

// TestHomographSignIn: signing in with a homograph of a real account's
// name, even with that account's password, is answered exactly as a name
// that does not exist, and never signs anyone in.
func TestHomographSignIn(t *testing.T) {
	g := newGateway(t, setup{})
	ctx := context.Background()
	g.mustUser(t, "alice", "")
	g.mustUser(t, "kate", "")

	_, unknown := g.svc.Login(ctx, "nobody@example.com", goodPW, client)
	want := wantCode(t, unknown, identity.CodeInvalidCredentials)
	for _, name := range []string{
		cyrA + "lice", cyrA + "lice@example.com", "alice@ex" + cyrA + "mple.com", "alic" + cyrE + "@example.com",
		"alice@exa\u200dmple.com", kelvin + "ate", kelvin + "ate@example.com", "KATE@EXAMPLE.COM" + greekO,
	} {
		res, err := g.svc.Login(ctx, name, goodPW, client)
		if res != nil {
			t.Errorf("Login(%q) signed in %s", name, res.Principal.User.Username)
			continue
		}
		got := wantCode(t, err, identity.CodeInvalidCredentials)
		if got.Message != want.Message || got.RetryAfter != want.RetryAfter {
			t.Errorf("Login(%q) = %+v; an unknown name gets %+v", name, got, want)
		}
		if _, _, err := g.svc.LoginAPI(ctx, name, goodPW, client); err == nil || err.Error() != unknown.Error() {
			t.Errorf("LoginAPI(%q) = %v; an unknown name gets %v", name, err, unknown)
		}
	}
	// The real names still work.
	g.mustLogin(t, "alice@example.com")
	g.mustLogin(t, "KATE")
}
