package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect is what differs between the databases beyond the text of the
// queries: how a time is passed in, and how a unique violation looks.
type dialect interface {
	name() string
	// timeArg is the query argument for t; the zero time is NULL.
	timeArg(t time.Time) any
	// isUniqueViolation reports whether err is a unique (or primary key)
	// constraint violation.
	isUniqueViolation(err error) bool
}

// sqliteBusyTimeout is how long a statement waits for another
// connection's write lock before failing with SQLITE_BUSY.
const sqliteBusyTimeout = 10 * time.Second

type sqliteDialect struct{}

func (sqliteDialect) name() string { return DriverSQLite }

// timeArg stores unix microseconds: exact, sortable, and compared as
// integers by the queries.
func (sqliteDialect) timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func (sqliteDialect) isUniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// openSQLite creates the database file (0600, in a 0700 directory) if
// needed, so SQLite never creates it with the umask's looser mode (its
// -wal and -shm files copy the database file's mode).
func openSQLite(cfg Config, log hclog.Logger) (*sql.DB, error) {
	if cfg.Path == "" {
		return nil, errors.New("sqlstore: sqlite needs a Path")
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlstore: create database directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: create database file: %w", err)
	}
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("database file is readable by others; chmod 600 it", "path", path, "mode", fi.Mode().Perm())
	}

	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(sqliteBusyTimeout.Milliseconds()))
	q.Set("_journal_mode", "WAL")
	// Under WAL, NORMAL survives a crash of the gateway intact; a power
	// loss may lose the last commits, never consistency.
	q.Set("_synchronous", "NORMAL")
	q.Set("_foreign_keys", "1")
	q.Set("_txlock", "immediate")
	// A file: URI escapes '?' and '#' in the path, which a plain name
	// would mistake for the start of the options.
	dsn := (&url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open sqlite: %w", err)
	}
	return db, nil
}

type postgresDialect struct{}

func (postgresDialect) name() string { return DriverPostgres }

// timeArg truncates to the microsecond, PostgreSQL's precision: it would
// round instead, moving a time up to half a microsecond into the future.
func (postgresDialect) timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Truncate(time.Microsecond)
}

// pgUniqueViolation is SQLSTATE unique_violation.
const pgUniqueViolation = "23505"

func (postgresDialect) isUniqueViolation(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == pgUniqueViolation
}

func openPostgres(cfg Config) (*sql.DB, error) {
	if cfg.DSN == "" {
		return nil, errors.New("sqlstore: postgres needs a DSN")
	}
	pc, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx's parse errors leave the password out.
		return nil, fmt.Errorf("sqlstore: postgres DSN: %w", err)
	}
	var opts []stdlib.OptionOpenDB
	if pw := cfg.PasswordFunc; pw != nil {
		opts = append(opts, stdlib.OptionBeforeConnect(func(ctx context.Context, cc *pgx.ConnConfig) error {
			p, err := pw(ctx)
			if err != nil {
				return fmt.Errorf("database password: %w", err)
			}
			cc.Password = p
			return nil
		}))
	}
	return stdlib.OpenDB(*pc, opts...), nil
}
