package discovery_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/discovery"
	"github.com/codehub-dev/codehub/internal/testenv"
	consulfake "github.com/codehub-dev/codehub/internal/testfake/consul"
	"github.com/hashicorp/consul/api"
)

// env is the Consul the tests run against: the in-repo fake, the real
// agent CONSUL_HTTP_ADDR names, or real agents the test started (see the
// top of discovery_test.go).
type env struct {
	fake   *consulfake.Server    // nil against a real agent
	agents *testenv.ConsulAgents // the agents the test started, if it did
	addr   string                // the local agent, host:port
	token  string
	dc     string // the local datacenter's name
	// dc2 and dc2Addr are a second, federated datacenter and an agent of
	// it; empty when there is none.
	dc2, dc2Addr string
	// service is this test's own workspace service name, so that tests
	// sharing a real agent do not see each other's instances.
	service  string
	interval string // HTTP check interval
}

const fakeToken = "root-token"

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{service: "codehub-workspace-test-" + randomHex(4)}
	if addr := os.Getenv("CONSUL_HTTP_ADDR"); addr != "" {
		e.addr = strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://")
		e.token = os.Getenv("CONSUL_HTTP_TOKEN")
		e.dc2, e.dc2Addr = os.Getenv("CODEHUB_CONSUL_DC2"), os.Getenv("CODEHUB_CONSUL_DC2_ADDR")
		e.interval = "1s" // a real agent's floor
		self, err := e.agent(t, e.addr).Agent().Self()
		if err != nil {
			t.Fatalf("real Consul at %s: %v", e.addr, err)
		}
		e.dc, _ = self["Config"]["Datacenter"].(string)
		return e
	}
	e.fake = consulfake.Start(t, consulfake.Options{
		Datacenters: []string{"dc1", "dc2"}, ACLToken: fakeToken, ReapInterval: 20 * time.Millisecond,
	})
	e.addr, e.token, e.dc = e.fake.Addr("dc1"), fakeToken, "dc1"
	e.dc2, e.dc2Addr = "dc2", e.fake.Addr("dc2")
	e.interval = "50ms"
	return e
}

// newEnvTwoDCs is the env of a test that needs a second, WAN-federated
// datacenter: the one CODEHUB_CONSUL_DC2 and CODEHUB_CONSUL_DC2_ADDR name
// beside CONSUL_HTTP_ADDR's, else two real dev agents (dc1, dc2) started
// for the test when a consul binary is at hand (PATH, CONSUL_BIN), else
// the fake's two. A test against real agents (CONSUL_HTTP_ADDR) that
// finds neither a second datacenter nor a binary to start one is
// skipped, naming the missing binary.
func newEnvTwoDCs(t *testing.T) *env {
	t.Helper()
	given := os.Getenv("CONSUL_HTTP_ADDR") != ""
	if given && os.Getenv("CODEHUB_CONSUL_DC2") != "" {
		return newEnv(t)
	}
	bin, err := testenv.ConsulBinary()
	if err != nil {
		t.Fatal(err)
	}
	if bin == "" {
		if given {
			t.Skip("no consul binary (on PATH, or CONSUL_BIN) to start two federated agents, " +
				"and no second datacenter of CONSUL_HTTP_ADDR's (CODEHUB_CONSUL_DC2, CODEHUB_CONSUL_DC2_ADDR)")
		}
		return newEnv(t)
	}
	agents := testenv.StartConsulAgents(t, "dc1", "dc2")
	return &env{
		agents: agents, addr: agents.Addr("dc1"), dc: "dc1", dc2: "dc2", dc2Addr: agents.Addr("dc2"),
		service: "codehub-workspace-test-" + randomHex(4), interval: "1s",
	}
}

// needFake skips t against a real agent: it uses a fake-only helper.
func (e *env) needFake(t *testing.T, why string) {
	t.Helper()
	if e.fake == nil {
		t.Skip("needs the fake Consul: " + why)
	}
}

func (e *env) needDC2(t *testing.T) {
	t.Helper()
	if e.dc2 == "" || e.dc2Addr == "" {
		t.Fatal("CODEHUB_CONSUL_DC2 needs CODEHUB_CONSUL_DC2_ADDR, an agent of that datacenter")
	}
}

// agent is a client of the agent at addr with the env's token, for
// registering test services.
func (e *env) agent(t *testing.T, addr string) *api.Client {
	return e.clientAt(t, addr, e.token)
}

