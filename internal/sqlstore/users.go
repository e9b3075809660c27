package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/codehub-dev/codehub/internal/user"
	"github.com/google/uuid"
)

// userStore is the user.Store of a DB.
type userStore struct{ db *DB }

var _ user.Store = (*userStore)(nil)

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

// dbTime is t as the database gives it back: UTC, to the microsecond.
func dbTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// canonicalID returns id in the canonical UUID form the users table keys
// on, and false if id is no UUID at all (so no user has it).
func canonicalID(id string) (string, bool) {
	u, err := uuid.Parse(id)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

func scanUser(r rowScanner) (*user.User, error) {
	var u user.User
	err := r.Scan(&u.ID, &u.Username, &u.Email, &u.PasswordHash, jsonCol{&u.Roles},
		timeCol{&u.CreatedAt}, timeCol{&u.UpdatedAt}, timeCol{&u.LastLogin}, &u.Active,
		jsonCol{&u.Metadata}, &u.FailedLogins, timeCol{&u.LockedUntil}, &u.LockCount)
	if err != nil {
		return nil, err
	}
	if len(u.Roles) == 0 {
		u.Roles = nil
	}
	if len(u.Metadata) == 0 {
		u.Metadata = nil
	}
	return &u, nil
}

// userArgs are the arguments of CreateUser, in column order.
func (s *userStore) userArgs(u *user.User) ([]any, error) {
	roles, err := jsonArg(u.Roles, "[]")
	if err != nil {
		return nil, fmt.Errorf("encode roles: %w", err)
	}
	meta, err := jsonArg(u.Metadata, "{}")
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	t := s.db.dialect.timeArg
	return []any{u.ID, u.Username, u.Email, u.PasswordHash, roles, t(u.CreatedAt), t(u.UpdatedAt),
		t(u.LastLogin), u.Active, meta, u.FailedLogins, t(u.LockedUntil), u.LockCount}, nil
}

// Create implements user.Store. u.ID must be a UUID in canonical
// (lower-case, hyphenated) form.
func (s *userStore) Create(ctx context.Context, u *user.User) error {
	if id, ok := canonicalID(u.ID); !ok || id != u.ID {
		return fmt.Errorf("sqlstore: create user: id %q is not a canonical UUID", u.ID)
	}
	args, err := s.userArgs(u)
	if err != nil {
		return fmt.Errorf("sqlstore: create user: %w", err)
	}
	if _, err := s.db.sql.ExecContext(ctx, s.db.q.CreateUser, args...); err != nil {
		if s.db.dialect.isUniqueViolation(err) {
			return user.ErrConflict
		}
		return fmt.Errorf("sqlstore: create user: %w", err)
	}
	return nil
}

func (s *userStore) getBy(ctx context.Context, query, key string) (*user.User, error) {
	if !user.ValidText(key) {
		return nil, user.ErrNotFound // nothing stored can match
	}
	u, err := scanUser(s.db.sql.QueryRowContext(ctx, query, key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, user.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: get user: %w", err)
	}
	return u, nil
}

// Get implements user.Store.
func (s *userStore) Get(ctx context.Context, id string) (*user.User, error) {
	id, ok := canonicalID(id)
	if !ok {
		return nil, user.ErrNotFound
	}
	return s.getBy(ctx, s.db.q.GetUserByID, id)
}

// GetByUsername implements user.Store.
func (s *userStore) GetByUsername(ctx context.Context, username string) (*user.User, error) {
	return s.getBy(ctx, s.db.q.GetUserByUsername, username)
}

// GetByEmail implements user.Store.
func (s *userStore) GetByEmail(ctx context.Context, email string) (*user.User, error) {
	return s.getBy(ctx, s.db.q.GetUserByEmail, email)
}

// escapeLike makes s match itself literally in a LIKE pattern with
// ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// List implements user.Store. A Limit of 0 (or less) means no limit.
func (s *userStore) List(ctx context.Context, opts user.ListOptions) ([]*user.User, int, error) {
	if !user.ValidText(opts.Search) {
		return []*user.User{}, 0, nil
	}
	pattern := "%" + escapeLike(strings.ToLower(opts.Search)) + "%"
	limit, offset := max(opts.Limit, 0), max(opts.Offset, 0)
	var (
		out   []*user.User
		total int
	)
	err := s.db.inReadTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, s.db.q.CountUsersMatching, pattern).Scan(&total); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, s.db.q.ListUsers, pattern, limit, offset)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			u, err := scanUser(rows)
			if err != nil {
				return err
			}
			out = append(out, u)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("sqlstore: list users: %w", err)
	}
	return out, total, nil
}

