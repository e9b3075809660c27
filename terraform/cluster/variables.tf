variable "region" {
  description = "AWS region to build the cluster in, e.g. \"eu-central-1\"."
  type        = string
}

variable "name" {
  description = "Name of the cluster: prefixes every resource."
  type        = string
  default     = "codehub"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name: 2 to 21 lower-case letters, digits and '-', starting with a letter."
  }
}

variable "admin_cidrs" {
  description = "Networks operators reach the Nomad, Consul and Vault APIs and SSH from. Nothing else can."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "admin_cidrs: give at least one network, and not 0.0.0.0/0."
  }
}

variable "gateway_cidrs" {
  description = "Networks the team reaches the codehub gateway (the load balancer) from."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "server_count" {
  description = "Servers (Nomad, Consul and Vault on each): 3 or 5 tolerate one or two failures."
  type        = number
  default     = 3

  validation {
    condition     = contains([1, 3, 5], var.server_count)
    error_message = "server_count: 1 (no failure tolerated), 3 or 5."
  }
}

variable "client_count" {
  description = "Nomad clients: they run the gateway and the workspaces."
  type        = number
  default     = 2

  validation {
    condition     = var.client_count >= 1
    error_message = "client_count: at least 1."
  }
}

variable "server_instance_type" {
  description = "Instance type of the servers."
  type        = string
  default     = "t3.medium"
}

variable "client_instance_type" {
  description = "Instance type of the clients: size it for the workspaces' isolation policies."
  type        = string
  default     = "m6i.2xlarge"
}

variable "client_disk_gb" {
  description = "Root disk of each client, in GB: holds the images and the workspaces' homes."
  type        = number
  default     = 200
}

variable "image_name" {
  description = "Name pattern of the machine image (AMI). Any Debian or Ubuntu image with cloud-init and systemd works: the HashiCorp tools come from apt.releases.hashicorp.com."
  type        = string
  default     = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
}

variable "image_owner" {
  description = "Account that publishes the image (099720109477: Canonical)."
  type        = string
  default     = "099720109477"
}

variable "ssh_key_name" {
  description = "EC2 key pair for SSH to the machines; null: no SSH key."
  type        = string
  default     = null
}

variable "vpc_cidr" {
  description = "Address range of the VPC."
  type        = string
  default     = "10.20.0.0/16"
}

variable "datacenter" {
  description = "Consul and Nomad datacenter name."
  type        = string
  default     = "dc1"
}

variable "nomad_region" {
  description = "Nomad region name."
  type        = string
  default     = "global"
}

variable "gateway_port" {
  description = "Static port the gateway job listens on, on every client (jobs/gateway.nomad.hcl)."
  type        = number
  default     = 8080
}

variable "certificate_arn" {
  description = "ACM certificate for the gateway's HTTPS listener. Empty: plain HTTP, for a first try only (cookies are not Secure, passwords cross the network in the clear)."
  type        = string
  default     = ""
}

variable "package_versions" {
  description = "apt versions to pin, e.g. { nomad = \"1.10.5-1\" }; a tool not listed gets the repository's latest."
  type        = map(string)
  default     = {}
}

variable "docker_volumes" {
  description = "Let Docker tasks mount volumes: jobs/workspace.nomad.hcl keeps each user's home in a Docker volume. It also lets any job submitter (the gateway's token has submit-job) mount host paths: false keeps clients closed, and workspaces then need another home (the exec group's host volume)."
  type        = bool
  default     = true
}
