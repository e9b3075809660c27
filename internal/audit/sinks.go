package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// chain is the state of one sink's chain.
type chain struct {
	seq  int64
	prev string
}

// link chains e after c with key, and advances c.
func (c *chain) link(e *Event, key Key) error {
	if err := Chain(e, c.seq+1, c.prev, key); err != nil {
		return err
	}
	c.seq, c.prev = e.Seq, e.Hash
	return nil
}

// Checkpointer is a sink that writes checkpoints into its chain.
type Checkpointer interface {
	// Checkpoint appends an audit.checkpoint entry dated at, giving reason,
	// and returns the checkpoint it makes, signed.
	Checkpoint(ctx context.Context, at time.Time, reason string) (Checkpoint, error)
}

// checkpointEntry is the entry a checkpoint writes into the log.
func checkpointEntry(at time.Time, logID, reason string) Event {
	return Event{Timestamp: at.UTC().Truncate(time.Microsecond), EventType: CheckpointEvent, Status: StatusSuccess,
		Metadata: map[string]any{"reason": reason}, ID: NewEventID(), LogID: logID}
}

// checkpointOf is the signed checkpoint of the entry e of log.
func checkpointOf(e Event, log, path string, key Key) (Checkpoint, error) {
	cp := Checkpoint{Log: log, Path: path, Seq: e.Seq, Hash: e.Hash, Time: e.Timestamp}
	err := SignCheckpoint(&cp, key)
	return cp, err
}

// WriterSink writes one JSON line per event to w (standard output).
type WriterSink struct {
	mu   sync.Mutex
	w    io.Writer
	keys Keys
	c    chain
}

// NewWriterSink returns a sink writing to w, keyed with keys.
func NewWriterSink(w io.Writer, keys Keys) *WriterSink { return &WriterSink{w: w, keys: keys} }

// Append implements Sink.
func (s *WriterSink) Append(ctx context.Context, events []Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, err := s.keys.Current(ctx)
	if err != nil {
		return err
	}
	c := s.c
	var b strings.Builder
	for i := range events {
		e := events[i]
		if err := c.link(&e, key); err != nil {
			return err
		}
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(s.w, b.String()); err != nil {
		return err
	}
	s.c = c
	return nil
}

// Close implements Sink.
func (s *WriterSink) Close() error { return nil }

// Name names the sink in the Logger's messages and status.
func (s *WriterSink) Name() string { return "standard output" }

// FileSink appends JSON lines to a file, rotating it past MaxBytes and
// keeping MaxBackups rotated files. Its chain continues across restarts
// and rotations, so `codehub audit verify` checks the whole set. The log
// has an id, written into each of its entries (LogID), made when its
// keyed chain starts.
type FileSink struct {
	path       string
	maxBytes   int64
	maxBackups int
	now        func() time.Time
	keys       Keys

	mu      sync.Mutex
	f       *os.File
	lock    *os.File
	size    int64
	c       chain
	logID   string
	pending *Checkpoint // the checkpoint of the entry that started the keyed chain
}

var _ Checkpointer = (*FileSink)(nil)

// FileConfig configures a FileSink.
type FileConfig struct {
	Path string
	// MaxBytes rotates the file when it grows past it (default 100 MiB).
	MaxBytes int64
	// MaxBackups rotated files are kept (default 10; older ones are
	// deleted, and verification then starts after them).
	MaxBackups int
	// Keys key the chain. Required.
	Keys Keys
	Now  func() time.Time
}

// OpenFile opens (or creates, mode 0600) an audit log file and resumes its
// chain from the last entry. A new log, or one whose entries are legacy
// (unkeyed), gets a new id and a first keyed entry, an audit.checkpoint
// whose checkpoint PendingCheckpoint returns.
func OpenFile(cfg FileConfig) (*FileSink, error) {
	if cfg.Keys == nil {
		return nil, errors.New("audit: FileConfig.Keys is required")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 100 << 20
	}
	if cfg.MaxBackups <= 0 {
		cfg.MaxBackups = 10
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, err
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, err
	}
	s := &FileSink{path: path, maxBytes: cfg.MaxBytes, maxBackups: cfg.MaxBackups, now: cfg.Now, keys: cfg.Keys}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	s.lock = lock
	if err := s.start(); err != nil {
		lock.Close()
		if s.f != nil {
			s.f.Close()
		}
		return nil, err
	}
	return s, nil
}

// start opens the file and resumes the chain, under the lock: of two
// processes opening a new log at once, the second finds the first's id.
func (s *FileSink) start() error {
	if err := syscall.Flock(int(s.lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock audit file: %w", err)
	}
	defer syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
	last, ok, err := lastLogEvent(s.path)
	if err != nil {
		return fmt.Errorf("resume audit chain: %w", err)
	}
	if ok {
		s.c = chain{seq: last.Seq, prev: last.Hash}
	}
	if err := s.open(); err != nil {
		return err
	}
	if ok && last.Chain == ChainKeyed && last.LogID != "" {
		s.logID = last.LogID
		return nil
	}
	// A new log, or the first keyed entry after legacy ones.
	s.logID = NewEventID()
	reason := "start"
	if ok {
		reason = "start after legacy unkeyed entries"
	}
	cp, err := s.appendCheckpoint(context.Background(), s.now(), reason)
	if err != nil {
		return err
	}
	s.pending = &cp
	return nil
}

// Name names the sink in the Logger's messages and status.
func (s *FileSink) Name() string { return "file " + filepath.Base(s.path) }

// LogID returns the log's id.
func (s *FileSink) LogID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logID
}

// Path returns the log file's absolute path.
func (s *FileSink) Path() string { return s.path }

// PendingCheckpoint returns the checkpoint of the entry that started the
// log's keyed chain when this sink opened it, once, for the caller to keep
// outside the log.
func (s *FileSink) PendingCheckpoint() (Checkpoint, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		return Checkpoint{}, false
	}
	cp := *s.pending
	s.pending = nil
	return cp, true
}

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.size = f, fi.Size()
	return nil
}

