package local_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/codehub-dev/codehub/internal/cgroup"
	"github.com/codehub-dev/codehub/internal/orchestrator/local"
	"github.com/codehub-dev/codehub/internal/osuser"
	"github.com/codehub-dev/codehub/internal/quota"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/codehub-dev/codehub/internal/workspace"
)

// leftovers lists what the host still holds of workspace w.
func leftovers(t *testing.T, in *installation, w *workspace.Workspace) []string {
	t.Helper()
	short := strings.TrimPrefix(w.ID, "ws-")
	var left []string
	if _, err := cgroup.Open("codehub/" + w.ID); err == nil {
		left = append(left, "cgroup")
	}
	if _, err := os.Stat("/run/netns/codehub-" + short); err == nil {
		left = append(left, "network namespace")
	}
	if rules := tagged(t, "codehub-"+short); len(rules) > 0 {
		left = append(left, "firewall rules")
	}
	if out, _ := exec.Command("ip", "link", "show").CombinedOutput(); strings.Contains(string(out), "chv") && w.Meta["netns_index"] != "" &&
		strings.Contains(string(out), "chv"+w.Meta["netns_index"]+"@") {
		left = append(left, "veth")
	}
	if mounted, _ := quota.IsMounted(w.Home); mounted {
		left = append(left, "mount")
	}
	if _, err := osuser.Lookup("codehub-" + short); err == nil {
		left = append(left, "account")
	}
	if _, err := os.Stat(filepath.Join(in.base, ".images", w.ID+".img")); err == nil {
		left = append(left, "image")
	}
	if _, err := os.Stat(w.Home); err == nil {
		left = append(left, "home")
	}
	if _, err := os.Stat(filepath.Join(in.runtime, w.ID)); err == nil {
		left = append(left, "secret")
	}
	return left
}

// registry returns a Sweep registry callback with the given live and known
// workspaces.
func registry(live, known []string) func(context.Context) (workspace.Registry, error) {
	return func(context.Context) (workspace.Registry, error) {
		r := workspace.Registry{Live: map[string]bool{}, Known: map[string]bool{}}
		for _, id := range live {
			r.Live[id], r.Known[id] = true, true
		}
		for _, id := range known {
			r.Known[id] = true
		}
		return r, nil
	}
}

// TestStopFreesAStartCutShort: a gateway killed in the middle of a start
// records nothing of what the start made; Stop with nothing but the
// workspace's id frees it all, since every name derives from the id.
func TestStopFreesAStartCutShort(t *testing.T) {
	needProcessStrategy(t)
	lockUIDs(t)
	keepForwarding(t)
	ctx := context.Background()
	in := newInstallation(t)
	o := in.orchestrator(t, true)
	w := &workspace.Workspace{ID: "ws-lc" + randomHex(t, 5), Secret: randomHex(t, 16)}
	w.Home = filepath.Join(in.base, w.ID)
	t.Cleanup(func() { _ = osuser.Delete(context.Background(), "codehub-"+strings.TrimPrefix(w.ID, "ws-")) })
	start(t, ctx, o, w)
	meta := w.Meta
	if left := leftovers(t, in, w); len(left) < 6 {
		t.Fatalf("the running workspace holds %v: the test cannot tell what is freed", left)
	}
	// What the registry knows after the crash: the id and home, no pid,
	// no address, no meta.
	cut := &workspace.Workspace{ID: w.ID, Home: w.Home}
	if err := syscall.Kill(w.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := o.Stop(ctx, cut); err != nil {
		t.Fatal(err)
	}
	w.PID, w.Meta = 0, meta
	left := leftovers(t, in, w)
	for _, l := range left {
		switch l {
		case "account", "image", "home": // the user's, kept by a stop
		default:
			t.Errorf("after the stop the host still holds the workspace's %s", l)
		}
	}
}

// TestSweep: what the host holds of workspaces the registry does not
// have running is freed; of those it does not have at all, the account,
// image and home go too, unless the home was a user's. A live workspace
// is left alone.
func TestSweep(t *testing.T) {
	needProcessStrategy(t)
	lockUIDs(t)
	keepForwarding(t)
	ctx := context.Background()
	in := newInstallation(t)
	o, err := local.New(local.Config{
		Strategy: local.StrategyProcess, BasePath: in.base, RuntimeDir: in.runtime,
		Agent: in.agent, CodeServer: in.codeServer, UIDMin: testUIDMin, UIDMax: testUIDMax,
		Network: true, Egress: true, CleanupGrace: -1,
	}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	mk := func(tag string) *workspace.Workspace {
		w := &workspace.Workspace{ID: "ws-" + tag + randomHex(t, 4), Secret: randomHex(t, 16)}
		w.Home = filepath.Join(in.base, w.ID)
		t.Cleanup(func() { _ = osuser.Delete(context.Background(), "codehub-"+strings.TrimPrefix(w.ID, "ws-")) })
		start(t, ctx, o, w)
		return w
	}
	live, stopped, gone, claimed := mk("live"), mk("stop"), mk("gone"), mk("user")
	// claimed was a user's: <base>/<user-id> names its home.
	if err := o.Assign(ctx, claimed, "user-1", "alice"); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(claimed.Home, "workspaces", "kept.txt")
	if err := os.WriteFile(marker, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*workspace.Workspace{stopped, gone, claimed} {
		if err := syscall.Kill(w.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	// The registry: live runs, stopped is there but stopped, gone and
	// claimed are not there at all (dropped after a crash).
	if err := o.Sweep(ctx, registry([]string{live.ID}, []string{stopped.ID})); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, in, live); len(left) < 6 {
		t.Errorf("the live workspace lost what it holds: it has only %v", left)
	}
	if resp, err := http.Get("http://" + live.Address + "/"); err != nil {
		t.Errorf("the live workspace's agent stopped answering: %v", err)
	} else {
		resp.Body.Close()
	}
	for _, w := range []*workspace.Workspace{stopped, claimed} {
		for _, l := range leftovers(t, in, w) {
			if l != "account" && l != "image" && l != "home" {
				t.Errorf("%s still holds its %s", w.ID, l)
			}
		}
		if _, err := os.Stat(w.Home); err != nil {
			t.Errorf("the home of %s, which the registry has or a user had, is gone: %v", w.ID, err)
		}
	}
	if left := leftovers(t, in, gone); len(left) > 0 {
		t.Errorf("the workspace the registry lost still holds %v", left)
	}
	gone.PID, stopped.PID, claimed.PID = 0, 0, 0
	// The storage of the claimed home stays for its user, with the files.
	mnt := t.TempDir()
	if err := quota.Mount(ctx, filepath.Join(in.base, ".images", claimed.ID+".img"), mnt, quota.MountOptions{NoSuid: true, NoDev: true}); err != nil {
		t.Fatalf("the storage of a home that was a user's: %v", err)
	}
	defer func() { _ = quota.Unmount(context.Background(), mnt) }()
	if b, err := os.ReadFile(filepath.Join(mnt, strings.TrimPrefix(marker, claimed.Home))); err != nil || string(b) != "mine" {
		t.Errorf("the user's file in a home the registry lost: %q %v", b, err)
	}
}
