package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// migration is one numbered schema change, migrations/<driver>/NNNN_name.sql.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the migrations for driver from fsys, in version
// order. Every file in the directory must be named NNNN_name.sql, and no
// two may share a version: a misnamed file is an error, not a change
// silently left out.
func loadMigrations(fsys fs.FS, driver string) ([]migration, error) {
	dir := "migrations/" + driver
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []migration
	seen := map[int]string{}
	for _, e := range entries {
		file := e.Name()
		if e.IsDir() {
			return nil, fmt.Errorf("%s/%s: a directory among the migrations", dir, file)
		}
		base, ok := strings.CutSuffix(file, ".sql")
		num, name, ok2 := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || !ok2 || err != nil || v <= 0 || name == "" {
			return nil, fmt.Errorf("%s/%s: a migration is named NNNN_name.sql", dir, file)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("%s: %s and %s have the same version", dir, other, file)
		}
		seen[v] = file
		text, err := fs.ReadFile(fsys, path.Join(dir, file))
		if err != nil {
			return nil, fmt.Errorf("read migration: %w", err)
		}
		out = append(out, migration{version: v, name: name, sql: string(text)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no migrations", dir)
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	return out, nil
}

// migrate applies, in order, the migrations the database has not recorded
// in schema_migrations, each in its own transaction with its record. Every
// transaction first takes the migration lock (PostgreSQL: an advisory
// lock; SQLite: the write lock BEGIN IMMEDIATE holds) and then re-reads
// what is applied, so gateways starting at once apply each migration once.
func (db *DB) migrate(ctx context.Context, migs []migration) error {
	applied := map[int]bool{}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		if err := db.lockMigrations(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, db.q.CreateMigrationsTable); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var err error
		applied, err = db.appliedMigrations(ctx, tx)
		return err
	})
	if err != nil {
		return err
	}
	latest := migs[len(migs)-1].version
	for v := range applied {
		if v > latest {
			db.log.Warn("the database has migrations this binary does not know; is an older gateway running against a newer schema?",
				"version", v, "known", latest)
			break
		}
	}
	for _, m := range migs {
		if applied[m.version] {
			continue
		}
		var ran bool
		err := db.inTx(ctx, func(tx *sql.Tx) error {
			if err := db.lockMigrations(ctx, tx); err != nil {
				return err
			}
			now, err := db.appliedMigrations(ctx, tx)
			if err != nil {
				return err
			}
			if now[m.version] {
				return nil // another gateway was first
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("%04d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.ExecContext(ctx, db.q.RecordMigration, m.version, m.name, db.dialect.timeArg(db.now())); err != nil {
				return fmt.Errorf("record %04d_%s: %w", m.version, m.name, err)
			}
			ran = true
			return nil
		})
		if err != nil {
			return err
		}
		if ran {
			db.log.Info("applied migration", "version", m.version, "name", m.name)
		}
	}
	return nil
}

func (db *DB) lockMigrations(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, db.q.LockMigrations); err != nil {
		return fmt.Errorf("lock migrations: %w", err)
	}
	return nil
}

func (db *DB) appliedMigrations(ctx context.Context, tx *sql.Tx) (map[int]bool, error) {
	rows, err := tx.QueryContext(ctx, db.q.AppliedMigrations)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	out := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		out[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return out, nil
}
