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

// chain is the state of one sink's hash chain.
type chain struct {
	seq  int64
	prev string
}

func (c *chain) link(e *Event) error {
	if err := Chain(e, c.seq+1, c.prev); err != nil {
		return err
	}
	c.seq, c.prev = e.Seq, e.Hash
	return nil
}

// WriterSink writes one JSON line per event to w (standard output).
type WriterSink struct {
	mu sync.Mutex
	w  io.Writer
	c  chain
}

// NewWriterSink returns a sink writing to w.
func NewWriterSink(w io.Writer) *WriterSink { return &WriterSink{w: w} }

// Append implements Sink.
func (s *WriterSink) Append(_ context.Context, events []Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for i := range events {
		e := events[i]
		if err := s.c.link(&e); err != nil {
			return err
		}
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	_, err := io.WriteString(s.w, b.String())
	return err
}

// Close implements Sink.
func (s *WriterSink) Close() error { return nil }

// FileSink appends JSON lines to a file, rotating it past MaxBytes and
// keeping MaxBackups rotated files. Its chain continues across restarts
// and rotations, so `codehub audit verify` checks the whole set.
type FileSink struct {
	path       string
	maxBytes   int64
	maxBackups int
	now        func() time.Time

	mu   sync.Mutex
	f    *os.File
	lock *os.File
	size int64
	c    chain
}

// FileConfig configures a FileSink.
type FileConfig struct {
	Path string
	// MaxBytes rotates the file when it grows past it (default 100 MiB).
	MaxBytes int64
	// MaxBackups rotated files are kept (default 10; older ones are
	// deleted, and verification then starts after them).
	MaxBackups int
	Now        func() time.Time
}

// OpenFile opens (or creates, mode 0600) an audit log file and resumes its
// chain from the last entry.
func OpenFile(cfg FileConfig) (*FileSink, error) {
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
	s := &FileSink{path: cfg.Path, maxBytes: cfg.MaxBytes, maxBackups: cfg.MaxBackups, now: cfg.Now}
	lock, err := os.OpenFile(cfg.Path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	s.lock = lock
	// The chain resumes from the newest entry of the file, or of the newest
	// rotated file if the file is empty.
	files, err := LogFiles(cfg.Path)
	if err != nil {
		lock.Close()
		return nil, err
	}
	for i := len(files) - 1; i >= 0; i-- {
		last, ok, err := lastEvent(files[i])
		if err != nil {
			return nil, fmt.Errorf("resume audit chain: %w", err)
		}
		if ok {
			s.c = chain{seq: last.Seq, prev: last.Hash}
			break
		}
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
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
func (s *FileSink) Append(_ context.Context, events []Event) error {
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
	for i := range events {
		if s.size >= s.maxBytes {
			if err := s.rotate(); err != nil {
				return err
			}
		}
		e := events[i]
		if err := s.c.link(&e); err != nil {
			return err
		}
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		line = append(line, '\n')
		n, err := s.f.Write(line)
		s.size += int64(n)
		if err != nil {
			return err
		}
	}
	return s.f.Sync()
}

// resync follows what other processes did to the log since this one last
// wrote: a rotation (the path names another file) or appended entries.
func (s *FileSink) resync() error {
	cur, err := os.Stat(s.path)
	mine, ferr := s.f.Stat()
	if ferr != nil {
		return ferr
	}
	rotated := err != nil || !os.SameFile(cur, mine)
	if rotated {
		// Rotated by another process: continue in the new file.
		s.f.Close()
		if err := s.open(); err != nil {
			return err
		}
		if mine, err = s.f.Stat(); err != nil {
			return err
		}
	}
	if !rotated && mine.Size() == s.size && s.c.seq > 0 {
		return nil
	}
	files, err := LogFiles(s.path)
	if err != nil {
		return err
	}
	for i := len(files) - 1; i >= 0; i-- {
		last, ok, err := lastEvent(files[i])
		if err != nil {
			return fmt.Errorf("resume audit chain: %w", err)
		}
		if ok {
			s.c = chain{seq: last.Seq, prev: last.Hash}
			break
		}
	}
	s.size = mine.Size()
	return nil
}

// rotate moves the file aside and starts a new one.
func (s *FileSink) rotate() error {
	if err := s.f.Close(); err != nil {
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
	return errors.Join(s.f.Close(), s.lock.Close())
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

// VerifyFiles checks the chain through files in order, and returns how many
// entries it checked and the sequence number the chain starts at (1 when
// nothing was rotated away).
func VerifyFiles(files []string) (count int, first int64, err error) {
	var v Verifier
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return v.Count, first, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 16<<20)
		line := 0
		for sc.Scan() {
			line++
			text := strings.TrimSpace(sc.Text())
			if text == "" {
				continue
			}
			var e Event
			dec := json.NewDecoder(strings.NewReader(text))
			dec.DisallowUnknownFields()
			where := fmt.Sprintf("%s:%d", name, line)
			if err := dec.Decode(&e); err != nil {
				f.Close()
				return v.Count, first, &VerifyError{where, "not an audit entry: " + err.Error()}
			}
			if v.Count == 0 {
				first = e.Seq
				if e.Seq == 1 && e.PrevHash != "" {
					f.Close()
					return v.Count, first, &VerifyError{where, "the first entry claims a predecessor"}
				}
			}
			if err := v.Check(e, where); err != nil {
				f.Close()
				return v.Count, first, err
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return v.Count, first, err
		}
	}
	return v.Count, first, nil
}
