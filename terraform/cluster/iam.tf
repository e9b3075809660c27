# Vault unseals itself with a KMS key (no unseal keys to type in after a
# reboot). Only the servers may use it; the clients, which run people's
# code, get no instance role at all.

resource "aws_kms_key" "vault" {
  description             = "${var.name}: Vault auto-unseal"
  deletion_window_in_days = 30
  enable_key_rotation     = true
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "server" {
  name               = "${var.name}-server"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

data "aws_iam_policy_document" "vault_unseal" {
  statement {
    sid       = "VaultAutoUnseal"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"]
    resources = [aws_kms_key.vault.arn]
  }
}

resource "aws_iam_role_policy" "vault_unseal" {
  name   = "vault-unseal"
  role   = aws_iam_role.server.id
  policy = data.aws_iam_policy_document.vault_unseal.json
}

resource "aws_iam_instance_profile" "server" {
  name = "${var.name}-server"
  role = aws_iam_role.server.name
}
