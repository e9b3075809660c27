package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/buildinfo"
	"github.com/codehub-dev/codehub/internal/certs"
	"github.com/codehub-dev/codehub/internal/codeserver"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/codehub-dev/codehub/internal/gateway"
	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/codehub-dev/codehub/internal/resources"
	"github.com/codehub-dev/codehub/internal/throttle"
	"github.com/codehub-dev/codehub/internal/web"
	"github.com/codehub-dev/codehub/internal/workspace"
	"github.com/hashicorp/go-hclog"
)

// flagSpec maps a command-line flag to a configuration key.
type flagSpec struct{ name, path, usage string }

var flagSpecs = []flagSpec{
	{"bind-addr", "bind-addr", "address to listen on, host:port (default 127.0.0.1:8080)"},
	{"deployment-mode", "deployment-mode", "single or multi (env CODE_SERVER_DEPLOYMENT_MODE)"},
	{"auth", "auth", "password or none"},
	{"cert-key", "cert-key", "private key (PEM) of the certificate given with --cert"},
	{"upstream", "upstream", "proxy to this running IDE (http://host:port or unix:///path) instead of starting code-server"},
	{"data-dir", "data-dir", "directory for the gateway's own state"},
	{"user-data-dir", "user-data-dir", "code-server's user data directory"},
	{"extensions-dir", "extensions-dir", "code-server's extensions directory"},
	{"log-level", "log-level", "trace, debug, info, warn or error"},
	{"log", "log-level", "same as --log-level"},
	{"log-format", "log-format", "text or json"},
}

// certFlag is --cert (self-signed) or --cert=FILE.
type certFlag struct{ settings *[]config.Setting }

func (c certFlag) String() string   { return "" }
func (c certFlag) IsBoolFlag() bool { return true }
func (c certFlag) Set(v string) error {
	*c.settings = append(*c.settings, config.Setting{Path: "cert", Value: v, Flag: "--cert"})
	return nil
}

// parseServeFlags reads the command line into config settings.
func parseServeFlags(args []string, stdout io.Writer) (file string, settings []config.Setting, showVersion bool, err error) {
	fs := flag.NewFlagSet("codehub", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprint(stdout, usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&file, "config", "", "configuration file, .hcl or .yaml (env CODEHUB_CONFIG or CODE_SERVER_CONFIG)")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	fs.Var(certFlag{&settings}, "cert", "serve HTTPS: --cert for a self-signed certificate, --cert=FILE for your own")
	for _, f := range flagSpecs {
		f := f
		fs.Func(f.name, f.usage, func(v string) error {
			settings = append(settings, config.Setting{Path: f.path, Value: v, Flag: "--" + f.name})
			return nil
		})
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", nil, false, flag.ErrHelp
		}
		return "", nil, false, usageError{err.Error()}
	}
	switch fs.NArg() {
	case 0:
	case 1:
		abs, err := filepath.Abs(fs.Arg(0))
		if err != nil {
			return "", nil, false, err
		}
		settings = append(settings, config.Setting{Path: "folder", Value: abs, Flag: "folder argument"})
	default:
		return "", nil, false, usageError{fmt.Sprintf("one folder at most, got %q", fs.Args())}
	}
	return file, settings, showVersion, nil
}

func newLogger(cfg *config.Config, w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "codehub",
		Level:      hclog.LevelFromString(cfg.LogLevel),
		JSONFormat: cfg.LogFormat == "json",
		Output:     w,
	})
}

