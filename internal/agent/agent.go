// Package agent is `codehub agent`, the process that is one user's
// workspace: it runs as that user, supervises their code-server (bound to a
// unix socket only the agent can open) and serves it to the gateway on one
// TCP port that demands the per-workspace secret. It also answers the
// gateway's questions of agentapi: health, activity (real input, not an
// open tab) and usage, and stops cleanly on request.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/codeserver"
	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/hashicorp/go-hclog"
)

// Config describes one workspace agent. Zero durations take their
// defaults.
type Config struct {
	// Listen is the TCP address the gateway reaches the agent on
	// (default 127.0.0.1:0, a free port).
	Listen string
	// Secret must be sent by every request in agentapi.SecretHeader; at
	// least MinSecretLen bytes (see LoadSecret).
	Secret []byte

	// CodeServer is the code-server launcher.
	CodeServer string
	// UserDataDir, ExtensionsDir and Folder are passed to code-server
	// when set.
	UserDataDir, ExtensionsDir, Folder string
	// ExtraArgs are further code-server arguments.
	ExtraArgs []string
	// Env is code-server's environment (nil: the agent's own). SecretEnv
	// is removed from it: every terminal in the IDE inherits it.
	Env []string

	// StoragePath is the directory whose storage use is reported (default
	// the parent of UserDataDir; none when that is unset too).
	StoragePath string
	// StorageLimit is the reported storage limit in bytes (0: unknown).
	StorageLimit int64

	// WaitStart, when set, holds code-server back until one byte has been
	// read from it: the gateway first moves the agent into the workspace's
	// cgroup, so that code-server starts inside it.
	WaitStart io.Reader
	// ReadyOutput receives one line, agentapi.ReadyPrefix and the address,
	// once the agent listens (before code-server is ready).
	ReadyOutput io.Writer
	// Logger receives the agent's logs (code-server's output at debug).
	Logger hclog.Logger
	// Version is reported by the health endpoint.
	Version string

	// IDEWait is how long a request waits for a starting code-server
	// before it is answered 503 (default 5s).
	IDEWait time.Duration
	// CPUInterval is how often the IDE's processes are measured
	// (default 5s).
	CPUInterval time.Duration
	// BusyCPU is the share of one CPU the IDE's processes must use between
	// two measures to count as activity (default 0.02). VS Code's
	// automatic port forwarding scans every process's file descriptors
	// every few seconds, which alone may exceed it on a crowded machine:
	// set "remote.autoForwardPortsSource": "output" in the user's settings
	// to avoid that.
	BusyCPU float64
	// StorageInterval is the least time between two walks of StoragePath
	// (default 3m).
	StorageInterval time.Duration
	// ShutdownTimeout bounds the draining of requests on stop (default 5s).
	ShutdownTimeout time.Duration
	// StartTimeout, StopTimeout and BackoffMax tune the supervisor (see
	// codeserver.Config).
	StartTimeout, StopTimeout, BackoffMax time.Duration
}

func (c *Config) defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:0"
	}
	if c.StoragePath == "" && c.UserDataDir != "" {
		c.StoragePath = filepath.Dir(filepath.Clean(c.UserDataDir))
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	c.Env = withoutSecret(c.Env)
	if c.ReadyOutput == nil {
		c.ReadyOutput = io.Discard
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.IDEWait <= 0 {
		c.IDEWait = 5 * time.Second
	}
	if c.CPUInterval <= 0 {
		c.CPUInterval = 5 * time.Second
	}
	if c.BusyCPU <= 0 {
		c.BusyCPU = busyShare
	}
	if c.StorageInterval <= 0 {
		c.StorageInterval = 3 * time.Minute
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 5 * time.Second
	}
}

func withoutSecret(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, SecretEnv+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// ideUserDataDir is code-server's user data directory: dir, or its
// default under XDG_DATA_HOME (~/.local/share) in env.
func ideUserDataDir(dir string, env []string) string {
	if dir != "" {
		return dir
	}
	var home, data string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "HOME="); ok {
			home = v
		} else if v, ok := strings.CutPrefix(kv, "XDG_DATA_HOME="); ok {
			data = v
		}
	}
	if data == "" && home != "" {
		data = filepath.Join(home, ".local", "share")
	}
	if data == "" {
		return ""
	}
	return filepath.Join(data, "code-server")
}

