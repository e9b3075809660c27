package nomad_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/orchestrator/nomad"
	"github.com/codehub-dev/codehub/internal/testenv"
	fakenomad "github.com/codehub-dev/codehub/internal/testfake/nomad"
	"github.com/hashicorp/nomad/api"
)

// jobsDir holds the Nomad job specs operators run.
const jobsDir = "../../../jobs"

// parseJob reads a shipped job file as Nomad's parser does.
func parseJob(t *testing.T, file string) *api.Job {
	t.Helper()
	job, err := fakenomad.ParseJobFile(filepath.Join(jobsDir, file))
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// argAfter is the argument following flag in args.
func argAfter(args []string, flag string) string {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return ""
	}
	return args[i+1]
}

// configStrings is a list of a task's driver config.
func configStrings(t *api.Task, key string) []string {
	list, _ := t.Config[key].([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestWorkspaceJobs checks that the workspace and warm-pool jobs take what
// the orchestrator dispatches and deliver what the agent and the gateway
// expect.
func TestWorkspaceJobs(t *testing.T) {
	defaults := config.Default(func(string) string { return "" }).Nomad
	for _, tc := range []struct {
		file, id string
		warm     bool
	}{
		{"workspace.nomad.hcl", defaults.Job, false},
		{"warm-pool.nomad.hcl", defaults.WarmPoolJob, true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			job := parseJob(t, tc.file)
			if *job.ID != tc.id {
				t.Errorf("job %q, want %q (the configuration's default)", *job.ID, tc.id)
			}
			if *job.Type != "batch" {
				t.Errorf("type %q, want batch", *job.Type)
			}
			pj := job.ParameterizedJob
			if pj == nil || pj.Payload != "required" {
				t.Fatalf("parameterized %+v: want payload required, the secret", pj)
			}
			if got, want := pj.MetaRequired, nomad.RequiredMeta(); !slices.Equal(sorted(got), sorted(want)) {
				t.Errorf("meta_required %q, want %q", got, want)
			}
			if got, want := pj.MetaOptional, nomad.OptionalMeta(); !slices.Equal(sorted(got), sorted(want)) {
				t.Errorf("meta_optional %q, want %q", got, want)
			}
			for _, k := range append(nomad.OptionalMeta(), nomad.JobMetaStorageLimit) {
				if _, ok := job.Meta[k]; !ok {
					t.Errorf("meta has no default for %q", k)
				}
			}

			var defaultGroups int
			drivers := map[string]bool{}
			for _, g := range job.TaskGroups {
				t.Run(*g.Name, func(t *testing.T) {
					if *g.Count > 0 {
						defaultGroups++
					}
					drivers[checkWorkspaceGroup(t, g, tc.warm)] = true
				})
			}
			if defaultGroups != 1 {
				t.Errorf("%d groups with count > 0, want 1 (the orchestrator keeps the policy's driver's)", defaultGroups)
			}
			// A cluster whose default policy is exec has a warm pool too.
			if !drivers["docker"] || !drivers["exec"] {
				t.Errorf("drivers %v: want a docker and an exec group", drivers)
			}
		})
	}
}

// checkWorkspaceGroup checks a group and returns its driver.
func checkWorkspaceGroup(t *testing.T, g *api.TaskGroup, warm bool) string {
	restart := g.RestartPolicy
	if restart == nil || restart.Attempts == nil || *restart.Attempts < 1 || *restart.Attempts > 5 || restart.Mode == nil || *restart.Mode != "fail" || restart.Delay == nil || *restart.Delay <= 0 {
		t.Errorf("restart %+v: want a few attempts in place with a delay, then fail", restart)
	}
	resched := g.ReschedulePolicy
	if resched == nil || resched.Unlimited != nil && *resched.Unlimited {
		t.Error("reschedule is unlimited")
	}
	if !warm && (resched == nil || resched.DelayFunction == nil || *resched.DelayFunction != "exponential") {
		t.Errorf("reschedule %+v: want an exponential delay", resched)
	}
	if len(g.Networks) != 1 || len(g.Networks[0].DynamicPorts) != 1 || g.Networks[0].DynamicPorts[0].Label != nomad.PortLabel {
		t.Errorf("no network port %q", nomad.PortLabel)
	}
	var task *api.Task
	for _, x := range g.Tasks {
		if x.Name == nomad.TaskName {
			task = x
		}
	}
	if task == nil {
		t.Fatalf("no task %q", nomad.TaskName)
	}
	if task.DispatchPayload == nil || task.DispatchPayload.File != nomad.PayloadFile {
		t.Errorf("dispatch_payload %+v, want %q", task.DispatchPayload, nomad.PayloadFile)
	}
	var copied bool
	for _, tmpl := range task.Templates {
		copied = copied || deref(tmpl.SourcePath) == "local/"+nomad.PayloadFile &&
			deref(tmpl.DestPath) == "secrets/"+nomad.SecretFile && deref(tmpl.Perms) == "0600"
	}
	if !copied {
		t.Errorf("no template copying local/%s to secrets/%s with perms 0600", nomad.PayloadFile, nomad.SecretFile)
	}
	args := configStrings(task, "args")
	if len(args) == 0 || args[0] != "agent" {
		t.Errorf("args %q: want `codehub agent ...`", args)
	}
	if got := argAfter(args, "--listen"); got != "0.0.0.0:${NOMAD_PORT_"+nomad.PortLabel+"}" {
		t.Errorf("--listen %q", got)
	}
	if got := argAfter(args, "--secret-file"); got != "${NOMAD_SECRETS_DIR}/"+nomad.SecretFile {
		t.Errorf("--secret-file %q, want the template's 0600 copy", got)
	}
	if got := argAfter(args, "--storage-limit"); got != "${NOMAD_META_"+nomad.JobMetaStorageLimit+"}" {
		t.Errorf("--storage-limit %q", got)
	}
	// Nothing the user runs holds a capability (the exec driver's
	// defaults include dac_override, on a chroot of the host's files).
	if drop := configStrings(task, "cap_drop"); len(drop) != 1 || strings.ToLower(drop[0]) != "all" {
		t.Errorf("cap_drop %q, want [all]", drop)
	}
	switch task.Driver {
	case "docker":
		if task.Config["image"] != "${NOMAD_META_image}" {
			t.Errorf("image %v, want the dispatch's", task.Config["image"])
		}
		if !slices.Contains(configStrings(task, "security_opt"), "no-new-privileges") {
			t.Error("docker without security_opt no-new-privileges")
		}
	case "exec":
		if *g.Count != 0 {
			t.Error("the exec group runs by default")
		}
		// The exec driver cannot set no_new_privs: the agent does; the
		// job passes the code-server inside the chroot.
		if !slices.Contains(args, "--no-new-privileges") || argAfter(args, "--code-server") == "" {
			t.Errorf("exec args %q: want --no-new-privileges and --code-server", args)
		}
		if _, ok := task.Config["pids_limit"]; ok {
			t.Error("pids_limit in an exec task: the driver refuses it")
		}
		if task.User == "" || task.User == "root" {
			t.Errorf("exec user %q", task.User)
		}
	default:
		t.Errorf("driver %q", task.Driver)
	}

	if len(task.Services) != 1 {
		t.Fatalf("%d services", len(task.Services))
	}
	svc := task.Services[0]
	if svc.Name != nomad.ServiceName || svc.PortLabel != nomad.PortLabel {
		t.Errorf("service %q on %q", svc.Name, svc.PortLabel)
	}
	want := []string{"dc-${node.datacenter}", "workspace-${NOMAD_META_workspace_id}"}
	if warm {
		want = append(want, "warm")
	} else {
		want = append(want, "user-${NOMAD_META_user_id}")
	}
	for _, w := range want {
		if !slices.Contains(svc.Tags, w) {
			t.Errorf("service tags %q lack %q", svc.Tags, w)
		}
	}
	if svc.Meta["workspace_id"] != "${NOMAD_META_workspace_id}" || svc.Meta["user_id"] != "${NOMAD_META_user_id}" {
		t.Errorf("service meta %v", svc.Meta)
	}
	if len(svc.Checks) != 1 {
		t.Fatalf("%d checks", len(svc.Checks))
	}
	check := svc.Checks[0]
	probe := strings.Join(check.Args, " ")
	if check.Type != "script" || !strings.Contains(probe, agentapi.PathHealth) ||
		!strings.Contains(probe, agentapi.SecretHeader) || !strings.Contains(probe, "$NOMAD_SECRETS_DIR/"+nomad.SecretFile) {
		t.Errorf("check %+v: want a script check asking %s with the secret", check, agentapi.PathHealth)
	}
	if len(check.Header) > 0 {
		t.Error("the check has headers: a secret there would be in Consul's catalog")
	}
	return task.Driver
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func TestGatewayJob(t *testing.T) {
	for _, file := range gatewayFiles {
		t.Run(file.name, func(t *testing.T) {
			job := parseJob(t, file.name)
			if *job.Type != "service" || *job.ID != "codehub-gateway" {
				t.Errorf("job %q of type %q", *job.ID, *job.Type)
			}
			if len(job.TaskGroups) != 1 {
				t.Fatalf("%d groups", len(job.TaskGroups))
			}
			g := job.TaskGroups[0]
			if *g.Count < 2 {
				t.Errorf("count %d, want at least 2", *g.Count)
			}
			if len(g.Spreads) != 1 {
				t.Error("no spread")
			}
			if u := g.Update; u == nil || !deref(u.AutoRevert) || deref(u.HealthCheck) != "checks" {
				t.Errorf("update %+v", u)
			}
			if len(g.Constraints) != 1 || g.Constraints[0].Operand != "distinct_hosts" {
				t.Errorf("constraints %+v", g.Constraints)
			}
			if len(g.Services) != 1 || g.Services[0].Name != "codehub-gateway" || len(g.Services[0].Checks) != 1 ||
				g.Services[0].Checks[0].Type != "http" || g.Services[0].Checks[0].Path != "/healthz" {
				t.Errorf("services %+v", g.Services)
			}
			// Signing keys are Vault transit's: no shared key file, no volume.
			if len(g.Volumes) != 0 {
				t.Error("a data volume: transit signs tokens, no key file is shared")
			}
			task := g.Tasks[0]
			v := task.Vault
			switch {
			case v == nil:
				t.Fatal("no vault block")
			case file.workloadIdentity && (v.Role == "" || len(v.Policies) != 0):
				t.Errorf("vault %+v: want a role (workload identity)", v)
			case !file.workloadIdentity && (v.Role != "" || !slices.Equal(v.Policies, []string{"codehub-gateway"})):
				t.Errorf("vault %+v: want the policy codehub-gateway (Vault token of the servers)", v)
			}
			var data string
			for _, tpl := range task.Templates {
				switch deref(tpl.DestPath) {
				case "secrets/codehub.hcl":
					data = deref(tpl.EmbeddedTmpl)
				case "secrets/consul-ca.pem":
					// terraform/codehub writes the CA as ca_pem.
					if !strings.Contains(deref(tpl.EmbeddedTmpl), ".ca_pem") {
						t.Errorf("the CA template reads %q, want .ca_pem (terraform/codehub/nomad.tf)", deref(tpl.EmbeddedTmpl))
					}
				}
			}
			defaults := config.Default(func(string) string { return "" })
			for _, want := range []string{`service "postgres"`, `service "redis"`, `nomadVar "nomad/jobs/codehub-gateway"`, ".redis_password", ".consul_token",
				`job           = "` + defaults.Nomad.Job + `"`, `warm_pool_job = "` + defaults.Nomad.WarmPoolJob + `"`,
				`namespace     = "` + defaults.Nomad.Namespace + `"`, `role    = "` + defaults.Vault.Database.Role + `"`} {
				if !strings.Contains(data, want) {
					t.Errorf("the configuration template lacks %q", want)
				}
			}
			if !regexp.MustCompile(`transit \{\s*enabled\s*= true`).MatchString(data) {
				t.Error("the configuration template does not turn Vault transit signing on")
			}
		})
	}
	// Each variant parses as the oldest Nomad it is for does, and the
	// workload identity one is refused before 1.7, as Nomad 1.6 refuses it.
	for _, file := range gatewayFiles {
		src, err := os.ReadFile(filepath.Join(jobsDir, file.name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fakenomad.ParseJob(file.name, src, file.minVersion); err != nil {
			t.Errorf("%s on Nomad %s: %v", file.name, file.minVersion, err)
		}
		if file.workloadIdentity {
			if _, err := fakenomad.ParseJob(file.name, src, "1.6.5"); err == nil || !strings.Contains(err.Error(), `"role"`) {
				t.Errorf("%s on Nomad 1.6.5: %v, want the role refused", file.name, err)
			}
		}
	}
	// The variants differ in their vault block only.
	a, b := parseJob(t, gatewayFiles[0].name), parseJob(t, gatewayFiles[1].name)
	a.TaskGroups[0].Tasks[0].Vault, b.TaskGroups[0].Tasks[0].Vault = nil, nil
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Errorf("%s and %s differ in more than their vault block", gatewayFiles[0].name, gatewayFiles[1].name)
	}
}

// gatewayFiles are the gateway job's variants: the operator runs the one
// of their Nomad's version.
var gatewayFiles = []struct {
	name             string
	workloadIdentity bool   // vault { role }: Nomad 1.7 and later
	minVersion       string // the oldest Nomad that parses it
}{
	{"gateway.nomad.hcl", true, "1.7.0"},
	{"gateway-vault-token.nomad.hcl", false, "1.6.0"},
}

// TestJobsParseInNomad has Nomad parse and validate every job file: the
// fake, whose parser reads them as Nomad's does, or a real Nomad with
// NOMAD_ADDR. A variant for a newer Nomad than the one asked is skipped,
// saying so; the others must pass on it.
func TestJobsParseInNomad(t *testing.T) {
	cfg := api.DefaultConfig()
	if !realNomad() {
		f, err := fakenomad.New(fakenomad.Options{Version: os.Getenv("CODEHUB_TEST_FAKE_NOMAD_VERSION"), Logger: testenv.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(f.Close)
		cfg.Address, cfg.SecretID, cfg.Namespace, cfg.Region = f.URL(), "", "", ""
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	version := nomadVersion(t, client)
	minimum := map[string]string{}
	for _, g := range gatewayFiles {
		minimum[g.name] = g.minVersion
	}
	files, _ := filepath.Glob(filepath.Join(jobsDir, "*.nomad.hcl"))
	if len(files) < 4 {
		t.Fatalf("job files: %v", files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if m := minimum[filepath.Base(f)]; m != "" && fakenomad.VersionBefore(version, m) {
				t.Skipf("Nomad %s is older than %s, which this variant needs; its other variant is for it", version, m)
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			job, err := client.Jobs().ParseHCL(string(src), true)
			if err != nil {
				t.Fatalf("Nomad %s cannot parse it: %v", version, err)
			}
			resp, _, err := client.Jobs().Validate(job, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Error != "" || len(resp.ValidationErrors) > 0 {
				t.Errorf("Nomad %s finds it invalid: %s %q", version, resp.Error, resp.ValidationErrors)
			}
			if pj := job.ParameterizedJob; pj != nil && !slices.Equal(sorted(pj.MetaRequired), sorted(nomad.RequiredMeta())) {
				t.Errorf("Nomad reads meta_required %q", pj.MetaRequired)
			}
		})
	}
}

// nomadVersion is the version of the Nomad the client reaches.
func nomadVersion(t *testing.T, c *api.Client) string {
	t.Helper()
	self, err := c.Agent().Self()
	if err != nil {
		t.Fatalf("read the Nomad agent's version: %v", err)
	}
	v := self.Member.Tags["build"]
	if v == "" {
		t.Fatal("the Nomad agent reports no version")
	}
	return v
}
