package workspace

import (
	"context"
	"time"
)

// Policy is what a workspace may use and when it is stopped. The embedded
// default comes from the configuration's limits; isolation policies (HCL)
// choose one per role or group.
type Policy struct {
	Name string `json:"name"`
	// Driver is how a workspace is isolated: "process" or "directory"
	// locally, "docker" or "exec" on Nomad.
	Driver string `json:"driver"`
	// Image is the container image (docker driver).
	Image string `json:"image,omitempty"`
	// MemoryMB is the memory a workspace is given; MemoryMaxMB what it may
	// burst to (Nomad's memory_max; locally the hard limit is MemoryMaxMB
	// when set, else MemoryMB).
	MemoryMB    int `json:"memoryMB"`
	MemoryMaxMB int `json:"memoryMaxMB,omitempty"`
	// CPUPercent of one CPU (200: two CPUs).
	CPUPercent int `json:"cpuPercent"`
	// Pids bounds the number of processes.
	Pids int `json:"pids"`
	// StorageMB is the size of the user's home.
	StorageMB int `json:"storageMB"`
	// MaxSessions and MaxConnections per user.
	MaxSessions    int `json:"maxSessions"`
	MaxConnections int `json:"maxConnections"`
	// IdleTimeout stops a workspace unused this long (0: never).
	IdleTimeout time.Duration `json:"idleTimeout"`
	// Datacenter is where the workspace runs (Nomad); empty: anywhere.
	Datacenter string `json:"datacenter,omitempty"`
}

// HardMemoryMB is the memory limit the kernel enforces.
func (p Policy) HardMemoryMB() int {
	if p.MemoryMaxMB > p.MemoryMB {
		return p.MemoryMaxMB
	}
	return p.MemoryMB
}

// Spec is everything an orchestrator needs to start one workspace.
type Spec struct {
	Workspace *Workspace
	// Username is the owner's name, empty for a warm workspace.
	Username string
	Policy   Policy
	// SessionID names the sign-in session whose request started the
	// workspace (see WithSession), for correlation; empty when none did.
	SessionID string
}

type sessionKey struct{}

// WithSession returns ctx carrying the ID of the session a workspace start
// is made for: a short prefix of it, enough to correlate with the audit
// log and the session lists, and no key to anything.
func WithSession(ctx context.Context, sessionID string) context.Context {
	if len(sessionID) > 12 {
		sessionID = sessionID[:12]
	}
	return context.WithValue(ctx, sessionKey{}, sessionID)
}

func sessionFrom(ctx context.Context) string {
	s, _ := ctx.Value(sessionKey{}).(string)
	return s
}

// Launched says where a started workspace's agent listens.
type Launched struct {
	Address    string
	PID        int
	ExternalID string
	Node       string
	Meta       map[string]string
}

// Orchestrator runs workspaces: local processes, or Nomad jobs.
type Orchestrator interface {
	// Name identifies the orchestrator in the registry ("local", "nomad").
	Name() string
	// Start prepares the workspace's home and launches its agent, calling
	// progress with short human phrases; it returns once the agent
	// listens (the IDE may still be starting).
	Start(ctx context.Context, spec Spec, progress func(string)) (Launched, error)
	// Stop ends the workspace's processes and releases what it held,
	// keeping the user's files. Stopping a stopped workspace is no error.
	Stop(ctx context.Context, w *Workspace) error
	// Alive reports whether the workspace's agent still exists, for
	// re-attaching after a gateway restart.
	Alive(ctx context.Context, w *Workspace) (bool, error)
	// Assign makes a claimed warm workspace its new owner's.
	Assign(ctx context.Context, w *Workspace, userID, username string) error
}

// Sweeper is implemented by orchestrators that can find what workspaces
// left on their hosts (a gateway killed in the middle of a start, a
// workspace dropped from the registry) and free it.
type Sweeper interface {
	// Sweep looks at the host, then calls registry for what the registry
	// holds at that moment, and frees what belongs to no live workspace.
	Sweep(ctx context.Context, registry func(context.Context) (Registry, error)) error
}

// Registry is what Sweep keeps: Live are the workspaces that may run on
// this host now (queued, starting, running or stopping); Known are all
// the registry has, anywhere, in any state.
type Registry struct {
	Live, Known map[string]bool
}

// Resolver is implemented by orchestrators whose workspaces are found
// through service discovery (Nomad with Consul): the address of a running
// workspace comes from the discovery's view of healthy instances, so that
// a workspace that fails its health check stops receiving traffic.
type Resolver interface {
	// Resolve returns the healthy address of w's agent, or ok false when
	// no healthy instance is known.
	Resolve(ctx context.Context, w *Workspace) (addr string, ok bool)
}

// OOMCounter is implemented by orchestrators that can count the processes
// the kernel killed in a workspace for lack of memory (its cgroup's
// oom_kill counter). The count is read by the gateway, not reported by
// the workspace, whose processes could not see it from inside their
// sandbox and could change what the agent says.
type OOMCounter interface {
	// OOMKills returns how many of w's processes were killed for lack of
	// memory since w started.
	OOMKills(ctx context.Context, w *Workspace) (int64, error)
}

// Recoverer is implemented by orchestrators that bring a workspace whose
// agent died or hangs back where it ran (Nomad restarts a task in place:
// the same allocation, node, port and files), far quicker than a new
// start.
type Recoverer interface {
	// Recover waits until w's agent runs again where it ran, first
	// restarting it when hung (it runs but does not answer), and returns
	// where it listens. It fails when the orchestrator gave up on it
	// (restart attempts spent, its node lost); the manager then starts
	// the workspace afresh.
	Recover(ctx context.Context, w *Workspace, hung bool, progress func(string)) (Launched, error)
}
