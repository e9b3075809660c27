# Consul ACL policy "codehub-gateway": what one codehub gateway may do in
# Consul, and nothing else. Its token reaches the gateway's task through
# the Nomad variable nomad/jobs/codehub-gateway (terraform/codehub/consul.tf).
# Names are codehub's defaults (consul.service, consul.gateway-service).
#
# Workspaces get no Consul token: Nomad registers their service with a
# workload identity of its own, and the anonymous token reads nothing.

# Find the healthy instances of workspaces, and their addresses, through
# the health API (the Nomad orchestrator's Resolver). Read only: nothing
# the gateway does may register or move a workspace.
service "codehub-workspace" {
  policy = "read"
}

# Register this gateway and its health check, and deregister it on
# shutdown (consul.register-gateway), so that other gateways and the load
# balancer can find it.
service "codehub-gateway" {
  policy = "write"
}

# The health API answers only with instances on nodes the token may read;
# workspaces run on any client node, whose names are not known in advance.
# Reading a node shows its name, address and metadata, not its services.
node_prefix "" {
  policy = "read"
}
