package resources_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/metrics"
	"github.com/codehub-dev/codehub/internal/resources"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// epoch is where the fake clock starts: on a whole hour, so that sampling
// intervals and period steps line up with it.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// world is a small working stand-in for sessions, workspaces and their
// agents, and connections.
type world struct {
	mu       sync.Mutex
	sessions []*session.Session
	ws       map[string]*workspace.Workspace // by ID
	usage    map[string]agentapi.Usage       // by workspace ID
	conns    map[string]int
	stopped  []string
	failAll  bool
}

func newWorld() *world {
	return &world{ws: map[string]*workspace.Workspace{}, usage: map[string]agentapi.Usage{}, conns: map[string]int{}}
}

func (w *world) AllSessions(context.Context) ([]*session.Session, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failAll {
		return nil, errors.New("store down")
	}
	return append([]*session.Session(nil), w.sessions...), nil
}

func (w *world) UserSessions(_ context.Context, id string) ([]*session.Session, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*session.Session
	for _, s := range w.sessions {
		if s.UserID == id {
			out = append(out, s)
		}
	}
	return out, nil
}

func (w *world) List(context.Context) ([]*workspace.Workspace, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*workspace.Workspace
	for _, x := range w.ws {
		out = append(out, x.Clone())
	}
	return out, nil
}

func (w *world) Of(_ context.Context, userID string) (*workspace.Workspace, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, x := range w.ws {
		if x.UserID == userID {
			return x.Clone(), nil
		}
	}
	return nil, workspace.ErrNotFound
}

func (w *world) Usage(_ context.Context, x *workspace.Workspace) (agentapi.Usage, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	u, ok := w.usage[x.ID]
	if !ok {
		return agentapi.Usage{}, errors.New("agent unreachable")
	}
	return u, nil
}

func (w *world) StopUser(_ context.Context, userID, _ string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = append(w.stopped, userID)
	for _, x := range w.ws {
		if x.UserID == userID {
			x.State = workspace.StateStopped
		}
	}
	return nil
}

func (w *world) OpenConnections(userID string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.conns[userID]
}

func (w *world) login(userID string) {
	w.mu.Lock()
	w.sessions = append(w.sessions, &session.Session{ID: userID + "-" + time.Now().String(), UserID: userID})
	w.mu.Unlock()
}

func (w *world) run(id, userID string, startedAt time.Time, u agentapi.Usage) {
	w.mu.Lock()
	w.ws[id] = &workspace.Workspace{ID: id, UserID: userID, State: workspace.StateRunning, StartedAt: startedAt}
	w.usage[id] = u
	w.mu.Unlock()
}

func (w *world) set(f func(w *world)) {
	w.mu.Lock()
	f(w)
	w.mu.Unlock()
}

type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(e audit.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) of(typ string) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, e := range r.events {
		if e.EventType == typ {
			out = append(out, e)
		}
	}
	return out
}

var limits = resources.Limits{Sessions: 2, Connections: 10, StorageBytes: 1 << 30, MemoryMB: 1024, CPUPercent: 50}

type fixture struct {
	clock   *clock
	world   *world
	store   resources.Store
	audit   *recorder
	metrics *metrics.Metrics
	m       *resources.Manager
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{clock: &clock{t: epoch}, world: newWorld(), audit: &recorder{}, metrics: metrics.New()}
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{
		Driver: sqlstore.DriverSQLite, Path: filepath.Join(t.TempDir(), "codehub.db"), Now: f.clock.Now,
	}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.store = db.Usage()
	f.m = resources.New(resources.Config{Interval: time.Minute, Now: f.clock.Now}, resources.Deps{
		Sessions: f.world, Workspaces: f.world, Connections: f.world, Store: f.store, Audit: f.audit, Metrics: f.metrics,
		Limits:   func(context.Context, string) (resources.Limits, error) { return limits, nil },
		Username: func(_ context.Context, id string) (string, error) { return "name-" + id, nil },
	}, testenv.Logger(t))
	return f
}

