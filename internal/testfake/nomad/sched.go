package nomad

import (
	"fmt"
	"net"
	"os"
	"path"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/nomad/api"
)

// allocRun is one allocation and the client's work on it. alloc and tasks
// are guarded by Server.mu.
type allocRun struct {
	alloc    *api.Allocation
	cpu, mem int
	dir      string
	tasks    map[string]*taskRun

	stopOnce sync.Once
	stop     chan struct{} // closed when the allocation must stop
}

func (ar *allocRun) signalStop() { ar.stopOnce.Do(func() { close(ar.stop) }) }

func terminal(clientStatus string) bool {
	switch clientStatus {
	case api.AllocClientStatusComplete, api.AllocClientStatusFailed, api.AllocClientStatusLost:
		return true
	}
	return false
}

// newEvalLocked creates a pending evaluation of job.
func (s *Server) newEvalLocked(job *api.Job, trigger string) *api.Evaluation {
	idx := s.bumpLocked("evals")
	now := time.Now().UnixNano()
	ev := &api.Evaluation{
		ID: uuid(), Priority: *job.Priority, Type: *job.Type, TriggeredBy: trigger,
		Namespace: *job.Namespace, JobID: *job.ID, JobModifyIndex: *job.JobModifyIndex,
		Status: "pending", CreateIndex: idx, ModifyIndex: idx, CreateTime: now, ModifyTime: now,
	}
	s.evals[ev.ID] = ev
	return ev
}

// scheduleAsync runs the scheduler on an evaluation, after the request
// that created it has been answered, as Nomad's workers do.
func (s *Server) scheduleAsync(evalID string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.mu.Lock()
		started := s.scheduleLocked(evalID)
		s.mu.Unlock()
		s.launch(started)
	}()
}

// scheduleLocked places what the evaluation's job still needs; what does
// not fit is left to a blocked evaluation.
func (s *Server) scheduleLocked(evalID string) []*allocRun {
	ev := s.evals[evalID]
	if ev == nil || ev.Status != "pending" {
		return nil
	}
	job := s.jobs[jobKey{ev.Namespace, ev.JobID}]
	if job == nil || *job.Stop {
		ev.Status = "complete"
		ev.ModifyIndex = s.bumpLocked("evals")
		return nil
	}
	placed, failed, queued := s.placeLocked(job, ev.ID)
	ev.Status = "complete"
	ev.QueuedAllocations = queued
	if len(failed) > 0 {
		ev.FailedTGAllocs = failed
		blocked := s.newEvalLocked(job, "queued-allocs")
		blocked.Status = "blocked"
		blocked.PreviousEval = ev.ID
		blocked.StatusDescription = "created to place remaining allocations"
		blocked.ClassEligibility = map[string]bool{}
		ev.BlockedEval = blocked.ID
	}
	ev.ModifyTime = time.Now().UnixNano()
	ev.ModifyIndex = s.bumpLocked("evals")
	return placed
}

// unblockLocked retries blocked evaluations, highest priority and oldest
// first (Nomad's order), after capacity changed.
func (s *Server) unblockLocked() []*allocRun {
	var blocked []*api.Evaluation
	for _, ev := range s.evals {
		if ev.Status == "blocked" {
			blocked = append(blocked, ev)
		}
	}
	sort.Slice(blocked, func(i, j int) bool {
		if blocked[i].Priority != blocked[j].Priority {
			return blocked[i].Priority > blocked[j].Priority
		}
		return blocked[i].CreateIndex < blocked[j].CreateIndex
	})
	var started []*allocRun
	for _, ev := range blocked {
		job := s.jobs[jobKey{ev.Namespace, ev.JobID}]
		if job == nil || *job.Stop {
			ev.Status, ev.StatusDescription = "canceled", "job stopped"
			ev.ModifyIndex = s.bumpLocked("evals")
			continue
		}
		placed, failed, _ := s.placeLocked(job, ev.ID)
		started = append(started, placed...)
		if len(failed) == 0 {
			ev.Status, ev.StatusDescription = "complete", ""
			ev.ModifyTime = time.Now().UnixNano()
			ev.ModifyIndex = s.bumpLocked("evals")
		}
	}
	return started
}

