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
	"strconv"
	"strings"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/vault"
)

const auditUsage = `usage: codehub audit verify [FILE] [--database] [--allow-partial] [--allow-legacy] [--config FILE]
       codehub audit rotate-key [--config FILE]

verify checks the audit logs: each entry against its HMAC, made with the
audit key the gateway keeps outside the log (audit.key-file, or Vault with
vault.audit), so that an entry removed, altered, inserted or moved is
reported with its place; each log against its checkpoints kept outside it,
so that a log whose tail was cut off is reported; and the file against the
database, naming the entries either lacks. FILE is the audit log file (its
rotated files are checked too, in order); without FILE, the configured
audit.file and, in multi-user mode, the database log are checked and
compared. It exits 1 when anything is wrong.

--allow-partial accepts a chain whose first entries were rotated away and
deleted; --allow-legacy accepts entries written before keyed chains, which
anyone could have rewritten.

rotate-key makes a new audit key; the keys before keep verifying the
entries they made.`

// maxAuditListed bounds the entries and problems verify prints per list.
const maxAuditListed = 50

func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "verify" && args[0] != "rotate-key") {
		return usageError{auditUsage}
	}
	name := "codehub audit " + args[0]
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "configuration file")
	withDB := fs.Bool("database", false, "check the database log (multi-user mode), and compare it with FILE")
	partial := fs.Bool("allow-partial", false, "accept a chain whose first entries were rotated away and deleted")
	legacy := fs.Bool("allow-legacy", false, "accept entries written before keyed chains")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return usageError{err.Error()}
	}
	if len(pos) > 1 || (args[0] == "rotate-key" && len(pos) > 0) {
		return usageError{auditUsage}
	}
	if *configFile == "" {
		*configFile = firstNonEmpty(getenv("CODEHUB_CONFIG"), getenv("CODE_SERVER_CONFIG"))
	}
	if args[0] == "rotate-key" {
		return runAuditRotateKey(ctx, *configFile, getenv, stdout, stderr)
	}
	cfg, _, err := multiUserSettings(*configFile, getenv, nil)
	if err != nil {
		return err
	}
	a := &app{cfg: cfg, log: newLogger(cfg, stderr)}
	defer a.Close()
	v := &verifyPrinter{w: stdout, allowPartial: *partial, allowLegacy: *legacy}

	var vc *vault.Client
	if cfg.Vault.Audit.Enabled {
		if vc, err = a.openVault(ctx, getenv); err != nil {
			return err
		}
	}
	keys, keysErr := a.auditKeys(ctx, vc, false)
	if keysErr != nil {
		v.fail("audit key", "%v", keysErr)
		keys = nil
	}
	state := audit.OpenStateFile(auditStateFile(cfg.DataDir, cfg.Audit.CheckpointFile))

	file := cfg.Audit.File
	if len(pos) == 1 {
		file = pos[0]
	}
	checkFile := file != "" && (len(pos) == 1 || !*withDB)
	checkDB := (*withDB || len(pos) == 0) && cfg.DeploymentMode == config.ModeMulti && cfg.MultiUser.Features.AuditLogging
	var dbLog *sqlstore.AuditLog
	if checkDB {
		db, err := sqlstore.Open(ctx, dbConfig(&cfg.MultiUser.Auth.Database), nil)
		if err != nil {
			return fmt.Errorf("user database: %w", err)
		}
		defer db.Close()
		dbLog = db.AuditLog()
	}
	opts := audit.VerifyOptions{Keys: keys, KeysErr: keysErr, Collect: checkFile && checkDB}

	var fileReport *audit.Report
	since := time.Now()
	if checkFile {
		files, err := audit.LogFiles(file)
		if err != nil {
			return err
		}
		if len(files) == 0 {
			return fmt.Errorf("%s: no audit log there", file)
		}
		fo := opts
		fo.Path = audit.AbsPath(file)
		fo.Checkpoints = []audit.CheckpointStore{state}
		if dbLog != nil {
			fo.Checkpoints = append(fo.Checkpoints, dbLog)
		}
		if fileReport, err = audit.VerifyFiles(ctx, files, fo); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		v.report(file, fileReport)
	}
	if checkDB {
		do := opts
		do.Checkpoints = []audit.CheckpointStore{state}
		r, err := dbLog.Verify(ctx, do)
		if err != nil {
			return fmt.Errorf("database audit log: %w", err)
		}
		v.report("database", r)
		if fileReport != nil {
			v.compare(file, audit.Compare(fileReport, r, since))
		}
	}
	if v.failed {
		return errSilent
	}
	return nil
}

// verifyPrinter prints what verify finds.
type verifyPrinter struct {
	w                         io.Writer
	allowPartial, allowLegacy bool
	failed                    bool
}

func (v *verifyPrinter) fail(where, format string, args ...any) {
	v.failed = true
	fmt.Fprintf(v.w, "FAILED %s: %s\n", where, fmt.Sprintf(format, args...))
}

