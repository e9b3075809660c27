package sqlstore

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"strings"
)

// queries holds the text of every query, each field filled from the block
// of the same name in queries/<driver>.sql. Referring to a field, not a
// string, lets the compiler catch a misspelt name in Go, and loadQueries
// catches one in SQL before the database is used.
type queries struct {
	// Migrations.
	LockMigrations        string
	CreateMigrationsTable string
	AppliedMigrations     string
	RecordMigration       string

	// Users.
	CreateUser         string
	GetUserByID        string
	GetUserByUsername  string
	GetUserByEmail     string
	ListUsers          string
	CountUsersMatching string
	UpdateUser         string
	DeleteUser         string
	CountUsers         string
	RecordUserSuccess  string
	LockUser           string
	UnlockUser         string

	// Revocation events.
	LockRevocations   string
	PublishRevocation string
	LastRevocation    string
	RevocationsAfter  string
	PruneRevocations  string

	// Workspaces.
	CreateWorkspace       string
	GetWorkspace          string
	GetWorkspaceForUpdate string
	GetUserWorkspace      string
	ListWorkspaces        string
	UpdateWorkspace       string
	DeleteWorkspace       string
	FindPoolWorkspace     string
	ClaimWorkspace        string

	// Audit log.
	LockAudit   string
	LastAudit   string
	InsertAudit string
	QueryAudit  string
	CountAudit  string
	AuditAfter  string

	// Invites.
	CreateInvite  string
	UseInvite     string
	ReleaseInvite string

	// Sessions.
	SetSession            string
	GetSession            string
	GetSessionForUpdate   string
	UpdateSession         string
	DeleteSession         string
	ListUserSessions      string
	ListActiveSessions    string
	DeleteUserSessions    string
	DeleteExpiredSessions string
	CountSessions         string
	CountUserSessions     string

	// Usage samples.
	InsertUsageSample      string
	UsageSamples           string
	LatestStorageSamples   string
	PruneUsageSamples      string
	DeleteUserUsageSamples string

	// Audit failures.
	RecentAuditFailures string
	CountAuditFailures  string

	// Audit checkpoints.
	InsertAuditCheckpoint string
	AuditCheckpoints      string

	// Sign-in lockout.
	InsertLockoutKey         string
	GetLockoutKey            string
	GetLoginFailures         string
	EnsureLoginFailure       string
	GetLoginFailureForUpdate string
	SetLoginFailure          string
	CountFailingClients      string
	DeleteLoginFailure       string
	ListLoginFailures        string
	ClearLoginFailures       string
	PruneLoginFailures       string
}

// loadQueries reads queries/<driver>.sql from fsys and fills every field
// of queries. A name the struct has and the file lacks, or the other way
// round, is an error.
func loadQueries(fsys fs.FS, driver string) (*queries, error) {
	path := "queries/" + driver + ".sql"
	src, err := fs.ReadFile(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("read queries: %w", err)
	}
	named, err := parseQueries(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	q := &queries{}
	v := reflect.ValueOf(q).Elem()
	var missing []string
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		text, ok := named[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		v.Field(i).SetString(text)
		delete(named, name)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: missing queries: %s", path, strings.Join(missing, ", "))
	}
	if len(named) > 0 {
		unknown := make([]string, 0, len(named))
		for name := range named {
			unknown = append(unknown, name)
		}
		slices.Sort(unknown)
		return nil, fmt.Errorf("%s: queries the code does not know: %s", path, strings.Join(unknown, ", "))
	}
	return q, nil
}

const nameMarker = "-- name:"

// cutNameMarker reports whether line is a "-- name:" line (spaces around
// "name:" are allowed) and returns what follows it.
func cutNameMarker(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "--")
	if !ok {
		return "", false
	}
	return strings.CutPrefix(strings.TrimLeft(rest, " \t"), "name:")
}

// parseQueries splits src into blocks, each starting with a line
// "-- name: Name" and running to the next such line. Before the first
// block only comments and blank lines may appear.
func parseQueries(src []byte) (map[string]string, error) {
	out := map[string]string{}
	var (
		name string
		body strings.Builder
		line int
	)
	flush := func() error {
		if name == "" {
			return nil
		}
		text := trimTrailingComments(body.String())
		if text == "" {
			return fmt.Errorf("query %s is empty", name)
		}
		out[name] = text
		body.Reset()
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line++
		l := sc.Text()
		trimmed := strings.TrimSpace(l)
		if rest, ok := cutNameMarker(trimmed); ok {
			if err := flush(); err != nil {
				return nil, err
			}
			name = strings.TrimSpace(rest)
			if name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("line %d: want %q followed by one name", line, nameMarker)
			}
			if _, dup := out[name]; dup {
				return nil, fmt.Errorf("line %d: query %s defined twice", line, name)
			}
			continue
		}
		if name == "" {
			if trimmed != "" && !strings.HasPrefix(trimmed, "--") {
				return nil, fmt.Errorf("line %d: SQL before the first %q line", line, nameMarker)
			}
			continue
		}
		body.WriteString(l)
		body.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// trimTrailingComments drops the blank and comment lines that end text
// (they introduce the next block), and returns "" if nothing else is left.
func trimTrailingComments(text string) string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	for len(lines) > 0 {
		t := strings.TrimSpace(lines[len(lines)-1])
		if t != "" && !strings.HasPrefix(t, "--") {
			break
		}
		lines = lines[:len(lines)-1]
	}
	return strings.Join(lines, "\n")
}
