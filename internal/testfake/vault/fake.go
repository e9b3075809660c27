// Package vault is a fake HashiCorp Vault for tests: an HTTP server that
// speaks exactly the endpoints codehub uses, answering with vault/api's own
// types (api.Secret) and Vault's error shape ({"errors": [...]}, 403
// "permission denied").
//
// It keeps real state and real time: tokens from the token, AppRole and JWT
// auth methods expire and renew by their TTLs and are checked, coarsely, by
// the path patterns of their policies; transit keys are real Ed25519 keys
// with versions; the database engine creates real PostgreSQL users on a
// configured server and drops them when their lease is revoked, expires, or
// the token that obtained them ends. Down and Up make the whole server
// unreachable and back.
//
// Mounts are as on a fresh dev server: the token method and KV version 2
// at secret/ at start.
// sys/mounts and sys/auth enable (POST), list (GET) and disable (DELETE)
// the transit and database engines and the approle and jwt methods;
// disabling one revokes what it issued (leases, with their database
// users; tokens, with their leases), and disabling what is not mounted
// succeeds, as in Vault. A path under no mount answers 404
// {"errors":["no handler for route \"<path>\". route entry not found."]},
// a path a mount has no handler for 404 "unsupported path"; the login of
// an unmounted method needs a token like any other path (403 without).
// What a dev server also has, and the fake does not: cubbyhole/,
// identity/.
//
// Tests that may also run against a real dev Vault take their target from
// Target: the real one when VAULT_ADDR and VAULT_TOKEN are set, this fake
// otherwise.
package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/vault/api"
)

// DefaultRootToken is the root token of a fake started without one.
const DefaultRootToken = "root"

// reapEvery is how often expired tokens and leases are revoked.
const reapEvery = 50 * time.Millisecond

// Config configures a fake Server.
type Config struct {
	// RootToken never expires and may do anything (default "root").
	RootToken string
}

// Server is a running fake Vault. It is safe for concurrent use.
type Server struct {
	tb   testing.TB
	root string
	srv  *http.Server
	stop chan struct{}
	wg   sync.WaitGroup

	netMu sync.Mutex
	addr  string // host:port, kept across Down and Up
	ln    net.Listener
	conns map[net.Conn]struct{}
	down  bool

	// dbMu serializes the SQL the database engine runs, outside mu.
	dbMu sync.Mutex

	mu       sync.Mutex
	closed   bool
	tokens   map[string]*token          // by token id
	policies map[string][]policyPath    // by name
	auths    map[string]string          // auth mount path -> type
	mounts   map[string]string          // secrets mount path -> type
	approles map[string]*appRoleMount   // by mount
	jwts     map[string]*jwtMount       // by mount
	transit  map[string]map[string]*key // mount -> name -> key
	kvs      map[string]kvMount         // by mount
	dbs      map[string]*dbMount        // by mount
	leases   map[string]*lease          // by lease id
	users    []string                   // every database user created
	counts   map[string]int             // requests served, by path
}

// Start starts a fake Vault on a loopback port and closes it when tb ends.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if cfg.RootToken == "" {
		cfg.RootToken = DefaultRootToken
	}
	s := &Server{
		tb:       tb,
		root:     cfg.RootToken,
		stop:     make(chan struct{}),
		conns:    map[net.Conn]struct{}{},
		tokens:   map[string]*token{},
		policies: map[string][]policyPath{},
		auths:    map[string]string{"token": "token"},
		mounts:   map[string]string{"secret": "kv"},
		approles: map[string]*appRoleMount{},
		jwts:     map[string]*jwtMount{},
		transit:  map[string]map[string]*key{},
		kvs:      map[string]kvMount{"secret": {}},
		dbs:      map[string]*dbMount{},
		leases:   map[string]*lease{},
		counts:   map[string]int{},
	}
	s.tokens[s.root] = &token{id: s.root, accessor: randomID(), policies: []string{"root"},
		displayName: "root", created: time.Now()}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         s.connState,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("fake vault: %v", err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	s.wg.Go(s.reap)
	tb.Cleanup(s.Close)
	return s
}

