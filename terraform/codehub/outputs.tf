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
  description = "The Vault JWT role the gateway's job logs in with."
  value       = "${vault_jwt_auth_backend.nomad.path}/${vault_jwt_auth_backend_role.gateway.role_name}"
}
