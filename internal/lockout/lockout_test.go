package lockout_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/lockout"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/testenv"
)

type clock struct{ t time.Time }

func (c *clock) Now() time.Time { return c.t }

func newGuard(t *testing.T, path string, c *clock, ttl time.Duration) *lockout.Guard {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.DriverSQLite, Path: path}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	g, err := lockout.New(context.Background(), lockout.Config{Store: db.Lockout(), DeviceTTL: ttl, Now: c.Now,
		Policy: lockout.Policy{MaxFailures: 3, BaseLock: time.Minute, MaxLock: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// A device cookie trusts its browser for its name only, until it expires,
// and only as the gateways of one database signed it; any change to it
// is refused.
func TestDeviceCookies(t *testing.T) {
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "codehub.db")
	g := newGuard(t, path, c, 24*time.Hour)
	cookie, exp := g.IssueDevice(" Alice ")
	if cookie == "" || !exp.Equal(c.t.Add(24*time.Hour)) {
		t.Fatalf("IssueDevice = %q, %v", cookie, exp)
	}
	client, ok := g.Device(cookie, "alice")
	if !ok || !strings.HasPrefix(client, "device:") || !lockout.IsDevice(client) {
		t.Fatalf("Device = %q, %v", client, ok)
	}
	if other, _ := g.IssueDevice("alice"); other == cookie {
		t.Fatal("two device cookies are the same")
	}
	// Another gateway of the same database trusts it; another
	// installation does not.
	if _, ok := newGuard(t, path, c, 24*time.Hour).Device(cookie, "alice"); !ok {
		t.Fatal("another gateway of the same database refuses the cookie")
	}
	if _, ok := newGuard(t, filepath.Join(t.TempDir(), "other.db"), c, 24*time.Hour).Device(cookie, "alice"); ok {
		t.Fatal("another installation trusts the cookie")
	}
	parts := strings.Split(cookie, ".")
	later := strings.Join([]string{parts[0], "9999999999", parts[2], parts[3]}, ".")
	for _, tc := range []struct{ what, cookie, name string }{
		{"another name", cookie, "bob"},
		{"empty", "", "alice"},
		{"a later expiry", later, "alice"},
		{"truncated", cookie[:len(cookie)-1], "alice"},
		{"extended", cookie + ".x", "alice"},
		{"too long", strings.Repeat("a", 300), "alice"},
	} {
		if _, ok := g.Device(tc.cookie, tc.name); ok {
			t.Errorf("%s: trusted", tc.what)
		}
	}
	c.t = exp
	if _, ok := g.Device(cookie, "alice"); ok {
		t.Fatal("an expired cookie is trusted")
	}
	// With device cookies off, none is issued or trusted.
	off := newGuard(t, path, c, 0)
	if ck, _ := off.IssueDevice("alice"); ck != "" {
		t.Fatal("a cookie issued with device cookies off")
	}
	c.t = c.t.Add(-time.Hour)
	if _, ok := off.Device(cookie, "alice"); ok {
		t.Fatal("a cookie trusted with device cookies off")
	}
}

func TestAddressClient(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::1":      "2001:db8:1:2::/64",
		"fe80::1%eth0":         "fe80::/64",
	} {
		if got := lockout.AddressClient(netip.MustParseAddr(in)); got != want {
			t.Errorf("AddressClient(%s) = %s; want %s", in, got, want)
		}
	}
	if got := lockout.AddressClient(netip.Addr{}); got != "unknown" {
		t.Errorf("AddressClient(zero) = %s", got)
	}
}

// Names are compared as the user store compares them, and kept only as
// keyed hashes.
func TestNameKey(t *testing.T) {
	c := &clock{t: time.Now()}
	g := newGuard(t, filepath.Join(t.TempDir(), "codehub.db"), c, 0)
	if g.NameKey(" Alice@Example.com ") != g.NameKey("alice@example.com") || g.NameKey("alice") == g.NameKey("bob") {
		t.Fatal("NameKey does not normalize, or collides")
	}
	if strings.Contains(g.NameKey("alice"), "alice") || len(g.NameKey("alice")) != 43 {
		t.Fatalf("NameKey(alice) = %q", g.NameKey("alice"))
	}
}
