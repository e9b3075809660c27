package workspace_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// TestEnsureSingleFlight: however many requests ask for one user's
// workspace at once, it is started once.
func TestEnsureSingleFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.manager(e.config())
	e.orch.setBlock(true)
	ctx := context.Background()

	var wg sync.WaitGroup
	ids := make(chan string, 10)
	targetErrs := make(chan error, 5)
	for i := range 10 {
		wg.Go(func() {
			if i%2 == 0 {
				_, err := m.Target(ctx, "alice", true)
				targetErrs <- err
				return
			}
			w, err := m.Ensure(ctx, "alice")
			if err != nil {
				t.Errorf("Ensure: %v", err)
				return
			}
			ids <- w.ID
		})
	}
	waitFor(t, "the start to be launched", func() bool { return len(e.orch.blockedUsers()) == 1 })
	// The editor tabs give up waiting while the start is held: they were
	// all waiting on it.
	for range 5 {
		if err := <-targetErrs; !errors.Is(err, workspace.ErrStarting) {
			t.Errorf("Target while starting = %v, want ErrStarting", err)
		}
	}
	e.orch.releaseAll()
	wg.Wait()
	close(ids)

	var got []string
	for id := range ids {
		got = append(got, id)
	}
	if len(got) != 5 || len(slices.Compact(slices.Sorted(slices.Values(got)))) != 1 {
		t.Errorf("Ensure returned workspaces %v, want five times the same", got)
	}
	if n := len(e.orch.startCalls()); n != 1 {
		t.Errorf("%d starts, want 1", n)
	}
	if all, _ := e.store.List(ctx); len(all) != 1 {
		t.Errorf("%d workspace records, want 1", len(all))
	}
	if _, err := m.Target(ctx, "alice", true); err != nil {
		t.Errorf("Target once running: %v", err)
	}
	if n := len(e.orch.startCalls()); n != 1 {
		t.Errorf("%d starts after Target of a running workspace, want 1", n)
	}
}

// TestTargetWithoutAutostart: an editor tab reconnecting by itself never
// starts a workspace that is not running.
func TestTargetWithoutAutostart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, e *env, m *workspace.Manager)
	}{
		{"never started", func(*testing.T, *env, *workspace.Manager) {}},
		{"stopped", func(t *testing.T, e *env, m *workspace.Manager) {
			ensure(t, m, "bob")
			if err := m.StopUser(context.Background(), "bob", "test"); err != nil {
				t.Fatal(err)
			}
		}},
		{"failed", func(t *testing.T, e *env, m *workspace.Manager) {
			e.orch.failNextStart(errors.New("no room"))
			if _, err := m.Ensure(context.Background(), "bob"); err == nil {
				t.Fatal("Ensure succeeded, want the start to fail")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			m := e.manager(e.config())
			tc.prepare(t, e, m)
			before := len(e.orch.startCalls())
			records, _ := e.store.List(context.Background())

			if _, err := m.Target(context.Background(), "bob", false); !errors.Is(err, workspace.ErrStopped) {
				t.Errorf("Target(autostart=false) = %v, want ErrStopped", err)
			}
			if n := len(e.orch.startCalls()); n != before {
				t.Errorf("%d starts after Target without autostart, want %d", n, before)
			}
			if after, _ := e.store.List(context.Background()); len(after) != len(records) {
				t.Errorf("Target without autostart registered a workspace: %d records, want %d", len(after), len(records))
			}
		})
	}
}

