package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Refresh tokens are opaque to clients and look like
//
//	chr1.<session id>.<generation>.<secret>
//
// The session id says where the server keeps the token's state; the
// session stores only the generation and the SHA-256 of the secret, so a
// copy of the store hands out no usable token. Every use rotates the token
// (generation + 1, new secret); a token of an older generation is a replay,
// which the caller detects.
const (
	refreshPrefix    = "chr1"
	refreshSecretLen = 32
	// MaxRefreshLen bounds the refresh tokens ParseRefresh looks at; ours
	// are about 100 bytes.
	MaxRefreshLen = 200
)

// b64 is the encoding of session ids, secrets and hashes. Strict, so that
// each value has one spelling (no stray bits in the last character); it is
// never modified.
var b64 = base64.RawURLEncoding.Strict()

// NewRefresh returns a new refresh token for generation gen of session
// sessionID, and the hash of its secret for the session to keep.
func NewRefresh(sessionID string, gen int) (token, secretHash string, err error) {
	if err := checkSessionID(sessionID); err != nil {
		return "", "", fmt.Errorf("new refresh token: %w", err)
	}
	if gen < 0 {
		return "", "", fmt.Errorf("new refresh token: negative generation %d", gen)
	}
	secret := make([]byte, refreshSecretLen)
	if _, err := rand.Read(secret); err != nil {
		return "", "", fmt.Errorf("new refresh token: %w", err)
	}
	token = refreshPrefix + "." + sessionID + "." + strconv.Itoa(gen) + "." + b64.EncodeToString(secret)
	return token, hashSecret(secret), nil
}

// ParseRefresh splits a refresh token made by NewRefresh into its session
// id, its generation and the hash of its secret, to compare (HashEqual)
// with the one the session keeps. It is strict: anything NewRefresh would
// not have produced returns an error wrapping ErrInvalid.
func ParseRefresh(token string) (sessionID string, gen int, secretHash string, err error) {
	fail := func(format string, args ...any) (string, int, string, error) {
		return "", 0, "", fmt.Errorf("%w: refresh token: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	if len(token) > MaxRefreshLen {
		return fail("%d bytes long, the limit is %d", len(token), MaxRefreshLen)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 4 {
		return fail("%d parts, want 4", len(parts))
	}
	if parts[0] != refreshPrefix {
		return fail("unknown prefix")
	}
	if err := checkSessionID(parts[1]); err != nil {
		return fail("%v", err)
	}
	gen, err = parseGen(parts[2])
	if err != nil {
		return fail("%v", err)
	}
	secret, err := decodeExact(parts[3], refreshSecretLen)
	if err != nil {
		return fail("secret: %v", err)
	}
	return parts[1], gen, hashSecret(secret), nil
}

// HashEqual reports, in constant time, whether two secret hashes are
// equal. An empty hash equals nothing, so a session without a refresh
// token never matches.
func HashEqual(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func hashSecret(secret []byte) string {
	sum := sha256.Sum256(secret)
	return b64.EncodeToString(sum[:])
}

// checkSessionID accepts what session.IDFromToken makes: a SHA-256,
// base64url without padding (43 characters).
func checkSessionID(id string) error {
	if _, err := decodeExact(id, sha256.Size); err != nil {
		return fmt.Errorf("session id: %w", err)
	}
	return nil
}

// decodeExact decodes s, which must be exactly n bytes in canonical
// unpadded base64url and nothing else (the decoder itself skips newlines).
func decodeExact(s string, n int) ([]byte, error) {
	if want := b64.EncodedLen(n); len(s) != want {
		return nil, fmt.Errorf("%d characters, want %d", len(s), want)
	}
	for i := 0; i < len(s); i++ {
		if !isBase64URL(s[i]) {
			return nil, errors.New("not base64url")
		}
	}
	b, err := b64.DecodeString(s)
	if err != nil || len(b) != n {
		return nil, errors.New("not canonical base64url")
	}
	return b, nil
}

// parseGen accepts a non-negative decimal integer in its one canonical
// spelling: digits only, no sign, no leading zero.
func parseGen(s string) (int, error) {
	if s == "" {
		return 0, errors.New("empty generation")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("generation is not a decimal number")
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, errors.New("generation has a leading zero")
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, errors.New("generation out of range")
	}
	return n, nil
}
