// Package identity is who is signed in: it signs people in through an
// Authenticator, keeps their sessions, issues API tokens, and makes every
// revocation take effect on every gateway. The per-request check is a
// memory lookup: sessions and users are cached, and the caches are
// invalidated by revocation events from all gateways.
package identity

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/auth"
	"github.com/codehub-dev/codehub/internal/lockout"
	"github.com/codehub-dev/codehub/internal/revocation"
	"github.com/codehub-dev/codehub/internal/session"
	"github.com/codehub-dev/codehub/internal/token"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/hashicorp/go-hclog"
)

// Registration modes.
const (
	RegisterAdmin  = "admin"
	RegisterInvite = "invite"
	RegisterOpen   = "open"
)

// Config configures the Service.
type Config struct {
	// SessionTTL is a session's lifetime; IdleTimeout ends one unused for
	// that long (0: never).
	SessionTTL, IdleTimeout time.Duration
	// MaxSessionsPerUser and OnLimit (OnLimitEvict, the default, or
	// OnLimitRefuse).
	MaxSessionsPerUser int
	OnLimit            string
	// Registration is RegisterAdmin, RegisterInvite or RegisterOpen.
	Registration string
	// MinPasswordLength and RequireMixed are the complexity rules.
	MinPasswordLength int
	RequireMixed      bool
	// CacheTTL bounds how long a cached session or user is trusted without
	// an event (default 30s): the fallback when events are lost.
	CacheTTL time.Duration
	// CleanupInterval is how often expired and idle sessions are swept
	// (see CleanupExpiredSessions).
	CleanupInterval time.Duration
	// DisableCleanup turns that sweep off (the design's
	// auto-cleanup.enabled = false): ended sessions still cannot be used,
	// but stay in the store, and an idle session ends only when it is
	// next presented.
	DisableCleanup bool
	// Now is the clock.
	Now func() time.Time
}

// Deps are the Service's collaborators.
type Deps struct {
	Authn    auth.Authenticator
	Users    user.Store // nil in single-user mode
	Sessions session.Store
	Tokens   *token.Service // nil: no API tokens
	Bus      revocation.Bus
	Hasher   PasswordHasher // nil in single-user mode
	// OnRevoke, if set, is called with sessions that ended, on every
	// gateway (to close their WebSockets).
	OnRevoke func(sessionIDs []string)
	// OnSessionCreated, if set, is called after each sign-in.
	OnSessionCreated func(*session.Session)
	// Audit records what happens; nil records nothing.
	Audit audit.Recorder
	// Lockout is the failure counter of Authn (multi-user mode), for
	// device cookies and for administrators to see and clear locks; nil:
	// none.
	Lockout *lockout.Guard
	// OnLocked, if set, is called when failed sign-ins start a lock, with
	// its scope ("client" or "name"); OnEvicted with the number of
	// sessions ended to make room for a sign-in (for metrics).
	OnLocked  func(scope string)
	OnEvicted func(n int)
}

// What a sign-in beyond MaxSessionsPerUser does.
const (
	// OnLimitEvict ends the user's least recently used session.
	OnLimitEvict = "evict-lru"
	// OnLimitEvictOldest is the former name of OnLimitEvict.
	OnLimitEvictOldest = "evict-oldest"
	// OnLimitRefuse refuses the sign-in.
	OnLimitRefuse = "refuse"
)

// PasswordHasher hashes new passwords.
type PasswordHasher interface {
	Hash(ctx context.Context, pw string) (string, error)
}

// Principal is who a request comes from.
type Principal struct {
	User    *user.User
	Session *session.Session
	// Via is "cookie" or "bearer".
	Via string
}

// Client describes where a sign-in comes from.
type Client struct {
	IP, UserAgent string
	// Device is the browser's device cookie, if it sent one.
	Device string
}

// Service is safe for concurrent use.
type Service struct {
	cfg   Config
	d     Deps
	log   hclog.Logger
	cache *cache
	owner *user.User // single-user mode's one user
	seen  *activitySeen
}

