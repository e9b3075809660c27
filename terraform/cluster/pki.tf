# A private CA for the cluster's TLS: Nomad (HTTP and RPC, mutual TLS),
# Consul (RPC, HTTPS) and Vault. Every key here is kept in the Terraform
# state and in the machines' user data: keep the state encrypted and
# access-controlled (README.md), and replace this with your own PKI (or
# Vault's) when you have one.

resource "tls_private_key" "ca" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_self_signed_cert" "ca" {
  private_key_pem       = tls_private_key.ca.private_key_pem
  is_ca_certificate     = true
  validity_period_hours = 5 * 365 * 24
  allowed_uses          = ["cert_signing", "crl_signing"]

  subject {
    common_name  = "${var.name} cluster CA"
    organization = "codehub"
  }
}

# Servers: the names Nomad and Consul check (server.<region>.nomad,
# server.<datacenter>.consul), the service names clients dial through
# Consul DNS, and the addresses operators dial.
resource "tls_private_key" "server" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "server" {
  private_key_pem = tls_private_key.server.private_key_pem

  subject {
    common_name = "server.${var.nomad_region}.nomad"
  }

  dns_names = [
    "server.${var.nomad_region}.nomad",
    "server.${var.datacenter}.consul",
    "nomad.service.consul",
    "vault.service.consul",
    "active.vault.service.consul",
    "localhost",
  ]
  ip_addresses = concat(local.server_ips, aws_eip.server[*].public_ip, ["127.0.0.1"])
}

resource "tls_locally_signed_cert" "server" {
  cert_request_pem      = tls_cert_request.server.cert_request_pem
  ca_private_key_pem    = tls_private_key.ca.private_key_pem
  ca_cert_pem           = tls_self_signed_cert.ca.cert_pem
  validity_period_hours = 365 * 24
  allowed_uses          = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]
}

# Clients: Nomad clients serve HTTP too (the gateway calls its local
# agent), and present this certificate to the servers.
resource "tls_private_key" "client" {
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "client" {
  private_key_pem = tls_private_key.client.private_key_pem

  subject {
    common_name = "client.${var.nomad_region}.nomad"
  }

  dns_names    = ["client.${var.nomad_region}.nomad", "localhost"]
  ip_addresses = ["127.0.0.1"]
}

resource "tls_locally_signed_cert" "client" {
  cert_request_pem      = tls_cert_request.client.cert_request_pem
  ca_private_key_pem    = tls_private_key.ca.private_key_pem
  ca_cert_pem           = tls_self_signed_cert.ca.cert_pem
  validity_period_hours = 365 * 24
  allowed_uses          = ["digital_signature", "key_encipherment", "server_auth", "client_auth"]
}
