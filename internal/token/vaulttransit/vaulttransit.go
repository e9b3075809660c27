// Package vaulttransit is a token.KeySource on HashiCorp Vault's transit
// secrets engine: an Ed25519 transit key signs access tokens inside Vault,
// so the private key never reaches the gateway, and every version of the
// key still readable verifies them.
//
// Key ids are "<key>-v<version>". Rotating the key in Vault
// (transit/keys/<key>/rotate) makes new tokens carry the new version's id
// while tokens signed before keep verifying, until min_decryption_version
// is raised past their version. The Vault token needs:
//
//	path "transit/sign/codehub-jwt" { capabilities = ["update"] }
//	path "transit/keys/codehub-jwt" { capabilities = ["read"] }
package vaulttransit

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/codehub-dev/codehub/internal/token"
	"github.com/hashicorp/vault/api"
)

// Defaults for the zero values of Config.
const (
	DefaultMount = "transit"
	DefaultKey   = "codehub-jwt"
)

// maxKeyNameLen leaves room in a key id (at most 64 characters) for
// "-v" and a version number.
const maxKeyNameLen = 48

// Config configures a Source.
type Config struct {
	// Client is a Vault client that is logged in and stays so
	// (vault.Client's API). Required.
	Client *api.Client
	// Mount is where the transit engine is mounted (default "transit").
	Mount string
	// Key is the transit key, of type ed25519 (default "codehub-jwt"). Its
	// name must be letters, digits, '-' and '_', at most 48 of them: it is
	// part of every key id.
	Key string
}

// Source signs with a Vault transit key. It keeps no state: token.Service
// caches the public keys, and keeps verifying with them while Vault is
// unreachable. It is safe for concurrent use.
type Source struct {
	c     *api.Client
	mount string
	key   string
}

var _ token.KeySource = (*Source)(nil)

// New returns a Source; it does not contact Vault.
func New(cfg Config) (*Source, error) {
	if cfg.Client == nil {
		return nil, errors.New("vaulttransit: Config.Client is required")
	}
	if cfg.Mount == "" {
		cfg.Mount = DefaultMount
	}
	if cfg.Key == "" {
		cfg.Key = DefaultKey
	}
	if len(cfg.Key) > maxKeyNameLen || !token.ValidKeyID(cfg.Key) {
		return nil, fmt.Errorf("vaulttransit: key name %q must be 1 to %d letters, digits, '-' or '_'", cfg.Key, maxKeyNameLen)
	}
	return &Source{c: cfg.Client, mount: strings.Trim(cfg.Mount, "/"), key: cfg.Key}, nil
}

// Sign signs data with the latest version of the key (pure Ed25519, not
// prehashed) and returns that version's key id.
func (s *Source) Sign(ctx context.Context, data []byte) (kid string, sig []byte, err error) {
	path := s.mount + "/sign/" + s.key
	sec, err := s.c.Logical().WriteWithContext(ctx, path, map[string]any{
		"input":     base64.StdEncoding.EncodeToString(data),
		"prehashed": false,
	})
	if err != nil {
		return "", nil, fmt.Errorf("vaulttransit: sign with %s: %w", path, err)
	}
	if sec == nil {
		return "", nil, fmt.Errorf("vaulttransit: sign with %s: empty answer", path)
	}
	raw, _ := sec.Data["signature"].(string)
	version, sig, err := parseSignature(raw)
	if err != nil {
		return "", nil, fmt.Errorf("vaulttransit: sign with %s: %w", path, err)
	}
	if len(sig) != ed25519.SignatureSize {
		return "", nil, fmt.Errorf("vaulttransit: sign with %s: a %d-byte signature: the key is not of type ed25519", path, len(sig))
	}
	return s.kid(version), sig, nil
}

// PublicKeys returns the public key of every version of the key that may
// still verify: those at or above min_decryption_version.
func (s *Source) PublicKeys(ctx context.Context) (map[string]ed25519.PublicKey, error) {
	path := s.mount + "/keys/" + s.key
	sec, err := s.c.Logical().ReadWithContext(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("vaulttransit: read %s: %w", path, err)
	}
	if sec == nil || sec.Data == nil {
		// Vault answers 404 for a missing key and for a path under no
		// mount alike.
		return nil, fmt.Errorf("vaulttransit: read %s: no such key, or no transit engine mounted at %s (vault write %s type=ed25519)",
			path, s.mount, path)
	}
	if typ, _ := sec.Data["type"].(string); typ != "ed25519" {
		return nil, fmt.Errorf("vaulttransit: %s is of type %q, want ed25519", path, typ)
	}
	minVersion := 1
	if n, err := number(sec.Data["min_decryption_version"]); err == nil && n > minVersion {
		minVersion = n
	}
	versions, ok := sec.Data["keys"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("vaulttransit: read %s: no key versions in the answer", path)
	}
	out := make(map[string]ed25519.PublicKey, len(versions))
	for v, raw := range versions {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("vaulttransit: read %s: key version %q", path, v)
		}
		if n < minVersion {
			continue
		}
		entry, _ := raw.(map[string]any)
		b64, _ := entry["public_key"].(string)
		pub, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("vaulttransit: read %s: version %d has no Ed25519 public key", path, n)
		}
		out[s.kid(n)] = ed25519.PublicKey(pub)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("vaulttransit: read %s: no usable key version", path)
	}
	return out, nil
}

// Rotate makes a new version of the key current and returns its key id;
// the versions before still verify. Operators may rotate in Vault
// instead (vault write -f transit/keys/<key>/rotate): it is the same.
func (s *Source) Rotate(ctx context.Context) (kid string, err error) {
	path := s.mount + "/keys/" + s.key + "/rotate"
	sec, err := s.c.Logical().WriteWithContext(ctx, path, nil)
	if err != nil {
		return "", fmt.Errorf("vaulttransit: rotate %s: %w", path, err)
	}
	if sec == nil {
		// Older Vaults answer 204: read the new version.
		if sec, err = s.c.Logical().ReadWithContext(ctx, s.mount+"/keys/"+s.key); err != nil || sec == nil {
			return "", fmt.Errorf("vaulttransit: rotate %s: read the key: %w", path, err)
		}
	}
	n, err := number(sec.Data["latest_version"])
	if err != nil {
		return "", fmt.Errorf("vaulttransit: rotate %s: latest_version: %w", path, err)
	}
	return s.kid(n), nil
}

func (s *Source) kid(version int) string { return s.key + "-v" + strconv.Itoa(version) }

// parseSignature splits Vault's "vault:v<version>:<base64 signature>".
func parseSignature(s string) (version int, sig []byte, err error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 || parts[0] != "vault" || !strings.HasPrefix(parts[1], "v") {
		return 0, nil, fmt.Errorf("malformed signature %q", truncate(s))
	}
	version, err = strconv.Atoi(parts[1][1:])
	if err != nil || version < 1 {
		return 0, nil, fmt.Errorf("malformed key version in signature %q", truncate(s))
	}
	sig, err = base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		return 0, nil, fmt.Errorf("signature is not base64: %w", err)
	}
	return version, sig, nil
}

// number reads a JSON number as vault/api decodes it.
func number(v any) (int, error) {
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		return int(n), err
	case float64:
		return int(x), nil
	case int:
		return x, nil
	}
	return 0, fmt.Errorf("not a number: %v", v)
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
