package nomad

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/nomad/api"
)

// Phrases for the person waiting.
const (
	phasePlacing  = "Waiting for Nomad to place your workspace"
	phaseCapacity = "Waiting for capacity: all nodes are busy"
	phaseImage    = "Downloading the workspace image"
	phaseMoving   = "Nomad is moving your workspace to another node"
	phaseRestart  = "Your workspace failed to start; Nomad is restarting it"
)

// How long one blocking query waits for a change.
const (
	// placingWait while the scheduler works: then the evaluations say why
	// nothing is placed yet.
	placingWait = 2 * time.Second
	// queuedWait while queued for capacity: then the queue position is
	// refreshed.
	queuedWait = 15 * time.Second
	// allocWait once placed: the allocation changes as the client works.
	allocWait = time.Minute
)

// progress tells the person waiting what happens, once per change.
type progress struct {
	f    func(string)
	last string
}

func newProgress(f func(string)) *progress { return &progress{f: f} }

func (p *progress) say(s string) {
	if s == p.last {
		return
	}
	p.last = s
	if p.f != nil {
		p.f(s)
	}
}

// sentence is an error as a phrase: its first letter capitalized.
func sentence(err error) string {
	s := err.Error()
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}

// waitRunning follows the dispatched job until its allocation runs. It
// first waits (blocking query) for the scheduler's verdict on the
// dispatch's evaluation, so that a queued or unplaceable start is told at
// once; then it blocks on the job's allocations. While none is placed,
// the job's evaluations say why (queued for capacity and where, or
// unplaceable), read again when a wait ends without a change or at most
// once a second when other changes wake the query.
// datacenters are the job's, to name them when no node is in any.
func (o *Orchestrator) waitRunning(ctx context.Context, jobID string, datacenters []string, d *api.JobDispatchResponse, p *progress) (*api.Allocation, error) {
	p.say(phasePlacing)
	if d.EvalID != "" {
		ev, _, err := o.evals.Info(d.EvalID, o.query(ctx, d.EvalCreateIndex, placingWait))
		if err != nil {
			return nil, o.waitError(ctx, p, "read the dispatch's evaluation", err)
		}
		if len(ev.FailedTGAllocs) > 0 {
			if err := o.explainPlacement(ctx, jobID, datacenters, p); err != nil {
				return nil, err
			}
		}
	}
	index, wait := d.JobCreateIndex, placingWait
	var evalsRead time.Time
	for {
		stubs, qm, err := o.jobs.Allocations(jobID, true, o.query(ctx, index, wait))
		if err != nil {
			return nil, o.waitError(ctx, p, "follow the workspace's allocation", err)
		}
		unchanged := qm.LastIndex == index
		index = qm.LastIndex
		if a := latest(stubs); a != nil {
			return o.waitAlloc(ctx, a.ID, p)
		}
		if !unchanged && time.Since(evalsRead) < time.Second {
			continue // woken by another job's change: block again
		}
		evalsRead = time.Now()
		if err := o.explainPlacement(ctx, jobID, datacenters, p); err != nil {
			return nil, err
		}
		wait = placingWait
		if strings.HasPrefix(p.last, phaseCapacity) {
			wait = queuedWait
		}
	}
}

// explainPlacement reads the job's evaluations and tells why nothing is
// placed yet, or fails when nothing ever will be.
func (o *Orchestrator) explainPlacement(ctx context.Context, jobID string, datacenters []string, p *progress) error {
	evals, _, err := o.jobs.Evaluations(jobID, o.query(ctx, 0, 0))
	if err != nil {
		return o.waitError(ctx, p, "read the workspace job's evaluations", err)
	}
	phase, err := o.placement(ctx, evals, datacenters)
	if err != nil {
		return err
	}
	p.say(phase)
	return nil
}

// waitError explains why a wait ended: the caller's deadline (with what
// was being waited for), or Nomad.
func (o *Orchestrator) waitError(ctx context.Context, p *progress, op string, err error) error {
	if ctx.Err() == nil {
		return apiError(op, err)
	}
	if strings.HasPrefix(p.last, phaseCapacity) {
		return fmt.Errorf("%w: still queued when the wait ended (%s)", ErrNoCapacity, strings.TrimPrefix(p.last, phaseCapacity+" "))
	}
	last := p.last
	if last != "" {
		last = strings.ToLower(last[:1]) + last[1:]
	}
	return fmt.Errorf("the workspace did not start in time (%s): %w", last, ctx.Err())
}

