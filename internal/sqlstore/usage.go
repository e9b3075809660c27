package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/resources"
	"github.com/codehub-dev/codehub/internal/user"
)

// usageStore keeps the usage samples of a DB.
type usageStore struct{ db *DB }

var _ resources.Store = (*usageStore)(nil)

// Usage returns the store of usage samples.
func (db *DB) Usage() resources.Store { return &usageStore{db: db} }

func scanSample(r rowScanner) (resources.Sample, error) {
	var s resources.Sample
	err := r.Scan(&s.UserID, timeCol{&s.At}, &s.Sessions, &s.Connections, &s.StorageBytes, &s.MemoryBytes,
		&s.CPUPercent, &s.ActiveUsers, &s.RunningWorkspaces, &s.WorkspaceStarts)
	return s, err
}

func (st *usageStore) query(ctx context.Context, q string, args ...any) ([]resources.Sample, error) {
	rows, err := st.db.sql.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []resources.Sample{}
	for rows.Next() {
		s, err := scanSample(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// AddSamples implements resources.Store, in one transaction.
func (st *usageStore) AddSamples(ctx context.Context, samples []resources.Sample) error {
	t := st.db.dialect.timeArg
	err := st.db.inTx(ctx, func(tx *sql.Tx) error {
		for _, s := range samples {
			if !user.ValidText(s.UserID) || s.At.IsZero() {
				return fmt.Errorf("invalid sample (user %q, time %v)", s.UserID, s.At)
			}
			if _, err := tx.ExecContext(ctx, st.db.q.InsertUsageSample, s.UserID, t(s.At), s.Sessions, s.Connections,
				s.StorageBytes, s.MemoryBytes, s.CPUPercent, s.ActiveUsers, s.RunningWorkspaces, s.WorkspaceStarts); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlstore: add usage samples: %w", err)
	}
	return nil
}

// Samples implements resources.Store.
func (st *usageStore) Samples(ctx context.Context, userID string, since, until time.Time) ([]resources.Sample, error) {
	if !user.ValidText(userID) {
		return []resources.Sample{}, nil
	}
	t := st.db.dialect.timeArg
	out, err := st.query(ctx, st.db.q.UsageSamples, userID, t(since), t(until))
	if err != nil {
		return nil, fmt.Errorf("sqlstore: usage samples: %w", err)
	}
	return out, nil
}

// LatestStorage implements resources.Store.
func (st *usageStore) LatestStorage(ctx context.Context) ([]resources.Sample, error) {
	out, err := st.query(ctx, st.db.q.LatestStorageSamples)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: latest usage samples: %w", err)
	}
	return out, nil
}

// Prune implements resources.Store.
func (st *usageStore) Prune(ctx context.Context, before time.Time) (int, error) {
	res, err := st.db.sql.ExecContext(ctx, st.db.q.PruneUsageSamples, st.db.dialect.timeArg(before))
	if err != nil {
		return 0, fmt.Errorf("sqlstore: prune usage samples: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// DeleteUser implements resources.Store.
func (st *usageStore) DeleteUser(ctx context.Context, userID string) error {
	if !user.ValidText(userID) {
		return nil
	}
	if _, err := st.db.sql.ExecContext(ctx, st.db.q.DeleteUserUsageSamples, userID); err != nil {
		return fmt.Errorf("sqlstore: delete usage samples: %w", err)
	}
	return nil
}

// Failures returns the newest audit entries with status failure recorded
// since a time (at most limit of them, newest first), and how many there
// are in all.
func (a *AuditLog) Failures(ctx context.Context, since time.Time, limit int) ([]audit.Event, int, error) {
	if limit <= 0 {
		limit = 10
	}
	ts := a.db.dialect.timeArg(since)
	var total int
	if err := a.db.sql.QueryRowContext(ctx, a.db.q.CountAuditFailures, ts).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("sqlstore: count audit failures: %w", err)
	}
	rows, err := a.db.sql.QueryContext(ctx, a.db.q.RecentAuditFailures, ts, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlstore: audit failures: %w", err)
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