// Append implements Sink. Several processes may append to one file (a
// gateway and the admin CLI): each takes an exclusive lock on the file,
// and picks the chain up from its last line when another wrote since.
func (s *FileSink) Append(ctx context.Context, events []Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The lock is on a file of its own: the log file itself is renamed by
	// rotations.
	if err := syscall.Flock(int(s.lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock audit file: %w", err)
	}
	defer syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
	if err := s.resync(); err != nil {
		return err
	}
	_, err := s.write(ctx, events)
	return err
}

// Checkpoint implements Checkpointer.
func (s *FileSink) Checkpoint(ctx context.Context, at time.Time, reason string) (Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := syscall.Flock(int(s.lock.Fd()), syscall.LOCK_EX); err != nil {
		return Checkpoint{}, fmt.Errorf("lock audit file: %w", err)
	}
	defer syscall.Flock(int(s.lock.Fd()), syscall.LOCK_UN)
	if err := s.resync(); err != nil {
		return Checkpoint{}, err
	}
	return s.appendCheckpoint(ctx, at, reason)
}

// appendCheckpoint writes a checkpoint entry. The lock and s.mu are held.
func (s *FileSink) appendCheckpoint(ctx context.Context, at time.Time, reason string) (Checkpoint, error) {
	key, err := s.write(ctx, []Event{checkpointEntry(at, s.logID, reason)})
	if err != nil {
		return Checkpoint{}, err
	}
	e := Event{Seq: s.c.seq, Hash: s.c.prev, Timestamp: at.UTC().Truncate(time.Microsecond)}
	return checkpointOf(e, s.logID, s.path, key)
}

// write chains events and writes them in one write, then syncs the file.
// On failure nothing stays written (the file is cut back) and the chain is
// as before, so the caller may retry. The lock and s.mu are held.
func (s *FileSink) write(ctx context.Context, events []Event) (Key, error) {
	key, err := s.keys.Current(ctx)
	if err != nil {
		return Key{}, err
	}
	if s.size >= s.maxBytes {
		if err := s.rotate(); err != nil {
			return Key{}, err
		}
	}
	c := s.c
	var buf []byte
	for i := range events {
		e := events[i]
		if e.LogID == "" {
			e.LogID = s.logID
		}
		if err := c.link(&e, key); err != nil {
			return Key{}, err
		}
		line, err := json.Marshal(e)
		if err != nil {
			return Key{}, err
		}
		buf = append(append(buf, line...), '\n')
	}
	n, err := s.f.Write(buf)
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		if n > 0 {
			if terr := s.f.Truncate(s.size); terr != nil {
				return Key{}, fmt.Errorf("%w (and cutting the partial write back failed: %v)", err, terr)
			}
		}
		return Key{}, err
	}
	s.size += int64(n)
	s.c = c
	return key, nil
}

