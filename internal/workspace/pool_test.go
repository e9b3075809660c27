package workspace_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/workspace"
)

func ids(ws []*workspace.Workspace) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.ID
	}
	return out
}

// TestWarmPool: Run fills the pool; a first-time user gets a warm
// workspace without a start of their own, and the pool refills.
func TestWarmPool(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.WarmPool = 2
	// Only the claim refills: a periodic refill at the same time would
	// overfill the pool (TestWarmPoolRefillsDoNotOverfill).
	cfg.HealthInterval = time.Hour
	m := e.manager(cfg)
	e.run(m)

	waitFor(t, "the pool to fill", func() bool { return len(e.warmRunning()) == 2 })
	warm := ids(e.warmRunning())
	for _, s := range e.orch.startCalls() {
		if s.UserID != "" || s.Username != "" {
			t.Errorf("a warm start with an owner: %+v", s)
		}
	}
	if n := len(e.orch.startCalls()); n != 2 {
		t.Errorf("%d starts filling a pool of 2", n)
	}

	w := ensure(t, m, "pat")
	if !slices.Contains(warm, w.ID) || w.UserID != "pat" || w.State != workspace.StateRunning {
		t.Fatalf("Ensure of a first-time user = %+v, want one of the warm %v", w, warm)
	}
	if n := e.orch.startsFor("pat"); n != 0 {
		t.Errorf("%d starts for a user who claimed a warm workspace", n)
	}
	if got := e.orch.assignCalls(); len(got) != 1 || got[0] != (assignCall{w.ID, "pat", "name-pat"}) {
		t.Errorf("Assign calls %+v, want one for %s to pat", got, w.ID)
	}
	if a := e.orch.agentAt(w.Address); a == nil || a.owner() != "pat" {
		t.Errorf("the claimed agent is not pat's")
	}
	if got := e.get(w.ID); got.UserID != "pat" || got.State != workspace.StateRunning {
		t.Errorf("registry of the claimed workspace: %+v", got)
	}
	tg, err := m.Target(context.Background(), "pat", false)
	if err != nil || tg.URL.Host != w.Address {
		t.Errorf("Target of the claimed workspace = %v, %v", tg, err)
	}

	waitFor(t, "the pool to refill", func() bool {
		now := e.warmRunning()
		return len(now) == 2 && !slices.Contains(ids(now), w.ID)
	})
	if n := len(e.orch.startCalls()); n != 3 {
		t.Errorf("%d starts, want 3 (two warm, one refill)", n)
	}
}

