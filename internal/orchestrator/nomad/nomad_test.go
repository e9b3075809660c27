// The orchestrator's tests run against the in-repo fake Nomad
// (internal/testfake/nomad), which runs the workspace job's task (this
// test binary standing in for `codehub agent`) as a local process.
//
// They also run against a real Nomad:
//
//	nomad agent -dev &                     # raw_exec is on in -dev mode
//	NOMAD_ADDR=http://127.0.0.1:4646 \
//	  [NOMAD_TOKEN=...] [NOMAD_NAMESPACE=...] [CONSUL_HTTP_ADDR=127.0.0.1:8500] \
//	  go test -count=1 -v ./internal/orchestrator/nomad
//
// The workspace job is then jobs/workspace.nomad.hcl's shape (the same
// parameterized block, payload, secret template, port and service) with
// the raw_exec driver running this test binary, which must be reachable by
// the Nomad client (the dev agent on this machine). Its service goes to
// Consul with the health check when CONSUL_HTTP_ADDR is set, else to
// Nomad's own service discovery without checks. Each test registers its
// jobs under a random prefix and purges them when done; namespaces and ACL
// policies a test needs it makes through Nomad's API (NOMAD_TOKEN must be
// a management token; the ACL test is skipped when ACLs are off). What
// only the fake can simulate on demand is skipped there, saying so:
// capacity running out, driver (image pull) failures, OOM kills, killing
// a task. The tests of the shipped exec group need a client set up as the
// README says (root, the codehub account with uid and gid 10100, the host
// volume codehub-homes); the docker group's, CODEHUB_TEST_WORKSPACE_IMAGE.
package nomad_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/orchestrator/nomad"
	"github.com/codehub-dev/codehub/internal/sqlstore"
	"github.com/codehub-dev/codehub/internal/testenv"
	fakenomad "github.com/codehub-dev/codehub/internal/testfake/nomad"
	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"
)

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func realNomad() bool { return os.Getenv("NOMAD_ADDR") != "" }

// testEnv is a Nomad (fake, or real with NOMAD_ADDR) with the workspace
// and warm-pool jobs registered, and an orchestrator on it.
type testEnv struct {
	orch   *nomad.Orchestrator
	client *api.Client
	fake   *fakenomad.Server // nil against a real Nomad
	ns     string            // the jobs' namespace ("" : the client's)
	prefix string            // of every job the test registers
	job    string            // the workspace job
	warm   string            // the warm-pool job
	log    hclog.Logger
}

type envOptions struct {
	fake fakenomad.Options
	// ns registers the jobs in a namespace of this name (a random suffix
	// added against a real Nomad), made for the test through Nomad's
	// namespace API and removed after it.
	ns string
	// config adjusts the orchestrator's configuration.
	config func(*nomad.Config)
}

func newEnv(t *testing.T, o envOptions) *testEnv {
	t.Helper()
	testenv.SkipShort(t)
	e := &testEnv{log: testenv.Logger(t), ns: o.ns}
	cfg := api.DefaultConfig()
	prefix := "codehub-"
	if realNomad() {
		prefix = "codehub-test-" + randHex(3) + "-"
		if e.ns == "" {
			e.ns = cfg.Namespace
		}
	} else {
		if o.fake.Logger == nil {
			o.fake.Logger = e.log.Named("fake-nomad")
		}
		f, err := fakenomad.New(o.fake)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Close)
		e.fake = f
		cfg.Address, cfg.SecretID, cfg.Namespace, cfg.Region = f.URL(), o.fake.Token, "", ""
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.client = client
	if o.ns != "" {
		e.ns = o.ns
		if realNomad() {
			e.ns = o.ns + "-" + randHex(3)
		}
		if _, err := client.Namespaces().Register(&api.Namespace{Name: e.ns, Description: "codehub test"}, nil); err != nil {
			t.Fatalf("make the namespace %s (the token must be a management token): %v", e.ns, err)
		}
		t.Cleanup(func() {
			if _, err := client.Namespaces().Delete(e.ns, nil); err != nil && realNomad() {
				t.Logf("remove the namespace %s: %v", e.ns, err)
			}
		})
	}
	e.prefix = prefix
	e.job, e.warm = prefix+"workspace", prefix+"warm-pool"
	for _, id := range []string{e.job, e.warm} {
		if _, _, err := client.Jobs().Register(testJob(t, id), &api.WriteOptions{Namespace: e.ns}); err != nil {
			t.Fatalf("register %s: %v", id, err)
		}
	}
	if realNomad() {
		t.Cleanup(func() { e.purge(prefix) })
	}
	c := nomad.Config{Client: client, Namespace: e.ns, Job: e.job, WarmPoolJob: e.warm, StopTimeout: 10 * time.Second}
	if o.config != nil {
		o.config(&c)
	}
	e.orch = nomad.New(c, e.log.Named("nomad"))
	return e
}

