package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"sync"
	"testing"

	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestCredentialsFuncConfig: CredentialsFunc is for PostgreSQL, alone.
func TestCredentialsFuncConfig(t *testing.T) {
	creds := func(context.Context) (string, string, error) { return "u", "p", nil }
	for name, cfg := range map[string]Config{
		"with PasswordFunc": {Driver: DriverPostgres, DSN: "postgres://x@127.0.0.1:1/db", CredentialsFunc: creds,
			PasswordFunc: func(context.Context) (string, error) { return "p", nil }},
		"sqlite": {Driver: DriverSQLite, Path: filepath.Join(t.TempDir(), "x.db"), CredentialsFunc: creds},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Open(context.Background(), cfg, testenv.Logger(t)); err == nil {
				t.Fatal("Open succeeded")
			}
		})
	}
}

// TestCredentialsFunc: CredentialsFunc supplies the user and password of
// every new PostgreSQL connection, so a new user (Vault's database
// secrets) reaches new connections while open ones keep theirs.
func TestCredentialsFunc(t *testing.T) {
	ctx := context.Background()
	admin := postgresAdmin(t)
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "codehub_creds_" + hex.EncodeToString(b)
	group, user1, user2 := prefix+"_owner", prefix+"_1", prefix+"_2"
	// Registered first, so it runs after the database is dropped.
	t.Cleanup(func() {
		defer admin.Close()
		for _, r := range []string{user1, user2, group} {
			if _, err := admin.Exec("DROP ROLE IF EXISTS " + pgx.Identifier{r}.Sanitize()); err != nil {
				t.Errorf("drop role %s: %v", r, err)
			}
		}
	})
	g := pgx.Identifier{group}.Sanitize()
	stmts := []string{"CREATE ROLE " + g + " NOLOGIN"}
	for _, u := range []string{user1, user2} {
		id := pgx.Identifier{u}.Sanitize()
		// Every session acts as the group, which owns the database: what
		// one user creates, the next can use.
		stmts = append(stmts, "CREATE ROLE "+id+" LOGIN IN ROLE "+g, "ALTER ROLE "+id+" SET role = '"+group+"'")
	}
	for _, q := range stmts {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	dsn := postgresDSN(t)
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.ExecContext(ctx, "ALTER DATABASE "+pgx.Identifier{pc.Database}.Sanitize()+" OWNER TO "+g); err != nil {
		t.Fatal(err)
	}
	proxy := startAuthProxy(t, dsn, "s3cret-1")

	t.Run("error", func(t *testing.T) {
		boom := errors.New("vault is sealed")
		_, err := Open(ctx, Config{Driver: DriverPostgres, DSN: proxy.dsn("nobody", pc.Database),
			CredentialsFunc: func(context.Context) (string, string, error) { return "", "", boom }}, testenv.Logger(t))
		if !errors.Is(err, boom) {
			t.Fatalf("Open = %v, want CredentialsFunc's error", err)
		}
	})

	t.Run("rotation", func(t *testing.T) {
		var (
			mu         sync.Mutex
			user, pass = user1, "s3cret-1"
			calls      int
		)
		db := mustOpen(t, Config{Driver: DriverPostgres, DSN: proxy.dsn("nobody", pc.Database),
			CredentialsFunc: func(context.Context) (string, string, error) {
				mu.Lock()
				defer mu.Unlock()
				calls++
				return user, pass, nil
			}})
		old, err := db.SQL().Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		var got string
		if err := old.QueryRowContext(ctx, "SELECT session_user").Scan(&got); err != nil || got != user1 {
			t.Fatalf("session_user = %q, %v; want %q", got, err, user1)
		}

		// The server rotates; the function hands out the new user.
		proxy.setPassword("s3cret-2")
		mu.Lock()
		user, pass = user2, "s3cret-2"
		before := calls
		mu.Unlock()
		fresh, err := db.SQL().Conn(ctx) // the pool's only idle connection is pinned: a new one
		if err != nil {
			t.Fatal(err)
		}
		defer fresh.Close()
		if err := fresh.QueryRowContext(ctx, "SELECT session_user").Scan(&got); err != nil || got != user2 {
			t.Fatalf("new connection: session_user = %q, %v; want %q", got, err, user2)
		}
		mu.Lock()
		if calls == before {
			t.Error("a new connection did not consult CredentialsFunc")
		}
		mu.Unlock()
		// The connection opened before keeps its user and still works.
		if err := old.QueryRowContext(ctx, "SELECT session_user").Scan(&got); err != nil || got != user1 {
			t.Fatalf("old connection: session_user = %q, %v; want %q", got, err, user1)
		}
		// Tables the first user's migrations made serve the second.
		if _, err := db.Users().Count(ctx); err != nil {
			t.Fatalf("query as the new user: %v", err)
		}

		// The old password is refused now, as after a revocation.
		mu.Lock()
		user, pass = user1, "s3cret-1"
		mu.Unlock()
		db.SQL().SetMaxIdleConns(0)
		extra, err := db.SQL().Conn(ctx)
		if err == nil {
			err = extra.PingContext(ctx)
			extra.Close()
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Fatalf("connect with the old password = %v, want 28P01", err)
		}
	})
}
