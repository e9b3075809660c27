package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// The workspace scenario: many users with workspaces through one gateway.
const (
	// maxWorkspaceUsers bounds -workspaces: every user is two processes
	// (agent and stand-in) on this machine.
	maxWorkspaceUsers = 1000
	// workspaceAdmin creates the users through the admin API.
	workspaceAdmin = "loadgen-admin"
	// workspaceReadyTimeout bounds the wait for every user's IDE to
	// answer: starts wait in line (scaling.start-concurrency at once).
	workspaceReadyTimeout = 10 * time.Minute
	// workspaceStopTimeout bounds the wait for the workspaces' processes
	// to be gone after their users stopped them.
	workspaceStopTimeout = time.Minute
	// gatewayStopTimeout is how long the gateway may take to exit after
	// SIGTERM (its shutdown-timeout is 10s) before it is killed.
	gatewayStopTimeout = 20 * time.Second
	// settleTime is how long the gateway's memory is sampled, idle, for
	// one measurement (the least sample counts).
	settleTime = 3 * time.Second
	// churnTime is how long requests churn the gateway's heap before it
	// is measured alone.
	churnTime = 3 * time.Second
	// rootRuntimeDir holds the workspaces' secrets when the gateway runs as
	// root (else the data directory's run/).
	rootRuntimeDir = "/run/codehub"
	// workspaceStartConcurrency is scaling.start-concurrency, the
	// gateway's default: starts beyond it wait in line.
	workspaceStartConcurrency = 4
)

// workspacesConfig is codehub in multi-user mode on SQLite whose
// workspaces run on this machine with the directory strategy, each one the
// real agent supervising ide (the stand-in) instead of code-server. The
// throttles and per-user limits are opened wide, so that the measurement
// is of the gateway and the workspaces; the workspaces' own limits are
// small (the directory strategy does not enforce them). The warm pool is
// off: every start is measured cold. Starts keep the default concurrency.
func workspacesConfig(dir, addr, ide string) string {
	return fmt.Sprintf(`# Written by codehub's cmd/loadgen: many users with workspaces.
deployment_mode = "multi"
bind_addr       = %q
data_dir        = %q
log_level       = "warn"

code_server {
  path = %q # loadgen's stand-in for code-server
}

login_throttle {
  per_address_burst = 100000
  global_burst      = 100000
}

multi_user {
  auth {
    database { path = %q }
    lockout { max_failures = 0 }
  }
  isolation {
    strategy  = "directory"
    base_path = %q
  }
  scaling {
    container_pool { enabled = false }
    start_concurrency = %d
  }
  limits {
    max_sessions_per_user             = 100000
    max_concurrent_connections        = 10000
    max_gateway_connections           = 100000
    api_requests_per_minute           = 0
    anonymous_api_requests_per_minute = 0
    storage_quota_mb                  = 64
    memory_limit_mb                   = 256
    cpu_limit_percent                 = 50
    max_processes                     = 64
  }
}
`, addr, dir, ide, filepath.Join(dir, "codehub.db"), filepath.Join(dir, "users"), workspaceStartConcurrency)
}

// workspaceUser is one simulated person: their account, session and
// workspace, and what their client measured.
type workspaceUser struct {
	name, id  string
	header    http.Header // the session cookie
	workspace string      // named by the first page of their IDE

	signIn, start time.Duration

	conn  *websocket.Conn
	msgs  chan []byte // messages read from conn; closed when it ends
	wsErr error       // why conn ended; read after msgs is closed

	// The HTTP load, written by the user's own worker only.
	lat       []time.Duration
	errors    int
	misroutes int
	firstErr  string
}

// workspaceResult is the workspace scenario's measurement.
type workspaceResult struct {
	users       int
	concurrency int // workspace starts at once (the gateway's default)
	load        time.Duration

	signIn, start []time.Duration // sorted
	startAll      time.Duration   // from the page loads to the last IDE answering

	rssStart, rssBefore, rssConnected, rssAfter, rssPeak int64 // gateway, bytes
	agentRSS, ideRSS                                     int64 // summed over the workspaces
	workspacesMeasured                                   int

	requests   int
	rps        float64
	p50, p99   time.Duration
	errors     int
	firstError string
	misroutes  int // HTTP answers from another user's workspace
	wsChecked  int // WebSockets that echoed after the load

	gatewayExit string // how the gateway ended on SIGTERM
}

