// Package codeserver runs one code-server process and keeps it running: it
// binds code-server to a unix socket only its owner can open, waits until it
// answers, restarts it with backoff when it dies and stops it cleanly (the
// whole process group) on request.
package codeserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// State is where the supervised process is in its life.
type State string

// States of a supervised code-server.
const (
	StateStopped  State = "stopped"
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateBackoff  State = "backoff" // crashed, waiting to restart
)

// States lists every state, for metrics.
var States = []State{StateStopped, StateStarting, StateRunning, StateBackoff}

// Config describes the code-server to run.
type Config struct {
	// Binary is the code-server launcher.
	Binary string
	// SocketPath is the unix socket code-server listens on (mode 0600).
	SocketPath string
	// UserDataDir and ExtensionsDir are passed as --user-data-dir and
	// --extensions-dir when set.
	UserDataDir   string
	ExtensionsDir string
	// Folder is opened in the IDE when set.
	Folder string
	// Args are extra arguments, placed before the folder.
	Args []string
	// Env is the process environment; secrets of the gateway must not be in
	// it, since every terminal in the IDE inherits it.
	Env []string
	// Dir is the working directory.
	Dir string
	// Credential runs code-server as another user when set.
	Credential *syscall.Credential
	// KillWithParent has the kernel stop code-server when this process dies
	// (even by SIGKILL), so that no orphaned IDE keeps running.
	KillWithParent bool
	// StartTimeout bounds the wait for code-server to answer.
	StartTimeout time.Duration
	// StopTimeout is how long a stop waits after SIGTERM before SIGKILL.
	StopTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait between restarts.
	BackoffMin, BackoffMax time.Duration
	// OnStateChange, if set, is called on every state change.
	OnStateChange func(State)
	// OnStart, if set, is called after every start attempt with its result.
	OnStart func(d time.Duration, err error)
}

// Status is a snapshot of the supervisor.
type Status struct {
	State     State     `json:"state"`
	PID       int       `json:"pid,omitempty"`
	Since     time.Time `json:"since"`
	Restarts  int       `json:"restarts"`
	LastError string    `json:"lastError,omitempty"`
}

// Supervisor runs and restarts one code-server.
type Supervisor struct {
	cfg Config
	log hclog.Logger

	mu      sync.Mutex
	status  Status
	readyCh chan struct{} // closed while running; replaced when not
}

// New returns a supervisor; call Run to start it.
func New(cfg Config, log hclog.Logger) *Supervisor {
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 90 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 500 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	return &Supervisor{
		cfg:     cfg,
		log:     log,
		status:  Status{State: StateStopped, Since: time.Now()},
		readyCh: make(chan struct{}),
	}
}

// Args returns the command line code-server is started with.
func (s *Supervisor) Args() []string {
	args := []string{
		// An explicit, empty config file: the user's own code-server config
		// (which may ask for a password, TLS or a port) must not apply.
		"--config", os.DevNull,
		"--socket", s.cfg.SocketPath,
		"--socket-mode", "600",
		"--auth", "none",
		"--disable-telemetry",
		"--disable-update-check",
	}
	if s.cfg.UserDataDir != "" {
		args = append(args, "--user-data-dir", s.cfg.UserDataDir)
	}
	if s.cfg.ExtensionsDir != "" {
		args = append(args, "--extensions-dir", s.cfg.ExtensionsDir)
	}
	args = append(args, s.cfg.Args...)
	if s.cfg.Folder != "" {
		args = append(args, s.cfg.Folder)
	}
	return args
}

// Status returns a snapshot of the supervisor's state.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Ready returns a channel closed while code-server is running. Take a new
// channel after it goes down.
func (s *Supervisor) Ready() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readyCh
}

