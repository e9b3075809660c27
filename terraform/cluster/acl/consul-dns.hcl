# Consul ACL policy "codehub-dns": what Consul DNS answers (the agents'
# "dns" token). Only the names the cluster itself dials: workspaces'
# addresses are not listed in DNS for anyone to find.

node_prefix "" {
  policy = "read"
}

service "vault" {
  policy = "read"
}

service "nomad" {
  policy = "read"
}
