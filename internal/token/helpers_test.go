package token_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/token"
)

const (
	testIssuer   = "https://codehub.test"
	testAudience = "codehub-api"
	testUser     = "user-42"
)

// testSession is a session id as the session package makes them.
var testSession = session.IDFromToken("test session token")

// epoch is where fake clocks start.
var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: epoch} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// memSource is a working in-memory KeySource whose failures tests switch
// on and off, and which counts PublicKeys calls.
type memSource struct {
	mu        sync.Mutex
	keys      map[string]ed25519.PrivateKey
	current   string
	signErr   error
	pubErr    error
	pubCalls  int
	signCalls int
}

func newMemSource(t testing.TB, kid string) *memSource {
	t.Helper()
	s := &memSource{keys: map[string]ed25519.PrivateKey{}}
	s.add(t, kid)
	return s
}

// add makes a new key with id kid the current one.
func (s *memSource) add(t testing.TB, kid string) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[kid] = priv
	s.current = kid
	return priv
}

func (s *memSource) remove(kid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, kid)
}

func (s *memSource) private(kid string) ed25519.PrivateKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[kid]
}

func (s *memSource) fail(signErr, pubErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signErr, s.pubErr = signErr, pubErr
}

func (s *memSource) publicCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pubCalls
}

func (s *memSource) Sign(_ context.Context, data []byte) (string, []byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signCalls++
	if s.signErr != nil {
		return "", nil, s.signErr
	}
	return s.current, ed25519.Sign(s.keys[s.current], data), nil
}

func (s *memSource) PublicKeys(context.Context) (map[string]ed25519.PublicKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pubCalls++
	if s.pubErr != nil {
		return nil, s.pubErr
	}
	out := map[string]ed25519.PublicKey{}
	for kid, k := range s.keys {
		out[kid] = k.Public().(ed25519.PublicKey)
	}
	return out, nil
}

var _ token.KeySource = (*memSource)(nil)

// mustService returns a Service on src with the test issuer and audience,
// the clock, and cfg's other fields.
func mustService(t testing.TB, cfg token.Config, clock *fakeClock, src token.KeySource) *token.Service {
	t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = testIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = testAudience
	}
	cfg.Now = clock.Now
	s, err := token.NewService(cfg, src)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	return s
}

func mustIssue(t testing.TB, s *token.Service) string {
	t.Helper()
	tok, _, err := s.IssueAccess(context.Background(), testUser, testSession)
	if err != nil {
		t.Fatalf("IssueAccess: %v", err)
	}
	return tok
}

func mustVerify(t testing.TB, s *token.Service, tok string) *token.Claims {
	t.Helper()
	c, err := s.VerifyAccess(context.Background(), tok)
	if err != nil {
		t.Fatalf("VerifyAccess: %v", err)
	}
	return c
}

// wantInvalid checks that verifying tok fails with ErrInvalid and whose
// message contains reason.
func wantInvalid(t testing.TB, s *token.Service, tok, reason string) error {
	t.Helper()
	c, err := s.VerifyAccess(context.Background(), tok)
	if !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("VerifyAccess = %+v, %v; want an error wrapping ErrInvalid", c, err)
	}
	if c != nil {
		t.Errorf("VerifyAccess returned claims %+v with its error", c)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("VerifyAccess error %q does not say %q", err, reason)
	}
	return err
}

// segments splits a compact JWT and decodes its header and payload.
func segments(t testing.TB, tok string) (header, payload map[string]any, sig []byte) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments, want 3", len(parts))
	}
	dec := func(s string, v any) {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("segment %q: %v", s, err)
		}
		if v == nil {
			sig = b
			return
		}
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.UseNumber()
		if err := d.Decode(v); err != nil {
			t.Fatalf("segment %s: %v", b, err)
		}
	}
	dec(parts[0], &header)
	dec(parts[1], &payload)
	dec(parts[2], nil)
	return header, payload, sig
}

// b64json encodes v as a JWT segment.
func b64json(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// validClaims returns the payload of a token the test service would issue
// at now.
func validClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer,
		"aud": testAudience,
		"sub": testUser,
		"sid": testSession,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(token.DefaultAccessTTL).Unix(),
		"jti": "forged-jti",
	}
}

// edToken builds a compact JWT from header and claims signed with priv
// (EdDSA over the signing input), bypassing the Service.
func edToken(t testing.TB, priv ed25519.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	input := b64json(t, header) + "." + b64json(t, claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(input)))
}
