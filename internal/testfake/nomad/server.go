// Package nomad is a small working Nomad for tests: one server and one
// client node in a process, speaking exactly the part of Nomad's HTTP API
// that codehub's Nomad orchestrator uses, with the official
// github.com/hashicorp/nomad/api types on the wire.
//
// It parses job specifications (PUT /v1/jobs/parse, with ParseJob) and
// validates them as Nomad's servers do (constraint operands, resources,
// host volumes; the memory oversubscription warning), registers jobs (PUT
// /v1/jobs), dispatches parameterized jobs (checking required meta and
// payload, honouring idempotency tokens), schedules them on its one node
// (datacenter, drivers, host volumes, simple constraints, CPU and memory
// capacity; an allocation that does not fit leaves a blocked evaluation
// that is placed when capacity frees), and RUNS their tasks as local
// processes: a task directory with local/, secrets/ and tmp/, the dispatch
// payload written into local/, templates rendered, ${NOMAD_*}, ${node.*}
// and ${attr.*} interpolated into the command, its arguments and
// environment, a free port for every dynamic port label. Tasks of the exec
// and docker drivers run as their task's user with the Linux capabilities
// the driver would give them (its defaults, less cap_drop, plus cap_add;
// exec's as ambient capabilities, docker's security_opt
// no-new-privileges): the fake runs as root, and really drops them for the
// task's whole process tree. Allocations go pending → running → complete
// or failed with Nomad's task events; a task that fails is restarted in
// place as its group's restart policy says, or on request (POST
// /v1/client/allocation/{id}/restart). Each running task's services are
// registered in Consul through the official consul/api client (script
// checks are run and reported as TTL checks, as Nomad does), and
// deregistered when the task ends.
//
// Reads are blocking queries like Nomad's: X-Nomad-Index on every answer,
// and a request with ?index=N waits until the answer's index passes N or
// ?wait elapses. Errors have Nomad's shapes: 404 "job not found", 403
// "Permission denied" when a token lacks a capability (ACLs are on when
// Options.Token is set; see acl.go), 400 for a dispatch without its
// required meta or payload (real Nomad answers those with 500; clients
// should rely on the message, not the code). Namespaces are made and
// removed through the namespace API, as on Nomad.
//
// What it leaves out: reschedule policies (an allocation that fails stays
// failed), deployments, more than one node, real isolation (no chroot,
// namespaces or cgroups: every driver of Options.Drivers runs its task as
// a process on this machine; a task of another driver does not place, as
// on a node without that driver), Nomad-native service discovery.
package nomad

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"
)

// Options configure a Server. The zero value is a node "fake-node-1" in
// datacenter "dc1" of region "global", without ACLs, running raw_exec
// tasks with unlimited CPU and memory, registering no services.
type Options struct {
	// Token, when set, turns ACLs on: it is a management token, and every
	// request must carry it or a token made with it through the ACL API
	// (X-Nomad-Token, or as a bearer token), else 403.
	Token string
	// Version is the Nomad version the fake reports (GET /v1/agent/self)
	// and whose job specification language its parser accepts (default
	// DefaultVersion).
	Version string
	// Region of the server (default "global"), Datacenter and NodeName of
	// its node (defaults "dc1" and "fake-node-1").
	Region, Datacenter, NodeName string
	// NodeClass and NodeMeta are the node's class and meta, for
	// constraints.
	NodeClass string
	NodeMeta  map[string]string
	// Drivers the node offers (default raw_exec). Every driver runs tasks
	// as processes: config.command and config.args.
	Drivers []string
	// Users are accounts the node has besides this machine's password
	// database, by name (a task's user): the README's client setup makes a
	// "codehub" account that tests cannot add to the machine.
	Users map[string]Account
	// HostVolumes are the node's host volumes (client { host_volume "name"
	// { path = ... } }), by name: the directory each one is.
	HostVolumes map[string]string
	// MemoryOversubscription is the scheduler configuration's at start
	// (Nomad's default: off, and memory_max is then ignored with a
	// warning).
	MemoryOversubscription bool
	// CPU (MHz) and MemoryMB the node offers to allocations; 0: unlimited.
	CPU, MemoryMB int
	// IP the node advertises and its tasks' ports are on (default
	// 127.0.0.1).
	IP string
	// Dir holds the allocation directories (default: a temporary
	// directory that Close removes).
	Dir string
	// Env is every task's base environment (default: PATH, HOME, LANG,
	// TMPDIR of this process).
	Env []string
	// Consul, when set, is the Consul agent the node registers services
	// with.
	Consul *consulapi.Config
	// StartDelay is how long a task "downloads its image" (a Driver
	// event) before its process starts.
	StartDelay time.Duration
	// Logger receives the fake's own log (default: none).
	Logger hclog.Logger
}

