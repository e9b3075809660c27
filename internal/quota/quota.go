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
	"encoding/binary"
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
	// ErrShort: Provision mounted the image but could not make it offer
	// the size asked (growth or tuning failed); the files are there.
	ErrShort Error = "the file system offers less than asked"
)

// MinSize is the smallest usable size Create makes: ext4 needs room for
// its metadata and journal besides.
const MinSize = 8 << 20

// FullBelow is the free space under which a file system counts as full
// (Space.Full): the kernel refuses a write that needs a whole large folio
// (up to 2 MiB) when less than that is left, so "No space left on device"
// shows while a little space remains.
const FullBelow = 2 << 20

// blockSize is the block size of the file systems Create makes: 4 KiB,
// whatever the host's mke2fs.conf says for small file systems (1 KiB
// blocks there cost speed and inodes).
const blockSize = 4096

// inodeRatio is the bytes per inode of the file systems Create makes:
// twice as many inodes as mke2fs gives large file systems by default,
// because a developer's home holds many small files (node_modules,
// .git objects) and running out of inodes fails writes as surely as
// running out of space.
const inodeRatio = 8192

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

// Create makes image, a sparse file holding an empty ext4 file system
// that offers usable bytes to an unprivileged user, with no blocks
// reserved for root and its root directory owned by opts.UID:opts.GID.
// The file is larger than usable by what ext4 keeps for itself (journal,
// inode tables, bitmaps, and the 2% or 16 MiB the kernel holds back for
// its own allocations), so that the user gets the quota promised; its
// capacity is usable or a little more (see sizeImage). It refuses
// (ErrExists) to overwrite an existing file, and leaves nothing behind
// when it fails.
func Create(ctx context.Context, image string, usable int64, opts CreateOptions) (err error) {
	if err := checkPath("image", image); err != nil {
		return err
	}
	if usable < MinSize {
		return fmt.Errorf("%w: size %d below the %d minimum", ErrInvalid, usable, MinSize)
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
	if err := f.Close(); err != nil {
		return fmt.Errorf("create %s: %w", image, err)
	}
	if err := sizeImage(ctx, image, usable, opts); err != nil {
		return fmt.Errorf("create %s: %w", image, err)
	}
	return nil
}

// sizeImage makes the file system of image anew, at the smallest size
// found whose capacity is at least usable. The overhead of ext4 moves in
// steps (the journal's size doubles at thresholds, each 128 MiB block
// group brings a whole inode table), so it is found by trying: make the
// file system, read its superblock, correct the size by what is missing
// or left over. Each try is a mkfs of a sparse file, a few milliseconds.
func sizeImage(ctx context.Context, image string, usable int64, opts CreateOptions) error {
	// A first guess: inode tables, the kernel's reserve, a journal.
	size := usable + usable/(inodeRatio/256) + min(usable/49, 16<<20) + min(max(usable/64, 4<<20), 1<<30) + 1<<20
	size = roundUp(size, 1<<20)
	tolerance := max(usable/1000, 128<<10) // a capacity up to 0.1% above usable is exact enough
	var best, made int64                   // the smallest good size; the size on disk
	tried := map[int64]bool{}
	for range 8 {
		if tried[size] {
			break
		}
		tried[size] = true
		capacity, err := mkfs(ctx, image, size, opts)
		if err != nil {
			return err
		}
		made = size
		if capacity >= usable && (best == 0 || size < best) {
			best = size
		}
		if capacity >= usable && capacity-usable <= tolerance {
			return nil
		}
		// Adding n bytes adds about n*(1 - 1/32 - 2%) of capacity.
		next := size + (usable-capacity)*100/94
		if capacity < usable {
			next += 64 << 10
		}
		next = roundUp(next, 64<<10)
		if best != 0 && next >= best {
			break // what lies between is no better than best
		}
		size = next
	}
	if best == 0 {
		return fmt.Errorf("no size found for %d usable bytes", usable)
	}
	if made != best {
		if _, err := mkfs(ctx, image, best, opts); err != nil {
			return err
		}
	}
	return nil
}

// mkfs makes an empty file system of size bytes in image (an existing
// file of ours) and returns its capacity for an unprivileged user.
func mkfs(ctx context.Context, image string, size int64, opts CreateOptions) (int64, error) {
	// Truncating makes a sparse file: no blocks until written. Down to 0
	// first, so that nothing of an earlier try survives.
	if err := os.Truncate(image, 0); err != nil {
		return 0, err
	}
	if err := os.Truncate(image, size); err != nil {
		return 0, err
	}
	if err := run(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-b", strconv.Itoa(blockSize), "-i", strconv.Itoa(inodeRatio),
		"-E", fmt.Sprintf("root_owner=%d:%d", opts.UID, opts.GID), "--", image); err != nil {
		return 0, err
	}
	sb, err := readSuperblock(image)
	if err != nil {
		return 0, err
	}
	return sb.freshCapacity(), nil
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// superblock holds the fields of an ext4 superblock that capacity
// depends on.
type superblock struct {
	blockSize              int64
	blocks, reserved, free int64
	clusterBits            uint32
}

// readSuperblock reads the primary superblock of the ext4 file system in
// image (which must not be mounted, or the counts are stale).
func readSuperblock(image string) (superblock, error) {
	f, err := os.Open(image)
	if err != nil {
		return superblock{}, err
	}
	defer f.Close()
	b := make([]byte, 1024)
	if _, err := f.ReadAt(b, 1024); err != nil {
		return superblock{}, fmt.Errorf("read the superblock of %s: %w", image, err)
	}
	le := binary.LittleEndian
	if le.Uint16(b[0x38:]) != 0xEF53 {
		return superblock{}, fmt.Errorf("%s holds no ext4 file system", image)
	}
	var sb superblock
	sb.blockSize = 1024 << le.Uint32(b[0x18:])
	sb.clusterBits = le.Uint32(b[0x1C:]) - le.Uint32(b[0x18:])
	sb.blocks = int64(le.Uint32(b[0x04:]))
	sb.reserved = int64(le.Uint32(b[0x08:]))
	sb.free = int64(le.Uint32(b[0x0C:]))
	const incompat64bit = 0x80
	if le.Uint32(b[0x60:])&incompat64bit != 0 {
		sb.blocks |= int64(le.Uint32(b[0x150:])) << 32
		sb.reserved |= int64(le.Uint32(b[0x154:])) << 32
		sb.free |= int64(le.Uint32(b[0x158:])) << 32
	}
	return sb, nil
}

// freshCapacity is the capacity (used plus available to an unprivileged
// user, as statfs reports them) of a file system that holds nothing yet:
// its free blocks, less the blocks reserved for root and the clusters the
// kernel holds back for its own allocations (2% of the blocks, at most
// 4096 clusters; ext4_calculate_resv_clusters). The few blocks of an empty
// root directory and lost+found count as used, so this is a little low.
func (sb superblock) freshCapacity() int64 {
	resv := min((sb.blocks>>sb.clusterBits)/50, 4096) << sb.clusterBits
	return max(0, sb.free-sb.reserved-resv) * sb.blockSize
}

// Provision gives dir a file system from image that offers at least
// usable bytes to an unprivileged user: it creates the image when missing
// (Create), mounts it (Mount), and grows it when it offers less (an image
// made for a smaller quota, or one sized by its file rather than by what
// it holds). It never shrinks an image. An existing image that is not
// mounted yet also loses the blocks reserved for root (tune2fs -m 0),
// which the user could never write.
//
// When Provision mounted the image itself, nothing can be using it, so it
// grows offline (unmount, e2fsck and resize2fs, mount again), which needs
// no CAP_SYS_RESOURCE; an image already mounted grows online. When growing
// or tuning fails, dir is mounted all the same and the error wraps
// ErrShort: the user has less room than asked, but has their files.
func Provision(ctx context.Context, image, dir string, usable int64, c CreateOptions, m MountOptions) error {
	if err := checkPath("image", image); err != nil {
		return err
	}
	if err := checkPath("mount point", dir); err != nil {
		return err
	}
	usable = max(usable, MinSize)
	_, err := os.Stat(image)
	if errors.Is(err, fs.ErrNotExist) {
		if err := Create(ctx, image, usable, c); err != nil {
			return err
		}
		return Mount(ctx, image, dir, m)
	}
	if err != nil {
		return fmt.Errorf("provision %s: %w", image, err)
	}
	pre, err := mountAt(dir)
	if err != nil {
		return fmt.Errorf("provision %s: %w", image, err)
	}
	var short []error
	if pre == nil {
		if err := untuned(ctx, image); err != nil {
			short = append(short, err)
		}
	}
	if err := Mount(ctx, image, dir, m); err != nil {
		return err
	}
	// Each byte added brings a little less than a byte of capacity (inode
	// tables and the kernel's reserve grow too), by a share that depends
	// on how the image was made: grow by what is missing, and again by
	// what is still missing, a few times.
	for range 5 {
		sp, err := Measure(dir)
		if err != nil {
			return err
		}
		if sp.Capacity >= usable {
			break
		}
		fi, err := os.Stat(image)
		if err != nil {
			return fmt.Errorf("provision %s: %w", image, err)
		}
		missing := usable - sp.Capacity
		target := roundUp(fi.Size()+missing+missing/32, 64<<10)
		if err := regrow(ctx, image, dir, target, m, pre == nil); err != nil {
			short = append(short, err)
			break
		}
	}
	if sp, err := Measure(dir); err == nil && sp.Capacity < usable {
		short = append(short, fmt.Errorf("%d bytes usable, %d asked", sp.Capacity, usable))
	}
	if len(short) > 0 {
		return fmt.Errorf("provision %s: %w: %w", image, ErrShort, errors.Join(short...))
	}
	return nil
}

// regrow grows image, mounted on dir, to size bytes: offline when allowed
// (unmounting dir, which nothing must be using), online otherwise or when
// the unmount fails. dir is mounted when it returns.
func regrow(ctx context.Context, image, dir string, size int64, m MountOptions, offline bool) error {
	if offline {
		if err := Unmount(ctx, dir); err == nil {
			gerr := Grow(ctx, image, "", size)
			if err := Mount(ctx, image, dir, m); err != nil {
				return errors.Join(gerr, err)
			}
			return gerr
		}
	}
	return Grow(ctx, image, dir, size)
}

// untuned takes the root-reserved blocks out of image, unmounted: the
// workspace's user, who is not root, could never write them. Images made
// by Create have none; this is for those made otherwise.
func untuned(ctx context.Context, image string) error {
	sb, err := readSuperblock(image)
	if err != nil {
		return err
	}
	if sb.reserved == 0 {
		return nil
	}
	idle, busy, err := idleLoops(image)
	if err != nil {
		return err
	}
	if busy {
		return fmt.Errorf("tune %s: it is mounted elsewhere: %w", image, ErrBusy)
	}
	for _, dev := range idle { // a stale loop device would keep the old superblock
		if err := detachLoop(ctx, dev, loopBacking(dev)); err != nil {
			return fmt.Errorf("tune %s: %w", image, err)
		}
	}
	if err := run(ctx, "tune2fs", "-m", "0", image); err != nil {
		return fmt.Errorf("tune %s: %w", image, err)
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

// Space is the room on a file system as an unprivileged user sees it:
// what the kernel lets them write, not what the device holds (ext4 keeps
// its journal, inode tables and a reserve of its own out of reach).
type Space struct {
	// Capacity is Used plus Available: all the user can have.
	Capacity int64 `json:"capacity"`
	// Used is what the file system's files and directories take.
	Used int64 `json:"used"`
	// Available is what the user can still write (statfs f_bavail).
	Available int64 `json:"available"`
	// Inodes and FreeInodes count files; a file system without inodes
	// left is as full as one without blocks.
	Inodes     uint64 `json:"inodes"`
	FreeInodes uint64 `json:"freeInodes"`
}

// Full reports whether writes fail for lack of room: less than FullBelow
// available, or no inode left.
func (s Space) Full() bool {
	return s.Available < FullBelow || (s.Inodes > 0 && s.FreeInodes == 0)
}

// Measure returns the room on the file system holding dir.
func Measure(dir string) (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Space{}, fmt.Errorf("usage of %s: %w", dir, err)
	}
	bs := st.Frsize
	if bs <= 0 {
		bs = st.Bsize
	}
	s := Space{
		Used:      int64(st.Blocks-st.Bfree) * bs,
		Available: int64(st.Bavail) * bs,
		Inodes:    st.Files, FreeInodes: st.Ffree,
	}
	s.Capacity = s.Used + s.Available
	return s, nil
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
