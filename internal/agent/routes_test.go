package agent

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/gorilla/websocket"
)

// apiError is the body of every error the agent answers itself.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// checkRefused sends requests without the secret, and with wrong ones, to
// every kind of path, and wants 401 with a JSON error for each.
func checkRefused(t *testing.T, r *running) {
	t.Helper()
	paths := []struct{ method, path string }{
		{"GET", agentapi.PathHealth}, {"GET", agentapi.PathActivity}, {"GET", agentapi.PathUsage},
		{"POST", agentapi.PathStop}, {"GET", "/_agent/nothing"}, {"GET", "/"}, {"GET", "/stable/static/x.js"},
		{"POST", "/anything"},
	}
	for _, secret := range []string{"", "wrong", r.Secret + "x", r.Secret[:len(r.Secret)-1], strings.ToUpper(r.Secret)} {
		for _, p := range paths {
			req, _ := http.NewRequest(p.method, r.URL+p.path, nil)
			if secret != "" {
				req.Header.Set(agentapi.SecretHeader, secret)
			}
			resp, err := r.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body apiError
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || err != nil || body.Error.Code != "unauthorized" {
				t.Errorf("%s %s with secret %q: %d, %+v (%v); want 401 unauthorized", p.method, p.path, secret, resp.StatusCode, body, err)
			}
		}
		h := http.Header{"Origin": {"http://example.com"}}
		if secret != "" {
			h.Set(agentapi.SecretHeader, secret)
		}
		c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(r.URL, "http")+"/?reconnectionToken=x&reconnection=false&skipWebSocketFrames=false", h)
		if err == nil {
			c.Close()
			t.Errorf("WebSocket upgrade with secret %q succeeded", secret)
		} else if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("WebSocket upgrade with secret %q: %v, want 401", secret, err)
		}
	}
}

// TestRoutes runs the agent in front of a stand-in IDE: what is refused,
// what is the agent's own, and what reaches the IDE how.
func TestRoutes(t *testing.T) {
	t.Parallel()
	r := startFakeAgent(t, 0)
	checkRefused(t, r)
	r.waitRunning(t)

	for _, tc := range []struct{ method, path string }{{"GET", "/_agent/nothing"}, {"GET", agentapi.PathStop}, {"POST", agentapi.PathHealth}} {
		resp := r.do(t, tc.method, tc.path)
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d, want 404 or 405", tc.method, tc.path, resp.StatusCode)
		}
	}

	// HTTP: the gateway's Host and X-Forwarded-* pass unchanged; the secret
	// does not pass.
	fwd := http.Header{
		"X-Forwarded-For":   {"203.0.113.9, 198.51.100.2"},
		"X-Forwarded-Host":  {"ide.example.com"},
		"X-Forwarded-Proto": {"https"},
		"Origin":            {"https://ide.example.com"},
	}
	req, _ := http.NewRequest("GET", r.URL+"/echo?x=1", nil)
	req.Host = "ide.example.com"
	for k, v := range fwd {
		req.Header[k] = v
	}
	req.Header.Set(agentapi.SecretHeader, r.Secret)
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got seen
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /echo: %d %v", resp.StatusCode, err)
	}
	checkForwarded(t, "HTTP", got, fwd)

	// WebSocket: the same, whatever the Origin.
	h := fwd.Clone()
	h.Set("Origin", "https://somewhere-else.example")
	h.Set(agentapi.SecretHeader, r.Secret)
	h.Set("Host", "ide.example.com")
	d := websocket.Dialer{HandshakeTimeout: guard}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(r.URL, "http")+"/?reconnectionToken=x", h)
	if err != nil {
		t.Fatalf("WebSocket through the agent: %v", err)
	}
	defer c.Close()
	if err := c.ReadJSON(&got); err != nil {
		t.Fatal(err)
	}
	checkForwarded(t, "WebSocket", got, fwd)
	waitFor(t, "the WebSocket to count", func() bool { return get[agentapi.Activity](t, r, agentapi.PathActivity).Connections == 1 })
	before := get[agentapi.Activity](t, r, agentapi.PathActivity).LastInput
	if err := c.WriteMessage(websocket.BinaryMessage, []byte(capturedKeepAlive)); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != capturedKeepAlive {
		t.Fatalf("echo: %q %v", msg, err)
	}
	if after := get[agentapi.Activity](t, r, agentapi.PathActivity).LastInput; !after.Equal(before) {
		t.Errorf("a keep-alive moved LastInput from %v to %v", before, after)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("typed")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if after := get[agentapi.Activity](t, r, agentapi.PathActivity).LastInput; !after.After(before) {
		t.Errorf("a text message left LastInput at %v", after)
	}
}

func checkForwarded(t *testing.T, what string, got seen, fwd http.Header) {
	t.Helper()
	if got.Host != "ide.example.com" {
		t.Errorf("%s: the IDE saw Host %q", what, got.Host)
	}
	for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		if g := strings.Join(got.Header[k], ", "); g != fwd.Get(k) {
			t.Errorf("%s: the IDE saw %s %q, want %q as the gateway sent it", what, k, g, fwd.Get(k))
		}
	}
	for k := range got.Header {
		if http.CanonicalHeaderKey(k) == agentapi.SecretHeader {
			t.Errorf("%s: the secret reached the IDE", what)
		}
	}
}

// TestControlEndpointsNeedControlHeader: a person's proxied traffic
// carries the workspace secret, but never the control header; with the
// secret alone, the agent's endpoints are not found, however spelled.
func TestControlEndpointsNeedControlHeader(t *testing.T) {
	t.Parallel()
	r := startFakeAgent(t, 0)
	r.waitRunning(t)
	for _, p := range []string{agentapi.PathHealth, agentapi.PathStop, "/%5Fagent/stop", "/_AGENT/health", "/x/../_agent/stop"} {
		for _, control := range []string{"", "wrong"} {
			req, _ := http.NewRequest("POST", r.URL+p, nil)
			req.Header.Set(agentapi.SecretHeader, r.Secret)
			if control != "" {
				req.Header.Set(agentapi.ControlHeader, control)
			}
			resp, err := r.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s with control %q: %d, want 404", p, control, resp.StatusCode)
			}
		}
	}
	if resp := r.do(t, "GET", agentapi.PathHealth); resp.StatusCode != http.StatusOK {
		t.Fatalf("health with the control header: %d", resp.StatusCode)
	}
}

// TestIDEStarting checks the answers while the IDE is not ready: health
// says starting, and IDE requests wait a little, then get 503.
func TestIDEStarting(t *testing.T) {
	t.Parallel()
	r := startFakeAgent(t, 3*time.Second, func(c *Config) { c.IDEWait = 200 * time.Millisecond })
	if h := get[agentapi.Health](t, r, agentapi.PathHealth); h.Status != "starting" {
		t.Errorf("health before the IDE answers: %+v", h)
	}
	resp := r.do(t, "GET", "/")
	var body apiError
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusServiceUnavailable || body.Error.Code != "ide_starting" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("GET / while starting: %d %+v", resp.StatusCode, body)
	}
	r.waitRunning(t)
	resp = r.do(t, "GET", "/echo")
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /echo once running: %d %s", resp.StatusCode, b)
	}
}
