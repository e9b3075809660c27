// Package revocation tells every gateway that sessions have ended or a user
// has changed, so that each drops its cached copies and closes the affected
// WebSockets within a second, while the per-request check stays a memory
// lookup. Backends: Local (one gateway), redis/ (pub/sub) and postgres/
// (LISTEN/NOTIFY).
package revocation

import (
	"context"
	"sync"
)

// Event is one change other gateways must act on.
type Event struct {
	// SessionIDs ended (logout, revocation, expiry, replayed refresh token).
	SessionIDs []string `json:"s,omitempty"`
	// UserID changed (role, password, disabled, deleted): drop cached
	// copies of the user.
	UserID string `json:"u,omitempty"`
}

// Bus carries events between gateways. Every gateway, the publisher
// included, receives every event published after its Subscribe.
type Bus interface {
	// Publish sends ev to every subscribed gateway.
	Publish(ctx context.Context, ev Event) error
	// Subscribe calls fn for each event until ctx ends, reconnecting after
	// failures (and logging them); it returns when ctx ends. fn runs on one
	// goroutine, in order.
	Subscribe(ctx context.Context, fn func(Event)) error
}

// Local is the Bus of a single gateway.
type Local struct {
	mu   sync.Mutex
	subs map[int]chan Event
	next int
}

var _ Bus = (*Local)(nil)

// NewLocal returns an in-process Bus.
func NewLocal() *Local { return &Local{subs: map[int]chan Event{}} }

// Publish implements Bus.
func (l *Local) Publish(ctx context.Context, ev Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ch := range l.subs {
		select {
		case ch <- ev:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Subscribe implements Bus.
func (l *Local) Subscribe(ctx context.Context, fn func(Event)) error {
	ch := make(chan Event, 256)
	l.mu.Lock()
	id := l.next
	l.next++
	l.subs[id] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.subs, id)
		l.mu.Unlock()
	}()
	for {
		select {
		case ev := <-ch:
			fn(ev)
		case <-ctx.Done():
			return nil
		}
	}
}
