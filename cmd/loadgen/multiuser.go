package main

import (
	"context"
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
	"time"
)

// multiResult is the multi-user sign-in measurement.
type multiResult struct {
	sequential      []time.Duration // sorted
	burst           []time.Duration // sorted
	burstElapsed    time.Duration
	rssBefore, peak int64 // bytes: resident before the burst, peak after it
	bearer          []time.Duration
}

const benchUser, benchEmail = "bench", "bench@example.com"

// multiUserConfig is codehub in multi-user mode on its embedded default
// (SQLite), its throttles opened wide so that the measurement is of the
// sign-in itself.
func multiUserConfig(dir, addr, upstreamAddr string) string {
	return fmt.Sprintf(`# Written by codehub's cmd/loadgen.
deployment_mode = "multi"
bind_addr       = %q
data_dir        = %q
upstream        = "http://%s"
log_level       = "warn"

login_throttle {
  per_address_burst = 100000
  global_burst      = 100000
}

multi_user {
  auth {
    database { path = %q }
    lockout { max_failures = 0 }
  }
  isolation { strategy = "directory" }
  scaling {
    container_pool { enabled = false }
  }
  limits {
    max_sessions_per_user             = 100000
    api_requests_per_minute           = 0 # measure the sign-in, not the rate limit
    anonymous_api_requests_per_minute = 0
  }
}
`, addr, dir, upstreamAddr, filepath.Join(dir, "codehub.db"))
}

// measureMultiUser starts codehub in multi-user mode, creates an account
// with `codehub user create`, then times sequential sign-ins through the
// JSON API, a burst of concurrent ones, and bearer-token requests.
func (b *bench) measureMultiUser(ctx context.Context, bin, dir, upstreamAddr string) (*multiResult, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "multi.hcl")
	if err := os.WriteFile(conf, []byte(multiUserConfig(dir, addr, upstreamAddr)), 0o600); err != nil {
		return nil, err
	}
	env := []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	password := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	create := exec.CommandContext(ctx, bin, "user", "create", "--config", conf, "--username", benchUser,
		"--email", benchEmail, "--password-stdin")
	create.Env = env
	create.Stdin = strings.NewReader(password + "\n")
	if out, err := create.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("codehub user create: %v\n%s", err, out)
	}
	c, err := startChild("codehub (multi-user)", bin, []string{"--config", conf}, env, dir)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	base := "http://" + addr
	if err := c.waitReady(ctx, base+"/healthz"); err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: b.opts.burst}, Timeout: 2 * time.Minute}
	login := func() (time.Duration, string, error) {
		var pair struct {
			AccessToken string `json:"access_token"`
		}
		start := time.Now()
		code, err := postJSON(ctx, client, base+"/api/v1/auth/login", "",
			map[string]string{"username": benchUser, "password": password}, &pair)
		d := time.Since(start)
		if err != nil {
			return 0, "", fmt.Errorf("sign-in: %w", err)
		}
		if code != http.StatusOK {
			return 0, "", fmt.Errorf("sign-in answered %d", code)
		}
		return d, pair.AccessToken, nil
	}

	res := &multiResult{}
	b.logf("codehub multi-user: %d sequential sign-ins", loginRounds)
	var access string
	for range loginRounds {
		d, tok, err := login()
		if err != nil {
			return nil, err
		}
		res.sequential = append(res.sequential, d)
		access = tok
	}
	slices.Sort(res.sequential)

	pid := c.cmd.Process.Pid
	if res.rssBefore, err = procStatus(pid, "VmRSS"); err != nil {
		return nil, err
	}
	b.logf("codehub multi-user: burst of %d concurrent sign-ins", b.opts.burst)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		release = make(chan struct{})
	)
	for range b.opts.burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release
			d, _, err := login()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			res.burst = append(res.burst, d)
		}()
	}
	start := time.Now()
	close(release)
	wg.Wait()
	res.burstElapsed = time.Since(start)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d of %d concurrent sign-ins failed, first: %w", len(errs), b.opts.burst, errs[0])
	}
	slices.Sort(res.burst)
	if res.peak, err = procStatus(pid, "VmHWM"); err != nil {
		return nil, err
	}

	b.logf("codehub multi-user: %d requests with a bearer token", loginRounds*50)
	for range loginRounds * 50 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+access)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET /api/v1/me with a bearer token answered %s", resp.Status)
		}
		res.bearer = append(res.bearer, time.Since(t0))
	}
	slices.Sort(res.bearer)
	return res, nil
}

// procStatus reads a size field (kB) of /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// write prints the multi-user section of the report.
func (m *multiResult) write(b *strings.Builder, burst int) {
	fmt.Fprintf(b, "\nMulti-user sign-in (SQLite, argon2id m=19 MiB t=2 p=1, at most %d hashes at once), POST /api/v1/auth/login:\n\n", runtime.NumCPU())
	b.WriteString("| measurement | p50 | p99 | other |\n|---|---:|---:|---|\n")
	fmt.Fprintf(b, "| %d sequential sign-ins | %.1f ms | %.1f ms | |\n", len(m.sequential),
		millis(percentile(m.sequential, 50)), millis(percentile(m.sequential, 99)))
	fmt.Fprintf(b, "| burst of %d concurrent sign-ins | %.0f ms | %.0f ms | %.1f sign-ins/s; gateway RSS %d MiB before, peak %d MiB |\n",
		burst, millis(percentile(m.burst, 50)), millis(percentile(m.burst, 99)),
		float64(len(m.burst))/m.burstElapsed.Seconds(), m.rssBefore>>20, m.peak>>20)
	fmt.Fprintf(b, "| GET /api/v1/me with a bearer token, sequential | %s | %s | |\n",
		formatLatency(percentile(m.bearer, 50)), formatLatency(percentile(m.bearer, 99)))
}
