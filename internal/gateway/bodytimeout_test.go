package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/config"
)

// sessionCookieHeader signs c in and returns its session cookie as a
// Cookie header value, for raw connections.
func (e *env) sessionCookieHeader(c *http.Client) string {
	e.t.Helper()
	e.login(c, testPassword).Body.Close()
	u := e.front.URL
	req, _ := http.NewRequest("GET", u, nil)
	for _, ck := range c.Jar.Cookies(req.URL) {
		if ck.Name == e.cfg.Session.CookieName {
			return ck.Name + "=" + ck.Value
		}
	}
	e.t.Fatal("no session cookie after signing in")
	return ""
}

// trickler is one connection that sends a request's headers, then its
// body a byte at a time, slowly, until the gateway closes it.
type trickler struct {
	name   string
	closed chan struct{} // closed when the gateway closed the connection
	after  time.Duration // how long the gateway took
	answer string        // the start of what the gateway answered
}

// trickle opens a connection to addr and sends head, then one byte of
// body every `every` (stalling for good after `stallAfter` bytes if it is
// positive), until the connection is closed.
func trickle(t *testing.T, addr, name, head string, every time.Duration, stallAfter int) *trickler {
	t.Helper()
	tr := &trickler{name: name, closed: make(chan struct{})}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	start := time.Now()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	go func() { // the body, a byte at a time
		for sent := 0; stallAfter <= 0 || sent < stallAfter; sent++ {
			chunk := "a"
			if strings.Contains(head, "application/json") {
				chunk = " " // whitespace: the JSON decoder waits for more
			}
			if strings.Contains(head, "chunked") {
				chunk = "1\r\n" + chunk + "\r\n"
			}
			if _, err := io.WriteString(conn, chunk); err != nil {
				return
			}
			select {
			case <-tr.closed:
				return
			case <-time.After(every):
			}
		}
	}()
	go func() { // what comes back, until the connection closes
		var got bytes.Buffer
		_, _ = io.Copy(&got, conn)
		tr.after = time.Since(start)
		tr.answer = got.String()
		close(tr.closed)
	}()
	return tr
}

// TestSlowBodiesAreCut: connections that trickle a request body, or stall
// in it, are closed within the configured bound, whichever route they
// aim at: the sign-in form, the JSON API, the IDE through the proxy,
// requests answered without their body being read.
func TestSlowBodiesAreCut(t *testing.T) {
	const idle = 2 * time.Second
	e := newEnv(t, func(c *config.Config) {
		c.RequestBody.IdleTimeout = config.Duration(idle)
		c.RequestBody.MinRate = 500
	})
	cookie := e.sessionCookieHeader(e.client())
	addr := strings.TrimPrefix(e.front.URL, "http://")

	req := func(method, path, ctype, extra string, chunked bool) string {
		length := "Content-Length: 100000\r\n" // under what the server discards by itself
		if chunked {
			length = "Transfer-Encoding: chunked\r\n"
		}
		return method + " " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: " + ctype + "\r\n" + length + extra + "\r\n"
	}
	form, js := "application/x-www-form-urlencoded", "application/json"
	targets := []struct {
		name, head string
	}{
		{"sign-in form", req("POST", "/login", form, "", false)},
		{"sign-in form, chunked", req("POST", "/login", form, "", true)},
		{"JSON API", req("POST", "/api/v1/auth/refresh", js, "", false)},
		{"IDE upload", req("POST", "/upload", "application/octet-stream", "Cookie: "+cookie+"\r\n", false)},
		{"IDE upload, chunked", req("PUT", "/upload", "application/octet-stream", "Cookie: "+cookie+"\r\n", true)},
		{"IDE, not signed in (body never read)", req("POST", "/x", form, "", false)},
		{"method not allowed (body never read)", req("PATCH", "/login", form, "", false)},
	}
	// 100 connections in all; every fourth stalls for good after ten
	// bytes, the others send a byte every 300 ms: progress, but far below
	// the minimum rate.
	var all []*trickler
	for i := 0; i < 100; i++ {
		tg := targets[i%len(targets)]
		stall := 0
		if i%4 == 3 {
			stall = 10
		}
		all = append(all, trickle(t, addr, fmt.Sprintf("%s #%d (stall=%d)", tg.name, i, stall), tg.head, 300*time.Millisecond, stall))
	}
	// Generous: the bound is idle (2 s) plus what 100 slow bytes earn.
	guard := time.After(60 * time.Second)
	var slowest time.Duration
	for _, tr := range all {
		select {
		case <-tr.closed:
			slowest = max(slowest, tr.after)
		case <-guard:
			for _, tr := range all {
				select {
				case <-tr.closed:
				default:
					t.Errorf("%s: still open after 60 s", tr.name)
				}
			}
			t.FailNow()
		}
	}
	t.Logf("100 trickling connections closed; the last after %s (idle-timeout %s, min-rate 500 B/s)", slowest.Round(time.Millisecond), idle)
	for _, tr := range all {
		// The IDE may answer first (the stand-in does, having seen its
		// upload end early): only the gateway's own answer is checked.
		if strings.Contains(tr.name, "JSON API") && !strings.HasPrefix(tr.answer, "HTTP/1.1 408 ") {
			t.Errorf("%s: answered %q, want 408", tr.name, tr.answer)
		}
	}
}

