package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/codehub-dev/codehub/internal/password"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/hashicorp/go-hclog"
)

// ErrDisabled is returned for the right password of a disabled account.
var ErrDisabled = errors.New("account disabled")

// LockedError is returned while an account is locked after failed
// sign-ins.
type LockedError struct {
	Until time.Time
	// Locking is set for the failed attempt that locked the account, not
	// for the attempts made while it is locked.
	Locking bool
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("account locked until %s", e.Until.UTC().Format(time.RFC3339))
}

// Database authenticates users of the user store. Failed attempts count
// towards a lock, atomically across gateways; a user that does not exist
// costs the same time as a wrong password.
type Database struct {
	users  user.Store
	hasher *password.Hasher
	policy user.LockPolicy
	now    func() time.Time
	log    hclog.Logger
}

var _ Authenticator = (*Database)(nil)

// NewDatabase returns a Database authenticator; now is the clock (time.Now
// when nil).
func NewDatabase(users user.Store, hasher *password.Hasher, policy user.LockPolicy, now func() time.Time, log hclog.Logger) *Database {
	if now == nil {
		now = time.Now
	}
	return &Database{users: users, hasher: hasher, policy: policy, now: now, log: log}
}

// AskUsername implements Authenticator.
func (d *Database) AskUsername() bool { return true }

// Authenticate implements Authenticator. The username may also be the
// account's email address. Errors: ErrBadCredentials, *LockedError,
// ErrDisabled, or a technical failure.
func (d *Database) Authenticate(ctx context.Context, username, pw string) (string, error) {
	u, err := d.lookup(ctx, username)
	if errors.Is(err, user.ErrNotFound) {
		if err := d.hasher.VerifyDummy(ctx, pw); err != nil {
			return "", err
		}
		return "", ErrBadCredentials
	}
	if err != nil {
		return "", err
	}
	now := d.now()
	if u.Locked(now) {
		// Same cost as a real check, and the lock is not extended.
		if err := d.hasher.VerifyDummy(ctx, pw); err != nil {
			return "", err
		}
		return "", &LockedError{Until: u.LockedUntil}
	}
	ok, rehash, err := d.hasher.Verify(ctx, pw, u.PasswordHash)
	if err != nil {
		return "", fmt.Errorf("verify password of %s: %w", u.ID, err)
	}
	if !ok {
		return "", d.failed(ctx, u, now)
	}
	if !u.Active {
		return "", ErrDisabled
	}
	if err := d.users.RecordSuccess(ctx, u.ID, now); err != nil {
		return "", fmt.Errorf("record sign-in: %w", err)
	}
	if rehash {
		d.rehash(ctx, u.ID, pw)
	}
	return u.ID, nil
}

// lookup finds the account name signs in as. A name no account can have
// (see user.SignInName) is not found, without asking the store, so that
// it gets exactly the answer of any unknown name.
func (d *Database) lookup(ctx context.Context, name string) (*user.User, error) {
	key, isEmail, ok := user.SignInName(name)
	switch {
	case !ok:
		return nil, user.ErrNotFound
	case isEmail:
		return d.users.GetByEmail(ctx, key)
	}
	return d.users.GetByUsername(ctx, key)
}

func (d *Database) failed(ctx context.Context, u *user.User, now time.Time) error {
	if d.policy.MaxFailures <= 0 {
		return ErrBadCredentials
	}
	after, err := d.users.RecordFailure(ctx, u.ID, now, d.policy)
	if err != nil {
		return fmt.Errorf("record failed sign-in: %w", err)
	}
	if after.Locked(now) {
		d.log.Warn("account locked after failed sign-ins", "user", u.Username, "until", after.LockedUntil, "locks_in_a_row", after.LockCount)
		return &LockedError{Until: after.LockedUntil, Locking: true}
	}
	return ErrBadCredentials
}

// rehash stores a hash with the current parameters; a failure only means
// the old hash stays, so it is logged, not returned.
func (d *Database) rehash(ctx context.Context, id, pw string) {
	enc, err := d.hasher.Hash(ctx, pw)
	if err == nil {
		var u *user.User
		if u, err = d.users.Get(ctx, id); err == nil {
			u.PasswordHash = enc
			u.UpdatedAt = d.now()
			err = d.users.Update(ctx, u)
		}
	}
	if err != nil {
		d.log.Warn("could not upgrade a password hash", "user", id, "error", err)
		return
	}
	d.log.Info("password hash upgraded to the current parameters", "user", id)
}
