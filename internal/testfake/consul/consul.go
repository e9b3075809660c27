// Package consul is an in-process fake of the parts of Consul's HTTP API
// that codehub and its fakes use, for tests on machines where Consul cannot
// run. It speaks the official client's types (github.com/hashicorp/consul/api):
// a test points an api.Client at it exactly as it would at a dev agent.
//
// One Server plays a federated cluster: every datacenter has its own agent,
// listening on its own 127.0.0.1 port (Addr), and every agent answers
// catalog, health and KV queries for any datacenter given with ?dc=, as
// real agents forward them over the WAN. Agent endpoints (service and check
// registration) act on the agent's own datacenter, as in Consul: register a
// service "in dc2" by talking to dc2's agent.
//
// What it does, as Consul does:
//   - PUT /v1/agent/service/register (api.AgentServiceRegistration, with
//     ?replace-existing-checks) and /v1/agent/service/deregister/{id};
//     GET /v1/agent/services, /v1/agent/checks, /v1/agent/self.
//   - HTTP and TCP checks run by the fake itself against the registered
//     URL on their interval (method, headers, body, timeout, TLS skip
//     verify; 2xx passing, 429 warning, anything else critical), gRPC
//     checks approximated by a TCP connect to their address, TTL checks
//     updated through /v1/agent/check/pass|warn|fail/{id} and
//     /v1/agent/check/update/{id} and turning critical when the TTL runs
//     out; SuccessBeforePassing and FailuresBeforeCritical; services whose
//     check stays critical for DeregisterCriticalServiceAfter are removed.
//   - GET /v1/health/service/{name} (?passing, ?tag= repeated, node and
//     service checks), /v1/health/checks/{name}, /v1/catalog/service/{name},
//     /v1/catalog/services, /v1/catalog/datacenters, /v1/status/leader.
//     Checks are written as an agent that registered them writes them:
//     "Definition": {} (what the agent probes is not given back), and the
//     Interval and Timeout given, as text, beside it.
//   - KV: GET (?recurse, ?keys, ?raw), PUT (?cas=, ?flags=), DELETE (?cas=,
//     ?recurse) on /v1/kv/{key}, with Consul's check-and-set semantics.
//   - X-Consul-Index on every read, and blocking queries: ?index=N returns
//     when the index moves past N, or after ?wait= (default 5m, at most
//     10m) plus up to wait/16 of jitter, with the current answer.
//   - ACLs when Options.ACLToken is set: that token may do anything; no
//     token (or "anonymous") is the anonymous token, whose reads are
//     filtered (an empty answer, X-Consul-Results-Filtered-By-ACLs: true;
//     a single KV key: 403) and whose writes get 403 "Permission denied:
//     token with AccessorID ... lacks permission ..."; any other token gets
//     403 "ACL not found". /v1/catalog/datacenters ignores tokens.
//   - An unknown or stopped datacenter answers 500 "No path to datacenter".
//
// What it does not: script, Docker, H2PING and UDP checks (400), the gRPC
// health protocol, ?filter (400, rather than a silently unfiltered
// answer), sessions and KV locks, Connect, namespaces and partitions,
// hash-based blocking on agent endpoints, and Consul's floors (check
// intervals under 1s and DeregisterCriticalServiceAfter under 1m are
// honoured as given, so tests run fast; a real agent raises them). The
// first run of a check happens at registration, where Consul waits a
// random part of the interval.
//
// Helpers for tests: Start (on 127.0.0.1:0, closed with the test),
// SetCheckStatus/ResumeCheck, StopDatacenter/StartDatacenter, RewindIndex,
// Requests (every agent counts the requests it receives).
package consul

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// Options configures a fake.
type Options struct {
	// Datacenters are the federated datacenters, each with its own agent;
	// the first is the primary. Default: "dc1".
	Datacenters []string
	// ACLToken, when set, turns ACLs on with a deny-by-default policy and
	// is the one token that may do everything (a management token).
	ACLToken string
	// ReapInterval is how often services critical for longer than their
	// check's DeregisterCriticalServiceAfter are removed (default 100ms;
	// Consul reaps every 30s).
	ReapInterval time.Duration
	// Logger receives what the fake does (default: nothing).
	Logger hclog.Logger
}

