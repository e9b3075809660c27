package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/gorilla/websocket"
)

// guard bounds a wait that only a bug makes long (a deadlock), so that such
// a bug fails the test with a message instead of hanging it.
const guard = 30 * time.Second

type fixture struct {
	reg   *Registry
	proxy *Proxy
	front *httptest.Server
}

// newFixture puts a Proxy in front of target; the front server treats every
// request as owned by the "owner" query parameter (default "s1").
func newFixture(t *testing.T, target *Target, mutate ...func(*Config, *RegistryConfig)) *fixture {
	t.Helper()
	rc := RegistryConfig{}
	cfg := Config{
		Logger:       testenv.Logger(t),
		StripCookies: []string{"codehub_session"},
		CheckOrigin: func(r *http.Request) bool {
			o := r.Header.Get("Origin")
			return o == "" || strings.HasSuffix(o, "://"+r.Host)
		},
		SecureResponse: func(h http.Header) { h.Set("X-Frame-Options", "SAMEORIGIN") },
	}
	for _, m := range mutate {
		m(&cfg, &rc)
	}
	f := &fixture{reg: NewRegistry(rc)}
	cfg.Conns = f.reg
	f.proxy = New(cfg)
	f.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		owner := r.URL.Query().Get("owner")
		if owner == "" {
			owner = "s1"
		}
		f.proxy.Serve(w, r, target, Client{Owner: owner, Addr: "198.51.100.7", Proto: "https"})
	}))
	t.Cleanup(func() {
		f.front.Close()
		f.reg.Stop()
	})
	return f
}

func tcpTarget(t *testing.T, h http.Handler) (*Target, *httptest.Server) {
	up := httptest.NewServer(h)
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	return &Target{Key: up.URL, URL: u}, up
}

func TestHeadersAndCookies(t *testing.T) {
	got := make(chan *http.Request, 1)
	target, _ := tcpTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Clone(context.Background())
		w.Header().Set("X-Upstream", "yes")
		io.WriteString(w, "hello from the IDE")
	}))
	target.Header = http.Header{"X-Workspace-Secret": {"s3cret"}}
	f := newFixture(t, target)

	req, _ := http.NewRequest("GET", f.front.URL+"/some/path?x=1", nil)
	req.Host = "ide.example.com"
	req.Header.Set("Cookie", "codehub_session=TOKEN; vscode-tkn=keep; other=1")
	req.Header.Set("Authorization", "Bearer TOKEN")
	req.Header.Set("X-Forwarded-For", "6.6.6.6") // spoofed by the client
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from the IDE" || resp.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("response: %q %v", body, resp.Header)
	}
	if resp.Header.Get("X-Frame-Options") != "SAMEORIGIN" {
		t.Errorf("security headers not applied to the proxied response")
	}
	up := <-got
	if up.Host != "ide.example.com" || up.Header.Get("X-Forwarded-Host") != "ide.example.com" {
		t.Errorf("Host %q / X-Forwarded-Host %q, want the browser's host", up.Host, up.Header.Get("X-Forwarded-Host"))
	}
	if up.Header.Get("X-Forwarded-For") != "198.51.100.7" || up.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("forwarded: %q %q", up.Header.Get("X-Forwarded-For"), up.Header.Get("X-Forwarded-Proto"))
	}
	if c := up.Header.Get("Cookie"); strings.Contains(c, "codehub_session") || !strings.Contains(c, "vscode-tkn=keep") {
		t.Errorf("Cookie upstream = %q: the gateway's cookie must be stripped, others kept", c)
	}
	if up.Header.Get("Authorization") != "" {
		t.Errorf("Authorization forwarded to the IDE")
	}
	if up.Header.Get("X-Workspace-Secret") != "s3cret" || up.URL.RawQuery != "x=1" || up.URL.Path != "/some/path" {
		t.Errorf("target header or URL lost: %v %v", up.Header, up.URL)
	}
}

