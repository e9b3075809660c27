package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/testenv"
	fakeconsul "github.com/codehub-dev/codehub/internal/testfake/consul"
	fakenomad "github.com/codehub-dev/codehub/internal/testfake/nomad"
	"github.com/codehub-dev/codehub/internal/workspace"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"
)

// These helpers run gateways in the container strategy: workspaces are
// dispatched Nomad jobs found through Consul. By default Nomad and Consul
// are the in-repo fakes (internal/testfake/nomad runs each task as a local
// process and registers its services, with their script checks, in the
// fake Consul); with NOMAD_ADDR and CONSUL_HTTP_ADDR set they are real
// agents (say `nomad agent -dev` and `consul agent -dev` on this machine:
// raw_exec must be enabled and the client must be able to run this test
// binary and code-server from their paths here).
//
// The jobs registered are jobs/workspace.nomad.hcl and
// jobs/warm-pool.nomad.hcl as read from the files, with one change: the
// task's driver is raw_exec and runs this test binary as `codehub agent`
// (TestMain), with --code-server pointing at the code-server `make setup`
// installed, and the docker volume's /home/coder replaced by a directory
// per user under the test's temporary directory. Everything else (the
// parameterized block, meta, dispatch_payload, the template that copies
// the secret into secrets/, the port, the service with its tags, meta and
// its script check, restart and reschedule) is the file's, so the shipped
// health check script is what runs. Against real agents the jobs, the
// workspaces' service and the gateways' service get a random prefix and
// are purged when the test ends.

// clusterJobsDir holds the shipped Nomad job specs.
const clusterJobsDir = "../../jobs"

func clusterRealNomad() bool  { return os.Getenv("NOMAD_ADDR") != "" }
func clusterRealConsul() bool { return os.Getenv("CONSUL_HTTP_ADDR") != "" }

// clusterOptions chooses a test's Nomad and Consul.
type clusterOptions struct {
	// ConsulDCs are the fake Consul's datacenters, the first the
	// gateway's (default dc1).
	ConsulDCs []string
	// NodeDC is the datacenter of the fake Nomad's node, whose Consul
	// agent it registers the workspaces' services with (default the
	// gateway's).
	NodeDC string
	// GatewayConsul is a real Consul agent (host:port) the test started,
	// the gateway's, rather than CONSUL_HTTP_ADDR's or the fake's.
	GatewayConsul string
	// ConsulAddrs are real Consul agents by datacenter (host:port): the
	// checks of a service registered in a datacenter are updated through
	// its agent.
	ConsulAddrs map[string]string
	// FakeNomad runs the fake Nomad even when NOMAD_ADDR names a real
	// one, whose clients are not in NodeDC.
	FakeNomad bool
}

// clusterEnv is a Nomad and a Consul with the workspace jobs registered.
type clusterEnv struct {
	t    *testing.T
	opts clusterOptions

	nomad                 *fakenomad.Server // nil against a real Nomad
	nomadAddr, nomadToken string
	nomadNS               string
	nc                    *nomadapi.Client

	consul                  *fakeconsul.Server // nil against a real Consul
	consulAddr, consulToken string
	cc                      *consulapi.Client // the gateway's agent

	// job and warmJob are the parameterized jobs; service the
	// workspaces' Consul service, gatewayService the gateways'.
	job, warmJob, service, gatewayService string
	prefix                                string // "" with the fakes

	homes      string // one directory per user: the "volumes"
	codeServer string
	agentBin   string

	regMu sync.Mutex
	regs  map[string]*sqlstore.DB
}