// measureWorkspaces runs the workspace scenario in dir: it starts codehub
// (bin) in multi-user mode, creates b.opts.workspaces users, has them all
// sign in and open their IDE at once, keeps one idle WebSocket each, then
// loads every IDE with HTTP requests for b.opts.workspaceLoad, checking
// that every answer comes from the requester's own workspace. It stops
// the workspaces and the gateway, and checks that nothing is left.
func (b *bench) measureWorkspaces(ctx context.Context, bin, dir string) (*workspaceResult, error) {
	n := b.opts.workspaces
	if avail, ok := memAvailable(); ok {
		if fit := fitWorkspaces(n, avail); fit < n {
			b.logf("workspaces: %d MiB of memory available, enough for %d users' workspaces: measuring %d instead of %d",
				avail>>20, fit, fit, n)
			n = fit
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find loadgen's executable: %w", err)
	}
	ide := filepath.Join(dir, "bin", standinName)
	if err := os.Symlink(self, ide); err != nil {
		return nil, fmt.Errorf("link the stand-in IDE: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "workspaces.hcl")
	if err := os.WriteFile(conf, []byte(workspacesConfig(dir, addr, ide)), 0o600); err != nil {
		return nil, err
	}
	env := []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	adminPassword, password := rand.Text(), rand.Text()
	create := exec.CommandContext(ctx, bin, "user", "create", "--config", conf, "--username", workspaceAdmin,
		"--email", workspaceAdmin+"@example.com", "--role", "admin", "--password-stdin")
	create.Env = env
	create.Stdin = strings.NewReader(adminPassword + "\n")
	if out, err := create.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("codehub user create: %v\n%s", err, out)
	}

	c, err := startChild("codehub (workspaces)", bin, []string{"--config", conf}, env, dir)
	if err != nil {
		return nil, err
	}
	users := make([]*workspaceUser, 0, n)
	stopped := false
	defer func() {
		// Whatever happened, leave nothing running: the workspaces outlive
		// the gateway by design, so they are stopped by their process ids.
		if stopped {
			return
		}
		closeSockets(users)
		c.stop()
		if left := leftovers(dir, os.Getpid()); len(left) > 0 {
			b.logf("workspaces: killing %d processes left behind: %v", len(left), left)
			killAll(left)
		}
		if os.Geteuid() == 0 { // the secrets of workspaces killed rather than stopped
			for _, u := range users {
				if u != nil && u.workspace != "" {
					_ = os.RemoveAll(filepath.Join(rootRuntimeDir, u.workspace))
				}
			}
		}
	}()
	base := "http://" + addr
	if err := c.waitReady(ctx, base+"/healthz"); err != nil {
		return nil, err
	}
	pid := c.cmd.Process.Pid
	res := &workspaceResult{users: n, concurrency: workspaceStartConcurrency, load: b.opts.workspaceLoad}
	if res.rssStart, err = procStatus(pid, "VmRSS"); err != nil {
		return nil, err
	}
	transport := &http.Transport{MaxIdleConns: n + 8, MaxIdleConnsPerHost: n + 8, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, CheckRedirect: noRedirect, Timeout: requestTimeout}

	b.logf("workspaces: creating %d users", n)
	if users, err = createUsers(ctx, client, base, adminPassword, password, n); err != nil {
		return nil, err
	}
	// The gateway alone, its heap through a few collections since the
	// password hashing of the creations, as it will be after the load.
	churn(ctx, client, base+"/login", n, churnTime)
	if res.rssBefore, err = settledRSS(ctx, pid, settleTime); err != nil {
		return nil, err
	}

	b.logf("workspaces: %d users sign in at once", n)
	if err := allAtOnce(users, func(u *workspaceUser) error {
		return u.signInWith(ctx, transport, base, password)
	}); err != nil {
		return nil, err
	}
	b.logf("workspaces: %d users open their IDE and a WebSocket at once", n)
	began := time.Now()
	readyCtx, cancel := context.WithTimeout(ctx, workspaceReadyTimeout)
	err = allAtOnce(users, func(u *workspaceUser) error { return u.open(readyCtx, transport, base) })
	cancel()
	if err != nil {
		return nil, err
	}
	res.startAll = time.Since(began)
	for _, u := range users {
		res.signIn = append(res.signIn, u.signIn)
		res.start = append(res.start, u.start)
	}
	slices.Sort(res.signIn)
	slices.Sort(res.start)
	if err := checkDistinct(users); err != nil {
		return nil, err
	}

	// Measured like the gateway alone: after the same churn, which leaves
	// the WebSockets idle.
	churn(ctx, client, base+"/login", n, churnTime)
	if res.rssConnected, err = settledRSS(ctx, pid, settleTime); err != nil {
		return nil, err
	}
	res.workspacesMeasured, res.agentRSS, res.ideRSS = workspaceMemory(pid)

	b.logf("workspaces: %d users load their IDE for %v", n, b.opts.workspaceLoad)
	if err := loadAll(ctx, client, base, users, b.opts.workspaceLoad, res); err != nil {
		return nil, err
	}
	if res.rssAfter, err = settledRSS(ctx, pid, settleTime); err != nil {
		return nil, err
	}
	if res.rssPeak, err = procStatus(pid, "VmHWM"); err != nil {
		return nil, err
	}
	// Every idle WebSocket must have lived through the load, still to its
	// own workspace.
	for _, u := range users {
		if err := echoCheck(u); err != nil {
			return nil, fmt.Errorf("%s's WebSocket after the load: %w", u.name, err)
		}
		res.wsChecked++
	}

	b.logf("workspaces: stopping %d workspaces, then the gateway", n)
	closeSockets(users)
	if err := stopAll(ctx, client, base, users); err != nil {
		return nil, err
	}
	if err := waitNoProcesses(ctx, dir, pid); err != nil {
		return nil, err
	}
	stopped = true
	res.gatewayExit = terminate(c, gatewayStopTimeout)
	if left := leftovers(dir, os.Getpid()); len(left) > 0 {
		killAll(left)
		return nil, fmt.Errorf("processes left after the gateway stopped (killed): %v", left)
	}
	if err := checkClean(dir, users); err != nil {
		return nil, err
	}
	return res, nil
}

// settledRSS samples the resident memory of pid for d and returns the
// least sample: the Go runtime returns freed memory to the system over
// time, so one sample right after work overstates what stays.
func settledRSS(ctx context.Context, pid int, d time.Duration) (int64, error) {
	least := int64(-1)
	deadline := time.Now().Add(d)
	for {
		rss, err := procStatus(pid, "VmRSS")
		if err != nil {
			return 0, err
		}
		if least < 0 || rss < least {
			least = rss
		}
		if time.Now().After(deadline) {
			return least, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// churn sends GET requests to url from workers at once for d, answers
// unchecked: work that makes the gateway collect its garbage, as the load
// does later.
func churn(ctx context.Context, client *http.Client, url string, workers int, d time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := getOnce(ctx, client, url, nil); err != nil && ctx.Err() == nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
}

// createUsers signs in as the administrator through the API and creates
// n users (lg-user-001...) with the admin API, a few at once.
func createUsers(ctx context.Context, client *http.Client, base, adminPassword, password string, n int) ([]*workspaceUser, error) {
	var pair struct {
		AccessToken string `json:"access_token"`
	}
	status, err := postJSON(ctx, client, base+"/api/v1/auth/login", "",
		map[string]string{"username": workspaceAdmin, "password": adminPassword}, &pair)
	if err != nil || status != http.StatusOK {
		return nil, fmt.Errorf("administrator sign-in: %v (status %d)", err, status)
	}
	users := make([]*workspaceUser, n)
	sem := make(chan struct{}, 2*runtime.NumCPU())
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		name := fmt.Sprintf("lg-user-%03d", i+1)
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var acct struct {
				ID string `json:"id"`
			}
			status, err := postJSON(ctx, client, base+"/api/v1/admin/users", pair.AccessToken,
				map[string]string{"username": name, "email": name + "@example.com", "password": password}, &acct)
			if err == nil && (status != http.StatusCreated || acct.ID == "") {
				err = fmt.Errorf("answered %d", status)
			}
			if err != nil {
				errs <- fmt.Errorf("create %s: %w", name, err)
				return
			}
			users[i] = &workspaceUser{name: name, id: acct.ID}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return users, nil
}

// postJSON posts body as JSON, with a bearer token when one is given, and
// decodes a 2xx answer into out.
func postJSON(ctx context.Context, client *http.Client, url, token string, body, out any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s: %.300s", resp.Status, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

// allAtOnce runs f for every user at the same moment and returns the
// first error.
func allAtOnce(users []*workspaceUser, f func(u *workspaceUser) error) error {
	release := make(chan struct{})
	errs := make(chan error, len(users))
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() {
			<-release
			if err := f(u); err != nil {
				errs <- fmt.Errorf("%s: %w", u.name, err)
			}
		})
	}
	close(release)
	wg.Wait()
	close(errs)
	return <-errs
}

// signInWith signs u in like a browser.
func (u *workspaceUser) signInWith(ctx context.Context, transport http.RoundTripper, base, password string) error {
	t0 := time.Now()
	cookie, err := signInAs(ctx, transport, base, u.name, password)
	if err != nil {
		return err
	}
	u.signIn = time.Since(t0)
	u.header = http.Header{"Cookie": {cookie.String()}}
	return nil
}

// open opens u's IDE (the page load that starts the workspace) until it
// answers with the stand-in's page, and then a WebSocket whose greeting
// must name u.
func (u *workspaceUser) open(ctx context.Context, transport http.RoundTripper, base string) error {
	client := &http.Client{Transport: transport, CheckRedirect: noRedirect, Timeout: requestTimeout}
	t0 := time.Now()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
		if err != nil {
			return err
		}
		req.Header = u.header.Clone()
		req.Header.Set("Accept", "text/html") // a person opening the editor
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("open the IDE: %w", err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("open the IDE: %w", err)
		}
		if resp.StatusCode == http.StatusOK {
			user, ws, ok := parseIdentity(body)
			if !ok {
				return fmt.Errorf("open the IDE: answered a page that is not the stand-in's: %.200q", body)
			}
			u.start = time.Since(t0)
			if user != u.id {
				return fmt.Errorf("MISROUTE: the IDE of user %s answered from workspace %s of user %q", u.id, ws, user)
			}
			u.workspace = ws
			break
		}
		if resp.StatusCode != http.StatusServiceUnavailable { // 503: starting, the page reloads
			return fmt.Errorf("open the IDE: answered %s: %.300s", resp.Status, body)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the IDE did not answer within %v (last: %.200s)", workspaceReadyTimeout, body)
		case <-time.After(50 * time.Millisecond):
		}
	}

	header := u.header.Clone()
	header.Set("Origin", base)
	dialer := websocket.Dialer{HandshakeTimeout: requestTimeout}
	conn, resp, err := dialer.DialContext(ctx, "ws"+strings.TrimPrefix(base, "http")+"/loadgen/ws", header)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("WebSocket handshake answered %s: %w", resp.Status, err)
		}
		return fmt.Errorf("WebSocket: %w", err)
	}
	u.conn = conn
	u.msgs = make(chan []byte, 4)
	// Read all along, as a browser does: the gateway pings idle
	// WebSockets, and gorilla answers pings while reading.
	go func() {
		defer close(u.msgs)
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				u.wsErr = err
				return
			}
			u.msgs <- msg
		}
	}()
	select {
	case msg, ok := <-u.msgs:
		if !ok {
			return fmt.Errorf("WebSocket closed before its greeting: %w", u.wsErr)
		}
		user, ws, parsed := parseIdentity(msg)
		if !parsed {
			return fmt.Errorf("WebSocket greeting is not the stand-in's: %.200q", msg)
		}
		if user != u.id || ws != u.workspace {
			return fmt.Errorf("MISROUTE: the WebSocket of user %s (workspace %s) was greeted by workspace %s of user %q",
				u.id, u.workspace, ws, user)
		}
	case <-time.After(requestTimeout):
		return errors.New("no WebSocket greeting")
	}
	return nil
}