// Addr is the server's URL, as VAULT_ADDR would give it.
func (s *Server) Addr() string { return "http://" + s.addr }

// RootToken is the token that may do anything.
func (s *Server) RootToken() string { return s.root }

func (s *Server) serve(ln net.Listener) {
	s.netMu.Lock()
	s.ln, s.down = ln, false
	s.netMu.Unlock()
	s.wg.Go(func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.logf("fake vault: serve: %v", err)
		}
	})
}

func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	switch st {
	case http.StateNew:
		if s.down {
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	}
}

// Down makes the server unreachable: it stops listening (connections are
// refused) and closes every open connection. State is kept; time goes on,
// so tokens and leases may expire meanwhile.
func (s *Server) Down() {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	if s.down {
		return
	}
	s.down = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
		delete(s.conns, c)
	}
}

// Up makes the server reachable again at the same address.
func (s *Server) Up() {
	s.tb.Helper()
	s.netMu.Lock()
	down := s.down
	s.netMu.Unlock()
	if !down {
		return
	}
	var (
		ln  net.Listener
		err error
	)
	// The port was ours a moment ago; a socket of the closed listener may
	// linger briefly.
	for range 50 {
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.tb.Fatalf("fake vault: listen again on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

// Close stops the server and revokes every outstanding lease, so no
// database user it created outlives the test.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()

	// Requests in flight finish first: their leases are revoked below.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = s.srv.Shutdown(ctx)
	cancel()
	s.srv.Close()
	s.Down()
	close(s.stop)
	s.wg.Wait()

	s.mu.Lock()
	revoke := make([]*lease, 0, len(s.leases))
	for _, l := range s.leases {
		revoke = append(revoke, l)
	}
	s.leases = map[string]*lease{}
	dbs := s.dbs
	s.mu.Unlock()
	for _, l := range revoke {
		s.runRevocation(l)
	}
	for _, m := range dbs {
		for _, c := range m.conns {
			if c.db != nil {
				c.db.Close()
			}
		}
	}
}

// Requests returns how many requests the server answered for a path
// (without /v1/, such as "auth/token/renew-self").
func (s *Server) Requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[path]
}

// DatabaseUsers returns every database user the server created, oldest
// first, revoked or not.
func (s *Server) DatabaseUsers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.users...)
}

func (s *Server) logf(format string, args ...any) {
	defer func() { _ = recover() }() // t.Log after the test ended
	s.tb.Logf(format, args...)
}

// reap revokes expired tokens, with their leases, and expired leases.
func (s *Server) reap() {
	t := time.NewTicker(reapEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		var revoke []*lease
		s.mu.Lock()
		for id, tok := range s.tokens {
			if tok.expired(now) {
				revoke = append(revoke, s.revokeTokenLocked(id)...)
			}
		}
		for id, l := range s.leases {
			if !now.Before(l.expires) {
				delete(s.leases, id)
				revoke = append(revoke, l)
			}
		}
		s.mu.Unlock()
		for _, l := range revoke {
			s.runRevocation(l)
		}
	}
}

// revokeTokenLocked forgets the token and returns its leases, which the
// caller revokes once mu is released.
func (s *Server) revokeTokenLocked(id string) []*lease {
	delete(s.tokens, id)
	var out []*lease
	for lid, l := range s.leases {
		if l.token == id {
			delete(s.leases, lid)
			out = append(out, l)
		}
	}
	return out
}

// ---- HTTP plumbing ----

// request is one API call as the handlers see it.
type request struct {
	method string
	path   string // without /v1/
	body   map[string]any
	tok    *token // nil on unauthenticated paths
}

func (r *request) write() bool {
	return r.method == http.MethodPost || r.method == http.MethodPut
}

