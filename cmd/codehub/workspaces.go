package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/codeserver"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/gateway"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/orchestrator/local"
	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/codehub-dev/codehub/internal/resources"
	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/go-hclog"
)

// rootBasePath is where workspaces live when codehub runs as root and the
// base path was left at its default: a place every workspace account can
// reach (the default under root's home is not).
const rootBasePath = "/var/lib/codehub/users"

// workspaces wires the per-user workspaces of multi-user mode: the
// orchestrator, the manager, and the gateway's view of them.
type workspaces struct {
	mgr               *workspace.Manager
	id                *identity.Service
	log               hclog.Logger
	policy            workspace.Policy // the default
	stopWhenSignedOut bool
	// onStop, if set, is called when a user's workspace stopped.
	onStop  func(userID string)
	summary string

	// policyFor is each user's policy (the manager's PolicyFor).
	policyFor func(ctx context.Context, userID string) (workspace.Policy, error)

	// storageWarn is the share of their storage used from which a user
	// is warned (limits.storage-warning-percent).
	storageWarn int
}

var (
	_ gateway.Upstreams  = (*workspaces)(nil)
	_ gateway.Workspaces = (*workspaces)(nil)
)

// strategy resolves isolation.strategy "auto". A missing iptables does not
// make it fall back to "directory", which isolates nothing: the process
// strategy then warns at start-up that workspaces can reach the host's
// services (see local.New).
func strategy(cfg *config.Config) (string, error) {
	switch s := cfg.MultiUser.Isolation.Strategy; s {
	case "auto":
		if os.Geteuid() == 0 {
			for _, tool := range []string{"useradd", "setpriv", "mkfs.ext4", "mount", "ip"} {
				if _, err := exec.LookPath(tool); err != nil {
					return local.StrategyDirectory, nil
				}
			}
			return local.StrategyProcess, nil
		}
		return local.StrategyDirectory, nil
	case "container":
		return "container", nil
	default:
		return s, nil
	}
}

// defaultPolicy is the embedded default policy, from the configuration.
func defaultPolicy(cfg *config.Config, driver string) workspace.Policy {
	l, pool := &cfg.MultiUser.Limits, &cfg.MultiUser.Scaling.ContainerPool
	p := workspace.Policy{
		Name: "default", Driver: driver,
		MemoryMB: l.MemoryLimitMB, CPUPercent: l.CPULimitPercent, Pids: l.MaxProcesses,
		StorageMB: l.StorageQuotaMB, MaxSessions: l.MaxSessionsPerUser, MaxConnections: l.MaxConcurrentConnections,
		IdleTimeout: time.Duration(pool.MaxIdleMinutes) * time.Minute,
	}
	if cfg.MultiUser.Isolation.Strategy == "container" {
		// The container section's image and limits, where given, are the
		// containers' (validated at load).
		c := cfg.MultiUser.Isolation.Container
		p.Image = c.Image
		if mb, _ := c.Limits.MemoryMB(); mb > 0 && cfg.SourceOf("multi-user.limits.memory-limit-mb").String() == "default" {
			p.MemoryMB = mb
		}
		if c.Limits.CPU > 0 && cfg.SourceOf("multi-user.limits.cpu-limit-percent").String() == "default" {
			p.CPUPercent = int(c.Limits.CPU * 100)
		}
	}
	return p
}

