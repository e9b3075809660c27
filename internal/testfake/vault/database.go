package vault

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// expirationLayout is how Vault writes {{expiration}} into statements.
const expirationLayout = "2006-01-02 15:04:05-0700"

// sqlTimeout bounds the statements the engine runs.
const sqlTimeout = 30 * time.Second

// DefaultRevocationStatements are what the fake runs when a role names
// none: the user can no longer log in, its sessions end, it loses what it
// owns, and is dropped.
var DefaultRevocationStatements = []string{
	`ALTER ROLE "{{name}}" NOLOGIN`,
	`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{{name}}'`,
	`REASSIGN OWNED BY "{{name}}" TO CURRENT_USER`,
	`DROP OWNED BY "{{name}}"`,
	`DROP ROLE IF EXISTS "{{name}}"`,
}

// defaultRenewStatements are Vault's PostgreSQL plugin's.
var defaultRenewStatements = []string{`ALTER ROLE "{{name}}" VALID UNTIL '{{expiration}}'`}

type dbMount struct {
	conns map[string]*dbConn
	roles map[string]*dbRole
}

func newDBMount() *dbMount {
	return &dbMount{conns: map[string]*dbConn{}, roles: map[string]*dbRole{}}
}

// dbConn is a database connection configuration (database/config/<name>).
type dbConn struct {
	name, plugin, url, username string
	allowedRoles                []string
	db                          *sql.DB
}

// dbRole is a role (database/roles/<name>).
type dbRole struct {
	dbName                      string
	creation, revocation, renew []string
	defaultTTL, maxTTL          time.Duration
}

// lease is one issued set of database credentials.
type lease struct {
	id, username string
	conn         *dbConn
	revocation   []string
	renew        []string
	ttl, maxTTL  time.Duration
	issued       time.Time
	expires      time.Time
	lastRenewal  time.Time
	token        string // the token that obtained it
}

func (s *Server) routeDatabase(r *request, mount, rest string) (result, error) {
	kind, name, _ := strings.Cut(rest, "/")
	if name == "" || strings.Contains(name, "/") {
		return nil, errUnsupportedPath
	}
	switch kind {
	case "config":
		return s.dbConfig(r, mount, name)
	case "roles":
		return s.dbRoleEndpoint(r, mount, name)
	case "creds":
		if r.method != http.MethodGet {
			return nil, errUnsupported
		}
		return s.dbCreds(r, mount, name)
	}
	return nil, errUnsupportedPath
}

func (s *Server) dbConfig(r *request, mount, name string) (result, error) {
	if r.method == http.MethodGet {
		s.mu.Lock()
		defer s.mu.Unlock()
		c, ok := s.dbs[mount].conns[name]
		if !ok {
			return nil, &apiError{status: http.StatusNotFound}
		}
		return &api.Secret{Data: map[string]any{
			"plugin_name": c.plugin, "allowed_roles": c.allowedRoles,
			"connection_details": map[string]any{"connection_url": c.url, "username": c.username},
		}}, nil
	}
	if !r.write() {
		return nil, errUnsupported
	}
	c := &dbConn{
		name: name, plugin: str(r.body["plugin_name"]), url: str(r.body["connection_url"]),
		username: str(r.body["username"]), allowedRoles: strList(r.body["allowed_roles"]),
	}
	if c.plugin != "postgresql-database-plugin" {
		return nil, errorf(http.StatusBadRequest, "the fake supports postgresql-database-plugin only, got %q", c.plugin)
	}
	dsn := strings.NewReplacer("{{username}}", c.username, "{{password}}", str(r.body["password"])).Replace(c.url)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "error creating database object: %v", err)
	}
	if boolean(r.body["verify_connection"], true) {
		ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
		defer cancel()
		if err := db.PingContext(ctx); err != nil {
			db.Close()
			return nil, errorf(http.StatusBadRequest, "error creating database object: error verifying connection: %v", err)
		}
	}
	c.db = db
	s.mu.Lock()
	old := s.dbs[mount].conns[name]
	s.dbs[mount].conns[name] = c
	s.mu.Unlock()
	if old != nil && old.db != nil {
		old.db.Close()
	}
	return nil, nil
}

// statements reads a list of SQL statements: a JSON array, a string
// holding one, or one semicolon-separated string, as Vault accepts.
func statements(v any) []string {
	var raw []string
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			raw = append(raw, str(e))
		}
	case string:
		var arr []string
		if json.Unmarshal([]byte(x), &arr) == nil {
			raw = arr
		} else if x != "" {
			raw = []string{x}
		}
	}
	var out []string
	for _, s := range raw {
		out = append(out, splitSQL(s)...)
	}
	return out
}

