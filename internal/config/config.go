// Package config holds codehub's configuration: its defaults, the HCL and
// YAML file forms, environment variables and flags, merged in that order and
// validated once, with errors that name the file, line and key at fault.
package config

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
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
	RequestBody   RequestBody   `config:"request-body"`
	Metrics       Metrics       `config:"metrics"`
	Audit         Audit         `config:"audit"`
	MultiUser     MultiUser     `config:"multi-user"`
	Nomad         Nomad         `config:"nomad"`
	Consul        Consul        `config:"consul"`
	Vault         Vault         `config:"vault"`

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

// RequestBody bounds how slowly a request body may arrive, so that
// connections trickling a body (a slow-loris attack) are closed while
// uploads of any size at any real rate go through.
type RequestBody struct {
	// IdleTimeout is the longest wait for the next bytes of a body; 0
	// turns both limits off.
	IdleTimeout Duration `config:"idle-timeout"`
	// MinRate is the average rate, in bytes per second, a body must keep
	// after its first IdleTimeout of waiting (0: none).
	MinRate int `config:"min-rate"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Enabled serves /metrics.
	Enabled bool `config:"enabled"`
	// BindAddr, when set, serves /metrics on its own listener (for a private
	// network) instead of the gateway's.
	BindAddr string `config:"bind-addr"`
}

// Audit configures the audit log's sinks (in multi-user mode, when
// multi-user.features.audit-logging is on, also the database).
type Audit struct {
	// File is the rotating audit log file; "" turns the file sink off.
	File string `config:"file"`
	// MaxFileMB rotates the file past this size; MaxBackups rotated files
	// are kept.
	MaxFileMB  int `config:"max-file-mb"`
	MaxBackups int `config:"max-backups"`
	// Stdout also writes every entry to standard output.
	Stdout bool `config:"stdout"`
	// KeyFile holds the HMAC keys of the audit chain (empty: audit-key.json
	// in the data directory), unless vault.audit keeps them in Vault.
	KeyFile string `config:"key-file"`
	// CheckpointFile keeps the newest checkpoint of each audit log outside
	// it (empty: audit-checkpoints.json in the data directory).
	CheckpointFile string `config:"checkpoint-file"`
	// A checkpoint is written after CheckpointEntries entries, and
	// CheckpointInterval after an entry at the latest.
	CheckpointEntries  int      `config:"checkpoint-entries"`
	CheckpointInterval Duration `config:"checkpoint-interval"`
}

// TLS is a client's TLS settings for a HashiCorp agent.
type TLS struct {
	CAFile     string `config:"ca-file"`
	CertFile   string `config:"cert-file"`
	KeyFile    string `config:"key-file"`
	ServerName string `config:"server-name"`
	Insecure   bool   `config:"insecure"`
}

// Nomad configures the Nomad orchestrator (isolation strategy
// "container"): workspaces are dispatched instances of a parameterized job.
type Nomad struct {
	// Address of the Nomad API (default: NOMAD_ADDR, then
	// http://127.0.0.1:4646); Token an ACL token (default: NOMAD_TOKEN).
	Address   string `config:"address"`
	Token     string `config:"token"`
	Region    string `config:"region"`
	Namespace string `config:"namespace"`
	// Job is the parameterized workspace job (jobs/workspace.nomad.hcl).
	Job string `config:"job"`
	// WarmPoolJob is the parameterized job of warm workspaces
	// (jobs/warm-pool.nomad.hcl).
	WarmPoolJob string `config:"warm-pool-job"`
	TLS         TLS    `config:"tls"`
}

// Consul configures service discovery.
type Consul struct {
	// Address of the Consul HTTP API (default: CONSUL_HTTP_ADDR, then
	// 127.0.0.1:8500); Token an ACL token (default: CONSUL_HTTP_TOKEN).
	Address string `config:"address"`
	Token   string `config:"token"`
	Scheme  string `config:"scheme"`
	// Datacenter is this gateway's (default: the agent's).
	Datacenter string `config:"datacenter"`
	// Service is the workspaces' service name; GatewayService the
	// gateways' own, registered when RegisterGateway is set.
	Service         string `config:"service"`
	GatewayService  string `config:"gateway-service"`
	RegisterGateway bool   `config:"register-gateway"`
	// AdvertiseAddr is the address other machines reach this gateway at
	// (default: the bind address).
	AdvertiseAddr string `config:"advertise-addr"`
	TLS           TLS    `config:"tls"`
}

// Vault configures where signing keys and database credentials come from.
type Vault struct {
	// Address of Vault (default: VAULT_ADDR); empty disables Vault.
	Address string    `config:"address"`
	Auth    VaultAuth `config:"auth"`
	// Transit signs access tokens with a Vault transit key (Ed25519),
	// instead of the key file.
	Transit VaultTransit `config:"transit"`
	// Database takes PostgreSQL credentials from Vault's database secrets
	// engine, renewed and rotated without failing requests.
	Database VaultDatabase `config:"database"`
	// Audit keeps the audit chain's HMAC keys in Vault instead of the key
	// file.
	Audit VaultAudit `config:"audit"`
	TLS   TLS        `config:"tls"`
}

// VaultAuth says how the gateway logs in to Vault.
type VaultAuth struct {
	// Method is "token" (Token, or VAULT_TOKEN), "approle" (RoleID and
	// SecretIDFile) or "jwt" (Nomad workload identity: the JWT in JWTFile,
	// Role at Mount).
	Method       string `config:"method"`
	Token        string `config:"token"`
	RoleID       string `config:"role-id"`
	SecretIDFile string `config:"secret-id-file"`
	Role         string `config:"role"`
	JWTFile      string `config:"jwt-file"`
	Mount        string `config:"mount"`
}

// VaultTransit names the transit key that signs access tokens.
type VaultTransit struct {
	Enabled bool   `config:"enabled"`
	Mount   string `config:"mount"`
	Key     string `config:"key"`
}

// VaultAudit names the KV (version 2) secret holding the audit chain's
// keys.
type VaultAudit struct {
	Enabled bool   `config:"enabled"`
	Mount   string `config:"mount"`
	Path    string `config:"path"`
}

// VaultDatabase names the database secrets engine role.
type VaultDatabase struct {
	Enabled bool   `config:"enabled"`
	Mount   string `config:"mount"`
	Role    string `config:"role"`
}

// MultiUser is the multi-user mode's configuration: the design's
// multi-user section, which code-server users write in YAML.
type MultiUser struct {
	Auth      MultiUserAuth `config:"auth"`
	Isolation Isolation     `config:"isolation"`
	Limits    Limits        `config:"limits"`
	Features  Features      `config:"features"`
	Scaling   Scaling       `config:"scaling"`
	Usage     Usage         `config:"usage"`
}

// Usage configures the usage sampler behind quotas, the admin charts and
// the per-user metrics.
type Usage struct {
	// SampleInterval is how often usage is measured (and stored, with
	// features.usage-analytics).
	SampleInterval Duration `config:"sample-interval"`
	// Retention is how long stored samples are kept.
	Retention Duration `config:"retention"`
}

// MultiUserAuth says where users and sessions live and how people sign in.
type MultiUserAuth struct {
	// Provider is where accounts come from: "database".
	Provider string       `config:"provider"`
	Database Database     `config:"database"`
	Session  SessionStore `config:"session"`
	// Registration is who may create accounts: "admin" (only admins, with
	// the CLI or API), "invite" (whoever holds an admin's invite) or
	// "open" (anyone, with the sign-up page).
	Registration string         `config:"registration"`
	Password     PasswordPolicy `config:"password"`
	Lockout      Lockout        `config:"lockout"`
	Tokens       Tokens         `config:"tokens"`
}

// Database is the user database.
type Database struct {
	// Type is "sqlite" (a file; the default) or "postgres".
	Type string `config:"type"`
	// Path is the SQLite file.
	Path string `config:"path"`
	// URL is a PostgreSQL connection URL; or give the parts below.
	URL      string `config:"url"`
	Host     string `config:"host"`
	Port     int    `config:"port"`
	Database string `config:"database"`
	Username string `config:"username"`
	Password string `config:"password"`
	SSLMode  string `config:"sslmode"`
	// MaxOpenConns bounds the connection pool (PostgreSQL).
	MaxOpenConns int `config:"max-open-conns"`
}

// SessionStore says where sessions live.
type SessionStore struct {
	// Store is "memory" (one gateway, lost on restart), "redis" or
	// "database" (the user database).
	Store string `config:"store"`
	// TTL is a session's lifetime from sign-in.
	TTL Duration `config:"ttl"`
	// IdleTimeout ends a session unused for this long (0: never).
	IdleTimeout Duration `config:"idle-timeout"`
	// OnLimit is what a sign-in beyond max-sessions-per-user does:
	// "evict-lru" ends the user's least recently used session (the
	// default; "evict-oldest" is its former name), "refuse" refuses the
	// sign-in.
	OnLimit string `config:"on-limit"`
	// CleanupInterval is how often expired sessions are removed.
	CleanupInterval Duration `config:"cleanup-interval"`
	// Redis: URL (redis://…), or host and port, with password and db.
	URL      string `config:"url"`
	Host     string `config:"host"`
	Port     int    `config:"port"`
	Password string `config:"password"`
	DB       int    `config:"db"`
	// Prefix of every Redis key (several installations may share a Redis).
	Prefix string `config:"prefix"`
}

// PasswordPolicy sets the hashing cost and the complexity rules.
type PasswordPolicy struct {
	// MinLength is the shortest accepted password, in characters.
	MinLength int `config:"min-length"`
	// RequireMixed asks for letters and digits or symbols.
	RequireMixed bool `config:"require-mixed"`
	// Argon2id cost of new hashes; hashes with other costs are rehashed at
	// the next sign-in.
	MemoryKiB   int `config:"memory-kib"`
	Iterations  int `config:"iterations"`
	Parallelism int `config:"parallelism"`
	// MaxConcurrent bounds simultaneous hash computations (each takes
	// memory-kib); further sign-ins wait their turn. 0: one per CPU.
	MaxConcurrent int `config:"max-concurrent"`
}

// Lockout slows password guessing: failed sign-ins lock one sign-in name
// from one address (or browser), and failures from many addresses lock
// the name for every address but trusted browsers.
type Lockout struct {
	// MaxFailures failed sign-ins in a row with one name from one address
	// lock that address out of that name (0: never).
	MaxFailures int `config:"max-failures"`
	// Duration of the first lock; each further lock in a row doubles,
	// up to MaxDuration.
	Duration    Duration `config:"duration"`
	MaxDuration Duration `config:"max-duration"`
	// ResetAfter forgets failures and lock history after this long
	// without a failure.
	ResetAfter Duration `config:"reset-after"`
	// GlobalAddresses: failures for one name from at least this many
	// addresses within GlobalWindow lock the name for every address
	// (but browsers with a device cookie for it) for GlobalDuration,
	// doubling for each further lock in a row (0: never).
	GlobalAddresses int      `config:"global-addresses"`
	GlobalWindow    Duration `config:"global-window"`
	GlobalDuration  Duration `config:"global-duration"`
	// DeviceCookieTTL is how long a device cookie, set at each browser
	// sign-in, trusts that browser for its name (0: no device cookies).
	DeviceCookieTTL Duration `config:"device-cookie-ttl"`
}

// Tokens configures API tokens.
type Tokens struct {
	// AccessTTL is the lifetime of a JWT access token.
	AccessTTL Duration `config:"access-ttl"`
	// Issuer and Audience are the JWT iss and aud.
	Issuer   string `config:"issuer"`
	Audience string `config:"audience"`
	// KeysFile keeps the signing keys (0600); default in data-dir.
	KeysFile string `config:"keys-file"`
	// RotateEvery is how often a new signing key is made.
	RotateEvery Duration `config:"rotate-every"`
}

// Isolation says how workspaces are kept apart.
type Isolation struct {
	// Strategy is "process" (an OS account, cgroup and quota per user; needs
	// root), "directory" (one OS account, a directory per user), "container"
	// (Nomad) or "auto": process when running as root, else directory.
	Strategy string `config:"strategy"`
	// Policies is a directory of isolation policies (*.hcl): limits chosen
	// by role or group. Empty: one policy from the limits below.
	Policies string `config:"policies"`
	// BasePath holds one directory per user.
	BasePath string `config:"base-path"`
	// UIDMin and UIDMax bound the workspace accounts (process strategy).
	UIDMin int `config:"uid-min"`
	UIDMax int `config:"uid-max"`
	// Network gives each workspace its own network namespace (process
	// strategy), so that its ports are its own.
	Network bool `config:"network"`
	// Egress lets workspaces with a network namespace open connections to
	// the outside world (git hosts, package registries, the extension
	// marketplace), NATed through the uplink of the host's default route.
	// Off, they reach nothing but the gateway's connections to them.
	// Either way they cannot open connections to the host itself.
	Egress bool `config:"egress"`
	// ReadOnlyPaths are host paths (tools under /opt, a shared SDK...)
	// that process-strategy workspaces see, read-only; their view of the
	// machine has only the system directories, /etc without its secrets,
	// their own home and the IDE's runtime otherwise.
	ReadOnlyPaths []string `config:"read-only-paths"`
	// CleanupGrace is how long after a workspace left the registry
	// (a warm workspace dropped, a start cut short) its account, storage
	// image and home are deleted; never for a home that was a user's.
	CleanupGrace Duration  `config:"cleanup-grace"`
	Container    Container `config:"container"`
}

// Container is the design's container isolation block.
type Container struct {
	Runtime string          `config:"runtime"`
	Image   string          `config:"image"`
	Network string          `config:"network"`
	Limits  ContainerLimits `config:"limits"`
	Volumes []Volume        `config:"volumes"`
}

// ContainerLimits are per-workspace resource limits (memory "2048m", cpu
// in cores).
type ContainerLimits struct {
	Memory string  `config:"memory"`
	CPU    float64 `config:"cpu"`
}

// MemoryMB is Memory in MiB: "2048m", "2g", "512M" or a plain number of
// MiB; 0 when unset.
func (l ContainerLimits) MemoryMB() (int, error) {
	s := strings.TrimSpace(strings.ToLower(l.Memory))
	if s == "" {
		return 0, nil
	}
	mult := 1
	switch {
	case strings.HasSuffix(s, "g"), strings.HasSuffix(s, "gb"), strings.HasSuffix(s, "gi"):
		mult = 1024
		s = strings.TrimRight(s, "gbi")
	case strings.HasSuffix(s, "m"), strings.HasSuffix(s, "mb"), strings.HasSuffix(s, "mi"):
		s = strings.TrimRight(s, "mbi")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 || n > 1<<30/mult {
		return 0, fmt.Errorf("expected a size such as \"2048m\" or \"2g\", got %q", l.Memory)
	}
	return n * mult, nil
}

// Volume is a mount of a workspace container.
type Volume struct {
	Type      string `config:"type"`
	Name      string `config:"name"`
	Source    string `config:"source"`
	MountPath string `config:"mount-path,alias=mountpath"`
	ReadOnly  bool   `config:"read-only,alias=readonly"`
}

// Limits are per-user quotas.
type Limits struct {
	MaxSessionsPerUser int `config:"max-sessions-per-user"`
	// MaxConcurrentConnections is per user; MaxGatewayConnections for
	// the whole gateway.
	MaxConcurrentConnections int `config:"max-concurrent-connections"`
	MaxGatewayConnections    int `config:"max-gateway-connections"`
	StorageQuotaMB           int `config:"storage-quota-mb"`
	MemoryLimitMB            int `config:"memory-limit-mb"`
	CPULimitPercent          int `config:"cpu-limit-percent"`
	// MaxProcesses bounds the processes (and threads) of a workspace.
	MaxProcesses int `config:"max-processes"`
	// APIRequestsPerMinute limits each signed-in user's /api/v1 requests
	// (0: no limit), with APIBurst allowed at once.
	APIRequestsPerMinute int `config:"api-requests-per-minute"`
	APIBurst             int `config:"api-burst"`
	// AnonymousAPIRequestsPerMinute limits /api/v1 requests without a
	// session, per client address (0: no limit), with AnonymousAPIBurst
	// allowed at once.
	AnonymousAPIRequestsPerMinute int `config:"anonymous-api-requests-per-minute"`
	AnonymousAPIBurst             int `config:"anonymous-api-burst"`

	// StorageWarningPercent is the share of their storage a user has
	// used when the editor, /account and the dashboard warn them (100:
	// only when full).
	StorageWarningPercent int `config:"storage-warning-percent"`
}

// Features switch optional parts on and off.
type Features struct {
	AuditLogging   bool   `config:"audit-logging"`
	UsageAnalytics bool   `config:"usage-analytics"`
	AdminDashboard bool   `config:"admin-dashboard"`
	MetricsExport  string `config:"metrics-export"`
}

// Scaling is the design's workspace pool and clean-up settings.
type Scaling struct {
	ContainerPool ContainerPool `config:"container-pool"`
	AutoCleanup   AutoCleanup   `config:"auto-cleanup"`
	// StartConcurrency bounds simultaneous workspace starts; more wait in
	// line.
	StartConcurrency int `config:"start-concurrency"`
}

// ContainerPool is the warm pool of workspaces started before anyone signs
// in.
type ContainerPool struct {
	Enabled      bool `config:"enabled"`
	WarmPoolSize int  `config:"warm-pool-size"`
	// MaxIdleMinutes stops a workspace without real activity for this
	// long (0: never); the user is warned before.
	MaxIdleMinutes int `config:"max-idle-minutes"`
}

// AutoCleanup stops idle workspaces and removes expired sessions.
type AutoCleanup struct {
	Enabled                       bool     `config:"enabled"`
	IdleSessionMinutes            int      `config:"idle-session-minutes"`
	ExpiredSessionCleanupInterval Duration `config:"expired-session-cleanup-interval"`
	// StopWhenSignedOut stops a workspace when its user's last session
	// ends.
	StopWhenSignedOut bool `config:"stop-when-signed-out"`
}

// Default returns the configuration used when nothing else is given.
// getenv supplies HOME and the XDG directories.
func Default(getenv func(string) string) *Config {
	dataHome := xdgDir(getenv, "XDG_DATA_HOME", ".local/share")
	return &Config{
		BindAddr:        "127.0.0.1:8080",
		DeploymentMode:  ModeSingle,
		Auth:            AuthPassword,
		DataDir:         filepath.Join(dataHome, "codehub"),
		UserDataDir:     filepath.Join(dataHome, "code-server"),
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
		RequestBody: RequestBody{
			IdleTimeout: Duration(10 * time.Second), MinRate: 500,
		},
		Metrics: Metrics{Enabled: true},
		Audit:   Audit{File: filepath.Join(dataHome, "codehub", "audit.log"), MaxFileMB: 100, MaxBackups: 10, CheckpointEntries: 100, CheckpointInterval: Duration(time.Minute)},
		Nomad:   Nomad{Job: "codehub-workspace", WarmPoolJob: "codehub-warm-pool", Namespace: "default"},
		Consul: Consul{Service: "codehub-workspace", GatewayService: "codehub-gateway", RegisterGateway: true,
			Scheme: "http"},
		Vault: Vault{
			Auth:     VaultAuth{Method: "token", Mount: "jwt-nomad"},
			Transit:  VaultTransit{Mount: "transit", Key: "codehub-jwt"},
			Database: VaultDatabase{Mount: "database", Role: "codehub"},
			Audit:    VaultAudit{Mount: "secret", Path: "codehub/audit-keys"},
		},
		MultiUser: MultiUser{
			Auth: MultiUserAuth{
				Provider: "database",
				Database: Database{
					Type:         "sqlite",
					Path:         filepath.Join(dataHome, "codehub", "codehub.db"),
					Port:         5432,
					Database:     "codehub",
					Username:     "codehub",
					SSLMode:      "prefer",
					MaxOpenConns: 20,
				},
				Session: SessionStore{
					Store:           "database",
					TTL:             Duration(24 * time.Hour),
					OnLimit:         "evict-lru",
					CleanupInterval: Duration(5 * time.Minute),
					Host:            "127.0.0.1",
					Port:            6379,
					Prefix:          "codehub:",
				},
				Registration: "admin",
				Password: PasswordPolicy{
					MinLength: 10, MemoryKiB: 19 * 1024, Iterations: 2, Parallelism: 1,
				},
				Lockout: Lockout{
					MaxFailures: 5, Duration: Duration(time.Minute), MaxDuration: Duration(time.Hour),
					ResetAfter:      Duration(24 * time.Hour),
					GlobalAddresses: 10, GlobalWindow: Duration(time.Hour), GlobalDuration: Duration(15 * time.Minute),
					DeviceCookieTTL: Duration(30 * 24 * time.Hour),
				},
				Tokens: Tokens{
					AccessTTL: Duration(15 * time.Minute), Issuer: "codehub", Audience: "codehub",
					RotateEvery: Duration(30 * 24 * time.Hour),
				},
			},
			Isolation: Isolation{
				Strategy: "auto", BasePath: filepath.Join(dataHome, "codehub", "users"),
				UIDMin: 200000, UIDMax: 209999, Network: true, Egress: true,
				CleanupGrace: Duration(time.Hour),
			},
			Limits: Limits{
				MaxSessionsPerUser: 5, MaxConcurrentConnections: 100, MaxGatewayConnections: 10000,
				StorageQuotaMB: 10240, MemoryLimitMB: 4096, CPULimitPercent: 100, MaxProcesses: 2048,
				APIRequestsPerMinute: 600, APIBurst: 200,
				AnonymousAPIRequestsPerMinute: 300, AnonymousAPIBurst: 100,
				StorageWarningPercent: 90,
			},
			Features: Features{AuditLogging: true, UsageAnalytics: true, AdminDashboard: true, MetricsExport: "prometheus"},
			Usage:    Usage{SampleInterval: Duration(time.Minute), Retention: Duration(8 * 24 * time.Hour)},
			Scaling: Scaling{
				StartConcurrency: 4,
				ContainerPool:    ContainerPool{Enabled: true, WarmPoolSize: 1, MaxIdleMinutes: 30},
				AutoCleanup: AutoCleanup{Enabled: true, IdleSessionMinutes: 60,
					ExpiredSessionCleanupInterval: Duration(5 * time.Minute)},
			},
		},
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
