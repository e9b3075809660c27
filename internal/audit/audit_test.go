package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
			Metadata: map[string]any{"sessionId": "session-456", "mfa": false, "n": i}, ID: NewEventID()}
	}
	return out
}

// env is one machine's audit setup: a key file and a state file in a data
// directory, and a log file.
type env struct {
	t     *testing.T
	dir   string
	path  string
	keys  *KeyFile
	state *StateFile
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	keys, err := OpenKeyFile(KeyFileConfig{Path: filepath.Join(dir, "audit-key.json"), Create: true})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dir: dir, path: filepath.Join(dir, "audit.log"), keys: keys,
		state: OpenStateFile(filepath.Join(dir, "audit-checkpoints.json"))}
}

func (e *env) openFile(cfg FileConfig) *FileSink {
	e.t.Helper()
	if cfg.Path == "" {
		cfg.Path = e.path
	}
	cfg.Keys = e.keys
	s, err := OpenFile(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// logger records n events through a Logger writing to the file and
// keeping checkpoints in the state file, every `every` entries, and
// closes it.
func (e *env) logger(n, every int) {
	e.t.Helper()
	l := NewLogger(LoggerConfig{Log: hclog.NewNullLogger(), CheckpointEntries: every, CheckpointInterval: time.Hour,
		Checkpoints: []CheckpointStore{e.state}}, e.openFile(FileConfig{}))
	for _, ev := range events(n) {
		l.Record(ev)
		if every > 0 {
			l.Flush() // one batch per event, so checkpoints fall where the test expects
		}
	}
	if err := l.Close(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) verify(files ...string) *Report {
	e.t.Helper()
	if len(files) == 0 {
		var err error
		if files, err = LogFiles(e.path); err != nil {
			e.t.Fatal(err)
		}
	}
	r, err := VerifyFiles(context.Background(), files, VerifyOptions{Keys: e.keys, Checkpoints: []CheckpointStore{e.state},
		Path: e.path})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// mustOK fails t unless r found nothing wrong.
func mustOK(t *testing.T, r *Report) {
	t.Helper()
	if !r.OK() {
		t.Fatalf("verify found problems in an intact log:\n%s", problems(r))
	}
}

// mustFind fails t unless one of r's problems contains want.
func mustFind(t *testing.T, r *Report, want string) {
	t.Helper()
	if !strings.Contains(problems(r), want) {
		t.Fatalf("verify reported\n%s\nwant a problem containing %q", problems(r), want)
	}
}

func problems(r *Report) string {
	var b strings.Builder
	for _, p := range r.Problems {
		fmt.Fprintln(&b, p)
	}
	if b.Len() == 0 {
		return "(no problems)"
	}
	return b.String()
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

func writeLines(t *testing.T, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func decode(t *testing.T, line string) Event {
	t.Helper()
	var e Event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func encode(t *testing.T, e Event) string {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rechainSHA256 recomputes the chain from line i on with plain SHA-256,
// keeping every other field: what someone without the key can do.
func rechainSHA256(t *testing.T, lines []string, i int) {
	t.Helper()
	prev := ""
	if i > 0 {
		prev = decode(t, lines[i-1]).Hash
	}
	for ; i < len(lines); i++ {
		e := decode(t, lines[i])
		e.PrevHash = prev
		e.Hash, _ = ComputeHash(e)
		lines[i] = encode(t, e)
		prev = e.Hash
	}
}

// TestFormat: the design's JSON shape, plus the chain fields.
func TestFormat(t *testing.T) {
	var buf bytes.Buffer
	s := NewWriterSink(&buf, newEnv(t).keys)
	if err := s.Append(context.Background(), events(1)); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"timestamp", "eventType", "userId", "username", "ipAddress", "userAgent", "status", "metadata",
		"id", "seq", "prevHash", "hash", "chain", "kid"} {
		if _, ok := m[k]; !ok {
			t.Errorf("field %q missing: %s", k, buf.String())
		}
	}
	if m["timestamp"] != "2025-11-15T10:30:00Z" || m["eventType"] != "user.login" || m["seq"] != 1.0 || m["prevHash"] != "" ||
		m["chain"] != 2.0 || len(m["hash"].(string)) != 64 {
		t.Errorf("entry: %s", buf.String())
	}
}

func TestFileChainVerifies(t *testing.T) {
	e := newEnv(t)
	e.logger(5, 0)
	e.logger(3, 0) // a restart resumes the chain
	r := e.verify()
	mustOK(t, r)
	// A start checkpoint, 5 events, a closing checkpoint, 3 more, another.
	if r.Count != 11 || r.First != 1 || r.Legacy != 0 || r.LastCheckpoint == nil || r.LastCheckpoint.Seq != 11 || r.Uncovered != 0 {
		t.Fatalf("report: %+v", r)
	}
	for _, p := range []string{e.path, e.keys.path, e.state.path} {
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	lines := readLines(t, e.path)
	first, last := decode(t, lines[0]), decode(t, lines[len(lines)-1])
	if first.EventType != CheckpointEvent || first.Metadata["reason"] != "start" || last.Metadata["reason"] != "close" ||
		first.LogID == "" || first.LogID != last.LogID {
		t.Fatalf("first and last entries: %s\n%s", lines[0], lines[len(lines)-1])
	}
}

func TestRotationKeepsTheChain(t *testing.T) {
	e := newEnv(t)
	s := e.openFile(FileConfig{MaxBytes: 1000, MaxBackups: 100})
	for _, ev := range events(20) {
		if err := s.Append(context.Background(), []Event{ev}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	files, _ := LogFiles(e.path)
	if len(files) < 3 {
		t.Fatalf("expected rotation, got %v", files)
	}
	r, err := VerifyFiles(context.Background(), files, VerifyOptions{Keys: e.keys})
	if err != nil || r.Count != 21 || r.Files != len(files) {
		t.Fatalf("VerifyFiles across rotations = %+v, %v", r, err)
	}
	// Only the missing checkpoint (no store given) is wrong.
	if len(r.Problems) != 1 || !strings.Contains(r.Problems[0].Reason, "no checkpoint of this log was found") {
		t.Fatalf("problems: %s", problems(r))
	}
	// A rotated file removed from the middle breaks the chain at the
	// first entry after it.
	r, _ = VerifyFiles(context.Background(), append(files[:1:1], files[2:]...), VerifyOptions{Keys: e.keys})
	mustFind(t, r, files[2]+":1: broken chain")
}

// TestVerifyDetectsTampering: what someone who can edit the log file but
// has not the key can do is found, at the line it happened.
func TestVerifyDetectsTampering(t *testing.T) {
	cases := []struct {
		name string
		edit func(t *testing.T, l []string) []string
		want string
	}{
		{"deleted line", func(t *testing.T, l []string) []string { return append(l[:3], l[4:]...) }, "audit.log:4: broken chain"},
		{"altered line", func(t *testing.T, l []string) []string {
			l[2] = strings.Replace(l[2], `"alice"`, `"mallory"`, 1)
			return l
		}, "audit.log:3: altered: the entry does not match its HMAC"},
		{"altered, and the chain recomputed with plain SHA-256", func(t *testing.T, l []string) []string {
			e := decode(t, l[2])
			e.Username = "mallory"
			l[2] = encode(t, e)
			rechainSHA256(t, l, 2)
			return l
		}, "audit.log:3: altered: the entry does not match its HMAC"},
		{"altered and rewritten as legacy unkeyed entries", func(t *testing.T, l []string) []string {
			for i := 2; i < len(l); i++ {
				e := decode(t, l[i])
				e.Chain, e.KeyID = ChainLegacy, ""
				if i == 2 {
					e.Username = "mallory"
				}
				l[i] = encode(t, e)
			}
			rechainSHA256(t, l, 2)
			return l
		}, "audit.log:3: an unkeyed (legacy) entry after keyed ones"},
		{"whole log rewritten as legacy unkeyed entries", func(t *testing.T, l []string) []string {
			for i := range l {
				e := decode(t, l[i])
				e.Chain, e.KeyID = ChainLegacy, ""
				l[i] = encode(t, e)
			}
			rechainSHA256(t, l, 0)
			return l
		}, "does not match the checkpoint taken"},
		{"entry inserted", func(t *testing.T, l []string) []string {
			return append(l[:3], append([]string{l[2]}, l[3:]...)...)
		}, "audit.log:4: broken chain"},
		{"reordered lines", func(t *testing.T, l []string) []string {
			l[2], l[3] = l[3], l[2]
			return l
		}, "audit.log:3: broken chain"},
		{"garbage line", func(t *testing.T, l []string) []string {
			return append(l[:2], append([]string{"{not json"}, l[2:]...)...)
		}, "audit.log:3: not an audit entry"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.logger(5, 0)
			writeLines(t, e.path, c.edit(t, readLines(t, e.path)))
			mustFind(t, e.verify(), c.want)
		})
	}
	t.Run("first line deleted", func(t *testing.T) {
		e := newEnv(t)
		e.logger(5, 0)
		writeLines(t, e.path, readLines(t, e.path)[1:])
		r := e.verify()
		if !r.OK() || r.First != 2 || !r.Partial() {
			t.Fatalf("first = %d, %s: the missing start must show as a chain not starting at 1", r.First, problems(r))
		}
	})
}

// TestTruncatedTail: a log whose last entries are removed, back past its
// last checkpoint, fails and says which entries are gone; removed entries
// after the last checkpoint are the documented blind spot.
func TestTruncatedTail(t *testing.T) {
	e := newEnv(t)
	e.logger(23, 5) // checkpoints after every 5 entries, and at close
	lines := readLines(t, e.path)
	r := e.verify()
	mustOK(t, r)
	n := len(lines)
	if r.LastCheckpoint == nil || r.LastCheckpoint.Seq != int64(n) {
		t.Fatalf("the last entry is the closing checkpoint: %+v", r.LastCheckpoint)
	}
	for _, k := range []int{1, 4, 10} {
		t.Run(fmt.Sprintf("last %d removed", k), func(t *testing.T) {
			cut := filepath.Join(t.TempDir(), "audit.log") // a copy elsewhere: found by its log id
			writeLines(t, cut, lines[:n-k])
			r := e.verify(cut)
			mustFind(t, r, fmt.Sprintf("truncated: the log ends at seq %d (", n-k))
			mustFind(t, r, fmt.Sprintf("names its entry %d: entries %d to %d are missing", n, n-k+1, n))
		})
	}
	t.Run("everything removed", func(t *testing.T) {
		writeLines(t, e.path, nil)
		mustFind(t, e.verify(), "truncated: the log is empty")
	})

	// Without a closing checkpoint (a crash), the entries after the last
	// checkpoint are not covered: removing them does not show.
	e = newEnv(t)
	s := e.openFile(FileConfig{})
	if cp, ok := s.PendingCheckpoint(); !ok || e.state.SaveCheckpoint(context.Background(), cp) != nil {
		t.Fatal("no start checkpoint")
	}
	if err := s.Append(context.Background(), events(3)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	r = e.verify()
	mustOK(t, r)
	if r.Uncovered != 3 {
		t.Fatalf("uncovered = %d, want 3", r.Uncovered)
	}
	lines = readLines(t, e.path)
	writeLines(t, e.path, lines[:2])
	if r = e.verify(); !r.OK() || r.Uncovered != 1 {
		t.Fatalf("truncated within the uncovered tail: %s, uncovered %d", problems(r), r.Uncovered)
	}
}

// TestCheckpointsCannotBeForged: a checkpoint moved back, by someone
// without the key, is refused; the state never goes backwards.
func TestCheckpointsCannotBeForged(t *testing.T) {
	e := newEnv(t)
	e.logger(12, 5)
	lines := readLines(t, e.path)
	all, err := e.state.All()
	if err != nil || len(all) != 1 {
		t.Fatalf("state: %v, %v", all, err)
	}
	var cp Checkpoint
	for _, c := range all {
		cp = c
	}
	// An older checkpoint never replaces a newer one.
	older := cp
	older.Seq--
	if err := e.state.SaveCheckpoint(context.Background(), older); err != nil {
		t.Fatal(err)
	}
	if all, _ := e.state.All(); all[cp.Log].Seq != cp.Seq {
		t.Fatalf("state went back to seq %d", all[cp.Log].Seq)
	}
	// Cut the log back to the previous checkpoint and edit the state file
	// to match.
	prev := decode(t, lines[len(lines)-3])
	writeLines(t, e.path, lines[:len(lines)-2])
	b, _ := os.ReadFile(e.state.path)
	b = bytes.Replace(b, []byte(fmt.Sprintf(`"seq": %d`, cp.Seq)), []byte(fmt.Sprintf(`"seq": %d`, prev.Seq)), 1)
	b = bytes.Replace(b, []byte(cp.Hash), []byte(prev.Hash), 1)
	if err := os.WriteFile(e.state.path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFind(t, e.verify(), "its MAC does not match: forged or altered")
}

// TestKeyRotation: after a rotation new entries name the new key, and the
// entries made with the old one keep verifying.
func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	e.logger(3, 0)
	old, _ := e.keys.Current(context.Background())
	kid, err := e.keys.Rotate(context.Background())
	if err != nil || kid == old.ID {
		t.Fatalf("Rotate = %q, %v", kid, err)
	}
	e.logger(3, 0)
	lines := readLines(t, e.path)
	if decode(t, lines[0]).KeyID != old.ID || decode(t, lines[len(lines)-1]).KeyID != kid {
		t.Fatalf("key ids: first %s, last %s; want %s then %s", decode(t, lines[0]).KeyID, decode(t, lines[len(lines)-1]).KeyID, old.ID, kid)
	}
	mustOK(t, e.verify())
	// Another process (verify) reading the same file.
	keys, err := OpenKeyFile(KeyFileConfig{Path: e.keys.path})
	if err != nil {
		t.Fatal(err)
	}
	r, err := VerifyFiles(context.Background(), []string{e.path}, VerifyOptions{Keys: keys, Checkpoints: []CheckpointStore{e.state}})
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, r)

	// A key lost (or an entry made with a key the gateway never had).
	var d keyFileData
	b, _ := os.ReadFile(e.keys.path)
	json.Unmarshal(b, &d)
	d.Keys = d.Keys[1:]
	b, _ = json.Marshal(d)
	os.WriteFile(e.keys.path, b, 0o600)
	mustFind(t, e.verify(), fmt.Sprintf("audit.log:1: made with key %q, which the key file %s does not hold", old.ID, e.keys.path))
}

// TestLegacyLog: a log written before keyed chains verifies as legacy,
// and a gateway continues it with a keyed chain.
func TestLegacyLog(t *testing.T) {
	e := newEnv(t)
	var lines []string
	prev := ""
	for i, ev := range events(4) {
		ev.ID = "" // as the old format wrote them
		ev.Seq, ev.PrevHash = int64(i+1), prev
		ev.Hash, _ = ComputeHash(ev)
		prev = ev.Hash
		lines = append(lines, encode(t, ev))
	}
	writeLines(t, e.path, lines)
	// Byte for byte what the old format wrote: no new field appears.
	if strings.Contains(lines[0], `"chain"`) || strings.Contains(lines[0], `"id"`) || strings.Contains(lines[0], `"kid"`) {
		t.Fatalf("legacy entry: %s", lines[0])
	}
	r := e.verify()
	if !r.OK() || r.Legacy != 4 || r.LegacyFirst != 1 || r.LegacyLast != 4 || r.Count != 4 {
		t.Fatalf("legacy log: %+v\n%s", r, problems(r))
	}

	e.logger(2, 0)
	r = e.verify()
	mustOK(t, r)
	if r.Legacy != 4 || r.Count != 8 {
		t.Fatalf("legacy then keyed: legacy %d of %d", r.Legacy, r.Count)
	}
	if first := decode(t, readLines(t, e.path)[4]); first.EventType != CheckpointEvent || first.PrevHash != prev ||
		first.Metadata["reason"] != "start after legacy unkeyed entries" {
		t.Fatalf("the first keyed entry: %+v", first)
	}
	// A legacy entry altered is still found: the unkeyed hash shows damage.
	all := readLines(t, e.path)
	all[1] = strings.Replace(all[1], `"alice"`, `"mallory"`, 1)
	writeLines(t, e.path, all)
	mustFind(t, e.verify(), "audit.log:2: altered: the entry does not match its hash")
}

// flaky is a sink that fails while down is set (a database outage).
type flaky struct {
	Sink
	mu   sync.Mutex
	down bool
}

func (f *flaky) Append(ctx context.Context, ev []Event) error {
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return errors.New("connection refused")
	}
	return f.Sink.Append(ctx, ev)
}

func (f *flaky) set(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

// TestLoggerBackfillsAFailedSink: events a sink could not take while it
// failed are written to it, in order and unchanged, when it works again;
// the other sinks are not held up meanwhile.
func TestLoggerBackfillsAFailedSink(t *testing.T) {
	e := newEnv(t)
	other := filepath.Join(e.dir, "other.log")
	db := &flaky{Sink: e.openFile(FileConfig{Path: other})}
	l := NewLogger(LoggerConfig{Log: hclog.NewNullLogger(), CheckpointInterval: time.Hour}, e.openFile(FileConfig{}), db)
	l.Record(Event{EventType: SessionCreated})
	l.Flush()
	db.set(true)
	for i := 0; i < 5; i++ {
		l.Record(Event{EventType: LoginFailure, Metadata: map[string]any{"i": i}})
	}
	l.Flush()
	if n := len(readLines(t, e.path)); n != 7 {
		t.Fatalf("the file holds %d entries during the outage, want 7 (start checkpoint and 6 events)", n)
	}
	if st := l.Status(); st.Sinks[1].Backlog != 5 || st.Sinks[1].Error == "" {
		t.Fatalf("status during the outage: %+v", st)
	}
	db.set(false)
	l.Flush()
	if st := l.Status(); st.Sinks[1].Backlog != 0 || st.Sinks[1].Error != "" {
		t.Fatalf("status after the outage: %+v", st)
	}
	l.Close()
	var ids []string
	for _, line := range readLines(t, e.path)[1:7] {
		ids = append(ids, decode(t, line).ID)
	}
	var got []string
	for _, line := range readLines(t, other)[1:7] {
		got = append(got, decode(t, line).ID)
	}
	if strings.Join(ids, ",") != strings.Join(got, ",") {
		t.Fatalf("the backfilled sink holds %v, want %v", got, ids)
	}
}

func TestLoggerOrdersAndDrains(t *testing.T) {
	e := newEnv(t)
	var buf bytes.Buffer
	l := NewLogger(LoggerConfig{Log: hclog.NewNullLogger(), Checkpoints: []CheckpointStore{e.state}},
		e.openFile(FileConfig{}), NewWriterSink(&buf, e.keys))
	for i := 0; i < 1000; i++ {
		l.Record(Event{EventType: SessionCreated, Metadata: map[string]any{"i": i}})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	r := e.verify()
	mustOK(t, r)
	// 1000 events, a start checkpoint and one every 100 entries (or more:
	// a batch may straddle the mark) and at close.
	if r.Count < 1000+2 || r.Count > 1000+12 || r.Uncovered != 0 {
		t.Fatalf("count %d, uncovered %d", r.Count, r.Uncovered)
	}
	if c := strings.Count(buf.String(), "\n"); c != 1000 {
		t.Fatalf("stdout sink got %d lines", c)
	}
	l.Record(Event{EventType: SessionCreated}) // after Close: dropped with a warning, no panic
}

// TestTwoWritersShareAFile: a gateway and the admin CLI append to one file;
// the chain stays whole and keeps one log id.
func TestTwoWritersShareAFile(t *testing.T) {
	e := newEnv(t)
	a := e.openFile(FileConfig{MaxBytes: 4000, MaxBackups: 100})
	b := e.openFile(FileConfig{MaxBytes: 4000, MaxBackups: 100})
	if a.LogID() != b.LogID() {
		t.Fatalf("two openers of a new log got ids %s and %s", a.LogID(), b.LogID())
	}
	if _, ok := b.PendingCheckpoint(); ok {
		t.Fatal("the second opener started the chain again")
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
	if _, err := a.Checkpoint(context.Background(), time.Now(), "close"); err != nil {
		t.Fatal(err)
	}
	cp, err := b.Checkpoint(context.Background(), time.Now(), "close")
	if err != nil || e.state.SaveCheckpoint(context.Background(), cp) != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	r := e.verify()
	mustOK(t, r)
	if r.Count != 33 || r.First != 1 || len(r.LogIDs) != 1 {
		t.Fatalf("report %+v", r)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "audit-key.json")
	if _, err := OpenKeyFile(KeyFileConfig{Path: path}); err == nil || !strings.Contains(err.Error(), "no key file at") {
		t.Fatalf("a missing key file without Create: %v", err)
	}
	// Processes starting at once make one key.
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Go(func() {
			k, err := OpenKeyFile(KeyFileConfig{Path: path, Create: true})
			if err != nil {
				t.Error(err)
				return
			}
			key, _ := k.Current(context.Background())
			ids[i] = key.ID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] || id == "" {
			t.Fatalf("concurrent creation made keys %v", ids)
		}
	}
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %v", fi.Mode().Perm())
	}
	os.Chmod(path, 0o640)
	if _, err := OpenKeyFile(KeyFileConfig{Path: path}); err == nil || !strings.Contains(err.Error(), "too open") {
		t.Fatalf("a group-readable key file: %v", err)
	}
	os.Chmod(path, 0o600)
	good, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(`{"version":1,"current":"x","keys":[]}`), 0o600)
	if _, err := OpenKeyFile(KeyFileConfig{Path: path, Create: true}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("a corrupt key file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != `{"version":1,"current":"x","keys":[]}` {
		t.Fatal("a corrupt key file was replaced")
	}
	os.WriteFile(path, good, 0o600)
	k, err := OpenKeyFile(KeyFileConfig{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Lookup(context.Background(), "nope"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("Lookup of an unknown key: %v", err)
	}
	if key, _ := k.Current(context.Background()); strings.Contains(fmt.Sprint(key), base64Secret(key)) {
		t.Fatal("a key prints its secret")
	}
}

func base64Secret(k Key) string {
	b, _ := json.Marshal(k.Secret())
	return strings.Trim(string(b), `"`)
}

// TestFileSinkComesBack: while the log's directory is away the file sink
// fails, its events wait, and they are written when it is back.
func TestFileSinkComesBack(t *testing.T) {
	e := newEnv(t)
	e.path = filepath.Join(e.dir, "logs", "audit.log")
	l := NewLogger(LoggerConfig{Log: hclog.NewNullLogger(), CheckpointInterval: time.Hour, Checkpoints: []CheckpointStore{e.state}},
		e.openFile(FileConfig{}))
	l.Record(Event{EventType: SessionCreated})
	l.Flush()
	away := filepath.Join(e.dir, "away")
	if err := os.Rename(filepath.Dir(e.path), away); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		l.Record(Event{EventType: LoginFailure, Metadata: map[string]any{"i": i}})
	}
	l.Flush()
	if st := l.Status(); st.Sinks[0].Backlog != 3 || st.Sinks[0].Error == "" {
		t.Fatalf("status while the directory is away: %+v", st)
	}
	if err := os.Rename(away, filepath.Dir(e.path)); err != nil {
		t.Fatal(err)
	}
	l.Flush()
	if st := l.Status(); st.Sinks[0].Backlog != 0 || st.Sinks[0].Error != "" {
		t.Fatalf("status after: %+v", st)
	}
	l.Close()
	r := e.verify()
	mustOK(t, r)
	if r.Count != 6 { // the start checkpoint, 4 events, the closing checkpoint
		t.Fatalf("%d entries, want 6", r.Count)
	}
}
