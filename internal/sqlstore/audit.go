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

// AuditLog is the audit log in the database: one hash chain shared by
// every gateway (appends are serialized), queried by the admin API.
type AuditLog struct{ db *DB }

var _ audit.Sink = (*AuditLog)(nil)

// AuditLog returns the database audit log.
func (db *DB) AuditLog() *AuditLog { return &AuditLog{db: db} }

// Append implements audit.Sink: the events are chained after the newest
// entry, in one transaction.
func (a *AuditLog) Append(ctx context.Context, events []audit.Event) error {
	return a.db.inTx(ctx, func(tx *sql.Tx) error {
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
			if err := audit.Chain(&e, seq+1, prev); err != nil {
				return err
			}
			meta, err := jsonArg(e.Metadata, "{}")
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, a.db.q.InsertAudit, e.Seq, t(e.Timestamp), e.EventType, e.UserID,
				e.Username, e.IPAddress, e.UserAgent, e.Status, meta, e.PrevHash, e.Hash); err != nil {
				return fmt.Errorf("sqlstore: append audit entry: %w", err)
			}
			seq, prev = e.Seq, e.Hash
		}
		return nil
	})
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
		&e.UserAgent, &e.Status, jsonCol{&meta}, &e.PrevHash, &e.Hash)
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

// Verify checks the whole chain, in batches, and returns the number of
// entries checked.
func (a *AuditLog) Verify(ctx context.Context) (int, error) {
	var v audit.Verifier
	var after int64
	for {
		rows, err := a.db.sql.QueryContext(ctx, a.db.q.AuditAfter, after, 1000)
		if err != nil {
			return v.Count, err
		}
		n := 0
		for rows.Next() {
			e, err := scanAudit(rows)
			if err != nil {
				rows.Close()
				return v.Count, err
			}
			n++
			if v.Count == 0 && e.Seq != 1 {
				rows.Close()
				return 0, &audit.VerifyError{Where: fmt.Sprintf("seq %d", e.Seq), Reason: "the log does not start at seq 1: entries before it are missing"}
			}
			if err := v.Check(e, fmt.Sprintf("seq %d", e.Seq)); err != nil {
				rows.Close()
				return v.Count, err
			}
			after = e.Seq
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return v.Count, err
		}
		if n < 1000 {
			return v.Count, nil
		}
	}
}
