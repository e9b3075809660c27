// Package resources is the design's ResourceManager (§7.6): what each user
// uses against their quotas (sessions, connections, storage, memory, CPU),
// a sampler that stores usage every minute for history and charts, and the
// clean-up that is not already someone else's.
//
// Clean-up duties are shared out, not duplicated: expired sessions are
// deleted by the identity service (every session cleanup interval), idle
// workspaces are stopped by the workspace manager (by each policy's idle
// timeout). This package prunes old usage samples and cleans up after a
// deleted user (CleanupUserResources).
package resources

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// Resource names one quota.
type Resource string

// Resources with quotas, and their units.
const (
	Sessions    Resource = "sessions"    // live sessions
	Connections Resource = "connections" // open proxied connections
	Storage     Resource = "storage"     // bytes in the user's home
	Memory      Resource = "memory"      // MB resident in the workspace
	CPU         Resource = "cpu"         // percent of one CPU
)

// All lists every resource, in the order quotas are reported.
var All = []Resource{Sessions, Connections, Storage, Memory, CPU}

// Valid reports whether r is a known resource.
func (r Resource) Valid() bool {
	for _, x := range All {
		if r == x {
			return true
		}
	}
	return false
}

// Limits are one user's quotas; 0 means none.
type Limits struct {
	Sessions     int
	Connections  int
	StorageBytes int64
	MemoryMB     int
	CPUPercent   int
}

// Usage is what one user uses against their limits: the design's
// ResourceUsage. Storage, memory and CPU come from the workspace's agent,
// measured by the last sample (SampledAt); sessions and connections are
// counted when asked.
type Usage struct {
	UserID      string          `json:"userId"`
	Storage     StorageUsage    `json:"storage"`
	Sessions    SessionUsage    `json:"sessions"`
	Connections ConnectionUsage `json:"connections"`
	CPU         CPUUsage        `json:"cpu"`
	Memory      MemoryUsage     `json:"memory"`
	// Running says whether the user's workspace runs; SampledAt is when
	// its agent was last measured (zero: never).
	Running   bool      `json:"running"`
	SampledAt time.Time `json:"sampledAt,omitzero"`
}

// StorageUsage is in bytes, as the user experiences it (see StorageOf).
type StorageUsage struct {
	Used int64 `json:"used"`
	// Limit is what the user can have: the capacity of their home's file
	// system when it was measured (used + what they can still write),
	// else their quota.
	Limit int64 `json:"limit"`
	// Available is what they can still write.
	Available int64 `json:"available"`
	// Percent of Limit used, rounded down, and 100 only when Full.
	Percent float64 `json:"percent"`
	// Full says that writes fail for lack of room ("No space left on
	// device").
	Full bool `json:"full"`
	// Warning is set from the warning level on (Config.StorageWarnPercent)
	// and when full: time to free some space.
	Warning bool `json:"warning"`
}

// StorageOf builds a user's storage from what their agent measured (used
// bytes; capacity and available when the home is a file system of its
// own, 0 otherwise; full when writes fail) and their quota, with a warning
// from warnPercent of the limit on (0: only when full).
func StorageOf(used, quota, capacity, available int64, full bool, warnPercent int) StorageUsage {
	s := StorageUsage{Used: used, Limit: quota}
	switch {
	case capacity > 0:
		s.Limit, s.Available, s.Full = capacity, available, full
	case quota > 0:
		s.Available = max(0, quota-used)
		s.Full = used >= quota
	}
	if s.Limit <= 0 {
		return s
	}
	s.Percent = 100
	if !s.Full {
		s.Percent = min(99, math.Floor(100*float64(s.Used)/float64(s.Limit)))
	}
	s.Warning = s.Full || (warnPercent > 0 && s.Percent >= float64(warnPercent))
	return s
}

// StorageOfAgent is StorageOf from an agent's report.
func StorageOfAgent(u agentapi.Usage, quota int64, warnPercent int) StorageUsage {
	return StorageOf(u.StorageBytes, quota, u.StorageCapacityBytes, u.StorageAvailableBytes, u.StorageFull, warnPercent)
}