// runServe runs the gateway until ctx ends.
func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	file, settings, showVersion, err := parseServeFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if showVersion {
		printVersion(stdout)
		return nil
	}
	if file == "" {
		file = firstNonEmpty(getenv("CODEHUB_CONFIG"), getenv("CODE_SERVER_CONFIG"))
	}
	a, err := openApp(ctx, file, getenv, settings, stdout, stderr)
	if err != nil {
		return err
	}
	defer a.Close()
	cfg, log, m := a.cfg, a.log, a.metrics
	a.recordConfigChange(file)
	logFeatures(cfg, log)

	templates, err := web.Parse()
	if err != nil {
		return fmt.Errorf("templates: %w", err)
	}
	if cfg.DeploymentMode == config.ModeSingle && cfg.Auth == config.AuthNone && !isLoopback(cfg.BindAddr) {
		log.Warn("auth is \"none\": anyone who can reach this address gets a full IDE and shell", "bind_addr", cfg.BindAddr)
	}
	var adminName, adminPassword string
	if a.id != nil && a.id.MultiUser() {
		if adminName, adminPassword, err = a.ensureFirstAdmin(ctx); err != nil {
			return err
		}
	}

	// Where the IDE is.
	var (
		upstreams gateway.Upstreams
		health    func() gateway.Health
		sup       *codeserver.Supervisor
		runDir    string
		wsMgr     *workspace.Manager
		wsAPI     *workspaces
	)
	switch {
	case cfg.Upstream != "":
		t, err := upstreamTarget(cfg.Upstream)
		if err != nil {
			return err
		}
		if cfg.DeploymentMode == config.ModeMulti {
			log.Warn("upstream is set: every user shares that one IDE; use it only to try the sign-in", "upstream", cfg.Upstream)
		}
		upstreams = gateway.FixedUpstream{T: t}
		health = func() gateway.Health {
			return gateway.Health{Ready: true, Workspace: map[string]string{"upstream": cfg.Upstream}}
		}
	case cfg.DeploymentMode == config.ModeMulti:
		ws, err := a.openWorkspaces(ctx, getenv)
		if err != nil {
			return err
		}
		wsMgr, wsAPI = ws.mgr, ws
		upstreams = ws
		health = func() gateway.Health {
			return gateway.Health{Ready: true, Workspace: map[string]string{"workspaces": ws.summary}}
		}
	default:
		bin, err := findCodeServer(cfg, getenv)
		if err != nil {
			return err
		}
		runDir, err = os.MkdirTemp("", "codehub-")
		if err != nil {
			return fmt.Errorf("runtime directory: %w", err)
		}
		defer os.RemoveAll(runDir)
		sup = codeserver.New(codeserver.Config{
			Binary:         bin,
			SocketPath:     filepath.Join(runDir, "code-server.sock"),
			UserDataDir:    cfg.UserDataDir,
			ExtensionsDir:  cfg.ExtensionsDir,
			Folder:         cfg.Folder,
			Args:           cfg.CodeServer.Args,
			Env:            childEnv(os.Environ()),
			StartTimeout:   cfg.CodeServer.StartTimeout.D(),
			BackoffMax:     cfg.CodeServer.RestartBackoffMax.D(),
			KillWithParent: true,
			OnStateChange: func(st codeserver.State) {
				for _, s := range codeserver.States {
					v := 0.0
					if s == st {
						v = 1
					}
					m.WorkspaceUp.WithLabelValues(string(s)).Set(v)
				}
			},
			OnStart: func(_ time.Duration, err error) {
				result := "success"
				if err != nil {
					result = "failure"
				}
				m.WorkspaceStarts.WithLabelValues(result).Inc()
			},
		}, log.Named("code-server"))
		upstreams = gateway.FixedUpstream{
			T:     &proxy.Target{Key: "code-server", URL: &url.URL{Scheme: "http", Host: "code-server"}, Dial: sup.DialContext},
			Ready: sup.Ready,
		}
		health = func() gateway.Health {
			st := sup.Status()
			return gateway.Health{Ready: st.State == codeserver.StateRunning, Workspace: st}
		}
	}

	conns := proxy.NewRegistry(proxy.RegistryConfig{
		OnCount: func(n int) { m.WebSocketsOpen.Set(float64(n)) },
		// An open editor is a session in use: its messages keep the
		// session from ending as idle.
		OnActivity: func(sessionID string) {
			if a.id != nil {
				a.id.SessionActive(sessionID)
			}
		},
	})
	defer conns.Stop()
	a.onRevoke = func(ids []string) {
		for _, id := range ids {
			conns.CloseOwner(id, proxy.CloseRevoked, "signed out")
		}
	}
	opts := gateway.Options{
		Audit:     a.audit,
		Config:    cfg,
		Logger:    log.Named("gateway"),
		Metrics:   m,
		Identity:  a.id,
		Upstreams: upstreams,
		Conns:     conns,
		Throttle: throttle.New(throttle.Config{
			PerAddressBurst: cfg.LoginThrottle.PerAddressBurst, PerAddressInterval: cfg.LoginThrottle.PerAddressInterval.D(),
			GlobalBurst: cfg.LoginThrottle.GlobalBurst, GlobalInterval: cfg.LoginThrottle.GlobalInterval.D(),
		}),
		Templates: templates,
		Health:    health,
		Version:   buildinfo.Version(),
	}
	if wsAPI != nil {
		opts.Workspaces = wsAPI
		opts.MaxConnections = cfg.MultiUser.Limits.MaxGatewayConnections
		opts.InjectHTML = `<script src="` + web.StaticPrefix + `idle.js" defer></script>`
	}
	var (
		srv *gateway.Server
		res *resources.Manager
	)
	if a.id != nil && a.id.MultiUser() {
		res = a.wireAdmin(&opts, wsAPI, func(userID string) int { return srv.OpenConnections(userID) })
	}
	srv, err = gateway.New(opts)
	if err != nil {
		return err
	}
	if res != nil {
		resCtx, stopRes := context.WithCancel(context.WithoutCancel(ctx))
		defer stopRes()
		a.runResources(resCtx, res)
	}
	if wsMgr != nil {
		mgrCtx, stopMgr := context.WithCancel(context.WithoutCancel(ctx))
		defer stopMgr()
		go func() {
			if err := wsMgr.Run(mgrCtx); err != nil {
				log.Error("workspace manager stopped", "error", err)
			}
		}()
	}
	if a.id != nil {
		idCtx, stopID := context.WithCancel(context.WithoutCancel(ctx))
		defer stopID()
		go func() {
			if err := a.id.Run(idCtx); err != nil {
				log.Error("identity service stopped", "error", err)
			}
		}()
	}

	// Listen before announcing, so the printed address is the real one.
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.BindAddr, err)
	}
	scheme := "http"
	if cfg.TLSEnabled() {
		tlsCfg, certNote, err := tlsConfig(cfg)
		if err != nil {
			ln.Close()
			return err
		}
		if certNote != "" {
			log.Info("serving HTTPS with a self-signed certificate", "certificate", certNote)
		}
		ln = tls.NewListener(ln, tlsCfg)
		scheme = "https"
	}
	// Headers must arrive within ReadHeaderTimeout (a slow-loris attack
	// on headers), bodies are bounded by request-body (the gateway's
	// bodyDeadlines), idle keep-alive connections close after
	// IdleTimeout. No ReadTimeout or WriteTimeout: they would cut long
	// uploads and downloads, and the editor's WebSockets.
	httpSrv := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}

	var wg sync.WaitGroup
	supCtx, stopSup := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSup()
	supErr := make(chan error, 1)
	if sup != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			supErr <- sup.Run(supCtx)
		}()
	}
	var metricsSrv *http.Server
	if cfg.Metrics.Enabled && cfg.Metrics.BindAddr != "" {
		mln, err := net.Listen("tcp", cfg.Metrics.BindAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s for metrics: %w", cfg.Metrics.BindAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", gateway.MetricsHandler(gateway.Options{Metrics: m, Logger: log}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
			MaxHeaderBytes: 64 << 10}
		go func() { _ = metricsSrv.Serve(mln) }()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()

	announce(stdout, cfg, scheme, ln.Addr().String(), a.generatedPassword, a.passwordFile, adminName, adminPassword)
	log.Info("codehub started", "version", buildinfo.Version(), "mode", cfg.DeploymentMode, "addr", ln.Addr().String())

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		stopSup()
		wg.Wait()
		return fmt.Errorf("serve: %w", err)
	case err := <-supErr:
		if err != nil {
			httpSrv.Close()
			return err
		}
	}

	// Shut down: stop accepting, drain HTTP, close WebSockets with a close
	// frame, then stop the IDE.
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout.D())
	defer cancel()
	var shutWG sync.WaitGroup
	shutWG.Add(2)
	go func() {
		defer shutWG.Done()
		if err := httpSrv.Shutdown(shutCtx); err != nil {
			log.Warn("HTTP drain incomplete", "error", err)
		}
	}()
	go func() {
		defer shutWG.Done()
		conns.CloseAll(proxy.CloseGoingAway, "server shutting down", shutCtx.Done())
	}()
	shutWG.Wait()
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(shutCtx)
	}
	stopSup()
	wg.Wait()
	log.Info("stopped")
	return nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// findCodeServer locates the code-server launcher, naming the setting at