// DefaultVersion is the Nomad version a Server reports unless told.
const DefaultVersion = "1.11.0"

// Account is a node account's uid and gid.
type Account struct{ UID, GID int }

// Server is a running fake Nomad. Safe for concurrent use.
type Server struct {
	opts   Options
	log    hclog.Logger
	ln     net.Listener
	http   *http.Server
	url    string
	ownDir bool
	consul *consulapi.Client
	node   string // the node's ID

	mu         sync.Mutex
	index      uint64
	tables     map[string]uint64 // table name -> last index that changed it
	changed    chan struct{}     // closed and replaced on every change
	jobs       map[jobKey]*api.Job
	evals      map[string]*api.Evaluation
	allocs     map[string]*allocRun
	requests   map[string]int // by route pattern
	cpu, mem   int
	startDelay time.Duration
	failDriver func(job *api.Job, task *api.Task) error
	namespaces map[string]*api.Namespace
	acl        aclState
	scheduler  api.SchedulerConfiguration
	closed     bool
	wg         sync.WaitGroup
}

type jobKey struct{ ns, id string }

// New starts a fake Nomad on a free port of 127.0.0.1.
func New(opts Options) (*Server, error) {
	if opts.Region == "" {
		opts.Region = "global"
	}
	if opts.Datacenter == "" {
		opts.Datacenter = "dc1"
	}
	if opts.NodeName == "" {
		opts.NodeName = "fake-node-1"
	}
	if len(opts.Drivers) == 0 {
		opts.Drivers = []string{"raw_exec"}
	}
	if opts.IP == "" {
		opts.IP = "127.0.0.1"
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if opts.Env == nil {
		for _, k := range []string{"PATH", "HOME", "LANG", "TMPDIR"} {
			if v := os.Getenv(k); v != "" {
				opts.Env = append(opts.Env, k+"="+v)
			}
		}
	}
	s := &Server{
		opts:       opts,
		log:        opts.Logger,
		tables:     map[string]uint64{},
		changed:    make(chan struct{}),
		jobs:       map[jobKey]*api.Job{},
		evals:      map[string]*api.Evaluation{},
		allocs:     map[string]*allocRun{},
		requests:   map[string]int{},
		cpu:        opts.CPU,
		mem:        opts.MemoryMB,
		startDelay: opts.StartDelay,
		index:      1,
		node:       uuid(),
		namespaces: map[string]*api.Namespace{"default": {Name: "default", Description: "Default shared namespace", CreateIndex: 1, ModifyIndex: 1}},
		acl:        aclState{policies: map[string]*api.ACLPolicy{}, compiled: map[string]*aclRules{}, tokens: map[string]*api.ACLToken{}},
		scheduler: api.SchedulerConfiguration{
			SchedulerAlgorithm: api.SchedulerAlgorithmBinpack, MemoryOversubscriptionEnabled: opts.MemoryOversubscription,
			PreemptionConfig: api.PreemptionConfig{SystemSchedulerEnabled: true},
		},
	}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "fake-nomad-")
		if err != nil {
			return nil, err
		}
		s.opts.Dir, s.ownDir = dir, true
	}
	if opts.Consul != nil {
		c, err := consulapi.NewClient(opts.Consul)
		if err != nil {
			return nil, fmt.Errorf("consul client: %w", err)
		}
		s.consul = c
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.url = "http://" + ln.Addr().String()
	s.http = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.http.Serve(ln) }()
	return s, nil
}

