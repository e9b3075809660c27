package nomad

import (
	"context"
	"fmt"

	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/nomad/api"
)

var _ workspace.Recoverer = (*Orchestrator)(nil)

// phaseRecover is said while Nomad restarts a workspace in place.
const phaseRecover = "Nomad is restarting your editor where it ran"

// Recover implements workspace.Recoverer. A workspace's agent that dies is
// restarted in place by its group's restart policy: the same allocation,
// node, port and files, and on exec the chroot already built (13 of the
// 14 s of an exec cold start on a real client). Recover waits for that
// (blocking queries), or, when the agent hangs (Nomad runs it, it does
// not answer), restarts it in place first (alloc-lifecycle). It follows
// the allocation if Nomad moved it, and fails when Nomad gave up on it.
func (o *Orchestrator) Recover(ctx context.Context, w *workspace.Workspace, hung bool, progress func(string)) (workspace.Launched, error) {
	id := w.Meta[MetaAllocID]
	if id == "" {
		return workspace.Launched{}, fmt.Errorf("%w: no allocation is known to restart", ErrTaskFailed)
	}
	p := newProgress(progress)
	a, _, err := o.allocs.Info(id, o.query(ctx, 0, 0))
	switch {
	case isNotFound(err):
		return workspace.Launched{}, fmt.Errorf("%w: its allocation is gone", ErrTaskFailed)
	case err != nil:
		return workspace.Launched{}, apiError("read the workspace's allocation", err)
	}
	name, ts := taskState(a)
	from := 0
	if hung && a.ClientStatus == api.AllocClientStatusRunning && ts != nil && ts.State == "running" {
		from = len(ts.Events)
		if err := o.allocs.Restart(a, name, o.query(ctx, 0, 0)); err != nil {
			return workspace.Launched{}, apiError("restart the workspace's agent in place", err)
		}
	}
	p.say(phaseRecover)
	a, err = o.waitRestarted(ctx, id, from, p)
	if err != nil {
		return workspace.Launched{}, err
	}
	addr, err := allocAddress(a, PortLabel)
	if err != nil {
		return workspace.Launched{}, err
	}
	return workspace.Launched{
		Address:    addr,
		ExternalID: a.JobID,
		Node:       a.NodeName,
		Meta: map[string]string{
			MetaAllocID:    a.ID,
			MetaJobID:      a.JobID,
			MetaDatacenter: o.datacenter(ctx, a),
			MetaNamespace:  a.Namespace,
		},
	}, nil
}

// waitRestarted follows an allocation (blocking queries) until its agent
// task runs after its event number from (a start after a restart asked
// for), or Nomad gives it up; an allocation Nomad replaced is followed to
// its replacement.
func (o *Orchestrator) waitRestarted(ctx context.Context, id string, from int, p *progress) (*api.Allocation, error) {
	var index uint64
	for {
		a, qm, err := o.allocs.Info(id, o.query(ctx, index, allocWait))
		switch {
		case isNotFound(err):
			return nil, fmt.Errorf("%w: its allocation is gone", ErrTaskFailed)
		case err != nil:
			return nil, o.waitError(ctx, p, "follow the workspace's allocation", err)
		}
		index = qm.LastIndex
		_, ts := taskState(a)
		if a.ClientStatus == api.AllocClientStatusRunning && ts != nil && ts.State == "running" && startedSince(ts.Events, from) {
			return a, nil
		}
		if terminal(a.ClientStatus) || a.DesiredStatus != api.AllocDesiredStatusRun {
			if a.NextAllocation != "" {
				p.say(phaseMoving)
				return o.waitAlloc(ctx, a.NextAllocation, p)
			}
			why := a.ClientDescription
			if ts != nil && len(ts.Events) > 0 {
				why = eventMessage(ts.Events[len(ts.Events)-1])
			}
			return nil, fmt.Errorf("%w: Nomad gave up restarting it (%s)", ErrTaskFailed, why)
		}
		if ts != nil && len(ts.Events) > 0 {
			if e := ts.Events[len(ts.Events)-1]; e.Type == api.TaskRestarting {
				p.say(phaseRecover)
			}
		}
	}
}

// startedSince reports whether the task started at or after event from.
func startedSince(events []*api.TaskEvent, from int) bool {
	for _, e := range events[min(from, len(events)):] {
		if e.Type == api.TaskStarted {
			return true
		}
	}
	return from == 0
}
