package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/web"
	"github.com/gorilla/mux"
)

// statusRecorder remembers the status written, and keeps the optional
// interfaces the proxy needs (flushing, hijacking for WebSockets).
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijacking not supported")
	}
	if s.status == 0 {
		s.status = http.StatusSwitchingProtocols
	}
	return h.Hijack()
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// observe records code_server_request_duration_seconds by route template,
// so that the label's values stay few whatever paths the IDE uses.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := "other"
		if cr := mux.CurrentRoute(r); cr != nil {
			if name := cr.GetName(); name != "" {
				route = name
			} else if tpl, err := cr.GetPathTemplate(); err == nil {
				route = tpl
			}
		}
		if route == "/" {
			route = "proxy"
			if rec.status == http.StatusSwitchingProtocols {
				route = "websocket"
			}
		}
		if route == "websocket" {
			return // a WebSocket's lifetime is not a request duration
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		s.opts.Metrics.RequestDuration.WithLabelValues(r.Method, route, strconv.Itoa(status)).
			Observe(time.Since(start).Seconds())
	})
}

// withClient puts the client's address into the request context, for the
// audit events recorded while serving it.
func (s *Server) withClient(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr, _, _ := s.clientInfo(r)
		ctx := audit.WithActor(r.Context(), audit.Actor{IPAddress: addr.String(), UserAgent: truncate(r.UserAgent(), 512)})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// record records an audit event about request r.
func (s *Server) record(r *http.Request, e audit.Event) {
	s.opts.Audit.Record(audit.FromContext(r.Context(), e))
}

func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}

// recoverPanics turns a panic into a logged 500 instead of a dropped
// connection. http.ErrAbortHandler is the proxy's way to abort a response
// and passes through.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				s.fail(w, r, http.StatusInternalServerError, "internal", "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// pageCSP is the policy of the gateway's own pages: nothing but its own
// static files, no scripts at all.
const pageCSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// pageHeaders sets the security headers of the gateway's own pages.
func (s *Server) pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		s.hsts(h)
		next.ServeHTTP(w, r)
	})
}

func (s *Server) hsts(h http.Header) {
	if s.cfg.TLSEnabled() {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// secureProxied adds the headers that protect the IDE without breaking it:
// VS Code frames its own webviews (same origin), so framing is limited to
// the same origin rather than forbidden.
func (s *Server) secureProxied(h http.Header) {
	h.Add("Content-Security-Policy", "frame-ancestors 'self'")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("X-Content-Type-Options", "nosniff")
	s.hsts(h)
}

// clientInfo finds the client's address and the scheme it used. Forwarded
// headers count only when the direct peer is a trusted proxy; the client is
// then the right-most address of X-Forwarded-For that is not a proxy.
func (s *Server) clientInfo(r *http.Request) (addr netip.Addr, forwardedFor, proto string) {
	proto = "http"
	if r.TLS != nil {
		proto = "https"
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.IPv4Unspecified(), "", proto
	}
	addr = ap.Addr().Unmap()
	if !s.isTrusted(addr) {
		return addr, "", proto
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		proto = p
	}
	xff := strings.Join(r.Header.Values("X-Forwarded-For"), ",")
	parts := strings.Split(xff, ",")
	for i := len(parts) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(parts[i]))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !s.isTrusted(a) || i == 0 {
			prev := strings.TrimSpace(strings.Join(parts[:i], ","))
			return a, prev, proto
		}
	}
	return addr, "", proto
}

func (s *Server) isTrusted(a netip.Addr) bool {
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// apiError is the JSON shape of every error the gateway returns.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// wantsHTML tells a browser navigation from an API or script request.
func wantsHTML(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// fail answers an error: a page for a browser, JSON for anything else.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	if wantsHTML(r) && s.opts.Templates != nil {
		h := w.Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		s.render(w, status, "message.html", web.Page{
			Title: http.StatusText(status),
			Data:  message{Message: msg, Alert: true, Link: "/", LinkText: "Go to the editor"},
		})
		return
	}
	writeJSONError(w, status, code, msg)
}

func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// message is the data of message.html.
type message struct {
	Message, Detail string
	Alert           bool
	Progress        bool
	Link, LinkText  string
}

// safeRedirect keeps a post-login destination on this site: a path, never
// "//host" or "/\host" (which browsers treat as another host).
func safeRedirect(to string) string {
	if to == "" || to[0] != '/' || strings.HasPrefix(to, "//") || strings.HasPrefix(to, "/\\") ||
		strings.ContainsAny(to, "\r\n\t\\") {
		return "/"
	}
	u, err := url.Parse(to)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return to
}

func retryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", fmt.Sprint(int(d.Round(time.Second).Seconds())))
}

// upstreamFailed answers a request whose workspace could not be reached.
func (s *Server) upstreamFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errBodyTooSlow) {
		// Not the workspace's fault: the client's upload stalled.
		s.fail(w, r, http.StatusRequestTimeout, codeRequestTimeout, "the request body arrived too slowly")
		return
	}
	if wantsHTML(r) {
		p, _ := s.principal(r)
		s.starting(w, r, p)
		return
	}
	s.fail(w, r, http.StatusBadGateway, "workspace_unavailable", "your workspace is not reachable right now")
}

// render writes a page, logging a template failure (which Render has
// already answered with a plain 500).
func (s *Server) render(w http.ResponseWriter, status int, name string, p web.Page) {
	if err := s.opts.Templates.Render(w, status, name, p); err != nil {
		s.log.Error("render page", "page", name, "error", err)
	}
}