// latest is the allocation to follow: the newest that has not ended, else
// the newest.
func latest(stubs []*api.AllocationListStub) *api.AllocationListStub {
	var live, any *api.AllocationListStub
	for _, s := range stubs {
		if any == nil || s.CreateIndex > any.CreateIndex {
			any = s
		}
		if !terminal(s.ClientStatus) && (live == nil || s.CreateIndex > live.CreateIndex) {
			live = s
		}
	}
	if live != nil {
		return live
	}
	return any
}

// placement reads the job's evaluations: still being scheduled, queued
// for capacity (and where in the queue), or never placeable.
func (o *Orchestrator) placement(ctx context.Context, evals []*api.Evaluation, datacenters []string) (string, error) {
	sort.Slice(evals, func(i, j int) bool { return evals[i].CreateIndex > evals[j].CreateIndex })
	var blocked, failed *api.Evaluation
	for _, ev := range evals {
		if ev.Status == "failed" {
			return "", cannotStart(fmt.Errorf("%w: Nomad could not schedule it: %s", ErrUnplaceable, ev.StatusDescription))
		}
		if ev.Status == "blocked" && blocked == nil {
			blocked = ev
		}
		if len(ev.FailedTGAllocs) > 0 && failed == nil {
			failed = ev
		}
	}
	if blocked == nil {
		// Pending, or placed just now: the next allocation query sees it.
		return phasePlacing, nil
	}
	if failed != nil {
		if why := unplaceable(failed.FailedTGAllocs, datacenters); why != "" {
			return "", cannotStart(fmt.Errorf("%w: %s", ErrUnplaceable, why))
		}
	}
	phase := phaseCapacity
	if pos := o.queuePosition(ctx, blocked); pos > 0 {
		phase = fmt.Sprintf("%s (position %d in Nomad's queue)", phaseCapacity, pos)
	}
	return phase, nil
}

// unplaceable says why no node can ever take the groups, or "" when some
// node could once it has room (resources or quota exhausted): then the
// workspace waits in Nomad's queue. datacenters are the job's: Nomad
// names only datacenters that have nodes, so an unknown one (a policy's
// typo) is named from them.
func unplaceable(failed map[string]*api.AllocationMetric, datacenters []string) string {
	groups := make([]string, 0, len(failed))
	for g := range failed {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		m := failed[g]
		if m == nil || m.NodesExhausted > 0 || len(m.DimensionExhausted) > 0 || len(m.QuotaExhausted) > 0 || len(m.ResourcesExhausted) > 0 {
			return ""
		}
	}
	m := failed[groups[0]]
	if m.NodesEvaluated == 0 {
		var dcs []string
		for dc := range m.NodesAvailable {
			dcs = append(dcs, dc)
		}
		sort.Strings(dcs)
		if len(dcs) == 0 {
			dcs = datacenters
		}
		pool := ""
		if m.NodePool != "" {
			pool = " (node pool " + m.NodePool + ")"
		}
		if len(dcs) > 0 {
			return "no ready node in datacenter " + strings.Join(dcs, ", ") + pool
		}
		return "no ready node in the job's datacenters" + pool
	}
	var reasons []string
	for k, n := range m.ConstraintFiltered {
		reasons = append(reasons, fmt.Sprintf("%s (%d of %d nodes)", k, n, m.NodesEvaluated))
	}
	for k, n := range m.ClassFiltered {
		reasons = append(reasons, fmt.Sprintf("node class %q (%d of %d nodes)", k, n, m.NodesEvaluated))
	}
	sort.Strings(reasons)
	if len(reasons) == 0 {
		return fmt.Sprintf("%d of %d nodes were filtered out", m.NodesFiltered, m.NodesEvaluated)
	}
	return "every node was filtered out: " + strings.Join(reasons, "; ")
}

