package workspace

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/singleflight"
)

// Errors the Manager returns to the gateway.
var (
	// ErrStarting: the workspace is on its way; show the progress.
	ErrStarting = errors.New("the workspace is starting")
	// ErrStopped: the workspace was stopped (idle, or by an administrator)
	// and only an explicit visit starts it again, not an editor tab
	// reconnecting in the background.
	ErrStopped = errors.New("the workspace is stopped")
	// ErrCannotStart marks, in an Orchestrator's Start error, a failure a
	// new start would meet again until someone changes the job, the
	// cluster or the image (no node can run it, the driver refused it):
	// the manager tries again only after Config.CannotStartRetry.
	ErrCannotStart = errors.New("the workspace cannot start as things are")
)

// Config configures a Manager.
type Config struct {
	Orchestrator Orchestrator
	Store        Store
	// BasePath holds the users' trees (local orchestrator).
	BasePath string
	// PolicyFor returns the policy of a user ("" for a warm workspace).
	PolicyFor func(ctx context.Context, userID string) (Policy, error)
	// Username returns a user's name, for the orchestrator.
	Username func(ctx context.Context, userID string) (string, error)
	// StartConcurrency bounds simultaneous starts; the rest queue (default 4).
	StartConcurrency int
	// ReadyTimeout bounds a start, from launch to the IDE answering
	// (default 2m).
	ReadyTimeout time.Duration
	// WarmPool is the number of warm workspaces to keep ready.
	WarmPool int
	// IdleWarning is how long before an idle stop the user is warned
	// (default 5m).
	IdleWarning time.Duration
	// HealthInterval and IdleInterval pace the background checks
	// (defaults 5s and 30s).
	HealthInterval, IdleInterval time.Duration
	// SweepInterval paces the search for what workspaces left behind on
	// this host, with an orchestrator that can (a Sweeper; default 10m):
	// once at start, after re-attaching, then at this interval.
	SweepInterval time.Duration
	// BackoffMin and BackoffMax bound the wait before restarting a
	// workspace that crashed (defaults 1s and 1m).
	BackoffMin, BackoffMax time.Duration
	// CannotStartRetry is how long a start that failed with
	// ErrCannotStart is not tried again, by a user's visit or by the warm
	// pool (default 5m).
	CannotStartRetry time.Duration
	// Node names this gateway's machine in the registry (default hostname).
	Node string
	// Now is the clock.
	Now func() time.Time
	// Hooks, all optional.
	OnStart    func(w *Workspace, d time.Duration, warm bool, err error)
	OnStopped  func(w *Workspace, reason string)
	OnQueue    func(n int)
	OnPoolSize func(n int)
	// OnTerminal is told when its user starts typing into a workspace's
	// terminal after TerminalGap without (at most once an IdleInterval):
	// inputs is the number of terminal messages since the last call.
	OnTerminal func(w *Workspace, at time.Time, inputs int64)
}

// TerminalGap is the pause in terminal input after which typing again is
// a new use of the terminal, for OnTerminal.
const TerminalGap = 10 * time.Minute

// terminalSeen is the terminal activity last seen of a workspace.
type terminalSeen struct {
	inputs   int64     // the agent's count
	last     time.Time // its last terminal input
	reported int64     // the count at the last OnTerminal
}

// Progress is what a person waiting for their workspace is told.
type Progress struct {
	State State `json:"state"`
	// Phase is a short human phrase ("Preparing your home").
	Phase string `json:"phase"`
	// QueuePosition is the place in the start queue (1: next), 0 when not
	// queued.
	QueuePosition int       `json:"queuePosition,omitempty"`
	Since         time.Time `json:"since"`
	Error         string    `json:"error,omitempty"`
}

// Manager runs every user's workspace. Safe for concurrent use.
type Manager struct {
	cfg    Config
	orch   Orchestrator
	store  Store
	log    hclog.Logger
	client *http.Client
	sf     singleflight.Group
	queue  *startQueue

	mu         sync.Mutex
	running    map[string]*Workspace   // by user ID, verified recently
	progress   map[string]*Progress    // by user ID
	keepAlive  map[string]time.Time    // by user ID: "keep working" clicks
	failures   map[string]int          // by workspace ID: failed health checks in a row
	startedBy  map[string]bool         // workspace IDs this Manager launched
	startFails map[string]int          // by workspace ID: starts that failed in a row
	cannot     map[string]bool         // by workspace ID: the last start failed with ErrCannotStart
	terminals  map[string]terminalSeen // by workspace ID
	pool       poolBackoff
	refillMu   sync.Mutex
}

