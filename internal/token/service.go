package token

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults for the zero values of Config.
const (
	DefaultAccessTTL     = 15 * time.Minute
	DefaultLeeway        = 30 * time.Second
	DefaultKeyRefreshMin = 5 * time.Second
	DefaultKeyMaxAge     = 5 * time.Minute
)

// MaxTokenLen bounds the access tokens VerifyAccess will look at; ours are
// about 400 bytes, and anything much larger is refused before it is decoded.
const MaxTokenLen = 4096

// maxKeyIDLen bounds key ids; see ValidKeyID.
const maxKeyIDLen = 64

// algEdDSA is the only signing algorithm issued or accepted.
const algEdDSA = "EdDSA"

// Config configures a Service.
type Config struct {
	// Issuer is the iss claim of issued tokens and the only one accepted.
	// Required.
	Issuer string
	// Audience is the aud claim of issued tokens (a single string) and the
	// audience a token must name to be accepted. Required.
	Audience string
	// AccessTTL is the lifetime of an access token (default 15m).
	AccessTTL time.Duration
	// Leeway is the clock skew tolerated between the gateway that issued a
	// token and the one verifying it, for exp, nbf and iat (default 30s).
	Leeway time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// KeyRefreshMin is the least time between two fetches of the public
	// keys, however many tokens arrive with unknown key ids (default 5s),
	// so forged key ids cannot hammer the key source.
	KeyRefreshMin time.Duration
	// KeyMaxAge is how long fetched public keys are used before they are
	// fetched again (default 5m), so a key the source retired or revoked
	// stops verifying. If that fetch fails the keys already held stay in
	// use: tokens keep verifying while the key source is down.
	KeyMaxAge time.Duration
}