// purge removes every job under prefix from a real Nomad, children first.
func (e *testEnv) purge(prefix string) {
	stubs, _, err := e.client.Jobs().List(&api.QueryOptions{Prefix: prefix, Namespace: e.ns})
	if err != nil {
		e.log.Warn("list test jobs", "error", err)
		return
	}
	slices.SortFunc(stubs, func(a, b *api.JobListStub) int { return len(b.ID) - len(a.ID) })
	for _, s := range stubs {
		_, _, _ = e.client.Jobs().Deregister(s.ID, true, &api.WriteOptions{Namespace: e.ns})
	}
}

// needFake skips a test that needs what only the fake simulates.
func (e *testEnv) needFake(t *testing.T, what string) {
	t.Helper()
	if e.fake == nil {
		t.Skipf("against a real Nomad: %s can only be simulated by the fake Nomad", what)
	}
}

// testJob is jobs/workspace.nomad.hcl's shape, with raw_exec running this
// test binary as the agent, and a second group (count 0) with the docker
// driver, as the real job has one for exec.
func testJob(t *testing.T, id string) *api.Job {
	t.Helper()
	job := api.NewBatchJob(id, id, "", 70)
	job.Datacenters = []string{"*"}
	job.ParameterizedJob = &api.ParameterizedJobConfig{Payload: "required", MetaRequired: nomad.RequiredMeta(), MetaOptional: nomad.OptionalMeta()}
	job.Meta = map[string]string{
		"session_id": "", "username": "", "memory_mb": "64", "memory_max_mb": "0", "cpu": "100",
		"image": "ghcr.io/codehub-dev/workspace:test", "storage_mb": "100", "datacenter": "",
		nomad.JobMetaStorageLimit: "0",
	}
	group := func(name, driver string, count int) *api.TaskGroup {
		tg := api.NewTaskGroup(name, count)
		tg.Networks = []*api.NetworkResource{{DynamicPorts: []api.Port{{Label: nomad.PortLabel}}}}
		tg.RestartPolicy = &api.RestartPolicy{Attempts: new(0), Mode: new("fail")}
		tg.ReschedulePolicy = &api.ReschedulePolicy{Attempts: new(0), Unlimited: new(false)}
		tg.Tasks = []*api.Task{agentTask(t, driver)}
		return tg
	}
	job.TaskGroups = []*api.TaskGroup{group("workspace", "raw_exec", 1), group("workspace-docker", "docker", 0)}
	return job
}

func agentTask(t *testing.T, driver string) *api.Task {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	task := api.NewTask(nomad.TaskName, driver)
	secret := "${NOMAD_SECRETS_DIR}/" + nomad.SecretFile
	task.Config = map[string]any{"command": bin, "args": []any{
		"agent", "--listen", "${NOMAD_IP_" + nomad.PortLabel + "}:${NOMAD_PORT_" + nomad.PortLabel + "}", "--secret-file", secret,
		"--storage-limit", "${NOMAD_META_" + nomad.JobMetaStorageLimit + "}",
	}}
	if driver == "docker" {
		task.Config["image"] = "${NOMAD_META_image}"
	}
	task.Env = map[string]string{agentEnv: "1"}
	task.DispatchPayload = &api.DispatchPayloadConfig{File: nomad.PayloadFile}
	task.Templates = []*api.Template{{
		SourcePath: new("local/" + nomad.PayloadFile), DestPath: new("secrets/" + nomad.SecretFile),
		Perms: new("0600"), ChangeMode: new("noop"),
	}}
	task.Resources = &api.Resources{CPU: new(100), MemoryMB: new(64)}
	task.KillTimeout = new(2 * time.Second)
	svc := &api.Service{
		Name: nomad.ServiceName, PortLabel: nomad.PortLabel,
		Tags: []string{"user-${NOMAD_META_user_id}", "dc-${node.datacenter}", "workspace-${NOMAD_META_workspace_id}"},
		Meta: map[string]string{"workspace_id": "${NOMAD_META_workspace_id}", "user_id": "${NOMAD_META_user_id}"},
	}
	if !realNomad() || os.Getenv("CONSUL_HTTP_ADDR") != "" {
		svc.Checks = []api.ServiceCheck{{
			Name: "ide", Type: "script", Command: bin,
			Args:     []string{"probe", "--secret-file", secret, "--addr", "${NOMAD_IP_" + nomad.PortLabel + "}:${NOMAD_PORT_" + nomad.PortLabel + "}"},
			Interval: time.Second, Timeout: 2 * time.Second,
		}}
	} else {
		svc.Provider = "nomad"
	}
	task.Services = []*api.Service{svc}
	return task
}

// small is a policy that fits the test node.
var small = workspace.Policy{Name: "Small", MemoryMB: 64, MemoryMaxMB: 128, CPUPercent: 20, Pids: 100, StorageMB: 100}

func newSpec(user string, p workspace.Policy) workspace.Spec {
	w := &workspace.Workspace{ID: "ws-" + randHex(6), UserID: user, Secret: randHex(32), StartedAt: time.Now()}
	name := ""
	if user != "" {
		name = "name-" + user
	}
	return workspace.Spec{Workspace: w, Username: name, Policy: p}
}

// phrases collects progress phrases.
type phrases struct {
	mu   sync.Mutex
	said []string
}

func (p *phrases) add(s string) {
	p.mu.Lock()
	p.said = append(p.said, s)
	p.mu.Unlock()
}

