// The tests of this package run against the fake Vault of
// internal/testfake/vault, or against a real dev Vault when VAULT_ADDR and
// VAULT_TOKEN (a root token) are set:
//
//	vault server -dev -dev-root-token-id=root &
//	VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root \
//	  CODEHUB_E2E=require go test -race -count=1 ./internal/vault
//
// Nothing needs mounting beforehand. Each test enables the auth methods
// (approle, jwt) and the database secrets engine it uses at paths of its
// own, disables them at the end (which revokes what they issued), and
// writes its own AppRole roles, policies and database roles, with unique
// names. The JWT tests give their method a validation key as Nomad's JWKS
// would be (the gateway's is `vault auth enable -path=jwt-nomad jwt`).
// The database tests create a PostgreSQL database per test on
// CODEHUB_TEST_POSTGRES (default postgres@127.0.0.1:5432, trust
// authentication), which the Vault server must reach too, and point the
// engine at it themselves, as a tester would with
//
//	vault write <mount>/config/<db> plugin_name=postgresql-database-plugin \
//	    connection_url='postgres://postgres@127.0.0.1:5432/<db>?sslmode=disable' allowed_roles=<role>
//	vault write <mount>/roles/<role> db_name=<db> default_ttl=8s max_ttl=10s \
//	    creation_statements=@create.sql revocation_statements=@revoke.sql
//
// with the statements of the fake's TestDatabase (CreationStatements,
// RevocationStatements). Clients connect through a front that checks
// passwords against the server's roles, which trust authentication would
// not. Tests that make Vault unreachable need the fake and are skipped
// against a real Vault.
package vault

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/testenv"
	fakevault "github.com/codehub-dev/codehub/internal/testfake/vault"
	"github.com/hashicorp/vault/api"
)

// unique makes a name no other test run uses (a real Vault is shared).
func unique(name string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return name + "-" + hex.EncodeToString(b)
}

func mustWrite(t *testing.T, c *api.Client, path string, data map[string]any) *api.Secret {
	t.Helper()
	s, err := c.Logical().WriteWithContext(context.Background(), path, data)
	if err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return s
}

// writeFile writes a secret file (secret id, JWT) in t's directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// policy writes a policy allowing paths and returns its name.
func policy(t *testing.T, root *api.Client, paths ...string) string {
	t.Helper()
	name := unique("codehub-test")
	text := ""
	for _, p := range paths {
		text += fmt.Sprintf("path %q { capabilities = [\"create\", \"read\", \"update\"] }\n", p)
	}
	mustWrite(t, root, "sys/policies/acl/"+name, map[string]any{"policy": text})
	return name
}

// tokenRole is how the tokens of a test's auth role behave.
type tokenRole struct {
	policies    []string
	ttl, maxTTL time.Duration
	batch       bool
}

func (r tokenRole) data() map[string]any {
	d := map[string]any{"token_policies": r.policies, "token_ttl": int(r.ttl / time.Second),
		"token_max_ttl": int(r.maxTTL / time.Second), "token_type": "service"}
	if r.batch {
		d["token_type"] = "batch"
	}
	return d
}

// appRole enables an AppRole method of t's own, makes a role there and
// returns the Auth that logs in with it.
func appRole(t *testing.T, env *fakevault.Env, r tokenRole) Auth {
	t.Helper()
	root := env.Client(t)
	mount := env.MountAuth(t, "approle")
	role := unique("codehub-test")
	mustWrite(t, root, "auth/"+mount+"/role/"+role, r.data())
	idSec, err := root.Logical().Read("auth/" + mount + "/role/" + role + "/role-id")
	if err != nil || idSec == nil {
		t.Fatalf("role-id: %v", err)
	}
	sid := mustWrite(t, root, "auth/"+mount+"/role/"+role+"/secret-id", nil)
	return Auth{Method: MethodAppRole, RoleID: idSec.Data["role_id"].(string), Mount: mount,
		SecretIDFile: writeFile(t, "secret-id", sid.Data["secret_id"].(string))}
}

// jwtRole configures the jwt mount with a new issuer (Nomad's, in
// production) and a role bound to a job, and returns the Auth that logs
// in with a workload identity of that job.
func jwtRole(t *testing.T, env *fakevault.Env, r tokenRole) Auth {
	t.Helper()
	root := env.Client(t)
	mount := env.MountAuth(t, "jwt") // the validation key is the mount's
	issuer := fakevault.NewIssuer(t)
	mustWrite(t, root, "auth/"+mount+"/config", map[string]any{"jwt_validation_pubkeys": []string{issuer.PublicKeyPEM()}})
	role, job := unique("codehub-test"), unique("codehub")
	d := r.data()
	d["role_type"], d["user_claim"] = "jwt", "nomad_job_id"
	d["bound_audiences"] = []string{fakevault.NomadAudience}
	d["bound_claims"] = map[string]any{"nomad_namespace": "default", "nomad_job_id": job}
	mustWrite(t, root, "auth/"+mount+"/role/"+role, d)
	jwt := issuer.Sign(t, fakevault.NomadClaims(job, "gateway", time.Hour))
	return Auth{Method: MethodJWT, Role: role, Mount: mount, JWTFile: writeFile(t, "identity.jwt", jwt)}
}

// newClient logs in to env as auth says, for the rest of t. Requests are
// not retried, so an unreachable Vault answers at once.
func newClient(t *testing.T, env *fakevault.Env, auth Auth) *Client {
	t.Helper()
	c, err := New(context.Background(), Config{Address: env.Addr, Auth: auth, MaxRetries: -1, Timeout: 10 * time.Second},
		testenv.Logger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond every 20ms until it holds; it fails t after
// limit, a guard against hanging rather than a claim about timing.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not the case after %s: %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