// NewManager returns a Manager; call Run to start its background work.
func NewManager(cfg Config, log hclog.Logger) *Manager {
	if cfg.StartConcurrency <= 0 {
		cfg.StartConcurrency = 4
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 2 * time.Minute
	}
	if cfg.IdleWarning <= 0 {
		cfg.IdleWarning = 5 * time.Minute
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = 5 * time.Second
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 10 * time.Minute
	}
	if cfg.IdleInterval <= 0 {
		cfg.IdleInterval = 30 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = time.Minute
	}
	if cfg.CannotStartRetry <= 0 {
		cfg.CannotStartRetry = 5 * time.Minute
	}
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Manager{
		cfg: cfg, orch: cfg.Orchestrator, store: cfg.Store, log: log,
		client: &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     time.Minute,
		}},
		running:    map[string]*Workspace{},
		progress:   map[string]*Progress{},
		keepAlive:  map[string]time.Time{},
		failures:   map[string]int{},
		startedBy:  map[string]bool{},
		startFails: map[string]int{},
		cannot:     map[string]bool{},
		terminals:  map[string]terminalSeen{},
	}
	m.queue = newStartQueue(cfg.StartConcurrency, func(n int) {
		if cfg.OnQueue != nil {
			cfg.OnQueue(n)
		}
	})
	return m
}

// target is how the proxy reaches a workspace's agent.
func target(w *Workspace) *proxy.Target {
	return &proxy.Target{
		Key:    w.ID + "@" + w.Address,
		URL:    &url.URL{Scheme: "http", Host: w.Address},
		Header: http.Header{agentapi.SecretHeader: {w.Secret}},
	}
}

// Target returns the user's running workspace for the proxy. A workspace
// that is not running is started in the background when autostart is set
// (a person opening the editor), and ErrStarting returned if it is not
// ready within a short wait; without autostart (an editor tab reconnecting
// by itself) a stopped workspace stays stopped: ErrStopped.
func (m *Manager) Target(ctx context.Context, userID string, autostart bool) (*proxy.Target, error) {
	if w := m.cachedRunning(userID); w != nil {
		if r, ok := m.orch.(Resolver); ok {
			addr, healthy := r.Resolve(ctx, w)
			if !healthy {
				return nil, ErrStarting // unhealthy: no traffic until it recovers or restarts
			}
			if addr != w.Address {
				c := w.Clone()
				c.Address = addr
				return target(c), nil
			}
		}
		return target(w), nil
	}
	if !autostart {
		w, err := m.store.ByUser(ctx, userID)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil, ErrStopped
		case err != nil:
			return nil, err
		case w.State == StateStopped || w.State == StateFailed:
			return nil, ErrStopped
		}
	}
	ch := m.sf.DoChan(userID, func() (any, error) {
		// Detached: the start goes on when the request that asked leaves.
		return m.ensure(context.WithoutCancel(ctx), userID)
	})
	wait := time.NewTimer(1500 * time.Millisecond)
	defer wait.Stop()
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return target(res.Val.(*Workspace)), nil
	case <-wait.C:
		return nil, ErrStarting
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Ensure starts the user's workspace if it is not running, and waits for
// it.
func (m *Manager) Ensure(ctx context.Context, userID string) (*Workspace, error) {
	if w := m.cachedRunning(userID); w != nil {
		return w, nil
	}
	ch := m.sf.DoChan(userID, func() (any, error) { return m.ensure(context.WithoutCancel(ctx), userID) })
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*Workspace), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (m *Manager) cachedRunning(userID string) *Workspace {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running[userID]
}

func (m *Manager) setProgress(userID string, st State, phase string, pos int, errMsg string) {
	if userID == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.progress[userID]
	if p == nil || p.State != st || p.Phase != phase {
		p = &Progress{Since: m.cfg.Now()}
		m.progress[userID] = p
	}
	p.State, p.Phase, p.QueuePosition, p.Error = st, phase, pos, errMsg
}

// Progress returns what the user's workspace is doing.
func (m *Manager) Progress(userID string) Progress {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running[userID] != nil {
		return Progress{State: StateRunning, Phase: "Your editor is running"}
	}
	if p := m.progress[userID]; p != nil {
		return *p
	}
	return Progress{State: StateStopped, Phase: "Not started"}
}

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "ws-" + hex.EncodeToString(b)
}