// New returns a Service. In single-user mode (Users nil) every session
// belongs to one built-in user.
func New(cfg Config, d Deps, log hclog.Logger) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	if cfg.CleanupInterval <= 0 {
		cfg.CleanupInterval = 5 * time.Minute
	}
	if cfg.OnLimit == "" || cfg.OnLimit == OnLimitEvictOldest {
		cfg.OnLimit = OnLimitEvict
	}
	if d.Bus == nil {
		d.Bus = revocation.NewLocal()
	}
	if d.Audit == nil {
		d.Audit = audit.Nop{}
	}
	s := &Service{cfg: cfg, d: d, log: log, cache: newCache(cfg.CacheTTL, cfg.Now), seen: newActivitySeen()}
	if d.Users == nil {
		s.owner = &user.User{ID: auth.SingleUserID, Username: auth.SingleUserID, Roles: []string{user.RoleAdmin}, Active: true}
	}
	return s
}

// MultiUser reports whether accounts come from a user store.
func (s *Service) MultiUser() bool { return s.d.Users != nil }

// AskUsername says whether sign-in needs a username.
func (s *Service) AskUsername() bool { return s.d.Authn.AskUsername() }

// Registration returns the registration mode.
func (s *Service) Registration() string {
	if !s.MultiUser() {
		return RegisterAdmin
	}
	return s.cfg.Registration
}

// Tokens reports whether API tokens are issued.
func (s *Service) Tokens() *token.Service { return s.d.Tokens }

// Run handles revocation events from every gateway and sweeps expired and
// idle sessions every CleanupInterval, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if !s.cfg.DisableCleanup {
		go func() {
			t := time.NewTicker(s.cfg.CleanupInterval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if _, err := s.CleanupExpiredSessions(ctx); err != nil && ctx.Err() == nil {
						s.log.Warn("sweep expired sessions", "error", err)
					}
					if s.d.Lockout != nil {
						if _, err := s.d.Lockout.Sweep(ctx); err != nil && ctx.Err() == nil {
							s.log.Warn("sweep failed sign-ins", "error", err)
						}
					}
				}
			}
		}()
	}
	return s.d.Bus.Subscribe(ctx, s.apply)
}

// record records an audit event, with the client of ctx, and the name of
// the user it names by ID only (when the account still exists).
func (s *Service) record(ctx context.Context, e audit.Event) {
	if e.UserID != "" && e.Username == "" {
		if u, err := s.userByID(ctx, e.UserID); err == nil {
			e.Username = u.Username
		}
	}
	s.d.Audit.Record(audit.FromContext(ctx, e))
}

// apply acts on a revocation event, from this gateway or another.
func (s *Service) apply(ev revocation.Event) {
	if ev.Resync {
		s.cache.clear()
		return
	}
	ended := ev.SessionIDs
	if ev.AllSessions && ev.UserID != "" {
		// Sessions this gateway keeps in memory are not in any shared
		// store the publisher could have cleared.
		// Sessions created after the event are spared.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		live, err := s.d.Sessions.UserSessions(ctx, ev.UserID)
		if err != nil {
			s.log.Warn("end sessions of a revoked user", "user", ev.UserID, "error", err)
		}
		for _, l := range live {
			if !ev.At.IsZero() && l.CreatedAt.After(ev.At) {
				continue
			}
			if err := s.d.Sessions.Delete(ctx, l.ID); err != nil {
				s.log.Warn("end sessions of a revoked user", "user", ev.UserID, "error", err)
				continue
			}
			ended = append(ended, l.ID)
		}
		cancel()
	}
	for _, id := range ended {
		s.cache.dropSession(id)
	}
	if ev.UserID != "" {
		s.cache.dropUser(ev.UserID)
	}
	if len(ended) > 0 && s.d.OnRevoke != nil {
		s.d.OnRevoke(ended)
	}
}

// publish applies ev here at once and tells the other gateways.
func (s *Service) publish(ctx context.Context, ev revocation.Event) {
	s.apply(ev)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.d.Bus.Publish(pctx, ev); err != nil {
		// Other gateways still drop their copies when CacheTTL passes.
		s.log.Error("publish revocation; other gateways notice within the cache TTL", "error", err, "ttl", s.cfg.CacheTTL)
	}
}

