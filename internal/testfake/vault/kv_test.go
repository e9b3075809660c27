package vault_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	fakevault "github.com/codehub-dev/codehub/internal/testfake/vault"
	"github.com/hashicorp/vault/api"
)

// TestKV pins the fake's KV version 2 engine to Vault's: versions, and
// check-and-set writes, through vault/api's KVv2 helper.
func TestKV(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := fakevault.Target(t)
	c := env.Client(t)
	mount := env.MountSecrets(t, "kv", map[string]string{"version": "2"})
	kv := c.KVv2(mount)

	if _, err := kv.Get(ctx, "app/keys"); !errors.Is(err, api.ErrSecretNotFound) {
		t.Fatalf("Get of a missing secret: %v", err)
	}
	s, err := kv.Put(ctx, "app/keys", map[string]any{"a": "1", "n": map[string]any{"x": []any{"y"}}}, api.WithCheckAndSet(0))
	if err != nil || s.VersionMetadata == nil || s.VersionMetadata.Version != 1 {
		t.Fatalf("first Put = %+v, %v", s, err)
	}
	// cas=0 only creates.
	_, err = kv.Put(ctx, "app/keys", map[string]any{"a": "2"}, api.WithCheckAndSet(0))
	if statusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "check-and-set parameter did not match the current version") {
		t.Fatalf("Put with cas 0 over a secret: %v", err)
	}
	if _, err := kv.Put(ctx, "app/keys", map[string]any{"a": "2"}, api.WithCheckAndSet(2)); statusOf(err) != http.StatusBadRequest {
		t.Fatalf("Put with a wrong cas: %v", err)
	}
	if s, err = kv.Put(ctx, "app/keys", map[string]any{"a": "2"}, api.WithCheckAndSet(1)); err != nil || s.VersionMetadata.Version != 2 {
		t.Fatalf("Put with the right cas = %+v, %v", s, err)
	}
	got, err := kv.Get(ctx, "app/keys")
	if err != nil || got.Data["a"] != "2" || got.VersionMetadata.Version != 2 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if s, err = kv.Put(ctx, "app/keys", map[string]any{"a": "3"}); err != nil || s.VersionMetadata.Version != 3 {
		t.Fatalf("Put without cas = %+v, %v", s, err)
	}
	if err := kv.DeleteMetadata(ctx, "app/keys"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "app/keys"); !errors.Is(err, api.ErrSecretNotFound) {
		t.Fatalf("Get after DeleteMetadata: %v", err)
	}
}
