// The tests run against the in-repo fake Consul (internal/testfake/consul)
// with two datacenters and ACLs on. To run them against a real agent on
// this machine (it must reach the tests' HTTP servers on 127.0.0.1):
//
//	consul agent -dev -hcl 'acl { enabled = true
//	  default_policy = "deny"
//	  tokens { initial_management = "root" } }' &
//	CONSUL_HTTP_ADDR=127.0.0.1:8500 CONSUL_HTTP_TOKEN=root \
//	  go test -count=1 ./internal/discovery
//
// CONSUL_HTTP_TOKEN needs service:write on codehub-workspace-test-* and
// the gateway test's service (a management token does); without ACLs,
// leave it unset and the ACL test is skipped. Each test uses its own
// service name and deregisters what it registered.
//
// The second-datacenter test runs on two real dev agents (dc1 and dc2,
// joined over the WAN on loopback ports of their own) that it starts
// itself whenever a consul binary is on PATH or in CONSUL_BIN, with or
// without CONSUL_HTTP_ADDR, and stops dc2's agent to play a datacenter
// going away; otherwise on the fake's two datacenters. CODEHUB_CONSUL_DC2
// and CODEHUB_CONSUL_DC2_ADDR (an agent in it) name a second datacenter
// already federated with CONSUL_HTTP_ADDR's instead; that one is not
// stopped.
//
// Against a real agent, the steps that need the fake's helpers (holding
// a check's status at the server, rewinding the index, counting requests
// at the server) are skipped, saying so; the gateway's reaping waits out
// Consul's one-minute floor there.
package discovery_test

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/discovery"
	consulfake "github.com/codehub-dev/codehub/internal/testfake/consul"
	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/consul/api"
)

