package filekeys_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/token"
	"github.com/codehub-dev/codehub/internal/token/filekeys"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	rotateEvery = 30 * 24 * time.Hour
	retain      = 24 * time.Hour
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: epoch} }

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

// keyPath returns a key file path in a fresh directory that does not exist
// yet.
func keyPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "state", "keys", "signing.json")
}

func mustOpen(t testing.TB, path string, clock *fakeClock) *filekeys.Keys {
	t.Helper()
	k, err := filekeys.Open(filekeys.Config{Path: path, RotateEvery: rotateEvery, Retain: retain, Now: clock.Now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return k
}

// mustSign signs data and checks the signature against PublicKeys.
func mustSign(t testing.TB, k *filekeys.Keys) string {
	t.Helper()
	data := []byte("header.payload")
	kid, sig, err := k.Sign(context.Background(), data)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	pub, ok := mustPublicKeys(t, k)[kid]
	if !ok {
		t.Fatalf("Sign used kid %q, which PublicKeys does not list", kid)
	}
	if !ed25519.Verify(pub, data, sig) {
		t.Fatalf("signature by %q does not verify", kid)
	}
	return kid
}

func mustPublicKeys(t testing.TB, k *filekeys.Keys) map[string]ed25519.PublicKey {
	t.Helper()
	keys, err := k.PublicKeys(context.Background())
	if err != nil {
		t.Fatalf("PublicKeys: %v", err)
	}
	return keys
}

func mustRotate(t testing.TB, k *filekeys.Keys) string {
	t.Helper()
	kid, err := k.Rotate(context.Background())
	if err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	return kid
}

func kids(keys map[string]ed25519.PublicKey) []string {
	out := make([]string, 0, len(keys))
	for kid := range keys {
		out = append(out, kid)
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func perm(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	t.Parallel()
	path := keyPath(t)
	clock := newClock()
	k := mustOpen(t, path, clock)

	if got := perm(t, path); got != 0o600 {
		t.Errorf("key file mode = %04o, want 0600", got)
	}
	if got := perm(t, filepath.Dir(path)); got != 0o700 {
		t.Errorf("key directory mode = %04o, want 0700", got)
	}
	kid := mustSign(t, k)
	if len(kid) != 16 || !token.ValidKeyID(kid) {
		t.Errorf("kid = %q, want 16 URL-safe characters", kid)
	}
	if got := kids(mustPublicKeys(t, k)); !slices.Equal(got, []string{kid}) {
		t.Errorf("PublicKeys = %v, want [%s]", got, kid)
	}

	// The file keeps the key: another Open signs with it.
	if again := mustSign(t, mustOpen(t, path, clock)); again != kid {
		t.Errorf("reopened file signs with %q, want %q", again, kid)
	}
	// Separate files, separate keys.
	if other := mustSign(t, mustOpen(t, keyPath(t), clock)); other == kid {
		t.Errorf("two key files share the kid %q", kid)
	}
}

func TestOpenRefusesOpenPermissions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true},
		{0o400, true},
		{0o644, false},
		{0o640, false},
		{0o604, false},
		{0o660, false},
		{0o666, false},
		{0o610, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%04o", tc.mode), func(t *testing.T) {
			t.Parallel()
			path := keyPath(t)
			mustOpen(t, path, newClock())
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			before := readFile(t, path)
			_, err := filekeys.Open(filekeys.Config{Path: path})
			if tc.ok {
				if err != nil {
					t.Fatalf("Open of a %04o file: %v", tc.mode, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Open of a %04o file succeeded", tc.mode)
			}
			for _, want := range []string{path, fmt.Sprintf("%04o", tc.mode), "too open", "chmod 600"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if got := perm(t, path); got != tc.mode {
				t.Errorf("Open changed the mode to %04o", got)
			}
			if !bytes.Equal(readFile(t, path), before) {
				t.Error("Open changed the refused file")
			}
		})
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func seed(t testing.TB) string {
	t.Helper()
	b := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestOpenRefusesCorruptFile(t *testing.T) {
	t.Parallel()
	s1, s2 := seed(t), seed(t)
	const created = `"2026-01-01T00:00:00Z"`
	key := func(kid, seed, extra string) string {
		return `{"kid":"` + kid + `","seed":"` + seed + `","created":` + created + extra + `}`
	}
	file := func(version int, keys ...string) string {
		return fmt.Sprintf(`{"version":%d,"keys":[%s]}`, version, strings.Join(keys, ","))
	}
	retired := `,"retired":"2026-02-01T00:00:00Z"`
	tests := []struct {
		name, content, reason string
	}{
		{"empty", "", "EOF"},
		{"truncated", file(1, key("AAAAAAAAAAAAAAAA", s1, ""))[:40], "unexpected EOF"},
		{"not JSON", "kid=abc\n", "invalid character"},
		{"null", "null", "version 0"},
		{"array", "[]", "cannot unmarshal"},
		{"version 2", file(2, key("AAAAAAAAAAAAAAAA", s1, "")), "version 2"},
		{"no keys", file(1), "no keys"},
		{"seed short", file(1, key("AAAAAAAAAAAAAAAA", s1[:20], "")), "seed"},
		{"seed std base64", file(1, key("AAAAAAAAAAAAAAAA", strings.Repeat("+", 43), "")), "seed"},
		{"seed missing", `{"version":1,"keys":[{"kid":"AAAAAAAAAAAAAAAA","created":` + created + `}]}`, "seed"},
		{"kid with slash", file(1, key("AAAAAAAA/AAAAAAA", s1, "")), "malformed kid"},
		{"kid short", file(1, key("AAAA", s1, "")), "malformed kid"},
		{"kid duplicate", file(1, key("AAAAAAAAAAAAAAAA", s1, retired), key("AAAAAAAAAAAAAAAA", s2, "")), "duplicate kid"},
		{"no creation time", `{"version":1,"keys":[{"kid":"AAAAAAAAAAAAAAAA","seed":"` + s1 + `"}]}`, "no creation time"},
		{"current key retired", file(1, key("AAAAAAAAAAAAAAAA", s1, retired)), "current (last) key is retired"},
		{"older key not retired", file(1, key("AAAAAAAAAAAAAAAA", s1, ""), key("BBBBBBBBBBBBBBBB", s2, "")), "not retired"},
		{"unknown field", file(1, key("AAAAAAAAAAAAAAAA", s1, `,"private":"x"`)), "unknown field"},
		{"trailing data", file(1, key("AAAAAAAAAAAAAAAA", s1, "")) + "{}", "data after"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "signing.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := filekeys.Open(filekeys.Config{Path: path})
			if err == nil {
				t.Fatalf("Open of a corrupt file succeeded: %v", kids(mustPublicKeys(t, k)))
			}
			for _, want := range []string{path, "corrupt", tc.reason} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if got := string(readFile(t, path)); got != tc.content {
				t.Errorf("Open replaced the corrupt file with %q", got)
			}
		})
	}
}

func TestOpenRefusesDirectory(t *testing.T) {
	t.Parallel()
	path := keyPath(t)
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := filekeys.Open(filekeys.Config{Path: path}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open of a directory: %v, want not a regular file", err)
	}
}

func TestOpenValidatesConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  filekeys.Config
	}{
		{"no path", filekeys.Config{}},
		{"negative rotation", filekeys.Config{Path: keyPath(t), RotateEvery: -time.Hour}},
		{"negative retention", filekeys.Config{Path: keyPath(t), Retain: -time.Hour}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := filekeys.Open(tc.cfg); err == nil {
				t.Errorf("Open(%+v) succeeded", tc.cfg)
			}
		})
	}
}

func TestSignRotatesAndRetires(t *testing.T) {
	t.Parallel()
	path := keyPath(t)
	clock := newClock()
	k := mustOpen(t, path, clock)
	first := mustSign(t, k)

	clock.Advance(rotateEvery - time.Second)
	if kid := mustSign(t, k); kid != first {
		t.Fatalf("Sign rotated after %s, before RotateEvery", rotateEvery-time.Second)
	}
	clock.Advance(time.Second)
	second := mustSign(t, k)
	if second == first {
		t.Fatalf("Sign did not rotate a key %s old", rotateEvery)
	}
	if got, want := kids(mustPublicKeys(t, k)), sorted(first, second); !slices.Equal(got, want) {
		t.Errorf("PublicKeys after rotation = %v, want %v", got, want)
	}

	clock.Advance(retain)
	if got, want := kids(mustPublicKeys(t, k)), sorted(first, second); !slices.Equal(got, want) {
		t.Errorf("PublicKeys after Retain = %v, want %v (still retained)", got, want)
	}
	clock.Advance(time.Second)
	if got := kids(mustPublicKeys(t, k)); !slices.Equal(got, []string{second}) {
		t.Errorf("PublicKeys beyond Retain = %v, want [%s]", got, second)
	}

	// The next rotation drops the expired key from the file too.
	third := mustRotate(t, k)
	if b := readFile(t, path); bytes.Contains(b, []byte(first)) || !bytes.Contains(b, []byte(second)) || !bytes.Contains(b, []byte(third)) {
		t.Errorf("file after the second rotation:\n%s\nwant %s dropped, %s and %s kept", b, first, second, third)
	}
	if got := perm(t, path); got != 0o600 {
		t.Errorf("key file mode after rotation = %04o, want 0600", got)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"signing.json", "signing.json.lock"}; !slices.Equal(names, want) {
		t.Errorf("directory holds %v, want %v (no temporary files left)", names, want)
	}
}

func TestRotate(t *testing.T) {
	t.Parallel()
	clock := newClock()
	k := mustOpen(t, keyPath(t), clock)
	old := mustSign(t, k)
	kid := mustRotate(t, k)
	if kid == old || !token.ValidKeyID(kid) {
		t.Fatalf("Rotate = %q, want a new valid kid (old %q)", kid, old)
	}
	if got := mustSign(t, k); got != kid {
		t.Errorf("Sign after Rotate uses %q, want %q", got, kid)
	}
	if got, want := kids(mustPublicKeys(t, k)), sorted(old, kid); !slices.Equal(got, want) {
		t.Errorf("PublicKeys = %v, want %v", got, want)
	}
	// The new key's age counts from the rotation.
	clock.Advance(rotateEvery - time.Second)
	if got := mustSign(t, k); got != kid {
		t.Errorf("Sign rotated a key younger than RotateEvery")
	}
}

func TestSharedFile(t *testing.T) {
	t.Parallel()
	path := keyPath(t)
	clock := newClock()
	a, b := mustOpen(t, path, clock), mustOpen(t, path, clock)
	if ka, kb := mustSign(t, a), mustSign(t, b); ka != kb {
		t.Fatalf("instances on one file sign with %q and %q", ka, kb)
	}
	for i := range 5 {
		// Alternate which instance rotates; the other must notice at once,
		// whatever the file system's mtime granularity.
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		kid := mustRotate(t, from)
		if got := mustSign(t, to); got != kid {
			t.Fatalf("rotation %d: the other instance signs with %q, want %q", i, got, kid)
		}
		if _, ok := mustPublicKeys(t, to)[kid]; !ok {
			t.Fatalf("rotation %d: the other instance does not publish %q", i, kid)
		}
	}
}

func TestConcurrentRotationHappensOnce(t *testing.T) {
	t.Parallel()
	path := keyPath(t)
	clock := newClock()
	instances := make([]*filekeys.Keys, 4)
	for i := range instances {
		instances[i] = mustOpen(t, path, clock)
	}
	first := mustSign(t, instances[0])
	clock.Advance(rotateEvery)

	var wg sync.WaitGroup
	var mu sync.Mutex
	used := map[string]bool{}
	for _, k := range instances {
		for range 4 {
			wg.Go(func() {
				kid, _, err := k.Sign(context.Background(), []byte("x"))
				if err != nil {
					t.Errorf("Sign: %v", err)
					return
				}
				mu.Lock()
				used[kid] = true
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if len(used) != 1 || used[first] {
		t.Errorf("concurrent Signs past RotateEvery used %v, want one new kid", used)
	}
	if got := kids(mustPublicKeys(t, instances[0])); len(got) != 2 {
		t.Errorf("after concurrent rotation PublicKeys = %v, want the old key and one new one", got)
	}
}

func TestConcurrentOpenCreatesOneKey(t *testing.T) {
	t.Parallel()
	path := keyPath(t)
	clock := newClock()
	kids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range kids {
		wg.Go(func() {
			k, err := filekeys.Open(filekeys.Config{Path: path, Now: clock.Now})
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			kid, _, err := k.Sign(context.Background(), []byte("x"))
			if err != nil {
				t.Errorf("Sign: %v", err)
			}
			kids[i] = kid
		})
	}
	wg.Wait()
	for _, kid := range kids[1:] {
		if kid != kids[0] {
			t.Fatalf("concurrent Opens of a new file sign with different keys: %v", kids)
		}
	}
}

func TestDeletedFile(t *testing.T) {
	t.Parallel()
	path := keyPath(t)
	k := mustOpen(t, path, newClock())
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.Sign(context.Background(), []byte("x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Sign with the file gone: %v, want ErrNotExist", err)
	}
}

// newService returns a token service on keys.
func newService(t testing.TB, keys token.KeySource, clock *fakeClock, ttl time.Duration) *token.Service {
	t.Helper()
	svc, err := token.NewService(token.Config{Issuer: "codehub", Audience: "api", AccessTTL: ttl, Now: clock.Now}, keys)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

var sid = session.IDFromToken("filekeys test")

func issue(t testing.TB, svc *token.Service) string {
	t.Helper()
	tok, _, err := svc.IssueAccess(context.Background(), "u1", sid)
	if err != nil {
		t.Fatalf("IssueAccess: %v", err)
	}
	return tok
}

func verify(t testing.TB, svc *token.Service, tok string) *token.Claims {
	t.Helper()
	c, err := svc.VerifyAccess(context.Background(), tok)
	if err != nil {
		t.Fatalf("VerifyAccess: %v", err)
	}
	return c
}

func headerKid(t testing.TB, tok string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Kid string }
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

func TestServiceRotation(t *testing.T) {
	t.Parallel()
	clock := newClock()
	// Retain is shorter than the token lifetime here, against the advice,
	// so that a token outlives its key and the key's retirement shows.
	const ttl = 3 * time.Hour
	const retainKey = time.Hour
	keys, err := filekeys.Open(filekeys.Config{Path: keyPath(t), Retain: retainKey, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	svc := newService(t, keys, clock, ttl)
	old := issue(t, svc)
	oldKid := verify(t, svc, old).KeyID

	newKid := mustRotate(t, keys)
	if c := verify(t, svc, old); c.KeyID != oldKid {
		t.Errorf("old token verified under %q, want %q", c.KeyID, oldKid)
	}
	tok := issue(t, svc)
	if got := headerKid(t, tok); got != newKid {
		t.Errorf("new token's kid = %q, want %q", got, newKid)
	}
	if c := verify(t, svc, tok); c.KeyID != newKid {
		t.Errorf("new token verified under %q, want %q", c.KeyID, newKid)
	}

	clock.Advance(retainKey + time.Second)
	_, err = svc.VerifyAccess(context.Background(), old)
	if !errors.Is(err, token.ErrInvalid) || !strings.Contains(err.Error(), "unknown key id") {
		t.Errorf("old token after Retain: %v, want ErrInvalid for an unknown key", err)
	}
	verify(t, svc, tok)
}

func TestServiceSharedFile(t *testing.T) {
	t.Parallel()
	path := keyPath(t)
	clock := newClock()
	// Two gateways on one key file, each with its own Service.
	keysA, keysB := mustOpen(t, path, clock), mustOpen(t, path, clock)
	svcA, svcB := newService(t, keysA, clock, 0), newService(t, keysB, clock, 0)

	before := issue(t, svcA)
	verify(t, svcB, before) // gateway B caches the first key

	kid := mustRotate(t, keysA)
	tok := issue(t, svcA)
	if got := headerKid(t, tok); got != kid {
		t.Fatalf("token's kid = %q, want the rotated %q", got, kid)
	}
	// B fetches the keys again for the unknown kid, once its rate limit
	// allows, and finds A's new key in the file.
	clock.Advance(token.DefaultKeyRefreshMin)
	if c := verify(t, svcB, tok); c.KeyID != kid {
		t.Errorf("gateway B verified under %q, want %q", c.KeyID, kid)
	}
	verify(t, svcB, before)
	// And B now signs with A's key.
	if got := headerKid(t, issue(t, svcB)); got != kid {
		t.Errorf("gateway B signs with %q, want %q", got, kid)
	}
}
