# Vault policy "codehub-gateway": what one codehub gateway may do in Vault,
# and nothing else. Attached to the token the gateway gets from the JWT
# auth role "codehub-gateway" (Nomad workload identity of the job
# "codehub-gateway"; see terraform/codehub/vault.tf), which is created with
# token_no_default_policy, so Vault's "default" policy adds nothing.
#
# Mount and key names are codehub's defaults (vault.transit.mount/key,
# vault.database.mount/role, vault.audit.mount/path); change them here too
# if you change them there. Workspaces get no Vault token at all.

# Sign access tokens (JWTs) with the Ed25519 transit key: the private key
# never leaves Vault. Exact path: the "/<hash_algorithm>" variants are not
# needed for Ed25519, and other keys of the mount are not ours.
path "transit/sign/codehub-jwt" {
  capabilities = ["update"]
}

# Read the key's public halves, every version, to verify tokens without a
# round trip and to serve them as a JWKS. "read" on this path shows public
# keys only; exporting private keys is another path (transit/export),
# which this policy does not grant, and the key is created non-exportable.
path "transit/keys/codehub-jwt" {
  capabilities = ["read"]
}

# The audit log's HMAC keys (vault.audit): read them at start and every
# minute, create them on the first start, add one on `codehub audit
# rotate-key` (a check-and-set write). Only this secret of the KV mount:
# "read" here gives the keys themselves, so nothing else should have it.
path "secret/data/codehub/audit-keys" {
  capabilities = ["create", "read", "update"]
}

# Short-lived PostgreSQL credentials for codehub's database role. Not
# database/creds/* : other applications' roles on the same mount stay out
# of reach.
path "database/creds/codehub" {
  capabilities = ["read"]
}

# Renew the lease of those credentials before it expires, so that pooled
# connections keep working (vault/api's LifetimeWatcher calls this path).
# Vault cannot scope it by lease when the lease id travels in the request
# body; lease ids are unguessable, and renewing only extends a lease up to
# the role's max_ttl.
path "sys/leases/renew" {
  capabilities = ["update"]
}

# The gateway's own token: look it up (its TTL, to schedule renewal) and
# renew it (the token is periodic). Nothing about other tokens.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
