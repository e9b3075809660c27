package workspace_test

import (
	"context"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/workspace"
)

// TestStoppedElsewhereIsNotACrash: a workspace stopped by another
// manager on the same registry (another gateway, or `codehub user delete`
// with no gateway of its own) is forgotten by the manager that started
// it, not restarted as if it had crashed.
func TestStoppedElsewhereIsNotACrash(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.Now = nil // the real clock: a restart would come after the real backoff
	cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, time.Millisecond
	m := e.manager(cfg)
	e.run(m)
	w := ensure(t, m, "kate")

	other := e.manager(e.config())
	if err := other.StopUser(context.Background(), "kate", "its user was deleted"); err != nil {
		t.Fatal(err)
	}
	if got := e.get(w.ID); got.State != workspace.StateStopped {
		t.Fatalf("after the stop: %+v", got)
	}
	// Many health rounds (10ms each) and backoffs.
	time.Sleep(300 * time.Millisecond)
	got := e.get(w.ID)
	if got.State != workspace.StateStopped || got.Restarts != 0 || got.LastError != "" {
		t.Errorf("the workspace stopped elsewhere: %+v; want stopped, no crash", got)
	}
	if n := e.orch.startsOf(w.ID); n != 1 {
		t.Errorf("%d starts; want 1: it was restarted", n)
	}
	if _, err := m.Target(context.Background(), "kate", false); err != workspace.ErrStopped {
		t.Errorf("Target without autostart = %v; want ErrStopped", err)
	}
}
