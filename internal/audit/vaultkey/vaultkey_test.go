// These tests run against the fake Vault, or against a real one when
// VAULT_ADDR and VAULT_TOKEN (a root token) are set: each mounts a KV
// version 2 engine of its own, and unmounts it at the end.
package vaultkey_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/audit/vaultkey"
	"github.com/codehub-dev/codehub/internal/testenv"
	fakevault "github.com/codehub-dev/codehub/internal/testfake/vault"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
)

// gatewayToken returns a client whose token has only what the gateway's
// Vault policy grants on the audit keys at mount/path.
func gatewayToken(t *testing.T, env *fakevault.Env, mount, path string) *api.Client {
	t.Helper()
	root := env.Client(t)
	name := fmt.Sprintf("audit-keys-%d", time.Now().UnixNano())
	policy := fmt.Sprintf("path %q {\n  capabilities = [\"create\", \"read\", \"update\"]\n}\n", mount+"/data/"+path)
	if err := root.Sys().PutPolicy(name, policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Sys().DeletePolicy(name) })
	sec, err := root.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{name}, NoDefaultPolicy: true, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := root.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(sec.Auth.ClientToken)
	return c
}

func open(t *testing.T, c *api.Client, mount string, create bool) *vaultkey.Keys {
	t.Helper()
	k, err := vaultkey.Open(context.Background(), vaultkey.Config{Client: c, Mount: mount, Create: create, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestVaultHeldKey: a gateway keeps the audit chain's key in Vault; the
// log it writes verifies with the key read back by another process, also
// after a rotation, and not with another key.
func TestVaultHeldKey(t *testing.T) {
	ctx := context.Background()
	env := fakevault.Target(t)
	mount := env.MountSecrets(t, "kv", map[string]string{"version": "2"})
	c := gatewayToken(t, env, mount, vaultkey.DefaultPath)

	if _, err := vaultkey.Open(ctx, vaultkey.Config{Client: c, Mount: mount}); err == nil || !strings.Contains(err.Error(), "no audit keys in") {
		t.Fatalf("Open without Create of a missing secret: %v", err)
	}
	// Gateways starting at once make one key.
	var wg sync.WaitGroup
	ids := make([]string, 4)
	for i := range ids {
		wg.Go(func() {
			k, err := vaultkey.Open(ctx, vaultkey.Config{Client: c, Mount: mount, Create: true})
			if err != nil {
				t.Error(err)
				return
			}
			key, _ := k.Current(ctx)
			ids[i] = key.ID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id == "" || id != ids[0] {
			t.Fatalf("gateways starting at once made keys %v", ids)
		}
	}

	gw := open(t, c, mount, true)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	state := audit.OpenStateFile(filepath.Join(dir, "audit-checkpoints.json"))
	write := func(n int) {
		f, err := audit.OpenFile(audit.FileConfig{Path: path, Keys: gw})
		if err != nil {
			t.Fatal(err)
		}
		l := audit.NewLogger(audit.LoggerConfig{Log: hclog.NewNullLogger(), Checkpoints: []audit.CheckpointStore{state}}, f)
		for i := 0; i < n; i++ {
			l.Record(audit.Event{EventType: audit.LoginSuccess, Username: "alice"})
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(keys audit.Keys) *audit.Report {
		r, err := audit.VerifyFiles(ctx, []string{path}, audit.VerifyOptions{Keys: keys, Checkpoints: []audit.CheckpointStore{state}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	write(3)
	first, _ := gw.Current(ctx)
	// Rotated by another process (the CLI): the gateway's next read of
	// the secret, or a key it does not know, picks the new key up.
	kid, err := open(t, c, mount, false).Rotate(ctx)
	if err != nil || kid == first.ID {
		t.Fatalf("Rotate = %q, %v", kid, err)
	}
	if _, err := gw.Lookup(ctx, kid); err != nil {
		t.Fatalf("the gateway does not find the rotated key: %v", err)
	}
	gw = open(t, c, mount, true)
	write(3)

	r := verify(open(t, env.Client(t), mount, false))
	if !r.OK() || r.Count != 9 { // a start checkpoint, 3 events and a closing checkpoint; then 3 and another
		t.Fatalf("verify with the keys from Vault: %d entries, %v", r.Count, r.Problems)
	}
	// Entries of both keys are in the log.
	kids := map[string]int{}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e audit.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		kids[e.KeyID]++
	}
	if len(kids) != 2 || kids[first.ID] != 5 || kids[kid] != 4 {
		t.Fatalf("entries by key: %v; want 5 of %s, 4 of %s", kids, first.ID, kid)
	}

	// Another Vault's keys (or a key file's) do not verify it.
	other := env.MountSecrets(t, "kv", map[string]string{"version": "2"})
	r = verify(open(t, env.Client(t), other, true))
	if r.OK() || !strings.Contains(r.Problems[0].Reason, "which the Vault secret "+other+"/codehub/audit-keys does not hold") {
		t.Fatalf("verify with other keys: %v", r.Problems)
	}
}

// TestVaultOutage: once the keys are read, the log goes on while Vault is
// unreachable (fake only: it takes Vault away).
func TestVaultOutage(t *testing.T) {
	ctx := context.Background()
	env := fakevault.Target(t)
	env.NeedFake(t, "makes Vault unreachable")
	c := env.Client(t)
	c.SetMaxRetries(0)
	var (
		mu  sync.Mutex
		now = time.Now()
	)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	k, err := vaultkey.Open(ctx, vaultkey.Config{Client: c, Create: true, Log: testenv.Logger(t), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := k.Current(ctx)
	env.Fake.Down()
	mu.Lock()
	now = now.Add(time.Hour) // past Refresh: the next Current tries Vault
	mu.Unlock()
	key, err := k.Current(ctx)
	if err != nil || key.ID != before.ID {
		t.Fatalf("Current while Vault is down = %v, %v", key, err)
	}
	if _, err := k.Lookup(ctx, "unknown"); err == nil || errors.Is(err, audit.ErrUnknownKey) {
		t.Fatalf("Lookup of an unknown key while Vault is down: %v, want the Vault error", err)
	}
	env.Fake.Up()
	if _, err := k.Lookup(ctx, "unknown"); !errors.Is(err, audit.ErrUnknownKey) {
		t.Fatalf("Lookup of an unknown key: %v", err)
	}
}
