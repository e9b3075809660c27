package sqlstore

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/jackc/pgx/v5"
)

// auditKeys returns a key file of its own for t.
func auditKeys(t *testing.T) *audit.KeyFile {
	t.Helper()
	k, err := audit.OpenKeyFile(audit.KeyFileConfig{Path: filepath.Join(t.TempDir(), "audit-key.json"), Create: true})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ph is the n-th query parameter in db's dialect.
func ph(db *DB, n int) string {
	if db.Driver() == DriverPostgres {
		return fmt.Sprintf("$%d", n)
	}
	return fmt.Sprintf("?%d", n)
}

func problemList(r *audit.Report) string {
	var b strings.Builder
	for _, p := range r.Problems {
		fmt.Fprintln(&b, p)
	}
	if b.Len() == 0 {
		return "(no problems)"
	}
	return b.String()
}

func mustFindProblem(t *testing.T, r *audit.Report, want string) {
	t.Helper()
	if !strings.Contains(problemList(r), want) {
		t.Fatalf("verify reported\n%s\nwant a problem containing %q", problemList(r), want)
	}
}

func TestAuditLog(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			b.need(t)
			cfg := b.config(t)
			keys := auditKeys(t)
			// Two gateways append concurrently to one chain.
			logs := []*AuditLog{mustOpen(t, cfg).AuditLog().WithKeys(keys), mustOpen(t, cfg).AuditLog().WithKeys(keys)}
			var wg sync.WaitGroup
			for g := 0; g < 2; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for i := 0; i < 20; i++ {
						e := audit.Event{Timestamp: t0.Add(time.Duration(i) * time.Minute), EventType: audit.LoginSuccess,
							UserID: fmt.Sprintf("u%d", g), Username: "n", Status: audit.StatusSuccess, Metadata: map[string]any{"i": i},
							ID: audit.NewEventID()}
						if err := logs[g].Append(ctx, []audit.Event{e}); err != nil {
							t.Error(err)
						}
					}
				}(g)
			}
			wg.Wait()
			cp, err := logs[0].Checkpoint(ctx, t0.Add(time.Hour), "close")
			if err != nil || cp.Seq != 41 || cp.Log != audit.DatabaseLog {
				t.Fatalf("Checkpoint = %+v, %v", cp, err)
			}
			if err := logs[0].SaveCheckpoint(ctx, cp); err != nil {
				t.Fatal(err)
			}
			if err := logs[1].SaveCheckpoint(ctx, cp); err != nil {
				t.Fatalf("a checkpoint saved twice: %v", err)
			}
			r, err := logs[0].Verify(ctx, audit.VerifyOptions{Keys: keys})
			if err != nil || !r.OK() || r.Count != 41 || r.LastCheckpoint == nil || r.LastCheckpoint.Seq != 41 {
				t.Fatalf("Verify = %+v, %v\n%s", r, err, problemList(r))
			}
			page, total, err := logs[0].Query(ctx, AuditQuery{UserID: "u1", Limit: 5})
			if err != nil || total != 20 || len(page) != 5 || page[0].UserID != "u1" || page[0].Seq < page[4].Seq ||
				page[0].ID == "" || page[0].Chain != audit.ChainKeyed || page[0].KeyID == "" {
				t.Fatalf("Query(user) = %d entries of %d, %v: %+v", len(page), total, err, page)
			}
			if _, total, _ := logs[0].Query(ctx, AuditQuery{Since: t0.Add(10 * time.Minute), Until: t0.Add(15 * time.Minute)}); total != 10 {
				t.Fatalf("Query(time range) total = %d, want 10", total)
			}
			if _, total, _ := logs[0].Query(ctx, AuditQuery{EventType: audit.Logout}); total != 0 {
				t.Fatalf("Query(type) total = %d", total)
			}
			if err := logs[0].db.AuditLog().Append(ctx, []audit.Event{{EventType: audit.Logout}}); err == nil {
				t.Fatal("a log without keys appended")
			}
		})
	}
}

