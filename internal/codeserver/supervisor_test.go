package codeserver_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/codehub-dev/codehub/internal/codeserver"
	"github.com/codehub-dev/codehub/internal/procenv"
	"github.com/codehub-dev/codehub/internal/testenv"
)

// The test binary doubles as a stand-in for code-server: with
// CODEHUB_FAKE_CODE_SERVER set it parses code-server's flags, serves
// /healthz on --socket, and behaves as the variable says.
func TestMain(m *testing.M) {
	if mode := os.Getenv("CODEHUB_FAKE_CODE_SERVER"); mode != "" {
		fakeCodeServer(mode)
		return
	}
	os.Exit(m.Run())
}

func fakeCodeServer(mode string) {
	fs := flag.NewFlagSet("code-server", flag.ContinueOnError)
	socket := fs.String("socket", "", "")
	fs.String("config", "", "")
	fs.String("socket-mode", "", "")
	fs.String("auth", "", "")
	fs.String("user-data-dir", "", "")
	fs.String("extensions-dir", "", "")
	fs.Bool("disable-telemetry", false, "")
	fs.Bool("disable-update-check", false, "")
	fs.Bool("disable-workspace-trust", false, "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if f := os.Getenv("CODEHUB_FAKE_ARGS_FILE"); f != "" {
		os.WriteFile(f, []byte(strings.Join(os.Args[1:], "\n")), 0o600)
	}
	if f := os.Getenv("CODEHUB_FAKE_COUNT_FILE"); f != "" {
		b, _ := os.ReadFile(f)
		n, _ := strconv.Atoi(string(b))
		os.WriteFile(f, []byte(strconv.Itoa(n+1)), 0o600)
		if mode == "crash-twice" && n < 2 {
			os.Exit(3)
		}
	}
	switch mode {
	case "crash":
		os.Exit(3)
	case "silent":
		time.Sleep(time.Hour)
	case "child":
		// A grandchild that must not outlive the IDE's stop.
		c := exec.Command("sleep", "3600")
		c.Start()
		os.WriteFile(os.Getenv("CODEHUB_FAKE_CHILD_FILE"), []byte(strconv.Itoa(c.Process.Pid)), 0o600)
	}
	ln, err := net.Listen("unix", *socket)
	if err != nil {
		os.Exit(4)
	}
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"alive"}`)
	}))
}

type recorder struct {
	mu     sync.Mutex
	states []State
	starts []error
}

func (r *recorder) state(s State) {
	r.mu.Lock()
	r.states = append(r.states, s)
	r.mu.Unlock()
}

func (r *recorder) start(_ time.Duration, err error) {
	r.mu.Lock()
	r.starts = append(r.starts, err)
	r.mu.Unlock()
}

func newSupervisor(t *testing.T, mode string, startTimeout time.Duration, extraEnv ...string) (*Supervisor, *recorder, string) {
	t.Helper()
	testenv.SkipShort(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "cs-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rec := &recorder{}
	s := New(Config{
		Binary:        self,
		SocketPath:    filepath.Join(dir, "cs.sock"),
		UserDataDir:   filepath.Join(dir, "ud"),
		ExtensionsDir: filepath.Join(dir, "ext"),
		Folder:        "/src/project",
		Args:          []string{"--disable-workspace-trust"},
		Env:           append([]string{"CODEHUB_FAKE_CODE_SERVER=" + mode, "PATH=" + os.Getenv("PATH")}, extraEnv...),
		StartTimeout:  startTimeout,
		StopTimeout:   5 * time.Second,
		BackoffMin:    10 * time.Millisecond,
		BackoffMax:    40 * time.Millisecond,
		OnStateChange: rec.state,
		OnStart:       rec.start,
	}, testenv.Logger(t))
	return s, rec, dir
}

func runSupervisor(t *testing.T, s *Supervisor) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func waitReady(t *testing.T, s *Supervisor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatalf("not ready: %+v", s.Status())
	}
}

func TestStartsWithSafeArguments(t *testing.T) {
	argsFile := filepath.Join(t.TempDir(), "args")
	s, rec, dir := newSupervisor(t, "ok", time.Minute, "CODEHUB_FAKE_ARGS_FILE="+argsFile)
	stop := runSupervisor(t, s)
	waitReady(t, s)
	b, _ := os.ReadFile(argsFile)
	got := strings.Join(strings.Split(string(b), "\n"), " ")
	want := "--config /dev/null --socket " + filepath.Join(dir, "cs.sock") + " --socket-mode 600 --auth none " +
		"--disable-telemetry --disable-update-check --user-data-dir " + filepath.Join(dir, "ud") +
		" --extensions-dir " + filepath.Join(dir, "ext") + " --disable-workspace-trust /src/project"
	if got != want {
		t.Errorf("arguments:\n got %s\nwant %s", got, want)
	}
	st := s.Status()
	if st.State != StateRunning || st.PID == 0 {
		t.Errorf("status %+v", st)
	}
	stop()
	if s.Status().State != StateStopped {
		t.Errorf("after stop: %+v", s.Status())
	}
	if len(rec.starts) != 1 || rec.starts[0] != nil {
		t.Errorf("start reports %v", rec.starts)
	}
}

func TestRestartsAfterCrash(t *testing.T) {
	countFile := filepath.Join(t.TempDir(), "count")
	s, rec, _ := newSupervisor(t, "crash-twice", time.Minute, "CODEHUB_FAKE_COUNT_FILE="+countFile)
	stop := runSupervisor(t, s)
	defer stop()
	waitReady(t, s)
	st := s.Status()
	if st.Restarts != 2 || !strings.Contains(st.LastError, "exited") {
		t.Errorf("status after two crashes: %+v", st)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	backoffs := 0
	for _, x := range rec.states {
		if x == StateBackoff {
			backoffs++
		}
	}
	if backoffs != 2 {
		t.Errorf("states %v: want two backoffs", rec.states)
	}
}

func TestKilledProcessComesBack(t *testing.T) {
	s, _, _ := newSupervisor(t, "ok", time.Minute)
	stop := runSupervisor(t, s)
	defer stop()
	waitReady(t, s)
	first := s.Status().PID
	ready := s.Ready()
	syscall.Kill(first, syscall.SIGKILL)
	deadline := time.Now().Add(time.Minute)
	for {
		st := s.Status()
		if st.State == StateRunning && st.PID != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not restarted: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-ready:
	default:
		t.Error("the old ready channel was never closed")
	}
}

func TestStartTimeoutKillsAndRetries(t *testing.T) {
	s, rec, _ := newSupervisor(t, "silent", 200*time.Millisecond)
	stop := runSupervisor(t, s)
	deadline := time.Now().Add(time.Minute)
	for {
		rec.mu.Lock()
		n := len(rec.starts)
		rec.mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no second start attempt")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.starts[0] == nil || !strings.Contains(rec.starts[0].Error(), "did not answer") {
		t.Errorf("first start: %v", rec.starts[0])
	}
}

func TestStopKillsProcessGroup(t *testing.T) {
	childFile := filepath.Join(t.TempDir(), "child")
	s, _, _ := newSupervisor(t, "child", time.Minute, "CODEHUB_FAKE_CHILD_FILE="+childFile)
	stop := runSupervisor(t, s)
	waitReady(t, s)
	b, _ := os.ReadFile(childFile)
	child, _ := strconv.Atoi(string(b))
	if child == 0 {
		t.Fatal("no child pid")
	}
	stop()
	deadline := time.Now().Add(time.Minute)
	for {
		// The child is reaped by init once killed; a zombie counts as gone.
		if !procenv.Alive(child) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d outlived the stop", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMissingBinary(t *testing.T) {
	s := New(Config{Binary: "/nonexistent/code-server", SocketPath: "/tmp/x.sock"}, testenv.Logger(t))
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("Run with a missing binary succeeded")
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	launcher := filepath.Join(dir, "code-server-9.9.9", "bin", "code-server")
	os.MkdirAll(filepath.Dir(launcher), 0o755)
	os.WriteFile(launcher, []byte("#!/bin/sh\n"), 0o755)
	env := func(k string) string {
		if k == "CODEHUB_CACHE" {
			return dir
		}
		return ""
	}
	if p, err := Find("", "9.9.9", env); err != nil || p != launcher {
		t.Fatalf("Find from cache = %q, %v", p, err)
	}
	if _, err := Find("/nonexistent", "9.9.9", env); err == nil {
		t.Fatal("a configured missing path was accepted")
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := Find("", "0.0.0", env); err == nil || !strings.Contains(err.Error(), "make setup") {
		t.Fatalf("missing code-server: %v", err)
	}
}
