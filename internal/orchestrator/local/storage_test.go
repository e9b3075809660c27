package local_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/orchestrator/local"
	"github.com/codehub-dev/codehub/internal/osuser"
	"github.com/codehub-dev/codehub/internal/quota"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// TestStorageGrowsWithPolicy: a workspace started again under a policy
// with more storage gets it, whether or not online resizing is allowed
// here (it needs CAP_SYS_RESOURCE), and keeps its files.
func TestStorageGrowsWithPolicy(t *testing.T) {
	needProcessStrategy(t)
	lockUIDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // guards a hang only
	t.Cleanup(cancel)
	in := newInstallation(t)
	o, err := local.New(local.Config{
		Strategy: local.StrategyProcess, BasePath: in.base, RuntimeDir: in.runtime,
		Agent: in.agent, CodeServer: in.codeServer, UIDMin: testUIDMin, UIDMax: testUIDMax,
	}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	id := "ws-lg" + randomHex(t, 5)
	t.Cleanup(func() {
		if err := osuser.Delete(context.Background(), "codehub-"+strings.TrimPrefix(id, "ws-")); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	w := &workspace.Workspace{ID: id, Home: filepath.Join(in.base, id), Secret: randomHex(t, 16)}
	startWith := func(mb int) int64 {
		t.Helper()
		l, err := o.Start(ctx, workspace.Spec{Workspace: w, Policy: workspace.Policy{
			Name: "test", Driver: local.StrategyProcess, MemoryMB: 256, CPUPercent: 100, Pids: 256, StorageMB: mb,
		}}, func(string) {})
		if err != nil {
			t.Fatal(err)
		}
		w.Address, w.PID, w.Meta = l.Address, l.PID, l.Meta
		t.Cleanup(func() {
			if w.PID != 0 {
				stop(t, context.Background(), o, w)
			}
		})
		sp, err := quota.Measure(w.Home)
		if err != nil {
			t.Fatal(err)
		}
		// The user gets the policy's storage, ext4's own on top.
		if sp.Capacity < int64(mb)<<20 || sp.Capacity > int64(mb)<<20+2<<20 {
			t.Errorf("a %d MiB policy gives %d bytes to write", mb, sp.Capacity)
		}
		return sp.Capacity
	}

	small := startWith(16)
	keep := filepath.Join(w.Home, "workspaces", "keep.txt")
	if err := os.WriteFile(keep, []byte("still here"), 0o644); err != nil {
		t.Fatal(err)
	}
	stop(t, ctx, o, w)

	big := startWith(48)
	if big < small+24<<20 {
		t.Errorf("storage %d bytes under a 48 MiB policy, %d under 16 MiB: it did not grow", big, small)
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "still here" {
		t.Errorf("a file written before the growth: %q, %v", b, err)
	}
	stop(t, ctx, o, w)
}
