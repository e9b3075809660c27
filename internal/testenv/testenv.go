// Package testenv gives tests the real parts they run against: the
// code-server `make setup` installs, headless Chromium, a logger into t.Log,
// and a directory for artifacts such as screenshots.
//
// A test that needs a part the machine lacks is skipped, unless
// CODEHUB_E2E=require (as `make test` and CI set it), where it fails: CI
// must never pass by skipping.
package testenv

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/codehub-dev/codehub/internal/codeserver"
	"github.com/codehub-dev/codehub/internal/config"
	"github.com/hashicorp/go-hclog"
)

// Need skips or fails t, as CODEHUB_E2E says, because of missing.
func Need(t testing.TB, missing string) {
	t.Helper()
	if os.Getenv("CODEHUB_E2E") == "require" {
		t.Fatalf("required for this test: %s", missing)
	}
	t.Skipf("skipped: %s (set CODEHUB_E2E=require to fail instead)", missing)
}

// SkipShort skips t under -short: it starts real processes.
func SkipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real processes; skipped with -short")
	}
}

// CodeServer returns the path of the code-server launcher.
func CodeServer(t testing.TB) string {
	t.Helper()
	SkipShort(t)
	p, err := codeserver.Find(os.Getenv("CODEHUB_CODE_SERVER_PATH"), config.CodeServerVersion, os.Getenv)
	if err != nil {
		Need(t, err.Error())
	}
	return p
}

// ChromiumPath is where Debian installs Chromium.
const ChromiumPath = "/usr/bin/chromium"

// Browser starts a headless Chromium for t and returns a context for
// chromedp actions; it is closed when t ends.
func Browser(t testing.TB) context.Context {
	t.Helper()
	SkipShort(t)
	path := os.Getenv("CODEHUB_CHROMIUM")
	if path == "" {
		path = ChromiumPath
	}
	if _, err := os.Stat(path); err != nil {
		Need(t, "Chromium at "+path+" (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in CI
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 800),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // start the browser now
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// Screenshot saves a PNG of the page under the artifacts directory.
func Screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := ArtifactPath(t, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot: %s", path)
}

// ArtifactPath returns a path for a file kept after the test: under
// $CODEHUB_ARTIFACTS, or artifacts/ at the repository root.
func ArtifactPath(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("CODEHUB_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(repoRoot(), "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	safe := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	return filepath.Join(dir, safe+"-"+name)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Logger returns a logger writing into t.Log; lines logged by goroutines
// that outlive t are dropped.
func Logger(t testing.TB) hclog.Logger {
	w := &logWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: w})
}

type logWriter struct {
	t    testing.TB
	done atomic.Bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
