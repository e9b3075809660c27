package userfs_test

// Tests that try to break out of a user's directory. Each sets up
//
//	<base>/alice/    the FS root
//	<base>/bob/      another user's home
//	<base>/victim/   a directory nobody may touch
//
// and checks, after every attack, that bob and victim are exactly as before
// and that nothing new appeared in <base>.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/codehub-dev/codehub/internal/userfs"
)

type arena struct {
	base, home, victim, bob string
	f                       *userfs.FS
	before                  map[string]string
}

func newArena(t *testing.T) *arena {
	t.Helper()
	base := t.TempDir()
	a := &arena{
		base: base, home: filepath.Join(base, "alice"),
		victim: filepath.Join(base, "victim"), bob: filepath.Join(base, "bob"),
	}
	for _, d := range []string{a.home, filepath.Join(a.victim, "dir"), a.bob} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(filepath.Join(a.victim, "secret"), []byte("victim's secret"), 0o644))
	must(t, os.WriteFile(filepath.Join(a.victim, "dir", "f"), []byte("victim's file"), 0o644))
	must(t, os.WriteFile(filepath.Join(a.bob, "settings.json"), []byte(`{"bob":true}`), 0o600))
	a.f = mustOpen(t, a.home)
	a.before = snapshot(t, base, a.home)
	t.Cleanup(func() { a.checkOutside(t) })
	return a
}

// snapshot records every path under base, except under skip, with its
// type, mode, owner and content.
func snapshot(tb testing.TB, base, skip string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			out[p] = "error " + err.Error()
			return nil
		}
		if p == skip {
			return filepath.SkipDir
		}
		fi, err := os.Lstat(p)
		if err != nil {
			out[p] = "error " + err.Error()
			return nil
		}
		uid, gid, _ := userfs.Owner(fi)
		s := fmt.Sprintf("%v %d:%d", fi.Mode(), uid, gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			s += " -> " + t
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			s += " " + string(b)
		}
		out[p] = s
		return nil
	})
	return out
}

func (a *arena) checkOutside(tb testing.TB) {
	tb.Helper()
	after := snapshot(tb, a.base, a.home)
	for p, was := range a.before {
		if now, ok := after[p]; !ok {
			tb.Errorf("outside the root, %s disappeared", p)
		} else if now != was {
			tb.Errorf("outside the root, %s changed: %q -> %q", p, was, now)
		}
	}
	for p := range after {
		if _, ok := a.before[p]; !ok {
			tb.Errorf("outside the root, %s appeared", p)
		}
	}
	if b, err := os.ReadFile("/etc/passwd"); err == nil && strings.Contains(string(b), "pwned") {
		tb.Errorf("/etc/passwd was written")
	}
}

// op is one method of FS applied to a name.
type op struct {
	name string
	do   func(f *userfs.FS, name string) error
}

// writeOps change the disk when they succeed.
var writeOps = []op{
	{"WriteFile", func(f *userfs.FS, n string) error { return f.WriteFile(n, []byte("pwned"), 0o666) }},
	{"WriteFrom", func(f *userfs.FS, n string) error {
		_, err := f.WriteFrom(n, strings.NewReader("pwned"), 0o666, userfs.WriteOptions{NoReplace: true})
		return err
	}},
	{"MkdirAll", func(f *userfs.FS, n string) error { return f.MkdirAll(n+"/pwned", 0o777) }},
	{"Mkdir", func(f *userfs.FS, n string) error { return f.Mkdir(n, 0o777) }},
	{"Remove", func(f *userfs.FS, n string) error { return f.Remove(n) }},
	{"Chown", func(f *userfs.FS, n string) error { return f.Chown(n, 4242, 4242) }},
	{"Symlink", func(f *userfs.FS, n string) error { return f.Symlink("x", n) }},
}

// readOps only look.
var readOps = []op{
	{"ReadFile", func(f *userfs.FS, n string) error { _, err := f.ReadFile(n); return err }},
	{"Open", func(f *userfs.FS, n string) error {
		file, err := f.Open(n)
		if err == nil {
			file.Close()
		}
		return err
	}},
	{"Stat", func(f *userfs.FS, n string) error { _, err := f.Stat(n); return err }},
	{"ReadDir", func(f *userfs.FS, n string) error { _, err := f.ReadDir(n); return err }},
}

// nameOps take the name but do not follow a link in its last element.
var nameOps = []op{
	{"Lstat", func(f *userfs.FS, n string) error { _, err := f.Lstat(n); return err }},
	{"Readlink", func(f *userfs.FS, n string) error { _, err := f.Readlink(n); return err }},
	{"Lchown", func(f *userfs.FS, n string) error { return f.Lchown(n, 4242, 4242) }},
	{"Walk", func(f *userfs.FS, n string) error {
		return f.Walk(n, func(_ string, _ fs.DirEntry, err error) error { return err })
	}},
}

