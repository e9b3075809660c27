package nomad_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/orchestrator/nomad"
	fakenomad "github.com/codehub-dev/codehub/internal/testfake/nomad"
	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/nomad/api"
)

// These tests run what the repository ships (job files, the gateway's
// ACL policy) against Nomad: the fake, or a real one with NOMAD_ADDR.

// TestShippedHealthCheckExitCodes runs the script check of every group of
// the workspace and warm-pool jobs against a stand-in agent: 0 when the IDE
// runs, 2 (Consul's "critical", which gets no traffic; 1 would be
// "warning") when it does not, refuses the secret, or does not answer.
func TestShippedHealthCheckExitCodes(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"/bin/sh", "grep", "cat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s, which the check runs, is missing", tool)
		}
	}
	_, curl := exec.LookPath("curl")
	_, wget := exec.LookPath("wget")
	if curl != nil && wget != nil {
		t.Skip("neither curl nor wget, one of which the check runs, is here")
	}
	secret := randHex(32)
	var status atomic.Value
	status.Store("running")
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != agentapi.PathHealth || r.Header.Get(agentapi.SecretHeader) != secret || r.Header.Get(agentapi.ControlHeader) != secret {
			http.Error(w, "this workspace answers only its gateway", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(agentapi.Health{Status: status.Load().(string)})
	}))
	defer agent.Close()
	port := agent.Listener.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	secrets := func(s string) string {
		d, err := os.MkdirTemp(dir, "secrets")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, nomad.SecretFile), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	right, wrong := secrets(secret), secrets(randHex(32))
	for _, file := range []string{"workspace.nomad.hcl", "warm-pool.nomad.hcl"} {
		for _, g := range parseJob(t, file).TaskGroups {
			check := g.Tasks[0].Services[0].Checks[0]
			run := func(secretsDir string, port int) int {
				ctx, cancel := context.WithTimeout(context.Background(), check.Timeout+20*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, check.Command, check.Args...)
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "NOMAD_SECRETS_DIR=" + secretsDir, fmt.Sprintf("NOMAD_PORT_http=%d", port)}
				err := cmd.Run()
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return ee.ExitCode()
				}
				if err != nil {
					t.Fatalf("%s/%s: %v", file, *g.Name, err)
				}
				return 0
			}
			name := file + "/" + *g.Name
			status.Store("running")
			if code := run(right, port); code != 0 {
				t.Errorf("%s: the IDE runs: exit %d, want 0", name, code)
			}
			if code := run(wrong, port); code != 2 {
				t.Errorf("%s: another workspace's secret: exit %d, want 2 (critical)", name, code)
			}
			status.Store("starting")
			if code := run(right, port); code != 2 {
				t.Errorf("%s: the IDE is not up: exit %d, want 2", name, code)
			}
			if code := run(right, freePortNumber(t)); code != 2 {
				t.Errorf("%s: nothing answers: exit %d, want 2", name, code)
			}
		}
	}
}

// TestWorkspaceTasksHoldNoCapabilities: a process that a workspace's task
// runs, in every group of the shipped workspace and warm-pool jobs, holds
// no Linux capability (the exec driver otherwise gives dac_override,
// chown, fowner, setuid... to its tasks, on a chroot of hard links to the
// host's own files). The task is the file's as shipped, user, cap_drop,
// volumes and all, but for its command: a shell that prints the
// capability sets of a process it starts, read back from the task's log.
// Against a real Nomad, the exec groups run on a client set up as the
// README says (the codehub account, the codehub-homes host volume); the
// docker groups need CODEHUB_TEST_WORKSPACE_IMAGE, an image with /bin/sh
// the client can pull.
func TestWorkspaceTasksHoldNoCapabilities(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{fake: fakenomad.Options{
		Drivers:     []string{"raw_exec", "exec", "docker"},
		Users:       map[string]fakenomad.Account{"codehub": {UID: 10100, GID: 10100}},
		HostVolumes: map[string]string{"codehub-homes": t.TempDir()},
	}})
	drivers := e.nodeDrivers(t)
	const probe = `grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs)' /proc/self/status; exec sleep 3600`
	for _, file := range []string{"workspace.nomad.hcl", "warm-pool.nomad.hcl"} {
		tmpl := parseJob(t, file)
		id := e.prefix + "caps-" + strings.TrimSuffix(file, ".nomad.hcl")
		tmpl.ID, tmpl.Name = &id, &id
		for _, g := range tmpl.TaskGroups {
			task := g.Tasks[0]
			task.Config["command"] = "/bin/sh"
			task.Config["args"] = []any{"-c", probe}
			task.Services = nil // the check asks an agent that is not there
			task.KillTimeout = new(2 * time.Second)
			task.Resources = &api.Resources{CPU: new(100), MemoryMB: new(64)}
		}
		if _, _, err := e.client.Jobs().Register(tmpl, &api.WriteOptions{Namespace: e.ns}); err != nil {
			t.Fatalf("register %s: %v", file, err)
		}
		orch := nomad.New(nomad.Config{Client: e.client, Namespace: e.ns, Job: id, WarmPoolJob: id, StopTimeout: 10 * time.Second}, e.log.Named(file))
		for _, g := range tmpl.TaskGroups {
			driver := g.Tasks[0].Driver
			t.Run(file+"/"+driver, func(t *testing.T) {
				pol := workspace.Policy{Name: "caps-" + driver, Driver: driver, MemoryMB: 64, CPUPercent: 10}
				switch {
				case !drivers[driver]:
					t.Skipf("no Nomad client here runs the %s driver", driver)
				case driver == "docker" && realNomad():
					pol.Image = os.Getenv("CODEHUB_TEST_WORKSPACE_IMAGE")
					if pol.Image == "" {
						t.Skip("set CODEHUB_TEST_WORKSPACE_IMAGE to an image with /bin/sh the Nomad client can pull")
					}
				}
				user := "u-caps"
				if file == "warm-pool.nomad.hcl" {
					user = ""
				}
				spec := newSpec(user, pol)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				l, err := orch.Start(ctx, spec, nil)
				if err != nil {
					t.Fatalf("the %s group does not start as shipped: %v", driver, err)
				}
				spec.Workspace.ExternalID = l.ExternalID
				defer func() { _ = orch.Stop(context.Background(), spec.Workspace) }()
				st := taskStatus(t, e.client, e.ns, l.Meta[nomad.MetaAllocID])
				for _, set := range []string{"CapEff", "CapPrm", "CapAmb", "CapBnd", "CapInh"} {
					if st[set] != "0000000000000000" {
						t.Errorf("%s = %s, want 0 (status %v)", set, st[set], st)
					}
				}
				t.Logf("a process of the %s task: %v", driver, st)
			})
		}
	}
}

