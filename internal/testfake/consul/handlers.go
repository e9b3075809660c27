package consul

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// anonymousAccessor is the AccessorID of Consul's anonymous token, named
// in its "Permission denied" errors.
const anonymousAccessor = "00000000-0000-0000-0000-000000000002"

// anonymousSecret is the anonymous token's SecretID: sending it is the
// same as sending no token.
const anonymousSecret = "anonymous"

// Consul's bounds on blocking queries.
const (
	defaultWait = 5 * time.Minute
	maxWait     = 10 * time.Minute
)

// maxKVValue is Consul's default kv_max_value_size.
const maxKVValue = 512 * 1024

func (s *Server) routes(a *agent) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/agent/service/register", s.handleRegister(a))
	mux.HandleFunc("PUT /v1/agent/service/deregister/{id...}", s.handleDeregister(a))
	mux.HandleFunc("GET /v1/agent/services", s.handleAgentServices(a))
	mux.HandleFunc("GET /v1/agent/checks", s.handleAgentChecks(a))
	mux.HandleFunc("GET /v1/agent/self", s.handleAgentSelf(a))
	mux.HandleFunc("PUT /v1/agent/check/{op}/{id...}", s.handleCheckUpdate(a))
	mux.HandleFunc("GET /v1/health/service/{name}", s.handleHealthService(a))
	mux.HandleFunc("GET /v1/health/checks/{name}", s.handleHealthChecks(a))
	mux.HandleFunc("GET /v1/catalog/service/{name}", s.handleCatalogService(a))
	mux.HandleFunc("GET /v1/catalog/services", s.handleCatalogServices(a))
	mux.HandleFunc("GET /v1/catalog/datacenters", s.handleDatacenters(a))
	mux.HandleFunc("GET /v1/status/leader", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, "127.0.0.1:8300")
	})
	mux.HandleFunc("GET /v1/kv/{key...}", s.handleKVGet(a))
	mux.HandleFunc("PUT /v1/kv/{key...}", s.handleKVPut(a))
	mux.HandleFunc("DELETE /v1/kv/{key...}", s.handleKVDelete(a))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("endpoint not faked", "method", r.Method, "path", r.URL.Path)
		writeError(w, http.StatusNotFound, "consul fake: "+r.Method+" "+r.URL.Path+" is not implemented")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.count(r)
		if a.down.Load() {
			drop(w)
			return
		}
		if r.URL.Query().Has("filter") {
			writeError(w, http.StatusBadRequest, "consul fake: ?filter is not supported")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// drop closes the request's connection without an answer, as a dead agent.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			_ = c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// caller is who a request acts as.
type caller struct {
	anonymous bool // the anonymous token under ACLs: reads filtered, writes denied
}

// authorize resolves the request's token; it answers 403 "ACL not found"
// itself for an unknown token.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (caller, bool) {
	if s.opts.ACLToken == "" {
		return caller{}, true
	}
	tok := r.Header.Get("X-Consul-Token")
	if tok == "" {
		if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			tok = b
		}
	}
	if tok == "" {
		tok = r.URL.Query().Get("token")
	}
	switch tok {
	case "", anonymousSecret:
		return caller{anonymous: true}, true
	case s.opts.ACLToken:
		return caller{}, true
	}
	writeError(w, http.StatusForbidden, "ACL not found")
	return caller{}, false
}

func denied(w http.ResponseWriter, perm, resource string) {
	writeError(w, http.StatusForbidden, fmt.Sprintf(
		"Permission denied: token with AccessorID '%s' lacks permission '%s' on %q", anonymousAccessor, perm, resource))
}

// target is the datacenter a query is about: ?dc=, or the agent's own.
// It answers 500 "No path to datacenter" itself for an unknown or stopped
// one.
func (s *Server) target(w http.ResponseWriter, r *http.Request, a *agent) (*datacenter, bool) {
	name := r.URL.Query().Get("dc")
	if name == "" {
		name = a.dc
	}
	d := s.dcs[name]
	if d != nil {
		s.mu.Lock()
		stopped := d.stopped
		s.mu.Unlock()
		if !stopped {
			return d, true
		}
	}
	writeError(w, http.StatusInternalServerError, "No path to datacenter")
	return nil, false
}

// answer is what a read returns: a body and the index it reflects.
type answer struct {
	body     any
	raw      []byte // written as is instead of body (KV ?raw)
	index    uint64
	status   int  // 0: 200
	filtered bool // ACLs hid some results
}