// URL is the address to give api.Config.Address.
func (s *Server) URL() string { return s.url }

// Close stops every task, deregisters their services and shuts the
// server down.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	runs := make([]*allocRun, 0, len(s.allocs))
	for _, ar := range s.allocs {
		runs = append(runs, ar)
	}
	s.mu.Unlock()
	for _, ar := range runs {
		s.stopAlloc(ar, "server shutting down")
	}
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.http.Shutdown(ctx)
	if s.ownDir {
		_ = os.RemoveAll(s.opts.Dir)
	}
}

// RegisterJob registers job as PUT /v1/jobs would, without going through
// HTTP or ACLs.
func (s *Server) RegisterJob(job *api.Job) error {
	_, err := s.register(job)
	return err
}

// SetCapacity changes the CPU (MHz) and memory (MB) the node offers (0:
// unlimited); blocked evaluations that now fit are placed.
func (s *Server) SetCapacity(cpu, memoryMB int) {
	s.mu.Lock()
	s.cpu, s.mem = cpu, memoryMB
	started := s.unblockLocked()
	s.mu.Unlock()
	s.launch(started)
}

// SetStartDelay changes Options.StartDelay for tasks started from now on.
func (s *Server) SetStartDelay(d time.Duration) {
	s.mu.Lock()
	s.startDelay = d
	s.mu.Unlock()
}

// SetDriverFailure makes the driver fail to start every task for which f
// returns an error (nil f: none), as a "Driver Failure" task event whose
// message is the error's: for example "Failed to pull `img`: manifest
// unknown".
func (s *Server) SetDriverFailure(f func(job *api.Job, task *api.Task) error) {
	s.mu.Lock()
	s.failDriver = f
	s.mu.Unlock()
}

// Requests returns how many requests each route served, by the route's
// pattern ("GET /v1/allocation/{id}").
func (s *Server) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.requests))
	for k, v := range s.requests {
		out[k] = v
	}
	return out
}

// Route patterns, as counted by Requests.
const (
	RouteJobsList       = "GET /v1/jobs"
	RouteJobsRegister   = "PUT /v1/jobs"
	RouteJobsParse      = "PUT /v1/jobs/parse"
	RouteJobValidate    = "PUT /v1/validate/job"
	RouteJobInfo        = "GET /v1/job/{id}"
	RouteJobRegister    = "PUT /v1/job/{id}"
	RouteJobDeregister  = "DELETE /v1/job/{id}"
	RouteJobDispatch    = "PUT /v1/job/{id}/dispatch"
	RouteJobAllocations = "GET /v1/job/{id}/allocations"
	RouteJobEvaluations = "GET /v1/job/{id}/evaluations"
	RouteAllocation     = "GET /v1/allocation/{id}"
	RouteAllocRestart   = "PUT /v1/client/allocation/{id}/restart"
	RouteAllocFSCat     = "GET /v1/client/fs/cat/{id}"
	RouteEvaluation     = "GET /v1/evaluation/{id}"
	RouteEvaluations    = "GET /v1/evaluations"
	RouteNode           = "GET /v1/node/{id}"
	RouteNodes          = "GET /v1/nodes"
)

// permit decides whether a token may make a request, in the request's
// namespace.
type permit func(t *aclToken, ns string) bool

// inNamespace needs a namespace capability.
func inNamespace(capability string) permit {
	return func(t *aclToken, ns string) bool { return t.allowNamespace(ns, capability) }
}

func management(t *aclToken, _ string) bool { return t.management }

