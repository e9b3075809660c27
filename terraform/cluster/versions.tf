# Stage 1 of 2: the machines. A Nomad + Consul + Vault cluster on AWS:
# servers running all three, clients running Nomad workloads (the gateway
# and the workspaces), and a load balancer in front of the gateway.
# Stage 2 (../codehub) configures what runs on it.

terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.70"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project = "codehub"
      Cluster = var.name
    }
  }
}
