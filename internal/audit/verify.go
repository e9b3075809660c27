package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// maxProblems bounds the problems a Report lists; the rest are counted.
const maxProblems = 100

// Problem is one thing wrong with a log, and where.
type Problem struct {
	// Where names the entry (file:line, or "seq N"), or the log.
	Where  string
	Reason string
}

// String says where and what.
func (p Problem) String() string { return p.Where + ": " + p.Reason }

// EntryRef is what verification keeps of an entry to compare two logs.
type EntryRef struct {
	// Where names the entry in its log (file:line, or "seq N").
	Where    string
	Seq      int64
	ID       string
	Time     time.Time
	Type     string
	Username string
	LogID    string
	// digest covers the event without its chain fields, which differ
	// between logs.
	digest [sha256.Size]byte
}

// String names the entry: where it is, its sequence number, id, time,
// type and user.
func (r EntryRef) String() string {
	who := ""
	if r.Username != "" {
		who = " " + r.Username
	}
	return fmt.Sprintf("%s (seq %d, id %s) %s %s%s", r.Where, r.Seq, r.ID, r.Time.UTC().Format(time.RFC3339Nano), r.Type, who)
}

// Report is what verifying one log found.
type Report struct {
	// Name is the log: its file, or "database".
	Name string
	// Files is how many files the log spans (0 for the database).
	Files int
	// Count entries were checked, sequence numbers First to Last, dated
	// FirstTime to LastTime.
	Count               int
	First, Last         int64
	FirstTime, LastTime time.Time
	// Legacy entries are unkeyed (written before keyed chains), sequence
	// numbers LegacyFirst to LegacyLast.
	Legacy                  int
	LegacyFirst, LegacyLast int64
	// Problems found, at most maxProblems; Dropped more.
	Problems []Problem
	Dropped  int
	// LogIDs are the file log ids the entries name.
	LogIDs []string
	// LastCheckpoint is the newest checkpoint kept outside the log that
	// the log matches, if any; Uncovered entries follow it.
	LastCheckpoint *Checkpoint
	CheckpointFrom string // the store that kept it
	Uncovered      int

	// entries are the keyed entries by id (not checkpoints), kept when
	// VerifyOptions.Collect is set.
	entries map[string]EntryRef
	// cpEntries are the hashes of the log's checkpoint entries, by seq.
	cpEntries map[int64]string
}

// OK reports whether nothing is wrong: no problems. Legacy entries and a
// chain that does not start at 1 are for the caller to judge.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// Partial reports whether the chain starts after its first entry: earlier
// entries were rotated away and deleted, or removed.
func (r *Report) Partial() bool { return r.Count > 0 && r.First != 1 }

func (r *Report) problem(where, format string, args ...any) {
	if len(r.Problems) >= maxProblems {
		r.Dropped++
		return
	}
	r.Problems = append(r.Problems, Problem{Where: where, Reason: fmt.Sprintf(format, args...)})
}

// VerifyOptions configures verification.
type VerifyOptions struct {
	// Keys check keyed entries and checkpoints; nil reports that keyed
	// entries cannot be checked.
	Keys Keys
	// KeysErr says why there are no Keys, for that report.
	KeysErr error
	// Checkpoints are the stores of checkpoints kept outside the log.
	Checkpoints []CheckpointStore
	// Collect keeps the entries for Compare.
	Collect bool
	// Path is where the log is configured to be, for finding its
	// checkpoints when its entries no longer name its id (all removed or
	// rewritten).
	Path string
}

// verifier checks a chain, entry by entry, in order. After a break it
// carries on from the entry that broke it, so that one removed entry is
// one problem and the rest is still checked and collected.
type verifier struct {
	ctx       context.Context
	opts      VerifyOptions
	r         *Report
	prev      string
	seq       int64
	started   bool
	keyedSeen bool
	noKeys    bool
	keys      map[string]Key // looked up once per key, not per entry
	badKeys   map[string]int
	// logIDs are the log ids the entries carry: a file log's own id (in a
	// database they name the file instead).
	logIDs  map[string]bool
	fileLog bool
}

