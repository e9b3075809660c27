package nomad

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
)

// dispatchPayloadSizeLimit is Nomad's limit on a dispatch payload.
const dispatchPayloadSizeLimit = 16 * 1024

// Job types the fake accepts.
var jobTypes = []string{api.JobTypeBatch, api.JobTypeService, api.JobTypeSysbatch}

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	ns, ok := s.namespace(r)
	if !ok || ns == "*" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("nonexistent namespace %q", ns))
		return
	}
	var req api.JobRegisterRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	if req.Job == nil {
		writeError(w, http.StatusBadRequest, "Job must be specified")
		return
	}
	if id := r.PathValue("id"); id != "" && req.Job.ID != nil && *req.Job.ID != id {
		writeError(w, http.StatusBadRequest, "Job ID does not match name")
		return
	}
	if req.Job.Namespace == nil || *req.Job.Namespace == "" {
		req.Job.Namespace = &ns
	}
	// Mounting a host volume needs its own capability, besides
	// submit-job (Nomad's Job.Register checks it too).
	tok := requestACL(r)
	for _, tg := range req.Job.TaskGroups {
		for _, v := range tg.Volumes {
			if v != nil && v.Type == "host" && !tok.allowHostVolume(v.Source, v.ReadOnly) {
				writeError(w, http.StatusForbidden, "Permission denied")
				return
			}
		}
	}
	resp, err := s.register(req.Job)
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSONValue(w, resp.JobModifyIndex, resp)
}

func writeJSONValue(w http.ResponseWriter, index uint64, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, index, b)
}

// register stores a job, a new version of it if it exists, and schedules
// it unless it is parameterized (or periodic, which the fake does not run).
// Its answer carries registration's warnings.
func (s *Server) register(in *api.Job) (*api.JobRegisterResponse, error) {
	job := clone(in)
	if job.ID == nil || *job.ID == "" {
		return nil, errorf(http.StatusBadRequest, "Missing job ID")
	}
	if job.Namespace == nil || *job.Namespace == "" {
		job.Namespace = new("default")
	}
	job.Canonicalize()
	*job.Region = s.opts.Region
	if p := job.ParameterizedJob; p != nil && p.Payload == "" {
		p.Payload = "optional"
	}

	s.mu.Lock()
	warnings, err := s.validateJobLocked(job)
	if err != nil {
		s.mu.Unlock()
		return nil, errorf(http.StatusBadRequest, "%s", err.Error())
	}
	key := jobKey{*job.Namespace, *job.ID}
	old := s.jobs[key]
	if old != nil && old.IsParameterized() != job.IsParameterized() {
		s.mu.Unlock()
		return nil, errorf(http.StatusBadRequest, "cannot update parameterized job to being non-parameterized or back")
	}
	idx := s.bumpLocked("jobs")
	job.CreateIndex, job.ModifyIndex, job.JobModifyIndex = new(idx), new(idx), new(idx)
	if old != nil {
		job.CreateIndex = new(*old.CreateIndex)
		job.Version = new(*old.Version + 1)
	}
	job.SubmitTime = new(time.Now().UnixNano())
	job.Stop = new(false)
	job.Status = new(jobStatusPending)
	if job.IsParameterized() || job.IsPeriodic() {
		job.Status = new(jobStatusRunning)
	}
	s.jobs[key] = job
	resp := &api.JobRegisterResponse{JobModifyIndex: idx, Warnings: warningsText(warnings)}
	var evalID string
	if !job.IsParameterized() && !job.IsPeriodic() {
		ev := s.newEvalLocked(job, "job-register")
		resp.EvalID, resp.EvalCreateIndex = ev.ID, ev.CreateIndex
		evalID = ev.ID
	}
	s.mu.Unlock()
	if evalID != "" {
		s.scheduleAsync(evalID)
	}
	return resp, nil
}