func (p *phrases) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.said)
}

func (p *phrases) has(prefix string) bool {
	for _, s := range p.list() {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// start starts spec's workspace and records the launch in it, as the
// manager does.
func (e *testEnv) start(t *testing.T, ctx context.Context, spec workspace.Spec, p *phrases) (workspace.Launched, error) {
	t.Helper()
	if p == nil {
		p = &phrases{}
	}
	l, err := e.orch.Start(ctx, spec, p.add)
	if err == nil {
		spec.Workspace.Address, spec.Workspace.ExternalID, spec.Workspace.Meta = l.Address, l.ExternalID, l.Meta
	}
	return l, err
}

func (e *testEnv) mustStart(t *testing.T, spec workspace.Spec) workspace.Launched {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := e.start(t, ctx, spec, nil)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = e.orch.Stop(context.Background(), spec.Workspace) })
	return l
}

// health asks the agent at addr for its health with secret ("": none).
func health(addr, secret string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+agentapi.PathHealth, nil)
	if err != nil {
		return 0, err
	}
	if secret != "" {
		req.Header.Set(agentapi.SecretHeader, secret)
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// waitHealthy polls the agent as the manager does after Start.
func waitHealthy(t *testing.T, addr, secret string) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 10*time.Second {
		if code, err := health(addr, secret); err == nil && code == http.StatusOK {
			return time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("agent at %s never answered", addr)
	return 0
}

func calls(before, after map[string]int) (int, map[string]int) {
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

func TestStartRunsTheAgentAndStopEndsIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	spec := newSpec("u-1", small)
	spec.SessionID = "sess-4f2a9c"
	p := &phrases{}
	var before map[string]int
	if e.fake != nil {
		before = e.fake.Requests()
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := e.start(t, ctx, spec, p)
	if err != nil {
		t.Fatal(err)
	}
	launched := time.Since(began)
	ready := waitHealthy(t, l.Address, spec.Workspace.Secret)
	if e.fake != nil {
		n, by := calls(before, e.fake.Requests())
		t.Logf("dispatch to running: %s, to answering: %s; %d Nomad API calls on a first start: %v", launched, launched+ready, n, by)
	}
	if code, _ := health(l.Address, ""); code != http.StatusUnauthorized {
		t.Errorf("agent without the secret: %d, want 401", code)
	}

	derived := e.job + "-small"
	if !strings.HasPrefix(l.ExternalID, derived+"/dispatch-"+spec.Workspace.ID+"-") {
		t.Errorf("ExternalID %q, want a dispatch of %s named after the workspace", l.ExternalID, derived)
	}
	if l.Node == "" || l.Meta[nomad.MetaAllocID] == "" || l.Meta[nomad.MetaJobID] != l.ExternalID {
		t.Errorf("launched: %+v", l)
	}
	if e.fake != nil && (l.Meta[nomad.MetaDatacenter] != "dc1" || l.Meta[nomad.MetaNamespace] != "default" || l.Node != "fake-node-1") {
		t.Errorf("launched meta: %+v", l)
	}
	if !p.has("Preparing your workspace") || !p.has("Waiting for Nomad to place your workspace") {
		t.Errorf("progress: %q", p.list())
	}

	// The policy's job: its limits, for Nomad to enforce.
	q := &api.QueryOptions{Namespace: e.ns}
	dj, _, err := e.client.Jobs().Info(derived, q)
	if err != nil {
		t.Fatal(err)
	}
	task := dj.TaskGroups[0].Tasks[0]
	if len(dj.TaskGroups) != 1 || *dj.TaskGroups[0].Name != "workspace" || *task.Resources.CPU != 200 ||
		*task.Resources.MemoryMB != 64 || *task.Resources.MemoryMaxMB != 128 || dj.Meta[nomad.JobMetaStorageLimit] != "104857600" {
		t.Errorf("derived job: groups %d, resources %+v, meta %v", len(dj.TaskGroups), task.Resources, dj.Meta)
	}
	// The dispatch: who and what in meta, the secret nowhere in it.
	child, _, err := e.client.Jobs().Info(l.ExternalID, q)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"user_id": "u-1", "workspace_id": spec.Workspace.ID, "policy": "small", "username": "name-u-1",
		"memory_mb": "64", "memory_max_mb": "128", "cpu": "200", "storage_mb": "100", "session_id": "sess-4f2a9c"}
	for k, v := range want {
		if child.Meta[k] != v {
			t.Errorf("dispatch meta %s = %q, want %q", k, child.Meta[k], v)
		}
	}
	for k, v := range child.Meta {
		if strings.Contains(v, spec.Workspace.Secret) {
			t.Errorf("the secret is in meta %s", k)
		}
	}

	if alive, err := e.orch.Alive(ctx, spec.Workspace); !alive || err != nil {
		t.Errorf("Alive = %v, %v; want true", alive, err)
	}
	if err := e.orch.Stop(ctx, spec.Workspace); err != nil {
		t.Fatal(err)
	}
	if alive, err := e.orch.Alive(ctx, spec.Workspace); alive || err != nil {
		t.Errorf("after Stop, Alive = %v, %v; want false", alive, err)
	}
	if _, err := health(l.Address, spec.Workspace.Secret); err == nil {
		t.Error("the agent still answers after Stop")
	}
	if _, _, err := e.client.Jobs().Info(l.ExternalID, q); err == nil {
		t.Error("the dispatched job was not purged")
	}
	if err := e.orch.Stop(ctx, spec.Workspace); err != nil {
		t.Errorf("stopping a stopped workspace: %v", err)
	}
}

func TestSecondStartReusesTheRegisteredPolicyJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	if e.fake == nil {
		t.Skip("counts the fake's requests")
	}
	e.mustStart(t, newSpec("u-1", small))
	before := e.fake.Requests()
	began := time.Now()
	l := e.mustStart(t, newSpec("u-2", small))
	took := time.Since(began)
	n, by := calls(before, e.fake.Requests())
	t.Logf("second start: dispatch to running %s, %d Nomad API calls: %v", took, n, by)
	if by[fakenomad.RouteJobsRegister]+by[fakenomad.RouteJobRegister] != 0 || by[fakenomad.RouteJobInfo] != 0 {
		t.Errorf("the policy's job was read or registered again: %v", by)
	}
	if n > 6 {
		t.Errorf("%d calls for a start: %v", n, by)
	}
	_ = l
}

func TestRetriedStartDispatchesOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	spec := newSpec("u-1", small)
	first := e.mustStart(t, spec)
	// The same start again (same workspace, same StartedAt): Nomad's
	// idempotency token returns the job of the first.
	again, err := e.orch.Start(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.ExternalID != first.ExternalID || again.Address != first.Address {
		t.Errorf("retried start: %+v, first %+v", again, first)
	}
	q := &api.QueryOptions{Namespace: e.ns, Prefix: e.job + "-small/"}
	stubs, _, err := e.client.Jobs().List(q)
	if err != nil || len(stubs) != 1 {
		t.Errorf("dispatched jobs: %d (%v), want 1", len(stubs), err)
	}
	// A new start of the same workspace is a new dispatch.
	spec.Workspace.StartedAt = spec.Workspace.StartedAt.Add(time.Second)
	if err := e.orch.Stop(context.Background(), spec.Workspace); err != nil {
		t.Fatal(err)
	}
	spec.Workspace.ExternalID = ""
	next := e.mustStart(t, spec)
	if next.ExternalID == first.ExternalID {
		t.Error("a new start reused the stopped job")
	}
}

func TestStartWaitsForCapacity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{fake: fakenomad.Options{MemoryMB: 100}})
	e.needFake(t, "capacity running out")
	first := newSpec("u-1", small)
	e.mustStart(t, first)

	t.Run("placed when capacity frees", func(t *testing.T) {
		p := &phrases{}
		done := make(chan error, 1)
		second := newSpec("u-2", small)
		before := e.fake.Requests()
		go func() {
			_, err := e.start(t, context.Background(), second, p)
			done <- err
		}()
		deadline := time.Now().Add(10 * time.Second)
		for !p.has("Waiting for capacity") && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !slices.Contains(p.list(), "Waiting for capacity: all nodes are busy (position 1 in Nomad's queue)") {
			t.Fatalf("progress: %q", p.list())
		}
		time.Sleep(500 * time.Millisecond) // queued: the wait must not spin
		if err := e.orch.Stop(context.Background(), first.Workspace); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("start after capacity freed: %v", err)
		}
		n, by := calls(before, e.fake.Requests())
		t.Logf("queued start: %d calls: %v", n, by)
		if n > 15 {
			t.Errorf("%d calls while queued: %v", n, by)
		}
		_ = e.orch.Stop(context.Background(), second.Workspace)
	})

	t.Run("gives up when the wait ends", func(t *testing.T) {
		e.mustStart(t, newSpec("u-3", small))
		third := newSpec("u-4", small)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := e.start(t, ctx, third, nil)
		if !errors.Is(err, nomad.ErrNoCapacity) || !strings.Contains(err.Error(), "position 1 in Nomad's queue") {
			t.Fatalf("err = %v, want ErrNoCapacity with the queue position", err)
		}
		if errors.Is(err, workspace.ErrCannotStart) {
			t.Error("a full cluster is marked as one that can never start the workspace")
		}
		// Nothing left queued to start later unobserved.
		orphans, err := e.orch.Reconcile(context.Background(), map[string]bool{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range orphans {
			if strings.Contains(o, third.Workspace.ID) {
				t.Errorf("the failed start's job is still there: %s", o)
			}
		}
		blocked, _, _ := e.client.Evaluations().List(&api.QueryOptions{Filter: `Status == "blocked"`})
		if len(blocked) != 0 {
			t.Errorf("%d blocked evaluations left", len(blocked))
		}
	})
}

func TestUnplaceableStartFailsClearly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		name   string
		policy workspace.Policy
		is     error
		msg    string
		fake   bool
	}{
		{"no node in the datacenter", workspace.Policy{Name: "far", MemoryMB: 64, Datacenter: "dc-nowhere"}, nomad.ErrUnplaceable, "no ready node in datacenter dc-nowhere", false},
		{"no node with the driver", workspace.Policy{Name: "docker", Driver: "docker", MemoryMB: 64}, nomad.ErrUnplaceable, "missing drivers", true},
		{"no group for the driver", workspace.Policy{Name: "java", Driver: "java", MemoryMB: 64}, nil, `no group whose "agent" task uses the "java" driver`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fake {
				e.needFake(t, "a node without a driver")
			}
			p := &phrases{}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := e.start(t, ctx, newSpec("u-1", tc.policy), p)
			if err == nil || !strings.Contains(err.Error(), tc.msg) || (tc.is != nil && !errors.Is(err, tc.is)) {
				t.Fatalf("err = %v; want %v containing %q", err, tc.is, tc.msg)
			}
			// A new start would fail the same: the manager waits.
			if !errors.Is(err, workspace.ErrCannotStart) {
				t.Errorf("err = %v, want it marked workspace.ErrCannotStart", err)
			}
			if ctx.Err() != nil {
				t.Error("it waited for the whole timeout instead of failing at once")
			}
			t.Logf("error: %v; progress: %q", err, p.list())
		})
	}
}

func TestImagePullFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.needFake(t, "an image pull failure")
	e.fake.SetDriverFailure(func(job *api.Job, _ *api.Task) error {
		if img := job.Meta["image"]; img == "registry.invalid/nope:1" {
			return errors.New("Failed to pull `" + img + "`: manifest unknown")
		}
		return nil
	})
	p := &phrases{}
	pol := small
	pol.Image = "registry.invalid/nope:1"
	spec := newSpec("u-1", pol)
	_, err := e.start(t, context.Background(), spec, p)
	if !errors.Is(err, nomad.ErrImagePull) || !strings.Contains(err.Error(), "manifest unknown") || !errors.Is(err, workspace.ErrCannotStart) {
		t.Fatalf("err = %v, want ErrImagePull, marked ErrCannotStart", err)
	}
	if !p.has("The workspace image could not be pulled: Failed to pull `registry.invalid/nope:1`") {
		t.Errorf("progress: %q", p.list())
	}
	if ids, _ := e.orch.Reconcile(context.Background(), nil); len(ids) != 0 {
		t.Errorf("jobs left after a failed start: %v", ids)
	}
}

func TestWaitingDoesNotPoll(t *testing.T) {
	t.Parallel()
	const delay = 1500 * time.Millisecond
	e := newEnv(t, envOptions{fake: fakenomad.Options{StartDelay: delay}})
	e.needFake(t, "a slow image download")
	e.mustStart(t, newSpec("u-0", small)) // the policy's job registered
	p := &phrases{}
	before := e.fake.Requests()
	began := time.Now()
	spec := newSpec("u-1", small)
	if _, err := e.start(t, context.Background(), spec, p); err != nil {
		t.Fatal(err)
	}
	defer e.orch.Stop(context.Background(), spec.Workspace)
	took := time.Since(began)
	n, by := calls(before, e.fake.Requests())
	reads := by[fakenomad.RouteAllocation] + by[fakenomad.RouteJobAllocations] + by[fakenomad.RouteJobEvaluations]
	t.Logf("start with a %s image download took %s: %d calls, %d allocation/evaluation reads: %v", delay, took, n, reads, by)
	if took < delay {
		t.Errorf("returned after %s, before the task started", took)
	}
	// A 50ms polling loop would read ~30 times; blocking queries wake
	// only on changes (placed, setup, download, started).
	if reads > 6 {
		t.Errorf("%d allocation/evaluation reads for one start: the wait polls", reads)
	}
	if !p.has("Downloading the workspace image") {
		t.Errorf("progress: %q", p.list())
	}
}

func TestACLToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{fake: fakenomad.Options{Token: "the-token"}})
	e.needFake(t, "an ACL token made for the test")
	e.mustStart(t, newSpec("u-1", small))

	wrong := nomad.New(nomad.Config{Client: e.client, Job: e.job, Token: "not-the-token"}, e.log)
	_, err := wrong.Start(context.Background(), newSpec("u-2", small), nil)
	if err == nil || !strings.Contains(err.Error(), "Nomad refused the gateway's token") {
		t.Errorf("wrong token: %v", err)
	}
}

// TestNamespace: the jobs of a namespace made for the test (through
// Nomad's namespace API, on the fake as on a real Nomad) are dispatched
// there and nowhere else.
func TestNamespace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{ns: "team"})
	spec := newSpec("u-1", small)
	l := e.mustStart(t, spec)
	if l.Meta[nomad.MetaNamespace] != e.ns {
		t.Errorf("launched in namespace %q, want %q", l.Meta[nomad.MetaNamespace], e.ns)
	}
	if _, _, err := e.client.Jobs().Info(l.ExternalID, &api.QueryOptions{Namespace: e.ns}); err != nil {
		t.Errorf("the job is not in the namespace: %v", err)
	}
	if _, _, err := e.client.Jobs().Info(l.ExternalID, nil); err == nil {
		t.Error("the job is in the default namespace")
	}
	other := nomad.New(nomad.Config{Client: e.client, Job: e.job}, e.log)
	if _, err := other.Start(context.Background(), newSpec("u-2", small), nil); !errors.Is(err, nomad.ErrJobNotRegistered) {
		t.Errorf("from the default namespace: %v, want ErrJobNotRegistered", err)
	}
}