// TestTargetWhileStarting: a person opening the editor is told it is
// starting, with progress, and then gets the workspace's address and
// secret.
func TestTargetWhileStarting(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.manager(e.config())
	ctx := context.Background()
	e.orch.setBlock(true)
	e.orch.setNotReady(true)

	if _, err := m.Target(ctx, "carol", true); !errors.Is(err, workspace.ErrStarting) {
		t.Fatalf("Target while the start is held = %v, want ErrStarting", err)
	}
	if p := m.Progress("carol"); p.State != workspace.StateStarting || p.Phase != "Preparing the fake home" {
		t.Errorf("Progress while launching = %+v, want starting with the orchestrator's phase", p)
	}
	e.orch.releaseAll()
	waitFor(t, "the IDE to be waited for", func() bool { return m.Progress("carol").Phase == "Starting your editor" })
	if p := m.Progress("carol"); p.State != workspace.StateStarting {
		t.Errorf("Progress while the IDE starts = %+v", p)
	}
	w := e.byUser("carol")
	if w == nil || w.State != workspace.StateStarting || w.Address == "" {
		t.Fatalf("registry while the IDE starts: %+v", w)
	}
	e.orch.agent(w.ID).setReady(true)

	var target *targetView
	waitFor(t, "the target", func() bool {
		tg, err := m.Target(ctx, "carol", false)
		if err != nil && !errors.Is(err, workspace.ErrStarting) {
			t.Fatalf("Target: %v", err)
		}
		if tg != nil {
			target = &targetView{host: tg.URL.Host, scheme: tg.URL.Scheme, key: tg.Key, secret: tg.Header.Get(agentapi.SecretHeader)}
		}
		return tg != nil
	})
	starts := e.orch.startCalls()
	if len(starts) != 1 {
		t.Fatalf("%d starts, want 1", len(starts))
	}
	w = e.get(w.ID)
	if target.host != w.Address || target.scheme != "http" || target.secret == "" ||
		target.secret != starts[0].Secret || target.secret != w.Secret || !strings.Contains(target.key, w.ID) {
		t.Errorf("target %+v; registry address %s; want the agent's address and the start's secret", target, w.Address)
	}
	if w.State != workspace.StateRunning || w.Restarts != 0 || w.LastError != "" || !w.StartedAt.Equal(e.clock.Now()) {
		t.Errorf("registry once running: %+v", w)
	}
	if p := m.Progress("carol"); p.State != workspace.StateRunning {
		t.Errorf("Progress once running = %+v", p)
	}
	// The secret is what gets a request through to the agent.
	for _, tc := range []struct {
		secret string
		want   int
	}{{target.secret, http.StatusOK}, {"", http.StatusForbidden}, {"wrong", http.StatusForbidden}} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+target.host+agentapi.PathHealth, nil)
		if tc.secret != "" {
			req.Header.Set(agentapi.SecretHeader, tc.secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("agent with secret %q: %s, want %d", tc.secret, resp.Status, tc.want)
		}
	}
	if u, err := m.Usage(ctx, w); err != nil || u.MemoryBytes != 64<<20 {
		t.Errorf("Usage = %+v, %v", u, err)
	}
	if n := len(e.startResults()); n != 1 || e.startResults()[0] != nil {
		t.Errorf("OnStart results %v, want one success", e.startResults())
	}
}

type targetView struct{ host, scheme, key, secret string }

// TestStartQueue: with two start slots, five people starting at once get
// two starts and a line for the rest, which moves up as slots free.
func TestStartQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.StartConcurrency = 2
	var queueMu sync.Mutex
	var queueLens []int
	cfg.OnQueue = func(n int) {
		queueMu.Lock()
		queueLens = append(queueLens, n)
		queueMu.Unlock()
	}
	m := e.manager(cfg)
	e.orch.setBlock(true)
	users := []string{"u1", "u2", "u3", "u4", "u5"}

	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() {
			if _, err := m.Ensure(context.Background(), u); err != nil {
				t.Errorf("Ensure(%s): %v", u, err)
			}
		})
	}
	// queued returns the users in line by position.
	queued := func() map[int]string {
		out := map[int]string{}
		for _, u := range users {
			if p := m.Progress(u); p.State == workspace.StateQueued {
				out[p.QueuePosition] = u
			}
		}
		return out
	}
	waitFor(t, "two starts and three in line", func() bool {
		return len(e.orch.blockedUsers()) == 2 && len(queued()) == 3
	})
	line := queued()
	for pos := 1; pos <= 3; pos++ {
		if line[pos] == "" {
			t.Fatalf("queue positions %v, want 1, 2 and 3", line)
		}
		p := m.Progress(line[pos])
		if !strings.Contains(p.Phase, "position") || p.Error != "" {
			t.Errorf("Progress of %s = %+v", line[pos], p)
		}
		if w := e.byUser(line[pos]); w == nil || w.State != workspace.StateQueued {
			t.Errorf("registry of %s in line: %+v", line[pos], w)
		}
	}
	if n := len(e.orch.startCalls()); n != 2 {
		t.Errorf("%d starts with two slots, want 2", n)
	}

	// One start finishes: the first in line starts, the others move up.
	if !e.orch.release(e.orch.blockedUsers()[0]) {
		t.Fatal("no start to release")
	}
	waitFor(t, "the first in line to start", func() bool { return slices.Contains(e.orch.blockedUsers(), line[1]) })
	waitFor(t, "the line to move up", func() bool {
		q := queued()
		return len(q) == 2 && q[1] == line[2] && q[2] == line[3]
	})

	e.orch.releaseAll()
	wg.Wait()
	for _, u := range users {
		if p := m.Progress(u); p.State != workspace.StateRunning {
			t.Errorf("Progress(%s) = %+v, want running", u, p)
		}
		if w := e.byUser(u); w == nil || w.State != workspace.StateRunning {
			t.Errorf("registry of %s: %+v", u, w)
		}
	}
	if n := e.orch.maxConcurrentStarts(); n != 2 {
		t.Errorf("at most %d starts ran at once, want 2", n)
	}
	if n := len(e.orch.startCalls()); n != 5 {
		t.Errorf("%d starts, want 5", n)
	}
	queueMu.Lock()
	defer queueMu.Unlock()
	if !slices.Contains(queueLens, 3) {
		t.Errorf("OnQueue reported %v, never the 3 in line", queueLens)
	}
}

