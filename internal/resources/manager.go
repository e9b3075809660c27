package resources

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/metrics"
	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/go-hclog"
)

// Config configures a Manager.
type Config struct {
	// Interval is how often usage is sampled (default 1m).
	Interval time.Duration
	// Retention is how long samples are kept (default 8 days, a little
	// more than the longest period).
	Retention time.Duration
	// CleanupInterval is how often old samples are pruned (default 5m).
	CleanupInterval time.Duration
	// AgentTimeout bounds each question to a workspace's agent (default
	// 2s); AgentConcurrency is how many are asked at once (default 8).
	AgentTimeout     time.Duration
	AgentConcurrency int
	// MaxUserSeries bounds the users codehub_user_storage_bytes has a
	// series for: the ones using most (default 100).
	MaxUserSeries int
	// StorageWarnPercent is the share of their storage a user has used
	// when they are warned (StorageUsage.Warning; default 90, 100: only
	// when full).
	StorageWarnPercent int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Deps are the Manager's collaborators.
type Deps struct {
	Sessions   SessionLister
	Workspaces Workspaces
	// Connections, if set, counts open connections per user.
	Connections ConnectionCounter
	// Limits returns a user's quotas (their policy's).
	Limits func(ctx context.Context, userID string) (Limits, error)
	// Username, if set, names users in metrics; else their ID is used.
	Username func(ctx context.Context, userID string) (string, error)
	// Store keeps the samples; nil keeps no history.
	Store Store
	// Audit records quotas exceeded; nil records nothing.
	Audit audit.Recorder
	// Metrics, if set, receives the sampled gauges.
	Metrics *metrics.Metrics
}

// measured is what an agent last reported for a user.
type measured struct {
	at           time.Time
	storage      int64
	memory       int64
	cpuSeconds   float64
	cpuPercent   float64
	running      bool
	storageKnown bool
	// The home's capacity and free space when it is a file system of its
	// own (0: unknown), and whether it is full.
	capacity, available int64
	full                bool
	oomKills            int64
}

// oomCount is the OOM kill counter of a user's workspace when last read:
// the counter starts at 0 with each start of the workspace.
type oomCount struct {
	workspace string
	startedAt time.Time
	kills     int64
}

// oomKills is what checkQuotas records: new kills in a user's workspace.
type oomKills struct {
	workspace  string
	new, total int64
}

// Manager tracks usage and quotas. Safe for concurrent use.
type Manager struct {
	cfg Config
	d   Deps
	log hclog.Logger

	mu       sync.Mutex
	latest   map[string]*measured // by user ID
	exceeded map[string]bool      // "user/resource" over quota at the last sample
	lastAt   time.Time            // the previous sample's time
	oomSeen  map[string]oomCount  // by user ID
	born     time.Time            // when this Manager was made
}

// New returns a Manager; Run samples and prunes until its context ends.
func New(cfg Config, d Deps, log hclog.Logger) *Manager {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 8 * 24 * time.Hour
	}
	if cfg.CleanupInterval <= 0 {
		cfg.CleanupInterval = 5 * time.Minute
	}
	if cfg.AgentTimeout <= 0 {
		cfg.AgentTimeout = 2 * time.Second
	}
	if cfg.AgentConcurrency <= 0 {
		cfg.AgentConcurrency = 8
	}
	if cfg.MaxUserSeries <= 0 {
		cfg.MaxUserSeries = 100
	}
	if cfg.StorageWarnPercent <= 0 {
		cfg.StorageWarnPercent = 90
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if d.Audit == nil {
		d.Audit = audit.Nop{}
	}
	if d.Limits == nil {
		d.Limits = func(context.Context, string) (Limits, error) { return Limits{}, nil }
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Manager{cfg: cfg, d: d, log: log, latest: map[string]*measured{}, exceeded: map[string]bool{},
		oomSeen: map[string]oomCount{}, born: cfg.Now()}
}

// Run samples usage every interval and prunes old samples, until ctx ends.
// It takes a first sample at once.
func (m *Manager) Run(ctx context.Context) error {
	m.loadLatest(ctx)
	if err := m.TrackUsage(ctx); err != nil && ctx.Err() == nil {
		m.log.Warn("sample usage", "error", err)
	}
	m.prune(ctx)
	sample := time.NewTicker(m.cfg.Interval)
	defer sample.Stop()
	cleanup := time.NewTicker(m.cfg.CleanupInterval)
	defer cleanup.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sample.C:
			if err := m.TrackUsage(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("sample usage", "error", err)
			}
		case <-cleanup.C:
			m.prune(ctx)
		}
	}
}

