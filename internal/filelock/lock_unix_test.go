//go:build unix

package filelock_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/codehub-dev/codehub/internal/filelock"
)

// TestLockExcludes: while one holder has the lock, another waits, and
// gives up when its context ends; once released, it gets the lock.
func TestLockExcludes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := filelock.Lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := filelock.With(ctx, path, func() error { return errors.New("ran while the lock was held") }); !errors.Is(err, context.Canceled) {
		t.Fatalf("With while held = %v, want context.Canceled", err)
	}
	unlock()
	ran := false
	if err := filelock.With(context.Background(), path, func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("With after the release = %v (ran %v)", err, ran)
	}
}