// validateResources is the part of Nomad's Resources.Validate a job
// registered through the API can get wrong: memory below Nomad's minimum,
// and a memory_max (other than 0 or -1, no limit) below memory.
func validateResources(r *api.Resources) error {
	if r == nil || r.MemoryMB == nil {
		return nil
	}
	mem := *r.MemoryMB
	if mem < 10 {
		return fmt.Errorf("minimum MemoryMB value is 10; got %d", mem)
	}
	if r.MemoryMaxMB != nil {
		if mm := *r.MemoryMaxMB; mm != 0 && mm != -1 && mm < mem {
			return fmt.Errorf("MemoryMaxMB value (%d) should be larger than MemoryMB value (%d)", mm, mem)
		}
	}
	return nil
}

// escapes reports whether a path relative to a task's local/ leaves the
// allocation directory, as Nomad's PathEscapesAllocDir("task/local/", p).
func escapes(p string) bool {
	if strings.HasPrefix(p, "/") {
		return true
	}
	depth := 2 // <alloc>/<task>/local
	for _, part := range strings.Split(p, "/") {
		switch part {
		case "", ".":
		case "..":
			depth--
		default:
			depth++
		}
		if depth < 0 {
			return true
		}
	}
	return false
}

func (s *Server) handleJobInfo(w http.ResponseWriter, r *http.Request) {
	ns, _ := s.namespace(r)
	id := r.PathValue("id")
	s.blockingQuery(w, r, func() (any, uint64, error) {
		job := s.jobs[jobKey{ns, id}]
		if job == nil {
			return nil, 0, errorf(http.StatusNotFound, "job not found")
		}
		return s.withStatusLocked(job), *job.ModifyIndex, nil
	})
}

// withStatusLocked returns a copy of job with its current status.
func (s *Server) withStatusLocked(job *api.Job) *api.Job {
	out := clone(job)
	out.Status = new(s.jobStatusLocked(job))
	return out
}

// jobStatusLocked is Nomad's job status: running while any allocation
// runs, pending while one waits to, dead when all have ended.
func (s *Server) jobStatusLocked(job *api.Job) string {
	if job.IsParameterized() || job.IsPeriodic() {
		if *job.Stop {
			return jobStatusDead
		}
		return jobStatusRunning
	}
	running, pending := false, false
	for _, ar := range s.allocs {
		a := ar.alloc
		if a.Namespace != *job.Namespace || a.JobID != *job.ID || terminal(a.ClientStatus) {
			continue
		}
		if a.ClientStatus == api.AllocClientStatusRunning {
			running = true
		} else {
			pending = true
		}
	}
	for _, ev := range s.evals {
		if ev.Namespace == *job.Namespace && ev.JobID == *job.ID && (ev.Status == "pending" || ev.Status == "blocked") {
			pending = true
		}
	}
	switch {
	case running:
		return jobStatusRunning
	case pending && !*job.Stop:
		return jobStatusPending
	default:
		return jobStatusDead
	}
}

