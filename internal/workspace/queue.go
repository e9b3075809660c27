package workspace

import (
	"context"
	"sync"
)

// startQueue lets at most n starts run at once; the others wait in line,
// first come first served, each told its position as it changes.
type startQueue struct {
	n       int
	onCount func(waiting int)

	mu      sync.Mutex
	running int
	waiting []*waiter
}

type waiter struct {
	ready  chan struct{}
	notify func(pos int)
}

func newStartQueue(n int, onCount func(int)) *startQueue {
	return &startQueue{n: n, onCount: onCount}
}

// acquire waits for a slot, calling notify with the position in line
// whenever it changes; the returned func releases the slot.
func (q *startQueue) acquire(ctx context.Context, notify func(pos int)) (func(), error) {
	q.mu.Lock()
	if q.running < q.n && len(q.waiting) == 0 {
		q.running++
		q.mu.Unlock()
		return q.release, nil
	}
	w := &waiter{ready: make(chan struct{}), notify: notify}
	q.waiting = append(q.waiting, w)
	pos := len(q.waiting)
	q.onCount(pos)
	notify(pos)
	q.mu.Unlock()
	select {
	case <-w.ready:
		return q.release, nil
	case <-ctx.Done():
		q.mu.Lock()
		for i, x := range q.waiting {
			if x == w {
				q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
				q.renumberLocked()
				q.mu.Unlock()
				return nil, ctx.Err()
			}
		}
		q.mu.Unlock()
		// The slot was handed over as ctx ended: give it back.
		q.release()
		return nil, ctx.Err()
	}
}

func (q *startQueue) release() {
	q.mu.Lock()
	if len(q.waiting) > 0 {
		next := q.waiting[0]
		q.waiting = q.waiting[1:]
		close(next.ready) // the slot passes on; running stays the same
		q.renumberLocked()
	} else {
		q.running--
	}
	q.mu.Unlock()
}

// renumberLocked tells everyone in line their new position.
func (q *startQueue) renumberLocked() {
	n := len(q.waiting)
	for i, w := range q.waiting {
		w.notify(i + 1)
	}
	q.onCount(n)
}

// Waiting returns how many starts wait in line.
func (q *startQueue) Waiting() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting)
}
