// Package quota gives each user a storage quota the kernel enforces: their
// home is an ext4 file system in an image file of its own, mounted through
// a loop device. A full home fails writes with ENOSPC for that user alone,
// and nothing written before is lost; the image can grow while mounted.
//
// Images are sparse, so they take the disk space their files use, not
// their size; the sum of the sizes may exceed the disk, as with any
// thin provisioning. Keep an eye on the host file system holding them.
//
// The work is done by the standard tools (mkfs.ext4, resize2fs and
// e2fsck from e2fsprogs; mount, umount and losetup from util-linux),
// whose stderr is wrapped into the errors returned.
package quota

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Error is the type of the package's sentinel errors; they are constants so
// that no caller can reassign them.
type Error string

// Error returns the message.
func (e Error) Error() string { return string(e) }

// Errors returned by this package; test with errors.Is.
const (
	// ErrExists: Create found the image already there.
	ErrExists Error = "image already exists"
	// ErrShrink: Grow was asked for a smaller size.
	ErrShrink Error = "cannot shrink an image"
	// ErrBusy: something other than the image is mounted on the directory.
	ErrBusy Error = "another file system is mounted there"
	// ErrInvalid: a bad path or size.
	ErrInvalid Error = "invalid argument"
)

// MinSize is the smallest image Create makes: ext4 needs room for its
// metadata and journal.
const MinSize = 8 << 20

// CreateOptions tune Create.
type CreateOptions struct {
	// UID and GID own the file system's root directory, so that the user
	// can write their home without a chown; 0, 0 is root.
	UID, GID int
}

// MountOptions tune Mount.
type MountOptions struct {
	// NoSuid ignores set-user-ID and set-group-ID bits on the file system,
	// so a user cannot plant a setuid binary in their home.
	NoSuid bool
	// NoDev ignores device files on the file system.
	NoDev bool
}

func checkPath(what, p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
		return fmt.Errorf("%w: %s %q: need a clean absolute path other than /", ErrInvalid, what, p)
	}
	return nil
}

// Create makes image, a sparse file of sizeBytes holding an empty ext4 file
// system with no blocks reserved for root (the user gets all of it) and its
// root directory owned by opts.UID:opts.GID. It refuses (ErrExists) to
// overwrite an existing file, and leaves nothing behind when it fails.
func Create(ctx context.Context, image string, sizeBytes int64, opts CreateOptions) (err error) {
	if err := checkPath("image", image); err != nil {
		return err
	}
	if sizeBytes < MinSize {
		return fmt.Errorf("%w: size %d below the %d minimum", ErrInvalid, sizeBytes, MinSize)
	}
	if opts.UID < 0 || opts.GID < 0 {
		return fmt.Errorf("%w: owner %d:%d", ErrInvalid, opts.UID, opts.GID)
	}
	f, err := os.OpenFile(image, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create %s: %w", image, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", image, err)
	}
	defer func() {
		if err != nil {
			os.Remove(image)
		}
	}()
	// Truncating up makes a sparse file: no blocks until written.
	err = f.Truncate(sizeBytes)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", image, err)
	}
	if err := run(ctx, "mkfs.ext4", "-q", "-F", "-m", "0",
		"-E", fmt.Sprintf("root_owner=%d:%d", opts.UID, opts.GID), "--", image); err != nil {
		return fmt.Errorf("create %s: %w", image, err)
	}
	return nil
}

// Mount mounts image on dir through a loop device, making dir (not its
// parents) if needed. If image is already mounted on dir it does nothing;
// if something else is, it returns ErrBusy. The loop device is released
// when the file system is unmounted.
func Mount(ctx context.Context, image, dir string, opts MountOptions) error {
	if err := checkPath("image", image); err != nil {
		return err
	}
	if err := checkPath("mount point", dir); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("mount %s: %w", image, err)
	}
	m, err := mountAt(dir)
	if err != nil {
		return fmt.Errorf("mount %s: %w", image, err)
	}
	if m != nil {
		same, err := backedBy(m.source, image)
		if err != nil {
			return fmt.Errorf("mount %s: %w", image, err)
		}
		if !same {
			return fmt.Errorf("mount %s on %s: %s is there: %w", image, dir, m.source, ErrBusy)
		}
		return nil
	}
	o := "loop"
	if opts.NoSuid {
		o += ",nosuid"
	}
	if opts.NoDev {
		o += ",nodev"
	}
	if err := run(ctx, "mount", "-t", "ext4", "-o", o, "--", image, dir); err != nil {
		return fmt.Errorf("mount %s: %w", image, err)
	}
	return nil
}

