# One VPC, two public subnets in two zones (the load balancer needs two).
# Public subnets keep this small: no NAT gateway to pay for. The security
# groups (security.tf) admit nothing from outside but the load balancer's
# listeners and the operators' networks. For production, move the
# machines to private subnets behind a NAT gateway.

data "aws_availability_zones" "available" {
  state = "available"
}

locals {
  zones        = slice(data.aws_availability_zones.available.names, 0, 2)
  subnet_cidrs = [for i in range(2) : cidrsubnet(var.vpc_cidr, 8, i)]
}

resource "aws_vpc" "main" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = {
    Name = var.name
  }
}

resource "aws_internet_gateway" "main" {
  vpc_id = aws_vpc.main.id

  tags = {
    Name = var.name
  }
}

resource "aws_subnet" "public" {
  count = 2

  vpc_id                  = aws_vpc.main.id
  cidr_block              = local.subnet_cidrs[count.index]
  availability_zone       = local.zones[count.index]
  map_public_ip_on_launch = true

  tags = {
    Name = "${var.name}-public-${local.zones[count.index]}"
  }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.main.id
  }

  tags = {
    Name = "${var.name}-public"
  }
}

resource "aws_route_table_association" "public" {
  count = 2

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}
