// Command loadgen compares the cost of reaching the same tiny upstream three
// ways: directly, through nginx, and through the codehub gateway. `make
// bench` runs it as
//
//	go run ./cmd/loadgen -gateway bin/codehub
//
// In one run it starts an in-process upstream (GET /bench answers a fixed
// 1 KiB body, /ws is a WebSocket echo), nginx as a child process with a
// generated configuration, and the codehub binary in --upstream mode; it
// signs in to codehub like a browser and then measures each path in turn:
//
//   - HTTP throughput and latency, with wrk when it is on PATH and with a
//     built-in Go load generator otherwise;
//   - the round-trip time of small WebSocket messages over one connection;
//   - for codehub only, the latency of a full browser sign-in.
//
// The result is a Markdown table on standard output; progress messages go
// to standard error. Everything runs on one machine, including the
// upstream, so the numbers compare the paths with each other rather than
// describe production capacity.
//
// Then it measures many users with workspaces through one gateway
// (workspaces.go; -workspaces N users, 100 by default, 0 to skip): the
// real codehub binary in multi-user mode, N users signing in and opening
// their IDE at once, each workspace the real `codehub agent` supervising a
// stand-in for code-server, which is this same executable run under the
// name codehub-loadgen-ide (standin.go). -workspaces-only measures that
// alone:
//
//	go run ./cmd/loadgen -gateway bin/codehub -workspaces 100 -workspaces-only
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"maps"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/gorilla/websocket"
)

const (
	benchPath     = "/bench"          // the upstream's HTTP endpoint
	wsPath        = "/ws"             // the upstream's WebSocket echo
	bodySize      = 1024              // bytes answered by benchPath
	wsMessageSize = 64                // bytes of each WebSocket message
	wsWarmup      = 200               // round trips before measuring
	loginRounds   = 20                // sign-ins timed for the login latency
	sessionCookie = "codehub_session" // codehub's default session cookie name
	nginxPath     = "/usr/sbin/nginx" // where the Debian package installs nginx
	wrkThreads    = 2                 // wrk -t

	startTimeout   = 20 * time.Second // for nginx and codehub to answer
	stopTimeout    = 5 * time.Second  // between SIGTERM and SIGKILL
	requestTimeout = 10 * time.Second // for single requests and handshakes
	wsRoundTimeout = 5 * time.Second  // for one WebSocket round trip
)

