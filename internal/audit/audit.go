// Package audit records every security-relevant action in the design's JSON
// format. Each sink (standard output, a rotating file, the database, which
// the admin API queries) keeps its entries in a chain keyed with HMAC-SHA256:
// every entry carries the HMAC of its content and of the entry before it,
// made with a key kept outside the log (a key file, or Vault), so that an
// entry altered, removed or inserted by someone without the key is detected
// (`codehub audit verify`). Checkpoints, kept both in the log and outside it,
// show a log whose tail was cut off; and verify compares the file and the
// database and names the entries either lacks.
package audit

import (
	"context"
	"time"
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
	// CheckpointEvent entries are written by the log itself: see
	// Checkpoint.
	CheckpointEvent = "audit.checkpoint"
)

// Types lists every event type.
var Types = []string{
	LoginSuccess, LoginFailure, Logout, AccountLocked, AccountUnlocked, UserCreated, UserUpdated,
	UserDeleted, UserDisabled, UserEnabled, RoleChanged, PasswordChanged, UserRegistered, InviteCreated,
	SessionCreated, SessionExpired, SessionRevoked, TokenRefreshed, WorkspaceStarted, WorkspaceStopped,
	WorkspaceFailed, WorkspaceConnect, FileAccess, TerminalAccess, ConfigChanged, AdminAction,
	QuotaExceeded, Suspicious, CheckpointEvent,
}

// Statuses.
const (
	StatusSuccess = "success"
	StatusFailure = "failure"
)

// Chain formats, in an entry's Chain field.
const (
	// ChainLegacy (no "chain" field) is the unkeyed SHA-256 chain of logs
	// written before keyed chains: anyone can recompute it, so it shows
	// damage but proves nothing against a deliberate edit.
	ChainLegacy = 0
	// ChainKeyed entries carry the HMAC-SHA256 of their content, made with
	// the key KeyID names.
	ChainKeyed = 2
)

// Event is one audit log entry: the design's format, then the fields of
// the chain. Seq counts the entries of one log, PrevHash is the Hash of the
// entry before, and Hash covers everything else.
type Event struct {
	Timestamp time.Time      `json:"timestamp"`
	EventType string         `json:"eventType"`
	UserID    string         `json:"userId,omitempty"`
	Username  string         `json:"username,omitempty"`
	IPAddress string         `json:"ipAddress,omitempty"`
	UserAgent string         `json:"userAgent,omitempty"`
	Status    string         `json:"status"`
	Metadata  map[string]any `json:"metadata,omitempty"`
	// ID names the event in every log that holds it (the file, the
	// database), so that verify can compare them.
	ID string `json:"id,omitempty"`
	// LogID is the id of the file log the event was written to, if any: a
	// database entry names the file that must hold it too.
	LogID    string `json:"log,omitempty"`
	Seq      int64  `json:"seq"`
	PrevHash string `json:"prevHash"`
	Hash     string `json:"hash"`
	// Chain is the chain format (ChainKeyed; absent in legacy entries) and
	// KeyID the key the Hash was made with.
	Chain int    `json:"chain,omitempty"`
	KeyID string `json:"kid,omitempty"`
}

// Sink stores events. Each sink keeps its own chain: it sets Seq,
// PrevHash, Hash, Chain and KeyID as it appends. An Append that fails
// stores none of the events, so that it can be retried.
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
