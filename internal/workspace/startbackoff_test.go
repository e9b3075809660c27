package workspace_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/workspace"
)

// TestFailedStartsBackOff: a start that keeps failing (an image Nomad
// cannot pull) is retried at once the first time, then no sooner than the
// crash backoff allows, doubling: the start page, which reloads every
// second, must not turn into a start (a dispatch, an image pull) every
// second. A start that succeeds resets the count.
func TestFailedStartsBackOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.BackoffMin, cfg.BackoffMax = 10*time.Second, time.Minute
	m := e.manager(cfg)
	ctx := context.Background()
	pull := errors.New("the workspace image could not be pulled")

	e.orch.failNextStart(pull)
	if _, err := m.Ensure(ctx, "olga"); err == nil || errors.Is(err, workspace.ErrStarting) || !strings.Contains(err.Error(), pull.Error()) {
		t.Fatalf("first start: %v, want the pull error", err)
	}
	w := e.byUser("olga")

	// The first retry goes at once: the cause may have been fixed.
	e.orch.failNextStart(pull)
	if _, err := m.Ensure(ctx, "olga"); err == nil || errors.Is(err, workspace.ErrStarting) {
		t.Fatalf("first retry: %v, want a start and its error", err)
	}
	if n := e.orch.startsOf(w.ID); n != 2 {
		t.Fatalf("%d starts after a retry, want 2", n)
	}

	// Then none within the backoff, however often asked.
	for range 5 {
		_, err := m.Ensure(ctx, "olga")
		if !errors.Is(err, workspace.ErrStarting) || !strings.Contains(err.Error(), "trying again in 10s") {
			t.Fatalf("Ensure during the backoff: %v, want ErrStarting, trying again in 10s", err)
		}
	}
	if n := e.orch.startsOf(w.ID); n != 2 {
		t.Errorf("%d starts after asking during the backoff, want still 2", n)
	}
	if p := m.Progress("olga"); p.State != workspace.StateFailed || !strings.HasSuffix(p.Phase, "trying again in 10s") || !strings.Contains(p.Error, pull.Error()) {
		t.Errorf("Progress during the backoff: %+v", p)
	}

	// After it, one more try; it fails too, and the wait doubles.
	e.clock.Advance(10 * time.Second)
	e.orch.failNextStart(pull)
	if _, err := m.Ensure(ctx, "olga"); err == nil || errors.Is(err, workspace.ErrStarting) {
		t.Fatalf("retry after the backoff: %v, want a start and its error", err)
	}
	if _, err := m.Ensure(ctx, "olga"); !errors.Is(err, workspace.ErrStarting) || !strings.Contains(err.Error(), "trying again in 20s") {
		t.Fatalf("Ensure after a third failure: %v, want trying again in 20s", err)
	}

	// It starts at last: running, and a later failure starts counting
	// afresh.
	e.clock.Advance(20 * time.Second)
	if got := ensure(t, m, "olga"); got.ID != w.ID || got.State != workspace.StateRunning {
		t.Fatalf("after the backoff: %+v", got)
	}
	if n := e.orch.startsOf(w.ID); n != 4 {
		t.Errorf("%d starts in all, want 4", n)
	}
	if err := m.StopUser(ctx, "olga", "test"); err != nil {
		t.Fatal(err)
	}
	e.orch.failNextStart(pull)
	if _, err := m.Ensure(ctx, "olga"); err == nil || errors.Is(err, workspace.ErrStarting) {
		t.Fatalf("a start failing after a success: %v", err)
	}
	e.orch.failNextStart(pull)
	if _, err := m.Ensure(ctx, "olga"); err == nil || errors.Is(err, workspace.ErrStarting) {
		t.Fatalf("its first retry after a success: %v, want a start at once", err)
	}
}
