package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/audit/vaultkey"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/vault"
)

// openAudit starts the audit log with its configured sinks, plus the
// database's when db is set, keyed with the audit keys (Vault's when
// vault.audit is enabled, vc then being the Vault client).
func (a *app) openAudit(ctx context.Context, vc *vault.Client, db *sqlstore.AuditLog) error {
	cfg := a.cfg.Audit
	if db == nil && cfg.File == "" && !cfg.Stdout {
		return nil
	}
	keys, err := a.auditKeys(ctx, vc, true)
	if err != nil {
		return err
	}
	stores := []audit.CheckpointStore{audit.OpenStateFile(auditStateFile(a.cfg.DataDir, cfg.CheckpointFile))}
	var sinks []audit.Sink
	if db != nil {
		db = db.WithKeys(keys)
		sinks, stores = append(sinks, db), append(stores, db)
	}
	if cfg.File != "" {
		f, err := audit.OpenFile(audit.FileConfig{Path: cfg.File, MaxBytes: int64(cfg.MaxFileMB) << 20, MaxBackups: cfg.MaxBackups, Keys: keys})
		if err != nil {
			return fmt.Errorf("%s: audit.file: %w", a.cfg.SourceOf("audit.file"), err)
		}
		sinks = append(sinks, f)
	}
	if cfg.Stdout {
		sinks = append(sinks, audit.NewWriterSink(os.Stdout, keys))
	}
	l := audit.NewLogger(audit.LoggerConfig{
		Log: a.log.Named("audit"), CheckpointEntries: cfg.CheckpointEntries, CheckpointInterval: cfg.CheckpointInterval.D(),
		Checkpoints: stores,
	}, sinks...)
	a.audit, a.auditLog = namingRecorder{next: l, a: a}, l
	// Closed first (closers run last to first): the database is still open.
	a.closers = append(a.closers, l.Close)
	return nil
}

// auditKeys opens the audit chain's keys: the Vault secret when
// vault.audit is enabled, the key file otherwise. create makes them if
// there are none yet (the gateway, not verify).
func (a *app) auditKeys(ctx context.Context, vc *vault.Client, create bool) (audit.Keys, error) {
	v := a.cfg.Vault.Audit
	if v.Enabled {
		if vc == nil {
			return nil, fmt.Errorf("%s: vault.audit is enabled but no Vault address is set (vault.address or VAULT_ADDR)", a.cfg.SourceOf("vault.audit.enabled"))
		}
		k, err := vaultkey.Open(ctx, vaultkey.Config{Client: vc.API(), Mount: v.Mount, Path: v.Path, Create: create, Log: a.log.Named("audit-keys")})
		if err != nil {
			return nil, fmt.Errorf("audit keys: %w", err)
		}
		return k, nil
	}
	k, err := audit.OpenKeyFile(audit.KeyFileConfig{Path: auditKeyFile(a.cfg.DataDir, a.cfg.Audit.KeyFile), Create: create})
	if err != nil {
		return nil, fmt.Errorf("%s: audit.key-file: %w", a.cfg.SourceOf("audit.key-file"), err)
	}
	return k, nil
}

// auditKeyFile is audit.key-file, by default in the data directory.
func auditKeyFile(dataDir, file string) string {
	if file != "" {
		return file
	}
	return filepath.Join(dataDir, "audit-key.json")
}

// auditStateFile is audit.checkpoint-file, by default in the data
// directory.
func auditStateFile(dataDir, file string) string {
	if file != "" {
		return file
	}
	return filepath.Join(dataDir, "audit-checkpoints.json")
}
