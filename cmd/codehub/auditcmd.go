package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/sqlstore"
)

const auditUsage = `usage: codehub audit verify [FILE] [--database] [--allow-partial] [--config FILE]

Checks the hash chain of the audit log: a removed, altered or reordered
entry is reported with its place. FILE is the audit log file (its rotated
files are checked too, in order); without FILE, the configured audit.file
and, in multi-user mode, the database log are checked.`

func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		return usageError{auditUsage}
	}
	fs := flag.NewFlagSet("codehub audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "configuration file")
	withDB := fs.Bool("database", false, "check the database log (multi-user mode)")
	partial := fs.Bool("allow-partial", false, "accept a chain whose first entries were rotated away and deleted")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return usageError{err.Error()}
	}
	if len(pos) > 1 {
		return usageError{auditUsage}
	}
	if *configFile == "" {
		*configFile = firstNonEmpty(getenv("CODEHUB_CONFIG"), getenv("CODE_SERVER_CONFIG"))
	}
	cfg, _, err := multiUserSettings(*configFile, getenv, nil)
	if err != nil {
		return err
	}
	var failed bool
	file := cfg.Audit.File
	if len(pos) == 1 {
		file = pos[0]
	}
	if file != "" && (len(pos) == 1 || !*withDB) {
		files, err := audit.LogFiles(file)
		if err != nil {
			return err
		}
		if len(files) == 0 {
			return fmt.Errorf("%s: no audit log there", file)
		}
		n, first, err := audit.VerifyFiles(files)
		switch {
		case err != nil:
			fmt.Fprintf(stdout, "FAILED %v\n", err)
			failed = true
		case n > 0 && first != 1 && !*partial:
			fmt.Fprintf(stdout, "FAILED %s: the chain starts at entry %d: earlier entries are missing (add --allow-partial if rotated files were deleted on purpose)\n", files[0], first)
			failed = true
		default:
			fmt.Fprintf(stdout, "ok %s: %d entries in %d file(s), chain intact (entries %d-%d)\n", file, n, len(files), first, first+int64(n)-1)
		}
	}
	if (*withDB || len(pos) == 0) && cfg.DeploymentMode == config.ModeMulti && cfg.MultiUser.Features.AuditLogging {
		db, err := sqlstore.Open(ctx, dbConfig(&cfg.MultiUser.Auth.Database), nil)
		if err != nil {
			return fmt.Errorf("user database: %w", err)
		}
		defer db.Close()
		n, err := db.AuditLog().Verify(ctx)
		if err != nil {
			fmt.Fprintf(stdout, "FAILED database: %v\n", err)
			failed = true
		} else {
			fmt.Fprintf(stdout, "ok database: %d entries, chain intact\n", n)
		}
	}
	if failed {
		return errSilent
	}
	return nil
}

// recordConfigChange records a config.changed event when the effective
// configuration differs from the one the last start used.
func (a *app) recordConfigChange(file string) {
	b, err := json.Marshal(redacted(a.cfg))
	if err != nil {
		return
	}
	sum := sha256.Sum256(b)
	hash := hex.EncodeToString(sum[:])
	mark := filepath.Join(a.cfg.DataDir, "config.sha256")
	prev, err := os.ReadFile(mark)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return
	}
	if strings.TrimSpace(string(prev)) == hash {
		return
	}
	a.audit.Record(audit.Event{EventType: audit.ConfigChanged, Metadata: map[string]any{
		"file": file, "hash": hash, "previousHash": strings.TrimSpace(string(prev)), "mode": a.cfg.DeploymentMode,
	}})
	_ = os.WriteFile(mark, []byte(hash+"\n"), 0o600)
}

// redacted is the configuration without its secrets.
func redacted(c *config.Config) config.Config {
	r := *c
	hide := func(s *string) {
		if *s != "" {
			*s = "(set)"
		}
	}
	hide(&r.Password)
	hide(&r.HashedPassword)
	hide(&r.MultiUser.Auth.Database.Password)
	hide(&r.MultiUser.Auth.Database.URL)
	hide(&r.MultiUser.Auth.Session.Password)
	hide(&r.MultiUser.Auth.Session.URL)
	return r
}