func allOps() []op { return slices.Concat(writeOps, readOps, nameOps) }

// TestInvalidNamesNeverTouchTheDisk runs every method with names that climb
// out, are absolute, carry NUL bytes or are too long.
func TestInvalidNamesNeverTouchTheDisk(t *testing.T) {
	t.Parallel()
	a := newArena(t)
	must(t, a.f.MkdirAll("sub/deeper", 0o755))
	var names []string
	// ".." in every position, with and without a real path after it.
	for _, tail := range []string{"", "/victim", "/victim/secret", "/victim/dir/f", "/bob/settings.json", "/victim/new"} {
		for _, head := range []string{"..", "./..", "sub/..", "sub/../..", "sub/deeper/../../..", "sub/./..", "../alice/..", "sub/deeper/.."} {
			names = append(names, head+tail)
		}
	}
	names = append(names,
		"/etc/passwd", a.victim, filepath.Join(a.victim, "secret"), a.bob+"/settings.json", "/", "//etc/passwd",
		"sub\x00/../../victim/secret", "\x00", "victim\x00",
		strings.Repeat("x/", 2048)+"x", strings.Repeat("../", 1366)+"victim",
		"", "sub//x", "sub/",
	)
	for _, name := range names {
		for _, o := range allOps() {
			err := o.do(a.f, name)
			if !errors.Is(err, userfs.ErrInvalidName) {
				t.Errorf("%s(%.60q) = %v, want ErrInvalidName", o.name, name, err)
			}
		}
	}
	// The symlink target gets the same scrutiny.
	for _, target := range []string{"", "/etc/passwd", a.victim, "../victim", "sub/../../victim", "..", "x\x00", strings.Repeat("a", 4097)} {
		if err := a.f.Symlink(target, "l"); err == nil {
			t.Errorf("Symlink(%.40q) succeeded", target)
		}
		if err := a.f.CheckLink(target, "l"); err == nil {
			t.Errorf("CheckLink(%.40q) accepted", target)
		}
	}
	if _, err := os.Lstat(filepath.Join(a.home, "l")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused link exists: %v", err)
	}
}

// plantLinks makes links inside the tree that point out of it.
func (a *arena) plantLinks(t *testing.T) map[string]string {
	t.Helper()
	links := map[string]string{
		"passwd":       "/etc/passwd",
		"to-bob":       "../bob",
		"bob-settings": "../bob/settings.json",
		"victim-dir":   a.victim, // absolute, to a directory outside
		"victim-rel":   "../victim",
		"chain1":       "chain2",
		"chain2":       "sub/chain3",
		"sub/chain3":   "../../victim/secret", // a chain that ends outside
		"dirchain":     "sub/up",
		"sub/up":       "..", // the root itself: fine alone…
		"sub/up2":      "../..",
		"dot":          ".",
	}
	must(t, os.MkdirAll(filepath.Join(a.home, "sub"), 0o755))
	for name, target := range links {
		must(t, os.Symlink(target, filepath.Join(a.home, filepath.FromSlash(name))))
	}
	a.before = snapshot(t, a.base, a.home)
	return links
}

// TestLinksPointingOutside plants links to /etc/passwd, another user's
// home, a directory outside and a chain that ends outside, then goes
// through them with every method.
func TestLinksPointingOutside(t *testing.T) {
	t.Parallel()
	a := newArena(t)
	a.plantLinks(t)
	// Through the link: every method must refuse with ErrEscape.
	through := []string{
		"passwd", "to-bob/settings.json", "bob-settings", "victim-dir/secret", "victim-dir/dir/f",
		"victim-rel/secret", "victim-rel/new", "chain1", "sub/chain3", "dirchain/../victim/secret",
		"sub/up2/victim/secret", "dot/../victim/secret", "to-bob", "victim-dir", "victim-rel/dir",
	}
	for _, name := range through {
		for _, o := range slices.Concat(writeOps, readOps) {
			if o.name == "Remove" || o.name == "Symlink" {
				continue // they act on the last element itself; below
			}
			err := o.do(a.f, name)
			if err == nil {
				t.Errorf("%s(%q) succeeded", o.name, name)
				continue
			}
			// Mkdir on the link's own name finds it there.
			if !errors.Is(err, userfs.ErrEscape) && !errors.Is(err, userfs.ErrSymlink) && !errors.Is(err, userfs.ErrInvalidName) &&
				!(o.name == "Mkdir" && errors.Is(err, fs.ErrExist)) {
				t.Errorf("%s(%q) = %v, want ErrEscape or ErrSymlink", o.name, name, err)
			}
		}
	}
	// Below an outside directory, even the last-element methods refuse.
	for _, name := range []string{"victim-dir/secret", "victim-rel/secret", "to-bob/settings.json", "sub/up2/victim"} {
		for _, o := range slices.Concat(nameOps, []op{writeOps[4], writeOps[6]}) {
			if err := o.do(a.f, name); !errors.Is(err, userfs.ErrEscape) {
				t.Errorf("%s(%q) = %v, want ErrEscape", o.name, name, err)
			}
		}
	}
	// Links are seen as links and can be removed; their targets stay.
	for _, name := range []string{"passwd", "victim-dir", "chain1"} {
		fi, err := a.f.Lstat(name)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("Lstat(%q) = %v, %v", name, fi, err)
		}
	}
	must(t, a.f.Remove("passwd"))
	must(t, a.f.Remove("victim-dir"))
	// The walk lists the links and never enters them.
	var seen []string
	must(t, a.f.Walk(".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		seen = append(seen, name)
		return nil
	}))
	for _, name := range seen {
		if strings.Contains(name, "secret") || strings.Contains(name, "settings.json") || strings.HasSuffix(name, "/f") {
			t.Errorf("the walk went outside: %q", name)
		}
	}
}