func newVerifier(ctx context.Context, name string, opts VerifyOptions) *verifier {
	r := &Report{Name: name, cpEntries: map[int64]string{}}
	if opts.Collect {
		r.entries = map[string]EntryRef{}
	}
	return &verifier{ctx: ctx, opts: opts, r: r, keys: map[string]Key{}, badKeys: map[string]int{}, logIDs: map[string]bool{}}
}

// check checks the next entry; where names it.
func (v *verifier) check(e Event, where string) {
	r := v.r
	if r.Count == 0 {
		r.First, r.FirstTime = e.Seq, e.Timestamp
		if e.Seq == 1 && e.PrevHash != "" {
			r.problem(where, "the first entry claims a predecessor")
		}
	}
	r.Count++
	r.Last, r.LastTime = e.Seq, e.Timestamp
	intact := v.checkHash(e, where)
	if v.started {
		switch {
		case e.PrevHash != v.prev:
			r.problem(where, "broken chain: an entry before it is missing or altered (expected previous hash %.12s…, found %.12s…)", v.prev, e.PrevHash)
		case e.Seq != v.seq+1:
			r.problem(where, "broken chain: sequence %d follows %d (entries missing)", e.Seq, v.seq)
		}
	}
	v.prev, v.seq, v.started = e.Hash, e.Seq, true
	if !intact || e.Chain != ChainKeyed {
		return
	}
	if e.LogID != "" {
		v.logIDs[e.LogID] = true
	}
	if e.EventType == CheckpointEvent {
		r.cpEntries[e.Seq] = e.Hash
		return
	}
	if r.entries != nil && e.ID != "" {
		r.entries[e.ID] = refOf(e, where)
	}
}

// checkHash checks e against its hash and says whether it is intact.
func (v *verifier) checkHash(e Event, where string) bool {
	r := v.r
	switch e.Chain {
	case ChainLegacy:
		if v.keyedSeen {
			r.problem(where, "an unkeyed (legacy) entry after keyed ones: entries were rewritten by someone without the key")
			return false
		}
		if r.Legacy == 0 {
			r.LegacyFirst = e.Seq
		}
		r.Legacy++
		r.LegacyLast = e.Seq
		want, err := ComputeHash(e)
		if err != nil || e.Hash != want {
			r.problem(where, "altered: the entry does not match its hash")
			return false
		}
		return true
	case ChainKeyed:
		v.keyedSeen = true
		if v.opts.Keys == nil {
			if !v.noKeys {
				v.noKeys = true
				r.problem(where, "keyed entries cannot be checked without the audit key: %v", v.opts.KeysErr)
			}
			return false
		}
		if n, bad := v.badKeys[e.KeyID]; bad {
			v.badKeys[e.KeyID] = n + 1
			return false
		}
		key, ok := v.keys[e.KeyID]
		var err error
		if !ok {
			if key, err = v.opts.Keys.Lookup(v.ctx, e.KeyID); err == nil {
				v.keys[e.KeyID] = key
			}
		}
		if err != nil {
			v.badKeys[e.KeyID] = 1
			if errors.Is(err, ErrUnknownKey) {
				r.problem(where, "made with key %q, which %s does not hold: forged, or the key was lost", e.KeyID, v.opts.Keys)
			} else {
				r.problem(where, "cannot read key %q: %v", e.KeyID, err)
			}
			return false
		}
		want, err := computeMAC(e, key)
		if err != nil || !hmac.Equal([]byte(want), []byte(e.Hash)) {
			r.problem(where, "altered: the entry does not match its HMAC (key %s)", e.KeyID)
			return false
		}
		return true
	}
	r.problem(where, "unknown chain format %d (written by a newer codehub?)", e.Chain)
	return false
}

func refOf(e Event, where string) EntryRef {
	c := e
	c.Seq, c.PrevHash, c.Hash, c.Chain, c.KeyID = 0, "", "", 0, ""
	c.LogID = ""
	b, _ := json.Marshal(c)
	return EntryRef{Where: where, Seq: e.Seq, ID: e.ID, Time: e.Timestamp, Type: e.EventType, Username: e.Username,
		LogID: e.LogID, digest: sha256.Sum256(b)}
}

