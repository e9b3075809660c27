package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigBeforeTheSubcommand: `codehub --config F user ...` is
// `codehub user ... --config F`, in every form of the flag; a --config
// before a command that reads none is refused, and before a folder it
// is still the gateway's.
func TestConfigBeforeTheSubcommand(t *testing.T) {
	t.Parallel()
	cfg := multiConfig{Upstream: "http://127.0.0.1:1"}.write(t)
	createUser(t, cfg, "ada", "ada-password-1")
	for _, argv := range [][]string{
		{"codehub", "--config", cfg, "user", "list"},
		{"codehub", "--config=" + cfg, "user", "list"},
		{"codehub", "-config", cfg, "user", "list"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), argv, testGetenv(t), strings.NewReader(""), &out, &errOut); err != nil {
			t.Errorf("%q: %v\n%s", argv, err, errOut.String())
			continue
		}
		if !strings.Contains(out.String(), "ada") {
			t.Errorf("%q listed %q", argv, out.String())
		}
	}

	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"codehub", "--config", cfg, "hash-password"}, testGetenv(t), strings.NewReader("x\n"), &out, &errOut)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "hash-password takes no --config") {
		t.Errorf("--config before hash-password: %v", err)
	}

	got, err := globalFirst([]string{"codehub", "--config", cfg, "some-folder"})
	if err != nil || strings.Join(got, " ") != "codehub --config "+cfg+" some-folder" {
		t.Errorf("before a folder: %q, %v", got, err)
	}
	got, err = globalFirst([]string{"codehub", "--config", cfg, "audit", "verify", "--database"})
	if err != nil || strings.Join(got, " ") != "codehub audit verify --database --config "+cfg {
		t.Errorf("before audit: %q, %v", got, err)
	}
}

// TestAgentNoNewPrivileges: `codehub agent --no-new-privileges` runs its
// code-server, and so everything the user starts, with no_new_privs, so
// that no set-uid program gives root back (the exec driver of Nomad has
// no such switch); without the flag nothing changes, and an agent run
// in-process, where it cannot be set for every thread, refuses to start.
func TestAgentNoNewPrivileges(t *testing.T) {
	t.Parallel()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A stand-in code-server: writes the status of a process it starts,
	// as a user's terminal would be, then waits.
	ide := filepath.Join(dir, "code-server")
	script := "#!/bin/sh\nsh -c 'grep -E \"^(NoNewPrivs|CapEff)\" /proc/self/status' > \"$STATUS_FILE.tmp\" && mv \"$STATUS_FILE.tmp\" \"$STATUS_FILE\"\nexec sleep 60\n"
	if err := os.WriteFile(ide, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	status := func(t *testing.T, flags ...string) string {
		out := filepath.Join(t.TempDir(), "status")
		args := append([]string{"agent", "--listen", "127.0.0.1:0", "--secret-file", secret, "--code-server", ide,
			"--user-data-dir", filepath.Join(t.TempDir(), "state")}, flags...)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "STATUS_FILE="+out)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}()
		for deadline := time.Now().Add(guard); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if b, err := os.ReadFile(out); err == nil {
				return string(b)
			}
		}
		t.Fatalf("the stand-in code-server wrote no status; agent stderr:\n%s", stderr.String())
		return ""
	}
	if got := status(t, "--no-new-privileges"); !strings.Contains(got, "NoNewPrivs:\t1") {
		t.Errorf("with --no-new-privileges: %q", got)
	}
	if got := status(t); !strings.Contains(got, "NoNewPrivs:\t0") {
		t.Errorf("without: %q", got)
	}

	var out, errOut bytes.Buffer
	err = run(context.Background(), []string{"codehub", "agent", "--secret-file", secret, "--code-server", ide, "--no-new-privileges"},
		testGetenv(t), strings.NewReader(""), &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "no_new_privs is not set") {
		t.Errorf("in-process agent with --no-new-privileges: %v", err)
	}
	if strings.Contains(out.String(), "READY") {
		t.Errorf("the in-process agent started: %s", out.String())
	}
}
