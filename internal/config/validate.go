package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/codehub-dev/codehub/internal/password"
)

// Validate checks the whole configuration in one pass and returns every
// problem found, each naming where the faulty value came from.
func (c *Config) Validate() error {
	v := &validator{cfg: c}

	v.addr("bind-addr", c.BindAddr, false)
	v.oneOf("deployment-mode", c.DeploymentMode, ModeSingle, ModeMulti)
	if c.DeploymentMode == ModeMulti {
		v.fail("deployment-mode", "multi-user mode is not part of this release yet; use \"single\"")
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
		if o == "" || strings.ContainsAny(o, "/ ") && !strings.Contains(o, "://") {
			v.fail(fmt.Sprintf("trusted-origins[%d]", i), "expected a host, host:port or origin URL, got %q", o)
		}
	}
	for i, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				v.fail(fmt.Sprintf("trusted-proxies[%d]", i), "expected an IP address or CIDR range, got %q", p)
			}
		}
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
