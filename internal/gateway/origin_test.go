package gateway

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/codehub-dev/codehub/internal/config"
	"github.com/gorilla/websocket"
)

// wsDialWith opens a WebSocket to the gateway with extra headers.
func wsDialWith(t *testing.T, e *env, c *http.Client, hdr map[string]string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	u, _ := url.Parse(e.front.URL)
	d := websocket.Dialer{Jar: c.Jar, HandshakeTimeout: 30e9}
	h := http.Header{}
	for k, v := range hdr {
		h.Set(k, v)
	}
	return d.Dial("ws://"+u.Host+"/?reconnectionToken=1", h)
}

// TestWebSocketOriginScheme: the Origin of a WebSocket must be the
// gateway's own origin, scheme and port included: a page on http://host
// (which anyone on the network can write) may not drive the editor of
// https://host, nor the other way round. The gateway's scheme is what the
// browser used: TLS, or a trusted proxy's X-Forwarded-Proto.
func TestWebSocketOriginScheme(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.0/8", "::1"} })
	c := e.client()
	e.login(c, testPassword).Body.Close()
	host := strings.TrimPrefix(e.front.URL, "http://")
	_, port, _ := strings.Cut(host, ":")

	cases := []struct {
		name   string
		hdr    map[string]string
		wantOK bool
	}{
		{"plain HTTP, own origin", map[string]string{"Origin": "http://" + host}, true},
		{"plain HTTP, upper case", map[string]string{"Origin": "HTTP://" + strings.ToUpper(host)}, true},
		{"plain HTTP, https origin", map[string]string{"Origin": "https://" + host}, false},
		{"plain HTTP, other port", map[string]string{"Origin": "http://127.0.0.1:1" + port}, false},
		{"plain HTTP, no port", map[string]string{"Origin": "http://127.0.0.1"}, false},
		{"HTTPS proxy, own origin", map[string]string{"Origin": "https://" + host, "X-Forwarded-Proto": "https"}, true},
		{"HTTPS proxy, http origin", map[string]string{"Origin": "http://" + host, "X-Forwarded-Proto": "https"}, false},
		{"HTTP proxy, https origin", map[string]string{"Origin": "https://" + host, "X-Forwarded-Proto": "http"}, false},
		{"origin with a path", map[string]string{"Origin": "http://" + host + "/x"}, false},
		{"null origin", map[string]string{"Origin": "null"}, false},
		{"ws scheme", map[string]string{"Origin": "ws://" + host}, false},
		{"no origin (not a browser)", map[string]string{}, true},
	}
	for _, tc := range cases {
		ws, resp, err := wsDialWith(t, e, c, tc.hdr)
		if tc.wantOK {
			if err != nil {
				t.Errorf("%s: refused: %v %v", tc.name, err, resp)
				continue
			}
			ws.Close()
			continue
		}
		if err == nil {
			ws.Close()
			t.Errorf("%s: accepted", tc.name)
		} else if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %v %v, want 403", tc.name, err, resp)
		}
	}
}

// TestWebSocketOriginSchemeTLS: the same over real TLS.
func TestWebSocketOriginSchemeTLS(t *testing.T) {
	e := newEnv(t)
	tlsFront := httptest.NewTLSServer(e.srv)
	t.Cleanup(tlsFront.Close)
	host := strings.TrimPrefix(tlsFront.URL, "https://")
	c := tlsFront.Client()
	c.Jar = e.client().Jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	e.front = tlsFront
	e.login(c, testPassword).Body.Close()

	d := websocket.Dialer{Jar: c.Jar, TLSClientConfig: tlsFront.Client().Transport.(*http.Transport).TLSClientConfig, HandshakeTimeout: 30e9}
	for origin, wantOK := range map[string]bool{"https://" + host: true, "http://" + host: false, "https://" + host + ":443": false} {
		ws, resp, err := d.Dial("wss://"+host+"/?reconnectionToken=1", http.Header{"Origin": {origin}})
		switch {
		case wantOK && err != nil:
			t.Errorf("origin %s refused: %v %v", origin, err, resp)
		case !wantOK && err == nil:
			ws.Close()
			t.Errorf("origin %s accepted", origin)
		case !wantOK && (resp == nil || resp.StatusCode != http.StatusForbidden):
			t.Errorf("origin %s: %v %v, want 403", origin, err, resp)
		case err == nil:
			ws.Close()
		}
	}
}

