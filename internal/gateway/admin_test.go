package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/auth"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/identity"
	"github.com/codehub-dev/codehub/internal/lockout"
	"github.com/codehub-dev/codehub/internal/metrics"
	"github.com/codehub-dev/codehub/internal/password"
	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/codehub-dev/codehub/internal/resources"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/throttle"
	"github.com/codehub-dev/codehub/internal/token"
	"github.com/codehub-dev/codehub/internal/token/filekeys"
	"github.com/codehub-dev/codehub/internal/user"
	"github.com/codehub-dev/codehub/internal/web"
	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/go-hclog"
)

// multiPW passes the password rules of the multi-user tests.
const multiPW = "correct-horse-42"

// recorder is the recording audit fake: it keeps every event, and writes
// it to the database's audit log as well (what the admin API queries).
type recorder struct {
	log *sqlstore.AuditLog

	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(e audit.Event) {
	if e.Timestamp.IsZero() {
		e.Timestamp = time.Now().UTC().Truncate(time.Microsecond)
	}
	if e.Status == "" {
		e.Status = audit.StatusSuccess
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	if r.log != nil {
		_ = r.log.Append(context.Background(), []audit.Event{e})
	}
}

// mark returns a position in the events, for since.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// since returns the events recorded after mark.
func (r *recorder) since(mark int) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events[mark:])
}

// auditLog adapts the database's audit log to the gateway's AuditLog.
type auditLog struct{ l *sqlstore.AuditLog }

func (a auditLog) Query(ctx context.Context, q AuditQuery) ([]audit.Event, int, error) {
	return a.l.Query(ctx, sqlstore.AuditQuery{UserID: q.UserID, EventType: q.EventType, Since: q.Since, Until: q.Until,
		Offset: q.Offset, Limit: q.Limit})
}

func (a auditLog) Failures(ctx context.Context, since time.Time, limit int) ([]audit.Event, int, error) {
	return a.l.Failures(ctx, since, limit)
}

// fakeWorkspaces is a small working registry: what the admin API and the
// resource manager see of workspaces. Stopping and restarting record the
// events the workspace manager's hooks record in codehub.
type fakeWorkspaces struct {
	audit audit.Recorder

	mu sync.Mutex
	ws []*workspace.Workspace
	// usage, when set, is what every agent reports.
	usage *agentapi.Usage
}

func (f *fakeWorkspaces) add(w *workspace.Workspace) {
	f.mu.Lock()
	f.ws = append(f.ws, w)
	f.mu.Unlock()
}

func (f *fakeWorkspaces) info(w *workspace.Workspace) WorkspaceInfo {
	return WorkspaceInfo{ID: w.ID, UserID: w.UserID, State: string(w.State), Orchestrator: "fake", Node: "node-1",
		CreatedAt: w.CreatedAt, StartedAt: w.StartedAt, Restarts: w.Restarts}
}

func (f *fakeWorkspaces) AllWorkspaces(context.Context) ([]WorkspaceInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []WorkspaceInfo
	for _, w := range f.ws {
		out = append(out, f.info(w))
	}
	return out, nil
}

func (f *fakeWorkspaces) find(id string) (*workspace.Workspace, error) {
	for _, w := range f.ws {
		if w.ID == id {
			return w, nil
		}
	}
	return nil, &identity.Error{Code: identity.CodeNotFound, Message: "no such workspace"}
}

func (f *fakeWorkspaces) StopWorkspace(_ context.Context, id string) (*WorkspaceInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, err := f.find(id)
	if err != nil {
		return nil, err
	}
	w.State = workspace.StateStopped
	f.audit.Record(audit.Event{EventType: audit.WorkspaceStopped, UserID: w.UserID, Metadata: map[string]any{"workspaceId": id}})
	info := f.info(w)
	return &info, nil
}

func (f *fakeWorkspaces) RestartWorkspace(_ context.Context, id string) (*WorkspaceInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, err := f.find(id)
	if err != nil {
		return nil, err
	}
	if w.UserID == "" {
		return nil, &identity.Error{Code: identity.CodeConflict, Message: "a warm workspace has no user to restart it for; stop it instead"}
	}
	w.State, w.StartedAt = workspace.StateRunning, time.Now()
	w.Restarts++
	f.audit.Record(audit.Event{EventType: audit.WorkspaceStopped, UserID: w.UserID, Metadata: map[string]any{"workspaceId": id}})
	f.audit.Record(audit.Event{EventType: audit.WorkspaceStarted, UserID: w.UserID, Metadata: map[string]any{"workspaceId": id}})
	info := f.info(w)
	return &info, nil
}

func (f *fakeWorkspaces) List(context.Context) ([]*workspace.Workspace, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*workspace.Workspace
	for _, w := range f.ws {
		out = append(out, w.Clone())
	}
	return out, nil
}

func (f *fakeWorkspaces) Of(_ context.Context, userID string) (*workspace.Workspace, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.ws {
		if w.UserID == userID {
			return w.Clone(), nil
		}
	}
	return nil, workspace.ErrNotFound
}

func (f *fakeWorkspaces) Usage(_ context.Context, w *workspace.Workspace) (agentapi.Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.usage != nil {
		return *f.usage, nil
	}
	return agentapi.Usage{StorageBytes: 300 << 20, StorageLimitBytes: 1 << 30, MemoryBytes: 256 << 20, CPUSeconds: 1}, nil
}

func (f *fakeWorkspaces) StopUser(ctx context.Context, userID, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.ws {
		if w.UserID == userID {
			w.State = workspace.StateStopped
		}
	}
	return nil
}