func TestReconcileFindsOrphans(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	a := e.mustStart(t, newSpec("u-1", small))
	b := e.mustStart(t, newSpec("", small)) // warm
	// A dispatch the registry never heard of: its gateway died.
	resp, _, err := e.client.Jobs().Dispatch(e.job+"-small", map[string]string{"user_id": "u-9", "workspace_id": "ws-lost", "policy": "small"},
		[]byte(randHex(32)), "ws-lost", &api.WriteOptions{Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{a.ExternalID: true, b.ExternalID: true}
	orphans, err := e.orch.Reconcile(context.Background(), known)
	if err != nil {
		t.Fatal(err)
	}
	if len(orphans) != 1 || orphans[0] != resp.DispatchedJobID {
		t.Fatalf("orphans %v, want [%s]", orphans, resp.DispatchedJobID)
	}
	if err := e.orch.StopJob(context.Background(), orphans[0]); err != nil {
		t.Fatal(err)
	}
	if orphans, _ := e.orch.Reconcile(context.Background(), known); len(orphans) != 0 {
		t.Errorf("after StopJob: %v", orphans)
	}
}

func TestWarmWorkspace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	spec := newSpec("", small)
	l := e.mustStart(t, spec)
	if !strings.HasPrefix(l.ExternalID, e.warm+"-small/dispatch-") {
		t.Errorf("a warm workspace dispatched %q, want from %s", l.ExternalID, e.warm)
	}
	waitHealthy(t, l.Address, spec.Workspace.Secret)
	if err := e.orch.Assign(context.Background(), spec.Workspace, "u-1", "one"); err != nil {
		t.Fatal(err)
	}
	if alive, err := e.orch.Alive(context.Background(), spec.Workspace); !alive || err != nil {
		t.Errorf("claimed warm workspace: alive %v, %v", alive, err)
	}
}

func TestAliveAfterACrash(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.needFake(t, "killing the task")
	spec := newSpec("u-1", small)
	l := e.mustStart(t, spec)
	if err := e.fake.KillTask(l.Meta[nomad.MetaAllocID], nomad.TaskName); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if alive, _ := e.orch.Alive(context.Background(), spec.Workspace); !alive {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Error("still alive after its task was killed")
}

func TestStopFindsAnUnrecordedStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	spec := newSpec("u-1", small)
	l := e.mustStart(t, spec)
	// The manager failed before recording the job: only the ID is known.
	w := &workspace.Workspace{ID: spec.Workspace.ID}
	if err := e.orch.Stop(context.Background(), w); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.client.Jobs().Info(l.ExternalID, &api.QueryOptions{Namespace: e.ns}); err == nil {
		t.Error("the job still exists")
	}
}

func TestStartRefusesBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for name, spec := range map[string]workspace.Spec{
		"no secret":    {Workspace: &workspace.Workspace{ID: "ws-1", UserID: "u"}},
		"path in user": {Workspace: &workspace.Workspace{ID: "ws-1", UserID: "../etc", Secret: randHex(32)}},
	} {
		if _, err := e.orch.Start(context.Background(), spec, nil); err == nil {
			t.Errorf("%s: started", name)
		}
	}
}

func TestTemplateMustAcceptTheMeta(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	job := testJob(t, e.job+"-old")
	job.ParameterizedJob.MetaOptional = []string{"username"}
	if _, _, err := e.client.Jobs().Register(job, &api.WriteOptions{Namespace: e.ns}); err != nil {
		t.Fatal(err)
	}
	o := nomad.New(nomad.Config{Client: e.client, Namespace: e.ns, Job: e.job + "-old"}, e.log)
	_, err := o.Start(context.Background(), newSpec("u-1", small), nil)
	if err == nil || !strings.Contains(err.Error(), "does not accept the dispatch meta") {
		t.Errorf("err = %v", err)
	}
}