func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ensure makes the user's workspace run: the one they have, a warm one
// claimed, or a new one. Only one ensure per user runs at a time.
func (m *Manager) ensure(ctx context.Context, userID string) (*Workspace, error) {
	w, err := m.store.ByUser(ctx, userID)
	if errors.Is(err, ErrNotFound) {
		if w, err = m.claimWarm(ctx, userID); err == nil {
			return w, nil
		}
		w, err = m.create(ctx, userID)
	}
	if err != nil {
		return nil, err
	}
	if w.State == StateRunning || w.State == StateStarting {
		if m.healthy(ctx, w) {
			return m.markRunning(ctx, w)
		}
		if w.State == StateStarting && w.Node != m.cfg.Node && m.cfg.Now().Sub(w.StartedAt) < m.cfg.ReadyTimeout {
			// Another gateway is starting it: wait for that start.
			return m.waitElsewhere(ctx, w)
		}
	}
	if w.State == StateFailed && w.Restarts > 0 {
		if wait := m.backoff(w.Restarts) - m.cfg.Now().Sub(w.StoppedAt); wait > 0 {
			msg := fmt.Sprintf("Your editor stopped unexpectedly; trying again in %s", wait.Round(time.Second))
			m.setProgress(userID, StateFailed, msg, 0, w.LastError)
			return nil, fmt.Errorf("%w: %s", ErrStarting, msg)
		}
	}
	if w.State == StateFailed {
		// A start that fails (an image that cannot be pulled, no node for
		// the policy) would fail again at once: the start page reloading
		// every second must not become a start a second. The first retry
		// is immediate (its cause may have been fixed); then they back off
		// as crash restarts do.
		m.mu.Lock()
		n, cannot := m.startFails[w.ID], m.cannot[w.ID]
		m.mu.Unlock()
		if cannot {
			// It would fail the same way: no new dispatch every visit.
			if wait := m.cfg.CannotStartRetry - m.cfg.Now().Sub(w.StoppedAt); wait > 0 {
				msg := fmt.Sprintf("Your editor cannot start; trying again in %s", max(wait.Round(time.Second), time.Second))
				m.setProgress(userID, StateFailed, msg, 0, w.LastError)
				return nil, fmt.Errorf("%w: %s", ErrStarting, msg)
			}
		}
		if n >= 2 {
			if wait := m.backoff(n-1) - m.cfg.Now().Sub(w.StoppedAt); wait > 0 {
				msg := fmt.Sprintf("Your editor could not start; trying again in %s", max(wait.Round(time.Second), time.Second))
				m.setProgress(userID, StateFailed, msg, 0, w.LastError)
				return nil, fmt.Errorf("%w: %s", ErrStarting, msg)
			}
		}
	}
	return m.start(ctx, w, false)
}

func (m *Manager) backoff(restarts int) time.Duration {
	d := m.cfg.BackoffMin
	for i := 1; i < restarts && d < m.cfg.BackoffMax; i++ {
		d *= 2
	}
	return min(d, m.cfg.BackoffMax)
}

// create registers a new workspace for the user.
func (m *Manager) create(ctx context.Context, userID string) (*Workspace, error) {
	w := &Workspace{
		ID: newID(), UserID: userID, State: StateQueued, Orchestrator: m.orch.Name(), Node: m.cfg.Node,
		CreatedAt: m.cfg.Now(),
	}
	w.Home = m.homeOf(w.ID)
	if err := m.store.Create(ctx, w); err != nil {
		if errors.Is(err, ErrConflict) { // made by another gateway meanwhile
			return m.store.ByUser(ctx, userID)
		}
		return nil, fmt.Errorf("register workspace: %w", err)
	}
	return w, nil
}

func (m *Manager) homeOf(id string) string {
	if m.cfg.BasePath == "" {
		return ""
	}
	return NewLayout(m.cfg.BasePath, id).Home
}

// claimWarm gives the user a warm workspace, if one is ready.
func (m *Manager) claimWarm(ctx context.Context, userID string) (*Workspace, error) {
	if m.cfg.WarmPool <= 0 {
		return nil, ErrNotFound
	}
	start := m.cfg.Now()
	w, err := m.store.Claim(ctx, m.orch.Name(), userID)
	if err != nil {
		return nil, err
	}
	name, err := m.cfg.Username(ctx, userID)
	if err == nil {
		err = m.orch.Assign(ctx, w, userID, name)
	}
	if err == nil && !m.healthy(ctx, w) {
		err = errors.New("the warm workspace does not answer")
	}
	if err != nil {
		// The warm workspace is unusable: give it up, start one afresh.
		m.log.Warn("claimed warm workspace unusable; starting a new one", "workspace", w.ID, "error", err)
		_ = m.orch.Stop(ctx, w)
		_ = m.store.Delete(ctx, w.ID)
		return nil, err
	}
	m.log.Info("warm workspace claimed", "workspace", w.ID, "user", userID, "claim", m.cfg.Now().Sub(start))
	if m.cfg.OnStart != nil {
		m.cfg.OnStart(w, m.cfg.Now().Sub(start), true, nil)
	}
	go m.refillPool(context.WithoutCancel(ctx))
	now := m.cfg.Now()
	if c, err := m.store.Update(ctx, w.ID, func(x *Workspace) error {
		x.StartedAt, x.LastActivity = now, now
		return nil
	}); err == nil {
		w = c
	}
	return m.markRunning(ctx, w)
}

