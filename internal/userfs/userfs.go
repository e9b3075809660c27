// Package userfs is the one scoped layer through which the gateway reads and
// writes a user's tree. An FS is rooted at one directory (the user's home)
// and every method takes a slash-separated name relative to it; nothing it
// does can reach outside that directory, whether by "..", an absolute path,
// a symbolic link pointing out, or a directory swapped for such a link
// between two calls.
//
// It is built on os.Root, which resolves every name component by component
// from a directory handle (openat with O_NOFOLLOW on Unix) and refuses a
// symbolic link whose target leaves the root. On top of that, names are
// checked before the disk is touched (Validate), writes are atomic, and
// symbolic links the gateway creates may only point inside the tree.
package userfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
)

// MaxNameLength is the longest name a method accepts, in bytes (Linux's
// PATH_MAX).
const MaxNameLength = 4096

// Errors the methods return, wrapped with the name at fault; test them with
// errors.Is.
var (
	// ErrInvalidName is a name refused before touching the disk: empty,
	// absolute, with a ".." or empty element, a NUL byte, or too long.
	ErrInvalidName = errors.New("invalid name")
	// ErrEscape is a name or link target that resolves outside the root,
	// through a symbolic link or "..".
	ErrEscape = errors.New("path escapes the user's directory")
	// ErrSymlink is a write aimed at an existing symbolic link: the gateway
	// neither follows nor silently replaces one.
	ErrSymlink = errors.New("is a symbolic link; write its target instead")
)

// FS is one user's tree. Its methods are safe for concurrent use.
type FS struct {
	root *os.Root
	dir  string

	// beforeCommit, when set (by tests), runs in WriteFrom between writing
	// the temporary file and moving it into place.
	beforeCommit func()
}

// Open roots an FS at dir, which must exist and be a directory. dir itself
// is resolved by the operating system (it may be or contain a symbolic
// link); everything below it is confined.
func Open(dir string) (*FS, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("userfs: %w", err)
	}
	return &FS{root: r, dir: dir}, nil
}

// Close releases the directory handle.
func (f *FS) Close() error { return f.root.Close() }

// Dir is the directory the FS was opened at, for messages.
func (f *FS) Dir() string { return f.dir }

// Validate checks a name before it is used: it must be a relative,
// slash-separated path of at most MaxNameLength bytes, without NUL bytes,
// ".." elements or empty elements ("a//b", "a/"). "." names the root
// itself. A backslash is an ordinary character of a file name, never a
// separator (on Windows, where it cannot be one, it is refused). Errors
// wrap ErrInvalidName.
func Validate(name string) error {
	bad := func(reason string) error {
		return fmt.Errorf("%w %s: %s", ErrInvalidName, quote(name), reason)
	}
	switch {
	case name == "":
		return bad("empty name")
	case len(name) > MaxNameLength:
		return bad(fmt.Sprintf("longer than %d bytes", MaxNameLength))
	case strings.IndexByte(name, 0) >= 0:
		return bad("contains a NUL byte")
	case name[0] == '/' || isAbsOS(name):
		return bad("absolute path; names are relative to the user's directory")
	case isWindows && strings.ContainsAny(name, `\:`):
		return bad(`"\" and ":" are not allowed in names on Windows`)
	}
	for elem := range strings.SplitSeq(name, "/") {
		switch elem {
		case "..":
			return bad(`".." is not allowed`)
		case "":
			return bad("empty path element")
		}
	}
	return nil
}

const isWindows = runtime.GOOS == "windows"

// isAbsOS reports an absolute path or a volume name of the platform.
func isAbsOS(name string) bool { return filepath.IsAbs(name) || filepath.VolumeName(name) != "" }

// isNotDir reports a path through something that is not a directory.
func isNotDir(err error) bool { return errors.Is(err, syscall.ENOTDIR) }

// quote shortens a name for an error message.
func quote(name string) string {
	if len(name) > 80 {
		return fmt.Sprintf("%q… (%d bytes)", name[:80], len(name))
	}
	return fmt.Sprintf("%q", name)
}

// osName turns a validated name into the form os.Root takes.
func osName(name string) string { return filepath.FromSlash(name) }

// escapeText is the message of os.Root's (unexported) escape error.
const escapeText = "path escapes from parent"