// TestManagerOnNomad runs the workspace manager on this orchestrator, as
// the gateway does: a cold start, a claim from the warm pool, a stop, and
// nothing orphaned in Nomad.
func TestManagerOnNomad(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.DriverSQLite, Path: filepath.Join(t.TempDir(), "codehub.db")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	quiet := hclog.NewNullLogger() // the manager's background work may outlive the test
	orch := nomad.New(nomad.Config{Client: e.client, Namespace: e.ns, Job: e.job, WarmPoolJob: e.warm}, quiet)
	m := workspace.NewManager(workspace.Config{
		Orchestrator: orch, Store: db.Workspaces(), Node: "gateway-1", WarmPool: 1,
		PolicyFor:    func(context.Context, string) (workspace.Policy, error) { return small, nil },
		Username:     func(_ context.Context, id string) (string, error) { return "name-" + id, nil },
		ReadyTimeout: 20 * time.Second,
	}, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { _ = m.Run(ctx); close(runDone) }()
	t.Cleanup(func() { cancel(); <-runDone })

	cold, err := m.Ensure(ctx, "u-1")
	if err != nil {
		t.Fatalf("cold start: %v", err)
	}
	if cold.State != workspace.StateRunning || !strings.HasPrefix(cold.ExternalID, e.job+"-small/dispatch-"+cold.ID) {
		t.Fatalf("cold workspace: %+v", cold)
	}
	if code, err := health(cold.Address, cold.Secret); code != http.StatusOK {
		t.Fatalf("cold workspace's agent: %d, %v", code, err)
	}

	// The pool fills in the background; a second user claims the warm one.
	deadline := time.Now().Add(20 * time.Second)
	for {
		all, _ := db.Workspaces().List(ctx)
		ready := false
		for _, w := range all {
			ready = ready || w.UserID == "" && w.State == workspace.StateRunning
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the warm pool never filled")
		}
		time.Sleep(50 * time.Millisecond)
	}
	warm, err := m.Ensure(ctx, "u-2")
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if !strings.HasPrefix(warm.ExternalID, e.warm+"-small/dispatch-") {
		t.Errorf("u-2 got %q, want a warm workspace", warm.ExternalID)
	}

	if err := m.StopUser(ctx, "u-1", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := health(cold.Address, cold.Secret); err == nil {
		t.Error("the stopped workspace's agent still answers")
	}
	all, err := db.Workspaces().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, w := range all {
		known[w.ExternalID] = w.ExternalID != ""
	}
	// The refill after the claim may be dispatching: what Nomad runs is
	// in the registry, or about to be.
	deadline = time.Now().Add(10 * time.Second)
	for {
		orphans, err := orch.Reconcile(ctx, known)
		if err != nil {
			t.Fatal(err)
		}
		if len(orphans) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphans: %v", orphans)
		}
		time.Sleep(100 * time.Millisecond)
		all, _ = db.Workspaces().List(ctx)
		for _, w := range all {
			known[w.ExternalID] = w.ExternalID != ""
		}
	}
}

// restartingTemplate registers a copy of the test job whose group is
// restarted in place by Nomad, as the shipped jobs' are, and returns an
// orchestrator on it.
func (e *testEnv) restartingTemplate(t *testing.T, name string, attempts int) *nomad.Orchestrator {
	t.Helper()
	id := e.prefix + name
	job := testJob(t, id)
	for _, tg := range job.TaskGroups {
		tg.RestartPolicy = &api.RestartPolicy{Attempts: new(attempts), Interval: new(time.Hour), Delay: new(200 * time.Millisecond), Mode: new("fail")}
	}
	if _, _, err := e.client.Jobs().Register(job, &api.WriteOptions{Namespace: e.ns}); err != nil {
		t.Fatal(err)
	}
	return nomad.New(nomad.Config{Client: e.client, Namespace: e.ns, Job: id, WarmPoolJob: id, StopTimeout: 10 * time.Second}, e.log.Named(name))
}

// TestRecoverRestartsInPlace: a workspace whose agent died comes back in
// the same allocation, at the same address, once Nomad's restart policy
// has started it again; one that hangs is restarted in place on request;
// one Nomad gave up on is not recovered.
func TestRecoverRestartsInPlace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	orch := e.restartingTemplate(t, "restarting", 1)
	spec := newSpec("u-1", small)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := orch.Start(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := spec.Workspace
	w.Address, w.ExternalID, w.Meta = l.Address, l.ExternalID, l.Meta
	t.Cleanup(func() { _ = orch.Stop(context.Background(), w) })
	waitHealthy(t, l.Address, w.Secret)

	// Hung: Nomad runs it, it does not answer. Restarted on request.
	began := time.Now()
	p := &phrases{}
	got, err := orch.Recover(ctx, w, true, p.add)
	if err != nil {
		t.Fatalf("recover a hung agent: %v", err)
	}
	if got.Address != l.Address || got.Meta[nomad.MetaAllocID] != l.Meta[nomad.MetaAllocID] || got.ExternalID != l.ExternalID {
		t.Errorf("after a restart in place: %+v, before %+v", got, l)
	}
	took := waitHealthy(t, got.Address, w.Secret)
	t.Logf("hung agent restarted in place and answering after %s (progress %q)", time.Since(began).Round(time.Millisecond), p.list())
	_ = took

	// Died: Nomad's restart policy brings it back; Recover waits for it.
	if e.fake == nil {
		return // the rest kills a task: the fake's to simulate
	}
	if err := e.fake.KillTask(l.Meta[nomad.MetaAllocID], nomad.TaskName); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	waitNotAlive(t, orch, w) // as the manager finds it
	got, err = orch.Recover(ctx, w, false, nil)
	if err != nil || got.Address != l.Address {
		t.Fatalf("recover a dead agent: %+v, %v", got, err)
	}
	waitHealthy(t, got.Address, w.Secret)
	t.Logf("FIGURE dead agent restarted in place by the restart policy (delay 200ms) and answering after %s", time.Since(began).Round(time.Millisecond))

	// The policy's one attempt is spent: the next death ends it.
	if err := e.fake.KillTask(l.Meta[nomad.MetaAllocID], nomad.TaskName); err != nil {
		t.Fatal(err)
	}
	waitNotAlive(t, orch, w)
	if _, err := orch.Recover(ctx, w, false, nil); !errors.Is(err, nomad.ErrTaskFailed) || !strings.Contains(err.Error(), "gave up") {
		t.Errorf("recover after the attempts: %v, want ErrTaskFailed: Nomad gave up", err)
	}
}

// waitNotAlive waits until the orchestrator no longer finds w running.
func waitNotAlive(t *testing.T, orch *nomad.Orchestrator, w *workspace.Workspace) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if alive, _ := orch.Alive(context.Background(), w); !alive {
			return
		}
	}
	t.Fatal("the workspace still runs")
}