// placeLocked creates the allocations job's groups lack, while they fit.
func (s *Server) placeLocked(job *api.Job, evalID string) ([]*allocRun, map[string]*api.AllocationMetric, map[string]int) {
	var placed []*allocRun
	failed := map[string]*api.AllocationMetric{}
	queued := map[string]int{}
	for _, tg := range job.TaskGroups {
		want, have := *tg.Count, 0
		for _, ar := range s.allocs {
			a := ar.alloc
			if a.Namespace == *job.Namespace && a.JobID == *job.ID && a.TaskGroup == *tg.Name &&
				a.DesiredStatus == api.AllocDesiredStatusRun && a.ClientStatus != api.AllocClientStatusFailed {
				have++
			}
		}
		queued[*tg.Name] = 0
		for n := have; n < want; n++ {
			if m := s.feasibleLocked(job, tg); m != nil {
				m.CoalescedFailures = want - n - 1
				failed[*tg.Name] = m
				queued[*tg.Name] = want - n
				break
			}
			placed = append(placed, s.newAllocLocked(job, tg, evalID, n))
		}
	}
	if len(failed) == 0 {
		failed = nil
	}
	return placed, failed, queued
}

// groupResources sums what a group's tasks ask for.
func groupResources(tg *api.TaskGroup) (cpu, mem int) {
	for _, t := range tg.Tasks {
		if t.Resources != nil {
			if t.Resources.CPU != nil {
				cpu += *t.Resources.CPU
			}
			if t.Resources.MemoryMB != nil {
				mem += *t.Resources.MemoryMB
			}
		}
	}
	return cpu, mem
}

// feasibleLocked checks the group against the node as Nomad's feasibility
// checks and bin packing would; nil when it fits, else the metric Nomad
// reports in the evaluation's FailedTGAllocs.
func (s *Server) feasibleLocked(job *api.Job, tg *api.TaskGroup) *api.AllocationMetric {
	// Nomad counts the ready nodes of the datacenters that have some: a
	// datacenter no node is in is not named at all.
	m := &api.AllocationMetric{NodesInPool: 1, NodePool: "default", NodesAvailable: map[string]int{}}
	inDC := len(job.Datacenters) == 0
	for _, dc := range job.Datacenters {
		if ok, _ := path.Match(dc, s.opts.Datacenter); ok {
			inDC = true
		}
	}
	if !inDC {
		return m
	}
	m.NodesAvailable[s.opts.Datacenter] = 1
	m.NodesEvaluated = 1
	for _, t := range tg.Tasks {
		if _, ok := s.nodeAttr("${attr.driver." + t.Driver + "}"); !ok {
			m.NodesFiltered = 1
			m.ConstraintFiltered = map[string]int{"missing drivers": 1}
			return m
		}
	}
	for _, v := range tg.Volumes {
		if v == nil || v.Type != "host" {
			continue
		}
		if _, ok := s.opts.HostVolumes[v.Source]; !ok {
			m.NodesFiltered = 1
			m.ConstraintFiltered = map[string]int{"missing compatible host volumes": 1}
			return m
		}
	}
	cons := append(append([]*api.Constraint{}, job.Constraints...), tg.Constraints...)
	for _, t := range tg.Tasks {
		cons = append(cons, t.Constraints...)
	}
	for _, c := range cons {
		if !s.satisfies(c) {
			m.NodesFiltered = 1
			m.ConstraintFiltered = map[string]int{fmt.Sprintf("%s %s %s", c.LTarget, c.Operand, c.RTarget): 1}
			return m
		}
	}
	cpu, mem := groupResources(tg)
	usedCPU, usedMem := 0, 0
	for _, ar := range s.allocs {
		if !terminal(ar.alloc.ClientStatus) {
			usedCPU += ar.cpu
			usedMem += ar.mem
		}
	}
	var dim string
	switch {
	case s.cpu > 0 && usedCPU+cpu > s.cpu:
		dim = "cpu"
	case s.mem > 0 && usedMem+mem > s.mem:
		dim = "memory"
	default:
		return nil
	}
	m.NodesExhausted = 1
	m.ClassExhausted = map[string]int{s.opts.NodeClass: 1}
	m.DimensionExhausted = map[string]int{dim: 1}
	return m
}

