package workspace_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// TestCrashIsRestarted: the health loop notices a workspace whose agent
// died, records the crash and starts it again after the backoff, on its
// own.
func TestCrashIsRestarted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.Now = nil // the real clock: the restart timer and the backoff agree
	m := e.manager(cfg)
	e.run(m)

	w := ensure(t, m, "hank")
	for crash := 1; crash <= 2; crash++ {
		dead := e.orch.agent(w.ID)
		dead.kill()
		waitFor(t, "the crash to be recorded", func() bool { return e.get(w.ID).Restarts == crash })
		waitFor(t, "the restart", func() bool {
			a := e.orch.agent(w.ID)
			return a != dead && a != nil && a.alive() && e.get(w.ID).State == workspace.StateRunning
		})
		got := e.get(w.ID)
		if got.Restarts != crash || got.StoppedAt.IsZero() || got.LastError != "" || got.Address != e.orch.agent(w.ID).addr {
			t.Errorf("after crash %d: %+v", crash, got)
		}
		if n := e.orch.startsOf(w.ID); n != crash+1 {
			t.Errorf("after crash %d: %d starts, want %d", crash, n, crash+1)
		}
		// The progress follows the registry: wait for it, not for a race.
		waitFor(t, "the progress to say running after the restart", func() bool {
			return m.Progress("hank").State == workspace.StateRunning
		})
	}
	if tg, err := m.Target(context.Background(), "hank", false); err != nil || tg.URL.Host != e.orch.agent(w.ID).addr {
		t.Errorf("Target after the restarts = %v, %v", tg, err)
	}
	if ev := e.stopEvents(); len(ev) != 0 {
		t.Errorf("a crash reported as a stop: %+v", ev)
	}
}

// TestCrashBackoffDoubles: each crash in a row waits twice as long before
// the restart, up to BackoffMax; the wait is what the person is told.
func TestCrashBackoffDoubles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.BackoffMin, cfg.BackoffMax = 10*time.Second, 30*time.Second
	m := e.manager(cfg)
	e.run(m)
	ctx := context.Background()

	w := ensure(t, m, "iris")
	steps := []struct {
		restarts int
		told     []string // the wait told at each 10s step
	}{
		{1, []string{"10s"}},
		{2, []string{"20s", "10s"}},
		{3, []string{"30s", "20s", "10s"}}, // 40s, capped
	}
	for _, step := range steps {
		crashedAt := e.clock.Now()
		e.orch.agent(w.ID).kill()
		waitFor(t, "the crash to be recorded", func() bool {
			return e.get(w.ID).Restarts == step.restarts && m.Progress("iris").State == workspace.StateFailed
		})
		got := e.get(w.ID)
		if got.State != workspace.StateFailed || !got.StoppedAt.Equal(crashedAt) || !strings.Contains(got.LastError, "stopped answering") {
			t.Fatalf("crash %d: registry %+v", step.restarts, got)
		}
		if p := m.Progress("iris"); p.State != workspace.StateFailed || p.Error == "" {
			t.Errorf("crash %d: Progress %+v", step.restarts, p)
		}
		if _, err := m.Target(ctx, "iris", false); !errors.Is(err, workspace.ErrStopped) {
			t.Errorf("crash %d: Target without autostart = %v, want ErrStopped", step.restarts, err)
		}
		for _, told := range step.told {
			_, err := m.Ensure(ctx, "iris")
			if !errors.Is(err, workspace.ErrStarting) || !strings.Contains(err.Error(), "trying again in "+told) {
				t.Fatalf("crash %d: Ensure during the backoff = %v, want ErrStarting, trying again in %s", step.restarts, err, told)
			}
			if p := m.Progress("iris"); p.State != workspace.StateFailed || !strings.HasSuffix(p.Phase, "trying again in "+told) {
				t.Errorf("crash %d: Progress during the backoff = %+v", step.restarts, p)
			}
			e.clock.Advance(10 * time.Second)
		}
		if n := e.orch.startsOf(w.ID); n != step.restarts {
			t.Fatalf("crash %d: restarted during the backoff (%d starts)", step.restarts, n)
		}
		ensure(t, m, "iris")
		if n := e.orch.startsOf(w.ID); n != step.restarts+1 {
			t.Errorf("crash %d: %d starts after the backoff, want %d", step.restarts, n, step.restarts+1)
		}
	}
}

