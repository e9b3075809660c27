// These tests pin the fake's behaviour to Vault's. Each runs against the
// fake, or against a real dev Vault when VAULT_ADDR and VAULT_TOKEN (a
// root token) are set; then run the same tests to check the fake against
// the real thing:
//
//	vault server -dev -dev-root-token-id=root &
//	VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root go test ./internal/testfake/vault
//
// Nothing needs mounting beforehand: each test enables the secrets
// engines and auth methods it uses at paths of its own and disables them
// at the end, and writes its own roles, policies and keys (with unique
// names). The database test configures its engine against the test
// PostgreSQL (CODEHUB_TEST_POSTGRES, default postgres@127.0.0.1:5432 with
// trust authentication), which the Vault server must be able to reach.
// Tests of what only the fake can do (make Vault unreachable) are skipped
// there.
package vault_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	fakevault "github.com/codehub-dev/codehub/internal/testfake/vault"
	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// unique makes a name no other test run uses (a real Vault is shared).
func unique(name string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return name + "-" + hex.EncodeToString(b)
}

func write(t *testing.T, c *api.Client, path string, data map[string]any) *api.Secret {
	t.Helper()
	s, err := c.Logical().WriteWithContext(context.Background(), path, data)
	if err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return s
}

func read(t *testing.T, c *api.Client, path string) *api.Secret {
	t.Helper()
	s, err := c.Logical().ReadWithContext(context.Background(), path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if s == nil {
		t.Fatalf("read %s: not found", path)
	}
	return s
}

// withToken is c with another token.
func withToken(t *testing.T, c *api.Client, tok string) *api.Client {
	t.Helper()
	cc, err := c.Clone()
	if err != nil {
		t.Fatal(err)
	}
	cc.SetToken(tok)
	return cc
}

// statusOf is the HTTP status of a vault/api error, or 0.
func statusOf(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// eventually polls cond every 20ms until it holds; it fails t if it has
// not after limit, a guard against hanging rather than a timing claim.
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

func seconds(t *testing.T, v any) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(fmt.Sprint(v), &n); err != nil {
		t.Fatalf("not a number of seconds: %v", v)
	}
	return n
}

func TestTokens(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	root := env.Client(t)
	transit := env.Mount(t, "transit")
	key := unique("fake-test")
	write(t, root, transit+"/keys/"+key, map[string]any{"type": "ed25519"})
	pol := unique("fake-test-keys")
	write(t, root, "sys/policies/acl/"+pol, map[string]any{
		"policy": fmt.Sprintf(`path "%s/keys/%s" { capabilities = ["read"] }`, transit, key)})

	sec := write(t, root, "auth/token/create", map[string]any{
		"policies": []string{pol}, "ttl": "3s", "explicit_max_ttl": "5s", "renewable": true})
	if sec.Auth == nil || sec.Auth.ClientToken == "" || !sec.Auth.Renewable || sec.Auth.LeaseDuration < 1 || sec.Auth.LeaseDuration > 3 {
		t.Fatalf("token/create: %+v", sec.Auth)
	}
	if !slices.Contains(sec.Auth.Policies, pol) || !slices.Contains(sec.Auth.Policies, "default") {
		t.Errorf("policies %v, want %s and default", sec.Auth.Policies, pol)
	}
	c := withToken(t, root, sec.Auth.ClientToken)

	look, err := c.Auth().Token().LookupSelf()
	if err != nil {
		t.Fatal(err)
	}
	if ttl, _ := look.TokenTTL(); ttl <= 0 || ttl > 3*time.Second {
		t.Errorf("lookup-self ttl = %s", ttl)
	}
	if r, _ := look.TokenIsRenewable(); !r {
		t.Error("lookup-self: not renewable")
	}

	// Policies, by path.
	if _, err := c.Logical().Read(transit + "/keys/" + key); err != nil {
		t.Errorf("read the key the policy allows: %v", err)
	}
	_, err = c.Logical().Write(transit+"/sign/"+key, map[string]any{"input": "aGk="})
	if statusOf(err) != http.StatusForbidden || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("sign without the policy = %v, want 403 permission denied", err)
	}

	// Renewal extends the TTL, never past the maximum.
	ren, err := c.Auth().Token().RenewSelf(60)
	if err != nil {
		t.Fatal(err)
	}
	if ren.Auth == nil || ren.Auth.LeaseDuration > 5 || ren.Auth.ClientToken != sec.Auth.ClientToken {
		t.Errorf("renew-self beyond the maximum: %+v", ren.Auth)
	}

	// Expiry: the token stops working.
	eventually(t, 20*time.Second, "the token expires", func() bool {
		_, err := c.Auth().Token().LookupSelf()
		return statusOf(err) == http.StatusForbidden
	})

	// Unknown tokens get 403 permission denied in Vault's error shape.
	_, err = withToken(t, root, "hvs.nonsense").Auth().Token().LookupSelf()
	var re *api.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden || !slices.Contains(re.Errors, "permission denied") {
		t.Errorf("unknown token: %v, want 403 {errors: [permission denied]}", err)
	}
}

