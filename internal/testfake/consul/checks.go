package consul

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// maxCheckOutput is how much of a check's answer Consul keeps as output.
const maxCheckOutput = 4096

// startCheck launches what keeps a new check's status: a runner for HTTP
// and TCP checks, a timer for TTL checks. It runs with s.mu held.
func (s *Server) startCheck(d *datacenter, c *check) {
	select {
	case <-s.done:
		return
	default:
	}
	switch c.kind {
	case "ttl":
		c.ttlTimer = time.AfterFunc(c.ttl, func() { s.expireTTL(d, c) })
	case "http", "tcp", "grpc":
		c.stop = make(chan struct{})
		s.wg.Add(1)
		go s.runCheck(d, c, c.stop)
	}
}

func (s *Server) expireTTL(d *datacenter, c *check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.halted || d.checks[c.hc.CheckID] != c {
		return
	}
	d.setStatus(c, api.HealthCritical, "TTL expired")
}

// runCheck runs an HTTP, TCP or gRPC check at once, then every interval, until
// stop or the server closes.
func (s *Server) runCheck(d *datacenter, c *check, stop <-chan struct{}) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
		case <-s.done:
		case <-ctx.Done():
		}
		cancel()
	}()
	var probe func(context.Context) (string, string)
	switch c.kind {
	case "http":
		tr := &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: c.def.TLSSkipVerify, ServerName: c.def.TLSServerName}, //nolint:gosec // as the check asks
		}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: c.timeout}
		probe = func(ctx context.Context) (string, string) { return probeHTTP(ctx, client, c) }
	case "tcp":
		probe = func(ctx context.Context) (string, string) { return probeTCP(ctx, c, c.def.TCP) }
	case "grpc":
		// host:port[/service]; the fake connects, it does not speak the
		// gRPC health protocol.
		addr, _, _ := strings.Cut(c.def.GRPC, "/")
		probe = func(ctx context.Context) (string, string) { return probeTCP(ctx, c, addr) }
	}
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		status, output := probe(ctx)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		if !c.halted && !c.held && d.checks[c.hc.CheckID] == c {
			d.report(c, status, output)
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeHTTP asks the check's URL as a Consul agent does: 2xx is passing,
// 429 warning, anything else (or no answer) critical.
func probeHTTP(ctx context.Context, client *http.Client, c *check) (string, string) {
	method := c.def.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if c.def.Body != "" {
		body = strings.NewReader(c.def.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.def.HTTP, body)
	if err != nil {
		return api.HealthCritical, err.Error()
	}
	for k, vs := range c.def.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "Consul Health Check")
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/plain, text/*, */*")
	}
	resp, err := client.Do(req)
	if err != nil {
		return api.HealthCritical, err.Error()
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, maxCheckOutput))
	_, _ = io.Copy(io.Discard, resp.Body)
	output := fmt.Sprintf("HTTP %s %s: %s Output: %s", method, c.def.HTTP, resp.Status, out)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return api.HealthPassing, output
	case resp.StatusCode == http.StatusTooManyRequests:
		return api.HealthWarning, output
	default:
		return api.HealthCritical, output
	}
}

func probeTCP(ctx context.Context, c *check, addr string) (string, string) {
	dialer := net.Dialer{Timeout: c.timeout}
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return api.HealthCritical, err.Error()
	}
	_ = conn.Close()
	return api.HealthPassing, "TCP connect " + addr + ": Success"
}

// reap removes services whose check has been critical for longer than its
// DeregisterCriticalServiceAfter.
func (s *Server) reap() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		now := time.Now()
		s.mu.Lock()
		for _, d := range s.dcs {
			var gone []string
			for _, c := range d.checks {
				if c.deregisterAfter > 0 && c.hc.Status == api.HealthCritical &&
					!c.criticalSince.IsZero() && now.Sub(c.criticalSince) > c.deregisterAfter {
					gone = append(gone, c.hc.ServiceID)
				}
			}
			for _, id := range gone {
				if d.deregister(id) {
					s.log.Info("critical service deregistered", "dc", d.name, "id", id)
				}
			}
		}
		s.mu.Unlock()
	}
}
