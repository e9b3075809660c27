package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/auth"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/lockout"
	"github.com/codehub-dev/codehub/internal/metrics"
	"github.com/codehub-dev/codehub/internal/password"
	"github.com/codehub-dev/codehub/internal/revocation"
	revpostgres "github.com/codehub-dev/codehub/internal/revocation/postgres"
	revredis "github.com/codehub-dev/codehub/internal/revocation/redis"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/session/memory"
	sessredis "github.com/codehub-dev/codehub/internal/session/redis"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/token"
	"github.com/codehub-dev/codehub/internal/token/filekeys"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/codehub-dev/codehub/internal/vault"
	"github.com/hashicorp/go-hclog"
	goredis "github.com/redis/go-redis/v9"
)

// app is the wired core that the gateway and the admin commands share:
// configuration, logging, metrics and who may sign in.
type app struct {
	cfg     *config.Config
	log     hclog.Logger
	metrics *metrics.Metrics
	// id is nil when auth is "none" (single-user mode).
	id *identity.Service
	db *sqlstore.DB // multi-user mode

	// onRevoke is called with sessions that ended, on every gateway; the
	// gateway sets it to close their WebSockets.
	onRevoke func([]string)
	// audit records security events (a no-op when audit logging is off);
	// auditLog is the logger behind it, if any.
	audit    audit.Recorder
	auditLog *audit.Logger

	generatedPassword, passwordFile string // single-user mode
	closers                         []func() error
}

// Close releases databases and connections.
func (a *app) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	return errors.Join(errs...)
}

// openApp loads the configuration and wires identity for its mode.
func openApp(ctx context.Context, file string, getenv func(string) string, flags []config.Setting, stdout, stderr io.Writer) (*app, error) {
	cfg, err := config.Load(config.LoadOptions{File: file, Getenv: getenv, Flags: flags})
	if err != nil {
		return nil, err
	}
	applyFeatures(cfg)
	a := &app{cfg: cfg, log: newLogger(cfg, stderr), metrics: metrics.New(), audit: audit.Nop{}}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if cfg.DeploymentMode == config.ModeMulti {
		err = a.openMulti(ctx, getenv)
	} else {
		err = a.openSingle(ctx, getenv)
	}
	if err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *app) revoked(ids []string) {
	if a.onRevoke != nil {
		a.onRevoke(ids)
	}
}

func (a *app) openSingle(ctx context.Context, getenv func(string) string) error {
	cfg := a.cfg
	if cfg.Auth != config.AuthPassword {
		return nil
	}
	authn, generated, file, err := singleAuthenticator(cfg)
	if err != nil {
		return err
	}
	a.generatedPassword, a.passwordFile = generated, file
	var vc *vault.Client
	if cfg.Vault.Audit.Enabled {
		if vc, err = a.openVault(ctx, getenv); err != nil {
			return err
		}
	}
	if err := a.openAudit(ctx, vc, nil); err != nil {
		return err
	}
	a.id = identity.New(identity.Config{SessionTTL: cfg.Session.TTL.D()}, identity.Deps{
		Authn: authn, Sessions: memory.New(nil), OnRevoke: a.revoked, Audit: a.audit,
	}, a.log.Named("identity"))
	return nil
}

// singleAuthenticator builds the one-password authenticator. With no
// password configured it generates one and keeps it in the data directory,
// so that it survives restarts.
func singleAuthenticator(cfg *config.Config) (a auth.Authenticator, generated, file string, err error) {
	switch {
	case cfg.HashedPassword != "":
		a, err = auth.NewSingle(cfg.HashedPassword)
		return a, "", "", err
	case cfg.Password != "":
		a, err = auth.NewSinglePassword(cfg.Password, password.DefaultParams)
		return a, "", "", err
	}
	file = filepath.Join(cfg.DataDir, "password")
	b, err := os.ReadFile(file)
	pw := strings.TrimSpace(string(b))
	if err != nil || pw == "" {
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, "", "", fmt.Errorf("read generated password: %w", err)
		}
		pw, err = randomPassword()
		if err != nil {
			return nil, "", "", err
		}
		if err := os.WriteFile(file, []byte(pw+"\n"), 0o600); err != nil {
			return nil, "", "", fmt.Errorf("keep generated password: %w", err)
		}
	}
	a, err = auth.NewSinglePassword(pw, password.DefaultParams)
	return a, pw, file, err
}

func randomPassword() (string, error) {
	buf := make([]byte, 18)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(buf), nil
}

