package quota_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/quota"
	"github.com/codehub-dev/codehub/internal/testenv"
	"golang.org/x/sys/unix"
)

// testUID owns the test file systems; it needs no account.
const testUID, testGID = 64123, 64123

func TestRejectsBadArguments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	if err := quota.Create(ctx, "relative.img", 32<<20, quota.CreateOptions{}); !errors.Is(err, quota.ErrInvalid) {
		t.Errorf("Create(relative) = %v, want ErrInvalid", err)
	}
	if err := quota.Create(ctx, filepath.Join(dir, "tiny.img"), 4096, quota.CreateOptions{}); !errors.Is(err, quota.ErrInvalid) {
		t.Errorf("Create(tiny) = %v, want ErrInvalid", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tiny.img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused Create left a file (%v)", err)
	}
	if err := quota.Mount(ctx, filepath.Join(dir, "a.img"), "mnt", quota.MountOptions{}); !errors.Is(err, quota.ErrInvalid) {
		t.Errorf("Mount(relative dir) = %v, want ErrInvalid", err)
	}
	if mounted, err := quota.IsMounted(filepath.Join(dir, "missing")); err != nil || mounted {
		t.Errorf("IsMounted(missing) = %v, %v", mounted, err)
	}
	if mounted, err := quota.IsMounted(dir); err != nil || mounted {
		t.Errorf("IsMounted(plain dir) = %v, %v", mounted, err)
	}
	if mounted, err := quota.IsMounted("/proc"); err != nil || !mounted {
		t.Errorf("IsMounted(/proc) = %v, %v", mounted, err)
	}
}

