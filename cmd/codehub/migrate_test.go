package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/userfs"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// migrateEnv is a multi-user installation in a temporary directory, with
// a single-user code-server tree where code-server keeps it by default.
type migrateEnv struct {
	dir, conf string
	env       map[string]string
	udd       string // ~/.local/share/code-server
	base      string // the users' base path
	victim    string // a directory nobody may touch
}

func newMigrateEnv(t *testing.T) *migrateEnv {
	t.Helper()
	dir := t.TempDir()
	e := &migrateEnv{
		dir: dir, conf: filepath.Join(dir, "codehub.hcl"),
		env:    map[string]string{"HOME": filepath.Join(dir, "home")},
		udd:    filepath.Join(dir, "home", ".local", "share", "code-server"),
		base:   filepath.Join(dir, "users"),
		victim: filepath.Join(dir, "victim"),
	}
	conf := fmt.Sprintf(`
deployment_mode = "multi"
data_dir        = %q
log_level       = "warn"

multi_user {
  auth {
    database { path = %q }
    session { store = "memory" }
    password {
      memory_kib = 8192
      iterations = 1
    }
  }
  isolation { base_path = %q }
}
`, filepath.Join(dir, "data"), filepath.Join(dir, "data", "codehub.db"), e.base)
	mustOK(t, os.WriteFile(e.conf, []byte(conf), 0o600))
	mustOK(t, os.MkdirAll(filepath.Join(e.victim, "dir"), 0o755))
	mustOK(t, os.WriteFile(filepath.Join(e.victim, "secret"), []byte("victim"), 0o644))
	return e
}

func mustOK(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func (e *migrateEnv) getenv(k string) string { return e.env[k] }

// run runs codehub in-process.
func (e *migrateEnv) run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = run(context.Background(), append([]string{"codehub"}, args...), e.getenv, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), err
}

