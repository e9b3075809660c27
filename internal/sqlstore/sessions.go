package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/user"
)

// sessionStore is the "database" session.Store of a DB. Every expiry
// decision compares with the DB's clock, passed to the queries as "now".
type sessionStore struct{ db *DB }

var _ session.Store = (*sessionStore)(nil)

func scanSession(r rowScanner) (*session.Session, error) {
	var s session.Session
	err := r.Scan(&s.ID, &s.UserID, timeCol{&s.CreatedAt}, timeCol{&s.ExpiresAt}, timeCol{&s.LastActivity},
		&s.IPAddress, &s.UserAgent, &s.WorkspaceID, jsonCol{&s.Metadata}, &s.RefreshGen, &s.RefreshHash)
	if err != nil {
		return nil, err
	}
	if len(s.Metadata) == 0 {
		s.Metadata = nil
	}
	return &s, nil
}

func scanSessions(rows *sql.Rows) ([]*session.Session, error) {
	defer rows.Close()
	var out []*session.Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (st *sessionStore) now() any { return st.db.dialect.timeArg(st.db.now()) }

// Set implements session.Store.
func (st *sessionStore) Set(ctx context.Context, s *session.Session) error {
	meta, err := jsonArg(s.Metadata, "{}")
	if err != nil {
		return fmt.Errorf("sqlstore: set session: encode metadata: %w", err)
	}
	t := st.db.dialect.timeArg
	if _, err := st.db.sql.ExecContext(ctx, st.db.q.SetSession, s.ID, s.UserID, t(s.CreatedAt), t(s.ExpiresAt),
		t(s.LastActivity), s.IPAddress, s.UserAgent, s.WorkspaceID, meta, s.RefreshGen, s.RefreshHash); err != nil {
		return fmt.Errorf("sqlstore: set session: %w", err)
	}
	return nil
}

// Get implements session.Store.
func (st *sessionStore) Get(ctx context.Context, id string) (*session.Session, error) {
	if !user.ValidText(id) {
		return nil, session.ErrNotFound
	}
	s, err := scanSession(st.db.sql.QueryRowContext(ctx, st.db.q.GetSession, id, st.now()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, session.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: get session: %w", err)
	}
	return s, nil
}

// Update implements session.Store. fn runs inside the transaction, holding
// the session's row lock (PostgreSQL) or the database's write lock
// (SQLite): it must be quick and must not touch the store. fn cannot
// change the session's ID or UserID.
func (st *sessionStore) Update(ctx context.Context, id string, fn func(*session.Session) error) (*session.Session, error) {
	if !user.ValidText(id) {
		return nil, session.ErrNotFound
	}
	var out *session.Session
	err := st.db.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanSession(tx.QueryRowContext(ctx, st.db.q.GetSessionForUpdate, id, st.now()))
		if errors.Is(err, sql.ErrNoRows) {
			return session.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("sqlstore: update session: %w", err)
		}
		next := cur.Clone()
		if err := fn(next); err != nil {
			return err
		}
		next.ID, next.UserID = cur.ID, cur.UserID
		next.CreatedAt, next.ExpiresAt, next.LastActivity = dbTime(next.CreatedAt), dbTime(next.ExpiresAt), dbTime(next.LastActivity)
		meta, err := jsonArg(next.Metadata, "{}")
		if err != nil {
			return fmt.Errorf("sqlstore: update session: encode metadata: %w", err)
		}
		t := st.db.dialect.timeArg
		if _, err := tx.ExecContext(ctx, st.db.q.UpdateSession, id, t(next.CreatedAt), t(next.ExpiresAt),
			t(next.LastActivity), next.IPAddress, next.UserAgent, next.WorkspaceID, meta,
			next.RefreshGen, next.RefreshHash); err != nil {
			return fmt.Errorf("sqlstore: update session: %w", err)
		}
		out = next.Clone() // fn may have kept next
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete implements session.Store.
func (st *sessionStore) Delete(ctx context.Context, id string) error {
	if !user.ValidText(id) {
		return nil
	}
	if _, err := st.db.sql.ExecContext(ctx, st.db.q.DeleteSession, id); err != nil {
		return fmt.Errorf("sqlstore: delete session: %w", err)
	}
	return nil
}

func (st *sessionStore) list(ctx context.Context, what, query string, args ...any) ([]*session.Session, error) {
	rows, err := st.db.sql.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	out, err := scanSessions(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	return out, nil
}

// UserSessions implements session.Store.
func (st *sessionStore) UserSessions(ctx context.Context, userID string) ([]*session.Session, error) {
	return st.list(ctx, "user sessions", st.db.q.ListUserSessions, userID, st.now())
}

// AllActive implements session.Store.
func (st *sessionStore) AllActive(ctx context.Context) ([]*session.Session, error) {
	return st.list(ctx, "active sessions", st.db.q.ListActiveSessions, st.now())
}

// DeleteUserSessions implements session.Store. It removes expired
// sessions of the user too, but returns only the live ones (those a
// caller may have to close connections of), oldest first.
func (st *sessionStore) DeleteUserSessions(ctx context.Context, userID string) ([]*session.Session, error) {
	now := st.db.now()
	gone, err := st.list(ctx, "delete user sessions", st.db.q.DeleteUserSessions, userID)
	if err != nil {
		return nil, err
	}
	live := slices.DeleteFunc(gone, func(s *session.Session) bool { return s.Expired(now) })
	slices.SortFunc(live, func(a, b *session.Session) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return live, nil
}

// DeleteExpired implements session.Store.
func (st *sessionStore) DeleteExpired(ctx context.Context) (int, error) {
	res, err := st.db.sql.ExecContext(ctx, st.db.q.DeleteExpiredSessions, st.now())
	if err != nil {
		return 0, fmt.Errorf("sqlstore: delete expired sessions: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlstore: delete expired sessions: %w", err)
	}
	return int(n), nil
}

func (st *sessionStore) count(ctx context.Context, query string, args ...any) (int, error) {
	var n int
	if err := st.db.sql.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlstore: count sessions: %w", err)
	}
	return n, nil
}

// Count implements session.Store.
func (st *sessionStore) Count(ctx context.Context) (int, error) {
	return st.count(ctx, st.db.q.CountSessions, st.now())
}

// UserCount implements session.Store.
func (st *sessionStore) UserCount(ctx context.Context, userID string) (int, error) {
	return st.count(ctx, st.db.q.CountUserSessions, userID, st.now())
}
