# Who may talk to whom.
#   cluster:  every machine; machines of the cluster talk freely to each
#             other (gossip, RPC, Vault, workspaces' agents). Everything
#             listening is authenticated: mTLS and ACLs for Nomad and Consul,
#             tokens for Vault, a per-workspace secret for workspace agents.
#   admin:    servers; the operators' networks reach the APIs and SSH.
#   gateway:  clients; only the load balancer reaches the gateway port.
#   lb:       the load balancer; the team reaches HTTP(S).

resource "aws_security_group" "cluster" {
  name        = "${var.name}-cluster"
  description = "codehub cluster machines: traffic among themselves"
  vpc_id      = aws_vpc.main.id

  ingress {
    description = "Any traffic from the cluster's own machines"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    self        = true
  }

  egress {
    description = "Out: package repositories, container registries, AWS APIs"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "admin" {
  name        = "${var.name}-admin"
  description = "codehub servers: operators reach the APIs and SSH"
  vpc_id      = aws_vpc.main.id

  dynamic "ingress" {
    for_each = {
      ssh    = 22
      nomad  = 4646
      vault  = 8200
      consul = 8501
    }
    content {
      description = "${ingress.key} from the operators' networks"
      from_port   = ingress.value
      to_port     = ingress.value
      protocol    = "tcp"
      cidr_blocks = var.admin_cidrs
    }
  }
}

resource "aws_security_group" "lb" {
  name        = "${var.name}-lb"
  description = "codehub gateway load balancer"
  vpc_id      = aws_vpc.main.id

  ingress {
    description = "HTTP (redirected to HTTPS when there is a certificate)"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = var.gateway_cidrs
  }

  ingress {
    description = "HTTPS"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = var.gateway_cidrs
  }

  egress {
    description = "To the gateways on the clients"
    from_port   = var.gateway_port
    to_port     = var.gateway_port
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }
}

resource "aws_security_group" "gateway" {
  name        = "${var.name}-gateway"
  description = "codehub clients: the load balancer reaches the gateway"
  vpc_id      = aws_vpc.main.id

  ingress {
    description     = "Gateway port from the load balancer"
    from_port       = var.gateway_port
    to_port         = var.gateway_port
    protocol        = "tcp"
    security_groups = [aws_security_group.lb.id]
  }
}
