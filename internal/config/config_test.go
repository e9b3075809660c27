package config

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// TestExamples loads the example configurations shipped in configs/: the
// design's YAML must load as written, and its HCL twin must mean the same.
func TestExamples(t *testing.T) {
	env := envMap(map[string]string{"HOME": "/home/dev", "CODEHUB_EXAMPLE_PASSWORD": "mysecretpassword", "DB_PASSWORD": "s3cret"})
	names := []string{"single-user.yaml", "single-user.hcl", "mode-multi.yaml", "small-team.yaml", "small-team.hcl", "production.yaml", "production.hcl"}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(LoadOptions{File: filepath.Join("..", "..", "configs", name), Getenv: env})
			if err != nil {
				t.Fatal(err)
			}
			out, _ := json.MarshalIndent(cfg, "", "  ")
			golden(t, strings.ReplaceAll(name, ".", "_")+".golden.json", append(out, '\n'))
		})
	}
	for _, twin := range []string{"single-user", "small-team", "production"} {
		yml, _ := os.ReadFile("testdata/" + twin + "_yaml.golden.json")
		hcl, _ := os.ReadFile("testdata/" + twin + "_hcl.golden.json")
		if string(yml) != string(hcl) {
			t.Errorf("%s.yaml and %s.hcl load to different configurations", twin, twin)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Load(LoadOptions{Getenv: envMap(map[string]string{"HOME": "/home/dev"})})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DeploymentMode != ModeSingle || cfg.Auth != AuthPassword || cfg.BindAddr != "127.0.0.1:8080" {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
	if cfg.UserDataDir != "/home/dev/.local/share/code-server" || cfg.DataDir != "/home/dev/.local/share/codehub" {
		t.Fatalf("data directories: %q %q", cfg.UserDataDir, cfg.DataDir)
	}
	if got := cfg.SourceOf("bind-addr").String(); got != "default" {
		t.Fatalf("source of a default = %q", got)
	}
}

// TestPrecedence checks defaults < file < environment < flags, key by key.
func TestPrecedence(t *testing.T) {
	file := writeFile(t, "c.hcl", `
bind_addr = "127.0.0.1:1111"
log_level = "debug"
auth      = "none"
session { ttl = 3600 }
`)
	env := envMap(map[string]string{
		"CODEHUB_BIND_ADDR":           "127.0.0.1:2222",
		"CODEHUB_LOG_LEVEL":           "warn",
		"CODE_SERVER_DEPLOYMENT_MODE": "single",
		"PASSWORD":                    "from-code-server-env",
		"CODEHUB_PASSWORD":            "from-codehub-env",
	})
	cfg, err := Load(LoadOptions{File: file, Getenv: env, Flags: []Setting{
		{Path: "bind-addr", Value: "127.0.0.1:3333", Flag: "--bind-addr"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ got, want, src string }{
		{cfg.BindAddr, "127.0.0.1:3333", "flag --bind-addr"},
		{cfg.LogLevel, "warn", "environment variable CODEHUB_LOG_LEVEL"},
		{cfg.Auth, "none", file + ":4:1"},
		{cfg.Session.TTL.String(), "1h0m0s", file + ":5:11"},
		{cfg.Password, "from-codehub-env", "environment variable CODEHUB_PASSWORD"},
		{cfg.LogFormat, "text", "default"},
	}
	paths := []string{"bind-addr", "log-level", "auth", "session.ttl", "password", "log-format"}
	for i, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", paths[i], c.got, c.want)
		}
		if src := cfg.SourceOf(paths[i]).String(); src != c.src {
			t.Errorf("source of %s = %q, want %q", paths[i], src, c.src)
		}
	}
}

func TestValueForms(t *testing.T) {
	file := writeFile(t, "c.yaml", `
cert: /etc/ssl/ide.crt
cert-key-path: /etc/ssl/ide.key
session:
  ttl: 86400
code-server:
  start-timeout: 2m30s
  args: [--disable-workspace-trust, --locale=de]
trusted-origins: ide.example.com
login-throttle:
  global-burst: "40"
`)
	cfg, err := Load(LoadOptions{File: file, Getenv: envMap(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Cert.Enabled || cfg.TLSCertFile() != "/etc/ssl/ide.crt" || cfg.CertKey != "/etc/ssl/ide.key" {
		t.Errorf("cert: %+v key %q", cfg.Cert, cfg.CertKey)
	}
	if cfg.Session.TTL.D() != 24*time.Hour || cfg.CodeServer.StartTimeout.D() != 150*time.Second {
		t.Errorf("durations: %v %v", cfg.Session.TTL, cfg.CodeServer.StartTimeout)
	}
	if len(cfg.CodeServer.Args) != 2 || cfg.CodeServer.Args[1] != "--locale=de" {
		t.Errorf("args: %q", cfg.CodeServer.Args)
	}
	if len(cfg.TrustedOrigins) != 1 || cfg.LoginThrottle.GlobalBurst != 40 {
		t.Errorf("list from a scalar or number from a string: %q %d", cfg.TrustedOrigins, cfg.LoginThrottle.GlobalBurst)
	}
}

func TestEnvInterpolation(t *testing.T) {
	file := writeFile(t, "c.yaml", "password: ${SECRET}\nhashed-password: \"\"\nfolder: /srv/$${literal}\n")
	cfg, err := Load(LoadOptions{File: file, Getenv: envMap(map[string]string{"SECRET": "s3cret"})})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password != "s3cret" || cfg.Folder != "/srv/${literal}" {
		t.Fatalf("password %q folder %q", cfg.Password, cfg.Folder)
	}
}

// TestErrors checks that each mistake is reported with its file, line,
// column and key, in one pass.
func TestErrors(t *testing.T) {
	cases := []struct {
		name, file, content string
		env                 map[string]string
		flags               []Setting
		want                []string
	}{
		{
			name: "unknown HCL key with suggestion", file: "c.hcl",
			content: "bind_adr = \"127.0.0.1:80\"\n",
			want:    []string{`DIR/c.hcl:1:1: bind_adr: unknown key "bind_adr"; did you mean "bind-addr"?`},
		},
		{
			name: "unknown nested YAML key", file: "c.yaml",
			content: "session:\n  tll: 60\n",
			want:    []string{`DIR/c.yaml:2:3: session.tll: unknown key "tll"; did you mean "ttl"?`},
		},
		{
			name: "wrong type", file: "c.yaml",
			content: "session:\n  ttl: [1, 2]\n",
			want:    []string{`DIR/c.yaml:2:3: session.ttl: expected a duration such as "30s", "24h" or a number of seconds, got a list`},
		},
		{
			name: "bad enum and bad address in one pass", file: "c.yaml",
			content: "deployment-mode: cluster\nbind-addr: nowhere\n",
			want: []string{
				`DIR/c.yaml:2:1: bind-addr: expected host:port, got "nowhere"`,
				`DIR/c.yaml:1:1: deployment-mode: must be one of single, multi, got "cluster"`,
			},
		},
		{
			name: "storage warning out of range", file: "c.hcl",
			content: "deployment_mode = \"multi\"\nmulti_user {\n  limits {\n    storage_warning_percent = 120\n  }\n}\n",
			want:    []string{`DIR/c.hcl:4:5: multi-user.limits.storage_warning_percent: must be 1 to 100, got 120`},
		},
		{
			name: "YAML syntax", file: "c.yaml",
			content: "auth: password\n  bad: [\n",
			want:    []string{`DIR/c.yaml:2: mapping values are not allowed in this context`},
		},
		{
			name: "HCL syntax", file: "c.hcl",
			content: "auth = \"password\"\nsession {\n",
			want:    []string{`DIR/c.hcl:2:9: Unclosed configuration block: There is no closing brace for this block before the end of the file. This may be caused by incorrect brace nesting elsewhere in this file.`},
		},
		{
			name: "missing environment variable", file: "c.yaml",
			content: "auth: password\npassword: ${NOT_SET}\n",
			want:    []string{`DIR/c.yaml:2:11: password: environment variable NOT_SET is not set`},
		},
		{
			name: "HCL env function with missing variable", file: "c.hcl",
			content: "password = env(\"NOT_SET\")\n",
			want:    []string{`DIR/c.hcl:1:12: Error in function call: Call to function "env" failed: environment variable NOT_SET is not set.`},
		},
		{
			name: "duplicate YAML key", file: "c.yaml",
			content: "auth: none\nauth: password\n",
			want:    []string{`DIR/c.yaml:2:1: auth: key "auth" is given twice (first at line 1)`},
		},
		{
			name: "same setting in two spellings", file: "c.hcl",
			content: "bind_addr = \"127.0.0.1:1\"\n\"bind-addr\" = \"127.0.0.1:2\"\n",
			want:    []string{`DIR/c.hcl:2:1: Invalid argument name: Argument names must not be quoted.`},
		},
		{
			name: "block given twice", file: "c.hcl",
			content: "session {\n  ttl = 5\n}\nsession {\n  ttl = 6\n}\n",
			want:    []string{`DIR/c.hcl:4:1: session: block given more than once (first at line 1)`},
		},
		{
			name: "malformed hashed password", file: "c.yaml",
			content: "hashed-password: \"$2b$10$abcdefghijklmnopqrstuv\"\n",
			want:    []string{"DIR/c.yaml:1:1: hashed-password: not an argon2i or argon2id encoded hash (create one with `codehub hash-password`)"},
		},
		{
			name: "certificate without key", file: "c.yaml",
			content: "cert: true\ncert-path: /etc/ssl/a.crt\n",
			want:    []string{`DIR/c.yaml:2:1: cert-path: the certificate needs its private key: set cert-key`},
		},
		{
			name: "bad value from environment", file: "",
			env:  map[string]string{"CODEHUB_BIND_ADDR": "nope"},
			want: []string{`environment variable CODEHUB_BIND_ADDR: bind-addr: expected host:port, got "nope"`},
		},
		{
			name: "bad value from a flag", file: "",
			flags: []Setting{{Path: "auth", Value: "ldap", Flag: "--auth"}},
			want:  []string{`flag --auth: auth: must be one of password, none, got "ldap"`},
		},
		{
			name: "bad number from a flag", file: "",
			flags: []Setting{{Path: "login-throttle.global-burst", Value: "many", Flag: "--x"}},
			want:  []string{`flag --x: login-throttle.global-burst: expected a whole number, got "many"`},
		},
		{
			name: "bad container memory", file: "c.hcl",
			content: "deployment_mode = \"multi\"\nmulti_user {\n  isolation {\n    container {\n      limits {\n        memory = \"lots\"\n      }\n    }\n  }\n}\n",
			want:    []string{`DIR/c.hcl:6:9: multi-user.isolation.container.limits.memory: expected a size such as "2048m" or "2g", got "lots"`},
		},
		{
			name: "lockout that would lock a name for everyone at once, and a bad session cap mode", file: "c.hcl",
			content: "deployment_mode = \"multi\"\nmulti_user {\n  auth {\n    lockout {\n      global_addresses = 1\n      device_cookie_ttl = -5\n    }\n" +
				"    session {\n      on_limit = \"kick\"\n    }\n  }\n}\n",
			want: []string{
				`DIR/c.hcl:9:7: multi-user.auth.session.on_limit: must be one of evict-lru, evict-oldest, refuse, got "kick"`,
				`DIR/c.hcl:5:7: multi-user.auth.lockout.global_addresses: 1 would lock a name for everyone after one failure; use at least 2, or 0 for never`,
				`DIR/c.hcl:6:7: multi-user.auth.lockout.device_cookie_ttl: must not be negative`,
			},
		},
		{
			name: "unknown extension", file: "c.toml", content: "a = 1\n",
			want: []string{`DIR/c.toml: unknown configuration format: name the file *.hcl, *.yaml or *.yml`},
		},
		{
			name: "trusted origins: a path, another scheme", file: "c.yaml",
			content: "trusted-origins: [\"https://ide.example.com/editor\", \"ws://ide.example.com\", \"https://ide.example.com:8443\", \"ide.example.com\"]\n",
			want: []string{
				`DIR/c.yaml:1:19: trusted-origins: expected a host, host:port or an origin (http:// or https:// host[:port], no path), got "https://ide.example.com/editor"`,
				`DIR/c.yaml:1:53: trusted-origins: expected a host, host:port or an origin (http:// or https:// host[:port], no path), got "ws://ide.example.com"`,
			},
		},
		{
			name: "YAML alias inside what it names", file: "c.yaml",
			content: "session: &s\n  ttl: *s\n",
			want:    []string{`DIR/c.yaml:2:8: ttl: alias *s refers to a value that contains it`},
		},
		{
			name: "YAML aliases of aliases", file: "c.yaml",
			content: "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" +
				"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
			want: []string{`DIR/c.yaml:1:24: e: the document makes more than 100000 values once its aliases are expanded`},
		},
		{
			name: "not a mapping", file: "c.yaml", content: "- a\n- b\n",
			want: []string{`DIR/c.yaml:1:1: the document must be a mapping of keys to values`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := LoadOptions{Getenv: envMap(c.env), Flags: c.flags}
			dir := ""
			if c.file != "" {
				opts.File = writeFile(t, c.file, c.content)
				dir = filepath.Dir(opts.File)
			}
			_, err := Load(opts)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			got := err.Error()
			if dir != "" {
				got = strings.ReplaceAll(got, dir, "DIR")
			}
			want := strings.Join(c.want, "\n")
			if got != want {
				t.Errorf("error:\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	for _, name := range []string{"c.yaml", "c.hcl"} {
		if _, err := Load(LoadOptions{File: writeFile(t, name, ""), Getenv: envMap(nil)}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestLeafPathsHaveEnvNames(t *testing.T) {
	paths := LeafPaths()
	seen := map[string]string{}
	for _, p := range paths {
		n := EnvName(p)
		if prev, dup := seen[n]; dup {
			t.Errorf("%s and %s share the environment variable %s", prev, p, n)
		}
		seen[n] = p
	}
	if seen["CODEHUB_SESSION_TTL"] != "session.ttl" || seen["CODEHUB_CODE_SERVER_PATH"] != "code-server.path" {
		t.Errorf("unexpected names: %v", seen)
	}
}

// TestREADMEDocumentsEveryKey keeps the configuration reference complete.
func TestREADMEDocumentsEveryKey(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range LeafPaths() {
		if !strings.Contains(string(readme), "`"+p+"`") {
			t.Errorf("README.md does not document the key %q", p)
		}
	}
}

// TestREADMEExamplesLoad loads every HCL and YAML example of the README
// as written (environment variables they name set to "x").
func TestREADMEExamplesLoad(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```(hcl|yaml)\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) == 0 {
		t.Fatal("no examples found")
	}
	named := regexp.MustCompile(`env\("([A-Za-z_0-9]+)"\)|\$\{([A-Za-z_0-9]+)\}`)
	for i, b := range blocks {
		env := map[string]string{}
		for _, m := range named.FindAllStringSubmatch(b[2], -1) {
			env[m[1]+m[2]] = "x"
		}
		file := writeFile(t, fmt.Sprintf("example-%d.%s", i, b[1]), b[2])
		if _, err := Load(LoadOptions{File: file, Getenv: envMap(env)}); err != nil {
			t.Errorf("README example %d (%s):\n%s\n%v", i, b[1], b[2], err)
		}
	}
}

func TestContainerMemory(t *testing.T) {
	for in, want := range map[string]int{"": 0, "2048m": 2048, "2g": 2048, "512M": 512, "1Gi": 1024, "300": 300, "64mb": 64} {
		got, err := ContainerLimits{Memory: in}.MemoryMB()
		if err != nil || got != want {
			t.Errorf("MemoryMB(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"-1m", "0", "2t", "m", "1.5g"} {
		if n, err := (ContainerLimits{Memory: in}).MemoryMB(); err == nil {
			t.Errorf("MemoryMB(%q) = %d, want an error", in, n)
		}
	}
}

// TestFilesFollowDataDir: the database and audit log live in the data
// directory given, unless set themselves.
func TestFilesFollowDataDir(t *testing.T) {
	file := writeFile(t, "c.hcl", "data_dir = \"/srv/codehub\"\n")
	cfg, err := Load(LoadOptions{File: file, Getenv: envMap(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MultiUser.Auth.Database.Path != "/srv/codehub/codehub.db" || cfg.Audit.File != "/srv/codehub/audit.log" {
		t.Errorf("database %q, audit log %q; want both in /srv/codehub", cfg.MultiUser.Auth.Database.Path, cfg.Audit.File)
	}
	file = writeFile(t, "d.hcl", "data_dir = \"/srv/codehub\"\naudit {\n  file = \"/var/log/codehub.audit\"\n}\n")
	cfg, err = Load(LoadOptions{File: file, Getenv: envMap(map[string]string{"CODEHUB_MULTI_USER_AUTH_DATABASE_PATH": "/db/c.db"})})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MultiUser.Auth.Database.Path != "/db/c.db" || cfg.Audit.File != "/var/log/codehub.audit" {
		t.Errorf("database %q, audit log %q; want the ones set", cfg.MultiUser.Auth.Database.Path, cfg.Audit.File)
	}
}
