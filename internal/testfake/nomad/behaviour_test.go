package nomad_test

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/testfake/nomad"
	"github.com/hashicorp/nomad/api"
)

// These tests hold the fake to what real Nomad was seen to do.

// jobsDir holds the shipped job specifications.
const jobsDir = "../../../jobs"

// TestParseJobReadsTheShippedJobs: the parser reads every shipped job as
// Nomad's does, runtime interpolations kept, a constraint without an
// operator meaning "=".
func TestParseJobReadsTheShippedJobs(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob(filepath.Join(jobsDir, "*.nomad.hcl"))
	if len(files) < 3 {
		t.Fatalf("job files: %v", files)
	}
	for _, f := range files {
		job, err := nomad.ParseJobFile(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if *job.ID == "" || *job.Name != *job.ID || len(job.TaskGroups) == 0 {
			t.Errorf("%s: job %+v", f, job)
		}
	}

	job, err := nomad.ParseJobFile(filepath.Join(jobsDir, "workspace.nomad.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	var exec *api.TaskGroup
	for _, tg := range job.TaskGroups {
		if tg.Tasks[0].Driver == "exec" {
			exec = tg
		}
	}
	if exec == nil {
		t.Fatal("no exec group")
	}
	if c := exec.Constraints[0]; c.Operand != "=" || c.LTarget != "${attr.driver.exec}" || c.RTarget != "1" {
		t.Errorf("constraint %+v: want ${attr.driver.exec} = 1, the operator defaulted", c)
	}
	task := exec.Tasks[0]
	if drop, _ := task.Config["cap_drop"].([]any); len(drop) != 1 || drop[0] != "all" {
		t.Errorf("exec config %v", task.Config)
	}
	if args, _ := task.Config["args"].([]any); len(args) == 0 || !strings.Contains(fmtAll(args), "${NOMAD_PORT_http}") {
		t.Errorf("args %v: want the runtime interpolation kept", args)
	}
	if *exec.RestartPolicy.Delay <= 0 || exec.Networks[0].DynamicPorts[0].Label != "http" {
		t.Errorf("restart %+v, network %+v", exec.RestartPolicy, exec.Networks[0])
	}

	gw, err := nomad.ParseJobFile(filepath.Join(jobsDir, "gateway.nomad.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if p := gw.TaskGroups[0].Networks[0]; len(p.ReservedPorts) != 1 || p.ReservedPorts[0].Value != 8080 {
		t.Errorf("gateway ports %+v: want the static port reserved", p)
	}
}

func fmtAll(xs []any) string {
	var b strings.Builder
	for _, x := range xs {
		b.WriteString(" ")
		b.WriteString(x.(string))
	}
	return b.String()
}

// TestParseJobRefusesWhatNomadRefuses: an unknown argument names its
// file, line and column; a Vault role is refused before Nomad 1.7.
func TestParseJobRefusesWhatNomadRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src, version, msg string
	}{
		{"unknown argument", "job \"x\" {\n  typo = 1\n}\n", "", `x.hcl:2,3-7: Unsupported argument; An argument named "typo" is not expected here.`},
		{"unknown block", "job \"x\" {\n  group \"g\" {\n    nope {}\n  }\n}\n", "", `Blocks of type "nope" are not expected here`},
		{"vault role on 1.6", "job \"x\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      vault {\n        role = \"r\"\n      }\n    }\n  }\n}\n", "1.6.5",
			`An argument named "role" is not expected here`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := nomad.ParseJob("x.hcl", []byte(tc.src), tc.version)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %v, want %q", err, tc.msg)
			}
		})
	}
	if _, err := nomad.ParseJob("x.hcl", []byte("job \"x\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      vault {\n        role = \"r\"\n      }\n    }\n  }\n}\n"), "1.7.0"); err != nil {
		t.Errorf("a Vault role on 1.7: %v", err)
	}
}

