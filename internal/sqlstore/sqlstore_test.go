package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/lockout"
	"github.com/codehub-dev/codehub/internal/lockout/lockouttest"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/session/storetest"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/codehub-dev/codehub/internal/user/usertest"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// defaultTestPostgres is the server the PostgreSQL tests use unless
// CODEHUB_TEST_POSTGRES names another (it must allow CREATE DATABASE).
const defaultTestPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// backend makes the Config of a fresh, empty database of one driver.
type backend struct {
	name   string
	config func(t *testing.T) Config
	// need skips (or fails) t at once if the backend is unavailable,
	// rather than in each subtest of a suite.
	need func(t *testing.T)
}

func backends() []backend {
	return []backend{
		{DriverSQLite, sqliteConfig, func(*testing.T) {}},
		{DriverPostgres, postgresConfig, func(t *testing.T) { postgresAdmin(t).Close() }},
	}
}

func sqliteConfig(t *testing.T) Config {
	return Config{Driver: DriverSQLite, Path: filepath.Join(t.TempDir(), "codehub.db")}
}

func postgresConfig(t *testing.T) Config {
	t.Helper()
	return Config{Driver: DriverPostgres, DSN: postgresDSN(t)}
}

// mustOpen opens cfg for the rest of t.
func mustOpen(t *testing.T, cfg Config) *DB {
	t.Helper()
	db, err := Open(context.Background(), cfg, testenv.Logger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func adminDSN() string {
	if dsn := os.Getenv("CODEHUB_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	return defaultTestPostgres
}

// redactDSN names a server without its password.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "CODEHUB_TEST_POSTGRES"
}

// postgresAdmin connects to the test server, or skips (fails) t.
func postgresAdmin(t testing.TB) *sql.DB {
	t.Helper()
	testenv.SkipShort(t)
	admin := adminDSN()
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatalf("CODEHUB_TEST_POSTGRES: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		testenv.Need(t, fmt.Sprintf("PostgreSQL at %s (%v)", redactDSN(admin), err))
	}
	return db
}

// postgresDSN creates a database of its own for t, dropped when t ends,
// and returns its DSN.
func postgresDSN(t testing.TB) string {
	t.Helper()
	db := postgresAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := make([]byte, 8)
	rand.Read(b)
	name := "codehub_test_" + hex.EncodeToString(b)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+ident); err != nil {
		db.Close()
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx,
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name); err != nil {
			t.Errorf("terminate connections to %s: %v", name, err)
		}
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	return withDatabase(adminDSN(), name)
}

// withDatabase returns dsn naming database name instead.
func withDatabase(dsn, name string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name // key=value: the last one wins
}

func TestUserStoreContract(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			b.need(t)
			usertest.Run(t, func(t *testing.T) user.Store {
				return mustOpen(t, b.config(t)).Users()
			})
		})
	}
}

func TestSessionStoreContract(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			b.need(t)
			storetest.Run(t, func(t *testing.T, clock *storetest.Clock) session.Store {
				cfg := b.config(t)
				cfg.Now = clock.Now
				return mustOpen(t, cfg).Sessions()
			})
		})
	}
}

// appliedVersions reads schema_migrations.
func appliedVersions(t *testing.T, db *DB) map[int]time.Time {
	t.Helper()
	rows, err := db.SQL().QueryContext(context.Background(), "SELECT version, applied_at FROM schema_migrations")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int]time.Time{}
	for rows.Next() {
		var (
			v  int
			at time.Time
		)
		if err := rows.Scan(&v, timeCol{&at}); err != nil {
			t.Fatal(err)
		}
		out[v] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func embeddedMigrations(t *testing.T, driver string) []migration {
	t.Helper()
	migs, err := loadMigrations(embedded, driver)
	if err != nil {
		t.Fatal(err)
	}
	return migs
}

func TestMigrationsTwiceAreNoOp(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			cfg := b.config(t)
			now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
			cfg.Now = func() time.Time { return now }
			db := mustOpen(t, cfg)
			migs := embeddedMigrations(t, b.name)
			first := appliedVersions(t, db)
			if len(first) != len(migs) {
				t.Fatalf("applied %d migrations, have %d", len(first), len(migs))
			}
			for _, m := range migs {
				if at, ok := first[m.version]; !ok || !at.Equal(now) {
					t.Fatalf("migration %d: applied %v at %v", m.version, ok, at)
				}
			}
			if err := db.Users().Create(ctx, usertest.NewUser("alice")); err != nil {
				t.Fatal(err)
			}

			// Again on the open database, then by a second Open.
			now = now.Add(time.Hour)
			if err := db.migrate(ctx, migs); err != nil {
				t.Fatalf("second migrate: %v", err)
			}
			again := mustOpen(t, cfg)
			after := appliedVersions(t, again)
			if len(after) != len(first) {
				t.Fatalf("after migrating again: %d migrations recorded, want %d", len(after), len(first))
			}
			for v, at := range first {
				if !after[v].Equal(at) {
					t.Fatalf("migration %d re-applied at %v", v, after[v])
				}
			}
			if n, err := again.Users().Count(ctx); err != nil || n != 1 {
				t.Fatalf("users after migrating again: %d, %v", n, err)
			}
		})
	}
}

