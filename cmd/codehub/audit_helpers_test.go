package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
)

// These helpers run multi-user gateways whose audit log, metrics and
// clean-up the tests look at, in front of the stand-in IDE, and read the
// audit log back from its file and from the admin API.

// auditAdminPW is the administrator's password in these tests.
const auditAdminPW = "admin-password-1"

// opsConfig describes such a gateway's configuration file.
type opsConfig struct {
	Upstream string
	DataDir  string
	// AuditFile is audit.file (default: in DataDir).
	AuditFile string
	// PostgresURL, when set, is the user database (default: SQLite in
	// DataDir).
	PostgresURL string
	// Registration is "admin" (default), "invite" or "open".
	Registration string
	// MaxFailures locks an account after that many failed sign-ins (0: 5).
	MaxFailures int
	// MaxSessions is max-sessions-per-user (0: 100).
	MaxSessions int
	// APIPerMinute and APIBurst limit each user's API requests (0: the
	// defaults).
	APIPerMinute, APIBurst int
	// Session is the body of multi_user.auth.session (besides the store).
	Session string
	// Extra is added inside multi_user (features, scaling, usage...).
	Extra string
	// Top is added at the top level.
	Top string
}

func (c *opsConfig) write(t *testing.T) string {
	t.Helper()
	if c.DataDir == "" {
		c.DataDir = filepath.Join(t.TempDir(), "data")
	}
	if c.AuditFile == "" {
		c.AuditFile = filepath.Join(c.DataDir, "audit", "audit.log")
	}
	if c.Registration == "" {
		c.Registration = "admin"
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = 5
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = 100
	}
	var b strings.Builder
	fmt.Fprintf(&b, "deployment_mode = \"multi\"\nbind_addr = \"127.0.0.1:0\"\nlog_level = \"debug\"\n")
	fmt.Fprintf(&b, "data_dir = %q\nupstream = %q\n", c.DataDir, c.Upstream)
	fmt.Fprintf(&b, "audit {\n  file = %q\n}\n", c.AuditFile)
	fmt.Fprintf(&b, "login_throttle {\n  per_address_burst = 1000\n  global_burst = 1000\n}\n")
	b.WriteString(c.Top + "\n")
	fmt.Fprintf(&b, "multi_user {\n  auth {\n    registration = %q\n", c.Registration)
	if c.PostgresURL != "" {
		fmt.Fprintf(&b, "    database {\n      type = \"postgres\"\n      url = %q\n    }\n", c.PostgresURL)
	} else {
		fmt.Fprintf(&b, "    database {\n      type = \"sqlite\"\n      path = %q\n    }\n", filepath.Join(c.DataDir, "users.db"))
	}
	fmt.Fprintf(&b, "    session {\n      store = \"database\"\n%s\n    }\n", c.Session)
	fmt.Fprintf(&b, "    password {\n      memory_kib = 8192\n      iterations = 1\n    }\n")
	fmt.Fprintf(&b, "    lockout {\n      max_failures = %d\n    }\n  }\n", c.MaxFailures)
	fmt.Fprintf(&b, "  limits {\n    max_sessions_per_user = %d\n", c.MaxSessions)
	if c.APIPerMinute > 0 {
		fmt.Fprintf(&b, "    api_requests_per_minute = %d\n    api_burst = %d\n", c.APIPerMinute, c.APIBurst)
	}
	fmt.Fprintf(&b, "  }\n%s\n}\n", c.Extra)
	file := filepath.Join(t.TempDir(), "codehub.hcl")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// seedKeys are the keys of the design's audit entry (§8.4); chainKeys are
// those the keyed chain adds (seq and chain are numbers).
var (
	seedKeys  = []string{"timestamp", "eventType", "userId", "username", "ipAddress", "userAgent", "status", "metadata"}
	chainKeys = []string{"id", "log", "seq", "prevHash", "hash", "chain", "kid"}
)

// checkSeedFormat fails t unless raw is one audit entry in the design's
// format: its keys, and their types; it returns the entry.
func checkSeedFormat(t *testing.T, where string, raw []byte) audit.Event {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: not JSON: %v: %s", where, err, raw)
	}
	for k, v := range m {
		switch {
		case k == "metadata":
			if _, ok := v.(map[string]any); !ok {
				t.Errorf("%s: metadata is %T, want an object: %s", where, v, raw)
			}
		case k == "seq" || k == "chain":
			if _, ok := v.(float64); !ok {
				t.Errorf("%s: %s is %T: %s", where, k, v, raw)
			}
		case slices.Contains(seedKeys, k) || slices.Contains(chainKeys, k):
			if _, ok := v.(string); !ok {
				t.Errorf("%s: %s is %T, want a string: %s", where, k, v, raw)
			}
		default:
			t.Errorf("%s: key %q is not in the design's format: %s", where, k, raw)
		}
	}
	if m["chain"] != float64(audit.ChainKeyed) || m["kid"] == nil || m["id"] == nil {
		t.Errorf("%s: not an entry of the keyed chain: %s", where, raw)
	}
	for _, k := range []string{"timestamp", "eventType", "status", "seq", "prevHash", "hash"} {
		if _, ok := m[k]; !ok && !(k == "prevHash" && m["seq"] == 1.0) {
			t.Errorf("%s: no %q: %s", where, k, raw)
		}
	}
	if ts, _ := m["timestamp"].(string); ts != "" {
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.HasSuffix(ts, "Z") {
			t.Errorf("%s: timestamp %q is not RFC 3339 in UTC", where, ts)
		}
	}
	if st := m["status"]; st != audit.StatusSuccess && st != audit.StatusFailure {
		t.Errorf("%s: status %v, want success or failure", where, st)
	}
	if typ, _ := m["eventType"].(string); !slices.Contains(audit.Types, typ) {
		t.Errorf("%s: event type %q is not one of audit.Types", where, typ)
	}
	var e audit.Event
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return e
}

