# From ../cluster's outputs.

variable "nomad_addr" {
  description = "Nomad API (../cluster output nomad_addr)."
  type        = string
}

variable "consul_addr" {
  description = "Consul HTTPS API, host:port (../cluster output consul_addr)."
  type        = string
}

variable "vault_addr" {
  description = "Vault API (../cluster output vault_addr)."
  type        = string
}

variable "ca_file" {
  description = "The cluster CA certificate file (../cluster output ca_cert_pem, saved)."
  type        = string
}

variable "gateway_url" {
  description = "Where the team opens codehub (../cluster output gateway_url, or your DNS name for it)."
  type        = string
}

variable "datacenter" {
  description = "Consul and Nomad datacenter."
  type        = string
  default     = "dc1"
}

variable "nomad_region" {
  description = "Nomad region."
  type        = string
  default     = "global"
}

variable "nomad_namespace" {
  description = "Nomad namespace of codehub's jobs (codehub's nomad.namespace; the label in policies/codehub-gateway.nomad-acl.hcl)."
  type        = string
  default     = "default"
}

variable "nomad_workload_identity" {
  description = "As in ../cluster: true for Nomad 1.7 and later (Vault and Consul through workload identities, jobs/gateway.nomad.hcl), false for Nomad 1.6 (a Vault token role for the servers, jobs/gateway-vault-token.nomad.hcl)."
  type        = bool
  default     = true
}

variable "nomad_jwks_url" {
  description = "Where Vault and Consul fetch the keys that sign Nomad workload identities."
  type        = string
  default     = "https://nomad.service.consul:4646/.well-known/jwks.json"
}

# The PostgreSQL database codehub keeps its users and sessions in. Not made
# here: bring your own (RDS, or any PostgreSQL the Vault servers and the
# clients reach).

variable "redis_password" {
  description = "Password of the Redis that keeps the gateways' sessions (the service \"redis\" in Consul), from TF_VAR_redis_password; empty when it has none. The gateway's template reads it from the Nomad variable nomad/jobs/codehub-gateway."
  type        = string
  default     = ""
  sensitive   = true
}

variable "postgres_host" {
  description = "PostgreSQL host, as the Vault servers reach it."
  type        = string
}

variable "postgres_port" {
  description = "PostgreSQL port."
  type        = number
  default     = 5432
}

variable "postgres_database" {
  description = "Database codehub uses."
  type        = string
  default     = "codehub"
}

variable "postgres_sslmode" {
  description = "libpq sslmode of Vault's connection (verify-full wants the server's CA trusted on the Vault servers)."
  type        = string
  default     = "require"
}

variable "postgres_username" {
  description = "The PostgreSQL role Vault creates codehub's short-lived roles with (CREATEROLE, and ADMIN OPTION on postgres_owner_role). Rotate its password with `vault write -f database/rotate-root/codehub` after the first apply."
  type        = string
}

variable "postgres_password" {
  description = "Its password (from TF_VAR_postgres_password, not a file)."
  type        = string
  sensitive   = true
}

variable "postgres_owner_role" {
  description = "A NOLOGIN PostgreSQL role that owns codehub's tables: every short-lived role is a member and acts as it, so that tables outlive the role that created them."
  type        = string
  default     = "codehub_owner"
}

variable "db_credentials_ttl" {
  description = "Lifetime of the gateway's database credentials, in seconds, renewable up to db_credentials_max_ttl."
  type        = number
  default     = 3600
}

variable "db_credentials_max_ttl" {
  description = "Longest life of one set of database credentials, in seconds: then the gateway takes new ones."
  type        = number
  default     = 86400
}

variable "jwt_key_rotation_seconds" {
  description = "Vault rotates the token-signing key this often (old versions still verify)."
  type        = number
  default     = 30 * 24 * 3600
}

variable "warm_pool" {
  description = "Register the warm pool job (jobs/warm-pool.nomad.hcl)."
  type        = bool
  default     = true
}

variable "gateway_job_vars" {
  description = "HCL2 variables for jobs/gateway.nomad.hcl (each must be declared there)."
  type        = map(string)
  default     = {}
}

variable "workspace_job_vars" {
  description = "HCL2 variables for jobs/workspace.nomad.hcl."
  type        = map(string)
  default     = {}
}

variable "warm_pool_job_vars" {
  description = "HCL2 variables for jobs/warm-pool.nomad.hcl."
  type        = map(string)
  default     = {}
}
