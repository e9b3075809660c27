// Package lockout slows password guessing without locking the real person
// out. Failed sign-ins are counted per sign-in name and client: the
// client is the address (IPv4 /32, IPv6 /64) or, for a browser that has
// signed in to that name before, its device cookie. Failures from one
// client lock that client out of that name, with growing delays, while
// every other client can still sign in. Only when failures for one name
// come from many clients at once (a distributed attack) is the name locked
// for every client except trusted browsers.
//
// State is kept under a keyed hash of the normalized name, whether or not
// an account has that name, so names that exist and names that do not
// behave identically, and the store never holds what people typed.
package lockout

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/codehub-dev/codehub/internal/user"
)

// AllClients is the client of the entry that holds a name's lock for
// every client.
const AllClients = "*"

// devicePrefix starts the client of a trusted browser.
const devicePrefix = "device:"

// Policy says when failures lock, and for how long.
type Policy struct {
	// MaxFailures failed sign-ins in a row for one name from one client
	// lock that client out of that name; 0 never locks.
	MaxFailures int
	// BaseLock is the first lock's length; each further lock in a row
	// doubles it, up to MaxLock.
	BaseLock, MaxLock time.Duration
	// ResetAfter forgets a client's failures and lock history after this
	// long without a failure (default 24h).
	ResetAfter time.Duration

	// NameClients is the attack signal: failures for one name from at
	// least this many distinct clients within NameWindow lock the name
	// for every client for NameLock (doubling for each further lock in a
	// row, up to MaxLock), except browsers with a device cookie for it.
	// 0 never locks a name for everyone.
	NameClients int
	NameWindow  time.Duration
	NameLock    time.Duration
}