func main() {
	// The workspace scenario runs this executable as each workspace's
	// code-server, through a link of the stand-in's name.
	if isStandin(os.Args[0]) {
		os.Exit(standinMain(os.Args[1:], os.Stderr))
	}
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first Ctrl-C, restore the default handling so that a second
	// one ends loadgen at once. The children are still stopped: by the
	// deferred cleanups after the first signal, by Pdeathsig after a second.
	context.AfterFunc(ctx, stop)
	err = run(ctx, opts, os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil // before stop, which cancels ctx
	stop()
	if err != nil {
		if interrupted {
			fmt.Fprintln(os.Stderr, "loadgen: interrupted")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
}

// options are the command-line flags.
type options struct {
	gateway     string        // path of the codehub binary
	duration    time.Duration // of each HTTP load run
	wsRounds    int           // measured WebSocket round trips per path
	connections int           // concurrent HTTP connections
	skipNginx   bool          // measure without nginx
	burst       int           // concurrent sign-ins in the multi-user burst

	workspaces     int           // users with workspaces through one gateway (0: not measured)
	workspaceLoad  time.Duration // of the workspace scenario's HTTP load
	workspacesOnly bool          // measure the workspace scenario alone
}

// parseFlags reads and validates the command line (without the program
// name).
func parseFlags(args []string, output io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		fmt.Fprintln(output, "Usage: loadgen -gateway PATH [flags]")
		fmt.Fprintln(output, "Compares HTTP and WebSocket performance of an upstream reached directly, through nginx and through codehub.")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.gateway, "gateway", "", "path of the built codehub binary (required)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of each HTTP load run")
	fs.IntVar(&o.wsRounds, "ws-rounds", 5000, "measured WebSocket round trips per path")
	fs.IntVar(&o.connections, "connections", 64, "concurrent HTTP connections")
	fs.IntVar(&o.burst, "burst", 200, "concurrent sign-ins in the multi-user burst")
	fs.BoolVar(&o.skipNginx, "skip-nginx", false, "do not measure nginx (print a note instead), e.g. when it is not installed")
	fs.IntVar(&o.workspaces, "workspaces", 100, "users with workspaces through one gateway, measured last (0: not measured; each workspace takes about 35 MiB)")
	fs.DurationVar(&o.workspaceLoad, "workspace-load", 20*time.Second, "length of the HTTP load of the workspace scenario")
	fs.BoolVar(&o.workspacesOnly, "workspaces-only", false, "measure only the workspace scenario (needs -workspaces)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	switch {
	case fs.NArg() > 0:
		return options{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.gateway == "":
		return options{}, errors.New("-gateway is required (the codehub binary, e.g. bin/codehub)")
	case o.duration < time.Second:
		return options{}, fmt.Errorf("-duration %v: must be at least 1s", o.duration)
	case o.wsRounds < 1:
		return options{}, fmt.Errorf("-ws-rounds %d: must be positive", o.wsRounds)
	case o.connections < 1:
		return options{}, fmt.Errorf("-connections %d: must be positive", o.connections)
	case o.burst < 1:
		return options{}, fmt.Errorf("-burst %d: must be positive", o.burst)
	case o.workspaces < 0:
		return options{}, fmt.Errorf("-workspaces %d: must not be negative", o.workspaces)
	case o.workspaces > maxWorkspaceUsers:
		return options{}, fmt.Errorf("-workspaces %d: at most %d", o.workspaces, maxWorkspaceUsers)
	case o.workspaceLoad < time.Second:
		return options{}, fmt.Errorf("-workspace-load %v: must be at least 1s", o.workspaceLoad)
	case o.workspacesOnly && o.workspaces == 0:
		return options{}, errors.New("-workspaces-only needs -workspaces N")
	}
	return o, nil
}

// run starts the upstream, nginx and codehub, measures every path and
// writes the report to stdout; with -workspaces it then measures the
// workspace scenario (alone with -workspaces-only). It stops what it
// started before returning.
func run(ctx context.Context, opts options, stdout, progress io.Writer) error {
	gateway, err := filepath.Abs(opts.gateway)
	if err != nil {
		return fmt.Errorf("-gateway: %w", err)
	}
	if _, err := os.Stat(gateway); err != nil {
		return fmt.Errorf("-gateway: %w (build it with `make build`)", err)
	}

	tmp, err := os.MkdirTemp("", "codehub-loadgen-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)

	b := &bench{
		opts: opts,
		client: &http.Client{
			Transport:     &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true},
			CheckRedirect: noRedirect,
			Timeout:       requestTimeout,
		},
		progress: progress,
	}
	rep := report{when: time.Now(), opts: opts}
	if !opts.workspacesOnly {
		if err := b.compare(ctx, gateway, tmp, &rep); err != nil {
			return err
		}
	}
	if opts.workspaces > 0 {
		if rep.workspaces, err = b.measureWorkspaces(ctx, gateway, filepath.Join(tmp, "workspaces")); err != nil {
			return fmt.Errorf("codehub workspaces: %w", err)
		}
	}
	if err := rep.write(stdout); err != nil {
		return err
	}
	// A misroute, one user's request answered by another's workspace, fails
	// the run; errors are reported.
	if w := rep.workspaces; w != nil && w.misroutes > 0 {
		return fmt.Errorf("codehub workspaces: %d MISROUTES under load (first problem: %s)", w.misroutes, w.firstError)
	}
	return nil
}

// compare measures the upstream directly, through nginx and through
// codehub, then codehub's sign-ins in single- and multi-user mode, into
// rep.
func (b *bench) compare(ctx context.Context, gateway, tmp string, rep *report) error {
	var nginxBin string
	var err error
	if b.opts.skipNginx {
		rep.notes = append(rep.notes, "nginx: not measured (-skip-nginx)")
	} else if nginxBin, err = findNginx(); err != nil {
		return err
	}
	if b.wrk, err = exec.LookPath("wrk"); err != nil {
		b.wrk = ""
		b.logf("wrk not found on PATH: using the built-in Go load generator")
	}
	rep.httpTool = b.httpToolDescription()

	up, err := startUpstream()
	if err != nil {
		return err
	}
	defer up.Close()
	targets := []*target{{name: "direct", base: "http://" + up.addr}}

	if nginxBin != "" {
		base, stopNginx, err := startNginx(ctx, nginxBin, filepath.Join(tmp, "nginx"), up.addr)
		if err != nil {
			return err
		}
		defer stopNginx()
		targets = append(targets, &target{name: "nginx", base: base})
	}

	password := rand.Text()
	base, stopCodehub, err := startCodehub(ctx, gateway, filepath.Join(tmp, "codehub"), up.addr, password)
	if err != nil {
		return err
	}
	defer stopCodehub()
	cookie, err := b.signIn(ctx, base, password)
	if err != nil {
		return fmt.Errorf("codehub: %w", err)
	}
	codehub := &target{name: "codehub", base: base, header: http.Header{"Cookie": {cookie.String()}}}
	targets = append(targets, codehub)

	for _, t := range targets {
		r, err := b.measure(ctx, t)
		if err != nil {
			return err
		}
		rep.rows = append(rep.rows, r)
	}
	b.logf("codehub: %d sign-ins", loginRounds)
	if rep.login, err = b.measureLogin(ctx, codehub.base, password, loginRounds); err != nil {
		return fmt.Errorf("codehub login latency: %w", err)
	}
	stopCodehub()
	if rep.multi, err = b.measureMultiUser(ctx, gateway, filepath.Join(tmp, "multi"), up.addr); err != nil {
		return fmt.Errorf("codehub multi-user: %w", err)
	}
	return nil
}

// findNginx returns the nginx binary: the Debian package's, else the one on
// PATH.
func findNginx() (string, error) {
	if _, err := os.Stat(nginxPath); err == nil {
		return nginxPath, nil
	}
	p, err := exec.LookPath("nginx")
	if err != nil {
		return "", fmt.Errorf("nginx not found at %s or on PATH (install the nginx package, or pass -skip-nginx)", nginxPath)
	}
	return p, nil
}

// target is one way of reaching the upstream.
type target struct {
	name   string      // row label: direct, nginx or codehub
	base   string      // http://host:port
	header http.Header // sent with every request: the session cookie for codehub
}

// httpResult is the outcome of one HTTP load run.
type httpResult struct {
	rps      float64
	p50, p99 time.Duration
	non2xx   int // bad responses (wrk counts only status >= 400)
	errors   int // connection, read and write errors and timeouts
}

// wsResult is the outcome of one WebSocket round-trip run.
type wsResult struct{ p50, p99 time.Duration }

// row is the measurements of one target.
type row struct {
	name string
	http httpResult
	ws   wsResult
}

// bench holds what every measurement needs.
type bench struct {
	opts     options
	wrk      string       // path of wrk, or "" for the built-in generator
	client   *http.Client // for checks and sign-ins; never follows redirects
	progress io.Writer    // progress messages
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "loadgen: "+format+"\n", args...)
}

func (b *bench) httpToolDescription() string {
	if b.wrk != "" {
		return fmt.Sprintf("wrk -t%d -c%d -d%s --latency", min(wrkThreads, b.opts.connections),
			b.opts.connections, wrkDuration(b.opts.duration))
	}
	return fmt.Sprintf("built-in Go generator, %d keep-alive workers for %v", b.opts.connections, b.opts.duration)
}

// measure runs the HTTP load and the WebSocket round trips against t.
func (b *bench) measure(ctx context.Context, t *target) (row, error) {
	r := row{name: t.name}
	if err := b.check(ctx, t); err != nil {
		return r, err
	}
	b.logf("%s: HTTP load on %s%s", t.name, t.base, benchPath)
	var err error
	if b.wrk != "" {
		r.http, err = runWrk(ctx, b.wrk, t, b.opts)
	} else {
		r.http, err = runBuiltin(ctx, t, b.opts)
	}
	if err != nil {
		return r, fmt.Errorf("%s: HTTP load: %w", t.name, err)
	}
	if r.http.non2xx > 0 || r.http.errors > 0 {
		b.logf("%s: warning: %d bad responses and %d errors under load", t.name, r.http.non2xx, r.http.errors)
	}
	// The path must still work after the load; for codehub this also
	// proves that the session cookie was accepted throughout.
	if err := b.check(ctx, t); err != nil {
		return r, fmt.Errorf("after the HTTP load: %w", err)
	}
	b.logf("%s: %d WebSocket round trips", t.name, b.opts.wsRounds)
	if r.ws, err = measureWS(ctx, t, b.opts.wsRounds); err != nil {
		return r, fmt.Errorf("%s: WebSocket: %w", t.name, err)
	}
	return r, nil
}

// check makes one request to t and insists on the upstream's answer, so
// that a proxy error or a refused session cookie fails loudly instead of
// being measured.
func (b *bench) check(ctx context.Context, t *target) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+benchPath, nil)
	if err != nil {
		return err
	}
	maps.Copy(req.Header, t.header)
	resp, err := b.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: GET %s: %w", t.name, benchPath, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("%s: GET %s: read body: %w", t.name, benchPath, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusFound:
		return fmt.Errorf("%s: GET %s answered %s: the session cookie was not accepted", t.name, benchPath, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s: GET %s answered %s: %.200s", t.name, benchPath, resp.Status, body)
	case len(body) != bodySize:
		return fmt.Errorf("%s: GET %s answered %d bytes, want %d", t.name, benchPath, len(body), bodySize)
	}
	return nil
}