// TestFailedStartIsRetried: a start that fails leaves the workspace failed
// with the cause, and the next visit tries again.
func TestFailedStartIsRetried(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		setup   func(e *env, cfg *workspace.Config)
		recover func(e *env)
		wantErr string
	}{
		{
			name:    "orchestrator fails",
			setup:   func(e *env, _ *workspace.Config) { e.orch.failNextStart(errors.New("no room on the node")) },
			recover: func(*env) {},
			wantErr: "no room on the node",
		},
		{
			name: "IDE never answers",
			setup: func(e *env, cfg *workspace.Config) {
				cfg.ReadyTimeout = 200 * time.Millisecond
				e.orch.setNotReady(true)
			},
			recover: func(e *env) { e.orch.setNotReady(false) },
			wantErr: "did not start within",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			cfg := e.config()
			tc.setup(e, &cfg)
			m := e.manager(cfg)
			ctx := context.Background()

			_, err := m.Ensure(ctx, "dave")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Ensure = %v, want an error with %q", err, tc.wantErr)
			}
			w := e.byUser("dave")
			if w == nil || w.State != workspace.StateFailed || !strings.Contains(w.LastError, tc.wantErr) ||
				w.Address != "" || w.PID != 0 || w.StoppedAt.IsZero() {
				t.Fatalf("registry after the failed start: %+v", w)
			}
			if p := m.Progress("dave"); p.State != workspace.StateFailed || !strings.Contains(p.Error, tc.wantErr) {
				t.Errorf("Progress = %+v", p)
			}
			if !slices.Contains(e.orch.stopCalls(), w.ID) {
				t.Errorf("the failed start was not cleaned up: stops %v", e.orch.stopCalls())
			}
			if a := e.orch.agent(w.ID); a != nil && a.alive() {
				t.Error("the agent of the failed start still runs")
			}
			if res := e.startResults(); len(res) != 1 || res[0] == nil {
				t.Errorf("OnStart results %v, want one failure", res)
			}

			tc.recover(e)
			again := ensure(t, m, "dave")
			if again.ID != w.ID || again.State != workspace.StateRunning || again.LastError != "" {
				t.Errorf("retry: %+v, want workspace %s running", again, w.ID)
			}
			if n := e.orch.startsOf(w.ID); n != 2 {
				t.Errorf("%d starts, want 2", n)
			}
			if p := m.Progress("dave"); p.State != workspace.StateRunning || p.Error != "" {
				t.Errorf("Progress after the retry = %+v", p)
			}
		})
	}
}