// apiError is an error answer: status and messages.
type apiError struct {
	status int
	msgs   []string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.status, strings.Join(e.msgs, "; ")) }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msgs: []string{fmt.Sprintf(format, args...)}}
}

var (
	errPermissionDenied = &apiError{status: http.StatusForbidden, msgs: []string{"permission denied"}}
	errUnsupported      = &apiError{status: http.StatusMethodNotAllowed, msgs: []string{"unsupported operation"}}
)

// errNoRoute is Vault's answer for a path under no mount.
func errNoRoute(path string) *apiError {
	return errorf(http.StatusNotFound, "no handler for route %q. route entry not found.", path)
}

// errUnsupportedPath is Vault's answer for a path a mounted engine or
// method has no handler for (and the fake's for one it does not fake).
var errUnsupportedPath = &apiError{status: http.StatusNotFound, msgs: []string{"1 error occurred:\n\t* unsupported path\n\n"}}

// result is a successful answer: a secret, or nil for 204 No Content.
type result = *api.Secret

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/")
	if !ok {
		writeError(w, errNoRoute(r.URL.Path))
		return
	}
	path = strings.TrimSuffix(path, "/")
	method := r.Method
	if method == http.MethodGet && r.URL.Query().Get("list") == "true" {
		method = "LIST"
	}
	req := &request{method: method, path: path, body: map[string]any{}}
	if r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			writeError(w, errorf(http.StatusBadRequest, "read body: %v", err))
			return
		}
		if len(bytes.TrimSpace(b)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.UseNumber()
			if err := dec.Decode(&req.body); err != nil {
				writeError(w, errorf(http.StatusBadRequest, "failed to parse JSON input: %v", err))
				return
			}
		}
	}
	s.mu.Lock()
	s.counts[path]++
	s.mu.Unlock()

	if !s.unauthenticated(path) {
		tokID := r.Header.Get(api.AuthHeaderName)
		if tokID == "" {
			tokID, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		}
		tok, err := s.authorize(tokID, req)
		if err != nil {
			writeError(w, err)
			return
		}
		req.tok = tok
	}
	sec, err := s.route(req)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = errorf(http.StatusInternalServerError, "%v", err)
		}
		writeError(w, ae)
		return
	}
	if sec == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if sec.RequestID == "" {
		sec.RequestID = uuid.NewString()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(sec)
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	msgs := e.msgs
	if msgs == nil {
		msgs = []string{}
	}
	// Vault writes "errors", lower case. api.ErrorResponse has no JSON
	// tag: encoded, it would say "Errors", which vault/api still reads as
	// an error but, on a 404, as a secret holding {"Errors": ...} too.
	_ = json.NewEncoder(w).Encode(struct {
		Errors []string `json:"errors"`
	}{msgs})
}