// TestStreamingResponse: the first chunk reaches the client while the IDE
// is still writing, i.e. the proxy flushes instead of buffering.
func TestStreamingResponse(t *testing.T) {
	release := make(chan struct{})
	target, _ := tcpTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: second\n\n")
	}))
	f := newFixture(t, target)
	resp, err := http.Get(f.front.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 64)
	n, err := readWithGuard(resp.Body, buf)
	if err != nil {
		t.Fatalf("first chunk did not arrive before the response ended: %v", err)
	}
	if !strings.Contains(string(buf[:n]), "first") {
		t.Fatalf("got %q", buf[:n])
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(rest), "second") {
		t.Fatalf("rest = %q", rest)
	}
}

func readWithGuard(r io.Reader, buf []byte) (int, error) {
	type res struct {
		n   int
		err error
	}
	c := make(chan res, 1)
	go func() { n, err := r.Read(buf); c <- res{n, err} }()
	select {
	case x := <-c:
		return x.n, x.err
	case <-time.After(guard):
		return 0, errors.New("read blocked: response was buffered")
	}
}

// TestStreamingUpload: the IDE sees the first bytes of a large upload
// before the client has sent the rest, i.e. the body is not buffered.
func TestStreamingUpload(t *testing.T) {
	sawFirst := make(chan struct{})
	target, _ := tcpTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1024)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		close(sawFirst)
		n, _ := io.Copy(io.Discard, r.Body)
		io.WriteString(w, "received "+strconv.Itoa(int(n)+1024))
	}))
	f := newFixture(t, target)
	pr, pw := io.Pipe()
	respc := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest("PUT", f.front.URL+"/upload", pr)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			respc <- nil
			return
		}
		respc <- resp
	}()
	pw.Write(bytes.Repeat([]byte("a"), 1024))
	select {
	case <-sawFirst:
	case <-time.After(guard):
		t.Fatal("the IDE did not see the start of the upload: the proxy buffers request bodies")
	}
	chunk := bytes.Repeat([]byte("b"), 64*1024)
	for i := 0; i < 16; i++ {
		pw.Write(chunk)
	}
	pw.Close()
	resp := <-respc
	if resp == nil {
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "received "+strconv.Itoa(1024+16*64*1024) {
		t.Fatalf("got %q", body)
	}
}

func TestUnreachableUpstream(t *testing.T) {
	var called bool
	target := &Target{Key: "dead", URL: &url.URL{Scheme: "http", Host: "127.0.0.1:1"}}
	f := newFixture(t, target, func(c *Config, _ *RegistryConfig) {
		c.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			called = true
			http.Error(w, "workspace down", http.StatusBadGateway)
		}
	})
	resp, err := http.Get(f.front.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !called {
		t.Fatalf("status %d, handler called %v", resp.StatusCode, called)
	}
}

// echoWS is an upstream that echoes every message and reports the close
// code it receives.
func echoWS(t *testing.T, closes chan<- int, seen chan<- *http.Request) http.Handler {
	up := websocket.Upgrader{Subprotocols: []string{"vscode"}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen != nil {
			seen <- r.Clone(context.Background())
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) && closes != nil {
					closes <- ce.Code
				}
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	})
}

func wsURL(front, path string) string { return "ws" + strings.TrimPrefix(front, "http") + path }