// freePortNumber is a port nothing listens on.
func freePortNumber(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// taskStatus reads the status lines the probe printed into the agent
// task's log.
func taskStatus(t *testing.T, c *api.Client, ns, allocID string) map[string]string {
	t.Helper()
	a, _, err := c.Allocations().Info(allocID, &api.QueryOptions{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	statusRE := regexp.MustCompile(`(?m)^(\w+):\s+(\S+)$`)
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		r, err := c.AllocFS().Cat(a, "alloc/logs/"+nomad.TaskName+".stdout.0", &api.QueryOptions{Namespace: ns})
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(r)
		r.Close()
		last = string(b)
		out := map[string]string{}
		for _, m := range statusRE.FindAllStringSubmatch(last, -1) {
			out[m[1]] = m[2]
		}
		if out["CapBnd"] != "" {
			return out
		}
	}
	t.Fatalf("the task printed no status: %s", last)
	return nil
}

// nodeDrivers are the drivers some ready client offers.
func (e *testEnv) nodeDrivers(t *testing.T) map[string]bool {
	t.Helper()
	nodes, _, err := e.client.Nodes().List(nil)
	if err != nil {
		t.Fatalf("list Nomad's clients (node:read): %v", err)
	}
	out := map[string]bool{}
	for _, n := range nodes {
		if n.Status != "ready" {
			continue
		}
		for d, info := range n.Drivers {
			if info != nil && info.Detected && info.Healthy {
				out[d] = true
			}
		}
	}
	return out
}

// aclPolicyFile is the gateway's Nomad ACL policy as shipped.
const aclPolicyFile = "../../../policies/codehub-gateway.nomad-acl.hcl"

// TestACLPolicyGrantsWhatTheJobsUse: the policy parses, and grants every
// host volume the job files mount (write, or read for a read-only one).
func TestACLPolicyGrantsWhatTheJobsUse(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(aclPolicyFile)
	if err != nil {
		t.Fatal(err)
	}
	f, diags := hclsyntax.ParseConfig(src, aclPolicyFile, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	granted := map[string]string{}
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		if b.Type == "host_volume" {
			if a := b.Body.Attributes["policy"]; a != nil {
				v, _ := a.Expr.Value(nil)
				granted[b.Labels[0]] = v.AsString()
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(jobsDir, "*.nomad.hcl"))
	mounted := 0
	for _, file := range files {
		job, err := fakenomad.ParseJobFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range job.TaskGroups {
			for _, v := range g.Volumes {
				if v.Type != "host" {
					continue
				}
				mounted++
				want := "write"
				if v.ReadOnly {
					want = "read"
				}
				if got := granted[v.Source]; got != want && got != "write" {
					t.Errorf("%s group %s mounts the host volume %q; the policy grants it %q, want %q", filepath.Base(file), *g.Name, v.Source, got, want)
				}
			}
		}
	}
	if mounted == 0 {
		t.Error("no job mounts a host volume: the test checks nothing")
	}
}

// TestGatewayACLPolicy: with ACLs on, a token of the shipped policy does
// all the orchestrator does (register a policy's job, dispatch, follow,
// restart in place, stop, list), and registers the exec group's job with
// the homes' host volume; a policy without the host_volume rule is refused
// there. Against a real Nomad, NOMAD_TOKEN must be a management token.
func TestGatewayACLPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{fake: fakenomad.Options{Token: "management-" + randHex(8)}})
	if _, _, err := e.client.ACLPolicies().List(nil); err != nil {
		if realNomad() && strings.Contains(err.Error(), "ACL support disabled") {
			t.Skip("ACLs are off on this Nomad: there is no policy to check (the Terraform cluster turns them on)")
		}
		t.Fatalf("list ACL policies (the token must be a management token): %v", err)
	}
	tmplID := e.prefix + "acl-workspace"
	tmpl := testJob(t, tmplID)
	execGroup := *tmpl.TaskGroups[1]
	execGroup.Name, execGroup.Count = new("workspace-exec"), new(0)
	execGroup.Tasks = []*api.Task{agentTask(t, "exec")}
	execGroup.Volumes = map[string]*api.VolumeRequest{"homes": {Name: "homes", Type: "host", Source: "codehub-homes"}}
	execGroup.Tasks[0].VolumeMounts = []*api.VolumeMount{{Volume: new("homes"), Destination: new("/homes")}}
	tmpl.TaskGroups = append(tmpl.TaskGroups, &execGroup)
	if _, _, err := e.client.Jobs().Register(tmpl, &api.WriteOptions{Namespace: e.ns}); err != nil {
		t.Fatal(err)
	}

	src, err := os.ReadFile(aclPolicyFile)
	if err != nil {
		t.Fatal(err)
	}
	rules := string(src)
	if ns := e.ns; ns != "" && ns != "default" {
		rules = strings.Replace(rules, `namespace "default"`, fmt.Sprintf("namespace %q", ns), 1)
	}
	orchestrator := func(name, rules string) *nomad.Orchestrator {
		name = e.prefix + name
		if _, err := e.client.ACLPolicies().Upsert(&api.ACLPolicy{Name: name, Rules: rules}, nil); err != nil {
			t.Fatalf("apply the policy: %v", err)
		}
		tok, _, err := e.client.ACLTokens().Create(&api.ACLToken{Name: name, Type: "client", Policies: []string{name}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_, _ = e.client.ACLTokens().Delete(tok.AccessorID, nil)
			_, _ = e.client.ACLPolicies().Delete(name, nil)
		})
		return nomad.New(nomad.Config{Client: e.client, Namespace: e.ns, Token: tok.SecretID, Job: tmplID, WarmPoolJob: e.warm, StopTimeout: 10 * time.Second}, e.log.Named(name))
	}
	orch := orchestrator("gateway", rules)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := newSpec("u-acl", small)
	l, err := orch.Start(ctx, spec, nil)
	if err != nil {
		t.Fatalf("start with the policy's token: %v", err)
	}
	spec.Workspace.ExternalID, spec.Workspace.Meta, spec.Workspace.Address = l.ExternalID, l.Meta, l.Address
	waitHealthy(t, l.Address, spec.Workspace.Secret)
	if alive, err := orch.Alive(ctx, spec.Workspace); !alive || err != nil {
		t.Errorf("Alive: %v, %v", alive, err)
	}
	if _, err := orch.Recover(ctx, spec.Workspace, true, nil); err != nil {
		t.Errorf("restart in place with the policy's token: %v", err)
	}
	if _, err := orch.Reconcile(ctx, map[string]bool{l.ExternalID: true}); err != nil {
		t.Errorf("Reconcile: %v", err)
	}
	if err := orch.Stop(ctx, spec.Workspace); err != nil {
		t.Errorf("Stop: %v", err)
	}

	// An exec policy: its job mounts the homes. Whether a client can place
	// it is the cluster's business; the token must be let through.
	execPolicy := workspace.Policy{Name: "acl-exec", Driver: "exec", MemoryMB: 64, CPUPercent: 10}
	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancelShort()
	if _, err := orch.Start(short, newSpec("u-acl-exec", execPolicy), nil); err != nil && strings.Contains(err.Error(), "refused the gateway's token") {
		t.Errorf("an exec workspace with the policy's token: %v", err)
	}
	noVolume := regexp.MustCompile(`(?s)host_volume "codehub-homes" \{.*?\}`).ReplaceAllString(rules, "")
	without := orchestrator("gateway-without-volume", noVolume)
	execPolicy.Name = "acl-exec-2"
	if _, err := without.Start(short, newSpec("u-acl-exec", execPolicy), nil); err == nil || !strings.Contains(err.Error(), "refused the gateway's token") {
		t.Errorf("an exec workspace without host_volume in the policy: %v, want the token refused", err)
	}
}
