// Package vault connects codehub to HashiCorp Vault through the official
// client (github.com/hashicorp/vault/api). A Client logs in (a token,
// AppRole, or a JWT such as Nomad's workload identity), keeps its token
// alive with renew-self, and logs in again when renewal fails, the token
// reaches its maximum TTL or cannot be renewed at all. DBCredentials hands
// out PostgreSQL credentials from the database secrets engine, renews
// their lease, and replaces them before it ends, so that a connection pool
// asking for credentials for every new connection never fails a request.
//
// Renewals follow vault/api's LifetimeWatcher, which runs on the wall
// clock: there is no injectable clock here, and tests use short TTLs.
package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
)

// Auth methods accepted in Auth.Method.
const (
	MethodToken   = "token"
	MethodAppRole = "approle"
	MethodJWT     = "jwt"
)

// Default mounts of the auth methods.
const (
	DefaultAppRoleMount = "approle"
	DefaultJWTMount     = "jwt-nomad"
)

// Retry pacing of logins that failed (Vault unreachable, say).
const (
	loginRetryMin = 250 * time.Millisecond
	loginRetryMax = 30 * time.Second
	loginTimeout  = 30 * time.Second
)

// maxSecretFileSize bounds the secret id and JWT files read.
const maxSecretFileSize = 64 << 10

// Config configures a Client.
type Config struct {
	// Address of Vault, such as https://vault.service.consul:8200.
	// Required.
	Address string
	// TLS configures the connection to an https Address. vault/api's
	// VAULT_CACERT, VAULT_CLIENT_CERT... apply where it leaves a setting
	// empty.
	TLS TLS
	// Auth says how to log in.
	Auth Auth
	// Timeout bounds each request (default 60s, vault/api's).
	Timeout time.Duration
	// MaxRetries is how many times a request that could not connect or got
	// a 5xx is retried, a second or so apart (default 2, vault/api's);
	// negative: never. Retries delay the error a caller sees while Vault
	// is down.
	MaxRetries int
}

// TLS configures the connection to Vault.
type TLS struct {
	// CAFile holds the CA certificates that sign Vault's certificate
	// (default: the system's).
	CAFile string
	// CertFile and KeyFile are a client certificate, if Vault asks for one.
	CertFile, KeyFile string
	// ServerName is the name Vault's certificate must carry, if not the
	// host of Address.
	ServerName string
	// Insecure skips verifying Vault's certificate: for development only.
	Insecure bool
}

// Auth says how the Client logs in.
type Auth struct {
	// Method is MethodToken (the default), MethodAppRole or MethodJWT.
	Method string
	// Token is the token of MethodToken. It is renewed if it can be, but
	// cannot be replaced: give a periodic or long-lived token, or use
	// another method.
	Token string
	// RoleID and SecretIDFile are MethodAppRole's credentials; the file is
	// read at every login, so a rotated secret id is picked up. A secret
	// id limited to one use fails the next login.
	RoleID       string
	SecretIDFile string
	// Role and JWTFile are MethodJWT's: the role at Mount, and the file
	// holding the JWT (Nomad writes a workload identity into the task's
	// secrets/ directory and refreshes it); read at every login.
	Role    string
	JWTFile string
	// Mount is where the method is mounted (default "approle" for
	// MethodAppRole, "jwt-nomad" for MethodJWT).
	Mount string
}

func (c *Config) setDefaults() error {
	if c.Address == "" {
		return errors.New("vault: Config.Address is required")
	}
	if c.Timeout < 0 {
		return fmt.Errorf("vault: Config.Timeout must not be negative, got %s", c.Timeout)
	}
	a := &c.Auth
	if a.Method == "" {
		a.Method = MethodToken
	}
	switch a.Method {
	case MethodToken:
		if a.Token == "" {
			return errors.New("vault: auth method token needs a token")
		}
	case MethodAppRole:
		if a.RoleID == "" || a.SecretIDFile == "" {
			return errors.New("vault: auth method approle needs a role id and a secret id file")
		}
		if a.Mount == "" {
			a.Mount = DefaultAppRoleMount
		}
	case MethodJWT:
		if a.Role == "" || a.JWTFile == "" {
			return errors.New("vault: auth method jwt needs a role and a JWT file")
		}
		if a.Mount == "" {
			a.Mount = DefaultJWTMount
		}
	default:
		return fmt.Errorf("vault: auth method must be %q, %q or %q, got %q", MethodToken, MethodAppRole, MethodJWT, a.Method)
	}
	a.Mount = strings.Trim(a.Mount, "/")
	return nil
}

// Client is a logged-in Vault client that keeps its token valid. It is
// safe for concurrent use.
type Client struct {
	cfg   Config
	log   hclog.Logger
	api   *api.Client
	login *api.Client // without a token: logins must not send a stale one

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	wake chan struct{} // asks the keeper to look at the token again

	mu  sync.Mutex
	tok *tokenState
	// minRemaining: log in again when the token has less than this left
	// (DBCredentials' leases end with the token that obtained them).
	minRemaining time.Duration
}

