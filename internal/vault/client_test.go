// Against a real dev Vault (VAULT_ADDR, VAULT_TOKEN): see the top of
// helpers_test.go.

package vault

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/testenv"
	fakevault "github.com/codehub-dev/codehub/internal/testfake/vault"
	"github.com/hashicorp/vault/api"
)

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]Config{
		"no address":        {Auth: Auth{Token: "x"}},
		"unknown method":    {Address: "http://127.0.0.1:1", Auth: Auth{Method: "ldap"}},
		"token without one": {Address: "http://127.0.0.1:1"},
		"approle no file":   {Address: "http://127.0.0.1:1", Auth: Auth{Method: MethodAppRole, RoleID: "r"}},
		"jwt no role":       {Address: "http://127.0.0.1:1", Auth: Auth{Method: MethodJWT, JWTFile: "/f"}},
		"negative timeout":  {Address: "http://127.0.0.1:1", Auth: Auth{Token: "x"}, Timeout: -1},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(context.Background(), cfg, testenv.Logger(t)); err == nil {
				t.Fatal("New succeeded")
			}
		})
	}
}

// TestLogin: every auth method logs in, with the policies of its role.
func TestLogin(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	root := env.Client(t)
	pol := policy(t, root, "sys/health")
	r := tokenRole{policies: []string{pol}, ttl: time.Minute, maxTTL: 10 * time.Minute}
	tok := mustWrite(t, root, "auth/token/create", map[string]any{"policies": []string{pol}, "ttl": "1m"}).Auth.ClientToken

	for name, auth := range map[string]Auth{
		"token":      {Method: MethodToken, Token: tok},
		"root token": {Token: env.Token},
		"approle":    appRole(t, env, r),
		"jwt":        jwtRole(t, env, r),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, env, auth)
			s, err := c.API().Auth().Token().LookupSelf()
			if err != nil {
				t.Fatalf("lookup-self with the token logged in with: %v", err)
			}
			policies, _ := s.TokenPolicies()
			if name == "root token" {
				if !c.TokenExpiry().IsZero() {
					t.Errorf("the root token expires at %s", c.TokenExpiry())
				}
				return
			}
			if !slices.Contains(policies, pol) {
				t.Errorf("policies %v, want %s", policies, pol)
			}
			if exp := c.TokenExpiry(); !exp.After(time.Now()) {
				t.Errorf("TokenExpiry = %s, want in the future", exp)
			}
		})
	}
}

// TestLoginFails: a failed first login fails New, saying how and why.
func TestLoginFails(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	good := appRole(t, env, tokenRole{policies: []string{"default"}, ttl: time.Minute})

	wrong := good
	wrong.SecretIDFile = writeFile(t, "wrong", "not-the-secret-id")
	missing := good
	missing.SecretIDFile = "/nonexistent/secret-id"
	jwtMount := env.MountAuth(t, "jwt")
	for name, tc := range map[string]struct {
		auth   Auth
		status int
	}{
		"wrong secret id":   {wrong, http.StatusBadRequest},
		"missing file":      {missing, 0},
		"unknown token":     {Auth{Token: "hvs.unknown"}, http.StatusForbidden},
		"jwt of wrong role": {Auth{Method: MethodJWT, Role: "nonexistent", Mount: jwtMount, JWTFile: writeFile(t, "jwt", "x.y.z")}, http.StatusBadRequest},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(context.Background(), Config{Address: env.Addr, Auth: tc.auth, MaxRetries: -1}, testenv.Logger(t))
			if err == nil {
				t.Fatal("New succeeded")
			}
			var re *api.ResponseError
			if tc.status != 0 && (!errors.As(err, &re) || re.StatusCode != tc.status) {
				t.Errorf("New = %v, want a %d from Vault", err, tc.status)
			}
			if !strings.Contains(err.Error(), "vault: ") {
				t.Errorf("error %q does not say it is Vault's", err)
			}
		})
	}
}

