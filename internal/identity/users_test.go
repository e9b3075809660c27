package identity_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/user"
)

// unknownID is a well-formed user id no user has.
const unknownID = "4a0c7c8e-59a4-4a69-9d56-5a1ce2e4a1b0"

func TestCreateUser(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{MinPasswordLength: 10, RequireMixed: true}})
	ctx := context.Background()

	u, err := g.svc.CreateUser(ctx, identity.NewUser{
		Username: "  Grace  ", Email: " Grace@Example.COM ", Password: goodPW,
		Metadata: map[string]any{"team": "compilers"},
	})
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if u.Username != "grace" || u.Email != "grace@example.com" {
		t.Errorf("created %q <%s>; want grace <grace@example.com>", u.Username, u.Email)
	}
	if !slices.Equal(u.Roles, []string{user.RoleUser}) || !u.Active || !u.CreatedAt.Equal(epoch) || !u.UpdatedAt.Equal(epoch) {
		t.Errorf("created %+v; want an active user with role user, created at %v", u, epoch)
	}
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$") || strings.Contains(u.PasswordHash, goodPW) {
		t.Errorf("password hash %q; want an argon2id hash", u.PasswordHash)
	}
	stored, err := g.users.Get(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Username != "grace" || stored.Email != "grace@example.com" || stored.Metadata["team"] != "compilers" {
		t.Errorf("stored %+v", stored)
	}
	if _, err := g.svc.Login(ctx, "GRACE", goodPW, client); err != nil {
		t.Errorf("Login: %v", err)
	}

	admin, err := g.svc.CreateUser(ctx, identity.NewUser{Username: "root-1", Email: "root@example.com", Password: goodPW, Role: user.RoleAdmin})
	if err != nil || !admin.IsAdmin() {
		t.Fatalf("CreateUser(admin) = %+v, %v", admin, err)
	}

	valid := identity.NewUser{Username: "heidi", Email: "heidi@example.com", Password: goodPW}
	tests := []struct {
		name string
		edit func(*identity.NewUser)
		code string
	}{
		{"empty username", func(n *identity.NewUser) { n.Username = "" }, identity.CodeInvalidInput},
		{"username too short", func(n *identity.NewUser) { n.Username = "ab" }, identity.CodeInvalidInput},
		{"username too long", func(n *identity.NewUser) { n.Username = strings.Repeat("a", 41) }, identity.CodeInvalidInput},
		{"username starts with a dash", func(n *identity.NewUser) { n.Username = "-heidi" }, identity.CodeInvalidInput},
		{"username ends with a dot", func(n *identity.NewUser) { n.Username = "heidi." }, identity.CodeInvalidInput},
		{"username with a space", func(n *identity.NewUser) { n.Username = "heidi klum" }, identity.CodeInvalidInput},
		{"username with an at", func(n *identity.NewUser) { n.Username = "heidi@home" }, identity.CodeInvalidInput},
		{"username not ascii", func(n *identity.NewUser) { n.Username = "héidi" }, identity.CodeInvalidInput},
		{"empty email", func(n *identity.NewUser) { n.Email = "" }, identity.CodeInvalidInput},
		{"email without at", func(n *identity.NewUser) { n.Email = "heidi.example.com" }, identity.CodeInvalidInput},
		{"email without domain dot", func(n *identity.NewUser) { n.Email = "heidi@example" }, identity.CodeInvalidInput},
		{"email with space", func(n *identity.NewUser) { n.Email = "he idi@example.com" }, identity.CodeInvalidInput},
		{"email with two ats", func(n *identity.NewUser) { n.Email = "heidi@x@example.com" }, identity.CodeInvalidInput},
		{"unknown role", func(n *identity.NewUser) { n.Role = "root" }, identity.CodeInvalidInput},
		{"role in capitals", func(n *identity.NewUser) { n.Role = "Admin" }, identity.CodeInvalidInput},
		{"password too short", func(n *identity.NewUser) { n.Password = "abc-12345" }, identity.CodeWeakPassword},
		{"password short in characters", func(n *identity.NewUser) { n.Password = "éééé1" }, identity.CodeWeakPassword},
		{"password too long", func(n *identity.NewUser) { n.Password = strings.Repeat("a1", 257) }, identity.CodeWeakPassword},
		{"password letters only", func(n *identity.NewUser) { n.Password = "onlylettershere" }, identity.CodeWeakPassword},
		{"password digits only", func(n *identity.NewUser) { n.Password = "12345678901234" }, identity.CodeWeakPassword},
		{"password is the username", func(n *identity.NewUser) { n.Username, n.Password = "heidi-2024", "Heidi-2024" }, identity.CodeWeakPassword},
		{"password is the username, spaced", func(n *identity.NewUser) { n.Username, n.Password = "heidi-2024", " heidi-2024 " }, identity.CodeWeakPassword},
		{"username taken", func(n *identity.NewUser) { n.Username = "GRACE" }, identity.CodeConflict},
		{"email taken", func(n *identity.NewUser) { n.Email = "GRACE@example.com" }, identity.CodeConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := valid
			tt.edit(&in)
			u, err := g.svc.CreateUser(ctx, in)
			wantCode(t, err, tt.code)
			if u != nil {
				t.Errorf("CreateUser returned a user with its error")
			}
		})
	}
	if n, err := g.svc.CountUsers(ctx); err != nil || n != 2 {
		t.Errorf("CountUsers = %d, %v; want 2", n, err)
	}

	// Characters are counted, not bytes; mixed means a letter and
	// something else.
	for _, pw := range []string{"ééééééééé1", "pass phrase with spaces", "ПарольДлинный9"} {
		in := valid
		in.Username, in.Email, in.Password = "ok-"+strings.Repeat("x", len(pw)%7+1), "ok"+string(rune('a'+len(pw)%26))+"@example.com", pw
		if _, err := g.svc.CreateUser(ctx, in); err != nil {
			t.Errorf("CreateUser with password %q: %v", pw, err)
		}
	}
}

