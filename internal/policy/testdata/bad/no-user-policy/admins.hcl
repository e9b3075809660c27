policy "admins" {
  cpu             = 100
  memory          = "2GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
  applies_to {
    roles = ["admin"]
  }
}