func TestNonRenewableToken(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	root := env.Client(t)
	sec := write(t, root, "auth/token/create", map[string]any{"policies": []string{"default"}, "ttl": "1h", "renewable": false})
	if sec.Auth.Renewable {
		t.Fatal("renewable")
	}
	_, err := withToken(t, root, sec.Auth.ClientToken).Auth().Token().RenewSelf(0)
	if statusOf(err) != http.StatusBadRequest {
		t.Errorf("renew-self of a non-renewable token = %v, want 400", err)
	}
}

func TestAppRole(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	root := env.Client(t)
	approle := "auth/" + env.MountAuth(t, "approle")
	role := unique("fake-test")
	write(t, root, approle+"/role/"+role, map[string]any{
		"token_policies": []string{"default"}, "token_ttl": "1m", "token_max_ttl": "2m"})
	roleID, _ := read(t, root, approle+"/role/"+role+"/role-id").Data["role_id"].(string)
	secretID, _ := write(t, root, approle+"/role/"+role+"/secret-id", nil).Data["secret_id"].(string)
	if roleID == "" || secretID == "" {
		t.Fatalf("role_id %q, secret_id %q", roleID, secretID)
	}
	anon := withToken(t, root, "")
	anon.ClearToken()

	sec, err := anon.Logical().Write(approle+"/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Auth == nil || sec.Auth.ClientToken == "" || !sec.Auth.Renewable || sec.Auth.LeaseDuration != 60 {
		t.Fatalf("login: %+v", sec.Auth)
	}
	if _, err := withToken(t, root, sec.Auth.ClientToken).Auth().Token().LookupSelf(); err != nil {
		t.Errorf("the new token: %v", err)
	}
	_, err = anon.Logical().Write(approle+"/login", map[string]any{"role_id": roleID, "secret_id": "wrong"})
	if statusOf(err) != http.StatusBadRequest {
		t.Errorf("login with a wrong secret id = %v, want 400", err)
	}
}