func TestConcurrentOpen(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			cfg := b.config(t) // a fresh database, not migrated yet
			const n = 4
			var (
				wg    sync.WaitGroup
				start = make(chan struct{})
				dbs   [n]*DB
				errs  [n]error
			)
			for i := range n {
				wg.Go(func() {
					<-start
					dbs[i], errs[i] = Open(context.Background(), cfg, testenv.Logger(t))
				})
			}
			close(start)
			wg.Wait()
			for i := range n {
				if errs[i] != nil {
					t.Errorf("Open %d: %v", i, errs[i])
					continue
				}
				t.Cleanup(func() { dbs[i].Close() })
			}
			if t.Failed() {
				return
			}
			if got, want := len(appliedVersions(t, dbs[0])), len(embeddedMigrations(t, b.name)); got != want {
				t.Fatalf("%d migrations recorded, want %d", got, want)
			}
		})
	}
}

func TestSQLiteFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "codehub")
	path := filepath.Join(dir, "codehub.db")
	db := mustOpen(t, Config{Driver: DriverSQLite, Path: path})
	if err := db.Users().Create(context.Background(), usertest.NewUser("alice")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{path, 0o600},
		{path + "-wal", 0o600},
	} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModePerm | os.ModeDir); got != tc.want {
			t.Errorf("%s: mode %v, want %v", tc.path, got, tc.want)
		}
	}
	var mode string
	if err := db.SQL().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	var fk int
	if err := db.SQL().QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d, %v; want 1", fk, err)
	}
}

func TestSQLitePathWithSpecialCharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir?x=1#frag%20", "codehub.db")
	db := mustOpen(t, Config{Driver: DriverSQLite, Path: path})
	if err := db.Users().Create(context.Background(), usertest.NewUser("alice")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at its path: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no driver", Config{}, "driver must be"},
		{"unknown driver", Config{Driver: "mysql"}, `got "mysql"`},
		{"sqlite without path", Config{Driver: DriverSQLite}, "needs a Path"},
		{"postgres without DSN", Config{Driver: DriverPostgres}, "needs a DSN"},
		{"bad DSN", Config{Driver: DriverPostgres, DSN: "postgres://a:b@host:notaport/db"}, "DSN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), tc.cfg, testenv.Logger(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestPing(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			db := mustOpen(t, b.config(t))
			if err := db.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			if db.Driver() != b.name {
				t.Fatalf("Driver() = %q, want %q", db.Driver(), b.name)
			}
			db.Close()
			if err := db.Ping(context.Background()); err == nil {
				t.Fatal("Ping after Close succeeded")
			}
		})
	}
}

// TestInjection: hostile strings are data, stored and matched literally.
func TestInjection(t *testing.T) {
	hostile := []string{
		`alice'; DROP TABLE users; --`,
		`x' OR '1'='1`,
		`"); DELETE FROM sessions; --`,
		`\'; SELECT pg_sleep(10); --`,
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := mustOpen(t, b.config(t))
			users := db.Users()
			for i, name := range hostile {
				u := usertest.NewUser(name)
				u.Email = fmt.Sprintf("%d%s@example.com", i, name)
				if err := users.Create(ctx, u); err != nil {
					t.Fatalf("Create(%q): %v", name, err)
				}
				got, err := users.GetByUsername(ctx, name)
				if err != nil || got.ID != u.ID || got.Username != name {
					t.Fatalf("GetByUsername(%q) = %+v, %v", name, got, err)
				}
				if _, err := users.GetByEmail(ctx, u.Email); err != nil {
					t.Fatalf("GetByEmail(%q): %v", u.Email, err)
				}
			}
			for _, probe := range []string{`' OR '1'='1`, `' OR ''='`, `%' OR 1=1 --`} {
				if _, err := users.GetByUsername(ctx, probe); !errors.Is(err, user.ErrNotFound) {
					t.Fatalf("GetByUsername(%q): err = %v, want ErrNotFound", probe, err)
				}
			}
			for _, tc := range []struct {
				search string
				want   int
			}{
				{`' OR 1=1 --`, 0},
				{`'; DROP TABLE users; --`, 1},
				{`' OR '1'='1`, 1},
				{`'`, 3},
				{`"`, 1},
			} {
				got, total, err := users.List(ctx, user.ListOptions{Search: tc.search})
				if err != nil || len(got) != tc.want || total != tc.want {
					t.Fatalf("List(%q) = %d users, total %d, %v; want %d", tc.search, len(got), total, err, tc.want)
				}
			}
			if n, err := users.Count(ctx); err != nil || n != len(hostile) {
				t.Fatalf("Count = %d, %v; want %d", n, err, len(hostile))
			}

			sessions := db.Sessions()
			now := time.Now()
			s := &session.Session{ID: `x' OR '1'='1`, UserID: `u'; DROP TABLE sessions; --`,
				CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastActivity: now,
				Metadata: map[string]string{`'k`: `v"'`}}
			if err := sessions.Set(ctx, s); err != nil {
				t.Fatal(err)
			}
			if _, err := sessions.Get(ctx, `' OR ''='`); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("Get(injection): err = %v, want ErrNotFound", err)
			}
			got, err := sessions.Get(ctx, s.ID)
			if err != nil || got.UserID != s.UserID || got.Metadata[`'k`] != `v"'` {
				t.Fatalf("Get = %+v, %v", got, err)
			}
		})
	}
}