// unauthenticated paths need no token, as in Vault: health, and the
// login of an auth method that is mounted. Any other path, a login under
// no mount included, needs a token: without one it is denied (403), with
// one that may ask, it has no handler (404).
func (s *Server) unauthenticated(path string) bool {
	if path == "sys/health" {
		return true
	}
	mount, ok := strings.CutSuffix(strings.TrimPrefix(path, "auth/"), "/login")
	if !ok || !strings.HasPrefix(path, "auth/") {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, mounted := s.auths[mount]
	return mounted && mount != "token"
}

func (s *Server) route(r *request) (result, error) {
	switch {
	case r.path == "sys/health":
		return &api.Secret{Data: map[string]any{"initialized": true, "sealed": false, "standby": false,
			"version": "1.0.0-fake"}}, nil
	case strings.HasPrefix(r.path, "sys/"):
		return s.routeSys(r)
	case strings.HasPrefix(r.path, "auth/"):
		return s.routeAuth(r)
	}
	s.mu.Lock()
	mount, rest, typ := longestMount(s.mounts, r.path)
	s.mu.Unlock()
	switch typ {
	case "transit":
		return s.routeTransit(r, mount, rest)
	case "database":
		return s.routeDatabase(r, mount, rest)
	case "kv":
		return s.routeKV(r, mount, rest)
	}
	return nil, errNoRoute(r.path)
}

// longestMount finds the mount path is under.
func longestMount(mounts map[string]string, path string) (mount, rest, typ string) {
	for m, t := range mounts {
		if (path == m || strings.HasPrefix(path, m+"/")) && len(m) > len(mount) {
			mount, typ = m, t
		}
	}
	if mount != "" {
		rest = strings.TrimPrefix(strings.TrimPrefix(path, mount), "/")
	}
	return mount, rest, typ
}

func (s *Server) routeSys(r *request) (result, error) {
	switch {
	case r.path == "sys/mounts":
		return s.enable(r, "", false)
	case r.path == "sys/auth":
		return s.enable(r, "", true)
	case strings.HasPrefix(r.path, "sys/mounts/"):
		return s.enable(r, strings.TrimPrefix(r.path, "sys/mounts/"), false)
	case strings.HasPrefix(r.path, "sys/auth/"):
		return s.enable(r, strings.TrimPrefix(r.path, "sys/auth/"), true)
	case strings.HasPrefix(r.path, "sys/policies/acl/"):
		return s.policy(r, strings.TrimPrefix(r.path, "sys/policies/acl/"))
	case strings.HasPrefix(r.path, "sys/policy/"):
		return s.policy(r, strings.TrimPrefix(r.path, "sys/policy/"))
	case r.path == "sys/leases/renew":
		return s.renewLease(r)
	case r.path == "sys/leases/revoke":
		return s.revokeLease(r)
	case r.path == "sys/leases/lookup":
		return s.lookupLease(r)
	}
	return nil, errUnsupportedPath
}

// enable mounts a secrets engine or an auth method (POST), lists them
// (GET on sys/mounts or sys/auth), or unmounts one (DELETE), as Vault's
// sys/mounts and sys/auth do. Unmounting revokes what the mount issued:
// a database engine's leases (its users are dropped), an auth method's
// tokens with their leases; unmounting what is not mounted succeeds.
func (s *Server) enable(r *request, path string, auth bool) (result, error) {
	path = strings.Trim(path, "/")
	if path == "" {
		if r.method != http.MethodGet {
			return nil, errUnsupported
		}
		return s.listMounts(auth), nil
	}
	typ := str(r.body["type"])
	if typ == "kv-v2" {
		typ = "kv"
	}
	if typ == "kv" && !auth {
		// Only version 2 is served, as what codehub uses.
		if opts, _ := r.body["options"].(map[string]any); str(opts["version"]) != "2" {
			return nil, errorf(http.StatusBadRequest, "the fake serves KV version 2 only: mount with options version=2")
		}
	}
	s.mu.Lock()
	table := s.mounts
	if auth {
		table = s.auths
	}
	if r.method == http.MethodDelete {
		if auth && path == "token" {
			s.mu.Unlock()
			return nil, errorf(http.StatusBadRequest, "token credential backend cannot be disabled")
		}
		typ, ok := table[path]
		if !ok {
			s.mu.Unlock()
			return nil, nil
		}
		delete(table, path)
		revoke := s.revokeMountLocked(path, auth)
		// A request that resolved the mount just before sees an empty
		// one, never a missing one.
		conns := s.resetMountLocked(path, typ, auth)
		s.mu.Unlock()
		for _, l := range revoke {
			s.runRevocation(l)
		}
		for _, c := range conns {
			if c.db != nil {
				c.db.Close()
			}
		}
		return nil, nil
	}
	defer s.mu.Unlock()
	if !r.write() {
		return nil, errUnsupported
	}
	for m := range table {
		// The same path, one inside it or one it is inside: 409, as
		// current Vault and OpenBao answer (older Vaults said 400).
		if strings.HasPrefix(path+"/", m+"/") || strings.HasPrefix(m+"/", path+"/") {
			return nil, errorf(http.StatusConflict, "path is already in use at %s/", m)
		}
	}
	switch {
	case auth && (typ == "approle" || typ == "jwt"), !auth && (typ == "transit" || typ == "database" || typ == "kv"):
	default:
		return nil, errorf(http.StatusBadRequest, "plugin not found in the catalog: %s", typ)
	}
	for _, c := range s.resetMountLocked(path, typ, auth) {
		if c.db != nil {
			c.db.Close() // no lease can use them: none outlives an unmount
		}
	}
	table[path] = typ
	return nil, nil
}

// resetMountLocked gives the mount at path fresh, empty state, and
// returns the database connections of the state it had, for the caller to
// close once their leases are revoked. mu is held.
func (s *Server) resetMountLocked(path, typ string, auth bool) []*dbConn {
	var conns []*dbConn
	switch {
	case auth && typ == "approle":
		s.approles[path] = newAppRoleMount()
	case auth && typ == "jwt":
		s.jwts[path] = newJWTMount()
	case !auth && typ == "transit":
		s.transit[path] = map[string]*key{}
	case !auth && typ == "kv":
		s.kvs[path] = kvMount{}
	case !auth && typ == "database":
		if old := s.dbs[path]; old != nil {
			for _, c := range old.conns {
				conns = append(conns, c)
			}
		}
		s.dbs[path] = newDBMount()
	}
	return conns
}

// revokeMountLocked forgets what the mount at path issued and returns
// the leases the caller must revoke once mu is released.
func (s *Server) revokeMountLocked(path string, auth bool) []*lease {
	var out []*lease
	if auth {
		for id, t := range s.tokens {
			if strings.HasPrefix(t.path, "auth/"+path+"/") {
				out = append(out, s.revokeTokenLocked(id)...)
			}
		}
		return out
	}
	for id, l := range s.leases {
		if strings.HasPrefix(id, path+"/") {
			delete(s.leases, id)
			out = append(out, l)
		}
	}
	return out
}

// listMounts answers GET sys/mounts and sys/auth: each mount's type by
// its path with a trailing slash, as Vault lists them.
func (s *Server) listMounts(auth bool) *api.Secret {
	s.mu.Lock()
	defer s.mu.Unlock()
	table := s.mounts
	if auth {
		table = s.auths
	}
	data := map[string]any{}
	for path, typ := range table {
		data[path+"/"] = map[string]any{"type": typ, "description": "", "accessor": typ + "_" + path,
			"config": map[string]any{"default_lease_ttl": 0, "max_lease_ttl": 0}, "options": map[string]any{}, "local": false}
	}
	return &api.Secret{Data: data}
}

// ---- policies, coarsely ----

// policyPath is one path rule of a policy: a Vault path pattern ("*" at the
// end matches any suffix, "+" one segment) and whether it denies.
type policyPath struct {
	pattern string
	deny    bool
}

var (
	policyPathRE = regexp.MustCompile(`path\s+"([^"]+)"\s*\{([^}]*)\}`)
	denyRE       = regexp.MustCompile(`"deny"`)
)

// defaultPolicy is what Vault's "default" policy allows a token to do
// with itself.
var defaultPolicy = []policyPath{
	{pattern: "auth/token/lookup-self"}, {pattern: "auth/token/renew-self"},
	{pattern: "auth/token/revoke-self"}, {pattern: "sys/leases/renew"}, {pattern: "sys/leases/lookup"},
}

func (s *Server) policy(r *request, name string) (result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.write():
		text := str(r.body["policy"])
		if text == "" {
			text = str(r.body["rules"])
		}
		var paths []policyPath
		for _, m := range policyPathRE.FindAllStringSubmatch(text, -1) {
			paths = append(paths, policyPath{pattern: m[1], deny: denyRE.MatchString(m[2])})
		}
		if len(paths) == 0 {
			return nil, errorf(http.StatusBadRequest, "failed to parse policy: no path rules")
		}
		s.policies[name] = paths
		return nil, nil
	case r.method == http.MethodDelete:
		delete(s.policies, name)
		return nil, nil
	case r.method == http.MethodGet:
		paths, ok := s.policies[name]
		if !ok {
			return nil, &apiError{status: http.StatusNotFound}
		}
		var b strings.Builder
		for _, p := range paths {
			caps := `["create", "read", "update", "delete", "list"]`
			if p.deny {
				caps = `["deny"]`
			}
			fmt.Fprintf(&b, "path %q { capabilities = %s }\n", p.pattern, caps)
		}
		return &api.Secret{Data: map[string]any{"name": name, "policy": b.String()}}, nil
	}
	return nil, errUnsupported
}

