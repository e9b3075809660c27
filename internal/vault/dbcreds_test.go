// Against a real dev Vault (VAULT_ADDR, VAULT_TOKEN): see the top of
// helpers_test.go.

package vault

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/testenv"
	fakevault "github.com/codehub-dev/codehub/internal/testfake/vault"
)

// dbSetup is a database whose credentials come from Vault.
type dbSetup struct {
	env   *fakevault.Env
	db    *fakevault.TestDatabase
	front *fakevault.PasswordFront
	mount string // the database engine's, the test's own
	role  string
	pol   string // allows the role's credentials
}

// newDBSetup makes a database, its Vault role with leases of ttl (up to
// maxTTL), and a password-checking front to connect through.
func newDBSetup(t *testing.T, ttl, maxTTL time.Duration) *dbSetup {
	t.Helper()
	// The database first: the fake, closing before it, revokes its users.
	s := &dbSetup{db: fakevault.NewTestDatabase(t)}
	s.env = fakevault.Target(t)
	root := s.env.Client(t)
	s.mount = s.env.Mount(t, "database")
	s.role = unique("codehub")
	s.db.Configure(t, root, s.mount, s.role, ttl, maxTTL)
	s.pol = policy(t, root, s.mount+"/creds/"+s.role)
	s.front = fakevault.StartPasswordFront(t, fakevault.PostgresAdminDSN())
	return s
}

// open opens the store the gateway would, with creds.
func (s *dbSetup) open(t *testing.T, creds *DBCredentials) *sqlstore.DB {
	t.Helper()
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{
		Driver: sqlstore.DriverPostgres, DSN: s.front.DSN(s.db.Name),
		CredentialsFunc: creds.Credentials, ConnMaxLifetime: creds.ConnMaxLifetime(), MaxOpenConns: 8,
	}, testenv.Logger(t))
	if err != nil {
		t.Fatalf("sqlstore.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newDBCredentials(t *testing.T, c *Client, cfg DBConfig) *DBCredentials {
	t.Helper()
	d, err := NewDBCredentials(context.Background(), c, cfg, testenv.Logger(t))
	if err != nil {
		t.Fatalf("NewDBCredentials: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// sessionUser is the user a connection logged in as.
func sessionUser(t *testing.T, conn *sql.Conn) string {
	t.Helper()
	var u string
	if err := conn.QueryRowContext(context.Background(), "SELECT session_user").Scan(&u); err != nil {
		t.Fatalf("SELECT session_user: %v", err)
	}
	return u
}

// requestLoop runs requests against db until stopped, as the gateway's
// handlers would, and counts failures.
type requestLoop struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	total   int
	errs    []error
	byUser  map[string]int
	lastErr error
}

func startLoop(db *sqlstore.DB, workers int) *requestLoop {
	l := &requestLoop{stop: make(chan struct{}), byUser: map[string]int{}}
	for range workers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var u string
				err := db.SQL().QueryRowContext(ctx, "SELECT session_user").Scan(&u)
				if err == nil {
					_, err = db.Users().Count(ctx)
				}
				cancel()
				l.mu.Lock()
				l.total++
				if err != nil {
					l.errs = append(l.errs, fmt.Errorf("at %s: %w", time.Now().Format("15:04:05.000"), err))
				} else {
					l.byUser[u]++
				}
				l.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	return l
}

func (l *requestLoop) served(user string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byUser[user] > 0
}

// finish stops the loop and fails t if any request failed.
func (l *requestLoop) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("requests: %d, by user: %v", l.total, l.byUser)
	if len(l.errs) > 0 {
		t.Errorf("%d of %d requests failed; first: %v", len(l.errs), l.total, l.errs[0])
	}
	if l.total == 0 {
		t.Error("no request ran")
	}
}

func TestDBConfigErrors(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	c := newClient(t, env, Auth{Token: env.Token})
	for name, cfg := range map[string]DBConfig{
		"no role":           {},
		"negative lifetime": {Role: "r", ConnMaxLifetime: -time.Second},
	} {
		if _, err := NewDBCredentials(context.Background(), c, cfg, nil); err == nil {
			t.Errorf("%s: NewDBCredentials succeeded", name)
		}
	}
	mount := env.Mount(t, "database")
	if _, err := NewDBCredentials(context.Background(), c, DBConfig{Mount: mount, Role: unique("nonexistent")}, nil); err == nil {
		t.Error("NewDBCredentials of an unknown role succeeded")
	}
	// Where no engine is mounted, Vault answers 404, which vault/api
	// reads as nothing there: the error says where it looked.
	_, err := NewDBCredentials(context.Background(), c, DBConfig{Role: "codehub", Mount: "nonexistent-" + mount}, nil)
	if err == nil || !strings.Contains(err.Error(), "nonexistent-"+mount) || !strings.Contains(err.Error(), "mounted") {
		t.Errorf("NewDBCredentials with no engine mounted = %v, want an error naming the mount", err)
	}
}

// TestDBCredentialsRotation: sqlstore connects as the user Vault issued;
// when the lease nears its end, new credentials arrive: new connections
// use the new user while connections already open keep serving until the
// pool retires them, the old user is revoked when its lease ends, and
// requests running all along never fail.
func TestDBCredentialsRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Leases of 15s, renewed at about 2/3 of that, up to 20s; credentials
	// replaced with 600ms (and a second of slack) left. Shorter leases
	// could end, on a loaded machine, while the store still applies its
	// migrations as the first user.
	s := newDBSetup(t, 15*time.Second, 20*time.Second)
	c := newClient(t, s.env, appRole(t, s.env, tokenRole{policies: []string{s.pol}, ttl: time.Hour, maxTTL: 2 * time.Hour}))
	creds := newDBCredentials(t, c, DBConfig{Mount: s.mount, Role: s.role, ConnMaxLifetime: 300 * time.Millisecond})
	if got := creds.ConnMaxLifetime(); got != 300*time.Millisecond {
		t.Errorf("ConnMaxLifetime = %s, want the configured 300ms", got)
	}
	db := s.open(t, creds)

	user1 := creds.User()
	if !strings.HasPrefix(user1, "v-") {
		t.Errorf("user %q is not one Vault made", user1)
	}
	exp1 := creds.ExpiresAt()
	if !exp1.After(time.Now()) || exp1.After(time.Now().Add(15*time.Second)) {
		t.Errorf("ExpiresAt = %s, want within the lease", exp1)
	}
	pinned, err := db.SQL().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	if got := sessionUser(t, pinned); got != user1 {
		t.Fatalf("session_user = %q, want the Vault user %q", got, user1)
	}
	if s.front.Logins(user1) == 0 {
		t.Fatal("no login as the Vault user went through the password check")
	}

	loop := startLoop(db, 4)
	defer func() {
		if loop != nil {
			loop.finish(t)
		}
	}()
	// (The lifetime watcher renews once at once; wait for a renewal that
	// extends the lease.)
	eventually(t, 30*time.Second, "the lease is renewed", func() bool { return creds.ExpiresAt().After(exp1.Add(time.Second)) })
	if creds.User() != user1 {
		t.Error("the credentials were replaced instead of renewed")
	}
	if s.env.Fake != nil && s.env.Fake.Requests("sys/leases/renew") == 0 {
		t.Error("no lease renewal reached Vault")
	}
	eventually(t, 30*time.Second, "the credentials are replaced", func() bool { return creds.User() != user1 })
	user2 := creds.User()
	// The connection opened before still serves, as its user.
	if got := sessionUser(t, pinned); got != user1 {
		t.Errorf("the old connection: session_user = %q, want %q", got, user1)
	}
	pinned.Close()
	eventually(t, 30*time.Second, "requests are served as the new user", func() bool { return loop.served(user2) })
	eventually(t, 30*time.Second, "the old user is revoked when its lease ends", func() bool {
		ok, err := s.db.CanLogIn(ctx, user1)
		return err == nil && !ok
	})
	eventually(t, 30*time.Second, "the credentials are replaced again", func() bool { return creds.User() != user2 })
	user3 := creds.User()
	eventually(t, 30*time.Second, "requests are served as the third user", func() bool { return loop.served(user3) })
	loop.finish(t)
	loop = nil
}

// TestDBCredentialsTokenRelogin: leases end with the token that obtained
// them, so when the token nears its maximum TTL the client logs in again
// early enough and the credentials move to the new token, without a
// failed request.
func TestDBCredentialsTokenRelogin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newDBSetup(t, 30*time.Second, time.Minute)
	c := newClient(t, s.env, appRole(t, s.env, tokenRole{policies: []string{s.pol}, ttl: 3 * time.Second, maxTTL: 4 * time.Second}))
	creds := newDBCredentials(t, c, DBConfig{Mount: s.mount, Role: s.role, ConnMaxLifetime: 500 * time.Millisecond})
	db := s.open(t, creds)
	user1, tok1 := creds.User(), c.API().Token()
	if !creds.ExpiresAt().Before(time.Now().Add(5 * time.Second)) {
		t.Errorf("ExpiresAt = %s: the credentials cannot outlive the token's 4s", creds.ExpiresAt())
	}

	loop := startLoop(db, 4)
	eventually(t, 30*time.Second, "the client logs in again", func() bool { return c.API().Token() != tok1 })
	eventually(t, 30*time.Second, "the credentials move to the new token", func() bool { return creds.User() != user1 })
	user2 := creds.User()
	eventually(t, 30*time.Second, "requests are served as the new user", func() bool { return loop.served(user2) })
	eventually(t, 30*time.Second, "the old token's user is revoked with it", func() bool {
		ok, err := s.db.CanLogIn(ctx, user1)
		return err == nil && !ok
	})
	loop.finish(t)
}

