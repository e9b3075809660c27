package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/auth"
	"github.com/codehub-dev/codehub/internal/lockout"
	"github.com/codehub-dev/codehub/internal/revocation"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/google/uuid"
)

// NewUser is what creating an account takes.
type NewUser struct {
	Username, Email, Password string
	Role                      string // default user.RoleUser
	Metadata                  map[string]any
}

func (s *Service) requireUsers() error {
	if s.d.Users == nil {
		return errorf(CodeNotFound, "there are no user accounts in single-user mode", nil)
	}
	return nil
}

// CreateUser makes an account (admins, the CLI).
func (s *Service) CreateUser(ctx context.Context, in NewUser) (*user.User, error) {
	return s.createUser(ctx, in, uuid.NewString())
}

// createUser makes an account with a given id (registration claims an
// invite for the id before the account exists).
func (s *Service) createUser(ctx context.Context, in NewUser, id string) (*user.User, error) {
	if err := s.requireUsers(); err != nil {
		return nil, err
	}
	in.Username = user.NormalizeUsername(in.Username)
	in.Email = user.NormalizeEmail(in.Email)
	if in.Role == "" {
		in.Role = user.RoleUser
	}
	if err := user.ValidateUsername(in.Username); err != nil {
		return nil, errorf(CodeInvalidInput, err.Error(), nil)
	}
	if err := user.ValidateEmail(in.Email); err != nil {
		return nil, errorf(CodeInvalidInput, err.Error(), nil)
	}
	if !user.ValidRole(in.Role) {
		return nil, errorf(CodeInvalidInput, fmt.Sprintf("unknown role %q: use user, admin or auditor", in.Role), nil)
	}
	if err := s.CheckPassword(in.Password, in.Username); err != nil {
		return nil, err
	}
	hash, err := s.d.Hasher.Hash(ctx, in.Password)
	if err != nil {
		return nil, errorf(CodeUnavailable, "accounts cannot be created right now", err)
	}
	now := s.cfg.Now()
	u := &user.User{
		ID: id, Username: in.Username, Email: in.Email, PasswordHash: hash,
		Roles: []string{in.Role}, CreatedAt: now, UpdatedAt: now, Active: true, Metadata: in.Metadata,
	}
	if err := s.d.Users.Create(ctx, u); err != nil {
		if errors.Is(err, user.ErrConflict) {
			return nil, errorf(CodeConflict, "that username or email is already taken", nil)
		}
		return nil, errorf(CodeUnavailable, "accounts cannot be created right now", err)
	}
	s.record(ctx, audit.Event{EventType: audit.UserCreated, UserID: u.ID, Username: u.Username,
		Metadata: map[string]any{"role": in.Role, "email": u.Email}})
	return u, nil
}

// Register creates an account through the sign-up page or API, as the
// registration mode allows: "open" to anyone, "invite" with a valid
// invite token (which also sets the role), never in "admin" mode.
func (s *Service) Register(ctx context.Context, in NewUser, inviteToken string) (*user.User, error) {
	if err := s.requireUsers(); err != nil {
		return nil, err
	}
	in.Role = user.RoleUser
	switch s.cfg.Registration {
	case RegisterOpen:
		if inviteToken == "" {
			u, err := s.CreateUser(ctx, in)
			if err == nil {
				s.record(ctx, audit.Event{EventType: audit.UserRegistered, UserID: u.ID, Username: u.Username})
			}
			return u, err
		}
	case RegisterInvite:
		if inviteToken == "" {
			return nil, errorf(CodeRegistrationClosed, "registration needs an invite from an administrator", nil)
		}
	default:
		return nil, errorf(CodeRegistrationClosed, "accounts are created by administrators", nil)
	}
	if len(inviteToken) > 128 {
		return nil, errorf(CodeInvalidInvite, "this invite is not valid (it may have expired or been used)", nil)
	}
	// Check the input before spending the invite.
	if err := s.validateNew(in); err != nil {
		return nil, err
	}
	id := uuid.NewString()
	inv, err := s.d.Users.UseInvite(ctx, hashToken(inviteToken), id, s.cfg.Now())
	if errors.Is(err, user.ErrNotFound) {
		return nil, errorf(CodeInvalidInvite, "this invite is not valid (it may have expired or been used)", nil)
	}
	if err != nil {
		return nil, errorf(CodeUnavailable, "registration is unavailable right now", err)
	}
	if inv.Email != "" && user.NormalizeEmail(in.Email) != inv.Email {
		_ = s.d.Users.ReleaseInvite(ctx, inv.TokenHash)
		return nil, errorf(CodeInvalidInvite, "this invite is for another email address", nil)
	}
	in.Role = inv.Role
	u, err := s.createUser(ctx, in, id)
	if err != nil {
		if rerr := s.d.Users.ReleaseInvite(ctx, inv.TokenHash); rerr != nil {
			s.log.Error("release invite after failed registration", "error", rerr)
		}
		return nil, err
	}
	s.record(ctx, audit.Event{EventType: audit.UserRegistered, UserID: u.ID, Username: u.Username,
		Metadata: map[string]any{"invitedBy": inv.CreatedBy, "role": inv.Role}})
	return u, nil
}

