package testenv_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"

	"github.com/codehub-dev/codehub/internal/testenv"
)

// standInEnv makes this test binary a stand-in consul: the tests here
// check how agents are started, configured, stopped and started again,
// not Consul (which the tests that use the agents do, where it is
// installed).
const standInEnv = "CODEHUB_TESTENV_STAND_IN_CONSUL"

func TestMain(m *testing.M) {
	if os.Getenv(standInEnv) == "1" {
		os.Exit(standInConsul(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// standInConsul answers `consul version` and runs `consul agent -dev
// -config-file F` as far as the helper sees it: the HTTP port of F
// answering catalog queries. It refuses a configuration that would not
// make a WAN-joined dev agent on loopback.
func standInConsul(args []string) int {
	if len(args) > 0 && args[0] == "version" {
		fmt.Println("Consul v1.16.3\nRevision stand-in")
		return 0
	}
	if len(args) == 0 || args[0] != "agent" {
		fmt.Fprintln(os.Stderr, "stand-in consul: want agent or version, got", args)
		return 2
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	dev := fs.Bool("dev", false, "")
	file := fs.String("config-file", "", "")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	b, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var cfg struct {
		Datacenter        string         `json:"datacenter"`
		NodeName          string         `json:"node_name"`
		BindAddr          string         `json:"bind_addr"`
		PrimaryDatacenter string         `json:"primary_datacenter"`
		Ports             map[string]int `json:"ports"`
		RetryJoinWAN      []string       `json:"retry_join_wan"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch {
	case !*dev, cfg.Datacenter == "", cfg.NodeName == "", cfg.BindAddr != "127.0.0.1", cfg.PrimaryDatacenter != "dc1",
		cfg.Ports["http"] <= 0, cfg.Ports["serf_wan"] <= 0, cfg.Ports["grpc_tls"] != -1, cfg.Ports["dns"] != -1,
		len(cfg.RetryJoinWAN) != 1, os.Getenv("CONSUL_HTTP_ADDR") != "":
		fmt.Fprintf(os.Stderr, "stand-in consul: not a WAN-joined dev agent on loopback: dev %v, environment %q, %s\n",
			*dev, os.Getenv("CONSUL_HTTP_ADDR"), b)
		return 1
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Ports["http"])))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("stand-in consul agent of", cfg.Datacenter)
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/catalog/services" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `{"consul":[]}`)
	}))
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// TestConsulAgentsLifecycle: agents start with their own configuration,
// answer, one stops (its port refuses) and starts again on the same port.
func TestConsulAgentsLifecycle(t *testing.T) {
	t.Setenv(standInEnv, "1")
	t.Setenv("CONSUL_BIN", os.Args[0])
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1") // not passed on to the agents
	a := testenv.StartConsulAgents(t, "dc1", "dc2")
	if dcs := a.Datacenters(); len(dcs) != 2 || dcs[0] != "dc1" {
		t.Fatalf("Datacenters = %v", dcs)
	}
	get := func(dc string) error {
		resp, err := http.Get("http://" + a.Addr(dc) + "/v1/catalog/services")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if a.Addr("dc1") == a.Addr("dc2") || a.Addr("dc3") != "" {
		t.Fatalf("addresses %q %q %q", a.Addr("dc1"), a.Addr("dc2"), a.Addr("dc3"))
	}
	for _, dc := range []string{"dc1", "dc2"} {
		if err := get(dc); err != nil {
			t.Fatalf("%s: %v", dc, err)
		}
	}
	if err := a.Stop("dc2"); err != nil {
		t.Fatal(err)
	}
	if err := get("dc2"); err == nil {
		t.Fatal("a stopped agent answered")
	}
	if err := get("dc1"); err != nil {
		t.Fatalf("dc1 with dc2 stopped: %v", err)
	}
	if err := a.Start("dc2"); err != nil {
		t.Fatal(err)
	}
	if err := get("dc2"); err != nil {
		t.Fatalf("dc2 started again: %v", err)
	}
	if err := a.Stop("dc9"); err == nil {
		t.Error("stopping an unknown datacenter succeeded")
	}
}

func TestConsulBinary(t *testing.T) {
	t.Setenv("CONSUL_BIN", "/nonexistent/consul")
	if _, err := testenv.ConsulBinary(); err == nil {
		t.Error("a CONSUL_BIN that does not exist was accepted")
	}
	t.Setenv("CONSUL_BIN", os.Args[0])
	if got, err := testenv.ConsulBinary(); err != nil || got != os.Args[0] {
		t.Errorf("ConsulBinary = %q, %v; want %s", got, err, os.Args[0])
	}
}