func TestCheckPassword(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{MinPasswordLength: 8}})
	for _, tt := range []struct {
		pw, username string
		ok           bool
	}{
		{"12345678", "", true}, // RequireMixed is off
		{"1234567", "", false},
		{"alice-in-wonderland", "alice-in-wonderland", false},
		{"ALICE-IN-WONDERLAND", "alice-in-wonderland", false},
		{"alice-in-wonderland", "", true},
		{strings.Repeat("x", 512), "", true},
		{strings.Repeat("x", 513), "", false},
	} {
		err := g.svc.CheckPassword(tt.pw, tt.username)
		if tt.ok && err != nil {
			t.Errorf("CheckPassword(%.20q, %q) = %v; want nil", tt.pw, tt.username, err)
		}
		if !tt.ok {
			wantCode(t, err, identity.CodeWeakPassword)
		}
	}
}

func hashInvite(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestRegisterClosed(t *testing.T) {
	for _, mode := range []string{identity.RegisterAdmin, "", "bogus"} {
		t.Run("mode "+mode, func(t *testing.T) {
			g := newGateway(t, setup{cfg: identity.Config{Registration: mode}})
			ctx := context.Background()
			tok, _, err := g.svc.CreateInvite(ctx, "admin", "", user.RoleAdmin, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			for _, invite := range []string{"", tok} {
				u, err := g.svc.Register(ctx, identity.NewUser{Username: "dave", Email: "dave@example.com", Password: goodPW}, invite)
				wantCode(t, err, identity.CodeRegistrationClosed)
				if u != nil {
					t.Error("Register returned a user with its error")
				}
			}
			if n, _ := g.svc.CountUsers(ctx); n != 0 {
				t.Errorf("%d users after refused registrations", n)
			}
		})
	}
}

func TestRegisterOpen(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{Registration: identity.RegisterOpen}})
	ctx := context.Background()
	if g.svc.Registration() != identity.RegisterOpen {
		t.Errorf("Registration() = %q", g.svc.Registration())
	}

	// Asking for a role does not give it.
	u, err := g.svc.Register(ctx, identity.NewUser{Username: "Dave", Email: "Dave@Example.com", Password: goodPW, Role: user.RoleAdmin}, "")
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if u.Username != "dave" || u.Email != "dave@example.com" || !slices.Equal(u.Roles, []string{user.RoleUser}) || !u.Active {
		t.Fatalf("registered %+v; want active dave with role user", u)
	}
	g.mustLogin(t, "dave")

	_, err = g.svc.Register(ctx, identity.NewUser{Username: "dave", Email: "other@example.com", Password: goodPW}, "")
	wantCode(t, err, identity.CodeConflict)
	_, err = g.svc.Register(ctx, identity.NewUser{Username: "x", Email: "x@example.com", Password: goodPW}, "")
	wantCode(t, err, identity.CodeInvalidInput)
	_, err = g.svc.Register(ctx, identity.NewUser{Username: "erin", Email: "erin@example.com", Password: "short"}, "")
	wantCode(t, err, identity.CodeWeakPassword)

	// An invite still works in open mode, and gives its role.
	tok, _, err := g.svc.CreateInvite(ctx, "admin", "", user.RoleAuditor, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	u, err = g.svc.Register(ctx, identity.NewUser{Username: "erin", Email: "erin@example.com", Password: goodPW}, tok)
	if err != nil || !slices.Equal(u.Roles, []string{user.RoleAuditor}) {
		t.Fatalf("Register with an auditor invite = %+v, %v", u, err)
	}
	_, err = g.svc.Register(ctx, identity.NewUser{Username: "frank", Email: "frank@example.com", Password: goodPW}, tok)
	wantCode(t, err, identity.CodeInvalidInvite)
}

func TestRegisterInvite(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{Registration: identity.RegisterInvite}})
	admin := g.mustUser(t, "admin", user.RoleAdmin)
	ctx := context.Background()
	in := func(name string) identity.NewUser {
		return identity.NewUser{Username: name, Email: name + "@example.com", Password: goodPW}
	}
	register := func(n identity.NewUser, tok string) (*user.User, error) { return g.svc.Register(ctx, n, tok) }

	_, err := register(in("dave"), "")
	wantCode(t, err, identity.CodeRegistrationClosed)
	_, err = register(in("dave"), "no-such-invite")
	wantCode(t, err, identity.CodeInvalidInvite)
	_, err = register(in("dave"), strings.Repeat("a", 129))
	wantCode(t, err, identity.CodeInvalidInvite)

	tok, inv, err := g.svc.CreateInvite(ctx, admin.ID, "", user.RoleAuditor, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if tok == "" || inv.TokenHash != hashInvite(tok) || strings.Contains(inv.TokenHash, tok) {
		t.Fatalf("invite token %q, stored hash %q; want the hash of the token only", tok, inv.TokenHash)
	}

	// Input that cannot make an account does not spend the invite.
	for _, tt := range []struct {
		name string
		in   identity.NewUser
		code string
	}{
		{"bad username", identity.NewUser{Username: "-x-", Email: "x@example.com", Password: goodPW}, identity.CodeInvalidInput},
		{"bad email", identity.NewUser{Username: "dave", Email: "dave", Password: goodPW}, identity.CodeInvalidInput},
		{"weak password", identity.NewUser{Username: "dave", Email: "dave@example.com", Password: "short"}, identity.CodeWeakPassword},
		{"password is the username", identity.NewUser{Username: "dave-the-man", Email: "dave@example.com", Password: "DAVE-THE-MAN"}, identity.CodeWeakPassword},
		{"username taken", identity.NewUser{Username: "Admin", Email: "dave@example.com", Password: goodPW}, identity.CodeConflict},
		{"email taken", identity.NewUser{Username: "dave", Email: "admin@example.com", Password: goodPW}, identity.CodeConflict},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, err := register(tt.in, tok)
			wantCode(t, err, tt.code)
			if u != nil {
				t.Error("Register returned a user with its error")
			}
		})
	}

	u, err := register(identity.NewUser{Username: "dave", Email: "dave@example.com", Password: goodPW, Role: user.RoleAdmin}, tok)
	if err != nil {
		t.Fatalf("Register with the invite after failed tries: %v", err)
	}
	if !slices.Equal(u.Roles, []string{user.RoleAuditor}) {
		t.Errorf("roles = %v; want the invite's [auditor]", u.Roles)
	}
	g.mustLogin(t, "dave")
	_, err = register(in("erin"), tok)
	wantCode(t, err, identity.CodeInvalidInvite)
	if _, err := g.svc.UserByName(ctx, "erin"); identity.CodeOf(err) != identity.CodeNotFound {
		t.Errorf("a used invite created erin: %v", err)
	}

	t.Run("bound to an email", func(t *testing.T) {
		tok, inv, err := g.svc.CreateInvite(ctx, admin.ID, " Erin@Example.com ", "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if inv.Email != "erin@example.com" || inv.Role != user.RoleUser {
			t.Fatalf("invite for %q role %q; want erin@example.com, user", inv.Email, inv.Role)
		}
		_, err = register(in("frank"), tok)
		wantCode(t, err, identity.CodeInvalidInvite)
		if _, err := g.svc.UserByName(ctx, "frank"); identity.CodeOf(err) != identity.CodeNotFound {
			t.Errorf("frank was created with erin's invite: %v", err)
		}
		u, err := register(identity.NewUser{Username: "erin", Email: "ERIN@example.com", Password: goodPW}, tok)
		if err != nil {
			t.Fatalf("Register with the right email after a wrong one: %v", err)
		}
		if !slices.Equal(u.Roles, []string{user.RoleUser}) || u.Email != "erin@example.com" {
			t.Errorf("registered %+v", u)
		}
	})

	t.Run("expired", func(t *testing.T) {
		tok, _, err := g.svc.CreateInvite(ctx, admin.ID, "", "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		g.clock.Advance(time.Hour)
		_, err = register(in("grace"), tok)
		wantCode(t, err, identity.CodeInvalidInvite)
	})

	t.Run("just in time", func(t *testing.T) {
		tok, _, err := g.svc.CreateInvite(ctx, admin.ID, "", "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		g.clock.Advance(time.Hour - time.Second)
		if _, err := register(in("heidi"), tok); err != nil {
			t.Fatalf("Register a second before the invite expires: %v", err)
		}
	})
}

// An invite records who used it; that must be the account it created.
func TestRegisterInviteRecordsNewUser(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{Registration: identity.RegisterInvite}})
	ctx := context.Background()
	tok, _, err := g.svc.CreateInvite(ctx, "admin", "", "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	u, err := g.svc.Register(ctx, identity.NewUser{Username: "dave", Email: "dave@example.com", Password: goodPW}, tok)
	if err != nil {
		t.Fatal(err)
	}
	var usedBy string
	if err := g.db.SQL().QueryRowContext(ctx, "SELECT used_by FROM invites WHERE token_hash = ?", hashInvite(tok)).Scan(&usedBy); err != nil {
		t.Fatal(err)
	}
	if usedBy != u.ID {
		t.Errorf("invite used by %q; want the new account %q", usedBy, u.ID)
	}
}

