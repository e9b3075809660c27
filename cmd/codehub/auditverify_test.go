package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	fakevault "github.com/codehub-dev/codehub/internal/testfake/vault"
	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // database/sql driver "sqlite", to tamper with the database log
)

// auditVerify runs `codehub audit verify ARGS` in-process and returns
// what it printed and its error.
func auditVerify(t *testing.T, args ...string) (stdout string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), append([]string{"codehub", "audit", "verify"}, args...), testGetenv(t),
		strings.NewReader(""), &out, &errOut)
	return out.String() + errOut.String(), err
}

// exitStatus runs the real codehub binary with args and returns its exit
// status and output.
func exitStatus(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(codehubBinary(t), args...)
	cmd.Env = []string{"HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("codehub %s: %v", strings.Join(args, " "), err)
	return 0, ""
}

// tamperLines writes lines of the audit file src to a new file, each
// through edit (nil drops it), and returns its path.
func tamperLines(t *testing.T, src string, edit func(n int, line string) *string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l := edit(i+1, line); l != nil {
			out = append(out, *l)
		}
	}
	dst := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(dst, []byte(strings.Join(out, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// rechainFrom copies the audit file src with line n's user changed to
// mallory and the chain from there recomputed with plain SHA-256, as
// someone without the key would, and returns the copy's path.
func rechainFrom(t *testing.T, src string, n int) string {
	t.Helper()
	prev := ""
	return tamperLines(t, src, func(i int, line string) *string {
		var e audit.Event
		json.Unmarshal([]byte(line), &e)
		if i >= n {
			if i == n {
				e.Username, e.IPAddress = "mallory", "203.0.113.9"
			}
			e.PrevHash = prev
			e.Hash, _ = audit.ComputeHash(e)
			b, _ := json.Marshal(e)
			line = string(b)
		}
		prev = e.Hash
		return &line
	})
}

// fileLines returns the lines of path.
func fileLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// mustFail checks that verify with args fails, printing want, and that
// the real binary exits 1 saying the same.
func mustFail(t *testing.T, want string, args ...string) {
	t.Helper()
	out, err := auditVerify(t, args...)
	if !errors.Is(err, errSilent) || !strings.Contains(out, want) {
		t.Errorf("audit verify %s: %v\n%s\nwant a failure saying %q", strings.Join(args, " "), err, out, want)
	}
	code, bout := exitStatus(t, append([]string{"audit", "verify"}, args...)...)
	if code != 1 || !strings.Contains(bout, want) {
		t.Errorf("codehub audit verify %s exited %d:\n%s", strings.Join(args, " "), code, bout)
	}
}

// auditGateway runs a gateway that writes some audit entries, and stops
// it; it returns its configuration file.
func auditGateway(t *testing.T, cfg *opsConfig) string {
	t.Helper()
	cfg.Upstream = startStandInIDE(t)
	file := cfg.write(t)
	createUser(t, file, "alice", "alice-password-1")
	g := startMultiGateway(t, file)
	tok := mustFormLogin(t, g, "alice", "alice-password-1")
	formLogin(t, g, "alice", "wrong-password")
	formLogout(t, g, tok)
	if err := g.stop(); err != nil {
		t.Fatalf("gateway stopped with %v", err)
	}
	if entries := readAuditFile(t, cfg.AuditFile); len(entries) < 5 {
		t.Fatalf("the gateway wrote %d audit entries, want at least 5", len(entries))
	}
	return file
}

// TestAuditVerifyCLI: `codehub audit verify` passes on the logs a gateway
// wrote; an entry edited and re-chained with plain SHA-256, a removed
// entry, a removed tail and an entry missing from the database are each
// reported with their place, and the command then exits with status 1.
func TestAuditVerifyCLI(t *testing.T) {
	t.Parallel()
	cfg := &opsConfig{}
	file := auditGateway(t, cfg)
	lines := fileLines(t, cfg.AuditFile)
	n := len(lines)

	// Intact: the file named, and what the configuration names (the file,
	// the database, compared).
	out, err := auditVerify(t, cfg.AuditFile, "--config", file)
	if err != nil || !strings.Contains(out, "ok "+cfg.AuditFile+": ") || !strings.Contains(out, "keyed chain intact") ||
		!strings.Contains(out, "last checkpoint entry "+fmt.Sprint(n)) {
		t.Fatalf("verify of the intact file: %v\n%s", err, out)
	}
	out, err = auditVerify(t, "--config", file)
	if err != nil || !strings.Contains(out, "ok "+cfg.AuditFile) || !strings.Contains(out, "ok database: ") ||
		!strings.Contains(out, "ok compare: "+cfg.AuditFile+" and the database hold the same") {
		t.Fatalf("verify of the configured logs: %v\n%s", err, out)
	}
	if code, out := exitStatus(t, "audit", "verify", "--config", file); code != 0 {
		t.Fatalf("codehub audit verify of the intact logs exited %d:\n%s", code, out)
	}
	// Without the key, nothing keyed verifies.
	mustFail(t, "keyed entries cannot be checked without the audit key", cfg.AuditFile)

	// An entry edited, and the chain after it recomputed with plain
	// SHA-256, as someone without the key would.
	rechained := rechainFrom(t, cfg.AuditFile, 3)
	// A removed entry.
	deleted := tamperLines(t, cfg.AuditFile, func(i int, line string) *string {
		if i == 3 {
			return nil
		}
		return &line
	})
	// A removed tail: the last three entries, the closing checkpoint with
	// them.
	truncated := tamperLines(t, cfg.AuditFile, func(i int, line string) *string {
		if i > n-3 {
			return nil
		}
		return &line
	})
	for _, c := range []struct {
		name, path, want string
	}{
		{"edited and re-chained line 3", rechained, "FAILED " + rechained + ":3: altered: the entry does not match its HMAC"},
		{"deleted line 3", deleted, "FAILED " + deleted + ":3: broken chain"},
		{"last 3 lines removed", truncated, fmt.Sprintf("FAILED %s: truncated: the log ends at seq %d", truncated, n-3)},
		{"last 3 lines removed: which", truncated, fmt.Sprintf("names its entry %d: entries %d to %d are missing", n, n-2, n)},
	} {
		t.Run(c.name, func(t *testing.T) { mustFail(t, c.want, c.path, "--config", file) })
	}

	// The database log: an entry altered in place is found, and so is one
	// deleted, as missing from the database.
	db, err := sql.Open("sqlite", filepath.Join(cfg.DataDir, "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_log SET username = 'mallory' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	mustFail(t, "FAILED seq 2: altered: the entry does not match its HMAC", "--database", "--config", file)
	var (
		seq     int64
		id, typ string
	)
	if err := db.QueryRow(`SELECT seq, event_id, event_type FROM audit_log WHERE seq > 2 AND event_type <> 'audit.checkpoint' ORDER BY seq LIMIT 1`).Scan(&seq, &id, &typ); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM audit_log WHERE seq = ?`, seq); err != nil {
		t.Fatal(err)
	}
	mustFail(t, "FAILED compare: 1 entries of "+cfg.AuditFile+" are missing from the database:", "--config", file)
	mustFail(t, "id "+id+") ", "--config", file)
	mustFail(t, typ, "--config", file)
}

// TestAuditVerifyLegacyAndRotation: a log written before keyed chains
// verifies as legacy, not as fine; the gateway continues it keyed; and
// after `codehub audit rotate-key` the entries of both keys verify.
func TestAuditVerifyLegacyAndRotation(t *testing.T) {
	t.Parallel()
	cfg := &opsConfig{}
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.AuditFile = filepath.Join(cfg.DataDir, "audit", "audit.log")
	// Three entries as the old format wrote them.
	var old []string
	prev := ""
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	for i := 1; i <= 3; i++ {
		e := audit.Event{Timestamp: t0.Add(time.Duration(i) * time.Minute), EventType: audit.LoginSuccess, Username: "alice",
			Status: audit.StatusSuccess, Seq: int64(i), PrevHash: prev}
		e.Hash, _ = audit.ComputeHash(e)
		prev = e.Hash
		b, _ := json.Marshal(e)
		old = append(old, string(b))
	}
	if err := os.MkdirAll(filepath.Dir(cfg.AuditFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.AuditFile, []byte(strings.Join(old, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Upstream = startStandInIDE(t)
	file := cfg.write(t)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	mustFail(t, "LEGACY "+cfg.AuditFile+": legacy, unkeyed: entries 1-3 (3) were written before keyed chains", cfg.AuditFile, "--config", file)

	createUser(t, file, "alice", "alice-password-1") // continues the log, keyed
	kid := func(line string) string {
		var e audit.Event
		json.Unmarshal([]byte(line), &e)
		return e.KeyID
	}
	first := kid(fileLines(t, cfg.AuditFile)[3])
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"codehub", "audit", "rotate-key", "--config", file}, testGetenv(t),
		strings.NewReader(""), &out, &errOut); err != nil || !strings.Contains(out.String(), "new audit key ") {
		t.Fatalf("rotate-key: %v\n%s%s", err, out.String(), errOut.String())
	}
	createUser(t, file, "bob", "bob-password-12")
	lines := fileLines(t, cfg.AuditFile)
	second := kid(lines[len(lines)-1])
	if first == "" || second == "" || first == second {
		t.Fatalf("key ids before and after the rotation: %q, %q", first, second)
	}
	var rotated bool
	for _, line := range lines {
		var e audit.Event
		json.Unmarshal([]byte(line), &e)
		rotated = rotated || e.EventType == audit.AdminAction && e.Metadata["action"] == "audit.rotate_key" && e.Metadata["keyId"] == second
	}
	if !rotated {
		t.Error("the rotation is not in the audit log")
	}

	out2, err := auditVerify(t, cfg.AuditFile, "--config", file, "--allow-legacy")
	if err != nil || !strings.Contains(out2, "LEGACY "+cfg.AuditFile) || !strings.Contains(out2, "accepted with --allow-legacy") ||
		!strings.Contains(out2, "chain intact, keyed from entry 4") {
		t.Fatalf("verify of the legacy then keyed log with --allow-legacy: %v\n%s", err, out2)
	}
	if code, out := exitStatus(t, "audit", "verify", "--config", file, "--allow-legacy"); code != 0 {
		t.Fatalf("codehub audit verify --allow-legacy exited %d:\n%s", code, out)
	}
	mustFail(t, "(add --allow-legacy to accept them)", "--config", file)
}

// TestAuditVerifyPostgresOutage: events recorded while PostgreSQL is down
// are in the file and not in the database; verify names them. If the
// database comes back while the gateway runs, the gateway writes them
// there and both logs agree.
func TestAuditVerifyPostgresOutage(t *testing.T) {
	t.Parallel()
	pg := testPostgres(t)
	u, _ := url.Parse(pg)
	name := strings.TrimPrefix(u.Path, "/")
	admin, err := sql.Open("pgx", strings.Replace(pg, "/"+name, "/postgres", 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	ident := pgx.Identifier{name}.Sanitize()
	setDown := func(down bool) {
		t.Helper()
		if _, err := admin.Exec(fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS %t", ident, !down)); err != nil {
			t.Fatal(err)
		}
		if down {
			if _, err := admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(func() { setDown(false) })

	cfg := &opsConfig{PostgresURL: pg}
	cfg.Upstream = startStandInIDE(t)
	file := cfg.write(t)
	createUser(t, file, "alice", "alice-password-1")
	suspicious := func(g *testGateway, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			r := do(t, http.MethodPost, g.URL+"/api/v1/auth/login", strings.NewReader(`{"username":"alice","password":"x"}`),
				"Content-Type", "application/json", "Origin", fmt.Sprintf("https://evil-%d.example", i), "Sec-Fetch-Site", "cross-site")
			if r.Status != http.StatusForbidden {
				t.Fatalf("cross-origin sign-in: %d %s", r.Status, r.Body)
			}
		}
	}
	waitFile := func(want int) {
		t.Helper()
		deadline := time.Now().Add(guard)
		for {
			got := 0
			for _, e := range readAuditFile(t, cfg.AuditFile) {
				if e.EventType == audit.Suspicious {
					got++
				}
			}
			if got >= want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d security.suspicious entries in the file, want %d", got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Five events while the database is down, and the gateway stopped
	// before it is back: they are only in the file.
	g := startMultiGateway(t, file)
	setDown(true)
	suspicious(g, 5)
	waitFile(5)
	if err := g.stop(); err != nil {
		t.Fatalf("gateway stopped with %v", err)
	}
	setDown(false)
	out, err := auditVerify(t, "--config", file)
	t.Logf("codehub audit verify after the outage:\n%s", out)
	if !errors.Is(err, errSilent) || !strings.Contains(out, "FAILED compare: 5 entries of "+cfg.AuditFile+" are missing from the database:") ||
		strings.Count(out, "security.suspicious") != 5 {
		t.Fatalf("verify after an outage: %v\n%s", err, out)
	}

	// Five more while it is down, and it comes back while the gateway
	// runs: those are written to it; the first five stay missing.
	g = startMultiGateway(t, file)
	setDown(true)
	suspicious(g, 5)
	waitFile(10)
	setDown(false)
	db, err := sql.Open("pgx", pg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(2 * guard)
	for {
		var n int
		err := db.QueryRow("SELECT count(*) FROM audit_log WHERE event_type = 'security.suspicious'").Scan(&n)
		if err == nil && n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not write the outage's events to the database: %d there (%v)", n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := g.stop(); err != nil {
		t.Fatalf("gateway stopped with %v", err)
	}
	out, err = auditVerify(t, "--config", file)
	if !errors.Is(err, errSilent) || !strings.Contains(out, "FAILED compare: 5 entries of "+cfg.AuditFile+" are missing from the database:") {
		t.Fatalf("verify after the backfill: %v\n%s", err, out)
	}
}

// TestAuditSinkFailureShown: while a sink of the audit log fails (the
// file's directory moved away), the admin overview and the dashboard say
// so; when it is back its events are written, and verify finds both logs
// whole and alike.
func TestAuditSinkFailureShown(t *testing.T) {
	t.Parallel()
	cfg := &opsConfig{}
	cfg.Upstream = startStandInIDE(t)
	file := cfg.write(t)
	createUser(t, file, "root", auditAdminPW, "--role", "admin")
	g := startMultiGateway(t, file)
	admin := apiLogin(t, g, "root", auditAdminPW).AccessToken
	browser := mustFormLogin(t, g, "root", auditAdminPW)

	type overview struct {
		AuditLog *audit.Status `json:"auditLog"`
	}
	fileSink := func() (audit.SinkStatus, bool) {
		t.Helper()
		r := do(t, http.MethodGet, g.URL+"/api/v1/admin/overview", nil, bearer(admin)...)
		var o overview
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &o) != nil || o.AuditLog == nil {
			t.Fatalf("GET /api/v1/admin/overview: %d %s", r.Status, r.Body)
		}
		for _, s := range o.AuditLog.Sinks {
			if s.Name == "file audit.log" {
				return s, true
			}
		}
		return audit.SinkStatus{}, false
	}
	if s, ok := fileSink(); !ok || s.Failing || s.Backlog != 0 {
		t.Fatalf("the file sink before: %+v, %t", s, ok)
	}

	dir := filepath.Dir(cfg.AuditFile)
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		r := do(t, http.MethodPost, g.URL+"/api/v1/auth/login", strings.NewReader(`{"username":"root","password":"x"}`),
			"Content-Type", "application/json", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
		if r.Status != http.StatusForbidden {
			t.Fatalf("cross-origin sign-in: %d %s", r.Status, r.Body)
		}
	}
	deadline := time.Now().Add(guard)
	for {
		s, _ := fileSink()
		if s.Failing && s.Backlog >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the overview does not show the failing file sink: %+v", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	page := do(t, http.MethodGet, g.URL+"/admin", nil, "Cookie", sessionCookie(browser))
	if page.Status != http.StatusOK || !strings.Contains(string(page.Body), `id="audit-problem">The audit log&#39;s file audit.log is failing`) {
		t.Fatalf("the dashboard's overview does not show the failing file sink: %d\n%s", page.Status, page.Body)
	}

	if err := os.Rename(dir+".away", dir); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(2 * guard)
	for {
		s, _ := fileSink()
		if !s.Failing && s.Backlog == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the file sink did not recover: %+v", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := g.stop(); err != nil {
		t.Fatalf("gateway stopped with %v", err)
	}
	out, err := auditVerify(t, "--config", file)
	if err != nil || !strings.Contains(out, "ok compare: ") {
		t.Fatalf("verify after the file sink came back: %v\n%s", err, out)
	}
}

// TestAuditVaultKeys: with vault.audit the gateway keeps the audit key in
// Vault (the fake, or a real one at VAULT_ADDR, in a KV mount of the
// test's own), none on its disk, and verify reads it from there.
func TestAuditVaultKeys(t *testing.T) {
	t.Parallel()
	env := fakevault.Target(t)
	mount := env.MountSecrets(t, "kv", map[string]string{"version": "2"})
	cfg := &opsConfig{Top: fmt.Sprintf("vault {\n  address = %q\n  auth {\n    method = \"token\"\n    token = %q\n  }\n  audit {\n    enabled = true\n    mount = %q\n  }\n}\n",
		env.Addr, env.Token, mount)}
	file := auditGateway(t, cfg)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "audit-key.json")); !os.IsNotExist(err) {
		t.Errorf("a key file in the data directory with vault.audit: %v", err)
	}
	kv, err := env.Client(t).KVv2(mount).Get(context.Background(), "codehub/audit-keys")
	if err != nil {
		t.Fatalf("the audit keys in Vault: %v", err)
	}
	current, _ := kv.Data["current"].(string)
	var e audit.Event
	lines := fileLines(t, cfg.AuditFile)
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &e); err != nil || current == "" || e.KeyID != current {
		t.Fatalf("the log's key %q, Vault's current key %q (%v)", e.KeyID, current, err)
	}
	out, err := auditVerify(t, "--config", file)
	if err != nil || !strings.Contains(out, "ok compare: ") {
		t.Fatalf("verify with the keys in Vault: %v\n%s", err, out)
	}
	// Edited and re-chained without the key: found.
	rechained := rechainFrom(t, cfg.AuditFile, 2)
	out, err = auditVerify(t, rechained, "--config", file)
	if !errors.Is(err, errSilent) || !strings.Contains(out, "FAILED "+rechained+":2: altered: the entry does not match its HMAC") {
		t.Fatalf("verify of an edited copy: %v\n%s", err, out)
	}
}
