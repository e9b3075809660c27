// Package bustest is the contract every revocation.Bus must meet. Each
// backend's tests call Run; the suite is the one definition of correct
// behaviour, so backends cannot drift apart.
//
// Subscriptions start asynchronously (Subscribe has no "ready" signal), so
// before asserting anything the suite publishes a sentinel event until every
// subscriber has seen it; events published after that must all arrive.
// Waits are bounded by a generous guard that only a hang exceeds: no test
// measures how fast anything is.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/revocation"
)

// Guard bounds every wait of the suite. Only a deadlock or a bus that lost
// events should ever reach it; it is not a performance limit.
const Guard = 30 * time.Second

// sentinelPrefix marks the suite's own events (in Event.UserID); recorders
// keep them apart from the events under test.
const sentinelPrefix = "bustest-sentinel:"

// Factory returns two buses of one backend and channel, as two gateways
// would have them: an event published on either reaches the subscribers of
// both. They must be isolated from every other test (a channel or prefix of
// their own) and are closed by the factory's own t.Cleanup. A single-process
// bus such as revocation.Local returns itself twice.
type Factory func(t *testing.T) (a, b revocation.Bus)

// Run runs the contract against buses made by newBus.
func Run(t *testing.T, newBus Factory) {
	ctx := context.Background()

	t.Run("PublishWithoutSubscribers", func(t *testing.T) {
		a, b := newBus(t)
		for _, bus := range []revocation.Bus{a, b} {
			if err := bus.Publish(ctx, revocation.Event{SessionIDs: []string{"s"}, UserID: "u"}); err != nil {
				t.Fatalf("Publish with nobody subscribed: %v", err)
			}
		}
	})

	t.Run("BothGatewaysReceiveInOrder", func(t *testing.T) {
		a, b := newBus(t)
		ra, rb := Subscribe(t, a), Subscribe(t, b)
		ra.name, rb.name = "a", "b"
		WaitReady(t, a, ra, rb)
		WaitReady(t, b, ra, rb)
		for _, pub := range []struct {
			name string
			bus  revocation.Bus
		}{{"a", a}, {"b", b}} {
			want := events(pub.name, 20)
			before := len(ra.Events())
			for _, ev := range want {
				if err := pub.bus.Publish(ctx, ev); err != nil {
					t.Fatalf("Publish on %s: %v", pub.name, err)
				}
			}
			WaitReady(t, pub.bus, ra, rb) // a fence: all of want arrived before it
			for _, r := range []*Recorder{ra, rb} {
				if err := sameEvents(r.Events()[before:], want); err != nil {
					t.Fatalf("published on %s, subscriber of %s: %v", pub.name, r.name, err)
				}
			}
		}
		ra.Check(t)
		rb.Check(t)
	})

	t.Run("EverySubscriberOfOneBus", func(t *testing.T) {
		a, _ := newBus(t)
		recs := []*Recorder{Subscribe(t, a), Subscribe(t, a), Subscribe(t, a)}
		WaitReady(t, a, recs...)
		want := events("a", 10)
		for _, ev := range want {
			if err := a.Publish(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		WaitReady(t, a, recs...)
		for i, r := range recs {
			if err := sameEvents(r.Events(), want); err != nil {
				t.Fatalf("subscriber %d: %v", i, err)
			}
			r.Check(t)
		}
	})

	t.Run("ConcurrentPublishers", func(t *testing.T) {
		a, b := newBus(t)
		ra, rb := Subscribe(t, a), Subscribe(t, b)
		ra.name, rb.name = "a", "b"
		WaitReady(t, a, ra, rb)
		WaitReady(t, b, ra, rb)
		const publishers, each = 4, 15
		var wg sync.WaitGroup
		errs := make(chan error, publishers)
		for p := 0; p < publishers; p++ {
			bus := a
			if p%2 == 1 {
				bus = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, ev := range events(fmt.Sprint("p", p), each) {
					if err := bus.Publish(ctx, ev); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		WaitReady(t, a, ra, rb)
		WaitReady(t, b, ra, rb)
		for _, r := range []*Recorder{ra, rb} {
			got := r.Events()
			if len(got) != publishers*each {
				t.Fatalf("subscriber of %s got %d events, want %d", r.name, len(got), publishers*each)
			}
			// Each publisher's events arrive in its order.
			for p := 0; p < publishers; p++ {
				var mine []revocation.Event
				for _, ev := range got {
					if strings.HasPrefix(ev.UserID, fmt.Sprint("p", p, "-")) {
						mine = append(mine, ev)
					}
				}
				if err := sameEvents(mine, events(fmt.Sprint("p", p), each)); err != nil {
					t.Fatalf("subscriber of %s, publisher %d: %v", r.name, p, err)
				}
			}
			r.Check(t)
		}
	})

	t.Run("SubscribeReturnsWhenCancelled", func(t *testing.T) {
		a, b := newBus(t)
		watcher := Subscribe(t, b) // stays subscribed, to know when events have gone out
		stopped := Subscribe(t, a)
		WaitReady(t, a, watcher, stopped)
		if err := stopped.Stop(t); err != nil {
			t.Fatalf("Subscribe returned %v after its context ended, want nil", err)
		}
		// Nothing may reach fn once Subscribe has returned.
		if err := a.Publish(ctx, revocation.Event{UserID: "after-cancel"}); err != nil {
			t.Fatal(err)
		}
		WaitReady(t, a, watcher)
		stopped.Check(t)
		if got := stopped.Events(); len(got) != 0 {
			t.Fatalf("cancelled subscriber received %v", got)
		}

		// A context that has already ended: Subscribe returns at once.
		done, cancel := context.WithCancel(ctx)
		cancel()
		ret := make(chan error, 1)
		go func() { ret <- a.Subscribe(done, func(revocation.Event) {}) }()
		select {
		case err := <-ret:
			if err != nil {
				t.Fatalf("Subscribe with an ended context: %v, want nil", err)
			}
		case <-time.After(Guard):
			t.Fatalf("Subscribe with an ended context has not returned after %v", Guard)
		}

		// The bus still serves new subscribers.
		again := Subscribe(t, a)
		WaitReady(t, b, again, watcher)
		again.Check(t)
		watcher.Check(t)
	})
}

// events returns n distinct events tagged with name: session ids only, a
// user only, both, and characters that need escaping.
func events(name string, n int) []revocation.Event {
	out := make([]revocation.Event, n)
	for i := range out {
		user := fmt.Sprintf("%s-%d", name, i)
		switch i % 4 {
		case 0:
			out[i] = revocation.Event{SessionIDs: []string{user + "-s"}, UserID: user}
		case 1:
			out[i] = revocation.Event{UserID: user}
		case 2:
			out[i] = revocation.Event{SessionIDs: []string{user + "-s1", user + "-s2", user + "-s3"}, UserID: user}
		default:
			out[i] = revocation.Event{SessionIDs: []string{"quote\" backslash\\ newline\n ünï €"}, UserID: user}
		}
	}
	return out
}

func sameEvents(got, want []revocation.Event) error {
	if len(got) != len(want) {
		return fmt.Errorf("got %d events %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range want {
		if got[i].UserID != want[i].UserID || !slices.Equal(got[i].SessionIDs, want[i].SessionIDs) {
			return fmt.Errorf("event %d: got %+v, want %+v (all: %v)", i, got[i], want[i], got)
		}
	}
	return nil
}

// Recorder is one subscription of the suite: it keeps the events fn
// received (sentinels apart) and notes misuse of fn.
type Recorder struct {
	name   string
	cancel context.CancelFunc
	done   chan error
	notify chan struct{}

	stopOnce sync.Once
	stopErr  error

	inFlight atomic.Int32
	overlap  atomic.Bool

	mu       sync.Mutex
	events   []revocation.Event
	seen     map[string]bool
	returned bool
	late     int
	resyncs  int
}

// Subscribe subscribes a new Recorder to bus until t ends (or Stop).
func Subscribe(t *testing.T, bus revocation.Bus) *Recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{
		name:   "the bus",
		cancel: cancel,
		done:   make(chan error, 1),
		notify: make(chan struct{}, 1),
		seen:   map[string]bool{},
	}
	go func() {
		err := bus.Subscribe(ctx, r.fn)
		r.mu.Lock()
		r.returned = true
		r.mu.Unlock()
		r.done <- err
	}()
	t.Cleanup(func() {
		if err := r.Stop(t); err != nil {
			t.Errorf("Subscribe returned %v after its context ended, want nil", err)
		}
	})
	return r
}

func (r *Recorder) fn(ev revocation.Event) {
	if r.inFlight.Add(1) > 1 {
		r.overlap.Store(true)
	}
	defer r.inFlight.Add(-1)
	r.mu.Lock()
	if r.returned {
		r.late++
	}
	if tok, ok := strings.CutPrefix(ev.UserID, sentinelPrefix); ok {
		r.seen[tok] = true
	} else if ev.Resync {
		r.resyncs++
	} else {
		r.events = append(r.events, ev)
	}
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// Resyncs returns how many Resync events the subscription delivered.
func (r *Recorder) Resyncs() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resyncs
}

// Events returns the events received so far, sentinels and resyncs left
// out.
func (r *Recorder) Events() []revocation.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *Recorder) saw(token string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[token]
}

// Stop cancels the subscription and returns what Subscribe returned; it
// fails t if Subscribe does not return within Guard.
func (r *Recorder) Stop(t *testing.T) error {
	t.Helper()
	r.stopOnce.Do(func() {
		r.cancel()
		select {
		case r.stopErr = <-r.done:
		case <-time.After(Guard):
			r.stopErr = fmt.Errorf("Subscribe has not returned %v after its context ended", Guard)
		}
	})
	return r.stopErr
}

// Check fails t if fn ran concurrently with itself or after Subscribe
// returned.
func (r *Recorder) Check(t *testing.T) {
	t.Helper()
	if r.overlap.Load() {
		t.Error("fn ran on several goroutines at once")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.late > 0 {
		t.Errorf("fn ran %d times after Subscribe returned", r.late)
	}
}

// WaitReady publishes a fresh sentinel on pub, again and again, until every
// recorder has received it. Sentinels published after an event arrive after
// it, so once WaitReady returns, every recorder subscribed has all that pub
// published before, and later events will reach it.
func WaitReady(t *testing.T, pub revocation.Bus, recs ...*Recorder) {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	ev := revocation.Event{UserID: sentinelPrefix + token}
	deadline := time.Now().Add(Guard)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := pub.Publish(context.Background(), ev); err != nil {
			t.Logf("publish sentinel: %v", err) // a reconnecting bus may refuse for a while
		}
		ready := true
		for _, r := range recs {
			ready = ready && r.saw(token)
		}
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a subscriber has not received a sentinel published for %v", Guard)
		}
		<-tick.C
	}
}
