package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Close codes the gateway sends browsers.
const (
	// CloseGoingAway: the gateway shuts down; VS Code reconnects.
	CloseGoingAway = websocket.CloseGoingAway
	// CloseRevoked: the session ended (logout, revocation).
	CloseRevoked = websocket.ClosePolicyViolation
)

// handshakeHeaders are set by the WebSocket dialer itself, or are hop-by-hop,
// and must not be copied from the browser's request.
var handshakeHeaders = map[string]bool{
	"Upgrade": true, "Connection": true, "Sec-Websocket-Key": true, "Sec-Websocket-Version": true,
	"Sec-Websocket-Extensions": true, "Sec-Websocket-Protocol": true, "Keep-Alive": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Proxy-Connection": true,
	"Proxy-Authorization": true, "Authorization": true, "Host": true,
}

func (p *Proxy) serveWebSocket(w http.ResponseWriter, r *http.Request, t *Target, c Client) {
	if !p.cfg.CheckOrigin(r) {
		p.cfg.Logger.Warn("refused cross-origin WebSocket", "origin", r.Header.Get("Origin"), "host", r.Host, "client", c.Addr)
		http.Error(w, "cross-origin WebSocket refused", http.StatusForbidden)
		return
	}
	hdr := http.Header{}
	for k, vs := range r.Header {
		if !handshakeHeaders[k] {
			hdr[k] = vs
		}
	}
	hdr.Set("Host", r.Host)
	setForwarded(hdr, r, c)
	stripCookies(hdr, p.cfg.StripCookies)
	for _, h := range p.cfg.StripHeaders {
		hdr.Del(h)
	}
	for k, vs := range t.Header {
		hdr[k] = vs
	}

	d := websocket.Dialer{
		NetDialContext:   t.Dial,
		HandshakeTimeout: p.cfg.DialTimeout,
		ReadBufferSize:   4096,
		WriteBufferSize:  4096,
		WriteBufferPool:  upstreamWriteBufs,
		Subprotocols:     websocket.Subprotocols(r),
	}
	scheme := "ws"
	if t.URL.Scheme == "https" {
		scheme = "wss"
	}
	u := url.URL{Scheme: scheme, Host: t.URL.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	up, resp, err := d.DialContext(r.Context(), u.String(), hdr)
	if err != nil {
		if resp != nil { // the IDE answered, but refused: pass its answer on
			defer resp.Body.Close()
			for _, k := range []string{"Content-Type", "Location"} {
				if v := resp.Header.Get(k); v != "" {
					w.Header().Set(k, v)
				}
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, io.LimitReader(resp.Body, 64*1024))
			return
		}
		p.errorHandler(w, r, err)
		return
	}
	respHdr := http.Header{}
	if sp := up.Subprotocol(); sp != "" {
		respHdr.Set("Sec-Websocket-Protocol", sp)
	}
	client, err := p.upgrader.Upgrade(w, r, respHdr)
	if err != nil { // Upgrade has answered the client already
		up.Close()
		return
	}
	rl := &relay{client: client, up: up, owner: c.Owner, reg: p.cfg.Conns, done: make(chan struct{})}
	rl.run()
}

var upstreamWriteBufs = &sync.Pool{}

// relay is one proxied WebSocket: browser on one side, IDE on the other.
type relay struct {
	client, up *websocket.Conn
	owner      string
	reg        *Registry

	closeOnce sync.Once
	done      chan struct{}
}

func (rl *relay) run() {
	rl.reg.add(rl)
	defer rl.reg.remove(rl)

	rl.client.SetReadDeadline(time.Now().Add(rl.reg.pongWait))
	rl.client.SetPongHandler(func(string) error {
		return rl.client.SetReadDeadline(time.Now().Add(rl.reg.pongWait))
	})

	errc := make(chan error, 2)
	go func() { errc <- rl.pump(rl.up, rl.client, false) }()
	go func() { errc <- rl.pump(rl.client, rl.up, true) }()
	<-errc
	// One side is done; give the other a moment to finish its close
	// handshake, then cut both.
	select {
	case <-errc:
	case <-time.After(2 * time.Second):
	}
	rl.client.Close()
	rl.up.Close()
	close(rl.done)
}

// pump copies messages from src to dst until src ends, then passes the
// close on to dst.
func (rl *relay) pump(src, dst *websocket.Conn, fromClient bool) error {
	var head []byte // the start of a browser's message, for OnClientMessage
	if fromClient && rl.reg.onClientMessage != nil {
		head = make([]byte, ClientMessageHeadSize)
	}
	for {
		mt, r, err := src.NextReader()
		if err != nil {
			forwardClose(dst, err)
			return err
		}
		var prefix []byte
		if fromClient {
			src.SetReadDeadline(time.Now().Add(rl.reg.pongWait))
			if rl.reg.onActivity != nil {
				rl.reg.onActivity(rl.owner)
			}
			if head != nil {
				n, err := io.ReadFull(r, head)
				if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
					forwardClose(dst, err)
					return err
				}
				prefix = head[:n]
				rl.reg.onClientMessage(rl.owner, mt, prefix)
			}
		}
		w, err := dst.NextWriter(mt)
		if err != nil {
			return err
		}
		if len(prefix) > 0 {
			if _, err := w.Write(prefix); err != nil {
				w.Close()
				return err
			}
		}
		if _, err := io.Copy(w, r); err != nil {
			w.Close()
			forwardClose(dst, err)
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
	}
}

// forwardClose sends dst the close frame matching how the other side ended.
func forwardClose(dst *websocket.Conn, err error) {
	code, text := websocket.CloseGoingAway, ""
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		code, text = ce.Code, ce.Text
		if code == websocket.CloseNoStatusReceived || code == websocket.CloseAbnormalClosure || code == websocket.CloseTLSHandshake {
			code = websocket.CloseGoingAway
		}
	case isTimeout(err):
		code, text = websocket.CloseGoingAway, "keepalive timeout"
	}
	_ = dst.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Close ends the relay with a close frame to both sides.
func (rl *relay) Close(code int, reason string) {
	rl.closeOnce.Do(func() {
		msg := websocket.FormatCloseMessage(code, reason)
		deadline := time.Now().Add(time.Second)
		_ = rl.client.WriteControl(websocket.CloseMessage, msg, deadline)
		_ = rl.up.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), deadline)
		// If the browser does not answer the close, cut it.
		time.AfterFunc(2*time.Second, func() {
			rl.client.Close()
			rl.up.Close()
		})
	})
}