// needLoop skips or fails t unless it can make and loop-mount ext4 images.
func needLoop(t *testing.T) {
	t.Helper()
	testenv.SkipShort(t)
	if os.Geteuid() != 0 {
		testenv.Need(t, "root (mounts file systems)")
	}
	for _, tool := range []string{"mkfs.ext4", "resize2fs", "e2fsck", "mount", "umount", "losetup", "dd"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Need(t, tool+" (apt-get install e2fsprogs mount coreutils)")
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		testenv.Need(t, "loop devices (/dev/loop-control)")
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // guards a hang only
	t.Cleanup(cancel)
	return ctx
}

// mountImage mounts image on dir and unmounts it when t ends.
func mountImage(t *testing.T, ctx context.Context, image, dir string) {
	t.Helper()
	if err := quota.Mount(ctx, image, dir, quota.MountOptions{NoSuid: true, NoDev: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := quota.Unmount(ctx, dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// asUser runs argv as testUID and returns its stderr.
func asUser(ctx context.Context, argv ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: testUID, Gid: testGID}}
	err := cmd.Run()
	return stderr.String(), err
}

func sum(t *testing.T, path string, n int64) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n >= 0 {
		if int64(len(b)) < n {
			t.Fatalf("%s has %d bytes, want at least %d", path, len(b), n)
		}
		b = b[:n]
	}
	return sha256.Sum256(b)
}

func TestQuota(t *testing.T) {
	needLoop(t)
	ctx := testCtx(t)
	tmp := t.TempDir()
	// testUID must be able to reach the mount point and read the source.
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	image := filepath.Join(tmp, "alice.img")
	home := filepath.Join(tmp, "home")

	const size = 32 << 20
	if err := quota.Create(ctx, image, size, quota.CreateOptions{UID: testUID, GID: testGID}); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(image, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size <= size || st.Size > size*3/2 || st.Blocks*512 >= size/2 {
		t.Errorf("image: %d bytes, %d allocated; want a little more than %d bytes (ext4's own), sparse", st.Size, st.Blocks*512, size)
	}
	if err := quota.Create(ctx, image, size, quota.CreateOptions{}); !errors.Is(err, quota.ErrExists) {
		t.Fatalf("Create over an image = %v, want ErrExists", err)
	}

	if mounted, err := quota.IsMounted(home); err != nil || mounted {
		t.Fatalf("IsMounted before Mount = %v, %v", mounted, err)
	}
	mountImage(t, ctx, image, home)
	if mounted, err := quota.IsMounted(home); err != nil || !mounted {
		t.Fatalf("IsMounted after Mount = %v, %v", mounted, err)
	}
	// Mounting again is a no-op, not a second mount.
	if err := quota.Mount(ctx, image, home, quota.MountOptions{NoSuid: true, NoDev: true}); err != nil {
		t.Fatalf("second Mount: %v", err)
	}
	if n := countMounts(t, home); n != 1 {
		t.Errorf("%d mounts on %s, want 1", n, home)
	}
	if opts := mountOptions(t, home); !strings.Contains(opts, "nosuid") || !strings.Contains(opts, "nodev") {
		t.Errorf("mount options %q, want nosuid and nodev", opts)
	}
	// Another image on the same directory is refused.
	other := filepath.Join(tmp, "bob.img")
	if err := quota.Create(ctx, other, 16<<20, quota.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := quota.Mount(ctx, other, home, quota.MountOptions{}); !errors.Is(err, quota.ErrBusy) {
		t.Errorf("Mount of another image on %s = %v, want ErrBusy", home, err)
	}

	if err := syscall.Stat(home, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != testUID || st.Gid != testGID {
		t.Fatalf("home root owned by %d:%d, want %d:%d", st.Uid, st.Gid, testUID, testGID)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	sp, err := quota.Measure(home)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fresh: %+v", sp)
	if sp.Capacity < size || sp.Capacity > size+size/50 || sp.Used >= 1<<20 || sp.Full() {
		t.Errorf("Measure = %+v for %d usable bytes", sp, size)
	}

	// Random source data, so that a corrupted copy cannot pass.
	src := filepath.Join(tmp, "src")
	data := make([]byte, 64<<20)
	rand.Read(data)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(home, "keep")
	if out, err := asUser(ctx, "dd", "if="+src, "of="+keep, "bs=1M", "count=1", "conv=fsync"); err != nil {
		t.Fatalf("dd keep: %v: %s", err, out)
	}
	keepSum := sha256.Sum256(data[:1<<20])
	if sum(t, keep, -1) != keepSum {
		t.Fatal("keep differs from what was written")
	}

	// Fill the home: the write fails with ENOSPC, for this user, and what
	// was written stays.
	fill := filepath.Join(home, "fill")
	out, err := asUser(ctx, "dd", "if="+src, "of="+fill, "bs=64K", "conv=fsync")
	if err == nil {
		t.Fatalf("dd of %d bytes into a %d home succeeded: %s", len(data), size, out)
	}
	if !strings.Contains(out, "No space left on device") {
		t.Fatalf("dd failed with %v: %q, want No space left on device", err, out)
	}
	fi, err := os.Stat(fill)
	if err != nil {
		t.Fatal(err)
	}
	filled := fi.Size()
	t.Logf("filled %d bytes before ENOSPC", filled)
	if filled == 0 || filled >= size {
		t.Fatalf("fill has %d bytes", filled)
	}
	fillSum := sha256.Sum256(data[:filled])
	if sum(t, fill, -1) != fillSum {
		t.Error("fill differs from the bytes written before ENOSPC")
	}
	if sum(t, keep, -1) != keepSum {
		t.Error("keep changed after ENOSPC")
	}

	// Grow online, then there is room again.
	if err := quota.Grow(ctx, image, home, size/2); !errors.Is(err, quota.ErrShrink) {
		t.Errorf("Grow smaller = %v, want ErrShrink", err)
	}
	sp, err = quota.Measure(home)
	if err != nil {
		t.Fatal(err)
	}
	if !sp.Full() {
		t.Errorf("after ENOSPC, Measure = %+v: not full", sp)
	}
	before := sp.Capacity
	more := filepath.Join(home, "more")
	writeMore := func() {
		t.Helper()
		if out, err := asUser(ctx, "dd", "if="+src, "of="+more, "bs=1M", "count=16", "conv=fsync"); err != nil {
			t.Fatalf("dd after Grow: %v: %s", err, out)
		}
	}
	err = quota.Grow(ctx, image, home, 2*size)
	after := before
	if !hasCapSysResource(t) {
		// The kernel refuses online resizing without the capability: Grow
		// must say so and lose nothing; the offline Grow below finishes.
		t.Logf("no CAP_SYS_RESOURCE here, online Grow: %v", err)
		if err == nil || !strings.Contains(err.Error(), "CAP_SYS_RESOURCE") {
			t.Fatalf("online Grow without CAP_SYS_RESOURCE = %v, want an error naming it", err)
		}
		if sum(t, fill, -1) != fillSum || sum(t, keep, -1) != keepSum {
			t.Fatal("data changed after a failed Grow")
		}
	} else {
		if err != nil {
			t.Fatal(err)
		}
		sp, err := quota.Measure(home)
		if err != nil {
			t.Fatal(err)
		}
		after = sp.Capacity
		if after <= before+size/2 {
			t.Fatalf("total %d after growing online, %d before", after, before)
		}
		writeMore()
		// Growing to the same size again is harmless.
		if err := quota.Grow(ctx, image, home, 2*size); err != nil {
			t.Fatalf("Grow to the current size: %v", err)
		}
	}

	// Unmount and remount: everything is still there, read from disk.
	if err := quota.Unmount(ctx, home); err != nil {
		t.Fatal(err)
	}
	if mounted, err := quota.IsMounted(home); err != nil || mounted {
		t.Fatalf("IsMounted after Unmount = %v, %v", mounted, err)
	}
	if err := quota.Unmount(ctx, home); err != nil {
		t.Errorf("second Unmount: %v", err)
	}
	if devs := loopsOf(t, image); len(devs) != 0 {
		t.Errorf("loop devices %v still serve the image after Unmount: a mount would reuse their stale blocks", devs)
	}
	// Offline growth refuses an image mounted elsewhere.
	elsewhere := filepath.Join(t.TempDir(), "elsewhere")
	mountImage(t, ctx, image, elsewhere)
	if err := quota.Grow(ctx, image, home, 3*size); !errors.Is(err, quota.ErrBusy) {
		t.Errorf("offline Grow of an image mounted elsewhere = %v, want ErrBusy", err)
	}
	if err := quota.Unmount(ctx, elsewhere); err != nil {
		t.Fatal(err)
	}
	// Offline growth, while unmounted.
	if err := quota.Grow(ctx, image, home, 3*size); err != nil {
		t.Fatal(err)
	}
	mountImage(t, ctx, image, home)
	if sp, err := quota.Measure(home); err != nil || sp.Capacity <= after+size/2 {
		t.Errorf("capacity %d after growing offline, %d before (%v)", sp.Capacity, after, err)
	}
	if _, err := os.Stat(more); errors.Is(err, os.ErrNotExist) {
		writeMore()
	}
	if sum(t, keep, -1) != keepSum {
		t.Error("keep changed across remount")
	}
	if sum(t, fill, -1) != fillSum {
		t.Error("fill changed across remount")
	}
	if sum(t, more, -1) != sha256.Sum256(data[:16<<20]) {
		t.Error("more changed across remount")
	}
}

// hasCapSysResource reports whether this process may resize a mounted
// ext4 file system.
func hasCapSysResource(t *testing.T) bool {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	return data[unix.CAP_SYS_RESOURCE/32].Effective&(1<<(unix.CAP_SYS_RESOURCE%32)) != 0
}

func mountLines(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 5 && f[4] == dir {
			lines = append(lines, l)
		}
	}
	return lines
}

func countMounts(t *testing.T, dir string) int { return len(mountLines(t, dir)) }

func mountOptions(t *testing.T, dir string) string {
	lines := mountLines(t, dir)
	if len(lines) == 0 {
		t.Fatalf("%s not mounted", dir)
	}
	return strings.Fields(lines[len(lines)-1])[5]
}

// loopsOf lists the loop devices that serve image.
func loopsOf(t *testing.T, image string) []string {
	t.Helper()
	want, err := filepath.EvalSymlinks(image)
	if err != nil {
		t.Fatal(err)
	}
	var devs []string
	entries, _ := os.ReadDir("/sys/block")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "loop", "backing_file"))
		if err == nil && strings.TrimSpace(string(b)) == want {
			devs = append(devs, e.Name())
		}
	}
	return devs
}

// TestLoopDevicesAreFreed: a loop device that outlives its mount (set up
// without the kernel's autoclear, or not yet cleared) would serve a later
// mount of the image with its old size and cached blocks. Unmount frees
// the one it unmounted, and an offline Grow frees any left idle.
func TestLoopDevicesAreFreed(t *testing.T) {
	needLoop(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	image, home := filepath.Join(dir, "img"), filepath.Join(dir, "home")
	if err := quota.Create(ctx, image, 16<<20, quota.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	attach := func() string {
		t.Helper()
		out, err := exec.CommandContext(ctx, "losetup", "--find", "--show", image).Output()
		if err != nil {
			t.Fatalf("losetup: %v", err)
		}
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() { _ = exec.Command("losetup", "--detach", dev).Run() })
		return dev
	}

	// Mounted from a loop device of its own (no autoclear).
	dev := attach()
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "mount", dev, home).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	if err := quota.Unmount(ctx, home); err != nil {
		t.Fatal(err)
	}
	if devs := loopsOf(t, image); len(devs) != 0 {
		t.Errorf("loop devices %v still serve the image after Unmount", devs)
	}

	// Left attached, mounted nowhere: an offline Grow frees it first.
	attach()
	if err := quota.Grow(ctx, image, home, 32<<20); err != nil {
		t.Fatal(err)
	}
	if devs := loopsOf(t, image); len(devs) != 0 {
		t.Errorf("loop devices %v still serve the image after an offline Grow", devs)
	}
	mountImage(t, ctx, image, home)
	if sp, err := quota.Measure(home); err != nil || sp.Capacity < 24<<20 {
		t.Errorf("capacity %d after growing to 32 MiB (%v)", sp.Capacity, err)
	}
}

// TestCapacityIsTheQuota: the user of an image made for n bytes can write
// n bytes (ext4's journal, inode tables and reserve come on top, not out
// of them), and not much more; once "No space left on device" stops them,
// Measure says full. Before, a 512 MiB image held 477 MiB, and its usage
// read 93% when writes failed.
func TestCapacityIsTheQuota(t *testing.T) {
	needLoop(t)
	ctx := testCtx(t)
	tmp := t.TempDir()
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		usable int64
		fill   bool
	}{
		{quota.MinSize, false}, {64 << 20, true}, {100 << 20, false}, {512 << 20, true},
		{1 << 30, false}, {3 << 30, false}, {10 << 30, false},
	} {
		name := strconv.FormatInt(c.usable>>20, 10) + "MiB"
		t.Run(name, func(t *testing.T) {
			image, home := filepath.Join(tmp, name+".img"), filepath.Join(tmp, name)
			if err := quota.Create(ctx, image, c.usable, quota.CreateOptions{UID: testUID, GID: testGID}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(image) })
			mountImage(t, ctx, image, home)
			sp, err := quota.Measure(home)
			if err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Stat(image)
			t.Logf("%d usable asked: image of %d bytes, capacity %d (+%.2f%%), %d inodes",
				c.usable, fi.Size(), sp.Capacity, 100*float64(sp.Capacity-c.usable)/float64(c.usable), sp.Inodes)
			if sp.Capacity < c.usable || sp.Capacity > c.usable+max(c.usable/100, 2<<20) {
				t.Errorf("capacity %d for %d usable bytes asked", sp.Capacity, c.usable)
			}
			if want := uint64(c.usable / 8192); sp.Inodes < want*9/10 {
				t.Errorf("%d inodes, want about one per 8 KiB (%d)", sp.Inodes, want)
			}
			if !c.fill {
				return
			}
			fill := filepath.Join(home, "fill")
			out, err := asUser(ctx, "dd", "if=/dev/zero", "of="+fill, "bs=1M", "conv=fsync")
			if err == nil || !strings.Contains(out, "No space left on device") {
				t.Fatalf("filling the home: %v %q, want No space left on device", err, out)
			}
			fi, err = os.Stat(fill)
			if err != nil {
				t.Fatal(err)
			}
			full, err := quota.Measure(home)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("full after %d bytes written: %+v", fi.Size(), full)
			if !full.Full() || full.Used < full.Capacity-quota.FullBelow || full.Capacity != sp.Capacity {
				t.Errorf("after ENOSPC: %+v, want full, used within %d of the capacity %d", full, quota.FullBelow, sp.Capacity)
			}
			if fi.Size() < c.usable-quota.FullBelow-(1<<20) {
				t.Errorf("the user wrote %d bytes before ENOSPC; %d were promised", fi.Size(), c.usable)
			}
		})
	}
}