// newClusterEnv starts (or reaches) Nomad and Consul and registers the
// shipped workspace and warm-pool jobs.
func newClusterEnv(t *testing.T, o clusterOptions) *clusterEnv {
	t.Helper()
	testenv.SkipShort(t)
	if len(o.ConsulDCs) == 0 {
		o.ConsulDCs = []string{"dc1"}
	}
	if o.NodeDC == "" {
		o.NodeDC = o.ConsulDCs[0]
	}
	realNomad := clusterRealNomad() && !o.FakeNomad
	realConsul := clusterRealConsul() || o.GatewayConsul != ""
	if realNomad && !realConsul {
		t.Skip("a real Nomad registers the workspaces' services in a real Consul: set CONSUL_HTTP_ADDR too")
	}
	needCheckTools(t)
	e := &clusterEnv{t: t, opts: o, codeServer: testenv.CodeServer(t), regs: map[string]*sqlstore.DB{}}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e.agentBin = bin
	e.homes = filepath.Join(t.TempDir(), "homes")
	if err := os.MkdirAll(e.homes, 0o755); err != nil {
		t.Fatal(err)
	}
	quiet := testenv.Logger(t)
	quiet.SetLevel(hclog.Warn)

	e.job, e.warmJob, e.service, e.gatewayService = "codehub-workspace", "codehub-warm-pool", "codehub-workspace", "codehub-gateway"
	if realNomad || realConsul {
		e.prefix = "codehub-test-" + randomHex(t, 3) + "-"
		e.job, e.warmJob = e.prefix+"workspace", e.prefix+"warm-pool"
		e.service, e.gatewayService = e.prefix+"workspace", e.prefix+"gateway"
	}

	// Consul first: the fake Nomad registers services with it.
	if o.GatewayConsul != "" {
		e.consulAddr = o.GatewayConsul
	} else if clusterRealConsul() {
		e.consulAddr, e.consulToken = os.Getenv("CONSUL_HTTP_ADDR"), os.Getenv("CONSUL_HTTP_TOKEN")
	} else {
		e.consul = fakeconsul.Start(t, fakeconsul.Options{Datacenters: o.ConsulDCs, Logger: quiet.Named("fake-consul")})
		e.consulAddr = e.consul.Addr(o.ConsulDCs[0])
	}
	cfg := consulapi.DefaultConfig()
	cfg.Address, cfg.Token = e.consulAddr, e.consulToken
	if cfg.Token == "" {
		cfg.Token = "anonymous"
		if realConsul {
			cfg.Token = ""
		}
	}
	if e.cc, err = consulapi.NewClient(cfg); err != nil {
		t.Fatal(err)
	}

	ncfg := nomadapi.DefaultConfig()
	if realNomad {
		e.nomadAddr, e.nomadToken, e.nomadNS = ncfg.Address, ncfg.SecretID, ncfg.Namespace
	} else {
		var consulCfg *consulapi.Config
		if e.consul != nil {
			consulCfg = e.consul.Config(o.NodeDC, "")
		} else if a := o.ConsulAddrs[o.NodeDC]; a != "" {
			consulCfg = &consulapi.Config{Address: a}
		} else {
			consulCfg = consulapi.DefaultConfig()
		}
		f, err := fakenomad.New(fakenomad.Options{Datacenter: o.NodeDC, Consul: consulCfg, Logger: quiet.Named("fake-nomad")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Close)
		e.nomad = f
		e.nomadAddr = f.URL()
		ncfg.Address, ncfg.SecretID, ncfg.Namespace, ncfg.Region = f.URL(), "", "", ""
	}
	if e.nc, err = nomadapi.NewClient(ncfg); err != nil {
		t.Fatal(err)
	}
	if e.prefix != "" && realNomad {
		t.Cleanup(e.purge)
	}
	for file, id := range map[string]string{"workspace.nomad.hcl": e.job, "warm-pool.nomad.hcl": e.warmJob} {
		if _, _, err := e.nc.Jobs().Register(e.jobFromFile(file, id), e.write()); err != nil {
			t.Fatalf("register %s as %s: %v", file, id, err)
		}
	}
	return e
}

// agentOf is a client of dc's Consul agent, where the checks of services
// registered in dc are updated: the gateway's for "" or when the test
// knows no other.
func (e *clusterEnv) agentOf(dc string) *consulapi.Client {
	e.t.Helper()
	a := e.opts.ConsulAddrs[dc]
	if dc == "" || a == "" || a == e.consulAddr {
		return e.cc
	}
	cfg := consulapi.DefaultConfig()
	cfg.Address = a
	c, err := consulapi.NewClient(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// needCheckTools skips t (fails it under CODEHUB_E2E=require) without what
// the jobs' health check script runs: /bin/sh, grep, and curl or wget.
func needCheckTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"/bin/sh", "grep", "cat"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Need(t, tool+", for the workspace job's health check script")
		}
	}
	_, curl := exec.LookPath("curl")
	_, wget := exec.LookPath("wget")
	if curl != nil && wget != nil {
		testenv.Need(t, "curl or wget, for the workspace job's health check script")
	}
}