// splitSQL splits on semicolons outside single and double quotes.
func splitSQL(s string) []string {
	var (
		out   []string
		cur   strings.Builder
		quote rune
	)
	for _, c := range s {
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == ';':
			if t := strings.TrimSpace(cur.String()); t != "" {
				out = append(out, t)
			}
			cur.Reset()
			continue
		}
		cur.WriteRune(c)
	}
	if t := strings.TrimSpace(cur.String()); t != "" {
		out = append(out, t)
	}
	return out
}

func (s *Server) dbRoleEndpoint(r *request, mount, name string) (result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.dbs[mount]
	switch {
	case r.write():
		role := &dbRole{
			dbName:     str(r.body["db_name"]),
			creation:   statements(r.body["creation_statements"]),
			revocation: statements(r.body["revocation_statements"]),
			renew:      statements(r.body["renew_statements"]),
		}
		var err error
		if role.defaultTTL, err = duration(r.body["default_ttl"]); err != nil {
			return nil, errorf(http.StatusBadRequest, "default_ttl: %v", err)
		}
		if role.maxTTL, err = duration(r.body["max_ttl"]); err != nil {
			return nil, errorf(http.StatusBadRequest, "max_ttl: %v", err)
		}
		if role.dbName == "" {
			return nil, errorf(http.StatusBadRequest, "empty database name attribute")
		}
		if len(role.creation) == 0 {
			return nil, errorf(http.StatusBadRequest, "creation statements are required")
		}
		m.roles[name] = role
		return nil, nil
	case r.method == http.MethodGet:
		role, ok := m.roles[name]
		if !ok {
			return nil, &apiError{status: http.StatusNotFound}
		}
		return &api.Secret{Data: map[string]any{
			"db_name": role.dbName, "creation_statements": role.creation,
			"revocation_statements": role.revocation, "renew_statements": role.renew,
			"default_ttl": seconds(role.defaultTTL), "max_ttl": seconds(role.maxTTL),
		}}, nil
	case r.method == http.MethodDelete:
		delete(m.roles, name)
		return nil, nil
	}
	return nil, errUnsupported
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (s *Server) dbCreds(r *request, mount, roleName string) (result, error) {
	now := time.Now()
	s.mu.Lock()
	m := s.dbs[mount]
	role, ok := m.roles[roleName]
	if !ok {
		s.mu.Unlock()
		return nil, errorf(http.StatusBadRequest, "unknown role: %s", roleName)
	}
	conn, ok := m.conns[role.dbName]
	if !ok {
		s.mu.Unlock()
		return nil, errorf(http.StatusInternalServerError, "plugin %q not found", role.dbName)
	}
	if !slices.Contains(conn.allowedRoles, "*") && !slices.Contains(conn.allowedRoles, roleName) {
		s.mu.Unlock()
		return nil, errorf(http.StatusBadRequest, "%q is not an allowed role", roleName)
	}
	display := r.tok.displayName
	tokID := r.tok.id
	s.mu.Unlock()

	maxTTL := role.maxTTL
	if maxTTL <= 0 {
		maxTTL = systemMaxTTL
	}
	ttl := role.defaultTTL
	if ttl <= 0 || ttl > maxTTL {
		ttl = min(systemMaxTTL, maxTTL)
	}
	// Vault's PostgreSQL username template.
	username := truncate(fmt.Sprintf("v-%s-%s-%s-%d", truncate(display, 8), truncate(roleName, 8),
		randomString(20, alnum), now.Unix()), 63)
	password := randomString(1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") + randomString(19, alnum+"-")
	exp := now.Add(ttl)
	if err := s.execStatements(conn, role.creation, username, password, exp, true); err != nil {
		return nil, errorf(http.StatusInternalServerError, "failed to create user: %v", err)
	}

	l := &lease{
		id: fmt.Sprintf("%s/creds/%s/%s", mount, roleName, randomString(24, alnum)), username: username,
		conn: conn, revocation: role.revocation, renew: role.renew, ttl: ttl, maxTTL: maxTTL,
		issued: now, expires: exp, token: tokID,
	}
	if len(l.revocation) == 0 {
		l.revocation = DefaultRevocationStatements
	}
	if len(l.renew) == 0 {
		l.renew = defaultRenewStatements
	}
	s.mu.Lock()
	s.users = append(s.users, username)
	if _, alive := s.tokens[tokID]; !alive {
		// The token ended while the user was being created.
		s.mu.Unlock()
		s.runRevocation(l)
		return nil, errPermissionDenied
	}
	s.leases[l.id] = l
	s.mu.Unlock()
	return &api.Secret{LeaseID: l.id, LeaseDuration: seconds(ttl), Renewable: true,
		Data: map[string]any{"username": username, "password": password}}, nil
}

// execStatements runs templated statements, in one transaction when tx
// (creation), or one by one carrying on past failures (revocation: drop
// the user even if reassigning what it owns failed).
func (s *Server) execStatements(c *dbConn, stmts []string, name, password string, exp time.Time, tx bool) error {
	rep := strings.NewReplacer("{{name}}", name, "{{username}}", name, "{{password}}", password,
		"{{expiration}}", exp.Format(expirationLayout))
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if !tx {
		var first error
		for _, st := range stmts {
			if _, err := c.db.ExecContext(ctx, rep.Replace(st)); err != nil && first == nil {
				first = fmt.Errorf("%s: %w", st, err)
			}
		}
		return first
	}
	t, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer t.Rollback()
	for _, st := range stmts {
		if _, err := t.ExecContext(ctx, rep.Replace(st)); err != nil {
			return fmt.Errorf("%s: %w", st, err)
		}
	}
	return t.Commit()
}

// runRevocation runs a revoked lease's revocation statements.
func (s *Server) runRevocation(l *lease) {
	if err := s.execStatements(l.conn, l.revocation, l.username, "", time.Now(), false); err != nil {
		s.logf("fake vault: revoke lease %s (user %s): %v", l.id, l.username, err)
	}
}

func (s *Server) renewLease(r *request) (result, error) {
	if !r.write() {
		return nil, errUnsupported
	}
	id := str(r.body["lease_id"])
	inc, err := duration(r.body["increment"])
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "increment: %v", err)
	}
	now := time.Now()
	s.mu.Lock()
	l, ok := s.leases[id]
	if !ok || !now.Before(l.expires) {
		s.mu.Unlock()
		return nil, errorf(http.StatusBadRequest, "lease not found")
	}
	if inc <= 0 {
		inc = l.ttl
	}
	exp := now.Add(inc)
	var warnings []string
	if limit := l.issued.Add(l.maxTTL); exp.After(limit) {
		exp = limit
		warnings = append(warnings, fmt.Sprintf("TTL of %q exceeded the effective max_ttl of %q; TTL value is capped accordingly",
			inc, limit.Sub(now).Truncate(time.Second)))
	}
	s.mu.Unlock()

	if err := s.execStatements(l.conn, l.renew, l.username, "", exp, true); err != nil {
		return nil, errorf(http.StatusInternalServerError, "failed to renew lease: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.leases[id]; !ok {
		return nil, errorf(http.StatusBadRequest, "lease not found")
	}
	l.expires, l.lastRenewal = exp, now
	return &api.Secret{LeaseID: id, LeaseDuration: seconds(exp.Sub(now)), Renewable: true, Warnings: warnings}, nil
}

func (s *Server) revokeLease(r *request) (result, error) {
	if !r.write() {
		return nil, errUnsupported
	}
	id := str(r.body["lease_id"])
	s.mu.Lock()
	l, ok := s.leases[id]
	delete(s.leases, id)
	s.mu.Unlock()
	if ok {
		s.runRevocation(l)
	}
	return nil, nil
}

func (s *Server) lookupLease(r *request) (result, error) {
	id := str(r.body["lease_id"])
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[id]
	if !ok || !now.Before(l.expires) {
		return nil, errorf(http.StatusBadRequest, "invalid lease")
	}
	var last any
	if !l.lastRenewal.IsZero() {
		last = l.lastRenewal.Format(time.RFC3339Nano)
	}
	return &api.Secret{Data: map[string]any{
		"id": l.id, "issue_time": l.issued.Format(time.RFC3339Nano), "expire_time": l.expires.Format(time.RFC3339Nano),
		"last_renewal": last, "renewable": true, "ttl": seconds(l.expires.Sub(now)),
	}}, nil
}

// RevokeLease revokes a lease as an operator would (vault lease revoke).
func (s *Server) RevokeLease(id string) {
	s.mu.Lock()
	l, ok := s.leases[id]
	delete(s.leases, id)
	s.mu.Unlock()
	if ok {
		s.runRevocation(l)
	}
}

// Leases returns the ids of the leases alive now.
func (s *Server) Leases() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedKeys(s.leases)
}
