package policy

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/user"
	"github.com/codehub-dev/codehub/internal/workspace"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/name, rewriting it under -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
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
		t.Errorf("%s differs from golden file:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// MustLoad loads dir or fails the test.
func MustLoad(tb testing.TB, dir string) *Set {
	tb.Helper()
	s, err := Load(dir)
	if err != nil {
		tb.Fatalf("Load(%s):\n%v", dir, err)
	}
	return s
}

func TestLoadGood(t *testing.T) {
	t.Parallel()
	s := MustLoad(t, filepath.Join("testdata", "good"))
	out, err := json.MarshalIndent(s.Policies(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join("testdata", "good.golden.json"), append(out, '\n'))
}

// TestLoadBad loads each directory under testdata/bad and compares the
// whole error with its error.golden: every line names file:line:col and
// the key.
func TestLoadBad(t *testing.T) {
	t.Parallel()
	dirs, err := os.ReadDir(filepath.Join("testdata", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		t.Run(d.Name(), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join("testdata", "bad", d.Name())
			s, err := Load(dir)
			if err == nil {
				t.Fatalf("Load(%s) succeeded with %d policies, want an error", dir, len(s.Policies()))
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, not Errors: %v", err, err)
			}
			for _, e := range errs {
				if e.Pos.File == "" {
					t.Errorf("error without a file: %v", e)
				}
			}
			golden(t, filepath.Join(dir, "error.golden"), []byte(err.Error()+"\n"))
		})
	}
}

// TestErrorFormat pins the one message the design quotes.
func TestErrorFormat(t *testing.T) {
	t.Parallel()
	_, err := parse("policies", []source{{name: "policies/large.hcl", src: []byte(`policy "large" {
  cpu             = 100
  memory          = "2GiB"
  memory_max      = "1GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
  applies_to { roles = ["user"] }
}
`)}})
	want := "policies/large.hcl:4:3: memory_max: must be at least memory (2GiB), got 1GiB"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestLoadMissingDir(t *testing.T) {
	t.Parallel()
	_, err := Load(filepath.Join(t.TempDir(), "nope"))
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error", err)
	}
}

func TestIsPolicyFile(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"default.hcl": true, "large.v2.hcl": true, "team_ml.hcl": true,
		"codehub-gateway.vault.hcl": false, "codehub-gateway.nomad-acl.hcl": false,
		"codehub-gateway.consul-acl.hcl": false, "workspace.nomad.hcl": false,
		".hidden.hcl": false, "default.hcl~": false, "README.md": false, "default.json": false,
	} {
		if got := IsPolicyFile(name); got != want {
			t.Errorf("IsPolicyFile(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestSelect(t *testing.T) {
	t.Parallel()
	s := MustLoad(t, filepath.Join("testdata", "good"))
	tests := []struct {
		name    string
		sub     Subject
		want    string
		reason  string
		wantErr error
	}{
		{"plain user gets the role policy", Subject{Username: "erin", Roles: []string{"user"}}, "default", `role "user"`, nil},
		{"admin role at priority 10", Subject{Username: "root", Roles: []string{"user", "admin"}}, "admins", `role "admin"`, nil},
		{"auditor falls back to default", Subject{Username: "aud", Roles: []string{"auditor"}}, "default", "default", nil},
		{"nobody falls back to default", Subject{}, "default", "default", nil},
		{"group beats role", Subject{Username: "erin", Roles: []string{"admin"}, Groups: []string{"data"}}, "data", `group "data"`, nil},
		{"higher priority among groups", Subject{Username: "erin", Roles: []string{"user"}, Groups: []string{"data", "ml"}}, "gpu", `group "ml"`, nil},
		{"groups compare in lower case", Subject{Username: "erin", Groups: []string{" GPU"}}, "gpu", `group "gpu"`, nil},
		{"unknown group is no match", Subject{Username: "erin", Roles: []string{"user"}, Groups: []string{"sales"}}, "default", `role "user"`, nil},
		{"user list beats groups", Subject{Username: "dave", Roles: []string{"user"}, Groups: []string{"ml"}}, "vip", `user "dave"`, nil},
		{"usernames compare in lower case", Subject{Username: "Dave"}, "vip", `user "dave"`, nil},
		{"higher priority among user lists", Subject{Username: "carol"}, "data", `user "carol"`, nil},
		{"assignment beats everything", Subject{Username: "dave", Roles: []string{"admin"}, Assigned: "frozen"}, "frozen", "assigned", nil},
		{"assignment of an unknown policy fails closed", Subject{Username: "dave", Assigned: "gone"}, "", "", ErrUnknownPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := s.Select(tt.sub)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, %v; want %v", m.Policy, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Policy.Name != tt.want || m.Reason != tt.reason {
				t.Fatalf("got %q (%s), want %q (%s)", m.Policy.Name, m.Reason, tt.want, tt.reason)
			}
		})
	}
}

func TestSelectNoDefault(t *testing.T) {
	t.Parallel()
	s, err := parse("p", []source{{name: "p/a.hcl", src: []byte(`policy "users" {
  cpu = 100
  memory = "1GiB"
  pids = 10
  storage = "1GiB"
  max_sessions = 1
  max_connections = 1
  idle_timeout = "0"
  applies_to { roles = ["user"] }
}`)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Select(Subject{Roles: []string{"auditor"}}); !errors.Is(err, ErrNoPolicy) {
		t.Fatalf("got %v, want ErrNoPolicy", err)
	}
	// Equal priority across different keys: the first declared wins.
	s2, err := parse("p", []source{
		{name: "p/a.hcl", src: []byte(`policy "a" {
  cpu = 100
  memory = "1GiB"
  pids = 10
  storage = "1GiB"
  max_sessions = 1
  max_connections = 1
  idle_timeout = "0"
  applies_to {
    roles  = ["user"]
    groups = ["x"]
  }
}`)},
		{name: "p/b.hcl", src: []byte(`policy "b" {
  cpu = 100
  memory = "1GiB"
  pids = 10
  storage = "1GiB"
  max_sessions = 1
  max_connections = 1
  idle_timeout = "0"
  applies_to { groups = ["y"] }
}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, groups := range [][]string{{"x", "y"}, {"y", "x"}} {
		if m, _ := s2.Select(Subject{Groups: groups}); m.Policy == nil || m.Policy.Name != "a" {
			t.Fatalf("groups %v: got %+v, want a", groups, m)
		}
	}
}

func TestWorkspace(t *testing.T) {
	t.Parallel()
	s := MustLoad(t, filepath.Join("testdata", "good"))
	def := workspace.Policy{Name: "built-in", Driver: "docker", Image: "ghcr.io/example/workspace:1", MemoryMB: 1}
	gpu, _ := s.Get("gpu")
	want := workspace.Policy{
		Name: "gpu", Driver: "docker", Image: "ghcr.io/example/workspace-cuda:12",
		MemoryMB: 32 << 10, MemoryMaxMB: 48 << 10, CPUPercent: 800, Pids: 16384, StorageMB: 512 << 10,
		MaxSessions: 3, MaxConnections: 50, IdleTimeout: 4 * time.Hour, Datacenter: "gpu-1",
	}
	if got := gpu.Workspace(def); got != want {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	// A policy without a driver runs the orchestrator's, with its image.
	p, _ := s.Get("default")
	want = workspace.Policy{
		Name: "default", Driver: "docker", Image: "ghcr.io/example/workspace:1",
		MemoryMB: 2 << 10, MemoryMaxMB: 3 << 10, CPUPercent: 100, Pids: 2048, StorageMB: 10 << 10,
		MaxSessions: 5, MaxConnections: 100, IdleTimeout: 30 * time.Minute,
	}
	if got := p.Workspace(def); got != want || got.HardMemoryMB() != 3<<10 {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	// A policy's own driver keeps its (empty) image.
	p, _ = s.Get("data")
	if got := p.Workspace(def); got.Driver != "exec" || got.Image != "" {
		t.Fatalf("data: %+v", got)
	}
}

func TestCompatible(t *testing.T) {
	t.Parallel()
	for running, want := range map[string]string{
		"process": "process", "directory": "directory", "docker": "docker exec", "exec": "docker exec", "": "docker exec",
	} {
		if got := strings.Join(Compatible(running), " "); got != want {
			t.Errorf("Compatible(%q) = %s, want %s", running, got, want)
		}
	}
}

func TestSubjectOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		meta map[string]any
		want Subject
		err  string
	}{
		{"no metadata", nil, Subject{Username: "alice", Roles: []string{"user"}}, ""},
		{"JSON list and assignment", map[string]any{"groups": []any{"data", "ml"}, "policy": " large "},
			Subject{Username: "alice", Roles: []string{"user"}, Groups: []string{"data", "ml"}, Assigned: "large"}, ""},
		{"comma-separated", map[string]any{"groups": "data, ml,,"},
			Subject{Username: "alice", Roles: []string{"user"}, Groups: []string{"data", "ml"}}, ""},
		{"Go list", map[string]any{"groups": []string{"x"}},
			Subject{Username: "alice", Roles: []string{"user"}, Groups: []string{"x"}}, ""},
		{"policy not a string", map[string]any{"policy": 3.0}, Subject{}, `user alice: metadata "policy" must be a policy name, got a number`},
		{"groups not a list", map[string]any{"groups": map[string]any{}}, Subject{}, `user alice: metadata "groups" must list group names, got an object`},
		{"group not a string", map[string]any{"groups": []any{"a", true}}, Subject{}, `user alice: metadata "groups" must list group names, got a boolean in it`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := &user.User{Username: "alice", Roles: []string{"user"}, Metadata: tt.meta}
			got, err := SubjectOf(u)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("got %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCheckDrivers(t *testing.T) {
	t.Parallel()
	s := MustLoad(t, filepath.Join("testdata", "good"))
	if err := s.CheckDrivers(DriverDocker, DriverExec, DriverProcess); err != nil {
		t.Fatal(err)
	}
	err := s.CheckDrivers(DriverDirectory)
	want := strings.Join([]string{
		`testdata/good/10-base.hcl:21:3: driver: policy "admins" asks for "process", but workspaces here run with "directory"`,
		`testdata/good/20-teams.hcl:2:3: driver: policy "gpu" asks for "docker", but workspaces here run with "directory"`,
		`testdata/good/20-teams.hcl:20:3: driver: policy "data" asks for "exec", but workspaces here run with "directory"`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{
		"1MiB": 1, "512MiB": 512, "2GiB": 2048, "2 GiB": 2048, "2gib": 2048, "1.5GiB": 1536, "0.5TiB": 512 << 10,
		"16Gi": 16 << 10, "1TB": 953674, "10GB": 9536, "1048576B": 1, "1KiB": 0, "1PiB": 0,
	} {
		got, err := parseSize(in)
		if in == "1PiB" {
			if err == nil {
				t.Errorf("parseSize(%q): want an error for an unknown unit", in)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "2", "2G", "2 gigs", "-1GiB", "GiB", "1e3MiB", "2000TiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): want an error", in)
		}
	}
}

func TestErrorsRender(t *testing.T) {
	t.Parallel()
	errs := Errors{
		{Pos: Pos{File: "p/a.hcl", Line: 3, Col: 5}, Key: "cpu", Msg: "must be at least 1, got 0"},
		{Pos: Pos{File: "p"}, Msg: "no isolation policy files (*.hcl) here"},
	}
	want := "p/a.hcl:3:5: cpu: must be at least 1, got 0\np: no isolation policy files (*.hcl) here"
	if errs.Error() != want {
		t.Fatalf("got\n%s\nwant\n%s", errs.Error(), want)
	}
}
