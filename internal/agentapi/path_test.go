package agentapi

import (
	"bufio"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
)

// agentTargets are request targets that name the agent's endpoints.
var agentTargets = []string{
	"/_agent/health", "/_agent", "/_agent/", "/_AGENT/Stop", "/%5Fagent/stop", "/%5f%61gent/usage",
	"/%255Fagent/stop", "/%25255Fagent/stop", "/x/../_agent/stop", "//_agent/stop", "/./_agent/activity",
	`/\_agent\stop`, "/%5C_agent/stop", "/_agent%2Fstop", "http://evil.example/_agent/stop",
	"/x/..%2F_agent/stop", "/_agent/health?x=1", "/%2525zz/..%2F_agent",
}

// otherTargets are the IDE's.
var otherTargets = []string{
	"/", "/stable/static/out/vs/workbench.js", "/vscode-remote-resource?path=/home/_agent/x", "/_agents", "/x_agent/stop",
	"/files/100%25", "/%41gent", "/agent/health", "/_agen/t", "*",
}

func TestIsAgentPath(t *testing.T) {
	for _, target := range agentTargets {
		r := mustParse(t, target)
		if !IsAgentPath(r.URL) {
			t.Errorf("IsAgentPath(%q) = false", target)
		}
	}
	for _, target := range otherTargets {
		r := mustParse(t, target)
		if IsAgentPath(r.URL) {
			t.Errorf("IsAgentPath(%q) = true", target)
		}
	}
	// Encoded more times than anyone does: refused, without decoding on.
	deep := "/_agent/stop"
	for i := 0; i < 12; i++ {
		deep = strings.ReplaceAll(deep, "%", "%25")
		deep = strings.Replace(deep, "_", "%5F", 1)
	}
	if r := mustParse(t, deep); !IsAgentPath(r.URL) {
		t.Errorf("IsAgentPath(%q) = false", deep)
	}
}

func mustParse(t testing.TB, target string) *http.Request {
	t.Helper()
	r, err := parseTarget(target)
	if err != nil {
		t.Fatalf("%q: %v", target, err)
	}
	return r
}

// parseTarget reads a request line as the gateway's HTTP server does.
func parseTarget(target string) (*http.Request, error) {
	return http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: gw.example\r\n\r\n")))
}

// decodesToAgentPath is the property's side of the check, written apart
// from IsAgentPath: p names the agent when it, or what up to three rounds
// of percent-decoding make of it, is /_agent or below it once dot
// segments, back slashes and case are set aside.
func decodesToAgentPath(p string) bool {
	for i := 0; i <= 3; i++ {
		c := strings.ToLower(path.Clean("/" + strings.ReplaceAll(p, `\`, "/")))
		if c == "/_agent" || strings.HasPrefix(c, "/_agent/") {
			return true
		}
		u, err := url.PathUnescape(p)
		if err != nil || u == p {
			return false
		}
		p = u
	}
	return false
}

// FuzzIsAgentPath: a request whose path decodes to the agent's endpoints,
// in any spelling, is always recognised (the gateway refuses it, the agent
// never hands it to the IDE); and a plain path with no "agent" in it never
// is.
func FuzzIsAgentPath(f *testing.F) {
	for _, s := range append(agentTargets, otherTargets...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		r, err := parseTarget(target)
		if err != nil {
			return // the server answers 400 itself
		}
		got := IsAgentPath(r.URL)
		for _, p := range []string{r.URL.Path, r.URL.RawPath, r.URL.EscapedPath()} {
			if decodesToAgentPath(p) && !got {
				t.Fatalf("target %q (path %q) decodes to the agent's endpoints, not recognised", target, p)
			}
		}
		for _, name := range []string{PathHealth, PathActivity, PathUsage, PathStop} {
			if r.URL.Path == name && !got {
				t.Fatalf("target %q is the agent's %s, not recognised", target, name)
			}
		}
		plain := !strings.ContainsAny(target, `%\`) && !strings.Contains(strings.ToLower(r.URL.Path), "agent")
		if plain && got {
			t.Fatalf("target %q (path %q) has nothing of the agent's, recognised", target, r.URL.Path)
		}
	})
}