// openLocal makes the orchestrator of workspaces on this machine.
func (a *app) openLocal(ctx context.Context, getenv func(string) string, strat, base string) (*local.Orchestrator, error) {
	cfg := a.cfg
	runtimeDir := filepath.Join(cfg.DataDir, "run")
	if os.Geteuid() == 0 {
		runtimeDir = "/run/codehub"
	}
	agentBin, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cs, err := codeserver.Find(cfg.CodeServer.Path, config.CodeServerVersion, getenv)
	if err != nil {
		return nil, err
	}
	if strat == local.StrategyProcess {
		agentBin, cs, err = local.PrepareRuntime(ctx, filepath.Join(filepath.Dir(base), "runtime"), agentBin, cs)
		if err != nil {
			return nil, fmt.Errorf("workspace runtime: %w", err)
		}
	}
	var env []string
	for _, k := range []string{"LANG", "LC_ALL", "TZ", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"} {
		if v := getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	orch, err := local.New(local.Config{
		Strategy: strat, BasePath: base, RuntimeDir: runtimeDir, Agent: agentBin, CodeServer: cs,
		UIDMin: cfg.MultiUser.Isolation.UIDMin, UIDMax: cfg.MultiUser.Isolation.UIDMax,
		Network: cfg.MultiUser.Isolation.Network, Egress: cfg.MultiUser.Isolation.Egress,
		ExtraArgs: cfg.CodeServer.Args, Env: env, ReadOnlyPaths: cfg.MultiUser.Isolation.ReadOnlyPaths,
		CleanupGrace: cleanupGrace(cfg.MultiUser.Isolation.CleanupGrace.D()),
	}, a.log.Named("local"))
	if err != nil {
		return nil, err
	}
	if strat == local.StrategyDirectory {
		a.log.Warn("isolation strategy \"directory\": " + orch.Describe())
	} else {
		a.log.Info("isolation strategy \"process\": " + orch.Describe())
	}
	return orch, nil
}

// cleanupGrace turns the configuration's grace (0: at once) into the
// orchestrator's (0: the default, negative: at once).
func cleanupGrace(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

func (a *app) openWorkspaces(ctx context.Context, getenv func(string) string) (*workspaces, error) {
	cfg := a.cfg
	strat, err := strategy(cfg)
	if err != nil {
		return nil, err
	}
	base := cfg.MultiUser.Isolation.BasePath
	if os.Geteuid() == 0 && cfg.SourceOf("multi-user.isolation.base-path").String() == "default" {
		base = rootBasePath
	}
	var orch workspace.Orchestrator
	driver := strat
	if strat == "container" {
		// Workspaces run on Nomad, found through Consul; the job spec
		// carries the agent and code-server, nothing runs here.
		c, err := a.openCluster(ctx, getenv, a.db.Workspaces())
		if err != nil {
			return nil, err
		}
		orch, driver, base = c, "", ""
		a.log.Info("workspaces run on Nomad", "job", cfg.Nomad.Job, "service", cfg.Consul.Service)
		if ct := cfg.MultiUser.Isolation.Container; len(ct.Volumes) > 0 || ct.Network != "" {
			a.log.Warn("multi-user.isolation.container volumes and network are set by the Nomad job (see jobs/workspace.nomad.hcl), not here; ignoring them")
		}
	} else {
		l, err := a.openLocal(ctx, getenv, strat, base)
		if err != nil {
			return nil, err
		}
		orch = l
	}

	m := a.metrics
	ws := &workspaces{id: a.id, log: a.log.Named("workspaces"), policy: defaultPolicy(cfg, driver),
		stopWhenSignedOut: cfg.MultiUser.Scaling.AutoCleanup.StopWhenSignedOut,
		storageWarn:       cfg.MultiUser.Limits.StorageWarningPercent}
	set, err := loadPolicies(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkPolicyDrivers(set, strat); err != nil {
		return nil, err
	}
	ws.policyFor = cachedPolicies(policyFor(set, ws.policy, a.id), 30*time.Second)
	ws.summary = fmt.Sprintf("%s isolation, homes in %s", strat, base)
	if strat == "container" {
		ws.summary = fmt.Sprintf("Nomad job %q, Consul service %q", cfg.Nomad.Job, cfg.Consul.Service)
	}
	pool := cfg.MultiUser.Scaling.ContainerPool
	warm := 0
	if pool.Enabled {
		warm = pool.WarmPoolSize
	}
	ws.mgr = workspace.NewManager(workspace.Config{
		Orchestrator: orch,
		Store:        a.db.Workspaces(),
		BasePath:     base,
		PolicyFor:    ws.policyFor,
		Username: func(ctx context.Context, id string) (string, error) {
			u, err := a.id.User(ctx, id)
			if err != nil {
				return "", err
			}
			return u.Username, nil
		},
		StartConcurrency: cfg.MultiUser.Scaling.StartConcurrency,
		WarmPool:         warm,
		OnStart: func(w *workspace.Workspace, d time.Duration, warm bool, err error) {
			source := "cold"
			if warm {
				source = "warm"
			}
			result := "success"
			e := audit.Event{EventType: audit.WorkspaceStarted, UserID: w.UserID,
				Metadata: map[string]any{"workspaceId": w.ID, "source": source, "seconds": d.Seconds(), "node": w.Node}}
			if err != nil {
				result = "failure"
				e.EventType, e.Status = audit.WorkspaceFailed, audit.StatusFailure
				e.Metadata["error"] = err.Error()
			} else {
				m.ContainerStartup.WithLabelValues(source).Observe(d.Seconds())
			}
			m.WorkspaceStarts.WithLabelValues(result).Inc()
			if w.UserID != "" { // warm workspaces belong to nobody yet
				a.audit.Record(e)
			}
		},
		OnStopped: func(w *workspace.Workspace, reason string) {
			if w.UserID != "" {
				a.audit.Record(audit.Event{EventType: audit.WorkspaceStopped, UserID: w.UserID,
					Metadata: map[string]any{"workspaceId": w.ID, "reason": reason}})
			}
			if ws.onStop != nil && w.UserID != "" {
				ws.onStop(w.UserID)
			}
		},
		OnTerminal: func(w *workspace.Workspace, at time.Time, inputs int64) {
			// The gateway relays terminals inside the editor's WebSocket
			// without decoding it; the agent tells terminal input apart.
			a.audit.Record(audit.Event{EventType: audit.TerminalAccess, UserID: w.UserID,
				Metadata: map[string]any{"workspaceId": w.ID, "inputs": inputs, "lastInputAt": at.UTC().Format(time.RFC3339)}})
		},
		OnQueue:    func(n int) { m.StartQueue.Set(float64(n)) },
		OnPoolSize: func(n int) { m.WarmPool.Set(float64(n)) },
	}, a.log.Named("workspaces"))
	return ws, nil
}

// Target implements gateway.Upstreams: the user's own workspace, started
// when a person opens the editor.
func (ws *workspaces) Target(r *http.Request, p *identity.Principal) (*proxy.Target, error) {
	ctx := r.Context()
	if p.Session != nil {
		ctx = workspace.WithSession(ctx, p.Session.ID)
	}
	t, err := ws.mgr.Target(ctx, p.User.ID, isNavigation(r))
	switch {
	case errors.Is(err, workspace.ErrStarting):
		return nil, gateway.ErrStarting
	case errors.Is(err, workspace.ErrStopped):
		return nil, gateway.ErrStopped
	case err != nil && ws.mgr.Progress(p.User.ID).State == workspace.StateFailed:
		// The start failed: the start page says why (the progress's
		// error) rather than "not reachable", and the manager backs its
		// retries off.
		return nil, gateway.ErrStarting
	}
	return t, err
}

// isNavigation tells a person opening a page from the editor's own
// background requests (which must not restart a stopped workspace).
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// workspaceStatus is GET /api/v1/me/workspace.
type workspaceStatus struct {
	State     workspace.State     `json:"state"`
	Progress  *workspace.Progress `json:"progress,omitempty"`
	Workspace *workspaceView      `json:"workspace,omitempty"`
	Idle      *idleView           `json:"idle,omitempty"`
	Usage     *usageView          `json:"usage,omitempty"`
	Policy    workspace.Policy    `json:"policy"`
}

type workspaceView struct {
	ID        string    `json:"id"`
	Node      string    `json:"node"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	StoppedAt time.Time `json:"stoppedAt,omitzero"`
	Restarts  int       `json:"restarts"`
}

type idleView struct {
	workspace.IdleStatus
	SecondsLeft int `json:"secondsLeft,omitempty"`
}

// usageView is the seed's ResourceUsage shape for one workspace. The
// editor's warnings read it: storage's warning and full, memory's OOM
// kills.
type usageView struct {
	Storage resources.StorageUsage `json:"storage"`
	Memory  resources.MemoryUsage  `json:"memory"`
	CPU     struct {
		Seconds float64 `json:"seconds"`
		Limit   int     `json:"limit"`
	} `json:"cpu"`
}

// Status implements gateway.Workspaces.
func (ws *workspaces) Status(ctx context.Context, userID string) (any, error) {
	pol, err := ws.policyFor(ctx, userID)
	if err != nil {
		return nil, err
	}
	st := workspaceStatus{Policy: pol}
	w, err := ws.mgr.Of(ctx, userID)
	if errors.Is(err, workspace.ErrNotFound) {
		st.State = workspace.StateStopped
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	st.State = w.State
	st.Workspace = &workspaceView{ID: w.ID, Node: w.Node, StartedAt: w.StartedAt, StoppedAt: w.StoppedAt, Restarts: w.Restarts}
	if w.State != workspace.StateRunning {
		p := ws.mgr.Progress(userID)
		st.Progress = &p
		return st, nil
	}
	if idle, err := ws.mgr.Idle(ctx, userID); err == nil {
		v := &idleView{IdleStatus: idle}
		if !idle.StopAt.IsZero() {
			v.SecondsLeft = max(0, int(time.Until(idle.StopAt).Seconds()))
		}
		st.Idle = v
	}
	if u, err := ws.mgr.Usage(ctx, w); err == nil {
		v := &usageView{}
		v.Storage = resources.StorageOfAgent(u, int64(pol.StorageMB)<<20, ws.storageWarn)
		v.Memory = resources.MemoryUsage{MB: float64(u.MemoryBytes) / (1 << 20), Limit: pol.HardMemoryMB(), OOMKills: u.OOMKills}
		v.CPU.Seconds, v.CPU.Limit = u.CPUSeconds, pol.CPUPercent
		st.Usage = v
	}
	return st, nil
}

// Progress implements gateway.Workspaces.
func (ws *workspaces) Progress(userID string) (string, int, string) {
	p := ws.mgr.Progress(userID)
	phase := p.Phase
	switch {
	case p.State == workspace.StateRunning:
		// Running, yet its traffic is held: service discovery does not
		// (yet, or no longer) see it pass its health check, or the
		// proxy just failed to reach it.
		phase = "Your editor is running; waiting for it to pass its health check"
	case phase == "" || p.State == workspace.StateStopped:
		phase = "Starting your editor"
	}
	return phase, p.QueuePosition, p.Error
}

// KeepAlive implements gateway.Workspaces.
func (ws *workspaces) KeepAlive(userID string) { ws.mgr.KeepAlive(userID) }

// Stop implements gateway.Workspaces.
func (ws *workspaces) Stop(ctx context.Context, userID string) error {
	return ws.mgr.StopUser(ctx, userID, "stopped by its user")
}

// Restart implements gateway.Workspaces.
func (ws *workspaces) Restart(ctx context.Context, userID string) error {
	_, err := ws.mgr.Restart(ctx, userID)
	return err
}

// SignedOut implements gateway.Workspaces.
func (ws *workspaces) SignedOut(ctx context.Context, userID string) {
	if ws.stopWhenSignedOut {
		if err := ws.mgr.StopUser(ctx, userID, "its user signed out"); err != nil {
			ws.log.Warn("stop workspace after sign-out", "error", err)
		}
	}
}

// ConnectionLimit implements gateway.Workspaces.
func (ws *workspaces) ConnectionLimit(ctx context.Context, userID string) int {
	p, err := ws.policyFor(ctx, userID)
	if err != nil {
		return ws.policy.MaxConnections
	}
	return p.MaxConnections
}

// cachedPolicies remembers each user's policy for ttl: it is asked on every
// proxied request.
func cachedPolicies(f func(context.Context, string) (workspace.Policy, error), ttl time.Duration) func(context.Context, string) (workspace.Policy, error) {
	type entry struct {
		p   workspace.Policy
		exp time.Time
	}
	var mu sync.Mutex
	cache := map[string]entry{}
	return func(ctx context.Context, userID string) (workspace.Policy, error) {
		mu.Lock()
		e, ok := cache[userID]
		mu.Unlock()
		if ok && time.Now().Before(e.exp) {
			return e.p, nil
		}
		p, err := f(ctx, userID)
		if err != nil {
			return p, err
		}
		mu.Lock()
		if len(cache) > 100000 {
			cache = map[string]entry{}
		}
		cache[userID] = entry{p, time.Now().Add(ttl)}
		mu.Unlock()
		return p, nil
	}
}
