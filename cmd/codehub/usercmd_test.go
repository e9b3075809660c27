package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// listedUser is a user as `codehub user list --json` prints it.
type listedUser struct {
	ID          string    `json:"id"`
	Username    string    `json:"username"`
	Email       string    `json:"email"`
	Roles       []string  `json:"roles"`
	Active      bool      `json:"isActive"`
	LockedUntil time.Time `json:"lockedUntil"`
}

// listUsers runs `codehub user list --json`.
func listUsers(t *testing.T, cfg string, extra ...string) map[string]listedUser {
	t.Helper()
	out := mustCLI(t, cfg, "", append([]string{"list", "--json"}, extra...)...)
	if strings.Contains(out, "argon2") {
		t.Fatalf("user list --json shows password hashes:\n%s", out)
	}
	var us []listedUser
	if err := json.Unmarshal([]byte(out), &us); err != nil {
		t.Fatalf("user list --json: %v\n%s", err, out)
	}
	m := map[string]listedUser{}
	for _, u := range us {
		m[u.Username] = u
	}
	return m
}

// tableRow returns the line of `codehub user list` about username.
func tableRow(t *testing.T, cfg, username string) string {
	t.Helper()
	out := mustCLI(t, cfg, "", "list")
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, username+" ") {
			return line
		}
	}
	t.Fatalf("user list shows no %s:\n%s", username, out)
	return ""
}

var (
	createdRE   = regexp.MustCompile(`(?m)^created (\w+) (\S+) <(\S+)> \(([0-9a-f-]{36})\)$`)
	generatedRE = regexp.MustCompile(`(?m)^password: (\S+)$`)
	inviteRE    = regexp.MustCompile(`(?m)^  /signup\?invite=([A-Za-z0-9_-]+)$`)
)