// machineSettings are the workspace's machine-level defaults, under the
// user's own settings (which override them). VS Code's automatic port
// forwarding scans every process's file descriptors every few seconds by
// default: 3-20% of a CPU for an idle tab. Ports announced in terminal
// output are still forwarded.
const machineSettings = `{
  // Written by codehub once; edit freely, your User settings override these.
  "remote.autoForwardPortsSource": "output"
}
`

// machineDefaults writes <user data dir>/Machine/settings.json when it does
// not exist yet; it never changes an existing file.
func machineDefaults(userDataDir string) error {
	if userDataDir == "" {
		return nil
	}
	dir := filepath.Join(userDataDir, "Machine")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "settings.json"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := f.WriteString(machineSettings); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// owner is the relay owner of every WebSocket: the agent serves one user.
const owner = "workspace"

// agent is one running workspace.
type agent struct {
	cfg      Config
	log      hclog.Logger
	sup      *codeserver.Supervisor
	conns    *proxy.Registry
	act      *activity
	storage  *storageMeter
	started  time.Time
	stopping atomic.Bool
}

// Run runs the workspace until ctx ends or the gateway asks it to stop,
// then stops code-server and returns nil. It returns an error without
// starting anything when the configuration is unusable (no or short
// secret, no code-server, the address taken), and when WaitStart ends
// before its byte arrives.
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	if err := checkSecret(cfg.Secret); err != nil {
		return err
	}
	if fi, err := os.Stat(cfg.CodeServer); err != nil {
		return fmt.Errorf("code-server launcher: %w", err)
	} else if fi.IsDir() {
		return fmt.Errorf("code-server launcher %s is a directory", cfg.CodeServer)
	}
	log := cfg.Logger
	// A new home (a fresh volume, a warm workspace) has none of these yet;
	// code-server would greet the user with "folder does not exist".
	for _, d := range []string{cfg.Folder, cfg.UserDataDir, cfg.ExtensionsDir} {
		if d != "" {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return fmt.Errorf("create %s: %w", d, err)
			}
		}
	}
	if err := machineDefaults(ideUserDataDir(cfg.UserDataDir, cfg.Env)); err != nil {
		log.Warn("machine settings", "error", err)
	}

	// The socket lives in a directory only this user can enter.
	runDir, err := os.MkdirTemp("", "codehub-agent-")
	if err != nil {
		return fmt.Errorf("runtime directory: %w", err)
	}
	defer os.RemoveAll(runDir)

	a := &agent{cfg: cfg, log: log, act: &activity{now: time.Now}, started: time.Now()}
	a.sup = codeserver.New(codeserver.Config{
		Binary:         cfg.CodeServer,
		SocketPath:     filepath.Join(runDir, "code-server.sock"),
		UserDataDir:    cfg.UserDataDir,
		ExtensionsDir:  cfg.ExtensionsDir,
		Folder:         cfg.Folder,
		Args:           cfg.ExtraArgs,
		Env:            cfg.Env,
		KillWithParent: true,
		StartTimeout:   cfg.StartTimeout,
		StopTimeout:    cfg.StopTimeout,
		BackoffMax:     cfg.BackoffMax,
	}, log.Named("code-server"))
	input := newClassifier(ideUserDataDir(cfg.UserDataDir, cfg.Env), cfg.ExtensionsDir)
	a.conns = proxy.NewRegistry(proxy.RegistryConfig{
		OnClientMessage: func(_ string, mt int, head []byte) {
			in, term := input.classify(mt, head)
			switch {
			case term:
				a.act.terminalInput()
			case in:
				a.act.input()
			}
			if log.IsTrace() {
				log.Trace("browser message", "input", in, "frames", describe(mt, head))
			}
		},
	})
	defer a.conns.Stop()

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	a.storage = &storageMeter{path: cfg.StoragePath, limit: cfg.StorageLimit, interval: cfg.StorageInterval, log: log.Named("storage"), ctx: runCtx}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{
		Handler: routes(routeDeps{
			secret:   cfg.Secret,
			log:      log.Named("http"),
			health:   a.health,
			activity: a.activity,
			usage:    a.usage,
			stop:     stop,
			ide:      newIDEHandler(a.sup, a.conns, cfg.IDEWait, a.stopping.Load, log.Named("proxy")),
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	addr := ln.Addr().String()
	if _, err := fmt.Fprintf(cfg.ReadyOutput, "%s%s\n", agentapi.ReadyPrefix, addr); err != nil {
		srv.Close()
		return fmt.Errorf("announce the address: %w", err)
	}
	log.Info("agent listening", "addr", addr, "version", cfg.Version, "wait_start", cfg.WaitStart != nil)

	var bg sync.WaitGroup
	supCtx, stopSup := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSup()
	supDone := make(chan error, 1)
	startErr := a.waitStart(runCtx)
	if startErr == nil && runCtx.Err() == nil {
		bg.Add(2)
		go func() {
			defer bg.Done()
			supDone <- a.sup.Run(supCtx)
		}()
		go func() {
			defer bg.Done()
			a.act.sampleCPU(runCtx, newTreeSampler(os.DirFS("/proc"), os.Getpagesize()), a.sup.PID, cfg.CPUInterval, cfg.BusyCPU, log.Named("cpu"))
		}()
		a.storage.Bytes() // start the first walk now
		select {
		case <-runCtx.Done():
		case err := <-serveErr:
			startErr = fmt.Errorf("serve: %w", err)
		case err := <-supDone:
			startErr = err // code-server cannot be started at all
		}
	}

	// Stop: refuse new work, drain requests, close the WebSockets with a
	// close frame (VS Code reconnects elsewhere), then stop code-server.
	a.stopping.Store(true)
	log.Info("stopping")
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var drain sync.WaitGroup
	drain.Add(2)
	go func() {
		defer drain.Done()
		if err := srv.Shutdown(shutCtx); err != nil {
			log.Warn("requests still running at stop", "error", err)
			srv.Close()
		}
	}()
	go func() {
		defer drain.Done()
		a.conns.CloseAll(proxy.CloseGoingAway, "workspace stopping", shutCtx.Done())
	}()
	drain.Wait()
	stop()
	stopSup()
	bg.Wait()
	a.storage.wait()
	if startErr != nil {
		return startErr
	}
	log.Info("stopped")
	return nil
}

// waitStart reads the start byte from WaitStart when it is set. It returns
// nil when ctx ends first.
func (a *agent) waitStart(ctx context.Context) error {
	if a.cfg.WaitStart == nil {
		return nil
	}
	got := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := io.ReadFull(a.cfg.WaitStart, b[:])
		got <- err
	}()
	a.log.Info("waiting for the start byte on stdin")
	select {
	case err := <-got:
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("end of input")
			}
			return fmt.Errorf("waiting for the start byte: %w", err)
		}
		return nil
	case <-ctx.Done():
		return nil
	}
}

func (a *agent) health() agentapi.Health {
	st := a.sup.Status()
	var h agentapi.Health
	switch {
	case a.stopping.Load():
		h.Status = "stopping"
	case st.State == codeserver.StateRunning:
		h.Status = "running"
	default:
		h.Status = "starting"
	}
	h.IDE.State, h.IDE.PID, h.IDE.Restarts, h.IDE.Since = string(st.State), st.PID, st.Restarts, st.Since
	h.StartedAt, h.Version = a.started, a.cfg.Version
	return h
}

func (a *agent) activity() agentapi.Activity {
	act := a.act.snapshot()
	act.Connections = a.conns.Count()
	return act
}

func (a *agent) usage() agentapi.Usage {
	rss, cpu := a.act.usage()
	sp := a.storage.Measure()
	return agentapi.Usage{
		StorageBytes:          sp.Used,
		StorageLimitBytes:     a.cfg.StorageLimit,
		StorageCapacityBytes:  sp.Capacity,
		StorageAvailableBytes: sp.Available,
		StorageFull:           sp.Capacity > 0 && sp.Full(),
		MemoryBytes:           rss,
		CPUSeconds:            cpu,
	}
}
