package revocation_test

import (
	"testing"

	"github.com/codehub-dev/codehub/internal/revocation"
	"github.com/codehub-dev/codehub/internal/revocation/bustest"
)

func TestLocalContract(t *testing.T) {
	bustest.Run(t, func(t *testing.T) (a, b revocation.Bus) {
		l := revocation.NewLocal()
		return l, l // one gateway: both "gateways" are the same bus
	})
}
