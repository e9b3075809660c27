package discovery

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
)

// requestSlack is how long past its wait time a blocking query may take
// before it is given up as hung (Consul adds up to wait/16 of jitter).
const requestSlack = 10 * time.Second

// watch keeps the healthy instances of one service in one datacenter, with
// a blocking query loop.
type watch struct {
	d       *Discovery
	service string
	dc      string // as sent in ?dc=; "" for the agent's own
	log     hclog.Logger

	ready     chan struct{} // closed once the first query has ended
	readyOnce sync.Once

	mu           sync.RWMutex
	known        bool                  // an answer has come
	byWorkspace  map[string][]instance // healthy instances by workspace ID
	instances    int
	index        uint64
	lastContact  time.Time
	failingSince time.Time
	lastErr      error
	filtered     bool
}

// instance is a healthy service instance of a workspace.
type instance struct {
	serviceID   string
	addr        string // host:port
	allocID     string
	createIndex uint64
}

func newWatch(d *Discovery, service, dc string) *watch {
	return &watch{
		d:           d,
		service:     service,
		dc:          dc,
		log:         d.log.With("service", service, "dc", dc),
		ready:       make(chan struct{}),
		byWorkspace: map[string][]instance{},
	}
}

// waitReady waits for the first answer (or failure), at most limit or
// until ctx ends.
func (wt *watch) waitReady(ctx context.Context, limit time.Duration) bool {
	select {
	case <-wt.ready:
		return true
	default:
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-wt.ready:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (wt *watch) lookup(w *workspace.Workspace, now time.Time) (string, bool) {
	wt.mu.RLock()
	defer wt.mu.RUnlock()
	if !wt.serving(now) {
		return "", false
	}
	insts := wt.byWorkspace[w.ID]
	if len(insts) == 0 {
		return "", false
	}
	if alloc := w.Meta[WorkspaceAllocID]; alloc != "" {
		for _, in := range insts {
			if in.allocID == alloc || strings.Contains(in.serviceID, alloc) {
				return in.addr, true
			}
		}
	}
	if w.Address != "" {
		for _, in := range insts {
			if in.addr == w.Address {
				return in.addr, true
			}
		}
	}
	return insts[0].addr, true // newest first
}

// serving reports whether answers may be given; wt.mu is held.
func (wt *watch) serving(now time.Time) bool {
	if !wt.known {
		return false
	}
	return wt.failingSince.IsZero() || now.Sub(wt.failingSince) < wt.d.cfg.StaleFor
}

func (wt *watch) status(now time.Time) WatchStatus {
	wt.mu.RLock()
	defer wt.mu.RUnlock()
	st := WatchStatus{
		Service:        wt.service,
		Datacenter:     wt.dc,
		Index:          wt.index,
		Instances:      wt.instances,
		Workspaces:     len(wt.byWorkspace),
		LastContact:    wt.lastContact,
		FailingSince:   wt.failingSince,
		Serving:        wt.serving(now),
		FilteredByACLs: wt.filtered,
	}
	if wt.lastErr != nil {
		st.LastError = wt.lastErr.Error()
	}
	return st
}

// run is the blocking query loop: ask with the last index, so that Consul
// answers when the healthy set changes (or the wait ends); after a
// failure, back off and ask afresh (index 0); start over from index 0
// when the index goes backwards.
func (wt *watch) run(ctx context.Context) {
	defer wt.d.wg.Done()
	defer wt.readyOnce.Do(func() { close(wt.ready) })
	cfg := wt.d.cfg
	var index uint64
	failures := 0
	for {
		began := time.Now()
		timeout := requestSlack
		if index > 0 {
			timeout += cfg.WaitTime + cfg.WaitTime/16
		}
		qctx, cancel := context.WithTimeout(ctx, timeout)
		q := &api.QueryOptions{Datacenter: wt.dc, WaitIndex: index, WaitTime: cfg.WaitTime}
		entries, meta, err := cfg.Client.Health().Service(wt.service, "", true, q.WithContext(qctx))
		cancel()
		if ctx.Err() != nil {
			return
		}
		wt.d.called("health.service", err)
		if err != nil {
			failures++
			// The next answer should come at once, not when the set
			// next changes: ask afresh.
			index = 0
			wt.failed(err, failures)
			wt.readyOnce.Do(func() { close(wt.ready) })
			if !sleep(ctx, backoff(cfg.RetryMin, cfg.RetryMax, failures)) {
				return
			}
			continue
		}
		if failures > 0 {
			wt.log.Info("Consul answers again", "failures", failures)
		}
		failures = 0
		switch {
		case meta.LastIndex < index:
			// Consul's index went backwards (a snapshot restore, another
			// server): what was asked for may never come; start over.
			wt.log.Debug("index went backwards; starting over", "was", index, "now", meta.LastIndex)
			index = 0
		default:
			index = max(meta.LastIndex, 1) // 0 would not block
		}
		wt.update(entries, meta, index)
		wt.readyOnce.Do(func() { close(wt.ready) })
		if rest := cfg.MinInterval - time.Since(began); rest > 0 {
			if !sleep(ctx, rest) {
				return
			}
		}
	}
}

func (wt *watch) failed(err error, failures int) {
	now := wt.d.cfg.Now()
	wt.mu.Lock()
	if wt.failingSince.IsZero() {
		wt.failingSince = now
	}
	wt.lastErr = err
	wt.mu.Unlock()
	if failures == 1 {
		wt.log.Warn("Consul query failed; serving the last healthy set for a while", "error", err,
			"stale_for", wt.d.cfg.StaleFor)
	} else {
		wt.log.Debug("Consul query failed again", "error", err, "failures", failures)
	}
}

func (wt *watch) update(entries []*api.ServiceEntry, meta *api.QueryMeta, index uint64) {
	by, n := indexEntries(entries)
	now := wt.d.cfg.Now()
	wt.mu.Lock()
	defer wt.mu.Unlock()
	if meta.ResultsFilteredByACLs && !wt.filtered {
		wt.log.Warn("Consul hid workspace instances from this token: it needs service:read on the service")
	}
	wt.known = true
	wt.byWorkspace, wt.instances = by, n
	wt.index = index
	wt.lastContact = now
	wt.failingSince = time.Time{}
	wt.lastErr = nil
	wt.filtered = meta.ResultsFilteredByACLs
}

// indexEntries maps workspace IDs to their passing instances, newest
// first. The query asked for passing instances only; the checks are
// looked at again all the same, as routing to a failing instance is the
// one thing this must never do.
func indexEntries(entries []*api.ServiceEntry) (map[string][]instance, int) {
	by := map[string][]instance{}
	n := 0
	for _, e := range entries {
		if e == nil || e.Service == nil || e.Checks.AggregatedStatus() != api.HealthPassing {
			continue
		}
		s := e.Service
		host := s.Address
		if host == "" && e.Node != nil {
			host = e.Node.Address
		}
		if host == "" || s.Port <= 0 {
			continue
		}
		in := instance{
			serviceID:   s.ID,
			addr:        net.JoinHostPort(host, strconv.Itoa(s.Port)),
			allocID:     s.Meta[MetaAllocID],
			createIndex: s.CreateIndex,
		}
		ids := map[string]bool{}
		if id := s.Meta[MetaWorkspaceID]; id != "" {
			ids[id] = true
		}
		for _, t := range s.Tags {
			if id, ok := strings.CutPrefix(t, TagPrefix); ok && id != "" {
				ids[id] = true
			}
		}
		if len(ids) == 0 {
			continue
		}
		n++
		for id := range ids {
			by[id] = append(by[id], in)
		}
	}
	for _, insts := range by {
		sort.Slice(insts, func(i, j int) bool {
			if insts[i].createIndex != insts[j].createIndex {
				return insts[i].createIndex > insts[j].createIndex
			}
			return insts[i].serviceID < insts[j].serviceID
		})
	}
	return by, n
}

// backoff is the wait before retry n (1-based): RetryMin doubling up to
// RetryMax, with the upper half jittered.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

// sleep waits for d or ctx; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// statusCode is the HTTP status of a Consul error, or 0.
func statusCode(err error) int {
	var se api.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}
