# The machines, configured by cloud-init at first boot: the HashiCorp apt
# repository, the agents' configuration files, then the services.

data "aws_ami" "image" {
  most_recent = true
  owners      = [var.image_owner]

  filter {
    name   = "name"
    values = [var.image_name]
  }
}

# What the exec group of jobs/workspace.nomad.hcl needs on a client, before
# Nomad starts (the host volume's directory must exist): the codehub
# account with the uid and gid the job's template names, the codehub
# binary (the agent) and code-server, inside the chroot (var.exec_chroot_env),
# and the homes, on NFS when var.exec_homes_nfs says so.
locals {
  code_server_tarball = "code-server-${var.code_server_version}-linux-amd64"
  exec_setup = var.exec_workspaces ? concat([
    "groupadd --system --gid 10100 codehub",
    "useradd --system --uid 10100 --gid 10100 --home-dir ${var.exec_homes_path} --no-create-home --shell /bin/bash codehub",
    "install -d -m 0755 ${dirname(var.exec_homes_path)}",
    "install -d -m 0700 -o codehub -g codehub ${var.exec_homes_path}",
    ], var.exec_homes_nfs == "" ? [] : [
    "DEBIAN_FRONTEND=noninteractive apt-get install -y nfs-common",
    "echo '${var.exec_homes_nfs} ${var.exec_homes_path} nfs4 nfsvers=4.1,hard,noresvport,_netdev,nosuid,nodev 0 0' >> /etc/fstab",
    "mount ${var.exec_homes_path} && chown codehub:codehub ${var.exec_homes_path} && chmod 0700 ${var.exec_homes_path}",
    ], [
    "curl -fsSL -o /tmp/codehub '${var.codehub_binary_url}'",
    "echo '${var.codehub_binary_sha256}  /tmp/codehub' | sha256sum -c - && install -m 0755 -o root -g root /tmp/codehub /usr/local/bin/codehub && rm -f /tmp/codehub",
    "curl -fsSL -o /tmp/code-server.tar.gz https://github.com/coder/code-server/releases/download/v${var.code_server_version}/${local.code_server_tarball}.tar.gz",
    "tar -xzf /tmp/code-server.tar.gz -C /opt && rm -f /tmp/code-server.tar.gz && mv /opt/${local.code_server_tarball} /opt/code-server",
    "ln -sf /opt/code-server/bin/code-server /usr/local/bin/code-server",
  ]) : []

  # Nomad 1.6 registers services with the agents' token (1.7 and later with
  # workload identities): it must write codehub's.
  consul_agent_rules = join("\n", concat([file("${path.module}/acl/consul-agent.hcl")], var.nomad_workload_identity ? [] : [<<-EOT
    # Nomad 1.6 (var.nomad_workload_identity = false): the Nomad agents
    # register the gateway's and the workspaces' services with this token.
    service "codehub-gateway" {
      policy = "write"
    }

    service "codehub-workspace" {
      policy = "write"
    }
  EOT
  ]))
}

# Servers get fixed private addresses, so that every agent can be told
# where to join without cloud auto-join (which would need an AWS role able
# to list instances on every machine, clients included).
locals {
  server_ips = [for i in range(var.server_count) : cidrhost(local.subnet_cidrs[i % 2], 10 + floor(i / 2))]

  tls_dir = "/etc/codehub/tls"

  hashicorp_repo = [
    "install -d -m 0755 /etc/apt/keyrings",
    "curl -fsSL https://apt.releases.hashicorp.com/gpg | gpg --dearmor --yes -o /etc/apt/keyrings/hashicorp.gpg",
    "echo \"deb [signed-by=/etc/apt/keyrings/hashicorp.gpg] https://apt.releases.hashicorp.com $(. /etc/os-release && echo $VERSION_CODENAME) main\" > /etc/apt/sources.list.d/hashicorp.list",
    "apt-get update",
  ]

  # "nomad" or "nomad=1.10.5-1", as var.package_versions says.
  pkg = { for p in ["consul", "nomad", "vault"] : p => lookup(var.package_versions, p, "") == "" ? p : "${p}=${lookup(var.package_versions, p, "")}" }

  # Names under .consul resolve through the local Consul agent (Vault and
  # Nomad dial vault.service.consul and nomad.service.consul).
  resolved_conf = <<-EOT
    [Resolve]
    DNS=127.0.0.1:8600
    DNSSEC=false
    Domains=~consul
  EOT

  common_files = {
    "${local.tls_dir}/ca.pem"                  = { mode = "0644", content = tls_self_signed_cert.ca.cert_pem }
    "/etc/systemd/resolved.conf.d/consul.conf" = { mode = "0644", content = local.resolved_conf }
    "/etc/sysctl.d/60-codehub.conf"            = { mode = "0644", content = "kernel.dmesg_restrict = 1\nkernel.kptr_restrict = 2\n" }
  }

  consul_agent_token = random_uuid.consul_agent_secret.result
  consul_dns_token   = random_uuid.consul_dns_secret.result
}

