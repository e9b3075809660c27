package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/codehub-dev/codehub/internal/user"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// workspaceStore is the workspace registry of a DB.
type workspaceStore struct{ db *DB }

var _ workspace.Store = (*workspaceStore)(nil)

// Workspaces returns the workspace registry.
func (db *DB) Workspaces() workspace.Store { return &workspaceStore{db: db} }

func scanWorkspace(r rowScanner) (*workspace.Workspace, error) {
	var w workspace.Workspace
	var userID sql.NullString
	var state string
	err := r.Scan(&w.ID, &userID, &state, &w.Orchestrator, &w.Node, &w.Address, &w.Secret, &w.PID,
		&w.ExternalID, &w.Home, timeCol{&w.CreatedAt}, timeCol{&w.StartedAt}, timeCol{&w.StoppedAt},
		timeCol{&w.LastActivity}, &w.Restarts, &w.LastError, jsonCol{&w.Meta})
	if err != nil {
		return nil, err
	}
	w.UserID, w.State = userID.String, workspace.State(state)
	if len(w.Meta) == 0 {
		w.Meta = nil
	}
	return &w, nil
}

// args are the columns of CreateWorkspace and UpdateWorkspace, in order.
func (st *workspaceStore) args(w *workspace.Workspace) ([]any, error) {
	meta, err := jsonArg(w.Meta, "{}")
	if err != nil {
		return nil, fmt.Errorf("encode meta: %w", err)
	}
	var userID any
	if w.UserID != "" {
		userID = w.UserID
	}
	t := st.db.dialect.timeArg
	return []any{w.ID, userID, string(w.State), w.Orchestrator, w.Node, w.Address, w.Secret, w.PID,
		w.ExternalID, w.Home, t(w.CreatedAt), t(w.StartedAt), t(w.StoppedAt), t(w.LastActivity),
		w.Restarts, w.LastError, meta}, nil
}

// Create implements workspace.Store.
func (st *workspaceStore) Create(ctx context.Context, w *workspace.Workspace) error {
	args, err := st.args(w)
	if err != nil {
		return fmt.Errorf("sqlstore: create workspace: %w", err)
	}
	if _, err := st.db.sql.ExecContext(ctx, st.db.q.CreateWorkspace, args...); err != nil {
		if st.db.dialect.isUniqueViolation(err) {
			return workspace.ErrConflict
		}
		return fmt.Errorf("sqlstore: create workspace: %w", err)
	}
	return nil
}

func (st *workspaceStore) one(ctx context.Context, what, query string, arg string) (*workspace.Workspace, error) {
	if !user.ValidText(arg) {
		return nil, workspace.ErrNotFound
	}
	w, err := scanWorkspace(st.db.sql.QueryRowContext(ctx, query, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, workspace.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	return w, nil
}

// Get implements workspace.Store.
func (st *workspaceStore) Get(ctx context.Context, id string) (*workspace.Workspace, error) {
	return st.one(ctx, "get workspace", st.db.q.GetWorkspace, id)
}

// ByUser implements workspace.Store.
func (st *workspaceStore) ByUser(ctx context.Context, userID string) (*workspace.Workspace, error) {
	if userID == "" {
		return nil, workspace.ErrNotFound
	}
	return st.one(ctx, "get user's workspace", st.db.q.GetUserWorkspace, userID)
}

// List implements workspace.Store.
func (st *workspaceStore) List(ctx context.Context) ([]*workspace.Workspace, error) {
	rows, err := st.db.sql.QueryContext(ctx, st.db.q.ListWorkspaces)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list workspaces: %w", err)
	}
	defer rows.Close()
	var out []*workspace.Workspace
	for rows.Next() {
		w, err := scanWorkspace(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: list workspaces: %w", err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: list workspaces: %w", err)
	}
	return out, nil
}

// Update implements workspace.Store: fn runs inside the transaction,
// holding the row lock (PostgreSQL) or the write lock (SQLite).
func (st *workspaceStore) Update(ctx context.Context, id string, fn func(*workspace.Workspace) error) (*workspace.Workspace, error) {
	var out *workspace.Workspace
	err := st.db.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := scanWorkspace(tx.QueryRowContext(ctx, st.db.q.GetWorkspaceForUpdate, id))
		if errors.Is(err, sql.ErrNoRows) {
			return workspace.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("sqlstore: update workspace: %w", err)
		}
		next := cur.Clone()
		if err := fn(next); err != nil {
			return err
		}
		next.ID = cur.ID
		next.CreatedAt, next.StartedAt = dbTime(next.CreatedAt), dbTime(next.StartedAt)
		next.StoppedAt, next.LastActivity = dbTime(next.StoppedAt), dbTime(next.LastActivity)
		args, err := st.args(next)
		if err != nil {
			return fmt.Errorf("sqlstore: update workspace: %w", err)
		}
		if _, err := tx.ExecContext(ctx, st.db.q.UpdateWorkspace, args...); err != nil {
			if st.db.dialect.isUniqueViolation(err) {
				return workspace.ErrConflict
			}
			return fmt.Errorf("sqlstore: update workspace: %w", err)
		}
		out = next.Clone()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete implements workspace.Store.
func (st *workspaceStore) Delete(ctx context.Context, id string) error {
	if _, err := st.db.sql.ExecContext(ctx, st.db.q.DeleteWorkspace, id); err != nil {
		return fmt.Errorf("sqlstore: delete workspace: %w", err)
	}
	return nil
}

// Claim implements workspace.Store.
func (st *workspaceStore) Claim(ctx context.Context, orchestrator, userID string) (*workspace.Workspace, error) {
	var id string
	err := st.db.inTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, st.db.q.FindPoolWorkspace, orchestrator).Scan(&id); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return workspace.ErrNotFound
			}
			return err
		}
		res, err := tx.ExecContext(ctx, st.db.q.ClaimWorkspace, id, userID)
		if err != nil {
			if st.db.dialect.isUniqueViolation(err) {
				return workspace.ErrConflict // the user has a workspace already
			}
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return workspace.ErrNotFound
		}
		return nil
	})
	if errors.Is(err, workspace.ErrNotFound) || errors.Is(err, workspace.ErrConflict) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim workspace: %w", err)
	}
	return st.Get(ctx, id)
}
