package nomad

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// handleParse is PUT /v1/jobs/parse: the job specification as this
// version's parser reads it.
func (s *Server) handleParse(w http.ResponseWriter, r *http.Request) {
	var req api.JobsParseRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	if req.Variables != "" {
		writeError(w, http.StatusBadRequest, "the fake Nomad's parser does not take HCL2 variables")
		return
	}
	job, err := ParseJob("input.hcl", []byte(req.JobHCL), s.opts.Version)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.Canonicalize {
		job.Canonicalize()
	}
	writeJSONValue(w, 1, job)
}

// handleValidate is PUT /v1/validate/job: the checks of a registration,
// answered in the body (200) as Nomad does.
func (s *Server) handleValidate(w http.ResponseWriter, r *http.Request) {
	var req api.JobValidateRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	resp := &api.JobValidateResponse{}
	if req.Job == nil {
		resp.Error = "Job must be specified"
		resp.ValidationErrors = []string{resp.Error}
		writeJSONValue(w, 1, resp)
		return
	}
	job := clone(req.Job)
	if job.Namespace == nil || *job.Namespace == "" {
		job.Namespace = new("default")
	}
	job.Canonicalize()
	s.mu.Lock()
	warnings, err := s.validateJobLocked(job)
	s.mu.Unlock()
	resp.Warnings = warningsText(warnings)
	if err != nil {
		resp.Error = err.Error()
		resp.ValidationErrors = validationErrors(err)
	}
	writeJSONValue(w, 1, resp)
}

// handleAgentSelf answers what `nomad agent-info` reads: the version in
// the member's tags.
func (s *Server) handleAgentSelf(w http.ResponseWriter, r *http.Request) {
	self := &api.AgentSelf{
		Config: map[string]any{"Region": s.opts.Region, "Datacenter": s.opts.Datacenter, "Version": map[string]any{"Version": s.opts.Version}},
		Member: api.AgentMember{Name: s.opts.NodeName + "." + s.opts.Region, Addr: s.opts.IP, Port: 4648, Status: "alive",
			Tags: map[string]string{"build": s.opts.Version, "region": s.opts.Region, "dc": s.opts.Datacenter, "role": "nomad"}},
		Stats: map[string]map[string]string{"nomad": {"leader": "true"}},
	}
	writeJSONValue(w, 1, self)
}

var namespaceNameRE = regexp.MustCompile(`^[a-zA-Z0-9-]{1,128}$`)

func (s *Server) handleNamespaces(w http.ResponseWriter, r *http.Request) {
	s.blockingQuery(w, r, func() (any, uint64, error) {
		out := []*api.Namespace{}
		for _, ns := range s.namespaces {
			out = append(out, ns)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out, max(s.tables["namespaces"], 1), nil
	})
}

func (s *Server) handleNamespaceInfo(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.blockingQuery(w, r, func() (any, uint64, error) {
		ns := s.namespaces[name]
		if ns == nil {
			return nil, 0, errorf(http.StatusNotFound, "Namespace not found")
		}
		return ns, ns.ModifyIndex, nil
	})
}

func (s *Server) handleNamespaceUpsert(w http.ResponseWriter, r *http.Request) {
	var ns api.Namespace
	if err := decodeBody(r, &ns); err != nil {
		writeErr(w, err)
		return
	}
	if n := r.PathValue("name"); n != "" && n != ns.Name {
		writeError(w, http.StatusBadRequest, "Namespace name does not match request path")
		return
	}
	if !namespaceNameRE.MatchString(ns.Name) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid name %q. Must match regex %s", ns.Name, namespaceNameRE))
		return
	}
	s.mu.Lock()
	idx := s.bumpLocked("namespaces")
	ns.CreateIndex, ns.ModifyIndex = idx, idx
	if old := s.namespaces[ns.Name]; old != nil {
		ns.CreateIndex = old.CreateIndex
	}
	s.namespaces[ns.Name] = &ns
	s.mu.Unlock()
	writeJSON(w, idx, []byte("null"))
}

// handleNamespaceDelete removes a namespace that holds no job that has
// not ended, as Nomad requires.
func (s *Server) handleNamespaceDelete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == "default" {
		writeError(w, http.StatusBadRequest, "default namespace can not be deleted")
		return
	}
	if s.namespaces[name] == nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("namespace %q does not exist", name))
		return
	}
	for key, job := range s.jobs {
		if key.ns == name && s.jobStatusLocked(job) != jobStatusDead {
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("namespace %q has non-terminal jobs in regions: [%s]", name, s.opts.Region))
			return
		}
	}
	for key := range s.jobs {
		if key.ns == name {
			delete(s.jobs, key)
		}
	}
	delete(s.namespaces, name)
	writeJSON(w, s.bumpLocked("namespaces"), []byte("null"))
}