// report prints one log's report.
func (v *verifyPrinter) report(name string, r *audit.Report) {
	for i, p := range r.Problems {
		if i == maxAuditListed {
			fmt.Fprintf(v.w, "FAILED %s: and %d more problems\n", name, len(r.Problems)-maxAuditListed+r.Dropped)
			break
		}
		v.fail(p.Where, "%s", p.Reason)
	}
	if r.Dropped > 0 && len(r.Problems) <= maxAuditListed {
		v.fail(name, "and %d more problems", r.Dropped)
	}
	if r.Partial() && !v.allowPartial {
		v.fail(name, "the chain starts at entry %d: earlier entries are missing (add --allow-partial if rotated files were deleted on purpose)", r.First)
	}
	if r.Legacy > 0 {
		msg := fmt.Sprintf("legacy, unkeyed: entries %d-%d (%d) were written before keyed chains; their hashes can be recomputed by anyone, so they show damage but prove nothing against a deliberate edit",
			r.LegacyFirst, r.LegacyLast, r.Legacy)
		if v.allowLegacy {
			fmt.Fprintf(v.w, "LEGACY %s: %s (accepted with --allow-legacy)\n", name, msg)
		} else {
			v.failed = true
			fmt.Fprintf(v.w, "LEGACY %s: %s (add --allow-legacy to accept them)\n", name, msg)
		}
	}
	if !r.OK() {
		return
	}
	where := ""
	if r.Files > 0 {
		where = fmt.Sprintf(" in %d file(s)", r.Files)
	}
	kind := "keyed chain intact"
	if r.Legacy == r.Count {
		kind = "unkeyed chain intact"
	} else if r.Legacy > 0 {
		kind = "chain intact, keyed from entry " + strconv.FormatInt(r.LegacyLast+1, 10)
	}
	fmt.Fprintf(v.w, "ok %s: %d entries%s, %s (entries %d-%d)", name, r.Count, where, kind, r.First, r.First+int64(r.Count)-1)
	if cp := r.LastCheckpoint; cp != nil {
		fmt.Fprintf(v.w, "; last checkpoint entry %d, %s (in %s)", cp.Seq, cp.Time.UTC().Format(time.RFC3339), r.CheckpointFrom)
		switch {
		case r.Uncovered == 1:
			fmt.Fprint(v.w, "; 1 entry after it is not covered by a checkpoint (entries removed after the last checkpoint do not show)")
		case r.Uncovered > 1:
			fmt.Fprintf(v.w, "; %d entries after it are not covered by a checkpoint (entries removed after the last checkpoint do not show)", r.Uncovered)
		}
	}
	fmt.Fprintln(v.w)
}

// compare prints what the file and the database lack.
func (v *verifyPrinter) compare(file string, c audit.Comparison) {
	list := func(refs []audit.EntryRef) {
		for i, r := range refs {
			if i == maxAuditListed {
				fmt.Fprintf(v.w, "  ... and %d more\n", len(refs)-maxAuditListed)
				break
			}
			fmt.Fprintf(v.w, "  %s\n", r)
		}
	}
	if n := len(c.MissingFromDatabase); n > 0 {
		v.fail("compare", "%d entries of %s are missing from the database:", n, file)
		list(c.MissingFromDatabase)
	}
	if n := len(c.MissingFromFile); n > 0 {
		v.fail("compare", "%d entries of the database, written to %s, are missing from it:", n, file)
		list(c.MissingFromFile)
	}
	if n := len(c.Differ); n > 0 {
		v.fail("compare", "%d entries differ between %s and the database:", n, file)
		for i, d := range c.Differ {
			if i == maxAuditListed {
				fmt.Fprintf(v.w, "  ... and %d more\n", n-maxAuditListed)
				break
			}
			fmt.Fprintf(v.w, "  %s\n  database: %s\n", d[0], d[1])
		}
	}
	if c.OK() {
		fmt.Fprintf(v.w, "ok compare: %s and the database hold the same %d entries", file, c.Compared)
		if c.Older > 0 {
			fmt.Fprintf(v.w, "; %d older database entries predate the file's first (rotated away)", c.Older)
		}
		if c.Recent > 0 {
			fmt.Fprintf(v.w, "; %d written while verify read the file were not compared", c.Recent)
		}
		fmt.Fprintln(v.w)
	}
}

// runAuditRotateKey makes a new audit key and records that it did.
func runAuditRotateKey(ctx context.Context, configFile string, getenv func(string) string, stdout, stderr io.Writer) error {
	_, settings, err := multiUserSettings(configFile, getenv, nil)
	if err != nil {
		return err
	}
	a, err := openApp(ctx, configFile, getenv, settings, io.Discard, stderr)
	if err != nil {
		return err
	}
	defer a.Close()
	var vc *vault.Client
	if a.cfg.Vault.Audit.Enabled {
		if vc, err = a.openVault(ctx, getenv); err != nil {
			return err
		}
	}
	keys, err := a.auditKeys(ctx, vc, true)
	if err != nil {
		return err
	}
	r, ok := keys.(interface {
		Rotate(context.Context) (string, error)
	})
	if !ok {
		return fmt.Errorf("%s cannot rotate", keys)
	}
	kid, err := r.Rotate(ctx)
	if err != nil {
		return err
	}
	a.audit.Record(audit.Event{EventType: audit.AdminAction, Metadata: map[string]any{"action": "audit.rotate_key", "keyId": kid}})
	fmt.Fprintf(stdout, "new audit key %s in %s: new entries are made with it, and the keys before keep verifying theirs\n", kid, keys)
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