// TestWorkspaceReusedAfterStop: stopping keeps the record and the files;
// the user's next start reuses both.
func TestWorkspaceReusedAfterStop(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.manager(e.config())
	ctx := context.Background()

	first := ensure(t, m, "erin")
	if first.Home != filepath.Join(e.base, first.ID) {
		t.Errorf("home %q, want %q", first.Home, filepath.Join(e.base, first.ID))
	}
	marker := filepath.Join(first.Home, fakeMarker)
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the start left no file in the home: %v", err)
	}

	stoppedAt := e.clock.Advance(time.Minute)
	if err := m.StopUser(ctx, "erin", "stopped by its user"); err != nil {
		t.Fatal(err)
	}
	w := e.get(first.ID)
	if w.State != workspace.StateStopped || !w.StoppedAt.Equal(stoppedAt) || w.Address != "" || w.Secret != "" || w.PID != 0 {
		t.Errorf("registry after Stop: %+v", w)
	}
	if alive, _ := e.orch.Alive(ctx, first); alive {
		t.Error("the agent still runs after Stop")
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("Stop lost the user's files: %v", err)
	}
	if ev := e.stopEvents(); len(ev) != 1 || ev[0].UserID != "erin" || ev[0].Reason != "stopped by its user" {
		t.Errorf("OnStopped: %+v", ev)
	}
	if p := m.Progress("erin"); p.State != workspace.StateStopped || !strings.Contains(p.Phase, "stopped by its user") {
		t.Errorf("Progress after Stop = %+v", p)
	}
	if _, err := m.Idle(ctx, "erin"); !errors.Is(err, workspace.ErrStopped) {
		t.Errorf("Idle of a stopped workspace = %v, want ErrStopped", err)
	}

	second := ensure(t, m, "erin")
	if second.ID != first.ID || second.Home != first.Home {
		t.Errorf("after Stop: workspace %s in %s, want %s in %s", second.ID, second.Home, first.ID, first.Home)
	}
	if second.Secret == first.Secret {
		t.Error("the restarted workspace kept its old secret")
	}
	if all, _ := e.store.List(ctx); len(all) != 1 {
		t.Errorf("%d records, want 1", len(all))
	}

	third, err := m.Restart(ctx, "erin")
	if err != nil {
		t.Fatal(err)
	}
	if third.ID != first.ID || third.Home != first.Home || third.State != workspace.StateRunning {
		t.Errorf("Restart: %+v", third)
	}
	if n := e.orch.startsOf(first.ID); n != 3 {
		t.Errorf("%d starts, want 3", n)
	}
	if ev := e.stopEvents(); len(ev) != 2 || ev[1].Reason != "restarted" {
		t.Errorf("OnStopped: %+v", ev)
	}
}

// TestStopUser: stopping what is not running is no error and does nothing.
func TestStopUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.manager(e.config())
	ctx := context.Background()

	if err := m.StopUser(ctx, "nobody", "test"); err != nil {
		t.Errorf("StopUser of a user without a workspace = %v, want nil", err)
	}
	w := ensure(t, m, "frank")
	if err := m.StopUser(ctx, "frank", "first"); err != nil {
		t.Fatal(err)
	}
	stops, events, stoppedAt := len(e.orch.stopCalls()), len(e.stopEvents()), e.get(w.ID).StoppedAt
	e.clock.Advance(time.Minute)
	if err := m.StopUser(ctx, "frank", "second"); err != nil {
		t.Errorf("StopUser of a stopped workspace = %v", err)
	}
	if n := len(e.orch.stopCalls()); n != stops {
		t.Errorf("StopUser of a stopped workspace called the orchestrator again")
	}
	if n := len(e.stopEvents()); n != events {
		t.Errorf("StopUser of a stopped workspace reported another stop: %+v", e.stopEvents())
	}
	if got := e.get(w.ID).StoppedAt; !got.Equal(stoppedAt) {
		t.Errorf("StoppedAt moved from %v to %v", stoppedAt, got)
	}
}

// TestStopOfStoppedWorkspaceIsNoOp: Manager.Stop of a workspace already
// stopped changes nothing: no orchestrator call, no second OnStopped, the
// registry keeps when it stopped.
func TestStopOfStoppedWorkspaceIsNoOp(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.manager(e.config())
	ctx := context.Background()

	w := ensure(t, m, "gina")
	if err := m.Stop(ctx, w.ID, "by an administrator"); err != nil {
		t.Fatal(err)
	}
	stops, events, stoppedAt := len(e.orch.stopCalls()), len(e.stopEvents()), e.get(w.ID).StoppedAt
	e.clock.Advance(time.Minute)
	if err := m.Stop(ctx, w.ID, "again"); err != nil {
		t.Errorf("Stop of a stopped workspace = %v", err)
	}
	if n := len(e.orch.stopCalls()); n != stops {
		t.Errorf("Stop of a stopped workspace called the orchestrator's Stop again (%d calls, want %d)", n, stops)
	}
	if ev := e.stopEvents(); len(ev) != events {
		t.Errorf("Stop of a stopped workspace called OnStopped again: %+v", ev)
	}
	if got := e.get(w.ID); !got.StoppedAt.Equal(stoppedAt) || got.State != workspace.StateStopped {
		t.Errorf("Stop of a stopped workspace rewrote the record: StoppedAt %v, want %v (state %s)", got.StoppedAt, stoppedAt, got.State)
	}
	if err := m.Stop(ctx, "ws-missing", "x"); !errors.Is(err, workspace.ErrNotFound) {
		t.Errorf("Stop of an unknown workspace = %v, want ErrNotFound", err)
	}
}
