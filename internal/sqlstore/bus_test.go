package sqlstore

import (
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/revocation"
	"github.com/codehub-dev/codehub/internal/revocation/bustest"
)

// TestRevocationBusContract: two gateways are two DB handles on one
// database, as two processes sharing a SQLite file (or the CLI and a
// gateway) are.
func TestRevocationBusContract(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			b.need(t)
			bustest.Run(t, func(t *testing.T) (revocation.Bus, revocation.Bus) {
				cfg := b.config(t)
				one := mustOpen(t, cfg)
				two := mustOpen(t, cfg)
				return one.RevocationBus(20 * time.Millisecond), two.RevocationBus(20 * time.Millisecond)
			})
		})
	}
}
