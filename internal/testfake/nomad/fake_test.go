package nomad_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/procenv"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/testfake/nomad"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/nomad/api"
)

// consulRecorder is the part of a Consul agent Nomad's client uses:
// service registration, deregistration and TTL check updates.
type consulRecorder struct {
	*httptest.Server
	mu       sync.Mutex
	services map[string]*consulapi.AgentServiceRegistration
	checks   map[string]string // check ID -> last TTL status
	gone     []string
}

func newConsul(t *testing.T) *consulRecorder {
	t.Helper()
	c := &consulRecorder{services: map[string]*consulapi.AgentServiceRegistration{}, checks: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/agent/service/register", func(w http.ResponseWriter, r *http.Request) {
		var reg consulapi.AgentServiceRegistration
		if err := json.NewDecoder(r.Body).Decode(&reg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.services[reg.ID] = &reg
		c.mu.Unlock()
	})
	mux.HandleFunc("PUT /v1/agent/service/deregister/{id}", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		delete(c.services, r.PathValue("id"))
		c.gone = append(c.gone, r.PathValue("id"))
		c.mu.Unlock()
	})
	mux.HandleFunc("PUT /v1/agent/check/update/{id}", func(w http.ResponseWriter, r *http.Request) {
		var u struct{ Status, Output string }
		if err := json.NewDecoder(r.Body).Decode(&u); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		c.checks[r.PathValue("id")] = u.Status
		c.mu.Unlock()
	})
	c.Server = httptest.NewServer(mux)
	t.Cleanup(c.Close)
	return c
}

