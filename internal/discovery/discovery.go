// Package discovery finds workspaces through Consul, and registers the
// gateway there.
//
// Workspaces run as Nomad allocations register a service (by default
// "codehub-workspace") carrying their workspace ID, in the service meta
// workspace_id or a tag workspace-<id>. Resolve answers from a local cache
// of the healthy (all checks passing) instances, kept fresh by one
// blocking query per (service, datacenter): a long poll that Consul
// answers as soon as the set changes. So a workspace whose check turns
// critical stops receiving traffic within that query's latency, and a
// storm of requests costs Consul nothing: the cache answers them all.
//
// When Consul cannot be reached, the last healthy set is served for
// Config.StaleFor, then nothing is: better to refuse than to route to
// instances nobody has vouched for in a while.
//
// Consul's word is trusted: whoever may register the workspace service
// can draw a workspace's traffic, with its secret header. Only Nomad's
// token should hold service:write on it; the gateway's needs service:read
// on it and service:write on the gateway's own service.
package discovery

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// Defaults of Config.
const (
	DefaultService     = "codehub-workspace"
	DefaultWaitTime    = time.Minute
	DefaultStaleFor    = 30 * time.Second
	DefaultFirstWait   = 5 * time.Second
	DefaultRetryMin    = 250 * time.Millisecond
	DefaultRetryMax    = 10 * time.Second
	DefaultMinInterval = 100 * time.Millisecond
)

// Meta keys and tag prefix that tie a Consul service instance to a
// workspace, and the workspace meta keys that Resolve reads.
const (
	MetaWorkspaceID = "workspace_id"
	MetaAllocID     = "alloc_id"
	TagPrefix       = "workspace-"

	// WorkspaceDatacenter names, in Workspace.Meta, the datacenter a
	// workspace runs in (default: the gateway's).
	WorkspaceDatacenter = "datacenter"
	// WorkspaceAllocID names, in Workspace.Meta, the Nomad allocation the
	// registry knows; its instance is preferred while it is healthy.
	WorkspaceAllocID = "alloc_id"
)

// Config configures a Discovery. Zero fields take their defaults.
type Config struct {
	// Client (required) reaches the local Consul agent, with the ACL
	// token: it needs service:read on Service, and service:write on the
	// gateway's service to register it.
	Client *api.Client
	// Service is the workspaces' service name (default "codehub-workspace").
	Service string
	// Datacenter is the gateway's own (default: the agent's). Workspaces
	// without a datacenter in their meta are looked for there; naming it
	// lets a workspace that says so explicitly share the same watch.
	Datacenter string
	// WaitTime bounds each blocking query (default 1m; Consul caps it at
	// 10m). Shorter costs one idle request per WaitTime per datacenter, and
	// bounds how long a silently dead connection goes unnoticed.
	WaitTime time.Duration
	// StaleFor is how long the last known healthy set is served while
	// Consul fails to answer (default 30s).
	StaleFor time.Duration
	// FirstWait bounds how long the first Resolve for a datacenter waits
	// for the first answer (default 5s; the request's context may end it
	// sooner).
	FirstWait time.Duration
	// RetryMin and RetryMax bound the exponential backoff, with jitter,
	// between failed queries (defaults 250ms and 10s).
	RetryMin, RetryMax time.Duration
	// MinInterval is the least time between two queries of one watch
	// (default 100ms), so that a set changing constantly costs at most
	// 1/MinInterval queries a second.
	MinInterval time.Duration
	// Now is the clock used for staleness (default time.Now).
	Now func() time.Time
	// OnCall, when set, is called after every Consul API call with its
	// endpoint ("health.service", "catalog.datacenters",
	// "agent.service.register", "agent.service.deregister") and error,
	// to feed a metric.
	OnCall func(endpoint string, err error)
}

// Discovery resolves workspaces to healthy addresses through Consul. It is
// safe for concurrent use; Close stops its watches.
type Discovery struct {
	cfg Config
	log hclog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.RWMutex
	watches map[string]*watch // by datacenter; "" is the local one
	closed  bool
	calls   atomic.Uint64
}

var _ workspace.Resolver = (*Discovery)(nil)

