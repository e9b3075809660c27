package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codehub-dev/codehub/internal/workspace"
)

// FuzzPolicyFiles reads two policy files of any content. Either the set is
// refused with errors that each name one of the files (or the directory)
// and say something, or every policy in it is sound: sizes and limits
// positive, burst above memory, known drivers, someone for ordinary users;
// selection then never fails for an ordinary user, never panics for anyone,
// and a second read gives the same set.
func FuzzPolicyFiles(f *testing.F) {
	good, _ := filepath.Glob(filepath.Join("testdata", "good", "*.hcl"))
	var srcs []string
	for _, p := range good {
		if b, err := os.ReadFile(p); err == nil {
			srcs = append(srcs, string(b))
		}
	}
	bad, _ := filepath.Glob(filepath.Join("testdata", "bad", "*", "*.hcl"))
	for _, p := range bad {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b), srcs[0])
		}
	}
	f.Add(srcs[0], srcs[len(srcs)-1])
	f.Add(`policy "default" { cpu = 1e400 }`, "")
	f.Add(`policy "default" { memory = "9999999999TiB" }`, "")
	f.Add(`policy "default" { applies_to { users = [1, null, ["x"]] } }`, "")
	const dir, fileA, fileB = "policies", "policies/10-a.hcl", "policies/20-b.hcl"
	f.Fuzz(func(t *testing.T, a, b string) {
		if len(a)+len(b) > 64<<10 {
			return
		}
		files := []source{{name: fileA, src: []byte(a)}, {name: fileB, src: []byte(b)}}
		s, err := parse(dir, files)
		if err != nil {
			errs, ok := err.(Errors)
			if !ok || len(errs) == 0 {
				t.Fatalf("error %T %v, want Errors", err, err)
			}
			for _, e := range errs {
				if e.Pos.File != fileA && e.Pos.File != fileB && e.Pos.File != dir || e.Msg == "" {
					t.Fatalf("error %q names no file or says nothing", e)
				}
				if !strings.HasPrefix(e.Error(), e.Pos.File) {
					t.Fatalf("error %q does not start with its file", e)
				}
			}
			return
		}
		for _, p := range s.Policies() {
			switch {
			case !nameRE.MatchString(p.Name):
				t.Fatalf("policy name %q", p.Name)
			case p.CPUPercent <= 0 || p.MemoryMB < 0 || p.Pids <= 0 || p.StorageMB < 0 || p.MaxSessions <= 0 || p.MaxConnections <= 0:
				t.Fatalf("policy %q with limits %+v", p.Name, p)
			case p.MemoryMaxMB != 0 && p.MemoryMaxMB < p.MemoryMB:
				t.Fatalf("policy %q bursts below its memory: %+v", p.Name, p)
			case p.Driver != "" && !strings.Contains(strings.Join(drivers, " "), p.Driver):
				t.Fatalf("policy %q driver %q", p.Name, p.Driver)
			case p.IdleTimeout < 0:
				t.Fatalf("policy %q idle timeout %v", p.Name, p.IdleTimeout)
			}
			_ = p.Workspace(workspace.Policy{})
		}
		if _, err := s.Select(Subject{Username: "someone-new", Roles: []string{"user"}}); err != nil {
			t.Fatalf("an ordinary user has no policy: %v", err)
		}
		for _, sub := range []Subject{{Username: a, Groups: []string{b, ""}, Roles: []string{a}}, {Assigned: "default"}, {}} {
			_, _ = s.Select(sub)
		}
		_ = s.CheckDrivers(DriverProcess)
		again, err := parse(dir, files)
		if err != nil {
			t.Fatalf("second read: %v", err)
		}
		x, _ := json.Marshal(s.Policies())
		y, _ := json.Marshal(again.Policies())
		if string(x) != string(y) {
			t.Fatalf("two reads differ:\n%s\n%s", x, y)
		}
	})
}

// FuzzParseSize: a size is whole MiB, at most 1 PiB, and the same in any
// case of its unit.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"2GiB", "512MiB", "10GB", "1.5 GiB", "0B", "1PiB", "2K", "1e3MB", "-1GiB", " 3 gi ", "NaNGiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err != nil {
			return
		}
		if n < 0 || n > maxSize/mib {
			t.Fatalf("parseSize(%q) = %d MiB", s, n)
		}
		if m, err := parseSize(strings.ToUpper(s)); err != nil || m != n {
			t.Fatalf("parseSize(%q) = %d, of the upper case %d, %v", s, n, m, err)
		}
	})
}
