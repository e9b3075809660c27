package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/user"
)

// AuditLog is the audit log in the database: one keyed chain shared by
// every gateway (appends are serialized), queried by the admin API. It is
// also where the checkpoints of every audit log are kept (a gateway's file
// log's, and its own), outside the logs they describe.
type AuditLog struct {
	db   *DB
	keys audit.Keys
}

var (
	_ audit.Sink            = (*AuditLog)(nil)
	_ audit.Checkpointer    = (*AuditLog)(nil)
	_ audit.CheckpointStore = (*AuditLog)(nil)
)

// AuditLog returns the database audit log, for queries; WithKeys makes one
// that can append.
func (db *DB) AuditLog() *AuditLog { return &AuditLog{db: db} }

// WithKeys returns the log chaining what it appends with keys.
func (a *AuditLog) WithKeys(keys audit.Keys) *AuditLog { return &AuditLog{db: a.db, keys: keys} }

// Name names the log in messages.
func (a *AuditLog) Name() string { return "database" }

// String implements audit.CheckpointStore.
func (a *AuditLog) String() string { return "the database" }

// Append implements audit.Sink: the events are chained after the newest
// entry, in one transaction.
func (a *AuditLog) Append(ctx context.Context, events []audit.Event) error {
	_, _, err := a.append(ctx, events)
	return err
}

// append chains events after the newest entry and returns the last one as
// written, and the key it was made with.
func (a *AuditLog) append(ctx context.Context, events []audit.Event) (last audit.Event, key audit.Key, err error) {
	if a.keys == nil {
		return last, key, errors.New("sqlstore: the audit log has no keys to chain entries with")
	}
	if key, err = a.keys.Current(ctx); err != nil {
		return last, key, err
	}
	err = a.db.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, a.db.q.LockAudit); err != nil {
			return err
		}
		var seq int64
		var prev string
		err := tx.QueryRowContext(ctx, a.db.q.LastAudit).Scan(&seq, &prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		t := a.db.dialect.timeArg
		for i := range events {
			e := events[i]
			e.Timestamp = dbTime(e.Timestamp)
			if err := audit.Chain(&e, seq+1, prev, key); err != nil {
				return err
			}
			meta, err := jsonArg(e.Metadata, "{}")
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, a.db.q.InsertAudit, e.Seq, t(e.Timestamp), e.EventType, e.UserID,
				e.Username, e.IPAddress, e.UserAgent, e.Status, meta, e.PrevHash, e.Hash,
				e.ID, e.LogID, e.Chain, e.KeyID); err != nil {
				return fmt.Errorf("sqlstore: append audit entry: %w", err)
			}
			seq, prev = e.Seq, e.Hash
			last = e
		}
		return nil
	})
	return last, key, err
}

// Checkpoint implements audit.Checkpointer: it appends an audit.checkpoint
// entry to the database's chain.
func (a *AuditLog) Checkpoint(ctx context.Context, at time.Time, reason string) (audit.Checkpoint, error) {
	e := audit.Event{Timestamp: at, EventType: audit.CheckpointEvent, Status: audit.StatusSuccess,
		Metadata: map[string]any{"reason": reason}, ID: audit.NewEventID()}
	last, key, err := a.append(ctx, []audit.Event{e})
	if err != nil {
		return audit.Checkpoint{}, err
	}
	cp := audit.Checkpoint{Log: audit.DatabaseLog, Seq: last.Seq, Hash: last.Hash, Time: last.Timestamp}
	if err := audit.SignCheckpoint(&cp, key); err != nil {
		return audit.Checkpoint{}, err
	}
	return cp, nil
}

// SaveCheckpoint implements audit.CheckpointStore.
func (a *AuditLog) SaveCheckpoint(ctx context.Context, cp audit.Checkpoint) error {
	if _, err := a.db.sql.ExecContext(ctx, a.db.q.InsertAuditCheckpoint, cp.Log, cp.Seq, cp.Path, cp.Hash,
		a.db.dialect.timeArg(dbTime(cp.Time)), cp.KeyID, cp.MAC); err != nil {
		return fmt.Errorf("sqlstore: save audit checkpoint: %w", err)
	}
	return nil
}

