package user

import (
	"strings"
	"testing"
)

// Homographs: letters of other scripts that look like Latin ones.
const (
	cyrA     = "\u0430" // а, Cyrillic small a
	cyrE     = "\u0435" // е, Cyrillic small ie
	cyrO     = "\u043e" // о, Cyrillic small o
	greekO   = "\u03bf" // ο, Greek small omicron
	greekNu  = "\u03bd" // ν, Greek small nu, like v
	kelvin   = "\u212a" // K, the Kelvin sign: strings.ToLower makes it "k"
	longS    = "\u017f" // ſ, Latin small long s: strings.ToUpper makes it "S"
	fullA    = "\uff41" // ａ, fullwidth a
	dotlessI = "\u0131" // ı
)

func TestNormalizeAndValidateEmail(t *testing.T) {
	ok := map[string]string{
		"alice@example.com":            "alice@example.com",
		" Alice@EXAMPLE.com ":          "alice@example.com",
		"bob@bücher.de":                "bob@xn--bcher-kva.de",
		"bob@BÜCHER.DE":                "bob@xn--bcher-kva.de",
		"bob@xn--bcher-kva.de":         "bob@xn--bcher-kva.de",
		"a@παράδειγμα.δοκιμή":          "a@xn--hxajbheg2az3al.xn--jxalpdlp",
		"alice@ex" + cyrA + "mple.com": "alice@xn--exmple-4nf.com", // shown as what it is
		"x@" + fullA + "bc.com":        "x@abc.com",                // the same domain
		"first.last+tag@example.org":   "first.last+tag@example.org",
	}
	for in, want := range ok {
		got := NormalizeEmail(in)
		if got != want {
			t.Errorf("NormalizeEmail(%q) = %q, want %q", in, got, want)
		}
		if err := ValidateEmail(got); err != nil {
			t.Errorf("ValidateEmail(%q): %v", got, err)
		}
		if again := NormalizeEmail(got); again != got {
			t.Errorf("NormalizeEmail is not idempotent: %q then %q", got, again)
		}
	}
	refused := map[string]string{
		cyrA + "lice@example.com":                    "ASCII before the @",
		"b" + greekO + "b@example.com":               "ASCII before the @",
		"b" + cyrO + "b@ex" + cyrA + "mple.c":        "ASCII before the @",
		kelvin + "ate@example.com":                   "ASCII before the @",
		longS + "am@example.com":                     "ASCII before the @",
		fullA + "lice@example.com":                   "ASCII before the @",
		"al" + dotlessI + "ce@example.com":           "ASCII before the @",
		"alice@exa\u200dmple.com":                    "internationalized domain", // a zero-width joiner
		"alice@ex\u0000ample.com":                    "not a valid email",
		"alice@@example.com":                         "not a valid email",
		"alice@example":                              "not a valid email",
		"alice@" + strings.Repeat("a", 260) + ".com": "not a valid email",
	}
	for in, want := range refused {
		err := ValidateEmail(NormalizeEmail(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateEmail(NormalizeEmail(%q)) = %v, want an error saying %q", in, err, want)
		}
	}
}

func TestNormalizeAndValidateUsername(t *testing.T) {
	for in, want := range map[string]string{"alice": "alice", " ALICE ": "alice", "Grace.Hopper-1": "grace.hopper-1"} {
		if got := NormalizeUsername(in); got != want || ValidateUsername(got) != nil {
			t.Errorf("NormalizeUsername(%q) = %q (%v), want %q", in, got, ValidateUsername(got), want)
		}
	}
	for _, in := range []string{cyrA + "lice", "b" + greekO + "b", kelvin + "ate", "tru" + longS + "t", fullA + "lice",
		"al" + dotlessI + "ce", "da" + greekNu + "e", "alice\u200d", "ali\u0301ce"} {
		if got := NormalizeUsername(in); ValidateUsername(got) == nil {
			t.Errorf("username %q normalized to %q and accepted", in, got)
		}
	}
}

// TestSignInName: a name with letters outside ASCII names no account, so
// that a sign-in with it is answered as an unknown name.
func TestSignInName(t *testing.T) {
	for in, want := range map[string]struct {
		key     string
		isEmail bool
	}{
		"Alice":                {"alice", false},
		"alice@EXAMPLE.com":    {"alice@example.com", true},
		"bob@bücher.de":        {"bob@xn--bcher-kva.de", true},
		"bob@xn--bcher-kva.de": {"bob@xn--bcher-kva.de", true},
	} {
		key, isEmail, ok := SignInName(in)
		if !ok || key != want.key || isEmail != want.isEmail {
			t.Errorf("SignInName(%q) = %q %v %v, want %q %v true", in, key, isEmail, ok, want.key, want.isEmail)
		}
	}
	for _, in := range []string{cyrA + "lice", cyrA + "lice@example.com", "alice@exa\u200dmple.com", kelvin + "ate",
		"b" + greekO + "b@example.com", "ali\x00ce"} {
		if key, _, ok := SignInName(in); ok {
			t.Errorf("SignInName(%q) = %q, ok; want not ok", in, key)
		}
	}
}