// LockDuration is the length of lock number n (0-based) in a row, starting
// at base and doubling up to MaxLock (or base, if longer).
func (p Policy) LockDuration(base time.Duration, n int) time.Duration {
	limit := max(p.MaxLock, base)
	d := base
	for i := 0; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// Entry is the failure state of one name and one client (or AllClients).
type Entry struct {
	// NameKey is the keyed hash of the normalized name.
	NameKey string
	// Client is an address, "device:<id>" for a trusted browser, or
	// AllClients.
	Client string
	// Failures since the last success or lock of this client.
	Failures int
	// LockedUntil ends the current lock (zero: none); LockCount counts
	// locks in a row, each doubling the next.
	LockedUntil time.Time
	LockCount   int
	LastFailure time.Time
}

// Locked reports whether e's lock is running at now.
func (e Entry) Locked(now time.Time) bool { return now.Before(e.LockedUntil) }

// Outcome is what one recorded failure led to.
type Outcome struct {
	// Client and Name are the client's and the name's entries afterwards.
	Client, Name Entry
	// ClientLocking and NameLocking are set when this failure started
	// the lock.
	ClientLocking, NameLocking bool
}

// ErrNoSecret is returned by Store.Secret when the store holds no key and
// none was made.
var ErrNoSecret = errors.New("no lockout key")

// Store keeps failure state, shared by every gateway. Implementations are
// safe for concurrent use by several gateways at once (the SQL stores).
type Store interface {
	// Secret returns the installation's key, storing generate's result first
	// if there is none; every gateway of one store gets the same key.
	Secret(ctx context.Context, generate func() ([]byte, error)) ([]byte, error)
	// Get returns the entries of (nameKey, client) and of (nameKey,
	// AllClients); missing ones are zero but for their keys.
	Get(ctx context.Context, nameKey, client string) (c, name Entry, err error)
	// RecordFailure counts one failure of client for nameKey at now,
	// atomically across gateways: the client's entry (forgotten first if
	// its last failure is older than p.ResetAfter) locks at
	// p.MaxFailures; then, when at least p.NameClients distinct clients
	// failed within p.NameWindow and no name lock runs, the name locks.
	// Failures of one name are serialized.
	RecordFailure(ctx context.Context, nameKey, client string, now time.Time, p Policy) (Outcome, error)
	// Forget removes the entry of (nameKey, client): a success.
	Forget(ctx context.Context, nameKey, client string) error
	// List returns the entries of the names, AllClients first then by
	// client.
	List(ctx context.Context, nameKeys []string) ([]Entry, error)
	// Clear removes the entries of the names for client, or for every
	// client (and AllClients) when client is "", and returns how many.
	Clear(ctx context.Context, nameKeys []string, client string) (int, error)
	// Prune removes entries with no running lock at now whose last
	// failure is before before, and returns how many.
	Prune(ctx context.Context, now, before time.Time) (int, error)
}

// NormalizeName is how a sign-in name is compared: as the user store
// compares usernames and emails (user.SignInName: trimmed, ASCII letters
// lower-cased, an internationalized domain in its ASCII form), so that
// every spelling of one account's name counts against the same lock.
func NormalizeName(name string) string {
	key, _, _ := user.SignInName(name)
	return key
}

// AddressClient is the client of an address: IPv4 addresses alone, IPv6
// by /64, the block one host usually holds (as the throttle groups them).
func AddressClient(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// IsDevice reports whether client is a trusted browser.
func IsDevice(client string) bool { return strings.HasPrefix(client, devicePrefix) }

// Config configures a Guard.
type Config struct {
	Store  Store
	Policy Policy
	// DeviceTTL is how long a device cookie trusts a browser; 0 issues
	// none.
	DeviceTTL time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Guard applies a Policy to a Store. It is safe for concurrent use.
type Guard struct {
	store     Store
	policy    Policy
	deviceTTL time.Duration
	now       func() time.Time
	nameMAC   []byte // key of the name hashes
	deviceMAC []byte // key of the device cookies' signatures
}

// New loads (or, on first use, creates) the installation's key and returns
// a Guard.
func New(ctx context.Context, cfg Config) (*Guard, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Policy.ResetAfter <= 0 {
		cfg.Policy.ResetAfter = 24 * time.Hour
	}
	secret, err := cfg.Store.Secret(ctx, func() ([]byte, error) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		return b, nil
	})
	if err != nil {
		return nil, fmt.Errorf("lockout key: %w", err)
	}
	if len(secret) < 16 {
		return nil, fmt.Errorf("lockout key: %d bytes is too short", len(secret))
	}
	return &Guard{
		store: cfg.Store, policy: cfg.Policy, deviceTTL: cfg.DeviceTTL, now: cfg.Now,
		nameMAC: derive(secret, "names"), deviceMAC: derive(secret, "devices"),
	}, nil
}

// derive makes one key per purpose, so that a name hash can never pass
// for a cookie signature.
func derive(secret []byte, purpose string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("codehub lockout " + purpose))
	return m.Sum(nil)
}

func mac(key []byte, parts ...string) string {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Policy returns the policy in force.
func (g *Guard) Policy() Policy { return g.policy }

// NameKey is the key the state of a sign-in name is kept under.
func (g *Guard) NameKey(name string) string { return mac(g.nameMAC, NormalizeName(name)) }

// IssueDevice returns a device cookie trusting this browser for name, and
// when it expires; "" when device cookies are off.
func (g *Guard) IssueDevice(name string) (string, time.Time) {
	if g.deviceTTL <= 0 {
		return "", time.Time{}
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", time.Time{}
	}
	exp := g.now().Add(g.deviceTTL).Truncate(time.Second)
	payload := base64.RawURLEncoding.EncodeToString(b) + "." + strconv.FormatInt(exp.Unix(), 10) + "." + g.NameKey(name)
	return payload + "." + mac(g.deviceMAC, payload), exp
}

// Device returns the client of a device cookie when it is genuine,
// unexpired and issued for name; ok is false otherwise.
func (g *Guard) Device(cookie, name string) (client string, ok bool) {
	if g.deviceTTL <= 0 || cookie == "" || len(cookie) > 256 {
		return "", false
	}
	parts := strings.Split(cookie, ".")
	if len(parts) != 4 {
		return "", false
	}
	payload := strings.Join(parts[:3], ".")
	if !hmac.Equal([]byte(parts[3]), []byte(mac(g.deviceMAC, payload))) {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || !g.now().Before(time.Unix(exp, 0)) {
		return "", false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(g.NameKey(name))) {
		return "", false
	}
	return devicePrefix + parts[0], true
}

// Client is who an attempt at name comes from: the browser when its device
// cookie is trusted for name, else the address.
func (g *Guard) Client(addr netip.Addr, deviceCookie, name string) (client string, trusted bool) {
	if c, ok := g.Device(deviceCookie, name); ok {
		return c, true
	}
	return AddressClient(addr), false
}

// Status is the lock state an attempt meets.
type Status struct {
	// Client is the attempting client's entry, Name the name's.
	Client, Name Entry
}

// Check returns the state of name for client.
func (g *Guard) Check(ctx context.Context, name, client string) (Status, error) {
	c, n, err := g.store.Get(ctx, g.NameKey(name), client)
	if err != nil {
		return Status{}, fmt.Errorf("lockout state: %w", err)
	}
	return Status{Client: c, Name: n}, nil
}

// Failed records a failed attempt at name by client.
func (g *Guard) Failed(ctx context.Context, name, client string) (Outcome, error) {
	if g.policy.MaxFailures <= 0 && g.policy.NameClients <= 0 {
		return Outcome{}, nil
	}
	out, err := g.store.RecordFailure(ctx, g.NameKey(name), client, g.now(), g.policy)
	if err != nil {
		return Outcome{}, fmt.Errorf("record failed sign-in: %w", err)
	}
	return out, nil
}

// Succeeded forgets client's failures at name. A name lock stays: the
// attack it answers goes on.
func (g *Guard) Succeeded(ctx context.Context, name, client string) error {
	if err := g.store.Forget(ctx, g.NameKey(name), client); err != nil {
		return fmt.Errorf("forget failed sign-ins: %w", err)
	}
	return nil
}

// Lock is failure state as an administrator sees it.
type Lock struct {
	// Name is which of the names asked about the entry is for.
	Name string `json:"name"`
	// Client is an address, "device:<id>" for a trusted browser, or
	// AllClients for the lock of the name for everyone.
	Client string `json:"client"`
	// Failures since the last success or lock; LockCount is how many
	// locks in a row (each doubles the next).
	Failures    int       `json:"failures"`
	LockCount   int       `json:"lockCount"`
	LockedUntil time.Time `json:"lockedUntil,omitzero"`
	LastFailure time.Time `json:"lastFailure,omitzero"`
	// Locked is whether LockedUntil is still ahead.
	Locked bool `json:"locked"`
}

// Locks returns the failure state of the names (an account's username and
// email), with running locks first.
func (g *Guard) Locks(ctx context.Context, names ...string) ([]Lock, error) {
	keys, byKey := g.keys(names)
	entries, err := g.store.List(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("list sign-in locks: %w", err)
	}
	now := g.now()
	out := make([]Lock, 0, len(entries))
	for _, e := range entries {
		// The name's own entry matters only while it locks everyone: its
		// count is the sum of the clients' shown below it.
		if !e.Locked(now) && (e.Client == AllClients || e.Failures == 0 || now.Sub(e.LastFailure) > g.policy.ResetAfter) {
			continue
		}
		out = append(out, Lock{Name: byKey[e.NameKey], Client: e.Client, Failures: e.Failures, LockCount: e.LockCount,
			LockedUntil: e.LockedUntil, LastFailure: e.LastFailure, Locked: e.Locked(now)})
	}
	return out, nil
}

// Clear forgets the names' state for client, or all of it when client is
// "", and returns how many entries it removed.
func (g *Guard) Clear(ctx context.Context, names []string, client string) (int, error) {
	keys, _ := g.keys(names)
	n, err := g.store.Clear(ctx, keys, client)
	if err != nil {
		return 0, fmt.Errorf("clear sign-in locks: %w", err)
	}
	return n, nil
}

func (g *Guard) keys(names []string) ([]string, map[string]string) {
	byKey := make(map[string]string, len(names))
	var keys []string
	for _, n := range names {
		if n == "" {
			continue
		}
		k := g.NameKey(n)
		if _, dup := byKey[k]; !dup {
			byKey[k] = NormalizeName(n)
			keys = append(keys, k)
		}
	}
	return keys, byKey
}

// Sweep removes state that no longer matters: no lock running and no
// failure within ResetAfter.
func (g *Guard) Sweep(ctx context.Context) (int, error) {
	now := g.now()
	n, err := g.store.Prune(ctx, now, now.Add(-g.policy.ResetAfter))
	if err != nil {
		return 0, fmt.Errorf("sweep sign-in failures: %w", err)
	}
	return n, nil
}
