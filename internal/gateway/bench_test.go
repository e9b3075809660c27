package gateway

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// BenchmarkAuthenticatedRequest measures signed-in HTTP requests through
// the gateway to the IDE and back, over loopback TCP, in parallel.
func BenchmarkAuthenticatedRequest(b *testing.B) {
	e := newEnv(b)
	c := e.client()
	e.login(c, testPassword).Body.Close()
	cookie := e.sessionCookie(c)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, _ := http.NewRequest("GET", e.front.URL+"/static/app.js", nil)
		req.AddCookie(cookie)
		for pb.Next() {
			resp, err := tr.RoundTrip(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkWebSocketRoundTrip measures one small message to the IDE and
// its echo back, through the gateway's WebSocket relay.
func BenchmarkWebSocketRoundTrip(b *testing.B) {
	e := newEnv(b)
	c := e.client()
	e.login(c, testPassword).Body.Close()
	d := websocket.Dialer{Jar: c.Jar}
	ws, _, err := d.Dial("ws"+strings.TrimPrefix(e.front.URL, "http")+"/", http.Header{"Origin": {e.front.URL}})
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Close()
	msg := []byte(strings.Repeat("x", 64))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := ws.WriteMessage(websocket.TextMessage, msg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSessionLookup is the per-request authentication cost: cookie to
// live session.
func BenchmarkSessionLookup(b *testing.B) {
	e := newEnv(b)
	c := e.client()
	e.login(c, testPassword).Body.Close()
	req, _ := http.NewRequest("GET", e.front.URL+"/", nil)
	req.AddCookie(e.sessionCookie(c))
	b.ReportAllocs()
	for b.Loop() {
		if p, err := e.srv.principal(req); p == nil || err != nil {
			b.Fatal("no session")
		}
	}
}

func (e *env) sessionCookie(c *http.Client) *http.Cookie {
	u, _ := url.Parse(e.front.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == e.cfg.Session.CookieName {
			return ck
		}
	}
	e.t.Fatal("no session cookie")
	return nil
}
