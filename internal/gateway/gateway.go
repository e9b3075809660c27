// Package gateway is codehub's HTTP front: it authenticates each request,
// serves the gateway's own pages and endpoints, and hands everything else to
// the proxy, addressed to the caller's own workspace only.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/audit"
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
	// Target returns p's own workspace for request r, ErrStarting while
	// it is on its way, or ErrStopped when it is stopped and r is not a
	// person opening the editor.
	Target(r *http.Request, p *identity.Principal) (*proxy.Target, error)
}

// ErrStopped is returned by Upstreams for a stopped workspace that r does
// not start by itself (an editor tab reconnecting).
var ErrStopped = errors.New("the workspace is stopped")

// Workspaces is what the gateway shows and lets people do with their own
// workspace (multi-user mode).
type Workspaces interface {
	// Status is the user's workspace as the API shows it: state, start
	// progress, idle warning, use against the policy's limits.
	Status(ctx context.Context, userID string) (any, error)
	// Progress is the phrase and queue position shown while it starts.
	Progress(userID string) (phase string, queuePosition int, failure string)
	// KeepAlive counts as activity ("keep working" on the idle warning).
	KeepAlive(userID string)
	// Stop and Restart the user's workspace.
	Stop(ctx context.Context, userID string) error
	Restart(ctx context.Context, userID string) error
	// SignedOut is called when a user's last session ended.
	SignedOut(ctx context.Context, userID string)
	// ConnectionLimit is the user's limit of open connections (0: none).
	ConnectionLimit(ctx context.Context, userID string) int
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
	// Workspaces, when set, exposes the user's own workspace (multi-user).
	Workspaces Workspaces
	// AdminWorkspaces, Resources and AuditLog, when set, add their parts
	// of the admin API (multi-user).
	AdminWorkspaces AdminWorkspaces
	Resources       Resources
	AuditLog        AuditLog
	// Policies, if set, are the isolation policies an administrator may
	// give a user.
	Policies []string
	// APILimits, when set, rate-limits /api/v1.
	APILimits *APILimits
	// MaxConnections bounds the open proxied connections of the whole
	// gateway (0: none).
	MaxConnections int
	// InjectHTML is inserted into the workbench page (the idle warning).
	InjectHTML string
	// Audit records security events; nil records nothing.
	Audit audit.Recorder
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
	csrf    *crossOrigin
	handler http.Handler
	limits  *connLimits

	// trustedOrigins may be the Origin of WebSockets and forms too.
	trustedOrigins []trustedOrigin
}

// New builds the gateway's handler.
func New(opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Audit == nil {
		opts.Audit = audit.Nop{}
	}
	s := &Server{
		opts: opts,
		cfg:  opts.Config,
		log:  opts.Logger,
		now:  opts.Now,
	}
	s.csrf = &crossOrigin{s: s, std: http.NewCrossOriginProtection()}
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
	for i, o := range opts.Config.TrustedOrigins {
		t, ok := parseTrustedOrigin(o)
		if !ok {
			return nil, fmt.Errorf("trusted-origins[%d]: expected a host, host:port or scheme://host[:port], got %q", i, o)
		}
		s.trustedOrigins = append(s.trustedOrigins, t)
	}
	s.csrf.std.SetDenyHandler(http.HandlerFunc(s.denyCrossOrigin))
	s.proxy = proxy.New(proxy.Config{
		Logger:       opts.Logger.Named("proxy"),
		StripCookies: []string{opts.Config.Session.CookieName, csrfCookie},
		StripHeaders: []string{agentapi.SecretHeader, agentapi.ControlHeader},
		CheckOrigin: func(r *http.Request) bool {
			ok := s.originAllowed(r)
			if !ok {
				s.record(r, audit.Event{EventType: audit.Suspicious, Status: audit.StatusFailure,
					Metadata: map[string]any{"reason": "cross_site_websocket", "origin": r.Header.Get("Origin")}})
			}
			return ok
		},
		SecureResponse: s.secureProxied,
		ErrorHandler:   s.upstreamFailed,
		Conns:          opts.Conns,
		InjectHTML:     opts.InjectHTML,
	})
	s.limits = newConnLimits(opts.MaxConnections)
	s.handler = s.bodyDeadlines(s.routes())
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}