// loadLatest remembers each user's last stored storage measure, so that
// users whose workspace is stopped still show what their home holds.
func (m *Manager) loadLatest(ctx context.Context) {
	if m.d.Store == nil {
		return
	}
	ss, err := m.d.Store.LatestStorage(ctx)
	if err != nil {
		m.log.Warn("read the latest usage samples", "error", err)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range ss {
		if _, ok := m.latest[s.UserID]; !ok {
			m.latest[s.UserID] = &measured{at: s.At, storage: s.StorageBytes, storageKnown: true}
		}
	}
}

func (m *Manager) prune(ctx context.Context) {
	if m.d.Store == nil {
		return
	}
	n, err := m.d.Store.Prune(ctx, m.cfg.Now().Add(-m.cfg.Retention))
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("prune usage samples", "error", err)
		}
		return
	}
	if n > 0 {
		m.log.Debug("pruned usage samples", "count", n)
	}
}

// agentResult is one workspace's answer.
type agentResult struct {
	w   *workspace.Workspace
	ok  bool
	use measured
}

// TrackUsage samples what everyone uses now: live sessions, active users,
// workspaces by state, starts since the previous sample, and each running
// workspace's storage, memory and CPU from its agent. It updates the
// gauges, records quotas newly exceeded, and stores one sample per user
// with anything live plus one for the totals.
func (m *Manager) TrackUsage(ctx context.Context) error {
	now := m.cfg.Now()
	at := now.Truncate(m.cfg.Interval)
	sessions, err := m.d.Sessions.AllSessions(ctx)
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	ws, err := m.d.Workspaces.List(ctx)
	if err != nil {
		return fmt.Errorf("list workspaces: %w", err)
	}

	m.mu.Lock()
	since := m.lastAt
	m.mu.Unlock()
	if since.IsZero() {
		since = now.Add(-m.cfg.Interval)
	}

	perUser := map[string]*Sample{}
	get := func(id string) *Sample {
		s := perUser[id]
		if s == nil {
			s = &Sample{At: at, UserID: id}
			perUser[id] = s
		}
		return s
	}
	for _, s := range sessions {
		get(s.UserID).Sessions++
	}
	totals := Sample{At: at, UserID: Totals, Sessions: len(sessions)}
	states := map[workspace.State]int{}
	var running []*workspace.Workspace
	owned := map[string]bool{}
	for _, w := range ws {
		states[w.State]++
		started := !w.StartedAt.IsZero() && w.StartedAt.After(since) && !w.StartedAt.After(now)
		if started {
			totals.WorkspaceStarts++
		}
		if w.UserID == "" {
			continue
		}
		owned[w.UserID] = true
		if started {
			get(w.UserID).WorkspaceStarts++
		}
		if w.State == workspace.StateRunning {
			running = append(running, w)
			get(w.UserID).RunningWorkspaces = 1
		}
	}
	totals.RunningWorkspaces = states[workspace.StateRunning]

	results := m.askAgents(ctx, running)

	kills := map[string]oomKills{}
	m.mu.Lock()
	for _, r := range results {
		prev := m.latest[r.w.UserID]
		if !r.ok {
			continue
		}
		u := r.use
		if prev != nil && prev.running && u.cpuSeconds >= prev.cpuSeconds && u.at.After(prev.at) {
			u.cpuPercent = 100 * (u.cpuSeconds - prev.cpuSeconds) / u.at.Sub(prev.at).Seconds()
		}
		m.latest[r.w.UserID] = &u
		if n := m.newOOMKills(r.w, u.oomKills); n > 0 {
			kills[r.w.UserID] = oomKills{workspace: r.w.ID, new: n, total: u.oomKills}
		}
	}
	for id, l := range m.latest {
		s := perUser[id]
		if s == nil || s.RunningWorkspaces == 0 {
			// Not running: only what the home holds stays true.
			l.running, l.memory, l.cpuPercent = false, 0, 0
		}
		if s == nil && !owned[id] && now.Sub(l.at) > m.cfg.Retention {
			delete(m.latest, id) // no workspace, nothing live, long gone
		}
	}
	for id, s := range perUser {
		if s.Sessions > 0 {
			s.ActiveUsers = 1
			totals.ActiveUsers++
		}
		if m.d.Connections != nil {
			s.Connections = m.d.Connections.OpenConnections(id)
			totals.Connections += s.Connections
		}
		if l := m.latest[id]; l != nil {
			s.StorageBytes = l.storage
			if l.running {
				s.MemoryBytes, s.CPUPercent = l.memory, l.cpuPercent
			}
		}
		totals.StorageBytes += s.StorageBytes
		totals.MemoryBytes += s.MemoryBytes
		totals.CPUPercent += s.CPUPercent
	}
	storage := make([]UserStorage, 0, len(m.latest))
	for id, l := range m.latest {
		if l.storageKnown {
			storage = append(storage, UserStorage{UserID: id, Bytes: l.storage, At: l.at})
		}
	}
	m.lastAt = now
	m.mu.Unlock()

	m.checkQuotas(ctx, perUser, kills)
	m.setGauges(ctx, totals, states, storage)

	if m.d.Store == nil {
		return nil
	}
	out := make([]Sample, 0, len(perUser)+1)
	out = append(out, totals)
	for _, s := range perUser {
		out = append(out, *s)
	}
	slices.SortFunc(out[1:], func(a, b Sample) int { return cmp.Compare(a.UserID, b.UserID) })
	if err := m.d.Store.AddSamples(ctx, out); err != nil {
		return fmt.Errorf("store usage samples: %w", err)
	}
	return nil
}

