package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/codehub-dev/codehub/internal/lockout"
	"github.com/codehub-dev/codehub/internal/user"
)

// lockoutStore is the lockout.Store of a DB.
type lockoutStore struct{ db *DB }

var _ lockout.Store = (*lockoutStore)(nil)

// Lockout returns the store of failed sign-ins kept in this database.
func (db *DB) Lockout() lockout.Store { return &lockoutStore{db: db} }

func scanEntry(r rowScanner) (lockout.Entry, error) {
	var e lockout.Entry
	err := r.Scan(&e.NameKey, &e.Client, &e.Failures, timeCol{&e.LockedUntil}, &e.LockCount, timeCol{&e.LastFailure})
	return e, err
}

// Secret implements lockout.Store. Of gateways starting at once, the
// first insert wins and all read it back.
func (s *lockoutStore) Secret(ctx context.Context, generate func() ([]byte, error)) ([]byte, error) {
	var enc string
	err := s.db.sql.QueryRowContext(ctx, s.db.q.GetLockoutKey).Scan(&enc)
	if errors.Is(err, sql.ErrNoRows) {
		b, gerr := generate()
		if gerr != nil {
			return nil, fmt.Errorf("sqlstore: make lockout key: %w", gerr)
		}
		if _, err := s.db.sql.ExecContext(ctx, s.db.q.InsertLockoutKey, base64.StdEncoding.EncodeToString(b)); err != nil {
			return nil, fmt.Errorf("sqlstore: store lockout key: %w", err)
		}
		err = s.db.sql.QueryRowContext(ctx, s.db.q.GetLockoutKey).Scan(&enc)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: read lockout key: %w", err)
	}
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: lockout key is not base64: %w", err)
	}
	return b, nil
}

// Get implements lockout.Store.
func (s *lockoutStore) Get(ctx context.Context, nameKey, client string) (c, name lockout.Entry, err error) {
	c = lockout.Entry{NameKey: nameKey, Client: client}
	name = lockout.Entry{NameKey: nameKey, Client: lockout.AllClients}
	if !validKey(nameKey, client) {
		return c, name, nil
	}
	rows, err := s.db.sql.QueryContext(ctx, s.db.q.GetLoginFailures, nameKey, client)
	if err != nil {
		return c, name, fmt.Errorf("sqlstore: get login failures: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return c, name, fmt.Errorf("sqlstore: get login failures: %w", err)
		}
		if e.Client == lockout.AllClients {
			name = e
		} else {
			c = e
		}
	}
	if err := rows.Err(); err != nil {
		return c, name, fmt.Errorf("sqlstore: get login failures: %w", err)
	}
	return c, name, nil
}

// validKey reports whether the keys can be stored (valid UTF-8, no NUL):
// others match nothing.
func validKey(keys ...string) bool {
	for _, k := range keys {
		if !user.ValidText(k) {
			return false
		}
	}
	return true
}

// lockedEntry reads the entry of (nameKey, client) for update, creating
// it first: on PostgreSQL the row lock serializes its writers, on SQLite
// the immediate transaction already does.
func (s *lockoutStore) lockedEntry(ctx context.Context, tx *sql.Tx, nameKey, client string) (lockout.Entry, error) {
	if _, err := tx.ExecContext(ctx, s.db.q.EnsureLoginFailure, nameKey, client); err != nil {
		return lockout.Entry{}, err
	}
	return scanEntry(tx.QueryRowContext(ctx, s.db.q.GetLoginFailureForUpdate, nameKey, client))
}

func (s *lockoutStore) setEntry(ctx context.Context, tx *sql.Tx, e lockout.Entry) error {
	t := s.db.dialect.timeArg
	_, err := tx.ExecContext(ctx, s.db.q.SetLoginFailure, e.NameKey, e.Client, e.Failures, t(e.LockedUntil), e.LockCount, t(e.LastFailure))
	return err
}

