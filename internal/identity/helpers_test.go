package identity_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/auth"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/lockout"
	"github.com/codehub-dev/codehub/internal/password"
	"github.com/codehub-dev/codehub/internal/revocation"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/session/memory"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/token"
	"github.com/codehub-dev/codehub/internal/token/filekeys"
	"github.com/codehub-dev/codehub/internal/user"
)

const (
	// goodPW passes every complexity rule the tests configure.
	goodPW = "correct-horse-42"
	// otherPW is a second good password, for changes.
	otherPW = "battery-staple-77"

	sessionTTL = 24 * time.Hour
	accessTTL  = 10 * time.Minute
	// cacheTTL is identity's default CacheTTL: how long a cached session
	// or user is trusted without an event.
	cacheTTL = 30 * time.Second

	// guard bounds every wait for something asynchronous (a bus poll, a
	// goroutine). It only fails a deadlock: no test asserts durations.
	guard = 10 * time.Second
)

// cheap argon2 parameters: the tests hash many passwords.
var cheap = password.Params{Memory: 64, Time: 1, Threads: 1}

// epoch is where fake clocks start: a whole second, so that token expiry
// (whole seconds) and the clock agree exactly.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// client is where test sign-ins come from.
var client = identity.Client{IP: "192.0.2.7", UserAgent: "test-browser/1.0"}

// fakeClock is a clock tests move by hand, shared by the Service, the
// stores, the authenticator and the token service.
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

// setup says how to build a gateway; the zero value is a gateway with
// database sessions, a local bus and API tokens, on a new SQLite file.
type setup struct {
	// cfg is the Service's configuration; Now is always the clock, a zero
	// SessionTTL is sessionTTL and a zero MinPasswordLength is 8.
	cfg identity.Config
	// lock is the lockout policy of the authenticator; the zero Policy
	// never locks.
	lock lockout.Policy
	// deviceTTL is how long device cookies trust a browser (0: none).
	deviceTTL time.Duration
	// clock is shared with other gateways; nil: a new one.
	clock *fakeClock
	// dbPath and keysPath name files shared with other gateways; "": new
	// ones.
	dbPath, keysPath string
	// memorySessions keeps sessions in the gateway's memory instead of
	// the database.
	memorySessions bool
	// wrap, if set, wraps the session store the Service uses.
	wrap func(session.Store) session.Store
	// bus makes the revocation bus; nil: a Local bus.
	bus func(*sqlstore.DB) revocation.Bus
}

// gateway is one Service with real collaborators.
type gateway struct {
	clock *fakeClock
	db    *sqlstore.DB
	users user.Store
	// store is the session store itself, for checks behind the Service's
	// back; the Service may see it wrapped.
	store   session.Store
	tokens  *token.Service
	guard   *lockout.Guard
	hasher  *countingHasher
	audit   *auditLog
	bus     revocation.Bus
	svc     *identity.Service
	revoked *revokeLog
	created *createdLog
}