// openMulti opens the user database, the session store, the revocation
// bus and the token keys.
func (a *app) openMulti(ctx context.Context, getenv func(string) string) error {
	cfg, mu := a.cfg, &a.cfg.MultiUser.Auth
	log := a.log

	vc, err := a.openVault(ctx, getenv)
	if err != nil {
		return err
	}
	dbc := dbConfig(&mu.Database)
	var dbCreds *vault.DBCredentials
	if vc != nil && cfg.Vault.Database.Enabled {
		if mu.Database.Type != "postgres" {
			return fmt.Errorf("%s: vault.database: Vault issues PostgreSQL credentials; the user database is %s", cfg.SourceOf("vault.database.enabled"), mu.Database.Type)
		}
		dbCreds, err = vault.NewDBCredentials(ctx, vc, vault.DBConfig{Mount: cfg.Vault.Database.Mount, Role: cfg.Vault.Database.Role,
			ConnMaxLifetime: 10 * time.Minute}, log.Named("vault-db"))
		if err != nil {
			return fmt.Errorf("database credentials from Vault: %w", err)
		}
		a.closers = append(a.closers, func() error { dbCreds.Close(); return nil })
		dbc.CredentialsFunc, dbc.ConnMaxLifetime = dbCreds.Credentials, dbCreds.ConnMaxLifetime()
	}

	db, err := sqlstore.Open(ctx, dbc, log.Named("db"))
	if err != nil {
		return fmt.Errorf("user database (%s): %w", mu.Database.Type, err)
	}
	a.db = db
	a.closers = append(a.closers, db.Close)

	var (
		sessions session.Store
		bus      revocation.Bus
	)
	switch mu.Session.Store {
	case "memory":
		sessions = memory.New(nil)
	case "database":
		sessions = db.Sessions()
	case "redis":
		rdb, err := redisClient(&mu.Session)
		if err != nil {
			return err
		}
		a.closers = append(a.closers, rdb.Close)
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = rdb.Ping(pctx).Err()
		cancel()
		if err != nil {
			return fmt.Errorf("session store: Redis at %s: %w", redisAddr(&mu.Session), err)
		}
		sessions = sessredis.New(sessredis.Config{Client: rdb, Prefix: mu.Session.Prefix}, log.Named("sessions"))
		bus = revredis.New(revredis.Config{Client: rdb, Prefix: mu.Session.Prefix}, log.Named("revocation"))
	}
	if bus == nil {
		// LISTEN holds one connection for good: with credentials that
		// Vault rotates, the database's own polled table is the bus.
		if db.Driver() == sqlstore.DriverPostgres && dbCreds == nil {
			pg, err := revpostgres.New(revpostgres.Config{DSN: postgresDSN(&mu.Database)}, log.Named("revocation"))
			if err != nil {
				return fmt.Errorf("revocation bus: %w", err)
			}
			a.closers = append(a.closers, func() error { pg.Close(); return nil })
			bus = pg
		} else {
			bus = db.RevocationBus(0)
		}
	}

	retain := max(24*time.Hour, 2*mu.Tokens.AccessTTL.D())
	keysFile := mu.Tokens.KeysFile
	if keysFile == "" {
		keysFile = filepath.Join(cfg.DataDir, "jwt-keys.json")
	}
	keys, err := a.keySource(vc, func() (token.KeySource, error) {
		k, err := filekeys.Open(filekeys.Config{Path: keysFile, RotateEvery: mu.Tokens.RotateEvery.D(), Retain: retain})
		if err != nil {
			return nil, fmt.Errorf("token keys: %w", err)
		}
		return k, nil
	})
	if err != nil {
		return err
	}
	tokens, err := token.NewService(token.Config{
		Issuer: mu.Tokens.Issuer, Audience: mu.Tokens.Audience, AccessTTL: mu.Tokens.AccessTTL.D(),
	}, keys)
	if err != nil {
		return fmt.Errorf("tokens: %w", err)
	}

	pw := &mu.Password
	hasher, err := password.NewHasher(password.Params{
		Memory: uint32(pw.MemoryKiB), Time: uint32(pw.Iterations), Threads: uint8(pw.Parallelism),
	}, pw.MaxConcurrent)
	if err != nil {
		return err
	}
	lo := &mu.Lockout
	guard, err := lockout.New(ctx, lockout.Config{Store: db.Lockout(), DeviceTTL: lo.DeviceCookieTTL.D(), Policy: lockout.Policy{
		MaxFailures: lo.MaxFailures, BaseLock: lo.Duration.D(), MaxLock: lo.MaxDuration.D(), ResetAfter: lo.ResetAfter.D(),
		NameClients: lo.GlobalAddresses, NameWindow: lo.GlobalWindow.D(), NameLock: lo.GlobalDuration.D(),
	}})
	if err != nil {
		return err
	}
	authn := auth.NewDatabase(auth.DatabaseConfig{Users: db.Users(), Hasher: hasher, Lockout: guard, Log: log.Named("auth")})

	if cfg.MultiUser.Features.AuditLogging {
		if err := a.openAudit(ctx, vc, db.AuditLog()); err != nil {
			return err
		}
	}
	limits := &cfg.MultiUser.Limits
	a.id = identity.New(identity.Config{
		SessionTTL: mu.Session.TTL.D(), IdleTimeout: sessionIdleTimeout(cfg),
		MaxSessionsPerUser: limits.MaxSessionsPerUser, OnLimit: mu.Session.OnLimit,
		Registration: mu.Registration, MinPasswordLength: pw.MinLength, RequireMixed: pw.RequireMixed,
		CleanupInterval: sessionCleanupInterval(cfg), DisableCleanup: !cfg.MultiUser.Scaling.AutoCleanup.Enabled,
	}, identity.Deps{
		Authn: authn, Users: db.Users(), Sessions: sessions, Tokens: tokens, Bus: bus, Hasher: hasher,
		OnRevoke: a.revoked, Audit: a.audit, Lockout: guard,
		OnLocked:  func(scope string) { a.metrics.SignInLocks.WithLabelValues(scope).Inc() },
		OnEvicted: func(n int) { a.metrics.SessionsEvicted.Add(float64(n)) },
	}, log.Named("identity"))
	return nil
}