// noRedirect makes an http.Client return redirects instead of following
// them.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// ---- The upstream ----

// upstream is the in-process server that every path ends at.
type upstream struct {
	srv  *http.Server
	addr string // host:port
}

// startUpstream serves GET /bench (1 KiB of text) and a WebSocket echo on
// /ws on a free loopback port.
func startUpstream() (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream: listen: %w", err)
	}
	body := bytes.Repeat([]byte("codehub!"), bodySize/8)
	upgrader := &websocket.Upgrader{
		EnableCompression: false,
		// Origins are the proxies' business (codehub checks them); the
		// echo accepts every one.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+benchPath, func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET "+wsPath, func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade has answered the client
		}
		defer conn.Close()
		echoMessages(conn)
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: requestTimeout,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.Serve(ln) }()
	return &upstream{srv: srv, addr: ln.Addr().String()}, nil
}

// Close stops the upstream; WebSocket echoes end when their clients close.
func (u *upstream) Close() error { return u.srv.Close() }

// ---- Child processes: nginx and codehub ----

// nginxTemplate is nginx's configuration. Non-upgrade requests get an
// empty Connection header rather than the documentation's "close", which
// would defeat the upstream keepalive pool.
var nginxTemplate = template.Must(template.New("nginx.conf").Parse(`# Generated by codehub's cmd/loadgen.
worker_processes auto;
error_log "{{.Dir}}/error.log" warn;
pid "{{.Dir}}/nginx.pid";

events {
    worker_connections 4096;
}

http {
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path "{{.Dir}}/client_body";
    proxy_temp_path "{{.Dir}}/proxy";
    fastcgi_temp_path "{{.Dir}}/fastcgi";
    uwsgi_temp_path "{{.Dir}}/uwsgi";
    scgi_temp_path "{{.Dir}}/scgi";
    # Like Go's servers, do not close busy client connections every 1000
    # requests.
    keepalive_requests 1000000;

    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      '';
    }

    upstream bench_upstream {
        server {{.Upstream}};
        keepalive 64;
        keepalive_requests 1000000;
    }

    server {
        listen {{.Listen}};

        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }
    }
}
`))

