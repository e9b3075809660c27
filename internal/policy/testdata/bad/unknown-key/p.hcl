policy "default" {
  cpu             = 100
  memroy          = "2GiB"
  pids            = 2048
  storage         = "10GiB"
  max_sessions    = 5
  max_connections = 100
  idle_timeout    = "30m"
  cpu_limit       = 3
}
