package user

import (
	"strings"
	"testing"
)

// FuzzNames: normalizing a name twice changes nothing; a name that is
// accepted (as a username, or an email address) is ASCII, so that no
// accepted name can look like another; a sign-in name that can name an
// account is the name as it would have been stored.
func FuzzNames(f *testing.F) {
	for _, s := range []string{
		"alice", " ALICE ", "alice@example.com", "Alice@EXAMPLE.com", "\u0430lice@example.com", "alice@ex\u0430mple.com",
		"bob@bücher.de", "\u212aate", "a@b@c.de", "x@\uff45xample.com", "alice@exa\u200dmple.com", "a@xn--80ak6aa92e.com",
		"@", "a@.", "\xff@x.com", "a@x.c\u0301om",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		email := NormalizeEmail(s)
		if again := NormalizeEmail(email); again != email {
			t.Fatalf("NormalizeEmail(%q) = %q, then %q", s, email, again)
		}
		if ValidateEmail(email) == nil {
			if !isASCII(email) || len(email) > maxEmailLen || strings.Count(email, "@") != 1 {
				t.Fatalf("email %q (from %q) accepted", email, s)
			}
			at := strings.LastIndexByte(strings.TrimSpace(s), '@')
			if local := strings.TrimSpace(s)[:at]; !isASCII(local) {
				t.Fatalf("email %q accepted with a non-ASCII local part %q", s, local)
			}
			if key, isEmail, ok := SignInName(s); !ok || !isEmail || key != email {
				t.Fatalf("SignInName(%q) = %q %v %v; stored as %q", s, key, isEmail, ok, email)
			}
		}
		name := NormalizeUsername(s)
		if again := NormalizeUsername(name); again != name {
			t.Fatalf("NormalizeUsername(%q) = %q, then %q", s, name, again)
		}
		if ValidateUsername(name) == nil {
			if !isASCII(name) || name != strings.ToLower(name) {
				t.Fatalf("username %q (from %q) accepted", name, s)
			}
			if key, isEmail, ok := SignInName(s); !ok || isEmail || key != name {
				t.Fatalf("SignInName(%q) = %q %v %v; stored as %q", s, key, isEmail, ok, name)
			}
		}
		if key, _, ok := SignInName(s); ok && !isASCII(key) {
			t.Fatalf("SignInName(%q) = %q, ok", s, key)
		}
	})
}
