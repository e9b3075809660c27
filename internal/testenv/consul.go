package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// consulReadyGuard bounds the wait for agents to elect themselves and
// join over the WAN: it only keeps a broken start from hanging.
const consulReadyGuard = 2 * time.Minute

// ConsulBinary returns the consul binary to start agents with: CONSUL_BIN
// when set (an error if it is not an executable), else `consul` on PATH,
// else "" (no error: Consul is not installed).
func ConsulBinary() (string, error) {
	if b := os.Getenv("CONSUL_BIN"); b != "" {
		p, err := exec.LookPath(b)
		if err != nil {
			return "", fmt.Errorf("CONSUL_BIN=%s: %w", b, err)
		}
		return p, nil
	}
	p, err := exec.LookPath("consul")
	if err != nil {
		return "", nil
	}
	return p, nil
}

// ConsulAgents are real Consul dev agents, one per datacenter, on
// loopback ports of their own and joined over the WAN: a federated
// Consul, as a gateway in one datacenter sees the others. Dev agents keep
// their state in memory.
type ConsulAgents struct {
	tb     testing.TB
	bin    string
	dcs    []string
	agents map[string]*consulAgent
}

// consulAgent is one datacenter's agent (a dev-mode server).
type consulAgent struct {
	dc                          string
	http, serfLAN, serfWAN, rpc int
	config, log                 string
	mu                          sync.Mutex
	cmd                         *exec.Cmd
	exited                      chan struct{} // closed when cmd has exited
	exitErr                     error
}

// StartConsulAgents starts one dev agent per datacenter in dcs (the first
// the primary) and waits until each answers queries for every datacenter; they are stopped when tb ends. Without a consul binary tb
// is skipped (failed under CODEHUB_E2E=require), saying so: callers that
// can use the fake instead ask ConsulBinary first.
func StartConsulAgents(tb testing.TB, dcs ...string) *ConsulAgents {
	tb.Helper()
	SkipShort(tb)
	bin, err := ConsulBinary()
	if err != nil {
		tb.Fatal(err)
	}
	if bin == "" {
		Need(tb, "a consul binary (on PATH, or CONSUL_BIN) to start Consul agents in "+strings.Join(dcs, " and "))
	}
	if len(dcs) == 0 {
		dcs = []string{"dc1"}
	}
	a := &ConsulAgents{tb: tb, bin: bin, dcs: slices.Clone(dcs), agents: map[string]*consulAgent{}}
	grpcTLS, err := consulHasGRPCTLS(bin)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	ports := freeTCPUDPPorts(tb, 4*len(dcs)) // distinct across agents
	for i, dc := range dcs {
		if dc == "" || a.agents[dc] != nil {
			tb.Fatalf("consul agents: datacenter %q empty or repeated", dc)
		}
		ag := &consulAgent{dc: dc, config: filepath.Join(dir, dc+".json"), log: filepath.Join(dir, dc+".log")}
		p := ports[4*i:]
		ag.http, ag.serfLAN, ag.serfWAN, ag.rpc = p[0], p[1], p[2], p[3]
		a.agents[dc] = ag
	}
	for _, dc := range dcs {
		if err := a.writeConfig(a.agents[dc], grpcTLS); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(a.stopAll)
	started := time.Now()
	for _, dc := range dcs {
		if err := a.agents[dc].start(bin); err != nil {
			tb.Fatalf("start the consul agent of %s: %v", dc, err)
		}
	}
	a.waitFederated()
	tb.Logf("consul agents of %s ready in %s (%s)", strings.Join(dcs, ", "), time.Since(started).Round(time.Millisecond), bin)
	return a
}

// Datacenters returns the agents' datacenters, the first first.
func (a *ConsulAgents) Datacenters() []string { return slices.Clone(a.dcs) }

// Addr is the host:port of dc's agent's HTTP API ("" for an unknown
// datacenter).
func (a *ConsulAgents) Addr(dc string) string {
	ag := a.agents[dc]
	if ag == nil {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ag.http))
}

// Stop kills dc's agent, as a datacenter whose servers crash: the other
// agents have no path to it until Start. A dev agent's state goes with
// it: what was registered there must be registered again.
func (a *ConsulAgents) Stop(dc string) error {
	ag := a.agents[dc]
	if ag == nil {
		return fmt.Errorf("consul agents: no datacenter %q", dc)
	}
	ag.kill()
	return nil
}

// Start starts dc's stopped agent again, on the same ports, and waits
// until it has joined the others over the WAN again.
func (a *ConsulAgents) Start(dc string) error {
	a.tb.Helper()
	ag := a.agents[dc]
	if ag == nil {
		return fmt.Errorf("consul agents: no datacenter %q", dc)
	}
	if ag.running() {
		return nil
	}
	if err := ag.start(a.bin); err != nil {
		return err
	}
	a.waitFederated()
	return nil
}