// TestWarmPoolConcurrentFirstTimeUsers: first-time users arriving together
// each get a workspace of their own, claimed or started.
func TestWarmPoolConcurrentFirstTimeUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.WarmPool = 2
	m := e.manager(cfg)
	e.run(m)
	waitFor(t, "the pool to fill", func() bool { return len(e.warmRunning()) == 2 })

	users := []string{"r1", "r2", "r3", "r4", "r5", "r6"}
	got := make([]*workspace.Workspace, len(users))
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Go(func() {
			w, err := m.Ensure(context.Background(), u)
			if err != nil {
				t.Errorf("Ensure(%s): %v", u, err)
				return
			}
			got[i] = w
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	seen := map[string]string{}
	cold := 0
	for i, u := range users {
		w := got[i]
		if prev, ok := seen[w.ID]; ok {
			t.Errorf("%s and %s got the same workspace %s", prev, u, w.ID)
		}
		seen[w.ID] = u
		if rec := e.get(w.ID); rec.UserID != u || rec.State != workspace.StateRunning {
			t.Errorf("registry of %s's workspace: %+v", u, rec)
		}
		if a := e.orch.agentAt(w.Address); a == nil || a.owner() != u {
			t.Errorf("%s's workspace at %s is not served by their agent", u, w.Address)
		}
		cold += e.orch.startsFor(u)
	}
	claims := e.orch.assignCalls()
	if len(claims) < 2 || len(claims)+cold != len(users) {
		t.Errorf("%d claims and %d cold starts for %d users, want at least 2 claims and one or the other each", len(claims), cold, len(users))
	}
	for _, c := range claims {
		if seen[c.WorkspaceID] != c.UserID {
			t.Errorf("claim %+v, but the workspace went to %q", c, seen[c.WorkspaceID])
		}
	}
	if n := e.orch.reassignments(); n != 0 {
		t.Errorf("%d agents were assigned to a second user", n)
	}
}

// TestWarmPoolUnusableClaim: a claimed warm workspace that does not answer
// is thrown away and the user gets a cold start.
func TestWarmPoolUnusableClaim(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.WarmPool = 2
	cfg.HealthInterval = time.Hour // no refill but the first
	m := e.manager(cfg)
	e.run(m)
	waitFor(t, "the pool to fill", func() bool { return len(e.warmRunning()) == 2 })
	warm := ids(e.warmRunning())
	for _, id := range warm {
		e.orch.agent(id).kill()
	}

	w := ensure(t, m, "quinn")
	if slices.Contains(warm, w.ID) || w.UserID != "quinn" {
		t.Fatalf("Ensure = %+v, want a new workspace, not one of the dead %v", w, warm)
	}
	if n := e.orch.startsFor("quinn"); n != 1 {
		t.Errorf("%d cold starts, want 1", n)
	}
	claims := e.orch.assignCalls()
	if len(claims) != 1 || !slices.Contains(warm, claims[0].WorkspaceID) || claims[0].UserID != "quinn" {
		t.Fatalf("Assign calls %+v, want one claim of a dead warm workspace", claims)
	}
	discarded := claims[0].WorkspaceID
	if rec := e.lookup(discarded); rec != nil {
		t.Errorf("the unusable warm workspace is still registered: %+v", rec)
	}
	if !slices.Contains(e.orch.stopCalls(), discarded) {
		t.Errorf("the unusable warm workspace was not stopped")
	}
	if a := e.orch.agentAt(w.Address); a == nil || a.owner() != "quinn" || !a.alive() {
		t.Errorf("quinn's workspace is not served by their own agent")
	}
}

// TestWarmPoolRefillsDoNotOverfill: refills that overlap (two claims in
// quick succession, or a claim and Run's periodic refill) together keep the
// pool at its size.
func TestWarmPoolRefillsDoNotOverfill(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.WarmPool = 2
	cfg.HealthInterval = time.Hour // only the claims refill
	// OnPoolSize runs inside a refill, between counting the pool and
	// adding to it: hold the first two refills there until both are in.
	var (
		calls      atomic.Int32
		armed      atomic.Bool
		mu         sync.Mutex
		counted    []int // what the two held refills found ready
		holding    bool  // the first is held
		overlapped bool  // the second came while the first was held
		both       = make(chan struct{})
	)
	cfg.OnPoolSize = func(n int) {
		calls.Add(1)
		if !armed.Load() {
			return
		}
		mu.Lock()
		k := len(counted)
		switch k {
		case 0:
			holding = true
		case 1:
			overlapped = holding
		}
		if k < 2 {
			counted = append(counted, n)
		}
		mu.Unlock()
		switch k {
		case 0:
			select {
			case <-both:
			case <-time.After(2 * time.Second): // refills that cannot overlap
			}
			mu.Lock()
			holding = false
			mu.Unlock()
		case 1:
			close(both)
		}
	}
	m := e.manager(cfg)
	e.run(m)
	waitFor(t, "the pool to fill", func() bool { return len(e.warmRunning()) == 2 })
	// Run's refill, then one count after each warm start.
	waitFor(t, "the first refill to be over", func() bool { return calls.Load() == 3 })
	armed.Store(true)

	ensure(t, m, "sam")
	ensure(t, m, "tess")
	waitFor(t, "both refills to count the pool", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(counted) == 2
	})
	// Give the refills the time to add what they will: the pool's size
	// when they came one after the other; when they overlapped, both
	// counted before either added and found nothing starting, so each adds
	// what it found missing.
	mu.Lock()
	added := cfg.WarmPool
	if overlapped {
		added = 2*cfg.WarmPool - counted[0] - counted[1]
	}
	mu.Unlock()
	deadline := time.Now().Add(2 * time.Second)
	for len(e.warm()) < added && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if pool := e.warm(); len(pool) != cfg.WarmPool {
		t.Errorf("%d warm workspaces after two claims, want the pool's size %d: %v", len(pool), cfg.WarmPool, ids(pool))
	}
}

