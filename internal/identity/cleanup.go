package identity

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/revocation"
	"github.com/codehub-dev/codehub/internal/session"
)

// CleanupExpiredSessions is the design's ResourceManager
// cleanupExpiredSessions: it deletes the sessions past their lifetime and
// ends those unused for longer than IdleTimeout, on every gateway, each
// recorded as session.expired. It returns how many sessions it removed.
// Run calls it every CleanupInterval.
func (s *Service) CleanupExpiredSessions(ctx context.Context) (int, error) {
	var errs []error
	n, err := s.d.Sessions.DeleteExpired(ctx)
	if err != nil {
		errs = append(errs, err)
	} else if n > 0 {
		// The stores drop expired sessions without saying whose they
		// were: one entry counts them.
		s.log.Debug("deleted expired sessions", "count", n)
		s.record(ctx, audit.Event{EventType: audit.SessionExpired, Metadata: map[string]any{"count": n, "reason": "expired"}})
	}
	idle, err := s.endIdleSessions(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	s.seen.prune(s.cfg.Now().Add(-2 * s.touchEvery()))
	return n + idle, errors.Join(errs...)
}

// endIdleSessions ends every session unused for longer than IdleTimeout.
func (s *Service) endIdleSessions(ctx context.Context) (int, error) {
	if s.cfg.IdleTimeout <= 0 {
		return 0, nil
	}
	all, err := s.d.Sessions.AllActive(ctx)
	if err != nil {
		return 0, err
	}
	now := s.cfg.Now()
	var ended []string
	for _, sess := range all {
		if now.Sub(sess.LastActivity) <= s.cfg.IdleTimeout {
			continue
		}
		// Another gateway may be sweeping too, or the session was just
		// used there: look again right before ending it.
		cur, err := s.d.Sessions.Get(ctx, sess.ID)
		if errors.Is(err, session.ErrNotFound) {
			continue
		}
		if err != nil {
			return len(ended), err
		}
		if now.Sub(cur.LastActivity) <= s.cfg.IdleTimeout {
			continue
		}
		if err := s.d.Sessions.Delete(ctx, cur.ID); err != nil {
			return len(ended), err
		}
		ended = append(ended, cur.ID)
		e := audit.Event{EventType: audit.SessionExpired, UserID: cur.UserID, Metadata: map[string]any{
			"sessionId": cur.ID, "reason": "idle timeout",
			"lastActivity": cur.LastActivity.UTC().Format(time.RFC3339), "idleTimeoutSeconds": s.cfg.IdleTimeout.Seconds(),
		}}
		if u, err := s.userByID(ctx, cur.UserID); err == nil {
			e.Username = u.Username
		}
		s.record(ctx, e)
	}
	if len(ended) > 0 {
		s.log.Info("ended idle sessions", "count", len(ended), "idle_timeout", s.cfg.IdleTimeout)
		s.publish(ctx, revocation.Event{SessionIDs: ended})
	}
	return len(ended), nil
}

// touchEvery is how stale a session's last activity may get before a use
// of it is written down: often enough that the idle timeout never ends a
// session in use, rarely enough that using it costs no store write.
func (s *Service) touchEvery() time.Duration {
	every := time.Minute
	if s.cfg.IdleTimeout > 0 {
		every = min(every, s.cfg.IdleTimeout/2)
	}
	return every
}

// SessionActive records a use of the session that the gateway relays
// without authenticating it again: a message on one of its open
// WebSockets. An editor that stays open thus keeps its session from
// ending as idle. It is cheap enough to call for every message: the store
// is written in the background, at most once per touch interval.
func (s *Service) SessionActive(sessionID string) {
	if sessionID == "" {
		return
	}
	now := s.cfg.Now()
	if !s.seen.due(sessionID, now, s.touchEvery()) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sess, err := s.sessionByID(ctx, sessionID)
		if err != nil || sess == nil {
			return
		}
		if now.Sub(sess.LastActivity) > s.touchEvery() {
			s.touch(ctx, sessionID, now)
		}
	}()
}

// activitySeen remembers when a session's activity was last taken note
// of, so that SessionActive writes seldom.
type activitySeen struct {
	mu sync.Mutex
	at map[string]time.Time
}

func newActivitySeen() *activitySeen { return &activitySeen{at: map[string]time.Time{}} }

// due reports whether the session's activity at now should be noted, and
// if so remembers now.
func (a *activitySeen) due(id string, now time.Time, every time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if last, ok := a.at[id]; ok && now.Sub(last) < every {
		return false
	}
	if len(a.at) >= maxEntries { // the sweep is off: stay bounded
		clear(a.at)
	}
	a.at[id] = now
	return true
}

// prune forgets sessions not seen since before.
func (a *activitySeen) prune(before time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, t := range a.at {
		if t.Before(before) {
			delete(a.at, id)
		}
	}
}