// TestUserCommand manages accounts with `codehub user` against a SQLite
// database that a running gateway shares, and checks each change where it
// matters: at sign-in.
func TestUserCommand(t *testing.T) {
	t.Parallel()
	cfg := multiConfig{Upstream: startStandInIDE(t), Registration: "invite"}.write(t)

	// An empty database lists no one, as an empty JSON array.
	if out := strings.TrimSpace(mustCLI(t, cfg, "", "list", "--json")); out != "[]" {
		t.Errorf("user list --json on an empty database: %q, want []", out)
	}

	// create, with the password on stdin, then with a generated one.
	out := mustCLI(t, cfg, "alice-pass-01\n", "create", "--username", "Alice", "--email", "Alice@Example.com", "--password-stdin")
	m := createdRE.FindStringSubmatch(out)
	if m == nil || m[1] != "user" || m[2] != "alice" || m[3] != "alice@example.com" {
		t.Fatalf("create alice: %q", out)
	}
	if generatedRE.MatchString(out) {
		t.Errorf("create --password-stdin printed a password: %q", out)
	}
	aliceID := m[4]
	out = mustCLI(t, cfg, "", "create", "--username", "bob", "--email", "bob@example.com")
	g := generatedRE.FindStringSubmatch(out)
	if !createdRE.MatchString(out) || g == nil || len(g[1]) < 16 {
		t.Fatalf("create bob with a generated password: %q", out)
	}
	bobPW := g[1]

	// Refused creations.
	for _, c := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"alice-pass-01\n", []string{"--username", "alice", "--email", "other@example.com"}, "already taken"},
		{"alice-pass-01\n", []string{"--username", "other", "--email", "ALICE@example.com"}, "already taken"},
		{"short\n", []string{"--username", "carl", "--email", "carl@example.com"}, "at least 10 characters"},
		{"", []string{"--username", "carl", "--email", "carl@example.com"}, "empty password"},
		{"carl-pass-001\n", []string{"--username", "c", "--email", "carl@example.com"}, "a username is 3 to 40 characters"},
		{"carl-pass-001\n", []string{"--username", "carl", "--email", "carl"}, "not a valid email address"},
		{"carl-pass-001\n", []string{"--username", "carl", "--email", "carl@example.com", "--role", "root"}, `unknown role "root"`},
	} {
		_, _, err := runCLI(t, cfg, c.stdin, append([]string{"create", "--password-stdin"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("create %v: %v, want an error with %q", c.args, err, c.want)
		}
	}

	// list: a table, JSON, and a search.
	out = mustCLI(t, cfg, "", "list")
	for _, want := range []string{"USERNAME", "EMAIL", "ROLES", "STATE", "alice@example.com", "bob@example.com", "2 user(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("user list lacks %q:\n%s", want, out)
		}
	}
	if row := tableRow(t, cfg, "alice"); !strings.Contains(row, "active") || !strings.Contains(row, "never") || !strings.Contains(row, aliceID) {
		t.Errorf("alice's row: %q", row)
	}
	us := listUsers(t, cfg)
	if len(us) != 2 || us["alice"].ID != aliceID || !us["alice"].Active || strings.Join(us["bob"].Roles, ",") != "user" {
		t.Fatalf("user list --json: %+v", us)
	}
	if us := listUsers(t, cfg, "--search", "ALI"); len(us) != 1 || us["alice"].ID == "" {
		t.Errorf("list --search ALI: %+v", us)
	}
	if out := strings.TrimSpace(mustCLI(t, cfg, "", "list", "--json", "--search", "nobody-matches")); out != "[]" {
		t.Errorf("user list --json matching no one: %q, want []", out)
	}

	// set-role.
	if out := mustCLI(t, cfg, "", "set-role", "bob", "admin"); out != "bob is now admin\n" {
		t.Errorf("set-role: %q", out)
	}
	if r := listUsers(t, cfg)["bob"].Roles; strings.Join(r, ",") != "admin" {
		t.Errorf("bob's roles after set-role: %v", r)
	}

	// A gateway on the same database sees every change.
	gw := startMultiGateway(t, cfg)
	if r, who := getMe(t, gw, bearer(apiLogin(t, gw, "bob", bobPW).AccessToken)...); r.Status != http.StatusOK ||
		strings.Join(who.User.Roles, ",") != "admin" {
		t.Fatalf("bob with his generated password: %d %s", r.Status, r.Body)
	}
	tok := mustFormLogin(t, gw, "alice", "alice-pass-01")
	wantIDE(t, gw, tok, "/before-lock")

	// lock ends alice's sessions, on the running gateway too, and refuses
	// her sign-in; unlock lets her in again.
	if out := mustCLI(t, cfg, "", "lock", "alice"); out != "alice is locked; their sessions are ended\n" {
		t.Errorf("lock: %q", out)
	}
	if row := tableRow(t, cfg, "alice"); !strings.Contains(row, "locked until") {
		t.Errorf("alice's row when locked: %q", row)
	}
	if u := listUsers(t, cfg)["alice"]; !u.LockedUntil.After(time.Now().AddDate(50, 0, 0)) {
		t.Errorf("lock without --for: locked until %v, want (nearly) forever", u.LockedUntil)
	}
	eventually(t, guard, "alice's session still works after `user lock`", func() bool {
		return ideGet(t, gw, "/locked", tok).Status == http.StatusUnauthorized
	})
	if resp, _ := formLogin(t, gw, "alice", "alice-pass-01"); resp.StatusCode != http.StatusLocked {
		t.Errorf("sign-in of a locked user: %d, want 423", resp.StatusCode)
	}
	r := postJSON(t, gw.URL+"/api/v1/auth/login", map[string]string{"username": "alice", "password": "alice-pass-01"})
	if r.Status != http.StatusLocked || r.errorBody(t).Error.Code != "account_locked" || r.Header.Get("Retry-After") == "" {
		t.Errorf("API sign-in of a locked user: %d %s", r.Status, r.Body)
	}
	if out := mustCLI(t, cfg, "", "unlock", "alice"); out != "alice is unlocked\n" {
		t.Errorf("unlock: %q", out)
	}
	if row := tableRow(t, cfg, "alice"); !strings.Contains(row, " active ") {
		t.Errorf("alice's row after unlock: %q", row)
	}
	if u := listUsers(t, cfg)["alice"]; !u.LockedUntil.IsZero() && u.LockedUntil.After(time.Now()) {
		t.Errorf("after unlock: locked until %v", u.LockedUntil)
	}
	tok = mustFormLogin(t, gw, "alice", "alice-pass-01")
	// lock --for: until a time, printed.
	if out := mustCLI(t, cfg, "", "lock", "alice", "--for", "1h"); !strings.HasPrefix(out, "alice is locked until ") {
		t.Errorf("lock --for 1h: %q", out)
	}
	if u := listUsers(t, cfg)["alice"]; u.LockedUntil.Before(time.Now().Add(50*time.Minute)) || u.LockedUntil.After(time.Now().Add(61*time.Minute)) {
		t.Errorf("lock --for 1h: locked until %v", u.LockedUntil)
	}
	mustCLI(t, cfg, "", "unlock", "alice")

	// set-password: the old password fails, the new one works, sessions end.
	tok = mustFormLogin(t, gw, "alice", "alice-pass-01")
	if out := mustCLI(t, cfg, "alice-pass-02\n", "set-password", "alice", "--password-stdin"); out != "password of alice changed; their sessions are ended\n" {
		t.Errorf("set-password: %q", out)
	}
	if resp, _ := formLogin(t, gw, "alice", "alice-pass-01"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("sign-in with the old password: %d, want 401", resp.StatusCode)
	}
	wantIDE(t, gw, mustFormLogin(t, gw, "alice", "alice-pass-02"), "/new-password")
	eventually(t, guard, "alice's old session still works after `user set-password`", func() bool {
		return ideGet(t, gw, "/old-session", tok).Status == http.StatusUnauthorized
	})
	out = mustCLI(t, cfg, "", "set-password", "alice")
	g = generatedRE.FindStringSubmatch(out)
	if g == nil {
		t.Fatalf("set-password without --password-stdin: %q", out)
	}
	apiLogin(t, gw, "alice", g[1])

	// invite: the printed link registers one account, with the role given.
	out = mustCLI(t, cfg, "", "invite", "--email", "carol@example.com", "--role", "auditor", "--ttl", "1h")
	inv := inviteRE.FindStringSubmatch(out)
	if inv == nil || !strings.Contains(out, "invite for carol@example.com") {
		t.Fatalf("invite: %q", out)
	}
	register := func(invite string) reply {
		return postJSON(t, gw.URL+"/api/v1/auth/register", map[string]string{
			"username": "carol", "email": "carol@example.com", "password": "carol-pass-01", "invite": invite,
		})
	}
	if r := register(""); r.Status != http.StatusForbidden || r.errorBody(t).Error.Code != "registration_closed" {
		t.Errorf("registration without an invite: %d %s", r.Status, r.Body)
	}
	if r := register(inv[1]); r.Status != http.StatusCreated || !strings.Contains(string(r.Body), `"auditor"`) {
		t.Fatalf("registration with the invite: %d %s", r.Status, r.Body)
	}
	if r := register(inv[1]); r.Status != http.StatusBadRequest || r.errorBody(t).Error.Code != "invalid_invite" {
		t.Errorf("second use of an invite: %d %s", r.Status, r.Body)
	}
	apiLogin(t, gw, "carol", "carol-pass-01")
	// In "admin" registration, invite says invites will not work.
	adminCfg := multiConfig{Upstream: "http://127.0.0.1:1"}.write(t)
	if out := mustCLI(t, adminCfg, "", "invite"); !inviteRE.MatchString(out) || !strings.Contains(out, "invite for anyone") ||
		!strings.Contains(out, `set it to "invite"`) {
		t.Errorf("invite under registration \"admin\": %q", out)
	}

	// delete: refused without --yes when stdin is not a terminal.
	_, _, err := runCLI(t, cfg, "y\n", "delete", "bob")
	if err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Errorf("delete without --yes: %v, want a refusal that mentions --yes", err)
	}
	if _, ok := listUsers(t, cfg)["bob"]; !ok {
		t.Fatal("delete without --yes deleted bob")
	}
	bobTok := mustFormLogin(t, gw, "bob", bobPW)
	if out := mustCLI(t, cfg, "", "delete", "bob", "--yes"); out != "deleted bob\n" {
		t.Errorf("delete --yes: %q", out)
	}
	if _, ok := listUsers(t, cfg)["bob"]; ok {
		t.Error("bob still listed after delete --yes")
	}
	if r := postJSON(t, gw.URL+"/api/v1/auth/login", map[string]string{"username": "bob", "password": bobPW}); r.Status != http.StatusUnauthorized {
		t.Errorf("sign-in of a deleted user: %d %s", r.Status, r.Body)
	}
	eventually(t, guard, "a deleted user's session still works", func() bool {
		return ideGet(t, gw, "/deleted", bobTok).Status == http.StatusUnauthorized
	})

	// Unknown users.
	for _, args := range [][]string{
		{"set-role", "nobody", "admin"}, {"delete", "nobody", "--yes"}, {"lock", "nobody"},
		{"unlock", "nobody"}, {"set-password", "nobody", "--password-stdin"}, {"delete", "nobody@example.com", "--yes"},
	} {
		_, _, err := runCLI(t, cfg, "nobody-pass-01\n", args...)
		var ue usageError
		if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), `no user "nobody`) {
			t.Errorf("user %s: %v, want `no user \"nobody...\"`", strings.Join(args, " "), err)
		}
	}
	if _, _, err := runCLI(t, cfg, "", "set-role", "alice", "root"); err == nil || !strings.Contains(err.Error(), `unknown role "root"`) {
		t.Errorf("set-role to an unknown role: %v", err)
	}
}