// createUser makes an account with `codehub user create` and returns its
// ID.
func (e *migrateEnv) createUser(t *testing.T, name string) string {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"codehub", "user", "create", "--config", e.conf,
		"--username", name, "--email", name + "@example.com", "--password-stdin"},
		e.getenv, strings.NewReader("correct horse battery\n"), &out, &errb)
	if err != nil {
		t.Fatalf("user create: %v\n%s", err, errb.String())
	}
	m := regexp.MustCompile(`\(([0-9a-f-]{36})\)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no user ID in %q", out.String())
	}
	return m[1]
}

func (e *migrateEnv) migrate(t *testing.T, extra ...string) (stdout, stderr string, err error) {
	t.Helper()
	return e.run(t, append([]string{"migrate-data", "--from-single-user", "--to-user", "alice", "--config", e.conf, "--yes"}, extra...)...)
}

// writeTree writes files (name -> content; a "->" prefix makes a link).
func writeMigrateTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		mustOK(t, os.MkdirAll(filepath.Dir(p), 0o755))
		if target, ok := strings.CutPrefix(content, "->"); ok {
			mustOK(t, os.Symlink(target, p))
			continue
		}
		mustOK(t, os.WriteFile(p, []byte(content), 0o644))
	}
}

// singleUserTree is a code-server user data directory.
func (e *migrateEnv) singleUserTree(t *testing.T) {
	t.Helper()
	big := make([]byte, 3<<20+17)
	rand.Read(big)
	writeMigrateTree(t, e.udd, map[string]string{
		"User/settings.json":                    `{"editor.fontSize": 15}`,
		"User/keybindings.json":                 `[{"key": "ctrl+k"}]`,
		"User/snippets/a.json":                  `{"log": {"prefix": "log"}}`,
		"User/globalStorage/x/state.vscdb":      string(big),
		"User/globalStorage/storage.json":       `{}`,
		"User/passwd":                           "->/etc/passwd", // outside: skipped
		"User/escape":                           "->../../../../victim",
		"User/settings-link.json":               "->settings.json", // inside: kept
		"Machine/settings.json":                 `{"machine": true}`,
		"extensions/pub.ext-1.0.0/package.json": `{"name": "ext", "publisher": "pub", "version": "1.0.0"}`,
		"extensions/pub.ext-1.0.0/out/main.js":  "exports.activate = () => {}",
		"extensions/extensions.json":            `[{"identifier": {"id": "pub.ext"}, "relativeLocation": "pub.ext-1.0.0"}]`,
		"logs/20260101/main.log":                "not migrated",
		"coder.json":                            "{}",
	})
	mustOK(t, os.Chmod(filepath.Join(e.udd, "extensions/pub.ext-1.0.0/out/main.js"), 0o755))
}

// snapshotTree records every path under dir with its type, mode, owner and
// content.
func snapshotMigrateTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			out[p] = "error " + err.Error()
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		uid, gid, _ := userfs.Owner(fi)
		s := fmt.Sprintf("%v %d:%d", fi.Mode(), uid, gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			s += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			s += fmt.Sprintf(" %d %x", len(b), b[:min(len(b), 64)])
			if len(b) > 64 {
				s += fmt.Sprintf(" %x", b[len(b)-64:])
			}
		}
		out[p] = s
		return nil
	})
	return out
}

func sameMigrateTree(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, was := range before {
		if now, ok := after[p]; !ok {
			t.Errorf("%s: %s disappeared", what, p)
		} else if now != was {
			t.Errorf("%s: %s changed: %.80q -> %.80q", what, p, was, now)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s appeared", what, p)
		}
	}
}

func TestMigrateDataFromSingleUser(t *testing.T) {
	e := newMigrateEnv(t)
	id := e.createUser(t, "alice")
	e.singleUserTree(t)
	src := snapshotMigrateTree(t, e.udd)
	victim := snapshotMigrateTree(t, e.victim)

	stdout, stderr, err := e.migrate(t)
	if err != nil {
		t.Fatalf("migrate-data: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	l := workspace.NewLayout(e.base, id)
	for _, want := range []string{"copied 9 files (3.0 MiB)", l.Home, "stays in " + e.udd} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	for _, want := range []string{
		"warning: skipped " + filepath.Join(e.udd, "User", "passwd") + ": a symbolic link to /etc/passwd",
		"warning: skipped " + filepath.Join(e.udd, "User", "escape"),
		"migrate-data: 9/9 files, 3.0 MiB of 3.0 MiB (100%)",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	// Every file arrived, byte for byte, with its mode.
	for from, to := range map[string]string{
		"User/settings.json":                    "state/User/settings.json",
		"User/keybindings.json":                 "state/User/keybindings.json",
		"User/snippets/a.json":                  "state/User/snippets/a.json",
		"User/globalStorage/x/state.vscdb":      "state/User/globalStorage/x/state.vscdb",
		"User/globalStorage/storage.json":       "state/User/globalStorage/storage.json",
		"Machine/settings.json":                 "state/Machine/settings.json",
		"extensions/pub.ext-1.0.0/package.json": "extensions/pub.ext-1.0.0/package.json",
		"extensions/pub.ext-1.0.0/out/main.js":  "extensions/pub.ext-1.0.0/out/main.js",
		"extensions/extensions.json":            "extensions/extensions.json",
	} {
		want, err := os.ReadFile(filepath.Join(e.udd, from))
		mustOK(t, err)
		got, err := os.ReadFile(filepath.Join(l.Home, to))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: got %d bytes (%v), want %d identical bytes", to, len(got), err, len(want))
		}
		fi, err1 := os.Stat(filepath.Join(e.udd, from))
		fo, err2 := os.Lstat(filepath.Join(l.Home, to))
		if err1 != nil || err2 != nil || fi.Mode() != fo.Mode() {
			t.Errorf("%s: mode %v, want %v", to, fo.Mode(), fi.Mode())
		}
	}
	// The in-tree link is a link again; those pointing out are not there.
	if target, err := os.Readlink(filepath.Join(l.StateUser(), "settings-link.json")); err != nil || target != "settings.json" {
		t.Errorf("settings-link.json: %q, %v", target, err)
	}
	for _, name := range []string{"passwd", "escape"} {
		if _, err := os.Lstat(filepath.Join(l.StateUser(), name)); !os.IsNotExist(err) {
			t.Errorf("the outside link %s was copied: %v", name, err)
		}
	}
	// Not IDE data: not copied.
	for _, name := range []string{"logs", "coder.json"} {
		if _, err := os.Lstat(filepath.Join(l.State(), name)); !os.IsNotExist(err) {
			t.Errorf("%s was copied", name)
		}
	}
	// The top-level links resolve.
	for link, file := range map[string]string{l.Settings(): "User/settings.json", l.Keybindings(): "User/keybindings.json"} {
		target, err := os.Readlink(link)
		if err != nil || target != "state/"+file {
			t.Errorf("%s -> %q, %v", link, target, err)
		}
		got, err := os.ReadFile(link)
		want, _ := os.ReadFile(filepath.Join(e.udd, file))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s reads %q, %v", link, got, err)
		}
	}
	if fi, err := os.Stat(l.Home); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("home: %v, %v", fi, err)
	}
	// The source is untouched; so is everything outside.
	sameMigrateTree(t, "source", src, snapshotMigrateTree(t, e.udd))
	sameMigrateTree(t, "victim", victim, snapshotMigrateTree(t, e.victim))

	// A second run refuses, lists the conflicts and changes nothing.
	dst := snapshotMigrateTree(t, l.Home)
	stdout, stderr, err = e.migrate(t)
	if err == nil {
		t.Fatalf("the second run succeeded:\n%s", stdout)
	}
	for _, want := range []string{
		"nothing was copied", "10 destination file(s) already exist",
		filepath.Join(l.Home, "state", "User", "settings.json"),
		filepath.Join(l.Home, "extensions", "pub.ext-1.0.0", "package.json"),
		"it never overwrites",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal lacks %q:\n%v", want, err)
		}
	}
	sameMigrateTree(t, "destination after the refused run", dst, snapshotMigrateTree(t, l.Home))
	sameMigrateTree(t, "source", src, snapshotMigrateTree(t, e.udd))
}

func TestMigrateDataChownsToHomeOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files to another uid needs root")
	}
	e := newMigrateEnv(t)
	id := e.createUser(t, "alice")
	e.singleUserTree(t)
	l := workspace.NewLayout(e.base, id)
	mustOK(t, os.MkdirAll(l.Home, 0o700))
	mustOK(t, os.Chown(l.Home, 4321, 4322))
	stdout, stderr, err := e.migrate(t)
	if err != nil {
		t.Fatalf("migrate-data: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "uid 4321, gid 4322") {
		t.Errorf("stdout: %s", stdout)
	}
	n := 0
	filepath.WalkDir(l.Home, func(p string, d fs.DirEntry, err error) error {
		mustOK(t, err)
		fi, err := os.Lstat(p)
		mustOK(t, err)
		if uid, gid, _ := userfs.Owner(fi); uid != 4321 || gid != 4322 {
			t.Errorf("%s belongs to %d:%d", p, uid, gid)
		}
		n++
		return nil
	})
	if n < 20 {
		t.Fatalf("only %d entries in the home", n)
	}
}

func TestMigrateDataIntoEmptyProvisionedHome(t *testing.T) {
	e := newMigrateEnv(t)
	id := e.createUser(t, "alice")
	writeMigrateTree(t, e.udd, map[string]string{"User/settings.json": "{}"})
	l := workspace.NewLayout(e.base, id)
	// A home as the workspace manager lays it out: directories, links.
	for _, d := range []string{l.StateUser(), l.Extensions(), l.Workspaces(), l.Logs()} {
		mustOK(t, os.MkdirAll(d, 0o700))
	}
	mustOK(t, os.Symlink("state/User/settings.json", l.Settings()))
	mustOK(t, os.Symlink("state/User/keybindings.json", l.Keybindings()))
	if stdout, stderr, err := e.migrate(t); err != nil {
		t.Fatalf("migrate-data: %v\n%s%s", err, stdout, stderr)
	}
	if b, err := os.ReadFile(l.Settings()); err != nil || string(b) != "{}" {
		t.Fatalf("settings: %q, %v", b, err)
	}
}

func TestMigrateDataBadInput(t *testing.T) {
	e := newMigrateEnv(t)
	e.createUser(t, "alice")
	single := filepath.Join(e.dir, "single.hcl")
	mustOK(t, os.WriteFile(single, []byte(fmt.Sprintf("deployment_mode = \"single\"\ndata_dir = %q\n", filepath.Join(e.dir, "single-data"))), 0o600))
	e.singleUserTree(t)
	mustOK(t, os.MkdirAll(e.base, 0o711))
	for _, c := range []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"single-user config", []string{"--from-single-user", "--to-user", "alice", "--config", single, "--yes"},
			"migrate-data moves data into multi-user mode, and " + single + `:1:1 sets deployment-mode = "single"`, false},
		{"no such user", []string{"--from-single-user", "--to-user", "nobody", "--config", e.conf, "--yes"},
			`no user "nobody"`, false},
		{"missing source", []string{"--from-single-user", "--to-user", "alice", "--config", e.conf, "--yes",
			"--user-data-dir", filepath.Join(e.dir, "nope")}, "no single-user data at " + filepath.Join(e.dir, "nope"), false},
		{"empty source", []string{"--from-single-user", "--to-user", "alice", "--config", e.conf, "--yes",
			"--user-data-dir", e.victim + "/dir"}, "nothing to migrate", false},
		{"source overlaps destination", []string{"--from-single-user", "--to-user", "alice", "--config", e.conf, "--yes",
			"--user-data-dir", e.base}, "overlap", false},
		{"no --yes without a terminal", []string{"--from-single-user", "--to-user", "alice", "--config", e.conf},
			"Add --yes to confirm", false},
		{"no --from-single-user", []string{"--to-user", "alice", "--config", e.conf}, "needs --from-single-user", true},
		{"no --to-user", []string{"--from-single-user", "--config", e.conf}, "needs --to-user", true},
		{"an argument", []string{"--from-single-user", "--to-user", "alice", "extra", "--config", e.conf}, "takes no arguments", true},
		{"unknown flag", []string{"--from-single-user", "--to-user", "alice", "--force"}, "flag provided but not defined", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := e.run(t, append([]string{"migrate-data"}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if _, isUsage := err.(usageError); isUsage != c.usage {
				t.Errorf("usage error: %v, want %v", isUsage, c.usage)
			}
		})
	}
	if entries, _ := os.ReadDir(e.base); len(entries) != 0 {
		t.Errorf("a failed run wrote into the base path: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "single-data", "password")); !os.IsNotExist(err) {
		t.Errorf("the single-user config made a password file: %v", err)
	}
	stdout, _, err := e.run(t, "migrate-data", "--help")
	if err != nil || !strings.Contains(stdout, "--from-single-user") {
		t.Errorf("--help: %v %s", err, stdout)
	}
	stdout, _, _ = e.run(t, "--help")
	if !strings.Contains(stdout, "migrate-data") {
		t.Errorf("codehub --help does not list migrate-data")
	}
}

// TestMigrateDataNeverWritesOutsideHome: a source with odd names and links
// that climb out, and homes holding links to the outside.
func TestMigrateDataNeverWritesOutsideHome(t *testing.T) {
	e := newMigrateEnv(t)
	id := e.createUser(t, "alice")
	bobID := e.createUser(t, "bob")
	l := workspace.NewLayout(e.base, id)
	bob := workspace.NewLayout(e.base, bobID)
	mustOK(t, os.MkdirAll(bob.StateUser(), 0o700))
	mustOK(t, os.WriteFile(filepath.Join(bob.StateUser(), "settings.json"), []byte("bob's"), 0o600))
	writeMigrateTree(t, e.udd, map[string]string{
		"User/settings.json":              `{"a": 1}`,
		`User/..\..\..\victim\pwned`:      "a backslash is part of the name",
		"User/.../x.json":                 "three dots",
		"User/..json":                     "two dots and a name",
		"User/up":                         "->../../../../..",
		"User/sneaky":                     "->snippets/../../../victim",
		"User/snippets/deep":              "->../../../../../../../../../../victim/secret",
		"User/abs":                        "->" + e.victim,
		"extensions/x-1.0.0/package.json": "{}",
		"extensions/x-1.0.0/node_modules/.bin/tool":   "->../tool/bin.js",
		"extensions/x-1.0.0/node_modules/tool/bin.js": "#!/usr/bin/env node",
	})
	outside := func() map[string]string {
		m := snapshotMigrateTree(t, e.victim)
		for k, v := range snapshotMigrateTree(t, bob.Home) {
			m[k] = v
		}
		for k, v := range snapshotMigrateTree(t, e.udd) {
			m[k] = v
		}
		return m
	}

	t.Run("odd source names", func(t *testing.T) {
		before := outside()
		stdout, stderr, err := e.migrate(t)
		if err != nil {
			t.Fatalf("migrate-data: %v\n%s%s", err, stdout, stderr)
		}
		sameMigrateTree(t, "outside the home", before, outside())
		for _, name := range []string{`..\..\..\victim\pwned`, ".../x.json", "..json"} {
			if _, err := os.Stat(filepath.Join(l.StateUser(), name)); err != nil {
				t.Errorf("%q did not arrive inside: %v", name, err)
			}
		}
		for _, name := range []string{"up", "sneaky", "snippets/deep", "abs"} {
			if !strings.Contains(stderr, "skipped "+filepath.Join(e.udd, "User", name)) {
				t.Errorf("no warning for %s:\n%s", name, stderr)
			}
			if _, err := os.Lstat(filepath.Join(l.StateUser(), name)); !os.IsNotExist(err) {
				t.Errorf("%s was copied", name)
			}
		}
		if target, err := os.Readlink(filepath.Join(l.Extensions(), "x-1.0.0/node_modules/.bin/tool")); err != nil || target != "../tool/bin.js" {
			t.Errorf("an extension's inner link: %q, %v", target, err)
		}
		// Every entry of the home is inside it, resolved.
		filepath.WalkDir(l.Home, func(p string, d fs.DirEntry, err error) error {
			mustOK(t, err)
			if d.Type()&fs.ModeSymlink != 0 {
				if r, err := filepath.EvalSymlinks(p); err == nil && !strings.HasPrefix(r, l.Home+string(filepath.Separator)) {
					t.Errorf("%s resolves to %s, outside the home", p, r)
				}
			}
			return nil
		})
		mustOK(t, os.RemoveAll(l.Home))
	})

	for _, c := range []struct {
		name  string
		setup func(t *testing.T)
		want  string
	}{
		{"state is a link to a directory outside", func(t *testing.T) {
			mustOK(t, os.Symlink(e.victim, l.State()))
		}, "lead outside the user's home"},
		{"state is a relative link to another user's home", func(t *testing.T) {
			mustOK(t, os.Symlink(filepath.Join("..", bobID, "state"), l.State()))
		}, "lead outside the user's home"},
		{"state/User is a link outside", func(t *testing.T) {
			mustOK(t, os.MkdirAll(l.State(), 0o700))
			mustOK(t, os.Symlink("../../../victim", l.StateUser()))
		}, "lead outside the user's home"},
		{"extensions is a link outside", func(t *testing.T) {
			mustOK(t, os.Symlink(e.victim+"/dir", l.Extensions()))
		}, "lead outside the user's home"},
		{"settings.json is a link to /etc/passwd", func(t *testing.T) {
			mustOK(t, os.Symlink("/etc/passwd", l.Settings()))
		}, "a link to /etc/passwd, not state/User/settings.json"},
		{"a file's name is taken by a link outside", func(t *testing.T) {
			mustOK(t, os.MkdirAll(l.StateUser(), 0o700))
			mustOK(t, os.Symlink(e.victim+"/secret", filepath.Join(l.StateUser(), "settings.json")))
		}, "1 destination file(s) already exist"},
	} {
		t.Run(c.name, func(t *testing.T) {
			mustOK(t, os.MkdirAll(l.Home, 0o700))
			t.Cleanup(func() { os.RemoveAll(l.Home) })
			c.setup(t)
			before, home := outside(), snapshotMigrateTree(t, l.Home)
			_, _, err := e.migrate(t)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nothing was copied") {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			sameMigrateTree(t, "outside the home", before, outside())
			sameMigrateTree(t, "the home", home, snapshotMigrateTree(t, l.Home))
		})
	}
	if _, err := os.Stat(filepath.Join(e.dir, "victim", "pwned")); !os.IsNotExist(err) {
		t.Error("victim/pwned exists")
	}
}

// TestMigrateCopyRollsBack: a failure halfway removes what was copied.
func TestMigrateCopyRollsBack(t *testing.T) {
	src, home := t.TempDir(), t.TempDir()
	writeMigrateTree(t, src, map[string]string{"a/1": "one", "a/2": "two", "b/3": "three"})
	sfs, err := userfs.Open(src)
	mustOK(t, err)
	defer sfs.Close()
	m, err := planMigration([]migrateSource{{dir: src, to: "state/User", fs: sfs}}, map[string]string{"settings.json": "state/User/settings.json"})
	mustOK(t, err)
	mustOK(t, os.Remove(filepath.Join(src, "b", "3"))) // vanishes before its turn
	dst, err := userfs.Open(home)
	mustOK(t, err)
	defer dst.Close()
	mustOK(t, m.check(dst))
	var out bytes.Buffer
	err = m.copy(context.Background(), dst, migrateOwner{}, newProgress(&out, len(m.files), m.bytes))
	if err == nil || !strings.Contains(err.Error(), "entries copied before the error were removed") {
		t.Fatalf("copy = %v", err)
	}
	if entries, _ := os.ReadDir(home); len(entries) != 0 {
		t.Fatalf("left in the home: %v", entries)
	}
}

func TestMigrateProgress(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(0, 0)
	p := newProgress(&out, 4, 4096)
	p.now = func() time.Time { return now }
	p.last = now
	p.add(1024)
	p.fileDone()
	if out.Len() != 0 {
		t.Fatalf("drew before the interval: %q", out.String())
	}
	now = now.Add(6 * time.Second)
	p.add(1024)
	if got := out.String(); got != "migrate-data: 1/4 files, 2.0 KiB of 4.0 KiB (50%)\n" {
		t.Fatalf("plain line %q", got)
	}
	out.Reset()
	p.tty = true
	p.draw()
	if got := out.String(); got != "\r[===============>              ]  50%  2.0 KiB / 4.0 KiB  1/4 files\x1b[K" {
		t.Fatalf("bar %q", got)
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 3<<20 + 17: "3.0 MiB", 5 << 30: "5.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
