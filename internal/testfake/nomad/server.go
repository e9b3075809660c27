// Package nomad is a small working Nomad for tests: one server and one
// client node in a process, speaking exactly the part of Nomad's HTTP API
// that codehub's Nomad orchestrator uses, with the official
// github.com/hashicorp/nomad/api types on the wire.
//
// It registers jobs (PUT /v1/jobs), dispatches parameterized jobs (checking
// required meta and payload, honouring idempotency tokens), schedules them
// on its one node (datacenter, drivers, simple constraints, CPU and memory
// capacity; an allocation that does not fit leaves a blocked evaluation
// that is placed when capacity frees), and RUNS their tasks as local
// processes the way raw_exec does: a task directory with local/, secrets/
// and tmp/, the dispatch payload written into local/, templates rendered,
// ${NOMAD_*}, ${node.*} and ${attr.*} interpolated into the command, its
// arguments and environment, a free port for every dynamic port label.
// Allocations go pending → running → complete or failed with Nomad's task
// events, and each running task's services are registered in Consul through
// the official consul/api client (script checks are run and reported as
// TTL checks, as Nomad does), and deregistered when the task ends.
//
// Reads are blocking queries like Nomad's: X-Nomad-Index on every answer,
// and a request with ?index=N waits until the answer's index passes N or
// ?wait elapses. Errors have Nomad's shapes: 404 "job not found", 403
// "Permission denied" when an ACL token is configured and not given, 400
// for a dispatch without its required meta or payload (real Nomad answers
// those with 500; clients should rely on the message, not the code).
//
// What it leaves out: restart and reschedule policies (a task that exits
// is complete or failed, once), deployments, more than one node, real
// drivers (every driver of Options.Drivers runs tasks like raw_exec; a task
// of another driver does not place, as on a node without that driver),
// Nomad-native service discovery.
package nomad

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
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
	// Token, when set, turns ACLs on: every request must carry it in
	// X-Nomad-Token (or as a bearer token), else 403.
	Token string
	// Namespaces that exist besides "default".
	Namespaces []string
	// Region of the server (default "global"), Datacenter and NodeName of
	// its node (defaults "dc1" and "fake-node-1").
	Region, Datacenter, NodeName string
	// NodeClass and NodeMeta are the node's class and meta, for
	// constraints.
	NodeClass string
	NodeMeta  map[string]string
	// Drivers the node offers (default raw_exec). Every driver runs tasks
	// as raw_exec does: config.command and config.args.
	Drivers []string
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
	RouteJobInfo        = "GET /v1/job/{id}"
	RouteJobRegister    = "PUT /v1/job/{id}"
	RouteJobDeregister  = "DELETE /v1/job/{id}"
	RouteJobDispatch    = "PUT /v1/job/{id}/dispatch"
	RouteJobAllocations = "GET /v1/job/{id}/allocations"
	RouteJobEvaluations = "GET /v1/job/{id}/evaluations"
	RouteAllocation     = "GET /v1/allocation/{id}"
	RouteEvaluation     = "GET /v1/evaluation/{id}"
	RouteEvaluations    = "GET /v1/evaluations"
	RouteNode           = "GET /v1/node/{id}"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			s.requests[pattern]++
			s.mu.Unlock()
			if !s.authorized(r) {
				writeError(w, http.StatusForbidden, "Permission denied")
				return
			}
			if reg := r.URL.Query().Get("region"); reg != "" && reg != s.opts.Region {
				writeError(w, http.StatusInternalServerError, "No path to region")
				return
			}
			h(w, r)
		})
	}
	handle(RouteJobsList, s.handleJobsList)
	handle(RouteJobsRegister, s.handleRegister)
	handle("POST /v1/jobs", s.handleRegister)
	handle(RouteJobInfo, s.handleJobInfo)
	handle(RouteJobRegister, s.handleRegister)
	handle("POST /v1/job/{id}", s.handleRegister)
	handle(RouteJobDeregister, s.handleDeregister)
	handle(RouteJobDispatch, s.handleDispatch)
	handle("POST /v1/job/{id}/dispatch", s.handleDispatch)
	handle(RouteJobAllocations, s.handleJobAllocations)
	handle(RouteJobEvaluations, s.handleJobEvaluations)
	handle(RouteAllocation, s.handleAllocation)
	handle(RouteEvaluation, s.handleEvaluation)
	handle(RouteEvaluations, s.handleEvaluations)
	handle(RouteNode, s.handleNode)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Invalid URL: the fake Nomad does not serve "+r.Method+" "+r.URL.Path)
	})
	return mux
}

// authorized applies the ACL: with a token configured, only it passes.
func (s *Server) authorized(r *http.Request) bool {
	if s.opts.Token == "" {
		return true
	}
	got := r.Header.Get("X-Nomad-Token")
	if got == "" {
		got, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	return got == s.opts.Token
}

// namespace is the request's namespace; ok false when it does not exist
// ("*" means all, for lists).
func (s *Server) namespace(r *http.Request) (string, bool) {
	ns := r.URL.Query().Get("namespace")
	switch {
	case ns == "":
		return "default", true
	case ns == "default", ns == "*":
		return ns, true
	default:
		return ns, slices.Contains(s.opts.Namespaces, ns)
	}
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