func dialWS(t *testing.T, u string, h http.Header) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"vscode"}, HandshakeTimeout: guard}
	c, resp, err := d.Dial(u, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", u, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestWebSocketRelay(t *testing.T) {
	closes := make(chan int, 1)
	seen := make(chan *http.Request, 1)
	target, _ := tcpTarget(t, echoWS(t, closes, seen))
	f := newFixture(t, target)
	front, _ := url.Parse(f.front.URL)
	c := dialWS(t, wsURL(f.front.URL, "/ws?reconnectionToken=abc"), http.Header{
		"Origin": {"http://" + front.Host},
		"Cookie": {"codehub_session=TOKEN; keep=1"},
	})
	if c.Subprotocol() != "vscode" {
		t.Errorf("subprotocol %q not negotiated through the proxy", c.Subprotocol())
	}
	up := <-seen
	if up.URL.RawQuery != "reconnectionToken=abc" || up.Header.Get("X-Forwarded-For") != "198.51.100.7" {
		t.Errorf("upstream request: %v %v", up.URL, up.Header)
	}
	if strings.Contains(up.Header.Get("Cookie"), "codehub_session") || up.Header.Get("Origin") != "http://"+front.Host {
		t.Errorf("upstream headers: cookie %q origin %q", up.Header.Get("Cookie"), up.Header.Get("Origin"))
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 64*1024) // 1 MiB, several frames
	for _, m := range []struct {
		mt   int
		data []byte
	}{{websocket.TextMessage, []byte("hello")}, {websocket.BinaryMessage, []byte{0, 1, 2, 255}}, {websocket.BinaryMessage, big}} {
		if err := c.WriteMessage(m.mt, m.data); err != nil {
			t.Fatal(err)
		}
		mt, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if mt != m.mt || !bytes.Equal(got, m.data) {
			t.Fatalf("echo mismatch: type %d len %d", mt, len(got))
		}
	}
	if n := f.reg.OwnerCount("s1"); n != 1 {
		t.Fatalf("registry counts %d sockets for s1", n)
	}
	// A close from the browser reaches the IDE with its code.
	c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "bye"))
	select {
	case code := <-closes:
		if code != 4001 {
			t.Fatalf("IDE saw close code %d, want 4001", code)
		}
	case <-time.After(guard):
		t.Fatal("close never reached the IDE")
	}
	waitFor(t, func() bool { return f.reg.Count() == 0 }, "registry to drop the closed socket")
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWebSocketCrossOriginRefused(t *testing.T) {
	dialed := false
	target, _ := tcpTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { dialed = true }))
	f := newFixture(t, target)
	d := websocket.Dialer{HandshakeTimeout: guard}
	_, resp, err := d.Dial(wsURL(f.front.URL, "/"), http.Header{"Origin": {"https://evil.example"}})
	if err == nil {
		t.Fatal("cross-origin upgrade succeeded")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("want 403, got %v", resp)
	}
	if dialed {
		t.Fatal("the IDE was contacted for a refused upgrade")
	}
}

func TestWebSocketUpstreamRefusal(t *testing.T) {
	target, _ := tcpTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
	}))
	f := newFixture(t, target)
	d := websocket.Dialer{HandshakeTimeout: guard}
	_, resp, err := d.Dial(wsURL(f.front.URL, "/"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("want the IDE's 403 passed on, got %v %v", err, resp)
	}
}

// TestCloseOwner: revoking a session closes its sockets (and only its) with
// the revocation code.
func TestCloseOwner(t *testing.T) {
	closes := make(chan int, 4)
	target, _ := tcpTarget(t, echoWS(t, closes, nil))
	f := newFixture(t, target)
	a := dialWS(t, wsURL(f.front.URL, "/?owner=alice"), nil)
	b := dialWS(t, wsURL(f.front.URL, "/?owner=bob"), nil)
	waitFor(t, func() bool { return f.reg.Count() == 2 }, "two sockets")
	if n := f.reg.CloseOwner("alice", CloseRevoked, "signed out"); n != 1 {
		t.Fatalf("CloseOwner closed %d sockets", n)
	}
	_, _, err := a.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseRevoked || ce.Text != "signed out" {
		t.Fatalf("alice got %v, want close %d", err, CloseRevoked)
	}
	// Bob's socket still works.
	if err := b.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := b.ReadMessage(); err != nil || string(msg) != "still here" {
		t.Fatalf("bob: %q %v", msg, err)
	}
}

