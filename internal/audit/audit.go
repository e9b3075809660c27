// Package audit records every security-relevant action in the design's JSON
// format, hash-chained so that a removed or altered entry is detected
// (`codehub audit verify`). Events go to any of three sinks: standard
// output, a rotating file, and the database (which the admin API queries).
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Event types, from the design's list: authentication, user management,
// sessions, resource access, configuration, admin actions and security
// events.
const (
	LoginSuccess     = "user.login"
	LoginFailure     = "user.login_failed"
	Logout           = "user.logout"
	AccountLocked    = "user.locked"
	AccountUnlocked  = "user.unlocked"
	UserCreated      = "user.created"
	UserUpdated      = "user.updated"
	UserDeleted      = "user.deleted"
	UserDisabled     = "user.disabled"
	UserEnabled      = "user.enabled"
	RoleChanged      = "user.role_changed"
	PasswordChanged  = "user.password_changed"
	UserRegistered   = "user.registered"
	InviteCreated    = "user.invite_created"
	SessionCreated   = "session.created"
	SessionExpired   = "session.expired"
	SessionRevoked   = "session.revoked"
	TokenRefreshed   = "session.token_refreshed"
	WorkspaceStarted = "workspace.started"
	WorkspaceStopped = "workspace.stopped"
	WorkspaceFailed  = "workspace.failed"
	WorkspaceConnect = "workspace.connection"
	FileAccess       = "resource.file_access"
	TerminalAccess   = "resource.terminal"
	ConfigChanged    = "config.changed"
	AdminAction      = "admin.action"
	QuotaExceeded    = "security.quota_exceeded"
	Suspicious       = "security.suspicious"
)

// Types lists every event type.
var Types = []string{
	LoginSuccess, LoginFailure, Logout, AccountLocked, AccountUnlocked, UserCreated, UserUpdated,
	UserDeleted, UserDisabled, UserEnabled, RoleChanged, PasswordChanged, UserRegistered, InviteCreated,
	SessionCreated, SessionExpired, SessionRevoked, TokenRefreshed, WorkspaceStarted, WorkspaceStopped,
	WorkspaceFailed, WorkspaceConnect, FileAccess, TerminalAccess, ConfigChanged, AdminAction,
	QuotaExceeded, Suspicious,
}

// Statuses.
const (
	StatusSuccess = "success"
	StatusFailure = "failure"
)

// Event is one audit log entry, in the design's format plus the chain:
// Seq counts entries of a log, PrevHash is the Hash of the entry before, and
// Hash covers everything else.
type Event struct {
	Timestamp time.Time      `json:"timestamp"`
	EventType string         `json:"eventType"`
	UserID    string         `json:"userId,omitempty"`
	Username  string         `json:"username,omitempty"`
	IPAddress string         `json:"ipAddress,omitempty"`
	UserAgent string         `json:"userAgent,omitempty"`
	Status    string         `json:"status"`
	Metadata  map[string]any `json:"metadata,omitempty"`
	Seq       int64          `json:"seq"`
	PrevHash  string         `json:"prevHash"`
	Hash      string         `json:"hash"`
}

// ComputeHash returns the hash of e: SHA-256 over its JSON without Hash.
func ComputeHash(e Event) (string, error) {
	e.Hash = ""
	b, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Chain links e after the entry with hash prev and sequence number seq-1.
func Chain(e *Event, seq int64, prev string) error {
	e.Seq, e.PrevHash = seq, prev
	h, err := ComputeHash(*e)
	if err != nil {
		return err
	}
	e.Hash = h
	return nil
}

// Sink stores events. Each sink keeps its own chain: it sets Seq, PrevHash
// and Hash as it appends.
type Sink interface {
	Append(ctx context.Context, events []Event) error
	Close() error
}

// Recorder is what the rest of codehub records events with.
type Recorder interface {
	Record(e Event)
}

// Nop records nothing (audit logging off, tests).
type Nop struct{}

// Record implements Recorder.
func (Nop) Record(Event) {}

// Logger hands events to its sinks from one goroutine, in order. Record
// never drops an event: when the queue is full it waits.
type Logger struct {
	sinks []Sink
	log   hclog.Logger
	now   func() time.Time
	queue chan Event
	done  chan struct{}

	mu     sync.Mutex
	closed bool
}

var _ Recorder = (*Logger)(nil)

// NewLogger starts a Logger writing to sinks.
func NewLogger(log hclog.Logger, now func() time.Time, sinks ...Sink) *Logger {
	if now == nil {
		now = time.Now
	}
	l := &Logger{sinks: sinks, log: log, now: now, queue: make(chan Event, 4096), done: make(chan struct{})}
	go l.run()
	return l
}

// Record queues e; its Timestamp is set now if zero and Status defaults to
// success.
func (l *Logger) Record(e Event) {
	if e.Timestamp.IsZero() {
		e.Timestamp = l.now()
	}
	e.Timestamp = e.Timestamp.UTC().Truncate(time.Microsecond)
	if e.Status == "" {
		e.Status = StatusSuccess
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		l.log.Warn("audit event after close", "event", e.EventType)
		return
	}
	l.queue <- e
}

func (l *Logger) run() {
	defer close(l.done)
	for e := range l.queue {
		batch := []Event{e}
	more:
		for len(batch) < 256 {
			select {
			case e, ok := <-l.queue:
				if !ok {
					break more
				}
				batch = append(batch, e)
			default:
				break more
			}
		}
		for _, s := range l.sinks {
			if err := appendRetry(s, batch); err != nil {
				l.log.Error("audit sink failed; events are missing from it", "error", err, "events", len(batch))
			}
		}
	}
}

// appendRetry retries a failing sink a few times: audit entries are worth
// a short wait.
func appendRetry(s Sink, batch []Event) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = s.Append(ctx, batch)
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(time.Duration(1<<attempt) * 100 * time.Millisecond)
	}
	return err
}

// Close writes what is queued and closes the sinks.
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
	var errs []error
	for _, s := range l.sinks {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

// VerifyError says where a chain breaks.
type VerifyError struct {
	// Where names the entry (file:line, or seq).
	Where  string
	Reason string
}

func (e *VerifyError) Error() string { return e.Where + ": " + e.Reason }

// Verifier checks a sequence of entries, fed in order.
type Verifier struct {
	prev    string
	seq     int64
	started bool
	// Count is the number of entries checked.
	Count int
}

// Check checks the next entry; where names it in errors.
func (v *Verifier) Check(e Event, where string) error {
	want, err := ComputeHash(e)
	if err != nil {
		return &VerifyError{where, err.Error()}
	}
	if e.Hash != want {
		return &VerifyError{where, "altered: the entry does not match its hash"}
	}
	if v.started {
		if e.PrevHash != v.prev {
			return &VerifyError{where, fmt.Sprintf("broken chain: an entry before it is missing or altered (expected previous hash %.12s…, found %.12s…)", v.prev, e.PrevHash)}
		}
		if e.Seq != v.seq+1 {
			return &VerifyError{where, fmt.Sprintf("broken chain: sequence %d follows %d (entries missing)", e.Seq, v.seq)}
		}
	}
	v.prev, v.seq, v.started = e.Hash, e.Seq, true
	v.Count++
	return nil
}