// Server is a fake Consul cluster. It is safe for concurrent use.
type Server struct {
	opts Options
	log  hclog.Logger

	mu  sync.Mutex // guards the datacenters' state
	dcs map[string]*datacenter

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // check runners, the reaper, the agents' servers
}

// agent is one datacenter's HTTP endpoint.
type agent struct {
	dc   string
	ln   net.Listener
	srv  *http.Server
	down atomic.Bool

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	requests map[string]int // "METHOD /path" -> count
}

// New starts a fake whose agents listen on 127.0.0.1 at ports of the
// system's choosing. Close stops it.
func New(opts Options) (*Server, error) {
	if len(opts.Datacenters) == 0 {
		opts.Datacenters = []string{"dc1"}
	}
	if opts.ReapInterval <= 0 {
		opts.ReapInterval = 100 * time.Millisecond
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Server{
		opts: opts,
		log:  log.Named("consul-fake"),
		dcs:  map[string]*datacenter{},
		done: make(chan struct{}),
	}
	for _, name := range opts.Datacenters {
		if name == "" || s.dcs[name] != nil {
			s.Close()
			return nil, fmt.Errorf("consul fake: datacenter %q empty or repeated", name)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("consul fake: listen for %s: %w", name, err)
		}
		dc := newDatacenter(name)
		a := &agent{dc: name, ln: ln, conns: map[net.Conn]struct{}{}, requests: map[string]int{}}
		a.srv = &http.Server{
			Handler:   s.routes(a),
			ConnState: a.connState,
			ErrorLog:  log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
		}
		dc.agent = a
		s.dcs[name] = dc
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("agent stopped", "dc", name, "error", err)
			}
		}()
	}
	s.wg.Add(1)
	go s.reap()
	return s, nil
}

// Start starts a fake for tb, logging into tb.Log unless opts has a
// logger, and closes it when tb ends.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Logger == nil {
		w := &tbWriter{tb: tb}
		tb.Cleanup(func() { w.done.Store(true) }) // runs after Close
		opts.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: w})
	}
	s, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

type tbWriter struct {
	tb   testing.TB
	done atomic.Bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.tb.Log(string(p[:len(p)-min(len(p), 1)]))
	}
	return len(p), nil
}

// Close stops every agent and check; it is safe to call twice.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.mu.Lock()
		for _, dc := range s.dcs {
			for _, c := range dc.checks {
				c.halt()
			}
		}
		s.mu.Unlock()
		for _, dc := range s.dcs {
			_ = dc.agent.srv.Close()
		}
		s.wg.Wait()
	})
}

// Datacenters returns the datacenters' names, the primary first.
func (s *Server) Datacenters() []string { return slices.Clone(s.opts.Datacenters) }

// Addr is the host:port of dc's agent (api.Config.Address); "" for an
// unknown datacenter.
func (s *Server) Addr(dc string) string {
	d := s.dcs[dc] // the map is never written after New
	if d == nil {
		return ""
	}
	return d.agent.ln.Addr().String()
}

// URL is the http:// address of dc's agent.
func (s *Server) URL(dc string) string { return "http://" + s.Addr(dc) }

// Config returns a client configuration for dc's agent with token. As
// everywhere with api.NewClient, an empty token means CONSUL_HTTP_TOKEN
// from the environment: pass "anonymous" (the anonymous token's secret)
// for none at all.
func (s *Server) Config(dc, token string) *api.Config {
	return &api.Config{Address: s.Addr(dc), Scheme: "http", Token: token}
}

