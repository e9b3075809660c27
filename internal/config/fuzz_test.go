package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzEnv is the environment fuzzed configurations see.
func fuzzEnv(home string) func(string) string {
	return envMap(map[string]string{"HOME": home, "DB_PASSWORD": "secret", "CODEHUB_TEST_VALUE": "x"})
}

// fuzzLoad is the property of FuzzLoadHCL and FuzzLoadYAML: loading any
// file gives a valid configuration, the same each time, or an error of
// which every line names the file (and so the line and key) at fault.
func fuzzLoad(f *testing.F, name string) {
	examples, _ := filepath.Glob(filepath.Join("..", "..", "configs", "*"+filepath.Ext(name)))
	for _, p := range examples {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
	home := f.TempDir()
	path := filepath.Join(f.TempDir(), name)
	f.Fuzz(func(t *testing.T, content string) {
		if len(content) > 64<<10 {
			return
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		opts := LoadOptions{File: path, Getenv: fuzzEnv(home)}
		cfg, err := Load(opts)
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, path) {
					t.Fatalf("error line %q does not name the file; content:\n%s", line, content)
				}
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loaded, then invalid: %v", err)
		}
		again, err := Load(opts)
		if err != nil {
			t.Fatalf("second load: %v", err)
		}
		a, _ := json.Marshal(cfg)
		b, _ := json.Marshal(again)
		if string(a) != string(b) {
			t.Fatalf("two loads differ:\n%s\n%s", a, b)
		}
	})
}

// FuzzLoadHCL loads any HCL configuration file.
func FuzzLoadHCL(f *testing.F) {
	for _, s := range []string{
		"", "bind_addr = \"0.0.0.0:8080\"\n", "password = env(\"DB_PASSWORD\")\n", "password = env(\"NOPE\")\n",
		"session { ttl = \"12h\" }\nsession { ttl = 5 }\n", "trusted_origins = [\"https://ide.example.com\", \"x/y\"]\n",
		"request_body { idle_timeout = \"-1s\" }\n", "multi_user { limits { max_sessions_per_user = -1 } }\n",
		"deployment_mode = \"multi\"\nmulti_user { auth { database { type = \"postgres\" } } }\n", "a = ${", "x = [1, {}]\n",
	} {
		f.Add(s)
	}
	fuzzLoad(f, "c.hcl")
}

// FuzzLoadYAML loads any YAML (code-server style) configuration file.
func FuzzLoadYAML(f *testing.F) {
	for _, s := range []string{
		"", "bind-addr: 127.0.0.1:3000\nauth: password\npassword: x\n", "password: ${DB_PASSWORD}\n", "password: ${NOPE}\n",
		"session: &s {ttl: 60}\nmulti-user: {auth: {session: *s}}\n", "<<: {auth: none}\n", "a: &a [*a]\n",
		"- a\n", "auth: !!binary aGk=\n", "cert: 2026-01-01\n", "trusted-origins: [\"ws://x\"]\n", "a: b: c\n",
		"request-body: {min-rate: 5, idle-timeout: 0}\n",
	} {
		f.Add(s)
	}
	fuzzLoad(f, "c.yaml")
}