func nodeRead(t *aclToken, _ string) bool {
	return t.allowPolicy(func(r *aclRules) string { return r.node }, false)
}

func agentRead(t *aclToken, _ string) bool {
	return t.allowPolicy(func(r *aclRules) string { return r.agent }, false)
}

func operator(write bool) permit {
	return func(t *aclToken, _ string) bool {
		return t.allowPolicy(func(r *aclRules) string { return r.operator }, write)
	}
}

// tokenKey carries the request's resolved token to handlers that check
// more than the route's permit (host volumes on registration).
type tokenKey struct{}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, allowed permit, h http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			ns := r.URL.Query().Get("namespace")
			if ns == "" {
				ns = "default"
			}
			s.mu.Lock()
			s.requests[pattern]++
			tok, denied := s.resolveTokenLocked(r)
			s.mu.Unlock()
			if denied != "" {
				writeError(w, http.StatusForbidden, denied)
				return
			}
			if !allowed(tok, ns) {
				writeError(w, http.StatusForbidden, "Permission denied")
				return
			}
			if reg := r.URL.Query().Get("region"); reg != "" && reg != s.opts.Region {
				writeError(w, http.StatusInternalServerError, "No path to region")
				return
			}
			h(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok)))
		})
	}
	handle(RouteJobsList, inNamespace(capListJobs), s.handleJobsList)
	handle(RouteJobsRegister, inNamespace(capSubmitJob), s.handleRegister)
	handle("POST /v1/jobs", inNamespace(capSubmitJob), s.handleRegister)
	handle(RouteJobsParse, inNamespace(capParseJob), s.handleParse)
	handle("POST /v1/jobs/parse", inNamespace(capParseJob), s.handleParse)
	handle(RouteJobValidate, inNamespace(capReadJob), s.handleValidate)
	handle("POST /v1/validate/job", inNamespace(capReadJob), s.handleValidate)
	handle(RouteJobInfo, inNamespace(capReadJob), s.handleJobInfo)
	handle(RouteJobRegister, inNamespace(capSubmitJob), s.handleRegister)
	handle("POST /v1/job/{id}", inNamespace(capSubmitJob), s.handleRegister)
	handle(RouteJobDeregister, inNamespace(capSubmitJob), s.handleDeregister)
	handle(RouteJobDispatch, inNamespace(capDispatchJob), s.handleDispatch)
	handle("POST /v1/job/{id}/dispatch", inNamespace(capDispatchJob), s.handleDispatch)
	handle(RouteJobAllocations, inNamespace(capReadJob), s.handleJobAllocations)
	handle(RouteJobEvaluations, inNamespace(capReadJob), s.handleJobEvaluations)
	handle(RouteAllocation, inNamespace(capReadJob), s.handleAllocation)
	handle(RouteAllocRestart, inNamespace(capAllocLifecycle), s.handleAllocRestart)
	handle("POST /v1/client/allocation/{id}/restart", inNamespace(capAllocLifecycle), s.handleAllocRestart)
	handle(RouteAllocFSCat, inNamespace(capReadFS), s.handleAllocCat)
	handle(RouteEvaluation, inNamespace(capReadJob), s.handleEvaluation)
	handle(RouteEvaluations, inNamespace(capReadJob), s.handleEvaluations)
	handle(RouteNode, nodeRead, s.handleNode)
	handle(RouteNodes, nodeRead, s.handleNodes)
	handle("GET /v1/agent/self", agentRead, s.handleAgentSelf)
	handle("GET /v1/namespaces", func(*aclToken, string) bool { return true }, s.handleNamespaces)
	handle("GET /v1/namespace/{name}", func(t *aclToken, _ string) bool { return true }, s.handleNamespaceInfo)
	handle("PUT /v1/namespace", management, s.handleNamespaceUpsert)
	handle("POST /v1/namespace", management, s.handleNamespaceUpsert)
	handle("PUT /v1/namespace/{name}", management, s.handleNamespaceUpsert)
	handle("POST /v1/namespace/{name}", management, s.handleNamespaceUpsert)
	handle("DELETE /v1/namespace/{name}", management, s.handleNamespaceDelete)
	handle("GET /v1/operator/scheduler/configuration", operator(false), s.handleSchedulerGet)
	handle("PUT /v1/operator/scheduler/configuration", operator(true), s.handleSchedulerSet)
	handle("POST /v1/operator/scheduler/configuration", operator(true), s.handleSchedulerSet)
	handle("GET /v1/acl/policies", management, s.handleACLPolicies)
	handle("PUT /v1/acl/policy/{name}", management, s.handleACLPolicyUpsert)
	handle("POST /v1/acl/policy/{name}", management, s.handleACLPolicyUpsert)
	handle("DELETE /v1/acl/policy/{name}", management, s.handleACLPolicyDelete)
	handle("PUT /v1/acl/token", management, s.handleACLTokenCreate)
	handle("POST /v1/acl/token", management, s.handleACLTokenCreate)
	handle("DELETE /v1/acl/token/{accessor}", management, s.handleACLTokenDelete)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Invalid URL: the fake Nomad does not serve "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// requestACL is the token a handler's request was let in with.