// readAuditFile returns the entries of an audit log file, each checked
// against the design's format, but its checkpoints: those are the file's
// own, not events the database holds too.
func readAuditFile(t *testing.T, path string) []audit.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("audit file: %v", err)
	}
	defer f.Close()
	var out []audit.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if e := checkSeedFormat(t, fmt.Sprintf("%s:%d", path, n), sc.Bytes()); e.EventType != audit.CheckpointEvent {
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// adminAudit returns the database's audit log through the admin API, as
// an administrator with access token tok sees it (newest first), each
// entry checked against the design's format, but its checkpoints.
func adminAudit(t *testing.T, g *testGateway, tok, query string) []audit.Event {
	t.Helper()
	r := do(t, http.MethodGet, g.URL+"/api/v1/admin/audit?limit=1000&"+query, nil, bearer(tok)...)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /api/v1/admin/audit: %d %s", r.Status, r.Body)
	}
	var page struct {
		Events []json.RawMessage `json:"events"`
		Total  int               `json:"total"`
	}
	if err := json.Unmarshal(r.Body, &page); err != nil {
		t.Fatalf("/api/v1/admin/audit: %v: %.300s", err, r.Body)
	}
	if page.Total > len(page.Events) {
		t.Fatalf("/api/v1/admin/audit: %d entries, more than a page", page.Total)
	}
	out := []audit.Event{}
	for i, raw := range page.Events {
		if e := checkSeedFormat(t, fmt.Sprintf("/api/v1/admin/audit entry %d", i), raw); e.EventType != audit.CheckpointEvent {
			out = append(out, e)
		}
	}
	return out
}

// sameEntry reports whether two sinks hold the same event: everything but
// the sink's own chain (the event's id and log id are the same in both).
func sameEntry(a, b audit.Event) bool {
	a.Seq, a.PrevHash, a.Hash, a.KeyID = 0, "", "", ""
	b.Seq, b.PrevHash, b.Hash, b.KeyID = 0, "", "", ""
	ta, tb := a.Timestamp, b.Timestamp
	a.Timestamp, b.Timestamp = time.Time{}, time.Time{}
	return ta.Equal(tb) && reflect.DeepEqual(normalize(a), normalize(b))
}

// normalize makes the metadata of e compare by value whichever sink it
// came from (numbers are float64 once decoded).
func normalize(e audit.Event) audit.Event {
	if e.Metadata != nil {
		b, _ := json.Marshal(e.Metadata)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		e.Metadata = m
	}
	return e
}

// eventMatch selects audit entries.
type eventMatch struct {
	Type string
	// Each set field must be equal.
	UserID, Username, Status string
	// Meta entries must be equal (compared as JSON values).
	Meta map[string]any
	// Client: the entry names the client's address and user agent.
	Client bool
}

func (m eventMatch) String() string {
	return fmt.Sprintf("%s user %q/%q status %q meta %v", m.Type, m.UserID, m.Username, m.Status, m.Meta)
}

func (m eventMatch) matches(e audit.Event) bool {
	if e.EventType != m.Type || (m.UserID != "" && e.UserID != m.UserID) || (m.Username != "" && e.Username != m.Username) ||
		(m.Status != "" && e.Status != m.Status) || (m.Client && (e.IPAddress == "" || e.UserAgent == "")) {
		return false
	}
	for k, v := range m.Meta {
		got, ok := e.Metadata[k]
		if !ok {
			return false
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(v)
		if !bytes.Equal(a, b) {
			return false
		}
	}
	return true
}

// find returns the first entry m selects.
func (m eventMatch) find(events []audit.Event) (audit.Event, bool) {
	for _, e := range events {
		if m.matches(e) {
			return e, true
		}
	}
	return audit.Event{}, false
}
