package user

import (
	"errors"
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Names people sign in with are ASCII: a username is lower-case ASCII
// letters, digits and three punctuation marks, and an email address is
// ASCII before the @ and ASCII after it, an internationalized domain
// written in its ASCII (punycode, "xn--") form. Letters of other scripts
// that look like Latin ones (Cyrillic "а", Greek "ο") would otherwise let
// one account pass for another in every list an administrator reads.

var (
	usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,38}[a-z0-9]$`)
	emailRE    = regexp.MustCompile(`^[^@\s<>"'\x00-\x1f\x7f]{1,64}@[^@\s<>"'\x00-\x1f\x7f]+\.[^@\s<>"'\x00-\x1f\x7f]{2,}$`)
)

// maxEmailLen is the longest address SMTP carries (RFC 5321).
const maxEmailLen = 254

// NormalizeUsername trims a username and lower-cases its ASCII letters.
// Other characters stay as they are, for ValidateUsername to refuse:
// strings.ToLower would turn the Kelvin sign "K" into "k", so that a name
// typed with it would pass for another.
func NormalizeUsername(s string) string { return asciiLower(strings.TrimSpace(s)) }

// NormalizeEmail trims an address, lower-cases its ASCII letters and
// writes an internationalized domain in its ASCII form ("bücher.de" is
// "xn--bcher-kva.de"), the form it is stored, shown and looked up in.
// What cannot be converted is left for ValidateEmail to refuse.
func NormalizeEmail(s string) string {
	s = strings.TrimSpace(s)
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return asciiLower(s)
	}
	local, domain := asciiLower(s[:at]), s[at+1:]
	if isASCII(domain) {
		domain = asciiLower(domain)
	} else if a, err := idna.Lookup.ToASCII(domain); err == nil && isASCII(a) {
		domain = a
	}
	return local + "@" + domain
}

// ValidateUsername explains what is wrong with a (normalized) username.
func ValidateUsername(s string) error {
	if !usernameRE.MatchString(s) {
		return errors.New("a username is 3 to 40 characters: lower-case ASCII letters (a-z), digits, '.', '_' or '-', starting and ending with a letter or digit")
	}
	return nil
}

// ValidateEmail explains what is wrong with a (normalized) email address.
func ValidateEmail(s string) error {
	if len(s) > maxEmailLen || !utf8.ValidString(s) {
		return errors.New("not a valid email address")
	}
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		if !isASCII(s[:at]) {
			return errors.New("an email address must be ASCII before the @: letters of other scripts " +
				"(Cyrillic, Greek...) can look like Latin ones and imitate another address")
		}
		if !isASCII(s[at+1:]) {
			return errors.New("the domain of the email address is not a valid internationalized domain name")
		}
	}
	if !emailRE.MatchString(s) {
		return errors.New("not a valid email address")
	}
	return nil
}

// SignInName normalizes a name typed to sign in: an email address when it
// holds an @, a username otherwise. ok is false when the name cannot be
// an account's (letters outside ASCII, a homograph of one perhaps): the
// caller answers exactly as for a name that is not found.
func SignInName(name string) (key string, isEmail, ok bool) {
	if strings.Contains(name, "@") {
		key, isEmail = NormalizeEmail(name), true
	} else {
		key = NormalizeUsername(name)
	}
	return key, isEmail, isASCII(key) && ValidText(key)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// asciiLower lower-cases the ASCII letters of s and nothing else.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
