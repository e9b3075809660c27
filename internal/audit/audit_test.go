package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func events(n int) []Event {
	out := make([]Event, n)
	t0 := time.Date(2025, 11, 15, 10, 30, 0, 0, time.UTC)
	for i := range out {
		out[i] = Event{Timestamp: t0.Add(time.Duration(i) * time.Second), EventType: LoginSuccess, UserID: "user-123",
			Username: "alice", IPAddress: "192.168.1.100", UserAgent: "Mozilla/5.0", Status: StatusSuccess,
			Metadata: map[string]any{"sessionId": "session-456", "mfa": false, "n": i}}
	}
	return out
}

// TestFormat: the design's JSON shape, plus the chain fields.
func TestFormat(t *testing.T) {
	var buf bytes.Buffer
	s := NewWriterSink(&buf)
	if err := s.Append(context.Background(), events(1)); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"timestamp", "eventType", "userId", "username", "ipAddress", "userAgent", "status", "metadata", "seq", "prevHash", "hash"} {
		if _, ok := m[k]; !ok {
			t.Errorf("field %q missing: %s", k, buf.String())
		}
	}
	if m["timestamp"] != "2025-11-15T10:30:00Z" || m["eventType"] != "user.login" || m["seq"] != 1.0 || m["prevHash"] != "" {
		t.Errorf("entry: %s", buf.String())
	}
}

func writeLog(t *testing.T, cfg FileConfig, n int) {
	t.Helper()
	s, err := OpenFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(context.Background(), events(n)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestFileChainVerifies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	writeLog(t, FileConfig{Path: path}, 5)
	writeLog(t, FileConfig{Path: path}, 3) // a restart resumes the chain
	files, _ := LogFiles(path)
	n, first, err := VerifyFiles(files)
	if err != nil || n != 8 || first != 1 {
		t.Fatalf("VerifyFiles = %d, %d, %v", n, first, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestRotationKeepsTheChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	writeLog(t, FileConfig{Path: path, MaxBytes: 1000, MaxBackups: 100}, 20)
	files, _ := LogFiles(path)
	if len(files) < 3 {
		t.Fatalf("expected rotation, got %v", files)
	}
	n, _, err := VerifyFiles(files)
	if err != nil || n != 20 {
		t.Fatalf("VerifyFiles across rotations = %d, %v", n, err)
	}
}

func tamper(t *testing.T, path string, edit func(lines []string) []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = edit(lines)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	cases := []struct {
		name string
		edit func([]string) []string
		want string
	}{
		{"deleted line", func(l []string) []string { return append(l[:2], l[3:]...) }, "audit.log:3: broken chain"},
		{"altered line", func(l []string) []string {
			l[1] = strings.Replace(l[1], `"alice"`, `"mallory"`, 1)
			return l
		}, "audit.log:2: altered"},
		{"altered and rehashed line", func(l []string) []string {
			var e Event
			json.Unmarshal([]byte(l[1]), &e)
			e.Username = "mallory"
			e.Hash, _ = ComputeHash(e)
			b, _ := json.Marshal(e)
			l[1] = string(b)
			return l
		}, "audit.log:3: broken chain"},
		{"reordered lines", func(l []string) []string {
			l[1], l[2] = l[2], l[1]
			return l
		}, "audit.log:2: broken chain"},
		{"garbage line", func(l []string) []string { return append(l[:1], append([]string{"{not json"}, l[1:]...)...) }, "audit.log:2: not an audit entry"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			writeLog(t, FileConfig{Path: path}, 5)
			tamper(t, path, c.edit)
			_, _, err := VerifyFiles([]string{path})
			var ve *VerifyError
			if !errors.As(err, &ve) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	t.Run("first line deleted", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.log")
		writeLog(t, FileConfig{Path: path}, 5)
		tamper(t, path, func(l []string) []string { return l[1:] })
		_, first, err := VerifyFiles([]string{path})
		if err != nil || first != 2 {
			t.Fatalf("first = %d, %v: the missing start must show as a chain not starting at 1", first, err)
		}
	})
}

func TestLoggerOrdersAndDrains(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	fs, err := OpenFile(FileConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	l := NewLogger(hclog.NewNullLogger(), nil, fs, NewWriterSink(&buf))
	for i := 0; i < 1000; i++ {
		l.Record(Event{EventType: SessionCreated, Metadata: map[string]any{"i": i}})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	n, _, err := VerifyFiles([]string{path})
	if err != nil || n != 1000 {
		t.Fatalf("VerifyFiles = %d, %v", n, err)
	}
	if c := strings.Count(buf.String(), "\n"); c != 1000 {
		t.Fatalf("stdout sink got %d lines", c)
	}
	l.Record(Event{EventType: SessionCreated}) // after Close: dropped with a warning, no panic
}

// TestTwoWritersShareAFile: a gateway and the admin CLI append to one file;
// the chain stays whole.
func TestTwoWritersShareAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	a, err := OpenFile(FileConfig{Path: path, MaxBytes: 4000, MaxBackups: 100})
	if err != nil {
		t.Fatal(err)
	}
	b, err := OpenFile(FileConfig{Path: path, MaxBytes: 4000, MaxBackups: 100})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		s := a
		if i%3 == 0 {
			s = b
		}
		if err := s.Append(context.Background(), events(1)); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	b.Close()
	files, _ := LogFiles(path)
	n, first, err := VerifyFiles(files)
	if err != nil || n != 30 || first != 1 {
		t.Fatalf("VerifyFiles = %d, %d, %v", n, first, err)
	}
}
