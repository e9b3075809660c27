package identity_test

import (
	"context"
	"strings"
	"testing"

	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/user"
)

func ptr[T any](v T) *T { return &v }

func TestUpdateUser(t *testing.T) {
	ctx := context.Background()
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	g.mustUser(t, "bob", "")
	res := g.mustLogin(t, "alice")

	u, err := g.svc.UpdateUser(ctx, alice.ID, identity.UserChanges{
		Username: ptr(" Alicia "), Email: ptr("ALICIA@example.com"),
		Metadata: map[string]any{"team": "infra"}, Policy: ptr("big"), Role: ptr(user.RoleAuditor),
	})
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "alicia" || u.Email != "alicia@example.com" || u.Metadata["team"] != "infra" ||
		identity.PolicyOf(u) != "big" || !u.HasRole(user.RoleAuditor) || len(u.Roles) != 1 {
		t.Fatalf("updated = %+v", u)
	}
	// The session goes on, and sees the new role at once.
	if p := g.wantLive(t, res.CookieToken, alice.ID); !p.User.HasRole(user.RoleAuditor) || p.User.Username != "alicia" {
		t.Fatalf("principal after the update: %+v", p.User)
	}
	// Metadata is replaced, the policy kept; then the policy removed.
	u, err = g.svc.UpdateUser(ctx, alice.ID, identity.UserChanges{Metadata: map[string]any{"desk": 4.0}})
	if err != nil || u.Metadata["team"] != nil || u.Metadata["desk"] != 4.0 || identity.PolicyOf(u) != "big" {
		t.Fatalf("metadata replaced = %+v, %v", u, err)
	}
	u, err = g.svc.UpdateUser(ctx, alice.ID, identity.UserChanges{Policy: ptr("")})
	if err != nil || identity.PolicyOf(u) != "" || u.Metadata["desk"] != 4.0 {
		t.Fatalf("policy removed = %+v, %v", u, err)
	}
	stored, _ := g.users.Get(ctx, alice.ID)
	if stored.Username != "alicia" || stored.Metadata["desk"] != 4.0 || stored.Metadata[identity.PolicyKey] != nil {
		t.Fatalf("stored = %+v", stored)
	}

	// Disabling ends every session.
	if _, err := g.svc.UpdateUser(ctx, alice.ID, identity.UserChanges{Active: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	g.wantEnded(t, res.CookieToken)
	if _, err := g.svc.Login(ctx, "alicia", goodPW, client); identity.CodeOf(err) != identity.CodeAccountDisabled {
		t.Fatalf("login when disabled: %v", err)
	}

	for name, tc := range map[string]struct {
		ch   identity.UserChanges
		code string
	}{
		"username taken": {identity.UserChanges{Username: ptr("bob")}, identity.CodeConflict},
		"email taken":    {identity.UserChanges{Email: ptr("bob@example.com")}, identity.CodeConflict},
		"bad username":   {identity.UserChanges{Username: ptr("a")}, identity.CodeInvalidInput},
		"bad email":      {identity.UserChanges{Email: ptr("nope")}, identity.CodeInvalidInput},
		"bad role":       {identity.UserChanges{Role: ptr("root")}, identity.CodeInvalidInput},
		"bad policy":     {identity.UserChanges{Policy: ptr("../etc")}, identity.CodeInvalidInput},
		"policy in meta": {identity.UserChanges{Metadata: map[string]any{"policy": "x"}}, identity.CodeInvalidInput},
		"empty meta key": {identity.UserChanges{Metadata: map[string]any{"": 1}}, identity.CodeInvalidInput},
		"huge metadata":  {identity.UserChanges{Metadata: map[string]any{"x": strings.Repeat("x", 20000)}}, identity.CodeInvalidInput},
		"invalid UTF-8":  {identity.UserChanges{Metadata: map[string]any{"\xff": 1}}, identity.CodeInvalidInput},
		"no such user":   {identity.UserChanges{Role: ptr(user.RoleUser)}, identity.CodeNotFound},
	} {
		t.Run(name, func(t *testing.T) {
			id := alice.ID
			if name == "no such user" {
				id = "00000000-0000-0000-0000-000000000000"
			}
			_, err := g.svc.UpdateUser(ctx, id, tc.ch)
			wantCode(t, err, tc.code)
		})
	}
	if (identity.UserChanges{}).Empty() != true || (identity.UserChanges{Active: ptr(true)}).Empty() {
		t.Error("Empty")
	}
}

func TestAdminSessions(t *testing.T) {
	ctx := context.Background()
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	bob := g.mustUser(t, "bob", "")
	a1 := g.mustLogin(t, "alice")
	g.mustLogin(t, "alice")
	b1 := g.mustLogin(t, "bob")

	all, err := g.svc.AllSessions(ctx)
	if err != nil || len(all) != 3 {
		t.Fatalf("AllSessions = %d, %v", len(all), err)
	}
	ended, err := g.svc.EndSession(ctx, b1.Principal.Session.ID)
	if err != nil || ended.UserID != bob.ID {
		t.Fatalf("EndSession = %+v, %v", ended, err)
	}
	g.wantEnded(t, b1.CookieToken)
	if !g.revoked.has(b1.Principal.Session.ID) {
		t.Error("the ended session's connections were not closed")
	}
	g.wantLive(t, a1.CookieToken, alice.ID)
	for _, id := range []string{b1.Principal.Session.ID, "", "nope", strings.Repeat("x", 200), "\x00"} {
		_, err := g.svc.EndSession(ctx, id)
		wantCode(t, err, identity.CodeNotFound)
	}
	if all, _ := g.svc.AllSessions(ctx); len(all) != 2 {
		t.Fatalf("after ending one: %d sessions", len(all))
	}
}
