package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agentapi"
	"github.com/codehub-dev/codehub/internal/proxy"
	"github.com/codehub-dev/codehub/internal/testenv"
	"github.com/hashicorp/go-hclog"
)

// guard bounds a wait that only a bug (or a machine far slower than CI)
// makes long, so that it fails with a message instead of hanging.
const guard = 90 * time.Second

const testSecret = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-0123456789"

// running is an agent started by startAgent.
type running struct {
	URL    string // http://host:port
	Secret string
	Home   string // the user's home: state/, extensions/, workspaces/
	Folder string
	done   chan error
	cancel context.CancelFunc
	client *http.Client
}

// startAgent runs an agent with the real code-server in a fresh home and
// waits for its ready line. mutate may change the configuration first.
func startAgent(t *testing.T, mutate ...func(*Config)) *running {
	t.Helper()
	return launch(t, testenv.CodeServer(t), mutate...)
}

// startFakeAgent runs an agent whose IDE is fakeIDE (this test binary),
// ready after delay.
func startFakeAgent(t *testing.T, delay time.Duration, mutate ...func(*Config)) *running {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), fakeIDEEnv+"="+delay.String())
	return launch(t, self, append([]func(*Config){func(c *Config) { c.Env = env }}, mutate...)...)
}

func launch(t *testing.T, bin string, mutate ...func(*Config)) *running {
	t.Helper()
	home := t.TempDir()
	folder := filepath.Join(home, "workspaces", "project")
	for _, d := range []string{filepath.Join(home, "state"), filepath.Join(home, "extensions"), folder} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(folder, "hello.txt"), []byte("hello from the agent test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := testenv.Logger(t)
	if os.Getenv("CODEHUB_AGENT_TRACE") != "" {
		log.SetLevel(hclog.Trace)
	}
	pr, pw := io.Pipe()
	cfg := Config{
		Secret:        []byte(testSecret),
		CodeServer:    bin,
		UserDataDir:   filepath.Join(home, "state"),
		ExtensionsDir: filepath.Join(home, "extensions"),
		Folder:        folder,
		ReadyOutput:   pw,
		Logger:        log,
		Version:       "test",
		CPUInterval:   time.Second,
		BackoffMax:    time.Second,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Secret: testSecret, Home: home, Folder: folder, done: make(chan error, 1), cancel: cancel,
		client: &http.Client{Timeout: guard, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	go func() {
		err := Run(ctx, cfg)
		pw.Close()
		r.done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(guard):
			t.Error("agent did not stop")
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	go io.Copy(io.Discard, pr)
	if err != nil {
		select {
		case err := <-r.done:
			t.Fatalf("agent exited before its ready line: %v", err)
		default:
		}
		t.Fatalf("no ready line: %v", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), agentapi.ReadyPrefix)
	if !ok || addr == "" {
		t.Fatalf("ready line %q", line)
	}
	r.URL = "http://" + addr
	return r
}

// do sends a request to the agent with the right secret.
func (r *running) do(t *testing.T, method, path string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, r.URL+path, nil)
	req.Header.Set(agentapi.SecretHeader, r.Secret)
	if strings.HasPrefix(path, "/_agent/") { // the gateway's own calls
		req.Header.Set(agentapi.ControlHeader, r.Secret)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// get decodes the JSON answer of an agent endpoint into v.
func get[T any](t *testing.T, r *running, path string) T {
	t.Helper()
	resp := r.do(t, http.MethodGet, path)
	var v T
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return v
}

// waitFor polls cond until it holds or guard passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *running) waitRunning(t *testing.T) agentapi.Health {
	t.Helper()
	var h agentapi.Health
	waitFor(t, "the IDE to run", func() bool {
		h = get[agentapi.Health](t, r, agentapi.PathHealth)
		return h.Status == "running"
	})
	return h
}

// waitExit waits for Run to return and gives its result.
func (r *running) waitExit(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(guard):
		t.Fatal("agent did not exit")
		return nil
	}
}

// gateway is a stand-in for the gateway: it forwards everything to the
// agent through internal/proxy, adding the secret, as the real one does.
func gateway(t *testing.T, r *running) *httptest.Server {
	t.Helper()
	u, _ := url.Parse(r.URL)
	reg := proxy.NewRegistry(proxy.RegistryConfig{})
	p := proxy.New(proxy.Config{Logger: testenv.Logger(t).Named("gateway"), Conns: reg, CheckOrigin: func(*http.Request) bool { return true }})
	target := &proxy.Target{Key: r.URL, URL: u, Header: http.Header{agentapi.SecretHeader: {r.Secret}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p.Serve(w, req, target, proxy.Client{Owner: "browser", Addr: "127.0.0.1", Proto: "http"})
	}))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		reg.CloseAll(proxy.CloseGoingAway, "", ctx.Done())
		reg.Stop()
	})
	return srv
}

func processAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}
