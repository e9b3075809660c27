package password

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"runtime"
	"sync/atomic"
)

// Hasher hashes and verifies passwords with bounded concurrency: each argon2
// computation holds Params.Memory, so a burst of sign-ins queues for a slot
// instead of exhausting the gateway's memory.
type Hasher struct {
	params  Params
	slots   chan struct{}
	dummy   *Hash
	waiting atomic.Int64
}

// NewHasher returns a Hasher making hashes with p and computing at most
// maxConcurrent at once (0: one per CPU).
func NewHasher(p Params, maxConcurrent int) (*Hasher, error) {
	if maxConcurrent <= 0 {
		maxConcurrent = runtime.GOMAXPROCS(0)
	}
	if p.SaltLen == 0 {
		p.SaltLen = DefaultParams.SaltLen
	}
	if p.KeyLen == 0 {
		p.KeyLen = DefaultParams.KeyLen
	}
	// The dummy hash is of a random password nobody knows, with the
	// current parameters, so that checking it costs what a real check does.
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	dummy, err := New(base64.RawURLEncoding.EncodeToString(b), p)
	if err != nil {
		return nil, err
	}
	return &Hasher{params: p, slots: make(chan struct{}, maxConcurrent), dummy: dummy}, nil
}

// Params returns the parameters of new hashes.
func (h *Hasher) Params() Params { return h.params }

// Waiting returns how many computations wait for a slot.
func (h *Hasher) Waiting() int { return int(h.waiting.Load()) }

func (h *Hasher) acquire(ctx context.Context) error {
	h.waiting.Add(1)
	defer h.waiting.Add(-1)
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *Hasher) release() { <-h.slots }

// Hash returns the encoded argon2id hash of pw.
func (h *Hasher) Hash(ctx context.Context, pw string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	hash, err := New(pw, h.params)
	if err != nil {
		return "", err
	}
	return hash.String(), nil
}

// Verify reports whether pw matches encoded, and whether the hash should be
// replaced because it was made with other parameters. The error is for a
// malformed hash or a cancelled wait, never for a wrong password.
func (h *Hasher) Verify(ctx context.Context, pw, encoded string) (ok, rehash bool, err error) {
	parsed, err := Parse(encoded)
	if err != nil {
		return false, false, err
	}
	if err := h.acquire(ctx); err != nil {
		return false, false, err
	}
	defer h.release()
	ok = parsed.Matches(pw)
	return ok, ok && parsed.NeedsRehash(h.params), nil
}

// VerifyDummy spends the time of a real verification and fails: the answer
// for a user that does not exist must not come back faster.
func (h *Hasher) VerifyDummy(ctx context.Context, pw string) error {
	if err := h.acquire(ctx); err != nil {
		return err
	}
	defer h.release()
	h.dummy.Matches(pw)
	return nil
}
