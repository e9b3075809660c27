package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/config"
)

// TestWorkspacesConfigIsValid loads the scenario's configuration with the
// gateway's own loader and checks what the scenario relies on.
func TestWorkspacesConfigIsValid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "workspaces.hcl")
	ide := filepath.Join(dir, "bin", standinName)
	if err := os.WriteFile(path, []byte(workspacesConfig(dir, "127.0.0.1:1", ide)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.LoadOptions{File: path, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatalf("the gateway refuses loadgen's configuration: %v", err)
	}
	m := cfg.MultiUser
	switch {
	case cfg.DeploymentMode != "multi":
		t.Errorf("deployment mode %q", cfg.DeploymentMode)
	case cfg.CodeServer.Path != ide:
		t.Errorf("code-server.path %q, want the stand-in %q", cfg.CodeServer.Path, ide)
	case cfg.Upstream != "":
		t.Errorf("upstream %q: every user would share it", cfg.Upstream)
	case m.Isolation.Strategy != "directory" || m.Isolation.BasePath != filepath.Join(dir, "users"):
		t.Errorf("isolation %q in %q", m.Isolation.Strategy, m.Isolation.BasePath)
	case m.Scaling.ContainerPool.Enabled:
		t.Error("the warm pool is on: starts would not be cold")
	case m.Scaling.StartConcurrency != workspaceStartConcurrency:
		t.Errorf("start concurrency %d, want %d", m.Scaling.StartConcurrency, workspaceStartConcurrency)
	case m.Limits.APIRequestsPerMinute != 0 || m.Limits.AnonymousAPIRequestsPerMinute != 0:
		t.Error("API rate limits are on")
	case m.Limits.MaxConcurrentConnections < 100 || m.Limits.MaxSessionsPerUser < 100:
		t.Errorf("per-user limits too small: %+v", m.Limits)
	case cfg.LoginThrottle.PerAddressBurst < maxWorkspaceUsers || cfg.LoginThrottle.GlobalBurst < maxWorkspaceUsers:
		t.Errorf("login throttle too tight: %+v", cfg.LoginThrottle)
	}
}

func TestNamesDir(t *testing.T) {
	dir := "/tmp/codehub-loadgen-1/workspaces"
	for cmdline, want := range map[string]bool{
		"/usr/bin/codehub\x00--config\x00/tmp/codehub-loadgen-1/workspaces/workspaces.hcl\x00": true,
		"/tmp/codehub-loadgen-1/workspaces/bin/codehub-loadgen-ide\x00--socket\x00/tmp/x.sock": true,
		"codehub\x00agent\x00--storage-path\x00/tmp/codehub-loadgen-1/workspaces\x00":          true,
		"codehub\x00--config\x00/tmp/codehub-loadgen-1/workspaces2/w.hcl\x00":                  false,
		"codehub\x00--config=/tmp/codehub-loadgen-1/workspaces/w.hcl\x00":                      false,
		"loadgen\x00-gateway\x00bin/codehub\x00-workspaces\x00100\x00":                         false,
		"": false,
	} {
		if got := namesDir(cmdline, dir); got != want {
			t.Errorf("namesDir(%q) = %v, want %v", cmdline, got, want)
		}
	}
}

func TestMountsUnder(t *testing.T) {
	info := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
98 22 7:3 / /tmp/lg/users/ws-1 rw,nosuid,nodev shared:50 - ext4 /dev/loop3 rw
99 22 0:50 / /tmp/lg2/x rw - tmpfs tmpfs rw
100 22 0:51 / /tmp/lg/with\040space rw - tmpfs tmpfs rw
`
	got := mountsUnder(info, "/tmp/lg")
	want := []string{"/tmp/lg/users/ws-1", "/tmp/lg/with space"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("mountsUnder = %q, want %q", got, want)
	}
	if got := mountsUnder(info, "/srv"); len(got) != 0 {
		t.Errorf("mountsUnder(/srv) = %q", got)
	}
}

func TestParentOf(t *testing.T) {
	for stat, want := range map[string]int{
		"4242 (codehub) S 17 4242 4242 0 -1 4194560 ...":     17,
		"4243 (code (server) x) S 4242 4243 4243 0 -1 ...":   4242,
		"4244 (codehub-loadgen-ide) R 4243 4244 4243 0 -1 0": 4243,
	} {
		if got, ok := parentOf(stat); !ok || got != want {
			t.Errorf("parentOf(%q) = %d, %v; want %d", stat, got, ok, want)
		}
	}
	for _, bad := range []string{"", "4242 codehub S 17", "4242 (codehub)", "4242 (codehub) S x"} {
		if got, ok := parentOf(bad); ok {
			t.Errorf("parentOf(%q) = %d, want no parent", bad, got)
		}
	}
	// This process's parent, for real.
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no /proc")
	}
	if got, ok := parentOf(string(stat)); !ok || got != os.Getppid() {
		t.Errorf("parentOf(/proc/self/stat) = %d, %v; want %d", got, ok, os.Getppid())
	}
}

func TestStandinMainRefusesABadCommandLine(t *testing.T) {
	var stderr strings.Builder
	if code := standinMain([]string{"--auth", "none"}, &stderr); code != 2 {
		t.Errorf("exit code %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "--socket is required") {
		t.Errorf("stderr %q", stderr.String())
	}
}

// TestWorkspacesScenario runs the whole scenario with three users against
// the real codehub binary, built for the test, and this test binary as the
// stand-in IDE: every answer must come from the requester's workspace,
// and nothing may be left running.
func TestWorkspacesScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the codehub binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "codehub")
	build := exec.Command("go", "build", "-o", bin, "github.com/codehub-dev/codehub/cmd/codehub")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const users = 3
	b := &bench{
		opts:     options{workspaces: users, workspaceLoad: 2 * time.Second},
		progress: testWriter{t},
	}
	workDir := filepath.Join(dir, "run")
	res, err := b.measureWorkspaces(context.Background(), bin, workDir)
	if err != nil {
		t.Fatal(err)
	}
	var report strings.Builder
	res.write(&report)
	t.Log(report.String())

	switch {
	case res.misroutes != 0:
		t.Errorf("%d misroutes", res.misroutes)
	case res.errors != 0:
		t.Errorf("%d errors under load, first: %s", res.errors, res.firstError)
	case res.requests == 0 || res.rps <= 0 || res.p50 <= 0 || res.p99 < res.p50:
		t.Errorf("load: %d requests, %.0f/s, p50 %v, p99 %v", res.requests, res.rps, res.p50, res.p99)
	case len(res.start) != users || len(res.signIn) != users || res.start[0] <= 0:
		t.Errorf("starts %v, sign-ins %v", res.start, res.signIn)
	case res.wsChecked != users:
		t.Errorf("%d of %d WebSockets checked", res.wsChecked, users)
	case res.workspacesMeasured != users || res.agentRSS <= 0 || res.ideRSS <= 0:
		t.Errorf("workspace memory: %d workspaces, agents %d B, IDEs %d B", res.workspacesMeasured, res.agentRSS, res.ideRSS)
	case res.rssStart <= 0 || res.rssBefore <= 0 || res.rssConnected <= 0 || res.rssAfter <= 0 || res.rssPeak < res.rssAfter:
		t.Errorf("gateway memory: %+v", res)
	case !strings.HasPrefix(res.gatewayExit, "exited cleanly"):
		t.Errorf("gateway: %s", res.gatewayExit)
	}
	if left := leftovers(workDir, os.Getpid()); len(left) > 0 {
		killAll(left)
		t.Errorf("processes left: %v", left)
	}
	if !strings.Contains(report.String(), "| workspace start") {
		t.Errorf("report lacks the start row:\n%s", report.String())
	}
}

// testWriter sends loadgen's progress to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

var _ io.Writer = testWriter{}
