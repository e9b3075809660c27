package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/config"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample", ms(7), 99, 7 * time.Millisecond},
		{"median of four is the second", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"median of five", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"p99 of 20 is the largest", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20), 99, 20 * time.Millisecond},
		{"p99 of 100", hundred, 99, 99 * time.Millisecond},
		{"p50 of 100", hundred, 50, 50 * time.Millisecond},
		{"p100", hundred, 100, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(p%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

// wrkReport is the output of wrk 4.1 with --latency, with errors.
const wrkReport = `Running 5s test @ http://127.0.0.1:40123/bench
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms    2.01ms  45.67ms   91.20%
    Req/Sec    21.10k     1.92k   25.33k    72.00%
  Latency Distribution
     50%  812.00us
     75%    1.30ms
     90%    2.10ms
     99%   10.25ms
  210003 requests in 5.00s, 246.09MB read
  Socket errors: connect 0, read 2, write 1, timeout 3
  Non-2xx or 3xx responses: 17
Requests/sec:  41987.65
Transfer/sec:     49.20MB
`

func TestParseWrk(t *testing.T) {
	got, err := parseWrk(wrkReport)
	if err != nil {
		t.Fatal(err)
	}
	want := httpResult{rps: 41987.65, p50: 812 * time.Microsecond, p99: 10250 * time.Microsecond, non2xx: 17, errors: 6}
	if got != want {
		t.Errorf("parseWrk = %+v, want %+v", got, want)
	}

	clean := strings.NewReplacer(
		"  Socket errors: connect 0, read 2, write 1, timeout 3\n", "",
		"  Non-2xx or 3xx responses: 17\n", "",
	).Replace(wrkReport)
	got, err = parseWrk(clean)
	if err != nil {
		t.Fatal(err)
	}
	if got.non2xx != 0 || got.errors != 0 {
		t.Errorf("clean run: non2xx %d, errors %d, want 0, 0", got.non2xx, got.errors)
	}

	for name, out := range map[string]string{
		"no Requests/sec":  strings.Replace(wrkReport, "Requests/sec:", "Requests:", 1),
		"no distribution":  strings.Replace(wrkReport, "     99%   10.25ms\n", "", 1),
		"bad latency unit": strings.Replace(wrkReport, "812.00us", "812.00xs", 1),
	} {
		if _, err := parseWrk(out); err == nil {
			t.Errorf("%s: parseWrk succeeded, want an error", name)
		}
	}
}

func TestParseWrkDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"812.00us", 812 * time.Microsecond},
		{"1.25ms", 1250 * time.Microsecond},
		{"2.00s", 2 * time.Second},
		{"1.50m", 90 * time.Second},
		{"0.00us", 0},
	}
	for _, tt := range tests {
		got, err := parseWrkDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "ms", "1.2", "1.2 ms", "1.2.3ms", "3days"} {
		if got, err := parseWrkDuration(bad); err == nil {
			t.Errorf("parseWrkDuration(%q) = %v, want an error", bad, got)
		}
	}
}

func TestWrkDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Second:        "10s",
		90 * time.Second:        "90s",
		1500 * time.Millisecond: "2s",
		time.Millisecond:        "1s",
	} {
		if got := wrkDuration(d); got != want {
			t.Errorf("wrkDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestExtractCSRF(t *testing.T) {
	page := `<form method="post" action="/login" novalidate>
  <input type="hidden" name="csrf" value="abc-DEF_123&amp;x">
  <input type="hidden" name="to" value="/">`
	got, err := extractCSRF(page)
	if err != nil || got != "abc-DEF_123&x" {
		t.Errorf("extractCSRF = %q, %v; want %q", got, err, "abc-DEF_123&x")
	}
	for _, bad := range []string{
		`<input type="hidden" name="to" value="/">`,
		`<input type="hidden" name="csrf" value="">`,
	} {
		if got, err := extractCSRF(bad); err == nil {
			t.Errorf("extractCSRF(%q) = %q, want an error", bad, got)
		}
	}
}

func TestNginxConfig(t *testing.T) {
	conf, err := nginxConfig("/tmp/x", "127.0.0.1:8081", "127.0.0.1:9000")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"worker_processes auto;",
		`pid "/tmp/x/nginx.pid";`,
		`error_log "/tmp/x/error.log"`,
		`proxy_temp_path "/tmp/x/proxy";`,
		"server 127.0.0.1:9000;",
		"keepalive 64;",
		"listen 127.0.0.1:8081;",
		"proxy_http_version 1.1;",
		"map $http_upgrade $connection_upgrade",
		"proxy_set_header Upgrade $http_upgrade;",
		"proxy_set_header Connection $connection_upgrade;",
		"proxy_buffering off;",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("nginx.conf lacks %q:\n%s", want, conf)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{limit: 5}
	for _, s := range []string{"abc", "defg", "h"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got := b.String(); got != "defgh" {
		t.Errorf("tail = %q, want %q", got, "defgh")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-gateway", "bin/codehub", "-duration", "5s", "-ws-rounds", "10"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := options{gateway: "bin/codehub", duration: 5 * time.Second, wsRounds: 10, connections: 64, burst: 200,
		workspaces: 100, workspaceLoad: 20 * time.Second}
	if o != want {
		t.Errorf("parseFlags = %+v, want %+v", o, want)
	}
	o, err = parseFlags([]string{"-gateway", "bin/codehub", "-workspaces", "50", "-workspaces-only", "-workspace-load", "5s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.workspaces != 50 || !o.workspacesOnly || o.workspaceLoad != 5*time.Second {
		t.Errorf("parseFlags with the workspace scenario = %+v", o)
	}
	if o, err := parseFlags([]string{"-gateway", "x", "-workspaces", "0"}, io.Discard); err != nil || o.workspaces != 0 {
		t.Errorf("-workspaces 0 (skip the scenario): %+v, %v", o, err)
	}
	for _, args := range [][]string{
		{},
		{"-gateway", "x", "-connections", "0"},
		{"-gateway", "x", "-burst", "0"},
		{"-gateway", "x", "-duration", "10ms"},
		{"-gateway", "x", "extra"},
		{"-gateway", "x", "-workspaces", "-1"},
		{"-gateway", "x", "-workspaces", "100000"},
		{"-gateway", "x", "-workspaces", "3", "-workspace-load", "10ms"},
		{"-gateway", "x", "-workspaces", "0", "-workspaces-only"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", args)
		}
	}
}

// TestUpstreamDirect runs the built-in load generator and the WebSocket
// round trips against the in-process upstream: the paths that the full run
// takes without wrk, or only through real proxies.
func TestUpstreamDirect(t *testing.T) {
	up, err := startUpstream()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	tg := &target{name: "direct", base: "http://" + up.addr}
	ctx := context.Background()

	b := &bench{client: &http.Client{CheckRedirect: noRedirect}}
	if err := b.check(ctx, tg); err != nil {
		t.Fatal(err)
	}
	h, err := runBuiltin(ctx, tg, options{connections: 4, duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if h.rps <= 0 || h.p50 <= 0 || h.p99 < h.p50 || h.non2xx != 0 || h.errors != 0 {
		t.Errorf("built-in generator: %+v", h)
	}
	ws, err := measureWS(ctx, tg, 50)
	if err != nil {
		t.Fatal(err)
	}
	if ws.p50 <= 0 || ws.p99 < ws.p50 {
		t.Errorf("WebSocket: %+v", ws)
	}
}

func TestProcStatus(t *testing.T) {
	rss, err := procStatus(os.Getpid(), "VmRSS")
	if err != nil || rss <= 0 {
		t.Fatalf("VmRSS = %d, %v", rss, err)
	}
	if _, err := procStatus(os.Getpid(), "NoSuchField"); err == nil {
		t.Fatal("a missing field was found")
	}
}

func TestMultiUserConfigLoads(t *testing.T) {
	s := multiUserConfig("/tmp/x", "127.0.0.1:1", "127.0.0.1:2")
	for _, want := range []string{`deployment_mode = "multi"`, `upstream        = "http://127.0.0.1:2"`, `max_sessions_per_user             = 100000`, `api_requests_per_minute           = 0`} {
		if !strings.Contains(s, want) {
			t.Errorf("config lacks %q:\n%s", want, s)
		}
	}
}

// TestMultiUserConfigIsValid loads the generated configuration with the
// gateway's own loader, so loadgen never starts a gateway that refuses it.
func TestMultiUserConfigIsValid(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "multi.hcl")
	if err := os.WriteFile(path, []byte(multiUserConfig(dir, "127.0.0.1:1", "127.0.0.1:2")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(config.LoadOptions{File: path, Getenv: func(string) string { return "" }}); err != nil {
		t.Fatalf("the gateway refuses loadgen's configuration: %v", err)
	}
}

func TestFitWorkspaces(t *testing.T) {
	for _, c := range []struct {
		want  int
		avail int64
		fit   int
	}{
		{100, 8 << 30, 100},                            // plenty
		{100, 2 << 30, (2<<30 - 512<<20) / (40 << 20)}, // 38
		{100, 256 << 20, 1},                            // never none
		{3, 1 << 30, 3},
	} {
		if got := fitWorkspaces(c.want, c.avail); got != c.fit {
			t.Errorf("fitWorkspaces(%d, %d MiB) = %d, want %d", c.want, c.avail>>20, got, c.fit)
		}
	}
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		return // not Linux
	}
	if avail, ok := memAvailable(); !ok || avail <= 0 {
		t.Errorf("memAvailable = %d, %v", avail, ok)
	}
}
