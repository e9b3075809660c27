// Package auth checks who a person is. An Authenticator returns an error for
// wrong credentials (ErrBadCredentials) separately from technical failures,
// and takes the same time whether or not the user exists.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/codehub-dev/codehub/internal/password"
)

// ErrBadCredentials is returned for a wrong username or password. Callers
// must not tell the two apart.
var ErrBadCredentials = errors.New("wrong username or password")

// Attempt is one try at signing in.
type Attempt struct {
	Username, Password string
	// Address is where the attempt comes from (the zero Addr when
	// unknown): failures are counted per name and address.
	Address netip.Addr
	// Device is the browser's device cookie, if any: a browser that
	// signed in to this name before is counted apart from its address.
	Device string
}

// Authenticator checks credentials.
type Authenticator interface {
	// Authenticate returns the id of the user the credentials belong to,
	// ErrBadCredentials, or another error for a technical failure.
	Authenticate(ctx context.Context, a Attempt) (userID string, err error)
	// AskUsername says whether the login form needs a username field.
	AskUsername() bool
}

// SingleUserID is the user id of the owner in single-user mode.
const SingleUserID = "owner"

// Single is the single-user Authenticator: one password, no username.
type Single struct {
	hash *password.Hash
}

var _ Authenticator = (*Single)(nil)

// NewSingle returns an Authenticator for one encoded argon2 hash.
func NewSingle(encodedHash string) (*Single, error) {
	h, err := password.Parse(encodedHash)
	if err != nil {
		return nil, fmt.Errorf("hashed password: %w", err)
	}
	return &Single{hash: h}, nil
}

// NewSinglePassword hashes a clear-text password once, at start-up, so that
// each login costs one argon2 verification and compares in constant time.
func NewSinglePassword(clear string, p password.Params) (*Single, error) {
	h, err := password.New(clear, p)
	if err != nil {
		return nil, err
	}
	return &Single{hash: h}, nil
}

// Authenticate implements Authenticator; the username is ignored.
func (s *Single) Authenticate(_ context.Context, a Attempt) (string, error) {
	if !s.hash.Matches(a.Password) {
		return "", ErrBadCredentials
	}
	return SingleUserID, nil
}

// AskUsername implements Authenticator.
func (s *Single) AskUsername() bool { return false }