// seedAudit appends n events and a checkpoint, kept in state (outside
// the database), and returns the log.
func seedAudit(t *testing.T, cfg Config, keys audit.Keys, state audit.CheckpointStore, n int) *AuditLog {
	t.Helper()
	ctx := context.Background()
	log := mustOpen(t, cfg).AuditLog().WithKeys(keys)
	l := audit.NewLogger(audit.LoggerConfig{Log: testenv.Logger(t), CheckpointEntries: 5, CheckpointInterval: time.Hour,
		Checkpoints: []audit.CheckpointStore{log, state}}, log)
	for i := 0; i < n; i++ {
		l.Record(audit.Event{EventType: audit.LoginFailure, Username: fmt.Sprintf("user%d", i), Status: audit.StatusFailure})
		l.Flush()
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := log.Verify(ctx, audit.VerifyOptions{Keys: keys, Checkpoints: []audit.CheckpointStore{state}})
	if err != nil || !r.OK() {
		t.Fatalf("Verify of the intact log: %v\n%s", err, problemList(r))
	}
	return log
}

// TestAuditLogTampering: what someone with write access to the database
// but not the key can do to its log is found, and where.
func TestAuditLogTampering(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			b.need(t)
			cases := []struct {
				name string
				sql  []string
				want string
			}{
				{"row altered", []string{"UPDATE audit_log SET username = 'mallory' WHERE seq = 7"},
					"seq 7: altered: the entry does not match its HMAC"},
				{"middle row deleted", []string{"DELETE FROM audit_log WHERE seq = 7"}, "seq 8: broken chain"},
				// Removing the tail and the checkpoints kept in the database:
				// the one in the state file outside it remains.
				{"tail removed with its checkpoints", []string{"DELETE FROM audit_log WHERE seq > 9", "DELETE FROM audit_checkpoints"},
					"database: truncated: the log ends at seq 9 ("},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					keys := auditKeys(t)
					state := audit.OpenStateFile(filepath.Join(t.TempDir(), "audit-checkpoints.json"))
					log := seedAudit(t, b.config(t), keys, state, 12)
					for _, q := range c.sql {
						if _, err := log.db.sql.ExecContext(ctx, q); err != nil {
							t.Fatal(err)
						}
					}
					r, err := log.Verify(ctx, audit.VerifyOptions{Keys: keys, Checkpoints: []audit.CheckpointStore{state}})
					if err != nil {
						t.Fatal(err)
					}
					mustFindProblem(t, r, c.want)
				})
			}
			t.Run("row altered and rehashed with plain SHA-256", func(t *testing.T) {
				keys := auditKeys(t)
				state := audit.OpenStateFile(filepath.Join(t.TempDir(), "audit-checkpoints.json"))
				log := seedAudit(t, b.config(t), keys, state, 12)
				var all []audit.Event
				if err := log.Entries(ctx, func(e audit.Event) error { all = append(all, e); return nil }); err != nil {
					t.Fatal(err)
				}
				prev := all[5].Hash
				for _, e := range all[6:] {
					if e.Seq == 7 {
						e.Username = "mallory"
					}
					e.PrevHash = prev
					e.Hash, _ = audit.ComputeHash(e)
					prev = e.Hash
					if _, err := log.db.sql.ExecContext(ctx, "UPDATE audit_log SET username = "+ph(log.db, 1)+
						", prev_hash = "+ph(log.db, 2)+", hash = "+ph(log.db, 3)+
						" WHERE seq = "+ph(log.db, 4), e.Username, e.PrevHash, e.Hash, e.Seq); err != nil {
						t.Fatal(err)
					}
				}
				r, err := log.Verify(ctx, audit.VerifyOptions{Keys: keys, Checkpoints: []audit.CheckpointStore{state}})
				if err != nil {
					t.Fatal(err)
				}
				mustFindProblem(t, r, "seq 7: altered: the entry does not match its HMAC")
			})
		})
	}
}

// TestAuditLogLegacyRows: rows written before keyed chains verify as
// legacy, and the keyed chain continues after them.
func TestAuditLogLegacyRows(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			b.need(t)
			db := mustOpen(t, b.config(t))
			prev := ""
			for i := 1; i <= 3; i++ {
				e := audit.Event{Timestamp: t0.Add(time.Duration(i) * time.Minute), EventType: audit.LoginSuccess, Username: "alice",
					Status: audit.StatusSuccess, Seq: int64(i), PrevHash: prev}
				e.Hash, _ = audit.ComputeHash(e)
				prev = e.Hash
				// As the old code wrote them: the columns of migration 0004 only.
				if _, err := db.sql.ExecContext(ctx, "INSERT INTO audit_log (seq, timestamp, event_type, user_id, username, ip_address, user_agent, status, metadata, prev_hash, hash) VALUES ("+
					strings.Join([]string{ph(db, 1), ph(db, 2), "'user.login', '', 'alice', '', '', 'success', '{}'",
						ph(db, 3), ph(db, 4)}, ", ")+")", e.Seq, db.dialect.timeArg(e.Timestamp), e.PrevHash, e.Hash); err != nil {
					t.Fatal(err)
				}
			}
			keys := auditKeys(t)
			r, err := db.AuditLog().Verify(ctx, audit.VerifyOptions{Keys: keys})
			if err != nil || !r.OK() || r.Legacy != 3 || r.Count != 3 {
				t.Fatalf("legacy rows: %+v, %v\n%s", r, err, problemList(r))
			}
			log := db.AuditLog().WithKeys(keys)
			if err := log.Append(ctx, []audit.Event{{Timestamp: t0.Add(time.Hour), EventType: audit.Logout, Status: audit.StatusSuccess, ID: audit.NewEventID()}}); err != nil {
				t.Fatal(err)
			}
			cp, err := log.Checkpoint(ctx, t0.Add(2*time.Hour), "close")
			if err != nil || log.SaveCheckpoint(ctx, cp) != nil {
				t.Fatal(err)
			}
			r, err = log.Verify(ctx, audit.VerifyOptions{Keys: keys})
			if err != nil || !r.OK() || r.Legacy != 3 || r.Count != 5 {
				t.Fatalf("legacy then keyed rows: %+v, %v\n%s", r, err, problemList(r))
			}
		})
	}
}