func (f *fixture) track(t *testing.T) {
	t.Helper()
	if err := f.m.TrackUsage(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestTrackUsageAndGetUsage(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w := f.world
	w.login("alice")
	w.login("alice")
	w.login("bob")
	w.run("ws-a", "alice", epoch.Add(-30*time.Second), agentapi.Usage{StorageBytes: 100 << 20, MemoryBytes: 256 << 20, CPUSeconds: 10})
	w.set(func(w *world) {
		w.ws["warm"] = &workspace.Workspace{ID: "warm", State: workspace.StateRunning, StartedAt: epoch.Add(-time.Hour)}
		w.ws["ws-c"] = &workspace.Workspace{ID: "ws-c", UserID: "carol", State: workspace.StateStopped}
		w.conns["alice"] = 3
	})
	f.track(t) // 12:00

	// A minute later alice used 30 CPU seconds: 50% of a CPU.
	f.clock.Advance(time.Minute)
	w.set(func(w *world) {
		w.usage["ws-a"] = agentapi.Usage{StorageBytes: 200 << 20, MemoryBytes: 512 << 20, CPUSeconds: 40}
	})
	f.track(t) // 12:01

	u, err := f.m.Usage(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if u.Sessions.Active != 2 || u.Sessions.Limit != 2 || u.Connections.Current != 3 || u.Storage.Used != 200<<20 ||
		u.Storage.Limit != 1<<30 || u.Memory.MB != 512 || u.CPU.Percent != 50 || u.CPU.Limit != 50 || !u.Running ||
		!u.SampledAt.Equal(epoch.Add(time.Minute)) {
		t.Fatalf("alice's usage = %+v", u)
	}
	// The design's ResourceUsage shape.
	b, _ := json.Marshal(u)
	var shape map[string]map[string]any
	json.Unmarshal(b, &shape)
	for k, fields := range map[string][]string{
		"storage": {"used", "limit"}, "sessions": {"active", "limit"}, "connections": {"current", "limit"},
		"cpu": {"percent", "limit"}, "memory": {"mb", "limit"},
	} {
		for _, fld := range fields {
			if _, ok := shape[k][fld]; !ok {
				t.Errorf("usage JSON lacks %s.%s: %s", k, fld, b)
			}
		}
	}
	if !strings.Contains(string(b), `"userId":"alice"`) {
		t.Errorf("usage JSON lacks userId: %s", b)
	}

	// Quotas: sessions and CPU are used up, the rest has room.
	qs, err := f.m.Quotas(ctx, "alice")
	if err != nil || len(qs) != 5 {
		t.Fatalf("Quotas = %+v, %v", qs, err)
	}
	want := map[resources.Resource]resources.QuotaStatus{
		resources.Sessions:    {Resource: resources.Sessions, Current: 2, Limit: 2, Available: 0, Exceeded: true},
		resources.Connections: {Resource: resources.Connections, Current: 3, Limit: 10, Available: 7},
		resources.Storage:     {Resource: resources.Storage, Current: 200 << 20, Limit: 1 << 30, Available: 1<<30 - 200<<20},
		resources.Memory:      {Resource: resources.Memory, Current: 512, Limit: 1024, Available: 512},
		resources.CPU:         {Resource: resources.CPU, Current: 50, Limit: 50, Available: 0, Exceeded: true},
	}
	for i, q := range qs {
		if q.Resource != resources.All[i] || q != want[q.Resource] {
			t.Errorf("quota %d = %+v, want %+v", i, q, want[q.Resource])
		}
	}
	b, _ = json.Marshal(qs[0])
	if string(b) != `{"resource":"sessions","current":2,"limit":2,"available":0,"exceeded":true}` {
		t.Errorf("QuotaStatus JSON = %s", b)
	}
	ok, err := f.m.EnforceQuota(ctx, "alice", resources.Sessions)
	if err != nil || ok {
		t.Fatalf("EnforceQuota(sessions) = %v, %v; want false", ok, err)
	}
	if ok, _ := f.m.EnforceQuota(ctx, "alice", resources.Storage); !ok {
		t.Fatal("EnforceQuota(storage) = false with room left")
	}
	if ev := f.audit.of(audit.QuotaExceeded); len(ev) != 1 || ev[0].UserID != "alice" || ev[0].Metadata["resource"] != "sessions" ||
		ev[0].Status != audit.StatusFailure {
		t.Fatalf("quota_exceeded events = %+v", ev)
	}
	if _, err := f.m.CheckQuota(ctx, "alice", "bandwidth"); err == nil {
		t.Fatal("CheckQuota of an unknown resource")
	}

	// Bob has a session and no workspace; carol a stopped workspace and
	// nothing else: she gets no sample, but her usage can be asked.
	us, err := f.m.UsageOf(ctx, []string{"bob", "carol"})
	if err != nil || len(us) != 2 || us[0].Sessions.Active != 1 || us[0].Running || us[1].Sessions.Active != 0 || us[1].Storage.Used != 0 {
		t.Fatalf("UsageOf = %+v, %v", us, err)
	}

	// Stored: one sample per user with something live, and the totals.
	totals, err := f.store.Samples(ctx, resources.Totals, epoch, epoch.Add(time.Hour))
	if err != nil || len(totals) != 2 {
		t.Fatalf("totals = %+v, %v", totals, err)
	}
	if s := totals[0]; s.Sessions != 3 || s.ActiveUsers != 2 || s.RunningWorkspaces != 2 || s.WorkspaceStarts != 1 ||
		s.Connections != 3 || s.StorageBytes != 100<<20 {
		t.Fatalf("first totals = %+v", s)
	}
	if s := totals[1]; s.WorkspaceStarts != 0 || s.CPUPercent != 50 || s.MemoryBytes != 512<<20 {
		t.Fatalf("second totals = %+v", s)
	}
	for _, id := range []string{"alice", "bob"} {
		if ss, _ := f.store.Samples(ctx, id, epoch, epoch.Add(time.Hour)); len(ss) != 2 {
			t.Errorf("%s has %d samples, want 2", id, len(ss))
		}
	}
	if ss, _ := f.store.Samples(ctx, "carol", epoch, epoch.Add(time.Hour)); len(ss) != 0 {
		t.Errorf("carol has samples: %+v", ss)
	}

	// Metrics.
	if v := testutil.ToFloat64(f.metrics.ActiveUsers); v != 2 {
		t.Errorf("active users = %v", v)
	}
	if v := testutil.ToFloat64(f.metrics.ActiveSessions); v != 3 {
		t.Errorf("active sessions = %v", v)
	}
	if v := testutil.ToFloat64(f.metrics.ActiveContainers.WithLabelValues("running")); v != 2 {
		t.Errorf("running containers = %v", v)
	}
	if v := testutil.ToFloat64(f.metrics.ActiveContainers.WithLabelValues("stopped")); v != 1 {
		t.Errorf("stopped containers = %v", v)
	}
	if v := testutil.ToFloat64(f.metrics.UserStorage.WithLabelValues("name-alice")); v != 200<<20 {
		t.Errorf("alice's storage gauge = %v", v)
	}

	// An hour of samples, then the history over 1h and 24h.
	for i := 2; i < 60; i++ {
		f.clock.Advance(time.Minute)
		if i == 30 {
			w.run("ws-b", "bob", f.clock.Now().Add(-time.Second), agentapi.Usage{StorageBytes: 5 << 20})
		}
		f.track(t)
	}
	f.clock.Advance(time.Minute) // 13:00
	hour, err := f.m.GetUsage(ctx, "alice", resources.Periods["1h"])
	if err != nil {
		t.Fatal(err)
	}
	if hour.Count != 60 || len(hour.Samples) != 60 || hour.StepSeconds != 60 || !hour.From.Equal(epoch) ||
		hour.Peak.Sessions != 2 || hour.Peak.StorageBytes != 200<<20 || hour.Peak.CPUPercent != 50 || hour.Average.Sessions != 2 {
		t.Fatalf("alice's hour: count %d, points %d, from %v, peak %+v, avg %+v", hour.Count, len(hour.Samples), hour.From, hour.Peak, hour.Average)
	}
	day, err := f.m.GetUsage(ctx, resources.Totals, resources.Periods["24h"])
	if err != nil {
		t.Fatal(err)
	}
	// 12:00 to 13:00 in 15-minute steps: four points.
	if len(day.Samples) != 4 || day.StepSeconds != 900 || day.WorkspaceStarts != 2 || day.Samples[0].WorkspaceStarts != 1 ||
		day.Samples[2].WorkspaceStarts != 1 || !day.Samples[1].At.Equal(epoch.Add(15*time.Minute)) || day.Samples[3].Sessions != 3 {
		t.Fatalf("totals over a day: %d points, starts %d: %+v", len(day.Samples), day.WorkspaceStarts, day.Samples)
	}
	// CPU in a point is the mean of its samples: of the fifteen, only the
	// second saw CPU used.
	if got := day.Samples[0].CPUPercent; got != 50.0/15 {
		t.Fatalf("mean CPU of the first step = %v, want 50/15", got)
	}
	if p, err := resources.ParsePeriod("7d"); err != nil || p.Span != 7*24*time.Hour {
		t.Fatalf("ParsePeriod(7d) = %+v, %v", p, err)
	}
	if _, err := resources.ParsePeriod("1y"); !errors.Is(err, resources.ErrUnknownPeriod) {
		t.Fatalf("ParsePeriod(1y) = %v", err)
	}
	week, err := f.m.GetUsage(ctx, "nobody", resources.Periods["7d"])
	if err != nil || len(week.Samples) != 0 || week.Samples == nil || week.Count != 0 {
		t.Fatalf("an unknown user's week = %+v, %v", week, err)
	}

	storage, err := f.m.StoragePerUser(ctx)
	if err != nil || len(storage) != 2 || storage[0].UserID != "alice" || storage[0].Bytes != 200<<20 ||
		storage[0].LimitBytes != 1<<30 || storage[1].UserID != "bob" {
		t.Fatalf("StoragePerUser = %+v, %v", storage, err)
	}
}

func TestQuotaExceededOncePerCrossing(t *testing.T) {
	f := newFixture(t)
	f.world.login("alice")
	f.world.run("ws-a", "alice", epoch.Add(-time.Hour), agentapi.Usage{StorageBytes: 2 << 30, MemoryBytes: 100 << 20})
	for i := 0; i < 3; i++ {
		f.track(t)
		f.clock.Advance(time.Minute)
	}
	ev := f.audit.of(audit.QuotaExceeded)
	if len(ev) != 1 || ev[0].Metadata["resource"] != "storage" || ev[0].UserID != "alice" {
		t.Fatalf("after three samples over the storage quota: %+v", ev)
	}
	// Back under, then over again: a second event.
	f.world.set(func(w *world) { w.usage["ws-a"] = agentapi.Usage{StorageBytes: 1 << 20} })
	f.track(t)
	f.clock.Advance(time.Minute)
	f.world.set(func(w *world) { w.usage["ws-a"] = agentapi.Usage{StorageBytes: 3 << 30} })
	f.track(t)
	if ev := f.audit.of(audit.QuotaExceeded); len(ev) != 2 {
		t.Fatalf("after crossing again: %d events", len(ev))
	}
}

func TestStoppedWorkspaceKeepsStorage(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.world.login("alice")
	f.world.run("ws-a", "alice", epoch, agentapi.Usage{StorageBytes: 42 << 20, MemoryBytes: 300 << 20})
	f.track(t)
	f.clock.Advance(time.Minute)
	f.world.set(func(w *world) { w.ws["ws-a"].State = workspace.StateStopped })
	f.track(t)
	u, err := f.m.Usage(ctx, "alice")
	if err != nil || u.Running || u.Storage.Used != 42<<20 || u.Memory.MB != 0 || u.CPU.Percent != 0 {
		t.Fatalf("usage with the workspace stopped = %+v, %v", u, err)
	}
	// A restarted gateway knows it from the stored samples.
	g := resources.New(resources.Config{Now: f.clock.Now}, resources.Deps{Sessions: f.world, Workspaces: f.world, Store: f.store}, nil)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(rctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if u, _ := g.Usage(ctx, "alice"); u.Storage.Used == 42<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a new manager did not load the stored storage")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPruneAndCleanup(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.world.login("alice")
	f.world.run("ws-a", "alice", epoch, agentapi.Usage{StorageBytes: 1 << 20})
	f.track(t)
	f.clock.Advance(9 * 24 * time.Hour) // past the retention
	f.track(t)
	// Run prunes at once.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.m.Run(rctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		old, _ := f.store.Samples(ctx, resources.Totals, epoch, epoch.Add(time.Hour))
		if len(old) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("old samples were not pruned")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if recent, _ := f.store.Samples(ctx, "alice", epoch.Add(8*24*time.Hour), f.clock.Now().Add(time.Hour)); len(recent) == 0 {
		t.Fatal("recent samples were pruned")
	}

	if err := f.m.CleanupUserResources(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if len(f.world.stopped) != 1 || f.world.stopped[0] != "alice" {
		t.Fatalf("stopped = %v", f.world.stopped)
	}
	if left, _ := f.store.Samples(ctx, "alice", epoch, f.clock.Now().Add(time.Hour)); len(left) != 0 {
		t.Fatalf("alice's samples after the clean-up: %d", len(left))
	}
	if st, _ := f.m.StoragePerUser(ctx); len(st) != 0 {
		t.Fatalf("storage after the clean-up: %+v", st)
	}
}

func TestTrackUsageFailsCleanly(t *testing.T) {
	f := newFixture(t)
	f.world.set(func(w *world) { w.failAll = true })
	if err := f.m.TrackUsage(context.Background()); err == nil {
		t.Fatal("TrackUsage with the session store down succeeded")
	}
	// An unreachable agent is no error: its usage is unknown.
	f.world.set(func(w *world) {
		w.failAll = false
		w.ws["ws-x"] = &workspace.Workspace{ID: "ws-x", UserID: "x", State: workspace.StateRunning}
	})
	if err := f.m.TrackUsage(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestStorageOf(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name                             string
		used, quota, capacity, available int64
		full                             bool
		want                             resources.StorageUsage
	}{
		// The case: writes fail at 477 MiB of 512; the file
		// system's capacity is what counts, and it is full.
		{"full before the quota", 477 * mib, 512 * mib, 478 * mib, mib, true,
			resources.StorageUsage{Used: 477 * mib, Limit: 478 * mib, Available: mib, Percent: 100, Full: true, Warning: true}},
		{"at the warning level", 461 * mib, 512 * mib, 512 * mib, 51 * mib, false,
			resources.StorageUsage{Used: 461 * mib, Limit: 512 * mib, Available: 51 * mib, Percent: 90, Warning: true}},
		{"below it", 460 * mib, 512 * mib, 512 * mib, 52 * mib, false,
			resources.StorageUsage{Used: 460 * mib, Limit: 512 * mib, Available: 52 * mib, Percent: 89}},
		{"almost all used, not full", 511 * mib, 512 * mib, 512 * mib, 4 * mib, false,
			resources.StorageUsage{Used: 511 * mib, Limit: 512 * mib, Available: 4 * mib, Percent: 99, Warning: true}},
		{"a directory, no capacity", 100 * mib, 512 * mib, 0, 0, false,
			resources.StorageUsage{Used: 100 * mib, Limit: 512 * mib, Available: 412 * mib, Percent: 19}},
		{"a directory over its quota", 600 * mib, 512 * mib, 0, 0, false,
			resources.StorageUsage{Used: 600 * mib, Limit: 512 * mib, Percent: 100, Full: true, Warning: true}},
		{"no quota", 100 * mib, 0, 0, 0, false, resources.StorageUsage{Used: 100 * mib}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := resources.StorageOf(c.used, c.quota, c.capacity, c.available, c.full, 90)
			if got != c.want {
				t.Errorf("StorageOf = %+v, want %+v", got, c.want)
			}
			u := resources.Usage{Storage: got}
			q := u.Quota(resources.Storage)
			if q.Exceeded != c.want.Full || q.Warning != c.want.Warning || (c.want.Limit > 0 && q.Available != float64(c.want.Available)) {
				t.Errorf("Quota(storage) = %+v for %+v", q, got)
			}
		})
	}
}

// TestFullHomeExceeded: a home whose file system is full is over its
// quota, whatever share of the quota its files take, once per crossing;
// the warning comes at 90% before.
func TestFullHomeExceeded(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.world.login("alice")
	const capacity = 1 << 30
	at := func(used int64, full bool) agentapi.Usage {
		return agentapi.Usage{StorageBytes: used, StorageLimitBytes: 1 << 30, StorageCapacityBytes: capacity,
			StorageAvailableBytes: capacity - used, StorageFull: full}
	}
	f.world.run("ws-a", "alice", epoch, at(capacity/2, false))
	f.track(t)
	q, err := f.m.CheckQuota(ctx, "alice", resources.Storage)
	if err != nil || q.Exceeded || q.Warning {
		t.Fatalf("half full: %+v, %v", q, err)
	}
	f.clock.Advance(time.Minute)
	f.world.set(func(w *world) { w.usage["ws-a"] = at(capacity*91/100, false) })
	f.track(t)
	if q, _ := f.m.CheckQuota(ctx, "alice", resources.Storage); q.Exceeded || !q.Warning {
		t.Fatalf("91%% full: %+v, want a warning", q)
	}
	if ev := f.audit.of(audit.QuotaExceeded); len(ev) != 0 {
		t.Fatalf("events before full: %+v", ev)
	}
	// Full with 1.5 MiB left: writes fail, so it is exceeded.
	for range 3 {
		f.clock.Advance(time.Minute)
		f.world.set(func(w *world) { w.usage["ws-a"] = at(capacity-3<<19, true) })
		f.track(t)
	}
	q, _ = f.m.CheckQuota(ctx, "alice", resources.Storage)
	if !q.Exceeded || q.Available != 3<<19 || !q.Warning {
		t.Errorf("full: %+v", q)
	}
	us, _ := f.m.UsageOf(ctx, []string{"alice"})
	if s := us[0].Storage; s.Percent != 100 || !s.Full || s.Limit != capacity {
		t.Errorf("full: storage %+v", s)
	}
	ev := f.audit.of(audit.QuotaExceeded)
	if len(ev) != 1 || ev[0].Metadata["resource"] != "storage" || ev[0].Metadata["available"] != float64(3<<19) {
		t.Fatalf("after three samples of a full home: %+v", ev)
	}
	if n := testutil.ToFloat64(f.metrics.QuotaExceeded.WithLabelValues("storage")); n != 1 {
		t.Errorf("codehub_quota_exceeded_total{resource=storage} = %v", n)
	}
}

// TestOOMKillsRecorded: processes killed for lack of memory are counted
// from the workspace's counter, recorded once each (an event per sample
// that saw new ones), and counted in the metric; a restart starts a new
// count; kills before this gateway started are not recorded again.
func TestOOMKillsRecorded(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.world.login("alice")
	f.world.login("bob")
	f.world.run("ws-a", "alice", epoch.Add(time.Second), agentapi.Usage{MemoryBytes: 100 << 20})
	// Bob's ran before this gateway, with 5 kills then.
	f.world.run("ws-b", "bob", epoch.Add(-time.Hour), agentapi.Usage{MemoryBytes: 100 << 20, OOMKills: 5})
	f.clock.Advance(time.Minute)
	f.track(t)
	if ev := f.audit.of(audit.QuotaExceeded); len(ev) != 0 {
		t.Fatalf("events without new kills: %+v", ev)
	}
	kills := func(id string, n int64) {
		f.world.set(func(w *world) { u := w.usage[id]; u.OOMKills = n; w.usage[id] = u })
		f.clock.Advance(time.Minute)
		f.track(t)
	}
	kills("ws-a", 2)
	kills("ws-a", 2)
	kills("ws-a", 3)
	kills("ws-b", 6)
	ev := f.audit.of(audit.QuotaExceeded)
	if len(ev) != 3 {
		t.Fatalf("events: %+v", ev)
	}
	for i, want := range []struct {
		user      string
		new, seen float64
	}{{"alice", 2, 2}, {"alice", 1, 3}, {"bob", 1, 6}} {
		md := ev[i].Metadata
		if ev[i].UserID != want.user || md["resource"] != "memory" || md["oomKills"] != int64(want.new) || md["oomKillsSinceStart"] != int64(want.seen) {
			t.Errorf("event %d: %s %+v, want %+v", i, ev[i].UserID, md, want)
		}
	}
	if n := testutil.ToFloat64(f.metrics.OOMKills); n != 4 {
		t.Errorf("codehub_workspace_oom_kills_total = %v, want 4", n)
	}
	u, err := f.m.Usage(ctx, "alice")
	if err != nil || u.Memory.OOMKills != 3 || u.Quota(resources.Memory).OOMKills != 3 {
		t.Errorf("alice's memory: %+v, %v", u.Memory, err)
	}
	// A restart: its counter starts again.
	f.world.run("ws-a", "alice", f.clock.Now(), agentapi.Usage{MemoryBytes: 100 << 20, OOMKills: 1})
	f.clock.Advance(time.Minute)
	f.track(t)
	if ev := f.audit.of(audit.QuotaExceeded); len(ev) != 4 || ev[3].Metadata["oomKills"] != int64(1) {
		t.Errorf("after a restart with one kill: %+v", ev)
	}
}