// wrap maps os.Root's escape error to ErrEscape and leaves others alone.
func wrap(err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Err != nil && pe.Err.Error() == escapeText {
		return &fs.PathError{Op: pe.Op, Path: filepath.ToSlash(pe.Path), Err: ErrEscape}
	}
	var le *os.LinkError
	if errors.As(err, &le) && le.Err != nil && le.Err.Error() == escapeText {
		return &os.LinkError{Op: le.Op, Old: le.Old, New: le.New, Err: ErrEscape}
	}
	return err
}

// Open opens a file (or directory) for reading.
func (f *FS) Open(name string) (*os.File, error) {
	if err := Validate(name); err != nil {
		return nil, err
	}
	file, err := f.root.Open(osName(name))
	return file, wrap(err)
}

// ReadFile reads a whole file.
func (f *FS) ReadFile(name string) ([]byte, error) {
	if err := Validate(name); err != nil {
		return nil, err
	}
	b, err := f.root.ReadFile(osName(name))
	return b, wrap(err)
}

// Stat describes a file, following symbolic links that stay in the tree.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	if err := Validate(name); err != nil {
		return nil, err
	}
	fi, err := f.root.Stat(osName(name))
	return fi, wrap(err)
}

// Lstat describes a file without following a symbolic link in the last
// element (links in the elements before it are followed if they stay in
// the tree).
func (f *FS) Lstat(name string) (fs.FileInfo, error) {
	if err := Validate(name); err != nil {
		return nil, err
	}
	fi, err := f.root.Lstat(osName(name))
	return fi, wrap(err)
}

// Readlink returns a symbolic link's target, unchecked.
func (f *FS) Readlink(name string) (string, error) {
	if err := Validate(name); err != nil {
		return "", err
	}
	t, err := f.root.Readlink(osName(name))
	return filepath.ToSlash(t), wrap(err)
}

// ReadDir lists a directory, sorted by name.
func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	if err := Validate(name); err != nil {
		return nil, err
	}
	d, err := f.root.Open(osName(name))
	if err != nil {
		return nil, wrap(err)
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, err
}

// Mkdir creates one directory.
func (f *FS) Mkdir(name string, perm fs.FileMode) error {
	if err := Validate(name); err != nil {
		return err
	}
	return wrap(f.root.Mkdir(osName(name), perm))
}

// MkdirAll creates a directory and any missing parents.
func (f *FS) MkdirAll(name string, perm fs.FileMode) error {
	if err := Validate(name); err != nil {
		return err
	}
	return wrap(f.root.MkdirAll(osName(name), perm))
}

// Remove removes a file, an empty directory or a symbolic link (not its
// target).
func (f *FS) Remove(name string) error {
	if err := Validate(name); err != nil {
		return err
	}
	if name == "." {
		return fmt.Errorf("%w \".\": cannot remove the root", ErrInvalidName)
	}
	return wrap(f.root.Remove(osName(name)))
}

// Chown changes a file's owner, following a symbolic link that stays in
// the tree. Where the platform has no owners (Windows) it returns an error.
// Go documents a race on Unix: if the file is replaced by a symbolic link
// meanwhile, the link itself may be changed (never anything outside).
func (f *FS) Chown(name string, uid, gid int) error {
	if err := Validate(name); err != nil {
		return err
	}
	return wrap(f.root.Chown(osName(name), uid, gid))
}

// Lchown changes the owner of a file or of a symbolic link itself.
func (f *FS) Lchown(name string, uid, gid int) error {
	if err := Validate(name); err != nil {
		return err
	}
	return wrap(f.root.Lchown(osName(name), uid, gid))
}

// Walk calls fn for name and everything below it, in lexical order, as
// fs.WalkDir does. Symbolic links are reported, never followed: fn sees
// them with d.Type()&fs.ModeSymlink set. Paths given to fn are
// slash-separated names relative to the root.
func (f *FS) Walk(name string, fn fs.WalkDirFunc) error {
	if err := Validate(name); err != nil {
		return err
	}
	return fs.WalkDir(walkFS{f}, name, fn)
}

// walkFS lets fs.WalkDir list directories through the root, so that a
// directory swapped for a link to the outside during the walk is refused.
type walkFS struct{ f *FS }

func (w walkFS) Open(name string) (fs.File, error)          { return w.f.Open(name) }
func (w walkFS) ReadDir(name string) ([]fs.DirEntry, error) { return w.f.ReadDir(name) }
func (w walkFS) Stat(name string) (fs.FileInfo, error)      { return w.f.Lstat(name) }

// parent splits a name into its directory (or ".") and last element.
func parent(name string) (dir, base string) {
	dir, base = path.Split(name)
	if dir == "" {
		return ".", base
	}
	return strings.TrimSuffix(dir, "/"), base
}
