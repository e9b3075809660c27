package workspace_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/go-hclog"
)

// syncBuffer collects a logger's output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// cannot is a start failure no retry fixes until something changes, as
// the Nomad orchestrator reports one (a driver no node has).
func cannot() error {
	return fmt.Errorf("%w: no Nomad node can run the workspace: every node was filtered out: missing drivers", workspace.ErrCannotStart)
}

// TestCannotStartIsNotRetriedAtEveryVisit: a start that fails for a reason
// a retry cannot fix (ErrCannotStart) is not started again, not even once
// at once, before CannotStartRetry: the start page reloading must not
// dispatch a workspace, and build an exec chroot, every few seconds.
func TestCannotStartIsNotRetriedAtEveryVisit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.CannotStartRetry = 5 * time.Minute
	m := e.manager(cfg)
	ctx := context.Background()

	e.orch.failNextStart(cannot())
	if _, err := m.Ensure(ctx, "olga"); !errors.Is(err, workspace.ErrCannotStart) {
		t.Fatalf("first start: %v, want ErrCannotStart", err)
	}
	w := e.byUser("olga")
	for range 5 {
		_, err := m.Ensure(ctx, "olga")
		if !errors.Is(err, workspace.ErrStarting) || !strings.Contains(err.Error(), "cannot start; trying again in 5m0s") {
			t.Fatalf("Ensure after it: %v, want no start for 5m", err)
		}
	}
	if n := e.orch.startsOf(w.ID); n != 1 {
		t.Errorf("%d starts, want 1", n)
	}
	if p := m.Progress("olga"); p.State != workspace.StateFailed || !strings.Contains(p.Error, "missing drivers") {
		t.Errorf("Progress: %+v, want the cause", p)
	}
	e.clock.Advance(5 * time.Minute)
	if got := ensure(t, m, "olga"); got.State != workspace.StateRunning || e.orch.startsOf(w.ID) != 2 {
		t.Errorf("after the wait: %+v, %d starts", got, e.orch.startsOf(w.ID))
	}
}

// TestWarmPoolBacksOffWhenItCannotStart: a warm pool whose starts fail
// (the docker-only warm job on exec clients) tries again only after a
// wait, not at every health tick, and logs the failure once, not an ERROR
// and a WARN every tick; it says once when it starts workspaces again.
func TestWarmPoolBacksOffWhenItCannotStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.WarmPool = 1
	cfg.CannotStartRetry = time.Hour
	var out syncBuffer
	m := workspace.NewManager(cfg, hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Debug}))
	for range 3 {
		e.orch.failNextStart(cannot())
	}
	// The pool's record of each failure (its log line) is the point from
	// which it waits.
	failures := func(n int) func() bool {
		return func() bool {
			return out.count("the warm pool cannot start workspaces")+out.count("warm workspace failed to start again") == n
		}
	}
	e.run(m)
	waitFor(t, "a warm start to fail", failures(1))
	// Health ticks every 10ms: 30 of them, and no other start.
	time.Sleep(300 * time.Millisecond)
	if n := len(e.orch.startCalls()); n != 1 {
		t.Errorf("%d warm starts within the wait, want 1", n)
	}
	e.clock.Advance(time.Hour)
	waitFor(t, "the second warm start to fail", failures(2))
	if n := out.count("[ERROR]"); n != 1 {
		t.Errorf("%d errors logged for the same failure twice, want 1:\n%s", n, out.b.String())
	}
	if n := out.count("[WARN]"); n != 0 {
		t.Errorf("%d warnings logged:\n%s", n, out.b.String())
	}
	e.clock.Advance(time.Hour)
	waitFor(t, "the third warm start to fail", failures(3))
	e.clock.Advance(time.Hour)
	waitFor(t, "the pool to fill", func() bool { return len(e.warmRunning()) == 1 })
	waitFor(t, "the pool to say so", func() bool { return out.count("the warm pool starts workspaces again") == 1 })
}