// adminEnv is a multi-user gateway on a real SQLite database, with an
// administrator, an auditor and a plain user signed in by API token.
type adminEnv struct {
	t       testing.TB
	db      *sqlstore.DB
	id      *identity.Service
	srv     *Server
	front   *httptest.Server
	audit   *recorder
	ws      *fakeWorkspaces
	res     *resources.Manager
	metrics *metrics.Metrics
	cfg     *config.Config

	admin, auditor, plain *user.User
	tokens                map[string]string // by username
}

type adminSetup struct {
	limits   *APILimits
	mutate   func(*config.Config)
	policies []string
	// registration is identity's registration mode (default "invite").
	registration string
	// throttle is the login throttle; nil: 100 failures at once, from
	// one address or all.
	throttle *throttle.Config
	// now is the clock of the lockout and of identity; nil: time.Now.
	now func() time.Time
	// logger, if set, replaces the one writing into t.Log.
	logger hclog.Logger
}

func newAdminEnv(t testing.TB, st adminSetup) *adminEnv {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	log := st.logger
	if log == nil {
		log = testenv.Logger(t)
	}
	e := &adminEnv{t: t, tokens: map[string]string{}, metrics: metrics.New()}
	db, err := sqlstore.Open(ctx, sqlstore.Config{Driver: sqlstore.DriverSQLite, Path: filepath.Join(dir, "codehub.db")}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db = db
	auditKeys, err := audit.OpenKeyFile(audit.KeyFileConfig{Path: filepath.Join(dir, "audit-key.json"), Create: true})
	if err != nil {
		t.Fatal(err)
	}
	e.audit = &recorder{log: db.AuditLog().WithKeys(auditKeys)}
	e.ws = &fakeWorkspaces{audit: e.audit}

	cfg, err := config.Load(config.LoadOptions{Getenv: func(k string) string {
		if k == "HOME" {
			return dir
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.DeploymentMode = config.ModeMulti
	if st.mutate != nil {
		st.mutate(cfg)
	}
	e.cfg = cfg

	keys, err := filekeys.Open(filekeys.Config{Path: filepath.Join(dir, "jwt-keys.json")})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := token.NewService(token.Config{Issuer: "codehub", Audience: "codehub", AccessTTL: 10 * time.Minute}, keys)
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.NewHasher(cheap, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := proxy.NewRegistry(proxy.RegistryConfig{})
	t.Cleanup(conns.Stop)
	lo := &cfg.MultiUser.Auth.Lockout
	guard, err := lockout.New(ctx, lockout.Config{Store: db.Lockout(), DeviceTTL: lo.DeviceCookieTTL.D(), Now: st.now, Policy: lockout.Policy{
		MaxFailures: lo.MaxFailures, BaseLock: lo.Duration.D(), MaxLock: lo.MaxDuration.D(), ResetAfter: lo.ResetAfter.D(),
		NameClients: lo.GlobalAddresses, NameWindow: lo.GlobalWindow.D(), NameLock: lo.GlobalDuration.D(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.id = identity.New(identity.Config{SessionTTL: time.Hour, MinPasswordLength: 10, Now: st.now,
		MaxSessionsPerUser: cfg.MultiUser.Limits.MaxSessionsPerUser, OnLimit: cfg.MultiUser.Auth.Session.OnLimit,
		Registration: cmp.Or(st.registration, identity.RegisterInvite)}, identity.Deps{
		Authn: auth.NewDatabase(auth.DatabaseConfig{Users: db.Users(), Hasher: hasher, Lockout: guard, Now: st.now, Log: log}), Users: db.Users(),
		Sessions: db.Sessions(), Tokens: tokens, Hasher: hasher, Audit: e.audit, Lockout: guard,
		OnRevoke: func(ids []string) {
			for _, id := range ids {
				conns.CloseOwner(id, proxy.CloseRevoked, "signed out")
			}
		},
	}, log.Named("identity"))

	var srv *Server
	e.res = resources.New(resources.Config{}, resources.Deps{
		Sessions: e.id, Workspaces: e.ws, Store: db.Usage(), Audit: e.audit, Metrics: e.metrics,
		Connections: connCounter(func(id string) int { return srv.OpenConnections(id) }),
		Limits: func(context.Context, string) (resources.Limits, error) {
			return resources.Limits{Sessions: 5, Connections: 100, StorageBytes: 1 << 30, MemoryMB: 2048, CPUPercent: 100}, nil
		},
	}, log.Named("resources"))

	ide := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "IDE") }))
	t.Cleanup(ide.Close)
	u, _ := url.Parse(ide.URL)
	templates, err := web.Parse()
	if err != nil {
		t.Fatal(err)
	}
	srv, err = New(Options{
		Config: cfg, Logger: log.Named("gateway"), Metrics: e.metrics, Identity: e.id,
		Upstreams: FixedUpstream{T: &proxy.Target{Key: "ide", URL: u}}, Conns: conns,
		Throttle:  throttle.New(*cmp.Or(st.throttle, &throttle.Config{PerAddressBurst: 100, PerAddressInterval: time.Second, GlobalBurst: 100, GlobalInterval: time.Second})),
		Templates: templates, Health: func() Health { return Health{Ready: true} }, Version: "test",
		Audit: e.audit, AdminWorkspaces: e.ws, Resources: e.res, AuditLog: auditLog{db.AuditLog()},
		Policies: st.policies, APILimits: st.limits,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.front = httptest.NewServer(srv)
	t.Cleanup(e.front.Close)

	e.admin = e.mustUser("root", user.RoleAdmin)
	e.auditor = e.mustUser("watcher", user.RoleAuditor)
	e.plain = e.mustUser("bob", user.RoleUser)
	return e
}

type connCounter func(string) int

func (c connCounter) OpenConnections(id string) int { return c(id) }

// mustUser creates a user with multiPW and signs them in by API token.
func (e *adminEnv) mustUser(name, role string) *user.User {
	e.t.Helper()
	ctx := context.Background()
	u, err := e.id.CreateUser(ctx, identity.NewUser{Username: name, Email: name + "@example.com", Password: multiPW, Role: role})
	if err != nil {
		e.t.Fatalf("CreateUser(%s): %v", name, err)
	}
	pair, _, err := e.id.LoginAPI(ctx, name, multiPW, identity.Client{IP: "192.0.2.1"})
	if err != nil {
		e.t.Fatalf("LoginAPI(%s): %v", name, err)
	}
	e.tokens[name] = pair.AccessToken
	return u
}

// call sends an API request as username ("" for nobody) and returns the
// status and body.
func (e *adminEnv) call(as, method, path, body string, hdr ...string) (int, string, http.Header) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.front.URL+"/api/v1"+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if as != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[as])
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), resp.Header
}

// decode calls and decodes a 2xx JSON answer into v.
func (e *adminEnv) decode(as, method, path, body string, v any) {
	e.t.Helper()
	st, b, _ := e.call(as, method, path, body)
	if st/100 != 2 {
		e.t.Fatalf("%s %s: %d %s", method, path, st, b)
	}
	if err := json.Unmarshal([]byte(b), v); err != nil {
		e.t.Fatalf("%s %s: %v in %s", method, path, err, b)
	}
}

// errorCode returns the code and message of a JSON error body.
func errorCode(body string) (code, msg string) {
	var ae apiError
	if json.Unmarshal([]byte(body), &ae) != nil {
		return "", ""
	}
	return ae.Error.Code, ae.Error.Message
}

// adminCase is one admin endpoint. prepare makes what the request acts on
// (a fresh user, session or workspace) and returns the path, the body, the
// target user's ID and the events the change records itself.
type adminCase struct {
	name    string
	method  string
	prepare func(e *adminEnv) (path, body, target string)
	// want is the administrator's status; action and events are what a
	// change records (empty for reads).
	want   int
	action string
	events []string
}

func (e *adminEnv) target(name string) *user.User {
	return e.mustUser(name, user.RoleUser)
}

func (e *adminEnv) running(u *user.User) string {
	id := "ws-" + u.Username
	e.ws.add(&workspace.Workspace{ID: id, UserID: u.ID, State: workspace.StateRunning, CreatedAt: time.Now(),
		StartedAt: time.Now().Add(-time.Hour)})
	return id
}

func fixed(path string) func(*adminEnv) (string, string, string) {
	return func(*adminEnv) (string, string, string) { return path, "", "" }
}

var adminCases = []adminCase{
	{"overview", "GET", fixed("/admin/overview"), 200, "", nil},
	{"list users", "GET", fixed("/admin/users?search=o&limit=10"), 200, "", nil},
	{"create user", "POST", func(e *adminEnv) (string, string, string) {
		return "/admin/users", `{"username":"newbie","email":"newbie@example.com","password":"` + multiPW + `","role":"user","policy":"default","metadata":{"team":"a"}}`, ""
	}, 201, "user.create", []string{audit.UserCreated}},
	{"get user", "GET", func(e *adminEnv) (string, string, string) {
		return "/admin/users/" + e.plain.ID, "", ""
	}, 200, "", nil},
	{"update user", "PATCH", func(e *adminEnv) (string, string, string) {
		u := e.target("upd")
		return "/admin/users/" + u.ID, `{"role":"auditor","email":"upd2@example.com","metadata":{"desk":7},"policy":"default"}`, u.ID
	}, 200, "user.update", []string{audit.UserUpdated, audit.RoleChanged}},
	{"disable user", "PATCH", func(e *adminEnv) (string, string, string) {
		u := e.target("dis")
		return "/admin/users/" + u.ID, `{"active":false}`, u.ID
	}, 200, "user.update", []string{audit.UserUpdated, audit.UserDisabled, audit.SessionRevoked}},
	{"delete user", "DELETE", func(e *adminEnv) (string, string, string) {
		u := e.target("del")
		return "/admin/users/" + u.ID, "", u.ID
	}, 204, "user.delete", []string{audit.UserDeleted}},
	{"lock user", "POST", func(e *adminEnv) (string, string, string) {
		u := e.target("lck")
		return "/admin/users/" + u.ID + "/lock", `{"until":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`, u.ID
	}, 204, "user.lock", []string{audit.AccountLocked, audit.SessionRevoked}},
	{"unlock user", "POST", func(e *adminEnv) (string, string, string) {
		u := e.target("unl")
		return "/admin/users/" + u.ID + "/unlock", "", u.ID
	}, 204, "user.unlock", []string{audit.AccountUnlocked}},
	{"set password", "POST", func(e *adminEnv) (string, string, string) {
		u := e.target("pwd")
		return "/admin/users/" + u.ID + "/password", `{"password":"another-horse-43"}`, u.ID
	}, 204, "user.set_password", []string{audit.PasswordChanged, audit.SessionRevoked}},
	{"revoke user's sessions", "DELETE", func(e *adminEnv) (string, string, string) {
		u := e.target("rvk")
		return "/admin/users/" + u.ID + "/sessions", "", u.ID
	}, 200, "user.revoke_sessions", []string{audit.SessionRevoked}},
	{"invite", "POST", func(e *adminEnv) (string, string, string) {
		return "/admin/invites", `{"email":"inv@example.com","role":"auditor","ttl":"24h"}`, ""
	}, 201, "invite.create", []string{audit.InviteCreated}},
	{"list sessions", "GET", fixed("/admin/sessions"), 200, "", nil},
	{"revoke session", "DELETE", func(e *adminEnv) (string, string, string) {
		u := e.target("ses")
		ss, _ := e.id.UserSessions(context.Background(), u.ID)
		return "/admin/sessions/" + ss[0].ID, "", u.ID
	}, 204, "session.revoke", []string{audit.SessionRevoked}},
	{"list workspaces", "GET", fixed("/admin/workspaces"), 200, "", nil},
	{"stop workspace", "POST", func(e *adminEnv) (string, string, string) {
		u := e.target("wss")
		return "/admin/workspaces/" + e.running(u) + "/stop", "", u.ID
	}, 204, "workspace.stop", []string{audit.WorkspaceStopped}},
	{"restart workspace", "POST", func(e *adminEnv) (string, string, string) {
		u := e.target("wsr")
		return "/admin/workspaces/" + e.running(u) + "/restart", "", u.ID
	}, 204, "workspace.restart", []string{audit.WorkspaceStopped, audit.WorkspaceStarted}},
	{"usage", "GET", fixed("/admin/usage"), 200, "", nil},
	{"user usage", "GET", func(e *adminEnv) (string, string, string) {
		return "/admin/users/" + e.plain.ID + "/usage?period=1h", "", ""
	}, 200, "", nil},
	{"user quotas", "GET", func(e *adminEnv) (string, string, string) {
		return "/admin/users/" + e.plain.ID + "/quotas", "", ""
	}, 200, "", nil},
	{"audit", "GET", fixed("/admin/audit?type=user.created&limit=5"), 200, "", nil},
}

// TestAdminRBAC: every admin endpoint, for a plain user (404, as for a path
// that does not exist), an auditor (reads only; 403 for changes) and an
// administrator (success). Every change records admin.action besides its
// own event; refused requests record no admin.action and change nothing.
func TestAdminRBAC(t *testing.T) {
	e := newAdminEnv(t, adminSetup{policies: []string{"default", "big"}})
	_, notFound, _ := e.call("bob", "GET", "/no/such/endpoint", "")
	for _, tc := range adminCases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			path, body, target := tc.prepare(e)
			mark := e.audit.mark()

			st, b, _ := e.call("", tc.method, path, body)
			if st != http.StatusUnauthorized {
				t.Errorf("anonymous: %d %s", st, b)
			}
			st, b, _ = e.call("bob", tc.method, path, body)
			if st != http.StatusNotFound || b != notFound {
				t.Errorf("plain user: %d %s; want the 404 of a missing path", st, b)
			}
			st, b, _ = e.call("watcher", tc.method, path, body)
			if tc.method == "GET" {
				if st != http.StatusOK {
					t.Errorf("auditor: %d %s", st, b)
				}
			} else if code, msg := errorCode(b); st != http.StatusForbidden || code != "forbidden" || msg == "" {
				t.Errorf("auditor: %d %s; want 403 forbidden", st, b)
			}
			for _, ev := range e.audit.since(mark) {
				if ev.EventType == audit.AdminAction || ev.EventType == audit.UserDeleted || ev.EventType == audit.UserUpdated {
					t.Errorf("a refused request recorded %s", ev.EventType)
				}
			}

			mark = e.audit.mark()
			st, b, _ = e.call("root", tc.method, path, body)
			if st != tc.want {
				t.Fatalf("admin: %d %s; want %d", st, b, tc.want)
			}
			if st != http.StatusNoContent && !json.Valid([]byte(b)) {
				t.Fatalf("admin: not JSON: %s", b)
			}
			events := e.audit.since(mark)
			var actions []audit.Event
			types := map[string]bool{}
			for _, ev := range events {
				types[ev.EventType] = true
				if ev.EventType == audit.AdminAction {
					actions = append(actions, ev)
				}
			}
			if tc.action == "" {
				if len(actions) != 0 {
					t.Fatalf("a read recorded admin.action: %+v", actions)
				}
				return
			}
			if len(actions) != 1 {
				t.Fatalf("admin.action recorded %d times: %+v", len(actions), events)
			}
			a := actions[0]
			if a.Metadata["action"] != tc.action || a.Metadata["actor"] != "root" || a.Metadata["actorId"] != e.admin.ID ||
				a.IPAddress == "" || a.Status != audit.StatusSuccess {
				t.Errorf("admin.action = %+v", a)
			}
			if target != "" && a.UserID != target {
				t.Errorf("admin.action names user %q, want the target %q", a.UserID, target)
			}
			for _, typ := range tc.events {
				if !types[typ] {
					t.Errorf("no %s event besides admin.action; got %v", typ, slices.Sorted(func(yield func(string) bool) {
						for k := range types {
							if !yield(k) {
								return
							}
						}
					}))
				}
			}
		})
	}
	e.t = t

	// The 405 of an admin path is the 404 of a missing one to a plain user.
	if st, b, _ := e.call("bob", "PUT", "/admin/users", "{}"); st != http.StatusNotFound || b != notFound {
		t.Errorf("PUT /admin/users as a plain user: %d %s", st, b)
	}
	if st, _, h := e.call("watcher", "PUT", "/admin/users", "{}"); st != http.StatusMethodNotAllowed || h.Get("Allow") != "GET, POST" {
		t.Errorf("PUT /admin/users as an auditor: %d Allow %q", st, h.Get("Allow"))
	}
	// And the stored audit log holds the admin actions.
	var page struct {
		Events []audit.Event `json:"events"`
		Total  int           `json:"total"`
	}
	// admin.action names the target user, not the actor: of root's own
	// entries, only the invite, which has no target.
	e.decode("watcher", "GET", "/admin/audit?type=admin.action&user=root&limit=1000", "", &page)
	if page.Total != 1 || page.Events[0].Metadata["action"] != "invite.create" {
		t.Errorf("admin.action events of root: %+v", page.Events)
	}
	e.decode("watcher", "GET", "/admin/audit?type=admin.action", "", &page)
	if page.Total < 10 || len(page.Events) != page.Total || page.Events[0].Seq < page.Events[len(page.Events)-1].Seq {
		t.Errorf("admin.action in the audit log: %d of %d", len(page.Events), page.Total)
	}
}

func TestAdminUsersPagingAndSearch(t *testing.T) {
	e := newAdminEnv(t, adminSetup{})
	for i := 1; i <= 12; i++ {
		e.mustUser(fmt.Sprintf("dev%02d", i), "")
	}
	type listing struct {
		Users []struct {
			Username string `json:"username"`
			Policy   string `json:"policy"`
			IsActive bool   `json:"isActive"`
		} `json:"users"`
		Total, Offset, Limit int
	}
	var l listing
	e.decode("root", "GET", "/admin/users?search=DEV&offset=5&limit=4", "", &l)
	if l.Total != 12 || len(l.Users) != 4 || l.Users[0].Username != "dev06" || l.Users[3].Username != "dev09" || l.Offset != 5 || l.Limit != 4 {
		t.Fatalf("page = %+v", l)
	}
	e.decode("root", "GET", "/admin/users?search=dev&offset=10&limit=4", "", &l)
	if l.Total != 12 || len(l.Users) != 2 || l.Users[1].Username != "dev12" {
		t.Fatalf("last page = %+v", l)
	}
	e.decode("root", "GET", "/admin/users?search=@example.com", "", &l)
	if l.Total != 15 || len(l.Users) != 15 || l.Limit != defaultPage {
		t.Fatalf("by email = %d of %d", len(l.Users), l.Total)
	}
	e.decode("root", "GET", "/admin/users?search=%25", "", &l) // a literal %, no wildcard
	if l.Total != 0 || l.Users == nil {
		t.Fatalf("search %%: %+v", l)
	}
	e.decode("root", "GET", "/admin/users?offset=100", "", &l)
	if l.Total != 15 || len(l.Users) != 0 {
		t.Fatalf("past the end: %+v", l)
	}
}

func TestAdminSessionsAndUsernames(t *testing.T) {
	e := newAdminEnv(t, adminSetup{})
	var l struct {
		Sessions []struct {
			ID, UserID, Username, Kind string
			Current                    bool
		} `json:"sessions"`
		Total int `json:"total"`
	}
	e.decode("watcher", "GET", "/admin/sessions", "", &l)
	if l.Total != 3 || len(l.Sessions) != 3 {
		t.Fatalf("sessions = %+v", l)
	}
	for _, s := range l.Sessions {
		if s.Username == "" || s.Kind != "api" || s.Current != (s.Username == "watcher") {
			t.Errorf("session %+v", s)
		}
	}
	e.decode("watcher", "GET", "/admin/sessions?user="+e.plain.ID, "", &l)
	if l.Total != 1 || l.Sessions[0].Username != "bob" {
		t.Fatalf("bob's sessions = %+v", l)
	}
	// Revoking bob's sessions signs bob out.
	var n struct{ Revoked int }
	e.decode("root", "DELETE", "/admin/users/"+e.plain.ID+"/sessions", "", &n)
	if n.Revoked != 1 {
		t.Fatalf("revoked %d", n.Revoked)
	}
	if st, _, _ := e.call("bob", "GET", "/me", ""); st != http.StatusUnauthorized {
		t.Fatalf("bob after the revocation: %d", st)
	}
	// An administrator revoking their own sessions keeps the current one.
	e.decode("root", "DELETE", "/admin/users/"+e.admin.ID+"/sessions", "", &n)
	if st, _, _ := e.call("root", "GET", "/me", ""); st != http.StatusOK || n.Revoked != 0 {
		t.Fatalf("root after revoking their own others: %d, revoked %d", st, n.Revoked)
	}
}

func TestAdminUsageAndQuotas(t *testing.T) {
	ctx := context.Background()
	e := newAdminEnv(t, adminSetup{})
	e.running(e.plain)
	e.ws.add(&workspace.Workspace{ID: "warm-1", State: workspace.StateRunning, CreatedAt: time.Now()})
	e.ws.add(&workspace.Workspace{ID: "queued-1", UserID: "someone", State: workspace.StateQueued, CreatedAt: time.Now()})
	if err := e.res.TrackUsage(ctx); err != nil {
		t.Fatal(err)
	}

	var q struct {
		UserID string                  `json:"userId"`
		Quotas []resources.QuotaStatus `json:"quotas"`
	}
	e.decode("watcher", "GET", "/admin/users/"+e.plain.ID+"/quotas", "", &q)
	if q.UserID != e.plain.ID || len(q.Quotas) != 5 {
		t.Fatalf("quotas = %+v", q)
	}
	byRes := map[resources.Resource]resources.QuotaStatus{}
	for _, x := range q.Quotas {
		byRes[x.Resource] = x
	}
	if s := byRes[resources.Sessions]; s.Current != 1 || s.Limit != 5 || s.Available != 4 || s.Exceeded {
		t.Errorf("sessions quota = %+v", s)
	}
	if s := byRes[resources.Storage]; s.Current != 300<<20 || s.Limit != 1<<30 || s.Exceeded {
		t.Errorf("storage quota = %+v", s)
	}
	if s := byRes[resources.Memory]; s.Current != 256 || s.Limit != 2048 {
		t.Errorf("memory quota = %+v", s)
	}
	for _, r := range []resources.Resource{resources.Connections, resources.CPU} {
		if _, ok := byRes[r]; !ok {
			t.Errorf("no %s quota", r)
		}
	}
	// The raw JSON has the design's QuotaStatus fields.
	_, raw, _ := e.call("root", "GET", "/admin/users/"+e.plain.ID+"/quotas", "")
	for _, f := range []string{`"resource"`, `"current"`, `"limit"`, `"available"`, `"exceeded"`} {
		if !strings.Contains(raw, f) {
			t.Errorf("quotas JSON lacks %s: %s", f, raw)
		}
	}

	var usage struct {
		Usage []map[string]any `json:"usage"`
		Total int              `json:"total"`
	}
	e.decode("watcher", "GET", "/admin/usage?search=bob", "", &usage)
	if usage.Total != 1 || len(usage.Usage) != 1 {
		t.Fatalf("usage = %+v", usage)
	}
	u := usage.Usage[0]
	if u["userId"] != e.plain.ID || u["username"] != "bob" {
		t.Fatalf("usage row = %v", u)
	}
	for k, fields := range map[string][]string{
		"storage": {"used", "limit"}, "sessions": {"active", "limit"}, "connections": {"current", "limit"},
		"cpu": {"percent", "limit"}, "memory": {"mb", "limit"},
	} {
		m, _ := u[k].(map[string]any)
		for _, f := range fields {
			if _, ok := m[f]; !ok {
				t.Errorf("usage lacks %s.%s: %v", k, f, u)
			}
		}
	}
	if s := u["storage"].(map[string]any); s["used"] != float64(300<<20) {
		t.Errorf("storage used = %v", s["used"])
	}

	var hist resources.PeriodUsage
	e.decode("watcher", "GET", "/admin/users/"+e.plain.ID+"/usage?period=1h", "", &hist)
	if hist.UserID != e.plain.ID || hist.Period != "1h" || hist.StepSeconds != 60 || hist.Count != 1 || len(hist.Samples) != 1 ||
		hist.Samples[0].StorageBytes != 300<<20 || hist.Samples[0].Sessions != 1 {
		t.Fatalf("history = %+v", hist)
	}
	e.decode("watcher", "GET", "/admin/users/"+e.plain.ID+"/usage", "", &hist)
	if hist.Period != "24h" {
		t.Fatalf("default period = %q", hist.Period)
	}

	var ws struct {
		Workspaces []WorkspaceInfo `json:"workspaces"`
		Total      int             `json:"total"`
	}
	e.decode("watcher", "GET", "/admin/workspaces", "", &ws)
	if ws.Total != 3 {
		t.Fatalf("workspaces = %+v", ws)
	}
	w := ws.Workspaces[0]
	if w.Username != "bob" || w.State != "running" || w.UptimeSeconds < 3590 || w.Node != "node-1" || w.Usage == nil ||
		w.Usage.Storage.Used != 300<<20 {
		t.Fatalf("bob's workspace = %+v", w)
	}
	if ws.Workspaces[1].Usage != nil || ws.Workspaces[1].UserID != "" {
		t.Fatalf("warm workspace = %+v", ws.Workspaces[1])
	}

	var ov struct {
		Users      struct{ Total, Active int } `json:"users"`
		Sessions   struct{ Active int }        `json:"sessions"`
		Workspaces struct {
			Total      int            `json:"total"`
			ByState    map[string]int `json:"byState"`
			StartQueue int            `json:"startQueue"`
			WarmPool   int            `json:"warmPool"`
		} `json:"workspaces"`
		RecentFailures struct {
			Count  int           `json:"count"`
			Latest []audit.Event `json:"latest"`
		} `json:"recentFailures"`
		Series struct {
			StepSeconds     int     `json:"stepSeconds"`
			ActiveSessions  []point `json:"activeSessions"`
			WorkspaceStarts []point `json:"workspaceStarts"`
		} `json:"series"`
		Storage []struct {
			Username string `json:"username"`
			Bytes    int64  `json:"bytes"`
		} `json:"storage"`
	}
	// A failed sign-in is a recent failure.
	if _, err := e.id.Login(ctx, "bob", "wrong password!", identity.Client{IP: "192.0.2.9"}); err == nil {
		t.Fatal("a wrong password signed in")
	}
	e.decode("watcher", "GET", "/admin/overview", "", &ov)
	if ov.Users.Total != 3 || ov.Users.Active != 3 || ov.Sessions.Active != 3 {
		t.Errorf("overview users/sessions = %+v %+v", ov.Users, ov.Sessions)
	}
	if ov.Workspaces.Total != 3 || ov.Workspaces.ByState["running"] != 2 || ov.Workspaces.StartQueue != 1 || ov.Workspaces.WarmPool != 1 {
		t.Errorf("overview workspaces = %+v", ov.Workspaces)
	}
	if ov.RecentFailures.Count != 1 || len(ov.RecentFailures.Latest) != 1 || ov.RecentFailures.Latest[0].EventType != audit.LoginFailure {
		t.Errorf("overview failures = %+v", ov.RecentFailures)
	}
	if ov.Series.StepSeconds != 900 || len(ov.Series.ActiveSessions) != 1 || ov.Series.ActiveSessions[0].Value != 3 ||
		len(ov.Series.WorkspaceStarts) != 1 || ov.Series.WorkspaceStarts[0].Value != 0 {
		t.Errorf("overview series = %+v", ov.Series)
	}
	if len(ov.Storage) != 1 || ov.Storage[0].Username != "bob" || ov.Storage[0].Bytes != 300<<20 {
		t.Errorf("overview storage = %+v", ov.Storage)
	}
}

// TestAdminBadInput: bad input on every endpoint is a 4xx JSON error with
// a code and a message, never a 5xx; nothing changes.
func TestAdminBadInput(t *testing.T) {
	e := newAdminEnv(t, adminSetup{policies: []string{"default"}})
	carol := e.target("carol")
	e.ws.add(&workspace.Workspace{ID: "warm-1", State: workspace.StateRunning, CreatedAt: time.Now()})
	uid := "/admin/users/" + carol.ID
	missing := "/admin/users/00000000-0000-0000-0000-000000000000"
	long := strings.Repeat("x", 300)
	cases := []struct {
		method, path, body string
		want               int
		contentType        string
	}{
		{"GET", "/admin/users?limit=abc", "", 400, ""},
		{"GET", "/admin/users?limit=0", "", 400, ""},
		{"GET", "/admin/users?limit=100000", "", 400, ""},
		{"GET", "/admin/users?offset=-1", "", 400, ""},
		{"GET", "/admin/users?search=" + long, "", 400, ""},
		{"GET", "/admin/users?search=%00", "", 400, ""},
		{"GET", "/admin/users?search=%ff", "", 400, ""},
		{"POST", "/admin/users", "", 400, ""},
		{"POST", "/admin/users", `{"username":`, 400, ""},
		{"POST", "/admin/users", `{"username":"x","bogus":1}`, 400, ""},
		{"POST", "/admin/users", `{"username":"dave"}`, 400, ""},
		{"POST", "/admin/users", `{"username":"dave","email":"d@example.com","password":"short"}`, 400, ""},
		{"POST", "/admin/users", `{"username":"D A V E","email":"d@example.com","password":"` + multiPW + `"}`, 400, ""},
		{"POST", "/admin/users", `{"username":"dave","email":"nope","password":"` + multiPW + `"}`, 400, ""},
		{"POST", "/admin/users", `{"username":"dave","email":"d@example.com","password":"` + multiPW + `","role":"root"}`, 400, ""},
		{"POST", "/admin/users", `{"username":"dave","email":"d@example.com","password":"` + multiPW + `","policy":"gpu"}`, 400, ""},
		{"POST", "/admin/users", `{"username":"dave","email":"d@example.com","password":"` + multiPW + `","metadata":{"policy":"x"}}`, 400, ""},
		{"POST", "/admin/users", `{"username":"carol","email":"d@example.com","password":"` + multiPW + `"}`, 409, ""},
		{"POST", "/admin/users", `{"username":"dave","email":"d@example.com","password":"` + multiPW + `"}`, 400, "text/plain"},
		{"POST", "/admin/users", `{"username":"` + strings.Repeat("a", 70000) + `"}`, 400, ""},
		{"POST", "/admin/users", `[1,2]`, 400, ""},
		{"GET", "/admin/users/nope", "", 404, ""},
		{"GET", "/admin/users/" + long, "", 404, ""},
		{"GET", "/admin/users/%00", "", 404, ""},
		{"GET", missing, "", 404, ""},
		{"PATCH", uid, `{}`, 400, ""},
		{"PATCH", uid, `{"role":"root"}`, 400, ""},
		{"PATCH", uid, `{"active":"yes"}`, 400, ""},
		{"PATCH", uid, `{"username":"bob"}`, 409, ""},
		{"PATCH", uid, `{"email":"bob@example.com"}`, 409, ""},
		{"PATCH", uid, `{"policy":"gpu"}`, 400, ""},
		{"PATCH", uid, `{"policy":"../../etc"}`, 400, ""},
		{"PATCH", uid, `{"metadata":{"":1}}`, 400, ""},
		{"PATCH", uid, `{"metadata":[1]}`, 400, ""},
		{"PATCH", missing, `{"role":"user"}`, 404, ""},
		{"PATCH", "/admin/users/" + "{id}", `{"role":"user"}`, 404, ""},
		{"DELETE", missing, "", 404, ""},
		{"POST", uid + "/lock", `{"until":"tomorrow"}`, 400, ""},
		{"POST", uid + "/lock", `{"until":"2001-01-01T00:00:00Z"}`, 400, ""},
		{"POST", uid + "/lock", `{"until":5}`, 400, ""},
		{"POST", uid + "/lock", `{"for":"1h"}`, 400, ""},
		{"POST", missing + "/lock", "", 404, ""},
		{"POST", missing + "/unlock", "", 404, ""},
		{"POST", uid + "/password", `{}`, 400, ""},
		{"POST", uid + "/password", `{"password":"short"}`, 400, ""},
		{"POST", uid + "/password", `{"password":"carol"}`, 400, ""},
		{"POST", missing + "/password", `{"password":"` + multiPW + `"}`, 404, ""},
		{"DELETE", missing + "/sessions", "", 404, ""},
		{"POST", "/admin/invites", `{"ttl":"forever"}`, 400, ""},
		{"POST", "/admin/invites", `{"ttl":"1000h"}`, 400, ""},
		{"POST", "/admin/invites", `{"ttl":"-1h"}`, 400, ""},
		{"POST", "/admin/invites", `{"role":"root"}`, 400, ""},
		{"POST", "/admin/invites", `{"email":"bad"}`, 400, ""},
		{"GET", "/admin/sessions?limit=x", "", 400, ""},
		{"GET", "/admin/sessions?user=" + long, "", 400, ""},
		{"DELETE", "/admin/sessions/nope", "", 404, ""},
		{"DELETE", "/admin/sessions/" + long, "", 404, ""},
		{"POST", "/admin/workspaces/nope/stop", "", 404, ""},
		{"POST", "/admin/workspaces/nope/restart", "", 404, ""},
		{"POST", "/admin/workspaces/warm-1/restart", "", 409, ""},
		{"GET", "/admin/usage?limit=-1", "", 400, ""},
		{"GET", "/admin/usage?offset=1e3", "", 400, ""},
		{"GET", uid + "/usage?period=1y", "", 400, ""},
		{"GET", missing + "/usage", "", 404, ""},
		{"GET", missing + "/quotas", "", 404, ""},
		{"GET", "/admin/audit?since=yesterday", "", 400, ""},
		{"GET", "/admin/audit?until=2026-13-01T00:00:00Z", "", 400, ""},
		{"GET", "/admin/audit?since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z", "", 400, ""},
		{"GET", "/admin/audit?type=user.nope", "", 400, ""},
		{"GET", "/admin/audit?limit=5000", "", 400, ""},
		{"GET", "/admin/audit?offset=x", "", 400, ""},
		{"GET", "/admin/audit?user=%00", "", 400, ""},
		{"GET", "/admin/nope", "", 404, ""},
		// An administrator may not lock themselves out.
		{"DELETE", "/admin/users/" + e.admin.ID, "", 409, ""},
		{"POST", "/admin/users/" + e.admin.ID + "/lock", "", 409, ""},
		{"PATCH", "/admin/users/" + e.admin.ID, `{"role":"user"}`, 409, ""},
		{"PATCH", "/admin/users/" + e.admin.ID, `{"active":false}`, 409, ""},
	}
	mark := e.audit.mark()
	for _, tc := range cases {
		name := tc.method + " " + tc.path + " " + tc.body
		if len(name) > 120 {
			name = name[:120]
		}
		var hdr []string
		if tc.contentType != "" {
			hdr = []string{"Content-Type", tc.contentType}
		}
		st, b, h := e.call("root", tc.method, tc.path, tc.body, hdr...)
		code, msg := errorCode(b)
		if st != tc.want || code == "" || msg == "" || h.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %s; want %d with a JSON error", name, st, b, tc.want)
		}
	}
	for _, ev := range e.audit.since(mark) {
		if ev.EventType == audit.AdminAction {
			t.Errorf("a refused change recorded admin.action: %+v", ev)
		}
	}
	// Nothing changed.
	u, err := e.id.User(context.Background(), carol.ID)
	if err != nil || u.Username != "carol" || !u.Active || identity.PolicyOf(u) != "" || u.Locked(time.Now()) {
		t.Fatalf("carol after the bad requests: %+v, %v", u, err)
	}
}

// TestAdminNotInSingleUserMode: without user accounts there is no admin API.
func TestAdminNotInSingleUserMode(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	e.login(c, testPassword).Body.Close()
	resp := e.do(c, "GET", "/api/v1/admin/users", nil, nil)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "not_found") {
		t.Fatalf("single-user admin API: %d %s", resp.StatusCode, body)
	}
}

