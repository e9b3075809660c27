package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/codehub-dev/codehub/internal/audit"
)

// webOrigin is a web origin (RFC 6454): scheme, host and port, in one
// spelling (lower case, the default port written out), so that two
// origins are the same exactly when their values are equal.
type webOrigin struct {
	scheme, host, port string
}

func (o webOrigin) String() string {
	host := o.host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return o.scheme + "://" + host + ":" + o.port
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port",
// lower-casing the host; port is "" when absent. ok is false for anything
// that is not such a value (a path, a user, spaces, an empty host).
func splitHostPort(hp string) (host, port string, ok bool) {
	if hp == "" || strings.ContainsAny(hp, "/\\?#@ \t\r\n") {
		return "", "", false
	}
	bracketed := false
	switch h, p, err := net.SplitHostPort(hp); {
	case err == nil:
		if p == "" || strings.Trim(p, "0123456789") != "" || len(p) > 5 {
			return "", "", false
		}
		host, port = h, strings.TrimLeft(p, "0")
		if port == "" {
			port = "0"
		}
		bracketed = strings.HasPrefix(hp, "[")
	case strings.HasPrefix(hp, "[") && strings.HasSuffix(hp, "]"):
		host, bracketed = hp[1:len(hp)-1], true
	default:
		host = hp
	}
	// An IPv6 address is written in brackets, and nothing else is.
	if host == "" || strings.ContainsAny(host, "[]") || strings.Contains(host, ":") != bracketed {
		return "", "", false
	}
	if bracketed {
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() {
			return "", "", false
		}
	}
	return strings.ToLower(host), port, true
}

// parseOrigin reads an Origin header value or a trusted-origins entry
// naming a scheme: "scheme://host[:port]", nothing more. Only http and
// https are origins a gateway's pages can have.
func parseOrigin(s string) (webOrigin, bool) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return webOrigin{}, false
	}
	scheme = strings.ToLower(scheme)
	if scheme != "http" && scheme != "https" {
		return webOrigin{}, false
	}
	rest = strings.TrimSuffix(rest, "/") // "https://host/" as people write it in a config
	host, port, ok := splitHostPort(rest)
	if !ok {
		return webOrigin{}, false
	}
	if port == "" {
		port = defaultPort(scheme)
	}
	return webOrigin{scheme: scheme, host: host, port: port}, true
}

// trustedOrigin is one trusted-origins entry: an origin, or a host (with
// or without a port) whose scheme is the gateway's own.
type trustedOrigin struct {
	scheme     string // "" for the request's own scheme
	host, port string // port "" for the scheme's default
}

// parseTrustedOrigin reads a trusted-origins entry: "host", "host:port"
// or "scheme://host[:port]".
func parseTrustedOrigin(s string) (trustedOrigin, bool) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "://") {
		o, ok := parseOrigin(s)
		return trustedOrigin{scheme: o.scheme, host: o.host, port: o.port}, ok
	}
	host, port, ok := splitHostPort(s)
	return trustedOrigin{host: host, port: port}, ok
}

// matches reports whether o is this entry, for a request served on scheme.
func (t trustedOrigin) matches(o webOrigin, scheme string) bool {
	want := webOrigin{scheme: t.scheme, host: t.host, port: t.port}
	if want.scheme == "" {
		want.scheme = scheme
	}
	if want.port == "" {
		want.port = defaultPort(want.scheme)
	}
	return o == want
}

// requestOrigin is the origin the browser sees the gateway at for r: the
// scheme it used (TLS, or a trusted proxy's X-Forwarded-Proto) and the
// Host it asked for. ok is false for a Host that is not a host.
func (s *Server) requestOrigin(r *http.Request) (webOrigin, bool) {
	_, _, proto := s.clientInfo(r)
	host, port, ok := splitHostPort(r.Host)
	if !ok {
		return webOrigin{}, false
	}
	if port == "" {
		port = defaultPort(proto)
	}
	return webOrigin{scheme: proto, host: host, port: port}, true
}

