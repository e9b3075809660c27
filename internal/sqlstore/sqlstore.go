// Package sqlstore keeps codehub's shared state (users, invites, sessions)
// in SQL: SQLite for one gateway, PostgreSQL for several gateways sharing
// one database.
//
// All SQL lives in embedded .sql files: the schema in numbered migrations
// (migrations/<driver>/NNNN_name.sql), applied in order when the database
// is opened, and every query, by name, in queries/<driver>.sql. Go code
// refers to a query by a field of the queries struct; a query missing from
// the file fails Open, never a request.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Drivers accepted in Config.Driver.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

//go:embed migrations queries
var embedded embed.FS

// Config says which database to open.
type Config struct {
	// Driver is DriverSQLite or DriverPostgres.
	Driver string

	// Path is the SQLite database file (DriverSQLite). It is created with
	// mode 0600, and its directory with 0700, when missing.
	Path string

	// DSN is the PostgreSQL connection string (DriverPostgres), as a URL
	// ("postgres://user@host/db?sslmode=verify-full") or key=value pairs.
	DSN string
	// PasswordFunc, when set, supplies the PostgreSQL password for every
	// new connection, overriding any in DSN: rotating credentials (Vault
	// database secrets) reach new connections without a restart. Pair it
	// with ConnMaxLifetime shorter than the credentials' lease.
	PasswordFunc func(ctx context.Context) (string, error)
	// CredentialsFunc, when set, supplies both the PostgreSQL user and
	// password for every new connection, overriding DSN's: Vault's
	// database secrets engine issues a new user with every lease.
	// Connections already open keep theirs, so pair it with a
	// ConnMaxLifetime that retires them before their credentials end.
	// Not together with PasswordFunc.
	CredentialsFunc func(ctx context.Context) (user, password string, err error)

	// MaxOpenConns caps open connections; 0 means no limit.
	MaxOpenConns int
	// ConnMaxLifetime closes connections older than this; 0 keeps them.
	ConnMaxLifetime time.Duration

	// Now is the clock behind every expiry decision of the session store
	// and the migrations' timestamps; time.Now when nil.
	Now func() time.Time

	// queries and migrations replace the embedded files (tests only).
	queries, migrations fs.FS
}

// DB is an open, migrated database. It is safe for concurrent use.
type DB struct {
	sql     *sql.DB
	dialect dialect
	q       *queries
	now     func() time.Time
	log     hclog.Logger
}

// Open connects to the database cfg names, checks that it answers, and
// applies the migrations it lacks. Several gateways may Open one database
// at once: migrations are serialized between them.
func Open(ctx context.Context, cfg Config, log hclog.Logger) (*DB, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("sqlstore")
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Driver != DriverSQLite && cfg.Driver != DriverPostgres {
		return nil, fmt.Errorf("sqlstore: driver must be %q or %q, got %q", DriverSQLite, DriverPostgres, cfg.Driver)
	}
	if cfg.CredentialsFunc != nil && (cfg.PasswordFunc != nil || cfg.Driver != DriverPostgres) {
		return nil, errors.New("sqlstore: CredentialsFunc is for postgres, and not together with PasswordFunc")
	}
	fsys := fs.FS(embedded)
	qfs, mfs := cfg.queries, cfg.migrations
	if qfs == nil {
		qfs = fsys
	}
	if mfs == nil {
		mfs = fsys
	}

	// The embedded files first: a broken build fails before touching the
	// database.
	q, err := loadQueries(qfs, cfg.Driver)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	migs, err := loadMigrations(mfs, cfg.Driver)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}

	var (
		d   dialect
		sdb *sql.DB
	)
	switch cfg.Driver {
	case DriverSQLite:
		d = sqliteDialect{}
		sdb, err = openSQLite(cfg, log)
	case DriverPostgres:
		d = postgresDialect{}
		if cfg.CredentialsFunc != nil {
			sdb, err = openPostgresCredentials(cfg)
		} else {
			sdb, err = openPostgres(cfg)
		}
	}
	if err != nil {
		return nil, err
	}
	if cfg.MaxOpenConns > 0 {
		sdb.SetMaxOpenConns(cfg.MaxOpenConns)
	}
	if cfg.ConnMaxLifetime > 0 {
		sdb.SetConnMaxLifetime(cfg.ConnMaxLifetime)
	}

	db := &DB{sql: sdb, dialect: d, q: q, now: cfg.Now, log: log}
	fail := func(err error) (*DB, error) {
		sdb.Close()
		return nil, err
	}
	if err := sdb.PingContext(ctx); err != nil {
		return fail(fmt.Errorf("sqlstore: connect to %s: %w", cfg.Driver, err))
	}
	if err := db.migrate(ctx, migs); err != nil {
		return fail(fmt.Errorf("sqlstore: migrate: %w", err))
	}
	return db, nil
}

// openPostgresCredentials is openPostgres with the user and password of
// every new connection from cfg.CredentialsFunc.
func openPostgresCredentials(cfg Config) (*sql.DB, error) {
	if cfg.DSN == "" {
		return nil, errors.New("sqlstore: postgres needs a DSN")
	}
	pc, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx's parse errors leave the password out.
		return nil, fmt.Errorf("sqlstore: postgres DSN: %w", err)
	}
	creds := cfg.CredentialsFunc
	return stdlib.OpenDB(*pc, stdlib.OptionBeforeConnect(func(ctx context.Context, cc *pgx.ConnConfig) error {
		user, password, err := creds(ctx)
		if err != nil {
			return fmt.Errorf("database credentials: %w", err)
		}
		cc.User, cc.Password = user, password
		return nil
	})), nil
}

// Users returns the user store kept in this database.
func (db *DB) Users() user.Store { return &userStore{db: db} }

// Sessions returns the "database" session store kept in this database;
// it decides expiry by Config.Now.
func (db *DB) Sessions() session.Store { return &sessionStore{db: db} }

// Close closes every connection.
func (db *DB) Close() error { return db.sql.Close() }

// Ping checks that the database answers (for health checks).
func (db *DB) Ping(ctx context.Context) error {
	if err := db.sql.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlstore: ping: %w", err)
	}
	return nil
}

// Driver returns DriverSQLite or DriverPostgres.
func (db *DB) Driver() string { return db.dialect.name() }

// SQL returns the connection pool, for packages that keep their own tables
// in this database.
func (db *DB) SQL() *sql.DB { return db.sql }

// inTx runs fn in a read-write transaction and commits it if fn returns
// nil. On SQLite it begins IMMEDIATE: it holds the write lock from the
// start, so read-modify-write transactions serialize instead of
// deadlocking. On PostgreSQL, rows fn reads to change must be locked with
// FOR UPDATE.
func (db *DB) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	return db.tx(ctx, nil, fn)
}

// inReadTx runs fn in a read-only transaction, for several reads that must
// agree (a page and its total).
func (db *DB) inReadTx(ctx context.Context, fn func(*sql.Tx) error) error {
	return db.tx(ctx, &sql.TxOptions{ReadOnly: true}, fn)
}

func (db *DB) tx(ctx context.Context, opts *sql.TxOptions, fn func(*sql.Tx) error) (err error) {
	tx, err := db.sql.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin tx: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			db.log.Warn("rollback failed", "error", rerr)
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit tx: %w", err)
	}
	return nil
}