func TestCreateInvite(t *testing.T) {
	g := newGateway(t, setup{cfg: identity.Config{Registration: identity.RegisterInvite}})
	ctx := context.Background()

	tests := []struct {
		name, email, role string
		ttl               time.Duration
		code              string // "" for success
	}{
		{"defaults", "", "", time.Hour, ""},
		{"admin", "", user.RoleAdmin, time.Hour, ""},
		{"auditor for an email", "a@example.com", user.RoleAuditor, time.Hour, ""},
		{"one second", "", "", time.Second, ""},
		{"thirty days", "", "", 30 * 24 * time.Hour, ""},
		{"unknown role", "", "root", time.Hour, identity.CodeInvalidInput},
		{"bad email", "not-an-email", "", time.Hour, identity.CodeInvalidInput},
		{"zero ttl", "", "", 0, identity.CodeInvalidInput},
		{"negative ttl", "", "", -time.Hour, identity.CodeInvalidInput},
		{"ttl too long", "", "", 30*24*time.Hour + time.Second, identity.CodeInvalidInput},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, inv, err := g.svc.CreateInvite(ctx, "admin-id", tt.email, tt.role, tt.ttl)
			if tt.code != "" {
				wantCode(t, err, tt.code)
				if tok != "" || inv != nil {
					t.Error("CreateInvite returned an invite with its error")
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateInvite: %v", err)
			}
			wantRole := tt.role
			if wantRole == "" {
				wantRole = user.RoleUser
			}
			if inv.Role != wantRole || inv.Email != tt.email || inv.CreatedBy != "admin-id" ||
				!inv.CreatedAt.Equal(g.clock.Now()) || !inv.ExpiresAt.Equal(g.clock.Now().Add(tt.ttl)) {
				t.Errorf("invite = %+v; want role %s, email %q, by admin-id, expiring in %v", inv, wantRole, tt.email, tt.ttl)
			}
			if len(tok) < 32 || seen[tok] {
				t.Errorf("token %q is short or repeated", tok)
			}
			seen[tok] = true
		})
	}
}

