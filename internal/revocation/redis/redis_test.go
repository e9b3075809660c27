package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/codehub-dev/codehub/internal/revocation"
	"github.com/codehub-dev/codehub/internal/revocation/bustest"
	"github.com/codehub-dev/codehub/internal/revocation/redis"
	"github.com/codehub-dev/codehub/internal/testenv"
)

// options returns the options for the Redis at CODEHUB_TEST_REDIS
// (host:port or a redis:// URL), or skips t (fails under
// CODEHUB_E2E=require) if it does not answer.
func options(t *testing.T) *goredis.Options {
	t.Helper()
	testenv.SkipShort(t)
	addr := os.Getenv("CODEHUB_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	opts := &goredis.Options{Addr: addr}
	if strings.Contains(addr, "://") {
		var err error
		if opts, err = goredis.ParseURL(addr); err != nil {
			t.Fatalf("CODEHUB_TEST_REDIS: %v", err)
		}
	}
	c := goredis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		testenv.Need(t, "Redis at "+addr+" (CODEHUB_TEST_REDIS): "+err.Error())
	}
	return opts
}

// newClient connects with opts, named name when not empty.
func newClient(t *testing.T, opts *goredis.Options, name string) *goredis.Client {
	t.Helper()
	o := *opts
	o.ClientName = name
	c := goredis.NewClient(&o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func TestContract(t *testing.T) {
	opts := options(t)
	bustest.Run(t, func(t *testing.T) (a, b revocation.Bus) {
		// Two gateways: a connection each, one channel of the test's own.
		prefix := "codehub-test:" + randomHex(t) + ":"
		a = redis.New(redis.Config{Client: newClient(t, opts, ""), Prefix: prefix}, testenv.Logger(t))
		b = redis.New(redis.Config{Client: newClient(t, opts, ""), Prefix: prefix}, testenv.Logger(t))
		return a, b
	})
}

// TestResubscribesAfterConnectionLoss kills the subscriber's connection
// on the server (CLIENT KILL) and expects later events to arrive.
func TestResubscribesAfterConnectionLoss(t *testing.T) {
	ctx := context.Background()
	opts := options(t)
	prefix := "codehub-test:" + randomHex(t) + ":"
	name := "codehub-test-" + randomHex(t)
	admin := newClient(t, opts, "")
	pub := redis.New(redis.Config{Client: admin, Prefix: prefix}, testenv.Logger(t))
	sub := redis.New(redis.Config{Client: newClient(t, opts, name), Prefix: prefix}, testenv.Logger(t))

	rec := bustest.Subscribe(t, sub)
	bustest.WaitReady(t, pub, rec)

	id := subscriberID(t, admin, name, "")
	// Only this test's connection: the server may be shared.
	n, err := admin.Do(ctx, "CLIENT", "KILL", "ID", id, "TYPE", "pubsub").Int()
	if err != nil || n != 1 {
		t.Fatalf("CLIENT KILL ID %s TYPE pubsub = %d, %v; want 1 killed", id, n, err)
	}

	// Events published while it reconnects may be lost (Pub/Sub is at most
	// once); WaitReady publishes until one gets through.
	bustest.WaitReady(t, pub, rec)
	if newID := subscriberID(t, admin, name, id); newID == id {
		t.Fatalf("still subscribed on the killed connection %s", id)
	}
	want := revocation.Event{SessionIDs: []string{"s1", "s2"}, UserID: "alice"}
	if err := pub.Publish(ctx, want); err != nil {
		t.Fatal(err)
	}
	bustest.WaitReady(t, pub, rec)
	got := rec.Events()
	if len(got) != 1 || got[0].UserID != want.UserID || len(got[0].SessionIDs) != 2 {
		t.Fatalf("after reconnecting received %v, want [%v]", got, want)
	}
	if n := rec.Resyncs(); n < 2 {
		t.Fatalf("%d resync events, want one per subscription (at least 2): caches would keep revoked sessions", n)
	}
	rec.Check(t)
}

// subscriberID returns the id of the pub/sub connection named name (other
// than not), from CLIENT LIST TYPE pubsub.
func subscriberID(t *testing.T, c *goredis.Client, name, not string) string {
	t.Helper()
	list, err := c.Do(context.Background(), "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(list, "\n") {
		fields := map[string]string{}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			fields[k] = v
		}
		if fields["name"] == name && fields["sub"] != "0" && fields["id"] != not {
			return fields["id"]
		}
	}
	t.Fatalf("no pub/sub connection named %s in CLIENT LIST TYPE pubsub:\n%s", name, list)
	return ""
}

// TestIgnoresMalformedPayloads publishes junk on the channel and expects
// the subscription to carry on with the next valid event.
func TestIgnoresMalformedPayloads(t *testing.T) {
	ctx := context.Background()
	opts := options(t)
	c := newClient(t, opts, "")
	bus := redis.New(redis.Config{Client: c, Prefix: "codehub-test:" + randomHex(t) + ":"}, testenv.Logger(t))
	rec := bustest.Subscribe(t, bus)
	bustest.WaitReady(t, bus, rec)
	for _, junk := range []string{"not json", `{"s": 5}`, `["a"]`, ""} {
		if err := c.Publish(ctx, bus.Channel(), junk).Err(); err != nil {
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

// TestPingsWhenQuiet lets a subscription sit idle past PingInterval and
// expects it to ping and to keep delivering. (Whether it stays on the same
// connection depends on how fast the pong comes, so that is not checked.)
func TestPingsWhenQuiet(t *testing.T) {
	ctx := context.Background()
	opts := options(t)
	prefix := "codehub-test:" + randomHex(t) + ":"
	name := "codehub-test-" + randomHex(t)
	admin := newClient(t, opts, "")
	pub := redis.New(redis.Config{Client: admin, Prefix: prefix}, testenv.Logger(t))
	sub := redis.New(redis.Config{Client: newClient(t, opts, name), Prefix: prefix, PingInterval: 20 * time.Millisecond}, testenv.Logger(t))
	rec := bustest.Subscribe(t, sub)
	bustest.WaitReady(t, pub, rec)
	id := subscriberID(t, admin, name, "")

	deadline := time.Now().Add(bustest.Guard)
	for !lastCommandWasPing(t, admin, id) {
		if time.Now().After(deadline) {
			t.Fatalf("the idle subscription has not pinged in %v", bustest.Guard)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := pub.Publish(ctx, revocation.Event{UserID: "dave"}); err != nil {
		t.Fatal(err)
	}
	bustest.WaitReady(t, pub, rec)
	if got := rec.Events(); len(got) != 1 || got[0].UserID != "dave" {
		t.Fatalf("received %v after pinging", got)
	}
	rec.Check(t)
}

// lastCommandWasPing reports whether connection id last sent PING.
func lastCommandWasPing(t *testing.T, c *goredis.Client, id string) bool {
	t.Helper()
	info, err := c.Do(context.Background(), "CLIENT", "LIST", "ID", id).Text()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(info, " cmd=ping ")
}
