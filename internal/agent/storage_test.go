package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

func TestMountUsage(t *testing.T) {
	if used, ok := mountUsage("/"); !ok || used <= 0 {
		t.Errorf("mountUsage(/) = %d, %v; want the root file system's use", used, ok)
	}
	dir := t.TempDir()
	var st, parent syscall.Stat_t
	if syscall.Stat(dir, &st) == nil && syscall.Stat(filepath.Dir(dir), &parent) == nil && st.Dev == parent.Dev {
		if _, ok := mountUsage(dir); ok {
			t.Errorf("mountUsage(%s): a plain directory taken for a mount", dir)
		}
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