func TestSetPassword(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	ctx := context.Background()
	var s []string
	var cookies []string
	for range 3 {
		res := g.mustLogin(t, "alice")
		s, cookies = append(s, res.Principal.Session.ID), append(cookies, res.CookieToken)
		g.clock.Advance(time.Second)
	}

	wantCode(t, g.svc.SetPassword(ctx, alice.ID, "short", ""), identity.CodeWeakPassword)
	wantCode(t, g.svc.SetPassword(ctx, unknownID, otherPW, ""), identity.CodeNotFound)
	for _, c := range cookies {
		g.wantLive(t, c, alice.ID)
	}
	g.mustLogin(t, "alice") // the old password still works

	if err := g.svc.SetPassword(ctx, alice.ID, otherPW, s[1]); err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
	g.wantEnded(t, cookies[0])
	g.wantEnded(t, cookies[2])
	g.wantLive(t, cookies[1], alice.ID)
	if !g.revoked.has(s[0]) || !g.revoked.has(s[2]) || g.revoked.has(s[1]) {
		t.Error("OnRevoke not told of exactly the other sessions")
	}
	_, err := g.svc.Login(ctx, "alice", goodPW, client)
	wantCode(t, err, identity.CodeInvalidCredentials)
	if _, err := g.svc.Login(ctx, "alice", otherPW, client); err != nil {
		t.Fatalf("Login with the new password: %v", err)
	}

	// Without keep, every session ends.
	if err := g.svc.SetPassword(ctx, alice.ID, goodPW, ""); err != nil {
		t.Fatal(err)
	}
	if ids := g.sessionIDs(t, alice.ID); len(ids) != 0 {
		t.Errorf("sessions after SetPassword without keep: %v", ids)
	}
}

