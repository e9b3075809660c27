// Package proxy forwards a client's HTTP requests and WebSockets to its IDE.
// HTTP goes through httputil.ReverseProxy with one pooled transport per
// upstream and no buffering of bodies; WebSockets are relayed message by
// message, so the gateway can check their Origin, keep them alive with
// pings, and close them with a proper close frame on logout or shutdown.
package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
)

// Target is one upstream IDE.
type Target struct {
	// Key identifies the upstream for connection pooling; targets with the
	// same key must be interchangeable.
	Key string
	// URL gives the scheme (http or https) and the host of the upstream.
	URL *url.URL
	// Dial, when set, opens connections to the upstream (a unix socket,
	// say); otherwise URL.Host is dialled over TCP.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Header is added to every upstream request (a workspace secret, say).
	Header http.Header
}

// Client describes the browser side of a request as the gateway
// established it, for the X-Forwarded-* headers sent upstream.
type Client struct {
	// Owner identifies who the connection belongs to (a session id), so
	// that its WebSockets can be closed on logout.
	Owner string
	// Addr is the client's address, ForwardedFor the chain before it.
	Addr         string
	ForwardedFor string
	// Proto is "http" or "https" as the browser sees the gateway.
	Proto string
}

// Config configures a Proxy.
type Config struct {
	Logger hclog.Logger
	// StripCookies are cookie names (the gateway's own) never sent upstream.
	StripCookies []string
	// StripHeaders are request headers never passed on from clients.
	StripHeaders []string
	// CheckOrigin approves the Origin of a WebSocket upgrade.
	CheckOrigin func(r *http.Request) bool
	// SecureResponse adds headers to every proxied HTTP response.
	SecureResponse func(h http.Header)
	// ErrorHandler answers when the upstream cannot be reached.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
	// Conns tracks WebSockets; required.
	Conns *Registry
	// DialTimeout bounds connecting to an upstream (default 10s).
	DialTimeout time.Duration
	// InjectHTML, when set, is inserted before </head> of the HTML pages
	// browsers navigate to (the IDE's workbench), e.g. a <script src>.
	InjectHTML string
}

// Proxy forwards requests to targets. Safe for concurrent use.
type Proxy struct {
	cfg Config
	rp  *httputil.ReverseProxy

	mu         sync.Mutex
	transports map[string]*http.Transport

	upgrader websocket.Upgrader
}

type ctxKey int

const (
	targetKey ctxKey = iota
	clientKey
)

// New returns a Proxy.
func New(cfg Config) *Proxy {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.CheckOrigin == nil {
		cfg.CheckOrigin = func(*http.Request) bool { return false }
	}
	p := &Proxy{cfg: cfg, transports: map[string]*http.Transport{}}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      p,
		BufferPool:     bufferPool{},
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       cfg.Logger.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	p.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.DialTimeout,
		ReadBufferSize:   4096,
		WriteBufferSize:  4096,
		WriteBufferPool:  &sync.Pool{},
		// The Origin was checked before the upstream was dialled.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return p
}

// Serve forwards r to t on behalf of c.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, t *Target, c Client) {
	if websocket.IsWebSocketUpgrade(r) {
		p.serveWebSocket(w, r, t, c)
		return
	}
	ctx := context.WithValue(r.Context(), targetKey, t)
	ctx = context.WithValue(ctx, clientKey, c)
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	t := pr.In.Context().Value(targetKey).(*Target)
	c := pr.In.Context().Value(clientKey).(Client)
	pr.SetURL(t.URL)
	pr.Out.Host = pr.In.Host // code-server checks Origin against Host
	setForwarded(pr.Out.Header, pr.In, c)
	stripCookies(pr.Out.Header, p.cfg.StripCookies)
	pr.Out.Header.Del("Authorization")
	for _, h := range p.cfg.StripHeaders {
		pr.Out.Header.Del(h)
	}
	for k, vs := range t.Header {
		pr.Out.Header[k] = vs
	}
	if p.cfg.InjectHTML != "" && isNavigation(pr.In) {
		// An uncompressed page can be edited on its way through.
		pr.Out.Header.Del("Accept-Encoding")
	}
}

// isNavigation tells a browser loading a page from its sub-requests.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// maxInjectBytes bounds the pages InjectHTML edits; bigger ones pass as
// they are.
const maxInjectBytes = 4 << 20

