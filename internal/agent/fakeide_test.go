package agent

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeIDEEnv, when set (to a readiness delay), makes this test binary a
// stand-in for code-server: fast to start, and it shows what reached it.
const fakeIDEEnv = "CODEHUB_AGENT_TEST_FAKE_IDE"

func TestMain(m *testing.M) {
	if d := os.Getenv(fakeIDEEnv); d != "" {
		os.Exit(fakeIDE(d, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// seen is what the fake IDE reports of a request.
type seen struct {
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
}

// fakeIDE serves code-server's command line's --socket: /healthz, /echo
// (the request as JSON) and, on any path, a WebSocket that sends the
// upgrade request as JSON, then echoes.
func fakeIDE(delay string, args []string) int {
	fs := flag.NewFlagSet("fake-ide", flag.ContinueOnError)
	socket := fs.String("socket", "", "")
	fs.String("config", "", "")
	fs.String("socket-mode", "", "")
	fs.String("auth", "", "")
	fs.Bool("disable-telemetry", false, "")
	fs.Bool("disable-update-check", false, "")
	fs.String("user-data-dir", "", "")
	fs.String("extensions-dir", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if d, err := time.ParseDuration(delay); err == nil {
		time.Sleep(d)
	}
	ln, err := net.Listen("unix", *socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		report := seen{Host: r.Host, Header: r.Header}
		switch {
		case r.URL.Path == "/healthz":
			fmt.Fprintln(w, `{"status":"alive"}`)
		case websocket.IsWebSocketUpgrade(r):
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			if err := c.WriteJSON(report); err != nil {
				return
			}
			for {
				mt, msg, err := c.ReadMessage()
				if err != nil || c.WriteMessage(mt, msg) != nil {
					return
				}
			}
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(report)
		}
	}))
	fmt.Fprintln(os.Stderr, err)
	return 1
}
