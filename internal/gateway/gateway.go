// Package gateway is codehub's HTTP front: it authenticates each request,
// serves the gateway's own pages and endpoints, and hands everything else to
// the proxy, addressed to the caller's own workspace only.
package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"time"

	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/metrics"
	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/codehub-dev/codehub/internal/throttle"
	"github.com/codehub-dev/codehub/internal/web"
	"github.com/hashicorp/go-hclog"
)

// ErrStarting is returned by Upstreams while the workspace is not ready.
var ErrStarting = errors.New("the workspace is starting")

// Upstreams finds the IDE a signed-in person's requests go to.
type Upstreams interface {
	// Target returns p's own workspace, or ErrStarting while it is not
	// ready yet.
	Target(ctx context.Context, p *identity.Principal) (*proxy.Target, error)
}

// Health reports on the parts behind the gateway.
type Health struct {
	// Ready is false while the gateway cannot serve IDEs.
	Ready bool `json:"ready"`
	// Workspace describes the workspace (single-user mode).
	Workspace any `json:"workspace,omitempty"`
}

// Options are the gateway's dependencies.
type Options struct {
	Config  *config.Config
	Logger  hclog.Logger
	Metrics *metrics.Metrics
	// Identity signs people in; nil when auth is "none".
	Identity  *identity.Service
	Upstreams Upstreams
	// Conns tracks proxied WebSockets, so logout and shutdown can close them.
	Conns     *proxy.Registry
	Throttle  *throttle.Limiter
	Templates *web.Templates
	Health    func() Health
	Version   string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Server is the gateway's handler.
type Server struct {
	opts    Options
	proxy   *proxy.Proxy
	cfg     *config.Config
	log     hclog.Logger
	now     func() time.Time
	trusted []netip.Prefix
	origins map[string]bool
	csrf    *http.CrossOriginProtection
	handler http.Handler
}

// New builds the gateway's handler.
func New(opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:    opts,
		cfg:     opts.Config,
		log:     opts.Logger,
		now:     opts.Now,
		origins: map[string]bool{},
		csrf:    http.NewCrossOriginProtection(),
	}
	for _, p := range opts.Config.TrustedProxies {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			a, err := netip.ParseAddr(p)
			if err != nil {
				return nil, err
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		s.trusted = append(s.trusted, pfx)
	}
	for _, o := range opts.Config.TrustedOrigins {
		s.origins[originHost(o)] = true
		for _, scheme := range []string{"http://", "https://"} {
			_ = s.csrf.AddTrustedOrigin(scheme + originHost(o))
		}
	}
	s.csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("refused cross-origin request", "method", r.Method, "path", r.URL.Path, "origin", r.Header.Get("Origin"))
		s.fail(w, r, http.StatusForbidden, "cross_origin", "cross-origin request refused")
	}))
	s.proxy = proxy.New(proxy.Config{
		Logger:         opts.Logger.Named("proxy"),
		StripCookies:   []string{opts.Config.Session.CookieName, csrfCookie},
		CheckOrigin:    s.originAllowed,
		SecureResponse: s.secureProxied,
		ErrorHandler:   s.upstreamFailed,
		Conns:          opts.Conns,
	})
	s.handler = s.routes()
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}