func TestSymlinkRefusesEscapingTargets(t *testing.T) {
	t.Parallel()
	a := newArena(t)
	a.plantLinks(t)
	must(t, os.MkdirAll(filepath.Join(a.home, "real/deep"), 0o755))
	for _, c := range []struct{ target, name string }{
		{"/etc/passwd", "l"},
		{a.victim + "/secret", "l"},
		{"../victim", "l"},
		{"../bob/settings.json", "l"},
		{"../../victim", "real/l"},
		{"../../../victim", "real/deep/l"},
		{"nonexistent/../../victim", "l"},         // lexically out, though it does not resolve today
		{"real/../../victim", "l"},                // ".." after a name
		{"victim-rel/secret", "l"},                // through an escaping link
		{"chain1", "l"},                           // to a chain that ends outside
		{"dirchain/../victim", "l"},               // through a link to the root, then up
		{"../victim", "dot/l"},                    // lexically fine from "dot", but dot is the root
		{"../victim/secret", "sub/up/l"},          // the same through sub/up
		{"up2", "sub/l"},                          // a link to a link that climbs out
		{strings.Repeat("a/../", 10) + "..", "l"}, // a long way to one level up
		{strings.Repeat("../", 40) + "etc/passwd", "l"},
	} {
		err := a.f.Symlink(c.target, c.name)
		if !errors.Is(err, userfs.ErrEscape) {
			t.Errorf("Symlink(%q, %q) = %v, want ErrEscape", c.target, c.name, err)
		}
		if _, err := os.Lstat(filepath.Join(a.home, c.name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the refused link %q exists", c.name)
		}
	}
}

// TestDirectoryReplacedByLink is the TOCTOU attack: a directory the
// gateway used a moment ago is renamed away and a link to the outside put
// in its place; later calls through the old path must not follow it.
func TestDirectoryReplacedByLink(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"REL", "ABS"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			a := newArena(t)
			f := a.f
			must(t, f.MkdirAll("d/e", 0o755))
			must(t, f.WriteFile("d/file", []byte("mine"), 0o644))
			must(t, f.WriteFile("d/e/file", []byte("mine"), 0o644))
			// The swap, behind the FS's back.
			must(t, os.Rename(filepath.Join(a.home, "d"), filepath.Join(a.home, "d-moved")))
			link := "../victim"
			if target == "ABS" {
				link = a.victim
			}
			must(t, os.Symlink(link, filepath.Join(a.home, "d")))
			for _, name := range []string{"d/file", "d/secret", "d/dir/f", "d/e/file", "d/new", "d/dir/new"} {
				for _, o := range slices.Concat(writeOps, readOps) {
					if err := o.do(f, name); !errors.Is(err, userfs.ErrEscape) {
						t.Errorf("%s(%q) after the swap = %v, want ErrEscape", o.name, name, err)
					}
				}
			}
			if b, err := f.ReadFile("d-moved/file"); err != nil || string(b) != "mine" {
				t.Errorf("the moved directory: %q, %v", b, err)
			}
		})
	}
}

