package workspace_test

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// fakeOrchestrator is a small working Orchestrator: every Start serves the
// agent protocol from its own HTTP server on 127.0.0.1:0, in process. Tests
// can make a start fail or wait until released, keep a new agent's IDE
// "starting", set the activity an agent reports, and crash an agent.
type fakeOrchestrator struct {
	mu          sync.Mutex
	agents      map[string]*fakeAgent // by workspace ID: its latest agent
	starts      []startCall
	stops       []string // workspace IDs
	assigns     []assignCall
	failNext    []error
	block       bool
	stubborn    bool                     // a held start ignores its context
	blocked     map[string]*blockedStart // by workspace ID
	inflight    int
	maxInflight int
	notReady    bool // new agents answer "starting" until setReady
	reassigned  int  // Assign of an agent that already had an owner
	pid         int
	closed      bool
}

var _ workspace.Orchestrator = (*fakeOrchestrator)(nil)

// startCall is what Start was asked.
type startCall struct {
	WorkspaceID, UserID, Username, Secret, Home string
	SessionID                                   string
}

type assignCall struct{ WorkspaceID, UserID, Username string }

type blockedStart struct {
	userID  string
	release chan struct{}
}

// fakeMarker is the file every start leaves in the workspace's home, to see
// that stopping keeps the user's files.
const fakeMarker = "fake-orchestrator-was-here"

func newFakeOrchestrator() *fakeOrchestrator {
	return &fakeOrchestrator{agents: map[string]*fakeAgent{}, blocked: map[string]*blockedStart{}}
}

func (f *fakeOrchestrator) Name() string { return "fake" }

// Start implements workspace.Orchestrator.
func (f *fakeOrchestrator) Start(ctx context.Context, spec workspace.Spec, progress func(string)) (workspace.Launched, error) {
	w := spec.Workspace
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return workspace.Launched{}, errors.New("fake orchestrator closed")
	}
	f.starts = append(f.starts, startCall{WorkspaceID: w.ID, UserID: w.UserID, Username: spec.Username,
		Secret: w.Secret, Home: w.Home, SessionID: spec.SessionID})
	f.inflight++
	f.maxInflight = max(f.maxInflight, f.inflight)
	var err error
	if len(f.failNext) > 0 {
		err, f.failNext = f.failNext[0], f.failNext[1:]
	}
	var gate chan struct{}
	if err == nil && f.block {
		gate = make(chan struct{})
		f.blocked[w.ID] = &blockedStart{userID: w.UserID, release: gate}
	}
	ready, stubborn := !f.notReady, f.stubborn
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight--
		delete(f.blocked, w.ID)
		f.mu.Unlock()
	}()
	if err != nil {
		return workspace.Launched{}, err
	}
	progress("Preparing the fake home")
	if gate != nil && stubborn {
		<-gate
	} else if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return workspace.Launched{}, ctx.Err()
		}
	}
	if w.Home != "" {
		if err := os.MkdirAll(w.Home, 0o700); err != nil {
			return workspace.Launched{}, err
		}
		if err := os.WriteFile(filepath.Join(w.Home, fakeMarker), []byte(w.ID), 0o600); err != nil {
			return workspace.Launched{}, err
		}
	}
	a := newFakeAgent(w.ID, w.UserID, w.Secret, ready)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		a.kill()
		return workspace.Launched{}, errors.New("fake orchestrator closed")
	}
	old := f.agents[w.ID]
	f.agents[w.ID] = a
	f.pid++
	pid := f.pid
	f.mu.Unlock()
	if old != nil {
		old.kill()
	}
	return workspace.Launched{Address: a.addr, PID: pid, Meta: map[string]string{"fake": "yes"}}, nil
}

// Stop implements workspace.Orchestrator: the agent ends, the home stays.
func (f *fakeOrchestrator) Stop(_ context.Context, w *workspace.Workspace) error {
	f.mu.Lock()
	f.stops = append(f.stops, w.ID)
	a := f.agents[w.ID]
	f.mu.Unlock()
	if a != nil && (w.Address == "" || w.Address == a.addr) {
		a.kill()
	}
	return nil
}

// Alive implements workspace.Orchestrator.
func (f *fakeOrchestrator) Alive(_ context.Context, w *workspace.Workspace) (bool, error) {
	f.mu.Lock()
	a := f.agents[w.ID]
	f.mu.Unlock()
	return a != nil && a.alive() && (w.Address == "" || w.Address == a.addr), nil
}

// Assign implements workspace.Orchestrator.
func (f *fakeOrchestrator) Assign(_ context.Context, w *workspace.Workspace, userID, username string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.assigns = append(f.assigns, assignCall{WorkspaceID: w.ID, UserID: userID, Username: username})
	if a := f.agents[w.ID]; a != nil {
		a.mu.Lock()
		if a.userID != "" && a.userID != userID {
			f.reassigned++
		}
		a.userID = userID
		a.mu.Unlock()
	}
	return nil
}

// close ends every agent and fails the starts still waiting.
func (f *fakeOrchestrator) close() {
	f.mu.Lock()
	f.closed = true
	for _, b := range f.blocked {
		close(b.release)
	}
	f.blocked = map[string]*blockedStart{}
	agents := make([]*fakeAgent, 0, len(f.agents))
	for _, a := range f.agents {
		agents = append(agents, a)
	}
	f.mu.Unlock()
	for _, a := range agents {
		a.kill()
	}
}

// failNextStart makes the next Start return err.
func (f *fakeOrchestrator) failNextStart(err error) {
	f.mu.Lock()
	f.failNext = append(f.failNext, err)
	f.mu.Unlock()
}