func (e *env) clientAt(t *testing.T, addr, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr, Scheme: "http", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// discovery returns a Discovery of the env's service, over a link that
// the test can cut, logging into t.
func (e *env) discovery(t *testing.T, cfg discovery.Config, token string) (*discovery.Discovery, *link) {
	t.Helper()
	l := newLink(t, e.addr)
	if cfg.Client == nil {
		cfg.Client = e.clientAt(t, l.addr(), token)
	}
	if cfg.Service == "" {
		cfg.Service = e.service
	}
	if cfg.Datacenter == "" {
		cfg.Datacenter = e.dc
	}
	d := discovery.New(cfg, testenv.Logger(t))
	t.Cleanup(d.Close)
	return d, l
}

// healthServer stands in for a workspace agent: its /health answers with
// the code the test sets, and wants the secret header the check sends.
type healthServer struct {
	*httptest.Server
	code atomic.Int32
}

const secret = "per-workspace-secret"

func newHealthServer(t *testing.T, healthy bool) *healthServer {
	t.Helper()
	h := &healthServer{}
	h.set(healthy)
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Codehub-Secret") != secret {
			http.Error(w, "no secret", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(int(h.code.Load()))
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *healthServer) set(healthy bool) {
	if healthy {
		h.code.Store(http.StatusOK)
	} else {
		h.code.Store(http.StatusInternalServerError)
	}
}

func (h *healthServer) hostPort() (string, int) {
	a := h.Listener.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

func (h *healthServer) addr() string { return h.Listener.Addr().String() }

// instance describes a workspace instance to register.
type instance struct {
	id          string // service ID
	workspaceID string
	byTag       bool // name the workspace in a tag rather than the meta
	allocID     string
	server      *healthServer // HTTP check against it; nil: a TTL check
}

// register registers inst with the agent at addr, and deregisters it when
// t ends.
func (e *env) register(t *testing.T, addr string, inst instance) {
	t.Helper()
	reg := &api.AgentServiceRegistration{
		ID:   inst.id,
		Name: e.service,
		Meta: map[string]string{"alloc_id": inst.allocID},
	}
	if inst.byTag {
		reg.Tags = []string{"workspace-" + inst.workspaceID}
	} else {
		reg.Meta["workspace_id"] = inst.workspaceID
	}
	if inst.server != nil {
		reg.Address, reg.Port = inst.server.hostPort()
		reg.Check = &api.AgentServiceCheck{
			CheckID: inst.id, HTTP: inst.server.URL + "/health", Interval: e.interval, Timeout: "2s",
			Header: map[string][]string{"X-Codehub-Secret": {secret}},
		}
	} else {
		reg.Address, reg.Port = "127.0.0.1", 1
		reg.Check = &api.AgentServiceCheck{CheckID: inst.id, TTL: "1h"}
	}
	c := e.agent(t, addr)
	if err := c.Agent().ServiceRegister(reg); err != nil {
		t.Fatalf("register %s: %v", inst.id, err)
	}
	t.Cleanup(func() { _ = c.Agent().ServiceDeregister(inst.id) })
}

// link is a TCP proxy to Consul that a test can cut, to play an
// unreachable agent (real or fake).
type link struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func newLink(t *testing.T, target string) *link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { l.serve(c) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		l.cut()
		wg.Wait()
	})
	return l
}

func (l *link) addr() string { return l.ln.Addr().String() }

func (l *link) serve(c net.Conn) {
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	l.conns[c] = struct{}{}
	l.mu.Unlock()
	defer l.forget(c)
	up, err := net.DialTimeout("tcp", l.target, 5*time.Second)
	if err != nil {
		return
	}
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		_ = up.Close()
		return
	}
	l.conns[up] = struct{}{}
	l.mu.Unlock()
	defer l.forget(up)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

func (l *link) forget(c net.Conn) {
	_ = c.Close()
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// cut drops every connection and refuses new ones until restore.
func (l *link) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = true
	for c := range l.conns {
		_ = c.Close()
	}
}

func (l *link) restore() {
	l.mu.Lock()
	l.down = false
	l.mu.Unlock()
}

// clock is a settable clock for staleness.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// eventually polls cond until it holds; its 20s guard only keeps a
// broken test from hanging, it asserts nothing about time.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, 20*time.Second, what, cond)
}

// eventuallyWithin is eventually with another guard, for what a real
// agent does on its own schedule.
func eventuallyWithin(t testing.TB, guard time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after %s", what, guard)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sentRegistration is a service registration as it left for Consul.
type sentRegistration struct {
	reg   api.AgentServiceRegistration
	query url.Values
}

// registrations records the service registrations a client sends.
type registrations struct {
	mu   sync.Mutex
	sent []sentRegistration
}

func (r *registrations) all() []sentRegistration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent)
}

// recordingClient is a client of the env's agent whose service
// registrations are recorded in rec on their way.
func (e *env) recordingClient(t *testing.T, rec *registrations) *api.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	c, err := api.NewClient(&api.Config{Address: e.addr, Scheme: "http", Token: e.token,
		HttpClient: &http.Client{Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodPut && req.URL.Path == "/v1/agent/service/register" && req.Body != nil {
				body, err := io.ReadAll(req.Body)
				req.Body.Close()
				if err != nil {
					return nil, err
				}
				req.Body = io.NopCloser(bytes.NewReader(body))
				var reg api.AgentServiceRegistration
				if err := json.Unmarshal(body, &reg); err != nil {
					t.Errorf("registration sent is not JSON: %v", err)
				}
				rec.mu.Lock()
				rec.sent = append(rec.sent, sentRegistration{reg: reg, query: req.URL.Query()})
				rec.mu.Unlock()
			}
			return tr.RoundTrip(req)
		})}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var bg = context.Background()
