package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// authProxy stands in front of the test server (which trusts everyone)
// and demands a password first, as a server with rotating credentials
// does. Once the password is right it hands the connection over to the
// real server.
type authProxy struct {
	ln               net.Listener
	network, address string // the real server
	wg               sync.WaitGroup

	mu       sync.Mutex
	password string
	conns    map[net.Conn]struct{}
	closed   bool
}

func startAuthProxy(t *testing.T, upstreamDSN, password string) *authProxy {
	t.Helper()
	pc, err := pgx.ParseConfig(upstreamDSN)
	if err != nil {
		t.Fatal(err)
	}
	p := &authProxy{password: password, conns: map[net.Conn]struct{}{}, network: "tcp",
		address: net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port)))}
	if strings.HasPrefix(pc.Host, "/") {
		p.network, p.address = "unix", filepath.Join(pc.Host, fmt.Sprintf(".s.PGSQL.%d", pc.Port))
	}
	if p.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		p.ln.Close()
		p.mu.Lock()
		p.closed = true
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// dsn is the proxy's address for database name as user.
func (p *authProxy) dsn(user, database string) string {
	u := url.URL{Scheme: "postgres", User: url.User(user), Host: p.ln.Addr().String(), Path: "/" + database,
		RawQuery: "sslmode=disable"}
	return u.String()
}

func (p *authProxy) setPassword(pw string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.password = pw
}

// track remembers c for closing at the end of the test; false if that
// has come already.
func (p *authProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *authProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

func (p *authProxy) serve(client net.Conn) {
	defer client.Close()
	if !p.track(client) {
		return
	}
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
	p.mu.Lock()
	want := p.password
	p.mu.Unlock()
	if pm, ok := msg.(*pgproto3.PasswordMessage); !ok || pm.Password != want {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01",
			Message: fmt.Sprintf("password authentication failed for user %q", startup.Parameters["user"])})
		_ = be.Flush()
		return
	}

	upstream, err := net.Dial(p.network, p.address)
	if err != nil {
		return
	}
	defer upstream.Close()
	if !p.track(upstream) {
		return
	}
	buf, err := startup.Encode(nil)
	if err != nil {
		return
	}
	if _, err := upstream.Write(buf); err != nil {
		return
	}
	// The real server trusts the connection and answers the client
	// directly: AuthenticationOk, parameters, ReadyForQuery.
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

// TestPasswordFunc: PasswordFunc supplies the password of every new
// PostgreSQL connection, so rotated credentials reach new connections.
func TestPasswordFunc(t *testing.T) {
	ctx := context.Background()
	dsn := postgresDSN(t)
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startAuthProxy(t, dsn, "s3cret-1")
	proxyDSN := proxy.dsn(pc.User, pc.Database)

	t.Run("error", func(t *testing.T) {
		boom := errors.New("vault is sealed")
		_, err := Open(ctx, Config{Driver: DriverPostgres, DSN: proxyDSN,
			PasswordFunc: func(context.Context) (string, error) { return "", boom }}, testenv.Logger(t))
		if !errors.Is(err, boom) {
			t.Fatalf("Open = %v, want PasswordFunc's error", err)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		_, err := Open(ctx, Config{Driver: DriverPostgres, DSN: proxyDSN,
			PasswordFunc: func(context.Context) (string, error) { return "wrong", nil }}, testenv.Logger(t))
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Fatalf("Open = %v, want an authentication failure (28P01)", err)
		}
	})

	t.Run("without PasswordFunc", func(t *testing.T) {
		_, err := Open(ctx, Config{Driver: DriverPostgres, DSN: proxyDSN}, testenv.Logger(t))
		if err == nil {
			t.Fatal("Open without a password succeeded")
		}
	})

	t.Run("rotation", func(t *testing.T) {
		var (
			calls   atomic.Int32
			current atomic.Value
		)
		current.Store("s3cret-1")
		db := mustOpen(t, Config{Driver: DriverPostgres, DSN: proxyDSN,
			PasswordFunc: func(context.Context) (string, error) {
				calls.Add(1)
				return current.Load().(string), nil
			}})
		if calls.Load() == 0 {
			t.Fatal("PasswordFunc was not consulted")
		}
		// Every operation on a new connection from now on.
		db.SQL().SetMaxIdleConns(0)
		before := calls.Load()
		if err := db.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		if calls.Load() == before {
			t.Fatal("a new connection did not consult PasswordFunc")
		}

		// The server rotates; connections with the old password fail...
		proxy.setPassword("s3cret-2")
		var pgErr *pgconn.PgError
		if err := db.Ping(ctx); !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
			t.Fatalf("Ping with the old password = %v, want 28P01", err)
		}
		// ...until PasswordFunc hands out the new one: no reopening.
		current.Store("s3cret-2")
		if err := db.Ping(ctx); err != nil {
			t.Fatalf("Ping after rotation: %v", err)
		}
		if _, err := db.Users().Count(ctx); err != nil {
			t.Fatalf("query after rotation: %v", err)
		}
	})
}