// fileAndDB is a gateway's audit setup: a file log and the database log,
// written by one Logger, with checkpoints in a state file and the
// database.
type fileAndDB struct {
	keys  *audit.KeyFile
	state *audit.StateFile
	path  string
	file  *audit.FileSink
	db    *AuditLog
	l     *audit.Logger
}

func newFileAndDB(t *testing.T, cfg Config) *fileAndDB {
	t.Helper()
	dir := t.TempDir()
	f := &fileAndDB{keys: auditKeys(t), state: audit.OpenStateFile(filepath.Join(dir, "audit-checkpoints.json")),
		path: filepath.Join(dir, "audit.log")}
	var err error
	if f.file, err = audit.OpenFile(audit.FileConfig{Path: f.path, Keys: f.keys}); err != nil {
		t.Fatal(err)
	}
	f.db = mustOpen(t, cfg).AuditLog().WithKeys(f.keys)
	f.l = audit.NewLogger(audit.LoggerConfig{Log: testenv.Logger(t), CheckpointInterval: time.Hour,
		Checkpoints: []audit.CheckpointStore{f.state, f.db}}, f.db, f.file)
	t.Cleanup(func() { f.l.Close() })
	return f
}

// verify verifies both logs and compares them.
func (f *fileAndDB) verify(t *testing.T) (file, db *audit.Report, c audit.Comparison) {
	t.Helper()
	ctx := context.Background()
	since := time.Now()
	opts := audit.VerifyOptions{Keys: f.keys, Checkpoints: []audit.CheckpointStore{f.state, f.db}, Collect: true, Path: f.path}
	files, _ := audit.LogFiles(f.path)
	file, err := audit.VerifyFiles(ctx, files, opts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Checkpoints = []audit.CheckpointStore{f.state}
	if db, err = f.db.Verify(ctx, opts); err != nil {
		t.Fatal(err)
	}
	return file, db, audit.Compare(file, db, since)
}

// TestAuditCompare: verify names a file entry missing from the database
// and a database entry missing from the file.
func TestAuditCompare(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			b.need(t)
			f := newFileAndDB(t, b.config(t))
			for i := 0; i < 6; i++ {
				f.l.Record(audit.Event{EventType: audit.SessionCreated, Username: fmt.Sprintf("user%d", i)})
			}
			if err := f.l.Close(); err != nil {
				t.Fatal(err)
			}
			file, db, c := f.verify(t)
			if !file.OK() || !db.OK() || !c.OK() || c.Compared != 6 {
				t.Fatalf("intact logs: file\n%s\ndatabase\n%s\ncomparison %+v", problemList(file), problemList(db), c)
			}

			// A file entry missing from the database: its row removed (the
			// database's chain then breaks too).
			var victim audit.Event
			f.db.Entries(ctx, func(e audit.Event) error {
				if e.Username == "user3" {
					victim = e
				}
				return nil
			})
			if _, err := f.db.db.sql.ExecContext(ctx, "DELETE FROM audit_log WHERE seq = "+fmt.Sprint(victim.Seq)); err != nil {
				t.Fatal(err)
			}
			// A database entry of this file's log missing from the file: one
			// the database took and the file did not.
			ghost := audit.Event{Timestamp: time.Now().UTC().Truncate(time.Microsecond), EventType: audit.RoleChanged,
				Username: "mallory", Status: audit.StatusSuccess, ID: audit.NewEventID(), LogID: f.file.LogID()}
			if err := f.db.Append(ctx, []audit.Event{ghost}); err != nil {
				t.Fatal(err)
			}
			// An entry of another gateway's file log is not expected here.
			other := audit.Event{Timestamp: ghost.Timestamp, EventType: audit.Logout, Status: audit.StatusSuccess, ID: audit.NewEventID(), LogID: "another-gateway"}
			if err := f.db.Append(ctx, []audit.Event{other}); err != nil {
				t.Fatal(err)
			}
			file, db, c = f.verify(t)
			if !file.OK() {
				t.Fatalf("the file: %s", problemList(file))
			}
			mustFindProblem(t, db, fmt.Sprintf("seq %d: broken chain", victim.Seq+1))
			if len(c.MissingFromDatabase) != 1 || c.MissingFromDatabase[0].ID != victim.ID ||
				!strings.Contains(c.MissingFromDatabase[0].String(), "session.created user3") ||
				!strings.Contains(c.MissingFromDatabase[0].Where, f.path+":") {
				t.Fatalf("missing from the database: %v, want %s", c.MissingFromDatabase, victim.ID)
			}
			if len(c.MissingFromFile) != 1 || c.MissingFromFile[0].ID != ghost.ID ||
				!strings.Contains(c.MissingFromFile[0].String(), "user.role_changed mallory") {
				t.Fatalf("missing from the file: %v, want %s", c.MissingFromFile, ghost.ID)
			}
		})
	}
}

