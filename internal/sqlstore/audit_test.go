package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
)

func TestAuditLog(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			b.need(t)
			cfg := b.config(t)
			// Two gateways append concurrently to one chain.
			logs := []*AuditLog{mustOpen(t, cfg).AuditLog(), mustOpen(t, cfg).AuditLog()}
			var wg sync.WaitGroup
			for g := 0; g < 2; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for i := 0; i < 20; i++ {
						e := audit.Event{Timestamp: t0.Add(time.Duration(i) * time.Minute), EventType: audit.LoginSuccess,
							UserID: fmt.Sprintf("u%d", g), Username: "n", Status: audit.StatusSuccess, Metadata: map[string]any{"i": i}}
						if err := logs[g].Append(ctx, []audit.Event{e}); err != nil {
							t.Error(err)
						}
					}
				}(g)
			}
			wg.Wait()
			n, err := logs[0].Verify(ctx)
			if err != nil || n != 40 {
				t.Fatalf("Verify = %d, %v", n, err)
			}
			page, total, err := logs[0].Query(ctx, AuditQuery{UserID: "u1", Limit: 5})
			if err != nil || total != 20 || len(page) != 5 || page[0].UserID != "u1" || page[0].Seq < page[4].Seq {
				t.Fatalf("Query(user) = %d entries of %d, %v", len(page), total, err)
			}
			if _, total, _ := logs[0].Query(ctx, AuditQuery{Since: t0.Add(10 * time.Minute), Until: t0.Add(15 * time.Minute)}); total != 10 {
				t.Fatalf("Query(time range) total = %d, want 10", total)
			}
			if _, total, _ := logs[0].Query(ctx, AuditQuery{EventType: audit.Logout}); total != 0 {
				t.Fatalf("Query(type) total = %d", total)
			}
			// Tampering with a row in the database is detected.
			if _, err := logs[0].db.sql.ExecContext(ctx, "UPDATE audit_log SET username = 'mallory' WHERE seq = 7"); err != nil {
				t.Fatal(err)
			}
			if _, err := logs[0].Verify(ctx); err == nil || !strings.Contains(err.Error(), "seq 7: altered") {
				t.Fatalf("altered row: %v", err)
			}
			if _, err := logs[0].db.sql.ExecContext(ctx, "DELETE FROM audit_log WHERE seq = 7"); err != nil {
				t.Fatal(err)
			}
			if _, err := logs[0].Verify(ctx); err == nil || !strings.Contains(err.Error(), "seq 8: broken chain") {
				t.Fatalf("deleted row: %v", err)
			}
		})
	}
}