// tokenState is one token the Client logged in with.
type tokenState struct {
	secret *api.Secret   // the login answer, for the LifetimeWatcher
	ttl    time.Duration // as issued; 0: never expires
	expiry time.Time     // zero: never; moved by renewals (Client.mu)
	gone   chan struct{} // closed when a newer login replaces it
	policy []string      // for logs
}

// New logs in to Vault as cfg.Auth says and keeps the token alive until
// Close. It fails if the first login does: the caller decides whether to
// retry.
func New(ctx context.Context, cfg Config, log hclog.Logger) (*Client, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	ac := api.DefaultConfig()
	if ac.Error != nil {
		return nil, fmt.Errorf("vault: client configuration: %w", ac.Error)
	}
	ac.Address = cfg.Address
	if cfg.Timeout > 0 {
		ac.Timeout = cfg.Timeout
	}
	switch {
	case cfg.MaxRetries > 0:
		ac.MaxRetries = cfg.MaxRetries
	case cfg.MaxRetries < 0:
		ac.MaxRetries = 0
	}
	if t := cfg.TLS; t != (TLS{}) {
		if err := ac.ConfigureTLS(&api.TLSConfig{
			CACert: t.CAFile, ClientCert: t.CertFile, ClientKey: t.KeyFile,
			TLSServerName: t.ServerName, Insecure: t.Insecure,
		}); err != nil {
			return nil, fmt.Errorf("vault: TLS: %w", err)
		}
	}
	a, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	a.ClearToken() // vault/api takes VAULT_TOKEN from the environment
	login, err := a.Clone()
	if err != nil {
		return nil, fmt.Errorf("vault: %w", err)
	}
	login.ClearToken()

	c := &Client{cfg: cfg, log: log.Named("vault"), api: a, login: login,
		done: make(chan struct{}), wake: make(chan struct{}, 1)}
	sec, err := c.doLogin(ctx)
	if err != nil {
		return nil, err
	}
	c.install(sec)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.run()
	return c, nil
}

// API returns the underlying client, logged in. Its token changes when
// the Client logs in again; keep the *api.Client, not the token.
func (c *Client) API() *api.Client { return c.api }

// TokenExpiry returns when the current token expires unless renewed; the
// zero time if it never does.
func (c *Client) TokenExpiry() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tok.expiry
}

// Close stops renewing the token. The token is not revoked: leases it
// obtained stay valid until they end.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.cancel()
		<-c.done
	})
	return nil
}

func (c *Client) current() *tokenState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tok
}

// expiryOf returns st's expiry, which renewals move.
func (c *Client) expiryOf(st *tokenState) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return st.expiry
}

// requireRemaining makes the Client log in again while the token still
// has d left, or half its TTL if that is less; d only grows.
func (c *Client) requireRemaining(d time.Duration) {
	c.mu.Lock()
	grew := d > c.minRemaining
	if grew {
		c.minRemaining = d
	}
	c.mu.Unlock()
	if grew {
		c.kick()
	}
}

// kick wakes the keeper to look at the token again.
func (c *Client) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// canRelogin reports whether the method can get a new token.
func (c *Client) canRelogin() bool { return c.cfg.Auth.Method != MethodToken }