// TestStopDuringCrashBackoffStaysStopped: a workspace stopped while it
// waits to be restarted after a crash stays stopped.
func TestStopDuringCrashBackoffStaysStopped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.BackoffMin = 300 * time.Millisecond
	m := e.manager(cfg)
	e.run(m)

	w := ensure(t, m, "jack")
	e.orch.agent(w.ID).kill()
	waitFor(t, "the crash to be recorded", func() bool { return e.get(w.ID).Restarts == 1 })
	if err := m.StopUser(context.Background(), "jack", "stopped by its user"); err != nil {
		t.Fatal(err)
	}
	if got := e.get(w.ID); got.State != workspace.StateStopped {
		t.Fatalf("after StopUser: %+v", got)
	}
	// Nothing to wait for when it works: give the crash's restart timer
	// ten times its backoff to (wrongly) fire.
	deadline := time.Now().Add(10 * cfg.BackoffMin)
	for time.Now().Before(deadline) {
		if n := e.orch.startsOf(w.ID); n != 1 {
			t.Fatalf("the workspace stopped by its user was started again by the crash's restart timer (%d starts; state %s)",
				n, e.get(w.ID).State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.get(w.ID); got.State != workspace.StateStopped {
		t.Errorf("state %s, want stopped", got.State)
	}
}

// TestCrashOfUnregisteredWorkspace: when the crash cannot be recorded (the
// record is gone, the database fails, the gateway shuts down), the health
// loop logs it and goes on.
func TestCrashOfUnregisteredWorkspace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.manager(e.config())
	stop := e.run(m)

	w := ensure(t, m, "kate")
	if err := e.store.Delete(context.Background(), w.ID); err != nil {
		t.Fatal(err)
	}
	e.orch.agent(w.ID).kill()
	// The orchestrator is told to clean up just before the crash is
	// recorded; Run returns once that health check is over.
	waitFor(t, "the crash to be handled", func() bool {
		for _, id := range e.orch.stopCalls() {
			if id == w.ID {
				return true
			}
		}
		return false
	})
	if p := stop(); p != nil {
		t.Fatalf("Run panicked handling the crash of a workspace whose record is gone: %v", p)
	}
}

// TestIdle: the idle warning comes IdleWarning before the policy's
// IdleTimeout; "keep working" and the agent's activity push the stop back;
// past the timeout the workspace is stopped, its files kept.
func TestIdle(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.IdleWarning = 5 * time.Minute
	cfg.PolicyFor = func(context.Context, string) (workspace.Policy, error) {
		return workspace.Policy{Name: "test", IdleTimeout: 10 * time.Minute}, nil
	}
	m := e.manager(cfg)
	e.run(m)
	ctx := context.Background()
	t0 := e.clock.Now()

	w := ensure(t, m, "liam")
	agent := e.orch.agent(w.ID)
	idle := func(at time.Duration) workspace.IdleStatus {
		t.Helper()
		e.clock.Advance(t0.Add(at).Sub(e.clock.Now()))
		st, err := m.Idle(ctx, "liam")
		if err != nil {
			t.Fatalf("Idle at %s: %v", at, err)
		}
		return st
	}
	for _, step := range []struct {
		at                 time.Duration
		do                 func()
		warning            bool
		lastActive, stopAt time.Duration // from t0
	}{
		{at: 4 * time.Minute, warning: false, lastActive: 0, stopAt: 10 * time.Minute},
		{at: 6 * time.Minute, warning: true, lastActive: 0, stopAt: 10 * time.Minute},
		{at: 6 * time.Minute, do: func() { m.KeepAlive("liam") }, warning: false, lastActive: 6 * time.Minute, stopAt: 16 * time.Minute},
		{at: 12 * time.Minute, warning: true, lastActive: 6 * time.Minute, stopAt: 16 * time.Minute},
		{at: 12 * time.Minute, do: func() { agent.setLastActive(t0.Add(12 * time.Minute)) }, warning: false, lastActive: 12 * time.Minute, stopAt: 22 * time.Minute},
		{at: 17 * time.Minute, warning: true, lastActive: 12 * time.Minute, stopAt: 22 * time.Minute},
	} {
		if step.do != nil {
			e.clock.Advance(t0.Add(step.at).Sub(e.clock.Now()))
			step.do()
		}
		st := idle(step.at)
		if st.Warning != step.warning || !st.LastActive.Equal(t0.Add(step.lastActive)) || !st.StopAt.Equal(t0.Add(step.stopAt)) {
			t.Errorf("at %s: %+v, want warning %v, last active %s, stop at %s", step.at, st, step.warning, step.lastActive, step.stopAt)
		}
		if got := e.get(w.ID); got.State != workspace.StateRunning {
			t.Fatalf("at %s, before the idle timeout: %s", step.at, got.State)
		}
	}

	e.clock.Advance(t0.Add(22*time.Minute + time.Second).Sub(e.clock.Now()))
	waitFor(t, "the idle stop", func() bool { return e.get(w.ID).State == workspace.StateStopped })
	got := e.get(w.ID)
	if got.Home != w.Home || got.UserID != "liam" || !got.LastActivity.Equal(t0.Add(12*time.Minute)) {
		t.Errorf("registry after the idle stop: %+v", got)
	}
	if _, err := os.Stat(filepath.Join(w.Home, fakeMarker)); err != nil {
		t.Errorf("the idle stop lost the user's files: %v", err)
	}
	if agent.alive() {
		t.Error("the agent still runs after the idle stop")
	}
	ev := e.stopEvents()
	if len(ev) != 1 || ev[0].WorkspaceID != w.ID || !strings.Contains(ev[0].Reason, "idle") {
		t.Errorf("OnStopped: %+v, want one stop with a reason mentioning idle", ev)
	}
	if _, err := m.Idle(ctx, "liam"); !errors.Is(err, workspace.ErrStopped) {
		t.Errorf("Idle after the stop = %v, want ErrStopped", err)
	}
	if _, err := m.Target(ctx, "liam", false); !errors.Is(err, workspace.ErrStopped) {
		t.Errorf("Target without autostart after the idle stop = %v, want ErrStopped", err)
	}
}

// TestReattach: a new Manager over the same registry (a gateway restart)
// takes over the workspaces whose agent still answers, without starting
// them again, and marks the dead ones failed; other nodes' are left alone.
func TestReattach(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.BackoffMin, cfg.BackoffMax = time.Hour, time.Hour // no restart during the test
	ctx := context.Background()

	other := &workspace.Workspace{ID: "ws-other", UserID: "olga", State: workspace.StateRunning, Orchestrator: "fake",
		Node: "node-2", Address: "127.0.0.1:1", Secret: "s", CreatedAt: e.clock.Now().Add(-time.Hour)}
	if err := e.store.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	first := e.manager(cfg)
	stopFirst := e.run(first)
	alive := ensure(t, first, "mia")
	dead := ensure(t, first, "noah")
	if p := stopFirst(); p != nil {
		t.Fatalf("Run panicked: %v", p)
	}
	e.orch.agent(dead.ID).kill() // dies while no gateway watches
	starts := len(e.orch.startCalls())

	second := e.manager(cfg)
	e.run(second)
	if got := e.get(dead.ID); got.Restarts != 1 || !strings.Contains(got.LastError, "gateway restart") || got.Address != "" {
		t.Errorf("the dead workspace: %+v", got)
	}
	if _, err := second.Target(ctx, "noah", false); !errors.Is(err, workspace.ErrStopped) {
		t.Errorf("Target of the dead workspace without autostart = %v, want ErrStopped", err)
	}

	if p := second.Progress("mia"); p.State != workspace.StateRunning {
		t.Errorf("Progress of the surviving workspace = %+v", p)
	}
	tg, err := second.Target(ctx, "mia", false)
	if err != nil {
		t.Fatalf("Target of the surviving workspace: %v", err)
	}
	if tg.URL.Host != alive.Address || tg.Header.Get(agentapi.SecretHeader) != alive.Secret {
		t.Errorf("target %v, want the running agent at %s with its secret", tg.URL, alive.Address)
	}
	if st, err := second.Idle(ctx, "mia"); err != nil || st.LastActive.IsZero() {
		t.Errorf("Idle of the re-attached workspace = %+v, %v", st, err)
	}
	if n := e.orch.agent(alive.ID).rejections(); n != 0 {
		t.Errorf("the re-attached agent refused %d requests: the Manager lost its secret", n)
	}
	if n := len(e.orch.startCalls()); n != starts {
		t.Errorf("re-attaching started workspaces: %d starts, want %d", n, starts)
	}
	if got := e.get(other.ID); got.State != workspace.StateRunning || got.Restarts != 0 {
		t.Errorf("another node's workspace was touched: %+v", got)
	}
}

// TestReattachSparesItsOwnStarts: a request that arrives as the gateway
// starts begins a start while Run re-attaches; re-attaching must leave the
// start this very Manager runs alone, not take it for one a previous
// gateway left half done.
func TestReattachSparesItsOwnStarts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.ReadyTimeout = 3 * time.Second
	m := e.manager(cfg)
	e.orch.setNotReady(true)

	errc := make(chan error, 1)
	go func() {
		_, err := m.Ensure(context.Background(), "vic")
		errc <- err
	}()
	var w *workspace.Workspace
	waitFor(t, "the agent to be launched", func() bool {
		w = e.byUser("vic")
		return w != nil && w.State == workspace.StateStarting && w.Address != ""
	})
	e.run(m)
	e.orch.agent(w.ID).setReady(true)
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("the start under way when Run began failed: %v", err)
		}
	case <-time.After(guard):
		t.Fatal("the start under way when Run began did not end")
	}
	got := e.get(w.ID)
	if got.State != workspace.StateRunning || got.Restarts != 0 {
		t.Errorf("registry: state %s, restarts %d, last error %q; want running, never crashed", got.State, got.Restarts, got.LastError)
	}
	if slices.Contains(e.orch.stopCalls(), w.ID) {
		t.Error("re-attaching stopped the agent being started")
	}
	if ev := e.stopEvents(); len(ev) != 0 {
		t.Errorf("OnStopped: %+v", ev)
	}
}

