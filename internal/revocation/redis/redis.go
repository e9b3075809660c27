// Package redis is a revocation.Bus over Redis PUBLISH/SUBSCRIBE: every
// gateway subscribed to <prefix>revocations on the same Redis (server,
// Sentinel group or Cluster) receives every event as JSON.
//
// Redis Pub/Sub delivers at most once: an event published while a
// subscriber is disconnected is lost to it. Subscribe reconnects on its own
// and logs every loss of the connection at warn level.
package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	goredis "github.com/redis/go-redis/v9"

	"github.com/codehub-dev/codehub/internal/revocation"
)

var _ revocation.Bus = (*Bus)(nil)

// DefaultPrefix starts the channel name when Config.Prefix is empty.
const DefaultPrefix = "codehub:"

// Config configures a Bus.
type Config struct {
	// Client is the connection to Redis: a *redis.Client, a failover
	// (Sentinel) client or a *redis.ClusterClient. Required. The Bus does
	// not close it.
	Client goredis.UniversalClient
	// Prefix starts the channel name, <Prefix>revocations; DefaultPrefix
	// when empty. Gateways that share sessions use the same Prefix.
	Prefix string
	// PingInterval is how long a quiet subscription waits before it pings
	// Redis; a subscription whose ping gets no answer within another
	// PingInterval is deemed dead and reconnected. 15s when zero.
	PingInterval time.Duration
	// BackoffMin and BackoffMax bound the wait before resubscribing after a
	// failure; it doubles from BackoffMin up to BackoffMax. 100ms and 5s
	// when zero.
	BackoffMin, BackoffMax time.Duration
}

// Bus is a revocation.Bus over Redis Pub/Sub.
type Bus struct {
	rdb     goredis.UniversalClient
	channel string
	cfg     Config
	log     hclog.Logger
}

// New returns a Bus using cfg.Client. It panics if cfg.Client is nil.
func New(cfg Config, log hclog.Logger) *Bus {
	if cfg.Client == nil {
		panic("revocation/redis: Config.Client is nil")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 15 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Second
	}
	cfg.BackoffMax = max(cfg.BackoffMax, cfg.BackoffMin)
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Bus{rdb: cfg.Client, channel: cfg.Prefix + "revocations", cfg: cfg, log: log}
}

// Channel returns the Redis channel the Bus uses.
func (b *Bus) Channel() string { return b.channel }

// Publish implements revocation.Bus.
func (b *Bus) Publish(ctx context.Context, ev revocation.Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("publish revocation: %w", err)
	}
	if err := b.rdb.Publish(ctx, b.channel, data).Err(); err != nil {
		return fmt.Errorf("publish revocation: %w", err)
	}
	return nil
}

// Subscribe implements revocation.Bus. After a failure it subscribes again
// on a new connection, waiting BackoffMin doubling to BackoffMax between
// attempts; it returns nil once ctx ends.
func (b *Bus) Subscribe(ctx context.Context, fn func(revocation.Event)) error {
	backoff := b.cfg.BackoffMin
	for {
		subscribed, err := b.listen(ctx, fn)
		if ctx.Err() != nil {
			return nil
		}
		if subscribed {
			backoff = b.cfg.BackoffMin
		}
		b.log.Warn("revocation subscription lost; events published until it is back are missed",
			"channel", b.channel, "error", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, b.cfg.BackoffMax)
	}
}

// listen runs one subscription on one connection until it fails or ctx
// ends, and reports whether Redis confirmed the subscription.
func (b *Bus) listen(ctx context.Context, fn func(revocation.Event)) (subscribed bool, err error) {
	ps := b.rdb.Subscribe(ctx) // no channel yet, so that the error is seen
	defer ps.Close()
	// Receive does not watch ctx; closing the PubSub ends it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	if err := ps.Subscribe(ctx, b.channel); err != nil {
		return false, fmt.Errorf("subscribe %s: %w", b.channel, err)
	}
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, b.cfg.PingInterval)
		if ctx.Err() != nil {
			return subscribed, ctx.Err()
		}
		var nerr net.Error
		switch {
		case err == nil:
		case errors.As(err, &nerr) && nerr.Timeout() && !pinged:
			pinged = true
			if err := ps.Ping(ctx); err != nil {
				return subscribed, fmt.Errorf("ping: %w", err)
			}
			continue
		case errors.As(err, &nerr) && nerr.Timeout():
			return subscribed, fmt.Errorf("no answer to ping in %v", b.cfg.PingInterval)
		default:
			return subscribed, fmt.Errorf("receive: %w", err)
		}
		pinged = false
		switch m := msg.(type) {
		case *goredis.Subscription:
			if m.Kind == "subscribe" && m.Channel == b.channel {
				if !subscribed {
					b.log.Debug("subscribed to revocations", "channel", b.channel)
					// Events may have been missed before this subscription.
					fn(revocation.Event{Resync: true})
				}
				subscribed = true
			}
		case *goredis.Message:
			var ev revocation.Event
			if err := json.Unmarshal([]byte(m.Payload), &ev); err != nil {
				b.log.Warn("ignoring malformed revocation event", "channel", m.Channel, "error", err)
				continue
			}
			fn(ev)
		}
	}
}