// finish checks the log against its checkpoints kept outside it.
func (v *verifier) finish(logs []string) *Report {
	r := v.r
	for _, kid := range slices.Sorted(maps.Keys(v.badKeys)) {
		if n := v.badKeys[kid]; n > 1 {
			r.problem(r.Name, "%d more entries were made with key %q", n-1, kid)
		}
	}
	if v.fileLog {
		for id := range v.logIDs {
			logs = append(logs, id)
		}
	}
	if v.fileLog && v.opts.Path != "" {
		for _, s := range v.opts.Checkpoints {
			if sf, ok := s.(*StateFile); ok {
				all, err := sf.All()
				if err != nil {
					r.problem(r.Name, "checkpoints: %v", err)
				}
				for _, cp := range all {
					if cp.Path == v.opts.Path {
						logs = append(logs, cp.Log)
					}
				}
			}
		}
	}
	sort.Strings(logs)
	logs = compactStrings(logs)
	for _, id := range logs {
		if id != DatabaseLog {
			r.LogIDs = append(r.LogIDs, id)
		}
	}
	v.checkCheckpoints(logs)
	return r
}

// checkCheckpoints compares the log with every checkpoint of logs kept
// outside it.
func (v *verifier) checkCheckpoints(logs []string) {
	r := v.r
	var (
		newest     *Checkpoint
		newestFrom string
		beyond     *Checkpoint
		beyondFrom string
	)
	for _, s := range v.opts.Checkpoints {
		for _, log := range logs {
			cps, err := s.Checkpoints(v.ctx, log)
			if err != nil {
				r.problem(r.Name, "checkpoints in %s: %v", s, err)
				continue
			}
			for _, cp := range cps {
				if v.opts.Keys == nil {
					continue
				}
				if err := CheckCheckpoint(v.ctx, cp, v.opts.Keys); err != nil {
					r.problem(r.Name, "the checkpoint of seq %d taken %s, in %s: %v", cp.Seq, stamp(cp.Time), s, err)
					continue
				}
				switch {
				case cp.Seq > r.Last:
					if beyond == nil || cp.Seq > beyond.Seq {
						beyond, beyondFrom = &cp, s.String()
					}
				case cp.Seq < r.First || r.Count == 0:
					// Rotated away and deleted: nothing to compare.
				default:
					h, ok := r.cpEntries[cp.Seq]
					if !ok || h != cp.Hash {
						r.problem(fmt.Sprintf("seq %d", cp.Seq), "does not match the checkpoint taken %s, in %s: the log was rewritten", stamp(cp.Time), s)
						continue
					}
					if newest == nil || cp.Seq > newest.Seq {
						newest, newestFrom = &cp, s.String()
					}
				}
			}
		}
	}
	if beyond != nil {
		if r.Count == 0 {
			r.problem(r.Name, "truncated: the log is empty, but a checkpoint taken %s (in %s) names its entry %d: entries 1 to %d are missing",
				stamp(beyond.Time), beyondFrom, beyond.Seq, beyond.Seq)
		} else {
			r.problem(r.Name, "truncated: the log ends at seq %d (%s), but a checkpoint taken %s (in %s) names its entry %d: entries %d to %d are missing",
				r.Last, stamp(r.LastTime), stamp(beyond.Time), beyondFrom, beyond.Seq, r.Last+1, beyond.Seq)
		}
	}
	if newest != nil {
		r.LastCheckpoint, r.CheckpointFrom = newest, newestFrom
		r.Uncovered = int(r.Last - newest.Seq)
		return
	}
	if r.Count > r.Legacy && beyond == nil && v.opts.Keys != nil {
		var where []string
		for _, s := range v.opts.Checkpoints {
			where = append(where, s.String())
		}
		r.problem(r.Name, "no checkpoint of this log was found outside it (in %s): a removed tail cannot be detected (there is none only if the gateway stopped without closing the log shortly after it began)",
			orNone(strings.Join(where, ", ")))
	}
}

