package vault

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/api"
)

// systemMaxTTL is Vault's default and maximum token and lease TTL.
const systemMaxTTL = 768 * time.Hour

// token is one Vault token.
type token struct {
	id, accessor string
	policies     []string
	displayName  string
	meta         map[string]string
	renewable    bool
	batch        bool
	ttl          time.Duration // what a renewal without increment extends to
	maxTTL       time.Duration // from creation; 0 for the root token
	created      time.Time
	expires      time.Time // zero: never (the root token)
	path         string    // the login path that made it
}

func (t *token) expired(now time.Time) bool {
	return !t.expires.IsZero() && !now.Before(t.expires)
}

func (t *token) auth(now time.Time) *api.SecretAuth {
	return &api.SecretAuth{
		ClientToken:   t.id,
		Accessor:      t.accessor,
		Policies:      t.policies,
		TokenPolicies: t.policies,
		Metadata:      t.meta,
		Orphan:        true,
		LeaseDuration: t.remaining(now),
		Renewable:     t.renewable,
	}
}

// remaining is the token's TTL in seconds; 0 for a token that never
// expires.
func (t *token) remaining(now time.Time) int {
	if t.expires.IsZero() {
		return 0
	}
	return seconds(t.expires.Sub(now))
}

// tokenParams are what a login or token/create asks for.
type tokenParams struct {
	policies        []string
	noDefaultPolicy bool
	ttl, maxTTL     time.Duration
	renewable       bool
	tokenType       string // "service" (default) or "batch"
	displayName     string
	meta            map[string]string
	path            string
}

// issueTokenLocked creates a token. mu is held.
func (s *Server) issueTokenLocked(p tokenParams) *token {
	now := time.Now()
	pol := slices.Clone(p.policies)
	if !p.noDefaultPolicy && !slices.Contains(pol, "default") && !slices.Contains(pol, "root") {
		pol = append(pol, "default")
	}
	sort.Strings(pol)
	if p.maxTTL <= 0 || p.maxTTL > systemMaxTTL {
		p.maxTTL = systemMaxTTL
	}
	if p.ttl <= 0 || p.ttl > p.maxTTL {
		p.ttl = min(systemMaxTTL, p.maxTTL)
	}
	batch := p.tokenType == "batch"
	prefix := "hvs."
	if batch {
		prefix = "hvb."
	}
	t := &token{
		id:          prefix + randomString(24, alnum),
		accessor:    randomString(24, alnum),
		policies:    pol,
		displayName: p.displayName,
		meta:        p.meta,
		renewable:   p.renewable && !batch,
		batch:       batch,
		ttl:         p.ttl,
		maxTTL:      p.maxTTL,
		created:     now,
		expires:     now.Add(p.ttl),
		path:        p.path,
	}
	s.tokens[t.id] = t
	return t
}

// tokenRoleParams reads the token_* settings every auth role shares.
func tokenRoleParams(body map[string]any) (tokenParams, error) {
	var p tokenParams
	var err error
	p.policies = strList(body["token_policies"])
	if len(p.policies) == 0 {
		p.policies = strList(body["policies"])
	}
	if p.ttl, err = duration(body["token_ttl"]); err != nil {
		return p, errorf(http.StatusBadRequest, "token_ttl: %v", err)
	}
	if p.maxTTL, err = duration(body["token_max_ttl"]); err != nil {
		return p, errorf(http.StatusBadRequest, "token_max_ttl: %v", err)
	}
	p.tokenType = str(body["token_type"])
	switch p.tokenType {
	case "", "default", "service", "default-service":
		p.tokenType = "service"
	case "batch", "default-batch":
		p.tokenType = "batch"
	default:
		return p, errorf(http.StatusBadRequest, "invalid 'token_type' value %q", p.tokenType)
	}
	p.noDefaultPolicy = boolean(body["token_no_default_policy"], false)
	p.renewable = true
	return p, nil
}

func (p tokenParams) data() map[string]any {
	return map[string]any{
		"token_policies": p.policies, "token_ttl": seconds(p.ttl), "token_max_ttl": seconds(p.maxTTL),
		"token_type": p.tokenType, "token_no_default_policy": p.noDefaultPolicy,
	}
}

