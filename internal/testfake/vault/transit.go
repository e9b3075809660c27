package vault

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// key is a transit key: Ed25519 only, the type codehub signs with.
type key struct {
	name     string
	versions map[int]keyVersion // from 1
	latest   int
	minDecrypt,
	minEncrypt int
}

type keyVersion struct {
	priv    ed25519.PrivateKey
	created time.Time
}

func (k *key) rotate() {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	k.latest++
	k.versions[k.latest] = keyVersion{priv: priv, created: time.Now()}
}

// data is the key as transit/keys/<name> reads it: the versions below
// min_decryption_version are archived, out of "keys".
func (k *key) data() map[string]any {
	keys := map[string]any{}
	for v, kv := range k.versions {
		if v < k.minDecrypt {
			continue
		}
		keys[strconv.Itoa(v)] = map[string]any{
			"name":              "ed25519",
			"public_key":        base64.StdEncoding.EncodeToString(kv.priv.Public().(ed25519.PublicKey)),
			"creation_time":     kv.created.Format(time.RFC3339Nano),
			"certificate_chain": "",
		}
	}
	return map[string]any{
		"name": k.name, "type": "ed25519", "keys": keys,
		"latest_version": k.latest, "min_decryption_version": k.minDecrypt,
		"min_encryption_version": k.minEncrypt, "min_available_version": 0,
		"deletion_allowed": false, "derived": false, "exportable": false, "allow_plaintext_backup": false,
		"supports_encryption": false, "supports_decryption": false, "supports_derivation": true,
		"supports_signing": true, "imported_key": false, "auto_rotate_period": 0,
	}
}

func (s *Server) routeTransit(r *request, mount, rest string) (result, error) {
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 2 && parts[0] == "keys":
		return s.transitKey(r, mount, parts[1])
	case len(parts) == 3 && parts[0] == "keys" && parts[2] == "rotate":
		if !r.write() {
			return nil, errUnsupported
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		k, ok := s.transit[mount][parts[1]]
		if !ok {
			return nil, errorf(http.StatusBadRequest, "key not found")
		}
		k.rotate()
		return &api.Secret{Data: k.data()}, nil
	case len(parts) == 3 && parts[0] == "keys" && parts[2] == "config":
		return s.transitConfig(r, mount, parts[1])
	case (len(parts) == 2 || len(parts) == 3) && parts[0] == "sign":
		if !r.write() {
			return nil, errUnsupported
		}
		return s.transitSign(r, mount, parts[1])
	}
	return nil, errUnsupportedPath
}

func (s *Server) transitKey(r *request, mount, name string) (result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := s.transit[mount]
	k, ok := keys[name]
	switch {
	case r.write():
		if t := str(r.body["type"]); t != "ed25519" {
			return nil, errorf(http.StatusBadRequest, "the fake supports key type ed25519 only, got %q", t)
		}
		if !ok {
			k = &key{name: name, versions: map[int]keyVersion{}, minDecrypt: 1}
			k.rotate()
			keys[name] = k
		}
		return &api.Secret{Data: k.data()}, nil
	case r.method == http.MethodGet:
		if !ok {
			return nil, &apiError{status: http.StatusNotFound}
		}
		return &api.Secret{Data: k.data()}, nil
	case r.method == http.MethodDelete:
		return nil, errorf(http.StatusBadRequest, "deletion is not allowed for this key")
	}
	return nil, errUnsupported
}

func (s *Server) transitConfig(r *request, mount, name string) (result, error) {
	if !r.write() {
		return nil, errUnsupported
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.transit[mount][name]
	if !ok {
		return nil, errorf(http.StatusBadRequest, "no existing key named %s could be found", name)
	}
	if v := str(r.body["min_decryption_version"]); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > k.latest {
			return nil, errorf(http.StatusBadRequest, "cannot set min decryption version of %s, latest key version is %d", v, k.latest)
		}
		k.minDecrypt = max(n, 1)
	}
	if v := str(r.body["min_encryption_version"]); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > k.latest {
			return nil, errorf(http.StatusBadRequest, "invalid min_encryption_version %s", v)
		}
		k.minEncrypt = n
	}
	return &api.Secret{Data: k.data()}, nil
}

func (s *Server) transitSign(r *request, mount, name string) (result, error) {
	in, err := base64.StdEncoding.DecodeString(str(r.body["input"]))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "unable to decode input as base64: %v", err)
	}
	if boolean(r.body["prehashed"], false) {
		return nil, errorf(http.StatusBadRequest, "the fake signs pure Ed25519 only: prehashed must be false")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.transit[mount][name]
	if !ok {
		return nil, errorf(http.StatusBadRequest, "signing key not found")
	}
	ver := k.latest
	if v := str(r.body["key_version"]); v != "" && v != "0" {
		if ver, err = strconv.Atoi(v); err != nil {
			return nil, errorf(http.StatusBadRequest, "invalid key_version %q", v)
		}
	}
	if ver < max(k.minEncrypt, 1) || ver > k.latest {
		return nil, errorf(http.StatusBadRequest, "requested version for signing is less than the minimum encryption key version or greater than the latest")
	}
	sig := ed25519.Sign(k.versions[ver].priv, in)
	return &api.Secret{Data: map[string]any{
		"signature":   fmt.Sprintf("vault:v%d:%s", ver, base64.StdEncoding.EncodeToString(sig)),
		"key_version": ver,
	}}, nil
}
