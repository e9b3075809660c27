package consul

import (
	"fmt"
	"hash/fnv"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// datacenter is one datacenter's catalog, health and KV state, with its
// Raft-like index. Every field is guarded by Server.mu.
type datacenter struct {
	name      string
	node      api.Node
	nodeCheck api.HealthCheck // serfHealth, always passing
	agent     *agent

	index         uint64            // last write of any kind
	servicesIndex uint64            // last write to any service or check
	serviceIndex  map[string]uint64 // last write touching a service name
	kvIndex       uint64            // last write to the KV store, deletes included

	services map[string]*api.AgentService // by service ID
	checks   map[string]*check            // by check ID
	kv       map[string]*api.KVPair

	changed chan struct{} // closed and replaced on every write
	stopped bool
	stopCh  chan struct{} // closed while stopped
}

// check is a registered service check and the state of its runner.
type check struct {
	hc   api.HealthCheck // Definition always empty, as Consul's
	kind string          // "http", "tcp", "grpc" or "ttl"
	// intervalText and timeoutText are the Interval and Timeout Consul
	// reports beside a check ("" when not given), which api.HealthCheck
	// has no fields for.
	intervalText, timeoutText string
	def                       api.AgentServiceCheck
	interval                  time.Duration
	timeout                   time.Duration
	ttl                       time.Duration
	// deregisterAfter removes the service once the check has been
	// critical this long.
	deregisterAfter time.Duration
	criticalSince   time.Time

	held                bool // SetCheckStatus: runs ignored until ResumeCheck
	successes, failures int

	stop     chan struct{} // ends the runner (http, tcp)
	ttlTimer *time.Timer
	halted   bool
}

func newDatacenter(name string) *datacenter {
	nodeName := "fake-" + name
	d := &datacenter{
		name: name,
		node: api.Node{
			ID:              nodeID(name),
			Node:            nodeName,
			Address:         "127.0.0.1",
			Datacenter:      name,
			TaggedAddresses: map[string]string{"lan": "127.0.0.1", "wan": "127.0.0.1"},
			Meta:            map[string]string{"consul-network-segment": ""},
			CreateIndex:     1,
			ModifyIndex:     1,
		},
		nodeCheck: api.HealthCheck{
			Node: nodeName, CheckID: "serfHealth", Name: "Serf Health Status",
			Status: api.HealthPassing, Output: "Agent alive and reachable",
			ServiceTags: []string{}, CreateIndex: 1, ModifyIndex: 1,
		},
		index:         1,
		servicesIndex: 1,
		kvIndex:       1,
		serviceIndex:  map[string]uint64{},
		services:      map[string]*api.AgentService{},
		checks:        map[string]*check{},
		kv:            map[string]*api.KVPair{},
		changed:       make(chan struct{}),
		stopCh:        make(chan struct{}),
	}
	return d
}

// nodeID makes a stable UUID for the node of datacenter name.
func nodeID(name string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	v := h.Sum64()
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", uint32(v>>32), uint16(v>>16), uint16(v)&0xfff, uint16(v>>4)&0xfff, v&0xffffffffffff)
}

// notify wakes every blocking query waiting on d.
func (d *datacenter) notify() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// bumpServices records a write touching the services named.
func (d *datacenter) bumpServices(names ...string) uint64 {
	d.index++
	d.servicesIndex = d.index
	for _, n := range names {
		d.serviceIndex[n] = d.index
	}
	d.notify()
	return d.index
}

func (d *datacenter) bumpKV() uint64 {
	d.index++
	d.kvIndex = d.index
	d.notify()
	return d.index
}

// serviceIdx is the index a query about service name answers with: the
// last write touching it, or, for a name never seen, the services table's.
func (d *datacenter) serviceIdx(name string) uint64 {
	if i := d.serviceIndex[name]; i > 0 {
		return i
	}
	return d.servicesIndex
}

func (d *datacenter) rewind(to uint64) {
	clamp := func(p *uint64) {
		if *p > to {
			*p = to
		}
	}
	clamp(&d.index)
	clamp(&d.servicesIndex)
	clamp(&d.kvIndex)
	for k, v := range d.serviceIndex {
		d.serviceIndex[k] = min(v, to)
	}
	for _, s := range d.services {
		clamp(&s.CreateIndex)
		clamp(&s.ModifyIndex)
	}
	for _, c := range d.checks {
		clamp(&c.hc.CreateIndex)
		clamp(&c.hc.ModifyIndex)
	}
	for _, p := range d.kv {
		clamp(&p.CreateIndex)
		clamp(&p.ModifyIndex)
	}
	d.notify()
}

// badRequest is a client error, answered with 400 and its text.
type badRequest string

func (e badRequest) Error() string { return string(e) }

// register adds or replaces a service and its checks, as the agent's
// /v1/agent/service/register does. start launches the runners of new
// checks.
func (d *datacenter) register(reg *api.AgentServiceRegistration, replaceChecks bool, start func(*check)) error {
	if reg.Name == "" {
		return badRequest("Missing service name")
	}
	if reg.Kind != "" || reg.Connect != nil || reg.Proxy != nil {
		return badRequest("consul fake: Connect and non-typical service kinds are not supported")
	}
	id := reg.ID
	if id == "" {
		id = reg.Name
	}
	for k := range reg.Meta {
		if strings.HasPrefix(k, "consul-") {
			return badRequest(fmt.Sprintf("Invalid Service Meta: reserved key prefix 'consul-' in %q", k))
		}
	}
	weights := api.AgentWeights{Passing: 1, Warning: 1}
	if reg.Weights != nil {
		weights = *reg.Weights
	}
	svc := &api.AgentService{
		ID:                id,
		Service:           reg.Name,
		Tags:              nonNil(reg.Tags),
		Meta:              nonNilMap(reg.Meta),
		Port:              reg.Port,
		Address:           reg.Address,
		Weights:           weights,
		EnableTagOverride: reg.EnableTagOverride,
		Datacenter:        d.name,
	}

	var defs []*api.AgentServiceCheck
	if reg.Check != nil {
		defs = append(defs, reg.Check)
	}
	for _, c := range reg.Checks {
		if c != nil {
			defs = append(defs, c)
		}
	}
	checks := make([]*check, 0, len(defs))
	for i, def := range defs {
		c, err := newCheck(d, svc, def, i, len(defs))
		if err != nil {
			return err
		}
		checks = append(checks, c)
	}

	old := d.services[id]
	if old != nil && sameService(old, svc) && d.sameChecks(id, checks, replaceChecks) {
		return nil // an idempotent re-registration writes nothing
	}
	names := []string{svc.Service}
	if old != nil && old.Service != svc.Service {
		names = append(names, old.Service)
	}
	idx := d.bumpServices(names...)
	svc.CreateIndex, svc.ModifyIndex = idx, idx
	if old != nil {
		svc.CreateIndex = old.CreateIndex
	}
	d.services[id] = svc

	keep := map[string]bool{}
	for _, c := range checks {
		keep[c.hc.CheckID] = true
	}
	for cid, c := range d.checks {
		if c.hc.ServiceID != id || keep[cid] {
			continue
		}
		if replaceChecks {
			c.halt()
			delete(d.checks, cid)
			continue
		}
		c.hc.ServiceName, c.hc.ServiceTags = svc.Service, slices.Clone(svc.Tags)
	}
	for _, c := range checks {
		c.hc.CreateIndex, c.hc.ModifyIndex = idx, idx
		if prev := d.checks[c.hc.CheckID]; prev != nil {
			// A re-registration keeps what the check last said, even over
			// a Status given, as Consul restores it from the agent's state.
			c.hc.CreateIndex = prev.hc.CreateIndex
			c.hc.Status, c.hc.Output = prev.hc.Status, prev.hc.Output
			c.criticalSince = prev.criticalSince
			prev.halt()
		}
		if c.hc.Status == api.HealthCritical && c.criticalSince.IsZero() {
			c.criticalSince = time.Now()
		}
		d.checks[c.hc.CheckID] = c
		start(c)
	}
	return nil
}

// sameChecks reports whether registering checks for service id would
// change nothing.
func (d *datacenter) sameChecks(id string, checks []*check, replace bool) bool {
	for _, c := range checks {
		prev := d.checks[c.hc.CheckID]
		if prev == nil || prev.hc.ServiceID != id || prev.hc.Name != c.hc.Name ||
			!reflect.DeepEqual(prev.def, c.def) {
			return false
		}
	}
	if replace {
		for _, prev := range d.checks {
			if prev.hc.ServiceID == id && !slices.ContainsFunc(checks, func(c *check) bool { return c.hc.CheckID == prev.hc.CheckID }) {
				return false
			}
		}
	}
	return true
}

func sameService(a, b *api.AgentService) bool {
	x, y := *a, *b
	x.CreateIndex, x.ModifyIndex, y.CreateIndex, y.ModifyIndex = 0, 0, 0, 0
	return reflect.DeepEqual(x, y)
}

func newCheck(d *datacenter, svc *api.AgentService, def *api.AgentServiceCheck, i, n int) (*check, error) {
	cid := def.CheckID
	if cid == "" {
		cid = "service:" + svc.ID
		if n > 1 {
			cid += fmt.Sprintf(":%d", i+1)
		}
	}
	name := def.Name
	if name == "" {
		name = fmt.Sprintf("Service '%s' check", svc.Service)
	}
	dur := func(field, v string) (time.Duration, error) {
		if v == "" {
			return 0, nil
		}
		t, err := time.ParseDuration(v)
		if err != nil || t < 0 {
			return 0, badRequest(fmt.Sprintf("Invalid %s %q in check %q", field, v, cid))
		}
		return t, nil
	}
	c := &check{def: *def}
	var err error
	if c.interval, err = dur("Interval", def.Interval); err != nil {
		return nil, err
	}
	if c.timeout, err = dur("Timeout", def.Timeout); err != nil {
		return nil, err
	}
	if c.ttl, err = dur("TTL", def.TTL); err != nil {
		return nil, err
	}
	if c.deregisterAfter, err = dur("DeregisterCriticalServiceAfter", def.DeregisterCriticalServiceAfter); err != nil {
		return nil, err
	}
	if c.timeout == 0 {
		c.timeout = 10 * time.Second
	}
	switch {
	case def.TTL != "":
		c.kind = "ttl"
		if c.ttl <= 0 {
			return nil, badRequest(fmt.Sprintf("TTL must be > 0 for TTL checks (check %q)", cid))
		}
	case def.HTTP != "":
		c.kind = "http"
	case def.TCP != "":
		c.kind = "tcp"
	case def.GRPC != "":
		c.kind = "grpc"
	default:
		return nil, badRequest(fmt.Sprintf("consul fake: check %q: only HTTP, TCP, gRPC and TTL checks are supported", cid))
	}
	if c.kind != "ttl" && c.interval <= 0 {
		return nil, badRequest("Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks")
	}
	status := def.Status
	switch status {
	case "", api.HealthPassing, api.HealthWarning, api.HealthCritical:
	default:
		return nil, badRequest(fmt.Sprintf("Status for checks must 'passing', 'warning', 'critical' (check %q)", cid))
	}
	if status == "" {
		status = api.HealthCritical
	}
	// As a Consul agent records a service's check: the interval and
	// timeout given, as text, and no Definition. Consul fills Definition
	// only for checks registered through the catalog, so what an agent
	// probes cannot be read back from the API.
	c.hc = api.HealthCheck{
		Node:        d.node.Node,
		CheckID:     cid,
		Name:        name,
		Status:      status,
		Notes:       def.Notes,
		ServiceID:   svc.ID,
		ServiceName: svc.Service,
		ServiceTags: slices.Clone(svc.Tags),
		Type:        c.kind,
	}
	if def.Interval != "" {
		c.intervalText = c.interval.String()
	}
	if def.Timeout != "" {
		c.timeoutText = c.timeout.String()
	}
	return c, nil
}

// deregister removes a service and its checks; false if it is unknown.
func (d *datacenter) deregister(id string) bool {
	svc := d.services[id]
	if svc == nil {
		return false
	}
	delete(d.services, id)
	for cid, c := range d.checks {
		if c.hc.ServiceID == id {
			c.halt()
			delete(d.checks, cid)
		}
	}
	d.bumpServices(svc.Service)
	return true
}

// setStatus records a check's result. A change of status is a write
// (index, blocking queries); a new output alone is kept without one, as an
// agent syncs output-only changes to the servers lazily.
func (d *datacenter) setStatus(c *check, status, output string) {
	if status == c.hc.Status {
		c.hc.Output = output
		return
	}
	c.hc.Status, c.hc.Output = status, output
	if status == api.HealthCritical {
		c.criticalSince = time.Now()
	} else {
		c.criticalSince = time.Time{}
	}
	c.hc.ModifyIndex = d.bumpServices(c.hc.ServiceName)
}

// report applies a run's result through the check's success and failure
// thresholds, as Consul's status handler does.
func (d *datacenter) report(c *check, status, output string) {
	if status == api.HealthPassing || status == api.HealthWarning {
		c.successes++
		c.failures = 0
		if c.successes >= c.def.SuccessBeforePassing {
			d.setStatus(c, status, output)
		}
		return
	}
	c.failures++
	c.successes = 0
	warnAt := c.def.FailuresBeforeWarning
	if warnAt == 0 {
		warnAt = c.def.FailuresBeforeCritical
	}
	switch {
	case c.failures >= c.def.FailuresBeforeCritical:
		d.setStatus(c, status, output)
	case c.failures >= warnAt:
		d.setStatus(c, api.HealthWarning, output)
	}
}

// halt stops a check's runner and TTL timer.
func (c *check) halt() {
	if c.halted {
		return
	}
	c.halted = true
	if c.stop != nil {
		close(c.stop)
	}
	if c.ttlTimer != nil {
		c.ttlTimer.Stop()
	}
}

// touchTTL restarts a TTL check's timer after an update.
func (c *check) touchTTL() {
	if c.ttlTimer != nil && !c.halted {
		c.ttlTimer.Reset(c.ttl)
	}
}

// wireCheck is a check as Consul's HTTP API writes it (its
// structs.HealthCheck): api.HealthCheck's fields, the Interval and Timeout
// that type has no fields for, and Definition as an agent-registered check
// has it, empty ({}).
type wireCheck struct {
	api.HealthCheck
	Interval   string   `json:",omitempty"`
	Timeout    string   `json:",omitempty"`
	Definition struct{} // shadows api.HealthCheck's
}

// wire is c as the API writes it.
func (c *check) wire() wireCheck {
	hc := c.hc
	hc.ServiceTags = slices.Clone(hc.ServiceTags)
	return wireCheck{HealthCheck: hc, Interval: c.intervalText, Timeout: c.timeoutText}
}

// wireEntry is an element of /v1/health/service/{name} (api.ServiceEntry
// with wireChecks).
type wireEntry struct {
	Node    *api.Node
	Service *api.AgentService
	Checks  []wireCheck
}

// entries answers /v1/health/service/{name}: the instances of name with
// every tag in tags, with their node's and their own checks; only those
// whose checks all pass when passing.
func (d *datacenter) entries(name string, tags []string, passing bool) []*wireEntry {
	out := []*wireEntry{}
	for _, svc := range d.sortedServices(name, tags) {
		node := d.node
		node.TaggedAddresses = maps.Clone(d.node.TaggedAddresses)
		node.Meta = maps.Clone(d.node.Meta)
		nc := d.nodeCheck
		status := api.HealthChecks{&nc}
		checks := []wireCheck{{HealthCheck: nc}}
		for _, c := range d.serviceChecks(svc.ID) {
			hc := c.hc
			status = append(status, &hc)
			checks = append(checks, c.wire())
		}
		if passing && status.AggregatedStatus() != api.HealthPassing {
			continue
		}
		s := *svc
		s.Tags, s.Meta = slices.Clone(svc.Tags), maps.Clone(svc.Meta)
		out = append(out, &wireEntry{Node: &node, Service: &s, Checks: checks})
	}
	return out
}

// catalog answers /v1/catalog/service/{name}.
func (d *datacenter) catalog(name string, tags []string) []*api.CatalogService {
	out := []*api.CatalogService{}
	for _, svc := range d.sortedServices(name, tags) {
		out = append(out, &api.CatalogService{
			ID:                       d.node.ID,
			Node:                     d.node.Node,
			Address:                  d.node.Address,
			Datacenter:               d.name,
			TaggedAddresses:          maps.Clone(d.node.TaggedAddresses),
			NodeMeta:                 maps.Clone(d.node.Meta),
			ServiceID:                svc.ID,
			ServiceName:              svc.Service,
			ServiceAddress:           svc.Address,
			ServiceTags:              slices.Clone(svc.Tags),
			ServiceMeta:              maps.Clone(svc.Meta),
			ServicePort:              svc.Port,
			ServiceWeights:           api.Weights{Passing: svc.Weights.Passing, Warning: svc.Weights.Warning},
			ServiceEnableTagOverride: svc.EnableTagOverride,
			CreateIndex:              svc.CreateIndex,
			ModifyIndex:              svc.ModifyIndex,
		})
	}
	return out
}

// checksOf answers /v1/health/checks/{name}: the service checks of every
// instance of name.
func (d *datacenter) checksOf(name string) []wireCheck {
	out := []wireCheck{}
	for _, svc := range d.sortedServices(name, nil) {
		for _, c := range d.serviceChecks(svc.ID) {
			out = append(out, c.wire())
		}
	}
	return out
}

func (d *datacenter) sortedServices(name string, tags []string) []*api.AgentService {
	var out []*api.AgentService
	for _, svc := range d.services {
		if svc.Service == name && hasTags(svc.Tags, tags) {
			out = append(out, svc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (d *datacenter) serviceChecks(serviceID string) []*check {
	var out []*check
	for _, c := range d.checks {
		if c.hc.ServiceID == serviceID {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].hc.CheckID < out[j].hc.CheckID })
	return out
}

// hasTags matches tags as Consul does: every wanted tag, ignoring case.
func hasTags(have, want []string) bool {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, w) }) {
			return false
		}
	}
	return true
}

