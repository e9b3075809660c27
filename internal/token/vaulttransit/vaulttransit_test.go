// These tests run against the fake Vault of internal/testfake/vault, or
// against a real dev Vault when VAULT_ADDR and VAULT_TOKEN (a root token)
// are set:
//
//	vault server -dev -dev-root-token-id=root &
//	VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root go test ./internal/token/vaulttransit
//
// The gateway's own key is made with
//
//	vault secrets enable transit
//	vault write transit/keys/codehub-jwt type=ed25519
//
// but each test enables a transit engine of its own (disabled at the end)
// and makes its key there, which it rotates, and signs through a token
// limited to the policy in the package documentation. The test that makes
// Vault unreachable needs the fake and is skipped against a real Vault.
package vaulttransit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/testenv"
	fakevault "github.com/codehub-dev/codehub/internal/testfake/vault"
	"github.com/codehub-dev/codehub/internal/token"
	"github.com/codehub-dev/codehub/internal/token/vaulttransit"
	"github.com/codehub-dev/codehub/internal/vault"
	"github.com/hashicorp/vault/api"
)

var testSession = session.IDFromToken("test session token")

// fakeClock is a clock tests move by hand; it starts now, since Vault's
// own clock plays no part in the tokens.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// setup is a transit key in Vault, a client limited to signing with it
// and reading it, and the root client that administers it.
type setup struct {
	env   *fakevault.Env
	root  *api.Client
	mount string // the test's transit engine
	key   string
	c     *vault.Client
	src   *vaulttransit.Source
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	env := fakevault.Target(t)
	root := env.Client(t)
	mount := env.Mount(t, "transit")
	b := make([]byte, 4)
	rand.Read(b)
	key := "codehub-jwt-test-" + hex.EncodeToString(b)
	if _, err := root.Logical().Write(mount+"/keys/"+key, map[string]any{"type": "ed25519"}); err != nil {
		t.Fatalf("create the transit key: %v", err)
	}
	pol := key + "-policy"
	if _, err := root.Logical().Write("sys/policies/acl/"+pol, map[string]any{"policy": fmt.Sprintf(`
path "%[2]s/sign/%[1]s" { capabilities = ["update"] }
path "%[2]s/keys/%[1]s" { capabilities = ["read"] }`, key, mount)}); err != nil {
		t.Fatal(err)
	}
	tok, err := root.Logical().Write("auth/token/create", map[string]any{"policies": []string{pol}, "ttl": "1h"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := vault.New(context.Background(), vault.Config{Address: env.Addr, MaxRetries: -1,
		Auth: vault.Auth{Method: vault.MethodToken, Token: tok.Auth.ClientToken}}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	src, err := vaulttransit.New(vaulttransit.Config{Client: c.API(), Mount: mount, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return &setup{env: env, root: root, mount: mount, key: key, c: c, src: src}
}

func (s *setup) service(t *testing.T, clock *fakeClock) *token.Service {
	t.Helper()
	cfg := token.Config{Issuer: "https://codehub.test", Audience: "codehub-api"}
	if clock != nil {
		cfg.Now = clock.Now
	}
	svc, err := token.NewService(cfg, s.src)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func (s *setup) rotate(t *testing.T) {
	t.Helper()
	if _, err := s.root.Logical().Write(s.mount+"/keys/"+s.key+"/rotate", nil); err != nil {
		t.Fatalf("rotate: %v", err)
	}
}

func issue(t *testing.T, svc *token.Service) string {
	t.Helper()
	tok, _, err := svc.IssueAccess(context.Background(), "user-42", testSession)
	if err != nil {
		t.Fatalf("IssueAccess: %v", err)
	}
	return tok
}

func verify(t *testing.T, svc *token.Service, tok, wantKid string) {
	t.Helper()
	c, err := svc.VerifyAccess(context.Background(), tok)
	if err != nil {
		t.Fatalf("VerifyAccess: %v", err)
	}
	if c.KeyID != wantKid || c.UserID != "user-42" {
		t.Errorf("claims %+v, want kid %s", c, wantKid)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	c, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]vaulttransit.Config{
		"no client":   {Key: "k"},
		"slash":       {Client: c, Key: "a/b"},
		"dot":         {Client: c, Key: "codehub.jwt"},
		"long":        {Client: c, Key: strings.Repeat("k", 49)},
		"punctuation": {Client: c, Key: `k"`},
	} {
		if _, err := vaulttransit.New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := vaulttransit.New(vaulttransit.Config{Client: c}); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// TestIssueVerify: tokens signed in Vault verify, under "<key>-v1".
func TestIssueVerify(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	svc := s.service(t, nil)
	verify(t, svc, issue(t, svc), s.key+"-v1")

	// Another gateway, knowing only Vault, verifies it too.
	other := s.service(t, nil)
	verify(t, other, issue(t, svc), s.key+"-v1")

	keys, err := s.src.PublicKeys(context.Background())
	if err != nil || len(keys) != 1 || keys[s.key+"-v1"] == nil {
		t.Errorf("PublicKeys = %v, %v", keys, err)
	}
}

// TestRotation: after the key rotates in Vault, new tokens carry the new
// version's kid and tokens signed before still verify, here and on
// another gateway; raising min_decryption_version retires the old one.
func TestRotation(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	clock := &fakeClock{t: time.Now()}
	svc := s.service(t, clock)
	old := issue(t, svc)
	verify(t, svc, old, s.key+"-v1")

	s.rotate(t)
	fresh := issue(t, svc)
	verify(t, svc, fresh, s.key+"-v2")
	verify(t, svc, old, s.key+"-v1")
	other := s.service(t, clock)
	verify(t, other, old, s.key+"-v1")
	verify(t, other, fresh, s.key+"-v2")

	// Through the Source, as an operator's command would.
	admin, err := vaulttransit.New(vaulttransit.Config{Client: s.root, Mount: s.mount, Key: s.key})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := admin.Rotate(context.Background()); err != nil || got != s.key+"-v3" {
		t.Fatalf("Rotate = %q, %v; want %s-v3", got, err, s.key)
	}
	verify(t, svc, issue(t, svc), s.key+"-v3")

	// The limited token may sign and read, not rotate.
	if _, err := s.src.Rotate(context.Background()); err == nil {
		t.Error("the signing token could rotate the key")
	}

	if _, err := s.root.Logical().Write(s.mount+"/keys/"+s.key+"/config", map[string]any{"min_decryption_version": 2}); err != nil {
		t.Fatal(err)
	}
	keys, err := s.src.PublicKeys(context.Background())
	if err != nil || len(keys) != 2 || keys[s.key+"-v1"] != nil {
		t.Fatalf("PublicKeys after min_decryption_version=2: %d keys, %v", len(keys), err)
	}
	clock.Advance(token.DefaultKeyMaxAge + time.Second) // the cached keys are fetched again
	if _, err := svc.VerifyAccess(context.Background(), old); !errors.Is(err, token.ErrInvalid) {
		t.Errorf("a token of the retired version: VerifyAccess = %v, want ErrInvalid", err)
	}
	verify(t, svc, fresh, s.key+"-v2")
}

// TestVaultDown: while Vault is unreachable, tokens already issued keep
// verifying with the cached keys, even once the cache is due for a
// refresh, and issuing fails with an error that wraps the cause.
func TestVaultDown(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	s.env.NeedFake(t, "makes Vault unreachable")
	clock := &fakeClock{t: time.Now()}
	svc := s.service(t, clock)
	tok := issue(t, svc)
	verify(t, svc, tok, s.key+"-v1")

	s.env.Fake.Down()
	verify(t, svc, tok, s.key+"-v1")
	clock.Advance(token.DefaultKeyMaxAge + time.Second) // a refresh is due, and fails
	verify(t, svc, tok, s.key+"-v1")

	_, _, err := svc.IssueAccess(context.Background(), "user-42", testSession)
	if err == nil {
		t.Fatal("IssueAccess succeeded while Vault is down")
	}
	if !strings.Contains(err.Error(), "cannot sign tokens") || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("IssueAccess = %v, want \"cannot sign tokens\" wrapping the connection refused", err)
	}
	if _, err := s.src.PublicKeys(context.Background()); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("PublicKeys = %v, want the connection refused", err)
	}

	s.env.Fake.Up()
	verify(t, svc, issue(t, svc), s.key+"-v1")
}

// TestNotMounted: with no transit engine where the Source looks, reading
// the keys fails saying where it looked, and signing fails with Vault's
// 404.
func TestNotMounted(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	root := env.Client(t)
	b := make([]byte, 4)
	rand.Read(b)
	mount := "transit-absent-" + hex.EncodeToString(b)
	src, err := vaulttransit.New(vaulttransit.Config{Client: root, Mount: mount, Key: "codehub-jwt"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.PublicKeys(context.Background()); err == nil || !strings.Contains(err.Error(), "no transit engine mounted at "+mount) {
		t.Errorf("PublicKeys = %v, want an error naming the mount", err)
	}
	var re *api.ResponseError
	if _, _, err := src.Sign(context.Background(), []byte("x")); !errors.As(err, &re) || re.StatusCode != 404 {
		t.Errorf("Sign = %v, want Vault's 404", err)
	}
}
