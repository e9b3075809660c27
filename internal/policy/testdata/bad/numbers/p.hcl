policy "default" {
  cpu             = 0
  memory          = "2GiB"
  pids            = -1
  storage         = "10GiB"
  max_sessions    = 1.5
  max_connections = "100"
  idle_timeout    = "30m"
  priority        = 99999999999
}