// nodeAttr resolves a constraint target: a literal, or ${node.*},
// ${attr.*} or ${meta.*} of the fake node.
func (s *Server) nodeAttr(target string) (string, bool) {
	key, ok := strings.CutPrefix(target, "${")
	if !ok || !strings.HasSuffix(key, "}") {
		return target, true
	}
	key = strings.TrimSuffix(key, "}")
	switch key {
	case "node.datacenter":
		return s.opts.Datacenter, true
	case "node.unique.name":
		return s.opts.NodeName, true
	case "node.unique.id":
		return s.nodeID(), true
	case "node.class":
		return s.opts.NodeClass, true
	case "node.pool":
		return "default", true
	case "node.region":
		return s.opts.Region, true
	case "attr.kernel.name":
		return runtime.GOOS, true
	case "attr.cpu.arch":
		return runtime.GOARCH, true
	case "attr.unique.hostname":
		h, _ := os.Hostname()
		return h, true
	}
	if d, ok := strings.CutPrefix(key, "attr.driver."); ok {
		for _, have := range s.opts.Drivers {
			if have == d {
				return "1", true
			}
		}
		return "", false
	}
	if k, ok := strings.CutPrefix(key, "meta."); ok {
		v, ok := s.opts.NodeMeta[k]
		return v, ok
	}
	return "", false
}

func (s *Server) nodeID() string { return s.node }

// satisfies evaluates a constraint's common operators on the fake node.
func (s *Server) satisfies(c *api.Constraint) bool {
	l, lok := s.nodeAttr(c.LTarget)
	r, rok := s.nodeAttr(c.RTarget)
	switch c.Operand {
	case "", "=", "==", "is":
		return lok && rok && l == r
	case "!=", "not":
		return !lok || !rok || l != r
	case "is_set":
		return lok
	case "is_not_set":
		return !lok
	case "regexp":
		re, err := regexp.Compile(r)
		return lok && err == nil && re.MatchString(l)
	case "set_contains", "set_contains_all":
		have := strings.Split(l, ",")
		for _, want := range strings.Split(r, ",") {
			found := false
			for _, h := range have {
				found = found || strings.TrimSpace(h) == strings.TrimSpace(want)
			}
			if !found {
				return false
			}
		}
		return lok
	case "distinct_hosts", "distinct_property":
		return true // one node
	default:
		return false
	}
}

