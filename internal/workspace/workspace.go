// Package workspace runs every user's own IDE: a registry of who runs what
// where (persisted, so a gateway restart re-attaches instead of orphaning),
// a manager that starts each workspace once however many requests ask for
// it, queues starts behind a concurrency limit, restarts crashed ones,
// stops idle ones and keeps a warm pool; and the Orchestrator interface
// that local processes and Nomad implement.
package workspace

import (
	"context"
	"errors"
	"maps"
	"time"
)

// Errors of a Store.
var (
	ErrNotFound = errors.New("workspace not found")
	ErrConflict = errors.New("workspace already exists")
)

// State is where a workspace is in its life.
type State string

// States.
const (
	StateQueued   State = "queued"   // waiting for a start slot
	StateStarting State = "starting" // launched, the IDE not answering yet
	StateRunning  State = "running"
	StateStopping State = "stopping"
	StateStopped  State = "stopped" // files kept, nothing running
	StateFailed   State = "failed"  // the last start or run failed
)

// States lists every state, for metrics.
var States = []State{StateQueued, StateStarting, StateRunning, StateStopping, StateStopped, StateFailed}

// Workspace is one user's IDE (or a warm one nobody claimed yet).
type Workspace struct {
	ID string `json:"id"`
	// UserID is the owner; empty for a warm-pool workspace.
	UserID string `json:"userId,omitempty"`
	State  State  `json:"state"`
	// Orchestrator and Node say what runs it and where.
	Orchestrator string `json:"orchestrator"`
	Node         string `json:"node"`
	// Address is the agent's host:port; Secret the header value it wants.
	Address string `json:"address,omitempty"`
	Secret  string `json:"-"`
	// PID of the agent (local), ExternalID of the job (Nomad).
	PID        int    `json:"pid,omitempty"`
	ExternalID string `json:"externalId,omitempty"`
	// Home is the user's tree (Layout).
	Home string `json:"home"`

	CreatedAt    time.Time `json:"createdAt"`
	StartedAt    time.Time `json:"startedAt,omitzero"`
	StoppedAt    time.Time `json:"stoppedAt,omitzero"`
	LastActivity time.Time `json:"lastActivity,omitzero"`
	Restarts     int       `json:"restarts"`
	LastError    string    `json:"lastError,omitempty"`
	// Meta holds the orchestrator's own facts (uid, cgroup, namespace...).
	Meta map[string]string `json:"meta,omitempty"`
}

// Clone returns a deep copy.
func (w *Workspace) Clone() *Workspace {
	c := *w
	c.Meta = maps.Clone(w.Meta)
	return &c
}

// Store keeps the registry. Implementations are safe for concurrent use by
// several gateways.
type Store interface {
	// Create adds w; ErrConflict if its ID, or its user's workspace, exists.
	Create(ctx context.Context, w *Workspace) error
	// Get returns a workspace by ID, or ErrNotFound.
	Get(ctx context.Context, id string) (*Workspace, error)
	// ByUser returns a user's workspace, or ErrNotFound.
	ByUser(ctx context.Context, userID string) (*Workspace, error)
	// List returns every workspace, oldest first.
	List(ctx context.Context) ([]*Workspace, error)
	// Update applies fn to the stored workspace and stores the result,
	// atomically; fn may run more than once. ErrNotFound if missing.
	Update(ctx context.Context, id string, fn func(*Workspace) error) (*Workspace, error)
	// Delete removes a workspace record.
	Delete(ctx context.Context, id string) error
	// Claim assigns a running, unclaimed (warm) workspace of orchestrator
	// to userID, atomically: of concurrent claims, each gets a different
	// workspace or ErrNotFound when none is left.
	Claim(ctx context.Context, orchestrator, userID string) (*Workspace, error)
}