// New returns a Discovery over cfg.Client. Nothing is asked of Consul
// until the first Resolve or call.
func New(cfg Config, log hclog.Logger) *Discovery {
	if cfg.Service == "" {
		cfg.Service = DefaultService
	}
	if cfg.WaitTime <= 0 {
		cfg.WaitTime = DefaultWaitTime
	}
	cfg.WaitTime = min(cfg.WaitTime, 10*time.Minute)
	if cfg.StaleFor <= 0 {
		cfg.StaleFor = DefaultStaleFor
	}
	if cfg.FirstWait <= 0 {
		cfg.FirstWait = DefaultFirstWait
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	if cfg.MinInterval < 0 {
		cfg.MinInterval = 0
	} else if cfg.MinInterval == 0 {
		cfg.MinInterval = DefaultMinInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Discovery{
		cfg:     cfg,
		log:     log.Named("discovery"),
		ctx:     ctx,
		cancel:  cancel,
		watches: map[string]*watch{},
	}
}

// Resolve returns the address (host:port) of a healthy instance of w, in
// the datacenter w.Meta["datacenter"] names (default the gateway's), or
// ok false when none is known: none registered, none passing its checks,
// or Consul unreachable for longer than StaleFor. When several instances
// are healthy it prefers the allocation w.Meta["alloc_id"] names, then the
// address w already has (so that connections stay where they are), then
// the newest.
//
// Resolve answers from memory; only the first call for a datacenter waits
// (at most FirstWait, or until ctx ends) for Consul's first answer.
func (d *Discovery) Resolve(ctx context.Context, w *workspace.Workspace) (addr string, ok bool) {
	if w == nil || w.ID == "" {
		return "", false
	}
	wt := d.watch(w.Meta[WorkspaceDatacenter])
	if wt == nil || !wt.waitReady(ctx, d.cfg.FirstWait) {
		return "", false
	}
	return wt.lookup(w, d.cfg.Now())
}

// watch returns the watch of datacenter dc, starting it on first use; nil
// once closed.
func (d *Discovery) watch(dc string) *watch {
	if dc == d.cfg.Datacenter {
		dc = ""
	}
	d.mu.RLock()
	wt, closed := d.watches[dc], d.closed
	d.mu.RUnlock()
	if wt != nil || closed {
		return wt
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	if wt = d.watches[dc]; wt != nil {
		return wt
	}
	qdc := dc
	if qdc == "" {
		qdc = d.cfg.Datacenter
	}
	wt = newWatch(d, d.cfg.Service, qdc)
	d.watches[dc] = wt
	d.wg.Add(1)
	go wt.run(d.ctx)
	return wt
}

// Datacenters lists the datacenters Consul knows, nearest first, for
// status pages.
func (d *Discovery) Datacenters(ctx context.Context) ([]string, error) {
	var out []string
	_, err := d.cfg.Client.Raw().Query("/v1/catalog/datacenters", &out, (&api.QueryOptions{}).WithContext(ctx))
	d.called("catalog.datacenters", err)
	if err != nil {
		return nil, wrap("list datacenters", err)
	}
	return out, nil
}

// Calls is the number of Consul API calls made so far (monotonic, for a
// counter metric or a per-operation difference).
func (d *Discovery) Calls() uint64 { return d.calls.Load() }

func (d *Discovery) called(endpoint string, err error) {
	d.calls.Add(1)
	if d.cfg.OnCall != nil {
		d.cfg.OnCall(endpoint, err)
	}
}

// WatchStatus describes one watch, for status pages.
type WatchStatus struct {
	Service string `json:"service"`
	// Datacenter is as queried: "" for the agent's own when
	// Config.Datacenter is empty.
	Datacenter string `json:"datacenter"`
	// Index is the Consul index the next blocking query waits on.
	Index uint64 `json:"index"`
	// Instances and Workspaces count the healthy instances known, and the
	// workspaces they serve.
	Instances  int `json:"instances"`
	Workspaces int `json:"workspaces"`
	// LastContact is when Consul last answered; FailingSince, when set,
	// when it started failing, with LastError the latest failure.
	LastContact  time.Time `json:"lastContact,omitzero"`
	FailingSince time.Time `json:"failingSince,omitzero"`
	LastError    string    `json:"lastError,omitempty"`
	// Serving says whether Resolve answers from this watch: it has an
	// answer, fresh or no older than StaleFor into a failure.
	Serving bool `json:"serving"`
	// FilteredByACLs says that Consul hid instances from the token: it
	// lacks service:read on the workspaces' service.
	FilteredByACLs bool `json:"filteredByACLs,omitempty"`
}

// Status describes every watch, sorted by datacenter.
func (d *Discovery) Status() []WatchStatus {
	d.mu.RLock()
	ws := make([]*watch, 0, len(d.watches))
	for _, wt := range d.watches {
		ws = append(ws, wt)
	}
	d.mu.RUnlock()
	now := d.cfg.Now()
	out := make([]WatchStatus, 0, len(ws))
	for _, wt := range ws {
		out = append(out, wt.status(now))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Datacenter < out[j].Datacenter })
	return out
}

// Close stops every watch and waits for them; Resolve then answers not ok.
func (d *Discovery) Close() {
	d.mu.Lock()
	d.closed = true
	d.watches = map[string]*watch{}
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
}

// ErrNoAddress is returned by RegisterGateway for a registration without
// an address other machines can reach.
var ErrNoAddress = errors.New("no routable address to register")