// TestParseAndValidateEndpoints: PUT /v1/jobs/parse and /v1/validate/job
// answer as Nomad's do, validation errors in the body.
func TestParseAndValidateEndpoints(t *testing.T) {
	t.Parallel()
	_, c := newFake(t, nomad.Options{Version: "1.6.5"})
	job, err := c.Jobs().ParseHCL("job \"x\" {\n  group \"g\" {\n    task \"t\" {\n      driver = \"exec\"\n      config {\n        command = \"/bin/true\"\n      }\n    }\n  }\n}\n", true)
	if err != nil || *job.ID != "x" || *job.Type != "service" {
		t.Fatalf("parse: %+v, %v", job, err)
	}
	if _, err := c.Jobs().ParseHCL("job \"x\" {\n  group \"g\" {\n    task \"t\" {\n      vault {\n        role = \"r\"\n      }\n    }\n  }\n}\n", true); err == nil || !strings.Contains(err.Error(), `"role" is not expected`) {
		t.Errorf("a 1.6 server parsing a Vault role: %v", err)
	}
	job.TaskGroups[0].Constraints = []*api.Constraint{{LTarget: "${attr.kernel.name}", RTarget: "linux"}}
	resp, _, err := c.Jobs().Validate(job, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.Error, "Missing constraint operand") || len(resp.ValidationErrors) == 0 {
		t.Errorf("validate: %+v", resp)
	}
	self, err := c.Agent().Self()
	if err != nil || self.Member.Tags["build"] != "1.6.5" {
		t.Errorf("agent self: %+v, %v", self, err)
	}
}

// TestConstraintOperandsAreValidated: Nomad refuses a constraint whose
// operator is missing ("Missing constraint operand") or unknown.
func TestConstraintOperandsAreValidated(t *testing.T) {
	t.Parallel()
	_, c := newFake(t, nomad.Options{})
	for _, tc := range []struct {
		c   api.Constraint
		msg string
	}{
		{api.Constraint{LTarget: "${attr.kernel.name}", RTarget: "linux"}, "Missing constraint operand"},
		{api.Constraint{LTarget: "${attr.kernel.name}", RTarget: "linux", Operand: "equals"}, `Unknown constraint type "equals"`},
		{api.Constraint{LTarget: "${attr.kernel.name}", Operand: "="}, `Operator "=" requires an RTarget`},
		{api.Constraint{LTarget: "${attr.kernel.name}", RTarget: "linux", Operand: "="}, ""},
		{api.Constraint{Operand: "distinct_hosts", RTarget: "true"}, ""},
	} {
		job := shellJob("c", "true")
		job.TaskGroups[0].Constraints = []*api.Constraint{&tc.c}
		_, _, err := c.Jobs().Register(job, nil)
		switch {
		case tc.msg == "" && err != nil:
			t.Errorf("%+v: %v", tc.c, err)
		case tc.msg != "" && (statusCode(err) != 400 || !strings.Contains(err.Error(), tc.msg)):
			t.Errorf("%+v: %v, want 400 %q", tc.c, err, tc.msg)
		}
	}
}