// resync follows what other processes did to the log since this one last
// wrote: a rotation (the path names another file) or appended entries. If
// the file cannot be opened (its directory moved away), the next call tries
// again.
func (s *FileSink) resync() error {
	reopen := s.f == nil
	if !reopen {
		cur, err := os.Stat(s.path)
		mine, ferr := s.f.Stat()
		if ferr != nil {
			return ferr
		}
		reopen = err != nil || !os.SameFile(cur, mine)
		if !reopen && mine.Size() == s.size && s.c.seq > 0 {
			return nil
		}
		if reopen {
			s.f.Close()
			s.f = nil
		}
	}
	if reopen {
		// Rotated by another process: continue in the new file.
		if err := s.open(); err != nil {
			return err
		}
	}
	mine, err := s.f.Stat()
	if err != nil {
		return err
	}
	last, ok, err := lastLogEvent(s.path)
	if err != nil {
		return fmt.Errorf("resume audit chain: %w", err)
	}
	if ok {
		s.c = chain{seq: last.Seq, prev: last.Hash}
		if last.Chain == ChainKeyed && last.LogID != "" {
			s.logID = last.LogID
		}
	}
	s.size = mine.Size()
	return nil
}

// rotate moves the file aside and starts a new one.
func (s *FileSink) rotate() error {
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return err
	}
	ext := filepath.Ext(s.path)
	base := strings.TrimSuffix(s.path, ext)
	rotated := fmt.Sprintf("%s-%s-%012d%s", base, s.now().UTC().Format("20060102T150405"), s.c.seq, ext)
	if err := os.Rename(s.path, rotated); err != nil {
		return err
	}
	files, err := LogFiles(s.path)
	if err == nil && len(files) > s.maxBackups+1 {
		for _, old := range files[:len(files)-s.maxBackups-1] {
			_ = os.Remove(old)
		}
	}
	return s.open()
}

// Close implements Sink.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	if s.f != nil {
		err = s.f.Close()
	}
	return errors.Join(err, s.lock.Close())
}

// lastLogEvent returns the newest entry of the log at path: of the file,
// or of the newest rotated file if the file is empty.
func lastLogEvent(path string) (Event, bool, error) {
	files, err := LogFiles(path)
	if err != nil {
		return Event{}, false, err
	}
	for i := len(files) - 1; i >= 0; i-- {
		last, ok, err := lastEvent(files[i])
		if err != nil || ok {
			return last, ok, err
		}
	}
	return Event{}, false, nil
}

// LogFiles returns the rotated files of the log at path, oldest first,
// then path itself if it exists.
func LogFiles(path string) ([]string, error) {
	ext := filepath.Ext(path)
	base := strings.TrimSuffix(path, ext)
	rotated, err := filepath.Glob(base + "-*" + ext)
	if err != nil {
		return nil, err
	}
	sort.Strings(rotated) // names carry the time and sequence
	if _, err := os.Stat(path); err == nil {
		rotated = append(rotated, path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return rotated, nil
}

func lastEvent(path string) (Event, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return Event{}, false, err
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			last = line
		}
	}
	if err := sc.Err(); err != nil {
		return Event{}, false, err
	}
	if last == "" {
		return Event{}, false, nil
	}
	var e Event
	if err := json.Unmarshal([]byte(last), &e); err != nil {
		return Event{}, false, fmt.Errorf("%s: last line is not an audit event: %w", path, err)
	}
	return e, true, nil
}
