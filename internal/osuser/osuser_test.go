package osuser_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/osuser"
	"github.com/codehub-dev/codehub/internal/testenv"
)

func TestValidName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"_svc", true},
		{"ws-123_a", true},
		{"a", true},
		{"a234567890123456789012345678901b", true}, // 32
		{"a2345678901234567890123456789012c", false},
		{"", false},
		{"Alice", false},
		{"1alice", false},
		{"-alice", false},
		{"al.ice", false},
		{"al ice", false},
		{"alice$", false},
		{"../etc", false},
		{"élise", false},
	} {
		if got := osuser.ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestEnsureRejectsBadConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	good := osuser.Config{Name: "alice", UIDMin: 61000, UIDMax: 61999, Home: "/srv/codehub/home/alice"}
	for _, tc := range []struct {
		name string
		edit func(*osuser.Config)
	}{
		{"bad name", func(c *osuser.Config) { c.Name = "Root" }},
		{"uid 0", func(c *osuser.Config) { c.UIDMin = 0 }},
		{"empty range", func(c *osuser.Config) { c.UIDMax = c.UIDMin - 1 }},
		{"relative home", func(c *osuser.Config) { c.Home = "home/alice" }},
		{"root home", func(c *osuser.Config) { c.Home = "/" }},
		{"unclean home", func(c *osuser.Config) { c.Home = "/srv/../etc" }},
		{"colon", func(c *osuser.Config) { c.Home = "/srv/a:b" }},
		{"relative shell", func(c *osuser.Config) { c.Shell = "bash" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			if _, err := osuser.Ensure(ctx, cfg); err == nil {
				t.Fatalf("Ensure(%+v) succeeded", cfg)
			}
		})
	}
	if _, err := osuser.Lookup("Bad Name"); !errors.Is(err, osuser.ErrInvalidName) {
		t.Errorf("Lookup(bad name) = %v, want ErrInvalidName", err)
	}
}

// needRoot skips or fails t when it cannot create accounts.
func needRoot(t *testing.T) {
	t.Helper()
	testenv.SkipShort(t)
	if os.Geteuid() != 0 {
		testenv.Need(t, "root (creates Unix accounts)")
	}
	for _, tool := range []string{"useradd", "userdel", "getent"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Need(t, tool+" (apt-get install passwd libc-bin)")
		}
	}
}

// freeRange returns a uid range of n ids that no account or group uses, so
// that the test can predict "lowest free".
func freeRange(t *testing.T, n int) (int, int) {
	t.Helper()
	for range 100 {
		lo := 200000 + rand.IntN(1000)*1000
		free := true
		for id := lo; id < lo+n && free; id++ {
			for _, db := range []string{"passwd", "group"} {
				if exec.Command("getent", db, fmt.Sprint(id)).Run() == nil {
					free = false
				}
			}
		}
		if free {
			return lo, lo + n - 1
		}
	}
	t.Fatal("no free uid range")
	return 0, 0
}

// testName returns a fresh account name and deletes the account when t ends.
func testName(t *testing.T, tag string) string {
	t.Helper()
	name := fmt.Sprintf("cht%s%d", tag, rand.IntN(1_000_000))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := osuser.Delete(ctx, name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // guards a hang only
	t.Cleanup(cancel)
	return ctx
}

func TestEnsureCreatesLowestFreeUID(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	lo, hi := freeRange(t, 10)
	home := filepath.Join(t.TempDir(), "home")

	a, b := testName(t, "a"), testName(t, "b")
	cfgA := osuser.Config{Name: a, UIDMin: lo, UIDMax: hi, Home: filepath.Join(home, a)}
	accA, err := osuser.Ensure(ctx, cfgA)
	if err != nil {
		t.Fatal(err)
	}
	if accA.UID != lo || accA.GID != lo || accA.Name != a || accA.Home != cfgA.Home {
		t.Fatalf("Ensure = %+v, want uid=gid=%d, home %s", accA, lo, cfgA.Home)
	}
	if _, err := os.Stat(cfgA.Home); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("home %s was created (stat: %v); the caller mounts it", cfgA.Home, err)
	}
	if _, err := os.Stat(home); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("home parent %s was created (stat: %v)", home, err)
	}
	out, err := exec.Command("getent", "passwd", a).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s:x:%d:%d:codehub workspace:%s:/bin/bash\n", a, lo, lo, cfgA.Home); string(out) != want {
		t.Errorf("passwd entry %q, want %q", out, want)
	}
	if out, err := exec.Command("getent", "shadow", a).Output(); err != nil || len(out) < len(a)+2 || out[len(a)+1] != '!' {
		t.Errorf("shadow entry %q (%v): want a locked password (!)", out, err)
	}

	// Ensure again returns the same account without creating anything.
	again, err := osuser.Ensure(ctx, cfgA)
	if err != nil || again != accA {
		t.Fatalf("second Ensure = %+v, %v; want %+v", again, err, accA)
	}
	got, err := osuser.Lookup(a)
	if err != nil || got != accA {
		t.Fatalf("Lookup = %+v, %v; want %+v", got, err, accA)
	}

	cfgB := osuser.Config{Name: b, UIDMin: lo, UIDMax: hi, Home: filepath.Join(home, b), Shell: "/bin/sh"}
	accB, err := osuser.Ensure(ctx, cfgB)
	if err != nil {
		t.Fatal(err)
	}
	if accB.UID != lo+1 {
		t.Fatalf("second account uid %d, want %d", accB.UID, lo+1)
	}

	// Freeing the lowest uid makes it the next one handed out.
	if err := osuser.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := osuser.Lookup(a); !errors.Is(err, osuser.ErrNotFound) {
		t.Fatalf("Lookup after Delete: %v, want ErrNotFound", err)
	}
	if exec.Command("getent", "group", a).Run() == nil {
		t.Errorf("group %s survived Delete", a)
	}
	c := testName(t, "c")
	accC, err := osuser.Ensure(ctx, osuser.Config{Name: c, UIDMin: lo, UIDMax: hi, Home: filepath.Join(home, c)})
	if err != nil {
		t.Fatal(err)
	}
	if accC.UID != lo {
		t.Errorf("uid after delete %d, want the freed %d", accC.UID, lo)
	}
	// Deleting twice is fine.
	if err := osuser.Delete(ctx, a); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestEnsureFullRange(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	lo, hi := freeRange(t, 1)
	a, b := testName(t, "f"), testName(t, "g")
	if _, err := osuser.Ensure(ctx, osuser.Config{Name: a, UIDMin: lo, UIDMax: hi, Home: "/nonexistent/" + a}); err != nil {
		t.Fatal(err)
	}
	_, err := osuser.Ensure(ctx, osuser.Config{Name: b, UIDMin: lo, UIDMax: hi, Home: "/nonexistent/" + b})
	if !errors.Is(err, osuser.ErrNoFreeUID) {
		t.Fatalf("Ensure in a full range: %v, want ErrNoFreeUID", err)
	}
	if _, err := osuser.Lookup(b); !errors.Is(err, osuser.ErrNotFound) {
		t.Errorf("Lookup(%s) = %v, want ErrNotFound", b, err)
	}
}