// checkDistinct insists that no two users share a workspace.
func checkDistinct(users []*workspaceUser) error {
	seen := map[string]string{}
	for _, u := range users {
		if other, ok := seen[u.workspace]; ok {
			return fmt.Errorf("MISROUTE: users %s and %s both reached workspace %s", other, u.name, u.workspace)
		}
		seen[u.workspace] = u.name
	}
	return nil
}

// loadAll has every user send GET requests to their own IDE back to back
// for d, one connection each, and checks every answer's identity.
func loadAll(ctx context.Context, client *http.Client, base string, users []*workspaceUser, d time.Duration, res *workspaceResult) error {
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for _, u := range users {
		wg.Go(func() { u.load(runCtx, client, base+"/loadgen/"+u.name) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return err
	}
	var all []time.Duration
	for _, u := range users {
		all = append(all, u.lat...)
		res.errors += u.errors
		res.misroutes += u.misroutes
		if res.firstError == "" && u.firstErr != "" {
			res.firstError = u.name + ": " + u.firstErr
		}
	}
	if len(all) == 0 {
		return fmt.Errorf("no request completed in %v (%d errors, first: %s)", d, res.errors, res.firstError)
	}
	slices.Sort(all)
	res.requests = len(all)
	res.rps = float64(len(all)) / elapsed.Seconds()
	res.p50, res.p99 = percentile(all, 50), percentile(all, 99)
	return nil
}

// load is one user's worker in loadAll.
func (u *workspaceUser) load(ctx context.Context, client *http.Client, url string) {
	fail := func(msg string) {
		u.errors++
		if u.firstErr == "" {
			u.firstErr = msg
		}
		select { // no busy loop on a refusing gateway
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			fail(err.Error())
			return
		}
		req.Header = u.header.Clone()
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				fail(err.Error())
			}
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			if ctx.Err() == nil {
				fail(err.Error())
			}
			continue
		}
		u.lat = append(u.lat, time.Since(t0))
		if resp.StatusCode != http.StatusOK {
			fail(fmt.Sprintf("%s: %.200s", resp.Status, body))
			continue
		}
		if user, ws, ok := parseIdentity(body); !ok || user != u.id || ws != u.workspace {
			u.misroutes++
			if u.firstErr == "" {
				u.firstErr = fmt.Sprintf("MISROUTE: answered by workspace %q of user %q", ws, user)
			}
		}
	}
}