// Checkpoints implements audit.CheckpointStore.
func (a *AuditLog) Checkpoints(ctx context.Context, log string) ([]audit.Checkpoint, error) {
	rows, err := a.db.sql.QueryContext(ctx, a.db.q.AuditCheckpoints, log)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: audit checkpoints: %w", err)
	}
	defer rows.Close()
	var out []audit.Checkpoint
	for rows.Next() {
		var cp audit.Checkpoint
		if err := rows.Scan(&cp.Log, &cp.Seq, &cp.Path, &cp.Hash, timeCol{&cp.Time}, &cp.KeyID, &cp.MAC); err != nil {
			return nil, err
		}
		out = append(out, cp)
	}
	return out, rows.Err()
}

// Close implements audit.Sink; the DB is closed by its owner.
func (a *AuditLog) Close() error { return nil }

// AuditQuery filters the audit log; zero values match everything.
type AuditQuery struct {
	UserID, EventType string
	Since, Until      time.Time
	// Offset and Limit page the result, newest first (Limit 0: 100).
	Offset, Limit int
}

func scanAudit(r rowScanner) (audit.Event, error) {
	var e audit.Event
	var meta map[string]any
	err := r.Scan(&e.Seq, timeCol{&e.Timestamp}, &e.EventType, &e.UserID, &e.Username, &e.IPAddress,
		&e.UserAgent, &e.Status, jsonCol{&meta}, &e.PrevHash, &e.Hash, &e.ID, &e.LogID, &e.Chain, &e.KeyID)
	if len(meta) > 0 {
		e.Metadata = meta
	}
	return e, err
}

// Query returns one page of matching entries, newest first, and how many
// match in all.
func (a *AuditLog) Query(ctx context.Context, q AuditQuery) ([]audit.Event, int, error) {
	if !user.ValidText(q.UserID) || !user.ValidText(q.EventType) {
		return []audit.Event{}, 0, nil
	}
	if q.Limit <= 0 {
		q.Limit = 100
	}
	var since, until any
	if !q.Since.IsZero() {
		since = a.db.dialect.timeArg(q.Since)
	}
	if !q.Until.IsZero() {
		until = a.db.dialect.timeArg(q.Until)
	}
	var total int
	if err := a.db.sql.QueryRowContext(ctx, a.db.q.CountAudit, q.UserID, q.EventType, since, until).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("sqlstore: count audit entries: %w", err)
	}
	rows, err := a.db.sql.QueryContext(ctx, a.db.q.QueryAudit, q.UserID, q.EventType, since, until, q.Limit, max(q.Offset, 0))
	if err != nil {
		return nil, 0, fmt.Errorf("sqlstore: query audit entries: %w", err)
	}
	defer rows.Close()
	out := []audit.Event{}
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, e)
	}
	return out, total, rows.Err()
}

// Entries calls fn with every entry, in sequence order, read in batches;
// an error from fn stops it.
func (a *AuditLog) Entries(ctx context.Context, fn func(audit.Event) error) error {
	var after int64
	for {
		rows, err := a.db.sql.QueryContext(ctx, a.db.q.AuditAfter, after, 1000)
		if err != nil {
			return fmt.Errorf("sqlstore: read audit entries: %w", err)
		}
		var batch []audit.Event
		for rows.Next() {
			e, err := scanAudit(rows)
			if err != nil {
				rows.Close()
				return err
			}
			batch = append(batch, e)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return err
		}
		for _, e := range batch {
			if err := fn(e); err != nil {
				return err
			}
			after = e.Seq
		}
		if len(batch) < 1000 {
			return nil
		}
	}
}

// Verify checks the whole chain, and the log against its checkpoints in
// the database and in stores.
func (a *AuditLog) Verify(ctx context.Context, opts audit.VerifyOptions) (*audit.Report, error) {
	opts.Checkpoints = append([]audit.CheckpointStore{a}, opts.Checkpoints...)
	return audit.VerifyEntries(ctx, "database", audit.DatabaseLog, func(check func(audit.Event, string)) error {
		return a.Entries(ctx, func(e audit.Event) error {
			check(e, fmt.Sprintf("seq %d", e.Seq))
			return nil
		})
	}, opts)
}
