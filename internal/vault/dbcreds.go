package vault

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
)

// DefaultDatabaseMount is where the database secrets engine is mounted
// unless DBConfig.Mount says otherwise.
const DefaultDatabaseMount = "database"

// leaseSlack is taken off every lease end computed here: Vault reports
// durations in whole seconds, and the PostgreSQL plugin writes the end
// into VALID UNTIL in whole seconds, so the database may stop accepting a
// password up to a second before the lease says.
const leaseSlack = time.Second

// leaseEnd is when a lease of d, reported at t, should be taken to end.
func leaseEnd(t time.Time, d time.Duration) time.Time {
	return t.Add(d - min(leaseSlack, d/4))
}

// Retry pacing of credential fetches that failed.
const (
	fetchRetryMin = 250 * time.Millisecond
	fetchRetryMax = 30 * time.Second
	fetchTimeout  = 30 * time.Second
)

// DBConfig configures DBCredentials.
type DBConfig struct {
	// Mount of the database secrets engine (default "database").
	Mount string
	// Role whose credentials to take (creds/<Role>). Required.
	Role string
	// ConnMaxLifetime is the connection pool's (sqlstore's
	// Config.ConnMaxLifetime): credentials are replaced while twice this
	// is left of their lease, so no connection outlives the user it
	// logged in as. 0: replaced when a third of the lease is left, and
	// DBCredentials.ConnMaxLifetime says what the pool's should be.
	ConnMaxLifetime time.Duration
}

// DBCredentials supplies PostgreSQL credentials from Vault's database
// secrets engine: a user and password under a lease, which it renews and,
// before the lease (or the token that obtained it) ends, replaces with
// new credentials. Existing connections keep the user they logged in as;
// give every new connection Credentials, and retire connections sooner
// than ConnMaxLifetime. It is safe for concurrent use.
type DBCredentials struct {
	c   *Client
	cfg DBConfig
	log hclog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	mu      sync.Mutex
	cur     *dbLease
	lastErr error // of the last failed fetch, nil after a success
}

// dbLease is one set of credentials.
type dbLease struct {
	user, password string
	secret         *api.Secret
	ttl            time.Duration // as issued; 0: no lease, never expires
	expiry         time.Time     // moved by renewals (DBCredentials.mu); zero: never
	tok            *tokenState   // the token that obtained it: the lease ends with it
	margin         time.Duration // replace it while this much is left
}

// NewDBCredentials fetches the first credentials of cfg.Role through c,
// and keeps credentials valid until Close. Close it before c.
func NewDBCredentials(ctx context.Context, c *Client, cfg DBConfig, log hclog.Logger) (*DBCredentials, error) {
	if c == nil {
		return nil, errors.New("vault: NewDBCredentials needs a Client")
	}
	if cfg.Role == "" {
		return nil, errors.New("vault: DBConfig.Role is required")
	}
	if cfg.ConnMaxLifetime < 0 {
		return nil, fmt.Errorf("vault: DBConfig.ConnMaxLifetime must not be negative, got %s", cfg.ConnMaxLifetime)
	}
	if cfg.Mount == "" {
		cfg.Mount = DefaultDatabaseMount
	}
	cfg.Mount = strings.Trim(cfg.Mount, "/")
	if log == nil {
		log = hclog.NewNullLogger()
	}
	d := &DBCredentials{c: c, cfg: cfg, log: log.Named("vault-db").With("role", cfg.Role), done: make(chan struct{})}
	l, err := d.fetch(ctx)
	if err != nil {
		return nil, err
	}
	d.install(l)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	go d.run()
	return d, nil
}

// Credentials returns the user and password for a new connection: the
// current ones, which stay valid for at least twice ConnMaxLifetime
// (rotation overlaps). It fails only once the current credentials have
// expired and Vault could not issue new ones; the error wraps the cause.
// Its signature is sqlstore's Config.CredentialsFunc.
func (d *DBCredentials) Credentials(ctx context.Context) (user, password string, err error) {
	d.mu.Lock()
	l, lastErr := d.cur, d.lastErr
	d.mu.Unlock()
	// While new credentials are being fetched the current ones are handed
	// out even past their (conservative) end: the database has the last
	// word. Only a failed fetch makes them an error.
	if exp := d.expiryOf(l); lastErr != nil && !exp.IsZero() && !time.Now().Before(exp) {
		return "", "", fmt.Errorf("vault: the database credentials of role %q expired at %s and Vault did not issue new ones: %w",
			d.cfg.Role, exp.Format(time.RFC3339), lastErr)
	}
	return l.user, l.password, nil
}

// User returns the current user name, for logs and tests.
func (d *DBCredentials) User() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur.user
}

// ExpiresAt returns when the current credentials stop working: the end
// of their lease, or of the token that obtained them if that comes first;
// the zero time if never. They are replaced well before.
func (d *DBCredentials) ExpiresAt() time.Time {
	d.mu.Lock()
	l := d.cur
	d.mu.Unlock()
	return d.expiryOf(l)
}