// inject inserts cfg.InjectHTML into an HTML page before </head>.
func (p *Proxy) inject(resp *http.Response) error {
	if p.cfg.InjectHTML == "" || resp.StatusCode != http.StatusOK || resp.Request == nil || !isNavigation(resp.Request) ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || resp.Header.Get("Content-Encoding") != "" ||
		resp.ContentLength > maxInjectBytes {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxInjectBytes+1))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if len(body) <= maxInjectBytes {
		if i := bytes.Index(bytes.ToLower(body), []byte("</head>")); i >= 0 {
			body = append(body[:i:i], append([]byte(p.cfg.InjectHTML), body[i:]...)...)
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.Header.Del("Transfer-Encoding")
	return nil
}

func setForwarded(h http.Header, in *http.Request, c Client) {
	xff := c.Addr
	if c.ForwardedFor != "" {
		xff = c.ForwardedFor + ", " + c.Addr
	}
	h.Set("X-Forwarded-For", xff)
	h.Set("X-Forwarded-Host", in.Host)
	h.Set("X-Forwarded-Proto", c.Proto)
	h.Del("Forwarded")
	h.Del("X-Real-Ip")
}

// stripCookies removes the named cookies from the Cookie header. A name
// matches whatever white space surrounds it (Go's cookie parser trims
// spaces and tabs, JavaScript's trim() any white space) and in any case:
// "codehub_session\t=..." is the session cookie to the gateway, and must
// not reach the IDE either.
func stripCookies(h http.Header, names []string) {
	lines := h.Values("Cookie")
	if len(lines) == 0 || len(names) == 0 {
		return
	}
	var kept []string
	for _, line := range lines {
		for _, part := range strings.Split(line, ";") {
			part = strings.Trim(part, " \t") // as Go reads cookies: other white space is part of them
			name, _, _ := strings.Cut(part, "=")
			name = strings.TrimFunc(name, isCookieSpace)
			drop := false
			for _, n := range names {
				if strings.EqualFold(name, n) {
					drop = true
					break
				}
			}
			if !drop && part != "" {
				kept = append(kept, part)
			}
		}
	}
	h.Del("Cookie")
	if len(kept) > 0 {
		h.Set("Cookie", strings.Join(kept, "; "))
	}
}

// isCookieSpace is white space as JavaScript's String.prototype.trim sees
// it, a superset of what Go's cookie parser trims.
func isCookieSpace(r rune) bool { return unicode.IsSpace(r) || r == '\uFEFF' }

func (p *Proxy) modifyResponse(resp *http.Response) error {
	if p.cfg.SecureResponse != nil {
		p.cfg.SecureResponse(resp.Header)
	}
	return p.inject(resp)
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	p.cfg.Logger.Warn("upstream request failed", "path", r.URL.Path, "error", err)
	if p.cfg.ErrorHandler != nil {
		p.cfg.ErrorHandler(w, r, err)
		return
	}
	http.Error(w, "the workspace is not reachable", http.StatusBadGateway)
}

// RoundTrip sends the request with the pooled transport of its target.
func (p *Proxy) RoundTrip(req *http.Request) (*http.Response, error) {
	t := req.Context().Value(targetKey).(*Target)
	return p.transport(t).RoundTrip(req)
}

func (p *Proxy) transport(t *Target) *http.Transport {
	p.mu.Lock()
	defer p.mu.Unlock()
	if tr, ok := p.transports[t.Key]; ok {
		return tr
	}
	dial := t.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: p.cfg.DialTimeout, KeepAlive: 30 * time.Second}
		dial = d.DialContext
	}
	tr := &http.Transport{
		DialContext:           dial,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   128,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   p.cfg.DialTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass the IDE's encodings through untouched
		ForceAttemptHTTP2:     false,
	}
	p.transports[t.Key] = tr
	return tr
}

// Forget drops the pooled connections of a target that went away.
func (p *Proxy) Forget(key string) {
	p.mu.Lock()
	tr := p.transports[key]
	delete(p.transports, key)
	p.mu.Unlock()
	if tr != nil {
		tr.CloseIdleConnections()
	}
}

// bufferPool recycles the ReverseProxy's copy buffers.
type bufferPool struct{}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

func (bufferPool) Get() []byte  { return *(copyBufs.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { copyBufs.Put(&b) }
