package consul_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/testenv"
	consulfake "github.com/codehub-dev/codehub/internal/testfake/consul"
	"github.com/hashicorp/consul/api"
)

// eventually polls cond until it holds; guard only keeps a broken test
// from hanging, it asserts nothing about time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	const guard = 15 * time.Second
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after %s", what, guard)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func statusCode(err error) int {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestKVCheckAndSet(t *testing.T) {
	t.Parallel()
	s := consulfake.Start(t, consulfake.Options{})
	kv := s.Client(t, "dc1", "").KV()

	// ModifyIndex 0: set only if absent.
	ok, _, err := kv.CAS(&api.KVPair{Key: "lock/a", Value: []byte("one")}, nil)
	if err != nil || !ok {
		t.Fatalf("CAS create = %v, %v; want true", ok, err)
	}
	ok, _, err = kv.CAS(&api.KVPair{Key: "lock/a", Value: []byte("two")}, nil)
	if err != nil || ok {
		t.Fatalf("CAS create of an existing key = %v, %v; want false", ok, err)
	}
	p, _, err := kv.Get("lock/a", nil)
	if err != nil || string(p.Value) != "one" || p.CreateIndex != p.ModifyIndex {
		t.Fatalf("Get = %+v, %v", p, err)
	}
	// A non-zero index on a missing key fails.
	if ok, _, _ := kv.CAS(&api.KVPair{Key: "lock/none", ModifyIndex: p.ModifyIndex}, nil); ok {
		t.Fatal("CAS with an index on a missing key succeeded")
	}

	// Rounds of two concurrent writers holding the same ModifyIndex:
	// exactly one wins each round.
	for round := range 20 {
		cur, _, err := kv.Get("lock/a", nil)
		if err != nil {
			t.Fatal(err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for w := range 2 {
			wg.Go(func() {
				ok, _, err := kv.CAS(&api.KVPair{Key: "lock/a", Value: fmt.Appendf(nil, "r%d-w%d", round, w), ModifyIndex: cur.ModifyIndex}, nil)
				if err != nil {
					t.Error(err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d writers won, want exactly 1", round, n)
		}
		next, _, _ := kv.Get("lock/a", nil)
		if next.ModifyIndex <= cur.ModifyIndex || next.CreateIndex != p.CreateIndex {
			t.Fatalf("round %d: indexes %d->%d (create %d->%d)", round, cur.ModifyIndex, next.ModifyIndex, p.CreateIndex, next.CreateIndex)
		}
	}

	// Check-and-set delete.
	cur, _, _ := kv.Get("lock/a", nil)
	if ok, _, err := kv.DeleteCAS(&api.KVPair{Key: "lock/a", ModifyIndex: cur.ModifyIndex - 1}, nil); err != nil || ok {
		t.Fatalf("DeleteCAS with a stale index = %v, %v; want false", ok, err)
	}
	if ok, _, err := kv.DeleteCAS(&api.KVPair{Key: "lock/a", ModifyIndex: cur.ModifyIndex}, nil); err != nil || !ok {
		t.Fatalf("DeleteCAS = %v, %v; want true", ok, err)
	}
	if p, _, err := kv.Get("lock/a", nil); err != nil || p != nil {
		t.Fatalf("Get after delete = %+v, %v; want nil", p, err)
	}
	if ok, _, err := kv.DeleteCAS(&api.KVPair{Key: "lock/a", ModifyIndex: 5}, nil); err != nil || !ok {
		t.Fatalf("DeleteCAS of a missing key = %v, %v; want true (as Consul)", ok, err)
	}
}

func TestKVListKeysAndFlags(t *testing.T) {
	t.Parallel()
	s := consulfake.Start(t, consulfake.Options{})
	kv := s.Client(t, "dc1", "").KV()
	for _, k := range []string{"app/a", "app/b/c", "app/b/d", "other"} {
		if _, err := kv.Put(&api.KVPair{Key: k, Value: []byte(k), Flags: 7}, nil); err != nil {
			t.Fatal(err)
		}
	}
	pairs, _, err := kv.List("app/", nil)
	if err != nil || len(pairs) != 3 || pairs[0].Key != "app/a" || pairs[0].Flags != 7 {
		t.Fatalf("List = %v, %v", pairs, err)
	}
	keys, _, err := kv.Keys("app/", "/", nil)
	if err != nil || fmt.Sprint(keys) != "[app/a app/b/]" {
		t.Fatalf("Keys = %v, %v", keys, err)
	}
	if _, err := kv.DeleteTree("app/", nil); err != nil {
		t.Fatal(err)
	}
	if pairs, _, _ := kv.List("", nil); len(pairs) != 1 || pairs[0].Key != "other" {
		t.Fatalf("after DeleteTree: %v", pairs)
	}
}

// TestKVBlockingQuery: a query with the key's index waits for the key to
// change, and one that nothing answers comes back after its wait with the
// same index.
func TestKVBlockingQuery(t *testing.T) {
	t.Parallel()
	s := consulfake.Start(t, consulfake.Options{})
	kv := s.Client(t, "dc1", "").KV()
	if _, err := kv.Put(&api.KVPair{Key: "k", Value: []byte("v1")}, nil); err != nil {
		t.Fatal(err)
	}
	p, meta, err := kv.Get("k", nil)
	if err != nil || meta.LastIndex != p.ModifyIndex {
		t.Fatalf("Get = %+v %+v %v", p, meta, err)
	}

	// Nothing changes: the answer comes after the wait, same index.
	_, m2, err := kv.Get("k", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 20 * time.Millisecond})
	if err != nil || m2.LastIndex != meta.LastIndex {
		t.Fatalf("idle blocking Get = %+v, %v; want index %d", m2, err, meta.LastIndex)
	}
	// Another key changing does not wake a query on this one.
	before := s.Requests("dc1", "GET /v1/kv/k")
	type res struct {
		p    *api.KVPair
		meta *api.QueryMeta
		err  error
	}
	done := make(chan res, 1)
	go func() {
		p, m, err := kv.Get("k", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		done <- res{p, m, err}
	}()
	eventually(t, "blocking query sent", func() bool { return s.Requests("dc1", "GET /v1/kv/k") > before })
	if _, err := kv.Put(&api.KVPair{Key: "unrelated", Value: []byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("query on k answered after a write to another key: %+v", r.p)
	default:
	}
	// The query was in flight before the write, so a value of v2 shows it
	// waited for it.
	if _, err := kv.Put(&api.KVPair{Key: "k", Value: []byte("v2")}, nil); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || string(r.p.Value) != "v2" || r.meta.LastIndex <= meta.LastIndex {
		t.Fatalf("blocking Get = %+v %+v %v; want v2 at an index past %d", r.p, r.meta, r.err, meta.LastIndex)
	}

	// A delete wakes a query on the key too, and answers 404 with an index.
	go func() {
		p, m, err := kv.Get("k", &api.QueryOptions{WaitIndex: r.meta.LastIndex, WaitTime: time.Minute})
		done <- res{p, m, err}
	}()
	if _, err := kv.Delete("k", nil); err != nil {
		t.Fatal(err)
	}
	r2 := <-done
	if r2.err != nil || r2.p != nil || r2.meta.LastIndex <= r.meta.LastIndex {
		t.Fatalf("blocking Get across a delete = %+v %+v %v", r2.p, r2.meta, r2.err)
	}
}

func TestIndexHeaderAndBadParams(t *testing.T) {
	t.Parallel()
	s := consulfake.Start(t, consulfake.Options{})
	resp, err := http.Get(s.URL("dc1") + "/v1/health/service/nothing?passing=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	idx, err := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	if resp.StatusCode != 200 || err != nil || idx == 0 || string(body) != "[]\n" {
		t.Fatalf("GET health = %d %q index %q", resp.StatusCode, body, resp.Header.Get("X-Consul-Index"))
	}
	for _, q := range []string{"?index=x", "?index=1&wait=forever", "?filter=Service.ID==x"} {
		resp, err := http.Get(s.URL("dc1") + "/v1/health/service/nothing" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", q, resp.StatusCode)
		}
	}
}

// workspaceServer is a stand-in for an agent's health endpoint whose
// answer the test sets.
type workspaceServer struct {
	*httptest.Server
	code   atomic.Int32
	hits   atomic.Int64
	header atomic.Value // last X-Secret seen
}

func newWorkspaceServer(t *testing.T) *workspaceServer {
	ws := &workspaceServer{}
	ws.code.Store(http.StatusOK)
	ws.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.hits.Add(1)
		ws.header.Store(r.Header.Get("X-Secret"))
		w.WriteHeader(int(ws.code.Load()))
		_, _ = io.WriteString(w, "hello from "+r.URL.Path)
	}))
	t.Cleanup(ws.Close)
	return ws
}

// rawGet is the body of GET url, compacted.
func rawGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s %v", url, resp.StatusCode, b, err)
	}
	return strings.Join(strings.Fields(string(b)), "")
}

func checksOf(t *testing.T, c *api.Client, service string) api.HealthChecks {
	t.Helper()
	cs, _, err := c.Health().Checks(service, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestHTTPCheck(t *testing.T) {
	t.Parallel()
	s := consulfake.Start(t, consulfake.Options{})
	c := s.Client(t, "dc1", "")
	ws := newWorkspaceServer(t)
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "web-1", Name: "web", Port: 80, Tags: []string{"primary"},
		Check: &api.AgentServiceCheck{
			HTTP: ws.URL + "/health", Interval: "20ms",
			Header: map[string][]string{"X-Secret": {"s3cret"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	status := func() string { return checksOf(t, c, "web").AggregatedStatus() }
	eventually(t, "passing", func() bool { return status() == api.HealthPassing })
	if got := ws.header.Load(); got != "s3cret" {
		t.Errorf("check sent X-Secret %q", got)
	}
	cs := checksOf(t, c, "web")
	if len(cs) != 1 || cs[0].CheckID != "service:web-1" || cs[0].Type != "http" || cs[0].Name != "Service 'web' check" {
		t.Errorf("check = %+v", cs[0])
	}
	// As Consul, an agent-registered check's definition is not given back:
	// "Definition": {}, with the interval beside it.
	for _, path := range []string{"/v1/health/checks/web", "/v1/agent/checks", "/v1/health/service/web"} {
		body := rawGet(t, s.URL("dc1")+path)
		if !strings.Contains(body, `"Definition":{}`) || strings.Contains(body, `"HTTP":`) || !strings.Contains(body, `"Interval":"20ms"`) {
			t.Errorf("GET %s = %s; want an empty Definition and Interval 20ms", path, body)
		}
	}
	if ac, err := c.Agent().Checks(); err != nil || ac["service:web-1"] == nil || ac["service:web-1"].Type != "http" ||
		ac["service:web-1"].ServiceID != "web-1" || ac["service:web-1"].Definition.HTTP != "" {
		t.Errorf("agent checks = %+v, %v", ac, err)
	}
	ws.code.Store(http.StatusTooManyRequests)
	eventually(t, "warning", func() bool { return status() == api.HealthWarning })
	ws.code.Store(http.StatusInternalServerError)
	eventually(t, "critical", func() bool { return status() == api.HealthCritical })

	// ?passing hides it; ?tag filters.
	entries, _, err := c.Health().Service("web", "", true, nil)
	if err != nil || len(entries) != 0 {
		t.Fatalf("passing entries = %v, %v", entries, err)
	}
	entries, _, _ = c.Health().Service("web", "PRIMARY", false, nil)
	if len(entries) != 1 || len(entries[0].Checks) != 2 || entries[0].Checks[0].CheckID != "serfHealth" {
		t.Fatalf("entries by tag = %+v", entries)
	}
	if entries, _, _ = c.Health().Service("web", "other", false, nil); len(entries) != 0 {
		t.Fatalf("entries by another tag = %+v", entries)
	}

	// A held status survives the check's runs until resumed.
	ws.code.Store(http.StatusOK)
	eventually(t, "passing again", func() bool { return status() == api.HealthPassing })
	if err := s.SetCheckStatus("dc1", "service:web-1", api.HealthCritical, "held"); err != nil {
		t.Fatal(err)
	}
	runs := ws.hits.Load()
	eventually(t, "checked while held", func() bool { return ws.hits.Load() >= runs+3 })
	if st := status(); st != api.HealthCritical {
		t.Fatalf("held check is %s", st)
	}
	if err := s.ResumeCheck("dc1", "service:web-1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "passing after resume", func() bool { return status() == api.HealthPassing })
}

func TestTTLCheck(t *testing.T) {
	t.Parallel()
	s := consulfake.Start(t, consulfake.Options{})
	c := s.Client(t, "dc1", "")
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "job-1", Name: "job", Port: 1,
		Checks: api.AgentServiceChecks{{TTL: "150ms"}, {TTL: "1h", Status: api.HealthPassing}},
	})
	if err != nil {
		t.Fatal(err)
	}
	cs := checksOf(t, c, "job")
	if len(cs) != 2 || cs[0].CheckID != "service:job-1:1" || cs[0].Status != api.HealthCritical ||
		cs[1].CheckID != "service:job-1:2" || cs[1].Status != api.HealthPassing {
		t.Fatalf("checks = %v", cs)
	}
	if err := c.Agent().UpdateTTL("service:job-1:1", "fine", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	if st := checksOf(t, c, "job").AggregatedStatus(); st != api.HealthPassing {
		t.Fatalf("after pass: %s", st)
	}
	if err := c.Agent().FailTTL("service:job-1:2", "broken"); err != nil {
		t.Fatal(err)
	}
	if cs := checksOf(t, c, "job"); cs[1].Status != api.HealthCritical || cs[1].Output != "broken" {
		t.Fatalf("after fail: %+v", cs[1])
	}
	// Without updates the first check's TTL runs out.
	eventually(t, "TTL expired", func() bool {
		cs := checksOf(t, c, "job")
		return cs[0].Status == api.HealthCritical && cs[0].Output == "TTL expired"
	})
	if err := c.Agent().UpdateTTL("nope", "", api.HealthPassing); statusCode(err) != http.StatusNotFound {
		t.Errorf("update of an unknown check: %v", err)
	}
}

// TestHealthBlockingQuery: a query with the service's index waits for a
// change of its healthy set, and a change of another service does not
// wake it.
func TestHealthBlockingQuery(t *testing.T) {
	t.Parallel()
	s := consulfake.Start(t, consulfake.Options{})
	c := s.Client(t, "dc1", "")
	reg := func(id, name string) {
		t.Helper()
		err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: name, Port: 1,
			Check: &api.AgentServiceCheck{CheckID: id, TTL: "1h"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	reg("a", "svc")
	_, meta, err := c.Health().Service("svc", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	type res struct {
		entries []*api.ServiceEntry
		meta    *api.QueryMeta
		err     error
	}
	done := make(chan res, 1)
	before := s.Requests("dc1", "GET /v1/health/service/svc")
	go func() {
		e, m, err := c.Health().Service("svc", "", true, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		done <- res{e, m, err}
	}()
	eventually(t, "query in flight", func() bool { return s.Requests("dc1", "GET /v1/health/service/svc") > before })
	reg("b", "other")
	// Re-registering a unchanged is no write either.
	reg("a", "svc")
	select {
	case r := <-done:
		t.Fatalf("woken by an unrelated write: %+v", r.meta)
	default:
	}
	if err := c.Agent().PassTTL("a", ""); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || len(r.entries) != 1 || r.entries[0].Service.ID != "a" || r.meta.LastIndex <= meta.LastIndex {
		t.Fatalf("blocking health = %+v %+v %v", r.entries, r.meta, r.err)
	}
	// A service never seen answers too, with an index to block on.
	_, m, err := c.Health().Service("never", "", true, nil)
	if err != nil || m.LastIndex == 0 {
		t.Fatalf("unknown service: %+v %v", m, err)
	}
}

func TestCatalogAndDeregister(t *testing.T) {
	t.Parallel()
	s := consulfake.Start(t, consulfake.Options{})
	c := s.Client(t, "dc1", "")
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: "w1", Name: "codehub-workspace", Address: "10.0.0.5", Port: 9000,
		Tags: []string{"workspace-abc"}, Meta: map[string]string{"workspace_id": "abc"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cs, _, err := c.Catalog().Service("codehub-workspace", "workspace-abc", nil)
	if err != nil || len(cs) != 1 || cs[0].ServiceAddress != "10.0.0.5" || cs[0].ServicePort != 9000 ||
		cs[0].ServiceMeta["workspace_id"] != "abc" || cs[0].Datacenter != "dc1" {
		t.Fatalf("catalog = %+v, %v", cs, err)
	}
	svcs, _, err := c.Catalog().Services(nil)
	if err != nil || len(svcs["codehub-workspace"]) != 1 {
		t.Fatalf("services = %v, %v", svcs, err)
	}
	agentSvcs, err := c.Agent().Services()
	if err != nil || agentSvcs["w1"] == nil {
		t.Fatalf("agent services = %v, %v", agentSvcs, err)
	}
	if err := c.Agent().ServiceDeregister("w1"); err != nil {
		t.Fatal(err)
	}
	if cs, _, _ := c.Catalog().Service("codehub-workspace", "", nil); len(cs) != 0 {
		t.Fatalf("after deregister: %+v", cs)
	}
	if err := c.Agent().ServiceDeregister("w1"); statusCode(err) != http.StatusNotFound {
		t.Fatalf("deregister of an unknown service: %v", err)
	}
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "x",
		Check: &api.AgentServiceCheck{Args: []string{"/bin/true"}, Interval: "1s"}}); statusCode(err) != http.StatusBadRequest {
		t.Fatalf("script check: %v", err)
	}
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{Name: "x",
		Check: &api.AgentServiceCheck{HTTP: "http://127.0.0.1:1/"}}); statusCode(err) != http.StatusBadRequest {
		t.Fatalf("HTTP check without an interval: %v", err)
	}
}

func TestDeregisterCriticalServiceAfter(t *testing.T) {
	t.Parallel()
	s := consulfake.Start(t, consulfake.Options{ReapInterval: 10 * time.Millisecond})
	c := s.Client(t, "dc1", "")
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "gw", Name: "gw", Port: 1,
		Check: &api.AgentServiceCheck{TTL: "1h", Status: api.HealthPassing, DeregisterCriticalServiceAfter: "50ms"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Agent().FailTTL("service:gw", "down"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "reaped", func() bool {
		cs, _, err := c.Catalog().Service("gw", "", nil)
		return err == nil && len(cs) == 0
	})
}

func TestDatacenters(t *testing.T) {
	t.Parallel()
	s := consulfake.Start(t, consulfake.Options{Datacenters: []string{"dc1", "dc2"}})
	c1, c2 := s.Client(t, "dc1", ""), s.Client(t, "dc2", "")
	if dcs, err := c2.Catalog().Datacenters(); err != nil || fmt.Sprint(dcs) != "[dc2 dc1]" {
		t.Fatalf("datacenters from dc2 = %v, %v", dcs, err)
	}
	// Registered with dc2's agent: in dc2 only.
	if err := c2.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "r", Name: "svc", Port: 1}); err != nil {
		t.Fatal(err)
	}
	if e, _, _ := c1.Health().Service("svc", "", false, nil); len(e) != 0 {
		t.Fatalf("dc1 has %d instances", len(e))
	}
	e, _, err := c1.Health().Service("svc", "", false, &api.QueryOptions{Datacenter: "dc2"})
	if err != nil || len(e) != 1 || e[0].Node.Datacenter != "dc2" {
		t.Fatalf("?dc=dc2 from dc1 = %+v, %v", e, err)
	}
	if _, _, err := c1.Health().Service("svc", "", false, &api.QueryOptions{Datacenter: "dc9"}); statusCode(err) != 500 {
		t.Fatalf("unknown dc: %v", err)
	}
	// KV is per datacenter too.
	if _, err := c1.KV().Put(&api.KVPair{Key: "k", Value: []byte("2")}, &api.WriteOptions{Datacenter: "dc2"}); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := c2.KV().Get("k", nil); p == nil || string(p.Value) != "2" {
		t.Fatalf("dc2 KV = %+v", p)
	}

	// A stopped dc: its agent is unreachable, others have no path to it,
	// and a query blocked on it ends.
	_, meta, _ := c1.Health().Service("svc", "", false, &api.QueryOptions{Datacenter: "dc2"})
	blocked := make(chan error, 1)
	go func() {
		_, _, err := c1.Health().Service("svc", "", false, &api.QueryOptions{Datacenter: "dc2", WaitIndex: meta.LastIndex, WaitTime: time.Minute})
		blocked <- err
	}()
	if err := s.StopDatacenter("dc2"); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; statusCode(err) != 500 {
		t.Fatalf("blocked query on a stopped dc: %v", err)
	}
	if _, _, err := c1.Health().Service("svc", "", false, &api.QueryOptions{Datacenter: "dc2"}); statusCode(err) != 500 {
		t.Fatalf("query to a stopped dc: %v", err)
	}
	if _, _, err := c2.Health().Service("svc", "", false, nil); err == nil || statusCode(err) != 0 {
		t.Fatalf("stopped agent answered: %v", err)
	}
	if err := s.StartDatacenter("dc2"); err != nil {
		t.Fatal(err)
	}
	if e, _, err := c2.Health().Service("svc", "", false, nil); err != nil || len(e) != 1 {
		t.Fatalf("restarted dc2 = %v, %v", e, err)
	}
}

func TestACL(t *testing.T) {
	t.Parallel()
	s := consulfake.Start(t, consulfake.Options{ACLToken: "root"})
	// "anonymous", not "": an empty token would be CONSUL_HTTP_TOKEN's.
	root, anon, wrong := s.Client(t, "dc1", "root"), s.Client(t, "dc1", "anonymous"), s.Client(t, "dc1", "nope")
	reg := &api.AgentServiceRegistration{ID: "a", Name: "svc", Port: 1}

	err := anon.Agent().ServiceRegister(reg)
	var se api.StatusError
	if !errors.As(err, &se) || se.Code != 403 ||
		se.Body != `Permission denied: token with AccessorID '00000000-0000-0000-0000-000000000002' lacks permission 'service:write' on "svc"` {
		t.Fatalf("anonymous register: %v", err)
	}
	if err := wrong.Agent().ServiceRegister(reg); !errors.As(err, &se) || se.Code != 403 || se.Body != "ACL not found" {
		t.Fatalf("unknown token register: %v", err)
	}
	if err := root.Agent().ServiceRegister(reg); err != nil {
		t.Fatal(err)
	}
	// Reads: filtered for the anonymous token, refused for an unknown one.
	e, meta, err := anon.Health().Service("svc", "", false, nil)
	if err != nil || len(e) != 0 || !meta.ResultsFilteredByACLs {
		t.Fatalf("anonymous read = %v %+v %v", e, meta, err)
	}
	if _, _, err := wrong.Health().Service("svc", "", false, nil); statusCode(err) != 403 {
		t.Fatalf("unknown token read: %v", err)
	}
	if e, _, err := root.Health().Service("svc", "", false, nil); err != nil || len(e) != 1 {
		t.Fatalf("root read = %v %v", e, err)
	}
	if _, _, err := anon.KV().Get("k", nil); statusCode(err) != 403 {
		t.Fatalf("anonymous KV read: %v", err)
	}
	// No token at all is the anonymous token too.
	resp, err := http.Get(s.URL("dc1") + "/v1/health/service/svc")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "[]\n" || resp.Header.Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
		t.Fatalf("no token: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if _, err := anon.Catalog().Datacenters(); err != nil {
		t.Fatalf("datacenters need no token: %v", err)
	}
	if _, err := wrong.Catalog().Datacenters(); err != nil {
		t.Fatalf("datacenters do not look at the token: %v", err)
	}
}

func TestRewindIndex(t *testing.T) {
	t.Parallel()
	s := consulfake.Start(t, consulfake.Options{})
	c := s.Client(t, "dc1", "")
	for i := range 5 {
		if _, err := c.KV().Put(&api.KVPair{Key: "k", Value: []byte{byte(i)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	_, meta, _ := c.KV().Get("k", nil)
	if err := s.RewindIndex("dc1", 2); err != nil {
		t.Fatal(err)
	}
	_, m, err := c.KV().Get("k", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 20 * time.Millisecond})
	if err != nil || m.LastIndex >= meta.LastIndex {
		t.Fatalf("after rewind: %+v %v; want an index below %d", m, err, meta.LastIndex)
	}
}

// TestTCPAndGRPCChecks: a TCP check passes while something listens; a
// gRPC check is approximated the same way.
func TestTCPAndGRPCChecks(t *testing.T) {
	t.Parallel()
	s := consulfake.Start(t, consulfake.Options{})
	c := s.Client(t, "dc1", "")
	ws := newWorkspaceServer(t)
	addr := ws.Listener.Addr().String()
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "t", Name: "tcp", Port: 1,
		Checks: api.AgentServiceChecks{
			{TCP: addr, Interval: "20ms"},
			{GRPC: addr + "/health", Interval: "20ms"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "passing", func() bool { return checksOf(t, c, "tcp").AggregatedStatus() == api.HealthPassing })
	if cs := checksOf(t, c, "tcp"); cs[0].Type != "tcp" || cs[1].Type != "grpc" || cs[1].Definition.GRPC != "" {
		t.Fatalf("checks = %+v %+v", cs[0], cs[1])
	}
	ws.Close()
	eventually(t, "critical once closed", func() bool {
		cs := checksOf(t, c, "tcp")
		return cs[0].Status == api.HealthCritical && cs[1].Status == api.HealthCritical
	})
}

// TestFederation pins the fake's federation to Consul's: it runs against
// two real dev agents joined over the WAN wherever a consul binary is at
// hand (PATH, CONSUL_BIN), and against the fake's two datacenters
// otherwise. A service registered with dc2's agent is in dc2 only, found
// from dc1's agent with ?dc=dc2, with dc2's node; every agent lists both
// datacenters; an unknown datacenter is a 500; KV is per datacenter.
func TestFederation(t *testing.T) {
	t.Parallel()
	addrs := map[string]string{}
	bin, err := testenv.ConsulBinary()
	if err != nil {
		t.Fatal(err)
	}
	if bin != "" {
		a := testenv.StartConsulAgents(t, "dc1", "dc2")
		addrs["dc1"], addrs["dc2"] = a.Addr("dc1"), a.Addr("dc2")
	} else {
		s := consulfake.Start(t, consulfake.Options{Datacenters: []string{"dc1", "dc2"}})
		addrs["dc1"], addrs["dc2"] = s.Addr("dc1"), s.Addr("dc2")
	}
	client := func(dc string) *api.Client {
		c, err := api.NewClient(&api.Config{Address: addrs[dc], Scheme: "http", Token: "anonymous"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1, c2 := client("dc1"), client("dc2")
	for dc, c := range map[string]*api.Client{"dc1": c1, "dc2": c2} {
		dcs, err := c.Catalog().Datacenters()
		slices.Sort(dcs)
		if err != nil || fmt.Sprint(dcs) != "[dc1 dc2]" {
			t.Errorf("datacenters from %s = %v, %v", dc, dcs, err)
		}
	}
	name := "federation-test"
	if err := c2.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: name + "-1", Name: name, Port: 1,
		Meta: map[string]string{"k": "v"}, Check: &api.AgentServiceCheck{TTL: "1h", Status: api.HealthPassing}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c2.Agent().ServiceDeregister(name + "-1") })
	if e, _, err := c1.Health().Service(name, "", false, nil); err != nil || len(e) != 0 {
		t.Errorf("dc1's own = %d instances, %v; want none", len(e), err)
	}
	e, meta, err := c1.Health().Service(name, "", true, &api.QueryOptions{Datacenter: "dc2"})
	if err != nil || len(e) != 1 || e[0].Node.Datacenter != "dc2" || e[0].Service.Meta["k"] != "v" || meta.LastIndex == 0 {
		t.Fatalf("?dc=dc2 from dc1 = %+v, %+v, %v", e, meta, err)
	}
	cat, _, err := c1.Catalog().Service(name, "", &api.QueryOptions{Datacenter: "dc2"})
	if err != nil || len(cat) != 1 || cat[0].Datacenter != "dc2" || cat[0].ServiceID != name+"-1" {
		t.Errorf("catalog ?dc=dc2 from dc1 = %+v, %v", cat, err)
	}
	if _, _, err := c1.Health().Service(name, "", false, &api.QueryOptions{Datacenter: "dc9"}); statusCode(err) != http.StatusInternalServerError ||
		!strings.Contains(err.Error(), "No path to datacenter") {
		t.Errorf("unknown datacenter = %v, want 500 No path to datacenter", err)
	}
	key := "federation-test/k"
	if _, err := c1.KV().Put(&api.KVPair{Key: key, Value: []byte("2")}, &api.WriteOptions{Datacenter: "dc2"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = c2.KV().Delete(key, nil) })
	if p, _, err := c2.KV().Get(key, nil); err != nil || p == nil || string(p.Value) != "2" {
		t.Errorf("dc2's KV = %+v, %v", p, err)
	}
	if p, _, err := c1.KV().Get(key, nil); err != nil || p != nil {
		t.Errorf("dc1's KV = %+v, %v; want nothing", p, err)
	}
}