// WaitReady blocks until code-server runs or ctx ends.
func (s *Supervisor) WaitReady(ctx context.Context) error {
	select {
	case <-s.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Supervisor) setState(st State, pid int, errMsg string) {
	s.mu.Lock()
	prev := s.status.State
	s.status.State, s.status.PID, s.status.Since = st, pid, time.Now()
	if errMsg != "" {
		s.status.LastError = errMsg
	}
	if st == StateRunning && prev != StateRunning {
		close(s.readyCh)
	} else if st != StateRunning && prev == StateRunning {
		s.readyCh = make(chan struct{})
	}
	s.mu.Unlock()
	if prev != st && s.cfg.OnStateChange != nil {
		s.cfg.OnStateChange(st)
	}
}

// Run starts code-server and keeps it running until ctx is cancelled, then
// stops it and returns nil. It returns an error only if code-server cannot be
// started at all (missing binary).
func (s *Supervisor) Run(ctx context.Context) error {
	if _, err := os.Stat(s.cfg.Binary); err != nil {
		return fmt.Errorf("code-server launcher: %w", err)
	}
	backoff := s.cfg.BackoffMin
	for {
		started := time.Now()
		err := s.runOnce(ctx)
		if ctx.Err() != nil {
			s.setState(StateStopped, 0, "")
			return nil
		}
		if time.Since(started) > time.Minute {
			backoff = s.cfg.BackoffMin // it ran a good while: a fresh failure
		}
		s.mu.Lock()
		s.status.Restarts++
		s.mu.Unlock()
		s.setState(StateBackoff, 0, err.Error())
		s.log.Warn("code-server stopped; restarting", "error", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			s.setState(StateStopped, 0, "")
			return nil
		}
		backoff = min(backoff*2, s.cfg.BackoffMax)
	}
}

// runOnce starts code-server, waits for it to answer, then waits for it to
// exit or for ctx to end. It always returns with the process gone.
func (s *Supervisor) runOnce(ctx context.Context) error {
	_ = os.Remove(s.cfg.SocketPath) // a stale socket from a previous run
	if err := os.MkdirAll(filepath.Dir(s.cfg.SocketPath), 0o700); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	cmd := exec.Command(s.cfg.Binary, s.Args()...)
	cmd.Env = s.cfg.Env
	cmd.Dir = s.cfg.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cfg.Credential}
	if s.cfg.KillWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	s.setState(StateStarting, 0, "")
	if err := cmd.Start(); err != nil {
		s.report(start, err)
		return fmt.Errorf("start code-server: %w", err)
	}
	pid := cmd.Process.Pid
	s.setState(StateStarting, pid, "")
	// exited is closed once the process is gone and exitErr is set; both
	// the readiness wait and stop may watch it.
	var exitErr error
	exited := make(chan struct{})
	go func() {
		s.pipeLog(out) // Wait closes the pipe: drain it first
		exitErr = cmd.Wait()
		if exitErr == nil {
			exitErr = errors.New("exited")
		}
		close(exited)
	}()

	readyCtx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	readyErr := s.waitAnswer(readyCtx, exited, &exitErr)
	cancel()
	if readyErr != nil {
		s.stop(pid, exited)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.report(start, readyErr)
		return readyErr
	}
	s.report(start, nil)
	s.log.Info("code-server ready", "pid", pid, "socket", s.cfg.SocketPath, "startup", time.Since(start).Round(time.Millisecond))
	s.setState(StateRunning, pid, "")

	select {
	case <-exited:
		// Its children (VS Code's server, extension hosts, terminals)
		// outlive a killed parent and would run on, orphaned, holding
		// memory and CPU: end the whole process group.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return fmt.Errorf("code-server (pid %d) %w", pid, exitErr)
	case <-ctx.Done():
		s.stop(pid, exited)
		return ctx.Err()
	}
}

func (s *Supervisor) report(start time.Time, err error) {
	if s.cfg.OnStart != nil {
		s.cfg.OnStart(time.Since(start), err)
	}
}

// waitAnswer polls code-server's /healthz over the socket until it answers,
// the process exits, or ctx ends.
func (s *Supervisor) waitAnswer(ctx context.Context, exited <-chan struct{}, exitErr *error) error {
	client := &http.Client{Transport: &http.Transport{DialContext: s.DialContext, DisableKeepAlives: true}}
	delay := 20 * time.Millisecond
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://code-server/healthz", nil)
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("code-server exited before answering: %w", *exitErr)
		case <-ctx.Done():
			return fmt.Errorf("code-server did not answer within %s", s.cfg.StartTimeout)
		case <-time.After(delay):
			delay = min(delay*2, 250*time.Millisecond)
		}
	}
}

// stop ends the process group: SIGTERM, then SIGKILL after StopTimeout.
func (s *Supervisor) stop(pid int, exited <-chan struct{}) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(s.cfg.StopTimeout):
		s.log.Warn("code-server did not stop in time; killing", "pid", pid)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
	// Children that ignored SIGTERM must not outlive their IDE.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

func (s *Supervisor) pipeLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" {
			s.log.Debug(line)
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

// DialContext connects to code-server's socket; the arguments are ignored,
// so it can serve as an http.Transport's DialContext.
func (s *Supervisor) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", s.cfg.SocketPath)
}

// PID returns the process id while running, else 0.
func (s *Supervisor) PID() int { return s.Status().PID }

// Find locates the code-server launcher: path when set, then the one
// `make setup` installs under $CODEHUB_CACHE (default ~/.cache/codehub),
// then code-server on PATH.
func Find(path, version string, getenv func(string) string) (string, error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", err
		}
		return path, nil
	}
	cache := getenv("CODEHUB_CACHE")
	if cache == "" {
		if home := getenv("HOME"); home != "" {
			cache = filepath.Join(home, ".cache", "codehub")
		}
	}
	if cache != "" {
		p := filepath.Join(cache, "code-server-"+version, "bin", "code-server")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("code-server"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("code-server %s not found: run `make setup`, or set code-server.path (CODEHUB_CODE_SERVER_PATH)", version)
}
