package userfs_test

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/codehub-dev/codehub/internal/userfs"
)

// mustOpen roots an FS at dir, closed at the end of the test.
func mustOpen(tb testing.TB, dir string) *userfs.FS {
	tb.Helper()
	f, err := userfs.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

func TestValidate(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", userfs.MaxNameLength+1)
	bad := map[string]string{
		"":                         "empty name",
		"/etc/passwd":              "absolute",
		"/":                        "absolute",
		"//x":                      "absolute",
		"..":                       `".."`,
		"../x":                     `".."`,
		"a/..":                     `".."`,
		"a/../b":                   `".."`,
		"a/b/../../..":             `".."`,
		"./../x":                   `".."`,
		"a//b":                     "empty path element",
		"a/":                       "empty path element",
		"a\x00b":                   "NUL",
		"a\x00/../../etc":          "NUL",
		long:                       "longer than 4096",
		strings.Repeat("a/", 2049): "longer than 4096",
	}
	for name, want := range bad {
		err := userfs.Validate(name)
		if !errors.Is(err, userfs.ErrInvalidName) || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%.40q) = %v, want ErrInvalidName mentioning %q", name, err, want)
		}
	}
	if err := userfs.Validate(long); len(err.Error()) > 200 {
		t.Errorf("the message for a long name is not shortened: %d bytes", len(err.Error()))
	}
	good := []string{".", "a", "a/b", "./a", "...", "..a", "a..", "a/./b", `..\..\etc`, `a\b`, " ", strings.Repeat("a", userfs.MaxNameLength)}
	for _, name := range good {
		if err := userfs.Validate(name); err != nil {
			t.Errorf("Validate(%.40q) = %v, want nil", name, err)
		}
	}
}

