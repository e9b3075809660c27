package userfs

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// WriteOptions adjust WriteFrom.
type WriteOptions struct {
	// NoReplace fails with an error wrapping fs.ErrExist when the name
	// already exists (as anything, a dangling link included), instead of
	// replacing it. It relies on hard links, which every Linux file system
	// the gateway keeps homes on supports.
	NoReplace bool
	// Chown gives the new file to UID and GID before it appears under its
	// name.
	Chown    bool
	UID, GID int
}

// WriteFile writes data to name atomically, replacing any file there: the
// data goes to a temporary file in the same directory, which is then
// renamed over name. Readers see the old content or the new, never part of
// it. perm is applied exactly, not reduced by the umask. An existing
// symbolic link at name is refused (ErrSymlink), not followed or replaced.
func (f *FS) WriteFile(name string, data []byte, perm fs.FileMode) error {
	_, err := f.WriteFrom(name, bytes.NewReader(data), perm, WriteOptions{})
	return err
}

// WriteFrom writes what r yields to name atomically, as WriteFile, and
// returns the number of bytes written. The directory is opened once and the
// temporary file is created, filled and moved within it, so a directory on
// the path replaced by a symbolic link meanwhile cannot redirect the write
// outside the tree. On error nothing is left behind.
func (f *FS) WriteFrom(name string, r io.Reader, perm fs.FileMode, opts WriteOptions) (int64, error) {
	if err := Validate(name); err != nil {
		return 0, err
	}
	if perm&^fs.ModePerm != 0 {
		return 0, fmt.Errorf("userfs: write %q: mode %v has bits other than permissions", name, perm)
	}
	dirName, base := parent(name)
	if base == "." {
		return 0, fmt.Errorf("%w %q: names a directory, not a file", ErrInvalidName, name)
	}
	dir, err := f.root.OpenRoot(osName(dirName))
	if err != nil {
		return 0, wrap(err)
	}
	defer dir.Close()
	if fi, err := dir.Lstat(osName(base)); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return 0, &fs.PathError{Op: "write", Path: name, Err: ErrSymlink}
	}

	tmp, file, err := createTemp(dir)
	if err != nil {
		return 0, fmt.Errorf("userfs: write %q: %w", name, wrap(err))
	}
	committed := false
	defer func() {
		if !committed {
			file.Close()
			dir.Remove(tmp)
		}
	}()
	n, err := io.Copy(file, r)
	if err != nil {
		return n, fmt.Errorf("userfs: write %q: %w", name, err)
	}
	if err := file.Chmod(perm); err != nil {
		return n, fmt.Errorf("userfs: write %q: %w", name, err)
	}
	if opts.Chown {
		if err := file.Chown(opts.UID, opts.GID); err != nil {
			return n, fmt.Errorf("userfs: write %q: %w", name, err)
		}
	}
	if err := file.Sync(); err != nil {
		return n, fmt.Errorf("userfs: write %q: %w", name, err)
	}
	if err := file.Close(); err != nil {
		return n, fmt.Errorf("userfs: write %q: %w", name, err)
	}
	if f.beforeCommit != nil {
		f.beforeCommit()
	}
	if opts.NoReplace {
		// A hard link fails if the name exists; the temporary name goes.
		err = dir.Link(tmp, osName(base))
		if err == nil {
			dir.Remove(tmp)
		}
	} else {
		err = dir.Rename(tmp, osName(base))
	}
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return n, &fs.PathError{Op: "write", Path: name, Err: fs.ErrExist}
		}
		return n, fmt.Errorf("userfs: write %q: %w", name, wrap(err))
	}
	committed = true
	return n, nil
}

// createTemp creates a new private file with a random name in dir; it
// gets its real mode once written.
func createTemp(dir *os.Root) (string, *os.File, error) {
	for range 10000 {
		var b [8]byte
		rand.Read(b[:])
		name := ".userfs-" + hex.EncodeToString(b[:]) + ".tmp"
		file, err := dir.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return name, file, err
	}
	return "", nil, errors.New("cannot create a temporary file")
}

// Symlink creates newname as a symbolic link to oldname, a relative target
// that must stay in the tree: it is refused (ErrEscape) when absolute, when
// its ".." elements climb above the root from newname's directory, or when
// it already resolves, through links on the way, to something outside. A
// target that does not exist yet is allowed if it stays in the tree
// lexically.
func (f *FS) Symlink(oldname, newname string) error {
	if err := Validate(newname); err != nil {
		return err
	}
	if err := f.CheckLink(oldname, newname); err != nil {
		return err
	}
	return wrap(f.root.Symlink(osName(oldname), osName(newname)))
}

// CheckLink reports whether a symbolic link named name with the given
// target would stay in the tree, by the rules of Symlink, without creating
// anything. It is how a tree being copied in is checked at its source.
func (f *FS) CheckLink(target, name string) error {
	if err := Validate(name); err != nil {
		return err
	}
	bad := func(err error, reason string) error {
		return fmt.Errorf("%w: link %s -> %s: %s", err, quote(name), quote(target), reason)
	}
	switch {
	case target == "":
		return bad(ErrInvalidName, "empty target")
	case len(target) > MaxNameLength:
		return bad(ErrInvalidName, fmt.Sprintf("target longer than %d bytes", MaxNameLength))
	case strings.IndexByte(target, 0) >= 0:
		return bad(ErrInvalidName, "target contains a NUL byte")
	case target[0] == '/' || isAbsOS(target):
		return bad(ErrEscape, "absolute target")
	case isWindows && strings.ContainsAny(target, `\:`):
		return bad(ErrInvalidName, `"\" and ":" are not allowed in targets on Windows`)
	}
	// Lexically, from the link's directory.
	dir, _ := parent(name)
	depth := 0
	if dir != "." {
		depth = strings.Count(dir, "/") + 1
	}
	for elem := range strings.SplitSeq(target, "/") {
		switch elem {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return bad(ErrEscape, "climbs above the user's directory")
			}
		default:
			depth++
		}
	}
	// Physically, through whatever links are on the way now.
	resolved := target
	if dir != "." {
		resolved = dir + "/" + target
	}
	_, err := f.root.Stat(osName(resolved))
	switch err := wrap(err); {
	case err == nil, errors.Is(err, fs.ErrNotExist), isNotDir(err):
		return nil
	case errors.Is(err, ErrEscape):
		return bad(ErrEscape, "resolves outside the user's directory")
	default:
		return bad(err, "cannot resolve")
	}
}
