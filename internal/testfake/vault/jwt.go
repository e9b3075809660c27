package vault

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// NomadAudience is the audience Nomad's default Vault workload identity
// carries.
const NomadAudience = "vault.io"

// Issuer signs JWTs as Nomad signs workload identities (RS256 under a
// key id), for tests of the jwt auth method: Vault is configured with
// PublicKeyPEM in jwt_validation_pubkeys.
type Issuer struct {
	key *rsa.PrivateKey
	kid string
}

// NewIssuer makes an issuer with a new RSA key.
func NewIssuer(tb testing.TB) *Issuer {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	return &Issuer{key: k, kid: randomString(12, alnum)}
}

// PublicKeyPEM is the verification key, PEM-encoded.
func (i *Issuer) PublicKeyPEM() string {
	der, err := x509.MarshalPKIXPublicKey(&i.key.PublicKey)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Sign returns claims signed.
func (i *Issuer) Sign(tb testing.TB, claims jwt.MapClaims) string {
	tb.Helper()
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = i.kid
	s, err := t.SignedString(i.key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// NomadClaims are the claims of a Nomad workload identity for a task of
// job in the default namespace, valid for ttl.
func NomadClaims(job, task string, ttl time.Duration) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"aud":                 []string{NomadAudience},
		"sub":                 "global:default:" + job + ":" + task + ":" + task + ":default",
		"nomad_namespace":     "default",
		"nomad_job_id":        job,
		"nomad_task":          task,
		"nomad_allocation_id": randomID(),
		"iat":                 now.Unix(),
		"nbf":                 now.Unix(),
		"exp":                 now.Add(ttl).Unix(),
	}
}
