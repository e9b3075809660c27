// Package metrics defines codehub's Prometheus metrics. The names that start
// with code_server_ are those of the design document, kept so that existing
// dashboards and alerts work; codehub_ names are the gateway's own.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every collector, registered on its own registry (never the
// global one), so that tests and several gateways in one process do not
// collide.
type Metrics struct {
	Registry *prometheus.Registry

	LoginAttempts   *prometheus.CounterVec // status: success, failure, throttled
	SessionsCreated prometheus.Counter
	ActiveSessions  prometheus.Gauge
	RequestDuration *prometheus.HistogramVec // method, route, status
	WebSocketsOpen  prometheus.Gauge
	WorkspaceUp     *prometheus.GaugeVec   // state
	WorkspaceStarts *prometheus.CounterVec // result: success, failure

	ContainerStartup *prometheus.HistogramVec // source: cold, warm
	ActiveContainers *prometheus.GaugeVec     // status
	StartQueue       prometheus.Gauge
	WarmPool         prometheus.Gauge
	ConsulCalls      *prometheus.CounterVec // endpoint

	// Set by the usage sampler.
	ActiveUsers prometheus.Gauge
	UserStorage *prometheus.GaugeVec // user: the largest users only

	APIRateLimited *prometheus.CounterVec // kind: user, anonymous

	// Set by the usage sampler: homes that became full and memory over
	// its limit, and processes of workspaces killed for lack of memory.
	QuotaExceeded *prometheus.CounterVec // resource: storage, memory
	OOMKills      prometheus.Counter

	// Sign-in lockout and the session cap (multi-user mode).
	SignInLocks     *prometheus.CounterVec // scope: client, name
	SessionsEvicted prometheus.Counter
}

// New creates the collectors and registers them, with the Go runtime and
// process collectors, on a new registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		LoginAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "code_server_login_attempts_total",
			Help: "Total login attempts, by status (success, failure, throttled).",
		}, []string{"status"}),
		SessionsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "code_server_sessions_created_total",
			Help: "Total sessions created.",
		}),
		ActiveSessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "code_server_active_sessions",
			Help: "Current active sessions.",
		}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "code_server_request_duration_seconds",
			Help:    "Request duration in seconds, by method, route and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "route", "status"}),
		WebSocketsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "codehub_websockets_open",
			Help: "WebSocket connections currently proxied.",
		}),
		WorkspaceUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "codehub_workspace_state",
			Help: "1 for the state the supervised workspace is in, by state.",
		}, []string{"state"}),
		WorkspaceStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "codehub_workspace_starts_total",
			Help: "Workspace (code-server) starts, by result.",
		}, []string{"result"}),
	}
	m.ContainerStartup = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "code_server_container_startup_seconds",
		Help:    "Workspace startup duration in seconds, from the request to the IDE answering, by source (cold, warm).",
		Buckets: []float64{.01, .05, .1, .25, .5, 1, 2, 3, 5, 10, 20, 30, 60, 120},
	}, []string{"source"})
	m.ActiveContainers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "code_server_active_containers",
		Help: "Current workspaces, by status (queued, starting, running, stopping, stopped, failed).",
	}, []string{"status"})
	m.StartQueue = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "codehub_workspace_start_queue",
		Help: "Workspace starts waiting for a free start slot.",
	})
	m.WarmPool = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "codehub_warm_pool_size",
		Help: "Warm workspaces ready to be claimed.",
	})
	m.ActiveUsers = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "code_server_active_users",
		Help: "Current active users: users with at least one live session.",
	})
	m.UserStorage = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "codehub_user_storage_bytes",
		Help: "Storage used in a user's home, by user (the users using most only, to bound the series).",
	}, []string{"user"})
	m.APIRateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "codehub_api_rate_limited_total",
		Help: "API requests refused by the rate limit, by kind of caller (user, anonymous).",
	}, []string{"kind"})
	for _, kind := range []string{"user", "anonymous"} {
		m.APIRateLimited.WithLabelValues(kind)
	}
	m.ConsulCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "codehub_consul_api_calls_total",
		Help: "Consul API calls made by the gateway, by endpoint.",
	}, []string{"endpoint"})
	for _, status := range []string{"success", "failure", "throttled"} {
		m.LoginAttempts.WithLabelValues(status)
	}
	m.QuotaExceeded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "codehub_quota_exceeded_total",
		Help: "Quotas reached, seen by the usage sampler, by resource: storage (a home became full: writes fail) and memory.",
	}, []string{"resource"})
	for _, r := range []string{"storage", "memory"} {
		m.QuotaExceeded.WithLabelValues(r)
	}
	m.OOMKills = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "codehub_workspace_oom_kills_total",
		Help: "Processes of workspaces killed by the kernel for lack of memory (their cgroup's limit), as the usage sampler counts them.",
	})
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.LoginAttempts, m.SessionsCreated, m.ActiveSessions, m.RequestDuration,
		m.WebSocketsOpen, m.WorkspaceUp, m.WorkspaceStarts,
		m.ContainerStartup, m.ActiveContainers, m.StartQueue, m.WarmPool, m.ConsulCalls,
		m.ActiveUsers, m.UserStorage, m.APIRateLimited,
		m.QuotaExceeded, m.OOMKills,
	)
	m.SignInLocks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "codehub_signin_locks_total",
		Help: "Locks started by failed sign-ins, by scope: client (one name from one address or browser) or name (one name from every address).",
	}, []string{"scope"})
	for _, scope := range []string{"client", "name"} {
		m.SignInLocks.WithLabelValues(scope)
	}
	m.SessionsEvicted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "codehub_sessions_evicted_total",
		Help: "Sessions ended to make room for a sign-in over max-sessions-per-user.",
	})
	r.MustRegister(m.SignInLocks, m.SessionsEvicted)
	return m
}