// TestDeadClientReaped: a browser that stops answering pings is cut.
func TestDeadClientReaped(t *testing.T) {
	target, _ := tcpTarget(t, echoWS(t, nil, nil))
	f := newFixture(t, target, func(_ *Config, rc *RegistryConfig) {
		rc.PingInterval = 20 * time.Millisecond
		rc.PongWait = 100 * time.Millisecond
	})
	// A raw client that completes the handshake, then never reads: it
	// cannot answer pings.
	d := websocket.Dialer{HandshakeTimeout: guard}
	c, _, err := d.Dial(wsURL(f.front.URL, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, func() bool { return f.reg.Count() == 1 }, "socket to register")
	waitFor(t, func() bool { return f.reg.Count() == 0 }, "silent socket to be reaped")
}

func TestUnixSocketTarget(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ide.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: echoWS(t, nil, nil)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	target := &Target{Key: "unix", URL: &url.URL{Scheme: "http", Host: "ide"},
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
	f := newFixture(t, target)
	c := dialWS(t, wsURL(f.front.URL, "/"), nil)
	c.WriteMessage(websocket.TextMessage, []byte("over a unix socket"))
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "over a unix socket" {
		t.Fatalf("%q %v", msg, err)
	}
}

func TestCloseAllWaits(t *testing.T) {
	target, _ := tcpTarget(t, echoWS(t, nil, nil))
	f := newFixture(t, target)
	var wg sync.WaitGroup
	conns := []*websocket.Conn{dialWS(t, wsURL(f.front.URL, "/?owner=a"), nil), dialWS(t, wsURL(f.front.URL, "/?owner=b"), nil)}
	for _, c := range conns {
		wg.Add(1)
		go func(c *websocket.Conn) {
			defer wg.Done()
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					if !errors.As(err, &ce) || ce.Code != CloseGoingAway {
						t.Errorf("client got %v, want close 1001", err)
					}
					return
				}
			}
		}(c)
	}
	waitFor(t, func() bool { return f.reg.Count() == 2 }, "two sockets")
	done := make(chan struct{})
	f.reg.CloseAll(CloseGoingAway, "server shutting down", done)
	wg.Wait()
	if n := f.reg.Count(); n != 0 {
		t.Fatalf("%d sockets left after CloseAll", n)
	}
}

func TestInjectHTML(t *testing.T) {
	var sawEncoding string
	target, _ := tcpTarget(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawEncoding = r.Header.Get("Accept-Encoding")
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, "<html><HEAD><title>IDE</title></HEAD><body>x</body></html>")
		default:
			w.Header().Set("Content-Type", "application/javascript")
			io.WriteString(w, "console.log('</head>')")
		}
	}))
	f := newFixture(t, target, func(c *Config, _ *RegistryConfig) {
		c.InjectHTML = `<script src="/_codehub/static/idle.js" defer></script>`
	})
	get := func(path string, hdr map[string]string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", f.front.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	resp, body := get("/", map[string]string{"Sec-Fetch-Mode": "navigate", "Accept-Encoding": "gzip"})
	want := `<html><HEAD><title>IDE</title><script src="/_codehub/static/idle.js" defer></script></HEAD><body>x</body></html>`
	if body != want || resp.ContentLength != int64(len(want)) {
		t.Fatalf("navigation page:\n got %q (length %d)\nwant %q", body, resp.ContentLength, want)
	}
	if sawEncoding != "" {
		t.Errorf("Accept-Encoding %q reached the IDE for a page to edit", sawEncoding)
	}
	if _, body := get("/app.js", map[string]string{"Sec-Fetch-Mode": "no-cors"}); body != "console.log('</head>')" {
		t.Errorf("a script was edited: %q", body)
	}
	if _, body := get("/", map[string]string{"Sec-Fetch-Mode": "cors"}); strings.Contains(body, "idle.js") {
		t.Errorf("a fetch (not a navigation) was edited")
	}
}
