package memory_test

import (
	"testing"

	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/session/memory"
	"github.com/codehub-dev/codehub/internal/session/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, clock *storetest.Clock) session.Store {
		return memory.New(clock.Now)
	})
}
