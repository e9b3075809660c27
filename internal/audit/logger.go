package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults for the zero values of LoggerConfig.
const (
	DefaultCheckpointEntries  = 100
	DefaultCheckpointInterval = time.Minute
	DefaultMaxBacklog         = 100_000
)

// Retry pacing of a sink that failed (the database down, say).
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// LoggerConfig configures a Logger.
type LoggerConfig struct {
	// Log receives the Logger's own problems (a sink failing).
	Log hclog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// CheckpointEntries: a sink that can checkpoint (Checkpointer) gets a
	// checkpoint once this many entries were appended since its last one
	// (default 100)...
	CheckpointEntries int
	// ...and CheckpointInterval after the first of them at the latest
	// (default 1m); and one when the Logger closes.
	CheckpointInterval time.Duration
	// Checkpoints keep the checkpoints outside the logs: the state file
	// next to the key, and the database.
	Checkpoints []CheckpointStore
	// MaxBacklog bounds the events kept, in memory, for a sink that fails
	// until it works again (default 100000); beyond it they are dropped
	// from that sink, which verify then reports.
	MaxBacklog int
}

// Logger hands events to its sinks from one goroutine, in order. Record
// never drops an event: when the queue is full it waits. A sink that fails
// (the database down) does not hold the others up: its events wait in a
// backlog, retried with growing pauses, and are written, in order and with
// their original time and id, when it works again.
type Logger struct {
	cfg   LoggerConfig
	sinks []*sinkState
	// logID is the file log's id, stamped on every event so that the
	// database's copy names the file that holds it too.
	logID string
	queue chan Event
	tick  *time.Ticker
	force chan chan struct{}
	done  chan struct{}

	// mu guards closed; Record holds it shared while it queues, so that
	// Close cannot close the queue under it.
	mu     sync.RWMutex
	closed bool

	cpMu    sync.Mutex
	pending []Checkpoint // checkpoints a store failed to take, for a retry

	statusMu sync.Mutex
	status   Status
}

// sinkState is the Logger's book-keeping for one sink. Only the Logger's
// goroutine touches it.
type sinkState struct {
	sink      Sink
	name      string
	backlog   []Event
	dropped   int
	retryAt   time.Time
	retryWait time.Duration
	lastErr   error
	// sinceCP entries were appended since the last checkpoint, the first
	// of them at firstAt.
	sinceCP int
	firstAt time.Time
}

// Status is the Logger's health, for the admin overview.
type Status struct {
	// Sinks lists each sink's state.
	Sinks []SinkStatus `json:"sinks"`
	// LastCheckpoint is when the last checkpoint was written.
	LastCheckpoint time.Time `json:"lastCheckpoint,omitzero"`
}

// SinkStatus is one sink's state.
type SinkStatus struct {
	Name string `json:"name"`
	// Failing is set while the sink's last write failed.
	Failing bool `json:"failing"`
	// Backlog events wait for the sink to work again; Dropped were given
	// up (they are in the other sinks).
	Backlog int `json:"backlog"`
	Dropped int `json:"dropped"`
	// Error is why it failed, for the gateway's own log: not served, as
	// it may name servers and paths.
	Error string `json:"-"`
}

var _ Recorder = (*Logger)(nil)

// namer is a sink that names itself in the Logger's messages and status.
type namer interface{ Name() string }

// NewLogger starts a Logger writing to sinks. If one of them is a
// FileSink, events carry its log id; a checkpoint it made when it started
// its chain is stored outside it now.
func NewLogger(cfg LoggerConfig, sinks ...Sink) *Logger {
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CheckpointEntries <= 0 {
		cfg.CheckpointEntries = DefaultCheckpointEntries
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.MaxBacklog <= 0 {
		cfg.MaxBacklog = DefaultMaxBacklog
	}
	l := &Logger{cfg: cfg, queue: make(chan Event, 4096), force: make(chan chan struct{}), done: make(chan struct{})}
	for i, s := range sinks {
		st := &sinkState{sink: s, name: fmt.Sprintf("sink %d", i+1)}
		if n, ok := s.(namer); ok {
			st.name = n.Name()
		}
		if f, ok := s.(*FileSink); ok {
			if l.logID == "" {
				l.logID = f.LogID()
			}
			if cp, ok := f.PendingCheckpoint(); ok {
				l.store([]Checkpoint{cp})
			}
		}
		l.sinks = append(l.sinks, st)
	}
	l.updateStatus(time.Time{})
	// A tick often enough to honour the interval and retry pacing, rarely
	// enough to cost nothing.
	l.tick = time.NewTicker(max(min(cfg.CheckpointInterval/4, time.Second), 10*time.Millisecond))
	go l.run()
	return l
}

// Record queues e; its Timestamp is set now if zero, Status defaults to
// success, and it gets its id.
func (l *Logger) Record(e Event) {
	if e.Timestamp.IsZero() {
		e.Timestamp = l.cfg.Now()
	}
	e.Timestamp = e.Timestamp.UTC().Truncate(time.Microsecond)
	if e.Status == "" {
		e.Status = StatusSuccess
	}
	e.ID, e.LogID = NewEventID(), l.logID
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.cfg.Log.Warn("audit event after close", "event", e.EventType)
		return
	}
	l.queue <- e
}