// doLogin gets a token by the configured method.
func (c *Client) doLogin(ctx context.Context) (*api.Secret, error) {
	ctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	a := c.cfg.Auth
	var (
		sec  *api.Secret
		err  error
		path = "auth/" + a.Mount + "/login"
	)
	switch a.Method {
	case MethodToken:
		c.api.SetToken(a.Token)
		var look *api.Secret
		look, err = c.api.Auth().Token().LookupSelfWithContext(ctx)
		if err != nil {
			return nil, fmt.Errorf("vault: look up the configured token: %w", err)
		}
		if look == nil {
			return nil, errors.New("vault: look up the configured token: empty answer")
		}
		ttl, terr := look.TokenTTL()
		renewable, rerr := look.TokenIsRenewable()
		policies, _ := look.TokenPolicies()
		if terr != nil || rerr != nil {
			return nil, fmt.Errorf("vault: look up the configured token: unexpected answer: %w", errors.Join(terr, rerr))
		}
		if ttl < time.Second && look.Data["expire_time"] != nil {
			// Less than a second left, which Vault rounds to 0, the TTL of
			// a token that never expires.
			ttl = time.Second
		}
		return &api.Secret{Auth: &api.SecretAuth{ClientToken: a.Token, Renewable: renewable,
			LeaseDuration: int(ttl / time.Second), Policies: policies}}, nil
	case MethodAppRole:
		var id string
		if id, err = readSecretFile(a.SecretIDFile); err != nil {
			return nil, fmt.Errorf("vault: approle secret id: %w", err)
		}
		sec, err = c.login.Logical().WriteWithContext(ctx, path, map[string]any{"role_id": a.RoleID, "secret_id": id})
	case MethodJWT:
		var jwt string
		if jwt, err = readSecretFile(a.JWTFile); err != nil {
			return nil, fmt.Errorf("vault: jwt: %w", err)
		}
		sec, err = c.login.Logical().WriteWithContext(ctx, path, map[string]any{"role": a.Role, "jwt": jwt})
	}
	if err != nil {
		return nil, fmt.Errorf("vault: log in with %s at %s: %w", a.Method, path, err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, fmt.Errorf("vault: log in with %s at %s: the answer holds no token", a.Method, path)
	}
	return sec, nil
}

// readSecretFile reads a one-line secret (secret id, JWT).
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxSecretFileSize {
		return "", fmt.Errorf("%s is larger than %d bytes", path, maxSecretFileSize)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// install makes sec's token the current one. The API client gets it
// before the state changes, so whoever sees the new state uses the new
// token; whoever saw the old one learns through its gone channel.
func (c *Client) install(sec *api.Secret) {
	ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
	st := &tokenState{secret: sec, ttl: ttl, gone: make(chan struct{}), policy: sec.Auth.Policies}
	if ttl > 0 {
		st.expiry = time.Now().Add(ttl)
	}
	c.api.SetToken(sec.Auth.ClientToken)
	c.mu.Lock()
	old := c.tok
	c.tok = st
	c.mu.Unlock()
	if old != nil {
		close(old.gone)
	}
	if ttl > 0 {
		c.log.Info("logged in to Vault", "method", c.cfg.Auth.Method, "policies", st.policy,
			"ttl", ttl, "renewable", sec.Auth.Renewable)
	} else {
		c.log.Info("logged in to Vault with a token that does not expire", "method", c.cfg.Auth.Method, "policies", st.policy)
	}
}

// run keeps a valid token until Close: it watches the current one and
// logs in again when it must be replaced.
func (c *Client) run() {
	defer close(c.done)
	for {
		st := c.current()
		reason := c.watch(st)
		if c.ctx.Err() != nil {
			return
		}
		if !c.canRelogin() {
			c.log.Error("the Vault token can no longer be renewed, and auth method token cannot log in again: give a periodic token, or use approle or jwt",
				"reason", reason, "expires", c.expiryOf(st))
			<-c.ctx.Done()
			return
		}
		c.log.Info("logging in to Vault again", "reason", reason)
		wait := loginRetryMin
		for {
			sec, err := c.doLogin(c.ctx)
			if err == nil {
				c.install(sec)
				break
			}
			if c.ctx.Err() != nil {
				return
			}
			c.log.Warn("cannot log in to Vault; retrying", "error", err, "in", wait,
				"current_token_expires", c.expiryOf(st))
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, loginRetryMax)
		}
	}
}

// watch renews st until it must be replaced, and says why; it returns ""
// on Close.
func (c *Client) watch(st *tokenState) string {
	if st.ttl == 0 {
		<-c.ctx.Done() // never expires: nothing to renew
		return ""
	}
	w, err := c.api.NewLifetimeWatcher(&api.LifetimeWatcherInput{
		Secret: st.secret, RenewBehavior: api.RenewBehaviorIgnoreErrors,
	})
	if err != nil {
		return fmt.Sprintf("cannot watch the token: %v", err)
	}
	go w.Start()
	defer w.Stop()

	timer := time.NewTimer(c.untilReplace(st))
	defer timer.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return ""
		case err := <-w.DoneCh():
			if err != nil {
				return fmt.Sprintf("renewing the token failed: %v", err)
			}
			return "the token reached its maximum TTL or cannot be renewed"
		case r := <-w.RenewCh():
			if r.Secret != nil && r.Secret.Auth != nil {
				exp := r.RenewedAt.Add(time.Duration(r.Secret.Auth.LeaseDuration) * time.Second)
				c.mu.Lock()
				st.expiry = exp
				c.mu.Unlock()
				c.log.Debug("renewed the Vault token", "expires", exp)
			}
		case <-c.wake:
		case <-timer.C:
		}
		// Renewed, or the required remaining time changed, or it is time.
		d := c.untilReplace(st)
		if d <= 0 {
			if c.canRelogin() {
				return "the token has less left than the database credentials it obtained need"
			}
			d = 24 * time.Hour // nothing to be done; the lifetime watcher says when it ends
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(d)
	}
}

// untilReplace is how long until st has less left than requireRemaining
// asked for (capped at half its TTL, or every login would be followed by
// another); a long time if nothing was asked.
func (c *Client) untilReplace(st *tokenState) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.minRemaining <= 0 || st.expiry.IsZero() {
		return 24 * time.Hour
	}
	return time.Until(st.expiry.Add(-min(c.minRemaining, st.ttl/2)))
}