// slowReader hands out a body in chunks with a pause before each, and one
// longer pause in the middle.
type slowReader struct {
	left, chunk int
	pause       time.Duration
	longPause   time.Duration
	longAt      int
	sent        int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	if s.sent == s.longAt {
		time.Sleep(s.longPause)
	} else {
		time.Sleep(s.pause)
	}
	n := min(len(p), s.chunk, s.left)
	for i := range p[:n] {
		p[i] = 'x'
	}
	s.left -= n
	s.sent += n
	return n, nil
}

// TestUploadsPass: the body limits never cut a real upload, however
// large, nor one that pauses (for less than idle-timeout), nor a request
// whose answer takes longer than idle-timeout after its body arrived; and
// the connection stays usable afterwards.
func TestUploadsPass(t *testing.T) {
	const idle = 3 * time.Second
	e := newEnv(t, func(c *config.Config) {
		c.RequestBody.IdleTimeout = config.Duration(idle)
		c.RequestBody.MinRate = 500
	})
	c := e.client()
	e.login(c, testPassword).Body.Close()
	upload := func(name string, body io.Reader, size int64, query string) {
		t.Helper()
		req, err := http.NewRequest("POST", e.front.URL+"/upload"+query, body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = size
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := readBody(t, resp)
		if want := fmt.Sprintf("IDE:received %d <nil>", size); resp.StatusCode != 200 || got != want {
			t.Fatalf("%s: %d %q, want %q", name, resp.StatusCode, got, want)
		}
		t.Logf("%s: %d bytes in %s", name, size, time.Since(start).Round(time.Millisecond))
	}
	const big = 256 << 20
	upload("256 MiB at full speed", io.LimitReader(zeros{}, big), big, "")
	upload("1 MiB in 64 KiB pieces, one pause of 2 s", &slowReader{left: 1 << 20, chunk: 64 << 10, pause: 100 * time.Millisecond,
		longPause: 2 * time.Second, longAt: 512 << 10}, 1<<20, "")
	upload("unknown length (chunked)", bufio.NewReader(io.LimitReader(zeros{}, 8<<20)), 8<<20, "")
	// The deadline is gone once the body is in: an answer that takes
	// longer than idle-timeout still arrives, on a connection that stays
	// open for the next request.
	upload("answer after idle-timeout", strings.NewReader("hello"), 5, "?then-wait="+(idle+time.Second).String())
	upload("then the next request", strings.NewReader("again"), 5, "")
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
