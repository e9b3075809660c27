package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/codehub-dev/codehub/internal/password"
)

// Validate checks the whole configuration in one pass and returns every
// problem found, each naming where the faulty value came from.
func (c *Config) Validate() error {
	v := &validator{cfg: c}

	v.addr("bind-addr", c.BindAddr, false)
	v.oneOf("deployment-mode", c.DeploymentMode, ModeSingle, ModeMulti)
	if c.DeploymentMode == ModeMulti {
		v.multiUser(&c.MultiUser)
	}
	v.oneOf("auth", c.Auth, AuthPassword, AuthNone)
	if c.Password != "" && c.HashedPassword != "" {
		v.fail("hashed-password", "set either password or hashed-password, not both")
	}
	if c.HashedPassword != "" {
		if _, err := password.Parse(c.HashedPassword); err != nil {
			v.fail("hashed-password", "%v (create one with `codehub hash-password`)", err)
		}
	}
	if c.Cert.Enabled && c.Cert.Path != "" && c.CertPath != "" && c.Cert.Path != c.CertPath {
		v.fail("cert-path", "cert already names a certificate (%s)", c.Cert.Path)
	}
	if c.TLSCertFile() != "" && c.CertKey == "" {
		certKey := "cert"
		if c.Cert.Path == "" {
			certKey = "cert-path"
		}
		v.fail(certKey, "the certificate needs its private key: set cert-key")
	}
	if c.CertKey != "" && c.TLSCertFile() == "" {
		v.fail("cert-key", "cert-key is set but no certificate is: set cert to its path")
	}
	if c.CertPath != "" && !c.Cert.Enabled {
		v.fail("cert-path", "cert-path is set but cert is false")
	}
	if c.Upstream != "" {
		v.upstream("upstream", c.Upstream)
	}
	for i, o := range c.TrustedOrigins {
		if !validTrustedOrigin(o) {
			v.fail(fmt.Sprintf("trusted-origins[%d]", i), "expected a host, host:port or an origin (http:// or https:// host[:port], no path), got %q", o)
		}
	}
	for i, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				v.fail(fmt.Sprintf("trusted-proxies[%d]", i), "expected an IP address or CIDR range, got %q", p)
			}
		}
	}
	v.oneOf("vault.auth.method", c.Vault.Auth.Method, "token", "approle", "jwt")
	v.oneOf("consul.scheme", c.Consul.Scheme, "http", "https")
	if a := c.Nomad.Address; a != "" {
		if u, err := url.Parse(a); err != nil || !((u.Scheme == "http" || u.Scheme == "https") && u.Host != "" || u.Scheme == "unix" && u.Path != "") {
			v.fail("nomad.address", "expected an http://, https:// or unix:// (task API socket) URL, got %q", a)
		}
	}
	if a := c.Vault.Address; a != "" {
		if u, err := url.Parse(a); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.fail("vault.address", "expected an http:// or https:// URL, got %q", a)
		}
	}
	if c.Vault.Transit.Enabled && c.Vault.Transit.Key == "" {
		v.fail("vault.transit.key", "name the transit key that signs tokens")
	}
	if c.Vault.Database.Enabled && c.Vault.Database.Role == "" {
		v.fail("vault.database.role", "name the database secrets engine role")
	}
	if c.Audit.MaxFileMB < 1 {
		v.fail("audit.max-file-mb", "must be at least 1")
	}
	if c.Audit.MaxBackups < 0 {
		v.fail("audit.max-backups", "must not be negative")
	}
	if c.Audit.CheckpointEntries < 1 {
		v.fail("audit.checkpoint-entries", "must be at least 1")
	}
	if c.Audit.CheckpointInterval.D() < time.Second {
		v.fail("audit.checkpoint-interval", "must be at least 1s")
	}
	if c.Vault.Audit.Enabled && (c.Vault.Audit.Mount == "" || c.Vault.Audit.Path == "") {
		v.fail("vault.audit.path", "name the KV mount and the path of the audit keys")
	}
	if c.DataDir == "" {
		v.fail("data-dir", "must name a directory")
	}
	v.oneOf("log-level", strings.ToLower(c.LogLevel), "trace", "debug", "info", "warn", "error")
	v.oneOf("log-format", c.LogFormat, "text", "json")
	v.positive("shutdown-timeout", c.ShutdownTimeout)
	v.positive("code-server.start-timeout", c.CodeServer.StartTimeout)
	v.positive("code-server.restart-backoff-max", c.CodeServer.RestartBackoffMax)
	v.positive("session.ttl", c.Session.TTL)
	if !validCookieName(c.Session.CookieName) {
		v.fail("session.cookie-name", "%q is not a valid cookie name", c.Session.CookieName)
	}
	if c.LoginThrottle.PerAddressBurst < 1 {
		v.fail("login-throttle.per-address-burst", "must be at least 1")
	}
	if c.LoginThrottle.GlobalBurst < 1 {
		v.fail("login-throttle.global-burst", "must be at least 1")
	}
	v.positive("login-throttle.per-address-interval", c.LoginThrottle.PerAddressInterval)
	v.positive("login-throttle.global-interval", c.LoginThrottle.GlobalInterval)
	if c.RequestBody.IdleTimeout < 0 {
		v.fail("request-body.idle-timeout", "must not be negative (0 turns the limits off)")
	}
	if c.RequestBody.MinRate < 0 {
		v.fail("request-body.min-rate", "must not be negative (0: no minimum rate)")
	} else if c.RequestBody.MinRate > 0 && c.RequestBody.IdleTimeout == 0 {
		v.fail("request-body.min-rate", "needs request-body.idle-timeout, the time a body has before the rate counts; set both, or both to 0")
	}
	if c.Metrics.BindAddr != "" {
		v.addr("metrics.bind-addr", c.Metrics.BindAddr, false)
		if c.Metrics.BindAddr == c.BindAddr {
			v.fail("metrics.bind-addr", "must differ from bind-addr; leave it empty to serve /metrics on the gateway")
		}
	}
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

