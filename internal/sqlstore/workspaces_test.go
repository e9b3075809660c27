package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/workspace"
)

func TestWorkspaceRegistry(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 123000, time.UTC)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			b.need(t)
			st := mustOpen(t, b.config(t)).Workspaces()
			w := &workspace.Workspace{
				ID: "ws-1", UserID: "u-1", State: workspace.StateRunning, Orchestrator: "local", Node: "n1",
				Address: "10.200.0.2:7070", Secret: "s3cret", PID: 4242, Home: "/var/lib/codehub/users/ws-1",
				CreatedAt: t0, StartedAt: t0.Add(time.Second), Meta: map[string]string{"uid": "60001", "netns": "chw-1"},
			}
			if err := st.Create(ctx, w); err != nil {
				t.Fatal(err)
			}
			got, err := st.Get(ctx, "ws-1")
			if err != nil {
				t.Fatal(err)
			}
			if got.UserID != "u-1" || got.State != workspace.StateRunning || got.Secret != "s3cret" || got.PID != 4242 ||
				!got.CreatedAt.Equal(t0) || !got.StartedAt.Equal(t0.Add(time.Second)) || !got.StoppedAt.IsZero() ||
				got.Meta["netns"] != "chw-1" {
				t.Fatalf("round trip: %+v", got)
			}
			if byUser, err := st.ByUser(ctx, "u-1"); err != nil || byUser.ID != "ws-1" {
				t.Fatalf("ByUser = %v, %v", byUser, err)
			}
			if _, err := st.ByUser(ctx, "nobody"); !errors.Is(err, workspace.ErrNotFound) {
				t.Fatalf("ByUser(missing) = %v", err)
			}
			if _, err := st.Get(ctx, "missing"); !errors.Is(err, workspace.ErrNotFound) {
				t.Fatalf("Get(missing) = %v", err)
			}
			// One workspace per user.
			dup := w.Clone()
			dup.ID = "ws-2"
			if err := st.Create(ctx, dup); !errors.Is(err, workspace.ErrConflict) {
				t.Fatalf("second workspace of a user: %v", err)
			}
			upd, err := st.Update(ctx, "ws-1", func(x *workspace.Workspace) error {
				x.State, x.StoppedAt, x.Restarts, x.LastError = workspace.StateStopped, t0.Add(time.Hour), 2, "boom"
				return nil
			})
			if err != nil || upd.State != workspace.StateStopped {
				t.Fatalf("Update = %+v, %v", upd, err)
			}
			if got, _ := st.Get(ctx, "ws-1"); got.Restarts != 2 || got.LastError != "boom" || !got.StoppedAt.Equal(t0.Add(time.Hour)) {
				t.Fatalf("after Update: %+v", got)
			}
			boom := errors.New("no")
			if _, err := st.Update(ctx, "ws-1", func(*workspace.Workspace) error { return boom }); !errors.Is(err, boom) {
				t.Fatalf("Update with a failing fn: %v", err)
			}
			if _, err := st.Update(ctx, "missing", func(*workspace.Workspace) error { return nil }); !errors.Is(err, workspace.ErrNotFound) {
				t.Fatalf("Update(missing) = %v", err)
			}
			if err := st.Delete(ctx, "ws-1"); err != nil {
				t.Fatal(err)
			}
			if all, err := st.List(ctx); err != nil || len(all) != 0 {
				t.Fatalf("List after Delete = %v, %v", all, err)
			}
		})
	}
}

// TestWorkspaceClaimIsAtomic: many concurrent sign-ins claim a small warm
// pool; no workspace is claimed twice and nobody gets two.
func TestWorkspaceClaimIsAtomic(t *testing.T) {
	ctx := context.Background()
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			b.need(t)
			cfg := b.config(t)
			// Two handles: two gateways.
			stores := []workspace.Store{mustOpen(t, cfg).Workspaces(), mustOpen(t, cfg).Workspaces()}
			now := time.Now().UTC()
			const pool, claimers = 5, 20
			for i := 0; i < pool; i++ {
				if err := stores[0].Create(ctx, &workspace.Workspace{ID: fmt.Sprintf("warm-%d", i), State: workspace.StateRunning,
					Orchestrator: "local", CreatedAt: now.Add(time.Duration(i) * time.Millisecond)}); err != nil {
					t.Fatal(err)
				}
			}
			// A warm workspace still starting, and one of another orchestrator,
			// are not claimable.
			stores[0].Create(ctx, &workspace.Workspace{ID: "warm-starting", State: workspace.StateStarting, Orchestrator: "local", CreatedAt: now})
			stores[0].Create(ctx, &workspace.Workspace{ID: "warm-nomad", State: workspace.StateRunning, Orchestrator: "nomad", CreatedAt: now})

			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				claimed = map[string]string{}
				misses  int
			)
			for i := 0; i < claimers; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					user := fmt.Sprintf("user-%d", i)
					w, err := stores[i%2].Claim(ctx, "local", user)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case errors.Is(err, workspace.ErrNotFound):
						misses++
					case err != nil:
						t.Errorf("Claim: %v", err)
					default:
						if prev, dup := claimed[w.ID]; dup {
							t.Errorf("workspace %s claimed by %s and %s", w.ID, prev, user)
						}
						if w.UserID != user {
							t.Errorf("claimed workspace has user %q, want %q", w.UserID, user)
						}
						claimed[w.ID] = user
					}
				}(i)
			}
			wg.Wait()
			if len(claimed) != pool || misses != claimers-pool {
				t.Fatalf("%d claimed, %d misses; want %d and %d", len(claimed), misses, pool, claimers-pool)
			}
			if _, ok := claimed["warm-starting"]; ok {
				t.Fatal("a starting workspace was claimed")
			}
			// A user who has a workspace cannot claim another.
			var owner string
			for _, u := range claimed {
				owner = u
				break
			}
			stores[0].Create(ctx, &workspace.Workspace{ID: "warm-extra", State: workspace.StateRunning, Orchestrator: "local", CreatedAt: now})
			if _, err := stores[0].Claim(ctx, "local", owner); !errors.Is(err, workspace.ErrConflict) {
				t.Fatalf("second claim by %s: %v, want ErrConflict", owner, err)
			}
			if w, _ := stores[0].Get(ctx, "warm-extra"); w.UserID != "" {
				t.Fatalf("warm-extra was given to %q", w.UserID)
			}
		})
	}
}
