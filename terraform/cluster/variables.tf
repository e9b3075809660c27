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

variable "nomad_workload_identity" {
  description = "Nomad 1.7 and later (the default): tasks get their Vault tokens and register their Consul services with workload identities. false for Nomad 1.6 (pin package_versions.nomad to a 1.6 release, and set the same in ../codehub): the Nomad servers then derive tasks' Vault tokens from a token of their own, which you give them after stage 2 (README.md), and the Nomad agents' Consul token registers codehub's services."
  type        = bool
  default     = true
}

variable "exec_workspaces" {
  description = "Prepare the clients for the exec group of jobs/workspace.nomad.hcl (isolation policies with driver = \"exec\"): the codehub account (uid and gid 10100), the codehub and code-server binaries, the homes' host volume and a small exec chroot. Needs codehub_binary_url and codehub_binary_sha256."
  type        = bool
  default     = false
}

variable "codehub_binary_url" {
  description = "Where the clients download the codehub binary for exec workspaces (Linux, the clients' architecture, built with CGO_ENABLED=0): it is the agent of every exec workspace, at /usr/local/bin/codehub."
  type        = string
  default     = ""
}

variable "codehub_binary_sha256" {
  description = "SHA-256 of that binary, checked before it is installed."
  type        = string
  default     = ""
}

variable "code_server_version" {
  description = "code-server release the clients install for exec workspaces (/opt/code-server, /usr/local/bin/code-server)."
  type        = string
  default     = "4.139.1"
}

variable "exec_homes_path" {
  description = "Directory of the users' homes on the clients: the host volume codehub-homes."
  type        = string
  default     = "/srv/codehub/homes"
}

variable "exec_homes_nfs" {
  description = "An NFS export mounted at exec_homes_path on every client (an EFS file system's \"fs-0123456789abcdef0.efs.eu-central-1.amazonaws.com:/\", say), so that a user's home follows them to any client. Empty: a local directory, fit for one client only."
  type        = string
  default     = ""
}

variable "exec_chroot_env" {
  description = "What an exec workspace's chroot holds (the Nomad client's chroot_env: host path = path in the chroot). Nomad builds it of hard links for every task; its default, the whole of /bin, /etc, /lib, /sbin and /usr, is about 200,000 of them. This default is what codehub, code-server, a shell and git need on an amd64 Debian or Ubuntu client (aarch64-linux-gnu for arm64; /run/systemd/resolve because /etc/resolv.conf links there under systemd-resolved): add your team's tools."
  type        = map(string)
  default = {
    "/bin"                       = "/bin"
    "/usr/bin"                   = "/usr/bin"
    "/lib64"                     = "/lib64"
    "/lib/x86_64-linux-gnu"      = "/lib/x86_64-linux-gnu"
    "/usr/lib/x86_64-linux-gnu"  = "/usr/lib/x86_64-linux-gnu"
    "/usr/lib/git-core"          = "/usr/lib/git-core"
    "/usr/lib/locale"            = "/usr/lib/locale"
    "/usr/lib/terminfo"          = "/usr/lib/terminfo"
    "/usr/share/terminfo"        = "/usr/share/terminfo"
    "/usr/share/git-core"        = "/usr/share/git-core"
    "/usr/share/zoneinfo"        = "/usr/share/zoneinfo"
    "/usr/share/ca-certificates" = "/usr/share/ca-certificates"
    "/usr/local/bin"             = "/usr/local/bin"
    "/opt/code-server"           = "/opt/code-server"
    "/etc/alternatives"          = "/etc/alternatives"
    "/etc/ssl"                   = "/etc/ssl"
    "/etc/passwd"                = "/etc/passwd"
    "/etc/group"                 = "/etc/group"
    "/etc/hosts"                 = "/etc/hosts"
    "/etc/resolv.conf"           = "/etc/resolv.conf"
    "/run/systemd/resolve"       = "/run/systemd/resolve"
    "/etc/nsswitch.conf"         = "/etc/nsswitch.conf"
    "/etc/localtime"             = "/etc/localtime"
    "/etc/ld.so.cache"           = "/etc/ld.so.cache"
    "/etc/profile"               = "/etc/profile"
    "/etc/bash.bashrc"           = "/etc/bash.bashrc"
    "/etc/mime.types"            = "/etc/mime.types"
    "/etc/protocols"             = "/etc/protocols"
    "/etc/services"              = "/etc/services"
    "/etc/ssh/ssh_config"        = "/etc/ssh/ssh_config"
    "/etc/gitconfig"             = "/etc/gitconfig"
  }
}
