package workspace_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// guard bounds every wait: it only turns a hang into a failure, it is no
// expectation of how fast anything is.
const guard = 20 * time.Second

// env is one test's world: a real SQLite registry, the fake orchestrator,
// a settable clock, and what the Manager's hooks reported.
type env struct {
	t     *testing.T
	store workspace.Store
	orch  *fakeOrchestrator
	clock *fakeClock
	base  string

	mu      sync.Mutex
	stopped []stopEvent
	starts  []error      // OnStart results
	runs    []func() any // stop the Runs started, oldest first
}

type stopEvent struct{ WorkspaceID, UserID, Reason string }

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlstore.Open(context.Background(),
		sqlstore.Config{Driver: sqlstore.DriverSQLite, Path: filepath.Join(dir, "codehub.db")}, testenv.Logger(t))
	if err != nil {
		t.Fatalf("open the registry: %v", err)
	}
	e := &env{t: t, store: db.Workspaces(), clock: newFakeClock(), base: filepath.Join(dir, "users")}
	e.orch = newFakeOrchestrator()
	// Starts still going when the test ends must not meet a cancelled Run
	// or a closed database: the Manager cannot take a failed registry
	// update in the middle of a start (see TestStartSurvivesShutdown).
	t.Cleanup(func() {
		e.settle()
		e.mu.Lock()
		runs := e.runs
		e.mu.Unlock()
		for _, stop := range runs {
			if p := stop(); p != nil {
				t.Errorf("Run panicked: %v", p)
			}
		}
		e.orch.close()
		e.settle()
		db.Close()
	})
	return e
}

// settle waits a while for the starts in progress to end.
func (e *env) settle() {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		all, err := e.store.List(context.Background())
		if err != nil {
			return
		}
		busy := false
		for _, w := range all {
			busy = busy || w.State == workspace.StateQueued || w.State == workspace.StateStarting
		}
		if !busy {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Log("starts still in progress at the end of the test")
}

// probeID is a record that run plants to see when the Manager's re-attach
// is over: it comes last in the registry, and re-attaching stops it.
const probeID = "ws-reattach-probe"

func (e *env) config() workspace.Config {
	return workspace.Config{
		Orchestrator: e.orch,
		Store:        e.store,
		BasePath:     e.base,
		PolicyFor: func(context.Context, string) (workspace.Policy, error) {
			return workspace.Policy{Name: "test", Driver: "fake", MemoryMB: 512}, nil
		},
		Username:         func(_ context.Context, id string) (string, error) { return "name-" + id, nil },
		StartConcurrency: 4,
		ReadyTimeout:     30 * time.Second,
		HealthInterval:   10 * time.Millisecond,
		IdleInterval:     10 * time.Millisecond,
		BackoffMin:       10 * time.Millisecond,
		BackoffMax:       time.Second,
		Node:             "node-1",
		Now:              e.clock.Now,
		OnStart: func(_ *workspace.Workspace, _ time.Duration, _ bool, err error) {
			e.mu.Lock()
			e.starts = append(e.starts, err)
			e.mu.Unlock()
		},
		OnStopped: func(w *workspace.Workspace, reason string) {
			e.mu.Lock()
			e.stopped = append(e.stopped, stopEvent{w.ID, w.UserID, reason})
			e.mu.Unlock()
		},
	}
}

func (e *env) manager(cfg workspace.Config) *workspace.Manager {
	return workspace.NewManager(cfg, testenv.Logger(e.t).Named("workspaces"))
}

// run runs m's background work until the returned stop is called (or the
// test ends), and returns once m has re-attached to the registry; stop
// waits for Run to return and gives what it panicked with, if it did. m
// must report its stops to e, through the OnStopped of e.config().
func (e *env) run(m *workspace.Manager) (stop func() (panicked any)) {
	e.t.Helper()
	probes := func() int {
		n := 0
		for _, ev := range e.allStopEvents() {
			if ev.WorkspaceID == probeID {
				n++
			}
		}
		return n
	}
	before := probes()
	probe := &workspace.Workspace{ID: probeID, UserID: "reattach-probe", State: workspace.StateQueued,
		Orchestrator: e.orch.Name(), Node: "node-1", CreatedAt: e.clock.Now().AddDate(100, 0, 0)}
	if err := e.store.Create(context.Background(), probe); err != nil {
		e.t.Fatalf("plant the re-attach probe: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan any, 1)
	go func() {
		var p any
		defer func() { done <- p }()
		defer func() {
			if r := recover(); r != nil {
				p = fmt.Sprintf("%v\n%s", r, debug.Stack())
			}
		}()
		_ = m.Run(ctx)
	}()
	var once sync.Once
	var p any
	halt := func() any {
		once.Do(func() {
			cancel()
			select {
			case p = <-done:
			case <-time.After(guard):
				p = "Run did not return after its context ended"
			}
		})
		return p
	}
	var checked atomic.Bool // the test looks at the panic itself
	e.mu.Lock()
	e.runs = append(e.runs, func() any {
		if p := halt(); !checked.Load() {
			return p
		}
		return nil
	})
	e.mu.Unlock()
	waitFor(e.t, "the re-attach", func() bool { return probes() > before })
	if err := e.store.Delete(context.Background(), probeID); err != nil {
		e.t.Fatal(err)
	}
	return func() any {
		checked.Store(true)
		return halt()
	}
}

func (e *env) allStopEvents() []stopEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]stopEvent(nil), e.stopped...)
}

// stopEvents returns what OnStopped reported, but for the re-attach probe.
func (e *env) stopEvents() []stopEvent {
	var out []stopEvent
	for _, ev := range e.allStopEvents() {
		if ev.WorkspaceID != probeID {
			out = append(out, ev)
		}
	}
	return out
}

func (e *env) startResults() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.starts...)
}

// get returns a workspace record, failing the test if it is missing.
func (e *env) get(id string) *workspace.Workspace {
	e.t.Helper()
	w, err := e.store.Get(context.Background(), id)
	if err != nil {
		e.t.Fatalf("registry: get %s: %v", id, err)
	}
	return w
}

// lookup returns a workspace record, or nil when there is none.
func (e *env) lookup(id string) *workspace.Workspace {
	w, err := e.store.Get(context.Background(), id)
	if err != nil {
		return nil
	}
	return w
}

func (e *env) byUser(userID string) *workspace.Workspace {
	w, err := e.store.ByUser(context.Background(), userID)
	if err != nil {
		return nil
	}
	return w
}

// warm returns the unclaimed workspaces of the registry.
func (e *env) warm() []*workspace.Workspace {
	e.t.Helper()
	all, err := e.store.List(context.Background())
	if err != nil {
		e.t.Fatalf("registry: list: %v", err)
	}
	var out []*workspace.Workspace
	for _, w := range all {
		if w.UserID == "" {
			out = append(out, w)
		}
	}
	return out
}

// warmRunning returns the unclaimed running workspaces whose agent answers.
func (e *env) warmRunning() []*workspace.Workspace {
	var out []*workspace.Workspace
	for _, w := range e.warm() {
		if a := e.orch.agentAt(w.Address); w.State == workspace.StateRunning && a != nil && a.alive() {
			out = append(out, w)
		}
	}
	return out
}

// ensure starts userID's workspace and fails the test if it cannot.
func ensure(t *testing.T, m *workspace.Manager, userID string) *workspace.Workspace {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	w, err := m.Ensure(ctx, userID)
	if err != nil {
		t.Fatalf("Ensure(%s): %v", userID, err)
	}
	return w
}

// waitFor polls cond until it holds; the guard only catches hangs.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, guard, what, cond)
}

func waitWithin(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