// serveRead answers a read, blocking when the request asks for it: with
// ?index=N it waits until query's index passes N, or ?wait= (plus jitter)
// runs out, then answers with the current state. query runs with s.mu
// held.
func (s *Server) serveRead(w http.ResponseWriter, r *http.Request, d *datacenter, query func() answer) {
	minIndex, wait, err := blockingParams(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var timeout <-chan time.Time
	if minIndex > 0 {
		t := time.NewTimer(wait + rand.N(wait/16+1))
		defer t.Stop()
		timeout = t.C
	}
	for {
		s.mu.Lock()
		ans := query()
		changed, stopCh, stopped := d.changed, d.stopCh, d.stopped
		s.mu.Unlock()
		if stopped {
			writeError(w, http.StatusInternalServerError, "No path to datacenter")
			return
		}
		if minIndex == 0 || ans.index > minIndex {
			writeAnswer(w, ans)
			return
		}
		select {
		case <-changed:
		case <-timeout:
			s.mu.Lock()
			ans = query()
			s.mu.Unlock()
			writeAnswer(w, ans)
			return
		case <-stopCh:
			writeError(w, http.StatusInternalServerError, "No path to datacenter")
			return
		case <-r.Context().Done():
			return
		case <-s.done:
			drop(w)
			return
		}
	}
}

func blockingParams(r *http.Request) (uint64, time.Duration, error) {
	q := r.URL.Query()
	var index uint64
	if v := q.Get("index"); v != "" {
		i, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, errors.New("Invalid index")
		}
		index = i
	}
	wait := defaultWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, 0, errors.New("Invalid wait time")
		}
		wait = min(d, maxWait)
	}
	return index, wait, nil
}

func writeAnswer(w http.ResponseWriter, ans answer) {
	h := w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(max(ans.index, 1), 10))
	h.Set("X-Consul-KnownLeader", "true")
	h.Set("X-Consul-LastContact", "0")
	h.Set("X-Consul-Effective-Consistency", "leader")
	if ans.filtered {
		h.Set("X-Consul-Results-Filtered-By-ACLs", "true")
	}
	switch {
	case ans.status == http.StatusNotFound:
		w.WriteHeader(http.StatusNotFound)
	case ans.raw != nil:
		h.Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(ans.raw)
	default:
		writeJSON(w, ans.body)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

func (s *Server) handleRegister(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authorize(w, r)
		if !ok {
			return
		}
		var reg api.AgentServiceRegistration
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&reg); err != nil {
			writeError(w, http.StatusBadRequest, "Request decode failed: "+err.Error())
			return
		}
		if who.anonymous {
			denied(w, "service:write", reg.Name)
			return
		}
		replace := false
		if v := r.URL.Query().Get("replace-existing-checks"); v != "" {
			replace, _ = strconv.ParseBool(v)
		}
		d := s.dcs[a.dc]
		s.mu.Lock()
		err := d.register(&reg, replace, func(c *check) { s.startCheck(d, c) })
		s.mu.Unlock()
		var bad badRequest
		switch {
		case errors.As(err, &bad):
			writeError(w, http.StatusBadRequest, bad.Error())
			return
		case err != nil:
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		s.log.Debug("service registered", "dc", a.dc, "name", reg.Name, "id", reg.ID)
	}
}

func (s *Server) handleDeregister(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authorize(w, r)
		if !ok {
			return
		}
		id := r.PathValue("id")
		d := s.dcs[a.dc]
		s.mu.Lock()
		defer s.mu.Unlock()
		svc := d.services[id]
		if svc == nil {
			writeError(w, http.StatusNotFound, fmt.Sprintf("Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id))
			return
		}
		if who.anonymous {
			denied(w, "service:write", svc.Service)
			return
		}
		d.deregister(id)
		s.log.Debug("service deregistered", "dc", a.dc, "id", id)
	}
}

func (s *Server) handleAgentServices(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authorize(w, r)
		if !ok {
			return
		}
		d := s.dcs[a.dc]
		s.mu.Lock()
		defer s.mu.Unlock()
		out := map[string]*api.AgentService{}
		if !who.anonymous {
			for id, svc := range d.services {
				c := *svc
				out[id] = &c
			}
		}
		if who.anonymous && len(d.services) > 0 {
			w.Header().Set("X-Consul-Results-Filtered-By-ACLs", "true")
		}
		writeJSON(w, out)
	}
}