// TestRenewal: the token is renewed before it expires, and stays the same.
func TestRenewal(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	root := env.Client(t)
	for name, auth := range map[string]func(t *testing.T) Auth{
		"approle": func(t *testing.T) Auth {
			return appRole(t, env, tokenRole{policies: []string{"default"}, ttl: 2 * time.Second, maxTTL: time.Hour})
		},
		"token": func(t *testing.T) Auth {
			return Auth{Token: mustWrite(t, root, "auth/token/create", map[string]any{
				"policies": []string{"default"}, "ttl": "2s", "explicit_max_ttl": "1h"}).Auth.ClientToken}
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, env, auth(t))
			first, exp := c.API().Token(), c.TokenExpiry()
			// Two renewals: each moves the expiry past the one before.
			for i := range 2 {
				prev := c.TokenExpiry()
				eventually(t, 20*time.Second, "the token is renewed", func() bool { return c.TokenExpiry().After(prev) })
				t.Logf("renewal %d: expires %s", i+1, c.TokenExpiry())
			}
			if !c.TokenExpiry().After(exp) {
				t.Error("the expiry did not move")
			}
			if c.API().Token() != first {
				t.Error("the client logged in again instead of renewing")
			}
			if _, err := c.API().Auth().Token().LookupSelf(); err != nil {
				t.Errorf("the renewed token: %v", err)
			}
			if env.Fake != nil && env.Fake.Requests("auth/token/renew-self") == 0 {
				t.Error("no renew-self reached Vault")
			}
		})
	}
}

// TestRelogin: when the token reaches its maximum TTL, or cannot be
// renewed at all, the client logs in again before it expires.
func TestRelogin(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	capped := tokenRole{policies: []string{"default"}, ttl: 2 * time.Second, maxTTL: 3 * time.Second}
	batch := tokenRole{policies: []string{"default"}, ttl: 3 * time.Second, batch: true}
	for name, auth := range map[string]Auth{
		"approle max ttl":     appRole(t, env, capped),
		"jwt max ttl":         jwtRole(t, env, capped),
		"approle batch token": appRole(t, env, batch),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, env, auth)
			seen := []string{c.API().Token()}
			for range 2 {
				eventually(t, 30*time.Second, "the client logs in again", func() bool {
					return c.API().Token() != seen[len(seen)-1]
				})
				seen = append(seen, c.API().Token())
				if _, err := c.API().Auth().Token().LookupSelf(); err != nil {
					t.Fatalf("the new token: %v", err)
				}
			}
			t.Logf("tokens: %d", len(seen))
		})
	}
}

// TestReloginAfterOutage: Vault is unreachable until the token has
// expired; once it is back, the client logs in again.
func TestReloginAfterOutage(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	env.NeedFake(t, "makes Vault unreachable")
	root := env.Client(t)
	c := newClient(t, env, appRole(t, env, tokenRole{policies: []string{"default"}, ttl: 2 * time.Second, maxTTL: time.Hour}))
	first := c.API().Token()

	env.Fake.Down()
	eventually(t, 20*time.Second, "the token expires while Vault is down", func() bool {
		return time.Now().After(c.TokenExpiry().Add(100 * time.Millisecond))
	})
	env.Fake.Up()
	if _, err := withToken(t, root, first).Auth().Token().LookupSelf(); err == nil {
		t.Fatal("the old token still works")
	}
	eventually(t, 60*time.Second, "the client logs in again", func() bool { return c.API().Token() != first })
	if _, err := c.API().Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("the new token: %v", err)
	}
}

func TestCloseTwice(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	c := newClient(t, env, Auth{Token: env.Token})
	c.Close()
	c.Close()
}

func withToken(t *testing.T, c *api.Client, tok string) *api.Client {
	t.Helper()
	cc, err := c.Clone()
	if err != nil {
		t.Fatal(err)
	}
	cc.SetToken(tok)
	return cc
}
