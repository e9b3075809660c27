package main

import (
	"context"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
)

// namingRecorder completes the audit entries that name a user by ID only
// (workspace events, quotas) with the username, as the design's format
// has both, while the account exists.
type namingRecorder struct {
	next audit.Recorder
	// a is the app: its identity service is wired after the audit log.
	a *app
}

var _ audit.Recorder = namingRecorder{}

// Record implements audit.Recorder.
func (n namingRecorder) Record(e audit.Event) {
	if e.UserID != "" && e.Username == "" && n.a.id != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if u, err := n.a.id.User(ctx, e.UserID); err == nil {
			e.Username = u.Username
		}
		cancel()
	}
	n.next.Record(e)
}
