package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/testenv"
)

// guard bounds every wait in these tests; it only turns a hang into a
// failure and never judges speed.
const guard = 2 * time.Minute

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Name: "codehub/ws-123"}, true},
		{Config{Name: "ws_1", MemoryBytes: 1 << 30, CPUPercent: 200, Pids: 512}, true},
		{Config{Name: ""}, false},
		{Config{Name: "/codehub/ws"}, false},
		{Config{Name: "codehub/"}, false},
		{Config{Name: "codehub//ws"}, false},
		{Config{Name: "codehub/../ws"}, false},
		{Config{Name: "codehub/memory.max"}, false},
		{Config{Name: "ws 1"}, false},
		{Config{Name: "ws", MemoryBytes: -1}, false},
		{Config{Name: "ws", CPUPercent: -1}, false},
		{Config{Name: "ws", Pids: -1}, false},
	} {
		err := tc.cfg.validate()
		if (err == nil) != tc.ok {
			t.Errorf("validate(%+v) = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("validate(%+v) = %v, want ErrInvalid", tc.cfg, err)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`/sys/fs/cgroup/memory`:  "/sys/fs/cgroup/memory",
		`/mnt/a\040b`:            "/mnt/a b",
		`/mnt/back\134slash`:     `/mnt/back\slash`,
		`/mnt/trailing\04`:       `/mnt/trailing\04`,
		`/mnt/tab\011x\012y`:     "/mnt/tab\tx\ny",
		`/mnt/not\999an-escape`:  `/mnt/not\999an-escape`,
		`/mnt/end-backslash\`:    `/mnt/end-backslash\`,
		`/mnt/\040leading-space`: "/mnt/ leading-space",
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// needCgroups skips or fails t unless it may create cgroups.
func needCgroups(t *testing.T) Version {
	t.Helper()
	testenv.SkipShort(t)
	if os.Geteuid() != 0 {
		testenv.Need(t, "root (creates cgroups)")
	}
	v, err := Detect()
	if err != nil {
		testenv.Need(t, "a cgroup hierarchy: "+err.Error())
	}
	return v
}

// testParent returns a fresh top-level group name for t, and removes that
// parent from every hierarchy when t ends (after the groups under it,
// whose cleanups run first).
func testParent(t *testing.T) string {
	t.Helper()
	parent := fmt.Sprintf("codehub-test-%d-%d", os.Getpid(), rand.IntN(1_000_000))
	t.Cleanup(func() {
		dirs := []string{filepath.Join(Root, parent), filepath.Join(Root, "unified", parent)}
		if mounts, err := v1Mounts(); err == nil {
			for _, m := range mounts {
				dirs = append(dirs, filepath.Join(m, parent))
			}
		}
		for _, d := range dirs {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return parent
}

// newGroup creates a group under a test parent; it is killed and removed
// when t ends.
func newGroup(t *testing.T, cfg Config) *Group {
	t.Helper()
	cfg.Name = testParent(t) + "/" + cfg.Name
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	cleanupGroup(t, g)
	return g
}

func cleanupGroup(t *testing.T, g *Group) {
	t.Cleanup(func() {
		if err := g.Kill(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := g.Remove(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}

// held is a process started in a group before it runs its real program:
// `sh -c 'read x; exec "$@"'` waits on stdin until release.
type held struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr lockedBuffer
	done   chan error // receives Wait's result
}

// lockedBuffer collects a process's stderr while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startIn starts argv so that it runs inside g from its first instruction.
func startIn(t *testing.T, g *Group, argv ...string) *held {
	t.Helper()
	h := &held{done: make(chan error, 1)}
	h.cmd = exec.Command("sh", append([]string{"-c", `read x; exec "$@"`, "sh"}, argv...)...)
	h.cmd.Stderr = &h.stderr
	var err error
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	// A pipe of our own, not StdoutPipe: Wait must not close it under a
	// reader.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	h.cmd.Stdout = w
	h.stdout = bufio.NewReader(r)
	err = h.cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	go func() { h.done <- h.cmd.Wait() }()
	t.Cleanup(func() {
		h.cmd.Process.Kill()
		h.stdin.Close()
		r.Close()
		select {
		case <-h.done:
		case <-time.After(guard):
			t.Errorf("cleanup: pid %d did not exit", h.cmd.Process.Pid)
		}
	})
	if err := g.Add(h.cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *held) release(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(h.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	h.stdin.Close()
}

// wait returns the process's exit, failing t if it does not come.
func (h *held) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // later waits (and the cleanup) see it too
		return err
	case <-time.After(guard):
		t.Fatalf("pid %d still running after %v", h.cmd.Process.Pid, guard)
		return nil
	}
}

func (h *held) running() bool {
	select {
	case err := <-h.done:
		h.done <- err
		return false
	default:
		return true
	}
}

func killedBy(err error) (syscall.Signal, bool) {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 0, false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0, false
	}
	return ws.Signal(), true
}

// eventually polls cond until it holds, failing t after guard.
func eventually(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %v", what, guard)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestLimitsWritten(t *testing.T) {
	v := needCgroups(t)
	const mem = 48 << 20
	g := newGroup(t, Config{Name: "limits", MemoryBytes: mem, CPUPercent: 150, Pids: 64})
	if g.Version() != v {
		t.Errorf("Version() = %v, want %v", g.Version(), v)
	}
	want := map[string]string{}
	if v == V1 {
		want[g.path("memory", "memory.limit_in_bytes")] = fmt.Sprint(mem)
		if g.exists("memory", "memory.memsw.limit_in_bytes") {
			want[g.path("memory", "memory.memsw.limit_in_bytes")] = fmt.Sprint(mem)
		} else {
			want[g.path("memory", "memory.swappiness")] = "0"
		}
		want[g.path("cpu", "cpu.cfs_quota_us")] = "150000"
		want[g.path("cpu", "cpu.cfs_period_us")] = "100000"
		want[g.path("pids", "pids.max")] = "64"
		for _, c := range []string{"memory", "cpu", "cpuacct", "pids"} {
			if _, err := os.Stat(g.dirs[c]); err != nil {
				t.Errorf("no %s group: %v", c, err)
			}
		}
	} else {
		want[g.path("memory", "memory.max")] = fmt.Sprint(mem)
		if g.exists("memory", "memory.swap.max") {
			want[g.path("memory", "memory.swap.max")] = "0"
		}
		want[g.path("cpu", "cpu.max")] = "150000 100000"
		want[g.path("pids", "pids.max")] = "64"
	}
	for file, w := range want {
		if got := readFile(t, file); got != w {
			t.Errorf("%s = %q, want %q", file, got, w)
		}
	}

	// A second New of the same name is refused and leaves the first alone.
	if _, err := New(Config{Name: g.Name()}); !errors.Is(err, ErrExists) {
		t.Errorf("New(existing) = %v, want ErrExists", err)
	}
	for file := range want {
		if _, err := os.Stat(file); err != nil {
			t.Errorf("after refused New: %v", err)
		}
	}
}

func TestNoLimits(t *testing.T) {
	v := needCgroups(t)
	g := newGroup(t, Config{Name: "free"})
	var files map[string]string
	if v == V1 {
		files = map[string]string{g.path("cpu", "cpu.cfs_quota_us"): "-1", g.path("pids", "pids.max"): "max"}
	} else {
		files = map[string]string{g.path("memory", "memory.max"): "max", g.path("cpu", "cpu.max"): "max 100000", g.path("pids", "pids.max"): "max"}
	}
	for file, w := range files {
		if got := readFile(t, file); got != w {
			t.Errorf("%s = %q, want %q", file, got, w)
		}
	}
}

// TestMemoryLimitOOM: a process allocating past its group's limit is
// killed by the OOM killer, and a process in another group is not.
func TestMemoryLimitOOM(t *testing.T) {
	needCgroups(t)
	const limit = 32 << 20
	hogGroup := newGroup(t, Config{Name: "hog", MemoryBytes: limit})
	quietGroup := newGroup(t, Config{Name: "quiet", MemoryBytes: limit})

	quiet := startIn(t, quietGroup, "sleep", "600")
	quiet.release(t)
	// tail keeps the "last lines" of /dev/zero, which has no newline: it
	// allocates until something stops it.
	hog := startIn(t, hogGroup, "tail", "/dev/zero")
	hog.release(t)

	err := hog.wait(t)
	if sig, ok := killedBy(err); !ok || sig != syscall.SIGKILL {
		t.Fatalf("hog exited with %v (stderr %q), want killed by SIGKILL", err, hog.stderr.String())
	}
	st, err := hogGroup.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hog group after OOM: %+v", st)
	if st.OOMKills < 1 {
		t.Errorf("OOMKills = %d, want >= 1", st.OOMKills)
	}
	if n, err := hogGroup.OOMKills(); err != nil || n != st.OOMKills {
		t.Errorf("OOMKills() = %d, %v; Stats says %d", n, err, st.OOMKills)
	}
	// A second hog: the count goes up.
	hog2 := startIn(t, hogGroup, "tail", "/dev/zero")
	hog2.release(t)
	if sig, ok := killedBy(hog2.wait(t)); !ok || sig != syscall.SIGKILL {
		t.Fatal("the second hog was not killed")
	}
	if n, err := hogGroup.OOMKills(); err != nil || n <= st.OOMKills {
		t.Errorf("OOMKills() after a second hog = %d, %v; want more than %d", n, err, st.OOMKills)
	}
	if st.MemoryPeakBytes != 0 && (st.MemoryPeakBytes > limit || st.MemoryPeakBytes < limit/2) {
		t.Errorf("MemoryPeakBytes = %d, want near the %d limit and not above", st.MemoryPeakBytes, limit)
	}

	if !quiet.running() {
		t.Fatalf("the process in the other group died: %v", quiet.wait(t))
	}
	qs, err := quietGroup.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if qs.OOMKills != 0 {
		t.Errorf("quiet group OOMKills = %d, want 0", qs.OOMKills)
	}
	if n, err := quietGroup.OOMKills(); err != nil || n != 0 {
		t.Errorf("quiet group OOMKills() = %d, %v", n, err)
	}
	gone := newGroup(t, Config{Name: "gone", MemoryBytes: limit})
	if err := gone.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := gone.OOMKills(); !errors.Is(err, ErrNotFound) {
		t.Errorf("OOMKills() of a removed group = %v, want ErrNotFound", err)
	}
	procs, err := quietGroup.Procs()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(procs, []int{quiet.cmd.Process.Pid}) {
		t.Errorf("quiet group procs %v, want [%d]", procs, quiet.cmd.Process.Pid)
	}
}

// TestPidsLimit: a shell starting 20 sleeps in a group capped at 5 tasks
// gets only some of them.
func TestPidsLimit(t *testing.T) {
	needCgroups(t)
	const max = 5
	g := newGroup(t, Config{Name: "forky", Pids: max})
	h := startIn(t, g, "sh", "-c",
		`i=0; while [ $i -lt 20 ]; do sleep 600 >/dev/null 2>&1 & i=$((i+1)); done; echo started; exec sleep 600`)
	h.release(t)
	// dash gives up at the first failed fork (closing stdout); a shell that
	// retries forks would print "started" after its last attempt.
	line, err := h.stdout.ReadString('\n')
	t.Logf("shell said %q (%v), stderr %q", line, err, h.stderr.String())

	procs, err := g.Procs()
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) > max || len(procs) < 2 {
		t.Errorf("%d processes in the group (%v), want 2..%d", len(procs), procs, max)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Pids > max || st.Pids < int64(len(procs)) {
		t.Errorf("Stats.Pids = %d with %d processes, max %d", st.Pids, len(procs), max)
	}
	if n, err := g.readKey("pids", "pids.events", "max"); err != nil || n < 1 {
		t.Errorf("pids.events max = %d (%v), want >= 1 refused fork", n, err)
	}

	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "group empty after Kill", func() (bool, error) {
		p, err := g.Procs()
		return len(p) == 0, err
	})
}

// TestCPU: a busy loop's usage grows; Kill stops it; Remove deletes the
// group everywhere; Open then finds nothing.
func TestCPU(t *testing.T) {
	needCgroups(t)
	g := newGroup(t, Config{Name: "busy", CPUPercent: 50})
	busy := startIn(t, g, "sh", "-c", "while :; do :; done")
	before, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	busy.release(t)
	eventually(t, "CPU usage grows", func() (bool, error) {
		st, err := g.Stats()
		return st.CPUSeconds >= before.CPUSeconds+0.1, err
	})
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Pids != 1 {
		t.Errorf("Stats.Pids = %d, want 1", st.Pids)
	}
	if procs, err := g.Procs(); err != nil || !slices.Equal(procs, []int{busy.cmd.Process.Pid}) {
		t.Errorf("Procs = %v, %v; want [%d]", procs, err, busy.cmd.Process.Pid)
	}

	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	if sig, ok := killedBy(busy.wait(t)); !ok || sig != syscall.SIGKILL {
		t.Fatalf("busy loop not killed by SIGKILL")
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range g.unique() {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after Remove (%v)", dir, err)
		}
	}
	if _, err := Open(g.Name()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after Remove = %v, want ErrNotFound", err)
	}
	if err := g.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

// TestOpen re-attaches to a group as a restarted gateway would, and kills
// a process tree through it.
func TestOpen(t *testing.T) {
	needCgroups(t)
	g := newGroup(t, Config{Name: "reattach", MemoryBytes: 64 << 20, Pids: 32})
	h := startIn(t, g, "sh", "-c", "sleep 600 & sleep 600 & echo forked; wait")
	h.release(t)
	if line, err := h.stdout.ReadString('\n'); err != nil || line != "forked\n" {
		t.Fatalf("shell said %q, %v", line, err)
	}

	again, err := Open(g.Name())
	if err != nil {
		t.Fatal(err)
	}
	if again.Name() != g.Name() || again.Version() != g.Version() || len(again.unique()) != len(g.unique()) {
		t.Errorf("Open = %+v, New gave %+v", again, g)
	}
	procs, err := again.Procs()
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 3 || !slices.Contains(procs, h.cmd.Process.Pid) {
		t.Errorf("Procs = %v, want the shell %d and two sleeps", procs, h.cmd.Process.Pid)
	}
	if err := again.Kill(); err != nil {
		t.Fatal(err)
	}
	if sig, ok := killedBy(h.wait(t)); !ok || sig != syscall.SIGKILL {
		t.Errorf("shell not killed by SIGKILL")
	}
	if err := again.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(g.Name()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after Remove = %v, want ErrNotFound", err)
	}
}

// TestV2Core exercises the v2 code on a v1 ("hybrid") machine, in the
// controller-less v2 tree at /sys/fs/cgroup/unified: creating, adding,
// CPU accounting (core to v2), cgroup.kill and removal. The limits need
// the controllers, which v1 holds there, so they are only tested on a v2
// machine (by the tests above).
func TestV2Core(t *testing.T) {
	if v := needCgroups(t); v == V2 {
		t.Skip("v2 machine: the other tests run the v2 code")
	}
	root := filepath.Join(Root, "unified")
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
		t.Skip("no v2 tree beside v1 here")
	}
	name := testParent(t) + "/core"
	if _, err := newV2(root, Config{Name: name, MemoryBytes: 1 << 20}, nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("newV2 with a memory limit but no memory controller = %v, want ErrUnsupported", err)
	}
	g, err := newV2(root, Config{Name: name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cleanupGroup(t, g)
	if _, err := newV2(root, Config{Name: name}, nil); !errors.Is(err, ErrExists) {
		t.Errorf("second newV2 = %v, want ErrExists", err)
	}

	busy := startIn(t, g, "sh", "-c", "sleep 600 & while :; do :; done")
	busy.release(t)
	eventually(t, "CPU usage grows", func() (bool, error) {
		st, err := g.Stats()
		return st.CPUSeconds >= 0.1, err
	})
	eventually(t, "two processes", func() (bool, error) {
		p, err := g.Procs()
		return len(p) == 2, err
	})
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	if sig, ok := killedBy(busy.wait(t)); !ok || sig != syscall.SIGKILL {
		t.Errorf("not killed by SIGKILL")
	}
	// Without the memory controller, nothing is counted.
	if n, err := g.OOMKills(); err != nil || n != 0 {
		t.Errorf("OOMKills() without the memory controller = %d, %v", n, err)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.dirs[""]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("group still there after Remove (%v)", err)
	}
	if _, err := g.OOMKills(); !errors.Is(err, ErrNotFound) {
		t.Errorf("OOMKills() of a removed group = %v, want ErrNotFound", err)
	}
}
