package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/codehub-dev/codehub/internal/revocation"
)

// Bus is a revocation.Bus in the database: events are rows, and every
// subscriber polls for rows newer than the last it saw. It is the bus of
// the embedded default (SQLite), where it also carries events from the CLI
// (`codehub user delete`) to a running gateway.
type Bus struct {
	db   *DB
	poll time.Duration
	keep time.Duration
}

var _ revocation.Bus = (*Bus)(nil)

// RevocationBus returns a Bus polling every poll (default 500ms). Events
// older than an hour are pruned.
func (db *DB) RevocationBus(poll time.Duration) *Bus {
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	return &Bus{db: db, poll: poll, keep: time.Hour}
}

// Publish implements revocation.Bus.
func (b *Bus) Publish(ctx context.Context, ev revocation.Event) error {
	payload, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	err = b.db.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, b.db.q.LockRevocations); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, b.db.q.PublishRevocation, string(payload), b.db.dialect.timeArg(b.db.now()))
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: publish revocation: %w", err)
	}
	return nil
}

// Subscribe implements revocation.Bus. It starts after the newest event
// present, after a Resync event.
func (b *Bus) Subscribe(ctx context.Context, fn func(revocation.Event)) error {
	var last int64
	backoff := b.poll
	for {
		err := b.db.sql.QueryRowContext(ctx, b.db.q.LastRevocation).Scan(&last)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		b.db.log.Warn("revocation bus: cannot read the newest event; retrying", "error", err)
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	fn(revocation.Event{Resync: true})
	t := time.NewTicker(b.poll)
	defer t.Stop()
	failing := false
	lastPrune := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		next, err := b.deliver(ctx, last, fn)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !failing {
				b.db.log.Warn("revocation bus: poll failed", "error", err)
			}
			failing = true
			continue
		}
		if failing {
			// Events may have been pruned meanwhile.
			fn(revocation.Event{Resync: true})
			failing = false
		}
		last = next
		if now := b.db.now(); now.Sub(lastPrune) > 10*time.Minute {
			lastPrune = now
			if _, err := b.db.sql.ExecContext(ctx, b.db.q.PruneRevocations, b.db.dialect.timeArg(now.Add(-b.keep))); err != nil && ctx.Err() == nil {
				b.db.log.Warn("revocation bus: prune", "error", err)
			}
		}
	}
}

// deliver hands fn the events after id last and returns the newest id.
func (b *Bus) deliver(ctx context.Context, last int64, fn func(revocation.Event)) (int64, error) {
	for {
		rows, err := b.db.sql.QueryContext(ctx, b.db.q.RevocationsAfter, last)
		if err != nil {
			return last, err
		}
		var batch []revocation.Event
		n := 0
		for rows.Next() {
			var id int64
			var payload string
			if err := rows.Scan(&id, &payload); err != nil {
				rows.Close()
				return last, err
			}
			n++
			last = id
			var ev revocation.Event
			if err := json.Unmarshal([]byte(payload), &ev); err != nil {
				b.db.log.Warn("revocation bus: ignoring a malformed event", "id", id, "error", err)
				continue
			}
			batch = append(batch, ev)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return last, err
		}
		for _, ev := range batch {
			fn(ev)
		}
		if n < 1000 {
			return last, nil
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