func (s *Server) handleAgentChecks(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authorize(w, r)
		if !ok {
			return
		}
		d := s.dcs[a.dc]
		s.mu.Lock()
		defer s.mu.Unlock()
		// Consul answers with its own HealthCheck type here too, which
		// api.AgentCheck reads a subset of.
		out := map[string]wireCheck{}
		if !who.anonymous {
			for id, c := range d.checks {
				out[id] = c.wire()
			}
		}
		writeJSON(w, out)
	}
}

func (s *Server) handleAgentSelf(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authorize(w, r)
		if !ok {
			return
		}
		d := s.dcs[a.dc]
		if who.anonymous {
			denied(w, "agent:read", d.node.Node)
			return
		}
		writeJSON(w, map[string]map[string]any{
			"Config": {
				"Datacenter": a.dc, "PrimaryDatacenter": s.opts.Datacenters[0],
				"NodeName": d.node.Node, "NodeID": d.node.ID, "Server": true, "Version": "1.21.0-fake",
			},
			"Member": {"Name": d.node.Node, "Addr": "127.0.0.1", "Port": 8301, "Status": 1},
		})
	}
}

// handleCheckUpdate serves /v1/agent/check/pass|warn|fail/{id} (?note=)
// and /v1/agent/check/update/{id} ({"Status","Output"}), for TTL checks.
func (s *Server) handleCheckUpdate(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authorize(w, r)
		if !ok {
			return
		}
		var status, output string
		switch op := r.PathValue("op"); op {
		case "pass", "warn", "fail":
			status = map[string]string{"pass": api.HealthPassing, "warn": api.HealthWarning, "fail": api.HealthCritical}[op]
			output = r.URL.Query().Get("note")
		case "update":
			var body struct{ Status, Output string }
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&body); err != nil {
				writeError(w, http.StatusBadRequest, "Request decode failed: "+err.Error())
				return
			}
			status, output = body.Status, body.Output
			switch status {
			case api.HealthPassing, api.HealthWarning, api.HealthCritical:
			default:
				writeError(w, http.StatusBadRequest, "Invalid check status: '"+status+"'")
				return
			}
		default:
			writeError(w, http.StatusNotFound, "consul fake: check operation "+op+" is not implemented")
			return
		}
		id := r.PathValue("id")
		d := s.dcs[a.dc]
		s.mu.Lock()
		defer s.mu.Unlock()
		c := d.checks[id]
		switch {
		case c == nil:
			writeError(w, http.StatusNotFound, fmt.Sprintf("Unknown check ID %q. Ensure that the check ID is passed, not the check name.", id))
		case who.anonymous:
			denied(w, "service:write", c.hc.ServiceName)
		case c.kind != "ttl":
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("CheckID %q does not have associated TTL", id))
		default:
			d.setStatus(c, status, output)
			c.touchTTL()
		}
	}
}

func tagsOf(r *http.Request) []string { return r.URL.Query()["tag"] }

func passingOnly(r *http.Request) (bool, error) {
	q := r.URL.Query()
	if !q.Has("passing") {
		return false, nil
	}
	v := q.Get("passing")
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errors.New("Invalid value for ?passing")
	}
	return b, nil
}

func (s *Server) handleHealthService(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authorize(w, r)
		if !ok {
			return
		}
		d, ok := s.target(w, r, a)
		if !ok {
			return
		}
		passing, err := passingOnly(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		name, tags := r.PathValue("name"), tagsOf(r)
		s.serveRead(w, r, d, func() answer {
			out := d.entries(name, tags, passing)
			ans := answer{body: out, index: d.serviceIdx(name)}
			if who.anonymous && len(out) > 0 {
				ans.body, ans.filtered = []*wireEntry{}, true
			}
			return ans
		})
	}
}

func (s *Server) handleHealthChecks(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authorize(w, r)
		if !ok {
			return
		}
		d, ok := s.target(w, r, a)
		if !ok {
			return
		}
		name := r.PathValue("name")
		s.serveRead(w, r, d, func() answer {
			out := d.checksOf(name)
			ans := answer{body: out, index: d.serviceIdx(name)}
			if who.anonymous && len(out) > 0 {
				ans.body, ans.filtered = []wireCheck{}, true
			}
			return ans
		})
	}
}

func (s *Server) handleCatalogService(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authorize(w, r)
		if !ok {
			return
		}
		d, ok := s.target(w, r, a)
		if !ok {
			return
		}
		name, tags := r.PathValue("name"), tagsOf(r)
		s.serveRead(w, r, d, func() answer {
			out := d.catalog(name, tags)
			ans := answer{body: out, index: d.serviceIdx(name)}
			if who.anonymous && len(out) > 0 {
				ans.body, ans.filtered = []*api.CatalogService{}, true
			}
			return ans
		})
	}
}

