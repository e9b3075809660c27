// Package password hashes and verifies passwords with argon2 in the PHC
// string format ($argon2id$v=19$m=...,t=...,p=...$salt$hash) that
// code-server's hashed-password and the argon2 reference tools use.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are the argon2id cost parameters of new hashes.
type Params struct {
	// Memory is in KiB.
	Memory uint32
	// Time is the number of passes over the memory.
	Time uint32
	// Threads is the degree of parallelism.
	Threads uint8
	// SaltLen and KeyLen are in bytes.
	SaltLen uint32
	KeyLen  uint32
}

// DefaultParams follow the OWASP recommendation for argon2id (19 MiB, two
// passes, one lane): strong, yet a burst of logins does not exhaust a small
// gateway's memory.
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds refused when parsing a hash, so that a crafted hash in a config or
// database cannot make one verification take minutes or gigabytes.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 64
	maxKeyLen    = 1024
)

// ErrMalformed is returned for a string that is not an argon2i/argon2id
// encoded hash.
var ErrMalformed = errors.New("not an argon2i or argon2id encoded hash")

// Hash is a parsed encoded hash.
type Hash struct {
	Variant string // "argon2id" or "argon2i"
	Version int
	Params  Params
	Salt    []byte
	Key     []byte
}

var b64 = base64.RawStdEncoding

// Parse reads an encoded hash: $argon2id$v=19$m=65536,t=3,p=4$salt$key.
// Salt and key are unpadded standard base64, as the reference
// implementation writes them; padded base64 is accepted too.
func Parse(encoded string) (*Hash, error) {
	parts := strings.Split(strings.TrimSpace(encoded), "$")
	// "", variant, [v=19], params, salt, key
	if len(parts) == 5 { // version omitted: argon2 1.0 hashes
		parts = []string{parts[0], parts[1], "v=16", parts[2], parts[3], parts[4]}
	}
	if len(parts) != 6 || parts[0] != "" {
		return nil, ErrMalformed
	}
	h := &Hash{Variant: parts[1]}
	switch h.Variant {
	case "argon2id", "argon2i":
	case "argon2d":
		return nil, fmt.Errorf("%w: argon2d hashes are not supported, use argon2id", ErrMalformed)
	default:
		return nil, ErrMalformed
	}
	v, ok := strings.CutPrefix(parts[2], "v=")
	if !ok {
		return nil, fmt.Errorf("%w: missing version", ErrMalformed)
	}
	ver, err := strconv.Atoi(v)
	if err != nil || ver != argon2.Version {
		return nil, fmt.Errorf("%w: unsupported version %q (want %d)", ErrMalformed, v, argon2.Version)
	}
	h.Version = ver
	for _, kv := range strings.Split(parts[3], ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%w: bad parameter %q", ErrMalformed, kv)
		}
		n, err := strconv.ParseUint(val, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: bad parameter %q", ErrMalformed, kv)
		}
		switch k {
		case "m":
			h.Params.Memory = uint32(n)
		case "t":
			h.Params.Time = uint32(n)
		case "p":
			if n > 255 {
				return nil, fmt.Errorf("%w: parallelism %d too large", ErrMalformed, n)
			}
			h.Params.Threads = uint8(n)
		default: // keyid= and data= are allowed by the format; ignore them
		}
	}
	switch {
	case h.Params.Memory == 0 || h.Params.Time == 0 || h.Params.Threads == 0:
		return nil, fmt.Errorf("%w: m, t and p must all be set", ErrMalformed)
	case h.Params.Memory < 8*uint32(h.Params.Threads):
		return nil, fmt.Errorf("%w: m must be at least 8*p", ErrMalformed)
	case h.Params.Memory > maxMemoryKiB || h.Params.Time > maxTime:
		return nil, fmt.Errorf("%w: cost parameters beyond m=%d t=%d are refused", ErrMalformed, maxMemoryKiB, maxTime)
	}
	if h.Salt, err = decodeB64(parts[4]); err != nil || len(h.Salt) < 8 {
		return nil, fmt.Errorf("%w: bad salt", ErrMalformed)
	}
	if h.Key, err = decodeB64(parts[5]); err != nil || len(h.Key) < 4 || len(h.Key) > maxKeyLen {
		return nil, fmt.Errorf("%w: bad key", ErrMalformed)
	}
	h.Params.SaltLen, h.Params.KeyLen = uint32(len(h.Salt)), uint32(len(h.Key))
	return h, nil
}

func decodeB64(s string) ([]byte, error) {
	return b64.DecodeString(strings.TrimRight(s, "="))
}

// String encodes h in the PHC format.
func (h *Hash) String() string {
	return fmt.Sprintf("$%s$v=%d$m=%d,t=%d,p=%d$%s$%s", h.Variant, h.Version,
		h.Params.Memory, h.Params.Time, h.Params.Threads, b64.EncodeToString(h.Salt), b64.EncodeToString(h.Key))
}

// Matches reports in constant time whether password produces h.
func (h *Hash) Matches(password string) bool {
	got := derive(h.Variant, []byte(password), h.Salt, h.Params.Time, h.Params.Memory, h.Params.Threads, uint32(len(h.Key)))
	return subtle.ConstantTimeCompare(got, h.Key) == 1
}

func derive(variant string, pw, salt []byte, t, m uint32, p uint8, keyLen uint32) []byte {
	if variant == "argon2i" {
		return argon2.Key(pw, salt, t, m, p, keyLen)
	}
	return argon2.IDKey(pw, salt, t, m, p, keyLen)
}

// New hashes password with argon2id and a fresh random salt.
func New(password string, p Params) (*Hash, error) {
	if p.SaltLen == 0 {
		p.SaltLen = DefaultParams.SaltLen
	}
	if p.KeyLen == 0 {
		p.KeyLen = DefaultParams.KeyLen
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("read salt: %w", err)
	}
	return &Hash{
		Variant: "argon2id",
		Version: argon2.Version,
		Params:  p,
		Salt:    salt,
		Key:     argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen),
	}, nil
}

// Verify reports whether password matches the encoded hash. The error is
// only for a malformed hash, never for a wrong password.
func Verify(password, encoded string) (bool, error) {
	h, err := Parse(encoded)
	if err != nil {
		return false, err
	}
	return h.Matches(password), nil
}

// NeedsRehash reports whether h was made with other parameters than p, or
// with argon2i, so that a successful login should store a new hash.
func (h *Hash) NeedsRehash(p Params) bool {
	return h.Variant != "argon2id" || h.Params.Memory != p.Memory || h.Params.Time != p.Time ||
		h.Params.Threads != p.Threads || uint32(len(h.Key)) != p.KeyLen || uint32(len(h.Salt)) != p.SaltLen
}