// TestWarmPoolReplacesDeadWarmWorkspace: a warm workspace whose agent dies
// does not count as ready: it is noticed and replaced.
func TestWarmPoolReplacesDeadWarmWorkspace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.WarmPool = 2
	m := e.manager(cfg)
	e.run(m)
	waitFor(t, "the pool to fill", func() bool { return len(e.warmRunning()) == 2 })
	dead := e.warmRunning()[0]
	e.orch.agent(dead.ID).kill()

	// 3s is hundreds of health checks (every 10ms).
	waitWithin(t, 3*time.Second, "the dead warm workspace to be replaced", func() bool {
		rec := e.lookup(dead.ID)
		return len(e.warmRunning()) == 2 && (rec == nil || rec.State != workspace.StateRunning)
	})
}

// TestClaimedWarmWorkspaceIdleCountsFromClaim: a warm workspace that waited
// in the pool is, once claimed, idle since the claim, not since it was
// started for the pool.
func TestClaimedWarmWorkspaceIdleCountsFromClaim(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.WarmPool = 1
	cfg.IdleWarning = 5 * time.Minute
	policy := workspace.Policy{Name: "test", IdleTimeout: 10 * time.Minute}
	cfg.PolicyFor = func(context.Context, string) (workspace.Policy, error) { return policy, nil }
	m := e.manager(cfg)
	e.run(m)
	waitFor(t, "the pool to fill", func() bool { return len(e.warmRunning()) == 1 })

	claimedAt := e.clock.Advance(30 * time.Minute) // a quiet half hour
	w := ensure(t, m, "uma")
	if n := len(e.orch.assignCalls()); n != 1 {
		t.Fatalf("%d claims, want 1", n)
	}
	st, err := m.Idle(context.Background(), "uma")
	if err != nil {
		t.Fatal(err)
	}
	if st.Warning || st.StopAt.Before(claimedAt.Add(policy.IdleTimeout)) {
		t.Errorf("just after the claim: %+v, want no warning and a stop no earlier than %v (claim + idle timeout)",
			st, claimedAt.Add(policy.IdleTimeout))
	}
	// The idle check runs every 10ms: give it a few rounds.
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if got := e.get(w.ID); got.State != workspace.StateRunning {
			t.Fatalf("the idle check stopped the workspace just claimed (state %s, stops %+v)", got.State, e.stopEvents())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := m.Idle(context.Background(), "uma"); errors.Is(err, workspace.ErrStopped) {
		t.Error("the workspace just claimed was stopped")
	}
}

// TestWarmPoolShrinksToItsSize: a gateway started again with a smaller
// pool (here, after one of 3) stops the warm workspaces beyond its size,
// the newest first, and leaves claimed ones alone; with no pool at all it
// stops every warm one.
func TestWarmPoolShrinksToItsSize(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.WarmPool = 3
	stop := e.run(e.manager(cfg))
	waitFor(t, "the pool of 3 to fill", func() bool { return len(e.warmRunning()) == 3 })
	if p := stop(); p != nil {
		t.Fatalf("Run panicked: %v", p)
	}
	pool := e.warmRunning()
	oldest := pool[0]
	for _, w := range pool {
		if w.CreatedAt.Before(oldest.CreatedAt) || w.CreatedAt.Equal(oldest.CreatedAt) && w.ID < oldest.ID {
			oldest = w
		}
	}

	cfg.WarmPool = 1
	m := e.manager(cfg)
	stop = e.run(m)
	waitFor(t, "the pool to shrink to 1", func() bool { return len(e.warm()) == 1 })
	if left := e.warm(); left[0].ID != oldest.ID {
		t.Errorf("the pool kept %s, want the oldest, %s", left[0].ID, oldest.ID)
	}
	for _, w := range pool {
		if w.ID != oldest.ID && e.orch.agent(w.ID).alive() {
			t.Errorf("warm workspace %s beyond the pool's size still runs", w.ID)
		}
	}
	w := ensure(t, m, "uma") // claims the one left
	if p := stop(); p != nil {
		t.Fatalf("Run panicked: %v", p)
	}

	cfg.WarmPool = 0
	e.run(e.manager(cfg))
	waitFor(t, "no warm workspace to be left", func() bool { return len(e.warm()) == 0 })
	if got := e.get(w.ID); got.UserID != "uma" || got.State != workspace.StateRunning || !e.orch.agent(w.ID).alive() {
		t.Errorf("uma's workspace after the pool was emptied: %+v", got)
	}
}