// SessionUsage counts live sessions.
type SessionUsage struct {
	Active int `json:"active"`
	Limit  int `json:"limit"`
}

// ConnectionUsage counts open proxied connections (this gateway's).
type ConnectionUsage struct {
	Current int `json:"current"`
	Limit   int `json:"limit"`
}

// CPUUsage is in percent of one CPU, averaged over the last sampling
// interval.
type CPUUsage struct {
	Percent float64 `json:"percent"`
	Limit   int     `json:"limit"`
}

// MemoryUsage is in MB (2^20 bytes).
type MemoryUsage struct {
	MB    float64 `json:"mb"`
	Limit int     `json:"limit"`
	// OOMKills counts the workspace's processes the kernel killed for
	// lack of memory since it started (where the orchestrator counts
	// them: the local one does).
	OOMKills int64 `json:"oomKills"`
}

// QuotaStatus is one quota of one user: the design's QuotaStatus. Current,
// Limit and Available are in the resource's unit. Exceeded means nothing
// is left (Current ≥ Limit); a resource without a limit is Unlimited and
// never exceeded.
type QuotaStatus struct {
	Resource  Resource `json:"resource"`
	Current   float64  `json:"current"`
	Limit     float64  `json:"limit"`
	Available float64  `json:"available"`
	Exceeded  bool     `json:"exceeded"`
	Unlimited bool     `json:"unlimited,omitempty"`
	// Warning (storage) says the home is nearly or quite full.
	Warning bool `json:"warning,omitempty"`
	// OOMKills (memory) counts processes killed for lack of memory since
	// the workspace started.
	OOMKills int64 `json:"oomKills,omitempty"`
}

// Quota returns the status of resource r in u.
func (u *Usage) Quota(r Resource) QuotaStatus {
	var cur, lim float64
	switch r {
	case Sessions:
		cur, lim = float64(u.Sessions.Active), float64(u.Sessions.Limit)
	case Connections:
		cur, lim = float64(u.Connections.Current), float64(u.Connections.Limit)
	case Storage:
		cur, lim = float64(u.Storage.Used), float64(u.Storage.Limit)
	case Memory:
		cur, lim = u.Memory.MB, float64(u.Memory.Limit)
	case CPU:
		cur, lim = u.CPU.Percent, float64(u.CPU.Limit)
	}
	q := QuotaStatus{Resource: r, Current: cur, Limit: lim}
	if r == Memory {
		q.OOMKills = u.Memory.OOMKills
	}
	if lim <= 0 {
		q.Unlimited = true
		return q
	}
	q.Available = max(0, lim-cur)
	q.Exceeded = cur >= lim
	if r == Storage {
		// Full is what the kernel says: writes fail before the last
		// bytes of a file system are used.
		q.Available, q.Exceeded, q.Warning = float64(u.Storage.Available), u.Storage.Full, u.Storage.Warning
	}
	return q
}

// Quotas returns the status of every resource in u, in the order of All.
func (u *Usage) Quotas() []QuotaStatus {
	out := make([]QuotaStatus, len(All))
	for i, r := range All {
		out[i] = u.Quota(r)
	}
	return out
}

// Totals is the user ID of the samples that cover the whole installation.
const Totals = ""

// Sample is what was used at one time: by one user, or by everyone
// (UserID Totals). At is the start of the sampling interval.
type Sample struct {
	At     time.Time `json:"at"`
	UserID string    `json:"userId,omitempty"`
	// Sessions live, and connections open through the sampling gateway.
	Sessions    int `json:"sessions"`
	Connections int `json:"connections"`
	// StorageBytes, MemoryBytes and CPUPercent as the agents reported them
	// (totals: summed over users).
	StorageBytes int64   `json:"storageBytes"`
	MemoryBytes  int64   `json:"memoryBytes"`
	CPUPercent   float64 `json:"cpuPercent"`
	// ActiveUsers have at least one live session (a user's own sample: 1).
	ActiveUsers int `json:"activeUsers"`
	// RunningWorkspaces, and WorkspaceStarts since the previous sample.
	RunningWorkspaces int `json:"runningWorkspaces"`
	WorkspaceStarts   int `json:"workspaceStarts"`
}