func (s *Server) handleJobsList(w http.ResponseWriter, r *http.Request) {
	ns, ok := s.namespace(r)
	prefix := r.URL.Query().Get("prefix")
	s.blockingQuery(w, r, func() (any, uint64, error) {
		out := []*api.JobListStub{}
		if !ok {
			return out, s.tables["jobs"], nil
		}
		for key, job := range s.jobs {
			if (ns != "*" && key.ns != ns) || !strings.HasPrefix(key.id, prefix) {
				continue
			}
			out = append(out, &api.JobListStub{
				ID: *job.ID, ParentID: *job.ParentID, Name: *job.Name, Namespace: *job.Namespace,
				Datacenters: job.Datacenters, Type: *job.Type, Priority: *job.Priority,
				Periodic: job.IsPeriodic(), ParameterizedJob: job.IsParameterized(), Stop: *job.Stop,
				Status: s.jobStatusLocked(job), CreateIndex: *job.CreateIndex, ModifyIndex: *job.ModifyIndex,
				JobModifyIndex: *job.JobModifyIndex, SubmitTime: *job.SubmitTime, Meta: job.Meta,
			})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
		return out, max(s.tables["jobs"], s.tables["allocs"]), nil
	})
}

func (s *Server) handleDeregister(w http.ResponseWriter, r *http.Request) {
	ns, _ := s.namespace(r)
	id := r.PathValue("id")
	purge := r.URL.Query().Get("purge") == "true"
	s.mu.Lock()
	job := s.jobs[jobKey{ns, id}]
	if job == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "job not found")
		return
	}
	var stop []*allocRun
	for _, ar := range s.allocs {
		if ar.alloc.Namespace == ns && ar.alloc.JobID == id && !terminal(ar.alloc.ClientStatus) {
			stop = append(stop, ar)
		}
	}
	for _, ev := range s.evals {
		if ev.Namespace == ns && ev.JobID == id && (ev.Status == "pending" || ev.Status == "blocked") {
			ev.Status, ev.StatusDescription = "canceled", "job deregistered"
			ev.ModifyIndex = s.bumpLocked("evals")
		}
	}
	if purge {
		delete(s.jobs, jobKey{ns, id})
	} else {
		job.Stop = new(true)
	}
	idx := s.bumpLocked("jobs")
	if !purge {
		job.ModifyIndex, job.JobModifyIndex = new(idx), new(idx)
	}
	ev := s.newEvalLocked(job, "job-deregister")
	ev.Status = "complete"
	for _, ar := range stop {
		s.setDesiredLocked(ar, "stop", "alloc not needed due to job update")
	}
	s.mu.Unlock()
	for _, ar := range stop {
		go s.stopAlloc(ar, "job deregistered")
	}
	writeJSONValue(w, idx, &api.JobDeregisterResponse{EvalID: ev.ID, EvalCreateIndex: ev.CreateIndex, JobModifyIndex: idx})
}

// handleDispatch derives a child job from a parameterized job, as Nomad's
// Job.Dispatch does, with its checks and messages.
func (s *Server) handleDispatch(w http.ResponseWriter, r *http.Request) {
	ns, _ := s.namespace(r)
	id := r.PathValue("id")
	var req api.JobDispatchRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	if req.JobID != "" && req.JobID != id {
		writeError(w, http.StatusBadRequest, "Job ID does not match request")
		return
	}
	token := r.URL.Query().Get("idempotency_token")

	s.mu.Lock()
	parent := s.jobs[jobKey{ns, id}]
	var err error
	switch {
	case parent == nil:
		err = errorf(http.StatusNotFound, "parameterized job not found")
	case !parent.IsParameterized():
		err = errorf(http.StatusBadRequest, "Specified job %q is not a parameterized job", id)
	case *parent.Stop:
		err = errorf(http.StatusBadRequest, "Specified job %q is stopped", id)
	default:
		err = validateDispatch(&req, parent.ParameterizedJob)
	}
	if err != nil {
		s.mu.Unlock()
		writeErr(w, err)
		return
	}
	if token != "" {
		for _, j := range s.jobs {
			if *j.Namespace == ns && *j.ParentID == id && j.DispatchIdempotencyToken != nil && *j.DispatchIdempotencyToken == token {
				resp := &api.JobDispatchResponse{DispatchedJobID: *j.ID, JobCreateIndex: *j.CreateIndex}
				s.mu.Unlock()
				writeJSONValue(w, *j.ModifyIndex, resp)
				return
			}
		}
	}
	child := clone(parent)
	child.ID = new(dispatchedID(id, req.IdPrefixTemplate, time.Now()))
	child.Name = new(*child.ID)
	child.ParentID = new(id)
	child.Dispatched = true
	child.DispatchIdempotencyToken = new(token)
	child.Payload = req.Payload
	child.Status, child.StatusDescription = new(jobStatusPending), new("")
	if child.Meta == nil {
		child.Meta = map[string]string{}
	}
	for k, v := range req.Meta {
		child.Meta[k] = v
	}
	idx := s.bumpLocked("jobs")
	child.CreateIndex, child.ModifyIndex, child.JobModifyIndex = new(idx), new(idx), new(idx)
	child.Version, child.SubmitTime = new(uint64(0)), new(time.Now().UnixNano())
	s.jobs[jobKey{ns, *child.ID}] = child
	ev := s.newEvalLocked(child, "job-register")
	s.mu.Unlock()
	s.scheduleAsync(ev.ID)
	writeJSONValue(w, ev.CreateIndex, &api.JobDispatchResponse{
		DispatchedJobID: *child.ID, EvalID: ev.ID, EvalCreateIndex: ev.CreateIndex, JobCreateIndex: idx,
	})
}