// LoginResult is a new session.
type LoginResult struct {
	Principal *Principal
	// CookieToken is what the browser keeps; the session is stored under
	// its hash.
	CookieToken string
	// Device, when set, is a device cookie for the browser: it trusts
	// this browser for the name it signed in with until DeviceExpires.
	Device        string
	DeviceExpires time.Time
	// Notice, when set, tells the person something they should know
	// (that signing in ended another session); it is also kept in the
	// session's metadata under NoticeKey until shown.
	Notice string
}

// NoticeKey is the session metadata key of a notice not yet shown.
const NoticeKey = "notice"

// Login checks credentials and starts a session.
func (s *Service) Login(ctx context.Context, username, pw string, c Client) (*LoginResult, error) {
	if len(username) > 256 || len(pw) > 1024 {
		return nil, errorf(CodeInvalidInput, "username or password too long", nil)
	}
	addr, _ := netip.ParseAddr(c.IP)
	userID, err := s.d.Authn.Authenticate(ctx, auth.Attempt{Username: username, Password: pw, Address: addr, Device: c.Device})
	if err != nil {
		fail := func(reason string, md map[string]any) {
			if md == nil {
				md = map[string]any{}
			}
			md["reason"] = reason
			s.record(ctx, audit.Event{EventType: audit.LoginFailure, Username: truncate(username, 128),
				IPAddress: c.IP, UserAgent: truncate(c.UserAgent, 512), Status: audit.StatusFailure, Metadata: md})
		}
		var (
			locked *auth.LockedError
			second *auth.SecondFactorRequired
		)
		switch {
		case errors.Is(err, auth.ErrBadCredentials):
			fail("invalid_credentials", nil)
			return nil, errorf(CodeInvalidCredentials, "wrong username or password", nil)
		case errors.As(err, &second):
			// The right password while the name is locked for everyone.
			// Here a second factor would let the owner in; with none
			// enrolled (there is no second factor yet), the answer is
			// the lock's, as for a wrong password.
			fail("account_locked", map[string]any{"scope": string(second.Lock.Scope), "passwordCorrect": true})
			return nil, s.lockedError(second.Lock)
		case errors.As(err, &locked):
			fail("account_locked", map[string]any{"scope": string(locked.Scope)})
			if locked.Locking { // once, when it happens
				if s.d.OnLocked != nil {
					s.d.OnLocked(string(locked.Scope))
				}
				md := map[string]any{"until": locked.Until.UTC().Format(time.RFC3339), "scope": string(locked.Scope)}
				if locked.Client != "" {
					md["client"] = locked.Client
				}
				s.record(ctx, audit.Event{EventType: audit.AccountLocked, Username: truncate(username, 128), IPAddress: c.IP,
					UserAgent: truncate(c.UserAgent, 512), Status: audit.StatusFailure, Metadata: md})
			}
			return nil, s.lockedError(locked)
		case errors.Is(err, auth.ErrDisabled):
			fail("account_disabled", nil)
			return nil, errorf(CodeAccountDisabled, "this account is disabled; ask an administrator", nil)
		}
		fail("unavailable", nil)
		return nil, errorf(CodeUnavailable, "sign-in is unavailable right now", err)
	}
	u, err := s.userByID(ctx, userID)
	if err != nil {
		return nil, errorf(CodeUnavailable, "sign-in is unavailable right now", err)
	}
	notice, err := s.makeRoom(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	tok, id, err := session.NewToken()
	if err != nil {
		return nil, errorf(CodeUnavailable, "sign-in is unavailable right now", err)
	}
	now := s.cfg.Now()
	sess := &session.Session{
		ID: id, UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(s.cfg.SessionTTL), LastActivity: now,
		IPAddress: truncate(c.IP, 64), UserAgent: truncate(c.UserAgent, 512),
	}
	if notice != "" {
		sess.Metadata = map[string]string{NoticeKey: notice}
	}
	if err := s.d.Sessions.Set(ctx, sess); err != nil {
		return nil, errorf(CodeUnavailable, "sign-in is unavailable right now", err)
	}
	s.cache.putSession(sess)
	if s.d.OnSessionCreated != nil {
		s.d.OnSessionCreated(sess)
	}
	s.record(ctx, audit.Event{EventType: audit.LoginSuccess, UserID: u.ID, Username: u.Username, IPAddress: c.IP,
		UserAgent: sess.UserAgent, Metadata: map[string]any{"sessionId": sess.ID, "mfa": false}})
	s.record(ctx, audit.Event{EventType: audit.SessionCreated, UserID: u.ID, Username: u.Username, IPAddress: c.IP,
		UserAgent: sess.UserAgent, Metadata: map[string]any{"sessionId": sess.ID, "expiresAt": sess.ExpiresAt.UTC().Format(time.RFC3339)}})
	res := &LoginResult{Principal: &Principal{User: u, Session: sess, Via: "cookie"}, CookieToken: tok, Notice: notice}
	if s.d.Lockout != nil {
		res.Device, res.DeviceExpires = s.d.Lockout.IssueDevice(username)
	}
	return res, nil
}

// TrustedDevice reports whether a device cookie trusts its browser for
// the sign-in name: such a browser is not throttled by its address, and
// gets through a lock of the name for everyone.
func (s *Service) TrustedDevice(cookie, name string) bool {
	if s.d.Lockout == nil || cookie == "" {
		return false
	}
	_, ok := s.d.Lockout.Device(cookie, name)
	return ok
}

// lockedError is what a person is told of a lock. The words differ by
// scope, never by whether the name has an account.
func (s *Service) lockedError(l *auth.LockedError) *Error {
	wait := max(time.Second, l.Until.Sub(s.cfg.Now()).Round(time.Second))
	switch l.Scope {
	case auth.ScopeName:
		return &Error{Code: CodeAccountLocked, RetryAfter: wait, Message: fmt.Sprintf(
			"sign-in with this name is paused for %s after failed attempts from many addresses; "+
				"a browser that signed in with it before can still sign in", wait)}
	case auth.ScopeAccount:
		if wait > 24*time.Hour {
			return &Error{Code: CodeAccountLocked, RetryAfter: wait, Message: "this account is locked; ask an administrator"}
		}
		return &Error{Code: CodeAccountLocked, RetryAfter: wait,
			Message: fmt.Sprintf("this account is locked by an administrator for %s", wait)}
	}
	from := "your address"
	if lockout.IsDevice(l.Client) {
		from = "this browser"
	}
	return &Error{Code: CodeAccountLocked, RetryAfter: wait, Message: fmt.Sprintf(
		"too many failed sign-ins with this name from %s: try again in %s", from, wait)}
}

// makeRoom enforces max-sessions-per-user before a new sign-in: it ends
// the least recently used sessions over the cap (or refuses, with
// OnLimitRefuse), and returns what to tell the person.
func (s *Service) makeRoom(ctx context.Context, userID string) (string, error) {
	if s.cfg.MaxSessionsPerUser <= 0 {
		return "", nil
	}
	live, err := s.d.Sessions.UserSessions(ctx, userID)
	if err != nil {
		return "", errorf(CodeUnavailable, "sign-in is unavailable right now", err)
	}
	if s.cfg.IdleTimeout > 0 {
		// Idle sessions cannot be used again: end them, do not count them.
		now := s.cfg.Now()
		var idle []string
		kept := live[:0]
		for _, l := range live {
			if now.Sub(l.LastActivity) > s.cfg.IdleTimeout {
				idle = append(idle, l.ID)
			} else {
				kept = append(kept, l)
			}
		}
		live = kept
		if len(idle) > 0 {
			if err := s.endSessions(ctx, idle, "idle timeout"); err != nil {
				return "", err
			}
		}
	}
	excess := len(live) - s.cfg.MaxSessionsPerUser + 1
	if excess <= 0 {
		return "", nil
	}
	if s.cfg.OnLimit == OnLimitRefuse {
		s.record(ctx, audit.Event{EventType: audit.QuotaExceeded, UserID: userID, Status: audit.StatusFailure,
			Metadata: map[string]any{"resource": "sessions", "current": len(live), "limit": s.cfg.MaxSessionsPerUser}})
		return "", errorf(CodeTooManySessions, fmt.Sprintf(
			"you are signed in %d times already, the most allowed: sign out of another browser or device first", len(live)), nil)
	}
	// Least recently used first; of equals, the oldest.
	slices.SortStableFunc(live, func(a, b *session.Session) int { return a.LastActivity.Compare(b.LastActivity) })
	var (
		ended []string
		notes []string
	)
	for _, old := range live[:excess] {
		if err := s.d.Sessions.Delete(ctx, old.ID); err != nil {
			return "", errorf(CodeUnavailable, "sign-in is unavailable right now", err)
		}
		ended = append(ended, old.ID)
		s.record(ctx, audit.Event{EventType: audit.SessionRevoked, UserID: userID,
			Metadata: map[string]any{"sessionId": old.ID, "reason": "max sessions per user: least recently used ended",
				"lastActivity": old.LastActivity.UTC().Format(time.RFC3339), "sessionIp": old.IPAddress,
				"sessionUserAgent": truncate(old.UserAgent, 200), "limit": s.cfg.MaxSessionsPerUser}})
		notes = append(notes, describeSession(old))
	}
	s.log.Info("signed out the least recently used sessions to make room", "user", userID, "count", len(ended))
	if s.d.OnEvicted != nil {
		s.d.OnEvicted(len(ended))
	}
	s.publish(ctx, revocation.Event{SessionIDs: ended})
	what := "the session " + notes[0] + " was"
	if len(notes) > 1 {
		what = "the sessions " + strings.Join(notes, "; ") + " were"
	}
	return fmt.Sprintf("You were signed in %d times, the most allowed, so %s ended.", len(live), what), nil
}

// describeSession says when and from where a session was last used, as a
// person recognizes it.
func describeSession(x *session.Session) string {
	from := x.IPAddress
	if ua := describeAgent(x.UserAgent); ua != "" {
		from = ua + " at " + x.IPAddress
	}
	if from == "" {
		from = "an unknown place"
	}
	return fmt.Sprintf("last used %s from %s", x.LastActivity.UTC().Format("2006-01-02 15:04 UTC"), from)
}

// describeAgent names the browser and system of a user agent as people
// call them ("Firefox on Windows"), or gives the start of an agent it
// does not know.
func describeAgent(ua string) string {
	pick := func(names [][2]string) string {
		for _, n := range names {
			if strings.Contains(ua, n[0]) {
				return n[1]
			}
		}
		return ""
	}
	browser := pick([][2]string{{"Firefox/", "Firefox"}, {"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Chromium/", "Chromium"},
		{"Chrome/", "Chrome"}, {"Safari/", "Safari"}})
	system := pick([][2]string{{"Android", "Android"}, {"iPhone", "iPhone"}, {"iPad", "iPad"}, {"Windows", "Windows"},
		{"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"}})
	switch {
	case browser != "" && system != "":
		return browser + " on " + system
	case browser != "":
		return browser
	}
	return truncate(ua, 60)
}

// TakeNotice returns the session's notice not yet shown, and forgets it:
// it is shown once.
func (s *Service) TakeNotice(ctx context.Context, sessionID string) (string, error) {
	var notice string
	sess, err := s.d.Sessions.Update(ctx, sessionID, func(x *session.Session) error {
		notice = x.Metadata[NoticeKey]
		delete(x.Metadata, NoticeKey)
		return nil
	})
	if errors.Is(err, session.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", errorf(CodeUnavailable, "sessions are unavailable right now", err)
	}
	s.cache.putSession(sess)
	return notice, nil
}

// TokenPair is what an API client gets at sign-in and refresh, in the shape
// of an OAuth2 token response.
type TokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	// Notice, at sign-in, says what the person should know: that
	// signing in ended their least recently used session.
	Notice string `json:"notice,omitempty"`
}

