// Package config holds codehub's configuration: its defaults, the HCL and
// YAML file forms, environment variables and flags, merged in that order and
// validated once, with errors that name the file, line and key at fault.
package config

import (
	"path/filepath"
	"time"
)

// Deployment modes.
const (
	ModeSingle = "single"
	ModeMulti  = "multi"
)

// Authentication methods of single-user mode.
const (
	AuthPassword = "password"
	AuthNone     = "none"
)

// CodeServerVersion is the code-server release codehub is built and tested
// against; `make setup` installs it.
const CodeServerVersion = "4.139.1"

// Config is the whole configuration of a codehub gateway.
type Config struct {
	// BindAddr is the host:port the gateway listens on.
	BindAddr string `config:"bind-addr"`
	// DeploymentMode is "single" (one password, one workspace) or "multi".
	DeploymentMode string `config:"deployment-mode"`
	// Auth is "password" or "none" (single-user mode only; "none" leaves the
	// IDE open to anyone who can reach BindAddr).
	Auth string `config:"auth"`
	// Password is the single-user password in clear text. When neither it
	// nor HashedPassword is set, a random one is generated and kept in
	// DataDir.
	Password string `config:"password"`
	// HashedPassword is an argon2id or argon2i encoded hash of the password,
	// as code-server's hashed-password.
	HashedPassword string `config:"hashed-password"`
	// Cert enables TLS: true (use CertPath, or a generated self-signed
	// certificate), false, or a certificate path.
	Cert Cert `config:"cert"`
	// CertPath is the PEM certificate used when Cert is true.
	CertPath string `config:"cert-path"`
	// CertKey is the PEM private key of the certificate.
	CertKey string `config:"cert-key,alias=cert-key-path"`
	// Folder is the folder the IDE opens (single-user mode).
	Folder string `config:"folder"`
	// Upstream, when set, is an already running IDE (http://host:port or
	// unix:///path/to.sock) to proxy to, instead of a supervised code-server.
	Upstream string `config:"upstream"`
	// DataDir keeps the gateway's own state (generated password, keys).
	DataDir string `config:"data-dir"`
	// UserDataDir is code-server's --user-data-dir in single-user mode; it
	// defaults to code-server's own so that existing settings carry over.
	UserDataDir string `config:"user-data-dir"`
	// ExtensionsDir is code-server's --extensions-dir in single-user mode.
	ExtensionsDir string `config:"extensions-dir"`
	// TrustedOrigins are extra hosts (host or host:port) allowed as the
	// Origin of WebSocket upgrades and form posts, beyond the request's own
	// host.
	TrustedOrigins []string `config:"trusted-origins"`
	// TrustedProxies are addresses or CIDR ranges of reverse proxies whose
	// X-Forwarded-For and X-Forwarded-Proto headers are believed.
	TrustedProxies []string `config:"trusted-proxies"`
	// LogLevel is trace, debug, info, warn or error.
	LogLevel string `config:"log-level,alias=log"`
	// LogFormat is "text" or "json".
	LogFormat string `config:"log-format"`
	// ShutdownTimeout bounds how long a SIGTERM waits for requests to drain.
	ShutdownTimeout Duration `config:"shutdown-timeout"`

	CodeServer    CodeServer    `config:"code-server"`
	Session       Session       `config:"session"`
	LoginThrottle LoginThrottle `config:"login-throttle"`
	Metrics       Metrics       `config:"metrics"`

	sources map[string]Source
}

// CodeServer configures the code-server process codehub supervises.
type CodeServer struct {
	// Path is the code-server launcher. Empty means the one `make setup`
	// installed, then code-server on PATH.
	Path string `config:"path"`
	// Args are extra command-line arguments for code-server.
	Args []string `config:"args"`
	// StartTimeout bounds how long code-server may take to answer.
	StartTimeout Duration `config:"start-timeout"`
	// RestartBackoffMax caps the wait between restarts of a crashing
	// code-server.
	RestartBackoffMax Duration `config:"restart-backoff-max"`
}

// Session configures browser sessions.
type Session struct {
	// TTL is how long a session lasts after login.
	TTL Duration `config:"ttl"`
	// CookieName is the name of the session cookie.
	CookieName string `config:"cookie-name"`
}

// LoginThrottle limits failed login attempts, per client address and over
// all addresses together, as token buckets.
type LoginThrottle struct {
	// PerAddressBurst failed attempts are allowed at once from one address…
	PerAddressBurst int `config:"per-address-burst"`
	// …then one more each PerAddressInterval.
	PerAddressInterval Duration `config:"per-address-interval"`
	// GlobalBurst failed attempts are allowed at once over all addresses…
	GlobalBurst int `config:"global-burst"`
	// …then one more each GlobalInterval.
	GlobalInterval Duration `config:"global-interval"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Enabled serves /metrics.
	Enabled bool `config:"enabled"`
	// BindAddr, when set, serves /metrics on its own listener (for a private
	// network) instead of the gateway's.
	BindAddr string `config:"bind-addr"`
}

// Default returns the configuration used when nothing else is given.
// getenv supplies HOME and the XDG directories.
func Default(getenv func(string) string) *Config {
	return &Config{
		BindAddr:        "127.0.0.1:8080",
		DeploymentMode:  ModeSingle,
		Auth:            AuthPassword,
		DataDir:         filepath.Join(xdgDir(getenv, "XDG_DATA_HOME", ".local/share"), "codehub"),
		UserDataDir:     filepath.Join(xdgDir(getenv, "XDG_DATA_HOME", ".local/share"), "code-server"),
		LogLevel:        "info",
		LogFormat:       "text",
		ShutdownTimeout: Duration(10 * time.Second),
		CodeServer: CodeServer{
			StartTimeout:      Duration(90 * time.Second),
			RestartBackoffMax: Duration(30 * time.Second),
		},
		Session: Session{
			TTL:        Duration(24 * time.Hour),
			CookieName: "codehub_session",
		},
		LoginThrottle: LoginThrottle{
			PerAddressBurst:    5,
			PerAddressInterval: Duration(time.Minute),
			GlobalBurst:        30,
			GlobalInterval:     Duration(2 * time.Second),
		},
		Metrics: Metrics{Enabled: true},
		sources: map[string]Source{},
	}
}

func xdgDir(getenv func(string) string, env, fallback string) string {
	if d := getenv(env); d != "" {
		return d
	}
	home := getenv("HOME")
	if home == "" {
		home = "."
	}
	return filepath.Join(home, fallback)
}

// SourceOf says where the setting at path (e.g. "cert-key") came from.
func (c *Config) SourceOf(path string) Source {
	return c.sources[path]
}

// TLSEnabled reports whether the gateway serves HTTPS.
func (c *Config) TLSEnabled() bool { return c.Cert.Enabled }

// TLSCertFile is the certificate file to serve, or "" for a self-signed one.
func (c *Config) TLSCertFile() string {
	if c.Cert.Path != "" {
		return c.Cert.Path
	}
	return c.CertPath
}