// fault when a configured path is wrong.
func findCodeServer(cfg *config.Config, getenv func(string) string) (string, error) {
	p, err := codeserver.Find(cfg.CodeServer.Path, config.CodeServerVersion, getenv)
	if err != nil && cfg.CodeServer.Path != "" {
		return "", fmt.Errorf("%s: code-server.path: %w", cfg.SourceOf("code-server.path"), err)
	}
	if err != nil {
		return "", fmt.Errorf("%w; or proxy to a running IDE with --upstream", err)
	}
	return p, nil
}

// childEnv is the IDE's environment: the gateway's, without its secrets and
// settings, since every terminal in the IDE inherits it.
func childEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PASSWORD", k == "HASHED_PASSWORD", k == "PORT",
			strings.HasPrefix(k, "CODEHUB_"), strings.HasPrefix(k, "CODE_SERVER_"):
			continue
		}
		out = append(out, kv)
	}
	return out
}

func upstreamTarget(raw string) (*proxy.Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "unix" {
		sock := u.Path
		return &proxy.Target{
			Key: raw, URL: &url.URL{Scheme: "http", Host: "upstream"},
			Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		}, nil
	}
	return &proxy.Target{Key: raw, URL: &url.URL{Scheme: u.Scheme, Host: u.Host}}, nil
}