func TestChangePassword(t *testing.T) {
	g := newGateway(t, setup{lock: lockPolicy})
	alice := g.mustUser(t, "alice", "")
	ctx := context.Background()
	cur := g.mustLogin(t, "alice")
	other := g.mustLogin(t, "alice")
	pair, _ := g.mustLoginAPI(t, "alice")
	p := g.wantLive(t, cur.CookieToken, alice.ID)

	wantCode(t, g.svc.ChangePassword(ctx, p, "wrong-password-1", otherPW), identity.CodeInvalidCredentials)
	wantCode(t, g.svc.ChangePassword(ctx, p, goodPW, "short"), identity.CodeWeakPassword)
	wantCode(t, g.svc.ChangePassword(ctx, p, goodPW, "alice"), identity.CodeWeakPassword)
	g.wantLive(t, other.CookieToken, alice.ID)

	if err := g.svc.ChangePassword(ctx, p, goodPW, otherPW); err != nil {
		t.Fatalf("ChangePassword: %v", err)
	}
	g.wantLive(t, cur.CookieToken, alice.ID)
	g.wantEnded(t, other.CookieToken)
	g.wantNoBearer(t, pair.AccessToken)
	if !g.revoked.has(other.Principal.Session.ID) || g.revoked.has(cur.Principal.Session.ID) {
		t.Error("OnRevoke not told of exactly the other sessions")
	}
	_, err := g.svc.Login(ctx, "alice", goodPW, client)
	wantCode(t, err, identity.CodeInvalidCredentials)
	if _, err := g.svc.Login(ctx, "alice", otherPW, client); err != nil {
		t.Fatalf("Login with the new password: %v", err)
	}

	// Wrong current passwords count towards the lock.
	p = g.wantLive(t, cur.CookieToken, alice.ID)
	wantCode(t, g.svc.ChangePassword(ctx, p, "wrong-password-1", goodPW), identity.CodeInvalidCredentials)
	wantCode(t, g.svc.ChangePassword(ctx, p, "wrong-password-1", goodPW), identity.CodeInvalidCredentials)
	wantCode(t, g.svc.ChangePassword(ctx, p, "wrong-password-1", goodPW), identity.CodeAccountLocked)
	wantCode(t, g.svc.ChangePassword(ctx, p, otherPW, goodPW), identity.CodeAccountLocked)
}