func (c *consulRecorder) service(name string) *consulapi.AgentServiceRegistration {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (c *consulRecorder) checkStatus(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checks[id]
}

func (c *consulRecorder) config() *consulapi.Config {
	cfg := consulapi.DefaultNonPooledConfig()
	cfg.Address = strings.TrimPrefix(c.URL, "http://")
	return cfg
}

func newFake(t *testing.T, opts nomad.Options) (*nomad.Server, *api.Client) {
	t.Helper()
	testenv.SkipShort(t)
	if opts.Logger == nil {
		opts.Logger = testenv.Logger(t)
	}
	s, err := nomad.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	cfg := api.DefaultConfig()
	cfg.Address, cfg.SecretID, cfg.Namespace, cfg.Region = s.URL(), opts.Token, "", ""
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

// shellJob is a parameterized raw_exec job whose task runs script in
// /bin/sh, with the workspace job's shape: payload, template, port,
// service.
func shellJob(id, script string) *api.Job {
	job := api.NewBatchJob(id, id, "", 50)
	job.ParameterizedJob = &api.ParameterizedJobConfig{Payload: "required", MetaRequired: []string{"user_id"}, MetaOptional: []string{"image"}}
	job.Meta = map[string]string{"image": "default:1"}
	tg := api.NewTaskGroup("g", 1)
	tg.Networks = []*api.NetworkResource{{DynamicPorts: []api.Port{{Label: "http"}}}}
	// A task that fails stays failed unless a test asks for restarts.
	tg.RestartPolicy = &api.RestartPolicy{Attempts: new(0), Mode: new(api.RestartPolicyModeFail)}
	task := api.NewTask("t", "raw_exec")
	task.Config = map[string]any{"command": "/bin/sh", "args": []any{"-c", script}}
	task.Env = map[string]string{"WHO": "user-${NOMAD_META_user_id}"}
	task.DispatchPayload = &api.DispatchPayloadConfig{File: "secret"}
	task.Templates = []*api.Template{{
		SourcePath: new("local/secret"), DestPath: new("secrets/copy"), Perms: new("0600"), ChangeMode: new("noop"),
	}}
	task.Resources = &api.Resources{CPU: new(100), MemoryMB: new(256)}
	task.Services = []*api.Service{{
		Name: "svc", PortLabel: "http", Tags: []string{"user-${NOMAD_META_user_id}", "dc-${node.datacenter}"},
		Meta: map[string]string{"user_id": "${NOMAD_META_user_id}"},
		Checks: []api.ServiceCheck{
			{Name: "http", Type: "http", Path: "/health", Interval: time.Second, Timeout: time.Second,
				Header: map[string][]string{"X-Who": {"${NOMAD_META_user_id}"}}},
			{Name: "script", Type: "script", Command: "/bin/sh", Args: []string{"-c", "test -f secrets/copy"}, Interval: 50 * time.Millisecond, Timeout: time.Second},
		},
	}}
	tg.Tasks = []*api.Task{task}
	job.TaskGroups = []*api.TaskGroup{tg}
	return job
}

// waitAlloc waits, with blocking queries, for the job's first allocation
// to reach one of the client statuses.
func waitAlloc(t *testing.T, c *api.Client, jobID string, statuses ...string) *api.Allocation {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var index uint64
	for time.Now().Before(deadline) {
		stubs, qm, err := c.Jobs().Allocations(jobID, true, &api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		index = qm.LastIndex
		for _, s := range stubs {
			for _, st := range statuses {
				if s.ClientStatus == st {
					a, _, err := c.Allocations().Info(s.ID, nil)
					if err != nil {
						t.Fatal(err)
					}
					return a
				}
			}
		}
	}
	t.Fatalf("job %s: no allocation reached %v", jobID, statuses)
	return nil
}

func statusCode(err error) int {
	var ue api.UnexpectedResponseError
	if errors.As(err, &ue) {
		return ue.StatusCode()
	}
	return 0
}

func TestDispatchRunsTheTask(t *testing.T) {
	t.Parallel()
	consul := newConsul(t)
	s, c := newFake(t, nomad.Options{Consul: consul.config()})
	script := `printf '%s|%s|%s' "$WHO" "$NOMAD_PORT_http" "$NOMAD_META_image" > "$NOMAD_ALLOC_DIR/seen"; exec sleep 60`
	if _, _, err := c.Jobs().Register(shellJob("ws", script), nil); err != nil {
		t.Fatal(err)
	}
	resp, _, err := c.Jobs().Dispatch("ws", map[string]string{"user_id": "u1"}, []byte("s3cret"), "w1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.DispatchedJobID, "ws/dispatch-w1-") || resp.EvalID == "" {
		t.Fatalf("dispatch answered %+v", resp)
	}
	a := waitAlloc(t, c, resp.DispatchedJobID, api.AllocClientStatusRunning)
	port := a.AllocatedResources.Shared.Ports[0]
	if port.Label != "http" || port.Value == 0 || port.HostIP != "127.0.0.1" {
		t.Fatalf("ports: %+v", a.AllocatedResources.Shared.Ports)
	}

	dir := s.AllocDir(a.ID)
	var seen []byte
	for i := 0; i < 100 && len(seen) == 0; i++ {
		seen, _ = os.ReadFile(filepath.Join(dir, "alloc", "seen"))
		time.Sleep(20 * time.Millisecond)
	}
	if want := "user-u1|" + strconv.Itoa(port.Value) + "|default:1"; string(seen) != want {
		t.Errorf("task saw %q, want %q (env interpolated, job meta defaults)", seen, want)
	}
	payload, err := os.Stat(filepath.Join(dir, "t", "local", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	if got, want := payload.Mode().Perm(), os.FileMode(0o777&^umask); got != want {
		t.Errorf("payload mode %v, want %v as Nomad writes it", got, want)
	}
	copied, err := os.Stat(filepath.Join(dir, "t", "secrets", "copy"))
	if err != nil || copied.Mode().Perm() != 0o600 {
		t.Errorf("template copy: %v, %v; want mode 0600", copied, err)
	}

	reg := consul.service("svc")
	if reg == nil {
		t.Fatal("service not registered in Consul")
	}
	if reg.Port != port.Value || reg.Address != "127.0.0.1" || strings.Join(reg.Tags, ",") != "user-u1,dc-dc1" || reg.Meta["user_id"] != "u1" {
		t.Errorf("registration: %+v", reg)
	}
	if !strings.HasPrefix(reg.ID, "_nomad-task-"+a.ID+"-t-svc-http") || len(reg.Checks) != 2 {
		t.Fatalf("registration ID %q, checks %d", reg.ID, len(reg.Checks))
	}
	if h := reg.Checks[0]; h.HTTP != "http://127.0.0.1:"+strconv.Itoa(port.Value)+"/health" || h.Header["X-Who"][0] != "u1" {
		t.Errorf("http check: %+v", h)
	}
	script2 := reg.Checks[1]
	if script2.TTL == "" {
		t.Fatalf("script check not registered as a TTL check: %+v", script2)
	}
	for i := 0; i < 200 && consul.checkStatus(script2.CheckID) != "passing"; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if st := consul.checkStatus(script2.CheckID); st != "passing" {
		t.Errorf("script check status %q, want passing", st)
	}

	pid := s.TaskPID(a.ID, "t")
	if _, _, err := c.Jobs().Deregister(resp.DispatchedJobID, true, nil); err != nil {
		t.Fatal(err)
	}
	done := waitAlloc(t, c, resp.DispatchedJobID, api.AllocClientStatusComplete)
	if done.DesiredStatus != api.AllocDesiredStatusStop || done.TaskStates["t"].Events[len(done.TaskStates["t"].Events)-1].Type != api.TaskKilled {
		t.Errorf("after deregister: desired %s, events %v", done.DesiredStatus, eventTypes(done.TaskStates["t"]))
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("task process %d still exists", pid)
	}
	if consul.service("svc") != nil {
		t.Error("service still registered after the task ended")
	}
	if _, _, err := c.Jobs().Info(resp.DispatchedJobID, nil); statusCode(err) != 404 || !strings.Contains(err.Error(), "job not found") {
		t.Errorf("purged job: %v", err)
	}
}

// lastEvent is the task's last event of a type.
func lastEvent(ts *api.TaskState, typ string) *api.TaskEvent {
	for i := len(ts.Events) - 1; i >= 0; i-- {
		if ts.Events[i].Type == typ {
			return ts.Events[i]
		}
	}
	return nil
}

func eventTypes(ts *api.TaskState) []string {
	var out []string
	for _, e := range ts.Events {
		out = append(out, e.Type)
	}
	return out
}

func TestDispatchValidation(t *testing.T) {
	t.Parallel()
	_, c := newFake(t, nomad.Options{})
	if _, _, err := c.Jobs().Register(shellJob("ws", "sleep 60"), nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		job     string
		meta    map[string]string
		payload []byte
		code    int
		msg     string
	}{
		{"missing meta", "ws", map[string]string{}, []byte("x"), 400, "Dispatch did not provide required meta keys: [user_id]"},
		{"unpermitted meta", "ws", map[string]string{"user_id": "u", "nope": "1"}, []byte("x"), 400, "unpermitted metadata keys: [nope]"},
		{"missing payload", "ws", map[string]string{"user_id": "u"}, nil, 400, "Payload is not provided but required"},
		{"no such job", "nope", map[string]string{"user_id": "u"}, []byte("x"), 404, "parameterized job not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := c.Jobs().Dispatch(tc.job, tc.meta, tc.payload, "", nil)
			if statusCode(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v, want %d %q", err, tc.code, tc.msg)
			}
		})
	}

	// The same idempotency token names the same dispatch.
	w := &api.WriteOptions{IdempotencyToken: "start-1"}
	a, _, err := c.Jobs().Dispatch("ws", map[string]string{"user_id": "u"}, []byte("x"), "", w)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := c.Jobs().Dispatch("ws", map[string]string{"user_id": "u"}, []byte("x"), "", w)
	if err != nil {
		t.Fatal(err)
	}
	if a.DispatchedJobID != b.DispatchedJobID || b.EvalID != "" {
		t.Errorf("retried dispatch: %+v then %+v; want the same job and no new evaluation", a, b)
	}
	stubs, _, err := c.Jobs().PrefixList("ws/")
	if err != nil || len(stubs) != 1 {
		t.Errorf("dispatched jobs: %d (%v), want 1", len(stubs), err)
	}
}

// TestRegisterValidatesResources: Nomad refuses a memory_max below memory
// (0 and -1 excepted) and memory under 10 MB; so does the fake.
func TestRegisterValidatesResources(t *testing.T) {
	t.Parallel()
	_, c := newFake(t, nomad.Options{})
	for _, tc := range []struct {
		mem, max int
		msg      string
	}{
		{2048, 1024, "MemoryMaxMB value (1024) should be larger than MemoryMB value (2048)"},
		{5, 0, "minimum MemoryMB value is 10"},
		{2048, 0, ""},
		{2048, -1, ""},
		{2048, 4096, ""},
	} {
		job := shellJob("ws-"+strconv.Itoa(tc.mem)+"-"+strconv.Itoa(tc.max), "true")
		job.TaskGroups[0].Tasks[0].Resources = &api.Resources{CPU: new(100), MemoryMB: new(tc.mem), MemoryMaxMB: new(tc.max)}
		_, _, err := c.Jobs().Register(job, nil)
		switch {
		case tc.msg == "" && err != nil:
			t.Errorf("memory %d, memory_max %d: %v", tc.mem, tc.max, err)
		case tc.msg != "" && (statusCode(err) != 400 || !strings.Contains(err.Error(), tc.msg)):
			t.Errorf("memory %d, memory_max %d: %v, want 400 %q", tc.mem, tc.max, err, tc.msg)
		}
	}
}

func TestACLAndNamespaces(t *testing.T) {
	t.Parallel()
	s, c := newFake(t, nomad.Options{Token: "secret-token"})
	if _, err := c.Namespaces().Register(&api.Namespace{Name: "team"}, nil); err != nil {
		t.Fatal(err)
	}
	job := shellJob("ws", "sleep 60")
	job.Namespace = new("team")
	if _, _, err := c.Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Jobs().Info("ws", &api.QueryOptions{Namespace: "team"}); err != nil {
		t.Errorf("with the token, in its namespace: %v", err)
	}
	if _, _, err := c.Jobs().Info("ws", nil); statusCode(err) != 404 {
		t.Errorf("from the default namespace: %v, want 404", err)
	}
	cfg := api.DefaultConfig()
	cfg.Address, cfg.SecretID = s.URL(), ""
	anon, _ := api.NewClient(cfg)
	if _, _, err := anon.Jobs().Info("ws", &api.QueryOptions{Namespace: "team", AuthToken: "wrong"}); statusCode(err) != 403 || !strings.Contains(err.Error(), "ACL token not found") {
		t.Errorf("wrong token: %v, want 403 ACL token not found", err)
	}
	if _, _, err := anon.Jobs().Info("ws", &api.QueryOptions{Namespace: "team"}); statusCode(err) != 403 || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("no token: %v, want 403 Permission denied", err)
	}
	if _, _, err := anon.Jobs().Dispatch("ws", map[string]string{"user_id": "u"}, []byte("x"), "", &api.WriteOptions{Namespace: "team"}); statusCode(err) != 403 {
		t.Errorf("no token: %v, want 403", err)
	}
	if _, _, err := c.Jobs().Register(shellJob("x", "true"), &api.WriteOptions{Namespace: "nope"}); statusCode(err) != 400 {
		t.Errorf("unknown namespace: %v, want 400", err)
	}
}

func TestCapacityBlocksThenPlaces(t *testing.T) {
	t.Parallel()
	_, c := newFake(t, nomad.Options{MemoryMB: 300})
	if _, _, err := c.Jobs().Register(shellJob("ws", "exec sleep 60"), nil); err != nil {
		t.Fatal(err)
	}
	first, _, err := c.Jobs().Dispatch("ws", map[string]string{"user_id": "a"}, []byte("x"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAlloc(t, c, first.DispatchedJobID, api.AllocClientStatusRunning)
	second, _, err := c.Jobs().Dispatch("ws", map[string]string{"user_id": "b"}, []byte("x"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := waitEval(t, c, second.EvalID)
	m := ev.FailedTGAllocs["g"]
	if m == nil || m.NodesExhausted != 1 || m.DimensionExhausted["memory"] != 1 || ev.BlockedEval == "" {
		t.Fatalf("evaluation of the second dispatch: %+v (metric %+v)", ev, m)
	}
	blocked, _, err := c.Evaluations().List(&api.QueryOptions{Filter: `Status == "blocked"`})
	if err != nil || len(blocked) != 1 || blocked[0].ID != ev.BlockedEval {
		t.Fatalf("blocked evaluations: %v %v", blocked, err)
	}
	if stubs, _, _ := c.Jobs().Allocations(second.DispatchedJobID, true, nil); len(stubs) != 0 {
		t.Fatalf("second dispatch placed while the node is full: %d", len(stubs))
	}
	if _, _, err := c.Jobs().Deregister(first.DispatchedJobID, true, nil); err != nil {
		t.Fatal(err)
	}
	waitAlloc(t, c, second.DispatchedJobID, api.AllocClientStatusRunning)
}

func waitEval(t *testing.T, c *api.Client, id string) *api.Evaluation {
	t.Helper()
	var index uint64
	for i := 0; i < 20; i++ {
		ev, qm, err := c.Evaluations().Info(id, &api.QueryOptions{WaitIndex: index, WaitTime: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if ev.Status != "pending" {
			return ev
		}
		index = qm.LastIndex
	}
	t.Fatalf("evaluation %s stayed pending", id)
	return nil
}

func TestBlockingQueries(t *testing.T) {
	t.Parallel()
	s, c := newFake(t, nomad.Options{StartDelay: 300 * time.Millisecond})
	if _, _, err := c.Jobs().Register(shellJob("ws", "exec sleep 60"), nil); err != nil {
		t.Fatal(err)
	}
	resp, _, err := c.Jobs().Dispatch("ws", map[string]string{"user_id": "a"}, []byte("x"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := waitAlloc(t, c, resp.DispatchedJobID, api.AllocClientStatusRunning)

	// Nothing changes: the query waits the whole wait, then answers the
	// same index.
	start := time.Now()
	_, qm, err := c.Allocations().Info(a.ID, &api.QueryOptions{WaitIndex: a.ModifyIndex, WaitTime: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || qm.LastIndex != a.ModifyIndex {
		t.Errorf("unchanged: answered after %s with index %d (was %d); want a 300ms wait", d, qm.LastIndex, a.ModifyIndex)
	}

	// A change wakes it at once.
	go func() {
		time.Sleep(100 * time.Millisecond)
		_ = s.KillTask(a.ID, "t")
	}()
	start = time.Now()
	got, qm, err := c.Allocations().Info(a.ID, &api.QueryOptions{WaitIndex: a.ModifyIndex, WaitTime: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second || qm.LastIndex <= a.ModifyIndex {
		t.Errorf("changed: answered after %s with index %d", d, qm.LastIndex)
	}
	_ = got
	failed := waitAlloc(t, c, resp.DispatchedJobID, api.AllocClientStatusFailed)
	if last := lastEvent(failed.TaskStates["t"], api.TaskTerminated); last == nil || last.ExitCode != 137 {
		t.Errorf("killed task's Terminated event: %+v", last)
	}
}

func TestFailures(t *testing.T) {
	t.Parallel()
	s, c := newFake(t, nomad.Options{})
	s.SetDriverFailure(func(job *api.Job, _ *api.Task) error {
		if job.Meta["image"] == "bad:1" {
			return errors.New("Failed to pull `bad:1`: manifest unknown")
		}
		return nil
	})
	if _, _, err := c.Jobs().Register(shellJob("ws", "exec sleep 60"), nil); err != nil {
		t.Fatal(err)
	}
	t.Run("driver failure", func(t *testing.T) {
		resp, _, err := c.Jobs().Dispatch("ws", map[string]string{"user_id": "a", "image": "bad:1"}, []byte("x"), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		a := waitAlloc(t, c, resp.DispatchedJobID, api.AllocClientStatusFailed)
		types := eventTypes(a.TaskStates["t"])
		if !strings.Contains(strings.Join(types, ","), api.TaskDriverFailure) {
			t.Errorf("events %v, want a Driver Failure", types)
		}
	})
	t.Run("missing driver", func(t *testing.T) {
		job := shellJob("docker-ws", "true")
		job.TaskGroups[0].Tasks[0].Driver = "docker"
		if _, _, err := c.Jobs().Register(job, nil); err != nil {
			t.Fatal(err)
		}
		resp, _, err := c.Jobs().Dispatch("docker-ws", map[string]string{"user_id": "a"}, []byte("x"), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		ev := waitEval(t, c, resp.EvalID)
		if m := ev.FailedTGAllocs["g"]; m == nil || m.ConstraintFiltered["missing drivers"] != 1 {
			t.Errorf("evaluation: %+v", ev)
		}
	})
	t.Run("other datacenter", func(t *testing.T) {
		job := shellJob("dc2-ws", "true")
		job.Datacenters = []string{"dc2"}
		if _, _, err := c.Jobs().Register(job, nil); err != nil {
			t.Fatal(err)
		}
		resp, _, err := c.Jobs().Dispatch("dc2-ws", map[string]string{"user_id": "a"}, []byte("x"), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		// Nomad counts nodes by the datacenters they are in: one no node
		// is in is not named.
		ev := waitEval(t, c, resp.EvalID)
		if m := ev.FailedTGAllocs["g"]; m == nil || m.NodesEvaluated != 0 || len(m.NodesAvailable) != 0 {
			t.Errorf("evaluation: %+v", ev)
		}
	})
	t.Run("oom", func(t *testing.T) {
		resp, _, err := c.Jobs().Dispatch("ws", map[string]string{"user_id": "a"}, []byte("x"), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		a := waitAlloc(t, c, resp.DispatchedJobID, api.AllocClientStatusRunning)
		if err := s.OOMKill(a.ID, "t"); err != nil {
			t.Fatal(err)
		}
		a = waitAlloc(t, c, resp.DispatchedJobID, api.AllocClientStatusFailed)
		if last := lastEvent(a.TaskStates["t"], api.TaskTerminated); last == nil || last.Details["oom_killed"] != "true" {
			t.Errorf("Terminated event %+v, want OOM killed", last)
		}
	})
}

func TestCloseStopsTasks(t *testing.T) {
	t.Parallel()
	s, c := newFake(t, nomad.Options{})
	if _, _, err := c.Jobs().Register(shellJob("ws", "exec sleep 60"), nil); err != nil {
		t.Fatal(err)
	}
	resp, _, err := c.Jobs().Dispatch("ws", map[string]string{"user_id": "a"}, []byte("x"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := waitAlloc(t, c, resp.DispatchedJobID, api.AllocClientStatusRunning)
	pid := s.TaskPID(a.ID, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Close did not return")
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("task %d survived Close", pid)
	}
}

// TestKilledTaskLeavesNoProcess: as Nomad ends a task's cgroup, killing a
// task ends the processes it started in a session and process group of
// their own too (code-server's, under the agent).
func TestKilledTaskLeavesNoProcess(t *testing.T) {
	t.Parallel()
	s, c := newFake(t, nomad.Options{})
	script := `setsid sleep 300 & echo $! > "$NOMAD_ALLOC_DIR/child.tmp" && mv "$NOMAD_ALLOC_DIR/child.tmp" "$NOMAD_ALLOC_DIR/child"; exec sleep 300`
	if _, _, err := c.Jobs().Register(shellJob("ws", script), nil); err != nil {
		t.Fatal(err)
	}
	resp, _, err := c.Jobs().Dispatch("ws", map[string]string{"user_id": "a"}, []byte("x"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := waitAlloc(t, c, resp.DispatchedJobID, api.AllocClientStatusRunning)
	var child int
	for i := 0; i < 500 && child == 0; i++ {
		b, _ := os.ReadFile(filepath.Join(s.AllocDir(a.ID), "alloc", "child"))
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		time.Sleep(20 * time.Millisecond)
	}
	if child == 0 {
		t.Fatal("the task did not start its child")
	}
	if err := s.KillTask(a.ID, "t"); err != nil {
		t.Fatal(err)
	}
	waitAlloc(t, c, resp.DispatchedJobID, api.AllocClientStatusFailed)
	for i := 0; i < 100 && procenv.Alive(child); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if procenv.Alive(child) {
		t.Errorf("the task's child %d (own session) outlived the killed task", child)
	}
}
