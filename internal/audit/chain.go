package audit

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
)

// KeySize is the size of a chain key: HMAC-SHA256's block-independent
// recommendation, the hash's own size.
const KeySize = 32

// ErrUnknownKey is returned by Keys.Lookup for a key id the keys do not
// hold.
var ErrUnknownKey = errors.New("unknown audit key")

// Key is one HMAC key of the chain. Its secret never leaves the package's
// hashing code (nor reaches a log line).
type Key struct {
	// ID names the key in the entries it made.
	ID     string
	secret []byte
}

// NewKey returns the key id with secret, which must be KeySize bytes or
// more, and id a valid key id.
func NewKey(id string, secret []byte) (Key, error) {
	if !ValidKeyID(id) {
		return Key{}, fmt.Errorf("audit key id %q: want 1 to 64 letters, digits, '-' or '_'", id)
	}
	if len(secret) < KeySize {
		return Key{}, fmt.Errorf("audit key %s: %d bytes, want at least %d", id, len(secret), KeySize)
	}
	return Key{ID: id, secret: append([]byte(nil), secret...)}, nil
}

// GenerateKey returns a new random key with a random id.
func GenerateKey() Key {
	secret := make([]byte, KeySize)
	id := make([]byte, 9)
	// crypto/rand.Read never fails: it crashes the program rather than
	// return predictable bytes.
	_, _ = rand.Read(secret)
	_, _ = rand.Read(id)
	return Key{ID: base64.RawURLEncoding.EncodeToString(id), secret: secret}
}

// Secret returns the key's bytes, for a KeySource to store.
func (k Key) Secret() []byte { return append([]byte(nil), k.secret...) }

// String names the key without its secret.
func (k Key) String() string { return "audit key " + k.ID }

// ValidKeyID reports whether id may name a key: it is written into every
// entry and into messages, so it is short and plain.
func ValidKeyID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}

// Keys are the HMAC keys of the chain: a key file (KeyFile) or Vault.
// Implementations cache what they read: the chain asks for a key for every
// batch of entries, and must keep working while the place the keys are
// kept is briefly unreachable.
type Keys interface {
	// Current returns the key new entries are made with.
	Current(ctx context.Context) (Key, error)
	// Lookup returns the key named kid, or an error wrapping
	// ErrUnknownKey.
	Lookup(ctx context.Context, kid string) (Key, error)
	// String names where the keys are kept, for messages.
	String() string
}

// ComputeHash returns the unkeyed hash of a legacy entry: SHA-256 of its
// JSON without Hash. Anyone can compute it.
func ComputeHash(e Event) (string, error) {
	b, err := hashInput(e)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// computeMAC returns the keyed hash of an entry: HMAC-SHA256 with key of
// its JSON without Hash.
func computeMAC(e Event, key Key) (string, error) {
	b, err := hashInput(e)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key.secret)
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil)), nil
}

// hashInput is what an entry's hash covers: the entry as JSON, its Hash
// left out. encoding/json writes struct fields in order and map keys
// sorted, and the database gives back the metadata it was given, so every
// copy of an entry yields the same bytes.
func hashInput(e Event) ([]byte, error) {
	e.Hash = ""
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("audit: encode entry: %w", err)
	}
	return b, nil
}

// Chain links e after the entry with sequence number seq-1 and hash prev,
// keyed with key: it sets e's chain fields.
func Chain(e *Event, seq int64, prev string, key Key) error {
	if len(key.secret) == 0 {
		return errors.New("audit: no key to chain the entry with")
	}
	e.Seq, e.PrevHash, e.Chain, e.KeyID = seq, prev, ChainKeyed, key.ID
	h, err := computeMAC(*e, key)
	if err != nil {
		return err
	}
	e.Hash = h
	return nil
}

// NewEventID returns a new event id: 16 random bytes, hex.
func NewEventID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails, as above
	return hex.EncodeToString(b)
}