func (v *validator) multiUser(m *MultiUser) {
	a := &m.Auth
	v.oneOf("multi-user.auth.provider", a.Provider, "database")
	v.oneOf("multi-user.auth.database.type", a.Database.Type, "sqlite", "postgres")
	switch a.Database.Type {
	case "sqlite":
		if a.Database.Path == "" {
			v.fail("multi-user.auth.database.path", "the SQLite database needs a file path")
		}
	case "postgres":
		if a.Database.URL == "" && a.Database.Host == "" {
			v.fail("multi-user.auth.database.host", "PostgreSQL needs a host (or a url)")
		}
		if a.Database.URL != "" {
			if u, err := url.Parse(a.Database.URL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
				v.fail("multi-user.auth.database.url", "expected postgres://user:password@host:port/database, got %q", a.Database.URL)
			}
		}
		v.oneOf("multi-user.auth.database.sslmode", a.Database.SSLMode, "disable", "allow", "prefer", "require", "verify-ca", "verify-full")
	}
	if a.Database.Port < 0 || a.Database.Port > 65535 {
		v.fail("multi-user.auth.database.port", "not a port: %d", a.Database.Port)
	}
	if a.Database.MaxOpenConns < 1 {
		v.fail("multi-user.auth.database.max-open-conns", "must be at least 1")
	}
	st := &a.Session
	v.oneOf("multi-user.auth.session.store", st.Store, "memory", "redis", "database")
	v.positive("multi-user.auth.session.ttl", st.TTL)
	if st.IdleTimeout < 0 {
		v.fail("multi-user.auth.session.idle-timeout", "must not be negative")
	}
	v.oneOf("multi-user.auth.session.on-limit", st.OnLimit, "evict-lru", "evict-oldest", "refuse")
	v.positive("multi-user.auth.session.cleanup-interval", st.CleanupInterval)
	if st.Store == "redis" {
		if st.URL != "" {
			if u, err := url.Parse(st.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
				v.fail("multi-user.auth.session.url", "expected redis://[:password@]host:port[/db], got %q", st.URL)
			}
		}
	}
	if st.Port < 0 || st.Port > 65535 {
		v.fail("multi-user.auth.session.port", "not a port: %d", st.Port)
	}
	v.oneOf("multi-user.auth.registration", a.Registration, "admin", "invite", "open")
	p := &a.Password
	if p.MinLength < 8 {
		v.fail("multi-user.auth.password.min-length", "must be at least 8, got %d", p.MinLength)
	}
	if p.MemoryKiB < 8*1024 || p.MemoryKiB > 1<<20 {
		v.fail("multi-user.auth.password.memory-kib", "must be between 8192 (8 MiB) and 1048576 (1 GiB), got %d", p.MemoryKiB)
	}
	if p.Iterations < 1 || p.Iterations > 64 {
		v.fail("multi-user.auth.password.iterations", "must be between 1 and 64, got %d", p.Iterations)
	}
	if p.Parallelism < 1 || p.Parallelism > 64 {
		v.fail("multi-user.auth.password.parallelism", "must be between 1 and 64, got %d", p.Parallelism)
	}
	if p.MaxConcurrent < 0 {
		v.fail("multi-user.auth.password.max-concurrent", "must not be negative")
	}
	if a.Lockout.MaxFailures < 0 {
		v.fail("multi-user.auth.lockout.max-failures", "must not be negative")
	}
	if a.Lockout.MaxFailures > 0 {
		v.positive("multi-user.auth.lockout.duration", a.Lockout.Duration)
		if a.Lockout.MaxDuration < a.Lockout.Duration {
			v.fail("multi-user.auth.lockout.max-duration", "must be at least lockout.duration (%s)", a.Lockout.Duration)
		}
	}
	v.positive("multi-user.auth.lockout.reset-after", a.Lockout.ResetAfter)
	if a.Lockout.GlobalAddresses < 0 {
		v.fail("multi-user.auth.lockout.global-addresses", "must not be negative")
	}
	if a.Lockout.GlobalAddresses == 1 {
		v.fail("multi-user.auth.lockout.global-addresses", "1 would lock a name for everyone after one failure; use at least 2, or 0 for never")
	}
	if a.Lockout.GlobalAddresses > 0 {
		v.positive("multi-user.auth.lockout.global-window", a.Lockout.GlobalWindow)
		v.positive("multi-user.auth.lockout.global-duration", a.Lockout.GlobalDuration)
	}
	if a.Lockout.DeviceCookieTTL < 0 {
		v.fail("multi-user.auth.lockout.device-cookie-ttl", "must not be negative")
	}
	v.positive("multi-user.auth.tokens.access-ttl", a.Tokens.AccessTTL)
	v.positive("multi-user.auth.tokens.rotate-every", a.Tokens.RotateEvery)
	if a.Tokens.Issuer == "" {
		v.fail("multi-user.auth.tokens.issuer", "must not be empty")
	}
	if a.Tokens.Audience == "" {
		v.fail("multi-user.auth.tokens.audience", "must not be empty")
	}
	v.oneOf("multi-user.isolation.strategy", m.Isolation.Strategy, "auto", "process", "directory", "container")
	if m.Isolation.BasePath == "" {
		v.fail("multi-user.isolation.base-path", "must name a directory")
	}
	for _, ro := range m.Isolation.ReadOnlyPaths {
		if !filepath.IsAbs(ro) || filepath.Clean(ro) != ro || ro == "/" {
			v.fail("multi-user.isolation.read-only-paths", "%q must be a clean absolute path below /", ro)
		}
	}
	if m.Isolation.UIDMin < 1000 || m.Isolation.UIDMax < m.Isolation.UIDMin {
		v.fail("multi-user.isolation.uid-min", "the workspace uid range %d-%d must be above 999 and not empty", m.Isolation.UIDMin, m.Isolation.UIDMax)
	}
	if m.Scaling.StartConcurrency < 1 {
		v.fail("multi-user.scaling.start-concurrency", "must be at least 1")
	}
	l := &m.Limits
	for path, n := range map[string]int{
		"multi-user.limits.max-sessions-per-user":      l.MaxSessionsPerUser,
		"multi-user.limits.max-concurrent-connections": l.MaxConcurrentConnections,
		"multi-user.limits.max-gateway-connections":    l.MaxGatewayConnections,
		"multi-user.limits.max-processes":              l.MaxProcesses,
		"multi-user.limits.storage-quota-mb":           l.StorageQuotaMB,
		"multi-user.limits.memory-limit-mb":            l.MemoryLimitMB,
		"multi-user.limits.cpu-limit-percent":          l.CPULimitPercent,
	} {
		if n < 1 {
			v.fail(path, "must be at least 1, got %d", n)
		}
	}
	for path, n := range map[string]int{
		"multi-user.limits.api-requests-per-minute":           l.APIRequestsPerMinute,
		"multi-user.limits.api-burst":                         l.APIBurst,
		"multi-user.limits.anonymous-api-requests-per-minute": l.AnonymousAPIRequestsPerMinute,
		"multi-user.limits.anonymous-api-burst":               l.AnonymousAPIBurst,
	} {
		if n < 0 {
			v.fail(path, "must not be negative, got %d (0 turns the limit off)", n)
		}
	}
	if l.APIRequestsPerMinute > 0 && l.APIBurst < 1 {
		v.fail("multi-user.limits.api-burst", "must be at least 1 when api-requests-per-minute is set")
	}
	if l.AnonymousAPIRequestsPerMinute > 0 && l.AnonymousAPIBurst < 1 {
		v.fail("multi-user.limits.anonymous-api-burst", "must be at least 1 when anonymous-api-requests-per-minute is set")
	}
	if l.StorageWarningPercent < 1 || l.StorageWarningPercent > 100 {
		v.fail("multi-user.limits.storage-warning-percent", "must be 1 to 100, got %d", l.StorageWarningPercent)
	}
	if m.Usage.SampleInterval < Duration(time.Second) {
		v.fail("multi-user.usage.sample-interval", "must be at least 1s, got %s", m.Usage.SampleInterval)
	}
	if m.Usage.Retention < m.Usage.SampleInterval {
		v.fail("multi-user.usage.retention", "must be at least the sample interval (%s), got %s", m.Usage.SampleInterval, m.Usage.Retention)
	}
	if m.Features.MetricsExport != "" {
		v.oneOf("multi-user.features.metrics-export", m.Features.MetricsExport, "prometheus", "none")
	}
	if m.Scaling.ContainerPool.WarmPoolSize < 0 {
		v.fail("multi-user.scaling.container-pool.warm-pool-size", "must not be negative")
	}
	if m.Scaling.ContainerPool.MaxIdleMinutes < 0 {
		v.fail("multi-user.scaling.container-pool.max-idle-minutes", "must not be negative")
	}
	if m.Scaling.AutoCleanup.IdleSessionMinutes < 0 {
		v.fail("multi-user.scaling.auto-cleanup.idle-session-minutes", "must not be negative")
	}
	v.positive("multi-user.scaling.auto-cleanup.expired-session-cleanup-interval", m.Scaling.AutoCleanup.ExpiredSessionCleanupInterval)
	if _, err := m.Isolation.Container.Limits.MemoryMB(); err != nil {
		v.fail("multi-user.isolation.container.limits.memory", "%v", err)
	}
	if c := m.Isolation.Container.Limits.CPU; c < 0 || c > 1024 {
		v.fail("multi-user.isolation.container.limits.cpu", "must be a number of cores between 0 and 1024, got %g", c)
	}
	for i, vol := range m.Isolation.Container.Volumes {
		path := fmt.Sprintf("multi-user.isolation.container.volumes[%d]", i)
		v.oneOf(path+".type", vol.Type, "volume", "bind")
		if vol.MountPath == "" || !strings.HasPrefix(vol.MountPath, "/") {
			v.fail(path+".mount-path", "must be an absolute path, got %q", vol.MountPath)
		}
	}
}

