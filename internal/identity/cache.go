package identity

import (
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/user"
)

// cache keeps sessions and users for a short while, so that authenticating
// a request does not leave the process. Entries are dropped by revocation
// events; the TTL bounds staleness when an event is lost. Misses are
// cached too (a request with a forged cookie must not reach the store each
// time); a session id is a hash of a 256-bit random token, so a remembered
// miss cannot hide a session created later.
type cache struct {
	ttl time.Duration
	now func() time.Time

	mu       sync.Mutex
	sessions map[string]sessionEntry
	users    map[string]userEntry
	lastGC   time.Time
}

type sessionEntry struct {
	s       *session.Session // nil: known missing
	expires time.Time
}

type userEntry struct {
	u       *user.User
	expires time.Time
}

// maxEntries bounds each map; beyond it expired entries are swept, then
// everything if need be.
const maxEntries = 100000

func newCache(ttl time.Duration, now func() time.Time) *cache {
	return &cache{ttl: ttl, now: now, sessions: map[string]sessionEntry{}, users: map[string]userEntry{}}
}

// session returns a cached session (nil for a remembered miss) and whether
// the cache knew the id. Callers must not modify the result.
func (c *cache) session(id string) (*session.Session, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.sessions[id]
	if !ok || now.After(e.expires) {
		return nil, false
	}
	if e.s != nil && e.s.Expired(now) {
		delete(c.sessions, id)
		return nil, false
	}
	return e.s, true
}

func (c *cache) putSession(s *session.Session) {
	now := c.now()
	exp := now.Add(c.ttl)
	if s.ExpiresAt.Before(exp) {
		exp = s.ExpiresAt
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.sessions[s.ID]; ok && e.s == nil && !now.After(e.expires) {
		// Ended (or never existed), and ids are never reused: a lookup
		// that read the session before it ended must not bring it back.
		return
	}
	c.gcLocked(now)
	c.sessions[s.ID] = sessionEntry{s: s.Clone(), expires: exp}
}

func (c *cache) putMissingSession(id string) {
	now := c.now()
	c.mu.Lock()
	c.gcLocked(now)
	c.sessions[id] = sessionEntry{expires: now.Add(c.ttl)}
	c.mu.Unlock()
}

// dropSession remembers that a session ended.
func (c *cache) dropSession(id string) { c.putMissingSession(id) }

func (c *cache) user(id string) (*user.User, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.users[id]
	if !ok || now.After(e.expires) {
		return nil, false
	}
	return e.u, true
}

func (c *cache) putUser(u *user.User) {
	now := c.now()
	c.mu.Lock()
	c.gcLocked(now)
	c.users[u.ID] = userEntry{u: u.Clone(), expires: now.Add(c.ttl)}
	c.mu.Unlock()
}

func (c *cache) dropUser(id string) {
	c.mu.Lock()
	delete(c.users, id)
	c.mu.Unlock()
}

func (c *cache) gcLocked(now time.Time) {
	if len(c.sessions) < maxEntries && len(c.users) < maxEntries && now.Sub(c.lastGC) < time.Minute {
		return
	}
	c.lastGC = now
	for k, e := range c.sessions {
		if now.After(e.expires) {
			delete(c.sessions, k)
		}
	}
	for k, e := range c.users {
		if now.After(e.expires) {
			delete(c.users, k)
		}
	}
	if len(c.sessions) >= maxEntries {
		c.sessions = map[string]sessionEntry{}
	}
	if len(c.users) >= maxEntries {
		c.users = map[string]userEntry{}
	}
}

// clear drops everything: events may have been missed.
func (c *cache) clear() {
	c.mu.Lock()
	c.sessions = map[string]sessionEntry{}
	c.users = map[string]userEntry{}
	c.mu.Unlock()
}