// ConnMaxLifetime returns the longest a pooled connection should live:
// DBConfig.ConnMaxLifetime if set, else half of how much of the lease is
// left when the credentials are replaced. Give it to the pool
// (sqlstore's Config.ConnMaxLifetime), or anything shorter.
func (d *DBCredentials) ConnMaxLifetime() time.Duration {
	if d.cfg.ConnMaxLifetime > 0 {
		return d.cfg.ConnMaxLifetime
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur.margin <= 0 {
		return 0
	}
	return max(d.cur.margin/2, time.Second)
}

// Close stops renewing and replacing the credentials; the lease is left
// to end by itself (open connections keep working until then).
func (d *DBCredentials) Close() error {
	d.once.Do(func() {
		d.cancel()
		<-d.done
	})
	return nil
}

func (d *DBCredentials) expiryOf(l *dbLease) time.Time {
	d.mu.Lock()
	exp := l.expiry
	d.mu.Unlock()
	if te := d.c.expiryOf(l.tok); !te.IsZero() && (exp.IsZero() || te.Before(exp)) {
		exp = te
	}
	return exp
}

// margin is how much of a lease of ttl is left when it is replaced.
func (d *DBCredentials) margin(ttl time.Duration) time.Duration {
	if d.cfg.ConnMaxLifetime > 0 {
		return min(2*d.cfg.ConnMaxLifetime, ttl/2)
	}
	return ttl / 3
}

// fetch reads new credentials.
func (d *DBCredentials) fetch(ctx context.Context) (*dbLease, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	tok := d.c.current() // before the request: the lease may belong to it
	path := d.cfg.Mount + "/creds/" + d.cfg.Role
	sec, err := d.c.api.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("vault: database credentials from %s: %w", path, err)
	}
	if sec == nil {
		// Vault answers 404 where no engine is mounted; an unknown role
		// of a mounted engine is a 400, an error above.
		return nil, fmt.Errorf("vault: database credentials from %s: not found (is the database secrets engine mounted at %s?)", path, d.cfg.Mount)
	}
	user, _ := sec.Data["username"].(string)
	password, _ := sec.Data["password"].(string)
	if user == "" || password == "" {
		return nil, fmt.Errorf("vault: database credentials from %s: the answer holds no username and password", path)
	}
	l := &dbLease{user: user, password: password, secret: sec, tok: tok,
		ttl: time.Duration(sec.LeaseDuration) * time.Second}
	if l.ttl > 0 {
		l.expiry = leaseEnd(time.Now(), l.ttl)
		l.margin = d.margin(l.ttl)
	}
	return l, nil
}

// install makes l the current credentials.
func (d *DBCredentials) install(l *dbLease) {
	d.mu.Lock()
	d.cur, d.lastErr = l, nil
	d.mu.Unlock()
	if l.ttl == 0 {
		d.log.Info("new database credentials, without a lease", "user", l.user)
		return
	}
	if c := d.cfg.ConnMaxLifetime; c > 0 && 2*c > l.ttl/2 {
		d.log.Warn("the lease is too short for the connection lifetime: connections may outlive their credentials; make ConnMaxLifetime at most a quarter of the lease",
			"lease_ttl", l.ttl, "conn_max_lifetime", c)
	}
	// The lease ends with the token that obtained it: have the token
	// replaced while it still has the lease's margin left.
	d.c.requireRemaining(l.margin)
	d.log.Info("new database credentials", "user", l.user, "lease_ttl", l.ttl, "renewable", l.secret.Renewable,
		"replace_with", l.margin)
}

// run keeps credentials valid until Close.
func (d *DBCredentials) run() {
	defer close(d.done)
	for {
		d.mu.Lock()
		l := d.cur
		d.mu.Unlock()
		reason := d.watch(l)
		if d.ctx.Err() != nil {
			return
		}
		d.log.Info("replacing the database credentials", "reason", reason, "user", l.user)
		wait := fetchRetryMin
		for {
			next, err := d.fetch(d.ctx)
			if err == nil {
				d.install(next)
				break
			}
			if d.ctx.Err() != nil {
				return
			}
			d.mu.Lock()
			d.lastErr = err
			d.mu.Unlock()
			d.log.Warn("cannot get new database credentials; the current ones stay in use", "error", err,
				"retry_in", wait, "current_expire", d.expiryOf(l))
			select {
			case <-d.ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, fetchRetryMax)
		}
	}
}

// watch renews l's lease until l must be replaced, and says why; "" on
// Close.
func (d *DBCredentials) watch(l *dbLease) string {
	if l.ttl == 0 {
		select {
		case <-d.ctx.Done():
			return ""
		case <-l.tok.gone:
			return "the Vault token that obtained them was replaced"
		}
	}
	var (
		renewed <-chan *api.RenewOutput
		ended   <-chan error
	)
	if l.secret.Renewable {
		w, err := d.c.api.NewLifetimeWatcher(&api.LifetimeWatcherInput{
			Secret: l.secret, RenewBehavior: api.RenewBehaviorIgnoreErrors,
		})
		if err != nil {
			return fmt.Sprintf("cannot watch the lease: %v", err)
		}
		go w.Start()
		defer w.Stop()
		renewed, ended = w.RenewCh(), w.DoneCh()
	}
	timer := time.NewTimer(d.untilReplace(l))
	defer timer.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return ""
		case <-l.tok.gone:
			// Leases end with the token that obtained them; the old token
			// still has the margin left, so connections made with these
			// credentials retire in time.
			return "the Vault token that obtained them was replaced"
		case r := <-renewed:
			if r.Secret != nil {
				exp := leaseEnd(r.RenewedAt, time.Duration(r.Secret.LeaseDuration)*time.Second)
				d.mu.Lock()
				l.expiry = exp
				d.mu.Unlock()
				d.log.Debug("renewed the database credentials' lease", "user", l.user, "expires", exp)
			}
		case err := <-ended:
			ended = nil // renewals are over; the lease runs out
			if err != nil {
				d.log.Warn("renewing the database credentials' lease failed", "user", l.user, "error", err)
			}
		case <-timer.C:
		}
		wait := d.untilReplace(l)
		if wait <= 0 {
			return "their lease ends soon"
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// untilReplace is how long until l has less than its margin left of its
// lease. (The token's end is the Client's to watch: it logs in again in
// time, see requireRemaining, and l.tok.gone fires.)
func (d *DBCredentials) untilReplace(l *dbLease) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return time.Until(l.expiry.Add(-l.margin))
}