// TestAdminCookieAndCrossOrigin: a browser session works on the admin API,
// and a cross-site request carrying it changes nothing.
func TestAdminCookieAndCrossOrigin(t *testing.T) {
	e := newAdminEnv(t, adminSetup{})
	res, err := e.id.Login(context.Background(), "root", multiPW, identity.Client{IP: "192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	send := func(method, path, body string, hdr ...string) (int, string) {
		req, _ := http.NewRequest(method, e.front.URL+"/api/v1"+path, strings.NewReader(body))
		req.AddCookie(&http.Cookie{Name: e.cfg.Session.CookieName, Value: res.CookieToken})
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	if st, b := send("GET", "/admin/users", ""); st != http.StatusOK {
		t.Fatalf("GET with the cookie: %d %s", st, b)
	}
	mark := e.audit.mark()
	st, b := send("POST", "/admin/invites", `{}`, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if code, _ := errorCode(b); st != http.StatusForbidden || code != "cross_origin" {
		t.Fatalf("cross-site POST: %d %s", st, b)
	}
	for _, ev := range e.audit.since(mark) {
		if ev.EventType == audit.AdminAction || ev.EventType == audit.InviteCreated {
			t.Fatalf("a cross-site request changed something: %+v", ev)
		}
	}
	if st, b := send("POST", "/admin/invites", `{}`, "Origin", e.front.URL, "Sec-Fetch-Site", "same-origin"); st != http.StatusCreated {
		t.Fatalf("same-origin POST: %d %s", st, b)
	}
}
