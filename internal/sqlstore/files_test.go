package sqlstore

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/codehub-dev/codehub/internal/testenv"
)

// embeddedWith returns the embedded files with path's text changed by edit.
func embeddedWith(t *testing.T, path string, edit func(string) string) fs.FS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(embedded, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(embedded, p)
		if err != nil {
			return err
		}
		if p == path {
			b = []byte(edit(string(b)))
		}
		m[p] = &fstest.MapFile{Data: b}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEmbeddedQueriesLoad(t *testing.T) {
	for _, driver := range []string{DriverSQLite, DriverPostgres} {
		if _, err := loadQueries(embedded, driver); err != nil {
			t.Errorf("%s: %v", driver, err)
		}
		if _, err := loadMigrations(embedded, driver); err != nil {
			t.Errorf("%s: %v", driver, err)
		}
	}
}

// TestOpenFailsOnQueryFileMismatch: a query the code needs and the file
// lacks (or the reverse) stops Open, before the database is touched.
func TestOpenFailsOnQueryFileMismatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(string) string
		want string
	}{
		{"missing", func(s string) string {
			return strings.Replace(s, "-- name: CountUsers\n", "-- name: CountUsersRenamed\n", 1)
		}, "missing queries: CountUsers"},
		{"unknown", func(s string) string {
			return s + "\n-- name: NotUsedByCode\nSELECT 1;\n"
		}, "queries the code does not know: NotUsedByCode"},
		{"duplicate", func(s string) string {
			return s + "\n-- name: CountUsers\nSELECT 2;\n"
		}, "query CountUsers defined twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "codehub.db")
			cfg := Config{Driver: DriverSQLite, Path: path}
			cfg.queries = embeddedWith(t, "queries/sqlite.sql", tc.edit)
			_, err := Open(context.Background(), cfg, testenv.Logger(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "queries/sqlite.sql") {
				t.Fatalf("Open = %v, want an error naming queries/sqlite.sql and %q", err, tc.want)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Fatalf("Open created the database before checking its queries: %v", err)
			}
		})
	}
}

func TestParseQueries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		src     string
		want    map[string]string
		wantErr string
	}{
		{
			name: "blocks",
			src: "-- header comment\n\n-- name: A\n-- about A\nSELECT 1\nFROM x;\n\n-- next section\n" +
				"--   name:   B  \nSELECT 2;\n",
			want: map[string]string{"A": "-- about A\nSELECT 1\nFROM x;", "B": "SELECT 2;"},
		},
		{name: "empty file", src: "", want: map[string]string{}},
		{name: "SQL before the first name", src: "SELECT 1;\n-- name: A\nSELECT 2;", wantErr: "line 1: SQL before"},
		{name: "empty block", src: "-- name: A\n-- only a comment\n-- name: B\nSELECT 1;", wantErr: "query A is empty"},
		{name: "empty last block", src: "-- name: A\nSELECT 1;\n-- name: B\n", wantErr: "query B is empty"},
		{name: "no name", src: "-- name:\nSELECT 1;", wantErr: "line 1"},
		{name: "two words", src: "-- name: A B\nSELECT 1;", wantErr: "line 1"},
		{name: "twice", src: "-- name: A\nSELECT 1;\n-- name: A\nSELECT 2;", wantErr: "line 3: query A defined twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseQueries([]byte(tc.src))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("query %s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestLoadMigrations(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, tc := range []struct {
		name    string
		files   fstest.MapFS
		want    []string // version_name in order
		wantErr string
	}{
		{
			name: "ordered by number, not name",
			files: fstest.MapFS{
				"migrations/sqlite/0010_audit.sql":      file("CREATE TABLE audit (x);"),
				"migrations/sqlite/0002_workspaces.sql": file("CREATE TABLE w (x);"),
				"migrations/sqlite/0001_init.sql":       file("CREATE TABLE u (x);"),
			},
			want: []string{"1_init", "2_workspaces", "10_audit"},
		},
		{
			name:    "bad name",
			files:   fstest.MapFS{"migrations/sqlite/init.sql": file("x")},
			wantErr: "init.sql: a migration is named NNNN_name.sql",
		},
		{
			name:    "not sql",
			files:   fstest.MapFS{"migrations/sqlite/0001_init.txt": file("x")},
			wantErr: "0001_init.txt: a migration is named",
		},
		{
			name: "same version",
			files: fstest.MapFS{
				"migrations/sqlite/0001_init.sql": file("x"),
				"migrations/sqlite/001_other.sql": file("y"),
			},
			wantErr: "have the same version",
		},
		{name: "none", files: fstest.MapFS{"migrations/sqlite": &fstest.MapFile{Mode: fs.ModeDir}}, wantErr: "no migrations"},
		{name: "no directory", files: fstest.MapFS{}, wantErr: "read migrations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			migs, err := loadMigrations(tc.files, DriverSQLite)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range migs {
				got = append(got, fmt.Sprintf("%d_%s", m.version, m.name))
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("migrations %v, want %v", got, tc.want)
			}
		})
	}
}
