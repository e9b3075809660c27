package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/codehub-dev/codehub/internal/revocation"
	"github.com/codehub-dev/codehub/internal/revocation/bustest"
	"github.com/codehub-dev/codehub/internal/revocation/postgres"
	"github.com/codehub-dev/codehub/internal/testenv"
)

// dsn returns CODEHUB_TEST_POSTGRES, or skips t (fails under
// CODEHUB_E2E=require) if that database does not answer.
func dsn(t *testing.T) string {
	t.Helper()
	testenv.SkipShort(t)
	d := os.Getenv("CODEHUB_TEST_POSTGRES")
	if d == "" {
		d = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d)
	if err != nil {
		testenv.Need(t, "PostgreSQL at CODEHUB_TEST_POSTGRES: "+err.Error())
	}
	_ = conn.Close(ctx)
	return d
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newBus returns a Bus closed when t ends.
func newBus(t *testing.T, cfg postgres.Config) *postgres.Bus {
	t.Helper()
	b, err := postgres.New(cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// admin returns a connection for inspecting the server, closed when t ends.
func admin(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func TestContract(t *testing.T) {
	d := dsn(t)
	bustest.Run(t, func(t *testing.T) (a, b revocation.Bus) {
		// Two gateways: a pool each, one channel of the test's own.
		ch := "codehub_test_" + randomHex(t)
		return newBus(t, postgres.Config{DSN: d, Channel: ch}), newBus(t, postgres.Config{DSN: d, Channel: ch})
	})
}

// TestReconnectsAfterBackendTerminated ends the listener's server process
// (pg_terminate_backend) and expects later events to arrive on a new
// connection, which asks PasswordFunc for the password again.
func TestReconnectsAfterBackendTerminated(t *testing.T) {
	ctx := context.Background()
	d := dsn(t)
	app := "codehub-test-" + randomHex(t)
	var passwords atomic.Int32
	bus := newBus(t, postgres.Config{
		DSN: d, Channel: "codehub_test_" + randomHex(t), ApplicationName: app,
		PasswordFunc: func(context.Context) (string, error) {
			passwords.Add(1)
			return "unused-with-trust-auth", nil
		},
	})
	db := admin(t, d)

	rec := bustest.Subscribe(t, bus)
	bustest.WaitReady(t, bus, rec)
	before := passwords.Load()
	if before < 2 {
		t.Fatalf("PasswordFunc called %d times for a pool and a listener connection, want at least 2", before)
	}

	var pid int
	if err := db.QueryRow(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", app+"-listener").Scan(&pid); err != nil {
		t.Fatalf("find the listener's backend: %v", err)
	}
	var killed bool
	if err := db.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, killed, err)
	}

	// Events published while it reconnects may be lost (NOTIFY is at most
	// once to a listener); WaitReady publishes until one gets through.
	bustest.WaitReady(t, bus, rec)
	var newPID int
	if err := db.QueryRow(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1", app+"-listener").Scan(&newPID); err != nil {
		t.Fatalf("find the new listener's backend: %v", err)
	}
	if newPID == pid {
		t.Fatalf("listener still on the terminated backend %d", pid)
	}
	if passwords.Load() <= before {
		t.Fatal("the new listener connection did not ask PasswordFunc")
	}
	if n := rec.Resyncs(); n < 2 {
		t.Fatalf("%d resync events, want one per LISTEN (at least 2): caches would keep revoked sessions", n)
	}
	want := revocation.Event{SessionIDs: []string{"s1", "s2"}, UserID: "alice"}
	if err := bus.Publish(ctx, want); err != nil {
		t.Fatal(err)
	}
	bustest.WaitReady(t, bus, rec)
	if got := rec.Events(); len(got) != 1 || got[0].UserID != "alice" || !slices.Equal(got[0].SessionIDs, want.SessionIDs) {
		t.Fatalf("after reconnecting received %v, want [%v]", got, want)
	}
	rec.Check(t)
}

// TestPasswordFuncError checks that a failing PasswordFunc fails the
// connection, with its error.
func TestPasswordFuncError(t *testing.T) {
	boom := errors.New("vault sealed")
	bus := newBus(t, postgres.Config{
		DSN:          dsn(t),
		Channel:      "codehub_test_" + randomHex(t),
		PasswordFunc: func(context.Context) (string, error) { return "", boom },
	})
	if err := bus.Publish(context.Background(), revocation.Event{UserID: "u"}); !errors.Is(err, boom) {
		t.Fatalf("Publish = %v, want the PasswordFunc's error", err)
	}
}

// TestSplitsLargeEvents publishes more session ids than fit in one NOTIFY
// and expects all of them, in order, with the user id.
func TestSplitsLargeEvents(t *testing.T) {
	ctx := context.Background()
	bus := newBus(t, postgres.Config{DSN: dsn(t), Channel: "codehub_test_" + randomHex(t)})
	rec := bustest.Subscribe(t, bus)
	bustest.WaitReady(t, bus, rec)
	var ids []string
	for i := 0; i < 1000; i++ {
		ids = append(ids, fmt.Sprintf("%043d", i)) // as long as a real session id
	}
	if err := bus.Publish(ctx, revocation.Event{SessionIDs: ids, UserID: "carol"}); err != nil {
		t.Fatal(err)
	}
	bustest.WaitReady(t, bus, rec)
	got := rec.Events()
	if len(got) < 2 {
		t.Fatalf("received %d events; a 45 kB event should have been split", len(got))
	}
	var all []string
	users := 0
	for _, ev := range got {
		all = append(all, ev.SessionIDs...)
		if ev.UserID != "" {
			users++
		}
	}
	if !slices.Equal(all, ids) {
		t.Fatalf("received %d session ids, want the %d published, in order", len(all), len(ids))
	}
	if got[0].UserID != "carol" || users != 1 {
		t.Fatalf("user id: first event %q, %d events with one; want carol, once", got[0].UserID, users)
	}
	rec.Check(t)
}

// TestIgnoresMalformedPayloads notifies junk on the channel and expects
// the listener to carry on with the next valid event.
func TestIgnoresMalformedPayloads(t *testing.T) {
	ctx := context.Background()
	d := dsn(t)
	bus := newBus(t, postgres.Config{DSN: d, Channel: "codehub_test_" + randomHex(t)})
	db := admin(t, d)
	rec := bustest.Subscribe(t, bus)
	bustest.WaitReady(t, bus, rec)
	for _, junk := range []string{"not json", `{"s": 5}`, ""} {
		if _, err := db.Exec(ctx, "SELECT pg_notify($1, $2)", bus.Channel(), junk); err != nil {
			t.Fatal(err)
		}
	}
	if err := bus.Publish(ctx, revocation.Event{UserID: "bob"}); err != nil {
		t.Fatal(err)
	}
	bustest.WaitReady(t, bus, rec)
	if got := rec.Events(); len(got) != 1 || got[0].UserID != "bob" {
		t.Fatalf("received %v, want only bob's event", got)
	}
	rec.Check(t)
}

// TestRejectsLongChannel checks the 63-byte limit of PostgreSQL names: a
// longer channel would be truncated by LISTEN but not by pg_notify.
func TestRejectsLongChannel(t *testing.T) {
	if _, err := postgres.New(postgres.Config{DSN: "postgres://localhost/db", Channel: string(make([]byte, 64))}, nil); err == nil {
		t.Fatal("New accepted a 64-byte channel")
	}
}

// TestPingsWhenQuiet lets the listener sit idle past PingInterval and
// expects it to ping and to keep delivering. (Whether it stays on the same
// connection depends on how fast the ping is answered, so that is not
// checked.)
func TestPingsWhenQuiet(t *testing.T) {
	ctx := context.Background()
	d := dsn(t)
	app := "codehub-test-" + randomHex(t)
	bus := newBus(t, postgres.Config{
		DSN: d, Channel: "codehub_test_" + randomHex(t), ApplicationName: app, PingInterval: 20 * time.Millisecond,
	})
	db := admin(t, d)
	rec := bustest.Subscribe(t, bus)
	bustest.WaitReady(t, bus, rec)

	var query string
	deadline := time.Now().Add(bustest.Guard)
	for {
		err := db.QueryRow(ctx, "SELECT query FROM pg_stat_activity WHERE application_name = $1", app+"-listener").Scan(&query)
		if err != nil {
			t.Fatalf("find the listener's backend: %v", err)
		}
		if query != "" && !strings.HasPrefix(query, "LISTEN") {
			break // the listener has sent its ping
		}
		if time.Now().After(deadline) {
			t.Fatalf("the idle listener has not pinged in %v (last query %q)", bustest.Guard, query)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := bus.Publish(ctx, revocation.Event{UserID: "dave"}); err != nil {
		t.Fatal(err)
	}
	bustest.WaitReady(t, bus, rec)
	if got := rec.Events(); len(got) != 1 || got[0].UserID != "dave" {
		t.Fatalf("received %v after pinging", got)
	}
	rec.Check(t)
}
