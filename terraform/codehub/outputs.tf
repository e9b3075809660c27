output "gateway_url" {
  description = "Where the team opens codehub."
  value       = var.gateway_url
}

output "gateway_nomad_policy" {
  description = "The Nomad ACL policy the gateway's job carries through its workload identity."
  value       = nomad_acl_policy.gateway.name
}

output "gateway_consul_token_accessor" {
  description = "Accessor of the gateway's Consul token."
  value       = consul_acl_token.gateway.id
}

output "gateway_vault_role" {
  description = "The Vault JWT role the gateway's job logs in with (Nomad 1.7 and later), or the token role its token is made from (Nomad 1.6)."
  value       = var.nomad_workload_identity ? "${vault_jwt_auth_backend.nomad[0].path}/${vault_jwt_auth_backend_role.gateway[0].role_name}" : "auth/token/roles/${vault_token_auth_backend_role.nomad_cluster[0].role_name}"
}

output "gateway_job_file" {
  description = "The variant of the gateway job registered for this Nomad version."
  value       = local.gateway_job_file
}