// TestManagerRestartsACrashedWorkspaceInPlace: the gateway's manager,
// finding a workspace's agent dead, waits for Nomad to restart it in
// place instead of dispatching a new workspace: the same job, the same
// address, one restart more.
func TestManagerRestartsACrashedWorkspaceInPlace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.needFake(t, "killing a workspace's task")
	id := e.prefix + "crashing"
	job := testJob(t, id)
	for _, tg := range job.TaskGroups {
		tg.RestartPolicy = &api.RestartPolicy{Attempts: new(3), Interval: new(time.Hour), Delay: new(2 * time.Second), Mode: new("fail")}
	}
	if _, _, err := e.client.Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.DriverSQLite, Path: filepath.Join(t.TempDir(), "codehub.db")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	quiet := hclog.NewNullLogger()
	orch := nomad.New(nomad.Config{Client: e.client, Job: id, WarmPoolJob: id}, quiet)
	m := workspace.NewManager(workspace.Config{
		Orchestrator: orch, Store: db.Workspaces(), Node: "gateway-1", HealthInterval: 500 * time.Millisecond,
		PolicyFor:    func(context.Context, string) (workspace.Policy, error) { return small, nil },
		Username:     func(_ context.Context, id string) (string, error) { return "name-" + id, nil },
		ReadyTimeout: 30 * time.Second,
	}, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { _ = m.Run(ctx); close(runDone) }()
	t.Cleanup(func() { cancel(); <-runDone })

	w, err := m.Ensure(ctx, "u-1")
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := e.fake.KillTask(w.Meta[nomad.MetaAllocID], nomad.TaskName); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		cur, err := db.Workspaces().Get(ctx, w.ID)
		if err == nil && cur.Restarts == 1 && cur.State == workspace.StateRunning {
			if cur.ExternalID != w.ExternalID || cur.Address != w.Address || cur.Meta[nomad.MetaAllocID] != w.Meta[nomad.MetaAllocID] {
				t.Errorf("after the crash: job %s at %s; before: job %s at %s", cur.ExternalID, cur.Address, w.ExternalID, w.Address)
			}
			if code, _ := health(cur.Address, cur.Secret); code != http.StatusOK {
				t.Errorf("the restarted agent answers %d", code)
			}
			t.Logf("FIGURE crash recovery in place (restart delay 2s, health checks every 500ms): serving again %s after the kill", time.Since(killed).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not restarted in place: %+v, %v", cur, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stubs, _, err := e.client.Jobs().List(&api.QueryOptions{Prefix: id + "-small/"})
	if err != nil || len(stubs) != 1 {
		t.Errorf("dispatched jobs: %d (%v), want the one", len(stubs), err)
	}
}

// TestRegistrationWarningsAreLogged: what Nomad warns of when a policy's
// job is registered is logged, once per version of the job: without
// memory oversubscription (Nomad's default), that memory_max is ignored.
func TestRegistrationWarningsAreLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	cfg, _, err := e.client.Operator().SchedulerGetConfiguration(nil)
	if err != nil {
		t.Fatalf("read the scheduler configuration (operator:read): %v", err)
	}
	var out syncLog
	log := hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Info})
	orch := nomad.New(nomad.Config{Client: e.client, Namespace: e.ns, Job: e.job, WarmPoolJob: e.warm}, log)
	burst := small
	burst.Name = "burst-" + randHex(3)
	for _, user := range []string{"u-1", "u-2"} {
		spec := newSpec(user, burst)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, err := orch.Start(ctx, spec, nil); err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
		t.Cleanup(func() { _ = orch.Stop(context.Background(), spec.Workspace) })
	}
	warned := strings.Count(out.String(), "memory_max value will be ignored")
	switch {
	case !cfg.SchedulerConfig.MemoryOversubscriptionEnabled && warned != 1:
		t.Errorf("without oversubscription: the warning logged %d times, want once:\n%s", warned, out.String())
	case cfg.SchedulerConfig.MemoryOversubscriptionEnabled && warned != 0:
		t.Errorf("with oversubscription: a warning logged:\n%s", out.String())
	}
	if e.fake == nil {
		return
	}
	// Allowed, and the job changed: registered again without a warning.
	e.fake.SetMemoryOversubscription(true)
	burst.MemoryMaxMB = 256
	third := newSpec("u-3", burst)
	if _, err := orch.Start(context.Background(), third, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = orch.Stop(context.Background(), third.Workspace) })
	if n := strings.Count(out.String(), "memory_max value will be ignored"); n != 1 {
		t.Errorf("after oversubscription was allowed: %d warnings in all, want still 1", n)
	}
}

// syncLog collects a logger's output.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
