# Consul ACL policy "codehub-agent": the token every Consul agent, Nomad
# agent and Vault server uses for itself (never given to a workload).

# Register and update its own node (agents do not know their node names in
# advance: clients are named by the cloud).
node_prefix "" {
  policy = "write"
}

# Agents and Nomad look up services (server discovery, health checks).
service_prefix "" {
  policy = "read"
}

# Nomad reads the local agent's configuration to fingerprint it.
agent_prefix "" {
  policy = "read"
}

# The services the agents register for themselves: Nomad servers ("nomad"),
# Nomad clients ("nomad-client"), Vault ("vault"). Workloads register their
# own services with workload identities, not with this token.
service "nomad" {
  policy = "write"
}

service "nomad-client" {
  policy = "write"
}

service "vault" {
  policy = "write"
}