// Registry tracks the open WebSockets by owner, pings browsers so that dead
// connections are noticed, and closes connections on logout or shutdown.
type Registry struct {
	pingInterval, pongWait time.Duration
	onActivity             func(owner string)
	onClientMessage        func(owner string, messageType int, head []byte)
	onCount                func(n int)

	mu      sync.Mutex
	byOwner map[string]map[*relay]struct{}
	n       int
	stop    chan struct{}
}

// ClientMessageHeadSize is how much of a browser's message
// RegistryConfig.OnClientMessage sees: enough for the headers of the few
// protocol frames VS Code packs into one message, and the names of the
// calls they carry.
const ClientMessageHeadSize = 512

// RegistryConfig configures a Registry.
type RegistryConfig struct {
	// PingInterval is how often browsers are pinged (default 30s); a
	// browser that sends nothing, not even a pong, for PongWait (default
	// 75s) is disconnected.
	PingInterval, PongWait time.Duration
	// OnActivity, if set, is called for each message from a browser.
	OnActivity func(owner string)
	// OnClientMessage, if set, is called for each message from a browser,
	// before it is relayed, with its type (websocket.TextMessage or
	// BinaryMessage) and its first ClientMessageHeadSize bytes (fewer if
	// the message is shorter), so that a workspace can tell real input
	// from an editor's keep-alive traffic. head is reused afterwards: copy
	// what must be kept.
	OnClientMessage func(owner string, messageType int, head []byte)
	// OnCount, if set, is called with the number of open WebSockets.
	OnCount func(n int)
}

// NewRegistry starts a registry; Stop ends its ping loop.
func NewRegistry(cfg RegistryConfig) *Registry {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 30 * time.Second
	}
	if cfg.PongWait <= 0 {
		cfg.PongWait = 75 * time.Second
	}
	r := &Registry{
		pingInterval: cfg.PingInterval, pongWait: cfg.PongWait,
		onActivity: cfg.OnActivity, onClientMessage: cfg.OnClientMessage, onCount: cfg.OnCount,
		byOwner: map[string]map[*relay]struct{}{}, stop: make(chan struct{}),
	}
	go r.pingLoop()
	return r
}

// Stop ends the ping loop.
func (r *Registry) Stop() { close(r.stop) }

func (r *Registry) add(rl *relay) {
	r.mu.Lock()
	set := r.byOwner[rl.owner]
	if set == nil {
		set = map[*relay]struct{}{}
		r.byOwner[rl.owner] = set
	}
	set[rl] = struct{}{}
	r.n++
	n := r.n
	r.mu.Unlock()
	if r.onCount != nil {
		r.onCount(n)
	}
}

func (r *Registry) remove(rl *relay) {
	r.mu.Lock()
	if set := r.byOwner[rl.owner]; set != nil {
		if _, ok := set[rl]; ok {
			delete(set, rl)
			r.n--
		}
		if len(set) == 0 {
			delete(r.byOwner, rl.owner)
		}
	}
	n := r.n
	r.mu.Unlock()
	if r.onCount != nil {
		r.onCount(n)
	}
}

func (r *Registry) snapshot(owner string) []*relay {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*relay
	for o, set := range r.byOwner {
		if owner != "" && o != owner {
			continue
		}
		for rl := range set {
			out = append(out, rl)
		}
	}
	return out
}

// Count returns the number of open WebSockets.
func (r *Registry) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// OwnerCount returns the number of open WebSockets of one owner.
func (r *Registry) OwnerCount(owner string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byOwner[owner])
}

// CloseOwner closes every WebSocket of owner with code and reason, and
// returns how many it closed.
func (r *Registry) CloseOwner(owner string, code int, reason string) int {
	if owner == "" {
		return 0
	}
	rls := r.snapshot(owner)
	for _, rl := range rls {
		rl.Close(code, reason)
	}
	return len(rls)
}

// CloseAll closes every WebSocket and waits until they are gone or ctxDone
// fires.
func (r *Registry) CloseAll(code int, reason string, ctxDone <-chan struct{}) {
	rls := r.snapshot("")
	for _, rl := range rls {
		rl.Close(code, reason)
	}
	for _, rl := range rls {
		select {
		case <-rl.done:
		case <-ctxDone:
			return
		}
	}
}

func (r *Registry) pingLoop() {
	t := time.NewTicker(r.pingInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			deadline := time.Now().Add(10 * time.Second)
			for _, rl := range r.snapshot("") {
				_ = rl.client.WriteControl(websocket.PingMessage, nil, deadline)
			}
		}
	}
}