// Update implements user.Store: the account fields only, never the
// sign-in state or CreatedAt.
func (s *userStore) Update(ctx context.Context, u *user.User) error {
	id, ok := canonicalID(u.ID)
	if !ok {
		return user.ErrNotFound
	}
	roles, err := jsonArg(u.Roles, "[]")
	if err != nil {
		return fmt.Errorf("sqlstore: update user: encode roles: %w", err)
	}
	meta, err := jsonArg(u.Metadata, "{}")
	if err != nil {
		return fmt.Errorf("sqlstore: update user: encode metadata: %w", err)
	}
	res, err := s.db.sql.ExecContext(ctx, s.db.q.UpdateUser, id, u.Username, u.Email, u.PasswordHash, roles,
		s.db.dialect.timeArg(u.UpdatedAt), u.Active, meta)
	if err != nil {
		if s.db.dialect.isUniqueViolation(err) {
			return user.ErrConflict
		}
		return fmt.Errorf("sqlstore: update user: %w", err)
	}
	return oneRow(res, user.ErrNotFound, "update user")
}

// oneRow returns notFound if res changed no row.
func oneRow(res sql.Result, notFound error, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	if n == 0 {
		return notFound
	}
	return nil
}

// execUser runs an UPDATE or DELETE of one user by id.
func (s *userStore) execUser(ctx context.Context, what, query, id string, args ...any) error {
	id, ok := canonicalID(id)
	if !ok {
		return user.ErrNotFound
	}
	res, err := s.db.sql.ExecContext(ctx, query, append([]any{id}, args...)...)
	if err != nil {
		return fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	return oneRow(res, user.ErrNotFound, what)
}

// Delete implements user.Store.
func (s *userStore) Delete(ctx context.Context, id string) error {
	return s.execUser(ctx, "delete user", s.db.q.DeleteUser, id)
}

// Count implements user.Store.
func (s *userStore) Count(ctx context.Context) (int, error) {
	var n int
	if err := s.db.sql.QueryRowContext(ctx, s.db.q.CountUsers).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlstore: count users: %w", err)
	}
	return n, nil
}

// RecordSuccess implements user.Store. A lock still running is left as it
// is: the caller refuses sign-ins while locked.
func (s *userStore) RecordSuccess(ctx context.Context, id string, now time.Time) error {
	return s.execUser(ctx, "record success", s.db.q.RecordUserSuccess, id, s.db.dialect.timeArg(now))
}

// Lock implements user.Store.
func (s *userStore) Lock(ctx context.Context, id string, until time.Time) error {
	return s.execUser(ctx, "lock user", s.db.q.LockUser, id, s.db.dialect.timeArg(until))
}

// Unlock implements user.Store. LockCount stays, so a lock soon after
// still lasts longer.
func (s *userStore) Unlock(ctx context.Context, id string) error {
	return s.execUser(ctx, "unlock user", s.db.q.UnlockUser, id)
}

func scanInvite(r rowScanner) (*user.Invite, error) {
	var inv user.Invite
	err := r.Scan(&inv.TokenHash, &inv.Email, &inv.Role, &inv.CreatedBy,
		timeCol{&inv.CreatedAt}, timeCol{&inv.ExpiresAt}, timeCol{&inv.UsedAt}, &inv.UsedBy)
	if err != nil {
		return nil, err
	}
	return &inv, nil
}

// CreateInvite implements user.Store. ErrConflict if the token hash is
// taken.
func (s *userStore) CreateInvite(ctx context.Context, inv *user.Invite) error {
	t := s.db.dialect.timeArg
	_, err := s.db.sql.ExecContext(ctx, s.db.q.CreateInvite, inv.TokenHash, inv.Email, inv.Role,
		inv.CreatedBy, t(inv.CreatedAt), t(inv.ExpiresAt), t(inv.UsedAt), inv.UsedBy)
	if err != nil {
		if s.db.dialect.isUniqueViolation(err) {
			return user.ErrConflict
		}
		return fmt.Errorf("sqlstore: create invite: %w", err)
	}
	return nil
}

// UseInvite implements user.Store, in one UPDATE: of concurrent callers
// exactly one changes the row, the others find it used.
func (s *userStore) UseInvite(ctx context.Context, tokenHash, userID string, now time.Time) (*user.Invite, error) {
	if !user.ValidText(tokenHash) {
		return nil, user.ErrNotFound
	}
	inv, err := scanInvite(s.db.sql.QueryRowContext(ctx, s.db.q.UseInvite, tokenHash, userID, s.db.dialect.timeArg(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, user.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: use invite: %w", err)
	}
	return inv, nil
}

// ReleaseInvite implements user.Store; ErrNotFound if there is no such
// invite. An invite that is not used stays as it is.
func (s *userStore) ReleaseInvite(ctx context.Context, tokenHash string) error {
	res, err := s.db.sql.ExecContext(ctx, s.db.q.ReleaseInvite, tokenHash)
	if err != nil {
		return fmt.Errorf("sqlstore: release invite: %w", err)
	}
	return oneRow(res, user.ErrNotFound, "release invite")
}
