package identity_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/codehub-dev/codehub/internal/auth"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/password"
	"github.com/codehub-dev/codehub/internal/revocation"
	"github.com/codehub-dev/codehub/internal/session/memory"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/token"
	"github.com/codehub-dev/codehub/internal/token/filekeys"
)

// flakyKeys is a key source that cannot sign while down, as Vault's
// transit engine when Vault is unreachable; it still verifies (the token
// service keeps the public keys it has).
type flakyKeys struct {
	token.KeySource
	down atomic.Bool
}

func (k *flakyKeys) Sign(ctx context.Context, data []byte) (string, []byte, error) {
	if k.down.Load() {
		return "", nil, errors.New("vault: connection refused")
	}
	return k.KeySource.Sign(ctx, data)
}

func (k *flakyKeys) PublicKeys(ctx context.Context) (map[string]ed25519.PublicKey, error) {
	return k.KeySource.PublicKeys(ctx)
}

// TestRefreshDuringSigningOutage: a refresh that fails because no access
// token can be signed leaves the refresh token valid. (It used to replace
// it first: the client, never given the new one, presented the old one
// again once signing worked, and the replay detection ended its session.)
func TestRefreshDuringSigningOutage(t *testing.T) {
	dir := t.TempDir()
	ctx0 := context.Background()
	clock := newClock()
	log := testenv.Logger(t)
	files, err := filekeys.Open(filekeys.Config{Path: filepath.Join(dir, "keys.json"), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	keys := &flakyKeys{KeySource: files}
	tokens, err := token.NewService(token.Config{Issuer: "https://codehub.test", Audience: "codehub-api", AccessTTL: accessTTL, Now: clock.Now}, keys)
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.NewHasher(cheap, 0)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.Open(ctx0, sqlstore.Config{Driver: sqlstore.DriverSQLite, Path: filepath.Join(dir, "codehub.db"), Now: clock.Now}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	users := db.Users()
	svc := identity.New(identity.Config{Now: clock.Now, SessionTTL: sessionTTL, MinPasswordLength: 8}, identity.Deps{
		Authn: auth.NewDatabase(auth.DatabaseConfig{Users: users, Hasher: hasher, Now: clock.Now, Log: log.Named("auth")}), Users: users,
		Sessions: memory.New(clock.Now), Tokens: tokens, Bus: revocation.NewLocal(), Hasher: hasher,
	}, log.Named("identity"))
	ctx := context.Background()
	if _, err := svc.CreateUser(ctx, identity.NewUser{Username: "alice", Email: "alice@example.com", Password: goodPW}); err != nil {
		t.Fatal(err)
	}
	pair, _, err := svc.LoginAPI(ctx, "alice", goodPW, client)
	if err != nil {
		t.Fatal(err)
	}

	keys.down.Store(true)
	if _, err := svc.Refresh(ctx, pair.RefreshToken); identity.CodeOf(err) != identity.CodeUnavailable {
		t.Fatalf("Refresh while signing is down: %v, want %s", err, identity.CodeUnavailable)
	}
	if _, _, err := svc.LoginAPI(ctx, "alice", goodPW, client); identity.CodeOf(err) != identity.CodeUnavailable {
		t.Errorf("LoginAPI while signing is down: %v, want %s", err, identity.CodeUnavailable)
	}
	if p, err := svc.FromBearer(ctx, pair.AccessToken); err != nil || p == nil {
		t.Errorf("the access token while signing is down: %v, %v", p, err)
	}

	keys.down.Store(false)
	next, err := svc.Refresh(ctx, pair.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh with the same token once signing works again: %v", err)
	}
	if p, err := svc.FromBearer(ctx, next.AccessToken); err != nil || p == nil {
		t.Errorf("the refreshed access token: %v, %v", p, err)
	}
	if _, err := svc.Refresh(ctx, pair.RefreshToken); identity.CodeOf(err) != identity.CodeTokenReused {
		t.Errorf("the old refresh token after a successful refresh: %v, want %s", err, identity.CodeTokenReused)
	}
}