// matchPattern matches a Vault policy path pattern: "+" matches one
// segment, and a "*" at the end any suffix.
func matchPattern(pattern, path string) bool {
	prefix, glob := strings.CutSuffix(pattern, "*")
	ps, xs := strings.Split(prefix, "/"), strings.Split(path, "/")
	if glob {
		if len(xs) < len(ps) {
			return false
		}
		for i, p := range ps {
			if i == len(ps)-1 {
				return strings.HasPrefix(xs[i], p)
			}
			if p != "+" && p != xs[i] {
				return false
			}
		}
	}
	if len(ps) != len(xs) {
		return false
	}
	for i, p := range ps {
		if p != "+" && p != xs[i] {
			return false
		}
	}
	return true
}

// authorize finds the token and checks, by path only, that one of its
// policies allows path. mu is not held.
func (s *Server) authorize(id string, r *request) (*token, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok, ok := s.tokens[id]
	if !ok || tok.expired(time.Now()) {
		return nil, errPermissionDenied
	}
	if s.allowedLocked(tok, r.path) {
		return tok, nil
	}
	return nil, errPermissionDenied
}

func (s *Server) allowedLocked(tok *token, path string) bool {
	allowed := false
	for _, name := range tok.policies {
		if name == "root" {
			return true
		}
		rules := s.policies[name]
		if name == "default" {
			rules = defaultPolicy
		}
		for _, p := range rules {
			if matchPattern(p.pattern, path) {
				if p.deny {
					return false
				}
				allowed = true
			}
		}
	}
	return allowed
}

