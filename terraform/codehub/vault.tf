# Vault: what the gateway uses, and how it logs in. Mount, key and role
# names are codehub's defaults (vault.transit.*, vault.database.*,
# vault.audit.*, vault.auth.mount) and are written into policies/codehub-gateway.vault.hcl:
# change them in all three places or nowhere.

# Every request to Vault, the gateway's included, is logged (HMAC'd).
resource "vault_audit" "file" {
  type        = "file"
  description = "Audit log on each server"

  options = {
    file_path = "/opt/vault/audit.log"
  }
}

# Access tokens are signed by an Ed25519 key that never leaves Vault.
resource "vault_mount" "transit" {
  path        = "transit"
  type        = "transit"
  description = "codehub: signs access tokens"
}

resource "vault_transit_secret_backend_key" "jwt" {
  backend                = vault_mount.transit.path
  name                   = "codehub-jwt"
  type                   = "ed25519"
  exportable             = false
  allow_plaintext_backup = false
  deletion_allowed       = false
  auto_rotate_period     = var.jwt_key_rotation_seconds
}

# The audit log's HMAC keys, outside the logs: the gateways create them
# at codehub/audit-keys on their first start.
resource "vault_mount" "kv" {
  path        = "secret"
  type        = "kv"
  options     = { version = "2" }
  description = "codehub: the audit log's keys"
}

# PostgreSQL credentials made per gateway, expiring on their own.
resource "vault_database_secrets_mount" "db" {
  path        = "database"
  description = "codehub: PostgreSQL credentials"

  postgresql {
    name              = "codehub"
    connection_url    = "postgresql://{{username}}:{{password}}@${var.postgres_host}:${var.postgres_port}/${var.postgres_database}?sslmode=${var.postgres_sslmode}"
    username          = var.postgres_username
    password          = var.postgres_password
    verify_connection = true
    allowed_roles     = ["codehub"]
  }
}

resource "vault_database_secret_backend_role" "codehub" {
  backend = vault_database_secrets_mount.db.path
  name    = "codehub"
  db_name = vault_database_secrets_mount.db.postgresql[0].name

  # A member of the owner role, acting as it: the tables codehub's
  # migrations create belong to the owner role, not to this short-lived one.
  creation_statements = [
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE \"${var.postgres_owner_role}\";",
    "ALTER ROLE \"{{name}}\" SET role = '${var.postgres_owner_role}';",
  ]
  revocation_statements = [
    "DROP ROLE IF EXISTS \"{{name}}\";",
  ]

  default_ttl = var.db_credentials_ttl
  max_ttl     = var.db_credentials_max_ttl
}

# Nomad 1.7 and later: workload identities log in here, and Nomad gives a
# task with a vault block a token of the role its job may use.
resource "vault_jwt_auth_backend" "nomad" {
  count = var.nomad_workload_identity ? 1 : 0

  path               = "jwt-nomad"
  type               = "jwt"
  description        = "Nomad workload identities"
  jwks_url           = var.nomad_jwks_url
  jwks_ca_pem        = file(var.ca_file)
  jwt_supported_algs = ["RS256", "EdDSA"]
  default_role       = "codehub-gateway"
}

resource "vault_policy" "gateway" {
  name   = "codehub-gateway"
  policy = file("${path.module}/../../policies/codehub-gateway.vault.hcl")
}

# Only the job codehub-gateway in codehub's namespace gets this role:
# workspaces (job codehub-workspace) cannot log in with it.
resource "vault_jwt_auth_backend_role" "gateway" {
  count = var.nomad_workload_identity ? 1 : 0

  backend         = vault_jwt_auth_backend.nomad[0].path
  role_name       = "codehub-gateway"
  role_type       = "jwt"
  bound_audiences = ["vault.io"]

  bound_claims = {
    nomad_namespace = var.nomad_namespace
    nomad_job_id    = "codehub-gateway"
  }

  user_claim              = "/nomad_job_id"
  user_claim_json_pointer = true

  claim_mappings = {
    nomad_namespace = "nomad_namespace"
    nomad_job_id    = "nomad_job_id"
    nomad_task      = "nomad_task"
  }

  # A periodic service token, renewed by Nomad while the task runs and
  # revoked when it stops; no "default" policy on top of ours.
  token_type              = "service"
  token_policies          = [vault_policy.gateway.name]
  token_no_default_policy = true
  token_period            = 1800
  token_explicit_max_ttl  = 0
}

# Nomad 1.6 (var.nomad_workload_identity = false): the Nomad servers hold a
# Vault token of the policy below and create the gateway's token from the
# role nomad-cluster, which may give only the gateway's policy; Nomad
# renews it while the task runs and revokes it when it stops. The servers'
# token is made by hand after this stage (README.md: it must not be in this
# state).
resource "vault_policy" "nomad_server" {
  count = var.nomad_workload_identity ? 0 : 1

  name   = "nomad-server"
  policy = <<-EOT
    # Create the tasks' tokens from the role nomad-cluster, and look them up,
    # renew and revoke them.
    path "auth/token/create/nomad-cluster" {
      capabilities = ["update"]
    }
    path "auth/token/roles/nomad-cluster" {
      capabilities = ["read"]
    }
    path "auth/token/lookup-self" {
      capabilities = ["read"]
    }
    path "auth/token/lookup" {
      capabilities = ["update"]
    }
    path "auth/token/revoke-accessor" {
      capabilities = ["update"]
    }
    path "sys/capabilities-self" {
      capabilities = ["update"]
    }
    path "auth/token/renew-self" {
      capabilities = ["update"]
    }
  EOT
}

resource "vault_token_auth_backend_role" "nomad_cluster" {
  count = var.nomad_workload_identity ? 0 : 1

  role_name              = "nomad-cluster"
  allowed_policies       = [vault_policy.gateway.name]
  disallowed_policies    = ["nomad-server"]
  orphan                 = true
  token_period           = 1800
  token_explicit_max_ttl = 0
  renewable              = true
}