func (s *Service) validateNew(in NewUser) error {
	name, email := user.NormalizeUsername(in.Username), user.NormalizeEmail(in.Email)
	if err := user.ValidateUsername(name); err != nil {
		return errorf(CodeInvalidInput, err.Error(), nil)
	}
	if err := user.ValidateEmail(email); err != nil {
		return errorf(CodeInvalidInput, err.Error(), nil)
	}
	return s.CheckPassword(in.Password, name)
}

func hashToken(t string) string {
	sum := sha256.Sum256([]byte(t))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// CreateInvite makes an invite for one person (optionally one email), valid
// for ttl, and returns the token to give them: it is not stored.
func (s *Service) CreateInvite(ctx context.Context, by, email, role string, ttl time.Duration) (string, *user.Invite, error) {
	if err := s.requireUsers(); err != nil {
		return "", nil, err
	}
	if role == "" {
		role = user.RoleUser
	}
	if !user.ValidRole(role) {
		return "", nil, errorf(CodeInvalidInput, fmt.Sprintf("unknown role %q", role), nil)
	}
	email = user.NormalizeEmail(email)
	if email != "" {
		if err := user.ValidateEmail(email); err != nil {
			return "", nil, errorf(CodeInvalidInput, err.Error(), nil)
		}
	}
	if ttl <= 0 || ttl > 30*24*time.Hour {
		return "", nil, errorf(CodeInvalidInput, "an invite lasts between a second and 30 days", nil)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	now := s.cfg.Now()
	inv := &user.Invite{TokenHash: hashToken(tok), Email: email, Role: role, CreatedBy: by, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := s.d.Users.CreateInvite(ctx, inv); err != nil {
		return "", nil, errorf(CodeUnavailable, "invites cannot be created right now", err)
	}
	s.record(ctx, audit.Event{EventType: audit.InviteCreated, Metadata: map[string]any{"email": email, "role": role,
		"expiresAt": inv.ExpiresAt.UTC().Format(time.RFC3339), "createdBy": by}})
	return tok, inv, nil
}

// User returns an account by id.
func (s *Service) User(ctx context.Context, id string) (*user.User, error) {
	u, err := s.userByID(ctx, id)
	if errors.Is(err, user.ErrNotFound) {
		return nil, errorf(CodeNotFound, "no such user", nil)
	}
	if err != nil {
		return nil, errorf(CodeUnavailable, "users are unavailable right now", err)
	}
	return u, nil
}

// UserByName returns an account by username (or email).
func (s *Service) UserByName(ctx context.Context, name string) (*user.User, error) {
	if err := s.requireUsers(); err != nil {
		return nil, err
	}
	u, err := (*user.User)(nil), user.ErrNotFound
	switch key, isEmail, ok := user.SignInName(name); {
	case !ok:
	case isEmail:
		u, err = s.d.Users.GetByEmail(ctx, key)
	default:
		u, err = s.d.Users.GetByUsername(ctx, key)
	}
	if errors.Is(err, user.ErrNotFound) {
		return nil, errorf(CodeNotFound, fmt.Sprintf("no user %q", name), nil)
	}
	if err != nil {
		return nil, errorf(CodeUnavailable, "users are unavailable right now", err)
	}
	return u, nil
}

// ListUsers pages through accounts.
func (s *Service) ListUsers(ctx context.Context, opts user.ListOptions) ([]*user.User, int, error) {
	if err := s.requireUsers(); err != nil {
		return nil, 0, err
	}
	us, n, err := s.d.Users.List(ctx, opts)
	if err != nil {
		return nil, 0, errorf(CodeUnavailable, "users are unavailable right now", err)
	}
	return us, n, nil
}

// CountUsers returns the number of accounts.
func (s *Service) CountUsers(ctx context.Context) (int, error) {
	if err := s.requireUsers(); err != nil {
		return 0, err
	}
	return s.d.Users.Count(ctx)
}

// storedUser reads an account from the store, not the cache: what a
// change starts from.
func (s *Service) storedUser(ctx context.Context, id string) (*user.User, error) {
	if err := s.requireUsers(); err != nil {
		return nil, err
	}
	u, err := s.d.Users.Get(ctx, id)
	if errors.Is(err, user.ErrNotFound) {
		return nil, errorf(CodeNotFound, "no such user", nil)
	}
	if err != nil {
		return nil, errorf(CodeUnavailable, "users are unavailable right now", err)
	}
	return u, nil
}

// modify loads a user, applies fn, stores it, records event typ, and tells
// every gateway.
func (s *Service) modify(ctx context.Context, id, typ string, fn func(*user.User) error) (*user.User, error) {
	u, err := s.storedUser(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := fn(u); err != nil {
		return nil, err
	}
	u.UpdatedAt = s.cfg.Now()
	if err := s.d.Users.Update(ctx, u); err != nil {
		if errors.Is(err, user.ErrConflict) {
			return nil, errorf(CodeConflict, "that username or email is already taken", nil)
		}
		return nil, errorf(CodeUnavailable, "users are unavailable right now", err)
	}
	s.publish(ctx, revocation.Event{UserID: id})
	s.record(ctx, audit.Event{EventType: typ, UserID: u.ID, Username: u.Username,
		Metadata: map[string]any{"roles": u.Roles, "active": u.Active}})
	return u, nil
}

// SetPassword replaces a password (an admin's action, or the CLI) and ends
// every session of the user but keep.
func (s *Service) SetPassword(ctx context.Context, id, pw, keep string) error {
	_, err := s.modify(ctx, id, audit.PasswordChanged, func(u *user.User) error {
		if err := s.CheckPassword(pw, u.Username); err != nil {
			return err
		}
		h, err := s.d.Hasher.Hash(ctx, pw)
		if err != nil {
			return errorf(CodeUnavailable, "passwords cannot be changed right now", err)
		}
		u.PasswordHash = h
		return nil
	})
	if err != nil {
		return err
	}
	_, err = s.RevokeUser(ctx, id, keep)
	return err
}

// ChangePassword is a user changing their own password: the current one
// must be right. Every other session of the user ends.
func (s *Service) ChangePassword(ctx context.Context, p *Principal, current, next string) error {
	addr, _ := netip.ParseAddr(audit.ActorFrom(ctx).IPAddress)
	if _, err := s.d.Authn.Authenticate(ctx, auth.Attempt{Username: p.User.Username, Password: current, Address: addr}); err != nil {
		var locked *auth.LockedError
		switch {
		case errors.Is(err, auth.ErrBadCredentials):
			return errorf(CodeInvalidCredentials, "the current password is wrong", nil)
		case errors.As(err, &locked):
			return errorf(CodeAccountLocked, "too many wrong passwords: this account is locked for now", nil)
		}
		return errorf(CodeUnavailable, "passwords cannot be changed right now", err)
	}
	return s.SetPassword(ctx, p.User.ID, next, p.Session.ID)
}

// SetRole replaces a user's roles with one role.
func (s *Service) SetRole(ctx context.Context, id, role string) (*user.User, error) {
	if !user.ValidRole(role) {
		return nil, errorf(CodeInvalidInput, fmt.Sprintf("unknown role %q: use user, admin or auditor", role), nil)
	}
	return s.modify(ctx, id, audit.RoleChanged, func(u *user.User) error {
		u.Roles = []string{role}
		return nil
	})
}

// SetActive enables or disables an account; disabling ends its sessions.
func (s *Service) SetActive(ctx context.Context, id string, active bool) (*user.User, error) {
	typ := audit.UserDisabled
	if active {
		typ = audit.UserEnabled
	}
	u, err := s.modify(ctx, id, typ, func(u *user.User) error {
		u.Active = active
		return nil
	})
	if err == nil && !active {
		_, err = s.RevokeUser(ctx, id, "")
	}
	return u, err
}

// Lock locks an account until a time (an admin's action) and ends its
// sessions; Unlock lifts any lock.
func (s *Service) Lock(ctx context.Context, id string, until time.Time) error {
	if err := s.requireUsers(); err != nil {
		return err
	}
	if err := s.d.Users.Lock(ctx, id, until); err != nil {
		if errors.Is(err, user.ErrNotFound) {
			return errorf(CodeNotFound, "no such user", nil)
		}
		return errorf(CodeUnavailable, "users are unavailable right now", err)
	}
	s.record(ctx, audit.Event{EventType: audit.AccountLocked, UserID: id,
		Metadata: map[string]any{"until": until.UTC().Format(time.RFC3339), "by": "administrator"}})
	_, err := s.RevokeUser(ctx, id, "")
	return err
}

// Unlock lifts an administrator's lock and every lock and failure count
// of the account's username and email, from every address.
func (s *Service) Unlock(ctx context.Context, id string) error {
	if err := s.requireUsers(); err != nil {
		return err
	}
	if err := s.d.Users.Unlock(ctx, id); err != nil {
		if errors.Is(err, user.ErrNotFound) {
			return errorf(CodeNotFound, "no such user", nil)
		}
		return errorf(CodeUnavailable, "users are unavailable right now", err)
	}
	md := map[string]any{}
	if s.d.Lockout != nil {
		u, err := s.storedUser(ctx, id)
		if err != nil {
			return err
		}
		n, err := s.d.Lockout.Clear(ctx, []string{u.Username, u.Email}, "")
		if err != nil {
			return errorf(CodeUnavailable, "sign-in locks are unavailable right now", err)
		}
		md["cleared"] = n
	}
	s.record(ctx, audit.Event{EventType: audit.AccountUnlocked, UserID: id, Metadata: md})
	s.publish(ctx, revocation.Event{UserID: id})
	return nil
}

// Locks returns the failure state of an account's username and email,
// per client (address or trusted browser), running locks included.
func (s *Service) Locks(ctx context.Context, id string) ([]lockout.Lock, error) {
	u, err := s.storedUser(ctx, id)
	if err != nil {
		return nil, err
	}
	if s.d.Lockout == nil {
		return []lockout.Lock{}, nil
	}
	locks, err := s.d.Lockout.Locks(ctx, u.Username, u.Email)
	if err != nil {
		return nil, errorf(CodeUnavailable, "sign-in locks are unavailable right now", err)
	}
	return locks, nil
}

// ClearLock forgets the failures and lock of an account's names from one
// client (an address, a trusted browser, or lockout.AllClients for the
// lock of the names for everyone).
func (s *Service) ClearLock(ctx context.Context, id, client string) error {
	if client == "" || len(client) > 128 {
		return errorf(CodeInvalidInput, "name the address of the lock to clear", nil)
	}
	u, err := s.storedUser(ctx, id)
	if err != nil {
		return err
	}
	if s.d.Lockout == nil {
		return errorf(CodeNotFound, "no such lock", nil)
	}
	n, err := s.d.Lockout.Clear(ctx, []string{u.Username, u.Email}, client)
	if err != nil {
		return errorf(CodeUnavailable, "sign-in locks are unavailable right now", err)
	}
	if n == 0 {
		return errorf(CodeNotFound, "no such lock", nil)
	}
	s.record(ctx, audit.Event{EventType: audit.AccountUnlocked, UserID: id, Username: u.Username,
		Metadata: map[string]any{"client": client, "cleared": n}})
	return nil
}

// DeleteUser removes an account and ends its sessions.
func (s *Service) DeleteUser(ctx context.Context, id string) error {
	if err := s.requireUsers(); err != nil {
		return err
	}
	if _, err := s.RevokeUser(ctx, id, ""); err != nil {
		return err
	}
	name := ""
	if u, err := s.d.Users.Get(ctx, id); err == nil {
		name = u.Username
	}
	if err := s.d.Users.Delete(ctx, id); err != nil {
		if errors.Is(err, user.ErrNotFound) {
			return errorf(CodeNotFound, "no such user", nil)
		}
		return errorf(CodeUnavailable, "users are unavailable right now", err)
	}
	s.record(ctx, audit.Event{EventType: audit.UserDeleted, UserID: id, Username: name})
	s.publish(ctx, revocation.Event{UserID: id})
	return nil
}
