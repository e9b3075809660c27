package vault

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// DefaultTestPostgres is the PostgreSQL server the tests use unless
// CODEHUB_TEST_POSTGRES names another: CI's, which trusts local
// connections.
const DefaultTestPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// PostgresAdminDSN is the test server's superuser connection string.
func PostgresAdminDSN() string {
	if dsn := os.Getenv("CODEHUB_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	return DefaultTestPostgres
}

// TestDatabase is a PostgreSQL database for one test, owned by a role of
// its own (NOLOGIN) that the users Vault creates join: whichever of them
// creates a table, the owner owns it, so the next one can use it.
type TestDatabase struct {
	// Name is the database, Owner its owning role.
	Name, Owner string
	// AdminDSN connects to it as the superuser.
	AdminDSN string

	admin *sql.DB // to the server's default database
}

// NewTestDatabase creates a database and its owner; both are dropped
// when tb ends, with any user still a member of the owner (a Vault user
// whose lease was never revoked). Without a server, tb is skipped, or
// fails under CODEHUB_E2E=require.
func NewTestDatabase(tb testing.TB) *TestDatabase {
	tb.Helper()
	testenv.SkipShort(tb)
	dsn := PostgresAdminDSN()
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		tb.Fatalf("CODEHUB_TEST_POSTGRES: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		testenv.Need(tb, fmt.Sprintf("PostgreSQL at %s (%v)", redact(dsn), err))
	}
	b := make([]byte, 6)
	rand.Read(b)
	d := &TestDatabase{Name: "codehub_vault_" + hex.EncodeToString(b), admin: admin}
	d.Owner = d.Name + "_owner"
	owner, name := pgx.Identifier{d.Owner}.Sanitize(), pgx.Identifier{d.Name}.Sanitize()
	tb.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("drop test database %s: %v", d.Name, err)
		}
		rows, err := admin.QueryContext(ctx, `SELECT r.rolname FROM pg_roles r
			JOIN pg_auth_members m ON m.member = r.oid JOIN pg_roles o ON o.oid = m.roleid WHERE o.rolname = $1`, d.Owner)
		if err == nil {
			var left []string
			for rows.Next() {
				var u string
				if rows.Scan(&u) == nil {
					left = append(left, u)
				}
			}
			rows.Close()
			for _, u := range left {
				if _, err := admin.ExecContext(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{u}.Sanitize()); err != nil {
					tb.Errorf("drop leftover user %s: %v", u, err)
				}
			}
		}
		if _, err := admin.ExecContext(ctx, "DROP ROLE IF EXISTS "+owner); err != nil {
			tb.Errorf("drop role %s: %v", d.Owner, err)
		}
	})
	for _, q := range []string{"CREATE ROLE " + owner + " NOLOGIN", "CREATE DATABASE " + name + " OWNER " + owner} {
		if _, err := admin.ExecContext(ctx, q); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
	d.AdminDSN = withDatabase(dsn, d.Name)
	return d
}

// CreationStatements make a Vault user: a login with the password and
// expiry Vault chose, a member of the owner whose role every session of
// it takes.
func (d *TestDatabase) CreationStatements() []string {
	return []string{
		`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE "` + d.Owner + `"`,
		`ALTER ROLE "{{name}}" SET role = '` + d.Owner + `'`,
	}
}

// RevocationStatements end a Vault user: no more logins, its sessions
// ended (so a connection that outlived its lease shows up as an error,
// not as a quietly dropped user), and the role dropped.
func (d *TestDatabase) RevocationStatements() []string {
	return []string{
		`ALTER ROLE "{{name}}" NOLOGIN`,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}'`,
		`REASSIGN OWNED BY "{{name}}" TO "` + d.Owner + `"`,
		`DROP OWNED BY "{{name}}"`,
		`DROP ROLE IF EXISTS "{{name}}"`,
	}
}