// ---- helpers for request bodies ----

// str reads a string field.
func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// strList reads a list of strings: a JSON array or a comma-separated
// string, as Vault accepts both.
func strList(v any) []string {
	var out []string
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if s := strings.TrimSpace(str(e)); s != "" {
				out = append(out, s)
			}
		}
	case string:
		for _, e := range strings.Split(x, ",") {
			if s := strings.TrimSpace(e); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// duration reads a TTL: a number of seconds, or a Go duration string
// ("1h", "90s"), as Vault accepts both.
func duration(v any) (time.Duration, error) {
	switch x := v.(type) {
	case nil:
		return 0, nil
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", x)
		}
		return time.Duration(n) * time.Second, nil
	case string:
		if x == "" {
			return 0, nil
		}
		var n int64
		if _, err := fmt.Sscanf(x, "%d", &n); err == nil && fmt.Sprint(n) == x {
			return time.Duration(n) * time.Second, nil
		}
		d, err := time.ParseDuration(x)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", x)
		}
		return d, nil
	}
	return 0, fmt.Errorf("invalid duration %v", v)
}

// boolean reads a bool field, def when absent.
func boolean(v any, def bool) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		return x == "true" || x == "1"
	}
	return def
}

// seconds is d in whole seconds, as Vault reports TTLs.
func seconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(d / time.Second)
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomString returns n random characters of alphabet.
func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func randomID() string { return uuid.NewString() }

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---- real or fake ----

