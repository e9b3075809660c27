package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/codeserver"
	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/hashicorp/go-hclog"
)

// routeDeps is what the agent's routes need.
type routeDeps struct {
	secret   []byte
	log      hclog.Logger
	health   func() agentapi.Health
	activity func() agentapi.Activity
	usage    func() agentapi.Usage
	stop     func()
	ide      http.Handler
}

// routes is every route of the agent. Nothing, not even an unknown path,
// answers without the secret.
func routes(d routeDeps) http.Handler {
	health := handleJSON(func() any { return d.health() })
	activity := handleJSON(func() any { return d.activity() })
	usage := handleJSON(func() any { return d.usage() })
	stop := handleStop(d.stop, d.log)
	want := sha256.Sum256(d.secret)
	return requireSecret(d.secret, d.log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A path under agentapi.Prefix that is not one of agentapi's is
		// not found, rather than passed to the IDE.
		if !agentapi.IsAgentPath(r.URL) {
			r.Header.Del(agentapi.ControlHeader)
			d.ide.ServeHTTP(w, r)
			return
		}
		// The control endpoints answer the gateway's own calls only, which
		// carry the secret in ControlHeader too; proxied browser traffic
		// never does.
		got := sha256.Sum256([]byte(r.Header.Get(agentapi.ControlHeader)))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			writeJSONError(w, http.StatusNotFound, "not_found", "not found")
			return
		}
		switch r.URL.Path {
		case agentapi.PathHealth:
			onlyMethod(http.MethodGet, health).ServeHTTP(w, r)
		case agentapi.PathActivity:
			onlyMethod(http.MethodGet, activity).ServeHTTP(w, r)
		case agentapi.PathUsage:
			onlyMethod(http.MethodGet, usage).ServeHTTP(w, r)
		case agentapi.PathStop:
			onlyMethod(http.MethodPost, stop).ServeHTTP(w, r)
		default:
			writeJSONError(w, http.StatusNotFound, "not_found", "no such agent endpoint")
		}
	}))
}

// requireSecret refuses, with 401, every request whose SecretHeader is not
// the secret. Both sides are hashed before the constant-time comparison,
// so that not even the secret's length shows in the timing.
func requireSecret(secret []byte, log hclog.Logger, next http.Handler) http.Handler {
	want := sha256.Sum256(secret)
	limit := &logLimiter{every: 10 * time.Second, now: time.Now}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get(agentapi.SecretHeader)))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			if ok, suppressed := limit.allow(); ok {
				reason := "wrong secret"
				if r.Header.Get(agentapi.SecretHeader) == "" {
					reason = "no secret"
				}
				log.Warn("refused request", "reason", reason, "client", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "refusals_not_logged", suppressed)
			}
			writeJSONError(w, http.StatusUnauthorized, "unauthorized", "this workspace answers only its gateway")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// logLimiter lets one log line through per interval and counts the rest.
type logLimiter struct {
	every time.Duration
	now   func() time.Time

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

// allow reports whether a line may be logged now, and how many were held
// back since the last one.
func (l *logLimiter) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.next, l.suppressed = now.Add(l.every), 0
	return true, n
}

func onlyMethod(method string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+method)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func handleJSON(get func() any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, get())
	})
}

// handleStop accepts the stop and starts it once the answer is on its way.
func handleStop(stop func(), log hclog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Info("stop requested", "client", r.RemoteAddr)
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "stopping"})
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		stop()
	})
}

// ideURL names code-server for the proxy; the connection goes to its
// socket whatever the host.
var ideURL = &url.URL{Scheme: "http", Host: "code-server"}

// forwardedHeaders are set by the gateway and passed to code-server as
// they came: code-server checks a WebSocket's Origin against the host the
// browser used.
var forwardedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// newIDEHandler proxies everything else to code-server, waiting up to wait
// for it to be ready. Any Origin is accepted: the gateway checked it.
func newIDEHandler(sup *codeserver.Supervisor, conns *proxy.Registry, wait time.Duration, stopping func() bool, log hclog.Logger) http.Handler {
	p := proxy.New(proxy.Config{
		Logger:      log,
		CheckOrigin: func(*http.Request) bool { return true },
		Conns:       conns,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if sup.Status().State != codeserver.StateRunning {
				ideStarting(w)
				return
			}
			writeJSONError(w, http.StatusBadGateway, "ide_unreachable", "the IDE did not answer")
		},
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(agentapi.SecretHeader)
		if stopping() {
			writeJSONError(w, http.StatusServiceUnavailable, "ide_stopping", "the workspace is stopping")
			return
		}
		if !waitReady(r, sup, wait) {
			ideStarting(w)
			return
		}
		t := &proxy.Target{Key: "code-server", URL: ideURL, Dial: sup.DialContext}
		for _, k := range forwardedHeaders {
			if vs := r.Header.Values(k); len(vs) > 0 {
				if t.Header == nil {
					t.Header = http.Header{}
				}
				t.Header[k] = vs
			}
		}
		addr, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			addr = r.RemoteAddr
		}
		p.Serve(w, r, t, proxy.Client{Owner: owner, Addr: addr, Proto: "http"})
	})
}

func waitReady(r *http.Request, sup *codeserver.Supervisor, wait time.Duration) bool {
	ready := sup.Ready()
	select {
	case <-ready:
		return true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ready:
		return true
	case <-t.C:
	case <-r.Context().Done():
	}
	return false
}

func ideStarting(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "2")
	writeJSONError(w, http.StatusServiceUnavailable, "ide_starting", "the IDE is starting; retry shortly")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSONError(w http.ResponseWriter, status int, code, message string) {
	type body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	writeJSON(w, status, map[string]body{"error": {code, message}})
}