// start launches w through the start queue and waits until its IDE answers.
func (m *Manager) start(ctx context.Context, w *Workspace, warm bool) (*Workspace, error) {
	began := m.cfg.Now()
	userID := w.UserID
	m.mu.Lock()
	m.startedBy[w.ID] = true
	m.mu.Unlock()
	w, err := m.store.Update(ctx, w.ID, func(x *Workspace) error {
		x.State, x.Node, x.LastError = StateQueued, m.cfg.Node, ""
		if x.Home == "" {
			x.Home = m.homeOf(x.ID)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue workspace: %w", err)
	}
	release, err := m.queue.acquire(ctx, func(pos int) {
		m.setProgress(userID, StateQueued, fmt.Sprintf("Waiting for a free start slot: position %d in line", pos), pos, "")
	})
	if err != nil {
		return nil, err
	}
	defer release()

	fail := func(err error) (*Workspace, error) {
		if warm {
			m.log.Debug("warm workspace start failed", "workspace", w.ID, "error", err) // the pool says it, once
		} else {
			m.log.Error("workspace start failed", "workspace", w.ID, "user", userID, "error", err)
		}
		_ = m.orch.Stop(context.WithoutCancel(ctx), w)
		_, _ = m.store.Update(context.WithoutCancel(ctx), w.ID, func(x *Workspace) error {
			x.State, x.LastError, x.StoppedAt, x.PID, x.Address = StateFailed, err.Error(), m.cfg.Now(), 0, ""
			return nil
		})
		m.setProgress(userID, StateFailed, "Your editor could not start", 0, err.Error())
		m.mu.Lock()
		m.startFails[w.ID]++
		m.cannot[w.ID] = errors.Is(err, ErrCannotStart)
		m.mu.Unlock()
		if m.cfg.OnStart != nil {
			m.cfg.OnStart(w, m.cfg.Now().Sub(began), warm, err)
		}
		return nil, err
	}

	policy, err := m.cfg.PolicyFor(ctx, userID)
	if err != nil {
		return fail(fmt.Errorf("policy: %w", err))
	}
	username := ""
	if userID != "" {
		if username, err = m.cfg.Username(ctx, userID); err != nil {
			return fail(fmt.Errorf("user: %w", err))
		}
	}
	secret := newSecret()
	nw, err := m.store.Update(ctx, w.ID, func(x *Workspace) error {
		x.State, x.Secret, x.StartedAt = StateStarting, secret, m.cfg.Now()
		return nil
	})
	if err != nil {
		return fail(err)
	}
	w = nw
	m.setProgress(userID, StateStarting, "Preparing your workspace", 0, "")
	startCtx, cancel := context.WithTimeout(ctx, m.cfg.ReadyTimeout)
	defer cancel()
	launched, err := m.orch.Start(startCtx, Spec{Workspace: w.Clone(), Username: username, Policy: policy, SessionID: sessionFrom(ctx)},
		func(phase string) { m.setProgress(userID, StateStarting, phase, 0, "") })
	if err != nil {
		return fail(err)
	}
	m.mu.Lock()
	m.startedBy[w.ID] = true
	m.mu.Unlock()
	nw, err = m.store.Update(ctx, w.ID, func(x *Workspace) error {
		x.Address, x.PID, x.ExternalID, x.Meta = launched.Address, launched.PID, launched.ExternalID, launched.Meta
		if launched.Node != "" {
			x.Node = launched.Node
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	w = nw
	m.setProgress(userID, StateStarting, "Starting your editor", 0, "")
	if err := m.waitHealthy(startCtx, w); err != nil {
		return fail(err)
	}
	if m.cfg.OnStart != nil {
		m.cfg.OnStart(w, m.cfg.Now().Sub(began), warm, nil)
	}
	m.log.Info("workspace started", "workspace", w.ID, "user", username, "startup", m.cfg.Now().Sub(began).Round(time.Millisecond))
	return m.markRunning(ctx, w)
}

func (m *Manager) markRunning(ctx context.Context, w *Workspace) (*Workspace, error) {
	w, err := m.store.Update(ctx, w.ID, func(x *Workspace) error {
		x.State, x.LastError = StateRunning, ""
		if x.LastActivity.IsZero() {
			x.LastActivity = m.cfg.Now()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if w.UserID != "" {
		m.running[w.UserID] = w
		delete(m.progress, w.UserID)
	}
	delete(m.failures, w.ID)
	delete(m.startFails, w.ID)
	delete(m.cannot, w.ID)
	m.mu.Unlock()
	return w, nil
}

// waitHealthy polls the agent until its IDE answers.
func (m *Manager) waitHealthy(ctx context.Context, w *Workspace) error {
	delay := 20 * time.Millisecond
	for {
		if m.healthy(ctx, w) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the editor did not start within %s", m.cfg.ReadyTimeout)
		case <-time.After(delay):
			delay = min(delay*2, 250*time.Millisecond)
		}
	}
}

// waitElsewhere waits for a start another gateway runs.
func (m *Manager) waitElsewhere(ctx context.Context, w *Workspace) (*Workspace, error) {
	m.setProgress(w.UserID, StateStarting, "Starting your editor", 0, "")
	ctx, cancel := context.WithTimeout(ctx, m.cfg.ReadyTimeout)
	defer cancel()
	for {
		cur, err := m.store.Get(ctx, w.ID)
		if err != nil {
			return nil, err
		}
		if (cur.State == StateRunning || cur.State == StateStarting) && cur.Address != "" && m.healthy(ctx, cur) {
			return m.markRunning(ctx, cur)
		}
		if cur.State == StateFailed || cur.State == StateStopped {
			return nil, fmt.Errorf("the start on %s failed: %s", cur.Node, cur.LastError)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the start on %s did not finish in time", cur.Node)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// agentGet asks a workspace's agent for one of its endpoints.
func (m *Manager) agentGet(ctx context.Context, w *Workspace, path string, out any) error {
	if w.Address == "" {
		return errors.New("no agent address")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.Address+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set(agentapi.SecretHeader, w.Secret)
	req.Header.Set(agentapi.ControlHeader, w.Secret)
	resp, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent answered %s", resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out)
}

// healthy reports whether the workspace's IDE answers through its agent.
func (m *Manager) healthy(ctx context.Context, w *Workspace) bool {
	var h agentapi.Health
	if err := m.agentGet(ctx, w, agentapi.PathHealth, &h); err != nil {
		return false
	}
	return h.Status == "running"
}

// Usage returns the workspace's resource use, from its agent, with the
// OOM kills counted by the orchestrator when it can (OOMCounter).
func (m *Manager) Usage(ctx context.Context, w *Workspace) (agentapi.Usage, error) {
	var u agentapi.Usage
	if err := m.agentGet(ctx, w, agentapi.PathUsage, &u); err != nil {
		return u, err
	}
	u.OOMKills = 0 // only the orchestrator's count is trusted
	if c, ok := m.orch.(OOMCounter); ok {
		n, err := c.OOMKills(ctx, w)
		if err != nil {
			m.log.Debug("count OOM kills", "workspace", w.ID, "error", err)
		}
		u.OOMKills = n
	}
	return u, nil
}

// Activity returns what the agent saw the user do.
func (m *Manager) Activity(ctx context.Context, w *Workspace) (agentapi.Activity, error) {
	var a agentapi.Activity
	err := m.agentGet(ctx, w, agentapi.PathActivity, &a)
	return a, err
}

// Stop stops a workspace (keeping its files) and records why.
func (m *Manager) Stop(ctx context.Context, id, reason string) error {
	already := false
	w, err := m.store.Update(ctx, id, func(x *Workspace) error {
		already = x.State == StateStopped
		if !already {
			x.State = StateStopping
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.forget(w)
	if already {
		return nil
	}
	stopErr := m.orch.Stop(ctx, w)
	w, err = m.store.Update(context.WithoutCancel(ctx), id, func(x *Workspace) error {
		x.State, x.StoppedAt, x.PID, x.Address, x.Secret = StateStopped, m.cfg.Now(), 0, "", ""
		x.LastError = ""
		if stopErr != nil {
			x.LastError = stopErr.Error()
		}
		return nil
	})
	if err != nil {
		return err
	}
	m.log.Info("workspace stopped", "workspace", id, "user", w.UserID, "reason", reason)
	if w.UserID != "" {
		m.setProgress(w.UserID, StateStopped, "Your editor was stopped: "+reason, 0, "")
	}
	if m.cfg.OnStopped != nil {
		m.cfg.OnStopped(w, reason)
	}
	return stopErr
}

// StopUser stops the user's workspace, if it runs.
func (m *Manager) StopUser(ctx context.Context, userID, reason string) error {
	w, err := m.store.ByUser(ctx, userID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if w.State == StateStopped {
		return nil
	}
	return m.Stop(ctx, w.ID, reason)
}

// Restart stops and starts the user's workspace.
func (m *Manager) Restart(ctx context.Context, userID string) (*Workspace, error) {
	if err := m.StopUser(ctx, userID, "restarted"); err != nil {
		return nil, err
	}
	return m.Ensure(ctx, userID)
}

func (m *Manager) forget(w *Workspace) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if w.UserID != "" {
		delete(m.running, w.UserID)
	}
	delete(m.failures, w.ID)
	delete(m.startedBy, w.ID)
	delete(m.startFails, w.ID)
	delete(m.cannot, w.ID)
	delete(m.terminals, w.ID)
}

// KeepAlive records that the user asked to keep their workspace running:
// it counts as activity for the idle check.
func (m *Manager) KeepAlive(userID string) {
	m.mu.Lock()
	m.keepAlive[userID] = m.cfg.Now()
	m.mu.Unlock()
}

// IdleStatus says when an idle workspace will be stopped.
type IdleStatus struct {
	LastActive time.Time `json:"lastActive"`
	// StopAt is when the workspace stops if nothing happens (zero: never).
	StopAt time.Time `json:"stopAt,omitzero"`
	// Warning is set within the warning window before StopAt.
	Warning bool `json:"warning"`
}

// Idle computes the user's idle status from the agent's activity.
func (m *Manager) Idle(ctx context.Context, userID string) (IdleStatus, error) {
	w := m.cachedRunning(userID)
	if w == nil {
		return IdleStatus{}, ErrStopped
	}
	return m.idleStatus(ctx, w)
}

func (m *Manager) idleStatus(ctx context.Context, w *Workspace) (IdleStatus, error) {
	act, err := m.Activity(ctx, w)
	if err != nil {
		return IdleStatus{}, err
	}
	return m.idleFrom(ctx, w, act)
}

// idleFrom is idleStatus from an activity report.
func (m *Manager) idleFrom(ctx context.Context, w *Workspace, act agentapi.Activity) (IdleStatus, error) {
	last := act.LastActive
	if w.StartedAt.After(last) {
		last = w.StartedAt
	}
	m.mu.Lock()
	if k := m.keepAlive[w.UserID]; k.After(last) {
		last = k
	}
	m.mu.Unlock()
	st := IdleStatus{LastActive: last}
	policy, err := m.cfg.PolicyFor(ctx, w.UserID)
	if err != nil || policy.IdleTimeout <= 0 {
		return st, err
	}
	st.StopAt = last.Add(policy.IdleTimeout)
	st.Warning = !m.cfg.Now().Before(st.StopAt.Add(-m.cfg.IdleWarning))
	return st, nil
}

// Run re-attaches to the workspaces that survived a gateway restart, then
// checks health and idleness and keeps the warm pool full until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	m.reattach(ctx)
	m.sweep(ctx)
	m.refillPool(ctx)
	health := time.NewTicker(m.cfg.HealthInterval)
	defer health.Stop()
	idle := time.NewTicker(m.cfg.IdleInterval)
	defer idle.Stop()
	sweep := time.NewTicker(m.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-health.C:
			m.checkHealth(ctx)
			m.refillPool(ctx)
		case <-idle.C:
			m.checkIdle(ctx)
		case <-sweep.C:
			m.sweep(ctx)
		}
	}
}

// sweep has the orchestrator free what workspaces left on this host that
// the registry does not account for.
func (m *Manager) sweep(ctx context.Context) {
	s, ok := m.orch.(Sweeper)
	if !ok {
		return
	}
	err := s.Sweep(ctx, func(ctx context.Context) (Registry, error) {
		all, err := m.store.List(ctx)
		if err != nil {
			return Registry{}, fmt.Errorf("read the workspace registry: %w", err)
		}
		reg := Registry{Live: map[string]bool{}, Known: map[string]bool{}}
		for _, w := range all {
			reg.Known[w.ID] = true
			switch w.State {
			case StateQueued, StateStarting, StateRunning, StateStopping:
				reg.Live[w.ID] = true
			}
		}
		return reg, nil
	})
	if err != nil {
		m.log.Warn("clean up what workspaces left behind", "error", err)
	}
}

// owns reports whether this Manager looks after w: its orchestrator's, and
// on this node, unless the orchestrator's workspaces belong to the whole
// cluster (Nomad), when every gateway looks after every one.
func (m *Manager) owns(w *Workspace) bool {
	if w.Orchestrator != m.orch.Name() {
		return false
	}
	if s, ok := m.orch.(interface{ Shared() bool }); ok && s.Shared() {
		return true
	}
	return w.Node == m.cfg.Node
}

// reattach takes over the workspaces this node was running: those whose
// agent still answers are used as they are; the others are cleaned up.
func (m *Manager) reattach(ctx context.Context) {
	all, err := m.store.List(ctx)
	if err != nil {
		m.log.Error("read the workspace registry", "error", err)
		return
	}
	for _, w := range all {
		if !m.owns(w) {
			continue
		}
		m.mu.Lock()
		mine := m.startedBy[w.ID]
		m.mu.Unlock()
		if mine {
			continue
		}
		switch w.State {
		case StateRunning, StateStarting:
			if m.healthy(ctx, w) {
				if _, err := m.markRunning(ctx, w); err == nil {
					m.log.Info("re-attached to a running workspace", "workspace", w.ID, "user", w.UserID, "pid", w.PID)
				}
				continue
			}
			m.log.Warn("workspace did not survive; cleaning up", "workspace", w.ID)
			m.crashed(ctx, w, errors.New("the workspace was not running after a gateway restart"))
		case StateQueued, StateStopping:
			_ = m.Stop(ctx, w.ID, "interrupted by a gateway restart")
		}
	}
}

// checkHealth notices workspaces whose agent stopped answering.
func (m *Manager) checkHealth(ctx context.Context) {
	m.mu.Lock()
	ws := make([]*Workspace, 0, len(m.running))
	for _, w := range m.running {
		ws = append(ws, w)
	}
	m.mu.Unlock()
	for _, w := range ws {
		if m.healthy(ctx, w) {
			m.mu.Lock()
			delete(m.failures, w.ID)
			m.mu.Unlock()
			continue
		}
		if ctx.Err() != nil {
			return // shutting down: a failed check says nothing of the workspace
		}
		if cur, err := m.store.Get(ctx, w.ID); err == nil && (cur.State == StateStopping || cur.State == StateStopped) {
			// Stopped elsewhere (another gateway, `codehub user delete`):
			// not a crash to restart from.
			m.forget(w)
			continue
		}
		m.mu.Lock()
		m.failures[w.ID]++
		n := m.failures[w.ID]
		m.mu.Unlock()
		alive, _ := m.orch.Alive(ctx, w)
		if alive && n < 3 {
			continue // slow, not dead: give it a few checks
		}
		m.recoverOrRestart(ctx, w, alive, fmt.Errorf("the workspace stopped answering (agent alive: %v)", alive))
	}
}

// crashed records an unexpected end and restarts the workspace after a
// backoff that grows with each crash in a row.
func (m *Manager) crashed(ctx context.Context, w *Workspace, cause error) {
	m.forget(w)
	_ = m.orch.Stop(ctx, w)
	rec, err := m.store.Update(ctx, w.ID, func(x *Workspace) error {
		x.State, x.LastError, x.StoppedAt, x.PID, x.Address = StateFailed, cause.Error(), m.cfg.Now(), 0, ""
		x.Restarts++
		return nil
	})
	if err != nil {
		m.log.Error("record a crashed workspace", "workspace", w.ID, "error", err)
		return
	}
	w = rec
	if w.UserID == "" { // a warm workspace: just drop it, the pool refills
		_ = m.store.Delete(ctx, w.ID)
		return
	}
	wait := m.backoff(w.Restarts)
	m.log.Warn("workspace crashed; restarting", "workspace", w.ID, "user", w.UserID, "cause", cause, "in", wait, "restarts", w.Restarts)
	m.setProgress(w.UserID, StateFailed, "Your editor stopped unexpectedly and is restarting", 0, cause.Error())
	userID, id, restarts := w.UserID, w.ID, w.Restarts
	time.AfterFunc(wait, func() {
		if ctx.Err() != nil {
			return
		}
		if cur, err := m.store.Get(ctx, id); err != nil || cur.State != StateFailed || cur.Restarts != restarts {
			return
		}
		if _, err := m.Ensure(ctx, userID); err != nil {
			m.log.Warn("restart after a crash failed", "user", userID, "error", err)
		}
	})
}

// checkIdle stops workspaces idle for longer than their policy allows.
func (m *Manager) checkIdle(ctx context.Context) {
	m.mu.Lock()
	ws := make([]*Workspace, 0, len(m.running))
	for _, w := range m.running {
		ws = append(ws, w)
	}
	m.mu.Unlock()
	now := m.cfg.Now()
	for _, w := range ws {
		act, err := m.Activity(ctx, w)
		if err != nil {
			continue
		}
		m.noteTerminal(w, act)
		st, err := m.idleFrom(ctx, w, act)
		if err != nil {
			continue
		}
		if _, err := m.store.Update(ctx, w.ID, func(x *Workspace) error {
			x.LastActivity = st.LastActive
			return nil
		}); err != nil {
			m.log.Warn("record workspace activity", "workspace", w.ID, "error", err)
		}
		if !st.StopAt.IsZero() && !now.Before(st.StopAt) {
			if err := m.Stop(ctx, w.ID, "idle since "+st.LastActive.UTC().Format(time.RFC3339)); err != nil {
				m.log.Warn("stop idle workspace", "workspace", w.ID, "error", err)
			}
		}
	}
}

// noteTerminal calls OnTerminal when the user typed into a terminal of w
// after a pause of TerminalGap or more (or for the first time). The first
// report of a workspace this Manager sees only sets the baseline, unless
// its last terminal input is recent: a gateway that restarts does not
// report old use again.
func (m *Manager) noteTerminal(w *Workspace, act agentapi.Activity) {
	if m.cfg.OnTerminal == nil || w.UserID == "" {
		return
	}
	m.mu.Lock()
	seen, known := m.terminals[w.ID]
	cur := terminalSeen{inputs: act.TerminalInputs, last: act.LastTerminalInput, reported: seen.reported}
	report := false
	switch {
	case act.TerminalInputs == 0:
	case !known:
		report = m.cfg.Now().Sub(act.LastTerminalInput) <= 2*m.cfg.IdleInterval
	case act.TerminalInputs < seen.inputs: // the agent restarted
		report = true
		cur.reported = 0
	case act.TerminalInputs > seen.inputs:
		report = seen.last.IsZero() || act.LastTerminalInput.Sub(seen.last) >= TerminalGap
	}
	inputs := act.TerminalInputs - cur.reported
	if report || !known {
		cur.reported = act.TerminalInputs
	}
	m.terminals[w.ID] = cur
	m.mu.Unlock()
	if report {
		m.cfg.OnTerminal(w, act.LastTerminalInput, inputs)
	}
}

// refillPool starts warm workspaces until the pool is full, and stops
// those beyond its size (left by a larger pool before a restart, or by
// two gateways refilling at once).
func (m *Manager) refillPool(ctx context.Context) {
	m.refillMu.Lock()
	defer m.refillMu.Unlock()
	all, err := m.store.List(ctx)
	if err != nil {
		return
	}
	var ready []*Workspace
	starting := 0
	for _, w := range all {
		if w.UserID != "" || w.Orchestrator != m.orch.Name() {
			continue
		}
		switch w.State {
		case StateRunning:
			if m.owns(w) && !m.healthy(ctx, w) {
				if alive, _ := m.orch.Alive(ctx, w); !alive {
					_ = m.orch.Stop(ctx, w)
					_ = m.store.Delete(ctx, w.ID)
					continue
				}
			}
			ready = append(ready, w)
		case StateQueued, StateStarting:
			starting++
		case StateFailed, StateStopped:
			_ = m.store.Delete(ctx, w.ID)
		}
	}
	ready = m.trimPool(ctx, ready)
	if m.cfg.OnPoolSize != nil {
		m.cfg.OnPoolSize(len(ready))
	}
	if !m.pool.due(m.cfg.Now()) {
		return // the last warm start failed: wait before the next
	}
	for i := len(ready) + starting; i < m.cfg.WarmPool; i++ {
		w := &Workspace{ID: newID(), State: StateQueued, Orchestrator: m.orch.Name(), Node: m.cfg.Node, CreatedAt: m.cfg.Now()}
		w.Home = m.homeOf(w.ID)
		if err := m.store.Create(ctx, w); err != nil {
			m.log.Warn("register a warm workspace", "error", err)
			return
		}
		go func() {
			_, err := m.start(ctx, w, true)
			m.poolStarted(err)
			if m.cfg.OnPoolSize != nil {
				m.refillPoolCount(ctx)
			}
		}()
	}
}

// trimPool stops the ready warm workspaces beyond the pool's size and
// returns those left. It picks the newest first, the same ones on every
// gateway, and tries only as many as are too many: two gateways trimming
// at once compete for the same workspaces and stop no more than that. A
// workspace claimed meanwhile is left alone (the registry row is locked
// and checked).
func (m *Manager) trimPool(ctx context.Context, ready []*Workspace) []*Workspace {
	excess := len(ready) - max(m.cfg.WarmPool, 0)
	if excess <= 0 {
		return ready
	}
	sort.Slice(ready, func(i, j int) bool {
		if !ready[i].CreatedAt.Equal(ready[j].CreatedAt) {
			return ready[i].CreatedAt.After(ready[j].CreatedAt)
		}
		return ready[i].ID > ready[j].ID
	})
	kept := slices.Clone(ready[excess:])
	for _, w := range ready[:excess] {
		if m.owns(w) && m.retireWarm(ctx, w) {
			continue
		}
		kept = append(kept, w)
	}
	return kept
}

// retireWarm stops a warm workspace unless it was claimed or stopped
// meanwhile, and reports whether it did.
func (m *Manager) retireWarm(ctx context.Context, w *Workspace) bool {
	rec, err := m.store.Update(ctx, w.ID, func(x *Workspace) error {
		if x.UserID != "" || x.State != StateRunning {
			return ErrConflict
		}
		x.State = StateStopping
		return nil
	})
	if err != nil {
		return false
	}
	m.forget(rec)
	if err := m.orch.Stop(ctx, rec); err != nil {
		m.log.Warn("stop a warm workspace beyond the pool's size", "workspace", rec.ID, "error", err)
	}
	_ = m.store.Delete(ctx, rec.ID)
	m.log.Info("warm workspace stopped: the pool is above its size", "workspace", rec.ID, "pool_size", m.cfg.WarmPool)
	return true
}

func (m *Manager) refillPoolCount(ctx context.Context) {
	all, err := m.store.List(ctx)
	if err != nil {
		return
	}
	n := 0
	for _, w := range all {
		if w.UserID == "" && w.State == StateRunning && w.Orchestrator == m.orch.Name() {
			n++
		}
	}
	m.cfg.OnPoolSize(n)
}

// List returns every workspace, with this gateway's view of which run.
func (m *Manager) List(ctx context.Context) ([]*Workspace, error) {
	ws, err := m.store.List(ctx)
	if err != nil {
		return nil, err
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].CreatedAt.Before(ws[j].CreatedAt) })
	return ws, nil
}

// Of returns a user's workspace record, or ErrNotFound.
func (m *Manager) Of(ctx context.Context, userID string) (*Workspace, error) {
	return m.store.ByUser(ctx, userID)
}