func TestEnsureRefusesForeignAccount(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	lo, hi := freeRange(t, 10)
	// root exists with uid 0, outside any range Ensure accepts.
	_, err := osuser.Ensure(ctx, osuser.Config{Name: "root", UIDMin: lo, UIDMax: hi, Home: "/root"})
	if !errors.Is(err, osuser.ErrConflict) {
		t.Fatalf("Ensure(root) = %v, want ErrConflict", err)
	}
	// Same name, other home: refused rather than silently mismatched.
	a := testName(t, "h")
	if _, err := osuser.Ensure(ctx, osuser.Config{Name: a, UIDMin: lo, UIDMax: hi, Home: "/nonexistent/one"}); err != nil {
		t.Fatal(err)
	}
	_, err = osuser.Ensure(ctx, osuser.Config{Name: a, UIDMin: lo, UIDMax: hi, Home: "/nonexistent/two"})
	if !errors.Is(err, osuser.ErrConflict) {
		t.Fatalf("Ensure with another home = %v, want ErrConflict", err)
	}
	// Same account, another range that excludes its uid.
	_, err = osuser.Ensure(ctx, osuser.Config{Name: a, UIDMin: hi + 1, UIDMax: hi + 10, Home: "/nonexistent/one"})
	if !errors.Is(err, osuser.ErrConflict) {
		t.Fatalf("Ensure with another range = %v, want ErrConflict", err)
	}
}

// TestEnsureRace runs Ensure concurrently, as gateways sharing /etc/passwd
// would: distinct names get distinct uids, one name gets one account.
func TestEnsureRace(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	const distinct, same = 6, 4
	lo, hi := freeRange(t, distinct+2)
	names := make([]string, distinct)
	for i := range names {
		names[i] = testName(t, fmt.Sprintf("r%d", i))
	}
	shared := testName(t, "s")

	type result struct {
		acc osuser.Account
		err error
	}
	results := make([]result, distinct+same)
	var wg sync.WaitGroup
	for i := range distinct + same {
		name := shared
		if i < distinct {
			name = names[i]
		}
		wg.Go(func() {
			acc, err := osuser.Ensure(ctx, osuser.Config{Name: name, UIDMin: lo, UIDMax: hi, Home: "/nonexistent/" + name})
			results[i] = result{acc, err}
		})
	}
	wg.Wait()

	uids := make(map[int]string)
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("Ensure #%d: %v", i, r.err)
		}
		if r.acc.UID < lo || r.acc.UID > hi {
			t.Errorf("%s: uid %d outside [%d, %d]", r.acc.Name, r.acc.UID, lo, hi)
		}
		if other, ok := uids[r.acc.UID]; ok && other != r.acc.Name {
			t.Errorf("uid %d given to both %s and %s", r.acc.UID, other, r.acc.Name)
		}
		uids[r.acc.UID] = r.acc.Name
	}
	if len(uids) != distinct+1 {
		t.Errorf("%d distinct uids, want %d: %v", len(uids), distinct+1, uids)
	}
}

func TestDeleteKeepsFiles(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	lo, hi := freeRange(t, 10)
	a := testName(t, "d")
	home := filepath.Join(t.TempDir(), a)
	acc, err := osuser.Ensure(ctx, osuser.Config{Name: a, UIDMin: lo, UIDMax: hi, Home: home})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(home, "work.txt")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, acc.UID, acc.GID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(file, acc.UID, acc.GID); err != nil {
		t.Fatal(err)
	}
	if err := osuser.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("after Delete: %q, %v; want the file kept", b, err)
	}
}