// Unmount unmounts the file system on dir; it does nothing if none is. It
// fails ("target is busy") while a process has a file or its working
// directory there: kill the user's processes first.
func Unmount(ctx context.Context, dir string) error {
	if err := checkPath("mount point", dir); err != nil {
		return err
	}
	m, err := mountAt(dir)
	if err != nil || m == nil {
		return err
	}
	backing := loopBacking(m.source)
	if err := run(ctx, "umount", "--", dir); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	// The kernel frees the loop device by itself, but later: until then
	// a mount of the same image would reuse it, with its old size and its
	// cached blocks, which are stale once the image is changed (grown)
	// offline. Free it now, unless it serves another image already.
	if backing != "" {
		ms, err := mounts()
		if err == nil && !mountedFrom(ms, m.source) {
			if err := detachLoop(ctx, m.source, backing); err != nil {
				return fmt.Errorf("unmount %s: %w", dir, err)
			}
		}
	}
	return nil
}

// detachLoop frees the loop device dev while it still serves backing; it
// is done when the kernel freed it meanwhile (or gave it to another file).
func detachLoop(ctx context.Context, dev, backing string) error {
	if backing == "" || loopBacking(dev) != backing {
		return nil
	}
	if err := run(ctx, "losetup", "--detach", dev); err != nil && loopBacking(dev) == backing {
		return fmt.Errorf("free %s: %w", dev, err)
	}
	return nil
}

// loopBacking is the file behind a loop device ("/dev/loop3"), "" when
// device is no loop device or serves no file.
func loopBacking(device string) string {
	name, ok := strings.CutPrefix(device, "/dev/")
	if !ok || !strings.HasPrefix(name, "loop") {
		return ""
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", name, "loop", "backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// idleLoops are the loop devices that serve image but are mounted
// nowhere (left over, or being freed); busy reports whether one is
// mounted.
func idleLoops(image string) (idle []string, busy bool, err error) {
	want, err := filepath.EvalSymlinks(image)
	if err != nil {
		return nil, false, err
	}
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil, false, err
	}
	ms, err := mounts()
	if err != nil {
		return nil, false, err
	}
	for _, e := range entries {
		dev := "/dev/" + e.Name()
		if !strings.HasPrefix(e.Name(), "loop") || loopBacking(dev) != want {
			continue
		}
		if mountedFrom(ms, dev) {
			busy = true
			continue
		}
		idle = append(idle, dev)
	}
	return idle, busy, nil
}

// IsMounted reports whether a file system is mounted on dir (as the mount
// table of this process's mount namespace says). A missing dir is not
// mounted.
func IsMounted(dir string) (bool, error) {
	m, err := mountAt(dir)
	return m != nil, err
}

// Grow enlarges image to newSize bytes and its file system with it. When
// image is mounted on dir this happens online, users keeping on working;
// otherwise (dir "" or not mounted) it checks the file system and resizes
// it offline. It refuses to shrink (ErrShrink). Growing to the current
// size finishes a grow that was interrupted or failed.
//
// Online growth needs CAP_SYS_RESOURCE, which root lacks in some
// containers; offline growth does not.
func Grow(ctx context.Context, image, dir string, newSize int64) error {
	if err := checkPath("image", image); err != nil {
		return err
	}
	fi, err := os.Stat(image)
	if err != nil {
		return fmt.Errorf("grow %s: %w", image, err)
	}
	if newSize < fi.Size() {
		return fmt.Errorf("grow %s from %d to %d bytes: %w", image, fi.Size(), newSize, ErrShrink)
	}
	var loop string // the loop device when mounted on dir
	if dir != "" {
		if err := checkPath("mount point", dir); err != nil {
			return err
		}
		m, err := mountAt(dir)
		if err != nil {
			return fmt.Errorf("grow %s: %w", image, err)
		}
		if m != nil {
			same, err := backedBy(m.source, image)
			if err != nil {
				return fmt.Errorf("grow %s: %w", image, err)
			}
			if !same {
				return fmt.Errorf("grow %s: %s is mounted on %s: %w", image, m.source, dir, ErrBusy)
			}
			loop = m.source
		}
	}
	if loop == "" {
		// Offline, nothing may hold the image: a mount elsewhere would be
		// corrupted, and a loop device left over would keep stale blocks.
		idle, busy, err := idleLoops(image)
		if err != nil {
			return fmt.Errorf("grow %s: %w", image, err)
		}
		if busy {
			return fmt.Errorf("grow %s: it is mounted elsewhere: %w", image, ErrBusy)
		}
		for _, dev := range idle {
			if err := detachLoop(ctx, dev, loopBacking(dev)); err != nil {
				return fmt.Errorf("grow %s: %w", image, err)
			}
		}
	}
	if err := os.Truncate(image, newSize); err != nil {
		return fmt.Errorf("grow %s: %w", image, err)
	}
	if loop != "" {
		// The loop device keeps the old size until told to look again.
		if err := run(ctx, "losetup", "--set-capacity", loop); err != nil {
			return fmt.Errorf("grow %s: %w", image, err)
		}
		if err := run(ctx, "resize2fs", loop); err != nil {
			var ce *cmdError
			if errors.As(err, &ce) && strings.Contains(ce.stderr, "Permission denied") {
				// The kernel wants CAP_SYS_RESOURCE for online resizing,
				// which containers and sandboxes often drop even for root.
				return fmt.Errorf("grow %s online (needs CAP_SYS_RESOURCE; the file is %d bytes, the file system unchanged, a later Grow finishes it): %w", image, newSize, err)
			}
			return fmt.Errorf("grow %s: %w", image, err)
		}
		return nil
	}
	// resize2fs insists on a freshly checked file system when offline.
	// e2fsck exits 1 when it fixed something, which is fine here.
	if err := run(ctx, "e2fsck", "-f", "-p", image); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			return fmt.Errorf("grow %s: %w", image, err)
		}
	}
	if err := run(ctx, "resize2fs", image); err != nil {
		return fmt.Errorf("grow %s: %w", image, err)
	}
	return nil
}

