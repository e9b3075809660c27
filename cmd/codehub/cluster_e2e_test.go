package main

// End-to-end tests of the container strategy: a real gateway (run(), as
// main runs it) dispatches workspaces to Nomad and finds them through
// Consul; every workspace is the real `codehub agent` (this test binary)
// supervising the real code-server, and Consul's view of it comes from
// the health check script of jobs/workspace.nomad.hcl, run as Nomad runs
// it. Nomad, Consul and Vault are the in-repo fakes unless NOMAD_ADDR,
// CONSUL_HTTP_ADDR and VAULT_ADDR (with VAULT_TOKEN) name real agents;
// see cluster_helpers_test.go. What only the fakes can do (take capacity
// away, fail a driver, kill a task, stop Vault) is skipped against real
// agents, saying so.
//
// The tests do not run in parallel: each runs code-servers, and the
// figures they log are meant to be the machine's.
//
//	go test -count=1 -run TestCluster -v ./cmd/codehub

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/codehub-dev/codehub/internal/testenv"
	fakevault "github.com/codehub-dev/codehub/internal/testfake/vault"
	"github.com/codehub-dev/codehub/internal/workspace"
	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// TestClusterBrowserSignIn: a person signs in with Chromium; the gateway
// dispatches their workspace job, the agent registers in Consul through
// the job's service, the gateway resolves it there and VS Code's explorer
// shows their folder. The service carries the user's and the workspace's
// tags and a passing check; the gateway registered itself.
func TestClusterBrowserSignIn(t *testing.T) {
	e := newClusterEnv(t, clusterOptions{})
	c := e.config(clusterGateway{})
	const pw = "alice-password-1"
	createUser(t, c.File, "alice", pw)
	uid := listUsers(t, c.File)["alice"].ID
	e.prepareHome(uid)
	g := e.startGateway(c)

	// The gateway is in Consul, with a check that passes (Consul runs it
	// every 10s).
	registered := false
	for deadline := time.Now().Add(guard); !registered && time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		entries, _, err := e.cc.Health().Service(e.gatewayService, "", true, nil)
		for _, en := range entries {
			registered = registered || err == nil && en.Service.Address == "127.0.0.1" && en.Service.Port == c.Port
		}
	}
	if !registered {
		t.Fatalf("the gateway is not in Consul's %s service with a passing check", e.gatewayService)
	}

	bctx := testenv.Browser(t)
	ctx, cancel := context.WithTimeout(bctx, guard)
	defer cancel()
	if err := fillLogin(ctx, g, "alice", pw); err != nil {
		t.Fatalf("login page: %v", err)
	}
	nomadBefore := e.nomadCalls()
	metricsBefore := gatewayMetrics(t, g)
	began := time.Now()
	err := submitLogin(ctx)
	signIn := time.Since(began)
	if err != nil {
		testenv.Screenshot(t, bctx, "signin-failed")
		t.Fatalf("explorer after signing in: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`.explorer-folders-view .monaco-list-row[aria-label="hello-cluster.txt"]`))); err != nil {
		testenv.Screenshot(t, bctx, "no-file")
		t.Fatalf("the user's file in the explorer: %v", err)
	}
	testenv.Screenshot(t, bctx, "explorer")
	nomadAfter := e.nomadCalls()
	metricsAfter := gatewayMetrics(t, g)
	// Where the time went: until the workbench page's first byte (sign-in,
	// dispatch, the IDE starting, Consul seeing its check pass, the start
	// page's reloads), then in the browser.
	page := time.Duration(0)
	if first, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.timeOrigin + performance.getEntriesByType('navigation')[0].responseStart`)); err == nil {
		page = time.UnixMicro(int64(first * 1000)).Sub(began)
	}

	// The registry, Nomad and Consul agree on the workspace.
	w := e.workspaceOf(c, uid)
	if w.State != workspace.StateRunning || w.Orchestrator != "nomad" || w.ExternalID == "" {
		t.Fatalf("workspace record: %+v", w)
	}
	derived := e.job + "-default"
	if !strings.HasPrefix(w.ExternalID, derived+"/dispatch-"+w.ID+"-") {
		t.Errorf("job %q, want a dispatch of %s named after %s", w.ExternalID, derived, w.ID)
	}
	child, _, err := e.nc.Jobs().Info(w.ExternalID, e.query())
	if err != nil {
		t.Fatalf("the dispatched job: %v", err)
	}
	if child.Meta["user_id"] != uid || child.Meta["workspace_id"] != w.ID || child.Meta["username"] != "alice" || child.Meta["policy"] != "default" {
		t.Errorf("dispatch meta %v", child.Meta)
	}
	for k, v := range child.Meta {
		if strings.Contains(v, w.Secret) {
			t.Errorf("the workspace secret is in the job's meta %q", k)
		}
	}
	entries := e.instances("", "workspace-"+w.ID, false)
	if len(entries) != 1 {
		t.Fatalf("%d instances of %s tagged workspace-%s, want 1", len(entries), e.service, w.ID)
	}
	svc := entries[0].Service
	for _, tag := range []string{"user-" + uid, "workspace-" + w.ID, "policy-default"} {
		if !slices.Contains(svc.Tags, tag) {
			t.Errorf("service tags %q lack %q", svc.Tags, tag)
		}
	}
	if svc.Meta["user_id"] != uid || svc.Meta["workspace_id"] != w.ID || svc.Meta["alloc_id"] != w.Meta["alloc_id"] {
		t.Errorf("service meta %v, want user %s, workspace %s, allocation %s", svc.Meta, uid, w.ID, w.Meta["alloc_id"])
	}
	if ck := e.ideCheck(entries[0]); ck.Status != consulapi.HealthPassing {
		t.Errorf("check %q is %s (%s), want passing", ck.Name, ck.Status, ck.Output)
	}
	if addr := fmt.Sprintf("%s:%d", svc.Address, svc.Port); addr != w.Address {
		t.Errorf("Consul has the workspace at %s, the registry at %s", addr, w.Address)
	}

	// Figures.
	startup := sumMetric(metricsAfter, "code_server_container_startup_seconds_sum", `source="cold"`) -
		sumMetric(metricsBefore, "code_server_container_startup_seconds_sum", `source="cold"`)
	var audited float64
	if evs := eventsOf(auditEvents(t, c), audit.WorkspaceStarted, uid); len(evs) > 0 {
		audited, _ = evs[len(evs)-1].Metadata["seconds"].(float64)
	}
	consulBy := map[string]float64{}
	for _, ep := range []string{"health.service", "agent.service.register", "agent.service.deregister", "catalog.datacenters"} {
		if n := sumMetric(metricsAfter, "codehub_consul_api_calls_total", `endpoint="`+ep+`"`) -
			sumMetric(metricsBefore, "codehub_consul_api_calls_total", `endpoint="`+ep+`"`); n > 0 {
			consulBy[ep] = n
		}
	}
	nomadN, nomadBy := callsSince(nomadBefore, nomadAfter)
	nomadCalls := "not counted (a real Nomad)"
	if nomadAfter != nil {
		nomadCalls = fmt.Sprintf("%d %v", nomadN, nomadBy)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("FIGURE container strategy, Chromium sign-in to explorer: %s (workbench page after %s, then %s in the browser); dispatch to IDE ready (code_server_container_startup_seconds): %.2fs (audit event: %.2fs); per sign-in: Nomad API calls %s, Consul API calls by the gateway %v; %d CPUs, load %s",
		signIn.Round(time.Millisecond), page.Round(time.Millisecond), (signIn - page).Round(time.Millisecond), startup, audited,
		nomadCalls, consulBy, runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "))
}

// TestClusterShippedHealthCheck runs the Consul check of each shipped job
// (its command and arguments, as read from the file) against the real
// agent, with the environment Nomad gives a script check: it passes once
// the IDE runs, and fails with another workspace's secret. (The check
// used to send the secret only in X-Codehub-Workspace-Secret; the agent
// answers its own endpoints only to calls carrying X-Codehub-Agent-Control
// too, so no Nomad workspace ever passed its check and the gateway never
// routed to one.)
func TestClusterShippedHealthCheck(t *testing.T) {
	testenv.SkipShort(t)
	needCheckTools(t)
	cs := testenv.CodeServer(t)
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mkSecrets := func(name, secret string) string {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "agent-secret"), []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	secrets, other := mkSecrets("secrets", clusterSecret()), mkSecrets("other", clusterSecret())
	port := clusterFreePort(t)
	agent := exec.Command(bin, "agent", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--secret-file", filepath.Join(secrets, "agent-secret"),
		"--code-server", cs, "--user-data-dir", filepath.Join(dir, "home", "state"), "--extensions-dir", filepath.Join(dir, "home", "extensions"),
		"--folder", filepath.Join(dir, "home"), "--log-format", "json")
	var agentErr syncBuffer
	agent.Stderr = &agentErr
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = agent.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = agent.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = agent.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("agent stderr:\n%s", clusterTail(agentErr.String(), 40))
		}
	})
	for _, file := range []string{"workspace.nomad.hcl", "warm-pool.nomad.hcl"} {
		t.Run(file, func(t *testing.T) {
			check := shippedCheck(t, file)
			if check.Type != "script" {
				t.Fatalf("the check is of type %q, want script", check.Type)
			}
			probe := func(secretsDir string) (string, error) {
				// Nomad gives a script check its timeout; a machine this busy
				// gets more.
				ctx, cancel := context.WithTimeout(context.Background(), check.Timeout+10*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, check.Command, check.Args...)
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "NOMAD_SECRETS_DIR=" + secretsDir, fmt.Sprintf("NOMAD_PORT_http=%d", port)}
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			var lastOut string
			var lastErr error
			deadline := time.Now().Add(guard)
			for {
				lastOut, lastErr = probe(secrets)
				if lastErr == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the shipped check never passed against the running agent: %v %s", lastErr, lastOut)
				}
				time.Sleep(250 * time.Millisecond)
			}
			// Refused: critical (exit 2), not Consul's "warning" (1),
			// which would still get traffic.
			var ee *exec.ExitError
			if out, err := probe(other); !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("the check with another workspace's secret: %v %s, want exit status 2", err, out)
			}
		})
	}
}

// cutAndResume makes the workspace's Consul check critical and checks
// that the gateway stops sending it traffic at once (the editor's requests
// get 503 workspace_starting, a page load the start page), without a
// restart; then the shipped check, running again, passes and traffic
// resumes to the same workspace.
func cutAndResume(t *testing.T, e *clusterEnv, g *testGateway, c clusterGateway, token, ideURL, uid, dc string) {
	t.Helper()
	w := e.workspaceOf(c, uid)
	entries := e.instances(dc, "workspace-"+w.ID, true)
	if len(entries) != 1 {
		t.Fatalf("%d passing instances of workspace %s in %q, want 1", len(entries), w.ID, dc)
	}
	check := e.ideCheck(entries[0])
	critical := func() {
		var err error
		if e.consul != nil {
			agentDC := dc
			if agentDC == "" {
				agentDC = e.opts.ConsulDCs[0]
			}
			err = e.consul.SetCheckStatus(agentDC, check.CheckID, consulapi.HealthCritical, "made critical by the test")
		} else {
			err = e.agentOf(dc).Agent().UpdateTTLOpts(check.CheckID, "made critical by the test", consulapi.HealthCritical, nil)
		}
		if err != nil {
			t.Fatalf("make the check critical: %v", err)
		}
	}
	editor := func() reply {
		return do(t, http.MethodGet, ideURL, nil, "Cookie", sessionCookie(token), "Accept", "*/*")
	}
	if r := editor(); r.Status != http.StatusOK {
		t.Fatalf("the editor before the cut: %d %.200q", r.Status, r.Body)
	}
	// The shipped check runs every few seconds and may set the check
	// back to passing at any moment: set it critical until the gateway
	// is seen refusing.
	var refused reply
	eventually(t, guard, "the gateway to stop routing to a workspace whose check is critical", func() bool {
		critical()
		until := time.Now().Add(time.Second)
		for time.Now().Before(until) {
			if r := editor(); r.Status != http.StatusOK {
				refused = r
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	})
	if refused.Status != http.StatusServiceUnavailable || refused.errorBody(t).Error.Code != "workspace_starting" {
		t.Errorf("the editor while the check is critical: %d %.300q, want 503 workspace_starting", refused.Status, refused.Body)
	}
	page := clusterNavigate(t, g.URL+"/", token)
	if page.Status == http.StatusServiceUnavailable {
		if !strings.Contains(string(page.Body), "Starting your workspace") || !strings.Contains(string(page.Body), "health check") {
			t.Errorf("the start page while the check is critical does not say why: %.1000s", page.Body)
		}
	} else if page.Status != http.StatusFound {
		t.Errorf("a page load while the check is critical: %d %.300q", page.Status, page.Body)
	}
	// The check passes again by itself: the same workspace serves again.
	eventually(t, guard, "traffic to resume once the check passes again", func() bool { return editor().Status == http.StatusOK })
	after := e.workspaceOf(c, uid)
	if after.ExternalID != w.ExternalID || after.Restarts != w.Restarts {
		t.Errorf("a critical check restarted the workspace: before %s (%d restarts), after %s (%d)", w.ExternalID, w.Restarts, after.ExternalID, after.Restarts)
	}
}

// TestClusterUnhealthyWorkspaceGetsNoTraffic: a workspace whose Consul
// check turns critical gets no more requests until it passes again; one
// whose task dies is taken out of traffic, restarted by the manager, and
// serves again. No request hangs, and none is sent to the dead address.
func TestClusterUnhealthyWorkspaceGetsNoTraffic(t *testing.T) {
	e := newClusterEnv(t, clusterOptions{})
	c := e.config(clusterGateway{})
	const pw = "alice-password-1"
	createUser(t, c.File, "alice", pw)
	uid := listUsers(t, c.File)["alice"].ID
	e.prepareHome(uid)
	g := e.startGateway(c)
	tok := mustFormLogin(t, g, "alice", pw)
	_, ideURL := clusterOpenIDE(t, g, tok)

	t.Run("critical check", func(t *testing.T) {
		cutAndResume(t, e, g, c, tok, ideURL, uid, "")
	})

	t.Run("killed task", func(t *testing.T) {
		e.needFake(t, "killing a workspace's task")
		w := e.workspaceOf(c, uid)
		editor := func() reply { return do(t, http.MethodGet, ideURL, nil, "Cookie", sessionCookie(tok), "Accept", "*/*") }
		if r := editor(); r.Status != http.StatusOK {
			t.Fatalf("the editor before the kill: %d", r.Status)
		}
		killed := time.Now()
		if err := e.nomad.KillTask(w.Meta["alloc_id"], "agent"); err != nil {
			t.Fatal(err)
		}
		// Until the gateway first refuses, a request may still have been
		// on its way to the agent as it died (502). From then on, every
		// answer is a refusal (503) until the restarted workspace serves.
		var (
			seen         []string
			refusedAt    time.Time
			resumed      time.Duration
			slowest      time.Duration
			after502     int
			phases       = map[string]bool{}
			lastProgress string
		)
		for {
			if time.Since(killed) > guard {
				t.Fatalf("the workspace did not serve again within %s; answers %v", guard, seen)
			}
			began := time.Now()
			r := editor()
			slowest = max(slowest, time.Since(began))
			code := ""
			if r.Status != http.StatusOK {
				code = r.errorBody(t).Error.Code
			}
			if len(seen) == 0 || seen[len(seen)-1] != fmt.Sprint(r.Status, code) {
				seen = append(seen, fmt.Sprint(r.Status, code))
			}
			if r.Status == http.StatusOK && !refusedAt.IsZero() {
				resumed = time.Since(killed)
				break
			}
			if r.Status == http.StatusServiceUnavailable && refusedAt.IsZero() {
				refusedAt = time.Now()
			}
			if r.Status == http.StatusBadGateway && !refusedAt.IsZero() {
				after502++
			}
			if st := myWorkspace(t, g, tok); st.Progress != nil && st.Progress.Phase != lastProgress {
				lastProgress = st.Progress.Phase
				phases[string(st.State)+": "+lastProgress] = true
			}
			time.Sleep(100 * time.Millisecond)
		}
		if after502 > 0 {
			t.Errorf("%d requests were sent to the dead workspace after the gateway had taken it out of traffic: %v", after502, seen)
		}
		// Restarted in place by the job's restart policy: the same job,
		// allocation and address; no new dispatch. The manager counts the
		// restart when its health check saw the agent down (Nomad may have
		// restarted it between two checks).
		restarted := e.workspaceOf(c, uid)
		if restarted.ID != w.ID || restarted.Restarts > w.Restarts+1 || restarted.ExternalID != w.ExternalID ||
			restarted.Address != w.Address || restarted.Meta["alloc_id"] != w.Meta["alloc_id"] {
			t.Errorf("after the crash: workspace %s, job %s at %s, %d restarts; before %s, job %s at %s, %d restarts",
				restarted.ID, restarted.ExternalID, restarted.Address, restarted.Restarts, w.ID, w.ExternalID, w.Address, w.Restarts)
		}
		if e.jobGone(w.ExternalID) {
			t.Errorf("the workspace's job %s was stopped: a crash is recovered in place", w.ExternalID)
		}
		t.Logf("FIGURE killed task, restarted in place: taken out of traffic after %s, serving again after %s (answers %v; slowest answer %s; progress shown %v)",
			refusedAt.Sub(killed).Round(time.Millisecond), resumed.Round(time.Millisecond), seen, slowest.Round(time.Millisecond), slices.Sorted(maps.Keys(phases)))
	})
}

// TestClusterCapacityAndDriverFailure: a workspace Nomad has no room for
// waits, and the person waiting is told so; it starts once room frees. A
// workspace whose image cannot be pulled fails with that reason, once, in
// the API and in the audit log, and is not started again and again.
func TestClusterCapacityAndDriverFailure(t *testing.T) {
	e := newClusterEnv(t, clusterOptions{})
	e.needFake(t, "running out of capacity and failing a driver")
	c := e.config(clusterGateway{MemoryMB: 256, CPUPercent: 50})
	const pw = "a-password-123"
	createUser(t, c.File, "alice", pw)
	createUser(t, c.File, "bob", pw)
	users := listUsers(t, c.File)
	alice, bob := users["alice"].ID, users["bob"].ID
	e.prepareHome(alice)
	e.prepareHome(bob)
	g := e.startGateway(c)

	t.Run("capacity", func(t *testing.T) {
		e.nomad.SetCapacity(200, 128) // the workspace asks 500 MHz and 256 MB
		tok := mustFormLogin(t, g, "alice", pw)
		if r := clusterNavigate(t, g.URL+"/", tok); r.Status != http.StatusServiceUnavailable {
			t.Fatalf("first page load without capacity: %d %.300q", r.Status, r.Body)
		}
		var st workspaceStatus
		eventually(t, guard, "the workspace API to say it waits for capacity", func() bool {
			st = myWorkspace(t, g, tok)
			return st.Progress != nil && strings.HasPrefix(st.Progress.Phase, "Waiting for capacity")
		})
		if st.State != workspace.StateStarting || !strings.Contains(st.Progress.Phase, "position 1 in Nomad's queue") {
			t.Errorf("while queued: state %s, phase %q", st.State, st.Progress.Phase)
		}
		if page := clusterNavigate(t, g.URL+"/", tok); page.Status != http.StatusServiceUnavailable || !strings.Contains(string(page.Body), "Waiting for capacity") {
			t.Errorf("the start page while queued: %d %.600q", page.Status, page.Body)
		}
		w := e.workspaceOf(c, alice)
		if w.ExternalID != "" {
			t.Errorf("a queued workspace has a job recorded: %+v", w)
		}
		t.Logf("while queued: %s, %q", st.State, st.Progress.Phase)

		raised := time.Now()
		e.nomad.SetCapacity(0, 0)
		clusterOpenIDE(t, g, tok)
		t.Logf("FIGURE capacity freed to IDE served: %s", time.Since(raised).Round(time.Millisecond))
		if w := e.workspaceOf(c, alice); w.State != workspace.StateRunning {
			t.Errorf("after capacity freed: %+v", w)
		}
	})

	t.Run("image pull failure", func(t *testing.T) {
		e.nomad.SetDriverFailure(func(job *nomadapi.Job, task *nomadapi.Task) error {
			if job.Meta["user_id"] == bob {
				return fmt.Errorf("Failed to pull `%s`: manifest unknown", job.Meta["image"])
			}
			return nil
		})
		defer e.nomad.SetDriverFailure(nil)
		tok := mustFormLogin(t, g, "bob", pw)
		before := e.nomadCalls()
		first := clusterNavigate(t, g.URL+"/", tok)
		var st workspaceStatus
		eventually(t, guard, "bob's workspace to fail", func() bool {
			st = myWorkspace(t, g, tok)
			return st.State == workspace.StateFailed
		})
		if st.Progress == nil || !strings.Contains(st.Progress.Error, "image could not be pulled") || !strings.Contains(st.Progress.Error, "manifest unknown") {
			t.Errorf("failed workspace: progress %+v", st.Progress)
		}
		if first.Status != http.StatusServiceUnavailable {
			t.Errorf("the page load that started the failing workspace: %d %.300q, want the start page", first.Status, first.Body)
		}
		t.Logf("the API says: state %s, phase %q, error %q", st.State, st.Progress.Phase, st.Progress.Error)
		var failed []audit.Event
		eventually(t, 30*time.Second, "a workspace.failed audit event", func() bool {
			failed = eventsOf(auditEvents(t, c), audit.WorkspaceFailed, bob)
			return len(failed) > 0
		})
		if msg, _ := failed[0].Metadata["error"].(string); !strings.Contains(msg, "manifest unknown") || failed[0].Status != audit.StatusFailure {
			t.Errorf("audit event %+v", failed[0])
		}
		if w := e.workspaceOf(c, bob); w.ExternalID != "" && !e.jobGone(w.ExternalID) {
			t.Errorf("the failed workspace's job %s is still there", w.ExternalID)
		}
		for _, j := range e.childJobs(e.job) {
			if strings.Contains(j.ID, "/dispatch-"+e.workspaceOf(c, bob).ID+"-") {
				t.Errorf("a job of the failed workspace is left in Nomad: %s (%s)", j.ID, j.Status)
			}
		}

		// Left alone, nothing starts it again: two health rounds later
		// there was one dispatch.
		time.Sleep(12 * time.Second)
		_, by := callsSince(before, e.nomadCalls())
		if n := by[fakenomadRouteDispatch]; n != 1 {
			t.Errorf("%d dispatches for one failed start left alone, want 1", n)
		}

		// A person staring at the start page (it reloads every second)
		// does not turn it into a dispatch a second: after one immediate
		// retry, retries back off.
		before = e.nomadCalls()
		const loads = 20
		var answers []string
		for range loads {
			r := clusterNavigate(t, g.URL+"/", tok)
			answers = append(answers, fmt.Sprint(r.Status))
			if r.Status != http.StatusServiceUnavailable {
				t.Errorf("a page load of a workspace that failed to start: %d %.300q, want the start page", r.Status, r.Body)
			} else if !strings.Contains(string(r.Body), "could not be pulled") {
				t.Errorf("the start page after the failure does not say why: %.1000s", r.Body)
			}
			time.Sleep(time.Second)
		}
		_, by = callsSince(before, e.nomadCalls())
		n := by[fakenomadRouteDispatch]
		t.Logf("FIGURE %d page loads over %ds after an image pull failure: %d dispatches (answers %v)", loads, loads, n, answers)
		if n >= loads/2 {
			t.Errorf("%d page loads dispatched the failing workspace %d times: a retry loop", loads, n)
		}
		st = myWorkspace(t, g, tok)
		if st.State != workspace.StateFailed || st.Progress == nil || !strings.Contains(st.Progress.Error, "manifest unknown") {
			t.Errorf("after the retries: state %s, progress %+v", st.State, st.Progress)
		}
	})
}

// fakenomadRouteDispatch is the fake Nomad's dispatch route.
const fakenomadRouteDispatch = "PUT /v1/job/{id}/dispatch"

// clusterFormLogin signs in with the login form (safe in any goroutine)
// and returns the session token.
func clusterFormLogin(base, username, pw string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: guard, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(base + "/login")
	if err != nil {
		return "", err
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRE.FindSubmatch(page)
	if m == nil {
		return "", errors.New("no CSRF token on the login page")
	}
	resp, err = c.PostForm(base+"/login", url.Values{"csrf": {string(m[1])}, "username": {username}, "password": {pw}, "to": {"/"}})
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "codehub_session" && ck.MaxAge >= 0 {
			return ck.Value, nil
		}
	}
	return "", fmt.Errorf("sign-in of %s: %s, no session", username, resp.Status)
}

// clusterOpenIDEAsync is clusterOpenIDE for another goroutine.
func clusterOpenIDEAsync(base, token string) (time.Duration, error) {
	c := &http.Client{Timeout: guard, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) (int, http.Header, string, error) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		req.Header.Set("Cookie", sessionCookie(token))
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b), nil
	}
	start := time.Now()
	for time.Since(start) < guard {
		code, h, body, err := get(base + "/")
		if err != nil {
			return 0, err
		}
		switch code {
		case http.StatusFound:
			loc, err := url.Parse(h.Get("Location"))
			if err != nil {
				return 0, err
			}
			code, _, body, err = get(base + "/?" + loc.RawQuery)
			if err != nil {
				return 0, err
			}
			if code == http.StatusOK && strings.Contains(body, "workbench") {
				return time.Since(start), nil
			}
		case http.StatusServiceUnavailable:
		default:
			return 0, fmt.Errorf("GET /: %d %.300q", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("the IDE did not load within %s", guard)
}

// TestClusterWarmPoolTwoGateways: with a warm pool of one, a warm
// workspace is dispatched from the warm-pool job before anyone signs in.
// Two people sign in at the same moment on two gateways sharing one
// PostgreSQL database: exactly one gets the warm workspace, the other a
// cold one, and the pool is refilled.
func TestClusterWarmPoolTwoGateways(t *testing.T) {
	pg := testPostgres(t)
	e := newClusterEnv(t, clusterOptions{})
	ca := e.config(clusterGateway{Postgres: pg, WarmPool: 1})
	cb := e.config(clusterGateway{Postgres: pg, WarmPool: 1})
	const pw = "a-password-123"
	createUser(t, ca.File, "alice", pw)
	createUser(t, ca.File, "bob", pw)
	users := listUsers(t, ca.File)
	for _, u := range users {
		e.prepareHome(u.ID)
	}
	ga := e.startGateway(ca)

	var warm *workspace.Workspace
	eventually(t, guard, "a warm workspace to run before anyone signs in", func() bool {
		for _, w := range e.warmWorkspaces(ca) {
			if w.State == workspace.StateRunning {
				warm = w
				return true
			}
		}
		return false
	})
	if !strings.HasPrefix(warm.ExternalID, e.warmJob+"-default/dispatch-"+warm.ID+"-") {
		t.Errorf("the warm workspace's job is %q, want a dispatch of %s-default", warm.ExternalID, e.warmJob)
	}
	eventually(t, guard, "the warm workspace to pass its check in Consul", func() bool {
		entries := e.instances("", "workspace-"+warm.ID, true)
		return len(entries) == 1 && slices.Contains(entries[0].Service.Tags, "warm")
	})
	gb := e.startGateway(cb)
	// Both gateways' managers have looked at the pool: still one.
	time.Sleep(2 * time.Second)
	if n := len(e.warmWorkspaces(ca)); n != 1 {
		t.Errorf("%d warm workspaces with two gateways and a pool of one", n)
	}

	type result struct {
		name string
		d    time.Duration
		err  error
	}
	res := make([]result, 2)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i, p := range []struct {
		name string
		g    *testGateway
	}{{"alice", ga}, {"bob", gb}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			began := time.Now()
			tok, err := clusterFormLogin(p.g.URL, p.name, pw)
			if err == nil {
				_, err = clusterOpenIDEAsync(p.g.URL, tok)
			}
			res[i] = result{p.name, time.Since(began), err}
		}()
	}
	close(gate)
	wg.Wait()
	for _, r := range res {
		if r.err != nil {
			t.Fatalf("%s: %v", r.name, r.err)
		}
	}
	wa, wb := e.workspaceOf(ca, users["alice"].ID), e.workspaceOf(ca, users["bob"].ID)
	var warmUser, coldUser string
	var warmD, coldD time.Duration
	switch {
	case wa.ID == warm.ID && wb.ID != warm.ID:
		warmUser, coldUser, warmD, coldD = "alice", "bob", res[0].d, res[1].d
	case wb.ID == warm.ID && wa.ID != warm.ID:
		warmUser, coldUser, warmD, coldD = "bob", "alice", res[1].d, res[0].d
	default:
		t.Fatalf("alice got %s, bob %s; the warm one was %s: want exactly one of them to have it", wa.ID, wb.ID, warm.ID)
	}
	cold := e.workspaceOf(ca, users[coldUser].ID)
	if !strings.HasPrefix(cold.ExternalID, e.job+"-default/dispatch-") {
		t.Errorf("%s's cold workspace runs %q, want a dispatch of %s-default", coldUser, cold.ExternalID, e.job)
	}
	// Audit: the claim as a warm start, the other as a cold one.
	var sources []string
	for _, c := range []clusterGateway{ca, cb} {
		for _, ev := range eventsOf(auditEvents(t, c), audit.WorkspaceStarted, "") {
			sources = append(sources, fmt.Sprint(ev.Metadata["source"]))
		}
	}
	slices.Sort(sources)
	if !slices.Equal(sources, []string{"cold", "warm"}) {
		t.Errorf("workspace.started events with sources %v, want one cold and one warm", sources)
	}

	// The pool refills, once.
	var refill *workspace.Workspace
	eventually(t, guard, "the warm pool to refill", func() bool {
		for _, w := range e.warmWorkspaces(ca) {
			if w.State == workspace.StateRunning && w.ID != warm.ID {
				refill = w
				return true
			}
		}
		return false
	})
	time.Sleep(6 * time.Second) // a health round of both gateways
	var left []string
	for _, w := range e.warmWorkspaces(ca) {
		left = append(left, w.ID+" "+string(w.State))
	}
	if len(left) != 1 {
		t.Errorf("unclaimed workspaces after the refill: %v, want only %s", left, refill.ID)
	}
	t.Logf("FIGURE sign-in to IDE served, at the same moment on two gateways: warm claim (%s) %s, cold start (%s) %s",
		warmUser, warmD.Round(time.Millisecond), coldUser, coldD.Round(time.Millisecond))
}

// TestClusterVault: a gateway whose user database credentials come from
// Vault's database engine and whose access tokens Vault's transit engine
// signs. Sign-in works; tokens carry the transit key's version as kid;
// after a rotation new tokens carry the new one and the old ones still
// verify. With Vault down, sessions and tokens keep working and a new API
// sign-in is refused with a clear 503, not a 500; with Vault back,
// everything works again.
func TestClusterVault(t *testing.T) {
	vdb := fakevault.NewTestDatabase(t) // skips without PostgreSQL
	venv := fakevault.Target(t)
	root := venv.Client(t)
	// Engines of the test's own, disabled at its end (which revokes the
	// gateway's database users): a dev Vault mounts neither.
	transit, database := venv.Mount(t, "transit"), venv.Mount(t, "database")
	role := "codehub-" + randomHex(t, 3)
	vdb.Configure(t, root, database, role, time.Hour, 2*time.Hour)
	key := "codehub-jwt-" + randomHex(t, 3)
	if _, err := root.Logical().Write(transit+"/keys/"+key, map[string]any{"type": "ed25519"}); err != nil {
		t.Fatalf("create the transit key: %v", err)
	}
	front := fakevault.StartPasswordFront(t, fakevault.PostgresAdminDSN())
	e := newClusterEnv(t, clusterOptions{})
	c := e.config(clusterGateway{Postgres: front.DSN(vdb.Name),
		Vault: &clusterVault{Addr: venv.Addr, Token: venv.Token, TransitMount: transit, TransitKey: key,
			DBMount: database, DBRole: role}})
	const pw = "alice-password-1"
	createUser(t, c.File, "alice", pw)
	uid := listUsers(t, c.File)["alice"].ID
	e.prepareHome(uid)
	g := e.startGateway(c)

	// The gateway's database users are Vault's, logged in through the
	// password-checking front.
	admin, err := sql.Open("pgx", vdb.AdminDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var dbUsers []string
	eventually(t, guard, "the gateway's connections to the database", func() bool {
		rows, err := admin.Query(`SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = $1 AND usename <> current_user`, vdb.Name)
		if err != nil {
			return false
		}
		defer rows.Close()
		dbUsers = nil
		for rows.Next() {
			var u string
			if rows.Scan(&u) == nil {
				dbUsers = append(dbUsers, u)
			}
		}
		return len(dbUsers) > 0
	})
	for _, u := range dbUsers {
		if !strings.HasPrefix(u, "v-") || front.Logins(u) == 0 {
			t.Errorf("database user %q (%d logins through the front): want a Vault-issued user", u, front.Logins(u))
		}
	}

	tok := mustFormLogin(t, g, "alice", pw)
	clusterOpenIDE(t, g, tok)
	p1 := apiLogin(t, g, "alice", pw)
	if kid := jwtKid(t, p1.AccessToken); kid != key+"-v1" {
		t.Errorf("access token kid %q, want %s-v1", kid, key)
	}

	if _, err := root.Logical().Write(transit+"/keys/"+key+"/rotate", nil); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	p2 := apiLogin(t, g, "alice", pw)
	if kid := jwtKid(t, p2.AccessToken); kid != key+"-v2" {
		t.Errorf("access token after the rotation: kid %q, want %s-v2", kid, key)
	}
	for i, p := range []tokenPair{p1, p2} {
		if r, who := getMe(t, g, bearer(p.AccessToken)...); r.Status != http.StatusOK || who.User.ID != uid {
			t.Errorf("token %d after the rotation: %d %s", i+1, r.Status, r.Body)
		}
	}

	t.Run("vault down", func(t *testing.T) {
		venv.NeedFake(t, "making Vault unreachable")
		venv.Fake.Down()
		defer venv.Fake.Up()
		for i, p := range []tokenPair{p1, p2} {
			if r, _ := getMe(t, g, bearer(p.AccessToken)...); r.Status != http.StatusOK {
				t.Errorf("token %d with Vault down: %d %s", i+1, r.Status, r.Body)
			}
		}
		if r, _ := getMe(t, g, "Cookie", sessionCookie(tok)); r.Status != http.StatusOK {
			t.Errorf("the browser session with Vault down: %d %s", r.Status, r.Body)
		}
		clusterOpenIDE(t, g, tok)
		r := postJSON(t, g.URL+"/api/v1/auth/login", map[string]string{"username": "alice", "password": pw})
		if r.Status == http.StatusInternalServerError || r.Status == http.StatusOK {
			t.Errorf("API sign-in with Vault down: %d %s, want a clear refusal", r.Status, r.Body)
		} else if e := r.errorBody(t); r.Status != http.StatusServiceUnavailable {
			t.Errorf("API sign-in with Vault down: %d %+v, want 503", r.Status, e)
		} else {
			t.Logf("API sign-in with Vault down: %d %q", r.Status, e.Error.Message)
		}
		r = postJSON(t, g.URL+"/api/v1/auth/refresh", map[string]string{"refresh_token": p2.RefreshToken})
		if r.Status == http.StatusInternalServerError {
			t.Errorf("token refresh with Vault down: 500 %s", r.Body)
		}
		t.Logf("token refresh with Vault down: %d %s", r.Status, strings.Join(strings.Fields(string(r.Body)), " "))
		resp, formTok := formLogin(t, g, "alice", pw)
		if resp.StatusCode == http.StatusInternalServerError {
			t.Errorf("form sign-in with Vault down: 500")
		}
		t.Logf("form sign-in with Vault down: %d (session %t)", resp.StatusCode, formTok != "")

		venv.Fake.Up()
		var p3 tokenPair
		eventually(t, guard, "API sign-in to work again with Vault back", func() bool {
			r := postJSON(t, g.URL+"/api/v1/auth/login", map[string]string{"username": "alice", "password": pw})
			return r.Status == http.StatusOK && json.Unmarshal(r.Body, &p3) == nil
		})
		if kid := jwtKid(t, p3.AccessToken); kid != key+"-v2" {
			t.Errorf("access token with Vault back: kid %q, want %s-v2", kid, key)
		}
		if r, _ := getMe(t, g, bearer(p3.AccessToken)...); r.Status != http.StatusOK {
			t.Errorf("a new token with Vault back: %d", r.Status)
		}
		if r := postJSON(t, g.URL+"/api/v1/auth/refresh", map[string]string{"refresh_token": p2.RefreshToken}); r.Status != http.StatusOK {
			t.Errorf("refresh with Vault back: %d %s", r.Status, r.Body)
		}
	})
}

// TestClusterSecondDatacenter: a policy that puts workspaces in dc2 makes
// the gateway (whose Consul agent is dc1's) find them through Consul's
// dc parameter; the workspace's service exists only in dc2's catalog.
//
// Consul is two real dev agents joined over the WAN, started by the test,
// wherever a consul binary is at hand (PATH, CONSUL_BIN), else the fake's
// two datacenters; the workspace runs on the fake Nomad's node in dc2. A
// real cluster with a Nomad client in a second datacenter is used instead
// when NOMAD_ADDR, CONSUL_HTTP_ADDR, CODEHUB_CONSUL_DC2 (its name) and
// CODEHUB_CONSUL_DC2_ADDR (that client's Consul agent) are set.
func TestClusterSecondDatacenter(t *testing.T) {
	dc2 := "dc2"
	o := clusterOptions{ConsulDCs: []string{"dc1", dc2}, NodeDC: dc2}
	if name := os.Getenv("CODEHUB_CONSUL_DC2"); name != "" && clusterRealNomad() && clusterRealConsul() {
		dc2 = name
		addr := os.Getenv("CODEHUB_CONSUL_DC2_ADDR")
		if addr == "" {
			t.Fatal("CODEHUB_CONSUL_DC2 needs CODEHUB_CONSUL_DC2_ADDR: the Consul agent of the Nomad client in " + dc2)
		}
		o.ConsulAddrs = map[string]string{dc2: addr}
	} else {
		bin, err := testenv.ConsulBinary()
		switch {
		case err != nil:
			t.Fatal(err)
		case bin != "":
			agents := testenv.StartConsulAgents(t, o.ConsulDCs...)
			o.GatewayConsul = agents.Addr("dc1")
			o.ConsulAddrs = map[string]string{"dc1": agents.Addr("dc1"), dc2: agents.Addr(dc2)}
		case clusterRealNomad() || clusterRealConsul():
			t.Skip("no consul binary (on PATH, or CONSUL_BIN) to start a second datacenter, and no CODEHUB_CONSUL_DC2 " +
				"(with CODEHUB_CONSUL_DC2_ADDR) naming one of the real cluster's")
		}
		// A real Nomad's clients are in the datacenters of their own
		// agents, not in this one.
		o.FakeNomad = true
	}
	e := newClusterEnv(t, o)
	policies := t.TempDir()
	if err := os.WriteFile(filepath.Join(policies, "default.hcl"), []byte(fmt.Sprintf(`policy "default" {
  cpu             = 50
  memory          = "256MiB"
  pids            = 2048
  storage         = "100MiB"
  max_sessions    = 100
  max_connections = 100
  idle_timeout    = "0"
  datacenter      = %q
}
`, dc2)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := e.config(clusterGateway{Policies: policies})
	const pw = "alice-password-1"
	createUser(t, c.File, "alice", pw)
	uid := listUsers(t, c.File)["alice"].ID
	e.prepareHome(uid)
	g := e.startGateway(c)
	tok := mustFormLogin(t, g, "alice", pw)
	d, ideURL := clusterOpenIDE(t, g, tok)

	w := e.workspaceOf(c, uid)
	if w.Meta["datacenter"] != dc2 {
		t.Errorf("the workspace's datacenter is %q, want %s", w.Meta["datacenter"], dc2)
	}
	job, _, err := e.nc.Jobs().Info(e.job+"-default", e.query())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(job.Datacenters, []string{dc2}) {
		t.Errorf("the policy's job runs in %q, want [%s]", job.Datacenters, dc2)
	}
	if n := len(e.instances("", "workspace-"+w.ID, false)); n != 0 {
		t.Errorf("the workspace's service is in the gateway's datacenter too (%d instances)", n)
	}
	if n := len(e.instances(dc2, "workspace-"+w.ID, true)); n != 1 {
		t.Errorf("%d passing instances in %s, want 1", n, dc2)
	}
	if e.consul != nil {
		// The gateway asked its own agent, with ?dc=: dc2's agent saw no
		// health query.
		if n := e.consul.Requests(dc2, "GET /v1/health/service/"); n != 0 {
			t.Errorf("dc2's agent was asked %d health queries directly", n)
		}
	}
	t.Logf("IDE served from %s in %s", dc2, d.Round(time.Millisecond))
	// Traffic follows dc2's check.
	cutAndResume(t, e, g, c, tok, ideURL, uid, dc2)
}

// TestClusterGatewayRestart: a gateway stopped and started again on the
// same database re-attaches to the workspace still running in Nomad (no
// new dispatch; the old session reaches the same IDE), and stops a
// workspace job that was dispatched but never recorded.
func TestClusterGatewayRestart(t *testing.T) {
	e := newClusterEnv(t, clusterOptions{})
	c := e.config(clusterGateway{})
	const pw = "alice-password-1"
	createUser(t, c.File, "alice", pw)
	uid := listUsers(t, c.File)["alice"].ID
	e.prepareHome(uid)
	g := e.startGateway(c)
	tok := mustFormLogin(t, g, "alice", pw)
	clusterOpenIDE(t, g, tok)
	before := e.workspaceOf(c, uid)

	// A job a gateway dispatched and died before recording.
	orphanWS := "ws-" + randomHex(t, 6)
	resp, _, err := e.nc.Jobs().DispatchOpts(&nomadapi.DispatchOptions{
		JobID:   e.job + "-default",
		Meta:    map[string]string{"user_id": "orphan", "workspace_id": orphanWS, "policy": "default"},
		Payload: []byte(clusterSecret()), IdPrefixTemplate: orphanWS,
	}, e.write())
	if err != nil {
		t.Fatalf("dispatch an orphan: %v", err)
	}
	orphan := resp.DispatchedJobID
	e.runningAlloc(orphan)

	if err := g.stop(); err != nil {
		t.Fatalf("stop the gateway: %v", err)
	}
	if entries, _, err := e.cc.Health().Service(e.gatewayService, "", false, nil); err != nil || len(entries) != 0 {
		t.Errorf("after the stop the gateway is still in Consul: %d instances (%v)", len(entries), err)
	}
	e.runningAlloc(before.ExternalID) // the workspace outlives its gateway

	nomadBefore := e.nomadCalls()
	restarted := time.Now()
	g2 := e.startGateway(c)
	eventually(t, guard, "the orphaned job to be stopped", func() bool { return e.jobGone(orphan) })
	d, _ := clusterOpenIDE(t, g2, tok)
	after := e.workspaceOf(c, uid)
	if after.ID != before.ID || after.ExternalID != before.ExternalID || after.Restarts != before.Restarts || after.State != workspace.StateRunning {
		t.Errorf("after the restart: workspace %s job %s (%d restarts, %s); before %s job %s (%d restarts)",
			after.ID, after.ExternalID, after.Restarts, after.State, before.ID, before.ExternalID, before.Restarts)
	}
	if e.nomad != nil {
		_, by := callsSince(nomadBefore, e.nomadCalls())
		if by[fakenomadRouteDispatch] != 0 {
			t.Errorf("the restarted gateway dispatched %d jobs", by[fakenomadRouteDispatch])
		}
	}
	for _, j := range e.childJobs(e.job) {
		if j.ID != before.ExternalID {
			t.Errorf("workspace job %s (%s) runs besides %s", j.ID, j.Status, before.ExternalID)
		}
	}
	eventually(t, guard, "the orphan's service to leave Consul", func() bool {
		return len(e.instances("", "workspace-"+orphanWS, false)) == 0
	})
	t.Logf("FIGURE gateway restart to the old session's IDE served again: %s (IDE load %s)",
		time.Since(restarted).Round(time.Millisecond), d.Round(time.Millisecond))
}
