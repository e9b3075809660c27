package agentapi

import (
	"net/url"
	"path"
	"strings"
)

// Prefix starts every path of the agent's own endpoints.
const Prefix = "/_agent/"

// maxUnescapes bounds how many layers of percent-encoding IsAgentPath
// peels off. A path with more is refused rather than decoded further: no
// editor URL is encoded that many times, and the work stays linear.
const maxUnescapes = 8

// IsAgentPath reports whether a request for u names the agent's own
// endpoints (Prefix), however the path is spelled: percent-encoded, even
// several times over, with dot segments, repeated or back slashes, in any
// case. The gateway refuses such requests from browsers, and the agent
// sends them to its own handlers, never to the IDE: one check, so that
// the two cannot drift apart.
func IsAgentPath(u *url.URL) bool {
	for _, p := range []string{u.Path, u.RawPath, u.EscapedPath(), u.Opaque} {
		if p != "" && spellsAgentPath(p) {
			return true
		}
	}
	return false
}

// spellsAgentPath reports whether p, or p with up to maxUnescapes layers
// of percent-encoding removed, is an agent path. Invalid escapes ("%zz")
// are left as they are, the valid ones around them decoded.
func spellsAgentPath(p string) bool {
	for i := 0; ; i++ {
		if isAgentPrefix(p) {
			return true
		}
		next := unescape(p)
		if next == p {
			return false
		}
		if i == maxUnescapes {
			return true // still encoded: refuse rather than guess
		}
		p = next
	}
}

// isAgentPrefix reports whether p, cleaned as a path, is Prefix or below.
func isAgentPrefix(p string) bool {
	p = strings.ToLower(path.Clean("/" + strings.ReplaceAll(p, `\`, "/")))
	return p == strings.TrimSuffix(Prefix, "/") || strings.HasPrefix(p, Prefix)
}

// unescape decodes every valid %XX in s, leaving invalid ones.
func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