func (s *Server) routeAuth(r *request) (result, error) {
	rest := strings.TrimPrefix(r.path, "auth/")
	if t, ok := strings.CutPrefix(rest, "token/"); ok {
		return s.tokenEndpoint(r, t)
	}
	s.mu.Lock()
	mount, sub, typ := longestMount(s.auths, rest)
	s.mu.Unlock()
	switch typ {
	case "approle":
		return s.appRoleEndpoint(r, mount, sub)
	case "jwt":
		return s.jwtEndpoint(r, mount, sub)
	}
	return nil, errNoRoute(r.path)
}

// ---- the token method ----

func (s *Server) tokenEndpoint(r *request, sub string) (result, error) {
	now := time.Now()
	switch sub {
	case "lookup-self":
		s.mu.Lock()
		defer s.mu.Unlock()
		return &api.Secret{Data: s.lookupDataLocked(r.tok, now)}, nil

	case "renew-self":
		if !r.write() {
			return nil, errUnsupported
		}
		inc, err := duration(r.body["increment"])
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "increment: %v", err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.renewTokenLocked(r.tok, inc, now)

	case "revoke-self":
		if !r.write() {
			return nil, errUnsupported
		}
		return nil, s.revokeToken(r.tok.id)

	case "revoke":
		if !r.write() {
			return nil, errUnsupported
		}
		return nil, s.revokeToken(str(r.body["token"]))

	case "create", "create-orphan":
		if !r.write() {
			return nil, errUnsupported
		}
		p := tokenParams{renewable: boolean(r.body["renewable"], true), displayName: "token",
			noDefaultPolicy: boolean(r.body["no_default_policy"], false), path: "auth/token/create"}
		if n := str(r.body["display_name"]); n != "" {
			p.displayName = "token-" + n
		}
		p.policies = strList(r.body["policies"])
		var err error
		if p.ttl, err = duration(r.body["ttl"]); err != nil {
			return nil, errorf(http.StatusBadRequest, "ttl: %v", err)
		}
		if p.maxTTL, err = duration(r.body["explicit_max_ttl"]); err != nil {
			return nil, errorf(http.StatusBadRequest, "explicit_max_ttl: %v", err)
		}
		p.tokenType = str(r.body["type"])
		if m, ok := r.body["meta"].(map[string]any); ok {
			p.meta = map[string]string{}
			for k, v := range m {
				p.meta[k] = str(v)
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(p.policies) == 0 {
			p.policies = slices.Clone(r.tok.policies)
		}
		if slices.Contains(p.policies, "root") && !slices.Contains(r.tok.policies, "root") {
			return nil, errorf(http.StatusBadRequest, "root tokens may not be created without parent token being root")
		}
		t := s.issueTokenLocked(p)
		return &api.Secret{Auth: t.auth(t.created)}, nil
	}
	return nil, errUnsupportedPath
}

func (s *Server) lookupDataLocked(t *token, now time.Time) map[string]any {
	d := map[string]any{
		"accessor": t.accessor, "creation_time": t.created.Unix(), "display_name": t.displayName,
		"entity_id": "", "explicit_max_ttl": seconds(t.maxTTL), "id": t.id,
		"issue_time": t.created.Format(time.RFC3339Nano), "meta": t.meta, "num_uses": 0, "orphan": true,
		"path": t.path, "policies": t.policies, "renewable": t.renewable, "ttl": t.remaining(now),
		"creation_ttl": seconds(t.ttl), "type": "service", "expire_time": nil,
	}
	if t.batch {
		d["type"] = "batch"
	}
	if !t.expires.IsZero() {
		d["expire_time"] = t.expires.Format(time.RFC3339Nano)
	}
	return d
}

// renewTokenLocked extends t by inc (or its TTL) from now, within its
// maximum TTL. mu is held.
func (s *Server) renewTokenLocked(t *token, inc time.Duration, now time.Time) (result, error) {
	if t.batch {
		return nil, errorf(http.StatusBadRequest, "batch tokens cannot be renewed")
	}
	if t.expires.IsZero() {
		return &api.Secret{Auth: t.auth(now)}, nil // the root token
	}
	if !t.renewable {
		return nil, errorf(http.StatusBadRequest, "lease is not renewable")
	}
	if inc <= 0 {
		inc = t.ttl
	}
	exp := now.Add(inc)
	var warnings []string
	if limit := t.created.Add(t.maxTTL); exp.After(limit) {
		exp = limit
		warnings = append(warnings, fmt.Sprintf("TTL of %q exceeded the effective max_ttl of %q; TTL value is capped accordingly",
			inc, limit.Sub(now).Truncate(time.Second)))
	}
	t.expires = exp
	return &api.Secret{Auth: t.auth(now), Warnings: warnings}, nil
}

// revokeToken revokes a token and, with it, every lease it obtained.
func (s *Server) revokeToken(id string) error {
	s.mu.Lock()
	if id == s.root {
		s.mu.Unlock()
		return errorf(http.StatusBadRequest, "the fake's root token cannot be revoked")
	}
	leases := s.revokeTokenLocked(id)
	s.mu.Unlock()
	for _, l := range leases {
		s.runRevocation(l)
	}
	return nil
}

// RevokeToken revokes a token as an operator would, with its leases.
func (s *Server) RevokeToken(id string) error { return s.revokeToken(id) }

// ---- AppRole ----

type appRoleMount struct {
	roles map[string]*appRole
}

func newAppRoleMount() *appRoleMount { return &appRoleMount{roles: map[string]*appRole{}} }

type appRole struct {
	name      string
	roleID    string
	params    tokenParams
	secretIDs map[string]*secretID
	numUses   int           // for new secret ids; 0 unlimited
	idTTL     time.Duration // for new secret ids; 0 forever
}

type secretID struct {
	accessor string
	uses     int // left; 0 unlimited
	expires  time.Time
}

func (s *Server) appRoleEndpoint(r *request, mount, sub string) (result, error) {
	if sub == "login" {
		if !r.write() {
			return nil, errUnsupported
		}
		return s.appRoleLogin(r, mount)
	}
	name, what, _ := strings.Cut(strings.TrimPrefix(sub, "role/"), "/")
	if !strings.HasPrefix(sub, "role/") || name == "" {
		return nil, errUnsupportedPath
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.approles[mount]
	role := m.roles[name]
	switch {
	case what == "" && r.write():
		p, err := tokenRoleParams(r.body)
		if err != nil {
			return nil, err
		}
		if role == nil {
			role = &appRole{name: name, roleID: randomID(), secretIDs: map[string]*secretID{}}
			m.roles[name] = role
		}
		role.params = p
		if n := str(r.body["secret_id_num_uses"]); n != "" {
			fmt.Sscanf(n, "%d", &role.numUses)
		}
		if role.idTTL, err = duration(r.body["secret_id_ttl"]); err != nil {
			return nil, errorf(http.StatusBadRequest, "secret_id_ttl: %v", err)
		}
		return nil, nil
	case role == nil:
		return nil, errorf(http.StatusNotFound, "role %q does not exist", name)
	case what == "" && r.method == http.MethodGet:
		d := role.params.data()
		d["secret_id_num_uses"], d["secret_id_ttl"] = role.numUses, seconds(role.idTTL)
		return &api.Secret{Data: d}, nil
	case what == "" && r.method == http.MethodDelete:
		delete(m.roles, name)
		return nil, nil
	case what == "role-id" && r.method == http.MethodGet:
		return &api.Secret{Data: map[string]any{"role_id": role.roleID}}, nil
	case what == "role-id" && r.write():
		if id := str(r.body["role_id"]); id != "" {
			role.roleID = id
		}
		return nil, nil
	case (what == "secret-id" || what == "custom-secret-id") && r.write():
		id := randomID()
		if what == "custom-secret-id" {
			if id = str(r.body["secret_id"]); id == "" {
				return nil, errorf(http.StatusBadRequest, "missing secret_id")
			}
		}
		sid := &secretID{accessor: randomID(), uses: role.numUses}
		if role.idTTL > 0 {
			sid.expires = time.Now().Add(role.idTTL)
		}
		role.secretIDs[id] = sid
		return &api.Secret{Data: map[string]any{"secret_id": id, "secret_id_accessor": sid.accessor,
			"secret_id_num_uses": role.numUses, "secret_id_ttl": seconds(role.idTTL)}}, nil
	}
	return nil, errUnsupported
}

func (s *Server) appRoleLogin(r *request, mount string) (result, error) {
	roleID, sid := str(r.body["role_id"]), str(r.body["secret_id"])
	if roleID == "" {
		return nil, errorf(http.StatusBadRequest, "missing role_id")
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var role *appRole
	for _, ro := range s.approles[mount].roles {
		if ro.roleID == roleID {
			role = ro
		}
	}
	if role == nil {
		return nil, errorf(http.StatusBadRequest, "invalid role or secret ID")
	}
	rec, ok := role.secretIDs[sid]
	if !ok || (!rec.expires.IsZero() && !now.Before(rec.expires)) {
		return nil, errorf(http.StatusBadRequest, "invalid role or secret ID")
	}
	if rec.uses > 0 {
		if rec.uses--; rec.uses == 0 {
			delete(role.secretIDs, sid)
		}
	}
	p := role.params
	p.displayName, p.path = "approle", "auth/"+mount+"/login"
	p.meta = map[string]string{"role_name": role.name}
	t := s.issueTokenLocked(p)
	return &api.Secret{Auth: t.auth(t.created)}, nil
}

// ---- JWT (Nomad workload identity) ----

type jwtMount struct {
	keys        []crypto.PublicKey
	algs        []string
	boundIssuer string
	roles       map[string]*jwtRole
}

func newJWTMount() *jwtMount { return &jwtMount{roles: map[string]*jwtRole{}} }

type jwtRole struct {
	boundAudiences []string
	boundSubject   string
	boundClaims    map[string][]string
	userClaim      string
	params         tokenParams
}

func (s *Server) jwtEndpoint(r *request, mount, sub string) (result, error) {
	switch {
	case sub == "login":
		if !r.write() {
			return nil, errUnsupported
		}
		return s.jwtLogin(r, mount)
	case sub == "config":
		return s.jwtConfig(r, mount)
	case strings.HasPrefix(sub, "role/"):
		return s.jwtRoleEndpoint(r, mount, strings.TrimPrefix(sub, "role/"))
	}
	return nil, errUnsupportedPath
}

func (s *Server) jwtConfig(r *request, mount string) (result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.jwts[mount]
	if !r.write() {
		return &api.Secret{Data: map[string]any{"bound_issuer": m.boundIssuer, "jwt_supported_algs": m.algs}}, nil
	}
	var keys []crypto.PublicKey
	for _, p := range strList(r.body["jwt_validation_pubkeys"]) {
		k, err := parsePublicKeyPEM(p)
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "error parsing public key: %v", err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errorf(http.StatusBadRequest, "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set (the fake knows only jwt_validation_pubkeys)")
	}
	m.keys = keys
	m.boundIssuer = str(r.body["bound_issuer"])
	m.algs = strList(r.body["jwt_supported_algs"])
	if len(m.algs) == 0 {
		m.algs = []string{"RS256"}
	}
	return nil, nil
}

func parsePublicKeyPEM(s string) (crypto.PublicKey, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, fmt.Errorf("no PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	switch k.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", k)
}

func (s *Server) jwtRoleEndpoint(r *request, mount, name string) (result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.jwts[mount]
	switch {
	case r.write():
		if t := str(r.body["role_type"]); t != "" && t != "jwt" {
			return nil, errorf(http.StatusBadRequest, "the fake supports role_type jwt only, got %q", t)
		}
		p, err := tokenRoleParams(r.body)
		if err != nil {
			return nil, err
		}
		role := &jwtRole{
			boundAudiences: strList(r.body["bound_audiences"]),
			boundSubject:   str(r.body["bound_subject"]),
			userClaim:      str(r.body["user_claim"]),
			boundClaims:    map[string][]string{},
			params:         p,
		}
		if role.userClaim == "" {
			return nil, errorf(http.StatusBadRequest, "a user claim must be defined on the role")
		}
		if bc, ok := r.body["bound_claims"].(map[string]any); ok {
			for k, v := range bc {
				switch x := v.(type) {
				case []any:
					role.boundClaims[k] = strList(x)
				default:
					role.boundClaims[k] = []string{str(x)}
				}
			}
		}
		m.roles[name] = role
		return nil, nil
	case r.method == http.MethodGet:
		role, ok := m.roles[name]
		if !ok {
			return nil, &apiError{status: http.StatusNotFound}
		}
		d := role.params.data()
		d["role_type"], d["bound_audiences"], d["user_claim"] = "jwt", role.boundAudiences, role.userClaim
		return &api.Secret{Data: d}, nil
	case r.method == http.MethodDelete:
		delete(m.roles, name)
		return nil, nil
	}
	return nil, errUnsupported
}

// jwtLeeway is Vault's default clock_skew_leeway.
const jwtLeeway = 60 * time.Second

func (s *Server) jwtLogin(r *request, mount string) (result, error) {
	roleName, raw := str(r.body["role"]), str(r.body["jwt"])
	if raw == "" {
		return nil, errorf(http.StatusBadRequest, "missing token")
	}
	s.mu.Lock()
	m := s.jwts[mount]
	role, ok := m.roles[roleName]
	keys, algs, iss := m.keys, m.algs, m.boundIssuer
	s.mu.Unlock()
	if !ok {
		return nil, errorf(http.StatusBadRequest, "role %q could not be found", roleName)
	}
	if len(keys) == 0 {
		return nil, errorf(http.StatusBadRequest, "could not load configuration")
	}
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(jwt.WithValidMethods(algs), jwt.WithLeeway(jwtLeeway)).ParseWithClaims(raw, claims,
		func(t *jwt.Token) (any, error) {
			var set jwt.VerificationKeySet
			for _, k := range keys {
				if keyFits(t.Method, k) {
					set.Keys = append(set.Keys, k)
				}
			}
			return set, nil
		})
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "error validating token: %v", err)
	}
	if iss != "" && claims["iss"] != iss {
		return nil, errorf(http.StatusBadRequest, "error validating claims: invalid issuer (iss) claim")
	}
	aud, _ := claims.GetAudience()
	switch {
	case len(role.boundAudiences) > 0:
		if !slices.ContainsFunc(role.boundAudiences, func(a string) bool { return slices.Contains(aud, a) }) {
			return nil, errorf(http.StatusBadRequest, "error validating token: invalid audience (aud) claim: audience claim does not match any expected audience")
		}
	case len(aud) > 0:
		return nil, errorf(http.StatusBadRequest, "error validating token: audience claim found in JWT but no audiences bound to the role")
	}
	if role.boundSubject != "" && claims["sub"] != role.boundSubject {
		return nil, errorf(http.StatusBadRequest, "error validating token: sub claim does not match bound subject")
	}
	for k, want := range role.boundClaims {
		got, ok := claims[k].(string)
		if !ok || !slices.Contains(want, got) {
			return nil, errorf(http.StatusBadRequest, "error validating claims: claim %q does not match any associated bound claim values", k)
		}
	}
	user, ok := claims[role.userClaim].(string)
	if !ok || user == "" {
		return nil, errorf(http.StatusBadRequest, "claim %q not found in token", role.userClaim)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := role.params
	p.displayName, p.path = mount+"-"+user, "auth/"+mount+"/login"
	p.meta = map[string]string{"role": roleName}
	t := s.issueTokenLocked(p)
	return &api.Secret{Auth: t.auth(t.created)}, nil
}

// keyFits reports whether k can verify signatures of method.
func keyFits(method jwt.SigningMethod, k crypto.PublicKey) bool {
	switch method.(type) {
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		_, ok := k.(*rsa.PublicKey)
		return ok
	case *jwt.SigningMethodECDSA:
		_, ok := k.(*ecdsa.PublicKey)
		return ok
	case *jwt.SigningMethodEd25519:
		_, ok := k.(ed25519.PublicKey)
		return ok
	}
	return false
}
