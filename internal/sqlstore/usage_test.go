package sqlstore

import (
	"context"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/resources"
)

func TestUsageSamples(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			b.need(t)
			cfg := b.config(t)
			st := mustOpen(t, cfg).Usage()
			other := mustOpen(t, cfg).Usage() // a second gateway
			for i := 0; i < 5; i++ {
				at := t0.Add(time.Duration(i) * time.Minute)
				err := st.AddSamples(ctx, []resources.Sample{
					{At: at, UserID: resources.Totals, Sessions: 3 + i, ActiveUsers: 2, RunningWorkspaces: 1, WorkspaceStarts: i % 2,
						StorageBytes: 30 << 30, CPUPercent: 12.5},
					{At: at, UserID: "alice", Sessions: 1, Connections: 2, StorageBytes: int64(i+1) << 30, MemoryBytes: 512 << 20,
						CPUPercent: 12.5, ActiveUsers: 1, RunningWorkspaces: 1},
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			// The same interval from another gateway: the first sample wins.
			if err := other.AddSamples(ctx, []resources.Sample{{At: t0, UserID: "alice", Sessions: 99}}); err != nil {
				t.Fatal(err)
			}
			got, err := st.Samples(ctx, "alice", t0, t0.Add(3*time.Minute))
			if err != nil || len(got) != 3 {
				t.Fatalf("Samples = %d, %v", len(got), err)
			}
			if s := got[0]; !s.At.Equal(t0) || s.Sessions != 1 || s.Connections != 2 || s.StorageBytes != 1<<30 ||
				s.MemoryBytes != 512<<20 || s.CPUPercent != 12.5 || s.RunningWorkspaces != 1 {
				t.Fatalf("round trip: %+v", s)
			}
			if !got[2].At.Equal(t0.Add(2 * time.Minute)) {
				t.Fatalf("order: %+v", got)
			}
			totals, err := st.Samples(ctx, resources.Totals, t0, t0.Add(time.Hour))
			if err != nil || len(totals) != 5 || totals[4].Sessions != 7 || totals[1].WorkspaceStarts != 1 {
				t.Fatalf("totals = %+v, %v", totals, err)
			}
			if none, err := st.Samples(ctx, "nobody\x00", t0, t0.Add(time.Hour)); err != nil || len(none) != 0 {
				t.Fatalf("bad user id: %v, %v", none, err)
			}

			// Bob's storage was last measured before alice's; a later sample
			// without a measure does not hide it.
			if err := st.AddSamples(ctx, []resources.Sample{
				{At: t0.Add(-time.Hour), UserID: "bob", StorageBytes: 7 << 20},
				{At: t0.Add(time.Hour), UserID: "bob", Sessions: 1},
			}); err != nil {
				t.Fatal(err)
			}
			latest, err := st.LatestStorage(ctx)
			if err != nil || len(latest) != 2 {
				t.Fatalf("LatestStorage = %+v, %v", latest, err)
			}
			if latest[0].UserID != "alice" || latest[0].StorageBytes != 5<<30 || !latest[0].At.Equal(t0.Add(4*time.Minute)) ||
				latest[1].UserID != "bob" || latest[1].StorageBytes != 7<<20 {
				t.Fatalf("LatestStorage = %+v", latest)
			}

			n, err := st.Prune(ctx, t0.Add(2*time.Minute))
			if err != nil || n != 5 { // alice 2, totals 2, bob's old one
				t.Fatalf("Prune = %d, %v", n, err)
			}
			if err := st.DeleteUser(ctx, "alice"); err != nil {
				t.Fatal(err)
			}
			if got, _ := st.Samples(ctx, "alice", t0, t0.Add(time.Hour)); len(got) != 0 {
				t.Fatalf("after DeleteUser: %+v", got)
			}
			if got, _ := st.Samples(ctx, resources.Totals, t0, t0.Add(time.Hour)); len(got) != 3 {
				t.Fatalf("totals after pruning: %d", len(got))
			}
		})
	}
}

func TestAuditFailures(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			b.need(t)
			log := mustOpen(t, b.config(t)).AuditLog().WithKeys(auditKeys(t))
			var events []audit.Event
			for i := 0; i < 6; i++ {
				st := audit.StatusSuccess
				if i%2 == 1 {
					st = audit.StatusFailure
				}
				events = append(events, audit.Event{Timestamp: t0.Add(time.Duration(i) * time.Hour), EventType: audit.LoginFailure,
					Status: st, Metadata: map[string]any{"i": i}})
			}
			if err := log.Append(ctx, events); err != nil {
				t.Fatal(err)
			}
			got, total, err := log.Failures(ctx, t0.Add(2*time.Hour), 1)
			if err != nil || total != 2 || len(got) != 1 || got[0].Metadata["i"] != 5.0 {
				t.Fatalf("Failures = %+v, %d, %v", got, total, err)
			}
		})
	}
}