func (e *clusterEnv) write() *nomadapi.WriteOptions {
	return &nomadapi.WriteOptions{Namespace: e.nomadNS}
}
func (e *clusterEnv) query() *nomadapi.QueryOptions {
	return &nomadapi.QueryOptions{Namespace: e.nomadNS}
}

// needFake skips what only the fakes can simulate.
func (e *clusterEnv) needFake(t *testing.T, what string) {
	t.Helper()
	if e.nomad == nil || e.consul == nil {
		t.Skipf("against real agents: %s can only be simulated by the fake Nomad and Consul", what)
	}
}

// purge removes the test's jobs from a real Nomad, dispatched ones first.
func (e *clusterEnv) purge() {
	stubs, _, err := e.nc.Jobs().List(&nomadapi.QueryOptions{Prefix: e.prefix, Namespace: e.nomadNS})
	if err != nil {
		e.t.Logf("purge: list jobs: %v", err)
		return
	}
	sort.Slice(stubs, func(i, j int) bool { return len(stubs[i].ID) > len(stubs[j].ID) })
	for _, s := range stubs {
		_, _, _ = e.nc.Jobs().Deregister(s.ID, true, e.write())
	}
}

// ---- the job files ----

// shippedJob is a shipped job file as Nomad's parser reads it (the fake
// Nomad's parser, which follows Nomad's: a constraint without operator is
// "=", and so on).
func shippedJob(t *testing.T, file string) *nomadapi.Job {
	t.Helper()
	job, err := fakenomad.ParseJobFile(filepath.Join(clusterJobsDir, file))
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// shippedCheck is the Consul check of the workspace service in a job
// file's default group, exactly as written.
func shippedCheck(t *testing.T, file string) nomadapi.ServiceCheck {
	t.Helper()
	for _, g := range shippedJob(t, file).TaskGroups {
		if *g.Count == 0 {
			continue
		}
		for _, task := range g.Tasks {
			for _, svc := range task.Services {
				if len(svc.Checks) > 0 {
					return svc.Checks[0]
				}
			}
		}
	}
	t.Fatalf("%s: no service check in the default group", file)
	return nomadapi.ServiceCheck{}
}

// jobFromFile is the job of a shipped job file as Nomad would register
// it, named id, whose default group's task runs this test binary as the
// agent with raw_exec (see the top of this file).
func (e *clusterEnv) jobFromFile(file, id string) *nomadapi.Job {
	t := e.t
	t.Helper()
	job := shippedJob(t, file)
	job.ID, job.Name = &id, &id
	for _, tg := range job.TaskGroups {
		for _, task := range tg.Tasks {
			for _, svc := range task.Services {
				if svc.Name == "codehub-workspace" {
					svc.Name = e.service
				}
			}
			if *tg.Count > 0 {
				e.runHere(task)
			}
		}
	}
	return job
}

// runHere makes a task of the default group run this test binary as the
// agent: raw_exec, the file's arguments with the Docker volume's
// /home/coder a directory per user under the test's, and --code-server
// the one `make setup` installed. What only a container gives (its user,
// image, capabilities) goes; everything else stays as written.
func (e *clusterEnv) runHere(task *nomadapi.Task) {
	home := filepath.Join(e.homes, "${NOMAD_META_user_id}")
	var args []any
	for _, a := range task.Config["args"].([]any) {
		args = append(args, strings.ReplaceAll(fmt.Sprint(a), "/home/coder", home))
	}
	args = append(args, "--code-server", e.codeServer)
	for k, v := range task.Env {
		task.Env[k] = strings.ReplaceAll(v, "/home/coder", home)
	}
	task.Driver, task.User = "raw_exec", ""
	task.Config = map[string]any{"command": e.agentBin, "args": args}
}

// prepareHome makes a user's home as the workspace image has it: the
// folder the IDE opens, with a file in it.
func (e *clusterEnv) prepareHome(userID string) string {
	e.t.Helper()
	dir := filepath.Join(e.homes, userID, "workspaces")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello-cluster.txt"), []byte("hello from a Nomad workspace\n"), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return dir
}

// ---- gateways ----

// clusterGateway is a gateway configuration of the environment.
type clusterGateway struct {
	// DataDir is the gateway's; its SQLite database is there unless
	// Postgres is set.
	DataDir  string
	Postgres string
	// Port is bound and advertised in Consul (0: a free one).
	Port       int
	WarmPool   int
	Policies   string
	MemoryMB   int // default 256
	CPUPercent int // default 50
	Vault      *clusterVault

	File, DBPath, AuditFile string
}

// clusterVault is the gateway's vault block: a token login, transit
// signing with TransitKey and database credentials of DBRole, at their
// mounts (default transit and database), unless disabled.
type clusterVault struct {
	Addr, Token                     string
	TransitMount, TransitKey        string
	DBMount, DBRole                 string
	DisableTransit, DisableDatabase bool
}

// config writes the gateway's configuration file and returns it, with its
// paths filled in.
func (e *clusterEnv) config(c clusterGateway) clusterGateway {
	t := e.t
	t.Helper()
	if c.DataDir == "" {
		c.DataDir = filepath.Join(t.TempDir(), "data")
	}
	if c.Port == 0 {
		c.Port = clusterFreePort(t)
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = 256
	}
	if c.CPUPercent == 0 {
		c.CPUPercent = 50
	}
	c.DBPath = filepath.Join(c.DataDir, "codehub.db")
	c.AuditFile = filepath.Join(c.DataDir, "audit.log")
	var b strings.Builder
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port))
	fmt.Fprintf(&b, "deployment_mode = \"multi\"\nbind_addr = %q\nlog_level = \"debug\"\ndata_dir = %q\n", addr, c.DataDir)
	fmt.Fprintf(&b, "login_throttle {\n  per_address_burst = 1000\n  global_burst = 1000\n}\n")
	fmt.Fprintf(&b, "audit {\n  file = %q\n}\n", c.AuditFile)
	fmt.Fprintf(&b, "multi_user {\n  auth {\n    registration = \"admin\"\n")
	if c.Postgres != "" {
		fmt.Fprintf(&b, "    database {\n      type = \"postgres\"\n      url = %q\n    }\n", c.Postgres)
	} else {
		fmt.Fprintf(&b, "    database {\n      type = \"sqlite\"\n      path = %q\n    }\n", c.DBPath)
	}
	fmt.Fprintf(&b, "    session {\n      store = \"database\"\n    }\n")
	fmt.Fprintf(&b, "    password {\n      memory_kib = 8192\n      iterations = 1\n    }\n  }\n")
	fmt.Fprintf(&b, "  isolation {\n    strategy = \"container\"\n")
	if c.Policies != "" {
		fmt.Fprintf(&b, "    policies = %q\n", c.Policies)
	}
	fmt.Fprintf(&b, "  }\n")
	fmt.Fprintf(&b, "  limits {\n    max_sessions_per_user = 100\n    memory_limit_mb = %d\n    cpu_limit_percent = %d\n    storage_quota_mb = 100\n    max_processes = 2048\n  }\n",
		c.MemoryMB, c.CPUPercent)
	fmt.Fprintf(&b, "  scaling {\n    start_concurrency = 4\n    container_pool {\n      enabled = %t\n      warm_pool_size = %d\n      max_idle_minutes = 0\n    }\n  }\n",
		c.WarmPool > 0, c.WarmPool)
	fmt.Fprintf(&b, "  features {\n    audit_logging = true\n  }\n}\n")
	fmt.Fprintf(&b, "nomad {\n  address = %q\n  job = %q\n  warm_pool_job = %q\n", e.nomadAddr, e.job, e.warmJob)
	if e.nomadToken != "" {
		fmt.Fprintf(&b, "  token = %q\n", e.nomadToken)
	}
	if e.nomadNS != "" {
		fmt.Fprintf(&b, "  namespace = %q\n", e.nomadNS)
	}
	fmt.Fprintf(&b, "}\n")
	fmt.Fprintf(&b, "consul {\n  address = %q\n  service = %q\n  gateway_service = %q\n  register_gateway = true\n  advertise_addr = %q\n",
		e.consulAddr, e.service, e.gatewayService, addr)
	if e.consulToken != "" {
		fmt.Fprintf(&b, "  token = %q\n", e.consulToken)
	}
	fmt.Fprintf(&b, "}\n")
	if v := c.Vault; v != nil {
		fmt.Fprintf(&b, "vault {\n  address = %q\n  auth {\n    method = \"token\"\n    token = %q\n  }\n", v.Addr, v.Token)
		fmt.Fprintf(&b, "  transit {\n    enabled = %t\n    key = %q\n", !v.DisableTransit, v.TransitKey)
		if v.TransitMount != "" {
			fmt.Fprintf(&b, "    mount = %q\n", v.TransitMount)
		}
		fmt.Fprintf(&b, "  }\n  database {\n    enabled = %t\n    role = %q\n", !v.DisableDatabase, v.DBRole)
		if v.DBMount != "" {
			fmt.Fprintf(&b, "    mount = %q\n", v.DBMount)
		}
		fmt.Fprintf(&b, "  }\n}\n")
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	c.File = filepath.Join(c.DataDir, "codehub.hcl")
	if err := os.WriteFile(c.File, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

func clusterFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startGateway runs a gateway with the configuration in-process, as main
// does, and waits until it answers.
func (e *clusterEnv) startGateway(c clusterGateway) *testGateway {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	g := &testGateway{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	home := t.TempDir()
	getenv := func(k string) string {
		if k == "HOME" {
			return home
		}
		return ""
	}
	argv := []string{"codehub", "--config", c.File}
	go func() { g.done <- run(ctx, argv, getenv, strings.NewReader(""), g.stdout, g.stderr) }()
	t.Cleanup(func() {
		if err := g.stop(); err != nil {
			t.Errorf("gateway stopped with %v", err)
		}
		if t.Failed() {
			t.Logf("gateway %s stdout:\n%s\nstderr (last lines):\n%s", g.URL, g.stdout.String(), clusterTail(g.stderr.String(), 150))
		}
	})
	deadline := time.Now().Add(guard)
	for {
		out := g.stdout.String()
		if m := urlRE.FindStringSubmatch(out); m != nil && (strings.Contains(out, "  Sign-in:") || strings.Contains(out, "  Admin:")) {
			g.URL = strings.TrimSuffix(m[1], "/")
			break
		}
		select {
		case err := <-g.done:
			g.cancel = nil
			t.Fatalf("codehub exited early: %v\n%s", err, clusterTail(g.stderr.String(), 80))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("codehub printed no announcement:\n%s", clusterTail(g.stderr.String(), 80))
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.waitHealthy(func(health) bool { return true })
	return g
}

func clusterTail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// registry opens the gateways' workspace registry (once per test).
func (e *clusterEnv) registry(c clusterGateway) workspace.Store {
	e.t.Helper()
	key := c.Postgres
	if key == "" {
		key = c.DBPath
	}
	e.regMu.Lock()
	defer e.regMu.Unlock()
	if db := e.regs[key]; db != nil {
		return db.Workspaces()
	}
	sc := sqlstore.Config{Driver: sqlstore.DriverSQLite, Path: c.DBPath}
	if c.Postgres != "" {
		sc = sqlstore.Config{Driver: sqlstore.DriverPostgres, DSN: c.Postgres, MaxOpenConns: 2}
	}
	db, err := sqlstore.Open(context.Background(), sc, nil)
	if err != nil {
		e.t.Fatalf("open the registry: %v", err)
	}
	e.t.Cleanup(func() { db.Close() })
	e.regs[key] = db
	return db.Workspaces()
}

// workspaceOf is the user's record in the registry.
func (e *clusterEnv) workspaceOf(c clusterGateway, userID string) *workspace.Workspace {
	e.t.Helper()
	w, err := e.registry(c).ByUser(context.Background(), userID)
	if err != nil {
		e.t.Fatalf("workspace of %s: %v", userID, err)
	}
	return w
}

// warmWorkspaces lists the registry's unclaimed workspaces.
func (e *clusterEnv) warmWorkspaces(c clusterGateway) []*workspace.Workspace {
	e.t.Helper()
	all, err := e.registry(c).List(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*workspace.Workspace
	for _, w := range all {
		if w.UserID == "" {
			out = append(out, w)
		}
	}
	return out
}

// ---- what a person does ----

// clusterNavigate is a browser's page load with the session.
func clusterNavigate(t *testing.T, u, token string) reply {
	t.Helper()
	return do(t, http.MethodGet, u, nil, "Accept", "text/html,application/xhtml+xml", "Sec-Fetch-Mode", "navigate",
		"Cookie", sessionCookie(token))
}

// clusterOpenIDE loads the IDE as a browser does, through the start page,
// until code-server's workbench page arrives; it returns how long that
// took and the workbench's URL.
func clusterOpenIDE(t *testing.T, g *testGateway, token string) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	var last reply
	for time.Since(start) < guard {
		last = clusterNavigate(t, g.URL+"/", token)
		if last.Status == http.StatusFound {
			loc, err := url.Parse(last.Header.Get("Location"))
			if err != nil || loc.Query().Get("folder") == "" {
				t.Fatalf("GET / redirects to %q, want code-server's ?folder=", last.Header.Get("Location"))
			}
			u := g.URL + "/?" + loc.RawQuery
			if r := clusterNavigate(t, u, token); r.Status == http.StatusOK && strings.Contains(string(r.Body), "workbench") {
				return time.Since(start), u
			} else {
				last = r
			}
		}
		if last.Status != http.StatusServiceUnavailable && last.Status != http.StatusFound {
			t.Fatalf("GET / with a session: %d %.300q", last.Status, last.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the IDE did not load within %s: last answer %d %.300q", guard, last.Status, last.Body)
	return 0, ""
}

// myWorkspace is GET /api/v1/me/workspace.
func myWorkspace(t *testing.T, g *testGateway, token string) workspaceStatus {
	t.Helper()
	r := do(t, http.MethodGet, g.URL+"/api/v1/me/workspace", nil, "Cookie", sessionCookie(token))
	if r.Status != http.StatusOK {
		t.Fatalf("GET /api/v1/me/workspace: %d %s", r.Status, r.Body)
	}
	var st workspaceStatus
	if err := json.Unmarshal(r.Body, &st); err != nil {
		t.Fatalf("GET /api/v1/me/workspace: %v: %s", err, r.Body)
	}
	return st
}

// jwtKid is the key id in an access token's header.
func jwtKid(t *testing.T, tok string) string {
	t.Helper()
	head, _, ok := strings.Cut(tok, ".")
	if !ok {
		t.Fatalf("not a JWT: %.40q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// ---- what the gateway says of itself ----

var metricLineRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.eE+-]+|NaN|\+Inf)`)

// gatewayMetrics scrapes /metrics into "name{labels}" -> value.
func gatewayMetrics(t *testing.T, g *testGateway) map[string]float64 {
	t.Helper()
	r := do(t, http.MethodGet, g.URL+"/metrics", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", r.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(r.Body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := metricLineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			v = math.NaN()
		}
		out[m[1]+m[2]] = v
	}
	return out
}

// sumMetric adds the values of every series of name whose labels contain
// each of labels ("k=\"v\"").
func sumMetric(m map[string]float64, name string, labels ...string) float64 {
	total := 0.0
	for k, v := range m {
		n, rest, _ := strings.Cut(k, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(rest, l)
		}
		if ok {
			total += v
		}
	}
	return total
}

// auditEvents reads the gateway's audit file.
func auditEvents(t *testing.T, c clusterGateway) []audit.Event {
	t.Helper()
	b, err := os.ReadFile(c.AuditFile)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	var out []audit.Event
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var ev audit.Event
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit log line %q: %v", line, err)
		}
		out = append(out, ev)
	}
	return out
}

// eventsOf filters events by type and user.
func eventsOf(evs []audit.Event, typ, userID string) []audit.Event {
	var out []audit.Event
	for _, ev := range evs {
		if ev.EventType == typ && (userID == "" || ev.UserID == userID) {
			out = append(out, ev)
		}
	}
	return out
}

// ---- Nomad and Consul ----

// nomadCalls is the fake Nomad's request counts (nil against a real one).
func (e *clusterEnv) nomadCalls() map[string]int {
	if e.nomad == nil {
		return nil
	}
	return e.nomad.Requests()
}

// callsSince totals the requests made since before, by route.
func callsSince(before, after map[string]int) (int, map[string]int) {
	diff := map[string]int{}
	total := 0
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			diff[k] = d
			total += d
		}
	}
	return total, diff
}

// instances returns the workspaces' service instances in dc ("" the
// gateway's) with tag, all or only the passing ones.
func (e *clusterEnv) instances(dc, tag string, passing bool) []*consulapi.ServiceEntry {
	e.t.Helper()
	entries, _, err := e.cc.Health().Service(e.service, tag, passing, &consulapi.QueryOptions{Datacenter: dc})
	if err != nil {
		e.t.Fatalf("Consul health of %s: %v", e.service, err)
	}
	return entries
}

// ideCheck returns the ID of the "ide" check of the workspace's instance.
func (e *clusterEnv) ideCheck(entry *consulapi.ServiceEntry) *consulapi.HealthCheck {
	for _, c := range entry.Checks {
		if c.ServiceID != "" && c.Name == "ide" {
			return c
		}
	}
	e.t.Fatalf("the instance %s has no check \"ide\": %+v", entry.Service.ID, entry.Checks)
	return nil
}

// childJobs lists the live dispatched children of a parameterized job and
// the jobs derived from it.
func (e *clusterEnv) childJobs(parent string) []*nomadapi.JobListStub {
	e.t.Helper()
	q := e.query()
	q.Prefix = parent
	stubs, _, err := e.nc.Jobs().List(q)
	if err != nil {
		e.t.Fatalf("list Nomad jobs: %v", err)
	}
	var out []*nomadapi.JobListStub
	for _, s := range stubs {
		if s.ParentID != "" && s.Status != "dead" {
			out = append(out, s)
		}
	}
	return out
}

// runningAlloc waits until the job has a running allocation.
func (e *clusterEnv) runningAlloc(jobID string) *nomadapi.AllocationListStub {
	e.t.Helper()
	var found *nomadapi.AllocationListStub
	eventually(e.t, guard, "an allocation of "+jobID+" to run", func() bool {
		stubs, _, err := e.nc.Jobs().Allocations(jobID, true, e.query())
		if err != nil {
			return false
		}
		for _, s := range stubs {
			if s.ClientStatus == nomadapi.AllocClientStatusRunning {
				found = s
				return true
			}
		}
		return false
	})
	return found
}

// jobGone reports whether a dispatched job was stopped (purged, or dead).
func (e *clusterEnv) jobGone(jobID string) bool {
	j, _, err := e.nc.Jobs().Info(jobID, e.query())
	if err != nil {
		return strings.Contains(err.Error(), "404") || strings.Contains(err.Error(), "not found")
	}
	return j.Stop != nil && *j.Stop || j.Status != nil && *j.Status == "dead"
}

func clusterSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
