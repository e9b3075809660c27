package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/revocation"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/user"
)

// PolicyKey is the metadata key that names a user's isolation policy.
const PolicyKey = "policy"

// Bounds of free-form user metadata.
const (
	maxMetadataKeys  = 64
	maxMetadataBytes = 16 * 1024
)

var policyNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// UserChanges are the account fields an administrator changes; nil fields
// stay as they are.
type UserChanges struct {
	Username, Email *string
	// Metadata replaces the free-form metadata, except the policy, which
	// only Policy changes.
	Metadata map[string]any
	Role     *string
	// Policy names the user's isolation policy; "" removes it (the
	// default policy applies).
	Policy *string
	// Active enables or disables the account; disabling ends its sessions.
	Active *bool
}

// Empty reports whether c changes nothing.
func (c UserChanges) Empty() bool {
	return c.Username == nil && c.Email == nil && c.Metadata == nil && c.Role == nil && c.Policy == nil && c.Active == nil
}

// ValidatePolicyName explains what is wrong with a policy name.
func ValidatePolicyName(name string) error {
	if !policyNameRE.MatchString(name) {
		return errorf(CodeInvalidInput, "a policy name is 1 to 63 characters: lower-case letters, digits, '-' or '_', starting with a letter or digit", nil)
	}
	return nil
}

// ValidateMetadata explains what is wrong with free-form user metadata:
// at most 64 keys of text, 16 KiB of JSON, no "policy" key (the policy is
// set on its own).
func ValidateMetadata(md map[string]any) error {
	if len(md) > maxMetadataKeys {
		return errorf(CodeInvalidInput, fmt.Sprintf("metadata has at most %d keys", maxMetadataKeys), nil)
	}
	for k := range md {
		if k == "" || len(k) > 64 || !user.ValidText(k) {
			return errorf(CodeInvalidInput, "metadata keys are 1 to 64 bytes of text", nil)
		}
		if k == PolicyKey {
			return errorf(CodeInvalidInput, `set the policy with the "policy" field, not in metadata`, nil)
		}
	}
	b, err := json.Marshal(md)
	if err != nil || len(b) > maxMetadataBytes || !user.ValidText(string(b)) {
		return errorf(CodeInvalidInput, fmt.Sprintf("metadata is at most %d bytes of JSON text", maxMetadataBytes), nil)
	}
	return nil
}

// UpdateUser changes an account's username, email, metadata, role, policy
// and active flag at once. It records user.updated, plus
// user.role_changed and user.disabled or user.enabled when those change;
// disabling ends the user's sessions on every gateway. Returns
// CodeNotFound, CodeInvalidInput or CodeConflict (username or email
// taken).
func (s *Service) UpdateUser(ctx context.Context, id string, ch UserChanges) (*user.User, error) {
	if err := s.requireUsers(); err != nil {
		return nil, err
	}
	var name, email string
	if ch.Username != nil {
		name = user.NormalizeUsername(*ch.Username)
		if err := user.ValidateUsername(name); err != nil {
			return nil, errorf(CodeInvalidInput, err.Error(), nil)
		}
	}
	if ch.Email != nil {
		email = user.NormalizeEmail(*ch.Email)
		if err := user.ValidateEmail(email); err != nil {
			return nil, errorf(CodeInvalidInput, err.Error(), nil)
		}
	}
	if ch.Role != nil && !user.ValidRole(*ch.Role) {
		return nil, errorf(CodeInvalidInput, fmt.Sprintf("unknown role %q: use user, admin or auditor", *ch.Role), nil)
	}
	if ch.Policy != nil && *ch.Policy != "" {
		if err := ValidatePolicyName(*ch.Policy); err != nil {
			return nil, err
		}
	}
	if ch.Metadata != nil {
		if err := ValidateMetadata(ch.Metadata); err != nil {
			return nil, err
		}
	}
	var before *user.User
	u, err := s.modify(ctx, id, audit.UserUpdated, func(u *user.User) error {
		before = u.Clone()
		if ch.Username != nil {
			u.Username = name
		}
		if ch.Email != nil {
			u.Email = email
		}
		if ch.Metadata != nil || ch.Policy != nil {
			md := make(map[string]any, len(ch.Metadata)+1)
			if ch.Metadata != nil {
				for k, v := range ch.Metadata {
					md[k] = v
				}
			} else {
				for k, v := range u.Metadata {
					md[k] = v
				}
			}
			delete(md, PolicyKey)
			policy, _ := u.Metadata[PolicyKey].(string)
			if ch.Policy != nil {
				policy = *ch.Policy
			}
			if policy != "" {
				md[PolicyKey] = policy
			}
			u.Metadata = md
		}
		if ch.Role != nil {
			u.Roles = []string{*ch.Role}
		}
		if ch.Active != nil {
			u.Active = *ch.Active
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !slices.Equal(before.Roles, u.Roles) {
		s.record(ctx, audit.Event{EventType: audit.RoleChanged, UserID: u.ID, Username: u.Username,
			Metadata: map[string]any{"from": strings.Join(before.Roles, ","), "to": strings.Join(u.Roles, ",")}})
	}
	if before.Active != u.Active {
		typ := audit.UserDisabled
		if u.Active {
			typ = audit.UserEnabled
		}
		s.record(ctx, audit.Event{EventType: typ, UserID: u.ID, Username: u.Username})
		if !u.Active {
			if _, err := s.RevokeUser(ctx, u.ID, ""); err != nil {
				return u, err
			}
		}
	}
	return u, nil
}

// PolicyOf returns the isolation policy named in u's metadata ("" for the
// default).
func PolicyOf(u *user.User) string {
	p, _ := u.Metadata[PolicyKey].(string)
	return p
}

// AllSessions returns every live session, oldest first (administrators).
func (s *Service) AllSessions(ctx context.Context) ([]*session.Session, error) {
	ss, err := s.d.Sessions.AllActive(ctx)
	if err != nil {
		return nil, errorf(CodeUnavailable, "sessions are unavailable right now", err)
	}
	return ss, nil
}

// EndSession ends any user's session (an administrator's action) and
// returns it. Returns CodeNotFound for a session that does not exist or
// has ended.
func (s *Service) EndSession(ctx context.Context, sessionID string) (*session.Session, error) {
	if sessionID == "" || len(sessionID) > 128 || !user.ValidText(sessionID) {
		return nil, errorf(CodeNotFound, "no such session", nil)
	}
	sess, err := s.d.Sessions.Get(ctx, sessionID)
	if errors.Is(err, session.ErrNotFound) {
		return nil, errorf(CodeNotFound, "no such session", nil)
	}
	if err != nil {
		return nil, errorf(CodeUnavailable, "sessions are unavailable right now", err)
	}
	if err := s.d.Sessions.Delete(ctx, sess.ID); err != nil {
		return nil, errorf(CodeUnavailable, "sessions are unavailable right now", err)
	}
	e := audit.Event{EventType: audit.SessionRevoked, UserID: sess.UserID,
		Metadata: map[string]any{"sessionId": sess.ID, "reason": "revoked by an administrator"}}
	if u, err := s.userByID(ctx, sess.UserID); err == nil {
		e.Username = u.Username
	}
	s.record(ctx, e)
	s.publish(ctx, revocation.Event{SessionIDs: []string{sess.ID}})
	return sess, nil
}