// queuePosition is the blocked evaluation's place among the namespace's
// blocked evaluations, in the order Nomad unblocks them (priority, then
// age); 0 when unknown.
func (o *Orchestrator) queuePosition(ctx context.Context, blocked *api.Evaluation) int {
	q := o.query(ctx, 0, 0)
	q.Filter = `Status == "blocked"`
	evals, _, err := o.evals.List(q)
	if err != nil {
		o.log.Debug("cannot list blocked evaluations", "error", err)
		return 0
	}
	sort.SliceStable(evals, func(i, j int) bool {
		if evals[i].Priority != evals[j].Priority {
			return evals[i].Priority > evals[j].Priority
		}
		return evals[i].CreateIndex < evals[j].CreateIndex
	})
	for i, ev := range evals {
		if ev.ID == blocked.ID {
			return i + 1
		}
	}
	return 0
}

// waitAlloc follows an allocation (blocking queries on it) until its
// agent task runs, fails, or Nomad moves it (then the next allocation).
func (o *Orchestrator) waitAlloc(ctx context.Context, id string, p *progress) (*api.Allocation, error) {
	var index uint64
	for {
		a, qm, err := o.allocs.Info(id, o.query(ctx, index, allocWait))
		if err != nil {
			return nil, o.waitError(ctx, p, "follow the workspace's allocation", err)
		}
		index = qm.LastIndex
		running, err := allocState(a, p)
		if running || err != nil {
			return a, err
		}
		if a.NextAllocation != "" && (terminal(a.ClientStatus) || a.DesiredStatus != api.AllocDesiredStatusRun) {
			p.say(phaseMoving)
			id, index = a.NextAllocation, 0
		}
	}
}

// taskState is the agent task's name and state (the only task's, if the
// job named it otherwise).
func taskState(a *api.Allocation) (string, *api.TaskState) {
	if ts := a.TaskStates[TaskName]; ts != nil {
		return TaskName, ts
	}
	for name, ts := range a.TaskStates {
		return name, ts
	}
	return TaskName, nil
}

// allocState reads an allocation: running, or failed for a reason to tell
// the user, or still on its way (and how far).
func allocState(a *api.Allocation, p *progress) (bool, error) {
	name, ts := taskState(a)
	if a.ClientStatus == api.AllocClientStatusRunning && (ts == nil || ts.State == "running") {
		return true, nil
	}
	if ts != nil {
		for i, e := range ts.Events {
			if e.Type == api.TaskDriverFailure && !terminal(a.ClientStatus) && !gaveUp(ts.Events[i+1:]) {
				// Nomad retries what its driver calls recoverable (a
				// registry that timed out, say) under the restart policy,
				// and says Not Restarting at once for the rest (an image
				// that does not exist): only then is it the end.
				continue
			}
			if err := fatalEvent(e, a, name); err != nil {
				// Nomad gave up, or the agent died while starting: a new
				// dispatch would meet the same (a missing user, volume or
				// binary, an image that does not exist, too little memory).
				return false, cannotStart(err)
			}
		}
	}
	if a.NextAllocation != "" {
		return false, nil
	}
	if terminal(a.ClientStatus) {
		return false, cannotStart(endedError(a, name, ts))
	}
	if a.DesiredStatus != api.AllocDesiredStatusRun {
		return false, fmt.Errorf("%w: Nomad stopped it before it ran (%s)", ErrTaskFailed, a.DesiredDescription)
	}
	p.say(pendingPhase(a, ts))
	return false, nil
}

// gaveUp reports whether Nomad decided not to restart the task in events
// (those after a failure) before restarting it.
func gaveUp(events []*api.TaskEvent) bool {
	for _, e := range events {
		switch e.Type {
		case api.TaskNotRestarting:
			return true
		case api.TaskRestarting, api.TaskStarted:
			return false
		}
	}
	return false
}

func eventMessage(e *api.TaskEvent) string {
	for _, s := range []string{e.DisplayMessage, e.DriverError, e.SetupError, e.ValidationError, e.DownloadError, e.Message} {
		if s != "" {
			return s
		}
	}
	return e.Type
}

