policy "large" {
  cpu             = 100
  memory          = "2GiB"
  memory_max      = "1GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
  applies_to { roles = ["user"] }
}