// TestAuditOutageBackfill: events recorded while PostgreSQL refuses
// connections are in the file, and verify names them as missing from the
// database; when it is back, the gateway writes them there, and both logs
// agree.
func TestAuditOutageBackfill(t *testing.T) {
	ctx := context.Background()
	admin := postgresAdmin(t)
	defer admin.Close()
	dsn := postgresDSN(t)
	u, _ := url.Parse(dsn)
	name := strings.TrimPrefix(u.Path, "/")
	ident := pgx.Identifier{name}.Sanitize()
	f := newFileAndDB(t, Config{Driver: DriverPostgres, DSN: dsn})
	f.l.Record(audit.Event{EventType: audit.LoginSuccess, Username: "alice"})
	f.l.Flush()

	// The outage: no new connections, and the open ones cut.
	if _, err := admin.ExecContext(ctx, "ALTER DATABASE "+ident+" ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("ALTER DATABASE " + ident + " ALLOW_CONNECTIONS true") })
	if _, err := admin.ExecContext(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name); err != nil {
		t.Fatal(err)
	}
	var lost []string
	for i := 0; i < 5; i++ {
		f.l.Record(audit.Event{EventType: audit.LoginFailure, Username: fmt.Sprintf("during-outage-%d", i), Status: audit.StatusFailure})
	}
	f.l.Flush()
	if st := f.l.Status(); st.Sinks[0].Backlog != 5 || st.Sinks[0].Error == "" {
		t.Fatalf("status during the outage: %+v", st)
	}
	for _, line := range strings.Split(strings.TrimSpace(readFile(t, f.path)), "\n") {
		if strings.Contains(line, "during-outage-") {
			lost = append(lost, line)
		}
	}
	if len(lost) != 5 {
		t.Fatalf("the file holds %d of the outage's events, want 5", len(lost))
	}

	// Verify, still during the outage, with the database's rows read by
	// an administrator: the five are named.
	if _, err := admin.ExecContext(ctx, "ALTER DATABASE "+ident+" ALLOW_CONNECTIONS true"); err != nil {
		t.Fatal(err)
	}
	verifyDB := mustOpen(t, Config{Driver: DriverPostgres, DSN: dsn}).AuditLog()
	opts := audit.VerifyOptions{Keys: f.keys, Collect: true}
	files, _ := audit.LogFiles(f.path)
	since := time.Now()
	file, err := audit.VerifyFiles(ctx, files, opts)
	if err != nil {
		t.Fatal(err)
	}
	db, err := verifyDB.Verify(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := audit.Compare(file, db, since)
	if len(c.MissingFromDatabase) != 5 || len(c.MissingFromFile) != 0 {
		t.Fatalf("during the outage: %d missing from the database, %d from the file; want 5 and 0", len(c.MissingFromDatabase), len(c.MissingFromFile))
	}
	for i, m := range c.MissingFromDatabase {
		if m.Username != fmt.Sprintf("during-outage-%d", i) || m.Type != audit.LoginFailure || m.Time.IsZero() {
			t.Fatalf("missing from the database: %v", m)
		}
	}

	// Back: the gateway's backlog is written.
	f.l.Flush()
	if st := f.l.Status(); st.Sinks[0].Backlog != 0 {
		t.Fatalf("status after the outage: %+v", st)
	}
	if err := f.l.Close(); err != nil {
		t.Fatal(err)
	}
	file, db, c = f.verify(t)
	if !file.OK() || !db.OK() || !c.OK() || c.Compared != 6 {
		t.Fatalf("after the backfill: file\n%s\ndatabase\n%s\ncomparison %+v", problemList(file), problemList(db), c)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
