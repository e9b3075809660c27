package userfs

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzNames opens, reads, stats and lists any name in a user's tree that
// holds links out of it (to a file, to a directory, to the parent): the
// secret outside is never read, a file is never found outside the tree,
// and what Validate accepts is relative, clean and without "..".
func FuzzNames(f *testing.F) {
	for _, s := range []string{
		"a.txt", ".", "sub/b.txt", "../secret", "/etc/passwd", "out/secret", "outfile", "sub/../../secret", "loop/x",
		"parent/secret", "sub//b.txt", "sub/", "sub/./b.txt", "a.txt\x00", `..\secret`, "up/up/secret",
	} {
		f.Add(s)
	}
	base := f.TempDir()
	secret := []byte("the secret outside")
	must := func(err error) {
		if err != nil {
			f.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(base, "secret"), secret, 0o600))
	home := filepath.Join(base, "home")
	must(os.MkdirAll(filepath.Join(home, "sub"), 0o700))
	must(os.WriteFile(filepath.Join(home, "a.txt"), []byte("mine"), 0o600))
	must(os.WriteFile(filepath.Join(home, "sub", "b.txt"), []byte("mine too"), 0o600))
	must(os.Symlink(base, filepath.Join(home, "out")))
	must(os.Symlink(filepath.Join(base, "secret"), filepath.Join(home, "outfile")))
	must(os.Symlink("..", filepath.Join(home, "parent")))
	must(os.Symlink("sub/../..", filepath.Join(home, "up")))
	must(os.Symlink("loop", filepath.Join(home, "loop")))
	fsys, err := Open(home)
	must(err)
	f.Cleanup(func() { fsys.Close() })
	f.Fuzz(func(t *testing.T, name string) {
		if err := Validate(name); err == nil {
			if strings.HasPrefix(name, "/") || strings.Contains(name, "\x00") {
				t.Fatalf("Validate(%q) accepted", name)
			}
			for _, e := range strings.Split(name, "/") {
				if e == ".." || e == "" {
					t.Fatalf("Validate(%q) accepted", name)
				}
			}
		}
		if b, err := fsys.ReadFile(name); err == nil && bytes.Contains(b, secret) {
			t.Fatalf("ReadFile(%q) read the secret outside the tree", name)
		}
		if file, err := fsys.Open(name); err == nil {
			p, _ := filepath.EvalSymlinks("/proc/self/fd/" + strconv.Itoa(int(file.Fd())))
			file.Close()
			if p != "" && p != home && !strings.HasPrefix(p, home+"/") {
				t.Fatalf("Open(%q) opened %s, outside the tree", name, p)
			}
		}
		if fi, err := fsys.Stat(name); err == nil && fi.Name() == "secret" && !fi.IsDir() {
			t.Fatalf("Stat(%q) found the secret outside the tree", name)
		}
		if entries, err := fsys.ReadDir(name); err == nil {
			for _, e := range entries {
				if e.Name() == "secret" || e.Name() == "home" {
					t.Fatalf("ReadDir(%q) listed the directory outside the tree", name)
				}
			}
		}
	})
}