func orNone(s string) string {
	if s == "" {
		return "no store given"
	}
	return s
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func compactStrings(s []string) []string {
	out := s[:0]
	for i, x := range s {
		if x != "" && (i == 0 || x != s[i-1]) {
			out = append(out, x)
		}
	}
	return out
}

// VerifyFiles checks the chain through files in order (LogFiles gives
// them), and the log against its checkpoints. The error is for what stops
// verification (a file that cannot be read); what is wrong with the log
// is in the Report.
func VerifyFiles(ctx context.Context, files []string, opts VerifyOptions) (*Report, error) {
	name := ""
	if len(files) > 0 {
		name = files[len(files)-1]
	}
	v := newVerifier(ctx, name, opts)
	v.r.Files, v.fileLog = len(files), true
	for _, file := range files {
		if err := verifyFile(v, file); err != nil {
			return v.r, err
		}
	}
	return v.finish(nil), nil
}

func verifyFile(v *verifier, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		where := fmt.Sprintf("%s:%d", name, line)
		var e Event
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			v.r.problem(where, "not an audit entry: %v", err)
			continue
		}
		v.check(e, where)
	}
	return sc.Err()
}

// VerifyEntries checks a chain that each feeds in order (the database's),
// and the log, whose id is log, against its checkpoints. each calls fn
// with every entry and where it is; an error from it stops verification.
func VerifyEntries(ctx context.Context, name, log string, each func(fn func(e Event, where string)) error, opts VerifyOptions) (*Report, error) {
	v := newVerifier(ctx, name, opts)
	if err := each(v.check); err != nil {
		return v.r, err
	}
	return v.finish([]string{log}), nil
}

// Comparison is what one log holds that another lacks.
type Comparison struct {
	// MissingFromDatabase are entries of the file the database lacks.
	MissingFromDatabase []EntryRef
	// MissingFromFile are entries of the database, written to the file's
	// log, that the file lacks.
	MissingFromFile []EntryRef
	// Differ are entries held by both with different contents: the file's
	// copy, then the database's.
	Differ [][2]EntryRef
	// Compared entries of the file were found in the database.
	Compared int
	// Older database entries of the file's log predate the file's first
	// entry (rotated away); Recent ones were written after `since`, while
	// the file was being read: neither is counted as missing.
	Older, Recent int
}

// OK reports whether both logs hold the same entries.
func (c *Comparison) OK() bool {
	return len(c.MissingFromDatabase) == 0 && len(c.MissingFromFile) == 0 && len(c.Differ) == 0
}

// Compare compares a file log and the database log, both verified with
// VerifyOptions.Collect. Entries are matched by id; a database entry is
// expected in the file when it names the file's log and is not older
// than the file's first entry. since is when the file began to be read:
// database entries after it may not have reached the file yet.
func Compare(file, db *Report, since time.Time) Comparison {
	var c Comparison
	for _, id := range slices.Sorted(maps.Keys(file.entries)) {
		f := file.entries[id]
		d, ok := db.entries[id]
		switch {
		case !ok:
			c.MissingFromDatabase = append(c.MissingFromDatabase, f)
		case f.digest != d.digest:
			c.Differ = append(c.Differ, [2]EntryRef{f, d})
		default:
			c.Compared++
		}
	}
	ours := map[string]bool{}
	for _, id := range file.LogIDs {
		ours[id] = true
	}
	for _, id := range slices.Sorted(maps.Keys(db.entries)) {
		d := db.entries[id]
		if !ours[d.LogID] {
			continue
		}
		if _, ok := file.entries[id]; ok {
			continue
		}
		switch {
		case file.Count > 0 && d.Time.Before(file.FirstTime):
			c.Older++
		case !d.Time.Before(since):
			c.Recent++
		default:
			c.MissingFromFile = append(c.MissingFromFile, d)
		}
	}
	bySeq := func(refs []EntryRef) {
		sort.Slice(refs, func(i, j int) bool { return refs[i].Seq < refs[j].Seq })
	}
	bySeq(c.MissingFromDatabase)
	bySeq(c.MissingFromFile)
	sort.Slice(c.Differ, func(i, j int) bool { return c.Differ[i][0].Seq < c.Differ[j][0].Seq })
	return c
}

// AbsPath is path made absolute, as FileSink records it in checkpoints.
func AbsPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}