func TestJWT(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	root := env.Client(t)
	issuer := fakevault.NewIssuer(t)
	mount := env.MountAuth(t, "jwt") // the validation key is the mount's
	write(t, root, "auth/"+mount+"/config", map[string]any{"jwt_validation_pubkeys": []string{issuer.PublicKeyPEM()}})
	role, job := unique("fake-test"), unique("codehub")
	write(t, root, "auth/"+mount+"/role/"+role, map[string]any{
		"role_type": "jwt", "bound_audiences": []string{fakevault.NomadAudience}, "user_claim": "nomad_job_id",
		"bound_claims":   map[string]any{"nomad_namespace": "default", "nomad_job_id": job},
		"token_policies": []string{"default"}, "token_ttl": "1m", "token_type": "service",
	})
	anon := withToken(t, root, "")
	anon.ClearToken()
	login := func(jwt string) (*api.Secret, error) {
		return anon.Logical().Write("auth/"+mount+"/login", map[string]any{"role": role, "jwt": jwt})
	}

	sec, err := login(issuer.Sign(t, fakevault.NomadClaims(job, "gateway", time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if sec.Auth == nil || sec.Auth.ClientToken == "" || sec.Auth.LeaseDuration != 60 {
		t.Fatalf("login: %+v", sec.Auth)
	}

	other := fakevault.NewIssuer(t)
	for name, tok := range map[string]string{
		"wrong key":      other.Sign(t, fakevault.NomadClaims(job, "gateway", time.Hour)),
		"wrong job":      issuer.Sign(t, fakevault.NomadClaims(unique("other"), "gateway", time.Hour)),
		"expired":        issuer.Sign(t, fakevault.NomadClaims(job, "gateway", -10*time.Minute)),
		"wrong audience": issuer.Sign(t, withClaim(fakevault.NomadClaims(job, "gateway", time.Hour), "aud", []string{"elsewhere"})),
		"not a jwt":      "nonsense",
	} {
		if _, err := login(tok); statusOf(err) != http.StatusBadRequest {
			t.Errorf("%s: login = %v, want 400", name, err)
		}
	}
}

func withClaim(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	c[k] = v
	return c
}

func TestTransit(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	c := env.Client(t)
	transit := env.Mount(t, "transit")
	key := unique("fake-test")
	write(t, c, transit+"/keys/"+key, map[string]any{"type": "ed25519"})

	sign := func(msg string) (version int, sig []byte) {
		t.Helper()
		s := write(t, c, transit+"/sign/"+key, map[string]any{"input": base64.StdEncoding.EncodeToString([]byte(msg))})
		raw, _ := s.Data["signature"].(string)
		parts := strings.Split(raw, ":")
		if len(parts) != 3 || parts[0] != "vault" {
			t.Fatalf("signature %q", raw)
		}
		fmt.Sscanf(parts[1], "v%d", &version)
		sig, err := base64.StdEncoding.DecodeString(parts[2])
		if err != nil {
			t.Fatal(err)
		}
		return version, sig
	}
	publicKeys := func() (map[int]ed25519.PublicKey, int) {
		t.Helper()
		d := read(t, c, transit+"/keys/"+key).Data
		if d["type"] != "ed25519" {
			t.Fatalf("type %v", d["type"])
		}
		out := map[int]ed25519.PublicKey{}
		for v, e := range d["keys"].(map[string]any) {
			b, err := base64.StdEncoding.DecodeString(e.(map[string]any)["public_key"].(string))
			if err != nil {
				t.Fatal(err)
			}
			var n int
			fmt.Sscan(v, &n)
			out[n] = b
		}
		return out, seconds(t, d["latest_version"])
	}

	v, sig := sign("hello")
	keys, latest := publicKeys()
	if v != 1 || latest != 1 || !ed25519.Verify(keys[1], []byte("hello"), sig) {
		t.Fatalf("sign: version %d, latest %d, verifies %v", v, latest, ed25519.Verify(keys[1], []byte("hello"), sig))
	}

	write(t, c, transit+"/keys/"+key+"/rotate", nil)
	v2, sig2 := sign("again")
	keys, latest = publicKeys()
	if v2 != 2 || latest != 2 || len(keys) != 2 || !ed25519.Verify(keys[2], []byte("again"), sig2) || !ed25519.Verify(keys[1], []byte("hello"), sig) {
		t.Fatalf("after rotate: version %d, latest %d, %d keys", v2, latest, len(keys))
	}

	write(t, c, transit+"/keys/"+key+"/config", map[string]any{"min_decryption_version": 2})
	if keys, _ = publicKeys(); len(keys) != 1 || keys[2] == nil {
		t.Errorf("after min_decryption_version=2: versions %v, want only 2", slices.Collect(maps.Keys(keys)))
	}
}

// connect logs in to db through the front as user.
func connect(ctx context.Context, front *fakevault.PasswordFront, db, user, password string) error {
	u, err := url.Parse(front.DSN(db))
	if err != nil {
		return err
	}
	u.User = url.UserPassword(user, password)
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var got string
	if err := conn.QueryRow(ctx, "SELECT session_user").Scan(&got); err != nil {
		return err
	}
	if got != user {
		return fmt.Errorf("session_user %q, want %q", got, user)
	}
	return nil
}

func TestDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := fakevault.NewTestDatabase(t) // before the fake, which revokes its leases when it closes
	env := fakevault.Target(t)
	root := env.Client(t)
	front := fakevault.StartPasswordFront(t, fakevault.PostgresAdminDSN())
	mount := env.Mount(t, "database")
	role := unique("fake-test")
	db.Configure(t, root, mount, role, 3*time.Second, 5*time.Second)

	// A token that may take credentials, and renew (the default policy).
	pol := unique("fake-test-db")
	write(t, root, "sys/policies/acl/"+pol, map[string]any{
		"policy": fmt.Sprintf(`path "%s/creds/%s" { capabilities = ["read"] }`, mount, role)})
	tok := write(t, root, "auth/token/create", map[string]any{"policies": []string{pol}, "ttl": "1h"}).Auth.ClientToken
	c := withToken(t, root, tok)

	creds := func() (user, password string, sec *api.Secret) {
		t.Helper()
		sec, err := c.Logical().Read(mount + "/creds/" + role)
		if err != nil {
			t.Fatal(err)
		}
		user, _ = sec.Data["username"].(string)
		password, _ = sec.Data["password"].(string)
		if user == "" || password == "" || sec.LeaseID == "" || !sec.Renewable || sec.LeaseDuration < 1 || sec.LeaseDuration > 3 {
			t.Fatalf("creds: %+v", sec)
		}
		return user, password, sec
	}
	refused := func(user, password string) bool {
		err := connect(ctx, front, db.Name, user, password)
		var pgErr *pgconn.PgError
		return errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000")
	}

	t.Run("issue, renew, revoke", func(t *testing.T) {
		user, password, sec := creds()
		if err := connect(ctx, front, db.Name, user, password); err != nil {
			t.Fatalf("log in as the issued user: %v", err)
		}
		if !refused(user, password+"x") {
			t.Error("a wrong password was accepted")
		}
		ren, err := c.Sys().Renew(sec.LeaseID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ren.LeaseID != sec.LeaseID || ren.LeaseDuration < 1 || ren.LeaseDuration > 3 {
			t.Errorf("renew: %+v", ren)
		}
		// Revoking needs a policy this token lacks; the operator's works.
		if err := c.Sys().Revoke(sec.LeaseID); statusOf(err) != http.StatusForbidden {
			t.Errorf("revoke without the policy = %v, want 403", err)
		}
		if err := root.Sys().Revoke(sec.LeaseID); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the revoked user cannot log in", func() bool { return refused(user, password) })
		if ok, err := db.CanLogIn(ctx, user); err != nil || ok {
			t.Errorf("CanLogIn(revoked) = %v, %v", ok, err)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		user, password, sec := creds()
		if err := connect(ctx, front, db.Name, user, password); err != nil {
			t.Fatal(err)
		}
		// Renewals stop at max_ttl.
		eventually(t, 20*time.Second, "renewals reach max_ttl", func() bool {
			ren, err := c.Sys().Renew(sec.LeaseID, 60)
			return err != nil || ren.LeaseDuration <= 1
		})
		eventually(t, 20*time.Second, "the expired user cannot log in", func() bool { return refused(user, password) })
	})

	t.Run("token revoked", func(t *testing.T) {
		child := write(t, root, "auth/token/create", map[string]any{"policies": []string{pol}, "ttl": "1h"}).Auth.ClientToken
		sec, err := withToken(t, root, child).Logical().Read(mount + "/creds/" + role)
		if err != nil {
			t.Fatal(err)
		}
		user, password := sec.Data["username"].(string), sec.Data["password"].(string)
		if err := connect(ctx, front, db.Name, user, password); err != nil {
			t.Fatal(err)
		}
		if err := root.Auth().Token().RevokeTree(child); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the user of a revoked token cannot log in", func() bool { return refused(user, password) })
	})

	// Last: disabling the engine revokes its leases, and its path has no
	// handler any more.
	t.Run("engine disabled", func(t *testing.T) {
		user, password, _ := creds()
		if err := connect(ctx, front, db.Name, user, password); err != nil {
			t.Fatal(err)
		}
		if err := root.Sys().Unmount(mount); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the user of a disabled engine cannot log in", func() bool { return refused(user, password) })
		if _, err := c.Logical().ReadRaw(mount + "/creds/" + role); statusOf(err) != http.StatusNotFound {
			t.Errorf("creds of a disabled engine = %v, want 404", err)
		}
	})
}

// TestMounts: a dev server mounts nothing that codehub uses. A path under
// no mount answers 404 in Vault's error shape; mounting makes it work,
// listing shows it, mounting again or inside it is refused; disabling it
// is 404 again, and disabling twice is fine. Disabling an auth method
// revokes its tokens; the login of a method not mounted needs a token
// like any other path.
func TestMounts(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	root := env.Client(t)
	path := unique("transit-fake-test")
	keyPath := path + "/keys/" + unique("k")
	noHandler := func(err error, p string) bool {
		var re *api.ResponseError
		return errors.As(err, &re) && re.StatusCode == http.StatusNotFound &&
			slices.Equal(re.Errors, []string{fmt.Sprintf("no handler for route %q. route entry not found.", p)})
	}
	if _, err := root.Logical().Write(keyPath, map[string]any{"type": "ed25519"}); !noHandler(err, keyPath) {
		t.Fatalf("write under no mount = %v, want 404 no handler for route %q", err, keyPath)
	}
	// On the wire: "errors", lower case, which vault/api's Read relies on
	// to take a 404 for nothing there.
	req, _ := http.NewRequest(http.MethodGet, env.Addr+"/v1/"+keyPath, nil)
	req.Header.Set("X-Vault-Token", env.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if errs, _ := body["errors"].([]any); err != nil || resp.StatusCode != http.StatusNotFound || len(body) != 1 || len(errs) != 1 {
		t.Errorf("GET under no mount = %d %v (%v), want 404 {\"errors\": [one message]}", resp.StatusCode, body, err)
	}
	if sec, err := root.Logical().Read(keyPath); sec != nil || err != nil {
		t.Errorf("Logical().Read under no mount = %+v, %v; want nothing there", sec, err)
	}
	if err := root.Sys().Mount(path, &api.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Sys().Unmount(path) })
	write(t, root, keyPath, map[string]any{"type": "ed25519"})
	mounts, err := root.Sys().ListMounts()
	if err != nil || mounts[path+"/"] == nil || mounts[path+"/"].Type != "transit" {
		t.Errorf("ListMounts = %v, %v; want %s/ of type transit", mounts, err, path)
	}
	for _, again := range []string{path, path + "/inner"} {
		err := root.Sys().Mount(again, &api.MountInput{Type: "transit"})
		if statusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "path is already in use at "+path+"/") {
			t.Errorf("mount at %s = %v, want 409 path is already in use at %s/", again, err, path)
		}
	}
	// (Logical().Read takes any 404 for "nothing there": ReadRaw does not.)
	if _, err := root.Logical().ReadRaw(path + "/nonsense/x"); statusOf(err) != http.StatusNotFound || noHandler(err, path+"/nonsense/x") {
		t.Errorf("a path the engine has no handler for = %v, want 404 unsupported path", err)
	}
	if err := root.Sys().Unmount(path); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().ReadRaw(keyPath); !noHandler(err, keyPath) {
		t.Errorf("read after unmount = %v, want 404 no handler", err)
	}
	if err := root.Sys().Unmount(path); err != nil {
		t.Errorf("unmount of what is not mounted = %v, want success", err)
	}

	// Auth methods.
	auth := unique("approle-fake-test")
	anon := withToken(t, root, "")
	anon.ClearToken()
	login := "auth/" + auth + "/login"
	if _, err := anon.Logical().Write(login, map[string]any{"role_id": "x"}); statusOf(err) != http.StatusForbidden {
		t.Errorf("login to a method not mounted, without a token = %v, want 403", err)
	}
	if _, err := root.Logical().Write(login, map[string]any{"role_id": "x"}); !noHandler(err, login) {
		t.Errorf("login to a method not mounted, with a token = %v, want 404 no handler", err)
	}
	if err := root.Sys().EnableAuthWithOptions(auth, &api.EnableAuthOptions{Type: "approle"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Sys().DisableAuth(auth) })
	methods, err := root.Sys().ListAuth()
	if err != nil || methods[auth+"/"] == nil || methods[auth+"/"].Type != "approle" || methods["token/"] == nil {
		t.Errorf("ListAuth = %v, %v; want token/ and %s/", methods, err, auth)
	}
	role := unique("fake-test")
	write(t, root, "auth/"+auth+"/role/"+role, map[string]any{"token_policies": []string{"default"}, "token_ttl": "1h"})
	roleID := read(t, root, "auth/"+auth+"/role/"+role+"/role-id").Data["role_id"].(string)
	secretID := write(t, root, "auth/"+auth+"/role/"+role+"/secret-id", nil).Data["secret_id"].(string)
	sec, err := anon.Logical().Write(login, map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil {
		t.Fatal(err)
	}
	tok := withToken(t, root, sec.Auth.ClientToken)
	if _, err := tok.Auth().Token().LookupSelf(); err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().DisableAuth(auth); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the token of a disabled method is revoked", func() bool {
		_, err := tok.Auth().Token().LookupSelf()
		return statusOf(err) == http.StatusForbidden
	})
	if err := root.Sys().DisableAuth("token"); statusOf(err) != http.StatusBadRequest {
		t.Errorf("disable the token method = %v, want 400", err)
	}
}

func TestDownUp(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	env.NeedFake(t, "makes Vault unreachable")
	c := env.Client(t)
	path := env.Mount(t, "transit") + "/keys/" + unique("fake-test")
	write(t, c, path, map[string]any{"type": "ed25519"})

	env.Fake.Down()
	if _, err := c.Logical().Read(path); err == nil || statusOf(err) != 0 {
		t.Fatalf("read while down = %v, want a connection error", err)
	}
	env.Fake.Down() // twice is fine
	env.Fake.Up()
	if _, err := c.Logical().Read(path); err != nil {
		t.Fatalf("read after Up: %v", err)
	}
	if env.Fake.Requests(path) != 2 {
		t.Errorf("requests = %d, want 2 (create, read)", env.Fake.Requests(path))
	}
}
