// Package token issues and verifies the tokens API clients hold: short-lived
// JWT access tokens signed with Ed25519 (EdDSA) under a key id, and opaque
// refresh tokens that rotate on every use.
package token

import (
	"context"
	"crypto/ed25519"
	"errors"
)

// KeySource signs access tokens and publishes the keys that verify them.
// The embedded default keeps keys in a 0600 file (filekeys/); Vault's
// transit engine signs without the key ever leaving Vault.
type KeySource interface {
	// Sign signs data with the current key and returns that key's id.
	Sign(ctx context.Context, data []byte) (kid string, sig []byte, err error)
	// PublicKeys returns, by key id, every key that may have signed a token
	// that has not yet expired (the current key and recent ones).
	PublicKeys(ctx context.Context) (map[string]ed25519.PublicKey, error)
}

// ErrInvalid is returned for any token that must not be accepted; the
// wrapped error says why, for logs only.
var ErrInvalid = errors.New("invalid token")