func TestSetRole(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	ctx := context.Background()
	res := g.mustLogin(t, "alice")
	g.wantLive(t, res.CookieToken, alice.ID) // user cached

	for _, bad := range []string{"", "root", "Admin"} {
		_, err := g.svc.SetRole(ctx, alice.ID, bad)
		wantCode(t, err, identity.CodeInvalidInput)
	}
	_, err := g.svc.SetRole(ctx, unknownID, user.RoleAdmin)
	wantCode(t, err, identity.CodeNotFound)

	g.clock.Advance(time.Minute)
	u, err := g.svc.SetRole(ctx, alice.ID, user.RoleAuditor)
	if err != nil {
		t.Fatalf("SetRole: %v", err)
	}
	if !slices.Equal(u.Roles, []string{user.RoleAuditor}) || !u.UpdatedAt.Equal(g.clock.Now()) {
		t.Errorf("SetRole returned roles %v updated %v", u.Roles, u.UpdatedAt)
	}
	if p := g.wantLive(t, res.CookieToken, alice.ID); !slices.Equal(p.User.Roles, []string{user.RoleAuditor}) {
		t.Errorf("principal roles = %v right after SetRole; want [auditor]", p.User.Roles)
	}
	got, err := g.svc.User(ctx, alice.ID)
	if err != nil || !got.HasRole(user.RoleAuditor) {
		t.Errorf("User = %+v, %v", got, err)
	}
}

func TestSetActive(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	bob := g.mustUser(t, "bob", "")
	ctx := context.Background()
	res := g.mustLogin(t, "alice")
	pair, _ := g.mustLoginAPI(t, "alice")
	b := g.mustLogin(t, "bob")

	u, err := g.svc.SetActive(ctx, alice.ID, false)
	if err != nil || u.Active {
		t.Fatalf("SetActive(false) = %+v, %v", u, err)
	}
	g.wantEnded(t, res.CookieToken)
	g.wantNoBearer(t, pair.AccessToken)
	if !g.revoked.has(res.Principal.Session.ID) {
		t.Error("OnRevoke not told of the disabled user's session")
	}
	g.wantLive(t, b.CookieToken, bob.ID)

	u, err = g.svc.SetActive(ctx, alice.ID, true)
	if err != nil || !u.Active {
		t.Fatalf("SetActive(true) = %+v, %v", u, err)
	}
	g.mustLogin(t, "alice")
	_, err = g.svc.SetActive(ctx, unknownID, false)
	wantCode(t, err, identity.CodeNotFound)
}

