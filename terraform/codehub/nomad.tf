# Nomad: the gateway's ACL policy, attached to its job so that the job's
# workload identity carries it (the task's NOMAD_TOKEN, with
# identity { env = true } in jobs/gateway.nomad.hcl; Nomad 1.5 and later):
# no long-lived Nomad token exists for the gateway, in Nomad or in this
# state. Then the jobs.

resource "nomad_acl_policy" "gateway" {
  name        = "codehub-gateway"
  description = "codehub gateway: dispatch, follow and stop workspaces"
  rules_hcl   = file("${path.module}/../../policies/codehub-gateway.nomad-acl.hcl")

  job_acl {
    namespace = var.nomad_namespace
    job_id    = "codehub-gateway"
  }

  lifecycle {
    precondition {
      condition     = strcontains(file("${path.module}/../../policies/codehub-gateway.nomad-acl.hcl"), "namespace \"${var.nomad_namespace}\"")
      error_message = "policies/codehub-gateway.nomad-acl.hcl must grant in var.nomad_namespace, where the jobs run."
    }
  }
}

# nomad/jobs/codehub-gateway is readable by the tasks of the job
# codehub-gateway and by no other job (Nomad's implicit workload policy):
# the gateway's template reads its Consul token and the cluster CA here.
resource "nomad_variable" "gateway" {
  path      = "nomad/jobs/codehub-gateway"
  namespace = var.nomad_namespace

  items = {
    consul_token   = data.consul_acl_token_secret_id.gateway.secret_id
    ca_pem         = file(var.ca_file)
    redis_password = var.redis_password
    gateway_url    = var.gateway_url
  }
}

# The gateway job's variant for the cluster's Nomad (jobs/gateway.nomad.hcl
# explains both).
locals {
  gateway_job_file = var.nomad_workload_identity ? "gateway.nomad.hcl" : "gateway-vault-token.nomad.hcl"
  gateway_jobspec = (var.nomad_workload_identity
    ? file("${path.module}/../../jobs/gateway.nomad.hcl")
  : file("${path.module}/../../jobs/gateway-vault-token.nomad.hcl"))
}

# The parameterized workspace job, a template the gateway copies per
# isolation policy (codehub-workspace-<policy>) and dispatches.
resource "nomad_job" "workspace" {
  jobspec          = file("${path.module}/../../jobs/workspace.nomad.hcl")
  purge_on_destroy = true

  hcl2 {
    vars = var.workspace_job_vars
  }
}

resource "nomad_job" "warm_pool" {
  count = var.warm_pool ? 1 : 0

  jobspec          = file("${path.module}/../../jobs/warm-pool.nomad.hcl")
  purge_on_destroy = true

  hcl2 {
    vars = var.warm_pool_job_vars
  }
}

# The gateway last: everything it logs in to or dispatches exists by then.
resource "nomad_job" "gateway" {
  jobspec = local.gateway_jobspec
  detach  = false

  hcl2 {
    vars = var.gateway_job_vars
  }

  depends_on = [
    nomad_acl_policy.gateway,
    nomad_variable.gateway,
    nomad_job.workspace,
    nomad_job.warm_pool,
    vault_jwt_auth_backend_role.gateway,
    vault_token_auth_backend_role.nomad_cluster,
    vault_transit_secret_backend_key.jwt,
    vault_database_secret_backend_role.codehub,
    consul_acl_binding_rule.services,
  ]
}
