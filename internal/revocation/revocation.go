// Package revocation tells every gateway that sessions have ended or a user
// has changed, so that each drops its cached copies and closes the affected
// WebSockets within a second, while the per-request check stays a memory
// lookup. Backends: Local (one gateway), redis/ (pub/sub) and postgres/
// (LISTEN/NOTIFY).
package revocation

import (
	"context"
	"sync"
	"time"
)

// Event is one change other gateways must act on.
type Event struct {
	// SessionIDs ended (logout, revocation, expiry, replayed refresh token).
	SessionIDs []string `json:"s,omitempty"`
	// UserID changed (role, password, disabled, deleted): drop cached
	// copies of the user.
	UserID string `json:"u,omitempty"`
	// AllSessions says every session of UserID ended, including any a
	// gateway holds only in its memory (the "memory" session store, when
	// the CLI revokes them).
	AllSessions bool `json:"a,omitempty"`
	// At is when the event was made; AllSessions ends the sessions created
	// until then only (a sign-in right after must survive the echo).
	At time.Time `json:"t,omitzero"`
	// Resync is delivered by Subscribe itself (never published) each time
	// the subscription is established or re-established: events may have
	// been missed in between, so every cached session and user must be
	// dropped.
	Resync bool `json:"-"`
}

// Bus carries events between gateways. Every gateway, the publisher
// included, receives the events published while it is subscribed. Delivery
// is at most once (Redis Pub/Sub, NOTIFY): after a reconnection the
// subscriber is handed an Event with Resync set, since events may have
// been lost meanwhile.
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
	subs map[int]*localSub
	next int
}

type localSub struct {
	ch   chan Event
	done chan struct{}
}

var _ Bus = (*Local)(nil)

// NewLocal returns an in-process Bus.
func NewLocal() *Local { return &Local{subs: map[int]*localSub{}} }

// Publish implements Bus. It waits while a subscriber's queue is full, but
// never for a subscriber that has gone.
func (l *Local) Publish(ctx context.Context, ev Event) error {
	l.mu.Lock()
	subs := make([]*localSub, 0, len(l.subs))
	for _, s := range l.subs {
		subs = append(subs, s)
	}
	l.mu.Unlock()
	for _, s := range subs {
		select {
		case s.ch <- ev:
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Subscribe implements Bus.
func (l *Local) Subscribe(ctx context.Context, fn func(Event)) error {
	sub := &localSub{ch: make(chan Event, 256), done: make(chan struct{})}
	l.mu.Lock()
	id := l.next
	l.next++
	l.subs[id] = sub
	l.mu.Unlock()
	defer func() {
		close(sub.done)
		l.mu.Lock()
		delete(l.subs, id)
		l.mu.Unlock()
	}()
	for {
		select {
		case ev := <-sub.ch:
			fn(ev)
		case <-ctx.Done():
			return nil
		}
	}
}
