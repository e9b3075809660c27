package workspace

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// eventually polls cond; the limit only turns a hang into a failure.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// queuedStart is one acquire waiting in a goroutine.
type queuedStart struct {
	pos    atomic.Int32 // the last position it was told
	told   atomic.Int32 // how many times
	got    chan func()
	err    chan error
	cancel context.CancelFunc
}

func enqueue(q *startQueue) *queuedStart {
	ctx, cancel := context.WithCancel(context.Background())
	s := &queuedStart{got: make(chan func(), 1), err: make(chan error, 1), cancel: cancel}
	go func() {
		release, err := q.acquire(ctx, func(pos int) {
			s.pos.Store(int32(pos))
			s.told.Add(1)
		})
		if err != nil {
			s.err <- err
			return
		}
		s.got <- release
	}()
	return s
}

func noWait(t *testing.T) func(int) {
	return func(pos int) { t.Errorf("waited in line (position %d) with a slot free", pos) }
}

// TestStartQueueInOrder: n starts at once, the rest first come first
// served, each told its place as the line moves.
func TestStartQueueInOrder(t *testing.T) {
	t.Parallel()
	q := newStartQueue(2, func(int) {})
	ctx := context.Background()
	r1, err1 := q.acquire(ctx, noWait(t))
	r2, err2 := q.acquire(ctx, noWait(t))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	var line []*queuedStart
	for i := 1; i <= 3; i++ {
		line = append(line, enqueue(q))
		eventually(t, "the start to get in line", func() bool { return q.Waiting() == i })
	}
	a, b, c := line[0], line[1], line[2]
	if a.pos.Load() != 1 || b.pos.Load() != 2 || c.pos.Load() != 3 {
		t.Errorf("positions %d %d %d, want 1 2 3", a.pos.Load(), b.pos.Load(), c.pos.Load())
	}

	// Leaving the line moves those behind up.
	b.cancel()
	if err := <-b.err; !errors.Is(err, context.Canceled) {
		t.Errorf("a start whose context ended = %v", err)
	}
	if q.Waiting() != 2 || a.pos.Load() != 1 || c.pos.Load() != 2 {
		t.Errorf("after one left: %d waiting, positions %d %d", q.Waiting(), a.pos.Load(), c.pos.Load())
	}

	// A slot freed goes to the first in line, and the line moves up.
	r1()
	ra := <-a.got
	eventually(t, "the last to move up", func() bool { return c.pos.Load() == 1 })
	select {
	case <-c.got:
		t.Fatal("a third start got a slot of two")
	default:
	}
	r2()
	rc := <-c.got
	if q.Waiting() != 0 {
		t.Errorf("%d waiting, want 0", q.Waiting())
	}
	ra()
	rc()
	// Both slots are free again.
	r3, _ := q.acquire(ctx, noWait(t))
	r4, _ := q.acquire(ctx, noWait(t))
	r3()
	r4()
}

// TestStartQueueSlotHandedOverAsContextEnds: a start whose context ends
// just as it is handed a slot gives the slot on; none is lost.
func TestStartQueueSlotHandedOverAsContextEnds(t *testing.T) {
	t.Parallel()
	for range 50 {
		q := newStartQueue(1, func(int) {})
		hold, _ := q.acquire(context.Background(), noWait(t))
		s := enqueue(q)
		eventually(t, "the start to get in line", func() bool { return q.Waiting() == 1 })
		var wg sync.WaitGroup
		wg.Go(hold)
		wg.Go(s.cancel)
		wg.Wait()
		select {
		case release := <-s.got:
			release()
		case <-s.err:
		}
		done := make(chan struct{})
		go func() {
			release, err := q.acquire(context.Background(), func(int) {})
			if err == nil {
				release()
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("the slot was lost")
		}
	}
}

// TestStartQueuePositionAfterConcurrentRelease: a start that gets in line
// just as a slot frees is told its position after the move, not before.
func TestStartQueuePositionAfterConcurrentRelease(t *testing.T) {
	t.Parallel()
	var (
		armed    atomic.Bool
		hold     func()
		released = make(chan struct{})
	)
	q := newStartQueue(1, func(n int) {
		// OnQueue runs as the second start gets in line: a running start
		// ends at that moment.
		if n == 2 && armed.CompareAndSwap(true, false) {
			go func() {
				hold()
				close(released)
			}()
			select {
			case <-released:
			case <-time.After(time.Second): // a queue that reports under its lock
			}
		}
	})
	hold, _ = q.acquire(context.Background(), noWait(t))
	a := enqueue(q)
	eventually(t, "the first start to get in line", func() bool { return q.Waiting() == 1 })
	armed.Store(true)
	b := enqueue(q)
	releaseA := <-a.got
	eventually(t, "the second start to be told its position", func() bool { return b.told.Load() >= 2 })
	if q.Waiting() != 1 || b.pos.Load() != 1 {
		t.Errorf("the only start in line was last told position %d, want 1 (%d waiting)", b.pos.Load(), q.Waiting())
	}
	releaseA()
	(<-b.got)()
}

// TestStartQueueCountSettles: OnQueue's reports arrive in order, so the
// last says how many wait now (the start-queue gauge), even when a report
// is slow.
func TestStartQueueCountSettles(t *testing.T) {
	t.Parallel()
	var (
		mu     sync.Mutex
		counts []int
		armed  atomic.Bool
		zero   = make(chan struct{})
		once   sync.Once
	)
	q := newStartQueue(1, func(n int) {
		if armed.Load() && n == 1 {
			select { // a slow report of one in line
			case <-zero:
			case <-time.After(time.Second): // a queue that reports in order
			}
		}
		mu.Lock()
		counts = append(counts, n)
		mu.Unlock()
		if armed.Load() && n == 0 {
			once.Do(func() { close(zero) })
		}
	})
	reports := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), counts...)
	}
	hold, _ := q.acquire(context.Background(), noWait(t))
	a := enqueue(q)
	eventually(t, "the first start to get in line", func() bool { return q.Waiting() == 1 })
	b := enqueue(q)
	eventually(t, "the second start to get in line", func() bool { return q.Waiting() == 2 })
	eventually(t, "both to be counted", func() bool { return len(reports()) == 2 })
	armed.Store(true)
	hold()
	(<-a.got)()
	(<-b.got)()
	// Two starts got in line, and the line moved twice.
	eventually(t, "four reports", func() bool { return len(reports()) == 4 })
	got := reports()
	if last := got[len(got)-1]; last != q.Waiting() {
		t.Errorf("OnQueue reported %v: the last, %d, says starts wait when %d do", got, last, q.Waiting())
	}
}