// freePort finds a port nothing listens on.
func freePort(ip string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// newAllocLocked creates a pending allocation of tg with its ports.
func (s *Server) newAllocLocked(job *api.Job, tg *api.TaskGroup, evalID string, n int) *allocRun {
	now := time.Now().UnixNano()
	var ports []api.PortMapping
	var dyn, reserved []api.Port
	for _, nw := range tg.Networks {
		for _, p := range nw.ReservedPorts {
			ports = append(ports, api.PortMapping{Label: p.Label, Value: p.Value, To: p.To, HostIP: s.opts.IP})
			reserved = append(reserved, p)
		}
		for _, p := range nw.DynamicPorts {
			v, err := freePort(s.opts.IP)
			if err != nil {
				s.log.Error("no free port", "error", err)
			}
			to := p.To
			if to == 0 {
				to = v
			}
			ports = append(ports, api.PortMapping{Label: p.Label, Value: v, To: to, HostIP: s.opts.IP})
			dyn = append(dyn, api.Port{Label: p.Label, Value: v, To: to})
		}
	}
	res := &api.AllocatedResources{Tasks: map[string]*api.AllocatedTaskResources{}, Shared: api.AllocatedSharedResources{Ports: ports}}
	if len(ports) > 0 {
		res.Shared.Networks = []*api.NetworkResource{{Mode: "host", IP: s.opts.IP, DynamicPorts: dyn, ReservedPorts: reserved}}
	}
	states := map[string]*api.TaskState{}
	for _, t := range tg.Tasks {
		r := &api.AllocatedTaskResources{}
		if t.Resources != nil {
			if t.Resources.CPU != nil {
				r.Cpu.CpuShares = int64(*t.Resources.CPU)
			}
			if t.Resources.MemoryMB != nil {
				r.Memory.MemoryMB = int64(*t.Resources.MemoryMB)
			}
			// Without oversubscription Nomad's scheduler allocates no
			// memory_max: the task's limit is its memory.
			if t.Resources.MemoryMaxMB != nil && s.scheduler.MemoryOversubscriptionEnabled {
				r.Memory.MemoryMaxMB = int64(*t.Resources.MemoryMaxMB)
			}
		}
		res.Tasks[t.Name] = r
		states[t.Name] = &api.TaskState{State: "pending", Events: []*api.TaskEvent{
			event(api.TaskReceived, "Task received by client"),
		}}
	}
	idx := s.bumpLocked("allocs")
	a := &api.Allocation{
		ID: uuid(), Namespace: *job.Namespace, EvalID: evalID,
		Name:   fmt.Sprintf("%s.%s[%d]", *job.ID, *tg.Name, n),
		NodeID: s.nodeID(), NodeName: s.opts.NodeName, JobID: *job.ID, Job: clone(job), TaskGroup: *tg.Name,
		AllocatedResources: res, DesiredStatus: api.AllocDesiredStatusRun,
		ClientStatus: api.AllocClientStatusPending, TaskStates: states,
		CreateIndex: idx, ModifyIndex: idx, AllocModifyIndex: idx, CreateTime: now, ModifyTime: now,
	}
	cpu, mem := groupResources(tg)
	ar := &allocRun{alloc: a, cpu: cpu, mem: mem, tasks: map[string]*taskRun{}, stop: make(chan struct{})}
	s.allocs[a.ID] = ar
	return ar
}

func event(typ, display string) *api.TaskEvent {
	return &api.TaskEvent{Type: typ, Time: time.Now().UnixNano(), DisplayMessage: display, Message: display, Details: map[string]string{}}
}

// updateLocked records a change of ar's allocation.
func (s *Server) updateLocked(ar *allocRun) {
	a := ar.alloc
	a.ModifyIndex = s.bumpLocked("allocs")
	a.ModifyTime = time.Now().UnixNano()
}

// taskEventLocked appends an event to a task and, when state is set,
// moves the task to it; the allocation's client status follows.
func (s *Server) taskEventLocked(ar *allocRun, task string, ev *api.TaskEvent, state string, failed bool) {
	ts := ar.alloc.TaskStates[task]
	if ts == nil {
		ts = &api.TaskState{}
		ar.alloc.TaskStates[task] = ts
	}
	if ev != nil {
		ts.Events = append(ts.Events, ev)
	}
	if state != "" && ts.State != state {
		ts.State = state
		switch state {
		case "running":
			ts.StartedAt = time.Now().UTC()
		case "dead":
			ts.FinishedAt = time.Now().UTC()
			ts.Failed = failed
		}
	}
	wasTerminal := terminal(ar.alloc.ClientStatus)
	ar.alloc.ClientStatus, ar.alloc.ClientDescription = clientStatus(ar.alloc)
	s.updateLocked(ar)
	if !wasTerminal && terminal(ar.alloc.ClientStatus) {
		s.unblockAfterLocked()
	}
}

// unblockAfterLocked places blocked evaluations once the lock is released
// (capacity was freed).
func (s *Server) unblockAfterLocked() {
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.mu.Lock()
		started := s.unblockLocked()
		s.mu.Unlock()
		s.launch(started)
	}()
}

// clientStatus derives an allocation's client status from its tasks'.
func clientStatus(a *api.Allocation) (string, string) {
	pending, running, dead, failed := 0, 0, 0, 0
	for _, ts := range a.TaskStates {
		switch ts.State {
		case "pending":
			pending++
		case "running":
			running++
		case "dead":
			dead++
			if ts.Failed {
				failed++
			}
		}
	}
	// Nomad's getClientStatus: failed, then running, then pending.
	switch {
	case failed > 0:
		return api.AllocClientStatusFailed, "Failed tasks"
	case running > 0:
		return api.AllocClientStatusRunning, "Tasks are running"
	case pending > 0:
		return api.AllocClientStatusPending, "No tasks have started"
	default:
		return api.AllocClientStatusComplete, "All tasks have completed"
	}
}

// setDesiredLocked records what the server wants of an allocation.
func (s *Server) setDesiredLocked(ar *allocRun, status, desc string) {
	ar.alloc.DesiredStatus, ar.alloc.DesiredDescription = status, desc
	s.updateLocked(ar)
	ar.alloc.AllocModifyIndex = ar.alloc.ModifyIndex
}

// launch starts the client's work on newly placed allocations.
func (s *Server) launch(runs []*allocRun) {
	for _, ar := range runs {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.runAlloc(ar)
		}()
	}
}