# cloud-init user data: files first, then commands. Files are base64 so
# that no content can break the YAML.
locals {
  server_user_data = [for i in range(var.server_count) : join("\n", ["#cloud-config", yamlencode({
    write_files = [for path, f in merge(local.common_files, {
      "${local.tls_dir}/server.pem"     = { mode = "0644", content = tls_locally_signed_cert.server.cert_pem }
      "${local.tls_dir}/server-key.pem" = { mode = "0600", content = tls_private_key.server.private_key_pem }
      "/etc/codehub/consul.hcl" = { mode = "0600", content = templatefile("${path.module}/templates/consul-server.hcl.tftpl", {
        node_name        = "server-${i}"
        datacenter       = var.datacenter
        server_count     = var.server_count
        ip               = local.server_ips[i]
        server_ips       = local.server_ips
        gossip_key       = random_id.consul_gossip.b64_std
        management_token = random_uuid.consul_management.result
        agent_token      = local.consul_agent_token
        dns_token        = local.consul_dns_token
      }) }
      "/etc/codehub/nomad.hcl" = { mode = "0600", content = templatefile("${path.module}/templates/nomad-server.hcl.tftpl", {
        node_name         = "server-${i}"
        region            = var.nomad_region
        datacenter        = var.datacenter
        ip                = local.server_ips[i]
        server_count      = var.server_count
        server_ips        = local.server_ips
        gossip_key        = random_id.nomad_gossip.b64_std
        consul_token      = local.consul_agent_token
        workload_identity = var.nomad_workload_identity
      }) }
      "/etc/codehub/vault.hcl" = { mode = "0600", content = templatefile("${path.module}/templates/vault.hcl.tftpl", {
        name         = var.name
        node_name    = "server-${i}"
        ip           = local.server_ips[i]
        server_ips   = local.server_ips
        region       = var.region
        kms_key_id   = aws_kms_key.vault.key_id
        consul_token = local.consul_agent_token
      }) }
      "/etc/codehub/acl/consul-agent.hcl" = { mode = "0644", content = local.consul_agent_rules }
      "/etc/codehub/acl/consul-dns.hcl"   = { mode = "0644", content = file("${path.module}/acl/consul-dns.hcl") }
      "/usr/local/sbin/codehub-consul-acl-bootstrap" = { mode = "0700", content = templatefile("${path.module}/templates/consul-acl-bootstrap.sh.tftpl", {
        management_token = random_uuid.consul_management.result
        agent_accessor   = random_uuid.consul_agent_accessor.result
        agent_secret     = local.consul_agent_token
        dns_accessor     = random_uuid.consul_dns_accessor.result
        dns_secret       = local.consul_dns_token
      }) }
    }) : { path = path, permissions = f.mode, encoding = "b64", content = base64encode(f.content) }]

    runcmd = concat(local.hashicorp_repo, [
      "DEBIAN_FRONTEND=noninteractive apt-get install -y ${local.pkg.consul} ${local.pkg.nomad} ${local.pkg.vault}",
      # The key is readable by root (Nomad) and the consul and vault users.
      "groupadd --system --force codehub-tls && usermod -aG codehub-tls consul && usermod -aG codehub-tls vault",
      "chgrp codehub-tls ${local.tls_dir}/server-key.pem && chmod 0640 ${local.tls_dir}/server-key.pem",
      # Replace the packages' sample configurations (a dev-mode Nomad among them).
      "install -m 0640 -o consul -g consul /etc/codehub/consul.hcl /etc/consul.d/consul.hcl",
      "install -m 0600 -o root -g root /etc/codehub/nomad.hcl /etc/nomad.d/nomad.hcl",
      "install -m 0640 -o vault -g vault /etc/codehub/vault.hcl /etc/vault.d/vault.hcl",
      "rm -f /etc/codehub/consul.hcl /etc/codehub/nomad.hcl /etc/codehub/vault.hcl",
      "sysctl --system && systemctl restart systemd-resolved",
      "systemctl enable --now consul",
      "/usr/local/sbin/codehub-consul-acl-bootstrap",
      "systemctl enable --now vault nomad",
    ])
  })])]

  client_user_data = join("\n", ["#cloud-config", yamlencode({
    write_files = [for path, f in merge(local.common_files, {
      "${local.tls_dir}/client.pem"     = { mode = "0644", content = tls_locally_signed_cert.client.cert_pem }
      "${local.tls_dir}/client-key.pem" = { mode = "0600", content = tls_private_key.client.private_key_pem }
      "/etc/codehub/consul.hcl" = { mode = "0600", content = templatefile("${path.module}/templates/consul-client.hcl.tftpl", {
        datacenter  = var.datacenter
        server_ips  = local.server_ips
        gossip_key  = random_id.consul_gossip.b64_std
        agent_token = local.consul_agent_token
        dns_token   = local.consul_dns_token
      }) }
      "/etc/codehub/nomad.hcl" = { mode = "0600", content = templatefile("${path.module}/templates/nomad-client.hcl.tftpl", {
        region            = var.nomad_region
        datacenter        = var.datacenter
        server_ips        = local.server_ips
        consul_token      = local.consul_agent_token
        docker_volumes    = var.docker_volumes
        workload_identity = var.nomad_workload_identity
        exec_workspaces   = var.exec_workspaces
        homes_path        = var.exec_homes_path
        chroot_env        = var.exec_chroot_env
      }) }
      # Workspaces run people's code: keep non-root processes away from the
      # instance metadata service (it serves this very user data). Tasks in
      # bridge networks are already cut off by the hop limit of 1 below.
      "/etc/systemd/system/codehub-imds-guard.service" = { mode = "0644", content = <<-EOT
        [Unit]
        Description=Keep workloads away from the instance metadata service
        Before=nomad.service docker.service

        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStart=/usr/sbin/iptables -w -I OUTPUT -d 169.254.169.254 -j REJECT
        ExecStart=/usr/sbin/iptables -w -I OUTPUT -d 169.254.169.254 -m owner --uid-owner 0 -j ACCEPT

        [Install]
        WantedBy=multi-user.target
      EOT
      }
    }) : { path = path, permissions = f.mode, encoding = "b64", content = base64encode(f.content) }]

    runcmd = concat(local.hashicorp_repo, [
      "DEBIAN_FRONTEND=noninteractive apt-get install -y ${local.pkg.consul} ${local.pkg.nomad} docker.io containernetworking-plugins iptables",
      "systemctl daemon-reload && systemctl enable --now codehub-imds-guard",
      ], local.exec_setup, [
      "install -m 0640 -o consul -g consul /etc/codehub/consul.hcl /etc/consul.d/consul.hcl",
      "install -m 0600 -o root -g root /etc/codehub/nomad.hcl /etc/nomad.d/nomad.hcl",
      "rm -f /etc/codehub/consul.hcl /etc/codehub/nomad.hcl",
      "sysctl --system && systemctl restart systemd-resolved",
      "systemctl enable --now docker consul nomad",
    ])
  })])
}

