package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/filelock"
)

// DatabaseLog is the log id of the database's chain, in checkpoints.
const DatabaseLog = "database"

// Checkpoint says how far a log had reached: its entry Seq, an
// audit.checkpoint entry, had hash Hash at Time. It is written into the log
// (that entry) and kept outside it (a state file next to the key, and the
// database), signed with the chain's key: a log that ends before its last
// checkpoint lost its tail, and a checkpoint cannot be moved back by
// someone without the key.
type Checkpoint struct {
	// Log is the id of the log: a file log's (its entries' LogID), or
	// DatabaseLog.
	Log string `json:"log"`
	// Path is where the file log was written (empty for the database).
	Path  string    `json:"path,omitempty"`
	Seq   int64     `json:"seq"`
	Hash  string    `json:"hash"`
	Time  time.Time `json:"time"`
	KeyID string    `json:"kid"`
	MAC   string    `json:"mac"`
}

// checkpointDomain keeps a checkpoint's MAC from ever equalling an entry's.
const checkpointDomain = "codehub audit checkpoint 1\n"

func checkpointMAC(cp Checkpoint, key Key) (string, error) {
	cp.MAC = ""
	cp.Time = cp.Time.UTC()
	b, err := json.Marshal(cp)
	if err != nil {
		return "", fmt.Errorf("audit: encode checkpoint: %w", err)
	}
	m := hmac.New(sha256.New, key.secret)
	m.Write([]byte(checkpointDomain))
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil)), nil
}

// SignCheckpoint sets cp's KeyID and MAC.
func SignCheckpoint(cp *Checkpoint, key Key) error {
	cp.KeyID = key.ID
	mac, err := checkpointMAC(*cp, key)
	if err != nil {
		return err
	}
	cp.MAC = mac
	return nil
}

// CheckCheckpoint verifies cp's MAC with keys.
func CheckCheckpoint(ctx context.Context, cp Checkpoint, keys Keys) error {
	key, err := keys.Lookup(ctx, cp.KeyID)
	if err != nil {
		return err
	}
	want, err := checkpointMAC(cp, key)
	if err != nil {
		return err
	}
	if !hmac.Equal([]byte(want), []byte(cp.MAC)) {
		return errors.New("its MAC does not match: forged or altered")
	}
	return nil
}

// CheckpointStore keeps checkpoints outside the logs they describe.
type CheckpointStore interface {
	// SaveCheckpoint records cp.
	SaveCheckpoint(ctx context.Context, cp Checkpoint) error
	// Checkpoints returns the checkpoints kept of log, oldest first.
	Checkpoints(ctx context.Context, log string) ([]Checkpoint, error)
	// String names the store in messages.
	String() string
}

// StateFile is a CheckpointStore in a JSON file of mode 0600, next to the
// key file: the newest checkpoint of each log this machine wrote. Several
// processes may share it: each change takes an exclusive lock on
// "<path>.lock" and replaces the file atomically, and a checkpoint never
// replaces a newer one of the same log.
type StateFile struct {
	path string
	mu   sync.Mutex
}

var _ CheckpointStore = (*StateFile)(nil)

// stateData is the state file's format.
type stateData struct {
	Version     int                   `json:"version"`
	Checkpoints map[string]Checkpoint `json:"checkpoints"`
}

// maxStateFileSize bounds what is read: a checkpoint takes about 300 bytes.
const maxStateFileSize = 16 << 20

// OpenStateFile returns the state file at path; it is created on the first
// checkpoint.
func OpenStateFile(path string) *StateFile { return &StateFile{path: path} }

// String implements CheckpointStore.
func (s *StateFile) String() string { return "the state file " + s.path }

// SaveCheckpoint implements CheckpointStore.
func (s *StateFile) SaveCheckpoint(ctx context.Context, cp Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("audit: state file: %w", err)
	}
	return filelock.With(ctx, s.path+".lock", func() error {
		d, err := s.read()
		if err != nil {
			return err
		}
		if old, ok := d.Checkpoints[cp.Log]; ok && old.Seq >= cp.Seq {
			return nil
		}
		d.Checkpoints[cp.Log] = cp
		b, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return fmt.Errorf("audit: encode state file: %w", err)
		}
		if err := writeFileAtomic(s.path, append(b, '\n')); err != nil {
			return fmt.Errorf("audit: write state file: %w", err)
		}
		return nil
	})
}

// Checkpoints implements CheckpointStore: the newest checkpoint of log, if
// any.
func (s *StateFile) Checkpoints(_ context.Context, log string) ([]Checkpoint, error) {
	all, err := s.All()
	if err != nil {
		return nil, err
	}
	if cp, ok := all[log]; ok {
		return []Checkpoint{cp}, nil
	}
	return nil, nil
}

// All returns the newest checkpoint of every log in the file, by log id.
func (s *StateFile) All() (map[string]Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.read()
	if err != nil {
		return nil, err
	}
	return d.Checkpoints, nil
}

// read returns the file's contents; none if it does not exist.
func (s *StateFile) read() (stateData, error) {
	d := stateData{Version: 1, Checkpoints: map[string]Checkpoint{}}
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("audit: state file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateFileSize+1))
	if err != nil {
		return d, fmt.Errorf("audit: read %s: %w", s.path, err)
	}
	if len(b) > maxStateFileSize {
		return d, fmt.Errorf("audit: state file %s is larger than %d bytes", s.path, maxStateFileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil || d.Version != 1 {
		return d, fmt.Errorf("audit: state file %s is corrupt (move it away to start over; checkpoints already kept in the database still count): %v", s.path, err)
	}
	if d.Checkpoints == nil {
		d.Checkpoints = map[string]Checkpoint{}
	}
	return d, nil
}

// sortCheckpoints orders checkpoints by log, then sequence number.
func sortCheckpoints(cps []Checkpoint) {
	sort.Slice(cps, func(i, j int) bool {
		if cps[i].Log != cps[j].Log {
			return cps[i].Log < cps[j].Log
		}
		return cps[i].Seq < cps[j].Seq
	})
}