// Configure writes the database engine's connection (named after the
// database) and role through c, which may talk to the fake or to a real
// Vault whose database engine is enabled at mount.
func (d *TestDatabase) Configure(tb testing.TB, c *api.Client, mount, role string, defaultTTL, maxTTL time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	if _, err := c.Logical().WriteWithContext(ctx, mount+"/config/"+d.Name, map[string]any{
		"plugin_name":    "postgresql-database-plugin",
		"connection_url": d.AdminDSN,
		"allowed_roles":  []string{role},
	}); err != nil {
		tb.Fatalf("configure %s/config/%s: %v", mount, d.Name, err)
	}
	if _, err := c.Logical().WriteWithContext(ctx, mount+"/roles/"+role, map[string]any{
		"db_name":               d.Name,
		"creation_statements":   d.CreationStatements(),
		"revocation_statements": d.RevocationStatements(),
		"default_ttl":           int(defaultTTL / time.Second),
		"max_ttl":               int(maxTTL / time.Second),
	}); err != nil {
		tb.Fatalf("configure %s/roles/%s: %v", mount, role, err)
	}
}

// CanLogIn reports whether user may log in now: it exists, has LOGIN, and
// its password has not expired (VALID UNTIL).
func (d *TestDatabase) CanLogIn(ctx context.Context, user string) (bool, error) {
	var (
		canLogin   bool
		validUntil sql.NullTime
	)
	err := d.admin.QueryRowContext(ctx, `SELECT rolcanlogin, rolvaliduntil FROM pg_roles WHERE rolname = $1`, user).
		Scan(&canLogin, &validUntil)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return canLogin && (!validUntil.Valid || time.Now().Before(validUntil.Time)), nil
}

// withDatabase returns dsn naming database name instead.
func withDatabase(dsn, name string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name
}

func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "CODEHUB_TEST_POSTGRES"
}

// PasswordFront stands in front of a test PostgreSQL server that trusts
// every local connection, and checks passwords as a server with password
// authentication would: against the role's stored SCRAM (or md5) secret,
// its LOGIN attribute and its VALID UNTIL. A connection that passes is
// handed to the real server. Without it a Vault user would "log in" with
// any password, and a rotation could not be told from no rotation.
type PasswordFront struct {
	tb               testing.TB
	ln               net.Listener
	network, address string // the real server
	admin            *sql.DB
	wg               sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	logins map[string]int // successful logins by user
}

// StartPasswordFront starts a front for the server adminDSN names (as a
// superuser: it reads pg_authid); it stops when tb ends.
func StartPasswordFront(tb testing.TB, adminDSN string) *PasswordFront {
	tb.Helper()
	pc, err := pgx.ParseConfig(adminDSN)
	if err != nil {
		tb.Fatal(err)
	}
	p := &PasswordFront{tb: tb, network: "tcp", address: net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port))),
		conns: map[net.Conn]struct{}{}, logins: map[string]int{}}
	if strings.HasPrefix(pc.Host, "/") {
		p.network, p.address = "unix", filepath.Join(pc.Host, fmt.Sprintf(".s.PGSQL.%d", pc.Port))
	}
	if p.admin, err = sql.Open("pgx", adminDSN); err != nil {
		tb.Fatal(err)
	}
	if p.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	p.wg.Go(p.accept)
	tb.Cleanup(func() {
		p.ln.Close()
		p.mu.Lock()
		p.closed = true
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
		p.admin.Close()
	})
	return p
}

// DSN is a connection string for database through the front; its user and
// password are placeholders for sqlstore's CredentialsFunc to replace.
func (p *PasswordFront) DSN(database string) string {
	u := url.URL{Scheme: "postgres", User: url.User("nobody"), Host: p.ln.Addr().String(), Path: "/" + database,
		RawQuery: "sslmode=disable&connect_timeout=10"}
	return u.String()
}

// Logins returns how many connections user opened through the front.
func (p *PasswordFront) Logins(user string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logins[user]
}

func (p *PasswordFront) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *PasswordFront) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *PasswordFront) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