func TestDeleteUser(t *testing.T) {
	g := newGateway(t, setup{})
	alice := g.mustUser(t, "alice", "")
	bob := g.mustUser(t, "bob", "")
	ctx := context.Background()
	res := g.mustLogin(t, "alice")
	pair, p := g.mustLoginAPI(t, "alice")
	b := g.mustLogin(t, "bob")
	g.wantLive(t, res.CookieToken, alice.ID)

	if err := g.svc.DeleteUser(ctx, alice.ID); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	g.wantEnded(t, res.CookieToken)
	g.wantNoBearer(t, pair.AccessToken)
	for _, id := range []string{res.Principal.Session.ID, p.Session.ID} {
		if !g.revoked.has(id) {
			t.Errorf("OnRevoke not told of session %s", id)
		}
		if g.stored(t, id) != nil {
			t.Errorf("session %s still stored", id)
		}
	}
	g.wantLive(t, b.CookieToken, bob.ID)

	_, err := g.svc.User(ctx, alice.ID)
	wantCode(t, err, identity.CodeNotFound)
	_, err = g.svc.UserByName(ctx, "alice")
	wantCode(t, err, identity.CodeNotFound)
	_, err = g.svc.Login(ctx, "alice", goodPW, client)
	wantCode(t, err, identity.CodeInvalidCredentials)

	ops := map[string]func() error{
		"DeleteUser":  func() error { return g.svc.DeleteUser(ctx, alice.ID) },
		"SetPassword": func() error { return g.svc.SetPassword(ctx, alice.ID, otherPW, "") },
		"SetRole":     func() error { _, err := g.svc.SetRole(ctx, alice.ID, user.RoleAdmin); return err },
		"SetActive":   func() error { _, err := g.svc.SetActive(ctx, alice.ID, true); return err },
		"Lock":        func() error { return g.svc.Lock(ctx, alice.ID, epoch.Add(time.Hour)) },
		"Unlock":      func() error { return g.svc.Unlock(ctx, alice.ID) },
		"User":        func() error { _, err := g.svc.User(ctx, alice.ID); return err },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) { wantCode(t, op(), identity.CodeNotFound) })
	}
	if n, _ := g.svc.CountUsers(ctx); n != 1 {
		t.Errorf("CountUsers = %d; want 1", n)
	}
}

func TestUserLookups(t *testing.T) {
	g := newGateway(t, setup{})
	ctx := context.Background()
	for _, name := range []string{"carol", "alice", "bob", "alina"} {
		g.mustUser(t, name, "")
	}

	for _, name := range []string{"alice", "ALICE", " alice ", "alice@example.com", "Alice@Example.com"} {
		u, err := g.svc.UserByName(ctx, name)
		if err != nil || u.Username != "alice" {
			t.Errorf("UserByName(%q) = %+v, %v; want alice", name, u, err)
		}
	}
	_, err := g.svc.UserByName(ctx, "nobody")
	wantCode(t, err, identity.CodeNotFound)
	_, err = g.svc.User(ctx, "not-a-uuid")
	wantCode(t, err, identity.CodeNotFound)

	us, total, err := g.svc.ListUsers(ctx, user.ListOptions{})
	if err != nil || total != 4 || len(us) != 4 || us[0].Username != "alice" || us[3].Username != "carol" {
		t.Fatalf("ListUsers = %d users of %d, %v; want all four by username", len(us), total, err)
	}
	us, total, err = g.svc.ListUsers(ctx, user.ListOptions{Search: "AL", Offset: 1, Limit: 1})
	if err != nil || total != 2 || len(us) != 1 || us[0].Username != "alina" {
		t.Fatalf("ListUsers(al, 1, 1) = %v of %d, %v; want [alina] of 2", us, total, err)
	}
	if n, err := g.svc.CountUsers(ctx); err != nil || n != 4 {
		t.Errorf("CountUsers = %d, %v", n, err)
	}
	if !g.svc.MultiUser() || !g.svc.AskUsername() {
		t.Error("a multi-user Service says it is not, or needs no username")
	}
}
