package gateway

import "sync"

// connLimits counts the proxied requests and WebSockets open per user and
// for the whole gateway.
type connLimits struct {
	max int // for the gateway; 0: none

	mu     sync.Mutex
	total  int
	byUser map[string]int
}

func newConnLimits(max int) *connLimits { return &connLimits{max: max, byUser: map[string]int{}} }

// acquire takes one connection of user (limit 0: none); ok is false when a
// limit is reached. release must be called once the connection ends.
func (c *connLimits) acquire(user string, limit int) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if (c.max > 0 && c.total >= c.max) || (limit > 0 && c.byUser[user] >= limit) {
		return nil, false
	}
	c.total++
	c.byUser[user]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.total--
			if c.byUser[user]--; c.byUser[user] <= 0 {
				delete(c.byUser, user)
			}
			c.mu.Unlock()
		})
	}, true
}

// open returns the connections open for user.
func (c *connLimits) open(user string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byUser[user]
}
