package main

import (
	"context"
	"errors"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/gateway"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/ratelimit"
	"github.com/codehub-dev/codehub/internal/resources"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// wireAdmin adds to opts what multi-user mode's admin API and API rate
// limits need, and returns the resource manager; Run it once the gateway
// serves. ws is nil when every user shares one upstream IDE; conns counts
// a user's open connections through the gateway.
func (a *app) wireAdmin(opts *gateway.Options, ws *workspaces, conns func(userID string) int) *resources.Manager {
	cfg := a.cfg
	l := &cfg.MultiUser.Limits
	opts.APILimits = &gateway.APILimits{
		User:      ratelimit.New(ratelimit.Config{PerMinute: l.APIRequestsPerMinute, Burst: l.APIBurst}),
		Anonymous: ratelimit.New(ratelimit.Config{PerMinute: l.AnonymousAPIRequestsPerMinute, Burst: l.AnonymousAPIBurst}),
	}
	if cfg.MultiUser.Features.AuditLogging {
		opts.AuditLog = auditQuerier{l: a.db.AuditLog(), logger: a.auditLog}
	}

	d := resources.Deps{
		Sessions:    a.id,
		Workspaces:  noWorkspaces{},
		Connections: connCounter(conns),
		Limits: func(context.Context, string) (resources.Limits, error) {
			return resources.Limits{Sessions: l.MaxSessionsPerUser, Connections: l.MaxConcurrentConnections,
				StorageBytes: int64(l.StorageQuotaMB) << 20, MemoryMB: l.MemoryLimitMB, CPUPercent: l.CPULimitPercent}, nil
		},
		Username: func(ctx context.Context, id string) (string, error) {
			u, err := a.id.User(ctx, id)
			if err != nil {
				return "", err
			}
			return u.Username, nil
		},
		Audit:   a.audit,
		Metrics: a.metrics,
	}
	if ws != nil {
		d.Workspaces, d.Limits = ws.mgr, ws.limits
		opts.AdminWorkspaces = ws
	}
	if cfg.MultiUser.Features.UsageAnalytics {
		d.Store = a.db.Usage()
	}
	res := resources.New(resources.Config{
		Interval:        cfg.MultiUser.Usage.SampleInterval.D(),
		Retention:       cfg.MultiUser.Usage.Retention.D(),
		CleanupInterval: cfg.MultiUser.Scaling.AutoCleanup.ExpiredSessionCleanupInterval.D(),

		StorageWarnPercent: cfg.MultiUser.Limits.StorageWarningPercent,
	}, d, a.log.Named("resources"))
	opts.Resources = res
	return res
}

// runResources runs the resource manager until ctx ends.
func (a *app) runResources(ctx context.Context, res *resources.Manager) {
	go func() {
		if err := res.Run(ctx); err != nil {
			a.log.Error("resource manager stopped", "error", err)
		}
	}()
}

type connCounter func(userID string) int

func (c connCounter) OpenConnections(userID string) int { return c(userID) }

// auditQuerier is the database audit log as the admin API asks it, and
// the health of the logger writing it.
type auditQuerier struct {
	l      *sqlstore.AuditLog
	logger *audit.Logger
}

var _ gateway.AuditHealth = auditQuerier{}

// Health implements gateway.AuditHealth.
func (q auditQuerier) Health() audit.Status {
	if q.logger == nil {
		return audit.Status{Sinks: []audit.SinkStatus{}}
	}
	return q.logger.Status()
}

func (q auditQuerier) Query(ctx context.Context, f gateway.AuditQuery) ([]audit.Event, int, error) {
	return q.l.Query(ctx, sqlstore.AuditQuery{UserID: f.UserID, EventType: f.EventType, Since: f.Since, Until: f.Until,
		Offset: f.Offset, Limit: f.Limit})
}

func (q auditQuerier) Failures(ctx context.Context, since time.Time, limit int) ([]audit.Event, int, error) {
	return q.l.Failures(ctx, since, limit)
}

// noWorkspaces is the resource manager's view when every user shares one
// upstream IDE: no workspaces of their own.
type noWorkspaces struct{}

func (noWorkspaces) List(context.Context) ([]*workspace.Workspace, error) { return nil, nil }
func (noWorkspaces) Of(context.Context, string) (*workspace.Workspace, error) {
	return nil, workspace.ErrNotFound
}
func (noWorkspaces) Usage(context.Context, *workspace.Workspace) (agentapi.Usage, error) {
	return agentapi.Usage{}, workspace.ErrNotFound
}
func (noWorkspaces) StopUser(context.Context, string, string) error { return nil }

// limits are a user's quotas: their workspace policy's.
func (ws *workspaces) limits(ctx context.Context, userID string) (resources.Limits, error) {
	p, err := ws.policyFor(ctx, userID)
	if err != nil {
		return resources.Limits{}, err
	}
	return resources.Limits{Sessions: p.MaxSessions, Connections: p.MaxConnections,
		StorageBytes: int64(p.StorageMB) << 20, MemoryMB: p.HardMemoryMB(), CPUPercent: p.CPUPercent}, nil
}

func infoOf(w *workspace.Workspace) gateway.WorkspaceInfo {
	return gateway.WorkspaceInfo{
		ID: w.ID, UserID: w.UserID, State: string(w.State), Orchestrator: w.Orchestrator, Node: w.Node,
		CreatedAt: w.CreatedAt, StartedAt: w.StartedAt, StoppedAt: w.StoppedAt, LastActivity: w.LastActivity,
		Restarts: w.Restarts, LastError: w.LastError,
	}
}

// AllWorkspaces implements gateway.AdminWorkspaces.
func (ws *workspaces) AllWorkspaces(ctx context.Context) ([]gateway.WorkspaceInfo, error) {
	all, err := ws.mgr.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]gateway.WorkspaceInfo, len(all))
	for i, w := range all {
		out[i] = infoOf(w)
	}
	return out, nil
}

// byID finds a workspace record.
func (ws *workspaces) byID(ctx context.Context, id string) (*workspace.Workspace, error) {
	all, err := ws.mgr.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, w := range all {
		if w.ID == id {
			return w, nil
		}
	}
	return nil, &identity.Error{Code: identity.CodeNotFound, Message: "no such workspace"}
}

// StopWorkspace implements gateway.AdminWorkspaces.
func (ws *workspaces) StopWorkspace(ctx context.Context, id string) (*gateway.WorkspaceInfo, error) {
	w, err := ws.byID(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := ws.mgr.Stop(ctx, id, "stopped by an administrator"); err != nil && !errors.Is(err, workspace.ErrNotFound) {
		return nil, &identity.Error{Code: identity.CodeUnavailable, Message: "the workspace could not be stopped", Err: err}
	}
	info := infoOf(w)
	return &info, nil
}

// RestartWorkspace implements gateway.AdminWorkspaces.
func (ws *workspaces) RestartWorkspace(ctx context.Context, id string) (*gateway.WorkspaceInfo, error) {
	w, err := ws.byID(ctx, id)
	if err != nil {
		return nil, err
	}
	if w.UserID == "" {
		return nil, &identity.Error{Code: identity.CodeConflict,
			Message: "a warm workspace belongs to nobody yet: stop it instead, and the pool starts a fresh one"}
	}
	nw, err := ws.mgr.Restart(ctx, w.UserID)
	if err != nil {
		return nil, &identity.Error{Code: identity.CodeUnavailable, Message: "the workspace could not be restarted", Err: err}
	}
	info := infoOf(nw)
	return &info, nil
}