// echoCheck sends one message on u's WebSocket and waits for its echo.
func echoCheck(u *workspaceUser) error {
	msg := []byte("loadgen " + u.name)
	_ = u.conn.SetWriteDeadline(time.Now().Add(wsRoundTimeout))
	if err := u.conn.WriteMessage(websocket.TextMessage, msg); err != nil {
		return err
	}
	select {
	case got, ok := <-u.msgs:
		if !ok {
			return fmt.Errorf("closed: %w", u.wsErr)
		}
		if !bytes.Equal(got, msg) {
			return fmt.Errorf("echo %.100q, want %q", got, msg)
		}
		return nil
	case <-time.After(wsRoundTimeout):
		return errors.New("no echo")
	}
}

// closeSockets closes every user's WebSocket with a close frame.
func closeSockets(users []*workspaceUser) {
	for _, u := range users {
		if u == nil || u.conn == nil {
			continue
		}
		_ = u.conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		u.conn.Close()
		u.conn = nil
	}
}

// stopAll has every user stop their workspace through the API.
func stopAll(ctx context.Context, client *http.Client, base string, users []*workspaceUser) error {
	sem := make(chan struct{}, 16)
	errs := make(chan error, len(users))
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/me/workspace/stop", nil)
			if err != nil {
				errs <- err
				return
			}
			req.Header = u.header.Clone()
			stopClient := &http.Client{Transport: client.Transport, Timeout: workspaceStopTimeout}
			resp, err := stopClient.Do(req)
			if err != nil {
				errs <- fmt.Errorf("stop %s's workspace: %w", u.name, err)
				return
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				errs <- fmt.Errorf("stop %s's workspace: answered %s: %.200s", u.name, resp.Status, body)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// waitNoProcesses waits until no process but the gateway (keep) names dir
// on its command line: the agents and stand-ins are gone.
func waitNoProcesses(ctx context.Context, dir string, keep int) error {
	deadline := time.Now().Add(workspaceStopTimeout)
	for {
		left := leftovers(dir, os.Getpid(), keep)
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("workspace processes still running %v after their users stopped them: %v", workspaceStopTimeout, left)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// terminate sends the gateway SIGTERM and waits up to d for it to exit,
// then kills it. It says how it ended.
func terminate(c *child, d time.Duration) string {
	select {
	case <-c.done:
		return fmt.Sprintf("had already exited (%v)", c.err)
	default:
	}
	start := time.Now()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		if c.err != nil {
			return fmt.Sprintf("exited on SIGTERM in %v: %v", time.Since(start).Round(time.Millisecond), c.err)
		}
		return fmt.Sprintf("exited cleanly on SIGTERM in %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(d):
		c.stop()
		return fmt.Sprintf("did not exit within %v of SIGTERM: killed", d)
	}
}

// leftovers returns the processes, other than those in skip, whose
// command line names dir: the gateway, agents and stand-ins of this run.
func leftovers(dir string, skip ...int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || slices.Contains(skip, pid) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if namesDir(string(cmdline), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// namesDir reports whether a NUL-separated command line names dir or
// something under it.
func namesDir(cmdline, dir string) bool {
	dir = filepath.Clean(dir)
	for _, arg := range strings.Split(cmdline, "\x00") {
		if arg == dir || strings.HasPrefix(arg, dir+"/") {
			return true
		}
	}
	return false
}

// killAll sends SIGKILL to each process.
func killAll(pids []int) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// checkClean insists that nothing is mounted under dir and that the
// workspaces' runtime directories (their secrets) are gone.
func checkClean(dir string, users []*workspaceUser) error {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	if m := mountsUnder(string(mounts), dir); len(m) > 0 {
		return fmt.Errorf("still mounted: %v", m)
	}
	runtimeDir := filepath.Join(dir, "run") // the data directory's, or as root:
	if os.Geteuid() == 0 {
		runtimeDir = rootRuntimeDir
	}
	for _, u := range users {
		p := filepath.Join(runtimeDir, u.workspace)
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("the runtime directory of %s's stopped workspace is left: %s", u.name, p)
		}
	}
	return nil
}

// mountsUnder returns the mount points of mountinfo at or under dir.
func mountsUnder(mountinfo, dir string) []string {
	dir = filepath.Clean(dir)
	var out []string
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := strings.ReplaceAll(f[4], `\040`, " ")
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// workspaceMemory sums the resident memory of the gateway's children (the
// agents) and of their children (the stand-ins). It returns how many
// agents it found.
func workspaceMemory(gateway int) (agents int, agentRSS, ideRSS int64) {
	parents := procParents()
	for pid, ppid := range parents {
		if ppid != gateway {
			continue
		}
		rss, err := procStatus(pid, "VmRSS")
		if err != nil {
			continue
		}
		agents++
		agentRSS += rss
		for child, p := range parents {
			if p == pid {
				if rss, err := procStatus(child, "VmRSS"); err == nil {
					ideRSS += rss
				}
			}
		}
	}
	return agents, agentRSS, ideRSS
}

// procParents maps every process to its parent.
func procParents() map[int]int {
	out := map[int]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(string(stat)); ok {
			out[pid] = ppid
		}
	}
	return out
}

// parentOf reads the parent pid from a /proc/PID/stat line, whose second
// field (the command, in parentheses) may hold spaces and parentheses.
func parentOf(stat string) (int, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// write prints the workspace scenario's section of the report.
func (r *workspaceResult) write(b *strings.Builder) {
	mib := func(v int64) float64 { return float64(v) / (1 << 20) }
	fmt.Fprintf(b, "\nMany users with workspaces through one gateway: %d users, SQLite, directory strategy, "+
		"each workspace the real agent with loadgen's stand-in for code-server; warm pool off, %d starts at once:\n\n",
		r.users, r.concurrency)
	b.WriteString("| measurement | p50 | p99 | max | other |\n|---|---:|---:|---:|---|\n")
	fmt.Fprintf(b, "| browser sign-in, all %d at once | %.0f ms | %.0f ms | %.0f ms | |\n", r.users,
		millis(percentile(r.signIn, 50)), millis(percentile(r.signIn, 99)), millis(percentile(r.signIn, 100)))
	fmt.Fprintf(b, "| workspace start, all %d opening their IDE at once (first page load to the IDE's page) | %.0f ms | %.0f ms | %.0f ms | fastest %.0f ms; all answering after %.1f s |\n",
		r.users, millis(percentile(r.start, 50)), millis(percentile(r.start, 99)), millis(percentile(r.start, 100)),
		millis(percentile(r.start, 0)), r.startAll.Seconds())
	fmt.Fprintf(b, "| GET through the gateway, %d users at once for %v | %s | %s | | %.0f req/s, %d requests, %d errors, %d misroutes |\n",
		r.users, r.load, formatLatency(r.p50), formatLatency(r.p99), r.rps, r.requests, r.errors, r.misroutes)
	fmt.Fprintf(b, "\nGateway RSS (least sample of %v idle, after %v of GET /login from %d clients to have the heap collected): "+
		"%.0f MiB at start; alone, with the %d users created: %.0f MiB; "+
		"all signed in, workspaces running, one idle WebSocket each: %.0f MiB (%+.2f MiB per user), %.0f MiB after the load (%+.2f MiB per user); peak %.0f MiB.\n",
		settleTime, churnTime, r.users, mib(r.rssStart), r.users, mib(r.rssBefore),
		mib(r.rssConnected), mib(r.rssConnected-r.rssBefore)/float64(r.users),
		mib(r.rssAfter), mib(r.rssAfter-r.rssBefore)/float64(r.users), mib(r.rssPeak))
	if r.workspacesMeasured > 0 {
		k := float64(r.workspacesMeasured)
		fmt.Fprintf(b, "Workspace RSS (mean of %d): agent %.1f MiB + stand-in IDE %.1f MiB = %.1f MiB.\n",
			r.workspacesMeasured, mib(r.agentRSS)/k, mib(r.ideRSS)/k, mib(r.agentRSS+r.ideRSS)/k)
	}
	fmt.Fprintf(b, "Misroutes (answers from another user's workspace): %d of %d HTTP answers; every IDE page and WebSocket greeting named its own user, "+
		"and %d of %d WebSockets still echoed after the load.\n", r.misroutes, r.requests, r.wsChecked, r.users)
	if r.firstError != "" {
		fmt.Fprintf(b, "First error: %s\n", r.firstError)
	}
	fmt.Fprintf(b, "Stop: every user stopped their workspace through the API, no workspace process was left; the gateway %s.\n", r.gatewayExit)
}

// Memory the workspace scenario needs: each workspace (agent and
// stand-in) takes about 35 MiB, and the gateway's sign-ins, the
// stand-ins' start and loadgen itself need room besides.
const (
	perWorkspaceMemory = 40 << 20
	scenarioMemory     = 512 << 20
)

// fitWorkspaces is how many of want users' workspaces fit in avail bytes
// of memory (at least 1).
func fitWorkspaces(want int, avail int64) int {
	fit := int((avail - scenarioMemory) / perWorkspaceMemory)
	return max(min(want, fit), 1)
}

// memAvailable is the kernel's estimate of the memory available to new
// work (MemAvailable in /proc/meminfo), in bytes.
func memAvailable() (int64, bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "MemAvailable:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return 0, false
		}
		return kb << 10, true
	}
	return 0, false
}
