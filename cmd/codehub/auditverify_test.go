package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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

// TestAuditVerifyCLI: `codehub audit verify` passes on the audit file a
// gateway wrote, and on its database log; a deleted line and an altered
// line are each reported with the line that breaks the chain, and the
// command then exits with a non-zero status.
func TestAuditVerifyCLI(t *testing.T) {
	t.Parallel()
	cfg := &opsConfig{Upstream: startStandInIDE(t)}
	file := cfg.write(t)
	createUser(t, file, "alice", "alice-password-1")
	g := startMultiGateway(t, file)
	tok := mustFormLogin(t, g, "alice", "alice-password-1")
	formLogin(t, g, "alice", "wrong-password")
	formLogout(t, g, tok)
	if err := g.stop(); err != nil {
		t.Fatalf("gateway stopped with %v", err)
	}
	entries := readAuditFile(t, cfg.AuditFile)
	if len(entries) < 5 {
		t.Fatalf("the gateway wrote %d audit entries, want at least 5", len(entries))
	}

	// Intact: the file named, and what the configuration names (the
	// file and the database).
	out, err := auditVerify(t, cfg.AuditFile)
	if err != nil || !strings.Contains(out, "ok "+cfg.AuditFile+": ") || !strings.Contains(out, "chain intact") {
		t.Fatalf("verify of the intact file: %v\n%s", err, out)
	}
	out, err = auditVerify(t, "--config", file)
	if err != nil || !strings.Contains(out, "ok "+cfg.AuditFile) || !strings.Contains(out, "ok database: ") {
		t.Fatalf("verify of the configured logs: %v\n%s", err, out)
	}
	if code, out := exitStatus(t, "audit", "verify", cfg.AuditFile); code != 0 {
		t.Fatalf("codehub audit verify of the intact file exited %d:\n%s", code, out)
	}

	// A deleted line: the chain breaks at the line after it.
	deleted := tamperLines(t, cfg.AuditFile, func(n int, line string) *string {
		if n == 3 {
			return nil
		}
		return &line
	})
	// An altered line: it no longer matches its hash.
	altered := tamperLines(t, cfg.AuditFile, func(n int, line string) *string {
		if n == 4 {
			line = strings.Replace(line, `"timestamp":"2`, `"timestamp":"1`, 1) // a thousand years earlier
		}
		return &line
	})
	for _, c := range []struct {
		name, path, want string
	}{
		{"deleted line 3", deleted, deleted + ":3: broken chain"},
		{"altered line 4", altered, altered + ":4: altered"},
	} {
		out, err := auditVerify(t, c.path)
		if !errors.Is(err, errSilent) {
			t.Errorf("%s: verify returned %v, want a failure\n%s", c.name, err, out)
		}
		if !strings.Contains(out, "FAILED "+c.want) {
			t.Errorf("%s: verify printed %q, want %q", c.name, out, "FAILED "+c.want)
		}
		code, bout := exitStatus(t, "audit", "verify", c.path)
		if code == 0 || !strings.Contains(bout, c.want) {
			t.Errorf("%s: codehub audit verify exited %d:\n%s", c.name, code, bout)
		}
	}

	// The database log: an entry altered in place is found too.
	db, err := sql.Open("sqlite", filepath.Join(cfg.DataDir, "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE audit_log SET username = 'mallory' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	out, err = auditVerify(t, "--database", "--config", file)
	if !errors.Is(err, errSilent) || !strings.Contains(out, "FAILED database: seq 2: altered") {
		t.Errorf("verify of the altered database log: %v\n%s", err, out)
	}
}
