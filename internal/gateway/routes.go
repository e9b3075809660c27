package gateway

import (
	"net/http"

	"github.com/codehub-dev/codehub/internal/web"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes lists every route of the gateway in one place. Everything not
// listed is the IDE: it goes through authentication to the proxy.
func (s *Server) routes() http.Handler {
	r := mux.NewRouter()
	// Proxied paths must reach the IDE exactly as the browser sent them.
	r.SkipClean(true)
	r.UseEncodedPath()
	r.Use(s.recoverPanics, s.observe)

	r.Handle("/healthz", s.handleHealth()).Methods(http.MethodGet, http.MethodHead)
	if s.cfg.Metrics.Enabled && s.cfg.Metrics.BindAddr == "" {
		r.Handle("/metrics", s.metricsHandler()).Methods(http.MethodGet)
	}
	r.PathPrefix(web.StaticPrefix).Handler(s.pageHeaders(web.Static())).Methods(http.MethodGet, http.MethodHead)

	if s.opts.Identity != nil {
		r.Handle("/login", s.pageHeaders(s.handleLoginPage())).Methods(http.MethodGet, http.MethodHead)
		r.Handle("/login", s.pageHeaders(s.csrf.Handler(s.handleLogin()))).Methods(http.MethodPost)
		r.Handle("/logout", s.pageHeaders(s.handleLogoutPage())).Methods(http.MethodGet, http.MethodHead)
		r.Handle("/logout", s.pageHeaders(s.csrf.Handler(s.handleLogout()))).Methods(http.MethodPost)

		api := r.PathPrefix("/api/v1").Subrouter()
		api.Use(s.apiHeaders, s.csrf.Handler)
		api.Handle("/auth/login", s.handleAPILogin()).Methods(http.MethodPost)
		api.Handle("/auth/refresh", s.handleAPIRefresh()).Methods(http.MethodPost)
		api.Handle("/auth/logout", s.authed(s.handleAPILogout())).Methods(http.MethodPost)
		api.Handle("/auth/register", s.handleAPIRegister()).Methods(http.MethodPost)
		api.Handle("/me", s.authed(s.handleMe())).Methods(http.MethodGet)
		api.Handle("/me/sessions", s.authed(s.handleMySessions())).Methods(http.MethodGet)
		api.Handle("/me/sessions", s.authed(s.handleRevokeMySessions())).Methods(http.MethodDelete)
		api.Handle("/me/sessions/{id}", s.authed(s.handleRevokeMySession())).Methods(http.MethodDelete)
		api.Handle("/me/password", s.authed(s.handleChangePassword())).Methods(http.MethodPost, http.MethodPut)
		api.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSONError(w, http.StatusNotFound, "not_found", "no such API endpoint")
		})
		api.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here")
		})
		if s.opts.Identity.MultiUser() {
			r.Handle("/signup", s.pageHeaders(s.handleSignupPage())).Methods(http.MethodGet, http.MethodHead)
			r.Handle("/signup", s.pageHeaders(s.csrf.Handler(s.handleSignup()))).Methods(http.MethodPost)
		}
	}

	r.PathPrefix("/").Handler(s.handleIDE())
	return r
}

// metricsHandler serves the gateway's own registry.
func (s *Server) metricsHandler() http.Handler {
	return MetricsHandler(s.opts)
}

// MetricsHandler serves the Prometheus registry of opts, for a separate
// metrics listener.
func MetricsHandler(opts Options) http.Handler {
	return promhttp.HandlerFor(opts.Metrics.Registry, promhttp.HandlerOpts{
		ErrorLog:          opts.Logger.StandardLogger(nil),
		EnableOpenMetrics: true,
	})
}
