package nomad_test

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/agent"
	"github.com/codehub-dev/codehub/internal/agentapi"
)

// agentEnv makes the test binary a stand-in for `codehub agent` (the
// re-exec pattern): the workspace job's task runs this binary.
const agentEnv = "CODEHUB_TEST_NOMAD_AGENT"

func TestMain(m *testing.M) {
	if os.Getenv(agentEnv) == "1" {
		os.Exit(testAgent(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// testAgent is `codehub agent` as far as the orchestrator and the job can
// tell: the same flags, the secret loaded by the real agent's LoadSecret
// (which refuses a file others may read), the agent protocol's health and
// stop on --listen, the ready line. "probe" is the job's health check.
func testAgent(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "test agent: agent or probe")
		return 2
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "")
	secretFile := fs.String("secret-file", "", "")
	addr := fs.String("addr", "", "probe: the agent's address")
	for _, f := range []string{"user-data-dir", "extensions-dir", "folder", "storage-path", "storage-limit", "log-format", "code-server"} {
		fs.String(f, "", "")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	secret, err := agent.LoadSecret(*secretFile, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test agent:", err)
		return 1
	}
	switch args[0] {
	case "probe":
		req, _ := http.NewRequest(http.MethodGet, "http://"+*addr+agentapi.PathHealth, nil)
		req.Header.Set(agentapi.SecretHeader, string(secret))
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
		if err != nil {
			fmt.Println(err)
			return 2
		}
		defer resp.Body.Close()
		var h agentapi.Health
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&h) != nil || h.Status != "running" {
			fmt.Println("not running:", resp.Status)
			return 2
		}
		return 0
	case "agent":
	default:
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test agent:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentapi.PathHealth, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(agentapi.Health{Status: "running", StartedAt: time.Now()})
	})
	mux.HandleFunc("POST "+agentapi.PathStop, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		stop()
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(agentapi.SecretHeader)), secret) != 1 {
			http.Error(w, "this workspace answers only its gateway", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println(agentapi.ReadyPrefix + ln.Addr().String())
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	return 0
}