// askAgents asks each running workspace's agent what it uses, a few at
// a time, each within AgentTimeout.
func (m *Manager) askAgents(ctx context.Context, ws []*workspace.Workspace) []agentResult {
	out := make([]agentResult, len(ws))
	sem := make(chan struct{}, m.cfg.AgentConcurrency)
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			actx, cancel := context.WithTimeout(ctx, m.cfg.AgentTimeout)
			defer cancel()
			u, err := m.d.Workspaces.Usage(actx, w)
			out[i].w = w
			if err != nil {
				m.log.Debug("workspace usage unavailable", "workspace", w.ID, "error", err)
				return
			}
			out[i].ok = true
			out[i].use = measured{at: m.cfg.Now(), storage: u.StorageBytes, memory: u.MemoryBytes,
				cpuSeconds: u.CPUSeconds, running: true, storageKnown: true,
				capacity: u.StorageCapacityBytes, available: u.StorageAvailableBytes, full: u.StorageFull,
				oomKills: u.OOMKills}
		}()
	}
	wg.Wait()
	return out
}

// newOOMKills returns how many of kills, the OOM kill counter of w just
// read, are new since the last read; m.mu is held. A workspace that was
// running before this Manager was made counts from now: its earlier kills
// were another gateway's to record.
func (m *Manager) newOOMKills(w *workspace.Workspace, kills int64) int64 {
	prev, seen := m.oomSeen[w.UserID]
	m.oomSeen[w.UserID] = oomCount{workspace: w.ID, startedAt: w.StartedAt, kills: kills}
	switch {
	case seen && prev.workspace == w.ID && prev.startedAt.Equal(w.StartedAt):
		return max(0, kills-prev.kills)
	case !seen && w.StartedAt.Before(m.born):
		return 0
	default: // started since: its counter began at 0
		return kills
	}
}

// storageOf is a user's storage from their last measure (or their sample
// when there is none) against their quota.
func (m *Manager) storageOf(l *measured, sampled, quota int64) StorageUsage {
	if l == nil {
		return StorageOf(sampled, quota, 0, 0, false, m.cfg.StorageWarnPercent)
	}
	return StorageOf(l.storage, quota, l.capacity, l.available, l.full, m.cfg.StorageWarnPercent)
}

// checkQuotas records security.quota_exceeded for storage and memory when
// a user goes over (for storage: their home is full, writes fail), once
// per crossing (not every sample while over), and for each sample that
// saw processes of their workspace killed for lack of memory.
func (m *Manager) checkQuotas(ctx context.Context, perUser map[string]*Sample, kills map[string]oomKills) {
	for id, s := range perUser {
		lim, err := m.d.Limits(ctx, id)
		if err != nil {
			continue
		}
		u := Usage{UserID: id}
		m.mu.Lock()
		u.Storage = m.storageOf(m.latest[id], s.StorageBytes, lim.StorageBytes)
		m.mu.Unlock()
		u.Memory = MemoryUsage{MB: float64(s.MemoryBytes) / (1 << 20), Limit: lim.MemoryMB}
		for _, r := range []Resource{Storage, Memory} {
			q := u.Quota(r)
			key := id + "/" + string(r)
			m.mu.Lock()
			was := m.exceeded[key]
			if q.Exceeded {
				m.exceeded[key] = true
			} else {
				delete(m.exceeded, key)
			}
			m.mu.Unlock()
			if q.Exceeded && !was {
				m.recordExceeded(ctx, id, q)
			}
		}
		if k, ok := kills[id]; ok {
			m.recordOOMKills(ctx, id, lim.MemoryMB, k)
		}
	}
}

