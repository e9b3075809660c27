package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadSecret(t *testing.T) {
	good := strings.Repeat("k", MinSecretLen)
	dir := t.TempDir()
	file := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == SecretEnv {
				return v
			}
			return ""
		}
	}
	cases := []struct {
		name    string
		file    string
		env     string
		want    string
		wantErr string
	}{
		{name: "file", file: file("ok", good+"\n", 0o600), want: good},
		{name: "read-only file", file: file("ro", good, 0o400), want: good},
		{name: "file wins over the environment", file: file("ok2", good, 0o600), env: strings.Repeat("e", 40), want: good},
		{name: "environment", env: good + "e", want: good + "e"},
		{name: "readable by others", file: file("world", good, 0o644), wantErr: "mode 0644"},
		{name: "readable by the group", file: file("group", good, 0o640), wantErr: "mode 0640"},
		{name: "writable by the group", file: file("gw", good, 0o620), wantErr: "mode 0620"},
		{name: "short file", file: file("short", "tooshort\n", 0o600), wantErr: "too short"},
		{name: "empty file", file: file("empty", "\n", 0o600), wantErr: "empty"},
		{name: "missing file", file: filepath.Join(dir, "nope"), wantErr: "no such file"},
		{name: "a directory", file: dir, wantErr: "not a regular file"},
		{name: "short environment", env: "short", wantErr: "too short"},
		{name: "nothing", wantErr: ErrNoSecret.Error()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadSecret(tc.file, env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadSecret = %q, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("LoadSecret = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := LoadSecret("", env("")); !errors.Is(err, ErrNoSecret) {
		t.Errorf("no secret: %v, want ErrNoSecret", err)
	}
	// The file is left in place.
	if _, err := os.Stat(filepath.Join(dir, "world")); err != nil {
		t.Errorf("refused secret file: %v", err)
	}
}