// TestTrustedOriginsScheme: a trusted origin that names a scheme allows that
// scheme only; a bare host allows the gateway's own scheme.
func TestTrustedOriginsScheme(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.TrustedOrigins = []string{"https://ide.example.com", "editor.example.com", "https://alt.example.com:8443"}
	})
	c := e.client()
	e.login(c, testPassword).Body.Close()
	for origin, wantOK := range map[string]bool{
		"https://ide.example.com":      true,
		"https://ide.example.com:443":  true,
		"http://ide.example.com":       false,
		"http://editor.example.com":    true, // the gateway is served over http here
		"https://editor.example.com":   false,
		"https://alt.example.com:8443": true,
		"https://alt.example.com":      false,
		"https://evil.example.com":     false,
	} {
		// The stand-in IDE checks Origin against Host itself, as
		// code-server does: what matters here is whether the gateway
		// let the upgrade through to it.
		ws, resp, err := wsDialWith(t, e, c, map[string]string{"Origin": origin})
		if err == nil {
			ws.Close()
		}
		refused := err != nil && resp != nil && resp.StatusCode == http.StatusForbidden &&
			strings.Contains(readBody(t, resp), "cross-origin WebSocket refused")
		if refused == wantOK {
			t.Errorf("origin %s: refused by the gateway=%v, want %v (%v)", origin, refused, !wantOK, err)
		}
	}
	// Forms take the same entries.
	for origin, want := range map[string]int{"https://ide.example.com": http.StatusSeeOther, "http://ide.example.com": http.StatusForbidden} {
		c := e.client()
		tok := e.loginForm(c)
		resp := e.do(c, "POST", "/login", url.Values{"csrf": {tok}, "password": {testPassword}},
			map[string]string{"Origin": origin, "Sec-Fetch-Site": "cross-site"})
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("form from %s: %d, want %d", origin, resp.StatusCode, want)
		}
	}
}

// TestFormOriginScheme: a browser that sends no Sec-Fetch-Site is judged
// by its Origin, scheme included.
func TestFormOriginScheme(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.TrustedProxies = []string{"127.0.0.0/8", "::1"} })
	host := strings.TrimPrefix(e.front.URL, "http://")
	cases := []struct {
		hdr  map[string]string
		want int
	}{
		{map[string]string{"Origin": "http://" + host}, http.StatusSeeOther},
		{map[string]string{"Origin": "https://" + host}, http.StatusForbidden},
		{map[string]string{"Origin": "https://" + host, "X-Forwarded-Proto": "https"}, http.StatusSeeOther},
		{map[string]string{"Origin": "http://" + host, "X-Forwarded-Proto": "https"}, http.StatusForbidden},
		// The browser's own word: Sec-Fetch-Site decides when present.
		{map[string]string{"Origin": "http://" + host, "Sec-Fetch-Site": "same-origin"}, http.StatusSeeOther},
		{map[string]string{"Origin": "https://" + host, "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
	}
	for _, tc := range cases {
		c := e.client()
		tok := e.loginForm(c)
		resp := e.do(c, "POST", "/login", url.Values{"csrf": {tok}, "password": {testPassword}}, tc.hdr)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%v: %d, want %d", tc.hdr, resp.StatusCode, tc.want)
		}
	}
}

func TestParseOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"http://Example.COM":        "http://example.com:80",
		"https://example.com":       "https://example.com:443",
		"https://example.com:443":   "https://example.com:443",
		"https://example.com:8443/": "https://example.com:8443",
		"http://[::1]:8080":         "http://[::1]:8080",
		"http://[::1]":              "http://[::1]:80",
		"http://127.0.0.1:0080":     "http://127.0.0.1:80",
	} {
		o, ok := parseOrigin(in)
		if !ok || o.String() != want {
			t.Errorf("parseOrigin(%q) = %v %v, want %s", in, o, ok, want)
		}
	}
	for _, in := range []string{"", "null", "example.com", "ftp://example.com", "ws://example.com", "http://",
		"http://user@example.com", "http://example.com/path", "http://example.com?x", "http://example.com:",
		"http://example.com:x", "http://::1", "http://[::1", "http://[:]", "http://[example.com]", "http://exa mple.com", "http://example.com:123456"} {
		if o, ok := parseOrigin(in); ok {
			t.Errorf("parseOrigin(%q) = %v, want refused", in, o)
		}
	}
}
