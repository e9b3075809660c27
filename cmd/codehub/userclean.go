package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/orchestrator/nomad"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// cleanupDeletedUser releases what a deleted account held, as the admin
// API's delete does (resources.Manager.CleanupUserResources): its
// workspace is stopped, its files kept, and its usage history deleted.
// `codehub user delete` runs without a gateway, so the workspace is
// stopped through the orchestrator that runs it, straight from the
// registry. It returns a note for the operator when the workspace cannot
// be stopped from here.
func (a *app) cleanupDeletedUser(ctx context.Context, getenv func(string) string, userID string) (note string, err error) {
	if a.db == nil {
		return "", nil
	}
	var errs []error
	if a.cfg.MultiUser.Features.UsageAnalytics {
		if err := a.db.Usage().DeleteUser(ctx, userID); err != nil {
			errs = append(errs, fmt.Errorf("delete usage history: %w", err))
		}
	}
	store := a.db.Workspaces()
	w, err := store.ByUser(ctx, userID)
	if errors.Is(err, workspace.ErrNotFound) {
		return "", errors.Join(errs...)
	}
	if err != nil {
		return "", errors.Join(append(errs, fmt.Errorf("workspace registry: %w", err))...)
	}
	if w.State == workspace.StateStopped {
		return "", errors.Join(errs...)
	}

	var orch workspace.Orchestrator
	switch w.Orchestrator {
	case nomad.OrchestratorName:
		nc, err := nomadClient(a.cfg, getenv)
		if err != nil {
			return "", errors.Join(append(errs, fmt.Errorf("nomad: %w", err))...)
		}
		orch = nomad.New(nomad.Config{Client: nc, Namespace: a.cfg.Nomad.Namespace, Region: a.cfg.Nomad.Region,
			Job: a.cfg.Nomad.Job, WarmPoolJob: a.cfg.Nomad.WarmPoolJob}, a.log.Named("nomad"))
	default: // "local"
		host, _ := os.Hostname()
		if w.Node != host {
			return fmt.Sprintf("the workspace runs on %s: it stops there when idle, or stop it with the admin API", w.Node),
				errors.Join(errs...)
		}
		strat := w.Meta["strategy"]
		if strat == "" {
			if strat, err = strategy(a.cfg); err != nil {
				return "", errors.Join(append(errs, err)...)
			}
		}
		l, err := a.openLocal(ctx, getenv, strat, workspaceBase(a.cfg))
		if err != nil {
			return "", errors.Join(append(errs, fmt.Errorf("workspaces: %w", err))...)
		}
		orch = l
	}
	mgr := workspace.NewManager(workspace.Config{
		Orchestrator: orch, Store: store,
		OnStopped: func(w *workspace.Workspace, reason string) {
			a.audit.Record(audit.Event{EventType: audit.WorkspaceStopped, UserID: w.UserID,
				Metadata: map[string]any{"workspaceId": w.ID, "reason": reason}})
		},
	}, a.log.Named("workspaces"))
	if err := mgr.StopUser(ctx, userID, "its user was deleted"); err != nil {
		errs = append(errs, fmt.Errorf("stop the workspace: %w", err))
	}
	return "", errors.Join(errs...)
}

// workspaceBase is the users' base path of the local orchestrator, as the
// gateway chooses it.
func workspaceBase(cfg *config.Config) string {
	if os.Geteuid() == 0 && cfg.SourceOf("multi-user.isolation.base-path").String() == "default" {
		return rootBasePath
	}
	return cfg.MultiUser.Isolation.BasePath
}