// RecordFailure implements lockout.Store. The name's entry is locked
// first, so that failures of one name, from any gateway, are serialized
// and the count of failing clients is exact.
func (s *lockoutStore) RecordFailure(ctx context.Context, nameKey, client string, now time.Time, p lockout.Policy) (lockout.Outcome, error) {
	var out lockout.Outcome
	if !validKey(nameKey, client) || client == lockout.AllClients {
		return out, fmt.Errorf("sqlstore: record login failure: invalid key or client %q", client)
	}
	now = dbTime(now)
	stale := func(e lockout.Entry) bool {
		return p.ResetAfter > 0 && !e.Locked(now) && !e.LastFailure.IsZero() && now.Sub(e.LastFailure) > p.ResetAfter
	}
	err := s.db.inTx(ctx, func(tx *sql.Tx) error {
		name, err := s.lockedEntry(ctx, tx, nameKey, lockout.AllClients)
		if err != nil {
			return err
		}
		c, err := s.lockedEntry(ctx, tx, nameKey, client)
		if err != nil {
			return err
		}
		if stale(c) {
			c.Failures, c.LockCount = 0, 0
		}
		// A failure while locked (a race with another gateway) neither
		// counts nor extends the lock.
		if !c.Locked(now) {
			c.Failures++
			c.LastFailure = now
			if p.MaxFailures > 0 && c.Failures >= p.MaxFailures {
				c.LockedUntil = dbTime(now.Add(p.LockDuration(p.BaseLock, c.LockCount)))
				c.LockCount++
				c.Failures = 0
				out.ClientLocking = true
			}
			if err := s.setEntry(ctx, tx, c); err != nil {
				return err
			}
		}

		if stale(name) {
			name.Failures, name.LockCount = 0, 0
		}
		name.Failures++
		name.LastFailure = now
		if p.NameClients > 0 && !name.Locked(now) {
			var n int
			since := s.db.dialect.timeArg(now.Add(-p.NameWindow))
			if err := tx.QueryRowContext(ctx, s.db.q.CountFailingClients, nameKey, since).Scan(&n); err != nil {
				return err
			}
			if n >= p.NameClients {
				name.LockedUntil = dbTime(now.Add(p.LockDuration(p.NameLock, name.LockCount)))
				name.LockCount++
				name.Failures = 0
				out.NameLocking = true
			}
		}
		if err := s.setEntry(ctx, tx, name); err != nil {
			return err
		}
		out.Client, out.Name = c, name
		return nil
	})
	if err != nil {
		return lockout.Outcome{}, fmt.Errorf("sqlstore: record login failure: %w", err)
	}
	return out, nil
}

// Forget implements lockout.Store.
func (s *lockoutStore) Forget(ctx context.Context, nameKey, client string) error {
	if !validKey(nameKey, client) {
		return nil
	}
	if _, err := s.db.sql.ExecContext(ctx, s.db.q.DeleteLoginFailure, nameKey, client); err != nil {
		return fmt.Errorf("sqlstore: forget login failures: %w", err)
	}
	return nil
}

// List implements lockout.Store.
func (s *lockoutStore) List(ctx context.Context, nameKeys []string) ([]lockout.Entry, error) {
	out := []lockout.Entry{}
	for _, k := range nameKeys {
		if !validKey(k) {
			continue
		}
		rows, err := s.db.sql.QueryContext(ctx, s.db.q.ListLoginFailures, k)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: list login failures: %w", err)
		}
		for rows.Next() {
			e, err := scanEntry(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlstore: list login failures: %w", err)
			}
			out = append(out, e)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("sqlstore: list login failures: %w", err)
		}
	}
	return out, nil
}

// Clear implements lockout.Store.
func (s *lockoutStore) Clear(ctx context.Context, nameKeys []string, client string) (int, error) {
	if !validKey(client) {
		return 0, nil
	}
	total := 0
	err := s.db.inTx(ctx, func(tx *sql.Tx) error {
		for _, k := range nameKeys {
			if !validKey(k) {
				continue
			}
			res, err := tx.ExecContext(ctx, s.db.q.ClearLoginFailures, k, client)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			total += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("sqlstore: clear login failures: %w", err)
	}
	return total, nil
}

// Prune implements lockout.Store.
func (s *lockoutStore) Prune(ctx context.Context, now, before time.Time) (int, error) {
	t := s.db.dialect.timeArg
	res, err := s.db.sql.ExecContext(ctx, s.db.q.PruneLoginFailures, t(now), t(before))
	if err != nil {
		return 0, fmt.Errorf("sqlstore: prune login failures: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlstore: prune login failures: %w", err)
	}
	return int(n), nil
}