func (m *Manager) recordExceeded(ctx context.Context, userID string, q QuotaStatus) {
	md := map[string]any{"resource": string(q.Resource), "current": q.Current, "limit": q.Limit}
	if q.Resource == Storage {
		md["available"] = q.Available
	}
	m.d.Audit.Record(audit.FromContext(ctx, audit.Event{EventType: audit.QuotaExceeded, UserID: userID,
		Status: audit.StatusFailure, Metadata: md}))
	if m.d.Metrics != nil && m.d.Metrics.QuotaExceeded != nil {
		m.d.Metrics.QuotaExceeded.WithLabelValues(string(q.Resource)).Inc()
	}
}

// recordOOMKills records processes of a user's workspace killed for lack
// of memory: one security.quota_exceeded event (resource memory) per
// sample that saw any, saying how many.
func (m *Manager) recordOOMKills(ctx context.Context, userID string, limitMB int, k oomKills) {
	m.log.Info("processes of a workspace killed for lack of memory", "user", userID, "workspace", k.workspace, "kills", k.new)
	m.d.Audit.Record(audit.FromContext(ctx, audit.Event{EventType: audit.QuotaExceeded, UserID: userID,
		Status: audit.StatusFailure, Metadata: map[string]any{
			"resource": string(Memory), "oomKills": k.new, "oomKillsSinceStart": k.total,
			"limit": limitMB, "workspaceId": k.workspace,
		}}))
	if m.d.Metrics != nil && m.d.Metrics.OOMKills != nil {
		m.d.Metrics.OOMKills.Add(float64(k.new))
	}
}

// setGauges updates the sampled metrics. The per-user storage series are
// rebuilt each time for the users using most, so that their number stays
// bounded and deleted users disappear.
func (m *Manager) setGauges(ctx context.Context, totals Sample, states map[workspace.State]int, storage []UserStorage) {
	mt := m.d.Metrics
	if mt == nil {
		return
	}
	mt.ActiveSessions.Set(float64(totals.Sessions))
	mt.ActiveUsers.Set(float64(totals.ActiveUsers))
	for _, st := range workspace.States {
		mt.ActiveContainers.WithLabelValues(string(st)).Set(float64(states[st]))
	}
	slices.SortFunc(storage, func(a, b UserStorage) int {
		return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), cmp.Compare(a.UserID, b.UserID))
	})
	if len(storage) > m.cfg.MaxUserSeries {
		storage = storage[:m.cfg.MaxUserSeries]
	}
	mt.UserStorage.Reset()
	for _, s := range storage {
		mt.UserStorage.WithLabelValues(m.username(ctx, s.UserID)).Set(float64(s.Bytes))
	}
}

func (m *Manager) username(ctx context.Context, id string) string {
	if m.d.Username == nil {
		return id
	}
	name, err := m.d.Username(ctx, id)
	if err != nil || name == "" {
		return id
	}
	return name
}

// usage builds a user's Usage from their sessions, workspace record and
// the last measure of its agent.
func (m *Manager) usage(ctx context.Context, userID string, sessions int, w *workspace.Workspace) (Usage, error) {
	lim, err := m.d.Limits(ctx, userID)
	if err != nil {
		return Usage{}, fmt.Errorf("limits of %s: %w", userID, err)
	}
	u := Usage{UserID: userID}
	u.Sessions = SessionUsage{Active: sessions, Limit: lim.Sessions}
	u.Connections.Limit = lim.Connections
	if m.d.Connections != nil {
		u.Connections.Current = m.d.Connections.OpenConnections(userID)
	}
	u.Memory.Limit, u.CPU.Limit = lim.MemoryMB, lim.CPUPercent
	u.Running = w != nil && w.State == workspace.StateRunning
	m.mu.Lock()
	if l := m.latest[userID]; l != nil {
		u.Storage, u.SampledAt = m.storageOf(l, 0, lim.StorageBytes), l.at
		if u.Running && l.running {
			u.Memory.MB = float64(l.memory) / (1 << 20)
			u.Memory.OOMKills = l.oomKills
			u.CPU.Percent = l.cpuPercent
		}
	} else {
		u.Storage = m.storageOf(nil, 0, lim.StorageBytes)
	}
	m.mu.Unlock()
	return u, nil
}