// setBlock makes the starts from now on wait until released.
func (f *fakeOrchestrator) setBlock(on bool) {
	f.mu.Lock()
	f.block = on
	f.mu.Unlock()
}

// setStubborn makes held starts finish when released even if their
// context ended meanwhile, as a launch past its point of no return does.
func (f *fakeOrchestrator) setStubborn(on bool) {
	f.mu.Lock()
	f.stubborn = on
	f.mu.Unlock()
}

// blockedUsers returns the owners of the starts waiting to be released.
func (f *fakeOrchestrator) blockedUsers() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, b := range f.blocked {
		out = append(out, b.userID)
	}
	return out
}

// release lets the waiting start of userID go on.
func (f *fakeOrchestrator) release(userID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, b := range f.blocked {
		if b.userID == userID {
			close(b.release)
			delete(f.blocked, id)
			return true
		}
	}
	return false
}

// releaseAll stops blocking starts and lets the waiting ones go on.
func (f *fakeOrchestrator) releaseAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.block = false
	for id, b := range f.blocked {
		close(b.release)
		delete(f.blocked, id)
	}
}

// setNotReady makes new agents answer "starting" until setReady.
func (f *fakeOrchestrator) setNotReady(on bool) {
	f.mu.Lock()
	f.notReady = on
	f.mu.Unlock()
}

// agent returns the latest agent of a workspace, or nil.
func (f *fakeOrchestrator) agent(workspaceID string) *fakeAgent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.agents[workspaceID]
}

// agentAt returns the agent listening at addr, or nil.
func (f *fakeOrchestrator) agentAt(addr string) *fakeAgent {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.agents {
		if a.addr == addr {
			return a
		}
	}
	return nil
}

func (f *fakeOrchestrator) startCalls() []startCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]startCall(nil), f.starts...)
}

// startsOf counts the starts of a workspace.
func (f *fakeOrchestrator) startsOf(workspaceID string) int {
	n := 0
	for _, s := range f.startCalls() {
		if s.WorkspaceID == workspaceID {
			n++
		}
	}
	return n
}

// startsFor counts the starts made for a user (cold starts, not claims).
func (f *fakeOrchestrator) startsFor(userID string) int {
	n := 0
	for _, s := range f.startCalls() {
		if s.UserID == userID {
			n++
		}
	}
	return n
}

func (f *fakeOrchestrator) stopCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.stops...)
}

func (f *fakeOrchestrator) assignCalls() []assignCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]assignCall(nil), f.assigns...)
}

func (f *fakeOrchestrator) maxConcurrentStarts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxInflight
}

func (f *fakeOrchestrator) reassignments() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reassigned
}

// fakeAgent is one workspace's agent: the protocol of package agentapi,
// behind the workspace secret, and a stand-in IDE on every other path.
type fakeAgent struct {
	id, secret, addr string
	srv              *httptest.Server

	mu         sync.Mutex
	userID     string
	ready      bool
	lastActive time.Time
	terminal   time.Time // last terminal input
	termInputs int64
	rejected   int
	dead       bool
}

func newFakeAgent(id, userID, secret string, ready bool) *fakeAgent {
	a := &fakeAgent{id: id, userID: userID, secret: secret, ready: ready}
	a.srv = httptest.NewServer(a)
	a.addr = a.srv.Listener.Addr().String()
	return a
}

func (a *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(agentapi.SecretHeader)), []byte(a.secret)) != 1 {
		a.mu.Lock()
		a.rejected++
		a.mu.Unlock()
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	a.mu.Lock()
	ready, lastActive, user := a.ready, a.lastActive, a.userID
	terminal, termInputs := a.terminal, a.termInputs
	a.mu.Unlock()
	var body any
	switch r.URL.Path {
	case agentapi.PathHealth:
		h := agentapi.Health{Status: "starting"}
		if ready {
			h.Status = "running"
		}
		body = h
	case agentapi.PathActivity:
		body = agentapi.Activity{LastActive: lastActive, LastTerminalInput: terminal, TerminalInputs: termInputs}
	case agentapi.PathUsage:
		body = agentapi.Usage{StorageBytes: 1 << 20, StorageLimitBytes: 1 << 30, MemoryBytes: 64 << 20, CPUSeconds: 1.5}
	default:
		body = map[string]string{"ide": a.id, "user": user}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// setReady makes the IDE answer (or stop answering) "running".
func (a *fakeAgent) setReady(on bool) {
	a.mu.Lock()
	a.ready = on
	a.mu.Unlock()
}

// setLastActive sets the activity the agent reports.
func (a *fakeAgent) setLastActive(t time.Time) {
	a.mu.Lock()
	a.lastActive = t
	a.mu.Unlock()
}

// typeInTerminal records n terminal inputs at t, as the agent would.
func (a *fakeAgent) typeInTerminal(t time.Time, n int64) {
	a.mu.Lock()
	a.lastActive, a.terminal = t, t
	a.termInputs += n
	a.mu.Unlock()
}

func (a *fakeAgent) owner() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.userID
}

// rejections counts the requests refused for a wrong or missing secret.
func (a *fakeAgent) rejections() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rejected
}

func (a *fakeAgent) alive() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.dead
}

// kill ends the agent as a crash would: its port stops answering.
func (a *fakeAgent) kill() {
	a.mu.Lock()
	dead := a.dead
	a.dead = true
	a.mu.Unlock()
	if !dead {
		a.srv.Close()
	}
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}