// LoginAPI signs in an API client: a session with a refresh token, and a
// short-lived access token.
func (s *Service) LoginAPI(ctx context.Context, username, pw string, c Client) (*TokenPair, *Principal, error) {
	if s.d.Tokens == nil {
		return nil, nil, errorf(CodeNotFound, "API tokens are not available in this mode", nil)
	}
	res, err := s.Login(ctx, username, pw, c)
	if err != nil {
		return nil, nil, err
	}
	sess := res.Principal.Session
	pair, err := s.rotate(ctx, sess.UserID, sess.ID, -1, "")
	if err != nil {
		_ = s.d.Sessions.Delete(ctx, sess.ID)
		return nil, nil, err
	}
	// An API client reads the notice here; it is not kept for a page.
	pair.Notice = res.Notice
	return pair, res.Principal, nil
}

var (
	errReplay = errors.New("refresh token replayed")
	errIdle   = errors.New("session idle")
)

// rotate issues the next refresh token of a session and a new access
// token. gen and secretHash are those of the presented refresh token (gen
// -1 for the first token of a session); they are checked in the same
// atomic update that replaces them, so one token is exchanged once.
//
// The access token is signed first: when it cannot be (a key source in
// Vault that is unreachable), the refresh token must stay as it was. Had
// it been replaced, the client, which never saw the new one, would
// present the old one again and be taken for a thief replaying it.
func (s *Service) rotate(ctx context.Context, userID, sessionID string, gen int, secretHash string) (*TokenPair, error) {
	access, exp, err := s.d.Tokens.IssueAccess(ctx, userID, sessionID)
	if err != nil {
		return nil, errorf(CodeUnavailable, "tokens cannot be issued right now", err)
	}
	var refresh string
	sess, err := s.d.Sessions.Update(ctx, sessionID, func(x *session.Session) error {
		if gen >= 0 {
			if s.cfg.IdleTimeout > 0 && s.cfg.Now().Sub(x.LastActivity) > s.cfg.IdleTimeout {
				return errIdle
			}
			switch {
			case x.RefreshHash == "":
				return errorf(CodeInvalidToken, "invalid refresh token", nil)
			case gen < x.RefreshGen:
				return errReplay
			case gen > x.RefreshGen, !token.HashEqual(secretHash, x.RefreshHash):
				return errorf(CodeInvalidToken, "invalid refresh token", nil)
			}
		}
		next := x.RefreshGen + 1
		if gen < 0 {
			next = 0
		}
		tok, hash, err := token.NewRefresh(x.ID, next)
		if err != nil {
			return err
		}
		refresh = tok
		x.RefreshGen, x.RefreshHash = next, hash
		x.LastActivity = s.cfg.Now()
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.cache.putSession(sess)
	return &TokenPair{
		AccessToken: access, RefreshToken: refresh, TokenType: "Bearer",
		ExpiresIn: int(exp.Sub(s.cfg.Now()).Round(time.Second).Seconds()),
	}, nil
}

// Refresh exchanges a refresh token for a new pair. Presenting a refresh
// token that was already exchanged ends the whole session: it was copied.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*TokenPair, error) {
	if s.d.Tokens == nil {
		return nil, errorf(CodeNotFound, "API tokens are not available in this mode", nil)
	}
	sid, gen, hash, err := token.ParseRefresh(refreshToken)
	if err != nil {
		return nil, errorf(CodeInvalidToken, "invalid refresh token", err)
	}
	sess, err := s.d.Sessions.Get(ctx, sid)
	if err == nil {
		if u, uerr := s.userByID(ctx, sess.UserID); uerr != nil || !u.Active {
			return nil, errorf(CodeInvalidToken, "invalid refresh token", uerr)
		}
	}
	var pair *TokenPair
	if err == nil {
		pair, err = s.rotate(ctx, sess.UserID, sid, gen, hash)
		if err == nil {
			s.record(ctx, audit.Event{EventType: audit.TokenRefreshed, UserID: sess.UserID, Metadata: map[string]any{"sessionId": sid}})
		}
	}
	switch {
	case errors.Is(err, errReplay):
		if derr := s.d.Sessions.Delete(ctx, sid); derr != nil {
			s.log.Error("revoke session after refresh token replay", "error", derr)
		}
		s.publish(ctx, revocation.Event{SessionIDs: []string{sid}})
		s.log.Warn("refresh token replayed: session revoked", "session", sid)
		s.record(ctx, audit.Event{EventType: audit.Suspicious, Status: audit.StatusFailure, UserID: sess.UserID,
			Metadata: map[string]any{"reason": "refresh_token_reused", "sessionId": sid}})
		s.record(ctx, audit.Event{EventType: audit.SessionRevoked, UserID: sess.UserID,
			Metadata: map[string]any{"sessionId": sid, "reason": "refresh token replayed"}})
		return nil, errorf(CodeTokenReused, "this refresh token was already used; the session has been ended, sign in again", nil)
	case errors.Is(err, errIdle):
		_ = s.endSessions(ctx, []string{sid}, "idle timeout")
		return nil, errorf(CodeInvalidToken, "the session ended after being unused; sign in again", err)
	case errors.Is(err, session.ErrNotFound):
		return nil, errorf(CodeInvalidToken, "invalid refresh token", err)
	case err != nil:
		var ie *Error
		if errors.As(err, &ie) {
			return nil, ie
		}
		return nil, errorf(CodeUnavailable, "tokens cannot be issued right now", err)
	}
	return pair, nil
}

// FromCookie returns the principal of a browser's session token, or nil if
// the token names no live session.
func (s *Service) FromCookie(ctx context.Context, cookieToken string) (*Principal, error) {
	if cookieToken == "" || len(cookieToken) > 128 {
		return nil, nil
	}
	p, err := s.principal(ctx, session.IDFromToken(cookieToken))
	if p != nil {
		p.Via = "cookie"
	}
	return p, err
}

// FromBearer returns the principal of an API access token, or nil if the
// token is not valid or its session has ended.
func (s *Service) FromBearer(ctx context.Context, bearer string) (*Principal, error) {
	if s.d.Tokens == nil || bearer == "" || len(bearer) > 4096 {
		return nil, nil
	}
	claims, err := s.d.Tokens.VerifyAccess(ctx, bearer)
	if err != nil {
		return nil, nil
	}
	p, err := s.principal(ctx, claims.SessionID)
	if p == nil || err != nil || p.User.ID != claims.UserID {
		return nil, err
	}
	p.Via = "bearer"
	return p, nil
}

// principal resolves a session id to a live session and an active user,
// from the caches when possible.
func (s *Service) principal(ctx context.Context, sid string) (*Principal, error) {
	sess, err := s.sessionByID(ctx, sid)
	if sess == nil || err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	if s.cfg.IdleTimeout > 0 && now.Sub(sess.LastActivity) > s.cfg.IdleTimeout {
		s.endSessions(ctx, []string{sess.ID}, "idle timeout")
		return nil, nil
	}
	u, err := s.userByID(ctx, sess.UserID)
	if errors.Is(err, user.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !u.Active {
		return nil, nil
	}
	// Record activity often enough that the idle timeout never ends a
	// session in use.
	if now.Sub(sess.LastActivity) > s.touchEvery() {
		s.touch(ctx, sess.ID, now)
	}
	return &Principal{User: u, Session: sess}, nil
}

func (s *Service) touch(ctx context.Context, sid string, now time.Time) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	sess, err := s.d.Sessions.Update(uctx, sid, func(x *session.Session) error {
		x.LastActivity = now
		return nil
	})
	if err != nil {
		if !errors.Is(err, session.ErrNotFound) {
			s.log.Warn("record session activity", "error", err)
		}
		return
	}
	s.cache.putSession(sess)
}

func (s *Service) sessionByID(ctx context.Context, sid string) (*session.Session, error) {
	if sess, hit := s.cache.session(sid); hit {
		return sess, nil // a nil session is a remembered miss
	}
	sess, err := s.d.Sessions.Get(ctx, sid)
	if errors.Is(err, session.ErrNotFound) {
		s.cache.putMissingSession(sid)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.cache.putSession(sess)
	return sess, nil
}

func (s *Service) userByID(ctx context.Context, id string) (*user.User, error) {
	if s.owner != nil {
		if id != s.owner.ID {
			return nil, user.ErrNotFound
		}
		return s.owner, nil
	}
	if u, ok := s.cache.user(id); ok {
		return u, nil
	}
	u, err := s.d.Users.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	s.cache.putUser(u)
	return u, nil
}

// Logout ends one session.
func (s *Service) Logout(ctx context.Context, sessionID string) error {
	return s.endSessions(ctx, []string{sessionID}, "logout")
}

func (s *Service) endSessions(ctx context.Context, ids []string, why string) error {
	for _, id := range ids {
		// Whose session it was, for the audit entry.
		e := audit.Event{Metadata: map[string]any{"sessionId": id, "reason": why}}
		if sess, err := s.d.Sessions.Get(ctx, id); err == nil {
			e.UserID = sess.UserID
			if u, err := s.userByID(ctx, sess.UserID); err == nil {
				e.Username = u.Username
			}
		}
		if err := s.d.Sessions.Delete(ctx, id); err != nil {
			return errorf(CodeUnavailable, "sessions are unavailable right now", err)
		}
		e.EventType = audit.SessionRevoked
		switch why {
		case "idle timeout":
			e.EventType = audit.SessionExpired
		case "logout":
			e.EventType = audit.Logout
		}
		s.record(ctx, e)
	}
	s.log.Debug("sessions ended", "count", len(ids), "reason", why)
	s.publish(ctx, revocation.Event{SessionIDs: ids})
	return nil
}

// UserSessions lists a user's live sessions, oldest first.
func (s *Service) UserSessions(ctx context.Context, userID string) ([]*session.Session, error) {
	ss, err := s.d.Sessions.UserSessions(ctx, userID)
	if err != nil {
		return nil, errorf(CodeUnavailable, "sessions are unavailable right now", err)
	}
	return ss, nil
}

// RevokeSession ends one session of userID. A session of another user is
// reported as not found, like a missing one.
func (s *Service) RevokeSession(ctx context.Context, userID, sessionID string) error {
	sess, err := s.d.Sessions.Get(ctx, sessionID)
	if errors.Is(err, session.ErrNotFound) || (err == nil && sess.UserID != userID) {
		return errorf(CodeNotFound, "no such session", nil)
	}
	if err != nil {
		return errorf(CodeUnavailable, "sessions are unavailable right now", err)
	}
	return s.endSessions(ctx, []string{sessionID}, "revoked")
}

// RevokeUser ends every session of a user, on every gateway, except keep
// (if not empty).
func (s *Service) RevokeUser(ctx context.Context, userID, keep string) (int, error) {
	var ended []string
	if keep == "" {
		gone, err := s.d.Sessions.DeleteUserSessions(ctx, userID)
		if err != nil {
			return 0, errorf(CodeUnavailable, "sessions are unavailable right now", err)
		}
		for _, g := range gone {
			ended = append(ended, g.ID)
		}
		if len(ended) > 0 {
			s.record(ctx, audit.Event{EventType: audit.SessionRevoked, UserID: userID,
				Metadata: map[string]any{"sessions": len(ended), "reason": "all sessions of the user"}})
		}
	} else {
		live, err := s.d.Sessions.UserSessions(ctx, userID)
		if err != nil {
			return 0, errorf(CodeUnavailable, "sessions are unavailable right now", err)
		}
		for _, l := range live {
			if l.ID == keep {
				continue
			}
			if err := s.d.Sessions.Delete(ctx, l.ID); err != nil {
				return 0, errorf(CodeUnavailable, "sessions are unavailable right now", err)
			}
			ended = append(ended, l.ID)
			s.record(ctx, audit.Event{EventType: audit.SessionRevoked, UserID: userID,
				Metadata: map[string]any{"sessionId": l.ID, "reason": "other sessions of the user"}})
		}
	}
	s.publish(ctx, revocation.Event{SessionIDs: ended, UserID: userID, AllSessions: keep == "", At: s.cfg.Now()})
	return len(ended), nil
}

// CheckPassword applies the complexity rules; the message says what is
// missing.
func (s *Service) CheckPassword(pw, username string) error {
	n := len([]rune(pw))
	if n < s.cfg.MinPasswordLength {
		return errorf(CodeWeakPassword, fmt.Sprintf("a password needs at least %d characters", s.cfg.MinPasswordLength), nil)
	}
	if n > 512 {
		return errorf(CodeWeakPassword, "a password has at most 512 characters", nil)
	}
	if username != "" && user.NormalizeUsername(pw) == username {
		return errorf(CodeWeakPassword, "the password must not be the username", nil)
	}
	if s.cfg.RequireMixed {
		var letter, other bool
		for _, r := range pw {
			if unicode.IsLetter(r) {
				letter = true
			} else {
				other = true
			}
		}
		if !letter || !other {
			return errorf(CodeWeakPassword, "a password needs letters and digits or symbols", nil)
		}
	}
	return nil
}

// truncate makes client-supplied text storable: valid UTF-8, no control
// characters, at most n bytes, cut between characters.
func truncate(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