// Store keeps usage samples. Implementations are safe for concurrent use
// by several gateways.
type Store interface {
	// AddSamples stores samples. A sample for a user and time already
	// stored (by another gateway) is left as it is: the first one wins.
	AddSamples(ctx context.Context, samples []Sample) error
	// Samples returns the samples of userID (Totals: the installation's)
	// taken in [since, until), oldest first.
	Samples(ctx context.Context, userID string, since, until time.Time) ([]Sample, error)
	// LatestStorage returns, for each user, the most recent sample that
	// measured their storage (StorageBytes > 0).
	LatestStorage(ctx context.Context) ([]Sample, error)
	// Prune deletes the samples taken before t and returns how many.
	Prune(ctx context.Context, before time.Time) (int, error)
	// DeleteUser deletes every sample of a user.
	DeleteUser(ctx context.Context, userID string) error
}

// SessionLister is what the manager reads of sessions (identity.Service).
type SessionLister interface {
	// AllSessions returns every live session.
	AllSessions(ctx context.Context) ([]*session.Session, error)
	// UserSessions returns the live sessions of one user.
	UserSessions(ctx context.Context, userID string) ([]*session.Session, error)
}

// Workspaces is what the manager reads of and does to workspaces
// (workspace.Manager).
type Workspaces interface {
	// List returns every workspace record.
	List(ctx context.Context) ([]*workspace.Workspace, error)
	// Of returns the user's workspace, or workspace.ErrNotFound.
	Of(ctx context.Context, userID string) (*workspace.Workspace, error)
	// Usage asks a running workspace's agent what it uses.
	Usage(ctx context.Context, w *workspace.Workspace) (agentapi.Usage, error)
	// StopUser stops the user's workspace, if it runs.
	StopUser(ctx context.Context, userID, reason string) error
}

// ConnectionCounter counts the proxied connections a user has open
// through this gateway.
type ConnectionCounter interface {
	OpenConnections(userID string) int
}

// Period is a span of usage history and the step its points are
// aggregated to.
type Period struct {
	Name       string
	Span, Step time.Duration
}

// Periods are the spans GetUsage accepts, by name.
var Periods = map[string]Period{
	"1h":  {Name: "1h", Span: time.Hour, Step: time.Minute},
	"24h": {Name: "24h", Span: 24 * time.Hour, Step: 15 * time.Minute},
	"7d":  {Name: "7d", Span: 7 * 24 * time.Hour, Step: 2 * time.Hour},
}

// ErrUnknownPeriod is returned by ParsePeriod for a name not in Periods.
var ErrUnknownPeriod = errors.New("unknown period: use 1h, 24h or 7d")

// ParsePeriod returns the period named s ("" is 24h).
func ParsePeriod(s string) (Period, error) {
	if s == "" {
		s = "24h"
	}
	p, ok := Periods[s]
	if !ok {
		return Period{}, fmt.Errorf("%w (got %q)", ErrUnknownPeriod, s)
	}
	return p, nil
}