// serviceNames answers /v1/catalog/services.
func (d *datacenter) serviceNames() map[string][]string {
	out := map[string][]string{"consul": {}}
	for _, svc := range d.services {
		tags := out[svc.Service]
		if tags == nil {
			tags = []string{}
		}
		for _, t := range svc.Tags {
			if !slices.Contains(tags, t) {
				tags = append(tags, t)
			}
		}
		sort.Strings(tags)
		out[svc.Service] = tags
	}
	return out
}

// kvPut writes key, as PUT /v1/kv/{key} does; with cas, only if the key's
// ModifyIndex is *cas (0: only if it does not exist).
func (d *datacenter) kvPut(key string, value []byte, flags uint64, cas *uint64) bool {
	old := d.kv[key]
	if cas != nil {
		switch {
		case *cas == 0 && old != nil,
			*cas != 0 && old == nil,
			*cas != 0 && old.ModifyIndex != *cas:
			return false
		}
	}
	idx := d.bumpKV()
	p := &api.KVPair{Key: key, Value: slices.Clone(value), Flags: flags, CreateIndex: idx, ModifyIndex: idx}
	if old != nil {
		p.CreateIndex = old.CreateIndex
	}
	d.kv[key] = p
	return true
}

// kvDelete deletes key (or every key under it, with recurse); with cas,
// only if the key's ModifyIndex is *cas. As in Consul, a check-and-set
// delete of a key that does not exist succeeds.
func (d *datacenter) kvDelete(key string, recurse bool, cas *uint64) bool {
	if recurse {
		n := 0
		for k := range d.kv {
			if strings.HasPrefix(k, key) {
				delete(d.kv, k)
				n++
			}
		}
		if n > 0 {
			d.bumpKV()
		}
		return true
	}
	old := d.kv[key]
	if cas != nil && (old == nil || old.ModifyIndex != *cas) {
		return old == nil
	}
	if old != nil {
		delete(d.kv, key)
		d.bumpKV()
	}
	return true
}

func (d *datacenter) kvList(prefix string) []*api.KVPair {
	out := []*api.KVPair{}
	for k, p := range d.kv {
		if strings.HasPrefix(k, prefix) {
			c := *p
			c.Value = slices.Clone(p.Value)
			out = append(out, &c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func (d *datacenter) kvKeys(prefix, sep string) []string {
	seen := map[string]bool{}
	out := []string{}
	for k := range d.kv {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if sep != "" {
			if i := strings.Index(k[len(prefix):], sep); i >= 0 {
				k = k[:len(prefix)+i+len(sep)]
			}
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}