func tlsConfig(cfg *config.Config) (*tls.Config, string, error) {
	var (
		cert tls.Certificate
		note string
		err  error
	)
	if f := cfg.TLSCertFile(); f != "" {
		cert, err = certs.Load(f, cfg.CertKey)
	} else {
		host, _, _ := net.SplitHostPort(cfg.BindAddr)
		cert, note, err = certs.SelfSigned(cfg.DataDir, []string{host})
	}
	if err != nil {
		return nil, "", err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"}, // WebSockets need HTTP/1.1 upgrades
	}, note, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// announce prints where to go and how to sign in.
func announce(w io.Writer, cfg *config.Config, scheme, addr, generatedPassword, passwordFile, adminName, adminPassword string) {
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	fmt.Fprintf(w, "codehub %s, %s-user mode\n", buildinfo.Version(), cfg.DeploymentMode)
	fmt.Fprintf(w, "  URL:       %s://%s/\n", scheme, net.JoinHostPort(host, port))
	switch {
	case cfg.DeploymentMode == config.ModeMulti && adminName != "":
		fmt.Fprintf(w, "  Admin:     %s / %s   (the first administrator; change the password once signed in)\n", adminName, adminPassword)
	case cfg.DeploymentMode == config.ModeMulti:
		fmt.Fprintln(w, "  Sign-in:   user accounts (codehub user create --help; a lost password: codehub user set-password NAME)")
	case cfg.Auth == config.AuthNone:
		fmt.Fprintln(w, "  Auth:      none")
	case generatedPassword != "":
		fmt.Fprintf(w, "  Password:  %s   (generated; kept in %s)\n", generatedPassword, passwordFile)
	default:
		fmt.Fprintln(w, "  Password:  as configured")
	}
	if cfg.DeploymentMode == config.ModeMulti {
		base := fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(host, port))
		if cfg.MultiUser.Features.AdminDashboard {
			fmt.Fprintf(w, "  Dashboard: %s/admin   (administrators; everyone's own page: %s/account)\n", base, base)
		} else {
			fmt.Fprintf(w, "  Account:   %s/account\n", base)
		}
	}
	if cfg.Upstream != "" {
		fmt.Fprintf(w, "  Upstream:  %s\n", cfg.Upstream)
	} else if cfg.Folder != "" {
		fmt.Fprintf(w, "  Folder:    %s\n", cfg.Folder)
	}
}
