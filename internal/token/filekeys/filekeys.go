// Package filekeys is a token.KeySource keeping Ed25519 signing keys in a
// JSON file (mode 0600), the default for deployments without Vault.
//
// Several gateway processes may share the file (a shared volume): creating
// and rotating take an exclusive flock on "<path>.lock" and replace the file
// atomically (temporary file, then rename), and every process reloads the
// file when it changes, so a key one process rotated in verifies in all.
package filekeys

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
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

	"github.com/codehub-dev/codehub/internal/filelock"
	"github.com/codehub-dev/codehub/internal/token"
)

// Defaults for the zero values of Config.
const (
	DefaultRotateEvery = 30 * 24 * time.Hour
	DefaultRetain      = 24 * time.Hour
)

const (
	fileVersion = 1
	// maxFileSize bounds what is read: a key is about 150 bytes.
	maxFileSize = 1 << 20
	kidBytes    = 12 // 16 base64url characters
)

// Config configures Keys.
type Config struct {
	// Path is the key file. It and its directory (mode 0700) are created
	// on first use. Required.
	Path string
	// RotateEvery is the age at which Sign replaces the current key with a
	// new one (default 30 days).
	RotateEvery time.Duration
	// Retain is how long a replaced key still verifies tokens (default
	// 24h). It must be at least the access token lifetime, or tokens
	// signed just before a rotation stop verifying before they expire.
	Retain time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Keys is a token.KeySource backed by a file. It is safe for concurrent
// use, and by several processes sharing the file.
type Keys struct {
	cfg      Config
	lockPath string

	mu     sync.Mutex
	keys   []key       // oldest first; the last is the current key
	loaded os.FileInfo // the file as last read or written
}

var _ token.KeySource = (*Keys)(nil)

// key is one key as kept in memory.
type key struct {
	id      string
	priv    ed25519.PrivateKey
	created time.Time
	retired time.Time // zero for the current key
}

// fileData is the file's format.
type fileData struct {
	Version int       `json:"version"`
	Keys    []fileKey `json:"keys"` // oldest first; the last is current
}

type fileKey struct {
	ID      string    `json:"kid"`
	Seed    string    `json:"seed"` // Ed25519 seed, base64url
	Created time.Time `json:"created"`
	Retired time.Time `json:"retired,omitzero"` // when a newer key replaced it
}

// Open opens the key file, creating it with a new key if it does not exist.
// It refuses a file that group or others may read, and a file it cannot
// parse: it never replaces an existing file it does not understand.
func Open(cfg Config) (*Keys, error) {
	if cfg.Path == "" {
		return nil, errors.New("filekeys: Config.Path is required")
	}
	if cfg.RotateEvery < 0 || cfg.Retain < 0 {
		return nil, errors.New("filekeys: Config.RotateEvery and Config.Retain must not be negative")
	}
	if cfg.RotateEvery == 0 {
		cfg.RotateEvery = DefaultRotateEvery
	}
	if cfg.Retain == 0 {
		cfg.Retain = DefaultRetain
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	k := &Keys{cfg: cfg, lockPath: cfg.Path + ".lock"}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("filekeys: %w", err)
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	err := k.load()
	if errors.Is(err, fs.ErrNotExist) {
		err = k.create(context.Background())
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

// Sign signs data with the current key, replacing it first if it is older
// than RotateEvery.
func (k *Keys) Sign(ctx context.Context, data []byte) (kid string, sig []byte, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.reloadIfChanged(); err != nil {
		return "", nil, err
	}
	if k.stale(k.current()) {
		if err := k.rotate(ctx, false); err != nil {
			return "", nil, err
		}
	}
	cur := k.current()
	return cur.id, ed25519.Sign(cur.priv, data), nil
}

// PublicKeys returns the current key and the keys replaced less than
// Retain ago, by key id.
func (k *Keys) PublicKeys(ctx context.Context) (map[string]ed25519.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.reloadIfChanged(); err != nil {
		return nil, err
	}
	now := k.cfg.Now()
	out := make(map[string]ed25519.PublicKey, len(k.keys))
	for _, c := range k.keys {
		if k.retained(c, now) {
			out[c.id] = c.priv.Public().(ed25519.PublicKey)
		}
	}
	return out, nil
}

// Rotate replaces the current key with a new one now, whatever its age,
// and returns the new key's id. The replaced key still verifies for Retain.
func (k *Keys) Rotate(ctx context.Context) (kid string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.rotate(ctx, true); err != nil {
		return "", err
	}
	return k.current().id, nil
}

func (k *Keys) current() key { return k.keys[len(k.keys)-1] }

func (k *Keys) stale(c key) bool { return k.cfg.Now().Sub(c.created) >= k.cfg.RotateEvery }

func (k *Keys) retained(c key, now time.Time) bool {
	return c.retired.IsZero() || now.Sub(c.retired) <= k.cfg.Retain
}

// create makes the file with one key, unless another process made it
// meanwhile. k.mu is held.
func (k *Keys) create(ctx context.Context) error {
	unlock, err := filelock.Lock(ctx, k.lockPath)
	if err != nil {
		return fmt.Errorf("filekeys: %w", err)
	}
	defer unlock()
	err = k.load()
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	c, err := newKey(nil, k.cfg.Now())
	if err != nil {
		return err
	}
	return k.write([]key{c})
}

// rotate adds a new current key and drops keys retired longer than Retain
// ago. Unless force is set, it does nothing if the current key on disk is
// not stale: another process rotated first. k.mu is held.
func (k *Keys) rotate(ctx context.Context, force bool) error {
	unlock, err := filelock.Lock(ctx, k.lockPath)
	if err != nil {
		return fmt.Errorf("filekeys: rotate: %w", err)
	}
	defer unlock()
	// Under the lock the file cannot change: read what is there now.
	if err := k.load(); err != nil {
		return err
	}
	if !force && !k.stale(k.current()) {
		return nil
	}
	now := k.cfg.Now()
	next := make([]key, 0, len(k.keys)+1)
	for i, c := range k.keys {
		if i == len(k.keys)-1 {
			c.retired = now
		}
		if k.retained(c, now) {
			next = append(next, c)
		}
	}
	c, err := newKey(k.keys, now)
	if err != nil {
		return err
	}
	return k.write(append(next, c))
}

// reloadIfChanged reads the file again if it is not the one last read or
// written (another process rotated). k.mu is held.
func (k *Keys) reloadIfChanged() error {
	fi, err := os.Stat(k.cfg.Path)
	if err != nil {
		return fmt.Errorf("filekeys: %w", err)
	}
	if os.SameFile(fi, k.loaded) && fi.ModTime().Equal(k.loaded.ModTime()) && fi.Size() == k.loaded.Size() {
		return nil
	}
	return k.load()
}

// load reads and checks the file. An error wraps fs.ErrNotExist if there is
// no file. k.mu is held.
func (k *Keys) load() error {
	path := k.cfg.Path
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("filekeys: %w", err)
	}
	defer f.Close()
	// Check the file that was opened, not whatever the path names now.
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("filekeys: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("filekeys: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("filekeys: permissions %04o for %s are too open: the signing keys must not be readable by group or others (chmod 600 %s)", perm, path, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return fmt.Errorf("filekeys: read %s: %w", path, err)
	}
	keys, err := parse(b)
	if err != nil {
		return fmt.Errorf("filekeys: %s is corrupt (left as it is; move it away to start over with new keys, which invalidates every token): %w", path, err)
	}
	k.keys, k.loaded = keys, fi
	return nil
}

// parse decodes and checks the file's contents.
func parse(b []byte) ([]key, error) {
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	var d fileData
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the key set")
	}
	if d.Version != fileVersion {
		return nil, fmt.Errorf("version %d, want %d", d.Version, fileVersion)
	}
	if len(d.Keys) == 0 {
		return nil, errors.New("no keys")
	}
	keys := make([]key, 0, len(d.Keys))
	seen := make(map[string]bool, len(d.Keys))
	for i, fk := range d.Keys {
		switch {
		case !token.ValidKeyID(fk.ID) || len(fk.ID) != base64.RawURLEncoding.EncodedLen(kidBytes):
			return nil, fmt.Errorf("key %d: malformed kid %q", i, fk.ID)
		case seen[fk.ID]:
			return nil, fmt.Errorf("key %d: duplicate kid %q", i, fk.ID)
		case fk.Created.IsZero():
			return nil, fmt.Errorf("key %s: no creation time", fk.ID)
		case i < len(d.Keys)-1 && fk.Retired.IsZero():
			return nil, fmt.Errorf("key %s: not the last key but not retired", fk.ID)
		case i == len(d.Keys)-1 && !fk.Retired.IsZero():
			return nil, fmt.Errorf("key %s: the current (last) key is retired", fk.ID)
		}
		seen[fk.ID] = true
		seed, err := base64.RawURLEncoding.Strict().DecodeString(fk.Seed)
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("key %s: seed is not %d bytes of base64url", fk.ID, ed25519.SeedSize)
		}
		keys = append(keys, key{
			id:      fk.ID,
			priv:    ed25519.NewKeyFromSeed(seed),
			created: fk.Created,
			retired: fk.Retired,
		})
	}
	return keys, nil
}

// write replaces the file with keys, atomically, and makes them the loaded
// state. The caller holds the file lock and k.mu.
func (k *Keys) write(keys []key) error {
	d := fileData{Version: fileVersion, Keys: make([]fileKey, len(keys))}
	for i, c := range keys {
		d.Keys[i] = fileKey{
			ID:      c.id,
			Seed:    base64.RawURLEncoding.EncodeToString(c.priv.Seed()),
			Created: c.created,
			Retired: c.retired,
		}
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("filekeys: encode: %w", err)
	}
	if err := writeAtomic(k.cfg.Path, append(b, '\n')); err != nil {
		return fmt.Errorf("filekeys: write %s: %w", k.cfg.Path, err)
	}
	fi, err := os.Stat(k.cfg.Path)
	if err != nil {
		return fmt.Errorf("filekeys: %w", err)
	}
	k.keys, k.loaded = keys, fi
	return nil
}

// writeAtomic writes data to a temporary file (mode 0600) next to path and
// renames it over path, so readers see the old file or the new one, whole.
func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable; not every platform can sync a
	// directory, and the data is already safe in the file.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// newKey returns a new key created at now, with a kid none of existing has.
func newKey(existing []key, now time.Time) (key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return key{}, fmt.Errorf("filekeys: generate key: %w", err)
	}
	for {
		b := make([]byte, kidBytes)
		if _, err := rand.Read(b); err != nil {
			return key{}, fmt.Errorf("filekeys: generate key id: %w", err)
		}
		id := base64.RawURLEncoding.EncodeToString(b)
		taken := false
		for _, c := range existing {
			taken = taken || c.id == id
		}
		if !taken {
			return key{id: id, priv: priv, created: now.Round(0)}, nil
		}
	}
}