// nginxConfig renders nginx.conf for a prefix directory dir, listening on
// listen and proxying to upstream (both host:port).
func nginxConfig(dir, listen, upstream string) (string, error) {
	var b strings.Builder
	err := nginxTemplate.Execute(&b, struct{ Dir, Listen, Upstream string }{dir, listen, upstream})
	if err != nil {
		return "", fmt.Errorf("nginx.conf: %w", err)
	}
	return b.String(), nil
}

// startNginx runs nginx in the foreground with its own configuration in
// dir and waits until it proxies. It returns nginx's base URL and the
// function that stops it.
func startNginx(ctx context.Context, bin, dir, upstreamAddr string) (base string, stop func(), err error) {
	// 0755: when loadgen runs as root, nginx's workers run as nobody.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("nginx: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return "", nil, fmt.Errorf("nginx: %w", err)
	}
	conf, err := nginxConfig(dir, addr, upstreamAddr)
	if err != nil {
		return "", nil, err
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return "", nil, fmt.Errorf("nginx: %w", err)
	}
	// -e: the error log before the configuration is read, which is
	// otherwise /var/log/nginx/error.log.
	args := []string{"-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;"}
	c, err := startChild("nginx", bin, args, os.Environ(), dir)
	if err != nil {
		return "", nil, err
	}
	base = "http://" + addr
	if err := c.waitReady(ctx, base+benchPath); err != nil {
		c.stop()
		return "", nil, fmt.Errorf("%w\nerror.log: %s", err, readTail(filepath.Join(dir, "error.log")))
	}
	return base, c.stop, nil
}