// childEnv names the test a child process runs the scenario of.
const childEnv = "CODEHUB_WORKSPACE_TEST_CHILD"

// TestStartSurvivesShutdown: the gateway shutting down (Run's context
// ends) while a warm workspace starts fails that start, and nothing else.
// When the Manager panics it does so on a goroutine of its own, taking the
// whole process down, so the scenario runs in a child process.
func TestStartSurvivesShutdown(t *testing.T) {
	if os.Getenv(childEnv) == t.Name() {
		shutdownDuringWarmStart(t)
		return
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	if i := strings.Index(string(out), "panic: "); i >= 0 {
		end := min(len(out), i+1500)
		t.Fatalf("the gateway crashed when a warm start ended after the shutdown:\n%s", out[i:end])
	}
	t.Fatalf("child: %v\n%s", err, out)
}

func shutdownDuringWarmStart(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.WarmPool = 1
	m := e.manager(cfg)
	e.orch.setBlock(true)
	e.orch.setStubborn(true)
	stop := e.run(m)
	waitFor(t, "the warm start", func() bool { return len(e.orch.blockedUsers()) == 1 })
	if p := stop(); p != nil { // the gateway shuts down
		t.Fatalf("Run panicked: %v", p)
	}
	e.orch.releaseAll() // the launch completes just after
	waitFor(t, "the warm start to end", func() bool {
		pool := e.warm()
		return len(pool) == 1 && pool[0].State != workspace.StateStarting
	})
	if w := e.warm()[0]; w.State != workspace.StateFailed {
		t.Errorf("the warm start cut short by the shutdown: %s, want failed", w.State)
	}
}