// TestFullOfInodes: a file system without a free inode is full, however
// many blocks are free.
func TestFullOfInodes(t *testing.T) {
	needLoop(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	image, home := filepath.Join(dir, "img"), filepath.Join(dir, "home")
	if err := quota.Create(ctx, image, quota.MinSize, quota.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mountImage(t, ctx, image, home)
	for i := 0; ; i++ {
		f, err := os.Create(filepath.Join(home, "f"+strconv.Itoa(i)))
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
		f.Close()
	}
	sp, err := quota.Measure(home)
	if err != nil {
		t.Fatal(err)
	}
	if sp.FreeInodes != 0 || sp.Available < quota.FullBelow || !sp.Full() {
		t.Errorf("out of inodes: %+v, want full with blocks to spare", sp)
	}
}

// TestProvision: a new home is created at its size; an existing image of
// the older kind (sized by its file, with blocks reserved for root) gets
// those blocks back and grows so that its user has what was asked,
// keeping the files; a larger size grows it again; a smaller one leaves
// it alone.
func TestProvision(t *testing.T) {
	needLoop(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	image, home := filepath.Join(dir, "img"), filepath.Join(dir, "home")
	mo := quota.MountOptions{NoSuid: true, NoDev: true}
	unmount := func() {
		t.Helper()
		if err := quota.Unmount(ctx, home); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { quota.Unmount(context.Background(), home) })
	capacity := func() int64 {
		t.Helper()
		sp, err := quota.Measure(home)
		if err != nil {
			t.Fatal(err)
		}
		return sp.Capacity
	}

	// The older kind: mkfs of a 48 MiB file, 5% reserved for root.
	const old = 48 << 20
	if err := os.WriteFile(image, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, old); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-m", "5", image).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v %s", err, out)
	}
	mountImage(t, ctx, image, home)
	was := capacity()
	if err := os.WriteFile(filepath.Join(home, "keep"), []byte("still here"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("the older kind: %d usable of a %d image", was, old)
	if was >= old*95/100 {
		t.Fatalf("the older kind already offers %d of %d", was, old)
	}
	unmount()

	if err := quota.Provision(ctx, image, home, old, quota.CreateOptions{}, mo); err != nil {
		t.Fatal(err)
	}
	if got := capacity(); got < old || got > old+old/20 {
		t.Errorf("after Provision: %d usable, want %d", got, old)
	}
	if b, err := os.ReadFile(filepath.Join(home, "keep")); err != nil || string(b) != "still here" {
		t.Errorf("a file after Provision: %q, %v", b, err)
	}
	if opts := mountOptions(t, home); !strings.Contains(opts, "nosuid") || !strings.Contains(opts, "nodev") {
		t.Errorf("mount options %q", opts)
	}
	out, err := exec.CommandContext(ctx, "dumpe2fs", "-h", image).Output()
	if err == nil && !regexp.MustCompile(`(?m)^Reserved block count:\s+0$`).Match(out) {
		t.Errorf("blocks still reserved for root:\n%s", out)
	}

	// Again, mounted: nothing to do.
	if err := quota.Provision(ctx, image, home, old, quota.CreateOptions{}, mo); err != nil {
		t.Fatal(err)
	}
	if n := countMounts(t, home); n != 1 {
		t.Errorf("%d mounts on %s", n, home)
	}
	// Unmounted, a larger size: grown offline.
	unmount()
	if err := quota.Provision(ctx, image, home, 2*old, quota.CreateOptions{}, mo); err != nil {
		t.Fatal(err)
	}
	if got := capacity(); got < 2*old || got > 2*old+old/10 {
		t.Errorf("after Provision of %d: %d usable", 2*old, got)
	}
	// A smaller size: unchanged.
	fi, _ := os.Stat(image)
	unmount()
	if err := quota.Provision(ctx, image, home, old, quota.CreateOptions{}, mo); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(image); fi2.Size() != fi.Size() {
		t.Errorf("Provision of a smaller size changed the image from %d to %d bytes", fi.Size(), fi2.Size())
	}
	// Mounted, a larger size: grown online where the kernel allows it,
	// else mounted all the same and ErrShort.
	err = quota.Provision(ctx, image, home, 3*old, quota.CreateOptions{}, mo)
	if hasCapSysResource(t) {
		if err != nil || capacity() < 3*old {
			t.Errorf("online Provision of %d: %v, %d usable", 3*old, err, capacity())
		}
	} else if !errors.Is(err, quota.ErrShort) {
		t.Errorf("online Provision without CAP_SYS_RESOURCE = %v, want ErrShort", err)
	}
	if b, err := os.ReadFile(filepath.Join(home, "keep")); err != nil || string(b) != "still here" {
		t.Errorf("a file at the end: %q, %v", b, err)
	}

	// A new image.
	fresh, freshHome := filepath.Join(dir, "fresh.img"), filepath.Join(dir, "fresh")
	if err := quota.Provision(ctx, fresh, freshHome, 40<<20, quota.CreateOptions{UID: testUID, GID: testGID}, mo); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { quota.Unmount(context.Background(), freshHome) })
	if sp, err := quota.Measure(freshHome); err != nil || sp.Capacity < 40<<20 {
		t.Errorf("a new image: %+v, %v", sp, err)
	}
}
