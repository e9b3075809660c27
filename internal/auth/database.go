package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/codehub-dev/codehub/internal/lockout"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/hashicorp/go-hclog"
)

// ErrDisabled is returned for the right password of a disabled account.
var ErrDisabled = errors.New("account disabled")

// Scope says whom a lock keeps out.
type Scope string

// Scopes of a LockedError.
const (
	// ScopeClient: this name from this address (or trusted browser),
	// after failures from there. Other clients can still sign in.
	ScopeClient Scope = "client"
	// ScopeName: this name from every client but trusted browsers, after
	// failures from many addresses (a distributed attack).
	ScopeName Scope = "name"
	// ScopeAccount: an administrator locked the account. Told only after
	// the right password, like ErrDisabled.
	ScopeAccount Scope = "account"
)

// LockedError is returned while sign-ins are locked. Names that exist and
// names that do not get the same ScopeClient and ScopeName locks.
type LockedError struct {
	Until time.Time
	Scope Scope
	// Locking is set for the failed attempt that started the lock, not
	// for the attempts made while it runs.
	Locking bool
	// Client is the address or browser the lock is for (ScopeClient).
	Client string
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("sign-in locked (%s) until %s", e.Scope, e.Until.UTC().Format(time.RFC3339))
}

// SecondFactorRequired is returned for the right password while the name
// is locked for every client (ScopeName): a second factor would prove it
// is the account's owner and not the attack. It unwraps to that lock, so
// a caller that has no second factor to ask for answers exactly as for a
// wrong password during the lock, and tells nothing.
type SecondFactorRequired struct {
	UserID string
	Lock   *LockedError
}

func (e *SecondFactorRequired) Error() string { return "second factor required: " + e.Lock.Error() }

// Unwrap returns the lock the second factor would get through.
func (e *SecondFactorRequired) Unwrap() error { return e.Lock }

// Hasher checks and makes password hashes (a *password.Hasher).
type Hasher interface {
	Verify(ctx context.Context, pw, encoded string) (ok, rehash bool, err error)
	// VerifyDummy costs what Verify costs, for a name with no account.
	VerifyDummy(ctx context.Context, pw string) error
	Hash(ctx context.Context, pw string) (string, error)
}

// DatabaseConfig configures a Database authenticator.
type DatabaseConfig struct {
	Users  user.Store
	Hasher Hasher
	// Lockout counts failures per name and client; nil counts none.
	Lockout *lockout.Guard
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	Log hclog.Logger
}

// Database authenticates users of the user store. Every attempt costs one
// argon2 verification, real or dummy, and meets the same locks whether or
// not an account has the name, so neither the answer nor its time tells
// who exists.
type Database struct {
	users  user.Store
	hasher Hasher
	guard  *lockout.Guard
	now    func() time.Time
	log    hclog.Logger
}

var _ Authenticator = (*Database)(nil)

// NewDatabase returns a Database authenticator.
func NewDatabase(cfg DatabaseConfig) *Database {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	return &Database{users: cfg.Users, hasher: cfg.Hasher, guard: cfg.Lockout, now: cfg.Now, log: cfg.Log}
}

// AskUsername implements Authenticator.
func (d *Database) AskUsername() bool { return true }

// Lockout returns the failure counter, nil when failures are not counted.
func (d *Database) Lockout() *lockout.Guard { return d.guard }

// Authenticate implements Authenticator. The username may also be the
// account's email address. Errors: ErrBadCredentials, *LockedError,
// *SecondFactorRequired, ErrDisabled, or a technical failure.
func (d *Database) Authenticate(ctx context.Context, a Attempt) (string, error) {
	var (
		client  string
		trusted bool
		st      lockout.Status
	)
	if d.guard != nil {
		client, trusted = d.guard.Client(a.Address, a.Device, a.Username)
		var err error
		if st, err = d.guard.Check(ctx, a.Username, client); err != nil {
			return "", err
		}
	}
	u, err := d.lookup(ctx, a.Username)
	if errors.Is(err, user.ErrNotFound) {
		u, err = nil, nil
	}
	if err != nil {
		return "", err
	}
	now := d.now()
	if st.Client.Locked(now) {
		// Same cost as a real check; the lock is not extended.
		if err := d.hasher.VerifyDummy(ctx, a.Password); err != nil {
			return "", err
		}
		return "", &LockedError{Until: st.Client.LockedUntil, Scope: ScopeClient, Client: client}
	}
	ok, rehash := false, false
	if u == nil {
		if err := d.hasher.VerifyDummy(ctx, a.Password); err != nil {
			return "", err
		}
	} else if ok, rehash, err = d.hasher.Verify(ctx, a.Password, u.PasswordHash); err != nil {
		return "", fmt.Errorf("verify password of %s: %w", u.ID, err)
	}
	if !ok {
		return "", d.failed(ctx, a.Username, client, trusted, now)
	}

	// The right password: what follows may tell that the account exists.
	if u.Locked(now) {
		return "", &LockedError{Until: u.LockedUntil, Scope: ScopeAccount}
	}
	if st.Name.Locked(now) && !trusted {
		return "", &SecondFactorRequired{UserID: u.ID, Lock: &LockedError{Until: st.Name.LockedUntil, Scope: ScopeName}}
	}
	if !u.Active {
		return "", ErrDisabled
	}
	if d.guard != nil {
		if err := d.guard.Succeeded(ctx, a.Username, client); err != nil {
			return "", err
		}
	}
	if err := d.users.RecordSuccess(ctx, u.ID, now); err != nil {
		return "", fmt.Errorf("record sign-in: %w", err)
	}
	if rehash {
		d.rehash(ctx, u.ID, a.Password)
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

// failed counts a wrong password (or a name with no account: the same)
// and says which lock, if any, now answers.
func (d *Database) failed(ctx context.Context, name, client string, trusted bool, now time.Time) error {
	if d.guard == nil {
		return ErrBadCredentials
	}
	out, err := d.guard.Failed(ctx, name, client)
	if err != nil {
		return err
	}
	if out.NameLocking {
		d.log.Warn("sign-in name locked for every address: failures from many addresses",
			"until", out.Name.LockedUntil, "locks_in_a_row", out.Name.LockCount)
	}
	switch {
	case out.Client.Locked(now):
		if out.ClientLocking {
			d.log.Warn("sign-in name locked for one client after failed sign-ins", "client", client,
				"until", out.Client.LockedUntil, "locks_in_a_row", out.Client.LockCount)
		}
		return &LockedError{Until: out.Client.LockedUntil, Scope: ScopeClient, Locking: out.ClientLocking, Client: client}
	case out.Name.Locked(now) && !trusted:
		return &LockedError{Until: out.Name.LockedUntil, Scope: ScopeName, Locking: out.NameLocking}
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
