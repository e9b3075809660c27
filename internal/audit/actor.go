package audit

import "context"

// Actor is who makes a request: the gateway puts it in the request's
// context, so that events recorded deeper down carry the client's address.
type Actor struct {
	UserID, Username, IPAddress, UserAgent string
}

type actorKey struct{}

// WithActor returns ctx carrying a.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the actor of ctx (zero if none).
func ActorFrom(ctx context.Context) Actor {
	a, _ := ctx.Value(actorKey{}).(Actor)
	return a
}

// FromContext fills an event's client fields from ctx's actor, and the
// user fields too when the event names no user: then the actor did it to
// themself.
func FromContext(ctx context.Context, e Event) Event {
	a := ActorFrom(ctx)
	if e.IPAddress == "" {
		e.IPAddress = a.IPAddress
	}
	if e.UserAgent == "" {
		e.UserAgent = a.UserAgent
	}
	if e.UserID == "" && e.Username == "" {
		e.UserID, e.Username = a.UserID, a.Username
	}
	if a.Username != "" && (a.UserID != e.UserID) {
		if e.Metadata == nil {
			e.Metadata = map[string]any{}
		}
		if _, ok := e.Metadata["actor"]; !ok {
			e.Metadata["actor"] = a.Username
		}
	}
	return e
}
