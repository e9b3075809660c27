package local_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/orchestrator/local"
	"github.com/codehub-dev/codehub/internal/procenv"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// TestStopEndsWhatAKilledAgentLeft: with the directory strategy there is
// no cgroup to end, and a process the agent started in a session of its
// own (as code-server's are) outlives an agent killed outright. Stopping
// the workspace ends it, and nothing of another workspace.
func TestStopEndsWhatAKilledAgentLeft(t *testing.T) {
	testenv.SkipShort(t)
	root := t.TempDir()
	o, err := local.New(local.Config{
		Strategy: local.StrategyDirectory, BasePath: filepath.Join(root, "users"), RuntimeDir: filepath.Join(root, "run"),
		Agent: os.Args[0], CodeServer: "/bin/false",
	}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	newWorkspace := func(id string) *workspace.Workspace {
		w := &workspace.Workspace{ID: id, Home: filepath.Join(root, "users", id), Secret: randomHex(t, 16)}
		l, err := o.Start(ctx, workspace.Spec{Workspace: w, Policy: workspace.Policy{Name: "test", Driver: local.StrategyDirectory}}, func(string) {})
		if err != nil {
			t.Fatal(err)
		}
		w.Address, w.PID, w.Meta = l.Address, l.PID, l.Meta
		t.Cleanup(func() { _ = o.Stop(context.Background(), w) })
		return w
	}
	spawn := func(w *workspace.Workspace) int {
		t.Helper()
		resp, err := http.Get("http://" + w.Address + "/spawn")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("spawn: %s", b)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		return pid
	}
	a, b := newWorkspace("ws-leftovers-a"), newWorkspace("ws-leftovers-b")
	orphan, other := spawn(a), spawn(b)

	if err := syscall.Kill(a.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && procenv.Alive(a.PID); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if !procenv.Alive(orphan) {
		t.Fatal("the test's premise: the agent's session-leading child should outlive the agent")
	}
	if err := o.Stop(ctx, a); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100 && procenv.Alive(orphan); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if procenv.Alive(orphan) {
		t.Errorf("process %d of the stopped workspace still runs", orphan)
	}
	if !procenv.Alive(other) {
		t.Errorf("process %d of another workspace was ended", other)
	}
}
