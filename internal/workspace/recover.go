package workspace

import (
	"context"
	"fmt"
	"time"
)

// recoverOrRestart brings back a workspace whose agent stopped answering:
// in place when the orchestrator can (a Recoverer, for a user's
// workspace), else by stopping it and starting it again after a backoff
// (crashed). hung says the orchestrator still runs the agent.
func (m *Manager) recoverOrRestart(ctx context.Context, w *Workspace, hung bool, cause error) {
	r, ok := m.orch.(Recoverer)
	if !ok || w.UserID == "" {
		m.crashed(ctx, w, cause)
		return
	}
	// The recovery is the user's start: a request for their workspace
	// joins it instead of starting another.
	m.sf.DoChan(w.UserID, func() (any, error) { return m.recoverInPlace(ctx, r, w, hung, cause) })
}

// recoverInPlace is recoverOrRestart's work, under the user's single
// flight.
func (m *Manager) recoverInPlace(ctx context.Context, r Recoverer, w *Workspace, hung bool, cause error) (*Workspace, error) {
	m.forget(w)
	rec, err := m.store.Update(ctx, w.ID, func(x *Workspace) error {
		if x.State != StateRunning && x.State != StateStarting {
			return ErrConflict // stopped meanwhile: nothing to bring back
		}
		x.State, x.LastError = StateStarting, cause.Error()
		return nil
	})
	if err != nil {
		return nil, err
	}
	began := m.cfg.Now()
	m.log.Warn("workspace stopped answering; restarting it in place", "workspace", w.ID, "user", w.UserID, "cause", cause, "hung", hung)
	m.setProgress(w.UserID, StateStarting, "Your editor stopped unexpectedly and is restarting", 0, "")
	rctx, cancel := context.WithTimeout(ctx, m.cfg.ReadyTimeout)
	defer cancel()
	l, err := r.Recover(rctx, rec.Clone(), hung, func(phase string) { m.setProgress(w.UserID, StateStarting, phase, 0, "") })
	if err == nil {
		rec, err = m.store.Update(ctx, w.ID, func(x *Workspace) error {
			x.Address, x.Meta, x.Restarts, x.LastError = l.Address, l.Meta, x.Restarts+1, ""
			if l.ExternalID != "" {
				x.ExternalID = l.ExternalID
			}
			if l.Node != "" {
				x.Node = l.Node
			}
			return nil
		})
	}
	if err == nil {
		err = m.waitHealthy(rctx, rec)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err() // shutting down: the next gateway decides
		}
		m.crashed(ctx, rec, fmt.Errorf("%v; restarting it in place failed: %w", cause, err))
		return nil, fmt.Errorf("%w: %v", ErrStarting, err)
	}
	m.mu.Lock()
	m.startedBy[w.ID] = true
	m.mu.Unlock()
	m.log.Info("workspace restarted in place", "workspace", w.ID, "user", w.UserID, "took", m.cfg.Now().Sub(began).Round(time.Millisecond))
	return m.markRunning(ctx, rec)
}
