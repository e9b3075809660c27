package local

import (
	"context"
	"errors"

	"github.com/codehub-dev/codehub/internal/cgroup"
	"github.com/codehub-dev/codehub/internal/workspace"
)

var _ workspace.OOMCounter = (*Orchestrator)(nil)

// OOMKills implements workspace.OOMCounter: the oom_kill counter of the
// workspace's cgroup (made at its start, so the count is since then).
// The directory strategy has no cgroup, and counts nothing.
func (o *Orchestrator) OOMKills(_ context.Context, w *workspace.Workspace) (int64, error) {
	if o.cfg.Strategy != StrategyProcess {
		return 0, errors.New("the directory strategy puts workspaces in no cgroup")
	}
	name := w.Meta["cgroup"]
	if name == "" {
		name = o.cgroupName(w)
	}
	g, err := cgroup.Open(name)
	if err != nil {
		return 0, err
	}
	return g.OOMKills()
}