// Env is the Vault a test runs against.
type Env struct {
	// Addr and Token reach it with root privileges.
	Addr, Token string
	// Fake is the fake, or nil against a real Vault.
	Fake *Server
}

// Real reports whether the test runs against a real Vault.
func (e *Env) Real() bool { return e.Fake == nil }

// NeedFake skips tb against a real Vault: what it does (making Vault
// unreachable, say) only the fake can.
func (e *Env) NeedFake(tb testing.TB, why string) {
	tb.Helper()
	if e.Real() {
		tb.Skipf("needs the fake Vault (%s); skipped against the real one at %s", why, e.Addr)
	}
}

// Client returns a vault/api client with the root token, for setting up.
func (e *Env) Client(tb testing.TB) *api.Client {
	tb.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = e.Addr
	cfg.MaxRetries = 0
	c, err := api.NewClient(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetToken(e.Token)
	return c
}

// Mount enables a secrets engine of type typ ("transit", "database") at
// a path of its own, and disables it when tb ends, which revokes what it
// issued. A dev server mounts neither, and on a shared Vault the test's
// keys, connections and roles stay its own.
func (e *Env) Mount(tb testing.TB, typ string) string {
	tb.Helper()
	return e.MountSecrets(tb, typ, nil)
}

// MountSecrets is Mount with the engine's options ("kv" with version
// "2"); a KV mount is waited for until it answers.
func (e *Env) MountSecrets(tb testing.TB, typ string, options map[string]string) string {
	tb.Helper()
	path := uniquePath(typ)
	c := e.Client(tb)
	if err := c.Sys().Mount(path, &api.MountInput{Type: typ, Options: options}); err != nil {
		tb.Fatalf("enable secrets engine %s at %s: %v", typ, path, err)
	}
	tb.Cleanup(func() {
		if err := c.Sys().Unmount(path); err != nil {
			tb.Errorf("disable secrets engine at %s: %v", path, err)
		}
	})
	if typ == "kv" {
		// A new KV version 2 mount refuses requests while it upgrades
		// itself, for a moment.
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := c.Logical().Read(path + "/data/ready")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("KV mount %s not ready: %v", path, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return path
}

// MountAuth enables an auth method of type typ ("jwt", "approle") at a
// path of its own, and disables it when tb ends, which revokes the tokens
// it issued: its configuration (a JWT validation key, say) is then the
// test's alone, even on a shared Vault.
func (e *Env) MountAuth(tb testing.TB, typ string) string {
	tb.Helper()
	path := uniquePath(typ)
	c := e.Client(tb)
	if err := c.Sys().EnableAuthWithOptions(path, &api.EnableAuthOptions{Type: typ}); err != nil {
		tb.Fatalf("enable auth method %s at %s: %v", typ, path, err)
	}
	tb.Cleanup(func() {
		if err := c.Sys().DisableAuth(path); err != nil {
			tb.Errorf("disable auth method at %s: %v", path, err)
		}
	})
	return path
}

// uniquePath is a mount path for typ that no other test run uses.
func uniquePath(typ string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s-test-%x", typ, b)
}

// Target returns the real Vault at VAULT_ADDR with the root (or otherwise
// all-powerful) token VAULT_TOKEN when both are set, and a new fake
// otherwise.
func Target(tb testing.TB) *Env {
	tb.Helper()
	addr, tok := os.Getenv("VAULT_ADDR"), os.Getenv("VAULT_TOKEN")
	if addr != "" && tok != "" {
		e := &Env{Addr: addr, Token: tok}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := e.Client(tb).Auth().Token().LookupSelfWithContext(ctx); err != nil {
			tb.Fatalf("VAULT_ADDR=%s with VAULT_TOKEN: %v", addr, err)
		}
		return e
	}
	s := Start(tb, Config{})
	return &Env{Addr: s.Addr(), Token: s.RootToken(), Fake: s}
}
