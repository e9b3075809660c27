package gateway

import (
	"net/http"
	"strings"

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
	r.Use(s.recoverPanics, s.observe, s.withClient)

	r.Handle("/healthz", s.handleHealth()).Methods(http.MethodGet, http.MethodHead)
	if s.cfg.Metrics.Enabled && s.cfg.Metrics.BindAddr == "" {
		r.Handle("/metrics", s.metricsHandler()).Methods(http.MethodGet)
	}
	r.PathPrefix(web.StaticPrefix).Handler(s.pageHeaders(web.Static())).Methods(http.MethodGet, http.MethodHead)

	if s.opts.Identity != nil {
		r.Handle("/login", s.pageHeaders(s.handleLoginPage())).Methods(http.MethodGet, http.MethodHead)
		r.Handle("/login", s.pageHeaders(s.csrf.Handler(s.handleLogin()))).Methods(http.MethodPost)
		// GET only: showing the notice uses it up.
		r.Handle("/login/notice", s.pageHeaders(s.handleNotice())).Methods(http.MethodGet)
		r.Handle("/logout", s.pageHeaders(s.handleLogoutPage())).Methods(http.MethodGet, http.MethodHead)
		r.Handle("/logout", s.pageHeaders(s.csrf.Handler(s.handleLogout()))).Methods(http.MethodPost)

		api := r.PathPrefix("/api/v1").Subrouter()
		api.Use(s.apiHeaders, s.rateLimitAPI, s.csrf.Handler)
		handleAPI(api, []apiRoute{
			{"/auth/login", []string{http.MethodPost}, s.handleAPILogin()},
			{"/auth/refresh", []string{http.MethodPost}, s.handleAPIRefresh()},
			{"/auth/logout", []string{http.MethodPost}, s.authed(s.handleAPILogout())},
			{"/auth/register", []string{http.MethodPost}, s.handleAPIRegister()},
			{"/me", []string{http.MethodGet}, s.authed(s.handleMe())},
			{"/me/sessions", []string{http.MethodGet}, s.authed(s.handleMySessions())},
			{"/me/sessions", []string{http.MethodDelete}, s.authed(s.handleRevokeMySessions())},
			{"/me/sessions/{id}", []string{http.MethodDelete}, s.authed(s.handleRevokeMySession())},
			{"/me/password", []string{http.MethodPost, http.MethodPut}, s.authed(s.handleChangePassword())},
		})
		if s.opts.Workspaces != nil {
			handleAPI(api, []apiRoute{
				{"/me/workspace", []string{http.MethodGet}, s.authed(s.handleMyWorkspace())},
				{"/me/workspace/keepalive", []string{http.MethodPost}, s.authed(s.handleKeepAlive())},
				{"/me/workspace/stop", []string{http.MethodPost}, s.authed(s.handleStopMyWorkspace())},
				{"/me/workspace/restart", []string{http.MethodPost}, s.authed(s.handleRestartMyWorkspace())},
			})
		}
		if s.opts.Identity.MultiUser() {
			s.adminRoutes(api)
		}
		api.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSONError(w, http.StatusNotFound, "not_found", "no such API endpoint")
		})
		api.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here")
		})
		if s.opts.Identity.MultiUser() {
			r.Handle("/signup", s.pageHeaders(s.handleSignupPage())).Methods(http.MethodGet, http.MethodHead)
			r.Handle("/signup", s.pageHeaders(s.csrf.Handler(s.handleSignup()))).Methods(http.MethodPost)
			s.dashboardRoutes(r)
		}
	}

	r.PathPrefix("/").Handler(s.handleIDE())
	return r
}

// apiRoute is one method set of one API path.
type apiRoute struct {
	path    string
	methods []string
	h       http.Handler
}

// handleAPI registers routes, and for each path a last route answering 405
// with Allow for any other method. (gorilla/mux reports a method mismatch
// only for the last path of a subrouter.)
func handleAPI(r *mux.Router, routes []apiRoute) { handleGuardedAPI(r, routes, nil) }

// handleGuardedAPI is handleAPI with guard (if set) in front of the 405
// answers too, so that they tell nothing to whom the guard turns away.
func handleGuardedAPI(r *mux.Router, routes []apiRoute, guard func(http.Handler) http.Handler) {
	var paths []string
	allowed := map[string][]string{}
	for _, rt := range routes {
		r.Handle(rt.path, rt.h).Methods(rt.methods...)
		if _, seen := allowed[rt.path]; !seen {
			paths = append(paths, rt.path)
		}
		allowed[rt.path] = append(allowed[rt.path], rt.methods...)
	}
	for _, p := range paths {
		allow := strings.Join(allowed[p], ", ")
		var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Allow", allow)
			writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", req.Method+" is not allowed here; use "+allow)
		})
		if guard != nil {
			h = guard(h)
		}
		r.Handle(p, h)
	}
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
