package procenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestHoldsAll(t *testing.T) {
	env := []byte("A=1\x00CODEHUB_WORKSPACE_ID=ws-1\x00B=2\x00")
	for _, c := range []struct {
		marks []string
		want  bool
	}{
		{[]string{"CODEHUB_WORKSPACE_ID=ws-1"}, true},
		{[]string{"CODEHUB_WORKSPACE_ID=ws-1", "B=2"}, true},
		{[]string{"CODEHUB_WORKSPACE_ID=ws-"}, false}, // a prefix is another workspace's ID
		{[]string{"CODEHUB_WORKSPACE_ID=ws-10"}, false},
		{[]string{"WORKSPACE_ID=ws-1"}, false},
		{[]string{"CODEHUB_WORKSPACE_ID=ws-1", "C=3"}, false},
		{nil, false}, // never every process
	} {
		if got := holdsAll(env, c.marks); got != c.want {
			t.Errorf("holdsAll(%q) = %v, want %v", c.marks, got, c.want)
		}
	}
}

// TestKillEndsOrphans starts a shell marked by a variable that starts a
// process in a session of its own and exits: the orphan is found by its
// inherited environment and killed; an unmarked process is left alone.
func TestKillEndsOrphans(t *testing.T) {
	mark := "CODEHUB_TEST_MARK=" + strconv.Itoa(os.Getpid()) + "-" + t.Name()
	pidFile := filepath.Join(t.TempDir(), "pid")
	sh := exec.Command("/bin/sh", "-c", `setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > "$0"`, pidFile)
	sh.Env = append(os.Environ(), mark)
	if err := sh.Run(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	other := exec.Command("sleep", "300")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait(); _ = syscall.Kill(orphan, syscall.SIGKILL) })

	// The shell reports the orphan's pid as soon as it forks it: while it
	// execs setsid, then sleep, its environment may not read for a moment.
	var found []int
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if found, err = Find("/proc", os.Geteuid(), mark); err != nil {
			t.Fatal(err)
		}
		if len(found) != 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(found) != 1 || found[0] != orphan {
		t.Fatalf("Find = %v, want [%d]", found, orphan)
	}
	if found, _ := Find("/proc", os.Geteuid()+1, mark); len(found) != 0 {
		t.Errorf("Find for another user = %v, want none", found)
	}
	n, err := Kill(context.Background(), os.Geteuid(), mark)
	if err != nil || n != 1 {
		t.Fatalf("Kill = %d, %v; want 1", n, err)
	}
	for i := 0; i < 100 && Alive(orphan); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if Alive(orphan) {
		t.Errorf("marked orphan %d still runs", orphan)
	}
	if !Alive(other.Process.Pid) {
		t.Errorf("unmarked process %d was killed", other.Process.Pid)
	}
}

// TestValues: a variable's value is read from every process that sets
// it, and no process without it is listed.
func TestValues(t *testing.T) {
	key := "CODEHUB_TEST_VALUES_" + strconv.Itoa(os.Getpid())
	cmd := exec.Command("sleep", "600")
	cmd.Env = []string{key + "=ws-values", "PATH=" + os.Getenv("PATH")}
	other := exec.Command("sleep", "600")
	for _, c := range []*exec.Cmd{cmd, other} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	}
	got, err := Values("/proc", key)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[cmd.Process.Pid] != "ws-values" {
		t.Errorf("Values = %v, want only pid %d with ws-values", got, cmd.Process.Pid)
	}
}