func (c *Config) setDefaults() error {
	if c.Issuer == "" {
		return errors.New("token: Config.Issuer is required")
	}
	if c.Audience == "" {
		return errors.New("token: Config.Audience is required")
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"AccessTTL", &c.AccessTTL, DefaultAccessTTL},
		{"Leeway", &c.Leeway, DefaultLeeway},
		{"KeyRefreshMin", &c.KeyRefreshMin, DefaultKeyRefreshMin},
		{"KeyMaxAge", &c.KeyMaxAge, DefaultKeyMaxAge},
	} {
		if *d.v < 0 {
			return fmt.Errorf("token: Config.%s must not be negative, got %s", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Claims are what a verified access token says.
type Claims struct {
	UserID    string    // sub
	SessionID string    // sid: the session the token was issued for
	ID        string    // jti: unique per token
	IssuedAt  time.Time // iat
	ExpiresAt time.Time // exp
	KeyID     string    // kid of the key that signed it
}

// Service issues and verifies access tokens. It signs through a KeySource,
// so the private key may live elsewhere (Vault), and caches the source's
// public keys. It is safe for concurrent use.
type Service struct {
	cfg    Config
	src    KeySource
	parser *jwt.Parser

	// refreshMu lets one fetch of the public keys run at a time.
	refreshMu sync.Mutex

	mu        sync.Mutex
	keys      map[string]ed25519.PublicKey // by kid; nil until a fetch succeeds
	fetchedAt time.Time                    // last successful fetch
	triedAt   time.Time                    // last attempt, successful or not
	fetchErr  error                        // error of the last attempt
	signKid   string                       // kid Sign returned last
	forcedKid string                       // last kid fetched for outside the rate limit
}

// NewService returns a Service issuing tokens signed by src.
func NewService(cfg Config, src KeySource) (*Service, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("token: NewService needs a KeySource")
	}
	s := &Service{cfg: cfg, src: src}
	s.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{algEdDSA}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithNotBeforeRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
		// One token, one spelling: no padding, no stray bits in the last
		// character of a segment.
		jwt.WithStrictDecoding(),
	)
	return s, nil
}

// issuedClaims is the payload of an access token as issued. It is not
// jwt.RegisteredClaims because that encodes aud as an array unless a
// package-level switch of the library is flipped.
type issuedClaims struct {
	Issuer    string           `json:"iss"`
	Audience  string           `json:"aud"`
	Subject   string           `json:"sub"`
	SessionID string           `json:"sid"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
	ID        string           `json:"jti"`
}

func (c *issuedClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }
func (c *issuedClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt, nil }
func (c *issuedClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore, nil }
func (c *issuedClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *issuedClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *issuedClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings{c.Audience}, nil
}

// IssueAccess returns a signed access token for userID in session
// sessionID, and when it expires. If the key source cannot sign, the error
// says "cannot sign tokens" and wraps the source's error.
func (s *Service) IssueAccess(ctx context.Context, userID, sessionID string) (token string, expiresAt time.Time, err error) {
	if userID == "" || sessionID == "" {
		return "", time.Time{}, errors.New("token: IssueAccess needs a user id and a session id")
	}
	jti, err := randomString(16)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token id: %w", err)
	}
	now := s.cfg.Now().Truncate(time.Second)
	expiresAt = now.Add(s.cfg.AccessTTL)
	claims := &issuedClaims{
		Issuer:    s.cfg.Issuer,
		Audience:  s.cfg.Audience,
		Subject:   userID,
		SessionID: sessionID,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(expiresAt),
		ID:        jti,
	}

	// The kid is part of the signed header, but the source only says which
	// key it used after signing. Sign under the kid it used last time; if
	// the source has rotated meanwhile, sign again under the new kid.
	s.mu.Lock()
	kid := s.signKid
	s.mu.Unlock()
	for range 3 {
		t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
		t.Header["kid"] = kid
		signing, err := t.SigningString()
		if err != nil {
			return "", time.Time{}, fmt.Errorf("encode token: %w", err)
		}
		usedKid, sig, err := s.src.Sign(ctx, []byte(signing))
		if err != nil {
			return "", time.Time{}, fmt.Errorf("cannot sign tokens: %w", err)
		}
		if !ValidKeyID(usedKid) {
			return "", time.Time{}, fmt.Errorf("cannot sign tokens: key source returned a malformed key id %q", truncate(usedKid))
		}
		if len(sig) != ed25519.SignatureSize {
			return "", time.Time{}, fmt.Errorf("cannot sign tokens: key source returned a %d-byte signature, want an Ed25519 one", len(sig))
		}
		if usedKid == kid {
			s.learnSignKid(ctx, usedKid)
			return signing + "." + t.EncodeSegment(sig), expiresAt, nil
		}
		kid = usedKid
	}
	return "", time.Time{}, errors.New("cannot sign tokens: the key source changed keys on every attempt")
}

// learnSignKid remembers the kid the source signs with and, the first time
// it is not among the cached public keys (the source rotated), fetches
// them at once, so the token verifies here without waiting for the
// KeyRefreshMin rate limit. A failed fetch is not the issuer's problem: the
// token verifies once the keys can be fetched.
func (s *Service) learnSignKid(ctx context.Context, kid string) {
	s.mu.Lock()
	s.signKid = kid
	_, known := s.keys[kid]
	force := !known && s.forcedKid != kid
	if force {
		s.forcedKid = kid
	}
	s.mu.Unlock()
	if force {
		_ = s.refresh(ctx, true)
	}
}

// accessClaims is the payload of an access token as parsed.
type accessClaims struct {
	jwt.RegisteredClaims
	SessionID string `json:"sid"`
}

// Validate is called by the parser after the registered claims checks; it
// requires the claims every token we issue has.
func (c *accessClaims) Validate() error {
	switch {
	case c.Subject == "":
		return errors.New("missing sub")
	case c.SessionID == "":
		return errors.New("missing sid")
	case c.ID == "":
		return errors.New("missing jti")
	case c.IssuedAt == nil:
		return errors.New("missing iat")
	}
	return nil
}

// VerifyAccess checks an access token: signature by a known key, EdDSA
// only, issuer, audience, and times (with Config.Leeway). Any failure
// returns an error wrapping ErrInvalid whose text says why, for logs.
func (s *Service) VerifyAccess(ctx context.Context, token string) (*Claims, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(token) > MaxTokenLen {
		return nil, fmt.Errorf("%w: %d bytes long, the limit is %d", ErrInvalid, len(token), MaxTokenLen)
	}
	// Only the characters of three base64url segments: no padding,
	// whitespace or newlines (which the base64 decoder would skip).
	for i := 0; i < len(token); i++ {
		if !isBase64URL(token[i]) && token[i] != '.' {
			return nil, fmt.Errorf("%w: characters outside base64url", ErrInvalid)
		}
	}
	var c accessClaims
	var kid string
	_, err := s.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		// WithValidMethods already refused other algorithms; this pins the
		// implementation too, not just the name.
		if t.Method != jwt.SigningMethodEdDSA {
			return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
		}
		if typ, ok := t.Header["typ"].(string); !ok || typ != "JWT" {
			return nil, fmt.Errorf("header typ is %v, want JWT", t.Header["typ"])
		}
		if _, ok := t.Header["crit"]; ok {
			return nil, errors.New("header has crit extensions")
		}
		raw, present := t.Header["kid"]
		if !present {
			return nil, errors.New("header has no kid")
		}
		k, ok := raw.(string)
		if !ok || !ValidKeyID(k) {
			return nil, errors.New("header kid is malformed")
		}
		kid = k
		return s.publicKey(ctx, k)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return &Claims{
		UserID:    c.Subject,
		SessionID: c.SessionID,
		ID:        c.ID,
		IssuedAt:  c.IssuedAt.Time,
		ExpiresAt: c.ExpiresAt.Time,
		KeyID:     kid,
	}, nil
}

// publicKey returns the cached key with id kid, fetching the keys again if
// kid is unknown or the cache is older than KeyMaxAge, at most once per
// KeyRefreshMin.
func (s *Service) publicKey(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	now := s.cfg.Now()
	s.mu.Lock()
	key, ok := s.keys[kid]
	fresh := s.keys != nil && now.Sub(s.fetchedAt) < s.cfg.KeyMaxAge
	s.mu.Unlock()
	if ok && fresh {
		return key, nil
	}
	fetchErr := s.refresh(ctx, false)
	s.mu.Lock()
	key, ok = s.keys[kid]
	s.mu.Unlock()
	switch {
	case ok:
		// Possibly stale if the fetch failed: better than refusing every
		// token while the key source is down.
		return key, nil
	case fetchErr != nil:
		return nil, fmt.Errorf("unknown key id %q; fetching public keys: %w", kid, fetchErr)
	default:
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
}

// refresh fetches the public keys from the source, unless the last attempt
// was less than KeyRefreshMin ago (and force is false), in which case it
// returns that attempt's error. On failure the cached keys are kept.
func (s *Service) refresh(ctx context.Context, force bool) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()

	now := s.cfg.Now()
	s.mu.Lock()
	if !force && !s.triedAt.IsZero() && now.Sub(s.triedAt) < s.cfg.KeyRefreshMin {
		err := s.fetchErr
		s.mu.Unlock()
		return err
	}
	s.triedAt = now
	s.mu.Unlock()

	keys, err := s.fetchKeys(ctx)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetchErr = err
	if err != nil {
		return err
	}
	s.keys = keys
	s.fetchedAt = now
	return nil
}

// fetchKeys asks the source for its public keys and checks them.
func (s *Service) fetchKeys(ctx context.Context) (map[string]ed25519.PublicKey, error) {
	got, err := s.src.PublicKeys(ctx)
	if err != nil {
		return nil, err
	}
	keys := make(map[string]ed25519.PublicKey, len(got))
	for kid, k := range got {
		if !ValidKeyID(kid) {
			return nil, fmt.Errorf("key source returned a malformed key id %q", truncate(kid))
		}
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key source returned a %d-byte key for %q, want an Ed25519 one", len(k), kid)
		}
		keys[kid] = append(ed25519.PublicKey(nil), k...)
	}
	return keys, nil
}

// ValidKeyID reports whether kid is acceptable as a key id: 1 to 64
// characters of the base64url alphabet (A-Z a-z 0-9 - _). A Service
// refuses any other kid, in a token header or from a KeySource, before
// looking it up, so a kid can never carry a path, a quote or a megabyte.
func ValidKeyID(kid string) bool {
	if kid == "" || len(kid) > maxKeyIDLen {
		return false
	}
	for i := 0; i < len(kid); i++ {
		if !isBase64URL(kid[i]) {
			return false
		}
	}
	return true
}

func isBase64URL(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// randomString returns n random bytes, base64url without padding.
func randomString(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// truncate shortens untrusted text for error messages.
func truncate(s string) string {
	const limit = 80
	if len(s) > limit {
		return s[:limit] + "..."
	}
	return s
}