// TestUserCommandUsage: mistakes on the command line are usage errors
// (exit 2), found before any database is opened.
func TestUserCommandUsage(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "never-read.hcl")
	for _, args := range [][]string{
		{"frobnicate"},
		{"delete"},
		{"delete", "a", "b"},
		{"set-role", "alice"},
		{"set-password"},
		{"lock"},
		{"unlock", "a", "b"},
		{"list", "extra"},
		{"invite", "extra"},
		{"create", "--no-such-flag"},
		{"lock", "alice", "--for", "soon"},
	} {
		_, _, err := runCLI(t, cfg, "", args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("user %s: %v, want a usage error", strings.Join(args, " "), err)
		}
	}
	// create checks its flags once the configuration is open.
	mcfg := multiConfig{Upstream: "http://127.0.0.1:1"}.write(t)
	for _, args := range [][]string{{"create", "--email", "a@example.com"}, {"create", "--username", "alice"}} {
		_, _, err := runCLI(t, mcfg, "", args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--username and --email") {
			t.Errorf("user %s: %v, want a usage error naming the flags", strings.Join(args, " "), err)
		}
	}
	// help goes to stdout and is no error.
	for _, args := range [][]string{nil, {"help"}, {"--help"}} {
		out, _, err := runCLI(t, "", "", args...)
		if err != nil || !strings.Contains(out, "usage: codehub user COMMAND") {
			t.Errorf("user %v: %v %q", args, err, out)
		}
	}
}