// PeriodUsage is the usage of one user (or the totals) over a period: one
// point per step that has samples, holding the highest value of each
// gauge in its step (CPU: the mean) and the workspace starts summed; and
// the peak and mean of the whole period.
type PeriodUsage struct {
	UserID      string    `json:"userId"`
	Period      string    `json:"period"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	StepSeconds int       `json:"stepSeconds"`
	Samples     []Sample  `json:"samples"`
	// Count is the number of samples the points summarize.
	Count int `json:"count"`
	// Peak holds the highest value of each field in one sample.
	Peak Sample `json:"peak"`
	// Average holds the mean of each field over the samples.
	Average Averages `json:"average"`
	// WorkspaceStarts counts the starts in the whole period.
	WorkspaceStarts int `json:"workspaceStarts"`
}

// Averages are the means of a Sample's fields over several samples.
type Averages struct {
	Sessions          float64 `json:"sessions"`
	Connections       float64 `json:"connections"`
	StorageBytes      float64 `json:"storageBytes"`
	MemoryBytes       float64 `json:"memoryBytes"`
	CPUPercent        float64 `json:"cpuPercent"`
	ActiveUsers       float64 `json:"activeUsers"`
	RunningWorkspaces float64 `json:"runningWorkspaces"`
}

// Aggregate summarizes samples (oldest first, taken in [from,
// from+p.Span)) into p's steps.
func Aggregate(userID string, p Period, from time.Time, samples []Sample) *PeriodUsage {
	out := &PeriodUsage{
		UserID: userID, Period: p.Name, From: from, To: from.Add(p.Span),
		StepSeconds: int(p.Step / time.Second), Samples: []Sample{}, Count: len(samples),
	}
	out.Peak.UserID = userID
	var (
		cur    *Sample
		cpuSum float64
		cpuN   int
		last   = -1
		sum    Averages
	)
	flush := func() {
		if cur != nil {
			cur.CPUPercent = cpuSum / float64(cpuN)
			out.Samples = append(out.Samples, *cur)
		}
	}
	for _, s := range samples {
		if idx := int(s.At.Sub(from) / p.Step); idx != last {
			flush()
			cur = &Sample{At: from.Add(time.Duration(idx) * p.Step), UserID: userID}
			cpuSum, cpuN, last = 0, 0, idx
		}
		maxInto(cur, s)
		cur.WorkspaceStarts += s.WorkspaceStarts
		cpuSum += s.CPUPercent
		cpuN++

		maxInto(&out.Peak, s)
		out.Peak.CPUPercent = max(out.Peak.CPUPercent, s.CPUPercent)
		out.Peak.WorkspaceStarts = max(out.Peak.WorkspaceStarts, s.WorkspaceStarts)
		out.WorkspaceStarts += s.WorkspaceStarts
		sum.Sessions += float64(s.Sessions)
		sum.Connections += float64(s.Connections)
		sum.StorageBytes += float64(s.StorageBytes)
		sum.MemoryBytes += float64(s.MemoryBytes)
		sum.CPUPercent += s.CPUPercent
		sum.ActiveUsers += float64(s.ActiveUsers)
		sum.RunningWorkspaces += float64(s.RunningWorkspaces)
	}
	flush()
	if n := float64(len(samples)); n > 0 {
		out.Average = Averages{
			Sessions: sum.Sessions / n, Connections: sum.Connections / n,
			StorageBytes: sum.StorageBytes / n, MemoryBytes: sum.MemoryBytes / n, CPUPercent: sum.CPUPercent / n,
			ActiveUsers: sum.ActiveUsers / n, RunningWorkspaces: sum.RunningWorkspaces / n,
		}
	}
	return out
}

// maxInto raises each gauge of dst to s's where s's is higher (not CPU,
// which is averaged, nor starts, which are summed).
func maxInto(dst *Sample, s Sample) {
	dst.Sessions = max(dst.Sessions, s.Sessions)
	dst.Connections = max(dst.Connections, s.Connections)
	dst.StorageBytes = max(dst.StorageBytes, s.StorageBytes)
	dst.MemoryBytes = max(dst.MemoryBytes, s.MemoryBytes)
	dst.ActiveUsers = max(dst.ActiveUsers, s.ActiveUsers)
	dst.RunningWorkspaces = max(dst.RunningWorkspaces, s.RunningWorkspaces)
}

// UserStorage is one user's latest measured storage.
type UserStorage struct {
	UserID     string    `json:"userId"`
	Bytes      int64     `json:"bytes"`
	LimitBytes int64     `json:"limitBytes"`
	At         time.Time `json:"at"`
}