resource "aws_eip" "server" {
  count  = var.server_count
  domain = "vpc"

  tags = {
    Name = "${var.name}-server-${count.index}"
  }
}

resource "aws_instance" "server" {
  count = var.server_count

  ami                         = data.aws_ami.image.id
  instance_type               = var.server_instance_type
  subnet_id                   = aws_subnet.public[count.index % 2].id
  private_ip                  = local.server_ips[count.index]
  vpc_security_group_ids      = [aws_security_group.cluster.id, aws_security_group.admin.id]
  iam_instance_profile        = aws_iam_instance_profile.server.name
  key_name                    = var.ssh_key_name
  user_data                   = local.server_user_data[count.index]
  user_data_replace_on_change = true

  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_size = 40
    encrypted   = true
  }

  tags = {
    Name = "${var.name}-server-${count.index}"
    Role = "server"
  }

  lifecycle {
    # A newer image must not replace a running server by surprise.
    ignore_changes = [ami]
  }
}

resource "aws_eip_association" "server" {
  count = var.server_count

  allocation_id = aws_eip.server[count.index].id
  instance_id   = aws_instance.server[count.index].id
}

resource "aws_instance" "client" {
  count = var.client_count

  ami                         = data.aws_ami.image.id
  instance_type               = var.client_instance_type
  subnet_id                   = aws_subnet.public[count.index % 2].id
  vpc_security_group_ids      = [aws_security_group.cluster.id, aws_security_group.gateway.id]
  key_name                    = var.ssh_key_name
  user_data                   = local.client_user_data
  user_data_replace_on_change = true

  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_size = var.client_disk_gb
    encrypted   = true
  }

  tags = {
    Name = "${var.name}-client-${count.index}"
    Role = "client"
  }

  lifecycle {
    ignore_changes = [ami]

    precondition {
      condition     = !var.exec_workspaces || (var.codehub_binary_url != "" && length(var.codehub_binary_sha256) == 64)
      error_message = "exec_workspaces needs codehub_binary_url and codehub_binary_sha256: the clients install the codehub agent from there."
    }
  }

  # Clients join the servers by address: start them after.
  depends_on = [aws_instance.server]
}
