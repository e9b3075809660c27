// Package user defines the people who may sign in to a multi-user codehub
// and the store that keeps them.
package user

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors returned by a Store.
var (
	// ErrNotFound: no such user (or invite).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the username or email is already taken.
	ErrConflict = errors.New("already exists")
)

// Roles.
const (
	RoleUser    = "user"
	RoleAdmin   = "admin"
	RoleAuditor = "auditor" // reads what an admin reads, changes nothing
)

// ValidRole reports whether r is a known role.
func ValidRole(r string) bool { return r == RoleUser || r == RoleAdmin || r == RoleAuditor }

// User is one account.
type User struct {
	ID           string    `json:"id"` // UUID
	Username     string    `json:"username"`
	Email        string    `json:"email"`
	PasswordHash string    `json:"-"`
	Roles        []string  `json:"roles"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
	LastLogin    time.Time `json:"lastLogin,omitzero"`
	Active       bool      `json:"isActive"`
	// Metadata is free-form data about the user (display name, team...).
	Metadata map[string]any `json:"metadata,omitempty"`

	// LockedUntil ends an administrator's lock of the account. Failed
	// sign-ins do not lock accounts: they lock a sign-in name from one
	// client (internal/lockout). FailedLogins and LockCount are columns
	// of the users table that sign-ins no longer write; RecordSuccess
	// and Unlock still zero them.
	FailedLogins int       `json:"failedLogins"`
	LockedUntil  time.Time `json:"lockedUntil,omitzero"`
	LockCount    int       `json:"lockCount"`
}

// HasRole reports whether u has role r.
func (u *User) HasRole(r string) bool { return slices.Contains(u.Roles, r) }

// IsAdmin reports whether u may change what admins change.
func (u *User) IsAdmin() bool { return u.HasRole(RoleAdmin) }

// Locked reports whether u is locked out at now.
func (u *User) Locked(now time.Time) bool { return now.Before(u.LockedUntil) }

// Clone returns a deep copy.
func (u *User) Clone() *User {
	c := *u
	c.Roles = slices.Clone(u.Roles)
	if u.Metadata != nil {
		c.Metadata = make(map[string]any, len(u.Metadata))
		for k, v := range u.Metadata {
			c.Metadata[k] = v
		}
	}
	return &c
}

// ValidText reports whether s can be a stored text value: valid UTF-8
// without NUL bytes (PostgreSQL refuses both). Lookups with other strings
// find nothing.
func ValidText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// ListOptions page and filter a listing.
type ListOptions struct {
	// Search matches a substring of the username or email (case-insensitive).
	Search string
	// Offset and Limit page the result, ordered by username.
	Offset, Limit int
}

// Invite lets one person register (registration "invite").
type Invite struct {
	// TokenHash is the SHA-256 (base64url) of the invite token; the token
	// itself is only shown once, to the admin who made it.
	TokenHash string    `json:"-"`
	Email     string    `json:"email,omitempty"` // when set, only this address may use it
	Role      string    `json:"role"`
	CreatedBy string    `json:"createdBy"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
	UsedAt    time.Time `json:"usedAt,omitzero"`
	UsedBy    string    `json:"usedBy,omitempty"`
}

// Store keeps users. Implementations are safe for concurrent use, by
// several gateways at once (the SQL stores), and compare usernames and
// emails exactly: callers normalize them first.
type Store interface {
	// Create adds u. It returns ErrConflict if the username or email is
	// taken. u.ID, CreatedAt and UpdatedAt must be set by the caller.
	Create(ctx context.Context, u *User) error
	// Get returns the user with id, or ErrNotFound.
	Get(ctx context.Context, id string) (*User, error)
	// GetByUsername returns the user with that username, or ErrNotFound.
	GetByUsername(ctx context.Context, username string) (*User, error)
	// GetByEmail returns the user with that email, or ErrNotFound.
	GetByEmail(ctx context.Context, email string) (*User, error)
	// List returns one page of users ordered by username, and the number
	// of users matching the search in all. Limit 0 means no limit.
	List(ctx context.Context, opts ListOptions) ([]*User, int, error)
	// Update stores u's account fields (username, email, password hash,
	// roles, active, metadata, UpdatedAt, which the caller sets), matched
	// by ID. The sign-in state (lock, LastLogin) and CreatedAt are left
	// as stored: only RecordSuccess, Lock and Unlock change them,
	// atomically, so an edit cannot undo a concurrent lock or sign-in.
	// ErrNotFound if missing, ErrConflict if the new username or email
	// is taken.
	Update(ctx context.Context, u *User) error
	// Delete removes the user; ErrNotFound if missing.
	Delete(ctx context.Context, id string) error
	// Count returns the number of users.
	Count(ctx context.Context) (int, error)

	// RecordSuccess clears the failure count and lock history and sets
	// LastLogin to now.
	RecordSuccess(ctx context.Context, id string, now time.Time) error
	// Lock locks the account until a time (an admin's action).
	Lock(ctx context.Context, id string, until time.Time) error
	// Unlock clears a lock and the failure count (an admin's action).
	Unlock(ctx context.Context, id string) error

	// CreateInvite stores an invite.
	CreateInvite(ctx context.Context, inv *Invite) error
	// UseInvite marks the unused, unexpired invite with tokenHash as used
	// by userID at now, atomically (an invite is used once), and returns
	// it; ErrNotFound otherwise.
	UseInvite(ctx context.Context, tokenHash, userID string, now time.Time) (*Invite, error)
	// ReleaseInvite makes a used invite usable again, when the account it
	// was claimed for could not be created.
	ReleaseInvite(ctx context.Context, tokenHash string) error
}
