// Package postgres is a revocation.Bus over PostgreSQL LISTEN/NOTIFY: every
// gateway listening on the same database and channel receives every event
// as a JSON payload.
//
// Publishing uses a small pool; each Subscribe holds a dedicated connection
// (LISTEN needs one session for its whole life) and opens a new one, with
// backoff, whenever it fails. NOTIFY delivers at most once: an event
// published while a listener is reconnecting is lost to it.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/codehub-dev/codehub/internal/revocation"
)

var _ revocation.Bus = (*Bus)(nil)

// DefaultChannel is the NOTIFY channel when Config.Channel is empty.
const DefaultChannel = "codehub_revocations"

// DefaultApplicationName names the connections when neither Config nor the
// DSN does.
const DefaultApplicationName = "codehub"

// maxPayload is PostgreSQL's limit on a NOTIFY payload (it must be shorter
// than 8000 bytes in the default build).
const maxPayload = 7999

// Config configures a Bus.
type Config struct {
	// DSN is the database, as a URL or key=value string; pool settings
	// such as pool_max_conns apply to the publishing pool. Required.
	DSN string
	// PasswordFunc, when set, supplies the password for every new
	// connection (publishing pool and listener), for credentials that
	// rotate; it overrides a password in DSN.
	PasswordFunc func(ctx context.Context) (string, error)
	// Channel is the NOTIFY channel; DefaultChannel when empty. Gateways
	// that share sessions use the same channel. At most 63 bytes.
	Channel string
	// ApplicationName is the connections' application_name; the DSN's, or
	// DefaultApplicationName, when empty. The listener's connection gets
	// ApplicationName + "-listener", so that it can be told apart in
	// pg_stat_activity.
	ApplicationName string
	// PingInterval is how long a quiet listener waits before it checks its
	// connection with a ping (which must answer within another
	// PingInterval). 15s when zero.
	PingInterval time.Duration
	// BackoffMin and BackoffMax bound the wait before a listener reconnects
	// after a failure; it doubles from BackoffMin up to BackoffMax. 100ms
	// and 5s when zero.
	BackoffMin, BackoffMax time.Duration
}

// Bus is a revocation.Bus over PostgreSQL LISTEN/NOTIFY.
type Bus struct {
	pool     *pgxpool.Pool
	listenCC *pgx.ConnConfig
	cfg      Config
	log      hclog.Logger
}

// New returns a Bus for cfg.DSN. It does not connect: the first Publish or
// Subscribe does. Close releases it.
func New(cfg Config, log hclog.Logger) (*Bus, error) {
	if cfg.Channel == "" {
		cfg.Channel = DefaultChannel
	}
	if len(cfg.Channel) > 63 {
		return nil, fmt.Errorf("revocation channel %q: longer than 63 bytes", cfg.Channel)
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
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// The DSN may hold a password: do not repeat it.
		return nil, errors.New("revocation bus: cannot parse the PostgreSQL DSN")
	}
	params := pcfg.ConnConfig.RuntimeParams
	switch {
	case cfg.ApplicationName != "":
		params["application_name"] = cfg.ApplicationName
	case params["application_name"] == "":
		params["application_name"] = DefaultApplicationName
	}
	if cfg.PasswordFunc != nil {
		pcfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			return setPassword(ctx, cfg.PasswordFunc, cc)
		}
	}
	listenCC := pcfg.ConnConfig.Copy()
	listenCC.RuntimeParams["application_name"] = params["application_name"] + "-listener"
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, fmt.Errorf("revocation bus: %w", err)
	}
	return &Bus{pool: pool, listenCC: listenCC, cfg: cfg, log: log}, nil
}

func setPassword(ctx context.Context, f func(context.Context) (string, error), cc *pgx.ConnConfig) error {
	pw, err := f(ctx)
	if err != nil {
		return fmt.Errorf("password: %w", err)
	}
	cc.Password = pw
	return nil
}

// Close closes the publishing pool. Subscriptions end with their contexts.
func (b *Bus) Close() { b.pool.Close() }

// Channel returns the NOTIFY channel the Bus uses.
func (b *Bus) Channel() string { return b.cfg.Channel }

// Publish implements revocation.Bus. An event whose JSON would exceed
// NOTIFY's 8000-byte limit is sent, in one transaction, as several events
// that split its SessionIDs in order; the first carries the UserID.
func (b *Bus) Publish(ctx context.Context, ev revocation.Event) error {
	payloads, err := split(ev)
	if err != nil {
		return fmt.Errorf("publish revocation: %w", err)
	}
	if len(payloads) == 1 {
		_, err = b.pool.Exec(ctx, "SELECT pg_notify($1, $2)", b.cfg.Channel, payloads[0])
	} else {
		err = pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			for _, p := range payloads {
				if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", b.cfg.Channel, p); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("publish revocation: %w", err)
	}
	return nil
}

// split encodes ev as payloads that each fit in a NOTIFY.
func split(ev revocation.Event) ([]string, error) {
	data, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	if len(data) <= maxPayload {
		return []string{string(data)}, nil
	}
	if len(ev.SessionIDs) < 2 {
		return nil, fmt.Errorf("event of %d bytes does not fit in a NOTIFY", len(data))
	}
	half := len(ev.SessionIDs) / 2
	first, err := split(revocation.Event{SessionIDs: ev.SessionIDs[:half], UserID: ev.UserID})
	if err != nil {
		return nil, err
	}
	rest, err := split(revocation.Event{SessionIDs: ev.SessionIDs[half:]})
	if err != nil {
		return nil, err
	}
	return append(first, rest...), nil
}

// Subscribe implements revocation.Bus. After a failure it listens again on
// a new connection, waiting BackoffMin doubling to BackoffMax between
// attempts; it returns nil once ctx ends.
func (b *Bus) Subscribe(ctx context.Context, fn func(revocation.Event)) error {
	backoff := b.cfg.BackoffMin
	for {
		listening, err := b.listen(ctx, fn)
		if ctx.Err() != nil {
			return nil
		}
		if listening {
			backoff = b.cfg.BackoffMin
		}
		b.log.Warn("revocation listener lost; events published until it is back are missed",
			"channel", b.cfg.Channel, "error", err, "retry_in", backoff)
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

// listen runs one LISTEN on one connection until it fails or ctx ends, and
// reports whether the LISTEN took effect.
func (b *Bus) listen(ctx context.Context, fn func(revocation.Event)) (listening bool, err error) {
	cc := b.listenCC.Copy()
	if b.cfg.PasswordFunc != nil {
		if err := setPassword(ctx, b.cfg.PasswordFunc, cc); err != nil {
			return false, err
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), b.cfg.PingInterval)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{b.cfg.Channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	b.log.Debug("listening for revocations", "channel", b.cfg.Channel)
	// Events may have been missed before this LISTEN.
	fn(revocation.Event{Resync: true})
	for {
		wctx, cancel := context.WithTimeout(ctx, b.cfg.PingInterval)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return true, ctx.Err()
		}
		if err != nil {
			if !pgconn.Timeout(err) || conn.IsClosed() {
				return true, fmt.Errorf("wait for notification: %w", err)
			}
			// Quiet for a while: make sure the connection still answers.
			pctx, cancel := context.WithTimeout(ctx, b.cfg.PingInterval)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return true, fmt.Errorf("ping: %w", err)
			}
			continue
		}
		var ev revocation.Event
		if err := json.Unmarshal([]byte(n.Payload), &ev); err != nil {
			b.log.Warn("ignoring malformed revocation event", "channel", n.Channel, "error", err)
			continue
		}
		fn(ev)
	}
}
