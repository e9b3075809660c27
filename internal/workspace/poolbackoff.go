package workspace

import (
	"errors"
	"sync"
	"time"
)

// poolBackoff spaces the warm pool's starts after failures: a pool that
// cannot start workspaces (a driver the nodes lack, an image that does
// not exist) would otherwise dispatch one, and log it twice, at every
// health tick.
type poolBackoff struct {
	mu      sync.Mutex
	fails   int       // failed warm starts in a row
	retryAt time.Time // no warm start before
	logged  string    // the failure last logged
}

// due reports whether a warm start may be tried now.
func (b *poolBackoff) due(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !now.Before(b.retryAt)
}

// poolStarted records the outcome of a warm start: after a failure, the
// next waits as a crash restart would (ErrCannotStart: CannotStartRetry),
// and a failure is logged once until its message changes; a success after
// failures is said once too.
func (m *Manager) poolStarted(err error) {
	b := &m.pool
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		if b.fails > 0 {
			m.log.Info("the warm pool starts workspaces again", "after_failures", b.fails)
		}
		b.fails, b.retryAt, b.logged = 0, time.Time{}, ""
		return
	}
	b.fails++
	wait := m.backoff(b.fails)
	if errors.Is(err, ErrCannotStart) {
		wait = m.cfg.CannotStartRetry
	}
	b.retryAt = m.cfg.Now().Add(wait)
	if msg := err.Error(); msg != b.logged {
		b.logged = msg
		m.log.Error("the warm pool cannot start workspaces; it tries again later, and says nothing more until the cause changes", "error", err, "retry_in", wait)
		return
	}
	m.log.Debug("warm workspace failed to start again", "error", err, "failures", b.fails, "retry_in", wait)
}
