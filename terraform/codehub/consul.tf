# Consul: the gateway's token, and the auth method through which Nomad
# registers services (the workspaces', the gateway's) with workload
# identities instead of a shared token.

resource "consul_acl_policy" "gateway" {
  name        = "codehub-gateway"
  description = "codehub gateway: find workspaces, register itself"
  rules       = file("${path.module}/../../policies/codehub-gateway.consul-acl.hcl")
}

resource "consul_acl_token" "gateway" {
  description = "codehub gateway"
  policies    = [consul_acl_policy.gateway.name]
  local       = false
}

data "consul_acl_token_secret_id" "gateway" {
  accessor_id = consul_acl_token.gateway.id
}

# Nomad 1.7 and later only: Nomad 1.6 registers services with its agents'
# token (../cluster, var.nomad_workload_identity).
resource "consul_acl_auth_method" "nomad" {
  count = var.nomad_workload_identity ? 1 : 0

  name          = "nomad-workloads"
  type          = "jwt"
  display_name  = "Nomad workloads"
  description   = "Nomad services register themselves with their workload identity"
  max_token_ttl = "1h"

  config_json = jsonencode({
    JWKSURL          = var.nomad_jwks_url
    JWKSCACert       = file(var.ca_file)
    JWTSupportedAlgs = ["RS256"]
    BoundAudiences   = ["consul.io"]
    ClaimMappings = {
      nomad_namespace = "nomad_namespace"
      nomad_job_id    = "nomad_job_id"
      nomad_task      = "nomad_task"
      nomad_service   = "nomad_service"
    }
  })
}

# A service's identity may write that service and nothing else.
resource "consul_acl_binding_rule" "services" {
  count = var.nomad_workload_identity ? 1 : 0

  auth_method = consul_acl_auth_method.nomad[0].name
  description = "Nomad services: the service named in the identity"
  selector    = "\"nomad_service\" in value"
  bind_type   = "service"
  bind_name   = "$${value.nomad_service}"
}
