// Package session defines browser and API sessions and the store they live
// in. The token a client holds is never stored: a session is kept under the
// SHA-256 of its token, so a copy of the store does not hand out live
// sessions.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"time"
)

// ErrNotFound is returned for a session that does not exist or has expired.
var ErrNotFound = errors.New("session not found")

// Session is one logged-in client.
type Session struct {
	ID           string            `json:"id"` // SHA-256 of the token, base64url
	UserID       string            `json:"userId"`
	CreatedAt    time.Time         `json:"createdAt"`
	ExpiresAt    time.Time         `json:"expiresAt"`
	LastActivity time.Time         `json:"lastActivity"`
	IPAddress    string            `json:"ipAddress"`
	UserAgent    string            `json:"userAgent"`
	WorkspaceID  string            `json:"workspaceId,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	// RefreshGen counts the rotations of the session's refresh token and
	// RefreshHash is the SHA-256 of the current one's secret (API sessions
	// only). A token of an older generation is a replay.
	RefreshGen  int    `json:"refreshGen,omitempty"`
	RefreshHash string `json:"refreshHash,omitempty"`
}

// Expired reports whether s is past its expiry at now.
func (s *Session) Expired(now time.Time) bool { return !now.Before(s.ExpiresAt) }

// Store keeps sessions. Implementations must be safe for concurrent use and
// must never return an expired session.
type Store interface {
	// Set creates or replaces s; it expires at s.ExpiresAt.
	Set(ctx context.Context, s *Session) error
	// Get returns the session with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*Session, error)
	// Update applies fn to the live session with id and stores the result,
	// atomically: concurrent Updates of one session (even from several
	// gateways) are serialized, none is lost. If fn returns an error
	// nothing is stored and Update returns that error. ErrNotFound if the
	// session does not exist or has expired. fn may run more than once
	// (optimistic retries), so it must only change its argument.
	Update(ctx context.Context, id string, fn func(*Session) error) (*Session, error)
	// Delete removes the session; deleting a missing one is not an error.
	Delete(ctx context.Context, id string) error
	// UserSessions returns the live sessions of one user, oldest first.
	UserSessions(ctx context.Context, userID string) ([]*Session, error)
	// AllActive returns every live session, oldest first.
	AllActive(ctx context.Context) ([]*Session, error)
	// DeleteUserSessions removes every session of a user and returns the
	// live ones among them.
	DeleteUserSessions(ctx context.Context, userID string) ([]*Session, error)
	// DeleteExpired removes expired sessions and returns how many.
	DeleteExpired(ctx context.Context) (int, error)
	// Count returns the number of live sessions.
	Count(ctx context.Context) (int, error)
	// UserCount returns the number of live sessions of one user.
	UserCount(ctx context.Context, userID string) (int, error)
}

// NewToken returns a fresh random token for a client to hold and the
// session id it maps to.
func NewToken() (token, id string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, IDFromToken(token), nil
}

// IDFromToken maps a client's token to the session id it was stored under.
func IDFromToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Clone returns a deep copy of s, so stores never share mutable state with
// callers.
func (s *Session) Clone() *Session {
	c := *s
	if s.Metadata != nil {
		c.Metadata = make(map[string]string, len(s.Metadata))
		for k, v := range s.Metadata {
			c.Metadata[k] = v
		}
	}
	return &c
}