// validateDispatch is Nomad's validateDispatchRequest, answering 400.
func validateDispatch(req *api.JobDispatchRequest, p *api.ParameterizedJobConfig) error {
	has := len(req.Payload) != 0
	switch {
	case p.Payload == "required" && !has:
		return errorf(http.StatusBadRequest, "Payload is not provided but required by parameterized job")
	case p.Payload == "forbidden" && has:
		return errorf(http.StatusBadRequest, "Payload provided but forbidden by parameterized job")
	case len(req.Payload) > dispatchPayloadSizeLimit:
		return errorf(http.StatusBadRequest, "Payload exceeds maximum size; %d > %d", len(req.Payload), dispatchPayloadSizeLimit)
	}
	var unpermitted, missing []string
	for k := range req.Meta {
		if !slices.Contains(p.MetaRequired, k) && !slices.Contains(p.MetaOptional, k) {
			unpermitted = append(unpermitted, k)
		}
	}
	if len(unpermitted) > 0 {
		sort.Strings(unpermitted)
		return errorf(http.StatusBadRequest, "Dispatch request included unpermitted metadata keys: %v", unpermitted)
	}
	for _, k := range p.MetaRequired {
		if _, ok := req.Meta[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return errorf(http.StatusBadRequest, "Dispatch did not provide required meta keys: %v", missing)
	}
	return nil
}

// dispatchedID is Nomad's structs.DispatchedID.
func dispatchedID(parent, prefix string, t time.Time) string {
	u := uuid()[:8]
	if prefix != "" {
		return fmt.Sprintf("%s/dispatch-%s-%d-%s", parent, prefix, t.Unix(), u)
	}
	return fmt.Sprintf("%s/dispatch-%d-%s", parent, t.Unix(), u)
}

func (s *Server) handleJobAllocations(w http.ResponseWriter, r *http.Request) {
	ns, _ := s.namespace(r)
	id := r.PathValue("id")
	// ?all=true (every version's allocations) changes nothing: the fake
	// does not update jobs in place.
	s.blockingQuery(w, r, func() (any, uint64, error) {
		out := []*api.AllocationListStub{}
		var index uint64
		for _, ar := range s.allocs {
			a := ar.alloc
			if a.Namespace != ns || a.JobID != id {
				continue
			}
			out = append(out, stub(a))
			index = max(index, a.ModifyIndex)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].CreateIndex > out[j].CreateIndex })
		if index == 0 {
			// No allocation yet: the job's own index, so that the query
			// blocks until one of ITS allocations is written (Nomad's
			// watch sets are per query too).
			if job := s.jobs[jobKey{ns, id}]; job != nil {
				index = *job.ModifyIndex
			} else {
				index = s.tables["allocs"]
			}
		}
		return out, index, nil
	})
}

func stub(a *api.Allocation) *api.AllocationListStub {
	c := clone(a)
	return &api.AllocationListStub{
		ID: c.ID, EvalID: c.EvalID, Name: c.Name, Namespace: c.Namespace, NodeID: c.NodeID, NodeName: c.NodeName,
		JobID: c.JobID, JobType: *c.Job.Type, JobVersion: *c.Job.Version, TaskGroup: c.TaskGroup,
		AllocatedResources: c.AllocatedResources, DesiredStatus: c.DesiredStatus, DesiredDescription: c.DesiredDescription,
		ClientStatus: c.ClientStatus, ClientDescription: c.ClientDescription, TaskStates: c.TaskStates,
		FollowupEvalID: c.FollowupEvalID, NextAllocation: c.NextAllocation,
		CreateIndex: c.CreateIndex, ModifyIndex: c.ModifyIndex, CreateTime: c.CreateTime, ModifyTime: c.ModifyTime,
	}
}