// Client returns a client of dc's agent with token.
func (s *Server) Client(tb testing.TB, dc, token string) *api.Client {
	tb.Helper()
	c, err := api.NewClient(s.Config(dc, token))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// StopDatacenter makes dc unreachable, as if its servers and agent went
// down: its agent drops open connections (in-flight blocking queries
// included) and closes new ones at once, and other agents answer queries
// for it with 500 "No path to datacenter". Its state is kept for
// StartDatacenter, as a restart with persisted Raft data would.
func (s *Server) StopDatacenter(dc string) error {
	d, err := s.dc(dc)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if !d.stopped {
		d.stopped = true
		close(d.stopCh)
	}
	s.mu.Unlock()
	d.agent.down.Store(true)
	d.agent.mu.Lock()
	for c := range d.agent.conns {
		_ = c.Close()
	}
	d.agent.mu.Unlock()
	s.log.Info("datacenter stopped", "dc", dc)
	return nil
}

// StartDatacenter makes a stopped dc reachable again.
func (s *Server) StartDatacenter(dc string) error {
	d, err := s.dc(dc)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if d.stopped {
		d.stopped = false
		d.stopCh = make(chan struct{})
	}
	s.mu.Unlock()
	d.agent.down.Store(false)
	s.log.Info("datacenter started", "dc", dc)
	return nil
}

// SetCheckStatus sets a check of dc to status (passing, warning or
// critical) with output, as if it had just run. A check the fake runs
// itself (HTTP, TCP) then holds that status, its runs ignored, until
// ResumeCheck; a TTL check's timer restarts.
func (s *Server) SetCheckStatus(dc, checkID, status, output string) error {
	d, err := s.dc(dc)
	if err != nil {
		return err
	}
	switch status {
	case api.HealthPassing, api.HealthWarning, api.HealthCritical:
	default:
		return fmt.Errorf("consul fake: status %q is not passing, warning or critical", status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := d.checks[checkID]
	if c == nil {
		return fmt.Errorf("consul fake: no check %q in %s", checkID, dc)
	}
	c.held = true
	d.setStatus(c, status, output)
	c.touchTTL()
	return nil
}

// ResumeCheck lets a check held by SetCheckStatus run again.
func (s *Server) ResumeCheck(dc, checkID string) error {
	d, err := s.dc(dc)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := d.checks[checkID]
	if c == nil {
		return fmt.Errorf("consul fake: no check %q in %s", checkID, dc)
	}
	c.held = false
	return nil
}

// Index returns dc's current Raft index.
func (s *Server) Index(dc string) uint64 {
	d, err := s.dc(dc)
	if err != nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return d.index
}

// RewindIndex makes every index of dc above to equal to, as when servers
// are restored from an older snapshot or a client switches to a server
// that is behind: a blocking query waiting on a higher index then waits
// its whole wait time and answers with an index lower than it asked for,
// which a client must take as a cue to start over from 0.
func (s *Server) RewindIndex(dc string, to uint64) error {
	d, err := s.dc(dc)
	if err != nil {
		return err
	}
	if to == 0 {
		to = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d.rewind(to)
	return nil
}

// Requests counts the requests dc's agent has received whose "METHOD
// /path" starts with prefix ("GET /v1/health/service/", "PUT ", "" for
// all).
func (s *Server) Requests(dc, prefix string) int {
	d, err := s.dc(dc)
	if err != nil {
		return 0
	}
	d.agent.mu.Lock()
	defer d.agent.mu.Unlock()
	n := 0
	for k, v := range d.agent.requests {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			n += v
		}
	}
	return n
}

func (s *Server) dc(name string) (*datacenter, error) {
	d := s.dcs[name]
	if d == nil {
		return nil, fmt.Errorf("consul fake: no datacenter %q", name)
	}
	return d, nil
}

// connState tracks connections so that StopDatacenter can drop them, and
// drops new ones while the agent is down.
func (a *agent) connState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		if a.down.Load() {
			_ = c.Close()
			return
		}
		a.mu.Lock()
		a.conns[c] = struct{}{}
		a.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		a.mu.Lock()
		delete(a.conns, c)
		a.mu.Unlock()
	}
}

func (a *agent) count(r *http.Request) {
	a.mu.Lock()
	a.requests[r.Method+" "+r.URL.Path]++
	a.mu.Unlock()
}
