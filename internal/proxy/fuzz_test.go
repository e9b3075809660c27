package proxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// parseCookies reads a Cookie header as Go's server does.
func parseCookies(line string) []*http.Cookie {
	return (&http.Request{Header: http.Header{"Cookie": {line}}}).Cookies()
}

// TestStripCookiesSpelling: the gateway's cookies are removed however the
// browser (or an attacker's script) spaces them; Go reads
// "codehub_session\t=x" as the session cookie.
func TestStripCookiesSpelling(t *testing.T) {
	names := []string{"codehub_session", "codehub_csrf"}
	for _, line := range []string{
		"codehub_session=s", " codehub_session =s", "codehub_session\t=s", "a=1; codehub_csrf =c;b=2",
		"CODEHUB_SESSION=s", "a=1;codehub_session=s;codehub_session=t",
	} {
		h := http.Header{"Cookie": {line}}
		stripCookies(h, names)
		for _, c := range parseCookies(h.Get("Cookie")) {
			if slices.Contains(names, c.Name) {
				t.Errorf("%q: %s kept in %q", line, c.Name, h.Get("Cookie"))
			}
		}
	}
	h := http.Header{"Cookie": {"a=1; codehub_session=s", "b=2"}}
	stripCookies(h, names)
	if got := h.Values("Cookie"); len(got) != 1 || got[0] != "a=1; b=2" {
		t.Errorf("other cookies: %q, want [\"a=1; b=2\"]", got)
	}
}

// FuzzStripCookies: whatever the Cookie header, none of the named cookies
// is left in it, as Go reads cookies or as a lenient parser (Node's) does,
// and every other cookie Go reads stays, in order.
func FuzzStripCookies(f *testing.F) {
	for _, s := range []string{
		"codehub_session=s", "a=1; codehub_session=s; b=2", "codehub_session\t=s", " codehub_csrf = c ; x=y",
		"codehub_session", "=codehub_session", "a=\"q;uoted\"; codehub_csrf=1", ";;codehub_session=;;", "",
	} {
		f.Add(s, "")
	}
	f.Add("a=1", "codehub_session=s")
	names := []string{"codehub_session", "codehub_csrf"}
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		var lines []string
		for _, l := range []string{line1, line2} {
			if l != "" {
				lines = append(lines, l)
			}
		}
		h := http.Header{"Cookie": lines}
		var want []string
		for _, l := range lines {
			for _, c := range parseCookies(l) {
				if !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, c.Name) }) {
					want = append(want, c.Name+"="+c.Value)
				}
			}
		}
		stripCookies(h, names)
		if len(h.Values("Cookie")) > 1 {
			t.Fatalf("%q: %d Cookie lines after stripping", lines, len(h.Values("Cookie")))
		}
		out := h.Get("Cookie")
		var got []string
		for _, c := range parseCookies(out) {
			if slices.Contains(names, c.Name) {
				t.Fatalf("%q: %s kept in %q", lines, c.Name, out)
			}
			got = append(got, c.Name+"="+c.Value)
		}
		for _, part := range strings.Split(out, ";") {
			name, _, _ := strings.Cut(part, "=")
			if slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, strings.TrimFunc(name, isCookieSpace)) }) {
				t.Fatalf("%q: %q kept in %q", lines, name, out)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%q: other cookies %q, want %q", lines, got, want)
		}
	})
}
