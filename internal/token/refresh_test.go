package token_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/codehub-dev/codehub/internal/token"
)

func TestRefreshRoundTrip(t *testing.T) {
	t.Parallel()
	format := regexp.MustCompile(`^chr1\.[A-Za-z0-9_-]{43}\.(0|[1-9][0-9]*)\.[A-Za-z0-9_-]{43}$`)
	for _, gen := range []int{0, 1, 7, 10, 123456789} {
		tok, hash, err := token.NewRefresh(testSession, gen)
		if err != nil {
			t.Fatalf("NewRefresh(%d): %v", gen, err)
		}
		if !format.MatchString(tok) {
			t.Errorf("NewRefresh(%d) = %q, not chr1.<sid>.<gen>.<secret>", gen, tok)
		}
		if strings.Contains(tok, hash) {
			t.Errorf("token %q contains its hash %q", tok, hash)
		}
		sid, gotGen, gotHash, err := token.ParseRefresh(tok)
		if err != nil {
			t.Fatalf("ParseRefresh(%q): %v", tok, err)
		}
		if sid != testSession || gotGen != gen || !token.HashEqual(gotHash, hash) {
			t.Errorf("ParseRefresh = %q, %d, %q; want %q, %d, %q", sid, gotGen, gotHash, testSession, gen, hash)
		}
	}

	a, hashA, err := token.NewRefresh(testSession, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, hashB, err := token.NewRefresh(testSession, 1)
	if err != nil {
		t.Fatal(err)
	}
	if a == b || token.HashEqual(hashA, hashB) {
		t.Errorf("two refresh tokens of one generation are alike: %q %q", a, b)
	}
}

func TestParseRefreshRejectsMalformed(t *testing.T) {
	t.Parallel()
	good, _, err := token.NewRefresh(testSession, 3)
	if err != nil {
		t.Fatal(err)
	}
	secret := good[strings.LastIndexByte(good, '.')+1:]
	mk := func(prefix, sid, gen, sec string) string { return prefix + "." + sid + "." + gen + "." + sec }

	tests := []struct {
		name, token, reason string
	}{
		{"empty", "", "1 parts"},
		{"wrong prefix", mk("chr2", testSession, "3", secret), "prefix"},
		{"prefix upper case", mk("CHR1", testSession, "3", secret), "prefix"},
		{"prefix missing", testSession + ".3." + secret, "3 parts"},
		{"jwt-like", "a.b.c", "3 parts"},
		{"extra dot at end", good + ".", "5 parts"},
		{"extra dot inside", mk("chr1", testSession, "3", secret[:20]+"."+secret[20:]), "5 parts"},
		{"dots only", "...", "prefix"},
		{"gen negative", mk("chr1", testSession, "-1", secret), "not a decimal"},
		{"gen plus sign", mk("chr1", testSession, "+1", secret), "not a decimal"},
		{"gen leading zero", mk("chr1", testSession, "01", secret), "leading zero"},
		{"gen zeros", mk("chr1", testSession, "00", secret), "leading zero"},
		{"gen exponent", mk("chr1", testSession, "1e3", secret), "not a decimal"},
		{"gen hex", mk("chr1", testSession, "0x1", secret), "not a decimal"},
		{"gen space", mk("chr1", testSession, " 1", secret), "not a decimal"},
		{"gen fraction", mk("chr1", testSession, "1.0", secret), "5 parts"},
		{"gen empty", mk("chr1", testSession, "", secret), "empty generation"},
		{"gen overflow", mk("chr1", testSession, "99999999999999999999", secret), "out of range"},
		{"gen unicode digit", mk("chr1", testSession, "١", secret), "not a decimal"},
		{"sid short", mk("chr1", testSession[:42], "3", secret), "42 characters"},
		{"sid long", mk("chr1", testSession+"A", "3", secret), "44 characters"},
		{"sid empty", mk("chr1", "", "3", secret), "0 characters"},
		{"sid std base64", mk("chr1", "+"+testSession[1:], "3", secret), "not base64url"},
		{"sid slash", mk("chr1", "/"+testSession[1:], "3", secret), "not base64url"},
		{"sid padded", mk("chr1", testSession[:42]+"=", "3", secret), "not base64url"},
		{"sid newline", mk("chr1", testSession[:42]+"\n", "3", secret), "not base64url"},
		{"sid non-canonical", mk("chr1", nonCanonical(testSession), "3", secret), "not canonical"},
		{"secret short", mk("chr1", testSession, "3", secret[:42]), "42 characters"},
		{"secret 31 bytes", mk("chr1", testSession, "3", secret[:40]+"AA"), "42 characters"},
		{"secret long", mk("chr1", testSession, "3", secret+"AAAA"), "47 characters"},
		{"secret empty", mk("chr1", testSession, "3", ""), "0 characters"},
		{"secret padded", mk("chr1", testSession, "3", secret[:42]+"="), "not base64url"},
		{"secret non-canonical", mk("chr1", testSession, "3", nonCanonical(secret)), "not canonical"},
		{"whitespace around", " " + good, "prefix"},
		{"too long", good + strings.Repeat("A", token.MaxRefreshLen), "limit is 200"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sid, gen, hash, err := token.ParseRefresh(tc.token)
			if !errors.Is(err, token.ErrInvalid) {
				t.Fatalf("ParseRefresh(%q) = %q, %d, %q, %v; want ErrInvalid", tc.token, sid, gen, hash, err)
			}
			if sid != "" || gen != 0 || hash != "" {
				t.Errorf("ParseRefresh returned %q, %d, %q with its error", sid, gen, hash)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Errorf("error %q does not say %q", err, tc.reason)
			}
		})
	}
}

func TestNewRefreshRejectsBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sid  string
		gen  int
	}{
		{"negative gen", testSession, -1},
		{"empty session id", "", 0},
		{"short session id", testSession[:10], 0},
		{"session id with a dot", testSession[:42] + ".", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tok, hash, err := token.NewRefresh(tc.sid, tc.gen); err == nil {
				t.Errorf("NewRefresh(%q, %d) = %q, %q; want an error", tc.sid, tc.gen, tok, hash)
			}
		})
	}
}

func TestHashEqual(t *testing.T) {
	t.Parallel()
	_, h, err := token.NewRefresh(testSession, 0)
	if err != nil {
		t.Fatal(err)
	}
	other := h[:len(h)-1] + string(h[len(h)-1]^1)
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{"same", h, h, true},
		{"copy", h, strings.Clone(h), true},
		{"last byte differs", h, other, false},
		{"prefix", h, h[:20], false},
		{"longer", h, h + "A", false},
		{"empty and hash", "", h, false},
		{"hash and empty", h, "", false},
		{"both empty", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := token.HashEqual(tc.a, tc.b); got != tc.want {
				t.Errorf("HashEqual(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}
