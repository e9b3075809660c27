//go:build unix

package filekeys_test

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
)

// holdLock takes the flock another process would hold on path's lock file
// and returns its release.
func holdLock(t *testing.T, path string) (release func()) {
	t.Helper()
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("flock: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
}

func TestRotateWaitsForTheLock(t *testing.T) {
	t.Parallel()
	path := keyPath(t)
	clock := newClock()
	k := mustOpen(t, path, clock)
	first := mustSign(t, k)

	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	release := holdLock(t, path)
	// Signing with a current key needs no lock.
	if kid := mustSign(t, k); kid != first {
		t.Fatalf("Sign = %q, want %q", kid, first)
	}
	// Rotating does: while another process holds it, the wait ends with
	// the context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if kid, err := k.Rotate(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Rotate while the lock is held = %q, %v; want context.Canceled", kid, err)
	}
	clock.Advance(rotateEvery)
	if kid, _, err := k.Sign(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sign needing a rotation while the lock is held = %q, %v; want context.Canceled", kid, err)
	}
	if after, err := os.ReadFile(path); err != nil || string(after) != string(before) {
		t.Errorf("the file changed while the lock was held (%v)", err)
	}
	release()
	if kid := mustSign(t, k); kid == first {
		t.Errorf("Sign after the lock was released did not rotate")
	}
}