// TestSwapDuringWrite swaps the directory between WriteFrom's temporary
// file and its rename: the write lands in the directory it opened (now
// d-moved), never outside.
func TestSwapDuringWrite(t *testing.T) {
	t.Parallel()
	a := newArena(t)
	must(t, a.f.MkdirAll("d", 0o755))
	userfs.SetBeforeCommit(a.f, func() {
		must(t, os.Rename(filepath.Join(a.home, "d"), filepath.Join(a.home, "d-moved")))
		must(t, os.Symlink("../victim", filepath.Join(a.home, "d")))
	})
	err := a.f.WriteFile("d/secret", []byte("pwned"), 0o644)
	if err != nil {
		t.Fatalf("WriteFile = %v", err)
	}
	b, err := os.ReadFile(filepath.Join(a.home, "d-moved", "secret"))
	if err != nil || string(b) != "pwned" {
		t.Fatalf("the write did not land in the directory it opened: %q, %v", b, err)
	}
	noTemp(t, a.base)
}

// TestSwapRace flips a directory between real and a link to the outside
// while writes, reads and mkdirs go through it.
func TestSwapRace(t *testing.T) {
	t.Parallel()
	a := newArena(t)
	must(t, a.f.MkdirAll("d", 0o755))
	real, moved, link := filepath.Join(a.home, "d"), filepath.Join(a.home, "d-real"), filepath.Join(a.home, "d-link")
	must(t, os.Symlink("../victim", link))
	var stop atomic.Bool
	var swapper, writers sync.WaitGroup
	swapper.Go(func() {
		// Swap d between the real directory and the link, by renames.
		for i := 0; !stop.Load(); i++ {
			if i%2 == 0 {
				os.Rename(real, moved)
				os.Rename(link, real)
			} else {
				os.Rename(real, link)
				os.Rename(moved, real)
			}
		}
	})
	var escaped atomic.Int32
	for w := range 4 {
		writers.Go(func() {
			for i := range 100 {
				a.f.WriteFile("d/secret", []byte("pwned"), 0o644)
				a.f.MkdirAll(fmt.Sprintf("d/dir/m%d-%d", w, i), 0o755)
				a.f.Remove("d/dir/f")
				a.f.Symlink("x", "d/dir/l")
				if b, err := a.f.ReadFile("d/secret"); err == nil && string(b) == "victim's secret" {
					escaped.Add(1)
				}
			}
		})
	}
	writers.Wait()
	stop.Store(true)
	swapper.Wait()
	if escaped.Load() > 0 {
		t.Errorf("%d reads returned the victim's file", escaped.Load())
	}
}

// TestBackslashesArePlainCharacters: on Unix a backslash is part of a
// file name, so "..\..\victim\secret" is one odd name inside the root.
func TestBackslashesArePlainCharacters(t *testing.T) {
	t.Parallel()
	if filepath.Separator == '\\' {
		t.Skip("a backslash is a separator here; Validate refuses it")
	}
	a := newArena(t)
	for _, name := range []string{`..\..\victim\secret`, `..\victim`, `\`, `sub\..\..`, `C:\Windows`} {
		must(t, a.f.WriteFile(name, []byte("inside"), 0o644))
		entries, err := a.f.ReadDir(".")
		must(t, err)
		found := false
		for _, e := range entries {
			found = found || e.Name() == name
		}
		if !found {
			t.Errorf("%q is not one entry of the root", name)
		}
		must(t, a.f.Remove(name))
	}
	must(t, a.f.MkdirAll(`a\b/c`, 0o755))
	if fi, err := os.Stat(filepath.Join(a.home, `a\b`, "c")); err != nil || !fi.IsDir() {
		t.Fatalf(`MkdirAll("a\b/c"): %v`, err)
	}
	if err := a.f.Symlink(`..\victim`, "bs"); err != nil {
		t.Fatalf("a backslash target is a plain name: %v", err)
	}
	if _, err := a.f.ReadFile("bs"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("reading through the backslash link: %v", err)
	}
}

func TestLongNames(t *testing.T) {
	t.Parallel()
	a := newArena(t)
	// One element longer than the file system allows: the OS refuses.
	if err := a.f.WriteFile(strings.Repeat("n", 300), nil, 0o644); err == nil {
		t.Error("a 300-byte element was written")
	}
	// Deep but valid: 2,100 bytes of nesting.
	deep := strings.TrimSuffix(strings.Repeat("directory-013/", 150), "/")
	must(t, a.f.MkdirAll(deep, 0o755))
	must(t, a.f.WriteFile(deep+"/f", []byte("deep"), 0o644))
	// Longer than MaxNameLength: refused before the disk.
	over := strings.TrimSuffix(strings.Repeat("d/", 2049), "/")
	if err := a.f.MkdirAll(over, 0o755); !errors.Is(err, userfs.ErrInvalidName) {
		t.Errorf("MkdirAll of %d bytes = %v", len(over), err)
	}
}
