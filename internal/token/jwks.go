package token

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// jwk is one public key of a JSON Web Key Set (RFC 7517, RFC 8037).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKS returns the public keys that verify access tokens as a JSON Web Key
// Set ({"keys": [...]}, sorted by kid), for other services to verify
// tokens. The keys are fetched again if the last fetch is older than
// KeyRefreshMin; if that fails, the keys already held are served, and only
// when there are none is the error returned.
func (s *Service) JWKS(ctx context.Context) ([]byte, error) {
	err := s.refresh(ctx, false)
	s.mu.Lock()
	set := struct {
		Keys []jwk `json:"keys"`
	}{Keys: make([]jwk, 0, len(s.keys))}
	for kid, k := range s.keys {
		set.Keys = append(set.Keys, jwk{
			Kty: "OKP",
			Crv: "Ed25519",
			X:   base64.RawURLEncoding.EncodeToString(k),
			Kid: kid,
			Alg: algEdDSA,
			Use: "sig",
		})
	}
	fetched := s.keys != nil
	s.mu.Unlock()
	if !fetched && err != nil {
		return nil, fmt.Errorf("fetch public keys: %w", err)
	}
	slices.SortFunc(set.Keys, func(a, b jwk) int { return strings.Compare(a.Kid, b.Kid) })
	return json.Marshal(set)
}