func (s *Server) handleCatalogServices(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authorize(w, r)
		if !ok {
			return
		}
		d, ok := s.target(w, r, a)
		if !ok {
			return
		}
		s.serveRead(w, r, d, func() answer {
			ans := answer{body: d.serviceNames(), index: d.servicesIndex}
			if who.anonymous {
				ans.body, ans.filtered = map[string][]string{}, true
			}
			return ans
		})
	}
}

// handleDatacenters lists every datacenter, the agent's own first (Consul
// sorts them by round-trip time). As in Consul, the token is not even
// looked at.
func (s *Server) handleDatacenters(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out := []string{a.dc}
		for _, dc := range s.opts.Datacenters {
			if dc != a.dc {
				out = append(out, dc)
			}
		}
		writeJSON(w, out)
	}
}

func kvKey(r *http.Request) string { return r.PathValue("key") }

func (s *Server) handleKVGet(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authorize(w, r)
		if !ok {
			return
		}
		d, ok := s.target(w, r, a)
		if !ok {
			return
		}
		key, q := kvKey(r), r.URL.Query()
		switch {
		case q.Has("keys"):
			sep := q.Get("separator")
			s.serveRead(w, r, d, func() answer {
				keys := d.kvKeys(key, sep)
				ans := answer{body: keys, index: d.kvIndex}
				if who.anonymous && len(keys) > 0 {
					ans.body, ans.filtered = []string{}, true
				}
				if len(keys) == 0 {
					ans.status = http.StatusNotFound
				}
				return ans
			})
		case q.Has("recurse"):
			s.serveRead(w, r, d, func() answer {
				pairs := d.kvList(key)
				ans := answer{body: pairs, index: d.kvIndex}
				if who.anonymous && len(pairs) > 0 {
					pairs, ans.body, ans.filtered = nil, []*api.KVPair{}, true
				}
				if len(pairs) == 0 {
					ans.status = http.StatusNotFound
				}
				return ans
			})
		default:
			if who.anonymous {
				denied(w, "key:read", key)
				return
			}
			raw := q.Has("raw")
			s.serveRead(w, r, d, func() answer {
				p := d.kv[key]
				if p == nil {
					return answer{index: d.kvIndex, status: http.StatusNotFound}
				}
				c := *p
				if raw {
					return answer{raw: append([]byte{}, p.Value...), index: p.ModifyIndex}
				}
				return answer{body: []*api.KVPair{&c}, index: p.ModifyIndex}
			})
		}
	}
}

func (s *Server) handleKVPut(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authorize(w, r)
		if !ok {
			return
		}
		d, ok := s.target(w, r, a)
		if !ok {
			return
		}
		key, q := kvKey(r), r.URL.Query()
		if key == "" {
			writeError(w, http.StatusBadRequest, "Missing key name")
			return
		}
		if who.anonymous {
			denied(w, "key:write", key)
			return
		}
		if q.Has("acquire") || q.Has("release") {
			writeError(w, http.StatusBadRequest, "consul fake: sessions (?acquire, ?release) are not supported")
			return
		}
		var flags uint64
		if v := q.Get("flags"); v != "" {
			f, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				writeError(w, http.StatusBadRequest, "Invalid flags: "+err.Error())
				return
			}
			flags = f
		}
		cas, err := casParam(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		value, err := io.ReadAll(io.LimitReader(r.Body, maxKVValue+1))
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if len(value) > maxKVValue {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body too large, max size: %d bytes", maxKVValue))
			return
		}
		s.mu.Lock()
		ok = d.kvPut(key, value, flags, cas)
		s.mu.Unlock()
		writeJSON(w, ok)
	}
}

func (s *Server) handleKVDelete(a *agent) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authorize(w, r)
		if !ok {
			return
		}
		d, ok := s.target(w, r, a)
		if !ok {
			return
		}
		key := kvKey(r)
		if who.anonymous {
			denied(w, "key:write", key)
			return
		}
		cas, err := casParam(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.mu.Lock()
		ok = d.kvDelete(key, r.URL.Query().Has("recurse"), cas)
		s.mu.Unlock()
		writeJSON(w, ok)
	}
}

func casParam(r *http.Request) (*uint64, error) {
	q := r.URL.Query()
	if !q.Has("cas") {
		return nil, nil
	}
	v, err := strconv.ParseUint(q.Get("cas"), 10, 64)
	if err != nil {
		return nil, errors.New("Invalid cas index: " + err.Error())
	}
	return &v, nil
}
