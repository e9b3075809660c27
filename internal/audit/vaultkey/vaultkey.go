// Package vaultkey keeps the audit chain's HMAC keys in HashiCorp Vault, in
// a KV version 2 secret, instead of a key file on the gateway's disk.
//
// The gateway reads the secret when it starts (creating it with a first
// key if it does not exist), keeps the keys in memory, and reads it again
// every minute to pick up a key another gateway or `codehub audit
// rotate-key` added: writing an audit entry never waits for Vault, and a
// Vault outage after the start does not stop the log. Why KV and not
// transit's hmac endpoint: that would put a round trip to Vault in every
// audit write, and events of a Vault outage would have no chain to go in.
// The price is that a gateway holds the keys in its memory; the Vault
// policy decides who else may read them.
//
// The secret holds every key, oldest first, and the current one's id;
// changes use check-and-set, so two writers never lose each other's key.
// The Vault token needs (with the default mount and path):
//
//	path "secret/data/codehub/audit-keys" { capabilities = ["create", "read", "update"] }
package vaultkey

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/codehub-dev/codehub/internal/audit"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
)

// Defaults for the zero values of Config.
const (
	DefaultMount   = "secret"
	DefaultPath    = "codehub/audit-keys"
	DefaultRefresh = time.Minute
)

// Config configures Keys.
type Config struct {
	// Client is a Vault client that is logged in and stays so
	// (vault.Client's API). Required.
	Client *api.Client
	// Mount is the KV version 2 mount (default "secret"); Path the secret
	// in it (default "codehub/audit-keys").
	Mount, Path string
	// Create writes the secret, with a first key, if it does not exist
	// (the gateway); verification does not.
	Create bool
	// Refresh is how often the secret is read again (default 1m).
	Refresh time.Duration
	Log     hclog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Keys are the chain's keys held in Vault. Safe for concurrent use.
type Keys struct {
	cfg Config
	kv  *api.KVv2

	mu      sync.Mutex
	current string
	keys    map[string]audit.Key
	next    time.Time // when to read the secret again
}

var _ audit.Keys = (*Keys)(nil)

// data is the secret's format.
type data struct {
	Version int     `json:"version"`
	Current string  `json:"current"`
	Keys    []entry `json:"keys"`
}

type entry struct {
	ID      string    `json:"kid"`
	Secret  string    `json:"secret"` // base64url
	Created time.Time `json:"created"`
}

// Open reads the keys from Vault, creating the secret if cfg.Create says
// so and it does not exist.
func Open(ctx context.Context, cfg Config) (*Keys, error) {
	if cfg.Client == nil {
		return nil, errors.New("vaultkey: Config.Client is required")
	}
	if cfg.Mount == "" {
		cfg.Mount = DefaultMount
	}
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	cfg.Mount, cfg.Path = strings.Trim(cfg.Mount, "/"), strings.Trim(cfg.Path, "/")
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Log == nil {
		cfg.Log = hclog.NewNullLogger()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	k := &Keys{cfg: cfg, kv: cfg.Client.KVv2(cfg.Mount)}
	k.mu.Lock()
	defer k.mu.Unlock()
	err := k.load(ctx)
	if errors.Is(err, api.ErrSecretNotFound) && cfg.Create {
		err = k.change(ctx, func(d *data) {
			if len(d.Keys) == 0 { // or another gateway made it first
				k.add(d)
			}
		})
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

// String implements audit.Keys.
func (k *Keys) String() string {
	return fmt.Sprintf("the Vault secret %s/%s", k.cfg.Mount, k.cfg.Path)
}

// Current implements audit.Keys. It reads the secret again when Refresh
// has passed; if Vault does not answer, it goes on with the keys it has.
func (k *Keys) Current(ctx context.Context) (audit.Key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.cfg.Now().Before(k.next) {
		// Briefly: the audit log waits meanwhile.
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := k.load(rctx)
		cancel()
		if err != nil {
			k.next = k.cfg.Now().Add(k.cfg.Refresh)
			k.cfg.Log.Warn("cannot read the audit keys from Vault; going on with those read before", "secret", k.String(), "error", err)
		}
	}
	return k.keys[k.current], nil
}

// Lookup implements audit.Keys. A key it does not know makes it read the
// secret again first: another gateway may have rotated.
func (k *Keys) Lookup(ctx context.Context, kid string) (audit.Key, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if key, ok := k.keys[kid]; ok {
		return key, nil
	}
	if err := k.load(ctx); err != nil {
		return audit.Key{}, err
	}
	if key, ok := k.keys[kid]; ok {
		return key, nil
	}
	return audit.Key{}, fmt.Errorf("%w %q: %s does not hold it", audit.ErrUnknownKey, kid, k)
}

// Rotate adds a new key and makes it current; the keys before keep
// verifying the entries they made. It returns the new key's id.
func (k *Keys) Rotate(ctx context.Context) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var kid string
	err := k.change(ctx, func(d *data) { kid = k.add(d) })
	return kid, err
}

// add adds a new current key to d and returns its id.
func (k *Keys) add(d *data) string {
	key := audit.GenerateKey()
	d.Version, d.Current = 1, key.ID
	d.Keys = append(d.Keys, entry{ID: key.ID, Secret: base64.RawURLEncoding.EncodeToString(key.Secret()),
		Created: k.cfg.Now().UTC().Round(0)})
	return key.ID
}

// change applies edit to the secret as it is now and writes it back with
// check-and-set, again if another writer was first. k.mu is held.
func (k *Keys) change(ctx context.Context, edit func(*data)) error {
	for attempt := 0; ; attempt++ {
		d, version, err := k.read(ctx)
		if errors.Is(err, api.ErrSecretNotFound) {
			d, version, err = data{}, 0, nil
		}
		if err != nil {
			return err
		}
		edit(&d)
		raw, err := toMap(d)
		if err != nil {
			return err
		}
		_, err = k.kv.Put(ctx, k.cfg.Path, raw, api.WithCheckAndSet(version))
		if err == nil {
			return k.load(ctx)
		}
		if !isCASConflict(err) || attempt >= 10 {
			return fmt.Errorf("vaultkey: write %s: %w", k, err)
		}
	}
}

// load reads the secret and makes it the keys in use. k.mu is held.
func (k *Keys) load(ctx context.Context) error {
	d, _, err := k.read(ctx)
	if err != nil {
		return err
	}
	keys := make(map[string]audit.Key, len(d.Keys))
	for i, e := range d.Keys {
		secret, err := base64.RawURLEncoding.Strict().DecodeString(e.Secret)
		if err != nil {
			return fmt.Errorf("vaultkey: %s: key %d: secret is not base64url", k, i)
		}
		key, err := audit.NewKey(e.ID, secret)
		if err != nil {
			return fmt.Errorf("vaultkey: %s: key %d: %w", k, i, err)
		}
		keys[key.ID] = key
	}
	if _, ok := keys[d.Current]; !ok {
		return fmt.Errorf("vaultkey: %s: the current key %q is not in it", k, d.Current)
	}
	k.current, k.keys, k.next = d.Current, keys, k.cfg.Now().Add(k.cfg.Refresh)
	return nil
}

// read returns the secret's contents and version.
func (k *Keys) read(ctx context.Context) (data, int, error) {
	s, err := k.kv.Get(ctx, k.cfg.Path)
	if err != nil {
		if errors.Is(err, api.ErrSecretNotFound) {
			return data{}, 0, fmt.Errorf("vaultkey: no audit keys in %s: %w", k, err)
		}
		return data{}, 0, fmt.Errorf("vaultkey: read %s: %w", k, err)
	}
	if s.VersionMetadata == nil || s.Data == nil {
		return data{}, 0, fmt.Errorf("vaultkey: read %s: deleted (its metadata remains): %w", k, api.ErrSecretNotFound)
	}
	b, err := json.Marshal(s.Data)
	if err != nil {
		return data{}, 0, fmt.Errorf("vaultkey: %s: %w", k, err)
	}
	var d data
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil || d.Version != 1 {
		return data{}, 0, fmt.Errorf("vaultkey: %s does not hold audit keys of this version (left as it is): %v", k, err)
	}
	return d, s.VersionMetadata.Version, nil
}

func toMap(d data) (map[string]any, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	err = json.Unmarshal(b, &m)
	return m, err
}

// isCASConflict reports whether err is KV's answer to a check-and-set
// write that lost a race.
func isCASConflict(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusBadRequest &&
		strings.Contains(strings.Join(re.Errors, " "), "check-and-set")
}