// TestUserCommandSingleUser: accounts exist only in multi-user mode; the
// commands say so instead of failing obscurely.
func TestUserCommandSingleUser(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, config string }{
		{"password", "password = \"a-single-password\"\n"},
		{"generated-password", ""},
		{"auth-none", "auth = \"none\"\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "codehub.hcl")
			body := "deployment_mode = \"single\"\n" + c.config + fmt.Sprintf("data_dir = %q\n", filepath.Join(dir, "data"))
			if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			var err error
			func() {
				defer func() {
					if v := recover(); v != nil {
						err = fmt.Errorf("panic: %v", v)
					}
				}()
				_, _, err = runCLI(t, file, "", "list")
			}()
			if err == nil || !strings.Contains(err.Error(), "multi-user mode") || !strings.Contains(err.Error(), "deployment-mode") {
				t.Fatalf("user list with a single-user configuration: %v, want an error about multi-user mode", err)
			}
		})
	}
}

// TestUserCommandMultiByDefault: with nothing setting the deployment mode
// (make run starts multi-user mode with a flag), the account commands
// work on the multi-user database instead of refusing.
func TestUserCommandMultiByDefault(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "codehub.hcl")
	body := fmt.Sprintf("data_dir = %q\nmulti_user {\n  auth {\n    password {\n      memory_kib = 8192\n      iterations = 1\n    }\n  }\n}\n", filepath.Join(dir, "data"))
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, file, "A-long-enough-password-1\n", "create", "--username", "zoe", "--email", "zoe@example.com", "--password-stdin")
	if out := mustCLI(t, file, "", "list"); !strings.Contains(out, "zoe") {
		t.Fatalf("user list: %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "codehub.db")); err != nil {
		t.Errorf("the multi-user database: %v", err)
	}
}