// Usage returns what userID uses now against their limits.
func (m *Manager) Usage(ctx context.Context, userID string) (Usage, error) {
	ss, err := m.d.Sessions.UserSessions(ctx, userID)
	if err != nil {
		return Usage{}, fmt.Errorf("sessions of %s: %w", userID, err)
	}
	w, err := m.d.Workspaces.Of(ctx, userID)
	if err != nil && !errors.Is(err, workspace.ErrNotFound) {
		return Usage{}, fmt.Errorf("workspace of %s: %w", userID, err)
	}
	return m.usage(ctx, userID, len(ss), w)
}

// UsageOf returns the usage of several users, in order, reading sessions
// and workspaces once for all of them.
func (m *Manager) UsageOf(ctx context.Context, userIDs []string) ([]Usage, error) {
	all, err := m.d.Sessions.AllSessions(ctx)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	ws, err := m.d.Workspaces.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	count := map[string]int{}
	for _, s := range all {
		count[s.UserID]++
	}
	byUser := map[string]*workspace.Workspace{}
	for _, w := range ws {
		if w.UserID != "" {
			byUser[w.UserID] = w
		}
	}
	out := make([]Usage, 0, len(userIDs))
	for _, id := range userIDs {
		u, err := m.usage(ctx, id, count[id], byUser[id])
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// CheckQuota returns the status of one of userID's quotas.
func (m *Manager) CheckQuota(ctx context.Context, userID string, r Resource) (QuotaStatus, error) {
	if !r.Valid() {
		return QuotaStatus{}, fmt.Errorf("unknown resource %q", r)
	}
	u, err := m.Usage(ctx, userID)
	if err != nil {
		return QuotaStatus{}, err
	}
	return u.Quota(r), nil
}

// Quotas returns the status of every quota of userID.
func (m *Manager) Quotas(ctx context.Context, userID string) ([]QuotaStatus, error) {
	u, err := m.Usage(ctx, userID)
	if err != nil {
		return nil, err
	}
	return u.Quotas(), nil
}

// EnforceQuota reports whether userID may use more of r: false when the
// quota is used up, which is recorded as security.quota_exceeded.
func (m *Manager) EnforceQuota(ctx context.Context, userID string, r Resource) (bool, error) {
	q, err := m.CheckQuota(ctx, userID, r)
	if err != nil {
		return false, err
	}
	if q.Exceeded {
		m.recordExceeded(ctx, userID, q)
		return false, nil
	}
	return true, nil
}

// GetUsage returns the usage history of userID (Totals: everyone's) over
// the period p ending now. Without a Store the history is empty.
func (m *Manager) GetUsage(ctx context.Context, userID string, p Period) (*PeriodUsage, error) {
	to := m.cfg.Now()
	from := to.Add(-p.Span).Truncate(p.Step)
	var samples []Sample
	if m.d.Store != nil {
		var err error
		samples, err = m.d.Store.Samples(ctx, userID, from, to.Add(time.Nanosecond))
		if err != nil {
			return nil, fmt.Errorf("read usage samples: %w", err)
		}
	}
	pu := Aggregate(userID, p, from, samples)
	pu.To = to
	return pu, nil
}

// StoragePerUser returns each user's last measured storage, largest first.
func (m *Manager) StoragePerUser(ctx context.Context) ([]UserStorage, error) {
	m.mu.Lock()
	out := make([]UserStorage, 0, len(m.latest))
	for id, l := range m.latest {
		if l.storageKnown {
			out = append(out, UserStorage{UserID: id, Bytes: l.storage, At: l.at, LimitBytes: l.capacity})
		}
	}
	m.mu.Unlock()
	for i := range out {
		if lim, err := m.d.Limits(ctx, out[i].UserID); err == nil && out[i].LimitBytes == 0 {
			out[i].LimitBytes = lim.StorageBytes
		}
	}
	slices.SortFunc(out, func(a, b UserStorage) int {
		return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), cmp.Compare(a.UserID, b.UserID))
	})
	return out, nil
}

// CleanupUserResources releases what a deleted user held: their workspace
// is stopped (their files are kept) and their usage history deleted.
func (m *Manager) CleanupUserResources(ctx context.Context, userID string) error {
	var errs []error
	if err := m.d.Workspaces.StopUser(ctx, userID, "its user was deleted"); err != nil {
		errs = append(errs, fmt.Errorf("stop workspace: %w", err))
	}
	if m.d.Store != nil {
		if err := m.d.Store.DeleteUser(ctx, userID); err != nil {
			errs = append(errs, fmt.Errorf("delete usage samples: %w", err))
		}
	}
	m.mu.Lock()
	delete(m.latest, userID)
	for _, r := range All {
		delete(m.exceeded, userID+"/"+string(r))
	}
	delete(m.oomSeen, userID)
	m.mu.Unlock()
	return errors.Join(errs...)
}