// writeConfig writes ag's configuration: every port its own on 127.0.0.1
// (DNS, gRPC and HTTPS off), the first datacenter the primary, a WAN join
// to every other agent, retried every second.
func (a *ConsulAgents) writeConfig(ag *consulAgent, grpcTLS bool) error {
	var join []string
	for _, dc := range a.dcs {
		if dc != ag.dc {
			join = append(join, net.JoinHostPort("127.0.0.1", strconv.Itoa(a.agents[dc].serfWAN)))
		}
	}
	ports := map[string]int{
		"http": ag.http, "serf_lan": ag.serfLAN, "serf_wan": ag.serfWAN, "server": ag.rpc,
		"dns": -1, "grpc": -1, "https": -1,
	}
	if grpcTLS {
		ports["grpc_tls"] = -1
	}
	cfg := map[string]any{
		"datacenter":         ag.dc,
		"node_name":          "codehub-test-" + ag.dc,
		"bind_addr":          "127.0.0.1",
		"client_addr":        "127.0.0.1",
		"advertise_addr":     "127.0.0.1",
		"advertise_addr_wan": "127.0.0.1",
		"ports":              ports,
		"primary_datacenter": a.dcs[0],
		"retry_join_wan":     join,
		"retry_interval_wan": "1s",
		// A dev agent turns Connect on, which the tests do not use; off,
		// a second datacenter has no CA to replicate.
		"connect":              map[string]any{"enabled": false},
		"disable_update_check": true,
		"log_level":            "INFO",
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(ag.config, b, 0o600)
}

// waitFederated waits until every agent answers catalog queries for every
// datacenter: each has a leader and reaches the others over the WAN.
func (a *ConsulAgents) waitFederated() {
	a.tb.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(consulReadyGuard)
	for _, from := range a.dcs {
		ag := a.agents[from]
		for _, to := range a.dcs {
			url := "http://" + a.Addr(from) + "/v1/catalog/services?dc=" + to
			var last string
			for {
				if err := ag.exitError(); err != nil {
					a.tb.Fatalf("the consul agent of %s exited: %v\n%s", from, err, tail(ag.log, 40))
				}
				resp, err := client.Get(url)
				if err == nil {
					body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
					last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
				} else {
					last = err.Error()
				}
				if time.Now().After(deadline) {
					a.tb.Fatalf("consul agents not federated after %s: GET %s: %s\n%s", consulReadyGuard, url, last, tail(ag.log, 40))
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
}

func (a *ConsulAgents) stopAll() {
	for _, dc := range a.dcs {
		a.agents[dc].kill()
	}
	if a.tb.Failed() {
		for _, dc := range a.dcs {
			a.tb.Logf("consul agent of %s, last lines of its log:\n%s", dc, tail(a.agents[dc].log, 60))
		}
	}
}

// start runs the agent, its output appended to its log.
func (ag *consulAgent) start(bin string) error {
	logf, err := os.OpenFile(ag.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "agent", "-dev", "-config-file", ag.config)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Nothing of the tests' own Consul (CONSUL_HTTP_ADDR, a token) is the
	// agent's business.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONSUL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	ag.mu.Lock()
	ag.cmd, ag.exited, ag.exitErr = cmd, exited, nil
	ag.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		if err == nil {
			err = errors.New("exited")
		}
		ag.mu.Lock()
		ag.exitErr = err
		ag.mu.Unlock()
		close(exited)
	}()
	return nil
}

func (ag *consulAgent) running() bool {
	ag.mu.Lock()
	started := ag.exited != nil
	ag.mu.Unlock()
	return started && ag.exitError() == nil
}

// exitError is why the agent exited, or nil while it runs.
func (ag *consulAgent) exitError() error {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	if ag.exited == nil {
		return nil
	}
	select {
	case <-ag.exited:
		return ag.exitErr
	default:
		return nil
	}
}

// kill stops the agent at once and waits for it to be gone.
func (ag *consulAgent) kill() {
	ag.mu.Lock()
	cmd, exited := ag.cmd, ag.exited
	ag.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// consulVersionRE finds the version in `consul version`'s first line.
var consulVersionRE = regexp.MustCompile(`Consul v(\d+)\.(\d+)`)

// consulHasGRPCTLS reports whether the binary knows ports.grpc_tls
// (Consul 1.14 and later), which dev agents before 1.14 refuse as an
// unknown key.
func consulHasGRPCTLS(bin string) (bool, error) {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return false, fmt.Errorf("%s version: %w", bin, err)
	}
	m := consulVersionRE.FindSubmatch(out)
	if m == nil {
		return false, fmt.Errorf("%s version: no version in %q", bin, out)
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	return major > 1 || major == 1 && minor >= 14, nil
}

// freeTCPUDPPorts returns n distinct loopback ports free for both TCP and
// UDP (Serf gossips over both).
func freeTCPUDPPorts(tb testing.TB, n int) []int {
	tb.Helper()
	var out []int
	for tries := 0; len(out) < n; tries++ {
		if tries > 100 {
			tb.Fatal("no free loopback ports for Consul")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		if !slices.Contains(out, port) {
			out = append(out, port)
		}
	}
	return out
}

// tail is the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