// fatalEvent turns the events that doom a start into errors: a start that
// fails this way would only fail again.
func fatalEvent(e *api.TaskEvent, a *api.Allocation, task string) error {
	msg := eventMessage(e)
	switch e.Type {
	case api.TaskDriverFailure:
		lower := strings.ToLower(msg)
		for _, w := range []string{"pull", "image", "manifest", "registry"} {
			if strings.Contains(lower, w) {
				return fmt.Errorf("%w: %s", ErrImagePull, msg)
			}
		}
		return fmt.Errorf("%w: its driver failed on %s: %s", ErrTaskFailed, a.NodeName, msg)
	case api.TaskFailedValidation:
		return fmt.Errorf("%w: the job's %q task is invalid for its driver: %s", ErrTaskFailed, task, msg)
	case api.TaskSetupFailure:
		return fmt.Errorf("%w: Nomad could not set it up on %s: %s", ErrTaskFailed, a.NodeName, msg)
	case api.TaskArtifactDownloadFailed:
		return fmt.Errorf("%w: an artifact could not be downloaded: %s", ErrTaskFailed, msg)
	case api.TaskTerminated:
		return terminatedError(e, a, task)
	}
	return nil
}

// terminatedError explains a task that ended while starting.
func terminatedError(e *api.TaskEvent, a *api.Allocation, task string) error {
	if e.Details["oom_killed"] == "true" || strings.Contains(e.DisplayMessage, "OOM Killed") {
		mem := int64(0)
		if r := a.AllocatedResources; r != nil && r.Tasks[task] != nil {
			mem = max(r.Tasks[task].Memory.MemoryMB, r.Tasks[task].Memory.MemoryMaxMB)
		}
		return fmt.Errorf("%w: it ran out of memory (%d MB)", ErrTaskFailed, mem)
	}
	short := a.ID
	if len(short) > 8 {
		short = short[:8]
	}
	return fmt.Errorf("%w: the agent exited with code %d (see: nomad alloc logs -stderr %s %s)", ErrTaskFailed, e.ExitCode, short, task)
}

// endedError explains an allocation that ended before its agent ran.
func endedError(a *api.Allocation, task string, ts *api.TaskState) error {
	if ts != nil {
		for i := len(ts.Events) - 1; i >= 0; i-- {
			switch e := ts.Events[i]; e.Type {
			case api.TaskTerminated:
				return terminatedError(e, a, task)
			case api.TaskKilled, api.TaskKilling:
				return fmt.Errorf("%w: Nomad stopped it (%s)", ErrTaskFailed, firstOf(a.DesiredDescription, a.ClientDescription))
			}
		}
	}
	return fmt.Errorf("%w: its allocation is %s (%s)", ErrTaskFailed, a.ClientStatus, a.ClientDescription)
}

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// pendingPhase says how far a placed allocation is.
func pendingPhase(a *api.Allocation, ts *api.TaskState) string {
	if ts != nil && len(ts.Events) > 0 {
		e := ts.Events[len(ts.Events)-1]
		msg := strings.ToLower(eventMessage(e))
		retried := retriedFailure(ts.Events)
		switch {
		case e.Type == api.TaskDriverMessage && (strings.Contains(msg, "download") || strings.Contains(msg, "pull")):
			return phaseImage
		case e.Type == api.TaskRestarting && retried != nil:
			return "Retrying: " + truncateMessage(eventMessage(retried))
		case e.Type == api.TaskDriverFailure:
			return "Nomad is deciding whether to retry: " + truncateMessage(eventMessage(e))
		case e.Type == api.TaskRestarting:
			return phaseRestart
		case e.Type == api.TaskDownloadingArtifacts:
			return "Downloading the workspace's files"
		}
	}
	return fmt.Sprintf("Starting your workspace on %s", a.NodeName)
}

// retriedFailure is the driver failure the task's latest restart follows,
// or nil when it follows something else (a crash of the agent).
func retriedFailure(events []*api.TaskEvent) *api.TaskEvent {
	for i := len(events) - 2; i >= 0; i-- {
		switch events[i].Type {
		case api.TaskDriverFailure:
			return events[i]
		case api.TaskTerminated, api.TaskStarted:
			return nil
		}
	}
	return nil
}

// truncateMessage keeps a progress line short.
func truncateMessage(s string) string {
	if r := []rune(s); len(r) > 160 {
		return string(r[:160]) + "…"
	}
	return s
}