// startCodehub runs the gateway binary in front of the upstream, with its
// state in dir, and waits until /healthz answers 200. It returns the
// gateway's base URL and the function that stops it.
func startCodehub(ctx context.Context, bin, dir, upstreamAddr, password string) (base string, stop func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("codehub: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return "", nil, fmt.Errorf("codehub: %w", err)
	}
	args := []string{"--bind-addr", addr, "--upstream", "http://" + upstreamAddr,
		"--data-dir", dir, "--log-level", "warn"}
	env := []string{"PASSWORD=" + password, "HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	c, err := startChild("codehub", bin, args, env, dir)
	if err != nil {
		return "", nil, err
	}
	base = "http://" + addr
	if err := c.waitReady(ctx, base+"/healthz"); err != nil {
		c.stop()
		return "", nil, err
	}
	return base, c.stop, nil
}

// freeAddr returns a loopback address with a port that was free a moment
// ago. Another process could take it before the child binds it; the child
// then fails to start, which waitReady reports.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// child is a started process whose recent output is kept for error
// messages.
type child struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // the result of Wait; read it only after done
}

// startChild starts bin in its own process group, so that a Ctrl-C in the
// terminal reaches loadgen only and loadgen stops its children in order.
func startChild(name, bin string, args, env []string, dir string) (*child, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	out := &tailBuffer{limit: 16 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childSysProcAttr()
	cmd.WaitDelay = stopTimeout // do not hang on a grandchild holding the output pipe
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// waitReady polls url until it answers 200, the child exits, ctx ends or
// startTimeout passes.
func (c *child) waitReady(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second, CheckRedirect: noRedirect}
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	lastErr := errors.New("no answer yet")
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err != nil {
			lastErr = err
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				client.CloseIdleConnections()
				return nil
			}
			lastErr = fmt.Errorf("answered %s", resp.Status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return fmt.Errorf("%s exited while starting (%v); its output:\n%s", c.name, c.err, c.out)
		case <-deadline.C:
			return fmt.Errorf("%s not ready after %v: GET %s: %v; its output:\n%s", c.name, startTimeout, url, lastErr, c.out)
		case <-tick.C:
		}
	}
}

// stop ends the child's process group: SIGTERM, then SIGKILL if it is still
// running after stopTimeout. It returns once the child has exited.
func (c *child) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	pgid := c.cmd.Process.Pid // the child leads its own process group
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-c.done:
	case <-timer.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-c.done
	}
}

// tailBuffer keeps the last limit bytes written to it. It is safe for
// concurrent use.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// readTail returns the end of a log file, for error messages.
func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	const limit = 4 << 10
	if len(b) > limit {
		b = b[len(b)-limit:]
	}
	return string(b)
}

// ---- Signing in ----

// csrfInput finds the login form's hidden CSRF field.
var csrfInput = regexp.MustCompile(`<input[^>]*\bname="csrf"[^>]*\bvalue="([^"]*)"`)

// extractCSRF returns the CSRF token of a login page.
func extractCSRF(page string) (string, error) {
	m := csrfInput.FindStringSubmatch(page)
	if m == nil || m[1] == "" {
		return "", errors.New(`no <input name="csrf" value="..."> in the login page`)
	}
	return html.UnescapeString(m[1]), nil
}

// signIn signs in like a browser with a fresh cookie jar: GET /login for
// the form and its CSRF cookie, then POST the form. It returns the session
// cookie.
func (b *bench) signIn(ctx context.Context, base, password string) (*http.Cookie, error) {
	return signInAs(ctx, b.client.Transport, base, "", password)
}