func newGateway(t *testing.T, st setup) *gateway {
	t.Helper()
	if st.clock == nil {
		st.clock = newClock()
	}
	dir := t.TempDir()
	if st.dbPath == "" {
		st.dbPath = filepath.Join(dir, "codehub.db")
	}
	if st.keysPath == "" {
		st.keysPath = filepath.Join(dir, "jwt-keys.json")
	}
	log := testenv.Logger(t)
	g := &gateway{clock: st.clock, revoked: &revokeLog{}, created: &createdLog{}, audit: &auditLog{}}

	db, err := sqlstore.Open(context.Background(), sqlstore.Config{
		Driver: sqlstore.DriverSQLite, Path: st.dbPath, Now: st.clock.Now,
	}, log)
	if err != nil {
		t.Fatalf("sqlstore.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	g.db, g.users = db, db.Users()
	if st.memorySessions {
		g.store = memory.New(st.clock.Now)
	} else {
		g.store = db.Sessions()
	}
	sessions := g.store
	if st.wrap != nil {
		sessions = st.wrap(sessions)
	}
	if st.bus != nil {
		g.bus = st.bus(db)
	} else {
		g.bus = revocation.NewLocal()
	}

	keys, err := filekeys.Open(filekeys.Config{Path: st.keysPath, Now: st.clock.Now})
	if err != nil {
		t.Fatalf("filekeys.Open: %v", err)
	}
	g.tokens, err = token.NewService(token.Config{
		Issuer: "https://codehub.test", Audience: "codehub-api", AccessTTL: accessTTL, Now: st.clock.Now,
	}, keys)
	if err != nil {
		t.Fatalf("token.NewService: %v", err)
	}
	ph, err := password.NewHasher(cheap, 0)
	if err != nil {
		t.Fatalf("NewHasher: %v", err)
	}
	hasher := &countingHasher{Hasher: ph}
	g.hasher = hasher
	g.guard, err = lockout.New(context.Background(), lockout.Config{Store: db.Lockout(), Policy: st.lock, DeviceTTL: st.deviceTTL, Now: st.clock.Now})
	if err != nil {
		t.Fatalf("lockout.New: %v", err)
	}

	cfg := st.cfg
	cfg.Now = st.clock.Now
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = sessionTTL
	}
	if cfg.MinPasswordLength == 0 {
		cfg.MinPasswordLength = 8
	}
	g.svc = identity.New(cfg, identity.Deps{
		Authn:            auth.NewDatabase(auth.DatabaseConfig{Users: g.users, Hasher: hasher, Lockout: g.guard, Now: st.clock.Now, Log: log.Named("auth")}),
		Lockout:          g.guard,
		Audit:            g.audit,
		Users:            g.users,
		Sessions:         sessions,
		Tokens:           g.tokens,
		Bus:              g.bus,
		Hasher:           hasher,
		OnRevoke:         g.revoked.record,
		OnSessionCreated: g.created.record,
	}, log.Named("identity"))
	return g
}

// countingHasher counts the argon2 verifications it does, real and dummy:
// the tests assert that every attempt costs one, whether or not its name
// has an account, rather than timing them.
type countingHasher struct {
	*password.Hasher
	mu          sync.Mutex
	real, dummy int
}

func (h *countingHasher) Verify(ctx context.Context, pw, enc string) (bool, bool, error) {
	h.mu.Lock()
	h.real++
	h.mu.Unlock()
	return h.Hasher.Verify(ctx, pw, enc)
}

func (h *countingHasher) VerifyDummy(ctx context.Context, pw string) error {
	h.mu.Lock()
	h.dummy++
	h.mu.Unlock()
	return h.Hasher.VerifyDummy(ctx, pw)
}

// counts returns the verifications so far, real and dummy, and resets them.
func (h *countingHasher) counts() (real, dummy int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	real, dummy = h.real, h.dummy
	h.real, h.dummy = 0, 0
	return real, dummy
}

// run runs the Service until t ends.
func (g *gateway) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(guard):
			t.Errorf("Run did not return after its context ended")
		}
	})
}

// mustUser creates name (email name@example.com, password goodPW) with
// role ("" for the default).
func (g *gateway) mustUser(t *testing.T, name, role string) *user.User {
	t.Helper()
	u, err := g.svc.CreateUser(context.Background(), identity.NewUser{
		Username: name, Email: name + "@example.com", Password: goodPW, Role: role,
	})
	if err != nil {
		t.Fatalf("CreateUser(%s): %v", name, err)
	}
	return u
}

// mustLogin signs name in with goodPW.
func (g *gateway) mustLogin(t *testing.T, name string) *identity.LoginResult {
	t.Helper()
	res, err := g.svc.Login(context.Background(), name, goodPW, client)
	if err != nil {
		t.Fatalf("Login(%s): %v", name, err)
	}
	return res
}

// mustLoginAPI signs name in as an API client.
func (g *gateway) mustLoginAPI(t *testing.T, name string) (*identity.TokenPair, *identity.Principal) {
	t.Helper()
	pair, p, err := g.svc.LoginAPI(context.Background(), name, goodPW, client)
	if err != nil {
		t.Fatalf("LoginAPI(%s): %v", name, err)
	}
	return pair, p
}

// fromCookie is FromCookie, failing t on an error.
func (g *gateway) fromCookie(t *testing.T, tok string) *identity.Principal {
	t.Helper()
	p, err := g.svc.FromCookie(context.Background(), tok)
	if err != nil {
		t.Fatalf("FromCookie: %v", err)
	}
	return p
}

// fromBearer is FromBearer, failing t on an error.
func (g *gateway) fromBearer(t *testing.T, tok string) *identity.Principal {
	t.Helper()
	p, err := g.svc.FromBearer(context.Background(), tok)
	if err != nil {
		t.Fatalf("FromBearer: %v", err)
	}
	return p
}

// stored returns the session as the store keeps it, or nil.
func (g *gateway) stored(t *testing.T, id string) *session.Session {
	t.Helper()
	s, err := g.store.Get(context.Background(), id)
	if errors.Is(err, session.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("store Get: %v", err)
	}
	return s
}

// sessionIDs lists a user's live sessions through the Service.
func (g *gateway) sessionIDs(t *testing.T, userID string) []string {
	t.Helper()
	ss, err := g.svc.UserSessions(context.Background(), userID)
	if err != nil {
		t.Fatalf("UserSessions: %v", err)
	}
	ids := make([]string, len(ss))
	for i, s := range ss {
		ids[i] = s.ID
	}
	return ids
}

