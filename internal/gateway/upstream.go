package gateway

import (
	"net/http"
	"time"

	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/proxy"
)

// FixedUpstream sends every session to one IDE: single-user mode.
type FixedUpstream struct {
	T *proxy.Target
	// Ready, when set, returns a channel closed while the IDE runs.
	Ready func() <-chan struct{}
	// Wait is how long a request may wait for the IDE to come up before it
	// is told the workspace is starting (default 3s).
	Wait time.Duration
}

var _ Upstreams = FixedUpstream{}

// Target implements Upstreams.
func (f FixedUpstream) Target(r *http.Request, _ *identity.Principal) (*proxy.Target, error) {
	ctx := r.Context()
	if f.Ready == nil {
		return f.T, nil
	}
	ready := f.Ready()
	select {
	case <-ready: // the usual case: no timer needed
		return f.T, nil
	default:
	}
	wait := f.Wait
	if wait <= 0 {
		wait = 3 * time.Second
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ready:
		return f.T, nil
	case <-t.C:
		return nil, ErrStarting
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