// dbConfig turns the database settings into the store's.
func dbConfig(d *config.Database) sqlstore.Config {
	if d.Type == "postgres" {
		return sqlstore.Config{
			Driver: sqlstore.DriverPostgres, DSN: postgresDSN(d),
			MaxOpenConns: d.MaxOpenConns, ConnMaxLifetime: 30 * time.Minute,
		}
	}
	return sqlstore.Config{Driver: sqlstore.DriverSQLite, Path: d.Path}
}

// postgresDSN is the URL, or a key=value string built from the parts.
func postgresDSN(d *config.Database) string {
	if d.URL != "" {
		return d.URL
	}
	quote := func(v string) string {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	parts := []string{
		"host=" + quote(d.Host), "port=" + strconv.Itoa(d.Port), "dbname=" + quote(d.Database),
		"user=" + quote(d.Username), "sslmode=" + d.SSLMode, "application_name=codehub",
	}
	if d.Password != "" {
		parts = append(parts, "password="+quote(d.Password))
	}
	return strings.Join(parts, " ")
}

func redisAddr(s *config.SessionStore) string {
	if s.URL != "" {
		return s.URL
	}
	return net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
}

func redisClient(s *config.SessionStore) (goredis.UniversalClient, error) {
	if s.URL != "" {
		opts, err := goredis.ParseURL(s.URL)
		if err != nil {
			return nil, fmt.Errorf("session store: %w", err)
		}
		return goredis.NewClient(opts), nil
	}
	return goredis.NewUniversalClient(&goredis.UniversalOptions{
		Addrs: []string{redisAddr(s)}, Password: s.Password, DB: s.DB,
	}), nil
}

// ensureFirstAdmin creates an administrator when the user database is
// empty, with a generated password that is printed once.
func (a *app) ensureFirstAdmin(ctx context.Context) (username, pw string, err error) {
	n, err := a.id.CountUsers(ctx)
	if err != nil || n > 0 {
		return "", "", err
	}
	pw, err = randomPassword()
	if err != nil {
		return "", "", err
	}
	u, err := a.id.CreateUser(ctx, identity.NewUser{Username: "admin", Email: "admin@codehub.localhost", Password: pw, Role: user.RoleAdmin})
	if identity.CodeOf(err) == identity.CodeConflict {
		return "", "", nil // another gateway made it first
	}
	if err != nil {
		return "", "", fmt.Errorf("create the first administrator: %w", err)
	}
	a.log.Info("created the first administrator", "username", u.Username)
	return u.Username, pw, nil
}

// sessionCleanupInterval is how often expired sessions are deleted:
// session.cleanup-interval, or the design's
// scaling.auto-cleanup.expired-session-cleanup-interval when only that one
// is set.
func sessionCleanupInterval(cfg *config.Config) time.Duration {
	if cfg.SourceOf("multi-user.auth.session.cleanup-interval").String() == "default" &&
		cfg.SourceOf("multi-user.scaling.auto-cleanup.expired-session-cleanup-interval").String() != "default" {
		return cfg.MultiUser.Scaling.AutoCleanup.ExpiredSessionCleanupInterval.D()
	}
	return cfg.MultiUser.Auth.Session.CleanupInterval.D()
}