func requestACL(r *http.Request) *aclToken {
	t, _ := r.Context().Value(tokenKey{}).(*aclToken)
	if t == nil {
		return &aclToken{}
	}
	return t
}

// namespace is the request's namespace; ok false when it does not exist
// ("*" means all, for lists).
func (s *Server) namespace(r *http.Request) (string, bool) {
	ns := r.URL.Query().Get("namespace")
	switch ns {
	case "":
		return "default", true
	case "*":
		return ns, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return ns, s.namespaces[ns] != nil
}

// writeError answers as Nomad does: the message as plain text.
func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(msg))
}

// writeJSON answers with body and Nomad's query meta headers.
func writeJSON(w http.ResponseWriter, index uint64, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Nomad-Index", strconv.FormatUint(index, 10))
	h.Set("X-Nomad-LastContact", "0")
	h.Set("X-Nomad-KnownLeader", "true")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// httpError is an error with the status it is answered with.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errorf(code int, format string, args ...any) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

func writeErr(w http.ResponseWriter, err error) {
	var he *httpError
	if errors.As(err, &he) {
		writeError(w, he.code, he.msg)
		return
	}
	writeError(w, http.StatusInternalServerError, err.Error())
}

// blockingQuery answers a read: query runs under the lock and returns the
// value and its index; with ?index=N the answer waits until the index
// passes N or ?wait (default 5m, at most 10m) elapses, as Nomad's blocking
// queries do.
func (s *Server) blockingQuery(w http.ResponseWriter, r *http.Request, query func() (any, uint64, error)) {
	q := r.URL.Query()
	var minIndex uint64
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "Invalid index: "+err.Error())
			return
		}
		minIndex = n
	}
	wait := 5 * time.Minute
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "Invalid wait time: "+err.Error())
			return
		}
		wait = min(d, 10*time.Minute)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		v, index, err := query()
		var body []byte
		if err == nil {
			body, err = json.Marshal(v)
		}
		changed := s.changed
		s.mu.Unlock()
		if err != nil {
			writeErr(w, err)
			return
		}
		if index < 1 {
			index = 1
		}
		if minIndex == 0 || index > minIndex {
			writeJSON(w, index, body)
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			writeJSON(w, index, body)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// bumpLocked records a change of the named tables and wakes blocked
// queries; it returns the new index.
func (s *Server) bumpLocked(tables ...string) uint64 {
	s.index++
	for _, t := range tables {
		s.tables[t] = s.index
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return s.index
}

// clone deep-copies v through JSON, as the wire would.
func clone[T any](v *T) *T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic(err)
	}
	return out
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 8<<20))
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "Failed to parse request body: %v", err)
	}
	return nil
}