type validator struct {
	cfg  *Config
	errs Errors
}

func (v *validator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Src: v.cfg.sources[path], Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) oneOf(path, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	v.fail(path, "must be one of %s, got %q", strings.Join(allowed, ", "), got)
}

func (v *validator) positive(path string, d Duration) {
	if d <= 0 {
		v.fail(path, "must be a positive duration, got %s", d)
	}
}

func (v *validator) addr(path, addr string, allowEmptyPort bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.fail(path, "expected host:port, got %q", addr)
		return
	}
	if port == "" && !allowEmptyPort {
		v.fail(path, "missing port in %q", addr)
		return
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		v.fail(path, "bad port in %q", addr)
	}
	if host != "" && strings.ContainsAny(host, " /") {
		v.fail(path, "bad host in %q", addr)
	}
}

func (v *validator) upstream(path, raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		v.fail(path, "not a URL: %v", err)
		return
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			v.fail(path, "missing host in %q", raw)
		}
	case "unix":
		if u.Path == "" {
			v.fail(path, "expected unix:///path/to/socket, got %q", raw)
		}
	default:
		v.fail(path, "expected an http://, https:// or unix:// URL, got %q", raw)
	}
}

func validCookieName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) {
			return false
		}
	}
	return true
}

// validTrustedOrigin accepts a trusted-origins entry: "host", "host:port"
// (the gateway's own scheme) or "http(s)://host[:port]", which names the
// scheme too. A path, query, user or fragment is never part of an origin.
func validTrustedOrigin(o string) bool {
	o = strings.TrimSpace(o)
	if !strings.Contains(o, "://") {
		o = "http://" + o
	} else if s, _, _ := strings.Cut(o, "://"); !strings.EqualFold(s, "http") && !strings.EqualFold(s, "https") {
		return false
	}
	u, err := url.Parse(o)
	return err == nil && u.Host != "" && u.Hostname() != "" && (u.Path == "" || u.Path == "/") &&
		u.User == nil && u.RawQuery == "" && u.Fragment == "" && !u.ForceQuery && !strings.HasSuffix(u.Host, ":")
}
