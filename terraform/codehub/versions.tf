# Stage 2 of 2: codehub on the cluster of ../cluster. Vault (transit key,
# database credentials, Nomad workload identity login, the gateway's
# policy), Consul (the gateway's ACL token, Nomad workload identities),
# Nomad (the gateway's ACL token, the jobs).
#
# Credentials come from the environment, never from files in this
# directory: NOMAD_TOKEN, CONSUL_HTTP_TOKEN, VAULT_TOKEN (README.md).

terraform {
  required_version = ">= 1.6"

  required_providers {
    nomad = {
      source  = "hashicorp/nomad"
      version = "~> 2.5"
    }
    consul = {
      source  = "hashicorp/consul"
      version = "~> 2.21"
    }
    vault = {
      source  = "hashicorp/vault"
      version = ">= 4.5, < 6.0"
    }
  }
}

provider "nomad" {
  address = var.nomad_addr
  region  = var.nomad_region
  ca_file = var.ca_file
}

provider "consul" {
  address    = var.consul_addr
  scheme     = "https"
  ca_file    = var.ca_file
  datacenter = var.datacenter
}

provider "vault" {
  address      = var.vault_addr
  ca_cert_file = var.ca_file
}