// Status returns the Logger's health.
func (l *Logger) Status() Status {
	l.statusMu.Lock()
	defer l.statusMu.Unlock()
	s := l.status
	s.Sinks = append([]SinkStatus(nil), s.Sinks...)
	return s
}

// Flush writes what is queued, retries failing sinks now and writes the
// checkpoints that are due; it returns when done.
func (l *Logger) Flush() {
	ack := make(chan struct{})
	select {
	case l.force <- ack:
		<-ack
	case <-l.done:
	}
}

func (l *Logger) run() {
	defer close(l.done)
	for {
		select {
		case e, ok := <-l.queue:
			if !ok {
				l.finish()
				return
			}
			l.dispatch(l.drain([]Event{e}))
		case ack := <-l.force:
			l.dispatch(l.drain(nil))
			l.retry(true)
			l.checkpoints("")
			close(ack)
		case <-l.tick.C:
			l.retry(false)
			l.checkpoints("")
		}
	}
}

// drain adds what else is queued to batch, up to 256 events.
func (l *Logger) drain(batch []Event) []Event {
	for len(batch) < 256 {
		select {
		case e, ok := <-l.queue:
			if !ok {
				return batch
			}
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// dispatch appends batch to every sink: after its backlog, if it has one.
func (l *Logger) dispatch(batch []Event) {
	if len(batch) == 0 {
		return
	}
	for _, st := range l.sinks {
		if len(st.backlog) > 0 {
			l.addBacklog(st, batch)
			continue
		}
		if err := l.append(st, batch); err != nil {
			l.cfg.Log.Error("audit sink failed; its events wait until it works again", "sink", st.name, "error", err, "events", len(batch))
			st.lastErr, st.retryWait = err, retryMin
			st.retryAt = l.cfg.Now().Add(st.retryWait)
			l.addBacklog(st, batch)
		}
	}
	l.checkpoints("")
	l.updateStatus(time.Time{})
}

// append writes events to one sink, once, and counts them for its next
// checkpoint.
func (l *Logger) append(st *sinkState, events []Event) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.sink.Append(ctx, events); err != nil {
		return err
	}
	if st.sinceCP == 0 {
		st.firstAt = l.cfg.Now()
	}
	st.sinceCP += len(events)
	return nil
}

func (l *Logger) addBacklog(st *sinkState, batch []Event) {
	room := l.cfg.MaxBacklog - len(st.backlog)
	if room < len(batch) {
		if room > 0 {
			st.backlog = append(st.backlog, batch[:room]...)
		}
		n := len(batch) - max(room, 0)
		if st.dropped == 0 {
			l.cfg.Log.Error("audit sink backlog full: events are dropped from it (they are in the other sinks; `codehub audit verify` lists them)",
				"sink", st.name, "backlog", len(st.backlog))
		}
		st.dropped += n
		return
	}
	st.backlog = append(st.backlog, batch...)
}

// retry writes the backlogs of failing sinks whose pause is over, or all
// of them if now is set.
func (l *Logger) retry(now bool) {
	for _, st := range l.sinks {
		if len(st.backlog) == 0 || (!now && l.cfg.Now().Before(st.retryAt)) {
			continue
		}
		for len(st.backlog) > 0 {
			n := min(len(st.backlog), 256)
			if err := l.append(st, st.backlog[:n]); err != nil {
				st.lastErr = err
				st.retryWait = min(2*st.retryWait, retryMax)
				st.retryAt = l.cfg.Now().Add(st.retryWait)
				l.cfg.Log.Warn("audit sink still failing", "sink", st.name, "error", err, "backlog", len(st.backlog), "next_try", st.retryWait)
				break
			}
			st.backlog = st.backlog[n:]
			if len(st.backlog) == 0 {
				st.backlog, st.lastErr = nil, nil
				l.cfg.Log.Info("audit sink works again; its backlog is written", "sink", st.name, "dropped", st.dropped)
			}
			// Long backlogs get checkpoints along the way, as live writes do.
			l.checkpoint(st, "")
		}
	}
	l.updateStatus(time.Time{})
}

// checkpoints writes the checkpoints that are due; with force (Close,
// Flush) one for every sink with entries since its last.
func (l *Logger) checkpoints(force string) {
	for _, st := range l.sinks {
		l.checkpoint(st, force)
	}
	l.storePending()
}

// checkpoint writes st's checkpoint if it is due, or if force names why
// it must be written now, and keeps it outside the log. A failing sink
// gets none: its backlog comes first.
func (l *Logger) checkpoint(st *sinkState, force string) {
	cpr, ok := st.sink.(Checkpointer)
	if !ok || st.sinceCP == 0 || len(st.backlog) > 0 {
		return
	}
	now := l.cfg.Now()
	var reason string
	switch {
	case st.sinceCP >= l.cfg.CheckpointEntries:
		reason = "entries"
	case now.Sub(st.firstAt) >= l.cfg.CheckpointInterval:
		reason = "interval"
	case force != "":
		reason = force
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cp, err := cpr.Checkpoint(ctx, now, reason)
	if err != nil {
		l.cfg.Log.Warn("audit checkpoint failed; tried again later", "sink", st.name, "error", err)
		return
	}
	st.sinceCP = 0
	l.store([]Checkpoint{cp})
	l.updateStatus(now)
}

// store keeps checkpoints in every store; those a store refused are tried
// again at the next tick, until a newer one of the same log replaces them.
func (l *Logger) store(cps []Checkpoint) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	for _, cp := range cps {
		kept := l.pending[:0]
		for _, p := range l.pending {
			if p.Log != cp.Log {
				kept = append(kept, p)
			}
		}
		l.pending = kept
		var failed error
		for _, s := range l.cfg.Checkpoints {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := s.SaveCheckpoint(ctx, cp)
			cancel()
			if err != nil {
				failed = errors.Join(failed, fmt.Errorf("%s: %w", s, err))
			}
		}
		if failed != nil {
			l.cfg.Log.Warn("audit checkpoint not kept everywhere; tried again later", "log", cp.Log, "seq", cp.Seq, "error", failed)
			l.pending = append(l.pending, cp)
		}
	}
}

// storePending tries the checkpoints a store refused again. Saving one
// twice is harmless: stores keep the newest, or ignore a duplicate.
func (l *Logger) storePending() {
	l.cpMu.Lock()
	p := l.pending
	l.pending = nil
	l.cpMu.Unlock()
	if len(p) > 0 {
		l.store(p)
	}
}

// finish writes what is left at Close: the backlogs (once more), and a
// last checkpoint of every sink.
func (l *Logger) finish() {
	l.retry(true)
	for _, st := range l.sinks {
		if len(st.backlog) > 0 {
			l.cfg.Log.Error("audit sink failed until the end: events are missing from it (`codehub audit verify` lists them)",
				"sink", st.name, "events", len(st.backlog)+st.dropped, "error", st.lastErr)
		}
	}
	l.checkpoints("close")
	l.updateStatus(time.Time{})
}

func (l *Logger) updateStatus(cpAt time.Time) {
	l.statusMu.Lock()
	defer l.statusMu.Unlock()
	l.status.Sinks = l.status.Sinks[:0]
	for _, st := range l.sinks {
		s := SinkStatus{Name: st.name, Backlog: len(st.backlog), Dropped: st.dropped}
		if st.lastErr != nil {
			s.Failing, s.Error = true, st.lastErr.Error()
		}
		l.status.Sinks = append(l.status.Sinks, s)
	}
	if !cpAt.IsZero() {
		l.status.LastCheckpoint = cpAt
	}
}

// Close writes what is queued, a last checkpoint, and closes the sinks.
func (l *Logger) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.queue)
	<-l.done
	l.tick.Stop()
	var errs []error
	for _, st := range l.sinks {
		errs = append(errs, st.sink.Close())
	}
	return errors.Join(errs...)
}