// signInAs is signIn with a username (multi-user mode; "" for single-user
// mode's password alone), over transport.
func signInAs(ctx context.Context, transport http.RoundTripper, base, username, password string) (*http.Cookie, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: transport, Jar: jar, CheckRedirect: noRedirect, Timeout: requestTimeout}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/login", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/html")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /login: %w", err)
	}
	page, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("GET /login: read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /login answered %s", resp.Status)
	}
	csrf, err := extractCSRF(string(page))
	if err != nil {
		return nil, fmt.Errorf("GET /login: %w", err)
	}

	form := url.Values{"csrf": {csrf}, "password": {password}, "to": {"/"}}
	if username != "" {
		form.Set("username", username)
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, base+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Origin", base)
	resp, err = client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST /login: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("POST /login answered %s, want 303 See Other", resp.Status)
	}
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			return &http.Cookie{Name: c.Name, Value: c.Value}, nil
		}
	}
	return nil, fmt.Errorf("POST /login set no %s cookie", sessionCookie)
}

// measureLogin times n sequential sign-ins and returns their sorted
// durations.
func (b *bench) measureLogin(ctx context.Context, base, password string, n int) ([]time.Duration, error) {
	lat := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if _, err := b.signIn(ctx, base, password); err != nil {
			return nil, fmt.Errorf("sign-in %d: %w", i+1, err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	return lat, nil
}

// ---- HTTP load ----

// wrkDuration formats d for wrk's -d, which knows no "1m30s".
func wrkDuration(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))) + "s"
}

// runWrk runs wrk against t and parses its report.
func runWrk(ctx context.Context, wrk string, t *target, opts options) (httpResult, error) {
	args := []string{
		"-t" + strconv.Itoa(min(wrkThreads, opts.connections)),
		"-c" + strconv.Itoa(opts.connections),
		"-d" + wrkDuration(opts.duration),
		"--latency",
	}
	for k, vs := range t.header {
		for _, v := range vs {
			args = append(args, "-H", k+": "+v)
		}
	}
	args = append(args, t.base+benchPath)
	cmd := exec.CommandContext(ctx, wrk, args...)
	cmd.SysProcAttr = childSysProcAttr()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return httpResult{}, ctx.Err()
		}
		return httpResult{}, fmt.Errorf("wrk: %w: %s", err, stderr.Bytes())
	}
	res, err := parseWrk(string(out))
	if err != nil {
		return httpResult{}, fmt.Errorf("wrk output: %w:\n%s", err, out)
	}
	return res, nil
}

