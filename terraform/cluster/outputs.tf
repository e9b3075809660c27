output "gateway_url" {
  description = "Where the team opens codehub (point your DNS name at it, matching the certificate)."
  value       = "${local.https ? "https" : "http"}://${aws_lb.gateway.dns_name}/"
}

output "nomad_addr" {
  description = "NOMAD_ADDR for the operator and for stage 2."
  value       = "https://${aws_eip.server[0].public_ip}:4646"
}

output "consul_addr" {
  description = "CONSUL_HTTP_ADDR (HTTPS) for the operator and for stage 2."
  value       = "${aws_eip.server[0].public_ip}:8501"
}

output "vault_addr" {
  description = "VAULT_ADDR for the operator and for stage 2."
  value       = "https://${aws_eip.server[0].public_ip}:8200"
}

output "ca_cert_pem" {
  description = "The cluster CA: save it (terraform output -raw ca_cert_pem > ca.pem) for NOMAD_CACERT, CONSUL_CACERT, VAULT_CACERT."
  value       = tls_self_signed_cert.ca.cert_pem
}

output "consul_management_token" {
  description = "Consul's management token (CONSUL_HTTP_TOKEN for stage 2)."
  value       = random_uuid.consul_management.result
  sensitive   = true
}

output "server_private_ips" {
  description = "The servers' private addresses."
  value       = local.server_ips
}

output "datacenter" {
  description = "Consul and Nomad datacenter."
  value       = var.datacenter
}

output "nomad_region" {
  description = "Nomad region."
  value       = var.nomad_region
}