// TestDeleteUserSessionsReturnsLiveOnly: expired sessions go too, but only
// the live ones are returned (their connections may need closing).
func TestDeleteUserSessionsReturnsLiveOnly(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := storetest.NewClock()
			cfg := b.config(t)
			cfg.Now = clock.Now
			st := mustOpen(t, cfg).Sessions()
			now := clock.Now()
			for _, s := range []*session.Session{
				{ID: "old", UserID: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Minute), LastActivity: now},
				{ID: "live", UserID: "alice", CreatedAt: now.Add(time.Second), ExpiresAt: now.Add(time.Hour), LastActivity: now},
			} {
				if err := st.Set(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			clock.Advance(2 * time.Minute)
			gone, err := st.DeleteUserSessions(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if len(gone) != 1 || gone[0].ID != "live" {
				t.Fatalf("DeleteUserSessions returned %v, want only the live session", gone)
			}
			if n, err := st.DeleteExpired(ctx); err != nil || n != 0 {
				t.Fatalf("DeleteExpired after DeleteUserSessions = %d, %v; the expired session was left", n, err)
			}
		})
	}
}

// TestUserIDs: IDs are UUIDs on both databases (PostgreSQL's column is of
// type uuid): Create refuses anything else, lookups find a UUID however
// it is written, and a non-UUID is simply not found.
func TestUserIDs(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			users := mustOpen(t, b.config(t)).Users()
			for _, id := range []string{"", "alice", strings.ToUpper(uuid.NewString()), "{" + uuid.NewString() + "}"} {
				u := usertest.NewUser("alice")
				u.ID = id
				if err := users.Create(ctx, u); err == nil || errors.Is(err, user.ErrConflict) {
					t.Fatalf("Create with ID %q: err = %v, want a refusal", id, err)
				}
			}
			u := usertest.MustCreate(t, users, usertest.NewUser("alice"))
			for _, id := range []string{u.ID, strings.ToUpper(u.ID), "urn:uuid:" + u.ID} {
				if got, err := users.Get(ctx, id); err != nil || got.ID != u.ID {
					t.Fatalf("Get(%q) = %v, %v", id, got, err)
				}
			}
			for _, id := range []string{"", "alice", "' OR 1=1 --"} {
				if _, err := users.Get(ctx, id); !errors.Is(err, user.ErrNotFound) {
					t.Fatalf("Get(%q): err = %v, want ErrNotFound", id, err)
				}
				if err := users.Lock(ctx, id, time.Now().Add(time.Hour)); !errors.Is(err, user.ErrNotFound) {
					t.Fatalf("Lock(%q): err = %v, want ErrNotFound", id, err)
				}
			}
		})
	}
}

func TestLockoutStoreContract(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			b.need(t)
			lockouttest.Run(t, func(t *testing.T) lockout.Store {
				return mustOpen(t, b.config(t)).Lockout()
			})
		})
	}
}

// BenchmarkLockoutFailure is what a failed sign-in adds to its argon2
// verification: reading the name's and client's state, then recording the
// failure (a transaction that locks the name).
func BenchmarkLockoutFailure(b *testing.B) {
	for _, be := range backends() {
		b.Run(be.name, func(b *testing.B) {
			var cfg Config
			switch be.name {
			case DriverSQLite:
				cfg = Config{Driver: DriverSQLite, Path: filepath.Join(b.TempDir(), "codehub.db")}
			default:
				cfg = Config{Driver: DriverPostgres, DSN: postgresDSN(b)}
			}
			db, err := Open(context.Background(), cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			st := db.Lockout()
			p := lockout.Policy{MaxFailures: 5, BaseLock: time.Minute, MaxLock: time.Hour, ResetAfter: 24 * time.Hour,
				NameClients: 10, NameWindow: time.Hour, NameLock: 15 * time.Minute}
			ctx := context.Background()
			now := time.Now()
			b.ResetTimer()
			for i := range b.N {
				name, client := fmt.Sprintf("name-%d", i%1000), fmt.Sprintf("192.0.2.%d", i%200)
				if _, _, err := st.Get(ctx, name, client); err != nil {
					b.Fatal(err)
				}
				if _, err := st.RecordFailure(ctx, name, client, now, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