func (s *Server) handleSchedulerGet(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	cfg := s.scheduler
	idx := max(s.tables["scheduler"], 1)
	s.mu.Unlock()
	cfg.CreateIndex, cfg.ModifyIndex = 1, idx
	writeJSONValue(w, idx, &api.SchedulerConfigurationResponse{SchedulerConfig: &cfg})
}

func (s *Server) handleSchedulerSet(w http.ResponseWriter, r *http.Request) {
	var cfg api.SchedulerConfiguration
	if err := decodeBody(r, &cfg); err != nil {
		writeErr(w, err)
		return
	}
	switch cfg.SchedulerAlgorithm {
	case "":
		cfg.SchedulerAlgorithm = api.SchedulerAlgorithmBinpack
	case api.SchedulerAlgorithmBinpack, api.SchedulerAlgorithmSpread:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("invalid scheduler algorithm: %v", cfg.SchedulerAlgorithm))
		return
	}
	s.mu.Lock()
	s.scheduler = cfg
	idx := s.bumpLocked("scheduler")
	s.mu.Unlock()
	writeJSONValue(w, idx, &api.SchedulerSetConfigurationResponse{Updated: true})
}

// SetMemoryOversubscription changes the scheduler configuration as
// `nomad operator scheduler set-config -memory-oversubscription` does.
func (s *Server) SetMemoryOversubscription(on bool) {
	s.mu.Lock()
	s.scheduler.MemoryOversubscriptionEnabled = on
	s.bumpLocked("scheduler")
	s.mu.Unlock()
}

// handleNodes lists the fake's one node.
func (s *Server) handleNodes(w http.ResponseWriter, r *http.Request) {
	s.blockingQuery(w, r, func() (any, uint64, error) {
		n := s.nodeLocked()
		return []*api.NodeListStub{{
			ID: n.ID, Name: n.Name, Datacenter: n.Datacenter, NodeClass: n.NodeClass, NodePool: n.NodePool,
			Status: n.Status, SchedulingEligibility: n.SchedulingEligibility, Address: s.opts.IP,
			Drivers: n.Drivers, Attributes: n.Attributes,
		}}, 1, nil
	})
}

// handleAllocRestart restarts a running task of an allocation in place
// (all of them without a task name), as `nomad alloc restart` does.
func (s *Server) handleAllocRestart(w http.ResponseWriter, r *http.Request) {
	ns, _ := s.namespace(r)
	var req api.AllocationRestartRequest
	if err := decodeBody(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	s.mu.Lock()
	ar := s.allocs[r.PathValue("id")]
	if ar == nil || ar.alloc.Namespace != ns {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Unknown allocation")
		return
	}
	var names []string
	for name, tr := range ar.tasks {
		if (req.TaskName == "" || req.TaskName == name) && ar.alloc.TaskStates[name].State == "running" && tr.cmd != nil {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		s.mu.Unlock()
		if req.TaskName != "" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Task not running: %s", req.TaskName))
			return
		}
		writeError(w, http.StatusBadRequest, "Task not running")
		return
	}
	for _, name := range names {
		tr := ar.tasks[name]
		tr.restartRequested = true
		e := event(api.TaskRestartSignal, "User requested task to restart")
		e.RestartReason = "User requested task to restart"
		s.taskEventLocked(ar, name, e, "", false)
		tr.signalRestart()
	}
	s.mu.Unlock()
	writeJSON(w, 1, []byte("{}"))
}

// handleAllocCat is GET /v1/client/fs/cat/{alloc}?path=...: a file of
// the allocation's directory.
func (s *Server) handleAllocCat(w http.ResponseWriter, r *http.Request) {
	ns, _ := s.namespace(r)
	s.mu.Lock()
	ar := s.allocs[r.PathValue("id")]
	var dir string
	if ar != nil && (ns == "*" || ar.alloc.Namespace == ns) {
		dir = ar.dir
	}
	s.mu.Unlock()
	if dir == "" {
		writeError(w, http.StatusNotFound, "Unknown allocation")
		return
	}
	p := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Query().Get("path"), "/")))
	if !inside(dir, p) {
		writeError(w, http.StatusBadRequest, "path escapes the allocation directory")
		return
	}
	b, err := os.ReadFile(p)
	if err != nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("file %q not found", r.URL.Query().Get("path")))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(b)
}