func (p *PasswordFront) serve(client net.Conn) {
	defer client.Close()
	if !p.track(client) {
		return
	}
	defer p.untrack(client)
	be := pgproto3.NewBackend(client, client)
	var startup *pgproto3.StartupMessage
	for startup == nil {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.StartupMessage:
			startup = m
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := client.Write([]byte("N")); err != nil {
				return
			}
		default:
			return
		}
	}
	user := startup.Parameters["user"]
	be.Send(&pgproto3.AuthenticationCleartextPassword{})
	if err := be.Flush(); err != nil {
		return
	}
	if err := be.SetAuthType(pgproto3.AuthTypeCleartextPassword); err != nil {
		return
	}
	msg, err := be.Receive()
	if err != nil {
		return
	}
	pm, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return
	}
	if code, msg := p.check(user, pm.Password); code != "" {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: code, Message: msg})
		_ = be.Flush()
		return
	}
	p.mu.Lock()
	p.logins[user]++
	p.mu.Unlock()

	upstream, err := net.Dial(p.network, p.address)
	if err != nil {
		return
	}
	defer upstream.Close()
	if !p.track(upstream) {
		return
	}
	defer p.untrack(upstream)
	buf, err := startup.Encode(nil)
	if err != nil {
		return
	}
	if _, err := upstream.Write(buf); err != nil {
		return
	}
	// The real server trusts the connection and answers the client itself.
	done := make(chan struct{})
	go func() {
		io.Copy(upstream, client)
		upstream.Close()
		close(done)
	}()
	io.Copy(client, upstream)
	client.Close()
	<-done
}

// check returns an SQLSTATE and message if user may not log in with
// password, as PostgreSQL words them; "" if it may.
func (p *PasswordFront) check(user, password string) (code, msg string) {
	failed := fmt.Sprintf("password authentication failed for user %q", user)
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	var (
		secret     sql.NullString
		canLogin   bool
		validUntil sql.NullTime
	)
	err := p.admin.QueryRowContext(ctx, `SELECT rolpassword, rolcanlogin, rolvaliduntil FROM pg_authid WHERE rolname = $1`, user).
		Scan(&secret, &canLogin, &validUntil)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "28P01", failed
	case err != nil:
		return "XX000", fmt.Sprintf("password front: %v", err)
	case !secret.Valid || !verifyPassword(secret.String, user, password):
		return "28P01", failed
	case validUntil.Valid && !time.Now().Before(validUntil.Time):
		return "28P01", failed // the server logs "has an expired password"
	case !canLogin:
		return "28000", fmt.Sprintf("role %q is not permitted to log in", user)
	}
	return "", ""
}

// verifyPassword checks password against a pg_authid secret:
// SCRAM-SHA-256 (PostgreSQL's default) or md5.
func verifyPassword(secret, user, password string) bool {
	if rest, ok := strings.CutPrefix(secret, "SCRAM-SHA-256$"); ok {
		iterSalt, keys, ok := strings.Cut(rest, "$")
		if !ok {
			return false
		}
		iterS, saltB64, ok1 := strings.Cut(iterSalt, ":")
		storedB64, _, ok2 := strings.Cut(keys, ":")
		iter, err := strconv.Atoi(iterS)
		if !ok1 || !ok2 || err != nil {
			return false
		}
		salt, err1 := base64.StdEncoding.DecodeString(saltB64)
		stored, err2 := base64.StdEncoding.DecodeString(storedB64)
		if err1 != nil || err2 != nil {
			return false
		}
		salted, err := pbkdf2.Key(sha256.New, password, salt, iter, sha256.Size)
		if err != nil {
			return false
		}
		mac := hmac.New(sha256.New, salted)
		mac.Write([]byte("Client Key"))
		clientKey := sha256.Sum256(mac.Sum(nil))
		return subtle.ConstantTimeCompare(clientKey[:], stored) == 1
	}
	if rest, ok := strings.CutPrefix(secret, "md5"); ok {
		sum := md5.Sum([]byte(password + user))
		return subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(rest)) == 1
	}
	return subtle.ConstantTimeCompare([]byte(secret), []byte(password)) == 1
}
