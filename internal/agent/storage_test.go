package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/quota"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/hashicorp/go-hclog"
)

func TestDuBytes(t *testing.T) {
	dir := t.TempDir()
	big := make([]byte, 256*1024)
	for i := range big {
		big[i] = byte(i) // not sparse
	}
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "b", "big"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	base, err := duBytes(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if base < int64(len(big)) {
		t.Fatalf("duBytes = %d, less than the %d-byte file", base, len(big))
	}
	// A hard link and a symbolic link add no data.
	if err := os.Link(filepath.Join(dir, "a", "b", "big"), filepath.Join(dir, "hardlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr", filepath.Join(dir, "symlink")); err != nil {
		t.Fatal(err)
	}
	again, err := duBytes(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if again-base >= int64(len(big)) {
		t.Errorf("duBytes grew from %d to %d with links only", base, again)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := duBytes(ctx, dir); err == nil {
		t.Error("a cancelled walk succeeded")
	}
}

func TestOwnFileSystem(t *testing.T) {
	if sp, ok := ownFileSystem("/", 0); !ok || sp.Used <= 0 || sp.Capacity < sp.Used {
		t.Errorf("ownFileSystem(/) = %+v, %v; want the root file system's use", sp, ok)
	}
	// The host's disk is nobody's quota: with a limit far below it, its
	// figures are not taken for the user's.
	if _, ok := ownFileSystem("/", 1<<20); ok {
		t.Error("ownFileSystem(/, 1 MiB limit): the host's disk taken for a 1 MiB quota")
	}
	dir := t.TempDir()
	var st, parent syscall.Stat_t
	if syscall.Stat(dir, &st) == nil && syscall.Stat(filepath.Dir(dir), &parent) == nil && st.Dev == parent.Dev {
		if _, ok := ownFileSystem(dir, 0); ok {
			t.Errorf("ownFileSystem(%s): a plain directory taken for a mount", dir)
		}
	}
}

// TestStorageMeterOnImage: on a home of its own (an ext4 image of a
// quota), the agent reports what its user sees: the quota as capacity,
// and full when writes fail.
func TestStorageMeterOnImage(t *testing.T) {
	testenv.SkipShort(t)
	if os.Geteuid() != 0 {
		testenv.Need(t, "root (mounts an image)")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		testenv.Need(t, "mkfs.ext4")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // guards a hang only
	defer cancel()
	dir := t.TempDir()
	image, home := filepath.Join(dir, "img"), filepath.Join(dir, "home")
	const limit = 24 << 20
	if err := quota.Provision(ctx, image, home, limit, quota.CreateOptions{}, quota.MountOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { quota.Unmount(context.Background(), home) })
	m := &storageMeter{path: home, limit: limit, interval: time.Hour, log: hclog.NewNullLogger(), ctx: ctx}
	sp := m.Measure()
	if sp.Capacity < limit || sp.Capacity > limit+1<<20 || sp.Full() {
		t.Fatalf("fresh home: %+v, want a capacity of %d", sp, limit)
	}
	out, err := exec.CommandContext(ctx, "dd", "if=/dev/zero", "of="+filepath.Join(home, "fill"), "bs=1M").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "No space left on device") {
		t.Fatalf("filling: %v %s", err, out)
	}
	if sp := m.Measure(); !sp.Full() || sp.Used < limit-quota.FullBelow {
		t.Errorf("full home: %+v, want full", sp)
	}
}

// TestStorageMeterNeverBlocks checks that the walk runs in the background:
// the first call answers at once, later ones get the result.
func TestStorageMeterNeverBlocks(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 64*1024), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &storageMeter{path: dir, interval: time.Hour, log: hclog.NewNullLogger(), ctx: ctx}
	m.Bytes()
	deadline := time.Now().Add(guard)
	for m.Bytes() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the walk never reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.mu.Lock()
	walked := m.walkedAt
	m.mu.Unlock()
	m.Bytes()
	m.mu.Lock()
	if m.walking || !m.walkedAt.Equal(walked) {
		t.Error("a second walk started within the interval")
	}
	m.mu.Unlock()
	cancel()
	m.wait()
}

func TestMachineDefaults(t *testing.T) {
	dir := t.TempDir()
	if err := machineDefaults(dir); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "Machine", "settings.json")
	b, err := os.ReadFile(p)
	if err != nil || !strings.Contains(string(b), `"remote.autoForwardPortsSource": "output"`) {
		t.Fatalf("settings: %q, %v", b, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	// The user's own edits are never overwritten.
	if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := machineDefaults(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "{}" {
		t.Errorf("overwritten: %q", b)
	}
}