func (s *Server) handleAllocation(w http.ResponseWriter, r *http.Request) {
	ns, _ := s.namespace(r)
	id := r.PathValue("id")
	s.blockingQuery(w, r, func() (any, uint64, error) {
		ar := s.allocs[id]
		if ar == nil || (ns != "*" && ar.alloc.Namespace != ns) {
			return nil, 0, errorf(http.StatusNotFound, "alloc not found")
		}
		return ar.alloc, ar.alloc.ModifyIndex, nil
	})
}

func (s *Server) handleJobEvaluations(w http.ResponseWriter, r *http.Request) {
	ns, _ := s.namespace(r)
	id := r.PathValue("id")
	s.blockingQuery(w, r, func() (any, uint64, error) {
		out := []*api.Evaluation{}
		var index uint64
		for _, ev := range s.evals {
			if ev.Namespace == ns && ev.JobID == id {
				out = append(out, ev)
				index = max(index, ev.ModifyIndex)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].CreateIndex > out[j].CreateIndex })
		if index == 0 {
			index = s.tables["evals"]
		}
		return out, index, nil
	})
}

func (s *Server) handleEvaluation(w http.ResponseWriter, r *http.Request) {
	ns, _ := s.namespace(r)
	id := r.PathValue("id")
	s.blockingQuery(w, r, func() (any, uint64, error) {
		ev := s.evals[id]
		if ev == nil || (ns != "*" && ev.Namespace != ns) {
			return nil, 0, errorf(http.StatusNotFound, "eval not found")
		}
		return ev, ev.ModifyIndex, nil
	})
}

// handleEvaluations lists evaluations; of Nomad's filter expressions it
// understands only `Status == "<status>"`.
func (s *Server) handleEvaluations(w http.ResponseWriter, r *http.Request) {
	ns, _ := s.namespace(r)
	var status string
	if f := strings.TrimSpace(r.URL.Query().Get("filter")); f != "" {
		v, ok := strings.CutPrefix(f, "Status ==")
		v = strings.TrimSpace(v)
		if !ok || len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("failed to read filter expression: the fake Nomad understands only Status == \"...\", got %q", f))
			return
		}
		status = v[1 : len(v)-1]
	}
	if st := r.URL.Query().Get("status"); st != "" {
		status = st
	}
	s.blockingQuery(w, r, func() (any, uint64, error) {
		out := []*api.Evaluation{}
		for _, ev := range s.evals {
			if (ns == "*" || ev.Namespace == ns) && (status == "" || ev.Status == status) {
				out = append(out, ev)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].CreateIndex < out[j].CreateIndex })
		return out, s.tables["evals"], nil
	})
}

// Job statuses.
const (
	jobStatusPending = "pending"
	jobStatusRunning = "running"
	jobStatusDead    = "dead"
)

// handleNode describes the fake's one node.
func (s *Server) handleNode(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.blockingQuery(w, r, func() (any, uint64, error) {
		if id != s.node {
			return nil, 0, errorf(http.StatusNotFound, "node not found")
		}
		return s.nodeLocked(), 1, nil
	})
}

// nodeLocked is the fake's one node, as Nomad describes a client: it
// serves the client API (file system, logs) on the fake's own address.
func (s *Server) nodeLocked() *api.Node {
	attrs := map[string]string{}
	for _, k := range []string{"kernel.name", "cpu.arch", "unique.hostname"} {
		attrs[k], _ = s.nodeAttr("${attr." + k + "}")
	}
	attrs["nomad.version"] = s.opts.Version
	drivers := map[string]*api.DriverInfo{}
	for _, d := range s.opts.Drivers {
		attrs["driver."+d] = "1"
		drivers[d] = &api.DriverInfo{Detected: true, Healthy: true}
	}
	vols := map[string]*api.HostVolumeInfo{}
	for name, p := range s.opts.HostVolumes {
		vols[name] = &api.HostVolumeInfo{Path: p}
	}
	return &api.Node{
		ID: s.node, Name: s.opts.NodeName, Datacenter: s.opts.Datacenter, NodeClass: s.opts.NodeClass,
		NodePool: "default", Attributes: attrs, Meta: s.opts.NodeMeta, Drivers: drivers, HostVolumes: vols,
		Status: "ready", SchedulingEligibility: "eligible", HTTPAddr: s.ln.Addr().String(),
	}
}
