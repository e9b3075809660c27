package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// standinName is the program name under which loadgen is a stand-in for
// code-server: the workspace scenario points the gateway's code-server.path
// at a symbolic link of this name to loadgen's own executable, so that
// every workspace is the real `codehub agent` supervising a process of a
// few MiB instead of a 400 MiB code-server.
const standinName = "codehub-loadgen-ide"

// standinTag starts every answer of the stand-in, followed by the identity
// of the workspace that answered.
const standinTag = "codehub-loadgen-ide"

// isStandin reports whether the program was started as the stand-in IDE.
func isStandin(argv0 string) bool { return filepath.Base(argv0) == standinName }

// standinMain runs the stand-in IDE with code-server's command line and
// returns the exit code.
func standinMain(args []string, stderr io.Writer) int {
	s, err := newStandin(args)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", standinName, err)
		return 2
	}
	ln, err := s.listen()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", standinName, err)
		return 1
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: requestTimeout, ErrorLog: log.New(io.Discard, "", 0)}
	err = srv.Serve(ln)
	fmt.Fprintf(stderr, "%s: %v\n", standinName, err)
	return 1
}

// standin is a tiny IDE that accepts the command line the workspace agent
// gives code-server (internal/codeserver Supervisor.Args) and serves, on
// the unix socket it names: GET /healthz (what the supervisor waits for),
// a WebSocket echo that first sends its identity, and on any other path a
// page of bodySize bytes that starts with its identity. The identity is the
// workspace (the directory of its home) and the user whose home links to
// it, so that loadgen can check that every answer came from the
// requester's own workspace.
type standin struct {
	socket     string
	socketMode os.FileMode
	workspace  string // the workspace's ID: its home's directory name
	usersDir   string // where <user-id> links to the workspace's home

	mu   sync.Mutex
	user string // found lazily: a warm workspace is linked when claimed

	upgrader websocket.Upgrader
}

// newStandin reads code-server's command line. It insists on what the
// agent always passes (--socket, --auth none, --user-data-dir under the
// workspace's home) and refuses flags it does not know, so that a change
// of the agent's command line shows here rather than as a mystery.
func newStandin(args []string) (*standin, error) {
	fs := flag.NewFlagSet(standinName, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	socket := fs.String("socket", "", "unix socket to listen on")
	mode := fs.String("socket-mode", "600", "mode of the socket (octal)")
	auth := fs.String("auth", "", "must be none")
	fs.String("config", "", "ignored")
	fs.Bool("disable-telemetry", false, "ignored")
	fs.Bool("disable-update-check", false, "ignored")
	userData := fs.String("user-data-dir", "", "<home>/state")
	fs.String("extensions-dir", "", "ignored")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 1 {
		return nil, fmt.Errorf("unexpected arguments %q (want at most a folder)", fs.Args())
	}
	switch {
	case *socket == "":
		return nil, errors.New("--socket is required")
	case *auth != "none":
		return nil, fmt.Errorf("--auth %q: the agent always passes none", *auth)
	case *userData == "":
		return nil, errors.New("--user-data-dir is required (it names the workspace)")
	}
	m, err := strconv.ParseUint(*mode, 8, 32)
	if err != nil || m > 0o777 {
		return nil, fmt.Errorf("--socket-mode %q: want an octal mode such as 600", *mode)
	}
	home := filepath.Dir(filepath.Clean(*userData))
	return &standin{
		socket:     *socket,
		socketMode: os.FileMode(m),
		workspace:  filepath.Base(home),
		usersDir:   filepath.Dir(home),
		upgrader: websocket.Upgrader{
			// The gateway checked the Origin; the agent passes any.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}, nil
}

// listen opens the unix socket with the mode asked for.
func (s *standin) listen() (net.Listener, error) {
	ln, err := net.Listen("unix", s.socket)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(s.socket, s.socketMode); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// owner returns the user whose home links to this workspace, or "" while
// none does.
func (s *standin) owner() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.user != "" {
		return s.user
	}
	entries, err := os.ReadDir(s.usersDir)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if e.Type()&os.ModeSymlink == 0 {
			continue
		}
		if t, err := os.Readlink(filepath.Join(s.usersDir, e.Name())); err == nil && filepath.Base(t) == s.workspace {
			s.user = e.Name()
			break
		}
	}
	return s.user
}

// identity is the first line of every answer.
func (s *standin) identity() string {
	return formatIdentity(s.owner(), s.workspace)
}

// formatIdentity is the stand-in's identity line for a user and workspace.
func formatIdentity(user, workspace string) string {
	return fmt.Sprintf("%s user=%s workspace=%s", standinTag, user, workspace)
}

// parseIdentity reads the identity line at the start of an answer.
func parseIdentity(b []byte) (user, workspace string, ok bool) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	rest, found := strings.CutPrefix(string(line), standinTag+" user=")
	if !found {
		return "", "", false
	}
	user, workspace, found = strings.Cut(rest, " workspace=")
	return user, workspace, found && workspace != ""
}

func (s *standin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/healthz":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"alive","lastHeartbeat":%d}`+"\n", time.Now().UnixMilli())
	case websocket.IsWebSocketUpgrade(r):
		s.echo(w, r)
	default:
		s.page(w, r)
	}
}

// page answers bodySize bytes: the identity line, then filler. "/" is an
// HTML page, as the workbench's is; anything else plain text.
func (s *standin) page(w http.ResponseWriter, r *http.Request) {
	html := r.URL.Path == "/"
	var b bytes.Buffer
	b.Grow(bodySize)
	b.WriteString(s.identity())
	b.WriteByte('\n')
	if html {
		b.WriteString("<!doctype html><title>stand-in IDE</title><p>codehub loadgen's stand-in for code-server.</p>\n")
	}
	for b.Len() < bodySize {
		b.WriteByte('.')
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if html {
		h.Set("Content-Type", "text/html; charset=utf-8")
	}
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b.Bytes())
}

// echo sends the identity as the first message, then echoes every message.
func (s *standin) echo(w http.ResponseWriter, r *http.Request) {
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered
	}
	defer conn.Close()
	if err := conn.WriteMessage(websocket.TextMessage, []byte(s.identity())); err != nil {
		return
	}
	echoMessages(conn)
}