// TestDBCredentialsVaultDown: while Vault is unreachable the current
// credentials stay in use; once they expire, Credentials fails with an
// error wrapping the cause; when Vault is back, new credentials come.
func TestDBCredentialsVaultDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newDBSetup(t, 3*time.Second, 3*time.Second)
	s.env.NeedFake(t, "makes Vault unreachable")
	c := newClient(t, s.env, appRole(t, s.env, tokenRole{policies: []string{s.pol}, ttl: time.Hour, maxTTL: 2 * time.Hour}))
	creds := newDBCredentials(t, c, DBConfig{Mount: s.mount, Role: s.role, ConnMaxLifetime: 250 * time.Millisecond})
	db := s.open(t, creds)
	user1 := creds.User()

	s.env.Fake.Down()
	var credErr error
	eventually(t, 30*time.Second, "the credentials expire", func() bool {
		_, _, credErr = creds.Credentials(ctx)
		return credErr != nil
	})
	if !errors.Is(credErr, syscall.ECONNREFUSED) || !strings.Contains(credErr.Error(), "expired") {
		t.Errorf("Credentials = %v, want an expiry wrapping the connection refused", credErr)
	}
	db.SQL().SetMaxIdleConns(0)
	if err := db.Ping(ctx); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a new connection while Vault is down = %v, want the cause", err)
	}

	s.env.Fake.Up()
	eventually(t, 60*time.Second, "new credentials once Vault is back", func() bool {
		_, _, err := creds.Credentials(ctx)
		return err == nil && creds.User() != user1
	})
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("a new connection after Vault came back: %v", err)
	}
}
