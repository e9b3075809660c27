package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/ratelimit"
)

// APILimits rate-limit /api/v1 (not the IDE): signed-in callers per user,
// everyone else per client address.
type APILimits struct {
	// User is keyed by user ID; Anonymous by client address (IPv6 by
	// /64). A nil limiter lets everything through.
	User, Anonymous *ratelimit.Limiter
}

// rateLimitAPI answers 429 rate_limited, with Retry-After, to callers
// over their rate. The first refusal of a caller, then at most one a
// minute, is recorded as security.quota_exceeded. A signed-in caller's
// principal is kept in the context, so it is looked up once.
func (s *Server) rateLimitAPI(next http.Handler) http.Handler {
	lim := s.opts.APILimits
	if lim == nil || s.opts.Identity == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.principal(r)
		if err != nil {
			p = nil // the handler reports the failure; limit as anonymous
		}
		addr, _, _ := s.clientInfo(r)
		var (
			l         *ratelimit.Limiter
			key, kind string
		)
		if p != nil {
			l, key, kind = lim.User, "user:"+p.User.ID, "user"
			r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		} else {
			l, key, kind = lim.Anonymous, "addr:"+clientKey(addr).String(), "anonymous"
		}
		d := l.Allow(key)
		if d.Allowed {
			next.ServeHTTP(w, r)
			return
		}
		s.opts.Metrics.APIRateLimited.WithLabelValues(kind).Inc()
		wait := max(time.Second, (d.RetryAfter + time.Second - 1).Truncate(time.Second))
		if d.Report {
			e := audit.Event{EventType: audit.QuotaExceeded, Status: audit.StatusFailure, Metadata: map[string]any{
				"resource": "api_requests", "limit": l.PerMinute(), "per": "minute", "caller": kind, "path": r.URL.Path,
			}}
			if p != nil {
				e.UserID, e.Username = p.User.ID, p.User.Username
			}
			s.record(r, e)
			s.log.Warn("API rate limit reached", "caller", kind, "client", addr, "user", userName(p))
		}
		s.writeError(w, r, &identity.Error{Code: codeRateLimited, RetryAfter: wait,
			Message: fmt.Sprintf("too many requests: wait %s before trying again", wait)})
	})
}

func userName(p *identity.Principal) string {
	if p == nil {
		return ""
	}
	return p.User.Username
}

// clientKey groups IPv6 addresses by /64, the block one host usually
// holds, so that one host cannot take a new bucket per address.
func clientKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}