// TestNamespacesComeFromTheAPI: no namespace but "default" exists until
// it is made; one that holds live jobs cannot be deleted.
func TestNamespacesComeFromTheAPI(t *testing.T) {
	t.Parallel()
	_, c := newFake(t, nomad.Options{})
	if _, _, err := c.Jobs().Register(shellJob("x", "sleep 60"), &api.WriteOptions{Namespace: "team"}); statusCode(err) != 400 {
		t.Errorf("register in a namespace not made: %v, want 400", err)
	}
	if _, err := c.Namespaces().Register(&api.Namespace{Name: "team"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Jobs().Register(shellJob("x", "sleep 60"), &api.WriteOptions{Namespace: "team"}); err != nil {
		t.Fatal(err)
	}
	resp, _, err := c.Jobs().Dispatch("x", map[string]string{"user_id": "u"}, []byte("p"), "", &api.WriteOptions{Namespace: "team"})
	if err != nil {
		t.Fatal(err)
	}
	waitAllocNS(t, c, resp.DispatchedJobID, "team", api.AllocClientStatusRunning)
	if _, err := c.Namespaces().Delete("team", nil); err == nil || !strings.Contains(err.Error(), "non-terminal jobs") {
		t.Errorf("delete with a job running: %v", err)
	}
	for _, id := range []string{resp.DispatchedJobID, "x"} {
		if _, _, err := c.Jobs().Deregister(id, true, &api.WriteOptions{Namespace: "team"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Namespaces().Delete("team", nil); err != nil {
		t.Errorf("delete once empty: %v", err)
	}
}

func waitAllocNS(t *testing.T, c *api.Client, jobID, ns, status string) *api.Allocation {
	t.Helper()
	var index uint64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		stubs, qm, err := c.Jobs().Allocations(jobID, true, &api.QueryOptions{Namespace: ns, WaitIndex: index, WaitTime: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		index = qm.LastIndex
		for _, s := range stubs {
			if s.ClientStatus == status {
				a, _, err := c.Allocations().Info(s.ID, &api.QueryOptions{Namespace: ns})
				if err != nil {
					t.Fatal(err)
				}
				return a
			}
		}
	}
	t.Fatalf("job %s: no allocation reached %s", jobID, status)
	return nil
}

// hostVolumeJob is shellJob with a host volume mounted.
func hostVolumeJob(id string) *api.Job {
	job := shellJob(id, "sleep 60")
	tg := job.TaskGroups[0]
	tg.Volumes = map[string]*api.VolumeRequest{"homes": {Name: "homes", Type: "host", Source: "codehub-homes"}}
	tg.Tasks[0].VolumeMounts = []*api.VolumeMount{{Volume: new("homes"), Destination: new("/homes")}}
	return job
}

// TestACLPoliciesGuardHostVolumes: a token whose policy grants submit-job
// but not the host volume cannot register a job that mounts it (Nomad's
// "Permission denied"); host_volume "name" { policy = "write" } lets it.
func TestACLPoliciesGuardHostVolumes(t *testing.T) {
	t.Parallel()
	s, c := newFake(t, nomad.Options{Token: "management", HostVolumes: map[string]string{"codehub-homes": t.TempDir()}})
	rules := `namespace "default" { capabilities = ["submit-job", "read-job", "dispatch-job", "list-jobs"] }`
	token := func(name, rules string) *api.Client {
		t.Helper()
		if _, err := c.ACLPolicies().Upsert(&api.ACLPolicy{Name: name, Rules: rules}, nil); err != nil {
			t.Fatal(err)
		}
		tok, _, err := c.ACLTokens().Create(&api.ACLToken{Name: name, Type: "client", Policies: []string{name}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg := api.DefaultConfig()
		cfg.Address, cfg.SecretID, cfg.Namespace, cfg.Region = s.URL(), tok.SecretID, "", ""
		cl, err := api.NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	without := token("no-volume", rules)
	if _, _, err := without.Jobs().Register(hostVolumeJob("a"), nil); statusCode(err) != 403 || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("without host_volume: %v, want 403 Permission denied", err)
	}
	if _, _, err := without.Jobs().Register(shellJob("b", "true"), nil); err != nil {
		t.Errorf("a job without volumes: %v", err)
	}
	if _, _, err := without.Jobs().Info("b", &api.QueryOptions{Namespace: "other"}); statusCode(err) != 403 {
		t.Errorf("another namespace: %v, want 403", err)
	}
	with := token("volume", rules+"\nhost_volume \"codehub-homes\" {\n  policy = \"write\"\n}\n")
	if _, _, err := with.Jobs().Register(hostVolumeJob("a"), nil); err != nil {
		t.Errorf("with host_volume write: %v", err)
	}
	if _, err := with.Agent().Self(); statusCode(err) != 403 && !strings.Contains(err.Error(), "403") {
		t.Errorf("agent self without agent:read: %v", err)
	}
}

// TestHostVolumesPlace: a group asking for a host volume the node does
// not have is not placed ("missing compatible host volumes").
func TestHostVolumesPlace(t *testing.T) {
	t.Parallel()
	_, c := newFake(t, nomad.Options{})
	if _, _, err := c.Jobs().Register(hostVolumeJob("v"), nil); err != nil {
		t.Fatal(err)
	}
	resp, _, err := c.Jobs().Dispatch("v", map[string]string{"user_id": "u"}, []byte("p"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := waitEval(t, c, resp.EvalID)
	if m := ev.FailedTGAllocs["g"]; m == nil || m.ConstraintFiltered["missing compatible host volumes"] != 1 {
		t.Errorf("evaluation %+v", ev)
	}
}

// TestMemoryMaxNeedsOversubscription: with Nomad's default scheduler
// configuration, registering a job with memory_max warns that it is
// ignored, and the allocation gets none; with oversubscription on, it
// does.
func TestMemoryMaxNeedsOversubscription(t *testing.T) {
	t.Parallel()
	s, c := newFake(t, nomad.Options{})
	job := shellJob("m", "sleep 60")
	job.TaskGroups[0].Tasks[0].Resources = &api.Resources{CPU: new(100), MemoryMB: new(256), MemoryMaxMB: new(512)}
	resp, _, err := c.Jobs().Register(job, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.Warnings, `Memory oversubscription is not enabled; Task "g.t" memory_max value will be ignored`) {
		t.Errorf("warnings %q", resp.Warnings)
	}
	d, _, err := c.Jobs().Dispatch("m", map[string]string{"user_id": "u"}, []byte("p"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := waitAlloc(t, c, d.DispatchedJobID, api.AllocClientStatusRunning)
	if got := a.AllocatedResources.Tasks["t"].Memory.MemoryMaxMB; got != 0 {
		t.Errorf("memory_max allocated without oversubscription: %d", got)
	}

	if _, _, err := c.Operator().SchedulerSetConfiguration(&api.SchedulerConfiguration{MemoryOversubscriptionEnabled: true}, nil); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := c.Operator().SchedulerGetConfiguration(nil)
	if err != nil || !cfg.SchedulerConfig.MemoryOversubscriptionEnabled {
		t.Fatalf("scheduler configuration: %+v, %v", cfg, err)
	}
	if resp, _, err = c.Jobs().Register(job, nil); err != nil || resp.Warnings != "" {
		t.Errorf("with oversubscription: warnings %q, %v", resp.Warnings, err)
	}
	d, _, err = c.Jobs().Dispatch("m", map[string]string{"user_id": "v"}, []byte("p"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	a = waitAlloc(t, c, d.DispatchedJobID, api.AllocClientStatusRunning)
	if got := a.AllocatedResources.Tasks["t"].Memory.MemoryMaxMB; got != 512 {
		t.Errorf("memory_max allocated with oversubscription: %d, want 512", got)
	}
	_ = s
}

// TestRestartPolicyRestartsInPlace: a task that fails is started again
// in the same allocation, on the same port, after the policy's delay,
// until the attempts are spent; then the allocation fails.
func TestRestartPolicyRestartsInPlace(t *testing.T) {
	t.Parallel()
	s, c := newFake(t, nomad.Options{})
	job := shellJob("r", "exec sleep 60")
	job.TaskGroups[0].RestartPolicy = &api.RestartPolicy{Attempts: new(2), Interval: new(time.Hour), Delay: new(100 * time.Millisecond), Mode: new("fail")}
	if _, _, err := c.Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	d, _, err := c.Jobs().Dispatch("r", map[string]string{"user_id": "u"}, []byte("p"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := waitAlloc(t, c, d.DispatchedJobID, api.AllocClientStatusRunning)
	port := a.AllocatedResources.Shared.Ports[0].Value
	for i := 1; i <= 2; i++ {
		pid := s.TaskPID(a.ID, "t")
		if err := s.KillTask(a.ID, "t"); err != nil {
			t.Fatal(err)
		}
		a = waitRestarted(t, c, a.ID, i)
		if s.TaskPID(a.ID, "t") == pid || a.AllocatedResources.Shared.Ports[0].Value != port {
			t.Errorf("restart %d: same process or another port", i)
		}
		if last := lastEvent(a.TaskStates["t"], api.TaskRestarting); last == nil || last.RestartReason != "Restart within policy" {
			t.Errorf("restart %d: events %v", i, eventTypes(a.TaskStates["t"]))
		}
	}
	if err := s.KillTask(a.ID, "t"); err != nil {
		t.Fatal(err)
	}
	a = waitAlloc(t, c, d.DispatchedJobID, api.AllocClientStatusFailed)
	if last := lastEvent(a.TaskStates["t"], api.TaskNotRestarting); last == nil || !strings.Contains(last.DisplayMessage, "Exceeded allowed attempts 2") {
		t.Errorf("after the attempts: events %v", eventTypes(a.TaskStates["t"]))
	}
}

// waitRestarted waits until the allocation's task runs after n restarts.
func waitRestarted(t *testing.T, c *api.Client, allocID string, n int) *api.Allocation {
	t.Helper()
	var index uint64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		a, qm, err := c.Allocations().Info(allocID, &api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		index = qm.LastIndex
		ts := a.TaskStates["t"]
		started := 0
		for _, e := range ts.Events {
			if e.Type == api.TaskStarted {
				started++
			}
		}
		if ts.State == "running" && started == n+1 && a.ClientStatus == api.AllocClientStatusRunning {
			return a
		}
	}
	t.Fatalf("allocation %s not running after %d restarts", allocID, n)
	return nil
}

// TestRestartAPI: POST /v1/client/allocation/{id}/restart restarts the
// task in place, at once.
func TestRestartAPI(t *testing.T) {
	t.Parallel()
	s, c := newFake(t, nomad.Options{})
	if _, _, err := c.Jobs().Register(shellJob("r", "exec sleep 60"), nil); err != nil {
		t.Fatal(err)
	}
	d, _, err := c.Jobs().Dispatch("r", map[string]string{"user_id": "u"}, []byte("p"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	a := waitAlloc(t, c, d.DispatchedJobID, api.AllocClientStatusRunning)
	pid := s.TaskPID(a.ID, "t")
	if err := c.Allocations().Restart(a, "t", nil); err != nil {
		t.Fatal(err)
	}
	a = waitRestarted(t, c, a.ID, 1)
	if s.TaskPID(a.ID, "t") == pid || lastEvent(a.TaskStates["t"], api.TaskRestartSignal) == nil {
		t.Errorf("restart: events %v", eventTypes(a.TaskStates["t"]))
	}
	if err := c.Allocations().Restart(a, "nope", nil); err == nil {
		t.Error("restarting a task that does not exist")
	}
}

// capsJob runs a shell that prints its capability sets into the task's
// stdout, with the given driver, user and config.
func capsJob(id, driver, user string, config map[string]any) *api.Job {
	job := shellJob(id, `grep -E '^(Cap|NoNewPrivs)' /proc/self/status; exec sleep 60`)
	task := job.TaskGroups[0].Tasks[0]
	task.Driver, task.User = driver, user
	for k, v := range config {
		task.Config[k] = v
	}
	return job
}

// readStatus waits for the task's stdout and parses its status lines.
func readStatus(t *testing.T, c *api.Client, a *api.Allocation) map[string]string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r, err := c.AllocFS().Cat(a, "alloc/logs/t.stdout.0", nil)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(r)
		r.Close()
		out := map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				out[k] = strings.TrimSpace(v)
			}
		}
		if out["NoNewPrivs"] != "" {
			return out
		}
	}
	t.Fatal("the task printed no status")
	return nil
}

// TestDriversGiveCapabilities: an exec task as nobody holds Nomad's 13
// default capabilities (CapEff 0xa80405fb, what real Nomad 1.6 was seen
// to give), none with cap_drop = ["all"]; a docker task bounded by
// cap_drop and no-new-privileges.
func TestDriversGiveCapabilities(t *testing.T) {
	t.Parallel()
	_, c := newFake(t, nomad.Options{Drivers: []string{"exec", "docker"}, Users: map[string]nomad.Account{"codehub": {UID: 10100, GID: 10100}}})
	for _, tc := range []struct {
		name, driver, user string
		config             map[string]any
		eff, bnd, nnp      string
	}{
		{"exec defaults", "exec", "", nil, "00000000a80405fb", "00000000a80405fb", "0"},
		{"exec cap_drop all", "exec", "codehub", map[string]any{"cap_drop": []any{"all"}}, "0000000000000000", "0000000000000000", "0"},
		{"exec cap_drop one", "exec", "nobody", map[string]any{"cap_drop": []any{"dac_override"}}, "00000000a80405f9", "00000000a80405f9", "0"},
		{"docker unprivileged user", "docker", "10100:10100", nil, "0000000000000000", "00000000a80405fb", "0"},
		{"docker hardened", "docker", "10100:10100", map[string]any{"cap_drop": []any{"ALL"}, "security_opt": []any{"no-new-privileges"}}, "0000000000000000", "0000000000000000", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := strings.ReplaceAll(tc.name, " ", "-")
			if _, _, err := c.Jobs().Register(capsJob(id, tc.driver, tc.user, tc.config), nil); err != nil {
				t.Fatal(err)
			}
			d, _, err := c.Jobs().Dispatch(id, map[string]string{"user_id": "u"}, []byte("p"), "", nil)
			if err != nil {
				t.Fatal(err)
			}
			st := readStatus(t, c, waitAlloc(t, c, d.DispatchedJobID, api.AllocClientStatusRunning))
			if st["CapEff"] != tc.eff || st["CapBnd"] != tc.bnd || st["NoNewPrivs"] != tc.nnp {
				t.Errorf("status %v; want CapEff %s, CapBnd %s, NoNewPrivs %s", st, tc.eff, tc.bnd, tc.nnp)
			}
		})
	}
}

// TestExecConfigIsChecked: an argument the exec driver does not have
// fails the task as Nomad's client does ("Failed Validation"), and an
// unknown user fails it at launch.
func TestExecConfigIsChecked(t *testing.T) {
	t.Parallel()
	_, c := newFake(t, nomad.Options{Drivers: []string{"exec"}})
	for _, tc := range []struct {
		id, user string
		config   map[string]any
		event    string
		msg      string
	}{
		{"pids", "nobody", map[string]any{"pids_limit": 100}, api.TaskFailedValidation, `No argument or block type is named "pids_limit"`},
		{"user", "no-such-account-here", nil, api.TaskDriverFailure, `failed to identify user "no-such-account-here"`},
	} {
		if _, _, err := c.Jobs().Register(capsJob(tc.id, "exec", tc.user, tc.config), nil); err != nil {
			t.Fatal(err)
		}
		d, _, err := c.Jobs().Dispatch(tc.id, map[string]string{"user_id": "u"}, []byte("p"), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		a := waitAlloc(t, c, d.DispatchedJobID, api.AllocClientStatusFailed)
		e := lastEvent(a.TaskStates["t"], tc.event)
		if e == nil || !strings.Contains(e.DisplayMessage, tc.msg) || lastEvent(a.TaskStates["t"], api.TaskNotRestarting) == nil {
			t.Errorf("%s: events %v, want %s %q then Not Restarting", tc.id, eventTypes(a.TaskStates["t"]), tc.event, tc.msg)
		}
	}
}
