package gateway

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/user"
)

// TestDashboardAddPeople: an administrator creates an account and an
// invitation from the users page; both are recorded as the admin API
// records them; bad input is told on a page and creates nothing; users
// and auditors cannot add anyone.
func TestDashboardAddPeople(t *testing.T) {
	e := newAdminEnv(t, adminSetup{policies: []string{"default", "big"}})
	ctx := context.Background()
	root, bob, watcher, nobody := e.browser("root"), e.browser("bob"), e.browser("watcher"), e.anonymous()

	page := root.get("/admin/users")
	wantPage(t, "users page", page, http.StatusOK, `action="/admin/users/create"`, `action="/admin/users/invite"`,
		`autocomplete="new-password"`, `<option value="big">big</option>`)
	if r := watcher.get("/admin/users"); strings.Contains(r.body, "/admin/users/create") {
		t.Error("an auditor's users page offers to create accounts")
	}
	exists := func(name string) bool {
		_, err := e.db.Users().GetByUsername(ctx, name)
		return err == nil
	}

	t.Run("create", func(t *testing.T) {
		e.t, root.t = t, t
		mark := e.audit.mark()
		r := root.post("/admin/users/create", url.Values{"username": {"carol"}, "email": {"carol@example.com"},
			"password": {multiPW}, "role": {user.RoleAuditor}, "policy": {"big"}, "back": {"/admin/users"}})
		carol, err := e.db.Users().GetByUsername(ctx, "carol")
		if err != nil {
			t.Fatalf("no account after the form (%d %.300s): %v", r.status, r.body, err)
		}
		if r.status != http.StatusSeeOther || r.location != "/admin/users/"+carol.ID {
			t.Fatalf("created: %d to %q, want 303 to the new account's page", r.status, r.location)
		}
		if !carol.HasRole(user.RoleAuditor) || identity.PolicyOf(carol) != "big" || carol.Email != "carol@example.com" {
			t.Errorf("account %+v: want auditor, policy big", carol)
		}
		wantPage(t, "the new account's page", root.get(r.location), http.StatusOK, "carol is created")
		var action *audit.Event
		for _, ev := range e.audit.since(mark) {
			if ev.EventType == audit.AdminAction {
				action = &ev
			}
		}
		if action == nil || action.Metadata["action"] != "user.create" || action.Metadata["actor"] != "root" || action.UserID != carol.ID {
			t.Errorf("admin.action = %+v", action)
		}
		if _, err := e.id.Login(ctx, "carol", multiPW, identity.Client{IP: "192.0.2.9"}); err != nil {
			t.Errorf("carol cannot sign in with the password chosen for her: %v", err)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		e.t, root.t = t, t
		for _, c := range []struct {
			name   string
			form   url.Values
			status int
			says   string
		}{
			{"no email", url.Values{"username": {"dora"}, "password": {multiPW}}, http.StatusBadRequest, `&#34;email&#34; is required`},
			{"bad email", url.Values{"username": {"dora"}, "email": {"not-an-address"}, "password": {multiPW}}, http.StatusBadRequest, "email"},
			{"short password", url.Values{"username": {"dora"}, "email": {"dora@example.com"}, "password": {"short"}}, http.StatusBadRequest, "password"},
			{"bad role", url.Values{"username": {"dora"}, "email": {"dora@example.com"}, "password": {multiPW}, "role": {"god"}}, http.StatusBadRequest, "role"},
			{"unknown policy", url.Values{"username": {"dora"}, "email": {"dora@example.com"}, "password": {multiPW}, "policy": {"huge"}}, http.StatusBadRequest, "huge"},
			{"taken username", url.Values{"username": {"bob"}, "email": {"dora@example.com"}, "password": {multiPW}}, http.StatusConflict, "already taken"},
		} {
			r := root.post("/admin/users/create", c.form)
			wantPage(t, c.name, r, c.status, c.says)
			if exists("dora") {
				t.Fatalf("%s: an account was created", c.name)
			}
		}
	})

	t.Run("invite", func(t *testing.T) {
		e.t, root.t = t, t
		mark := e.audit.mark()
		r := root.post("/admin/users/invite", url.Values{"email": {"erin@example.com"}, "role": {user.RoleUser}, "ttl": {"24h"}})
		wantPage(t, "invitation page", r, http.StatusOK, "erin@example.com", "Invitation created")
		if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
			t.Errorf("the invitation page may be cached: Cache-Control %q", cc)
		}
		m := regexp.MustCompile(`id="invite-url" type="text" readonly value="([^"]+)"`).FindStringSubmatch(r.body)
		if m == nil {
			t.Fatalf("no invitation link on the page: %.600s", r.body)
		}
		link, err := url.Parse(html.UnescapeString(m[1]))
		if err != nil || link.Path != "/signup" || link.Host == "" || link.Query().Get("invite") == "" {
			t.Fatalf("invitation link %q", m[1])
		}
		// erin follows the link in a browser of her own and signs up.
		guest := e.anonymous()
		guest.t = t
		signup := guest.get(link.RequestURI())
		wantPage(t, "the sign-up page of the link", signup, http.StatusOK, `name="invite" value="`+link.Query().Get("invite")+`"`)
		r = guest.post("/signup", url.Values{"invite": {link.Query().Get("invite")}, "username": {"erin"},
			"email": {"erin@example.com"}, "password": {multiPW}})
		if r.status != http.StatusSeeOther || r.location != "/" || !strings.Contains(strings.Join(r.header.Values("Set-Cookie"), "\n"), "codehub_session=") {
			t.Fatalf("signing up with the link: %d to %q: %.400s", r.status, r.location, r.body)
		}
		erin, err := e.db.Users().GetByUsername(ctx, "erin")
		if err != nil || !erin.HasRole(user.RoleUser) {
			t.Fatalf("erin after signing up: %+v, %v", erin, err)
		}
		again := e.anonymous()
		again.t = t
		r = again.post("/signup", url.Values{"invite": {link.Query().Get("invite")}, "username": {"frank"},
			"email": {"erin@example.com"}, "password": {multiPW}})
		if r.status == http.StatusSeeOther || exists("frank") {
			t.Errorf("the link signed up a second account: %d", r.status)
		}
		var actions []string
		for _, ev := range e.audit.since(mark) {
			if ev.EventType == audit.AdminAction {
				actions = append(actions, ev.Metadata["action"].(string))
			}
		}
		if !slices.Contains(actions, "invite.create") {
			t.Errorf("admin actions %v, want invite.create", actions)
		}
		wantPage(t, "bad validity", root.post("/admin/users/invite", url.Values{"ttl": {"forever"}}), http.StatusBadRequest, "ttl")
		wantPage(t, "bad role", root.post("/admin/users/invite", url.Values{"role": {"god"}}), http.StatusBadRequest, "role")
	})

	t.Run("not theirs to do", func(t *testing.T) {
		e.t, root.t, bob.t, watcher.t, nobody.t = t, t, t, t, t
		mark := e.audit.mark()
		form := url.Values{"username": {"mallory"}, "email": {"mallory@example.com"}, "password": {multiPW}, "role": {user.RoleAdmin}}
		for _, path := range []string{"/admin/users/create", "/admin/users/invite"} {
			if r := nobody.post(path, cloneForm(form)); r.status != http.StatusUnauthorized {
				t.Errorf("anonymous %s: %d", path, r.status)
			}
			wantPage(t, "user "+path, bob.post(path, cloneForm(form)), http.StatusNotFound)
			wantPage(t, "auditor "+path, watcher.post(path, cloneForm(form)), http.StatusForbidden)
		}
		if exists("mallory") {
			t.Error("a refused form created an account")
		}
		if evs := e.audit.since(mark); len(evs) != 0 {
			t.Errorf("refused forms recorded %v", evs)
		}
	})
}

// TestDashboardNoInvitesWhenClosed: with registration "admin" the users
// page says how to turn invitations on instead of offering a link nobody
// could use.
func TestDashboardNoInvitesWhenClosed(t *testing.T) {
	e := newAdminEnv(t, adminSetup{registration: identity.RegisterAdmin})
	r := e.browser("root").get("/admin/users")
	wantPage(t, "users page", r, http.StatusOK, `action="/admin/users/create"`, "Invitations are off")
	if strings.Contains(r.body, `action="/admin/users/invite"`) {
		t.Error("the page offers invitations that could not be redeemed")
	}
}