// TestResolvePassingInstance: of two instances of a workspace, Resolve
// finds the passing one; when its check fails, Resolve says not ok (the
// time this takes is logged, not asserted); the other recovering takes
// over; with both passing, the registry's alloc and address are preferred.
func TestResolvePassingInstance(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := newHealthServer(t, true), newHealthServer(t, false)
	e.register(t, e.addr, instance{id: "ws1-a", workspaceID: "ws1", allocID: "alloc-a", server: a})
	e.register(t, e.addr, instance{id: "ws1-b", workspaceID: "ws1", allocID: "alloc-b", byTag: true, server: b})
	d, _ := e.discovery(t, discovery.Config{}, e.token)
	w := &workspace.Workspace{ID: "ws1"}
	resolve := func() (string, bool) { return d.Resolve(bg, w) }

	eventually(t, "resolving to a", func() bool { addr, ok := resolve(); return ok && addr == a.addr() })

	failed := time.Now()
	a.set(false)
	eventually(t, "not ok once a fails", func() bool { _, ok := resolve(); return !ok })
	t.Logf("measured: health endpoint failing -> Resolve not ok: %v (check interval %s, included)",
		time.Since(failed).Round(time.Millisecond), e.interval)

	b.set(true)
	eventually(t, "resolving to b", func() bool { addr, ok := resolve(); return ok && addr == b.addr() })

	a.set(true)
	eventually(t, "both passing", func() bool {
		st := d.Status()
		return len(st) == 1 && st[0].Instances == 2
	})
	for _, tc := range []struct {
		name string
		w    *workspace.Workspace
		want string
	}{
		{"newest", &workspace.Workspace{ID: "ws1"}, b.addr()},
		{"registry address", &workspace.Workspace{ID: "ws1", Address: a.addr()}, a.addr()},
		{"registry alloc", &workspace.Workspace{ID: "ws1", Address: b.addr(), Meta: map[string]string{"alloc_id": "alloc-a"}}, a.addr()},
		{"gone alloc, known address", &workspace.Workspace{ID: "ws1", Address: a.addr(), Meta: map[string]string{"alloc_id": "alloc-x"}}, a.addr()},
	} {
		if got, ok := d.Resolve(bg, tc.w); !ok || got != tc.want {
			t.Errorf("%s: Resolve = %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
	if _, ok := d.Resolve(bg, &workspace.Workspace{ID: "ws2"}); ok {
		t.Error("an unregistered workspace resolved")
	}
	if _, ok := d.Resolve(bg, nil); ok {
		t.Error("nil resolved")
	}
}

// TestResolveFollowsCheckStatus: TTL checks set through the agent API, and
// the fake's status override, move a workspace in and out of Resolve.
func TestResolveFollowsCheckStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(t, e.addr, instance{id: "ttl-1", workspaceID: "ws-ttl"})
	d, _ := e.discovery(t, discovery.Config{}, e.token)
	w := &workspace.Workspace{ID: "ws-ttl"}
	if _, ok := d.Resolve(bg, w); ok {
		t.Fatal("resolved before its check passed")
	}
	agent := e.agent(t, e.addr).Agent()
	if err := agent.UpdateTTL("ttl-1", "ok", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ok after pass", func() bool { _, ok := d.Resolve(bg, w); return ok })
	if err := agent.UpdateTTL("ttl-1", "sick", api.HealthWarning); err != nil {
		t.Fatal(err)
	}
	eventually(t, "not ok on warning (passing only)", func() bool { _, ok := d.Resolve(bg, w); return !ok })
	if err := agent.UpdateTTL("ttl-1", "ok", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ok again", func() bool { _, ok := d.Resolve(bg, w); return ok })

	if e.fake == nil {
		return
	}
	// Set critical at the server, once the watch's next blocking query is
	// in flight: what is left is that query's latency.
	var took []time.Duration
	for range 5 {
		sent := e.requests()
		eventually(t, "query in flight", func() bool { return e.requests() > sent })
		began := time.Now()
		if err := e.fake.SetCheckStatus("dc1", "ttl-1", api.HealthCritical, "held"); err != nil {
			t.Fatal(err)
		}
		for _, ok := d.Resolve(bg, w); ok; _, ok = d.Resolve(bg, w) {
			if time.Since(began) > 20*time.Second {
				t.Fatal("still ok 20s after the check turned critical")
			}
			time.Sleep(20 * time.Microsecond)
		}
		took = append(took, time.Since(began))
		if err := e.fake.SetCheckStatus("dc1", "ttl-1", api.HealthPassing, "ok"); err != nil {
			t.Fatal(err)
		}
		eventually(t, "ok once passing", func() bool { _, ok := d.Resolve(bg, w); return ok })
	}
	slices.Sort(took)
	t.Logf("measured: check critical at the server -> Resolve not ok: min %v, median %v, max %v over %d flips",
		took[0].Round(time.Microsecond), took[len(took)/2].Round(time.Microsecond), took[len(took)-1].Round(time.Microsecond), len(took))
}

// TestResolveStormUsesBlockingQueries: while nothing changes, any number
// of Resolves cost no Consul request beyond the watch's one pending
// blocking query; a change costs one answer and one new query.
func TestResolveStormUsesBlockingQueries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.register(t, e.addr, instance{id: "storm-1", workspaceID: "ws-storm"})
	agent := e.agent(t, e.addr).Agent()
	if err := agent.UpdateTTL("storm-1", "", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	endpoints := map[string]int{}
	d, _ := e.discovery(t, discovery.Config{OnCall: func(ep string, err error) {
		mu.Lock()
		endpoints[ep]++
		mu.Unlock()
	}}, e.token)
	w := &workspace.Workspace{ID: "ws-storm"}
	eventually(t, "resolving", func() bool { _, ok := d.Resolve(bg, w); return ok })

	calls := d.Calls()
	served := e.requests()
	const n = 1000
	var wg sync.WaitGroup
	var misses sync.Map
	for g := range 50 {
		wg.Go(func() {
			for range n / 50 {
				if _, ok := d.Resolve(bg, w); !ok {
					misses.Store(g, true)
				}
			}
		})
	}
	wg.Wait()
	misses.Range(func(k, _ any) bool { t.Errorf("goroutine %v: Resolve not ok during the storm", k); return true })
	dCalls, dServed := d.Calls()-calls, e.requests()-served
	t.Logf("measured: %d Resolves -> %d Consul API calls by discovery, %d requests at the fake (-1: real agent)", n, dCalls, dServed)
	if dCalls > 1 || (e.fake != nil && dServed > 1) {
		t.Errorf("%d Resolves made %d calls (%d at the server); want O(1)", n, dCalls, dServed)
	}

	// A change: the pending query answers, and one more is sent.
	calls = d.Calls()
	if err := agent.UpdateTTL("storm-1", "", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	eventually(t, "not ok", func() bool { _, ok := d.Resolve(bg, w); return !ok })
	if got := d.Calls() - calls; got < 1 || got > 3 {
		t.Errorf("one change cost %d calls", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if endpoints["health.service"] == 0 || len(endpoints) != 1 {
		t.Errorf("OnCall saw %v", endpoints)
	}
}

// requests counts the health queries the fake's local agent received, or
// -1 against a real agent.
func (e *env) requests() int {
	if e.fake == nil {
		return -1
	}
	return e.fake.Requests("dc1", "GET /v1/health/service/")
}

// TestResolveOtherDatacenter: a workspace whose meta names a datacenter is
// looked for there (?dc=), with a watch of its own; that datacenter going
// away affects only its workspaces, after StaleFor.
func TestResolveOtherDatacenter(t *testing.T) {
	t.Parallel()
	e := newEnvTwoDCs(t)
	e.needDC2(t)
	local, remote := newHealthServer(t, true), newHealthServer(t, true)
	remoteInst := instance{id: "remote-1", workspaceID: "ws-remote", server: remote}
	e.register(t, e.addr, instance{id: "local-1", workspaceID: "ws-local", server: local})
	e.register(t, e.dc2Addr, remoteInst)
	clk := newClock()
	d, _ := e.discovery(t, discovery.Config{Now: clk.Now, StaleFor: 30 * time.Second,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, e.token)
	wl := &workspace.Workspace{ID: "ws-local"}
	wr := &workspace.Workspace{ID: "ws-remote", Meta: map[string]string{"datacenter": e.dc2}}

	eventually(t, "remote resolving", func() bool { addr, ok := d.Resolve(bg, wr); return ok && addr == remote.addr() })
	eventually(t, "local resolving", func() bool { addr, ok := d.Resolve(bg, wl); return ok && addr == local.addr() })
	if _, ok := d.Resolve(bg, &workspace.Workspace{ID: "ws-remote"}); ok {
		t.Error("a dc2 workspace resolved in the local datacenter")
	}
	// Naming the local datacenter explicitly shares the local watch.
	if _, ok := d.Resolve(bg, &workspace.Workspace{ID: "ws-local", Meta: map[string]string{"datacenter": e.dc}}); !ok {
		t.Error("local workspace with its datacenter named did not resolve")
	}
	st := d.Status()
	if len(st) != 2 || st[0].Datacenter != e.dc || st[1].Datacenter != e.dc2 {
		t.Fatalf("watches = %+v", st)
	}
	dcs, err := d.Datacenters(bg)
	if err != nil || !slices.Contains(dcs, e.dc) || !slices.Contains(dcs, e.dc2) {
		t.Errorf("Datacenters = %v, %v", dcs, err)
	}

	stop, start := e.stopDC2(t)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "dc2 watch failing", func() bool { return !d.Status()[1].FailingSince.IsZero() })
	if _, ok := d.Resolve(bg, wr); !ok {
		t.Error("dc2 workspace dropped before StaleFor")
	}
	clk.Advance(31 * time.Second)
	if _, ok := d.Resolve(bg, wr); ok {
		t.Error("dc2 workspace still served past StaleFor")
	}
	if _, ok := d.Resolve(bg, wl); !ok {
		t.Error("local workspace lost with dc2")
	}
	if err := start(); err != nil {
		t.Fatal(err)
	}
	if e.fake == nil {
		// A restarted dev agent starts empty, as a Nomad client's agent
		// whose allocations register again.
		e.register(t, e.dc2Addr, remoteInst)
	}
	eventually(t, "dc2 workspace back", func() bool { _, ok := d.Resolve(bg, wr); return ok })
}

// stopDC2 returns how to stop the second datacenter and start it again:
// the fake's, or the agent the test started. Agents named by the
// environment are not the test's to stop: t is skipped there.
func (e *env) stopDC2(t *testing.T) (stop, start func() error) {
	t.Helper()
	switch {
	case e.fake != nil:
		return func() error { return e.fake.StopDatacenter(e.dc2) }, func() error { return e.fake.StartDatacenter(e.dc2) }
	case e.agents != nil:
		return func() error { return e.agents.Stop(e.dc2) }, func() error { return e.agents.Start(e.dc2) }
	}
	t.Skip("stopping the second datacenter: only the fake's, or agents the test starts itself (unset CODEHUB_CONSUL_DC2 to start them)")
	return nil, nil
}

// TestResolveConsulDown: with the agent unreachable, the last healthy set
// is served for StaleFor, then nothing; the watch recovers by itself.
func TestResolveConsulDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	srv := newHealthServer(t, true)
	e.register(t, e.addr, instance{id: "down-1", workspaceID: "ws-down", server: srv})
	clk := newClock()
	d, l := e.discovery(t, discovery.Config{Now: clk.Now, StaleFor: 30 * time.Second,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, e.token)
	w := &workspace.Workspace{ID: "ws-down"}
	eventually(t, "resolving", func() bool { _, ok := d.Resolve(bg, w); return ok })

	l.cut()
	eventually(t, "watch failing", func() bool { st := d.Status(); return !st[0].FailingSince.IsZero() })
	clk.Advance(29 * time.Second)
	if addr, ok := d.Resolve(bg, w); !ok || addr != srv.addr() {
		t.Fatalf("within StaleFor: Resolve = %q, %v; want the last known %q", addr, ok, srv.addr())
	}
	if st := d.Status()[0]; !st.Serving || st.LastError == "" {
		t.Errorf("status while failing = %+v", st)
	}
	clk.Advance(2 * time.Second)
	if _, ok := d.Resolve(bg, w); ok {
		t.Fatal("still served past StaleFor")
	}
	l.restore()
	eventually(t, "resolving again", func() bool { _, ok := d.Resolve(bg, w); return ok })
	if st := d.Status()[0]; !st.FailingSince.IsZero() || st.LastError != "" {
		t.Errorf("status after recovery = %+v", st)
	}

	// A Discovery whose first query fails answers not ok at once, rather
	// than after FirstWait.
	d2, l2 := e.discovery(t, discovery.Config{FirstWait: time.Hour}, e.token)
	l2.cut()
	if _, ok := d2.Resolve(bg, w); ok {
		t.Error("resolved with Consul never reached")
	}
	d.Close()
	if _, ok := d.Resolve(bg, w); ok {
		t.Error("resolved after Close")
	}
}

// TestIndexGoesBackwards: when Consul's index goes backwards the watch
// starts over from the lower index, and still sees changes.
func TestIndexGoesBackwards(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.needFake(t, "rewinding the index")
	e.register(t, e.addr, instance{id: "rw-1", workspaceID: "ws-rw"})
	agent := e.agent(t, e.addr).Agent()
	for range 5 { // a few writes, so that there is room to go back
		_ = agent.UpdateTTL("rw-1", "", api.HealthWarning)
		_ = agent.UpdateTTL("rw-1", "", api.HealthPassing)
	}
	d, _ := e.discovery(t, discovery.Config{WaitTime: 100 * time.Millisecond}, e.token)
	w := &workspace.Workspace{ID: "ws-rw"}
	eventually(t, "resolving", func() bool { _, ok := d.Resolve(bg, w); return ok })
	high := d.Status()[0].Index
	if err := e.fake.RewindIndex("dc1", 2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "index reset", func() bool { return d.Status()[0].Index < high })
	if err := agent.UpdateTTL("rw-1", "", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	eventually(t, "change seen after the reset", func() bool { _, ok := d.Resolve(bg, w); return !ok })
}

// TestRegisterGateway: the gateway registers with an HTTP check on
// /healthz that Consul runs and that passes (the stand-in answers 503 on
// any other path), appears in the catalog, and goes on Deregister; one
// that stays critical is reaped by DeregisterCriticalServiceAfter.
// Consul does not give an agent's check definition back (its Definition
// is empty), so what was asked of it is read from the request sent.
func TestRegisterGateway(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var healthy sync.Map
	healthy.Store("ok", true)
	gw := newHealthServer(t, true)
	gw.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, _ := healthy.Load("ok"); r.URL.Path != "/healthz" || ok != true {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
		}
	})
	host, port := gw.hostPort()
	rec := &registrations{}
	d, _ := e.discovery(t, discovery.Config{Client: e.recordingClient(t, rec)}, e.token)
	name := e.service + "-gateway"
	interval, _ := time.ParseDuration(e.interval)
	reg := discovery.Registration{
		Name: name, Address: host, Port: port, Tags: []string{"codehub"},
		Meta: map[string]string{"version": "test"}, Interval: interval,
	}
	if err := d.RegisterGateway(bg, reg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Deregister(bg, reg.ServiceID()) })
	// Twice is fine (a restart, a config reload).
	if err := d.RegisterGateway(bg, reg); err != nil {
		t.Fatal(err)
	}
	sent := rec.all()
	if len(sent) != 2 {
		t.Fatalf("%d registrations sent, want 2", len(sent))
	}
	for _, r := range sent {
		chk := r.reg.Check
		if r.query.Get("replace-existing-checks") != "true" || r.reg.ID != reg.ServiceID() || chk == nil ||
			chk.CheckID != reg.CheckID() || chk.HTTP != "http://"+host+":"+strconv.Itoa(port)+"/healthz" ||
			chk.Interval != interval.String() || chk.DeregisterCriticalServiceAfter != time.Minute.String() {
			t.Errorf("registration sent: %+v (check %+v, query %s)", r.reg, chk, r.query.Encode())
		}
	}

	c := e.agent(t, e.addr)
	eventually(t, "gateway check passing", func() bool {
		cs, _, err := c.Health().Checks(name, nil)
		return err == nil && len(cs) == 1 && cs[0].Status == api.HealthPassing
	})
	cs, _, _ := c.Health().Checks(name, nil)
	if cs[0].CheckID != reg.CheckID() || cs[0].ServiceID != reg.ServiceID() || cs[0].Type != "http" {
		t.Errorf("health check = %+v", cs[0])
	}
	checks, err := c.Agent().Checks()
	if ac := checks[reg.CheckID()]; err != nil || ac == nil || ac.Name != "codehub gateway health" || ac.Type != "http" ||
		ac.ServiceID != reg.ServiceID() || ac.Status != api.HealthPassing {
		t.Errorf("agent check %s = %+v, %v", reg.CheckID(), ac, err)
	}
	cat, _, err := c.Catalog().Service(name, "codehub", nil)
	if err != nil || len(cat) != 1 || cat[0].ServiceID != reg.ServiceID() || cat[0].ServicePort != port ||
		cat[0].ServiceMeta["version"] != "test" {
		t.Fatalf("catalog = %+v, %v", cat, err)
	}
	if err := d.Deregister(bg, reg.ServiceID()); err != nil {
		t.Fatal(err)
	}
	if cat, _, _ := c.Catalog().Service(name, "", nil); len(cat) != 0 {
		t.Fatalf("after Deregister: %+v", cat)
	}
	if err := d.Deregister(bg, reg.ServiceID()); err != nil {
		t.Errorf("second Deregister: %v", err)
	}
	for _, bad := range []discovery.Registration{{Address: "0.0.0.0", Port: 1}, {Address: "::", Port: 1}, {Port: 1}, {Address: "10.0.0.1"}} {
		if err := d.RegisterGateway(bg, bad); !errors.Is(err, discovery.ErrNoAddress) {
			t.Errorf("RegisterGateway(%+v) = %v; want ErrNoAddress", bad, err)
		}
	}

	// Reaping. A real agent raises DeregisterCriticalServiceAfter to a
	// minute and reaps every 30s: up to a minute and a half there.
	limit := 20 * time.Second
	reg.DeregisterAfter = 100 * time.Millisecond
	if e.fake == nil {
		reg.DeregisterAfter, limit = time.Minute, 3*time.Minute
	}
	if err := d.RegisterGateway(bg, reg); err != nil {
		t.Fatal(err)
	}
	eventually(t, "registered", func() bool {
		cat, _, _ := c.Catalog().Service(name, "", nil)
		return len(cat) == 1
	})
	healthy.Store("ok", false)
	critical := time.Now()
	eventuallyWithin(t, limit, "reaped once critical", func() bool {
		cat, _, err := c.Catalog().Service(name, "", nil)
		return err == nil && len(cat) == 0
	})
	t.Logf("measured: gateway reaped %s after its health endpoint failed (DeregisterCriticalServiceAfter %s)",
		time.Since(critical).Round(time.Millisecond), reg.DeregisterAfter)
}

// TestACLToken: without the token Consul hides the workspaces (and
// Resolve finds none), an unknown token is refused with 403, and the
// gateway cannot register without one.
func TestACLToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if e.token == "" {
		t.Skip("ACLs not on (set CONSUL_HTTP_TOKEN)")
	}
	e.register(t, e.addr, instance{id: "acl-1", workspaceID: "ws-acl"})
	if err := e.agent(t, e.addr).Agent().UpdateTTL("acl-1", "", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	w := &workspace.Workspace{ID: "ws-acl"}

	good, _ := e.discovery(t, discovery.Config{}, e.token)
	eventually(t, "resolving with the token", func() bool { _, ok := good.Resolve(bg, w); return ok })

	// "anonymous", not "": an empty token would be CONSUL_HTTP_TOKEN's.
	anon, _ := e.discovery(t, discovery.Config{}, "anonymous")
	if _, ok := anon.Resolve(bg, w); ok {
		t.Error("resolved without a token")
	}
	if st := anon.Status()[0]; !st.FilteredByACLs || st.LastError != "" {
		t.Errorf("anonymous status = %+v; want results filtered by ACLs", st)
	}
	var se api.StatusError
	err := anon.RegisterGateway(bg, discovery.Registration{Name: e.service + "-gw", Address: "127.0.0.1", Port: 1})
	if !errors.As(err, &se) || se.Code != http.StatusForbidden {
		t.Errorf("anonymous RegisterGateway = %v; want 403", err)
	}

	wrong, _ := e.discovery(t, discovery.Config{}, "not-a-token")
	if _, ok := wrong.Resolve(bg, w); ok {
		t.Error("resolved with an unknown token")
	}
	if st := wrong.Status()[0]; st.Serving || st.LastError == "" {
		t.Errorf("unknown-token status = %+v; want a 403 error", st)
	}
	// Listing datacenters needs no ACL: Consul does not look at the token.
	if dcs, err := wrong.Datacenters(bg); err != nil || !slices.Contains(dcs, e.dc) {
		t.Errorf("Datacenters with an unknown token = %v, %v", dcs, err)
	}
}

// BenchmarkResolve measures Resolve in steady state against the fake, and
// the Consul calls it costs (consul-calls/op, expected 0).
func BenchmarkResolve(b *testing.B) {
	fake := consulfake.Start(b, consulfake.Options{})
	c := fake.Client(b, "dc1", "")
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "bench-1", Name: discovery.DefaultService, Address: "127.0.0.1", Port: 1,
		Meta:  map[string]string{"workspace_id": "ws-bench"},
		Check: &api.AgentServiceCheck{TTL: "1h", Status: api.HealthPassing},
	})
	if err != nil {
		b.Fatal(err)
	}
	d := discovery.New(discovery.Config{Client: c}, nil)
	defer d.Close()
	w := &workspace.Workspace{ID: "ws-bench"}
	if _, ok := d.Resolve(bg, w); !ok {
		b.Fatal("not resolving")
	}
	calls := d.Calls()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := d.Resolve(bg, w); !ok {
				b.Error("not ok")
				return
			}
		}
	})
	b.ReportMetric(float64(d.Calls()-calls)/float64(b.N), "consul-calls/op")
}