// originVerdict is what the Origin check found.
type originVerdict int

const (
	originAbsent   originVerdict = iota // no Origin header: not a browser
	originOwn                           // the gateway's own origin
	originTrusted                       // a trusted-origins entry
	originOtherURL                      // another origin, or not an origin at all
)

// checkOrigin compares r's Origin header with the gateway's own origin for
// r and with trusted-origins: scheme, host and port must all match, so
// that a page served over plain HTTP (which anyone on the network can
// write) never speaks for the HTTPS site of the same name.
func (s *Server) checkOrigin(r *http.Request) originVerdict {
	raw := r.Header.Get("Origin")
	if raw == "" {
		return originAbsent
	}
	o, ok := parseOrigin(raw)
	if !ok {
		return originOtherURL
	}
	own, ok := s.requestOrigin(r)
	if ok && o == own {
		return originOwn
	}
	scheme := own.scheme
	if !ok {
		_, _, scheme = s.clientInfo(r)
	}
	for _, t := range s.trustedOrigins {
		if t.matches(o, scheme) {
			return originTrusted
		}
	}
	return originOtherURL
}

// originAllowed is the check against cross-site WebSocket hijacking: a
// browser always sends Origin on an upgrade, and it must be the gateway's
// own origin or a trusted one. Clients that send no Origin are not
// browsers, and authenticate with a token they hold.
func (s *Server) originAllowed(r *http.Request) bool {
	if s.checkOrigin(r) != originOtherURL {
		return true
	}
	s.explainOrigin(r)
	return false
}

// explainOrigin logs why an Origin was refused when only the scheme
// differs: the usual cause is a TLS proxy in front that is not in
// trusted-proxies, so the gateway believes it is served over HTTP.
func (s *Server) explainOrigin(r *http.Request) {
	o, ok1 := parseOrigin(r.Header.Get("Origin"))
	own, ok2 := s.requestOrigin(r)
	if ok1 && ok2 && o.scheme != own.scheme && o.host == own.host {
		s.log.Warn("refused an Origin that differs from this gateway's only by its scheme; "+
			"if a TLS proxy is in front of the gateway, list it in trusted-proxies",
			"origin", r.Header.Get("Origin"), "gateway_origin", own.String(), "client", r.RemoteAddr)
	}
}

// crossOrigin guards state-changing requests against cross-site forgery:
// Go's CrossOriginProtection (Sec-Fetch-Site, then Origin against Host),
// with trusted-origins matched by checkOrigin, and the scheme checked too
// when a browser sends no Sec-Fetch-Site (CrossOriginProtection compares
// the Origin's host alone there).
type crossOrigin struct {
	s   *Server
	std *http.CrossOriginProtection
}

// Handler wraps next in the check; a refused request gets the deny handler.
func (c *crossOrigin) Handler(next http.Handler) http.Handler {
	checked := c.std.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			checked.ServeHTTP(w, r)
			return
		}
		site := r.Header.Get("Sec-Fetch-Site")
		if site == "same-origin" || site == "none" {
			checked.ServeHTTP(w, r)
			return
		}
		switch c.s.checkOrigin(r) {
		case originTrusted:
			next.ServeHTTP(w, r)
			return
		case originOtherURL:
			if site == "" {
				c.s.explainOrigin(r)
				c.s.denyCrossOrigin(w, r)
				return
			}
		}
		checked.ServeHTTP(w, r)
	})
}

// denyCrossOrigin answers and records a refused cross-origin request.
func (s *Server) denyCrossOrigin(w http.ResponseWriter, r *http.Request) {
	s.log.Warn("refused cross-origin request", "method", r.Method, "path", r.URL.Path, "origin", r.Header.Get("Origin"))
	s.record(r, audit.Event{EventType: audit.Suspicious, Status: audit.StatusFailure,
		Metadata: map[string]any{"reason": "cross_origin_request", "origin": r.Header.Get("Origin"), "path": r.URL.Path}})
	s.fail(w, r, http.StatusForbidden, "cross_origin", "cross-origin request refused")
}
