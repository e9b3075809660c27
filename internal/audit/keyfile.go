package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/renameio/v2"

	"github.com/codehub-dev/codehub/internal/filelock"
)

// maxKeyFileSize bounds what is read: a key takes about 120 bytes.
const maxKeyFileSize = 1 << 20

// KeyFile keeps the chain's keys in a JSON file of mode 0600, by default in
// the gateway's data directory: outside the log, so that someone who can
// edit the log or the database but not read the data directory cannot
// re-chain what they changed. Several processes may share it (the gateway
// and the admin commands): changes take an exclusive lock on
// "<path>.lock" and replace the file atomically, and every process reads
// the file again when it changed.
type KeyFile struct {
	path string
	now  func() time.Time

	mu     sync.Mutex
	set    keySet
	loaded os.FileInfo
}

var _ Keys = (*KeyFile)(nil)

// keySet is the keys as kept in memory.
type keySet struct {
	current string
	keys    map[string]Key
	order   []keyFileEntry // as in the file, oldest first
}

// keyFileData is the key file's format.
type keyFileData struct {
	Version int            `json:"version"`
	Current string         `json:"current"`
	Keys    []keyFileEntry `json:"keys"`
}

type keyFileEntry struct {
	ID      string    `json:"kid"`
	Secret  string    `json:"secret"` // base64url
	Created time.Time `json:"created"`
}

// KeyFileConfig configures a KeyFile.
type KeyFileConfig struct {
	// Path is the key file. Required.
	Path string
	// Create makes the file, with a first key, if it does not exist (the
	// gateway); without it a missing file is an error (verify, which must
	// not invent a key that verifies nothing).
	Create bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// OpenKeyFile opens the key file. It refuses a file that group or others
// may read, and one it cannot parse: it never replaces a file it does not
// understand, since that would make every entry unverifiable.
func OpenKeyFile(cfg KeyFileConfig) (*KeyFile, error) {
	if cfg.Path == "" {
		return nil, errors.New("audit: KeyFileConfig.Path is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	k := &KeyFile{path: cfg.Path, now: cfg.Now}
	k.mu.Lock()
	defer k.mu.Unlock()
	err := k.load()
	if errors.Is(err, fs.ErrNotExist) {
		if !cfg.Create {
			return nil, fmt.Errorf("audit: no key file at %s: keyed entries cannot be verified without the key the gateway made them with", cfg.Path)
		}
		if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
			return nil, fmt.Errorf("audit: key file: %w", err)
		}
		err = filelock.With(context.Background(), cfg.Path+".lock", func() error {
			if err := k.load(); !errors.Is(err, fs.ErrNotExist) {
				return err // another process made it meanwhile
			}
			return k.write(nil, GenerateKey())
		})
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

// String implements Keys.
func (k *KeyFile) String() string { return "the key file " + k.path }

// Current implements Keys.
func (k *KeyFile) Current(ctx context.Context) (Key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.reloadIfChanged(); err != nil {
		return Key{}, err
	}
	return k.set.keys[k.set.current], nil
}

// Lookup implements Keys.
func (k *KeyFile) Lookup(ctx context.Context, kid string) (Key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.reloadIfChanged(); err != nil {
		return Key{}, err
	}
	key, ok := k.set.keys[kid]
	if !ok {
		return Key{}, fmt.Errorf("%w %q: %s does not hold it", ErrUnknownKey, kid, k)
	}
	return key, nil
}

// Rotate adds a new key and makes it the current one; the keys before keep
// verifying the entries they made. It returns the new key's id.
func (k *KeyFile) Rotate(ctx context.Context) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key := GenerateKey()
	err := filelock.With(ctx, k.path+".lock", func() error {
		// Under the lock the file cannot change: start from what is there.
		if err := k.load(); err != nil {
			return err
		}
		return k.write(k.set.order, key)
	})
	if err != nil {
		return "", err
	}
	return key.ID, nil
}

// reloadIfChanged reads the file again if it is not the one last read
// (another process rotated). k.mu is held.
func (k *KeyFile) reloadIfChanged() error {
	fi, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("audit: key file: %w", err)
	}
	if os.SameFile(fi, k.loaded) && fi.ModTime().Equal(k.loaded.ModTime()) && fi.Size() == k.loaded.Size() {
		return nil
	}
	return k.load()
}

// load reads and checks the file; an error wraps fs.ErrNotExist if there
// is none. k.mu is held.
func (k *KeyFile) load() error {
	f, err := os.Open(k.path)
	if err != nil {
		return fmt.Errorf("audit: key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("audit: key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("audit: key file %s is not a regular file", k.path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("audit: permissions %04o for %s are too open: the audit key must not be readable by group or others (chmod 600 %s)", perm, k.path, k.path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return fmt.Errorf("audit: read %s: %w", k.path, err)
	}
	set, err := parseKeyFile(b)
	if err != nil {
		return fmt.Errorf("audit: key file %s is corrupt (left as it is: restore it from a backup, or entries made with its keys cannot be verified): %w", k.path, err)
	}
	k.set, k.loaded = set, fi
	return nil
}

func parseKeyFile(b []byte) (keySet, error) {
	if len(b) > maxKeyFileSize {
		return keySet{}, fmt.Errorf("larger than %d bytes", maxKeyFileSize)
	}
	var d keyFileData
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return keySet{}, err
	}
	if dec.More() {
		return keySet{}, errors.New("data after the key set")
	}
	if d.Version != 1 {
		return keySet{}, fmt.Errorf("version %d, want 1", d.Version)
	}
	set := keySet{current: d.Current, keys: map[string]Key{}, order: d.Keys}
	for i, e := range d.Keys {
		secret, err := base64.RawURLEncoding.Strict().DecodeString(e.Secret)
		if err != nil {
			return keySet{}, fmt.Errorf("key %d: secret is not base64url", i)
		}
		key, err := NewKey(e.ID, secret)
		if err != nil {
			return keySet{}, fmt.Errorf("key %d: %w", i, err)
		}
		if _, dup := set.keys[key.ID]; dup {
			return keySet{}, fmt.Errorf("key %d: duplicate kid %q", i, key.ID)
		}
		set.keys[key.ID] = key
	}
	if _, ok := set.keys[d.Current]; !ok {
		return keySet{}, fmt.Errorf("the current key %q is not in the file", d.Current)
	}
	return set, nil
}

// write replaces the file with the keys of old plus key, which becomes
// current, and makes that the loaded state. The caller holds the file
// lock and k.mu.
func (k *KeyFile) write(old []keyFileEntry, key Key) error {
	d := keyFileData{Version: 1, Current: key.ID, Keys: append(append([]keyFileEntry(nil), old...), keyFileEntry{
		ID: key.ID, Secret: base64.RawURLEncoding.EncodeToString(key.secret), Created: k.now().UTC().Round(0),
	})}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("audit: encode key file: %w", err)
	}
	if err := writeFileAtomic(k.path, append(b, '\n')); err != nil {
		return fmt.Errorf("audit: write key file: %w", err)
	}
	return k.load()
}

// writeFileAtomic replaces path with data (mode 0600): readers see the old
// file or the new one, whole, and the new one survives a crash once this
// returns.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := renameio.WriteFile(path, data, 0o600, renameio.WithTempDir(dir), renameio.WithStaticPermissions(0o600)); err != nil {
		return err
	}
	// Make the rename itself durable; the data is already synced.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