// Usage returns the bytes used and the total size of the file system
// holding dir.
func Usage(dir string) (used, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("usage of %s: %w", dir, err)
	}
	bs := int64(st.Bsize)
	return (int64(st.Blocks) - int64(st.Bfree)) * bs, int64(st.Blocks) * bs, nil
}

// mount is one line of /proc/self/mountinfo.
type mount struct {
	point, source, fstype, options string
}

// mounts reads this process's mount table (/proc/self/mountinfo), in
// mount order.
func mounts() ([]mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []mount
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// id parent maj:min root mountpoint opts [optional…] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 6 || len(sf) < 2 {
			continue
		}
		out = append(out, mount{point: unescapeMount(pf[4]), source: unescapeMount(sf[1]), fstype: sf[0], options: pf[5]})
	}
	return out, nil
}

// mountAt returns the top mount on dir, or nil if dir is not a mount
// point (or does not exist).
func mountAt(dir string) (*mount, error) {
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ms, err := mounts()
	if err != nil {
		return nil, err
	}
	var top *mount
	for i := range ms {
		if ms[i].point == real {
			top = &ms[i] // later lines are mounted on top of earlier ones
		}
	}
	return top, nil
}

// mountedFrom reports whether device is the source of one of ms.
func mountedFrom(ms []mount, device string) bool {
	return slices.ContainsFunc(ms, func(m mount) bool { return m.source == device })
}

// backedBy reports whether device is a loop device attached to image.
func backedBy(device, image string) (bool, error) {
	backing := loopBacking(device)
	if backing == "" {
		return false, nil
	}
	want, err := filepath.EvalSymlinks(image)
	if err != nil {
		return false, err
	}
	return backing == want, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space…).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cmdError is a failed command with its stderr.
type cmdError struct {
	cmd    string
	stderr string
	err    error
}

func (e *cmdError) Error() string {
	if e.stderr == "" {
		return fmt.Sprintf("%s: %v", e.cmd, e.err)
	}
	return fmt.Sprintf("%s: %v: %s", e.cmd, e.err, e.stderr)
}

func (e *cmdError) Unwrap() error { return e.err }

// run runs a command; a failure is a *cmdError carrying its stderr.
func run(ctx context.Context, name string, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if err := cmd.Run(); err != nil {
		return &cmdError{cmd: name + " " + strings.Join(args, " "), stderr: strings.TrimSpace(stderr.String()), err: err}
	}
	return nil
}
