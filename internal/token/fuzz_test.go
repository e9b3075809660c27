package token_test

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/codehub-dev/codehub/internal/token"
)

// FuzzVerifyAccess: whatever string is presented as a bearer token, only a
// token the service itself issued is accepted. (Ed25519 signatures cannot
// be altered and stay valid, and segments have one spelling each, so the
// fuzzer can only find an accepted token by finding a real one.)
func FuzzVerifyAccess(f *testing.F) {
	clock := newClock()
	src := newMemSource(f, "key-1")
	svc := mustService(f, token.Config{}, clock, src)
	issued := map[string]bool{}
	for i := 0; i < 3; i++ {
		tok := mustIssue(f, svc)
		issued[tok] = true
		f.Add(tok)
		f.Add(tok + "=")
		f.Add(strings.Replace(tok, ".", "..", 1))
		parts := strings.Split(tok, ".")
		f.Add(parts[0] + "." + parts[1] + ".")
		f.Add(parts[0] + "." + parts[1])
	}
	now := clock.Now()
	f.Add(edToken(f, src.private("key-1"), map[string]any{"alg": "none", "typ": "JWT", "kid": "key-1"}, validClaims(now)))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := svc.VerifyAccess(context.Background(), tok)
		if err == nil && !issued[tok] {
			t.Fatalf("accepted a token it did not issue: %q (%+v)", tok, c)
		}
		if err == nil && (c.UserID != testUser || c.SessionID != testSession) {
			t.Fatalf("issued token read as %+v", c)
		}
	})
}

// FuzzForgedToken builds tokens from any header and claims, signed in
// several ways: by the service's key, by another Ed25519 key, not at all,
// with HMAC keyed by the public key (the classic algorithm confusion), or
// by the right key over other bytes. Only the service's key can make a
// token pass, and then only with alg EdDSA and a kid it knows.
func FuzzForgedToken(f *testing.F) {
	clock := newClock()
	src := newMemSource(f, "key-1")
	svc := mustService(f, token.Config{}, clock, src)
	priv := src.private("key-1")
	pub := priv.Public().(ed25519.PublicKey)
	_, stranger, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	claims, _ := json.Marshal(validClaims(clock.Now()))
	for _, h := range []string{
		`{"alg":"EdDSA","typ":"JWT","kid":"key-1"}`, `{"alg":"none","typ":"JWT","kid":"key-1"}`,
		`{"alg":"HS256","typ":"JWT","kid":"key-1"}`, `{"alg":"EdDSA","typ":"JWT","kid":"key-2"}`,
		`{"alg":"EdDSA","typ":"JWT"}`, `{"alg":"EdDSA","typ":"JWT","kid":"key-1","crit":["x"]}`,
		`{"alg":"EdDSA","alg":"none","typ":"JWT","kid":"key-1"}`, `{"alg":"EDDSA","typ":"JWT","kid":"key-1"}`,
		`{"alg":"EdDSA","typ":"JWT","kid":"../key-1"}`, `{"alg":"EdDSA","typ":"JWT","kid":["key-1"]}`,
	} {
		for how := byte(0); how < 5; how++ {
			f.Add([]byte(h), claims, how)
		}
	}
	f.Add([]byte(`{"alg":"EdDSA","typ":"JWT","kid":"key-1"}`), []byte(`{"iss":"`+testIssuer+`"}`), byte(0))
	b64 := base64.RawURLEncoding
	f.Fuzz(func(t *testing.T, header, payload []byte, how byte) {
		input := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
		var sig []byte
		switch how % 5 {
		case 0:
			sig = ed25519.Sign(priv, []byte(input))
		case 1:
			sig = ed25519.Sign(stranger, []byte(input))
		case 2:
			sig = nil
		case 3:
			m := hmac.New(sha256.New, pub)
			m.Write([]byte(input))
			sig = m.Sum(nil)
		case 4:
			sig = ed25519.Sign(priv, append([]byte(input), '.'))
		}
		tok := input + "." + b64.EncodeToString(sig)
		c, err := svc.VerifyAccess(context.Background(), tok)
		if err != nil {
			return
		}
		if how%5 != 0 {
			t.Fatalf("accepted a token signed by method %d: header %s, claims %s", how%5, header, payload)
		}
		var h map[string]any
		if json.Unmarshal(header, &h) != nil || h["alg"] != "EdDSA" || h["kid"] != "key-1" || h["typ"] != "JWT" {
			t.Fatalf("accepted header %s", header)
		}
		if c.UserID == "" || c.SessionID == "" || c.ID == "" || c.ExpiresAt.IsZero() || c.IssuedAt.IsZero() {
			t.Fatalf("accepted claims %s as %+v", payload, c)
		}
	})
}

// FuzzParseRefresh: a refresh token is accepted only in the one spelling
// NewRefresh writes, and what it yields names it exactly.
func FuzzParseRefresh(f *testing.F) {
	tok, _, err := token.NewRefresh(testSession, 7)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{tok, tok + "=", "chr1." + testSession + ".07." + strings.Repeat("A", 43),
		"chr1." + testSession + ".-1." + strings.Repeat("A", 43), "chr1...", "", strings.Repeat(".", 300),
		"chr1." + testSession + ".99999999999999999999." + strings.Repeat("A", 43)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sid, gen, hash, err := token.ParseRefresh(s)
		if err != nil {
			return
		}
		parts := strings.Split(s, ".")
		secret, derr := base64.RawURLEncoding.Strict().DecodeString(parts[3])
		sum := sha256.Sum256(secret)
		switch {
		case len(parts) != 4 || parts[0] != "chr1" || parts[1] != sid || parts[2] != strconv.Itoa(gen) || gen < 0:
			t.Fatalf("%q read as session %q, generation %d", s, sid, gen)
		case derr != nil || b64enc(secret) != parts[3] || len(secret) != 32:
			t.Fatalf("%q: secret %q is not canonical base64url of 32 bytes", s, parts[3])
		case !token.HashEqual(hash, b64enc(sum[:])):
			t.Fatalf("%q: hash %q is not the secret's", s, hash)
		case len(s) > token.MaxRefreshLen:
			t.Fatalf("%q: longer than MaxRefreshLen", s)
		}
	})
}

func b64enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
