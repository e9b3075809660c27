package token_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/codehub-dev/codehub/internal/token"
)

func TestIssueVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	clock := newClock()
	clock.Advance(700 * time.Millisecond) // token times are whole seconds
	src := newMemSource(t, "key-1")
	svc := mustService(t, token.Config{}, clock, src)

	tok, exp, err := svc.IssueAccess(context.Background(), testUser, testSession)
	if err != nil {
		t.Fatalf("IssueAccess: %v", err)
	}
	if want := epoch.Add(token.DefaultAccessTTL); !exp.Equal(want) {
		t.Errorf("expiresAt = %v, want %v", exp, want)
	}

	header, payload, sig := segments(t, tok)
	wantHeader := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": "key-1"}
	if !maps.Equal(header, wantHeader) {
		t.Errorf("header = %v, want %v", header, wantHeader)
	}
	if len(sig) != ed25519.SignatureSize {
		t.Errorf("signature is %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	jti, _ := payload["jti"].(string)
	if len(jti) < 20 {
		t.Errorf("jti = %q, want a random id", payload["jti"])
	}
	wantPayload := map[string]any{
		"iss": testIssuer,
		"aud": testAudience, // a single string, not an array
		"sub": testUser,
		"sid": testSession,
		"iat": json.Number(fmt.Sprint(epoch.Unix())),
		"nbf": json.Number(fmt.Sprint(epoch.Unix())),
		"exp": json.Number(fmt.Sprint(epoch.Add(token.DefaultAccessTTL).Unix())),
		"jti": jti,
	}
	if !maps.Equal(payload, wantPayload) {
		t.Errorf("payload = %v, want %v", payload, wantPayload)
	}

	got := mustVerify(t, svc, tok)
	want := token.Claims{
		UserID:    testUser,
		SessionID: testSession,
		ID:        jti,
		IssuedAt:  epoch,
		ExpiresAt: epoch.Add(token.DefaultAccessTTL),
		KeyID:     "key-1",
	}
	if got.UserID != want.UserID || got.SessionID != want.SessionID || got.ID != want.ID ||
		!got.IssuedAt.Equal(want.IssuedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) || got.KeyID != want.KeyID {
		t.Errorf("claims = %+v, want %+v", *got, want)
	}

	if other := mustVerify(t, svc, mustIssue(t, svc)); other.ID == got.ID {
		t.Errorf("two tokens share the jti %q", got.ID)
	}
}

func TestIssueSignsOnceWhenKeyUnchanged(t *testing.T) {
	t.Parallel()
	src := newMemSource(t, "key-1")
	svc := mustService(t, token.Config{}, newClock(), src)
	mustIssue(t, svc) // learns the kid
	src.mu.Lock()
	before := src.signCalls
	src.mu.Unlock()
	mustIssue(t, svc)
	src.mu.Lock()
	defer src.mu.Unlock()
	if n := src.signCalls - before; n != 1 {
		t.Errorf("IssueAccess called Sign %d times, want 1", n)
	}
}

func TestVerifyRejectsForgeries(t *testing.T) {
	t.Parallel()
	clock := newClock()
	src := newMemSource(t, "key-1")
	svc := mustService(t, token.Config{}, clock, src)
	valid := mustIssue(t, svc)
	mustVerify(t, svc, valid)
	now := clock.Now()
	priv := src.private("key-1")
	pub := priv.Public().(ed25519.PublicKey)

	edHeader := func() map[string]any { return map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": "key-1"} }
	// signed returns a token signed by our own key with header and claims
	// changed by the edit functions: only the content is wrong.
	signed := func(editHeader func(map[string]any), editClaims func(map[string]any)) string {
		h, c := edHeader(), validClaims(now)
		if editHeader != nil {
			editHeader(h)
		}
		if editClaims != nil {
			editClaims(c)
		}
		return edToken(t, priv, h, c)
	}
	withClaim := func(k string, v any) string {
		return signed(nil, func(c map[string]any) { c[k] = v })
	}
	withoutClaim := func(k string) string {
		return signed(nil, func(c map[string]any) { delete(c, k) })
	}
	withKid := func(kid any) string {
		return signed(func(h map[string]any) { h["kid"] = kid }, nil)
	}
	// library signs with another algorithm through golang-jwt.
	library := func(m jwt.SigningMethod, key any) string {
		tk := jwt.NewWithClaims(m, jwt.MapClaims(validClaims(now)))
		tk.Header["kid"] = "key-1"
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatalf("sign %s: %v", m.Alg(), err)
		}
		return s
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, otherPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(valid, ".")
	input := parts[0] + "." + parts[1]
	noneHeader := map[string]any{"alg": "none", "typ": "JWT", "kid": "key-1"}

	tests := []struct {
		name   string
		token  string
		reason string // part of the error text
	}{
		{"alg none, no signature", b64json(t, noneHeader) + "." + b64json(t, validClaims(now)) + ".", "signing method none is invalid"},
		{"alg none, with signature", edToken(t, priv, noneHeader, validClaims(now)), "signing method none is invalid"},
		{"alg NONE", signed(func(h map[string]any) { h["alg"] = "NONE" }, nil), "unavailable"},
		{"alg missing", signed(func(h map[string]any) { delete(h, "alg") }, nil), "unspecified"},
		{"alg as array", signed(func(h map[string]any) { h["alg"] = []string{"EdDSA"} }, nil), "unspecified"},
		{"HS256 keyed with the Ed25519 public key", library(jwt.SigningMethodHS256, []byte(pub)), "signing method HS256 is invalid"},
		{"RS256", library(jwt.SigningMethodRS256, rsaKey), "signing method RS256 is invalid"},
		{"PS256", library(jwt.SigningMethodPS256, rsaKey), "signing method PS256 is invalid"},
		{"ES256", library(jwt.SigningMethodES256, ecKey), "signing method ES256 is invalid"},
		{"other key, same kid", edToken(t, otherPriv, edHeader(), validClaims(now)), "signature is invalid"},
		{"kid missing", signed(func(h map[string]any) { delete(h, "kid") }, nil), "no kid"},
		{"kid unknown", withKid("key-2"), `unknown key id "key-2"`},
		{"kid empty", withKid(""), "kid is malformed"},
		{"kid path traversal", withKid("../../../../etc/passwd"), "kid is malformed"},
		{"kid relative path", withKid("key-1/../key-1"), "kid is malformed"},
		{"kid with NUL", withKid("key-1\x00"), "kid is malformed"},
		{"kid with space", withKid("key-1 "), "kid is malformed"},
		{"kid with quote", withKid("key-1' OR '1'='1"), "kid is malformed"},
		{"kid URL", withKid("https://evil.example/jwks.json"), "kid is malformed"},
		{"kid 65 characters", withKid(strings.Repeat("k", 65)), "kid is malformed"},
		{"kid 10000 characters", withKid(strings.Repeat("k", 10000)), "limit is 4096"},
		{"kid a number", withKid(1), "kid is malformed"},
		{"kid an object", withKid(map[string]any{"kid": "key-1"}), "kid is malformed"},
		{"typ missing", signed(func(h map[string]any) { delete(h, "typ") }, nil), "typ"},
		{"typ other", signed(func(h map[string]any) { h["typ"] = "at+jwt" }, nil), "typ"},
		{"crit header", signed(func(h map[string]any) { h["crit"] = []string{"exp"} }, nil), "crit"},
		{"wrong issuer", withClaim("iss", "https://evil.example"), "invalid issuer"},
		{"issuer missing", withoutClaim("iss"), "iss"},
		{"wrong audience", withClaim("aud", "other-api"), "invalid audience"},
		{"audience array without ours", withClaim("aud", []string{"other-api", "codehub-api-2"}), "invalid audience"},
		{"audience empty array", withClaim("aud", []string{}), "aud"},
		{"audience missing", withoutClaim("aud"), "aud"},
		{"expired beyond leeway", withClaim("exp", now.Add(-token.DefaultLeeway-time.Second).Unix()), "expired"},
		{"nbf beyond leeway", withClaim("nbf", now.Add(token.DefaultLeeway+time.Second).Unix()), "not valid yet"},
		{"iat beyond leeway", withClaim("iat", now.Add(token.DefaultLeeway+time.Second).Unix()), "used before issued"},
		{"exp missing", withoutClaim("exp"), "exp"},
		{"nbf missing", withoutClaim("nbf"), "nbf"},
		{"iat missing", withoutClaim("iat"), "missing iat"},
		{"sub missing", withoutClaim("sub"), "missing sub"},
		{"sid missing", withoutClaim("sid"), "missing sid"},
		{"jti missing", withoutClaim("jti"), "missing jti"},
		{"exp not a number", withClaim("exp", "tomorrow"), "malformed"},
		{"sub a number", withClaim("sub", 42), "malformed"},
		{"tampered sub, original signature", func() string {
			c := validClaims(now)
			c["sub"] = "admin"
			return parts[0] + "." + b64json(t, c) + "." + parts[2]
		}(), "signature is invalid"},
		{"tampered header, original signature", b64json(t, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": "key-1", "x": 1}) + "." + parts[1] + "." + parts[2], "signature is invalid"},
		{"signature of another token", input + "." + strings.Split(mustIssue(t, svc), ".")[2], "signature is invalid"},
		{"signature truncated", valid[:len(valid)-10], "signature is invalid"},
		{"signature empty", input + ".", "signature is invalid"},
		{"no signature segment", input, "invalid number of segments"},
		{"header only", parts[0], "invalid number of segments"},
		{"extra segment", valid + "." + parts[2], "invalid number of segments"},
		{"trailing dot", valid + ".", "invalid number of segments"},
		{"empty string", "", "empty"},
		{"dots only", "..", "malformed"},
		{"garbage base64", "!!!.@@@.###", "outside base64url"},
		{"garbage segments", "abc.def.ghi", "malformed"},
		{"padded signature", valid + "==", "outside base64url"},
		{"standard base64 alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(valid) + "+/", "outside base64url"},
		{"trailing newline", valid + "\n", "outside base64url"},
		{"leading space", " " + valid, "outside base64url"},
		{"bearer prefix", "Bearer " + valid, "outside base64url"},
		{"non-canonical signature encoding", nonCanonical(valid), "malformed"},
		{"too long", valid + strings.Repeat("A", token.MaxTokenLen), "limit is 4096"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantInvalid(t, svc, tc.token, tc.reason)
		})
	}
	// The valid token is still fine: nothing above poisoned the cache.
	mustVerify(t, svc, valid)
}

// nonCanonical changes the unused low bits of the token's last character,
// which a lenient base64 decoder ignores: the same signature bytes, a
// different token string.
func nonCanonical(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(alphabet[last^1])
}

func TestVerifyLeeway(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Minute
	const leeway = 30 * time.Second
	tests := []struct {
		name        string
		issuerAhead time.Duration // the issuing gateway's clock runs ahead by this
		verifyAfter time.Duration // the verifying gateway checks this much later
		reason      string        // "" if the token must verify
	}{
		{"fresh", 0, 0, ""},
		{"just before exp", 0, ttl - time.Second, ""},
		{"expired within leeway", 0, ttl + leeway - time.Second, ""},
		{"expired by exactly leeway", 0, ttl + leeway, "expired"},
		{"expired beyond leeway", 0, ttl + leeway + time.Hour, "expired"},
		{"issuer ahead within leeway", leeway, 0, ""},
		{"issuer ahead beyond leeway", leeway + time.Second, 0, "not valid yet"},
		{"issuer behind, expired within leeway", -ttl, leeway - time.Second, ""},
		{"issuer behind, expired beyond leeway", -ttl, leeway, "expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := newMemSource(t, "key-1")
			cfg := token.Config{AccessTTL: ttl, Leeway: leeway}
			issuerClock, verifierClock := newClock(), newClock()
			issuerClock.Advance(tc.issuerAhead)
			issuer := mustService(t, cfg, issuerClock, src)
			verifier := mustService(t, cfg, verifierClock, src)
			tok := mustIssue(t, issuer)
			verifierClock.Advance(tc.verifyAfter)
			if tc.reason == "" {
				mustVerify(t, verifier, tok)
			} else {
				wantInvalid(t, verifier, tok, tc.reason)
			}
		})
	}
}

func TestVerifyIatWithinLeeway(t *testing.T) {
	t.Parallel()
	clock := newClock()
	src := newMemSource(t, "key-1")
	svc := mustService(t, token.Config{}, clock, src)
	header := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": "key-1"}
	for _, tc := range []struct {
		iatAhead time.Duration
		reason   string
	}{
		{token.DefaultLeeway, ""},
		{token.DefaultLeeway + time.Second, "used before issued"},
	} {
		t.Run(tc.iatAhead.String(), func(t *testing.T) {
			c := validClaims(clock.Now())
			c["iat"] = clock.Now().Add(tc.iatAhead).Unix()
			tok := edToken(t, src.private("key-1"), header, c)
			if tc.reason == "" {
				mustVerify(t, svc, tok)
			} else {
				wantInvalid(t, svc, tok, tc.reason)
			}
		})
	}
}

func TestAudienceArrayWithOursVerifies(t *testing.T) {
	t.Parallel()
	clock := newClock()
	src := newMemSource(t, "key-1")
	svc := mustService(t, token.Config{}, clock, src)
	c := validClaims(clock.Now())
	c["aud"] = []string{"other-api", testAudience}
	tok := edToken(t, src.private("key-1"), map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": "key-1"}, c)
	if got := mustVerify(t, svc, tok); got.UserID != testUser {
		t.Errorf("UserID = %q, want %q", got.UserID, testUser)
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	clock := newClock()
	src := newMemSource(t, "key-1")
	svc := mustService(t, token.Config{AccessTTL: time.Hour}, clock, src)
	old := mustIssue(t, svc)
	mustVerify(t, svc, old) // caches key-1

	src.add(t, "key-2")
	tok := mustIssue(t, svc)
	// Verifies at once, within KeyRefreshMin of the last fetch: the issuer
	// fetched the keys when Sign named a kid it did not know.
	if c := mustVerify(t, svc, tok); c.KeyID != "key-2" {
		t.Errorf("new token's kid = %q, want key-2", c.KeyID)
	}
	if c := mustVerify(t, svc, old); c.KeyID != "key-1" {
		t.Errorf("old token's kid = %q, want key-1", c.KeyID)
	}

	// The source drops key-1: once the cache is older than KeyMaxAge the
	// old key stops verifying, though its token has not expired.
	src.remove("key-1")
	clock.Advance(token.DefaultKeyMaxAge)
	wantInvalid(t, svc, old, `unknown key id "key-1"`)
	mustVerify(t, svc, tok)
}

func TestKeySourceDown(t *testing.T) {
	t.Parallel()
	clock := newClock()
	src := newMemSource(t, "key-1")
	svc := mustService(t, token.Config{AccessTTL: time.Hour}, clock, src)
	tok := mustIssue(t, svc)
	mustVerify(t, svc, tok)

	signErr := errors.New("vault: sign: connection refused")
	pubErr := errors.New("vault: keys: connection refused")
	src.fail(signErr, pubErr)

	_, _, err := svc.IssueAccess(context.Background(), testUser, testSession)
	if !errors.Is(err, signErr) || !strings.Contains(err.Error(), "cannot sign tokens") {
		t.Errorf("IssueAccess error = %v, want one saying cannot sign tokens and wrapping the source's", err)
	}
	if errors.Is(err, token.ErrInvalid) {
		t.Errorf("IssueAccess error %v wraps ErrInvalid", err)
	}

	// Past KeyMaxAge the service tries to fetch, fails, and keeps the keys
	// it has.
	calls := src.publicCalls()
	clock.Advance(token.DefaultKeyMaxAge + time.Second)
	if c := mustVerify(t, svc, tok); c.KeyID != "key-1" {
		t.Errorf("kid = %q, want key-1", c.KeyID)
	}
	if got := src.publicCalls(); got != calls+1 {
		t.Errorf("PublicKeys called %d times, want 1", got-calls)
	}

	// An unknown kid cannot be looked up: the error says why.
	priv := src.add(t, "key-2")
	clock.Advance(token.DefaultKeyRefreshMin)
	forged := edToken(t, priv, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": "key-2"}, validClaims(clock.Now()))
	if err := wantInvalid(t, svc, forged, "unknown key id"); !errors.Is(err, pubErr) {
		t.Errorf("error %v does not wrap the source's %v", err, pubErr)
	}

	// Back up: the next fetch picks up key-2.
	src.fail(nil, nil)
	clock.Advance(token.DefaultKeyRefreshMin)
	mustVerify(t, svc, forged)
	mustVerify(t, svc, mustIssue(t, svc))
}

func TestUnknownKidFetchesAtMostOncePerRefreshMin(t *testing.T) {
	t.Parallel()
	clock := newClock()
	src := newMemSource(t, "key-1")
	svc := mustService(t, token.Config{KeyRefreshMin: 10 * time.Second}, clock, src)
	header := func(kid string) map[string]any { return map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": kid} }
	forge := func(kid string) string {
		return edToken(t, src.private("key-1"), header(kid), validClaims(clock.Now()))
	}

	wantInvalid(t, svc, forge("nope-0"), "unknown key id") // first use: fetches
	if n := src.publicCalls(); n != 1 {
		t.Fatalf("PublicKeys called %d times, want 1", n)
	}
	for i := range 20 {
		wantInvalid(t, svc, forge(fmt.Sprintf("nope-%d", i+1)), "unknown key id")
	}
	clock.Advance(9 * time.Second)
	wantInvalid(t, svc, forge("nope-x"), "unknown key id")
	if n := src.publicCalls(); n != 1 {
		t.Errorf("PublicKeys called %d times within KeyRefreshMin, want 1", n)
	}
	clock.Advance(time.Second)
	for i := range 5 {
		wantInvalid(t, svc, forge(fmt.Sprintf("later-%d", i)), "unknown key id")
	}
	if n := src.publicCalls(); n != 2 {
		t.Errorf("PublicKeys called %d times, want 2", n)
	}
	// Known kids never wait for the rate limit.
	mustVerify(t, svc, forge("key-1"))
}

// funcSource is a KeySource made of functions.
type funcSource struct {
	sign func(data []byte) (string, []byte, error)
	pub  func() (map[string]ed25519.PublicKey, error)
}

func (f funcSource) Sign(_ context.Context, data []byte) (string, []byte, error) { return f.sign(data) }
func (f funcSource) PublicKeys(context.Context) (map[string]ed25519.PublicKey, error) {
	return f.pub()
}

func TestIssueRefusesBadSignatures(t *testing.T) {
	t.Parallel()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	n := 0
	tests := []struct {
		name   string
		sign   func(data []byte) (string, []byte, error)
		reason string
	}{
		{"empty kid", func(d []byte) (string, []byte, error) { return "", ed25519.Sign(priv, d), nil }, "malformed key id"},
		{"path kid", func(d []byte) (string, []byte, error) { return "../k", ed25519.Sign(priv, d), nil }, "malformed key id"},
		{"short signature", func(d []byte) (string, []byte, error) { return "k", []byte("sig"), nil }, "3-byte signature"},
		{"kid changes every time", func(d []byte) (string, []byte, error) {
			mu.Lock()
			defer mu.Unlock()
			n++
			return fmt.Sprintf("k%d", n), ed25519.Sign(priv, d), nil
		}, "changed keys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := funcSource{sign: tc.sign, pub: func() (map[string]ed25519.PublicKey, error) { return nil, nil }}
			svc := mustService(t, token.Config{}, newClock(), src)
			_, _, err := svc.IssueAccess(context.Background(), testUser, testSession)
			if err == nil || !strings.Contains(err.Error(), "cannot sign tokens") || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("IssueAccess error = %v, want cannot sign tokens: ...%s...", err, tc.reason)
			}
		})
	}
}

func TestVerifyRefusesBadPublicKeys(t *testing.T) {
	t.Parallel()
	good := newMemSource(t, "key-1")
	clock := newClock()
	tok := mustIssue(t, mustService(t, token.Config{}, clock, good))
	pub := good.private("key-1").Public().(ed25519.PublicKey)
	tests := []struct {
		name   string
		keys   map[string]ed25519.PublicKey
		reason string
	}{
		{"short key", map[string]ed25519.PublicKey{"key-1": pub[:16]}, "16-byte key"},
		{"malformed kid", map[string]ed25519.PublicKey{"key-1": pub, "a/b": pub}, "malformed key id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := funcSource{pub: func() (map[string]ed25519.PublicKey, error) { return tc.keys, nil }}
			wantInvalid(t, mustService(t, token.Config{}, clock, src), tok, tc.reason)
		})
	}
}

func TestIssueNeedsIDs(t *testing.T) {
	t.Parallel()
	svc := mustService(t, token.Config{}, newClock(), newMemSource(t, "key-1"))
	for _, ids := range [][2]string{{"", testSession}, {testUser, ""}} {
		if _, _, err := svc.IssueAccess(context.Background(), ids[0], ids[1]); err == nil {
			t.Errorf("IssueAccess(%q, %q) succeeded", ids[0], ids[1])
		}
	}
}

func TestNewServiceValidates(t *testing.T) {
	t.Parallel()
	src := newMemSource(t, "key-1")
	tests := []struct {
		name   string
		cfg    token.Config
		src    token.KeySource
		reason string
	}{
		{"no issuer", token.Config{Audience: "a"}, src, "Issuer"},
		{"no audience", token.Config{Issuer: "i"}, src, "Audience"},
		{"negative ttl", token.Config{Issuer: "i", Audience: "a", AccessTTL: -time.Second}, src, "AccessTTL"},
		{"negative leeway", token.Config{Issuer: "i", Audience: "a", Leeway: -time.Second}, src, "Leeway"},
		{"no key source", token.Config{Issuer: "i", Audience: "a"}, nil, "KeySource"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := token.NewService(tc.cfg, tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("NewService error = %v, want one naming %s", err, tc.reason)
			}
		})
	}
}

func TestConcurrentIssueVerifyRotate(t *testing.T) {
	t.Parallel()
	clock := newClock()
	src := newMemSource(t, "key-0")
	svc := mustService(t, token.Config{AccessTTL: time.Hour}, clock, src)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				if g == 0 && i%5 == 0 {
					src.add(t, fmt.Sprintf("key-%d", i+1))
				}
				tok, _, err := svc.IssueAccess(context.Background(), testUser, testSession)
				if err != nil {
					errs <- err
					return
				}
				// A token may name a kid added after the last fetch, within
				// KeyRefreshMin: move the clock so the fetch is allowed.
				if _, err := svc.VerifyAccess(context.Background(), tok); err != nil {
					clock.Advance(token.DefaultKeyRefreshMin)
					if _, err := svc.VerifyAccess(context.Background(), tok); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestJWKS(t *testing.T) {
	t.Parallel()
	clock := newClock()
	src := newMemSource(t, "key-b")
	src.add(t, "key-a")
	svc := mustService(t, token.Config{}, clock, src)

	b, err := svc.JWKS(context.Background())
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatalf("JWKS is not JSON: %v\n%s", err, b)
	}
	if got := len(set.Keys); got != 2 {
		t.Fatalf("JWKS has %d keys, want 2:\n%s", got, b)
	}
	for i, kid := range []string{"key-a", "key-b"} {
		k := set.Keys[i]
		want := map[string]string{
			"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
			"x": base64.RawURLEncoding.EncodeToString(src.private(kid).Public().(ed25519.PublicKey)),
		}
		if !maps.Equal(k, want) {
			t.Errorf("key %d = %v, want %v", i, k, want)
		}
	}

	// Another service verifies our token from the JWKS alone.
	tok := mustIssue(t, svc)
	keys := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		x, err := base64.RawURLEncoding.DecodeString(k["x"])
		if err != nil {
			t.Fatal(err)
		}
		keys[k["kid"]] = x
	}
	parsed, err := jwt.Parse(tok, func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		if k, ok := keys[kid]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("no key %q", kid)
	}, jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(clock.Now), jwt.WithAudience(testAudience))
	if err != nil || !parsed.Valid {
		t.Errorf("token does not verify with the JWKS keys: %v", err)
	}

	// With the source down, the keys already fetched are still served.
	src.fail(nil, errors.New("down"))
	clock.Advance(time.Hour)
	again, err := svc.JWKS(context.Background())
	if err != nil || string(again) != string(b) {
		t.Errorf("JWKS with the source down = %s, %v; want the cached set", again, err)
	}
}

func TestJWKSSourceDownNothingCached(t *testing.T) {
	t.Parallel()
	src := newMemSource(t, "key-1")
	down := errors.New("down")
	src.fail(nil, down)
	svc := mustService(t, token.Config{}, newClock(), src)
	if b, err := svc.JWKS(context.Background()); !errors.Is(err, down) {
		t.Errorf("JWKS = %s, %v; want an error wrapping %v", b, err, down)
	}
}

func TestValidKeyID(t *testing.T) {
	t.Parallel()
	valid := []string{"a", "key-1", "AZaz09-_", strings.Repeat("k", 64)}
	invalid := []string{"", "a.b", "..", "a/b", `a\b`, "a b", "a\n", "kéy", "a=", "a+b", strings.Repeat("k", 65)}
	for _, kid := range valid {
		if !token.ValidKeyID(kid) {
			t.Errorf("ValidKeyID(%q) = false, want true", kid)
		}
	}
	for _, kid := range invalid {
		if token.ValidKeyID(kid) {
			t.Errorf("ValidKeyID(%q) = true, want false", kid)
		}
	}
}