func TestWriteReadStatRemove(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := mustOpen(t, dir)
	if f.Dir() != dir {
		t.Fatalf("Dir() = %q", f.Dir())
	}
	if err := f.MkdirAll("a/b/c", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := f.Mkdir("a/d", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteFile("a/b/c/f.txt", []byte("one"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteFile("a/b/c/f.txt", []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := f.ReadFile("a/b/c/f.txt")
	if err != nil || string(b) != "two" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
	fi, err := f.Stat("a/b/c/f.txt")
	if err != nil || fi.Mode().Perm() != 0o640 || fi.Size() != 3 {
		t.Fatalf("Stat = %v, %v; want mode 0640 (exact, not masked) and size 3", fi, err)
	}
	// The mode is exact, whatever the umask.
	if err := f.WriteFile("g", nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if fi, _ := f.Stat("g"); fi.Mode().Perm() != 0o666 {
		t.Errorf("mode %v, want 0666", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dir, "a", "b", "c", "f.txt")); err != nil {
		t.Fatal(err)
	}
	file, err := f.Open("a/b/c/f.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(file)
	file.Close()
	if string(b) != "two" {
		t.Fatalf("Open read %q", b)
	}

	entries, err := f.ReadDir("a")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"b", "d"}) {
		t.Fatalf("ReadDir = %v", names)
	}
	noTemp(t, dir)

	if err := f.Remove("a/b/c/f.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Stat("a/b/c/f.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after Remove: %v", err)
	}
	if err := f.Remove("."); !errors.Is(err, userfs.ErrInvalidName) {
		t.Fatalf("Remove(.) = %v", err)
	}
	if err := f.WriteFile(".", nil, 0o600); !errors.Is(err, userfs.ErrInvalidName) {
		t.Fatalf("WriteFile(.) = %v", err)
	}
	if err := f.WriteFile("x", nil, fs.ModeSetuid|0o755); err == nil {
		t.Fatal("WriteFile took a setuid mode")
	}
}

func TestOpenMissing(t *testing.T) {
	t.Parallel()
	if _, err := userfs.Open(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a missing directory: %v", err)
	}
}

func TestWriteFromNoReplace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := mustOpen(t, dir)
	n, err := f.WriteFrom("new", strings.NewReader("hello"), 0o600, userfs.WriteOptions{NoReplace: true})
	if err != nil || n != 5 {
		t.Fatalf("WriteFrom = %d, %v", n, err)
	}
	_, err = f.WriteFrom("new", strings.NewReader("again"), 0o600, userfs.WriteOptions{NoReplace: true})
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second NoReplace write: %v, want ErrExist", err)
	}
	if b, _ := f.ReadFile("new"); string(b) != "hello" {
		t.Fatalf("content changed to %q", b)
	}
	// A dangling link counts as existing.
	if err := f.Symlink("nowhere", "dangling"); err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteFrom("dangling", strings.NewReader("x"), 0o600, userfs.WriteOptions{NoReplace: true})
	if !errors.Is(err, userfs.ErrSymlink) {
		t.Fatalf("write over a dangling link: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("the write followed the dangling link")
	}
	noTemp(t, dir)
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestWriteFailureLeavesOldContent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := mustOpen(t, dir)
	if err := f.WriteFile("f", []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := f.WriteFrom("f", io.MultiReader(strings.NewReader("partial"), failingReader{}), 0o600, userfs.WriteOptions{})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("WriteFrom = %v", err)
	}
	if b, _ := f.ReadFile("f"); string(b) != "old" {
		t.Fatalf("content %q after a failed write", b)
	}
	if _, err := f.WriteFrom("missing-dir/f", strings.NewReader("x"), 0o600, userfs.WriteOptions{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("write into a missing directory: %v", err)
	}
	noTemp(t, dir)
}

func TestSymlinkInside(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := mustOpen(t, dir)
	if err := f.MkdirAll("state/User", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteFile("state/User/settings.json", []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ target, name string }{
		{"state/User/settings.json", "settings.json"},
		{"state/User/keybindings.json", "keybindings.json"}, // dangling, inside
		{"../settings.json", "state/up.json"},
		{"./User/../User/settings.json", "state/dots.json"},
		{"User", "state/userlink"},
	} {
		if err := f.Symlink(c.target, c.name); err != nil {
			t.Errorf("Symlink(%q, %q) = %v", c.target, c.name, err)
		}
	}
	if got, err := f.Readlink("settings.json"); err != nil || got != "state/User/settings.json" {
		t.Fatalf("Readlink = %q, %v", got, err)
	}
	for _, name := range []string{"settings.json", "state/up.json", "state/dots.json", "state/userlink/settings.json"} {
		if b, err := f.ReadFile(name); err != nil || string(b) != "{}" {
			t.Errorf("ReadFile(%q) = %q, %v", name, b, err)
		}
	}
	// Writes refuse to go through or replace a link.
	if err := f.WriteFile("settings.json", []byte("x"), 0o600); !errors.Is(err, userfs.ErrSymlink) {
		t.Fatalf("write over a link: %v", err)
	}
	fi, err := f.Lstat("settings.json")
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("Lstat: %v, %v", fi, err)
	}
}

func TestWalkDoesNotFollowLinks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := mustOpen(t, dir)
	must(t, f.MkdirAll("a/b", 0o755))
	must(t, f.WriteFile("a/b/f", []byte("x"), 0o600))
	must(t, f.Symlink("a", "loop-to-a"))
	must(t, f.Symlink("..", "a/up"))
	var got []string
	err := f.Walk(".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		kind := "f"
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			kind = "l"
		case d.IsDir():
			kind = "d"
		}
		got = append(got, kind+" "+name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"d .", "d a", "d a/b", "f a/b/f", "l a/up", "l loop-to-a"}
	if !slices.Equal(got, want) {
		t.Fatalf("Walk = %q, want %q", got, want)
	}
	// A link as the walk's start is reported, not entered.
	got = nil
	must(t, f.Walk("loop-to-a", func(name string, d fs.DirEntry, err error) error {
		got = append(got, name)
		return err
	}))
	if !slices.Equal(got, []string{"loop-to-a"}) {
		t.Fatalf("Walk(link) = %q", got)
	}
}

func TestChown(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("changing owners needs root")
	}
	dir := t.TempDir()
	f := mustOpen(t, dir)
	must(t, f.WriteFile("f", []byte("x"), 0o600))
	must(t, f.Symlink("f", "l"))
	must(t, f.Chown("f", 1234, 5678))
	must(t, f.Lchown("l", 4321, 8765))
	_, err := f.WriteFrom("g", strings.NewReader("y"), 0o600, userfs.WriteOptions{Chown: true, UID: 2000, GID: 3000})
	must(t, err)
	for name, want := range map[string][2]int{"f": {1234, 5678}, "l": {4321, 8765}, "g": {2000, 3000}} {
		fi, err := f.Lstat(name)
		must(t, err)
		uid, gid, ok := userfs.Owner(fi)
		if !ok || uid != want[0] || gid != want[1] {
			t.Errorf("%s: owner %d:%d, want %d:%d", name, uid, gid, want[0], want[1])
		}
	}
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// noTemp fails if a temporary file of an atomic write was left behind.
func noTemp(tb testing.TB, dir string) {
	tb.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".userfs-") {
			tb.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}