// wantLive fails t unless the cookie names a live session of userID.
func (g *gateway) wantLive(t *testing.T, tok, userID string) *identity.Principal {
	t.Helper()
	p := g.fromCookie(t, tok)
	if p == nil {
		t.Fatalf("FromCookie = nil; want a principal of %s", userID)
	}
	if p.User.ID != userID || p.Session.UserID != userID || p.Via != "cookie" {
		t.Fatalf("FromCookie = user %s, session of %s, via %q; want %s by cookie", p.User.ID, p.Session.UserID, p.Via, userID)
	}
	return p
}

// wantEnded fails t unless the cookie names no live session.
func (g *gateway) wantEnded(t *testing.T, tok string) {
	t.Helper()
	if p := g.fromCookie(t, tok); p != nil {
		t.Fatalf("FromCookie = session %s of %s; want nil", p.Session.ID, p.User.ID)
	}
}

// wantCode fails t unless err is an *identity.Error with code and a
// message for the person.
func wantCode(t *testing.T, err error, code string) *identity.Error {
	t.Helper()
	var ie *identity.Error
	if !errors.As(err, &ie) {
		t.Fatalf("error = %v; want an *identity.Error with code %q", err, code)
	}
	if ie.Code != code {
		t.Fatalf("code = %q (%v); want %q", ie.Code, err, code)
	}
	if identity.CodeOf(err) != code {
		t.Fatalf("CodeOf = %q; want %q", identity.CodeOf(err), code)
	}
	if ie.Message == "" {
		t.Errorf("error %q has no message", code)
	}
	return ie
}

// eventually polls cond until it holds; the guard only fails a deadlock.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// probePrefix marks the session ids of probe events, which only show that
// a subscription is up.
const probePrefix = "probe-"

// waitSubscribed publishes probe events on bus until every log has seen
// one: from then on, the gateways behind those logs receive every event
// published (their Resync, if any, has been applied too).
func waitSubscribed(t *testing.T, bus revocation.Bus, logs ...*revokeLog) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for i := 0; ; i++ {
		all := true
		for _, l := range logs {
			all = all && l.probes() > 0
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for the revocation subscriptions")
		}
		if err := bus.Publish(context.Background(), revocation.Event{SessionIDs: []string{probePrefix + strconv.Itoa(i)}}); err != nil {
			t.Fatalf("publish probe: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// revokeLog records OnRevoke calls, probes apart.
type revokeLog struct {
	mu      sync.Mutex
	ids     []string
	nprobes int
}

func (r *revokeLog) record(ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if strings.HasPrefix(id, probePrefix) {
			r.nprobes++
			continue
		}
		r.ids = append(r.ids, id)
	}
}

func (r *revokeLog) probes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nprobes
}

// count says how many times id was reported ended.
func (r *revokeLog) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, x := range r.ids {
		if x == id {
			n++
		}
	}
	return n
}

func (r *revokeLog) has(id string) bool { return r.count(id) > 0 }

// createdLog records OnSessionCreated calls.
type createdLog struct {
	mu  sync.Mutex
	ids []string
}

func (c *createdLog) record(s *session.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ids = append(c.ids, s.ID)
}

func (c *createdLog) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ids...)
}

// hookStore is a session.Store that counts Gets and runs a hook once
// after a successful Get or Update of the real store, so that a test can
// slip another request in at that exact point.
type hookStore struct {
	session.Store

	mu          sync.Mutex
	gets        int
	afterGet    func(*session.Session)
	afterUpdate func(*session.Session)
}

func (h *hookStore) Get(ctx context.Context, id string) (*session.Session, error) {
	s, err := h.Store.Get(ctx, id)
	h.mu.Lock()
	h.gets++
	var fn func(*session.Session)
	if err == nil {
		fn, h.afterGet = h.afterGet, nil
	}
	h.mu.Unlock()
	if fn != nil {
		fn(s)
	}
	return s, err
}

func (h *hookStore) Update(ctx context.Context, id string, fn func(*session.Session) error) (*session.Session, error) {
	s, err := h.Store.Update(ctx, id, fn)
	h.mu.Lock()
	var hook func(*session.Session)
	if err == nil {
		hook, h.afterUpdate = h.afterUpdate, nil
	}
	h.mu.Unlock()
	if hook != nil {
		hook(s)
	}
	return s, err
}

func (h *hookStore) getCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gets
}

// gatedBus holds back the events hold selects, on their way to
// subscribers, until open is closed: a slow bus, on demand.
type gatedBus struct {
	revocation.Bus
	hold func(revocation.Event) bool
	open chan struct{}
}

func (g *gatedBus) Subscribe(ctx context.Context, fn func(revocation.Event)) error {
	return g.Bus.Subscribe(ctx, func(ev revocation.Event) {
		if g.hold(ev) {
			select {
			case <-g.open:
			case <-ctx.Done():
				return
			}
		}
		fn(ev)
	})
}