var (
	wrkRPS     = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)\s*$`)
	wrkLatency = regexp.MustCompile(`(?m)^\s+(50|99)%\s+(\S+)\s*$`)
	wrkNon2xx  = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s+(\d+)\s*$`)
	wrkSocket  = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$`)
)

// parseWrk reads requests/s, the 50% and 99% latencies and the error
// counts from the report of `wrk --latency`.
func parseWrk(out string) (httpResult, error) {
	var res httpResult
	m := wrkRPS.FindStringSubmatch(out)
	if m == nil {
		return res, errors.New("no Requests/sec line")
	}
	rps, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return res, fmt.Errorf("Requests/sec: %w", err)
	}
	res.rps = rps

	found := map[string]bool{}
	for _, m := range wrkLatency.FindAllStringSubmatch(out, -1) {
		d, err := parseWrkDuration(m[2])
		if err != nil {
			return res, fmt.Errorf("%s%% latency: %w", m[1], err)
		}
		if m[1] == "50" {
			res.p50 = d
		} else {
			res.p99 = d
		}
		found[m[1]] = true
	}
	if !found["50"] || !found["99"] {
		return res, errors.New("no 50% and 99% lines in the latency distribution (was --latency given?)")
	}

	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		res.non2xx, _ = strconv.Atoi(m[1]) // \d+ always parses
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			res.errors += n
		}
	}
	return res, nil
}

// wrkUnits are the units of wrk's latencies.
var wrkUnits = map[string]time.Duration{
	"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
}

// parseWrkDuration parses a wrk latency such as 812.00us, 1.25ms or 2.00s.
func parseWrkDuration(s string) (time.Duration, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i <= 0 {
		return 0, fmt.Errorf("latency %q: want a number and a unit", s)
	}
	v, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0, fmt.Errorf("latency %q: %w", s, err)
	}
	unit, ok := wrkUnits[s[i:]]
	if !ok {
		return 0, fmt.Errorf("latency %q: unknown unit %q", s, s[i:])
	}
	return time.Duration(math.Round(v * float64(unit))), nil
}

// runBuiltin is the load generator used without wrk: opts.connections
// workers, each with its own keep-alive connection, send GET requests back
// to back for opts.duration and record each latency.
func runBuiltin(ctx context.Context, t *target, opts options) (httpResult, error) {
	n := opts.connections
	transport := &http.Transport{
		MaxIdleConns:        n,
		MaxIdleConnsPerHost: n,
		MaxConnsPerHost:     n,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, CheckRedirect: noRedirect, Timeout: requestTimeout}
	url := t.base + benchPath

	type tally struct {
		lat            []time.Duration
		non2xx, errors int
	}
	tallies := make([]tally, n) // one per worker: no locking while measuring
	runCtx, cancel := context.WithTimeout(ctx, opts.duration)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			tl := &tallies[i]
			for runCtx.Err() == nil {
				t0 := time.Now()
				status, err := getOnce(runCtx, client, url, t.header)
				if err != nil {
					if runCtx.Err() != nil {
						return // the run ended during this request
					}
					tl.errors++
					continue
				}
				tl.lat = append(tl.lat, time.Since(t0))
				if status < 200 || status > 299 {
					tl.non2xx++
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return httpResult{}, err
	}

	var res httpResult
	var all []time.Duration
	for _, tl := range tallies {
		all = append(all, tl.lat...)
		res.non2xx += tl.non2xx
		res.errors += tl.errors
	}
	if len(all) == 0 {
		return res, fmt.Errorf("no request completed in %v (%d errors)", opts.duration, res.errors)
	}
	slices.Sort(all)
	res.rps = float64(len(all)) / elapsed.Seconds()
	res.p50, res.p99 = percentile(all, 50), percentile(all, 99)
	return res, nil
}

// getOnce sends one GET and reads the whole response, so that the
// connection can be reused.
func getOnce(ctx context.Context, client *http.Client, url string, header http.Header) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	maps.Copy(req.Header, header)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted samples
// by the nearest-rank method, or 0 when there are none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(len(sorted)) * p / 100))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// ---- WebSocket round trips ----

// measureWS opens one WebSocket to t, as a browser on t's own origin
// would, and times rounds sequential echoes of a small text message after
// a warm-up.
func measureWS(ctx context.Context, t *target, rounds int) (wsResult, error) {
	wsURL := "ws://" + strings.TrimPrefix(t.base, "http://") + wsPath
	header := t.header.Clone()
	if header == nil {
		header = http.Header{}
	}
	header.Set("Origin", t.base)
	dialer := websocket.Dialer{HandshakeTimeout: requestTimeout, EnableCompression: false}
	conn, resp, err := dialer.DialContext(ctx, wsURL, header)
	if err != nil {
		if resp != nil {
			return wsResult{}, fmt.Errorf("handshake with %s answered %s: %w", wsURL, resp.Status, err)
		}
		return wsResult{}, fmt.Errorf("dial %s: %w", wsURL, err)
	}
	defer conn.Close()
	// Unblock a pending read on Ctrl-C.
	defer context.AfterFunc(ctx, func() { conn.Close() })()

	msg := bytes.Repeat([]byte("x"), wsMessageSize)
	roundTrip := func() (time.Duration, error) {
		deadline := time.Now().Add(wsRoundTimeout)
		_ = conn.SetWriteDeadline(deadline)
		_ = conn.SetReadDeadline(deadline)
		start := time.Now()
		if err := conn.WriteMessage(websocket.TextMessage, msg); err != nil {
			return 0, fmt.Errorf("write: %w", err)
		}
		kind, got, err := conn.ReadMessage()
		rtt := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("read: %w", err)
		}
		if kind != websocket.TextMessage || !bytes.Equal(got, msg) {
			return 0, fmt.Errorf("echo mismatch: got type %d, %d bytes", kind, len(got))
		}
		return rtt, nil
	}

	lat := make([]time.Duration, 0, rounds)
	for i := range wsWarmup + rounds {
		rtt, err := roundTrip()
		if err != nil {
			if ctx.Err() != nil {
				return wsResult{}, ctx.Err()
			}
			return wsResult{}, fmt.Errorf("round trip %d: %w", i+1, err)
		}
		if i >= wsWarmup {
			lat = append(lat, rtt)
		}
	}
	_ = conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	slices.Sort(lat)
	return wsResult{p50: percentile(lat, 50), p99: percentile(lat, 99)}, nil
}

// ---- The report ----

// report is everything loadgen prints.
type report struct {
	when     time.Time
	opts     options
	httpTool string
	notes    []string
	rows     []row
	login    []time.Duration // sorted sign-in latencies
	multi    *multiResult

	workspaces *workspaceResult // the workspace scenario, when measured
}

// write prints the report as Markdown.
func (r *report) write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "codehub load comparison: %s, nproc %d, %s %s/%s\n\n",
		r.when.Format("2006-01-02 15:04:05 MST"), runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if len(r.rows) > 0 {
		r.writeComparison(&b)
	}
	if r.multi != nil {
		r.multi.write(&b, r.opts.burst)
	}
	if r.workspaces != nil {
		r.workspaces.write(&b)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeComparison prints the table of paths and the sign-in latency.
func (r *report) writeComparison(b *strings.Builder) {
	fmt.Fprintf(b, "HTTP: GET %s (%d B body) with %s. WebSocket: %d sequential round trips of %d B after %d warm-up, one connection.\n\n",
		benchPath, bodySize, r.httpTool, r.opts.wsRounds, wsMessageSize, wsWarmup)
	for _, n := range r.notes {
		fmt.Fprintf(b, "Note: %s\n\n", n)
	}

	b.WriteString("| path | HTTP req/s | HTTP p50 | HTTP p99 | WS RTT p50 | WS RTT p99 |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	var errs []string
	for _, row := range r.rows {
		fmt.Fprintf(b, "| %s | %.0f | %s | %s | %s | %s |\n", row.name, row.http.rps,
			formatLatency(row.http.p50), formatLatency(row.http.p99),
			formatMicros(row.ws.p50), formatMicros(row.ws.p99))
		errs = append(errs, fmt.Sprintf("%s %d/%d", row.name, row.http.non2xx, row.http.errors))
	}
	fmt.Fprintf(b, "\nHTTP non-2xx/errors: %s\n", strings.Join(errs, ", "))

	direct, nginx, codehub := r.find("direct"), r.find("nginx"), r.find("codehub")
	if direct != nil && codehub != nil {
		fmt.Fprintf(b, "codehub overhead vs direct: WS p50 %+.0f µs\n", micros(codehub.ws.p50-direct.ws.p50))
	}
	switch {
	case codehub == nil:
	case nginx == nil:
		b.WriteString("codehub vs nginx throughput: n/a (nginx not measured)\n")
	case nginx.http.rps > 0:
		fmt.Fprintf(b, "codehub vs nginx throughput: %.0f%%\n", 100*codehub.http.rps/nginx.http.rps)
	}
	if len(r.login) > 0 {
		fmt.Fprintf(b, "codehub login (%d sign-ins, GET + POST /login): p50 %.1f ms, p99 %.1f ms\n",
			len(r.login), millis(percentile(r.login, 50)), millis(percentile(r.login, 99)))
	}
}

// find returns the row named name, or nil.
func (r *report) find(name string) *row {
	for i := range r.rows {
		if r.rows[i].name == name {
			return &r.rows[i]
		}
	}
	return nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// formatMicros formats a WebSocket round trip in microseconds.
func formatMicros(d time.Duration) string { return fmt.Sprintf("%.0f µs", micros(d)) }

// formatLatency formats an HTTP latency in µs below 1 ms, else in ms.
func formatLatency(d time.Duration) string {
	if d < time.Millisecond {
		return formatMicros(d)
	}
	return fmt.Sprintf("%.2f ms", millis(d))
}

// echoMessages sends every message of conn back, until either side fails.
func echoMessages(conn *websocket.Conn) {
	for {
		kind, msg, err := conn.ReadMessage()
		if err != nil {
			return
		}
		if err := conn.WriteMessage(kind, msg); err != nil {
			return
		}
	}
}
