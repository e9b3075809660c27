# Secrets the agents need before anyone can log in: gossip encryption keys
# and Consul's first ACL tokens. Consul takes its management token from its
# configuration and the servers create the agent and DNS tokens with these
# secrets on first boot (templates/consul-acl-bootstrap.sh.tftpl), so that
# no agent ever runs without a token. Nomad's and Vault's root credentials
# are not made here: the operator creates them once (README.md), and they
# never enter the state.

resource "random_id" "consul_gossip" {
  byte_length = 32
}

resource "random_id" "nomad_gossip" {
  byte_length = 32
}

resource "random_uuid" "consul_management" {}

resource "random_uuid" "consul_agent_accessor" {}

resource "random_uuid" "consul_agent_secret" {}

resource "random_uuid" "consul_dns_accessor" {}

resource "random_uuid" "consul_dns_secret" {}
